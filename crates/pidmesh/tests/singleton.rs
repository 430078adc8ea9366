//! `Registry::singleton` over the in-memory transport: one run at a time under quorum
//! policies (crash, graceful handover, a holder cut off on the minority side), one per side and
//! then one after the heal under `Available`, and a run that receives mail and ends on its own.
//!
//! Every run in these tests counts itself in a shared [`Tracker`] from its start until its
//! future returns, so "never two runs at once" is checked on the tasks themselves, and a
//! cancelled run that kept going would show up.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{LIMIT, cluster, eventually};
use pidmesh::{Registry, Resolver, Singleton, SingletonContext, SingletonPolicy, StopReason};
use pidmesh_transport::MemNetwork;
use tokio::time::Instant;

const NAME: &str = "scheduler";

/// Counts runs across all nodes of a test.
#[derive(Debug, Default)]
struct Tracker {
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    /// Node names, in the order their runs started.
    starts: Mutex<Vec<String>>,
}

impl Tracker {
    fn most_at_once(&self) -> usize {
        self.most_at_once.load(Ordering::SeqCst)
    }

    fn starts(&self) -> Vec<String> {
        self.starts.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A singleton that counts itself while running and returns as soon as it is cancelled.
async fn candidate(reg: &Registry, policy: SingletonPolicy, tracker: &Arc<Tracker>) -> Singleton {
    let tracker = tracker.clone();
    reg.singleton(NAME, policy, move |cx: SingletonContext| {
        let tracker = tracker.clone();
        async move {
            let now = tracker.running.fetch_add(1, Ordering::SeqCst) + 1;
            tracker.most_at_once.fetch_max(now, Ordering::SeqCst);
            if let Ok(mut s) = tracker.starts.lock() {
                s.push(cx.registry.node_id().name.to_string());
            }
            cx.cancel.cancelled().await;
            tracker.running.fetch_sub(1, Ordering::SeqCst);
        }
    })
    .await
    .expect("candidate")
}

/// Index of the one node running the singleton, once exactly one does.
async fn one_runner(handles: &[Option<Singleton>]) -> Option<(usize, Duration)> {
    one_runner_except(handles, usize::MAX).await
}

/// Like [`one_runner`], once that node is not `except`.
async fn one_runner_except(
    handles: &[Option<Singleton>],
    except: usize,
) -> Option<(usize, Duration)> {
    let mut found = None;
    let took = eventually(LIMIT, || {
        let running: Vec<usize> = (0..handles.len())
            .filter(|&i| handles[i].as_ref().is_some_and(Singleton::is_running))
            .collect();
        found = (running.len() == 1 && running[0] != except).then(|| running[0]);
        found.is_some()
    })
    .await?;
    found.map(|i| (i, took))
}

async fn three_candidates(
    policy: SingletonPolicy,
    seed: u64,
) -> (
    MemNetwork,
    Vec<Registry>,
    Vec<Option<Singleton>>,
    Arc<Tracker>,
) {
    let net = MemNetwork::new(seed);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 3, Resolver::keep_oldest()).await;
    let tracker = Arc::new(Tracker::default());
    let mut handles = Vec::new();
    for r in &regs {
        handles.push(Some(candidate(r, policy, &tracker).await));
    }
    (net, regs, handles, tracker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_singleton_fails_over_when_its_holder_crashes() {
    for policy in [
        SingletonPolicy::StaticQuorum(2),
        SingletonPolicy::MajorityOfKnown,
    ] {
        let (net, regs, mut handles, tracker) = three_candidates(policy, 11).await;
        let (holder, took) = one_runner(&handles).await.expect("a holder is elected");
        println!("{policy:?}: elected node-{holder} after {took:?}");
        let crashed_at = Instant::now();
        regs[holder].abort();
        net.kill(regs[holder].local_addr());
        handles[holder] = None;
        let (next, _) = one_runner(&handles).await.expect("another node takes over");
        println!(
            "{policy:?}: node-{holder} crashed, node-{next} running after {:?}",
            crashed_at.elapsed()
        );
        assert_ne!(next, holder);
        assert_eq!(
            tracker.most_at_once(),
            1,
            "two runs at once: {:?}",
            tracker.starts()
        );
        for r in &regs {
            r.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_hands_over_at_once() {
    let (_net, regs, mut handles, tracker) =
        three_candidates(SingletonPolicy::StaticQuorum(2), 12).await;
    let (holder, _) = one_runner(&handles).await.expect("a holder is elected");
    handles[holder] = None;
    let started = Instant::now();
    regs[holder].shutdown().await;
    let (next, _) = one_runner(&handles).await.expect("another node takes over");
    let took = started.elapsed();
    println!("node-{holder} shut down, node-{next} running after {took:?}");
    assert_ne!(next, holder);
    // Well under failure detection (about a second with the `local` preset): the name was
    // released on purpose, so no lease had to run out.
    assert!(took < Duration::from_millis(900), "handover took {took:?}");
    assert_eq!(
        tracker.most_at_once(),
        1,
        "two runs at once: {:?}",
        tracker.starts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_in_the_minority_stops_before_the_majority_starts() {
    let (net, regs, handles, tracker) =
        three_candidates(SingletonPolicy::MajorityOfKnown, 13).await;
    let (holder, _) = one_runner(&handles).await.expect("a holder is elected");
    let addrs: Vec<_> = regs.iter().map(Registry::local_addr).collect();
    let others: Vec<_> = (0..3).filter(|&i| i != holder).map(|i| addrs[i]).collect();
    net.partition(&[addrs[holder]], &others);
    let cut_at = Instant::now();
    let (next, _) = one_runner_except(&handles, holder)
        .await
        .expect("the majority side elects one");
    println!(
        "node-{holder} cut off; node-{next} running after {:?}",
        cut_at.elapsed()
    );
    assert_ne!(next, holder);
    let old = handles[holder].as_ref().map(Singleton::status);
    assert_eq!(
        old.and_then(|s| s.last_stop),
        Some(StopReason::LostQuorum),
        "the cut-off holder stopped for lack of a quorum"
    );
    net.heal();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let running = handles
        .iter()
        .filter(|h| h.as_ref().is_some_and(Singleton::is_running))
        .count();
    assert_eq!(running, 1, "one runner after the heal");
    assert_eq!(
        tracker.most_at_once(),
        1,
        "two runs at once: {:?}",
        tracker.starts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_runs_on_both_sides_and_keeps_one_after_the_heal() {
    let (net, regs, handles, tracker) = three_candidates(SingletonPolicy::Available, 14).await;
    let (holder, _) = one_runner(&handles).await.expect("a holder is elected");
    let addrs: Vec<_> = regs.iter().map(Registry::local_addr).collect();
    let others: Vec<_> = (0..3).filter(|&i| i != holder).map(|i| addrs[i]).collect();
    net.partition(&[addrs[holder]], &others);
    let both = eventually(LIMIT, || tracker.running.load(Ordering::SeqCst) == 2).await;
    assert!(both.is_some(), "each side runs one: {:?}", tracker.starts());
    let before: Vec<usize> = (0..3)
        .filter(|&i| handles[i].as_ref().is_some_and(Singleton::is_running))
        .collect();
    assert_eq!(before.len(), 2, "one runner per side");
    net.heal();
    let healed_at = Instant::now();
    let (winner, _) = one_runner(&handles)
        .await
        .expect("one runner after the heal");
    println!(
        "heal: one runner (node-{winner}) after {:?}",
        healed_at.elapsed()
    );
    // The cancelled loser really stopped: only one run is still counted.
    let settled = eventually(LIMIT, || tracker.running.load(Ordering::SeqCst) == 1).await;
    assert!(settled.is_some(), "a cancelled run kept running");
    let loser = before.iter().find(|&&i| i != winner).copied();
    let status = loser
        .and_then(|i| handles[i].as_ref())
        .map(Singleton::status);
    assert_eq!(
        status.and_then(|s| s.last_stop),
        Some(StopReason::LostName),
        "the loser was told it lost the name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_singleton_gets_mail_by_name_and_a_finished_run_hands_over() {
    let net = MemNetwork::new(15);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 3, Resolver::keep_oldest()).await;
    let served = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut handles = Vec::new();
    for r in &regs {
        let served = served.clone();
        let h = r
            .singleton(NAME, SingletonPolicy::StaticQuorum(2), move |mut cx| {
                let served = served.clone();
                async move {
                    // Serve one job, then end the run on purpose.
                    tokio::select! {
                        () = cx.cancel.cancelled() => {}
                        Some(job) = cx.mailbox.recv() => {
                            let me = cx.registry.node_id().name.to_string();
                            if let Ok(mut s) = served.lock() {
                                s.push(format!("{me}:{}", String::from_utf8_lossy(&job.body)));
                            }
                        }
                    }
                }
            })
            .await
            .expect("candidate");
        handles.push(Some(h));
    }
    let (first, _) = one_runner(&handles).await.expect("a holder is elected");
    for (served_before, job) in ["a", "b"].into_iter().enumerate() {
        // Whoever holds the name gets the job.
        let holder = eventually(LIMIT, || {
            regs[0].lookup(NAME).is_some_and(|e| {
                handles
                    .iter()
                    .flatten()
                    .any(|h| h.pid() == &e.pid && h.is_running())
            })
        })
        .await;
        assert!(holder.is_some(), "the running holder is visible by name");
        let pid = regs[0].lookup(NAME).map(|e| e.pid).expect("registered");
        regs[0].send(&pid, job).await.expect("sent");
        let done = eventually(LIMIT, || {
            served.lock().map(|s| s.len()).unwrap_or(0) > served_before
        })
        .await;
        assert!(
            done.is_some(),
            "job {job} served: {:?}",
            served.lock().map(|s| s.clone())
        );
    }
    let status = handles[first]
        .as_ref()
        .map(Singleton::status)
        .expect("handle");
    assert!(
        status.withdrawn,
        "the first holder withdrew after its run returned"
    );
    let served = served.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(served.len(), 2);
    assert_ne!(
        served[0].split(':').next(),
        served[1].split(':').next(),
        "the second job went to the next holder: {served:?}"
    );
}
