//! Push-pull membership: a joining node sends the live members it knows to the first member it
//! meets and gets that member's list back (both sides merge, as memberlist does), then repeats
//! the exchange with random live members.
//!
//! The repeats follow the news. An exchange that taught this node a member it did not know, as
//! the asker or as the one asked, brings the next exchange to ½–1 probe period away; after
//! [`crate::PushPull::followups`] exchanges in a row that taught nothing, the node falls back to
//! one exchange every [`crate::PushPull::interval`]. So while a large cluster forms, every node
//! that learns something passes its whole list on within a probe period (news spreads in
//! O(log N) rounds, as in anti-entropy gossip), and once everyone agrees the exchanges slow to
//! the periodic repair.
//!
//! A list of N members costs O(N) bytes once per exchange. The answering side spends at most
//! [`crate::PushPull::answer_bytes_per_sec`] on other nodes' requests (a token bucket) and
//! refuses the rest with `Busy`; the asker then tries another random live member, so many nodes
//! joining at once spread their requests over the cluster instead of melting a seed.
//!
//! Lists only feed SWIM (foca's `apply_many`, without re-gossiping them): a member learned this
//! way is probed like any other and goes down like any other if it does not answer.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pidmesh_wire::{
    self as wire, MAX_MEMBERS_PER_MSG, MemberRecord, MembersMsg, NodeId, SyncMsg, SyncV1,
    TrafficClass,
};

use crate::member::Member;
use crate::timers::TimerKind;

use super::{Node, Transmit};

/// The push-pull bookkeeping of one node.
#[derive(Debug, Default)]
pub(super) struct PushPullState {
    /// Set once the join exchange started for the current membership (cleared when the node
    /// loses the cluster, so a rejoin exchanges again).
    joined: bool,
    /// Exchanges in a row (finished or given up) that taught this node nothing.
    quiet: u32,
    /// Exchanges in a row that nobody answered.
    given_up: u32,
    /// Whether a member list taught this node a member since the last exchange ended.
    learned: bool,
    /// When the next exchange starts (`None` while one is in flight, or when none is planned).
    next_at: Option<Instant>,
    /// Attempt number of the current exchange (1 for the first request).
    attempt: u32,
    /// The member asked in the exchange in flight.
    inflight: Option<NodeId>,
    /// The member asked last (a retry avoids it).
    last_asked: Option<NodeId>,
    /// Only the timer of this generation counts.
    generation: u64,
    /// Bytes available for answering requests, and when the bucket was last refilled.
    tokens: u64,
    refilled: Option<Instant>,
}

impl Node {
    /// A fresh member came up: the first one since this node joined is asked for its list.
    pub(super) fn push_pull_member_up(&mut self, now: Instant, m: &Member) {
        if self.config.push_pull.is_none() || self.left || self.push_pull.joined {
            return;
        }
        self.push_pull.joined = true;
        self.push_pull.quiet = 0;
        self.push_pull.learned = false;
        self.push_pull.attempt = 1;
        self.push_pull_start(now, Some(m.clone()));
    }

    /// The node lost its cluster: the next member it meets starts a new join exchange.
    pub(super) fn push_pull_reset(&mut self) {
        let st = &mut self.push_pull;
        st.joined = false;
        st.inflight = None;
        st.next_at = None;
        st.generation += 1;
    }

    /// The push-pull timer of generation `generation` fired: a request timed out, or the next
    /// attempt or follow-up is due.
    pub(super) fn push_pull_timer(&mut self, now: Instant, generation: u64) {
        if generation != self.push_pull.generation || !self.push_pull.joined || self.left {
            return;
        }
        if self.push_pull.inflight.take().is_some() {
            self.push_pull_retry(now);
        } else {
            self.push_pull_start(now, None);
        }
    }

