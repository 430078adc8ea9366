//! Errors of the public API: one enum per operation.
//!
//! Each says whether state changed (it never does on error) and separates "this call failed"
//! from "the node has stopped" ([`Stopped`]).

use pidmesh_proto::{Entry, Pid};

/// The registry's node has shut down (or its driver ended); the call did nothing.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("the registry has stopped")]
pub struct Stopped;

/// Why [`crate::Registry::register`] failed. Nothing changed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// The name is empty, longer than 255 bytes, or has control characters.
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    /// The metadata is larger than 4096 bytes.
    #[error("metadata is {0} bytes, over the 4096-byte limit")]
    MetaTooLarge(usize),
    /// The pid is not a live mailbox of this node (only the owner registers its processes).
    #[error("{0} is not a live process of this node")]
    NotLocal(Pid),
    /// The name is held (as far as this node knows) by the attached entry.
    #[error("name is already registered to {}", .0.pid)]
    AlreadyRegistered(Box<Entry>),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
    /// This node already keeps `u32::MAX` live registration guards, the most its guard table
    /// takes.
    #[error("too many live registration guards on this node")]
    TooManyGuards,
}

/// Why [`crate::Registry::join`] failed. Nothing changed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The group name is empty, longer than 255 bytes, or has control characters.
    #[error("invalid group name: {0}")]
    InvalidName(&'static str),
    /// The metadata is larger than 4096 bytes.
    #[error("metadata is {0} bytes, over the 4096-byte limit")]
    MetaTooLarge(usize),
    /// The pid is not a live mailbox of this node.
    #[error("{0} is not a live process of this node")]
    NotLocal(Pid),
    /// The pid is already in the group.
    #[error("{} is already in the group", .0.pid)]
    AlreadyMember(Box<Entry>),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// Why an unregister, leave or metadata update failed. Nothing changed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoveError {
    /// This node holds no such entry for that pid.
    #[error("no such registration")]
    NotFound,
    /// The new metadata is larger than 4096 bytes (metadata updates only).
    #[error("metadata is {0} bytes, over the 4096-byte limit")]
    MetaTooLarge(usize),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// Why [`crate::Registry::send`] failed. The message was not delivered (delivery is at most once:
/// `Ok` means handed to the local mailbox or to the transport, not processed).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The pid is local but its mailbox is gone.
    #[error("no such process: {0}")]
    NoSuchProcess(Pid),
    /// The pid's node is not a live member.
    #[error("node of {0} is not a live member")]
    NodeUnreachable(Pid),
    /// The destination mailbox (or the outgoing queue) is full.
    #[error("mailbox or outgoing queue is full")]
    Full,
    /// The message is larger than the mail limit.
    #[error("message of {0} bytes is too large")]
    TooLarge(usize),
    /// The sending pid given to a `send_from` is not a live process of this node.
    #[error("{0} is not a live process of this node")]
    NotLocal(Pid),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// Why [`crate::Registry::call`] failed. The caller got no reply; the request may or may not
/// have been processed (at most once: for `Timeout`, `NodeDown`, and `NoSuchProcess` when the
/// callee ended while the call waited).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// No live process has that pid (it ended, or its node has no such process), or the
    /// callee ended before it replied (then it may have handled the request).
    #[error("no such process: {0}")]
    NoSuchProcess(Pid),
    /// The pid's node is not a live member, or was declared down or left before it replied.
    #[error("node of {0} is down or unreachable")]
    NodeDown(Pid),
    /// No reply arrived within the timeout. A reply arriving later is dropped and counted.
    #[error("no reply within the timeout")]
    Timeout,
    /// The callee's reply was larger than the mail limit, so it was not sent.
    #[error("the reply is larger than the mail limit")]
    ReplyTooLarge,
    /// The request is larger than the mail limit.
    #[error("request of {0} bytes is too large")]
    TooLarge(usize),
    /// The callee's mailbox, the callee node's waiting room or this node's outgoing queue is full.
    #[error("mailbox or queue is full")]
    Full,
    /// The calling pid given to a `call_from` is not a live process of this node.
    #[error("{0} is not a live process of this node")]
    NotLocal(Pid),
    /// A typed call's reply did not decode as the expected type.
    #[error("reply did not decode: {0}")]
    BadReply(String),
    /// A typed call's request could not be encoded.
    #[error("request did not encode: {0}")]
    Encode(String),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// Why [`crate::Envelope::reply`] failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// The message was not a request (it was sent with `send`, not `call`).
    #[error("the message is not a request")]
    NotARequest,
    /// This request was already answered (only the first reply is sent).
    #[error("the request was already answered")]
    AlreadyReplied,
    /// The reply is larger than the mail limit; the caller is told (`CallError::ReplyTooLarge`).
    #[error("reply of {0} bytes is too large")]
    TooLarge(usize),
    /// The typed reply could not be encoded; the caller is told as for a too-large reply.
    #[error("reply did not encode: {0}")]
    Encode(String),
    /// The caller's node is no longer a live member.
    #[error("the caller's node is unreachable")]
    Unreachable,
    /// This node's outgoing queue is full; the reply was not sent.
    #[error("outgoing queue is full")]
    Full,
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// Why [`crate::RegistryBuilder::start`] failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartError {
    /// No node name was given.
    #[error("a node name is required")]
    MissingName,
    /// The node name is empty, too long or has control characters.
    #[error("invalid node name: {0}")]
    InvalidName(&'static str),
    /// `start` must be called inside a tokio runtime.
    #[error("no tokio runtime is running")]
    NoRuntime,
}

impl From<pidmesh_proto::RegisterError> for RegisterError {
    fn from(e: pidmesh_proto::RegisterError) -> Self {
        use pidmesh_proto::RegisterError as P;
        match e {
            P::InvalidName(s) => Self::InvalidName(s),
            P::MetaTooLarge(n) => Self::MetaTooLarge(n),
            P::NotLocal(p) => Self::NotLocal(p),
            P::AlreadyRegistered(e) => Self::AlreadyRegistered(e),
            P::Stopped => Self::Stopped(Stopped),
        }
    }
}

impl From<pidmesh_proto::JoinError> for JoinError {
    fn from(e: pidmesh_proto::JoinError) -> Self {
        use pidmesh_proto::JoinError as P;
        match e {
            P::InvalidName(s) => Self::InvalidName(s),
            P::MetaTooLarge(n) => Self::MetaTooLarge(n),
            P::NotLocal(p) => Self::NotLocal(p),
            P::AlreadyMember(e) => Self::AlreadyMember(e),
            P::Stopped => Self::Stopped(Stopped),
        }
    }
}

impl From<pidmesh_proto::RemoveError> for RemoveError {
    fn from(e: pidmesh_proto::RemoveError) -> Self {
        use pidmesh_proto::RemoveError as P;
        match e {
            P::NotFound => Self::NotFound,
            P::MetaTooLarge(n) => Self::MetaTooLarge(n),
            P::Stopped => Self::Stopped(Stopped),
        }
    }
}

/// Any error of this crate, for callers that only propagate (`?`): every per-operation error
/// converts into it with `From`. Match on the per-operation enums to handle a case.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// See [`RegisterError`].
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// See [`JoinError`].
    #[error(transparent)]
    Join(#[from] JoinError),
    /// See [`RemoveError`].
    #[error(transparent)]
    Remove(#[from] RemoveError),
    /// See [`SendError`].
    #[error(transparent)]
    Send(#[from] SendError),
    /// See [`CallError`].
    #[error(transparent)]
    Call(#[from] CallError),
    /// See [`ReplyError`].
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// See [`StartError`].
    #[error(transparent)]
    Start(#[from] StartError),
    /// See [`crate::PlacementError`].
    #[error(transparent)]
    Placement(#[from] crate::PlacementError),
    /// See [`crate::GetOrStartError`].
    #[error(transparent)]
    GetOrStart(#[from] crate::GetOrStartError),
    /// See [`crate::SingletonError`].
    #[error(transparent)]
    Singleton(#[from] crate::SingletonError),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}
