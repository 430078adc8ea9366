//! The `Registry` handle: every operation an application calls.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::singleton::Candidacy;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pidmesh_proto::{Entry, EntryRef, Event, Key, Node, NodeId, Pid, Reason, Stats};
use tokio::sync::{broadcast, mpsc};

use crate::builder::RegistryBuilder;
use crate::driver::{Shared, lock};
use crate::error::{JoinError, RegisterError, RemoveError, SendError, Stopped};
use crate::mailbox::Mailbox;
use crate::registration::{Registration, Subscription};

/// Capacity of each local mailbox.
pub(crate) const MAILBOX_CAPACITY: usize = 1024;

/// How a registration ended, as reported to its guard.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lost {
    /// Why the entry went away (`Conflict` when another claim won the name).
    pub reason: Reason,
    /// The entry that holds the name now, for conflicts.
    pub winner: Option<Entry>,
}

/// A node as seen by this one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// Its identity.
    pub id: NodeId,
    /// Its address.
    pub addr: SocketAddr,
    /// True for this node itself.
    pub local: bool,
}

/// A handle to the local node of the registry. Cheap to clone; every clone talks to the same node.
///
/// Reads (`lookup`, `members_of`...) answer from local memory. Writes change local state at
/// once (read-your-writes) and reach other nodes after the next delta batch.
#[derive(Clone)]
pub struct Registry {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("node", &self.shared.id)
            .field("addr", &self.shared.addr)
            .finish()
    }
}

impl Registry {
    /// Starts building a registry node.
    pub fn builder() -> RegistryBuilder<()> {
        RegistryBuilder::new()
    }

    /// This node's identity.
    pub fn node_id(&self) -> &NodeId {
        &self.shared.id
    }

    /// The address peers reach this node at.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// A new process identity on this node and its inbox. When the [`Mailbox`] is dropped, the
    /// process ends and all its registrations go away.
    ///
    /// # Errors
    /// [`Stopped`] if the node has stopped.
    pub fn spawn_mailbox(&self) -> Result<(Pid, Mailbox), Stopped> {
        self.spawn_mailbox_with_capacity(MAILBOX_CAPACITY)
    }

    /// Like [`Registry::spawn_mailbox`], with room for `capacity` waiting messages (at least 1;
    /// the default is 1024). When it is full, `send` fails with `Full` and
    /// [`Registry::send_wait`] waits.
    ///
    /// # Errors
    /// [`Stopped`] if the node has stopped.
    pub fn spawn_mailbox_with_capacity(&self, capacity: usize) -> Result<(Pid, Mailbox), Stopped> {
        let pid = self.shared.mutate(|n, _| n.spawn_pid())?;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        lock(&self.shared.mailboxes).insert(pid.local, tx);
        Ok((
            pid.clone(),
            Mailbox {
                pid,
                rx,
                shared: Arc::downgrade(&self.shared),
            },
        ))
    }

    /// Registers `pid` under the unique `name`. The returned guard unregisters when dropped and
    /// reports when the name is lost (see [`Registration::lost`]).
    ///
    /// # Errors
    /// See [`RegisterError`]; nothing changed on error.
    ///
    /// Cancel-safe: it waits for nothing, but once the task has used up tokio's cooperative
    /// budget it yields first (so a loop of registrations lets the node's driver run on a busy
    /// runtime); cancelled there, nothing changed.
    pub async fn register(
        &self,
        name: &str,
        pid: &Pid,
        meta: impl Into<Bytes>,
    ) -> Result<Registration, RegisterError> {
        tokio::task::coop::consume_budget().await;
        if crate::scope::is_scoped(name) {
            return Err(RegisterError::InvalidName(crate::scope::SCOPED_NAME));
        }
        crate::scope::register_stored(self, name, pid, meta.into())
    }

    /// Removes `pid`'s registration of `name` (the [`Registration`] guard does this on drop).
    ///
    /// # Errors
    /// See [`RemoveError`]; nothing changed on error.
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn unregister(&self, name: &str, pid: &Pid) -> Result<Entry, RemoveError> {
        if crate::scope::is_scoped(name) {
            return Err(RemoveError::NotFound);
        }
        Ok(self
            .shared
            .mutate(|n, now| n.unregister(now, name, pid))??)
    }

    /// Adds `pid` to `group` (any number of pids may join a group; no conflicts).
    ///
    /// # Errors
    /// See [`JoinError`]; nothing changed on error.
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn join(
        &self,
        group: &str,
        pid: &Pid,
        meta: impl Into<Bytes>,
    ) -> Result<Entry, JoinError> {
        if crate::scope::is_scoped(group) {
            return Err(JoinError::InvalidName(crate::scope::SCOPED_NAME));
        }
        let meta = meta.into();
        Ok(self
            .shared
            .mutate(|n, now| n.join(now, group, pid, meta))??)
    }

