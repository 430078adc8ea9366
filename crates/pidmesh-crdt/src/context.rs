//! The causal context: every dot a replica has seen, per actor.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::dots::{Dot, DotSet};

/// Every dot a replica (or a delta) has seen: one [`DotSet`] per actor.
///
/// A dot in the context but not in the store means "seen and since removed".
///
/// The rows are kept in a vector sorted by actor: a cluster has few actors, and a delta's context
/// (usually one row) is then one small allocation, cheap to make and to drop. It encodes as a
/// map from actor to row, in actor order.
///
/// The row a mutation touched last is remembered: runs of one actor (a node minting its own
/// dots, a batch of its own adds) find their row by one equality test instead of a search.
#[derive(Clone, Deserialize)]
#[serde(from = "Rows<A>")]
pub struct CausalContext<A: Ord> {
    /// Sorted by actor, one row per actor.
    rows: Vec<(A, DotSet)>,
    /// The index of the row a mutation found last: a hint, checked before use (any value is
    /// safe, and it is no part of the context's value).
    hint: usize,
}

impl<A: Ord> PartialEq for CausalContext<A> {
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows
    }
}

impl<A: Ord> Eq for CausalContext<A> {}

/// The encoded form: a struct with one field, a map from actor to row (a decoded map is sorted
/// and holds each actor once, the last of repeated keys winning).
#[derive(Deserialize)]
#[serde(rename = "CausalContext")]
struct Rows<A: Ord> {
    rows: BTreeMap<A, DotSet>,
}

impl<A: Ord> From<Rows<A>> for CausalContext<A> {
    fn from(w: Rows<A>) -> Self {
        Self {
            rows: w.rows.into_iter().collect(),
            hint: 0,
        }
    }
}

/// Encodes rows as a map, as the decoder expects.
struct RowsRef<'a, A>(&'a [(A, DotSet)]);

impl<A: Serialize> Serialize for RowsRef<'_, A> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(a, r)| (a, r)))
    }
}

impl<A: Ord + Serialize> Serialize for CausalContext<A> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("CausalContext", 1)?;
        st.serialize_field("rows", &RowsRef(&self.rows))?;
        st.end()
    }
}

impl<A: Ord + fmt::Debug> fmt::Debug for CausalContext<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CausalContext")
            .field("rows", &RowsDebug(&self.rows))
            .finish()
    }
}

struct RowsDebug<'a, A>(&'a [(A, DotSet)]);

impl<A: fmt::Debug> fmt::Debug for RowsDebug<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(a, r)| (a, r)))
            .finish()
    }
}

impl<A: Ord> Default for CausalContext<A> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            hint: 0,
        }
    }
}

impl<A: Ord + Clone> CausalContext<A> {
    /// The empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where `actor`'s row is, or where it would go.
    fn find(&self, actor: &A) -> Result<usize, usize> {
        if self.rows.get(self.hint).is_some_and(|(a, _)| a == actor) {
            return Ok(self.hint);
        }
        self.rows.binary_search_by(|(a, _)| a.cmp(actor))
    }

    /// [`Self::find`] for a mutation: remembers the row found (or about to be inserted).
    fn find_mut(&mut self, actor: &A) -> Result<usize, usize> {
        let at = self.find(actor);
        self.hint = match at {
            Ok(i) | Err(i) => i,
        };
        at
    }

    /// True if `dot` has been seen.
    pub fn contains(&self, dot: &Dot<A>) -> bool {
        self.row(&dot.actor).is_some_and(|r| r.contains(dot.seq))
    }

    /// Records `dot` as seen.
    pub fn insert(&mut self, dot: &Dot<A>) {
        match self.find_mut(&dot.actor) {
            Ok(i) => self.rows[i].1.insert(dot.seq),
            Err(i) => self
                .rows
                .insert(i, (dot.actor.clone(), DotSet::from_range(dot.seq, dot.seq))),
        }
    }

    /// Records the dot after the highest seen of `actor` and returns its sequence number (one
    /// search of the rows, no clone of a known actor).
    pub(crate) fn next_seq(&mut self, actor: &A) -> u64 {
        match self.find_mut(actor) {
            Ok(i) => {
                let row = &mut self.rows[i].1;
                let seq = row.max() + 1;
                row.insert(seq);
                seq
            }
            Err(i) => {
                self.rows
                    .insert(i, (actor.clone(), DotSet::from_range(1, 1)));
                1
            }
        }
    }

