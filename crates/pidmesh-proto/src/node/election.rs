//! Singleton election: claims, leases vouched for by a quorum, and the holder's state machine.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use pidmesh_crdt::Dot;
use pidmesh_wire::{
    self as wire, Key, NodeId, OriginDelta, Pid, SyncMsg, SyncV1, TrafficClass, Value, WireEntry,
};

use crate::entry::{Entry, Event, Reason};
use crate::error::RegisterError;
use crate::member::Member;
use crate::resolver::SINGLETON_RUNNING_META;
use crate::singleton::{
    ClaimAnswer, Lease, Phase, ROUNDS_KEPT, SingletonPolicy, SingletonSlot, StopReason,
};
use crate::timers::TimerKind;

use super::{Node, entry_of};

impl Node {
    // ----- singletons ------------------------------------------------------------------------

    /// Makes this node a candidate for the singleton `name` under `policy`. The node claims the
    /// unique name when it is free and the policy allows, and emits
    /// [`Event::SingletonStarted`] / [`Event::SingletonStopped`] as it starts or must stop
    /// running it. Returns the pid that holds the name while this node is the holder.
    ///
    /// # Errors
    /// [`RegisterError::InvalidName`], or [`RegisterError::Stopped`] after leaving. Registering the
    /// same name twice replaces nothing and returns the existing pid.
    pub fn add_singleton(
        &mut self,
        now: Instant,
        name: &str,
        policy: SingletonPolicy,
    ) -> Result<Pid, RegisterError> {
        self.add_singleton_meta(now, name, policy, Bytes::new())
    }

    /// [`Node::add_singleton`] whose claim carries the application metadata `meta` (a custom
    /// resolver reads it with [`Entry::app_meta`]; a running claim carries it after
    /// [`SINGLETON_RUNNING_META`]).
    ///
    /// # Errors
    /// As [`Node::add_singleton`], plus [`RegisterError::MetaTooLarge`] when `meta` and the
    /// running marker do not fit [`wire::MAX_META_LEN`], and
    /// [`RegisterError::AlreadyRegistered`] when this node holds a strict registration of the name.
    pub fn add_singleton_meta(
        &mut self,
        now: Instant,
        name: &str,
        policy: SingletonPolicy,
        meta: Bytes,
    ) -> Result<Pid, RegisterError> {
        if self.left {
            return Err(RegisterError::Stopped);
        }
        wire::check_key_name(name).map_err(RegisterError::InvalidName)?;
        if meta.len() + SINGLETON_RUNNING_META.len() > wire::MAX_META_LEN {
            return Err(RegisterError::MetaTooLarge(meta.len()));
        }
        if let Some(slot) = self.singletons.get(name) {
            if slot.strict {
                return Err(self.taken(name, &slot.pid));
            }
            return Ok(slot.pid.clone());
        }
        let pid = self.spawn_pid();
        self.singletons.insert(
            name.to_string(),
            SingletonSlot {
                policy,
                pid: pid.clone(),
                phase: Phase::Idle,
                meta,
                strict: false,
                ended: None,
            },
        );
        self.settle(now);
        Ok(pid)
    }

    /// `AlreadyRegistered` with the current holder of `name` (or `pid`'s bare claim).
    pub(super) fn taken(&self, name: &str, pid: &Pid) -> RegisterError {
        let entry = self.lookup(name).unwrap_or_else(|| Entry {
            key: Key::name(name),
            pid: pid.clone(),
            meta: Bytes::new(),
            registered_at: wire::Hlc::default(),
            dot: Dot::new(self.me.node.clone(), 0),
        });
        RegisterError::AlreadyRegistered(Box::new(entry))
    }

    /// Withdraws this node's candidacy for `name`: stops it if running (reason `Withdrawn`)
    /// and releases the name. Returns false if the node was not a candidate.
    pub fn remove_singleton(&mut self, now: Instant, name: &str) -> bool {
        if self.singletons.get(name).is_some_and(|s| s.strict) {
            return false;
        }
        let Some(slot) = self.singletons.remove(name) else {
            return false;
        };
        if matches!(slot.phase, Phase::Held { running: true, .. }) {
            self.events.push_back(Event::SingletonStopped {
                name: name.to_string(),
                reason: StopReason::Withdrawn,
            });
        }
        self.process_exited(now, &slot.pid);
        true
    }

