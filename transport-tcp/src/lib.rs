//! TCP transport for pidmesh.
//!
//! [`TcpTransport`] implements [`Transport`] over tokio TCP, optionally wrapped in mutual TLS
//! (tokio-rustls with the same [`ClusterTls`] configuration as the QUIC transport).
//!
//! # Wire format
//!
//! Each connection carries frames delimited by [`LengthDelimitedCodec`] (4-byte big-endian
//! length) with a configurable [`TcpConfig::max_frame_length`]. The first frame a dialer sends
//! is a *hello*: `[0xFF][version = 1][listening address as UTF-8, e.g. "127.0.0.1:4000"]`, so
//! the acceptor can report the sender's *listening* address as [`Incoming::from`] (the
//! connection's source port is ephemeral). Every later frame is `[class byte][payload]` with
//! the class byte from [`TrafficClass::to_byte`]. Connections are one-way: the dialer writes,
//! the acceptor only reads; each pair of nodes therefore uses up to two connections.
//!
//! With TLS, the acceptor reports the name proven by the client certificate as
//! [`Incoming::peer_name`]; the hello only supplies the reply address, never an identity.
//! Without TLS, `peer_name` is always `None`.
//!
//! # Authentication: pick one of three modes
//!
//! [`TcpTransport::bind`] refuses a configuration that does not choose
//! ([`BindError::NoAuthentication`]), so no cluster runs unauthenticated by accident:
//!
//! - **Mutual TLS** ([`TcpConfig::with_tls`]): certificates from the cluster CA; the peer's
//!   name is proven and reported as `peer_name`, which the node checks against every message.
//! - **Cluster key** ([`TcpConfig::with_cluster_key`]): a shared 32-byte [`ClusterKey`]. The
//!   hello becomes a mutual challenge–response (HMAC-SHA256 over fresh nonces from the OS RNG),
//!   and every later frame carries an HMAC tag bound to its position in the connection (see
//!   the `auth` module docs), so an outsider without the key can neither join nor inject, alter
//!   or replay frames. Frames are not encrypted, and `peer_name` stays `None`: every key holder
//!   is trusted alike (use TLS to tell members apart).
//! - **Insecure plain text** ([`TcpConfig::insecure_plaintext`]): no authentication at all, for
//!   tests and single-host demos. The transport binds loopback addresses only
//!   ([`BindError::NotLoopback`]), accepts loopback peers only and drops (counting
//!   `dropped{reason="non_loopback_peer"}`) anything sent to another address.
//!
//! # Bounds against hostile peers
//!
//! Every bound is a field of [`TcpLimits`] (in [`TcpConfig::limits`]) or [`TcpConfig`]; each
//! refusal is counted in [`TransportStats::refused`], per reason in
//! [`TcpTransport::refused_by`] and in the `pidmesh.transport.refused{reason}` metric.
//!
//! | bound | default | reason counted |
//! |---|---|---|
//! | concurrent inbound connections | 1024 | `connection_cap` |
//! | concurrent inbound connections per source IP | 64 | `per_source_cap` |
//! | TLS handshake + hello ([`TcpConfig::handshake_timeout`]) | 5 s | `hello_timeout` |
//! | a frame before the hello is at most [`MAX_HELLO_FRAME`] bytes | 256 B | `frame_too_large_before_hello` |
//! | wrong or missing cluster-key proof, or a bad frame tag | – | `auth_failed`, `bad_frame_tag` |
//! | no frame started for [`TcpLimits::idle_timeout`] after the hello | 60 s | `idle_timeout` |
//! | a frame larger than its class's limit (Membership: `max_datagram_size`; Delta, Sync, Mail: `pidmesh-wire`'s `max_len`, capped by `max_frame_length`), refused from its header, before any of it is buffered | – | `class_limit` |
//! | a frame not complete [`TcpLimits::frame_timeout`] after its header | 30 s | `stalled_frame` |
//! | bytes of received frames held per connection (being read or waiting in the inbox) | 8 MiB | `buffer_full` |
//! | bytes of received frames larger than 64 KiB held over all connections | 128 MiB | `buffer_full` |
//!
//! A frame's bytes are reserved from both budgets when its header arrives and released when
//! [`Transport::recv`] hands it out. While a budget is exhausted the connection is not read
//! (TCP backpressure on the sender); if the reservation does not succeed within the frame
//! timeout, the connection is closed and counted (`buffer_full`). Frames of up to 64 KiB (SWIM
//! packets, ordinary deltas) are charged to their connection only, so peers holding the shared
//! budget with large stalled frames cannot starve other peers' ordinary traffic. Worst-case
//! memory held by received frames is about `max_buffered_total + inbox_capacity × 64 KiB +
//! max_inbound_connections × 64 KiB` (448 MiB with the defaults; a single attacker source is
//! limited to 64 connections). Payloads are read into buffers that grow with the bytes that
//! actually arrive, so a peer that announces a large frame and stalls costs only what it sent.
//!
//! # Delivery
//!
//! Each peer gets one outgoing connection owned by a writer task fed by a bounded queue
//! ([`TcpConfig::peer_queue_capacity`]). All classes share it, so Delta and Sync frames arrive
//! in order while the connection lives, and a large Sync transfer can delay Membership frames.
//!
//! - A full queue makes `send` return [`SendError::QueueFull`] for Delta and Sync, and drops
//!   (and counts) Membership messages.
//! - A failed connection attempt drops the queued messages, and the link is *down* for a short,
//!   exponentially growing backoff: Membership messages are dropped at once meanwhile, Delta and
//!   Sync messages wait in the queue for the next attempt after the backoff. The first send
//!   after the backoff reconnects.
//! - When the peer closes the connection (restart, shutdown) the writer notices at once (it
//!   watches the read side) and reconnects on the next message.
//! - A peer that stops reading fills the queue (bounded memory) and nothing else.
//!
//! # Hostile input
//!
//! Unknown class bytes and empty frames are counted (`pidmesh.transport.malformed{kind}`) and
//! skipped; a missing or malformed hello and failed TLS handshakes are counted
//! (`malformed{kind="bad_hello"}`, `pidmesh.transport.handshake_failures`) and close the
//! connection; so does every bound above. Everything is logged with `tracing`. Nothing a peer
//! sends can panic the transport.

