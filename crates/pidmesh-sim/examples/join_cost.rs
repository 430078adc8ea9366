//! A replica's cost of taking in a bulk of registrations, without the facade, the runtime or
//! the clock: three simulated nodes (`lan` preset, 100 µs links), N unique names registered on
//! node 0 2 µs of virtual time apart (the bulk scenario's pace), run until both peers hold the
//! last one.
//!
//! ```text
//! cargo run --release -p pidmesh-sim --example join_cost -- [N]
//! valgrind --tool=callgrind --toggle-collect='*Node::handle_message*' \
//!     target/release/examples/join_cost 200000
//! ```
//!
//! Deterministic (virtual time, fixed seed): the instructions counted in `handle_message`
//! (decoding, validation, the join, reporting it) divided by 2·N (two replicas take every
//! entry) are a replica's cost per joined entry, whatever the load of the machine. It prints
//! the entries each peer holds and the batches node 0 sent, so a change that skips work shows.

use std::time::Duration;

use pidmesh_proto::Config;
use pidmesh_sim::{LinkConfig, Sim, SimConfig};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let seed = 0x9a_0002;
    println!("join_cost: n={n} seed={seed:#x}");
    let mut cfg = SimConfig::new(3, seed);
    cfg.node = Config::lan();
    cfg.link = LinkConfig {
        min_latency: Duration::from_micros(100),
        max_latency: Duration::from_micros(100),
        ..LinkConfig::default()
    };
    let mut sim = Sim::formed(cfg).expect("the cluster forms");
    sim.run_for(Duration::from_secs(1));
    let pid = sim.spawn(0).expect("node 0 runs");
    let sent_before = sim.node(0).map_or(0, |n| n.stats().batches_sent);
    for i in 0..n {
        let name = format!("bulk/{i:07}");
        sim.with_node(0, |node, now| {
            node.register(now, &name, &pid, bytes::Bytes::new())
                .expect("registers");
        })
        .expect("node 0 runs");
        sim.run_for(Duration::from_micros(2));
    }
    let last = format!("bulk/{:07}", n.saturating_sub(1));
    let took = sim.run_until(Duration::from_secs(5), Duration::from_micros(5), |s| {
        (1..3).all(|i| s.node(i).is_some_and(|node| node.lookup(&last).is_some()))
    });
    let sent = sim.node(0).map_or(0, |n| n.stats().batches_sent) - sent_before;
    let held: Vec<usize> = (1..3)
        .map(|i| sim.node(i).map_or(0, |node| node.stats().entries))
        .collect();
    println!(
        "batches sent by node 0: {sent}; entries held by nodes 1, 2: {held:?}; last visible after {took:?}"
    );
}
