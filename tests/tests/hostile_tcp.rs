//! Resource attacks on a running node over TCP (insecure plain text on loopback, where anyone
//! completes the hello) and TCP + mutual TLS (where an insider holds a valid certificate):
//! 1,000 connections that hold a slot or announce a 16 MiB frame before the hello, 50
//! connections that complete the hello and leave a maximal frame unfinished, 10 that complete
//! the hello and go idle. The node must stay within 64 MiB of extra RSS, keep serving its
//! real peer (a registration there is visible on the attacked node within 1 s), close every
//! held connection through its timeouts, and count each refusal.
//!
//! Short timeouts keep the run to a few seconds: hello 500 ms, idle 1 s, frame 1 s.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pidmesh::{Config, Registry, Resolver};
use pidmesh_tests::eventually;
use pidmesh_transport::Transport;
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::{ClusterTls, ring_provider};
use pidmesh_transport_tcp::{
    HELLO_TAG, HELLO_VERSION, TcpConfig, TcpLimits, TcpMonitor, TcpTransport, TrafficClass,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const OUTSIDERS: usize = 1000;
const INSIDERS: usize = 50;
const IDLERS: usize = 10;

fn limits() -> TcpLimits {
    TcpLimits {
        max_inbound_connections: 256,
        max_inbound_per_source: 60,
        idle_timeout: Duration::from_secs(1),
        frame_timeout: Duration::from_secs(1),
        max_buffered_per_connection: 8 << 20,
        max_buffered_total: 16 << 20,
    }
}

fn config(tls: Option<ClusterTls>) -> TcpConfig {
    let base = match tls {
        Some(t) => TcpConfig::with_tls(t),
        None => TcpConfig::insecure_plaintext(),
    };
    TcpConfig {
        handshake_timeout: Duration::from_millis(500),
        limits: limits(),
        ..base
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn connect_from(src: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    s.connect(to).await
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(body.len())
        .expect("small")
        .to_be_bytes()
        .to_vec();
    v.extend_from_slice(body);
    v
}

/// What became of one attacker connection.
enum Fate {
    /// The node closed it after this long (or refused it at once).
    Closed(Duration),
    /// Still open when the attacker gave up waiting.
    Open,
    /// The attacker could not connect at all (the listen backlog was full).
    NotConnected,
}

/// Reads until the node closes the connection; returns how long that took (None: still open
/// after `limit`).
async fn held_until_closed<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let r = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.ok().map(|()| start.elapsed())
}

/// One insider: completes the hello (`io` is already past TLS if any), then either announces
/// a maximal Sync frame and sends 1 MiB of it, or (idle) nothing. A failed write means the
/// node already closed the connection.
async fn insider<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, idle: bool) -> Fate {
    let start = Instant::now();
    let mut hello = vec![HELLO_TAG, HELLO_VERSION];
    hello.extend_from_slice(b"127.0.0.1:9");
    if io.write_all(&frame(&hello)).await.is_err() {
        return Fate::Closed(start.elapsed());
    }
    if !idle {
        let len = u32::try_from(TrafficClass::Sync.max_len() + 1).expect("fits");
        let mut head = len.to_be_bytes().to_vec();
        head.push(TrafficClass::Sync.to_byte());
        if io.write_all(&head).await.is_err() {
            return Fate::Closed(start.elapsed());
        }
        let chunk = vec![0u8; 64 * 1024];
        // The node may stop reading (backpressure) or close: give up writing after a while.
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            for _ in 0..16 {
                if io.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
    match held_until_closed(&mut io, Duration::from_secs(10)).await {
        Some(_) => Fate::Closed(start.elapsed()),
        None => Fate::Open,
    }
}

struct Outcome {
    rss_before_kib: u64,
    rss_peak_kib: u64,
    visible_after: Option<Duration>,
    closed: usize,
    held_open: usize,
    not_connected: usize,
    slowest_close: Duration,
}

async fn attack(
    attacked: &Registry,
    peer: &Registry,
    monitor: &TcpMonitor,
    tls_client: Option<tokio_rustls::TlsConnector>,
) -> Outcome {
    let target = attacked.local_addr();
    let rss_before_kib = rss_kib();
    let peak = Arc::new(AtomicU64::new(rss_before_kib));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    // Insiders first (from 127.0.0.3), so the connection cap does not refuse them all.
    for i in 0..INSIDERS + IDLERS {
        let tls_client = tls_client.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(s) = connect_from(Ipv4Addr::new(127, 0, 0, 3), target).await else {
                return Fate::NotConnected;
            };
            let start = Instant::now();
            let idle = i >= INSIDERS;
            match tls_client {
                None => insider(s, idle).await,
                Some(c) => {
                    let name = rustls::pki_types::ServerName::IpAddress(target.ip().into());
                    match c.connect(name, s).await {
                        Ok(tls) => insider(tls, idle).await,
                        // Refused by a cap or a timeout while handshaking.
                        Err(_) => Fate::Closed(start.elapsed()),
                    }
                }
            }
        }));
    }
    // Outsiders: half hold a silent connection, half announce a 16 MiB frame before any hello
    // and send 1 KiB of it. The first 300 come from 127.0.0.1 (past the per-source cap), the
    // rest from three other addresses in turn (past the total cap). They connect in bursts of
    // 50 so the listen backlog does not overflow: connections the kernel never hands to the
    // node would look "held" here without the node knowing of them.
    let others = [
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 4),
        Ipv4Addr::new(127, 0, 0, 5),
    ];
    for i in 0..OUTSIDERS {
        let src = if i < 300 {
            Ipv4Addr::new(127, 0, 0, 1)
        } else {
            others[i % others.len()]
        };
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = connect_from(src, target).await else {
                return Fate::NotConnected;
            };
            if i % 2 == 1 {
                let mut big = (16u32 << 20).to_be_bytes().to_vec();
                big.push(TrafficClass::Sync.to_byte());
                big.extend_from_slice(&[0u8; 1024]);
                let _ = s.write_all(&big).await;
            }
            held_until_closed(&mut s, Duration::from_secs(10))
                .await
                .map_or(Fate::Open, Fate::Closed)
        }));
    }
    // Meanwhile the real peer registers a name: it must reach the attacked node promptly.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (pid, _inbox) = peer.spawn_mailbox().expect("running");
    let started = Instant::now();
    let _reg = peer
        .register("under-attack", &pid, "v")
        .await
        .expect("registers");
    let visible_after = eventually(Duration::from_secs(5), || {
        attacked.lookup("under-attack").is_some()
    })
    .await
    .map(|_| started.elapsed());
    let mut closed = 0;
    let mut held_open = 0;
    let mut not_connected = 0;
    let mut slowest_close = Duration::ZERO;
    for t in tasks {
        match t.await.expect("task") {
            Fate::Closed(d) => {
                closed += 1;
                slowest_close = slowest_close.max(d);
            }
            Fate::Open => held_open += 1,
            Fate::NotConnected => not_connected += 1,
        }
    }
    sampling.abort();
    let _ = monitor;
    Outcome {
        rss_before_kib,
        rss_peak_kib: peak.load(Ordering::Relaxed),
        visible_after,
        closed,
        held_open,
        not_connected,
        slowest_close,
    }
}

