//! Scopes: independent registries over one node and one transport.
//!
//! [`Registry::scope`] returns a [`Scope`] handle with the registry's name and group API. A name
//! in scope `a` never collides with the same name in scope `b` or in the default scope (the
//! plain [`Registry`] methods), lookups and group memberships are per scope, and a
//! subscription of a scope sees only that scope's keys (plus node events).
//!
//! **Representation.** A key of scope `s` is stored and sent as the name
//! `\x1f s \x1f name` ([`pidmesh_wire::scoped_name`]). User names never contain control
//! characters, so no name of another scope, or of the default scope, encodes to the same key
//! (the default scope's methods refuse names starting with the mark), and the default scope's
//! keys and wire bytes are exactly what they were before scopes existed. Nodes built before
//! scopes reject messages that carry scoped keys (they fail their name check), so use scopes
//! only once every node runs a version that knows them. Entries of a scope carry the stored
//! key: [`Key::scope`](pidmesh_proto::Key::scope) and
//! [`Key::local_name`](pidmesh_proto::Key::local_name) split it.
//!
//! **Resolvers.** Each scope may have its own resolver, and each name prefix within a scope
//! too: build the node's resolver with [`Resolver::with_scope`](pidmesh_proto::Resolver::with_scope)
//! and [`Resolver::with_prefix`](pidmesh_proto::Resolver::with_prefix). Every node must be
//! configured with the same routes, since every node must pick the same resolver for a name.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pidmesh_proto::{Entry, EntryRef, Pid};
use pidmesh_wire::{CompactString, SCOPE_MARK};

use crate::error::{JoinError, RegisterError, RemoveError};
use crate::registration::{Registration, Subscription};
use crate::registry::Registry;
use crate::strict::{StrictError, StrictRegistration};

/// Why [`Registry::scope`] failed.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ScopeError {
    /// The scope's name is empty, longer than [`pidmesh_wire::MAX_SCOPE_LEN`] bytes, or has
    /// control characters.
    #[error("invalid scope name: {0}")]
    InvalidName(&'static str),
}

/// A handle to one scope of the registry: an independent namespace of names and groups over
/// the same node. Cheap to clone.
///
/// A name in scope `a` never collides with the same name in scope `b` or in the default scope
/// (the plain [`Registry`] methods); lookups, groups and subscriptions are per scope. A key of
/// scope `s` is stored and sent as the name `\x1f s \x1f name`
/// ([`pidmesh_wire::scoped_name`]): user names cannot contain control characters, so nothing
/// else encodes to it, and the default scope's keys and wire bytes are unchanged. Nodes built
/// before scopes reject messages carrying scoped keys, so use scopes once every node knows
/// them. Entries carry the stored key ([`Key::scope`](crate::Key::scope) and
/// [`Key::local_name`](crate::Key::local_name) split it). A scope's resolver, and a resolver
/// per name prefix, come from [`Resolver::with_scope`](crate::Resolver::with_scope) and
/// [`Resolver::with_prefix`](crate::Resolver::with_prefix), configured identically on every
/// node.
///
/// A scope has no life of its own: dropping a `Scope` (every clone of it) changes nothing.
/// Its names and memberships end like the default scope's, when their [`Registration`]
/// guard is dropped, with [`Scope::unregister`] and [`Scope::leave`], or when their process's
/// mailbox is dropped; to end a scope's use (a run of a job, say), drop those.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use pidmesh::{Config, Registry};
///
/// let net = pidmesh_transport::MemNetwork::new(1);
/// let registry = Registry::builder()
///     .node_name("n1")
///     .config(Config::local())
///     .transport(net.bind_named("n1"))
///     .start()
///     .await?;
/// let run = registry.scope("run-42")?;
/// let (worker, inbox) = registry.spawn_mailbox()?;
/// run.join("workers", &worker, "").await?;
/// assert_eq!(run.wait_for_group_members("workers", 1, Duration::from_secs(1)).await, 1);
/// assert!(registry.members_of("workers").is_empty()); // the default scope's group is another
/// drop(inbox); // the process ends: it leaves every group of every scope
/// assert!(run.members_of("workers").is_empty());
/// # registry.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Scope {
    registry: Registry,
    name: Arc<str>,
    /// `\x1f name \x1f`: every key of the scope starts with it.
    prefix: Arc<str>,
}

