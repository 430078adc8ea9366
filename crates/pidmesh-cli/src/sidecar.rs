//! Registrations held for processes not written in Rust (the sidecar API).
//!
//! Each client session owns one pid (a mailbox of this node) and the entries registered for it.
//! A session lives as long as its lease is renewed, or as long as its event stream stays open;
//! when it ends its mailbox is dropped, which is the process-exit rule: every entry of the pid is
//! removed everywhere. A name the session loses (a conflict after a heal) is told on its event
//! stream and kept in its recent events.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pidmesh::{
    CancellationToken, Entry, JoinError, Key, Mailbox, Pid, RegisterError, Registry, RemoveError,
};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::api::{EntryJson, SessionEventJson, SessionJson, SessionRef, reason_str};

/// Default lease of a session made without a TTL.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Shortest lease a client may ask for.
pub(crate) const MIN_TTL: Duration = Duration::from_millis(100);
/// Recent events kept per session.
const RECENT: usize = 64;

/// Why a sidecar operation failed (mapped to an HTTP status by the server).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SidecarError {
    #[error("{0}")]
    Register(#[from] RegisterError),
    #[error("{0}")]
    Join(#[from] JoinError),
    #[error("{0}")]
    Remove(#[from] RemoveError),
    #[error("no such session: {0}")]
    NoSession(u64),
    #[error("{0} is not held by a sidecar session of this node")]
    NotHeld(String),
    #[error("ttl_ms must be between {} and {} milliseconds", MIN_TTL.as_millis(), .0.as_millis())]
    BadTtl(Duration),
    #[error("the registry has stopped")]
    Stopped,
}

struct Session {
    pid: Pid,
    _mailbox: Mailbox,
    /// `None` while an event stream holds the session.
    lease: Option<Duration>,
    deadline: Option<Instant>,
    names: BTreeMap<String, CancellationToken>,
    groups: BTreeSet<(String, String)>,
    events: broadcast::Sender<SessionEventJson>,
    recent: VecDeque<SessionEventJson>,
    /// Made for a single entry: ends with its last entry.
    implicit: bool,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<u64, Session>,
    names: HashMap<String, u64>,
    members: HashMap<(String, String), u64>,
}

/// The sidecar sessions of one node.
pub(crate) struct Sidecar {
    registry: Registry,
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    max_lease: Duration,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar").finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sidecar {
    pub(crate) fn new(registry: Registry, max_lease: Duration) -> Arc<Self> {
        Arc::new(Self {
            registry,
            inner: Mutex::new(Inner::default()),
            next_id: AtomicU64::new(1),
            max_lease,
        })
    }

    /// Spawns the task that ends sessions whose lease lapsed. It stops when `stop` fires.
    pub(crate) fn spawn_reaper(self: &Arc<Self>, stop: CancellationToken) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(me) = me.upgrade() else { return };
                me.reap(Instant::now());
            }
        });
    }

    fn reap(&self, now: Instant) {
        let expired: Vec<u64> = lock(&self.inner)
            .sessions
            .iter()
            .filter(|(_, s)| s.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            tracing::info!(session = id, "sidecar session lease lapsed");
            self.end(id, "expired");
        }
    }

    pub(crate) fn session_count(&self) -> usize {
        lock(&self.inner).sessions.len()
    }

    fn check_ttl(&self, ttl_ms: Option<u64>) -> Result<Duration, SidecarError> {
        let ttl = ttl_ms.map_or(DEFAULT_TTL, Duration::from_millis);
        if ttl < MIN_TTL || ttl > self.max_lease {
            return Err(SidecarError::BadTtl(self.max_lease));
        }
        Ok(ttl)
    }

    /// Opens a session: with a lease (`Some(ttl_ms or default)`), or held by a stream (`None`).
    pub(crate) fn open(
        &self,
        lease: Option<Option<u64>>,
        implicit: bool,
    ) -> Result<SessionJson, SidecarError> {
        let lease = match lease {
            Some(ttl_ms) => Some(self.check_ttl(ttl_ms)?),
            None => None,
        };
        let (pid, mailbox) = self
            .registry
            .spawn_mailbox()
            .map_err(|_| SidecarError::Stopped)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (events, _) = broadcast::channel(RECENT);
        let s = Session {
            pid,
            _mailbox: mailbox,
            lease,
            deadline: lease.map(|l| Instant::now() + l),
            names: BTreeMap::new(),
            groups: BTreeSet::new(),
            events,
            recent: VecDeque::new(),
            implicit,
        };
        let json = describe(id, &s);
        let mut inner = lock(&self.inner);
        inner.sessions.insert(id, s);
        metrics::gauge!("pidmesh.sidecar.sessions").set(inner.sessions.len() as f64);
        Ok(json)
    }

    /// Ends a session: its pid exits, so all its entries are removed everywhere.
    pub(crate) fn end(&self, id: u64, why: &str) -> bool {
        let mut inner = lock(&self.inner);
        let Some(s) = inner.sessions.remove(&id) else {
            return false;
        };
        for name in s.names.keys() {
            inner.names.remove(name);
        }
        for key in &s.groups {
            inner.members.remove(key);
        }
        metrics::gauge!("pidmesh.sidecar.sessions").set(inner.sessions.len() as f64);
        drop(inner);
        let _ = s.events.send(SessionEventJson {
            kind: why.to_owned(),
            session: id,
            name: None,
            reason: None,
            winner: None,
        });
        // Dropping the mailbox ends the process: its entries go with reason `process_exited`.
        for t in s.names.values() {
            t.cancel();
        }
        true
    }

    pub(crate) fn renew(&self, id: u64) -> Result<SessionRef, SidecarError> {
        let mut inner = lock(&self.inner);
        let s = inner
            .sessions
            .get_mut(&id)
            .ok_or(SidecarError::NoSession(id))?;
        if let Some(l) = s.lease {
            s.deadline = Some(Instant::now() + l);
        }
        Ok(describe_ref(id, s))
    }

    pub(crate) fn get(
        &self,
        id: u64,
    ) -> Result<(SessionJson, Vec<SessionEventJson>), SidecarError> {
        let inner = lock(&self.inner);
        let s = inner.sessions.get(&id).ok_or(SidecarError::NoSession(id))?;
        Ok((describe(id, s), s.recent.iter().cloned().collect()))
    }

    pub(crate) fn subscribe(
        &self,
        id: u64,
    ) -> Result<broadcast::Receiver<SessionEventJson>, SidecarError> {
        let inner = lock(&self.inner);
        let s = inner.sessions.get(&id).ok_or(SidecarError::NoSession(id))?;
        Ok(s.events.subscribe())
    }

    /// The session holding `name` on this node, if any.
    pub(crate) fn holder_of_name(&self, name: &str) -> Option<u64> {
        lock(&self.inner).names.get(name).copied()
    }

    /// The session holding `(group, member)` on this node, if any.
    pub(crate) fn holder_of_member(&self, group: &str, member: &str) -> Option<u64> {
        lock(&self.inner)
            .members
            .get(&(group.to_owned(), member.to_owned()))
            .copied()
    }

    fn session_for(
        &self,
        session: Option<u64>,
        ttl_ms: Option<u64>,
    ) -> Result<(u64, Pid, bool), SidecarError> {
        match session {
            Some(id) => {
                let inner = lock(&self.inner);
                let s = inner.sessions.get(&id).ok_or(SidecarError::NoSession(id))?;
                Ok((id, s.pid.clone(), false))
            }
            None => {
                let j = self.open(Some(ttl_ms), true)?;
                let pid = lock(&self.inner)
                    .sessions
                    .get(&j.session)
                    .map(|s| s.pid.clone())
                    .ok_or(SidecarError::NoSession(j.session))?;
                Ok((j.session, pid, true))
            }
        }
    }

    /// Updates the metadata of `key`, held by session `holder`, and renews the session.
    async fn update_held(
        &self,
        holder: u64,
        key: &Key,
        meta: String,
    ) -> Result<(SessionRef, EntryJson, bool), SidecarError> {
        let pid = lock(&self.inner)
            .sessions
            .get(&holder)
            .map(|s| s.pid.clone())
            .ok_or(SidecarError::NoSession(holder))?;
        let entry = self.registry.update_meta(key, &pid, meta).await?;
        let j = self.renew(holder)?;
        Ok((j, (&entry).into(), false))
    }

    /// Registers `name` for a session (a new implicit one with `ttl_ms` unless `session`).
    /// Re-putting a name the same session holds updates its metadata.
    pub(crate) async fn put_name(
        self: &Arc<Self>,
        name: &str,
        meta: String,
        ttl_ms: Option<u64>,
        session: Option<u64>,
    ) -> Result<(SessionRef, EntryJson, bool), SidecarError> {
        if let Some(holder) = self.holder_of_name(name)
            && session == Some(holder)
        {
            return self.update_held(holder, &Key::name(name), meta).await;
        }
        // Validate the TTL before anything is created.
        if session.is_none() {
            self.check_ttl(ttl_ms)?;
        }
        let (id, pid, implicit) = self.session_for(session, ttl_ms)?;
        let mut reg = match self.registry.register(name, &pid, meta).await {
            Ok(r) => r,
            Err(e) => {
                if implicit {
                    self.end(id, "closed");
                }
                return Err(e.into());
            }
        };
        let entry: Entry = reg.entry().clone();
        let cancel = CancellationToken::new();
        {
            let mut inner = lock(&self.inner);
            let Some(s) = inner.sessions.get_mut(&id) else {
                return Err(SidecarError::NoSession(id));
            };
            s.names.insert(name.to_owned(), cancel.clone());
            inner.names.insert(name.to_owned(), id);
        }
        let me = Arc::downgrade(self);
        let name_owned = name.to_owned();
        tokio::spawn(async move {
            tokio::select! {
                lost = reg.lost() => {
                    if let Some(me) = me.upgrade() {
                        me.on_lost(id, &name_owned, lost);
                    }
                }
                _ = cancel.cancelled() => drop(reg),
            }
        });
        let j = self.renew(id)?;
        Ok((j, (&entry).into(), true))
    }

    fn on_lost(&self, id: u64, name: &str, lost: Option<pidmesh::Lost>) {
        let mut inner = lock(&self.inner);
        if inner.names.get(name) != Some(&id) {
            return; // removed on purpose
        }
        inner.names.remove(name);
        let Some(s) = inner.sessions.get_mut(&id) else {
            return;
        };
        s.names.remove(name);
        let ev = SessionEventJson {
            kind: "lost".into(),
            session: id,
            name: Some(name.to_owned()),
            reason: lost.as_ref().map(|l| reason_str(l.reason).to_owned()),
            winner: lost.and_then(|l| l.winner).as_ref().map(Into::into),
        };
        metrics::counter!("pidmesh.sidecar.lost").increment(1);
        tracing::info!(session = id, name, reason = ?ev.reason, "sidecar name lost");
        if s.recent.len() == RECENT {
            s.recent.pop_front();
        }
        s.recent.push_back(ev.clone());
        let _ = s.events.send(ev);
        let end = s.implicit && s.names.is_empty() && s.groups.is_empty();
        drop(inner);
        if end {
            self.end(id, "closed");
        }
    }

    /// Unregisters `name` if a sidecar session of this node holds it.
    pub(crate) async fn delete_name(&self, name: &str) -> Result<EntryJson, SidecarError> {
        let (id, pid, token, end) = {
            let mut inner = lock(&self.inner);
            let id = inner
                .names
                .remove(name)
                .ok_or_else(|| SidecarError::NotHeld(name.to_owned()))?;
            let s = inner
                .sessions
                .get_mut(&id)
                .ok_or(SidecarError::NoSession(id))?;
            let token = s.names.remove(name);
            let end = s.implicit && s.names.is_empty() && s.groups.is_empty();
            (id, s.pid.clone(), token, end)
        };
        let r = self.registry.unregister(name, &pid).await;
        if let Some(t) = token {
            t.cancel();
        }
        if end {
            self.end(id, "closed");
        }
        Ok((&r?).into())
    }

    /// Joins `group` as `member` (a client-chosen label) for a session.
    pub(crate) async fn put_member(
        &self,
        group: &str,
        member: &str,
        meta: String,
        ttl_ms: Option<u64>,
        session: Option<u64>,
    ) -> Result<(SessionRef, EntryJson, bool), SidecarError> {
        let key = (group.to_owned(), member.to_owned());
        if let Some(holder) = self.holder_of_member(group, member)
            && session == Some(holder)
        {
            return self.update_held(holder, &Key::group(group), meta).await;
        }
        if session.is_none() {
            self.check_ttl(ttl_ms)?;
        }
        let (id, pid, implicit) = self.session_for(session, ttl_ms)?;
        let entry = match self.registry.join(group, &pid, meta).await {
            Ok(e) => e,
            Err(e) => {
                if implicit {
                    self.end(id, "closed");
                }
                return Err(e.into());
            }
        };
        {
            let mut inner = lock(&self.inner);
            let Some(s) = inner.sessions.get_mut(&id) else {
                return Err(SidecarError::NoSession(id));
            };
            s.groups.insert(key.clone());
            inner.members.insert(key, id);
        }
        let j = self.renew(id)?;
        Ok((j, (&entry).into(), true))
    }

    /// Leaves `group` as `member`.
    pub(crate) async fn delete_member(
        &self,
        group: &str,
        member: &str,
    ) -> Result<EntryJson, SidecarError> {
        let key = (group.to_owned(), member.to_owned());
        let (id, pid, end) = {
            let mut inner = lock(&self.inner);
            let id = inner
                .members
                .remove(&key)
                .ok_or_else(|| SidecarError::NotHeld(format!("{group}/{member}")))?;
            let s = inner
                .sessions
                .get_mut(&id)
                .ok_or(SidecarError::NoSession(id))?;
            s.groups.remove(&key);
            let end = s.implicit && s.names.is_empty() && s.groups.is_empty();
            (id, s.pid.clone(), end)
        };
        let r = self.registry.leave(group, &pid).await;
        if end {
            self.end(id, "closed");
        }
        Ok((&r?).into())
    }

    /// Ends every session (node shutdown).
    pub(crate) fn end_all(&self) {
        let ids: Vec<u64> = lock(&self.inner).sessions.keys().copied().collect();
        for id in ids {
            self.end(id, "closed");
        }
    }
}

fn describe_ref(id: u64, s: &Session) -> SessionRef {
    SessionRef {
        session: id,
        pid: (&s.pid).into(),
        ttl_ms: s
            .lease
            .map(|l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX)),
    }
}

fn describe(id: u64, s: &Session) -> SessionJson {
    SessionJson {
        session: id,
        pid: (&s.pid).into(),
        ttl_ms: s
            .lease
            .map(|l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX)),
        names: s.names.keys().cloned().collect(),
        groups: s.groups.iter().map(|(g, m)| format!("{g}/{m}")).collect(),
    }
}

/// Ends a stream-held session when dropped (the client's stream went away).
pub(crate) struct StreamGuard {
    pub(crate) sidecar: Arc<Sidecar>,
    pub(crate) id: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.sidecar.end(self.id, "closed") {
            tracing::info!(session = self.id, "sidecar session stream closed");
        }
    }
}
