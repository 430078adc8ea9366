//! Scratch: membership view after a failing seed.
fn main() {
    let seed: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(263);
    let nodes = 3 + (seed % 5) as usize;
    let r = pidmesh_sim::workload::chaos_run_keep(seed, nodes, 4);
    let (sim, log) = r;
    println!("{}", log.join("\n"));
    for i in sim.live() {
        let n = sim.node(i).unwrap();
        println!("n{i} id={} peers={:?}", n.id(), n.peers().map(|m| (m.node.to_string(), m.bump)).collect::<Vec<_>>());
        for (m, active) in n.swim_view() { println!("    swim: {}#{} bump{} {} active={active}", m.node.name, m.node.incarnation, m.bump, m.addr); }
        println!("    stats {:?}", n.stats());
    }
}
