//! App 1: a service directory with request/reply over loopback QUIC.
//!
//! A worker registers a typed name; clients on the other nodes find it by name and call it
//! with timeouts; a watcher monitors it. The worker exits: the watcher is told, callers get
//! `NoSuchProcess`, the name goes away everywhere, and a new worker on another node takes
//! it over. Then the new worker's node leaves gracefully and a third worker's node crashes,
//! with the errors and monitor reasons the guide's tables give.

use std::time::{Duration, Instant};

use pidmesh::Event;
use pidmesh::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::{STEP, quic_cluster, until, within};

/// Requests the echo service understands.
#[derive(Debug, Serialize, Deserialize)]
enum Req {
    /// Answer with the text, the worker's tag and who asked.
    Echo(String),
    /// Never answered (to see timeouts and failures while a call waits).
    Ignore,
}

/// The service's answers.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Resp {
    text: String,
    worker: String,
    asked_by: Option<Pid>,
}

const SVC: TypedName<Req, Resp> = TypedName::new("svc/echo");

/// A running worker: its pid, its registration and a way to make it exit.
struct Worker {
    pid: TypedPid<Req, Resp>,
    reg: Registration,
    stop: oneshot::Sender<()>,
    task: JoinHandle<u64>,
}

/// Spawns a worker process on `registry` under `SVC`; the task returns how many
/// requests it answered when told to stop (its mailbox is dropped then: the process exits).
async fn start_worker(registry: &Registry, tag: &str) -> Worker {
    let (pid, mut inbox) = registry.spawn_typed::<Req, Resp>().expect("spawn");
    let reg = registry
        .register_typed(&SVC, &pid, tag.to_owned())
        .await
        .expect("register");
    assert_eq!(
        reg.entry().pid,
        *pid.pid(),
        "the guard holds the worker's pid"
    );
    let (stop, mut stopped) = oneshot::channel();
    let tag = tag.to_owned();
    let task = tokio::spawn(async move {
        let mut answered = 0;
        loop {
            tokio::select! {
                _ = &mut stopped => return answered,
                m = inbox.recv() => match m {
                    Some(Ok(m)) => {
                        if let Req::Echo(text) = &m.msg {
                            let r = Resp { text: text.clone(), worker: tag.clone(), asked_by: m.sender().cloned() };
                            m.reply(&r).expect("reply");
                            answered += 1;
                        }
                    }
                    Some(Err(bad)) => panic!("undecodable request: {}", bad.error),
                    None => return answered,
                },
            }
        }
    });
    Worker {
        pid,
        reg,
        stop,
        task,
    }
}

