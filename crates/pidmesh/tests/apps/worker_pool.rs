//! App 2: a worker pool over groups and scopes, on loopback TCP.
//!
//! Each run of the pool lives in its own scope (`run-1`, `run-2`): workers on every node
//! join the scope's group `workers`, and a dispatcher fans jobs out to the members it sees,
//! several calls in flight at once. Mid-run one worker leaves the group and exits with jobs
//! still queued, another exits without leaving, and two new workers join. A job whose call
//! fails with one of the documented errors is sent to another member. At the end every job
//! was handled exactly once, by a member of its own run, addressed to that member; then the
//! run ends (its guards and processes dropped) and its scope is empty on every node while
//! the other run's scope and the default scope keep their members.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pidmesh::prelude::*;
use pidmesh::{Event, Scope};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

use crate::support::{STEP, tcp_cluster, until, within};

const GROUP: &str = "workers";
const JOBS: usize = 90;

/// One handled job, as a worker saw it.
#[derive(Debug, Clone)]
struct Handled {
    job: usize,
    worker: String,
}

/// What the workers of every run record.
#[derive(Default)]
struct Log {
    handled: Mutex<Vec<Handled>>,
    /// Jobs that reached a worker they were not meant for (wrong scope or wrong pid).
    misdelivered: Mutex<Vec<String>>,
}

/// A worker process: it answers `"<scope>:<job>:<pid local>"` with its name after 5 ms.
struct Worker {
    name: String,
    pid: Pid,
    /// `true`: leave the group, then exit; `false`: just exit (drop the mailbox).
    stop: oneshot::Sender<bool>,
    task: JoinHandle<()>,
}

async fn start_worker(scope: &Scope, name: &str, log: Arc<Log>) -> Worker {
    let registry = scope.registry().clone();
    let (pid, mut inbox) = registry.spawn_mailbox().expect("spawn");
    scope
        .join(GROUP, &pid, name.to_owned())
        .await
        .expect("join");
    let (stop, mut stopped) = oneshot::channel::<bool>();
    let (scope, me, name2) = (scope.clone(), pid.clone(), name.to_owned());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                leave = &mut stopped => {
                    if leave.unwrap_or(false) {
                        scope.leave(GROUP, &me).await.expect("leave");
                    }
                    return; // the mailbox drops here, with whatever is still queued in it
                }
                m = inbox.recv() => {
                    let Some(m) = m else { return };
                    let text = String::from_utf8_lossy(&m.body).into_owned();
                    let mut parts = text.split(':');
                    let (s, job, local) = (parts.next(), parts.next(), parts.next());
                    if s != Some(scope.name()) || local != Some(me.local.to_string().as_str()) {
                        log.misdelivered.lock().unwrap().push(format!("{name2} got {text}"));
                        continue;
                    }
                    let job: usize = job.and_then(|j| j.parse().ok()).expect("job number");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    log.handled.lock().unwrap().push(Handled { job, worker: name2.clone() });
                    m.reply(name2.clone()).expect("reply");
                }
            }
        }
    });
    Worker {
        name: name.to_owned(),
        pid,
        stop,
        task,
    }
}

impl Worker {
    async fn stop(self, leave_first: bool) -> (String, Pid) {
        self.stop.send(leave_first).expect("worker running");
        within(STEP, "worker exit", self.task)
            .await
            .expect("worker task");
        (self.name, self.pid)
    }
}

/// The outcome of one job: who answered, and the errors of the attempts before.
#[derive(Debug, Default)]
struct Outcome {
    answered_by: Option<String>,
    errors: Vec<CallError>,
}

