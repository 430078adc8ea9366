//! **heal**: a partition heals with N names claimed on both sides.
//!
//! On a fresh 3-node cluster, node 0 is cut off from nodes 1 and 2 (both ways) and the scenario
//! waits until both sides have declared the other down. Then node 0 registers N names and node 2
//! registers the same N names (other processes). The links are restored and the clock starts.
//! Two moments are reported:
//! - **one winner everywhere**: every node answers `lookup` for every name, and all nodes give
//!   the same pid (the resolver is applied to unresolved conflicts at lookup time, so this can
//!   precede the losers' removal);
//! - **clean**: additionally every node holds exactly N entries (every loser's entry removed).
//!
//! The resolver is keep-oldest, and node 0 registered first, so node 0 should win every name;
//! the winners per node are reported as a check.
//!
//! Where the time goes is sampled every millisecond on a thread of its own ([`HealPhases`]):
//! the first contact across the healed link (SWIM only; the registry cannot start before it),
//! when each node saw all members again, when its registry first and last changed, and how
//! many conflicts each node resolved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use pidmesh::Registry;
use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::cluster::{Cluster, wait_for};

/// What the heal scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealResult {
    /// Conflicting names.
    pub n: usize,
    /// Seconds from cutting the links until both sides declared each other down.
    pub split_secs: f64,
    /// Heal → every node sees all 3 members again (s); watched for up to 30 s after the names
    /// settled (results of older runs stop watching when the names settle).
    pub members_secs: Option<f64>,
    /// Heal → the first node that sees a member of the other side again (s): node 0 sees
    /// anyone, or node 1 or 2 sees node 0. That is the first SWIM exchange across the healed
    /// link, which only an announce can start (both sides hold the other down). What follows
    /// it is the registry's own work.
    #[serde(default)]
    pub contact_secs: Option<f64>,
    /// Heal → every node shows the same winner for every name (s).
    pub one_winner_secs: Option<f64>,
    /// Heal → one winner and every loser's entry gone on every node (s).
    pub clean_secs: Option<f64>,
    /// Entries held by each node at the end (N when clean).
    pub final_entries: Vec<usize>,
    /// How many names each node's processes won (by node name), as node 0 sees it.
    pub winners: BTreeMap<String, usize>,
    /// Where the time after the heal went, per node (results of older runs have none).
    #[serde(default)]
    pub phases: Option<HealPhases>,
}

/// The heal's timeline per node, sampled every millisecond (seconds from the heal).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HealPhases {
    /// When each node first saw all 3 members again (the registry exchange with a peer starts
    /// when the node sees it).
    pub members_back_secs: Vec<Option<f64>>,
    /// When each node's registry first changed (entry count or conflicts resolved): the other
    /// side's state reached it. `None`: it never changed (it held the final state already).
    pub first_change_secs: Vec<Option<f64>>,
    /// When each node's registry last changed: from then on it held its final N entries.
    pub last_change_secs: Vec<Option<f64>>,
    /// Conflicts each node resolved after the heal (one resolver run per contested name at most).
    pub conflicts_resolved: Vec<u64>,
    /// 1-minute load average when the heal started (from /proc/loadavg).
    pub loadavg_1m: Option<f64>,
}

/// What the sampler saw, per node: members back, first and last registry change.
type Timeline = (
    Option<Duration>,
    Vec<Option<Duration>>,
    Vec<Option<Duration>>,
    Vec<Option<Duration>>,
);

