//! Micro benchmarks of the OR-map at 1M entries: add, delta join, remove.
//!
//! Run: `cargo bench -p pidmesh-crdt --bench ormap`. Memory per entry is measured by
//! `cargo run --release -p pidmesh-crdt --example footprint`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use pidmesh_crdt::OrMap;

type Map = OrMap<u32, String, u64>;

const N: usize = 1_000_000;

fn filled(actor: u32, n: usize) -> Map {
    let mut m = Map::new();
    for i in 0..n {
        m.add(&actor, format!("svc/name-{i:08}"), i as u64);
    }
    m
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ormap_1m");
    g.sample_size(20);
    let base = filled(1, N);

    // One add into a map that already holds 1M entries.
    let mut m = base.clone();
    let mut i = 0u64;
    g.bench_function("add", |b| {
        b.iter(|| {
            i += 1;
            black_box(m.add(&2, format!("new/name-{i:08}"), i));
        })
    });

    // Join of a one-entry delta from another replica into a 1M-entry map.
    let mut src = Map::new();
    let deltas: Vec<_> = (0..100_000u64).map(|i| src.add(&3, format!("remote/{i:08}"), i)).collect();
    let mut m = base.clone();
    let mut it = deltas.iter().cycle();
    g.bench_function("join_add_delta", |b| {
        b.iter(|| black_box(m.join(it.next().expect("cycle never ends"))))
    });

    // Remove of one own entry (mints a dot, drops the slot).
    g.bench_function("remove", |b| {
        b.iter_batched(
            || {
                let mut m = Map::new();
                let d = m.add(&1, "x".to_string(), 1);
                (m, d.adds[0].1.dot.clone())
            },
            |(mut m, dot)| black_box(m.remove(&1, &[dot])),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
