//! The driver task: the one task that owns the node, feeds it the network and its timers,
//! and sends what it produces; and the state it shares with every `Registry` handle.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::singleton::Candidacy;
use std::time::{Duration, Instant};

use pidmesh_proto::{Event, Node, NodeId, Pid, RegistryReader, TrafficClass};
use pidmesh_transport::{Incoming, Outgoing, Transport};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::error::{SendError, Stopped};
use crate::mailbox::Envelope;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves data that is still consistent (each
    // critical section is a single insert/remove), so poisoning is ignored.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// State shared by every `Registry` handle and the driver.
pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) node: RwLock<Node>,
    /// Reads the node's registry without taking `node`'s lock, so lookups never wait for the
    /// driver (see [`RegistryReader`]).
    pub(crate) reader: RegistryReader,
    /// Wakes the driver after a local operation so it sends what the node produced.
    pub(crate) kick: Notify,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) mailboxes: Mutex<HashMap<u64, mpsc::Sender<Envelope>>>,
    /// One slot per live registration guard: what its entry is rebuilt from, and its loss
    /// report (see `guards.rs`).
    pub(crate) guards: crate::guards::Guards,
    pub(crate) mail_tx: mpsc::Sender<Outgoing>,
    pub(crate) stop_tx: Mutex<Option<oneshot::Sender<()>>>,
    pub(crate) driver: Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(crate) stopped: AtomicBool,
    /// Singleton candidacies of this node, by name (see `singleton.rs`).
    pub(crate) candidacies: Mutex<HashMap<Arc<str>, Candidacy>>,
    /// Pending calls, monitors and exit announcements (see `messaging.rs`, `monitor.rs`).
    pub(crate) msg: crate::messaging::MsgState,
}

impl Shared {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Node> {
        self.node
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Node> {
        self.node
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn check_running(&self) -> Result<(), Stopped> {
        if self.stopped.load(Ordering::Acquire) {
            Err(Stopped)
        } else {
            Ok(())
        }
    }

    /// Runs a local operation on the node and wakes the driver to ship its effects.
    pub(crate) fn mutate<R>(&self, f: impl FnOnce(&mut Node, Instant) -> R) -> Result<R, Stopped> {
        self.check_running()?;
        let r = f(&mut self.write(), Instant::now());
        self.kick.notify_one();
        Ok(r)
    }

    pub(crate) fn process_exited(&self, pid: &Pid) {
        lock(&self.mailboxes).remove(&pid.local);
        // A stopped or crashed node announces nothing: its peers learn of its processes' end
        // from its leave or from failure detection (`NodeLeft`/`NodeDown`), never as `Exited`.
        if self.mutate(|n, now| n.process_exited(now, pid)).is_ok() {
            self.local_exit(pid);
        }
    }

    pub(crate) fn deliver_local(&self, pid: &Pid, env: Envelope) -> Result<(), SendError> {
        let tx = lock(&self.mailboxes)
            .get(&pid.local)
            .cloned()
            .ok_or_else(|| SendError::NoSuchProcess(pid.clone()))?;
        tx.try_send(env).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::NoSuchProcess(pid.clone()),
        })
    }

    /// Hands events to subscribers (registration guards hear their losses earlier, in
    /// [`flush`], see `guards.rs`).
    pub(crate) fn dispatch(&self, event: Event) {
        if let Event::NodeDown(node) = &event {
            self.node_gone(node, false);
        }
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
        Event::Synced { .. } => "synced",
        Event::CaughtUp { .. } => "caught_up",
        Event::Lagged { .. } => "lagged",
        _ => "other",
    }
}

/// The driver: the only task that feeds the node inputs from the network and its timers, and
/// the only one that sends what it produces. One `select!` loop; shutdown is checked first.
pub(crate) async fn drive<T: Transport>(
    shared: Arc<Shared>,
    mut transport: T,
    mut mail_rx: mpsc::Receiver<Outgoing>,
    mut stop_rx: oneshot::Receiver<()>,
) {
    // The node's events are swapped into this queue each turn (see `flush`); it keeps its room.
    let mut events = VecDeque::new();
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
                leave(&shared, &mut transport, &mut events).await;
                break;
            }
            incoming = transport.recv() => match incoming {
                Some(msg) => on_incoming(&shared, msg),
                None => break,
            },
            Some(out) = mail_rx.recv() => send_mail(&transport, out),
            () = sleep => shared.write().handle_timeout(Instant::now()),
            () = shared.kick.notified() => {}
        }
        // Mail queued so far leaves before this turn's exit announcements (so a monitor never
        // fires before the last message of the process it watches).
        while let Ok(out) = mail_rx.try_recv() {
            send_mail(&transport, out);
        }
        flush(&shared, &transport, &mut events);
    }
    shared.stopped.store(true, Ordering::Release);
    transport.shutdown().await;
    lock(&shared.mailboxes).clear();
    shared.guards.close();
    shared.msg.clear();
    tracing::info!("pidmesh node stopped");
}

