//! Cache misses of a random lookup, counted by a cache simulator so machine load does not move
//! them: pidmesh's `lookup` / `with_lookup` against a std `HashMap<String, Entry>`.
//!
//! Run natively (wall time per lookup, load-dependent):
//! `cargo run --release -p pidmesh-proto --example lookup_misses [ENTRIES] [LOOKUPS]`
//! (defaults 1,000,000 names, 100,000 lookups per side). Under callgrind, counting only inside
//! the four measured loops:
//!
//! ```text
//! LOOKUP_MISSES_PAUSE=20 valgrind --tool=callgrind --cache-sim=yes --LL=33554432,16,64 \
//!     --instr-atstart=no --toggle-collect='lookup_misses::side_*' \
//!     target/release/examples/lookup_misses 1000000 100000
//! # when it prints "ready": callgrind_control -i on <pid>
//! callgrind_annotate --inclusive=yes callgrind.out.<pid> | grep side_
//! ```
//!
//! (`--LL` pins the simulated last level at 32 MiB, 16-way: on some virtual machines callgrind
//! reads a 256 MiB direct-mapped cache from the CPU description, which holds every structure.)
//! Divide a loop's `DLmr` (last-level data read misses: trips to memory) and `Ir`
//! (instructions) by LOOKUPS. Every side looks up 17-byte names (`svc/name-00000001`) in the
//! same scattered order (a stride of 7,919 through the list, coprime with ENTRIES), each side
//! its own stretch of it, after a warm-up pass of every side over other stretches (8 ×
//! LOOKUPS ≤ ENTRIES keeps all stretches apart).

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

/// Looks up `k` names of stretch `stretch` of the scattered order with `probe`.
#[inline(always)]
fn sweep(names: &[String], k: usize, stretch: usize, mut probe: impl FnMut(&str) -> u64) -> u64 {
    let (n, mut acc) = (names.len(), 0u64);
    // Each stretch is its own run of `k` names, so that no measured loop finds the probe names
    // (or their records) cached by another (with 8 × k ≤ n the stretches do not overlap).
    let mut i = (stretch * k % n) * 7_919 % n;
    for _ in 0..k {
        i = (i + 7_919) % n;
        acc = acc.wrapping_add(probe(&names[i]));
    }
    acc
}

/// Defines each side twice, as `side_*` (measured: callgrind collects only inside these) and
/// `warm_*` (the same loop over other names, run just before it so that every side starts with
/// the caches in the state a running service keeps them: hash-table metadata warm, entries cold).
macro_rules! sides {
    ($($side:ident, $warm:ident: |$r:ident, $m:ident, $nm:ident| $probe:expr;)*) => {$(
        #[inline(never)]
        fn $side($r: &RegistryReader, $m: &HashMap<String, Entry>, names: &[String], k: usize, stretch: usize) -> u64 {
            sweep(names, k, stretch, |$nm| $probe)
        }
        #[inline(never)]
        fn $warm($r: &RegistryReader, $m: &HashMap<String, Entry>, names: &[String], k: usize, stretch: usize) -> u64 {
            sweep(names, k, stretch, |$nm| $probe)
        }
    )*};
}

sides! {
    side_pidmesh_owned, warm_pidmesh_owned: |reader, _map, nm| {
        reader.lookup(nm).map_or(0, |e| e.pid.local)
    };
    side_pidmesh_borrowed, warm_pidmesh_borrowed: |reader, _map, nm| {
        reader.with_lookup(nm, |e| e.map_or(0, |e| e.local))
    };
    side_std_borrowed, warm_std_borrowed: |_reader, map, nm| {
        map.get(nm).map_or(0, |e| e.pid.local)
    };
    side_std_cloned, warm_std_cloned: |_reader, map, nm| {
        map.get(nm).cloned().map_or(0, |e| black_box(e).pid.local)
    };
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
    let k: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
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
    black_box(warm_pidmesh_owned(&reader, &map, &names, k, 4));
    timed("pidmesh owned", k, || {
        side_pidmesh_owned(&reader, &map, &names, k, 0)
    });
    black_box(warm_pidmesh_borrowed(&reader, &map, &names, k, 5));
    timed("pidmesh borrowed", k, || {
        side_pidmesh_borrowed(&reader, &map, &names, k, 1)
    });
    black_box(warm_std_borrowed(&reader, &map, &names, k, 6));
    timed("std borrowed", k, || {
        side_std_borrowed(&reader, &map, &names, k, 2)
    });
    black_box(warm_std_cloned(&reader, &map, &names, k, 7));
    timed("std cloned", k, || {
        side_std_cloned(&reader, &map, &names, k, 3)
    });
}
