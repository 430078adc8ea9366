//! Where the time of a partition heal goes, in virtual time (protocol delays: timers, batch
//! windows, round trips) and in this process's CPU time (the work itself), separately.
//!
//! Three nodes; node 0 is cut off from nodes 1 and 2 until both sides declared the other down.
//! Node 0 then registers N names, node 2 the same N names (other processes; keep-oldest, so
//! node 0 wins every one). The links are restored. Reported, from the heal:
//! - contact: node 0 has a peer again (the first SWIM exchange across the link);
//! - one winner: every node's `lookup` gives node 0's process for every name;
//! - clean: additionally every node holds exactly N entries (node 2's losers removed);
//!
//! and the CPU time the simulator spent between contact and clean (single thread, all three
//! nodes' work; on a loaded machine compare runs made together).
//!
//! `cargo run --release -p pidmesh-sim --example heal_cost -- [n=10000] [preset=lan|local] [seed=1]`

use std::time::{Duration, Instant};

use pidmesh_proto::{Config, Node};
use pidmesh_sim::{Sim, SimConfig, check, contest};

#[inline(never)]
fn winners_agree(sim: &Sim, names: &[String]) -> bool {
    let Some(n0) = sim.node(0) else { return false };
    names.iter().all(|name| {
        let w = n0.lookup(name).map(|e| e.pid);
        w.is_some() && (1..3).all(|i| sim.node(i).and_then(|n| n.lookup(name)).map(|e| e.pid) == w)
    })
}

/// Heals the partition and runs until every node holds one winner per name and no loser.
/// A function of its own so that a profiler can count this phase alone:
/// `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='heal_cost::heal_phase'
/// --toggle-collect='heal_cost::winners_agree' --toggle-collect='heal_cost::settled_entries'`
/// counts the nodes' work after the heal, without the example's own checks.
#[inline(never)]
fn heal_phase(sim: &mut Sim, names: &[String], n: usize) {
    sim.heal();
    let healed_at = sim.elapsed();
    let mut timeline = Timeline::new(sim);
    let step = Duration::from_millis(1);
    let t = Instant::now();
    let contact = sim
        .run_until(Duration::from_secs(120), step, |s| {
            timeline.observe(s, s.elapsed() - healed_at);
            s.node(0).is_some_and(|x| x.peers().count() > 0)
        })
        .expect("contact");
    let cpu0 = t.elapsed();
    let mut agree = None;
    let mut elapsed = contact;
    let limit = Duration::from_secs(60);
    let mut check_cpu = Duration::ZERO;
    while elapsed < contact + limit {
        let c = Instant::now();
        let agreed = agree.is_some() || winners_agree(sim, names);
        let clean = agreed && settled_entries(sim, n);
        check_cpu += c.elapsed();
        if agreed && agree.is_none() {
            agree = Some(elapsed);
        }
        if clean {
            break;
        }
        sim.run_for(step);
        elapsed += step;
        timeline.observe(sim, elapsed);
    }
    let cpu = t.elapsed() - cpu0 - check_cpu;
    println!(
        "heal → contact {:.1} ms (virtual), → one winner {}, → clean {:.1} ms ({} ms after contact); \
         CPU from contact to clean {:.1} ms",
        contact.as_secs_f64() * 1e3,
        agree.map_or("never".into(), |d| format!(
            "{:.1} ms ({:.1} ms after contact)",
            d.as_secs_f64() * 1e3,
            (d - contact).as_secs_f64() * 1e3
        )),
        elapsed.as_secs_f64() * 1e3,
        (elapsed - contact).as_millis(),
        cpu.as_secs_f64() * 1e3
    );
    timeline.print();
}

/// Per node, in virtual time from the heal: when it saw both others again, and when its
/// registry (entry count, conflicts resolved) first and last changed.
struct Timeline {
    last: Vec<(usize, u64)>,
    back: Vec<Option<Duration>>,
    first: Vec<Option<Duration>>,
    changed: Vec<Option<Duration>>,
}

