//! The sans-io node.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, PostcardCodec};
use pidmesh_crdt::{Delta, Dot, DotSet, OrMap, Slot};
use pidmesh_wire::{self as wire, Key, NodeId, Pid, TrafficClass, Value};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::clock::HlcClock;
use crate::config::Config;
use crate::entry::{Entry, Event};
use crate::member::Member;
use crate::reader::{self, RegistryReader};
use crate::resolver::Resolver;
use crate::singleton::SingletonSlot;
use crate::stats::Stats;
use crate::timers::{TimerKind, Timers};

type Swim = Foca<Member, PostcardCodec, StdRng, NoCustomBroadcast>;
/// The replicated registry: key → dotted values, actors are node ids.
pub type Registry = OrMap<NodeId, Key, Value>;

/// A message the node wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The destination's listening address.
    pub to: SocketAddr,
    /// How it must travel.
    pub class: TrafficClass,
    /// The encoded message.
    pub payload: Bytes,
}

/// How a node starts.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This life's identity.
    pub id: NodeId,
    /// The address peers reach this node at.
    pub addr: SocketAddr,
    /// Addresses to announce to until they are live members.
    pub seeds: Vec<SocketAddr>,
    /// Seed for every random choice the node makes (SWIM probe order, timer jitter).
    pub rng_seed: u64,
    /// Wall-clock milliseconds since the Unix epoch at the `now` passed to [`Node::new`]; the
    /// node derives its hybrid clock from it and the elapsed `now`s.
    pub wall_ms_at_start: u64,
}

/// One pidmesh node as a deterministic state machine.
///
/// Inputs: [`Node::handle_message`], [`Node::handle_timeout`] and the local operations
/// ([`Node::register`], [`Node::join`]...), each taking the current time. Outputs, drained by the
/// caller after every input: [`Node::poll_transmit`], [`Node::poll_event`], [`Node::poll_timeout`].
/// The node never reads a clock, a socket or OS randomness, so a run is a function of its inputs.
pub struct Node {
    me: Member,
    config: Config,
    resolver: Resolver,
    swim: Swim,
    swim_rt: AccumulatingRuntime<Member>,
    rng: StdRng,
    map: Registry,
    clock: HlcClock,
    start: Instant,
    wall_at_start: u64,
    timers: Timers,
    /// Live peers, by node id.
    peers: BTreeMap<NodeId, Member>,
    seeds: Vec<SocketAddr>,
    announce_every: Duration,
    announce_gen: u64,
    pending: Option<Delta<NodeId, Key, Value>>,
    /// The dots of own adds appended to `pending` whose context does not list them yet (folded
    /// in before the batch is merged into or pushed; see `queue_own_add`).
    pending_own: DotSet,
    /// How many adds the last pushed batch carried: a new batch reserves that much room.
    last_batch_adds: usize,
    flush_scheduled: bool,
    /// When the last delta batch was pushed (see `schedule_push` in `dissemination.rs`).
    last_push: Option<Instant>,
    /// How long after the last push a change that came too soon waits: one push gap after an
    /// idle link, doubling per timer push up to `delta_batch_window` under load.
    push_hold: Duration,
    /// Whether a change joined the pending batch after its `Flush` timer was armed.
    batch_grew: bool,
    /// Peers we asked for a sync, with the time after which we may ask again.
    sync_inflight: HashMap<NodeId, Instant>,
    /// Members a digest is owed to: they showed dots we lack, or we dropped what they sent
    /// (see `digest_wanted` in `sync.rs`).
    digest_owed: sync::OwedDigests,
    /// What each live peer last reported holding of this node's dots (from its digests).
    peer_has: HashMap<NodeId, DotSet>,
    /// The peer asked last by the periodic anti-entropy round.
    sync_cursor: Option<NodeId>,
    /// Names touched since conflicts were last checked.
    dirty: conflicts::DirtyKeys,
    /// Entries that lost a conflict as seen here, so their removal is reported as such.
    losers: conflicts::Losers,
    /// Own entries removed after losing a conflict, by sequence number (bounded): shipped with
    /// the dots that cover them so claimants that never saw them can still resolve.
    released: BTreeMap<u64, (Key, Value)>,
    live_pids: BTreeSet<u64>,
    next_pid: u64,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    left: bool,
    /// Whether SWIM reports this node as part of a cluster (foca's Active/Idle).
    swim_active: bool,
    /// Singletons this node is a candidate for, by name.
    singletons: BTreeMap<String, SingletonSlot>,
    /// Claims this node vouched for, by name, and until when it will vouch for no other.
    promises: BTreeMap<String, (Dot<NodeId>, Instant)>,
    /// Number of the last round of claim checks this node sent.
    claim_round: u64,
    /// Replies to digests still being sent, window by window (see `send_snapshot_window`).
    snapshots: VecDeque<SnapshotJob>,
    /// Until then this node neither vouches nor counts itself for a quorum singleton: an
    /// earlier life at the same place may have vouched for a claim, and that promise (kept
    /// only in memory) must run out first.
    promises_unknown_until: Instant,
    /// Set once SWIM was told this node leaves.
    swim_left: bool,
    /// Addresses live members were seen at, with when (wall ms); see discovery.rs.
    remembered: BTreeMap<SocketAddr, u64>,
    /// Addresses the configured discovery source reported last.
    discovered: BTreeSet<SocketAddr>,
    /// Own removals as (removing dot, removed dot) sequence numbers, ascending (see sync.rs).
    removals: VecDeque<(u64, u64)>,
    /// Liveness evidence and doubted "down" verdicts (see `liveness.rs`).
    liveness: liveness::Liveness,
    /// Lifeguard's local health and suspicions (see `health.rs`).
    health: health::Health,
    /// The push-pull membership exchange on join (see `push_pull.rs`).
    push_pull: push_pull::PushPullState,
    /// Catching up after joining: surveys, windows fetched from holders (see `catchup.rs`).
    catchup: catchup::CatchUp,
    /// Fast reconnection after a partition (see `reconnect.rs`).
    reconnect: reconnect::ReconnectState,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.me.node)
            .field("addr", &self.me.addr)
            .finish_non_exhaustive()
    }
}

