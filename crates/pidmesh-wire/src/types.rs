//! The vocabulary shared by every layer: node and process identities, keys, clocks.

use std::fmt;

use bytes::Bytes;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// A node's identity for one life: a stable name plus an incarnation chosen at every start.
///
/// Entries of a previous life are never confused with the new one, because every dot and every
/// pid carries the incarnation. Ordering is by name, then incarnation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    /// The node's stable name (also the DNS name in its TLS certificate). Names of up to 24
    /// bytes are stored inline, so cloning a `NodeId` (every entry handed out carries it twice)
    /// copies bytes instead of touching a shared reference count; it encodes as a plain string.
    pub name: CompactString,
    /// Distinguishes lives of the same name; larger is newer (the runtime uses the start time).
    pub incarnation: u64,
}

impl NodeId {
    /// Makes a node id.
    pub fn new(name: impl AsRef<str>, incarnation: u64) -> Self {
        Self {
            name: CompactString::new(name),
            incarnation,
        }
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.incarnation)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.incarnation)
    }
}

/// A cluster-unique process id: the hosting node's life plus a number local to it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pid {
    /// The node that hosts the process.
    pub node: NodeId,
    /// Unique among the processes of that node's life.
    pub local: u64,
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}.{}>", self.node, self.local)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A hybrid logical clock reading: physical milliseconds plus a logical counter.
///
/// Readings from different nodes are comparable (unlike monotonic clocks); ties between nodes
/// are broken by the caller with the node id.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch, as the issuing node saw it (never decreasing).
    pub wall_ms: u64,
    /// Orders events within one millisecond.
    pub logical: u32,
}

/// Whether a key is a unique name or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KeyKind {
    /// At most one winner cluster-wide once converged.
    Name,
    /// Any number of members, no conflicts.
    Group,
}

/// A registry key: a unique name or a group name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// Name or group.
    pub kind: KeyKind,
    /// The UTF-8 name (see [`crate::MAX_NAME_LEN`]); for a key of a named scope, the encoding
    /// of [`crate::scoped_name`]. Names of up to 24 bytes are stored inline (no heap
    /// allocation); it encodes on the wire as a plain string.
    pub name: CompactString,
}

impl Key {
    /// A unique-name key.
    pub fn name(name: impl AsRef<str>) -> Self {
        Self {
            kind: KeyKind::Name,
            name: CompactString::new(name),
        }
    }
    /// A group key.
    pub fn group(name: impl AsRef<str>) -> Self {
        Self {
            kind: KeyKind::Group,
            name: CompactString::new(name),
        }
    }
    /// The key's scope: `None` for the default scope.
    pub fn scope(&self) -> Option<&str> {
        crate::split_scoped(&self.name).0
    }
    /// The name within the key's scope (the whole name in the default scope).
    pub fn local_name(&self) -> &str {
        crate::split_scoped(&self.name).1
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            KeyKind::Name => "name",
            KeyKind::Group => "group",
        };
        match crate::split_scoped(&self.name) {
            (Some(scope), name) => write!(f, "{kind}:{scope}:{name}"),
            (None, name) => write!(f, "{kind}:{name}"),
        }
    }
}

/// What the registry stores per entry (the pid's node is the dot's origin, so only its local part is kept).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Value {
    /// [`Pid::local`] of the registered process.
    pub pid: u64,
    /// Application metadata (see [`crate::MAX_META_LEN`]).
    #[serde(deserialize_with = "crate::meta::deserialize")]
    pub meta: Bytes,
    /// When the registration was made, by the owner's hybrid logical clock.
    pub at: Hlc,
}
