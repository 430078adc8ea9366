//! A node that crashes and comes back at the same address with the same key is reached again
//! at once: its new endpoint answers packets of the old life's connections with a stateless
//! reset keyed by the node's restart secret, so the survivor drops the dead connection and
//! dials again, instead of writing into it until the QUIC idle timeout.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::{ClusterTls, ring_provider};
use pidmesh_transport_quic::{
    BindError, Outgoing, QuicConfig, QuicTransport, TrafficClass, Transport,
};
use tokio::sync::{mpsc, oneshot};

/// Far above what the test waits: a survivor that kept the dead connection until the idle
/// timeout would never reach the new life in time.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

fn config(tls: ClusterTls) -> QuicConfig {
    let mut c = QuicConfig::new(tls);
    c.idle_timeout = IDLE_TIMEOUT;
    c.connect_timeout = Duration::from_secs(2);
    c
}

/// One life of node b: a transport on a current-thread runtime of its own thread, forwarding
/// the first byte of every payload it receives. `crash` drops the runtime (every quinn task
/// goes without being polled again, so no CONNECTION_CLOSE leaves) and then the transport.
struct Life {
    addr: SocketAddr,
    received: mpsc::UnboundedReceiver<u8>,
    crash: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Life {
    fn start(tls: ClusterTls, at: SocketAddr) -> Life {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (got_tx, received) = mpsc::unbounded_channel();
        let (crash, mut crash_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let transport = rt.block_on(async move {
                // The previous life's socket is released when its runtime and transport are
                // dropped; retry briefly in case the kernel is slower than that.
                let mut t = None;
                for _ in 0..100 {
                    match QuicTransport::bind(at, config(tls.clone())).await {
                        Ok(b) => {
                            t = Some(b);
                            break;
                        }
                        Err(BindError::Io { .. }) => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => panic!("bind: {e}"),
                    }
                }
                let mut t = t.expect("address free again");
                addr_tx.send(t.local_addr()).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut crash_rx => break,
                        m = t.recv() => match m {
                            Some(m) => {
                                let _ = got_tx.send(m.payload.first().copied().unwrap_or(0));
                            }
                            None => break,
                        },
                    }
                }
                t
            });
            // The crash: tasks first (nothing polled, nothing sent), then the handle.
            drop(rt);
            drop(transport);
        });
        let addr = addr_rx.recv().unwrap();
        Life {
            addr,
            received,
            crash: Some(crash),
            thread: Some(thread),
        }
    }

    fn crash(&mut self) {
        if let Some(c) = self.crash.take() {
            let _ = c.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// Sends a one-byte-tagged Delta to `to` every 20 ms until `life` receives one with `tag`,
/// or `within` passes. Returns how long it took.
async fn reach(a: &QuicTransport, life: &mut Life, tag: u8, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        let _ = a.send(Outgoing {
            to: life.addr,
            class: TrafficClass::Delta,
            payload: Bytes::from(vec![tag; 64]),
        });
        let wait = tokio::time::timeout(Duration::from_millis(20), async {
            while let Some(t) = life.received.recv().await {
                if t == tag {
                    return true;
                }
            }
            false
        });
        if wait.await == Ok(true) {
            return Some(start.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_from_a_crash_at_the_same_address_is_reached_at_once() {
    let ca = DevCa::new("pidmesh test ca").unwrap();
    let a = QuicTransport::bind(
        "127.0.0.1:0".parse().unwrap(),
        config(ca.cluster_tls("node-a", ring_provider()).unwrap()),
    )
    .await
    .unwrap();
    let b_tls = ca.cluster_tls("node-b", ring_provider()).unwrap();

    let mut first = Life::start(b_tls.clone(), "127.0.0.1:0".parse().unwrap());
    let took = reach(&a, &mut first, 1, Duration::from_secs(10)).await;
    assert!(took.is_some(), "first life never reached");
    let addr = first.addr;
    first.crash();

    let mut second = Life::start(b_tls, addr);
    assert_eq!(second.addr, addr);
    // Without a valid stateless reset the survivor keeps writing into the first life's
    // connection until the idle timeout (60 s here).
    let took = reach(&a, &mut second, 2, Duration::from_secs(15)).await;
    println!("crash → restarted node reached again after {took:?}");
    assert!(
        took.is_some(),
        "the restarted node was not reached within 15 s (idle timeout {IDLE_TIMEOUT:?})"
    );
    second.crash();
}
