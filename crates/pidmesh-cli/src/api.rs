//! JSON shapes of the admin and sidecar HTTP API (served by `server`, read by `client`).

use pidmesh::{Entry, Event, KeyKind, NodeInfo, Pid, Reason, Stats};
use serde::{Deserialize, Serialize};

/// A process id: `node#incarnation.local`, plus its parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PidJson {
    pub(crate) node: String,
    pub(crate) incarnation: u64,
    pub(crate) local: u64,
    pub(crate) display: String,
}

impl From<&Pid> for PidJson {
    fn from(p: &Pid) -> Self {
        Self {
            node: p.node.name.to_string(),
            incarnation: p.node.incarnation,
            local: p.local,
            display: p.to_string(),
        }
    }
}

/// One entry under a name or group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct EntryJson {
    /// `name` or `group`.
    pub(crate) kind: String,
    pub(crate) key: String,
    pub(crate) pid: PidJson,
    /// The metadata as text (invalid UTF-8 replaced).
    pub(crate) meta: String,
    /// Registration time by the owner's hybrid logical clock, milliseconds since the epoch.
    pub(crate) registered_at_ms: u64,
    pub(crate) registered_at_logical: u32,
}

impl From<&Entry> for EntryJson {
    fn from(e: &Entry) -> Self {
        Self {
            kind: match e.key.kind {
                KeyKind::Name => "name",
                KeyKind::Group => "group",
            }
            .to_owned(),
            key: e.key.name.to_string(),
            pid: (&e.pid).into(),
            meta: String::from_utf8_lossy(&e.meta).into_owned(),
            registered_at_ms: e.registered_at.wall_ms,
            registered_at_logical: e.registered_at.logical,
        }
    }
}

/// A cluster member as this node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct MemberJson {
    pub(crate) name: String,
    pub(crate) incarnation: u64,
    pub(crate) addr: String,
    pub(crate) local: bool,
}

impl From<&NodeInfo> for MemberJson {
    fn from(n: &NodeInfo) -> Self {
        Self {
            name: n.id.name.to_string(),
            incarnation: n.id.incarnation,
            addr: n.addr.to_string(),
            local: n.local,
        }
    }
}

pub(crate) fn reason_str(r: Reason) -> &'static str {
    match r {
        Reason::Normal => "normal",
        Reason::ProcessExited => "process_exited",
        Reason::NodeDown => "node_down",
        Reason::Conflict => "conflict",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

/// A registry event (`type` tells which; the other fields depend on it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub(crate) struct EventJson {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) key: Option<String>,
    #[serde(default)]
    pub(crate) entry: Option<EntryJson>,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    #[serde(default)]
    pub(crate) winner: Option<EntryJson>,
    #[serde(default)]
    pub(crate) losers: Vec<EntryJson>,
    #[serde(default)]
    pub(crate) node: Option<String>,
    /// Entries a `synced` event made visible, or held at `caught_up`.
    #[serde(default)]
    pub(crate) count: Option<usize>,
}

