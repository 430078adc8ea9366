//! Push-pull membership (virtual time, `lan` preset): a cluster started at once forms within
//! the time its exchanges take, the answering budget bounds what a seed sends when everyone
//! joins through it, and once formed the exchanges fall back to the periodic interval (or stop).
//!
//! The bound for a cluster that joins at once: the join exchange is one round trip; the next
//! exchanges start at most `probe_period × 2^k` apart (k: quiet exchanges in a row, 0 while
//! they bring news), so a node's last fast exchange has ended by `probe_period × (2^followups
//! − 1)` plus a few round trips. One more probe period of slack covers the SWIM messages that
//! make both sides of an exchange see each other.

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
    cluster_with(nodes, seeds, seed, push_pull, |_| {})
}

fn cluster_with(
    nodes: usize,
    seeds: usize,
    seed: u64,
    push_pull: Option<PushPull>,
    tweak: impl FnOnce(&mut Config),
) -> Sim {
    println!("seed = {seed:#x}, nodes = {nodes}, seeds = {seeds}, push_pull = {push_pull:?}");
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.seeds = seeds;
    cfg.node = Config::lan().for_cluster_size(u32::try_from(nodes).unwrap_or(u32::MAX));
    cfg.node.push_pull = push_pull;
    tweak(&mut cfg.node);
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

/// Exchanges started (as asker) and push-pull bytes sent, summed over the live nodes.
fn exchanges(sim: &Sim) -> (u64, u64) {
    sim.live()
        .iter()
        .filter_map(|&i| sim.node(i).map(|n| n.stats()))
        .fold((0, 0), |(a, b), s| {
            (a + s.push_pull_started, b + s.push_pull_bytes_sent)
        })
}

/// Joins spread over time (one seed, a small answering budget, so most join exchanges are
/// refused and retried) and SWIM's gossip as thin as it gets in a cluster of thousands (one
/// transmission per update, no periodic announces): the members that arrive late must still
/// reach the nodes that joined early, through push-pull alone. The exchanges follow the news, so an early node that learns of a late one (as the
/// asker or as the one asked) passes it on within a probe period; the bound is the one above
/// counted from the last join (probe × 2^followups) plus one probe period per doubling of the
/// cluster for the news to spread (push-pull rumour spreading takes O(log N) rounds).
#[test]
fn late_joiners_reach_everyone_through_news_driven_rounds() {
    let seed = std::env::var("PIDMESH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1a7e);
    let nodes = 300usize;
    let pp = PushPull {
        answer_bytes_per_sec: 30_000,
        interval: None,
        ..PushPull::default()
    };
    let mut sim = cluster_with(nodes, 1, seed, Some(pp), |c| {
        c.swim.max_transmissions = std::num::NonZeroU8::MIN;
        c.swim.periodic_announce = None;
    });
    let probe = sim_probe(nodes);
    let log2 = usize::BITS - nodes.leading_zeros();
    // Every node has met someone (its join exchange has started) by then...
    let joined = sim.run_until(Duration::from_secs(60), Duration::from_millis(20), |s| {
        s.live()
            .iter()
            .all(|&i| s.node(i).is_some_and(|n| n.peers().count() > 0))
    });
    println!("every node met a member after {joined:?}");
    assert!(
        joined.is_some(),
        "seed {seed:#x}: some node never met anyone"
    );
    // ...and the cluster forms within the bound after that.
    let limit = probe * (1 << pp.followups) + probe * log2;
    let took = sim.run_until(limit, Duration::from_millis(20), formed);
    let fewest = sim
        .live()
        .iter()
        .filter_map(|&i| sim.node(i).map(|n| n.peers().count() + 1))
        .min();
    let (started, bytes) = exchanges(&sim);
    println!(
        "formed {took:?} after the last join (bound {limit:?}); fewest members seen {fewest:?}; \
         {started} exchanges, {bytes} B of lists"
    );
    assert!(
        took.is_some(),
        "seed {seed:#x}: not formed within {limit:?} of the last join (fewest seen {fewest:?})"
    );
}

fn sim_probe(nodes: usize) -> Duration {
    Config::lan()
        .for_cluster_size(u32::try_from(nodes).unwrap_or(u32::MAX))
        .swim
        .probe_period
}

/// Once formed, a node exchanges about once per ½–1 × `interval`: over a stretch of steady
/// state each node starts at most stretch / (interval / 2) + 1 exchanges, and at least one
/// (the periodic repair runs). With no interval the exchanges stop and cost no bytes.
#[test]
fn once_formed_exchanges_fall_back_to_the_interval_or_stop() {
    let seed = 0x57ead7u64;
    let nodes = 40usize;
    let every = Duration::from_secs(4);
    for interval in [Some(every), None] {
        let pp = PushPull {
            interval,
            ..PushPull::default()
        };
        let mut sim = cluster(nodes, 3, seed, Some(pp));
        let took = sim.run_until(Duration::from_secs(20), Duration::from_millis(20), formed);
        assert!(took.is_some(), "seed {seed:#x}: not formed");
        // Let the fast rounds end: at most probe × (2^followups − 1) after the last news.
        let probe = sim_probe(nodes);
        sim.run_for(probe * (1 << pp.followups));
        let per_node: Vec<u64> = (0..nodes)
            .filter_map(|i| sim.node(i).map(|n| n.stats().push_pull_started))
            .collect();
        let (_, bytes_before) = exchanges(&sim);
        let stretch = Duration::from_secs(20);
        sim.run_for(stretch);
        let (_, bytes_after) = exchanges(&sim);
        let more: Vec<u64> = (0..nodes)
            .filter_map(|i| sim.node(i).map(|n| n.stats().push_pull_started))
            .zip(&per_node)
            .map(|(now, then)| now - then)
            .collect();
        let most = more.iter().copied().max().unwrap_or(0);
        let least = more.iter().copied().min().unwrap_or(0);
        println!(
            "interval {interval:?}: over {stretch:?} of steady state a node started {least}..={most} \
             exchanges; {} B of lists sent in all",
            bytes_after - bytes_before
        );
        match interval {
            Some(every) => {
                let cap = (stretch.as_secs_f64() / (every.as_secs_f64() / 2.0)).floor() as u64 + 1;
                assert!(most <= cap, "a node started {most} exchanges, cap {cap}");
                assert!(least >= 1, "a node never ran the periodic exchange");
            }
            None => {
                assert_eq!(most, 0, "exchanges after the fast rounds ended");
                assert_eq!(bytes_after, bytes_before, "push-pull bytes in steady state");
            }
        }
    }
}
