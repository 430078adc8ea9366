//! Mail between processes: sender identity, request/reply (`call`), awaiting sends, and the
//! handling of incoming mail-class messages (wire version 2, version 1 still accepted).
//!
//! Every pending call is keyed by a request id unique for this node's life, so a reply that
//! arrives after its call gave up finds no entry and is dropped (and counted); it can never
//! answer a later call. Calls and deliveries waiting on a node fail as soon as the node is
//! declared down or announces that it is leaving.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pidmesh_proto::{NodeId, Pid, TrafficClass};
use pidmesh_transport::{Incoming, Outgoing};
use pidmesh_wire::{MailKind, MailMsg, MailV2, RejectReason};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Shared, lock};
use crate::error::{CallError, ReplyError, SendError, Stopped};
use crate::mailbox::{Envelope, ReplyTo};
use crate::monitor::{DownReason, MonitorTable};
use crate::registry::Registry;

/// How many deliveries (awaiting sends from other nodes) may wait for room in full mailboxes
/// of this node at once; beyond it they are rejected as `Busy` (the sender sees `Full`).
const MAX_WAITING_DELIVERIES: usize = 4096;

/// How many exits of each peer are remembered, so a monitor started just after a remote
/// process ended still fires at once with `NoProc`.
const RECENT_EXITS: usize = 4096;

/// Largest number of pids in one exit announcement.
const EXITS_PER_MESSAGE: usize = 16 * 1024;

pub(crate) type CallResult = Result<Bytes, CallError>;

/// A call or awaiting delivery waiting for its answer.
pub(crate) struct PendingCall {
    /// The node expected to answer (answers from any other node are ignored).
    to: Pid,
    /// A call (fails when `to` exits before answering), not an awaiting delivery (whose
    /// acknowledgement may cross the exit announcement).
    request: bool,
    tx: oneshot::Sender<CallResult>,
}

/// Counters of the messaging layer (see [`MailStats`]).
#[derive(Debug, Default)]
struct Counters {
    late_replies: AtomicU64,
    undecodable: AtomicU64,
    dropped: AtomicU64,
    exits_announced: AtomicU64,
}

/// Messaging state shared by every handle and the driver.
#[derive(Default)]
pub(crate) struct MsgState {
    calls: Mutex<HashMap<u64, PendingCall>>,
    next_id: AtomicU64,
    pub(crate) monitors: Mutex<MonitorTable>,
    /// Local processes that ended since the last announcement.
    exited: Mutex<Vec<u64>>,
    /// Peers that announced they are leaving (until SWIM drops them).
    pub(crate) departed: Mutex<HashSet<NodeId>>,
    /// Recent exits announced by each peer.
    recent_exits: Mutex<HashMap<NodeId, RecentExits>>,
    waiting: AtomicUsize,
    counters: Counters,
}

