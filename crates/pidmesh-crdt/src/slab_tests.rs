use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

#[test]
fn chunk_size_follows_the_value_size() {
    assert_eq!(Slab::<u64>::CHUNK, 2048); // Option<u64> is 16 B
    assert_eq!(Slab::<[u8; 100]>::CHUNK, 256); // 101 B: 324 fit, a power of two below
    assert_eq!(Slab::<[u8; 100_000]>::CHUNK, 16); // never fewer than 16
    assert!(Slab::<[u64; 13]>::CHUNK * size_of::<Option<[u64; 13]>>() <= CHUNK_BYTES);
}

/// Walks the ids in the order they are handed out and checks that `split` puts them one after
/// the other in segments of `places` places, that the segments add up to `SUB` full chunks, and
/// that the spare places of a slab of any size stay within the documented bound.
fn check_layout<T>() {
    let chunk = Slab::<T>::CHUNK;
    let segments = Slab::<T>::SEGMENTS;
    assert_eq!(
        (0..segments).map(Slab::<T>::places).sum::<usize>(),
        chunk * SUB,
        "the segments hold SUB full chunks' worth of ids"
    );
    let (mut seg, mut off, mut capacity) = (0usize, 0usize, Slab::<T>::places(0));
    for id in 0..(8 * chunk) as u32 {
        if off == Slab::<T>::places(seg) {
            seg += 1;
            off = 0;
            capacity += Slab::<T>::places(seg);
        }
        assert_eq!(Slab::<T>::split(id), (seg, off), "id {id}, chunk {chunk}");
        let places = Slab::<T>::places(seg);
        assert!(places.is_power_of_two() && (16..=chunk).contains(&places));
        // `id + 1` values stored: at most a fifth spare, or less than one smallest segment.
        let spare = capacity - (id as usize + 1);
        assert!(
            spare < 16 || spare * 5 <= capacity,
            "{spare} spare of {capacity} at {} values",
            id + 1
        );
        off += 1;
    }
    assert_eq!(seg, segments + 3, "then full chunks");
}

#[test]
fn ids_fill_segments_in_order() {
    check_layout::<u64>(); // 2048 places a chunk
    check_layout::<[u8; 100]>(); // 256
    check_layout::<[u8; 500]>(); // 64
    check_layout::<[u8; 1000]>(); // 32
    check_layout::<[u8; 2048]>(); // 16
    assert_eq!(Slab::<u64>::SEGMENTS, 32); // 16 ×4, then 4 per doubling up to 1024
    assert_eq!(Slab::<[u8; 100]>::SEGMENTS, 20); // up to 128
    assert_eq!(Slab::<[u8; 2048]>::SEGMENTS, 4); // four of 16, then chunks of 16
}

#[test]
fn grows_across_chunk_boundaries_without_moving_values() {
    let mut s = Slab::<u64>::default();
    let n = 5 * Slab::<u64>::CHUNK + 5;
    let mut addresses = Vec::new();
    for i in 0..n as u64 {
        assert_eq!(s.insert(i), i as u32, "ids are handed out densely");
        let v: *const u64 = s.get(i as u32).expect("the value just stored");
        addresses.push(v);
    }
    // No value moved while the slab grew.
    for (i, a) in addresses.iter().enumerate() {
        let now: *const u64 = s.get(i as u32).expect("the value is stored");
        assert!(std::ptr::eq(*a, now), "value {i} moved");
        assert_eq!(s.get(i as u32), Some(&(i as u64)));
    }
    assert_eq!(s.get(n as u32), None);
    assert_eq!(s.get(u32::MAX), None);
    // The segments (four chunks' worth), one full chunk and one whole chunk being filled.
    assert_eq!(s.capacity(), 6 * Slab::<u64>::CHUNK);
    let ids: Vec<u32> = s.iter().map(|(id, _)| id).collect();
    assert_eq!(ids, (0..n as u32).collect::<Vec<_>>());
}

#[test]
fn small_slab_stays_small() {
    let mut s = Slab::<u64>::default();
    assert_eq!(s.capacity(), 0);
    for i in 0..5 {
        s.insert(i);
    }
    assert_eq!(s.capacity(), 16);
    // 160 values of a 128-byte record: segments of 16 up to 128, then 32 — no spare place.
    let mut s = Slab::<[u64; 15]>::default();
    for i in 0..160 {
        s.insert([i; 15]);
    }
    assert_eq!(s.capacity(), 160);
    s.insert([0; 15]);
    assert_eq!(s.capacity(), 192);
}

#[test]
fn a_clone_keeps_full_size_segments() {
    let mut s = Slab::<u64>::default();
    for i in 0..100 {
        s.insert(i);
    }
    s.remove(7);
    let mut c = s.clone();
    assert_eq!(
        c.capacity(),
        s.capacity(),
        "the last segment is not cut to its length"
    );
    let first: *const u64 = c.get(0).expect("stored");
    assert_eq!(c.insert(1000), 7, "the free list is copied");
    for i in 100..112 {
        assert_eq!(c.insert(i), i as u32);
    }
    assert_eq!(
        c.capacity(),
        s.capacity(),
        "filled the copied segment in place"
    );
    assert!(std::ptr::eq(first, c.get(0).expect("stored")));
    assert_eq!(s.get(7), None, "the original is untouched");
    assert_eq!(s.get(100), None);
}

