//! Lookup-or-start placement (nprocreg's `get_pid(Key, Fun)`).
//!
//! Every node that can host processes of a *kind* registers a factory for it with
//! [`Registry::placement`]. That spawns a control process on the node, which joins the group
//! `pidmesh.placement/<kind>` and serves start requests. [`Registry::get_or_start`] then returns
//! the pid registered under the unique name `<kind>/<key>`, starting it first if nobody holds
//! it: the process goes to the node the key hashes to among the live nodes serving the kind
//! (rendezvous hashing, [`rendezvous_score`]), whose control process spawns a mailbox, registers
//! the name and runs the factory.
//!
//! Concurrent callers on different nodes that see the same members pick the same node, whose
//! control process starts the process once, so they all get the same pid. Callers whose views
//! differ (a membership change in flight, a partition) may start two; the name's resolver then
//! settles it like any conflict, and the loser is told through [`StartContext::lost`] and must
//! return.
//!
//! A start request carries the key, optional arguments for the process
//! ([`StartContext::args`]) and optional metadata for its registration (which a custom
//! resolver reads, [`Entry::app_meta`](crate::Entry::app_meta)); see
//! [`Registry::get_or_start_with`].
//!
//! **After a host dies**, the process's name goes away when the host is declared down. A node
//! asked to start a name it still sees held elsewhere (it has not yet learned of the death)
//! keeps the request and starts the process the moment that entry goes, instead of dropping it
//! and leaving the caller to retry after a timeout.
//!
//! **Rebalancing** (opt-in, [`PlacementOptions::rebalance`]): when a node starts serving the
//! kind, every node hands each of its processes whose rendezvous owner is now another node to
//! that owner: it signals the process ([`LostSignal::moved_to`]), waits until its future has
//! returned and its name is removed, and only then sends the start request (with the same
//! arguments and metadata); the new owner starts it once it sees the name free. So the old and
//! the new process never run at the same time.
//!
//! This module is built only on the public [`Registry`] API.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pidmesh_proto::{Entry, Event, NodeId, Pid};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Lost, Mailbox, RegisterError, Registration, Registry, SendError, Stopped};

/// The prefix of the group every node serving a kind joins: `pidmesh.placement/<kind>`.
pub const PLACEMENT_GROUP_PREFIX: &str = "pidmesh.placement/";

/// The first delay before a start request is sent again when the name has not appeared.
const RETRY_MIN: Duration = Duration::from_millis(250);
/// The longest delay between two start requests.
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Version byte of the start request (the request travels as a mailbox message): key only.
const REQUEST_V1: u8 = 1;
/// Version 2: key, registration metadata and process arguments.
const REQUEST_V2: u8 = 2;
/// Start requests a node keeps while the name is still held elsewhere (oldest dropped first).
const MAX_PENDING: usize = 1024;
/// How long such a request is kept.
const PENDING_FOR: Duration = Duration::from_secs(30);
/// How often a process that ignores its handover signal is reported in the logs.
const SLOW_STOP_WARNING: Duration = Duration::from_secs(1);

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
type Factory = Arc<dyn Fn(StartContext) -> BoxFuture + Send + Sync + 'static>;

