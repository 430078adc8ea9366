//! A cluster member that violates the stream protocol cannot crash or wedge a node.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport_quic::{Outgoing, QuicConfig, QuicTransport, TrafficClass, Transport};
use quinn::crypto::rustls::QuicClientConfig;
use tokio::time::Instant;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_streams_are_counted_and_the_node_keeps_serving() {
    let ca = DevCa::new("cluster").unwrap();
    let mut a = QuicTransport::bind(
        "127.0.0.1:0".parse().unwrap(),
        QuicConfig::new(ca.cluster_tls("node-a", ring_provider()).unwrap()),
    )
    .await
    .unwrap();

    // A raw quinn client holding a valid cluster certificate.
    let evil_tls = ca.cluster_tls("node-e", ring_provider()).unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(evil_tls.client_config()).unwrap(),
    )));

    // 1. A stream whose header claims the Membership class (not allowed on streams).
    let conn = client
        .connect(a.local_addr(), "127.0.0.1")
        .unwrap()
        .await
        .unwrap();
    let mut st = conn.open_uni().await.unwrap();
    st.write_all(&[TrafficClass::Membership.to_byte(), 0, 0, 0, 1, 7])
        .await
        .unwrap();
    st.finish().unwrap();
    assert!(wait_until(Duration::from_secs(5), || a.stats().malformed >= 1).await);
    assert!(wait_until(Duration::from_secs(5), || conn.close_reason().is_some()).await);

    // 2. A Delta stream with a frame length beyond the limit.
    let conn = client
        .connect(a.local_addr(), "127.0.0.1")
        .unwrap()
        .await
        .unwrap();
    let mut st = conn.open_uni().await.unwrap();
    st.write_all(&[
        TrafficClass::Delta.to_byte(),
        0xFF,
        0xFF,
        0xFF,
        0xFF,
        1,
        2,
        3,
    ])
    .await
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || a.stats().malformed >= 2).await);

    // 3. Unknown class byte.
    let conn = client
        .connect(a.local_addr(), "127.0.0.1")
        .unwrap()
        .await
        .unwrap();
    let mut st = conn.open_uni().await.unwrap();
    st.write_all(&[0x77]).await.unwrap();
    assert!(wait_until(Duration::from_secs(5), || a.stats().malformed >= 3).await);
    assert_eq!(a.stats().received, 0);

    // The node still serves honest peers.
    let b = QuicTransport::bind(
        "127.0.0.1:0".parse().unwrap(),
        QuicConfig::new(ca.cluster_tls("node-b", ring_provider()).unwrap()),
    )
    .await
    .unwrap();
    b.send(Outgoing {
        to: a.local_addr(),
        class: TrafficClass::Delta,
        payload: Bytes::from_static(b"ok"),
    })
    .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), a.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.peer_name.as_deref(), Some("node-b"));
    assert_eq!(&m.payload[..], b"ok");
    a.shutdown().await;
}
