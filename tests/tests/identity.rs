//! Identity on every message, over real sockets (QUIC and TCP + mutual TLS): a process holding
//! a valid certificate for one member (`node-2`) speaks for another (`node-1`) in SWIM packets
//! (a newer identity of node-1 at the impostor's address), in a delta and in an anti-entropy
//! chunk whose `seen` range `[(1, 2^40)]` would erase node-1's entries (the poisoning from
//! issue 10). Everything is dropped and counted on the receiving node; node-1 keeps its
//! address, is never declared down, and its entries, old and new, stay visible everywhere.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use foca::{Codec, Header, Message, PostcardCodec};
use pidmesh::{Config, Resolver};
use pidmesh_proto::{Member, NodeId, reject};
use pidmesh_tests::{Cluster, Kind, eventually};
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport::{Outgoing, TrafficClass, Transport};
use pidmesh_transport_quic::{QuicConfig, QuicTransport};
use pidmesh_transport_tcp::{TcpConfig, TcpTransport};
use pidmesh_wire::{Datagram, DeltaBatch, DeltaMsg, OriginDelta, SyncMsg, SyncV1, encode};

const LIMIT: Duration = Duration::from_secs(20);

fn swim_packet(src: Member, dst: Member, message: Message<Member>) -> Bytes {
    let mut buf = Vec::new();
    PostcardCodec
        .encode_header(
            &Header {
                src,
                src_incarnation: 0,
                dst,
                message,
            },
            &mut buf,
        )
        .expect("encodes");
    encode(&Datagram::V1 { swim: buf.into() }).expect("encodes")
}

fn poison() -> OriginDelta {
    OriginDelta {
        seen: vec![(1, 1 << 40)],
        adds: Vec::new(),
        released: Vec::new(),
    }
}

fn forged(
    victim: &NodeId,
    target: &NodeId,
    target_addr: SocketAddr,
    impostor: SocketAddr,
) -> Vec<(TrafficClass, Bytes)> {
    let src = Member {
        node: victim.clone(),
        addr: impostor,
        bump: 7,
    };
    let dst = Member {
        node: target.clone(),
        addr: target_addr,
        bump: 0,
    };
    vec![
        (
            TrafficClass::Membership,
            swim_packet(src.clone(), dst.clone(), Message::Announce),
        ),
        (
            TrafficClass::Membership,
            swim_packet(src, dst, Message::Ping(3)),
        ),
        (
            TrafficClass::Delta,
            encode(&DeltaMsg::V1(DeltaBatch {
                origin: victim.clone(),
                delta: poison(),
            }))
            .expect("encodes"),
        ),
        (
            TrafficClass::Sync,
            encode(&SyncMsg::V1(SyncV1::Chunk {
                from: victim.clone(),
                to: target.clone(),
                delta: poison(),
                last: true,
            }))
            .expect("encodes"),
        ),
    ]
}

