//! The delta-state add-wins OR-map.

use std::hash::Hash;
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use serde::{Deserialize, Serialize};

use crate::context::CausalContext;
use crate::dots::{Dot, DotSet};
use crate::seqindex::SeqIndex;
use crate::store::{MapReader, SlotIter, SlotRef, Store};

pub use crate::delta::{Added, Delta, JoinReport};

/// One value stored under a key, tagged by the dot of the add that created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot<A, V> {
    /// The dot of the add.
    pub dot: Dot<A>,
    /// The value.
    pub value: V,
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
/// Storage: each key is stored once, with its first entry inline beside it (value, interned actor
/// index and sequence number packed in 8 bytes; the record rounded up to a multiple of 32 bytes
/// so that it spans as few cache lines as its size allows; plus ~10 bytes of hash table at 1M
/// keys), so a lookup of a key with one entry reads one record; a key's further entries
/// (conflicts, group members) cost their value plus 24 bytes each. Every entry also costs ~5
/// bytes in a per-actor index by sequence number.
/// Entries live in sharded storage that [`MapReader`]s (see [`OrMap::reader`]) read from other
/// threads while this map keeps changing. Actors are interned for the map's life (a few bytes
/// each, never reclaimed).
///
/// Reads hand out owned copies (`get`, `get_dot`, `iter`...) or borrowed views inside a closure
/// ([`OrMap::read`]).
///
/// Costs: `join` of a delta is O(|delta| · log n); a whole-state join is O(n).
pub struct OrMap<A: Ord, K, V> {
    store: Arc<Store<A, K, V>>,
    /// Interned actors: index → actor, and back.
    actors: Vec<A>,
    actor_ids: HashMap<A, u32>,
    /// The actor interned last (an index into `actors`; meaningless while `actors` is empty).
    last_actor: u32,
    /// Per interned actor: its live entries by sequence number (global entry ids), and their digest.
    per_actor: Vec<ActorEntries>,
    ctx: CausalContext<A>,
    len: usize,
}

#[derive(Debug, Clone, Default)]
struct ActorEntries {
    index: SeqIndex,
    digest: LiveDigest,
}

impl<A: Ord, K, V> Default for OrMap<A, K, V> {
    fn default() -> Self {
        Self {
            store: Arc::default(),
            actors: Vec::new(),
            actor_ids: HashMap::new(),
            last_actor: 0,
            per_actor: Vec::new(),
            ctx: CausalContext::default(),
            len: 0,
        }
    }
}

impl<A: Ord + Clone, K: Clone, V: Clone> Clone for OrMap<A, K, V> {
    /// A deep copy; readers of `self` keep reading `self`.
    fn clone(&self) -> Self {
        Self {
            store: Arc::new(self.store.deep_clone()),
            actors: self.actors.clone(),
            actor_ids: self.actor_ids.clone(),
            last_actor: self.last_actor,
            per_actor: self.per_actor.clone(),
            ctx: self.ctx.clone(),
            len: self.len,
        }
    }
}

