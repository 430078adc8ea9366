//! The shared, sharded storage of an [`crate::OrMap`]'s entries, and the read handle over it.
//!
//! Keys are spread over [`SHARDS`] shards by hash. A shard holds, behind its own lock, a hash
//! table of `u32` key ids ([`Table`]: tags and ids of a probe share one cache line) and a slab of
//! key records. A key record holds the key and, inline, its
//! first entry (value and a packed dot): a lookup of a key with one entry (the common case)
//! touches the table and one record of two cache lines. Further entries of the same key
//! (conflicting claims, group members, dots too large to pack) live in a second slab, linked per
//! key from a small side map. Actors are interned: an entry names its actor by a `u32` index.
//! The single writer (the owning `OrMap`) locks one shard at a time for the length of one
//! entry's change; readers ([`MapReader`]) lock one shard for one key, so they never wait for a
//! whole join.
//!
//! Entry ids are stable for an entry's life (the owning map's per-actor index keeps them): an
//! entry stored inline is named by its key's id, an extra one by its id in the second slab. An
//! entry never moves: when a key's inline entry leaves while extra entries remain, the inline
//! place stays empty until the key's next entry fills it.

use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::{DefaultHashBuilder, HashMap};

use crate::dots::Dot;
use crate::map::Slot;
use crate::slab::Slab;
use crate::table::Table;

const SHARD_BITS: u32 = 6;
/// The number of shards.
pub(crate) const SHARDS: usize = 1 << SHARD_BITS;
/// The bit of a global entry id that marks an extra (not inline) entry.
const EXTRA_BIT: u32 = 1 << (31 - SHARD_BITS);
/// Bits of a shard-local id in a global entry id (the rest name the shard and the kind): 2^25
/// keys and 2^25 extra entries per shard, 2^31 keys in all — far beyond what fits in memory.
const LOCAL_MASK: u32 = EXTRA_BIT - 1;
/// "No entry" in the per-key lists.
const NIL: u32 = u32::MAX;

/// Where a global entry id points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The inline entry of the key with this id.
    Inline(u32),
    /// The extra entry with this id.
    Extra(u32),
}

/// A global entry id: shard in the high bits, then the kind, then the shard-local id.
fn gid(shard: usize, place: Place) -> u32 {
    let (flag, local) = match place {
        Place::Inline(k) => (0, k),
        Place::Extra(r) => (EXTRA_BIT, r),
    };
    ((shard as u32) << (32 - SHARD_BITS)) | flag | (local & LOCAL_MASK)
}

fn ungid(id: u32) -> (usize, Place) {
    let shard = (id >> (32 - SHARD_BITS)) as usize;
    let local = id & LOCAL_MASK;
    let place = if id & EXTRA_BIT == 0 {
        Place::Inline(local)
    } else {
        Place::Extra(local)
    };
    (shard, place)
}

/// An entry beyond a key's first.
#[derive(Debug, Clone)]
struct Extra<V> {
    /// The key's id in the shard.
    key: u32,
    /// The interned actor of the entry's dot.
    actor: u32,
    /// The next extra entry of the same key, or [`NIL`].
    next: u32,
    seq: u64,
    value: V,
}

/// Bits of a packed inline dot that hold the sequence number.
const SEQ_BITS: u32 = 43;
/// Bits of a packed inline dot that hold the interned actor.
const ACTOR_BITS: u32 = 20;
/// The bit of [`KeyRec::dot`] that says the key has extra entries (their list's head is in
/// [`Shard::heads`]).
const MORE_BIT: u64 = 1 << 63;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
const ACTOR_MASK: u64 = (1 << ACTOR_BITS) - 1;

/// A dot packed into the bits of [`KeyRec::dot`] below [`MORE_BIT`], if it fits: interned actors
/// below 2^20 and sequence numbers below 2^43 (the dots of any real cluster). A dot that does not
/// fit is stored as an extra entry, which keeps every field whole.
fn pack(actor: u32, seq: u64) -> Option<u64> {
    (u64::from(actor) <= ACTOR_MASK && seq <= SEQ_MASK)
        .then(|| (u64::from(actor) << SEQ_BITS) | seq)
}

