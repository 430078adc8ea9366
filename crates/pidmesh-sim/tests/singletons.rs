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
    let starts = sim.hosts[holder].life.starts;
    sim.heal();
    // On a heal the minority's stale "down" verdicts reach the majority; its nodes doubt them
    // (they heard from each other just now) and the holder stays put.
    let t = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
        check::converged(s) && check::singletons_settled(s).is_ok()
    });
    assert!(t.is_some(), "{:?}", check::singletons_settled(&sim));
    assert_safe(&sim);
    assert_eq!(
        sim.runners(NAME),
        vec![holder],
        "the holder moved at the heal"
    );
    assert_eq!(
        sim.hosts[holder].life.starts, starts,
        "the holder restarted at the heal"
    );
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

// ----- heal shapes: the majority's holder stays put ----------------------------------------

/// How a partition heals in [`heal_shape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heal {
    /// Both directions at once.
    AtOnce,
    /// The minority → majority direction first, the other direction `lease` later.
    MinorityFirst,
    /// The majority → minority direction first, the other direction `lease` later.
    MajorityFirst,
}

/// `nodes` nodes, `StaticQuorum(nodes / 2 + 1)`; cut `minority_size` nodes off (the holder
/// among them when `holder_in_minority`), wait until the majority side runs the singleton, let
/// `offset` more pass (heal at any phase of the holder's lease renewals), heal as `how`, and
/// check that the majority's holder ran throughout: same node, no restart, alone.
fn heal_shape(
    seed: u64,
    nodes: usize,
    minority_size: usize,
    holder_in_minority: bool,
    offset: Duration,
    how: Heal,
) {
    let quorum = nodes / 2 + 1;
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.singletons = vec![(NAME.to_string(), SingletonPolicy::StaticQuorum(quorum))];
    let lease = cfg.node.singleton_lease();
    let mut sim = Sim::new(cfg);
    let up = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
        s.runners(NAME).len() == 1
    });
    assert!(up.is_some(), "seed {seed:#x}: no holder elected");
    let first = sim.runners(NAME)[0];
    let others: Vec<usize> = (0..nodes).filter(|&i| i != first).collect();
    let minority: Vec<usize> = if holder_in_minority {
        std::iter::once(first)
            .chain(others.iter().copied().take(minority_size - 1))
            .collect()
    } else {
        others.iter().copied().take(minority_size).collect()
    };
    let majority: Vec<usize> = (0..nodes).filter(|i| !minority.contains(i)).collect();
    sim.partition(&minority, &majority);
    let t = sim.run_until(Duration::from_secs(30), Duration::from_millis(5), |s| {
        let r = s.runners(NAME);
        r.len() == 1 && majority.contains(&r[0])
    });
    assert!(
        t.is_some(),
        "seed {seed:#x}: the majority side runs nothing"
    );
    let holder = sim.runners(NAME)[0];
    if !holder_in_minority {
        assert_eq!(
            holder, first,
            "seed {seed:#x}: a majority-side holder moved at the cut"
        );
    }
    sim.run_for(offset);
    let starts = sim.hosts[holder].life.starts;
    match how {
        Heal::AtOnce => sim.heal(),
        Heal::MinorityFirst | Heal::MajorityFirst => {
            sim.heal();
            let (from, to) = if how == Heal::MinorityFirst {
                (&majority, &minority)
            } else {
                (&minority, &majority)
            };
            sim.cut_one_way(from, to);
            let end = sim.elapsed() + lease;
            while sim.elapsed() < end {
                sim.run_for(Duration::from_millis(5));
                assert_eq!(
                    sim.runners(NAME),
                    vec![holder],
                    "seed {seed:#x}: half-healed"
                );
            }
            sim.heal();
        }
    }
    // Settled: one view, and the holder untouched for several leases after.
    let settle = sim.run_until(Duration::from_secs(30), Duration::from_millis(5), |s| {
        assert_eq!(
            s.runners(NAME),
            vec![holder],
            "seed {seed:#x}: holder changed at the heal"
        );
        check::converged(s) && check::singletons_settled(s).is_ok()
    });
    assert!(
        settle.is_some(),
        "seed {seed:#x}: {:?}",
        check::singletons_settled(&sim)
    );
    let end = sim.elapsed() + lease * 4;
    while sim.elapsed() < end {
        sim.run_for(Duration::from_millis(5));
        assert_eq!(
            sim.runners(NAME),
            vec![holder],
            "seed {seed:#x}: holder changed later"
        );
    }
    assert_eq!(
        sim.hosts[holder].life.starts, starts,
        "seed {seed:#x}: the majority holder restarted at the heal"
    );
    assert_safe(&sim);
}

