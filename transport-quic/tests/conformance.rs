//! The shared conformance suite over QUIC with mutual TLS.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use pidmesh_transport::conformance::{self, BoxError, TransportFactory};
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport_quic::{BindError, QuicConfig, QuicTransport};

struct QuicFactory {
    ca: DevCa,
}

impl QuicFactory {
    fn new() -> Self {
        Self {
            ca: DevCa::new("pidmesh test ca").unwrap(),
        }
    }

    fn config(&self, name: &str) -> QuicConfig {
        let mut c = QuicConfig::new(self.ca.cluster_tls(name, ring_provider()).unwrap());
        c.connect_timeout = Duration::from_secs(2);
        c
    }
}

impl TransportFactory for QuicFactory {
    type Transport = QuicTransport;

    async fn bind(&self, name: &str) -> Result<QuicTransport, BoxError> {
        Ok(QuicTransport::bind("127.0.0.1:0".parse().unwrap(), self.config(name)).await?)
    }

    async fn bind_at(&self, addr: SocketAddr, name: &str) -> Result<QuicTransport, BoxError> {
        // The port was released by a shut-down transport; retry briefly while the endpoint
        // driver lets go of the socket.
        let mut attempts = 0;
        loop {
            match QuicTransport::bind(addr, self.config(name)).await {
                Err(BindError::Io { .. }) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                r => return Ok(r?),
            }
        }
    }

    fn authenticates(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity() {
    conformance::delivers_every_class_with_sender_identity(&QuicFactory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering() {
    conformance::reliable_classes_are_ordered(&QuicFactory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagram_size() {
    conformance::datagram_size_limit(&QuicFactory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart() {
    conformance::reconnects_after_peer_restart(&QuicFactory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown() {
    conformance::shutdown_is_clean(&QuicFactory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable() {
    conformance::unreachable_peer_then_appears(&QuicFactory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_safety() {
    conformance::recv_is_cancel_safe(&QuicFactory::new()).await;
}
