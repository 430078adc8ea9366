//! **lookup**: a random unique-name lookup in a node's registry against a std map, in one run.
//!
//! For each size N (10k, 100k, 1M; tiny in `--smoke`) one sans-io node registers N names of
//! 17 bytes (`svc/name-00000001`, empty metadata), and a `std::collections::HashMap<String,
//! Entry>` gets the same N entries (the `Entry` type `lookup` returns). Every side then looks up
//! the same names in the same scattered order (a stride of 7,919 through the list, coprime with
//! N, so consecutive lookups land far apart in memory):
//!
//! - `pidmesh owned`: `RegistryReader::lookup` (what `Registry::lookup` calls), an owned `Entry`;
//! - `pidmesh borrowed`: `RegistryReader::with_lookup` (what `Registry::with_lookup` calls), the
//!   closure reads the entry in place and returns its pid's local number;
//! - `std borrowed`: `HashMap::get`, and the same field read through the reference;
//! - `std cloned`: `HashMap::get(..).cloned()`, an owned `Entry` like `lookup`.
//!
//! Timing interleaves the four sides in rounds of a few thousand lookups each (in a round each
//! side reads its own stretch of the scattered order, disjoint from the other sides', so no
//! side finds cache lines another side just loaded; the side going first rotates) and reports, per
//! side, the median of its rounds' nanoseconds per lookup, so a change of machine load hits
//! all four alike; the load average is recorded before and after. The headline is pidmesh
//! borrowed / std borrowed at the largest size.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pidmesh_proto::{Config, Entry, Node, NodeId, NodeOptions, RegistryReader, Resolver};
use serde::{Deserialize, Serialize};

use crate::report::loadavg;

/// One registry size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupPoint {
    /// Names registered (and looked up).
    pub entries: usize,
    /// `RegistryReader::lookup`, ns per lookup (median of rounds).
    pub pidmesh_owned_ns: f64,
    /// `RegistryReader::with_lookup`, ns per lookup.
    pub pidmesh_borrowed_ns: f64,
    /// `HashMap<String, Entry>::get`, ns per lookup.
    pub std_borrowed_ns: f64,
    /// `HashMap<String, Entry>::get(..).cloned()`, ns per lookup.
    pub std_cloned_ns: f64,
    /// Rounds per side; lookups per round.
    pub rounds: usize,
    /// Lookups per round.
    pub per_round: usize,
}

impl LookupPoint {
    /// pidmesh borrowed over std borrowed (the target is ≤ 0.7 at 1M).
    pub fn borrowed_ratio(&self) -> f64 {
        self.pidmesh_borrowed_ns / self.std_borrowed_ns
    }

    /// pidmesh owned over std cloned.
    pub fn owned_ratio(&self) -> f64 {
        self.pidmesh_owned_ns / self.std_cloned_ns
    }
}

/// What the lookup scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupResult {
    /// One point per size, smallest first.
    pub points: Vec<LookupPoint>,
    /// Load averages (1, 5, 15 min) before the first size was built.
    pub loadavg_start: Option<[f64; 3]>,
    /// Load averages after the last size was measured.
    pub loadavg_end: Option<[f64; 3]>,
}

fn name(i: usize) -> String {
    format!("svc/name-{i:08}")
}

/// A node holding `n` unique names (sans-io: time is handed in, nothing is sent).
fn node_with(n: usize) -> anyhow::Result<Node> {
    let start = Instant::now();
    let addr: SocketAddr = ([127, 0, 0, 1], 4000).into();
    let opts = NodeOptions {
        id: NodeId::new("lookup-1", 1),
        addr,
        seeds: Vec::new(),
        rng_seed: 7,
        wall_ms_at_start: 1_790_000_000_000,
    };
    let mut node = Node::new(opts, Config::local(), Resolver::keep_oldest(), start);
    let mut now = start;
    let pid = node.spawn_pid();
    for i in 0..n {
        node.register(now, &name(i), &pid, Bytes::new())
            .map_err(|e| anyhow::anyhow!("register {i}: {e}"))?;
        if i % 1024 == 1023 {
            // Let the node flush its pending delta batch (there is nobody to send it to).
            now += Duration::from_millis(50);
            node.handle_timeout(now);
            while node.poll_event().is_some() {}
            while node.poll_transmit().is_some() {}
        }
    }
    now += Duration::from_millis(50);
    node.handle_timeout(now);
    while node.poll_event().is_some() {}
    while node.poll_transmit().is_some() {}
    Ok(node)
}

