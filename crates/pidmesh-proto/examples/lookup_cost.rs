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

use std::hint::black_box;
use std::net::SocketAddr;
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
    Ok(())
}
