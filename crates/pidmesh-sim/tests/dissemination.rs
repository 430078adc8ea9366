//! When deltas leave: a change that finds the link idle (nothing waiting, the last push at least
//! one push gap — `delta_batch_window / delta_burst` — ago) goes out in the same step as the
//! change; changes that keep coming closer together than that are batched, one batch per
//! window once the load lasts (counted in outgoing batches).

use std::time::Duration;

use pidmesh_proto::{Config, Pid};
use pidmesh_sim::{LinkConfig, Sim, SimConfig, check};
use rand::RngExt;

/// Every message takes exactly this long, so arrival times tell when a message left.
const LATENCY: Duration = Duration::from_micros(300);

/// How often visibility is checked while waiting for it.
const STEP: Duration = Duration::from_micros(5);

fn cluster(seed: u64) -> Sim {
    cluster_with(seed, LATENCY)
}

/// Three `lan` nodes whose every message takes exactly `latency`.
fn cluster_with(seed: u64, latency: Duration) -> Sim {
    println!("seed = {seed:#x}");
    let mut cfg = SimConfig::new(3, seed);
    cfg.node = Config::lan();
    cfg.link = LinkConfig {
        min_latency: latency,
        max_latency: latency,
        ..LinkConfig::default()
    };
    let mut sim = Sim::new(cfg);
    let formed = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    );
    assert!(formed.is_some(), "the cluster did not form");
    // Quiet: nothing queued, the last push long ago.
    sim.run_for(Duration::from_secs(1));
    sim
}

/// The push gap of `Config::lan`.
fn gap() -> Duration {
    let c = Config::lan();
    c.delta_batch_window / c.delta_burst.get()
}

fn batches(sim: &Sim) -> u64 {
    sim.node(0).map_or(0, |n| n.stats().batches_sent)
}

/// Registers `name` on node 0 and returns how many delta batches node 0 sent in that same
/// step (no virtual time passes), and to how many peers each went.
fn register_now(sim: &mut Sim, pid: &Pid, name: &str) -> (u64, usize) {
    let before = batches(sim);
    sim.with_node(0, |n, now| {
        n.register(now, name, pid, bytes::Bytes::new())
            .expect("registers");
    })
    .expect("node 0 runs");
    (
        batches(sim) - before,
        sim.node(0).map_or(0, |n| n.peers().count()),
    )
}

fn visible(sim: &Sim, name: &str) -> bool {
    (1..3).all(|i| sim.node(i).is_some_and(|n| n.lookup(name).is_some()))
}

fn converged(sim: &mut Sim) {
    let took = sim.run_until(
        Duration::from_secs(5),
        Duration::from_millis(1),
        check::converged,
    );
    assert!(took.is_some(), "{:?}", check::equal_state(sim));
}

#[test]
fn a_lone_change_on_an_idle_link_leaves_in_the_same_step() {
    for seed in [0xd1_0001u64, 0xd1_0002, 0xd1_0003] {
        let mut sim = cluster(seed);
        let pid = sim.spawn(0).expect("runs");
        let sent_bytes = sim.node(0).map_or(0, |n| n.stats().delta_bytes_sent);
        let (sent, peers) = register_now(&mut sim, &pid, "lone");
        assert_eq!(sent, 1, "one batch pushed in the step of the change");
        assert_eq!(peers, 2);
        let bytes = sim.node(0).map_or(0, |n| n.stats().delta_bytes_sent) - sent_bytes;
        assert!(bytes > 0, "the batch was queued for the peers");
        // It arrives one link latency later: it left in the step of the change.
        let took = sim
            .run_until(Duration::from_secs(1), STEP, |s| visible(s, "lone"))
            .expect("visible on every node");
        println!("lone change visible everywhere after {took:?} of virtual time");
        assert!(
            took <= LATENCY + STEP,
            "arrived one link latency after the change ({took:?})"
        );
    }
}

