//! A graceful leave learned second-hand is applied at once (`node/liveness.rs`): node 4 leaves
//! while cut off from nodes 2 and 3, which heard from it just before (so a "down" verdict about
//! it would be doubted for a suspicion time). Nodes 0 and 1 hear the leave from the leaver and
//! gossip it on; 2 and 3 must drop node 4 well within one suspicion time of the leave, without
//! doubting it (virtual time, `lan` preset: suspicion 4 s).

use std::time::Duration;

use pidmesh_sim::{Sim, SimConfig};

const NODES: usize = 5;
const LEAVER: usize = 4;
const CUT_OFF: [usize; 2] = [2, 3];

fn sees_leaver(sim: &Sim, i: usize, leaver: &pidmesh_proto::NodeId) -> bool {
    sim.node(i)
        .is_some_and(|n| n.peers().any(|m| m.node == *leaver))
}

#[test]
fn second_hand_leave_applies_without_waiting_a_suspicion_time() {
    for seed in [7, 8, 9] {
        println!("seed = {seed}");
        let mut cfg = SimConfig::new(NODES, seed);
        cfg.node = pidmesh_proto::Config::lan();
        let window = cfg.node.swim.suspect_to_down_after;
        let mut sim = Sim::formed(cfg).expect("the cluster forms");
        sim.run_for(Duration::from_secs(2));
        let leaver = sim.node(LEAVER).map(|n| n.id().clone()).expect("running");
        // Everyone hears from the leaver just before it leaves: a registration's delta.
        let pid = sim.spawn(LEAVER).expect("running");
        sim.register(LEAVER, "about-to-leave", &pid);
        sim.run_for(Duration::from_millis(20));
        let doubted_before: Vec<u64> = CUT_OFF
            .iter()
            .map(|&i| sim.node(i).map_or(0, |n| n.stats().doubted_downs))
            .collect();
        sim.partition(&[LEAVER], &CUT_OFF);
        sim.shutdown(LEAVER);
        let started = sim.elapsed();
        let took = sim.run_until(window * 3, Duration::from_millis(10), |s| {
            CUT_OFF.iter().all(|&i| !sees_leaver(s, i, &leaver))
        });
        let doubted_after: Vec<u64> = CUT_OFF
            .iter()
            .map(|&i| sim.node(i).map_or(0, |n| n.stats().doubted_downs))
            .collect();
        println!(
            "  nodes {CUT_OFF:?} dropped the leaver after {took:?} (suspicion time {window:?}); \
             doubted downs {doubted_before:?} -> {doubted_after:?}; started at {started:?}"
        );
        let took = took.expect("the cut-off nodes never dropped the leaver");
        assert_eq!(
            doubted_before, doubted_after,
            "a second-hand leave was doubted like a verdict"
        );
        assert!(
            took < window / 2,
            "the cut-off nodes took {took:?} to apply a leave (suspicion time {window:?})"
        );
        for i in [0, 1] {
            assert!(!sees_leaver(&sim, i, &leaver), "n{i} still sees the leaver");
        }
    }
}