#[derive(Default)]
struct RecentExits {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl RecentExits {
    fn insert(&mut self, pid: u64) {
        if self.set.insert(pid) {
            self.order.push_back(pid);
            if self.order.len() > RECENT_EXITS
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

impl MsgState {
    pub(crate) fn recently_exited(&self, pid: &Pid) -> bool {
        lock(&self.recent_exits)
            .get(&pid.node)
            .is_some_and(|r| r.set.contains(&pid.local))
    }

    pub(crate) fn count_undecodable(&self) {
        self.counters.undecodable.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("pidmesh.mail.undecodable").increment(1);
    }

    /// Ends everything waiting when the node stops: calls fail with `Stopped`, monitors
    /// resolve with [`DownReason::Stopped`].
    pub(crate) fn clear(&self) {
        lock(&self.calls).clear();
        lock(&self.monitors).clear();
    }
}

/// Counters of this node's messaging, for tests and dashboards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MailStats {
    /// Replies that arrived after their call had timed out or was dropped (never delivered).
    pub late_replies: u64,
    /// Typed messages that failed to decode at a typed mailbox of this node.
    pub undecodable: u64,
    /// Incoming messages dropped (no such process, full mailbox, unknown sender...).
    pub dropped: u64,
    /// Local process exits announced to peers.
    pub exits_announced: u64,
    /// Calls (and awaiting remote sends) now waiting for an answer.
    pub pending_calls: usize,
    /// Monitors now armed on this node.
    pub monitors: usize,
}

impl Shared {
    /// The address of a live peer.
    pub(crate) fn peer_addr(&self, node: &NodeId) -> Option<SocketAddr> {
        self.read()
            .peers()
            .find(|m| m.node == *node)
            .map(|m| m.addr)
    }

    /// Queues a mail-class message for the driver to send.
    fn post(&self, addr: SocketAddr, msg: &MailMsg) -> Result<(), PostError> {
        let payload = pidmesh_wire::encode(msg).map_err(|_| PostError::TooLarge)?;
        self.mail_tx
            .try_send(Outgoing {
                to: addr,
                class: TrafficClass::Mail,
                payload,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PostError::Full,
                mpsc::error::TrySendError::Closed(_) => PostError::Stopped,
            })
    }

    fn mail(&self, sender: Option<u64>, to: Pid, kind: MailKind, body: Bytes) -> MailMsg {
        MailMsg::V2(MailV2::Mail {
            from: self.id.clone(),
            sender,
            to,
            kind,
            body,
        })
    }

    /// Checks that a sending pid is a live local process.
    fn check_sender(&self, from: Option<&Pid>) -> Result<(), Pid> {
        match from {
            Some(p) if p.node != self.id || !lock(&self.mailboxes).contains_key(&p.local) => {
                Err(p.clone())
            }
            _ => Ok(()),
        }
    }

    /// A message to `to` without waiting (`send`, `try_send`, `send_from`).
    pub(crate) fn cast(&self, from: Option<&Pid>, to: &Pid, body: Bytes) -> Result<(), SendError> {
        self.check_running()?;
        if body.len() > pidmesh_wire::MAX_MAIL_BODY_LEN {
            return Err(SendError::TooLarge(body.len()));
        }
        self.check_sender(from).map_err(SendError::NotLocal)?;
        if to.node == self.id {
            return self.deliver_local(to, Envelope::cast(self.id.clone(), from.cloned(), body));
        }
        let addr = self
            .peer_addr(&to.node)
            .ok_or_else(|| SendError::NodeUnreachable(to.clone()))?;
        let msg = self.mail(from.map(|p| p.local), to.clone(), MailKind::Cast, body);
        self.post(addr, &msg).map_err(|e| match e {
            PostError::Full => SendError::Full,
            PostError::TooLarge => SendError::TooLarge(0),
            PostError::Stopped => SendError::Stopped(Stopped),
        })
    }

    /// Registers a pending answer from `to`'s node (to a call if `request`); the guard
    /// removes it when dropped.
    fn pending(
        &self,
        to: &Pid,
        request: bool,
    ) -> (PendingGuard<'_>, oneshot::Receiver<CallResult>) {
        let id = self.msg.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        let call = PendingCall {
            to: to.clone(),
            request,
            tx,
        };
        lock(&self.msg.calls).insert(id, call);
        (PendingGuard { shared: self, id }, rx)
    }

    /// Processes of `node` ended (`locals`): calls still waiting on one of them fail with
    /// [`CallError::NoSuchProcess`] now instead of at their timeout. A reply the process
    /// sent before it ended arrived first (mail and exit announcements share the node
    /// pair's ordered channel; a local reply completes the call synchronously).
    fn fail_calls_to(&self, node: &NodeId, ended: impl Fn(u64) -> bool) {
        let mut calls = lock(&self.msg.calls);
        if calls.is_empty() {
            return;
        }
        let ids: Vec<u64> = calls
            .iter()
            .filter(|(_, p)| p.request && p.to.node == *node && ended(p.to.local))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(p) = calls.remove(&id) {
                let _ = p.tx.send(Err(CallError::NoSuchProcess(p.to)));
            }
        }
    }

    /// Answers a pending call, if `from` is the node it waits on. A reply for an unknown id
    /// (its call timed out or was dropped) is counted as late and dropped.
    pub(crate) fn complete_call(&self, from: &NodeId, id: u64, result: CallResult) {
        let mut calls = lock(&self.msg.calls);
        match calls.get(&id) {
            Some(p) if p.to.node == *from => {
                if let Some(p) = calls.remove(&id) {
                    let _ = p.tx.send(result);
                }
            }
            Some(_) => {
                metrics::counter!("pidmesh.mail.rejected", "reason" => "wrong_replier")
                    .increment(1);
            }
            None => {
                self.msg
                    .counters
                    .late_replies
                    .fetch_add(1, Ordering::Relaxed);
                metrics::counter!("pidmesh.call.late_replies").increment(1);
            }
        }
    }

    /// `node` was declared down (or announced it is leaving): its calls fail and its monitors
    /// fire now.
    pub(crate) fn node_gone(&self, node: &NodeId, left: bool) {
        {
            let mut calls = lock(&self.msg.calls);
            let ids: Vec<u64> = calls
                .iter()
                .filter(|(_, p)| p.to.node == *node)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                if let Some(p) = calls.remove(&id) {
                    let _ = p.tx.send(Err(CallError::NodeDown(p.to)));
                }
            }
        }
        let left = lock(&self.msg.departed).remove(node) || left;
        let reason = if left {
            DownReason::NodeLeft
        } else {
            DownReason::NodeDown
        };
        lock(&self.msg.monitors).fire_node(node, reason);
        if !left {
            // Forget what is known of this life of the node.
            lock(&self.msg.recent_exits).remove(node);
        }
    }

