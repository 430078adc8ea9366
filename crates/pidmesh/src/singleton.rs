//! Cluster singletons: one running instance of a named service, elected through its unique name.
//!
//! [`Registry::singleton`] makes this node a candidate. The node's election (in
//! `pidmesh-proto`) claims the name when it is free and the [`SingletonPolicy`] allows, and
//! tells this module when to start and when to stop; this module runs the factory's future for
//! each run and cancels it through a [`CancellationToken`] when the node must stop (the name
//! lost to a conflict, the quorum lost, the candidacy withdrawn, the node shutting down). A run
//! is over only when its future has returned: a withdrawal or a graceful shutdown waits for it
//! before releasing the name, so the next holder never overlaps with a clean stop.
//!
//! Guarantees and timing assumptions per policy are in `docs/singletons.md`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pidmesh_proto::{Event, Pid, SingletonPolicy, StopReason};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Mailbox, Registry, Stopped};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
type Factory = Arc<dyn Fn(SingletonContext) -> BoxFuture + Send + Sync + 'static>;

/// How often a run that ignores its cancellation is reported in the logs.
const SLOW_STOP_WARNING: Duration = Duration::from_secs(1);

/// Why [`Registry::singleton`] failed. Nothing changed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SingletonError {
    /// The name is empty, too long or has control characters.
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    /// This node is already a candidate for the name (keep one [`Singleton`] per name), or
    /// holds a strict registration of it.
    #[error("this node is already a candidate for the singleton")]
    AlreadyCandidate,
    /// The metadata (with the 26-byte running marker) is larger than 4096 bytes.
    #[error("metadata is {0} bytes, over the limit")]
    MetaTooLarge(usize),
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// What the factory gets for one run of the singleton on this node.
#[derive(Debug)]
#[non_exhaustive]
pub struct SingletonContext {
    /// The singleton's name (the unique name it holds while it runs).
    pub name: Arc<str>,
    /// The pid registered under the name while this node holds it.
    pub pid: Pid,
    /// Messages sent to `pid` during this run. Dropping it does not end the candidacy.
    pub mailbox: Mailbox,
    /// A handle to the registry of the node it runs on.
    pub registry: Registry,
    /// Fires when this node must stop running the singleton; the future must then return
    /// promptly (see `docs/singletons.md` for how promptly quorum policies need it).
    pub cancel: CancellationToken,
}

/// What a [`Singleton`] handle reports about this node's candidacy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SingletonStatus {
    /// This node runs the singleton now (its future is running).
    pub running: bool,
    /// How many runs this node started.
    pub starts: u64,
    /// Why the last run stopped, if one did. `None` after a run that returned on its own.
    pub last_stop: Option<StopReason>,
    /// The candidacy ended: withdrawn, the run returned on its own, or the node stopped.
    pub withdrawn: bool,
}

/// This node's candidacy for a singleton. Dropping it withdraws the candidacy in the
/// background (the run is cancelled and awaited, then the name is released).
#[derive(Debug)]
pub struct Singleton {
    name: Arc<str>,
    pid: Pid,
    status: watch::Receiver<SingletonStatus>,
    withdraw: CancellationToken,
    supervisor: Option<JoinHandle<()>>,
}

impl Singleton {
    /// The singleton's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pid under which this node holds the name while it runs the singleton.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// The candidacy's state now.
    pub fn status(&self) -> SingletonStatus {
        self.status.borrow().clone()
    }

    /// True while this node runs the singleton.
    pub fn is_running(&self) -> bool {
        self.status.borrow().running
    }

    /// Waits until the status changes, and returns the new status. Returns the final status
    /// at once if the candidacy has ended.
    ///
    /// Cancel-safe.
    pub async fn changed(&mut self) -> SingletonStatus {
        if !self.status.borrow().withdrawn {
            let _ = self.status.changed().await;
        }
        self.status.borrow_and_update().clone()
    }

    /// Withdraws this node's candidacy: cancels the run if there is one, waits for it to
    /// return, then releases the name so another candidate takes over at once.
    ///
    /// Cancel-safe: if the future is dropped, the withdrawal finishes in the background.
    pub async fn withdraw(mut self) {
        self.withdraw.cancel();
        if let Some(h) = self.supervisor.take() {
            let _ = h.await;
        }
    }
}

impl Drop for Singleton {
    fn drop(&mut self) {
        self.withdraw.cancel();
    }
}

