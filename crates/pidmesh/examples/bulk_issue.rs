//! The issuing side of a bulk registration, on a 3-node cluster over the in-memory transport:
//! N unique names registered on node 0, then the time until every node holds them.
//!
//! ```text
//! cargo run --release -p pidmesh --example bulk_issue -- [N] [one|four|many]
//! ```
//!
//! `one`: the per-name API from one task; `four`: the per-name API from four tasks at once;
//! `many`: `register_many` in one call; `stalls`: like `one`, and reports the calls that took
//! longer than 20 µs (the task yielded to others, waited for the node's lock, was preempted,
//! or touched fresh memory), how often the task moved to another worker thread, and (Linux)
//! the issuing thread's context switches and minor page faults; `stalls-nocoop`: the same
//! with tokio's cooperative budget off, so the task never yields. Made for profiles (`valgrind --tool=callgrind
//! --toggle-collect='*issue*'` counts only the issuing code), so it prints plain numbers.

use std::time::{Duration, Instant};

use pidmesh::{Config, Pid, Registration, Registry, Resolver};
use pidmesh_transport::MemNetwork;

async fn cluster(net: &MemNetwork) -> Vec<Registry> {
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
            .config(Config::lan())
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

#[inline(never)]
async fn issue_one(node: &Registry, pid: &Pid, names: &[String]) -> Vec<Registration> {
    let mut guards = Vec::with_capacity(names.len());
    for n in names {
        guards.push(node.register(n, pid, Vec::new()).await.expect("registers"));
    }
    guards
}

#[inline(never)]
async fn issue_many(node: &Registry, pid: &Pid, names: &[String]) -> Vec<Registration> {
    node.register_many(names.iter().map(|n| (n.as_str(), pid, bytes::Bytes::new())))
        .await
        .expect("node runs")
        .into_iter()
        .map(|r| r.expect("registers"))
        .collect()
}

/// `issue_one` timing each call: (calls over 20 µs, their total time, moves between threads).
#[inline(never)]
async fn issue_timed(
    node: &Registry,
    pid: &Pid,
    names: &[String],
    coop: bool,
) -> (Vec<Registration>, usize, Duration, usize) {
    let mut guards = Vec::with_capacity(names.len());
    let (mut slow, mut slow_total, mut moves) = (0, Duration::ZERO, 0);
    let mut thread = std::thread::current().id();
    let switches_before = ctxt_switches();
    for n in names {
        let t = Instant::now();
        let call = node.register(n, pid, Vec::new());
        let r = if coop {
            call.await
        } else {
            tokio::task::coop::unconstrained(call).await
        };
        guards.push(r.expect("registers"));
        let took = t.elapsed();
        if took > Duration::from_micros(20) {
            slow += 1;
            slow_total += took;
        }
        let now_on = std::thread::current().id();
        if now_on != thread {
            moves += 1;
            thread = now_on;
        }
    }
    if let (Some((v0, i0, f0)), Some((v1, i1, f1))) = (switches_before, ctxt_switches()) {
        // Waiting for a lock parks the thread (voluntary); the OS running another thread on
        // its core preempts it (involuntary); first touches of fresh memory fault (minor).
        println!(
            "issuing thread: context switches voluntary={} involuntary={} minor_faults={}",
            v1.saturating_sub(v0),
            i1.saturating_sub(i0),
            f1.saturating_sub(f0)
        );
    }
    (guards, slow, slow_total, moves)
}

/// This thread's (voluntary, involuntary) context switches and minor page faults so far,
/// from Linux's `/proc/thread-self/status` and `stat`; `None` elsewhere.
fn ctxt_switches() -> Option<(u64, u64, u64)> {
    // Field 10 of `stat` (minflt), counted after the command name's closing parenthesis.
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    let minflt = after_name.split_whitespace().nth(7)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((
        field("voluntary_ctxt_switches:")?,
        field("nonvoluntary_ctxt_switches:")?,
        minflt,
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let mode = args.next().unwrap_or_else(|| "one".to_string());
    let net = MemNetwork::new(1);
    let regs = cluster(&net).await;
    let names: Vec<String> = (0..n).map(|i| format!("bulk/{i:07}")).collect();
    let t0 = Instant::now();
    let guards: Vec<Registration> = match mode.as_str() {
        "one" => {
            let (pid, _mb) = regs[0].spawn_mailbox().expect("running");
            let g = issue_one(&regs[0], &pid, &names).await;
            std::mem::forget(_mb);
            g
        }
        "stalls" | "stalls-nocoop" => {
            let (pid, _mb) = regs[0].spawn_mailbox().expect("running");
            let coop = mode == "stalls";
            let (g, slow, slow_total, moves) = issue_timed(&regs[0], &pid, &names, coop).await;
            println!(
                "calls_over_20us={slow} their_total_ms={:.1} thread_moves={moves}",
                slow_total.as_secs_f64() * 1e3
            );
            std::mem::forget(_mb);
            g
        }
        "four" => {
            let mut tasks = Vec::new();
            for part in names.chunks(n.div_ceil(4).max(1)) {
                let node = regs[0].clone();
                let part = part.to_vec();
                let (pid, mb) = regs[0].spawn_mailbox().expect("running");
                std::mem::forget(mb);
                tasks.push(tokio::spawn(
                    async move { issue_one(&node, &pid, &part).await },
                ));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("task"));
            }
            all
        }
        "many" => {
            let (pid, _mb) = regs[0].spawn_mailbox().expect("running");
            let g = issue_many(&regs[0], &pid, &names).await;
            std::mem::forget(_mb);
            g
        }
        other => panic!("unknown mode {other}"),
    };
    let issue = t0.elapsed();
    while !regs.iter().all(|r| r.stats().entries >= n) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let all = t0.elapsed();
    println!(
        "mode={mode} n={n} issue_s={:.4} per_s={:.0} visible_all_s={:.4}",
        issue.as_secs_f64(),
        n as f64 / issue.as_secs_f64(),
        all.as_secs_f64()
    );
    for r in &regs {
        r.abort();
    }
    std::mem::forget(guards);
}