    /// A local process ended: its monitors fire, and its exit is announced to the peers.
    pub(crate) fn local_exit(&self, pid: &Pid) {
        lock(&self.msg.monitors).fire(pid, DownReason::Exited);
        lock(&self.msg.exited).push(pid.local);
        self.fail_calls_to(&pid.node, |local| local == pid.local);
    }

    /// The exit announcements to send now (called by the driver after each turn).
    pub(crate) fn take_exit_announcements(&self) -> Vec<Bytes> {
        let pids = std::mem::take(&mut *lock(&self.msg.exited));
        if pids.is_empty() {
            return Vec::new();
        }
        self.msg
            .counters
            .exits_announced
            .fetch_add(pids.len() as u64, Ordering::Relaxed);
        pids.chunks(EXITS_PER_MESSAGE)
            .filter_map(|c| {
                pidmesh_wire::encode(&MailMsg::V2(MailV2::Exited {
                    from: self.id.clone(),
                    pids: c.to_vec(),
                }))
                .ok()
            })
            .collect()
    }

    /// The announcement that this node is leaving.
    pub(crate) fn leaving_announcement(&self) -> Option<Bytes> {
        pidmesh_wire::encode(&MailMsg::V2(MailV2::Leaving {
            from: self.id.clone(),
        }))
        .ok()
    }

    fn drop_incoming(&self, why: &'static str) {
        self.msg.counters.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("pidmesh.mail.dropped", "reason" => why).increment(1);
    }

    fn reject(&self, caller: Pid, callee: u64, id: u64, reason: RejectReason) {
        let Some(addr) = self.peer_addr(&caller.node) else {
            return;
        };
        let msg = self.mail(
            Some(callee),
            caller,
            MailKind::Reject { id, reason },
            Bytes::new(),
        );
        if self.post(addr, &msg).is_err() {
            self.drop_incoming("reject_not_sent");
        }
    }
}

enum PostError {
    Full,
    TooLarge,
    Stopped,
}

/// Removes a pending call when its waiter goes away (timeout, cancellation or answer).
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.msg.calls).remove(&self.id);
    }
}

fn reject_error(reason: RejectReason, to: &Pid) -> CallError {
    match reason {
        RejectReason::NoProcess => CallError::NoSuchProcess(to.clone()),
        RejectReason::MailboxFull | RejectReason::Busy => CallError::Full,
        RejectReason::ReplyTooLarge => CallError::ReplyTooLarge,
    }
}