impl From<&Event> for EventJson {
    fn from(e: &Event) -> Self {
        let mut j = EventJson::default();
        match e {
            Event::Registered(entry) => {
                j.kind = "registered".into();
                j.key = Some(entry.key.name.to_string());
                j.entry = Some(entry.into());
            }
            Event::Unregistered { entry, reason } => {
                j.kind = "unregistered".into();
                j.key = Some(entry.key.name.to_string());
                j.entry = Some(entry.into());
                j.reason = Some(reason_str(*reason).into());
            }
            Event::MetaUpdated { entry, .. } => {
                j.kind = "meta_updated".into();
                j.key = Some(entry.key.name.to_string());
                j.entry = Some(entry.into());
            }
            Event::ConflictResolved {
                key,
                winner,
                losers,
            } => {
                j.kind = "conflict_resolved".into();
                j.key = Some(key.name.to_string());
                j.winner = winner.as_ref().map(Into::into);
                j.losers = losers.iter().map(Into::into).collect();
            }
            Event::ResolverFailed { key, reason } => {
                j.kind = "resolver_failed".into();
                j.key = Some(key.name.to_string());
                j.reason = Some(reason.clone());
            }
            Event::SingletonStarted { name, entry } => {
                j.kind = "singleton_started".into();
                j.key = Some(name.clone());
                j.entry = Some(entry.into());
            }
            Event::SingletonStopped { name, reason } => {
                j.kind = "singleton_stopped".into();
                j.key = Some(name.clone());
                j.reason = Some(format!("{reason:?}"));
            }
            Event::NodeUp(n) => {
                j.kind = "node_up".into();
                j.node = Some(n.to_string());
            }
            Event::NodeDown(n) => {
                j.kind = "node_down".into();
                j.node = Some(n.to_string());
            }
            Event::Synced { origin, count } => {
                j.kind = "synced".into();
                j.node = Some(origin.to_string());
                j.count = Some(*count);
            }
            Event::CaughtUp { entries } => {
                j.kind = "caught_up".into();
                j.count = Some(*entries);
            }
            #[allow(unreachable_patterns)]
            _ => j.kind = "other".into(),
        }
        j
    }
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub(crate) struct StatsJson {
    pub(crate) node: String,
    pub(crate) members: usize,
    pub(crate) entries: usize,
    pub(crate) peers: usize,
    pub(crate) sidecar_sessions: usize,
    pub(crate) uptime_ms: u64,
    pub(crate) rejected: u64,
    pub(crate) batches_sent: u64,
    pub(crate) delta_bytes_sent: u64,
    pub(crate) sync_bytes_sent: u64,
    pub(crate) deltas_applied: u64,
    pub(crate) chunks_applied: u64,
    pub(crate) sync_rounds: u64,
    pub(crate) gaps_detected: u64,
    pub(crate) conflicts_resolved: u64,
    pub(crate) resolver_failures: u64,
    pub(crate) rejoins: u64,
}

impl StatsJson {
    pub(crate) fn new(
        node: String,
        members: usize,
        sessions: usize,
        uptime_ms: u64,
        s: &Stats,
    ) -> Self {
        Self {
            node,
            members,
            entries: s.entries,
            peers: s.peers,
            sidecar_sessions: sessions,
            uptime_ms,
            rejected: s.rejected,
            batches_sent: s.batches_sent,
            delta_bytes_sent: s.delta_bytes_sent,
            sync_bytes_sent: s.sync_bytes_sent,
            deltas_applied: s.deltas_applied,
            chunks_applied: s.chunks_applied,
            sync_rounds: s.sync_rounds,
            gaps_detected: s.gaps_detected,
            conflicts_resolved: s.conflicts_resolved,
            resolver_failures: s.resolver_failures,
            rejoins: s.rejoins,
        }
    }
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ErrorJson {
    pub(crate) error: String,
    /// A stable machine-readable code (`invalid_name`, `conflict`, `not_found`...).
    pub(crate) code: String,
}

/// `PUT /v1/names/{name}` and `PUT /v1/groups/{group}/{member}` bodies.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutBody {
    /// Metadata (text, at most 4096 bytes).
    #[serde(default)]
    pub(crate) meta: String,
    /// Lease for a new session made for this entry (ignored with `session`), milliseconds.
    #[serde(default)]
    pub(crate) ttl_ms: Option<u64>,
    /// Hold the entry in this existing session instead.
    #[serde(default)]
    pub(crate) session: Option<u64>,
}

/// `POST /v1/sessions` body.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionBody {
    /// Lease, milliseconds (default 10000).
    #[serde(default)]
    pub(crate) ttl_ms: Option<u64>,
}

/// A sidecar session as returned by the API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SessionJson {
    pub(crate) session: u64,
    pub(crate) pid: PidJson,
    /// `None` for a stream-held session.
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) names: Vec<String>,
    pub(crate) groups: Vec<String>,
}

/// A session as named in answers to PUT and renew: its id, pid and lease, without its entries
/// (so the answer's size does not grow with the session).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SessionRef {
    pub(crate) session: u64,
    pub(crate) pid: PidJson,
    /// `None` for a stream-held session.
    pub(crate) ttl_ms: Option<u64>,
}

/// An event told to a sidecar session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SessionEventJson {
    /// `lost` (a name was lost: conflict or otherwise) or `expired`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) session: u64,
    pub(crate) name: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) winner: Option<EntryJson>,
}
