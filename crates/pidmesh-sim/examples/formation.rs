//! Membership formation at scale, in virtual time: N nodes start at once with three seeds (the
//! `lan` preset rescaled for N), and the run stops when every node sees every other. Prints the
//! virtual formation time, the payload bytes each node sent while forming (SWIM, push-pull
//! lists, other sync such as digests), the CPU and wall time, and the peak RSS; then, if asked,
//! keeps running for a stretch of steady state and prints what push-pull costs there.
//!
//! `cargo run --release -p pidmesh-sim --example formation -- [nodes=1000] [seed=1] [steady_secs=0]`
//!
//! Environment: `PIDMESH_FOLLOWUPS=k` sets `PushPull::followups`, `PIDMESH_PP_INTERVAL=secs`
//! the periodic interval (0: none), `PIDMESH_NO_PUSH_PULL=1` turns push-pull off.

use std::time::{Duration, Instant};

use pidmesh_sim::{Sim, SimConfig};

fn formed(sim: &Sim) -> bool {
    let live = sim.live();
    live.iter().all(|&i| {
        sim.node(i)
            .is_some_and(|n| n.peers().count() + 1 == live.len())
    })
}

fn fewest(sim: &Sim) -> usize {
    sim.live()
        .iter()
        .filter_map(|&i| sim.node(i).map(|n| n.peers().count() + 1))
        .min()
        .unwrap_or(0)
}

/// Push-pull bytes sent, exchanges started, answered, refused, summed over the nodes.
fn push_pull(sim: &Sim) -> [u64; 4] {
    sim.live()
        .iter()
        .filter_map(|&i| sim.node(i).map(pidmesh_proto::Node::stats))
        .fold([0; 4], |a, s| {
            [
                a[0] + s.push_pull_bytes_sent,
                a[1] + s.push_pull_started,
                a[2] + s.push_pull_answered,
                a[3] + s.push_pull_refused,
            ]
        })
}

/// Peak resident set size of this process in MiB (Linux), if readable.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time of this process so far (user + system), if readable.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let nodes = args.next().flatten().unwrap_or(1000) as usize;
    let seed = args.next().flatten().unwrap_or(1);
    let steady = args.next().flatten().unwrap_or(0);
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.seeds = 3.min(nodes);
    cfg.node =
        pidmesh_proto::Config::lan().for_cluster_size(u32::try_from(nodes).unwrap_or(u32::MAX));
    if let Some(pp) = cfg.node.push_pull.as_mut() {
        if let Some(k) = env_u64("PIDMESH_FOLLOWUPS") {
            pp.followups = u32::try_from(k).unwrap_or(u32::MAX);
        }
        if let Some(s) = env_u64("PIDMESH_PP_INTERVAL") {
            pp.interval = (s > 0).then(|| Duration::from_secs(s));
        }
    }
    if std::env::var_os("PIDMESH_NO_PUSH_PULL").is_some() {
        cfg.node.push_pull = None;
    }
    println!(
        "nodes={nodes} seed={seed} push_pull={:?} probe_period={:?}",
        cfg.node.push_pull, cfg.node.swim.probe_period
    );
    let wall = Instant::now();
    let mut sim = Sim::new(cfg);
    let mut last_report = Instant::now();
    let took = sim.run_until(Duration::from_secs(600), Duration::from_millis(20), |s| {
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            eprintln!(
                "  … {:?} virtual, {:.0?} wall, fewest members seen {}",
                s.elapsed(),
                wall.elapsed(),
                fewest(s)
            );
        }
        formed(s)
    });
    let n = nodes as f64;
    let bytes = sim.bytes_sent;
    let pp = push_pull(&sim);
    println!(
        "formed after {took:?} virtual (fewest members seen {}); wall {:.1?}, CPU {:?} s, peak RSS {:?} MiB, {} messages delivered",
        fewest(&sim),
        wall.elapsed(),
        cpu_secs(),
        peak_rss_mib(),
        sim.delivered
    );
    println!(
        "bytes per node while forming: SWIM {:.0}, push-pull {:.0}, other sync (digests…) {:.0}, delta {:.0}",
        bytes[0] as f64 / n,
        pp[0] as f64 / n,
        bytes[2].saturating_sub(pp[0]) as f64 / n,
        bytes[1] as f64 / n
    );
    let digests: u64 = sim
        .live()
        .iter()
        .filter_map(|&i| sim.node(i).map(|n| n.stats().digests_sent))
        .sum();
    println!(
        "anti-entropy digests sent while forming: {digests} ({:.2} per node)",
        digests as f64 / n
    );
    println!(
        "push-pull exchanges started {}, answered {}, refused {} (per node: {:.2} started); seed node 0 sent SWIM {} B, push-pull {} B",
        pp[1],
        pp[2],
        pp[3],
        pp[1] as f64 / n,
        sim.bytes_by_host.first().map_or(0, |b| b[0]),
        sim.node(0).map_or(0, |s| s.stats().push_pull_bytes_sent)
    );
    if steady > 0 {
        let (b0, p0) = (sim.bytes_sent, push_pull(&sim));
        let w = Instant::now();
        sim.run_for(Duration::from_secs(steady));
        let (b1, p1) = (sim.bytes_sent, push_pull(&sim));
        let per = |a: u64, b: u64| (b - a) as f64 / n / steady as f64;
        println!(
            "steady state over {steady} s virtual ({:.1?} wall): per node per second SWIM {:.0} B, push-pull {:.0} B ({:.3} exchanges), other sync {:.0} B; fewest members seen {}",
            w.elapsed(),
            per(b0[0], b1[0]),
            per(p0[0], p1[0]),
            per(p0[1], p1[1]),
            per(b0[2].saturating_sub(p0[0]), b1[2].saturating_sub(p1[0])),
            fewest(&sim)
        );
    }
}