/// Sends the answer of a request (see [`Envelope::reply`]).
pub(crate) fn send_reply(shared: &Shared, r: &ReplyTo, body: Bytes) -> Result<(), ReplyError> {
    shared.check_running()?;
    let too_large = body.len() > pidmesh_wire::MAX_MAIL_BODY_LEN;
    if r.caller.node == shared.id {
        let result = if too_large {
            Err(CallError::ReplyTooLarge)
        } else {
            Ok(body.clone())
        };
        shared.complete_call(&shared.id, r.id, result);
    } else {
        let addr = shared
            .peer_addr(&r.caller.node)
            .ok_or(ReplyError::Unreachable)?;
        let kind = if too_large {
            MailKind::Reject {
                id: r.id,
                reason: RejectReason::ReplyTooLarge,
            }
        } else {
            MailKind::Reply { id: r.id }
        };
        let sent_body = if too_large {
            Bytes::new()
        } else {
            body.clone()
        };
        let msg = shared.mail(Some(r.callee), r.caller.clone(), kind, sent_body);
        shared.post(addr, &msg).map_err(|e| match e {
            PostError::Full => ReplyError::Full,
            PostError::TooLarge => ReplyError::TooLarge(body.len()),
            PostError::Stopped => ReplyError::Stopped(Stopped),
        })?;
    }
    if too_large {
        return Err(ReplyError::TooLarge(body.len()));
    }
    Ok(())
}

/// Tells a caller that its typed reply could not be encoded (as a reply too large).
pub(crate) fn reject_reply(shared: &Shared, r: &ReplyTo) {
    if r.caller.node == shared.id {
        shared.complete_call(&shared.id, r.id, Err(CallError::ReplyTooLarge));
    } else {
        shared.reject(
            r.caller.clone(),
            r.callee,
            r.id,
            RejectReason::ReplyTooLarge,
        );
    }
}

/// Handles one incoming mail-class message (called by the driver).
pub(crate) fn on_mail(shared: &Arc<Shared>, msg: Incoming) {
    let decoded = match pidmesh_wire::decode::<MailMsg>(&msg.payload) {
        Ok(m) => m,
        Err(e) => {
            metrics::counter!("pidmesh.mail.rejected", "reason" => "malformed").increment(1);
            tracing::debug!(error = %e, from = %msg.from, "malformed mail");
            return;
        }
    };
    let from = match &decoded {
        MailMsg::V1 { from, .. }
        | MailMsg::V2(
            MailV2::Mail { from, .. } | MailV2::Exited { from, .. } | MailV2::Leaving { from },
        ) => from,
    };
    // A peer speaks only for itself.
    if msg.peer_name.as_deref().is_some_and(|n| n != &*from.name) {
        metrics::counter!("pidmesh.mail.rejected", "reason" => "forged_sender").increment(1);
        return;
    }
    match decoded {
        MailMsg::V1 { from, to, body } => {
            if to.node != shared.id {
                return wrong_node();
            }
            if let Err(e) = shared.deliver_local(&to, Envelope::cast(from, None, body)) {
                shared.drop_incoming("undeliverable");
                tracing::debug!(error = %e, "incoming mail dropped");
            }
        }
        MailMsg::V2(MailV2::Mail {
            from,
            sender,
            to,
            kind,
            body,
        }) => {
            if to.node != shared.id {
                return wrong_node();
            }
            on_mail_v2(shared, from, sender, to, kind, body);
        }
        MailMsg::V2(MailV2::Exited { from, pids }) => {
            {
                let mut monitors = lock(&shared.msg.monitors);
                let mut recent = lock(&shared.msg.recent_exits);
                let recent = recent.entry(from.clone()).or_default();
                for &local in &pids {
                    let pid = Pid {
                        node: from.clone(),
                        local,
                    };
                    monitors.fire(&pid, DownReason::Exited);
                    recent.insert(local);
                }
            }
            let ended: HashSet<u64> = pids.into_iter().collect();
            shared.fail_calls_to(&from, |local| ended.contains(&local));
        }
        MailMsg::V2(MailV2::Leaving { from }) => {
            lock(&shared.msg.departed).insert(from.clone());
            shared.node_gone(&from, true);
        }
    }
}

fn wrong_node() {
    metrics::counter!("pidmesh.mail.rejected", "reason" => "wrong_node").increment(1);
}

