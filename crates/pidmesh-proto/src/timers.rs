//! The node's single timer queue: SWIM timers and the node's own, fired in deadline order.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::member::Member;

/// What a timer is for.
#[derive(Debug, Clone)]
pub(crate) enum TimerKind {
    /// A foca timer.
    Swim(foca::Timer<Member>),
    /// Push the pending delta batch.
    Flush,
    /// Run an anti-entropy round.
    Sync,
    /// Announce to unreachable seeds; only the timer of the current generation counts (a
    /// restart of the announcer supersedes the pending one).
    Announce(u64),
    /// Re-evaluate singletons (a claim's takeover delay ends).
    Singleton,
    /// Tell SWIM this node leaves (the grace period after `leave_cluster` ended).
    Leave,
    /// Send the next window of a large reply to a digest.
    SnapshotWindow,
    /// A "down" verdict about a peer we heard from moments ago waited long enough for the
    /// peer to renew its identity (see `node/liveness.rs`).
    DoubtedDown,
    /// A suspicion held by Lifeguard may have reached its deadline (see `node/health.rs`).
    Suspicion,
    /// Start (or retry) a push-pull membership exchange; only the timer of the current
    /// generation counts (see `node/push_pull.rs`).
    PushPull(u64),
    /// Fast reconnection's next probe (see `node/reconnect.rs`).
    Reconnect,
    /// A catch-up survey or fetch may have run out of time (see `node/catchup.rs`).
    CatchUp,
}

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    kind: TimerKind,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Timers ordered by deadline, then by the order they were set (so equal deadlines keep
/// their submission order and foca's timers never fire out of order).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
}

impl Timers {
    pub(crate) fn push(&mut self, at: Instant, kind: TimerKind) {
        self.seq += 1;
        self.heap.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            kind,
        }));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|r| r.0.at)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<TimerKind> {
        if self.heap.peek().is_some_and(|r| r.0.at <= now) {
            self.heap.pop().map(|r| r.0.kind)
        } else {
            None
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
