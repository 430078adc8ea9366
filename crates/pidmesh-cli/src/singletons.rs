//! Singletons the node is a candidate for (config `singletons`), exposed on `/v1/singletons`.
//!
//! The binary runs no code of its own for a singleton: the run is a placeholder that lasts until
//! the node must stop. A service beside the node (or an operator) reads `/v1/singletons`, or
//! watches `singleton_started`/`singleton_stopped` on `/v1/events`, to know whether this node
//! holds it. Start and stop times are wall-clock milliseconds, comparable across nodes whose
//! clocks agree.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use pidmesh::{Registry, Singleton, SingletonError, SingletonPolicy};
use serde::{Deserialize, Serialize};

/// One singleton's state on this node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SingletonJson {
    pub(crate) name: String,
    pub(crate) policy: String,
    pub(crate) running: bool,
    pub(crate) starts: u64,
    pub(crate) last_stop: Option<String>,
    /// Wall-clock milliseconds since the epoch of the last start on this node.
    pub(crate) started_at_ms: Option<u64>,
    /// Wall-clock milliseconds since the epoch of the last stop on this node.
    pub(crate) stopped_at_ms: Option<u64>,
}

/// The singletons of this node, by name.
pub(crate) type Table = Arc<Mutex<BTreeMap<String, SingletonJson>>>;

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Parses a policy: `majority` (MajorityOfKnown), `quorum:N` (StaticQuorum) or `available`.
pub(crate) fn parse_policy(s: &str) -> Result<SingletonPolicy, String> {
    match s {
        "majority" => Ok(SingletonPolicy::MajorityOfKnown),
        "available" => Ok(SingletonPolicy::Available),
        _ => match s.strip_prefix("quorum:").map(str::parse::<usize>) {
            Some(Ok(n)) if n >= 1 => Ok(SingletonPolicy::StaticQuorum(n)),
            _ => Err(format!(
                "unknown singleton policy {s:?} (expected majority, available or quorum:N with N >= 1)"
            )),
        },
    }
}

/// Becomes a candidate for each name; keeps the table up to date. The returned handles keep
/// the candidacies (dropping them withdraws).
pub(crate) async fn start(
    registry: &Registry,
    names: &[String],
    policy: SingletonPolicy,
    policy_name: &str,
    table: &Table,
) -> Result<Vec<tokio::task::JoinHandle<()>>, SingletonError> {
    let mut tasks = Vec::new();
    for name in names {
        let mut s: Singleton = registry
            .singleton(
                name,
                policy,
                |cx| async move { cx.cancel.cancelled().await },
            )
            .await?;
        table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                name.clone(),
                SingletonJson {
                    name: name.clone(),
                    policy: policy_name.to_owned(),
                    ..SingletonJson::default()
                },
            );
        let table = table.clone();
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let st = s.changed().await;
                let now = wall_ms();
                {
                    let mut t = table
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(j) = t.get_mut(&name) {
                        if st.running && !j.running {
                            j.started_at_ms = Some(now);
                        }
                        if !st.running && j.running {
                            j.stopped_at_ms = Some(now);
                        }
                        j.running = st.running;
                        j.starts = st.starts;
                        j.last_stop = st.last_stop.map(|r| format!("{r:?}"));
                    }
                }
                if st.withdrawn {
                    return;
                }
            }
        }));
    }
    Ok(tasks)
}
