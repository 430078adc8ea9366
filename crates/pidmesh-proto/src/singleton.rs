//! Singleton election: which node runs the one instance of a named service.
//!
//! The unique name decides the holder. Each candidate node keeps a [`SingletonSlot`] and the
//! node re-evaluates every slot after every input (see `Node::eval_singletons`): claim the
//! name when it is free and the policy allows, run once the claim has been held long enough,
//! stop as soon as the name or the quorum is lost.
//!
//! Quorum policies run a claim only under a **lease** vouched for by a quorum:
//! * the claimant sends its claim to every live peer (`SyncV1::ClaimCheck`, numbered rounds,
//!   repeated while it holds the name); each peer joins it and answers with every claim it
//!   holds under the name (`SyncV1::ClaimAck`). A peer that answers "only yours" *vouches*:
//!   it promises not to vouch for another claim on the name for `lease + lease / 8`, unless it
//!   sees this claim released on purpose first.
//! * the claimant counts a vouch as valid until `lease` after it *sent* the round that got it.
//!   It runs while it (not bound by a promise to another claim) and enough valid vouchers make
//!   a quorum, and stops the moment that is no longer true.
//!
//! Two quorums share a node. That node's promise to the first holder outlives the first
//! holder's use of its vouch by at least `lease / 8`, so a second claimant cannot collect a
//! quorum before the first has stopped, whatever the failure detector and the network do. The
//! assumption left is about clocks and pauses: a node's clock must not run more than 1/8 slower
//! than another's over one lease, and the application must stop its task within `lease / 8` of
//! being told (see docs/singletons.md).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use pidmesh_crdt::Dot;
use pidmesh_wire::{NodeId, Pid};

/// When a node may run a singleton.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum SingletonPolicy {
    /// Run wherever the name can be taken. During a partition each side may run one; on heal
    /// the resolver keeps one and the other is stopped.
    Available,
    /// Run only while this node sees at least this many members (itself included). With a
    /// quorum above half the cluster, two sides of a partition never both run it.
    StaticQuorum(usize),
    /// Run only while this node sees a strict majority of every node it knows of (live or
    /// down, itself included; unmet seed, discovered and remembered addresses count). Safe
    /// across restarts only when a restarted node gets back what it remembered
    /// ([`crate::Node::remember`], the facade's peer cache); without that, restarted nodes that
    /// meet only each other may count a majority of a smaller cluster (docs/singletons.md).
    MajorityOfKnown,
}

impl SingletonPolicy {
    /// True for the policies that need a quorum (and so run under a lease).
    pub fn needs_quorum(self) -> bool {
        !matches!(self, Self::Available)
    }
}

/// Why a running singleton was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
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
    /// Holding the name with `dot`; `running` once the policy allowed it to start.
    Held {
        dot: Dot<NodeId>,
        running: bool,
        lease: Lease,
    },
}

/// How many recent check rounds a claimant remembers; an answer to an older round is ignored.
pub(crate) const ROUNDS_KEPT: usize = 8;

/// The vouches a claim under a quorum policy collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    /// Peers that vouched for the claim, with the instant their vouch stops counting.
    pub(crate) votes: BTreeMap<NodeId, Instant>,
    /// The largest membership (live or down, itself included) a voucher reported; a
    /// `MajorityOfKnown` quorum is a majority of the largest view seen.
    pub(crate) known: usize,
    /// Recent check rounds: number and the instant they were sent.
    pub(crate) rounds: VecDeque<(u64, Instant)>,
    /// When the next round of checks is due.
    pub(crate) next_round: Instant,
    /// The singleton timer already scheduled for this claim, if any.
    pub(crate) wake: Option<Instant>,
}

impl Lease {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            votes: BTreeMap::new(),
            known: 0,
            rounds: VecDeque::new(),
            next_round: now,
            wake: None,
        }
    }

    /// When the vouches sent in `round` stop counting, if the round is still remembered.
    pub(crate) fn sent_at(&self, round: u64) -> Option<Instant> {
        self.rounds
            .iter()
            .find(|(r, _)| *r == round)
            .map(|&(_, at)| at)
    }
}

/// One singleton this node is a candidate for.
#[derive(Debug, Clone)]
pub(crate) struct SingletonSlot {
    pub(crate) policy: SingletonPolicy,
    /// The process identity that holds the name when this node is the holder.
    pub(crate) pid: Pid,
    pub(crate) phase: Phase,
    /// Application metadata carried by the claim (after the running marker once it runs).
    pub(crate) meta: bytes::Bytes,
    /// A strict registration (see `Node::register_strict`) rather than a singleton candidacy:
    /// `pid` is the application's, and once a run has ended the slot never claims again.
    pub(crate) strict: bool,
    /// Set, with the reason, when a strict registration's run ended: it stays idle until removed.
    pub(crate) ended: Option<StopReason>,
}

/// A peer's answer to one of our claim checks (`SyncV1::ClaimAck`).
#[derive(Debug)]
pub(crate) struct ClaimAnswer {
    pub(crate) from: NodeId,
    pub(crate) round: u64,
    pub(crate) known: usize,
    pub(crate) holders: Vec<(NodeId, u64)>,
}
