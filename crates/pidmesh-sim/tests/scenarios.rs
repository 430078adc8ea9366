//! Named scenarios: the classic cases of a partition-tolerant registry, each deterministic.

use std::time::Duration;

use pidmesh_proto::{Event, Reason, Resolver, Verdict};
use pidmesh_sim::{LinkConfig, Sim, SimConfig, check};

const SEED: u64 = 0x5eed_0001;

fn cluster(n: usize, seed: u64) -> Sim {
    println!("seed = {seed:#x}");
    let mut sim = Sim::new(SimConfig::new(n, seed));
    let took = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    );
    assert!(
        took.is_some(),
        "cluster of {n} did not form: {:?}",
        check::membership_agrees(&sim)
    );
    sim
}

fn settle(sim: &mut Sim) -> Duration {
    let took = sim.run_until(
        Duration::from_secs(60),
        Duration::from_millis(20),
        check::converged,
    );
    let took = took.unwrap_or_else(|| {
        panic!(
            "no convergence: {:?} / {:?}",
            check::equal_state(sim),
            check::membership_agrees(sim)
        )
    });
    sim.run_for(Duration::from_secs(1));
    if let Err(e) = check::all(sim) {
        panic!("seed {:#x}: {}", sim.seed, e.join("\n"));
    }
    took
}

#[test]
fn register_is_visible_everywhere() {
    let mut sim = cluster(3, SEED);
    let pid = sim.spawn(0).expect("n0 runs");
    let entry = sim.register(0, "billing", &pid).expect("registers");
    assert_eq!(
        sim.node(0).and_then(|n| n.lookup("billing")),
        Some(entry.clone()),
        "read-your-writes"
    );
    let took = settle(&mut sim);
    for i in 0..3 {
        assert_eq!(
            sim.node(i).and_then(|n| n.lookup("billing")),
            Some(entry.clone())
        );
    }
    println!("visible everywhere after {took:?}");
}

#[test]
fn simultaneous_registration_on_two_nodes_has_one_winner() {
    let mut sim = cluster(3, SEED + 1);
    let a = sim.spawn(0).expect("runs");
    let b = sim.spawn(1).expect("runs");
    // Same virtual instant, before either delta arrives.
    let ea = sim.register(0, "leader", &a).expect("n0 registers");
    let eb = sim.register(1, "leader", &b).expect("n1 registers");
    settle(&mut sim);
    let winner = sim
        .node(2)
        .and_then(|n| n.lookup("leader"))
        .expect("a winner");
    let expected = if ea.canonical_cmp(&eb).is_lt() {
        ea
    } else {
        eb
    };
    assert_eq!(winner, expected, "keep-oldest picks the canonically first");
    let loser_host = if winner.pid == a { 1 } else { 0 };
    let reason = sim.hosts[loser_host]
        .life
        .unregistered
        .values()
        .next()
        .copied();
    assert_eq!(reason, Some(Reason::Conflict), "the loser's owner was told");
}

fn split_brain(resolver: Resolver, seed: u64) -> (Sim, [pidmesh_proto::Entry; 2]) {
    let mut cfg = SimConfig::new(5, seed);
    cfg.resolver = resolver;
    println!("seed = {seed:#x}");
    let mut sim = Sim::new(cfg);
    sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    )
    .expect("formed");
    sim.partition(&[0, 1], &[2, 3, 4]);
    // Wait until each side has declared the other down.
    sim.run_until(Duration::from_secs(30), Duration::from_millis(50), |s| {
        s.node(0).is_some_and(|n| n.peers().count() == 1)
            && s.node(2).is_some_and(|n| n.peers().count() == 2)
    })
    .expect("sides split");
    let a = sim.spawn(1).expect("runs");
    let ea = sim
        .register(1, "scheduler", &a)
        .expect("minority side registers");
    sim.run_for(Duration::from_millis(5));
    let b = sim.spawn(3).expect("runs");
    let eb = sim
        .register(3, "scheduler", &b)
        .expect("majority side registers");
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.node(0).and_then(|n| n.lookup("scheduler")),
        Some(ea.clone())
    );
    assert_eq!(
        sim.node(4).and_then(|n| n.lookup("scheduler")),
        Some(eb.clone())
    );
    sim.heal();
    let took = settle(&mut sim);
    println!("healed and converged after {took:?}");
    (sim, [ea, eb])
}

