//! The guard table: which [`Registration`](crate::Registration) guards of this node are live,
//! and what the few whose entry changed or went away need kept aside.
//!
//! A guard is a handle: the registry and its id, the sequence number of the dot its entry was
//! registered with. This node issues its own sequence numbers in order and never twice, so an
//! id names one claim (a later registration of the same name and pid has an id of its own and is
//! never told about an earlier one's loss), and the live ids of a node fill a dense range: the
//! table keeps them as bitmaps of [`BLOCK`] consecutive ids (under a byte per thousand guards
//! when they are dense, one block per guard at worst). Nothing of the entry is copied: while it
//! is in the store, the store has it under the node's own dot, and [`Guards::entry`] reads it
//! from there.
//!
//! Kept aside, only while needed:
//! - a guard whose entry's metadata was updated: the entry's dot now has another sequence number
//!   (`moved`), and the entry as registered is kept, since the store no longer has it;
//! - a guard whose entry went away for a reason other than the guard: the loss report until
//!   `lost()` takes it, and the entry as registered (`ended`);
//! - the wakers of the guards whose `lost()` is being awaited.
//!
//! Only the guard of an id releases it. Losses are noted by the driver while it holds the node's
//! write lock, in the same step as it takes the events from the node ([`Guards::observe`]), and
//! metadata updates while the node is locked too ([`Table::meta_updated`]); so a reader holding
//! the node's read lock finds a guard's entry in exactly one place: the store, the node's events
//! not yet taken, or this table.
//!
//! Lock order: the node's lock, then this table's; never the other way round.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use pidmesh_proto::{Dot, Entry, Event, Node, NodeId, Reason};

use crate::error::RegisterError;
use crate::registry::Lost;

/// Consecutive ids per bitmap block.
const BLOCK: u64 = 64;

/// At most this many live guards (`RegisterError::TooManyGuards` beyond).
const MAX_GUARDS: usize = u32::MAX as usize;

/// Every live guard; see the module documentation.
#[derive(Default)]
pub(crate) struct Guards {
    table: Mutex<Table>,
}

/// The table behind [`Guards`]'s lock.
#[derive(Default)]
pub(crate) struct Table {
    /// Live guards' ids: bit `id % BLOCK` of the block `id / BLOCK`.
    live: BTreeMap<u64, u64>,
    /// Live guards.
    count: usize,
    /// Guards whose entry went away, by id.
    ended: hashbrown::HashMap<u64, Ended>,
    /// Guards (still waiting) whose entry was given a new dot by a metadata update, by id.
    moved: hashbrown::HashMap<u64, Moved>,
    /// The id of each moved guard, by its entry's current sequence number.
    moved_to: hashbrown::HashMap<u64, u64>,
    /// Wakers of the guards whose `lost()` is being awaited, by id.
    wakers: hashbrown::HashMap<u64, Waker>,
    /// The node has stopped: a guard still waiting hears `None`.
    closed: bool,
}

/// A guard whose entry went away.
struct Ended {
    /// The loss report, until `lost()` takes it.
    report: Option<Lost>,
    /// The entry as registered.
    registered: Entry,
}

/// A guard whose entry now has another dot.
struct Moved {
    /// The sequence number of the entry's dot now.
    seq: u64,
    /// The entry as registered.
    registered: Entry,
}

/// What a guard's handle learns of its claim.
pub(crate) struct Claim {
    /// The sequence number of the claim's dot now (the id, unless its metadata was updated).
    pub(crate) seq: u64,
    /// The entry's loss was reported to the guard (taken by `lost()` or waiting for it).
    pub(crate) lost: bool,
}

fn split(id: u64) -> (u64, u64) {
    (id / BLOCK, 1 << (id % BLOCK))
}

