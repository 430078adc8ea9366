//! Discovery beyond seeds: the addresses of members this node has seen (remembered, bounded,
//! aged out), the addresses a configured discovery source reports, and the announcer's targets.
//!
//! A node announces to every address it has reason to believe a member may listen at and that
//! no live member holds: its seeds, the discovered addresses, and the remembered ones. So while
//! it sees fewer members than it has seen, it keeps knocking at the others' doors, and a node
//! restarted with its memory restored (see [`Node::remember`]) finds its way back even when
//! every seed is gone.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use super::Node;

/// An address this node saw a live member at, and when (wall-clock milliseconds since the Unix
/// epoch, so the record keeps its meaning across process restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RememberedAddr {
    /// Where the member listened.
    pub addr: SocketAddr,
    /// When it was last seen live there (wall-clock milliseconds since the Unix epoch).
    pub last_seen_ms: u64,
}

impl Node {
    /// The addresses this node remembers members at (live peers included), newest first.
    ///
    /// An embedder that persists them and hands them to the next life of this node through
    /// [`Node::remember`] lets that life rejoin through any member it knew, and count the
    /// membership it knew for `SingletonPolicy::MajorityOfKnown`.
    pub fn remembered(&self) -> Vec<RememberedAddr> {
        let mut v: Vec<RememberedAddr> = self
            .remembered
            .iter()
            .map(|(&addr, &last_seen_ms)| RememberedAddr { addr, last_seen_ms })
            .collect();
        v.sort_by(|a, b| {
            b.last_seen_ms
                .cmp(&a.last_seen_ms)
                .then(a.addr.cmp(&b.addr))
        });
        v
    }

    /// Adds addresses to this node's memory (typically what an earlier life of it persisted;
    /// see [`Node::remembered`]). Records older than [`crate::Config::remember_for`] at `now`
    /// are ignored; a newer record of an address wins over an older one. The announcer
    /// targets the new addresses at once.
    pub fn remember(&mut self, now: Instant, addrs: &[RememberedAddr]) {
        let wall = self.wall_ms(now);
        for r in addrs {
            if r.addr == self.me.addr || self.too_old(wall, r.last_seen_ms) {
                continue;
            }
            let seen = r.last_seen_ms.min(wall);
            let slot = self.remembered.entry(r.addr).or_insert(seen);
            *slot = (*slot).max(seen);
        }
        self.bound_remembered();
        self.restart_announcer(now);
    }

    /// Replaces the addresses reported by the configured discovery source (a DNS name, a file...):
    /// the node announces to those that no live member holds, as it does to seeds. Addresses that
    /// are new since the last call are announced to at once.
    pub fn set_discovered(&mut self, now: Instant, addrs: &[SocketAddr]) {
        let new: BTreeSet<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| *a != self.me.addr)
            .collect();
        let fresh = new.iter().any(|a| !self.discovered.contains(a));
        self.discovered = new;
        if fresh {
            self.restart_announcer(now);
        }
    }

    /// Addresses known to belong to the cluster that no SWIM identity (live or down) covers:
    /// seeds, discovered and remembered addresses. Counted as members by `MajorityOfKnown`.
    pub(super) fn unmet_addrs(&self, met: &BTreeSet<SocketAddr>) -> usize {
        self.seeds
            .iter()
            .chain(self.discovered.iter())
            .chain(self.remembered.keys())
            .filter(|a| **a != self.me.addr && !met.contains(a))
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Refreshes the memory (live peers seen now, old records aged out) and returns the
    /// addresses to announce to: seeds, discovered and remembered addresses that no live member
    /// holds.
    pub(super) fn announce_targets(&mut self, now: Instant) -> BTreeSet<SocketAddr> {
        let wall = self.wall_ms(now);
        let live: HashSet<SocketAddr> = self.peers.values().map(|m| m.addr).collect();
        // Live members' records are refreshed in place, and missing ones added while there is
        // room. Only when the memory is full and holds an address no live member holds (which
        // the newer live ones should replace) are all live members added and the memory trimmed
        // by age: re-adding thousands of live members and sorting the memory back to its bound
        // on every announce was O(N log N) per announce.
        let mut missing = false;
        for m in self.peers.values() {
            match self.remembered.get_mut(&m.addr) {
                Some(seen) => *seen = wall,
                None => missing = true,
            }
        }
        let keep_for = self.config.remember_for;
        let limit = u64::try_from(keep_for.as_millis()).unwrap_or(u64::MAX);
        self.remembered
            .retain(|_, seen| wall.saturating_sub(*seen) <= limit);
        if missing {
            let max = self.config.max_remembered;
            let stale = self.remembered.keys().any(|a| !live.contains(a));
            for m in self.peers.values() {
                if self.remembered.len() >= max && !stale {
                    break;
                }
                self.remembered.entry(m.addr).or_insert(wall);
            }
            self.bound_remembered();
        }
        self.seeds
            .iter()
            .chain(self.discovered.iter())
            .chain(self.remembered.keys())
            .copied()
            .filter(|a| *a != self.me.addr && !live.contains(a))
            .collect()
    }

    /// Records that a live member was seen at `addr` now.
    pub(super) fn saw_member_at(&mut self, now: Instant, addr: SocketAddr) {
        if addr == self.me.addr {
            return;
        }
        let wall = self.wall_ms(now);
        self.remembered.insert(addr, wall);
        self.bound_remembered();
    }

    fn too_old(&self, wall: u64, seen: u64) -> bool {
        let limit = u64::try_from(self.config.remember_for.as_millis()).unwrap_or(u64::MAX);
        wall.saturating_sub(seen) > limit
    }

    /// Keeps at most `Config::max_remembered` records, forgetting the oldest first. Once over
    /// the bound it trims to 7/8 of it, so a node meeting thousands of members sorts its memory
    /// once per `max/8` new addresses instead of once per address.
    fn bound_remembered(&mut self) {
        let max = self.config.max_remembered;
        if self.remembered.len() <= max {
            return;
        }
        let keep = max - max / 8;
        let mut by_age: Vec<(u64, SocketAddr)> =
            self.remembered.iter().map(|(a, s)| (*s, *a)).collect();
        by_age.sort_unstable();
        let excess = self.remembered.len() - keep;
        for (_, addr) in by_age.into_iter().take(excess) {
            self.remembered.remove(&addr);
        }
    }

    /// Runs the announcer from its shortest interval, now.
    fn restart_announcer(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.announce_every = self.config.announce_min;
        self.announce_gen += 1;
        self.timers
            .push(now, crate::timers::TimerKind::Announce(self.announce_gen));
    }
}
