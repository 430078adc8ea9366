//! Fast reconnection after a partition: see [`Reconnect`].

use std::time::Duration;

/// Probing the way back after a partition, at a short fixed interval for a bounded time.
///
/// When SWIM declares a member down, the only way back across a healed link is an announce
/// (both sides hold the other down, and SWIM talks to live members only). The seed announcer
/// backs off (`Config::announce_min` doubling up to `Config::announce_max`), so without this a
/// partition that lasted a few seconds is noticed up to several seconds after it healed.
///
/// With it, for `window` after a down verdict about a member, this node announces to that
/// member's address every `interval`; and for `window` after it found itself cut off from every
/// member (or renewed its identity after a false "down"), to every address it knows (SWIM's
/// members, seeds, discovered and remembered addresses). After the window, only the seed
/// announcer's backoff and SWIM's periodic announce to down members remain.
///
/// Not probed: members that left gracefully, whether they told this node themselves or it
/// learned of the leave second-hand (a leave is a SWIM "down" at incarnation 0, which a
/// failure verdict never is: every node raises its incarnation to 1 when it starts), and
/// addresses a live member holds. Every other member declared down is probed, whether this
/// node saw it suspected or only heard of the verdict. A peer whose "down" verdict this node doubts (see
/// `node/liveness.rs`) is probed too, so a stale verdict is settled by its renewal sooner.
///
/// **Cost bound**: at most `max_per_tick` announces per `interval` in all (the targets are taken
/// in turn, so each is probed once every `⌈targets / max_per_tick⌉` intervals), so at most
/// `max_per_tick / interval` announces per second whatever the cluster size, and at most
/// `1 / interval` per down member. An announce is one datagram holding a SWIM header once gossip
/// is quiet (26–27 bytes of payload with short node names in `crates/pidmesh-sim/tests/reconnect.rs`,
/// plus the transport's overhead); a reachable address answers with one feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// The fixed probing interval.
    pub interval: Duration,
    /// How long after a down verdict (or after being cut off) the probing lasts.
    pub window: Duration,
    /// Most announces sent per interval.
    pub max_per_tick: usize,
}

impl Reconnect {
    /// `lan`: every 50 ms for 2 minutes, at most 8 per tick (≤ 160 announces/s, ≤ 20 per down
    /// member per second).
    pub fn lan() -> Self {
        Self {
            interval: Duration::from_millis(50),
            window: Duration::from_secs(120),
            max_per_tick: 8,
        }
    }

    /// `wan`: every 500 ms for 10 minutes, at most 8 per tick (≤ 16 announces/s).
    pub fn wan() -> Self {
        Self {
            interval: Duration::from_millis(500),
            window: Duration::from_secs(600),
            max_per_tick: 8,
        }
    }

    /// `local`: every 20 ms for 30 s, at most 8 per tick (≤ 400 announces/s on one machine).
    pub fn local() -> Self {
        Self {
            interval: Duration::from_millis(20),
            window: Duration::from_secs(30),
            max_per_tick: 8,
        }
    }
}
