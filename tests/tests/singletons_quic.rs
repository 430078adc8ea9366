//! Cluster singletons over loopback QUIC (mutual TLS), 5 nodes, `StaticQuorum(3)`, with the
//! `local` and `lan` presets: the holder crashes (another node runs it after failure detection
//! and the lease), then the new holder shuts down gracefully (the next one runs it at once).
//! Every run counts itself while its future runs, so two runs at once would be seen.
//! Prints the failover times; asserts only what must hold (one run at a time, someone else
//! takes over, a graceful handover beats failure detection).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pidmesh::{Config, Resolver, Singleton, SingletonPolicy};
use pidmesh_tests::{Cluster, Kind, eventually};

const NAME: &str = "scheduler";

#[derive(Default)]
struct Runs {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// The one node running the singleton, once exactly one (other than `except`) does.
async fn sole_runner(
    handles: &[Option<Singleton>],
    except: Option<usize>,
    limit: Duration,
) -> usize {
    let mut found = None;
    let took = eventually(limit, || {
        let running: Vec<usize> = (0..handles.len())
            .filter(|&i| handles[i].as_ref().is_some_and(Singleton::is_running))
            .collect();
        found = (running.len() == 1 && Some(running[0]) != except).then(|| running[0]);
        found.is_some()
    })
    .await;
    assert!(took.is_some(), "no single runner within {limit:?}");
    found.unwrap_or_default()
}

async fn crash_then_handover(config: Config, preset: &str) {
    let detect = config.swim.suspect_to_down_after + config.swim.probe_period * 2;
    let limit = detect * 4 + Duration::from_secs(10);
    let mut c = Cluster::start(Kind::Quic, 5, Resolver::keep_oldest(), config)
        .await
        .expect("cluster forms");
    let runs = Arc::new(Runs::default());
    let mut handles = Vec::new();
    for r in c.live() {
        let runs = runs.clone();
        let h = r
            .singleton(NAME, SingletonPolicy::StaticQuorum(3), move |cx| {
                let runs = runs.clone();
                async move {
                    let n = runs.now.fetch_add(1, Ordering::SeqCst) + 1;
                    runs.most.fetch_max(n, Ordering::SeqCst);
                    cx.cancel.cancelled().await;
                    runs.now.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .await
            .expect("candidate");
        handles.push(Some(h));
    }
    let started = Instant::now();
    let first = sole_runner(&handles, None, limit).await;
    println!(
        "{preset}: first holder node {first} after {:?}",
        started.elapsed()
    );

    // Crash first, then drop the handle: dropping it first would withdraw the candidacy (a
    // graceful release) before the crash.
    let crashed = Instant::now();
    c.kill(first).await;
    handles[first] = None;
    let second = sole_runner(&handles, Some(first), limit).await;
    let failover = crashed.elapsed();
    println!("{preset}: holder crashed -> node {second} running after {failover:?}");

    let stopping = Instant::now();
    handles[second] = None;
    let leaving = c.node(second).clone();
    let shutdown = tokio::spawn(async move {
        leaving.shutdown().await;
        stopping.elapsed()
    });
    let third = sole_runner(&handles, Some(second), limit).await;
    let handover = stopping.elapsed();
    println!("{preset}: graceful shutdown -> node {third} running after {handover:?}");
    let shutdown = shutdown.await.expect("shutdown task");
    println!("{preset}: (the shutdown call itself returned after {shutdown:?})");

    assert!(
        handover < detect,
        "{preset}: handover {handover:?} should beat failure detection {detect:?}"
    );
    assert_eq!(
        runs.most.load(Ordering::SeqCst),
        1,
        "{preset}: two runs at once"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singleton_failover_and_handover_over_quic_local() {
    crash_then_handover(Config::local(), "local").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singleton_failover_and_handover_over_quic_lan() {
    crash_then_handover(Config::lan(), "lan").await;
}
