//! Fast reconnection after a partition (`Config::reconnect`): the first exchange across a healed
//! link, and the registry's convergence, come within a bound derived from the probing interval
//! however long the partition lasted (the seed announcer's backoff would be at seconds by then);
//! the probing costs at most one announce per interval per down member and `max_per_tick` per
//! interval in all, and stops after its window; members that left are not probed; a crashed
//! member that restarts is back at once.

use std::time::Duration;

use pidmesh_proto::{Config, Reconnect};
use pidmesh_sim::{LinkConfig, Sim, SimConfig, contest};

/// One-way delay of every simulated link here (a fixed 2 ms: round trips of 4 ms).
const ONE_WAY: Duration = Duration::from_millis(2);

fn sim_with(nodes: usize, seed: u64, node: Config) -> Sim {
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.node = node;
    cfg.link = LinkConfig {
        min_latency: ONE_WAY / 2,
        max_latency: ONE_WAY,
        ..LinkConfig::default()
    };
    Sim::formed(cfg).expect("the cluster forms")
}

/// What a heal looked like: heal → first contact across the link, heal → one winner everywhere.
#[derive(Debug)]
struct Heal {
    contact: Duration,
    one_winner: Duration,
}

/// Node 0 is cut off from nodes 1 and 2 until both sides declared the other down, then for
/// `extra` more; both sides register the same `n` names (node 0 first); the links come back.
fn heal(seed: u64, node: Config, extra: Duration, n: usize) -> Heal {
    let mut sim = sim_with(3, seed, node);
    contest::cut_off_node_zero(&mut sim, Duration::from_secs(120))
        .expect("both sides declare the other down");
    let names: Vec<String> = (0..n).map(|i| format!("contested/{i:04}")).collect();
    let (a, _) =
        contest::claim_on_both_sides(&mut sim, &names).expect("both sides claim every name");
    sim.run_for(extra);
    sim.heal();
    let step = Duration::from_millis(1);
    let contact = sim
        .run_until(Duration::from_secs(120), step, |s| {
            s.node(0).is_some_and(|x| x.peers().count() > 0)
                || (1..3).any(|i| {
                    s.node(i)
                        .is_some_and(|x| x.peers().any(|m| m.node.name == "n0"))
                })
        })
        .expect("the sides meet again");
    let rest = sim
        .run_until(Duration::from_secs(120), step, |s| {
            (0..3).all(|i| {
                s.node(i).is_some_and(|x| {
                    names
                        .iter()
                        .all(|m| x.lookup(m).is_some_and(|e| e.pid == a))
                })
            })
        })
        .expect("one winner everywhere");
    Heal {
        contact,
        one_winner: contact + rest,
    }
}

/// The partitions here last long enough that the old backoff would be at seconds (the down
/// verdicts, then 10–30 s more, drawn from the seed).
fn extra_of(seed: u64) -> Duration {
    Duration::from_millis(10_000 + (seed.wrapping_mul(0x9e37_79b9) % 20_000))
}

#[test]
fn after_a_long_partition_the_first_contact_and_one_winner_come_within_two_probe_intervals() {
    let seeds = [0x7ec0_0001_u64, 0x7ec0_0002, 0x7ec0_0003, 0x7ec0_0004];
    let lan = Config::lan();
    let interval = lan.reconnect.expect("on in lan").interval;
    // One interval until the next probe, one more in case the first crossed the heal; then a
    // few round trips of SWIM (announce, identity renewal, feed) before a member is up.
    let contact_bound = 2 * interval + 5 * 2 * ONE_WAY;
    // Then the registry: a digest, its answer, the resolver, a removal delta (a few RTTs and a
    // batch window, with slack for the renewal's second round).
    let winner_bound = contact_bound + 20 * 2 * ONE_WAY;
    for seed in seeds {
        let extra = extra_of(seed);
        let h = heal(seed, lan.clone(), extra, 200);
        println!(
            "seed = {seed:#x}, partition + {extra:?}: {h:?} (bounds {contact_bound:?} / {winner_bound:?})"
        );
        assert!(h.contact <= contact_bound, "seed {seed:#x}: {h:?}");
        assert!(h.one_winner <= winner_bound, "seed {seed:#x}: {h:?}");
    }
    // The bound is met because of the probing: with only the backoff, it is missed.
    let mut old = lan;
    old.reconnect = None;
    let slowest = seeds
        .iter()
        .map(|&seed| {
            let h = heal(seed, old.clone(), extra_of(seed), 200);
            println!("seed = {seed:#x} without reconnect: {h:?}");
            h.contact
        })
        .max()
        .expect("seeds");
    assert!(
        slowest > contact_bound,
        "without fast reconnection every contact still came within {contact_bound:?}"
    );
}

/// `local` with a short window, so the test sees it end.
fn probing(max_per_tick: usize) -> Config {
    let mut c = Config::local();
    c.reconnect = Some(Reconnect {
        interval: Duration::from_millis(20),
        window: Duration::from_secs(10),
        max_per_tick,
    });
    c
}

