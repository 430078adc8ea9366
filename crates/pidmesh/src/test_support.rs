//! Helpers for the crate's own unit tests.

use std::time::{Duration, Instant};

use pidmesh_transport::MemNetwork;

use crate::Registry;

/// Two registries (`node-0`, `node-1`, `local` timers) on an in-memory network seeded with
/// `seed` (printed), returned once each sees both members. Panics after 10 s.
pub(crate) async fn two_node_cluster(seed: u64) -> Vec<Registry> {
    println!("seed = {seed:#x}");
    let net = MemNetwork::new(seed);
    let t0 = net.bind_named("node-0");
    let t1 = net.bind_named("node-1");
    let seeds = vec![pidmesh_transport::Transport::local_addr(&t0)];
    let mut regs = Vec::new();
    for (name, t) in [("node-0", t0), ("node-1", t1)] {
        regs.push(
            Registry::builder()
                .node_name(name)
                .config(crate::Config::local())
                .seeds(seeds.clone())
                .transport(t)
                .start()
                .await
                .expect("starts"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while regs.iter().any(|r| r.members().len() < 2) {
        assert!(Instant::now() < deadline, "cluster did not form");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    regs
}