/// Why [`Registry::placement`] failed. Nothing changed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlacementError {
    /// The kind is empty, contains `/` or a control character, or is too long for its group
    /// name (`pidmesh.placement/<kind>` must fit in 255 bytes).
    #[error("invalid kind: {0}")]
    InvalidKind(&'static str),
    /// This node already serves the kind, with the attached control pid (keep one
    /// [`Placement`] per kind per node).
    #[error("this node already serves the kind with {0}")]
    AlreadyServing(Pid),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// Why [`Registry::get_or_start`] failed. Nothing is left running on this node's behalf, but a
/// start request already delivered may still start the process on its target node (a later
/// call then finds it).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetOrStartError {
    /// The kind or key is invalid: the kind is empty, has `/` or control characters, or
    /// `<kind>/<key>` is not a valid name (empty key, control characters, over 255 bytes).
    #[error("invalid kind or key: {0}")]
    InvalidKey(&'static str),
    /// No live node (as this node knows) serves the kind: none called
    /// [`Registry::placement`] for it, or their groups have not reached this node yet.
    #[error("no live node serves this kind")]
    NoCandidates,
    /// The name did not appear within the timeout, though the last start request was handed
    /// to the transport.
    #[error("the process did not appear in time")]
    Timeout,
    /// The name did not appear within the timeout and the last start request could not be
    /// sent (the target's node unreachable, its control mailbox gone or full).
    #[error("start request not delivered: {0}")]
    Send(SendError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// What a factory gets to run one placed process.
///
/// The process is the [`Mailbox`]: when the factory's future returns, the mailbox is dropped
/// (unless the factory moved it elsewhere) and the name goes away.
#[derive(Debug)]
#[non_exhaustive]
pub struct StartContext {
    /// The kind the process was started for.
    pub kind: Arc<str>,
    /// The key (the process is registered as `<kind>/<key>`).
    pub key: Arc<str>,
    /// The arguments the caller of [`Registry::get_or_start_with`] passed (empty for
    /// [`Registry::get_or_start`]). When several callers race, the first request the host
    /// serves wins; the others' arguments are not delivered.
    pub args: Bytes,
    /// The process's pid, registered under `<kind>/<key>`.
    pub pid: Pid,
    /// The process's inbox.
    pub mailbox: Mailbox,
    /// A handle to the registry of the node it runs on.
    pub registry: Registry,
    /// Completes when the process no longer holds its name; the factory must then return.
    pub lost: LostSignal,
}

/// Tells a placed process that it no longer holds its name: lost to a conflict after a heal,
/// its mailbox dropped, or its node stopped. Clone it to hand it to sub-tasks.
#[derive(Debug, Clone)]
pub struct LostSignal {
    rx: watch::Receiver<LostState>,
}

#[derive(Debug, Clone)]
enum LostState {
    Held,
    Lost(Option<Lost>),
    /// Handed over to this node by a rebalance.
    Moved(NodeId),
}

impl LostSignal {
    /// Waits until the name is lost: `Some(Lost)` with the reason (`Conflict` and the winner
    /// when a duplicate won), or `None` when the node stopped or the placement task ended.
    /// Pending forever while the name is held.
    ///
    /// Cancel-safe: it only observes.
    ///
    /// A rebalance handover ([`LostSignal::moved_to`]) yields `Some(Lost { reason: Normal,
    /// winner: None })`: the process must return, and is started again on the new owner once
    /// it has.
    pub async fn wait(&self) -> Option<Lost> {
        let mut rx = self.rx.clone();
        match rx.wait_for(|s| !matches!(s, LostState::Held)).await {
            Ok(state) => match &*state {
                LostState::Lost(l) => l.clone(),
                LostState::Moved(_) => Some(Lost {
                    reason: pidmesh_proto::Reason::Normal,
                    winner: None,
                }),
                LostState::Held => None,
            },
            Err(_) => None,
        }
    }

    /// True once the name is lost (or its holder has ended, or it is being moved).
    pub fn is_lost(&self) -> bool {
        self.rx.has_changed().is_err() || !matches!(*self.rx.borrow(), LostState::Held)
    }

    /// The node the process is being moved to by a rebalance, if that is why it must stop.
    pub fn moved_to(&self) -> Option<NodeId> {
        match &*self.rx.borrow() {
            LostState::Moved(n) => Some(n.clone()),
            _ => None,
        }
    }
}

/// Options of [`Registry::placement_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlacementOptions {
    /// Hand this node's processes over to their new rendezvous owner when a node starts
    /// serving the kind (see the module docs). Off by default: a process stays where it
    /// started.
    pub rebalance: bool,
}

impl PlacementOptions {
    /// Sets [`PlacementOptions::rebalance`].
    #[must_use]
    pub fn rebalance(mut self, on: bool) -> Self {
        self.rebalance = on;
        self
    }
}

/// What [`Registry::get_or_start_with`] passes to a process it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartArgs {
    /// Handed to the factory as [`StartContext::args`].
    pub args: Bytes,
    /// The metadata of the process's registration under `<kind>/<key>` (at most 4096 bytes),
    /// readable by custom resolvers.
    pub meta: Bytes,
}

impl StartArgs {
    /// Sets the process arguments.
    #[must_use]
    pub fn args(mut self, args: impl Into<Bytes>) -> Self {
        self.args = args.into();
        self
    }

    /// Sets the registration metadata.
    #[must_use]
    pub fn meta(mut self, meta: impl Into<Bytes>) -> Self {
        self.meta = meta.into();
        self
    }
}

/// This node's factory for one kind, as returned by [`Registry::placement`]. Dropping it stops
/// serving: the control process exits (leaving the kind's group), so no new process of the kind
/// is placed here. Processes already started keep running.
#[derive(Debug)]
#[must_use = "dropping the Placement stops serving the kind on this node"]
pub struct Placement {
    kind: Arc<str>,
    pid: Pid,
    registry: Registry,
    task: JoinHandle<()>,
}

impl Placement {
    /// The kind served.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The pid of this node's control process (a member of `pidmesh.placement/<kind>`).
    pub fn pid(&self) -> &Pid {
        &self.pid
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        // Leave the group now, so that a new `placement` for the kind right after this one is
        // accepted: the aborted task drops the control mailbox only when the runtime gets to it.
        // `leave` completes without waiting, so one poll runs it; were it ever to wait, the
        // mailbox's drop removes the membership a moment later anyway.
        let group = group_of(&self.kind);
        let leave = std::pin::pin!(self.registry.leave(&group, &self.pid));
        let _ = leave.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        self.task.abort();
    }
}

/// The rendezvous (highest random weight) score of placing the unique `name` on the node named
/// `node_name`; the live candidate with the highest score wins (ties, which need a 64-bit
/// collision, go to the greater node name).
///
/// Stable across builds, platforms and versions (FNV-1a 64 over the length-prefixed node name
/// and the name, then the MurmurHash3 64-bit finalizer), so nodes running different builds agree
/// on placement. It depends on the node's stable name, not its incarnation: a restarted node
/// gets the same keys back.
pub fn rendezvous_score(node_name: &str, name: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let len = u64::try_from(node_name.len()).unwrap_or(u64::MAX);
    let mut h = OFFSET;
    for b in len
        .to_le_bytes()
        .iter()
        .chain(node_name.as_bytes())
        .chain(name.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    // fmix64: FNV-1a alone mixes the high bits poorly for similar inputs.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The group of the nodes serving `kind`.
fn group_of(kind: &str) -> String {
    format!("{PLACEMENT_GROUP_PREFIX}{kind}")
}

fn check_kind(kind: &str) -> Result<(), &'static str> {
    if kind.is_empty() {
        return Err("kind is empty");
    }
    if kind.contains('/') {
        return Err("kind contains '/'");
    }
    pidmesh_wire::check_key_name(&group_of(kind))
}

/// The unique name of the process for `key`, after validating both parts.
fn name_of(kind: &str, key: &str) -> Result<String, &'static str> {
    check_kind(kind)?;
    if key.is_empty() {
        return Err("key is empty");
    }
    let name = format!("{kind}/{key}");
    pidmesh_wire::check_key_name(&name)?;
    Ok(name)
}

/// A decoded start request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    key: String,
    start: StartArgs,
}

