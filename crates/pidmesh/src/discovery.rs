//! Finding the cluster beyond static seeds: discovery sources polled by the node, and the peer
//! cache that carries the addresses a node remembered into its next life.
//!
//! A [`Discovery`] source is asked for addresses when the node starts and then every
//! `RegistryBuilder::discovery_interval`; its answer is handed to the node, which announces to
//! every address no live member holds (see `Node::set_discovered`). Three sources come with
//! the crate: [`StaticDiscovery`], [`DnsDiscovery`] (a DNS name resolving to many addresses)
//! and [`FileDiscovery`] (a file re-read when it changes).
//!
//! The peer cache (`RegistryBuilder::peer_cache`) is a file in which the node keeps the
//! addresses of members it has seen; the next start reads it back, so a restarted node finds
//! the cluster even when every seed is gone, and counts the membership it knew for
//! `SingletonPolicy::MajorityOfKnown`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use pidmesh_proto::RememberedAddr;

use crate::driver::{Shared, lock};

/// A boxed future returned by [`Discovery::discover`].
pub type DiscoveryFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, DiscoveryError>> + Send + 'a>>;

/// Why a discovery source could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A DNS name did not resolve.
    #[error("resolving {name}: {source}")]
    Resolve {
        /// The name looked up (`host:port`).
        name: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// A source of addresses where members of the cluster may listen (besides the static seeds).
///
/// The node polls it at start and then every `RegistryBuilder::discovery_interval`; each
/// answer replaces the previous one. An error keeps the previous answer and is logged.
pub trait Discovery: Send + Sync + 'static {
    /// Looks up the addresses now.
    ///
    /// # Errors
    /// A [`DiscoveryError`] when the source cannot answer (the node keeps its previous answer).
    ///
    /// Cancel-safety: the node drops the future only when it stops; implementations must not
    /// leave shared state half-updated at an await point.
    fn discover(&self) -> DiscoveryFuture<'_>;
}

/// A fixed list of addresses.
#[derive(Debug, Clone, Default)]
pub struct StaticDiscovery {
    addrs: Vec<SocketAddr>,
}

impl StaticDiscovery {
    /// Always answers `addrs`.
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            addrs: addrs.into_iter().collect(),
        }
    }
}

impl Discovery for StaticDiscovery {
    fn discover(&self) -> DiscoveryFuture<'_> {
        let addrs = self.addrs.clone();
        Box::pin(async move { Ok(addrs) })
    }
}

/// A DNS name (`host:port`) resolving to the members' addresses, as with a headless
/// Kubernetes service or a DNS round-robin record: every address it resolves to is a candidate.
#[derive(Debug, Clone)]
pub struct DnsDiscovery {
    name: String,
}

impl DnsDiscovery {
    /// Resolves `host_port` (for example `"pidmesh.default.svc.cluster.local:7400"`) with
    /// tokio's `lookup_host` on every poll.
    pub fn new(host_port: impl Into<String>) -> Self {
        Self {
            name: host_port.into(),
        }
    }
}

impl Discovery for DnsDiscovery {
    fn discover(&self) -> DiscoveryFuture<'_> {
        Box::pin(async move {
            let found = tokio::net::lookup_host(self.name.as_str())
                .await
                .map_err(|source| DiscoveryError::Resolve {
                    name: self.name.clone(),
                    source,
                })?;
            let mut addrs: Vec<SocketAddr> = found.collect();
            addrs.sort();
            addrs.dedup();
            Ok(addrs)
        })
    }
}

/// A file listing one address per line (`ip:port`, or `host:port` resolved on reading; blank
/// lines and `#` comments ignored), re-read when its modification time or size changes.
/// Lines that are not addresses are skipped and logged.
#[derive(Debug)]
pub struct FileDiscovery {
    path: PathBuf,
    last: Mutex<Option<FileSnapshot>>,
}

/// What a [`FileDiscovery`] read last: the file's modification time and size, and its addresses.
type FileSnapshot = (Option<SystemTime>, u64, Vec<SocketAddr>);

impl FileDiscovery {
    /// Reads addresses from `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            last: Mutex::new(None),
        }
    }
}

impl Discovery for FileDiscovery {
    fn discover(&self) -> DiscoveryFuture<'_> {
        Box::pin(async move {
            let read_err = |source| DiscoveryError::Read {
                path: self.path.clone(),
                source,
            };
            let meta = std::fs::metadata(&self.path).map_err(read_err)?;
            let stamp = (meta.modified().ok(), meta.len());
            if let Some((modified, len, addrs)) = lock(&self.last).as_ref()
                && (*modified, *len) == stamp
            {
                return Ok(addrs.clone());
            }
            let text = std::fs::read_to_string(&self.path).map_err(read_err)?;
            let mut addrs = Vec::new();
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                if let Ok(a) = line.parse::<SocketAddr>() {
                    addrs.push(a);
                    continue;
                }
                match tokio::net::lookup_host(line).await {
                    Ok(found) => addrs.extend(found),
                    Err(e) => {
                        tracing::warn!(path = %self.path.display(), line, error = %e, "discovery file: not an address");
                    }
                }
            }
            addrs.sort();
            addrs.dedup();
            *lock(&self.last) = Some((stamp.0, stamp.1, addrs.clone()));
            Ok(addrs)
        })
    }
}

