//! `RegistryBuilder`: configuration collected before a node starts, and `start`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pidmesh_proto::{Config, Node, NodeId, NodeOptions, Resolver};
use pidmesh_transport::Transport;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tracing::Instrument;

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
    transport: T,
}

impl RegistryBuilder<()> {
    pub(crate) fn new() -> Self {
        Self {
            name: None,
            seeds: Vec::new(),
            resolver: Resolver::keep_oldest(),
            config: Config::lan(),
            event_capacity: 4096,
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

    /// The transport to talk over.
    pub fn transport<U: Transport>(self, transport: U) -> RegistryBuilder<U> {
        RegistryBuilder {
            name: self.name,
            seeds: self.seeds,
            resolver: self.resolver,
            config: self.config,
            event_capacity: self.event_capacity,
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
        let node = Node::new(opts, self.config, self.resolver, now);
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
            watchers: Mutex::new(HashMap::new()),
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
        tracing::info!(node = %id, %addr, "pidmesh node started");
        Ok(Registry { shared })
    }
}
