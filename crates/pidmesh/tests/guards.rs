//! The guard table behind `Registration`: every guard hears the loss of its own claim and of
//! nothing else, also after other guards went, when the loss comes before anyone awaits it,
//! when the guard went first, for many guards awaited at once, and after metadata updates; its
//! entry reads as registered also after the loss and after the node stopped; a guard is a small
//! handle.

mod common;

use std::time::Duration;

use common::{LIMIT, cluster, eventually};
use pidmesh::{Reason, Registration, Resolver};
use pidmesh_transport::MemNetwork;

/// Long enough for the driver to have dispatched anything pending; a guard that has not heard
/// a loss by then was not told one.
const QUIET: Duration = Duration::from_millis(200);

async fn not_lost(g: &mut Registration) -> bool {
    tokio::time::timeout(QUIET, g.lost()).await.is_err()
}

#[test]
fn a_guard_is_a_small_handle() {
    // The registry handle, an id (its entry's own dot sequence number) and the lazily built entry.
    let size = std::mem::size_of::<Registration>();
    println!("size_of::<Registration>() = {size}");
    assert!(size <= 24, "a guard is {size} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_slot_hears_only_its_own_loss() {
    let net = MemNetwork::new(41);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 1, Resolver::keep_oldest()).await;
    let node = &regs[0];
    let (first, first_inbox) = node.spawn_mailbox().expect("running");
    let (second, second_inbox) = node.spawn_mailbox().expect("running");
    let mut old: Vec<Option<Registration>> = Vec::new();
    // More than one chunk of slots (1,024), so reuse crosses chunks.
    for i in 0..2100 {
        let g = node
            .register(&format!("a/{i:04}"), &first, Vec::new())
            .await
            .expect("registers");
        old.push(Some(g));
    }
    // Free every other slot, then fill them with claims of another process.
    for g in old.iter_mut().step_by(2) {
        drop(g.take());
    }
    let mut new = Vec::new();
    for j in 0..1050 {
        let g = node
            .register(&format!("b/{j:03}"), &second, format!("m{j}"))
            .await
            .expect("registers");
        new.push(g);
    }
    for (j, g) in new.iter().enumerate() {
        let e = g.entry();
        assert_eq!(e.key.name, format!("b/{j:03}"));
        assert_eq!(e.pid, second);
        assert_eq!(&e.meta[..], format!("m{j}").as_bytes());
        assert_eq!(node.lookup(&e.key.name).as_ref(), Some(e));
    }
    // The first process ends: its 1,050 remaining guards hear it, the reused slots do not.
    drop(first_inbox);
    for g in old.iter_mut().flatten() {
        let lost = tokio::time::timeout(LIMIT, g.lost())
            .await
            .expect("told in time")
            .expect("a loss, not a stopped node");
        assert_eq!(lost.reason, Reason::ProcessExited);
        assert!(g.is_lost());
    }
    for g in &mut new {
        assert!(!g.is_lost(), "{} lost", g.entry().key.name);
    }
    assert!(
        not_lost(&mut new[7]).await,
        "a reused slot heard another claim's loss"
    );
    // One of the reused slots loses its claim: only that guard hears it.
    node.unregister("b/007", &second).await.expect("registered");
    let lost = tokio::time::timeout(LIMIT, new[7].lost())
        .await
        .expect("told in time")
        .expect("a loss");
    assert_eq!(lost.winner, None);
    for (j, g) in new.iter_mut().enumerate() {
        if j != 7 && j % 100 == 0 {
            assert!(not_lost(g).await, "b/{j:03} heard b/007's loss");
        }
    }
    drop(second_inbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_claim_of_the_same_name_and_pid_has_its_own_watch() {
    let net = MemNetwork::new(42);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 1, Resolver::keep_oldest()).await;
    let node = &regs[0];
    let (pid, inbox) = node.spawn_mailbox().expect("running");
    let mut first = node.register("x", &pid, "1").await.expect("registers");
    // Removed and claimed again before the driver has dispatched the removal.
    node.unregister("x", &pid).await.expect("registered");
    let mut second = node.register("x", &pid, "2").await.expect("registers");
    let lost = tokio::time::timeout(LIMIT, first.lost())
        .await
        .expect("told in time")
        .expect("a loss");
    assert_ne!(lost.reason, Reason::ProcessExited);
    assert!(
        not_lost(&mut second).await,
        "the new claim heard the old one's loss"
    );
    assert!(!second.is_lost());
    // The first guard going does not take the new claim with it.
    drop(first);
    assert_eq!(node.lookup("x").map(|e| e.meta), Some("2".into()));
    drop(inbox);
    let lost = tokio::time::timeout(LIMIT, second.lost())
        .await
        .expect("told in time")
        .expect("a loss");
    assert_eq!(lost.reason, Reason::ProcessExited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_guards_awaited_at_once_each_hear_their_own() {
    let net = MemNetwork::new(43);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 1, Resolver::keep_oldest()).await;
    let node = &regs[0];
    let mut pids = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..4 {
        let (p, i) = node.spawn_mailbox().expect("running");
        pids.push(p);
        inboxes.push(Some(i));
    }
    let per = 500;
    let mut tasks = tokio::task::JoinSet::new();
    for (k, pid) in pids.iter().enumerate() {
        let items: Vec<_> = (0..per)
            .map(|i| (format!("many/{k}/{i:04}"), pid, Vec::new()))
            .collect();
        for r in node.register_many(items).await.expect("running") {
            let mut g = r.expect("registers");
            tasks.spawn(async move {
                let lost = g.lost().await.map(|l| l.reason);
                (k, g.entry().key.name.clone(), lost)
            });
        }
    }
    tokio::task::yield_now().await;
    // Processes 1 and 3 end; the guards of 0 and 2 keep waiting.
    drop(inboxes[1].take());
    drop(inboxes[3].take());
    for _ in 0..2 * per {
        let (k, name, lost) = tokio::time::timeout(LIMIT, tasks.join_next())
            .await
            .expect("told in time")
            .expect("a task")
            .expect("no panic");
        assert!(k % 2 == 1, "{name} of a live process heard a loss");
        assert_eq!(lost, Some(Reason::ProcessExited), "{name}");
    }
    assert!(
        tokio::time::timeout(QUIET, tasks.join_next())
            .await
            .is_err(),
        "a guard of a live process heard a loss"
    );
    assert_eq!(tasks.len(), 2 * per);
    // The node leaves: it releases its entries (each waiting guard hears `Normal`) and stops.
    node.shutdown().await;
    for _ in 0..2 * per {
        let (k, name, lost) = tokio::time::timeout(LIMIT, tasks.join_next())
            .await
            .expect("told in time")
            .expect("a task")
            .expect("no panic");
        assert!(k % 2 == 0);
        assert_eq!(lost, Some(Reason::Normal), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_dropped_before_the_loss_hears_nothing_and_leaves_nothing() {
    let net = MemNetwork::new(44);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 1, Resolver::keep_oldest()).await;
    let node = &regs[0];
    let (pid, inbox) = node.spawn_mailbox().expect("running");
    let (other, _other_inbox) = node.spawn_mailbox().expect("running");
    let g = node
        .register("gone", &pid, Vec::new())
        .await
        .expect("registers");
    drop(g);
    assert_eq!(node.lookup("gone"), None, "the guard unregisters on drop");
    // Its slot goes to another claim; the first process ends after its guard went.
    let mut reuse = node
        .register("kept", &other, Vec::new())
        .await
        .expect("registers");
    drop(inbox);
    assert!(
        not_lost(&mut reuse).await,
        "the slot's new guard heard an old claim"
    );
    assert_eq!(node.lookup("kept").map(|e| e.pid), Some(other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_before_the_await_is_kept_for_it() {
    let net = MemNetwork::new(45);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 1, Resolver::keep_oldest()).await;
    let node = &regs[0];
    let (pid, inbox) = node.spawn_mailbox().expect("running");
    let mut g = node
        .register("early", &pid, Vec::new())
        .await
        .expect("registers");
    drop(inbox);
    assert!(eventually(LIMIT, || g.is_lost()).await.is_some());
    // Let the driver dispatch the removal before anyone awaits it.
    tokio::time::sleep(QUIET).await;
    let lost = tokio::time::timeout(QUIET, g.lost())
        .await
        .expect("ready at once")
        .expect("a loss");
    assert_eq!(lost.reason, Reason::ProcessExited);
    // Reported once; later calls end at once.
    assert_eq!(tokio::time::timeout(QUIET, g.lost()).await, Ok(None));
    assert!(g.is_lost());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_node_wakes_its_waiting_guards() {
    let net = MemNetwork::new(46);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 1, Resolver::keep_oldest()).await;
    let node = regs[0].clone();
    let (pid, _inbox) = node.spawn_mailbox().expect("running");
    let mut g = node
        .register("crash", &pid, Vec::new())
        .await
        .expect("registers");
    let waiting = tokio::spawn(async move { g.lost().await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    node.abort();
    let lost = tokio::time::timeout(LIMIT, waiting)
        .await
        .expect("woken in time")
        .expect("no panic");
    assert_eq!(lost, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_follows_its_entry_through_metadata_updates() {
    let net = MemNetwork::new(47);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 1, Resolver::keep_oldest()).await;
    let node = &regs[0];
    let (pid, inbox) = node.spawn_mailbox().expect("running");
    let key = pidmesh::Key::name("moving");
    let mut g = node
        .register("moving", &pid, "v0")
        .await
        .expect("registers");
    let mut untouched = node.register("still", &pid, "s").await.expect("registers");
    let registered = node.lookup("moving").expect("registered");
    for v in ["v1", "v2"] {
        node.update_meta(&key, &pid, v).await.expect("updates");
    }
    // Read for the first time after the updates: the entry as registered.
    assert_eq!(g.entry(), &registered);
    assert_ne!(node.lookup("moving").map(|e| e.dot), Some(registered.dot));
    assert!(!g.is_lost());
    assert!(not_lost(&mut g).await, "a metadata update is not a loss");
    // The updated entry's loss reaches the guard.
    node.unregister("moving", &pid).await.expect("registered");
    let lost = tokio::time::timeout(LIMIT, g.lost())
        .await
        .expect("told in time")
        .expect("a loss");
    assert_eq!(lost.reason, Reason::Normal);
    assert!(g.is_lost());
    // A guard dropped after an update removes the updated entry.
    node.update_meta(&pidmesh::Key::name("still"), &pid, "t")
        .await
        .expect("updates");
    assert!(not_lost(&mut untouched).await);
    assert_eq!(&untouched.entry().meta[..], b"s");
    drop(untouched);
    assert_eq!(node.lookup("still"), None, "the guard unregisters on drop");
    drop(inbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entry_is_read_as_registered_after_its_loss() {
    let net = MemNetwork::new(48);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 1, Resolver::keep_oldest()).await;
    let node = &regs[0];
    let (pid, _inbox) = node.spawn_mailbox().expect("running");
    let mut guards = Vec::new();
    for i in 0..200 {
        let name = format!("late/{i:03}");
        let g = node
            .register(&name, &pid, name.clone())
            .await
            .expect("registers");
        guards.push((name, g));
    }
    // Removed behind the guards' backs, read at once (whether or not the driver has taken the
    // removals yet) and after a pause (when it has).
    for (i, (name, g)) in guards.iter().enumerate() {
        node.unregister(name, &pid).await.expect("registered");
        if i % 2 == 0 {
            assert_eq!(&g.entry().key.name, name);
            assert_eq!(&g.entry().meta[..], name.as_bytes());
        }
    }
    tokio::time::sleep(QUIET).await;
    for (name, g) in &mut guards {
        assert_eq!(&g.entry().key.name, name);
        assert_eq!(&g.entry().meta[..], name.as_bytes());
        assert_eq!(g.entry().pid, pid);
        assert!(g.is_lost());
        let lost = tokio::time::timeout(QUIET, g.lost())
            .await
            .expect("ready at once");
        assert_eq!(lost.map(|l| l.reason), Some(Reason::Normal));
    }
    // A lost guard's unregister leaves a later claim of the same name and pid alone.
    let (name, g) = guards.pop().expect("200 guards");
    let later = node
        .register(&name, &pid, "later")
        .await
        .expect("registers");
    assert_eq!(
        g.unregister().await.map(|e| e.key.name),
        Err(pidmesh::RemoveError::NotFound)
    );
    assert_eq!(node.lookup(&name).map(|e| e.meta), Some("later".into()));
    drop(later);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entry_is_read_after_the_node_stops() {
    let net = MemNetwork::new(49);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 2, Resolver::keep_oldest()).await;
    let (left, aborted) = (regs[0].clone(), regs[1].clone());
    let (a, _ia) = left.spawn_mailbox().expect("running");
    let (b, _ib) = aborted.spawn_mailbox().expect("running");
    let ga = left.register("left", &a, "a").await.expect("registers");
    let gb = aborted
        .register("aborted", &b, "b")
        .await
        .expect("registers");
    left.shutdown().await;
    aborted.abort();
    assert_eq!(ga.entry().key.name, "left");
    assert_eq!(&ga.entry().meta[..], b"a");
    assert_eq!(gb.entry().key.name, "aborted");
    assert_eq!(&gb.entry().meta[..], b"b");
    assert!(ga.is_lost() && gb.is_lost());
}
