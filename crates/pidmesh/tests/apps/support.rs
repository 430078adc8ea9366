//! What the three applications share: starting in-process clusters over the documented
//! transports, and bounded waits.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use pidmesh::{Config, Registry, Resolver};
use pidmesh_transport::MemNetwork;
use pidmesh_transport::tls::{dev_ca::DevCa, ring_provider};
use pidmesh_transport_quic::{QuicConfig, QuicTransport};
use pidmesh_transport_tcp::{TcpConfig, TcpTransport};

/// The longest any single step may take before the test fails. The docs promise
/// milliseconds for propagation and about a second for failure detection with
/// `Config::local()`; this leaves room for a loaded 2-core machine.
pub(crate) const STEP: Duration = Duration::from_secs(5);

/// `fut`, or a panic naming `what` if it takes longer than `limit`.
pub(crate) async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

/// Polls `cond` every 5 ms until it holds; panics naming `what` after `limit`.
pub(crate) async fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    within(limit, what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Waits until every node sees all of them as live members.
pub(crate) async fn formed(nodes: &[Registry]) {
    for r in nodes {
        let n = r.wait_for_members(nodes.len(), STEP).await;
        assert_eq!(n, nodes.len(), "{} sees {n} members", r.node_id().name);
    }
}

/// `n` nodes named `{prefix}{i}` over loopback QUIC with mutual TLS (the guide's
/// "Getting started", with a development CA), all seeded with node 0's address.
pub(crate) async fn quic_cluster(prefix: &str, n: usize) -> Vec<Registry> {
    let ca = DevCa::new("apps test cluster").expect("dev CA");
    let mut nodes: Vec<Registry> = Vec::new();
    let mut seed: Option<SocketAddr> = None;
    for i in 0..n {
        let name = format!("{prefix}{i}");
        let tls = ca
            .cluster_tls(&name, ring_provider())
            .expect("node certificate");
        let transport = QuicTransport::bind(loopback(), QuicConfig::new(tls))
            .await
            .expect("bind QUIC");
        let r = Registry::builder()
            .node_name(&name)
            .seeds(seed)
            .resolver(Resolver::keep_oldest())
            .config(Config::local())
            .transport(transport)
            .start()
            .await
            .expect("start");
        seed.get_or_insert(r.local_addr());
        nodes.push(r);
    }
    formed(&nodes).await;
    nodes
}

/// `n` nodes over loopback TCP without authentication (`TcpConfig::insecure_plaintext`,
/// the guide's transport for tests on one host).
pub(crate) async fn tcp_cluster(prefix: &str, n: usize) -> Vec<Registry> {
    let mut nodes: Vec<Registry> = Vec::new();
    let mut seed: Option<SocketAddr> = None;
    for i in 0..n {
        let transport = TcpTransport::bind(loopback(), TcpConfig::insecure_plaintext())
            .await
            .expect("bind TCP");
        let r = Registry::builder()
            .node_name(format!("{prefix}{i}"))
            .seeds(seed)
            .config(Config::local())
            .transport(transport)
            .start()
            .await
            .expect("start");
        seed.get_or_insert(r.local_addr());
        nodes.push(r);
    }
    formed(&nodes).await;
    nodes
}

/// `n` nodes over one in-memory network (`MemNetwork`, the guide's transport for tests
/// with partitions); the network's seed is printed.
pub(crate) async fn mem_cluster(prefix: &str, n: usize, seed: u64) -> (MemNetwork, Vec<Registry>) {
    println!("MemNetwork seed {seed}");
    let net = MemNetwork::new(seed);
    let mut nodes: Vec<Registry> = Vec::new();
    let mut first: Option<SocketAddr> = None;
    for i in 0..n {
        let name = format!("{prefix}{i}");
        let r = Registry::builder()
            .node_name(&name)
            .seeds(first)
            .config(Config::local())
            .transport(net.bind_named(name))
            .start()
            .await
            .expect("start");
        first.get_or_insert(r.local_addr());
        nodes.push(r);
    }
    formed(&nodes).await;
    (net, nodes)
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