async fn node(name: &str, t: TcpTransport, seeds: &[SocketAddr]) -> Registry {
    Registry::builder()
        .node_name(name)
        .seeds(seeds.iter().copied())
        .resolver(Resolver::keep_oldest())
        .config(Config::local())
        .transport(t)
        .start()
        .await
        .expect("starts")
}

async fn run(tls: bool) {
    let ca = DevCa::new("hostile test CA").expect("ca");
    let cluster_tls =
        |n: &str| tls.then(|| ca.cluster_tls(n, ring_provider()).expect("certificate"));
    let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let ta = TcpTransport::bind(local, config(cluster_tls("node-a")))
        .await
        .expect("binds");
    let monitor = ta.monitor();
    let a_addr = ta.local_addr();
    let a = node("node-a", ta, &[]).await;
    let tb = TcpTransport::bind(local, config(cluster_tls("node-b")))
        .await
        .expect("binds");
    let b = node("node-b", tb, &[a_addr]).await;
    let formed = eventually(Duration::from_secs(10), || {
        a.members().len() == 2 && b.members().len() == 2
    })
    .await;
    assert!(formed.is_some(), "cluster formed");
    let tls_client =
        cluster_tls("node-9").map(|t| tokio_rustls::TlsConnector::from(t.client_config()));
    let before_counts = monitor.refused_by();
    let o = attack(&a, &b, &monitor, tls_client).await;
    let refused = monitor.refused_by();
    let stats = monitor.stats();
    let growth_mib = (o.rss_peak_kib.saturating_sub(o.rss_before_kib)) as f64 / 1024.0;
    println!(
        "tls={tls}: RSS {:.1} MiB -> peak {:.1} MiB (+{growth_mib:.1} MiB); registration visible after {:?}; \
         {} attacker connections closed by the node (slowest after {:?}), {} still open after 10 s, {} could not connect; \
         refused {refused:?}; handshake failures {}; before the attack {before_counts:?}",
        o.rss_before_kib as f64 / 1024.0,
        o.rss_peak_kib as f64 / 1024.0,
        o.visible_after,
        o.closed,
        o.slowest_close,
        o.held_open,
        o.not_connected,
        stats.handshake_failures,
    );
    assert!(growth_mib < 64.0, "RSS grew by {growth_mib:.1} MiB");
    let visible = o
        .visible_after
        .expect("registration reaches the attacked node");
    assert!(
        visible < Duration::from_secs(1),
        "visible after {visible:?}"
    );
    assert_eq!(o.held_open, 0, "connections the node never closed");
    assert_eq!(o.closed + o.not_connected, OUTSIDERS + INSIDERS + IDLERS);
    assert!(o.closed >= OUTSIDERS / 2, "most attackers got a connection");
    let count = |r: &str| refused.get(r).copied().unwrap_or(0);
    assert!(count("connection_cap") > 0, "{refused:?}");
    assert!(count("per_source_cap") > 0, "{refused:?}");
    assert!(count("hello_timeout") > 0, "{refused:?}");
    assert!(count("idle_timeout") >= 1, "{refused:?}");
    assert!(
        count("buffer_full") + count("stalled_frame") >= 1,
        "unfinished frames cut off: {refused:?}"
    );
    if tls {
        // Outsiders' bytes are not TLS: their handshakes fail.
        assert!(stats.handshake_failures > 0);
    } else {
        assert!(count("frame_too_large_before_hello") > 0, "{refused:?}");
    }
    // Only the real peer's connection is left.
    let settled = eventually(Duration::from_secs(5), || {
        monitor.inbound_connections() <= 1
    })
    .await;
    assert!(
        settled.is_some(),
        "{} inbound connections left",
        monitor.inbound_connections()
    );
    // And the node still works both ways.
    let (pid, _inbox) = a.spawn_mailbox().expect("running");
    let _r = a
        .register("after-attack", &pid, "v")
        .await
        .expect("registers");
    assert!(
        b.lookup_timeout("after-attack", Duration::from_secs(5))
            .await
            .is_some()
    );
    b.shutdown().await;
    a.shutdown().await;
}

/// Both attacks in one test, one after the other: RSS is per process, so two attacks running
/// at once would measure each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tcp_tls_nodes_survive_connection_and_slow_frame_floods() {
    run(false).await;
    run(true).await;
}
