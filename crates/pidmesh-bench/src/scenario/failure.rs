//! **failure**: a node dies; how long until its names are gone everywhere.
//!
//! Per trial, on a fresh 3-node cluster: node 2 registers K names; once the other nodes hold
//! them, node 2 is silenced completely (every link to it cut, as a crashed host or a pulled
//! cable would) and aborted (its driver task stops without leaving the cluster). The clock
//! starts at the abort and stops when neither survivor holds any of its entries. This is
//! dominated by SWIM failure detection, so it mostly reflects the preset's timers (`lan`:
//! 1 s probes, 4 s suspicion; `local`: 200 ms probes, 600 ms suspicion).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::cluster::{Cluster, wait_for};
use crate::dist::Dist;

/// What the failure scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureResult {
    /// Names the victim held.
    pub names: usize,
    /// Trials run.
    pub trials: usize,
    /// Abort → every survivor dropped the victim from its members (s), per completed trial.
    pub member_down_secs: Dist,
    /// Abort → the victim's names gone on every survivor (s), per completed trial.
    pub names_gone_secs: Dist,
    /// Trials whose names were still present when the scenario gave up.
    pub not_converged: usize,
}

/// Runs the scenario.
///
/// # Errors
/// A cluster did not form, or the names never reached the survivors.
pub async fn run(s: &Settings, names: usize, trials: usize) -> anyhow::Result<FailureResult> {
    let mut down = Vec::new();
    let mut gone = Vec::new();
    let mut not_converged = 0;
    for _ in 0..trials {
        let cluster = Cluster::start(s.kind, 3, s.config()).await?;
        let victim = &cluster.nodes[2];
        let (pid, _mailbox) = victim.spawn_mailbox()?;
        let mut guards = Vec::with_capacity(names);
        for i in 0..names {
            guards.push(
                victim
                    .register(&format!("victim/{i:07}"), &pid, Vec::new())
                    .await?,
            );
        }
        wait_for(Duration::from_secs(30), Duration::from_millis(1), || {
            cluster.entries()[..2].iter().all(|&c| c >= names)
        })
        .await
        .context("the victim's names never reached the survivors")?;
        cluster
            .faults
            .partition(&cluster.addrs[2..], &cluster.addrs[..2]);
        let t0 = Instant::now();
        victim.abort();
        let survivors = &cluster.nodes[..2];
        let limit = Duration::from_secs(120);
        let mut t_down = None;
        let t_gone = wait_for(limit, Duration::from_millis(1), || {
            if t_down.is_none() && survivors.iter().all(|r| r.members().len() == 2) {
                t_down = Some(t0.elapsed());
            }
            survivors.iter().all(|r| r.stats().entries == 0)
        })
        .await
        .map(|_| t0.elapsed());
        if let Some(d) = t_down {
            down.push(d.as_secs_f64());
        }
        match t_gone {
            Some(d) => gone.push(d.as_secs_f64()),
            None => not_converged += 1,
        }
        drop(guards);
        cluster.shutdown().await;
    }
    Ok(FailureResult {
        names,
        trials,
        member_down_secs: Dist::of(&down),
        names_gone_secs: Dist::of(&gone),
        not_converged,
    })
}
