//! `Registration` (the guard of a unique name) and `Subscription` (a stream of events).

use pidmesh_proto::{Entry, Event};
use tokio::sync::{broadcast, oneshot};

use crate::driver::lock;
use crate::error::RemoveError;
use crate::registry::{Lost, Registry};

/// A live registration of a unique name. Dropping it unregisters the name.
#[derive(Debug)]
pub struct Registration {
    pub(crate) registry: Registry,
    pub(crate) entry: Entry,
    pub(crate) lost: oneshot::Receiver<Lost>,
    pub(crate) done: bool,
}

impl Registration {
    /// The entry as registered.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// True once this registration is no longer in this node's registry: it lost a conflict
    /// (its node removed it), its process exited, or the node stopped. Does not wait; an
    /// unresolved duplicate that has not been removed yet is not lost (see
    /// [`crate::Registry::lookup`] for who wins meanwhile).
    pub fn is_lost(&self) -> bool {
        let shared = &self.registry.shared;
        if self.done || shared.check_running().is_err() {
            return true;
        }
        !shared
            .reader
            .entries(&self.entry.key)
            .iter()
            .any(|e| e.pid == self.entry.pid && e.registered_at == self.entry.registered_at)
    }

    /// Waits until this registration goes away for a reason other than this guard: lost to a
    /// conflict (with the winner), its process exited, or the node stopped (`None`).
    ///
    /// Cancel-safe.
    pub async fn lost(&mut self) -> Option<Lost> {
        let r = (&mut self.lost).await.ok();
        if r.is_some() {
            self.done = true;
        }
        r
    }

    /// Unregisters now.
    ///
    /// # Errors
    /// [`RemoveError::NotFound`] if the entry is already gone (lost or its process exited).
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn unregister(mut self) -> Result<Entry, RemoveError> {
        self.done = true;
        lock(&self.registry.shared.watchers)
            .remove(&(self.entry.key.name.clone(), self.entry.pid.local));
        let (name, pid) = (&self.entry.key.name, &self.entry.pid);
        Ok(self
            .registry
            .shared
            .mutate(|n, now| n.unregister(now, name, pid))??)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let shared = &self.registry.shared;
        lock(&shared.watchers).remove(&(self.entry.key.name.clone(), self.entry.pid.local));
        let (name, pid, at) = (
            &self.entry.key.name,
            &self.entry.pid,
            self.entry.registered_at,
        );
        // Only remove the registration this guard created: same pid and registration time (a
        // metadata update keeps both), not a later registration of the same pid.
        let _ = shared.mutate(|n, now| {
            if n.entries(&self.entry.key)
                .iter()
                .any(|e| e.pid == *pid && e.registered_at == at)
            {
                let _ = n.unregister(now, name, pid);
            }
        });
    }
}

/// A stream of [`Event`]s, optionally filtered by key prefix.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) rx: broadcast::Receiver<Event>,
    pub(crate) prefix: Option<String>,
}

impl Subscription {
    /// Checks `probe` now and after every event this subscription sees, until it answers
    /// `Some`, the node stops, or `timeout` passes. Subscribe before the first check, so no
    /// change between the check and the wait is missed. Cancel-safe.
    pub(crate) async fn wait_for<T>(
        mut self,
        timeout: std::time::Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let wait = async {
            loop {
                if let Some(found) = probe() {
                    return Some(found);
                }
                self.recv().await?;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// The next matching event; `None` once the node has stopped. A subscriber that falls more
    /// than the event capacity behind skips the oldest events and is told so: it receives
    /// [`Event::Lagged`] with the number it missed (of all kinds, before prefix filtering), then
    /// the events that follow.
    ///
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) if self.matches(&e) => return Some(e),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "event subscriber lagged");
                    metrics::counter!("pidmesh.events.lagged").increment(n);
                    return Some(Event::Lagged { missed: n });
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn matches(&self, e: &Event) -> bool {
        let Some(p) = &self.prefix else { return true };
        let key = match e {
            Event::Registered(x) => &x.key,
            Event::Unregistered { entry, .. } | Event::MetaUpdated { entry, .. } => &entry.key,
            Event::ConflictResolved { key, .. } | Event::ResolverFailed { key, .. } => key,
            Event::SingletonStarted { name, .. } | Event::SingletonStopped { name, .. } => {
                return name.starts_with(p.as_str());
            }
            // Node events, lag reports and kinds added later pass.
            _ => return true,
        };
        key.name.starts_with(p.as_str())
    }
}
