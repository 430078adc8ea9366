//! pidmesh's OR-map beside the `crdts` crate's `Map<String, Orswot<u64, u32>, u32>`, in the same
//! run, at 10k and 100k keys: one local add, and merging one key from another replica (pidmesh
//! joins a one-entry delta; `crdts` has no delta form, so it merges a one-key map).
//!
//! Run: `cargo bench -p pidmesh-crdt --bench baseline` (quick: append
//! `-- --warm-up-time 1 --measurement-time 3`). Heap per entry of both, at any size, comes from
//! `cargo run --release -p pidmesh-crdt --example generic_footprint -- N`.
//!
//! Both sides use the same keys (~17-byte names), values, actors and access pattern; maps that a
//! sample grows are rebuilt or trimmed outside the timing.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crdts::{CmRDT, CvRDT, Orswot};
use criterion::{BenchmarkId, Criterion};
use pidmesh_crdt::OrMap;

type Map = OrMap<u32, String, u64>;
type CrdtsMap = crdts::Map<String, Orswot<u64, u32>, u32>;

const BASE: u32 = 1;
const LOCAL: u32 = 2;
const REMOTE: u32 = 3;

fn key(prefix: &str, i: u64) -> String {
    format!("{prefix}/name-{i:08}")
}

fn crdts_add(m: &mut CrdtsMap, actor: u32, key: String, value: u64) {
    let ctx = m.read_ctx().derive_add_ctx(actor);
    let op = m.update(key, ctx, |set, c| set.add(value, c));
    m.apply(op);
}

fn filled(n: u64) -> Map {
    let mut m = Map::new();
    for i in 0..n {
        m.add(&BASE, key("svc", i), i);
    }
    m
}

fn crdts_filled(n: u64) -> CrdtsMap {
    let mut m = CrdtsMap::new();
    for i in 0..n {
        crdts_add(&mut m, BASE, key("svc", i), i);
    }
    m
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("vs_crdts");
    g.sample_size(10);
    for n in [10_000u64, 100_000] {
        let mut m = filled(n);
        g.bench_with_input(BenchmarkId::new("pidmesh/add", n), &n, |b, _| {
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
        g.bench_with_input(BenchmarkId::new("pidmesh/merge_one", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut src = Map::new();
                let deltas: Vec<_> = (0..iters)
                    .map(|i| src.add(&REMOTE, key("remote", i), i))
                    .collect();
                let start = Instant::now();
                for d in &deltas {
                    black_box(m.join(d));
                }
                let t = start.elapsed();
                m.forget_actor(&REMOTE);
                t
            })
        });
        drop(m);

        let base = crdts_filled(n);
        g.bench_with_input(BenchmarkId::new("crdts/add", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut m = base.clone();
                for i in 0..iters {
                    let k = key("new", i);
                    let start = Instant::now();
                    crdts_add(&mut m, LOCAL, k, i);
                    total += start.elapsed();
                }
                total
            })
        });
        g.bench_with_input(BenchmarkId::new("crdts/merge_one", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut m = base.clone();
                for i in 0..iters {
                    let mut one = CrdtsMap::new();
                    crdts_add(&mut one, REMOTE, key("remote", i), i);
                    let start = Instant::now();
                    m.merge(one);
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
