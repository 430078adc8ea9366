//! Memory and wire footprint of the generic OR-map: `OrMap<u32, String, u64>` with 1,000,000
//! entries of ~17-byte names spread over 5 actors.
//!
//! Run: `cargo run --release -p pidmesh-crdt --example generic_footprint [ENTRIES]`.
//!
//! Heap bytes are the bytes the map's allocations asked for (live bytes counted by a wrapping
//! global allocator; the allocator's own per-block overhead is not included: the RSS line shows
//! it). Wire bytes are the postcard encoding of the whole state as one delta (`to_delta()`).
//! For pidmesh's real key, value and node types see `pidmesh-wire`'s `footprint` example.
//!
//! The same entries then go into the `crdts` crate's `Map<String, Orswot<u64, u32>, u32>` (the
//! general-purpose alternative this store was built instead of), in the same process, for the
//! heap per entry, the build time and the cost of merging a one-key state into the full map.

use std::alloc::System;
use std::time::Instant;

use cap::Cap;
use crdts::{CmRDT, CvRDT, Orswot};
use pidmesh_crdt::OrMap;

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

const ACTORS: u32 = 5;

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
    let rss0 = rss_bytes();
    let heap0 = ALLOC.allocated();

    let t = Instant::now();
    let mut map: OrMap<u32, String, u64> = OrMap::new();
    let mut payload = 0usize;
    for i in 0..n {
        let key = format!("svc/name-{i:08}");
        payload += key.len() + size_of::<u64>();
        // The delta is what a node would ship; here it is dropped at once.
        drop(map.add(&((i % u64::from(ACTORS)) as u32 + 1), key, i));
    }
    let build = t.elapsed();
    let heap = ALLOC.allocated() - heap0;
    let rss = rss_bytes().zip(rss0).map(|(a, b)| a.saturating_sub(b));
    let per = |bytes: usize| bytes as f64 / n as f64;

    let t = Instant::now();
    let state = map.to_delta();
    let to_delta = t.elapsed();
    let t = Instant::now();
    let encoded = postcard::to_stdvec(&state)?;
    let encode = t.elapsed();
    let t = Instant::now();
    let decoded: pidmesh_crdt::Delta<u32, String, u64> = postcard::from_bytes(&encoded)?;
    let decode = t.elapsed();
    let t = Instant::now();
    let mut fresh = OrMap::new();
    fresh.join(&decoded);
    let state_join = t.elapsed();
    assert_eq!(fresh.len(), map.len(), "the full state rebuilds the map");

    println!(
        "OrMap<u32, String, u64>: {n} entries, {ACTORS} actors, keys like \"svc/name-00000000\""
    );
    println!(
        "  payload (key bytes + value)    {:>8.1} B/entry",
        per(payload)
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
        per(encoded.len()),
        encoded.len() >> 20
    );
    println!(
        "  build by add                   {:>8.1} ns/entry",
        build.as_nanos() as f64 / n as f64
    );
    println!(
        "  to_delta                       {:>8.1} ns/entry",
        to_delta.as_nanos() as f64 / n as f64
    );
    println!(
        "  encode / decode                {:>8.1} / {:.1} ns/entry",
        encode.as_nanos() as f64 / n as f64,
        decode.as_nanos() as f64 / n as f64
    );
    println!(
        "  state join into an empty map   {:>8.1} ns/entry",
        state_join.as_nanos() as f64 / n as f64
    );
    println!(
        "  peak heap of the run           {:>8} MiB",
        ALLOC.max_allocated() >> 20
    );

    // Keys from another replica merged into the full map one at a time: what a single change
    // costs (averaged over 1,000 one-key deltas).
    let mut other: OrMap<u32, String, u64> = OrMap::new();
    let deltas: Vec<_> = (0..1_000u64)
        .map(|i| other.add(&(ACTORS + 1), format!("svc/another-{i:06}"), i))
        .collect();
    let t = Instant::now();
    for d in &deltas {
        map.join(d);
    }
    println!(
        "  join of a one-key delta        {:>8.2} µs",
        t.elapsed().as_nanos() as f64 / 1e3 / deltas.len() as f64
    );
    drop((map, state, encoded, decoded, fresh));

    crdts_baseline(n, per)
}

type CrdtsMap = crdts::Map<String, Orswot<u64, u32>, u32>;

fn crdts_add(m: &mut CrdtsMap, actor: u32, key: String, value: u64) {
    let ctx = m.read_ctx().derive_add_ctx(actor);
    let op = m.update(key, ctx, |set, c| set.add(value, c));
    m.apply(op);
}

fn crdts_baseline(n: u64, per: impl Fn(usize) -> f64) -> Result<(), Box<dyn std::error::Error>> {
    let heap0 = ALLOC.allocated();
    let t = Instant::now();
    let mut map = CrdtsMap::new();
    for i in 0..n {
        crdts_add(
            &mut map,
            (i % u64::from(ACTORS)) as u32 + 1,
            format!("svc/name-{i:08}"),
            i,
        );
    }
    let build = t.elapsed();
    let heap = ALLOC.allocated() - heap0;
    let mut one = CrdtsMap::new();
    crdts_add(&mut one, ACTORS + 1, "svc/another-name".to_string(), 0);
    let t = Instant::now();
    map.merge(one);
    let merge_one = t.elapsed();
    println!("crdts::Map<String, Orswot<u64, u32>, u32>: the same {n} entries and actors");
    println!(
        "  heap (live, requested)         {:>8.1} B/entry  ({} MiB)",
        per(heap),
        heap >> 20
    );
    println!(
        "  build by update(add) + apply   {:>8.1} ns/entry",
        build.as_nanos() as f64 / n as f64
    );
    println!(
        "  merge of a one-key map         {:>8.1} µs",
        merge_one.as_nanos() as f64 / 1e3
    );
    Ok(())
}
