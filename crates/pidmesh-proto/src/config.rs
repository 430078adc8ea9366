//! Node configuration and its presets.

use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::time::Duration;

mod reconnect;
pub use reconnect::Reconnect;

/// Everything that tunes a node. Start from a preset ([`Config::lan`], [`Config::wan`],
/// [`Config::local`]) and adjust fields (`let mut c = Config::lan(); c.sync_interval = ..;`):
/// new fields are added over time, so struct literals are not available outside this crate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The longest a local change waits before it is pushed, reached only while changes keep
    /// coming closer together than the push gap (`delta_batch_window / delta_burst`): they
    /// then travel in one delta batch per window. A change that finds the link idle (nothing
    /// waiting, the last push at least one gap ago) is pushed at once.
    pub delta_batch_window: Duration,
    /// How many changes one `delta_batch_window` may push at once, each in its own batch, when
    /// they come evenly spaced: two pushes made at once are at least
    /// `delta_batch_window / delta_burst` apart (the push gap). A change that comes sooner
    /// waits one gap after the last push, then twice as long for each further timer push while
    /// changes keep coming, up to the window. 1 pushes at most one lone change per window.
    pub delta_burst: NonZeroU32,
    /// How often the node runs an anti-entropy round with the next live peer (round-robin in
    /// node-id order).
    pub sync_interval: Duration,
    /// A sync request whose answer stopped arriving this long ago may be sent again (each chunk
    /// received extends the wait, so large snapshots are not re-requested mid-transfer).
    pub sync_timeout: Duration,
    /// First interval of the seed announcer; it doubles up to `announce_max` while seeds stay unreachable.
    pub announce_min: Duration,
    /// Longest interval of the seed announcer.
    pub announce_max: Duration,
    /// Largest encoded payload of a sync chunk (bytes); snapshots are cut into chunks this big.
    pub sync_chunk_bytes: usize,
    /// Largest encoded payload of a delta batch (bytes); bigger batches are split.
    pub delta_batch_bytes: usize,
    /// A peer's hybrid clock reading more than this far ahead of ours is not adopted (protects
    /// the clock from a peer with a broken or hostile clock).
    pub max_clock_drift: Duration,
    /// How many own conflict losses are remembered and shipped to other claimants (see
    /// `OriginDelta::released`); older ones are forgotten.
    pub max_released: usize,
    /// How long a vouch for a quorum singleton's claim counts, from the moment the claimant
    /// asked for it. A holder that stops hearing from a quorum stops within this time; a
    /// vouching peer keeps its promise `lease / 8` longer. Shorter means faster failover and
    /// more check messages (a holder renews four times per lease). `None` (the presets) uses
    /// the SWIM suspicion time (see [`Config::singleton_lease`]).
    pub singleton_lease: Option<Duration>,
    /// Between removing its entries and telling SWIM it leaves, a leaving node waits this long
    /// so its removals arrive first (see `Node::leave_cluster`, which the `pidmesh` facade's
    /// `Registry::shutdown` runs).
    pub leave_grace: Duration,
    /// How long the address of a member that is no longer seen is remembered (and announced
    /// to, while it is not a live member). See `Node::remembered`.
    pub remember_for: Duration,
    /// At most this many remembered addresses are kept (the oldest are forgotten first).
    pub max_remembered: usize,
    /// How many own removals anti-entropy remembers with the dot that made them, so that a
    /// digest crossing a removal in flight is not mistaken for a lost one. A peer that missed
    /// more removals than this gets a whole-row resend (which costs the live entries, not the
    /// history). 16 bytes each.
    pub removal_log: usize,
    /// A joining node fetches each origin's state from the holders in windows of this many
    /// sequence numbers (a holder answers at most this many live entries per fetch), at most
    /// two windows per holder at a time. 32,768 in the presets (~0.9 MB of entries with
    /// ~17-byte names). See `Node::is_caught_up` (in the `pidmesh` facade,
    /// `Registry::caught_up`).
    pub catch_up_window: u64,
    /// SWIM parameters (see `foca::Config`); `max_packet_size` must fit the transport's datagrams.
    pub swim: foca::Config,
    /// Lifeguard's local health awareness and dynamic suspicion around SWIM (see
    /// [`Lifeguard`]); `None` runs plain SWIM. On in [`Config::lan`] and [`Config::wan`].
    pub lifeguard: Option<Lifeguard>,
    /// The push-pull membership exchange on join (see [`PushPull`]); `None` leaves joining to
    /// SWIM's announces and gossip alone. On in every preset.
    pub push_pull: Option<PushPull>,
    /// Fast reconnection after a partition: announcing at a short fixed interval, for a
    /// bounded time, to members declared down and (when cut off) to every known address (see
    /// [`Reconnect`], which states the cost bound); `None` leaves it to the seed announcer's
    /// backoff. On in every preset.
    pub reconnect: Option<Reconnect>,
}

