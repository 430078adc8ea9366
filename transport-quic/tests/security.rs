//! Authentication over QUIC: foreign CA, ALPN mismatch, peer names both ways.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport_quic::{
    ALPN, ClusterTls, FOCA_MAX_PACKET_SIZE, Outgoing, QuicConfig, QuicTransport, TrafficClass,
    Transport, TransportStats,
};
use tokio::time::Instant;

async fn bind(tls: ClusterTls) -> QuicTransport {
    let mut c = QuicConfig::new(tls);
    c.connect_timeout = Duration::from_secs(2);
    QuicTransport::bind("127.0.0.1:0".parse().unwrap(), c)
        .await
        .unwrap()
}

fn msg(to: std::net::SocketAddr, class: TrafficClass) -> Outgoing {
    Outgoing {
        to,
        class,
        payload: Bytes::from_static(b"hello"),
    }
}

/// Polls `cond` until it holds or `within` passes (counters have no waker).
async fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

/// Keeps sending from `from` to `to` until `cond(from.stats(), to.stats())` holds.
async fn send_until(
    from: &QuicTransport,
    to: &QuicTransport,
    cond: impl Fn(TransportStats, TransportStats) -> bool,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for class in TrafficClass::ALL {
            let _ = from.send(msg(to.local_addr(), class));
        }
        if wait_until(Duration::from_millis(100), || {
            cond(from.stats(), to.stats())
        })
        .await
        {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_from_a_foreign_ca_cannot_talk_to_the_cluster() {
    let cluster = DevCa::new("cluster").unwrap();
    let rogue = DevCa::new("rogue").unwrap();
    let mut a = bind(cluster.cluster_tls("node-a", ring_provider()).unwrap()).await;
    // The rogue even claims a cluster member's name.
    let mut m = bind(rogue.cluster_tls("node-a", ring_provider()).unwrap()).await;
    assert!(
        send_until(&m, &a, |ms, _| ms.handshake_failures > 0).await,
        "the rogue's failed handshake must be observable: {:?}",
        m.stats()
    );
    assert!(
        send_until(&a, &m, |as_, _| as_.handshake_failures > 0).await,
        "the member's failed handshake must be observable: {:?}",
        a.stats()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), a.recv())
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), m.recv())
            .await
            .is_err()
    );
    assert_eq!(a.stats().received, 0);
    assert_eq!(m.stats().received, 0);
    a.shutdown().await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_mismatch_is_rejected() {
    assert_eq!(ALPN, b"pidmesh/1");
    let ca = DevCa::new("cluster").unwrap();
    let mut a = bind(ca.cluster_tls("node-a", ring_provider()).unwrap()).await;
    let node = ca.issue("node-b").unwrap();
    let v2 = ClusterTls::builder(ca.cert(), node.chain, node.key, ring_provider())
        .alpn_protocols(vec![b"pidmesh/2".to_vec()])
        .build()
        .unwrap();
    let mut b = bind(v2).await;
    assert!(send_until(&b, &a, |bs, _| bs.handshake_failures > 0).await);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), a.recv())
            .await
            .is_err()
    );
    assert_eq!(a.stats().received, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_names_are_reported_both_ways() {
    let ca = DevCa::new("cluster").unwrap();
    let mut a = bind(ca.cluster_tls("node-a", ring_provider()).unwrap()).await;
    let mut b = bind(ca.cluster_tls("node-b", ring_provider()).unwrap()).await;
    assert_eq!(a.node_name(), "node-a");
    a.send(msg(b.local_addr(), TrafficClass::Sync)).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.peer_name.as_deref(), Some("node-a"));
    assert_eq!(m.from, a.local_addr());
    b.send(msg(m.from, TrafficClass::Delta)).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), a.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.peer_name.as_deref(), Some("node-b"));
    assert_eq!(r.from, b.local_addr());
    // The live connection carries datagrams of at least the advertised size.
    let path = a.connection_max_datagram_size(b.local_addr()).unwrap();
    assert!(path >= FOCA_MAX_PACKET_SIZE, "path datagram limit {path}");
    assert_eq!(a.max_datagram_size(), FOCA_MAX_PACKET_SIZE);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_is_rejected() {
    let ca = DevCa::new("cluster").unwrap();
    let mut c = QuicConfig::new(ca.cluster_tls("node-a", ring_provider()).unwrap());
    c.keep_alive_interval = c.idle_timeout;
    assert!(
        QuicTransport::bind("127.0.0.1:0".parse().unwrap(), c)
            .await
            .is_err()
    );
}
