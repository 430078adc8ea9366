//! Reading the registry from other threads while the node keeps changing it.

use pidmesh_crdt::{MapReader, SlotIter, SlotRef};
use pidmesh_wire::{Key, NodeId, Value};

use crate::entry::Entry;
use crate::entry_ref::EntryRef;
use crate::resolver::{Resolver, Verdict};

/// A read handle on a node's registry that can be used from any thread, without access to
/// the [`crate::Node`] (see [`crate::Node::reader`]).
///
/// It reads the node's own entry storage, which is sharded and locked per shard: a read waits at
/// most for one entry's change by the node, never for a whole message or join, and holds no
/// copy of the registry. Answers are those [`crate::Node::lookup`] and
/// [`crate::Node::members_of`] would give at that instant, conflicts resolved by the same resolver.
#[derive(Debug, Clone)]
pub struct RegistryReader {
    map: MapReader<NodeId, Key, Value>,
    resolver: Resolver,
}

impl RegistryReader {
    pub(crate) fn new(map: MapReader<NodeId, Key, Value>, resolver: Resolver) -> Self {
        Self { map, resolver }
    }

    /// Every entry under `key`, canonically sorted (more than one for a name means a conflict).
    pub fn entries(&self, key: &Key) -> Vec<Entry> {
        self.map.read(key, |slots| sorted_entries(key, slots))
    }

    /// The entry that holds the unique `name`, with the resolver applied to any conflict.
    pub fn lookup(&self, name: &str) -> Option<Entry> {
        let key = Key::name(name);
        let found = self.map.read(&key, |slots| found(&key, slots));
        winner(&self.resolver, name, found)
    }

    /// Calls `f` with a borrowed view of the entry that holds the unique `name` (`None` if
    /// none), the same winner [`RegistryReader::lookup`] returns, without copying it.
    ///
    /// The name's storage shard stays locked for reading while `f` runs, which delays the
    /// node's changes to that shard (not reads): keep `f` short, copy out what you need
    /// ([`EntryRef::to_entry`], [`EntryRef::pid`]) and act on it after. A name with one entry
    /// costs one table probe and one record read; a conflicted name also resolves its
    /// entries as `lookup` does (copying them, as rare as conflicts are).
    pub fn with_lookup<R>(&self, name: &str, f: impl FnOnce(Option<EntryRef<'_>>) -> R) -> R {
        let key = Key::name(name);
        self.map.read(&key, |slots| {
            with_winner(&self.resolver, &key, name, slots, f)
        })
    }

    /// Runs a lookup of `name` up to `stage` of the storage's read path and returns a number
    /// made of what it read (feature `read-stages`): for measuring where a lookup's time goes,
    /// nothing else.
    #[cfg(feature = "read-stages")]
    pub fn read_stage(&self, name: &str, stage: pidmesh_crdt::ReadStage) -> u64 {
        self.map.read_stage(&Key::name(name), stage)
    }

    /// The members of `group`, canonically sorted.
    pub fn members_of(&self, group: &str) -> Vec<Entry> {
        self.entries(&Key::group(group))
    }

    /// Calls `f` with every entry whose key passes `keep`, in no particular order. Entries that
    /// change meanwhile may or may not be seen: the registry is read one shard at a time.
    pub fn for_each_entry(&self, mut keep: impl FnMut(&Key) -> bool, mut f: impl FnMut(Entry)) {
        self.map.for_each(|k, s| {
            if keep(k) {
                f(entry_from(k, &s));
            }
        });
    }
}

/// The [`Entry`] of one stored slot.
pub(crate) fn entry_from(key: &Key, slot: &SlotRef<'_, NodeId, Value>) -> Entry {
    EntryRef::new(key, slot).to_entry()
}

/// Calls `f` with the winner among `slots` (under the name `key`), borrowed: the only entry, or
/// the resolver's pick among the canonically sorted entries of a conflict.
pub(crate) fn with_winner<R>(
    resolver: &Resolver,
    key: &Key,
    name: &str,
    mut slots: SlotIter<'_, NodeId, Key, Value>,
    f: impl FnOnce(Option<EntryRef<'_>>) -> R,
) -> R {
    if slots.count_hint() <= 1 {
        let one = slots.next();
        return f(one.as_ref().map(|s| EntryRef::new(key, s)));
    }
    let all = sorted_entries(key, slots.clone());
    let won = match resolver.resolve(name, &all).verdict {
        Verdict::Keep(i) => all.get(i).map(|e| &e.dot),
        Verdict::DropAll => None,
    };
    let slot = won.and_then(|d| slots.find(|s| s.seq == d.seq && *s.actor == d.actor));
    f(slot.as_ref().map(|s| EntryRef::new(key, s)))
}

/// The entries of `slots` (under `key`), canonically sorted.
pub(crate) fn sorted_entries(key: &Key, slots: SlotIter<'_, NodeId, Key, Value>) -> Vec<Entry> {
    let mut v: Vec<Entry> = slots.map(|s| entry_from(key, &s)).collect();
    v.sort_by(Entry::canonical_cmp);
    v
}

/// What a key holds, as far as a lookup cares.
pub(crate) enum Found {
    /// No entry.
    None,
    /// One entry: the common case, built without sorting or allocating a list.
    One(Entry),
    /// A conflict: every entry, canonically sorted.
    Many(Vec<Entry>),
}

/// Reads what `slots` (under the name `key`) hold, for a lookup.
pub(crate) fn found(key: &Key, mut slots: SlotIter<'_, NodeId, Key, Value>) -> Found {
    match slots.count_hint() {
        0 => Found::None,
        1 => slots
            .next()
            .map_or(Found::None, |s| Found::One(entry_from(key, &s))),
        _ => Found::Many(sorted_entries(key, slots)),
    }
}

/// Resolves what a name holds to its winner.
pub(crate) fn winner(resolver: &Resolver, name: &str, found: Found) -> Option<Entry> {
    match found {
        Found::None => None,
        Found::One(e) => Some(e),
        Found::Many(v) => match resolver.resolve(name, &v).verdict {
            Verdict::Keep(i) => v.into_iter().nth(i),
            Verdict::DropAll => None,
        },
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
