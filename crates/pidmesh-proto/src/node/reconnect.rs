//! Fast reconnection after a partition (see [`crate::Reconnect`]).
//!
//! When a partition heals, both sides hold the other down and SWIM talks to live members only:
//! the first exchange across the healed link comes from an announce. The seed announcer backs
//! off (`announce_min` doubling up to `announce_max`), so on its own a heal is noticed up to
//! seconds late. Here a node keeps announcing, at a short fixed interval and for a bounded
//! window, to the addresses of members it declared down, and while it is cut off from everyone,
//! to every address it knows. A reachable member answers the announce; SWIM's identity renewal
//! (`TurnUndead`, `Rejoin`) then brings both sides back within a few round trips.
//!
//! Bounded cost: at most `max_per_tick` announces per tick, the targets taken in turn from a
//! rotating cursor, so the rate is bounded whatever the cluster size. The timer runs only while
//! something is in a window.
//!
//! Telling a failure from a graceful leave. Both reach a member as the same SWIM "down" update,
//! mostly second-hand, but they differ in the SWIM incarnation the update carries:
//! * foca announces a leave as the leaver's own identity down at incarnation 0, always;
//! * a verdict carries the incarnation the member was suspected at, and every node raises its
//!   own incarnation to 1 when it starts, before its first packet, and again right after it
//!   renews its identity ([`Node::raise_incarnation`]): every header it sends carries it, so
//!   the others know it at 1 or more, suspect it at 1 or more, and declare it down at 1 or
//!   more. (The few packets foca sends with a renewal itself still carry 0: a verdict reached
//!   on those alone falls under the rule for incarnation 0 below.)
//!
//! So a member declared down is probed when this node reached the verdict itself, or the
//! "down" it received carries an incarnation above 0, or (a member that never raised its
//! incarnation, e.g. one of an older release) carries 0 and this node saw it suspected at 0.
//!
//! Not probed:
//! * members that told this node themselves they are leaving (foca's leave, see `liveness.rs`),
//!   and members whose "down" carries incarnation 0 (a leave, learned second-hand), unless they
//!   were suspected at incarnation 0;
//! * addresses a live member holds, and anything once this node left.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use foca::{Incarnation, State};
use pidmesh_wire::NodeId;

use crate::member::Member;
use crate::timers::TimerKind;

use super::Node;

/// Most members remembered as suspected before the oldest half is forgotten.
const SUSPECTED_CAP: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct ReconnectState {
    /// Addresses of members declared down (by a verdict, not a leave), and when.
    down: BTreeMap<SocketAddr, Instant>,
    /// When this node found itself cut off from every member; `None` while it is in touch.
    cut_off_since: Option<Instant>,
    /// The last address probed: the next tick starts after it.
    cursor: Option<SocketAddr>,
    /// A `TimerKind::Reconnect` is pending.
    scheduled: bool,
    /// Members seen suspected (by this node or in gossip): when, and at which incarnation.
    suspected: HashMap<NodeId, (Instant, Incarnation)>,
    /// Live peers reported down in a SWIM packet: the renewal (bump) the report was about, the
    /// highest incarnation reported, and when.
    down_seen: HashMap<NodeId, (u16, Incarnation, Instant)>,
}

/// Keeps `map` under [`SUSPECTED_CAP`] entries before `key` is added: the older half goes.
fn make_room<V>(map: &mut HashMap<NodeId, V>, key: &NodeId, at: impl Fn(&V) -> Instant) {
    if map.len() >= SUSPECTED_CAP && !map.contains_key(key) {
        let mut times: Vec<Instant> = map.values().map(&at).collect();
        times.sort_unstable();
        let cut = times[times.len() / 2];
        map.retain(|_, v| at(v) > cut);
    }
}

impl Node {
    /// `node` was seen suspected at `incarnation` (this node started a suspicion, or a packet
    /// carried one).
    pub(super) fn saw_suspected(&mut self, now: Instant, node: &NodeId, incarnation: Incarnation) {
        let s = &mut self.reconnect.suspected;
        make_room(s, node, |v| v.0);
        s.insert(node.clone(), (now, incarnation));
    }

    /// A SWIM packet reports `m` down at `incarnation` (seen before foca applies it).
    pub(super) fn saw_down(&mut self, now: Instant, m: &Member, incarnation: Incarnation) {
        if self.peers.get(&m.node).is_none_or(|p| p.bump != m.bump) {
            // Not a live peer here: foca reports no "down" for it (or did already).
            return;
        }
        let d = &mut self.reconnect.down_seen;
        make_room(d, &m.node, |v| v.2);
        let inc = match d.get(&m.node) {
            Some(&(bump, inc, _)) if bump == m.bump => inc.max(incarnation),
            _ => incarnation,
        };
        d.insert(m.node.clone(), (m.bump, inc, now));
    }

    /// Raises this node's SWIM incarnation to 1 (foca starts it at 0, and at 0 again after
    /// renewing the identity), so that a verdict about this node never carries incarnation 0,
    /// which only a graceful leave does. Done by handing foca a suspicion of itself, which it
    /// refutes the standard way.
    pub(super) fn raise_incarnation(&mut self) {
        let me = foca::Member::new(self.me.clone(), 0, State::Suspect);
        if let Err(e) = self
            .swim
            .apply_many(std::iter::once(me), true, &mut self.swim_rt)
        {
            tracing::debug!(error = %e, "raising the incarnation failed");
        }
    }

