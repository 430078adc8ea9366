//! Strict registration over the in-memory transport: held after a quorum vouches, refused
//! while another node holds the name or no quorum is reachable, and across a partition the
//! minority holder is told it lost the name before the majority side can take it.

mod common;

use std::time::Duration;

use common::{LIMIT, cluster, eventually};
use pidmesh::{Registry, Resolver, StopReason, StrictError};
use pidmesh_transport::MemNetwork;
use tokio::time::Instant;

const NAME: &str = "ledger-writer";

fn addrs(regs: &[Registry]) -> Vec<std::net::SocketAddr> {
    regs.iter().map(Registry::local_addr).collect()
}

#[tokio::test]
async fn strict_registration_needs_a_quorum_and_excludes_others() {
    let seed = 0x57_1c01;
    println!("seed = {seed:#x}");
    let net = MemNetwork::new(seed);
    let regs = cluster(&net, 3, Resolver::keep_oldest()).await;
    // Wait out the start-up promise window (a fresh node neither vouches nor counts itself
    // for a lease until an earlier life's promises could have run out).
    tokio::time::sleep(pidmesh::Config::local().singleton_promise()).await;

    let (p0, _m0) = regs[0].spawn_mailbox().expect("running");
    let mut latencies = Vec::new();
    let mut held = None;
    // Latency of a free name: one check round trip to the peers. Measured a few times on
    // fresh names; the last one is kept as the holder.
    for i in 0..5 {
        let name = format!("{NAME}-{i}");
        let t = Instant::now();
        let reg = regs[0]
            .register_strict(&name, &p0, 2, LIMIT)
            .await
            .expect("quorum of 2 out of 3 is up");
        latencies.push(t.elapsed());
        assert!(reg.is_held());
        assert!(reg.entry().is_running_claim());
        held = Some((name, reg));
    }
    println!("strict registration latency (3 nodes, quorum 2, in-memory): {latencies:?}");
    let (name, reg) = held.expect("held");

    // Another node cannot take it while it is held (once the claim reached it).
    assert!(
        eventually(LIMIT, || regs[1].lookup(&name).is_some())
            .await
            .is_some()
    );
    let (p1, _m1) = regs[1].spawn_mailbox().expect("running");
    let refused = regs[1]
        .register_strict(&name, &p1, 2, Duration::from_millis(500))
        .await;
    assert!(
        matches!(refused, Err(StrictError::AlreadyRegistered(ref e)) if e.pid == p0),
        "{refused:?}"
    );
    // Released on purpose: the other node gets it.
    drop(reg);
    let t = Instant::now();
    let taken = regs[1]
        .register_strict(&name, &p1, 2, LIMIT)
        .await
        .expect("free again");
    println!("taken over after a release in {:?}", t.elapsed());
    assert!(taken.is_held());

    // A quorum nobody can reach fails, and leaves no claim behind.
    let (p2, _m2) = regs[2].spawn_mailbox().expect("running");
    let r = regs[2]
        .register_strict("nobody", &p2, 4, Duration::from_millis(500))
        .await;
    assert!(
        matches!(r, Err(StrictError::NoQuorum { seen: 3, quorum: 4 })),
        "{r:?}"
    );
    assert!(regs[2].lookup("nobody").is_none());
    assert!(matches!(
        regs[2].register_strict("q0", &p2, 0, LIMIT).await,
        Err(StrictError::InvalidQuorum)
    ));

    // The same name in a scope is another strict registration.
    let scoped = regs[2]
        .scope("tenant-a")
        .expect("valid")
        .register_strict(&name, &p2, 2, LIMIT)
        .await
        .expect("scoped name is free");
    assert!(scoped.is_held() && taken.is_held());
    assert_eq!(scoped.entry().key.scope(), Some("tenant-a"));

    // The holder's process ends: the guard is told.
    let (p3, m3) = regs[2].spawn_mailbox().expect("running");
    let mut short = regs[2]
        .register_strict("short-lived", &p3, 2, LIMIT)
        .await
        .expect("held");
    drop(m3);
    let lost = tokio::time::timeout(LIMIT, short.lost())
        .await
        .expect("told");
    assert_eq!(lost.reason, StopReason::LostName);
    assert!(!short.is_held());
    assert!(
        eventually(LIMIT, || regs[0].lookup("short-lived").is_none())
            .await
            .is_some()
    );
}