/// A key with its inline entry: 8 bytes beside key and value (pidmesh's 32-byte key and 56-byte
/// value make a 96-byte record). Aligned to 32 bytes so that such a record always spans exactly
/// two cache lines (at 8-byte alignment half of them would span three).
#[derive(Debug, Clone)]
#[repr(align(32))]
struct KeyRec<K, V> {
    key: K,
    /// The inline entry's value; `None` while the key has only extra entries (then the dot
    /// bits mean nothing).
    value: Option<V>,
    /// [`MORE_BIT`], then the inline entry's interned actor and sequence number (see [`pack`]).
    dot: u64,
}

impl<K, V> KeyRec<K, V> {
    /// The inline entry: interned actor, sequence number, value.
    fn first(&self) -> Option<(u32, u64, &V)> {
        let value = self.value.as_ref()?;
        let actor = ((self.dot >> SEQ_BITS) & ACTOR_MASK) as u32;
        Some((actor, self.dot & SEQ_MASK, value))
    }

    fn has_more(&self) -> bool {
        self.dot & MORE_BIT != 0
    }

    /// Puts the packed dot `packed` inline with `value`, keeping [`MORE_BIT`].
    fn set_first(&mut self, packed: u64, value: V) {
        self.value = Some(value);
        self.dot = (self.dot & MORE_BIT) | packed;
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Shard<A, K, V> {
    table: Table,
    keys: Slab<KeyRec<K, V>>,
    extra: Slab<Extra<V>>,
    /// The head of the extra entries' list of each key that has some (key id → extra id); the
    /// key's record carries [`MORE_BIT`] meanwhile, so a key without extra entries (the common
    /// case) is read without looking here.
    heads: HashMap<u32, u32>,
    /// A copy of the interned actors (index → actor), so readers need no other lock.
    actors: Vec<A>,
}

impl<A, K, V> Default for Shard<A, K, V> {
    fn default() -> Self {
        Self {
            table: Table::default(),
            keys: Slab::default(),
            extra: Slab::default(),
            heads: HashMap::default(),
            actors: Vec::new(),
        }
    }
}

/// The head of the extra entries of the key `kid` (record `k`), or [`NIL`].
#[inline]
fn head_of<K, V>(heads: &HashMap<u32, u32>, kid: u32, k: &KeyRec<K, V>) -> u32 {
    if k.has_more() {
        looked_up_head(heads, kid)
    } else {
        NIL
    }
}

/// The side map's part of [`head_of`], kept out of line: most keys have a single entry, and a
/// lookup's inlined path stays short without it.
#[cold]
#[inline(never)]
fn looked_up_head(heads: &HashMap<u32, u32>, kid: u32) -> u32 {
    heads.get(&kid).copied().unwrap_or(NIL)
}

impl<A, K, V> Shard<A, K, V> {
    /// The entries of the key record `k` (of id `kid`).
    #[inline]
    fn iter<'a>(&'a self, kid: u32, k: &'a KeyRec<K, V>) -> SlotIter<'a, A, K, V> {
        let head = head_of(&self.heads, kid, k);
        let mut left = usize::from(k.value.is_some());
        // Most keys have no extra entries: skip the slab's id arithmetic for `NIL` then.
        let mut cur = head;
        while cur != NIL
            && let Some(r) = self.extra.get(cur)
        {
            left += 1;
            cur = r.next;
        }
        SlotIter {
            shard: Some(self),
            first: k.first(),
            cur: head,
            left,
        }
    }
}

/// Stores an extra entry of the key `kid` at the head of its list; returns the entry's id.
fn push_extra<K, V>(
    keys: &mut Slab<KeyRec<K, V>>,
    extra: &mut Slab<Extra<V>>,
    heads: &mut HashMap<u32, u32>,
    kid: u32,
    actor: u32,
    seq: u64,
    value: V,
) -> u32 {
    let next = heads.get(&kid).copied().unwrap_or(NIL);
    let rid = extra.insert(Extra {
        key: kid,
        actor,
        next,
        seq,
        value,
    });
    heads.insert(kid, rid);
    if let Some(krec) = keys.get_mut(kid) {
        krec.dot |= MORE_BIT;
    }
    rid
}

/// Stores a key that held no entry, with its first entry; returns the key's id and where the
/// entry went (inline, or extra when its dot is too large to pack).
fn new_key<K, V>(
    keys: &mut Slab<KeyRec<K, V>>,
    extra: &mut Slab<Extra<V>>,
    heads: &mut HashMap<u32, u32>,
    key: K,
    actor: u32,
    seq: u64,
    value: V,
) -> (u32, Place) {
    let Some(packed) = pack(actor, seq) else {
        // A dot too large to pack: the key starts with no inline entry.
        let kid = keys.insert(KeyRec {
            key,
            value: None,
            dot: 0,
        });
        let rid = push_extra(keys, extra, heads, kid, actor, seq, value);
        return (kid, Place::Extra(rid));
    };
    let kid = keys.insert(KeyRec {
        key,
        value: Some(value),
        dot: packed,
    });
    (kid, Place::Inline(kid))
}

/// A borrowed view of one entry under a key.
#[derive(Debug)]
pub struct SlotRef<'a, A, V> {
    /// The actor of the entry's dot.
    pub actor: &'a A,
    /// The sequence number of the entry's dot.
    pub seq: u64,
    /// The value.
    pub value: &'a V,
}

impl<A, V> Clone for SlotRef<'_, A, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, V> Copy for SlotRef<'_, A, V> {}

impl<A: Clone, V: Clone> SlotRef<'_, A, V> {
    /// The entry's dot (clones the actor).
    pub fn dot(&self) -> Dot<A> {
        Dot::new(self.actor.clone(), self.seq)
    }

