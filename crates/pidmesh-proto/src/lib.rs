//! `pidmesh-proto`: one pidmesh node as a deterministic, sans-io state machine.
//!
//! [`Node`] owns the replicated registry (a delta OR-map from `pidmesh-crdt`), SWIM membership
//! (`foca`), delta dissemination, anti-entropy, the hybrid logical clock and conflict
//! resolution. It never reads a clock, a socket or OS randomness: time comes in as `now`,
//! randomness from a seed, and messages go out through [`Node::poll_transmit`]. A tokio driver
//! (the `pidmesh` crate) or the simulator (`pidmesh-sim`) runs it.
//!
//! See `docs/architecture.md` in the repository for the message flows.

#![forbid(unsafe_code)]

mod clock;
mod config;
mod entry;
mod entry_ref;
mod error;
mod member;
mod node;
mod reader;
pub mod reject;
mod resolver;
mod singleton;
mod stats;
mod timers;

pub use clock::HlcClock;
pub use config::{Config, Lifeguard, PushPull, Reconnect};
pub use entry::{Entry, Event, Reason};
pub use entry_ref::EntryRef;
pub use error::{JoinError, RegisterError, RemoveError};
pub use member::Member;
pub use node::{Node, NodeOptions, Registry, RememberedAddr, Transmit};
pub use pidmesh_crdt::Dot;
#[cfg(feature = "read-stages")]
pub use pidmesh_crdt::ReadStage;
pub use pidmesh_wire::{Hlc, Key, KeyKind, NodeId, Pid, TrafficClass};
pub use reader::RegistryReader;
pub use resolver::{Resolution, Resolver, SINGLETON_RUNNING_META, Verdict, is_running_claim};
pub use singleton::{SingletonPolicy, StopReason};
pub use stats::Stats;
