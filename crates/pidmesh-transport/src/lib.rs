//! Transports carry pidmesh's three traffic classes between nodes.
//!
//! The protocol core (`pidmesh-proto`) never touches a socket: it emits
//! `(destination, class, payload)` triples and consumes `(source, peer name,
//! class, payload)` triples. A [`Transport`] moves those bytes:
//!
//! | class | delivery | typical mapping |
//! |---|---|---|
//! | [`TrafficClass::Membership`] | best effort, unordered, at most [`Transport::max_datagram_size`] bytes | QUIC datagram, a TCP frame dropped when the link is down |
//! | [`TrafficClass::Delta`] | reliable and ordered per (sender, receiver) while a connection lives | QUIC uni stream, TCP frames |
//! | [`TrafficClass::Sync`] | reliable and ordered per (sender, receiver) while a connection lives | QUIC bi/uni stream, TCP frames |
//!
//! "Reliable" means: a message is either delivered whole and in order, or the
//! connection broke and the message may be lost. The core repairs losses with
//! anti-entropy, so transports never retry forever and never buffer without bound.

//!
//! This crate also provides:
//! - [`mem`]: an in-process transport ([`MemNetwork`], [`MemTransport`]) with seeded fault
//!   injection (partitions, loss, latency, kill and restart);
//! - [`stats`]: the counters every transport exposes ([`TransportStats`]) and exports through
//!   the `metrics` facade;
//! - `conformance` (cargo feature `conformance`): the suite every transport runs;
//! - `tls` (cargo feature `tls`): the cluster mutual-TLS configuration shared by the TCP and
//!   QUIC transports, and `tls::dev_ca` (feature `dev-ca`) to mint development certificates.

#![forbid(unsafe_code)]

use std::net::SocketAddr;

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod faults;
pub mod mem;
pub mod socket_bytes;
pub mod stats;
#[cfg(feature = "tls")]
pub mod tls;

pub use faults::{Faults, Faulty};
pub use mem::{MemConfig, MemNetwork, MemTransport};
pub use socket_bytes::SocketBytes;
pub use stats::TransportStats;

use bytes::Bytes;

/// The traffic classes are part of the wire vocabulary; see [`pidmesh_wire::TrafficClass`].
pub use pidmesh_wire::TrafficClass;

/// A message the node wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The listening address of the destination node.
    pub to: SocketAddr,
    /// How it must be delivered.
    pub class: TrafficClass,
    /// The encoded message (the transport never looks inside).
    pub payload: Bytes,
}

/// A message that arrived from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The *listening* address of the sender (not an ephemeral source port):
    /// replies sent to it reach the sender.
    pub from: SocketAddr,
    /// The sender's node name as proven by the transport (the DNS name in its
    /// TLS certificate), or `None` when the transport does not authenticate.
    pub peer_name: Option<String>,
    /// The class it was sent with.
    pub class: TrafficClass,
    /// The encoded message.
    pub payload: Bytes,
}

/// Why a message could not be queued for sending. Sending is best effort:
/// the caller counts and logs these and relies on anti-entropy.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The payload is larger than the class allows on this transport. Nothing was sent.
    #[error("payload of {len} bytes exceeds the {max}-byte limit for {class:?}")]
    TooLarge {
        /// The class of the rejected message.
        class: TrafficClass,
        /// The payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The per-peer queue is full (the peer is slow or unreachable). Nothing was sent.
    #[error("queue to {0} is full")]
    QueueFull(SocketAddr),
    /// The transport has been shut down. Nothing was sent.
    #[error("transport is closed")]
    Closed,
}

/// Moves messages of the three [`TrafficClass`]es between nodes.
///
/// A transport is owned by one driver task. `send` never blocks; `recv` is
/// awaited in the driver's `select!` loop and must therefore be cancel-safe.
pub trait Transport: Send + 'static {
    /// The address peers use to reach this node (the one to advertise and to list as a seed).
    fn local_addr(&self) -> SocketAddr;

    /// The largest [`TrafficClass::Membership`] payload this transport carries.
    fn max_datagram_size(&self) -> usize;

    /// Queues `msg` for delivery and returns at once.
    ///
    /// # Errors
    /// See [`SendError`]; in every error case nothing was queued.
    fn send(&self, msg: Outgoing) -> Result<(), SendError>;

    /// Waits for the next message from any peer; `None` once the transport is shut down.
    ///
    /// Cancel-safe: dropping the future loses no message.
    fn recv(&mut self) -> impl std::future::Future<Output = Option<Incoming>> + Send;

    /// Closes every connection and the listener; later `send`s fail with [`SendError::Closed`].
    ///
    /// Cancel-safe: if dropped midway, connections are closed when the transport is dropped.
    fn shutdown(&mut self) -> impl std::future::Future<Output = ()> + Send;
}