/// Leaves gracefully: releases every entry at once, keeps driving the node through its leave
/// grace period (peers see the releases before the SWIM leave), then lets the packets drain.
async fn leave<T: Transport>(
    shared: &Arc<Shared>,
    transport: &mut T,
    events: &mut VecDeque<Event>,
) {
    // Monitors of this node's processes fire on the peers now, not at the SWIM leave.
    if let Some(bye) = shared.leaving_announcement() {
        let peers: Vec<_> = shared.read().peers().map(|m| m.addr).collect();
        for to in peers {
            send_mail(
                transport,
                Outgoing {
                    to,
                    class: TrafficClass::Mail,
                    payload: bye.clone(),
                },
            );
        }
    }
    shared.write().leave_cluster(Instant::now());
    flush(shared, transport, events);
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
        flush(shared, transport, events);
    }
    // Give the goodbye a moment to leave the sockets.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn send_mail<T: Transport>(transport: &T, out: Outgoing) {
    if let Err(e) = transport.send(out) {
        metrics::counter!("pidmesh.mail.send_errors").increment(1);
        tracing::debug!(error = %e, "mail not sent");
    }
}

fn on_incoming(shared: &Arc<Shared>, msg: Incoming) {
    metrics::counter!("pidmesh.messages.received", "class" => msg.class.as_str()).increment(1);
    if msg.class == TrafficClass::Mail {
        crate::messaging::on_mail(shared, msg);
        return;
    }
    let rejected = shared.write().handle_message(
        Instant::now(),
        msg.from,
        msg.peer_name.as_deref(),
        msg.class,
        &msg.payload,
    );
    if let Some(reason) = rejected {
        // Reasons are static strings from the core (see `pidmesh_proto::reject`).
        metrics::counter!("pidmesh.messages.rejected", "class" => msg.class.as_str(), "reason" => reason)
            .increment(1);
    }
}

/// Sends everything the node produced and dispatches its events. A node stopped by
/// [`crate::Registry::abort`] (a crash) sends nothing more, even from a turn that was under way.
///
/// `events` is empty on entry and on return; the node's events are swapped into it under the
/// node's lock (no copy, however many a burst made), then dispatched after the lock is gone.
fn flush<T: Transport>(shared: &Shared, transport: &T, events: &mut VecDeque<Event>) {
    if shared.stopped.load(Ordering::Acquire) {
        return;
    }
    let (transmits, entries, peers, woken) = {
        let mut node = shared.write();
        let mut t = Vec::new();
        while let Some(x) = node.poll_transmit() {
            t.push(x);
        }
        node.drain_events_into(events);
        // Guards note their losses in the step that takes the events (see `guards.rs`).
        let woken = shared.guards.observe(&node, &shared.id, events.iter());
        (t, node.registry().len(), node.peers().count(), woken)
    };
    woken.into_iter().for_each(std::task::Waker::wake);
    let exits = shared.take_exit_announcements();
    if !exits.is_empty() {
        let peers: Vec<_> = shared.read().peers().map(|m| m.addr).collect();
        for payload in exits {
            for &to in &peers {
                send_mail(
                    transport,
                    Outgoing {
                        to,
                        class: TrafficClass::Mail,
                        payload: payload.clone(),
                    },
                );
            }
        }
    }
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
    // The `pidmesh.events` counter is bumped once per run of events of one kind (a bulk of
    // registrations is one run), not once per event: each bump builds and hashes its key.
    let mut run: Option<(&'static str, u64)> = None;
    while let Some(e) = events.pop_front() {
        let kind = event_kind(&e);
        match &mut run {
            Some((k, n)) if *k == kind => *n += 1,
            _ => {
                if let Some((k, n)) = run.replace((kind, 1)) {
                    metrics::counter!("pidmesh.events", "kind" => k).increment(n);
                }
            }
        }
        shared.dispatch(e);
    }
    if let Some((k, n)) = run {
        metrics::counter!("pidmesh.events", "kind" => k).increment(n);
    }
    metrics::gauge!("pidmesh.entries").set(entries as f64);
    metrics::gauge!("pidmesh.peers").set(peers as f64);
}

#[cfg(test)]
mod tests {
    /// A crash ([`Registry::abort`]) ends the node's processes without a word: the mailboxes
    /// it drops, and any dropped after it, queue no `Exited` announcement that a driver turn
    /// still under way could send, so peers' monitors see `NodeDown`.
    #[tokio::test]
    async fn a_crashed_node_queues_no_exit_announcement() {
        let regs = crate::test_support::two_node_cluster(0xab07_0001).await;
        let (_kept, kept_box) = regs[0].spawn_mailbox().expect("running");
        let (_dropped, dropped_box) = regs[0].spawn_mailbox().expect("running");
        // A live node announces an exit.
        drop(dropped_box);
        let before = regs[0].shared.take_exit_announcements();
        assert_eq!(before.len(), 1, "a live node announces its process's exit");
        regs[0].abort();
        drop(kept_box);
        let after = regs[0].shared.take_exit_announcements();
        assert!(
            after.is_empty(),
            "a crashed node queued {} exit announcement(s)",
            after.len()
        );
    }
}
