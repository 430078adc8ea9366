//! Conflict resolvers: who keeps a unique name that more than one node registered.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::entry::Entry;

/// The marker that starts the metadata of a running singleton's (or a strict registration's)
/// claim on its name (see [`Resolver::resolve`]); the application's metadata follows it (see
/// [`Entry::app_meta`]).
pub const SINGLETON_RUNNING_META: &[u8] = b"\xffpidmesh:singleton-running";

/// True when `meta` marks a running singleton's claim ([`SINGLETON_RUNNING_META`] prefix).
pub fn is_running_claim(meta: &[u8]) -> bool {
    meta.starts_with(SINGLETON_RUNNING_META)
}

/// A resolver's decision over canonically sorted candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The candidate at this index keeps the name; every other one loses.
    Keep(usize),
    /// Nobody keeps the name: every candidate loses.
    DropAll,
}

type CustomFn = dyn Fn(&str, &[Entry]) -> Verdict + Send + Sync;

/// Picks the winner among conflicting entries of one unique name.
///
/// Every node runs the same resolver on the same input (the candidates sorted by
/// [`Entry::canonical_cmp`]) and so reaches the same verdict without talking to anyone.
/// A custom resolver must therefore be a pure, deterministic function of its arguments.
#[derive(Clone)]
pub struct Resolver {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    KeepOldest,
    KeepNewest,
    NodePriority(Arc<[String]>),
    KillBoth,
    Custom(Arc<CustomFn>),
    Routed(Arc<Routes>),
}

/// A resolver per (scope, name prefix), with a fallback.
struct Routes {
    /// Used when no route matches.
    fallback: Resolver,
    /// `(scope, prefix, resolver)`; `None` is the default scope. At most one per scope and prefix.
    routes: Vec<(Option<String>, String, Resolver)>,
}

impl Routes {
    /// The resolver of the longest prefix of `name` among the routes of `scope`.
    fn pick(&self, scope: Option<&str>, name: &str) -> &Resolver {
        self.routes
            .iter()
            .filter(|(s, p, _)| s.as_deref() == scope && name.starts_with(p.as_str()))
            .max_by_key(|(_, p, _)| p.len())
            .map_or(&self.fallback, |(_, _, r)| r)
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::KeepOldest => f.write_str("keep_oldest"),
            Kind::KeepNewest => f.write_str("keep_newest"),
            Kind::NodePriority(p) => write!(f, "node_priority({p:?})"),
            Kind::KillBoth => f.write_str("kill_both"),
            Kind::Custom(_) => f.write_str("custom"),
            Kind::Routed(r) => {
                let mut d = f.debug_struct("routed");
                d.field("fallback", &r.fallback);
                for (scope, prefix, res) in &r.routes {
                    d.field(
                        &format!("{}:{prefix}*", scope.as_deref().unwrap_or("")),
                        res,
                    );
                }
                d.finish()
            }
        }
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Self::keep_oldest()
    }
}

/// The outcome of running a resolver, with the fallback applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The decision actually used.
    pub verdict: Verdict,
    /// Set when a custom resolver failed and keep-oldest was used instead.
    pub failure: Option<String>,
}

impl Resolver {
    /// The earliest registration wins (lowest hybrid clock, then node id). The default.
    pub fn keep_oldest() -> Self {
        Self {
            kind: Kind::KeepOldest,
        }
    }

    /// The latest registration wins.
    pub fn keep_newest() -> Self {
        Self {
            kind: Kind::KeepNewest,
        }
    }

