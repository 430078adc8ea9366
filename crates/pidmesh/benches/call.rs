//! `Registry::call` round trips: to a process on the same node, and to a process on another
//! node over loopback QUIC with mutual TLS (an idle 2-node cluster, one call at a time).
//!
//! `cargo bench -p pidmesh --bench call`

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use pidmesh::{Config, Pid, Registry};
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport_quic::{QuicConfig, QuicTransport};

const T: Duration = Duration::from_secs(10);

/// Two nodes over QUIC, and an echo process on the first.
async fn setup() -> (Registry, Registry, Pid) {
    let ca = DevCa::new("pidmesh call bench CA").expect("dev CA");
    let mut nodes = Vec::new();
    let mut seed = None;
    for name in ["a", "b"] {
        let tls = ca.cluster_tls(name, ring_provider()).expect("tls");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let t = QuicTransport::bind(any, QuicConfig::new(tls))
            .await
            .expect("binds");
        let addr = pidmesh_transport::Transport::local_addr(&t);
        let r = Registry::builder()
            .node_name(name)
            .config(Config::local())
            .seeds(seed.into_iter().collect::<Vec<_>>())
            .transport(t)
            .start()
            .await
            .expect("starts");
        seed.get_or_insert(addr);
        nodes.push(r);
    }
    assert_eq!(nodes[1].wait_for_members(2, T).await, 2, "cluster formed");
    let (pid, mut inbox) = nodes[0].spawn_mailbox().expect("running");
    tokio::spawn(async move {
        while let Some(m) = inbox.recv().await {
            let body = m.body.clone();
            let _ = m.reply(body);
        }
    });
    let b = nodes.pop().expect("two nodes");
    let a = nodes.pop().expect("two nodes");
    (a, b, pid)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (a, b, pid) = rt.block_on(setup());
    let mut g = c.benchmark_group("call");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("local", |bench| {
        bench.iter(|| {
            rt.block_on(a.call(&pid, &b"12345678"[..], T))
                .expect("reply")
        });
    });
    g.bench_function("quic", |bench| {
        bench.iter(|| {
            rt.block_on(b.call(&pid, &b"12345678"[..], T))
                .expect("reply")
        });
    });
    g.finish();
    rt.block_on(async {
        b.shutdown().await;
        a.shutdown().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
