//! The delta-state add-wins OR-map.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::context::CausalContext;
use crate::dots::{Dot, DotSet};

/// One value stored under a key, tagged by the dot of the add that created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot<A, V> {
    /// The dot of the add.
    pub dot: Dot<A>,
    /// The value.
    pub value: V,
}

/// A state fragment to join into a replica: the adds it carries and every dot it has seen.
///
/// Mutators return deltas; a whole replica is also a delta ([`OrMap::to_delta`]).
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
    /// Same rule as [`OrMap::join`]: an add survives unless the other side has seen its dot and
    /// does not carry it.
    ///
    /// Both deltas must speak for their own adds (every add's dot is in the delta's `ctx`), as
    /// every delta [`OrMap`] returns does; merging keeps that true. Then an add whose dot `self`
    /// has not seen cannot already be in `self`, so batching one small delta at a time costs
    /// O(size of `other`), not O(size of the batch).
    pub fn merge(&mut self, other: Delta<A, K, V>) {
        debug_assert!(
            other.adds.iter().all(|(_, s)| other.ctx.contains(&s.dot)),
            "a delta must speak for its own adds"
        );
        let theirs: HashSet<&Dot<A>> = other.adds.iter().map(|(_, s)| &s.dot).collect();
        // `other` can drop an add of ours only if it speaks for a dot it does not carry.
        let ctx_dots: u64 = other.ctx.rows().map(|(_, r)| r.len()).sum();
        if ctx_dots != theirs.len() as u64 {
            self.adds
                .retain(|(_, s)| theirs.contains(&s.dot) || !other.ctx.contains(&s.dot));
        }
        for (k, s) in other.adds {
            if !self.ctx.contains(&s.dot) {
                self.adds.push((k, s));
            }
        }
        self.ctx.join(&other.ctx);
    }
}

/// An order-independent summary of one actor's live entries: how many, and an XOR of a
/// mixing hash of their sequence numbers. Two replicas holding the same live dots of an actor
/// have equal digests; anti-entropy uses it to find replicas holding entries the actor removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LiveDigest {
    /// Number of live entries.
    pub count: u64,
    /// XOR of [`LiveDigest::mix`] over their sequence numbers.
    pub hash: u64,
}

impl LiveDigest {
    /// The mixing function (splitmix64's finalizer): spreads nearby sequence numbers.
    pub fn mix(seq: u64) -> u64 {
        let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Adds or removes one sequence number (XOR is its own inverse; `count` moves by `sign`).
    pub fn toggle(&mut self, seq: u64, add: bool) {
        self.hash ^= Self::mix(seq);
        if add {
            self.count += 1;
        } else {
            self.count = self.count.saturating_sub(1);
        }
    }
}

/// Entries taken out of a map, with their keys.
pub type Removed<A, K, V> = Vec<(K, Slot<A, V>)>;

/// The delta of a replacement and the entry it replaced.
pub type Replaced<A, K, V> = (Delta<A, K, V>, Slot<A, V>);

/// A map's state in comparable form: sorted `(key, dot, value)` triples and the context.
pub type Canonical<A, K, V> = (Vec<(K, Dot<A>, V)>, CausalContext<A>);

/// What a [`OrMap::join`] changed, so callers can emit events and re-check conflicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinReport<A, K, V> {
    /// Entries that became visible: key and dot (the value is in the map).
    pub added: Vec<(K, Dot<A>)>,
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

/// A delta-state add-wins observed-remove map from keys to sets of dotted values.
///
/// * Each add mints a fresh dot of its actor and stores `(dot, value)` under the key; a key can hold
///   any number of values (a group) and the caller decides what more than one means (a conflict, for
///   unique names).
/// * A remove drops the observed dots and records them in the context, so a concurrent add that
///   the remover did not see survives (add wins). Removes also mint a dot, so every mutation
///   advances its actor's version vector and anti-entropy can tell that a replica missed one.
/// * [`OrMap::join`] is commutative, associative and idempotent, and accepts deltas in any order,
///   duplicated or after a loss repaired by a later, larger delta.
/// * [`OrMap::forget_actor`] drops every entry and the context row of one actor, cheaply (used when
///   a node is declared down).
///
/// Costs: `join` of a delta is O(|delta| · log n); a whole-state join is O(n).
#[derive(Debug, Clone)]
pub struct OrMap<A: Ord, K, V> {
    entries: HashMap<K, Vec<Slot<A, V>>>,
    /// actor → seq → key, for removal by dot and per-actor purge.
    index: HashMap<A, BTreeMap<u64, K>>,
    /// actor → digest of its live entries, kept up to date by every insert and removal.
    digests: HashMap<A, LiveDigest>,
    ctx: CausalContext<A>,
    len: usize,
}

impl<A: Ord, K, V> Default for OrMap<A, K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            index: HashMap::new(),
            digests: HashMap::new(),
            ctx: CausalContext::default(),
            len: 0,
        }
    }
}

