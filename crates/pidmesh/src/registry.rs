//! The `Registry` handle and the driver task that owns the node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::singleton::Candidacy;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pidmesh_proto::{
    Config, Entry, Event, Key, Node, NodeId, NodeOptions, Pid, Reason, RegistryReader, Resolver,
    Stats, TrafficClass,
};
use pidmesh_transport::{Incoming, Outgoing, Transport};
use pidmesh_wire::MailMsg;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tracing::Instrument;

use crate::error::{JoinError, RegisterError, RemoveError, SendError, StartError, Stopped};
use crate::mailbox::{Envelope, Mailbox};

/// Capacity of each local mailbox.
const MAILBOX_CAPACITY: usize = 1024;
/// Capacity of the queue of remote mail waiting for the driver.
const MAIL_QUEUE: usize = 4096;

/// Builds and starts a [`Registry`]. See [`Registry::builder`].
#[derive(Debug)]
pub struct RegistryBuilder<T = ()> {
    name: Option<String>,
    seeds: Vec<SocketAddr>,
    resolver: Resolver,
    config: Config,
    event_capacity: usize,
    transport: T,
}

impl RegistryBuilder<()> {
    fn new() -> Self {
        Self {
            name: None,
            seeds: Vec::new(),
            resolver: Resolver::keep_oldest(),
            config: Config::lan(),
            event_capacity: 4096,
            transport: (),
        }
    }
}

impl<T> RegistryBuilder<T> {
    /// The node's stable name (unique in the cluster; with TLS, the DNS name of its certificate).
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Addresses to join through; the node keeps announcing to those it does not see.
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.seeds = seeds.into_iter().collect();
        self
    }

    /// The conflict resolver (default: keep-oldest). Every node must use the same one.
    pub fn resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Timers and limits (default: [`Config::lan`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// How many events a slow subscriber may lag behind before it misses some (default 4096).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.max(1);
        self
    }

    /// The transport to talk over.
    pub fn transport<U: Transport>(self, transport: U) -> RegistryBuilder<U> {
        RegistryBuilder {
            name: self.name,
            seeds: self.seeds,
            resolver: self.resolver,
            config: self.config,
            event_capacity: self.event_capacity,
            transport,
        }
    }
}

