//! The second fault draw ([`random_fault_v2`], used by `workload::chaos_run_v2` and its
//! singleton and strict variants): every shape of [`crate::workload::random_fault`] plus
//! shapes that draw on time and on single links:
//!
//! * a stalled node (a GC pause, SIGSTOP): it handles nothing for 0.1–4 s, then its waiting
//!   messages and overdue timers at once;
//! * a graceful leave, at once or while the leaver is cut off from some members;
//! * asymmetric loss on single directed links;
//! * dropping one traffic class to or from one node;
//! * flapping: a partition healed and cut again several times, faster than suspicion;
//! * a partition that starts while a restarted node is catching up;
//! * a restart with the wall clock off by up to 30 s, sometimes 10 min (the keep-oldest
//!   resolver reads it; beyond `max_clock_drift` peers ignore its readings);
//! * non-transitive partitions: single pairs cut both ways, every other link fine.
//!
//! At a heal, one time in four, [`lingering_loss`] leaves loss on a few directed links until
//! the cluster converged (then the phase settles on clean links and is checked).
//!
//! Faults that unfold over time are [`Pending`] actions the run performs when their virtual
//! time comes (the phase loop calls [`run_due`] between workload steps).

use std::time::Duration;

use pidmesh_proto::TrafficClass;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::Sim;

/// One timed step of a fault.
#[derive(Debug, Clone)]
pub enum Action {
    /// Cut the links between the two sets, both ways.
    Cut(Vec<usize>, Vec<usize>),
    /// Restore the links between the two sets, both ways.
    Uncut(Vec<usize>, Vec<usize>),
    /// Leave gracefully.
    Shutdown(usize),
}

/// Timed fault steps not performed yet: (virtual time since the start, action).
#[derive(Debug, Default)]
pub struct Pending(Vec<(Duration, Action)>);

impl Pending {
    fn at(&mut self, sim: &Sim, after: Duration, action: Action) {
        self.0.push((sim.elapsed() + after, action));
    }

    /// Forgets every step not performed yet (at a heal).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Performs the pending steps whose time has come, in time order; logs each.
pub fn run_due(sim: &mut Sim, pending: &mut Pending, log: &mut Vec<String>) {
    let now = sim.elapsed();
    // Stable sort: steps at the same instant keep the order they were drawn in.
    pending.0.sort_by_key(|(at, _)| *at);
    let due = pending.0.iter().take_while(|(at, _)| *at <= now).count();
    for (_, action) in pending.0.drain(..due).collect::<Vec<_>>() {
        match &action {
            Action::Cut(a, b) => sim.partition(a, b),
            Action::Uncut(a, b) => sim.unpartition(a, b),
            Action::Shutdown(i) => sim.shutdown(*i),
        }
        log.push(format!("t={now:?}   step: {action:?}"));
    }
}

fn random_split(sim: &mut Sim) -> (Vec<usize>, Vec<usize>) {
    let n = sim.hosts.len();
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..n {
        if sim.rng().random_bool(0.5) {
            a.push(i);
        } else {
            b.push(i);
        }
    }
    (a, b)
}

/// A random non-empty subset of the nodes other than `i`.
fn others(sim: &mut Sim, i: usize) -> Vec<usize> {
    let n = sim.hosts.len();
    let mut v = Vec::new();
    for j in (0..n).filter(|&j| j != i) {
        if sim.rng().random_bool(0.5) {
            v.push(j);
        }
    }
    if v.is_empty() && n > 1 {
        let j = (i + 1 + sim.rng().random_range(0..n - 1)) % n;
        v.push(j);
    }
    v
}

fn ms(sim: &mut Sim, range: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(sim.rng().random_range(range))
}

/// Up to 30 s either way, or (one time in four) up to 10 min, beyond
/// `Config::max_clock_drift` (60 s), where peers stop adopting the host's clock readings.
fn random_skew(rng: &mut impl rand::Rng) -> i64 {
    if rng.random_bool(0.25) {
        rng.random_range(-600_000..=600_000)
    } else {
        rng.random_range(-30_000..=30_000)
    }
}

/// Clock skews for a cluster of `nodes` built from `seed`: about half the hosts off by up to
/// 30 s or 10 min (drawn from their own stream, so the run's main stream is the same as without).
pub fn initial_skews(seed: u64, nodes: usize) -> Vec<i64> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_c10c);
    (0..nodes)
        .map(|_| {
            if rng.random_bool(0.5) {
                random_skew(&mut rng)
            } else {
                0
            }
        })
        .collect()
}

