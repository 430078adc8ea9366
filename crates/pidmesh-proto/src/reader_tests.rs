//! The borrowed lookup agrees with the owned one: present, absent, conflicted names.

use bytes::Bytes;
use pidmesh_crdt::OrMap;
use pidmesh_wire::{Hlc, Key, NodeId, Value};

use super::RegistryReader;
use crate::resolver::{Resolver, SINGLETON_RUNNING_META, Verdict};

fn value(pid: u64, wall_ms: u64, meta: &[u8]) -> Value {
    Value {
        pid,
        meta: Bytes::copy_from_slice(meta),
        at: Hlc {
            wall_ms,
            logical: 0,
        },
    }
}

/// A registry where `solo` has one entry, `contested` three (from three nodes, the middle one
/// oldest), `claimed` two of which one is a running claim, and a group with two members.
fn registry() -> OrMap<NodeId, Key, Value> {
    let nodes: Vec<NodeId> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| NodeId::new(n, 1))
        .collect();
    let mut map = OrMap::new();
    map.add(&nodes[0], Key::name("solo"), value(1, 100, b"m"));
    map.add(&nodes[0], Key::name("contested"), value(2, 300, b"a"));
    map.add(&nodes[1], Key::name("contested"), value(3, 200, b"b"));
    map.add(&nodes[2], Key::name("contested"), value(4, 400, b"c"));
    map.add(&nodes[0], Key::name("claimed"), value(5, 100, b""));
    let mut running = SINGLETON_RUNNING_META.to_vec();
    running.extend_from_slice(b"app");
    map.add(&nodes[1], Key::name("claimed"), value(6, 500, &running));
    map.add(&nodes[0], Key::group("g"), value(7, 100, b""));
    map.add(&nodes[1], Key::group("g"), value(8, 100, b""));
    map
}

fn resolvers() -> Vec<(&'static str, Resolver)> {
    vec![
        ("keep_oldest", Resolver::keep_oldest()),
        ("keep_newest", Resolver::keep_newest()),
        ("node_priority", Resolver::node_priority(["n3", "n1"])),
        ("kill_both", Resolver::kill_both()),
        (
            "custom_last",
            Resolver::custom(|_, c| Verdict::Keep(c.len() - 1)),
        ),
    ]
}

#[test]
fn borrowed_lookup_gives_the_owned_winner() {
    let map = registry();
    for (label, resolver) in resolvers() {
        let reader = RegistryReader::new(map.reader(), resolver);
        for name in ["solo", "contested", "claimed", "absent", "g"] {
            let owned = reader.lookup(name);
            let borrowed = reader.with_lookup(name, |e| e.map(|e| e.to_entry()));
            assert_eq!(borrowed, owned, "{label}: {name}");
            let same = reader.with_lookup(name, |e| match (e, &owned) {
                (Some(e), Some(o)) => e == *o && e.is_pid(&o.pid) && e.app_meta() == o.app_meta(),
                (None, None) => true,
                _ => false,
            });
            assert!(same, "{label}: {name} compares equal in place");
        }
    }
}

#[test]
fn borrowed_lookup_fields() {
    let map = registry();
    let reader = RegistryReader::new(map.reader(), Resolver::keep_oldest());
    reader.with_lookup("solo", |e| {
        let e = e.expect("present");
        assert_eq!(e.key, &Key::name("solo"));
        assert_eq!(e.node, &NodeId::new("n1", 1));
        assert_eq!(e.local, 1);
        assert_eq!(&e.meta[..], b"m");
        assert_eq!(e.registered_at.wall_ms, 100);
        assert_eq!(e.dot().seq, e.seq);
        assert!(!e.is_running_claim());
    });
    // keep_oldest picks the entry registered at 200 among three.
    let local = reader.with_lookup("contested", |e| e.map(|e| e.local));
    assert_eq!(local, Some(3));
    // A running claim beats an older plain claim whatever the resolver.
    reader.with_lookup("claimed", |e| {
        let e = e.expect("present");
        assert!(e.is_running_claim());
        assert_eq!(e.app_meta(), b"app");
    });
    assert!(reader.with_lookup("absent", |e| e.is_none()));
    // A group is not a name.
    assert!(reader.with_lookup("g", |e| e.is_none()));
    // kill_both leaves a conflicted name without a winner.
    let reader = RegistryReader::new(map.reader(), Resolver::kill_both());
    assert!(reader.with_lookup("contested", |e| e.is_none()));
    assert!(reader.with_lookup("solo", |e| e.is_some()));
}
