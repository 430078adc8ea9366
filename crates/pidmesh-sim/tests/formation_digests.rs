//! Anti-entropy digests while a cluster forms (virtual time, `lan` preset rescaled for N): a
//! digest to a member that comes up is sent only when one side may hold dots the other lacks,
//! so N nodes that hold nothing form with O(N) digests (the periodic rounds), not one per pair
//! and direction; nodes that registered names before meeting still get every name to every
//! member, each owner's digest making the others pull its row.

use std::time::Duration;

use pidmesh_proto::{Config, Key};
use pidmesh_sim::{Sim, SimConfig, check};

fn seed_from_env(default: u64) -> u64 {
    std::env::var("PIDMESH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn cluster(nodes: usize, seed: u64) -> Sim {
    println!("seed = {seed:#x}, nodes = {nodes}");
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.seeds = 3.min(nodes);
    cfg.node = Config::lan().for_cluster_size(u32::try_from(nodes).unwrap_or(u32::MAX));
    Sim::new(cfg)
}

/// Every live node sees every other.
fn formed(sim: &Sim) -> bool {
    let live = sim.live();
    live.iter().all(|&i| {
        sim.node(i)
            .is_some_and(|n| n.peers().count() + 1 == live.len())
    })
}

/// Digests answered, summed over the live nodes (each digest sent and delivered is answered).
fn digests(sim: &Sim) -> u64 {
    sim.live()
        .iter()
        .filter_map(|&i| sim.node(i).map(|n| n.stats().digests_answered))
        .sum()
}

/// The bound of `push_pull.rs` for a cluster started at once: the fast exchanges end within
/// `probe_period × (2^followups − 1)`, plus one probe period for SWIM to confirm both sides.
fn formation_bound(config: &Config) -> Duration {
    let pp = config.push_pull.unwrap_or_default();
    let probe = config.swim.probe_period;
    probe * ((1u32 << pp.followups) - 1) + probe
}

#[test]
fn an_empty_cluster_forms_with_digests_linear_in_its_size() {
    let seed = seed_from_env(0xd1_6e57);
    let n = 200;
    let mut sim = cluster(n, seed);
    let limit = formation_bound(&Config::lan());
    let took = sim.run_until(limit, Duration::from_millis(20), formed);
    let sent = digests(&sim);
    println!(
        "formed after {took:?} (bound {limit:?}); {sent} digests answered, {} messages delivered",
        sim.delivered
    );
    assert!(
        took.is_some(),
        "seed {seed:#x}: {n} nodes not formed within {limit:?}"
    );
    // One per pair and direction would be n·(n−1) = 39,800. What remains is the periodic
    // round (one digest per node per `sync_interval`) and the digests of catch-ups that timed
    // out; 4 per node leaves room for those over the formation.
    let cap = 4 * n as u64;
    assert!(
        sent <= cap,
        "seed {seed:#x}: {sent} digests while {n} empty nodes formed (cap {cap})"
    );
}

#[test]
fn names_registered_before_the_nodes_meet_reach_every_member() {
    let seed = seed_from_env(0xd1_6e58);
    let n = 60;
    let owners = 10;
    let mut sim = cluster(n, seed);
    for i in 0..owners {
        let pid = sim.spawn(i * 5).expect("runs");
        sim.register(i * 5, &format!("early-{i}"), &pid)
            .expect("registers");
    }
    let took = sim.run_until(Duration::from_secs(30), Duration::from_millis(20), |s| {
        formed(s) && check::converged(s)
    });
    let sent = digests(&sim);
    println!(
        "formed and converged after {took:?}; {sent} digests answered, {} messages delivered",
        sim.delivered
    );
    assert!(
        took.is_some(),
        "seed {seed:#x}: not converged: {:?}",
        check::equal_state(&sim)
    );
    for i in sim.live() {
        let node = sim.node(i).expect("live");
        for o in 0..owners {
            let key = Key::name(format!("early-{o}"));
            assert!(
                node.registry()
                    .read(&key, |mut slots| slots.next().is_some()),
                "seed {seed:#x}: node {i} lacks early-{o}"
            );
        }
    }
    // Each owner's digest to each member and the member's pull in return, plus the periodic
    // rounds: about 2·owners·n, far under the n·(n−1) of one per pair and direction.
    let cap = (2 * owners as u64 + 4) * n as u64;
    assert!(
        sent <= cap,
        "seed {seed:#x}: {sent} digests for {owners} owners among {n} nodes (cap {cap})"
    );
}
