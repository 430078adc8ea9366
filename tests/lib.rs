//! Helpers for the real-socket tests: clusters of pidmesh nodes on 127.0.0.1 over QUIC or TCP,
//! with a development CA, behind a fault-injecting wrapper for partitions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pidmesh::{Config, Registry, Resolver};
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport::{Faults, Transport};
use pidmesh_transport_quic::{QuicConfig, QuicTransport};
use pidmesh_transport_tcp::{ClusterKey, TcpConfig, TcpTransport};

/// Which transport a cluster runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// QUIC with mutual TLS.
    Quic,
    /// TCP with mutual TLS.
    TcpTls,
    /// Plain TCP authenticated by the cluster key ([`cluster_key`]).
    Tcp,
}

/// The shared key of `Kind::Tcp` clusters (a fixed test value; real clusters use a random one).
pub fn cluster_key() -> ClusterKey {
    ClusterKey::from_bytes([0x42; 32])
}

/// Errors of the helpers (tests unwrap them).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A cluster under test.
pub struct Cluster {
    /// The running nodes, by index (`None` once killed).
    pub nodes: Vec<Option<Registry>>,
    /// Their addresses.
    pub addrs: Vec<SocketAddr>,
    /// The partition switchboard every node's transport obeys.
    pub faults: Faults,
    kind: Kind,
    ca: Arc<DevCa>,
    resolver: Resolver,
    config: Config,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("kind", &self.kind)
            .field("addrs", &self.addrs)
            .finish()
    }
}

/// The node name of index `i`.
pub fn name(i: usize) -> String {
    format!("node-{i}")
}

/// Everything needed to start a node of a cluster.
struct Spec<'a> {
    kind: Kind,
    ca: &'a DevCa,
    faults: &'a Faults,
    seeds: &'a [SocketAddr],
    resolver: &'a Resolver,
    config: &'a Config,
}

async fn start_node(spec: &Spec<'_>, i: usize, addr: SocketAddr) -> Result<Registry, BoxError> {
    let Spec {
        kind,
        ca,
        faults,
        seeds,
        resolver,
        config,
    } = *spec;
    let builder = Registry::builder()
        .node_name(name(i))
        .seeds(seeds.iter().copied())
        .resolver(resolver.clone())
        .config(config.clone());
    let tls = || ca.cluster_tls(&name(i), ring_provider());
    let reg = match kind {
        Kind::Quic => {
            let t = QuicTransport::bind(addr, QuicConfig::new(tls()?)).await?;
            builder.transport(faults.wrap(t)).start().await?
        }
        Kind::TcpTls => {
            let t = TcpTransport::bind(addr, TcpConfig::with_tls(tls()?)).await?;
            builder.transport(faults.wrap(t)).start().await?
        }
        Kind::Tcp => {
            let t = TcpTransport::bind(addr, TcpConfig::with_cluster_key(cluster_key())).await?;
            builder.transport(faults.wrap(t)).start().await?
        }
    };
    Ok(reg)
}

async fn free_addr(kind: Kind) -> Result<SocketAddr, BoxError> {
    // Bind to port 0 to learn a free port, then release it for the node to bind.
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    Ok(match kind {
        Kind::Quic => std::net::UdpSocket::bind(any)?.local_addr()?,
        Kind::Tcp | Kind::TcpTls => std::net::TcpListener::bind(any)?.local_addr()?,
    })
}

impl Cluster {
    /// Starts `n` nodes (the first two are everyone's seeds) and waits until all see each other.
    ///
    /// # Errors
    /// Binding, certificates, or a cluster that does not form within 20 s.
    pub async fn start(
        kind: Kind,
        n: usize,
        resolver: Resolver,
        config: Config,
    ) -> Result<Self, BoxError> {
        let ca = Arc::new(DevCa::new("pidmesh test CA")?);
        let faults = Faults::new();
        let mut addrs = Vec::new();
        for _ in 0..n {
            addrs.push(free_addr(kind).await?);
        }
        let seeds: Vec<SocketAddr> = addrs.iter().copied().take(2).collect();
        let mut nodes = Vec::new();
        let spec = Spec {
            kind,
            ca: &ca,
            faults: &faults,
            seeds: &seeds,
            resolver: &resolver,
            config: &config,
        };
        for (i, addr) in addrs.iter().enumerate() {
            nodes.push(Some(start_node(&spec, i, *addr).await?));
        }
        let c = Self {
            nodes,
            addrs,
            faults,
            kind,
            ca,
            resolver,
            config,
        };
        let regs = c.live();
        if eventually(Duration::from_secs(20), || {
            regs.iter().all(|r| r.members().len() == n)
        })
        .await
        .is_none()
        {
            return Err("cluster did not form".into());
        }
        Ok(c)
    }

    /// The development CA every node's certificate comes from (to issue more, e.g. for an
    /// impostor in a test).
    pub fn ca(&self) -> &DevCa {
        &self.ca
    }

    /// Node `i` (panics if it was killed: tests only ask for running nodes).
    pub fn node(&self, i: usize) -> &Registry {
        self.nodes[i]
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is not running"))
    }

    /// The running nodes.
    pub fn live(&self) -> Vec<Registry> {
        self.nodes.iter().flatten().cloned().collect()
    }

    /// Kills node `i` without a goodbye (its driver is aborted, its sockets close).
    pub async fn kill(&mut self, i: usize) {
        if let Some(r) = self.nodes[i].take() {
            r.abort();
            // Let the aborted driver drop its transport so the port is free again.
            tokio::task::yield_now().await;
        }
    }

    /// Starts node `i` again at its address: a new life with a new incarnation.
    ///
    /// # Errors
    /// If the address cannot be bound again within 5 s.
    pub async fn restart(&mut self, i: usize) -> Result<(), BoxError> {
        let seeds: Vec<SocketAddr> = self.addrs.iter().copied().take(2).collect();
        let mut last = None;
        for _ in 0..100 {
            let spec = Spec {
                kind: self.kind,
                ca: &self.ca,
                faults: &self.faults,
                seeds: &seeds,
                resolver: &self.resolver,
                config: &self.config,
            };
            match start_node(&spec, i, self.addrs[i]).await {
                Ok(r) => {
                    self.nodes[i] = Some(r);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last.unwrap_or_else(|| "restart failed".into()))
    }

    /// Stops every node gracefully.
    pub async fn shutdown(self) {
        for r in self.nodes.into_iter().flatten() {
            r.shutdown().await;
        }
    }
}

/// Polls `cond` every 5 ms until it holds or `limit` passes; returns how long it took.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = tokio::time::Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The address any transport reports, for convenience in tests.
pub fn addr_of<T: Transport>(t: &T) -> SocketAddr {
    t.local_addr()
}
