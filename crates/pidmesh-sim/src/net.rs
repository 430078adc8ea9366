//! The virtual network: latency, loss, duplication, reordering and partitions.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pidmesh_proto::TrafficClass;

/// Per-message behaviour of every link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Shortest one-way delay.
    pub min_latency: Duration,
    /// Longest one-way delay; each message draws uniformly in between, so messages reorder.
    pub max_latency: Duration,
    /// Probability that a message is lost (every class: reliable classes lose messages when a
    /// connection breaks, and anti-entropy must repair that).
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            min_latency: Duration::from_micros(200),
            max_latency: Duration::from_millis(2),
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// A message on its way.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) at: Instant,
    pub(crate) seq: u64,
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) class: TrafficClass,
    pub(crate) payload: Bytes,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Messages in flight and the current faults.
#[derive(Debug, Default)]
pub(crate) struct Network {
    pub(crate) queue: BinaryHeap<Reverse<InFlight>>,
    pub(crate) seq: u64,
    /// Directed links that drop everything: (from, to).
    pub(crate) cut: BTreeSet<(usize, usize)>,
}

impl Network {
    pub(crate) fn blocked(&self, from: usize, to: usize) -> bool {
        self.cut.contains(&(from, to))
    }

    pub(crate) fn push(
        &mut self,
        at: Instant,
        from: usize,
        to: usize,
        class: TrafficClass,
        payload: Bytes,
    ) {
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at,
            seq: self.seq,
            from,
            to,
            class,
            payload,
        }));
    }

    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|r| r.0.at)
    }

    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<InFlight> {
        if self.queue.peek().is_some_and(|r| r.0.at <= now) {
            self.queue.pop().map(|r| r.0)
        } else {
            None
        }
    }
}