    /// The state of this node's candidacy for `name` (for diagnostics).
    pub fn singleton_state(&self, name: &str) -> Option<String> {
        self.singletons.get(name).map(|s| format!("{:?}", s.phase))
    }

    /// True while this node runs the singleton `name`.
    pub fn runs_singleton(&self, name: &str) -> bool {
        self.singletons
            .get(name)
            .is_some_and(|s| matches!(s.phase, Phase::Held { running: true, .. }))
    }

    /// Nodes this one knows of, live or down, itself included (for `MajorityOfKnown`): every
    /// name in the SWIM membership, plus each seed, discovered or remembered address no known
    /// member is at (a node that has not met its seeds yet, or that restarted with its memory
    /// restored by [`Node::remember`], does not take itself for the whole cluster).
    pub fn known_nodes(&self) -> usize {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        let mut addrs: BTreeSet<SocketAddr> = BTreeSet::new();
        for m in self.swim.iter_membership_state() {
            let id = m.id();
            if !id.node.name.is_empty() {
                names.insert(&id.node.name);
                addrs.insert(id.addr);
            }
        }
        names.insert(&self.me.node.name);
        addrs.insert(self.me.addr);
        let unmet = self.unmet_addrs(&addrs);
        names.len() + unmet
    }

    /// The live SWIM view backs `policy`: enough members seen. Not needed for safety (the
    /// lease is), but it stops a holder cut off from its quorum as soon as SWIM notices.
    pub(super) fn has_quorum(&self, policy: SingletonPolicy) -> bool {
        let needed = self.quorum_size(policy, 0);
        needed <= 1 || self.peers.len() + 1 >= needed
    }

    /// How many nodes (this one included) must back a claim under `policy`, given the largest
    /// membership a voucher reported.
    pub(super) fn quorum_size(&self, policy: SingletonPolicy, reported_known: usize) -> usize {
        match policy {
            SingletonPolicy::Available => 1,
            SingletonPolicy::StaticQuorum(n) => n,
            SingletonPolicy::MajorityOfKnown => self.known_nodes().max(reported_known) / 2 + 1,
        }
    }

    /// True while the claim `dot` on `name` holds a lease from a quorum: this node (unless it
    /// promised another claim) and every peer whose vouch still counts.
    pub(super) fn lease_holds(
        &self,
        now: Instant,
        name: &str,
        dot: &Dot<NodeId>,
        slot: &SingletonSlot,
    ) -> bool {
        let Phase::Held { lease, .. } = &slot.phase else {
            return false;
        };
        let bound_elsewhere = now < self.promises_unknown_until
            || self
                .promises
                .get(name)
                .is_some_and(|(promised, until)| promised.actor != dot.actor && *until > now);
        let vouchers = lease
            .votes
            .iter()
            .filter(|(node, until)| **until > now && self.peers.contains_key(*node))
            .count();
        !bound_elsewhere && vouchers + 1 >= self.quorum_size(slot.policy, lease.known)
    }

    /// Advances every singleton slot; see the module docs of `singleton`.
    pub(super) fn eval_singletons(&mut self, now: Instant) {
        let names: Vec<String> = self.singletons.keys().cloned().collect();
        for name in names {
            let Some(mut slot) = self.singletons.get(&name).cloned() else {
                continue;
            };
            let quorum = !self.left && self.has_quorum(slot.policy);
            // Claim the name when it is free (a name held by anyone, even contested with no
            // winner under kill-both, is not free) and the live view has a quorum.
            if slot.phase == Phase::Idle
                && slot.ended.is_none()
                && quorum
                && self.map.get(&Key::name(name.as_str())).is_empty()
                && self.live_pids.contains(&slot.pid.local)
            {
                let entry =
                    self.add_own(now, Key::name(name.as_str()), &slot.pid, slot.meta.clone());
                slot.phase = Phase::Held {
                    dot: entry.dot,
                    running: false,
                    lease: Lease::new(now),
                };
            }
            let was_running = matches!(slot.phase, Phase::Held { running: true, .. });
            slot.phase = self.advance_held(now, &name, &slot, quorum);
            if let Some(s) = self.singletons.get_mut(&name) {
                if s.strict && was_running && slot.phase == Phase::Idle && s.ended.is_none() {
                    // The reason is that of the stop event advance_held just emitted.
                    s.ended = Some(
                        self.events
                            .iter()
                            .rev()
                            .find_map(|e| match e {
                                Event::SingletonStopped { name: n, reason } if *n == name => {
                                    Some(*reason)
                                }
                                _ => None,
                            })
                            .unwrap_or(StopReason::LostName),
                    );
                }
                s.phase = slot.phase;
            }
        }
    }