/// One random fault of the second draw (see the module documentation); timed steps go to
/// `pending`. Returns what was done.
pub fn random_fault_v2(sim: &mut Sim, pending: &mut Pending) -> String {
    let n = sim.hosts.len();
    let roll = sim.rng().random_range(0..100u32);
    match roll {
        // The first draw's shapes, less often.
        0..=39 => crate::workload::random_fault(sim),
        40..=49 => {
            let i = sim.rng().random_range(0..n);
            let d = ms(sim, 100..4_000);
            sim.stall(i, d);
            format!("stall n{i} for {d:?}")
        }
        50..=55 => {
            let i = sim.rng().random_range(0..n);
            sim.shutdown(i);
            format!("graceful leave of n{i}")
        }
        56..=61 => {
            let i = sim.rng().random_range(0..n);
            let cut = others(sim, i);
            sim.partition(&[i], &cut);
            let after = ms(sim, 0..800);
            pending.at(sim, after, Action::Shutdown(i));
            format!("n{i} cut off from {cut:?}, leaves gracefully {after:?} later")
        }
        62..=69 => {
            let links = sim.rng().random_range(1..=3u32);
            let mut desc = Vec::new();
            for _ in 0..links {
                let from = sim.rng().random_range(0..n);
                let to = sim.rng().random_range(0..n);
                let loss = sim.rng().random_range(0.3..1.0);
                sim.set_link_loss(from, to, loss);
                desc.push(format!("n{from}->n{to} {loss:.2}"));
            }
            format!("asymmetric link loss: {}", desc.join(", "))
        }
        70..=75 => {
            let x = sim.rng().random_range(0..n);
            let class = match sim.rng().random_range(0..4u32) {
                0 => TrafficClass::Membership,
                1 => TrafficClass::Delta,
                2 => TrafficClass::Sync,
                _ => TrafficClass::Mail,
            };
            let outgoing = sim.rng().random_bool(0.5);
            let p = sim.rng().random_range(0.5..1.0);
            let mut rng = StdRng::seed_from_u64(sim.rng().random());
            sim.set_drop_filter(Some(Box::new(move |from, to, c, _| {
                let hit = if outgoing { from == x } else { to == x };
                hit && c == class && rng.random_bool(p)
            })));
            let dir = if outgoing { "from" } else { "to" };
            format!("drop {class:?} {dir} n{x} with probability {p:.2}")
        }
        76..=83 => {
            let (a, b) = random_split(sim);
            let flaps = sim.rng().random_range(3..7u32);
            let mut t = Duration::ZERO;
            for _ in 0..flaps {
                pending.at(sim, t, Action::Cut(a.clone(), b.clone()));
                t += ms(sim, 50..400);
                pending.at(sim, t, Action::Uncut(a.clone(), b.clone()));
                t += ms(sim, 50..400);
            }
            format!("flapping {a:?} | {b:?}: {flaps} cuts over {t:?}")
        }
        84..=89 => {
            // Something to catch up on first: a burst of group joins on another node.
            let i = sim.rng().random_range(0..n);
            let j = (i + 1 + sim.rng().random_range(0..n.max(2) - 1)) % n;
            let burst = sim.rng().random_range(0..600usize);
            if let Some(pid) = sim.spawn(j) {
                for g in 0..burst {
                    sim.join(j, &format!("bulk-{g}"), &pid);
                }
            }
            sim.restart(i);
            let cut = others(sim, i);
            let after = if sim.rng().random_bool(0.5) {
                Duration::from_micros(sim.rng().random_range(0..30_000))
            } else {
                ms(sim, 0..400)
            };
            pending.at(sim, after, Action::Cut(vec![i], cut.clone()));
            format!(
                "n{j} joins {burst} groups, restart n{i}, cut off from {cut:?} {after:?} later while catching up"
            )
        }
        90..=94 => {
            let i = sim.rng().random_range(0..n);
            let skew = random_skew(sim.rng());
            sim.set_clock_skew(i, skew);
            sim.restart(i);
            format!("restart n{i} with its wall clock off by {skew} ms")
        }
        _ => {
            let pairs = sim.rng().random_range(1..=3u32);
            let mut desc = Vec::new();
            for _ in 0..pairs {
                let a = sim.rng().random_range(0..n);
                let b = sim.rng().random_range(0..n);
                if a != b {
                    sim.partition(&[a], &[b]);
                    desc.push(format!("n{a}-n{b}"));
                }
            }
            format!("non-transitive cut of {}", desc.join(", "))
        }
    }
}

/// Loss of 5–50 % on one to three directed links (set at a heal, kept until the cluster
/// converged). Returns what was done.
pub fn lingering_loss(sim: &mut Sim) -> String {
    let n = sim.hosts.len();
    let links = sim.rng().random_range(1..=3u32);
    let mut desc = Vec::new();
    for _ in 0..links {
        let from = sim.rng().random_range(0..n);
        let to = sim.rng().random_range(0..n);
        let loss = sim.rng().random_range(0.05..0.5);
        sim.set_link_loss(from, to, loss);
        desc.push(format!("n{from}->n{to} {loss:.2}"));
    }
    format!("loss kept through the heal: {}", desc.join(", "))
}