/// The four sides, by index: what one lookup of `names[i]` does.
fn probe(side: usize, reader: &RegistryReader, map: &HashMap<String, Entry>, nm: &str) -> u64 {
    match side {
        0 => reader.lookup(nm).map_or(0, |e| black_box(e).pid.local),
        1 => reader.with_lookup(nm, |e| e.map_or(0, |e| black_box(e).local)),
        2 => map.get(nm).map_or(0, |e| black_box(e).pid.local),
        _ => map.get(nm).cloned().map_or(0, |e| black_box(e).pid.local),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Measures each size with about `lookups` lookups per side.
///
/// # Errors
/// A registration was refused, or a side found a different number of names than registered.
pub fn run(sizes: &[usize], lookups: usize) -> anyhow::Result<LookupResult> {
    let loadavg_start = loadavg();
    let mut points = Vec::new();
    for &n in sizes {
        let node = node_with(n)?;
        let reader = node.reader();
        let names: Vec<String> = (0..n).map(name).collect();
        let map: HashMap<String, Entry> = names
            .iter()
            .filter_map(|nm| Some((nm.clone(), reader.lookup(nm)?)))
            .collect();
        anyhow::ensure!(map.len() == n, "{} of {n} names registered", map.len());
        let per_round = 4_096.min(lookups.max(1));
        let rounds = (lookups / per_round).max(3);
        let mut ns: [Vec<f64>; 4] = Default::default();
        // Warm-up: one pass of every side.
        let mut i = 0usize;
        for side in 0..4 {
            for _ in 0..per_round {
                i = (i + 7_919) % n;
                black_box(probe(side, &reader, &map, &names[i]));
            }
        }
        for round in 0..rounds {
            // Two sides share each structure (owned and borrowed read the same node table, the
            // std sides the same map), and a round's lines stay in the caches for the next side.
            // So each side reads its own stretch of the scattered order, disjoint from every
            // other side's in the round: every side finds its names, keys and slots as cold as
            // the others do. The order still rotates so no side always follows the same one.
            for k in 0..ns.len() {
                let side = (round + k) % ns.len();
                let from = ((round * ns.len() + side) * per_round * 7_919) % n;
                let mut i = from;
                let mut acc = 0u64;
                let t = Instant::now();
                for _ in 0..per_round {
                    i = (i + 7_919) % n;
                    acc = acc.wrapping_add(probe(side, &reader, &map, &names[i]));
                }
                let el = t.elapsed();
                black_box(acc);
                ns[side].push(el.as_nanos() as f64 / per_round as f64);
            }
        }
        let [mut a, mut b, mut c, mut d] = ns;
        let p = LookupPoint {
            entries: n,
            pidmesh_owned_ns: median(&mut a),
            pidmesh_borrowed_ns: median(&mut b),
            std_borrowed_ns: median(&mut c),
            std_cloned_ns: median(&mut d),
            rounds,
            per_round,
        };
        eprintln!(
            "  lookup: {n} names: pidmesh owned {:.0} ns, borrowed {:.0} ns; std borrowed {:.0} ns, cloned {:.0} ns (borrowed ratio {:.2})",
            p.pidmesh_owned_ns,
            p.pidmesh_borrowed_ns,
            p.std_borrowed_ns,
            p.std_cloned_ns,
            p.borrowed_ratio()
        );
        points.push(p);
    }
    Ok(LookupResult {
        points,
        loadavg_start,
        loadavg_end: loadavg(),
    })
}