#[test]
fn partition_both_sides_register_heal_keep_oldest() {
    let (sim, [older, _]) = split_brain(Resolver::keep_oldest(), SEED + 2);
    for i in 0..5 {
        assert_eq!(
            sim.node(i).and_then(|n| n.lookup("scheduler")),
            Some(older.clone())
        );
    }
}

#[test]
fn partition_both_sides_register_heal_keep_newest() {
    let (sim, [_, newer]) = split_brain(Resolver::keep_newest(), SEED + 3);
    for i in 0..5 {
        assert_eq!(
            sim.node(i).and_then(|n| n.lookup("scheduler")),
            Some(newer.clone())
        );
    }
}

#[test]
fn partition_heal_node_priority_and_kill_both() {
    let (sim, [_, on_n3]) = split_brain(Resolver::node_priority(["n3", "n1"]), SEED + 4);
    assert_eq!(sim.node(0).and_then(|n| n.lookup("scheduler")), Some(on_n3));
    let (sim, _) = split_brain(Resolver::kill_both(), SEED + 5);
    for i in 0..5 {
        assert_eq!(
            sim.node(i).and_then(|n| n.lookup("scheduler")),
            None,
            "kill-both frees the name"
        );
    }
}

#[test]
fn custom_resolver_and_its_failure_fallback() {
    // Prefer the entry on the node with the longest name, ties by canonical order.
    let custom = Resolver::custom(|_, c| {
        let best = c
            .iter()
            .enumerate()
            .max_by_key(|(i, e)| (e.pid.node.name.len(), std::cmp::Reverse(*i)));
        Verdict::Keep(best.map_or(0, |(i, _)| i))
    });
    let (sim, [ea, _]) = split_brain(custom, SEED + 6);
    assert_eq!(sim.node(2).and_then(|n| n.lookup("scheduler")), Some(ea));

    let broken = Resolver::custom(|name, _| panic!("resolver bug on {name}"));
    let mut cfg = SimConfig::new(3, SEED + 7);
    cfg.resolver = broken;
    let mut sim = Sim::new(cfg);
    sim.trace = true;
    sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    )
    .expect("formed");
    let a = sim.spawn(0).expect("runs");
    let b = sim.spawn(1).expect("runs");
    let ea = sim.register(0, "x", &a).expect("registers");
    let eb = sim.register(1, "x", &b).expect("registers");
    settle(&mut sim);
    let oldest = if ea.canonical_cmp(&eb).is_lt() {
        ea
    } else {
        eb
    };
    assert_eq!(
        sim.node(2).and_then(|n| n.lookup("x")),
        Some(oldest),
        "fallback is keep-oldest"
    );
    let failed = sim.hosts[2]
        .life
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::ResolverFailed { .. }));
    assert!(failed, "ResolverFailed was emitted");
}

#[test]
fn crashed_node_names_vanish_everywhere() {
    let mut sim = cluster(4, SEED + 8);
    let pid = sim.spawn(3).expect("runs");
    sim.register(3, "cache", &pid).expect("registers");
    sim.join(3, "workers", &pid).expect("joins");
    settle(&mut sim);
    sim.crash(3);
    let t = sim.run_until(Duration::from_secs(30), Duration::from_millis(20), |s| {
        (0..3).all(|i| {
            s.node(i)
                .is_some_and(|n| n.lookup("cache").is_none() && n.members_of("workers").is_empty())
        })
    });
    println!("names of the crashed node gone everywhere after {t:?}");
    assert!(t.is_some(), "names of a crashed node must vanish");
    settle(&mut sim);
}

#[test]
fn restarted_node_is_a_new_life_and_old_entries_stay_gone() {
    let mut sim = cluster(3, SEED + 9);
    let pid = sim.spawn(2).expect("runs");
    sim.register(2, "db", &pid).expect("registers");
    settle(&mut sim);
    sim.restart(2);
    let old_gone = sim.run_until(Duration::from_secs(30), Duration::from_millis(20), |s| {
        (0..3).all(|i| s.node(i).is_some_and(|n| n.lookup("db").is_none()))
    });
    assert!(old_gone.is_some(), "the old life's entry is gone");
    let new_pid = sim.spawn(2).expect("runs");
    assert_ne!(new_pid.node, pid.node, "new incarnation");
    let e = sim
        .register(2, "db", &new_pid)
        .expect("the name is free again");
    settle(&mut sim);
    assert_eq!(sim.node(0).and_then(|n| n.lookup("db")), Some(e));
}

