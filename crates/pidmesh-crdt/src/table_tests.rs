use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

/// The slots (0..12) of `header` whose tag byte is `tag`, as bit `8i + 7`.
fn exact(header: u128, tag: u8) -> u128 {
    (0..SLOTS)
        .filter(|&i| (header >> (8 * i)) as u8 == tag)
        .fold(0, |m, i| m | 1 << (8 * i + 7))
}

fn group(lo: u64, hi: u64) -> Group {
    let mut header = [0; 16];
    header[..8].copy_from_slice(&lo.to_le_bytes());
    header[8..].copy_from_slice(&hi.to_le_bytes());
    Group {
        header,
        ids: [0; SLOTS],
    }
}

proptest! {
    #[test]
    fn candidates_hold_every_match_and_the_lowest_is_exact(lo in any::<u64>(), hi in any::<u64>(), tag in any::<u8>()) {
        let g = group(lo, hi);
        let header = g.header();
        let want = exact(header, tag);
        let got = candidates(header, splat(tag));
        prop_assert_eq!(got & want, want, "every true match is a candidate");
        prop_assert_eq!(got & got.wrapping_neg(), want & want.wrapping_neg(), "the lowest candidate is the lowest match");
        // A false candidate sits above a true match and differs from the tag in its lowest bit.
        for i in 0..SLOTS {
            let bit = 1u128 << (8 * i + 7);
            if got & bit != 0 && want & bit == 0 {
                prop_assert_eq!(g.tag(i) ^ tag, 1, "slot {}", i);
                prop_assert!(want & (bit - 1) != 0, "slot {} lies above a true match", i);
            }
        }
        prop_assert_eq!(got & !TOPS, 0, "the overflow count's bytes are never candidates");
    }

    #[test]
    fn tags_are_set_per_slot(lo in any::<u64>(), hi in any::<u64>(), i in 0..SLOTS, tag in any::<u8>()) {
        let mut g = group(lo, hi);
        let before = g.header();
        g.set_tag(i, tag);
        prop_assert_eq!(g.tag(i), tag);
        let others = !(0xffu128 << (8 * i));
        prop_assert_eq!(g.header() & others, before & others, "the other bytes stay");
        let count = g.overflow();
        g.add_overflow(1);
        prop_assert_eq!(g.overflow(), count.wrapping_add(1));
        g.add_overflow(-1);
        prop_assert_eq!(g.header(), before & others | u128::from(tag) << (8 * i), "the count is back");
    }
}

/// How a test key is hashed: well spread, or squeezed so that many keys share tag and home group.
#[derive(Debug, Clone, Copy)]
enum Spread {
    /// A multiplicative mix of the key.
    Mixed,
    /// Only `k % 5` distinct hashes: every key shares its tag and home group with a fifth of all.
    FiveHashes,
    /// One tag for all, home groups spread.
    OneTag,
}

