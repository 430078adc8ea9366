//! Differential test: pidmesh's OR-map against the `crdts` crate's `Orswot`, used as an oracle.
//!
//! Both are add-wins observed-remove sets once pidmesh's map is read as a set of `(key, value)`
//! pairs. Random histories of adds, observed removes and full-state syncs run on three replicas
//! of each; after every step, every replica of the two must show the same pairs. (`Orswot`
//! keeps one entry per member and pidmesh one per add, so a remove here drops every dot of the
//! pair that the remover sees, as `Orswot::rm` with the remover's read context does; `crdts`
//! has no delta-state form, so syncs ship whole states on both sides.) proptest prints the
//! failing history and keeps its seed in `proptest-regressions/`.

use std::collections::BTreeSet;

use crdts::{CmRDT, CvRDT, Orswot};
use pidmesh_crdt::{Dot, OrMap};
use proptest::prelude::*;

const REPLICAS: u8 = 3;

type Map = OrMap<u8, u8, u8>;
type Oracle = Orswot<(u8, u8), u8>;

#[derive(Debug, Clone)]
enum Op {
    Add {
        r: u8,
        key: u8,
        value: u8,
    },
    /// Remove the `pick`-th pair (mod count) that replica `r` sees.
    Remove {
        r: u8,
        pick: usize,
    },
    Sync {
        from: u8,
        to: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..REPLICAS, 0u8..4, 0u8..3).prop_map(|(r, key, value)| Op::Add { r, key, value }),
        2 => (0..REPLICAS, any::<usize>()).prop_map(|(r, pick)| Op::Remove { r, pick }),
        2 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

fn pairs(m: &Map) -> BTreeSet<(u8, u8)> {
    m.iter()
        .flat_map(|(k, slots)| slots.into_iter().map(move |s| (k, s.value)))
        .collect()
}

fn oracle_pairs(o: &Oracle) -> BTreeSet<(u8, u8)> {
    o.read().val.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn same_pairs_as_orswot(ops in proptest::collection::vec(op(), 1..60)) {
        let mut maps = vec![Map::new(); REPLICAS as usize];
        let mut oracles = vec![Oracle::new(); REPLICAS as usize];
        for op in &ops {
            match *op {
                Op::Add { r, key, value } => {
                    maps[r as usize].add(&r, key, value);
                    let o = &mut oracles[r as usize];
                    let add = o.add((key, value), o.read_ctx().derive_add_ctx(r));
                    o.apply(add);
                }
                Op::Remove { r, pick } => {
                    let seen: Vec<(u8, u8)> = pairs(&maps[r as usize]).into_iter().collect();
                    if seen.is_empty() {
                        continue;
                    }
                    let pair = seen[pick % seen.len()];
                    let dots: Vec<Dot<u8>> = maps[r as usize]
                        .get(&pair.0)
                        .into_iter()
                        .filter(|s| s.value == pair.1)
                        .map(|s| s.dot)
                        .collect();
                    maps[r as usize].remove(&r, &dots);
                    let o = &mut oracles[r as usize];
                    let rm = o.rm(pair, o.contains(&pair).derive_rm_ctx());
                    o.apply(rm);
                }
                Op::Sync { from, to } => {
                    let state = maps[from as usize].to_delta();
                    maps[to as usize].join(&state);
                    let other = oracles[from as usize].clone();
                    oracles[to as usize].merge(other);
                }
            }
            for r in 0..REPLICAS as usize {
                prop_assert_eq!(
                    pairs(&maps[r]),
                    oracle_pairs(&oracles[r]),
                    "replica {} after {:?}",
                    r,
                    op
                );
            }
        }
    }
}
