//! **catch-up**: a new node joins a 3-node cluster that already holds N entries.
//!
//! The cluster is populated first (N registrations on node 0, as in bulk, until every node
//! holds them: that fill time is reported too). Then a fourth node starts with node 0 as its
//! seed; the clock starts just before its transport binds and stops when it holds all N entries
//! (it fetches them from the holders in windows, several holders at once). The same moment is
//! also taken from the node's own signal (`Registry::caught_up`), with the entries it held
//! then. Also reported: when it saw the full membership, its catch-up curve, entries applied
//! per second (first entry → all held), the bytes of the transfer, how many sync messages each
//! node sent (who streamed), the load average, and `lookup` timed on the new node once it holds
//! everything (the read path at N entries).

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::cluster::{Bytes, Cluster, Sample, Sampler, reached, rss_bytes, wait_for};
use crate::scenario::bulk::{bulk_name, ns_per_call, register_all};

/// What the catch-up scenario measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatchupResult {
    /// Entries the cluster held when the new node joined.
    pub n: usize,
    /// Seconds to register the N entries on node 0.
    pub fill_issue_secs: f64,
    /// Seconds until the 3 original nodes all held the N entries (`None`: not within the limit).
    pub fill_converge_secs: Option<f64>,
    /// Seconds from the new node's start until it saw every member.
    pub join_secs: Option<f64>,
    /// Seconds from the new node's start until it held all N entries (`None`: not within the limit).
    pub catchup_secs: Option<f64>,
    /// Seconds from the new node's start until it held its first entry (the first snapshot
    /// chunk applied), from the sampled curve.
    pub first_entry_secs: Option<f64>,
    /// Entries the new node held at the end.
    pub final_entries: usize,
    /// The new node's entries over time (ms since its start).
    pub curve: Vec<Sample>,
    /// Payload bytes all nodes sent during the catch-up.
    pub bytes: Bytes,
    /// Nanoseconds per `lookup` on the new node holding N entries.
    pub lookup_ns: f64,
    /// Resident memory of the whole process (4 nodes) after the catch-up, in MiB.
    pub rss_mib: Option<f64>,
    /// Seconds from the new node's start until it reported itself caught up
    /// (`Registry::caught_up`); `None`: not within the limit (or an old result).
    #[serde(default)]
    pub signal_secs: Option<f64>,
    /// Entries the new node held when it reported itself caught up.
    #[serde(default)]
    pub signal_entries: Option<usize>,
    /// Entries applied per second between the first entry and the last.
    #[serde(default)]
    pub entries_per_sec: Option<f64>,
    /// Sync-class payload bytes each node sent during the catch-up (node 3 is the newcomer):
    /// which holders streamed.
    #[serde(default)]
    pub sync_bytes_by_node: Vec<u64>,
    /// Load average (1, 5, 15 min) when the newcomer started.
    #[serde(default)]
    pub load_avg: Option<[f64; 3]>,
}

/// Runs the scenario.
///
/// # Errors
/// The cluster did not form or a registration failed. Non-convergence is not an error: it is
/// reported as `None` times and the entries actually held.
pub async fn run(s: &Settings, n: usize) -> anyhow::Result<CatchupResult> {
    let mut cluster = Cluster::start(s.kind, 3, s.config()).await?;
    let (pid, _mailbox) = cluster.nodes[0].spawn_mailbox()?;
    let names: Vec<String> = (0..n).map(|i| bulk_name("fill/", i)).collect();
    let t_fill = Instant::now();
    let guards = register_all(&cluster.nodes[0], &pid, &names).await?;
    let fill_issue = t_fill.elapsed();
    let fill_converge = wait_for(s.converge_limit(n), Duration::from_millis(5), || {
        cluster.entries().iter().all(|&c| c >= n)
    })
    .await
    .map(|_| t_fill.elapsed());
    eprintln!(
        "  catch-up: filled {n} entries in {fill_issue:.2?} (converged: {fill_converge:.2?}, held {:?})",
        cluster.entries()
    );

    let before = cluster.bytes_now();
    let load_avg = crate::report::loadavg();
    let t0 = Instant::now();
    let i = cluster.add_node().await?;
    let newcomer = cluster.nodes[i].clone();
    let sampler = Sampler::start(vec![newcomer.clone()], t0, s.sample_every);
    let limit = s.converge_limit(n).max(Duration::from_secs(30));
    let signal = {
        let node = newcomer.clone();
        tokio::spawn(async move {
            node.caught_up(limit)
                .await
                .then(|| (t0.elapsed(), node.entry_count()))
        })
    };
    let join = wait_for(limit, Duration::from_millis(1), || {
        newcomer.members().len() == 4
    })
    .await
    .map(|_| t0.elapsed());
    let caught_up = wait_for(limit, Duration::from_millis(1), || {
        newcomer.stats().entries >= n
    })
    .await
    .map(|_| t0.elapsed());
    let after = cluster.bytes_now();
    let signal = signal.await.ok().flatten();
    tokio::time::sleep(s.sample_every * 4).await;
    let curve = sampler.finish();
    let final_entries = newcomer.stats().entries;

    let mut lookup_ns = f64::NAN;
    if caught_up.is_some() {
        let stride = 7919 % n.max(1);
        let stride = if stride == 0 { 1 } else { stride };
        lookup_ns = ns_per_call(s.lookup_iters, |k| {
            black_box(newcomer.lookup(black_box(&names[(k * stride) % n])));
        });
    }
    let rss_mib = rss_bytes().map(|b| b as f64 / (1 << 20) as f64);
    let sync_bytes_by_node = after
        .iter()
        .zip(before.iter().chain(std::iter::repeat(&Bytes::default())))
        .map(|(a, b)| a.since(b).sync)
        .collect();
    let bytes = after
        .iter()
        .zip(before.iter().chain(std::iter::repeat(&Bytes::default())))
        .fold(Bytes::default(), |acc, (a, b)| acc.plus(&a.since(b)));
    let first_entry_secs = reached(&curve, 0, 1).map(|ms| ms / 1e3);
    let entries_per_sec = match (caught_up, first_entry_secs) {
        (Some(done), Some(first)) if done.as_secs_f64() > first => {
            Some(n as f64 / (done.as_secs_f64() - first))
        }
        _ => None,
    };
    cluster.shutdown().await;
    drop(guards);
    Ok(CatchupResult {
        n,
        fill_issue_secs: fill_issue.as_secs_f64(),
        fill_converge_secs: fill_converge.map(|d| d.as_secs_f64()),
        join_secs: join.map(|d| d.as_secs_f64()),
        catchup_secs: caught_up.map(|d| d.as_secs_f64()),
        final_entries,
        first_entry_secs,
        curve,
        bytes,
        lookup_ns,
        rss_mib,
        signal_secs: signal.map(|(d, _)| d.as_secs_f64()),
        signal_entries: signal.map(|(_, e)| e),
        entries_per_sec,
        sync_bytes_by_node,
        load_avg,
    })
}