impl<T: Transport> RegistryBuilder<T> {
    /// Starts the node: spawns its driver task on the current tokio runtime and begins joining
    /// the cluster through the seeds. Returns at once (joining continues in the background).
    ///
    /// # Errors
    /// See [`StartError`].
    ///
    /// Cancel-safe: it does not wait on anything.
    pub async fn start(self) -> Result<Registry, StartError> {
        let name = self.name.ok_or(StartError::MissingName)?;
        pidmesh_wire::check_key_name(&name).map_err(StartError::InvalidName)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // A new incarnation per start: microseconds since the epoch, larger than any earlier life.
        let incarnation = u64::try_from(wall.as_micros()).unwrap_or(u64::MAX);
        let rng_seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(incarnation);
            h.finish()
        };
        let id = NodeId::new(name, incarnation);
        let addr = self.transport.local_addr();
        let now = Instant::now();
        let opts = NodeOptions {
            id: id.clone(),
            addr,
            seeds: self.seeds,
            rng_seed,
            wall_ms_at_start: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
        };
        let node = Node::new(opts, self.config, self.resolver, now);
        let (events, _) = broadcast::channel(self.event_capacity);
        let (mail_tx, mail_rx) = mpsc::channel(MAIL_QUEUE);
        let (stop_tx, stop_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            id: id.clone(),
            addr,
            reader: node.reader(),
            node: RwLock::new(node),
            kick: Notify::new(),
            events,
            mailboxes: Mutex::new(HashMap::new()),
            watchers: Mutex::new(HashMap::new()),
            mail_tx,
            stop_tx: Mutex::new(Some(stop_tx)),
            driver: Mutex::new(None),
            stopped: AtomicBool::new(false),
            candidacies: Mutex::new(HashMap::new()),
        });
        let span = tracing::info_span!("pidmesh", node = %id);
        let handle =
            runtime.spawn(drive(shared.clone(), self.transport, mail_rx, stop_rx).instrument(span));
        *lock(&shared.driver) = Some(handle);
        tracing::info!(node = %id, %addr, "pidmesh node started");
        Ok(Registry { shared })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves data that is still consistent (each
    // critical section is a single insert/remove), so poisoning is ignored.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Identifies a registration for its guard: (name, local pid).
type WatchKey = (pidmesh_wire::CompactString, u64);

/// State shared by every `Registry` handle and the driver.
pub(crate) struct Shared {
    id: NodeId,
    addr: SocketAddr,
    node: RwLock<Node>,
    /// Reads the node's registry without taking `node`'s lock, so lookups never wait for the
    /// driver (see [`RegistryReader`]).
    reader: RegistryReader,
    /// Wakes the driver after a local operation so it sends what the node produced.
    kick: Notify,
    events: broadcast::Sender<Event>,
    mailboxes: Mutex<HashMap<u64, mpsc::Sender<Envelope>>>,
    /// Registration guards waiting to hear that their entry went away.
    /// Keyed by (name, local pid): a metadata update gives the entry a new dot, not a new claim.
    watchers: Mutex<HashMap<WatchKey, oneshot::Sender<Lost>>>,
    mail_tx: mpsc::Sender<Outgoing>,
    stop_tx: Mutex<Option<oneshot::Sender<()>>>,
    driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stopped: AtomicBool,
    /// Singleton candidacies of this node, by name (see `singleton.rs`).
    candidacies: Mutex<HashMap<Arc<str>, Candidacy>>,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Node> {
        self.node
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Node> {
        self.node
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_running(&self) -> Result<(), Stopped> {
        if self.stopped.load(Ordering::Acquire) {
            Err(Stopped)
        } else {
            Ok(())
        }
    }

    /// Runs a local operation on the node and wakes the driver to ship its effects.
    fn mutate<R>(&self, f: impl FnOnce(&mut Node, Instant) -> R) -> Result<R, Stopped> {
        self.check_running()?;
        let r = f(&mut self.write(), Instant::now());
        self.kick.notify_one();
        Ok(r)
    }

    pub(crate) fn process_exited(&self, pid: &Pid) {
        lock(&self.mailboxes).remove(&pid.local);
        let _ = self.mutate(|n, now| n.process_exited(now, pid));
    }

    fn deliver_local(&self, pid: &Pid, env: Envelope) -> Result<(), SendError> {
        let tx = lock(&self.mailboxes)
            .get(&pid.local)
            .cloned()
            .ok_or_else(|| SendError::NoSuchProcess(pid.clone()))?;
        tx.try_send(env).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::NoSuchProcess(pid.clone()),
        })
    }

    /// Hands events to subscribers and to registration guards.
    fn dispatch(&self, event: Event) {
        if let Event::Unregistered { entry, reason } = &event
            && entry.pid.node == self.id
            && let Some(tx) =
                lock(&self.watchers).remove(&(entry.key.name.clone(), entry.pid.local))
        {
            let winner = if *reason == Reason::Conflict {
                self.read().lookup(&entry.key.name)
            } else {
                None
            };
            let _ = tx.send(Lost {
                reason: *reason,
                winner,
            });
        }
        metrics::counter!("pidmesh.events", "kind" => event_kind(&event)).increment(1);
        let _ = self.events.send(event);
    }
}

fn event_kind(e: &Event) -> &'static str {
    match e {
        Event::Registered(_) => "registered",
        Event::Unregistered { .. } => "unregistered",
        Event::MetaUpdated { .. } => "meta_updated",
        Event::ConflictResolved { .. } => "conflict_resolved",
        Event::ResolverFailed { .. } => "resolver_failed",
        Event::SingletonStarted { .. } => "singleton_started",
        Event::SingletonStopped { .. } => "singleton_stopped",
        Event::NodeUp(_) => "node_up",
        Event::NodeDown(_) => "node_down",
    }
}

