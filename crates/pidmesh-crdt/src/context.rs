//! The causal context: every dot a replica has seen, per actor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dots::{Dot, DotSet};

/// Every dot a replica (or a delta) has seen: one [`DotSet`] per actor.
///
/// A dot in the context but not in the store means "seen and since removed".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CausalContext<A: Ord> {
    rows: BTreeMap<A, DotSet>,
}

impl<A: Ord> Default for CausalContext<A> {
    fn default() -> Self {
        Self {
            rows: BTreeMap::new(),
        }
    }
}

impl<A: Ord + Clone> CausalContext<A> {
    /// The empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// True if `dot` has been seen.
    pub fn contains(&self, dot: &Dot<A>) -> bool {
        self.rows
            .get(&dot.actor)
            .is_some_and(|r| r.contains(dot.seq))
    }

    /// Records `dot` as seen.
    pub fn insert(&mut self, dot: &Dot<A>) {
        // The actor is cloned only for a new row.
        if let Some(row) = self.rows.get_mut(&dot.actor) {
            row.insert(dot.seq);
            return;
        }
        self.rows
            .insert(dot.actor.clone(), DotSet::from_range(dot.seq, dot.seq));
    }

    /// Records the dot after the highest seen of `actor` and returns its sequence number (one
    /// search of the rows, no clone of a known actor).
    pub(crate) fn next_seq(&mut self, actor: &A) -> u64 {
        if let Some(row) = self.rows.get_mut(actor) {
            let seq = row.max() + 1;
            row.insert(seq);
            return seq;
        }
        self.rows.insert(actor.clone(), DotSet::from_range(1, 1));
        1
    }

    /// The row of `actor`, if any dot of it was seen.
    pub fn row(&self, actor: &A) -> Option<&DotSet> {
        self.rows.get(actor)
    }

    /// The row of `actor`, created empty if needed.
    pub fn row_mut(&mut self, actor: &A) -> &mut DotSet {
        self.rows.entry(actor.clone()).or_default()
    }

    /// Replaces the row of `actor`.
    pub fn set_row(&mut self, actor: A, row: DotSet) {
        if row.is_empty() {
            self.rows.remove(&actor);
        } else {
            self.rows.insert(actor, row);
        }
    }

    /// Forgets every dot of `actor`; returns its row.
    pub fn remove_actor(&mut self, actor: &A) -> Option<DotSet> {
        self.rows.remove(actor)
    }

    /// The highest sequence number seen from `actor`, or 0.
    pub fn max(&self, actor: &A) -> u64 {
        self.rows.get(actor).map_or(0, DotSet::max)
    }

    /// Adds every dot of `other`.
    pub fn join(&mut self, other: &CausalContext<A>) {
        for (actor, row) in &other.rows {
            match self.rows.get_mut(actor) {
                Some(mine) => mine.union_with(row),
                None => {
                    self.rows.insert(actor.clone(), row.clone());
                }
            }
        }
    }

    /// True if every dot of `other` is in `self`.
    pub fn includes(&self, other: &CausalContext<A>) -> bool {
        other
            .rows
            .iter()
            .all(|(a, r)| self.rows.get(a).map_or(r.is_empty(), |m| m.includes(r)))
    }

    /// True if some dot is in both contexts.
    pub fn intersects(&self, other: &CausalContext<A>) -> bool {
        other
            .rows
            .iter()
            .any(|(a, r)| self.rows.get(a).is_some_and(|m| m.intersects(r)))
    }

    /// Iterates `(actor, row)` in actor order.
    pub fn rows(&self) -> impl Iterator<Item = (&A, &DotSet)> {
        self.rows.iter()
    }

    /// True if no dot was seen.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