/// Seeds per heal shape; `PIDMESH_SIM_HEAL_SEEDS=N` runs more.
fn heal_seeds() -> u64 {
    std::env::var("PIDMESH_SIM_HEAL_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

#[test]
fn heal_three_nodes_holder_cut_off() {
    for seed in 0..heal_seeds() {
        println!("seed {seed:#x}");
        heal_shape(0x4ea1_0000 + seed, 3, 1, true, Duration::ZERO, Heal::AtOnce);
    }
}

#[test]
fn heal_three_nodes_non_holder_cut_off() {
    for seed in 0..heal_seeds() {
        println!("seed {seed:#x}");
        heal_shape(
            0x4ea2_0000 + seed,
            3,
            1,
            false,
            Duration::ZERO,
            Heal::AtOnce,
        );
    }
}

#[test]
fn heal_five_nodes_holder_in_minority_and_majority() {
    for seed in 0..heal_seeds() {
        println!("seed {seed:#x}");
        heal_shape(0x4ea3_0000 + seed, 5, 2, true, Duration::ZERO, Heal::AtOnce);
        heal_shape(
            0x4ea4_0000 + seed,
            5,
            2,
            false,
            Duration::ZERO,
            Heal::AtOnce,
        );
    }
}

#[test]
fn heal_asymmetric_one_direction_first() {
    for seed in 0..heal_seeds().div_ceil(2) {
        println!("seed {seed:#x}");
        for how in [Heal::MinorityFirst, Heal::MajorityFirst] {
            heal_shape(0x4ea5_0000 + seed, 3, 1, true, Duration::ZERO, how);
            heal_shape(0x4ea6_0000 + seed, 5, 2, false, Duration::ZERO, how);
        }
    }
}

#[test]
fn heal_at_every_phase_of_a_lease_renewal() {
    // The holder renews four times per lease (600 ms with `local`): heal at 16 offsets spread
    // over a whole lease, so heals land before, during and after renewal rounds.
    for k in 0..16u32 {
        let offset = Duration::from_millis(600) * k / 16;
        println!("offset {offset:?}");
        heal_shape(0x4ea7_0000 + u64::from(k), 3, 1, true, offset, Heal::AtOnce);
    }
}

#[test]
fn vouchers_leaving_gracefully_stop_the_holder_at_once() {
    // 3 nodes, StaticQuorum(2): the two non-holders shut down one after the other. The first
    // leave leaves a quorum (holder + one); the second takes it away, and the leaver takes back
    // its vouch on the way out, so the holder stops within a round trip, long before its
    // lease (600 ms with `local`) would run out.
    for seed in 0..heal_seeds() {
        let mut cfg = SimConfig::new(3, 0x5107_0000 + seed);
        cfg.singletons = vec![(NAME.to_string(), SingletonPolicy::StaticQuorum(2))];
        let lease = cfg.node.singleton_lease();
        let mut sim = Sim::new(cfg);
        let up = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
            s.runners(NAME).len() == 1
        });
        assert!(up.is_some(), "seed {seed}: no holder elected");
        let holder = sim.runners(NAME)[0];
        let others: Vec<usize> = (0..3).filter(|&i| i != holder).collect();
        sim.shutdown(others[0]);
        sim.run_for(Duration::from_secs(2));
        assert_eq!(
            sim.runners(NAME),
            vec![holder],
            "seed {seed}: one leave stopped it"
        );
        sim.shutdown(others[1]);
        let t = sim.run_until(Duration::from_secs(10), Duration::from_millis(1), |s| {
            s.runners(NAME).is_empty()
        });
        println!("seed {seed}: last voucher left → holder stopped after {t:?}");
        assert!(
            t.is_some_and(|t| t < lease / 4),
            "seed {seed}: the holder ran on {t:?} after its last voucher left"
        );
        assert_safe(&sim);
    }
}