    /// An owned copy of the entry.
    pub fn to_slot(&self) -> Slot<A, V> {
        Slot {
            dot: self.dot(),
            value: self.value.clone(),
        }
    }
}

/// Iterates the entries of one key (in no particular order); see [`MapReader::read`].
#[derive(Debug)]
pub struct SlotIter<'a, A, K, V> {
    shard: Option<&'a Shard<A, K, V>>,
    first: Option<(u32, u64, &'a V)>,
    cur: u32,
    left: usize,
}

impl<A, K, V> Clone for SlotIter<'_, A, K, V> {
    fn clone(&self) -> Self {
        Self {
            shard: self.shard,
            first: self.first,
            cur: self.cur,
            left: self.left,
        }
    }
}

impl<'a, A, K, V> Iterator for SlotIter<'a, A, K, V> {
    type Item = SlotRef<'a, A, V>;

    fn next(&mut self) -> Option<Self::Item> {
        let shard = self.shard?;
        let (actor, seq, value) = match self.first.take() {
            Some(e) => e,
            None => {
                let rec = shard.extra.get(self.cur)?;
                self.cur = rec.next;
                (rec.actor, rec.seq, &rec.value)
            }
        };
        let actor = shard.actors.get(actor as usize)?;
        self.left = self.left.saturating_sub(1);
        Some(SlotRef { actor, seq, value })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<A, K, V> SlotIter<'_, A, K, V> {
    /// How many entries the key has (left to visit).
    pub fn count_hint(&self) -> usize {
        self.left
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panic while a shard was locked leaves it consistent: every change to a shard is made of
    // steps that cannot panic between them.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Store<A, K, V> {
    hasher: DefaultHashBuilder,
    shards: Box<[RwLock<Shard<A, K, V>>]>,
}

impl<A, K, V> Default for Store<A, K, V> {
    fn default() -> Self {
        Self {
            hasher: DefaultHashBuilder::default(),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl<A: Clone, K: Clone, V: Clone> Store<A, K, V> {
    /// A deep copy (same hasher, so ids stay valid).
    pub(crate) fn deep_clone(&self) -> Self {
        Self {
            hasher: self.hasher.clone(),
            shards: self
                .shards
                .iter()
                .map(|s| RwLock::new(read(s).clone()))
                .collect(),
        }
    }
}

/// What the store hands back when an entry leaves it.
pub(crate) struct Taken<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
}

impl<A, K, V> Store<A, K, V>
where
    A: Clone,
    K: Clone + Eq + Hash,
    V: Clone,
{
    fn locate(&self, key: &K) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        (hash, (hash >> 32) as usize & (SHARDS - 1))
    }

    /// Makes `actor` known to readers under `index` (indices are handed out in order).
    pub(crate) fn push_actor(&self, actor: &A) {
        for s in self.shards.iter() {
            write(s).actors.push(actor.clone());
        }
    }

    /// Stores an entry; returns its global id and whether it is its key's only entry (the key
    /// held none before), which tells callers without another read that the key has no
    /// conflict.
    pub(crate) fn insert(&self, key: K, actor: u32, seq: u64, value: V) -> (u32, bool) {
        let (hash, si) = self.locate(&key);
        let mut guard = write(&self.shards[si]);
        let Shard {
            table,
            keys,
            extra,
            heads,
            ..
        } = &mut *guard;
        // One probe finds the key or the place for it.
        let kid = match table.entry(hash, |i| keys.get(i).is_some_and(|k| k.key == key)) {
            Ok(kid) => kid,
            Err(vacant) => {
                let place = new_key(keys, extra, heads, key, actor, seq, value);
                table.insert_vacant(vacant, hash, place.0);
                return (gid(si, place.1), true);
            }
        };
        let Some(krec) = keys.get_mut(kid) else {
            unreachable!("key {kid} was just found")
        };
        if let (None, Some(packed)) = (&krec.value, pack(actor, seq)) {
            krec.set_first(packed, value);
            return (gid(si, Place::Inline(kid)), false);
        }
        let rid = push_extra(keys, extra, heads, kid, actor, seq, value);
        (gid(si, Place::Extra(rid)), false)
    }

    /// Stores an entry under `key` only if the key holds none (one probe for both the check and
    /// the insert); `make` gives the value then, and a copy of it comes back with the entry's
    /// global id. `None` (and nothing stored, `make` not called) if the key has entries.
    pub(crate) fn insert_if_vacant(
        &self,
        key: &K,
        actor: u32,
        seq: u64,
        make: impl FnOnce() -> V,
    ) -> Option<(u32, V)> {
        let (hash, si) = self.locate(key);
        let mut guard = write(&self.shards[si]);
        let Shard {
            table,
            keys,
            extra,
            heads,
            ..
        } = &mut *guard;
        match table.entry(hash, |i| keys.get(i).is_some_and(|k| k.key == *key)) {
            Ok(_) => None,
            Err(vacant) => {
                let value = make();
                let place = new_key(keys, extra, heads, key.clone(), actor, seq, value.clone());
                table.insert_vacant(vacant, hash, place.0);
                Some((gid(si, place.1), value))
            }
        }
    }

    /// Takes the entry with global id `id` out; drops its key when it was the key's last entry.
    pub(crate) fn remove(&self, id: u32) -> Option<Taken<K, V>> {
        let (si, place) = ungid(id);
        let mut guard = write(self.shards.get(si)?);
        let Shard {
            table,
            keys,
            extra,
            heads,
            ..
        } = &mut *guard;
        let (kid, value) = match place {
            Place::Inline(kid) => (kid, keys.get_mut(kid)?.value.take()?),
            Place::Extra(rid) => {
                let rec = extra.remove(rid)?;
                let head = heads.get(&rec.key).copied().unwrap_or(NIL);
                if head == rid {
                    if rec.next == NIL {
                        heads.remove(&rec.key);
                        if let Some(krec) = keys.get_mut(rec.key) {
                            krec.dot &= !MORE_BIT;
                        }
                    } else {
                        heads.insert(rec.key, rec.next);
                    }
                } else {
                    let mut cur = head;
                    while let Some(r) = extra.get_mut(cur) {
                        if r.next == rid {
                            r.next = rec.next;
                            break;
                        }
                        cur = r.next;
                    }
                }
                (rec.key, rec.value)
            }
        };
        let krec = keys.get(kid)?;
        let key = if krec.value.is_none() && !krec.has_more() {
            table.remove(kid);
            keys.remove(kid)?.key
        } else {
            krec.key.clone()
        };
        Some(Taken { key, value })
    }

    /// Calls `f` with the entry of global id `id` and its key.
    pub(crate) fn with_id<R>(
        &self,
        id: u32,
        f: impl FnOnce(&K, SlotRef<'_, A, V>) -> R,
    ) -> Option<R> {
        let (si, place) = ungid(id);
        let guard = read(self.shards.get(si)?);
        let (key, actor, seq, value) = match place {
            Place::Inline(kid) => {
                let krec = guard.keys.get(kid)?;
                let (actor, seq, value) = krec.first()?;
                (&krec.key, actor, seq, value)
            }
            Place::Extra(rid) => {
                let rec = guard.extra.get(rid)?;
                (
                    &guard.keys.get(rec.key)?.key,
                    rec.actor,
                    rec.seq,
                    &rec.value,
                )
            }
        };
        let actor = guard.actors.get(actor as usize)?;
        Some(f(key, SlotRef { actor, seq, value }))
    }

    /// Calls `f` with the entries of `key`.
    pub(crate) fn read<R>(&self, key: &K, f: impl FnOnce(SlotIter<'_, A, K, V>) -> R) -> R {
        let (hash, si) = self.locate(key);
        let guard = read(&self.shards[si]);
        let shard = &*guard;
        let found = shard
            .table
            .find(hash, |i| shard.keys.get(i).is_some_and(|k| k.key == *key))
            .and_then(|i| Some((i, shard.keys.get(i)?)));
        let iter = match found {
            Some((kid, k)) => shard.iter(kid, k),
            None => SlotIter {
                shard: None,
                first: None,
                cur: NIL,
                left: 0,
            },
        };
        f(iter)
    }

    /// Calls `f` for every key with its entries, one shard (locked for reading) at a time.
    pub(crate) fn for_each_key(&self, mut f: impl FnMut(&K, SlotIter<'_, A, K, V>)) {
        for s in self.shards.iter() {
            let guard = read(s);
            let shard = &*guard;
            for (kid, k) in shard.keys.iter() {
                f(&k.key, shard.iter(kid, k));
            }
        }
    }

    /// The number of keys with at least one entry.
    pub(crate) fn key_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let g = read(s);
                g.table.len()
            })
            .sum()
    }
}

/// A read handle on an [`crate::OrMap`]'s entries that can live on other threads.
///
/// It sees the map's current entries (not a snapshot): every read locks the one shard its key
/// lives in, for the length of the read, so the map's writer delays a reader by at most one
/// entry's change, never by a whole join. A reader does not see the causal context.
pub struct MapReader<A, K, V> {
    pub(crate) store: Arc<Store<A, K, V>>,
}

impl<A, K, V> Clone for MapReader<A, K, V> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
        }
    }
}

