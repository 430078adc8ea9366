//! Reasons under which [`crate::Node::handle_message`] drops a message, as counted in
//! [`crate::Stats::rejected_by`] and returned by `handle_message`. The security-relevant ones are
//! named here so that tests, metrics and operators can match on them.

/// A SWIM packet whose header names a sender (`src`) other than the peer the transport
/// authenticated: a member speaking for another member. Dropped before foca sees it.
pub const SWIM_SENDER_MISMATCH: &str = "swim sender does not match authenticated peer";

/// A delta, chunk, digest or claim for an origin other than the authenticated peer: a member
/// speaking for another member's dots or causal context (`seen`).
pub const FOREIGN_ORIGIN: &str = "origin does not match authenticated peer";

/// A SWIM packet whose header does not decode.
pub const UNDECODABLE_SWIM_HEADER: &str = "undecodable swim header";