    /// Removes `pid` from `group`.
    ///
    /// # Errors
    /// See [`RemoveError`]; nothing changed on error.
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn leave(&self, group: &str, pid: &Pid) -> Result<Entry, RemoveError> {
        if crate::scope::is_scoped(group) {
            return Err(RemoveError::NotFound);
        }
        Ok(self.shared.mutate(|n, now| n.leave(now, group, pid))??)
    }

    /// Replaces the metadata of `pid`'s entry under `key` (a name or a group).
    ///
    /// # Errors
    /// See [`RemoveError`]; nothing changed on error.
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn update_meta(
        &self,
        key: &Key,
        pid: &Pid,
        meta: impl Into<Bytes>,
    ) -> Result<Entry, RemoveError> {
        let meta = meta.into();
        Ok(self
            .shared
            .mutate(|n, now| crate::guards::update_meta(&self.shared, n, now, key, pid, meta))??)
    }

    /// The entry holding the unique `name`, as this node knows it, with the resolver applied to
    /// any unresolved conflict (so every node shows the same winner). Never touches the network.
    ///
    /// Lock-free with respect to the driver: it reads the node's sharded storage directly and
    /// waits at most for one entry's change, never for a whole message being processed.
    pub fn lookup(&self, name: &str) -> Option<Entry> {
        if crate::scope::is_scoped(name) {
            return None;
        }
        self.shared.reader.lookup(name)
    }