/// Changes 100 µs apart (10,000 a second, one at a time) each leave in their own step, however
/// long the pattern lasts: no bucket runs dry.
#[test]
fn changes_100_us_apart_each_leave_at_once() {
    for seed in [0xd1_0011u64, 0xd1_0012] {
        let mut sim = cluster(seed);
        let pid = sim.spawn(0).expect("runs");
        let n = 1_000;
        for i in 0..n {
            let (sent, _) = register_now(&mut sim, &pid, &format!("paced/{i:04}"));
            assert_eq!(sent, 1, "change {i} pushed at once");
            sim.run_for(Duration::from_micros(100));
        }
        converged(&mut sim);
    }
}

/// As the bench's `latency` scenario over loopback: each registration waits until it is
/// visible on both peers (links of 80 µs), then a think time of 0–100 µs (seeded), so changes
/// come 80–180 µs apart. Each one is visible everywhere one link latency after it was made
/// (virtual time): it left at once.
#[test]
fn one_at_a_time_changes_are_visible_after_one_link_latency() {
    const LINK: Duration = Duration::from_micros(80);
    for seed in [0xd1_0021u64, 0xd1_0022] {
        let mut sim = cluster_with(seed, LINK);
        let pid = sim.spawn(0).expect("runs");
        let before = batches(&sim);
        let n = 500u64;
        let mut worst = Duration::ZERO;
        for i in 0..n {
            let name = format!("one/{i:04}");
            register_now(&mut sim, &pid, &name);
            let took = sim
                .run_until(Duration::from_secs(1), STEP, |s| visible(s, &name))
                .expect("visible");
            worst = worst.max(took);
            let think = Duration::from_micros(sim.rng().random_range(0..=100));
            sim.run_for(think);
        }
        let sent = batches(&sim) - before;
        println!("{n} one at a time: {sent} batches, slowest visible after {worst:?}");
        assert_eq!(sent, n, "one batch per change");
        assert!(worst <= LINK + STEP, "slowest took {worst:?}");
    }
}

/// 10,000 changes in one instant: the first leaves at once, all the others in the batch
/// pushed one gap later (cut only where `delta_batch_bytes` requires).
#[test]
fn a_burst_is_batched_into_few_messages() {
    for (seed, n) in [(0xd1_0031u64, 1_000usize), (0xd1_0032, 10_000)] {
        let mut sim = cluster(seed);
        let pid = sim.spawn(0).expect("runs");
        let c = Config::lan();
        let before = batches(&sim);
        let bytes_before = sim.node(0).map_or(0, |n| n.stats().delta_bytes_sent);
        for i in 0..n {
            register_now(&mut sim, &pid, &format!("burst/{i:05}"));
        }
        assert_eq!(
            batches(&sim) - before,
            1,
            "only the first change left at once"
        );
        sim.run_for(gap());
        let sent = batches(&sim) - before;
        let per_peer =
            (sim.node(0).map_or(0, |n| n.stats().delta_bytes_sent) - bytes_before) as usize / 2;
        println!("n = {n}: {sent} batches, {per_peer} bytes per peer");
        // The rest left as one batch, cut into pieces under `delta_batch_bytes` (on a size
        // estimate that may double an entry's encoded size): every piece but the last holds
        // at least a quarter of the limit.
        let pieces = (sent - 1) as usize;
        assert!(
            pieces <= 1 + per_peer / (c.delta_batch_bytes / 4),
            "{sent} batches for {n} changes ({per_peer} bytes per peer)"
        );
        let last = format!("burst/{:05}", n - 1);
        let took = sim
            .run_until(Duration::from_secs(1), STEP, |s| visible(s, &last))
            .expect("visible");
        assert!(
            took <= LATENCY + STEP,
            "the batch left one gap after the burst"
        );
        converged(&mut sim);
    }
}

/// Changes every 5 µs for 100 windows (at the bulk scenario's rate): after a few pushes, whose
/// hold doubles from one gap to a window, one batch per window.
#[test]
fn sustained_load_is_batched_per_window() {
    let mut sim = cluster(0xd1_0041);
    let pid = sim.spawn(0).expect("runs");
    let c = Config::lan();
    let step = Duration::from_micros(5);
    let windows = 100u32;
    let n = (c.delta_batch_window * windows).as_micros() / step.as_micros();
    let before = batches(&sim);
    for i in 0..n {
        register_now(&mut sim, &pid, &format!("load/{i:06}"));
        sim.run_for(step);
    }
    let sent = batches(&sim) - before;
    println!("{n} changes, {sent} batches");
    // The climb from one gap to a window takes log2(delta_burst) pushes, then one per window.
    let climb = u64::from(c.delta_burst.get().ilog2()) + 1;
    assert!(
        sent <= u64::from(windows) + climb + 1,
        "{sent} batches for {windows} windows"
    );
    converged(&mut sim);
}

