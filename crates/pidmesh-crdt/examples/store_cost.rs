//! The CRDT store's write paths alone, made for instruction-count profiles: local adds on the
//! issuing replica, a replica joining a stream of small deltas, and a newcomer applying a whole
//! state in catch-up windows.
//!
//! ```text
//! cargo run --release -p pidmesh-crdt --example store_cost -- [add|stream|catchup] [N]
//! valgrind --tool=callgrind --toggle-collect='*measured_*' target/release/examples/store_cost stream 200000
//! ```
//!
//! The actor is shaped like pidmesh's node id (a short inline name and an incarnation number), the
//! key is a 17-byte inline name, the value two words. Only the functions named `measured_*` do the work being
//! measured (building the input and encoding it is outside them), so callgrind's
//! `--toggle-collect='*measured_*'` counts just that work; divide by N for a per-entry figure.
//!
//! * `add`: N adds of one actor; each delta is appended to a pending batch, as a node does.
//! * `stream`: the same N adds, shipped as postcard-encoded batches of 256 entries, decoded and
//!   joined by a replica that already knows the actor.
//! * `catchup`: a replica that holds nothing joins the whole state of N entries from one origin,
//!   in windows of 32,768 sequence numbers (`OrMap::extract`), decoded from postcard.

use std::hint::black_box;
use std::time::Instant;

use compact_str::{CompactString, format_compact};
use pidmesh_crdt::{Delta, DotSet, OrMap};
use serde::{Deserialize, Serialize};

/// Shaped like pidmesh's `NodeId`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct Node {
    name: CompactString,
    incarnation: u64,
}

type Map = OrMap<Node, CompactString, (u64, u64)>;
type D = Delta<Node, CompactString, (u64, u64)>;

const BATCH: usize = 256;
const WINDOW: u64 = 32_768;

fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        incarnation: 1_790_000_000_000,
    }
}

fn keys(n: usize) -> Vec<CompactString> {
    (0..n).map(|i| format_compact!("svc/name-{i:08}")).collect()
}

#[inline(never)]
fn measured_adds(map: &mut Map, me: &Node, keys: Vec<CompactString>) -> Vec<D> {
    adds(map, me, keys)
}

/// The adds of one actor, each delta appended to a pending batch of up to [`BATCH`] entries.
#[inline(never)]
fn adds(map: &mut Map, me: &Node, keys: Vec<CompactString>) -> Vec<D> {
    let mut batches = Vec::new();
    let mut pending: Option<D> = None;
    for (i, k) in keys.into_iter().enumerate() {
        let mut d = map.add(me, k, (i as u64, 7));
        match (&mut pending, d.adds.pop()) {
            (Some(p), Some((key, slot))) => {
                p.ctx.insert(&slot.dot);
                p.adds.push((key, slot));
            }
            (_, add) => {
                d.adds.extend(add);
                pending = Some(d);
            }
        }
        if pending.as_ref().is_some_and(|p| p.adds.len() >= BATCH) {
            batches.extend(pending.take());
        }
    }
    batches.extend(pending);
    batches
}

#[inline(never)]
fn measured_join(map: &mut Map, wires: &[Vec<u8>]) -> usize {
    let mut added = 0;
    for w in wires {
        let Ok(d) = postcard::from_bytes::<D>(w) else {
            continue;
        };
        added += map.join(&d).added.len();
    }
    added
}

fn encode(deltas: &[D]) -> Vec<Vec<u8>> {
    deltas
        .iter()
        .filter_map(|d| postcard::to_stdvec(d).ok())
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "stream".to_string());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let origin = node("node-0");
    let mut issuer = Map::new();
    let t = Instant::now();
    let batches = if mode == "add" {
        measured_adds(&mut issuer, &origin, keys(n))
    } else {
        adds(&mut issuer, &origin, keys(n))
    };
    let add_s = t.elapsed().as_secs_f64();
    match mode.as_str() {
        "add" => {
            println!("mode=add n={n} add_ns={:.1}", add_s * 1e9 / n as f64);
            black_box(batches);
        }
        "stream" => {
            let wires = encode(&batches);
            drop(batches);
            let mut replica = Map::new();
            // The replica already knows the origin (as after membership formed).
            let first = issuer.extract(&origin, &DotSet::from_range(1, 1));
            replica.join(&first);
            let t = Instant::now();
            let added = measured_join(&mut replica, &wires[..]);
            let s = t.elapsed().as_secs_f64();
            println!(
                "mode=stream n={n} batches={} added={added} join_ns={:.1}",
                wires.len(),
                s * 1e9 / n as f64
            );
            assert_eq!(replica.len(), n, "the replica holds every entry");
        }
        "catchup" => {
            drop(batches);
            let mut windows = Vec::new();
            let mut start = 1;
            while start <= n as u64 {
                let end = start + WINDOW - 1;
                windows.push(issuer.extract(&origin, &DotSet::from_range(start, end)));
                start = end + 1;
            }
            let wires = encode(&windows);
            drop(windows);
            let mut replica = Map::new();
            let t = Instant::now();
            let added = measured_join(&mut replica, &wires[..]);
            let s = t.elapsed().as_secs_f64();
            println!(
                "mode=catchup n={n} windows={} added={added} apply_ns={:.1}",
                wires.len(),
                s * 1e9 / n as f64
            );
            assert_eq!(replica.len(), n, "the replica holds every entry");
        }
        other => eprintln!("unknown mode {other}: add, stream or catchup"),
    }
}
