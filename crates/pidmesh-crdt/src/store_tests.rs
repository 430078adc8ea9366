//! Unit tests of the sharded store: inline and extra entries, stable ids, growth.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

type TestStore = Store<&'static str, String, u64>;

fn store_with_actors() -> TestStore {
    let s = TestStore::default();
    for a in ["a", "b", "c", "d"] {
        s.push_actor(&a);
    }
    s
}

/// The entries under `key` as sorted `(actor, seq, value)`.
fn entries(s: &TestStore, key: &str) -> Vec<(&'static str, u64, u64)> {
    let mut v: Vec<_> = s.read(&key.to_owned(), |it| {
        it.map(|e| (*e.actor, e.seq, *e.value)).collect()
    });
    v.sort_unstable();
    v
}

fn count(s: &TestStore, key: &str) -> usize {
    s.read(&key.to_owned(), |it| it.count_hint())
}

fn at(s: &TestStore, id: u32) -> Option<(String, &'static str, u64, u64)> {
    s.with_id(id, |k, e| (k.clone(), *e.actor, e.seq, *e.value))
}

#[test]
fn ids_round_trip() {
    for shard in [0, 1, SHARDS - 1] {
        for local in [0, 1, 12_345, LOCAL_MASK] {
            for place in [Place::Inline(local), Place::Extra(local)] {
                assert_eq!(ungid(gid(shard, place)), (shard, place));
            }
        }
    }
}

#[test]
fn conflicted_key_keeps_every_entry() {
    let s = store_with_actors();
    let ids: Vec<u32> = (0..3)
        .map(|a| {
            s.insert("billing".into(), a, 10 + u64::from(a), 100 + u64::from(a))
                .0
        })
        .collect();
    assert_eq!(
        entries(&s, "billing"),
        vec![("a", 10, 100), ("b", 11, 101), ("c", 12, 102)]
    );
    assert_eq!(count(&s, "billing"), 3);
    assert_eq!(s.key_count(), 1);
    // The first entry is inline, the others extra; every id reads its own entry.
    assert!(matches!(ungid(ids[0]).1, Place::Inline(_)));
    assert!(matches!(ungid(ids[1]).1, Place::Extra(_)));
    for (a, &id) in ids.iter().enumerate() {
        let (k, _, seq, _) = at(&s, id).expect("live");
        assert_eq!(k, "billing");
        assert_eq!(seq, 10 + a as u64);
    }
}

#[test]
fn removing_the_inline_entry_keeps_the_extra_ones_and_their_ids() {
    let s = store_with_actors();
    let (first, alone) = s.insert("k".into(), 0, 1, 7);
    assert!(alone, "the key held nothing");
    let (second, alone) = s.insert("k".into(), 1, 1, 8);
    assert!(!alone, "the key held an entry");
    let third = s.insert("k".into(), 2, 1, 9).0;
    let taken = s.remove(first).expect("live");
    assert_eq!((taken.key.as_str(), taken.value), ("k", 7));
    assert_eq!(at(&s, first), None);
    assert_eq!(s.key_count(), 1, "the key stays while it has entries");
    assert_eq!(entries(&s, "k"), vec![("b", 1, 8), ("c", 1, 9)]);
    assert_eq!(count(&s, "k"), 2);
    assert_eq!(at(&s, second), Some(("k".into(), "b", 1, 8)));
    assert_eq!(at(&s, third), Some(("k".into(), "c", 1, 9)));
    // The next entry of the key fills the empty inline place again, under the old id.
    let (again, alone) = s.insert("k".into(), 3, 5, 10);
    assert_eq!(again, first);
    assert!(!alone, "the key still held two extra entries");
    assert_eq!(
        entries(&s, "k"),
        vec![("b", 1, 8), ("c", 1, 9), ("d", 5, 10)]
    );
    // Removing every entry (extra ones first, in the middle of the list too) drops the key.
    assert_eq!(s.remove(third).map(|t| t.value), Some(9));
    assert_eq!(s.remove(second).map(|t| t.value), Some(8));
    assert_eq!(s.key_count(), 1);
    let last = s.remove(again).expect("live");
    assert_eq!((last.key.as_str(), last.value), ("k", 10));
    assert_eq!(s.key_count(), 0);
    assert_eq!(count(&s, "k"), 0);
    assert_eq!(
        s.remove(again).map(|t| t.value),
        None,
        "ids are not live twice"
    );
}

