//! The node's own cost of a burst of local registrations, without the facade, the runtime or
//! the clock: N unique names registered on one node in virtual time (2 µs apart, about the
//! facade's real pace), with its `Flush` timers fired when due and its events and messages
//! drained, as the driver does.
//!
//! ```text
//! cargo run --release -p pidmesh-proto --example register_cost -- [N] [seq|entry]
//! valgrind --tool=callgrind --toggle-collect='*register_cost*issue*' \
//!     target/release/examples/register_cost 200000
//! ```
//!
//! `seq` (the default) calls `Node::register_seq`, as the facade does; `entry` calls
//! `Node::register`, which also hands the caller a copy of the entry.
//!
//! Everything is deterministic (virtual time, fixed seed), so the instruction count of `issue`
//! divided by N is the node's cost per registration, whatever the load of the machine. It
//! prints the events, batches and bytes it saw, so a change that skips work shows up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pidmesh_proto::{Config, Event, Node, NodeId, NodeOptions, Pid, Resolver};

#[derive(Default)]
struct Seen {
    events: usize,
    batches: usize,
    bytes: usize,
}

/// Registers every name, 2 µs of virtual time apart, firing the node's timers when due.
#[inline(never)]
fn issue(node: &mut Node, pid: &Pid, names: &[String], mut now: Instant, entry: bool) -> Seen {
    let mut seen = Seen::default();
    let drain = |node: &mut Node, seen: &mut Seen| {
        while let Some(e) = node.poll_event() {
            if matches!(e, Event::Registered(_)) {
                seen.events += 1;
            }
        }
        while let Some(t) = node.poll_transmit() {
            seen.batches += 1;
            seen.bytes += t.payload.len();
        }
    };
    for (i, name) in names.iter().enumerate() {
        if node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle_timeout(now);
        }
        let done = if entry {
            node.register(now, name, pid, Bytes::new()).map(|_| ())
        } else {
            node.register_seq(now, name, pid, Bytes::new()).map(|_| ())
        };
        if let Err(e) = done {
            eprintln!("registration {i} failed: {e}");
            std::process::exit(1);
        }
        if i % 64 == 63 {
            drain(node, &mut seen);
        }
        now += Duration::from_micros(2);
    }
    now += Duration::from_millis(10);
    node.handle_timeout(now);
    drain(node, &mut seen);
    seen
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map_or(Ok(200_000), |s| s.parse())?;
    let entry = std::env::args().nth(2).is_some_and(|m| m == "entry");
    let start = Instant::now();
    let addr: SocketAddr = ([127, 0, 0, 1], 4000).into();
    let opts = NodeOptions {
        id: NodeId::new("node-0", 1),
        addr,
        seeds: Vec::new(),
        rng_seed: 7,
        wall_ms_at_start: 1_790_000_000_000,
    };
    let mut node = Node::new(opts, Config::lan(), Resolver::keep_oldest(), start);
    let pid = node.spawn_pid();
    let names: Vec<String> = (0..n).map(|i| format!("bulk/{i:07}")).collect();
    let t0 = Instant::now();
    let seen = issue(&mut node, &pid, &names, start, entry);
    let wall = t0.elapsed();
    println!(
        "n={n} mode={} entries={} registered_events={} messages={} bytes={} wall_ns_per_reg={:.0}",
        if entry { "entry" } else { "seq" },
        node.registry().len(),
        seen.events,
        seen.batches,
        seen.bytes,
        wall.as_nanos() as f64 / n as f64
    );
    Ok(())
}
