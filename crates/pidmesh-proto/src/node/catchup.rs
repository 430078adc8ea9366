//! Catch-up: a joining node asks the first members it meets (at most [`MAX_SURVEYED`]) which
//! origins' dots they can vouch for, fetches the registry from several of them at once in
//! disjoint windows of sequence numbers, applies each slice in one pass with one event, and
//! knows when it holds everything the surveyed origins reported.
//!
//! Why a holder may answer for another origin's row: a holder whose causal context covers an
//! origin's sequence numbers `a ..= b` without a gap has seen every add and every removal in
//! that range, so its live entries there plus the range itself (as the delta's context) are
//! exactly what the origin would send for it: joining them drops whatever the receiver holds in
//! the range that was removed, and adds what it never saw. Only gap-free prefixes are vouched
//! for (`HeldRow::upto` is the contiguous part of the row), and slices are accepted only from
//! the holder a window was fetched from, only while catching up, only for origins that are live
//! members here. How far each origin's row goes comes from the origin's own answer, so a member
//! cannot make the newcomer take sequence numbers the origin never minted as seen; within that
//! bound a slice's content is taken on the holder's word (docs/architecture.md §6).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use pidmesh_crdt::DotSet;
use pidmesh_wire::{HeldRow, NodeId, OriginDelta, SyncMsg, SyncV1, TrafficClass};

use crate::entry::Event;
use crate::member::Member;
use crate::timers::TimerKind;

use super::Node;
use super::dissemination::split_origin_delta;

/// Windows asked of one holder at a time: one being applied here while the next is built.
pub(super) const INFLIGHT_PER_HOLDER: usize = 2;

/// Members surveyed at most: the first ones met. Enough to spread the transfer (the receiver's
/// join is the bound beyond a few), and it keeps the survey's cost independent of the cluster's
/// size. Digests to the others wait until the catch-up ends.
pub(super) const MAX_SURVEYED: usize = 8;

/// One window of an origin's sequence numbers not yet held.
#[derive(Debug)]
struct Window {
    end: u64,
    /// The holder it is fetched from now, with the deadline of its answer.
    holder: Option<(NodeId, Instant)>,
    /// Holders it was fetched from before (answers from them are still accepted).
    tried: BTreeSet<NodeId>,
}

/// A node's catch-up after it joined (see the module docs).
#[derive(Debug, Default)]
pub(super) struct CatchUp {
    /// True once finished, or from the start for a node without seeds.
    pub(super) done: bool,
    /// True once the first member was asked.
    started: bool,
    /// Members asked for their holdings, with the deadline of the answer.
    asked: BTreeMap<NodeId, Instant>,
    /// Members that answered: per origin, how far their context covers it without a gap.
    holders: BTreeMap<NodeId, BTreeMap<NodeId, u64>>,
    /// Members that did not answer in time (older versions): plain digests go to them.
    legacy: BTreeSet<NodeId>,
    /// Per origin, how far windows were cut.
    planned: BTreeMap<NodeId, u64>,
    /// Windows not held yet, by (origin, first sequence number).
    windows: BTreeMap<(NodeId, u64), Window>,
    /// Round-robin cursor over holders.
    cursor: usize,
}

impl CatchUp {
    pub(super) fn new(needed: bool) -> Self {
        Self {
            done: !needed,
            ..Self::default()
        }
    }
}

impl Node {
    /// True once this node holds everything its first peers named when it joined: every
    /// origin's entries up to the highest sequence number any member reported covering in its
    /// answer to the catch-up survey (origins and holders that went down meanwhile excepted). A
    /// node started without seeds has nothing to catch up and is caught up from the start.
    /// [`Event::CaughtUp`] is emitted when this becomes true.
    pub fn is_caught_up(&self) -> bool {
        self.catchup.done
    }

