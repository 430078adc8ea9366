//! `TcpTransport::socket_bytes` counts every byte on the TCP streams: at least the message
//! payloads plus framing, and the receiver reads exactly what the sender wrote.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport_tcp::{
    ClusterKey, Outgoing, TcpConfig, TcpTransport, TrafficClass, Transport,
};

async fn check(config: impl Fn(&str) -> TcpConfig) {
    let a = TcpTransport::bind("127.0.0.1:0".parse().unwrap(), config("a"))
        .await
        .unwrap();
    let mut b = TcpTransport::bind("127.0.0.1:0".parse().unwrap(), config("b"))
        .await
        .unwrap();
    let (a_bytes, b_bytes) = (a.socket_bytes(), b.socket_bytes());
    const N: usize = 150;
    const LEN: usize = 700;
    let classes = [
        TrafficClass::Delta,
        TrafficClass::Sync,
        TrafficClass::Membership,
    ];
    for i in 0..N {
        a.send(Outgoing {
            to: b.local_addr(),
            class: classes[i % 3],
            payload: Bytes::from(vec![(i % 251) as u8; LEN]),
        })
        .unwrap();
    }
    let payload = (N * LEN) as u64;
    let mut got = 0u64;
    for _ in 0..N {
        let m = tokio::time::timeout(Duration::from_secs(10), b.recv())
            .await
            .expect("frames arrive")
            .expect("transport open");
        got += m.payload.len() as u64;
    }
    assert_eq!(got, payload);
    // Every frame was read off the socket before it was delivered. The sender counts a write
    // once it returns, which can be after the receiver already read those bytes: wait (bounded)
    // until the sender's count has caught up with what the receiver read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a_bytes.sent() < b_bytes.received() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (sent, received) = (a_bytes.sent(), b_bytes.received());
    println!(
        "payload {payload} B; a wrote {sent} B, b read {received} B (b wrote {} B)",
        b_bytes.sent()
    );
    assert!(
        sent > payload,
        "socket bytes written {sent} <= payload {payload}"
    );
    assert!(
        received > payload,
        "socket bytes read {received} <= payload {payload}"
    );
    // Framing is a few bytes per frame; TLS adds records and a handshake.
    assert!(sent < payload * 2 + 64 * 1024, "wrote {sent} for {payload}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_bytes_plain() {
    check(|_| TcpConfig::insecure_plaintext()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_bytes_cluster_key() {
    check(|_| TcpConfig::with_cluster_key(ClusterKey::from_bytes([3; 32]))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_bytes_tls() {
    let ca = DevCa::new("pidmesh test ca").unwrap();
    check(|name| TcpConfig::with_tls(ca.cluster_tls(name, ring_provider()).unwrap())).await;
}
