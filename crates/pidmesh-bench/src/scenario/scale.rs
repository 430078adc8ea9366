//! **scale**: convergence at 10, 100, 1,000… nodes in the deterministic simulator
//! (`pidmesh-sim`), in virtual time, with the `lan` preset rescaled for the cluster size and a
//! clean virtual network (the simulator's default link latency).
//!
//! Per size: the nodes start at virtual time 0 with three seeds and the scenario waits until
//! every node sees every other (membership formed); then every node registers K names at the
//! same instant, and the clock (virtual) stops when every node holds all N×K entries. Reported:
//! both virtual times, the payload bytes each node sent on average during convergence by class,
//! and the wall time the simulation took. Each size has a wall-clock budget: a size that runs
//! out of it is reported as unfinished, with how far it got, and larger sizes are skipped.

use std::time::{Duration, Instant};

use pidmesh_sim::{Sim, SimConfig};
use serde::{Deserialize, Serialize};

/// One simulated cluster size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalePoint {
    /// Nodes.
    pub nodes: usize,
    /// Names registered per node.
    pub names_per_node: usize,
    /// Virtual seconds until membership formed (`None`: not within the budget).
    pub formed_secs: Option<f64>,
    /// Virtual seconds from the registrations until every node held every entry.
    pub converge_secs: Option<f64>,
    /// Fewest entries any node held at the end (N×K when converged).
    pub min_entries: usize,
    /// Average payload bytes sent per node during convergence: membership, delta, sync.
    pub bytes_per_node: [f64; 3],
    /// Virtual seconds simulated in all.
    pub virtual_secs: f64,
    /// Fewest members (itself included) any node saw at the end.
    pub min_members: usize,
    /// Wall-clock seconds the whole size took to simulate.
    pub wall_secs: f64,
    /// Why it stopped early, if it did.
    pub note: Option<String>,
}

/// What the scale scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleResult {
    /// Each size tried, smallest first.
    pub points: Vec<ScalePoint>,
    /// Sizes not run because a smaller one ran out of its budget.
    pub skipped: Vec<usize>,
}

/// Every live node sees every other live node (no node is restarted here, so a count is enough
/// and stays cheap at 1,000 nodes).
fn membership_formed(sim: &Sim) -> bool {
    let live = sim.live();
    live.iter().all(|&i| {
        sim.node(i)
            .is_some_and(|n| n.peers().count() + 1 == live.len())
    })
}

/// Simulates one size within `budget` of wall time.
pub fn point(nodes: usize, per: usize, seed: u64, budget: Duration) -> ScalePoint {
    let wall = Instant::now();
    let over = move || wall.elapsed() > budget;
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.seeds = 3.min(nodes);
    cfg.node =
        pidmesh_proto::Config::lan().for_cluster_size(u32::try_from(nodes).unwrap_or(u32::MAX));
    let mut sim = Sim::new(cfg);
    let mut note = None;
    let formed = sim.run_until(Duration::from_secs(600), Duration::from_millis(100), |s| {
        over() || membership_formed(s)
    });
    let formed = if over() {
        note = Some(format!(
            "membership not formed within the {budget:?} wall budget"
        ));
        None
    } else {
        formed
    };
    let total = nodes * per;
    let before = sim.bytes_sent;
    let mut converged = None;
    if formed.is_some() {
        for i in 0..nodes {
            for k in 0..per {
                if let Some(pid) = sim.spawn(i) {
                    sim.register(i, &format!("node{i}/service-{k:04}"), &pid);
                }
            }
        }
        let held_all = |s: &Sim| {
            s.live()
                .iter()
                .all(|&i| s.node(i).is_some_and(|n| n.registry().len() >= total))
        };
        let c = sim.run_until(Duration::from_secs(600), Duration::from_millis(1), |s| {
            over() || held_all(s)
        });
        if held_all(&sim) {
            converged = c;
        } else {
            note = Some(match c {
                Some(_) => format!("not converged within the {budget:?} wall budget"),
                None => "not converged within 600 s of virtual time".to_string(),
            });
        }
    }
    let min_entries = sim
        .live()
        .iter()
        .filter_map(|&i| sim.node(i).map(|n| n.registry().len()))
        .min()
        .unwrap_or(0);
    let min_members = sim
        .live()
        .iter()
        .filter_map(|&i| sim.node(i).map(|n| n.peers().count() + 1))
        .min()
        .unwrap_or(0);
    let after = sim.bytes_sent;
    let per_node = |c: usize| (after[c] - before[c]) as f64 / nodes.max(1) as f64;
    ScalePoint {
        nodes,
        names_per_node: per,
        formed_secs: formed.map(|d| d.as_secs_f64()),
        converge_secs: converged.map(|d| d.as_secs_f64()),
        min_entries,
        bytes_per_node: [per_node(0), per_node(1), per_node(2)],
        virtual_secs: sim.elapsed().as_secs_f64(),
        min_members,
        wall_secs: wall.elapsed().as_secs_f64(),
        note,
    }
}

/// Runs every size in order; stops at the first size that does not finish in its budget.
pub fn run(sizes: &[usize], per: usize, budget: Duration) -> ScaleResult {
    let mut points = Vec::new();
    let mut skipped = Vec::new();
    for (k, &n) in sizes.iter().enumerate() {
        eprintln!("  scale: simulating {n} nodes × {per} names (budget {budget:?})");
        let p = point(n, per, 1, budget);
        eprintln!(
            "  scale: {n} nodes: formed {:?} s, converged {:?} s (virtual; {:.1} s simulated, \
             fewest members seen {}), wall {:.1} s",
            p.formed_secs, p.converge_secs, p.virtual_secs, p.min_members, p.wall_secs
        );
        let finished = p.converge_secs.is_some();
        points.push(p);
        if !finished {
            skipped.extend_from_slice(&sizes[k + 1..]);
            break;
        }
    }
    ScaleResult { points, skipped }
}