/// Dispatches `JOBS` jobs from `me` (on the scope's node) to the scope's group, four calls
/// in flight, each to the next member in the order `members_of` lists them.
fn dispatch(scope: Scope, me: Pid, done: Arc<AtomicUsize>) -> JoinHandle<BTreeMap<usize, Outcome>> {
    tokio::spawn(async move {
        let in_flight = Arc::new(Semaphore::new(4));
        let mut calls = Vec::new();
        for job in 0..JOBS {
            let permit = in_flight.clone().acquire_owned().await.expect("semaphore");
            let (scope, me, done) = (scope.clone(), me.clone(), done.clone());
            calls.push(tokio::spawn(async move {
                let mut outcome = Outcome::default();
                for attempt in 0..8 {
                    let members = scope.members_of(GROUP);
                    assert!(!members.is_empty(), "the pool never runs empty");
                    let to = &members[(job + attempt) % members.len()].pid;
                    let body = format!("{}:{job}:{}", scope.name(), to.local);
                    match scope
                        .registry()
                        .call_from(&me, to, body, Duration::from_secs(2))
                        .await
                    {
                        Ok(reply) => {
                            outcome.answered_by = Some(String::from_utf8_lossy(&reply).into());
                            break;
                        }
                        Err(e) => {
                            // The errors the guide documents for a callee that went away
                            // (or was busy); anything else is a bug.
                            assert!(
                                matches!(
                                    e,
                                    CallError::NoSuchProcess(_)
                                        | CallError::NodeDown(_)
                                        | CallError::Timeout
                                        | CallError::Full
                                ),
                                "job {job}: unexpected {e:?}"
                            );
                            outcome.errors.push(e);
                        }
                    }
                }
                drop(permit);
                done.fetch_add(1, Ordering::SeqCst);
                (job, outcome)
            }));
        }
        let mut outcomes = BTreeMap::new();
        for c in calls {
            let (job, o) = c.await.expect("job task");
            outcomes.insert(job, o);
        }
        outcomes
    })
}