/// Version 2: `[2][kind length: u8][kind][key length: u16 LE][key][meta length: u16 LE][meta]
/// [args]` (kind and key UTF-8). Version 1 (`[1][kind length: u8][kind][key]`) is still
/// accepted.
fn encode_request(kind: &str, key: &str, start: &StartArgs) -> Bytes {
    let mut v =
        Vec::with_capacity(6 + kind.len() + key.len() + start.meta.len() + start.args.len());
    v.push(REQUEST_V2);
    // check_kind bounds the kind to under 255 bytes, name_of the key to under 255, and the
    // caller the metadata to 4096.
    v.push(u8::try_from(kind.len()).unwrap_or(u8::MAX));
    v.extend_from_slice(kind.as_bytes());
    v.extend_from_slice(&u16::try_from(key.len()).unwrap_or(u16::MAX).to_le_bytes());
    v.extend_from_slice(key.as_bytes());
    v.extend_from_slice(
        &u16::try_from(start.meta.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    v.extend_from_slice(&start.meta);
    v.extend_from_slice(&start.args);
    Bytes::from(v)
}

/// Splits `[length: u16 LE][bytes]` off the front of `b`.
fn take_u16_prefixed(b: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let [lo, hi, rest @ ..] = b else {
        return Err("truncated length");
    };
    let len = usize::from(u16::from_le_bytes([*lo, *hi]));
    if rest.len() < len {
        return Err("truncated field");
    }
    Ok(rest.split_at(len))
}

/// The start request for `kind` in `body`, or why it is rejected.
fn decode_request(body: &Bytes, kind: &str) -> Result<Request, &'static str> {
    let [version, len, rest @ ..] = &body[..] else {
        return Err("truncated");
    };
    if *version != REQUEST_V1 && *version != REQUEST_V2 {
        return Err("unknown version");
    }
    let len = usize::from(*len);
    if rest.len() < len {
        return Err("truncated kind");
    }
    let (k, rest) = rest.split_at(len);
    if k != kind.as_bytes() {
        return Err("request for another kind");
    }
    let (key, start) = if *version == REQUEST_V1 {
        (rest, StartArgs::default())
    } else {
        let (key, rest) = take_u16_prefixed(rest)?;
        let (meta, args) = take_u16_prefixed(rest)?;
        if meta.len() > pidmesh_wire::MAX_META_LEN {
            return Err("metadata too large");
        }
        let args_at = body.len() - args.len();
        (
            key,
            StartArgs {
                args: body.slice(args_at..),
                meta: Bytes::copy_from_slice(meta),
            },
        )
    };
    let key = std::str::from_utf8(key).map_err(|_| "key is not UTF-8")?;
    name_of(kind, key)?;
    Ok(Request {
        key: key.to_string(),
        start,
    })
}

/// The node `name` goes to among `candidates` (the control entries of the kind's group).
fn choose<'a>(candidates: &'a [Entry], name: &str) -> Option<&'a Entry> {
    candidates.iter().max_by(|a, b| {
        let sa = rendezvous_score(&a.pid.node.name, name);
        let sb = rendezvous_score(&b.pid.node.name, name);
        sa.cmp(&sb)
            .then_with(|| a.pid.node.name.cmp(&b.pid.node.name))
    })
}