fn on_mail_v2(
    shared: &Arc<Shared>,
    from: NodeId,
    sender: Option<u64>,
    to: Pid,
    kind: MailKind,
    body: Bytes,
) {
    let sender_pid = sender.map(|local| Pid {
        node: from.clone(),
        local,
    });
    let caller = Pid {
        node: from.clone(),
        local: sender.unwrap_or(0),
    };
    match kind {
        MailKind::Cast => {
            if let Err(e) = shared.deliver_local(&to, Envelope::cast(from, sender_pid, body)) {
                shared.drop_incoming("undeliverable");
                tracing::debug!(error = %e, "incoming mail dropped");
            }
        }
        MailKind::Request { id } => {
            let env = Envelope {
                from,
                sender: sender_pid,
                body,
                reply: Some(ReplyTo {
                    shared: Arc::downgrade(shared),
                    caller: caller.clone(),
                    id,
                    callee: to.local,
                    replied: Arc::new(AtomicBool::new(false)),
                }),
            };
            match shared.deliver_local(&to, env) {
                Ok(()) => {}
                Err(SendError::Full) => {
                    shared.reject(caller, to.local, id, RejectReason::MailboxFull)
                }
                Err(_) => shared.reject(caller, to.local, id, RejectReason::NoProcess),
            }
        }
        MailKind::Deliver { id } => {
            let Some(tx) = lock(&shared.mailboxes).get(&to.local).cloned() else {
                return shared.reject(caller, to.local, id, RejectReason::NoProcess);
            };
            let env = Envelope::cast(from, sender_pid, body);
            match tx.try_send(env) {
                Ok(()) => ack(shared, caller, to.local, id),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    shared.reject(caller, to.local, id, RejectReason::NoProcess)
                }
                Err(mpsc::error::TrySendError::Full(env)) => {
                    // Wait for room off the driver; the sender waits for the acknowledgement.
                    if shared.msg.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING_DELIVERIES {
                        shared.msg.waiting.fetch_sub(1, Ordering::AcqRel);
                        return shared.reject(caller, to.local, id, RejectReason::Busy);
                    }
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let delivered = tx.send(env).await.is_ok();
                        shared.msg.waiting.fetch_sub(1, Ordering::AcqRel);
                        if delivered {
                            ack(&shared, caller, to.local, id);
                        } else {
                            shared.reject(caller, to.local, id, RejectReason::NoProcess);
                        }
                        shared.kick.notify_one();
                    });
                }
            }
        }
        MailKind::Reply { id } => shared.complete_call(&from, id, Ok(body)),
        MailKind::Reject { id, reason } => {
            let err = {
                let calls = lock(&shared.msg.calls);
                calls.get(&id).map(|p| reject_error(reason, &p.to))
            };
            match err {
                Some(e) => shared.complete_call(&from, id, Err(e)),
                // The call already ended (timed out, abandoned, or failed when this node
                // learned of the callee's exit or its node's departure, which a rejection can
                // follow): nothing to answer, and not a late reply.
                None => metrics::counter!("pidmesh.call.late_rejections").increment(1),
            }
        }
    }
}

fn ack(shared: &Shared, caller: Pid, callee: u64, id: u64) {
    let Some(addr) = shared.peer_addr(&caller.node) else {
        return;
    };
    let msg = shared.mail(Some(callee), caller, MailKind::Reply { id }, Bytes::new());
    if shared.post(addr, &msg).is_err() {
        shared.drop_incoming("ack_not_sent");
    }
}

impl Registry {
    /// Sends `body` to `to` without waiting, like [`Registry::send`]; a synchronous spelling
    /// for code outside async contexts.
    ///
    /// # Errors
    /// See [`SendError`]; `Full` when the destination mailbox (local) or the outgoing queue
    /// (remote) has no room.
    pub fn try_send(&self, to: &Pid, body: impl Into<Bytes>) -> Result<(), SendError> {
        self.shared.cast(None, to, body.into())
    }

    /// Sends `body` to `to` on behalf of the local process `from`: the receiver sees
    /// `from` as [`Envelope::sender`]. Never waits, like [`Registry::send`].
    ///
    /// # Errors
    /// [`SendError::NotLocal`] if `from` is not a live process of this node; otherwise as
    /// [`Registry::send`].
    pub fn send_from(&self, from: &Pid, to: &Pid, body: impl Into<Bytes>) -> Result<(), SendError> {
        self.shared.cast(Some(from), to, body.into())
    }

