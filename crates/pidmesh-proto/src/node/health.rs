//! Lifeguard around foca: local health awareness and dynamic suspicion (see
//! [`crate::Lifeguard`]).
//!
//! foca hands every timer it wants to the node (`AccumulatingRuntime::to_schedule`), and the
//! node decides when to fire it. That is the lever: with Lifeguard on,
//! * `ProbeRandomMember` (the probe interval) and `SendIndirectProbe` (the direct probe
//!   timeout) wait `1 + score` times longer, `score` being this node's health score;
//! * `ChangeSuspectToDown` (a suspicion this node started after its own probe failed) is kept
//!   here instead of in the timer queue, and handed to foca at a deadline that starts at
//!   `suspicion_max_factor × suspect_to_down_after` (times `1 + score`) and falls towards
//!   `suspect_to_down_after` as other members are heard suspecting the same member.
//!
//! The score rises by one when a probe of ours fails (foca schedules `ChangeSuspectToDown`
//! only then) or when a packet tells us we are suspected, and falls by one with each probe
//! round that ends without a failure. foca's packets name the relaying member, not the one
//! that suspected, so a confirmation is "a distinct member sent us a suspicion of that member
//! at that incarnation": a relay counts as a confirmation, which errs towards detecting
//! sooner.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use foca::{Codec, Header, Incarnation, Message, PostcardCodec, State, Timer};
use pidmesh_wire::{Datagram, NodeId, TrafficClass};

use crate::config::Lifeguard;
use crate::member::Member;
use crate::timers::TimerKind;

use super::Node;

/// One suspicion this node started, waiting for its deadline.
#[derive(Debug)]
struct Suspicion {
    timer: Timer<Member>,
    started: Instant,
    /// The timeout foca asked for (the minimum).
    base: Duration,
    /// The health multiplier when it started.
    multiplier: u32,
    confirmed_by: BTreeSet<NodeId>,
}

impl Suspicion {
    fn deadline(&self, lg: &Lifeguard) -> Instant {
        let min = self.base * self.multiplier;
        let max = min * lg.suspicion_max_factor.max(1);
        let k = f64::from(lg.confirmations.max(1));
        let c = self.confirmed_by.len() as f64;
        let frac = ((c + 1.0).ln() / (k + 1.0).ln()).min(1.0);
        let wait = max.saturating_sub((max.saturating_sub(min)).mul_f64(frac));
        self.started + wait.max(min)
    }
}

/// Lifeguard's state on this node.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// The local health score (multiplier `1 + score`).
    score: u32,
    /// A probe of ours failed since the last probe round started.
    probe_failed: bool,
    /// Suspicions this node started, by suspected member.
    suspicions: HashMap<Member, Suspicion>,
    /// Highest score reached (for diagnostics and tests).
    peak: u32,
    /// This node's SWIM incarnation, as its latest outgoing packet said.
    incarnation: Incarnation,
    /// Suspicion notices sent to suspected members (the buddy system).
    pub(super) notices: u64,
    /// Members that just told us we are suspected, to answer with our refutation.
    accusers: Vec<Member>,
}

