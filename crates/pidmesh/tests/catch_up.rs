//! A node joining a populated cluster over the in-memory transport: `caught_up` resolves once
//! it holds every entry, and subscribers see the transfer as a few `Synced` events and one
//! `CaughtUp`, not one `Registered` per entry.

mod common;

use std::time::Duration;

use common::{LIMIT, cluster};
use pidmesh::{Config, Event, Registry, Resolver};
use pidmesh_transport::MemNetwork;

#[tokio::test]
async fn a_joining_node_reports_when_it_is_caught_up() {
    let seed = 0xca7c_0001;
    println!("seed = {seed:#x}");
    let net = MemNetwork::new(seed);
    let regs = cluster(&net, 3, Resolver::keep_oldest()).await;
    assert!(regs.iter().all(Registry::is_caught_up));
    let (pid, _mailbox) = regs[0].spawn_mailbox().expect("running");
    let n = 3_000;
    let mut guards = Vec::new();
    for i in 0..n {
        guards.push(
            regs[0]
                .register(&format!("cu/{i:05}"), &pid, "")
                .await
                .expect("registers"),
        );
    }
    let filled = common::eventually(LIMIT, || regs.iter().all(|r| r.entry_count() >= n)).await;
    assert!(filled.is_some(), "the cluster did not fill");

    let seeds = vec![regs[0].local_addr(), regs[1].local_addr()];
    let mut config = Config::local();
    config.catch_up_window = 500;
    let newcomer = Registry::builder()
        .node_name("node-new")
        .config(config)
        .seeds(seeds)
        .transport(net.bind_named("node-new"))
        .start()
        .await
        .expect("starts");
    let mut events = newcomer.subscribe_prefix("cu/");
    assert!(newcomer.caught_up(LIMIT).await, "not caught up");
    assert!(
        newcomer.entry_count() >= n,
        "{} entries",
        newcomer.entry_count()
    );
    assert!(newcomer.lookup("cu/02999").is_some_and(|e| e.pid == pid));

    let (mut synced, mut registered, mut caught) = (0usize, 0usize, 0usize);
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(50), events.recv()).await {
        match ev {
            Event::Synced { count, .. } => synced += count,
            Event::Registered(_) => registered += 1,
            Event::CaughtUp { .. } => caught += 1,
            _ => {}
        }
    }
    assert_eq!(caught, 1, "CaughtUp events");
    assert!(
        synced >= n / 2,
        "{synced} entries in Synced events, {registered} Registered"
    );
    assert!(
        registered < n / 4,
        "{registered} Registered events for {n} entries"
    );
    newcomer.shutdown().await;
    for r in regs {
        r.shutdown().await;
    }
    drop(guards);
}
