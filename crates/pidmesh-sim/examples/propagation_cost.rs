//! Propagation in virtual time: when deltas leave and how many messages they take, for the
//! workloads the push rule must serve. Load-independent (the simulator's clock, counted
//! batches), so it can be compared across versions on a busy machine.
//!
//! `cargo run --release -p pidmesh-sim --example propagation_cost [-- <preset>]`, preset
//! `lan` (default), `local` or `wan`. Three nodes, every message takes exactly 100 µs.
//!
//! - **one at a time**: 2,000 registrations on node 0, each issued once the previous one is
//!   visible on both peers plus a think time drawn from 0–100 µs (as the bench's `latency`
//!   scenario does over real sockets). Latency = registration → visible on both peers.
//! - **paced**: 2,000 registrations exactly 100 µs apart, not waiting for visibility.
//! - **burst**: 10,000 registrations in one instant.
//! - **sustained**: 200,000 registrations 2 µs apart (the bulk scenario's issue rate).
//! - **sustained with pauses**: the same in runs of 500 with a 300 µs pause after each (an
//!   issuing task that the scheduler preempts now and then).
//!
//! For each: messages (delta batches node 0 sent, each to every peer) per change, and the
//! latency to visible everywhere (one-at-a-time) or until the last change is visible (others).

use std::time::Duration;

use pidmesh_proto::Config;
use pidmesh_sim::{LinkConfig, Sim, SimConfig};
use rand::RngExt;

const LATENCY: Duration = Duration::from_micros(100);
const STEP: Duration = Duration::from_micros(5);

fn cluster(config: &Config, seed: u64) -> Sim {
    let mut cfg = SimConfig::new(3, seed);
    cfg.node = config.clone();
    cfg.link = LinkConfig {
        min_latency: LATENCY,
        max_latency: LATENCY,
        ..LinkConfig::default()
    };
    let mut sim = Sim::formed(cfg).expect("the cluster forms");
    sim.run_for(Duration::from_secs(1));
    sim
}

fn batches(sim: &Sim) -> u64 {
    sim.node(0).map_or(0, |n| n.stats().batches_sent)
}

fn register(sim: &mut Sim, pid: &pidmesh_proto::Pid, name: &str) {
    sim.with_node(0, |n, now| {
        n.register(now, name, pid, bytes::Bytes::new())
            .expect("registers");
    })
    .expect("node 0 runs");
}

fn visible(sim: &Sim, name: &str) -> bool {
    (1..3).all(|i| sim.node(i).is_some_and(|n| n.lookup(name).is_some()))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn one_at_a_time(config: &Config, seed: u64, n: usize) {
    let mut sim = cluster(config, seed);
    let pid = sim.spawn(0).expect("runs");
    let before = batches(&sim);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("one/{i:06}");
        register(&mut sim, &pid, &name);
        let took = sim
            .run_until(Duration::from_secs(1), STEP, |s| visible(s, &name))
            .expect("visible");
        lat.push(took);
        let think = Duration::from_micros(sim.rng().random_range(0..=100));
        sim.run_for(think);
    }
    let sent = batches(&sim) - before;
    lat.sort();
    println!(
        "one at a time ({n}): {:.3} messages per change; latency p50 {:?} p99 {:?} max {:?} (link {:?}, resolution {:?})",
        sent as f64 / n as f64,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat[lat.len() - 1],
        LATENCY,
        STEP
    );
}

fn paced(config: &Config, seed: u64, n: usize, spacing: Duration) {
    let mut sim = cluster(config, seed);
    let pid = sim.spawn(0).expect("runs");
    let before = batches(&sim);
    let mut at_once = 0;
    for i in 0..n {
        let b = batches(&sim);
        register(&mut sim, &pid, &format!("paced/{i:06}"));
        if batches(&sim) > b {
            at_once += 1;
        }
        sim.run_for(spacing);
    }
    let last = format!("paced/{:06}", n - 1);
    let took = sim
        .run_until(Duration::from_secs(1), STEP, |s| visible(s, &last))
        .expect("visible");
    let sent = batches(&sim) - before;
    println!(
        "paced ({n}, {spacing:?} apart): {:.3} messages per change; {at_once} left in their own step; last visible {:?} after the end",
        sent as f64 / n as f64,
        took,
    );
}

fn burst(config: &Config, seed: u64, n: usize, spacing: Duration) {
    let mut sim = cluster(config, seed);
    let pid = sim.spawn(0).expect("runs");
    let before = batches(&sim);
    let start = sim.elapsed();
    for i in 0..n {
        register(&mut sim, &pid, &format!("load/{i:07}"));
        if !spacing.is_zero() {
            sim.run_for(spacing);
        }
    }
    let issued = sim.elapsed() - start;
    let last = format!("load/{:07}", n - 1);
    let took = sim
        .run_until(Duration::from_secs(5), STEP, |s| visible(s, &last))
        .expect("visible");
    let sent = batches(&sim) - before;
    println!(
        "{n} changes {spacing:?} apart (issued over {issued:?}): {sent} messages ({:.5} per change); last visible {took:?} after the last change",
        sent as f64 / n as f64,
    );
}

fn with_pauses(config: &Config, seed: u64, runs: usize, per_run: usize, pause: Duration) {
    let mut sim = cluster(config, seed);
    let pid = sim.spawn(0).expect("runs");
    let before = batches(&sim);
    for r in 0..runs {
        for i in 0..per_run {
            register(&mut sim, &pid, &format!("pause/{r:04}/{i:04}"));
            sim.run_for(Duration::from_micros(2));
        }
        sim.run_for(pause);
    }
    let n = runs * per_run;
    let sent = batches(&sim) - before;
    println!(
        "{n} changes 2µs apart in runs of {per_run} with {pause:?} pauses: {sent} messages ({:.5} per change, {:.2} per run)",
        sent as f64 / n as f64,
        sent as f64 / runs as f64,
    );
}

fn main() {
    let preset = std::env::args().nth(1).unwrap_or_else(|| "lan".into());
    let config = match preset.as_str() {
        "local" => Config::local(),
        "wan" => Config::wan(),
        _ => Config::lan(),
    };
    let seed = 0x9a_0001;
    println!(
        "preset {preset}: delta_batch_window {:?}, delta_burst {}; seed {seed:#x}",
        config.delta_batch_window, config.delta_burst
    );
    one_at_a_time(&config, seed, 2_000);
    paced(&config, seed, 2_000, Duration::from_micros(100));
    burst(&config, seed, 10_000, Duration::ZERO);
    burst(&config, seed, 200_000, Duration::from_micros(2));
    with_pauses(&config, seed, 400, 500, Duration::from_micros(300));
}
