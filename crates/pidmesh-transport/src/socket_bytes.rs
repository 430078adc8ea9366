//! [`SocketBytes`]: bytes a transport wrote to and read from its sockets, below every layer of
//! its own (QUIC packets and TLS records, TCP framing and TLS records).
//!
//! The payload a node hands to [`Transport::send`](crate::Transport::send) is only part of
//! what crosses the network; these counters make the transport's overhead measurable next to
//! it. A UDP transport counts UDP payload bytes (what `sendmsg`/`recvmsg` moved), a TCP
//! transport the bytes of its streams; neither counts IP, UDP or TCP headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared, cloneable socket byte counters. Clones count into the same totals, so a handle
/// taken before a transport is handed to a registry keeps reading the live values.
#[derive(Debug, Clone, Default)]
pub struct SocketBytes {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
}

impl SocketBytes {
    /// New counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes written to the transport's sockets so far.
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// Bytes read from the transport's sockets so far.
    pub fn received(&self) -> u64 {
        self.inner.received.load(Ordering::Relaxed)
    }

    /// Counts `n` bytes written to a socket.
    pub fn add_sent(&self, n: u64) {
        self.inner.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` bytes read from a socket.
    pub fn add_received(&self, n: u64) {
        self.inner.received.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::SocketBytes;

    #[test]
    fn clones_share_the_totals() {
        let a = SocketBytes::new();
        let b = a.clone();
        a.add_sent(10);
        b.add_sent(5);
        b.add_received(7);
        assert_eq!((a.sent(), a.received()), (15, 7));
        assert_eq!((b.sent(), b.received()), (15, 7));
    }
}
