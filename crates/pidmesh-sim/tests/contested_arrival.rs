//! A unique name's second claim is found wherever it arrives, now that joins report whether an
//! added entry found its key holding another (no second read of the key): in a later delta
//! batch, and in a newcomer's catch-up. Deterministic; each test prints its seed.

use std::time::Duration;

use pidmesh_proto::{Config, Entry, Pid};
use pidmesh_sim::{Sim, SimConfig, check};

const SEED: u64 = 0xC0_7E57;

fn cluster(n: usize, seed: u64) -> Sim {
    println!("seed {seed:#x}");
    let mut cfg = SimConfig::new(n, seed);
    cfg.node = Config::lan();
    Sim::formed(cfg).unwrap_or_else(|| panic!("seed {seed:#x}: the cluster did not form"))
}

/// Nodes 0 and 2 each claim every name for a process of their own; returns node 0's process
/// and, per name, the claim keep-oldest must keep (the canonically first).
fn claim_both(sim: &mut Sim, names: &[String]) -> (Pid, Vec<(String, Entry)>) {
    let a = sim.spawn(0).expect("node 0 runs");
    let b = sim.spawn(2).expect("node 2 runs");
    let claims = names
        .iter()
        .map(|name| {
            let ea = sim.register(0, name, &a).expect("node 0 claims");
            let eb = sim.register(2, name, &b).expect("node 2 claims");
            (name.clone(), first(&ea, &eb))
        })
        .collect();
    (a, claims)
}

fn first(a: &Entry, b: &Entry) -> Entry {
    if a.canonical_cmp(b).is_lt() {
        a.clone()
    } else {
        b.clone()
    }
}

/// Node 1 is down while nodes 0 and 2, cut from each other, claim the same names; then it comes
/// back as a new life, empty, and takes both sides' claims in its catch-up: it must find every
/// name contested and keep the canonically first claim (keep-oldest), before the two claimants
/// ever meet.
#[test]
fn a_newcomer_finds_names_contested_in_its_catch_up() {
    let seed = SEED;
    let mut sim = cluster(3, seed);
    sim.crash(1);
    sim.partition(&[0], &[2]);
    sim.run_for(Duration::from_millis(200));
    let names: Vec<String> = (0..200).map(|i| format!("svc/{i:03}")).collect();
    let (_, claims) = claim_both(&mut sim, &names);
    sim.restart(1);
    let took = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
        s.node(1)
            .is_some_and(|n| n.stats().conflicts_resolved >= names.len() as u64)
    });
    let stats = sim.node(1).map(|n| n.stats()).expect("node 1 runs");
    assert!(
        took.is_some(),
        "seed {seed:#x}: node 1 resolved {} of {} contested names",
        stats.conflicts_resolved,
        names.len()
    );
    println!(
        "resolved after {took:?}; slices applied {}",
        stats.slices_applied
    );
    for (name, winner) in &claims {
        assert_eq!(
            sim.node(1).and_then(|n| n.lookup(name)).as_ref(),
            Some(winner),
            "seed {seed:#x}: {name}"
        );
    }
    heal_and_check(&mut sim, seed);
}

/// Three nodes; node 0 claims names while node 2 is cut off and claims the same names; node 1
/// sees node 0's claims first and node 2's in later batches after the heal. Every name ends with
/// one winner everywhere.
#[test]
fn a_claim_arriving_in_a_later_batch_is_contested() {
    let seed = SEED + 1;
    let mut sim = cluster(3, seed);
    sim.partition(&[0, 1], &[2]);
    let names: Vec<String> = (0..300).map(|i| format!("job/{i:03}")).collect();
    let (a, claims) = claim_both(&mut sim, &names);
    sim.run_for(Duration::from_millis(50));
    assert!(
        names.iter().all(|n| sim
            .node(1)
            .is_some_and(|x| x.lookup(n).is_some_and(|e| e.pid == a))),
        "seed {seed:#x}: node 1 holds node 0's claims alone"
    );
    heal_and_check(&mut sim, seed);
    for (name, winner) in &claims {
        for i in 0..3 {
            assert_eq!(
                sim.node(i).and_then(|n| n.lookup(name)).as_ref(),
                Some(winner),
                "seed {seed:#x}: {name} on node {i}"
            );
        }
    }
}

/// Heals every cut, waits for convergence, settles a second and checks every invariant.
fn heal_and_check(sim: &mut Sim, seed: u64) {
    sim.heal();
    let settled = sim.run_until(
        Duration::from_secs(60),
        Duration::from_millis(20),
        check::converged,
    );
    assert!(
        settled.is_some(),
        "seed {seed:#x}: no convergence after the heal"
    );
    sim.run_for(Duration::from_secs(1));
    if let Err(e) = check::all(sim) {
        panic!("seed {seed:#x}: {}", e.join("\n"));
    }
}