#[test]
fn five_nodes_with_30_percent_loss_converge() {
    let mut cfg = SimConfig::new(5, SEED + 10);
    // SWIM needs suspicion longer than a few lost probes: the LAN preset, not the tight local one.
    cfg.node = pidmesh_proto::Config::lan();
    cfg.link = LinkConfig {
        loss: 0.3,
        duplicate: 0.05,
        max_latency: Duration::from_millis(10),
        ..LinkConfig::default()
    };
    println!("seed = {:#x}", cfg.seed);
    let mut sim = Sim::new(cfg);
    sim.run_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        check::membership_agrees_ok,
    );
    for i in 0..5 {
        for k in 0..20 {
            let pid = sim.spawn(i).expect("runs");
            sim.register(i, &format!("n{i}-svc{k}"), &pid);
            sim.join(i, "all", &pid);
        }
        sim.run_for(Duration::from_millis(50));
    }
    // Loss stays on: anti-entropy must repair what the pushes lost.
    let took = sim.run_until(Duration::from_secs(120), Duration::from_millis(100), |s| {
        check::equal_state(s).is_ok() && s.node(0).is_some_and(|n| n.members_of("all").len() == 100)
    });
    println!(
        "converged under 30% loss after {took:?}; dropped {} delivered {}",
        sim.dropped, sim.delivered
    );
    assert!(
        took.is_some(),
        "no convergence under loss: {:?}",
        check::equal_state(&sim)
    );
}

#[test]
fn graceful_leave_removes_entries_promptly() {
    let mut sim = cluster(3, SEED + 11);
    let pid = sim.spawn(1).expect("runs");
    sim.register(1, "api", &pid).expect("registers");
    settle(&mut sim);
    sim.shutdown(1);
    let t = sim.run_until(Duration::from_secs(10), Duration::from_millis(5), |s| {
        s.node(0).is_some_and(|n| n.lookup("api").is_none())
            && s.node(2).is_some_and(|n| n.lookup("api").is_none())
    });
    println!("entries of a leaving node gone after {t:?}");
    assert!(
        t.is_some_and(|t| t < Duration::from_millis(500)),
        "leave pushes removals at once: {t:?}"
    );
}

#[test]
fn forged_deltas_are_rejected() {
    use pidmesh_proto::{Hlc, Key, NodeId, TrafficClass};
    use pidmesh_wire::{DeltaBatch, DeltaMsg, OriginDelta, Value, WireEntry, encode};
    let mut sim = cluster(3, SEED + 12);
    let victim = sim.node(1).expect("runs").id().clone();
    // n2 claims to send n1's dots: the authenticated name (n2) does not match the origin (n1).
    let forged = DeltaMsg::V1(DeltaBatch {
        origin: victim.clone(),
        delta: OriginDelta {
            seen: vec![(1000, 1000)],
            adds: vec![WireEntry {
                seq: 1000,
                key: Key::name("evil"),
                value: Value {
                    pid: 1,
                    meta: bytes::Bytes::new(),
                    at: Hlc::default(),
                },
            }],
            released: Vec::new(),
        },
    });
    let bytes = encode(&forged).expect("encodes");
    let from = sim.hosts[2].addr;
    let before = sim.node(0).expect("runs").stats().rejected;
    sim.with_node(0, |n, now| {
        n.handle_message(now, from, Some("n2"), TrafficClass::Delta, &bytes)
    });
    // An origin that is not a member at all.
    let stranger = DeltaMsg::V1(DeltaBatch {
        origin: NodeId::new("nobody", 1),
        delta: OriginDelta::default(),
    });
    let bytes2 = encode(&stranger).expect("encodes");
    sim.with_node(0, |n, now| {
        n.handle_message(now, from, None, TrafficClass::Delta, &bytes2)
    });
    // Garbage on every class.
    for class in TrafficClass::ALL {
        sim.with_node(0, |n, now| {
            n.handle_message(now, from, Some("n2"), class, &[0xff, 0x00, 0x13])
        });
    }
    let n0 = sim.node(0).expect("runs");
    assert_eq!(n0.lookup("evil"), None);
    assert_eq!(
        n0.stats().rejected - before,
        2 + TrafficClass::ALL.len() as u64
    );
    let _ = victim;
}

