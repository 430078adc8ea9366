//! QUIC transport for pidmesh (quinn 0.11 + rustls 0.23, mutual TLS).
//!
//! [`QuicTransport`] implements [`Transport`] with one quinn [`Endpoint`] that both listens and
//! dials, so the remote address of every connection is the peer's *listening* address and is
//! reported as [`Incoming::from`] without any hello message.
//!
//! # Mapping of traffic classes
//!
//! | class | QUIC primitive |
//! |---|---|
//! | Membership | one QUIC datagram per message (unreliable, congestion-controlled) |
//! | Delta | one long-lived uni stream per connection, length-delimited frames |
//! | Sync | a second long-lived uni stream per connection, length-delimited frames |
//!
//! Why long-lived streams rather than a stream per message: the contract requires Delta and
//! Sync to be *ordered* per (sender, receiver) pair. Separate streams are delivered
//! independently, so a stream per message would need sequence numbers and a reordering buffer
//! at the receiver. One stream per class gives ordering for free, still isolates the classes
//! from each other (a multi-megabyte snapshot on the Sync stream never delays a delta), and
//! costs no stream setup per message. A stream starts with one byte, the class
//! ([`TrafficClass::to_byte`]); then each frame is a 4-byte big-endian length and the payload,
//! at most [`QuicConfig::max_frame_length`] bytes. Sync is uni-directional because the
//! transport contract is message-based: a sync reply is just a message the other way.
//!
//! # Connections
//!
//! One cached outgoing connection per peer, created under a per-peer lock (concurrent senders
//! never open duplicates), reused unless `close_reason()` is set; a send that finds its
//! connection lost reconnects and retries once. Each peer has three lanes (one writer task and
//! a bounded queue per class). Membership datagrams are sent directly from
//! [`Transport::send`] when a live connection exists, dropped while the link is in backoff
//! after a failure, and otherwise queued (bounded) behind the connection attempt. Two nodes
//! usually hold two connections (each dials the other); both are equivalent.
//!
//! A keep-alive ([`QuicConfig::keep_alive_interval`]) below the idle timeout keeps idle
//! connections open; failure detection is left to SWIM.
//!
//! A node that crashed and restarted at the same address with the same private key is reached
//! at once: the endpoint's stateless-reset key and connection-ID key come from
//! [`ClusterTls::restart_secret`](pidmesh_transport::tls::ClusterTls::restart_secret), so the
//! new life recognizes the old life's connection IDs and answers their packets with a reset
//! the peer accepts; the peer drops the dead connection and dials again instead of writing into
//! it until the idle timeout.
//!
//! # Resource bounds
//!
//! Every quinn transport parameter that bounds what a peer can make this node hold is set
//! explicitly (`transport_config`), not left to quinn's defaults:
//!
//! | parameter | value | why |
//! |---|---|---|
//! | handshake timeout ([`QuicConfig::connect_timeout`]), both ways | 5 s | an unfinished handshake holds a slot no longer |
//! | idle timeout ([`QuicConfig::idle_timeout`]) / keep-alive | 10 s / 3 s | dead connections go, live idle ones stay |
//! | bidirectional streams | 0 | the protocol never uses them |
//! | concurrent unidirectional streams per connection | [`MAX_CONCURRENT_UNI_STREAMS`] = 4 | one Delta and one Sync stream, plus replacements |
//! | stream receive window | [`STREAM_RECEIVE_WINDOW`] = 4 MiB + 64 KiB | one largest frame (a Sync chunk) in flight |
//! | connection receive window | [`CONNECTION_RECEIVE_WINDOW`] = 8 MiB + 128 KiB | both streams at full window |
//! | datagram receive buffer | [`DATAGRAM_RECEIVE_BUFFER`] = 1 MiB | ~900 SWIM packets; older ones dropped beyond |
//! | frame size | the class's limit from `pidmesh-wire` (Delta 1 MiB, Sync 4 MiB, Mail 1 MiB), capped by [`QuicConfig::max_frame_length`] | refused from the length prefix; the connection is closed |
//!
//! Only peers with a certificate from the cluster CA complete a handshake, so flow-control
//! windows bound what an authenticated peer can pin (about 8 MiB per connection); an
//! unauthenticated sender costs a failed handshake (the 10,000 random datagrams of the
//! issue-10 review left RSS unchanged).
//!
//! # TLS
//!
//! [`ClusterTls`] (re-exported from `pidmesh_transport::tls`): TLS 1.3 only, ALPN [`ALPN`]
//! (`pidmesh/1`, the wire major version), client certificates required and verified against
//! the cluster CA, the crypto provider passed explicitly (the library never installs a
//! process-wide default). The core dials addresses, not names, so the client accepts any server
//! certificate that chains to the cluster CA (see `pidmesh_transport::tls` for the reasoning).
//! The server reports the name in the client's certificate as [`Incoming::peer_name`]; since
//! every message arrives on a connection the sender dialed, `peer_name` is always `Some`.
//!
//! The `pidmesh_transport::tls::dev_ca` module (feature `dev-ca`) mints development certificates.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, ConnectionError, Endpoint, SendDatagramError, VarInt};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use pidmesh_transport::SocketBytes;
use pidmesh_transport::stats::StatsCounters;

