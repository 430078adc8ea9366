//! The properties the fuzz targets check, in one file shared by the fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and the stable seed replay test
//! (`crates/pidmesh-wire/tests/fuzz_seeds.rs`), both through `#[path]`, so CI replays the seeds
//! through exactly the checks the fuzzer runs.
//!
//! Every check returns `true` if the input decoded (and so was checked beyond "no panic"), and
//! panics when a property is broken.

// Each includer uses only some of these functions.
#![allow(dead_code)]

use std::fmt::Debug;

use pidmesh_crdt::{CausalContext, Delta, Dot, DotSet, OrMap, Slot};
use pidmesh_wire::{DeltaBatch, DeltaMsg, Hlc, Key, NodeId, Value, WireMessage, decode, encode};

/// The replica type pidmesh runs.
pub(crate) type Map = OrMap<NodeId, Key, Value>;

/// The fuzz targets, by name: the seed directories are `fuzz/seeds/<name>/`.
pub(crate) const TARGETS: [&str; 4] = [
    "decode_datagram",
    "decode_delta",
    "decode_sync",
    "delta_join",
];

/// The targets that drive a whole node (`src/node_checks.rs`), replayed by
/// `crates/pidmesh-proto/tests/fuzz_seeds.rs`.
pub(crate) const NODE_TARGETS: [&str; 2] = ["swim_datagram", "node_messages"];

/// Runs the check of the fuzz target `target` on `data`; `None` for an unknown target.
pub(crate) fn check(target: &str, data: &[u8]) -> Option<bool> {
    Some(match target {
        "decode_datagram" => roundtrip::<pidmesh_wire::Datagram>(data).is_some(),
        "decode_delta" => roundtrip::<DeltaMsg>(data).is_some(),
        "decode_sync" => roundtrip::<pidmesh_wire::SyncMsg>(data).is_some(),
        "delta_join" => delta_join(data),
        _ => return None,
    })
}

/// Decodes `data` as an `M`; if that succeeds, checks that the message re-encodes (within its
/// class limit and in at most as many bytes: the encoder is canonical, the decoder may accept
/// over-long varints), that the re-encoding decodes to an equal message, and that encoding is
/// deterministic. Returns the message.
pub(crate) fn roundtrip<M: WireMessage + PartialEq + Debug>(data: &[u8]) -> Option<M> {
    let msg = decode::<M>(data).ok()?;
    let bytes = encode(&msg).expect("a decoded message re-encodes");
    assert!(
        bytes.len() <= data.len(),
        "re-encoding grew from {} to {} bytes: {msg:?}",
        data.len(),
        bytes.len()
    );
    let again = decode::<M>(&bytes).expect("a re-encoded message decodes");
    assert_eq!(again, msg, "decode(encode(m)) != m");
    let bytes2 = encode(&again).expect("a decoded message re-encodes");
    assert_eq!(bytes, bytes2, "encoding is not deterministic");
    Some(msg)
}

/// The CRDT delta a `DeltaBatch` stands for: the origin's row is `seen`, every entry is an add
/// with the dot `(origin, seq)`.
pub(crate) fn to_crdt_delta(batch: &DeltaBatch) -> Delta<NodeId, Key, Value> {
    let mut ctx = CausalContext::new();
    ctx.set_row(
        batch.origin.clone(),
        DotSet::from_ranges(batch.delta.seen.iter().copied()),
    );
    let adds = batch
        .delta
        .adds
        .iter()
        .map(|e| {
            (
                e.key.clone(),
                Slot {
                    dot: Dot::new(batch.origin.clone(), e.seq),
                    value: e.value.clone(),
                },
            )
        })
        .collect();
    Delta { ctx, adds }
}

/// The actors of the pre-filled replica; seeds use them as origins so that joins hit
/// existing entries and removals.
pub(crate) fn actors() -> [NodeId; 2] {
    [NodeId::new("a", 1), NodeId::new("b", 1)]
}