    /// The entry whose node name comes first in `names` wins; entries of unlisted nodes come after
    /// every listed one, ordered by keep-oldest.
    pub fn node_priority<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            kind: Kind::NodePriority(names.into_iter().map(Into::into).collect()),
        }
    }

    /// Nobody keeps a contested name: every claimant loses and the name is free again.
    pub fn kill_both() -> Self {
        Self {
            kind: Kind::KillBoth,
        }
    }

    /// A user-written resolver: a pure function of the name and the canonically sorted
    /// candidates. A panic, or `Keep(i)` with `i` out of range, falls back to keep-oldest and is
    /// reported as [`crate::Event::ResolverFailed`]. It is never interrupted by a timer (a timeout
    /// that fired on one node and not another would split the winner).
    pub fn custom(f: impl Fn(&str, &[Entry]) -> Verdict + Send + Sync + 'static) -> Self {
        Self {
            kind: Kind::Custom(Arc::new(f)),
        }
    }

    /// This resolver, except that names of `scope` (`None`: the default scope) starting with
    /// `prefix` go to `resolver`. Among the routes matching a name, the longest prefix wins;
    /// an empty prefix routes the whole scope; a name no route matches goes to `self`. Adding
    /// a route for the same scope and prefix again replaces it.
    ///
    /// Routing looks at the key's name only, so every node picks the same resolver for a name
    /// **provided every node is configured with the same routes** (and the same resolvers):
    /// the routes are part of the resolver, which must be identical cluster-wide.
    #[must_use]
    pub fn with_prefix(self, scope: Option<&str>, prefix: &str, resolver: Resolver) -> Self {
        let mut routes = match self.kind {
            Kind::Routed(r) => Routes {
                fallback: r.fallback.clone(),
                routes: r.routes.clone(),
            },
            kind => Routes {
                fallback: Resolver { kind },
                routes: Vec::new(),
            },
        };
        let scope = scope.map(str::to_string);
        routes
            .routes
            .retain(|(s, p, _)| !(*s == scope && p == prefix));
        routes.routes.push((scope, prefix.to_string(), resolver));
        Self {
            kind: Kind::Routed(Arc::new(routes)),
        }
    }

    /// This resolver, except that every name of `scope` goes to `resolver` (unless a longer
    /// prefix route of that scope matches). Shorthand for `with_prefix(Some(scope), "", ..)`.
    #[must_use]
    pub fn with_scope(self, scope: &str, resolver: Resolver) -> Self {
        self.with_prefix(Some(scope), "", resolver)
    }

    /// Runs the resolver over `candidates` (at least two), which must be canonically sorted.
    /// `name` is the key's name as stored (a scoped name carries its scope, see
    /// [`pidmesh_wire::scoped_name`]); custom resolvers receive the name within its scope.
    ///
    /// Claims of a running singleton (metadata [`SINGLETON_RUNNING_META`]) come first: when
    /// some candidates carry it and others do not, the others lose and the resolver chooses among
    /// the running ones only (so a heal never hands a singleton from its running holder to a
    /// claim that never ran). Every node applies the same rule, as it sees the same entries.
    pub fn resolve(&self, name: &str, candidates: &[Entry]) -> Resolution {
        let running: Vec<usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, e)| is_running_claim(&e.meta))
            .map(|(i, _)| i)
            .collect();
        match running.len() {
            0 => self.resolve_all(name, candidates),
            n if n == candidates.len() => self.resolve_all(name, candidates),
            1 => Resolution {
                verdict: Verdict::Keep(running[0]),
                failure: None,
            },
            _ => {
                let subset: Vec<Entry> = running.iter().map(|&i| candidates[i].clone()).collect();
                let mut r = self.resolve_all(name, &subset);
                if let Verdict::Keep(i) = r.verdict {
                    r.verdict = Verdict::Keep(running.get(i).copied().unwrap_or(running[0]));
                }
                r
            }
        }
    }

    /// The resolver itself over `candidates`, canonically sorted.
    fn resolve_all(&self, name: &str, candidates: &[Entry]) -> Resolution {
        let ok = |verdict| Resolution {
            verdict,
            failure: None,
        };
        match &self.kind {
            Kind::KeepOldest => ok(Verdict::Keep(0)),
            Kind::KeepNewest => ok(Verdict::Keep(candidates.len().saturating_sub(1))),
            Kind::KillBoth => ok(Verdict::DropAll),
            Kind::NodePriority(order) => {
                let rank = |e: &Entry| {
                    order
                        .iter()
                        .position(|n| **n == *e.pid.node.name)
                        .unwrap_or(usize::MAX)
                };
                // min_by_key keeps the first of equal ranks, i.e. the oldest.
                let best = candidates
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| rank(e))
                    .map_or(0, |(i, _)| i);
                ok(Verdict::Keep(best))
            }
            Kind::Routed(r) => {
                let (scope, local) = pidmesh_wire::split_scoped(name);
                r.pick(scope, local).resolve_all(name, candidates)
            }
            Kind::Custom(f) => match catch_unwind(AssertUnwindSafe(|| {
                f(pidmesh_wire::split_scoped(name).1, candidates)
            })) {
                Ok(Verdict::Keep(i)) if i < candidates.len() => ok(Verdict::Keep(i)),
                Ok(Verdict::DropAll) => ok(Verdict::DropAll),
                Ok(Verdict::Keep(i)) => Resolution {
                    verdict: Verdict::Keep(0),
                    failure: Some(format!(
                        "custom resolver chose candidate {i} of {}",
                        candidates.len()
                    )),
                },
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic".to_string());
                    Resolution {
                        verdict: Verdict::Keep(0),
                        failure: Some(format!("custom resolver panicked: {msg}")),
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use pidmesh_crdt::Dot;
    use pidmesh_wire::{Hlc, Key, NodeId, Pid};

    use super::*;

    fn entry(node: &str, at: u64, meta: &[u8]) -> Entry {
        let id = NodeId::new(node, 1);
        Entry {
            key: Key::name("x"),
            pid: Pid {
                node: id.clone(),
                local: 1,
            },
            meta: Bytes::copy_from_slice(meta),
            registered_at: Hlc {
                wall_ms: at,
                logical: 0,
            },
            dot: Dot::new(id, 1),
        }
    }

    #[test]
    fn routes_pick_the_longest_prefix_of_the_scope() {
        let r = Resolver::keep_oldest()
            .with_prefix(None, "a/", Resolver::keep_newest())
            .with_prefix(None, "a/b/", Resolver::kill_both())
            .with_scope("s", Resolver::keep_newest())
            .with_prefix(Some("s"), "old/", Resolver::keep_oldest());
        let c = [entry("n1", 1, b""), entry("n2", 2, b"")];
        let verdict = |name: &str| r.resolve(name, &c).verdict;
        let scoped = |s: &str, n: &str| pidmesh_wire::scoped_name(s, n).expect("valid");
        assert_eq!(verdict("x"), Verdict::Keep(0));
        assert_eq!(verdict("a/x"), Verdict::Keep(1));
        assert_eq!(verdict("a/b/x"), Verdict::DropAll);
        // The default scope's routes do not apply to a scope, and the other way round.
        assert_eq!(verdict(&scoped("s", "a/b/x")), Verdict::Keep(1));
        assert_eq!(verdict(&scoped("s", "old/x")), Verdict::Keep(0));
        assert_eq!(verdict(&scoped("t", "a/x")), Verdict::Keep(0));
        assert_eq!(verdict("old/x"), Verdict::Keep(0));
        // Routing the same prefix again replaces it.
        let r2 = r.with_prefix(None, "a/", Resolver::kill_both());
        assert_eq!(r2.resolve("a/x", &c).verdict, Verdict::DropAll);
    }

    #[test]
    fn custom_resolvers_get_the_name_within_the_scope_and_app_meta() {
        let r = Resolver::keep_oldest().with_scope(
            "s",
            Resolver::custom(|name, c| {
                assert_eq!(name, "job");
                c.iter()
                    .position(|e| e.app_meta() == b"pick")
                    .map_or(Verdict::DropAll, Verdict::Keep)
            }),
        );
        let mut running = SINGLETON_RUNNING_META.to_vec();
        running.extend_from_slice(b"pick");
        let c = [entry("n1", 1, &running), entry("n2", 2, &running)];
        let name = pidmesh_wire::scoped_name("s", "job").expect("valid");
        let res = r.resolve(&name, &c);
        assert_eq!(res.verdict, Verdict::Keep(0));
        assert_eq!(res.failure, None);
        // A running claim beats a claim that never ran, whatever the user's rule.
        let c = [entry("n1", 1, b"pick"), entry("n2", 2, &running)];
        assert_eq!(r.resolve(&name, &c).verdict, Verdict::Keep(1));
        assert!(c[1].is_running_claim() && !c[0].is_running_claim());
        assert_eq!(c[1].app_meta(), b"pick");
    }
}