/// What the registry keeps per candidacy, so a graceful shutdown can stop every run first.
#[derive(Debug)]
pub(crate) struct Candidacy {
    pub(crate) withdraw: CancellationToken,
    /// Cancelled (before `withdraw`) when the withdrawal is the node's graceful shutdown, so
    /// the stopped run is reported as [`StopReason::Shutdown`] rather than `Withdrawn`.
    pub(crate) shutdown: CancellationToken,
    pub(crate) done: watch::Receiver<SingletonStatus>,
}

impl Candidacy {
    /// Withdraws and waits until the candidacy's run has returned and its name was released.
    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        self.withdraw.cancel();
        while !self.done.borrow_and_update().withdrawn {
            if self.done.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Registry {
    /// Makes this node a candidate for the singleton `name`: whichever candidate holds the
    /// unique name runs `factory`'s future; when the holder dies, another candidate takes over
    /// within the failure-detection time, and a graceful [`Registry::shutdown`] hands over at
    /// once. See [`SingletonPolicy`] for what each policy guarantees during partitions.
    ///
    /// The future runs until it returns or its [`SingletonContext::cancel`] token fires. If it
    /// returns on its own, this node withdraws its candidacy (the name goes to another
    /// candidate).
    ///
    /// # Errors
    /// [`SingletonError::InvalidName`], [`SingletonError::AlreadyCandidate`], or
    /// [`SingletonError::Stopped`] if the node has stopped. Nothing changed on error.
    ///
    /// Cancel-safe: it completes without waiting.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pidmesh::{Config, Registry};
    /// # let net = pidmesh_transport::MemNetwork::new(1);
    /// # let registry = Registry::builder()
    /// #     .node_name("n1")
    /// #     .config(Config::local())
    /// #     .transport(net.bind_named("n1"))
    /// #     .start()
    /// #     .await?;
    /// use std::time::Duration;
    /// use pidmesh::{SingletonContext, SingletonPolicy, StopReason};
    ///
    /// let mut job = registry
    ///     .singleton("nightly", SingletonPolicy::Available, |cx: SingletonContext| async move {
    ///         cx.cancel.cancelled().await; // the work goes here; return when told to stop
    ///     })
    ///     .await?;
    /// tokio::time::timeout(Duration::from_secs(5), async {
    ///     while !job.is_running() {
    ///         job.changed().await;
    ///     }
    /// })
    /// .await?;
    /// assert_eq!(registry.lookup("nightly").map(|e| e.pid), Some(job.pid().clone()));
    /// registry.shutdown().await; // stops the run first, then releases the name
    /// assert_eq!(job.status().last_stop, Some(StopReason::Shutdown));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn singleton<F, Fut>(
        &self,
        name: &str,
        policy: SingletonPolicy,
        factory: F,
    ) -> Result<Singleton, SingletonError>
    where
        F: Fn(SingletonContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.singleton_with_meta(name, policy, bytes::Bytes::new(), factory)
            .await
    }

    /// [`Registry::singleton`] whose claim on the name carries the application metadata
    /// `meta`, which a custom resolver can read ([`Entry::app_meta`](crate::Entry::app_meta);
    /// a running claim's metadata is the running marker followed by `meta`).
    ///
    /// # Errors
    /// As [`Registry::singleton`], plus [`SingletonError::MetaTooLarge`].
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn singleton_with_meta<F, Fut>(
        &self,
        name: &str,
        policy: SingletonPolicy,
        meta: impl Into<bytes::Bytes>,
        factory: F,
    ) -> Result<Singleton, SingletonError>
    where
        F: Fn(SingletonContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let meta = meta.into();
        pidmesh_wire::check_user_name(name).map_err(SingletonError::InvalidName)?;
        let name: Arc<str> = name.into();
        let mut candidacies = self.candidacies();
        if candidacies
            .get(&name)
            .is_some_and(|c| !c.done.borrow().withdrawn)
        {
            return Err(SingletonError::AlreadyCandidate);
        }
        // Subscribe before becoming a candidate so the first start is not missed.
        let events = self.subscribe_raw();
        let pid = self
            .mutate_node(|n, now| n.add_singleton_meta(now, &name, policy, meta))?
            .map_err(|e| match e {
                pidmesh_proto::RegisterError::InvalidName(m) => SingletonError::InvalidName(m),
                pidmesh_proto::RegisterError::MetaTooLarge(n) => SingletonError::MetaTooLarge(n),
                pidmesh_proto::RegisterError::AlreadyRegistered(_) => {
                    SingletonError::AlreadyCandidate
                }
                _ => SingletonError::Stopped(Stopped),
            })?;
        let (status_tx, status) = watch::channel(SingletonStatus::default());
        let withdraw = CancellationToken::new();
        let shutdown = CancellationToken::new();
        let factory: Factory = Arc::new(move |cx| Box::pin(factory(cx)));
        let supervisor = Supervisor {
            registry: self.clone(),
            name: name.clone(),
            pid: pid.clone(),
            factory,
            status: status_tx,
            run: None,
        };
        let handle = tokio::spawn(supervisor.run(events, withdraw.clone(), shutdown.clone()));
        candidacies.insert(
            name.clone(),
            Candidacy {
                withdraw: withdraw.clone(),
                shutdown,
                done: status.clone(),
            },
        );
        Ok(Singleton {
            name,
            pid,
            status,
            withdraw,
            supervisor: Some(handle),
        })
    }
}

/// One run of the singleton on this node.
struct Run {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// The task that follows the node's start/stop decisions for one candidacy.
struct Supervisor {
    registry: Registry,
    name: Arc<str>,
    pid: Pid,
    factory: Factory,
    status: watch::Sender<SingletonStatus>,
    run: Option<Run>,
}

impl Supervisor {
    async fn run(
        mut self,
        mut events: broadcast::Receiver<Event>,
        withdraw: CancellationToken,
        shutdown: CancellationToken,
    ) {
        // Why a run still going when the loop ends is stopped.
        let mut why = StopReason::Shutdown;
        loop {
            tokio::select! {
                biased;
                () = withdraw.cancelled() => {
                    // The application's withdrawal (or dropped handle), unless the node is
                    // shutting down or was aborted.
                    let stopped = self.registry.shared.stopped.load(Ordering::Acquire);
                    if !shutdown.is_cancelled() && !stopped {
                        why = StopReason::Withdrawn;
                    }
                    break;
                }
                () = finished(&mut self.run) => {
                    // The run returned on its own while holding the name: give the name up.
                    tracing::info!(name = %self.name, "singleton run returned; withdrawing");
                    self.run = None;
                    self.status.send_modify(|s| {
                        s.running = false;
                        s.last_stop = None;
                    });
                    break;
                }
                event = events.recv() => match event {
                    Ok(Event::SingletonStarted { name, .. }) if *name == *self.name => self.start(),
                    Ok(Event::SingletonStopped { name, reason }) if *name == *self.name => {
                        self.stop(Some(reason)).await;
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed events: follow the node's current decision.
                        let runs = self.registry.read_node(|n| n.runs_singleton(&self.name));
                        match (runs, self.run.is_some()) {
                            (true, false) => self.start(),
                            (false, true) => self.stop(Some(StopReason::LostName)).await,
                            _ => {}
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        // Stop the run before releasing the name, so the next holder starts after it ended.
        self.stop(Some(why)).await;
        let _ = self
            .registry
            .mutate_node(|n, now| n.remove_singleton(now, &self.name));
        self.status.send_modify(|s| {
            s.running = false;
            s.withdrawn = true;
        });
    }

    fn start(&mut self) {
        if self.run.is_some() {
            return;
        }
        let cancel = CancellationToken::new();
        let cx = SingletonContext {
            name: self.name.clone(),
            pid: self.pid.clone(),
            mailbox: self.registry.attach_mailbox(&self.pid),
            registry: self.registry.clone(),
            cancel: cancel.clone(),
        };
        let task = tokio::spawn((self.factory)(cx));
        self.run = Some(Run { cancel, task });
        self.status.send_modify(|s| {
            s.running = true;
            s.starts += 1;
        });
        tracing::info!(name = %self.name, "singleton started");
    }

    /// Cancels the run (if any) and waits until its future has returned.
    async fn stop(&mut self, reason: Option<StopReason>) {
        let Some(mut run) = self.run.take() else {
            return;
        };
        run.cancel.cancel();
        loop {
            match tokio::time::timeout(SLOW_STOP_WARNING, &mut run.task).await {
                Ok(Err(e)) if e.is_panic() => {
                    tracing::error!(name = %self.name, "singleton run panicked");
                    break;
                }
                Ok(_) => break,
                Err(_) => {
                    tracing::warn!(name = %self.name, "singleton run ignores its cancellation")
                }
            }
        }
        self.registry.detach_mailbox(&self.pid);
        self.status.send_modify(|s| {
            s.running = false;
            if reason.is_some() {
                s.last_stop = reason;
            }
        });
        tracing::info!(name = %self.name, ?reason, "singleton stopped");
    }
}

/// Completes when the run's future has returned (never while there is no run).
async fn finished(run: &mut Option<Run>) {
    match run {
        Some(r) => {
            let _ = (&mut r.task).await;
        }
        None => std::future::pending().await,
    }
}
