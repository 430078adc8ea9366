//! The shared, sharded storage of an [`crate::OrMap`]'s entries, and the read handle over it.
//!
//! Keys are spread over [`SHARDS`] shards by hash. A shard holds, behind its own lock, a hash
//! table of `u32` key ids and a slab of key records. A key record holds the key and, inline, its
//! first entry (dot + value): a lookup of a key with one entry (the common case) touches the
//! table and one record. Further entries of the same key (conflicting claims, group members)
//! live in a second slab, linked per key. Actors are interned: an entry names its actor by a
//! `u32` index. The single writer (the owning `OrMap`) locks one shard at a time for the length
//! of one entry's change; readers ([`MapReader`]) lock one shard for one key, so they never wait
//! for a whole join.
//!
//! Entry ids are stable for an entry's life (the owning map's per-actor index keeps them): an
//! entry stored inline is named by its key's id, an extra one by its id in the second slab. An
//! entry never moves: when a key's inline entry leaves while extra entries remain, the inline
//! place stays empty until the key's next entry fills it.

use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::dots::Dot;
use crate::map::Slot;
use crate::slab::Slab;

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

/// A key with its inline entry. The inline entry's fields sit beside the key (not in a nested
/// struct) so that they pack without padding: 16 bytes beside key and value.
#[derive(Debug, Clone)]
struct KeyRec<K, V> {
    key: K,
    /// The inline entry's value; `None` only while extra entries remain (then `actor` and
    /// `seq` mean nothing).
    value: Option<V>,
    /// The inline entry's sequence number.
    seq: u64,
    /// The inline entry's interned actor.
    actor: u32,
    /// The first extra entry, or [`NIL`].
    more: u32,
}

impl<K, V> KeyRec<K, V> {
    /// The inline entry: interned actor, sequence number, value.
    fn first(&self) -> Option<(u32, u64, &V)> {
        Some((self.actor, self.seq, self.value.as_ref()?))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Shard<A, K, V> {
    table: HashTable<u32>,
    keys: Slab<KeyRec<K, V>>,
    extra: Slab<Extra<V>>,
    /// A copy of the interned actors (index → actor), so readers need no other lock.
    actors: Vec<A>,
}

impl<A, K, V> Default for Shard<A, K, V> {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
            keys: Slab::default(),
            extra: Slab::default(),
            actors: Vec::new(),
        }
    }
}

impl<A, K, V> Shard<A, K, V> {
    /// The entries of the key record `k`.
    fn iter<'a>(&'a self, k: &'a KeyRec<K, V>) -> SlotIter<'a, A, K, V> {
        let mut left = usize::from(k.value.is_some());
        let mut cur = k.more;
        while let Some(r) = self.extra.get(cur) {
            left += 1;
            cur = r.next;
        }
        SlotIter {
            shard: Some(self),
            first: k.first(),
            cur: k.more,
            left,
        }
    }
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

    /// Stores an entry; returns its global id.
    pub(crate) fn insert(&self, key: K, actor: u32, seq: u64, value: V) -> u32 {
        let (hash, si) = self.locate(&key);
        let mut guard = write(&self.shards[si]);
        let Shard {
            table, keys, extra, ..
        } = &mut *guard;
        let hasher = &self.hasher;
        // One probe finds the key or the place for it.
        let kid = match table.entry(
            hash,
            |&i| keys.get(i).is_some_and(|k| k.key == key),
            |&i| keys.get(i).map_or(0, |k| hasher.hash_one(&k.key)),
        ) {
            Entry::Occupied(slot) => *slot.get(),
            Entry::Vacant(slot) => {
                let kid = keys.insert(KeyRec {
                    key,
                    value: Some(value),
                    seq,
                    actor,
                    more: NIL,
                });
                slot.insert(kid);
                return gid(si, Place::Inline(kid));
            }
        };
        let Some(krec) = keys.get_mut(kid) else {
            unreachable!("key {kid} was just found")
        };
        if krec.value.is_none() {
            krec.value = Some(value);
            krec.seq = seq;
            krec.actor = actor;
            return gid(si, Place::Inline(kid));
        }
        let rid = extra.insert(Extra {
            key: kid,
            actor,
            next: krec.more,
            seq,
            value,
        });
        krec.more = rid;
        gid(si, Place::Extra(rid))
    }

    /// Takes the entry with global id `id` out; drops its key when it was the key's last entry.
    pub(crate) fn remove(&self, id: u32) -> Option<Taken<K, V>> {
        let (si, place) = ungid(id);
        let mut guard = write(self.shards.get(si)?);
        let Shard {
            table, keys, extra, ..
        } = &mut *guard;
        let (kid, value) = match place {
            Place::Inline(kid) => (kid, keys.get_mut(kid)?.value.take()?),
            Place::Extra(rid) => {
                let rec = extra.remove(rid)?;
                let krec = keys.get_mut(rec.key)?;
                if krec.more == rid {
                    krec.more = rec.next;
                } else {
                    let mut cur = krec.more;
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
        let key = if krec.value.is_none() && krec.more == NIL {
            let hash = self.hasher.hash_one(&krec.key);
            if let Ok(slot) = table.find_entry(hash, |&i| i == kid) {
                slot.remove();
            }
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
            .find(hash, |&i| shard.keys.get(i).is_some_and(|k| k.key == *key))
            .and_then(|&i| shard.keys.get(i));
        let iter = match found {
            Some(k) => shard.iter(k),
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
            for (_, k) in shard.keys.iter() {
                f(&k.key, shard.iter(k));
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

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
