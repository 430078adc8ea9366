//! A delta batch larger than `Config::delta_batch_bytes` goes out in pieces. A replacement
//! (a metadata update: a new entry whose dot removes the old one) must travel in one piece with
//! the dot it removes: a receiver that gets the new entry without the removal of the old one, or
//! the removal without the new entry, holds a state no removal in flight explains, and its next
//! digest costs a whole-row resend (`Stats::full_syncs`). Here one piece of a batch of
//! replacements is lost on the way to one node, in turn each piece; the lost part comes back
//! with the anti-entropy answer alone.

use std::time::Duration;

use std::cell::Cell;
use std::rc::Rc;

use pidmesh_proto::{Config, Key, Pid, TrafficClass};
use pidmesh_sim::{LinkConfig, Sim, SimConfig, check};

const NAMES: usize = 4_000;

fn sim(seed: u64) -> Sim {
    let mut cfg = SimConfig::new(3, seed);
    cfg.node = Config::lan();
    cfg.link = LinkConfig {
        min_latency: Duration::from_millis(1),
        max_latency: Duration::from_millis(2),
        ..LinkConfig::default()
    };
    Sim::formed(cfg).expect("the cluster forms")
}

/// A formed cluster whose node 0 registered `NAMES` names (one pid), converged everywhere.
fn registered(seed: u64) -> (Sim, Pid, Vec<Key>) {
    let mut sim = sim(seed);
    let pid = sim.spawn(0).expect("runs");
    let keys: Vec<Key> = (0..NAMES)
        .map(|k| Key::name(format!("big/{k:05}")))
        .collect();
    for k in &keys {
        sim.register(0, &k.name, &pid).expect("registers");
    }
    sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(10),
        check::converged,
    )
    .expect("converges");
    (sim, pid, keys)
}

fn full_syncs(sim: &Sim) -> u64 {
    (0..3)
        .filter_map(|i| sim.node(i).map(|n| n.stats().full_syncs))
        .sum()
}

/// Registers `NAMES` names on node 0, then replaces every one (new metadata) in one instant,
/// dropping the `lost`-th delta message from node 0 to node 1 sent from then on (0 = none).
/// Returns the whole-row resends until every node holds the same state, and how many delta
/// messages carried the replacements.
fn replace_all_losing(seed: u64, lost: usize) -> (u64, usize) {
    let (mut sim, pid, keys) = registered(seed);
    let before = full_syncs(&sim);
    let sent = Rc::new(Cell::new(0usize));
    let counter = sent.clone();
    sim.set_drop_filter(Some(Box::new(move |from, to, class, _| {
        if from != 0 || to != 1 || class != TrafficClass::Delta {
            return false;
        }
        counter.set(counter.get() + 1);
        counter.get() == lost
    })));
    let meta = [7u8; 100];
    for k in &keys {
        sim.update_meta(0, k, &pid, &meta).expect("updates");
    }
    let took = sim.run_until(
        Duration::from_secs(60),
        Duration::from_millis(10),
        check::converged,
    );
    assert!(
        took.is_some(),
        "seed {seed:#x}: no convergence: {:?}",
        check::equal_state(&sim)
    );
    (full_syncs(&sim) - before, sent.get())
}

#[test]
fn losing_one_piece_of_a_batch_of_replacements_costs_no_whole_row_resend() {
    let seed = 0xde17_a001_u64;
    println!("seed = {seed:#x}");
    let (base, messages) = replace_all_losing(seed, 0);
    println!("nothing lost: {base} whole-row resends; {messages} delta messages to node 1");
    assert_eq!(base, 0, "seed {seed:#x}");
    // The first message is the first update alone (it found the link idle); the rest is one
    // batch in pieces.
    assert!(
        messages >= 3,
        "seed {seed:#x}: the batch was not cut ({messages} messages)"
    );
    for lost in 1..=messages {
        let (resends, _) = replace_all_losing(seed, lost);
        println!("message {lost} of {messages} lost: {resends} whole-row resends");
        assert_eq!(resends, 0, "seed {seed:#x}: message {lost} lost");
    }
}

/// Rounds of replacing every name, with `loss` on every link, each round once the previous one
/// converged (a lost piece repaired by anti-entropy); returns the whole-row resends and the
/// messages the network dropped.
fn replace_rounds_lossy(seed: u64, rounds: usize, loss: f64) -> (u64, u64) {
    let (mut sim, pid, keys) = registered(seed);
    let before = full_syncs(&sim);
    let dropped = sim.dropped;
    sim.set_link(LinkConfig {
        min_latency: Duration::from_millis(1),
        max_latency: Duration::from_millis(2),
        loss,
        ..LinkConfig::default()
    });
    for round in 0..rounds {
        let meta = [u8::try_from(round % 200).unwrap_or(0); 100];
        for k in &keys {
            sim.update_meta(0, k, &pid, &meta).expect("updates");
        }
        sim.run_until(
            Duration::from_secs(60),
            Duration::from_millis(10),
            check::converged,
        )
        .unwrap_or_else(|| panic!("seed {seed:#x}: no convergence in round {round}"));
    }
    (full_syncs(&sim) - before, sim.dropped - dropped)
}

#[test]
fn batches_of_replacements_on_lossy_links_cost_no_whole_row_resend() {
    for seed in [0xde17_a101_u64, 0xde17_a102] {
        let (resends, dropped) = replace_rounds_lossy(seed, 10, 0.05);
        println!(
            "seed = {seed:#x}: 10 rounds of {NAMES} replacements, 5 % loss: {dropped} messages \
             dropped, {resends} whole-row resends"
        );
        assert_eq!(resends, 0, "seed {seed:#x}");
    }
}
