//! Replays one seed of the sweep and prints its log: `cargo run -p pidmesh-sim --example replay -- <seed> [nodes]`.
fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let nodes: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3 + (seed % 5) as usize);
    match pidmesh_sim::workload::chaos_run(seed, nodes, 4) {
        Ok(log) => println!("seed {seed}: all invariants hold\n  {}", log.join("\n  ")),
        Err(report) => {
            println!("{report}");
            std::process::exit(1);
        }
    }
}
