//! **groups**: pidmesh on exactly the workload the `pg` peers run (Erlang/OTP's `pg` in
//! `bench/erlang`, ractor_cluster's in `bench/ractor`), for the like-for-like table.
//!
//! On a fresh 3-node cluster, one process on node 0 joins N groups (`bulk/0000000` …, one
//! member each, empty metadata) back to back through `Registry::join`. Measured:
//! - the issue time and rate (first `join` called → last returned);
//! - the time until every node holds all N memberships (first `join` → all nodes' entry count
//!   reaches N, polled every millisecond);
//! - `members_of` of one group, groups visited in a scattered order (a prime stride over the
//!   N groups, as the peers do), on node 0 (the members' node) and on node 1 (a replica): the
//!   median of 3 timing rounds of `lookup_iters` calls, each call checked to find the member.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::cluster::Cluster;
use crate::scenario::bulk::{bulk_name, ns_per_call};

/// What the groups scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupsResult {
    /// Groups joined (one member each).
    pub n: usize,
    /// The issuing loop (s).
    pub issue_secs: f64,
    /// Joins per second on node 0.
    pub joins_per_sec: f64,
    /// First join → every node holds all N memberships (s); `None`: did not converge.
    pub converge_secs: Option<f64>,
    /// ns per `members_of`, scattered order, on node 0 (the members' node); `None` when the
    /// joins did not converge.
    pub members_of_origin_ns: Option<f64>,
    /// The same on node 1 (a replica).
    pub members_of_replica_ns: Option<f64>,
}

/// The prime stride of the scattered visiting order (coprime with any `n` it does not divide).
fn stride(n: usize) -> usize {
    match 7919 % n.max(1) {
        0 => 1,
        s => s,
    }
}

/// Median of 3 rounds of `iters` `members_of` calls on `node`.
fn members_of_ns(node: &pidmesh::Registry, groups: &[String], iters: usize) -> anyhow::Result<f64> {
    let n = groups.len().max(1);
    let step = stride(n);
    let mut empty = 0usize;
    let mut rounds: Vec<f64> = (0..3)
        .map(|_| {
            ns_per_call(iters, |i| {
                if black_box(node.members_of(black_box(&groups[(i * step) % n]))).len() != 1 {
                    empty += 1;
                }
            })
        })
        .collect();
    if empty > 0 {
        bail!("{empty} members_of calls did not find the one member");
    }
    rounds.sort_by(f64::total_cmp);
    Ok(rounds[1])
}

/// Runs the scenario.
///
/// # Errors
/// The cluster did not form, or a join failed.
pub async fn run(s: &Settings, n: usize) -> anyhow::Result<GroupsResult> {
    let cluster = Cluster::start(s.kind, 3, s.config()).await?;
    let origin = &cluster.nodes[0];
    let (member, mailbox) = origin.spawn_mailbox()?;
    let groups: Vec<String> = (0..n).map(|i| bulk_name("bulk/", i)).collect();
    let base: Vec<usize> = cluster.entries();
    let t0 = Instant::now();
    for g in &groups {
        origin
            .join(g, &member, Vec::new())
            .await
            .with_context(|| format!("join {g}"))?;
    }
    let issue = t0.elapsed().as_secs_f64();
    let converged = crate::cluster::wait_for(s.converge_limit(n), Duration::from_millis(1), || {
        cluster
            .entries()
            .iter()
            .zip(&base)
            .all(|(c, b)| *c >= b + n)
    })
    .await
    .map(|_| t0.elapsed().as_secs_f64());
    let (mut origin_ns, mut replica_ns) = (None, None);
    if converged.is_some() {
        origin_ns = Some(members_of_ns(origin, &groups, s.lookup_iters)?);
        replica_ns = Some(members_of_ns(&cluster.nodes[1], &groups, s.lookup_iters)?);
    }
    cluster.shutdown().await;
    drop(mailbox);
    Ok(GroupsResult {
        n,
        issue_secs: issue,
        joins_per_sec: n as f64 / issue.max(1e-9),
        converge_secs: converged,
        members_of_origin_ns: origin_ns,
        members_of_replica_ns: replica_ns,
    })
}
