//! Discovery beyond seeds over the in-memory transport: with every seed dead, restarted nodes
//! find each other through their peer caches, or through a discovery source.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use common::{LIMIT, eventually};
use pidmesh::{Config, FileDiscovery, Registry};
use pidmesh_transport::{MemNetwork, MemTransport, Transport};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pidmesh-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

async fn start(
    name: &str,
    transport: MemTransport,
    seeds: &[SocketAddr],
    cache: Option<PathBuf>,
    discovery: Option<FileDiscovery>,
) -> Registry {
    let mut b = Registry::builder()
        .node_name(name)
        .config(Config::local())
        .seeds(seeds.iter().copied());
    if let Some(c) = cache {
        b = b.peer_cache(c);
    }
    if let Some(d) = discovery {
        b = b
            .discovery(d)
            .discovery_interval(std::time::Duration::from_millis(200));
    }
    b.transport(transport).start().await.expect("starts")
}

fn cached(path: &PathBuf) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| !l.starts_with('#')).count())
        .unwrap_or(0)
}

/// Three nodes, one seed. The peer caches fill; then all three crash and two restart (new
/// lives, the seed stays dead). Neither new life has met the other; only their peer caches
/// know where the other listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_nodes_rejoin_through_their_peer_caches_when_every_seed_is_dead() {
    let net = MemNetwork::new(7);
    println!("mem network seed = {}", net.seed());
    let dir = temp_dir("peer-cache");
    let names = ["seed-0", "node-1", "node-2"];
    let transports: Vec<MemTransport> = names.iter().map(|n| net.bind_named(*n)).collect();
    let addrs: Vec<SocketAddr> = transports.iter().map(Transport::local_addr).collect();
    let caches: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let mut regs = Vec::new();
    for ((name, t), cache) in names.iter().zip(transports).zip(&caches) {
        regs.push(start(name, t, &addrs[..1], Some(cache.clone()), None).await);
    }
    assert!(
        eventually(LIMIT, || regs.iter().all(|r| r.members().len() == 3))
            .await
            .is_some(),
        "cluster did not form"
    );
    // The cache is checked every 5 s.
    assert!(
        eventually(LIMIT, || caches.iter().all(|c| cached(c) == 2))
            .await
            .is_some(),
        "peer caches not written"
    );
    for (r, a) in regs.iter().zip(&addrs) {
        r.abort();
        net.kill(*a);
    }
    let t1 = net
        .bind_at(addrs[1], Some(names[1].into()))
        .expect("rebinds");
    let t2 = net
        .bind_at(addrs[2], Some(names[2].into()))
        .expect("rebinds");
    let b = start(names[1], t1, &addrs[..1], Some(caches[1].clone()), None).await;
    let c = start(names[2], t2, &addrs[..1], Some(caches[2].clone()), None).await;
    let took = eventually(LIMIT, || b.members().len() == 2 && c.members().len() == 2).await;
    println!("restarted nodes met after {took:?}");
    assert!(took.is_some(), "restarted nodes did not find each other");
    b.shutdown().await;
    c.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// No peer caches: two restarted nodes know only the dead seed, and one of them has a discovery
/// file naming the other; it announces there and they meet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_file_leads_a_restarted_node_to_the_cluster_when_every_seed_is_dead() {
    let net = MemNetwork::new(8);
    println!("mem network seed = {}", net.seed());
    let dir = temp_dir("discovery-file");
    let seed_addr = net.bind_named("seed-0").local_addr();
    net.kill(seed_addr);
    let tb = net.bind_named("node-1");
    let tc = net.bind_named("node-2");
    let b_addr = tb.local_addr();
    let file = dir.join("members");
    std::fs::write(&file, "# written by the deployment\n").expect("writes");
    let b = start("node-1", tb, &[seed_addr], None, None).await;
    let c = start(
        "node-2",
        tc,
        &[seed_addr],
        None,
        Some(FileDiscovery::new(&file)),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(c.members().len(), 1, "nothing leads node-2 to node-1 yet");
    std::fs::write(&file, format!("{seed_addr}\n{b_addr}\n")).expect("rewrites");
    let took = eventually(LIMIT, || b.members().len() == 2 && c.members().len() == 2).await;
    println!("met through the discovery file after {took:?}");
    assert!(
        took.is_some(),
        "the discovery file did not lead node-2 to node-1"
    );
    b.shutdown().await;
    c.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