impl<A, K, V> OrMap<A, K, V>
where
    A: Ord + Clone + Hash,
    K: Clone + Eq + Hash,
    V: Clone,
{
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of live entries (values), over all keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no entry is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of keys with at least one entry.
    pub fn key_count(&self) -> usize {
        self.entries.len()
    }

    /// The entries under `key` (empty if none).
    pub fn get(&self, key: &K) -> &[Slot<A, V>] {
        self.entries.get(key).map_or(&[], Vec::as_slice)
    }

    /// The entry with `dot`, if live.
    pub fn get_dot(&self, dot: &Dot<A>) -> Option<(&K, &Slot<A, V>)> {
        let key = self.index.get(&dot.actor)?.get(&dot.seq)?;
        let slot = self.entries.get(key)?.iter().find(|s| s.dot == *dot)?;
        Some((key, slot))
    }

    /// Iterates `(key, entries)` in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &[Slot<A, V>])> {
        self.entries.iter().map(|(k, v)| (k, v.as_slice()))
    }

    /// The dots seen so far.
    pub fn context(&self) -> &CausalContext<A> {
        &self.ctx
    }

    /// Iterates the live entries of `actor` with their keys, by ascending sequence number.
    pub fn actor_entries<'a>(
        &'a self,
        actor: &A,
    ) -> impl Iterator<Item = (&'a K, &'a Slot<A, V>)> + 'a {
        self.actor_range(actor, 1, u64::MAX)
    }

    /// Iterates the live entries of `actor` with a sequence number in `start ..= end`, ascending.
    pub fn actor_range<'a>(
        &'a self,
        actor: &A,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = (&'a K, &'a Slot<A, V>)> + 'a {
        let actor = actor.clone();
        self.index.get(&actor).into_iter().flat_map(move |m| {
            let actor = actor.clone();
            m.range(start..=end.max(start))
                .filter(move |_| start <= end)
                .filter_map(move |(seq, key)| {
                    let slot = self
                        .entries
                        .get(key)?
                        .iter()
                        .find(|s| s.dot.actor == actor && s.dot.seq == *seq)?;
                    Some((key, slot))
                })
        })
    }

    /// The digest of `actor`'s live entries (see [`LiveDigest`]).
    pub fn actor_digest(&self, actor: &A) -> LiveDigest {
        self.digests.get(actor).copied().unwrap_or_default()
    }

    /// The number of live entries of `actor`.
    pub fn actor_len(&self, actor: &A) -> usize {
        self.index.get(actor).map_or(0, BTreeMap::len)
    }

    fn next_dot(&mut self, actor: &A) -> Dot<A> {
        let dot = Dot::new(actor.clone(), self.ctx.max(actor) + 1);
        self.ctx.insert(&dot);
        dot
    }

    fn insert_slot(&mut self, key: K, slot: Slot<A, V>) {
        self.digests
            .entry(slot.dot.actor.clone())
            .or_default()
            .toggle(slot.dot.seq, true);
        self.index
            .entry(slot.dot.actor.clone())
            .or_default()
            .insert(slot.dot.seq, key.clone());
        self.entries.entry(key).or_default().push(slot);
        self.len += 1;
    }

    /// Drops the live entry with `dot`, if any, returning it with its key. The context is untouched.
    fn take_dot(&mut self, dot: &Dot<A>) -> Option<(K, Slot<A, V>)> {
        let per_actor = self.index.get_mut(&dot.actor)?;
        let key = per_actor.remove(&dot.seq)?;
        if per_actor.is_empty() {
            self.index.remove(&dot.actor);
            self.digests.remove(&dot.actor);
        } else if let Some(d) = self.digests.get_mut(&dot.actor) {
            d.toggle(dot.seq, false);
        }
        let slots = self.entries.get_mut(&key)?;
        let pos = slots.iter().position(|s| s.dot == *dot)?;
        let slot = slots.swap_remove(pos);
        if slots.is_empty() {
            self.entries.remove(&key);
        }
        self.len -= 1;
        Some((key, slot))
    }

    /// Adds `value` under `key` with a fresh dot of `actor`; returns the delta to ship.
    pub fn add(&mut self, actor: &A, key: K, value: V) -> Delta<A, K, V> {
        let dot = self.next_dot(actor);
        let slot = Slot {
            dot: dot.clone(),
            value,
        };
        self.insert_slot(key.clone(), slot.clone());
        let mut ctx = CausalContext::new();
        ctx.insert(&dot);
        Delta {
            ctx,
            adds: vec![(key, slot)],
        }
    }

    /// Removes the entries with the given dots (those not live are ignored) and mints a dot of
    /// `actor` for the removal itself; returns the delta to ship and the removed entries.
    pub fn remove(&mut self, actor: &A, dots: &[Dot<A>]) -> (Delta<A, K, V>, Removed<A, K, V>) {
        let mut ctx = CausalContext::new();
        let mut removed = Vec::new();
        for dot in dots {
            if let Some(kv) = self.take_dot(dot) {
                removed.push(kv);
            }
            ctx.insert(dot);
        }
        let own = self.next_dot(actor);
        ctx.insert(&own);
        (
            Delta {
                ctx,
                adds: Vec::new(),
            },
            removed,
        )
    }

    /// Replaces the live entry `old` by `value` under the same key, with a fresh dot of `actor`.
    /// Returns `None` (and changes nothing) if `old` is not live.
    pub fn replace(&mut self, actor: &A, old: &Dot<A>, value: V) -> Option<Replaced<A, K, V>> {
        let (key, previous) = self.take_dot(old)?;
        let mut delta = self.add(actor, key, value);
        delta.ctx.insert(old);
        Some((delta, previous))
    }

    /// Joins a delta (or a whole state) into this replica.
    pub fn join(&mut self, delta: &Delta<A, K, V>) -> JoinReport<A, K, V> {
        let mut report = JoinReport::default();
        let carried: HashSet<&Dot<A>> = delta.adds.iter().map(|(_, s)| &s.dot).collect();
        // 1. Drop local entries whose dot the delta has seen but does not carry.
        for (actor, row) in delta.ctx.rows() {
            let Some(local) = self.index.get(actor) else {
                continue;
            };
            let mut doomed = Vec::new();
            for &(a, b) in row.ranges() {
                for (&seq, _) in local.range(a..=b) {
                    let dot = Dot::new(actor.clone(), seq);
                    if !carried.contains(&dot) {
                        doomed.push(dot);
                    }
                }
            }
            for dot in doomed {
                if let Some(kv) = self.take_dot(&dot) {
                    report.removed.push(kv);
                }
            }
        }
        // 2. Take the delta's entries whose dots this replica has never seen (each dot once).
        //    The context is updated in bulk afterwards: inserting dot by dot in arbitrary order
        //    fragments the range sets and makes a whole-state join quadratic.
        let mut taken: HashSet<&Dot<A>> = HashSet::new();
        let mut uncovered = Vec::new();
        for (key, slot) in &delta.adds {
            if !self.ctx.contains(&slot.dot) && taken.insert(&slot.dot) {
                self.insert_slot(key.clone(), slot.clone());
                report.added.push((key.clone(), slot.dot.clone()));
            }
            if !delta.ctx.contains(&slot.dot) {
                uncovered.push(slot.dot.clone());
            }
        }
        // 3. Learn every dot the delta has seen (and any add dot its context forgot to list).
        self.ctx.join(&delta.ctx);
        for dot in &uncovered {
            self.ctx.insert(dot);
        }
        report
    }

    /// Forgets `actor` entirely: its entries and its context row. Returns the dropped entries.
    ///
    /// This is not a CRDT operation (it is local and not shipped): it is how a replica lets go of
    /// a node that membership declared down. A later join of that actor's state brings it back.
    pub fn forget_actor(&mut self, actor: &A) -> Vec<(K, Slot<A, V>)> {
        let seqs: Vec<u64> = self
            .index
            .get(actor)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(kv) = self.take_dot(&Dot::new(actor.clone(), seq)) {
                out.push(kv);
            }
        }
        self.ctx.remove_actor(actor);
        self.digests.remove(actor);
        out
    }

    /// The part of the state about `actor`'s dots in `seqs`: the live entries among them and the
    /// dots themselves (restricted to what this replica has seen). Joining it into a replica that
    /// lacks those dots brings it up to date for them; use it for anti-entropy and chunked snapshots.
    pub fn extract(&self, actor: &A, seqs: &DotSet) -> Delta<A, K, V> {
        let mut ctx = CausalContext::new();
        let seen = self.ctx.row(actor).cloned().unwrap_or_default();
        let mut row = DotSet::new();
        let mut adds = Vec::new();
        for &(a, b) in seqs.ranges() {
            row.union_with(&seen.clipped(a, b));
            if let Some(local) = self.index.get(actor) {
                for (&seq, key) in local.range(a..=b) {
                    if let Some(slot) = self
                        .entries
                        .get(key)
                        .and_then(|v| v.iter().find(|s| s.dot.actor == *actor && s.dot.seq == seq))
                    {
                        adds.push((key.clone(), slot.clone()));
                    }
                }
            }
        }
        ctx.set_row(actor.clone(), row);
        Delta { ctx, adds }
    }

    /// The whole state as a delta.
    pub fn to_delta(&self) -> Delta<A, K, V> {
        let adds = self
            .entries
            .iter()
            .flat_map(|(k, v)| v.iter().map(move |s| (k.clone(), s.clone())))
            .collect();
        Delta {
            ctx: self.ctx.clone(),
            adds,
        }
    }
}

impl<A, K, V> OrMap<A, K, V>
where
    A: Ord + Clone + Hash,
    K: Clone + Eq + Hash + Ord,
    V: Clone + Ord,
{
    /// The state in a canonical, comparable form: entries sorted by (key, dot, value), and the context.
    pub fn canonical(&self) -> Canonical<A, K, V> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .flat_map(|(k, slots)| {
                slots
                    .iter()
                    .map(move |s| (k.clone(), s.dot.clone(), s.value.clone()))
            })
            .collect();
        v.sort();
        (v, self.ctx.clone())
    }
}
