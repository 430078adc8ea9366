//! The guard table: what the live [`Registration`](crate::Registration) guards of this node
//! need, one slot each, shared by all of them and the driver.
//!
//! A guard is a handle (the registry and a slot number); its slot keeps what its entry is
//! rebuilt from (name, pid, metadata, registration time, dot sequence) and, once the entry has
//! gone away for a reason other than the guard, the [`Lost`] report. The driver finds a slot
//! through a hash index of (name, local pid, registration time): the triple names one claim, so
//! a later registration of the same name and pid has a slot of its own and is never told about
//! an earlier one's loss. Only the guard of a slot frees it, so a slot number held by a guard
//! always names that guard's slot, whatever was in it before. Wakers are kept aside, only for
//! guards whose `lost()` is being awaited.
//!
//! Slots live in chunks of [`CHUNK`] that never move or grow (no copy of the whole table as it
//! grows, and at most one chunk partly used), with a free list through the free slots.
//!
//! Lock order: the node's lock, then this table's (registration puts the slot in while it
//! holds the node, so the driver cannot report a loss before the slot exists); never the other
//! way round.

use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use pidmesh_proto::{Dot, Entry, Hlc, Key, NodeId, Pid};
use pidmesh_wire::CompactString;

use crate::error::RegisterError;
use crate::registry::Lost;

/// Marks the end of the free list; also the first slot number never used.
const NO_SLOT: u32 = u32::MAX;

/// Slots per chunk (88 KiB).
const CHUNK: usize = 1024;

/// Every live guard's slot; see the module documentation.
#[derive(Default)]
pub(crate) struct Guards {
    table: Mutex<Table>,
}

/// The table behind [`Guards`]'s lock.
pub(crate) struct Table {
    chunks: Vec<Vec<Slot>>,
    /// Slots made so far (used or free).
    made: usize,
    /// First free slot (`NO_SLOT`: none); each free slot names the next.
    free: u32,
    /// Slots still waiting for their entry's loss, by (name, local pid, registration time).
    index: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Wakers of the guards whose `lost()` is being awaited, by slot.
    wakers: hashbrown::HashMap<u32, Waker>,
    /// Loss reports not yet taken by `lost()`, by slot (losses are rare: no room in every
    /// slot for one).
    reports: hashbrown::HashMap<u32, Lost>,
    /// Slots in use.
    live: usize,
    /// The node has stopped: a guard still waiting hears `None`.
    closed: bool,
}

/// One guard's slot (88 bytes). Free slots keep no name and no metadata.
struct Slot {
    name: CompactString,
    meta: Bytes,
    /// The local pid; in a free slot, the next free slot.
    local: u64,
    seq: u64,
    at_ms: u64,
    at_logical: u32,
    phase: Phase,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not in use.
    Free,
    /// The entry is (as far as the driver has reported) still there.
    Waiting,
    /// The entry went away; the report (in `Table::reports`) waits for `lost()`.
    Lost,
    /// `lost()` returned the report.
    Reported,
}

/// What the guard of a slot identifies its claim by.
pub(crate) struct Claim {
    pub(crate) name: CompactString,
    pub(crate) local: u64,
    pub(crate) at: Hlc,
    /// The entry's loss was reported to the guard or waits for it.
    pub(crate) lost: bool,
    /// `lost()` returned the report.
    pub(crate) reported: bool,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            made: 0,
            free: NO_SLOT,
            index: hashbrown::HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            wakers: hashbrown::HashMap::new(),
            reports: hashbrown::HashMap::new(),
            live: 0,
            closed: false,
        }
    }
}

fn hash_claim(hasher: &hashbrown::DefaultHashBuilder, name: &str, local: u64, at: Hlc) -> u64 {
    hasher.hash_one((name, local, at.wall_ms, at.logical))
}

fn slot_in(chunks: &[Vec<Slot>], i: u32) -> Option<&Slot> {
    chunks.get(i as usize / CHUNK)?.get(i as usize % CHUNK)
}

