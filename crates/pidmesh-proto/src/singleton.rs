//! Singleton election: which node runs the one instance of a named service.
//!
//! The unique name decides the holder. Each candidate node keeps a [`SingletonSlot`] and the
//! node re-evaluates every slot after every input (see `Node::eval_singletons`): claim the
//! name when it is free and the policy allows, run once the claim has been held long enough,
//! stop as soon as the name or the quorum is lost.
//!
//! Quorum policies add two guards before a claim runs:
//! * **acknowledged claims**: the claimant sends its claim to every live peer
//!   (`SyncV1::ClaimCheck`); each joins it and answers with every entry it holds under the name
//!   (`SyncV1::ClaimAck`). The claim runs only when a quorum (the claimant included) answered
//!   "only your claim". Two quorums share a node, and that node cannot have answered "only
//!   yours" to both claimants unless the first claim was gone by then, so two claims made at
//!   the same time never both run.
//! * **takeover delay**: when the name became free because its holder's node was declared down
//!   (or this node never saw a holder), the claimant also waits `Config::takeover_delay`: a
//!   holder cut off on the minority side keeps running until its own failure detector shows it
//!   lost its quorum, and the delay must cover that. This part rests on a timing assumption.

use std::collections::BTreeSet;
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
    /// Holding the name; runs once `run_at` has passed and enough peers acknowledged an
    /// uncontested claim (quorum policies).
    Claimed {
        dot: Dot<NodeId>,
        run_at: Instant,
        /// Peers that reported holding this claim and no other under the name.
        acks: BTreeSet<NodeId>,
        /// When to ask the peers that have not acknowledged yet again.
        next_check: Instant,
    },
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
    /// True unless the last time the name became free this node saw its holder release it on
    /// purpose (then that holder had stopped already and there is no takeover delay to pay).
    pub(crate) wait_before_run: bool,
}