fn handled_by(log: &Log, worker: &str) -> usize {
    log.handled
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.worker == worker)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_pool_over_tcp() {
    let nodes = tcp_cluster("pool", 3).await;
    let run1: Vec<Scope> = nodes
        .iter()
        .map(|r| r.scope("run-1").expect("scope"))
        .collect();
    let run2: Vec<Scope> = nodes
        .iter()
        .map(|r| r.scope("run-2").expect("scope"))
        .collect();
    let (log1, log2) = (Arc::new(Log::default()), Arc::new(Log::default()));

    // A default-scope member of a group of the same name, and run 2's pool: neither may be
    // reached by run 1's dispatcher, nor disturbed when run 1 ends.
    let (plain_pid, _plain_inbox) = nodes[2].spawn_mailbox().expect("spawn");
    nodes[2]
        .join(GROUP, &plain_pid, Bytes::new())
        .await
        .expect("join default scope");
    let mut others = Vec::new();
    for (i, s) in run2.iter().enumerate() {
        others.push(start_worker(s, &format!("r2-w{i}"), log2.clone()).await);
    }
    let mut run2_events = run2[0].subscribe();

    // Run 1: two workers per node, a dispatcher on node 0 registered in the scope.
    let mut workers: BTreeMap<String, Worker> = BTreeMap::new();
    for (i, s) in run1.iter().enumerate() {
        for k in 0..2 {
            let name = format!("r1-n{i}-w{k}");
            workers.insert(name.clone(), start_worker(s, &name, log1.clone()).await);
        }
    }
    for s in run1.iter().chain(&run2) {
        let want = if s.name() == "run-1" { 6 } else { 3 };
        let seen = s.wait_for_group_members(GROUP, want, STEP).await;
        assert_eq!(seen, want, "pool visible everywhere");
    }
    assert_eq!(
        nodes[0].members_of(GROUP).len(),
        1,
        "the default scope has its own group"
    );
    let (me, _me_inbox) = nodes[0].spawn_mailbox().expect("spawn");
    let dispatcher_reg = run1[0]
        .register("dispatcher", &me, Bytes::new())
        .await
        .expect("register");
    until(STEP, "dispatcher visible", || {
        run1[2].lookup("dispatcher").is_some()
    })
    .await;
    assert!(run2[2].lookup("dispatcher").is_none() && nodes[2].lookup("dispatcher").is_none());

    let done = Arc::new(AtomicUsize::new(0));
    let dispatcher = dispatch(run1[0].clone(), me.clone(), done.clone());

    // Mid-run: a worker on node 1 leaves and exits with jobs queued; one on node 2 exits
    // without leaving (its membership goes with its mailbox).
    until(STEP * 2, "a third of the jobs", || {
        done.load(Ordering::SeqCst) >= JOBS / 3
    })
    .await;
    let mut departed = Vec::new();
    departed.push(workers.remove("r1-n1-w0").expect("worker").stop(true).await);
    departed.push(
        workers
            .remove("r1-n2-w1")
            .expect("worker")
            .stop(false)
            .await,
    );
    for s in &run1 {
        until(STEP, "departures visible", || {
            let m = s.members_of(GROUP);
            departed
                .iter()
                .all(|(_, pid)| m.iter().all(|e| e.pid != *pid))
        })
        .await;
    }
    // A departed worker's pid is gone: a call from its own node is refused at once, one
    // from another node is rejected by its node.
    for (_, pid) in &departed {
        let r = nodes[pid_node(&nodes, pid)].call(pid, "x", STEP).await;
        assert_eq!(r.unwrap_err(), CallError::NoSuchProcess(pid.clone()));
        let r = nodes[0].call(pid, "x", STEP).await;
        assert_eq!(r.unwrap_err(), CallError::NoSuchProcess(pid.clone()));
    }
    let at_departure = done.load(Ordering::SeqCst);

    // Two new workers join, on nodes 1 and 2.
    for (i, name) in [(1, "r1-n1-new"), (2, "r1-n2-new")] {
        workers.insert(
            name.into(),
            start_worker(&run1[i], name, log1.clone()).await,
        );
    }
    let seen = run1[0].wait_for_group_members(GROUP, 6, STEP).await;
    assert_eq!(seen, 6, "new workers visible to the dispatcher");
    let at_join = done.load(Ordering::SeqCst);

    let outcomes = within(STEP * 4, "all jobs", dispatcher)
        .await
        .expect("dispatcher");
    println!("jobs done at departure: {at_departure}, at join: {at_join}");

    // Every job answered exactly once, by a worker of run 1; handled exactly once.
    assert_eq!(outcomes.len(), JOBS);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for (job, o) in &outcomes {
        let by = o
            .answered_by
            .as_deref()
            .unwrap_or_else(|| panic!("job {job} unanswered: {:?}", o.errors));
        assert!(by.starts_with("r1-"), "job {job} answered by {by}");
        for e in &o.errors {
            *errors
                .entry(
                    format!("{e:?}")
                        .split('(')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                )
                .or_default() += 1;
        }
    }
    println!("failed attempts (then sent elsewhere): {errors:?}");
    let handled = log1.handled.lock().unwrap().clone();
    let jobs: BTreeSet<usize> = handled.iter().map(|h| h.job).collect();
    assert_eq!(handled.len(), JOBS, "no job handled twice: {handled:?}");
    assert_eq!(jobs.len(), JOBS);
    for h in &handled {
        assert_eq!(
            outcomes[&h.job].answered_by.as_deref(),
            Some(h.worker.as_str())
        );
    }
    assert!(
        log1.misdelivered.lock().unwrap().is_empty(),
        "{:?}",
        log1.misdelivered
    );
    assert!(
        log2.handled.lock().unwrap().is_empty(),
        "run 2 got run 1's jobs"
    );
    for (name, _) in &departed {
        assert!(
            handled_by(&log1, name) > 0,
            "{name} worked before it departed"
        );
    }
    for name in ["r1-n1-new", "r1-n2-new"] {
        assert!(
            handled_by(&log1, name) > 0,
            "{name} got work after it joined"
        );
    }

    // The run ends: its workers and the dispatcher go. Run 1's scope empties on every node,
    // run 2's scope and the default scope keep their members, and run 2's subscriber heard
    // nothing of run 1.
    for (_, w) in std::mem::take(&mut workers) {
        w.stop(false).await;
    }
    drop(dispatcher_reg);
    for (s, r) in run1.iter().zip(&nodes) {
        until(STEP, "run 1 empty", || {
            s.members_of(GROUP).is_empty() && s.lookup("dispatcher").is_none()
        })
        .await;
        assert!(
            s.list_prefix("").is_empty(),
            "{} still lists run 1 entries",
            r.node_id().name
        );
    }
    for (s, r) in run2.iter().zip(&nodes) {
        assert_eq!(s.members_of(GROUP).len(), 3);
        assert_eq!(r.members_of(GROUP).len(), 1);
    }
    while let Ok(Some(ev)) =
        tokio::time::timeout(Duration::from_millis(50), run2_events.recv()).await
    {
        let key = match &ev {
            Event::Registered(e) | Event::Unregistered { entry: e, .. } => Some(&e.key),
            _ => None,
        };
        if let Some(k) = key {
            assert_eq!(k.scope(), Some("run-2"), "run 2's subscriber saw {ev:?}");
        }
    }
    for w in others {
        w.stop(false).await;
    }
    for r in &nodes {
        r.shutdown().await;
    }
}

/// Which of `nodes` hosts `pid`.
fn pid_node(nodes: &[Registry], pid: &Pid) -> usize {
    nodes
        .iter()
        .position(|r| r.node_id() == &pid.node)
        .expect("a node of the cluster")
}
