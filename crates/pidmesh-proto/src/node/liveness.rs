//! Liveness evidence beyond SWIM's verdicts: "down" verdicts this node has reason to doubt.
//!
//! SWIM treats "down" as final for an identity: a member declared down renews its identity
//! (foca's `Rejoin`) and comes back as a new one. When a partition heals, the side that was cut
//! off brings back the verdicts it reached while it could not hear anyone: every member of the
//! other side was "down" there. Those verdicts reach members that never lost touch with each
//! other. Applied at once, each would purge a live peer's entries (a singleton holder's claim
//! among them) and drop its vouches, though the peer was talking to this node moments earlier
//! and renews its identity within a round trip.
//!
//! So a "down" verdict about a peer this node heard from (any message, any class) less than
//! the configured suspicion time ago is *doubted*: the peer stays a live peer for up to one
//! more suspicion time. If it renews its identity meanwhile (a `Rename` or `MemberUp` of the
//! same node id), the verdict was stale and nothing is purged; otherwise it goes down then. A
//! real crash is never doubted: SWIM declares a node down only after it failed a probe and
//! then stayed silent for the whole suspicion time, so nobody heard from it that recently.
//!
//! A graceful leave is not a verdict, and is applied at once. foca announces it by sending the
//! leaving member's own identity as down, and a packet whose sender reports *itself* down marks
//! it as leaving on purpose. Members that learn of the leave second-hand tell it by the SWIM
//! incarnation the "down" carries: a leave always carries 0, while every node raises its own
//! incarnation to 1 before its first packet, so a verdict carries 1 or more (`reconnect.rs`
//! has the whole rule, including members suspected at 0).
//!
//! Safety of singletons does not depend on this (leases and promises do); it only keeps a
//! heal from tearing down what the majority side built while the cut lasted.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Buf;
use foca::{Codec, Message, PostcardCodec, State};
use pidmesh_wire::NodeId;

use crate::member::Member;
use crate::timers::TimerKind;

use super::Node;

/// Most addresses remembered as recently heard from before old ones are pruned.
const HEARD_CAP: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct Liveness {
    /// When a message from each address last arrived.
    heard: HashMap<SocketAddr, Instant>,
    /// Peers declared down by a verdict this node doubts: the identity renewal (bump) the
    /// verdict was about, and when it takes effect unless the peer renewed.
    doubted: BTreeMap<NodeId, (u16, Instant)>,
    /// Live peers that told us themselves they are leaving (foca's leave), by renewal.
    leaving: BTreeMap<NodeId, u16>,
}

impl Liveness {
    /// Records that a message from `from` arrived at `now`.
    pub(super) fn heard_from(&mut self, from: SocketAddr, now: Instant) {
        if self.heard.len() >= HEARD_CAP && !self.heard.contains_key(&from) {
            // Keep the newest half (a node hears from its peers all the time).
            let mut times: Vec<Instant> = self.heard.values().copied().collect();
            times.sort_unstable();
            let cut = times[times.len() / 2];
            self.heard.retain(|_, t| *t > cut);
        }
        self.heard.insert(from, now);
    }

    /// The peer `node` renewed its identity, came up again, or went down for good: whatever
    /// doubt there was is settled.
    pub(super) fn renewed(&mut self, node: &NodeId) {
        self.doubted.remove(node);
        self.leaving.remove(node);
    }

    /// Peers whose doubted "down" verdict is doubted right now (for diagnostics and tests).
    pub(super) fn doubted(&self) -> usize {
        self.doubted.len()
    }
}

impl Node {
    /// Looks into a SWIM packet for its sender reporting itself down (a graceful leave) and
    /// for suspicions (Lifeguard's confirmations and local health, see `health.rs`).
    /// Anything undecodable is left for foca to reject.
    pub(super) fn peek_swim(&mut self, now: Instant, packet: &[u8]) {
        let mut buf = packet;
        let mut codec = PostcardCodec;
        let Ok(header) = Codec::<Member>::decode_header(&mut codec, &mut buf) else {
            return;
        };
        if header.message == Message::Broadcast || buf.remaining() < 2 {
            return;
        }
        let src = header.src;
        let live = self
            .peers
            .get(&src.node)
            .is_some_and(|m| m.bump == src.bump);
        for _ in 0..buf.get_u16() {
            let Ok(update) = Codec::<Member>::decode_member(&mut codec, &mut buf) else {
                return;
            };
            match update.state() {
                State::Down => {
                    if live && *update.id() == src {
                        self.liveness.leaving.insert(src.node.clone(), src.bump);
                    }
                    // Its incarnation tells a verdict from a leave (reconnect.rs).
                    self.saw_down(now, update.id(), update.incarnation());
                }
                State::Suspect => {
                    let about = &update.id().node;
                    if live && *about != self.me.node {
                        // At which incarnation: a later "down" at 0 is a leave (reconnect.rs).
                        self.saw_suspected(now, about, update.incarnation());
                    }
                    if live || *about == self.me.node {
                        self.heard_suspicion(now, &src, update.id());
                    }
                }
                _ => {}
            }
        }
    }

    /// SWIM declared `m` down. Returns true if this node doubts the verdict (it heard from `m`
    /// less than a suspicion time ago) and keeps `m` as a live peer for now. A graceful leave
    /// (`leave`, whether `m` said so itself or the "down" came second-hand at incarnation 0) is
    /// never doubted.
    pub(super) fn doubt_down(&mut self, now: Instant, m: &Member, leave: bool) -> bool {
        let window = self.config.swim.suspect_to_down_after;
        let recent = self
            .liveness
            .heard
            .get(&m.addr)
            .is_some_and(|&at| now.saturating_duration_since(at) < window);
        if !recent || leave || self.left {
            return false;
        }
        let until = now + window;
        self.liveness
            .doubted
            .insert(m.node.clone(), (m.bump, until));
        self.timers.push(until, TimerKind::DoubtedDown);
        self.stats.doubted_downs += 1;
        tracing::debug!(node = %m.node, "doubting a down verdict about a peer heard from just now");
        true
    }

    /// True if `m` told this node itself that it is leaving (this identity renewal of it).
    pub(super) fn is_leaving(&self, m: &Member) -> bool {
        self.liveness.leaving.get(&m.node) == Some(&m.bump)
    }

    /// The addresses of peers whose "down" verdict this node doubts right now.
    pub(super) fn doubted_addrs(&self) -> Vec<SocketAddr> {
        self.liveness
            .doubted
            .keys()
            .filter_map(|n| self.peers.get(n).map(|m| m.addr))
            .collect()
    }

    /// Doubted verdicts whose grace ran out without the peer renewing its identity take effect.
    pub(super) fn doubted_down_due(&mut self, now: Instant) {
        let due: Vec<(NodeId, u16)> = self
            .liveness
            .doubted
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(n, (bump, _))| (n.clone(), *bump))
            .collect();
        for (node, bump) in due {
            self.liveness.doubted.remove(&node);
            if self.peers.get(&node).is_some_and(|cur| cur.bump == bump) {
                self.node_down(&node);
            }
        }
    }

    /// How many "down" verdicts this node doubts right now (see `node/liveness.rs`).
    pub fn doubted_downs(&self) -> usize {
        self.liveness.doubted()
    }
}
