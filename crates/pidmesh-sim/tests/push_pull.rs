//! Push-pull membership on join (virtual time, `lan` preset): a cluster started at once forms
//! within the time its follow-up exchanges take, and the answering budget bounds what a seed
//! sends when everyone joins through it.
//!
//! The bound: the join exchange is one round trip; follow-up k starts at most
//! `probe_period × 2^k` after the previous one ended, so the last one has ended by
//! `probe_period × (2^followups − 1)` plus a few round trips. One more probe period of slack
//! covers the SWIM messages that make both sides of an exchange see each other.

use std::time::Duration;

use pidmesh_proto::{Config, PushPull};
use pidmesh_sim::{Sim, SimConfig};

/// Every live node sees every other.
fn formed(sim: &Sim) -> bool {
    let live = sim.live();
    live.iter().all(|&i| {
        sim.node(i)
            .is_some_and(|n| n.peers().count() + 1 == live.len())
    })
}

fn cluster(nodes: usize, seeds: usize, seed: u64, push_pull: Option<PushPull>) -> Sim {
    println!("seed = {seed:#x}, nodes = {nodes}, seeds = {seeds}, push_pull = {push_pull:?}");
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.seeds = seeds;
    cfg.node = Config::lan().for_cluster_size(u32::try_from(nodes).unwrap_or(u32::MAX));
    cfg.node.push_pull = push_pull;
    Sim::new(cfg)
}

fn bound(config: &Config) -> Duration {
    let pp = config.push_pull.unwrap_or_default();
    let probe = config.swim.probe_period;
    probe * ((1u32 << pp.followups) - 1) + probe
}

#[test]
fn a_cluster_started_at_once_forms_within_its_follow_ups() {
    let seed = std::env::var("PIDMESH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5ca1e);
    let mut sim = cluster(200, 3, seed, Some(PushPull::default()));
    let limit = bound(&Config::lan());
    let took = sim.run_until(limit, Duration::from_millis(20), formed);
    let fewest = sim
        .live()
        .iter()
        .filter_map(|&i| sim.node(i).map(|n| n.peers().count() + 1))
        .min();
    println!("formed after {took:?} (bound {limit:?}); fewest members seen {fewest:?}");
    assert!(
        took.is_some(),
        "seed {seed:#x}: 200 nodes not formed within {limit:?} (fewest members seen {fewest:?})"
    );
    let completed: u64 = (0..200)
        .filter_map(|i| sim.node(i).map(|n| n.stats().push_pull_completed))
        .sum();
    assert!(
        completed >= 200,
        "every node completed its join exchange: {completed}"
    );
}

#[test]
fn a_seed_answers_within_its_budget_and_the_rest_ask_elsewhere() {
    let seed = 0xb0d9e7;
    let rate = 20_000u64;
    let pp = PushPull {
        answer_bytes_per_sec: rate,
        ..PushPull::default()
    };
    let nodes = 150;
    let mut sim = cluster(nodes, 1, seed, Some(pp));
    let took = sim.run_until(Duration::from_secs(20), Duration::from_millis(20), formed);
    assert!(took.is_some(), "seed {seed:#x}: not formed");
    let secs = sim.elapsed().as_secs_f64();
    let stats: Vec<_> = (0..nodes)
        .filter_map(|i| sim.node(i).map(|n| n.stats()))
        .collect();
    let refused: u64 = stats.iter().map(|s| s.push_pull_refused).sum();
    let seed_stats = &stats[0];
    println!(
        "formed after {took:?}; seed answered {} and refused {}, sent {} B of lists; {refused} \
         refusals in all",
        seed_stats.push_pull_answered,
        seed_stats.push_pull_refused,
        seed_stats.push_pull_bytes_sent
    );
    assert!(
        seed_stats.push_pull_refused > 0,
        "the seed never ran out of budget"
    );
    // What the seed spent answering: at most one second's worth plus the refill. Refusals are
    // small fixed-size messages, a list's envelope a few bytes more than its estimate.
    let busy_len = 20 * seed_stats.push_pull_refused;
    let envelope = 16 * seed_stats.push_pull_answered;
    let budget = (rate as f64 * (1.0 + secs)) as u64;
    assert!(
        seed_stats.push_pull_bytes_sent <= budget + busy_len + envelope,
        "seed sent {} B of lists, budget {budget} B over {secs:.1} s",
        seed_stats.push_pull_bytes_sent
    );
}
