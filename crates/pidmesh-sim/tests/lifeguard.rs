//! The failure detector under local slowness (virtual time, `lan` preset, 6 nodes): a node
//! whose processing stalls for 2.5 s at a time is suspected by the others, refutes when it
//! resumes, and is never declared down; with Lifeguard on, its local health score rises. A
//! crashed node is still declared down.

use std::time::Duration;

use pidmesh_sim::{Sim, SimConfig, check};

const NODES: usize = 6;
const SLOW: usize = NODES - 1;

fn cluster(seed: u64, lifeguard: bool) -> Sim {
    println!("seed = {seed:#x}, lifeguard = {lifeguard}");
    let mut cfg = SimConfig::new(NODES, seed);
    cfg.node = pidmesh_proto::Config::lan();
    if !lifeguard {
        cfg.node.lifeguard = None;
    }
    let mut sim = Sim::new(cfg);
    let formed = sim.run_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        check::membership_agrees_ok,
    );
    assert!(formed.is_some(), "cluster did not form");
    sim
}

fn rejoins(sim: &Sim) -> u64 {
    (0..NODES)
        .filter_map(|i| sim.node(i).map(|n| n.stats().rejoins))
        .sum()
}

/// Stalls the slow node for 2.5 s every 4 s, `rounds` times.
fn stall_repeatedly(sim: &mut Sim, rounds: usize) {
    for _ in 0..rounds {
        sim.stall(SLOW, Duration::from_millis(2_500));
        sim.run_for(Duration::from_secs(4));
    }
    sim.run_for(Duration::from_secs(10));
}

#[test]
fn slow_node_is_not_declared_down_and_its_health_score_rises() {
    for seed in [1, 2, 3] {
        let mut sim = cluster(seed, true);
        let before = rejoins(&sim);
        stall_repeatedly(&mut sim, 10);
        let peak = sim.node(SLOW).map_or(0, pidmesh_proto::Node::health_peak);
        let suspected: u64 = (0..NODES)
            .filter_map(|i| sim.node(i).map(|n| n.stats().refuted_suspicions))
            .sum();
        println!(
            "false downs {}, slow node's peak health score {peak}, refuted suspicions {suspected}",
            rejoins(&sim) - before
        );
        assert!(peak > 0, "the slow node's health score never rose");
        assert_eq!(rejoins(&sim), before, "a live node was declared down");
        assert!(
            check::membership_agrees_ok(&sim),
            "membership does not agree"
        );
    }
}

#[test]
fn refuted_suspicions_are_not_downs_with_plain_swim() {
    for seed in [4, 5] {
        let mut sim = cluster(seed, false);
        let before = rejoins(&sim);
        stall_repeatedly(&mut sim, 10);
        let refuted: u64 = (0..NODES)
            .filter_map(|i| sim.node(i).map(|n| n.stats().refuted_suspicions))
            .sum();
        println!(
            "false downs {}, refuted suspicions dropped {refuted}",
            rejoins(&sim) - before
        );
        assert!(
            refuted > 0,
            "the stalls caused no suspicion: the scenario tests nothing"
        );
        assert_eq!(rejoins(&sim), before, "a live node was declared down");
    }
}

#[test]
fn a_crashed_node_is_still_declared_down() {
    for lifeguard in [false, true] {
        let mut sim = cluster(6, lifeguard);
        let id = sim.node(2).map(|n| n.id().clone()).expect("running");
        sim.crash(2);
        let t = sim.run_until(Duration::from_secs(60), Duration::from_millis(10), |s| {
            s.live()
                .iter()
                .all(|&i| s.node(i).is_some_and(|n| n.peers().all(|m| m.node != id)))
        });
        println!("lifeguard {lifeguard}: crash detected everywhere after {t:?}");
        assert!(t.is_some(), "the crash was never detected");
    }
}

/// In a small cluster every member is probed every round or two, so a failed probe of a member
/// already suspected comes long before the suspicion's deadline. Each one must not restart the
/// suspicion: a node cut off from a 3-node cluster is declared down on both sides of the cut.
#[test]
fn a_cut_off_member_of_a_small_cluster_is_declared_down_on_both_sides() {
    for seed in [11, 12, 13] {
        println!("seed = {seed:#x}, 3 nodes, lan (Lifeguard on)");
        let mut cfg = SimConfig::new(3, seed);
        cfg.node = pidmesh_proto::Config::lan();
        let lg = cfg.node.lifeguard.expect("lan has Lifeguard");
        let base = cfg.node.swim.suspect_to_down_after;
        let probe = cfg.node.swim.probe_period + cfg.node.swim.probe_rtt;
        let mut sim = Sim::new(cfg);
        let formed = sim.run_until(
            Duration::from_secs(60),
            Duration::from_millis(100),
            check::membership_agrees_ok,
        );
        assert!(formed.is_some(), "cluster did not form");
        sim.partition(&[0], &[1, 2]);
        // The majority's probers stay healthy (each has a peer that answers): a few probe
        // rounds plus an unconfirmed suspicion at a modest health score.
        let majority_bound = probe * 4 + base * 3 * lg.suspicion_max_factor;
        let majority = sim.run_until(majority_bound, Duration::from_millis(10), |s| {
            (1..3).all(|i| s.node(i).is_some_and(|n| n.peers().count() == 1))
        });
        println!("majority side saw the cut after {majority:?} (bound {majority_bound:?})");
        assert!(
            majority.is_some(),
            "the majority never declared the cut-off node down"
        );
        // The cut-off node's own probes all fail, so its health score climbs to the maximum
        // and it is slow on purpose, but it still gets there.
        let slowest = (probe * 4 + base * lg.suspicion_max_factor) * (1 + lg.max_health);
        let minority = sim.run_until(slowest, Duration::from_millis(10), |s| {
            s.node(0).is_some_and(|n| n.peers().count() == 0)
        });
        println!("cut-off side saw the cut after {minority:?} (bound {slowest:?})");
        assert!(
            minority.is_some(),
            "the cut-off node never declared the others down"
        );
    }
}
