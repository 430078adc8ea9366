//! Authentication failures and hostile input over TCP.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::{ClusterTls, ring_provider};
use pidmesh_transport_tcp::{
    HELLO_TAG, HELLO_VERSION, Outgoing, TcpConfig, TcpTransport, TrafficClass, Transport,
    TransportStats,
};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

const LOCAL: &str = "127.0.0.1:0";

/// Polls `cond` until it holds or `within` passes (conditions on counters have no waker).
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

async fn bind(tls: Option<ClusterTls>) -> TcpTransport {
    let config = match tls {
        Some(t) => TcpConfig::with_tls(t),
        None => TcpConfig::insecure_plaintext(),
    };
    TcpTransport::bind(LOCAL.parse().unwrap(), config)
        .await
        .unwrap()
}

fn delta(to: std::net::SocketAddr, n: u8) -> Outgoing {
    Outgoing {
        to,
        class: TrafficClass::Delta,
        payload: Bytes::from(vec![n; 8]),
    }
}

/// Keeps sending from `from` to `to` until `cond(from.stats(), to.stats())` holds.
async fn send_until(
    from: &TcpTransport,
    to: &TcpTransport,
    cond: impl Fn(TransportStats, TransportStats) -> bool,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let _ = from.send(delta(to.local_addr(), 1));
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
    let rogue_ca = DevCa::new("rogue").unwrap();
    let mut a = bind(Some(
        cluster.cluster_tls("node-a", ring_provider()).unwrap(),
    ))
    .await;
    let mut m = bind(Some(
        rogue_ca.cluster_tls("node-a", ring_provider()).unwrap(),
    ))
    .await;
    // m → a: m rejects a's certificate (unknown issuer), a sees the aborted handshake.
    assert!(
        send_until(&m, &a, |ms, as_| ms.handshake_failures > 0
            && as_.handshake_failures > 0)
        .await,
        "handshake failures not observed: m={:?} a={:?}",
        m.stats(),
        a.stats()
    );
    // a → m: the same, the other way round.
    assert!(
        send_until(&a, &m, |as_, ms| as_.handshake_failures > 0
            && ms.handshake_failures > 1)
        .await
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), a.recv())
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), m.recv())
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
    let ca = DevCa::new("cluster").unwrap();
    let mut a = bind(Some(ca.cluster_tls("node-a", ring_provider()).unwrap())).await;
    let node = ca.issue("node-b").unwrap();
    let v2 = ClusterTls::builder(ca.cert(), node.chain, node.key, ring_provider())
        .alpn_protocols(vec![b"pidmesh/2".to_vec()])
        .build()
        .unwrap();
    let mut b = bind(Some(v2)).await;
    assert!(
        send_until(&b, &a, |bs, as_| bs.handshake_failures > 0
            && as_.handshake_failures > 0)
        .await
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), a.recv())
            .await
            .is_err()
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_peer_names_are_reported_both_ways() {
    let ca = DevCa::new("cluster").unwrap();
    let mut a = bind(Some(ca.cluster_tls("node-a", ring_provider()).unwrap())).await;
    let mut b = bind(Some(ca.cluster_tls("node-b", ring_provider()).unwrap())).await;
    a.send(delta(b.local_addr(), 1)).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.peer_name.as_deref(), Some("node-a"));
    assert_eq!(m.from, a.local_addr());
    b.send(delta(m.from, 2)).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), a.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.peer_name.as_deref(), Some("node-b"));
    assert_eq!(r.from, b.local_addr());
    a.shutdown().await;
    b.shutdown().await;
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_dropped_counted_and_the_node_keeps_serving() {
    let mut a = bind(None).await;
    let honest = bind(None).await;
    let addr = a.local_addr();

    // 1. No hello: garbage, then EOF.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame(b"\x00hello?")).await.unwrap();
    s.shutdown().await.unwrap();

    // 2. A valid hello, then an unknown class, an empty frame, one good frame, and finally an
    //    oversize datagram (refused from its header: the connection is closed, so the length
    //    prefix beyond the frame limit after it is never read).
    let mut s2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut hello = vec![HELLO_TAG, HELLO_VERSION];
    hello.extend_from_slice(b"127.0.0.1:1");
    s2.write_all(&frame(&hello)).await.unwrap();
    s2.write_all(&frame(&[9, 1, 2, 3])).await.unwrap();
    s2.write_all(&frame(&[])).await.unwrap();
    s2.write_all(&frame(&[TrafficClass::Sync.to_byte(), 42]))
        .await
        .unwrap();
    let mut big = vec![0u8; 5000];
    big[0] = TrafficClass::Membership.to_byte();
    // The node may close the connection while these are written.
    let _ = s2.write_all(&frame(&big)).await;
    let _ = s2.write_all(&u32::MAX.to_be_bytes()).await;
    let _ = s2.write_all(&[0; 16]).await;

    let got = tokio::time::timeout(Duration::from_secs(5), a.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.class, TrafficClass::Sync);
    assert_eq!(&got.payload[..], &[42]);
    assert_eq!(got.from, "127.0.0.1:1".parse().unwrap());
    assert_eq!(got.peer_name, None);
    assert!(
        wait_until(Duration::from_secs(5), || a.stats().malformed >= 3
            && a.refused_by().get("class_limit") == Some(&1))
        .await,
        "malformed = {}, refused = {:?}",
        a.stats().malformed,
        a.refused_by()
    );

    // The node keeps serving honest peers.
    honest.send(delta(addr, 7)).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), a.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.from, honest.local_addr());
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_client_cannot_reach_a_tls_node() {
    let ca = DevCa::new("cluster").unwrap();
    let mut a = bind(Some(ca.cluster_tls("node-a", ring_provider()).unwrap())).await;
    let p = bind(None).await;
    assert!(send_until(&p, &a, |_, as_| as_.handshake_failures > 0).await);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), a.recv())
            .await
            .is_err()
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_is_dropped_while_the_link_is_down_and_delta_reports_queue_full() {
    let config = TcpConfig {
        peer_queue_capacity: 4,
        backoff_initial: Duration::from_secs(3),
        ..TcpConfig::insecure_plaintext()
    };
    let a = TcpTransport::bind(LOCAL.parse().unwrap(), config)
        .await
        .unwrap();
    // An address nobody listens on.
    let gone = bind(None).await;
    let dead = gone.local_addr();
    drop(gone);
    a.send(delta(dead, 0)).unwrap();
    assert!(wait_until(Duration::from_secs(5), || a.stats().connect_failures == 1).await);
    // Link is down for 3 s: membership is dropped immediately and counted.
    let before = a.stats().dropped;
    a.send(Outgoing {
        to: dead,
        class: TrafficClass::Membership,
        payload: Bytes::from_static(b"ping"),
    })
    .unwrap();
    assert_eq!(a.stats().dropped, before + 1);
    // Reliable messages wait for the next attempt in the bounded queue; one is held by the
    // writer, four fill the queue, the next is refused.
    let mut refused = false;
    for i in 0..10 {
        if let Err(e) = a.send(delta(dead, i)) {
            assert_eq!(e, pidmesh_transport_tcp::SendError::QueueFull(dead));
            refused = true;
            break;
        }
    }
    assert!(refused, "a bounded queue must fill up");
}
