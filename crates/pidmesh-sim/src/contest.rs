//! The contested heal shared by the heal tests and examples: node 0 of three is cut off from
//! nodes 1 and 2 until each side holds the other down, then both sides claim the same names.

use std::time::Duration;

use pidmesh_proto::Pid;

use crate::Sim;

/// Cuts node 0 off from nodes 1 and 2 and runs until node 0 holds no peer and nodes 1 and 2
/// hold only each other. Returns the virtual time that took, or `None` if it did not happen
/// within `limit`.
pub fn cut_off_node_zero(sim: &mut Sim, limit: Duration) -> Option<Duration> {
    sim.partition(&[0], &[1, 2]);
    sim.run_until(limit, Duration::from_millis(10), |s| {
        s.node(0).is_some_and(|x| x.peers().count() == 0)
            && (1..3).all(|i| s.node(i).is_some_and(|x| x.peers().count() == 1))
    })
}

/// Registers every name of `names` for a new process on node 0, then 5 ms later for a new
/// process on node 2. Returns the two processes, or `None` if a node is down or refused a name.
pub fn claim_on_both_sides(sim: &mut Sim, names: &[String]) -> Option<(Pid, Pid)> {
    let a = sim.spawn(0)?;
    for name in names {
        sim.register(0, name, &a)?;
    }
    sim.run_for(Duration::from_millis(5));
    let b = sim.spawn(2)?;
    for name in names {
        sim.register(2, name, &b)?;
    }
    Some((a, b))
}
