use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

fn naive(g: &Group, tag: u8) -> u32 {
    g.tags
        .iter()
        .enumerate()
        .filter(|&(_, &t)| t == tag)
        .fold(0, |m, (i, _)| m | 1 << i)
}

proptest! {
    #[test]
    fn matches_agrees_with_a_loop(tags in proptest::array::uniform12(any::<u8>()), tag in any::<u8>()) {
        let g = Group { tags, overflow: 0, ids: [0; SLOTS] };
        // Tags in use are never 0xff; an empty slot (0) is searched for as EMPTY never.
        let want = if tag == 0xff { 0 } else { naive(&g, tag) };
        prop_assert_eq!(g.matches(tag), want);
    }

    #[test]
    fn portable_matching_agrees_with_a_loop(lo in any::<u64>(), hi in any::<u64>(), tag in any::<u8>()) {
        let bytes: Vec<u8> = lo.to_le_bytes().into_iter().chain(hi.to_le_bytes()).collect();
        let want = bytes.iter().enumerate().filter(|&(_, &b)| b == tag).fold(0u32, |m, (i, _)| m | 1 << i);
        let splat = LO.wrapping_mul(u64::from(tag));
        let portable = compress(zero_bytes(lo ^ splat)) | (compress(zero_bytes(hi ^ splat)) << 8);
        prop_assert_eq!(portable, want);
        prop_assert_eq!(matches_words(lo, hi, tag), want);
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
                table.insert_vacant(vacant, h, id, |id| hash_of(spread, records[&id]));
                model.insert(k, id);
            }
        } else if let Some(id) = model.remove(&k) {
            prop_assert!(table.remove(h, id), "removal of {} (id {})", k, id);
            records.remove(&id);
            prop_assert!(!table.remove(h, id), "a second removal finds nothing");
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
        table.insert(hash(k), k, hash);
    }
    let groups = table.groups.len();
    for round in 1..10u32 {
        for k in 0..20_000 {
            let old = (round - 1) * 20_000 + k;
            assert!(table.remove(hash(old), old));
            let new = round * 20_000 + k;
            table.insert(hash(new), new, hash);
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
        table.insert(hash(k), k, hash);
    }
    table.reserve(10_000, hash);
    let groups = table.groups.len();
    assert!(table.capacity() >= 10_100);
    for k in 100..10_100 {
        table.insert(hash(k), k, hash);
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
