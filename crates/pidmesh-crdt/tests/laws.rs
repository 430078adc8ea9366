//! Property tests: the OR-map is a join-semilattice and a correct add-wins OR-map.
//!
//! Histories of adds, removes and syncs run on three replicas; the laws are checked on the
//! resulting states and on every delta the history produced. proptest prints the failing
//! case and its seed is kept in `proptest-regressions/` when one fails.

use std::collections::BTreeSet;

use pidmesh_crdt::{Delta, Dot, OrMap};
use proptest::prelude::*;

type Map = OrMap<u8, u8, u8>;
type D = Delta<u8, u8, u8>;

const REPLICAS: u8 = 3;

#[derive(Debug, Clone)]
enum Op {
    Add {
        r: u8,
        key: u8,
        value: u8,
    },
    /// Remove the `pick`-th entry (mod count) that replica `r` currently sees.
    Remove {
        r: u8,
        pick: usize,
    },
    /// Replace (update the value of) the `pick`-th entry `r` sees.
    Replace {
        r: u8,
        pick: usize,
        value: u8,
    },
    /// Full-state sync from one replica into another.
    Sync {
        from: u8,
        to: u8,
    },
    /// Ship one earlier delta (by index, mod count) to a replica: out of order and duplicated.
    Deliver {
        to: u8,
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..REPLICAS, 0u8..4, any::<u8>()).prop_map(|(r, key, value)| Op::Add { r, key, value }),
        2 => (0..REPLICAS, any::<usize>()).prop_map(|(r, pick)| Op::Remove { r, pick }),
        1 => (0..REPLICAS, any::<usize>(), any::<u8>()).prop_map(|(r, pick, value)| Op::Replace { r, pick, value }),
        1 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Op::Sync { from, to }),
        2 => (0..REPLICAS, any::<usize>()).prop_map(|(to, pick)| Op::Deliver { to, pick }),
    ]
}

/// Everything a history produced.
struct Run {
    replicas: Vec<Map>,
    deltas: Vec<D>,
    /// Every (key, dot, value) ever added.
    added: BTreeSet<(u8, Dot<u8>, u8)>,
    /// Every dot some replica removed (observed, then dropped).
    removed: BTreeSet<Dot<u8>>,
}

fn visible_dots(m: &Map) -> Vec<Dot<u8>> {
    let mut v: Vec<Dot<u8>> = m
        .iter()
        .flat_map(|(_, s)| s.into_iter().map(|s| s.dot))
        .collect();
    v.sort();
    v
}

fn run(ops: &[Op]) -> Run {
    let mut run = Run {
        replicas: vec![Map::new(); REPLICAS as usize],
        deltas: Vec::new(),
        added: BTreeSet::new(),
        removed: BTreeSet::new(),
    };
    for op in ops {
        match *op {
            Op::Add { r, key, value } => {
                let d = run.replicas[r as usize].add(&r, key, value);
                let (k, s) = &d.adds[0];
                run.added.insert((*k, s.dot.clone(), s.value));
                run.deltas.push(d);
            }
            Op::Remove { r, pick } => {
                let dots = visible_dots(&run.replicas[r as usize]);
                if dots.is_empty() {
                    continue;
                }
                let dot = dots[pick % dots.len()].clone();
                let (d, gone) = run.replicas[r as usize].remove(&r, std::slice::from_ref(&dot));
                assert_eq!(gone.len(), 1);
                run.removed.insert(dot);
                run.deltas.push(d);
            }
            Op::Replace { r, pick, value } => {
                let dots = visible_dots(&run.replicas[r as usize]);
                if dots.is_empty() {
                    continue;
                }
                let dot = dots[pick % dots.len()].clone();
                let (d, _) = run.replicas[r as usize]
                    .replace(&r, &dot, value)
                    .expect("dot is live");
                let (k, s) = &d.adds[0];
                run.added.insert((*k, s.dot.clone(), s.value));
                run.removed.insert(dot);
                run.deltas.push(d);
            }
            Op::Sync { from, to } => {
                let state = run.replicas[from as usize].to_delta();
                run.replicas[to as usize].join(&state);
            }
            Op::Deliver { to, pick } => {
                if run.deltas.is_empty() {
                    continue;
                }
                let d = run.deltas[pick % run.deltas.len()].clone();
                run.replicas[to as usize].join(&d);
            }
        }
    }
    run
}

