//! Helpers shared by the facade's integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::Duration;

use pidmesh::Registry;

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
