//! Random workloads and random faults, drawn from the simulator's seeded RNG.

use std::time::Duration;

use pidmesh_proto::{Key, SingletonPolicy};
use rand::RngExt;

use crate::shapes::{Pending, random_fault_v2, run_due};
use crate::{LinkConfig, Sim};

/// Shape of the random workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Distinct unique names (few names → many concurrent claims → conflicts).
    pub names: usize,
    /// Distinct groups.
    pub groups: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            names: 12,
            groups: 4,
        }
    }
}

impl Workload {
    /// Runs one random operation on a random running node.
    pub fn step(&self, sim: &mut Sim) {
        // A stalled node's application is paused too.
        let live: Vec<usize> = sim
            .live()
            .into_iter()
            .filter(|&i| !sim.is_stalled(i))
            .collect();
        if live.is_empty() {
            return;
        }
        let i = live[sim.rng().random_range(0..live.len())];
        let roll = sim.rng().random_range(0..100u32);
        let pids = sim.hosts[i].life.pids.clone();
        let pick_pid = |sim: &mut Sim| {
            if pids.is_empty() {
                None
            } else {
                Some(pids[sim.rng().random_range(0..pids.len())].clone())
            }
        };
        match roll {
            0..=9 => {
                sim.spawn(i);
            }
            10..=44 => {
                let pid = match pick_pid(sim) {
                    Some(p) => p,
                    None => match sim.spawn(i) {
                        Some(p) => p,
                        None => return,
                    },
                };
                let name = format!("svc-{}", sim.rng().random_range(0..self.names));
                sim.register(i, &name, &pid);
            }
            45..=64 => {
                if let Some(pid) = pick_pid(sim) {
                    let g = format!("grp-{}", sim.rng().random_range(0..self.groups));
                    sim.join(i, &g, &pid);
                }
            }
            65..=84 => {
                // Remove one of the node's own entries.
                let Some(own) = own_entries(sim, i) else {
                    return;
                };
                if !own.is_empty() {
                    let (k, p) = own[sim.rng().random_range(0..own.len())].clone();
                    sim.remove(i, &k, &p);
                }
            }
            85..=91 => {
                let Some(own) = own_entries(sim, i) else {
                    return;
                };
                if !own.is_empty() {
                    let (k, p) = own[sim.rng().random_range(0..own.len())].clone();
                    let m = [sim.rng().random::<u8>()];
                    sim.update_meta(i, &k, &p, &m);
                }
            }
            _ => {
                if let Some(pid) = pick_pid(sim) {
                    sim.exit(i, &pid);
                }
            }
        }
    }
}

/// Node `i`'s own entries as (key, pid), sorted (the registry's iteration order is not
/// deterministic, the choice made from this list must be).
fn own_entries(sim: &Sim, i: usize) -> Option<Vec<(Key, pidmesh_proto::Pid)>> {
    let n = sim.node(i)?;
    let managed = &sim.hosts[i].life.singleton_pids;
    let mut v: Vec<(Key, pidmesh_proto::Pid)> = n
        .all_entries()
        .filter(|e| e.pid.node == *n.id() && !managed.contains(&e.pid))
        .map(|e| (e.key, e.pid))
        .collect();
    v.sort();
    Some(v)
}

/// One random fault: a partition (symmetric or one-way, possibly on top of others), lossy or
/// duplicating links, a crash, or a restart.
pub fn random_fault(sim: &mut Sim) -> String {
    let n = sim.hosts.len();
    let roll = sim.rng().random_range(0..100u32);
    match roll {
        0..=34 => {
            let mut a = Vec::new();
            let mut b = Vec::new();
            for i in 0..n {
                if sim.rng().random_bool(0.5) {
                    a.push(i)
                } else {
                    b.push(i)
                }
            }
            sim.partition(&a, &b);
            format!("partition {a:?} | {b:?}")
        }
        35..=49 => {
            let from = sim.rng().random_range(0..n);
            let to = sim.rng().random_range(0..n);
            sim.cut_one_way(&[from], &[to]);
            format!("one-way cut n{from} -> n{to}")
        }
        50..=69 => {
            let loss = sim.rng().random_range(0.05..0.4);
            let duplicate = sim.rng().random_range(0.0..0.2);
            sim.set_link(LinkConfig {
                min_latency: Duration::from_micros(100),
                max_latency: Duration::from_millis(30),
                loss,
                duplicate,
            });
            format!("lossy links: loss {loss:.2}, duplicate {duplicate:.2}, latency up to 30ms")
        }
        70..=84 => {
            let i = sim.rng().random_range(0..n);
            sim.crash(i);
            format!("crash n{i}")
        }
        _ => {
            let i = sim.rng().random_range(0..n);
            sim.restart(i);
            format!("restart n{i} as a new life")
        }
    }
}

