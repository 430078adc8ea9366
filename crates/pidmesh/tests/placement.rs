//! Lookup-or-start placement over the in-memory transport: rendezvous placement, concurrent
//! callers, nodes without a factory, and a duplicate settled after a partition heals.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::{eventually, formed};
use pidmesh::{
    Config, GetOrStartError, Lost, NodeId, PLACEMENT_GROUP_PREFIX, Pid, Placement, PlacementError,
    Reason, Registry, Resolver, StartContext, rendezvous_score,
};
use pidmesh_transport::MemNetwork;
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(10);
const KIND: &str = "room";

async fn cluster(net: &MemNetwork, n: usize) -> Vec<Registry> {
    let transports: Vec<_> = (0..n)
        .map(|i| net.bind_named(format!("node-{i}")))
        .collect();
    let seeds: Vec<_> = transports
        .iter()
        .map(pidmesh_transport::Transport::local_addr)
        .take(2)
        .collect();
    let mut regs = Vec::new();
    for (i, t) in transports.into_iter().enumerate() {
        let r = Registry::builder()
            .node_name(format!("node-{i}"))
            .config(Config::local())
            .resolver(Resolver::keep_oldest())
            .seeds(seeds.clone())
            .transport(t)
            .start()
            .await
            .expect("starts");
        regs.push(r);
    }
    assert!(
        eventually(LIMIT, || formed(&regs)).await.is_some(),
        "cluster did not form"
    );
    regs
}

/// What the test processes tell the test.
#[derive(Debug)]
enum Report {
    Started(Pid),
    Echo(Pid, Bytes),
    Lost(Pid, Option<Lost>),
    Exited(Pid),
}

/// A placed process: reports its start, echoes every message to the test, and stops when it
/// loses its name.
async fn echo_process(ctx: StartContext, tx: mpsc::UnboundedSender<Report>) {
    let StartContext {
        pid,
        mut mailbox,
        lost,
        ..
    } = ctx;
    let _ = tx.send(Report::Started(pid.clone()));
    loop {
        tokio::select! {
            l = lost.wait() => {
                let _ = tx.send(Report::Lost(pid.clone(), l));
                break;
            }
            m = mailbox.recv() => match m {
                Some(m) => {
                    let _ = tx.send(Report::Echo(pid.clone(), m.body));
                }
                None => break,
            },
        }
    }
    drop(mailbox);
    let _ = tx.send(Report::Exited(pid));
}

/// Registers the echo factory on the nodes `on` and waits until every node sees all of them.
async fn serve(
    regs: &[Registry],
    on: &[usize],
) -> (Vec<Placement>, mpsc::UnboundedReceiver<Report>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut placements = Vec::new();
    for &i in on {
        let tx = tx.clone();
        let p = regs[i]
            .placement(KIND, move |ctx| echo_process(ctx, tx.clone()))
            .await
            .expect("serves");
        placements.push(p);
    }
    let group = format!("{PLACEMENT_GROUP_PREFIX}{KIND}");
    assert!(
        eventually(LIMIT, || regs
            .iter()
            .all(|r| r.members_of(&group).len() == on.len()))
        .await
        .is_some(),
        "factories not visible everywhere"
    );
    (placements, rx)
}

/// The rendezvous choice, computed here from the group's members (independently of
/// `get_or_start`'s own choice).
fn expected_node(reg: &Registry, name: &str) -> NodeId {
    reg.members_of(&format!("{PLACEMENT_GROUP_PREFIX}{KIND}"))
        .into_iter()
        .map(|e| e.pid.node)
        .max_by_key(|n| (rendezvous_score(&n.name, name), n.name.clone()))
        .expect("someone serves the kind")
}

