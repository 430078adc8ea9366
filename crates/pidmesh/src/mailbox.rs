//! Process identities and their inboxes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use pidmesh_proto::{NodeId, Pid};
use tokio::sync::mpsc;

use crate::driver::Shared;
use crate::error::ReplyError;

/// Where the answer to a request goes: the caller's node and request id.
#[derive(Debug, Clone)]
pub(crate) struct ReplyTo {
    pub(crate) shared: Weak<Shared>,
    /// The calling node, and the calling process (local number 0 for a bare registry).
    pub(crate) caller: Pid,
    pub(crate) id: u64,
    /// The answering process (this envelope's destination), sent as the reply's sender.
    pub(crate) callee: u64,
    /// Set by the first reply; clones of the envelope share it.
    pub(crate) replied: Arc<AtomicBool>,
}

/// One message delivered to a mailbox.
///
/// A request (sent with [`crate::Registry::call`]) is answered with [`Envelope::reply`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Envelope {
    /// The node it came from (this node for local sends).
    pub from: NodeId,
    /// The sending process, or `None` when it was sent from a bare registry handle
    /// ([`crate::Registry::send`], [`crate::Registry::call`]) or by a node of wire version 1.
    pub sender: Option<Pid>,
    /// The application's bytes.
    pub body: Bytes,
    pub(crate) reply: Option<ReplyTo>,
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.from == other.from
            && self.sender == other.sender
            && self.body == other.body
            && self.reply.as_ref().map(|r| (&r.caller, r.id))
                == other.reply.as_ref().map(|r| (&r.caller, r.id))
    }
}
impl Eq for Envelope {}

impl Envelope {
    pub(crate) fn cast(from: NodeId, sender: Option<Pid>, body: Bytes) -> Self {
        Self {
            from,
            sender,
            body,
            reply: None,
        }
    }

    /// True if the sender waits for an answer ([`Envelope::reply`]).
    pub fn is_request(&self) -> bool {
        self.reply.is_some()
    }

    /// Answers a request. Only the first answer counts; the caller receives it unless its call
    /// has already timed out (then the caller's node drops it and counts it as late).
    ///
    /// # Errors
    /// See [`ReplyError`]. A reply over the mail limit is not sent; the caller's call fails with
    /// [`crate::CallError::ReplyTooLarge`] instead of waiting for its timeout.
    pub fn reply(&self, body: impl Into<Bytes>) -> Result<(), ReplyError> {
        let r = self.reply.as_ref().ok_or(ReplyError::NotARequest)?;
        if r.replied.swap(true, Ordering::AcqRel) {
            return Err(ReplyError::AlreadyReplied);
        }
        let shared = r
            .shared
            .upgrade()
            .ok_or(ReplyError::Stopped(crate::Stopped))?;
        crate::messaging::send_reply(&shared, r, body.into())
    }
}

/// The inbox of a process. Dropping it ends the process: every registration and group
/// membership of its pid goes away (reason `ProcessExited`), as when a BEAM process exits, and
/// its monitors fire with [`crate::DownReason::Exited`].
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

    /// How many more messages fit before the mailbox is full.
    pub fn room(&self) -> usize {
        self.rx.capacity()
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.process_exited(&self.pid);
        }
    }
}
