//! The seed sweep: randomized faults and workloads, invariants checked after every heal.
//!
//! `PIDMESH_SIM_SEEDS=N` runs N seeds (default 300), `PIDMESH_SIM_FIRST=S` starts at seed S.
//! A failure names its seed; `PIDMESH_SIM_FIRST=S PIDMESH_SIM_SEEDS=1` replays it.
//! `PIDMESH_SIM_SINGLETON_SEEDS=N` sets the singleton sweep's seed count (default 100).

use std::collections::BTreeMap;
use std::time::Instant;

use pidmesh_sim::check;
use pidmesh_sim::workload::{chaos_run, chaos_run_singletons};

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

/// True if the run restarted two or more nodes at the same instant (log lines
/// `t=<time> phase <p>: restart ...` sharing `<time>`).
fn restarted_together(log: &[String]) -> bool {
    let mut at: BTreeMap<&str, usize> = BTreeMap::new();
    for line in log.iter().filter(|l| l.contains(": restart")) {
        if let Some(t) = line.split_whitespace().next() {
            *at.entry(t).or_default() += 1;
        }
    }
    at.values().any(|&n| n >= 2)
}

/// The same random schedules with every node a candidate for three singletons
/// (`MajorityOfKnown`, `StaticQuorum(n/2+1)`, `Available`): never two runners of a quorum
/// singleton at any instant (checked after every step of every node), every invariant after
/// each heal, and exactly one runner of each after the last one.
///
/// One exception, the documented limit of `MajorityOfKnown` (docs/singletons.md): when two
/// nodes restart at the same instant they may meet only each other and count a majority of a
/// smaller cluster. A run whose only failure is that, in a schedule with such a restart, is
/// counted and printed, not failed; any other `MajorityOfKnown` violation fails.
#[test]
fn singleton_seed_sweep() {
    let first = env_u64("PIDMESH_SIM_FIRST", 0);
    let count = env_u64("PIDMESH_SIM_SINGLETON_SEEDS", 100);
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut known_limit = Vec::new();
    let mut instants = 0u64;
    for seed in first..first + count {
        let nodes = 3 + (seed % 5) as usize;
        let (sim, log) = chaos_run_singletons(seed, nodes, 4);
        instants += sim.safety_checks;
        let Err(errors) = check::all(&sim) else {
            continue;
        };
        let only_majority = !sim.safety_violations.is_empty()
            && sim
                .safety_violations
                .iter()
                .all(|v| v.contains("(MajorityOfKnown)"))
            && errors.iter().all(|e| e.contains("safety violation"));
        if only_majority && restarted_together(&log) {
            known_limit.push(seed);
            continue;
        }
        eprintln!(
            "seed {seed}:\n  {}\n  {}",
            log.join("\n  "),
            errors.join("\n  ")
        );
        failures.push(seed);
    }
    println!(
        "singleton sweep: {count} seeds from {first} in {:.1?}, safety checked at {instants} instants; \
         MajorityOfKnown after two nodes restarted together (documented limit): {known_limit:?}; \
         failing seeds: {failures:?}",
        started.elapsed()
    );
    assert!(instants > 0, "the safety invariant was never checked");
    assert!(
        failures.is_empty(),
        "failing seeds: {failures:?} (trace with `cargo run --release -p pidmesh-sim --example singleton_sweep -- trace <seed>`)"
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

/// Strict registration (`Node::register_strict`) under the same random schedules: every node
/// keeps a process contending for two strict names (quorum `n/2+1` and `n`) and registers
/// again whenever its registration ended. Never two holders of a strict name at any instant
/// (checked after every step of every node), and every invariant after each heal.
///
/// `PIDMESH_SIM_STRICT_SEEDS=N` sets the seed count (default 40); `PIDMESH_SIM_STRICT_FIRST=S`
/// the first seed (default: random, printed).
#[test]
fn strict_seed_sweep() {
    let first = std::env::var("PIDMESH_SIM_STRICT_FIRST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64 % 1_000_000_000)
        });
    let count = env_u64("PIDMESH_SIM_STRICT_SEEDS", 40);
    println!("strict sweep: seeds {first}..{}", first + count);
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut instants = 0u64;
    let mut held = 0u64;
    for seed in first..first + count {
        let nodes = 3 + (seed % 5) as usize;
        let (sim, log) = pidmesh_sim::workload::chaos_run_strict(seed, nodes, 4);
        instants += sim.safety_checks;
        held += sim.hosts.iter().map(|h| h.life.starts).sum::<u64>();
        let Err(errors) = check::all(&sim) else {
            continue;
        };
        eprintln!(
            "seed {seed}:\n  {}\n  {}",
            log.join("\n  "),
            errors.join("\n  ")
        );
        failures.push(seed);
    }
    println!(
        "strict sweep: {count} seeds from {first} in {:.1?}, safety checked at {instants} instants, \
         {held} strict holds started (last lives); failing seeds: {failures:?}",
        started.elapsed()
    );
    assert!(instants > 0, "the safety invariant was never checked");
    assert!(held > 0, "no strict registration was ever held");
    assert!(
        failures.is_empty(),
        "failing seeds: {failures:?} (replay with PIDMESH_SIM_STRICT_FIRST=<seed> PIDMESH_SIM_STRICT_SEEDS=1)"
    );
}
