//! `pidmesh-sim`: a deterministic simulator of a pidmesh cluster.
//!
//! It runs N [`pidmesh_proto::Node`]s over a virtual network in virtual time: per-link latency
//! (so messages reorder), loss, duplication, partitions (symmetric, one-way, overlapping), and
//! crash/restart with a new incarnation. A seeded RNG drives every random choice, so a run is a
//! function of its seed: a failure prints the seed and `Sim::new` with that seed replays it.
//!
//! [`check`] holds the invariants checked after a heal-and-quiesce phase, [`workload`] a
//! random workload of register/unregister/join/leave/update/process-exit, and [`contest`] the
//! contested heal of the heal tests.

#![forbid(unsafe_code)]

pub mod check;
pub mod contest;
mod faults;
mod net;
pub mod shapes;
pub mod workload;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pidmesh_proto::{
    Config, Dot, Entry, Event, Key, Node, NodeId, NodeOptions, Pid, Reason, RememberedAddr,
    Resolver, SingletonPolicy, TrafficClass,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub use net::LinkConfig;

/// What a simulated cluster looks like.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// The first `seeds` nodes are every node's seeds.
    pub seeds: usize,
    /// The seed of every random choice.
    pub seed: u64,
    /// Link behaviour.
    pub link: LinkConfig,
    /// Node configuration.
    pub node: Config,
    /// The conflict resolver every node uses.
    pub resolver: Resolver,
    /// Singletons every node is a candidate for (from its start).
    pub singletons: Vec<(String, SingletonPolicy)>,
    /// Whether a host keeps the addresses its node remembered ([`Node::remembered`]) across a
    /// crash and hands them to its next life ([`Node::remember`]), as the facade does with a
    /// peer cache file. Default true.
    pub persist_peers: bool,
    /// Names every node registers strictly (from its start), with the quorum: each life keeps
    /// one process contending for each, registering again whenever its registration ended.
    pub strict: Vec<(String, usize)>,
    /// How far each host's wall clock is off, in milliseconds, by host index (missing: 0);
    /// the keep-oldest resolver orders claims by these clocks.
    pub clock_skew_ms: Vec<i64>,
}

impl SimConfig {
    /// `nodes` nodes with the `local` preset, the first two as seeds, keep-oldest, a clean network.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seeds: nodes.min(2),
            seed,
            link: LinkConfig::default(),
            node: Config::local().for_cluster_size(u32::try_from(nodes).unwrap_or(u32::MAX)),
            resolver: Resolver::keep_oldest(),
            singletons: Vec::new(),
            persist_peers: true,
            strict: Vec::new(),
            clock_skew_ms: Vec::new(),
        }
    }
}

/// What the simulator remembers of one node's current life (for the invariant checks).
#[derive(Debug, Default, Clone)]
pub struct Life {
    /// Dots of entries this life created, with their keys.
    pub created: BTreeMap<Dot<NodeId>, Key>,
    /// Dots the workload removed on purpose (unregister, leave, exit, metadata update).
    pub removed_on_purpose: BTreeSet<Dot<NodeId>>,
    /// Own entries this life reported as unregistered, with the reason.
    pub unregistered: BTreeMap<Dot<NodeId>, Reason>,
    /// Live pids of this life.
    pub pids: Vec<Pid>,
    /// Every event the node emitted, with the virtual time (kept only when tracing is on).
    pub events: Vec<(Duration, Event)>,
    /// Pids the node's singleton candidacies hold names with (not touched by the workload).
    pub singleton_pids: Vec<Pid>,
    /// Singletons this life is running now.
    pub running: BTreeSet<String>,
    /// How many times this life started a singleton.
    pub starts: u64,
    /// The process each strict name is registered with.
    pub strict_pids: BTreeMap<String, Pid>,
}

