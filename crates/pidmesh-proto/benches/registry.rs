//! Micro benchmarks of a node's registry with pidmesh's real types, at 10k, 100k and 1M entries.
//!
//! Run all: `cargo bench -p pidmesh-proto --bench registry`
//! One group: `cargo bench -p pidmesh-proto --bench registry -- lookup_unique`
//! (groups: `lookup_unique`, `lookup_unique_hot`, `members_of`, `lookup_under_writes`,
//! `register_unregister`, `delta_join`, `snapshot_chunk`). Each measurement lasts 2 s after a 1 s
//! warm-up; the whole run takes a few minutes, most of it building the 1M-entry registries.
//!
//! * `lookup_unique`: `RegistryReader::lookup` (what `pidmesh::Registry::lookup` calls) of a
//!   name picked pseudo-randomly among all registered ones, so most probes miss the CPU caches,
//!   and `pidmesh_borrowed`, its borrowed form `RegistryReader::with_lookup`,
//!   beside a std `HashMap<String, Entry>` holding the same entries, probed with the same names
//!   in the same order (`std_hashmap_borrowed`: a reference; `std_hashmap_cloned`: an owned copy);
//!   `lookup_unique_hot` looks up the same name again and again (cache-resident: the CPU cost).
//! * `members_of`: a 10-member group in a registry of N unique names.
//! * `lookup_under_writes`: 1M entries while another thread keeps registering and unregistering
//!   names in batches of 64 under the node's write lock (as the facade's driver does per
//!   message); `reader` is the lock-free read path, `node_read_lock` the old one (read lock on
//!   the whole node) for comparison.
//! * `register_unregister`: one local registration plus its removal, on a 1M-entry node.
//! * `delta_join`: join of a one-entry delta from another node into a 1M-entry replica.
//! * `snapshot_chunk`: encode / decode of a `SyncMsg::Chunk` carrying 10k entries.
//!
//! Memory per entry: `cargo run --release -p pidmesh-wire --example footprint -- 1000000`
//! (also with 10000 and 100000).
//!
//! Benchmarks report numbers; they assert nothing about timings.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use pidmesh_crdt::OrMap;
use pidmesh_proto::{Config, Entry, Key, Node, NodeId, NodeOptions, Registry, Resolver};
use pidmesh_wire::{Hlc, OriginDelta, SyncMsg, SyncV1, Value, WireEntry, decode, encode};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
const WALL0: u64 = 1_790_000_000_000;

fn name(i: usize) -> String {
    // ~17-byte names, like real service names.
    format!("svc/name-{i:08}")
}

fn drain(node: &mut Node) {
    while node.poll_event().is_some() {}
    while node.poll_transmit().is_some() {}
}

/// A node holding `n` unique names and one 10-member group `workers/eu`; returns it with the
/// virtual time it reached.
fn node_with(n: usize) -> (Node, Instant) {
    let start = Instant::now();
    let addr: SocketAddr = ([127, 0, 0, 1], 4000).into();
    let opts = NodeOptions {
        id: NodeId::new("bench-1", 1),
        addr,
        seeds: Vec::new(),
        rng_seed: 7,
        wall_ms_at_start: WALL0,
    };
    let mut node = Node::new(opts, Config::local(), Resolver::keep_oldest(), start);
    let mut now = start;
    let pid = node.spawn_pid();
    for i in 0..n {
        if let Err(e) = node.register(now, &name(i), &pid, Bytes::new()) {
            panic!("register {i}: {e}");
        }
        if i % 1024 == 1023 {
            // Let the node flush its pending delta batch (nobody to send it to).
            now += Duration::from_millis(50);
            node.handle_timeout(now);
            drain(&mut node);
        }
    }
    for _ in 0..10 {
        let p = node.spawn_pid();
        if let Err(e) = node.join(now, "workers/eu", &p, Bytes::new()) {
            panic!("join: {e}");
        }
    }
    now += Duration::from_millis(50);
    node.handle_timeout(now);
    drain(&mut node);
    (node, now)
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup_unique");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let mut hot = Vec::new();
    for &n in &SIZES {
        let (node, _) = node_with(n);
        let reader = node.reader();
        let names: Vec<String> = (0..n).map(name).collect();
        g.bench_with_input(BenchmarkId::new("pidmesh", n), &n, |b, &n| {
            let mut i = 0usize;
            b.iter(|| {
                // A stride coprime with n visits every name in a cache-unfriendly order.
                i = (i + 7_919) % n;
                black_box(reader.lookup(&names[i]))
            })
        });
        // The borrowed form (`Registry::with_lookup`): the closure reads the winner in place.
        g.bench_with_input(BenchmarkId::new("pidmesh_borrowed", n), &n, |b, &n| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 7_919) % n;
                reader.with_lookup(&names[i], |e| black_box(e).is_some())
            })
        });
        // The naive baseline: the same entries in a std map keyed by name, probed with the same
        // names in the same order. `borrowed` returns a reference (no copy), `cloned` hands out
        // an owned `Entry` as `lookup` does.
        let std_map: HashMap<String, Entry> = names
            .iter()
            .filter_map(|nm| node.lookup(nm).map(|e| (nm.clone(), e)))
            .collect();
        assert_eq!(std_map.len(), n, "every name is registered");
        g.bench_with_input(BenchmarkId::new("std_hashmap_borrowed", n), &n, |b, &n| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 7_919) % n;
                black_box(std_map.get(names[i].as_str()))
            })
        });
        g.bench_with_input(BenchmarkId::new("std_hashmap_cloned", n), &n, |b, &n| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 7_919) % n;
                black_box(std_map.get(names[i].as_str()).cloned())
            })
        });
        drop(std_map);
        hot.push((n, node, names));
    }
    g.finish();

    let mut g = c.benchmark_group("lookup_unique_hot");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (n, node, names) in &hot {
        let reader = node.reader();
        let one = &names[n / 2];
        g.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
            b.iter(|| black_box(reader.lookup(black_box(one))))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("members_of");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (n, node, _) in &hot {
        let reader = node.reader();
        g.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
            b.iter(|| black_box(reader.members_of(black_box("workers/eu"))))
        });
    }
    g.finish();
}

