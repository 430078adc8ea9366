//! The sans-io node.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec};
use pidmesh_crdt::{Delta, Dot, DotSet, JoinReport, LiveDigest, OrMap, Slot};
use pidmesh_wire::{
    self as wire, Datagram, DeltaBatch, DeltaMsg, Key, KeyKind, NodeId, OriginDelta, Pid, SyncMsg,
    SyncV1, TrafficClass, Value, WireEntry,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::clock::HlcClock;
use crate::config::Config;
use crate::entry::{Entry, Event, Reason};
use crate::error::{JoinError, RegisterError, RemoveError};
use crate::member::Member;
use crate::reader::{self, RegistryReader};
use crate::resolver::{Resolver, SINGLETON_RUNNING_META, Verdict};
use crate::singleton::{
    ClaimAnswer, Lease, Phase, ROUNDS_KEPT, SingletonPolicy, SingletonSlot, StopReason,
};
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
    flush_scheduled: bool,
    /// Peers we asked for a sync, with the time after which we may ask again.
    sync_inflight: HashMap<NodeId, Instant>,
    /// What each live peer last reported holding of this node's dots (from its digests).
    peer_has: HashMap<NodeId, DotSet>,
    /// The peer asked last by the periodic anti-entropy round.
    sync_cursor: Option<NodeId>,
    /// Names touched since conflicts were last checked.
    dirty: BTreeSet<Key>,
    /// Entries that lost a conflict as seen here, so their removal is reported as such.
    losers: HashSet<Dot<NodeId>>,
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

/// A generous upper bound of an entry's encoded size, for cutting messages.
fn entry_budget(e: &WireEntry) -> usize {
    40 + e.key.name.len() + e.value.meta.len()
}

/// Cuts one origin's delta into pieces whose encoding stays under `budget` bytes.
/// `items` are `(released?, entry)` sorted by sequence number and lying within `seen`.
/// Sequence numbers per window of a reply to a digest (about 0.9 MB of entries with ~17-byte
/// names): one window is built and handed to the transport at a time.
const SNAPSHOT_WINDOW: u64 = 32_768;

/// The pause between two windows of a reply, so the runtime gets to send the first before the
/// node builds the next.
const SNAPSHOT_PAUSE: std::time::Duration = std::time::Duration::from_micros(100);

/// A reply to a digest that is still being sent.
#[derive(Debug)]
struct SnapshotJob {
    to: NodeId,
    addr: SocketAddr,
    /// Our own sequence numbers the asker lacks and has not been sent yet.
    remaining: DotSet,
}

fn split_origin_delta(
    seen: &DotSet,
    items: impl Iterator<Item = (bool, WireEntry)>,
    budget: usize,
) -> Vec<OriginDelta> {
    let mut out = Vec::new();
    let mut cur = OriginDelta::default();
    let mut size = 0;
    let mut start = 1;
    let mut last_seq = 0;
    for (released, e) in items {
        let b = entry_budget(&e);
        if last_seq != 0 && size + b > budget {
            cur.seen = seen.clipped(start, last_seq).ranges().to_vec();
            out.push(std::mem::take(&mut cur));
            start = last_seq + 1;
            size = 0;
        }
        size += b;
        last_seq = e.seq;
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
    out
}

/// Merges two seq-sorted lists of entries into one, tagging released ones.
fn tagged(
    adds: Vec<WireEntry>,
    released: Vec<WireEntry>,
) -> impl Iterator<Item = (bool, WireEntry)> {
    let mut all: Vec<(bool, WireEntry)> = adds
        .into_iter()
        .map(|e| (false, e))
        .chain(released.into_iter().map(|e| (true, e)))
        .collect();
    all.sort_by_key(|(_, e)| e.seq);
    all.into_iter()
}

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
        let mut node = Self {
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
            flush_scheduled: false,
            sync_inflight: HashMap::new(),
            sync_cursor: None,
            peer_has: HashMap::new(),
            dirty: BTreeSet::new(),
            losers: HashSet::new(),
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
            me,
            config,
            resolver,
        };
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

    /// Sends an anti-entropy digest to every live peer now (not waiting for the periodic round),
    /// so that peers missing something pull it at once.
    pub fn sync_now(&mut self, now: Instant) {
        let peers: Vec<Member> = self.peers.values().cloned().collect();
        for p in peers {
            self.send_digest(now, &p);
        }
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

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    // ----- local operations ----------------------------------------------------------------

    /// A new process identity on this node. It stays live until [`Node::process_exited`].
    pub fn spawn_pid(&mut self) -> Pid {
        let local = self.next_pid;
        self.next_pid += 1;
        self.live_pids.insert(local);
        Pid {
            node: self.me.node.clone(),
            local,
        }
    }

    fn check_pid(&self, pid: &Pid) -> bool {
        pid.node == self.me.node && self.live_pids.contains(&pid.local)
    }

    fn own_entry(&self, key: &Key, pid: &Pid) -> Option<Entry> {
        self.map
            .get(key)
            .iter()
            .find(|s| s.dot.actor == self.me.node && s.value.pid == pid.local)
            .map(|s| entry_of(key, s))
    }

    fn add_own(&mut self, now: Instant, key: Key, pid: &Pid, meta: Bytes) -> Entry {
        let at = self.clock.tick(self.wall_ms(now));
        let delta = self.map.add(
            &self.me.node,
            key.clone(),
            Value {
                pid: pid.local,
                meta,
                at,
            },
        );
        let entry = entry_of(&key, &delta.adds[0].1);
        self.queue_delta(now, delta);
        self.events.push_back(Event::Registered(entry.clone()));
        if key.kind == KeyKind::Name && self.map.read(&key, |mut slots| slots.nth(1).is_some()) {
            self.dirty.insert(key);
        }
        entry
    }

    /// Registers `pid` (a live process of this node) under the unique `name`.
    ///
    /// Visible locally at once; other nodes see it after the next delta batch.
    ///
    /// # Errors
    /// See [`RegisterError`]; on error nothing changed.
    pub fn register(
        &mut self,
        now: Instant,
        name: &str,
        pid: &Pid,
        meta: Bytes,
    ) -> Result<Entry, RegisterError> {
        if self.left {
            return Err(RegisterError::Stopped);
        }
        wire::check_key_name(name).map_err(RegisterError::InvalidName)?;
        if meta.len() > wire::MAX_META_LEN {
            return Err(RegisterError::MetaTooLarge(meta.len()));
        }
        if !self.check_pid(pid) {
            return Err(RegisterError::NotLocal(pid.clone()));
        }
        if let Some(current) = self.lookup(name) {
            return Err(RegisterError::AlreadyRegistered(Box::new(current)));
        }
        let entry = self.add_own(now, Key::name(name), pid, meta);
        self.settle(now);
        Ok(entry)
    }

    /// Adds `pid` (a live process of this node) to `group`.
    ///
    /// # Errors
    /// See [`JoinError`]; on error nothing changed.
    pub fn join(
        &mut self,
        now: Instant,
        group: &str,
        pid: &Pid,
        meta: Bytes,
    ) -> Result<Entry, JoinError> {
        if self.left {
            return Err(JoinError::Stopped);
        }
        wire::check_key_name(group).map_err(JoinError::InvalidName)?;
        if meta.len() > wire::MAX_META_LEN {
            return Err(JoinError::MetaTooLarge(meta.len()));
        }
        if !self.check_pid(pid) {
            return Err(JoinError::NotLocal(pid.clone()));
        }
        let key = Key::group(group);
        if let Some(e) = self.own_entry(&key, pid) {
            return Err(JoinError::AlreadyMember(Box::new(e)));
        }
        let entry = self.add_own(now, key, pid, meta);
        self.settle(now);
        Ok(entry)
    }

    /// Removes `pid`'s registration of the unique `name`.
    ///
    /// # Errors
    /// [`RemoveError::NotFound`] if this node holds no such entry; nothing changed.
    pub fn unregister(
        &mut self,
        now: Instant,
        name: &str,
        pid: &Pid,
    ) -> Result<Entry, RemoveError> {
        self.remove_key(now, &Key::name(name), pid)
    }

    /// Removes `pid` from `group`.
    ///
    /// # Errors
    /// [`RemoveError::NotFound`] if `pid` is not in the group on this node; nothing changed.
    pub fn leave(&mut self, now: Instant, group: &str, pid: &Pid) -> Result<Entry, RemoveError> {
        self.remove_key(now, &Key::group(group), pid)
    }

    fn remove_key(&mut self, now: Instant, key: &Key, pid: &Pid) -> Result<Entry, RemoveError> {
        if self.left {
            return Err(RemoveError::Stopped);
        }
        let entry = self.own_entry(key, pid).ok_or(RemoveError::NotFound)?;
        self.remove_own(now, std::slice::from_ref(&entry.dot), Reason::Normal);
        self.settle(now);
        Ok(entry)
    }

    /// Replaces the metadata of `pid`'s entry under `key`.
    ///
    /// # Errors
    /// [`RemoveError::NotFound`] if there is no such entry, [`RemoveError::MetaTooLarge`];
    /// on error nothing changed.
    pub fn update_meta(
        &mut self,
        now: Instant,
        key: &Key,
        pid: &Pid,
        meta: Bytes,
    ) -> Result<Entry, RemoveError> {
        if self.left {
            return Err(RemoveError::Stopped);
        }
        if meta.len() > wire::MAX_META_LEN {
            return Err(RemoveError::MetaTooLarge(meta.len()));
        }
        let old = self.own_entry(key, pid).ok_or(RemoveError::NotFound)?;
        // The registration time stays: the update is not a new claim on the name.
        let value = Value {
            pid: pid.local,
            meta,
            at: old.registered_at,
        };
        let (delta, previous) = self
            .map
            .replace(&self.me.node, &old.dot, value)
            .ok_or(RemoveError::NotFound)?;
        let entry = entry_of(key, &delta.adds[0].1);
        self.queue_delta(now, delta);
        self.events.push_back(Event::MetaUpdated {
            entry: entry.clone(),
            previous: previous.value.meta,
        });
        self.dirty.insert(key.clone());
        self.settle(now);
        Ok(entry)
    }

    /// The process `pid` ended: every entry of it goes away (reason `ProcessExited`) and the pid
    /// can no longer register. Returns the removed entries.
    pub fn process_exited(&mut self, now: Instant, pid: &Pid) -> Vec<Entry> {
        if pid.node != self.me.node || !self.live_pids.remove(&pid.local) {
            return Vec::new();
        }
        let dots: Vec<Dot<NodeId>> = self
            .map
            .actor_entries(&self.me.node)
            .filter(|(_, s)| s.value.pid == pid.local)
            .map(|(_, s)| s.dot.clone())
            .collect();
        let removed = self.remove_own(now, &dots, Reason::ProcessExited);
        self.settle(now);
        removed
    }

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

    fn leave_swim(&mut self, now: Instant) {
        if self.swim_left {
            return;
        }
        if let Err(e) = self.swim.leave_cluster(&mut self.swim_rt) {
            tracing::debug!(error = %e, "swim leave failed");
        }
        self.drain_swim(now);
        self.swim_left = true;
    }

    fn remove_own(&mut self, now: Instant, dots: &[Dot<NodeId>], reason: Reason) -> Vec<Entry> {
        let (delta, removed) = self.map.remove(&self.me.node, dots);
        self.queue_delta(now, delta);
        let mut out = Vec::with_capacity(removed.len());
        for (key, slot) in removed {
            let entry = entry_of(&key, &slot);
            if reason == Reason::Conflict {
                // Shipped with `at` = the release time (see `OriginDelta::released`).
                let released_at = self.clock.tick(self.wall_ms(now));
                let value = Value {
                    at: released_at,
                    ..slot.value.clone()
                };
                self.released.insert(slot.dot.seq, (key.clone(), value));
                while self.released.len() > self.config.max_released {
                    self.released.pop_first();
                }
            }
            self.losers.remove(&slot.dot);
            self.dirty.insert(key);
            self.events.push_back(Event::Unregistered {
                entry: entry.clone(),
                reason,
            });
            out.push(entry);
        }
        out
    }

    // ----- inputs from the network --------------------------------------------------------

    /// Handles a message from a peer. `from` is the peer's listening address; `peer_name` is
    /// its name as proven by the transport (its TLS certificate), if the transport authenticates.
    ///
    /// Malformed, oversized, forged or stale messages are dropped and counted in [`Stats`];
    /// they never change state and never panic.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        peer_name: Option<&str>,
        class: TrafficClass,
        bytes: &[u8],
    ) {
        let result = match class {
            TrafficClass::Membership => self.on_datagram(bytes),
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
    }

    fn on_datagram(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        let Datagram::V1 { swim } =
            wire::decode::<Datagram>(bytes).map_err(|_| "undecodable datagram")?;
        self.swim
            .handle_data(&swim, &mut self.swim_rt)
            .map_err(|_| "swim rejected packet")
    }

    /// Checks that `origin` may speak for its own dots here: a live peer whose proven name matches.
    fn authorize(&self, origin: &NodeId, peer_name: Option<&str>) -> Result<(), &'static str> {
        if peer_name.is_some_and(|n| n != &*origin.name) {
            return Err("origin does not match authenticated peer");
        }
        if *origin == self.me.node {
            return Err("peer claims our identity");
        }
        if !self.peers.contains_key(origin) {
            return Err("origin is not a live member");
        }
        Ok(())
    }

    fn on_delta(
        &mut self,
        now: Instant,
        peer_name: Option<&str>,
        bytes: &[u8],
    ) -> Result<(), &'static str> {
        let DeltaMsg::V1(DeltaBatch { origin, delta }) =
            wire::decode::<DeltaMsg>(bytes).map_err(|_| "undecodable delta")?;
        self.authorize(&origin, peer_name)?;
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

    fn on_sync(
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
                    return Err("origin does not match authenticated peer");
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
                // Pull in return when the asker has dots we lack.
                if let Some(peer) = self.peers.get(&from).cloned() {
                    let mine = self.map.context().row(&from).cloned().unwrap_or_default();
                    if !mine.includes(&DotSet::from_range(1, own_max)) {
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
                if now < self.promises_unknown_until {
                    // Too young to vouch (see `promises_unknown_until`): no answer, no vouch.
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
                if peer_name.is_some_and(|n| n != &*from.name) || !self.peers.contains_key(&from) {
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
        }
    }

    /// Sends `to` the part of this node's own state it lacks: the dots it has not seen, or, when
    /// its digest shows it still holds entries this node removed, everything.
    fn answer_digest(
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
        // What the asker should hold of our live entries if it missed nothing but `missing`.
        let mut expected = self.map.actor_digest(&me);
        for &(a, b) in missing.ranges() {
            for (_, slot) in self.map.actor_range(&me, a, b) {
                expected.toggle(slot.dot.seq, false);
            }
        }
        if expected != live {
            // It holds stale entries (a removal of ours got lost): resend the whole row, whose
            // context covers and so drops them.
            missing = own;
            self.stats.full_syncs += 1;
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

    /// Sends the next window of the oldest pending reply (at most [`SNAPSHOT_WINDOW`] sequence
    /// numbers, cut into chunks), and schedules the next window a moment later: a large reply
    /// goes out window by window, so the asker applies the first while this node builds the
    /// next, and neither node's other work waits for the whole state.
    fn send_snapshot_window(&mut self, now: Instant) {
        let Some(mut job) = self.snapshots.pop_front() else {
            return;
        };
        let me = self.me.node.clone();
        // An empty reply is still one (empty, last) chunk: the asker waits for it.
        let first = job.remaining.ranges().first().map_or(1, |r| r.0);
        let end = first.saturating_add(SNAPSHOT_WINDOW - 1);
        let window = job.remaining.clipped(first, end);
        job.remaining = job.remaining.clipped(end.saturating_add(1), u64::MAX);
        let mut adds = Vec::new();
        let mut released = Vec::new();
        for &(a, b) in window.ranges() {
            adds.extend(self.map.actor_range(&me, a, b).map(|(k, s)| WireEntry {
                seq: s.dot.seq,
                key: k.clone(),
                value: s.value.clone(),
            }));
            released.extend(self.released.range(a..=b).map(|(seq, (k, v))| WireEntry {
                seq: *seq,
                key: k.clone(),
                value: v.clone(),
            }));
        }
        let budget = self.config.sync_chunk_bytes.saturating_sub(1024).max(1024);
        let chunks = split_origin_delta(&window, tagged(adds, released), budget);
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

    fn apply_origin_delta(&mut self, now: Instant, origin: &NodeId, od: OriginDelta) {
        let wall = self.wall_ms(now);
        let max_ahead = u64::try_from(self.config.max_clock_drift.as_millis()).unwrap_or(u64::MAX);
        let mut delta = Delta::default();
        delta
            .ctx
            .set_row(origin.clone(), DotSet::from_ranges(od.seen.iter().copied()));
        for e in od.adds {
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

    /// A claim given up after a conflict, which this node never saw, meets our own claims on
    /// the same name. Only claims made before it was given up (`released.registered_at` holds
    /// the release time) competed with it, and only a verdict that frees the name needs acting
    /// on here: when the resolver keeps a winner, that winner reaches us through normal sync.
    fn resolve_against_release(&mut self, now: Instant, released: Entry) {
        let key = released.key.clone();
        let mut candidates = self.entries(&key);
        let concurrent = candidates
            .iter()
            .any(|e| e.dot.actor == self.me.node && e.registered_at < released.registered_at);
        if !concurrent {
            return;
        }
        candidates.push(released);
        candidates.sort_by(Entry::canonical_cmp);
        if self.resolver.resolve(&key.name, &candidates).verdict == Verdict::DropAll {
            self.decide(now, &key, candidates);
        }
    }

    fn report_join(&mut self, report: JoinReport<NodeId, Key, Value>) {
        // A removal and an add of the same pid under the same key in one join is a metadata update.
        let mut removed = Vec::new();
        for (key, slot) in report.removed {
            let entry = entry_of(&key, &slot);
            self.dirty.insert(key);
            removed.push(entry);
        }
        for (key, dot) in &report.added {
            // Only a unique name with two or more claims has a conflict to settle (a bulk
            // catch-up adds a million names, each alone).
            if key.kind == KeyKind::Name && self.map.read(key, |mut slots| slots.nth(1).is_some()) {
                self.dirty.insert(key.clone());
            }
            let Some((_, slot)) = self.map.get_dot(dot) else {
                continue;
            };
            let entry = entry_of(key, &slot);
            let updated = removed
                .iter()
                .position(|r| r.key == entry.key && r.pid == entry.pid);
            self.events.push_back(match updated {
                Some(i) => {
                    let old = removed.swap_remove(i);
                    // A promise to a claim follows the claim through a metadata update (a
                    // singleton marks its claim when it starts running).
                    if let Some((promised, _)) = self.promises.get_mut(&*key.name)
                        && *promised == old.dot
                    {
                        *promised = entry.dot.clone();
                    }
                    Event::MetaUpdated {
                        previous: old.meta,
                        entry,
                    }
                }
                None => Event::Registered(entry),
            });
        }
        for entry in removed {
            let reason = if self.losers.remove(&entry.dot) {
                Reason::Conflict
            } else {
                Reason::Normal
            };
            // Its owner removed it on purpose, so it no longer runs under our vouch.
            if self
                .promises
                .get(&*entry.key.name)
                .is_some_and(|(dot, _)| *dot == entry.dot)
            {
                self.promises.remove(&*entry.key.name);
            }
            self.events.push_back(Event::Unregistered { entry, reason });
        }
    }

    // ----- timers ----------------------------------------------------------------------------

    /// Runs every timer due at or before `now`, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(kind) = self.timers.pop_due(now) {
            match kind {
                TimerKind::Swim(t) => {
                    if let Err(e) = self.swim.handle_timer(t, &mut self.swim_rt) {
                        tracing::debug!(error = %e, "swim timer failed");
                    }
                    self.drain_swim(now);
                }
                TimerKind::Flush => {
                    self.flush_scheduled = false;
                    self.flush();
                }
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

    fn sync_round(&mut self, now: Instant) {
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

    fn send_digest(&mut self, now: Instant, peer: &Member) {
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
        self.sync_inflight
            .insert(peer.node.clone(), now + self.config.sync_timeout);
    }

    /// Announces to seeds that are not live members; returns the delay until the next attempt.
    fn announce(&mut self, now: Instant) -> Duration {
        if self.left {
            return self.config.announce_max;
        }
        let live: HashSet<SocketAddr> = self.peers.values().map(|m| m.addr).collect();
        let mut targets: BTreeSet<SocketAddr> = self
            .seeds
            .iter()
            .copied()
            .filter(|a| *a != self.me.addr && !live.contains(a))
            .collect();
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

    // ----- plumbing ----------------------------------------------------------------------------

    fn wall_ms(&self, now: Instant) -> u64 {
        let elapsed = u64::try_from(now.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u64::MAX);
        self.wall_at_start.saturating_add(elapsed)
    }

    fn queue_delta(&mut self, now: Instant, delta: Delta<NodeId, Key, Value>) {
        match &mut self.pending {
            Some(p) => p.merge(delta),
            None => self.pending = Some(delta),
        }
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            self.timers
                .push(now + self.config.delta_batch_window, TimerKind::Flush);
        }
    }

    /// Pushes the pending batch to every live peer.
    fn flush(&mut self) {
        let Some(delta) = self.pending.take() else {
            return;
        };
        let seen = delta.ctx.row(&self.me.node).cloned().unwrap_or_default();
        let adds: Vec<WireEntry> = delta
            .adds
            .into_iter()
            .map(|(key, slot)| WireEntry {
                seq: slot.dot.seq,
                key,
                value: slot.value,
            })
            .collect();
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
        for chunk in
            split_origin_delta(&seen, tagged(adds, released), self.config.delta_batch_bytes)
        {
            let msg = DeltaMsg::V1(DeltaBatch {
                origin: self.me.node.clone(),
                delta: chunk,
            });
            let payload = match wire::encode(&msg) {
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

    /// Moves foca's outputs into the node's queues and reacts to its notifications.
    fn drain_swim(&mut self, now: Instant) {
        while let Some((dst, data)) = self.swim_rt.to_send() {
            let msg = Datagram::V1 { swim: data };
            self.send(dst.addr, TrafficClass::Membership, &msg);
        }
        while let Some((after, timer)) = self.swim_rt.to_schedule() {
            self.timers.push(now + after, TimerKind::Swim(timer));
        }
        while let Some(n) = self.swim_rt.to_notify() {
            self.on_notification(now, n);
        }
    }

    fn on_notification(&mut self, now: Instant, n: OwnedNotification<Member>) {
        match n {
            OwnedNotification::MemberUp(m) => self.member_up(now, m),
            OwnedNotification::MemberDown(m) => {
                if self
                    .peers
                    .get(&m.node)
                    .is_some_and(|cur| cur.bump == m.bump)
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
                    self.peers.insert(new.node.clone(), new);
                }
            }
            OwnedNotification::Rejoin(me) => {
                // foca renewed our SWIM identity after a false "down"; our NodeId is unchanged.
                // Until someone answers, we are not part of a cluster: announce at once.
                self.me = me;
                self.stats.rejoins += 1;
                // Others declared us down and dropped our entries, singleton claims included.
                // A running singleton needs no special care: the peers that vouched for it keep
                // their promises until its lease ran out, and it stops then unless they vouch
                // again.
                self.lost_cluster(now);
            }
            OwnedNotification::Active => {
                self.swim_active = true;
            }
            OwnedNotification::Idle | OwnedNotification::Defunct => self.lost_cluster(now),
        }
    }

    fn lost_cluster(&mut self, now: Instant) {
        if self.swim_active || self.announce_every > self.config.announce_min {
            // Restart the announcer from its shortest interval, right now.
            self.announce_every = self.config.announce_min;
            self.announce_gen += 1;
            self.timers
                .push(now, TimerKind::Announce(self.announce_gen));
        }
        self.swim_active = false;
    }

    fn member_up(&mut self, now: Instant, m: Member) {
        if !m.is_real() || m.node == self.me.node {
            return;
        }
        // An older life of the same name is gone for good.
        let stale: Vec<NodeId> = self
            .peers
            .keys()
            .filter(|n| n.name == m.node.name && n.incarnation < m.node.incarnation)
            .cloned()
            .collect();
        for n in stale {
            self.node_down(&n);
        }
        let fresh = !self.peers.contains_key(&m.node);
        self.peers.insert(m.node.clone(), m.clone());
        if fresh {
            self.events.push_back(Event::NodeUp(m.node.clone()));
            self.sync_inflight.remove(&m.node);
            self.send_digest(now, &m);
        }
    }

    fn node_down(&mut self, node: &NodeId) {
        if self.peers.remove(node).is_none() {
            return;
        }
        self.peer_has.remove(node);
        self.sync_inflight.remove(node);
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

    /// Runs after every input: SWIM outputs, conflict checks, nothing left half done.
    fn settle(&mut self, now: Instant) {
        self.drain_swim(now);
        while let Some(key) = self.dirty.pop_first() {
            if key.kind == KeyKind::Name {
                self.resolve(now, &key);
            }
        }
        if !self.singletons.is_empty() {
            self.eval_singletons(now);
            // Claims and releases made by the evaluation touch names: settle those too.
            while let Some(key) = self.dirty.pop_first() {
                if key.kind == KeyKind::Name {
                    self.resolve(now, &key);
                }
            }
        }
    }

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
        if self.left {
            return Err(RegisterError::Stopped);
        }
        wire::check_key_name(name).map_err(RegisterError::InvalidName)?;
        if let Some(slot) = self.singletons.get(name) {
            return Ok(slot.pid.clone());
        }
        let pid = self.spawn_pid();
        self.singletons.insert(
            name.to_string(),
            SingletonSlot {
                policy,
                pid: pid.clone(),
                phase: Phase::Idle,
            },
        );
        self.settle(now);
        Ok(pid)
    }

    /// Withdraws this node's candidacy for `name`: stops it if running (reason `Withdrawn`)
    /// and releases the name. Returns false if the node was not a candidate.
    pub fn remove_singleton(&mut self, now: Instant, name: &str) -> bool {
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
    /// name in the SWIM membership, plus each configured seed address no known member is at
    /// (a node that has not met its seeds yet does not take itself for the whole cluster).
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
        let unmet = self.seeds.iter().filter(|a| !addrs.contains(a)).count();
        names.len() + unmet
    }

    /// The live SWIM view backs `policy`: enough members seen. Not needed for safety (the
    /// lease is), but it stops a holder cut off from its quorum as soon as SWIM notices.
    fn has_quorum(&self, policy: SingletonPolicy) -> bool {
        let needed = self.quorum_size(policy, 0);
        needed <= 1 || self.peers.len() + 1 >= needed
    }

    /// How many nodes (this one included) must back a claim under `policy`, given the largest
    /// membership a voucher reported.
    fn quorum_size(&self, policy: SingletonPolicy, reported_known: usize) -> usize {
        match policy {
            SingletonPolicy::Available => 1,
            SingletonPolicy::StaticQuorum(n) => n,
            SingletonPolicy::MajorityOfKnown => self.known_nodes().max(reported_known) / 2 + 1,
        }
    }

    /// True while the claim `dot` on `name` holds a lease from a quorum: this node (unless it
    /// promised another claim) and every peer whose vouch still counts.
    fn lease_holds(
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
    fn eval_singletons(&mut self, now: Instant) {
        let names: Vec<String> = self.singletons.keys().cloned().collect();
        for name in names {
            let Some(mut slot) = self.singletons.get(&name).cloned() else {
                continue;
            };
            let quorum = !self.left && self.has_quorum(slot.policy);
            // Claim the name when it is free (a name held by anyone, even contested with no
            // winner under kill-both, is not free) and the live view has a quorum.
            if slot.phase == Phase::Idle
                && quorum
                && self.map.get(&Key::name(name.as_str())).is_empty()
                && self.live_pids.contains(&slot.pid.local)
            {
                let entry = self.add_own(now, Key::name(name.as_str()), &slot.pid, Bytes::new());
                slot.phase = Phase::Held {
                    dot: entry.dot,
                    running: false,
                    lease: Lease::new(now),
                };
            }
            slot.phase = self.advance_held(now, &name, &slot, quorum);
            if let Some(s) = self.singletons.get_mut(&name) {
                s.phase = slot.phase;
            }
        }
    }

    /// One step of a held claim: follow its entry, start, stop, renew.
    fn advance_held(
        &mut self,
        now: Instant,
        name: &str,
        slot: &SingletonSlot,
        quorum: bool,
    ) -> Phase {
        let Phase::Held { running, lease, .. } = &slot.phase else {
            return Phase::Idle;
        };
        let (mut running, mut lease) = (*running, lease.clone());
        let holder = self.lookup(name);
        // The claim follows its pid's entry under the name (whatever its current dot).
        let Some(entry) = holder.filter(|e| e.pid == slot.pid) else {
            // Lost to another claim, or removed: release whatever we still hold.
            if running {
                let reason = if self.left {
                    StopReason::Shutdown
                } else {
                    StopReason::LostName
                };
                self.events.push_back(Event::SingletonStopped {
                    name: name.to_string(),
                    reason,
                });
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
                let reason = if self.left {
                    StopReason::Shutdown
                } else {
                    StopReason::LostQuorum
                };
                self.events.push_back(Event::SingletonStopped {
                    name: name.to_string(),
                    reason,
                });
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

    /// Marks our claim as running ([`SINGLETON_RUNNING_META`]; same registration time, new
    /// dot), so the resolver prefers it to claims that never ran. Returns the claim as it is now.
    fn mark_running(&mut self, now: Instant, entry: Entry) -> Entry {
        let value = Value {
            pid: entry.pid.local,
            meta: Bytes::from_static(SINGLETON_RUNNING_META),
            at: entry.registered_at,
        };
        let Some((delta, previous)) = self.map.replace(&self.me.node, &entry.dot, value) else {
            return entry;
        };
        let marked = entry_of(&entry.key, &delta.adds[0].1);
        self.queue_delta(now, delta);
        self.events.push_back(Event::MetaUpdated {
            entry: marked.clone(),
            previous: previous.value.meta,
        });
        self.dirty.insert(entry.key);
        marked
    }

    /// Sends our claim on `name` to every live peer, as check round `round`.
    fn send_claim_checks(&mut self, name: &str, entry: &Entry, round: u64) {
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

    /// Answers a claim check for `claim` on `name`: every claim this node holds under the name,
    /// plus the claim it promised not to betray if that one is gone here but the promise still
    /// runs. When the answer is "only yours", this node vouches: it promises the claimant not to
    /// vouch for another claim for [`Config::singleton_promise`].
    fn vouch(&mut self, now: Instant, name: &str, claim: Dot<NodeId>) -> Vec<(NodeId, u64)> {
        let mut holders: Vec<(NodeId, u64)> = self
            .entries(&Key::name(name))
            .into_iter()
            .map(|e| (e.dot.actor, e.dot.seq))
            .collect();
        match self.promises.get(name) {
            Some((promised, until)) if *until > now && promised.actor != claim.actor => {
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
        // Every claim here is the claimant's own (its claim and, while a metadata update
        // travels, the entry it replaces): that is "only yours".
        if holders.iter().all(|(actor, _)| *actor == claim.actor) {
            let until = now + self.config.singleton_promise();
            self.promises.insert(name.to_string(), (claim, until));
        }
        holders
    }

    /// Records a peer's answer to our claim: a vouch counts until a lease after the round it
    /// answers was sent; any other answer withdraws the peer's earlier vouch. A competing claim
    /// the peer reports is fetched from its owner at once.
    fn on_claim_ack(&mut self, now: Instant, name: &str, ack: ClaimAnswer) {
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

    fn resolve(&mut self, now: Instant, key: &Key) {
        let candidates = self.entries(key);
        if candidates.len() >= 2 {
            self.decide(now, key, candidates);
        }
    }

    /// Runs the resolver over canonically sorted candidates, reports the outcome, and removes
    /// this node's losing entries.
    fn decide(&mut self, now: Instant, key: &Key, candidates: Vec<Entry>) {
        let resolution = self.resolver.resolve(&key.name, &candidates);
        if let Some(reason) = resolution.failure {
            tracing::warn!(key = ?key, %reason, "resolver failed; keep-oldest used");
            self.stats.resolver_failures += 1;
            self.events.push_back(Event::ResolverFailed {
                key: key.clone(),
                reason,
            });
        }
        let winner_idx = match resolution.verdict {
            Verdict::Keep(i) => Some(i),
            Verdict::DropAll => None,
        };
        let winner = winner_idx.map(|i| candidates[i].clone());
        let losers: Vec<Entry> = candidates
            .into_iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != winner_idx)
            .map(|(_, e)| e)
            .collect();
        self.stats.conflicts_resolved += 1;
        self.events.push_back(Event::ConflictResolved {
            key: key.clone(),
            winner,
            losers: losers.clone(),
        });
        let mine: Vec<Dot<NodeId>> = losers
            .iter()
            .filter(|e| e.dot.actor == self.me.node && self.map.get_dot(&e.dot).is_some())
            .map(|e| e.dot.clone())
            .collect();
        for e in &losers {
            // Only entries we hold can be reported as removed later (released ones never are).
            if self.map.get_dot(&e.dot).is_some() {
                self.losers.insert(e.dot.clone());
            }
        }
        if !mine.is_empty() {
            self.remove_own(now, &mine, Reason::Conflict);
            // remove_own marked the key dirty again; it now has fewer candidates and is
            // re-checked by the caller's loop.
        }
    }
}