fn entry_of(key: &Key, slot: &Slot<NodeId, Value>) -> Entry {
    Entry {
        key: key.clone(),
        pid: Pid {
            node: slot.dot.actor.clone(),
            local: slot.value.pid,
        },
        meta: slot.value.meta.clone(),
        registered_at: slot.value.at,
        dot: slot.dot.clone(),
    }
}

mod catchup;
mod discovery;
mod dissemination;
mod local;
mod membership;
mod push_pull;
mod reconnect;
mod sync;

pub use discovery::RememberedAddr;
use sync::SnapshotJob;
mod conflicts;
mod election;
mod health;
mod liveness;
#[cfg(test)]
mod split_tests;
mod strict;

impl Node {
    /// Starts a node at time `now`. It begins announcing to its seeds at once.
    pub fn new(opts: NodeOptions, config: Config, resolver: Resolver, now: Instant) -> Self {
        let me = Member {
            node: opts.id,
            addr: opts.addr,
            bump: 0,
        };
        let swim = Foca::new(
            me.clone(),
            config.swim.clone(),
            StdRng::seed_from_u64(opts.rng_seed),
            PostcardCodec,
        );
        let catchup = catchup::CatchUp::new(!opts.seeds.is_empty());
        let mut node = Self {
            catchup,
            swim,
            swim_rt: AccumulatingRuntime::new(),
            rng: StdRng::seed_from_u64(opts.rng_seed ^ 0x9e37_79b9_7f4a_7c15),
            map: Registry::new(),
            clock: HlcClock::default(),
            start: now,
            wall_at_start: opts.wall_ms_at_start,
            timers: Timers::default(),
            peers: BTreeMap::new(),
            seeds: opts.seeds,
            announce_every: config.announce_min,
            announce_gen: 0,
            pending: None,
            pending_own: DotSet::new(),
            last_batch_adds: 0,
            flush_scheduled: false,
            last_push: None,
            push_hold: Duration::ZERO,
            batch_grew: false,
            sync_inflight: HashMap::new(),
            digest_owed: sync::OwedDigests::default(),
            sync_cursor: None,
            peer_has: HashMap::new(),
            dirty: conflicts::DirtyKeys::default(),
            losers: conflicts::Losers::default(),
            released: BTreeMap::new(),
            live_pids: BTreeSet::new(),
            next_pid: 1,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            left: false,
            swim_active: false,
            singletons: BTreeMap::new(),
            promises: BTreeMap::new(),
            claim_round: 0,
            snapshots: VecDeque::new(),
            promises_unknown_until: now + config.singleton_promise(),
            swim_left: false,
            remembered: BTreeMap::new(),
            discovered: BTreeSet::new(),
            removals: VecDeque::new(),
            liveness: liveness::Liveness::default(),
            health: health::Health::default(),
            push_pull: push_pull::PushPullState::default(),
            reconnect: reconnect::ReconnectState::default(),
            me,
            config,
            resolver,
        };
        // Before the first packet: a verdict about this node then never carries incarnation 0.
        node.raise_incarnation();
        node.timers.push(now, TimerKind::Announce(0));
        let first_sync = now + node.jitter(node.config.sync_interval);
        node.timers.push(first_sync, TimerKind::Sync);
        node
    }