mod counting;
#[cfg(feature = "dev-ca")]
pub use pidmesh_transport::tls::dev_ca;
pub use pidmesh_transport::tls::{
    self, ALPN_PIDMESH_V1, ClusterTls, ClusterTlsBuilder, TlsConfigError,
};
pub use pidmesh_transport::{
    Incoming, Outgoing, SendError, TrafficClass, Transport, TransportStats,
};

/// The ALPN protocol id: `pidmesh/<wire major version>`.
pub const ALPN: &[u8] = ALPN_PIDMESH_V1;

/// A Membership payload size that fits a QUIC datagram on any path, even before path MTU
/// discovery (QUIC's 1200-byte minimum MTU minus packet and frame overhead). Size foca's
/// `max_packet_size` with it; it is the default [`QuicConfig::max_datagram_size`].
pub const FOCA_MAX_PACKET_SIZE: usize = 1150;

/// Application close code used when the transport shuts down.
const CLOSE_SHUTDOWN: u32 = 0;
/// Application close code used when a peer violates the stream protocol.
const CLOSE_PROTOCOL: u32 = 1;

/// Configuration of a [`QuicTransport`].
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// Certificates and verifiers.
    pub tls: ClusterTls,
    /// Largest Membership payload accepted by `send`. Default [`FOCA_MAX_PACKET_SIZE`].
    pub max_datagram_size: usize,
    /// Largest Delta or Sync payload. Default 16 MiB.
    pub max_frame_length: usize,
    /// Messages queued per peer and reliable class. Default 1024.
    pub lane_capacity: usize,
    /// Membership messages queued per peer while connecting. Default 64.
    pub datagram_queue_capacity: usize,
    /// Messages buffered for [`Transport::recv`]. Default 4096.
    pub inbox_capacity: usize,
    /// QUIC idle timeout (the effective value is the minimum of both peers'). Default 10 s.
    pub idle_timeout: Duration,
    /// Keep-alive interval; must be below the idle timeout. Default 3 s.
    pub keep_alive_interval: Duration,
    /// Limit on a connection handshake, both ways. Default 5 s.
    pub connect_timeout: Duration,
    /// First backoff after a failed connection attempt. Default 50 ms.
    pub backoff_initial: Duration,
    /// Largest backoff. Default 2 s.
    pub backoff_max: Duration,
}

