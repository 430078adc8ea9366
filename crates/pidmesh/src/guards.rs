//! The guard table: what the live [`Registration`](crate::Registration) guards of this node
//! need, one slot each, shared by all of them and the driver.
//!
//! A guard is a handle (the registry and a slot number); its slot keeps what its entry is
//! rebuilt from (name, pid, metadata, registration time, dot sequence) and, once the entry has
//! gone away for a reason other than the guard, the [`Lost`] report. The driver finds a slot
//! through a hash index of (name, local pid, registration time): the triple names one claim, so
//! a later registration of the same name and pid has a slot of its own and is never told about
//! an earlier one's loss. Slots live in one `Vec` with a free list; only the guard of a slot
//! frees it, so a slot number held by a guard always names that guard's slot, whatever was in
//! it before. Wakers are kept aside, only for guards whose `lost()` is being awaited.
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

/// Marks the end of the free list.
const NO_SLOT: u32 = u32::MAX;

/// Every live guard's slot; see the module documentation.
#[derive(Default)]
pub(crate) struct Guards {
    table: Mutex<Table>,
}

/// The table behind [`Guards`]'s lock.
pub(crate) struct Table {
    slots: Vec<Slot>,
    /// First free slot (`NO_SLOT`: none); each free slot names the next.
    free: u32,
    /// Slots still waiting for their entry's loss, by (name, local pid, registration time).
    index: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Wakers of the guards whose `lost()` is being awaited, by slot.
    wakers: hashbrown::HashMap<u32, Waker>,
    /// Slots in use.
    live: usize,
    /// The node has stopped: a guard still waiting hears `None`.
    closed: bool,
}

/// One guard's slot. Free slots keep no name and no metadata.
struct Slot {
    name: CompactString,
    meta: Bytes,
    local: u64,
    seq: u64,
    at_ms: u64,
    at_logical: u32,
    state: State,
}

enum State {
    /// Not in use; the next free slot.
    Free(u32),
    /// The entry is (as far as the driver has reported) still there.
    Waiting,
    /// The entry went away; the report waits for `lost()`.
    Lost(Box<Lost>),
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
            slots: Vec::new(),
            free: NO_SLOT,
            index: hashbrown::HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            wakers: hashbrown::HashMap::new(),
            live: 0,
            closed: false,
        }
    }
}

fn hash_claim(hasher: &hashbrown::DefaultHashBuilder, name: &str, local: u64, at: Hlc) -> u64 {
    hasher.hash_one((name, local, at.wall_ms, at.logical))
}

impl Slot {
    fn at(&self) -> Hlc {
        Hlc {
            wall_ms: self.at_ms,
            logical: self.at_logical,
        }
    }

