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
    // An address nobody listens on. Shut down, not just dropped: a drop only asks the accept
    // loop to stop, and until that task runs the listener still completes connections (under
    // load `a` connected to it and saw no connect failure).
    let mut gone = bind(None).await;
    let dead = gone.local_addr();
    gone.shutdown().await;
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

mod modes {
    use std::net::SocketAddr;

    use super::*;
    use pidmesh_transport_tcp::{BindError, ClusterKey, HELLO_KEYED_VERSION};

    fn key(b: u8) -> ClusterKey {
        ClusterKey::from_bytes([b; 32])
    }

    async fn keyed(k: ClusterKey) -> TcpTransport {
        TcpTransport::bind(LOCAL.parse().unwrap(), TcpConfig::with_cluster_key(k))
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bind_requires_a_mode_and_insecure_is_loopback_only() {
        let local: SocketAddr = LOCAL.parse().unwrap();
        assert!(matches!(
            TcpTransport::bind(local, TcpConfig::default()).await,
            Err(BindError::NoAuthentication)
        ));
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert!(matches!(
            TcpTransport::bind(any, TcpConfig::insecure_plaintext()).await,
            Err(BindError::NotLoopback(a)) if a == any
        ));
        let both = TcpConfig {
            cluster_key: Some(key(1)),
            ..TcpConfig::insecure_plaintext()
        };
        assert!(matches!(
            TcpTransport::bind(local, both).await,
            Err(BindError::InvalidConfig(_))
        ));
        // A keyed node may listen anywhere.
        let k = TcpTransport::bind(any, TcpConfig::with_cluster_key(key(1))).await;
        assert!(k.is_ok());
        // Insecure: nothing is sent to a non-loopback address (counted as dropped).
        let a = bind(None).await;
        a.send(delta("192.0.2.1:4000".parse().unwrap(), 1)).unwrap();
        assert_eq!(a.stats().dropped, 1);
        assert_eq!(a.stats().connect_failures, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_the_key_frames_flow() {
        let mut a = keyed(key(1)).await;
        let b = keyed(key(1)).await;
        b.send(delta(a.local_addr(), 9)).unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), a.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.from, b.local_addr());
        assert_eq!(&m.payload[..], &[9; 8]);
        assert_eq!(m.peer_name, None);
        assert_eq!(a.stats().refused, 0);
        a.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outsider_without_the_key_can_neither_join_nor_inject() {
        let mut a = keyed(key(1)).await;
        let addr = a.local_addr();
        // 1. A node with another key: the handshake fails both ways, nothing is delivered.
        let wrong = keyed(key(2)).await;
        assert!(
            send_until(&wrong, &a, |w, a| w.handshake_failures > 0 && a.refused > 0).await,
            "wrong={:?} a={:?}",
            wrong.stats(),
            a.stats()
        );
        // 2. An insecure node: its plain hello is refused.
        let plain = bind(None).await;
        assert!(send_until(&plain, &a, |_, a| a.refused > 1).await);
        // 3. A raw socket: a plain hello and a frame; a keyed hello with a made-up tag.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut hello = vec![HELLO_TAG, HELLO_VERSION];
        hello.extend_from_slice(b"127.0.0.1:1");
        let _ = s.write_all(&frame(&hello)).await;
        let _ = s
            .write_all(&frame(&[TrafficClass::Delta.to_byte(), 1]))
            .await;
        let mut s2 = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s2.write_all(&frame(&[0xFE, HELLO_VERSION])).await;
        let _ = s2.write_all(&frame(&[0xFE, HELLO_VERSION, 0, 0])).await;
        let mut s3 = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut challenge = vec![0xFE, HELLO_VERSION];
        challenge.extend_from_slice(&[3; 32]);
        let _ = s3.write_all(&frame(&challenge)).await;
        let mut forged = vec![HELLO_TAG, HELLO_KEYED_VERSION];
        forged.extend_from_slice(&[0; 32]);
        forged.extend_from_slice(b"127.0.0.1:1");
        let _ = s3.write_all(&frame(&forged)).await;
        let _ = s3
            .write_all(&frame(&[TrafficClass::Delta.to_byte(), 1]))
            .await;
        assert!(
            wait_until(Duration::from_secs(5), || a
                .refused_by()
                .get("auth_failed")
                .copied()
                .unwrap_or(0)
                >= 4)
            .await,
            "{:?}",
            a.refused_by()
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(300), a.recv())
                .await
                .is_err(),
            "nothing from outsiders is delivered"
        );
        assert_eq!(a.stats().received, 0);
        // The cluster still works with the key.
        let b = keyed(key(1)).await;
        b.send(delta(addr, 5)).unwrap();
        let m = tokio::time::timeout(Duration::from_secs(5), a.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.from, b.local_addr());
        a.shutdown().await;
    }
}