/// A change that comes sooner than one gap after the last push, on an otherwise quiet link,
/// waits one gap after that push, not a window.
#[test]
fn an_early_change_waits_one_gap() {
    let mut sim = cluster(0xd1_0051);
    let pid = sim.spawn(0).expect("runs");
    let soon = gap() / 4;
    for i in 0..50 {
        let (first, _) = register_now(&mut sim, &pid, &format!("pair/{i:02}/a"));
        assert_eq!(first, 1, "the first of pair {i} left at once");
        sim.run_for(soon);
        let name = format!("pair/{i:02}/b");
        let (second, _) = register_now(&mut sim, &pid, &name);
        assert_eq!(second, 0, "the second of pair {i} came within the gap");
        let took = sim
            .run_until(Duration::from_secs(1), STEP, |s| visible(s, &name))
            .expect("visible");
        assert!(
            took <= gap() - soon + LATENCY + STEP,
            "pair {i}: the early change took {took:?}"
        );
        sim.run_for(Duration::from_millis(1));
    }
    converged(&mut sim);
}

/// After load has been batched per window, changes that then come one at a time 100 µs apart
/// leave at once again, from the first one.
#[test]
fn one_at_a_time_changes_after_load_leave_at_once_again() {
    for seed in [0xd1_0061u64, 0xd1_0062] {
        let mut sim = cluster(seed);
        let pid = sim.spawn(0).expect("runs");
        for i in 0..2_000 {
            register_now(&mut sim, &pid, &format!("load/{i:04}"));
            sim.run_for(Duration::from_micros(5));
        }
        // The last batch of the load went out; the next change comes 100 µs after it.
        sim.run_for(Config::lan().delta_batch_window + Duration::from_micros(100));
        for i in 0..100 {
            let (sent, _) = register_now(&mut sim, &pid, &format!("single/{i:03}"));
            assert_eq!(sent, 1, "single change {i} left in its own step");
            sim.run_for(Duration::from_micros(100));
        }
        converged(&mut sim);
    }
}

/// Adds and removals of them made while one batch waits: the batch carries the survivors
/// only, so the peers never see a removed entry, not even for a moment.
#[test]
fn an_add_removed_while_its_batch_waits_never_reaches_the_peers() {
    let seed = 0xd1_0051u64;
    let mut sim = cluster(seed);
    let pid = sim.spawn(0).expect("runs");
    // The first change leaves at once; the rest wait for the next push, one gap later.
    register_now(&mut sim, &pid, "held/first");
    let n = 200;
    let gone: Vec<bool> = (0..n).map(|_| sim.rng().random_bool(0.5)).collect();
    sim.with_node(0, |node, now| {
        for i in 0..n {
            node.register(now, &format!("held/{i:03}"), &pid, bytes::Bytes::new())
                .expect("registers");
        }
        for (i, _) in gone.iter().enumerate().filter(|(_, g)| **g) {
            node.unregister(now, &format!("held/{i:03}"), &pid)
                .expect("unregisters");
        }
    })
    .expect("node 0 runs");
    let last_kept = (0..n).rev().find(|i| !gone[*i]).expect("one is kept");
    let mut seen_removed = 0;
    let took = sim.run_until(Duration::from_secs(1), STEP, |s| {
        for peer in 1..3 {
            let Some(node) = s.node(peer) else { continue };
            seen_removed += (0..n)
                .filter(|i| gone[*i] && node.lookup(&format!("held/{i:03}")).is_some())
                .count();
        }
        visible(s, &format!("held/{last_kept:03}"))
    });
    assert!(took.is_some(), "the batch arrived");
    assert_eq!(seen_removed, 0, "a removed entry reached a peer");
    for (i, removed) in gone.iter().enumerate() {
        let name = format!("held/{i:03}");
        assert_eq!(visible(&sim, &name), !removed, "{name}");
    }
    converged(&mut sim);
}
