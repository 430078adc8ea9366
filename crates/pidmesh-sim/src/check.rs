//! Invariants of a quiescent cluster (DESIGN.md §7.2), checked after faults heal.

use std::collections::{BTreeMap, BTreeSet};

use pidmesh_proto::{Entry, Key, KeyKind, Node, NodeId, Reason};

use crate::Sim;

fn live_ids(sim: &Sim) -> BTreeMap<usize, NodeId> {
    sim.live()
        .into_iter()
        .filter_map(|i| sim.node(i).map(|n| (i, n.id().clone())))
        .collect()
}

/// True when every live node holds the same registry and sees every other live node.
pub fn converged(sim: &Sim) -> bool {
    equal_state(sim).is_ok() && membership_agrees(sim).is_ok()
}

/// All live nodes hold equal registries (entries and causal context).
///
/// # Errors
/// A description of the first difference.
pub fn equal_state(sim: &Sim) -> Result<(), String> {
    let live = sim.live();
    let Some(&first) = live.first() else {
        return Ok(());
    };
    let Some(reference) = sim.node(first).map(|n| n.registry().canonical()) else {
        return Ok(());
    };
    for &i in &live[1..] {
        let Some(other) = sim.node(i).map(|n| n.registry().canonical()) else {
            continue;
        };
        if other.0 != reference.0 {
            let a: BTreeSet<_> = reference.0.iter().collect();
            let b: BTreeSet<_> = other.0.iter().collect();
            let only_a: Vec<_> = a.difference(&b).take(3).collect();
            let only_b: Vec<_> = b.difference(&a).take(3).collect();
            return Err(format!(
                "n{first} and n{i} hold different entries ({} vs {}); only in n{first}: {only_a:?}; only in n{i}: {only_b:?}",
                reference.0.len(),
                other.0.len()
            ));
        }
        if other.1 != reference.1 {
            return Err(format!(
                "n{first} and n{i} have different causal contexts: {:?} vs {:?}",
                reference.1, other.1
            ));
        }
    }
    Ok(())
}

/// Every live node sees exactly the other live nodes (their current lives) as peers.
///
/// # Errors
/// A description of the first disagreement.
pub fn membership_agrees(sim: &Sim) -> Result<(), String> {
    let ids = live_ids(sim);
    for (&i, me) in &ids {
        let Some(node) = sim.node(i) else { continue };
        let seen: BTreeSet<&NodeId> = node.peers().map(|m| &m.node).collect();
        let expected: BTreeSet<&NodeId> = ids.values().filter(|id| *id != me).collect();
        if seen != expected {
            return Err(format!("n{i} sees peers {seen:?}, expected {expected:?}"));
        }
    }
    Ok(())
}

/// No entry of a dead node, an old life, or an exited process survives anywhere.
///
/// # Errors
/// The first zombie found.
pub fn no_zombies(sim: &Sim) -> Result<(), String> {
    let ids = live_ids(sim);
    let owner: BTreeMap<&NodeId, usize> = ids.iter().map(|(i, id)| (id, *i)).collect();
    for &i in ids.keys() {
        let Some(node) = sim.node(i) else { continue };
        for e in node.all_entries() {
            let Some(&o) = owner.get(&e.pid.node) else {
                return Err(format!(
                    "n{i} holds {:?} of {} which is not a live node",
                    e.key, e.pid
                ));
            };
            let life = &sim.hosts[o].life;
            if !life.pids.contains(&e.pid) && !life.singleton_pids.contains(&e.pid) {
                return Err(format!(
                    "n{i} holds {:?} of exited process {}",
                    e.key, e.pid
                ));
            }
        }
    }
    Ok(())
}

/// Every live node's own entries are visible on every other live node.
///
/// # Errors
/// The first missing entry.
pub fn registrations_visible(sim: &Sim) -> Result<(), String> {
    let ids = live_ids(sim);
    for (&i, id) in &ids {
        let Some(node) = sim.node(i) else { continue };
        for (key, slot) in node.registry().actor_entries(id) {
            for &j in ids.keys() {
                if sim
                    .node(j)
                    .is_some_and(|n| n.registry().get_dot(&slot.dot).is_none())
                {
                    return Err(format!("{key:?} registered on n{i} is missing on n{j}"));
                }
            }
        }
    }
    Ok(())
}