    /// One step of a held claim: follow its entry, start, stop, renew.
    pub(super) fn advance_held(
        &mut self,
        now: Instant,
        name: &str,
        slot: &SingletonSlot,
        quorum: bool,
    ) -> Phase {
        let Phase::Held {
            running,
            lease,
            dot: held_dot,
        } = &slot.phase
        else {
            return Phase::Idle;
        };
        let (mut running, mut lease) = (*running, lease.clone());
        let holder = self.lookup(name);
        // The claim follows its pid's entry under the name (whatever its current dot).
        let Some(entry) = holder.filter(|e| e.pid == slot.pid) else {
            // Lost to another claim, or removed: release whatever we still hold.
            if running {
                self.stop_own_run(now, name, held_dot.clone(), StopReason::LostName);
            }
            let ours: Vec<Dot<NodeId>> = self
                .entries(&Key::name(name))
                .into_iter()
                .filter(|e| e.pid == slot.pid)
                .map(|e| e.dot)
                .collect();
            if !ours.is_empty() {
                self.remove_own(now, &ours, Reason::Normal);
            }
            return Phase::Idle;
        };
        let leased = !slot.policy.needs_quorum() || self.lease_holds(now, name, &entry.dot, slot);
        if !quorum || (running && !leased) {
            if running {
                self.stop_own_run(now, name, held_dot.clone(), StopReason::LostQuorum);
            }
            // Release the name so a side that has a quorum can take over.
            self.remove_own(now, std::slice::from_ref(&entry.dot), Reason::Normal);
            return Phase::Idle;
        }
        let mut entry = entry;
        if !running && leased {
            running = true;
            entry = self.mark_running(now, entry);
            self.events.push_back(Event::SingletonStarted {
                name: name.to_string(),
                entry: entry.clone(),
            });
        }
        if slot.policy.needs_quorum() {
            let lease_len = self.config.singleton_lease();
            if now >= lease.next_round {
                self.claim_round += 1;
                let round = self.claim_round;
                lease.rounds.push_back((round, now));
                while lease.rounds.len() > ROUNDS_KEPT {
                    lease.rounds.pop_front();
                }
                self.send_claim_checks(name, &entry, round);
                // A running holder renews four times per lease; a claimant still collecting
                // vouches asks again soon.
                lease.next_round = now
                    + if running {
                        lease_len / 4
                    } else {
                        (self.config.sync_interval / 2).min(lease_len / 4)
                    };
            }
            // Wake up for the next round, and the moment a vouch stops counting.
            let wake = lease
                .votes
                .values()
                .copied()
                .filter(|&until| until > now)
                .chain([lease.next_round])
                .min()
                .unwrap_or(lease.next_round);
            if lease.wake.is_none_or(|w| w <= now || wake < w) {
                self.timers.push(wake, TimerKind::Singleton);
                lease.wake = Some(wake);
            }
        }
        Phase::Held {
            dot: entry.dot,
            running,
            lease,
        }
    }

    /// A run this node stopped on its own decision (lost quorum or name) may take up to
    /// `lease / 8` to return (the prompt-stop allowance, docs/singletons.md). This node counted
    /// itself for that run, so it must not vouch for another node's claim meanwhile: it binds
    /// itself with a promise to its own claim for `lease / 8`. (A withdrawal or a graceful
    /// shutdown waits for the run to return before releasing the name, and needs none.)
    /// Reports that this node's run of `name` stops (for `reason`, or `Shutdown` once the node
    /// left) and binds the node while that run may still be returning.
    fn stop_own_run(&mut self, now: Instant, name: &str, held: Dot<NodeId>, reason: StopReason) {
        let reason = if self.left {
            StopReason::Shutdown
        } else {
            reason
        };
        self.events.push_back(Event::SingletonStopped {
            name: name.to_string(),
            reason,
        });
        self.promise_own_stop(now, name, held);
    }

