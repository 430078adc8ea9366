//! pidmesh: a partition-tolerant registry of names and groups for a cluster of processes.
//!
//! Every node keeps the whole registry in memory, so [`Registry::lookup`] never touches the
//! network. Changes spread as deltas of a CRDT; SWIM membership detects joins and failures;
//! after a partition heals, conflicting registrations of a unique name are settled by a
//! [`Resolver`] the same way on every node, and the loser is told.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use pidmesh::{Config, Registry, Resolver};
//! use pidmesh_transport::MemNetwork;
//!
//! let net = MemNetwork::new(1);
//! let registry = Registry::builder()
//!     .node_name("api-1")
//!     .config(Config::local())
//!     .resolver(Resolver::keep_oldest())
//!     .transport(net.bind_named("api-1"))
//!     .start()
//!     .await?;
//! let (pid, mut mailbox) = registry.spawn_mailbox()?;
//! let _reg = registry.register("billing", &pid, "v1").await?;   // dropped: unregistered
//! registry.join("workers/eu", &pid, Vec::new()).await?;
//! assert_eq!(registry.lookup("billing").map(|e| e.pid), Some(pid.clone()));
//! registry.send(&pid, "hello").await?;
//! assert_eq!(&mailbox.recv().await.map(|m| m.body).unwrap_or_default()[..], b"hello");
//! registry.shutdown().await;
//! # Ok(()) }
//! ```

//!
//! # Conventions
//!
//! * **Errors**: one enum per operation ([`RegisterError`], [`CallError`]...), each variant
//!   saying whether anything changed; all convert into [`Error`] for code that only uses `?`.
//! * **Names** are `&str` everywhere (unique names, groups, kinds, singletons); typed names
//!   wrap one ([`TypedName`]).
//! * **`async` that never waits**: `register`, `unregister`, `join`, `leave`, `update_meta`
//!   and `send` complete without waiting (each says so). They stay `async` so that operations
//!   of the same shape that must wait (strict, quorum-backed registration; flow-controlled
//!   sends) can share their signatures, and so code written against them keeps compiling if a
//!   future version makes one of them wait; [`Registry::try_send`] is the synchronous send.
//!   Everything else that is `async` does wait (calls, awaiting sends, lookups with a timeout,
//!   waits for members, shutdown) and documents its cancel-safety.
//! * **Growth**: public enums and option structs that will gain variants or fields are
//!   `#[non_exhaustive]` ([`Event`], [`Reason`], [`StopReason`], [`SingletonPolicy`],
//!   [`Config`], the error enums...): match them with a `_` arm, and build a [`Config`] from a
//!   preset and assign fields.
//!
//! `use pidmesh::prelude::*;` imports what most programs need.

#![forbid(unsafe_code)]

mod builder;
mod bulk;
mod catchup;
mod discovery;
mod driver;
mod error;
mod guards;
mod mailbox;
mod messaging;
mod monitor;
mod placement;
mod query;
mod registration;
mod registry;
mod scope;
mod singleton;
mod strict;
#[cfg(test)]
mod test_support;
mod typed;

pub use builder::RegistryBuilder;
pub use discovery::{
    Discovery, DiscoveryError, DiscoveryFuture, DnsDiscovery, FileDiscovery, StaticDiscovery,
};
pub use error::{
    CallError, Error, JoinError, RegisterError, RemoveError, ReplyError, SendError, StartError,
    Stopped,
};
pub use mailbox::{Envelope, Mailbox};
pub use messaging::MailStats;
pub use monitor::{DownReason, Monitor};
pub use pidmesh_proto::{
    Config, Entry, EntryRef, Event, Hlc, Key, KeyKind, Lifeguard, NodeId, Pid, PushPull, Reason,
    Resolver, SingletonPolicy, Stats, StopReason, Verdict,
};
pub use placement::{
    GetOrStartError, LostSignal, PLACEMENT_GROUP_PREFIX, Placement, PlacementError,
    PlacementOptions, StartArgs, StartContext, rendezvous_score,
};
pub use registration::{Registration, Subscription};
pub use registry::{Lost, NodeInfo, Registry};
pub use scope::{Scope, ScopeError};
pub use singleton::{Singleton, SingletonContext, SingletonError, SingletonStatus};
pub use strict::{StrictError, StrictLost, StrictRegistration};
pub use tokio_util::sync::CancellationToken;
pub use typed::{TypedEnvelope, TypedHandle, TypedMailbox, TypedName, TypedPid, Undecodable};

/// What most programs need, in one import: `use pidmesh::prelude::*;`.
pub mod prelude {
    pub use crate::{
        CallError, Config, DownReason, Entry, Envelope, Error, Event, JoinError, Mailbox, Monitor,
        Pid, Reason, RegisterError, Registration, Registry, RemoveError, ReplyError, Resolver,
        Scope, SendError, Singleton, SingletonContext, SingletonPolicy, SingletonStatus,
        StartContext, StopReason, Stopped, Subscription, TypedHandle, TypedMailbox, TypedName,
        TypedPid,
    };
}