#[tokio::test]
async fn partition_minority_holder_loses_before_majority_takes_it() {
    let seed = 0x57_1c02;
    println!("seed = {seed:#x}");
    let net = MemNetwork::new(seed);
    let regs = cluster(&net, 5, Resolver::keep_oldest()).await;
    tokio::time::sleep(pidmesh::Config::local().singleton_promise()).await;
    let (p0, _m0) = regs[0].spawn_mailbox().expect("running");
    let mut holder = regs[0]
        .register_strict(NAME, &p0, 3, LIMIT)
        .await
        .expect("held");

    // Cut the holder off with one other node: the minority.
    let a = addrs(&regs);
    net.partition(&a[..2], &a[2..]);
    let cut = Instant::now();

    // The majority side keeps trying; it must not hold the name before the holder was told.
    let majority = regs[2].clone();
    let contender = tokio::spawn(async move {
        let (p2, m2) = majority.spawn_mailbox().expect("running");
        loop {
            match majority
                .register_strict(NAME, &p2, 3, Duration::from_millis(500))
                .await
            {
                Ok(reg) => return (Instant::now(), reg, m2),
                Err(StrictError::Stopped(_)) => panic!("stopped"),
                Err(_) => {}
            }
        }
    });
    let lost = tokio::time::timeout(LIMIT, holder.lost())
        .await
        .expect("the minority holder is told");
    let lost_at = Instant::now();
    println!(
        "minority holder lost the name after {:?} ({:?})",
        lost_at - cut,
        lost.reason
    );
    assert_eq!(lost.reason, StopReason::LostQuorum);
    assert!(!holder.is_held());

    // The minority cannot take it back.
    let (p1, _m1) = regs[1].spawn_mailbox().expect("running");
    let r = regs[1]
        .register_strict(NAME, &p1, 3, Duration::from_millis(500))
        .await;
    assert!(r.is_err(), "minority node took a strict name: {r:?}");

    let (taken_at, taken, _m2) = tokio::time::timeout(LIMIT, contender)
        .await
        .expect("the majority takes it")
        .expect("contender task");
    println!(
        "majority holder after {:?} (the old holder stopped {:?} earlier)",
        taken_at - cut,
        taken_at.saturating_duration_since(lost_at)
    );
    assert!(
        taken_at >= lost_at,
        "two holders at once: the majority held the name before the minority was told"
    );
    assert!(taken.is_held());

    // Heal: never two holders. The majority's holder usually keeps the name; it may lose it
    // when the heal makes its node renew its SWIM identity (the minority's stale "down"
    // verdicts), which ends the lease: then nobody holds it, and its guard says so.
    net.heal();
    let agreed = eventually(LIMIT, || {
        let views: Vec<_> = regs.iter().map(|r| r.lookup(NAME).map(|e| e.pid)).collect();
        regs.iter().all(|r| r.members().len() == 5) && views.windows(2).all(|w| w[0] == w[1])
    })
    .await;
    assert!(
        agreed.is_some(),
        "nodes disagree on the holder after the heal"
    );
    tokio::time::sleep(pidmesh::Config::local().singleton_promise()).await;
    assert!(!holder.is_held(), "the old minority holder holds again");
    let now = regs[0].lookup(NAME);
    println!(
        "after heal: holder {:?}, majority guard held: {}",
        now.as_ref().map(|e| &e.pid),
        taken.is_held()
    );
    match now {
        Some(e) => {
            assert_eq!(e.pid, taken.entry().pid, "someone else holds it");
            assert!(taken.is_held());
        }
        None => {
            let mut taken = taken;
            let l = tokio::time::timeout(LIMIT, taken.lost())
                .await
                .expect("the majority holder was told");
            println!("majority holder lost the name at the heal: {l:?}");
        }
    }
}
