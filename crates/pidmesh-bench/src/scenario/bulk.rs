//! **bulk** and **wire**: N registrations issued back to back on node 0 of a fresh 3-node
//! cluster, as fast as `Registry::register` returns (one process registers every name; the
//! guards are kept in a `Vec`, since dropping one unregisters its name).
//!
//! Measured:
//! - the issue time (first `register` called → last one returned) and the rate it implies;
//! - the convergence time (first `register` called → every node holds all N entries), from a
//!   curve of entries held per node sampled every few milliseconds on a separate OS thread;
//! - the payload bytes every node handed to its transport between the first registration and
//!   convergence, by traffic class, per registration ("wire");
//! - then, on a replica (node 1), `lookup` and `members_of` in a loop (nanoseconds per call);
//! - then the same N issued from 4 tasks at once and with `register_many`, each on a fresh
//!   cluster ([`crate::scenario::bulk_variants`]).

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::cluster::{Bytes, Cluster, Sample, Sampler, reached};

/// What the bulk scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkResult {
    /// Registrations issued.
    pub n: usize,
    /// Example name (all names have this length).
    pub name_example: String,
    /// Seconds from the first `register` call until the last returned.
    pub issue_secs: f64,
    /// Registrations per second on the issuing node.
    pub issue_per_sec: f64,
    /// Seconds from the first `register` call until every node held every entry (`None`: did
    /// not converge within the limit).
    pub converge_secs: Option<f64>,
    /// Seconds until each node held every entry.
    pub node_secs: Vec<Option<f64>>,
    /// Entries held by each node when the scenario gave up or converged.
    pub final_entries: Vec<usize>,
    /// Entries held per node over time (ms since the first `register` call).
    pub curve: Vec<Sample>,
    /// Payload bytes sent by each node between the first registration and convergence.
    pub bytes_by_node: Vec<Bytes>,
    /// All nodes' payload bytes (every class) over the registrations.
    pub wire_bytes_per_registration: f64,
    /// The origin's delta payload bytes per registration per receiving peer.
    pub delta_bytes_per_registration_per_peer: f64,
    /// Nanoseconds per `lookup` on a replica holding the N entries.
    pub lookup_ns: f64,
    /// Nanoseconds per `members_of` of a 3-member group on the same replica (one warm group).
    pub members_of_ns: f64,
    /// Nanoseconds per `members_of` of a 1-member group picked in a scattered order among N
    /// such groups, on the members' node: the access pattern of the Erlang module's
    /// `pg:get_members` figure.
    #[serde(default)]
    pub members_of_random_ns: Option<f64>,
    /// The same N registrations issued other ways, each on a fresh cluster (see
    /// [`crate::scenario::bulk_variants`]); the first row repeats this run's per-name figures.
    #[serde(default)]
    pub variants: Option<Vec<crate::scenario::bulk_variants::BulkVariant>>,
}

/// Times `f` over `iters` calls and returns nanoseconds per call.
pub fn ns_per_call(iters: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..iters {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e9 / iters.max(1) as f64
}

/// The name of the `i`th bulk entry: fixed width, so every registration costs the same bytes.
pub fn bulk_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:07}")
}

/// Registers `names` on `node` with one process, keeping the guards, and returns them.
///
/// # Errors
/// A registration failed (a duplicate name, or the node stopped).
pub async fn register_all(
    node: &pidmesh::Registry,
    pid: &pidmesh::Pid,
    names: &[String],
) -> anyhow::Result<Vec<pidmesh::Registration>> {
    let mut guards = Vec::with_capacity(names.len());
    for name in names {
        guards.push(
            node.register(name, pid, bytes_empty())
                .await
                .with_context(|| format!("register {name}"))?,
        );
    }
    Ok(guards)
}

fn bytes_empty() -> Vec<u8> {
    Vec::new()
}