impl Timeline {
    fn probe(sim: &Sim, i: usize) -> (usize, u64) {
        sim.node(i).map_or((0, 0), |x| {
            (x.stats().entries, x.stats().conflicts_resolved)
        })
    }

    fn new(sim: &Sim) -> Self {
        Self {
            last: (0..3).map(|i| Self::probe(sim, i)).collect(),
            back: vec![None; 3],
            first: vec![None; 3],
            changed: vec![None; 3],
        }
    }

    fn observe(&mut self, sim: &Sim, at: Duration) {
        for i in 0..3 {
            if self.back[i].is_none() && sim.node(i).is_some_and(|x| x.peers().count() == 2) {
                self.back[i] = Some(at);
            }
            let p = Self::probe(sim, i);
            if p != self.last[i] {
                self.last[i] = p;
                self.first[i] = self.first[i].or(Some(at));
                self.changed[i] = Some(at);
            }
        }
    }

    fn print(&self) {
        let ms = |d: &Option<Duration>| {
            d.map_or("—".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
        };
        for i in 0..3 {
            println!(
                "node {i}: saw both others at {}, registry first changed at {}, last at {}",
                ms(&self.back[i]),
                ms(&self.first[i]),
                ms(&self.changed[i])
            );
        }
    }
}

#[inline(never)]
fn settled_entries(sim: &Sim, n: usize) -> bool {
    (0..3).all(|i| sim.node(i).is_some_and(|x| x.stats().entries == n))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let preset = args.get(1).map_or("lan", String::as_str);
    let seed: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    println!("seed = {seed}, n = {n}, preset = {preset}");
    let mut cfg = SimConfig::new(3, seed);
    cfg.node = match preset {
        "local" => Config::local(),
        _ => Config::lan(),
    };
    if std::env::var_os("NO_LIFEGUARD").is_some() {
        cfg.node.lifeguard = None;
    }
    let mut sim = Sim::new(cfg);
    sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(10),
        check::membership_agrees_ok,
    )
    .expect("the cluster forms");
    let split =
        contest::cut_off_node_zero(&mut sim, Duration::from_secs(120)).unwrap_or_else(|| {
            panic!(
                "both sides declare the other down (peers seen: {:?})",
                (0..3)
                    .map(|i| sim.node(i).map(|x| x.peers().count()))
                    .collect::<Vec<_>>()
            )
        });
    let names: Vec<String> = (0..n).map(|i| format!("contested/{i:07}")).collect();
    contest::claim_on_both_sides(&mut sim, &names).expect("both sides claim every name");
    sim.run_for(Duration::from_millis(100));
    println!("split detected after {split:?}; both sides hold their claims");

    let before: Vec<_> = (0..3).map(|i| sim.node(i).map(Node::stats)).collect();
    let bytes_before = sim.bytes_sent;
    heal_phase(&mut sim, &names, n);
    println!("from the heal to clean, per node:");
    for i in 0..3 {
        let (Some(x), Some(Some(b))) = (sim.node(i), before.get(i)) else {
            continue;
        };
        let s = x.stats();
        println!(
            "node {i}: entries {}, conflicts resolved {}, delta batches sent {} ({} B), \
             deltas applied {}, digests answered {}, chunks applied {}, full syncs {}, \
             sync bytes sent {}",
            s.entries,
            s.conflicts_resolved - b.conflicts_resolved,
            s.batches_sent - b.batches_sent,
            s.delta_bytes_sent - b.delta_bytes_sent,
            s.deltas_applied - b.deltas_applied,
            s.digests_answered - b.digests_answered,
            s.chunks_applied - b.chunks_applied,
            s.full_syncs - b.full_syncs,
            s.sync_bytes_sent - b.sync_bytes_sent,
        );
    }
    let bytes: Vec<u64> = (0..3)
        .map(|c| sim.bytes_sent[c] - bytes_before[c])
        .collect();
    println!("bytes sent after the heal (membership, delta, sync): {bytes:?}");
}
