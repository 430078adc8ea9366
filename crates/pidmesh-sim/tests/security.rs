//! Identity on every message, in the core: a member may speak only for itself, in membership
//! (SWIM) packets and in registry data (deltas, anti-entropy chunks, digests, claims).
//!
//! The simulator hands every message to the node with the sending host's name as the
//! authenticated `peer_name`, as QUIC and TCP+TLS do; these tests inject messages with the name
//! of one member and the identity of another.

use std::time::Duration;

use bytes::Bytes;
use foca::{Codec, Header, Message, PostcardCodec};
use pidmesh_proto::{Hlc, Key, Member, TrafficClass, reject};
use pidmesh_sim::{Sim, SimConfig, check};
use pidmesh_wire::{
    Datagram, DeltaBatch, DeltaMsg, MembersMsg, OriginDelta, SyncMsg, SyncV1, Value, WireEntry,
    encode,
};

const SEED: u64 = 0x5ec0_0010;

fn cluster(n: usize, seed: u64) -> Sim {
    println!("seed = {seed:#x}");
    let mut sim = Sim::new(SimConfig::new(n, seed));
    let took = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    );
    assert!(took.is_some(), "cluster of {n} did not form");
    sim
}

fn member_of(sim: &Sim, i: usize) -> Member {
    let n = sim.node(i).expect("runs");
    // The live view of another node holds the current SWIM identity (with its bump).
    let other = (0..sim.hosts.len()).find(|&j| j != i).expect("two nodes");
    sim.node(other)
        .expect("runs")
        .peers()
        .find(|m| m.node == *n.id())
        .cloned()
        .expect("known")
}

fn swim_packet(src: Member, dst: Member, message: Message<Member>) -> Bytes {
    let mut buf = Vec::new();
    PostcardCodec
        .encode_header(
            &Header {
                src,
                src_incarnation: 0,
                dst,
                message,
            },
            &mut buf,
        )
        .expect("encodes");
    encode(&Datagram::V1 { swim: buf.into() }).expect("encodes")
}

fn rejected(sim: &Sim, i: usize, why: &str) -> u64 {
    sim.node(i)
        .expect("runs")
        .stats()
        .rejected_by
        .get(why)
        .copied()
        .unwrap_or(0)
}

/// A member holding a valid identity for n2 sends SWIM packets that claim to come from n1, at
/// n2's own address with a newer SWIM identity (the "announce it at its own address" attack):
/// dropped before foca, counted, and n1 keeps its address and is never suspected. Without an
/// authenticated name the same packet rewrites n1's address in n0's view, which shows the
/// packet is one foca acts on.
#[test]
fn swim_impersonation_is_dropped_and_counted() {
    let mut sim = cluster(3, SEED);
    let victim = member_of(&sim, 1);
    let attacker_addr = sim.hosts[2].addr;
    let dst = member_of(&sim, 0);
    let forged_src = Member {
        node: victim.node.clone(),
        addr: attacker_addr,
        bump: victim.bump.wrapping_add(7),
    };
    let packets = [
        swim_packet(forged_src.clone(), dst.clone(), Message::Announce),
        swim_packet(forged_src.clone(), dst.clone(), Message::Ping(1)),
        swim_packet(forged_src.clone(), dst.clone(), Message::Gossip),
        // Its own address, a newer identity.
        swim_packet(
            Member {
                addr: victim.addr,
                ..forged_src.clone()
            },
            dst.clone(),
            Message::Announce,
        ),
    ];
    let before = rejected(&sim, 0, reject::SWIM_SENDER_MISMATCH);
    for p in &packets {
        let why = sim.with_node(0, |n, now| {
            n.handle_message(now, attacker_addr, Some("n2"), TrafficClass::Membership, p)
        });
        assert_eq!(why, Some(Some(reject::SWIM_SENDER_MISMATCH)));
    }
    assert_eq!(
        rejected(&sim, 0, reject::SWIM_SENDER_MISMATCH) - before,
        packets.len() as u64
    );
    // Keep running: n1 stays live at its own address on n0, never suspected nor down.
    let mut downs = 0;
    for _ in 0..40 {
        sim.run_for(Duration::from_millis(100));
        let n0 = sim.node(0).expect("runs");
        let view: Vec<(Member, bool)> = n0
            .swim_view()
            .into_iter()
            .filter(|(m, _)| &*m.node.name == "n1")
            .collect();
        assert!(
            view.iter().all(|(m, _)| m.addr == victim.addr),
            "n1 moved in n0's SWIM view: {view:?}"
        );
        if !n0
            .peers()
            .any(|m| m.node == victim.node && m.addr == victim.addr)
        {
            downs += 1;
        }
    }
    assert_eq!(downs, 0, "n1 left n0's live peers");
    let events: Vec<_> = sim.hosts[0]
        .life
        .events
        .iter()
        .filter(|(_, e)| matches!(e, pidmesh_proto::Event::NodeDown(n) if &*n.name == "n1"))
        .collect();
    assert!(events.is_empty(), "n1 declared down on n0: {events:?}");

    // Control: the same packet without an authenticated name reaches foca and moves n1.
    let why = sim.with_node(0, |n, now| {
        n.handle_message(
            now,
            attacker_addr,
            None,
            TrafficClass::Membership,
            &packets[0],
        )
    });
    assert_eq!(why, Some(None), "unauthenticated packets are not checked");
    let moved = sim
        .node(0)
        .expect("runs")
        .swim_view()
        .into_iter()
        .any(|(m, _)| m.node == victim.node && m.addr == attacker_addr);
    assert!(moved, "the forged announce is one foca acts on");
}