/// The driver: the only task that feeds the node inputs from the network and its timers, and
/// the only one that sends what it produces. One `select!` loop; shutdown is checked first.
async fn drive<T: Transport>(
    shared: Arc<Shared>,
    mut transport: T,
    mut mail_rx: mpsc::Receiver<Outgoing>,
    mut stop_rx: oneshot::Receiver<()>,
) {
    loop {
        let deadline = shared.read().poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut stop_rx => {
                leave(&shared, &mut transport).await;
                break;
            }
            incoming = transport.recv() => match incoming {
                Some(msg) => on_incoming(&shared, msg),
                None => break,
            },
            Some(out) = mail_rx.recv() => {
                if let Err(e) = transport.send(out) {
                    metrics::counter!("pidmesh.mail.send_errors").increment(1);
                    tracing::debug!(error = %e, "mail not sent");
                }
            }
            () = sleep => shared.write().handle_timeout(Instant::now()),
            () = shared.kick.notified() => {}
        }
        flush(&shared, &transport);
    }
    shared.stopped.store(true, Ordering::Release);
    transport.shutdown().await;
    lock(&shared.mailboxes).clear();
    lock(&shared.watchers).clear();
    tracing::info!("pidmesh node stopped");
}

/// Leaves gracefully: releases every entry at once, keeps driving the node through its leave
/// grace period (peers see the releases before the SWIM leave), then lets the packets drain.
async fn leave<T: Transport>(shared: &Shared, transport: &mut T) {
    shared.write().leave_cluster(Instant::now());
    flush(shared, transport);
    let give_up = Instant::now() + Duration::from_secs(1);
    while !shared.read().has_left_swim() && Instant::now() < give_up {
        let deadline = shared.read().poll_timeout().unwrap_or(give_up).min(give_up);
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => shared.write().handle_timeout(Instant::now()),
            incoming = transport.recv() => match incoming {
                Some(msg) => on_incoming(shared, msg),
                None => break,
            },
        }
        flush(shared, transport);
    }
    // Give the goodbye a moment to leave the sockets.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn on_incoming(shared: &Shared, msg: Incoming) {
    metrics::counter!("pidmesh.messages.received", "class" => msg.class.as_str()).increment(1);
    if msg.class == TrafficClass::Mail {
        match pidmesh_wire::decode::<MailMsg>(&msg.payload) {
            Ok(MailMsg::V1 { from, to, body }) if to.node == shared.id => {
                if msg.peer_name.as_deref().is_some_and(|n| n != &*from.name) {
                    metrics::counter!("pidmesh.mail.rejected", "reason" => "forged_sender")
                        .increment(1);
                    return;
                }
                if let Err(e) = shared.deliver_local(&to, Envelope { from, body }) {
                    metrics::counter!("pidmesh.mail.dropped").increment(1);
                    tracing::debug!(error = %e, "incoming mail dropped");
                }
            }
            Ok(_) => {
                metrics::counter!("pidmesh.mail.rejected", "reason" => "wrong_node").increment(1)
            }
            Err(e) => {
                metrics::counter!("pidmesh.mail.rejected", "reason" => "malformed").increment(1);
                tracing::debug!(error = %e, from = %msg.from, "malformed mail");
            }
        }
        return;
    }
    shared.write().handle_message(
        Instant::now(),
        msg.from,
        msg.peer_name.as_deref(),
        msg.class,
        &msg.payload,
    );
}