/// One simulated machine: an address, a name, and the current life (if running).
#[derive(Debug)]
pub struct Host {
    /// The node's stable name.
    pub name: String,
    /// Its address.
    pub addr: SocketAddr,
    /// The running node, `None` while crashed.
    pub node: Option<Node>,
    /// The last incarnation used.
    pub incarnation: u64,
    /// Bookkeeping of the current life.
    pub life: Life,
    /// What the host's disk holds across lives: the addresses its last life remembered.
    pub disk: Vec<RememberedAddr>,
    /// How far this host's wall clock is off, in milliseconds (its next life starts with it,
    /// see [`Sim::set_clock_skew`]).
    pub clock_skew_ms: i64,
}

/// A simulated cluster.
pub struct Sim {
    /// The seed this run was built from.
    pub seed: u64,
    /// The hosts, by index.
    pub hosts: Vec<Host>,
    /// Node events are recorded in [`Life::events`] and [`Sim::trace_log`] when true.
    pub trace: bool,
    /// Every node event of every life, with the virtual time and the host (when tracing).
    pub trace_log: Vec<(Duration, usize, Event)>,
    /// Total messages delivered.
    pub delivered: u64,
    /// Total messages dropped by faults.
    pub dropped: u64,
    /// Bytes handed to the network, by class: membership, delta, sync.
    pub bytes_sent: [u64; 3],
    /// Bytes handed to the network by each host, by class: membership, delta, sync.
    pub bytes_by_host: Vec<[u64; 3]>,
    /// Instants at which the singleton safety invariant was checked.
    pub safety_checks: u64,
    /// Every instant at which two live nodes ran the same quorum singleton.
    pub safety_violations: Vec<String>,
    rng: StdRng,
    base: Instant,
    now: Instant,
    net: net::Network,
    link: LinkConfig,
    config: SimConfig,
    seeds: Vec<SocketAddr>,
    by_addr: BTreeMap<SocketAddr, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Per host, the deadline of an entry known to be in `timers` (see `schedule`): a node's
    /// deadline is pushed again only when it changed, so the heap holds about one entry per
    /// node instead of one per message handled.
    scheduled: Vec<Option<Instant>>,
    /// Nodes whose processing is stalled, until when (see [`Sim::stall`]).
    stalls: BTreeMap<usize, Instant>,
    /// Extra loss on single directed links (see [`Sim::set_link_loss`]).
    link_loss: BTreeMap<(usize, usize), f64>,
    /// Drops chosen messages (see [`Sim::set_drop_filter`]).
    drop_filter: Option<DropFilter>,
}

/// Decides, for one message `(from, to, class, payload)`, whether the network drops it.
pub type DropFilter = Box<dyn FnMut(usize, usize, TrafficClass, &[u8]) -> bool>;

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("now", &self.elapsed())
            .finish_non_exhaustive()
    }
}

