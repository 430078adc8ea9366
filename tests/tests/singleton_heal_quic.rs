//! A `StaticQuorum(2)` singleton on 3 nodes over loopback QUIC (mutual TLS), `local` preset:
//! the holder's node is cut off, the majority side elects a new holder, then the partition
//! heals. The majority's holder must stay put through the heal: no stop, no restart, no move
//! back to the formerly cut-off node, and never two runs at once. Repeated `HEALS` times on one
//! cluster (each cycle cuts off the current holder), plus a cycle shape where a non-holder is
//! cut off (the holder is on the majority side all along).
//!
//! `PIDMESH_HEALS=N` changes the number of cycles (default 20).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pidmesh::{Config, Registry, Resolver, Singleton, SingletonPolicy, SingletonStatus};
use pidmesh_tests::{Cluster, Kind, eventually};

const NAME: &str = "scheduler";
const LIMIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Runs {
    now: AtomicUsize,
    most: AtomicUsize,
}

fn heals() -> usize {
    std::env::var("PIDMESH_HEALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn running(handles: &[Singleton]) -> Vec<usize> {
    (0..handles.len())
        .filter(|&i| handles[i].is_running())
        .collect()
}

/// The one node running the singleton once exactly one node among `among` does.
async fn sole_runner(handles: &[Singleton], among: &[usize]) -> usize {
    let mut found = None;
    let took = eventually(LIMIT, || {
        let r = running(handles);
        found = (r.len() == 1 && among.contains(&r[0])).then(|| r[0]);
        found.is_some()
    })
    .await;
    assert!(
        took.is_some(),
        "no single runner among {among:?} within {LIMIT:?}"
    );
    found.unwrap_or_default()
}

async fn candidates(c: &Cluster, runs: &Arc<Runs>) -> Vec<Singleton> {
    let mut handles = Vec::new();
    for r in c.live() {
        let runs = runs.clone();
        let h = r
            .singleton(NAME, SingletonPolicy::StaticQuorum(2), move |cx| {
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
        handles.push(h);
    }
    handles
}

/// Heals and waits until every node sees all three and agrees on the holder's pid, then
/// watches a few more leases for any change.
async fn heal_and_watch(c: &Cluster, handles: &[Singleton], holder: usize, config: &Config) {
    let before: SingletonStatus = handles[holder].status();
    c.faults.heal();
    let live: Vec<Registry> = c.live();
    let pid = handles[holder].pid().clone();
    let agreed = eventually(LIMIT, || {
        live.iter()
            .all(|r| r.members().len() == 3 && r.lookup(NAME).is_some_and(|e| e.pid == pid))
    })
    .await;
    if agreed.is_none() {
        for (i, r) in live.iter().enumerate() {
            println!(
                "node {i}: members {:?} holder {:?} running {}",
                r.members(),
                r.lookup(NAME).map(|e| e.pid),
                handles[i].is_running()
            );
        }
        panic!("nodes did not agree on the holder (node {holder}) after the heal");
    }
    // Watch the settled cluster for a few leases: the holder must not stop or restart.
    let watch = config.singleton_lease() * 4;
    let until = Instant::now() + watch;
    while Instant::now() < until {
        assert_eq!(
            running(handles),
            vec![holder],
            "the holder changed after the heal"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = handles[holder].status();
    assert_eq!(
        (after.starts, after.last_stop),
        (before.starts, before.last_stop),
        "the majority holder stopped or restarted at the heal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_holder_stays_put_through_heals_over_quic() {
    let config = Config::local();
    let c = Cluster::start(Kind::Quic, 3, Resolver::keep_oldest(), config.clone())
        .await
        .expect("cluster forms");
    let runs = Arc::new(Runs::default());
    let handles = candidates(&c, &runs).await;
    let mut holder = sole_runner(&handles, &[0, 1, 2]).await;
    let heals = heals();
    println!("{heals} heals; first holder node {holder}");
    let mut restarts = 0;
    for cycle in 0..heals {
        // Even cycles cut the holder off (it stops, the other two elect one of themselves);
        // odd cycles cut a non-holder off (the holder keeps its quorum all along).
        let cut = if cycle % 2 == 0 {
            holder
        } else {
            (holder + 1 + cycle / 2 % 2) % 3
        };
        let rest: Vec<usize> = (0..3).filter(|&i| i != cut).collect();
        let rest_addrs: Vec<_> = rest.iter().map(|&i| c.addrs[i]).collect();
        let cut_at = Instant::now();
        c.faults.partition(&[c.addrs[cut]], &rest_addrs);
        let lone = c.node(cut).clone();
        let split = eventually(LIMIT, || lone.members().len() == 1).await;
        assert!(split.is_some(), "node {cut} did not notice the cut");
        let starts_before = handles[holder].status().starts;
        let majority = sole_runner(&handles, &rest).await;
        let took = cut_at.elapsed();
        if cut != holder {
            // The holder kept its quorum: the cut must not have touched it.
            assert_eq!(
                majority, holder,
                "cycle {cycle}: the holder moved at the cut"
            );
            assert_eq!(
                handles[holder].status().starts,
                starts_before,
                "cycle {cycle}: the holder restarted at the cut"
            );
        }
        let healed = Instant::now();
        let starts = handles[majority].status().starts;
        heal_and_watch(&c, &handles, majority, &config).await;
        if handles[majority].status().starts != starts {
            restarts += 1;
        }
        println!(
            "cycle {cycle}: cut node {cut}, majority holder node {majority} running {took:?} \
             after the cut, unchanged {:?} after the heal",
            healed.elapsed()
        );
        holder = majority;
    }
    println!(
        "{heals} heals: {restarts} restarts of the majority holder, most runs at once {}",
        runs.most.load(Ordering::SeqCst)
    );
    assert_eq!(restarts, 0);
    assert_eq!(runs.most.load(Ordering::SeqCst), 1, "two runs at once");
    drop(handles);
    c.shutdown().await;
}
