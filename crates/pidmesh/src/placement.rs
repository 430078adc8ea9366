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
/// Version byte of the start request (the request travels as a mailbox message).
const REQUEST_V1: u8 = 1;

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
}

impl LostSignal {
    /// Waits until the name is lost: `Some(Lost)` with the reason (`Conflict` and the winner
    /// when a duplicate won), or `None` when the node stopped or the placement task ended.
    /// Pending forever while the name is held.
    ///
    /// Cancel-safe: it only observes.
    pub async fn wait(&self) -> Option<Lost> {
        let mut rx = self.rx.clone();
        match rx.wait_for(|s| matches!(s, LostState::Lost(_))).await {
            Ok(state) => match &*state {
                LostState::Lost(l) => l.clone(),
                LostState::Held => None,
            },
            Err(_) => None,
        }
    }

    /// True once the name is lost (or its holder has ended).
    pub fn is_lost(&self) -> bool {
        self.rx.has_changed().is_err() || matches!(*self.rx.borrow(), LostState::Lost(_))
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

/// `[version][kind length: u8][kind][key]`, all UTF-8.
fn encode_request(kind: &str, key: &str) -> Bytes {
    let mut v = Vec::with_capacity(2 + kind.len() + key.len());
    v.push(REQUEST_V1);
    // check_kind bounds the kind to under 255 bytes.
    v.push(u8::try_from(kind.len()).unwrap_or(u8::MAX));
    v.extend_from_slice(kind.as_bytes());
    v.extend_from_slice(key.as_bytes());
    Bytes::from(v)
}

/// The key of a start request for `kind`, or why it is rejected.
fn decode_request<'a>(body: &'a [u8], kind: &str) -> Result<&'a str, &'static str> {
    let [version, len, rest @ ..] = body else {
        return Err("truncated");
    };
    if *version != REQUEST_V1 {
        return Err("unknown version");
    }
    let len = usize::from(*len);
    if rest.len() < len {
        return Err("truncated kind");
    }
    let (k, key) = rest.split_at(len);
    if k != kind.as_bytes() {
        return Err("request for another kind");
    }
    let key = std::str::from_utf8(key).map_err(|_| "key is not UTF-8")?;
    name_of(kind, key)?;
    Ok(key)
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
        let task = tokio::spawn(serve(self.clone(), kind.clone(), control, factory));
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
        let name = name_of(kind, key).map_err(GetOrStartError::InvalidKey)?;
        if let Some(e) = self.lookup(&name) {
            return Ok(e.pid);
        }
        let deadline = Instant::now() + timeout;
        let mut sub = self.subscribe_prefix(name.clone());
        let request = encode_request(kind, key);
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

/// The control process: serves start requests one at a time, so a node starts at most one
/// process per name.
async fn serve(registry: Registry, kind: Arc<str>, mut control: Mailbox, factory: Factory) {
    while let Some(env) = control.recv().await {
        let key = match decode_request(&env.body, &kind) {
            Ok(k) => k,
            Err(why) => {
                tracing::debug!(from = %env.from, %why, "placement: start request dropped");
                continue;
            }
        };
        let name = format!("{kind}/{key}");
        if registry.lookup(&name).is_some() {
            continue;
        }
        match start_local(&registry, &kind, key, &name, &factory).await {
            Ok(pid) => tracing::debug!(%name, %pid, "placement: started"),
            Err(RegisterError::Stopped(_)) => return,
            Err(e) => tracing::warn!(%name, error = %e, "placement: start failed"),
        }
    }
}

/// Spawns a mailbox, registers `name` and runs the factory; returns the holder's pid (ours, or
/// the one already registered).
async fn start_local(
    registry: &Registry,
    kind: &Arc<str>,
    key: &str,
    name: &str,
    factory: &Factory,
) -> Result<Pid, RegisterError> {
    let (pid, mailbox) = registry.spawn_mailbox()?;
    match registry.register(name, &pid, Bytes::new()).await {
        Ok(reg) => {
            let (lost_tx, lost_rx) = watch::channel(LostState::Held);
            let ctx = StartContext {
                kind: kind.clone(),
                key: Arc::from(key),
                pid: pid.clone(),
                mailbox,
                registry: registry.clone(),
                lost: LostSignal { rx: lost_rx },
            };
            let fut = factory(ctx);
            tokio::spawn(run_process(reg, lost_tx, fut));
            Ok(pid)
        }
        Err(RegisterError::AlreadyRegistered(e)) => Ok(e.pid),
        Err(e) => Err(e),
    }
}

/// Runs one placed process: relays the loss of its name and keeps the registration until the
/// factory's future returns (its mailbox, owned by the future, is dropped then).
async fn run_process(mut reg: Registration, lost_tx: watch::Sender<LostState>, mut fut: BoxFuture) {
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
        let body = encode_request("room", "a/b");
        assert_eq!(decode_request(&body, "room"), Ok("a/b"));
        assert!(decode_request(&body, "chat").is_err());
        assert!(decode_request(&[], "room").is_err());
        assert!(decode_request(&[2, 4, b'r', b'o', b'o', b'm', b'x'], "room").is_err());
        assert!(decode_request(&[1, 9, b'r'], "room").is_err());
        assert!(decode_request(&[1, 4, b'r', b'o', b'o', b'm'], "room").is_err());
        assert!(decode_request(&[1, 4, b'r', b'o', b'o', b'm', 0xff], "room").is_err());
        assert!(decode_request(&[1, 4, b'r', b'o', b'o', b'm', b'\n'], "room").is_err());
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
}