/// Samples contact, every node's members and registry counters every millisecond until `stop`
/// is set (or 120 s pass).
fn sample(nodes: Vec<Registry>, t0: Instant, stop: Arc<AtomicBool>) -> Timeline {
    let probe = |r: &Registry| {
        let s = r.stats();
        (s.entries, s.conflicts_resolved)
    };
    let mut contact = None;
    let mut last: Vec<(usize, u64)> = nodes.iter().map(probe).collect();
    let mut back = vec![None; nodes.len()];
    let mut first = vec![None; nodes.len()];
    let mut changed = vec![None; nodes.len()];
    while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(120) {
        let now = t0.elapsed();
        // Node 0 was cut off alone: it sees anyone, or one of the others sees all three.
        let across = nodes[0].members().len() > 1
            || nodes[1..].iter().any(|r| r.members().len() == nodes.len());
        if contact.is_none() && across {
            contact = Some(now);
        }
        for (i, r) in nodes.iter().enumerate() {
            if back[i].is_none() && r.members().len() == nodes.len() {
                back[i] = Some(now);
            }
            let p = probe(r);
            if p != last[i] {
                last[i] = p;
                first[i] = first[i].or(Some(now));
                changed[i] = Some(now);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    (contact, back, first, changed)
}

/// The winner of every name on `node` (`None` where it has none).
fn winners(node: &Registry, names: &[String]) -> Vec<Option<pidmesh::Pid>> {
    names
        .iter()
        .map(|n| node.lookup(n).map(|e| e.pid))
        .collect()
}

fn one_winner(nodes: &[Registry], names: &[String]) -> bool {
    let first = winners(&nodes[0], names);
    first.iter().all(Option::is_some) && nodes[1..].iter().all(|r| winners(r, names) == first)
}

/// Runs the scenario.
///
/// # Errors
/// The cluster did not form or split, or a registration failed.
pub async fn run(s: &Settings, n: usize) -> anyhow::Result<HealResult> {
    let cluster = Cluster::start(s.kind, 3, s.config()).await?;
    let nodes = &cluster.nodes;
    let t_cut = Instant::now();
    cluster
        .faults
        .partition(&cluster.addrs[..1], &cluster.addrs[1..]);
    let split = wait_for(Duration::from_secs(60), Duration::from_millis(5), || {
        nodes[0].members().len() == 1
            && nodes[1].members().len() == 2
            && nodes[2].members().len() == 2
    })
    .await;
    if split.is_none() {
        bail!(
            "the partition was not detected within 60 s (members seen: {:?})",
            nodes.iter().map(|r| r.members().len()).collect::<Vec<_>>()
        );
    }
    let split_secs = t_cut.elapsed().as_secs_f64();

    let names: Vec<String> = (0..n).map(|i| format!("contested/{i:07}")).collect();
    let (a, _ma) = nodes[0].spawn_mailbox()?;
    let (b, _mb) = nodes[2].spawn_mailbox()?;
    let mut guards = Vec::with_capacity(2 * n);
    for name in &names {
        guards.push(nodes[0].register(name, &a, Vec::new()).await?);
    }
    for name in &names {
        guards.push(nodes[2].register(name, &b, Vec::new()).await?);
    }
    // Both sides hold their own claims before the heal.
    wait_for(Duration::from_secs(30), Duration::from_millis(5), || {
        nodes[1].stats().entries >= n
    })
    .await;

    let resolved_before: Vec<u64> = nodes.iter().map(|r| r.stats().conflicts_resolved).collect();
    let loadavg_1m = crate::report::loadavg().map(|l| l[0]);
    let t0 = Instant::now();
    cluster.faults.heal();
    // Sampled on a thread of its own, every millisecond, so the moments are not blurred by
    // the (slower) winner checks below.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (nodes, stop) = (nodes.clone(), Arc::clone(&stop));
        std::thread::spawn(move || sample(nodes, t0, stop))
    };
    let limit = Duration::from_secs(120);
    let mut members = None;
    let mut agree = None;
    let clean = wait_for(limit, Duration::from_millis(5), || {
        if members.is_none() && nodes.iter().all(|r| r.members().len() == 3) {
            members = Some(t0.elapsed());
        }
        if agree.is_none() && one_winner(nodes, &names) {
            agree = Some(t0.elapsed());
        }
        agree.is_some() && nodes.iter().all(|r| r.stats().entries == n)
    })
    .await
    .map(|_| t0.elapsed());
    if members.is_none() {
        // The registry can settle before SWIM has re-formed the full membership everywhere.
        members = wait_for(Duration::from_secs(30), Duration::from_millis(5), || {
            nodes.iter().all(|r| r.members().len() == 3)
        })
        .await
        .map(|_| t0.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let (contact, back, first, changed) = sampler.join().unwrap_or_default();
    let secs =
        |v: Vec<Option<Duration>>| v.into_iter().map(|d| d.map(|d| d.as_secs_f64())).collect();
    let phases = HealPhases {
        members_back_secs: secs(back),
        first_change_secs: secs(first),
        last_change_secs: secs(changed),
        conflicts_resolved: nodes
            .iter()
            .zip(&resolved_before)
            .map(|(r, b)| r.stats().conflicts_resolved.saturating_sub(*b))
            .collect(),
        loadavg_1m,
    };
    let final_entries = cluster.entries();
    let mut won = BTreeMap::new();
    for w in winners(&nodes[0], &names).into_iter().flatten() {
        *won.entry(w.node.name.to_string()).or_insert(0) += 1;
    }
    cluster.shutdown().await;
    drop(guards);
    Ok(HealResult {
        n,
        split_secs,
        members_secs: members.map(|d| d.as_secs_f64()),
        contact_secs: contact.map(|d| d.as_secs_f64()),
        one_winner_secs: agree.map(|d| d.as_secs_f64()),
        clean_secs: clean.map(|d| d.as_secs_f64()),
        final_entries,
        winners: won,
        phases: Some(phases),
    })
}
