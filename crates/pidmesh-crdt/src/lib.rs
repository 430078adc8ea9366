//! `pidmesh-crdt`: the replicated data type under pidmesh's registry.
//!
//! A delta-state, add-wins, observed-remove map ([`OrMap`]): a *dot store* (key → set of
//! `(dot, value)`) plus a *causal context* ([`CausalContext`], one [`DotSet`] per actor: a version
//! vector and a cloud of out-of-order dots in one range-set shape). Mutators return small
//! [`Delta`]s; [`OrMap::join`] merges deltas or whole states in any order, any number of times.
//!
//! The crate is pure: no I/O, no clock, no randomness. It is generic over the actor type `A`
//! (pidmesh uses its `NodeId`), the key `K` and the value `V`.
//!
//! ```
//! use pidmesh_crdt::OrMap;
//! let mut a: OrMap<&str, &str, u32> = OrMap::new();
//! let mut b: OrMap<&str, &str, u32> = OrMap::new();
//! let d1 = a.add(&"a", "billing", 1);
//! let d2 = b.add(&"b", "billing", 2);
//! a.join(&d2);
//! b.join(&d1);
//! assert_eq!(a.get(&"billing").len(), 2); // both adds survive: the caller resolves the conflict
//! assert_eq!(a.canonical(), b.canonical());
//! ```

#![forbid(unsafe_code)]

mod context;
mod delta;
mod dots;
mod map;
mod seqindex;
mod slab;
mod store;
mod table;

pub use context::CausalContext;
pub use dots::{Dot, DotSet};
pub use map::{Added, Canonical, Delta, JoinReport, LiveDigest, OrMap, Removed, Replaced, Slot};
#[cfg(feature = "read-stages")]
pub use store::ReadStage;
pub use store::{MapReader, SlotIter, SlotRef};