    /// [`Self::next_seq`] only if `f`, given the sequence number it would record, returns
    /// `Some`; otherwise nothing is recorded. One search of the rows for both.
    pub(crate) fn next_seq_if<R>(
        &mut self,
        actor: &A,
        f: impl FnOnce(u64) -> Option<R>,
    ) -> Option<R> {
        let at = self.find_mut(actor);
        let seq = match at {
            Ok(i) => self.rows[i].1.max() + 1,
            Err(_) => 1,
        };
        let out = f(seq)?;
        match at {
            Ok(i) => self.rows[i].1.insert(seq),
            Err(i) => self
                .rows
                .insert(i, (actor.clone(), DotSet::from_range(seq, seq))),
        }
        Some(out)
    }

    /// The row of `actor`, if any dot of it was seen.
    pub fn row(&self, actor: &A) -> Option<&DotSet> {
        let i = self.find(actor).ok()?;
        Some(&self.rows[i].1)
    }

    /// The row of `actor`, created empty if needed.
    pub fn row_mut(&mut self, actor: &A) -> &mut DotSet {
        let i = match self.find_mut(actor) {
            Ok(i) => i,
            Err(i) => {
                self.rows.insert(i, (actor.clone(), DotSet::new()));
                i
            }
        };
        &mut self.rows[i].1
    }

    /// Replaces the row of `actor`.
    pub fn set_row(&mut self, actor: A, row: DotSet) {
        match (self.find(&actor), row.is_empty()) {
            (Ok(i), true) => {
                self.rows.remove(i);
            }
            (Ok(i), false) => self.rows[i].1 = row,
            (Err(_), true) => {}
            (Err(i), false) => self.rows.insert(i, (actor, row)),
        }
    }

    /// Forgets every dot of `actor`; returns its row.
    pub fn remove_actor(&mut self, actor: &A) -> Option<DotSet> {
        let i = self.find(actor).ok()?;
        Some(self.rows.remove(i).1)
    }

    /// The highest sequence number seen from `actor`, or 0.
    pub fn max(&self, actor: &A) -> u64 {
        self.row(actor).map_or(0, DotSet::max)
    }

    /// Adds every dot of `other`.
    pub fn join(&mut self, other: &CausalContext<A>) {
        let known = self.rows.len();
        for (actor, row) in &other.rows {
            match self.rows[..known].binary_search_by(|(a, _)| a.cmp(actor)) {
                Ok(i) => self.rows[i].1.union_with(row),
                Err(_) => self.rows.push((actor.clone(), row.clone())),
            }
        }
        if self.rows.len() > known {
            // Two sorted runs (ours, then the new actors in order): a stable sort merges them
            // in linear time.
            self.rows.sort_by(|x, y| x.0.cmp(&y.0));
        }
    }

    /// True if every dot of `other` is in `self`.
    pub fn includes(&self, other: &CausalContext<A>) -> bool {
        other
            .rows
            .iter()
            .all(|(a, r)| self.row(a).map_or(r.is_empty(), |m| m.includes(r)))
    }

    /// True if some dot is in both contexts.
    pub fn intersects(&self, other: &CausalContext<A>) -> bool {
        other
            .rows
            .iter()
            .any(|(a, r)| self.row(a).is_some_and(|m| m.intersects(r)))
    }

    /// Iterates `(actor, row)` in actor order.
    pub fn rows(&self) -> impl Iterator<Item = (&A, &DotSet)> {
        self.rows.iter().map(|(a, r)| (a, r))
    }

    /// True if no dot was seen.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The context as it was stored before: a map from actor to row.
    type Model = BTreeMap<u8, DotSet>;

    fn ranges() -> impl Strategy<Value = Vec<(u8, u64, u64)>> {
        proptest::collection::vec((0u8..6, 1u64..40, 0u64..4), 0..12)
    }

    fn build(rs: &[(u8, u64, u64)]) -> (CausalContext<u8>, Model) {
        let mut c = CausalContext::new();
        let mut m = Model::new();
        for &(a, s, l) in rs {
            for seq in s..=s + l {
                c.insert(&Dot::new(a, seq));
            }
            m.entry(a).or_default().insert_range(s, s + l);
        }
        (c, m)
    }

