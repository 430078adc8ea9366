//! The seed sweep: randomized faults and workloads, invariants checked after every heal.
//!
//! Each run covers a fixed set (seeds 0..300; singleton sweep 0..100) and, in addition, a
//! window of seeds that changes on every run (derived from the clock, printed), so CI keeps
//! exploring schedules nobody ran before. A failure names its seed and how to replay it.
//!
//! - `PIDMESH_SIM_FIRST=S PIDMESH_SIM_SEEDS=N`: run exactly seeds S..S+N (replay; no fixed set,
//!   no window). `PIDMESH_SIM_SINGLETON_SEEDS=N` sets the singleton sweep's count then.
//! - `PIDMESH_SIM_WINDOW=N`: the size of the changing window (default 40; singleton sweep 12);
//!   `0` turns it off. `PIDMESH_SIM_WINDOW_FIRST=S` pins where it starts.
//!
//! The `*_v2` sweeps run the second fault draw (`chaos_run_v2`: stalls, graceful leaves, also
//! while cut off, per-link loss, per-class drops, flapping, partitions during catch-up, skewed
//! wall clocks, non-transitive cuts): fixed seeds 0..100 (singletons 0..30, strict a random 12)
//! and the same kind of changing window (default 20; singletons 6).
//! `PIDMESH_SIM_V2_SEEDS`, `PIDMESH_SIM_V2_SINGLETON_SEEDS` and `PIDMESH_SIM_V2_STRICT_SEEDS` set
//! their counts (with `PIDMESH_SIM_FIRST`, or `PIDMESH_SIM_STRICT_FIRST` for strict, as above).
//! Long release runs: `cargo run --release -p pidmesh-sim --example sweep_v2`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pidmesh_sim::check;
use pidmesh_sim::workload::{
    Opts, chaos_run, chaos_run_singletons, chaos_run_v2, chaos_run_v2_keep,
};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The seed ranges of one sweep: `(first, count)` pairs, and how to describe them.
fn plan(fixed: u64, count_var: &str, default_window: u64) -> Vec<(u64, u64)> {
    if let Some(first) = env_u64("PIDMESH_SIM_FIRST") {
        let count = env_u64(count_var).unwrap_or(fixed);
        return vec![(first, count)];
    }
    let mut ranges = vec![(0, env_u64(count_var).unwrap_or(fixed))];
    let window = env_u64("PIDMESH_SIM_WINDOW").unwrap_or(default_window);
    if window > 0 {
        // A fresh window every run: from the clock (nanoseconds mixed), above the fixed set.
        let first = env_u64("PIDMESH_SIM_WINDOW_FIRST").unwrap_or_else(|| {
            let clock = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() ^ (u64::from(d.subsec_nanos()) << 32));
            1_000_000 + splitmix(clock) % 1_000_000_000
        });
        println!(
            "changing window this run: seeds {first}..{} (replay with PIDMESH_SIM_FIRST={first} {count_var}={window})",
            first + window
        );
        ranges.push((first, window));
    }
    ranges
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn seeds_of(ranges: &[(u64, u64)]) -> impl Iterator<Item = u64> + '_ {
    ranges
        .iter()
        .flat_map(|&(first, count)| first..first + count)
}

#[test]
fn seed_sweep() {
    let ranges = plan(300, "PIDMESH_SIM_SEEDS", 40);
    let started = Instant::now();
    let mut failures = Vec::new();
    for seed in seeds_of(&ranges) {
        let nodes = 3 + (seed % 5) as usize;
        if let Err(report) = chaos_run(seed, nodes, 4) {
            eprintln!("{report}");
            failures.push(seed);
        }
    }
    println!(
        "seed sweep: seeds {ranges:?} as (first, count) (3-7 nodes, 4 fault phases each) in {:.1?}; failing seeds: {failures:?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "failing seeds: {failures:?} (replay with PIDMESH_SIM_FIRST=<seed> PIDMESH_SIM_SEEDS=1)"
    );
}

