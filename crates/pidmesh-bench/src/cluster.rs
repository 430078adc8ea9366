//! A loopback cluster of real pidmesh nodes for the benchmarks.
//!
//! Every node runs on this process's tokio runtime with its own transport (QUIC with mutual TLS
//! against a throwaway development CA, or plain TCP), wrapped twice:
//! - in a [`Faults`] switchboard, so a scenario can cut links (partitions, a silent crash);
//! - in a byte counter ([`Counted`]), so a scenario can tell how many payload bytes each node
//!   handed to its transport, by traffic class (QUIC/TLS/TCP framing is not included).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pidmesh::{Config, Registry, Resolver};
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport::{Faults, Incoming, Outgoing, SendError, TrafficClass, Transport};
use pidmesh_transport_quic::{QuicConfig, QuicTransport};
use pidmesh_transport_tcp::{ClusterKey, TcpConfig, TcpTransport};
use serde::{Deserialize, Serialize};

/// Which transport the nodes talk over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// QUIC with mutual TLS (the default).
    Quic,
    /// Plain TCP.
    Tcp,
}

impl Kind {
    /// A human label for reports.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Quic => "QUIC + mTLS",
            Kind::Tcp => "TCP",
        }
    }
}

/// Either transport, so one cluster type serves both.
#[derive(Debug)]
pub enum AnyTransport {
    /// QUIC.
    Quic(QuicTransport),
    /// TCP.
    Tcp(TcpTransport),
}

impl Transport for AnyTransport {
    fn local_addr(&self) -> SocketAddr {
        match self {
            AnyTransport::Quic(t) => t.local_addr(),
            AnyTransport::Tcp(t) => t.local_addr(),
        }
    }

    fn max_datagram_size(&self) -> usize {
        match self {
            AnyTransport::Quic(t) => t.max_datagram_size(),
            AnyTransport::Tcp(t) => t.max_datagram_size(),
        }
    }

    fn send(&self, msg: Outgoing) -> Result<(), SendError> {
        match self {
            AnyTransport::Quic(t) => t.send(msg),
            AnyTransport::Tcp(t) => t.send(msg),
        }
    }

    async fn recv(&mut self) -> Option<Incoming> {
        match self {
            AnyTransport::Quic(t) => t.recv().await,
            AnyTransport::Tcp(t) => t.recv().await,
        }
    }

    async fn shutdown(&mut self) {
        match self {
            AnyTransport::Quic(t) => t.shutdown().await,
            AnyTransport::Tcp(t) => t.shutdown().await,
        }
    }
}

/// Payload bytes and messages a node handed to its transport, by traffic class.
#[derive(Debug, Default)]
pub struct ByteCounters {
    bytes: [AtomicU64; 4],
    msgs: [AtomicU64; 4],
}

/// A snapshot of [`ByteCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bytes {
    /// SWIM packets.
    pub membership: u64,
    /// Delta batches.
    pub delta: u64,
    /// Anti-entropy (digests, snapshots).
    pub sync: u64,
    /// Mailbox traffic.
    pub mail: u64,
    /// Messages of every class.
    pub messages: u64,
}

impl Bytes {
    /// Every class together.
    pub fn total(&self) -> u64 {
        self.membership + self.delta + self.sync + self.mail
    }

    /// `self - earlier`, class by class.
    pub fn since(&self, earlier: &Bytes) -> Bytes {
        Bytes {
            membership: self.membership.saturating_sub(earlier.membership),
            delta: self.delta.saturating_sub(earlier.delta),
            sync: self.sync.saturating_sub(earlier.sync),
            mail: self.mail.saturating_sub(earlier.mail),
            messages: self.messages.saturating_sub(earlier.messages),
        }
    }

    /// Class-by-class sum.
    pub fn plus(&self, o: &Bytes) -> Bytes {
        Bytes {
            membership: self.membership + o.membership,
            delta: self.delta + o.delta,
            sync: self.sync + o.sync,
            mail: self.mail + o.mail,
            messages: self.messages + o.messages,
        }
    }
}

