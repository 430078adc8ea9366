//! Measures the singleton election under the random fault schedules of the seed sweep: for
//! each policy, how many seeds ever had two runners at once (safety) and how many ended with
//! the wrong number of runners after heal and quiescence (liveness). A measurement, not a test:
//! the election is still being hardened (see the singleton issue's note).
//!
//! `cargo run --release -p pidmesh-sim --example singleton_sweep -- [seeds=300] [first=0]`
//! `cargo run --release -p pidmesh-sim --example singleton_sweep -- trace <seed> [name]` prints
//! one seed's fault log and every membership and singleton event (of singleton `name`).

use std::collections::BTreeMap;

use pidmesh_proto::Event;
use pidmesh_sim::{check, workload::chaos_run_singletons, workload::chaos_run_singletons_traced};

fn trace(seed: u64, name: Option<String>) {
    let nodes = 3 + (seed % 5) as usize;
    let (sim, log) = chaos_run_singletons_traced(seed, nodes, 4);
    println!("seed {seed}, {nodes} nodes\n  {}", log.join("\n  "));
    let wanted = |n: &str| name.as_deref().is_none_or(|w| w == n);
    for (t, i, e) in &sim.trace_log {
        let line = match e {
            Event::NodeUp(n) => format!("up {n}"),
            Event::NodeDown(n) => format!("down {n}"),
            Event::SingletonStarted { name, entry } if wanted(name) => {
                format!("STARTED {name} dot {:?}", entry.dot)
            }
            Event::SingletonStopped { name, reason } if wanted(name) => {
                format!("STOPPED {name} {reason:?}")
            }
            _ => continue,
        };
        println!("{t:>12?} n{i}: {line}");
    }
    println!("violations:\n  {}", sim.safety_violations.join("\n  "));
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("trace") {
        let seed = std::env::args()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        trace(seed, std::env::args().nth(3));
        return;
    }
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let count = args.next().flatten().unwrap_or(300);
    let first = args.next().flatten().unwrap_or(0);
    let mut unsafe_seeds: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut unsettled = Vec::new();
    let mut checks = 0u64;
    let started = std::time::Instant::now();
    for seed in first..first + count {
        if seed > first && (seed - first) % 500 == 0 {
            println!(
                "  {} seeds in {:.1?}, unsafe so far: {unsafe_seeds:?}",
                seed - first,
                started.elapsed()
            );
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
        let nodes = 3 + (seed % 5) as usize;
        let (sim, _) = chaos_run_singletons(seed, nodes, 4);
        checks += sim.safety_checks;
        for v in &sim.safety_violations {
            let policy = v
                .split('(')
                .nth(1)
                .and_then(|p| p.split(')').next())
                .unwrap_or("?")
                .to_string();
            let seeds = unsafe_seeds.entry(policy).or_default();
            if seeds.last() != Some(&seed) {
                seeds.push(seed);
            }
        }
        if sim.safety_violations.is_empty() && check::singletons_settled(&sim).is_err() {
            unsettled.push(seed);
        }
    }
    println!(
        "{count} seeds from {first}, 3-7 nodes, 4 fault phases; safety checked at {checks} instants"
    );
    for (policy, seeds) in &unsafe_seeds {
        println!(
            "  {policy}: two runners at once in {} seeds, e.g. {:?}",
            seeds.len(),
            &seeds[..seeds.len().min(5)]
        );
    }
    println!(
        "  wrong number of runners after quiescence (no safety issue): {} seeds, e.g. {:?}",
        unsettled.len(),
        &unsettled[..unsettled.len().min(5)]
    );
}
