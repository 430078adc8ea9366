//! `Registration` (the guard of a unique name) and `Subscription` (a stream of events).

use bytes::Bytes;
use once_cell::race::OnceBox;
use pidmesh_proto::{Dot, Entry, Event, Hlc, Key, Pid};
use tokio::sync::broadcast;

use crate::error::RemoveError;
use crate::registry::{Lost, Registry};

/// A live registration of a unique name. Dropping it unregisters the name.
///
/// A small handle (the registry and an id in the node's table of guards); the entry itself
/// stays in the node's store. Watch [`Registration::lost`] to learn when a conflict, the
/// process's exit or the node's stop ends it.
pub struct Registration {
    pub(crate) registry: Registry,
    /// This guard's id; `NO_ID` once [`Registration::unregister`] released it.
    pub(crate) id: u64,
    /// [`Registration::entry`], built on its first call.
    pub(crate) entry: OnceBox<Entry>,
}

/// `Registration::id` of a guard that released its id (sequence numbers start at 1).
const NO_ID: u64 = 0;

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("entry", self.entry())
            .finish()
    }
}

impl Registration {
    pub(crate) fn new(registry: Registry, id: u64) -> Self {
        Self {
            registry,
            id,
            entry: OnceBox::new(),
        }
    }

    /// The entry as registered. Read from the node's store on the first call and kept.
    pub fn entry(&self) -> &Entry {
        self.entry.get_or_init(|| {
            let shared = &self.registry.shared;
            let node = shared.read();
            // A guard's id stays live until the guard goes, and its entry is in the store, in
            // the node's pending events or in the guard table: the fallback is never built.
            Box::new(
                shared
                    .guards
                    .entry(self.id, &node, &shared.id)
                    .unwrap_or_else(|| Entry {
                        key: Key::name(""),
                        pid: Pid {
                            node: shared.id.clone(),
                            local: 0,
                        },
                        meta: Bytes::new(),
                        registered_at: Hlc::default(),
                        dot: Dot::new(shared.id.clone(), 0),
                    }),
            )
        })
    }

    /// True once this registration is no longer in this node's registry: it lost a conflict
    /// (its node removed it), its process exited, or the node stopped. Does not wait; an
    /// unresolved duplicate that has not been removed yet is not lost (see
    /// [`crate::Registry::lookup`] for who wins meanwhile).
    pub fn is_lost(&self) -> bool {
        let shared = &self.registry.shared;
        // The node first (lock order); a metadata update cannot move the entry meanwhile.
        let node = shared.read();
        let Some(claim) = shared.guards.claim(self.id) else {
            return true;
        };
        if claim.lost || shared.check_running().is_err() {
            return true;
        }
        !node
            .registry()
            .contains_dot(&Dot::new(shared.id.clone(), claim.seq))
    }

    /// Waits until this registration goes away for a reason other than this guard: lost to a
    /// conflict (with the winner), its process exited, or the node stopped (`None`). Once it
    /// has returned the loss, later calls return `None` at once.
    ///
    /// Cancel-safe.
    pub async fn lost(&mut self) -> Option<Lost> {
        let (shared, id) = (&self.registry.shared, self.id);
        std::future::poll_fn(|cx| shared.guards.poll_lost(id, cx)).await
    }

    /// Unregisters now.
    ///
    /// # Errors
    /// [`RemoveError::NotFound`] if the entry is already gone (lost or its process exited).
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn unregister(mut self) -> Result<Entry, RemoveError> {
        let id = std::mem::replace(&mut self.id, NO_ID);
        let shared = &self.registry.shared;
        let Some(claim) = shared.guards.release(id) else {
            return Err(RemoveError::NotFound);
        };
        if claim.lost {
            return Err(RemoveError::NotFound);
        }
        let dot = Dot::new(shared.id.clone(), claim.seq);
        shared.mutate(|n, now| {
            let Some((key, slot)) = n.registry().get_dot(&dot) else {
                return Err(RemoveError::NotFound);
            };
            let pid = Pid {
                node: shared.id.clone(),
                local: slot.value.pid,
            };
            Ok(n.unregister(now, &key.name, &pid)?)
        })?
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let shared = &self.registry.shared;
        let Some(claim) = shared.guards.release(self.id) else {
            return;
        };
        if claim.lost {
            // Its entry went away already (the loss was reported to this guard).
            return;
        }
        // Only remove the registration this guard created: the entry with its dot (a later
        // registration of the same name and pid has another).
        let dot = Dot::new(shared.id.clone(), claim.seq);
        let _ = shared.mutate(|n, now| {
            if let Some((key, slot)) = n.registry().get_dot(&dot) {
                let pid = Pid {
                    node: shared.id.clone(),
                    local: slot.value.pid,
                };
                let _ = n.unregister(now, &key.name, &pid);
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