impl QuicConfig {
    /// Default limits with the given TLS configuration.
    pub fn new(tls: ClusterTls) -> Self {
        Self {
            tls,
            max_datagram_size: FOCA_MAX_PACKET_SIZE,
            max_frame_length: 16 * 1024 * 1024,
            lane_capacity: 1024,
            datagram_queue_capacity: 64,
            inbox_capacity: 4096,
            idle_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// Why [`QuicTransport::bind`] failed. Nothing is listening.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Io {
        /// The requested address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The rustls configuration cannot be used for QUIC (e.g. it allows TLS 1.2 only).
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(String),
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// `bind` was called outside a tokio runtime.
    #[error("QuicTransport::bind must be called within a tokio runtime")]
    NoRuntime,
}

/// Why a connection attempt failed (logged and counted).
#[derive(Debug, thiserror::Error)]
enum ConnectFailure {
    #[error("cannot start connection: {0}")]
    Start(#[from] quinn::ConnectError),
    #[error("handshake failed: {0}")]
    Handshake(ConnectionError),
    #[error("connection failed: {0}")]
    Connection(ConnectionError),
    #[error("connect timed out")]
    Timeout,
    #[error("peer certificate has no DNS name")]
    NoPeerName,
    #[error("transport is shutting down")]
    Closed,
}

/// Whether a connection error comes from the TLS handshake (a crypto error code).
fn is_crypto_error(e: &ConnectionError) -> bool {
    let code = match e {
        ConnectionError::TransportError(t) => t.code,
        ConnectionError::ConnectionClosed(c) => c.error_code,
        _ => return false,
    };
    (0x100..0x200).contains(&u64::from(code))
}

fn peer_name(conn: &Connection) -> Option<String> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    tls::peer_name_from_certs(&certs)
}

struct PeerLinkState {
    /// Membership is dropped and connection attempts wait until then, after a failure.
    down_until: Option<Instant>,
    backoff: Duration,
}

/// Everything about one peer we send to.
struct Peer {
    addr: SocketAddr,
    /// The per-peer lock held while connecting.
    conn: tokio::sync::Mutex<Option<Connection>>,
    /// A copy of the live connection for the synchronous datagram fast path.
    cached: Mutex<Option<Connection>>,
    state: Mutex<PeerLinkState>,
    datagrams: mpsc::Sender<Bytes>,
    delta: mpsc::Sender<Bytes>,
    sync: mpsc::Sender<Bytes>,
    /// Mail lane (one long-lived uni stream per connection).
    mail: mpsc::Sender<Bytes>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Peer {
    fn live_connection(&self) -> Option<Connection> {
        lock(&self.cached)
            .as_ref()
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    fn is_down(&self) -> bool {
        lock(&self.state)
            .down_until
            .is_some_and(|t| Instant::now() < t)
    }

    /// Forgets `conn` if it is still the cached one.
    fn invalidate(&self, conn: &Connection) {
        let mut cached = lock(&self.cached);
        if cached.as_ref().map(Connection::stable_id) == Some(conn.stable_id()) {
            *cached = None;
        }
    }

    /// The cached connection, or a new one (under the per-peer lock).
    async fn connection(&self, shared: &Shared) -> Result<Connection, ConnectFailure> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        let wait = lock(&self.state).down_until;
        if let Some(t) = wait {
            tokio::time::sleep_until(t).await;
        }
        if shared.closed.load(Ordering::SeqCst) {
            return Err(ConnectFailure::Closed);
        }
        let result = async {
            let connecting = shared
                .endpoint
                .connect(self.addr, &self.addr.ip().to_string())?;
            let conn = tokio::time::timeout(shared.config.connect_timeout, connecting)
                .await
                .map_err(|_| ConnectFailure::Timeout)?
                .map_err(|e| {
                    if is_crypto_error(&e) {
                        ConnectFailure::Handshake(e)
                    } else {
                        ConnectFailure::Connection(e)
                    }
                })?;
            let name = peer_name(&conn).ok_or(ConnectFailure::NoPeerName)?;
            tracing::debug!(peer = %self.addr, peer_name = %name, "quic connection established");
            Ok(conn)
        }
        .await;
        let mut state = lock(&self.state);
        match result {
            Ok(conn) => {
                state.down_until = None;
                state.backoff = shared.config.backoff_initial;
                *slot = Some(conn.clone());
                *lock(&self.cached) = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                match &e {
                    ConnectFailure::Handshake(_) | ConnectFailure::NoPeerName => {
                        shared.stats.handshake_failed();
                        tracing::warn!(peer = %self.addr, error = %e, "quic handshake failed");
                    }
                    ConnectFailure::Closed => {}
                    _ => {
                        shared.stats.connect_failed();
                        tracing::debug!(peer = %self.addr, error = %e, "quic connect failed");
                    }
                }
                state.down_until = Some(Instant::now() + state.backoff);
                state.backoff = (state.backoff * 2).min(shared.config.backoff_max);
                Err(e)
            }
        }
    }
}

struct Shared {
    endpoint: Endpoint,
    local_addr: SocketAddr,
    config: QuicConfig,
    peers: Mutex<HashMap<SocketAddr, Arc<Peer>>>,
    cancel: CancellationToken,
    closed: AtomicBool,
    stats: StatsCounters,
    socket_bytes: SocketBytes,
    inbox: mpsc::Sender<Incoming>,
    tasks: TaskTracker,
    runtime: tokio::runtime::Handle,
}

/// A QUIC transport. See the crate docs for semantics.
pub struct QuicTransport {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Incoming>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("local_addr", &self.shared.local_addr)
            .field("node_name", &self.shared.config.tls.node_name())
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Per-stream receive window: one of the largest frames (a 4 MiB Sync chunk) plus room for
/// the next one's start, so a snapshot streams without stalling on window updates.
pub const STREAM_RECEIVE_WINDOW: u32 = (4 << 20) + (64 << 10);
/// Per-connection receive window: both reliable streams at full window. This is what one
/// authenticated peer can make this node buffer in flight, whatever it announces.
pub const CONNECTION_RECEIVE_WINDOW: u32 = 2 * STREAM_RECEIVE_WINDOW;
/// Unidirectional streams a peer may have open at once: one Delta and one Sync stream per
/// connection, with room for a replacement while an old one is being torn down.
pub const MAX_CONCURRENT_UNI_STREAMS: u32 = 4;
/// Bytes of received datagrams (SWIM packets) buffered before the oldest are dropped: about
/// 900 packets of 1,150 bytes.
pub const DATAGRAM_RECEIVE_BUFFER: usize = 1 << 20;
/// Bytes of datagrams queued for sending.
pub const DATAGRAM_SEND_BUFFER: usize = 1 << 20;

/// quinn's transport parameters, every resource bound set explicitly (see the crate docs).
/// The endpoint's keys, derived from the node's restart secret so that they are the same in
/// every life of the node: after a crash, the next life at the same address recognizes the
/// connection IDs of the previous life's connections (the CID generator's key) and answers
/// their packets with a stateless reset the peer accepts (the reset key). Peers then drop
/// those dead connections at once and dial again, instead of writing into them until the idle
/// timeout.
fn endpoint_config(secret: &[u8; 32]) -> quinn::EndpointConfig {
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&reset_key, b"pidmesh connection id key");
    // An HMAC-SHA256 tag has 32 bytes; the generator's key is the first 8.
    let cid_key = tag
        .as_ref()
        .first_chunk::<8>()
        .map_or(0, |b| u64::from_le_bytes(*b));
    let mut c = quinn::EndpointConfig::new(Arc::new(reset_key));
    c.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
    c
}

fn transport_config(config: &QuicConfig) -> Result<quinn::TransportConfig, BindError> {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
        .map_err(|_| BindError::InvalidConfig("idle_timeout is too large"))?;
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(config.keep_alive_interval));
    t.max_concurrent_bidi_streams(VarInt::from_u32(0));
    t.max_concurrent_uni_streams(VarInt::from_u32(MAX_CONCURRENT_UNI_STREAMS));
    t.stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW));
    t.receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW));
    t.send_window(u64::from(CONNECTION_RECEIVE_WINDOW));
    t.datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER));
    t.datagram_send_buffer_size(DATAGRAM_SEND_BUFFER);
    Ok(t)
}