impl Guards {
    /// Locks the table (to put guards in, or note a metadata update, while the node is locked).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Table> {
        crate::driver::lock(&self.table)
    }

    /// Notes the losses among `events` (just taken from `node`, whose lock the caller holds):
    /// each own entry removed while a guard waits for it becomes that guard's loss report, with
    /// the winner for conflicts. Returns the wakers to wake once the locks are released.
    pub(crate) fn observe<'e>(
        &self,
        node: &Node,
        me: &NodeId,
        events: impl IntoIterator<Item = &'e Event>,
    ) -> Vec<Waker> {
        let mut woken = Vec::new();
        let mut removed = events.into_iter().filter_map(|e| match e {
            Event::Unregistered { entry, reason } if entry.dot.actor == *me => {
                Some((entry, reason))
            }
            _ => None,
        });
        let Some(first) = removed.next() else {
            return woken;
        };
        let mut t = self.lock();
        if t.count == 0 {
            return woken;
        }
        for (entry, reason) in std::iter::once(first).chain(removed) {
            let Some(id) = t.waiting(entry.dot.seq) else {
                continue;
            };
            let winner = if *reason == Reason::Conflict {
                node.lookup(&entry.key.name)
            } else {
                None
            };
            let registered = match t.moved.remove(&id) {
                Some(m) => {
                    t.moved_to.remove(&m.seq);
                    m.registered
                }
                None => entry.clone(),
            };
            let lost = Lost {
                reason: *reason,
                winner,
            };
            t.ended.insert(
                id,
                Ended {
                    report: Some(lost),
                    registered,
                },
            );
            woken.extend(t.wakers.remove(&id));
        }
        woken
    }

    /// What the guard `id` knows of its claim, or `None` if `id` is not live.
    pub(crate) fn claim(&self, id: u64) -> Option<Claim> {
        self.lock().claim(id)
    }

    /// The entry of the guard `id` as it was registered, or `None` if `id` is not live. `node`
    /// is this node, read-locked by the caller (see the module documentation).
    pub(crate) fn entry(&self, id: u64, node: &Node, me: &NodeId) -> Option<Entry> {
        let t = self.lock();
        if !t.is_live(id) {
            return None;
        }
        if let Some(e) = t.ended.get(&id) {
            return Some(e.registered.clone());
        }
        if let Some(m) = t.moved.get(&id) {
            return Some(m.registered.clone());
        }
        drop(t);
        let dot = Dot::new(me.clone(), id);
        if let Some((key, slot)) = node.registry().get_dot(&dot) {
            return Some(Entry {
                key,
                pid: pidmesh_proto::Pid {
                    node: me.clone(),
                    local: slot.value.pid,
                },
                meta: slot.value.meta,
                registered_at: slot.value.at,
                dot,
            });
        }
        // Removed, and the driver has not taken the event yet.
        node.pending_events().find_map(|e| match e {
            Event::Unregistered { entry, .. } if entry.dot == dot => Some(entry.clone()),
            _ => None,
        })
    }

    /// Releases the guard `id` (its handle is going away) and returns its claim.
    pub(crate) fn release(&self, id: u64) -> Option<Claim> {
        self.lock().release(id)
    }

    /// Takes the loss report of the guard `id`, or registers `cx`'s waker to be woken when it
    /// comes. `None` once the node has stopped, or if the report was taken already.
    pub(crate) fn poll_lost(&self, id: u64, cx: &mut Context<'_>) -> Poll<Option<Lost>> {
        let mut t = self.lock();
        if !t.is_live(id) {
            return Poll::Ready(None);
        }
        if let Some(e) = t.ended.get_mut(&id) {
            return Poll::Ready(e.report.take());
        }
        if t.closed {
            return Poll::Ready(None);
        }
        match t.wakers.entry(id) {
            hashbrown::hash_map::Entry::Occupied(mut o) => {
                if !o.get().will_wake(cx.waker()) {
                    o.insert(cx.waker().clone());
                }
            }
            hashbrown::hash_map::Entry::Vacant(v) => {
                v.insert(cx.waker().clone());
            }
        }
        Poll::Pending
    }

    /// The node stopped: every guard still waiting hears `None`.
    pub(crate) fn close(&self) {
        let wakers: Vec<Waker> = {
            let mut t = self.lock();
            t.closed = true;
            t.wakers.drain().map(|(_, w)| w).collect()
        };
        for w in wakers {
            w.wake();
        }
    }
}

