//! A quorum singleton's holder whose process stalls (a GC pause, SIGSTOP) for longer than its
//! lease: the others seat a new holder meanwhile, and the stalled one stops its run in its very
//! first step when it resumes, before the simulator's safety check sees it running next to
//! the new holder (a paused run does not count while the pause lasts, see `Sim::stall`).

use std::time::Duration;

use pidmesh_proto::{Event, SingletonPolicy};
use pidmesh_sim::{Sim, SimConfig};

const NAME: &str = "scheduler";

#[test]
fn stalled_holder_stops_in_its_first_step_after_resuming() {
    for (seed, policy) in [
        (21, SingletonPolicy::StaticQuorum(3)),
        (22, SingletonPolicy::MajorityOfKnown),
        (23, SingletonPolicy::StaticQuorum(2)),
    ] {
        println!("seed = {seed}, policy = {policy:?}");
        let mut cfg = SimConfig::new(5, seed);
        cfg.singletons = vec![(NAME.to_string(), policy)];
        let lease = cfg.node.singleton_lease();
        let mut sim = Sim::new(cfg);
        sim.trace = true;
        let up = sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
            s.runners(NAME).len() == 1
        });
        assert!(up.is_some(), "no holder elected");
        let old = sim.runners(NAME)[0];
        let pause = lease * 5;
        let resumes = sim.elapsed() + pause;
        sim.stall(old, pause);
        // While it is paused, a new holder is seated elsewhere.
        let moved = sim.run_until(pause, Duration::from_millis(10), |s| {
            s.runners(NAME).iter().any(|&r| r != old)
        });
        assert!(
            moved.is_some(),
            "no new holder while the old one was paused"
        );
        sim.run_for(resumes.saturating_sub(sim.elapsed()) + lease);
        let stopped_at = sim.trace_log.iter().find_map(|(t, i, e)| match e {
            Event::SingletonStopped { name, .. } if *i == old && name == NAME => Some(*t),
            _ => None,
        });
        println!(
            "  holder n{old} paused for {pause:?} until {resumes:?}, new holder after {moved:?}, \
             old one stopped at {stopped_at:?}; safety checked at {} instants",
            sim.safety_checks
        );
        assert_eq!(
            stopped_at,
            Some(resumes),
            "the resumed holder did not stop at once"
        );
        assert!(
            sim.safety_violations.is_empty(),
            "{:?}",
            &sim.safety_violations[..sim.safety_violations.len().min(3)]
        );
        assert_eq!(sim.runners(NAME).len(), 1);
    }
}