/// The same random schedules with every node a candidate for three singletons
/// (`MajorityOfKnown`, `StaticQuorum(n/2+1)`, `Available`): never two runners of a quorum
/// singleton at any instant (checked after every step of every node), every invariant after
/// each heal, and exactly one runner of each after the last one.
///
/// Hosts keep their node's remembered addresses across crashes (`SimConfig::persist_peers`, the
/// facade's peer cache), which `MajorityOfKnown` needs to stay safe after restarts
/// (docs/singletons.md): any violation fails.
#[test]
fn singleton_seed_sweep() {
    let ranges = plan(100, "PIDMESH_SIM_SINGLETON_SEEDS", 12);
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut instants = 0u64;
    for seed in seeds_of(&ranges) {
        let nodes = 3 + (seed % 5) as usize;
        let (sim, log) = chaos_run_singletons(seed, nodes, 4);
        instants += sim.safety_checks;
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
        "singleton sweep: seeds {ranges:?} as (first, count) in {:.1?}, safety checked at {instants} instants; \
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
        let a = chaos_run_v2(seed, 5, 3);
        let b = chaos_run_v2(seed, 5, 3);
        assert_eq!(
            a, b,
            "seed {seed} is not deterministic under the second draw"
        );
    }
}

/// The second fault draw (see the file documentation), every invariant after each heal.
#[test]
fn seed_sweep_v2() {
    let ranges = plan(100, "PIDMESH_SIM_V2_SEEDS", 20);
    let started = Instant::now();
    let mut failures = Vec::new();
    for seed in seeds_of(&ranges) {
        let nodes = 3 + (seed % 5) as usize;
        if let Err(report) = chaos_run_v2(seed, nodes, 4) {
            eprintln!("{report}");
            failures.push(seed);
        }
    }
    println!(
        "v2 seed sweep: seeds {ranges:?} as (first, count) in {:.1?}; failing seeds: {failures:?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "failing seeds: {failures:?} (replay with `cargo run --release -p pidmesh-sim --example sweep_v2 -- replay plain <seed>`)"
    );
}

/// Runs `opts` (singletons or strict names) under the second draw over `seeds`; returns the
/// failing seeds and how many safety instants were checked.
fn managed_v2(seeds: impl Iterator<Item = u64>, opts: Opts) -> (Vec<u64>, u64) {
    let mut failures = Vec::new();
    let mut instants = 0u64;
    for seed in seeds {
        let nodes = 3 + (seed % 5) as usize;
        let (sim, log) = chaos_run_v2_keep(seed, nodes, 4, opts);
        instants += sim.safety_checks;
        if let Err(errors) = check::all(&sim) {
            eprintln!(
                "seed {seed}:\n  {}\n  {}",
                log.join("\n  "),
                errors.join("\n  ")
            );
            failures.push(seed);
        }
    }
    (failures, instants)
}

/// Singletons under the second draw: never two runners of a quorum singleton at any instant
/// (a stalled node's paused run counts from the instant it resumes), every invariant after
/// each heal.
#[test]
fn singleton_seed_sweep_v2() {
    let ranges = plan(30, "PIDMESH_SIM_V2_SINGLETON_SEEDS", 6);
    let started = Instant::now();
    let (failures, instants) = managed_v2(seeds_of(&ranges), Opts::SINGLETONS);
    println!(
        "v2 singleton sweep: seeds {ranges:?} as (first, count) in {:.1?}, safety checked at {instants} instants; \
         failing seeds: {failures:?}",
        started.elapsed()
    );
    assert!(instants > 0, "the safety invariant was never checked");
    assert!(
        failures.is_empty(),
        "failing seeds: {failures:?} (trace with `cargo run --release -p pidmesh-sim --example sweep_v2 -- trace singletons <seed>`)"
    );
}

/// The strict sweeps' first seed: `PIDMESH_SIM_STRICT_FIRST`, or drawn from the clock (the
/// sweeps print it, so a failing range can be run again).
fn strict_first() -> u64 {
    env_u64("PIDMESH_SIM_STRICT_FIRST").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64 % 1_000_000_000)
    })
}

/// Strict names under the second draw (as `strict_seed_sweep`).
#[test]
fn strict_seed_sweep_v2() {
    let first = strict_first();
    let count = env_u64("PIDMESH_SIM_V2_STRICT_SEEDS").unwrap_or(12);
    println!("v2 strict sweep: seeds {first}..{}", first + count);
    let started = Instant::now();
    let (failures, instants) = managed_v2(first..first + count, Opts::STRICT);
    println!(
        "v2 strict sweep: {count} seeds from {first} in {:.1?}, safety checked at {instants} instants; \
         failing seeds: {failures:?}",
        started.elapsed()
    );
    assert!(instants > 0, "the safety invariant was never checked");
    assert!(
        failures.is_empty(),
        "failing seeds: {failures:?} (replay with `cargo run --release -p pidmesh-sim --example sweep_v2 -- replay strict <seed>`)"
    );
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
    let first = strict_first();
    let count = env_u64("PIDMESH_SIM_STRICT_SEEDS").unwrap_or(40);
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
