//! App 3: a singleton job across a partition, on the in-memory transport.
//!
//! Three nodes are candidates for the job `nightly-job` under `StaticQuorum(2)`. The job
//! answers requests sent to whoever holds its name. The holder's node is cut off: its run
//! stops, the two others elect a new runner, and after the heal that runner stays. Then the
//! holder's node shuts down and the job moves to the last candidate at once. Every run counts
//! itself from its start until its future returns, in memory shared by the three nodes, so
//! two runs overlapping at any instant fail the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pidmesh::prelude::*;
use pidmesh::{Singleton, SingletonContext, StopReason};

use crate::support::{STEP, mem_cluster, until};

const JOB: &str = "nightly-job";

/// What every run reports, shared by the three nodes (they live in this process).
#[derive(Default)]
struct Runs {
    active: AtomicUsize,
    max_active: AtomicUsize,
    /// (node, started) for every run, in order of start.
    started: Mutex<Vec<String>>,
    /// Requests answered, by node.
    answered: Mutex<Vec<String>>,
}

/// The job: counts itself running, answers requests with its node's name, and returns as
/// soon as it is cancelled.
fn job(
    runs: Arc<Runs>,
    node: String,
) -> impl Fn(SingletonContext) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
+ Send
+ Sync
+ 'static {
    move |mut cx: SingletonContext| {
        let (runs, node) = (runs.clone(), node.clone());
        Box::pin(async move {
            let now = runs.active.fetch_add(1, Ordering::SeqCst) + 1;
            runs.max_active.fetch_max(now, Ordering::SeqCst);
            runs.started.lock().unwrap().push(node.clone());
            loop {
                tokio::select! {
                    () = cx.cancel.cancelled() => break,
                    m = cx.mailbox.recv() => match m {
                        Some(m) => {
                            if m.is_request() && m.reply(node.clone()).is_ok() {
                                runs.answered.lock().unwrap().push(node.clone());
                            }
                        }
                        None => break,
                    },
                }
            }
            runs.active.fetch_sub(1, Ordering::SeqCst);
        })
    }
}

/// The indices of the handles whose node runs the job now.
fn running(handles: &[Option<Singleton>]) -> Vec<usize> {
    (0..handles.len())
        .filter(|&i| handles[i].as_ref().is_some_and(|h| h.is_running()))
        .collect()
}