#[test]
fn an_old_conflict_release_does_not_kill_a_later_claim() {
    // kill-both frees a contested name; much later, while n0 is cut off (so n2 drops n0's row),
    // n2 registers the free name. After the heal n2 learns n0's old release record again: it was
    // given up before n2's claim existed, so n2 keeps the name.
    let mut cfg = SimConfig::new(3, SEED + 13);
    cfg.resolver = pidmesh_proto::Resolver::kill_both();
    println!("seed = {:#x}", cfg.seed);
    let mut sim = Sim::new(cfg);
    sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    )
    .expect("formed");
    let a = sim.spawn(0).expect("runs");
    let b = sim.spawn(1).expect("runs");
    sim.register(0, "lock", &a).expect("n0 claims");
    sim.register(1, "lock", &b).expect("n1 claims");
    settle(&mut sim);
    assert!(
        (0..3).all(|i| sim.node(i).is_some_and(|n| n.lookup("lock").is_none())),
        "kill-both freed it"
    );
    sim.run_for(Duration::from_secs(1));
    sim.partition(&[0], &[1, 2]);
    sim.run_until(Duration::from_secs(30), Duration::from_millis(50), |s| {
        s.node(2).is_some_and(|n| n.peers().count() == 1)
    })
    .expect("n0 declared down on the other side");
    let c = sim.spawn(2).expect("runs");
    let ec = sim.register(2, "lock", &c).expect("the name is free");
    sim.heal();
    settle(&mut sim);
    for i in 0..3 {
        assert_eq!(
            sim.node(i).and_then(|n| n.lookup("lock")),
            Some(ec.clone()),
            "n{i}"
        );
    }
}

/// Registers a fresh name on every live node, so the convergence check has state to compare.
fn register_everywhere(sim: &mut Sim, tag: &str) {
    for i in sim.live() {
        let pid = sim.spawn(i).expect("runs");
        sim.register(i, &format!("{tag}-n{i}"), &pid)
            .expect("registers");
    }
}

/// Asserts the live nodes `expected` see each other and hold the same state within 60 s.
fn rejoins(sim: &mut Sim, expected: &[usize]) {
    assert_eq!(sim.live(), expected, "the scenario's live set");
    let took = settle(sim);
    println!("live nodes {expected:?} re-formed one cluster after {took:?}");
}

/// The shape of sweep seed 917921 (`chaos_run(917921, 4, 4)`, failing before remembered
/// addresses): both seeds (n0, n1) die; n2 restarts while the only other member is a seed and
/// meets only that seed's next life; the seed dies again; n3, down since early on, restarts.
/// The two survivors never met in their current lives and every seed is dead: only what n3's
/// host remembered from its previous life (the addresses of n0..n2) leads it to n2.
#[test]
fn rejoin_when_every_seed_is_dead_seed_917921() {
    let mut sim = cluster(4, 917_921);
    register_everywhere(&mut sim, "a");
    settle(&mut sim);
    sim.crash(1);
    sim.crash(3);
    sim.run_for(Duration::from_secs(5));
    sim.crash(0);
    sim.restart(2);
    sim.run_for(Duration::from_secs(10));
    sim.restart(0);
    register_everywhere(&mut sim, "b");
    rejoins(&mut sim, &[0, 2]);
    sim.crash(0);
    sim.run_for(Duration::from_secs(10));
    sim.restart(3);
    register_everywhere(&mut sim, "c");
    rejoins(&mut sim, &[2, 3]);
}