fn addr_of(i: usize) -> SocketAddr {
    let port = 10_000 + u16::try_from(i).unwrap_or(u16::MAX - 10_000);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Wall-clock milliseconds the virtual clock starts at (a fixed date keeps runs reproducible).
const WALL_START_MS: u64 = 1_790_000_000_000;

impl Sim {
    /// Builds a cluster and starts every node at virtual time 0.
    pub fn new(config: SimConfig) -> Self {
        let base = Instant::now();
        let seeds: Vec<SocketAddr> = (0..config.seeds).map(addr_of).collect();
        let mut sim = Sim {
            seed: config.seed,
            hosts: Vec::new(),
            trace: false,
            trace_log: Vec::new(),
            delivered: 0,
            dropped: 0,
            bytes_sent: [0; 3],
            bytes_by_host: vec![[0; 3]; config.nodes],
            safety_checks: 0,
            safety_violations: Vec::new(),
            rng: StdRng::seed_from_u64(config.seed),
            base,
            now: base,
            net: net::Network::default(),
            link: config.link.clone(),
            seeds,
            by_addr: BTreeMap::new(),
            timers: BinaryHeap::new(),
            scheduled: vec![None; config.nodes],
            stalls: BTreeMap::new(),
            link_loss: BTreeMap::new(),
            drop_filter: None,
            config,
        };
        for i in 0..sim.config.nodes {
            let addr = addr_of(i);
            sim.by_addr.insert(addr, i);
            sim.hosts.push(Host {
                name: format!("n{i}"),
                addr,
                node: None,
                incarnation: 0,
                life: Life::default(),
                disk: Vec::new(),
                clock_skew_ms: sim.config.clock_skew_ms.get(i).copied().unwrap_or(0),
            });
            sim.start(i);
        }
        sim
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The simulator's RNG (for workloads: keeps the whole run a function of the seed).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Indices of running nodes.
    pub fn live(&self) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| self.hosts[i].node.is_some())
            .collect()
    }

    /// The node at `i`, if running.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.hosts[i].node.as_ref()
    }

    fn start(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        host.incarnation += 1;
        let id = NodeId::new(host.name.as_str(), host.incarnation);
        let wall = (WALL_START_MS + u64::try_from((self.now - self.base).as_millis()).unwrap_or(0))
            .saturating_add_signed(host.clock_skew_ms);
        let opts = NodeOptions {
            id,
            addr: host.addr,
            seeds: self.seeds.clone(),
            rng_seed: self.rng.random(),
            wall_ms_at_start: wall,
        };
        let mut node = Node::new(
            opts,
            self.config.node.clone(),
            self.config.resolver.clone(),
            self.now,
        );
        if self.config.persist_peers {
            node.remember(self.now, &host.disk);
        }
        let mut life = Life::default();
        for (name, policy) in &self.config.singletons {
            if let Ok(pid) = node.add_singleton(self.now, name, *policy) {
                life.singleton_pids.push(pid);
            }
        }
        for (name, quorum) in &self.config.strict {
            let pid = node.spawn_pid();
            if node
                .register_strict(self.now, name, &pid, *quorum, Bytes::new())
                .is_ok()
            {
                life.singleton_pids.push(pid.clone());
                life.strict_pids.insert(name.clone(), pid);
            }
        }
        host.node = Some(node);
        host.life = life;
        self.pump(i);
    }

    /// Kills node `i` without a goodbye: its state is lost, in-flight messages to it are dropped.
    pub fn crash(&mut self, i: usize) {
        if let Some(n) = self.hosts[i].node.take() {
            self.hosts[i].disk = n.remembered();
        }
    }

    /// Starts node `i` again as a new life (a higher incarnation, an empty registry).
    pub fn restart(&mut self, i: usize) {
        self.crash(i);
        self.start(i);
    }

    /// Node `i` leaves the cluster gracefully: it releases its entries at once and stops after
    /// it has told SWIM it leaves (a short grace period later).
    pub fn shutdown(&mut self, i: usize) {
        let now = self.now;
        if let Some(n) = self.hosts[i].node.as_mut() {
            n.leave_cluster(now);
            self.pump(i);
        }
    }

    /// Cuts the links between the two sets, both ways.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Drops everything sent from a node of `from` to a node of `to` (not the other way).
    pub fn cut_one_way(&mut self, from: &[usize], to: &[usize]) {
        for &x in from {
            for &y in to {
                if x != y {
                    self.net.cut.insert((x, y));
                }
            }
        }
    }

    /// Stalls node `i`'s processing for `d` (a "slow node": a GC pause, CPU starvation): it
    /// handles no message and no timer until then. Messages keep arriving and wait; at the end
    /// the waiting messages are handled in arrival order, then its overdue timers.
    pub fn stall(&mut self, i: usize, d: Duration) {
        let until = self.now + d;
        let end = self.stalls.entry(i).or_insert(until);
        *end = (*end).max(until);
    }

    /// True while node `i` is stalled.
    pub fn is_stalled(&self, i: usize) -> bool {
        self.stalls.get(&i).is_some_and(|&u| u > self.now)
    }

    /// Drops messages sent from `from` to `to` with probability `loss` (on top of the link
    /// behaviour); 0 removes it.
    pub fn set_link_loss(&mut self, from: usize, to: usize, loss: f64) {
        if loss > 0.0 {
            self.link_loss.insert((from, to), loss.clamp(0.0, 1.0));
        } else {
            self.link_loss.remove(&(from, to));
        }
    }

    /// Drops every message sent from now on for which `filter` returns true (on top of the link
    /// behaviour), e.g. the SWIM packets carrying some update; `None` removes the filter.
    pub fn set_drop_filter(&mut self, filter: Option<DropFilter>) {
        self.drop_filter = filter;
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.net.cut.clear();
    }

    /// Replaces the link behaviour for messages sent from now on.
    pub fn set_link(&mut self, link: LinkConfig) {
        self.link = link;
    }

    /// Runs node `i`'s operation `f` at the current instant (None if it is not running), then
    /// collects what it emitted.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> Option<R> {
        let now = self.now;
        let r = f(self.hosts[i].node.as_mut()?, now);
        self.pump(i);
        Some(r)
    }

    /// Runs the cluster for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next_msg = self.net.next_at();
            let next_timer = self.next_timer();
            let next = match (next_msg, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if next_msg.is_some_and(|m| m <= next) {
                if let Some(m) = self.net.pop_due(self.now) {
                    self.deliver(m);
                }
            } else if let Some(Reverse((at, i))) = self.timers.pop() {
                self.unscheduled(i, at);
                let now = self.now;
                if let Some(&until) = self.stalls.get(&i) {
                    if until > now {
                        self.timers.push(Reverse((until, i)));
                        continue;
                    }
                    self.stalls.remove(&i);
                }
                if let Some(n) = self.hosts[i].node.as_mut() {
                    n.handle_timeout(now);
                    self.pump(i);
                }
            }
        }
        self.now = end;
    }

    /// Builds a cluster (as [`Sim::new`]) and runs it until the membership of every live node
    /// agrees, checked every 10 ms for at most a minute of virtual time. `None` if it does not
    /// form in that time.
    pub fn formed(config: SimConfig) -> Option<Self> {
        let mut sim = Sim::new(config);
        sim.run_until(
            Duration::from_secs(60),
            Duration::from_millis(10),
            check::membership_agrees_ok,
        )?;
        Some(sim)
    }

    /// Runs until `cond` holds (checked every `step`) or `limit` passes; returns the virtual
    /// time it took, or `None` on timeout.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            if cond(self) {
                return Some(self.now - start);
            }
            self.run_for(step);
        }
        cond(self).then(|| self.now - start)
    }

    /// The heap entry `(at, i)` was taken out: `i`'s deadline must be pushed again next time.
    fn unscheduled(&mut self, i: usize, at: Instant) {
        if self.scheduled[i] == Some(at) {
            self.scheduled[i] = None;
        }
    }

    /// The earliest valid node deadline (stale heap entries are skipped).
    fn next_timer(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, i))) = self.timers.peek().copied() {
            let due = self.hosts[i].node.as_ref().and_then(Node::poll_timeout);
            // A stalled node's overdue timers wait for the end of the stall.
            let valid = due == Some(at)
                || (self.stalls.get(&i) == Some(&at) && due.is_some_and(|d| d <= at));
            if valid {
                return Some(at);
            }
            self.timers.pop();
            self.unscheduled(i, at);
        }
        None
    }

    fn deliver(&mut self, m: net::InFlight) {
        if self.net.blocked(m.from, m.to) {
            self.dropped += 1;
            return;
        }
        if let Some(&until) = self.stalls.get(&m.to)
            && until > self.now
        {
            // Waits for the stall to end, after the node's overdue timers.
            self.net.push(until, m.from, m.to, m.class, m.payload);
            return;
        }
        let from_addr = self.hosts[m.from].addr;
        let name = self.hosts[m.from].name.clone();
        let now = self.now;
        let Some(node) = self.hosts[m.to].node.as_mut() else {
            self.dropped += 1;
            return;
        };
        node.handle_message(now, from_addr, Some(&name), m.class, &m.payload);
        self.delivered += 1;
        self.pump(m.to);
    }

    /// Moves node `i`'s transmits onto the network and its events into the records.
    fn pump(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.hosts[i].node.as_mut() else {
            return;
        };
        let me = node.id().clone();
        // A strict registration that ended contends again (same process).
        let strict_pids = &self.hosts[i].life.strict_pids;
        let again: Vec<(String, usize, Pid)> = self
            .config
            .strict
            .iter()
            .filter_map(|(n, q)| Some((n.clone(), *q, strict_pids.get(n)?.clone())))
            .collect();
        let Some(node) = self.hosts[i].node.as_mut() else {
            return;
        };
        for (name, quorum, pid) in &again {
            if node.strict_ended(name).is_some() {
                node.remove_strict(now, name);
                let _ = node.register_strict(now, name, pid, *quorum, Bytes::new());
            }
        }
        let mut sends: Vec<(usize, TrafficClass, Bytes)> = Vec::new();
        while let Some(t) = node.poll_transmit() {
            if let Some(&to) = self.by_addr.get(&t.to) {
                sends.push((to, t.class, t.payload));
            }
        }
        let mut events = Vec::new();
        while let Some(e) = node.poll_event() {
            events.push(e);
        }
        if let Some(at) = node.poll_timeout()
            && self.scheduled[i] != Some(at)
        {
            self.scheduled[i] = Some(at);
            self.timers.push(Reverse((at, i)));
        }
        for (to, class, payload) in sends {
            self.send(i, to, class, payload);
        }
        let elapsed = now - self.base;
        let life = &mut self.hosts[i].life;
        for e in events {
            match &e {
                Event::Registered(entry) if entry.dot.actor == me => {
                    life.created.insert(entry.dot.clone(), entry.key.clone());
                }
                Event::MetaUpdated { entry, .. } if entry.dot.actor == me => {
                    life.created.insert(entry.dot.clone(), entry.key.clone());
                }
                Event::Unregistered { entry, reason } if entry.dot.actor == me => {
                    life.unregistered.insert(entry.dot.clone(), *reason);
                }
                Event::SingletonStarted { name, .. } => {
                    life.running.insert(name.clone());
                    life.starts += 1;
                }
                Event::SingletonStopped { name, .. } => {
                    life.running.remove(name);
                }
                _ => {}
            }
            if self.trace {
                self.trace_log.push((elapsed, i, e.clone()));
                life.events.push((elapsed, e));
            }
        }
        self.check_singleton_safety();
        if self.hosts[i].node.as_ref().is_some_and(Node::has_left_swim) {
            self.crash(i);
        }
    }

    /// The safety invariant of quorum singletons, checked after every step of every node: no
    /// two running nodes run the same one.
    ///
    /// A stalled node ([`Sim::stall`]) does not count while the stall lasts: its process,
    /// the run included, is paused and acts on nothing (docs/singletons.md: a pause longer than
    /// `lease/8` breaks every lease). From the instant it resumes it counts again, so it must
    /// stop a run whose lease ran out in its very first step.
    fn check_singleton_safety(&mut self) {
        let strict = self
            .config
            .strict
            .iter()
            .map(|(n, q)| (n.clone(), SingletonPolicy::StaticQuorum(*q)));
        let all: Vec<(String, SingletonPolicy)> = self
            .config
            .singletons
            .iter()
            .cloned()
            .chain(strict)
            .collect();
        for (name, policy) in &all {
            if !policy.needs_quorum() {
                continue;
            }
            let runners: Vec<usize> = (0..self.hosts.len())
                .filter(|&i| {
                    self.hosts[i].node.is_some()
                        && self.hosts[i].life.running.contains(name)
                        && !self.is_stalled(i)
                })
                .collect();
            self.safety_checks += 1;
            if runners.len() > 1 {
                self.safety_violations.push(format!(
                    "t={:?}: quorum singleton {name} ({policy:?}) running on {runners:?}",
                    self.now - self.base
                ));
            }
        }
    }

    /// The singletons every node is a candidate for.
    pub fn singletons(&self) -> &[(String, SingletonPolicy)] {
        &self.config.singletons
    }

    /// The names every node registers strictly, with their quorum.
    pub fn strict_names(&self) -> &[(String, usize)] {
        &self.config.strict
    }

    /// The live nodes running singleton `name`.
    pub fn runners(&self, name: &str) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| self.hosts[i].node.is_some() && self.hosts[i].life.running.contains(name))
            .collect()
    }

    fn send(&mut self, from: usize, to: usize, class: TrafficClass, payload: Bytes) {
        let slot = match class {
            TrafficClass::Membership => 0,
            TrafficClass::Delta => 1,
            TrafficClass::Sync | TrafficClass::Mail => 2,
        };
        self.bytes_sent[slot] += payload.len() as u64;
        if let Some(host) = self.bytes_by_host.get_mut(from) {
            host[slot] += payload.len() as u64;
        }
        if let Some(f) = self.drop_filter.as_mut()
            && f(from, to, class, &payload)
        {
            self.dropped += 1;
            return;
        }
        let link = &self.link;
        if link.loss > 0.0 && self.rng.random_bool(link.loss.clamp(0.0, 1.0)) {
            self.dropped += 1;
            return;
        }
        if let Some(&p) = self.link_loss.get(&(from, to))
            && self.rng.random_bool(p)
        {
            self.dropped += 1;
            return;
        }
        let copies = if link.duplicate > 0.0 && self.rng.random_bool(link.duplicate.clamp(0.0, 1.0))
        {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let span = link.max_latency.saturating_sub(link.min_latency);
            let extra = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
            let delay = link.min_latency
                + Duration::from_nanos(if extra == 0 {
                    0
                } else {
                    self.rng.random_range(0..extra)
                });
            self.net
                .push(self.now + delay, from, to, class, payload.clone());
        }
    }

    // ----- workload helpers that keep the bookkeeping honest ----------------------------

    /// Spawns a process on node `i` and returns its pid.
    pub fn spawn(&mut self, i: usize) -> Option<Pid> {
        let pid = self.with_node(i, |n, _| n.spawn_pid())?;
        self.hosts[i].life.pids.push(pid.clone());
        Some(pid)
    }

    /// Registers `pid` under `name` on node `i`.
    pub fn register(&mut self, i: usize, name: &str, pid: &Pid) -> Option<Entry> {
        self.with_node(i, |n, now| n.register(now, name, pid, Bytes::new()).ok())
            .flatten()
    }

    /// Adds `pid` to `group` on node `i`.
    pub fn join(&mut self, i: usize, group: &str, pid: &Pid) -> Option<Entry> {
        self.with_node(i, |n, now| n.join(now, group, pid, Bytes::new()).ok())
            .flatten()
    }

    /// Removes `pid`'s entry under `key` on node `i` (unregister or leave).
    pub fn remove(&mut self, i: usize, key: &Key, pid: &Pid) -> Option<Entry> {
        let r = self
            .with_node(i, |n, now| match key.kind {
                pidmesh_proto::KeyKind::Name => n.unregister(now, &key.name, pid).ok(),
                pidmesh_proto::KeyKind::Group => n.leave(now, &key.name, pid).ok(),
            })
            .flatten();
        if let Some(e) = &r {
            self.hosts[i].life.removed_on_purpose.insert(e.dot.clone());
        }
        r
    }

    /// Updates the metadata of `pid`'s entry under `key` on node `i`.
    pub fn update_meta(&mut self, i: usize, key: &Key, pid: &Pid, meta: &[u8]) -> Option<Entry> {
        let old = self
            .node(i)?
            .entries(key)
            .into_iter()
            .find(|e| e.pid == *pid)?;
        let meta = Bytes::copy_from_slice(meta);
        let r = self
            .with_node(i, |n, now| n.update_meta(now, key, pid, meta).ok())
            .flatten();
        if r.is_some() {
            self.hosts[i].life.removed_on_purpose.insert(old.dot);
        }
        r
    }

    /// Ends process `pid` on node `i`: all its entries go.
    pub fn exit(&mut self, i: usize, pid: &Pid) {
        let removed = self
            .with_node(i, |n, now| n.process_exited(now, pid))
            .unwrap_or_default();
        let life = &mut self.hosts[i].life;
        life.pids.retain(|p| p != pid);
        for e in removed {
            life.removed_on_purpose.insert(e.dot);
        }
    }
}