/// A causal context claiming every sequence number of an origin up to 2^40: whoever accepts it
/// drops the origin's live entries and ignores its next 2^40 registrations.
fn poison() -> OriginDelta {
    OriginDelta {
        seen: vec![(1, 1 << 40)],
        adds: Vec::new(),
        released: Vec::new(),
    }
}

/// The poisoning from issue 10: a `seen` range `[(1, 2^40)]` for n1, sent by n2 as a delta, a
/// sync chunk and a claim check, and a digest in n1's name: each refused and counted as a
/// foreign origin; n1's entry stays visible on n0 and n1's later registrations reach n0.
#[test]
fn foreign_seen_ranges_cannot_poison_a_victims_context() {
    let mut sim = cluster(3, SEED + 1);
    let pid = sim.spawn(1).expect("runs");
    let entry = sim.register(1, "victim-svc", &pid).expect("registers");
    let ok = sim.run_until(Duration::from_secs(10), Duration::from_millis(20), |s| {
        s.node(0).and_then(|n| n.lookup("victim-svc")).is_some()
    });
    assert!(ok.is_some(), "entry reaches n0");
    let victim = sim.node(1).expect("runs").id().clone();
    let n0_id = sim.node(0).expect("runs").id().clone();
    let from = sim.hosts[2].addr;
    let evil_entry = WireEntry {
        seq: 1 << 39,
        key: Key::name("evil"),
        value: Value {
            pid: 1,
            meta: Bytes::new(),
            at: Hlc::default(),
        },
    };
    let messages: Vec<(TrafficClass, Bytes)> = vec![
        (
            TrafficClass::Delta,
            encode(&DeltaMsg::V1(DeltaBatch {
                origin: victim.clone(),
                delta: poison(),
            }))
            .expect("encodes"),
        ),
        (
            TrafficClass::Delta,
            encode(&DeltaMsg::V1(DeltaBatch {
                origin: victim.clone(),
                delta: OriginDelta {
                    seen: vec![(1 << 39, 1 << 39)],
                    adds: vec![evil_entry],
                    released: Vec::new(),
                },
            }))
            .expect("encodes"),
        ),
        (
            TrafficClass::Sync,
            encode(&SyncMsg::V1(SyncV1::Chunk {
                from: victim.clone(),
                to: n0_id.clone(),
                delta: poison(),
                last: true,
            }))
            .expect("encodes"),
        ),
        (
            TrafficClass::Sync,
            encode(&SyncMsg::V1(SyncV1::ClaimCheck {
                from: victim.clone(),
                to: n0_id.clone(),
                name: "x".into(),
                claim: OriginDelta {
                    adds: vec![WireEntry {
                        seq: 1,
                        key: Key::name("x"),
                        value: Value {
                            pid: 1,
                            meta: Bytes::new(),
                            at: Hlc::default(),
                        },
                    }],
                    ..poison()
                },
                round: 1,
            }))
            .expect("encodes"),
        ),
        (
            TrafficClass::Sync,
            encode(&SyncMsg::V1(SyncV1::Digest {
                from: victim.clone(),
                to: n0_id.clone(),
                have: vec![(1, 1 << 40)],
                own_max: 1 << 40,
                live_count: 0,
                live_hash: 0,
            }))
            .expect("encodes"),
        ),
        (
            TrafficClass::Sync,
            encode(&SyncMsg::V1(SyncV1::Members(MembersMsg::Busy {
                from: victim.clone(),
                to: n0_id.clone(),
            })))
            .expect("encodes"),
        ),
        (
            TrafficClass::Sync,
            encode(&SyncMsg::V1(SyncV1::Members(MembersMsg::List {
                from: victim.clone(),
                to: n0_id.clone(),
                members: Vec::new(),
                reply_wanted: true,
                last: true,
            })))
            .expect("encodes"),
        ),
    ];
    let before = rejected(&sim, 0, reject::FOREIGN_ORIGIN);
    for (class, bytes) in &messages {
        let why = sim.with_node(0, |n, now| {
            n.handle_message(now, from, Some("n2"), *class, bytes)
        });
        assert_eq!(why, Some(Some(reject::FOREIGN_ORIGIN)), "{class:?}");
    }
    assert_eq!(
        rejected(&sim, 0, reject::FOREIGN_ORIGIN) - before,
        messages.len() as u64
    );
    let n0 = sim.node(0).expect("runs");
    assert_eq!(n0.lookup("victim-svc"), Some(entry));
    assert_eq!(n0.lookup("evil"), None);
    let row = n0.registry().context().max(&victim);
    assert!(row < 1 << 20, "n1's context on n0 was advanced to {row}");
    // n1's later registrations still reach everyone.
    let pid2 = sim.spawn(1).expect("runs");
    sim.register(1, "victim-later", &pid2).expect("registers");
    let seen = sim.run_until(Duration::from_secs(5), Duration::from_millis(10), |s| {
        [0, 2]
            .iter()
            .all(|&i| s.node(i).and_then(|n| n.lookup("victim-later")).is_some())
    });
    println!("later registration visible everywhere after {seen:?}");
    assert!(seen.is_some(), "n1's later registration reaches n0 and n2");
}

