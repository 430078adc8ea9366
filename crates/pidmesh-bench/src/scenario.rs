//! The benchmark scenarios, one module each.

pub mod bulk;
pub mod bulk_variants;
pub mod call;
pub mod catchup;
pub mod erlang;
pub mod failure;
pub mod groups;
pub mod heal;
pub mod latency;
pub mod lookup;
pub mod memory;
pub mod node_memory;
pub mod ractor;
pub mod scale;
pub mod wire;
