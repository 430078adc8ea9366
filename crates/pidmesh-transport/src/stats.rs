//! Counters every transport keeps, exported both as a pull API ([`TransportStats`]) and
//! through the [`metrics`] facade (names prefixed `pidmesh.transport.`).
//!
//! | metric | labels |
//! |---|---|
//! | `pidmesh.transport.sent` | `transport`, `class` |
//! | `pidmesh.transport.received` | `transport`, `class` |
//! | `pidmesh.transport.dropped` | `transport`, `class`, `reason` |
//! | `pidmesh.transport.malformed` | `transport`, `kind` |
//! | `pidmesh.transport.connect_failures` | `transport` |
//! | `pidmesh.transport.handshake_failures` | `transport` |
//! | `pidmesh.transport.refused` | `transport`, `reason` |
//!
//! All labels are low-cardinality constants: never peer addresses or names.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::TrafficClass;

/// A snapshot of a transport's counters since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages handed to the network (written to a socket, stream or datagram).
    pub sent: u64,
    /// Messages delivered to [`Transport::recv`](crate::Transport::recv).
    pub received: u64,
    /// Messages dropped locally after `send` accepted them, or Membership messages dropped at
    /// `send` (link down, queue full, partition, injected loss, connection lost).
    pub dropped: u64,
    /// Malformed frames or streams received from peers (dropped).
    pub malformed: u64,
    /// Failed attempts to connect to a peer (refused, timed out, unreachable).
    pub connect_failures: u64,
    /// Failed TLS or QUIC handshakes, inbound or outbound (wrong CA, ALPN mismatch, no certificate...).
    pub handshake_failures: u64,
    /// Inbound connections or frames refused or cut off by a resource bound or an
    /// authentication check (connection caps, timeouts, frame limits, buffer budget, bad cluster
    /// key); per reason in [`StatsCounters::refused_by`].
    pub refused: u64,
}

/// Shared atomic counters behind [`TransportStats`]; every increment is mirrored to `metrics`.
#[derive(Debug)]
pub struct StatsCounters {
    transport: &'static str,
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
    connect_failures: AtomicU64,
    handshake_failures: AtomicU64,
    refused: AtomicU64,
    refused_by: Mutex<BTreeMap<&'static str, u64>>,
}

impl StatsCounters {
    /// New zeroed counters; `transport` becomes the `transport` label (e.g. `"tcp"`).
    pub fn new(transport: &'static str) -> Self {
        Self {
            transport,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            handshake_failures: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            refused_by: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts a connection or frame refused or cut off by a bound or an authentication check;
    /// `reason` must be a constant such as `"connection_cap"`.
    pub fn refused(&self, reason: &'static str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        *self
            .refused_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
        metrics::counter!("pidmesh.transport.refused", "transport" => self.transport, "reason" => reason)
            .increment(1);
    }

    /// Refusals so far, per reason (see [`StatsCounters::refused`]).
    pub fn refused_by(&self) -> BTreeMap<&'static str, u64> {
        self.refused_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts a message handed to the network.
    pub fn sent(&self, class: TrafficClass) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("pidmesh.transport.sent", "transport" => self.transport, "class" => class.as_str())
            .increment(1);
    }

    /// Counts a message delivered to the application.
    pub fn received(&self, class: TrafficClass) {
        self.received.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("pidmesh.transport.received", "transport" => self.transport, "class" => class.as_str())
            .increment(1);
    }

    /// Counts `n` dropped messages; `reason` must be a constant such as `"queue_full"`.
    pub fn dropped(&self, class: TrafficClass, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        self.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("pidmesh.transport.dropped", "transport" => self.transport, "class" => class.as_str(), "reason" => reason)
            .increment(n);
    }

    /// Applies the queueing rule every transport shares to the result of a per-peer
    /// `try_send`: a full queue is an error for reliable classes (the caller decides) and a
    /// counted drop for datagrams; a closed queue (shutting down) is a counted drop.
    ///
    /// # Errors
    /// [`crate::SendError::QueueFull`] for a reliable class whose queue to `to` is full.
    pub fn queue_result<T>(
        &self,
        result: Result<(), tokio::sync::mpsc::error::TrySendError<T>>,
        class: TrafficClass,
        to: std::net::SocketAddr,
    ) -> Result<(), crate::SendError> {
        use tokio::sync::mpsc::error::TrySendError;
        match result {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) if class.is_reliable() => {
                Err(crate::SendError::QueueFull(to))
            }
            Err(TrySendError::Full(_)) => {
                self.dropped(class, "queue_full", 1);
                Ok(())
            }
            Err(TrySendError::Closed(_)) => {
                self.dropped(class, "closed", 1);
                Ok(())
            }
        }
    }

    /// Counts a malformed input from a peer; `kind` must be a constant such as `"bad_class"`.
    pub fn malformed(&self, kind: &'static str) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("pidmesh.transport.malformed", "transport" => self.transport, "kind" => kind)
            .increment(1);
    }

    /// Counts a failed connection attempt.
    pub fn connect_failed(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("pidmesh.transport.connect_failures", "transport" => self.transport)
            .increment(1);
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("pidmesh.transport.handshake_failures", "transport" => self.transport)
            .increment(1);
    }

    /// The current values.
    pub fn snapshot(&self) -> TransportStats {
        TransportStats {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}
