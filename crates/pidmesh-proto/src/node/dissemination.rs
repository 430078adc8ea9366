//! Dissemination: batching this node's deltas, pushing them to live peers, and applying peers' deltas.

use std::collections::VecDeque;
use std::time::Instant;

use pidmesh_crdt::{Delta, Dot, DotSet, Slot};
use pidmesh_wire::{
    self as wire, DeltaBatch, DeltaMsg, Key, KeyKind, NodeId, OriginDelta, Pid, TrafficClass,
    Value, WireEntry,
};

use crate::entry::Entry;
use crate::timers::TimerKind;

use super::{Node, Transmit};

/// The most adds a new pending batch reserves room for (about 1 MiB of `(Key, Slot)`), whatever
/// the last batch carried.
const MAX_BATCH_HINT: usize = 8192;

/// A generous upper bound of an entry's encoded size, for cutting messages.
pub(super) fn entry_budget(e: &WireEntry) -> usize {
    40 + e.key.name.len() + e.value.meta.len()
}

/// About the encoded size of a delta message: a little more than its entries' usual encoding
/// (varint sequence number, kind, pid and clock reading: 12 to 20 bytes besides the name and
/// the metadata), so the encoder's buffer is allocated once.
pub(super) fn encoded_size_hint(msg: &DeltaMsg) -> usize {
    let DeltaMsg::V1(b) = msg;
    let d = &b.delta;
    let entries: usize = d
        .adds
        .iter()
        .chain(&d.released)
        .map(|e| 20 + e.key.name.len() + e.value.meta.len())
        .sum();
    64 + b.origin.name.len() + 20 * d.seen.len() + entries
}

/// Cuts one origin's delta into pieces whose encoding stays under `budget` bytes.
/// `items` are `(released?, entry)` sorted by sequence number and lying within `seen`.
/// `removals` is the origin's log of `(removing dot, removed dot)`, sorted by removing dot (see
/// `Node::log_removal`; may be empty): each removed dot of `seen` travels in the piece of the
/// dot that removed it (see [`keep_removals_whole`]).
pub(super) fn split_origin_delta(
    seen: &DotSet,
    items: impl Iterator<Item = (bool, WireEntry)>,
    budget: usize,
    removals: &VecDeque<(u64, u64)>,
) -> Vec<OriginDelta> {
    let mut out = Vec::new();
    // A piece holds at most this many entries (each costs at least 40 budget bytes): room for
    // them is made once per piece instead of growing the vector entry by entry.
    let most = budget / 40 + 1;
    let mut left = items.size_hint().0;
    let mut cur = OriginDelta::default();
    cur.adds.reserve(left.min(most));
    let mut size = 0;
    let mut start = 1;
    let mut last_seq = 0;
    // The last sequence number of each piece but the last.
    let mut ends = Vec::new();
    for (released, e) in items {
        let b = entry_budget(&e);
        if last_seq != 0 && size + b > budget {
            cur.seen = seen.clipped(start, last_seq).ranges().to_vec();
            out.push(std::mem::take(&mut cur));
            cur.adds.reserve(left.min(most));
            ends.push(last_seq);
            start = last_seq + 1;
            size = 0;
        }
        size += b;
        last_seq = e.seq;
        left = left.saturating_sub(1);
        if released {
            cur.released.push(e)
        } else {
            cur.adds.push(e)
        }
    }
    let rest = seen.clipped(start, u64::MAX);
    if !cur.adds.is_empty() || !cur.released.is_empty() || !rest.is_empty() || out.is_empty() {
        cur.seen = rest.ranges().to_vec();
        out.push(cur);
    }
    if out.len() > 1 {
        keep_removals_whole(&mut out, &ends, seen, removals, budget);
    }
    out
}