/// A whole randomized run: form the cluster, then `phases` × (faults + workload, heal, quiesce,
/// check). Returns the log on success, or the violations with the log.
///
/// # Errors
/// A report naming the seed, the phase, the faults and every violated invariant.
pub fn chaos_run(seed: u64, nodes: usize, phases: usize) -> Result<Vec<String>, String> {
    let (sim, log) = chaos_run_keep(seed, nodes, phases);
    match crate::check::all(&sim) {
        Ok(()) => Ok(log),
        Err(errors) => Err(format!(
            "seed {seed}: invariants violated (replay: chaos_run({seed}, {nodes}, {phases}))\n  {}\nlog:\n  {}",
            errors.join("\n  "),
            log.join("\n  ")
        )),
    }
}

/// [`chaos_run`] that stops at the first phase whose checks fail (or after the last phase) and
/// returns the simulator for inspection along with the log.
pub fn chaos_run_keep(seed: u64, nodes: usize, phases: usize) -> (Sim, Vec<String>) {
    chaos_run_inner(seed, nodes, phases, Opts::default())
}

/// [`chaos_run_keep`] with three singletons (majority-of-known, static quorum, available) every
/// node is a candidate for; the quorum safety invariant is checked after every step.
pub fn chaos_run_singletons(seed: u64, nodes: usize, phases: usize) -> (Sim, Vec<String>) {
    chaos_run_inner(seed, nodes, phases, Opts::SINGLETONS)
}

/// [`chaos_run_singletons`] with every node event recorded in [`crate::Sim::trace_log`].
pub fn chaos_run_singletons_traced(seed: u64, nodes: usize, phases: usize) -> (Sim, Vec<String>) {
    let opts = Opts {
        trace: true,
        ..Opts::SINGLETONS
    };
    chaos_run_inner(seed, nodes, phases, opts)
}

/// [`chaos_run_keep`] with every node event recorded in [`crate::Life::events`].
pub fn chaos_run_keep_traced(seed: u64, nodes: usize, phases: usize) -> (Sim, Vec<String>) {
    let opts = Opts {
        trace: true,
        ..Opts::default()
    };
    chaos_run_inner(seed, nodes, phases, opts)
}

/// [`chaos_run_keep`] where every node keeps one process contending for each of two strict
/// registrations (quorum `n/2+1` and quorum `n`), registering again whenever its registration
/// ended; the safety invariant (never two holders of a strict name at any instant) is checked
/// after every step of every node.
pub fn chaos_run_strict(seed: u64, nodes: usize, phases: usize) -> (Sim, Vec<String>) {
    chaos_run_inner(seed, nodes, phases, Opts::STRICT)
}

/// [`chaos_run`] with the second fault draw ([`crate::shapes::random_fault_v2`]: stalls,
/// graceful leaves, per-link and per-class loss, flapping, partitions during catch-up, skewed
/// wall clocks, non-transitive cuts) and hosts whose wall clocks disagree by up to 30 s (at
/// times 10 min) from the start. A separate draw, so the first draw's seeds keep meaning the schedules they did.
///
/// # Errors
/// A report naming the seed, the phase, the faults and every violated invariant.
pub fn chaos_run_v2(seed: u64, nodes: usize, phases: usize) -> Result<Vec<String>, String> {
    let (sim, log) = chaos_run_v2_keep(seed, nodes, phases, Opts::default());
    match crate::check::all(&sim) {
        Ok(()) => Ok(log),
        Err(errors) => Err(format!(
            "seed {seed}: invariants violated (replay: chaos_run_v2({seed}, {nodes}, {phases}))\n  {}\nlog:\n  {}",
            errors.join("\n  "),
            log.join("\n  ")
        )),
    }
}

/// [`chaos_run_v2`] with `opts` (singletons, strict names, tracing) that returns the simulator
/// for inspection along with the log.
pub fn chaos_run_v2_keep(seed: u64, nodes: usize, phases: usize, opts: Opts) -> (Sim, Vec<String>) {
    chaos_run_inner(seed, nodes, phases, Opts { v2: true, ..opts })
}

