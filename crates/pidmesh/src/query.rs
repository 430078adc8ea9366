//! Queries over the local copy of the registry: counts, memberships, and waits.
//!
//! Like [`Registry::lookup`], they read this node's memory without waiting for the driver.
//! Scans (`which_groups`, `entry_count` of a prefix...) walk the whole registry one shard at a
//! time; entries changing meanwhile may or may not be counted.

use std::time::Duration;

use pidmesh_proto::{Entry, Key, KeyKind, Pid};

use crate::registry::Registry;

impl Registry {
    /// How many entries (names and group memberships, conflicting duplicates included) this
    /// node knows of.
    pub fn entry_count(&self) -> usize {
        self.shared.read().registry().len()
    }

    /// How many members `group` has, on every node, as this node knows them.
    pub fn member_count(&self, group: &str) -> usize {
        self.shared.reader.members_of(group).len()
    }

    /// Whether `pid` is a member of `group`.
    pub fn is_member(&self, group: &str, pid: &Pid) -> bool {
        self.shared
            .reader
            .members_of(group)
            .iter()
            .any(|e| e.pid == *pid)
    }

    /// The members of `group` hosted on this node.
    pub fn local_members_of(&self, group: &str) -> Vec<Entry> {
        let mut v = self.shared.reader.members_of(group);
        v.retain(|e| e.pid.node == self.shared.id);
        v
    }

    /// The groups `pid` is a member of, sorted. Scans the registry.
    pub fn which_groups(&self, pid: &Pid) -> Vec<String> {
        let mut v = Vec::new();
        self.shared.reader.for_each_entry(
            |k| k.kind == KeyKind::Group,
            |e| {
                if e.pid == *pid {
                    v.push(e.key.name.to_string());
                }
            },
        );
        v.sort();
        v.dedup();
        v
    }

    /// The unique names `pid` holds (winning or not yet resolved), sorted. Scans the registry.
    pub fn which_names(&self, pid: &Pid) -> Vec<String> {
        let mut v = Vec::new();
        self.shared.reader.for_each_entry(
            |k| k.kind == KeyKind::Name,
            |e| {
                if e.pid == *pid {
                    v.push(e.key.name.to_string());
                }
            },
        );
        v.sort();
        v
    }

    /// Like [`Registry::list_prefix`], but a name with unresolved duplicates lists only the
    /// entry [`Registry::lookup`] returns (the resolver's winner); groups list every member.
    pub fn list_prefix_resolved(&self, prefix: &str) -> Vec<Entry> {
        let mut v = self.list_prefix(prefix);
        let mut winners: std::collections::HashMap<Key, Option<Entry>> = Default::default();
        v.retain(|e| {
            if e.key.kind != KeyKind::Name {
                return true;
            }
            let w = winners
                .entry(e.key.clone())
                .or_insert_with(|| self.lookup(&e.key.name));
            w.as_ref().is_some_and(|w| w.dot == e.dot)
        });
        v
    }

    /// Waits until the cluster has at least `n` live members (this node included) as this
    /// node sees them, or `timeout` passes. Returns the number of live members at the end
    /// (`>= n` on success).
    ///
    /// Cancel-safe.
    pub async fn wait_for_members(&self, n: usize, timeout: Duration) -> usize {
        let count = || 1 + self.shared.read().peers().count();
        let _ = self
            .subscribe()
            .wait_for(timeout, || (count() >= n).then_some(()))
            .await;
        count()
    }

    /// Waits until `group` has at least `n` members as this node sees them, or `timeout`
    /// passes. Returns the member count at the end (`>= n` on success).
    ///
    /// Cancel-safe.
    pub async fn wait_for_group_members(&self, group: &str, n: usize, timeout: Duration) -> usize {
        let _ = self
            .subscribe()
            .wait_for(timeout, || (self.member_count(group) >= n).then_some(()))
            .await;
        self.member_count(group)
    }
}