fn hash_of(spread: Spread, k: u32) -> u64 {
    let mixed = u64::from(k)
        .wrapping_add(1)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    match spread {
        Spread::Mixed => mixed,
        Spread::FiveHashes => (u64::from(k % 5) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        Spread::OneTag => (0x42 << 56) | (mixed >> 8),
    }
}

/// Runs `ops` (insert or remove of small keys) on a table and a std map side by side.
fn run(spread: Spread, ops: &[(bool, u32)]) -> Result<(), TestCaseError> {
    let mut table = Table::default();
    let mut model: HashMap<u32, u32> = HashMap::new();
    // id → key, as the store's records are.
    let mut records: HashMap<u32, u32> = HashMap::new();
    let mut next_id = 0u32;
    for &(insert, k) in ops {
        let h = hash_of(spread, k);
        let entry = table.entry(h, |id| records.get(&id) == Some(&k));
        prop_assert_eq!(
            entry.as_ref().ok().copied(),
            model.get(&k).copied(),
            "lookup of {}",
            k
        );
        if insert {
            if let Err(vacant) = entry {
                // The place the lookup found, half the time; a fresh probe otherwise.
                let vacant = if k % 2 == 0 {
                    vacant
                } else {
                    Vacant { at: None }
                };
                let id = next_id;
                next_id += 1;
                records.insert(id, k);
                table.insert_vacant(vacant, h, id);
                model.insert(k, id);
            }
        } else if let Some(id) = model.remove(&k) {
            prop_assert!(table.remove(id), "removal of {} (id {})", k, id);
            records.remove(&id);
            prop_assert!(!table.remove(id), "a second removal finds nothing");
        }
        prop_assert_eq!(table.len(), model.len());
    }
    table.check(|id| hash_of(spread, records[&id]));
    for k in 0..300 {
        let found = table.find(hash_of(spread, k), |id| records.get(&id) == Some(&k));
        prop_assert_eq!(found, model.get(&k).copied(), "final lookup of {}", k);
    }
    Ok(())
}

fn ops() -> impl Strategy<Value = Vec<(bool, u32)>> {
    // Inserts twice as likely as removals, over 300 keys: tables grow through several sizes.
    proptest::collection::vec(
        (prop_oneof![2 => Just(true), 1 => Just(false)], 0u32..300),
        0..700,
    )
}

proptest! {
    #[test]
    fn matches_a_map_with_spread_hashes(ops in ops()) {
        run(Spread::Mixed, &ops)?;
    }

    #[test]
    fn matches_a_map_with_colliding_hashes(ops in ops()) {
        run(Spread::FiveHashes, &ops)?;
    }

    #[test]
    fn matches_a_map_with_one_tag(ops in ops()) {
        run(Spread::OneTag, &ops)?;
    }
}

#[test]
fn churn_keeps_counts_exact_and_the_table_small() {
    // Insert 20k keys, then replace them over many rounds: removals free their slots and the
    // overflow counts, so the table neither grows nor slows past its live count.
    let mut table = Table::default();
    let hash = |k: u32| hash_of(Spread::Mixed, k);
    for k in 0..20_000 {
        table.insert(hash(k), k);
    }
    let groups = table.groups.len();
    for round in 1..10u32 {
        for k in 0..20_000 {
            let old = (round - 1) * 20_000 + k;
            assert!(table.remove(old));
            let new = round * 20_000 + k;
            table.insert(hash(new), new);
        }
    }
    assert_eq!(table.len(), 20_000);
    assert_eq!(table.groups.len(), groups, "churn does not grow the table");
    table.check(hash);
    for k in 0..20_000 {
        let live = 9 * 20_000 + k;
        assert_eq!(table.find(hash(live), |id| id == live), Some(live));
        assert_eq!(table.find(hash(k), |id| id == k), None);
    }
}

#[test]
fn reserve_makes_room_without_moving_ids_out() {
    let mut table = Table::default();
    let hash = |k: u32| hash_of(Spread::Mixed, k);
    for k in 0..100 {
        table.insert(hash(k), k);
    }
    table.reserve(10_000);
    let groups = table.groups.len();
    assert!(table.capacity() >= 10_100);
    for k in 100..10_100 {
        table.insert(hash(k), k);
    }
    assert_eq!(table.groups.len(), groups, "no growth after the reserve");
    table.check(hash);
    assert!((0..10_100).all(|k| table.find(hash(k), |id| id == k) == Some(k)));
}

#[test]
fn group_is_one_cache_line() {
    assert_eq!(size_of::<Group>(), 64);
    assert_eq!(align_of::<Group>(), 64);
}

#[test]
fn a_full_table_doubles_on_the_next_insert() {
    let mut table = Table::default();
    let hash = |k: u32| hash_of(Spread::Mixed, k);
    table.insert(hash(0), 0);
    let mut k = 1;
    while !table.is_full() {
        table.insert(hash(k), k);
        k += 1;
    }
    let groups = table.groups.len();
    assert_eq!(table.len(), table.capacity());
    table.insert(hash(k), k);
    assert_eq!(table.groups.len(), 2 * groups);
    assert_eq!(table.len(), k as usize + 1);
    table.check(hash);
    assert!((0..=k).all(|i| table.find(hash(i), |id| id == i) == Some(i)));
}

#[test]
fn a_removed_id_left_in_an_empty_slot_is_not_removed_twice() {
    // Tag 1 in slot 0, then an emptied slot 1 whose stale id the subtraction's borrow flags as a
    // candidate for tag 1 (0 differs from 1 in the lowest bit).
    let mut table = Table::default();
    let hash = |k: u32| (1 << 56) | u64::from(k % 2) << 8;
    table.insert(hash(0), 0);
    table.insert(hash(2), 2);
    assert!(table.remove(2));
    // The id's slot is found by its kept hash; force the search the way a stale slot meets it.
    table.shorts[2] = short_of(hash(2));
    table.len += 1;
    assert!(!table.remove(2), "the stale id is not there");
    table.len -= 1;
    table.shorts[2] = 0;
    assert_eq!(table.len(), 1);
    table.check(hash);
    assert_eq!(table.find(hash(0), |id| id == 0), Some(0));
}
