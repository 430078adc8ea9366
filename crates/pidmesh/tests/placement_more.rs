//! Placement additions over the in-memory transport: start arguments and registration
//! metadata, a restart on a live node right after the host died, and an opt-in rebalance that
//! hands processes over to a new member without ever running two of one key.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{LIMIT, cluster, eventually};
use pidmesh::{
    Config, NodeId, PLACEMENT_GROUP_PREFIX, Placement, PlacementOptions, Registry, Resolver,
    StartArgs, StartContext, rendezvous_score,
};
use pidmesh_transport::MemNetwork;
use tokio::time::Instant;

const KIND: &str = "room";

/// Per key: processes running now, the most at once, starts, and the args each start got.
#[derive(Debug, Default)]
struct Tracker {
    keys: Mutex<BTreeMap<String, KeyStats>>,
}

#[derive(Debug, Default, Clone)]
struct KeyStats {
    running: usize,
    most: usize,
    starts: usize,
    args: Vec<Bytes>,
    moved_to: Vec<NodeId>,
    hosts: Vec<String>,
}

impl Tracker {
    fn get(&self, key: &str) -> KeyStats {
        self.keys
            .lock()
            .map(|k| k.get(key).cloned().unwrap_or_default())
            .unwrap_or_default()
    }
    fn all(&self) -> BTreeMap<String, KeyStats> {
        self.keys.lock().map(|k| k.clone()).unwrap_or_default()
    }
}

/// A placed process that counts itself while it runs and returns once told.
async fn tracked(ctx: StartContext, tracker: Arc<Tracker>) {
    let key = ctx.key.to_string();
    if let Ok(mut k) = tracker.keys.lock() {
        let s = k.entry(key.clone()).or_default();
        s.running += 1;
        s.most = s.most.max(s.running);
        s.starts += 1;
        s.args.push(ctx.args.clone());
        s.hosts.push(ctx.registry.node_id().name.to_string());
    }
    let _ = ctx.lost.wait().await;
    // A little work after the stop signal, so an overlap with the next start would show.
    tokio::time::sleep(Duration::from_millis(20)).await;
    if let Ok(mut k) = tracker.keys.lock() {
        let s = k.entry(key).or_default();
        s.running -= 1;
        if let Some(n) = ctx.lost.moved_to() {
            s.moved_to.push(n);
        }
    }
}

async fn serve_on(reg: &Registry, tracker: &Arc<Tracker>, rebalance: bool) -> Placement {
    let t = tracker.clone();
    reg.placement_with(
        KIND,
        PlacementOptions::default().rebalance(rebalance),
        move |ctx| tracked(ctx, t.clone()),
    )
    .await
    .expect("serves")
}

fn group_seen(regs: &[Registry], n: usize) -> bool {
    let group = format!("{PLACEMENT_GROUP_PREFIX}{KIND}");
    regs.iter().all(|r| r.members_of(&group).len() == n)
}

#[tokio::test]
async fn args_and_metadata_reach_the_process_and_its_entry() {
    let seed = 0x91ac_e001;
    println!("seed = {seed:#x}");
    let net = MemNetwork::new(seed);
    let regs = cluster(&net, 2, Resolver::keep_oldest()).await;
    let tracker = Arc::new(Tracker::default());
    let _p: Vec<Placement> = vec![
        serve_on(&regs[0], &tracker, false).await,
        serve_on(&regs[1], &tracker, false).await,
    ];
    assert!(eventually(LIMIT, || group_seen(&regs, 2)).await.is_some());
    let pid = regs[0]
        .get_or_start_with(
            KIND,
            "lobby",
            StartArgs::default().args("topic=rust").meta(vec![5u8]),
            LIMIT,
        )
        .await
        .expect("started");
    let entry = regs[0].lookup("room/lobby").expect("registered");
    assert_eq!(entry.pid, pid);
    assert_eq!(entry.app_meta(), &[5]);
    assert!(
        eventually(LIMIT, || tracker.get("lobby").starts == 1)
            .await
            .is_some()
    );
    assert_eq!(
        tracker.get("lobby").args,
        vec![Bytes::from_static(b"topic=rust")]
    );
    // A second call finds it; its arguments start nothing.
    let again = regs[1]
        .get_or_start_with(KIND, "lobby", StartArgs::default().args("other"), LIMIT)
        .await
        .expect("found");
    assert_eq!(again, pid);
    assert_eq!(tracker.get("lobby").starts, 1);
}

/// The node names serving the kind, best rendezvous score for `name` first.
fn ranking(names: &[&str], name: &str) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
    v.sort_by_key(|n| std::cmp::Reverse((rendezvous_score(n, name), n.clone())));
    v
}

