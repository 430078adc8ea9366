//! **latency**: single-registration propagation on a fresh, idle 3-node cluster.
//!
//! N registrations are issued one at a time on node 0; for each, the clock starts when
//! `register` returns (the entry is then visible locally) and stops when both other nodes have
//! emitted `Event::Registered` for that entry's dot (subscriptions opened beforehand). The next
//! registration starts only after the previous one is visible everywhere, so each measures an
//! idle cluster's propagation path: delta batch window, transport, decode, merge, event.
//!
//! Also reported: how long `register` itself takes (the local write), and, in the same run on
//! a fresh cluster, the propagation with `Config::delta_burst` = 1: a push gap of a whole batch
//! window, so at most one change pushed at once per window (the comparison shows what pushing
//! on an idle link changes for changes that follow each other closely).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pidmesh::Event;
use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::cluster::Cluster;
use crate::dist::Dist;

/// What the latency scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyResult {
    /// Registrations measured.
    pub n: usize,
    /// `register` returned → visible on every other node (ms).
    pub propagation_ms: Dist,
    /// Every propagation sample (ms), in issue order (for the CDF plot).
    pub samples_ms: Vec<f64>,
    /// Duration of the `register` call itself (µs).
    pub register_call_us: Dist,
    /// The same measurement with `delta_burst` = 1 (one immediate push per window), same run.
    #[serde(default)]
    pub burst1_propagation_ms: Option<Dist>,
    /// How many of the `n` registrations had their delta batch pushed within the `register`
    /// call (the rest waited for the node's flush timer): a count, not a time.
    #[serde(default)]
    pub pushed_at_once: Option<usize>,
    /// The same count with `delta_burst` = 1.
    #[serde(default)]
    pub burst1_pushed_at_once: Option<usize>,
}

/// Runs the scenario.
///
/// # Errors
/// The cluster did not form, a registration failed, or an entry did not arrive within 10 s.
pub async fn run(s: &Settings, n: usize) -> anyhow::Result<LatencyResult> {
    let mut one = s.config();
    one.delta_burst = std::num::NonZeroU32::MIN;
    let (burst1, _, _, burst1_at_once) = measure(s, n, one).await?;
    let (lat, call, samples, at_once) = measure(s, n, s.config()).await?;
    Ok(LatencyResult {
        n,
        propagation_ms: lat,
        register_call_us: call,
        samples_ms: samples,
        burst1_propagation_ms: Some(burst1),
        pushed_at_once: Some(at_once),
        burst1_pushed_at_once: Some(burst1_at_once),
    })
}

/// One cluster, `n` registrations one at a time: (propagation ms, register call µs, samples,
/// registrations whose batch was pushed within the call).
async fn measure(
    s: &Settings,
    n: usize,
    config: pidmesh::Config,
) -> anyhow::Result<(Dist, Dist, Vec<f64>, usize)> {
    let cluster = Cluster::start(s.kind, 3, config).await?;
    let mut subs: Vec<_> = cluster.nodes[1..]
        .iter()
        .map(pidmesh::Registry::subscribe)
        .collect();
    let (pid, _mailbox) = cluster.nodes[0].spawn_mailbox()?;
    let mut guards = Vec::with_capacity(n);
    let mut lat = Vec::with_capacity(n);
    let mut call = Vec::with_capacity(n);
    let mut at_once = 0;
    for i in 0..n {
        let name = format!("lat/{i:07}");
        let batches = cluster.nodes[0].stats().batches_sent;
        let t_call = Instant::now();
        let reg = cluster.nodes[0]
            .register(&name, &pid, Vec::new())
            .await
            .with_context(|| format!("register {name}"))?;
        let t0 = Instant::now();
        call.push((t0 - t_call).as_secs_f64() * 1e6);
        if cluster.nodes[0].stats().batches_sent > batches {
            at_once += 1;
        }
        let dot = reg.entry().dot.clone();
        for sub in &mut subs {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), sub.recv()).await {
                    Ok(Some(Event::Registered(e))) if e.dot == dot => break,
                    Ok(Some(_)) => {}
                    Ok(None) => bail!("a node stopped"),
                    Err(_) => bail!("{name} not visible on every node after 10 s"),
                }
            }
        }
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
        guards.push(reg);
    }
    cluster.shutdown().await;
    drop(guards);
    Ok((Dist::of(&lat), Dist::of(&call), lat, at_once))
}
