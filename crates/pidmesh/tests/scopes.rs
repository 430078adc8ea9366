//! Scopes and resolver routing over the in-memory transport: names and groups of different
//! scopes never collide, lookups and subscriptions are per scope, each scope and each name
//! prefix can have its own resolver, and a custom resolver reads singleton metadata.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{LIMIT, cluster, eventually};
use pidmesh::{Entry, Event, Registry, Resolver, SingletonContext, SingletonPolicy, Verdict};
use pidmesh_transport::MemNetwork;

fn addrs(regs: &[Registry]) -> Vec<std::net::SocketAddr> {
    regs.iter().map(Registry::local_addr).collect()
}

#[tokio::test]
async fn scopes_isolate_names_groups_and_subscriptions() {
    let seed = 0x5c0_9e01;
    println!("seed = {seed:#x}");
    let net = MemNetwork::new(seed);
    let regs = cluster(&net, 3, Resolver::keep_oldest()).await;
    let jobs = regs[0].scope("jobs").expect("valid scope");
    let chat = regs[1].scope("chat").expect("valid scope");
    let mut jobs_events = regs[2].scope("jobs").expect("valid scope").subscribe();

    let (p0, _m0) = regs[0].spawn_mailbox().expect("running");
    let (p1, _m1) = regs[1].spawn_mailbox().expect("running");
    let (p2, _m2) = regs[2].spawn_mailbox().expect("running");
    // The same name in two scopes and in the default scope: three independent registrations.
    let _a = jobs.register("x", &p0, "a").await.expect("jobs/x");
    let _b = chat.register("x", &p1, "b").await.expect("chat/x");
    let _c = regs[2].register("x", &p2, "c").await.expect("default x");
    jobs.join("g", &p0, Bytes::new()).await.expect("join");
    chat.join("g", &p1, Bytes::new()).await.expect("join");

    let seen_everywhere = eventually(LIMIT, || {
        regs.iter().all(|r| {
            let (j, c) = (r.scope("jobs").expect("s"), r.scope("chat").expect("s"));
            j.lookup("x").is_some_and(|e| e.pid == p0)
                && c.lookup("x").is_some_and(|e| e.pid == p1)
                && r.lookup("x").is_some_and(|e| e.pid == p2)
                && j.members_of("g").len() == 1
                && c.members_of("g").len() == 1
                && r.members_of("g").is_empty()
        })
    })
    .await;
    assert!(seen_everywhere.is_some(), "scoped entries did not converge");
    let e = jobs.lookup("x").expect("held");
    assert_eq!(e.key.scope(), Some("jobs"));
    assert_eq!(e.key.local_name(), "x");
    assert_eq!(e.meta, Bytes::from_static(b"a"));
    // Taken in its own scope only.
    let (p0b, _m0b) = regs[0].spawn_mailbox().expect("running");
    assert!(matches!(
        jobs.register("x", &p0b, "").await,
        Err(pidmesh::RegisterError::AlreadyRegistered(_))
    ));
    // The default scope cannot reach into a scope by spelling its stored key.
    let forged = jobs.key_name("y").expect("valid");
    assert!(matches!(
        regs[0].register(&forged, &p0b, "").await,
        Err(pidmesh::RegisterError::InvalidName(_))
    ));
    assert!(
        regs[0]
            .lookup(&jobs.key_name("x").expect("valid"))
            .is_none()
    );
    assert_eq!(
        regs[0]
            .list_prefix("")
            .iter()
            .map(|e| e.key.name.to_string())
            .collect::<Vec<_>>(),
        vec!["x".to_string()],
        "the default scope lists only its own keys"
    );
    assert_eq!(jobs.list_prefix("").len(), 2, "x and g of jobs");
    // No name was in conflict anywhere.
    for r in &regs {
        assert_eq!(r.stats().conflicts_resolved, 0, "{}", r.node_id());
    }
    // The jobs subscription on node 2 saw jobs' keys only.
    let mut keys = Vec::new();
    while let Ok(Some(ev)) =
        tokio::time::timeout(Duration::from_millis(200), jobs_events.recv()).await
    {
        if let Event::Registered(e) = ev {
            keys.push((
                e.key.scope().map(str::to_string),
                e.key.local_name().to_string(),
            ));
        }
    }
    assert!(!keys.is_empty(), "no jobs event");
    assert!(
        keys.iter().all(|(s, _)| s.as_deref() == Some("jobs")),
        "{keys:?}"
    );
    assert!(regs[0].scope("").is_err());
    assert!(regs[0].scope("a\u{1f}b").is_err());
}

