//! The churn soak: 3 nodes (the `lan` preset) hold 2,000 live names that are replaced at a
//! steady rate (unregister one, register a fresh name on a random node), in virtual time and
//! without faults. Every 30 s of virtual time it prints, per node: whole-row resends
//! (`Stats::full_syncs`) per second, sync bytes sent, sync chunks applied and digests answered,
//! so the anti-entropy cost can be compared with the live state (which stays at 2,000 names).
//!
//! `cargo run --release -p pidmesh-sim --example churn_soak -- [seconds=240] [ops_per_sec=5000] [live=2000] [seed=1]`

use std::time::{Duration, Instant};

use pidmesh_proto::{Config, Key, Pid};
use pidmesh_sim::{Sim, SimConfig, check};
use rand::RngExt;

const NODES: usize = 3;
const REPORT_EVERY: Duration = Duration::from_secs(30);

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = arg(1, 240);
    let rate = arg(2, 5000).max(1);
    let live = usize::try_from(arg(3, 2000)).unwrap_or(2000);
    let seed = arg(4, 1);
    println!(
        "churn soak: {NODES} nodes (lan preset), {live} live names replaced at {rate} ops/s for {seconds} s of virtual time, seed {seed}"
    );
    let mut cfg = SimConfig::new(NODES, seed);
    cfg.node = Config::lan();
    let mut sim = Sim::new(cfg);
    let formed = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    );
    assert!(formed.is_some(), "the cluster did not form");
    let pids: Vec<Vec<Pid>> = (0..NODES)
        .map(|i| (0..64).filter_map(|_| sim.spawn(i)).collect())
        .collect();
    let mut names: Vec<(usize, Key, Pid)> = Vec::with_capacity(live);
    let mut next_name = 0u64;
    let mut fresh = |sim: &mut Sim, names: &mut Vec<(usize, Key, Pid)>| {
        let i = sim.rng().random_range(0..NODES);
        let pid = pids[i][sim.rng().random_range(0..pids[i].len())].clone();
        let name = format!("churn-{next_name}");
        next_name += 1;
        if let Some(e) = sim.register(i, &name, &pid) {
            names.push((i, e.key, pid));
        }
    };
    while names.len() < live {
        fresh(&mut sim, &mut names);
    }
    sim.run_for(Duration::from_secs(5));
    let gap = Duration::from_nanos(1_000_000_000 / rate);
    let started = Instant::now();
    let t0 = sim.elapsed();
    let mut last = stats(&sim);
    let mut next_report = REPORT_EVERY;
    let mut ops = 0u64;
    println!(
        "{:>6} {:>5} {:>14} {:>16} {:>14} {:>10} {:>8}",
        "t(s)", "node", "full syncs/s", "sync bytes/30s", "chunks/30s", "digests", "entries"
    );
    while sim.elapsed() - t0 < Duration::from_secs(seconds) {
        let k = sim.rng().random_range(0..names.len());
        let (i, key, pid) = names.swap_remove(k);
        sim.remove(i, &key, &pid);
        fresh(&mut sim, &mut names);
        ops += 1;
        sim.run_for(gap);
        if sim.elapsed() - t0 >= next_report {
            let now = stats(&sim);
            for n in 0..NODES {
                let (f, b, c, d, e) = now[n];
                let (f0, b0, c0, d0, _) = last[n];
                println!(
                    "{:>6} {:>5} {:>14.2} {:>16} {:>14} {:>10} {:>8}",
                    next_report.as_secs(),
                    format!("n{n}"),
                    (f - f0) as f64 / REPORT_EVERY.as_secs_f64(),
                    b - b0,
                    c - c0,
                    d - d0,
                    e
                );
            }
            last = now;
            next_report += REPORT_EVERY;
        }
    }
    sim.run_for(Duration::from_secs(5));
    let totals = stats(&sim);
    let full: u64 = totals.iter().map(|t| t.0).sum();
    let bytes: u64 = totals.iter().map(|t| t.1).sum();
    println!(
        "{ops} replacements in {:.1?} wall; whole-row resends over all nodes: {full}; sync bytes over all nodes: {bytes}; converged: {}",
        started.elapsed(),
        check::converged(&sim)
    );
}

/// Per node: (full syncs, sync bytes sent, chunks applied, digests answered, entries).
fn stats(sim: &Sim) -> Vec<(u64, u64, u64, u64, usize)> {
    (0..NODES)
        .map(|i| {
            sim.node(i).map_or((0, 0, 0, 0, 0), |n| {
                let s = n.stats();
                (
                    s.full_syncs,
                    s.sync_bytes_sent,
                    s.chunks_applied,
                    s.digests_answered,
                    s.entries,
                )
            })
        })
        .collect()
}