/// Polls `source` until the node stops, handing each answer to the node.
pub(crate) async fn poll_discovery(
    shared: Weak<Shared>,
    source: Arc<dyn Discovery>,
    every: Duration,
) {
    loop {
        let answer = source.discover().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match answer {
            Ok(addrs) => {
                if shared
                    .mutate(|n, now| n.set_discovered(now, &addrs))
                    .is_err()
                {
                    return;
                }
                metrics::gauge!("pidmesh.discovery.addresses").set(addrs.len() as f64);
            }
            Err(e) => {
                if shared.check_running().is_err() {
                    return;
                }
                metrics::counter!("pidmesh.discovery.errors").increment(1);
                tracing::warn!(error = %e, "discovery failed; keeping the previous addresses");
            }
        }
        drop(shared);
        tokio::time::sleep(every).await;
    }
}

/// Reads a peer cache file: one `address last-seen-ms` per line. A missing file is an empty
/// cache; unreadable lines are skipped.
pub(crate) fn read_peer_cache(path: &Path) -> Vec<RememberedAddr> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "peer cache not readable");
            return Vec::new();
        }
    };
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let addr = parts.next()?.parse().ok()?;
            let last_seen_ms = parts.next()?.parse().ok()?;
            Some(RememberedAddr { addr, last_seen_ms })
        })
        .collect()
}

/// Writes the peer cache atomically (a temporary file renamed over the old one).
fn write_peer_cache(path: &Path, addrs: &[RememberedAddr]) -> io::Result<()> {
    let mut text =
        String::from("# pidmesh peer cache: address last-seen-ms (written by the node)\n");
    for r in addrs {
        text.push_str(&format!("{} {}\n", r.addr, r.last_seen_ms));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Keeps the peer cache up to date until the node stops: writes it when the set of remembered
/// addresses changed, and at least every `refresh` (so last-seen times stay current), and once
/// more when the node stops.
pub(crate) async fn keep_peer_cache(
    shared: Weak<Shared>,
    path: PathBuf,
    every: Duration,
    refresh: Duration,
) {
    let mut written: Vec<SocketAddr> = Vec::new();
    let mut written_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let stopped = shared.check_running().is_err();
        let now_addrs = shared.read().remembered();
        drop(shared);
        let mut addrs: Vec<SocketAddr> = now_addrs.iter().map(|r| r.addr).collect();
        addrs.sort();
        let due = written_at.is_none_or(|t| t.elapsed() >= refresh);
        if addrs != written || due || stopped {
            let p = path.clone();
            let result =
                tokio::task::spawn_blocking(move || write_peer_cache(&p, &now_addrs)).await;
            match result {
                Ok(Ok(())) => {
                    written = addrs;
                    written_at = Some(Instant::now());
                }
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "peer cache not written")
                }
                Err(e) => tracing::warn!(error = %e, "peer cache writer failed"),
            }
        }
        if stopped {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("pidmesh-{name}-{}", std::process::id()))
    }

    #[tokio::test]
    async fn file_discovery_reads_and_rereads_on_change() {
        let path = temp("discovery-file");
        std::fs::write(
            &path,
            "# members\n127.0.0.1:7001\n\n127.0.0.1:7002 # second\nnot an address\n",
        )
        .expect("writes");
        let d = FileDiscovery::new(&path);
        let first = d.discover().await.expect("reads");
        assert_eq!(
            first,
            vec![
                "127.0.0.1:7001".parse::<SocketAddr>().expect("addr"),
                "127.0.0.1:7002".parse().expect("addr")
            ]
        );
        std::fs::write(&path, "127.0.0.1:7003\n127.0.0.1:7004\n127.0.0.1:7005\n")
            .expect("rewrites");
        let second = d.discover().await.expect("reads");
        assert_eq!(second.len(), 3, "re-read after the change: {second:?}");
        let _ = std::fs::remove_file(&path);
        assert!(matches!(
            d.discover().await,
            Err(DiscoveryError::Read { .. })
        ));
    }

    #[tokio::test]
    async fn dns_discovery_resolves_a_name_to_addresses() {
        let d = DnsDiscovery::new("localhost:7400");
        let addrs = d.discover().await.expect("localhost resolves");
        assert!(!addrs.is_empty());
        assert!(
            addrs
                .iter()
                .all(|a| a.port() == 7400 && a.ip().is_loopback())
        );
        assert!(matches!(
            DnsDiscovery::new("no port here").discover().await,
            Err(DiscoveryError::Resolve { .. })
        ));
    }

    #[test]
    fn peer_cache_round_trips() {
        let path = temp("peer-cache");
        let addrs = vec![
            RememberedAddr {
                addr: "127.0.0.1:7001".parse().expect("addr"),
                last_seen_ms: 1_790_000_000_000,
            },
            RememberedAddr {
                addr: "[::1]:7002".parse().expect("addr"),
                last_seen_ms: 1_790_000_000_500,
            },
        ];
        write_peer_cache(&path, &addrs).expect("writes");
        assert_eq!(read_peer_cache(&path), addrs);
        let _ = std::fs::remove_file(&path);
        assert!(
            read_peer_cache(&path).is_empty(),
            "a missing cache is empty"
        );
    }
}