#[test]
fn removing_the_last_extra_entry_leaves_an_empty_key_gone() {
    let s = store_with_actors();
    let first = s.insert("k".into(), 0, 1, 1).0;
    let second = s.insert("k".into(), 1, 1, 2).0;
    assert!(s.remove(first).is_some());
    assert_eq!(s.remove(second).map(|t| t.key), Some("k".to_owned()));
    assert_eq!(s.key_count(), 0);
    // The key comes back cleanly, inline.
    let (id, alone) = s.insert("k".into(), 2, 3, 4);
    assert!(alone, "an emptied key is gone");
    assert!(matches!(ungid(id).1, Place::Inline(_)));
    assert_eq!(entries(&s, "k"), vec![("c", 3, 4)]);
}

#[test]
fn growth_keeps_every_entry_reachable() {
    let s = store_with_actors();
    let n = 50_000u64;
    let ids: Vec<u32> = (0..n)
        .map(|i| s.insert(format!("svc/{i}"), (i % 4) as u32, i, i * 3).0)
        .collect();
    assert_eq!(s.key_count(), n as usize);
    for (i, &id) in ids.iter().enumerate().step_by(97) {
        let i = i as u64;
        assert_eq!(
            at(&s, id),
            Some((
                format!("svc/{i}"),
                ["a", "b", "c", "d"][(i % 4) as usize],
                i,
                i * 3
            ))
        );
        assert_eq!(entries(&s, &format!("svc/{i}")).len(), 1);
    }
    // Drop every other one; the rest stay where they are.
    for &id in ids.iter().step_by(2) {
        assert!(s.remove(id).is_some());
    }
    assert_eq!(s.key_count(), (n / 2) as usize);
    let mut seen = 0;
    s.for_each_key(|_, it| seen += it.count());
    assert_eq!(seen, (n / 2) as usize);
    assert_eq!(at(&s, ids[1]).map(|e| e.3), Some(3));
}

/// Steps of the model test: add an entry under one of a few keys, or remove the `i`-th live one.
#[derive(Debug, Clone)]
enum Op {
    Add { key: u8, actor: u8, huge: bool },
    Remove { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, 0u8..4, proptest::bool::weighted(0.2)).prop_map(|(key, actor, huge)| Op::Add {
            key,
            actor,
            huge
        }),
        any::<usize>().prop_map(|pick| Op::Remove { pick }),
    ]
}

