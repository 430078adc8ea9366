//! Anti-entropy: periodic digests, answers to them window by window, and snapshots for lagging peers.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

use pidmesh_crdt::{Dot, DotSet, LiveDigest};
use pidmesh_wire::{self as wire, NodeId, SyncMsg, SyncV1, TrafficClass, WireEntry};

use crate::member::Member;
use crate::singleton::ClaimAnswer;
use crate::timers::TimerKind;

use super::Node;
use super::dissemination::{split_origin_delta, tagged};

/// Live entries per window of a reply to a digest (about 0.9 MB with ~17-byte names): one
/// window is built and handed to the transport at a time. Windows are cut by entries, not by
/// sequence numbers, so a reply costs what the live state costs, however many operations the
/// node made before.
pub(super) const SNAPSHOT_WINDOW: usize = 32_768;

/// The pause between two windows of a reply, so the runtime gets to send the first before the
/// node builds the next.
pub(super) const SNAPSHOT_PAUSE: std::time::Duration = std::time::Duration::from_micros(100);

/// A reply to a digest that is still being sent.
#[derive(Debug)]
pub(super) struct SnapshotJob {
    pub(super) to: NodeId,
    pub(super) addr: SocketAddr,
    /// Our own sequence numbers the asker lacks and has not been sent yet.
    pub(super) remaining: DotSet,
}

impl Node {
    /// Sends an anti-entropy digest to every live peer now (not waiting for the periodic round),
    /// so that peers missing something pull it at once.
    pub fn sync_now(&mut self, now: Instant) {
        let peers: Vec<Member> = self.peers.values().cloned().collect();
        for p in peers {
            self.send_digest(now, &p);
        }
    }