impl Registry {
    /// A handle to the scope `name`: the same register/join/lookup/members_of/subscribe API,
    /// over names that never collide with another scope's or the default scope's.
    ///
    /// # Errors
    /// [`ScopeError::InvalidName`].
    pub fn scope(&self, name: &str) -> Result<Scope, ScopeError> {
        pidmesh_wire::check_scope_name(name).map_err(ScopeError::InvalidName)?;
        Ok(Scope {
            registry: self.clone(),
            name: Arc::from(name),
            prefix: Arc::from(format!("{SCOPE_MARK}{name}{SCOPE_MARK}")),
        })
    }
}

/// The error of a default-scope call given a name that starts with the scope mark.
pub(crate) const SCOPED_NAME: &str = "name contains a control character";

/// True when `name` is the stored form of a scoped key (refused by the default scope's methods).
pub(crate) fn is_scoped(name: &str) -> bool {
    name.starts_with(SCOPE_MARK)
}

impl Scope {
    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registry this scope lives in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The stored key name of `name` in this scope.
    ///
    /// # Errors
    /// Why `name` is not a valid name.
    pub fn key_name(&self, name: &str) -> Result<CompactString, &'static str> {
        pidmesh_wire::scoped_name(&self.name, name)
    }

    /// Registers `pid` under the unique `name` of this scope; see [`Registry::register`].
    ///
    /// # Errors
    /// See [`RegisterError`]; nothing changed on error.
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn register(
        &self,
        name: &str,
        pid: &Pid,
        meta: impl Into<Bytes>,
    ) -> Result<Registration, RegisterError> {
        let key = self.key_name(name).map_err(RegisterError::InvalidName)?;
        register_stored(&self.registry, &key, pid, meta.into())
    }

    /// Registers `pid` under `name` of this scope only once a quorum vouches that nobody else
    /// holds it; see [`Registry::register_strict`].
    ///
    /// # Errors
    /// See [`StrictError`].
    ///
    /// Cancel-safe: dropping the future withdraws the claim.
    pub async fn register_strict(
        &self,
        name: &str,
        pid: &Pid,
        quorum: usize,
        timeout: Duration,
    ) -> Result<StrictRegistration, StrictError> {
        let key = self.key_name(name).map_err(StrictError::InvalidName)?;
        crate::strict::register_strict_stored(
            &self.registry,
            &key,
            pid,
            Bytes::new(),
            quorum,
            timeout,
        )
        .await
    }

    /// Removes `pid`'s registration of `name` in this scope.
    ///
    /// # Errors
    /// See [`RemoveError`]; nothing changed on error.
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn unregister(&self, name: &str, pid: &Pid) -> Result<Entry, RemoveError> {
        let key = self.key_name(name).map_err(|_| RemoveError::NotFound)?;
        Ok(self
            .registry
            .shared
            .mutate(|n, now| n.unregister(now, &key, pid))??)
    }

    /// Adds `pid` to `group` of this scope; see [`Registry::join`].
    ///
    /// # Errors
    /// See [`JoinError`]; nothing changed on error.
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn join(
        &self,
        group: &str,
        pid: &Pid,
        meta: impl Into<Bytes>,
    ) -> Result<Entry, JoinError> {
        let key = self.key_name(group).map_err(JoinError::InvalidName)?;
        let meta = meta.into();
        Ok(self
            .registry
            .shared
            .mutate(|n, now| n.join(now, &key, pid, meta))??)
    }

    /// Removes `pid` from `group` of this scope.
    ///
    /// # Errors
    /// See [`RemoveError`]; nothing changed on error.
    ///
    /// Cancel-safe: it completes without waiting.
    pub async fn leave(&self, group: &str, pid: &Pid) -> Result<Entry, RemoveError> {
        let key = self.key_name(group).map_err(|_| RemoveError::NotFound)?;
        Ok(self
            .registry
            .shared
            .mutate(|n, now| n.leave(now, &key, pid))??)
    }

    /// The entry holding `name` in this scope, with this scope's resolver applied to any
    /// conflict; see [`Registry::lookup`].
    pub fn lookup(&self, name: &str) -> Option<Entry> {
        let key = self.key_name(name).ok()?;
        self.registry.shared.reader.lookup(&key)
    }

    /// Calls `f` with a borrowed view of the entry holding `name` in this scope (`None` if
    /// none), the winner [`Scope::lookup`] returns, without copying it; keep `f` short (see
    /// [`Registry::with_lookup`]).
    pub fn with_lookup<R>(&self, name: &str, f: impl FnOnce(Option<EntryRef<'_>>) -> R) -> R {
        match self.key_name(name) {
            Ok(key) => self.registry.shared.reader.with_lookup(&key, f),
            Err(_) => f(None),
        }
    }

    /// The members of `group` in this scope; see [`Registry::members_of`].
    pub fn members_of(&self, group: &str) -> Vec<Entry> {
        match self.key_name(group) {
            Ok(key) => self.registry.shared.reader.members_of(&key),
            Err(_) => Vec::new(),
        }
    }

    /// Every entry of this scope whose name (within the scope) starts with `prefix`, sorted by
    /// key; see [`Registry::list_prefix`].
    pub fn list_prefix(&self, prefix: &str) -> Vec<Entry> {
        self.registry
            .list_prefix_stored(&format!("{}{prefix}", self.prefix))
    }

    /// Waits until `name` of this scope is visible on this node, up to `timeout`.
    ///
    /// Cancel-safe.
    pub async fn lookup_timeout(&self, name: &str, timeout: Duration) -> Option<Entry> {
        self.subscribe()
            .wait_for(timeout, || self.lookup(name))
            .await
    }

    /// Waits until `group` of this scope has at least `n` members as this node sees them, or
    /// `timeout` passes; returns the member count at the end (`>= n` on success). See
    /// [`Registry::wait_for_group_members`].
    ///
    /// Cancel-safe.
    pub async fn wait_for_group_members(&self, group: &str, n: usize, timeout: Duration) -> usize {
        let _ = self
            .subscribe()
            .wait_for(timeout, || {
                (self.members_of(group).len() >= n).then_some(())
            })
            .await;
        self.members_of(group).len()
    }

    /// Subscribes to the events about this scope's keys (node events always pass).
    pub fn subscribe(&self) -> Subscription {
        self.registry.subscribe_prefix(self.prefix.to_string())
    }

    /// Subscribes to the events about this scope's keys whose name starts with `prefix`.
    pub fn subscribe_prefix(&self, prefix: &str) -> Subscription {
        self.registry
            .subscribe_prefix(format!("{}{prefix}", self.prefix))
    }
}

/// Registers `pid` under the stored key name `key` (already validated): the body of
/// [`Registry::register`] for any scope.
pub(crate) fn register_stored(
    registry: &Registry,
    key: &str,
    pid: &Pid,
    meta: Bytes,
) -> Result<Registration, RegisterError> {
    let shared = &registry.shared;
    // The guard's slot goes in while the node is locked: the driver cannot report a loss
    // before the slot exists.
    let slot = shared.mutate(|n, now| {
        let mut guards = shared.guards.lock();
        guards.check_room()?;
        let seq = n.register_seq(now, key, pid, meta)?;
        guards.insert(seq)
    })??;
    Ok(Registration::new(registry.clone(), slot))
}