/// The shape of sweep seed 920252 (`chaos_run(920252, 5, 4)`, failing before remembered
/// addresses): n2 restarts inside a partition while n3 crashes, the cluster heals without n3;
/// then both seeds (n0, n1) crash, n4 restarts, and n3 restarts last. n2 and n4 never saw n3's
/// current or previous life, n3's seeds are dead: n3 finds them through the addresses its
/// previous life remembered.
#[test]
fn rejoin_when_every_seed_is_dead_seed_920252() {
    let mut sim = cluster(5, 920_252);
    register_everywhere(&mut sim, "a");
    settle(&mut sim);
    sim.partition(&[0, 1, 4], &[2, 3]);
    sim.crash(3);
    sim.restart(2);
    sim.run_for(Duration::from_secs(12));
    sim.heal();
    register_everywhere(&mut sim, "b");
    rejoins(&mut sim, &[0, 1, 2, 4]);
    sim.crash(0);
    sim.crash(1);
    sim.restart(4);
    sim.run_for(Duration::from_secs(7));
    sim.restart(3);
    register_everywhere(&mut sim, "c");
    rejoins(&mut sim, &[2, 3, 4]);
}

/// Discovery beyond seeds without any memory: hosts keep nothing across a crash, every seed is
/// dead, and a restarted node learns the others' addresses only from its discovery source
/// (`Node::set_discovered`, what the facade feeds from DNS or a file).
#[test]
fn discovery_source_leads_a_restarted_node_back_when_seeds_are_dead() {
    println!("seed = {SEED:#x}");
    let mut config = SimConfig::new(4, SEED + 20);
    config.persist_peers = false;
    let mut sim = Sim::new(config);
    let formed = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    );
    assert!(formed.is_some(), "cluster of 4 did not form");
    register_everywhere(&mut sim, "a");
    settle(&mut sim);
    sim.crash(3);
    sim.crash(0);
    sim.crash(1);
    // n2's next life starts with no memory either: neither survivor knows where the other is.
    sim.restart(2);
    sim.run_for(Duration::from_secs(5));
    sim.restart(3);
    sim.run_for(Duration::from_secs(10));
    assert!(
        check::membership_agrees(&sim).is_err(),
        "without memory or discovery, n2 and n3 (seeds dead) cannot know where the other is"
    );
    let everyone: Vec<_> = sim.hosts.iter().map(|h| h.addr).collect();
    sim.with_node(3, |n, now| n.set_discovered(now, &everyone));
    register_everywhere(&mut sim, "b");
    rejoins(&mut sim, &[2, 3]);
}

/// The memory is bounded and ages out: a node remembers the addresses of members it saw, and
/// forgets them `remember_for` after it last saw them live.
#[test]
fn remembered_addresses_age_out() {
    println!("seed = {SEED:#x}");
    let mut config = SimConfig::new(3, SEED + 21);
    config.node.remember_for = Duration::from_secs(20);
    let mut sim = Sim::new(config);
    let formed = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    );
    assert!(formed.is_some(), "cluster of 3 did not form");
    let remembered = |sim: &Sim| -> Vec<std::net::SocketAddr> {
        let mut v: Vec<_> = sim
            .node(0)
            .map(|n| n.remembered().into_iter().map(|r| r.addr).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(remembered(&sim), vec![sim.hosts[1].addr, sim.hosts[2].addr]);
    sim.crash(2);
    sim.run_for(Duration::from_secs(10));
    assert!(
        remembered(&sim).contains(&sim.hosts[2].addr),
        "a dead member's address is still remembered (and announced to) for a while"
    );
    sim.run_for(Duration::from_secs(30));
    assert_eq!(remembered(&sim), vec![sim.hosts[1].addr], "n2 aged out");
}

/// No memory across restarts, every seed dead: the survivor remembers the address where the
/// crashed member lived and keeps announcing there while it sees fewer members than it knew,
/// so the member's next life (which knows only the dead seeds) is found.
#[test]
fn a_survivor_keeps_announcing_to_remembered_addresses() {
    println!("seed = {SEED:#x}");
    let mut config = SimConfig::new(4, SEED + 22);
    config.persist_peers = false;
    let mut sim = Sim::new(config);
    let formed = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    );
    assert!(formed.is_some(), "cluster of 4 did not form");
    sim.crash(3);
    sim.crash(0);
    sim.crash(1);
    sim.run_for(Duration::from_secs(20));
    sim.restart(3);
    register_everywhere(&mut sim, "a");
    rejoins(&mut sim, &[2, 3]);
}
