//! Anti-entropy cost follows the live state: a whole-row resend sends the live entries of the
//! origin in as few chunks as they need, however many operations the origin made before;
//! digests that cross removals in flight, and removals that were lost, are repaired from the
//! removal log without whole-row resends.

use std::time::Duration;

use pidmesh_proto::{Config, Key};
use pidmesh_sim::{Sim, SimConfig, check};

fn cluster(seed: u64, config: Config) -> Sim {
    println!("seed = {seed:#x}");
    let mut cfg = SimConfig::new(2, seed);
    cfg.node = config;
    let mut sim = Sim::new(cfg);
    let formed = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        check::membership_agrees_ok,
    );
    assert!(formed.is_some(), "the cluster did not form");
    sim
}

fn converge(sim: &mut Sim) {
    let took = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        check::converged,
    );
    assert!(took.is_some(), "{:?}", check::equal_state(sim));
}

/// n0 makes 200,000 operations on one name (a long history, few live entries), then removes
/// more entries than its removal log holds while n1 does not hear it: n1's next digest shows it
/// holding entries n0 removed, and n0 resends its whole row. That resend is one chunk per
/// answered digest (10 live entries), not one per 32,768 sequence numbers of history.
#[test]
fn a_whole_row_resend_costs_the_live_entries_not_the_history() {
    let mut config = Config::local();
    config.removal_log = 4;
    let mut sim = cluster(0xae_0001, config);
    let pid = sim.spawn(0).expect("runs");
    let key = Key::name("history");
    sim.register(0, "history", &pid).expect("registers");
    for i in 0..200_000u32 {
        sim.update_meta(0, &key, &pid, &i.to_le_bytes())
            .expect("updates");
    }
    let mut live = Vec::new();
    for i in 0..20 {
        let p = sim.spawn(0).expect("runs");
        let name = format!("live-{i}");
        sim.register(0, &name, &p).expect("registers");
        live.push((Key::name(&name), p));
    }
    converge(&mut sim);
    let own_max = sim
        .node(0)
        .map(|n| n.registry().context().max(n.id()))
        .unwrap_or(0);
    assert!(own_max > 200_000, "history of n0: {own_max}");
    sim.cut_one_way(&[0], &[1]);
    for (k, p) in live.drain(..10) {
        sim.remove(0, &k, &p).expect("removes");
    }
    sim.run_for(Duration::from_millis(300));
    let before = (
        sim.node(0).map(|n| n.stats()),
        sim.node(1).map(|n| n.stats()),
    );
    sim.heal();
    converge(&mut sim);
    let after = (
        sim.node(0).map(|n| n.stats()),
        sim.node(1).map(|n| n.stats()),
    );
    let (Some(a0), Some(a1), Some(b0), Some(b1)) = (before.0, before.1, after.0, after.1) else {
        panic!("both nodes run");
    };
    let resends = b0.full_syncs - a0.full_syncs;
    let answers = b0.digests_answered - a0.digests_answered;
    let chunks = b1.chunks_applied - a1.chunks_applied;
    let bytes = b0.sync_bytes_sent - a0.sync_bytes_sent;
    println!(
        "history {own_max} dots, 11 live entries: {resends} whole-row resends, {answers} digests answered, {chunks} chunks applied by n1, {bytes} sync bytes sent by n0"
    );
    assert!(
        resends >= 1,
        "the lost removals were repaired by a whole-row resend"
    );
    assert!(
        chunks <= answers,
        "each answer fits one chunk: {chunks} chunks for {answers} answers"
    );
    assert!(
        bytes <= answers * 2048,
        "{bytes} bytes for {answers} answers of 11 live entries"
    );
}

/// Digests that cross removals in flight are answered incrementally: a fault-free cluster that
/// keeps replacing names never resends a whole row. The simulator's links reorder messages, so
/// many delta batches arrive after later ones, their gaps trigger digests, and the answers to
/// those digests race the removals' own deltas.
#[test]
fn churn_without_faults_needs_no_whole_row_resend() {
    churn(0xae_0002, Config::local(), 0.0)
}

/// Lost removals are repaired from the removal log: the answer to the digest their gap
/// triggers carries the removal's dot and the dots it removed, so the asker drops those entries
/// at once. (Before, the answer carried the removal's dot alone: the asker kept the removed
/// entries and its next digest cost a whole-row resend, 118–164 of them per run of this churn.)
#[test]
fn lost_removals_are_repaired_without_a_whole_row_resend() {
    churn(0xae_0003, Config::local(), 0.02)
}

/// The churns above over more seeds, both push rates (`Config::local`'s burst and one push per
/// window, where most changes travel in batches) and with and without 2 % loss. Ignored for
/// time only (about 5 s in release): `cargo test --release -p pidmesh-sim --test anti_entropy
/// -- --ignored`.
#[test]
#[ignore = "slow: 24 churns of 20,000 replacements"]
fn churn_sweep_needs_no_whole_row_resend() {
    for loss in [0.0, 0.02] {
        for burst in [Config::local().delta_burst, std::num::NonZeroU32::MIN] {
            for seed in 0xae_0100..0xae_0106u64 {
                let mut c = Config::local();
                c.delta_burst = burst;
                println!("loss {loss}, delta_burst {burst}");
                churn(seed, c, loss);
            }
        }
    }
}

/// Two nodes each replace one of their names every millisecond of virtual time for 20 s, with
/// `loss` on both links during the churn; then the links heal and the cluster must converge
/// without any whole-row resend.
fn churn(seed: u64, config: Config, loss: f64) {
    let mut sim = cluster(seed, config);
    sim.set_link_loss(0, 1, loss);
    sim.set_link_loss(1, 0, loss);
    let pids: Vec<_> = (0..2)
        .map(|i| (0..8).filter_map(|_| sim.spawn(i)).collect::<Vec<_>>())
        .collect();
    let mut names = Vec::new();
    for n in 0..200u32 {
        let i = (n % 2) as usize;
        let pid = pids[i][(n % 8) as usize].clone();
        let name = format!("svc-{n}");
        sim.register(i, &name, &pid).expect("registers");
        names.push((i, Key::name(&name), pid));
    }
    // 20 s of replacements at 1,000 per second (virtual time).
    for (step, next) in (0..20_000u32).zip(200u32..) {
        let k = (step as usize * 7919) % names.len();
        let (i, key, pid) = names.swap_remove(k);
        sim.remove(i, &key, &pid).expect("removes");
        let name = format!("svc-{next}");
        sim.register(i, &name, &pid).expect("registers");
        names.push((i, Key::name(&name), pid));
        sim.run_for(Duration::from_millis(1));
    }
    sim.set_link_loss(0, 1, 0.0);
    sim.set_link_loss(1, 0, 0.0);
    converge(&mut sim);
    let stats: Vec<_> = (0..2)
        .filter_map(|i| sim.node(i).map(|n| n.stats()))
        .collect();
    let full: u64 = stats.iter().map(|s| s.full_syncs).sum();
    let answered: u64 = stats.iter().map(|s| s.digests_answered).sum();
    let gaps: u64 = stats.iter().map(|s| s.gaps_detected).sum();
    println!("{answered} digests answered, {gaps} gaps detected, {full} whole-row resends");
    assert!(answered > 50, "anti-entropy ran: {answered} digests");
    assert_eq!(
        full, 0,
        "whole-row resends in a churn without lasting faults"
    );
}
