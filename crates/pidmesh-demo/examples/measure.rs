//! End-to-end figures on a 3-node loopback cluster (QUIC with mutual TLS by default, `tcp` for
//! plain TCP), `lan` or `local` preset:
//! - register → visible on every node, over N registrations issued one at a time (p50/p99/max);
//! - a killed node's names → gone on every other node;
//! - partition heal → one winner for a conflicting name on every node.
//!
//! `cargo run --release -p pidmesh-demo --example measure -- [quic|tcp] [local|lan] [N=1000]`
//!
//! A benchmark, not a test: it reports what it saw and asserts nothing about speed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pidmesh::{Config, Event, Registry, Resolver};
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport::{Faults, Transport};
use pidmesh_transport_quic::{QuicConfig, QuicTransport};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Some(start.elapsed())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

async fn start(
    tcp: bool,
    config: &Config,
    faults: &Faults,
    ca: &DevCa,
) -> Result<Vec<Registry>, BoxError> {
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let mut ts = Vec::new();
    for i in 0..3 {
        let name = format!("m{i}");
        if tcp {
            let t = pidmesh_transport_tcp_bind(any).await?;
            ts.push((name, Either::Tcp(faults.wrap(t))));
        } else {
            let t = QuicTransport::bind(
                any,
                QuicConfig::new(ca.cluster_tls(&name, ring_provider())?),
            )
            .await?;
            ts.push((name, Either::Quic(faults.wrap(t))));
        }
    }
    let seed = match &ts[0].1 {
        Either::Tcp(t) => t.local_addr(),
        Either::Quic(t) => t.local_addr(),
    };
    let mut regs = Vec::new();
    for (name, t) in ts {
        let b = Registry::builder()
            .node_name(name)
            .seeds([seed])
            .config(config.clone())
            .resolver(Resolver::keep_oldest());
        regs.push(match t {
            Either::Tcp(t) => b.transport(t).start().await?,
            Either::Quic(t) => b.transport(t).start().await?,
        });
    }
    wait_for(Duration::from_secs(30), || {
        regs.iter().all(|r| r.members().len() == 3)
    })
    .await
    .ok_or("no cluster")?;
    Ok(regs)
}

enum Either {
    Tcp(pidmesh_transport::Faulty<pidmesh_transport_tcp::TcpTransport>),
    Quic(pidmesh_transport::Faulty<QuicTransport>),
}

async fn pidmesh_transport_tcp_bind(
    addr: SocketAddr,
) -> Result<pidmesh_transport_tcp::TcpTransport, BoxError> {
    Ok(
        // A fixed demo key: plain TCP always runs with TLS, a cluster key, or a loopback-only
        // insecure opt-in.
        pidmesh_transport_tcp::TcpTransport::bind(
            addr,
            pidmesh_transport_tcp::TcpConfig::with_cluster_key(
                pidmesh_transport_tcp::ClusterKey::from_bytes([7; 32]),
            ),
        )
        .await?,
    )
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tcp = args.iter().any(|a| a == "tcp");
    let lan = args.iter().any(|a| a == "lan");
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1000);
    let config = if lan { Config::lan() } else { Config::local() };
    let ca = DevCa::new("measure CA")?;
    let faults = Faults::new();
    let regs = start(tcp, &config, &faults, &ca).await?;
    println!(
        "3 nodes over {} on loopback, preset {}",
        if tcp { "TCP" } else { "QUIC+mTLS" },
        if lan { "lan" } else { "local" }
    );

    // 1. Propagation latency.
    let mut subs: Vec<_> = regs[1..].iter().map(Registry::subscribe).collect();
    let (pid, _inbox) = regs[0].spawn_mailbox()?;
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let reg = regs[0]
            .register(&format!("svc-{i:06}"), &pid, Vec::new())
            .await?;
        let t0 = Instant::now();
        for sub in &mut subs {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), sub.recv()).await? {
                    Some(Event::Registered(e)) if e.dot == reg.entry().dot => break,
                    Some(_) => {}
                    None => return Err("node stopped".into()),
                }
            }
        }
        lat.push(t0.elapsed());
        std::mem::forget(reg); // keep the name registered without a guard
    }
    lat.sort();
    println!(
        "register → visible on all 3 nodes, {n} one at a time: p50 {:?}  p99 {:?}  max {:?}",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or_default()
    );

    // 2. Heal → one winner.
    let addrs: Vec<SocketAddr> = regs.iter().map(Registry::local_addr).collect();
    faults.partition(&addrs[..1], &addrs[1..]);
    wait_for(Duration::from_secs(60), || {
        regs[0].members().len() == 1 && regs[1].members().len() == 2
    })
    .await
    .ok_or("no split")?;
    let (a, _ia) = regs[0].spawn_mailbox()?;
    let (b, _ib) = regs[2].spawn_mailbox()?;
    let ga = regs[0].register("contested", &a, Vec::new()).await?;
    let gb = regs[2].register("contested", &b, Vec::new()).await?;
    faults.heal();
    let heal = wait_for(Duration::from_secs(120), || {
        regs.iter().all(|r| r.list_prefix("contested").len() == 1)
            && regs
                .iter()
                .map(|r| r.lookup("contested").map(|e| e.pid))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                == 1
    })
    .await;
    println!("partition heal → one winner for a contested name on every node: {heal:?}");
    drop((ga, gb));

    // 3. Kill → names gone.
    let (p2, _i2) = regs[2].spawn_mailbox()?;
    let _g2 = regs[2].register("on-victim", &p2, Vec::new()).await?;
    wait_for(Duration::from_secs(10), || {
        regs[0].lookup("on-victim").is_some()
    })
    .await
    .ok_or("not visible")?;
    faults.partition(&addrs[2..], &addrs[..2]); // silence it completely, as a crash would
    regs[2].abort();
    let gone = wait_for(Duration::from_secs(120), || {
        regs[..2].iter().all(|r| r.lookup("on-victim").is_none())
    })
    .await;
    println!("killed node → its names gone on every other node: {gone:?}");
    for r in &regs[..2] {
        r.shutdown().await;
    }
    Ok(())
}
