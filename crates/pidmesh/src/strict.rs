//! Strict registration: a unique name that is never held twice, even across a partition.
//!
//! [`Registry::register_strict`] claims the name and holds it under the lease of quorum
//! singletons (`pidmesh-proto`'s election): it succeeds only once `quorum` nodes (this one
//! included) vouched that they know no other claim on the name, and it keeps renewing the
//! lease; a vouching node promises not to vouch for another claim for a lease and an eighth.
//! When the lease can no longer be renewed (the quorum is out of reach) or the claim loses the
//! name, the guard reports it ([`StrictRegistration::lost`]) and the registration is over.
//!
//! What it guarantees and assumes (clock rates, prompt stops, the quorum size) is in
//! `docs/singletons.md`, section "Strict registration".

use std::time::Duration;

use bytes::Bytes;
use pidmesh_proto::{Entry, Event, Pid, StopReason};
use tokio::sync::broadcast;

use crate::registry::Registry;
use crate::{Stopped, scope};
use pidmesh_proto::RegisterError as P;

/// Why [`Registry::register_strict`] failed. Nothing is left claimed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StrictError {
    /// The name is empty, too long or has control characters.
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    /// The quorum is 0.
    #[error("the quorum must be at least 1")]
    InvalidQuorum,
    /// The metadata (with the 26-byte running marker) is larger than 4096 bytes.
    #[error("metadata is {0} bytes, over the limit")]
    MetaTooLarge(usize),
    /// The pid is not a live mailbox of this node.
    #[error("{0} is not a live process of this node")]
    NotLocal(Pid),
    /// The name was held by the attached entry until the timeout (or this node already has a
    /// strict registration or a singleton candidacy for it).
    #[error("name is held by {}", .0.pid)]
    AlreadyRegistered(Box<Entry>),
    /// This node saw fewer than `quorum` members (itself included) at the timeout: no quorum
    /// could vouch.
    #[error("no quorum: {seen} of {quorum} nodes reachable")]
    NoQuorum {
        /// Members this node saw at the timeout, itself included.
        seen: usize,
        /// The quorum asked for.
        quorum: usize,
    },
    /// Enough members were seen but not enough vouched before the timeout (a competing
    /// claim, a promise to another claimant still running, or slow links).
    #[error("the quorum did not vouch in time")]
    Timeout,
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// How a strict registration ended, as its guard reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrictLost {
    /// `LostQuorum` when the lease could not be renewed, `LostName` when the claim was lost
    /// (its process exited, or another claim won), `Shutdown` when the node left.
    pub reason: StopReason,
}

/// A held strict registration. Dropping it releases the name.
///
/// From the moment [`StrictRegistration::lost`] completes (or [`StrictRegistration::is_held`]
/// turns false), the process must act as if it no longer holds the name: another node may
/// claim it once this node's vouchers' promises have run out.
#[derive(Debug)]
pub struct StrictRegistration {
    registry: Registry,
    entry: Entry,
    /// The stored key name.
    name: String,
    events: broadcast::Receiver<Event>,
    ended: Option<StrictLost>,
    released: bool,
}

impl StrictRegistration {
    /// The claim as it was when the quorum first vouched (its metadata carries the running
    /// marker; [`Entry::app_meta`] is the application's part).
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// True while this node holds the name under a valid lease.
    pub fn is_held(&self) -> bool {
        self.ended.is_none()
            && self
                .registry
                .read_node(|n| n.strict_held(&self.name).is_some())
    }

    /// Waits until the registration ends: the lease could not be renewed in time
    /// (`LostQuorum`), the claim was lost (`LostName`), or the node left (`Shutdown`). Pending
    /// while the name is held. Returns the same answer again once it has ended.
    ///
    /// Cancel-safe.
    pub async fn lost(&mut self) -> StrictLost {
        if let Some(l) = self.ended {
            return l;
        }
        loop {
            // The node records why the registration ended, so a stop event missed (lagged, or
            // sent before this guard existed) still gives the right reason.
            if let Some(reason) = self.registry.read_node(|n| n.strict_ended(&self.name)) {
                return self.end(reason);
            }
            match self.events.recv().await {
                Ok(Event::SingletonStopped { name, reason }) if name == self.name => {
                    return self.end(reason);
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    return self.end(StopReason::Shutdown);
                }
            }
        }
    }

    fn end(&mut self, reason: StopReason) -> StrictLost {
        let l = StrictLost { reason };
        self.ended = Some(l);
        l
    }

    /// Releases the name now (as dropping the guard does).
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn unregister(mut self) {
        self.release();
    }

    fn release(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        let _ = self
            .registry
            .mutate_node(|n, now| n.remove_strict(now, &self.name));
    }
}