impl Table {
    fn is_live(&self, id: u64) -> bool {
        let (block, bit) = split(id);
        self.live.get(&block).is_some_and(|b| b & bit != 0)
    }

    /// The id of the live guard still waiting for the entry whose dot has the sequence number
    /// `seq`, if there is one.
    fn waiting(&self, seq: u64) -> Option<u64> {
        let id = match self.moved_to.get(&seq) {
            Some(&id) => id,
            // A guard whose entry moved waits for its new dot only.
            None if self.moved.contains_key(&seq) => return None,
            None => seq,
        };
        (self.is_live(id) && !self.ended.contains_key(&id)).then_some(id)
    }

    fn claim(&self, id: u64) -> Option<Claim> {
        if !self.is_live(id) {
            return None;
        }
        Some(Claim {
            seq: self.moved.get(&id).map_or(id, |m| m.seq),
            lost: self.ended.contains_key(&id),
        })
    }

    /// Fails if no guard can be added ([`MAX_GUARDS`] live guards).
    pub(crate) fn check_room(&self) -> Result<(), RegisterError> {
        if self.count >= MAX_GUARDS {
            return Err(RegisterError::TooManyGuards);
        }
        Ok(())
    }

    /// Puts in the guard of the entry just registered by this node with the dot sequence number
    /// `seq`; returns its id (`seq`). Call [`Table::check_room`] first (while holding the
    /// lock): this fails the same way.
    pub(crate) fn insert(&mut self, seq: u64) -> Result<u64, RegisterError> {
        self.check_room()?;
        let id = seq;
        let (block, bit) = split(id);
        // Ids rise (they are this node's dot sequence numbers): the next one is in the
        // highest block, found without a search.
        let bits = match self.live.last_entry() {
            Some(last) if *last.key() == block => last.into_mut(),
            _ => self.live.entry(block).or_default(),
        };
        if *bits & bit == 0 {
            *bits |= bit;
            self.count += 1;
        }
        Ok(id)
    }

    /// The entry `old` of this node (under a name) now has the dot sequence number `seq`, its
    /// metadata updated: a guard waiting for `old` now waits for `seq`.
    pub(crate) fn meta_updated(&mut self, old: &Entry, seq: u64) {
        let Some(id) = self.waiting(old.dot.seq) else {
            return;
        };
        self.moved_to.remove(&old.dot.seq);
        self.moved_to.insert(seq, id);
        match self.moved.get_mut(&id) {
            Some(m) => m.seq = seq,
            None => {
                self.moved.insert(
                    id,
                    Moved {
                        seq,
                        registered: old.clone(),
                    },
                );
            }
        }
    }

    fn release(&mut self, id: u64) -> Option<Claim> {
        let claim = self.claim(id)?;
        let (block, bit) = split(id);
        if let Some(bits) = self.live.get_mut(&block) {
            *bits &= !bit;
            if *bits == 0 {
                self.live.remove(&block);
            }
        }
        self.count -= 1;
        self.ended.remove(&id);
        if let Some(m) = self.moved.remove(&id) {
            self.moved_to.remove(&m.seq);
        }
        self.wakers.remove(&id);
        if self.count == 0 {
            // The last guard went: give the side tables' memory back.
            let closed = self.closed;
            *self = Table {
                closed,
                ..Table::default()
            };
        }
        Some(claim)
    }
}

