//! What a partition heal with N contested names costs, in counts: after the heal each node runs
//! the resolver at most once per name, the losing side gives up all its claims in one removal
//! delta, every row crosses the healed link once (no whole-row resend), and the number of
//! messages does not grow with N; only the per-name work does. Every node then shows the same
//! winner, and the losers' removals are reported as conflict losses.

use std::time::Duration;

use pidmesh_proto::{Config, Event, Reason, Stats};
use pidmesh_sim::{Sim, SimConfig, check, contest};

/// Counters of one node from the heal until the cluster settled.
#[derive(Debug, PartialEq, Eq)]
struct Cost {
    conflicts_resolved: u64,
    batches_sent: u64,
    digests_answered: u64,
    chunks_applied: u64,
    full_syncs: u64,
}

fn cost(before: &Stats, after: &Stats) -> Cost {
    Cost {
        conflicts_resolved: after.conflicts_resolved - before.conflicts_resolved,
        batches_sent: after.batches_sent - before.batches_sent,
        digests_answered: after.digests_answered - before.digests_answered,
        chunks_applied: after.chunks_applied - before.chunks_applied,
        full_syncs: after.full_syncs - before.full_syncs,
    }
}

/// Node 0 is cut off from nodes 1 and 2; both sides register the same `n` names (node 0
/// first, so keep-oldest gives node 0 every name); the links come back. Returns each node's
/// cost from the heal until every node holds exactly node 0's `n` entries.
fn heal(seed: u64, n: usize) -> Vec<Cost> {
    println!("seed = {seed:#x}, n = {n}");
    let mut cfg = SimConfig::new(3, seed);
    cfg.node = Config::local();
    let mut sim = Sim::new(cfg);
    sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(10),
        check::membership_agrees_ok,
    )
    .expect("the cluster forms");
    contest::cut_off_node_zero(&mut sim, Duration::from_secs(60))
        .expect("both sides declare the other down");
    let names: Vec<String> = (0..n).map(|i| format!("contested/{i:05}")).collect();
    let (a, b) =
        contest::claim_on_both_sides(&mut sim, &names).expect("both sides claim every name");
    sim.run_for(Duration::from_millis(100));

    let before: Vec<Stats> = (0..3).map(|i| sim.node(i).expect("runs").stats()).collect();
    sim.trace = true;
    sim.heal();
    let settled = sim.run_until(Duration::from_secs(30), Duration::from_millis(1), |s| {
        (0..3).all(|i| {
            s.node(i).is_some_and(|x| {
                x.stats().entries == n
                    && names
                        .iter()
                        .all(|m| x.lookup(m).is_some_and(|e| e.pid == a))
            })
        })
    });
    assert!(
        settled.is_some(),
        "every node shows node 0's process for every name"
    );
    check::all(&sim).unwrap_or_else(|v| panic!("invariants: {v:?}"));

    // Node 2 gave up each of its claims as a conflict loss, and every node that decided a name
    // reported the loser's removal as such.
    let lost = &sim.hosts[2].life.unregistered;
    assert_eq!(lost.len(), n, "node 2's claims removed");
    assert!(lost.values().all(|r| *r == Reason::Conflict), "{lost:?}");
    for i in 0..3 {
        let events: Vec<&Event> = sim
            .trace_log
            .iter()
            .filter(|(_, at, _)| *at == i)
            .map(|(_, _, e)| e)
            .collect();
        let decided = events
            .iter()
            .filter(|e| {
                matches!(e, Event::ConflictResolved { winner: Some(w), losers, .. }
                if w.pid == a && losers.len() == 1 && losers[0].pid == b)
            })
            .count();
        let lost_here = events
            .iter()
            .filter(|e| {
                matches!(e, Event::Unregistered { entry, reason: Reason::Conflict }
                if entry.pid == b)
            })
            .count();
        if decided > 0 {
            assert_eq!(decided, n, "node {i} decides every name once");
            assert_eq!(
                lost_here, n,
                "node {i} reports every loser as lost to a conflict"
            );
        }
    }
    (0..3)
        .map(|i| cost(&before[i], &sim.node(i).expect("runs").stats()))
        .collect()
}

#[test]
fn a_heal_costs_one_decision_per_name_and_messages_independent_of_the_names() {
    for seed in [0x4ea1_0001, 0x4ea1_0002, 0x4ea1_0003] {
        let small = heal(seed, 300);
        let large = heal(seed, 900);
        println!("seed = {seed:#x}: 300 names {small:?}; 900 names {large:?}");
        for (n, costs) in [(300, &small), (900, &large)] {
            for (i, c) in costs.iter().enumerate() {
                assert!(
                    c.conflicts_resolved <= n,
                    "node {i} resolved a name twice: {c:?}"
                );
                assert_eq!(c.full_syncs, 0, "node {i} resent a whole row: {c:?}");
            }
            // Node 2 (the loser) held both claims at once: it decided every name. Node 0 (the
            // winner) decided every name if the loser's claims reached it before their removal,
            // and none if the removal came first (after a fast reconnection node 2 often holds
            // node 0's claims, and gave up its own, before it answers node 0's digest).
            assert!(
                costs[0].conflicts_resolved == n || costs[0].conflicts_resolved == 0,
                "{costs:?}"
            );
            assert_eq!(costs[2].conflicts_resolved, n, "{costs:?}");
            // The loser gives up all its claims in one removal delta (one batch, or two when
            // the first claims' removal leaves at once and the rest on the next window).
            assert!(costs[2].batches_sent <= 2, "{costs:?}");
        }
        // Messages do not grow with the names: whatever N, a handful of digests, chunks and
        // batches per node (the periodic anti-entropy round may add one while things settle).
        for costs in [&small, &large] {
            for (i, c) in costs.iter().enumerate() {
                assert!(
                    c.batches_sent <= 3 && c.digests_answered <= 4 && c.chunks_applied <= 4,
                    "node {i}: {c:?}"
                );
            }
        }
    }
}
