//! **memory**: heap bytes per entry of a replica's registry state, `OrMap<NodeId, Key, Value>`,
//! holding N unique names of 17 bytes (`svc/name-00000001`) with empty metadata, registered by
//! 5 nodes in turn. Bytes are what the replica's allocations asked for (the binary counts them
//! with a wrapping global allocator, `cap`); the RSS growth is given next to it for the
//! allocator's own overhead.

use std::time::Instant;

use bytes::Bytes;
use pidmesh::{Hlc, Key, NodeId};
use pidmesh_crdt::OrMap;
use pidmesh_wire::Value;
use serde::{Deserialize, Serialize};

use crate::cluster::rss_bytes;

/// One registry size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryPoint {
    /// Entries held.
    pub entries: usize,
    /// Heap bytes asked for, per entry.
    pub heap_bytes_per_entry: f64,
    /// Resident-set growth per entry (includes allocator overhead; `None` off Linux).
    pub rss_bytes_per_entry: Option<f64>,
    /// Nanoseconds per local add while filling it.
    pub add_ns: f64,
}

/// What the memory scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryResult {
    /// One point per size, smallest first.
    pub points: Vec<MemoryPoint>,
}

/// Fills one replica per size and measures it; `allocated` reads the global allocator's count.
pub fn run(sizes: &[usize], allocated: impl Fn() -> usize) -> MemoryResult {
    let origins: Vec<NodeId> = (0..5u64)
        .map(|i| NodeId::new(format!("api-{i}"), 1_790_000_000_000 + i))
        .collect();
    let mut points = Vec::new();
    for &n in sizes {
        let (heap0, rss0) = (allocated(), rss_bytes());
        let started = Instant::now();
        let mut map: OrMap<NodeId, Key, Value> = OrMap::new();
        for (i, origin) in (0..n as u64).zip(origins.iter().cycle()) {
            let value = Value {
                pid: i,
                meta: Bytes::new(),
                at: Hlc {
                    wall_ms: 1_790_000_060_000 + i / 64,
                    logical: 0,
                },
            };
            let _delta = map.add(origin, Key::name(format!("svc/name-{i:08}")), value);
        }
        let add_ns = started.elapsed().as_nanos() as f64 / n.max(1) as f64;
        let heap = allocated().saturating_sub(heap0) as f64;
        let rss = rss_bytes()
            .zip(rss0)
            .map(|(a, b)| a.saturating_sub(b) as f64);
        eprintln!(
            "  memory: {n} entries, {:.1} B/entry heap",
            heap / n.max(1) as f64
        );
        points.push(MemoryPoint {
            entries: map.len(),
            heap_bytes_per_entry: heap / n.max(1) as f64,
            rss_bytes_per_entry: rss.map(|r| r / n.max(1) as f64),
            add_ns,
        });
    }
    MemoryResult { points }
}