#![forbid(unsafe_code)]

mod auth;
mod counting;
mod limits;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{ClusterKey, ClusterKeyError, FRAME_TAG_LEN};
use auth::{NONCE_LEN, Session, TAG_LEN};
use counting::Counting;
pub use limits::TcpLimits;
use limits::{Admission, Held, SMALL_FRAME};
use pidmesh_transport::SocketBytes;
use pidmesh_transport::stats::StatsCounters;
pub use pidmesh_transport::{
    Incoming, Outgoing, SendError, TrafficClass, Transport, TransportStats,
};

#[cfg(feature = "tls")]
pub use pidmesh_transport::tls::{self, ClusterTls};

/// The first byte of the hello frame (never a valid class byte).
pub const HELLO_TAG: u8 = 0xFF;
/// The version byte of the hello frame.
pub const HELLO_VERSION: u8 = 1;
/// The version byte of the hello frame in cluster-key mode (it carries the dialer's tag).
pub const HELLO_KEYED_VERSION: u8 = 2;
/// The first byte of the challenge frame a dialer sends first in cluster-key mode.
pub const CHALLENGE_TAG: u8 = 0xFE;
/// The largest frame accepted before the hello is complete (challenge and hello frames).
pub const MAX_HELLO_FRAME: usize = 256;
/// Default [`TcpConfig::max_datagram_size`]: the Membership payload limit, chosen to match what
/// a QUIC datagram carries so the same SWIM packet size works over both transports.
pub const DEFAULT_MAX_DATAGRAM_SIZE: usize = 1200;

/// Configuration of a [`TcpTransport`].
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Largest frame (class byte + payload) accepted or sent. Default 16 MiB + 1.
    pub max_frame_length: usize,
    /// Largest Membership payload. Default [`DEFAULT_MAX_DATAGRAM_SIZE`].
    pub max_datagram_size: usize,
    /// Messages queued per peer before `send` reports [`SendError::QueueFull`]. Default 1024.
    pub peer_queue_capacity: usize,
    /// Messages buffered for [`Transport::recv`] before readers stop reading sockets. Default 4096.
    pub inbox_capacity: usize,
    /// Limit on a TCP connect. Default 5 s.
    pub connect_timeout: Duration,
    /// Limit on the TLS handshake plus the hello frame, both ways. Default 5 s.
    pub handshake_timeout: Duration,
    /// First backoff after a failed connection attempt. Default 50 ms.
    pub backoff_initial: Duration,
    /// Largest backoff. Default 2 s.
    pub backoff_max: Duration,
    /// Mutual TLS; `None` for plain TCP (then `peer_name` is always `None`).
    #[cfg(feature = "tls")]
    pub tls: Option<ClusterTls>,
    /// The cluster key for authenticated plain TCP (see the crate docs); exclusive with `tls`.
    pub cluster_key: Option<ClusterKey>,
    /// Explicit opt-in to unauthenticated plain TCP on loopback addresses only (tests, demos).
    pub insecure_plaintext: bool,
    /// Bounds on what inbound peers may hold (connections, time, bytes).
    pub limits: TcpLimits,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            max_frame_length: 16 * 1024 * 1024 + 1,
            max_datagram_size: DEFAULT_MAX_DATAGRAM_SIZE,
            peer_queue_capacity: 1024,
            inbox_capacity: 4096,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            #[cfg(feature = "tls")]
            tls: None,
            cluster_key: None,
            insecure_plaintext: false,
            limits: TcpLimits::default(),
        }
    }
}

impl TcpConfig {
    /// Plain TCP authenticated by a shared cluster key, with default limits.
    pub fn with_cluster_key(key: ClusterKey) -> Self {
        Self {
            cluster_key: Some(key),
            ..Self::default()
        }
    }

    /// Unauthenticated plain TCP on loopback only, with default limits: anyone who can reach
    /// the port can speak for any member. For tests and single-host demos.
    pub fn insecure_plaintext() -> Self {
        Self {
            insecure_plaintext: true,
            ..Self::default()
        }
    }

    /// Mutual TLS with default limits.
    #[cfg(feature = "tls")]
    pub fn with_tls(tls: ClusterTls) -> Self {
        Self {
            tls: Some(tls),
            ..Self::default()
        }
    }
}

