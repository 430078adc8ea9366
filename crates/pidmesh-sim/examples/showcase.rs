//! The simulator's showcase: a five-node cluster in virtual time splits in two, both sides
//! claim the same unique name, the partition heals, and the resolver settles it the same way on
//! every node while the loser is told. Deterministic: the seed is printed and fixed.
//!
//! `cargo run --release -p pidmesh-sim --example showcase [-- <seed>]`

use std::time::Duration;

use pidmesh_proto::{Event, Reason};
use pidmesh_sim::{Sim, SimConfig, check};

fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut sim = Sim::new(SimConfig::new(5, seed));
    sim.trace = true;
    let t = |sim: &Sim| format!("{:>8.1?}", sim.elapsed());
    println!(
        "pidmesh simulator showcase: 5 nodes, seed {seed}, keep-oldest resolver, `local` timers\n"
    );

    let formed = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(10),
        check::membership_agrees_ok,
    );
    println!(
        "{} cluster formed (all 5 see each other) after {formed:?}",
        t(&sim)
    );

    let Some(api) = sim.spawn(0) else { return };
    sim.register(0, "api", &api);
    for i in 0..5 {
        if let Some(p) = sim.spawn(i) {
            sim.join(i, "workers", &p);
        }
    }
    let seen = sim.run_until(Duration::from_secs(5), Duration::from_millis(1), |s| {
        (0..5).all(|i| {
            s.node(i)
                .is_some_and(|n| n.lookup("api").is_some() && n.members_of("workers").len() == 5)
        })
    });
    println!(
        "{} n0 registered `api`, every node joined `workers`; visible everywhere after {seen:?}",
        t(&sim)
    );

    println!("{} --- partition: {{n0, n1}} | {{n2, n3, n4}} ---", t(&sim));
    sim.partition(&[0, 1], &[2, 3, 4]);
    let split = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
        s.node(0).is_some_and(|n| n.peers().count() == 1)
            && s.node(4).is_some_and(|n| n.peers().count() == 2)
    });
    println!(
        "{} each side declared the other down after {split:?}; n4 now sees `api` = {:?}, {} workers",
        t(&sim),
        sim.node(4).and_then(|n| n.lookup("api")).map(|e| e.pid),
        sim.node(4).map_or(0, |n| n.members_of("workers").len())
    );

    let Some(a) = sim.spawn(1) else { return };
    let Some(b) = sim.spawn(3) else { return };
    let ea = sim.register(1, "scheduler", &a);
    println!(
        "{} n1 registers `scheduler` -> {:?}",
        t(&sim),
        ea.map(|e| e.pid)
    );
    sim.run_for(Duration::from_millis(20));
    let eb = sim.register(3, "scheduler", &b);
    println!(
        "{} n3 registers `scheduler` -> {:?} (the other side cannot see n1's claim)",
        t(&sim),
        eb.map(|e| e.pid)
    );
    sim.run_for(Duration::from_secs(1));

    println!("{} --- heal ---", t(&sim));
    sim.heal();
    let healed = sim.elapsed();
    let one = sim.run_until(Duration::from_secs(60), Duration::from_millis(5), |s| {
        check::converged(s) && check::one_winner(s).is_ok()
    });
    println!(
        "{} one winner for `scheduler` on every node after {one:?}",
        t(&sim)
    );
    for i in 0..5 {
        let w = sim
            .node(i)
            .and_then(|n| n.lookup("scheduler"))
            .map(|e| e.pid.to_string());
        println!(
            "           n{i}: lookup(\"scheduler\") = {}",
            w.unwrap_or_else(|| "none".into())
        );
    }
    for (i, host) in sim.hosts.iter().enumerate() {
        for (at, e) in &host.life.events {
            match e {
                Event::Unregistered {
                    entry,
                    reason: Reason::Conflict,
                } if entry.pid.node == *host.node.as_ref().map_or(&entry.pid.node, |n| n.id()) => {
                    println!(
                        "{:>8.1?} n{i}: our {} lost `{}` (Unregistered {{ reason: Conflict }})",
                        at, entry.pid, entry.key.name
                    );
                }
                Event::ConflictResolved {
                    key,
                    winner,
                    losers,
                } if i == 4 && *at >= healed => {
                    println!(
                        "{:>8.1?} n{i}: ConflictResolved {{ {}: winner {:?}, losers {:?} }}",
                        at,
                        key.name,
                        winner.as_ref().map(|w| w.pid.to_string()),
                        losers.iter().map(|l| l.pid.to_string()).collect::<Vec<_>>()
                    );
                }
                _ => {}
            }
        }
    }
    match check::all(&sim) {
        Ok(()) => println!(
            "\nall invariants hold: equal state, membership agrees, no zombies, one winner, losers notified"
        ),
        Err(e) => {
            println!("\nINVARIANT VIOLATED:\n  {}", e.join("\n  "));
            std::process::exit(1);
        }
    }
}
