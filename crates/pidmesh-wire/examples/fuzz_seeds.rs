//! Writes the generated part of the fuzz seed corpus: small, real encodings of every message
//! shape, to `fuzz/seeds/<target>/gen-<what>`.
//!
//! Run: `cargo run -p pidmesh-wire --example fuzz_seeds`. Seeds minimized from fuzz runs live
//! next to these as `min-*` files and are not touched. See `fuzz/README.md`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use pidmesh_wire::{
    Datagram, DeltaBatch, DeltaMsg, Hlc, Key, MemberRecord, MembersMsg, NodeId, OriginDelta,
    SyncMsg, SyncV1, Value, WireEntry, WireMessage, encode,
};

fn entry(seq: u64, key: Key, pid: u64, meta: &'static [u8]) -> WireEntry {
    WireEntry {
        seq,
        key,
        value: Value {
            pid,
            meta: Bytes::from_static(meta),
            at: Hlc {
                wall_ms: 1_000u64.saturating_add(pid),
                logical: 0,
            },
        },
    }
}

/// The deltas worth seeding: origins "a"#1 and "b"#1 are the actors of the fuzz target's
/// pre-filled replica, so these exercise re-delivery, removal of live entries, concurrent adds
/// and out-of-order dots.
fn deltas() -> Vec<(&'static str, DeltaBatch)> {
    let a = NodeId::new("a", 1);
    let b = NodeId::new("b", 1);
    let c = NodeId::new("c", 7);
    let batch = |origin: &NodeId, seen: Vec<(u64, u64)>, adds: Vec<WireEntry>| DeltaBatch {
        origin: origin.clone(),
        delta: OriginDelta {
            seen,
            adds,
            ..OriginDelta::default()
        },
    };
    vec![
        ("empty", batch(&c, vec![], vec![])),
        (
            "new-origin-add",
            batch(
                &c,
                vec![(1, 1)],
                vec![entry(1, Key::name("billing"), 5, b"")],
            ),
        ),
        (
            "new-origin-group",
            batch(
                &c,
                vec![(1, 2)],
                vec![
                    entry(1, Key::group("workers"), 1, b"eu"),
                    entry(2, Key::group("workers"), 2, b"us"),
                ],
            ),
        ),
        // Re-delivery of a's live entries, exactly as the replica holds them.
        (
            "redeliver-a1",
            batch(
                &a,
                vec![(1, 1)],
                vec![entry(1, Key::name("billing"), 1, b"")],
            ),
        ),
        // "a removed a:1 and a:4": the range covers them, no entry carries them.
        ("remove-a1-a4", batch(&a, vec![(1, 1), (4, 5)], vec![])),
        // A later add of a, with a gap (out of order: 5 and 6 missing).
        (
            "a-gap",
            batch(&a, vec![(7, 7)], vec![entry(7, Key::name("gap"), 7, b"m")]),
        ),
        // A dot the replica saw removed (a:2) carried again: must stay removed.
        (
            "resurrect-a2",
            batch(
                &a,
                vec![(2, 2)],
                vec![entry(2, Key::group("workers"), 2, b"")],
            ),
        ),
        // b replaces b:1 by b:3 (a meta update), ranges overlapping and unsorted.
        (
            "b-replace",
            batch(
                &b,
                vec![(3, 3), (1, 1), (1, 3)],
                vec![entry(3, Key::name("billing"), 10, b"v2")],
            ),
        ),
        // Two entries with the same dot (a forgery an honest origin never sends).
        (
            "dup-dot",
            batch(
                &c,
                vec![(1, 1)],
                vec![
                    entry(1, Key::name("x"), 1, b""),
                    entry(1, Key::name("y"), 2, b""),
                ],
            ),
        ),
        // Same dot as the replica's a:1, other content (also a forgery).
        (
            "forged-a1",
            batch(
                &a,
                vec![(1, 1)],
                vec![entry(1, Key::name("other"), 99, b"")],
            ),
        ),
        (
            "huge-seq",
            batch(
                &c,
                vec![(u64::MAX - 1, u64::MAX)],
                vec![entry(u64::MAX, Key::name("max"), u64::MAX, b"")],
            ),
        ),
        (
            "unicode-name",
            batch(
                &c,
                vec![(1, 1)],
                vec![entry(1, Key::name("名前/ü"), 1, b"\xff\x00")],
            ),
        ),
        // b lost b:1 in a conflict: removed, and announced as released.
        (
            "b-released",
            DeltaBatch {
                origin: b.clone(),
                delta: OriginDelta {
                    seen: vec![(1, 1), (3, 3)],
                    adds: vec![],
                    released: vec![entry(1, Key::name("billing"), 10, b"")],
                },
            },
        ),
    ]
}