    /// Called instead of sending a digest while catching up: asks `peer` what it holds (once).
    /// Returns false when the digest should go out (caught up, or `peer` does not speak catch-up).
    pub(super) fn catchup_intercepts(&mut self, now: Instant, peer: &Member) -> bool {
        if self.catchup.done || self.catchup.legacy.contains(&peer.node) {
            return false;
        }
        if self.catchup.asked.contains_key(&peer.node)
            || self.catchup.holders.contains_key(&peer.node)
            || self.catchup.asked.len() + self.catchup.holders.len() >= MAX_SURVEYED
        {
            // Asked already, or enough members asked: the digest waits for the end of the
            // catch-up (`catchup_progress` sends one to every peer).
            return true;
        }
        self.catchup.started = true;
        let deadline = now + self.config.sync_timeout;
        self.catchup.asked.insert(peer.node.clone(), deadline);
        let msg = SyncMsg::V1(SyncV1::CatchUpAsk {
            from: self.me.node.clone(),
            to: peer.node.clone(),
        });
        self.send(peer.addr, TrafficClass::Sync, &msg);
        self.timers.push(deadline, TimerKind::CatchUp);
        true
    }

    /// A member asks what we hold: every origin's gap-free prefix we hold, ours included.
    pub(super) fn answer_catchup_ask(&mut self, asker: NodeId, addr: SocketAddr) {
        let me = self.me.node.clone();
        let mut rows = vec![HeldRow {
            origin: me.clone(),
            upto: self.map.context().max(&me),
            live: self.map.actor_len(&me) as u64,
        }];
        for peer in self.peers.keys() {
            let upto = self.map.context().row(peer).map_or(0, |r| r.contiguous());
            if upto > 0 && *peer != asker {
                rows.push(HeldRow {
                    origin: peer.clone(),
                    upto,
                    live: self.map.actor_len(peer) as u64,
                });
            }
        }
        let msg = SyncMsg::V1(SyncV1::Holdings {
            from: me,
            to: asker,
            rows,
        });
        self.send(addr, TrafficClass::Sync, &msg);
    }

    /// A holder answered our survey: plan windows for what it covers and fetch.
    pub(super) fn on_holdings(&mut self, now: Instant, from: NodeId, rows: Vec<HeldRow>) {
        if self.catchup.done || self.catchup.asked.remove(&from).is_none() {
            return;
        }
        let me = self.me.node.clone();
        let covered: BTreeMap<NodeId, u64> = rows
            .into_iter()
            .filter(|r| r.origin != me && r.upto > 0)
            .map(|r| (r.origin, r.upto))
            .collect();
        // How far an origin's row goes is taken from the origin alone (it speaks for its own
        // dots); other holders' rows only say who can serve which windows. So no member can
        // make us fetch (and take as seen) sequence numbers the origin never minted.
        if let Some(&own) = covered.get(&from) {
            self.plan_windows(&from, own);
        }
        self.catchup.holders.insert(from, covered);
        self.dispatch_fetches(now);
        self.catchup_progress(now);
    }

    /// Cuts `origin`'s sequence numbers we lack up to `upto` (its own report) into windows.
    fn plan_windows(&mut self, origin: &NodeId, upto: u64) {
        let window = self.config.catch_up_window.max(1);
        {
            let held = self.map.context().row(origin).map_or(0, |r| r.contiguous());
            let planned = self.catchup.planned.entry(origin.clone()).or_default();
            let mut start = (*planned).max(held) + 1;
            *planned = (*planned).max(upto);
            while start <= upto {
                let end = start.saturating_add(window - 1).min(upto);
                self.catchup.windows.insert(
                    (origin.clone(), start),
                    Window {
                        end,
                        holder: None,
                        tried: BTreeSet::new(),
                    },
                );
                start = end + 1;
            }
        }
    }