/// Moves each removed dot of `seen` (with its released entry, if any) into the piece of the dot
/// that removed it, when they fell in different pieces (`ends`: the last sequence number of each
/// piece but the last). A replacement's new entry and the removal of the old one then arrive,
/// or get lost, together: a receiver never holds a removal without what it removed gone (or
/// the reverse), which no removal in flight would explain to the next anti-entropy answer and
/// which would cost a whole-row resend. Each piece takes in at most `budget / 2` bytes of moved
/// dots (each at most one range of two varints), so pieces stay well under the message limit;
/// dots past that stay where they were.
fn keep_removals_whole(
    pieces: &mut [OriginDelta],
    ends: &[u64],
    seen: &DotSet,
    removals: &VecDeque<(u64, u64)>,
    budget: usize,
) {
    /// Worst case of one moved dot in a piece's `seen`: a range of two 10-byte varints.
    const MOVED_DOT_BYTES: usize = 20;
    let Some(&(first, _)) = seen.ranges().first() else {
        return;
    };
    let last = seen.max();
    let piece_of = |seq: u64| ends.partition_point(|&end| end < seq);
    let mut out: Vec<DotSet> = vec![DotSet::new(); pieces.len()];
    let mut into: Vec<DotSet> = vec![DotSet::new(); pieces.len()];
    let mut room = vec![budget / 2 / MOVED_DOT_BYTES; pieces.len()];
    let from = removals.partition_point(|&(r, _)| r < first);
    for &(by, removed) in removals.range(from..).take_while(|&&(r, _)| r <= last) {
        if !seen.contains(by) || !seen.contains(removed) {
            continue;
        }
        let (to, at) = (piece_of(by), piece_of(removed));
        if to == at || room[to] == 0 {
            continue;
        }
        room[to] -= 1;
        out[at].insert(removed);
        into[to].insert(removed);
    }
    for (k, piece) in pieces.iter_mut().enumerate() {
        if out[k].is_empty() && into[k].is_empty() {
            continue;
        }
        let mut s = DotSet::from_ranges(piece.seen.iter().copied()).difference(&out[k]);
        s.union_with(&into[k]);
        piece.seen = s.ranges().to_vec();
    }
    // Released entries follow their dot.
    let mut moving: Vec<(usize, WireEntry)> = Vec::new();
    for (k, piece) in pieces.iter_mut().enumerate() {
        if out[k].is_empty() {
            continue;
        }
        let (go, stay): (Vec<WireEntry>, Vec<WireEntry>) = std::mem::take(&mut piece.released)
            .into_iter()
            .partition(|e| out[k].contains(e.seq));
        piece.released = stay;
        moving.extend(go.into_iter().map(|e| (k, e)));
    }
    for (_, e) in moving {
        if let Some(k) = into.iter().position(|d| d.contains(e.seq)) {
            let list = &mut pieces[k].released;
            let at = list.partition_point(|x| x.seq < e.seq);
            list.insert(at, e);
        }
    }
}

/// Merges two lists of entries into one sorted by sequence number, tagging released ones.
/// Adds already in order with nothing released (a batch of this node's own adds) are only
/// tagged, not sorted.
pub(super) fn tagged<I>(
    adds: I,
    released: Vec<WireEntry>,
) -> impl Iterator<Item = (bool, WireEntry)>
where
    I: IntoIterator<Item = WireEntry>,
    I::IntoIter: ExactSizeIterator,
{
    let adds = adds.into_iter();
    let mut all: Vec<(bool, WireEntry)> = Vec::with_capacity(adds.len() + released.len());
    all.extend(adds.map(|e| (false, e)));
    let in_order = released.is_empty() && all.is_sorted_by_key(|(_, e)| e.seq);
    all.extend(released.into_iter().map(|e| (true, e)));
    if !in_order {
        all.sort_by_key(|(_, e)| e.seq);
    }
    all.into_iter()
}

