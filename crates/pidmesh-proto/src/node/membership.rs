//! Membership: SWIM (foca) packets and timers, announcing to seeds, peers coming up and going down, leaving.

use std::time::{Duration, Instant};

use foca::{Codec, Header, OwnedNotification, PostcardCodec};
use pidmesh_crdt::Dot;
use pidmesh_wire::{self as wire, Datagram, NodeId, TrafficClass};

use crate::entry::{Event, Reason};
use crate::member::Member;
use crate::singleton::{Phase, StopReason};
use crate::timers::TimerKind;

use crate::reject;

use super::{Node, entry_of};

impl Node {
    /// Leaves the cluster gracefully: removes every local entry, pushes that at once, and tells
    /// the other members this node is leaving. Later local operations fail with `Stopped`.
    pub fn leave_cluster(&mut self, now: Instant) {
        if self.left {
            return;
        }
        // Stop running singletons before their names are released (handover without waiting
        // for failure detection: the others see a release on purpose and start at once).
        for (name, slot) in &mut self.singletons {
            if matches!(slot.phase, Phase::Held { running: true, .. }) {
                self.events.push_back(Event::SingletonStopped {
                    name: name.clone(),
                    reason: StopReason::Shutdown,
                });
                if slot.strict {
                    slot.ended = Some(StopReason::Shutdown);
                }
            }
            slot.phase = Phase::Idle;
        }
        let dots: Vec<Dot<NodeId>> = self
            .map
            .actor_entries(&self.me.node)
            .map(|(_, s)| s.dot.clone())
            .collect();
        if !dots.is_empty() {
            self.remove_own(now, &dots, Reason::Normal);
        }
        self.flush();
        self.withdraw_vouches(now);
        self.left = true;
        self.live_pids.clear();
        // Tell SWIM a moment later, so the removals pushed above reach the peers before the
        // leave does: then they see the names released on purpose (a singleton's next holder
        // starts at once) rather than purged with a node that went down.
        self.timers
            .push(now + self.config.leave_grace, TimerKind::Leave);
    }

    /// True once the node has told the cluster it is leaving (after [`Node::leave_cluster`]
    /// and its grace period); the runtime can stop driving it then.
    pub fn has_left_swim(&self) -> bool {
        self.swim_left
    }

    pub(super) fn leave_swim(&mut self, now: Instant) {
        if self.swim_left {
            return;
        }
        if let Err(e) = self.swim.leave_cluster(&mut self.swim_rt) {
            tracing::debug!(error = %e, "swim leave failed");
        }
        self.drain_swim(now);
        self.swim_left = true;
    }

