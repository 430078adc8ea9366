//! What the registry shows and tells: entries and events.

use bytes::Bytes;
use pidmesh_crdt::Dot;
use pidmesh_wire::{Hlc, Key, NodeId, Pid};

/// One registration: a pid under a name or in a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The name or group.
    pub key: Key,
    /// The registered process.
    pub pid: Pid,
    /// Application metadata.
    pub meta: Bytes,
    /// When it was registered, by the owner's hybrid logical clock.
    pub registered_at: Hlc,
    /// The unique tag of this registration (origin = `pid.node`).
    pub dot: Dot<NodeId>,
}

impl Entry {
    /// The canonical order every node sorts conflicting entries by: registration time, then
    /// node id, then sequence number. It is total and the same on every node.
    pub fn canonical_cmp(&self, other: &Entry) -> std::cmp::Ordering {
        (self.registered_at, &self.dot.actor, self.dot.seq).cmp(&(
            other.registered_at,
            &other.dot.actor,
            other.dot.seq,
        ))
    }

    /// The application's metadata: [`Entry::meta`] without the running-claim marker that a
    /// running singleton or a strict registration carries (see
    /// [`crate::SINGLETON_RUNNING_META`]). What a custom resolver should read.
    pub fn app_meta(&self) -> &[u8] {
        self.meta
            .strip_prefix(crate::resolver::SINGLETON_RUNNING_META)
            .unwrap_or(&self.meta)
    }

    /// True when this entry is the claim of a running singleton or a held strict registration.
    pub fn is_running_claim(&self) -> bool {
        crate::resolver::is_running_claim(&self.meta)
    }
}

/// Why an entry went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Reason {
    /// Unregistered or left on purpose (also how a remote removal without a known cause is reported).
    Normal,
    /// Its process exited (its mailbox was dropped).
    ProcessExited,
    /// Its node was declared down, restarted, or left the cluster.
    NodeDown,
    /// It lost a conflict over a unique name.
    Conflict,
}

/// Something subscribers are told about. Every node emits events for what it observes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// An entry became visible on this node.
    Registered(Entry),
    /// An entry went away on this node.
    Unregistered {
        /// The entry as it was.
        entry: Entry,
        /// Why.
        reason: Reason,
    },
    /// An entry's metadata changed.
    MetaUpdated {
        /// The entry with its new metadata (and new dot).
        entry: Entry,
        /// The metadata before.
        previous: Bytes,
    },
    /// A unique name had more than one entry and the resolver decided.
    ConflictResolved {
        /// The name.
        key: Key,
        /// The entry that keeps the name (`None` when the resolver freed it).
        winner: Option<Entry>,
        /// The entries that lose it; each is removed by its own node.
        losers: Vec<Entry>,
    },
    /// A custom resolver panicked or answered nonsense; keep-oldest decided instead.
    ResolverFailed {
        /// The name.
        key: Key,
        /// What went wrong.
        reason: String,
    },
    /// This node now runs the singleton `name` (it holds the name and the policy allows it).
    SingletonStarted {
        /// The singleton's name.
        name: String,
        /// The entry by which this node holds the name.
        entry: Entry,
    },
    /// This node must stop running the singleton `name`.
    SingletonStopped {
        /// The singleton's name.
        name: String,
        /// Why.
        reason: crate::singleton::StopReason,
    },
    /// `count` entries of `origin` became visible at once: a slice of this node's catch-up
    /// after it joined, joined in one pass. They are not reported one by one as
    /// [`Event::Registered`]; a subscriber that needs them reads the registry (`members_of`,
    /// `list_prefix`, `lookup`). Subscriptions filtered by prefix receive it unfiltered.
    Synced {
        /// Whose entries.
        origin: NodeId,
        /// How many became visible.
        count: usize,
    },
    /// This node holds everything the members it met when it joined reported holding (see
    /// `Node::is_caught_up`; through the `pidmesh` facade, `Registry::is_caught_up` and
    /// `Registry::caught_up`). Emitted once per node life.
    CaughtUp {
        /// Live entries held at that moment.
        entries: usize,
    },
    /// A node joined (or came back).
    NodeUp(NodeId),
    /// A node was declared down, left, or was replaced by a newer life of itself.
    NodeDown(NodeId),
    /// This subscriber fell behind and `missed` events were skipped (the node never emits this;
    /// subscriptions yield it in place of the events they lost).
    Lagged {
        /// How many events were skipped.
        missed: u64,
    },
}