/// The seed of the in-memory network: `PIDMESH_APPS_SEED`, or a fixed default.
fn seed() -> u64 {
    std::env::var("PIDMESH_APPS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_202)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singleton_job_across_a_partition() {
    let t0 = Instant::now();
    let (net, nodes) = mem_cluster("job", 3, seed()).await;
    let runs = Arc::new(Runs::default());
    let mut handles: Vec<Option<Singleton>> = Vec::new();
    for r in &nodes {
        let h = r
            .singleton(
                JOB,
                SingletonPolicy::StaticQuorum(2),
                job(runs.clone(), r.node_id().name.to_string()),
            )
            .await
            .expect("candidate");
        handles.push(Some(h));
    }
    let only_one = |runs: &Runs| {
        assert!(
            runs.max_active.load(Ordering::SeqCst) <= 1,
            "two runs at once"
        )
    };

    // 1. One node runs the job; every node finds it by name and a request reaches it.
    until(STEP, "a first runner", || running(&handles).len() == 1).await;
    let first = running(&handles)[0];
    let first_pid = handles[first].as_ref().unwrap().pid().clone();
    println!("first runner: node {first} after {:?}", t0.elapsed());
    for r in &nodes {
        until(STEP, "the runner visible everywhere", || {
            r.lookup(JOB).is_some_and(|e| e.pid == first_pid)
        })
        .await;
        assert!(r.lookup(JOB).unwrap().is_running_claim());
    }
    let asker = (first + 1) % 3;
    let holder = nodes[asker].lookup(JOB).expect("held").pid;
    let answer = nodes[asker]
        .call(&holder, "run", STEP)
        .await
        .expect("the job answers");
    assert_eq!(&answer[..], nodes[first].node_id().name.as_bytes());
    only_one(&runs);

    // 2. The runner's node is cut off from the two others. Its run stops (it lost the
    //    quorum), and one of the two others runs the job; never both at once.
    let cut = Instant::now();
    let lone = [nodes[first].local_addr()];
    let rest: Vec<_> = (0..3)
        .filter(|&i| i != first)
        .map(|i| nodes[i].local_addr())
        .collect();
    net.partition(&lone, &rest);
    until(STEP, "the cut-off runner stops", || {
        !handles[first].as_ref().unwrap().is_running()
    })
    .await;
    let stopped_after = cut.elapsed();
    assert_eq!(
        handles[first].as_ref().unwrap().status().last_stop,
        Some(StopReason::LostQuorum)
    );
    until(STEP * 2, "a runner on the majority side", || {
        running(&handles).len() == 1
    })
    .await;
    let second = running(&handles)[0];
    assert_ne!(second, first, "the cut-off node does not run it");
    println!(
        "cut → old run stopped {stopped_after:?}, new runner node {second} after {:?}",
        cut.elapsed()
    );
    only_one(&runs);
    let second_pid = handles[second].as_ref().unwrap().pid().clone();
    // On the cut-off side the name may show this node's own new claim, which cannot run
    // without a quorum: `is_running_claim` tells it apart, and a call to it fails.
    for _ in 0..4 {
        if let Some(e) = nodes[first].lookup(JOB) {
            assert!(!e.is_running_claim(), "nothing runs on the minority side");
            let r = nodes[first].call(&e.pid, "run", STEP).await;
            assert!(
                matches!(r, Err(CallError::NoSuchProcess(_) | CallError::NodeDown(_))),
                "{r:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = 3 - first - second;
    until(STEP, "the new runner visible on the majority", || {
        nodes[other]
            .lookup(JOB)
            .is_some_and(|e| e.pid == second_pid)
    })
    .await;
    let answer = nodes[other]
        .call(&second_pid, "run", STEP)
        .await
        .expect("the new runner answers");
    assert_eq!(&answer[..], nodes[second].node_id().name.as_bytes());

    // 3. Heal. The majority's runner stays: no restart, no move; every node sees it.
    let starts = handles[second].as_ref().unwrap().status().starts;
    net.heal();
    for r in &nodes {
        until(STEP, "one holder everywhere after the heal", || {
            r.lookup(JOB).is_some_and(|e| e.pid == second_pid)
        })
        .await;
    }
    // Let several lease renewals pass (600 ms lease with `Config::local`).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        running(&handles),
        vec![second],
        "the majority's runner kept running"
    );
    assert_eq!(
        handles[second].as_ref().unwrap().status().starts,
        starts,
        "not restarted"
    );
    only_one(&runs);

    // 4. The runner's node shuts down: the job moves to another candidate at once (a
    //    graceful stop releases the name and the vouches).
    let stop = Instant::now();
    nodes[second].shutdown().await;
    assert_eq!(
        handles[second].as_ref().unwrap().status().last_stop,
        Some(StopReason::Shutdown)
    );
    handles[second] = None;
    until(STEP, "a runner after the handover", || {
        running(&handles).len() == 1
    })
    .await;
    let third = running(&handles)[0];
    println!(
        "shutdown → node {third} runs the job after {:?}",
        stop.elapsed()
    );
    let third_pid = handles[third].as_ref().unwrap().pid().clone();
    let asker = 3 - second - third;
    until(STEP, "the last runner visible", || {
        nodes[asker].lookup(JOB).is_some_and(|e| e.pid == third_pid)
    })
    .await;
    let answer = nodes[asker]
        .call(&third_pid, "run", STEP)
        .await
        .expect("the last runner answers");
    assert_eq!(&answer[..], nodes[third].node_id().name.as_bytes());
    only_one(&runs);

    let started = runs.started.lock().unwrap().clone();
    assert_eq!(started.len(), 3, "three runs, one per phase: {started:?}");
    assert_eq!(runs.answered.lock().unwrap().len(), 3);
    for (i, h) in handles.into_iter().enumerate() {
        if let Some(h) = h {
            h.withdraw().await;
            nodes[i].shutdown().await;
        }
    }
    assert_eq!(runs.active.load(Ordering::SeqCst), 0, "every run returned");
    println!("singleton_job_across_a_partition: {:?}", t0.elapsed());
}
