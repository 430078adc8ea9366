//! Fault controls beside those of `lib.rs`: undoing single cuts (for flapping and
//! non-transitive partitions), clock skew, and clearing per-link faults at a heal.

use crate::Sim;

impl Sim {
    /// Restores the links from every node of `from` to every node of `to` (not the other way),
    /// leaving every other cut in place.
    pub fn uncut_one_way(&mut self, from: &[usize], to: &[usize]) {
        for &x in from {
            for &y in to {
                self.net.cut.remove(&(x, y));
            }
        }
    }

    /// Restores the links between the two sets, both ways (see [`Sim::uncut_one_way`]).
    pub fn unpartition(&mut self, a: &[usize], b: &[usize]) {
        self.uncut_one_way(a, b);
        self.uncut_one_way(b, a);
    }

    /// True if the network drops everything sent from `from` to `to`.
    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        self.net.blocked(from, to)
    }

    /// Sets how far host `i`'s wall clock is off, in milliseconds: its next life (a restart)
    /// starts with that clock; the running life keeps the clock it started with.
    pub fn set_clock_skew(&mut self, i: usize, skew_ms: i64) {
        if let Some(h) = self.hosts.get_mut(i) {
            h.clock_skew_ms = skew_ms;
        }
    }

    /// Removes every per-link loss ([`Sim::set_link_loss`]) and the drop filter
    /// ([`Sim::set_drop_filter`]).
    pub fn clear_link_faults(&mut self) {
        self.link_loss.clear();
        self.drop_filter = None;
    }
}