    proptest! {
        #[test]
        fn matches_a_map_of_rows(x in ranges(), y in ranges(), gone in 0u8..6, probe in 0u64..45) {
            let (mut a, mut ma) = build(&x);
            let (b, mb) = build(&y);
            prop_assert_eq!(a.rows().map(|(k, r)| (*k, r.clone())).collect::<Vec<_>>(),
                            ma.iter().map(|(k, r)| (*k, r.clone())).collect::<Vec<_>>());
            prop_assert_eq!(a.includes(&b), mb.iter().all(|(k, r)| ma.get(k).map_or(r.is_empty(), |m| m.includes(r))));
            prop_assert_eq!(a.intersects(&b), mb.iter().any(|(k, r)| ma.get(k).is_some_and(|m| m.intersects(r))));
            for actor in 0..6 {
                prop_assert_eq!(a.contains(&Dot::new(actor, probe)), ma.get(&actor).is_some_and(|r| r.contains(probe)));
                prop_assert_eq!(a.max(&actor), ma.get(&actor).map_or(0, DotSet::max));
            }
            // The encoding is the map's.
            prop_assert_eq!(postcard::to_stdvec(&a).expect("encodes"), postcard::to_stdvec(&ma).expect("encodes"));
            let back: CausalContext<u8> = postcard::from_bytes(&postcard::to_stdvec(&a).expect("encodes")).expect("decodes");
            prop_assert_eq!(&back, &a);
            a.join(&b);
            for (k, r) in &mb {
                ma.entry(*k).or_default().union_with(r);
            }
            prop_assert_eq!(a.rows().map(|(k, r)| (*k, r.clone())).collect::<Vec<_>>(),
                            ma.iter().map(|(k, r)| (*k, r.clone())).collect::<Vec<_>>());
            prop_assert_eq!(a.remove_actor(&gone), ma.remove(&gone));
            let next = a.next_seq(&gone);
            prop_assert_eq!(next, 1);
            prop_assert!(a.contains(&Dot::new(gone, 1)));
            a.set_row(gone, DotSet::new());
            prop_assert!(a.row(&gone).is_none());
            prop_assert!(a.rows().map(|(k, _)| *k).collect::<Vec<_>>().windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn the_remembered_row_follows_inserts_and_removals_and_is_no_part_of_the_value() {
        let mut a = CausalContext::new();
        let mut b = CausalContext::new();
        // `a` last touched actor 9's row, `b` actor 1's: equal all the same.
        for (actor, seq) in [(5u8, 1u64), (1, 1), (9, 1)] {
            a.insert(&Dot::new(actor, seq));
        }
        for (actor, seq) in [(9u8, 1u64), (5, 1), (1, 1)] {
            b.insert(&Dot::new(actor, seq));
        }
        assert_eq!(a, b);
        // Rows inserted before and removed around the remembered one move it; every later
        // mutation still lands in its actor's row.
        assert_eq!(a.next_seq(&9), 2);
        a.insert(&Dot::new(0, 1));
        assert_eq!(a.next_seq(&9), 3);
        a.remove_actor(&1);
        assert_eq!(a.next_seq(&9), 4);
        assert_eq!(a.next_seq(&5), 2);
        a.set_row(5, DotSet::new());
        assert_eq!(a.next_seq(&9), 5);
        assert_eq!(
            a.rows().map(|(k, r)| (*k, r.clone())).collect::<Vec<_>>(),
            vec![(0, DotSet::from_range(1, 1)), (9, DotSet::from_range(1, 5))]
        );
    }

    #[test]
    fn decoding_keeps_one_row_per_actor_in_order() {
        // A map on the wire with actors out of order and one repeated: sorted, the last wins.
        let mut wire = vec![3u8];
        for (actor, start, end) in [(5u8, 1u64, 2u64), (1, 4, 4), (5, 7, 9)] {
            wire.push(actor);
            wire.extend(postcard::to_stdvec(&DotSet::from_range(start, end)).expect("encodes"));
        }
        let c: CausalContext<u8> = postcard::from_bytes(&wire).expect("decodes");
        let rows: Vec<(u8, DotSet)> = c.rows().map(|(a, r)| (*a, r.clone())).collect();
        assert_eq!(
            rows,
            vec![(1, DotSet::from_range(4, 4)), (5, DotSet::from_range(7, 9))]
        );
    }
}