    /// True if the "down" of `m` just applied is a failure verdict rather than a graceful leave
    /// (see the module documentation). Consumes what was recorded about `m`: ask once per
    /// "down".
    pub(super) fn is_verdict(&mut self, m: &Member) -> bool {
        let suspected = self.reconnect.suspected.remove(&m.node).map(|(_, inc)| inc);
        let seen = match self.reconnect.down_seen.remove(&m.node) {
            Some((bump, inc, _)) if bump == m.bump => Some(inc),
            _ => None,
        };
        match seen {
            // Not from a packet: this node's own suspicion ran out.
            None => true,
            Some(inc) if inc > 0 => true,
            Some(_) => suspected == Some(0),
        }
    }

    /// SWIM declared `m` down (possibly a verdict this node doubts for now). Unless `m` left on
    /// purpose (`leave`: it said so itself, or [`Node::is_verdict`] found the "down" is a
    /// leave), its address is probed for `Reconnect::window` from now.
    pub(super) fn reconnect_down(&mut self, now: Instant, m: &Member, leave: bool) {
        if self.config.reconnect.is_none() || leave || self.left {
            return;
        }
        if m.addr != self.me.addr {
            self.reconnect.down.insert(m.addr, now);
            self.reconnect_arm(now);
        }
    }

    /// This node lost touch with every member (or renewed its identity): every known address
    /// is probed for `Reconnect::window` from now.
    pub(super) fn reconnect_cut_off(&mut self, now: Instant) {
        if self.config.reconnect.is_none() || self.left {
            return;
        }
        if self.swim_active || self.reconnect.cut_off_since.is_none() {
            self.reconnect.cut_off_since = Some(now);
        }
        self.reconnect_arm(now);
    }

    /// This node is in touch with a member again.
    pub(super) fn reconnect_in_touch(&mut self) {
        self.reconnect.cut_off_since = None;
    }

    /// A member is up at `addr`: nothing to probe there any more, and this node is no longer
    /// cut off (SWIM does not always say so: after renewing its identity a node may stay
    /// connected as far as foca is concerned, and no `Active` follows).
    pub(super) fn reconnect_up(&mut self, addr: SocketAddr) {
        self.reconnect.down.remove(&addr);
        self.reconnect.cut_off_since = None;
    }

    fn reconnect_arm(&mut self, now: Instant) {
        let Some(rc) = self.config.reconnect else {
            return;
        };
        if !self.reconnect.scheduled {
            self.reconnect.scheduled = true;
            self.timers.push(now + rc.interval, TimerKind::Reconnect);
        }
    }

    /// The reconnection timer: announce to the next targets in turn, at most `max_per_tick`.
    pub(super) fn reconnect_tick(&mut self, now: Instant) {
        self.reconnect.scheduled = false;
        let Some(rc) = self.config.reconnect else {
            return;
        };
        if self.left {
            self.reconnect.down.clear();
            self.reconnect.cut_off_since = None;
            return;
        }
        let live: BTreeSet<SocketAddr> = self.peers.values().map(|m| m.addr).collect();
        self.reconnect
            .down
            .retain(|_, at| now.saturating_duration_since(*at) < rc.window);
        if self
            .reconnect
            .cut_off_since
            .is_some_and(|at| now.saturating_duration_since(at) >= rc.window)
        {
            self.reconnect.cut_off_since = None;
        }
        let mut targets: BTreeSet<SocketAddr> = self
            .reconnect
            .down
            .keys()
            .copied()
            .filter(|a| !live.contains(a))
            .collect();
        if self.reconnect.cut_off_since.is_some() {
            targets.extend(
                self.swim
                    .iter_membership_state()
                    .map(|m| m.id().addr)
                    .chain(self.seeds.iter().copied())
                    .chain(self.discovered.iter().copied())
                    .chain(self.remembered.keys().copied())
                    .filter(|a| !live.contains(a)),
            );
        }
        // Peers whose "down" this node doubts (still live peers here): an announce makes a
        // reachable one renew its identity sooner, which settles the doubt.
        let doubted = self.doubted_addrs();
        targets.extend(doubted.iter().copied());
        targets.remove(&self.me.addr);
        let in_window = !self.reconnect.down.is_empty() || self.reconnect.cut_off_since.is_some();
        if targets.is_empty() {
            if in_window || !doubted.is_empty() {
                self.reconnect_arm(now);
            }
            return;
        }
        // The next `max_per_tick` targets after the cursor, wrapping around.
        let take = rc.max_per_tick.max(1).min(targets.len());
        let after: Vec<SocketAddr> = match self.reconnect.cursor {
            Some(c) => targets
                .range((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                .chain(targets.range(..=c))
                .copied()
                .take(take)
                .collect(),
            None => targets.iter().copied().take(take).collect(),
        };
        for addr in &after {
            if let Err(e) = self
                .swim
                .announce(Member::placeholder(*addr), &mut self.swim_rt)
            {
                tracing::debug!(error = %e, "reconnect announce failed");
            }
            self.stats.reconnect_probes += 1;
        }
        self.reconnect.cursor = after.last().copied();
        self.drain_swim(now);
        if in_window || !doubted.is_empty() {
            self.reconnect_arm(now);
        }
    }
}
