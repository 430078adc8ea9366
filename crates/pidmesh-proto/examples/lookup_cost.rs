//! CPU cost of a lookup, measured in thread CPU time rather than wall time, so that other
//! processes competing for the cores do not inflate it (criterion reports wall time).
//!
//! Run: `cargo run --release -p pidmesh-proto --example lookup_cost [ENTRIES] [LOOKUPS]`
//! (defaults: 1,000,000 entries, 20,000,000 lookups per pattern).
//!
//! Builds a node holding ENTRIES unique names ("svc/name-00000000") and a 10-member group, then
//! times `Node::lookup` (the same code `RegistryReader::lookup` and `pidmesh::Registry::lookup`
//! run) of the same name again and again (`hot`: cache-resident), of names in a cache-hostile
//! order (`spread`), and `Node::members_of` of the group. Thread CPU time comes from
//! `/proc/thread-self/stat` (Linux; 10 ms ticks, hence the many lookups).
//!
//! Then, with the node behind an `RwLock` as in the facade and a writer thread that keeps
//! registering and unregistering 1024 names per write-lock hold (like the driver processing a
//! large message), it prints the latency distribution of single lookups by a reader thread,
//! through `RegistryReader` (the facade's path) and through the node's read lock (the old path).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pidmesh_proto::{Config, Node, NodeId, NodeOptions, Resolver};

/// CPU time of this thread (user + system), from procfs; `None` where unavailable.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn measure(label: &str, ops: u64, mut f: impl FnMut(u64)) {
    let (w0, c0) = (Instant::now(), thread_cpu());
    for i in 0..ops {
        f(i);
    }
    let wall = w0.elapsed();
    let per = |d: Duration| d.as_nanos() as f64 / ops as f64;
    match thread_cpu().zip(c0) {
        Some((c1, c0)) => println!(
            "  {label:<22} {:>8.1} ns/op CPU   ({:.1} ns/op wall)",
            per(c1 - c0),
            per(wall)
        ),
        None => println!("  {label:<22} {:>8.1} ns/op wall", per(wall)),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let ops: u64 = args.next().map_or(Ok(20_000_000), |s| s.parse())?;
    let start = Instant::now();
    let addr: SocketAddr = ([127, 0, 0, 1], 4000).into();
    let opts = NodeOptions {
        id: NodeId::new("bench-1", 1),
        addr,
        seeds: Vec::new(),
        rng_seed: 7,
        wall_ms_at_start: 1_790_000_000_000,
    };
    let mut node = Node::new(opts, Config::local(), Resolver::keep_oldest(), start);
    let mut now = start;
    let pid = node.spawn_pid();
    let names: Vec<String> = (0..n).map(|i| format!("svc/name-{i:08}")).collect();
    for (i, name) in names.iter().enumerate() {
        node.register(now, name, &pid, Bytes::new())?;
        if i % 1024 == 1023 {
            now += Duration::from_millis(50);
            node.handle_timeout(now);
            while node.poll_event().is_some() {}
            while node.poll_transmit().is_some() {}
        }
    }
    for _ in 0..10 {
        let p = node.spawn_pid();
        node.join(now, "workers/eu", &p, Bytes::new())?;
    }
    println!("{n} unique names + a 10-member group, {ops} operations each:");
    let one = &names[n / 2];
    measure("lookup (hot)", ops, |_| {
        black_box(node.lookup(black_box(one)));
    });
    let mut i = 0usize;
    measure("lookup (spread)", ops, |_| {
        i = (i + 7_919) % n;
        black_box(node.lookup(&names[i]));
    });
    measure("members_of (10)", ops / 10, |_| {
        black_box(node.members_of(black_box("workers/eu")));
    });

    let reader = node.reader();
    let node = Arc::new(RwLock::new(node));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (node, stop) = (node.clone(), stop.clone());
        std::thread::spawn(move || {
            let churn: Vec<String> = (0..1024).map(|j| format!("churn/{j:05}")).collect();
            let mut holds = 0u64;
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let mut n = node.write().unwrap_or_else(PoisonError::into_inner);
                let t = Instant::now();
                let pid = n.spawn_pid();
                for nm in &churn {
                    let _ = n.register(now, nm, &pid, Bytes::new());
                }
                for nm in &churn {
                    let _ = n.unregister(now, nm, &pid);
                }
                now += Duration::from_millis(50);
                n.handle_timeout(now);
                while n.poll_event().is_some() {}
                while n.poll_transmit().is_some() {}
                longest = longest.max(t.elapsed());
                drop(n);
                holds += 1;
                std::thread::yield_now();
            }
            (holds, longest)
        })
    };
    let samples = (ops / 20).max(1000) as usize;
    println!(
        "under a writer holding the node's write lock for 2048 changes at a time, {samples} lookups each:"
    );
    let mut i = 0usize;
    latencies("RegistryReader", samples, || {
        i = (i + 7_919) % n;
        black_box(reader.lookup(&names[i]));
    });
    let mut i = 0usize;
    latencies("node read lock (old)", samples, || {
        i = (i + 7_919) % n;
        let g = node.read().unwrap_or_else(PoisonError::into_inner);
        black_box(g.lookup(&names[i]));
    });
    stop.store(true, Ordering::Relaxed);
    if let Ok((holds, longest)) = writer.join() {
        println!("  (the writer took the write lock {holds} times, for up to {longest:?})");
    }
    Ok(())
}

/// Times `samples` single calls of `f` and prints percentiles of the wall time of one call.
fn latencies(label: &str, samples: usize, mut f: impl FnMut()) {
    let mut t: Vec<Duration> = Vec::with_capacity(samples);
    for _ in 0..samples {
        let s = Instant::now();
        f();
        t.push(s.elapsed());
    }
    t.sort();
    let at = |q: f64| t[((t.len() - 1) as f64 * q) as usize];
    println!(
        "  {label:<22} p50 {:>9.2?}  p99 {:>9.2?}  p99.9 {:>9.2?}  max {:>9.2?}",
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    );
}
