//! Unit tests of `split_origin_delta`'s rule that a removed dot travels with its removal.

use std::collections::VecDeque;

use bytes::Bytes;
use pidmesh_crdt::DotSet;
use pidmesh_wire::{Hlc, Key, OriginDelta, Value, WireEntry};

use super::dissemination::{entry_budget, split_origin_delta};

fn entry(seq: u64) -> WireEntry {
    WireEntry {
        seq,
        key: Key::name(format!("name/{seq:04}")),
        value: Value {
            pid: seq,
            meta: Bytes::new(),
            at: Hlc {
                wall_ms: seq,
                logical: 0,
            },
        },
    }
}

fn seen_of(p: &OriginDelta) -> DotSet {
    DotSet::from_ranges(p.seen.iter().copied())
}

/// Pieces of a batch of `n` replacements (new entries `n+1..=2n` removing `1..=n`), with the
/// victims at `released` also shipped as released entries.
fn replacements(n: u64, per_piece: usize, released: &[u64]) -> (DotSet, Vec<OriginDelta>) {
    let seen = DotSet::from_range(1, 2 * n);
    let log: VecDeque<(u64, u64)> = (1..=n).map(|v| (n + v, v)).collect();
    let mut items: Vec<(bool, WireEntry)> = released.iter().map(|&v| (true, entry(v))).collect();
    items.extend((n + 1..=2 * n).map(|r| (false, entry(r))));
    let budget = per_piece * entry_budget(&entry(n + 1));
    (
        seen.clone(),
        split_origin_delta(&seen, items.into_iter(), budget, &log),
    )
}

#[test]
fn a_removed_dot_travels_in_the_piece_of_its_removal_and_nowhere_else() {
    let n = 40;
    let (seen, pieces) = replacements(n, 10, &[3, 17, 25]);
    assert!(pieces.len() >= 4, "{} pieces", pieces.len());
    let mut union = DotSet::new();
    for p in &pieces {
        union.union_with(&seen_of(p));
        // Every entry lies within its piece's context.
        for e in p.adds.iter().chain(&p.released) {
            assert!(
                seen_of(p).contains(e.seq),
                "entry {} outside its piece",
                e.seq
            );
        }
    }
    assert_eq!(union, seen, "the pieces cover the batch");
    for v in 1..=n {
        let holding: Vec<usize> = (0..pieces.len())
            .filter(|&k| seen_of(&pieces[k]).contains(v))
            .collect();
        let of_removal: Vec<usize> = (0..pieces.len())
            .filter(|&k| seen_of(&pieces[k]).contains(n + v))
            .collect();
        assert_eq!(holding, of_removal, "dot {v} and its removal {}", n + v);
    }
    for v in [3, 17, 25] {
        let k = (0..pieces.len())
            .find(|&k| pieces[k].released.iter().any(|e| e.seq == v))
            .expect("the released entry is shipped");
        assert!(
            seen_of(&pieces[k]).contains(n + v),
            "released {v} with its removal"
        );
    }
}

#[test]
fn each_piece_takes_in_a_bounded_number_of_moved_dots() {
    // Adds `n+1..=2n`, one per piece, then one removal dot `2n+1` (no entry) removing `1..=n`:
    // the last piece has room for budget / 2 / 20 moved dots, far fewer than `n`.
    let n = 400;
    let seen = DotSet::from_range(1, 2 * n + 1);
    let log: VecDeque<(u64, u64)> = (1..=n).map(|v| (2 * n + 1, v)).collect();
    let items = (n + 1..=2 * n).map(|r| (false, entry(r)));
    let budget = entry_budget(&entry(n + 1));
    let pieces = split_origin_delta(&seen, items, budget, &log);
    let mut union = DotSet::new();
    for p in &pieces {
        union.union_with(&seen_of(p));
    }
    assert_eq!(union, seen, "dots that do not move stay where they were");
    let last = pieces.last().expect("pieces");
    let moved_in = seen_of(last).clipped(1, n).len();
    let room = (budget / 2 / 20) as u64;
    assert!(moved_in > 0, "no dot moved");
    assert!(
        moved_in <= room,
        "{moved_in} dots moved into one piece (room {room})"
    );
}