    /// Sends `body` to `to` and waits until it is in the destination mailbox: for a local
    /// pid, until the mailbox has room; for a remote pid, until the remote node has queued it
    /// in the mailbox (it waits there for room, then acknowledges). Nothing is dropped for a
    /// full mailbox, so a fast sender is slowed to its receiver's pace.
    ///
    /// Remote sends of this form cost one round trip each (the acknowledgement); messages
    /// from one task that awaits each send stay in order.
    ///
    /// # Errors
    /// See [`SendError`]: `NoSuchProcess`, `NodeUnreachable` (also when the node goes down or
    /// leaves while waiting), `Full` (only when the remote node already has 4096 deliveries
    /// waiting, or this node's outgoing queue is full), `TooLarge`, `Stopped`.
    ///
    /// Cancel-safety: dropping the future before it completes may or may not have delivered
    /// the message (at most once).
    pub async fn send_wait(&self, to: &Pid, body: impl Into<Bytes>) -> Result<(), SendError> {
        self.send_wait_inner(None, to, body.into()).await
    }

    /// [`Registry::send_wait`] on behalf of the local process `from` (see [`Registry::send_from`]).
    ///
    /// # Errors
    /// As [`Registry::send_wait`], and [`SendError::NotLocal`] for a `from` that is not a live
    /// process of this node.
    ///
    /// Cancel-safety: as [`Registry::send_wait`].
    pub async fn send_wait_from(
        &self,
        from: &Pid,
        to: &Pid,
        body: impl Into<Bytes>,
    ) -> Result<(), SendError> {
        self.send_wait_inner(Some(from), to, body.into()).await
    }

