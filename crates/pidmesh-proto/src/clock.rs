//! The hybrid logical clock.

use pidmesh_wire::Hlc;

/// Issues [`Hlc`] readings that never go backwards and stay close to physical time.
///
/// The physical time is passed in by the caller (the node never reads a clock).
#[derive(Debug, Clone, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A fresh reading for a local event at physical time `wall_ms`.
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        self.last = if wall_ms > self.last.wall_ms {
            Hlc {
                wall_ms,
                logical: 0,
            }
        } else {
            bump(self.last)
        };
        self.last
    }

    /// Takes a remote reading into account so later local readings order after it.
    /// Readings more than `max_ahead_ms` ahead of `wall_ms` are ignored; returns false then.
    pub fn observe(&mut self, remote: Hlc, wall_ms: u64, max_ahead_ms: u64) -> bool {
        if remote.wall_ms > wall_ms.saturating_add(max_ahead_ms) {
            return false;
        }
        if remote > self.last {
            self.last = remote;
        }
        true
    }

    /// The last reading issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }
}

fn bump(h: Hlc) -> Hlc {
    match h.logical.checked_add(1) {
        Some(logical) => Hlc {
            wall_ms: h.wall_ms,
            logical,
        },
        None => Hlc {
            wall_ms: h.wall_ms + 1,
            logical: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards_even_when_wall_time_does() {
        let mut c = HlcClock::default();
        let a = c.tick(1000);
        let b = c.tick(900);
        let d = c.tick(1000);
        assert!(a < b && b < d, "{a:?} {b:?} {d:?}");
        assert!(c.observe(
            Hlc {
                wall_ms: 1500,
                logical: 7
            },
            1000,
            1000
        ));
        assert!(
            c.tick(1001)
                > Hlc {
                    wall_ms: 1500,
                    logical: 7
                }
        );
        assert!(
            !c.observe(
                Hlc {
                    wall_ms: 1_000_000,
                    logical: 0
                },
                1000,
                1000
            ),
            "far-future reading rejected"
        );
        assert!(c.last().wall_ms < 2000);
    }
}
