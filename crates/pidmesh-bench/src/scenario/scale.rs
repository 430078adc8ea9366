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
//!
//! Membership forms through the push-pull exchange on join (`pidmesh_proto::PushPull`). For a
//! before/after comparison, `PIDMESH_SCALE_NO_PUSH_PULL=1` turns it off (SWIM announces and
//! gossip alone).

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
    /// Average payload bytes sent per node while membership formed: SWIM datagrams, push-pull
    /// member lists, delta, other sync.
    #[serde(default)]
    pub formation_bytes_per_node: Option<[f64; 4]>,
    /// What node 0 (a seed) sent while membership formed: SWIM datagrams, push-pull lists.
    #[serde(default)]
    pub seed_formation_bytes: Option<[f64; 2]>,
    /// Push-pull list bytes per node during convergence (part of the sync figure).
    #[serde(default)]
    pub converge_push_pull_per_node: Option<f64>,
    /// Wall-clock seconds until membership formed.
    #[serde(default)]
    pub formed_wall_secs: Option<f64>,
    /// Push-pull requests answered and refused as busy, over all nodes, while membership formed.
    #[serde(default)]
    pub push_pull_answered_refused: Option<[u64; 2]>,
    /// Anti-entropy digests sent over all nodes while membership formed (a digest to a member
    /// that comes up goes out only when one side may hold dots the other lacks: with no entries
    /// yet, only the periodic rounds remain).
    #[serde(default)]
    pub formation_digests: Option<u64>,
}

/// Push-pull bytes sent, requests answered and refused, summed over the live nodes.
fn push_pull_totals(sim: &Sim) -> [u64; 3] {
    sim.live()
        .iter()
        .filter_map(|&i| sim.node(i).map(pidmesh_proto::Node::stats))
        .fold([0; 3], |acc, s| {
            [
                acc[0] + s.push_pull_bytes_sent,
                acc[1] + s.push_pull_answered,
                acc[2] + s.push_pull_refused,
            ]
        })
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
    if std::env::var_os("PIDMESH_SCALE_NO_PUSH_PULL").is_some() {
        cfg.node.push_pull = None;
    }
    let mut sim = Sim::new(cfg);
    let mut note = None;
    // Checked every 20 ms of virtual time: the formation time is read to that resolution.
    let formed = sim.run_until(Duration::from_secs(600), Duration::from_millis(20), |s| {
        over() || membership_formed(s)
    });
    let formed_wall = wall.elapsed().as_secs_f64();
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
    let pp_formed = push_pull_totals(&sim);
    let n = nodes.max(1) as f64;
    let formation_bytes_per_node = formed.map(|_| {
        let sync_other = before[2].saturating_sub(pp_formed[0]);
        [
            before[0] as f64 / n,
            pp_formed[0] as f64 / n,
            before[1] as f64 / n,
            sync_other as f64 / n,
        ]
    });
    let formation_digests: u64 = sim
        .live()
        .iter()
        .filter_map(|&i| sim.node(i).map(|n| n.stats().digests_sent))
        .sum();
    let seed_pp = sim.node(0).map_or(0, |s| s.stats().push_pull_bytes_sent);
    let seed_formation_bytes = sim
        .bytes_by_host
        .first()
        .map(|b| [b[0] as f64, seed_pp as f64]);
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
    let per_node = |c: usize| (after[c] - before[c]) as f64 / n;
    let pp_after = push_pull_totals(&sim);
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
        formation_bytes_per_node,
        seed_formation_bytes,
        converge_push_pull_per_node: Some(pp_after[0].saturating_sub(pp_formed[0]) as f64 / n),
        formed_wall_secs: formed.map(|_| formed_wall),
        push_pull_answered_refused: Some([pp_formed[1], pp_formed[2]]),
        formation_digests: formed.map(|_| formation_digests),
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
             fewest members seen {}), wall {:.1} s (formed after {:?} s); formation bytes per \
             node swim/push-pull/delta/sync {:?}, seed swim/push-pull {:?}, push-pull \
             answered/refused {:?}, digests while forming {:?}",
            p.formed_secs,
            p.converge_secs,
            p.virtual_secs,
            p.min_members,
            p.wall_secs,
            p.formed_wall_secs,
            p.formation_bytes_per_node,
            p.seed_formation_bytes,
            p.push_pull_answered_refused,
            p.formation_digests
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
