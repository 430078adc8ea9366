//! Runs the second fault draw (`chaos_run_v2`: stalls, graceful leaves, per-link and per-class
//! loss, flapping, partitions during catch-up, skewed clocks, non-transitive cuts) over any
//! seed range in release mode, printing every failure at once and progress every 500 seeds.
//!
//! `cargo run --release -p pidmesh-sim --example sweep_v2 -- <plain|singletons|strict> <count> <first> [phases=4] [nodes]`
//! (nodes: at least that many, plus 0-4 by seed; default 3)
//! `cargo run --release -p pidmesh-sim --example sweep_v2 -- replay <plain|singletons|strict> <seed>`
//! prints one seed's whole log and its violations.

use std::io::Write;
use std::time::Instant;

use pidmesh_proto::Event;
use pidmesh_sim::check;
use pidmesh_sim::workload::{Opts, chaos_run_v2_keep};

fn opts(mode: &str) -> Opts {
    match mode {
        "singletons" => Opts::SINGLETONS,
        "strict" => Opts::STRICT,
        _ => Opts::default(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let first_arg = args.first().map(String::as_str);
    if first_arg == Some("replay") || first_arg == Some("trace") {
        let mode = args.get(1).cloned().unwrap_or_default();
        let seed = num(2, 0);
        let nodes = 3 + (seed % 5) as usize;
        let o = Opts {
            trace: first_arg == Some("trace"),
            ..opts(&mode)
        };
        let (sim, log) = chaos_run_v2_keep(seed, nodes, 4, o);
        println!(
            "seed {seed} ({mode}), {nodes} nodes\n  {}",
            log.join("\n  ")
        );
        for (t, i, e) in &sim.trace_log {
            let line = match e {
                Event::NodeUp(n) => format!("up {n}"),
                Event::NodeDown(n) => format!("down {n}"),
                Event::SingletonStarted { name, entry } => {
                    format!("STARTED {name} dot {:?}", entry.dot)
                }
                Event::SingletonStopped { name, reason } => format!("STOPPED {name} {reason:?}"),
                _ => continue,
            };
            println!("{t:?} n{i}: {line}");
        }
        match check::all(&sim) {
            Ok(()) => println!("all invariants hold"),
            Err(errors) => {
                println!("violations:\n  {}", errors.join("\n  "));
                for i in sim.live() {
                    let Some(n) = sim.node(i) else { continue };
                    println!(
                        "n{i} = {} sees {:?}\n    {:?}",
                        n.id(),
                        n.peers().map(|m| m.node.to_string()).collect::<Vec<_>>(),
                        n.stats()
                    );
                }
                std::process::exit(1);
            }
        }
        return;
    }
    let mode = args.first().cloned().unwrap_or_else(|| "plain".into());
    let count = num(1, 300);
    let first = num(2, 0);
    let phases = usize::try_from(num(3, 4)).unwrap_or(4);
    // 0: 3-7 nodes by seed; otherwise that many, plus 0-4 by seed.
    let base_nodes = usize::try_from(num(4, 0)).unwrap_or(0);
    let lo = if base_nodes == 0 { 3 } else { base_nodes };
    println!(
        "v2 sweep ({mode}): {count} seeds from {first} ({lo}-{} nodes, {phases} fault phases each)",
        lo + 4
    );
    let started = Instant::now();
    let mut failures = Vec::new();
    for (done, seed) in (first..first + count).enumerate() {
        let nodes = lo + (seed % 5) as usize;
        let (sim, _log) = chaos_run_v2_keep(seed, nodes, phases, opts(&mode));
        if let Err(errors) = check::all(&sim) {
            println!("seed {seed}: {}", errors.join(" | "));
            failures.push(seed);
        }
        if (done + 1) % 500 == 0 {
            println!(
                "  {} seeds ({first}..{}) in {:.1?}, failing: {failures:?}",
                done + 1,
                seed + 1,
                started.elapsed()
            );
        }
        let _ = std::io::stdout().flush();
    }
    println!(
        "v2 sweep ({mode}): {count} seeds from {first} in {:.1?}; failing seeds ({}): {failures:?}",
        started.elapsed(),
        failures.len()
    );
}
