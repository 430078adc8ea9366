//! Monitors: a future that resolves once, with a reason, when a process ends.
//!
//! A monitor costs no network traffic of its own. It is armed in this node's memory and fired by
//! what the node learns anyway:
//! * a local process ends when its [`crate::Mailbox`] is dropped (a singleton's pid, when its
//!   run stops);
//! * a node announces the exits of its processes once per exit to every peer, batched per driver
//!   turn ([`pidmesh_wire::MailV2::Exited`]), whether or not anyone monitors them;
//! * a node that leaves gracefully announces it ([`pidmesh_wire::MailV2::Leaving`]) before it
//!   leaves SWIM;
//! * failure detection declares a node down (the `NodeDown` event).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};

use pidmesh_proto::{NodeId, Pid};
use tokio::sync::oneshot;

use crate::driver::{Shared, lock};
use crate::registry::Registry;

/// Why a monitored process is considered gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DownReason {
    /// The process ended: its mailbox was dropped.
    Exited,
    /// Its node was declared down by failure detection (crashed, cut off or replaced by a
    /// newer life), or was not a live member when monitoring started.
    NodeDown,
    /// Its node left the cluster gracefully.
    NodeLeft,
    /// The process had already ended when monitoring started.
    NoProc,
    /// This node stopped, so the monitor can no longer be served.
    Stopped,
}

type Watchers = HashMap<u64, oneshot::Sender<DownReason>>;

/// Armed monitors: node → local pid → monitor id → waiter.
#[derive(Default)]
pub(crate) struct MonitorTable {
    by_node: HashMap<NodeId, HashMap<u64, Watchers>>,
    next: u64,
    len: usize,
}

impl MonitorTable {
    fn arm(&mut self, pid: &Pid) -> (u64, oneshot::Receiver<DownReason>) {
        self.next += 1;
        let (tx, rx) = oneshot::channel();
        self.by_node
            .entry(pid.node.clone())
            .or_default()
            .entry(pid.local)
            .or_default()
            .insert(self.next, tx);
        self.len += 1;
        (self.next, rx)
    }

    fn disarm(&mut self, pid: &Pid, id: u64) {
        let Some(locals) = self.by_node.get_mut(&pid.node) else {
            return;
        };
        if let Some(w) = locals.get_mut(&pid.local) {
            if w.remove(&id).is_some() {
                self.len -= 1;
            }
            if w.is_empty() {
                locals.remove(&pid.local);
            }
        }
        if locals.is_empty() {
            self.by_node.remove(&pid.node);
        }
    }

    /// Fires every monitor of `pid`.
    pub(crate) fn fire(&mut self, pid: &Pid, reason: DownReason) {
        let Some(locals) = self.by_node.get_mut(&pid.node) else {
            return;
        };
        if let Some(w) = locals.remove(&pid.local) {
            self.len -= w.len();
            for (_, tx) in w {
                let _ = tx.send(reason);
            }
        }
        if locals.is_empty() {
            self.by_node.remove(&pid.node);
        }
    }

    /// Fires every monitor of a process of `node`.
    pub(crate) fn fire_node(&mut self, node: &NodeId, reason: DownReason) {
        for (_, w) in self.by_node.remove(node).unwrap_or_default() {
            self.len -= w.len();
            for (_, tx) in w {
                let _ = tx.send(reason);
            }
        }
    }

    /// Drops every monitor (they resolve with [`DownReason::Stopped`]).
    pub(crate) fn clear(&mut self) {
        self.by_node.clear();
        self.len = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// A monitor of one process: a future that resolves once with the [`DownReason`].
///
/// Dropping it removes the monitor (demonitor). Created by [`Registry::monitor`].
#[derive(Debug)]
#[must_use = "a monitor does nothing unless awaited; dropping it removes it"]
pub struct Monitor {
    pid: Pid,
    id: u64,
    rx: oneshot::Receiver<DownReason>,
    shared: Weak<Shared>,
    done: bool,
}

impl Monitor {
    /// The monitored process.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// The reason if the monitor has fired already, without waiting.
    pub fn try_reason(&mut self) -> Option<DownReason> {
        match self.rx.try_recv() {
            Ok(r) => {
                self.done = true;
                Some(r)
            }
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => {
                self.done = true;
                Some(DownReason::Stopped)
            }
        }
    }

    fn resolved(pid: &Pid, reason: DownReason) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(reason);
        Self {
            pid: pid.clone(),
            id: 0,
            rx,
            shared: Weak::new(),
            done: true,
        }
    }
}

impl Future for Monitor {
    type Output = DownReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DownReason> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(r) => {
                self.done = true;
                Poll::Ready(r.unwrap_or(DownReason::Stopped))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(shared) = self.shared.upgrade() {
            lock(&shared.msg.monitors).disarm(&self.pid, self.id);
        }
    }
}

impl Registry {
    /// Monitors `pid`, local or remote: the returned future resolves once, when the process
    /// ends ([`DownReason::Exited`]), its node is declared down ([`DownReason::NodeDown`]) or
    /// leaves ([`DownReason::NodeLeft`]). It resolves at once with [`DownReason::NoProc`] when
    /// the process is already gone: exactly for local pids; for remote pids when this node has
    /// heard its exit announcement (the last 4096 exits per node are remembered); and with
    /// `NodeDown`/`NodeLeft` when the pid's node is not a live member.
    ///
    /// Remote monitors send nothing: they fire on the exit announcements every node makes
    /// once per process exit, on graceful-leave announcements, and on failure detection. A
    /// remote process whose exit announcement is lost with its node is reported as
    /// `NodeDown`. Dropping the monitor removes it.
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
    /// use pidmesh::DownReason;
    /// let (pid, inbox) = registry.spawn_mailbox()?;
    /// let monitor = registry.monitor(&pid);
    /// drop(inbox); // the process ends
    /// assert_eq!(monitor.await, DownReason::Exited);
    /// assert_eq!(registry.monitor(&pid).await, DownReason::NoProc); // already gone
    /// # registry.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn monitor(&self, pid: &Pid) -> Monitor {
        let shared = &self.shared;
        if shared.check_running().is_err() {
            return Monitor::resolved(pid, DownReason::Stopped);
        }
        let mut table = lock(&shared.msg.monitors);
        let gone = if pid.node == shared.id {
            (!lock(&shared.mailboxes).contains_key(&pid.local)).then_some(DownReason::NoProc)
        } else if lock(&shared.msg.departed).contains(&pid.node) {
            Some(DownReason::NodeLeft)
        } else if shared.peer_addr(&pid.node).is_none() {
            Some(DownReason::NodeDown)
        } else if shared.msg.recently_exited(pid) {
            Some(DownReason::NoProc)
        } else {
            None
        };
        if let Some(reason) = gone {
            return Monitor::resolved(pid, reason);
        }
        let (id, rx) = table.arm(pid);
        Monitor {
            pid: pid.clone(),
            id,
            rx,
            shared: std::sync::Arc::downgrade(shared),
            done: false,
        }
    }
}