impl Registry {
    /// Registers on this node the factory that starts processes of `kind` placed here by
    /// [`Registry::get_or_start`] (called on any node). Call it on every node that may host
    /// such processes; nodes that never call it are never chosen.
    ///
    /// It spawns a control process that joins the group `pidmesh.placement/<kind>` and a task
    /// serving start requests. For each request it starts at most one process per name: if
    /// `<kind>/<key>` is already held (as this node knows), it does nothing; otherwise it spawns a
    /// mailbox, registers the name and spawns `factory(ctx)` as a tokio task. When that future
    /// returns, the process ends (its mailbox and registration are dropped). The factory must
    /// return soon after [`StartContext::lost`] completes; pidmesh does not abort it.
    ///
    /// Keep the returned [`Placement`]: dropping it stops serving the kind here.
    ///
    /// # Errors
    /// [`PlacementError::InvalidKind`], [`PlacementError::AlreadyServing`] (one factory per
    /// kind per node) or [`PlacementError::Stopped`]; nothing changed on error.
    ///
    /// Cancel-safe: it completes without waiting (a dropped call leaves nothing behind).
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub async fn placement<F, Fut>(
        &self,
        kind: &str,
        factory: F,
    ) -> Result<Placement, PlacementError>
    where
        F: Fn(StartContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.placement_with(kind, PlacementOptions::default(), factory)
            .await
    }

    /// [`Registry::placement`] with options (rebalancing, see [`PlacementOptions`]).
    ///
    /// # Errors
    /// As [`Registry::placement`].
    ///
    /// Cancel-safe: it completes without waiting (a dropped call leaves nothing behind).
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub async fn placement_with<F, Fut>(
        &self,
        kind: &str,
        options: PlacementOptions,
        factory: F,
    ) -> Result<Placement, PlacementError>
    where
        F: Fn(StartContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        check_kind(kind).map_err(PlacementError::InvalidKind)?;
        let group = group_of(kind);
        let (pid, control) = self.spawn_mailbox()?;
        let joined = match self.join(&group, &pid, Bytes::new()).await {
            Ok(e) => e,
            Err(crate::JoinError::Stopped(s)) => return Err(s.into()),
            // The group name was validated and the pid is fresh and live.
            Err(e) => {
                tracing::warn!(error = %e, "placement: joining the kind's group failed");
                return Err(Stopped.into());
            }
        };
        // Of two concurrent calls for one kind, the first to join (lower dot) keeps serving:
        // each checks after its own join, so the later one always sees the earlier.
        let me = self.node_id().clone();
        if let Some(first) = self
            .members_of(&group)
            .into_iter()
            .filter(|e| e.pid.node == me && e.dot.seq < joined.dot.seq)
            .min_by_key(|e| e.dot.seq)
        {
            drop(control);
            return Err(PlacementError::AlreadyServing(first.pid));
        }
        let kind: Arc<str> = Arc::from(kind);
        let factory: Factory = Arc::new(move |ctx| Box::pin(factory(ctx)));
        // Subscribe before serving, so no entry's removal is missed between the two.
        let events = self.subscribe();
        let task = tokio::spawn(
            Server {
                registry: self.clone(),
                kind: kind.clone(),
                factory,
                options,
                pending: BTreeMap::new(),
                running: BTreeMap::new(),
            }
            .serve(control, events),
        );
        Ok(Placement {
            kind,
            pid,
            registry: self.clone(),
            task,
        })
    }