impl Slot {
    fn at(&self) -> Hlc {
        Hlc {
            wall_ms: self.at_ms,
            logical: self.at_logical,
        }
    }

    /// Whether this is the waiting claim (name, local, at).
    fn is(&self, name: &str, local: u64, at: Hlc) -> bool {
        self.phase == Phase::Waiting && self.local == local && self.at() == at && self.name == name
    }

    fn claim(&self) -> Option<Claim> {
        let (lost, reported) = match self.phase {
            Phase::Free => return None,
            Phase::Waiting => (false, false),
            Phase::Lost => (true, false),
            Phase::Reported => (true, true),
        };
        Some(Claim {
            name: self.name.clone(),
            local: self.local,
            at: self.at(),
            lost,
            reported,
        })
    }
}

impl Guards {
    /// Locks the table (to put slots in while the node is locked).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Table> {
        crate::driver::lock(&self.table)
    }

    /// Whether a guard waits for the loss of `entry` (a claim of this node).
    pub(crate) fn watches(&self, entry: &Entry) -> bool {
        let t = self.lock();
        t.find(&entry.key.name, entry.pid.local, entry.registered_at)
            .is_some()
    }

    /// Hands `lost` to the guard of `entry`'s claim, if one waits for it, and wakes it.
    pub(crate) fn report(&self, entry: &Entry, lost: Lost) {
        let waker = self.lock().report(entry, lost);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The claim of slot `i`, or `None` if it is not in use.
    pub(crate) fn claim(&self, i: u32) -> Option<Claim> {
        slot_in(&self.lock().chunks, i)?.claim()
    }

    /// The entry of slot `i` as it was registered (`node` is this node), or `None` if the slot
    /// is not in use.
    pub(crate) fn entry(&self, i: u32, node: &NodeId) -> Option<Entry> {
        let t = self.lock();
        let slot = slot_in(&t.chunks, i)?;
        if slot.phase == Phase::Free {
            return None;
        }
        Some(Entry {
            key: Key::name(slot.name.as_str()),
            pid: Pid {
                node: node.clone(),
                local: slot.local,
            },
            meta: slot.meta.clone(),
            registered_at: slot.at(),
            dot: Dot::new(node.clone(), slot.seq),
        })
    }

    /// Frees slot `i` (its guard is going away) and returns its claim.
    pub(crate) fn release(&self, i: u32) -> Option<Claim> {
        self.lock().release(i)
    }

    /// Takes the loss report of slot `i`, or registers `cx`'s waker to be woken when it
    /// comes. `None` once the node has stopped, or if the report was taken already.
    pub(crate) fn poll_lost(&self, i: u32, cx: &mut Context<'_>) -> Poll<Option<Lost>> {
        let mut t = self.lock();
        let t = &mut *t;
        let closed = t.closed;
        let Some(slot) = t
            .chunks
            .get_mut(i as usize / CHUNK)
            .and_then(|c| c.get_mut(i as usize % CHUNK))
        else {
            return Poll::Ready(None);
        };
        match slot.phase {
            Phase::Lost => {
                slot.phase = Phase::Reported;
                Poll::Ready(t.reports.remove(&i))
            }
            Phase::Waiting if !closed => {
                match t.wakers.entry(i) {
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
            Phase::Waiting | Phase::Reported | Phase::Free => Poll::Ready(None),
        }
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
    fn slot_mut(&mut self, i: u32) -> Option<&mut Slot> {
        self.chunks
            .get_mut(i as usize / CHUNK)?
            .get_mut(i as usize % CHUNK)
    }

    fn find(&self, name: &str, local: u64, at: Hlc) -> Option<u32> {
        let hash = hash_claim(&self.hasher, name, local, at);
        self.index
            .find(hash, |&i| {
                slot_in(&self.chunks, i).is_some_and(|s| s.is(name, local, at))
            })
            .copied()
    }

    /// Marks the claim of `entry` lost (if a guard waits for it) and returns the waker to wake.
    fn report(&mut self, entry: &Entry, lost: Lost) -> Option<Waker> {
        let (name, local, at) = (&entry.key.name, entry.pid.local, entry.registered_at);
        let hash = hash_claim(&self.hasher, name, local, at);
        let chunks = &self.chunks;
        let Ok(found) = self.index.find_entry(hash, |&i| {
            slot_in(chunks, i).is_some_and(|s| s.is(name, local, at))
        }) else {
            return None;
        };
        let (i, _) = found.remove();
        if let Some(slot) = self.slot_mut(i) {
            slot.phase = Phase::Lost;
            self.reports.insert(i, lost);
        }
        self.wakers.remove(&i)
    }

    /// Room in the index for `more` slots beyond the live ones.
    pub(crate) fn reserve(&mut self, more: usize) {
        let Table {
            index,
            chunks,
            hasher,
            ..
        } = self;
        index.reserve(more, |&i| rehash(hasher, chunks, i));
    }

    /// Fails if no slot can be added (`u32::MAX` live guards).
    pub(crate) fn check_room(&self) -> Result<(), RegisterError> {
        if self.free == NO_SLOT && self.made >= NO_SLOT as usize {
            return Err(RegisterError::TooManyGuards);
        }
        Ok(())
    }

    /// Puts in the slot of a guard of `entry`, just registered by this node; returns its
    /// number. Call [`Table::check_room`] first (while holding the lock): this fails the same
    /// way.
    pub(crate) fn insert(&mut self, entry: Entry) -> Result<u32, RegisterError> {
        self.check_room()?;
        let Entry {
            key,
            pid,
            meta,
            registered_at,
            dot,
        } = entry;
        let slot = Slot {
            name: key.name,
            meta,
            local: pid.local,
            seq: dot.seq,
            at_ms: registered_at.wall_ms,
            at_logical: registered_at.logical,
            phase: Phase::Waiting,
        };
        let hash = hash_claim(&self.hasher, &slot.name, slot.local, registered_at);
        let i = if self.free == NO_SLOT {
            let i = self.made;
            if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                self.chunks.push(Vec::with_capacity(CHUNK));
            }
            if let Some(chunk) = self.chunks.last_mut() {
                chunk.push(slot);
            }
            self.made += 1;
            i as u32
        } else {
            let i = self.free;
            let Some(free) = self.slot_mut(i) else {
                return Err(RegisterError::TooManyGuards);
            };
            let next = free.local as u32;
            *free = slot;
            self.free = next;
            i
        };
        let Table {
            index,
            chunks,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, i, |&j| rehash(hasher, chunks, j));
        self.live += 1;
        Ok(i)
    }

    fn release(&mut self, i: u32) -> Option<Claim> {
        let free = self.free;
        let slot = self.slot_mut(i)?;
        let (lost, reported) = match slot.phase {
            Phase::Free => return None,
            Phase::Waiting => (false, false),
            Phase::Lost => (true, false),
            Phase::Reported => (true, true),
        };
        let claim = Claim {
            name: std::mem::take(&mut slot.name),
            local: slot.local,
            at: slot.at(),
            lost,
            reported,
        };
        slot.meta = Bytes::new();
        slot.phase = Phase::Free;
        slot.local = u64::from(free);
        self.free = i;
        self.live -= 1;
        if !lost {
            let hash = hash_claim(&self.hasher, &claim.name, claim.local, claim.at);
            if let Ok(found) = self.index.find_entry(hash, |&j| j == i) {
                found.remove();
            }
        }
        self.wakers.remove(&i);
        self.reports.remove(&i);
        if self.live == 0 {
            // The last guard went: give the memory back.
            let closed = self.closed;
            *self = Table {
                closed,
                ..Table::default()
            };
        }
        Some(claim)
    }
}

fn rehash(hasher: &hashbrown::DefaultHashBuilder, chunks: &[Vec<Slot>], i: u32) -> u64 {
    match slot_in(chunks, i) {
        Some(s) => hash_claim(hasher, &s.name, s.local, s.at()),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_88_bytes() {
        assert!(
            std::mem::size_of::<Slot>() <= 88,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }
}