fn under_writes(c: &mut Criterion) {
    let n = 1_000_000;
    let (node, now) = node_with(n);
    let reader = node.reader();
    let node = Arc::new(RwLock::new(node));
    let names: Arc<Vec<String>> = Arc::new((0..n).map(name).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (node, stop) = (node.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut now = now;
            let mut round = 0u64;
            let pid = match node.write() {
                Ok(mut n) => n.spawn_pid(),
                Err(_) => return 0,
            };
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut n) = node.write() else {
                    return round;
                };
                // One "message" worth of work under the write lock.
                for j in 0..64 {
                    let nm = format!("churn/{j}");
                    if round.is_multiple_of(2) {
                        let _ = n.register(now, &nm, &pid, Bytes::new());
                    } else {
                        let _ = n.unregister(now, &nm, &pid);
                    }
                }
                now += Duration::from_millis(10);
                n.handle_timeout(now);
                drain(&mut n);
                drop(n);
                round += 1;
            }
            round
        })
    };
    let mut g = c.benchmark_group("lookup_under_writes");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("reader", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 7_919) % n;
            black_box(reader.lookup(&names[i]))
        })
    });
    g.bench_function("node_read_lock", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 7_919) % n;
            let guard = node
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            black_box(guard.lookup(&names[i]))
        })
    });
    g.finish();
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap_or(0);
    eprintln!("lookup_under_writes: the writer ran {rounds} rounds of 64 changes meanwhile");
}

fn register_unregister(c: &mut Criterion) {
    let (mut node, mut now) = node_with(1_000_000);
    let pid = node.spawn_pid();
    let mut g = c.benchmark_group("register_unregister");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("1000000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let batch = (iters - done).min(256);
                let names: Vec<String> = (0..batch).map(|i| format!("new/name-{i:08}")).collect();
                let t = Instant::now();
                for nm in &names {
                    let _ = black_box(node.register(now, nm, &pid, Bytes::new()));
                    let _ = black_box(node.unregister(now, nm, &pid));
                }
                total += t.elapsed();
                // Flush the pending delta batch and drop the events, untimed.
                now += Duration::from_millis(50);
                node.handle_timeout(now);
                drain(&mut node);
                done += batch;
            }
            total
        })
    });
    g.finish();
}

fn value(i: u64) -> Value {
    Value {
        pid: i,
        meta: Bytes::new(),
        at: Hlc {
            wall_ms: WALL0 + i / 100,
            logical: 0,
        },
    }
}

fn delta_join(c: &mut Criterion) {
    let nodes: Vec<NodeId> = (1..=3)
        .map(|i| NodeId::new(format!("api-{i}"), i))
        .collect();
    let mut map = Registry::new();
    for i in 0..1_000_000u64 {
        map.add(
            &nodes[(i % 3) as usize],
            Key::name(name(i as usize)),
            value(i),
        );
    }
    let remote = NodeId::new("remote", 9);
    let mut g = c.benchmark_group("delta_join");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("one_entry_into_1000000", |b| {
        b.iter_custom(|iters| {
            let mut src: Registry = OrMap::new();
            let deltas: Vec<_> = (0..iters)
                .map(|i| src.add(&remote, Key::name(format!("remote/{i:08}")), value(i)))
                .collect();
            let t = Instant::now();
            for d in &deltas {
                black_box(map.join(d));
            }
            let took = t.elapsed();
            map.forget_actor(&remote);
            took
        })
    });
    g.finish();
}

fn snapshot_chunk(c: &mut Criterion) {
    const ENTRIES: u64 = 10_000;
    let from = NodeId::new("api-1", 1);
    let adds: Vec<WireEntry> = (1..=ENTRIES)
        .map(|i| WireEntry {
            seq: i,
            key: Key::name(name(i as usize)),
            value: value(i),
        })
        .collect();
    let msg = SyncMsg::V1(SyncV1::Chunk {
        from: from.clone(),
        to: NodeId::new("api-2", 2),
        delta: OriginDelta {
            seen: vec![(1, ENTRIES)],
            adds,
            released: Vec::new(),
        },
        last: true,
    });
    let bytes = match encode(&msg) {
        Ok(b) => b,
        Err(e) => panic!("encode: {e}"),
    };
    let mut g = c.benchmark_group("snapshot_chunk");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(ENTRIES));
    g.bench_function("encode_10k", |b| b.iter(|| black_box(encode(&msg))));
    g.bench_function("decode_10k", |b| {
        b.iter(|| black_box(decode::<SyncMsg>(black_box(&bytes))))
    });
    g.finish();
    eprintln!(
        "snapshot_chunk: {} bytes for {ENTRIES} entries",
        bytes.len()
    );
}

// `criterion_group!` would generate an undocumented `pub fn`; this is what it and
// `criterion_main!` expand to.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    lookups(&mut c);
    under_writes(&mut c);
    register_unregister(&mut c);
    delta_join(&mut c);
    snapshot_chunk(&mut c);
    c.final_summary();
}
