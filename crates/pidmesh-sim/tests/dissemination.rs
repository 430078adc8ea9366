//! When deltas leave: a lone change on an idle link goes out in the same step as the change
//! (no batch window, no timer), and changes that come faster than `Config::delta_burst` per
//! `delta_batch_window` are batched (counted in outgoing batches).

use std::time::Duration;

use pidmesh_proto::Config;
use pidmesh_sim::{LinkConfig, Sim, SimConfig, check};

/// Every message takes exactly this long, so arrival times tell when a message left.
const LATENCY: Duration = Duration::from_micros(300);

fn cluster(seed: u64) -> Sim {
    println!("seed = {seed:#x}");
    let mut cfg = SimConfig::new(3, seed);
    cfg.node = Config::lan();
    cfg.link = LinkConfig {
        min_latency: LATENCY,
        max_latency: LATENCY,
        ..LinkConfig::default()
    };
    let mut sim = Sim::new(cfg);
    let formed = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    );
    assert!(formed.is_some(), "the cluster did not form");
    // Quiet: nothing queued, the push bucket full.
    sim.run_for(Duration::from_secs(1));
    sim
}

fn batches(sim: &Sim) -> u64 {
    sim.node(0).map_or(0, |n| n.stats().batches_sent)
}

/// Registers `name` on node 0 and returns how many delta batches node 0 sent in that same
/// step (no virtual time passes), and to how many peers each went.
fn register_now(sim: &mut Sim, pid: &pidmesh_proto::Pid, name: &str) -> (u64, usize) {
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
            .run_until(Duration::from_secs(1), Duration::from_micros(50), |s| {
                (1..3).all(|i| s.node(i).is_some_and(|n| n.lookup("lone").is_some()))
            })
            .expect("visible on every node");
        println!("lone change visible everywhere after {took:?} of virtual time");
        assert!(
            took <= LATENCY + Duration::from_micros(50),
            "arrived one link latency after the change ({took:?})"
        );
    }
}

#[test]
fn changes_slower_than_the_burst_rate_each_leave_at_once() {
    let mut sim = cluster(0xd1_0010);
    let pid = sim.spawn(0).expect("runs");
    let c = Config::lan();
    // Twice the bucket's refill interval between changes: the bucket never empties.
    let gap = c.delta_batch_window / c.delta_burst.get() * 2;
    for i in 0..50 {
        let (sent, _) = register_now(&mut sim, &pid, &format!("paced/{i}"));
        assert_eq!(sent, 1, "change {i} pushed at once");
        sim.run_for(gap);
    }
}

#[test]
fn a_burst_is_batched() {
    for (seed, n) in [
        (0xd1_0020u64, 100usize),
        (0xd1_0021, 1_000),
        (0xd1_0022, 5_000),
    ] {
        let mut sim = cluster(seed);
        let pid = sim.spawn(0).expect("runs");
        let c = Config::lan();
        let burst = u64::from(c.delta_burst.get());
        let before = batches(&sim);
        // n changes in one instant: the bucket's tokens go out one change each, the rest wait
        // for the window's timer and leave together.
        for i in 0..n {
            sim.with_node(0, |node, now| {
                node.register(now, &format!("burst/{i:05}"), &pid, bytes::Bytes::new())
                    .expect("registers");
            });
        }
        assert_eq!(
            batches(&sim) - before,
            burst,
            "only the bucket's tokens left at once"
        );
        sim.run_for(c.delta_batch_window + Duration::from_millis(1));
        let sent = batches(&sim) - before;
        println!("n = {n}: {sent} batches");
        assert_eq!(sent, burst + 1, "the rest left in one batch");
        let converged = sim.run_until(
            Duration::from_secs(5),
            Duration::from_millis(1),
            check::converged,
        );
        assert!(converged.is_some(), "{:?}", check::equal_state(&sim));
    }
}

#[test]
fn sustained_load_is_batched_per_window() {
    let mut sim = cluster(0xd1_0030);
    let pid = sim.spawn(0).expect("runs");
    let c = Config::lan();
    // Four times the burst rate for 50 windows.
    let per_window = 4 * c.delta_burst.get() as usize;
    let step = c.delta_batch_window / (per_window as u32);
    let windows = 50;
    let before = batches(&sim);
    for i in 0..per_window * windows {
        sim.with_node(0, |node, now| {
            node.register(now, &format!("load/{i:05}"), &pid, bytes::Bytes::new())
                .expect("registers");
        });
        sim.run_for(step);
    }
    let sent = (batches(&sim) - before) as usize;
    println!("{} changes, {sent} batches", per_window * windows);
    // Per window at most one timer batch and one push of a refilled token, plus the first burst.
    assert!(
        sent <= c.delta_burst.get() as usize + 2 * (windows + 1),
        "{sent} batches for {windows} windows"
    );
    let converged = sim.run_until(
        Duration::from_secs(5),
        Duration::from_millis(1),
        check::converged,
    );
    assert!(converged.is_some(), "{:?}", check::equal_state(&sim));
}

/// After a burst has been batched, changes that then come one at a time leave at once again,
/// even when each follows the previous batch closely (here 50 µs after it, as when a caller
/// registers the next name as soon as it saw the last one). A timer batch of one change costs
/// one token: were it charged a whole window, every such change would miss its token and wait
/// for the next window's timer, for as long as the pattern lasts. Only the first single change
/// may still meet the bucket the burst emptied.
#[test]
fn one_at_a_time_changes_after_a_burst_leave_at_once_again() {
    for seed in [0xd1_0041u64, 0xd1_0042] {
        let mut sim = cluster(seed);
        let pid = sim.spawn(0).expect("runs");
        let c = Config::lan();
        for i in 0..100 {
            register_now(&mut sim, &pid, &format!("burst/{i:03}"));
        }
        // The burst's timer batch goes out; the next change comes just after it.
        let gap = Duration::from_micros(50);
        sim.run_for(c.delta_batch_window + gap);
        let mut at_once = 0;
        let rounds = 30;
        for i in 0..rounds {
            let (sent, _) = register_now(&mut sim, &pid, &format!("single/{i:03}"));
            if sent == 1 {
                at_once += 1;
                // Slower than the burst rate, so the bucket never runs dry on its own.
                sim.run_for(c.delta_batch_window / c.delta_burst.get() + gap);
            } else {
                // Batched: the window's timer sends it; the next change comes just after.
                sim.run_for(c.delta_batch_window + gap);
            }
        }
        println!("{at_once} of {rounds} single changes left in their own step");
        assert!(
            at_once >= rounds - 1,
            "single changes kept waiting for the window's timer ({at_once} of {rounds} at once)"
        );
        let converged = sim.run_until(
            Duration::from_secs(5),
            Duration::from_millis(1),
            check::converged,
        );
        assert!(converged.is_some(), "{:?}", check::equal_state(&sim));
    }
}
