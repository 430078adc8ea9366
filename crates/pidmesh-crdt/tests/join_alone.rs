//! What a join and an add say about a key's other entries (`Added::alone`, `add_dot_alone`,
//! `add_dot_if_vacant`) matches the map: callers use it instead of reading the key again, to
//! find the unique names that gained a second claim, so it must be exact.
//!
//! Random histories of adds and removes on three replicas (a few keys, so keys often hold
//! several entries), deltas joined in random order, in batches; proptest prints the failing case.

use std::collections::BTreeMap;

use pidmesh_crdt::{Delta, OrMap};
use proptest::prelude::*;

type Map = OrMap<u8, u8, u32>;
type D = Delta<u8, u8, u32>;

#[derive(Debug, Clone)]
enum Op {
    /// Replica `r` adds under `key`.
    Add { r: u8, key: u8 },
    /// Replica `r` adds under `key` only if it holds no entry there.
    AddIfVacant { r: u8, key: u8 },
    /// Replica `r` removes the `pick`-th entry it sees.
    Remove { r: u8, pick: usize },
    /// Replica `to` joins the merge of the deltas `from .. from + len` (mod count).
    Join { to: u8, from: usize, len: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 0u8..5).prop_map(|(r, key)| Op::Add { r, key }),
        2 => (0u8..3, 0u8..5).prop_map(|(r, key)| Op::AddIfVacant { r, key }),
        2 => (0u8..3, any::<usize>()).prop_map(|(r, pick)| Op::Remove { r, pick }),
        3 => (0u8..3, any::<usize>(), 1usize..6).prop_map(|(to, from, len)| Op::Join { to, from, len }),
    ]
}

fn counts(m: &Map) -> BTreeMap<u8, usize> {
    m.iter().map(|(k, slots)| (k, slots.len())).collect()
}

proptest! {
    #[test]
    fn alone_says_whether_the_key_held_another_entry(ops in proptest::collection::vec(op(), 1..120)) {
        let mut replicas = [Map::new(), Map::new(), Map::new()];
        let mut deltas: Vec<D> = Vec::new();
        let mut value = 0u32;
        for op in ops {
            value += 1;
            match op {
                Op::Add { r, key } => {
                    let m = &mut replicas[usize::from(r)];
                    let held = m.read(&key, |slots| slots.count_hint());
                    let (dot, alone) = m.add_dot_alone(&r, key, value);
                    prop_assert_eq!(alone, held == 0);
                    let mut d = D::default();
                    d.ctx.insert(&dot);
                    d.adds.push((key, pidmesh_crdt::Slot { dot, value }));
                    deltas.push(d);
                }
                Op::AddIfVacant { r, key } => {
                    let m = &mut replicas[usize::from(r)];
                    let before = m.canonical();
                    let held = m.read(&key, |slots| slots.count_hint());
                    let got = m.add_dot_if_vacant(&r, &key, || value);
                    if held == 0 {
                        let (dot, v) = got.expect("a vacant key takes the add");
                        prop_assert_eq!(v, value);
                        prop_assert_eq!(m.get_dot(&dot).map(|(k, s)| (k, s.value)), Some((key, value)));
                        // Same dot as a plain add would have minted: the next of its actor.
                        prop_assert_eq!(dot.seq, before.1.max(&r) + 1);
                        let mut d = D::default();
                        d.ctx.insert(&dot);
                        d.adds.push((key, pidmesh_crdt::Slot { dot, value }));
                        deltas.push(d);
                    } else {
                        prop_assert!(got.is_none());
                        prop_assert_eq!(m.canonical(), before, "nothing changed, no dot minted");
                    }
                }
                Op::Remove { r, pick } => {
                    let m = &mut replicas[usize::from(r)];
                    let seen: Vec<_> = m.iter().flat_map(|(_, s)| s.into_iter().map(|s| s.dot)).collect();
                    if seen.is_empty() {
                        continue;
                    }
                    let (d, _) = m.remove(&r, &[seen[pick % seen.len()].clone()]);
                    deltas.push(d);
                }
                Op::Join { to, from, len } => {
                    if deltas.is_empty() {
                        continue;
                    }
                    let mut batch = D::default();
                    for i in 0..len {
                        batch.merge(deltas[(from + i) % deltas.len()].clone());
                    }
                    let m = &mut replicas[usize::from(to)];
                    let report = m.join(&batch);
                    let after = counts(m);
                    // A key the join added to is left with two or more entries exactly when
                    // one of its adds did not come alone (the join drops entries before it
                    // adds any, so company found is company kept).
                    let mut crowded: BTreeMap<u8, bool> = BTreeMap::new();
                    for a in &report.added {
                        *crowded.entry(a.key).or_default() |= !a.alone;
                        prop_assert_eq!(m.get_dot(&a.slot.dot).map(|(k, s)| (k, s.value)), Some((a.key, a.slot.value)));
                    }
                    for (key, crowded) in crowded {
                        let n = after.get(&key).copied().unwrap_or(0);
                        prop_assert_eq!(crowded, n >= 2, "key {} holds {} entries", key, n);
                    }
                }
            }
        }
    }
}
