//! The "owed digest" paths of the digest policy (`OwedDigests` in `node/sync.rs`), one test each.
//!
//! A node that minted no dots of its own sends a digest to a member that comes up only when it
//! owes one: the member showed it dots it lacks (a digest from the member while it was no member
//! here), or sent it deltas while it was no member here, or its entries were forgotten when it
//! went down. Each test hides every other way the member's row could come back quickly (the
//! member's own digests or deltas are dropped, the periodic round is 30 s away), so the row comes
//! back within a few round trips of the member coming up only through the path under test.

use std::time::Duration;

use bytes::Buf;
use foca::{Codec, PostcardCodec};
use pidmesh_proto::{Config, Member, TrafficClass};
use pidmesh_sim::{LinkConfig, Sim, SimConfig, check};
use pidmesh_wire::{Datagram, SyncMsg, SyncV1};

/// X (a seed), O (the observer, which never registers anything) and P (the member whose
/// names O must get).
const X: usize = 0;
const O: usize = 1;
const P: usize = 2;
const NAMES: usize = 50;
/// Within this of O seeing P up, O must hold P's names (a digest, its answer: a few round trips
/// of at most 4 ms, with slack); the periodic round is 30 s away.
const BOUND: Duration = Duration::from_millis(100);

fn config() -> Config {
    let mut c = Config::lan();
    c.sync_interval = Duration::from_secs(30);
    c
}

fn sim(seed: u64) -> Sim {
    println!("seed = {seed:#x}");
    let mut cfg = SimConfig::new(3, seed);
    cfg.seeds = 1;
    cfg.node = config();
    cfg.link = LinkConfig {
        min_latency: Duration::from_millis(1),
        max_latency: Duration::from_millis(2),
        ..LinkConfig::default()
    };
    Sim::new(cfg)
}

/// True if a SWIM datagram reports anything about the node named `about` (or comes from it).
fn mentions(bytes: &[u8], about: &str) -> bool {
    let Ok(Datagram::V1 { swim }) = pidmesh_wire::decode::<Datagram>(bytes) else {
        return false;
    };
    let mut buf = &swim[..];
    let mut codec = PostcardCodec;
    let Ok(header) = Codec::<Member>::decode_header(&mut codec, &mut buf) else {
        return false;
    };
    if header.src.node.name == about {
        return true;
    }
    if buf.remaining() < 2 {
        return false;
    }
    for _ in 0..buf.get_u16() {
        let Ok(m) = Codec::<Member>::decode_member(&mut codec, &mut buf) else {
            return false;
        };
        if m.id().node.name == about {
            return true;
        }
    }
    false
}

fn is_digest(bytes: &[u8]) -> bool {
    matches!(
        pidmesh_wire::decode::<SyncMsg>(bytes),
        Ok(SyncMsg::V1(SyncV1::Digest { .. }))
    )
}

fn is_member_list(bytes: &[u8]) -> bool {
    matches!(
        pidmesh_wire::decode::<SyncMsg>(bytes),
        Ok(SyncMsg::V1(SyncV1::Members(_)))
    )
}

/// What the network drops in a test.
#[derive(Clone, Copy)]
struct Drops {
    /// O learns nothing of P through membership (SWIM packets about P, member lists).
    hide_p_from_o: bool,
    /// P's digests to O.
    p_digests: bool,
    /// P's deltas to O.
    p_deltas: bool,
}

fn set_drops(sim: &mut Sim, d: Drops) {
    sim.set_drop_filter(Some(Box::new(move |from, to, class, bytes| {
        if to != O {
            return false;
        }
        match class {
            TrafficClass::Membership => d.hide_p_from_o && mentions(bytes, "n2"),
            TrafficClass::Sync => {
                (d.hide_p_from_o && is_member_list(bytes))
                    || (d.p_digests && from == P && is_digest(bytes))
            }
            TrafficClass::Delta => d.p_deltas && from == P,
            TrafficClass::Mail => false,
        }
    })));
}

fn sees(sim: &Sim, i: usize, name: &str) -> bool {
    sim.node(i)
        .is_some_and(|x| x.peers().any(|m| m.node.name == name))
}

fn has_names(sim: &Sim, i: usize) -> usize {
    sim.node(i).map_or(0, |x| {
        (0..NAMES)
            .filter(|k| x.lookup(&format!("p/{k:03}")).is_some())
            .count()
    })
}

fn register_on_p(sim: &mut Sim) {
    let pid = sim.spawn(P).expect("P runs");
    for k in 0..NAMES {
        sim.register(P, &format!("p/{k:03}"), &pid)
            .expect("registers");
    }
}

