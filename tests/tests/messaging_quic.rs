//! Messaging over QUIC on loopback: call/reply (including a callee whose node is killed
//! mid-call), monitors (node kill, graceful leave, mailbox drop) and typed names. Every wait is
//! on a condition or a future, with a deadline; the printed durations are measurements, not
//! pass/fail thresholds.

use std::time::{Duration, Instant};

use pidmesh::{CallError, Config, DownReason, Resolver, TypedName};
use pidmesh_tests::{Cluster, Kind};
use serde::{Deserialize, Serialize};

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_call_and_callee_node_killed_mid_call() {
    let mut c = Cluster::start(Kind::Quic, 3, Resolver::keep_oldest(), Config::local())
        .await
        .expect("cluster forms");
    let (server, mut inbox) = c.node(0).spawn_mailbox().expect("running");
    let echo = tokio::spawn(async move {
        while let Some(m) = inbox.recv().await {
            if &m.body[..] == b"silent" {
                continue;
            }
            let mut r = b"re:".to_vec();
            r.extend_from_slice(&m.body);
            let _ = m.reply(r);
        }
    });
    let (me, _my_inbox) = c.node(1).spawn_mailbox().expect("running");
    for i in 0..100u32 {
        let r = c
            .node(1)
            .call_from(&me, &server, i.to_be_bytes().to_vec(), LIMIT)
            .await
            .expect("reply");
        assert_eq!(&r[3..], &i.to_be_bytes());
    }
    assert_eq!(
        c.node(1)
            .call(&server, "silent", Duration::from_millis(100))
            .await,
        Err(CallError::Timeout)
    );

    // The callee's node dies while a call waits on it.
    let (victim, mut victim_inbox) = c.node(2).spawn_mailbox().expect("running");
    let caller = c.node(1).clone();
    let target = victim.clone();
    let call =
        tokio::spawn(async move { caller.call(&target, "q", Duration::from_secs(60)).await });
    let req = tokio::time::timeout(LIMIT, victim_inbox.recv())
        .await
        .expect("request arrived");
    assert!(req.is_some_and(|m| m.is_request()));
    let killed = Instant::now();
    c.kill(2).await;
    let result = tokio::time::timeout(LIMIT, call)
        .await
        .expect("failed before the 60 s timeout")
        .expect("task");
    println!(
        "QUIC: call failed {:?} after its callee's node was killed",
        killed.elapsed()
    );
    assert_eq!(result, Err(CallError::NodeDown(victim)));
    echo.abort();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_monitors_mailbox_drop_kill_and_leave() {
    let mut c = Cluster::start(Kind::Quic, 4, Resolver::keep_oldest(), Config::local())
        .await
        .expect("cluster forms");
    let watcher = c.node(0).clone();

    // Mailbox drop on another node.
    let (p, inbox) = c.node(1).spawn_mailbox().expect("running");
    let mon = watcher.monitor(&p);
    let dropped = Instant::now();
    drop(inbox);
    assert_eq!(
        tokio::time::timeout(LIMIT, mon).await,
        Ok(DownReason::Exited)
    );
    println!(
        "QUIC: monitor fired {:?} after a remote mailbox drop",
        dropped.elapsed()
    );

    // Kill (crash) of the node.
    let (k, _keep_k) = c.node(2).spawn_mailbox().expect("running");
    let mon = watcher.monitor(&k);
    let killed = Instant::now();
    c.kill(2).await;
    assert_eq!(
        tokio::time::timeout(LIMIT, mon).await,
        Ok(DownReason::NodeDown)
    );
    println!(
        "QUIC: monitor fired {:?} after the node was killed",
        killed.elapsed()
    );

    // Graceful leave.
    let (l, _keep_l) = c.node(3).spawn_mailbox().expect("running");
    let mon = watcher.monitor(&l);
    let left = Instant::now();
    let leaver = c.node(3).clone();
    let shutdown = tokio::spawn(async move { leaver.shutdown().await });
    assert_eq!(
        tokio::time::timeout(LIMIT, mon).await,
        Ok(DownReason::NodeLeft)
    );
    println!(
        "QUIC: monitor fired {:?} after a graceful leave began",
        left.elapsed()
    );
    shutdown.await.expect("shutdown");
    c.shutdown().await;
}

#[derive(Debug, Serialize, Deserialize)]
enum Chat {
    Say { from: String, text: String },
    History,
}

const ROOM: TypedName<Chat, Vec<String>> = TypedName::new("room/lobby");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_typed_names() {
    let c = Cluster::start(Kind::Quic, 2, Resolver::keep_oldest(), Config::local())
        .await
        .expect("cluster forms");
    let (pid, mut inbox) = c
        .node(0)
        .spawn_typed::<Chat, Vec<String>>()
        .expect("running");
    let _reg = c
        .node(0)
        .register_typed(&ROOM, &pid, "")
        .await
        .expect("registers");
    tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(Ok(m)) = inbox.recv().await {
            match &m.msg {
                Chat::Say { from, text } => lines.push(format!("{from}: {text}")),
                Chat::History => {
                    let _ = m.reply(&lines);
                }
            }
        }
    });
    let room = c
        .node(1)
        .lookup_typed_timeout(&ROOM, LIMIT)
        .await
        .expect("visible");
    room.send_wait(&Chat::Say {
        from: "ann".into(),
        text: "hi".into(),
    })
    .await
    .expect("delivered");
    room.send(&Chat::Say {
        from: "bob".into(),
        text: "hello".into(),
    })
    .expect("sent");
    let history = room.call(&Chat::History, LIMIT).await.expect("reply");
    assert_eq!(
        history,
        vec!["ann: hi".to_string(), "bob: hello".to_string()]
    );
    c.shutdown().await;
}
