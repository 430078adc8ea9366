//! Cache misses of a random lookup, counted by a cache simulator so machine load does not move
//! them: pidmesh's `lookup` / `with_lookup` against a std `HashMap<String, Entry>`.
//!
//! Run natively (wall time per lookup, load-dependent):
//! `cargo run --release -p pidmesh-proto --example lookup_misses [ENTRIES] [LOOKUPS]`
//! (defaults 1,000,000 names, 200,000 lookups per side). Under callgrind, counting only inside
//! the four measured loops:
//!
//! ```text
//! LOOKUP_MISSES_PAUSE=20 valgrind --tool=callgrind --cache-sim=yes --instr-atstart=no \
//!     --toggle-collect='lookup_misses::side_*' target/release/examples/lookup_misses 1000000 200000
//! # when it prints "ready": callgrind_control -i on <pid>
//! callgrind_annotate callgrind.out.<pid> | grep side_
//! ```
//!
//! Divide a loop's `DLmr` (last-level data read misses: trips to memory) and `Ir`
//! (instructions) by LOOKUPS. Every side looks up the same 17-byte names (`svc/name-00000001`)
//! in the same scattered order (a stride of 7,919 through the list, coprime with ENTRIES).

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pidmesh_proto::{Config, Entry, Node, NodeId, NodeOptions, RegistryReader, Resolver};

fn name(i: usize) -> String {
    format!("svc/name-{i:08}")
}

fn node_with(n: usize) -> Node {
    let start = Instant::now();
    let addr: SocketAddr = ([127, 0, 0, 1], 4000).into();
    let opts = NodeOptions {
        id: NodeId::new("misses-1", 1),
        addr,
        seeds: Vec::new(),
        rng_seed: 7,
        wall_ms_at_start: 1_790_000_000_000,
    };
    let mut node = Node::new(opts, Config::local(), Resolver::keep_oldest(), start);
    let mut now = start;
    let pid = node.spawn_pid();
    for i in 0..n {
        if let Err(e) = node.register(now, &name(i), &pid, Bytes::new()) {
            panic!("register {i}: {e}");
        }
        if i % 1024 == 1023 {
            now += Duration::from_millis(50);
            node.handle_timeout(now);
            while node.poll_event().is_some() {}
            while node.poll_transmit().is_some() {}
        }
    }
    node
}

#[inline(never)]
fn side_pidmesh_owned(reader: &RegistryReader, names: &[String], k: usize) -> u64 {
    let (n, mut i, mut acc) = (names.len(), 0usize, 0u64);
    for _ in 0..k {
        i = (i + 7_919) % n;
        acc = acc.wrapping_add(reader.lookup(&names[i]).map_or(0, |e| e.pid.local));
    }
    acc
}

#[inline(never)]
fn side_pidmesh_borrowed(reader: &RegistryReader, names: &[String], k: usize) -> u64 {
    let (n, mut i, mut acc) = (names.len(), 0usize, 0u64);
    for _ in 0..k {
        i = (i + 7_919) % n;
        acc = acc.wrapping_add(reader.with_lookup(&names[i], |e| e.map_or(0, |e| e.local)));
    }
    acc
}

#[inline(never)]
fn side_std_borrowed(map: &HashMap<String, Entry>, names: &[String], k: usize) -> u64 {
    let (n, mut i, mut acc) = (names.len(), 0usize, 0u64);
    for _ in 0..k {
        i = (i + 7_919) % n;
        acc = acc.wrapping_add(map.get(names[i].as_str()).map_or(0, |e| e.pid.local));
    }
    acc
}

#[inline(never)]
fn side_std_cloned(map: &HashMap<String, Entry>, names: &[String], k: usize) -> u64 {
    let (n, mut i, mut acc) = (names.len(), 0usize, 0u64);
    for _ in 0..k {
        i = (i + 7_919) % n;
        let e = map.get(names[i].as_str()).cloned();
        acc = acc.wrapping_add(e.map_or(0, |e| black_box(e).pid.local));
    }
    acc
}

fn timed(label: &str, k: usize, f: impl FnOnce() -> u64) {
    let t = Instant::now();
    let acc = black_box(f());
    let ns = t.elapsed().as_nanos() as f64 / k.max(1) as f64;
    println!("{label:<18} {ns:>8.1} ns/lookup (checksum {acc})");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let k: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let node = node_with(n.max(1));
    let reader = node.reader();
    let names: Vec<String> = (0..n.max(1)).map(name).collect();
    let map: HashMap<String, Entry> = names
        .iter()
        .filter_map(|nm| Some((nm.clone(), reader.lookup(nm)?)))
        .collect();
    println!("{} names, {k} lookups per side", map.len());
    // Under `valgrind --tool=callgrind --instr-atstart=no`, the registry is built at near-native
    // speed; `callgrind_control -i on <pid>` during this pause switches the simulation on.
    if let Some(secs) = std::env::var("LOOKUP_MISSES_PAUSE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        eprintln!("ready");
        std::thread::sleep(Duration::from_secs(secs));
    }
    timed("pidmesh owned", k, || {
        side_pidmesh_owned(&reader, &names, k)
    });
    timed("pidmesh borrowed", k, || {
        side_pidmesh_borrowed(&reader, &names, k)
    });
    timed("std borrowed", k, || side_std_borrowed(&map, &names, k));
    timed("std cloned", k, || side_std_cloned(&map, &names, k));
}
