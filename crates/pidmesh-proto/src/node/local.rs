//! Owner writes: this node's own processes, their registrations, group memberships and exits.

use std::time::Instant;

use bytes::Bytes;
use pidmesh_crdt::{Dot, Slot};
use pidmesh_wire::{self as wire, Key, KeyKind, NodeId, Pid, Value};

use crate::entry::{Entry, Event, Reason};
use crate::error::{JoinError, RegisterError, RemoveError};
use crate::reader;

use super::{Node, entry_of};

impl Node {
    // ----- local operations ----------------------------------------------------------------

    /// A new process identity on this node. It stays live until [`Node::process_exited`].
    pub fn spawn_pid(&mut self) -> Pid {
        let local = self.next_pid;
        self.next_pid += 1;
        self.live_pids.insert(local);
        Pid {
            node: self.me.node.clone(),
            local,
        }
    }

    pub(super) fn check_pid(&self, pid: &Pid) -> bool {
        pid.node == self.me.node && self.live_pids.contains(&pid.local)
    }

    pub(super) fn own_entry(&self, key: &Key, pid: &Pid) -> Option<Entry> {
        self.map
            .get(key)
            .iter()
            .find(|s| s.dot.actor == self.me.node && s.value.pid == pid.local)
            .map(|s| entry_of(key, s))
    }

    pub(super) fn add_own(&mut self, now: Instant, key: Key, pid: &Pid, meta: Bytes) -> Entry {
        let contested = key.kind == KeyKind::Name;
        self.add_own_checked(now, key, pid, meta, contested)
    }

    /// Adds this node's entry and queues it for dissemination. `maybe_contested` is false
    /// only when the caller knows the key held no entry before (the new one is then alone
    /// under it and there is no conflict to look for); otherwise a name holding more than one
    /// entry afterwards is marked for conflict resolution.
    fn add_own_checked(
        &mut self,
        now: Instant,
        key: Key,
        pid: &Pid,
        meta: Bytes,
        maybe_contested: bool,
    ) -> Entry {
        let at = self.clock.tick(self.wall_ms(now));
        let value = Value {
            pid: pid.local,
            meta,
            at,
        };
        let (dot, alone) = self
            .map
            .add_dot_alone(&self.me.node, key.clone(), value.clone());
        // The store's insert said whether the key held an entry: a name with another claim
        // now is marked, without reading it again.
        if maybe_contested && !alone {
            self.dirty.insert(key.clone());
        }
        self.own_added(now, key, Slot { dot, value })
    }

    /// Queues this node's add just made for dissemination and reports it.
    fn own_added(&mut self, now: Instant, key: Key, slot: Slot<NodeId, Value>) -> Entry {
        let entry = entry_of(&key, &slot);
        self.queue_own_add(now, key, slot);
        self.events.push_back(Event::Registered(entry.clone()));
        entry
    }

    /// [`Node::own_added`] for a caller that keeps only the dot's sequence number: the entry
    /// built for the `Registered` event moves into it instead of being copied for the caller.
    fn own_added_seq(&mut self, now: Instant, key: Key, slot: Slot<NodeId, Value>) -> u64 {
        let entry = entry_of(&key, &slot);
        let seq = slot.dot.seq;
        self.queue_own_add(now, key, slot);
        self.events.push_back(Event::Registered(entry));
        seq
    }

    /// Registers `pid` (a live process of this node) under the unique `name`.
    ///
    /// Visible locally at once; other nodes see it after the next delta batch.
    ///
    /// # Errors
    /// See [`RegisterError`]; on error nothing changed.
    pub fn register(
        &mut self,
        now: Instant,
        name: &str,
        pid: &Pid,
        meta: Bytes,
    ) -> Result<Entry, RegisterError> {
        self.register_as(now, name, pid, meta, Self::own_added, |e| e)
    }