fn joined(a: &Map, b: &Map) -> Map {
    let mut x = a.clone();
    x.join(&b.to_delta());
    x
}

fn total(run: &Run) -> Map {
    let mut all = Map::new();
    for r in &run.replicas {
        all.join(&r.to_delta());
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn join_is_commutative_associative_idempotent(ops in proptest::collection::vec(op(), 0..60)) {
        let run = run(&ops);
        let (a, b, c) = (&run.replicas[0], &run.replicas[1], &run.replicas[2]);
        prop_assert_eq!(joined(a, b).canonical(), joined(b, a).canonical());
        prop_assert_eq!(joined(&joined(a, b), c).canonical(), joined(a, &joined(b, c)).canonical());
        prop_assert_eq!(joined(a, a).canonical(), a.canonical());
    }

    #[test]
    fn delta_join_equals_state_join(ops in proptest::collection::vec(op(), 0..60),
                                     order in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>())) {
        let run = run(&ops);
        let expected = total(&run).canonical();
        // Every delta, shuffled, each delivered twice, into a fresh replica.
        let mut ds: Vec<&D> = run.deltas.iter().chain(run.deltas.iter()).collect();
        let mut seed = order | 1;
        for i in (1..ds.len()).rev() {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
            ds.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let mut fresh = Map::new();
        for d in &ds {
            fresh.join(d);
        }
        prop_assert_eq!(fresh.canonical().0, expected.0);
        // Batching deltas with Delta::merge and joining the batch gives the same state.
        let mut batch = D::default();
        for d in &ds {
            batch.merge((*d).clone());
        }
        let mut batched = Map::new();
        batched.join(&batch);
        prop_assert_eq!(batched.canonical(), fresh.canonical());
    }

    #[test]
    fn loss_then_anti_entropy_converges(ops in proptest::collection::vec(op(), 0..60),
                                         keep in proptest::collection::vec(any::<bool>(), 60)) {
        let run = run(&ops);
        let expected = total(&run).canonical();
        let mut lossy = Map::new();
        for (d, k) in run.deltas.iter().zip(keep.iter().cycle()) {
            if *k {
                lossy.join(d);
            }
        }
        // Repair: per actor, ship what the lossy replica is missing (as anti-entropy does).
        for r in &run.replicas {
            lossy.join(&r.to_delta());
        }
        prop_assert_eq!(lossy.canonical().0, expected.0);
    }

    #[test]
    fn converged_state_matches_naive_model(ops in proptest::collection::vec(op(), 0..80)) {
        let run = run(&ops);
        let all = total(&run);
        // The naive OR-set: every add whose dot no replica removed.
        let model: Vec<(u8, Dot<u8>, u8)> = run
            .added
            .iter()
            .filter(|(_, dot, _)| !run.removed.contains(dot))
            .cloned()
            .collect();
        prop_assert_eq!(all.canonical().0, model);
        prop_assert_eq!(all.len(), all.canonical().0.len());
        // The incremental live digests equal a recomputation from scratch, on every replica.
        for m in run.replicas.iter().chain(std::iter::once(&all)) {
            for actor in 0..REPLICAS {
                let mut expect = pidmesh_crdt::LiveDigest::default();
                for (_, s) in m.actor_entries(&actor) {
                    expect.toggle(s.dot.seq, true);
                }
                prop_assert_eq!(m.actor_digest(&actor), expect);
            }
        }
        // Every replica's own context is gap-free for itself (so a version vector describes it).
        for (i, r) in run.replicas.iter().enumerate() {
            let row = r.context().row(&(i as u8)).cloned().unwrap_or_default();
            prop_assert_eq!(row.contiguous(), row.max());
        }
    }

    #[test]
    fn extract_chunks_rebuild_an_actor(ops in proptest::collection::vec(op(), 0..60), chunk in 1u64..5) {
        let run = run(&ops);
        let all = total(&run);
        let mut rebuilt = Map::new();
        for actor in 0..REPLICAS {
            let max = all.context().max(&actor);
            let mut start = 1;
            while start <= max {
                let end = (start + chunk - 1).min(max);
                rebuilt.join(&all.extract(&actor, &pidmesh_crdt::DotSet::from_range(start, end)));
                start = end + 1;
            }
        }
        prop_assert_eq!(rebuilt.canonical(), all.canonical());
    }
}

#[test]
fn add_wins_over_a_concurrent_remove() {
    let mut a = Map::new();
    let mut b = Map::new();
    let d1 = a.add(&0, 7, 1);
    b.join(&d1);
    // b removes what it saw; a concurrently adds again under the same key.
    let (rm, _) = b.remove(&1, &[d1.adds[0].1.dot.clone()]);
    let d2 = a.add(&0, 7, 2);
    a.join(&rm);
    b.join(&d2);
    assert_eq!(a.canonical(), b.canonical());
    let left: Vec<u8> = a.get(&7).iter().map(|s| s.value).collect();
    assert_eq!(
        left,
        vec![2],
        "the unobserved add survives, the observed one is gone"
    );
}

#[test]
fn forget_actor_drops_entries_and_row_and_a_resync_restores_them() {
    let mut a = Map::new();
    let mut b = Map::new();
    for k in 0..10 {
        let d = a.add(&0, k, k);
        b.join(&d);
    }
    b.add(&1, 99, 0);
    let dropped = b.forget_actor(&0);
    assert_eq!(dropped.len(), 10);
    assert_eq!(b.len(), 1);
    assert!(b.context().row(&0).is_none());
    b.join(&a.to_delta());
    assert_eq!(b.len(), 11);
}

#[test]
fn a_delta_carrying_the_same_add_twice_adds_it_once() {
    let mut a = Map::new();
    let d1 = a.add(&0, 1, 10);
    let d2 = a.add(&2, 2, 20);
    let d3 = a.add(&0, 3, 30);
    // Interleaved actors, and the first add again (a peer's buggy or replayed batch), even with
    // another value: the first copy is taken, the second ignored.
    let mut adds = Vec::new();
    for d in [&d1, &d2, &d3] {
        adds.extend(d.adds.iter().cloned());
    }
    let mut again = d1.adds[0].clone();
    again.1.value = 99;
    adds.push(again);
    let mut ctx = d1.ctx.clone();
    ctx.join(&d2.ctx);
    ctx.join(&d3.ctx);
    let dup = D { ctx, adds };
    let mut b = Map::new();
    let report = b.join(&dup);
    assert_eq!(report.added.len(), 3);
    assert_eq!(b.len(), 3);
    assert_eq!(b.canonical(), a.canonical());
    // Joined again: nothing new.
    assert!(b.join(&dup).is_empty());
    assert_eq!(b.canonical(), a.canonical());
}

/// A repeat inside one actor's first run (the adds stop rising) is caught too: right after
/// itself, or after a higher add.
#[test]
fn a_repeat_within_one_run_of_an_actor_adds_it_once() {
    let mut a = Map::new();
    let d1 = a.add(&0, 1, 10);
    let d2 = a.add(&0, 2, 20);
    for order in [[0usize, 0, 1], [0, 1, 0], [1, 0, 1]] {
        let all = [&d1, &d2];
        let adds: Vec<_> = order.iter().map(|&i| all[i].adds[0].clone()).collect();
        let mut ctx = d1.ctx.clone();
        ctx.join(&d2.ctx);
        let dup = D { ctx, adds };
        let mut b = Map::new();
        let report = b.join(&dup);
        assert_eq!(report.added.len(), 2, "order {order:?}");
        assert_eq!(b.len(), 2, "order {order:?}");
        assert_eq!(b.canonical(), a.canonical(), "order {order:?}");
    }
}

#[test]
fn an_add_missing_from_its_delta_context_is_still_learned() {
    let mut a = Map::new();
    let d = a.add(&4, 1, 10);
    // A delta that forgot to list its add's dot: the receiver takes the add and records the dot.
    let bare = D {
        ctx: Default::default(),
        adds: d.adds.clone(),
    };
    let mut b = Map::new();
    assert_eq!(b.join(&bare).added.len(), 1);
    assert!(b.context().contains(&Dot::new(4, 1)));
    assert!(
        b.join(&bare).is_empty(),
        "a dot once seen is not taken again"
    );
}