    /// Feeds a SWIM packet to foca, after checking that the sender it names is the peer the
    /// transport authenticated (`peer_name`): a member may speak only for itself. A packet
    /// that fails the check reaches neither foca nor the health bookkeeping.
    pub(super) fn on_datagram(
        &mut self,
        now: Instant,
        peer_name: Option<&str>,
        bytes: &[u8],
    ) -> Result<(), &'static str> {
        let Datagram::V1 { swim } =
            wire::decode::<Datagram>(bytes).map_err(|_| "undecodable datagram")?;
        if let Some(name) = peer_name {
            // Decode the header with the codec foca uses, so the check sees what foca would.
            let header: Header<Member> = PostcardCodec
                .decode_header(&swim[..])
                .map_err(|_| reject::UNDECODABLE_SWIM_HEADER)?;
            if &*header.src.node.name != name {
                return Err(reject::SWIM_SENDER_MISMATCH);
            }
        }
        self.peek_swim(now, &swim);
        let handled = self
            .swim
            .handle_data(&swim, &mut self.swim_rt)
            .map_err(|_| "swim rejected packet");
        self.answer_accusers(now);
        handled
    }

    /// Announces to seeds, discovered and remembered addresses that are not live members;
    /// returns the delay until the next attempt.
    pub(super) fn announce(&mut self, now: Instant) -> Duration {
        if self.left {
            return self.config.announce_max;
        }
        // Seeds, discovered and remembered addresses no live member holds (see discovery.rs).
        let mut targets = self.announce_targets(now);
        if !self.swim_active {
            // Cut off from everyone SWIM knows (after a partition, or after renewing our identity
            // when the gossip announcing it was lost): every known address, live or not, may be
            // the way back. foca does not recover from this on its own.
            targets.extend(
                self.swim
                    .iter_membership_state()
                    .map(|m| m.id().addr)
                    .filter(|a| *a != self.me.addr),
            );
        }
        if targets.is_empty() {
            self.announce_every = self.config.announce_min;
            return self.config.announce_min;
        }
        for addr in targets {
            if let Err(e) = self
                .swim
                .announce(Member::placeholder(addr), &mut self.swim_rt)
            {
                tracing::debug!(error = %e, "announce failed");
            }
            self.stats.announces += 1;
        }
        self.drain_swim(now);
        let wait = self.announce_every;
        self.announce_every = (self.announce_every * 2).min(self.config.announce_max);
        wait
    }

    /// Moves foca's outputs into the node's queues and reacts to its notifications.
    pub(super) fn drain_swim(&mut self, now: Instant) {
        while let Some((dst, data)) = self.swim_rt.to_send() {
            self.note_sent(&data);
            let msg = Datagram::V1 { swim: data };
            self.send(dst.addr, TrafficClass::Membership, &msg);
        }
        while let Some((after, timer)) = self.swim_rt.to_schedule() {
            if let foca::Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } = &timer
            {
                // This node suspects `member_id` (its probe failed), see reconnect.rs.
                self.saw_suspected(now, &member_id.node, *incarnation);
            }
            self.schedule_swim(now, after, timer);
        }
        while let Some(n) = self.swim_rt.to_notify() {
            self.on_notification(now, n);
        }
    }

    pub(super) fn on_notification(&mut self, now: Instant, n: OwnedNotification<Member>) {
        match n {
            OwnedNotification::MemberUp(m) => self.member_up(now, m),
            OwnedNotification::MemberDown(m) => {
                // A graceful leave, told by the leaver itself or learned second-hand (a "down"
                // at incarnation 0, see reconnect.rs), is applied at once and never probed.
                let leave = self.is_leaving(&m) || !self.is_verdict(&m);
                if m.is_real() && m.node != self.me.node {
                    self.reconnect_down(now, &m, leave);
                }
                if self
                    .peers
                    .get(&m.node)
                    .is_some_and(|cur| cur.bump == m.bump)
                    && !self.doubt_down(now, &m, leave)
                {
                    self.node_down(&m.node);
                }
            }
            OwnedNotification::Rename(old, new) => {
                let was_live = self
                    .peers
                    .get(&old.node)
                    .is_some_and(|cur| cur.bump == old.bump);
                if old.node != new.node {
                    // A new life (or another node) at the same address: the old one is gone.
                    if self.peers.contains_key(&old.node) {
                        self.node_down(&old.node);
                    }
                    if was_live {
                        self.member_up(now, new);
                    }
                } else if was_live {
                    // Same life, renewed SWIM identity: keep its entries, track the new identity.
                    self.liveness.renewed(&new.node);
                    self.reconnect_up(new.addr);
                    self.peers.insert(new.node.clone(), new);
                }
            }
            OwnedNotification::Rejoin(me) => {
                // foca renewed our SWIM identity after a false "down"; our NodeId is unchanged.
                // Until someone answers, we are not part of a cluster: announce at once.
                self.me = me;
                self.stats.rejoins += 1;
                // A new identity starts at incarnation 0 again: raise it (reconnect.rs).
                self.raise_incarnation();
                self.drain_swim(now);
                // Others declared us down and dropped our entries, singleton claims included.
                // A running singleton needs no special care: the peers that vouched for it keep
                // their promises until its lease ran out, and it stops then unless they vouch
                // again.
                self.lost_cluster(now);
            }
            OwnedNotification::Active => {
                self.swim_active = true;
                self.reconnect_in_touch();
            }
            OwnedNotification::Idle | OwnedNotification::Defunct => self.lost_cluster(now),
        }
    }

    pub(super) fn lost_cluster(&mut self, now: Instant) {
        if self.swim_active || self.announce_every > self.config.announce_min {
            // Restart the announcer from its shortest interval, right now.
            self.announce_every = self.config.announce_min;
            self.announce_gen += 1;
            self.timers
                .push(now, TimerKind::Announce(self.announce_gen));
        }
        // Knock at every known address at the short fixed interval for a while (reconnect.rs).
        self.reconnect_cut_off(now);
        self.swim_active = false;
        self.push_pull_reset();
    }

    pub(super) fn member_up(&mut self, now: Instant, m: Member) {
        if !m.is_real() || m.node == self.me.node {
            return;
        }
        // An older life of the same name is gone for good. Node ids order by name, then
        // incarnation: the older lives are one range (not a scan of every peer per member up).
        let first_life = NodeId::new(m.node.name.as_str(), 0);
        let stale: Vec<NodeId> = self
            .peers
            .range(first_life..m.node.clone())
            .map(|(n, _)| n.clone())
            .collect();
        for n in stale {
            self.node_down(&n);
        }
        let fresh = !self.peers.contains_key(&m.node);
        self.saw_member_at(now, m.addr);
        self.reconnect_up(m.addr);
        self.liveness.renewed(&m.node);
        self.peers.insert(m.node.clone(), m.clone());
        if fresh {
            self.events.push_back(Event::NodeUp(m.node.clone()));
            self.sync_inflight.remove(&m.node);
            self.digest_new_member(now, &m);
            self.push_pull_member_up(now, &m);
        }
    }

    pub(super) fn node_down(&mut self, node: &NodeId) {
        self.liveness.renewed(node);
        if self.peers.remove(node).is_none() {
            return;
        }
        self.peer_has.remove(node);
        self.sync_inflight.remove(node);
        // Its entries are forgotten below: if it comes back, pull them again.
        self.owe_digest(node);
        self.snapshots.retain(|job| job.to != *node);
        for (key, slot) in self.map.forget_actor(node) {
            self.losers.remove(&slot.dot);
            let entry = entry_of(&key, &slot);
            self.dirty.insert(key);
            self.events.push_back(Event::Unregistered {
                entry,
                reason: Reason::NodeDown,
            });
        }
        self.events.push_back(Event::NodeDown(node.clone()));
        self.announce_every = self.config.announce_min;
    }
}