/// Why [`TcpTransport::bind`] failed. Nothing is listening.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The listening socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Io {
        /// The requested address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The configuration picks no authentication: set `tls`, `cluster_key`, or opt in to
    /// `insecure_plaintext`.
    #[error(
        "plain TCP needs TLS, a cluster key, or an explicit insecure_plaintext() opt-in (loopback only)"
    )]
    NoAuthentication,
    /// `insecure_plaintext` was asked to listen on an address that is not loopback.
    #[error("insecure plain-text TCP listens on loopback addresses only, not {0}")]
    NotLoopback(SocketAddr),
    /// `bind` was called outside a tokio runtime.
    #[error("TcpTransport::bind must be called within a tokio runtime")]
    NoRuntime,
}

/// Why a connection attempt failed (logged and counted, never returned to callers).
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("connect: {0}")]
    Io(std::io::Error),
    #[error("connect timed out")]
    Timeout,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    #[error("TLS handshake: {0}")]
    Handshake(String),
    #[error("writing hello: {0}")]
    Hello(std::io::Error),
    #[error("cluster key handshake: {0}")]
    Key(&'static str),
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
type BoxIo = Box<dyn Io>;

struct Frame {
    class: TrafficClass,
    payload: Bytes,
}

/// How connections are authenticated (see the crate docs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Tls,
    Key,
    Insecure,
}

/// Per-peer link state shared by `send` and the writer task.
#[derive(Default)]
struct Link {
    /// `Some(t)`: the last attempt failed; Membership is dropped until `t`, the next attempt
    /// waits until `t`.
    down_until: Mutex<Option<Instant>>,
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, Option<Instant>> {
        self.down_until.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Peer {
    tx: mpsc::Sender<Frame>,
    link: Arc<Link>,
}

struct Shared {
    local_addr: SocketAddr,
    config: TcpConfig,
    peers: Mutex<HashMap<SocketAddr, Peer>>,
    cancel: CancellationToken,
    closed: AtomicBool,
    stats: StatsCounters,
    socket_bytes: SocketBytes,
    mode: Mode,
    admission: Arc<Admission>,
    inbox: mpsc::Sender<(Incoming, Held)>,
    tasks: TaskTracker,
    runtime: tokio::runtime::Handle,
    #[cfg(feature = "tls")]
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    #[cfg(feature = "tls")]
    connector: Option<tokio_rustls::TlsConnector>,
}

/// A TCP (optionally TLS) transport. See the crate docs for semantics.
pub struct TcpTransport {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<(Incoming, Held)>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("local_addr", &self.shared.local_addr)
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn codec(max_frame_length: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max_frame_length)
        .new_codec()
}

/// `[class][payload]`, then the cluster-key tag if any.
fn encode_frame(class: TrafficClass, payload: &[u8], tag: Option<&[u8; FRAME_TAG_LEN]>) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + payload.len() + tag.map_or(0, |t| t.len()));
    b.put_u8(class.to_byte());
    b.put_slice(payload);
    if let Some(t) = tag {
        b.put_slice(t);
    }
    b.freeze()
}

fn encode_hello(addr: SocketAddr) -> Bytes {
    let s = addr.to_string();
    let mut b = BytesMut::with_capacity(2 + s.len());
    b.put_u8(HELLO_TAG);
    b.put_u8(HELLO_VERSION);
    b.put_slice(s.as_bytes());
    b.freeze()
}

/// Parses a hello frame; `None` if malformed.
fn decode_hello(frame: &[u8]) -> Option<SocketAddr> {
    match frame {
        [HELLO_TAG, HELLO_VERSION, rest @ ..] if rest.len() <= 64 => {
            std::str::from_utf8(rest).ok()?.parse().ok()
        }
        _ => None,
    }
}

