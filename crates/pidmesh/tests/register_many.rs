//! `Registry::register_many`: one result per item in order, failures change nothing and do not
//! disturb the other items' guards, the registrations reach every node, guards behave as
//! `register`'s.

mod common;

use common::{LIMIT, cluster, eventually};
use pidmesh::{Reason, RegisterError, Resolver, Stopped};
use pidmesh_transport::MemNetwork;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_in_order_and_visible_everywhere() {
    let net = MemNetwork::new(31);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 3, Resolver::keep_oldest()).await;
    let (pid, _inbox) = regs[0].spawn_mailbox().expect("running");
    let (other, _other_inbox) = regs[0].spawn_mailbox().expect("running");
    let (remote, _remote_inbox) = regs[1].spawn_mailbox().expect("running");
    let _held = regs[0]
        .register("held", &other, Vec::new())
        .await
        .expect("registers");
    let n = 700;
    let mut names: Vec<String> = (0..n).map(|i| format!("many/{i:04}")).collect();
    // Items that must fail, in between valid ones.
    names.insert(10, "held".to_string());
    names.insert(20, "many/0003".to_string()); // registered by an earlier item
    names.insert(30, String::new()); // invalid
    let mut items: Vec<(&str, &pidmesh::Pid, Vec<u8>)> = names
        .iter()
        .map(|name| (name.as_str(), &pid, b"m".to_vec()))
        .collect();
    items.insert(40, ("many/remote", &remote, Vec::new())); // not a process of this node
    let results = regs[0].register_many(items.clone()).await.expect("running");
    assert_eq!(results.len(), items.len(), "one result per item");
    let mut ok = 0;
    for ((name, _, _), r) in items.iter().zip(&results) {
        match (*name, r) {
            ("held", Err(RegisterError::AlreadyRegistered(e))) => assert_eq!(e.pid, other),
            ("many/0003", Err(RegisterError::AlreadyRegistered(e))) => assert_eq!(e.pid, pid),
            ("many/0003", Ok(g)) => {
                assert_eq!(g.entry().key.name, "many/0003");
                ok += 1;
            }
            ("", Err(RegisterError::InvalidName(_))) => {}
            ("many/remote", Err(RegisterError::NotLocal(p))) => assert_eq!(*p, remote),
            (name, Ok(g)) => {
                assert_eq!(g.entry().key.name, name, "results follow the items' order");
                assert_eq!(&g.entry().meta[..], b"m");
                ok += 1;
            }
            (name, Err(e)) => panic!("{name:?} failed: {e}"),
        }
    }
    assert_eq!(ok, n, "every valid item registered once");
    let took = eventually(LIMIT, || {
        regs.iter().all(|r| {
            names
                .iter()
                .skip(1)
                .all(|x| x.is_empty() || r.lookup(x).is_some())
        })
    })
    .await;
    println!("{n} registrations visible on all 3 after {took:?}");
    assert!(took.is_some(), "visible on every node");
    assert_eq!(
        regs[1].lookup("held").map(|e| e.pid),
        Some(other),
        "a failed item changed nothing"
    );
    drop(results);
    assert!(
        eventually(LIMIT, || regs
            .iter()
            .all(
                |r| r.lookup("many/0000").is_none() && r.lookup("many/0699").is_none()
            ))
        .await
        .is_some(),
        "dropping the guards unregisters"
    );
    assert!(regs[0].lookup("held").is_some(), "other guards untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_duplicate_leaves_the_first_guard_watching() {
    let net = MemNetwork::new(32);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 3, Resolver::keep_oldest()).await;
    let (pid, inbox) = regs[0].spawn_mailbox().expect("running");
    let items = [
        ("dup/a", &pid, Vec::new()),
        ("dup/b", &pid, Vec::new()),
        ("dup/a", &pid, Vec::new()),
    ];
    let mut results = regs[0].register_many(items).await.expect("running");
    assert!(matches!(
        results[2],
        Err(RegisterError::AlreadyRegistered(_))
    ));
    // The process ends: both guards hear it, including the one whose name a later item of the
    // same call failed to take.
    drop(inbox);
    for r in results.iter_mut().take(2) {
        let guard = r.as_mut().expect("registered");
        let lost = tokio::time::timeout(LIMIT, guard.lost())
            .await
            .expect("told in time")
            .expect("a loss, not a stopped node");
        assert_eq!(lost.reason, Reason::ProcessExited);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_registers_nothing() {
    let net = MemNetwork::new(33);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 2, Resolver::keep_oldest()).await;
    let (pid, _inbox) = regs[0].spawn_mailbox().expect("running");
    regs[0].shutdown().await;
    let r = regs[0].register_many([("late", &pid, Vec::new())]).await;
    assert!(matches!(r, Err(Stopped)));
    assert!(regs[1].lookup("late").is_none());
}