    /// Assigns unassigned windows to live holders that cover them, at most
    /// [`INFLIGHT_PER_HOLDER`] each, preferring holders not tried for the window and the least
    /// busy; drops windows nobody live can serve (their origin went down, or every holder did).
    fn dispatch_fetches(&mut self, now: Instant) {
        let live_holders: Vec<NodeId> = self
            .catchup
            .holders
            .keys()
            .filter(|h| self.peers.contains_key(*h))
            .cloned()
            .collect();
        let mut busy: BTreeMap<NodeId, usize> = BTreeMap::new();
        for w in self.catchup.windows.values() {
            if let Some((h, _)) = &w.holder {
                *busy.entry(h.clone()).or_default() += 1;
            }
        }
        let mut dropped = Vec::new();
        let mut fetches = Vec::new();
        for ((origin, start), w) in self.catchup.windows.iter_mut() {
            if w.holder.is_some() {
                continue;
            }
            if !self.peers.contains_key(origin) {
                dropped.push((origin.clone(), *start));
                continue;
            }
            let covers = |h: &NodeId| {
                self.catchup
                    .holders
                    .get(h)
                    .and_then(|rows| rows.get(origin))
                    .is_some_and(|&upto| upto >= *start)
            };
            let n = live_holders.len().max(1);
            let mut best: Option<(bool, usize, usize, &NodeId)> = None;
            let mut any = false;
            for (i, h) in live_holders.iter().enumerate() {
                if !covers(h) {
                    continue;
                }
                any = true;
                let load = busy.get(h).copied().unwrap_or(0);
                if load >= INFLIGHT_PER_HOLDER {
                    continue;
                }
                let rank = (
                    w.tried.contains(h),
                    load,
                    (i + n - self.catchup.cursor % n) % n,
                    h,
                );
                if best
                    .as_ref()
                    .is_none_or(|b| (rank.0, rank.1, rank.2) < (b.0, b.1, b.2))
                {
                    best = Some(rank);
                }
            }
            match best {
                Some((_, _, _, h)) => {
                    let h = h.clone();
                    *busy.entry(h.clone()).or_default() += 1;
                    self.catchup.cursor = self.catchup.cursor.wrapping_add(1);
                    let deadline = now + self.config.sync_timeout;
                    w.holder = Some((h.clone(), deadline));
                    fetches.push((h, origin.clone(), *start, w.end, deadline));
                }
                None if !any => dropped.push((origin.clone(), *start)),
                None => {}
            }
        }
        for k in dropped {
            self.catchup.windows.remove(&k);
        }
        for (holder, origin, start, end, deadline) in fetches {
            let Some(addr) = self.peers.get(&holder).map(|m| m.addr) else {
                continue;
            };
            let msg = SyncMsg::V1(SyncV1::Fetch {
                from: self.me.node.clone(),
                to: holder,
                origin,
                start,
                end,
            });
            self.send(addr, TrafficClass::Sync, &msg);
            self.timers.push(deadline, TimerKind::CatchUp);
        }
    }

    /// A member fetches `origin`'s state in `start ..= end` from us: send what our context
    /// covers of it without a gap (at most `Config::catch_up_window` live entries), as slices.
    pub(super) fn answer_fetch(
        &mut self,
        asker: NodeId,
        addr: SocketAddr,
        origin: NodeId,
        start: u64,
        end: u64,
    ) {
        let me = self.me.node.clone();
        let covered = if origin == me {
            self.map.context().max(&me)
        } else if self.peers.contains_key(&origin) {
            self.map
                .context()
                .row(&origin)
                .map_or(0, |r| r.contiguous())
        } else {
            0
        };
        let mut end = end.min(covered);
        let mut adds = Vec::new();
        if start <= end {
            let limit = usize::try_from(self.config.catch_up_window.max(1)).unwrap_or(usize::MAX);
            if self.window_entries(&origin, start, end, limit, &mut adds) {
                end = adds.last().map_or(end, |e| e.seq);
            }
        }
        let seen = if start <= end {
            DotSet::from_range(start, end)
        } else {
            DotSet::new()
        };
        let budget = self.config.sync_chunk_bytes.saturating_sub(1024).max(1024);
        // Slices of any origin's row (this node keeps a removal log of its own only): cut by
        // entries alone.
        let chunks = split_origin_delta(
            &seen,
            adds.into_iter().map(|e| (false, e)),
            budget,
            &VecDeque::new(),
        );
        let n = chunks.len();
        self.stats.fetches_answered += 1;
        for (i, delta) in chunks.into_iter().enumerate() {
            let msg = SyncMsg::V1(SyncV1::Slice {
                from: me.clone(),
                to: asker.clone(),
                origin: origin.clone(),
                start,
                delta,
                last: i + 1 == n,
            });
            self.send(addr, TrafficClass::Sync, &msg);
        }
    }