/// [`Node::update_meta`] for the facade: a guard waiting for the entry follows it to its new
/// dot (under the node's lock, see the module documentation).
pub(crate) fn update_meta(
    shared: &crate::driver::Shared,
    node: &mut Node,
    now: std::time::Instant,
    key: &pidmesh_proto::Key,
    pid: &pidmesh_proto::Pid,
    meta: bytes::Bytes,
) -> Result<Entry, pidmesh_proto::RemoveError> {
    let old = (key.kind == pidmesh_proto::KeyKind::Name)
        .then(|| node.entries(key).into_iter().find(|e| e.pid == *pid))
        .flatten();
    let new = node.update_meta(now, key, pid, meta)?;
    if let Some(old) = old {
        shared.guards.lock().meta_updated(&old, new.dot.seq);
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use pidmesh_proto::{Hlc, Key, Pid};

    use super::*;

    fn entry(seq: u64, meta: &'static str) -> Entry {
        let node = NodeId::new("n", 1);
        Entry {
            key: Key::name(format!("e/{seq}")),
            pid: Pid {
                node: node.clone(),
                local: 7,
            },
            meta: meta.into(),
            registered_at: Hlc {
                wall_ms: seq,
                logical: 0,
            },
            dot: Dot::new(node, seq),
        }
    }

    #[test]
    fn dense_guards_take_a_block_per_64_and_give_it_back() {
        let mut t = Table::default();
        for seq in 1..=10_000 {
            assert_eq!(t.insert(seq).ok(), Some(seq));
        }
        // Ids 1..=10,000 fall in blocks 0..=156.
        assert_eq!(t.live.len(), 157);
        assert_eq!(t.count, 10_000);
        for seq in (1..=10_000).step_by(2) {
            assert!(t.release(seq).is_some_and(|c| c.seq == seq && !c.lost));
        }
        assert_eq!(t.live.len(), 157);
        assert!(t.release(1).is_none(), "released twice");
        assert_eq!(t.waiting(2), Some(2));
        assert_eq!(t.waiting(3), None);
        for seq in (2..=10_000).step_by(2) {
            assert!(t.release(seq).is_some());
        }
        assert!(t.live.is_empty());
        assert_eq!(t.count, 0);
    }

    /// Ids usually rise (the highest block is found without a search), but one below the
    /// highest block, or in it after a higher one, still lands in its own block.
    #[test]
    fn guards_out_of_order_land_in_their_blocks() {
        let mut t = Table::default();
        for seq in [700, 5, 701, 64, 699, 5] {
            assert_eq!(t.insert(seq).ok(), Some(seq));
        }
        assert_eq!(t.count, 5, "5 inserted twice counts once");
        for seq in [5, 64, 699, 700, 701] {
            assert!(t.is_live(seq), "{seq}");
        }
        assert!(!t.is_live(6) && !t.is_live(702));
        assert_eq!(t.live.len(), 3);
    }

    #[test]
    fn a_full_table_refuses_more_guards() {
        let mut t = Table::default();
        assert_eq!(t.insert(1).ok(), Some(1));
        t.count = MAX_GUARDS;
        assert!(matches!(t.insert(2), Err(RegisterError::TooManyGuards)));
        assert!(!t.is_live(2));
        t.count = 1;
        assert_eq!(t.insert(2).ok(), Some(2));
    }

    #[test]
    fn a_moved_guard_waits_for_its_new_dot_only() {
        let mut t = Table::default();
        let first = entry(5, "v0");
        assert_eq!(t.insert(first.dot.seq).ok(), Some(5));
        t.meta_updated(&first, 9);
        assert_eq!(t.waiting(5), None);
        assert_eq!(t.waiting(9), Some(5));
        let mut second = entry(9, "v1");
        second.key = first.key.clone();
        t.meta_updated(&second, 12);
        assert_eq!(t.waiting(9), None);
        assert_eq!(t.waiting(12), Some(5));
        let moved = t.moved.get(&5).map(|m| (m.seq, m.registered.clone()));
        assert_eq!(moved, Some((12, first)));
        assert!(t.claim(5).is_some_and(|c| c.seq == 12));
        // An update of an entry no guard waits for changes nothing.
        t.meta_updated(&entry(20, ""), 21);
        assert_eq!(t.waiting(21), None);
        assert!(t.release(5).is_some());
        assert!(t.moved.is_empty() && t.moved_to.is_empty());
    }
}
