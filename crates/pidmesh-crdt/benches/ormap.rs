//! Micro benchmarks of the OR-map at 1M entries: add, delta join (new and duplicate), remove.
//!
//! Run: `cargo bench -p pidmesh-crdt --bench ormap` (quick: append
//! `-- --warm-up-time 1 --measurement-time 3`). Memory per entry and bytes per entry on the
//! wire are measured by `cargo run --release -p pidmesh-crdt --example generic_footprint` (generic
//! types) and `cargo run --release -p pidmesh-wire --example footprint` (pidmesh's own types).
//!
//! Every timed loop runs against a map that holds 1M entries of actor 1 when the sample starts;
//! the entries a sample adds (under other actors) are dropped with `forget_actor` after it,
//! outside the timing, so the map does not drift away from 1M over a long run. Inputs (key
//! strings, deltas) are built outside the timing too: only the operation is measured.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use pidmesh_crdt::{Delta, OrMap};

type Map = OrMap<u32, String, u64>;

const N: usize = 1_000_000;

/// Actor of the 1M base entries.
const BASE: u32 = 1;
/// Actor whose adds the `add` bench makes locally.
const LOCAL: u32 = 2;
/// Actor of the remote deltas the `join_*` benches receive.
const REMOTE: u32 = 3;
/// Actor whose entries the `remove` bench adds (untimed) and removes.
const REMOVER: u32 = 4;

fn key(prefix: &str, i: u64) -> String {
    // ~17-byte names, like real service names.
    format!("{prefix}/name-{i:08}")
}

fn filled(n: usize) -> Map {
    let mut m = Map::new();
    for i in 0..n as u64 {
        m.add(&BASE, key("svc", i), i);
    }
    m
}

/// `iters` one-entry deltas of a fresh remote replica, as a node receives them.
fn remote_deltas(iters: u64) -> Vec<Delta<u32, String, u64>> {
    let mut src = Map::new();
    (0..iters)
        .map(|i| src.add(&REMOTE, key("remote", i), i))
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut m = filled(N);
    assert_eq!(m.len(), N);
    let mut g = c.benchmark_group("ormap_1m");
    g.sample_size(20);

    // One local add (mints a dot, stores the entry, builds the delta to ship) into a 1M map.
    g.bench_function("add", |b| {
        b.iter_custom(|iters| {
            let keys: Vec<String> = (0..iters).map(|i| key("new", i)).collect();
            let start = Instant::now();
            for (i, k) in keys.into_iter().enumerate() {
                black_box(m.add(&LOCAL, k, i as u64));
            }
            let t = start.elapsed();
            m.forget_actor(&LOCAL);
            t
        })
    });

    // Join of a one-entry delta from another replica (the dissemination fast path).
    g.bench_function("join_add_delta", |b| {
        b.iter_custom(|iters| {
            let deltas = remote_deltas(iters);
            let start = Instant::now();
            for d in &deltas {
                black_box(m.join(d));
            }
            let t = start.elapsed();
            m.forget_actor(&REMOTE);
            t
        })
    });

    // Join of a one-entry delta already joined (a duplicate delivery: must change nothing).
    g.bench_function("join_duplicate_delta", |b| {
        let deltas = remote_deltas(10_000);
        for d in &deltas {
            m.join(d);
        }
        b.iter_custom(|iters| {
            let start = Instant::now();
            for d in deltas.iter().cycle().take(iters as usize) {
                black_box(m.join(d));
            }
            start.elapsed()
        });
        m.forget_actor(&REMOTE);
    });

    // Remove of one live entry (drops the slot, mints a dot for the removal, builds the delta).
    g.bench_function("remove", |b| {
        b.iter_custom(|iters| {
            let dots: Vec<_> = (0..iters)
                .map(|i| m.add(&REMOVER, key("doomed", i), i).adds[0].1.dot.clone())
                .collect();
            let start = Instant::now();
            for d in &dots {
                black_box(m.remove(&REMOVER, std::slice::from_ref(d)));
            }
            let t = start.elapsed();
            m.forget_actor(&REMOVER);
            t
        })
    });
    g.finish();
    assert_eq!(m.len(), N, "the benches left the map at its base size");
}

// `criterion_group!` would generate an undocumented `pub fn`; this is what it and
// `criterion_main!` expand to.
fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}
