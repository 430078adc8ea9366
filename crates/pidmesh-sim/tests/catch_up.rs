//! Catch-up of a joining node from several holders at once (`node/catchup.rs`): it ends equal
//! to the others under churn, survives a holder crashing mid-stream, never brings back an entry
//! removed while it caught up, reports slices as batched events and tells when it is caught up.

use std::collections::BTreeSet;
use std::time::Duration;

use pidmesh_proto::{Config, Dot, Event, Key, NodeId, Pid};
use pidmesh_sim::{Sim, SimConfig, check};

/// Sequence numbers per fetched window in these tests: small, so a few thousand entries make
/// enough windows to spread over three holders.
const WINDOW: u64 = 500;

/// Four hosts; n3 is down from the start (it joins later, as a newcomer). Returns the
/// simulator once n0..n2 formed their membership.
fn three_of_four(seed: u64) -> Sim {
    println!("seed = {seed:#x}");
    let mut cfg = SimConfig::new(4, seed);
    let mut node = Config::local().for_cluster_size(4);
    node.catch_up_window = WINDOW;
    cfg.node = node;
    let mut sim = Sim::new(cfg);
    sim.crash(3);
    let formed = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    );
    assert!(formed.is_some(), "n0..n2 did not form");
    sim
}

/// Registers `n` names on node `i` under `prefix`, with one process.
fn fill(sim: &mut Sim, i: usize, prefix: &str, n: usize) -> Vec<(Key, Pid)> {
    let pid = sim.spawn(i).expect("node runs");
    (0..n)
        .map(|k| {
            let name = format!("{prefix}/{k:05}");
            sim.register(i, &name, &pid).expect("registers");
            (Key::name(&name), pid.clone())
        })
        .collect()
}

fn converge(sim: &mut Sim) {
    let took = sim.run_until(
        Duration::from_secs(60),
        Duration::from_millis(20),
        check::converged,
    );
    assert!(
        took.is_some(),
        "no convergence: {:?}",
        check::equal_state(sim)
    );
}

fn id(sim: &Sim, i: usize) -> NodeId {
    sim.node(i).map(|n| n.id().clone()).expect("node runs")
}

fn fetches_answered(sim: &Sim, i: usize) -> u64 {
    sim.node(i).map_or(0, |n| n.stats().fetches_answered)
}

/// n0 holds 6,000 names and n1, n2 some of their own; n3 joins while all three keep adding
/// and removing. n3 fetches n0's row from several holders, ends equal to everyone, says it is
/// caught up (the event comes once), and reports the bulk of what it fetched as a few batched
/// events rather than one `Registered` each.
#[test]
fn a_newcomer_catches_up_from_three_holders_under_churn() {
    for seed in [0xc0_0001u64, 0xc0_0002, 0xc0_0003] {
        let mut sim = three_of_four(seed);
        let mut live = fill(&mut sim, 0, "a", 6_000);
        live.extend(fill(&mut sim, 1, "b", 700));
        live.extend(fill(&mut sim, 2, "c", 700));
        converge(&mut sim);
        let before: Vec<u64> = (0..3).map(|i| fetches_answered(&sim, i)).collect();
        sim.trace = true;
        sim.restart(3);
        assert!(!sim.node(3).is_some_and(|n| n.is_caught_up()));
        // Churn while n3 catches up: every node adds one name and removes an old one per step.
        let mut step = 0usize;
        while !sim.node(3).is_some_and(|n| n.is_caught_up()) && step < 2_000 {
            let i = step % 3;
            let pid = sim.spawn(i).expect("node runs");
            let name = format!("churn/{i}/{step}");
            sim.register(i, &name, &pid).expect("registers");
            let k = (step * 7919) % live.len();
            let (key, pid) = live.swap_remove(k);
            let owner = sim
                .node(0)
                .and_then(|n| n.entries(&key).first().map(|e| e.dot.actor.clone()));
            let j = (0..3)
                .find(|&j| owner.as_ref() == Some(&id(&sim, j)))
                .expect("owned");
            sim.remove(j, &key, &pid).expect("removes");
            sim.run_for(Duration::from_millis(2));
            step += 1;
        }
        assert!(
            sim.node(3).is_some_and(|n| n.is_caught_up()),
            "n3 did not catch up in {step} steps"
        );
        converge(&mut sim);
        check::all(&sim).expect("invariants hold");
        let helped: Vec<usize> = (0..3)
            .filter(|&i| fetches_answered(&sim, i) > before[i])
            .collect();
        assert!(
            helped.len() >= 2,
            "holders that answered fetches: {helped:?}"
        );
        let events: Vec<&Event> = sim.hosts[3].life.events.iter().map(|(_, e)| e).collect();
        let caught = events
            .iter()
            .filter(|e| matches!(e, Event::CaughtUp { .. }))
            .count();
        assert_eq!(caught, 1, "CaughtUp events");
        let synced: usize = events
            .iter()
            .filter_map(|e| match e {
                Event::Synced { count, .. } => Some(*count),
                _ => None,
            })
            .sum();
        let single = events
            .iter()
            .filter(|e| matches!(e, Event::Registered(_)))
            .count();
        let held = sim.node(3).map_or(0, |n| n.stats().entries);
        assert!(
            synced >= held / 2,
            "{synced} entries came in Synced events, {single} as Registered, {held} held"
        );
        assert!(
            single < held / 4,
            "{single} Registered events for {held} entries"
        );
    }
}

