//! Conflicts: after every change, unique names with several live claims go through the resolver.

use std::time::Instant;

use pidmesh_crdt::{Dot, JoinReport, Slot};
use pidmesh_wire::{Key, KeyKind, NodeId, Pid, Value};

use crate::entry::{Entry, Event, Reason};
use crate::resolver::Verdict;

use super::{Node, entry_of};
use crate::reader;

/// Entries that lost a conflict as seen here, so their removal is reported as such. Touched
/// once or twice per contested name after a heal: hashed with hashbrown's default (foldhash),
/// not std's SipHash, which cost more than the rest of a decision.
pub(super) type Losers = hashbrown::HashSet<Dot<NodeId>>;

/// Names touched since conflicts were last checked. Pushed as they come (a join that touches
/// ten thousand names pays a push each, not an ordered insert), sorted and deduplicated once
/// when the node settles, so names are still resolved in key order.
#[derive(Debug, Default)]
pub(super) struct DirtyKeys(Vec<Key>);

impl DirtyKeys {
    /// Marks `key` for a conflict check (only unique names have conflicts).
    pub(super) fn insert(&mut self, key: Key) {
        if key.kind == KeyKind::Name {
            self.0.push(key);
        }
    }

    /// Every marked name once, in key order; nothing stays marked.
    fn take_sorted(&mut self) -> Vec<Key> {
        let mut keys = std::mem::take(&mut self.0);
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

impl Node {
    /// A claim given up after a conflict, which this node never saw, meets our own claims on
    /// the same name. Only claims made before it was given up (`released.registered_at` holds
    /// the release time) competed with it, and only a verdict that frees the name needs acting
    /// on here: when the resolver keeps a winner, that winner reaches us through normal sync.
    pub(super) fn resolve_against_release(&mut self, now: Instant, released: Entry) {
        let key = released.key.clone();
        let mut candidates = self.entries(&key);
        let concurrent = candidates
            .iter()
            .any(|e| e.dot.actor == self.me.node && e.registered_at < released.registered_at);
        if !concurrent {
            return;
        }
        let released_dot = released.dot.clone();
        candidates.push(released);
        candidates.sort_by(Entry::canonical_cmp);
        if self.resolver.resolve(&key.name, &candidates).verdict == Verdict::DropAll {
            let mine = self.decide(&key, candidates, Some(&released_dot));
            if !mine.is_empty() {
                self.remove_own(now, &mine, Reason::Conflict);
            }
        }
    }

    /// Reports what a join changed as events, and marks the names that may now be contested.
    pub(super) fn report_join(&mut self, report: JoinReport<NodeId, Key, Value>) {
        // A removal and an add of the same pid under the same key in one join is a metadata update.
        let mut removed = Vec::with_capacity(report.removed.len());
        self.events
            .reserve(report.added.len() + report.removed.len());
        for (key, slot) in report.removed {
            let entry = entry_of(&key, &slot);
            self.dirty.insert(key);
            removed.push(entry);
        }
        for added in report.added {
            // The join says whether the key held another entry when this one was stored: only
            // then can the name have two or more claims, a conflict to settle (a key left with
            // several entries always has such an add). The key is not read again: in a bulk,
            // every name comes alone. A group key is never contested: not even cloned.
            if !added.alone && added.key.kind == KeyKind::Name {
                self.dirty.insert(added.key.clone());
            }
            let entry = entry_from_slot(added.key, added.slot);
            let updated = removed
                .iter()
                .position(|r| r.key == entry.key && r.pid == entry.pid);
            self.events.push_back(match updated {
                Some(i) => {
                    let old = removed.swap_remove(i);
                    // A promise to a claim follows the claim through a metadata update (a
                    // singleton marks its claim when it starts running).
                    if let Some((promised, _)) = self.promises.get_mut(&*entry.key.name)
                        && *promised == old.dot
                    {
                        *promised = entry.dot.clone();
                    }
                    Event::MetaUpdated {
                        previous: old.meta,
                        entry,
                    }
                }
                None => Event::Registered(entry),
            });
        }
        for entry in removed {
            let reason = if self.losers.remove(&entry.dot) {
                Reason::Conflict
            } else {
                Reason::Normal
            };
            // Its owner removed it on purpose, so it no longer runs under our vouch.
            if self
                .promises
                .get(&*entry.key.name)
                .is_some_and(|(dot, _)| *dot == entry.dot)
            {
                self.promises.remove(&*entry.key.name);
            }
            self.events.push_back(Event::Unregistered { entry, reason });
        }
    }

    /// Runs after every input: SWIM outputs, conflict checks, nothing left half done.
    pub(super) fn settle(&mut self, now: Instant) {
        self.drain_swim(now);
        self.resolve_dirty(now);
        if !self.singletons.is_empty() {
            self.eval_singletons(now);
            // Claims and releases made by the evaluation touch names: settle those too.
            self.resolve_dirty(now);
        }
    }

    /// Resolves every dirty name, in key order, until none is left. This node's losing claims
    /// of a whole batch of names are removed together (one removal, one delta) once the batch
    /// is decided; that marks their names again, and they are checked once more with fewer
    /// candidates.
    fn resolve_dirty(&mut self, now: Instant) {
        // The common case after a local registration: nothing marked, nothing to sort or drop.
        if self.dirty.0.is_empty() {
            return;
        }
        loop {
            let batch = self.dirty.take_sorted();
            if batch.is_empty() {
                return;
            }
            let mut mine = Vec::new();
            for key in &batch {
                mine.extend(self.resolve(key));
            }
            if !mine.is_empty() {
                self.remove_own(now, &mine, Reason::Conflict);
            }
        }
    }

    /// Decides `key` if it has a conflict; returns this node's losing claims (to remove).
    /// A name left with one claim (the usual case when a loser's removal arrives) is seen to
    /// have no conflict without copying its entry out.
    fn resolve(&mut self, key: &Key) -> Vec<Dot<NodeId>> {
        let candidates = self.map.read(key, |slots| {
            (slots.count_hint() >= 2).then(|| reader::sorted_entries(key, slots))
        });
        match candidates {
            Some(candidates) if candidates.len() >= 2 => self.decide(key, candidates, None),
            _ => Vec::new(),
        }
    }

    /// Runs the resolver over canonically sorted candidates and reports the outcome; returns
    /// this node's losing entries, for the caller to remove. Every candidate is held here except
    /// `released` (a claim its origin gave up that this node never saw), if given.
    fn decide(
        &mut self,
        key: &Key,
        candidates: Vec<Entry>,
        released: Option<&Dot<NodeId>>,
    ) -> Vec<Dot<NodeId>> {
        let resolution = self.resolver.resolve(&key.name, &candidates);
        if let Some(reason) = resolution.failure {
            tracing::warn!(key = ?key, %reason, "resolver failed; keep-oldest used");
            self.stats.resolver_failures += 1;
            self.events.push_back(Event::ResolverFailed {
                key: key.clone(),
                reason,
            });
        }
        let mut losers = candidates;
        let winner = match resolution.verdict {
            Verdict::Keep(i) if i < losers.len() => Some(losers.remove(i)),
            _ => None,
        };
        let mut mine: Vec<Dot<NodeId>> = Vec::new();
        for e in &losers {
            if released == Some(&e.dot) {
                // Not held, so never reported as removed here.
                continue;
            }
            if e.dot.actor == self.me.node {
                // Removed by the caller, which reports it as lost to a conflict.
                mine.push(e.dot.clone());
            } else {
                // Its origin's removal will reach us: report it then as lost to a conflict.
                self.losers.insert(e.dot.clone());
            }
        }
        self.stats.conflicts_resolved += 1;
        self.events.push_back(Event::ConflictResolved {
            key: key.clone(),
            winner,
            losers,
        });
        mine
    }
}

/// The [`Entry`] of an added slot, moved out of it.
fn entry_from_slot(key: Key, slot: Slot<NodeId, Value>) -> Entry {
    Entry {
        pid: Pid {
            node: slot.dot.actor.clone(),
            local: slot.value.pid,
        },
        meta: slot.value.meta,
        registered_at: slot.value.at,
        dot: slot.dot,
        key,
    }
}
