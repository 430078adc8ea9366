//! One error enum per operation. Every variant says whether state changed: none of them does.

use pidmesh_wire::Pid;

use crate::entry::Entry;

/// Why `register` failed. Nothing changed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// The name is empty, too long or has control characters.
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    /// The metadata is larger than [`pidmesh_wire::MAX_META_LEN`].
    #[error("metadata is {0} bytes, over the limit")]
    MetaTooLarge(usize),
    /// The pid is not a live process of this node (only the owner registers its pids).
    #[error("{0} is not a live process of this node")]
    NotLocal(Pid),
    /// The name is taken (as far as this node knows); the current winner is attached.
    #[error("name is already registered to {}", .0.pid)]
    AlreadyRegistered(Box<Entry>),
    /// The node has left the cluster.
    #[error("the node has left the cluster")]
    Stopped,
}

/// Why `join` (a group) failed. Nothing changed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// The group name is empty, too long or has control characters.
    #[error("invalid group name: {0}")]
    InvalidName(&'static str),
    /// The metadata is larger than [`pidmesh_wire::MAX_META_LEN`].
    #[error("metadata is {0} bytes, over the limit")]
    MetaTooLarge(usize),
    /// The pid is not a live process of this node.
    #[error("{0} is not a live process of this node")]
    NotLocal(Pid),
    /// The pid is already in the group (use a metadata update to change its metadata).
    #[error("{} is already in the group", .0.pid)]
    AlreadyMember(Box<Entry>),
    /// The node has left the cluster.
    #[error("the node has left the cluster")]
    Stopped,
}

/// Why `unregister`, `leave` or a metadata update failed. Nothing changed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RemoveError {
    /// This pid holds no entry under that key on this node.
    #[error("no such registration")]
    NotFound,
    /// The metadata is larger than [`pidmesh_wire::MAX_META_LEN`] (metadata updates only).
    #[error("metadata is {0} bytes, over the limit")]
    MetaTooLarge(usize),
    /// The node has left the cluster.
    #[error("the node has left the cluster")]
    Stopped,
}