#[test]
fn removed_ids_are_reused_before_growing() {
    let mut s = Slab::<u64>::default();
    let chunk = Slab::<u64>::CHUNK as u32;
    for i in 0..chunk + 10 {
        s.insert(u64::from(i));
    }
    let cap = s.capacity();
    assert_eq!(s.remove(3), Some(3));
    assert_eq!(s.remove(chunk + 2), Some(u64::from(chunk + 2)));
    assert_eq!(s.remove(3), None, "a freed id holds nothing");
    assert_eq!(
        s.remove(chunk + 10),
        None,
        "an id never handed out holds nothing"
    );
    assert_eq!(s.get(3), None);
    let a = s.insert(100);
    let b = s.insert(200);
    let mut reused = [a, b];
    reused.sort_unstable();
    assert_eq!(reused, [3, chunk + 2]);
    assert_eq!(s.capacity(), cap);
    assert_eq!(s.insert(300), chunk + 10, "then the slab grows");
    assert_eq!(s.get_mut(a).map(|v| std::mem::replace(v, 1)), Some(100));
    assert_eq!(s.get(a), Some(&1));
}

/// One operation of the model test: insert, remove the `n`-th live id, or get the id `n`
/// modulo one past the largest id handed out.
#[derive(Debug, Clone)]
enum Op {
    Insert,
    Remove(usize),
    Get(u32),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => Just(Op::Insert),
        1 => any::<usize>().prop_map(Op::Remove),
        1 => any::<u32>().prop_map(Op::Get),
    ];
    proptest::collection::vec(op, 0..700)
}

fn tag_of<const N: usize>(v: &[u8; N]) -> u32 {
    u32::from_le_bytes([v[0], v[1], v[2], v[3]])
}

/// Runs `ops` on a slab of `N`-byte values and on a model (live id → tag and address, the set
/// of freed ids, the count of ids handed out): values, ids and addresses must agree.
fn run_model<const N: usize>(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut s = Slab::<[u8; N]>::default();
    let mut live: BTreeMap<u32, (u32, usize)> = BTreeMap::new();
    let mut freed: BTreeSet<u32> = BTreeSet::new();
    let mut handed = 0u32;
    let mut tag = 0u32;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Insert => {
                tag += 1;
                let mut v = [0u8; N];
                v[..4].copy_from_slice(&tag.to_le_bytes());
                let id = s.insert(v);
                if freed.is_empty() {
                    prop_assert_eq!(id, handed, "a new id is the next one");
                    handed += 1;
                } else {
                    prop_assert!(freed.remove(&id), "id {} reused though not free", id);
                }
                let at = s.get(id).map(|v| v.as_ptr() as usize);
                prop_assert!(at.is_some(), "the value just stored is there");
                prop_assert!(live.insert(id, (tag, at.unwrap_or(0))).is_none());
            }
            Op::Remove(pick) => {
                let Some(&id) = live.keys().nth(pick % live.len().max(1)) else {
                    continue;
                };
                let v = s.remove(id);
                prop_assert_eq!(v.as_ref().map(tag_of), live.remove(&id).map(|l| l.0));
                prop_assert_eq!(s.remove(id), None, "removed twice");
                freed.insert(id);
            }
            Op::Get(n) => {
                let id = n % (handed + 1);
                let got = s.get(id).map(|v| (tag_of(v), v.as_ptr() as usize));
                prop_assert_eq!(got, live.get(&id).copied(), "id {}", id);
            }
        }
        if step % 32 == 31 || step + 1 == ops.len() {
            let all: Vec<(u32, (u32, usize))> = s
                .iter()
                .map(|(id, v)| (id, (tag_of(v), v.as_ptr() as usize)))
                .collect();
            // Same ids, same values, and no value moved since it was stored.
            prop_assert_eq!(all, live.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn matches_a_model_small_chunks(ops in ops()) {
        // 16 places a chunk: a few hundred operations cross many full chunks.
        run_model::<2048>(&ops)?;
    }

    #[test]
    fn matches_a_model_segments_then_chunks(ops in ops()) {
        // 32 places a chunk: 8 segments of 16 up to 128 ids, then full chunks.
        run_model::<600>(&ops)?;
    }

    #[test]
    fn matches_a_model_larger_segments(ops in ops()) {
        // 128 places a chunk: 16 segments up to 512 ids, then full chunks.
        run_model::<200>(&ops)?;
    }

    #[test]
    fn matches_a_model_within_segments(ops in ops()) {
        // 4096 places a chunk: every id stays in the segments.
        run_model::<7>(&ops)?;
    }
}