    /// A slice a holder relays: accepted only as the answer to our fetch of that window.
    pub(super) fn on_slice(
        &mut self,
        now: Instant,
        from: NodeId,
        origin: NodeId,
        start: u64,
        delta: OriginDelta,
        last: bool,
    ) -> Result<(), &'static str> {
        if origin == self.me.node {
            return Err("slice of our own dots");
        }
        if !self.peers.contains_key(&from) {
            return Err("slice from a node that is not a live member");
        }
        if !self.peers.contains_key(&origin) {
            return Err("slice of an origin that is not a live member");
        }
        let key = (origin.clone(), start);
        let Some(w) = self.catchup.windows.get_mut(&key) else {
            return Err("slice nobody asked for");
        };
        let asked = w.holder.as_ref().is_some_and(|(h, _)| *h == from) || w.tried.contains(&from);
        if !asked {
            return Err("slice nobody asked for");
        }
        let end = w.end;
        if delta.seen.iter().any(|&(a, b)| a < start || b > end) {
            return Err("slice outside the fetched window");
        }
        if !last
            && let Some((h, deadline)) = w.holder.as_mut()
            && *h == from
        {
            // A long answer is making progress: give it more time.
            *deadline = now + self.config.sync_timeout;
        }
        self.apply_slice(now, &origin, delta);
        if last {
            let held = self.map.context().row(&origin).cloned().unwrap_or_default();
            let missing = DotSet::from_range(start, end).difference(&held);
            let mut w = self.catchup.windows.remove(&key).unwrap_or(Window {
                end,
                holder: None,
                tried: BTreeSet::new(),
            });
            if let Some(&(first, _)) = missing.ranges().first() {
                // The holder covered only part of it: the rest from someone else.
                w.tried.insert(from);
                w.holder = None;
                self.catchup.windows.insert((origin, first), w);
            }
        }
        self.dispatch_fetches(now);
        self.catchup_progress(now);
        Ok(())
    }

    /// Joins a relayed slice in one pass and reports it as one [`Event::Synced`] (entries it
    /// removes, rare in a catch-up, are reported one by one as usual).
    fn apply_slice(&mut self, now: Instant, origin: &NodeId, od: OriginDelta) {
        let delta = self.delta_of(now, origin, &od.seen, od.adds);
        let report = self.map.join(&delta);
        self.stats.slices_applied += 1;
        if !report.removed.is_empty() {
            self.report_join(report);
            return;
        }
        // A name gained a second claim only where an added entry found its key holding one
        // (the join says so per entry): no key is read again.
        for added in &report.added {
            if !added.alone {
                self.dirty.insert(added.key.clone());
            }
        }
        if !report.added.is_empty() {
            self.events.push_back(Event::Synced {
                origin: origin.clone(),
                count: report.added.len(),
            });
        }
    }

    /// The catch-up timer: unanswered surveys fall back to digests, stalled or orphaned
    /// windows go to another holder.
    pub(super) fn catchup_tick(&mut self, now: Instant) {
        if self.catchup.done {
            return;
        }
        let late: Vec<NodeId> = self
            .catchup
            .asked
            .iter()
            .filter(|(n, until)| **until <= now || !self.peers.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for n in late {
            self.catchup.asked.remove(&n);
            self.catchup.legacy.insert(n.clone());
            if let Some(peer) = self.peers.get(&n).cloned() {
                self.send_digest(now, &peer);
            }
        }
        let mut refetched = 0;
        for w in self.catchup.windows.values_mut() {
            if let Some((h, until)) = &w.holder
                && (*until <= now || !self.peers.contains_key(h))
            {
                w.tried.insert(h.clone());
                w.holder = None;
                refetched += 1;
            }
        }
        self.stats.catch_up_refetches += refetched;
        self.dispatch_fetches(now);
        self.catchup_progress(now);
    }

    /// Finishes the catch-up once every survey is answered (or given up) and every window is
    /// held (or can no longer be served); then digests the peers that may hold what we lack or
    /// lack what we hold (`digest_after_catchup`).
    fn catchup_progress(&mut self, now: Instant) {
        let c = &self.catchup;
        if c.done || !c.started || !c.asked.is_empty() || !c.windows.is_empty() {
            return;
        }
        self.catchup.done = true;
        self.catchup.holders.clear();
        self.catchup.planned.clear();
        self.events.push_back(Event::CaughtUp {
            entries: self.map.len(),
        });
        self.digest_after_catchup(now);
    }
}