proptest! {
    /// Random adds and removals on a few keys (so most keys are conflicted at some point) agree
    /// with a plain model: every key's entries, every live id, the key count.
    #[test]
    fn matches_a_model(ops in proptest::collection::vec(op(), 0..200)) {
        let s = store_with_actors();
        let actors = ["a", "b", "c", "d"];
        // id → (key, actor, seq, value)
        let mut model: BTreeMap<u32, (String, &'static str, u64, u64)> = BTreeMap::new();
        let mut seq = 0u64;
        for op in ops {
            match op {
                Op::Add { key, actor, huge } => {
                    seq += 1;
                    // Some dots too large to pack inline, to mix both kinds under one key.
                    let dot_seq = if huge { seq + SEQ_MASK } else { seq };
                    let key = format!("k{key}");
                    let held = model.values().any(|(k, ..)| *k == key);
                    let (id, alone) = s.insert(key.clone(), u32::from(actor), dot_seq, seq * 10);
                    prop_assert_eq!(alone, !held, "alone says whether the key held an entry");
                    prop_assert!(model.insert(id, (key, actors[usize::from(actor)], dot_seq, seq * 10)).is_none());
                }
                Op::Remove { pick } => {
                    if model.is_empty() {
                        continue;
                    }
                    let id = *model.keys().nth(pick % model.len()).expect("in range");
                    let want = model.remove(&id).expect("live");
                    let got = s.remove(id).expect("live in the store");
                    prop_assert_eq!((got.key, got.value), (want.0, want.3));
                    prop_assert!(s.remove(id).is_none());
                }
            }
            for (&id, want) in &model {
                prop_assert_eq!(at(&s, id), Some(want.clone()));
            }
            let mut keys = std::collections::BTreeSet::new();
            for k in 0..6u8 {
                let key = format!("k{k}");
                let mut want: Vec<_> = model.values().filter(|e| e.0 == key).map(|e| (e.1, e.2, e.3)).collect();
                want.sort_unstable();
                if !want.is_empty() {
                    keys.insert(key.clone());
                }
                prop_assert_eq!(count(&s, &key), want.len());
                prop_assert_eq!(entries(&s, &key), want);
            }
            prop_assert_eq!(s.key_count(), keys.len());
        }
    }
}

#[test]
fn a_key_record_costs_eight_bytes_beside_key_and_value_and_spans_two_lines() {
    // A 32-byte key and a 56-byte value, both with a niche (like pidmesh's `Key`, whose kind is
    // an enum, and `Value`, whose metadata holds a reference).
    type Key = (bool, [u64; 3]);
    type Value = (Box<u8>, [u64; 6]);
    let size = std::mem::size_of::<KeyRec<Key, Value>>();
    assert_eq!(size, 32 + 56 + 8);
    // Aligned so that a record never straddles a third cache line.
    assert_eq!(std::mem::align_of::<KeyRec<Key, Value>>(), 32);
    // The slab's `Option` costs nothing either.
    assert_eq!(std::mem::size_of::<Option<KeyRec<Key, Value>>>(), size);
}

#[test]
fn dots_that_do_not_pack_are_stored_whole() {
    let s = store_with_actors();
    let big = SEQ_MASK + 1;
    // A new key whose first dot is too large: no inline entry, one extra.
    let (a, alone) = s.insert("k".into(), 1, u64::MAX, 5);
    assert!(alone);
    assert!(matches!(ungid(a).1, Place::Extra(_)));
    assert_eq!(entries(&s, "k"), vec![("b", u64::MAX, 5)]);
    assert_eq!(s.key_count(), 1);
    // A packable dot then takes the empty inline place.
    let (b, alone) = s.insert("k".into(), 0, 3, 6);
    assert!(!alone, "the key holds an extra entry");
    assert!(matches!(ungid(b).1, Place::Inline(_)));
    let c = s.insert("k".into(), 2, big, 7).0;
    assert!(matches!(ungid(c).1, Place::Extra(_)));
    assert_eq!(
        entries(&s, "k"),
        vec![("a", 3, 6), ("b", u64::MAX, 5), ("c", big, 7)]
    );
    assert_eq!(at(&s, c), Some(("k".into(), "c", big, 7)));
    assert_eq!(s.remove(a).map(|t| t.value), Some(5));
    assert_eq!(s.remove(b).map(|t| t.value), Some(6));
    assert_eq!(count(&s, "k"), 1);
    assert_eq!(s.remove(c).map(|t| (t.key, t.value)), Some(("k".into(), 7)));
    assert_eq!(s.key_count(), 0);
    // The largest packable dot stays inline and reads back whole.
    let d = s.insert("m".into(), 3, SEQ_MASK, 8).0;
    assert!(matches!(ungid(d).1, Place::Inline(_)));
    assert_eq!(at(&s, d), Some(("m".into(), "d", SEQ_MASK, 8)));
    assert_eq!(
        pack(ACTOR_MASK as u32, SEQ_MASK).map(|p| p >> SEQ_BITS),
        Some(ACTOR_MASK)
    );
    assert_eq!(pack(ACTOR_MASK as u32 + 1, 1), None);
}

#[test]
fn insert_if_vacant_stores_only_into_an_empty_key() {
    let s = store_with_actors();
    let mut made = 0;
    let (id, value) = s
        .insert_if_vacant(&"k".to_owned(), 0, 1, || {
            made += 1;
            7
        })
        .expect("the key is empty");
    assert_eq!(value, 7);
    assert_eq!(at(&s, id), Some(("k".into(), "a", 1, 7)));
    assert!(
        s.insert_if_vacant(&"k".to_owned(), 1, 2, || {
            made += 1;
            8
        })
        .is_none(),
        "the key holds an entry"
    );
    assert_eq!(made, 1, "the value is made only when it is stored");
    assert_eq!(entries(&s, "k"), vec![("a", 1, 7)]);
    // A dot too large to pack still goes in (as the key's extra entry).
    let (big, _) = s
        .insert_if_vacant(&"big".to_owned(), 2, SEQ_MASK + 1, || 9)
        .expect("empty");
    assert!(matches!(ungid(big).1, Place::Extra(_)));
    assert_eq!(entries(&s, "big"), vec![("c", SEQ_MASK + 1, 9)]);
    assert!(s.remove(big).is_some());
    assert_eq!(count(&s, "big"), 0);
}