/// Lifts the hiding of P (keeping `keep`), waits for O to see P, then returns how long O took
/// from there to hold all of P's names.
fn reveal_and_time(sim: &mut Sim, seed: u64, keep: Drops) -> Duration {
    set_drops(sim, keep);
    sim.run_until(Duration::from_secs(30), Duration::from_millis(1), |s| {
        sees(s, O, "n2")
    })
    .expect("O sees P");
    let took = sim.run_until(Duration::from_secs(5), Duration::from_millis(1), |s| {
        has_names(s, O) == NAMES
    });
    println!(
        "seed = {seed:#x}: O holds P's names {took:?} after seeing P ({} of {NAMES} now)",
        has_names(sim, O)
    );
    let took = took.unwrap_or_else(|| panic!("seed {seed:#x}: not within 5 s"));
    assert!(took <= BOUND, "seed {seed:#x}: {took:?}");
    took
}

const SEEDS: [u64; 3] = [0x0ed_0001, 0x0ed_0002, 0x0ed_0003];

#[test]
fn a_digest_from_a_node_that_is_no_member_yet_is_returned_once_it_is() {
    for seed in SEEDS {
        let mut sim = sim(seed);
        // P holds names before it meets anyone; O never hears of P, P sends O no delta.
        let hide = Drops {
            hide_p_from_o: true,
            p_digests: false,
            p_deltas: true,
        };
        set_drops(&mut sim, hide);
        register_on_p(&mut sim);
        let answered = |s: &Sim| s.node(O).map_or(0, |x| x.stats().digests_answered);
        sim.run_until(Duration::from_secs(30), Duration::from_millis(5), |s| {
            sees(s, P, "n1") && answered(s) > 0
        })
        .expect("P sees O and O answered a digest");
        sim.run_for(Duration::from_secs(1));
        assert!(!sees(&sim, O, "n2"), "seed {seed:#x}: O met P too early");
        assert_eq!(has_names(&sim, O), 0, "seed {seed:#x}: O got names early");
        // From now on P's digests are dropped too: only O's owed digest brings the names.
        reveal_and_time(
            &mut sim,
            seed,
            Drops {
                hide_p_from_o: false,
                p_digests: true,
                p_deltas: true,
            },
        );
    }
}

#[test]
fn deltas_from_a_node_that_is_no_member_yet_are_pulled_once_it_is() {
    for seed in SEEDS {
        let mut sim = sim(seed);
        // O never hears of P; P's digests to O are dropped, its deltas are not.
        let hide = Drops {
            hide_p_from_o: true,
            p_digests: true,
            p_deltas: false,
        };
        set_drops(&mut sim, hide);
        sim.run_until(Duration::from_secs(30), Duration::from_millis(5), |s| {
            sees(s, P, "n1") && sees(s, O, "n0")
        })
        .expect("P sees O");
        register_on_p(&mut sim);
        sim.run_for(Duration::from_secs(1));
        assert!(!sees(&sim, O, "n2"), "seed {seed:#x}: O met P too early");
        assert_eq!(has_names(&sim, O), 0, "seed {seed:#x}: O got names early");
        reveal_and_time(
            &mut sim,
            seed,
            Drops {
                hide_p_from_o: false,
                p_digests: true,
                p_deltas: true,
            },
        );
    }
}

#[test]
fn entries_forgotten_when_a_member_went_down_are_pulled_when_it_is_back() {
    for seed in SEEDS {
        let mut sim = sim(seed);
        sim.run_until(
            Duration::from_secs(30),
            Duration::from_millis(10),
            check::membership_agrees_ok,
        )
        .expect("forms");
        register_on_p(&mut sim);
        sim.run_until(Duration::from_secs(10), Duration::from_millis(5), |s| {
            has_names(s, O) == NAMES
        })
        .expect("O gets P's names");
        // O is cut off until it holds P down (and forgot its entries), and P holds O down.
        sim.partition(&[O], &[X, P]);
        sim.run_until(Duration::from_secs(60), Duration::from_millis(10), |s| {
            !sees(s, O, "n2") && !sees(s, P, "n1")
        })
        .expect("both sides hold the other down");
        assert_eq!(has_names(&sim, O), 0, "seed {seed:#x}: O kept P's names");
        sim.run_for(Duration::from_secs(2));
        sim.heal();
        // P's digest to O (P sees O come back) is dropped: only O's owed digest is left.
        reveal_and_time(
            &mut sim,
            seed,
            Drops {
                hide_p_from_o: false,
                p_digests: true,
                p_deltas: true,
            },
        );
    }
}