    /// Calls `f` with a borrowed view of the entry holding the unique `name` (`None` if none):
    /// the same winner [`Registry::lookup`] returns, without copying the entry (no allocation,
    /// no reference-count traffic). Never touches the network.
    ///
    /// `f` runs while the name's storage shard is locked for reading, which holds up the
    /// driver's changes to that shard: keep it short (read a field, compare, copy out a
    /// [`Pid`] with [`EntryRef::pid`]) and do not call back into the registry from it.
    pub fn with_lookup<R>(&self, name: &str, f: impl FnOnce(Option<EntryRef<'_>>) -> R) -> R {
        if crate::scope::is_scoped(name) {
            return f(None);
        }
        self.shared.reader.with_lookup(name, f)
    }

    /// The members of `group` on every node, as this node knows them. Reads like
    /// [`Registry::lookup`], without waiting for the driver.
    pub fn members_of(&self, group: &str) -> Vec<Entry> {
        if crate::scope::is_scoped(group) {
            return Vec::new();
        }
        self.shared.reader.members_of(group)
    }

    /// Every entry (names and groups) of the default scope whose key starts with `prefix`,
    /// sorted by key.
    ///
    /// Unresolved duplicates of a unique name (after a partition heals, before the losers are
    /// removed) are all listed, in canonical order; [`Registry::list_prefix_resolved`] lists
    /// only the winner [`Registry::lookup`] returns.
    ///
    /// Scans the whole registry one shard at a time without waiting for the driver; entries
    /// that change during the scan may or may not be listed.
    pub fn list_prefix(&self, prefix: &str) -> Vec<Entry> {
        if crate::scope::is_scoped(prefix) {
            return Vec::new();
        }
        let mut v = self.list_prefix_stored(prefix);
        v.retain(|e| !crate::scope::is_scoped(&e.key.name));
        v
    }

    /// [`Registry::list_prefix`] over stored key names, any scope.
    pub(crate) fn list_prefix_stored(&self, prefix: &str) -> Vec<Entry> {
        let mut v: Vec<Entry> = Vec::new();
        self.shared
            .reader
            .for_each_entry(|k| k.name.starts_with(prefix), |e| v.push(e));
        v.sort_by(|a, b| a.key.cmp(&b.key).then_with(|| a.canonical_cmp(b)));
        v
    }

    /// Waits until `name` is visible on this node (registered here or arrived from a peer), up
    /// to `timeout`. Bridges propagation delay after a registration on another node.
    ///
    /// Cancel-safe.
    pub async fn lookup_timeout(&self, name: &str, timeout: Duration) -> Option<Entry> {
        self.subscribe()
            .wait_for(timeout, || self.lookup(name))
            .await
    }

    /// Waits until `entry` (registered on this node) is known to be held by at least `nodes`
    /// nodes, this one included, or `timeout` passes; returns how many nodes are known to hold it.
    ///
    /// Knowledge comes from the peers' anti-entropy digests, so confirmation lags propagation by
    /// up to one sync round per peer (`Config::sync_interval` × peers, in the worst case); for
    /// entries of other nodes this returns 1 at once (only the owner learns who holds its dots).
    ///
    /// Cancel-safe.
    pub async fn wait_visible(&self, entry: &Entry, nodes: usize, timeout: Duration) -> usize {
        let count = || 1 + self.shared.read().seen_by(&entry.dot).len();
        let deadline = tokio::time::Instant::now() + timeout;
        let _ = self.shared.mutate(|n, now| n.sync_now(now));
        loop {
            let c = count();
            if c >= nodes
                || entry.pid.node != self.shared.id
                || tokio::time::Instant::now() >= deadline
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Subscribes to every event this node observes from now on, in every scope (a
    /// [`crate::Scope`]'s `subscribe` sees one scope).
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.shared.events.subscribe(),
            prefix: None,
        }
    }

    /// Subscribes to events about keys starting with `prefix` (node events always pass).
    pub fn subscribe_prefix(&self, prefix: impl Into<String>) -> Subscription {
        Subscription {
            rx: self.shared.events.subscribe(),
            prefix: Some(prefix.into()),
        }
    }

    /// The live members of the cluster as this node sees them, itself included.
    pub fn members(&self) -> Vec<NodeInfo> {
        let node = self.shared.read();
        let mut v = vec![NodeInfo {
            id: self.shared.id.clone(),
            addr: self.shared.addr,
            local: true,
        }];
        v.extend(node.peers().map(|m| NodeInfo {
            id: m.node.clone(),
            addr: m.addr,
            local: false,
        }));
        v
    }

    /// Counters of the node (entries, peers, messages dropped...).
    pub fn stats(&self) -> Stats {
        self.shared.read().stats()
    }

    /// Sends `body` to the mailbox of `pid`, on this node or another. At most once, and in order
    /// per sender→receiver pair. Never waits: a full mailbox fails with `Full` (see
    /// [`Registry::send_wait`] for the form that waits for room, and [`Registry::send_from`] to
    /// name the sending process). It is `async` only for compatibility with earlier versions;
    /// [`Registry::try_send`] is the same operation without `async`.
    ///
    /// # Errors
    /// See [`SendError`].
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn send(&self, pid: &Pid, body: impl Into<Bytes>) -> Result<(), SendError> {
        self.shared.cast(None, pid, body.into())
    }

    /// Leaves the cluster gracefully (this node's entries are removed everywhere at once rather
    /// than after failure detection) and stops the node. Later calls fail with [`Stopped`].
    /// Singleton runs are cancelled and awaited first, then their names released, so another
    /// candidate takes over at once.
    ///
    /// Cancel-safe: the shutdown proceeds in the background if the future is dropped (except
    /// the wait for singleton runs, which a dropped future stops waiting for).
    pub async fn shutdown(&self) {
        let candidacies: Vec<Candidacy> = lock(&self.shared.candidacies)
            .drain()
            .map(|(_, c)| c)
            .collect();
        for c in candidacies {
            c.stop().await;
        }
        if let Some(tx) = lock(&self.shared.stop_tx).take() {
            let _ = tx.send(());
        }
        let handle = lock(&self.shared.driver).take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }

    /// Stops the node without leaving (as a crash would, for tests): peers find out through
    /// failure detection.
    pub fn abort(&self) {
        // Stopped first: a driver turn already under way on another thread runs to its next
        // await after `JoinHandle::abort`, and must find the node stopped and send nothing
        // (no exit announcement for a mailbox dropped by the crash, no queued delta).
        self.shared.stopped.store(true, Ordering::Release);
        if let Some(h) = lock(&self.shared.driver).take() {
            h.abort();
        }
        lock(&self.shared.mailboxes).clear();
        self.shared.msg.clear();
        // Guards waiting for a loss hear `None`, as when the node stops.
        self.shared.guards.close();
        // A crashed node runs nothing: cancel singleton runs (nothing is released).
        for (_, c) in lock(&self.shared.candidacies).drain() {
            c.withdraw.cancel();
        }
    }

    // ----- for the singleton module ------------------------------------------------------------

    pub(crate) fn candidacies(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Candidacy>> {
        lock(&self.shared.candidacies)
    }

    pub(crate) fn subscribe_raw(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    pub(crate) fn mutate_node<R>(
        &self,
        f: impl FnOnce(&mut Node, Instant) -> R,
    ) -> Result<R, Stopped> {
        self.shared.mutate(f)
    }

    pub(crate) fn read_node<R>(&self, f: impl FnOnce(&Node) -> R) -> R {
        f(&self.shared.read())
    }

    /// A mailbox for an existing pid of this node (a singleton's), replacing any earlier one.
    /// Dropping it does not end the pid's process; [`Registry::detach_mailbox`] does that part.
    pub(crate) fn attach_mailbox(&self, pid: &Pid) -> Mailbox {
        let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
        lock(&self.shared.mailboxes).insert(pid.local, tx);
        Mailbox {
            pid: pid.clone(),
            rx,
            shared: std::sync::Weak::new(),
        }
    }

    pub(crate) fn detach_mailbox(&self, pid: &Pid) {
        lock(&self.shared.mailboxes).remove(&pid.local);
        // To monitors, a singleton's process ends with its run.
        self.shared.local_exit(pid);
    }
}
