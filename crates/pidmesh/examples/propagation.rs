//! Register → visible on the two other nodes, one registration at a time, on a 3-node cluster
//! over the in-memory transport (no network delay, so what is left is the node's batching and
//! the driver), with `Config::lan()` and with its `delta_burst` set to 1 (at most one change
//! pushed at once per batch window), in the same run. Then, paced at one registration every
//! 500 µs or more (4 per `lan` window), the share of registrations whose delta batch left node
//! 0 within the `register` call itself (a count, not a time: it does not depend on the load).
//!
//! ```text
//! cargo run --release -p pidmesh --example propagation -- [N]
//! ```

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use pidmesh::{Config, Event, Registry, Resolver};
use pidmesh_transport::MemNetwork;

async fn cluster(net: &MemNetwork, config: &Config) -> Vec<Registry> {
    let transports: Vec<_> = (0..3)
        .map(|i| net.bind_named(format!("node-{i}")))
        .collect();
    let seeds: Vec<_> = transports
        .iter()
        .map(pidmesh_transport::Transport::local_addr)
        .collect();
    let mut regs = Vec::new();
    for (i, t) in transports.into_iter().enumerate() {
        let r = Registry::builder()
            .node_name(format!("node-{i}"))
            .config(config.clone())
            .resolver(Resolver::keep_oldest())
            .seeds(seeds.clone())
            .transport(t)
            .start()
            .await
            .expect("node starts");
        regs.push(r);
    }
    while !regs.iter().all(|r| r.members().len() == 3) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    regs
}

async fn measure(label: &str, config: Config, n: usize, seed: u64) {
    let net = MemNetwork::new(seed);
    let regs = cluster(&net, &config).await;
    let mut subs: Vec<_> = regs[1..].iter().map(Registry::subscribe).collect();
    let (pid, _mb) = regs[0].spawn_mailbox().expect("running");
    let batches0 = regs[0].stats().batches_sent;
    let mut lat = Vec::with_capacity(n);
    let mut guards = Vec::with_capacity(n);
    for i in 0..n {
        let reg = regs[0]
            .register(&format!("p/{i:06}"), &pid, Vec::new())
            .await
            .expect("registers");
        let t0 = Instant::now();
        for sub in &mut subs {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), sub.recv()).await {
                    Ok(Some(Event::Registered(e))) if e.dot == reg.entry().dot => break,
                    Ok(Some(_)) => {}
                    other => panic!("not visible: {other:?}"),
                }
            }
        }
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
        guards.push(reg);
    }
    let batches = regs[0].stats().batches_sent - batches0;
    // Paced: a registration every 500 µs or more; count those pushed within the call.
    let mut at_once = 0;
    let paced = n.min(400);
    for i in 0..paced {
        let before = regs[0].stats().batches_sent;
        let reg = regs[0]
            .register(&format!("paced/{i:06}"), &pid, Vec::new())
            .await
            .expect("registers");
        if regs[0].stats().batches_sent > before {
            at_once += 1;
        }
        guards.push(reg);
        let until = Instant::now() + Duration::from_micros(500);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    println!(
        "{label}: n={n} p50={:.3}ms p99={:.3}ms max={:.3}ms delta_batches={batches}; \
         paced every >=500us: {at_once} of {paced} pushed within the register call",
        q(0.5),
        q(0.99),
        lat[lat.len() - 1]
    );
    for r in &regs {
        r.abort();
    }
    std::mem::forget(guards);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let mut one = Config::lan();
    one.delta_burst = NonZeroU32::MIN;
    measure("lan, delta_burst = 1", one, n, 1).await;
    let lan = Config::lan();
    let label = format!("lan (delta_burst = {})", lan.delta_burst);
    measure(&label, lan, n, 1).await;
}