/// n1, a holder, crashes while n3 fetches from it: the windows it was answering go to the
/// other holders and n3 still ends with everything.
#[test]
fn a_holder_crashing_mid_stream_does_not_stop_the_catch_up() {
    for seed in [0xc1_0001u64, 0xc1_0002, 0xc1_0003] {
        let mut sim = three_of_four(seed);
        fill(&mut sim, 0, "a", 8_000);
        converge(&mut sim);
        sim.restart(3);
        let started = sim.run_until(Duration::from_secs(10), Duration::from_micros(200), |s| {
            fetches_answered(s, 1) > 0
        });
        assert!(started.is_some(), "n1 never answered a fetch");
        assert!(
            !sim.node(3).is_some_and(|n| n.is_caught_up()),
            "caught up too early"
        );
        sim.crash(1);
        let done = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
            s.node(3).is_some_and(|n| n.is_caught_up())
        });
        assert!(done.is_some(), "n3 did not catch up after n1 crashed");
        let refetched = sim.node(3).map_or(0, |n| n.stats().catch_up_refetches);
        assert!(refetched >= 1, "no window was asked again");
        converge(&mut sim);
        check::all(&sim).expect("invariants hold");
        assert_eq!(sim.node(3).map(|n| n.stats().entries), Some(8_000));
    }
}

/// While n3 catches up, n0 removes names and the other holders do not hear of it (n0's
/// messages to them are cut): their slices still carry those entries. n3 got the removals from
/// n0 itself and must not take them back from the stale slices: once it says it is caught up
/// it holds none of them; once the cut heals every node agrees and none holds them.
#[test]
fn removals_are_not_resurrected_by_stale_slices() {
    for seed in [0xc2_0001u64, 0xc2_0002, 0xc2_0003] {
        let mut sim = three_of_four(seed);
        let mut live = fill(&mut sim, 0, "a", 6_000);
        converge(&mut sim);
        sim.restart(3);
        let n3 = id(&sim, 3);
        let joined = sim.run_until(Duration::from_secs(10), Duration::from_micros(200), |s| {
            s.node(3).is_some_and(|n| n.stats().slices_applied > 0)
                && s.node(0).is_some_and(|n| n.peers().any(|m| m.node == n3))
        });
        assert!(joined.is_some(), "n3 did not start catching up");
        assert!(
            !sim.node(3).is_some_and(|n| n.is_caught_up()),
            "caught up too early"
        );
        sim.cut_one_way(&[0], &[1, 2]);
        let mut removed: BTreeSet<Dot<NodeId>> = BTreeSet::new();
        for _ in 0..300 {
            let (key, pid) = live.swap_remove(live.len() / 2);
            let e = sim.remove(0, &key, &pid).expect("removes");
            removed.insert(e.dot);
        }
        let done = sim.run_until(
            Duration::from_millis(400),
            Duration::from_micros(500),
            |s| s.node(3).is_some_and(|n| n.is_caught_up()),
        );
        assert!(done.is_some(), "n3 did not catch up during the cut");
        let node3 = sim.node(3).expect("runs");
        let back: Vec<_> = removed
            .iter()
            .filter(|d| node3.registry().contains_dot(d))
            .collect();
        assert!(back.is_empty(), "n3 holds removed entries {back:?}");
        sim.heal();
        converge(&mut sim);
        check::all(&sim).expect("invariants hold");
        for i in sim.live() {
            let n = sim.node(i).expect("runs");
            assert!(
                removed.iter().all(|d| !n.registry().contains_dot(d)),
                "n{i} holds a removed entry"
            );
        }
        assert_eq!(sim.node(3).map(|n| n.stats().entries), Some(5_700));
    }
}