/// Why transports must authenticate: without an authenticated name, the same forged `seen`
/// range is indistinguishable from n1's own and removes n1's entry (the core can check a
/// proven name, not invent one). The TCP transport therefore refuses to run without TLS, a
/// cluster key or an explicit loopback-only opt-in.
#[test]
fn without_an_authenticated_name_the_core_cannot_tell() {
    let mut sim = cluster(3, SEED + 2);
    let pid = sim.spawn(1).expect("runs");
    sim.register(1, "victim-svc", &pid).expect("registers");
    let ok = sim.run_until(Duration::from_secs(10), Duration::from_millis(20), |s| {
        s.node(0).and_then(|n| n.lookup("victim-svc")).is_some()
    });
    assert!(ok.is_some(), "entry reaches n0");
    let victim = sim.node(1).expect("runs").id().clone();
    let bytes = encode(&DeltaMsg::V1(DeltaBatch {
        origin: victim.clone(),
        delta: poison(),
    }))
    .expect("encodes");
    let from = sim.hosts[2].addr;
    let why = sim.with_node(0, |n, now| {
        n.handle_message(now, from, None, TrafficClass::Delta, &bytes)
    });
    assert_eq!(why, Some(None));
    assert_eq!(sim.node(0).expect("runs").lookup("victim-svc"), None);
}