/// A joining node exchanges whole member lists with the first member it meets (both sides
/// merge), then again with random members, so it knows a large cluster after one round trip
/// instead of after SWIM's gossip reached it update by update.
///
/// The later exchanges cover nodes that joined at the same time as this one (the first answer
/// holds only the members the contacted node knew at that instant). They follow the news: an
/// exchange that taught this node a member it did not know (as asker or as the one asked) makes
/// the next one start ½–1 probe period later, so while a cluster forms, what one node learns
/// spreads epidemically; once `followups` exchanges in a row taught nothing, the node falls
/// back to one exchange every `interval` (or stops, with `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushPull {
    /// Exchanges in a row that teach this node nothing before it leaves the fast rounds: after
    /// the k-th such exchange (from 0: one that taught something) the next starts between ½ and
    /// 1 times `swim.probe_period × 2^k` later.
    pub followups: u32,
    /// Bytes per second this node spends answering other nodes' requests (a token bucket
    /// holding one second's worth): a request that would overdraw it is refused with a `Busy`
    /// answer, and the asker tries another member. Bounds what a seed sends when many nodes
    /// join at once.
    pub answer_bytes_per_sec: u64,
    /// Attempts per exchange (the first included) before it is given up: a refused or
    /// unanswered request is sent again to another random live member.
    pub attempts: u32,
    /// Out of the fast rounds, one exchange with a random live member every ½–1 × `interval`
    /// (memberlist's periodic push-pull): repairs what gossip missed. Costs a request of this
    /// node's member list (~35 B per member) and an answer holding only what the request
    /// lacked. `None`: no periodic exchange once the fast rounds ended.
    pub interval: Option<Duration>,
}

impl Default for PushPull {
    /// Two quiet exchanges end the fast rounds, 4 MiB/s of answers, 4 attempts, a periodic
    /// exchange every 30 s (scaled up for large clusters by [`Config::for_cluster_size`]).
    fn default() -> Self {
        Self {
            followups: 2,
            answer_bytes_per_sec: 4 << 20,
            attempts: 4,
            interval: Some(Duration::from_secs(30)),
        }
    }
}

/// Lifeguard-style extensions of SWIM that keep a slow node from flapping the cluster.
///
/// * **Local health**: a node whose own probes fail, or that hears itself suspected, raises a
///   health score (up to `max_health`; each probe that succeeds lowers it by one). Its probe
///   interval, probe timeout and suspicion timeouts are multiplied by `1 + score`: a node that
///   is itself slow probes less and waits longer before declaring anyone down.
/// * **Dynamic suspicion**: a suspicion this node starts waits `suspicion_max_factor` times
///   `swim.suspect_to_down_after` at first, and falls towards `suspect_to_down_after` as other
///   members are heard suspecting the same member (logarithmically, reaching it at
///   `confirmations` of them). A member only this node suspects has time to refute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifeguard {
    /// Highest health score (Lifeguard's local health multiplier is `1 + score`).
    pub max_health: u32,
    /// How many times the minimum suspicion timeout an unconfirmed suspicion waits.
    pub suspicion_max_factor: u32,
    /// Members heard suspecting the same member that bring the timeout to its minimum.
    pub confirmations: u32,
}

impl Default for Lifeguard {
    /// Score up to 8, unconfirmed suspicions wait twice the minimum, 3 confirmations.
    fn default() -> Self {
        Self {
            max_health: 8,
            suspicion_max_factor: 2,
            confirmations: 3,
        }
    }
}

fn swim_base(
    cluster_size: u32,
    probe_period: Duration,
    probe_rtt: Duration,
    suspect_to_down: Duration,
) -> foca::Config {
    let mut c =
        foca::Config::new_lan(NonZeroU32::new(cluster_size.max(1)).unwrap_or(NonZeroU32::MIN));
    c.probe_period = probe_period;
    c.probe_rtt = probe_rtt;
    c.suspect_to_down_after = suspect_to_down;
    // Fits a QUIC datagram at the 1200-byte minimum MTU, with room for pidmesh's envelope.
    c.max_packet_size = NonZeroUsize::new(1150).unwrap_or(NonZeroUsize::MIN);
    // Push-pull membership repair: every 10 probe periods ask one random member for its view
    // (foca answers an announce with its active members) and announce to two members believed
    // down. Dissemination by gossip alone stops after `max_transmissions`, so a node that missed
    // an update (say, a peer renewing its identity after a partition) would otherwise keep a
    // stale view until the next change.
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: probe_period * 10,
        num_members: NonZeroUsize::MIN,
    });
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: probe_period * 10,
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    // Down members are remembered (so stale gossip about them cannot resurrect them) for a day.
    c.remove_down_after = Some(Duration::from_secs(24 * 3600));
    c
}