    fn is(&self, name: &str, local: u64, at: Hlc) -> bool {
        self.local == local && self.at() == at && self.name == name
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
        let waker = self.report_locked(&mut self.lock(), entry, lost);
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn report_locked(&self, t: &mut Table, entry: &Entry, lost: Lost) -> Option<Waker> {
        let (name, local, at) = (&entry.key.name, entry.pid.local, entry.registered_at);
        let hash = hash_claim(&t.hasher, name, local, at);
        let slots = &t.slots;
        let Ok(found) = t.index.find_entry(hash, |&i| {
            slots.get(i as usize).is_some_and(|s| s.is(name, local, at))
        }) else {
            return None;
        };
        let (i, _) = found.remove();
        if let Some(slot) = t.slots.get_mut(i as usize) {
            slot.state = State::Lost(Box::new(lost));
        }
        t.wakers.remove(&i)
    }

    /// The claim of slot `i`, or `None` if it is not in use.
    pub(crate) fn claim(&self, i: u32) -> Option<Claim> {
        let t = self.lock();
        let slot = t.slots.get(i as usize)?;
        let (lost, reported) = match slot.state {
            State::Free(_) => return None,
            State::Waiting => (false, false),
            State::Lost(_) => (true, false),
            State::Reported => (true, true),
        };
        Some(Claim {
            name: slot.name.clone(),
            local: slot.local,
            at: slot.at(),
            lost,
            reported,
        })
    }

    /// The entry of slot `i` as it was registered (`node` is this node), or `None` if the slot
    /// is not in use.
    pub(crate) fn entry(&self, i: u32, node: &NodeId) -> Option<Entry> {
        let t = self.lock();
        let slot = t.slots.get(i as usize)?;
        if matches!(slot.state, State::Free(_)) {
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
        let mut t = self.lock();
        t.release(i)
    }

    /// Takes the loss report of slot `i`, or registers `cx`'s waker to be woken when it
    /// comes. `None` once the node has stopped, or if the report was taken already.
    pub(crate) fn poll_lost(&self, i: u32, cx: &mut Context<'_>) -> Poll<Option<Lost>> {
        let mut t = self.lock();
        let t = &mut *t;
        let Some(slot) = t.slots.get_mut(i as usize) else {
            return Poll::Ready(None);
        };
        match std::mem::replace(&mut slot.state, State::Reported) {
            State::Lost(lost) => Poll::Ready(Some(*lost)),
            State::Waiting if !t.closed => {
                slot.state = State::Waiting;
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
            other => {
                slot.state = other;
                Poll::Ready(None)
            }
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
    fn find(&self, name: &str, local: u64, at: Hlc) -> Option<u32> {
        let hash = hash_claim(&self.hasher, name, local, at);
        self.index
            .find(hash, |&i| {
                self.slots
                    .get(i as usize)
                    .is_some_and(|s| s.is(name, local, at))
            })
            .copied()
    }

    /// Room for `more` slots beyond the live ones.
    pub(crate) fn reserve(&mut self, more: usize) {
        let needed = (self.live + more).saturating_sub(self.slots.len());
        self.slots.reserve(needed);
        let Table {
            index,
            slots,
            hasher,
            ..
        } = self;
        index.reserve(more, |&i| rehash(hasher, slots, i));
    }

    /// Fails if no slot can be added (more than `u32::MAX - 1` live guards).
    pub(crate) fn check_room(&self) -> Result<(), RegisterError> {
        if self.free == NO_SLOT && self.slots.len() >= NO_SLOT as usize {
            return Err(RegisterError::TooManyGuards);
        }
        Ok(())
    }

    /// Puts in the slot of a guard of `entry`, just registered by this node; returns its
    /// number. Call [`Table::check_room`] first (while holding the lock): it returns
    /// [`RegisterError::TooManyGuards`] in the same case.
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
            state: State::Waiting,
        };
        let hash = hash_claim(&self.hasher, &slot.name, slot.local, registered_at);
        let i = if self.free == NO_SLOT {
            let i = self.slots.len() as u32;
            self.slots.push(slot);
            i
        } else {
            let i = self.free;
            let Some(free) = self.slots.get_mut(i as usize) else {
                return Err(RegisterError::TooManyGuards);
            };
            self.free = match free.state {
                State::Free(next) => next,
                _ => NO_SLOT,
            };
            *free = slot;
            i
        };
        let Table {
            index,
            slots,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, i, |&j| rehash(hasher, slots, j));
        self.live += 1;
        Ok(i)
    }

    fn release(&mut self, i: u32) -> Option<Claim> {
        let slot = self.slots.get_mut(i as usize)?;
        let (lost, reported) = match slot.state {
            State::Free(_) => return None,
            State::Waiting => (false, false),
            State::Lost(_) => (true, false),
            State::Reported => (true, true),
        };
        let claim = Claim {
            name: std::mem::take(&mut slot.name),
            local: slot.local,
            at: slot.at(),
            lost,
            reported,
        };
        slot.meta = Bytes::new();
        slot.state = State::Free(self.free);
        self.free = i;
        self.live -= 1;
        if !lost {
            let hash = hash_claim(&self.hasher, &claim.name, claim.local, claim.at);
            if let Ok(found) = self.index.find_entry(hash, |&j| j == i) {
                found.remove();
            }
        }
        self.wakers.remove(&i);
        if self.live == 0 {
            // The last guard went: give the memory back.
            self.slots = Vec::new();
            self.index = hashbrown::HashTable::new();
            self.wakers = hashbrown::HashMap::new();
            self.free = NO_SLOT;
        }
        Some(claim)
    }
}

fn rehash(hasher: &hashbrown::DefaultHashBuilder, slots: &[Slot], i: u32) -> u64 {
    match slots.get(i as usize) {
        Some(s) => hash_claim(hasher, &s.name, s.local, s.at()),
        None => 0,
    }
}