    /// Handles a push-pull message from `from_addr` (already decoded and validated).
    pub(super) fn on_members(
        &mut self,
        now: Instant,
        from_addr: SocketAddr,
        peer_name: Option<&str>,
        size: usize,
        msg: MembersMsg,
    ) -> Result<(), &'static str> {
        let (from, to) = match &msg {
            MembersMsg::List { from, to, .. } | MembersMsg::Busy { from, to } => (from, to),
        };
        if *to != self.me.node {
            return Err("member list for another life of this node");
        }
        if peer_name.is_some_and(|n| n != &*from.name) {
            return Err(crate::reject::FOREIGN_ORIGIN);
        }
        if *from == self.me.node {
            return Err("peer claims our identity");
        }
        let answer_to_us = self.push_pull.inflight.as_ref() == Some(from);
        match msg {
            MembersMsg::Busy { .. } => {
                if answer_to_us {
                    self.push_pull.inflight = None;
                    self.push_pull_retry(now);
                }
                Ok(())
            }
            MembersMsg::List {
                members,
                reply_wanted: false,
                last,
                ..
            } if answer_to_us => {
                if self.merge_members(now, &members) {
                    self.push_pull.learned = true;
                }
                if last {
                    self.stats.push_pull_completed += 1;
                    self.push_pull_finish(now);
                }
                Ok(())
            }
            MembersMsg::List {
                from,
                members,
                reply_wanted,
                ..
            } => {
                if self.left {
                    return Ok(());
                }
                let answer = if reply_wanted {
                    let theirs: HashSet<&MemberRecord> = members.iter().collect();
                    self.live_records(|r| r.node != from && !theirs.contains(r))
                } else {
                    Vec::new()
                };
                let answer_len = answer.len() * record_len_estimate(&answer);
                if !self.take_tokens(now, size + answer_len) {
                    if reply_wanted {
                        self.stats.push_pull_refused += 1;
                        let busy = MembersMsg::Busy {
                            from: self.me.node.clone(),
                            to: from,
                        };
                        self.send_members(from_addr, &busy);
                    }
                    return Ok(());
                }
                if self.merge_members(now, &members) {
                    self.push_pull_news(now);
                }
                if reply_wanted {
                    self.stats.push_pull_answered += 1;
                    self.send_list(from_addr, &from, answer, false);
                }
                Ok(())
            }
        }
    }

    /// Sends this node's list to `target` (or to a random live member other than the one asked
    /// last), asking for the target's list back.
    fn push_pull_start(&mut self, now: Instant, target: Option<Member>) {
        let avoid = self.push_pull.last_asked.clone();
        let Some(target) = target.or_else(|| self.random_peer(avoid.as_ref())) else {
            // Nobody to ask: this exchange is over.
            self.push_pull_finish(now);
            return;
        };
        let mine = self.live_records(|r| r.node != target.node);
        self.stats.push_pull_started += 1;
        self.send_list(target.addr, &target.node, mine, true);
        self.push_pull.inflight = Some(target.node.clone());
        self.push_pull.last_asked = Some(target.node);
        self.push_pull.next_at = None;
        let wait = self.config.sync_timeout;
        self.push_pull_schedule(now + wait);
    }

    /// The request was refused or not answered: ask someone else a moment later, or give up.
    fn push_pull_retry(&mut self, now: Instant) {
        let Some(cfg) = self.config.push_pull else {
            return;
        };
        self.push_pull.attempt += 1;
        if self.push_pull.attempt > cfg.attempts {
            self.push_pull_given_up(now);
            return;
        }
        let pause = self.jitter(self.config.swim.probe_period / 4);
        self.push_pull_schedule(now + pause);
    }

    /// Nobody answered the current exchange (every attempt refused as busy or timed out). That
    /// says nothing about whether the node's view is complete, so it does not count as a quiet
    /// exchange: the next one comes ½–1 × probe period × 2^(exchanges given up in a row) later,
    /// never later than the periodic interval. (When many nodes join at once, most of the first
    /// requests go to the seeds and are refused; counting them as quiet sent nodes that knew a
    /// tenth of the cluster to the periodic interval.)
    fn push_pull_given_up(&mut self, now: Instant) {
        let Some(cfg) = self.config.push_pull else {
            return;
        };
        let st = &mut self.push_pull;
        st.inflight = None;
        st.attempt = 1;
        st.given_up = st.given_up.saturating_add(1);
        let shift = (st.given_up - 1).min(16);
        let mut wait = self.config.swim.probe_period * (1u32 << shift);
        if let Some(every) = cfg.interval {
            wait = wait.min(every);
        }
        let at = now + self.jitter(wait);
        self.push_pull_next(at);
    }

    /// The current exchange is over: plan the next one by what the last ones taught.
    fn push_pull_finish(&mut self, now: Instant) {
        let Some(cfg) = self.config.push_pull else {
            return;
        };
        let st = &mut self.push_pull;
        st.inflight = None;
        st.attempt = 1;
        st.given_up = 0;
        if std::mem::take(&mut st.learned) {
            st.quiet = 0;
        } else {
            st.quiet = st.quiet.saturating_add(1);
        }
        let wait = if st.quiet < cfg.followups.max(1) {
            // Uniform in [p/2, p) with p = probe period × 2^(quiet exchanges in a row).
            let shift = st.quiet.min(16);
            self.config.swim.probe_period * (1u32 << shift)
        } else if let Some(every) = cfg.interval {
            every
        } else {
            st.next_at = None;
            st.generation += 1;
            return;
        };
        let at = now + self.jitter(wait);
        self.push_pull_next(at);
    }

    /// A member list taught this node a member it did not know: the next exchange comes within
    /// a probe period, so the news travels on.
    fn push_pull_news(&mut self, now: Instant) {
        let st = &mut self.push_pull;
        if !st.joined || self.left {
            return;
        }
        st.learned = true;
        if st.inflight.is_some() {
            // Counted when the exchange in flight ends.
            return;
        }
        let soon = now + self.config.swim.probe_period;
        if st.next_at.is_some_and(|at| at <= soon) {
            return;
        }
        st.quiet = 0;
        let at = now + self.jitter(self.config.swim.probe_period);
        self.push_pull_next(at);
    }

    /// Plans the next exchange at `at`.
    fn push_pull_next(&mut self, at: Instant) {
        self.push_pull.next_at = Some(at);
        self.push_pull_schedule(at);
    }

    fn push_pull_schedule(&mut self, at: Instant) {
        self.push_pull.generation += 1;
        let generation = self.push_pull.generation;
        self.timers.push(at, TimerKind::PushPull(generation));
    }

    fn random_peer(&mut self, avoid: Option<&NodeId>) -> Option<Member> {
        use rand::RngExt;
        let candidates = self
            .peers
            .values()
            .filter(|m| Some(&m.node) != avoid)
            .count();
        if candidates == 0 {
            return None;
        }
        let k = self.rng.random_range(0..candidates);
        self.peers
            .values()
            .filter(|m| Some(&m.node) != avoid)
            .nth(k)
            .cloned()
    }

    /// Every member SWIM believes alive (this node excluded) that passes `keep`.
    fn live_records(&self, keep: impl Fn(&MemberRecord) -> bool) -> Vec<MemberRecord> {
        self.swim
            .iter_membership_state()
            .filter(|m| m.state() == foca::State::Alive && m.id().is_real())
            .map(|m| MemberRecord {
                node: m.id().node.clone(),
                addr: m.id().addr,
                bump: m.id().bump,
                incarnation: m.incarnation(),
            })
            .filter(|r| r.node != self.me.node && keep(r))
            .collect()
    }

    /// Feeds the members of a list that SWIM does not already know as live to foca; true when
    /// that made a member live here that was not.
    fn merge_members(&mut self, now: Instant, members: &[MemberRecord]) -> bool {
        let me = &self.me;
        let peers = &self.peers;
        let fresh: Vec<foca::Member<Member>> = members
            .iter()
            .map(|r| Member {
                node: r.node.clone(),
                addr: r.addr,
                bump: r.bump,
            })
            .zip(members.iter().map(|r| r.incarnation))
            .filter(|(m, _)| {
                m.is_real()
                    && m.node != me.node
                    && m.addr != me.addr
                    && peers.get(&m.node) != Some(m)
            })
            .map(|(m, inc)| foca::Member::new(m, inc, foca::State::Alive))
            .collect();
        if fresh.is_empty() {
            return false;
        }
        let before = self.stats.push_pull_learned;
        let peers_before = self.peers.len();
        if let Err(e) = self
            .swim
            .apply_many(fresh.into_iter(), false, &mut self.swim_rt)
        {
            tracing::debug!(error = %e, "member list not applied");
        }
        self.drain_swim(now);
        let learned = self.peers.len().saturating_sub(peers_before) as u64;
        self.stats.push_pull_learned = before + learned;
        learned > 0
    }

    /// Sends `records` to `to` in parts of at most [`MAX_MEMBERS_PER_MSG`].
    fn send_list(&mut self, addr: SocketAddr, to: &NodeId, records: Vec<MemberRecord>, ask: bool) {
        let parts = records.len().div_ceil(MAX_MEMBERS_PER_MSG).max(1);
        let mut rest = records.into_iter();
        for k in 0..parts {
            let members: Vec<MemberRecord> = rest.by_ref().take(MAX_MEMBERS_PER_MSG).collect();
            let last = k + 1 == parts;
            let msg = MembersMsg::List {
                from: self.me.node.clone(),
                to: to.clone(),
                members,
                reply_wanted: ask && last,
                last,
            };
            self.send_members(addr, &msg);
        }
    }

    fn send_members(&mut self, to: SocketAddr, msg: &MembersMsg) {
        match wire::encode(&SyncMsg::V1(SyncV1::Members(msg.clone()))) {
            Ok(payload) => {
                let len = payload.len() as u64;
                self.stats.sync_bytes_sent += len;
                self.stats.push_pull_bytes_sent += len;
                self.outbox.push_back(Transmit {
                    to,
                    class: TrafficClass::Sync,
                    payload,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "member list not encodable");
                self.stats.encode_errors += 1;
            }
        }
    }

    /// Takes `cost` bytes from the answering budget (refilled at
    /// `answer_bytes_per_sec`, holding at most one second's worth); false when it holds less.
    fn take_tokens(&mut self, now: Instant, cost: usize) -> bool {
        let Some(cfg) = self.config.push_pull else {
            return false;
        };
        let rate = cfg.answer_bytes_per_sec;
        let st = &mut self.push_pull;
        let elapsed = st
            .refilled
            .map_or(Duration::from_secs(1), |t| now.saturating_duration_since(t));
        let refill =
            u64::try_from(elapsed.as_micros().saturating_mul(u128::from(rate)) / 1_000_000)
                .unwrap_or(u64::MAX);
        st.tokens = st.tokens.saturating_add(refill).min(rate);
        st.refilled = Some(now);
        let cost = u64::try_from(cost).unwrap_or(u64::MAX);
        if cost > st.tokens {
            return false;
        }
        st.tokens -= cost;
        true
    }
}

/// Encoded bytes per record of a list, estimated from its first record (records of one
/// cluster differ only by a few bytes of name).
fn record_len_estimate(records: &[MemberRecord]) -> usize {
    records
        .first()
        .and_then(|r| wire::encoded_len(r).ok())
        .unwrap_or(0)
}
