//! `QuicTransport::socket_bytes` counts every UDP payload byte: at least the message payloads,
//! plus QUIC and TLS overhead, and the receiver never counts more than the sender sent.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport_quic::{Outgoing, QuicConfig, QuicTransport, TrafficClass, Transport};

async fn bind(ca: &DevCa, name: &str) -> QuicTransport {
    let config = QuicConfig::new(ca.cluster_tls(name, ring_provider()).unwrap());
    QuicTransport::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_bytes_cover_the_payloads() {
    let ca = DevCa::new("pidmesh test ca").unwrap();
    let a = bind(&ca, "a").await;
    let mut b = bind(&ca, "b").await;
    let (a_bytes, b_bytes) = (a.socket_bytes(), b.socket_bytes());
    assert_eq!((a_bytes.sent(), b_bytes.received()), (0, 0));

    const N: usize = 200;
    const LEN: usize = 1_000;
    let classes = [
        TrafficClass::Delta,
        TrafficClass::Sync,
        TrafficClass::Membership,
    ];
    let mut payload_bytes = 0u64;
    for i in 0..N {
        let class = classes[i % classes.len()];
        let p = vec![(i % 251) as u8; LEN];
        payload_bytes += p.len() as u64;
        a.send(Outgoing {
            to: b.local_addr(),
            class,
            payload: Bytes::from(p),
        })
        .unwrap();
    }
    // Every reliable frame arrives; datagrams usually do on loopback.
    let reliable = (0..N)
        .filter(|i| classes[i % 3] != TrafficClass::Membership)
        .count();
    let mut got_reliable = 0;
    let mut got_bytes = 0u64;
    while got_reliable < reliable {
        let m = tokio::time::timeout(Duration::from_secs(10), b.recv())
            .await
            .expect("frames arrive")
            .expect("transport open");
        got_bytes += m.payload.len() as u64;
        if m.class != TrafficClass::Membership {
            got_reliable += 1;
        }
    }
    let reliable_bytes = (reliable * LEN) as u64;
    assert!(got_bytes >= reliable_bytes);
    let (sent, received) = (a_bytes.sent(), b_bytes.received());
    println!("payload {payload_bytes} B; a sent {sent} B on its socket, b received {received} B");
    assert!(
        sent >= payload_bytes,
        "socket bytes sent {sent} < payload {payload_bytes}"
    );
    assert!(
        received >= reliable_bytes,
        "socket bytes received {received} < delivered reliable payload {reliable_bytes}"
    );
    // b hears only from a, and loopback does not duplicate datagrams.
    assert!(received <= sent, "b received {received} > a sent {sent}");
    // Overhead is real but bounded: headers, acks, handshake (certificates) of one connection.
    assert!(
        sent < payload_bytes * 2 + 64 * 1024,
        "sent {sent} for {payload_bytes}"
    );
}