fn class_index(c: TrafficClass) -> usize {
    match c {
        TrafficClass::Membership => 0,
        TrafficClass::Delta => 1,
        TrafficClass::Sync => 2,
        TrafficClass::Mail => 3,
    }
}

impl ByteCounters {
    fn add(&self, class: TrafficClass, n: usize) {
        let i = class_index(class);
        self.bytes[i].fetch_add(n as u64, Ordering::Relaxed);
        self.msgs[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> Bytes {
        let b = |i: usize| self.bytes[i].load(Ordering::Relaxed);
        Bytes {
            membership: b(0),
            delta: b(1),
            sync: b(2),
            mail: b(3),
            messages: self.msgs.iter().map(|m| m.load(Ordering::Relaxed)).sum(),
        }
    }
}

/// A transport that counts the payload bytes sent through it.
#[derive(Debug)]
pub struct Counted<T> {
    inner: T,
    counters: Arc<ByteCounters>,
}

impl<T: Transport> Transport for Counted<T> {
    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn max_datagram_size(&self) -> usize {
        self.inner.max_datagram_size()
    }

    fn send(&self, msg: Outgoing) -> Result<(), SendError> {
        let (class, len) = (msg.class, msg.payload.len());
        self.inner.send(msg)?;
        self.counters.add(class, len);
        Ok(())
    }

    async fn recv(&mut self) -> Option<Incoming> {
        self.inner.recv().await
    }

    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

/// Polls `cond` every `every` until it holds or `limit` passes; returns how long it took.
pub async fn wait_for(
    limit: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// A running loopback cluster.
pub struct Cluster {
    /// The nodes, by index (an aborted node stays in the list, stopped).
    pub nodes: Vec<Registry>,
    /// Their addresses.
    pub addrs: Vec<SocketAddr>,
    /// Payload byte counters of each node's transport.
    pub bytes: Vec<Arc<ByteCounters>>,
    /// Socket byte counters of each node's transport (under QUIC/TLS/TCP framing).
    pub socket: Vec<pidmesh_transport::SocketBytes>,
    /// The partition switchboard every node obeys.
    pub faults: Faults,
    kind: Kind,
    config: Config,
    ca: DevCa,
}

impl Cluster {
    /// Starts `n` nodes (node 0 is everyone's seed) and waits until every node sees all others.
    ///
    /// # Errors
    /// Binding, certificates, or a cluster that does not form within 30 s.
    pub async fn start(kind: Kind, n: usize, config: Config) -> anyhow::Result<Self> {
        let mut c = Cluster {
            nodes: Vec::new(),
            addrs: Vec::new(),
            bytes: Vec::new(),
            socket: Vec::new(),
            faults: Faults::new(),
            kind,
            config,
            ca: DevCa::new("pidmesh bench CA").context("dev CA")?,
        };
        for _ in 0..n {
            c.add_node().await?;
        }
        c.wait_formed(n, Duration::from_secs(30)).await?;
        Ok(c)
    }

    /// Starts one more node that joins through node 0 (or through itself, for the first) and
    /// returns its index at once, without waiting for it to join.
    ///
    /// # Errors
    /// Binding or certificates.
    pub async fn add_node(&mut self) -> anyhow::Result<usize> {
        let i = self.nodes.len();
        let name = format!("bench-{i}");
        let any: SocketAddr = "127.0.0.1:0".parse()?;
        let transport = match self.kind {
            Kind::Quic => {
                let tls = self
                    .ca
                    .cluster_tls(&name, ring_provider())
                    .context("node certificate")?;
                AnyTransport::Quic(QuicTransport::bind(any, QuicConfig::new(tls)).await?)
            }
            // Plain TCP as deployed without TLS: authenticated by a shared cluster key.
            Kind::Tcp => AnyTransport::Tcp(
                TcpTransport::bind(
                    any,
                    TcpConfig::with_cluster_key(ClusterKey::from_bytes([7; 32])),
                )
                .await?,
            ),
        };
        let addr = transport.local_addr();
        let socket = match &transport {
            AnyTransport::Quic(t) => t.socket_bytes(),
            AnyTransport::Tcp(t) => t.socket_bytes(),
        };
        let seed = self.addrs.first().copied().unwrap_or(addr);
        let counters = Arc::new(ByteCounters::default());
        let stack = Counted {
            inner: self.faults.wrap(transport),
            counters: counters.clone(),
        };
        let registry = Registry::builder()
            .node_name(name)
            .seeds([seed])
            .config(self.config.clone())
            .resolver(Resolver::keep_oldest())
            .event_capacity(1 << 16)
            .transport(stack)
            .start()
            .await?;
        self.nodes.push(registry);
        self.addrs.push(addr);
        self.bytes.push(counters);
        self.socket.push(socket);
        Ok(i)
    }

    /// Waits until every running node among the first `n` sees exactly `n` members.
    ///
    /// # Errors
    /// The cluster did not form within `limit`.
    pub async fn wait_formed(&self, n: usize, limit: Duration) -> anyhow::Result<Duration> {
        match wait_for(limit, Duration::from_millis(5), || {
            self.nodes.iter().all(|r| r.members().len() == n)
        })
        .await
        {
            Some(d) => Ok(d),
            None => bail!(
                "cluster of {n} did not form within {limit:?} (members seen: {:?})",
                self.nodes
                    .iter()
                    .map(|r| r.members().len())
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// Live entries held by each node.
    pub fn entries(&self) -> Vec<usize> {
        self.nodes.iter().map(|r| r.stats().entries).collect()
    }

    /// Payload bytes each node has sent so far.
    pub fn bytes_now(&self) -> Vec<Bytes> {
        self.bytes.iter().map(|b| b.snapshot()).collect()
    }

    /// Socket bytes `(sent, received)` of each node so far.
    pub fn socket_now(&self) -> Vec<(u64, u64)> {
        self.socket
            .iter()
            .map(|b| (b.sent(), b.received()))
            .collect()
    }

    /// Stops every node that still runs (gracefully, in parallel).
    pub async fn shutdown(self) {
        let mut tasks = Vec::new();
        for r in self.nodes {
            tasks.push(tokio::spawn(async move { r.shutdown().await }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// One sample of a convergence curve: milliseconds since the start, entries held by each node.
pub type Sample = (f64, Vec<usize>);

/// Samples the entry count of a set of nodes on an OS thread of its own (so the samples keep
/// their pace while the runtime's workers are busy), until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Starts sampling `nodes` every `every`, timestamps relative to `t0`.
    pub fn start(nodes: Vec<Registry>, t0: Instant, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut next = Instant::now();
            while !flag.load(Ordering::Acquire) {
                let counts = nodes.iter().map(|r| r.stats().entries).collect();
                out.push((t0.elapsed().as_secs_f64() * 1e3, counts));
                next += every;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
            let counts = nodes.iter().map(|r| r.stats().entries).collect();
            out.push((t0.elapsed().as_secs_f64() * 1e3, counts));
            out
        });
        Sampler { stop, handle }
    }

    /// Stops sampling and returns the curve.
    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Release);
        self.handle.join().unwrap_or_default()
    }
}

/// The first sample time (ms) at which every node of the curve held at least `target` entries
/// (node by node: column `i` is node `i` of the sampled set).
pub fn reached(curve: &[Sample], node: usize, target: usize) -> Option<f64> {
    curve
        .iter()
        .find(|(_, c)| c.get(node).is_some_and(|&n| n >= target))
        .map(|(t, _)| *t)
}

/// Resident memory of this process in bytes (Linux), if it can be read.
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