/// Sends everything the node produced and dispatches its events.
fn flush<T: Transport>(shared: &Shared, transport: &T) {
    let (transmits, events, entries, peers) = {
        let mut node = shared.write();
        let mut t = Vec::new();
        while let Some(x) = node.poll_transmit() {
            t.push(x);
        }
        let mut e = Vec::new();
        while let Some(x) = node.poll_event() {
            e.push(x);
        }
        (t, e, node.registry().len(), node.peers().count())
    };
    for t in transmits {
        let class = t.class;
        if let Err(e) = transport.send(Outgoing {
            to: t.to,
            class: t.class,
            payload: t.payload,
        }) {
            metrics::counter!("pidmesh.transport.send_errors", "class" => class.as_str())
                .increment(1);
            tracing::debug!(error = %e, to = %t.to, "send failed");
        }
    }
    for e in events {
        shared.dispatch(e);
    }
    metrics::gauge!("pidmesh.entries").set(entries as f64);
    metrics::gauge!("pidmesh.peers").set(peers as f64);
}

/// How a registration ended, as reported to its guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// Why the entry went away (`Conflict` when another claim won the name).
    pub reason: Reason,
    /// The entry that holds the name now, for conflicts.
    pub winner: Option<Entry>,
}

/// A node as seen by this one.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    shared: Arc<Shared>,
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
        let pid = self.shared.mutate(|n, _| n.spawn_pid())?;
        let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
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
    /// Cancel-safe: it completes without waiting.
    pub async fn register(
        &self,
        name: &str,
        pid: &Pid,
        meta: impl Into<Bytes>,
    ) -> Result<Registration, RegisterError> {
        let meta = meta.into();
        // Watch before registering: the driver may report a loss before this call returns.
        let watch_key: WatchKey = (name.into(), pid.local);
        let (tx, rx) = oneshot::channel();
        if pid.node == self.shared.id {
            lock(&self.shared.watchers).insert(watch_key.clone(), tx);
        }
        let entry = match self
            .shared
            .mutate(|n, now| n.register(now, name, pid, meta))
        {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                lock(&self.shared.watchers).remove(&watch_key);
                return Err(e.into());
            }
            Err(stopped) => {
                lock(&self.shared.watchers).remove(&watch_key);
                return Err(stopped.into());
            }
        };
        Ok(Registration {
            registry: self.clone(),
            entry,
            lost: rx,
            done: false,
        })
    }

    /// Removes `pid`'s registration of `name` (the [`Registration`] guard does this on drop).
    ///
    /// # Errors
    /// See [`RemoveError`]; nothing changed on error.
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn unregister(&self, name: &str, pid: &Pid) -> Result<Entry, RemoveError> {
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
            .mutate(|n, now| n.update_meta(now, key, pid, meta))??)
    }

    /// The entry holding the unique `name`, as this node knows it, with the resolver applied to
    /// any unresolved conflict (so every node shows the same winner). Never touches the network.
    ///
    /// Lock-free with respect to the driver: it reads the node's sharded storage directly and
    /// waits at most for one entry's change, never for a whole message being processed.
    pub fn lookup(&self, name: &str) -> Option<Entry> {
        self.shared.reader.lookup(name)
    }

    /// The members of `group` on every node, as this node knows them. Reads like
    /// [`Registry::lookup`], without waiting for the driver.
    pub fn members_of(&self, group: &str) -> Vec<Entry> {
        self.shared.reader.members_of(group)
    }

    /// Every entry (names and groups) whose key starts with `prefix`, sorted by key.
    ///
    /// Scans the whole registry one shard at a time without waiting for the driver; entries
    /// that change during the scan may or may not be listed.
    pub fn list_prefix(&self, prefix: &str) -> Vec<Entry> {
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
        let mut sub = self.subscribe();
        let wait = async {
            loop {
                if let Some(e) = self.lookup(name) {
                    return Some(e);
                }
                sub.recv().await?;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
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

    /// Subscribes to every event this node observes from now on.
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
    /// per sender→receiver pair.
    ///
    /// # Errors
    /// See [`SendError`].
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn send(&self, pid: &Pid, body: impl Into<Bytes>) -> Result<(), SendError> {
        self.shared.check_running()?;
        let body = body.into();
        if body.len() > pidmesh_wire::MAX_MAIL_BODY_LEN {
            return Err(SendError::TooLarge(body.len()));
        }
        if pid.node == self.shared.id {
            return self.shared.deliver_local(
                pid,
                Envelope {
                    from: self.shared.id.clone(),
                    body,
                },
            );
        }
        let addr = self
            .shared
            .read()
            .peers()
            .find(|m| m.node == pid.node)
            .map(|m| m.addr)
            .ok_or_else(|| SendError::NodeUnreachable(pid.clone()))?;
        let msg = MailMsg::V1 {
            from: self.shared.id.clone(),
            to: pid.clone(),
            body,
        };
        let payload = pidmesh_wire::encode(&msg).map_err(|_| SendError::TooLarge(0))?;
        self.shared
            .mail_tx
            .try_send(Outgoing {
                to: addr,
                class: TrafficClass::Mail,
                payload,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SendError::Full,
                mpsc::error::TrySendError::Closed(_) => SendError::Stopped(Stopped),
            })
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
        if let Some(h) = lock(&self.shared.driver).take() {
            h.abort();
        }
        self.shared.stopped.store(true, Ordering::Release);
        lock(&self.shared.mailboxes).clear();
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
    }
}

/// A live registration of a unique name. Dropping it unregisters the name.
#[derive(Debug)]
pub struct Registration {
    registry: Registry,
    entry: Entry,
    lost: oneshot::Receiver<Lost>,
    done: bool,
}

impl Registration {
    /// The entry as registered.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// Waits until this registration goes away for a reason other than this guard: lost to a
    /// conflict (with the winner), its process exited, or the node stopped (`None`).
    ///
    /// Cancel-safe.
    pub async fn lost(&mut self) -> Option<Lost> {
        let r = (&mut self.lost).await.ok();
        if r.is_some() {
            self.done = true;
        }
        r
    }

    /// Unregisters now.
    ///
    /// # Errors
    /// [`RemoveError::NotFound`] if the entry is already gone (lost or its process exited).
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn unregister(mut self) -> Result<Entry, RemoveError> {
        self.done = true;
        lock(&self.registry.shared.watchers)
            .remove(&(self.entry.key.name.clone(), self.entry.pid.local));
        self.registry
            .unregister(&self.entry.key.name, &self.entry.pid)
            .await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let shared = &self.registry.shared;
        lock(&shared.watchers).remove(&(self.entry.key.name.clone(), self.entry.pid.local));
        let (name, pid, at) = (
            &self.entry.key.name,
            &self.entry.pid,
            self.entry.registered_at,
        );
        // Only remove the registration this guard created: same pid and registration time (a
        // metadata update keeps both), not a later registration of the same pid.
        let _ = shared.mutate(|n, now| {
            if n.entries(&self.entry.key)
                .iter()
                .any(|e| e.pid == *pid && e.registered_at == at)
            {
                let _ = n.unregister(now, name, pid);
            }
        });
    }
}

/// A stream of [`Event`]s, optionally filtered by key prefix.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Event>,
    prefix: Option<String>,
}

impl Subscription {
    /// The next matching event; `None` once the node has stopped. A subscriber that falls more
    /// than the event capacity behind skips the oldest events (and logs how many).
    ///
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) if self.matches(&e) => return Some(e),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "event subscriber lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn matches(&self, e: &Event) -> bool {
        let Some(p) = &self.prefix else { return true };
        let key = match e {
            Event::Registered(x) => &x.key,
            Event::Unregistered { entry, .. } | Event::MetaUpdated { entry, .. } => &entry.key,
            Event::ConflictResolved { key, .. } | Event::ResolverFailed { key, .. } => key,
            Event::SingletonStarted { name, .. } | Event::SingletonStopped { name, .. } => {
                return name.starts_with(p.as_str());
            }
            Event::NodeUp(_) | Event::NodeDown(_) => return true,
        };
        key.name.starts_with(p.as_str())
    }
}