    pub(super) fn promise_own_stop(&mut self, now: Instant, name: &str, own: Dot<NodeId>) {
        if self.left {
            return;
        }
        let until = now + self.config.singleton_lease() / 8;
        if self
            .promises
            .get(name)
            .is_some_and(|(p, u)| p.actor != self.me.node && *u >= until)
        {
            return;
        }
        self.promises.insert(name.to_string(), (own, until));
    }

    /// Marks our claim as running ([`SINGLETON_RUNNING_META`]; same registration time, new
    /// dot), so the resolver prefers it to claims that never ran. Returns the claim as it is now.
    pub(super) fn mark_running(&mut self, now: Instant, entry: Entry) -> Entry {
        let mut meta = Vec::with_capacity(SINGLETON_RUNNING_META.len() + entry.meta.len());
        meta.extend_from_slice(SINGLETON_RUNNING_META);
        meta.extend_from_slice(entry.app_meta());
        let value = Value {
            pid: entry.pid.local,
            meta: Bytes::from(meta),
            at: entry.registered_at,
        };
        let Some((delta, previous)) = self.map.replace(&self.me.node, &entry.dot, value) else {
            return entry;
        };
        let marked = entry_of(&entry.key, &delta.adds[0].1);
        self.log_removal(marked.dot.seq, [previous.dot.seq]);
        self.queue_delta(now, delta);
        self.events.push_back(Event::MetaUpdated {
            entry: marked.clone(),
            previous: previous.value.meta,
        });
        self.dirty.insert(entry.key);
        marked
    }

    /// Sends our claim on `name` to every live peer, as check round `round`.
    pub(super) fn send_claim_checks(&mut self, name: &str, entry: &Entry, round: u64) {
        let claim = OriginDelta {
            seen: vec![(entry.dot.seq, entry.dot.seq)],
            adds: vec![WireEntry {
                seq: entry.dot.seq,
                key: entry.key.clone(),
                value: Value {
                    pid: entry.pid.local,
                    meta: entry.meta.clone(),
                    at: entry.registered_at,
                },
            }],
            released: Vec::new(),
        };
        let targets: Vec<Member> = self.peers.values().cloned().collect();
        for peer in targets {
            let msg = SyncMsg::V1(SyncV1::ClaimCheck {
                from: self.me.node.clone(),
                to: peer.node.clone(),
                name: name.into(),
                claim: claim.clone(),
                round,
            });
            self.send(peer.addr, TrafficClass::Sync, &msg);
        }
    }

    /// Answers a claim check for `claim` on `name`. This node **vouches** (promises the
    /// claimant not to vouch for another node's claim for [`Config::singleton_promise`]) when
    /// nothing binds it elsewhere: no running promise to another node's claim, no claim of its
    /// own under the name, and the claimant's claim is the one that holds the name here. It
    /// then answers with the claimant's own entries only ("only yours"). Otherwise it answers
    /// with every claim it holds under the name, plus the claim it promised not to betray if
    /// that one is gone here but the promise still runs.
    ///
    /// Other nodes' claims that lose to the claimant's here (a claim the cut-off side made and
    /// brings back at a heal) do not stop the vouch: safety rests on promises alone (two
    /// quorums share a node, and that node never holds two running promises to different
    /// nodes), and a holder whose vouchers briefly saw such a claim must not lose its lease.
    pub(super) fn vouch(
        &mut self,
        now: Instant,
        name: &str,
        claim: Dot<NodeId>,
    ) -> Vec<(NodeId, u64)> {
        let mut holders: Vec<(NodeId, u64)> = self
            .entries(&Key::name(name))
            .into_iter()
            .map(|e| (e.dot.actor, e.dot.seq))
            .collect();
        let mut bound = false;
        match self.promises.get(name) {
            Some((promised, until)) if *until > now && promised.actor != claim.actor => {
                bound = true;
                let p = (promised.actor.clone(), promised.seq);
                if !holders.contains(&p) {
                    holders.push(p);
                }
            }
            Some((_, until)) if *until <= now => {
                self.promises.remove(name);
            }
            _ => {}
        }
        let own_claim =
            claim.actor != self.me.node && holders.iter().any(|(actor, _)| *actor == self.me.node);
        let wins_here = self
            .lookup(name)
            .is_some_and(|e| e.dot.actor == claim.actor);
        if !bound && !own_claim && wins_here {
            let until = now + self.config.singleton_promise();
            self.promises
                .insert(name.to_string(), (claim.clone(), until));
            // The claimant's claim and, while a metadata update travels, the entry it replaces.
            holders.retain(|(actor, _)| *actor == claim.actor);
        }
        holders
    }

