//! **bulk, other ways of issuing**: the bulk scenario's N registrations on node 0 of a fresh
//! 3-node cluster, issued
//! - with the per-name API from 4 tasks at once (each its own process and a quarter of the
//!   names), all started together;
//! - with `Registry::register_many`, in calls of [`MANY_CHUNK`] names.
//!
//! Each: the issue time (first call → last returned), the rate it implies, and the time until
//! every node holds all N entries (from the first call; polled every millisecond).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::cluster::Cluster;
use crate::scenario::bulk::{BulkResult, bulk_name, register_all};

/// Names per `register_many` call.
pub const MANY_CHUNK: usize = 4096;

/// One way of issuing the bulk registrations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkVariant {
    /// How the registrations were issued.
    pub label: String,
    /// Registrations issued.
    pub n: usize,
    /// Seconds from the first call until the last returned.
    pub issue_secs: f64,
    /// Registrations per second on the issuing node.
    pub issue_per_sec: f64,
    /// Seconds from the first call until every node held every entry (`None`: not within
    /// the limit).
    pub converge_secs: Option<f64>,
}

impl BulkVariant {
    fn new(label: &str, n: usize, issue: Duration, converged: Option<Duration>) -> Self {
        BulkVariant {
            label: label.to_string(),
            n,
            issue_secs: issue.as_secs_f64(),
            issue_per_sec: n as f64 / issue.as_secs_f64().max(1e-9),
            converge_secs: converged.map(|d| d.as_secs_f64()),
        }
    }

    /// The per-name, one-task row, from the main bulk run.
    pub fn from_main(b: &BulkResult) -> Self {
        BulkVariant {
            label: "per-name `register`, 1 task".to_string(),
            n: b.n,
            issue_secs: b.issue_secs,
            issue_per_sec: b.issue_per_sec,
            converge_secs: b.converge_secs,
        }
    }
}

async fn converge(cluster: &Cluster, s: &Settings, n: usize, t0: Instant) -> Option<Duration> {
    crate::cluster::wait_for(s.converge_limit(n), Duration::from_millis(1), || {
        cluster.entries().iter().all(|&c| c >= n)
    })
    .await
    .map(|_| t0.elapsed())
}

/// The per-name API from `tasks` tasks at once.
async fn per_name_tasks(s: &Settings, n: usize, tasks: usize) -> anyhow::Result<BulkVariant> {
    let cluster = Cluster::start(s.kind, 3, s.config()).await?;
    let names: Vec<String> = (0..n).map(|i| bulk_name("bulk/", i)).collect();
    let mut parts = Vec::new();
    let mut mailboxes = Vec::new();
    for part in names.chunks(n.div_ceil(tasks).max(1)) {
        let (pid, mb) = cluster.nodes[0].spawn_mailbox()?;
        mailboxes.push(mb);
        parts.push((pid, part.to_vec()));
    }
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for (pid, part) in parts {
        let node = cluster.nodes[0].clone();
        handles.push(tokio::spawn(async move {
            register_all(&node, &pid, &part).await
        }));
    }
    let mut guards = Vec::with_capacity(n);
    for h in handles {
        guards.extend(h.await.context("issuing task")??);
    }
    let issue = t0.elapsed();
    let converged = converge(&cluster, s, n, t0).await;
    cluster.shutdown().await;
    drop((guards, mailboxes));
    Ok(BulkVariant::new(
        &format!("per-name `register`, {tasks} tasks at once"),
        n,
        issue,
        converged,
    ))
}

/// `register_many` in calls of [`MANY_CHUNK`] names.
async fn many(s: &Settings, n: usize) -> anyhow::Result<BulkVariant> {
    let cluster = Cluster::start(s.kind, 3, s.config()).await?;
    let (pid, mailbox) = cluster.nodes[0].spawn_mailbox()?;
    let names: Vec<String> = (0..n).map(|i| bulk_name("bulk/", i)).collect();
    let node = &cluster.nodes[0];
    let t0 = Instant::now();
    let mut guards = Vec::with_capacity(n);
    for chunk in names.chunks(MANY_CHUNK) {
        let results = node
            .register_many(chunk.iter().map(|name| (name, &pid, bytes::Bytes::new())))
            .await?;
        for (r, name) in results.into_iter().zip(chunk) {
            guards.push(r.with_context(|| format!("register {name}"))?);
        }
    }
    let issue = t0.elapsed();
    if guards.len() != n {
        bail!("{} of {n} registered", guards.len());
    }
    let converged = converge(&cluster, s, n, t0).await;
    cluster.shutdown().await;
    drop((guards, mailbox));
    Ok(BulkVariant::new(
        &format!("`register_many`, {MANY_CHUNK} names per call"),
        n,
        issue,
        converged,
    ))
}

/// Runs both variants.
///
/// # Errors
/// A cluster did not form, or a registration failed.
pub async fn run(s: &Settings, n: usize) -> anyhow::Result<Vec<BulkVariant>> {
    Ok(vec![per_name_tasks(s, n, 4).await?, many(s, n).await?])
}
