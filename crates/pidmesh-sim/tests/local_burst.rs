//! The node's local add path under a burst: every registration yields its own `Registered`
//! event (in order, with the entry the call returned), mints the next dot of the node, and
//! reaches every peer in few batches, also when removals and metadata updates are mixed into
//! the pending batch; a registration over a name that already holds unresolved claims still
//! faces the resolver.

use std::time::Duration;

use pidmesh_proto::{Config, Entry, Event, Key, Resolver};
use pidmesh_sim::{Sim, SimConfig, check};
use rand::RngExt;

fn cluster(seed: u64, resolver: Resolver) -> Sim {
    println!("seed = {seed:#x}");
    let mut cfg = SimConfig::new(3, seed);
    cfg.node = Config::lan();
    cfg.resolver = resolver;
    let mut sim = Sim::new(cfg);
    let formed = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    );
    assert!(formed.is_some(), "the cluster did not form");
    sim.run_for(Duration::from_secs(1));
    sim.trace = true;
    sim
}

fn registered_events(sim: &Sim, host: usize) -> Vec<Entry> {
    sim.trace_log
        .iter()
        .filter(|(_, h, _)| *h == host)
        .filter_map(|(_, _, e)| match e {
            Event::Registered(entry) => Some(entry.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_burst_of_local_registrations_yields_every_event_and_reaches_every_node() {
    for seed in [0xb0_0001u64, 0xb0_0002, 0xb0_0003] {
        let mut sim = cluster(seed, Resolver::keep_oldest());
        let pid = sim.spawn(0).expect("runs");
        let batches_before = sim.node(0).map_or(0, |n| n.stats().batches_sent);
        let mut returned: Vec<Entry> = Vec::new();
        let mut removed = Vec::new();
        let mut next_seq: Option<u64> = None;
        let n = 3000;
        for i in 0..n {
            let name = format!("burst/{i:05}");
            let entry = sim
                .with_node(0, |node, now| {
                    node.register(now, &name, &pid, bytes::Bytes::new())
                })
                .expect("node 0 runs")
                .expect("registers");
            // Every mutation of node 0 mints its next dot (removals and updates too).
            if let Some(expected) = next_seq {
                assert_eq!(entry.dot.seq, expected, "registration {i}: next dot");
            }
            next_seq = Some(entry.dot.seq + 1);
            // The same name again in the same burst is refused with the entry just made.
            let again = sim
                .with_node(0, |node, now| {
                    node.register(now, &name, &pid, bytes::Bytes::new())
                })
                .expect("node 0 runs");
            assert!(again.is_err(), "registration {i} twice was accepted");
            returned.push(entry);
            // Removals and updates join the same pending batch as the adds.
            if i % 97 == 96 {
                let victim = returned[i - 50].clone();
                sim.with_node(0, |node, now| node.unregister(now, &victim.key.name, &pid))
                    .expect("node 0 runs")
                    .expect("unregisters");
                removed.push(victim.key.name.to_string());
                next_seq = next_seq.map(|s| s + 1);
            }
            if i % 131 == 130 {
                let key = Key::name(format!("burst/{:05}", i - 3));
                sim.with_node(0, |node, now| {
                    node.update_meta(now, &key, &pid, bytes::Bytes::from_static(b"m"))
                })
                .expect("node 0 runs")
                .expect("updates");
                next_seq = next_seq.map(|s| s + 1);
            }
            // 0 to 9 µs apart: mostly closer together than the push gap.
            let gap = sim.rng().random_range(0..10u64);
            sim.run_for(Duration::from_micros(gap));
        }
        assert_eq!(
            registered_events(&sim, 0),
            returned,
            "one Registered event per registration, in order, with the returned entry"
        );
        let took = sim.run_until(
            Duration::from_secs(5),
            Duration::from_millis(1),
            check::converged,
        );
        assert!(took.is_some(), "{:?}", check::equal_state(&sim));
        for i in 0..3 {
            let node = sim.node(i).expect("runs");
            for e in &returned {
                let found = node.lookup(&e.key.name);
                if removed.iter().any(|r| *r == *e.key.name) {
                    assert!(found.is_none(), "node {i}: {} was removed", e.key.name);
                } else {
                    let found = found.unwrap_or_else(|| panic!("node {i} lacks {}", e.key.name));
                    assert_eq!(found.pid, e.pid, "node {i}: {}", e.key.name);
                }
            }
        }
        let batches = sim.node(0).map_or(0, |n| n.stats().batches_sent) - batches_before;
        println!("{n} registrations left in {batches} batches");
        assert!(batches > 0 && batches < n as u64 / 4, "{batches} batches");
    }
}

/// Node 0 sees two concurrent claims on a name that the resolver (kill both) leaves without a
/// winner until their owners drop them; a claim of its own made then is a third contender
/// and node 0 drops it at once.
#[test]
fn a_registration_over_unresolved_claims_faces_the_resolver() {
    for seed in [0xb0_0011u64, 0xb0_0012] {
        let mut sim = cluster(seed, Resolver::kill_both());
        sim.partition(&[1], &[2]);
        let p1 = sim.spawn(1).expect("runs");
        let p2 = sim.spawn(2).expect("runs");
        sim.register(1, "contested", &p1).expect("registers on 1");
        sim.register(2, "contested", &p2).expect("registers on 2");
        // Owners only learn of each other through node 0's anti-entropy; stop before that.
        let seen = sim.run_until(Duration::from_millis(50), Duration::from_micros(100), |s| {
            s.node(0)
                .is_some_and(|n| n.entries(&Key::name("contested")).len() == 2)
        });
        assert!(seen.is_some(), "node 0 saw both claims");
        let p0 = sim.spawn(0).expect("runs");
        let mine = sim
            .with_node(0, |n, now| {
                assert!(n.lookup("contested").is_none(), "no winner under kill-both");
                n.register(now, "contested", &p0, bytes::Bytes::new())
            })
            .expect("node 0 runs")
            .expect("a name without a winner can be claimed");
        let kept = sim
            .node(0)
            .map(|n| n.entries(&Key::name("contested")))
            .unwrap_or_default();
        assert!(
            !kept.iter().any(|e| e.dot == mine.dot),
            "node 0's own claim was not resolved: {kept:?}"
        );
    }
}
