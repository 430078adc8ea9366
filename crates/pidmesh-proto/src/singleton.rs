//! Singleton election: which node runs the one instance of a named service.
//!
//! The unique name decides the holder. Each candidate node keeps a [`SingletonSlot`] and the
//! node re-evaluates every slot after every input (see `Node::eval_singletons`): claim the
//! name when it is free and the policy allows, run once the claim has been held long enough,
//! stop as soon as the name or the quorum is lost.
//!
//! Status: the election is timing-based. A quorum singleton is safe (never two runners) only
//! while every claim reaches the other claimants within the takeover delay and a cut-off
//! holder notices its lost quorum within it; the simulator finds schedules with heavy loss where
//! two claims made at once both run for a few milliseconds. Quorum-acknowledged claims (a
//! claimant runs only after a quorum of peers reported no competing claim) are the planned fix.

use std::time::Instant;

use pidmesh_crdt::Dot;
use pidmesh_wire::{NodeId, Pid};

/// When a node may run a singleton.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SingletonPolicy {
    /// Run wherever the name can be taken. During a partition each side may run one; on heal
    /// the resolver keeps one and the other is stopped.
    Available,
    /// Run only while this node sees at least this many members (itself included). With a
    /// quorum above half the cluster, two sides of a partition never both run it.
    StaticQuorum(usize),
    /// Run only while this node sees a strict majority of every node it knows of (live or
    /// down, itself included).
    MajorityOfKnown,
}

impl SingletonPolicy {
    /// True for the policies that need a quorum (and so pay the takeover delay).
    pub fn needs_quorum(self) -> bool {
        !matches!(self, Self::Available)
    }
}

/// Why a running singleton was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// Another claim won the name (a conflict after a heal).
    LostName,
    /// This node no longer sees a quorum (or learned it was declared down).
    LostQuorum,
    /// This node is leaving the cluster; it released the name so another node takes over at once.
    Shutdown,
    /// The application withdrew this node's candidacy.
    Withdrawn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not holding the name.
    Idle,
    /// Holding the name, waiting until `run_at` before running (quorum policies).
    Claimed { dot: Dot<NodeId>, run_at: Instant },
    /// Running.
    Running { dot: Dot<NodeId> },
}

/// One singleton this node is a candidate for.
#[derive(Debug, Clone)]
pub(crate) struct SingletonSlot {
    pub(crate) policy: SingletonPolicy,
    /// The process identity that holds the name when this node is the holder.
    pub(crate) pid: Pid,
    pub(crate) phase: Phase,
}