    async fn send_wait_inner(
        &self,
        from: Option<&Pid>,
        to: &Pid,
        body: Bytes,
    ) -> Result<(), SendError> {
        let shared = &self.shared;
        shared.check_running()?;
        if body.len() > pidmesh_wire::MAX_MAIL_BODY_LEN {
            return Err(SendError::TooLarge(body.len()));
        }
        shared.check_sender(from).map_err(SendError::NotLocal)?;
        let env = Envelope::cast(shared.id.clone(), from.cloned(), body);
        if to.node == shared.id {
            let tx = lock(&shared.mailboxes)
                .get(&to.local)
                .cloned()
                .ok_or_else(|| SendError::NoSuchProcess(to.clone()))?;
            return tx
                .send(env)
                .await
                .map_err(|_| SendError::NoSuchProcess(to.clone()));
        }
        let (guard, rx) = shared.pending(to, false);
        let addr = shared
            .peer_addr(&to.node)
            .ok_or_else(|| SendError::NodeUnreachable(to.clone()))?;
        let msg = shared.mail(
            from.map(|p| p.local),
            to.clone(),
            MailKind::Deliver { id: guard.id },
            env.body,
        );
        shared.post(addr, &msg).map_err(|e| match e {
            PostError::Full => SendError::Full,
            PostError::TooLarge => SendError::TooLarge(0),
            PostError::Stopped => SendError::Stopped(Stopped),
        })?;
        let r = rx.await;
        drop(guard);
        match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(CallError::NoSuchProcess(p))) => Err(SendError::NoSuchProcess(p)),
            Ok(Err(CallError::NodeDown(p))) => Err(SendError::NodeUnreachable(p)),
            Ok(Err(CallError::Full)) => Err(SendError::Full),
            Ok(Err(_)) | Err(_) => Err(SendError::Stopped(Stopped)),
        }
    }

    /// Sends the request `req` to `to` and waits for its one reply (the callee answers with
    /// [`Envelope::reply`]), up to `timeout`. The callee sees no sending process
    /// ([`Envelope::sender`] is `None`); see [`Registry::call_from`].
    ///
    /// A call to a pid whose node is declared down, or announces it is leaving, fails at once
    /// with [`CallError::NodeDown`], not at the timeout; a call whose callee process ends
    /// before replying (its mailbox dropped with the request unanswered, in it or taken out)
    /// fails with [`CallError::NoSuchProcess`] as soon as this node learns of the exit (at
    /// once for a local callee, with the exit announcement for a remote one, as a
    /// [`Registry::monitor`] would fire). A reply arriving after the timeout is
    /// dropped and counted ([`MailStats::late_replies`]); it never answers another call.
    ///
    /// # Errors
    /// See [`CallError`].
    ///
    /// Cancel-safe: dropping the future abandons the call (a later reply is counted as late).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pidmesh::{Config, Registry};
    /// # let net = pidmesh_transport::MemNetwork::new(1);
    /// # let registry = Registry::builder()
    /// #     .node_name("n1")
    /// #     .config(Config::local())
    /// #     .transport(net.bind_named("n1"))
    /// #     .start()
    /// #     .await?;
    /// use std::time::Duration;
    /// use pidmesh::{CallError, ReplyError};
    ///
    /// let (server, mut inbox) = registry.spawn_mailbox()?;
    /// let serving = tokio::spawn(async move {
    ///     // Answer one request, then exit (the mailbox drops with the task).
    ///     if let Some(m) = inbox.recv().await {
    ///         m.reply(format!("hello {}", String::from_utf8_lossy(&m.body)))?;
    ///     }
    ///     Ok::<_, ReplyError>(())
    /// });
    /// let answer = registry.call(&server, "bob", Duration::from_secs(1)).await?;
    /// assert_eq!(&answer[..], b"hello bob");
    /// serving.await??;
    /// // The server has exited: a call now fails at once, not at its timeout.
    /// let err = registry.call(&server, "again", Duration::from_secs(10)).await.unwrap_err();
    /// assert_eq!(err, CallError::NoSuchProcess(server));
    /// # registry.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call(
        &self,
        to: &Pid,
        req: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        self.call_inner(None, to, req.into(), timeout).await
    }

    /// [`Registry::call`] on behalf of the local process `from`: the callee sees it as
    /// [`Envelope::sender`].
    ///
    /// # Errors
    /// As [`Registry::call`], and [`CallError::NotLocal`] if `from` is not a live process of
    /// this node.
    ///
    /// Cancel-safe: as [`Registry::call`].
    pub async fn call_from(
        &self,
        from: &Pid,
        to: &Pid,
        req: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        self.call_inner(Some(from), to, req.into(), timeout).await
    }

    pub(crate) async fn call_inner(
        &self,
        from: Option<&Pid>,
        to: &Pid,
        req: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let shared = &self.shared;
        shared.check_running()?;
        if req.len() > pidmesh_wire::MAX_MAIL_BODY_LEN {
            return Err(CallError::TooLarge(req.len()));
        }
        shared.check_sender(from).map_err(CallError::NotLocal)?;
        let (guard, rx) = shared.pending(to, true);
        let caller = Pid {
            node: shared.id.clone(),
            local: from.map_or(0, |p| p.local),
        };
        if to.node == shared.id {
            let env = Envelope {
                from: shared.id.clone(),
                sender: from.cloned(),
                body: req,
                reply: Some(ReplyTo {
                    shared: Arc::downgrade(shared),
                    caller,
                    id: guard.id,
                    callee: to.local,
                    replied: Arc::new(AtomicBool::new(false)),
                }),
            };
            shared.deliver_local(to, env).map_err(|e| match e {
                SendError::Full => CallError::Full,
                SendError::Stopped(s) => CallError::Stopped(s),
                _ => CallError::NoSuchProcess(to.clone()),
            })?;
        } else {
            let addr = shared
                .peer_addr(&to.node)
                .ok_or_else(|| CallError::NodeDown(to.clone()))?;
            let msg = shared.mail(
                from.map(|p| p.local),
                to.clone(),
                MailKind::Request { id: guard.id },
                req,
            );
            shared.post(addr, &msg).map_err(|e| match e {
                PostError::Full => CallError::Full,
                PostError::TooLarge => CallError::TooLarge(0),
                PostError::Stopped => CallError::Stopped(Stopped),
            })?;
        }
        let r = tokio::time::timeout(timeout, rx).await;
        drop(guard);
        match r {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CallError::Stopped(Stopped)),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// Counters of this node's messaging (late replies, undecodable typed messages...).
    pub fn mail_stats(&self) -> MailStats {
        let c = &self.shared.msg.counters;
        MailStats {
            late_replies: c.late_replies.load(Ordering::Relaxed),
            undecodable: c.undecodable.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            exits_announced: c.exits_announced.load(Ordering::Relaxed),
            pending_calls: lock(&self.shared.msg.calls).len(),
            monitors: lock(&self.shared.msg.monitors).len(),
        }
    }
}