    pub(super) fn on_sync(
        &mut self,
        now: Instant,
        from_addr: SocketAddr,
        peer_name: Option<&str>,
        bytes: &[u8],
    ) -> Result<(), &'static str> {
        let SyncMsg::V1(msg) = wire::decode::<SyncMsg>(bytes).map_err(|_| "undecodable sync")?;
        match msg {
            SyncV1::Digest {
                from,
                to,
                have,
                own_max,
                live_count,
                live_hash,
            } => {
                if to != self.me.node {
                    return Err("digest for another life of this node");
                }
                if peer_name.is_some_and(|n| n != &*from.name) {
                    return Err(crate::reject::FOREIGN_ORIGIN);
                }
                let live = LiveDigest {
                    count: live_count,
                    hash: live_hash,
                };
                let have = DotSet::from_ranges(have);
                if self.peers.contains_key(&from) {
                    self.peer_has.insert(from.clone(), have.clone());
                }
                self.answer_digest(now, &from, from_addr, &have, live);
                // Pull in return when the asker has dots we lack: now if it is a live member
                // and we are not catching up, else as soon as that changes (the digest is
                // owed until it is sent).
                let mine = self.map.context().row(&from);
                if own_max > 0 && mine.is_none_or(|r| !r.includes(&DotSet::from_range(1, own_max)))
                {
                    self.owe_digest(&from);
                    if let Some(peer) = self.peers.get(&from).cloned() {
                        self.send_digest(now, &peer);
                    }
                }
                Ok(())
            }
            SyncV1::ClaimCheck {
                from,
                to,
                name,
                claim,
                round,
            } => {
                if to != self.me.node {
                    return Err("claim check for another life of this node");
                }
                self.authorize(&from, peer_name)?;
                let claim_seq = claim.adds.first().map_or(0, |e| e.seq);
                self.apply_origin_delta(now, &from, claim);
                if now < self.promises_unknown_until || self.left {
                    // Too young to vouch (see `promises_unknown_until`), or leaving: no answer,
                    // no vouch.
                    return Ok(());
                }
                let holders = self.vouch(now, &name, Dot::new(from.clone(), claim_seq));
                let msg = SyncMsg::V1(SyncV1::ClaimAck {
                    from: self.me.node.clone(),
                    to: from,
                    name,
                    claim_seq,
                    round,
                    known: u32::try_from(self.known_nodes()).unwrap_or(u32::MAX),
                    holders,
                });
                self.send(from_addr, TrafficClass::Sync, &msg);
                Ok(())
            }
            SyncV1::ClaimAck {
                from,
                to,
                name,
                round,
                known,
                holders,
                ..
            } => {
                if to != self.me.node {
                    return Err("claim ack for another life of this node");
                }
                if peer_name.is_some_and(|n| n != &*from.name) {
                    return Err(crate::reject::FOREIGN_ORIGIN);
                }
                if !self.peers.contains_key(&from) {
                    return Err("claim ack from a node that is not a live member");
                }
                let ack = ClaimAnswer {
                    from,
                    round,
                    known: usize::try_from(known).unwrap_or(usize::MAX),
                    holders,
                };
                self.on_claim_ack(now, &name, ack);
                Ok(())
            }
            SyncV1::CatchUpAsk { from, to } => {
                if to != self.me.node {
                    return Err("catch-up survey for another life of this node");
                }
                if peer_name.is_some_and(|n| n != &*from.name) {
                    return Err(crate::reject::FOREIGN_ORIGIN);
                }
                self.answer_catchup_ask(from, from_addr);
                Ok(())
            }
            SyncV1::Holdings { from, to, rows } => {
                if to != self.me.node {
                    return Err("holdings for another life of this node");
                }
                if peer_name.is_some_and(|n| n != &*from.name) {
                    return Err(crate::reject::FOREIGN_ORIGIN);
                }
                self.on_holdings(now, from, rows);
                Ok(())
            }
            SyncV1::Fetch {
                from,
                to,
                origin,
                start,
                end,
            } => {
                if to != self.me.node {
                    return Err("fetch for another life of this node");
                }
                if peer_name.is_some_and(|n| n != &*from.name) {
                    return Err(crate::reject::FOREIGN_ORIGIN);
                }
                self.answer_fetch(from, from_addr, origin, start, end);
                Ok(())
            }
            SyncV1::Slice {
                from,
                to,
                origin,
                start,
                delta,
                last,
            } => {
                if to != self.me.node {
                    return Err("slice for another life of this node");
                }
                if peer_name.is_some_and(|n| n != &*from.name) {
                    return Err(crate::reject::FOREIGN_ORIGIN);
                }
                self.on_slice(now, from, origin, start, delta, last)
            }
            SyncV1::Chunk {
                from,
                to,
                delta,
                last,
            } => {
                if to != self.me.node {
                    return Err("chunk for another life of this node");
                }
                self.authorize(&from, peer_name)?;
                self.apply_origin_delta(now, &from, delta);
                self.stats.chunks_applied += 1;
                if last {
                    self.sync_inflight.remove(&from);
                } else if let Some(until) = self.sync_inflight.get_mut(&from) {
                    // A long reply is making progress: give it more time before asking again.
                    *until = now + self.config.sync_timeout;
                }
                Ok(())
            }
            SyncV1::Members(m) => self.on_members(now, from_addr, peer_name, bytes.len(), m),
        }
    }

    /// Sends `to` the part of this node's own state it lacks: the dots it has not seen, or, when
    /// its digest shows it still holds entries this node removed, everything.
    pub(super) fn answer_digest(
        &mut self,
        now: Instant,
        to: &NodeId,
        addr: SocketAddr,
        have: &DotSet,
        live: LiveDigest,
    ) {
        let me = self.me.node.clone();
        let own = self.map.context().row(&me).cloned().unwrap_or_default();
        let mut missing = own.difference(have);
        // What the asker should hold of our live entries if it missed nothing but `missing`:
        // the digest of our live entries in `held`, counted from whichever side is narrower (a
        // peer back from a partition holds nothing of ours: nothing to count then).
        let held = own.difference(&missing);
        let mut expected = if held.len() < missing.len() {
            let mut d = LiveDigest::default();
            for &(a, b) in held.ranges() {
                for (_, slot) in self.map.actor_range(&me, a, b) {
                    d.toggle(slot.dot.seq, true);
                }
            }
            d
        } else {
            let mut d = self.map.actor_digest(&me);
            for &(a, b) in missing.ranges() {
                for (_, slot) in self.map.actor_range(&me, a, b) {
                    d.toggle(slot.dot.seq, false);
                }
            }
            d
        };
        // The entries it still holds that our unseen removals removed.
        let mut victims = DotSet::new();
        for &(a, b) in missing.ranges() {
            // Our removals it has not seen yet (usually still in flight): it still holds what
            // they removed, if it saw that at all. Without this, any digest crossing a removal
            // looked like a lost removal and cost a whole-row resend.
            let from = self.removals.partition_point(|&(r, _)| r < a);
            for &(_, removed) in self.removals.range(from..).take_while(|&&(r, _)| r <= b) {
                if have.contains(removed) {
                    expected.toggle(removed, true);
                    victims.insert(removed);
                }
            }
        }
        if expected != live {
            // It holds stale entries (a removal of ours got lost): resend the whole row, whose
            // context covers and so drops them.
            missing = own;
            self.stats.full_syncs += 1;
        } else {
            // The reply's context must name what those removals removed, as their own delta
            // did: a reply that carried a removal's dot alone would mark it seen while the asker
            // kept its victims, and the asker's next digest (sent before the removal's own
            // delta arrives, or at all if that delta was lost) would then show an entry we
            // removed beside a removal it has seen, which only a whole-row resend repairs.
            missing.union_with(&victims);
        }
        self.stats.digests_answered += 1;
        // A reply replaces any earlier one still being sent to the same asker.
        self.snapshots.retain(|job| job.to != *to);
        self.snapshots.push_back(SnapshotJob {
            to: to.clone(),
            addr,
            remaining: missing,
        });
        self.send_snapshot_window(now);
    }

    /// Appends to `out` the live entries of `origin` with sequence numbers in `start..=end`,
    /// lowest first, until `out` holds `limit` entries; returns whether it is full (then the
    /// window ends at its last entry's sequence number, not at `end`).
    pub(super) fn window_entries(
        &self,
        origin: &NodeId,
        start: u64,
        end: u64,
        limit: usize,
        out: &mut Vec<WireEntry>,
    ) -> bool {
        let room = limit.saturating_sub(out.len());
        out.extend(
            self.map
                .actor_range_limit(origin, start, end, room)
                .map(|(k, s)| WireEntry {
                    seq: s.dot.seq,
                    key: k,
                    value: s.value,
                }),
        );
        out.len() >= limit
    }

    /// Sends the next window of the oldest pending reply (at most [`SNAPSHOT_WINDOW`] sequence
    /// numbers, cut into chunks), and schedules the next window a moment later: a large reply
    /// goes out window by window, so the asker applies the first while this node builds the
    /// next, and neither node's other work waits for the whole state.
    pub(super) fn send_snapshot_window(&mut self, now: Instant) {
        let Some(mut job) = self.snapshots.pop_front() else {
            return;
        };
        let me = self.me.node.clone();
        // The window holds the next SNAPSHOT_WINDOW live entries of what remains and every
        // sequence number up to the last of them (all of it when fewer remain). An empty reply
        // is still one (empty, last) chunk: the asker waits for it.
        let mut adds = Vec::new();
        let mut end = u64::MAX;
        for &(a, b) in job.remaining.ranges() {
            if self.window_entries(&me, a, b, SNAPSHOT_WINDOW, &mut adds) {
                end = adds.last().map_or(u64::MAX, |e| e.seq);
                break;
            }
        }
        let window = job.remaining.clipped(1, end);
        job.remaining = job.remaining.clipped(end.saturating_add(1), u64::MAX);
        let mut released = Vec::new();
        for &(a, b) in window.ranges() {
            released.extend(self.released.range(a..=b).map(|(seq, (k, v))| WireEntry {
                seq: *seq,
                key: k.clone(),
                value: v.clone(),
            }));
        }
        let budget = self.config.sync_chunk_bytes.saturating_sub(1024).max(1024);
        let chunks = split_origin_delta(&window, tagged(adds, released), budget, &self.removals);
        let n = chunks.len();
        let done = job.remaining.is_empty();
        for (i, delta) in chunks.into_iter().enumerate() {
            let msg = SyncMsg::V1(SyncV1::Chunk {
                from: me.clone(),
                to: job.to.clone(),
                delta,
                last: done && i + 1 == n,
            });
            self.send(job.addr, TrafficClass::Sync, &msg);
        }
        if !done {
            self.snapshots.push_back(job);
        }
        if !self.snapshots.is_empty() {
            self.timers
                .push(now + SNAPSHOT_PAUSE, TimerKind::SnapshotWindow);
        }
    }

    /// Records that our dot `by` removed our entries `removed`, so a digest that has not seen
    /// `by` yet is expected to still hold them (see `answer_digest`). Bounded by `Config::removal_log`;
    /// a digest behind the log falls back to a whole-row resend when it disagrees.
    pub(super) fn log_removal(&mut self, by: u64, removed: impl IntoIterator<Item = u64>) {
        for seq in removed {
            self.removals.push_back((by, seq));
        }
        while self.removals.len() > self.config.removal_log {
            self.removals.pop_front();
        }
    }

    pub(super) fn sync_round(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.sync_inflight.retain(|_, until| *until > now);
        // Round-robin over live peers (in node-id order, starting after the last one asked), so
        // every peer is reached within `peers` rounds whatever the randomness.
        let after = self.sync_cursor.clone();
        let next = self
            .peers
            .values()
            .filter(|m| !self.sync_inflight.contains_key(&m.node))
            .find(|m| after.as_ref().is_none_or(|a| m.node > *a))
            .or_else(|| {
                self.peers
                    .values()
                    .find(|m| !self.sync_inflight.contains_key(&m.node))
            })
            .cloned();
        let Some(peer) = next else { return };
        self.sync_cursor = Some(peer.node.clone());
        self.send_digest(now, &peer);
        self.stats.sync_rounds += 1;
    }

    /// The digest policy when `peer` comes up (see [`Node::digest_wanted`]): while catching up,
    /// the first members met are surveyed and the rest wait for the end of the catch-up.
    pub(super) fn digest_new_member(&mut self, now: Instant, peer: &Member) {
        if !self.catchup.done || self.digest_wanted(&peer.node) {
            self.send_digest(now, peer);
        }
    }

    /// Once the catch-up ended: a digest to every live peer it is wanted for.
    pub(super) fn digest_after_catchup(&mut self, now: Instant) {
        let peers: Vec<Member> = self
            .peers
            .values()
            .filter(|m| self.digest_wanted(&m.node))
            .cloned()
            .collect();
        for p in peers {
            self.send_digest(now, &p);
        }
    }

    /// Whether a digest to `node` outside the periodic round can teach either side anything.
    ///
    /// A digest asks `node` for its own dots we lack and tells it how far ours go, so it pulls
    /// ours in return if it lacks them; each node serves only its own row. So a digest to a
    /// member that just came up is wanted when this node has minted dots (the member may lack
    /// them), or when the member's dots may be missing here: it showed us dots we lack, or it
    /// sent us deltas while it was no member here, or we forgot its entries when it went down.
    /// Every other member that has minted dots sends us its digest when it sees us come up
    /// (the first rule, on its side), and we pull in return. So when N nodes that hold nothing
    /// meet, no digests travel instead of N² (every pair, both ways); the periodic round repairs
    /// whatever a lost message leaves behind.
    pub(super) fn digest_wanted(&self, node: &NodeId) -> bool {
        self.map.context().max(&self.me.node) > 0 || self.digest_owed.contains(node)
    }

    /// Remembers that a digest to `node` is wanted (bounded; see [`OwedDigests`]).
    pub(super) fn owe_digest(&mut self, node: &NodeId) {
        let peers = &self.peers;
        self.digest_owed
            .insert(node, peers.len(), self.config.max_remembered, |n| {
                peers.contains_key(n)
            });
    }

    /// A delta from `origin` was dropped because it is no live member here: once it is, pull
    /// what it sent. Only for a sender that speaks for itself (`peer_name`, when known).
    pub(super) fn owe_digest_if_unheard(&mut self, origin: &NodeId, peer_name: Option<&str>) {
        if *origin != self.me.node
            && !self.peers.contains_key(origin)
            && peer_name.is_none_or(|n| n == &*origin.name)
        {
            self.owe_digest(origin);
        }
    }

    pub(super) fn send_digest(&mut self, now: Instant, peer: &Member) {
        if self.catchup_intercepts(now, peer) {
            return;
        }
        if self
            .sync_inflight
            .get(&peer.node)
            .is_some_and(|until| *until > now)
        {
            return;
        }
        let have = self
            .map
            .context()
            .row(&peer.node)
            .map(|r| r.ranges().to_vec())
            .unwrap_or_default();
        let own_max = self.map.context().max(&self.me.node);
        let live = self.map.actor_digest(&peer.node);
        let msg = SyncMsg::V1(SyncV1::Digest {
            from: self.me.node.clone(),
            to: peer.node.clone(),
            have,
            own_max,
            live_count: live.count,
            live_hash: live.hash,
        });
        self.send(peer.addr, TrafficClass::Sync, &msg);
        self.stats.digests_sent += 1;
        self.digest_owed.remove(&peer.node);
        self.sync_inflight
            .insert(peer.node.clone(), now + self.config.sync_timeout);
    }
}

/// Members a digest is owed to (see [`Node::digest_wanted`]). Bounded: past the live members
/// plus `Config::max_remembered` others, the entries for nodes that are no live members are
/// dropped (their rows are then repaired by the periodic round alone).
#[derive(Debug, Default)]
pub(super) struct OwedDigests {
    owed: HashSet<NodeId>,
}

impl OwedDigests {
    pub(super) fn contains(&self, node: &NodeId) -> bool {
        self.owed.contains(node)
    }

    pub(super) fn remove(&mut self, node: &NodeId) {
        self.owed.remove(node);
    }

    /// Adds `node`. Past `live_count + bound` entries, drops those `live` says are no live
    /// members (so the trimming costs O(1) per insertion, amortized).
    pub(super) fn insert(
        &mut self,
        node: &NodeId,
        live_count: usize,
        bound: usize,
        live: impl Fn(&NodeId) -> bool,
    ) {
        if self.owed.insert(node.clone()) && self.owed.len() > live_count + bound.max(64) {
            self.owed.retain(|n| live(n));
        }
    }
}
