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
//! Oversized frames, unknown class bytes, empty frames, a missing or malformed hello and failed
//! TLS handshakes are counted (`pidmesh.transport.malformed{kind}`,
//! `pidmesh.transport.handshake_failures`), logged with `tracing`, and the frame is dropped or
//! the connection closed. Nothing a peer sends can panic the transport.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
        }
    }
}

impl TcpConfig {
    /// Plain TCP with default limits.
    pub fn plain() -> Self {
        Self::default()
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
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
type BoxIo = Box<dyn Io>;

struct Frame {
    class: TrafficClass,
    payload: Bytes,
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
    inbox: mpsc::Sender<Incoming>,
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
    rx: mpsc::Receiver<Incoming>,
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

fn encode_frame(class: TrafficClass, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + payload.len());
    b.put_u8(class.to_byte());
    b.put_slice(payload);
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
        let shared = Arc::new(Shared {
            local_addr,
            config,
            peers: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            closed: AtomicBool::new(false),
            stats: StatsCounters::new("tcp"),
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

    fn close(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.peers().clear();
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
        let msg = tokio::select! {
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
                let _ = stream.set_nodelay(true);
                s.tasks
                    .spawn(reader(s.clone(), stream, remote, cancel.clone()));
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

/// Accepts one inbound connection: TLS handshake, hello, then frames until EOF.
async fn reader(
    shared: Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    cancel: CancellationToken,
) {
    let timeout = shared.config.handshake_timeout;
    let setup = async {
        let (io, peer_name): (BoxIo, Option<String>) = match accept_tls(&shared, stream).await {
            Ok(x) => x,
            Err(e) => {
                shared.stats.handshake_failed();
                tracing::warn!(%remote, error = %e, "inbound tls handshake failed");
                return None;
            }
        };
        let mut framed = FramedRead::new(io, codec(shared.config.max_frame_length));
        let hello = match framed.next().await {
            Some(Ok(f)) => decode_hello(&f),
            Some(Err(e)) => {
                tracing::debug!(%remote, error = %e, "reading hello failed");
                None
            }
            None => return None,
        };
        match hello {
            Some(addr) => Some((framed, peer_name, addr)),
            None => {
                shared.stats.malformed("bad_hello");
                tracing::warn!(%remote, "missing or malformed hello; closing connection");
                None
            }
        }
    };
    let setup = tokio::select! {
        _ = cancel.cancelled() => return,
        r = tokio::time::timeout(timeout, setup) => r,
    };
    let (mut framed, peer_name, mut from) = match setup {
        Ok(Some(x)) => x,
        Ok(None) => return,
        Err(_) => {
            shared.stats.handshake_failed();
            tracing::warn!(%remote, "inbound handshake timed out");
            return;
        }
    };
    if from.ip().is_unspecified() {
        // The peer listens on all interfaces: reply to the address it connected from.
        from.set_ip(remote.ip());
    }
    tracing::debug!(%remote, %from, ?peer_name, "inbound connection established");
    let max_datagram = shared.config.max_datagram_size;
    let inbox = shared.inbox.clone();
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => return,
            f = framed.next() => f,
        };
        let mut frame = match frame {
            None => return,
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    shared.stats.malformed("frame_too_long");
                    tracing::warn!(%from, error = %e, "oversized frame; closing connection");
                } else {
                    tracing::debug!(%from, error = %e, "inbound connection failed");
                }
                return;
            }
        };
        let Some(&tag) = frame.first() else {
            shared.stats.malformed("empty_frame");
            tracing::warn!(%from, "empty frame dropped");
            continue;
        };
        let Some(class) = TrafficClass::from_byte(tag) else {
            shared.stats.malformed("bad_class");
            tracing::warn!(%from, tag, "frame with unknown class dropped");
            continue;
        };
        let payload = frame.split_off(1).freeze();
        if class == TrafficClass::Membership && payload.len() > max_datagram {
            shared.stats.malformed("oversize_datagram");
            tracing::warn!(%from, len = payload.len(), "oversize membership frame dropped");
            continue;
        }
        let msg = Incoming {
            from,
            peer_name: peer_name.clone(),
            class,
            payload,
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = inbox.send(msg) => if r.is_err() { return },
        }
    }
}

async fn accept_tls(shared: &Shared, stream: TcpStream) -> Result<(BoxIo, Option<String>), String> {
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

async fn connect(shared: &Shared, to: SocketAddr) -> Result<BoxIo, ConnectError> {
    let stream = tokio::time::timeout(shared.config.connect_timeout, TcpStream::connect(to))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(ConnectError::Io)?;
    let _ = stream.set_nodelay(true);
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
    let mut sink = FramedWrite::new(io, codec(shared.config.max_frame_length));
    tokio::time::timeout(
        shared.config.handshake_timeout,
        sink.send(encode_hello(shared.local_addr)),
    )
    .await
    .map_err(|_| ConnectError::Hello(std::io::ErrorKind::TimedOut.into()))?
    .map_err(ConnectError::Hello)?;
    Ok(sink.into_inner())
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
        let io = match conn {
            Ok(io) => io,
            Err(e) => {
                match &e {
                    ConnectError::Handshake(_) => s.stats.handshake_failed(),
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
        let mut sink = FramedWrite::new(write_half, codec(max_frame));
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
                sink.feed(encode_frame(frame.class, &frame.payload)).await?;
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