impl TcpTransport {
    /// Listens on `addr` (use port 0 for an OS-assigned port) and returns the transport.
    ///
    /// # Errors
    /// See [`BindError`].
    ///
    /// Cancel-safe: dropping the future before it completes leaves nothing listening.
    pub async fn bind(addr: SocketAddr, config: TcpConfig) -> Result<Self, BindError> {
        if config.max_frame_length < 2 || config.max_frame_length > u32::MAX as usize {
            return Err(BindError::InvalidConfig(
                "max_frame_length must be in 2..=u32::MAX",
            ));
        }
        if config.max_datagram_size == 0 || config.max_datagram_size >= config.max_frame_length {
            return Err(BindError::InvalidConfig(
                "max_datagram_size must be positive and below max_frame_length",
            ));
        }
        if config.peer_queue_capacity == 0 || config.inbox_capacity == 0 {
            return Err(BindError::InvalidConfig(
                "queue capacities must be positive",
            ));
        }
        #[cfg(feature = "tls")]
        let tls = config.tls.is_some();
        #[cfg(not(feature = "tls"))]
        let tls = false;
        let mode = match (tls, config.cluster_key.is_some(), config.insecure_plaintext) {
            (true, false, false) => Mode::Tls,
            (false, true, false) => Mode::Key,
            (false, false, true) => Mode::Insecure,
            (false, false, false) => return Err(BindError::NoAuthentication),
            _ => {
                return Err(BindError::InvalidConfig(
                    "choose one of tls, cluster_key and insecure_plaintext",
                ));
            }
        };
        if mode == Mode::Insecure && !addr.ip().is_loopback() {
            return Err(BindError::NotLoopback(addr));
        }
        config.limits.validate(largest_frame(&config))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BindError::NoRuntime)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError::Io { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| BindError::Io { addr, source })?;
        let (inbox, rx) = mpsc::channel(config.inbox_capacity);
        #[cfg(feature = "tls")]
        let (acceptor, connector) = match &config.tls {
            Some(tls) => (
                Some(tokio_rustls::TlsAcceptor::from(tls.server_config())),
                Some(tokio_rustls::TlsConnector::from(tls.client_config())),
            ),
            None => (None, None),
        };
        let admission = Arc::new(Admission::new(&config.limits));
        let shared = Arc::new(Shared {
            local_addr,
            mode,
            admission,
            config,
            peers: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            closed: AtomicBool::new(false),
            stats: StatsCounters::new("tcp"),
            socket_bytes: SocketBytes::new(),
            inbox,
            tasks: TaskTracker::new(),
            runtime,
            #[cfg(feature = "tls")]
            acceptor,
            #[cfg(feature = "tls")]
            connector,
        });
        shared.tasks.spawn(accept_loop(
            Arc::downgrade(&shared),
            listener,
            shared.cancel.clone(),
        ));
        tracing::debug!(%local_addr, tls = shared.is_tls(), "tcp transport listening");
        Ok(Self { shared, rx })
    }

    /// This transport's counters.
    pub fn stats(&self) -> TransportStats {
        self.shared.stats.snapshot()
    }

    /// Whether connections use mutual TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.is_tls()
    }

    /// Refusals by reason (connection caps, timeouts, frame limits, buffer budget,
    /// authentication); see the crate docs for the reasons.
    pub fn refused_by(&self) -> BTreeMap<&'static str, u64> {
        self.shared.stats.refused_by()
    }

    /// Inbound connections currently open (handshaking or established).
    pub fn inbound_connections(&self) -> usize {
        self.shared.admission.open()
    }

    /// Bytes this transport wrote to and read from its TCP sockets (handshakes, hellos,
    /// TLS records, frame headers and payloads), next to the message payloads of
    /// [`TcpTransport::stats`]. The handle is live: it keeps counting after the transport is
    /// handed to a registry.
    pub fn socket_bytes(&self) -> SocketBytes {
        self.shared.socket_bytes.clone()
    }

    /// A handle on this transport's counters that stays usable after the transport was
    /// handed to a registry (which takes it by value).
    pub fn monitor(&self) -> TcpMonitor {
        TcpMonitor {
            shared: Arc::downgrade(&self.shared),
        }
    }

    fn close(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.peers().clear();
    }
}

/// Reads a [`TcpTransport`]'s counters from elsewhere (see [`TcpTransport::monitor`]). Once
/// the transport is dropped every reading is empty.
#[derive(Clone)]
pub struct TcpMonitor {
    shared: std::sync::Weak<Shared>,
}

impl std::fmt::Debug for TcpMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpMonitor").finish_non_exhaustive()
    }
}

impl TcpMonitor {
    /// The transport's counters ([`TcpTransport::stats`]); zero once it is gone.
    pub fn stats(&self) -> TransportStats {
        self.shared
            .upgrade()
            .map(|s| s.stats.snapshot())
            .unwrap_or_default()
    }

    /// Refusals by reason ([`TcpTransport::refused_by`]); empty once it is gone.
    pub fn refused_by(&self) -> BTreeMap<&'static str, u64> {
        self.shared
            .upgrade()
            .map(|s| s.stats.refused_by())
            .unwrap_or_default()
    }

    /// Inbound connections open ([`TcpTransport::inbound_connections`]); 0 once it is gone.
    pub fn inbound_connections(&self) -> usize {
        self.shared.upgrade().map_or(0, |s| s.admission.open())
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn peers(&self) -> MutexGuard<'_, HashMap<SocketAddr, Peer>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        {
            self.acceptor.is_some()
        }
        #[cfg(not(feature = "tls"))]
        {
            false
        }
    }
}

impl Transport for TcpTransport {
    fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    fn max_datagram_size(&self) -> usize {
        self.shared.config.max_datagram_size
    }

