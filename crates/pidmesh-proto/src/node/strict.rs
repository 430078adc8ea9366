//! Strict registration: a unique name held only while a quorum vouches for it, on the
//! singleton election's leases (see `election.rs`).

use std::time::Instant;

use bytes::Bytes;
use pidmesh_crdt::Dot;
use pidmesh_wire::{self as wire, Key, NodeId, Pid};

use crate::entry::{Entry, Event, Reason};
use crate::error::RegisterError;
use crate::resolver::SINGLETON_RUNNING_META;
use crate::singleton::{Phase, SingletonPolicy, SingletonSlot, StopReason};

use super::Node;

impl Node {
    /// Starts a strict registration of `pid` (a live process of this node) under the unique
    /// `name`: the node claims the name once it is free here and this node sees `quorum`
    /// members, and holds it under the same lease as a quorum singleton
    /// ([`SingletonPolicy::StaticQuorum`]`(quorum)`): the claim counts as registered only once
    /// `quorum` nodes (this one included) vouched that they know no other claim, which emits
    /// [`Event::SingletonStarted`] for `name` (see [`Node::strict_held`]). When the lease can
    /// no longer be renewed, or the claim is lost, [`Event::SingletonStopped`] follows and the
    /// registration is over for good (the slot never claims again; remove it with
    /// [`Node::remove_strict`]). Two strict registrations of one name are never held at the
    /// same instant, under the clock assumptions of `docs/singletons.md`.
    ///
    /// # Errors
    /// [`RegisterError::InvalidName`], [`RegisterError::MetaTooLarge`],
    /// [`RegisterError::NotLocal`], [`RegisterError::Stopped`], or
    /// [`RegisterError::AlreadyRegistered`] if this node already has a strict registration or
    /// a singleton candidacy for the name. Nothing changed on error.
    pub fn register_strict(
        &mut self,
        now: Instant,
        name: &str,
        pid: &Pid,
        quorum: usize,
        meta: Bytes,
    ) -> Result<(), RegisterError> {
        if self.left {
            return Err(RegisterError::Stopped);
        }
        wire::check_key_name(name).map_err(RegisterError::InvalidName)?;
        if meta.len() + SINGLETON_RUNNING_META.len() > wire::MAX_META_LEN {
            return Err(RegisterError::MetaTooLarge(meta.len()));
        }
        if !self.check_pid(pid) {
            return Err(RegisterError::NotLocal(pid.clone()));
        }
        if let Some(slot) = self.singletons.get(name) {
            return Err(self.taken(name, &slot.pid));
        }
        self.singletons.insert(
            name.to_string(),
            SingletonSlot {
                policy: SingletonPolicy::StaticQuorum(quorum.max(1)),
                pid: pid.clone(),
                phase: Phase::Idle,
                meta,
                strict: true,
                ended: None,
            },
        );
        self.settle(now);
        Ok(())
    }

    /// Ends the strict registration of `name`: removes the slot and this node's claim (the
    /// process itself lives on). Returns false if there was no strict registration of `name`.
    pub fn remove_strict(&mut self, now: Instant, name: &str) -> bool {
        if !self.singletons.get(name).is_some_and(|s| s.strict) {
            return false;
        }
        let Some(slot) = self.singletons.remove(name) else {
            return false;
        };
        if matches!(slot.phase, Phase::Held { running: true, .. }) {
            self.events.push_back(Event::SingletonStopped {
                name: name.to_string(),
                reason: StopReason::Withdrawn,
            });
        }
        let ours: Vec<Dot<NodeId>> = self
            .entries(&Key::name(name))
            .into_iter()
            .filter(|e| e.pid == slot.pid)
            .map(|e| e.dot)
            .collect();
        if !ours.is_empty() {
            self.remove_own(now, &ours, Reason::Normal);
        }
        self.settle(now);
        true
    }

    /// The claim of the strict registration of `name` while it is held under a valid lease.
    pub fn strict_held(&self, name: &str) -> Option<Entry> {
        let slot = self.singletons.get(name).filter(|s| s.strict)?;
        if !matches!(slot.phase, Phase::Held { running: true, .. }) {
            return None;
        }
        self.lookup(name).filter(|e| e.pid == slot.pid)
    }

    /// Why the strict registration of `name` ended, once it was held and then lost (the
    /// reason of the [`Event::SingletonStopped`] it emitted).
    pub fn strict_ended(&self, name: &str) -> Option<StopReason> {
        self.singletons
            .get(name)
            .filter(|s| s.strict)
            .and_then(|s| s.ended)
    }
}
