//! `OrMap::add_dot` is `OrMap::add` without the delta: same state on the adding replica, and
//! the `(key, slot)` a caller builds from its dot, shipped in a delta of its own, leaves a
//! receiving replica in the same state as the delta `add` returns.

use pidmesh_crdt::{Delta, OrMap, Slot};

type Map = OrMap<u8, u16, u32>;

#[test]
fn add_dot_matches_add_on_both_replicas() {
    let (mut by_add, mut by_dot) = (Map::default(), Map::default());
    let (mut recv_add, mut recv_dot) = (Map::default(), Map::default());
    let mut shipped = Delta::default();
    for i in 0..500u16 {
        // Some keys twice, so concurrent-looking slots under one key are covered too.
        let key = i % 300;
        let value = u32::from(i) * 7;
        let delta = by_add.add(&1, key, value);
        recv_add.join(&delta);
        let dot = by_dot.add_dot(&1, key, value);
        assert_eq!(dot, delta.adds[0].1.dot, "add {i}: both mint the same dot");
        shipped.ctx.insert(&dot);
        shipped.adds.push((key, Slot { dot, value }));
    }
    recv_dot.join(&shipped);
    assert_eq!(by_add.canonical(), by_dot.canonical());
    assert_eq!(recv_add.canonical(), recv_dot.canonical());
    assert_eq!(by_dot.canonical(), recv_dot.canonical());
    assert_eq!(by_dot.len(), 500);
}
