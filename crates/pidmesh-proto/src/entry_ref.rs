//! A borrowed view of a registry entry, for lookups that copy nothing.

use bytes::Bytes;
use pidmesh_crdt::{Dot, SlotRef};
use pidmesh_wire::{Hlc, Key, NodeId, Pid, Value};

use crate::entry::Entry;

/// One registration as stored, borrowed for the length of a read (see
/// [`crate::RegistryReader::with_lookup`]; through the `pidmesh` facade, `Registry::with_lookup`
/// and `Scope::with_lookup`): the fields of an [`Entry`] without copying the
/// key, the node id or the metadata. [`EntryRef::to_entry`] makes the owned [`Entry`].
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    /// The name or group.
    pub key: &'a Key,
    /// The node hosting the registered process; also the origin of the registration's dot.
    pub node: &'a NodeId,
    /// [`Pid::local`] of the registered process.
    pub local: u64,
    /// Application metadata.
    pub meta: &'a Bytes,
    /// When it was registered, by the owner's hybrid logical clock.
    pub registered_at: Hlc,
    /// The sequence number of the registration's dot.
    pub seq: u64,
}

impl<'a> EntryRef<'a> {
    /// The entry of one stored slot under `key`.
    pub(crate) fn new(key: &'a Key, slot: &SlotRef<'a, NodeId, Value>) -> Self {
        Self {
            key,
            node: slot.actor,
            local: slot.value.pid,
            meta: &slot.value.meta,
            registered_at: slot.value.at,
            seq: slot.seq,
        }
    }

    /// The registered process (copies the node id).
    pub fn pid(&self) -> Pid {
        Pid {
            node: self.node.clone(),
            local: self.local,
        }
    }

    /// The unique tag of this registration (copies the node id).
    pub fn dot(&self) -> Dot<NodeId> {
        Dot::new(self.node.clone(), self.seq)
    }

    /// True if `pid` is the registered process (compares without copying).
    pub fn is_pid(&self, pid: &Pid) -> bool {
        self.local == pid.local && *self.node == pid.node
    }

    /// The application's metadata, without the running-claim marker (see [`Entry::app_meta`]).
    pub fn app_meta(&self) -> &'a [u8] {
        let meta: &'a [u8] = self.meta;
        meta.strip_prefix(crate::resolver::SINGLETON_RUNNING_META)
            .unwrap_or(meta)
    }

    /// True when this entry is the claim of a running singleton or a held strict registration.
    pub fn is_running_claim(&self) -> bool {
        crate::resolver::is_running_claim(self.meta)
    }

    /// An owned copy.
    pub fn to_entry(&self) -> Entry {
        Entry {
            key: self.key.clone(),
            pid: self.pid(),
            meta: self.meta.clone(),
            registered_at: self.registered_at,
            dot: self.dot(),
        }
    }
}

impl PartialEq<Entry> for EntryRef<'_> {
    fn eq(&self, other: &Entry) -> bool {
        *self.key == other.key
            && self.is_pid(&other.pid)
            && *self.meta == other.meta
            && self.registered_at == other.registered_at
            && *self.node == other.dot.actor
            && self.seq == other.dot.seq
    }
}