    // ----- identity and reads -------------------------------------------------------------

    /// This node's identity.
    pub fn id(&self) -> &NodeId {
        &self.me.node
    }

    /// This node's address.
    pub fn addr(&self) -> SocketAddr {
        self.me.addr
    }

    /// The live peers (this node excluded), by node id.
    pub fn peers(&self) -> impl Iterator<Item = &Member> {
        self.peers.values()
    }

    /// Every identity SWIM knows, with whether it is considered active (for diagnostics).
    pub fn swim_view(&self) -> Vec<(Member, bool)> {
        self.swim
            .iter_membership_state()
            .map(|m| (m.id().clone(), m.state() != foca::State::Down))
            .collect()
    }

    /// The replicated state (read-only).
    pub fn registry(&self) -> &Registry {
        &self.map
    }

    /// Counters for embedders and tests.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.entries = self.map.len();
        s.peers = self.peers.len();
        s.timers = self.timers.len();
        s
    }

    /// True once [`Node::leave_cluster`] ran.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// The live peers known to hold this node's dot `dot` (and everything before it), as
    /// reported by their latest anti-entropy digest. A lower bound: a peer may have received it
    /// since. Empty for other nodes' dots.
    pub fn seen_by(&self, dot: &Dot<NodeId>) -> Vec<NodeId> {
        if dot.actor != self.me.node {
            return Vec::new();
        }
        self.peer_has
            .iter()
            .filter(|(n, have)| self.peers.contains_key(*n) && have.contiguous() >= dot.seq)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every entry under `key`, canonically sorted (more than one for a name means a conflict).
    pub fn entries(&self, key: &Key) -> Vec<Entry> {
        self.map
            .read(key, |slots| reader::sorted_entries(key, slots))
    }

    /// The entry that holds the unique `name`, with the resolver applied to any conflict.
    /// Answers from local state only.
    pub fn lookup(&self, name: &str) -> Option<Entry> {
        let key = Key::name(name);
        let found = self.map.read(&key, |slots| reader::found(&key, slots));
        reader::winner(&self.resolver, name, found)
    }

    /// A handle that answers [`Node::lookup`], [`Node::members_of`] and [`Node::entries`] from
    /// any thread, reading this node's registry while it keeps changing (see [`RegistryReader`]).
    pub fn reader(&self) -> RegistryReader {
        RegistryReader::new(self.map.reader(), self.resolver.clone())
    }

    /// The members of `group`, canonically sorted.
    pub fn members_of(&self, group: &str) -> Vec<Entry> {
        self.entries(&Key::group(group))
    }

    /// Every entry, in no particular order.
    pub fn all_entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let mut all = Vec::with_capacity(self.map.len());
        self.map
            .for_each(|k, s| all.push(reader::entry_from(k, &s)));
        all.into_iter()
    }

    // ----- outputs -------------------------------------------------------------------------

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Moves every pending event to the back of `into`, in order: the events
    /// [`Node::poll_event`] would return one by one. When `into` is empty the two queues are
    /// swapped, so no event is copied and the node keeps `into`'s room for its next events.
    pub fn drain_events_into(&mut self, into: &mut VecDeque<Event>) {
        if into.is_empty() {
            std::mem::swap(&mut self.events, into);
        } else {
            into.extend(self.events.drain(..));
        }
    }

    /// The events not yet taken by [`Node::poll_event`] or [`Node::drain_events_into`], oldest
    /// first.
    pub fn pending_events(&self) -> impl Iterator<Item = &Event> + '_ {
        self.events.iter()
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    // ----- inputs from the network --------------------------------------------------------

    /// Handles a message from a peer. `from` is the peer's listening address; `peer_name` is
    /// its name as proven by the transport (its TLS certificate), if the transport authenticates.
    ///
    /// Malformed, oversized, forged or stale messages are dropped and counted in [`Stats`];
    /// they never change state and never panic. Returns why the message was dropped, if it was
    /// (the same reason as counted in [`Stats::rejected_by`]; see [`crate::reject`]).
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        peer_name: Option<&str>,
        class: TrafficClass,
        bytes: &[u8],
    ) -> Option<&'static str> {
        self.liveness.heard_from(from, now);
        let result = match class {
            TrafficClass::Membership => self.on_datagram(now, peer_name, bytes),
            TrafficClass::Delta => self.on_delta(now, peer_name, bytes),
            TrafficClass::Sync => self.on_sync(now, from, peer_name, bytes),
            TrafficClass::Mail => Err("mail is for the runtime, not the node"),
        };
        if let Err(why) = result {
            self.stats.rejected += 1;
            *self.stats.rejected_by.entry(why).or_default() += 1;
            tracing::debug!(%from, class = class.as_str(), reason = why, "dropped message");
        }
        self.settle(now);
        result.err()
    }

    // ----- timers ----------------------------------------------------------------------------

    /// Runs every timer due at or before `now`, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(kind) = self.timers.pop_due(now) {
            match kind {
                TimerKind::Swim(t) => {
                    if !self.suspicion_stands(&t) {
                        self.stats.refuted_suspicions += 1;
                        continue;
                    }
                    if let Err(e) = self.swim.handle_timer(t, &mut self.swim_rt) {
                        tracing::debug!(error = %e, "swim timer failed");
                    }
                    self.drain_swim(now);
                }
                TimerKind::Flush => self.flush_due(now),
                TimerKind::Sync => {
                    self.sync_round(now);
                    let next = now + self.config.sync_interval;
                    self.timers.push(next, TimerKind::Sync);
                }
                TimerKind::Announce(generation) if generation == self.announce_gen => {
                    let next = self.announce(now);
                    self.timers
                        .push(now + next, TimerKind::Announce(generation));
                }
                TimerKind::Announce(_) => {}
                TimerKind::Singleton => {}
                TimerKind::Leave => self.leave_swim(now),
                TimerKind::SnapshotWindow => self.send_snapshot_window(now),
                TimerKind::DoubtedDown => self.doubted_down_due(now),
                TimerKind::Suspicion => self.suspicions_due(now),
                TimerKind::PushPull(generation) => self.push_pull_timer(now, generation),
                TimerKind::CatchUp => self.catchup_tick(now),
                TimerKind::Reconnect => self.reconnect_tick(now),
            }
        }
        self.settle(now);
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        // Uniform in [d/2, d): spreads rounds of nodes started together.
        let half = d / 2;
        let ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(self.rng.random_range(0..ns))
    }

    // ----- plumbing ----------------------------------------------------------------------------

    fn wall_ms(&self, now: Instant) -> u64 {
        let elapsed = u64::try_from(now.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u64::MAX);
        self.wall_at_start.saturating_add(elapsed)
    }

    fn send<M: wire::WireMessage>(&mut self, to: SocketAddr, class: TrafficClass, msg: &M) {
        match wire::encode(msg) {
            Ok(payload) => {
                if class == TrafficClass::Sync {
                    self.stats.sync_bytes_sent += payload.len() as u64;
                }
                self.outbox.push_back(Transmit { to, class, payload });
            }
            Err(e) => {
                tracing::warn!(error = %e, class = class.as_str(), "message not encodable");
                self.stats.encode_errors += 1;
            }
        }
    }
}