    /// A leaving node takes back its vouches: every claimant it promised is told at once (an
    /// empty [`SyncV1::ClaimAck`]), so a holder left without a quorum stops within a round
    /// trip instead of running until the vouch runs out. The promises themselves are dropped:
    /// a node that left vouches for nothing.
    pub(super) fn withdraw_vouches(&mut self, now: Instant) {
        let promises = std::mem::take(&mut self.promises);
        let known = u32::try_from(self.known_nodes()).unwrap_or(u32::MAX);
        for (name, (claim, until)) in promises {
            if until <= now || claim.actor == self.me.node {
                continue;
            }
            let Some(addr) = self.peers.get(&claim.actor).map(|m| m.addr) else {
                continue;
            };
            let msg = SyncMsg::V1(SyncV1::ClaimAck {
                from: self.me.node.clone(),
                to: claim.actor,
                name: name.as_str().into(),
                claim_seq: claim.seq,
                round: 0,
                known,
                holders: Vec::new(),
            });
            self.send(addr, TrafficClass::Sync, &msg);
        }
    }

    /// Records a peer's answer to our claim: a vouch counts until a lease after the round it
    /// answers was sent; any other answer withdraws the peer's earlier vouch. A competing claim
    /// the peer reports is fetched from its owner at once.
    pub(super) fn on_claim_ack(&mut self, now: Instant, name: &str, ack: ClaimAnswer) {
        let lease_len = self.config.singleton_lease();
        // Only claims of ours (the claim and, while a metadata update travels, the entry it
        // replaces) under the name: the peer vouches.
        let clean =
            !ack.holders.is_empty() && ack.holders.iter().all(|(actor, _)| *actor == self.me.node);
        // Our claim wins here, so what the peer reports instead is on its way out (a release
        // or a conflict loser's removal still travelling, or a promise about to run out): ask
        // again soon rather than a whole round later.
        let stale = !clean
            && self
                .lookup(name)
                .is_some_and(|e| e.dot.actor == self.me.node);
        let soon = now + self.config.sync_interval / 20;
        // The answer counts for the claim that sent the round (rounds are numbered per node and
        // remembered per claim).
        // An empty answer withdraws the peer's vouch whatever round it names (a voucher that
        // leaves gracefully says so; see `withdraw_vouches`). Dropping a vouch is always safe.
        if ack.holders.is_empty()
            && let Some(slot) = self.singletons.get_mut(name)
            && let Phase::Held { lease, .. } = &mut slot.phase
        {
            lease.votes.remove(&ack.from);
        }
        if let Some(slot) = self.singletons.get_mut(name)
            && let Phase::Held { lease, .. } = &mut slot.phase
            && let Some(sent) = lease.sent_at(ack.round)
        {
            if !clean {
                lease.votes.remove(&ack.from);
                if stale && soon < lease.next_round {
                    lease.next_round = soon;
                    lease.wake = Some(soon);
                    self.timers.push(soon, TimerKind::Singleton);
                }
            } else {
                let until = sent + lease_len;
                let vote = lease.votes.entry(ack.from.clone()).or_insert(until);
                *vote = (*vote).max(until);
                lease.known = lease.known.max(ack.known);
            }
        }
        if clean {
            return;
        }
        for (origin, seq) in ack.holders {
            if origin != self.me.node
                && self.map.get_dot(&Dot::new(origin.clone(), seq)).is_none()
                && let Some(peer) = self.peers.get(&origin).cloned()
            {
                self.send_digest(now, &peer);
            }
        }
    }
}