fn value(pid: u64) -> Value {
    Value {
        pid,
        meta: bytes::Bytes::new(),
        at: Hlc {
            wall_ms: 1_000 + pid,
            logical: 0,
        },
    }
}

/// A replica with a few entries of two actors: a conflict on a unique name, a group with two
/// members, and a removed entry (a dot in the context with no entry).
///
/// Dots: `a:1` name:billing, `a:2` group:workers, `a:3` removal of `a:2`, `a:4` name:cache;
/// `b:1` name:billing, `b:2` group:workers.
pub(crate) fn prefilled() -> Map {
    let [a, b] = actors();
    let mut m = Map::new();
    m.add(&a, Key::name("billing"), value(1));
    let d = m.add(&a, Key::group("workers"), value(2));
    let dot = d.adds[0].1.dot.clone();
    m.remove(&a, &[dot]);
    m.add(&a, Key::name("cache"), value(3));
    m.add(&b, Key::name("billing"), value(10));
    m.add(&b, Key::group("workers"), value(11));
    m
}

/// Internal consistency of a replica: `len()` counts the entries, every entry's dot is in the
/// context and is found by `get_dot`, and no dot is live twice.
pub(crate) fn assert_invariants(m: &Map) {
    let mut count = 0;
    let mut dots = std::collections::HashSet::new();
    for (key, slots) in m.iter() {
        assert!(!slots.is_empty(), "key {key:?} is present with no entry");
        for s in slots {
            count += 1;
            assert!(
                m.context().contains(&s.dot),
                "live dot {:?} is not in the context",
                s.dot
            );
            assert!(dots.insert(s.dot.clone()), "dot {:?} is live twice", s.dot);
            let (k, found) = m.get_dot(&s.dot).expect("every live dot is indexed");
            assert_eq!(
                (&k, &found),
                (&key, &s),
                "the index disagrees with the store"
            );
        }
    }
    assert_eq!(m.len(), count, "len() does not count the entries");
    let per_actor: usize = m.context().rows().map(|(a, _)| m.actor_len(a)).sum();
    assert_eq!(per_actor, count, "an entry's actor has no context row");
}

/// Decodes `data` as a `DeltaMsg`; if valid, joins it into [`prefilled`] and checks: the
/// invariants, that the join took the delta's context, idempotence, that the whole state
/// survives a trip through `to_delta`, and (for deltas that agree with the replica on shared
/// dots) that the join commutes.
pub(crate) fn delta_join(data: &[u8]) -> bool {
    let Ok(DeltaMsg::V1(batch)) = decode::<DeltaMsg>(data) else {
        return false;
    };
    let delta = to_crdt_delta(&batch);
    let base = prefilled();
    let mut m = base.clone();
    m.join(&delta);
    assert_invariants(&m);
    assert!(
        m.context().includes(&delta.ctx),
        "join lost dots of the delta's context"
    );
    assert!(
        m.context().includes(base.context()),
        "join lost dots of the replica's context"
    );

    // Idempotent: the same delta again changes nothing.
    let once = m.canonical();
    let report = m.join(&delta);
    assert!(
        report.is_empty(),
        "joining the same delta twice changed entries: {report:?}"
    );
    assert_eq!(m.canonical(), once, "join is not idempotent");

    // The whole state as a delta rebuilds an equal replica.
    let mut fresh = Map::new();
    fresh.join(&m.to_delta());
    assert_invariants(&fresh);
    assert_eq!(
        fresh.canonical(),
        once,
        "to_delta() into a fresh map differs"
    );

    // Commutative: delta-then-state equals state-then-delta. Dots are unique by construction (an
    // origin never issues one twice), so this only holds for deltas that carry the same content
    // as the replica under the dots both hold live.
    let consistent = delta.adds.iter().all(|(k, s)| match base.get_dot(&s.dot) {
        Some((bk, bs)) => bk == *k && bs == *s,
        None => true,
    });
    if consistent {
        let mut other = Map::new();
        other.join(&delta);
        other.join(&base.to_delta());
        assert_invariants(&other);
        assert_eq!(other.canonical(), once, "join does not commute");
    }
    true
}