/// What a randomized run includes besides the workload and the faults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opts {
    /// Record every node event ([`crate::Sim::trace_log`]).
    pub trace: bool,
    /// Three singletons every node is a candidate for (see [`chaos_run_singletons`]).
    pub singletons: bool,
    /// Two strict names every node contends for (see [`chaos_run_strict`]).
    pub strict: bool,
    /// The second fault draw and skewed clocks (see [`chaos_run_v2`]).
    pub v2: bool,
}

impl Opts {
    /// With singletons.
    pub const SINGLETONS: Opts = Opts {
        trace: false,
        singletons: true,
        strict: false,
        v2: false,
    };
    /// With strict names.
    pub const STRICT: Opts = Opts {
        trace: false,
        singletons: false,
        strict: true,
        v2: false,
    };
}

fn chaos_run_inner(seed: u64, nodes: usize, phases: usize, opts: Opts) -> (Sim, Vec<String>) {
    let mut config = crate::SimConfig::new(nodes, seed);
    if opts.strict {
        config.strict = vec![
            ("strict-majority".to_string(), nodes / 2 + 1),
            ("strict-all".to_string(), nodes),
        ];
    }
    if opts.singletons {
        config.singletons = vec![
            (
                "sched-majority".to_string(),
                SingletonPolicy::MajorityOfKnown,
            ),
            (
                "sched-static".to_string(),
                SingletonPolicy::StaticQuorum(nodes / 2 + 1),
            ),
            ("sched-any".to_string(), SingletonPolicy::Available),
        ];
    }
    if opts.v2 {
        config.clock_skew_ms = crate::shapes::initial_skews(seed, nodes);
    }
    let mut sim = Sim::new(config);
    sim.trace = opts.trace;
    let wl = Workload::default();
    let mut log = Vec::new();
    let mut pending = Pending::default();
    let formed = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        crate::check::membership_agrees_ok,
    );
    log.push(format!("cluster of {nodes} formed after {formed:?}"));
    if opts.v2 {
        log.push(format!(
            "wall clock skews (ms): {:?}",
            sim.hosts
                .iter()
                .map(|h| h.clock_skew_ms)
                .collect::<Vec<_>>()
        ));
    }
    for phase in 0..phases {
        let faults = sim.rng().random_range(1..4u32);
        for _ in 0..faults {
            let f = if opts.v2 {
                random_fault_v2(&mut sim, &mut pending)
            } else {
                random_fault(&mut sim)
            };
            log.push(format!("t={:?} phase {phase}: {f}", sim.elapsed()));
        }
        // Faults last 1–12 s of virtual time: shorter and longer than failure detection.
        let steps = sim.rng().random_range(20..240u32);
        for _ in 0..steps {
            run_due(&mut sim, &mut pending, &mut log);
            wl.step(&mut sim);
            let gap = Duration::from_millis(sim.rng().random_range(1..100));
            sim.run_for(gap);
        }
        // Heal: links back, crashed nodes restarted (some stay dead to exercise cleanup).
        pending.clear();
        sim.heal();
        sim.clear_link_faults();
        sim.set_link(LinkConfig::default());
        if opts.v2 && sim.rng().random_bool(0.25) {
            // Some loss that outlasts the heal: convergence must not need a perfect network.
            let f = crate::shapes::lingering_loss(&mut sim);
            log.push(format!("t={:?} phase {phase}: {f}", sim.elapsed()));
        }
        for i in 0..sim.hosts.len() {
            if sim.hosts[i].node.is_none() && sim.rng().random_bool(0.5) {
                sim.restart(i);
                log.push(format!(
                    "t={:?} phase {phase}: restart crashed n{i}",
                    sim.elapsed()
                ));
            }
        }
        let took = sim.run_until(
            Duration::from_secs(120),
            Duration::from_millis(100),
            crate::check::converged,
        );
        log.push(format!(
            "t={:?} phase {phase}: healed, converged after {took:?} ({} messages delivered, {} dropped)",
            sim.elapsed(),
            sim.delivered,
            sim.dropped
        ));
        // Let conflict losers and purges settle, then check everything. (Loss kept through the
        // heal ends first: under loss, strict and singleton holders whose renewals go unanswered
        // stop and claim again, so their state never stands still.)
        sim.clear_link_faults();
        sim.run_for(Duration::from_secs(3));
        if crate::check::all(&sim).is_err() {
            log.push(format!("phase {phase}: invariants violated"));
            break;
        }
    }
    (sim, log)
}
