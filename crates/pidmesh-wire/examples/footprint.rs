//! Memory and wire footprint of the registry's replica with pidmesh's own types,
//! `OrMap<NodeId, Key, Value>`: 1,000,000 registrations of ~17-byte unique names (empty
//! metadata) spread over 5 nodes.
//!
//! Run: `cargo run --release -p pidmesh-wire --example footprint [ENTRIES]`.
//!
//! * heap: bytes the replica's allocations asked for (live bytes counted by a wrapping global
//!   allocator; the allocator's own per-block overhead is not included: the RSS line shows it);
//! * `postcard(to_delta())`: the generic CRDT state encoded as is (every dot repeats its
//!   `NodeId`);
//! * wire snapshot: the same state as pidmesh ships it, one `SyncMsg::Chunk` per origin whose
//!   entries carry only a sequence number (a real snapshot splits these into chunks under
//!   `MAX_SYNC_MSG_LEN`, which adds a few bytes per chunk).

use std::alloc::System;
use std::time::Instant;

use bytes::Bytes;
use cap::Cap;
use pidmesh_crdt::OrMap;
use pidmesh_wire::{Hlc, Key, NodeId, OriginDelta, SyncMsg, SyncV1, Value, WireEntry, encoded_len};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

const NODES: u64 = 5;
/// A plausible incarnation: the node's start time in Unix milliseconds.
const INCARNATION: u64 = 1_790_000_000_000;

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 1_000_000,
    };
    let nodes: Vec<NodeId> = (1..=NODES)
        .map(|i| NodeId::new(format!("api-{i}"), INCARNATION + i))
        .collect();
    let rss0 = rss_bytes();
    let heap0 = ALLOC.allocated();

    let t = Instant::now();
    let mut map: OrMap<NodeId, Key, Value> = OrMap::new();
    for i in 0..n {
        let node = &nodes[(i % NODES) as usize];
        let value = Value {
            pid: i,
            meta: Bytes::new(),
            at: Hlc {
                wall_ms: INCARNATION + 60_000 + i / 100,
                logical: 0,
            },
        };
        drop(map.add(node, Key::name(format!("svc/name-{i:08}")), value));
    }
    let build = t.elapsed();
    let heap = ALLOC.allocated() - heap0;
    let rss = rss_bytes().zip(rss0).map(|(a, b)| a.saturating_sub(b));
    let per = |bytes: usize| bytes as f64 / n as f64;
    let ns = |d: std::time::Duration| d.as_nanos() as f64 / n as f64;

    // The generic CRDT state, as postcard encodes it.
    let t = Instant::now();
    let state = map.to_delta();
    let to_delta = t.elapsed();
    let generic = postcard::to_stdvec(&state)?;
    let t = Instant::now();
    let decoded: pidmesh_crdt::Delta<NodeId, Key, Value> = postcard::from_bytes(&generic)?;
    let decode = t.elapsed();
    let t = Instant::now();
    let mut fresh = OrMap::new();
    fresh.join(&decoded);
    let state_join = t.elapsed();
    assert_eq!(fresh.len(), map.len(), "the full state rebuilds the map");
    drop((fresh, decoded, state));

    // The same state in pidmesh's wire format: per origin, a chunk of (seq, key, value).
    let mut wire = 0usize;
    for node in &nodes {
        let adds: Vec<WireEntry> = map
            .actor_entries(node)
            .map(|(k, s)| WireEntry {
                seq: s.dot.seq,
                key: k.clone(),
                value: s.value.clone(),
            })
            .collect();
        let seen = map
            .context()
            .row(node)
            .map(|r| r.ranges().to_vec())
            .unwrap_or_default();
        let chunk = SyncMsg::V1(SyncV1::Chunk {
            from: node.clone(),
            to: NodeId::new("new-node", INCARNATION),
            delta: OriginDelta {
                seen,
                adds,
                ..OriginDelta::default()
            },
            last: true,
        });
        wire += encoded_len(&chunk)?;
    }

    println!(
        "OrMap<NodeId, Key, Value>: {n} entries, {NODES} nodes, names like \"svc/name-00000000\", empty meta"
    );
    println!(
        "  heap (live, requested)         {:>8.1} B/entry  ({} MiB)",
        per(heap),
        heap >> 20
    );
    if let Some(rss) = rss {
        println!(
            "  RSS growth (incl. malloc)      {:>8.1} B/entry",
            per(rss as usize)
        );
    }
    println!(
        "  postcard(to_delta())           {:>8.1} B/entry  ({} MiB)",
        per(generic.len()),
        generic.len() >> 20
    );
    println!(
        "  wire snapshot (SyncMsg chunks) {:>8.1} B/entry  ({} MiB)",
        per(wire),
        wire >> 20
    );
    println!(
        "  build by add                   {:>8.1} ns/entry",
        ns(build)
    );
    println!(
        "  to_delta                       {:>8.1} ns/entry",
        ns(to_delta)
    );
    println!(
        "  decode postcard(to_delta())    {:>8.1} ns/entry",
        ns(decode)
    );
    println!(
        "  state join into an empty map   {:>8.1} ns/entry",
        ns(state_join)
    );
    println!(
        "  peak heap of the run           {:>8} MiB",
        ALLOC.max_allocated() >> 20
    );
    Ok(())
}
