//! 3–5 pidmesh nodes on 127.0.0.1 over QUIC (mutual TLS) and TCP: join, register, lookup
//! everywhere, messaging, a killed node's names vanishing, restart, partition and heal with a
//! conflict settled by every built-in resolver and a custom one. No sleeps as synchronization:
//! every wait is on a condition or an event, with a deadline.

use std::time::{Duration, Instant};

use pidmesh::{Config, Reason, Resolver, Verdict};
use pidmesh_tests::{Cluster, Kind, eventually};

const LIMIT: Duration = Duration::from_secs(20);

async fn basic_cycle(kind: Kind) {
    let mut c = Cluster::start(kind, 4, Resolver::keep_oldest(), Config::local())
        .await
        .expect("cluster forms");
    let (pid, mut inbox) = c.node(0).spawn_mailbox().expect("running");
    let _reg = c
        .node(0)
        .register("billing", &pid, "v1")
        .await
        .expect("registers");
    c.node(0)
        .join("workers", &pid, Vec::new())
        .await
        .expect("joins");
    for r in c.live() {
        assert_eq!(
            r.lookup_timeout("billing", LIMIT).await.map(|e| e.pid),
            Some(pid.clone()),
            "{kind:?}"
        );
    }
    // A message from a remote node reaches the mailbox.
    c.node(3).send(&pid, "ping").await.expect("sends");
    let m = tokio::time::timeout(LIMIT, inbox.recv())
        .await
        .expect("in time")
        .expect("open");
    assert_eq!(&m.body[..], b"ping");
    assert_eq!(m.from, *c.node(3).node_id());

    // Kill node 3 holding a name: it vanishes within failure detection.
    let (p3, _i3) = c.node(3).spawn_mailbox().expect("running");
    let _r3 = c
        .node(3)
        .register("on-three", &p3, Vec::new())
        .await
        .expect("registers");
    let n0 = c.node(0).clone();
    assert!(
        eventually(LIMIT, || n0.lookup("on-three").is_some())
            .await
            .is_some()
    );
    let killed = Instant::now();
    c.kill(3).await;
    let live = c.live();
    let gone = eventually(LIMIT, || {
        live.iter().all(|r| r.lookup("on-three").is_none())
    })
    .await;
    println!(
        "{kind:?}: killed node's name gone everywhere after {gone:?} ({:?} since kill)",
        killed.elapsed()
    );
    assert!(gone.is_some());

    // Restart it at the same address: a new life joins, its old names stay gone.
    c.restart(3).await.expect("restarts");
    let live = c.live();
    assert!(
        eventually(LIMIT, || live.iter().all(|r| r.members().len() == 4))
            .await
            .is_some(),
        "restarted node rejoins"
    );
    assert!(
        c.node(3).lookup_timeout("billing", LIMIT).await.is_some(),
        "the new life catches up"
    );
    assert!(live.iter().all(|r| r.lookup("on-three").is_none()));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_join_register_send_kill_restart() {
    basic_cycle(Kind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_tls_join_register_send_kill_restart() {
    basic_cycle(Kind::TcpTls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_cluster_key_join_register_send_kill_restart() {
    basic_cycle(Kind::Tcp).await;
}

/// Splits {0} | {1, 2}, lets node 0 then node 2 claim `leader`, heals, and returns the holder
/// every node agrees on, plus both claims' pids.
async fn split_brain(
    kind: Kind,
    resolver: Resolver,
) -> (
    Option<pidmesh::Pid>,
    pidmesh::Entry,
    pidmesh::Entry,
    Cluster,
) {
    let c = Cluster::start(kind, 3, resolver, Config::local())
        .await
        .expect("cluster forms");
    c.faults.partition(&c.addrs[..1], &c.addrs[1..]);
    let (n0, n1) = (c.node(0).clone(), c.node(1).clone());
    assert!(
        eventually(LIMIT, || n0.members().len() == 1 && n1.members().len() == 2)
            .await
            .is_some(),
        "sides split"
    );
    let (a, ia) = c.node(0).spawn_mailbox().expect("running");
    let (b, ib) = c.node(2).spawn_mailbox().expect("running");
    let mut ra = c
        .node(0)
        .register("leader", &a, Vec::new())
        .await
        .expect("side A claims");
    let mut rb = c
        .node(2)
        .register("leader", &b, Vec::new())
        .await
        .expect("side B claims");
    let healed = Instant::now();
    c.faults.heal();
    let live = c.live();
    let settled = eventually(LIMIT, || {
        let views: Vec<_> = live
            .iter()
            .map(|r| r.lookup("leader").map(|e| e.pid))
            .collect();
        live.iter().all(|r| r.members().len() == 3)
            && views.windows(2).all(|w| w[0] == w[1])
            && live.iter().all(|r| r.stats().entries <= 1)
    })
    .await;
    println!(
        "{kind:?}: heal → one winner everywhere after {settled:?} ({:?})",
        healed.elapsed()
    );
    assert!(settled.is_some(), "no single winner after heal");
    let holder = c.node(1).lookup("leader").map(|e| e.pid);

    // Every losing claim was told, with reason Conflict.
    for (pid, reg) in [(&a, &mut ra), (&b, &mut rb)] {
        if holder.as_ref() != Some(pid) {
            let lost = tokio::time::timeout(LIMIT, reg.lost())
                .await
                .expect("told in time")
                .expect("lost");
            assert_eq!(lost.reason, Reason::Conflict);
        }
    }
    let (ea, eb) = (ra.entry().clone(), rb.entry().clone());
    drop((ra, rb, ia, ib));
    // Order the two claims canonically (registration time, then node): what resolvers see.
    let (first, second) = if ea.canonical_cmp(&eb).is_lt() {
        (ea, eb)
    } else {
        (eb, ea)
    };
    (holder, first, second, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_heal_keep_oldest() {
    let (holder, first, _, c) = split_brain(Kind::Quic, Resolver::keep_oldest()).await;
    assert_eq!(holder, Some(first.pid), "the earlier claim wins");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_heal_keep_newest() {
    let (holder, _, second, c) = split_brain(Kind::Quic, Resolver::keep_newest()).await;
    assert_eq!(holder, Some(second.pid), "the later claim wins");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_heal_node_priority() {
    let (holder, x, y, c) =
        split_brain(Kind::Quic, Resolver::node_priority(["node-2", "node-0"])).await;
    let on_two = if &*x.pid.node.name == "node-2" { x } else { y };
    assert_eq!(holder, Some(on_two.pid), "node-2 has priority");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_heal_kill_both() {
    let (holder, _, _, c) = split_brain(Kind::Quic, Resolver::kill_both()).await;
    assert_eq!(holder, None, "kill-both frees the name");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_heal_custom_resolver() {
    // Prefer the claim whose node name sorts last.
    let custom = Resolver::custom(|_, c| {
        let best = c
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.pid.node.name.cmp(&y.1.pid.node.name));
        Verdict::Keep(best.map_or(0, |(i, _)| i))
    });
    let (holder, x, y, c) = split_brain(Kind::Quic, custom).await;
    let on_two = if &*x.pid.node.name == "node-2" { x } else { y };
    assert_eq!(holder, Some(on_two.pid));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_heal_keep_oldest() {
    let (holder, first, _, c) = split_brain(Kind::TcpTls, Resolver::keep_oldest()).await;
    assert_eq!(holder, Some(first.pid));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_foreign_ca_cannot_join() {
    use pidmesh_transport::tls::{dev_ca::DevCa, ring_provider};
    use pidmesh_transport_quic::{QuicConfig, QuicTransport};
    let c = Cluster::start(Kind::Quic, 3, Resolver::keep_oldest(), Config::local())
        .await
        .expect("cluster forms");
    let rogue_ca = DevCa::new("rogue").expect("ca");
    let tls = rogue_ca
        .cluster_tls("node-9", ring_provider())
        .expect("tls");
    let t = QuicTransport::bind("127.0.0.1:0".parse().expect("addr"), QuicConfig::new(tls))
        .await
        .expect("binds");
    let rogue = pidmesh::Registry::builder()
        .node_name("node-9")
        .seeds(c.addrs.iter().copied())
        .config(Config::local())
        .transport(t)
        .start()
        .await
        .expect("starts");
    let (pid, _inbox) = rogue.spawn_mailbox().expect("running");
    let _r = rogue
        .register("intruder", &pid, Vec::new())
        .await
        .expect("registers locally");
    // Give it far longer than it takes an honest node to join, watching for any sign of contact.
    let n0 = c.node(0).clone();
    let contact = eventually(Duration::from_secs(3), || {
        n0.members().len() > 3 || n0.lookup("intruder").is_some()
    })
    .await;
    assert!(
        contact.is_none(),
        "a node with a foreign certificate got in"
    );
    assert_eq!(rogue.members().len(), 1, "the rogue node sees nobody");
    rogue.shutdown().await;
    c.shutdown().await;
}
