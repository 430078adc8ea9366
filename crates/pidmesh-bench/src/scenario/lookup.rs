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
//! - `std cloned`: `HashMap::get(..).cloned()`, an owned `Entry` like `lookup`;
//! - `std locked`: the same map behind one `std::sync::RwLock`, read-locked per lookup (what a
//!   std map costs once a writer may change it meanwhile, as the node does its registry);
//! - `dashmap`: a `dashmap::DashMap<String, Entry>` (a sharded, locked concurrent map), `get`;
//! - four stages of pidmesh's own read path (`RegistryReader::read_stage`, feature
//!   `read-stages`): hashing the key, then also the shard's read lock, then also the table
//!   probe, then also the record's key compare. Each stage's cost is its difference from the
//!   stage before: the profile of where a lookup's time goes.
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
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use pidmesh_proto::{
    Config, Entry, Node, NodeId, NodeOptions, ReadStage, RegistryReader, Resolver,
};
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
    /// The std map behind an `RwLock`, read-locked per lookup, ns per lookup.
    #[serde(default)]
    pub std_locked_ns: Option<f64>,
    /// `DashMap<String, Entry>::get`, ns per lookup.
    #[serde(default)]
    pub dashmap_ns: Option<f64>,
    /// pidmesh's read path cut short after each stage (hash, lock, table, record), ns per
    /// lookup.
    #[serde(default)]
    pub stages_ns: Option<[f64; 4]>,
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

/// What the sides read: the node's reader and the same entries in the baselines.
struct Sides<'a> {
    reader: &'a RegistryReader,
    map: &'a HashMap<String, Entry>,
    locked: &'a RwLock<HashMap<String, Entry>>,
    dash: &'a DashMap<String, Entry>,
}

/// The sides, in the order of their index in [`Sides::probe`].
const SIDES: usize = 10;
/// The stages, as sides 6..10.
const STAGES: [ReadStage; 4] = [
    ReadStage::Hash,
    ReadStage::Lock,
    ReadStage::Table,
    ReadStage::Record,
];

impl Sides<'_> {
    /// What one lookup of `nm` does on side `side`.
    fn probe(&self, side: usize, nm: &str) -> u64 {
        match side {
            0 => self.reader.lookup(nm).map_or(0, |e| black_box(e).pid.local),
            1 => self
                .reader
                .with_lookup(nm, |e| e.map_or(0, |e| black_box(e).local)),
            2 => self.map.get(nm).map_or(0, |e| black_box(e).pid.local),
            3 => self
                .map
                .get(nm)
                .cloned()
                .map_or(0, |e| black_box(e).pid.local),
            4 => self
                .locked
                .read()
                .map_or(0, |m| m.get(nm).map_or(0, |e| black_box(e).pid.local)),
            5 => self
                .dash
                .get(nm)
                .map_or(0, |e| black_box(e.value()).pid.local),
            s => STAGES
                .get(s - 6)
                .map_or(0, |&stage| self.reader.read_stage(nm, stage)),
        }
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
        // The baselines are filled the same way as `map` (names in order), each its own copy.
        let entries = || {
            names
                .iter()
                .filter_map(|nm| Some((nm.clone(), map.get(nm)?.clone())))
        };
        let locked = RwLock::new(entries().collect::<HashMap<_, _>>());
        let dash: DashMap<String, Entry> = entries().collect();
        let sides = Sides {
            reader: &reader,
            map: &map,
            locked: &locked,
            dash: &dash,
        };
        let per_round = 4_096.min(lookups.max(1));
        let rounds = (lookups / per_round).max(3);
        let mut ns: [Vec<f64>; SIDES] = Default::default();
        // Warm-up: one pass of every side.
        let mut i = 0usize;
        for side in 0..SIDES {
            for _ in 0..per_round {
                i = (i + 7_919) % n;
                black_box(sides.probe(side, &names[i]));
            }
        }
        for round in 0..rounds {
            // Several sides share each structure (owned, borrowed and the stages read the same
            // node table, two std sides the same map), and a round's lines stay in the caches
            // for the next side. So each side reads its own stretch of the scattered order,
            // disjoint from every other side's in the round (where the size allows): every side
            // finds its names, keys and slots as cold as the others do. The order rotates so no
            // side always follows the same one.
            for k in 0..SIDES {
                let side = (round + k) % SIDES;
                let from = ((round * SIDES + side) * per_round * 7_919) % n;
                let mut i = from;
                let mut acc = 0u64;
                let t = Instant::now();
                for _ in 0..per_round {
                    i = (i + 7_919) % n;
                    acc = acc.wrapping_add(sides.probe(side, &names[i]));
                }
                let el = t.elapsed();
                black_box(acc);
                ns[side].push(el.as_nanos() as f64 / per_round as f64);
            }
        }
        let m: Vec<f64> = ns.iter_mut().map(|v| median(v)).collect();
        let at = |k: usize| m.get(k).copied().unwrap_or(f64::NAN);
        let p = LookupPoint {
            entries: n,
            pidmesh_owned_ns: at(0),
            pidmesh_borrowed_ns: at(1),
            std_borrowed_ns: at(2),
            std_cloned_ns: at(3),
            std_locked_ns: Some(at(4)),
            dashmap_ns: Some(at(5)),
            stages_ns: Some([at(6), at(7), at(8), at(9)]),
            rounds,
            per_round,
        };
        eprintln!(
            "  lookup: {n} names: pidmesh owned {:.0} ns, borrowed {:.0} ns; std borrowed {:.0} ns, cloned {:.0} ns, locked {:.0} ns; dashmap {:.0} ns (borrowed ratio {:.2}); stages hash / lock / table / record {:.0} / {:.0} / {:.0} / {:.0} ns",
            p.pidmesh_owned_ns,
            p.pidmesh_borrowed_ns,
            p.std_borrowed_ns,
            p.std_cloned_ns,
            at(4),
            at(5),
            p.borrowed_ratio(),
            at(6),
            at(7),
            at(8),
            at(9),
        );
        points.push(p);
    }
    Ok(LookupResult {
        points,
        loadavg_start,
        loadavg_end: loadavg(),
    })
}
