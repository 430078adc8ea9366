//! Singleton election in the simulator: failover after a crash, graceful handover, and a
//! partition with the holder on the minority or the majority side. The safety invariant (never
//! two runners of a quorum singleton) is checked after every step of every node.

use std::time::Duration;

use pidmesh_proto::SingletonPolicy;
use pidmesh_sim::{Sim, SimConfig, check};

const NAME: &str = "scheduler";

fn cluster(seed: u64, policy: SingletonPolicy) -> Sim {
    println!("seed = {seed:#x}, policy = {policy:?}");
    let mut cfg = SimConfig::new(5, seed);
    cfg.singletons = vec![(NAME.to_string(), policy)];
    let mut sim = Sim::new(cfg);
    let up = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
        s.runners(NAME).len() == 1
    });
    assert!(up.is_some(), "no holder elected");
    println!("first holder running after {up:?}");
    sim
}

fn assert_safe(sim: &Sim) {
    assert!(
        sim.safety_violations.is_empty(),
        "{:?}",
        &sim.safety_violations[..sim.safety_violations.len().min(3)]
    );
    println!("safety checked at {} instants", sim.safety_checks);
}

#[test]
fn holder_crash_fails_over() {
    for policy in [
        SingletonPolicy::MajorityOfKnown,
        SingletonPolicy::StaticQuorum(3),
        SingletonPolicy::Available,
    ] {
        let mut sim = cluster(11, policy);
        let holder = sim.runners(NAME)[0];
        sim.crash(holder);
        let t = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
            s.runners(NAME).len() == 1
        });
        println!("{policy:?}: crash → new holder running after {t:?}");
        assert!(t.is_some());
        assert_ne!(sim.runners(NAME)[0], holder);
        assert_safe(&sim);
    }
}

#[test]
fn graceful_handover_is_faster_than_failure_detection() {
    let mut sim = cluster(12, SingletonPolicy::MajorityOfKnown);
    let holder = sim.runners(NAME)[0];
    sim.shutdown(holder);
    let t = sim.run_until(Duration::from_secs(30), Duration::from_millis(5), |s| {
        s.runners(NAME).len() == 1
    });
    println!("graceful shutdown → new holder running after {t:?}");
    // Failure detection takes about a second with `local`; a release on purpose needs a round
    // trip or two.
    assert!(
        t.is_some_and(|t| t < Duration::from_millis(300)),
        "handover took {t:?}"
    );
    assert_safe(&sim);
}

#[test]
fn partition_minority_holder_stops_majority_takes_over_heal_leaves_one() {
    for policy in [
        SingletonPolicy::MajorityOfKnown,
        SingletonPolicy::StaticQuorum(3),
    ] {
        let mut sim = cluster(13, policy);
        let holder = sim.runners(NAME)[0];
        let others: Vec<usize> = (0..5).filter(|&i| i != holder).collect();
        // Holder with one other node: the minority.
        let minority = [holder, others[0]];
        let majority = &others[1..];
        sim.partition(&minority, majority);
        let t = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
            s.runners(NAME).len() == 1 && majority.contains(&s.runners(NAME)[0])
        });
        println!("{policy:?}: minority holder stopped, majority holder running after {t:?}");
        assert!(t.is_some());
        let new_holder = sim.runners(NAME)[0];
        let starts = sim.hosts[new_holder].life.starts;
        sim.heal();
        let t = sim.run_until(Duration::from_secs(60), Duration::from_millis(10), |s| {
            check::converged(s) && check::singletons_settled(s).is_ok()
        });
        assert!(t.is_some(), "{:?}", check::singletons_settled(&sim));
        assert_safe(&sim);
        // The heal leaves the majority's holder running: a claim the minority made before it
        // noticed the cut never ran, and a running claim wins over it.
        assert_eq!(
            sim.runners(NAME),
            vec![new_holder],
            "{policy:?}: holder moved on heal"
        );
        assert_eq!(
            sim.hosts[new_holder].life.starts, starts,
            "{policy:?}: the holder restarted on heal"
        );
    }
}

#[test]
fn partition_majority_holder_keeps_running() {
    let mut sim = cluster(14, SingletonPolicy::MajorityOfKnown);
    let holder = sim.runners(NAME)[0];
    let others: Vec<usize> = (0..5).filter(|&i| i != holder).collect();
    sim.partition(&others[..2], &[holder, others[2], others[3]]);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(
        sim.runners(NAME),
        vec![holder],
        "the majority-side holder is undisturbed"
    );
    sim.heal();
    // On a heal the minority's stale "down" verdicts make majority nodes renew their SWIM
    // identity; a renewed holder steps down, so the holder may change, but there is one.
    let t = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
        check::converged(s) && check::singletons_settled(s).is_ok()
    });
    assert!(t.is_some(), "{:?}", check::singletons_settled(&sim));
    assert_safe(&sim);
}

#[test]
fn available_runs_on_both_sides_then_one_after_heal() {
    let mut sim = cluster(15, SingletonPolicy::Available);
    sim.partition(&[0, 1], &[2, 3, 4]);
    let t = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
        s.runners(NAME).len() == 2
    });
    println!("Available: one holder per side after {t:?}");
    assert!(t.is_some(), "each side runs one");
    sim.heal();
    let t = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
        s.runners(NAME).len() == 1
    });
    println!("Available: back to one holder after {t:?}");
    assert!(t.is_some());
}

#[test]
fn flapping_link_and_all_nodes_restarting() {
    let mut sim = cluster(16, SingletonPolicy::MajorityOfKnown);
    for round in 0..6 {
        let holder = sim.runners(NAME).first().copied().unwrap_or(0);
        let others: Vec<usize> = (0..5).filter(|&i| i != holder).collect();
        sim.partition(&[holder], &others);
        sim.run_for(Duration::from_millis(300 + 200 * round));
        sim.heal();
        sim.run_for(Duration::from_millis(500));
    }
    for i in 0..5 {
        sim.restart(i);
    }
    let t = sim.run_until(Duration::from_secs(60), Duration::from_millis(10), |s| {
        check::converged(s) && check::singletons_settled(s).is_ok()
    });
    assert!(t.is_some(), "{:?}", check::singletons_settled(&sim));
    assert_safe(&sim);
}