/// Runs the scenario.
///
/// # Errors
/// The cluster did not form, or a registration failed.
pub async fn run(s: &Settings, n: usize) -> anyhow::Result<BulkResult> {
    let cluster = Cluster::start(s.kind, 3, s.config()).await?;
    let (pid, _mailbox) = cluster.nodes[0].spawn_mailbox()?;
    let names: Vec<String> = (0..n).map(|i| bulk_name("bulk/", i)).collect();
    let before = cluster.bytes_now();

    let t0 = Instant::now();
    let sampler = Sampler::start(cluster.nodes.clone(), t0, s.sample_every);
    let guards = register_all(&cluster.nodes[0], &pid, &names).await?;
    let issue = t0.elapsed();
    let limit = s.converge_limit(n);
    let converged = crate::cluster::wait_for(limit, Duration::from_millis(1), || {
        cluster.entries().iter().all(|&c| c >= n)
    })
    .await
    .map(|_| t0.elapsed());
    let after = cluster.bytes_now();
    // A few samples past convergence, so the plot shows the plateau.
    tokio::time::sleep(s.sample_every * 4).await;
    let curve = sampler.finish();
    let final_entries = cluster.entries();

    let bytes_by_node: Vec<Bytes> = after.iter().zip(&before).map(|(a, b)| a.since(b)).collect();
    let total = bytes_by_node
        .iter()
        .fold(Bytes::default(), |acc, b| acc.plus(b));
    let peers = cluster.nodes.len() - 1;

    // Reads on a replica, after convergence.
    let replica = &cluster.nodes[1];
    let mut lookup_ns = f64::NAN;
    let mut members_of_ns = f64::NAN;
    let mut members_of_random_ns = None;
    let mut group_mailboxes = Vec::new();
    if converged.is_some() {
        let iters = s.lookup_iters;
        // Visit names in a scattered order (a stride coprime with n), not the insertion order.
        let stride = 7919 % n.max(1);
        let stride = if stride == 0 { 1 } else { stride };
        let mut missing = 0usize;
        lookup_ns = ns_per_call(iters, |i| {
            let name = &names[(i * stride) % n];
            if black_box(replica.lookup(black_box(name))).is_none() {
                missing += 1;
            }
        });
        if missing > 0 {
            bail!("{missing} lookups on a converged replica found nothing");
        }
        for node in &cluster.nodes {
            let (p, mb) = node.spawn_mailbox()?;
            node.join("bench/group", &p, bytes_empty()).await?;
            group_mailboxes.push(mb); // the process (and its membership) lives while this does
        }
        crate::cluster::wait_for(Duration::from_secs(10), Duration::from_millis(1), || {
            replica.members_of("bench/group").len() == 3
        })
        .await
        .context("group members not visible")?;
        members_of_ns = ns_per_call(iters / 4, |_| {
            black_box(replica.members_of(black_box("bench/group")));
        });

        // Like for like with pg: N groups of one member each, joined on node 0 and read there
        // in the same scattered order as the lookups.
        let origin = &cluster.nodes[0];
        let (member, mb) = origin.spawn_mailbox()?;
        group_mailboxes.push(mb);
        let groups: Vec<String> = (0..n).map(|i| bulk_name("bench/g/", i)).collect();
        for g in &groups {
            origin.join(g, &member, bytes_empty()).await?;
        }
        let mut empty = 0usize;
        members_of_random_ns = Some(ns_per_call(iters, |i| {
            if black_box(origin.members_of(black_box(&groups[(i * stride) % n]))).is_empty() {
                empty += 1;
            }
        }));
        if empty > 0 {
            bail!("{empty} members_of calls on the members' node found no member");
        }
    }

    let mut result = BulkResult {
        n,
        name_example: names.first().cloned().unwrap_or_default(),
        issue_secs: issue.as_secs_f64(),
        issue_per_sec: n as f64 / issue.as_secs_f64().max(1e-9),
        converge_secs: converged.map(|d| d.as_secs_f64()),
        node_secs: (0..cluster.nodes.len())
            .map(|i| reached(&curve, i, n).map(|ms| ms / 1e3))
            .collect(),
        final_entries,
        curve,
        wire_bytes_per_registration: total.total() as f64 / n.max(1) as f64,
        delta_bytes_per_registration_per_peer: bytes_by_node[0].delta as f64
            / (n.max(1) * peers.max(1)) as f64,
        bytes_by_node,
        lookup_ns,
        members_of_ns,
        members_of_random_ns,
        variants: None,
    };
    // Stop the nodes first: the guards then drop without unregistering 200k names one by one.
    cluster.shutdown().await;
    drop((guards, group_mailboxes));
    let mut variants = vec![crate::scenario::bulk_variants::BulkVariant::from_main(
        &result,
    )];
    variants.extend(crate::scenario::bulk_variants::run(s, n).await?);
    result.variants = Some(variants);
    Ok(result)
}
