//! `RegistryBuilder`: configuration collected before a node starts, and `start`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pidmesh_proto::{Config, Node, NodeId, NodeOptions, Resolver};
use pidmesh_transport::Transport;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tracing::Instrument;

use crate::discovery::{Discovery, keep_peer_cache, poll_discovery, read_peer_cache};
use crate::driver::{Shared, drive, lock};
use crate::error::StartError;
use crate::registry::Registry;

/// Capacity of the queue of remote mail waiting for the driver.
const MAIL_QUEUE: usize = 4096;

/// Builds and starts a [`Registry`]. See [`Registry::builder`].
#[derive(Debug)]
pub struct RegistryBuilder<T = ()> {
    name: Option<String>,
    seeds: Vec<SocketAddr>,
    resolver: Resolver,
    config: Config,
    event_capacity: usize,
    discovery: Option<DiscoverySource>,
    discovery_interval: Duration,
    peer_cache: Option<PathBuf>,
    transport: T,
}

/// A configured discovery source (`Debug` without requiring it of the source).
#[derive(Clone)]
struct DiscoverySource(Arc<dyn Discovery>);

impl std::fmt::Debug for DiscoverySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscoverySource")
    }
}

/// How often the peer cache is checked for changes, and how often it is rewritten anyway.
const PEER_CACHE_CHECK: Duration = Duration::from_secs(5);
const PEER_CACHE_REFRESH: Duration = Duration::from_secs(60);

impl RegistryBuilder<()> {
    pub(crate) fn new() -> Self {
        Self {
            name: None,
            seeds: Vec::new(),
            resolver: Resolver::keep_oldest(),
            config: Config::lan(),
            event_capacity: 4096,
            discovery: None,
            discovery_interval: Duration::from_secs(30),
            peer_cache: None,
            transport: (),
        }
    }
}

impl<T> RegistryBuilder<T> {
    /// The node's stable name (unique in the cluster; with TLS, the DNS name of its certificate).
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Addresses to join through; the node keeps announcing to those it does not see.
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.seeds = seeds.into_iter().collect();
        self
    }

    /// The conflict resolver (default: keep-oldest). Every node must use the same one.
    pub fn resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Timers and limits (default: [`Config::lan`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// How many events a slow subscriber may lag behind before it misses some (default 4096).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.max(1);
        self
    }

    /// A source of member addresses besides the seeds ([`crate::DnsDiscovery`],
    /// [`crate::FileDiscovery`], [`crate::StaticDiscovery`] or your own), asked at start and
    /// every [`RegistryBuilder::discovery_interval`]. The node announces to every address it
    /// reports that no live member holds.
    pub fn discovery(mut self, source: impl Discovery) -> Self {
        self.discovery = Some(DiscoverySource(Arc::new(source)));
        self
    }

    /// How often the discovery source is asked again (default 30 s).
    pub fn discovery_interval(mut self, every: Duration) -> Self {
        self.discovery_interval = every.max(Duration::from_millis(10));
        self
    }

    /// A file in which the node keeps the addresses of the members it has seen (checked every
    /// 5 s, rewritten when they change and every minute, and when the node stops). The next
    /// start reads it back: the new life announces to those addresses, so it rejoins even when
    /// every seed is gone, and `SingletonPolicy::MajorityOfKnown` counts the members it knew
    /// (without it, a restarted node knows only its seeds). A missing or unreadable file is
    /// an empty memory.
    pub fn peer_cache(mut self, path: impl Into<PathBuf>) -> Self {
        self.peer_cache = Some(path.into());
        self
    }

    /// The transport to talk over.
    pub fn transport<U: Transport>(self, transport: U) -> RegistryBuilder<U> {
        RegistryBuilder {
            name: self.name,
            seeds: self.seeds,
            resolver: self.resolver,
            config: self.config,
            event_capacity: self.event_capacity,
            discovery: self.discovery,
            discovery_interval: self.discovery_interval,
            peer_cache: self.peer_cache,
            transport,
        }
    }
}

impl<T: Transport> RegistryBuilder<T> {
    /// Starts the node: spawns its driver task on the current tokio runtime and begins joining
    /// the cluster through the seeds. Returns at once (joining continues in the background).
    ///
    /// # Errors
    /// See [`StartError`].
    ///
    /// Cancel-safe: it does not wait on anything.
    pub async fn start(self) -> Result<Registry, StartError> {
        let name = self.name.ok_or(StartError::MissingName)?;
        pidmesh_wire::check_key_name(&name).map_err(StartError::InvalidName)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // A new incarnation per start: microseconds since the epoch, larger than any earlier life.
        let incarnation = u64::try_from(wall.as_micros()).unwrap_or(u64::MAX);
        let rng_seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(incarnation);
            h.finish()
        };
        let id = NodeId::new(name, incarnation);
        let addr = self.transport.local_addr();
        let now = Instant::now();
        let opts = NodeOptions {
            id: id.clone(),
            addr,
            seeds: self.seeds,
            rng_seed,
            wall_ms_at_start: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
        };
        let mut node = Node::new(opts, self.config, self.resolver, now);
        if let Some(path) = &self.peer_cache {
            node.remember(now, &read_peer_cache(path));
        }
        let (events, _) = broadcast::channel(self.event_capacity);
        let (mail_tx, mail_rx) = mpsc::channel(MAIL_QUEUE);
        let (stop_tx, stop_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            id: id.clone(),
            addr,
            reader: node.reader(),
            node: RwLock::new(node),
            kick: Notify::new(),
            events,
            mailboxes: Mutex::new(HashMap::new()),
            guards: crate::guards::Guards::default(),
            mail_tx,
            stop_tx: Mutex::new(Some(stop_tx)),
            driver: Mutex::new(None),
            stopped: AtomicBool::new(false),
            candidacies: Mutex::new(HashMap::new()),
            msg: Default::default(),
        });
        let span = tracing::info_span!("pidmesh", node = %id);
        let handle =
            runtime.spawn(drive(shared.clone(), self.transport, mail_rx, stop_rx).instrument(span));
        *lock(&shared.driver) = Some(handle);
        if let Some(DiscoverySource(source)) = self.discovery {
            let task = poll_discovery(Arc::downgrade(&shared), source, self.discovery_interval);
            runtime.spawn(task.instrument(tracing::info_span!("pidmesh-discovery", node = %id)));
        }
        if let Some(path) = self.peer_cache {
            let task = keep_peer_cache(
                Arc::downgrade(&shared),
                path,
                PEER_CACHE_CHECK,
                PEER_CACHE_REFRESH,
            );
            runtime.spawn(task.instrument(tracing::info_span!("pidmesh-peer-cache", node = %id)));
        }
        tracing::info!(node = %id, %addr, "pidmesh node started");
        Ok(Registry { shared })
    }
}
