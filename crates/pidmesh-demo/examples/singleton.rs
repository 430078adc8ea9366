//! A cluster singleton on five nodes over loopback QUIC (mutual TLS): one "scheduler" runs at a
//! time, ticking and serving jobs sent to it by name. The holder is cut off from the others
//! (it stops, the majority side elects a new one), the cut heals, the holder crashes (another
//! node takes over after failure detection), and the last holder shuts down gracefully (the
//! name is handed over at once). Five nodes, because `MajorityOfKnown` counts the crashed
//! node as known: after a crash and a graceful leave, three of the five still make a majority.
//!
//! `cargo run --release -p pidmesh-demo --example singleton`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pidmesh::{Config, Registry, Resolver, Singleton, SingletonContext, SingletonPolicy};
use pidmesh_transport::Faults;
use pidmesh_transport::tls::dev_ca::DevCa;
use pidmesh_transport::tls::ring_provider;
use pidmesh_transport_quic::{QuicConfig, QuicTransport};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The singleton's body: tick, serve jobs sent to its pid, and return when cancelled.
async fn scheduler(mut cx: SingletonContext) {
    let me = cx.registry.node_id().name.to_string();
    println!("    [{me}] scheduler started as {}", cx.pid);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = cx.cancel.cancelled() => break,
            _ = tick.tick() => {}
            Some(job) = cx.mailbox.recv() => {
                println!("    [{me}] ran job {:?}", String::from_utf8_lossy(&job.body));
            }
        }
    }
    println!("    [{me}] scheduler stopped (cancelled)");
}

/// Waits until exactly one candidate other than `except` runs the singleton.
async fn runner(handles: &[Option<Singleton>], except: Option<usize>) -> Result<usize, BoxError> {
    let start = Instant::now();
    loop {
        let running: Vec<usize> = (0..handles.len())
            .filter(|&i| handles[i].as_ref().is_some_and(Singleton::is_running))
            .collect();
        if running.len() == 1 && Some(running[0]) != except {
            return Ok(running[0]);
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err("no single holder within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let ca = DevCa::new("pidmesh singleton example CA")?;
    let faults = Faults::new();
    let names = ["alpha", "beta", "gamma", "delta", "epsilon"];
    let mut transports = Vec::new();
    for name in names {
        let tls = ca.cluster_tls(name, ring_provider())?;
        let any: SocketAddr = "127.0.0.1:0".parse()?;
        transports.push(faults.wrap(QuicTransport::bind(any, QuicConfig::new(tls)).await?));
    }
    let addrs: Vec<SocketAddr> = transports
        .iter()
        .map(pidmesh_transport::Transport::local_addr)
        .collect();
    let mut nodes = Vec::new();
    let mut handles = Vec::new();
    for (name, transport) in names.iter().zip(transports) {
        let r = Registry::builder()
            .node_name(*name)
            .seeds([addrs[0]])
            .config(Config::local())
            .resolver(Resolver::keep_oldest())
            .transport(transport)
            .start()
            .await?;
        // Every node is a candidate; a majority of the five must back the holder.
        handles.push(Some(
            r.singleton("scheduler", SingletonPolicy::MajorityOfKnown, scheduler)
                .await?,
        ));
        nodes.push(r);
    }
    let t = Instant::now();
    let holder = runner(&handles, None).await?;
    println!(
        "{} holds `scheduler` ({:?} after start)",
        names[holder],
        t.elapsed()
    );
    // Running means a majority backed the claim, not that every node has the name yet: wait
    // for it to reach this node.
    let pid = nodes[(holder + 1) % names.len()]
        .lookup_timeout("scheduler", Duration::from_secs(10))
        .await
        .map(|e| e.pid)
        .ok_or("`scheduler` not visible after 10 s")?;
    nodes[(holder + 1) % names.len()]
        .send(&pid, "rebuild-index")
        .await?;
    tokio::time::sleep(Duration::from_millis(100)).await;

    println!("\ncutting {} off from the other four", names[holder]);
    let others: Vec<SocketAddr> = (0..names.len())
        .filter(|&i| i != holder)
        .map(|i| addrs[i])
        .collect();
    faults.partition(&[addrs[holder]], &others);
    let t = Instant::now();
    let next = runner(&handles, Some(holder)).await?;
    println!(
        "{} stopped (no majority) and {} runs it: {:?} after the cut",
        names[holder],
        names[next],
        t.elapsed()
    );
    faults.heal();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let healed = runner(&handles, None).await?;
    if healed == next {
        println!("healed; still one holder: {}", names[healed]);
    } else {
        // Not expected: a running claim wins over claims that never ran (docs/singletons.md).
        println!("healed; one holder, now {}", names[healed]);
    }

    println!("\ncrashing {}", names[healed]);
    let t = Instant::now();
    nodes[healed].abort();
    handles[healed] = None;
    let after_crash = runner(&handles, Some(healed)).await?;
    println!(
        "{} runs it {:?} after the crash",
        names[after_crash],
        t.elapsed()
    );

    println!("\nshutting {} down gracefully", names[after_crash]);
    let t = Instant::now();
    handles[after_crash] = None;
    let leaving = nodes[after_crash].clone();
    let shutdown = tokio::spawn(async move { leaving.shutdown().await });
    let last = runner(&handles, Some(after_crash)).await?;
    println!(
        "{} runs it {:?} after the shutdown began",
        names[last],
        t.elapsed()
    );
    shutdown.await?;
    for r in &nodes {
        r.shutdown().await;
    }
    Ok(())
}
