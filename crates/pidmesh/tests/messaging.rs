//! Messaging over the in-memory transport: sender identity, call/reply, awaiting sends,
//! monitors, typed names, lagging subscribers and the registry queries.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{LIMIT, cluster, eventually};
use pidmesh::{
    CallError, DownReason, Event, Mailbox, Registry, ReplyError, Resolver, SendError, TypedName,
};
use pidmesh_transport::MemNetwork;
use serde::{Deserialize, Serialize};

const T: Duration = Duration::from_secs(5);

/// Answers every request with "re:" + body, and with the sender's pid if there is one.
fn echo_server(mut inbox: Mailbox) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(m) = inbox.recv().await {
            let sender = m
                .sender
                .as_ref()
                .map_or_else(|| "none".to_string(), |p| format!("{p:?}"));
            if &m.body[..] == b"silent" {
                continue;
            }
            let _ = m.reply(format!("re:{}:{sender}", String::from_utf8_lossy(&m.body)));
        }
    })
}

async fn net_cluster(n: usize) -> (MemNetwork, Vec<Registry>) {
    let net = MemNetwork::new(11);
    println!("mem network seed = {}", net.seed());
    let regs = cluster(&net, n, Resolver::keep_oldest()).await;
    (net, regs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_and_sender_identity_local_and_remote() {
    let (_net, regs) = net_cluster(3).await;
    let (server, inbox) = regs[0].spawn_mailbox().expect("running");
    let _task = echo_server(inbox);
    let (me, mut my_inbox) = regs[1].spawn_mailbox().expect("running");

    // Bare registry: no sender.
    let r = regs[1].call(&server, "a", T).await.expect("reply");
    assert_eq!(&r[..], b"re:a:none");
    // On behalf of a process: the callee sees it.
    let r = regs[1]
        .call_from(&me, &server, "b", T)
        .await
        .expect("reply");
    assert_eq!(r, Bytes::from(format!("re:b:{me:?}")));
    // Local call.
    let (local_me, _keep) = regs[0].spawn_mailbox().expect("running");
    let r = regs[0]
        .call_from(&local_me, &server, "c", T)
        .await
        .expect("reply");
    assert_eq!(r, Bytes::from(format!("re:c:{local_me:?}")));

    // Casts carry the sender too.
    let (sink, mut sink_inbox) = regs[2].spawn_mailbox().expect("running");
    regs[1].send_from(&me, &sink, "x").expect("sent");
    regs[1].send(&sink, "y").await.expect("sent");
    let m = tokio::time::timeout(T, sink_inbox.recv())
        .await
        .expect("in time")
        .expect("open");
    assert_eq!(m.sender.as_ref(), Some(&me));
    assert_eq!(m.from, *regs[1].node_id());
    assert!(!m.is_request());
    assert_eq!(m.reply("no"), Err(ReplyError::NotARequest));
    let m = tokio::time::timeout(T, sink_inbox.recv())
        .await
        .expect("in time")
        .expect("open");
    assert_eq!(m.sender, None);

    // A process of another node cannot be named as the sender.
    assert!(matches!(
        regs[2].send_from(&me, &sink, "z"),
        Err(SendError::NotLocal(_))
    ));
    assert!(matches!(
        regs[2].call_from(&me, &server, "z", T).await,
        Err(CallError::NotLocal(_))
    ));
    assert!(my_inbox.try_recv().is_none());
    assert_eq!(regs[1].mail_stats().pending_calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_errors_are_distinct() {
    let (_net, regs) = net_cluster(2).await;

    // No such process, locally and remotely (the remote node rejects at once).
    let (dead, inbox) = regs[0].spawn_mailbox().expect("running");
    drop(inbox);
    assert_eq!(
        regs[0].call(&dead, "q", T).await,
        Err(CallError::NoSuchProcess(dead.clone()))
    );
    let started = Instant::now();
    assert_eq!(
        regs[1].call(&dead, "q", T).await,
        Err(CallError::NoSuchProcess(dead.clone()))
    );
    assert!(started.elapsed() < T, "rejected, not timed out");

    // Request too large.
    let (server, mut inbox) = regs[0].spawn_mailbox().expect("running");
    let big = vec![0u8; pidmesh_wire::MAX_MAIL_BODY_LEN + 1];
    assert!(matches!(
        regs[1].call(&server, big.clone(), T).await,
        Err(CallError::TooLarge(_))
    ));

    // Reply too large, locally and remotely: the caller learns at once.
    let server_task = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        while let Some(m) = inbox.recv().await {
            match &m.body[..] {
                b"big" => outcomes.push(m.reply(vec![0u8; pidmesh_wire::MAX_MAIL_BODY_LEN + 1])),
                b"twice" => {
                    outcomes.push(m.reply("one"));
                    outcomes.push(m.reply("two"));
                }
                b"late" => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    outcomes.push(m.reply("late"));
                }
                b"stop" => break,
                _ => {}
            }
        }
        outcomes
    });
    for r in [&regs[0], &regs[1]] {
        let started = Instant::now();
        assert_eq!(
            r.call(&server, "big", T).await,
            Err(CallError::ReplyTooLarge)
        );
        assert!(started.elapsed() < T);
    }
    // Only the first reply counts.
    assert_eq!(
        &regs[1].call(&server, "twice", T).await.expect("reply")[..],
        b"one"
    );

    // Timeout, then the late reply is dropped and counted, never given to the next call.
    assert_eq!(
        regs[1]
            .call(&server, "late", Duration::from_millis(50))
            .await,
        Err(CallError::Timeout)
    );
    assert_eq!(
        &regs[1].call(&server, "twice", T).await.expect("reply")[..],
        b"one"
    );
    assert!(
        eventually(LIMIT, || regs[1].mail_stats().late_replies == 1)
            .await
            .is_some(),
        "late reply counted: {:?}",
        regs[1].mail_stats()
    );
    // Silence: a plain timeout.
    assert_eq!(
        regs[1]
            .call(&server, "ignored", Duration::from_millis(50))
            .await,
        Err(CallError::Timeout)
    );
    regs[0].send(&server, "stop").await.expect("sent");
    let outcomes = server_task.await.expect("server ran");
    assert_eq!(
        outcomes,
        vec![
            Err(ReplyError::TooLarge(pidmesh_wire::MAX_MAIL_BODY_LEN + 1)),
            Err(ReplyError::TooLarge(pidmesh_wire::MAX_MAIL_BODY_LEN + 1)),
            Ok(()),
            Err(ReplyError::AlreadyReplied),
            Ok(()),
            Ok(()),
            Err(ReplyError::AlreadyReplied),
        ]
    );
    assert_eq!(regs[1].mail_stats().pending_calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_to_a_node_that_dies_fails_promptly() {
    let (_net, regs) = net_cluster(3).await;
    let (server, mut inbox) = regs[2].spawn_mailbox().expect("running");
    // The callee never answers; its node crashes mid-call.
    let long = Duration::from_secs(60);
    let caller = regs[0].clone();
    let target = server.clone();
    let call = tokio::spawn(async move {
        let started = Instant::now();
        (caller.call(&target, "q", long).await, started.elapsed())
    });
    let got = tokio::time::timeout(T, inbox.recv())
        .await
        .expect("request arrived");
    assert!(got.is_some_and(|m| m.is_request()));
    regs[2].abort();
    let (result, took) = call.await.expect("call task");
    println!("call failed {took:?} after the request (node aborted right after it arrived)");
    assert_eq!(result, Err(CallError::NodeDown(server.clone())));
    assert!(
        took < long / 2,
        "failed at failure detection, not at the timeout"
    );
    // Now the node is not a member: immediate.
    assert!(
        eventually(LIMIT, || regs[0].members().len() == 2)
            .await
            .is_some()
    );
    assert_eq!(
        regs[0].call(&server, "q", long).await,
        Err(CallError::NodeDown(server))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_fire_once_with_the_reason() {
    let (_net, regs) = net_cluster(4).await;

    // Local: exit, and noproc.
    let (p, inbox) = regs[0].spawn_mailbox().expect("running");
    let mon = regs[0].monitor(&p);
    assert_eq!(regs[0].mail_stats().monitors, 1);
    drop(inbox);
    assert_eq!(tokio::time::timeout(T, mon).await, Ok(DownReason::Exited));
    assert_eq!(regs[0].monitor(&p).await, DownReason::NoProc);

    // Remote exit, seen through the exit announcement; then noproc for the same pid.
    let (q, inbox) = regs[1].spawn_mailbox().expect("running");
    let mon = regs[0].monitor(&q);
    let mon2 = regs[2].monitor(&q);
    drop(inbox);
    assert_eq!(tokio::time::timeout(T, mon).await, Ok(DownReason::Exited));
    assert_eq!(tokio::time::timeout(T, mon2).await, Ok(DownReason::Exited));
    assert_eq!(regs[0].monitor(&q).await, DownReason::NoProc);

    // Demonitor on drop: nothing stays armed.
    let (r, _keep) = regs[1].spawn_mailbox().expect("running");
    let armed: Vec<_> = (0..10).map(|_| regs[0].monitor(&r)).collect();
    assert_eq!(regs[0].mail_stats().monitors, 10);
    drop(armed);
    assert_eq!(regs[0].mail_stats().monitors, 0);

    // Graceful leave: NodeLeft, before SWIM would notice.
    let (s, _keep_s) = regs[2].spawn_mailbox().expect("running");
    let mon = regs[0].monitor(&s);
    let started = Instant::now();
    regs[2].shutdown().await;
    assert_eq!(tokio::time::timeout(T, mon).await, Ok(DownReason::NodeLeft));
    println!(
        "graceful leave: monitor fired {:?} after shutdown began",
        started.elapsed()
    );

    // Crash: NodeDown at failure detection.
    let (u, _keep_u) = regs[3].spawn_mailbox().expect("running");
    let mon = regs[0].monitor(&u);
    let started = Instant::now();
    regs[3].abort();
    assert_eq!(
        tokio::time::timeout(LIMIT, mon).await,
        Ok(DownReason::NodeDown)
    );
    println!(
        "abort: monitor fired {:?} after the crash",
        started.elapsed()
    );
    // The node is gone now: immediate.
    assert_eq!(regs[0].monitor(&u).await, DownReason::NodeDown);

    // This node stops: its monitors resolve with Stopped.
    let (v, _keep_v) = regs[1].spawn_mailbox().expect("running");
    let mon = regs[0].monitor(&v);
    regs[0].abort();
    assert_eq!(tokio::time::timeout(T, mon).await, Ok(DownReason::Stopped));
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Counter {
    Add(u64),
    Get,
}

const COUNTER: TypedName<Counter, u64> = TypedName::new("counter");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_names_send_call_and_report_undecodable() {
    let (_net, regs) = net_cluster(2).await;
    let (pid, mut inbox) = regs[0]
        .spawn_typed_with_capacity::<Counter, u64>(16)
        .expect("running");
    let _reg = regs[0]
        .register_typed(&COUNTER, &pid, "")
        .await
        .expect("registers");
    let server = tokio::spawn(async move {
        let mut total = 0;
        let mut bad = 0;
        while let Some(m) = inbox.recv().await {
            match m {
                Ok(m) => match m.msg {
                    Counter::Add(n) => total += n,
                    Counter::Get => m.reply(&total).expect("replied"),
                },
                Err(u) => {
                    bad += 1;
                    assert!(!u.error.is_empty());
                    if bad == 2 {
                        break;
                    }
                }
            }
        }
        (total, bad)
    });
    let h = regs[1]
        .lookup_typed_timeout(&COUNTER, LIMIT)
        .await
        .expect("visible");
    assert_eq!(h.pid(), &pid);
    h.send(&Counter::Add(2)).expect("sent");
    h.send_wait(&Counter::Add(3)).await.expect("delivered");
    assert_eq!(h.call(&Counter::Get, T).await, Ok(5));
    // A peer with another idea of the type: reported to the receiver, counted, no panic.
    regs[1]
        .send(pid.pid(), vec![0xff, 0xff, 0xff])
        .await
        .expect("sent");
    let wrong: pidmesh::TypedHandle<u8, String> =
        regs[1].typed_handle(pidmesh::TypedPid::new_unchecked(pid.pid().clone()));
    wrong.send(&7).expect("sent");
    let (total, bad) = tokio::time::timeout(T, server)
        .await
        .expect("in time")
        .expect("ran");
    assert_eq!((total, bad), (5, 2));
    assert_eq!(regs[0].mail_stats().undecodable, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_send_waits_for_room_local_and_remote() {
    let (_net, regs) = net_cluster(2).await;
    let (pid, mut inbox) = regs[0].spawn_mailbox_with_capacity(2).expect("running");
    assert_eq!(inbox.room(), 2);
    regs[0].try_send(&pid, "1").expect("room");
    regs[0].try_send(&pid, "2").expect("room");
    assert_eq!(regs[0].try_send(&pid, "3"), Err(SendError::Full));
    // Local: waits until the receiver makes room.
    let r0 = regs[0].clone();
    let p = pid.clone();
    let waiting = tokio::spawn(async move { r0.send_wait(&p, "3").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "waits while the mailbox is full");
    assert_eq!(&inbox.recv().await.expect("open").body[..], b"1");
    waiting.await.expect("task").expect("delivered");
    assert_eq!(&inbox.recv().await.expect("open").body[..], b"2");
    assert_eq!(&inbox.recv().await.expect("open").body[..], b"3");

    // Remote: a fast sender into a 2-slot mailbox read slowly loses nothing, in order.
    let n = 40u32;
    let r1 = regs[1].clone();
    let p = pid.clone();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            r1.send_wait(&p, i.to_be_bytes().to_vec())
                .await
                .expect("delivered");
        }
    });
    for i in 0..n {
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let m = tokio::time::timeout(T, inbox.recv())
            .await
            .expect("in time")
            .expect("open");
        assert_eq!(&m.body[..], &i.to_be_bytes());
    }
    sender.await.expect("sender");
    assert_eq!(regs[0].mail_stats().dropped, 0);

    // Remote to a process that is gone.
    drop(inbox);
    assert_eq!(
        regs[1].send_wait(&pid, "x").await,
        Err(SendError::NoSuchProcess(pid))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_is_told_how_many_it_missed() {
    let net = MemNetwork::new(5);
    println!("mem network seed = {}", net.seed());
    let r = Registry::builder()
        .node_name("solo")
        .config(pidmesh::Config::local())
        .event_capacity(4)
        .transport(net.bind_named("solo"))
        .start()
        .await
        .expect("starts");
    let mut sub = r.subscribe();
    let (pid, _inbox) = r.spawn_mailbox().expect("running");
    for i in 0..10 {
        r.join(&format!("g{i}"), &pid, Vec::new())
            .await
            .expect("joins");
    }
    assert!(
        eventually(LIMIT, || r.member_count("g9") == 1)
            .await
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = tokio::time::timeout(T, sub.recv())
        .await
        .expect("in time")
        .expect("open");
    let Event::Lagged { missed } = first else {
        panic!("expected Lagged, got {first:?}");
    };
    assert_eq!(missed, 6, "10 events into a 4-slot buffer");
    let mut rest = 0;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(100), sub.recv()).await {
        assert!(matches!(e, Event::Registered(_)), "{e:?}");
        rest += 1;
    }
    assert_eq!(rest, 4);
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries() {
    let (_net, regs) = net_cluster(3).await;
    assert_eq!(regs[0].wait_for_members(3, T).await, 3);
    assert_eq!(
        regs[0].wait_for_members(4, Duration::from_millis(50)).await,
        3
    );
    let (a, inbox_a) = regs[0].spawn_mailbox().expect("running");
    let (b, _inbox_b) = regs[1].spawn_mailbox().expect("running");
    for g in ["room/1", "room/2"] {
        regs[0].join(g, &a, Vec::new()).await.expect("joins");
    }
    regs[1].join("room/1", &b, Vec::new()).await.expect("joins");
    let reg = regs[0].register("alice", &a, "").await.expect("registers");
    assert!(!reg.is_lost());
    assert_eq!(regs[2].wait_for_group_members("room/1", 2, LIMIT).await, 2);
    assert!(regs[2].lookup_timeout("alice", LIMIT).await.is_some());
    assert!(
        eventually(LIMIT, || regs[2].member_count("room/2") == 1)
            .await
            .is_some()
    );
    let r = &regs[2];
    assert_eq!(r.entry_count(), 4);
    assert_eq!(r.member_count("room/1"), 2);
    assert!(r.is_member("room/1", &b));
    assert!(!r.is_member("room/2", &b));
    assert_eq!(
        r.which_groups(&a),
        vec!["room/1".to_string(), "room/2".to_string()]
    );
    assert_eq!(r.which_names(&a), vec!["alice".to_string()]);
    assert_eq!(r.local_members_of("room/1"), Vec::new());
    assert_eq!(regs[1].local_members_of("room/1").len(), 1);
    assert_eq!(r.list_prefix_resolved("").len(), r.list_prefix("").len());
    drop(inbox_a);
    assert!(reg.is_lost(), "its process exited");
    assert!(
        eventually(LIMIT, || regs[2].entry_count() == 1)
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_error_type_and_serializable_events() {
    use pidmesh::prelude::*;
    let (_net, regs) = net_cluster(1).await;
    let r = &regs[0];
    // Every operation's error converts into pidmesh::Error with `?`.
    async fn ops(r: &Registry) -> Result<(), Error> {
        let (pid, _inbox) = r.spawn_mailbox()?;
        let _reg = r.register("svc", &pid, "").await?;
        r.join("g", &pid, Vec::new()).await?;
        r.register("svc", &pid, "").await?;
        Ok(())
    }
    let mut sub = r.subscribe();
    let err = ops(r).await.expect_err("second register fails");
    assert!(
        matches!(err, Error::Register(RegisterError::AlreadyRegistered(_))),
        "{err:?}"
    );
    let ev = tokio::time::timeout(T, sub.recv())
        .await
        .expect("in time")
        .expect("open");
    let bytes = postcard::to_stdvec(&ev).expect("events serialize");
    let back: Event = postcard::from_bytes(&bytes).expect("and deserialize");
    assert_eq!(back, ev);
    let Event::Registered(entry) = ev else {
        panic!("first event is the registration: {ev:?}");
    };
    let bytes = postcard::to_stdvec(&entry).expect("entries serialize");
    assert_eq!(
        postcard::from_bytes::<Entry>(&bytes).expect("decode"),
        entry
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_singleton_pid_ends_with_its_run() {
    let (_net, regs) = net_cluster(2).await;
    let s = regs[0]
        .singleton(
            "sched",
            pidmesh::SingletonPolicy::Available,
            |cx: pidmesh::SingletonContext| async move { cx.cancel.cancelled().await },
        )
        .await
        .expect("candidacy");
    assert!(eventually(LIMIT, || s.is_running()).await.is_some());
    let pid = s.pid().clone();
    let local = regs[0].monitor(&pid);
    assert!(
        regs[1].lookup_timeout("sched", LIMIT).await.is_some(),
        "visible remotely"
    );
    let remote = regs[1].monitor(&pid);
    s.withdraw().await;
    assert_eq!(tokio::time::timeout(T, local).await, Ok(DownReason::Exited));
    assert_eq!(
        tokio::time::timeout(T, remote).await,
        Ok(DownReason::Exited)
    );
}
