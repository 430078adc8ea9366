//! `MajorityOfKnown` after restarts: restarted nodes that meet only each other must not count a
//! majority of a smaller cluster. A restarted node's host hands it the addresses its previous
//! life remembered (`SimConfig::persist_peers`, the facade's peer cache), and the node counts
//! them as known members. The safety invariant (never two runners) is checked after every step
//! of every node.

use std::time::Duration;

use pidmesh_proto::SingletonPolicy;
use pidmesh_sim::{Sim, SimConfig};

const NAME: &str = "scheduler";

fn cluster(seed: u64) -> Sim {
    println!("seed = {seed:#x}");
    let mut cfg = SimConfig::new(5, seed);
    cfg.singletons = vec![(NAME.to_string(), SingletonPolicy::MajorityOfKnown)];
    let mut sim = Sim::new(cfg);
    let up = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
        s.runners(NAME).len() == 1
    });
    assert!(up.is_some(), "no holder elected");
    sim
}

fn assert_safe_and_one_runner(sim: &mut Sim) {
    assert!(
        sim.safety_violations.is_empty(),
        "seed {:#x}: {:?}",
        sim.seed,
        &sim.safety_violations[..sim.safety_violations.len().min(3)]
    );
    let settled = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
        s.runners(NAME).len() == 1
    });
    assert!(
        settled.is_some(),
        "seed {:#x}: runners {:?}",
        sim.seed,
        sim.runners(NAME)
    );
    println!("safe at {} instants, one runner", sim.safety_checks);
}

/// The shape of singleton-sweep seed 703977: the seed n1 restarts alone behind a partition and
/// the other seed n0 crashes; the majority side (n2..n4) elects a holder; n0 restarts and, not
/// knowing n2..n4 from its seeds, meets only n1. Each of the two knows the five addresses from
/// its previous life, so two of them are not a majority.
#[test]
fn two_seeds_restarted_apart_do_not_make_a_majority() {
    for seed in 0..6u64 {
        let mut sim = cluster(703_977 + seed);
        sim.partition(&[0, 2, 3, 4], &[1]);
        sim.crash(0);
        sim.restart(1);
        sim.run_for(Duration::from_secs(7));
        sim.restart(0);
        sim.run_for(Duration::from_secs(8));
        sim.heal();
        sim.run_for(Duration::from_secs(5));
        assert_safe_and_one_runner(&mut sim);
    }
}

/// Both seeds restart at the same instant, cut off from the other three: they meet each other
/// first. Counting the remembered addresses, they know of five nodes and wait for a third.
#[test]
fn two_seeds_restarted_together_do_not_make_a_majority() {
    for seed in 0..6u64 {
        let mut sim = cluster(0x703_0000 + seed);
        sim.partition(&[0, 1], &[2, 3, 4]);
        sim.restart(0);
        sim.restart(1);
        sim.run_for(Duration::from_secs(10));
        assert!(
            sim.runners(NAME).iter().all(|&i| i >= 2),
            "seed {seed}: the restarted pair runs the singleton: {:?}",
            sim.runners(NAME)
        );
        sim.heal();
        sim.run_for(Duration::from_secs(5));
        assert_safe_and_one_runner(&mut sim);
    }
}