impl QuicTransport {
    /// Binds the UDP socket at `addr` (port 0 for an OS-assigned port), listening and dialing
    /// with the same endpoint.
    ///
    /// # Errors
    /// See [`BindError`].
    ///
    /// Cancel-safe: completes without awaiting anything that could leave state behind.
    pub async fn bind(addr: SocketAddr, config: QuicConfig) -> Result<Self, BindError> {
        if config.keep_alive_interval >= config.idle_timeout {
            return Err(BindError::InvalidConfig(
                "keep_alive_interval must be below idle_timeout",
            ));
        }
        if config.max_datagram_size == 0
            || config.max_frame_length == 0
            || config.max_frame_length > u32::MAX as usize
        {
            return Err(BindError::InvalidConfig("size limits out of range"));
        }
        if config.lane_capacity == 0
            || config.datagram_queue_capacity == 0
            || config.inbox_capacity == 0
        {
            return Err(BindError::InvalidConfig(
                "queue capacities must be positive",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BindError::NoRuntime)?;
        let transport = Arc::new(transport_config(&config)?);
        let server_crypto = QuicServerConfig::try_from(config.tls.server_config())
            .map_err(|e| BindError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport.clone());
        let client_crypto = QuicClientConfig::try_from(config.tls.client_config())
            .map_err(|e| BindError::Tls(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(transport);
        // quinn's own socket for the runtime, wrapped to count the bytes on the wire.
        let socket_bytes = SocketBytes::new();
        let io_err = |source| BindError::Io { addr, source };
        let quinn_runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
        let udp = quinn_runtime
            .wrap_udp_socket(std::net::UdpSocket::bind(addr).map_err(io_err)?)
            .map_err(io_err)?;
        let mut endpoint = Endpoint::new_with_abstract_socket(
            endpoint_config(config.tls.restart_secret()),
            Some(server),
            Arc::new(counting::CountingSocket::new(udp, socket_bytes.clone())),
            quinn_runtime,
        )
        .map_err(io_err)?;
        endpoint.set_default_client_config(client);
        let local_addr = endpoint
            .local_addr()
            .map_err(|source| BindError::Io { addr, source })?;
        let (inbox, rx) = mpsc::channel(config.inbox_capacity);
        let shared = Arc::new(Shared {
            endpoint,
            local_addr,
            config,
            peers: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            closed: AtomicBool::new(false),
            stats: StatsCounters::new("quic"),
            socket_bytes,
            inbox,
            tasks: TaskTracker::new(),
            runtime,
        });
        shared.tasks.spawn(accept_loop(Arc::downgrade(&shared)));
        tracing::debug!(%local_addr, node_name = shared.config.tls.node_name(), "quic transport listening");
        Ok(Self { shared, rx })
    }

    /// This transport's counters.
    pub fn stats(&self) -> TransportStats {
        self.shared.stats.snapshot()
    }

    /// UDP payload bytes this transport's socket sent and received (every QUIC packet: TLS
    /// handshakes, acknowledgements, retransmissions, keep-alives, headers and all), next to
    /// the message payloads of [`QuicTransport::stats`]. The handle is live: it keeps counting
    /// after the transport is handed to a registry, and stops when the socket closes.
    pub fn socket_bytes(&self) -> SocketBytes {
        self.shared.socket_bytes.clone()
    }

    /// This node's name (from its certificate).
    pub fn node_name(&self) -> &str {
        self.shared.config.tls.node_name()
    }

    /// The datagram limit of the live connection to `peer`, if any (it grows with path MTU
    /// discovery; [`Transport::max_datagram_size`] is the fixed, conservative limit).
    pub fn connection_max_datagram_size(&self, peer: SocketAddr) -> Option<usize> {
        let peers = lock(&self.shared.peers);
        peers.get(&peer)?.live_connection()?.max_datagram_size()
    }

    fn close(&mut self) {
        let s = &self.shared;
        s.closed.store(true, Ordering::SeqCst);
        s.cancel.cancel();
        s.endpoint
            .close(VarInt::from_u32(CLOSE_SHUTDOWN), b"shutdown");
        s.tasks.close();
        lock(&s.peers).clear();
    }

    fn peer(&self, to: SocketAddr) -> Arc<Peer> {
        let s = &self.shared;
        let mut peers = lock(&s.peers);
        if let Some(p) = peers.get(&to) {
            return p.clone();
        }
        let (dtx, drx) = mpsc::channel(s.config.datagram_queue_capacity);
        let (deltatx, deltarx) = mpsc::channel(s.config.lane_capacity);
        let (synctx, syncrx) = mpsc::channel(s.config.lane_capacity);
        let (mailtx, mailrx) = mpsc::channel(s.config.lane_capacity);
        let peer = Arc::new(Peer {
            addr: to,
            conn: tokio::sync::Mutex::new(None),
            cached: Mutex::new(None),
            state: Mutex::new(PeerLinkState {
                down_until: None,
                backoff: s.config.backoff_initial,
            }),
            datagrams: dtx,
            delta: deltatx,
            sync: synctx,
            mail: mailtx,
        });
        for (class, rx) in [
            (TrafficClass::Membership, drx),
            (TrafficClass::Delta, deltarx),
            (TrafficClass::Sync, syncrx),
            (TrafficClass::Mail, mailrx),
        ] {
            s.tasks.spawn_on(
                lane(
                    Arc::downgrade(s),
                    Arc::downgrade(&peer),
                    class,
                    rx,
                    s.cancel.clone(),
                ),
                &s.runtime,
            );
        }
        peers.insert(to, peer.clone());
        peer
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        self.close();
    }
}

impl Transport for QuicTransport {
    fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    fn max_datagram_size(&self) -> usize {
        self.shared.config.max_datagram_size
    }

    fn send(&self, msg: Outgoing) -> Result<(), SendError> {
        let s = &self.shared;
        if s.closed.load(Ordering::SeqCst) {
            return Err(SendError::Closed);
        }
        let Outgoing { to, class, payload } = msg;
        let max = match class {
            TrafficClass::Membership => s.config.max_datagram_size,
            _ => s.config.max_frame_length,
        };
        if payload.len() > max {
            return Err(SendError::TooLarge {
                class,
                len: payload.len(),
                max,
            });
        }
        let peer = self.peer(to);
        let queue = match class {
            TrafficClass::Membership => {
                if let Some(conn) = peer.live_connection() {
                    send_datagram(s, &peer, &conn, payload);
                    return Ok(());
                }
                if peer.is_down() {
                    s.stats.dropped(class, "link_down", 1);
                    return Ok(());
                }
                &peer.datagrams
            }
            TrafficClass::Delta => &peer.delta,
            TrafficClass::Sync => &peer.sync,
            TrafficClass::Mail => &peer.mail,
        };
        s.stats.queue_result(queue.try_send(payload), class, to)
    }

    /// Cancel-safe: waits on a tokio mpsc receiver and the shutdown token only.
    async fn recv(&mut self) -> Option<Incoming> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return None;
        }
        let cancel = self.shared.cancel.clone();
        let msg = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            m = self.rx.recv() => m,
        }?;
        self.shared.stats.received(msg.class);
        Some(msg)
    }

    /// Closes the endpoint (peers get a `CONNECTION_CLOSE` at once), stops every task and waits
    /// up to one second for the close to be sent.
    ///
    /// Cancel-safe: everything is told to stop before the first await; dropping the transport
    /// releases the socket.
    async fn shutdown(&mut self) {
        self.close();
        self.rx.close();
        self.shared.tasks.wait().await;
        let _ =
            tokio::time::timeout(Duration::from_secs(1), self.shared.endpoint.wait_idle()).await;
        tracing::debug!(local_addr = %self.shared.local_addr, "quic transport shut down");
    }
}

/// Sends one datagram; returns whether the connection turned out to be lost.
fn send_datagram(s: &Shared, peer: &Peer, conn: &Connection, payload: Bytes) -> bool {
    match conn.send_datagram(payload) {
        Ok(()) => {
            s.stats.sent(TrafficClass::Membership);
            false
        }
        Err(SendDatagramError::ConnectionLost(e)) => {
            peer.invalidate(conn);
            tracing::debug!(peer = %peer.addr, error = %e, "datagram on a lost connection");
            s.stats
                .dropped(TrafficClass::Membership, "connection_lost", 1);
            true
        }
        Err(SendDatagramError::TooLarge) => {
            tracing::warn!(peer = %peer.addr, limit = ?conn.max_datagram_size(), "datagram too large for the path");
            s.stats.dropped(TrafficClass::Membership, "too_large", 1);
            false
        }
        Err(e) => {
            tracing::warn!(peer = %peer.addr, error = %e, "datagram not sent");
            s.stats.dropped(TrafficClass::Membership, "unsupported", 1);
            false
        }
    }
}

/// The writer of one class to one peer.
async fn lane(
    shared: Weak<Shared>,
    peer: Weak<Peer>,
    class: TrafficClass,
    mut rx: mpsc::Receiver<Bytes>,
    cancel: CancellationToken,
) {
    // The open stream of this lane and the connection it belongs to.
    let mut stream: Option<(usize, quinn::SendStream)> = None;
    loop {
        let payload = tokio::select! {
            _ = cancel.cancelled() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        let (Some(s), Some(peer)) = (shared.upgrade(), peer.upgrade()) else {
            break;
        };
        let mut delivered = false;
        // Try on the cached connection, then once more on a fresh one if it was lost.
        for _attempt in 0..2 {
            let conn = tokio::select! {
                _ = cancel.cancelled() => return,
                c = peer.connection(&s) => c,
            };
            let Ok(conn) = conn else { break };
            if class == TrafficClass::Membership {
                if send_datagram(&s, &peer, &conn, payload.clone()) {
                    continue;
                }
                delivered = true;
                break;
            }
            let r = tokio::select! {
                _ = cancel.cancelled() => return,
                r = write_frame(&conn, &mut stream, class, payload.clone()) => r,
            };
            match r {
                Ok(()) => {
                    s.stats.sent(class);
                    delivered = true;
                    break;
                }
                Err(e) => {
                    tracing::debug!(peer = %peer.addr, class = class.as_str(), error = %e, "stream write failed; retrying on a new connection");
                    stream = None;
                    peer.invalidate(&conn);
                    // Make `connection()` dial again rather than return the dead connection.
                    conn.close(VarInt::from_u32(CLOSE_SHUTDOWN), b"stream failed");
                }
            }
        }
        if !delivered {
            // The peer is unreachable: drop this message and what queued up behind it.
            let mut n = 1;
            while rx.try_recv().is_ok() {
                n += 1;
            }
            s.stats.dropped(class, "connect_failed", n);
        }
    }
    if let Some((_, mut st)) = stream {
        let _ = st.finish();
    }
}

async fn write_frame(
    conn: &Connection,
    stream: &mut Option<(usize, quinn::SendStream)>,
    class: TrafficClass,
    payload: Bytes,
) -> Result<(), quinn::WriteError> {
    if stream.as_ref().map(|s| s.0) != Some(conn.stable_id()) {
        let mut st = conn.open_uni().await?;
        st.write_all(&[class.to_byte()]).await?;
        *stream = Some((conn.stable_id(), st));
    }
    let Some((_, st)) = stream.as_mut() else {
        return Ok(());
    };
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut chunks = [Bytes::copy_from_slice(&len.to_be_bytes()), payload];
    st.write_all_chunks(&mut chunks).await
}

async fn accept_loop(shared: Weak<Shared>) {
    let (endpoint, cancel) = match shared.upgrade() {
        Some(s) => (s.endpoint.clone(), s.cancel.clone()),
        None => return,
    };
    loop {
        let incoming = tokio::select! {
            _ = cancel.cancelled() => return,
            i = endpoint.accept() => match i { Some(i) => i, None => return },
        };
        let Some(s) = shared.upgrade() else { return };
        s.tasks.spawn(inbound_connection(s.clone(), incoming));
    }
}

async fn inbound_connection(s: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let cancel = s.cancel.clone();
    let handshake = tokio::select! {
        _ = cancel.cancelled() => return,
        r = tokio::time::timeout(s.config.connect_timeout, incoming) => r,
    };
    let conn = match handshake {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            s.stats.handshake_failed();
            tracing::warn!(%remote, error = %e, "inbound quic handshake failed");
            return;
        }
        Err(_) => {
            s.stats.handshake_failed();
            tracing::warn!(%remote, "inbound quic handshake timed out");
            return;
        }
    };
    let Some(name) = peer_name(&conn) else {
        s.stats.handshake_failed();
        tracing::warn!(%remote, "client certificate has no DNS name; closing");
        conn.close(VarInt::from_u32(CLOSE_PROTOCOL), b"no node name");
        return;
    };
    let from = conn.remote_address();
    tracing::debug!(%from, peer_name = %name, "inbound quic connection");
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            d = conn.read_datagram() => match d {
                Ok(payload) => {
                    if payload.len() > s.config.max_datagram_size {
                        s.stats.malformed("oversize_datagram");
                        tracing::warn!(%from, len = payload.len(), "oversize datagram dropped");
                        continue;
                    }
                    let msg = Incoming { from, peer_name: Some(name.clone()), class: TrafficClass::Membership, payload };
                    if s.inbox.try_send(msg).is_err() {
                        s.stats.dropped(TrafficClass::Membership, "inbox_full", 1);
                    }
                }
                Err(e) => {
                    tracing::debug!(%from, error = %e, "inbound connection ended");
                    return;
                }
            },
            st = conn.accept_uni() => match st {
                Ok(st) => {
                    s.tasks.spawn(inbound_stream(s.clone(), conn.clone(), st, from, name.clone()));
                }
                Err(e) => {
                    tracing::debug!(%from, error = %e, "inbound connection ended");
                    return;
                }
            },
        }
    }
}