    /// Like [`Node::register`] (the same checks, the same `Registered` event, the same batch),
    /// but returns only the sequence number of the new entry's dot (whose actor is this node):
    /// no copy of the entry is made for the caller. For callers that keep a handle to the
    /// registration rather than the entry (the facade's guards).
    ///
    /// # Errors
    /// See [`RegisterError`]; on error nothing changed.
    pub fn register_seq(
        &mut self,
        now: Instant,
        name: &str,
        pid: &Pid,
        meta: Bytes,
    ) -> Result<u64, RegisterError> {
        self.register_as(now, name, pid, meta, Self::own_added_seq, |e| e.dot.seq)
    }

    /// The body of [`Node::register`]: `free` queues and reports the claim of a free name (the
    /// common case), `taken` turns the entry added beside existing ones into the answer.
    fn register_as<R>(
        &mut self,
        now: Instant,
        name: &str,
        pid: &Pid,
        meta: Bytes,
        free: impl FnOnce(&mut Self, Instant, Key, Slot<NodeId, Value>) -> R,
        taken: impl FnOnce(Entry) -> R,
    ) -> Result<R, RegisterError> {
        if self.left {
            return Err(RegisterError::Stopped);
        }
        wire::check_key_name(name).map_err(RegisterError::InvalidName)?;
        if meta.len() > wire::MAX_META_LEN {
            return Err(RegisterError::MetaTooLarge(meta.len()));
        }
        if !self.check_pid(pid) {
            return Err(RegisterError::NotLocal(pid.clone()));
        }
        let key = Key::name(name);
        // A free name (the common case) is checked and claimed in one probe of the store: the
        // value, and its clock reading, are made only once the name is known to be free.
        let wall = self.wall_ms(now);
        let clock = &mut self.clock;
        let mut meta = Some(meta);
        let claimed = self.map.add_dot_if_vacant(&self.me.node, &key, || Value {
            pid: pid.local,
            meta: meta.take().unwrap_or_default(),
            at: clock.tick(wall),
        });
        if let Some((dot, value)) = claimed {
            let out = free(self, now, key, Slot { dot, value });
            self.settle(now);
            return Ok(out);
        }
        let meta = meta.unwrap_or_default();
        // The name holds entries: one read serves both the check and the conflict test after
        // the add.
        let found = self.map.read(&key, |slots| reader::found(&key, slots));
        let was_empty = matches!(found, reader::Found::None);
        if let Some(current) = reader::winner(&self.resolver, name, found) {
            return Err(RegisterError::AlreadyRegistered(Box::new(current)));
        }
        let entry = self.add_own_checked(now, key, pid, meta, !was_empty);
        self.settle(now);
        Ok(taken(entry))
    }

    /// Adds `pid` (a live process of this node) to `group`.
    ///
    /// # Errors
    /// See [`JoinError`]; on error nothing changed.
    pub fn join(
        &mut self,
        now: Instant,
        group: &str,
        pid: &Pid,
        meta: Bytes,
    ) -> Result<Entry, JoinError> {
        if self.left {
            return Err(JoinError::Stopped);
        }
        wire::check_key_name(group).map_err(JoinError::InvalidName)?;
        if meta.len() > wire::MAX_META_LEN {
            return Err(JoinError::MetaTooLarge(meta.len()));
        }
        if !self.check_pid(pid) {
            return Err(JoinError::NotLocal(pid.clone()));
        }
        let key = Key::group(group);
        if let Some(e) = self.own_entry(&key, pid) {
            return Err(JoinError::AlreadyMember(Box::new(e)));
        }
        let entry = self.add_own(now, key, pid, meta);
        self.settle(now);
        Ok(entry)
    }

    /// Removes `pid`'s registration of the unique `name`.
    ///
    /// # Errors
    /// [`RemoveError::NotFound`] if this node holds no such entry; nothing changed.
    pub fn unregister(
        &mut self,
        now: Instant,
        name: &str,
        pid: &Pid,
    ) -> Result<Entry, RemoveError> {
        self.remove_key(now, &Key::name(name), pid)
    }

    /// Removes `pid` from `group`.
    ///
    /// # Errors
    /// [`RemoveError::NotFound`] if `pid` is not in the group on this node; nothing changed.
    pub fn leave(&mut self, now: Instant, group: &str, pid: &Pid) -> Result<Entry, RemoveError> {
        self.remove_key(now, &Key::group(group), pid)
    }

