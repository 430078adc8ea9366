//! Replays one seed of the sweep and prints its log; on a violation it also prints every live
//! node's membership view and counters.
//!
//! `cargo run --release -p pidmesh-sim --example replay -- <seed> [nodes]`

fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let nodes: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3 + (seed % 5) as usize);
    let (sim, log) = pidmesh_sim::workload::chaos_run_keep(seed, nodes, 4);
    println!("seed {seed}, {nodes} nodes\n  {}", log.join("\n  "));
    match pidmesh_sim::check::all(&sim) {
        Ok(()) => println!("all invariants hold"),
        Err(errors) => {
            println!("violations:\n  {}", errors.join("\n  "));
            for i in sim.live() {
                let Some(n) = sim.node(i) else { continue };
                println!(
                    "n{i} = {} sees {:?}",
                    n.id(),
                    n.peers().map(|m| m.node.to_string()).collect::<Vec<_>>()
                );
                for (m, active) in n.swim_view() {
                    println!(
                        "    swim: {} bump {} at {} active={active}",
                        m.node, m.bump, m.addr
                    );
                }
                println!("    {:?}", n.stats());
            }
            std::process::exit(1);
        }
    }
}
