//! Strict registration over loopback QUIC (mutual TLS), 3 nodes, quorum 2, `local` preset:
//! the latency of registering a free name (one claim-check round trip to the peers), measured
//! over 50 names and printed as p50/p99; another node is refused while the name is held and
//! gets it after the release. Asserts only what must hold, never a time.

use std::time::{Duration, Instant};

use pidmesh::{Config, Resolver, StrictError};
use pidmesh_tests::{Cluster, Kind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_registration_over_quic() {
    let config = Config::local();
    let promise = config.singleton_promise();
    let c = Cluster::start(Kind::Quic, 3, Resolver::keep_oldest(), config)
        .await
        .expect("cluster forms");
    // Fresh nodes neither vouch nor count themselves for a lease until an earlier life's
    // promises could have run out.
    tokio::time::sleep(promise).await;
    let (a, b) = (c.node(0), c.node(1));
    let (pa, _ma) = a.spawn_mailbox().expect("running");
    let mut took = Vec::new();
    let mut guards = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        let g = a
            .register_strict(&format!("lock-{i}"), &pa, 2, Duration::from_secs(10))
            .await
            .expect("a quorum of 2 of 3 is up");
        took.push(t.elapsed());
        assert!(g.is_held());
        guards.push(g);
    }
    took.sort();
    println!(
        "strict registration over QUIC (3 nodes, quorum 2, local): p50 {:?}, p99 {:?}, max {:?} (50 names)",
        took[took.len() / 2],
        took[took.len() * 99 / 100],
        took[took.len() - 1]
    );
    let (pb, _mb) = b.spawn_mailbox().expect("running");
    // Wait until b knows a's claim (it travels as a normal delta), then b is refused.
    let seen =
        pidmesh_tests::eventually(Duration::from_secs(10), || b.lookup("lock-0").is_some()).await;
    assert!(seen.is_some());
    let refused = b
        .register_strict("lock-0", &pb, 2, Duration::from_millis(300))
        .await;
    assert!(
        matches!(refused, Err(StrictError::AlreadyRegistered(ref e)) if e.pid == pa),
        "{refused:?}"
    );
    drop(guards);
    let t = Instant::now();
    let g = b
        .register_strict("lock-0", &pb, 2, Duration::from_secs(10))
        .await
        .expect("free after the release");
    println!(
        "taken by another node after the release in {:?}",
        t.elapsed()
    );
    assert!(g.is_held());
    drop(g);
    c.shutdown().await;
}