async fn impersonation(kind: Kind) {
    let c = Cluster::start(kind, 3, Resolver::keep_oldest(), Config::local())
        .await
        .expect("cluster forms");
    let (n0, n1, n2) = (c.node(0).clone(), c.node(1).clone(), c.node(2).clone());
    let (pid, _inbox) = n1.spawn_mailbox().expect("running");
    let _reg = n1
        .register("victim-svc", &pid, "v")
        .await
        .expect("registers");
    assert!(n0.lookup_timeout("victim-svc", LIMIT).await.is_some());

    // An impostor holding a valid certificate for node-2 (a member).
    let tls = c
        .ca()
        .cluster_tls("node-2", ring_provider())
        .expect("certificate");
    let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let send: Box<dyn Fn(Outgoing) + Send + Sync> = match kind {
        Kind::Quic => {
            let t = QuicTransport::bind(local, QuicConfig::new(tls))
                .await
                .expect("binds");
            Box::new(move |m| {
                let _ = t.send(m);
            })
        }
        _ => {
            let t = TcpTransport::bind(local, TcpConfig::with_tls(tls))
                .await
                .expect("binds");
            Box::new(move |m| {
                let _ = t.send(m);
            })
        }
    };
    let impostor_addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let msgs = forged(n1.node_id(), n0.node_id(), n0.local_addr(), impostor_addr);
    let rejected = |why: &str| n0.stats().rejected_by.get(why).copied().unwrap_or(0);
    // Keep sending until both kinds of forgery were seen and dropped (datagrams may be lost).
    let counted = eventually(LIMIT, || {
        for (class, payload) in &msgs {
            send(Outgoing {
                to: n0.local_addr(),
                class: *class,
                payload: payload.clone(),
            });
        }
        rejected(reject::SWIM_SENDER_MISMATCH) >= 2 && rejected(reject::FOREIGN_ORIGIN) >= 2
    })
    .await;
    println!(
        "{kind:?}: forgeries dropped after {counted:?}: {:?}",
        n0.stats().rejected_by
    );
    assert!(counted.is_some(), "{:?}", n0.stats().rejected_by);

    // For two seconds (over ten suspicion timeouts of Config::local()): node-1 stays a live
    // member of node-0 at its own address, and its entry stays visible.
    let n1_addr = n1.local_addr();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        let members = n0.members();
        assert!(
            members
                .iter()
                .any(|m| m.id == *n1.node_id() && m.addr == n1_addr),
            "node-1 left node-0's view or moved: {members:?}"
        );
        assert!(
            n0.lookup("victim-svc").is_some(),
            "node-1's entry was erased on node-0"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // node-1's later registrations still reach everyone.
    let (pid2, _i2) = n1.spawn_mailbox().expect("running");
    let _r2 = n1
        .register("victim-later", &pid2, "v")
        .await
        .expect("registers");
    for r in [&n0, &n2] {
        assert!(r.lookup_timeout("victim-later", LIMIT).await.is_some());
    }
    drop(send);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_member_cannot_speak_for_another() {
    impersonation(Kind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_tls_member_cannot_speak_for_another() {
    impersonation(Kind::TcpTls).await;
}

/// Plain TCP with a cluster key: a node configured with another key neither joins (nobody
/// lists it as a member, it sees nobody) nor injects (the poisoned `seen` range it sends never
/// reaches the node); with the right key a node joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_outsider_without_the_cluster_key_cannot_join_or_inject() {
    use pidmesh_transport_tcp::ClusterKey;
    let c = Cluster::start(Kind::Tcp, 2, Resolver::keep_oldest(), Config::local())
        .await
        .expect("cluster forms");
    let (n0, n1) = (c.node(0).clone(), c.node(1).clone());
    let (pid, _inbox) = n1.spawn_mailbox().expect("running");
    let _reg = n1
        .register("victim-svc", &pid, "v")
        .await
        .expect("registers");
    assert!(n0.lookup_timeout("victim-svc", LIMIT).await.is_some());
    let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let wrong = || TcpConfig::with_cluster_key(ClusterKey::from_bytes([0x13; 32]));
    // An outsider node that tries to join through both members.
    let outsider_transport = TcpTransport::bind(local, wrong()).await.expect("binds");
    let outsider_monitor = outsider_transport.monitor();
    let outsider = pidmesh::Registry::builder()
        .node_name("outsider")
        .seeds(c.addrs.iter().copied())
        .config(Config::local())
        .transport(outsider_transport)
        .start()
        .await
        .expect("starts");
    // An outsider injecting the poisoned context for node-1.
    let injector = TcpTransport::bind(local, wrong()).await.expect("binds");
    let msgs = forged(
        n1.node_id(),
        n0.node_id(),
        n0.local_addr(),
        injector.local_addr(),
    );
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        for (class, payload) in &msgs {
            let _ = injector.send(Outgoing {
                to: n0.local_addr(),
                class: *class,
                payload: payload.clone(),
            });
        }
        assert!(
            n0.lookup("victim-svc").is_some(),
            "the injection got through"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "outsider: members seen {:?}; its transport {:?}; injector {:?}; node-0 rejected {:?}",
        outsider.members().len(),
        outsider_monitor.stats(),
        injector.stats(),
        n0.stats().rejected_by
    );
    assert_eq!(outsider.members().len(), 1, "the outsider sees nobody");
    for r in [&n0, &n1] {
        assert_eq!(r.members().len(), 2, "nobody lists the outsider");
    }
    assert!(outsider_monitor.stats().handshake_failures > 0);
    assert!(injector.stats().handshake_failures > 0);
    assert_eq!(
        n0.stats().rejected,
        0,
        "nothing of the outsiders reached the node"
    );
    // With the key, a third node joins.
    let t = TcpTransport::bind(
        local,
        TcpConfig::with_cluster_key(pidmesh_tests::cluster_key()),
    )
    .await
    .expect("binds");
    let insider = pidmesh::Registry::builder()
        .node_name("node-2")
        .seeds(c.addrs.iter().copied())
        .config(Config::local())
        .transport(t)
        .start()
        .await
        .expect("starts");
    let joined = eventually(LIMIT, || {
        n0.members().len() == 3 && insider.members().len() == 3
    })
    .await;
    assert!(joined.is_some(), "a node with the key joins");
    assert!(insider.lookup_timeout("victim-svc", LIMIT).await.is_some());
    insider.shutdown().await;
    outsider.shutdown().await;
    c.shutdown().await;
}
