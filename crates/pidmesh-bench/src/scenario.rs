//! The benchmark scenarios, one module each.

pub mod bulk;
pub mod bulk_variants;
pub mod call;
pub mod catchup;
pub mod erlang;
pub mod failure;
pub mod heal;
pub mod latency;
pub mod memory;
pub mod scale;