    /// The pid registered under `<kind>/<key>`; if there is none, starts the process on the
    /// node the key hashes to among the live nodes serving `kind` (see
    /// [`Registry::placement`]) and waits up to `timeout` for its name to reach this node.
    ///
    /// Returns at once, without the network, when the name is known here. Otherwise it sends a
    /// start request to the chosen node's control process and waits for the name; if it has
    /// not appeared, it chooses again and resends (after 250 ms, doubling up to 2 s, and at once
    /// when a node goes down). The target starts at most one process per name, so concurrent
    /// callers that agree on the members get the same pid. Callers that disagree (a membership
    /// change in flight, a partition) may start duplicates; the resolver keeps one, and the
    /// pid returned may then be a loser about to stop: call again to get the winner.
    ///
    /// Any entry under `<kind>/<key>` counts, also one registered by hand with
    /// [`Registry::register`].
    ///
    /// # Errors
    /// See [`GetOrStartError`]. A request already delivered may still start the process after
    /// a `Timeout`.
    ///
    /// Cancel-safe: dropping the future abandons the wait (a request already sent may still
    /// start the process, which a later call finds).
    pub async fn get_or_start(
        &self,
        kind: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Pid, GetOrStartError> {
        self.get_or_start_with(kind, key, StartArgs::default(), timeout)
            .await
    }

    /// [`Registry::get_or_start`] that passes `start` to the process if this call starts it:
    /// arguments for the factory ([`StartContext::args`]) and metadata for its registration.
    /// A process already running is returned as is (its arguments are not compared).
    ///
    /// # Errors
    /// As [`Registry::get_or_start`]; [`GetOrStartError::InvalidKey`] also when the metadata
    /// is over 4096 bytes, and [`GetOrStartError::Send`] with `TooLarge` when the request does
    /// not fit a message.
    ///
    /// Cancel-safe: as [`Registry::get_or_start`].
    pub async fn get_or_start_with(
        &self,
        kind: &str,
        key: &str,
        start: StartArgs,
        timeout: Duration,
    ) -> Result<Pid, GetOrStartError> {
        let name = name_of(kind, key).map_err(GetOrStartError::InvalidKey)?;
        if start.meta.len() > pidmesh_wire::MAX_META_LEN {
            return Err(GetOrStartError::InvalidKey("metadata is over 4096 bytes"));
        }
        if let Some(e) = self.lookup(&name) {
            return Ok(e.pid);
        }
        let deadline = Instant::now() + timeout;
        let mut sub = self.subscribe_prefix(name.clone());
        let request = encode_request(kind, key, &start);
        let mut backoff = RETRY_MIN;
        loop {
            if let Some(e) = self.lookup(&name) {
                return Ok(e.pid);
            }
            let candidates = self.placement_candidates(kind);
            let target = choose(&candidates, &name).ok_or(GetOrStartError::NoCandidates)?;
            let last_error = match self.send(&target.pid, request.clone()).await {
                Ok(()) => None,
                Err(SendError::Stopped(s)) => return Err(s.into()),
                Err(e @ SendError::TooLarge(_)) => return Err(GetOrStartError::Send(e)),
                Err(e) => Some(e),
            };
            let wake = (Instant::now() + backoff).min(deadline);
            loop {
                if let Some(e) = self.lookup(&name) {
                    return Ok(e.pid);
                }
                match tokio::time::timeout_at(wake, sub.recv()).await {
                    Ok(Some(Event::NodeDown(_))) => break,
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(Stopped.into()),
                    Err(_) => break,
                }
            }
            if Instant::now() >= deadline {
                if let Some(e) = self.lookup(&name) {
                    return Ok(e.pid);
                }
                return Err(last_error.map_or(GetOrStartError::Timeout, GetOrStartError::Send));
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    /// The node a new process for `<kind>/<key>` would be placed on now, as this node sees the
    /// live members serving `kind`; `None` if the kind or key is invalid or nobody serves it.
    ///
    /// Where an existing process runs is [`Registry::lookup`]'s answer, not this one.
    pub fn placement_target(&self, kind: &str, key: &str) -> Option<NodeId> {
        let name = name_of(kind, key).ok()?;
        let candidates = self.placement_candidates(kind);
        choose(&candidates, &name).map(|e| e.pid.node.clone())
    }

    /// The control entries of the live nodes serving `kind`, one per node name (its newest
    /// incarnation, and that life's first control process).
    fn placement_candidates(&self, kind: &str) -> Vec<Entry> {
        let live: HashSet<NodeId> = self.members().into_iter().map(|m| m.id).collect();
        let mut by_name: BTreeMap<pidmesh_wire::CompactString, Entry> = BTreeMap::new();
        for e in self.members_of(&group_of(kind)) {
            if !live.contains(&e.pid.node) {
                continue;
            }
            let better = by_name.get(&e.pid.node.name).is_none_or(|cur| {
                (e.pid.node.incarnation, std::cmp::Reverse(e.dot.seq))
                    > (cur.pid.node.incarnation, std::cmp::Reverse(cur.dot.seq))
            });
            if better {
                by_name.insert(e.pid.node.name.clone(), e);
            }
        }
        by_name.into_values().collect()
    }
}

/// A process this node started, as its control task tracks it (for rebalancing).
struct RunningProcess {
    key: Arc<str>,
    start: StartArgs,
    pid: Pid,
    lost_tx: Arc<watch::Sender<LostState>>,
    task: JoinHandle<()>,
}

/// The control process of one kind on this node.
struct Server {
    registry: Registry,
    kind: Arc<str>,
    factory: Factory,
    options: PlacementOptions,
    /// Requests for names still held elsewhere when they arrived, by name: started when the
    /// holder's entry goes (its node declared down, or a handover's removal arriving).
    pending: BTreeMap<String, (Request, Instant)>,
    /// Processes started here, by name.
    running: BTreeMap<String, RunningProcess>,
}

impl Server {
    /// Serves start requests one at a time, so a node starts at most one process per name.
    async fn serve(mut self, mut control: Mailbox, mut events: crate::Subscription) {
        let group = group_of(&self.kind);
        loop {
            tokio::select! {
                env = control.recv() => {
                    let Some(env) = env else { return };
                    match decode_request(&env.body, &self.kind) {
                        Ok(req) => {
                            if self.handle(req).await.is_err() {
                                return;
                            }
                        }
                        Err(why) => {
                            tracing::debug!(from = %env.from, %why, "placement: start request dropped");
                        }
                    }
                }
                ev = events.recv() => {
                    let Some(ev) = ev else { return };
                    let retry = match &ev {
                        Event::Unregistered { entry, .. } => {
                            self.pending.contains_key(entry.key.name.as_str())
                        }
                        Event::NodeDown(_) => !self.pending.is_empty(),
                        _ => false,
                    };
                    if retry && self.retry_pending().await.is_err() {
                        return;
                    }
                    // A joining node learns the group's members in bulk (`CaughtUp`).
                    let joined = matches!(&ev, Event::Registered(e) if *e.key.name == *group)
                        || matches!(ev, Event::CaughtUp { .. });
                    if self.options.rebalance && (joined || matches!(ev, Event::NodeUp(_))) {
                        self.rebalance().await;
                    }
                }
            }
        }
    }

    /// Starts the process for `req` unless its name is held; if it is held by another node,
    /// keeps the request until that entry goes. Fails only when the node has stopped.
    async fn handle(&mut self, req: Request) -> Result<(), Stopped> {
        let name = format!("{}/{}", self.kind, req.key);
        if let Some(holder) = self.registry.lookup(&name) {
            if holder.pid.node != *self.registry.node_id() {
                if self.pending.len() >= MAX_PENDING
                    && let Some(oldest) = self
                        .pending
                        .iter()
                        .min_by_key(|(_, (_, at))| *at)
                        .map(|(n, _)| n.clone())
                {
                    self.pending.remove(&oldest);
                }
                self.pending.insert(name, (req, Instant::now()));
            }
            return Ok(());
        }
        self.pending.remove(&name);
        self.running.retain(|_, p| !p.task.is_finished());
        match start_local(&self.registry, &self.kind, &req, &name, &self.factory).await {
            Ok(Some(p)) => {
                tracing::debug!(%name, pid = %p.pid, "placement: started");
                self.running.insert(name, p);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(RegisterError::Stopped(s)) => Err(s),
            Err(e) => {
                tracing::warn!(%name, error = %e, "placement: start failed");
                Ok(())
            }
        }
    }

    /// Starts every kept request whose name is free now; drops expired ones.
    async fn retry_pending(&mut self) -> Result<(), Stopped> {
        let now = Instant::now();
        self.pending.retain(|_, (_, at)| now - *at < PENDING_FOR);
        let free: Vec<String> = self
            .pending
            .keys()
            .filter(|n| self.registry.lookup(n).is_none())
            .cloned()
            .collect();
        for name in free {
            if let Some((req, _)) = self.pending.remove(&name) {
                self.handle(req).await?;
            }
        }
        Ok(())
    }

    /// Hands every process whose rendezvous owner is now another live node over to it: tell
    /// the process, wait for it to return (its registration is then removed), then ask the
    /// owner to start it with the same arguments.
    async fn rebalance(&mut self) {
        self.running.retain(|_, p| !p.task.is_finished());
        let candidates = self.registry.placement_candidates(&self.kind);
        let me = self.registry.node_id().clone();
        let moves: Vec<(String, Entry)> = self
            .running
            .keys()
            .filter_map(|name| {
                let owner = choose(&candidates, name)?;
                (owner.pid.node != me).then(|| (name.clone(), owner.clone()))
            })
            .collect();
        for (name, owner) in moves {
            let Some(p) = self.running.remove(&name) else {
                continue;
            };
            // Each handover waits for its process on its own, so a slow stop does not hold up
            // the control process; until the process has returned its name is held here, so
            // requests for it are not served twice.
            tokio::spawn(hand_over(
                self.registry.clone(),
                self.kind.clone(),
                name,
                owner,
                p,
            ));
        }
    }
}

/// Moves one process to `owner`: tell it, wait until its future has returned (warning while it
/// ignores the signal) and its name is removed, then ask the owner to start it.
async fn hand_over(
    registry: Registry,
    kind: Arc<str>,
    name: String,
    owner: Entry,
    p: RunningProcess,
) {
    tracing::debug!(%name, to = %owner.pid.node, "placement: handing over");
    let _ = p.lost_tx.send(LostState::Moved(owner.pid.node.clone()));
    let mut task = p.task;
    while tokio::time::timeout(SLOW_STOP_WARNING, &mut task)
        .await
        .is_err()
    {
        tracing::warn!(%name, "placement: process ignores its handover signal");
    }
    if registry.lookup(&name).is_some_and(|e| e.pid == p.pid) {
        let _ = registry.unregister(&name, &p.pid).await;
    }
    let request = encode_request(&kind, &p.key, &p.start);
    if let Err(e) = registry.send(&owner.pid, request).await {
        tracing::warn!(%name, error = %e, "placement: handover request not sent");
    }
}

/// Spawns a mailbox, registers `name` and runs the factory; returns the new process, or `None`
/// if the name was taken meanwhile.
async fn start_local(
    registry: &Registry,
    kind: &Arc<str>,
    req: &Request,
    name: &str,
    factory: &Factory,
) -> Result<Option<RunningProcess>, RegisterError> {
    let (pid, mailbox) = registry.spawn_mailbox()?;
    match registry.register(name, &pid, req.start.meta.clone()).await {
        Ok(reg) => {
            let (lost_tx, lost_rx) = watch::channel(LostState::Held);
            let lost_tx = Arc::new(lost_tx);
            let key: Arc<str> = Arc::from(req.key.as_str());
            let ctx = StartContext {
                kind: kind.clone(),
                key: key.clone(),
                args: req.start.args.clone(),
                pid: pid.clone(),
                mailbox,
                registry: registry.clone(),
                lost: LostSignal { rx: lost_rx },
            };
            let fut = factory(ctx);
            let task = tokio::spawn(run_process(reg, lost_tx.clone(), fut));
            Ok(Some(RunningProcess {
                key,
                start: req.start.clone(),
                pid,
                lost_tx,
                task,
            }))
        }
        Err(RegisterError::AlreadyRegistered(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs one placed process: relays the loss of its name and keeps the registration until the
/// factory's future returns (its mailbox, owned by the future, is dropped then).
async fn run_process(
    mut reg: Registration,
    lost_tx: Arc<watch::Sender<LostState>>,
    mut fut: BoxFuture,
) {
    tokio::select! {
        () = &mut fut => return,
        lost = reg.lost() => {
            if let Some(l) = &lost {
                tracing::debug!(name = %reg.entry().key.name, reason = ?l.reason, "placement: name lost");
            }
            let _ = lost_tx.send(LostState::Lost(lost));
        }
    }
    fut.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_score_is_stable() {
        // Golden values: placement must agree across builds and versions of pidmesh.
        assert_eq!(rendezvous_score("node-0", "room/1"), GOLDEN[0]);
        assert_eq!(rendezvous_score("node-1", "room/1"), GOLDEN[1]);
        assert_eq!(rendezvous_score("", ""), GOLDEN[2]);
        // The length prefix separates node name from key.
        assert_ne!(rendezvous_score("ab", "c"), rendezvous_score("a", "bc"));
    }

    // Computed independently (a Python transcription of the algorithm).
    const GOLDEN: [u64; 3] = [
        3_256_489_260_718_183_869,
        16_943_285_216_619_004_554,
        8_922_497_616_986_557_598,
    ];

    #[test]
    fn request_round_trip_and_rejects() {
        let start = StartArgs::default().args("go").meta(vec![7u8]);
        let body = encode_request("room", "a/b", &start);
        assert_eq!(
            decode_request(&body, "room"),
            Ok(Request {
                key: "a/b".into(),
                start
            })
        );
        assert!(decode_request(&body, "chat").is_err());
        let d = |b: &[u8]| decode_request(&Bytes::copy_from_slice(b), "room");
        // Version 1 is still understood.
        assert_eq!(
            d(&[1, 4, b'r', b'o', b'o', b'm', b'x']).map(|r| r.key),
            Ok("x".to_string())
        );
        assert!(d(&[]).is_err());
        assert!(d(&[3, 4, b'r', b'o', b'o', b'm', b'x']).is_err());
        assert!(d(&[1, 9, b'r']).is_err());
        assert!(d(&[1, 4, b'r', b'o', b'o', b'm']).is_err());
        assert!(d(&[1, 4, b'r', b'o', b'o', b'm', 0xff]).is_err());
        assert!(d(&[1, 4, b'r', b'o', b'o', b'm', b'\n']).is_err());
        // Version 2: truncated key or metadata length.
        assert!(d(&[2, 4, b'r', b'o', b'o', b'm', 1]).is_err());
        assert!(d(&[2, 4, b'r', b'o', b'o', b'm', 5, 0, b'x']).is_err());
        assert!(d(&[2, 4, b'r', b'o', b'o', b'm', 1, 0, b'x', 9, 0]).is_err());
        assert_eq!(
            d(&[2, 4, b'r', b'o', b'o', b'm', 1, 0, b'x', 0, 0]).map(|r| r.start),
            Ok(StartArgs::default())
        );
    }

    /// Every truncation and every single-byte change of a valid request decodes or is
    /// rejected, never panics (the request is network input).
    #[test]
    fn mangled_requests_never_panic() {
        let body = encode_request(
            "room",
            "a/b",
            &StartArgs::default().args("xyz").meta(vec![1u8, 2]),
        );
        for len in 0..=body.len() {
            let _ = decode_request(&body.slice(..len), "room");
        }
        for i in 0..body.len() {
            for b in 0..=u8::MAX {
                let mut v = body.to_vec();
                v[i] = b;
                let _ = decode_request(&Bytes::from(v), "room");
            }
        }
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(name_of("room", "1").as_deref(), Ok("room/1"));
        assert!(name_of("", "1").is_err());
        assert!(name_of("a/b", "1").is_err());
        assert!(name_of("room", "").is_err());
        assert!(name_of("room", &"x".repeat(251)).is_err());
        assert!(name_of("room", &"x".repeat(250)).is_ok());
        assert!(check_kind(&"k".repeat(255 - PLACEMENT_GROUP_PREFIX.len())).is_ok());
        assert!(check_kind(&"k".repeat(256 - PLACEMENT_GROUP_PREFIX.len())).is_err());
    }

    /// A request for a name another node still holds is kept, and served the moment that
    /// entry goes (here: unregistered by hand; after a host death: its node declared down).
    #[tokio::test]
    async fn request_for_a_held_name_is_served_once_it_is_free() {
        let regs = crate::test_support::two_node_cluster(0x9e4d_0001).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let placement = regs[1]
            .placement("room", move |ctx| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((ctx.pid.clone(), ctx.args.clone()));
                    let _ = ctx.lost.wait().await;
                }
            })
            .await
            .expect("serves");
        // node-0 holds room/x by hand.
        let (pid, _mailbox) = regs[0].spawn_mailbox().expect("running");
        let held = regs[0].register("room/x", &pid, "").await.expect("free");
        while regs[1].lookup("room/x").is_none() {
            assert!(Instant::now() < deadline, "entry did not arrive");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let request = encode_request("room", "x", &StartArgs::default().args("hi"));
        regs[0]
            .send(placement.pid(), request)
            .await
            .expect("request sent");
        // Not started while held elsewhere.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err(), "started while the name was held");
        assert_eq!(regs[1].lookup("room/x").map(|e| e.pid), Some(pid));
        held.unregister().await.expect("unregistered");
        let (started, args) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("started once free")
            .expect("channel open");
        assert_eq!(args, Bytes::from_static(b"hi"));
        assert_eq!(started.node, *regs[1].node_id());
    }
}