    fn send(&self, msg: Outgoing) -> Result<(), SendError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::SeqCst) {
            return Err(SendError::Closed);
        }
        let Outgoing { to, class, payload } = msg;
        let max = match class {
            TrafficClass::Membership => shared.config.max_datagram_size,
            TrafficClass::Delta | TrafficClass::Sync | TrafficClass::Mail => {
                shared.config.max_frame_length - 1
            }
        };
        if payload.len() > max {
            return Err(SendError::TooLarge {
                class,
                len: payload.len(),
                max,
            });
        }
        if shared.mode == Mode::Insecure && !to.ip().is_loopback() {
            shared.stats.dropped(class, "non_loopback_peer", 1);
            tracing::warn!(%to, "insecure plain-text TCP does not send to non-loopback addresses");
            return Ok(());
        }
        let mut peers = shared.peers();
        let peer = match peers.get(&to) {
            Some(p) if !p.tx.is_closed() => p,
            _ => {
                let (tx, rx) = mpsc::channel(shared.config.peer_queue_capacity);
                let link = Arc::new(Link::default());
                shared.tasks.spawn_on(
                    writer(
                        Arc::downgrade(shared),
                        to,
                        rx,
                        link.clone(),
                        shared.cancel.clone(),
                    ),
                    &shared.runtime,
                );
                peers.insert(to, Peer { tx, link });
                match peers.get(&to) {
                    Some(p) => p,
                    None => return Err(SendError::Closed),
                }
            }
        };
        if class == TrafficClass::Membership && peer.link.lock().is_some_and(|t| Instant::now() < t)
        {
            shared.stats.dropped(class, "link_down", 1);
            return Ok(());
        }
        shared
            .stats
            .queue_result(peer.tx.try_send(Frame { class, payload }), class, to)
    }

    /// Cancel-safe: waits on a tokio mpsc receiver and the shutdown token only.
    async fn recv(&mut self) -> Option<Incoming> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return None;
        }
        let cancel = self.shared.cancel.clone();
        // The frame's buffer budget is released here, as it leaves the transport.
        let (msg, _held) = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            m = self.rx.recv() => m,
        }?;
        self.shared.stats.received(msg.class);
        Some(msg)
    }

    /// Stops the listener, closes every connection (writers close their sockets gracefully)
    /// and waits for all tasks to end.
    ///
    /// Cancel-safe: everything is already told to stop before the first await.
    async fn shutdown(&mut self) {
        self.close();
        self.rx.close();
        self.shared.tasks.wait().await;
        tracing::debug!(local_addr = %self.shared.local_addr, "tcp transport shut down");
    }
}

