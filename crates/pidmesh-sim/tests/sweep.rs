//! The seed sweep: randomized faults and workloads, invariants checked after every heal.
//!
//! `PIDMESH_SIM_SEEDS=N` runs N seeds (default 300), `PIDMESH_SIM_FIRST=S` starts at seed S.
//! A failure names its seed; `PIDMESH_SIM_FIRST=S PIDMESH_SIM_SEEDS=1` replays it.

use std::time::Instant;

use pidmesh_sim::workload::chaos_run;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn seed_sweep() {
    let first = env_u64("PIDMESH_SIM_FIRST", 0);
    let count = env_u64("PIDMESH_SIM_SEEDS", 300);
    let started = Instant::now();
    let mut failures = Vec::new();
    for seed in first..first + count {
        let nodes = 3 + (seed % 5) as usize;
        if let Err(report) = chaos_run(seed, nodes, 4) {
            eprintln!("{report}");
            failures.push(seed);
        }
    }
    println!(
        "seed sweep: {count} seeds from {first} (3-7 nodes, 4 fault phases each) in {:.1?}; failing seeds: {failures:?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "failing seeds: {failures:?} (replay with PIDMESH_SIM_FIRST=<seed> PIDMESH_SIM_SEEDS=1)"
    );
}

#[test]
fn a_seed_replays_identically() {
    for seed in [3, 11, 42] {
        let a = chaos_run(seed, 5, 3);
        let b = chaos_run(seed, 5, 3);
        assert_eq!(a, b, "seed {seed} is not deterministic");
    }
}
