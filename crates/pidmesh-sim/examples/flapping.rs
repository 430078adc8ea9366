//! False "down" declarations under local slowness, plain SWIM against Lifeguard, in virtual
//! time. The last node is a *slow node*: every 1–10 s (uniform) its processing stalls for
//! 0.5–3 s (uniform). The link between nodes 1 and 2 loses 10 % of messages both ways. Every
//! node runs `Config::lan().for_cluster_size(n)`, with `lifeguard` off, then on.
//!
//! * false downs: a live node declared down (it renews its SWIM identity, counted in
//!   `Stats::rejoins`), summed over the cluster, per hour of virtual time;
//! * detection: node 3 crashes; the time until every other live node except the slow one has
//!   dropped it from its peers.
//!
//! `cargo run --release -p pidmesh-sim --example flapping -- [virtual_secs=600] [seed=1] [sizes=10,100]`

use std::time::Duration;

use pidmesh_sim::{Sim, SimConfig, check};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

struct Outcome {
    false_downs: u64,
    secs: f64,
    peak_health: u32,
    detect: Option<Duration>,
}

fn build(nodes: usize, seed: u64, lifeguard: bool) -> Option<Sim> {
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.seeds = 3.min(nodes);
    cfg.node =
        pidmesh_proto::Config::lan().for_cluster_size(u32::try_from(nodes).unwrap_or(u32::MAX));
    if !lifeguard {
        cfg.node.lifeguard = None;
    } else if let Ok(v) = std::env::var("PIDMESH_LIFEGUARD") {
        // max_health,suspicion_max_factor,confirmations
        let p: Vec<u32> = v.split(',').filter_map(|x| x.parse().ok()).collect();
        if let [h, f, c] = p[..] {
            cfg.node.lifeguard = Some(pidmesh_proto::Lifeguard {
                max_health: h,
                suspicion_max_factor: f,
                confirmations: c,
            });
        }
    }
    let mut sim = Sim::new(cfg);
    sim.run_until(
        Duration::from_secs(600),
        Duration::from_millis(100),
        check::membership_agrees_ok,
    )?;
    Some(sim)
}

/// Runs `secs` of virtual time with the slow node and the lossy link, stalling by `rng`.
fn faulty_run(sim: &mut Sim, rng: &mut StdRng, secs: u64) {
    let n = sim.hosts.len();
    let slow = n - 1;
    sim.set_link_loss(1, 2, 0.1);
    sim.set_link_loss(2, 1, 0.1);
    let end = sim.elapsed() + Duration::from_secs(secs);
    while sim.elapsed() < end {
        let gap = Duration::from_millis(rng.random_range(1_000..10_000));
        sim.run_for(gap);
        let stall = Duration::from_millis(rng.random_range(500..3_000));
        sim.stall(slow, stall);
    }
}

fn run(nodes: usize, seed: u64, secs: u64, lifeguard: bool) -> Option<Outcome> {
    let mut sim = build(nodes, seed, lifeguard)?;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x51_0e);
    let rejoins = |s: &Sim| -> u64 {
        s.live()
            .iter()
            .filter_map(|&i| s.node(i).map(|n| n.stats().rejoins))
            .sum()
    };
    let before = rejoins(&sim);
    let start = sim.elapsed();
    faulty_run(&mut sim, &mut rng, secs);
    let false_downs = rejoins(&sim) - before;
    if std::env::var_os("PIDMESH_FLAP_DETAIL").is_some() {
        let per: Vec<u64> = (0..nodes)
            .map(|i| sim.node(i).map_or(0, |n| n.stats().rejoins))
            .collect();
        println!("rejoins per node (the slow node is the last): {per:?}");
    }
    let elapsed = (sim.elapsed() - start).as_secs_f64();
    let peak_health = sim
        .live()
        .iter()
        .filter_map(|&i| sim.node(i).map(pidmesh_proto::Node::health_peak))
        .max()
        .unwrap_or(0);
    // Crash node 3 and time its removal everywhere but on the slow node.
    let victim = 3;
    let id = sim.node(victim).map(|n| n.id().clone())?;
    sim.crash(victim);
    let slow = nodes - 1;
    let detect = sim.run_until(Duration::from_secs(120), Duration::from_millis(10), |s| {
        s.live()
            .iter()
            .filter(|&&i| i != slow)
            .all(|&i| s.node(i).is_some_and(|n| n.peers().all(|m| m.node != id)))
    });
    Some(Outcome {
        false_downs,
        secs: elapsed,
        peak_health,
        detect,
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(600);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let sizes: Vec<usize> = args
        .next()
        .map(|a| a.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100]);
    println!(
        "seed {seed}, {secs} s of virtual time per run, preset lan, slow node + 10% lossy link"
    );
    println!(
        "| nodes | detector | false downs | per hour | peak health score | crash detected after |"
    );
    println!("|---|---|---|---|---|---|");
    for &nodes in &sizes {
        for lifeguard in [false, true] {
            let name = if lifeguard { "Lifeguard" } else { "plain SWIM" };
            match run(nodes, seed, secs, lifeguard) {
                Some(o) => println!(
                    "| {nodes} | {name} | {} | {:.1} | {} | {:?} |",
                    o.false_downs,
                    o.false_downs as f64 * 3600.0 / o.secs,
                    o.peak_health,
                    o.detect
                ),
                None => println!("| {nodes} | {name} | cluster did not form | | | |"),
            }
        }
    }
}
