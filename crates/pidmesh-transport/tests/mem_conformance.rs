//! The conformance suite over the in-memory transport.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;

use pidmesh_transport::conformance::{self, BoxError, TransportFactory};
use pidmesh_transport::{MemNetwork, MemTransport};

struct MemFactory {
    net: MemNetwork,
}

impl MemFactory {
    fn new() -> Self {
        let seed = 0x5EED_0001;
        println!("mem network seed = {seed:#x}");
        Self {
            net: MemNetwork::new(seed),
        }
    }
}

impl TransportFactory for MemFactory {
    type Transport = MemTransport;

    async fn bind(&self, name: &str) -> Result<MemTransport, BoxError> {
        Ok(self.net.bind_named(name))
    }

    async fn bind_at(&self, addr: SocketAddr, name: &str) -> Result<MemTransport, BoxError> {
        Ok(self.net.bind_at(addr, Some(name.to_owned()))?)
    }

    fn authenticates(&self) -> bool {
        true
    }
}

/// Unnamed endpoints: `peer_name` must be `None`.
struct AnonMemFactory {
    net: MemNetwork,
}

impl TransportFactory for AnonMemFactory {
    type Transport = MemTransport;

    async fn bind(&self, _name: &str) -> Result<MemTransport, BoxError> {
        Ok(self.net.bind())
    }

    async fn bind_at(&self, addr: SocketAddr, _name: &str) -> Result<MemTransport, BoxError> {
        Ok(self.net.bind_at(addr, None)?)
    }

    fn authenticates(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn identity() {
    conformance::delivers_every_class_with_sender_identity(&MemFactory::new()).await;
}

#[tokio::test]
async fn ordering() {
    conformance::reliable_classes_are_ordered(&MemFactory::new()).await;
}

#[tokio::test]
async fn datagram_size() {
    conformance::datagram_size_limit(&MemFactory::new()).await;
}

#[tokio::test]
async fn restart() {
    conformance::reconnects_after_peer_restart(&MemFactory::new()).await;
}

#[tokio::test]
async fn shutdown() {
    conformance::shutdown_is_clean(&MemFactory::new()).await;
}

#[tokio::test]
async fn unreachable() {
    conformance::unreachable_peer_then_appears(&MemFactory::new()).await;
}

#[tokio::test]
async fn cancel_safety() {
    conformance::recv_is_cancel_safe(&MemFactory::new()).await;
}

#[tokio::test]
async fn all_anonymous() {
    conformance::run_all(&AnonMemFactory {
        net: MemNetwork::new(7),
    })
    .await;
}

#[tokio::test]
async fn all_with_latency() {
    let f = MemFactory::new();
    f.net
        .set_default_latency(std::time::Duration::from_millis(1));
    conformance::run_all(&f).await;
}