#[tokio::test]
async fn host_death_restarts_on_a_live_node() {
    let seed = 0x91ac_e002;
    println!("seed = {seed:#x}");
    let net = MemNetwork::new(seed);
    let regs = cluster(&net, 4, Resolver::keep_oldest()).await;
    let tracker = Arc::new(Tracker::default());
    let mut placements: Vec<Option<Placement>> = Vec::new();
    for r in &regs {
        placements.push(Some(serve_on(r, &tracker, false).await));
    }
    assert!(eventually(LIMIT, || group_seen(&regs, 4)).await.is_some());
    // Keys hosted on node-1 whose next owner is node-2 or node-3, asked for from node-0: the
    // restart goes to a node that may not have learned of the death yet when asked.
    let names = ["node-0", "node-1", "node-2", "node-3"];
    let keys: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| {
            let r = ranking(&names, &format!("{KIND}/{k}"));
            r[0] == "node-1" && r[1] != "node-0"
        })
        .take(4)
        .collect();
    let mut first = Vec::new();
    for k in &keys {
        let pid = regs[0].get_or_start(KIND, k, LIMIT).await.expect("started");
        assert_eq!(pid.node, *regs[1].node_id());
        first.push(pid);
    }
    // Kill the host (no goodbye).
    let killed = Instant::now();
    placements[1] = None;
    regs[1].abort();
    net.kill(regs[1].local_addr());
    let gone = eventually(LIMIT, || {
        keys.iter()
            .all(|k| regs[0].lookup(&format!("{KIND}/{k}")).is_none())
    })
    .await;
    assert!(gone.is_some(), "the dead host's entries stayed");
    let detected = killed.elapsed();
    let mut restarts = Vec::new();
    for (k, old) in keys.iter().zip(&first) {
        let t = Instant::now();
        let again = regs[0]
            .get_or_start(KIND, k, LIMIT)
            .await
            .expect("restarted");
        let took = t.elapsed();
        assert_ne!(again.node, old.node);
        let expected = ranking(&names, &format!("{KIND}/{k}"))[1].clone();
        assert_eq!(
            *again.node.name, *expected,
            "{k}: the next rendezvous owner"
        );
        restarts.push(took);
    }
    println!(
        "host death: caller saw the entries gone {detected:?} after the kill; \
         get_or_start then took {restarts:?}"
    );
}

#[tokio::test]
async fn rebalance_hands_over_to_a_new_member_without_overlap() {
    let seed = 0x91ac_e003;
    println!("seed = {seed:#x}");
    let net = MemNetwork::new(seed);
    let mut regs = cluster(&net, 2, Resolver::keep_oldest()).await;
    let tracker = Arc::new(Tracker::default());
    let mut placements = vec![
        serve_on(&regs[0], &tracker, true).await,
        serve_on(&regs[1], &tracker, true).await,
    ];
    assert!(eventually(LIMIT, || group_seen(&regs, 2)).await.is_some());
    let keys: Vec<String> = (0..24).map(|i| format!("r{i}")).collect();
    for k in &keys {
        regs[0]
            .get_or_start_with(KIND, k, StartArgs::default().args(k.clone()), LIMIT)
            .await
            .expect("started");
    }
    // A third node joins and serves the kind.
    let t = net.bind_named("node-2");
    let seeds: Vec<_> = regs.iter().map(Registry::local_addr).collect();
    let r2 = Registry::builder()
        .node_name("node-2")
        .config(Config::local())
        .resolver(Resolver::keep_oldest())
        .seeds(seeds)
        .transport(t)
        .start()
        .await
        .expect("starts");
    regs.push(r2);
    assert!(
        eventually(LIMIT, || regs.iter().all(|r| r.members().len() == 3))
            .await
            .is_some()
    );
    let joined = Instant::now();
    placements.push(serve_on(&regs[2], &tracker, true).await);
    assert!(eventually(LIMIT, || group_seen(&regs, 3)).await.is_some());
    let new_node = regs[2].node_id().clone();
    let moving: Vec<&String> = keys
        .iter()
        .filter(|k| {
            regs[0]
                .placement_target(KIND, k)
                .is_some_and(|n| n == new_node)
        })
        .collect();
    println!(
        "{} of {} keys now belong to node-2",
        moving.len(),
        keys.len()
    );
    assert!(!moving.is_empty(), "no key moves: pick more keys");
    let settled = eventually(LIMIT, || {
        keys.iter().all(|k| {
            let target = regs[0].placement_target(KIND, k);
            regs.iter().all(|r| {
                r.lookup(&format!("{KIND}/{k}"))
                    .is_some_and(|e| Some(e.pid.node) == target)
            }) && tracker.get(k).running == 1
        })
    })
    .await;
    assert!(settled.is_some(), "{:?}", tracker.all());
    println!(
        "rebalance: {} processes moved to the new member within {:?}",
        moving.len(),
        joined.elapsed()
    );
    for (k, s) in tracker.all() {
        assert_eq!(s.most, 1, "{k}: two processes at once ({s:?})");
        assert!(s.args.iter().all(|a| a == k.as_bytes()), "{k}: {s:?}");
        let moved = moving.iter().any(|m| **m == k);
        assert_eq!(s.starts, if moved { 2 } else { 1 }, "{k}: {s:?}");
        if moved {
            assert_eq!(s.moved_to, vec![new_node.clone()], "{k}");
            assert_eq!(s.hosts.last().map(String::as_str), Some("node-2"));
        }
    }
    drop(placements);
}