/// Registers `name` in `scope` (or the default scope) on both sides of a partition, node 0
/// first, so keep-oldest and keep-newest give different winners.
async fn contest(regs: &[Registry], scope: Option<&str>, name: &str) -> (Entry, Entry) {
    let mut out = Vec::new();
    for r in &regs[..2] {
        let (pid, mailbox) = r.spawn_mailbox().expect("running");
        let reg = match scope {
            Some(s) => r.scope(s).expect("s").register(name, &pid, "").await,
            None => r.register(name, &pid, "").await,
        }
        .expect("free on its side");
        out.push(reg.entry().clone());
        std::mem::forget(reg);
        std::mem::forget(mailbox);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (out[0].clone(), out[1].clone())
}

fn lookup(r: &Registry, scope: Option<&str>, name: &str) -> Option<Entry> {
    match scope {
        Some(s) => r.scope(s).expect("s").lookup(name),
        None => r.lookup(name),
    }
}

#[tokio::test]
async fn per_scope_and_per_prefix_resolvers() {
    let seed = 0x5c0_9e02;
    println!("seed = {seed:#x}");
    let resolver = Resolver::keep_oldest()
        .with_scope("b", Resolver::keep_newest())
        .with_prefix(None, "kb/", Resolver::kill_both())
        .with_prefix(Some("b"), "old/", Resolver::keep_oldest());
    let net = MemNetwork::new(seed);
    let regs = cluster(&net, 2, resolver).await;
    let a = addrs(&regs);
    net.partition(&a[..1], &a[1..]);
    assert!(
        eventually(LIMIT, || regs.iter().all(|r| r.members().len() == 1))
            .await
            .is_some()
    );
    let cases = [
        (None, "n", "oldest"),
        (Some("b"), "n", "newest"),
        (None, "kb/n", "none"),
        (Some("b"), "old/n", "oldest"),
        (Some("c"), "n", "oldest"),
    ];
    let mut claims = Vec::new();
    for (scope, name, _) in cases {
        claims.push(contest(&regs, scope, name).await);
    }
    net.heal();
    for ((scope, name, want), (first, second)) in cases.iter().zip(&claims) {
        let expected = match *want {
            "oldest" => Some(first.pid.clone()),
            "newest" => Some(second.pid.clone()),
            _ => None,
        };
        let ok = eventually(LIMIT, || {
            regs.iter().all(|r| {
                lookup(r, *scope, name).map(|e| e.pid) == expected
                    && (expected.is_some()
                        || match scope {
                            Some(s) => r.scope(s).expect("s").list_prefix(name).is_empty(),
                            None => r.list_prefix(name).is_empty(),
                        })
            })
        })
        .await;
        assert!(
            ok.is_some(),
            "{scope:?}/{name}: expected {want}, node 0 shows {:?}",
            lookup(&regs[0], *scope, name)
        );
    }
}

#[tokio::test]
async fn custom_resolver_reads_singleton_metadata() {
    let seed = 0x5c0_9e03;
    println!("seed = {seed:#x}");
    // Singletons under "svc/" go to the claim with the highest priority byte in its metadata;
    // everything else keeps the oldest.
    let by_priority = Resolver::custom(|_name, candidates: &[Entry]| {
        candidates
            .iter()
            .enumerate()
            .max_by_key(|(_, e)| e.app_meta().first().copied().unwrap_or(0))
            .map_or(Verdict::DropAll, |(i, _)| Verdict::Keep(i))
    });
    let resolver = Resolver::keep_oldest().with_prefix(None, "svc/", by_priority);
    let net = MemNetwork::new(seed);
    let regs = cluster(&net, 2, resolver).await;
    let a = addrs(&regs);
    net.partition(&a[..1], &a[1..]);
    assert!(
        eventually(LIMIT, || regs.iter().all(|r| r.members().len() == 1))
            .await
            .is_some()
    );
    // Node 0 (priority 1) starts first; node 1 (priority 9) later, on its own side.
    let mut handles = Vec::new();
    for (r, prio) in regs.iter().zip([1u8, 9]) {
        let h = r
            .singleton_with_meta(
                "svc/janitor",
                SingletonPolicy::Available,
                vec![prio],
                |cx: SingletonContext| async move { cx.cancel.cancelled().await },
            )
            .await
            .expect("candidate");
        assert!(
            eventually(LIMIT, || h.is_running()).await.is_some(),
            "runs on its side"
        );
        handles.push(h);
    }
    let claim = regs[1].lookup("svc/janitor").expect("held");
    assert!(claim.is_running_claim());
    assert_eq!(claim.app_meta(), &[9]);
    net.heal();
    let settled = eventually(LIMIT, || {
        !handles[0].is_running()
            && handles[1].is_running()
            && regs
                .iter()
                .all(|r| r.lookup("svc/janitor").is_some_and(|e| e.app_meta() == [9]))
    })
    .await;
    assert!(
        settled.is_some(),
        "the higher-priority claim should win: {:?}",
        regs[0].lookup("svc/janitor")
    );
}

/// The borrowed lookup (`with_lookup`) sees what `lookup` sees, in the default scope and in a
/// named one, and nothing across scopes. Conflicted names: `pidmesh-proto`'s reader tests.
#[tokio::test]
async fn with_lookup_matches_lookup() {
    let seed = 0x5c0_9e03;
    println!("seed = {seed:#x}");
    let net = MemNetwork::new(seed);
    let regs = cluster(&net, 2, Resolver::keep_oldest()).await;
    let jobs = regs[0].scope("jobs").expect("valid scope");
    let (p0, _m0) = regs[0].spawn_mailbox().expect("running");
    let (p1, _m1) = regs[0].spawn_mailbox().expect("running");
    let _a = regs[0].register("x", &p0, "plain").await.expect("x");
    let _b = jobs.register("x", &p1, "scoped").await.expect("jobs/x");

    let plain = regs[0].with_lookup("x", |e| e.map(|e| (e.pid(), e.meta.clone())));
    assert_eq!(plain, Some((p0.clone(), Bytes::from_static(b"plain"))));
    assert_eq!(
        regs[0].with_lookup("x", |e| e.map(|e| e.to_entry())),
        regs[0].lookup("x")
    );
    assert!(regs[0].with_lookup("x", |e| e.is_some_and(|e| e.is_pid(&p0))));
    let scoped = jobs.with_lookup("x", |e| {
        e.map(|e| (e.pid(), e.key.scope().map(str::to_owned)))
    });
    assert_eq!(scoped, Some((p1.clone(), Some("jobs".to_owned()))));
    assert_eq!(
        jobs.with_lookup("x", |e| e.map(|e| e.to_entry())),
        jobs.lookup("x")
    );
    // Absent names, and a scope's stored key spelled in the default scope, give `None`.
    assert!(regs[0].with_lookup("absent", |e| e.is_none()));
    assert!(jobs.with_lookup("absent", |e| e.is_none()));
    let stored = jobs.key_name("x").expect("valid");
    assert!(regs[0].with_lookup(&stored, |e| e.is_none()));
    // The other node sees the same once the delta arrived.
    let seen = eventually(LIMIT, || {
        regs[1].with_lookup("x", |e| e.is_some_and(|e| e.is_pid(&p0)))
    })
    .await;
    assert!(seen.is_some(), "x did not reach node 1");
}