    pub(super) fn remove_key(
        &mut self,
        now: Instant,
        key: &Key,
        pid: &Pid,
    ) -> Result<Entry, RemoveError> {
        if self.left {
            return Err(RemoveError::Stopped);
        }
        let entry = self.own_entry(key, pid).ok_or(RemoveError::NotFound)?;
        self.remove_own(now, std::slice::from_ref(&entry.dot), Reason::Normal);
        self.settle(now);
        Ok(entry)
    }

    /// Replaces the metadata of `pid`'s entry under `key`.
    ///
    /// # Errors
    /// [`RemoveError::NotFound`] if there is no such entry, [`RemoveError::MetaTooLarge`];
    /// on error nothing changed.
    pub fn update_meta(
        &mut self,
        now: Instant,
        key: &Key,
        pid: &Pid,
        meta: Bytes,
    ) -> Result<Entry, RemoveError> {
        if self.left {
            return Err(RemoveError::Stopped);
        }
        if meta.len() > wire::MAX_META_LEN {
            return Err(RemoveError::MetaTooLarge(meta.len()));
        }
        let old = self.own_entry(key, pid).ok_or(RemoveError::NotFound)?;
        // The registration time stays: the update is not a new claim on the name.
        let value = Value {
            pid: pid.local,
            meta,
            at: old.registered_at,
        };
        let (delta, previous) = self
            .map
            .replace(&self.me.node, &old.dot, value)
            .ok_or(RemoveError::NotFound)?;
        let entry = entry_of(key, &delta.adds[0].1);
        self.log_removal(entry.dot.seq, [previous.dot.seq]);
        self.queue_delta(now, delta);
        self.events.push_back(Event::MetaUpdated {
            entry: entry.clone(),
            previous: previous.value.meta,
        });
        self.dirty.insert(key.clone());
        self.settle(now);
        Ok(entry)
    }

    /// The process `pid` ended: every entry of it goes away (reason `ProcessExited`) and the pid
    /// can no longer register. Returns the removed entries.
    pub fn process_exited(&mut self, now: Instant, pid: &Pid) -> Vec<Entry> {
        if pid.node != self.me.node || !self.live_pids.remove(&pid.local) {
            return Vec::new();
        }
        let dots: Vec<Dot<NodeId>> = self
            .map
            .actor_entries(&self.me.node)
            .filter(|(_, s)| s.value.pid == pid.local)
            .map(|(_, s)| s.dot.clone())
            .collect();
        let removed = self.remove_own(now, &dots, Reason::ProcessExited);
        self.settle(now);
        removed
    }

    pub(super) fn remove_own(
        &mut self,
        now: Instant,
        dots: &[Dot<NodeId>],
        reason: Reason,
    ) -> Vec<Entry> {
        let (delta, removed) = self.map.remove(&self.me.node, dots);
        let by = self.map.context().max(&self.me.node);
        let me = &self.me.node;
        let own: Vec<u64> = removed
            .iter()
            .filter(|(_, s)| s.dot.actor == *me)
            .map(|(_, s)| s.dot.seq)
            .collect();
        self.log_removal(by, own);
        let mut out = Vec::with_capacity(removed.len());
        for (key, slot) in removed {
            let entry = entry_of(&key, &slot);
            if reason == Reason::Conflict {
                // Shipped with `at` = the release time (see `OriginDelta::released`).
                let released_at = self.clock.tick(self.wall_ms(now));
                let value = Value {
                    at: released_at,
                    ..slot.value.clone()
                };
                self.released.insert(slot.dot.seq, (key.clone(), value));
                while self.released.len() > self.config.max_released {
                    self.released.pop_first();
                }
            }
            self.losers.remove(&slot.dot);
            self.dirty.insert(key);
            self.events.push_back(Event::Unregistered {
                entry: entry.clone(),
                reason,
            });
            out.push(entry);
        }
        // Queued last: the batch may go out at once, and it must carry the releases above.
        self.queue_delta(now, delta);
        out
    }
}