fn sync_msgs() -> Vec<(&'static str, SyncMsg)> {
    let a = NodeId::new("a", 1);
    let b = NodeId::new("b", 1);
    let chunk = |delta: OriginDelta, last: bool| {
        SyncMsg::V1(SyncV1::Chunk {
            from: a.clone(),
            to: b.clone(),
            delta,
            last,
        })
    };
    vec![
        (
            "digest-empty",
            SyncMsg::V1(SyncV1::Digest {
                from: a.clone(),
                to: b.clone(),
                have: vec![],
                own_max: 0,
                live_count: 0,
                live_hash: 0,
            }),
        ),
        (
            "digest-ranges",
            SyncMsg::V1(SyncV1::Digest {
                from: a.clone(),
                to: b.clone(),
                have: vec![(1, 10), (12, 300)],
                own_max: 1 << 40,
                live_count: 42,
                live_hash: u64::MAX,
            }),
        ),
        ("chunk-empty-last", chunk(OriginDelta::default(), true)),
        (
            "chunk-entries",
            chunk(
                OriginDelta {
                    seen: vec![(1, 4)],
                    adds: vec![
                        entry(1, Key::name("billing"), 1, b"x"),
                        entry(4, Key::group("g"), 2, b""),
                    ],
                    released: vec![entry(3, Key::name("lost"), 3, b"")],
                },
                false,
            ),
        ),
        (
            "members-list",
            SyncMsg::V1(SyncV1::Members(MembersMsg::List {
                from: a.clone(),
                to: b.clone(),
                members: vec![
                    MemberRecord {
                        node: NodeId::new("n1", 7),
                        addr: std::net::SocketAddr::from(([10, 0, 0, 1], 7946)),
                        bump: 0,
                        incarnation: 3,
                    },
                    MemberRecord {
                        node: NodeId::new("n2", 1 << 40),
                        addr: std::net::SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 9)),
                        bump: u16::MAX,
                        incarnation: 0,
                    },
                ],
                reply_wanted: true,
                last: true,
            })),
        ),
        (
            "members-busy",
            SyncMsg::V1(SyncV1::Members(MembersMsg::Busy {
                from: a.clone(),
                to: b.clone(),
            })),
        ),
    ]
}

fn datagrams() -> Vec<(&'static str, Datagram)> {
    vec![
        ("empty", Datagram::V1 { swim: Bytes::new() }),
        (
            "small",
            Datagram::V1 {
                swim: Bytes::from_static(&[1, 2, 3]),
            },
        ),
        (
            "127",
            Datagram::V1 {
                swim: Bytes::from(vec![0xab; 127]),
            },
        ),
        (
            "128",
            Datagram::V1 {
                swim: Bytes::from(vec![0xcd; 128]),
            },
        ),
        // The largest swim payload that fits the class limit (2 bytes of length prefix + tag).
        (
            "max",
            Datagram::V1 {
                swim: Bytes::from(vec![0x5a; pidmesh_wire::MAX_DATAGRAM_LEN - 3]),
            },
        ),
    ]
}

fn write<M: WireMessage>(dir: &Path, name: &str, msg: &M) -> std::io::Result<()> {
    let bytes = encode(msg).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(format!("gen-{name}")), &bytes)
}

fn main() -> std::io::Result<()> {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let dir = |t: &str| -> std::io::Result<PathBuf> {
        let d = seeds.join(t);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    let (datagram, delta, join, sync) = (
        dir("decode_datagram")?,
        dir("decode_delta")?,
        dir("delta_join")?,
        dir("decode_sync")?,
    );
    for (name, m) in datagrams() {
        write(&datagram, name, &m)?;
    }
    for (name, b) in deltas() {
        let m = DeltaMsg::V1(b);
        write(&join, name, &m)?;
        if matches!(
            name,
            "empty" | "new-origin-group" | "b-replace" | "huge-seq" | "unicode-name" | "b-released"
        ) {
            write(&delta, name, &m)?;
        }
    }
    for (name, m) in sync_msgs() {
        write(&sync, name, &m)?;
    }
    println!("seeds written under {}", seeds.display());
    Ok(())
}
