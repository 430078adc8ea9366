//! **call**: request/reply round trips (`Registry::call`) on an idle 2-node cluster.
//!
//! An echo process on node 0 answers every request with its body (8 bytes). Measured:
//! * local round trip: N calls one at a time from node 0 to its own process;
//! * remote round trip: N calls one at a time from node 1 over the transport (low load);
//! * throughput: `concurrency` tasks on node 1 calling back to back for a fixed number of
//!   calls in total; calls per second over the whole batch.
//!
//! The load average (from /proc/loadavg) before and after the run is reported beside the
//! figures: the machine may be shared.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::cluster::Cluster;
use crate::dist::Dist;

/// What the call scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallResult {
    /// Calls per latency sample set.
    pub n: usize,
    /// Local call round trip (µs).
    pub local_us: Dist,
    /// Remote call round trip (µs).
    pub remote_us: Dist,
    /// Concurrent callers in the throughput run.
    pub concurrency: usize,
    /// Calls in the throughput run.
    pub throughput_calls: usize,
    /// Remote calls per second, `concurrency` callers on node 1.
    pub remote_calls_per_sec: f64,
    /// Local calls per second, `concurrency` callers on node 0.
    pub local_calls_per_sec: f64,
    /// /proc/loadavg before and after.
    pub load_avg: String,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

async fn throughput(
    caller: &pidmesh::Registry,
    to: &pidmesh::Pid,
    concurrency: usize,
    total: usize,
) -> anyhow::Result<f64> {
    let left = Arc::new(AtomicUsize::new(total));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (caller, to, left) = (caller.clone(), to.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            while left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
            {
                caller
                    .call(&to, &b"12345678"[..], Duration::from_secs(10))
                    .await?;
            }
            Ok::<(), pidmesh::CallError>(())
        }));
    }
    for t in tasks {
        t.await?.context("throughput call")?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Runs the scenario.
///
/// # Errors
/// The cluster did not form, or a call failed.
pub async fn run(s: &Settings, n: usize) -> anyhow::Result<CallResult> {
    let before = loadavg();
    let cluster = Cluster::start(s.kind, 2, s.config()).await?;
    let (server, mut inbox) = cluster.nodes[0].spawn_mailbox()?;
    let echo = tokio::spawn(async move {
        while let Some(m) = inbox.recv().await {
            let body = m.body.clone();
            let _ = m.reply(body);
        }
    });
    let timeout = Duration::from_secs(10);
    let sample = |samples: &mut Vec<f64>, t: Instant| {
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    };
    let mut local = Vec::with_capacity(n);
    let mut remote = Vec::with_capacity(n);
    // Warm up both paths (connections, allocations).
    for _ in 0..100 {
        cluster.nodes[1]
            .call(&server, &b"warmup.."[..], timeout)
            .await?;
        cluster.nodes[0]
            .call(&server, &b"warmup.."[..], timeout)
            .await?;
    }
    for _ in 0..n {
        let t = Instant::now();
        cluster.nodes[0]
            .call(&server, &b"12345678"[..], timeout)
            .await?;
        sample(&mut local, t);
    }
    for _ in 0..n {
        let t = Instant::now();
        cluster.nodes[1]
            .call(&server, &b"12345678"[..], timeout)
            .await?;
        sample(&mut remote, t);
    }
    let concurrency = 64;
    let total = if s.smoke { 2_000 } else { 200_000 };
    let remote_rate = throughput(&cluster.nodes[1], &server, concurrency, total).await?;
    let local_rate = throughput(&cluster.nodes[0], &server, concurrency, total).await?;
    echo.abort();
    cluster.shutdown().await;
    Ok(CallResult {
        n,
        local_us: Dist::of(&local),
        remote_us: Dist::of(&remote),
        concurrency,
        throughput_calls: total,
        remote_calls_per_sec: remote_rate,
        local_calls_per_sec: local_rate,
        load_avg: format!("{before} → {}", loadavg()),
    })
}