/// Each unique name has at most one entry, and every node shows the same winner.
///
/// # Errors
/// The first name with two entries or with different winners.
pub fn one_winner(sim: &Sim) -> Result<(), String> {
    let live = sim.live();
    let mut names: BTreeSet<Key> = BTreeSet::new();
    for &i in &live {
        if let Some(n) = sim.node(i) {
            names.extend(
                n.registry()
                    .iter()
                    .map(|(k, _)| k.clone())
                    .filter(|k| k.kind == KeyKind::Name),
            );
        }
    }
    for key in names {
        let mut winner: Option<(usize, Option<Entry>)> = None;
        for &i in &live {
            let Some(n) = sim.node(i) else { continue };
            let entries = n.entries(&key);
            if entries.len() > 1 {
                return Err(format!(
                    "n{i}: {key:?} still has {} entries after quiescence",
                    entries.len()
                ));
            }
            let w = n.lookup(&key.name);
            match &winner {
                None => winner = Some((i, w)),
                Some((j, other)) if *other != w => {
                    return Err(format!("{key:?}: n{j} shows {other:?}, n{i} shows {w:?}"));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Every entry a live node created and no longer has was removed on purpose or reported as a
/// conflict loss to its owner (nothing vanishes silently), and no purposeful removal was
/// misreported as a conflict.
///
/// # Errors
/// The first entry lost without notice.
pub fn losers_notified(sim: &Sim) -> Result<(), String> {
    for i in sim.live() {
        let Some(node) = sim.node(i) else { continue };
        let life = &sim.hosts[i].life;
        for (dot, key) in &life.created {
            // Singleton names are claimed and released by the node itself.
            let managed = sim.singletons().iter().any(|(n, _)| **n == *key.name)
                || sim.strict_names().iter().any(|(n, _)| **n == *key.name);
            if managed || node.registry().get_dot(dot).is_some() {
                continue;
            }
            let on_purpose = life.removed_on_purpose.contains(dot);
            match life.unregistered.get(dot) {
                Some(Reason::Conflict) if on_purpose => {
                    return Err(format!(
                        "n{i}: {key:?} {dot:?} removed on purpose but reported as a conflict loss"
                    ));
                }
                Some(Reason::Conflict) => {}
                // Unregistered on purpose, or replaced by a metadata update (reported as MetaUpdated).
                _ if on_purpose => {}
                other => {
                    return Err(format!(
                        "n{i}: {key:?} {dot:?} vanished (reported: {other:?}, on purpose: {on_purpose})"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Every singleton (and every strict name, whose holders the simulator counts as runners) has
/// exactly one running holder among the live nodes when a quorum is possible (none when too
/// few nodes are alive), the holder holds the name on every node, and no two nodes ever ran a
/// quorum singleton or held a strict name at the same instant.
///
/// # Errors
/// The first singleton with a wrong number of runners, or the first safety violation.
pub fn singletons_settled(sim: &Sim) -> Result<(), String> {
    if let Some(v) = sim.safety_violations.first() {
        return Err(format!(
            "{} safety violation(s), first: {v}",
            sim.safety_violations.len()
        ));
    }
    let live = sim.live();
    // A majority of the largest membership a live node knows of (nodes that died before every
    // live node's current life started are forgotten, as the policy says).
    let known = live
        .iter()
        .filter_map(|&i| sim.node(i).map(Node::known_nodes))
        .max()
        .unwrap_or(0);
    let strict = sim
        .strict_names()
        .iter()
        .map(|(n, q)| (n.clone(), pidmesh_proto::SingletonPolicy::StaticQuorum(*q)));
    let all: Vec<(String, pidmesh_proto::SingletonPolicy)> =
        sim.singletons().iter().cloned().chain(strict).collect();
    for (name, policy) in &all {
        let possible = match *policy {
            pidmesh_proto::SingletonPolicy::Available => !live.is_empty(),
            pidmesh_proto::SingletonPolicy::StaticQuorum(n) => live.len() >= n,
            pidmesh_proto::SingletonPolicy::MajorityOfKnown => live.len() > known / 2,
            // A policy this check does not know yet: nothing to assert about it.
            _ => continue,
        };
        let runners = sim.runners(name);
        let expected = usize::from(possible);
        if runners.len() != expected {
            return Err(format!(
                "singleton {name} ({policy:?}): runners {runners:?}, expected {expected} of live {live:?}"
            ));
        }
        if let Some(&r) = runners.first() {
            let holder = sim.node(r).map(|n| n.id().clone());
            for &i in &live {
                let seen = sim.node(i).and_then(|n| n.lookup(name)).map(|e| e.pid.node);
                if seen != holder {
                    return Err(format!(
                        "singleton {name}: n{r} runs it but n{i} sees holder {seen:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// One invariant check.
type Check = fn(&Sim) -> Result<(), String>;

/// Runs every check; returns all violations.
///
/// # Errors
/// Every violated invariant, one line each.
pub fn all(sim: &Sim) -> Result<(), Vec<String>> {
    let checks: [(&str, Check); 7] = [
        ("equal state", equal_state),
        ("membership agrees", membership_agrees),
        ("no zombies", no_zombies),
        ("registrations visible", registrations_visible),
        ("one winner per name", one_winner),
        ("losers notified", losers_notified),
        ("singletons settled", singletons_settled),
    ];
    let errors: Vec<String> = checks
        .iter()
        .filter_map(|(name, f)| f(sim).err().map(|e| format!("{name}: {e}")))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// [`membership_agrees`] as a predicate.
pub fn membership_agrees_ok(sim: &Sim) -> bool {
    membership_agrees(sim).is_ok()
}
