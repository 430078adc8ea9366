//! Deltas (what replicas ship to each other) and join reports (what a join changed).

use std::hash::Hash;

use hashbrown::HashSet;
use serde::{Deserialize, Serialize};

use crate::context::CausalContext;
use crate::dots::Dot;
use crate::map::Slot;

/// A state fragment to join into a replica: the adds it carries and every dot it has seen.
///
/// Mutators return deltas; a whole replica is also a delta ([`OrMap::to_delta`](crate::OrMap::to_delta)).
/// A dot in `ctx` with no add in `adds` tells the receiver to drop that dot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta<A: Ord, K, V> {
    /// The dots this delta speaks for.
    pub ctx: CausalContext<A>,
    /// The live entries among them.
    pub adds: Vec<(K, Slot<A, V>)>,
}

impl<A: Ord + Clone + Hash, K: Clone, V: Clone> Default for Delta<A, K, V> {
    fn default() -> Self {
        Self {
            ctx: CausalContext::new(),
            adds: Vec::new(),
        }
    }
}

impl<A: Ord + Clone + Hash, K: Clone, V: Clone> Delta<A, K, V> {
    /// True if the delta says nothing.
    pub fn is_empty(&self) -> bool {
        self.ctx.is_empty() && self.adds.is_empty()
    }

    /// Joins `other` into `self` (used to batch deltas before sending them).
    ///
    /// Same rule as [`OrMap::join`](crate::OrMap::join): an add survives unless the other side has seen its dot and
    /// does not carry it. Both deltas must list their adds' dots in their contexts, as every
    /// delta an [`OrMap`](crate::OrMap) makes does. Costs O(|other|) plus, only when the two contexts share a
    /// dot (an add removed within the same batch), a pass over `self`: batching a run of
    /// operations stays linear in its length.
    pub fn merge(&mut self, other: Delta<A, K, V>) {
        debug_assert!(
            other.adds.iter().all(|(_, s)| other.ctx.contains(&s.dot)),
            "a delta must speak for its own adds"
        );
        if self.ctx.intersects(&other.ctx) {
            let theirs: HashSet<&Dot<A>> = other.adds.iter().map(|(_, s)| &s.dot).collect();
            self.adds
                .retain(|(_, s)| theirs.contains(&s.dot) || !other.ctx.contains(&s.dot));
        }
        for (k, s) in other.adds {
            // An add this side already holds has its dot in `self.ctx`.
            if !self.ctx.contains(&s.dot) {
                self.adds.push((k, s));
            }
        }
        self.ctx.join(&other.ctx);
    }
}

/// An entry a [`OrMap::join`](crate::OrMap::join) made visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added<A, K, V> {
    /// Its key.
    pub key: K,
    /// A copy of the entry (dot and value).
    pub slot: Slot<A, V>,
    /// True if the key held no other entry when this one was stored. A key left holding more
    /// than one entry by a join has at least one added entry with `alone` false (entries the
    /// join drops go before it adds any), so callers learn which keys gained a second entry
    /// without reading the map again.
    pub alone: bool,
}

/// What a [`OrMap::join`](crate::OrMap::join) changed, so callers can emit events and re-check conflicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinReport<A, K, V> {
    /// Entries that became visible, in the delta's order.
    pub added: Vec<Added<A, K, V>>,
    /// Entries that were dropped, with their values.
    pub removed: Vec<(K, Slot<A, V>)>,
}

impl<A, K, V> Default for JoinReport<A, K, V> {
    fn default() -> Self {
        Self {
            added: Vec::new(),
            removed: Vec::new(),
        }
    }
}

impl<A, K, V> JoinReport<A, K, V> {
    /// True if the join changed no entry.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}
