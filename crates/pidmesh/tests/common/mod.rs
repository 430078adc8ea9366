//! Helpers shared by the facade's integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::Duration;

use pidmesh::{Config, Registry, Resolver};
use pidmesh_transport::MemNetwork;

/// How long tests wait for anything to converge.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Polls `cond` every 5 ms until it holds or `limit` passes; returns how long it took.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// True when every registry sees all the others (and only them) as members.
pub fn formed(regs: &[Registry]) -> bool {
    regs.iter().all(|r| r.members().len() == regs.len())
}

/// Starts `n` nodes `node-0..` on `net` (the first two are seeds, `local` preset) and waits
/// until they all see each other.
pub async fn cluster(net: &MemNetwork, n: usize, resolver: Resolver) -> Vec<Registry> {
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
            .resolver(resolver.clone())
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
