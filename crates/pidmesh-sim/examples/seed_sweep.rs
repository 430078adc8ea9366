//! Runs the general seed sweep over any range in release mode, printing progress as it goes
//! (the `sweep` test prints only at the end): every failure at once with its replay command,
//! and a progress line every 500 seeds.
//!
//! `cargo run --release -p pidmesh-sim --example seed_sweep -- <count> <first>`

use std::io::Write;
use std::time::Instant;

use pidmesh_sim::workload::chaos_run;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let count = args.next().flatten().unwrap_or(300);
    let first = args.next().flatten().unwrap_or(0);
    println!("seed sweep: {count} seeds from {first} (3-7 nodes, 4 fault phases each)");
    let started = Instant::now();
    let mut failures = Vec::new();
    for (done, seed) in (first..first + count).enumerate() {
        let nodes = 3 + (seed % 5) as usize;
        if let Err(report) = chaos_run(seed, nodes, 4) {
            println!("{report}");
            failures.push(seed);
        }
        if (done + 1) % 500 == 0 {
            println!(
                "  {} seeds ({first}..{}) in {:.1?}, failing: {failures:?}",
                done + 1,
                seed + 1,
                started.elapsed()
            );
            let _ = std::io::stdout().flush();
        }
    }
    println!(
        "seed sweep: {count} seeds from {first} in {:.1?}; failing seeds: {failures:?}",
        started.elapsed()
    );
}