/// Waits on `sub` for the `Unregistered` event of `pid` under `SVC`'s name.
async fn unregistered(sub: &mut Subscription, pid: &Pid) -> Reason {
    within(STEP, "Unregistered event", async {
        loop {
            match sub.recv().await.expect("node running") {
                Event::Unregistered { entry, reason } if entry.pid == *pid => {
                    assert_eq!(entry.key.local_name(), SVC.name());
                    return reason;
                }
                _ => {}
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_directory_over_quic() {
    let t0 = Instant::now();
    let nodes = quic_cluster("dir", 3).await;
    let (n0, n1, n2) = (nodes[0].clone(), nodes[1].clone(), nodes[2].clone());
    let call_limit = Duration::from_secs(2);

    // Subscribers on the client nodes, before anything changes.
    let mut ev1 = n1.subscribe_prefix("svc/");
    let mut ev2 = n2.subscribe_prefix("svc/");

    // 1. A worker on node 0; clients on nodes 1 and 2 find it by name and call it.
    let w1 = start_worker(&n0, "w1").await;
    for client in [&n1, &n2] {
        let h = within(
            STEP,
            "lookup on a client node",
            client.lookup_typed_timeout(&SVC, STEP),
        )
        .await
        .expect("the name reaches every node");
        assert_eq!(h.pid(), &w1.pid);
        let r = h
            .call(&Req::Echo("ping".into()), call_limit)
            .await
            .expect("call");
        assert_eq!(
            r,
            Resp {
                text: "ping".into(),
                worker: "w1".into(),
                asked_by: None
            }
        );
        // From a named process: the worker sees who asked.
        let (me, _inbox) = client.spawn_mailbox().expect("spawn");
        let r = h
            .call_from(&me, &Req::Echo("who".into()), call_limit)
            .await
            .expect("call_from");
        assert_eq!(
            r.asked_by,
            Some(me.clone()),
            "the callee sees the calling process"
        );
        assert_eq!(r.worker, "w1");
    }

    // 2. A request the worker never answers times out, after (not before) the limit.
    let h = n1.lookup_typed(&SVC).expect("visible");
    let started = Instant::now();
    let err = h
        .call(&Req::Ignore, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err, CallError::Timeout);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // 3. A watcher on node 2 monitors the worker; nothing has happened to it yet.
    let mut watch = n2.monitor(w1.pid.pid());
    assert_eq!(watch.try_reason(), None);

    // 4. The worker exits. Its guard reports it, the watcher is told `Exited`, and every
    //    node removes the name (remote nodes report the removal as `Normal`).
    //    A call waiting in the worker's mailbox when it exits fails with `NoSuchProcess`
    //    when the exit is announced, not at its timeout.
    let h_wait = n2.lookup_typed(&SVC).expect("visible");
    let pending = tokio::spawn(async move {
        let started = Instant::now();
        (
            h_wait.call(&Req::Ignore, Duration::from_secs(20)).await,
            started.elapsed(),
        )
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let Worker {
        pid: w1_pid,
        reg: mut w1_reg,
        stop,
        task,
    } = w1;
    stop.send(()).expect("worker running");
    let (r, waited) = within(STEP, "pending call", pending).await.expect("task");
    println!("call pending at the callee's exit: failed after {waited:?}");
    assert_eq!(
        r.unwrap_err(),
        CallError::NoSuchProcess(w1_pid.pid().clone())
    );
    assert!(
        waited < Duration::from_secs(5),
        "failed at the exit, not at the timeout"
    );
    let answered = within(STEP, "worker exit", task)
        .await
        .expect("worker task");
    assert_eq!(answered, 4, "two calls from each client node");
    let lost = within(STEP, "guard told", w1_reg.lost())
        .await
        .expect("a loss, not a stop");
    assert_eq!(lost.reason, Reason::ProcessExited);
    assert!(w1_reg.is_lost());
    assert_eq!(
        within(STEP, "monitor fires", &mut watch).await,
        DownReason::Exited
    );
    assert_eq!(unregistered(&mut ev1, w1_pid.pid()).await, Reason::Normal);
    assert_eq!(unregistered(&mut ev2, w1_pid.pid()).await, Reason::Normal);
    assert!(n1.lookup(SVC.name()).is_none() && n2.lookup(SVC.name()).is_none());
    assert!(n0.lookup(SVC.name()).is_none());
    // A caller still holding the old handle gets the documented error at once.
    let started = Instant::now();
    assert_eq!(
        h.call(&Req::Echo("late".into()), Duration::from_secs(10))
            .await
            .unwrap_err(),
        CallError::NoSuchProcess(w1_pid.pid().clone())
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "rejected, not timed out"
    );
    // A monitor started now fires at once with `NoProc`.
    assert_eq!(
        within(STEP, "late monitor", n1.monitor(w1_pid.pid())).await,
        DownReason::NoProc
    );

    // 5. The same with caller and callee on one node: a worker on node 1 takes a request,
    //    does not answer it, and exits; the local caller gets `NoSuchProcess` at once.
    let wl = start_worker(&n1, "local").await;
    let hl = n1.lookup_typed(&SVC).expect("registered here");
    assert_eq!(hl.pid(), &wl.pid);
    let pending = tokio::spawn(async move { hl.call(&Req::Ignore, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let wl_pid = wl.pid.pid().clone();
    wl.stop.send(()).expect("worker running");
    let r = within(STEP, "local pending call", pending)
        .await
        .expect("task");
    assert_eq!(r.unwrap_err(), CallError::NoSuchProcess(wl_pid.clone()));
    drop(wl.reg);
    assert_eq!(unregistered(&mut ev2, &wl_pid).await, Reason::Normal);
    until(STEP, "the local worker's removal reaches node 0", || {
        n0.lookup(SVC.name()).is_none()
    })
    .await;

    // 6. A new worker on node 1 takes the name over; the clients find it.
    let w2 = start_worker(&n1, "w2").await;
    let h2 = within(STEP, "new holder", n2.lookup_typed_timeout(&SVC, STEP))
        .await
        .expect("w2");
    assert_eq!(h2.pid(), &w2.pid);
    let r = h2
        .call(&Req::Echo("again".into()), call_limit)
        .await
        .expect("call w2");
    assert_eq!(r.worker, "w2");
    let h2_from_0 = within(STEP, "w2 on node 0", n0.lookup_typed_timeout(&SVC, STEP)).await;
    assert_eq!(h2_from_0.expect("w2").pid(), &w2.pid);

    // 7. Node 1 leaves gracefully: the watcher is told `NodeLeft`, the name goes at once,
    //    and a call to the old pid fails with `NodeDown` without waiting for its timeout.
    let watch2 = n2.monitor(w2.pid.pid());
    let leave = Instant::now();
    n1.shutdown().await;
    assert_eq!(
        within(STEP, "monitor on leave", watch2).await,
        DownReason::NodeLeft
    );
    until(STEP, "name gone after leave", || {
        n2.lookup(SVC.name()).is_none()
    })
    .await;
    let started = Instant::now();
    assert_eq!(
        h2.call(&Req::Echo("gone".into()), Duration::from_secs(10))
            .await
            .unwrap_err(),
        CallError::NodeDown(w2.pid.pid().clone())
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    println!("leave → name gone on node 2: {:?}", leave.elapsed());
    drop(w2);

    // 8. A worker on node 0, and node 0 crashes while a call to it waits: the call fails
    //    with `NodeDown` once failure detection declares the node down (about a second
    //    with `Config::local`), and the watcher is told `NodeDown`.
    let w3 = start_worker(&n0, "w3").await;
    let h3 = within(STEP, "w3 visible", n2.lookup_typed_timeout(&SVC, STEP))
        .await
        .expect("w3");
    assert_eq!(h3.pid(), &w3.pid);
    let watch3 = n2.monitor(w3.pid.pid());
    let pending = tokio::spawn(async move { h3.call(&Req::Ignore, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let crash = Instant::now();
    n0.abort();
    assert_eq!(
        within(STEP, "monitor on crash", watch3).await,
        DownReason::NodeDown
    );
    let err = within(STEP, "pending call", pending).await.expect("task");
    assert_eq!(err.unwrap_err(), CallError::NodeDown(w3.pid.pid().clone()));
    let detected = crash.elapsed();
    assert!(
        detected < Duration::from_secs(10),
        "failed at detection, not at the timeout"
    );
    until(STEP, "crashed node's name gone", || {
        n2.lookup(SVC.name()).is_none()
    })
    .await;
    println!("crash → pending call failed with NodeDown: {detected:?}");
    drop(w3);

    n2.shutdown().await;
    println!("service_directory_over_quic: {:?}", t0.elapsed());
}
