//! A fault-injecting wrapper around any [`Transport`]: partitions on real sockets.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::{Incoming, Outgoing, SendError, Transport};

/// Shared switchboard of cut links; clone it to control several wrapped transports at once.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    cut: Arc<Mutex<HashSet<(SocketAddr, SocketAddr)>>>,
}

impl Faults {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashSet<(SocketAddr, SocketAddr)>) -> R) -> R {
        f(&mut self
            .cut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Drops everything between the two sets, both ways.
    pub fn partition(&self, a: &[SocketAddr], b: &[SocketAddr]) {
        self.one_way(a, b);
        self.one_way(b, a);
    }

    /// Drops everything sent from an address of `from` to an address of `to`.
    pub fn one_way(&self, from: &[SocketAddr], to: &[SocketAddr]) {
        self.with(|c| {
            for &x in from {
                for &y in to {
                    c.insert((x, y));
                }
            }
        });
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.with(HashSet::clear);
    }

    /// True if messages from `from` to `to` are dropped.
    pub fn is_cut(&self, from: SocketAddr, to: SocketAddr) -> bool {
        self.with(|c| c.contains(&(from, to)))
    }

    /// Wraps `transport` so it obeys these faults.
    pub fn wrap<T: Transport>(&self, transport: T) -> Faulty<T> {
        Faulty {
            inner: transport,
            faults: self.clone(),
        }
    }
}

/// A transport whose traffic to and from cut links is silently dropped (as a network partition
/// would), in both the send and the receive direction.
#[derive(Debug)]
pub struct Faulty<T> {
    inner: T,
    faults: Faults,
}

impl<T> Faulty<T> {
    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: Transport> Transport for Faulty<T> {
    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn max_datagram_size(&self) -> usize {
        self.inner.max_datagram_size()
    }

    fn send(&self, msg: Outgoing) -> Result<(), SendError> {
        if self.faults.is_cut(self.inner.local_addr(), msg.to) {
            return Ok(());
        }
        self.inner.send(msg)
    }

    async fn recv(&mut self) -> Option<Incoming> {
        loop {
            let msg = self.inner.recv().await?;
            if !self.faults.is_cut(msg.from, self.inner.local_addr()) {
                return Some(msg);
            }
        }
    }

    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}