impl<A, K, V> std::fmt::Debug for MapReader<A, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapReader").finish_non_exhaustive()
    }
}

impl<A, K, V> MapReader<A, K, V>
where
    A: Clone,
    K: Clone + Eq + Hash,
    V: Clone,
{
    /// Calls `f` with the entries under `key` (none if the key is absent), its shard locked for
    /// reading meanwhile: keep `f` short.
    pub fn read<R>(&self, key: &K, f: impl FnOnce(SlotIter<'_, A, K, V>) -> R) -> R {
        self.store.read(key, f)
    }

    /// Owned copies of the entries under `key`.
    pub fn get(&self, key: &K) -> Vec<Slot<A, V>> {
        self.store.read(key, |it| it.map(|s| s.to_slot()).collect())
    }

    /// Calls `f` for every entry with its key, one shard at a time (each locked for reading
    /// while `f` runs over it). Entries changed meanwhile may or may not be seen.
    pub fn for_each(&self, mut f: impl FnMut(&K, SlotRef<'_, A, V>)) {
        self.store.for_each_key(|k, it| {
            for s in it {
                f(k, s);
            }
        });
    }
}

#[cfg(feature = "read-stages")]
#[path = "store_stages.rs"]
mod stages;
#[cfg(feature = "read-stages")]
pub use stages::ReadStage;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