impl Node {
    /// Where a foca timer goes: straight into the timer queue, or (Lifeguard) stretched by
    /// the health multiplier, or held as a suspicion with a dynamic deadline.
    pub(super) fn schedule_swim(&mut self, now: Instant, after: Duration, timer: Timer<Member>) {
        let Some(lg) = self.config.lifeguard else {
            self.timers.push(now + after, TimerKind::Swim(timer));
            return;
        };
        let multiplier = 1 + self.health.score;
        match &timer {
            Timer::ProbeRandomMember(_) => {
                // A probe round starts: the previous one ended, failed or not.
                let h = &mut self.health;
                if h.probe_failed {
                    h.score = (h.score + 1).min(lg.max_health);
                } else {
                    h.score = h.score.saturating_sub(1);
                }
                h.peak = h.peak.max(h.score);
                h.probe_failed = false;
                let m = 1 + self.health.score;
                self.timers.push(now + after * m, TimerKind::Swim(timer));
            }
            Timer::SendIndirectProbe { .. } => {
                self.timers
                    .push(now + after * multiplier, TimerKind::Swim(timer));
            }
            Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } => {
                self.health.probe_failed = true;
                self.tell_suspect(member_id, *incarnation);
                // foca asks again each time a probe of a member it already suspects fails. The
                // suspicion runs from when it started: restarting the clock on every failed
                // probe would keep a member probed often (any member of a small cluster) from
                // ever being declared down.
                if self
                    .health
                    .suspicions
                    .get(member_id)
                    .is_some_and(|s| suspected_at(&s.timer) == Some(*incarnation))
                {
                    return;
                }
                let s = Suspicion {
                    timer: timer.clone(),
                    started: now,
                    base: after,
                    multiplier,
                    confirmed_by: BTreeSet::new(),
                };
                let at = s.deadline(&lg);
                self.health.suspicions.insert(member_id.clone(), s);
                self.timers.push(at, TimerKind::Suspicion);
            }
            _ => self.timers.push(now + after, TimerKind::Swim(timer)),
        }
    }

    /// Lifeguard's buddy system: tells `member` directly that we suspect it (a SWIM gossip
    /// packet from us carrying only that suspicion), so it refutes as soon as it reads it
    /// instead of waiting for the suspicion to reach it by chance before it runs out.
    fn tell_suspect(&mut self, member: &Member, incarnation: Incarnation) {
        let header = Header {
            src: self.me.clone(),
            src_incarnation: self.health.incarnation,
            dst: member.clone(),
            message: Message::Gossip,
        };
        let mut codec = PostcardCodec;
        let mut buf = BytesMut::new();
        if Codec::<Member>::encode_header(&mut codec, &header, &mut buf).is_err() {
            return;
        }
        buf.put_u16(1);
        let update = foca::Member::new(member.clone(), incarnation, State::Suspect);
        if Codec::<Member>::encode_member(&mut codec, &update, &mut buf).is_err() {
            return;
        }
        self.health.notices += 1;
        let msg = Datagram::V1 { swim: buf.freeze() };
        self.send(member.addr, TrafficClass::Membership, &msg);
    }

    /// Answers the members that told us we are suspected, straight away, with a packet whose
    /// header carries the incarnation foca just raised to refute it (any packet from a member
    /// updates the receiver's view of it). foca spreads a refutation only by gossip to a few
    /// random members; the member whose suspicion timer runs may not hear of it in time.
    pub(super) fn answer_accusers(&mut self, now: Instant) {
        if self.health.accusers.is_empty() {
            return;
        }
        // foca raised its incarnation while handling the packet: learn it from what it sends.
        self.drain_swim(now);
        for accuser in std::mem::take(&mut self.health.accusers) {
            let header = Header {
                src: self.me.clone(),
                src_incarnation: self.health.incarnation,
                dst: accuser.clone(),
                message: Message::Gossip,
            };
            let mut buf = BytesMut::new();
            if Codec::<Member>::encode_header(&mut PostcardCodec, &header, &mut buf).is_err() {
                continue;
            }
            buf.put_u16(0);
            let msg = Datagram::V1 { swim: buf.freeze() };
            self.send(accuser.addr, TrafficClass::Membership, &msg);
        }
    }

    /// Notes this node's incarnation from a packet foca wants sent (foca keeps it private).
    pub(super) fn note_sent(&mut self, packet: &[u8]) {
        if self.config.lifeguard.is_none() {
            return;
        }
        let mut buf = packet;
        if let Ok(h) = Codec::<Member>::decode_header(&mut PostcardCodec, &mut buf)
            && h.src == self.me
        {
            self.health.incarnation = h.src_incarnation;
        }
    }

    /// A packet from `from` says `member` is suspect: a confirmation of our own suspicion of
    /// it, or (about ourselves) a sign that we are slow.
    pub(super) fn heard_suspicion(&mut self, now: Instant, from: &Member, member: &Member) {
        let Some(lg) = self.config.lifeguard else {
            return;
        };
        if member.node == self.me.node {
            let h = &mut self.health;
            h.score = (h.score + 1).min(lg.max_health);
            h.peak = h.peak.max(h.score);
            if !h.accusers.contains(from) && h.accusers.len() < 16 {
                h.accusers.push(from.clone());
            }
            return;
        }
        let from = &from.node;
        if *from == self.me.node {
            return;
        }
        if let Some(s) = self.health.suspicions.get_mut(member)
            && s.confirmed_by.insert(from.clone())
        {
            let at = s.deadline(&lg).max(now);
            self.timers.push(at, TimerKind::Suspicion);
        }
    }

    /// Hands foca the suspicions whose deadline has come.
    pub(super) fn suspicions_due(&mut self, now: Instant) {
        let Some(lg) = self.config.lifeguard else {
            return;
        };
        let due: Vec<Member> = self
            .health
            .suspicions
            .iter()
            .filter(|(_, s)| s.deadline(&lg) <= now)
            .map(|(m, _)| m.clone())
            .collect();
        for m in due {
            let Some(s) = self.health.suspicions.remove(&m) else {
                continue;
            };
            if !self.suspicion_stands(&s.timer) {
                self.stats.refuted_suspicions += 1;
            } else if let Err(e) = self.swim.handle_timer(s.timer, &mut self.swim_rt) {
                tracing::debug!(error = %e, "swim timer failed");
            }
        }
        self.drain_swim(now);
    }

    /// False when `timer` is a suspicion timeout whose suspicion no longer stands: the member
    /// refuted it (a higher incarnation), was declared down already, or was replaced by a new
    /// identity. foca would do nothing then but send the member a "you are down" courtesy
    /// message (`TurnUndead`), which makes a member that refuted in time renew its identity all
    /// the same: a false down. Such timers are dropped instead.
    pub(super) fn suspicion_stands(&self, timer: &Timer<Member>) -> bool {
        let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = timer
        else {
            return true;
        };
        self.swim.iter_membership_state().any(|m| {
            m.id() == member_id && m.incarnation() == *incarnation && m.state() == State::Suspect
        })
    }

    /// The local health score now (0 = healthy; multiplier `1 + score`). Always 0 without
    /// Lifeguard.
    pub fn health_score(&self) -> u32 {
        self.health.score
    }

    /// The highest local health score this node reached.
    pub fn health_peak(&self) -> u32 {
        self.health.peak
    }
}

/// The incarnation a suspicion timeout is about (`None` for any other timer).
fn suspected_at(timer: &Timer<Member>) -> Option<Incarnation> {
    match timer {
        Timer::ChangeSuspectToDown { incarnation, .. } => Some(*incarnation),
        _ => None,
    }
}