impl Config {
    /// A data-centre network: SWIM probes every second, a node is declared down ~4–6 s after it
    /// stops answering, deltas are pushed within 2 ms.
    pub fn lan() -> Self {
        Self {
            delta_batch_window: Duration::from_millis(2),
            delta_burst: NonZeroU32::new(128).unwrap_or(NonZeroU32::MIN),
            sync_interval: Duration::from_secs(1),
            sync_timeout: Duration::from_secs(2),
            announce_min: Duration::from_millis(500),
            announce_max: Duration::from_secs(30),
            sync_chunk_bytes: 1 << 20,
            delta_batch_bytes: 256 << 10,
            max_clock_drift: Duration::from_secs(60),
            max_released: 4096,
            singleton_lease: None,
            leave_grace: Duration::from_millis(20),
            remember_for: Duration::from_secs(24 * 3600),
            max_remembered: 1024,
            removal_log: 65_536,
            catch_up_window: 32_768,
            lifeguard: Some(Lifeguard::default()),
            push_pull: Some(PushPull::default()),
            reconnect: Some(Reconnect::lan()),
            swim: swim_base(
                16,
                Duration::from_secs(1),
                Duration::from_millis(500),
                Duration::from_secs(4),
            ),
        }
    }

    /// Links with high or variable latency: slower probes, longer suspicion, bigger batches.
    pub fn wan() -> Self {
        let mut swim = swim_base(
            16,
            Duration::from_secs(5),
            Duration::from_secs(3),
            Duration::from_secs(30),
        );
        swim.max_transmissions = NonZeroU8::new(8).unwrap_or(NonZeroU8::MIN);
        Self {
            delta_batch_window: Duration::from_millis(20),
            sync_interval: Duration::from_secs(5),
            sync_timeout: Duration::from_secs(10),
            announce_min: Duration::from_secs(2),
            announce_max: Duration::from_secs(120),
            reconnect: Some(Reconnect::wan()),
            swim,
            ..Self::lan()
        }
    }

    /// One machine (tests, demos): fast timers, failures detected in about a second.
    pub fn local() -> Self {
        Self {
            delta_batch_window: Duration::from_millis(1),
            sync_interval: Duration::from_millis(200),
            sync_timeout: Duration::from_millis(500),
            announce_min: Duration::from_millis(100),
            announce_max: Duration::from_secs(2),
            swim: swim_base(
                16,
                Duration::from_millis(200),
                Duration::from_millis(80),
                Duration::from_millis(600),
            ),
            lifeguard: None,
            reconnect: Some(Reconnect::local()),
            ..Self::lan()
        }
    }

    /// The singleton lease in force (see [`Config::singleton_lease`]), never below 10 ms.
    pub fn singleton_lease(&self) -> Duration {
        self.singleton_lease
            .unwrap_or(self.swim.suspect_to_down_after)
            .max(Duration::from_millis(10))
    }

    /// How long a node that vouched for a claim refuses to vouch for another:
    /// the lease plus an eighth.
    pub fn singleton_promise(&self) -> Duration {
        let lease = self.singleton_lease();
        lease + lease / 8
    }

    /// Rescales the SWIM dissemination and suspicion parameters for an expected cluster size
    /// (larger clusters need more retransmissions and longer suspicion).
    pub fn for_cluster_size(mut self, nodes: u32) -> Self {
        let n = NonZeroU32::new(nodes.max(1)).unwrap_or(NonZeroU32::MIN);
        let reference = foca::Config::new_lan(n);
        self.swim.max_transmissions = reference.max_transmissions;
        // Scale suspicion like foca does: log10(n) * probe_period * factor, never below the preset.
        let scale = (f64::from(nodes.max(2))).log10().max(1.0);
        self.swim.suspect_to_down_after = self.swim.suspect_to_down_after.mul_f64(scale);
        // In a large cluster that starts at once, SWIM's gossip of the joins runs out of
        // retransmissions before every node heard of every other; the rest is learned from
        // periodic announces, whose replies list about a packet's worth of random members. Ask
        // more often and more members, so the last few are found in seconds, not minutes.
        // The periodic push-pull sends a whole member list: space it out as memberlist does,
        // by one more interval per doubling of the cluster beyond 32 nodes.
        if let Some(pp) = self.push_pull.as_mut()
            && let Some(every) = pp.interval
            && nodes > 32
        {
            let doublings = (f64::from(nodes) / 32.0).log2().ceil();
            pp.interval = Some(every.mul_f64(1.0 + doublings));
        }
        if nodes > 100 {
            let probe = self.swim.probe_period;
            self.swim.periodic_announce = Some(foca::PeriodicParams {
                frequency: probe * 2,
                num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
            });
        }
        self
    }
}