impl Drop for StrictRegistration {
    fn drop(&mut self) {
        self.release();
    }
}

/// Withdraws a claim that never completed (a timeout, an error, a dropped call).
struct Attempt<'a> {
    registry: &'a Registry,
    name: &'a str,
    armed: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self
                .registry
                .mutate_node(|n, now| n.remove_strict(now, self.name));
        }
    }
}

impl Registry {
    /// Registers `pid` under the unique `name` only once `quorum` nodes (this one included)
    /// vouch that they know no other live claim on it, so the name is never held twice at the
    /// same instant, even across a partition, under the assumptions of `docs/singletons.md`
    /// (clock rates within 1/8 of each other over one lease, and the holder acting on
    /// [`StrictRegistration::lost`] within `lease / 8`). Use a quorum above half the cluster:
    /// two sides of a partition cannot both collect one.
    ///
    /// The price: it fails when no quorum is reachable within `timeout`, and the holder loses
    /// the name when it cannot renew its lease (it is told through
    /// [`StrictRegistration::lost`]). The lease is
    /// [`Config::singleton_lease`](crate::Config::singleton_lease);
    /// a free name with a quorum up is held after one check round trip.
    ///
    /// The claim shares the unique names of the default scope: a plain [`Registry::register`]
    /// of the same name is a normal claim, and while held the strict claim wins any conflict
    /// against claims that never held a lease (it carries the running marker).
    ///
    /// # Errors
    /// See [`StrictError`]; nothing is left claimed on error.
    ///
    /// Cancel-safe: dropping the future withdraws the claim.
    pub async fn register_strict(
        &self,
        name: &str,
        pid: &Pid,
        quorum: usize,
        timeout: Duration,
    ) -> Result<StrictRegistration, StrictError> {
        self.register_strict_with_meta(name, pid, Bytes::new(), quorum, timeout)
            .await
    }

    /// [`Registry::register_strict`] with application metadata on the claim.
    ///
    /// # Errors
    /// See [`StrictError`]; nothing is left claimed on error.
    ///
    /// Cancel-safe: dropping the future withdraws the claim.
    pub async fn register_strict_with_meta(
        &self,
        name: &str,
        pid: &Pid,
        meta: impl Into<Bytes>,
        quorum: usize,
        timeout: Duration,
    ) -> Result<StrictRegistration, StrictError> {
        if scope::is_scoped(name) {
            return Err(StrictError::InvalidName(scope::SCOPED_NAME));
        }
        register_strict_stored(self, name, pid, meta.into(), quorum, timeout).await
    }
}

/// [`Registry::register_strict`] for a stored key name (any scope).
pub(crate) async fn register_strict_stored(
    registry: &Registry,
    name: &str,
    pid: &Pid,
    meta: Bytes,
    quorum: usize,
    timeout: Duration,
) -> Result<StrictRegistration, StrictError> {
    if quorum == 0 {
        return Err(StrictError::InvalidQuorum);
    }
    // Subscribe before claiming so the start is not missed.
    let mut events = registry.subscribe_raw();
    registry
        .mutate_node(|n, now| n.register_strict(now, name, pid, quorum, meta))?
        .map_err(|e| match e {
            // The core's errors (no guard table is involved here).
            P::InvalidName(m) => StrictError::InvalidName(m),
            P::MetaTooLarge(n) => StrictError::MetaTooLarge(n),
            P::NotLocal(p) => StrictError::NotLocal(p),
            P::AlreadyRegistered(e) => StrictError::AlreadyRegistered(e),
            P::Stopped => StrictError::Stopped(Stopped),
        })?;
    let mut attempt = Attempt {
        registry,
        name,
        armed: true,
    };
    let wait = async {
        loop {
            if let Some(e) = registry.read_node(|n| n.strict_held(name)) {
                return Some(e);
            }
            match events.recv().await {
                Ok(Event::SingletonStarted { name: n, entry }) if n == name => {
                    return Some(entry);
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    let outcome = tokio::time::timeout(timeout, wait).await;
    match outcome {
        Ok(Some(entry)) => {
            attempt.armed = false;
            Ok(StrictRegistration {
                registry: registry.clone(),
                entry,
                name: name.to_string(),
                events,
                ended: None,
                released: false,
            })
        }
        Ok(None) => Err(StrictError::Stopped(Stopped)),
        Err(_) => {
            let (seen, holder) = registry.read_node(|n| (n.peers().count() + 1, n.lookup(name)));
            drop(attempt);
            match holder.filter(|e| e.pid != *pid) {
                Some(e) => Err(StrictError::AlreadyRegistered(Box::new(e))),
                None if seen < quorum => Err(StrictError::NoQuorum { seen, quorum }),
                None => Err(StrictError::Timeout),
            }
        }
    }
}
