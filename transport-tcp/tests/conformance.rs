//! The shared conformance suite over insecure plain TCP (loopback), plain TCP with a cluster
//! key, and TCP + mutual TLS.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use pidmesh_transport::conformance::{self, BoxError, TransportFactory};
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport_tcp::{BindError, ClusterKey, TcpConfig, TcpTransport};

/// Insecure plain TCP, a cluster key, or TLS with certificates from one dev CA.
struct TcpFactory {
    ca: Option<DevCa>,
    key: Option<ClusterKey>,
}

impl TcpFactory {
    fn config(&self, name: &str) -> TcpConfig {
        match (&self.ca, &self.key) {
            (Some(ca), _) => TcpConfig::with_tls(ca.cluster_tls(name, ring_provider()).unwrap()),
            (None, Some(key)) => TcpConfig::with_cluster_key(key.clone()),
            (None, None) => TcpConfig::insecure_plaintext(),
        }
    }
}

impl TransportFactory for TcpFactory {
    type Transport = TcpTransport;

    async fn bind(&self, name: &str) -> Result<TcpTransport, BoxError> {
        Ok(TcpTransport::bind("127.0.0.1:0".parse().unwrap(), self.config(name)).await?)
    }

    async fn bind_at(&self, addr: SocketAddr, name: &str) -> Result<TcpTransport, BoxError> {
        // The port was released by a shut-down transport; retry briefly in case the OS lags.
        let mut attempts = 0;
        loop {
            match TcpTransport::bind(addr, self.config(name)).await {
                Err(BindError::Io { .. }) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                r => return Ok(r?),
            }
        }
    }

    fn authenticates(&self) -> bool {
        self.ca.is_some()
    }
}

fn plain() -> TcpFactory {
    TcpFactory {
        ca: None,
        key: None,
    }
}

fn keyed() -> TcpFactory {
    TcpFactory {
        ca: None,
        key: Some(ClusterKey::from_bytes([0x5a; 32])),
    }
}

fn tls() -> TcpFactory {
    TcpFactory {
        ca: Some(DevCa::new("pidmesh test ca").unwrap()),
        key: None,
    }
}

macro_rules! suite {
    ($module:ident, $factory:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn identity() {
                conformance::delivers_every_class_with_sender_identity(&$factory).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ordering() {
                conformance::reliable_classes_are_ordered(&$factory).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn datagram_size() {
                conformance::datagram_size_limit(&$factory).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn restart() {
                conformance::reconnects_after_peer_restart(&$factory).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn shutdown() {
                conformance::shutdown_is_clean(&$factory).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unreachable() {
                conformance::unreachable_peer_then_appears(&$factory).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cancel_safety() {
                conformance::recv_is_cancel_safe(&$factory).await;
            }
        }
    };
}

suite!(plain_tcp, plain());
suite!(keyed_tcp, keyed());
suite!(tls_tcp, tls());