async fn accept_loop(
    shared: std::sync::Weak<Shared>,
    listener: TcpListener,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let Some(s) = shared.upgrade() else { return };
        match accepted {
            Ok((stream, remote)) => {
                if s.mode == Mode::Insecure && !remote.ip().is_loopback() {
                    s.stats.refused("non_loopback_peer");
                    continue;
                }
                let guard = match Admission::admit(&s.admission, remote.ip()) {
                    Ok(g) => g,
                    Err(reason) => {
                        // Closed at once (dropped); counted, logged at debug only: a flood
                        // must not flood the logs too.
                        s.stats.refused(reason);
                        tracing::debug!(%remote, reason, "inbound connection refused");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                s.tasks.spawn(reader(
                    s.clone(),
                    Counting::new(stream, s.socket_bytes.clone()),
                    remote,
                    guard,
                    cancel.clone(),
                ));
            }
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "tcp accept failed");
                drop(s);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

/// The largest frame (class byte + payload, without a tag) of `class` this transport accepts.
fn class_limit(config: &TcpConfig, class: TrafficClass) -> usize {
    let payload = match class {
        TrafficClass::Membership => config.max_datagram_size,
        _ => class.max_len().min(config.max_frame_length - 1),
    };
    payload + 1
}

/// The largest frame of any class.
fn largest_frame(config: &TcpConfig) -> usize {
    TrafficClass::ALL
        .iter()
        .map(|c| class_limit(config, *c))
        .max()
        .unwrap_or(0)
        + FRAME_TAG_LEN
}

/// Why a handshake or frame read ended the connection.
enum ReadError {
    /// The peer closed or the socket failed.
    Io,
    /// A frame longer than allowed at this point.
    TooLarge,
}

/// Reads one length-delimited frame of at most `max` bytes (handshake only: small frames).
async fn read_small_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    let n = r.read_u32().await.map_err(|_| ReadError::Io)? as usize;
    if n > max {
        return Err(ReadError::TooLarge);
    }
    let mut v = vec![0u8; n];
    r.read_exact(&mut v).await.map_err(|_| ReadError::Io)?;
    Ok(v)
}

/// Writes one length-delimited frame and flushes it (handshake only).
async fn write_small_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(frame.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(frame).await?;
    w.flush().await
}

/// What the acceptor's half of the handshake establishes.
struct Accepted {
    io: BoxIo,
    peer_name: Option<String>,
    from: SocketAddr,
    session: Option<Session>,
}

/// The acceptor's half of the handshake: TLS, then the hello (with the cluster key's
/// challenge–response in key mode). `Err` carries the refusal reason to count.
async fn accept_handshake(
    shared: &Shared,
    stream: Counting<TcpStream>,
    remote: SocketAddr,
) -> Result<Accepted, &'static str> {
    let (mut io, peer_name): (BoxIo, Option<String>) = match accept_tls(shared, stream).await {
        Ok(x) => x,
        Err(e) => {
            shared.stats.handshake_failed();
            tracing::warn!(%remote, error = %e, "inbound tls handshake failed");
            return Err("");
        }
    };
    let first = match read_small_frame(&mut io, MAX_HELLO_FRAME).await {
        Ok(f) => f,
        Err(ReadError::Io) => return Err(""),
        Err(ReadError::TooLarge) => return Err("frame_too_large_before_hello"),
    };
    let Some(key) = &shared.config.cluster_key else {
        return match decode_hello(&first) {
            Some(from) => Ok(Accepted {
                io,
                peer_name,
                from,
                session: None,
            }),
            None => {
                shared.stats.malformed("bad_hello");
                tracing::warn!(%remote, "missing or malformed hello; closing connection");
                Err("")
            }
        };
    };
    let nonce_d = match first.as_slice() {
        [CHALLENGE_TAG, HELLO_VERSION, rest @ ..] if rest.len() == NONCE_LEN => rest.to_vec(),
        _ => return Err("auth_failed"),
    };
    let nonce_a = auth::nonce().map_err(|e| {
        tracing::error!(error = %e, "no randomness from the OS");
        "no_randomness"
    })?;
    let mut answer = nonce_a.to_vec();
    answer.extend_from_slice(&key.acceptor_tag(&nonce_d, &nonce_a));
    write_small_frame(&mut io, &answer).await.map_err(|_| "")?;
    let hello = match read_small_frame(&mut io, MAX_HELLO_FRAME).await {
        Ok(f) => f,
        Err(ReadError::Io) => return Err("auth_failed"),
        Err(ReadError::TooLarge) => return Err("frame_too_large_before_hello"),
    };
    let (tag, addr) = match hello.as_slice() {
        [HELLO_TAG, HELLO_KEYED_VERSION, rest @ ..] if rest.len() > TAG_LEN => {
            rest.split_at(TAG_LEN)
        }
        _ => return Err("auth_failed"),
    };
    if !key.verify_dialer(&nonce_d, &nonce_a, addr, tag) {
        return Err("auth_failed");
    }
    let from = std::str::from_utf8(addr)
        .ok()
        .and_then(|a| a.parse().ok())
        .ok_or("auth_failed")?;
    Ok(Accepted {
        io,
        peer_name,
        from,
        session: Some(key.session(&nonce_d, &nonce_a)),
    })
}

/// Accepts one inbound connection: handshake, hello, then frames until EOF, a bound or
/// shutdown. `_guard` holds the connection's admission slot until the connection ends.
async fn reader(
    shared: Arc<Shared>,
    stream: Counting<TcpStream>,
    remote: SocketAddr,
    _guard: limits::Guard,
    cancel: CancellationToken,
) {
    let timeout = shared.config.handshake_timeout;
    let setup = tokio::select! {
        _ = cancel.cancelled() => return,
        r = tokio::time::timeout(timeout, accept_handshake(&shared, stream, remote)) => r,
    };
    let Accepted {
        io,
        peer_name,
        mut from,
        mut session,
    } = match setup {
        Ok(Ok(x)) => x,
        Ok(Err("")) => return,
        Ok(Err(reason)) => {
            shared.stats.refused(reason);
            tracing::warn!(%remote, reason, "inbound connection refused during the hello");
            return;
        }
        Err(_) => {
            shared.stats.handshake_failed();
            shared.stats.refused("hello_timeout");
            tracing::warn!(%remote, "inbound handshake timed out");
            return;
        }
    };
    if from.ip().is_unspecified() {
        // The peer listens on all interfaces: reply to the address it connected from.
        from.set_ip(remote.ip());
    }
    tracing::debug!(%remote, %from, ?peer_name, "inbound connection established");
    let limits = shared.config.limits.clone();
    let tag_len = if session.is_some() { FRAME_TAG_LEN } else { 0 };
    let conn_budget = Arc::new(tokio::sync::Semaphore::new(
        limits.max_buffered_per_connection,
    ));
    let mut io = tokio::io::BufReader::with_capacity(8 * 1024, io);
    let inbox = shared.inbox.clone();
    loop {
        // Idle: waiting for the next frame to start.
        let len = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(limits.idle_timeout, io.read_u32()) => match r {
                Ok(Ok(n)) => n as usize,
                Ok(Err(e)) => {
                    tracing::debug!(%from, error = %e, "inbound connection ended");
                    return;
                }
                Err(_) => {
                    shared.stats.refused("idle_timeout");
                    tracing::debug!(%from, "idle inbound connection closed");
                    return;
                }
            },
        };
        let deadline = Instant::now() + limits.frame_timeout;
        if len == 0 {
            shared.stats.malformed("empty_frame");
            tracing::warn!(%from, "empty frame dropped");
            continue;
        }
        let frame = tokio::select! {
            _ = cancel.cancelled() => return,
            r = read_frame(&shared, &mut io, len, tag_len, &conn_budget, from, deadline) => match r {
                Ok(f) => f,
                Err(FrameError::Closed) => return,
                Err(FrameError::Refused(reason)) => {
                    shared.stats.refused(reason);
                    tracing::warn!(%from, reason, len, "inbound frame refused; closing connection");
                    return;
                }
                Err(FrameError::Skip) => continue,
            },
        };
        let (class, mut payload, held) = frame;
        if let Some(session) = session.as_mut() {
            let tag = payload.split_off(payload.len() - FRAME_TAG_LEN);
            if !session.open(class.to_byte(), &payload, &tag) {
                shared.stats.refused("bad_frame_tag");
                tracing::warn!(%from, "frame with a bad cluster-key tag; closing connection");
                return;
            }
        }
        let msg = Incoming {
            from,
            peer_name: peer_name.clone(),
            class,
            payload: payload.freeze(),
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = inbox.send((msg, held)) => if r.is_err() { return },
        }
    }
}

