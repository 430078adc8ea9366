//! Convergence at scale in virtual time: N nodes form a cluster, every node registers K names
//! at the same instant, and the simulator measures how long until every node holds all N×K
//! entries, and the bytes each node sent.
//!
//! `cargo run --release -p pidmesh-sim --example scale -- [nodes=100] [names_per_node=10] [seed=1]`

use std::time::{Duration, Instant};

use pidmesh_sim::{Sim, SimConfig, check};

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let nodes = args.next().flatten().unwrap_or(100) as usize;
    let per = args.next().flatten().unwrap_or(10) as usize;
    let seed = args.next().flatten().unwrap_or(1);
    let wall = Instant::now();
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.seeds = 3.min(nodes);
    cfg.node =
        pidmesh_proto::Config::lan().for_cluster_size(u32::try_from(nodes).unwrap_or(u32::MAX));
    let mut sim = Sim::new(cfg);
    let formed = sim.run_until(
        Duration::from_secs(600),
        Duration::from_millis(100),
        check::membership_agrees_ok,
    );
    let before = sim.bytes_sent;
    let start = sim.elapsed();
    for i in 0..nodes {
        for k in 0..per {
            if let Some(pid) = sim.spawn(i) {
                sim.register(i, &format!("node{i}/service-{k:04}"), &pid);
            }
        }
    }
    let total = nodes * per;
    let converged = sim.run_until(Duration::from_secs(600), Duration::from_millis(1), |s| {
        s.live()
            .iter()
            .all(|&i| s.node(i).is_some_and(|n| n.registry().len() == total))
    });
    let after = sim.bytes_sent;
    let per_node = |c: usize| (after[c] - before[c]) as f64 / nodes as f64;
    println!("nodes={nodes} names/node={per} seed={seed} preset=lan");
    println!("membership formed (every node sees all others) after {formed:?} of virtual time");
    println!(
        "{total} registrations issued at t={start:?}; visible on all {nodes} nodes after {converged:?}"
    );
    println!(
        "bytes sent per node during convergence: membership {:.0}, delta {:.0}, sync {:.0}",
        per_node(0),
        per_node(1),
        per_node(2)
    );
    println!("invariants: {:?}", check::all(&sim).map_err(|e| e.len()));
    println!(
        "wall time {:.1?} for {:?} of virtual time, {} messages delivered",
        wall.elapsed(),
        sim.elapsed(),
        sim.delivered
    );
}
