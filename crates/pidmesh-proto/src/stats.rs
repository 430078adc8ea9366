//! Counters a node keeps about itself.

use std::collections::BTreeMap;

/// A snapshot of a node's counters (see [`crate::Node::stats`]; through the `pidmesh` facade,
/// `Registry::stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live entries in the local replica.
    pub entries: usize,
    /// Live peers.
    pub peers: usize,
    /// Pending timers.
    pub timers: usize,
    /// Messages dropped (malformed, forged, stale...).
    pub rejected: u64,
    /// Dropped messages by reason.
    pub rejected_by: BTreeMap<&'static str, u64>,
    /// Delta batches pushed (each to every live peer).
    pub batches_sent: u64,
    /// Bytes of delta batches sent, over all peers.
    pub delta_bytes_sent: u64,
    /// Bytes of sync messages sent.
    pub sync_bytes_sent: u64,
    /// Delta batches applied.
    pub deltas_applied: u64,
    /// Sync chunks applied.
    pub chunks_applied: u64,
    /// Anti-entropy digests sent (each is answered with at least one chunk).
    pub digests_sent: u64,
    /// Digests answered.
    pub digests_answered: u64,
    /// Digests answered with the whole own state because the asker held removed entries.
    pub full_syncs: u64,
    /// Anti-entropy rounds started by the timer.
    pub sync_rounds: u64,
    /// Delta batches that revealed a lost earlier batch.
    pub gaps_detected: u64,
    /// Announcements sent to seeds.
    pub announces: u64,
    /// Announces sent by fast reconnection (see [`crate::Reconnect`]).
    pub reconnect_probes: u64,
    /// Conflicts the resolver decided on this node.
    pub conflicts_resolved: u64,
    /// Custom resolver failures (fallback used).
    pub resolver_failures: u64,
    /// Peer clock readings too far ahead to adopt.
    pub clock_readings_ignored: u64,
    /// Messages that could not be encoded (never expected).
    pub encode_errors: u64,
    /// Times SWIM renewed this node's identity after a false "down".
    pub rejoins: u64,
    /// "Down" verdicts about a peer heard from moments earlier, held back until the peer could
    /// renew its identity (stale verdicts a healed partition brings back; see `Node::peers`).
    pub doubted_downs: u64,
    /// Suspicion timeouts dropped because the suspicion no longer stood (refuted in time).
    pub refuted_suspicions: u64,
    /// Bytes of push-pull membership lists and refusals sent (also counted in `sync_bytes_sent`).
    pub push_pull_bytes_sent: u64,
    /// Push-pull requests this node answered with its list.
    pub push_pull_answered: u64,
    /// Push-pull requests this node refused as busy.
    pub push_pull_refused: u64,
    /// Push-pull exchanges this node completed as the asker.
    pub push_pull_completed: u64,
    /// Push-pull exchanges this node started as the asker (retries of one exchange included).
    pub push_pull_started: u64,
    /// Members that became live here through a push-pull list (as asker or as the one asked).
    pub push_pull_learned: u64,
    /// Catch-up slices (another holder's relay of an origin's state) applied.
    pub slices_applied: u64,
    /// Catch-up fetches this node answered as a holder.
    pub fetches_answered: u64,
    /// Catch-up windows asked again of another holder (the first stalled or went down).
    pub catch_up_refetches: u64,
}
