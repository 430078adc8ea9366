//! Fast reconnection by members that learned a "down" verdict only second-hand: every member
//! holding another down by a verdict probes it, whether or not it saw the suspicion that led to
//! the verdict; a member that left is probed by nobody, whether or not it was suspected before.

use std::time::Duration;

use bytes::Buf;
use foca::{Codec, PostcardCodec, State};
use pidmesh_proto::{Config, Member, TrafficClass};
use pidmesh_sim::{LinkConfig, Sim, SimConfig};
use pidmesh_wire::Datagram;

fn sim_with(nodes: usize, seed: u64, node: Config) -> Sim {
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.node = node;
    cfg.link = LinkConfig {
        min_latency: Duration::from_millis(1),
        max_latency: Duration::from_millis(2),
        ..LinkConfig::default()
    };
    Sim::formed(cfg).expect("the cluster forms")
}

/// The states a SWIM datagram reports about the node named `about`.
fn states_about(bytes: &[u8], about: &str) -> Vec<State> {
    let Ok(Datagram::V1 { swim }) = pidmesh_wire::decode::<Datagram>(bytes) else {
        return Vec::new();
    };
    let mut buf = &swim[..];
    let mut codec = PostcardCodec;
    if Codec::<Member>::decode_header(&mut codec, &mut buf).is_err() || buf.remaining() < 2 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for _ in 0..buf.get_u16() {
        let Ok(m) = Codec::<Member>::decode_member(&mut codec, &mut buf) else {
            break;
        };
        if m.id().node.name == about {
            out.push(m.state());
        }
    }
    out
}

/// Drops every membership datagram to a node of `to` that tells of a suspicion about `about`:
/// those nodes learn the verdict that follows only from the "down" gossip, or by suspecting
/// `about` themselves.
fn hide_suspicions(sim: &mut Sim, about: &'static str, to: Vec<usize>) {
    sim.set_drop_filter(Some(Box::new(move |_, dst, class, bytes| {
        class == TrafficClass::Membership
            && to.contains(&dst)
            && states_about(bytes, about).contains(&State::Suspect)
    })));
}

/// How many reconnection probes each node sent over `d`.
fn probes_over(sim: &mut Sim, nodes: usize, d: Duration) -> Vec<u64> {
    let count = |s: &Sim| -> Vec<u64> {
        (0..nodes)
            .map(|i| s.node(i).map_or(0, |x| x.stats().reconnect_probes))
            .collect()
    };
    let before = count(sim);
    sim.run_for(d);
    count(sim).iter().zip(&before).map(|(a, b)| a - b).collect()
}

#[test]
fn members_that_learned_the_verdict_second_hand_probe_too_and_meet_the_heal_bound() {
    let n = 12;
    let lan = Config::lan();
    let interval = lan.reconnect.expect("on in lan").interval;
    let contact_bound = 2 * interval + 5 * 2 * Duration::from_millis(2);
    for seed in [0x7ec0_0501_u64, 0x7ec0_0502, 0x7ec0_0503] {
        println!("seed = {seed:#x}");
        let mut sim = sim_with(n, seed, lan.clone());
        let others: Vec<usize> = (1..n).collect();
        hide_suspicions(&mut sim, "n0", others.clone());
        sim.partition(&[0], &others);
        sim.run_until(Duration::from_secs(120), Duration::from_millis(10), |s| {
            others.iter().all(|&i| {
                s.node(i)
                    .is_some_and(|x| !x.peers().any(|m| m.node.name == "n0"))
            })
        })
        .expect("every other node holds n0 down");
        sim.set_drop_filter(None);
        sim.run_for(Duration::from_secs(5));
        // Over 1 s, every node holding n0 down probes it about once per interval.
        let probes = probes_over(&mut sim, n, Duration::from_secs(1));
        println!("probes over 1 s: {probes:?}");
        let least = (Duration::from_secs(1).as_millis() / interval.as_millis()) as u64 - 2;
        for &i in &others {
            assert!(
                probes[i] >= least,
                "seed {seed:#x}: node {i} sent {} probes in 1 s (n0 is down there)",
                probes[i]
            );
        }
        sim.run_for(Duration::from_secs(10));
        sim.heal();
        // Every node of the big side sees n0 again within the bound.
        let back = sim
            .run_until(Duration::from_secs(60), Duration::from_millis(1), |s| {
                others.iter().all(|&i| {
                    s.node(i)
                        .is_some_and(|x| x.peers().any(|m| m.node.name == "n0"))
                })
            })
            .expect("the sides meet again");
        println!("seed = {seed:#x}: everyone sees n0 again after {back:?}");
        assert!(back <= contact_bound + interval, "seed {seed:#x}: {back:?}");
    }
}

#[test]
fn a_member_suspected_earlier_that_then_leaves_is_not_probed() {
    for seed in [0x7ec0_0601_u64, 0x7ec0_0602, 0x7ec0_0603] {
        println!("seed = {seed:#x}");
        let n = 8;
        let mut sim = sim_with(n, seed, Config::lan());
        let others: Vec<usize> = (0..n - 1).collect();
        // Short stalls until n7 was suspected (and refuted it), never declared down.
        // (A suspicion that ran out after its member refuted it counts where it was raised.)
        let refuted = |s: &Sim| -> u64 {
            (0..n - 1)
                .map(|i| s.node(i).map_or(0, |x| x.stats().refuted_suspicions))
                .sum()
        };
        for _ in 0..5 {
            sim.stall(n - 1, Duration::from_millis(3_000));
            sim.run_for(Duration::from_secs(10));
            if refuted(&sim) > 0 {
                break;
            }
        }
        assert!(refuted(&sim) > 0, "seed {seed:#x}: n7 was never suspected");
        let everyone = |s: &Sim, peers: usize| {
            others
                .iter()
                .all(|&i| s.node(i).is_some_and(|x| x.peers().count() == peers))
        };
        assert!(
            everyone(&sim, n - 1),
            "seed {seed:#x}: n7 was declared down"
        );
        let before: Vec<u64> = others
            .iter()
            .map(|&i| sim.node(i).map_or(0, |x| x.stats().reconnect_probes))
            .collect();
        sim.shutdown(n - 1);
        sim.run_until(Duration::from_secs(30), Duration::from_millis(10), |s| {
            everyone(s, n - 2)
        })
        .expect("everyone sees the leave");
        sim.run_for(Duration::from_secs(5));
        for (k, &i) in others.iter().enumerate() {
            let p = sim.node(i).expect("runs").stats().reconnect_probes - before[k];
            assert_eq!(p, 0, "seed {seed:#x}: node {i} probed a member that left");
        }
    }
}
