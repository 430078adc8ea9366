//! The facade over the in-memory transport: the whole API on a 3-node cluster, in one process.

mod common;

use common::{LIMIT, cluster, eventually};
use pidmesh::{Event, Reason, Registry, Resolver, SendError};
use pidmesh_transport::MemNetwork;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_lookup_send_and_process_exit() {
    let net = MemNetwork::new(1);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, 3, Resolver::keep_oldest()).await;
    let (pid, mut inbox) = regs[0].spawn_mailbox().expect("running");
    let reg = regs[0]
        .register("billing", &pid, "v1")
        .await
        .expect("registers");
    assert_eq!(
        regs[0].lookup("billing").map(|e| e.pid),
        Some(pid.clone()),
        "read-your-writes"
    );
    regs[0]
        .join("workers", &pid, Vec::new())
        .await
        .expect("joins");
    for r in &regs {
        let e = r
            .lookup_timeout("billing", LIMIT)
            .await
            .expect("visible everywhere");
        assert_eq!(e.pid, pid);
        assert_eq!(&e.meta[..], b"v1");
    }
    assert!(
        eventually(LIMIT, || regs
            .iter()
            .all(|r| r.members_of("workers").len() == 1))
        .await
        .is_some()
    );
    let confirmed = regs[0].wait_visible(reg.entry(), 3, LIMIT).await;
    assert_eq!(
        confirmed, 3,
        "both peers confirmed holding the registration"
    );
    assert_eq!(regs[1].list_prefix("bill").len(), 1);

    // Remote send, in order.
    for i in 0..50u32 {
        regs[2]
            .send(&pid, i.to_be_bytes().to_vec())
            .await
            .expect("sent");
    }
    for i in 0..50u32 {
        let m = tokio::time::timeout(LIMIT, inbox.recv())
            .await
            .expect("in time")
            .expect("open");
        assert_eq!(&m.body[..], &i.to_be_bytes());
        assert_eq!(m.from, *regs[2].node_id());
    }

    // Metadata update propagates as MetaUpdated.
    let mut sub = regs[1].subscribe_prefix("bill");
    regs[0]
        .update_meta(&reg.entry().key, &pid, "v2")
        .await
        .expect("updates");
    let ev = tokio::time::timeout(LIMIT, sub.recv())
        .await
        .expect("in time")
        .expect("open");
    assert!(
        matches!(ev, Event::MetaUpdated { ref previous, .. } if &previous[..] == b"v1"),
        "{ev:?}"
    );

    // Dropping the mailbox ends the process: its entries vanish everywhere.
    drop(inbox);
    assert!(
        eventually(LIMIT, || regs.iter().all(
            |r| r.lookup("billing").is_none() && r.members_of("workers").is_empty()
        ))
        .await
        .is_some()
    );
    assert!(matches!(
        regs[1].send(&pid, "late").await,
        Err(SendError::NodeUnreachable(_)) | Ok(())
    ));
    assert!(matches!(
        regs[0].send(&pid, "late").await,
        Err(SendError::NoSuchProcess(_))
    ));
    drop(reg);
    for r in &regs {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_drop_unregisters_and_shutdown_leaves() {
    let net = MemNetwork::new(2);
    let regs = cluster(&net, 3, Resolver::keep_oldest()).await;
    let (pid, _inbox) = regs[1].spawn_mailbox().expect("running");
    {
        let _reg = regs[1]
            .register("cache", &pid, Vec::new())
            .await
            .expect("registers");
        assert!(
            eventually(LIMIT, || regs.iter().all(|r| r.lookup("cache").is_some()))
                .await
                .is_some()
        );
    }
    assert!(
        eventually(LIMIT, || regs.iter().all(|r| r.lookup("cache").is_none()))
            .await
            .is_some(),
        "guard drop unregisters"
    );

    let (pid2, _inbox2) = regs[2].spawn_mailbox().expect("running");
    let _reg2 = regs[2]
        .register("db", &pid2, Vec::new())
        .await
        .expect("registers");
    assert!(
        eventually(LIMIT, || regs[0].lookup("db").is_some())
            .await
            .is_some()
    );
    regs[2].shutdown().await;
    let gone = eventually(LIMIT, || {
        regs[0].lookup("db").is_none() && regs[0].members().len() == 2
    })
    .await;
    println!("graceful leave: names gone after {gone:?}");
    assert!(gone.is_some());
    assert!(
        regs[2].register("x", &pid2, Vec::new()).await.is_err(),
        "a stopped node refuses work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_names_vanish() {
    let net = MemNetwork::new(3);
    let regs = cluster(&net, 3, Resolver::keep_oldest()).await;
    let (pid, _inbox) = regs[2].spawn_mailbox().expect("running");
    let _reg = regs[2]
        .register("doomed", &pid, Vec::new())
        .await
        .expect("registers");
    assert!(
        eventually(LIMIT, || regs[0].lookup("doomed").is_some())
            .await
            .is_some()
    );
    net.kill(regs[2].local_addr());
    regs[2].abort();
    let gone = eventually(LIMIT, || {
        regs[0].lookup("doomed").is_none() && regs[1].lookup("doomed").is_none()
    })
    .await;
    println!("killed node's names gone after {gone:?}");
    assert!(gone.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heal_conflict_loser_is_told() {
    let net = MemNetwork::new(4);
    let regs = cluster(&net, 3, Resolver::keep_oldest()).await;
    let addrs: Vec<_> = regs.iter().map(Registry::local_addr).collect();
    net.partition(&addrs[..1], &addrs[1..]);
    assert!(
        eventually(LIMIT, || regs[0].members().len() == 1
            && regs[1].members().len() == 2)
        .await
        .is_some()
    );
    let (a, _ia) = regs[0].spawn_mailbox().expect("running");
    let (b, _ib) = regs[2].spawn_mailbox().expect("running");
    let mut ra = regs[0]
        .register("leader", &a, Vec::new())
        .await
        .expect("side A registers");
    let mut rb = regs[2]
        .register("leader", &b, Vec::new())
        .await
        .expect("side B registers");
    // Keep-oldest picks the canonically first claim (registration time, then node id); the
    // nodes' millisecond clocks may tie or differ by a millisecond, so compute it.
    let (winner, loser) = if ra.entry().canonical_cmp(rb.entry()).is_lt() {
        (a.clone(), &mut rb)
    } else {
        (b.clone(), &mut ra)
    };
    net.heal();
    let lost = tokio::time::timeout(LIMIT * 3, loser.lost())
        .await
        .expect("loser told in time")
        .expect("lost");
    assert_eq!(lost.reason, Reason::Conflict);
    assert_eq!(lost.winner.map(|w| w.pid), Some(winner.clone()));
    assert!(
        eventually(LIMIT, || regs
            .iter()
            .all(|r| r.lookup("leader").map(|e| e.pid) == Some(winner.clone())))
        .await
        .is_some()
    );
    drop((ra, rb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_survives_a_metadata_update() {
    let net = MemNetwork::new(5);
    let regs = cluster(&net, 2, Resolver::keep_oldest()).await;
    let (pid, _inbox) = regs[0].spawn_mailbox().expect("running");
    let reg = regs[0]
        .register("cfg", &pid, "v1")
        .await
        .expect("registers");
    regs[0]
        .update_meta(&reg.entry().key, &pid, "v2")
        .await
        .expect("updates");
    assert!(
        eventually(LIMIT, || regs[1]
            .lookup("cfg")
            .is_some_and(|e| &e.meta[..] == b"v2"))
        .await
        .is_some()
    );
    drop(reg);
    assert!(
        eventually(LIMIT, || regs.iter().all(|r| r.lookup("cfg").is_none()))
            .await
            .is_some(),
        "dropping the guard unregisters even after the entry's metadata changed"
    );
}