impl<A: Ord + std::fmt::Debug, K, V> std::fmt::Debug for OrMap<A, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrMap")
            .field("len", &self.len)
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
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

    /// A handle that reads this map's entries from any thread while the map changes.
    pub fn reader(&self) -> MapReader<A, K, V> {
        MapReader {
            store: Arc::clone(&self.store),
        }
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
        self.store.key_count()
    }

    /// Owned copies of the entries under `key` (empty if none), in no particular order.
    pub fn get(&self, key: &K) -> Vec<Slot<A, V>> {
        self.store.read(key, |it| it.map(|s| s.to_slot()).collect())
    }

    /// Calls `f` with borrowed views of the entries under `key` (without copying them).
    pub fn read<R>(&self, key: &K, f: impl FnOnce(SlotIter<'_, A, K, V>) -> R) -> R {
        self.store.read(key, f)
    }

    fn actor_id(&self, actor: &A) -> Option<u32> {
        if self.actors.get(self.last_actor as usize) == Some(actor) {
            return Some(self.last_actor);
        }
        self.actor_ids.get(actor).copied()
    }

    fn intern(&mut self, actor: &A) -> u32 {
        // Runs of one actor (a node's own adds, a delta from one origin) skip the hash lookup.
        if self.actors.get(self.last_actor as usize) == Some(actor) {
            return self.last_actor;
        }
        if let Some(&id) = self.actor_ids.get(actor) {
            self.last_actor = id;
            return id;
        }
        let id = self.actors.len() as u32;
        self.last_actor = id;
        self.actors.push(actor.clone());
        self.actor_ids.insert(actor.clone(), id);
        self.per_actor.push(ActorEntries::default());
        self.store.push_actor(actor);
        id
    }

    fn entries_of(&self, actor: &A) -> Option<&ActorEntries> {
        self.per_actor.get(self.actor_id(actor)? as usize)
    }

    /// The entry with `dot`, if live: an owned copy with its key.
    pub fn get_dot(&self, dot: &Dot<A>) -> Option<(K, Slot<A, V>)> {
        let id = self.entries_of(&dot.actor)?.index.get(dot.seq)?;
        self.store.with_id(id, |k, s| (k.clone(), s.to_slot()))
    }

    /// True if the entry with `dot` is live.
    pub fn contains_dot(&self, dot: &Dot<A>) -> bool {
        self.entries_of(&dot.actor)
            .is_some_and(|e| e.index.get(dot.seq).is_some())
    }

    /// Owned copies of every `(key, entries)`, in no particular order.
    pub fn iter(&self) -> std::vec::IntoIter<(K, Vec<Slot<A, V>>)> {
        let mut out = Vec::with_capacity(self.len);
        self.store.for_each_key(|k, it| {
            out.push((k.clone(), it.map(|s| s.to_slot()).collect()));
        });
        out.into_iter()
    }

    /// Calls `f` for every entry with its key, in no particular order, without copying them.
    pub fn for_each(&self, mut f: impl FnMut(&K, SlotRef<'_, A, V>)) {
        self.store.for_each_key(|k, it| {
            for s in it {
                f(k, s);
            }
        });
    }

    /// The dots seen so far.
    pub fn context(&self) -> &CausalContext<A> {
        &self.ctx
    }

    /// Owned copies of the live entries of `actor` with their keys, by ascending sequence number.
    pub fn actor_entries(&self, actor: &A) -> std::vec::IntoIter<(K, Slot<A, V>)> {
        self.actor_range(actor, 1, u64::MAX)
    }

    /// Owned copies of the live entries of `actor` with a sequence number in `start ..= end`,
    /// ascending.
    pub fn actor_range(
        &self,
        actor: &A,
        start: u64,
        end: u64,
    ) -> std::vec::IntoIter<(K, Slot<A, V>)> {
        self.actor_range_limit(actor, start, end, usize::MAX)
    }

    /// [`OrMap::actor_range`] that stops after `limit` entries (the lowest sequence numbers):
    /// its cost follows the entries returned, not the width of the range.
    pub fn actor_range_limit(
        &self,
        actor: &A,
        start: u64,
        end: u64,
        limit: usize,
    ) -> std::vec::IntoIter<(K, Slot<A, V>)> {
        let mut out = Vec::new();
        if let Some(e) = self.entries_of(actor) {
            for (_, id) in e.index.range(start, end).take(limit) {
                if let Some(kv) = self.store.with_id(id, |k, s| (k.clone(), s.to_slot())) {
                    out.push(kv);
                }
            }
        }
        out.into_iter()
    }

    /// The digest of `actor`'s live entries (see [`LiveDigest`]).
    pub fn actor_digest(&self, actor: &A) -> LiveDigest {
        self.entries_of(actor).map(|e| e.digest).unwrap_or_default()
    }

    /// The number of live entries of `actor`.
    pub fn actor_len(&self, actor: &A) -> usize {
        self.entries_of(actor).map_or(0, |e| e.index.len())
    }

    fn next_dot(&mut self, actor: &A) -> Dot<A> {
        Dot::new(actor.clone(), self.ctx.next_seq(actor))
    }

    /// Stores an entry of the interned actor `a` and indexes it; returns whether its key held
    /// no entry before.
    fn insert_slot(&mut self, key: K, a: u32, seq: u64, value: V) -> bool {
        let (id, alone) = self.store.insert(key, a, seq, value);
        self.index_slot(a, seq, id);
        alone
    }

    /// Indexes the entry just stored with global id `id`.
    fn index_slot(&mut self, a: u32, seq: u64, id: u32) {
        let e = &mut self.per_actor[a as usize];
        if let Some(old) = e.index.insert(seq, id) {
            // A dot is stored at most once (callers check the context first); should it ever be
            // stored twice, keep the index and the storage in step.
            let _ = self.store.remove(old);
        } else {
            e.digest.toggle(seq, true);
            self.len += 1;
        }
    }

    /// Drops the live entry with `dot`, if any, returning it with its key. The context is untouched.
    fn take_dot(&mut self, dot: &Dot<A>) -> Option<(K, Slot<A, V>)> {
        let a = self.actor_id(&dot.actor)?;
        let e = self.per_actor.get_mut(a as usize)?;
        let id = e.index.remove(dot.seq)?;
        if e.index.is_empty() {
            e.digest = LiveDigest::default();
        } else {
            e.digest.toggle(dot.seq, false);
        }
        let taken = self.store.remove(id)?;
        self.len -= 1;
        Some((
            taken.key,
            Slot {
                dot: dot.clone(),
                value: taken.value,
            },
        ))
    }

    /// Adds `value` under `key` with a fresh dot of `actor`, like [`OrMap::add`], but builds no
    /// delta: returns the dot it minted, and the caller ships `(key, Slot { dot, value })`
    /// itself (for an owner appending its adds straight to a pending batch).
    pub fn add_dot(&mut self, actor: &A, key: K, value: V) -> Dot<A> {
        self.add_dot_alone(actor, key, value).0
    }

    /// [`OrMap::add_dot`] that also tells whether `key` held no entry before (then the new
    /// entry is alone under it), from the same store probe.
    pub fn add_dot_alone(&mut self, actor: &A, key: K, value: V) -> (Dot<A>, bool) {
        let dot = self.next_dot(actor);
        let a = self.intern(actor);
        let alone = self.insert_slot(key, a, dot.seq, value);
        (dot, alone)
    }

    /// [`OrMap::add_dot`] only if `key` holds no entry: the check and the add are one probe of
    /// the store. `make` gives the value then; returns the minted dot and a copy of the value
    /// (for the caller to ship). `None` if the key holds an entry: then nothing changed (no
    /// dot minted, `make` not called).
    pub fn add_dot_if_vacant(
        &mut self,
        actor: &A,
        key: &K,
        make: impl FnOnce() -> V,
    ) -> Option<(Dot<A>, V)> {
        let a = self.intern(actor);
        let store = &self.store;
        // The dot is recorded only once the store took the entry.
        let (seq, id, value) = self.ctx.next_seq_if(actor, |seq| {
            let (id, value) = store.insert_if_vacant(key, a, seq, make)?;
            Some((seq, id, value))
        })?;
        self.index_slot(a, seq, id);
        Some((Dot::new(actor.clone(), seq), value))
    }

    /// Adds `value` under `key` with a fresh dot of `actor`; returns the delta to ship.
    pub fn add(&mut self, actor: &A, key: K, value: V) -> Delta<A, K, V> {
        let dot = self.next_dot(actor);
        let a = self.intern(actor);
        self.insert_slot(key.clone(), a, dot.seq, value.clone());
        let mut ctx = CausalContext::new();
        ctx.insert(&dot);
        Delta {
            ctx,
            adds: vec![(key, Slot { dot, value })],
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
        // The carried dots, built only when a local entry lies in the delta's ranges (a
        // newcomer's catch-up has none: it skips hashing every dot of the delta).
        let mut carried: Option<HashSet<&Dot<A>>> = None;
        // 1. Drop local entries whose dot the delta has seen but does not carry.
        for (actor, row) in delta.ctx.rows() {
            let Some(local) = self.entries_of(actor) else {
                continue;
            };
            let mut doomed = Vec::new();
            for &(a, b) in row.ranges() {
                for (seq, _) in local.index.range(a, b) {
                    let dot = Dot::new(actor.clone(), seq);
                    let carried = carried
                        .get_or_insert_with(|| delta.adds.iter().map(|(_, s)| &s.dot).collect());
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
        //    fragments the range sets and makes a whole-state join quadratic. Until then an entry
        //    whose dot is live here but not in the context was taken earlier in this loop (a
        //    live entry's dot is always in the context), so a duplicate add is skipped by a look
        //    in the actor's index. Adds come in runs of one actor: its context rows and interned
        //    index are looked up once per run.
        //    A duplicate can only be an add of this loop: within an actor's first run, an add
        //    whose sequence number is above every earlier one of the run (a batch's adds rise)
        //    cannot be one, and skips the look in the index.
        let ctx = std::mem::take(&mut self.ctx);
        let mut uncovered = Vec::new();
        let mut run: Option<Run<'_, A>> = None;
        // Interned actors whose run of this delta has begun (indexed by interned number): a
        // delta with many interleaved runs checks each in O(1).
        let mut run_seen: Vec<bool> = Vec::new();
        for (i, (key, slot)) in delta.adds.iter().enumerate() {
            let actor = &slot.dot.actor;
            let cur = match &mut run {
                Some(r) if r.actor == actor => r,
                _ => {
                    let a = self.intern(actor);
                    let i = a as usize;
                    if run_seen.len() <= i {
                        run_seen.resize(i + 1, false);
                    }
                    let first = run_seen.get(i).is_some_and(|seen| !seen);
                    if let Some(seen) = run_seen.get_mut(i) {
                        *seen = true;
                    }
                    run.insert(Run {
                        actor,
                        mine: ctx.row(actor),
                        theirs: delta.ctx.row(actor),
                        a,
                        rising: first,
                        top: 0,
                    })
                }
            };
            let (mine, theirs, a) = (cur.mine, cur.theirs, cur.a);
            let seq = slot.dot.seq;
            cur.rising &= seq > cur.top;
            cur.top = cur.top.max(seq);
            let rising = cur.rising;
            let new = !mine.is_some_and(|r| r.contains(seq))
                && self
                    .per_actor
                    .get(a as usize)
                    .is_some_and(|e| rising || e.index.get(seq).is_none());
            if new {
                let alone = self.insert_slot(key.clone(), a, seq, slot.value.clone());
                if report.added.is_empty() {
                    // Room for every add left, once: a delta of new entries (the usual case)
                    // fills it, instead of growing the report step by step.
                    report.added.reserve_exact(delta.adds.len() - i);
                }
                report.added.push(Added {
                    key: key.clone(),
                    slot: slot.clone(),
                    alone,
                });
            }
            if !theirs.is_some_and(|r| r.contains(seq)) {
                uncovered.push(slot.dot.clone());
            }
        }
        self.ctx = ctx;
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
            .entries_of(actor)
            .map(|e| e.index.range(1, u64::MAX).map(|(s, _)| s).collect())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(kv) = self.take_dot(&Dot::new(actor.clone(), seq)) {
                out.push(kv);
            }
        }
        self.ctx.remove_actor(actor);
        if let Some(a) = self.actor_id(actor) {
            self.per_actor[a as usize] = ActorEntries::default();
        }
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
            adds.extend(self.actor_range(actor, a, b));
        }
        ctx.set_row(actor.clone(), row);
        Delta { ctx, adds }
    }

    /// The whole state as a delta.
    pub fn to_delta(&self) -> Delta<A, K, V> {
        let mut adds = Vec::with_capacity(self.len);
        self.for_each(|k, s| adds.push((k.clone(), s.to_slot())));
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
        let mut v = Vec::with_capacity(self.len);
        self.for_each(|k, s| v.push((k.clone(), s.dot(), s.value.clone())));
        v.sort();
        (v, self.ctx.clone())
    }
}
/// One run of adds of one actor in [`OrMap::join`]: what is looked up once per run.
struct Run<'d, A> {
    actor: &'d A,
    /// This replica's context row of the actor (before the join).
    mine: Option<&'d DotSet>,
    /// The delta's context row of the actor.
    theirs: Option<&'d DotSet>,
    /// The actor's interned number.
    a: u32,
    /// The actor's first run so far, every add above the ones before it: none is a repeat.
    rising: bool,
    /// The highest sequence number of the run so far.
    top: u64,
}