impl Node {
    /// Checks that `origin` may speak for its own dots here: a live peer whose proven name matches.
    pub(super) fn authorize(
        &self,
        origin: &NodeId,
        peer_name: Option<&str>,
    ) -> Result<(), &'static str> {
        if peer_name.is_some_and(|n| n != &*origin.name) {
            return Err(crate::reject::FOREIGN_ORIGIN);
        }
        if *origin == self.me.node {
            return Err("peer claims our identity");
        }
        if !self.peers.contains_key(origin) {
            return Err("origin is not a live member");
        }
        Ok(())
    }

    pub(super) fn on_delta(
        &mut self,
        now: Instant,
        peer_name: Option<&str>,
        bytes: &[u8],
    ) -> Result<(), &'static str> {
        let DeltaMsg::V1(DeltaBatch { origin, delta }) =
            wire::decode::<DeltaMsg>(bytes).map_err(|_| "undecodable delta")?;
        if let Err(e) = self.authorize(&origin, peer_name) {
            // Dropped: once it is a member here, pull what it sent (see `digest_wanted`).
            self.owe_digest_if_unheard(&origin, peer_name);
            return Err(e);
        }
        self.apply_origin_delta(now, &origin, delta);
        // A hole in what we have seen of the origin means an earlier batch was lost (every
        // mutation mints a dot, so an origin's own dots are gap-free): repair it now.
        let holes = self
            .map
            .context()
            .row(&origin)
            .is_some_and(|r| r.ranges().len() > 1 || r.contiguous() == 0);
        if holes {
            self.stats.gaps_detected += 1;
            if let Some(peer) = self.peers.get(&origin).cloned() {
                self.send_digest(now, &peer);
            }
        }
        self.stats.deltas_applied += 1;
        Ok(())
    }

    /// The CRDT delta of `origin`'s wire entries `adds` with context `seen`, observing each
    /// entry's clock reading on the way (readings too far ahead are counted and ignored).
    pub(super) fn delta_of(
        &mut self,
        now: Instant,
        origin: &NodeId,
        seen: &[(u64, u64)],
        adds: Vec<WireEntry>,
    ) -> Delta<NodeId, Key, Value> {
        let wall = self.wall_ms(now);
        let max_ahead = u64::try_from(self.config.max_clock_drift.as_millis()).unwrap_or(u64::MAX);
        let mut delta = Delta::default();
        delta
            .ctx
            .set_row(origin.clone(), DotSet::from_ranges(seen.iter().copied()));
        delta.adds.reserve(adds.len());
        for e in adds {
            if !self.clock.observe(e.value.at, wall, max_ahead) {
                self.stats.clock_readings_ignored += 1;
            }
            delta.adds.push((
                e.key,
                Slot {
                    dot: Dot::new(origin.clone(), e.seq),
                    value: e.value,
                },
            ));
        }
        delta
    }

    pub(super) fn apply_origin_delta(&mut self, now: Instant, origin: &NodeId, od: OriginDelta) {
        let delta = self.delta_of(now, origin, &od.seen, od.adds);
        // Claims the origin gave up after a conflict that this node never saw: our own claims on
        // the same names were concurrent with them and must face the resolver too.
        let unseen_releases: Vec<Entry> = od
            .released
            .into_iter()
            .filter(|r| {
                r.key.kind == KeyKind::Name
                    && !self
                        .map
                        .context()
                        .contains(&Dot::new(origin.clone(), r.seq))
            })
            .map(|r| Entry {
                pid: Pid {
                    node: origin.clone(),
                    local: r.value.pid,
                },
                meta: r.value.meta,
                registered_at: r.value.at,
                dot: Dot::new(origin.clone(), r.seq),
                key: r.key,
            })
            .collect();
        let report = self.map.join(&delta);
        self.report_join(report);
        for released in unseen_releases {
            self.resolve_against_release(now, released);
        }
    }

    /// Queues one add just made by [`OrMap::add_dot`](pidmesh_crdt::OrMap::add_dot) on this
    /// node: its dot is fresh (the highest of ours plus one), so no pending removal covers it
    /// and merging it is appending it (what `Delta::merge` would do, without its checks). A
    /// new batch starts with room for as many adds as the last one carried.
    ///
    /// The dot's sequence number goes to `pending_own`, not to the batch's context: that costs
    /// no search of the context's rows by node id. The two are folded together before anything
    /// reads the batch's context (a merge, a push).
    pub(super) fn queue_own_add(&mut self, now: Instant, key: Key, slot: Slot<NodeId, Value>) {
        let p = self.pending.get_or_insert_with(|| {
            let mut d = Delta::default();
            d.adds.reserve(self.last_batch_adds);
            d
        });
        self.pending_own.insert(slot.dot.seq);
        p.adds.push((key, slot));
        self.schedule_push(now);
    }

    /// The pending batch with its context complete (own adds' dots folded in), if any.
    fn pending_batch(&mut self) -> Option<&mut Delta<NodeId, Key, Value>> {
        let p = self.pending.as_mut()?;
        if !self.pending_own.is_empty() {
            let own = std::mem::take(&mut self.pending_own);
            p.ctx.row_mut(&self.me.node).union_with(&own);
        }
        Some(p)
    }

    pub(super) fn queue_delta(&mut self, now: Instant, delta: Delta<NodeId, Key, Value>) {
        match self.pending_batch() {
            Some(p) => p.merge(delta),
            None => self.pending = Some(delta),
        }
        self.schedule_push(now);
    }

    /// Pushes the pending batch now if the link is idle, else makes sure a timer will.
    ///
    /// The link is idle when no push is waiting (no `Flush` timer armed) and the last push left
    /// at least `delta_batch_window / delta_burst` ago (the push gap): a lone change, or
    /// changes coming one at a time slower than that, leave in the step they are made. A change
    /// that comes sooner waits for the pending batch's timer, armed `push_hold` after the last
    /// push. The hold starts at one gap (a change that merely came a little early waits no more
    /// than that) and doubles with each timer push whose batch gathered further changes while it
    /// waited, up to a whole window, so changes that keep coming (load) travel in one batch per
    /// window. A timer push of a lone change brings it back to one gap; a push that finds the
    /// link idle halves it (so a caller that pauses now and then under load costs one extra
    /// push per pause, not a climb from one gap back to the window).
    fn schedule_push(&mut self, now: Instant) {
        if self.flush_scheduled {
            self.batch_grew = true;
            return;
        }
        let gap = self.push_gap();
        if self.last_push.is_none_or(|t| now >= t + gap) {
            self.push_hold = (self.push_hold / 2).max(gap);
            self.last_push = Some(now);
            self.flush();
        } else {
            let at = self.last_push.map_or(now, |t| t + self.push_hold).max(now);
            self.flush_scheduled = true;
            self.timers.push(at, TimerKind::Flush);
        }
    }

    /// The shortest time between two pushes made at once (see [`Node::schedule_push`]).
    fn push_gap(&self) -> std::time::Duration {
        self.config.delta_batch_window / self.config.delta_burst.get()
    }

    /// The `Flush` timer fired: pushes the pending batch, and sets the hold for the next change
    /// that comes before the link is idle again (see [`Node::schedule_push`]): twice as long if
    /// changes kept joining this batch while it waited, one gap if it held a lone change.
    pub(super) fn flush_due(&mut self, now: Instant) {
        let gap = self.push_gap();
        self.push_hold = if std::mem::take(&mut self.batch_grew) {
            self.push_hold
                .max(gap)
                .saturating_mul(2)
                .min(self.config.delta_batch_window.max(gap))
        } else {
            gap
        };
        self.flush_scheduled = false;
        self.last_push = Some(now);
        self.flush();
    }

    /// Pushes the pending batch to every live peer.
    pub(super) fn flush(&mut self) {
        if self.pending_batch().is_none() {
            return;
        }
        let Some(delta) = self.pending.take() else {
            return;
        };
        let seen = delta.ctx.row(&self.me.node).cloned().unwrap_or_default();
        self.last_batch_adds = delta.adds.len().min(MAX_BATCH_HINT);
        let adds = delta.adds.into_iter().map(|(key, slot)| WireEntry {
            seq: slot.dot.seq,
            key,
            value: slot.value,
        });
        let released: Vec<WireEntry> = seen
            .ranges()
            .iter()
            .flat_map(|&(a, b)| self.released.range(a..=b))
            .map(|(seq, (k, v))| WireEntry {
                seq: *seq,
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        for chunk in split_origin_delta(
            &seen,
            tagged(adds, released),
            self.config.delta_batch_bytes,
            &self.removals,
        ) {
            let msg = DeltaMsg::V1(DeltaBatch {
                origin: self.me.node.clone(),
                delta: chunk,
            });
            let payload = match wire::encode_sized(&msg, encoded_size_hint(&msg)) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "delta batch not encodable");
                    self.stats.encode_errors += 1;
                    continue;
                }
            };
            for peer in self.peers.values() {
                self.stats.delta_bytes_sent += payload.len() as u64;
                self.outbox.push_back(Transmit {
                    to: peer.addr,
                    class: TrafficClass::Delta,
                    payload: payload.clone(),
                });
            }
            self.stats.batches_sent += 1;
        }
    }
}