async fn inbound_stream(
    s: Arc<Shared>,
    conn: Connection,
    mut st: quinn::RecvStream,
    from: SocketAddr,
    name: String,
) {
    let cancel = s.cancel.clone();
    let header = tokio::select! {
        _ = cancel.cancelled() => return,
        h = st.read_u8() => h,
    };
    let class = match header.ok().and_then(TrafficClass::from_byte) {
        Some(c) if c.is_reliable() => c,
        Some(_) | None => {
            s.stats.malformed("bad_stream_header");
            tracing::warn!(%from, "stream with a bad class header; closing the connection");
            conn.close(VarInt::from_u32(CLOSE_PROTOCOL), b"bad stream header");
            return;
        }
    };
    // A frame is refused from its length prefix when it exceeds its class's limit.
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(class.max_len().min(s.config.max_frame_length))
        .new_codec();
    let mut frames = FramedRead::new(st, codec);
    loop {
        let f = tokio::select! {
            _ = cancel.cancelled() => return,
            f = frames.next() => f,
        };
        let payload = match f {
            None => return,
            Some(Ok(p)) => p.freeze(),
            Some(Err(e)) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    s.stats.malformed("frame_too_long");
                    tracing::warn!(%from, error = %e, "oversized frame; closing the connection");
                    conn.close(VarInt::from_u32(CLOSE_PROTOCOL), b"frame too long");
                } else {
                    tracing::debug!(%from, error = %e, "inbound stream ended");
                }
                return;
            }
        };
        let msg = Incoming {
            from,
            peer_name: Some(name.clone()),
            class,
            payload,
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = s.inbox.send(msg) => if r.is_err() { return },
        }
    }
}