/// The next report matching `pred`, skipping others, or panics after `limit`.
async fn expect_report(
    rx: &mut mpsc::UnboundedReceiver<Report>,
    limit: Duration,
    mut pred: impl FnMut(&Report) -> bool,
) -> Report {
    let wait = async {
        loop {
            let r = rx.recv().await.expect("reports open");
            if pred(&r) {
                return r;
            }
        }
    };
    tokio::time::timeout(limit, wait)
        .await
        .expect("report in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placed_on_the_hashed_node_and_found_again() {
    let net = MemNetwork::new(11);
    let regs = cluster(&net, 3).await;
    let (_placements, mut rx) = serve(&regs, &[0, 1, 2]).await;
    let t = tokio::time::Instant::now();

    // A key that hashes away from the caller: started remotely.
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| expected_node(&regs[0], &format!("{KIND}/{k}")) != *regs[0].node_id())
        .expect("some key hashes elsewhere");
    let name = format!("{KIND}/{key}");
    let expected = expected_node(&regs[0], &name);
    for r in &regs {
        assert_eq!(r.placement_target(KIND, &key).as_ref(), Some(&expected));
    }
    let pid = regs[0]
        .get_or_start(KIND, &key, LIMIT)
        .await
        .expect("started");
    assert_eq!(pid.node, expected, "placed on the rendezvous choice");
    let started = expect_report(&mut rx, LIMIT, |r| matches!(r, Report::Started(_))).await;
    assert!(matches!(started, Report::Started(ref p) if *p == pid));

    // The factory runs there: it echoes what is sent to its mailbox.
    regs[0].send(&pid, "ping").await.expect("sent");
    let echo = expect_report(&mut rx, LIMIT, |r| matches!(r, Report::Echo(..))).await;
    assert!(matches!(echo, Report::Echo(ref p, ref b) if *p == pid && &b[..] == b"ping"));

    // Another caller gets the same process, nothing new starts.
    let again = regs[2]
        .get_or_start(KIND, &key, LIMIT)
        .await
        .expect("found");
    assert_eq!(again, pid);
    assert_eq!(
        regs[1]
            .get_or_start(KIND, &key, LIMIT)
            .await
            .expect("found"),
        pid
    );

    // A key that hashes to the caller itself starts locally.
    let local_key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| expected_node(&regs[0], &format!("{KIND}/{k}")) == *regs[0].node_id())
        .expect("some key hashes to node-0");
    let local = regs[0]
        .get_or_start(KIND, &local_key, LIMIT)
        .await
        .expect("started");
    assert_eq!(local.node, *regs[0].node_id());
    let started = expect_report(&mut rx, LIMIT, |r| matches!(r, Report::Started(_))).await;
    assert!(matches!(started, Report::Started(ref p) if *p == local));
    assert!(rx.try_recv().is_err(), "no other process started");
    println!("placement round trips took {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_get_one_process_and_keys_spread() {
    let net = MemNetwork::new(12);
    let regs = cluster(&net, 3).await;
    let (_placements, mut rx) = serve(&regs, &[0, 1, 2]).await;
    let t = tokio::time::Instant::now();
    let mut nodes = HashSet::new();
    let mut pids = HashSet::new();
    for i in 0..20 {
        let key = format!("user-{i}");
        let (a, b, c) = tokio::join!(
            regs[0].get_or_start(KIND, &key, LIMIT),
            regs[1].get_or_start(KIND, &key, LIMIT),
            regs[2].get_or_start(KIND, &key, LIMIT),
        );
        let (a, b, c) = (a.expect("0"), b.expect("1"), c.expect("2"));
        assert_eq!(a, b, "{key}");
        assert_eq!(a, c, "{key}");
        assert_eq!(
            a.node,
            expected_node(&regs[0], &format!("{KIND}/{key}")),
            "{key}"
        );
        nodes.insert(a.node.clone());
        pids.insert(a);
    }
    assert_eq!(pids.len(), 20);
    assert!(nodes.len() > 1, "20 keys all went to {nodes:?}");
    // Exactly one process per key started (a duplicate would report a 21st start).
    let mut starts = HashSet::new();
    while starts.len() < 20 {
        if let Report::Started(p) =
            expect_report(&mut rx, LIMIT, |r| matches!(r, Report::Started(_))).await
        {
            assert!(pids.contains(&p), "unexpected process {p}");
            starts.insert(p);
        }
    }
    assert!(rx.try_recv().is_err(), "no duplicate started");
    println!(
        "20 keys × 3 concurrent callers in {:?}, over {} nodes",
        t.elapsed(),
        nodes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_the_factory_are_never_chosen() {
    let net = MemNetwork::new(13);
    let regs = cluster(&net, 3).await;
    let (mut placements, _rx) = serve(&regs, &[0, 1]).await;
    let servers = [regs[0].node_id().clone(), regs[1].node_id().clone()];
    for i in 0..20 {
        let pid = regs[2]
            .get_or_start(KIND, &format!("k{i}"), LIMIT)
            .await
            .expect("started");
        assert!(servers.contains(&pid.node), "placed on {}", pid.node);
    }

    // Errors: nobody serves the kind; invalid kinds and keys; one factory per kind per node.
    assert_eq!(
        regs[2].get_or_start("nobody", "k", LIMIT).await,
        Err(GetOrStartError::NoCandidates)
    );
    assert!(matches!(
        regs[0].get_or_start("a/b", "k", LIMIT).await,
        Err(GetOrStartError::InvalidKey(_))
    ));
    assert!(matches!(
        regs[0].get_or_start(KIND, "", LIMIT).await,
        Err(GetOrStartError::InvalidKey(_))
    ));
    assert!(matches!(
        regs[0].placement("", |_ctx| async {}).await,
        Err(PlacementError::InvalidKind(_))
    ));
    let first = placements[0].pid().clone();
    assert_eq!(
        regs[0].placement(KIND, |_ctx| async {}).await.err(),
        Some(PlacementError::AlreadyServing(first))
    );

    // Node 1 stops serving: new keys all go to node 0; existing ones keep running. (Dropping
    // leaves the group at once: a new factory for the kind is accepted right away.)
    drop(placements.remove(1));
    let again = regs[1]
        .placement(KIND, |_ctx| async {})
        .await
        .expect("serves again after the drop");
    drop(again);
    let group = format!("{PLACEMENT_GROUP_PREFIX}{KIND}");
    assert!(
        eventually(LIMIT, || regs
            .iter()
            .all(|r| r.members_of(&group).len() == 1))
        .await
        .is_some()
    );
    for i in 20..30 {
        let pid = regs[2]
            .get_or_start(KIND, &format!("k{i}"), LIMIT)
            .await
            .expect("started");
        assert_eq!(pid.node, servers[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_after_partition_is_settled_and_loser_stops() {
    let net = MemNetwork::new(14);
    let regs = cluster(&net, 3).await;
    let (_placements, mut rx) = serve(&regs, &[0, 1, 2]).await;
    let addrs: Vec<_> = regs.iter().map(Registry::local_addr).collect();
    let t = tokio::time::Instant::now();
    net.partition(&addrs[..1], &addrs[1..]);
    assert!(
        eventually(LIMIT, || regs[0].members().len() == 1
            && regs[1].members().len() == 2
            && regs[2].members().len() == 2)
        .await
        .is_some(),
        "partition not detected"
    );
    let split = t.elapsed();

    // Each side starts the process on its own: two holders of one name.
    let key = "shared";
    let a = regs[0]
        .get_or_start(KIND, key, LIMIT)
        .await
        .expect("side A starts");
    assert_eq!(a.node, *regs[0].node_id(), "side A has only itself");
    let b = regs[1]
        .get_or_start(KIND, key, LIMIT)
        .await
        .expect("side B starts");
    assert_ne!(a, b);
    assert_ne!(b.node, *regs[0].node_id());

    // Heal: the resolver keeps one (keep-oldest: usually A's, but the two registrations are
    // about a millisecond apart and node clocks have millisecond resolution, so either may be
    // older); the other process is told and stops.
    net.heal();
    let lost = expect_report(&mut rx, LIMIT * 3, |r| matches!(r, Report::Lost(..))).await;
    let Report::Lost(loser, Some(lost)) = lost else {
        panic!("expected a loss with a reason, got {lost:?}");
    };
    let winner = if loser == a {
        b.clone()
    } else {
        assert_eq!(loser, b, "a placed process loses: {lost:?}");
        a.clone()
    };
    assert_eq!(lost.reason, Reason::Conflict, "{lost:?}");
    assert_eq!(lost.winner.map(|w| w.pid), Some(winner.clone()));
    let exited = expect_report(&mut rx, LIMIT, |r| matches!(r, Report::Exited(_))).await;
    assert!(
        matches!(exited, Report::Exited(ref p) if *p == loser),
        "{exited:?}"
    );
    assert!(
        eventually(LIMIT, || regs
            .iter()
            .all(
                |r| r.lookup(&format!("{KIND}/{key}")).map(|e| e.pid) == Some(winner.clone())
            ))
        .await
        .is_some(),
        "one holder everywhere"
    );
    for r in &regs {
        assert_eq!(r.get_or_start(KIND, key, LIMIT).await, Ok(winner.clone()));
    }
    // The winner is still running and was never told it lost.
    regs[2].send(&winner, "still there?").await.expect("sent");
    let echo = expect_report(&mut rx, LIMIT, |r| !matches!(r, Report::Started(_))).await;
    assert!(
        matches!(echo, Report::Echo(ref p, _) if *p == winner),
        "{echo:?}"
    );
    println!(
        "partition detected after {split:?}, settled after {:?}",
        t.elapsed()
    );
}