/// Crashes `down` of `nodes` nodes (the last ones) and returns how many probes node 0 sent
/// over 5 s inside the window, and over 20 s after the window ended. Checks the bytes per probe.
fn probes_after_crash(seed: u64, nodes: usize, down: usize, cfg: Config) -> (u64, u64) {
    println!("seed = {seed:#x}, {nodes} nodes, {down} crashed");
    let mut sim = sim_with(nodes, seed, cfg.clone());
    let crash_at = sim.elapsed();
    for i in nodes - down..nodes {
        sim.crash(i);
    }
    sim.run_until(Duration::from_secs(60), Duration::from_millis(10), |s| {
        s.node(0)
            .is_some_and(|x| x.peers().count() == nodes - down - 1)
    })
    .expect("node 0 declares the crashed nodes down");
    let all_down = sim.elapsed();
    let probes = |s: &Sim| s.node(0).expect("node 0 runs").stats().reconnect_probes;
    let at = probes(&sim);
    let bytes_at = sim.bytes_by_host[0][0];
    sim.run_for(Duration::from_secs(5));
    let in_window = probes(&sim) - at;
    let bytes_in_window = sim.bytes_by_host[0][0] - bytes_at;
    // Every verdict came after the crash, so every window ended by `crash_at + window`
    // counted from `all_down`.
    let window = cfg.reconnect.expect("on").window;
    sim.run_for(
        window + (all_down - crash_at) - Duration::from_secs(5) + Duration::from_millis(100),
    );
    let at = probes(&sim);
    let announces = sim.node(0).expect("runs").stats().announces;
    let bytes_at = sim.bytes_by_host[0][0];
    sim.run_for(Duration::from_secs(5));
    // Membership bytes of 5 s without probing (SWIM with the live members, the backoff).
    let baseline = sim.bytes_by_host[0][0] - bytes_at;
    sim.run_for(Duration::from_secs(15));
    let after = probes(&sim) - at;
    let backoff = sim.node(0).expect("runs").stats().announces - announces;
    let per_probe = bytes_in_window.saturating_sub(baseline) / in_window.max(1);
    println!(
        "probes in 5 s: {in_window} ({per_probe} B each: {bytes_in_window} B of membership \
         traffic vs {baseline} B in 5 s after the window); after the window: {after}; \
         backoff announces in 20 s: {backoff}"
    );
    // A probe of an unreachable address is one small datagram (a SWIM header, no gossip).
    assert!(per_probe <= 200, "{per_probe} B per probe");
    // After the window only the backoff remains (`local`: announce_max 2 s, one per target).
    assert!(backoff <= 12 * down as u64, "backoff announces {backoff}");
    (in_window, after)
}

#[test]
fn probing_costs_one_announce_per_interval_per_down_member_and_stops_after_the_window() {
    let ticks = 5_000 / 20; // 5 s at 20 ms
    // Fewer targets than the per-tick cap: every down member once per interval.
    for seed in [0x7ec0_0101_u64, 0x7ec0_0102] {
        let (in_window, after) = probes_after_crash(seed, 4, 2, probing(8));
        assert!(
            in_window <= 2 * (ticks + 1) && in_window >= 2 * (ticks - 1),
            "seed {seed:#x}: {in_window} probes in 5 s for 2 down members"
        );
        assert_eq!(after, 0, "seed {seed:#x}: probing stops after the window");
    }
    // More targets than the cap: the cap bounds the total, whatever the number down.
    for seed in [0x7ec0_0201_u64, 0x7ec0_0202] {
        let (in_window, after) = probes_after_crash(seed, 7, 5, probing(2));
        assert!(
            in_window <= 2 * (ticks + 1) && in_window >= 2 * (ticks - 1),
            "seed {seed:#x}: {in_window} probes in 5 s for 5 down members, cap 2 per tick"
        );
        assert_eq!(after, 0, "seed {seed:#x}: probing stops after the window");
    }
}

#[test]
fn members_that_left_are_not_probed() {
    for seed in [0x7ec0_0301_u64, 0x7ec0_0302] {
        println!("seed = {seed:#x}");
        // 8 nodes: a leaver tells 3 members itself; the others learn it second-hand.
        let mut sim = sim_with(8, seed, probing(8));
        sim.shutdown(7);
        sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
            (0..7).all(|i| s.node(i).is_some_and(|x| x.peers().count() == 6))
        })
        .expect("everyone sees the leave");
        sim.run_for(Duration::from_secs(5));
        for i in 0..7 {
            let p = sim.node(i).expect("runs").stats().reconnect_probes;
            assert_eq!(p, 0, "seed {seed:#x}: node {i} probed a member that left");
        }
    }
}

#[test]
fn a_crashed_member_restarted_after_its_down_verdict_is_back_at_once() {
    for seed in [0x7ec0_0401_u64, 0x7ec0_0402] {
        println!("seed = {seed:#x}");
        let mut sim = sim_with(3, seed, Config::lan());
        sim.crash(2);
        sim.run_until(Duration::from_secs(60), Duration::from_millis(10), |s| {
            (0..2).all(|i| s.node(i).is_some_and(|x| x.peers().count() == 1))
        })
        .expect("the crash is detected");
        sim.run_for(Duration::from_secs(15));
        sim.restart(2);
        let back = sim
            .run_until(Duration::from_secs(30), Duration::from_millis(1), |s| {
                (0..3).all(|i| s.node(i).is_some_and(|x| x.peers().count() == 2))
            })
            .expect("the restarted node is back");
        println!("seed = {seed:#x}: back after {back:?}");
        // Its own announce to the seeds at start, a few round trips.
        assert!(
            back <= Duration::from_millis(100),
            "seed {seed:#x}: {back:?}"
        );
    }
}