enum FrameError {
    /// The peer closed or the socket failed.
    Closed,
    /// A bound was hit: close and count.
    Refused(&'static str),
    /// A malformed frame was skipped (counted); the connection goes on.
    Skip,
}

/// Reads the rest of a frame whose length prefix said `len`: the class byte, the limit check,
/// the budget reservation, then the payload (and tag) as it arrives.
async fn read_frame<R: AsyncRead + Unpin>(
    shared: &Shared,
    io: &mut R,
    len: usize,
    tag_len: usize,
    conn_budget: &Arc<tokio::sync::Semaphore>,
    from: SocketAddr,
    deadline: Instant,
) -> Result<(TrafficClass, BytesMut, Held), FrameError> {
    let stalled = |_| FrameError::Refused("stalled_frame");
    let tag = tokio::time::timeout_at(deadline, io.read_u8())
        .await
        .map_err(stalled)?
        .map_err(|_| FrameError::Closed)?;
    let rest = len - 1;
    let Some(class) = TrafficClass::from_byte(tag) else {
        if rest > MAX_HELLO_FRAME {
            // Not worth skipping: a peer that sends large unknown frames is not a cluster member.
            return Err(FrameError::Refused("class_limit"));
        }
        shared.stats.malformed("bad_class");
        tracing::warn!(%from, tag, "frame with unknown class dropped");
        let mut skip = vec![0u8; rest];
        tokio::time::timeout_at(deadline, io.read_exact(&mut skip))
            .await
            .map_err(stalled)?
            .map_err(|_| FrameError::Closed)?;
        return Err(FrameError::Skip);
    };
    if len > class_limit(&shared.config, class) + tag_len || rest < tag_len {
        return Err(FrameError::Refused("class_limit"));
    }
    // Backpressure: nothing more is read from this peer while the budgets are exhausted.
    let held =
        tokio::time::timeout_at(deadline, Held::reserve(&shared.admission, conn_budget, len))
            .await
            .map_err(|_| FrameError::Refused("buffer_full"))?
            .map_err(FrameError::Refused)?;
    let mut payload = BytesMut::with_capacity(rest.min(SMALL_FRAME));
    while payload.len() < rest {
        let want = rest - payload.len();
        payload.reserve(want.min(SMALL_FRAME));
        let n = tokio::time::timeout_at(
            deadline,
            (&mut *io).take(want as u64).read_buf(&mut payload),
        )
        .await
        .map_err(stalled)?
        .map_err(|_| FrameError::Closed)?;
        if n == 0 {
            return Err(FrameError::Closed);
        }
    }
    Ok((class, payload, held))
}

async fn accept_tls(
    shared: &Shared,
    stream: Counting<TcpStream>,
) -> Result<(BoxIo, Option<String>), String> {
    #[cfg(feature = "tls")]
    if let Some(acceptor) = &shared.acceptor {
        let tls = acceptor.accept(stream).await.map_err(|e| e.to_string())?;
        let conn = tls.get_ref().1;
        check_alpn(shared, conn.alpn_protocol())?;
        let name = conn
            .peer_certificates()
            .and_then(tls::peer_name_from_certs)
            .ok_or_else(|| "client certificate has no DNS name".to_owned())?;
        return Ok((Box::new(tls), Some(name)));
    }
    let _ = shared;
    Ok((Box::new(stream), None))
}

#[cfg(feature = "tls")]
fn check_alpn(shared: &Shared, negotiated: Option<&[u8]>) -> Result<(), String> {
    let Some(tls) = &shared.config.tls else {
        return Ok(());
    };
    let offered = tls.alpn_protocols();
    match negotiated {
        _ if offered.is_empty() => Ok(()),
        Some(p) if offered.iter().any(|o| o == p) => Ok(()),
        _ => Err("no common ALPN protocol".to_owned()),
    }
}

async fn connect(
    shared: &Shared,
    to: SocketAddr,
) -> Result<(BoxIo, Option<Session>), ConnectError> {
    let stream = tokio::time::timeout(shared.config.connect_timeout, TcpStream::connect(to))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(ConnectError::Io)?;
    let _ = stream.set_nodelay(true);
    let stream = Counting::new(stream, shared.socket_bytes.clone());
    let io: BoxIo = {
        #[cfg(feature = "tls")]
        match &shared.connector {
            Some(connector) => {
                // The cluster verifier ignores the dialed name (see `pidmesh_transport::tls`).
                let name = rustls::pki_types::ServerName::IpAddress(to.ip().into());
                let tls = tokio::time::timeout(
                    shared.config.handshake_timeout,
                    connector.connect(name, stream),
                )
                .await
                .map_err(|_| ConnectError::Handshake("timed out".into()))?
                .map_err(|e| ConnectError::Handshake(e.to_string()))?;
                let conn = tls.get_ref().1;
                check_alpn(shared, conn.alpn_protocol()).map_err(ConnectError::Handshake)?;
                tracing::debug!(%to, peer_name = ?conn.peer_certificates().and_then(tls::peer_name_from_certs), "tls connection established");
                Box::new(tls)
            }
            None => Box::new(stream),
        }
        #[cfg(not(feature = "tls"))]
        Box::new(stream)
    };
    let mut io = io;
    let hello = dial_hello(shared, &mut io);
    let session = tokio::time::timeout(shared.config.handshake_timeout, hello)
        .await
        .map_err(|_| ConnectError::Hello(std::io::ErrorKind::TimedOut.into()))??;
    Ok((io, session))
}

/// The dialer's half of the hello: the plain hello, or the cluster key's challenge–response.
async fn dial_hello(shared: &Shared, io: &mut BoxIo) -> Result<Option<Session>, ConnectError> {
    let Some(key) = &shared.config.cluster_key else {
        write_small_frame(io, &encode_hello(shared.local_addr))
            .await
            .map_err(ConnectError::Hello)?;
        return Ok(None);
    };
    let nonce_d = auth::nonce().map_err(|_| ConnectError::Key("no randomness from the OS"))?;
    let mut challenge = vec![CHALLENGE_TAG, HELLO_VERSION];
    challenge.extend_from_slice(&nonce_d);
    write_small_frame(io, &challenge)
        .await
        .map_err(ConnectError::Hello)?;
    let answer = read_small_frame(io, NONCE_LEN + TAG_LEN)
        .await
        .map_err(|_| ConnectError::Key("no valid answer to the challenge"))?;
    if answer.len() != NONCE_LEN + TAG_LEN {
        return Err(ConnectError::Key("no valid answer to the challenge"));
    }
    let (nonce_a, tag) = answer.split_at(NONCE_LEN);
    if !key.verify_acceptor(&nonce_d, nonce_a, tag) {
        return Err(ConnectError::Key("the peer does not hold the cluster key"));
    }
    let addr = shared.local_addr.to_string();
    let mut hello = vec![HELLO_TAG, HELLO_KEYED_VERSION];
    hello.extend_from_slice(&key.dialer_tag(&nonce_d, nonce_a, addr.as_bytes()));
    hello.extend_from_slice(addr.as_bytes());
    write_small_frame(io, &hello)
        .await
        .map_err(ConnectError::Hello)?;
    Ok(Some(key.session(&nonce_d, nonce_a)))
}

/// Owns the outgoing connection to one peer.
async fn writer(
    shared: std::sync::Weak<Shared>,
    to: SocketAddr,
    mut rx: mpsc::Receiver<Frame>,
    link: Arc<Link>,
    cancel: CancellationToken,
) {
    let Some(s) = shared.upgrade() else { return };
    let (initial, max_backoff, max_frame) = (
        s.config.backoff_initial,
        s.config.backoff_max,
        s.config.max_frame_length,
    );
    drop(s);
    let mut backoff = initial;
    'connection: loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            m = rx.recv() => match m { Some(m) => m, None => return },
        };
        let wait = *link.lock();
        if let Some(t) = wait {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(t) => {}
            }
        }
        let Some(s) = shared.upgrade() else { return };
        let conn = tokio::select! {
            _ = cancel.cancelled() => return,
            c = connect(&s, to) => c,
        };
        let (io, mut session) = match conn {
            Ok(x) => x,
            Err(e) => {
                match &e {
                    ConnectError::Handshake(_) | ConnectError::Key(_) => s.stats.handshake_failed(),
                    _ => s.stats.connect_failed(),
                }
                tracing::debug!(%to, error = %e, ?backoff, "connecting to peer failed");
                s.stats.dropped(first.class, "connect_failed", 1);
                while let Ok(f) = rx.try_recv() {
                    s.stats.dropped(f.class, "connect_failed", 1);
                }
                *link.lock() = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(max_backoff);
                continue 'connection;
            }
        };
        *link.lock() = None;
        backoff = initial;
        tracing::debug!(%to, "outgoing connection established");
        let (mut read_half, write_half) = tokio::io::split(io);
        let mut sink = FramedWrite::new(write_half, codec(max_frame + FRAME_TAG_LEN));
        let mut next = Some(first);
        let mut probe = [0u8; 64];
        loop {
            let frame = match next.take() {
                Some(f) => f,
                None => {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => {
                            let _ = tokio::time::timeout(Duration::from_secs(1), SinkExt::<Bytes>::close(&mut sink)).await;
                            return;
                        }
                        r = read_half.read(&mut probe) => {
                            match r {
                                Ok(0) | Err(_) => tracing::debug!(%to, "peer closed the connection"),
                                Ok(_) => {
                                    s.stats.malformed("unexpected_data");
                                    tracing::warn!(%to, "peer wrote on a one-way connection; closing");
                                }
                            }
                            continue 'connection;
                        }
                        m = rx.recv() => match m {
                            Some(f) => f,
                            None => return,
                        },
                    }
                }
            };
            let class = frame.class;
            let write = async {
                let tag = session
                    .as_mut()
                    .map(|s| s.seal(frame.class.to_byte(), &frame.payload));
                let bytes = encode_frame(frame.class, &frame.payload, tag.as_ref());
                sink.feed(bytes).await?;
                if rx.is_empty() {
                    SinkExt::<Bytes>::flush(&mut sink).await?;
                }
                Ok::<(), std::io::Error>(())
            };
            let r = tokio::select! {
                _ = cancel.cancelled() => return,
                r = write => r,
            };
            match r {
                Ok(()) => s.stats.sent(class),
                Err(e) => {
                    s.stats.dropped(class, "connection_lost", 1);
                    tracing::debug!(%to, error = %e, "writing to peer failed; reconnecting on next send");
                    continue 'connection;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn hello_round_trips_and_rejects_garbage() {
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(decode_hello(&encode_hello(a)), Some(a));
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        assert_eq!(decode_hello(&encode_hello(v6)), Some(v6));
        assert_eq!(decode_hello(&[]), None);
        assert_eq!(decode_hello(&[HELLO_TAG]), None);
        assert_eq!(decode_hello(&[HELLO_TAG, 2, b'1']), None);
        assert_eq!(decode_hello(&[HELLO_TAG, HELLO_VERSION, 0xFF, 0xFE]), None);
        assert_eq!(decode_hello(&[0, HELLO_VERSION]), None);
    }
}
