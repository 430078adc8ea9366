//! Process identities and their inboxes.

use std::sync::Weak;

use bytes::Bytes;
use pidmesh_proto::{NodeId, Pid};
use tokio::sync::mpsc;

use crate::driver::Shared;

/// One message delivered to a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The node it came from (this node for local sends).
    pub from: NodeId,
    /// The application's bytes.
    pub body: Bytes,
}

/// The inbox of a process. Dropping it ends the process: every registration and group
/// membership of its pid goes away (reason `ProcessExited`), as when a BEAM process exits.
#[derive(Debug)]
pub struct Mailbox {
    pub(crate) pid: Pid,
    pub(crate) rx: mpsc::Receiver<Envelope>,
    pub(crate) shared: Weak<Shared>,
}

impl Mailbox {
    /// The pid this mailbox belongs to.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// Waits for the next message; `None` once the registry has stopped.
    ///
    /// Cancel-safe: a message is never lost by dropping the future.
    pub async fn recv(&mut self) -> Option<Envelope> {
        self.rx.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Envelope> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.process_exited(&self.pid);
        }
    }
}
