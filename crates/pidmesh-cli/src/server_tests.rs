//! In-process tests of every route (tower `oneshot` on the router), bad input and token rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pidmesh::{Config, Registry};
use pidmesh_transport::MemNetwork;
use serde_json::Value;
use tower::ServiceExt;

use crate::server::{AppState, MAX_BODY, router};
use crate::sidecar::Sidecar;

const SEED: u64 = 7;

async fn node(net: &MemNetwork, name: &str, seeds: Vec<std::net::SocketAddr>) -> Registry {
    Registry::builder()
        .node_name(name)
        .config(Config::local())
        .seeds(seeds)
        .transport(net.bind_named(name))
        .start()
        .await
        .unwrap()
}

fn app(registry: &Registry, token: Option<&str>, min_members: usize) -> (Router, Arc<Sidecar>) {
    let sidecar = Sidecar::new(registry.clone(), Duration::from_secs(3600));
    sidecar.spawn_reaper(pidmesh::CancellationToken::new());
    let st = AppState {
        registry: registry.clone(),
        sidecar: sidecar.clone(),
        token: token.map(Arc::from),
        min_members,
        metrics: None,
        started: Instant::now(),
        singletons: Default::default(),
    };
    (router(st), sidecar)
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
    call_with(app, method, uri, body, None).await
}

async fn call_with(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = b
        .body(body.map_or_else(Body::empty, |s| Body::from(s.to_owned())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

fn assert_json_error(status: StatusCode, v: &Value, expect: StatusCode) {
    assert_eq!(status, expect, "{v}");
    assert!(
        v["error"].is_string() && v["code"].is_string(),
        "not a JSON error: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_routes_answer() {
    println!("mem network seed {SEED}");
    let net = MemNetwork::new(SEED);
    let r = node(&net, "a", vec![]).await;
    let (app, _) = app(&r, None, 2);
    let (s, v) = call(&app, "GET", "/healthz", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // One member of the two required.
    let (s, _) = call(&app, "GET", "/readyz", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let (s, v) = call(&app, "GET", "/v1/members", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["name"], "a");
    assert_eq!(v[0]["local"], true);
    let (pid, _mb) = r.spawn_mailbox().unwrap();
    let _reg = r.register("svc/billing", &pid, "v1").await.unwrap();
    r.join("workers", &pid, "w").await.unwrap();
    let (s, v) = call(&app, "GET", "/v1/names?prefix=svc/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["key"], "svc/billing");
    assert_eq!(v[0]["meta"], "v1");
    let (s, v) = call(&app, "GET", "/v1/names", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (s, v) = call(&app, "GET", "/v1/names/svc%2Fbilling", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["pid"]["node"], "a");
    let (s, v) = call(&app, "GET", "/v1/names/nobody", None).await;
    assert_json_error(s, &v, StatusCode::NOT_FOUND);
    let (s, v) = call(&app, "GET", "/v1/groups/workers", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["meta"], "w");
    let (s, v) = call(&app, "GET", "/v1/stats", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["entries"], 2);
    assert_eq!(v["members"], 1);
    let (s, v) = call(&app, "GET", "/metrics", None).await;
    assert_json_error(s, &v, StatusCode::NOT_FOUND);
    let (s, v) = call(&app, "GET", "/no/such/route", None).await;
    assert_json_error(s, &v, StatusCode::NOT_FOUND);
    let (s, v) = call(&app, "PATCH", "/v1/members", None).await;
    assert_json_error(s, &v, StatusCode::METHOD_NOT_ALLOWED);
    let (s, v) = call(&app, "GET", "/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.as_str().unwrap().contains("pidmesh node"));
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_as_sse() {
    let net = MemNetwork::new(SEED);
    let r = node(&net, "a", vec![]).await;
    let (app, _) = app(&r, None, 1);
    let req = Request::get("/v1/events?prefix=jobs/")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let (pid, _mb) = r.spawn_mailbox().unwrap();
    let _skip = r.register("other", &pid, "").await.unwrap();
    let _reg = r.register("jobs/1", &pid, "").await.unwrap();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let f = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .unwrap();
        if let Some(d) = f.data_ref() {
            text.push_str(&String::from_utf8_lossy(d));
        }
    }
    assert!(text.starts_with("event: registered\n"), "{text}");
    assert!(text.contains("\"key\":\"jobs/1\""), "{text}");
    assert!(!text.contains("\"other\""), "{text}");
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_names_and_groups() {
    let net = MemNetwork::new(SEED);
    let r = node(&net, "a", vec![]).await;
    let (app, sidecar) = app(&r, None, 1);
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/names/billing",
        Some(r#"{"meta":"10.0.0.1:80","ttl_ms":60000}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let session = v["session"]["session"].as_u64().unwrap();
    assert_eq!(v["entry"]["meta"], "10.0.0.1:80");
    assert_eq!(r.lookup("billing").unwrap().meta.as_ref(), b"10.0.0.1:80");
    // The same name from another client: a conflict, as JSON.
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/names/billing",
        Some(r#"{"meta":"x","session":999}"#),
    )
    .await;
    assert_json_error(s, &v, StatusCode::NOT_FOUND); // no such session
    let (s, v) = call(&app, "POST", "/v1/sessions", Some(r#"{"ttl_ms":60000}"#)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let other = v["session"].as_u64().unwrap();
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/names/billing",
        Some(&format!(r#"{{"session":{other}}}"#)),
    )
    .await;
    assert_json_error(s, &v, StatusCode::CONFLICT);
    // Without the holder's session, even on this node, it is a conflict; nothing changes.
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/names/billing",
        Some(r#"{"meta":"hijack"}"#),
    )
    .await;
    assert_json_error(s, &v, StatusCode::CONFLICT);
    assert_eq!(r.lookup("billing").unwrap().meta.as_ref(), b"10.0.0.1:80");
    // Re-putting from the holder updates the metadata.
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/names/billing",
        Some(&format!(r#"{{"meta":"v2","session":{session}}}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(r.lookup("billing").unwrap().meta.as_ref(), b"v2");
    let (s, v) = call(&app, "POST", "/v1/names/billing/renew", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["session"], session);
    // Groups, with a member label.
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/groups/workers%2Feu/w1",
        Some(r#"{"meta":"m1"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/groups/workers%2Feu/w2",
        Some(&format!(r#"{{"meta":"m2","session":{other}}}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(r.members_of("workers/eu").len(), 2);
    let (s, _) = call(&app, "POST", "/v1/groups/workers%2Feu/w1/renew", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&app, "DELETE", "/v1/groups/workers%2Feu/w1", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(r.members_of("workers/eu").len(), 1);
    let (s, v) = call(&app, "DELETE", "/v1/groups/workers%2Feu/w1", None).await;
    assert_json_error(s, &v, StatusCode::NOT_FOUND);
    // Session details, delete.
    let (s, v) = call(&app, "GET", &format!("/v1/sessions/{other}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["groups"][0], "workers/eu/w2");
    let (s, _) = call(&app, "DELETE", &format!("/v1/sessions/{other}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(r.members_of("workers/eu").is_empty());
    let (s, v) = call(&app, "DELETE", "/v1/names/billing", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(r.lookup("billing").is_none());
    let (s, v) = call(&app, "DELETE", "/v1/names/billing", None).await;
    assert_json_error(s, &v, StatusCode::NOT_FOUND);
    // The implicit session ended with its last entry.
    assert_eq!(sidecar.session_count(), 0);
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_4xx() {
    let net = MemNetwork::new(SEED);
    let r = node(&net, "a", vec![]).await;
    let (app, sidecar) = app(&r, None, 1);
    // A name the wire refuses: the same message as the library's.
    let (s, v) = call(&app, "PUT", "/v1/names/bad%07name", Some("{}")).await;
    assert_json_error(s, &v, StatusCode::BAD_REQUEST);
    let lib =
        pidmesh::RegisterError::InvalidName(pidmesh_wire_message_for("bad\u{7}name")).to_string();
    assert_eq!(v["error"], lib);
    assert_eq!(v["code"], "invalid_name");
    let long = "x".repeat(300);
    let (s, v) = call(&app, "PUT", &format!("/v1/names/{long}"), Some("{}")).await;
    assert_json_error(s, &v, StatusCode::BAD_REQUEST);
    let (s, v) = call(&app, "PUT", "/v1/groups/%01/m", Some("{}")).await;
    assert_json_error(s, &v, StatusCode::BAD_REQUEST);
    // Metadata over the limit.
    let meta = "m".repeat(5000);
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/names/big",
        Some(&format!(r#"{{"meta":"{meta}"}}"#)),
    )
    .await;
    assert_json_error(s, &v, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "meta_too_large");
    // Body over the limit.
    let huge = format!(r#"{{"meta":"{}"}}"#, "m".repeat(MAX_BODY + 10));
    let (s, v) = call(&app, "PUT", "/v1/names/huge", Some(&huge)).await;
    assert_json_error(s, &v, StatusCode::PAYLOAD_TOO_LARGE);
    // Malformed JSON, unknown fields, wrong types, no content type.
    for body in [
        "{",
        r#"{"meta":1}"#,
        r#"{"colour":"red"}"#,
        r#"{"ttl_ms":-5}"#,
    ] {
        let (s, v) = call(&app, "PUT", "/v1/names/n", Some(body)).await;
        assert!(s.is_client_error(), "{body}: {s}");
        assert!(v["error"].is_string(), "{body}: {v}");
    }
    let req = Request::put("/v1/names/n").body(Body::from("{}")).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // TTLs out of range.
    for ttl in [0, 99, 3_600_001] {
        let (s, v) = call(
            &app,
            "PUT",
            "/v1/names/n",
            Some(&format!(r#"{{"ttl_ms":{ttl}}}"#)),
        )
        .await;
        assert_json_error(s, &v, StatusCode::BAD_REQUEST);
        assert_eq!(v["code"], "bad_ttl");
    }
    // Bad path parameters and queries.
    let (s, v) = call(&app, "GET", "/v1/sessions/notanumber", None).await;
    assert_json_error(s, &v, StatusCode::BAD_REQUEST);
    let (s, v) = call(&app, "GET", "/v1/names/%FF", None).await;
    assert_json_error(s, &v, StatusCode::BAD_REQUEST);
    let (s, v) = call(&app, "POST", "/v1/sessions/99/renew", None).await;
    assert_json_error(s, &v, StatusCode::NOT_FOUND);
    // Nothing was left behind by the failed calls.
    assert_eq!(sidecar.session_count(), 0);
    assert_eq!(r.stats().entries, 0);
    r.shutdown().await;
}

/// The library's description of why `name` is refused.
fn pidmesh_wire_message_for(name: &str) -> &'static str {
    if name.chars().any(char::is_control) {
        "name contains a control character"
    } else {
        "name is too long"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_rules() {
    let net = MemNetwork::new(SEED);
    let r = node(&net, "a", vec![]).await;
    let token = "0123456789abcdef-secret";
    let (app, _) = app(&r, Some(token), 1);
    let (s, v) = call(&app, "GET", "/v1/members", None).await;
    assert_json_error(s, &v, StatusCode::UNAUTHORIZED);
    let (s, v) = call_with(
        &app,
        "GET",
        "/v1/members",
        None,
        Some("wrong-token-0123456"),
    )
    .await;
    assert_json_error(s, &v, StatusCode::UNAUTHORIZED);
    let (s, _) = call_with(&app, "GET", "/v1/members", None, Some(token)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&app, "PUT", "/v1/names/x", Some("{}")).await;
    assert_json_error(s, &v, StatusCode::UNAUTHORIZED);
    assert!(r.lookup("x").is_none());
    let (s, _) = call_with(&app, "PUT", "/v1/names/x", Some("{}"), Some(token)).await;
    assert_eq!(s, StatusCode::CREATED);
    // Health stays open for load balancers.
    let (s, _) = call(&app, "GET", "/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&app, "GET", "/readyz", None).await;
    assert_eq!(s, StatusCode::OK);
    r.shutdown().await;
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_lapse_and_stream_drop_release_entries() {
    println!("mem network seed {SEED}");
    let net = MemNetwork::new(SEED);
    let a = node(&net, "a", vec![]).await;
    let b = node(&net, "b", vec![a.local_addr()]).await;
    wait_until("two members", || {
        a.members().len() == 2 && b.members().len() == 2
    })
    .await;
    let (app, sidecar) = app(&a, None, 1);
    // A lease that is not renewed lapses; the entry goes on every node.
    let (s, _) = call(&app, "PUT", "/v1/names/leased", Some(r#"{"ttl_ms":300}"#)).await;
    assert_eq!(s, StatusCode::CREATED);
    wait_until("b sees the leased name", || b.lookup("leased").is_some()).await;
    wait_until("the lease lapses everywhere", || {
        a.lookup("leased").is_none() && b.lookup("leased").is_none()
    })
    .await;
    assert_eq!(sidecar.session_count(), 0);
    // A stream-held session: its entries live while the stream is open.
    let req = Request::get("/v1/sessions/stream")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let f = body.frame().await.unwrap().unwrap();
        if let Some(d) = f.data_ref() {
            text.push_str(&String::from_utf8_lossy(d));
        }
    }
    assert!(text.starts_with("event: session\n"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let id = serde_json::from_str::<Value>(data).unwrap()["session"]
        .as_u64()
        .unwrap();
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/names/streamed",
        Some(&format!(r#"{{"session":{id}}}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/groups/g/m",
        Some(&format!(r#"{{"session":{id}}}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    wait_until("b sees the streamed name", || {
        b.lookup("streamed").is_some()
    })
    .await;
    drop(body);
    wait_until("the stream's entries go everywhere", || {
        b.lookup("streamed").is_none()
            && b.members_of("g").is_empty()
            && a.lookup("streamed").is_none()
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_reaches_the_losers_session() {
    println!("mem network seed {SEED}");
    let net = MemNetwork::new(SEED);
    let a = node(&net, "a", vec![]).await;
    let b = node(&net, "b", vec![a.local_addr()]).await;
    wait_until("two members", || {
        a.members().len() == 2 && b.members().len() == 2
    })
    .await;
    let (app_a, _) = app(&a, None, 1);
    let (app_b, _) = app(&b, None, 1);
    net.partition(&[a.local_addr()], &[b.local_addr()]);
    wait_until("the cut is seen", || {
        a.members().len() == 1 && b.members().len() == 1
    })
    .await;
    // Explicit sessions, so the loser's session outlives the lost name and keeps the event.
    let (_, sa) = call(&app_a, "POST", "/v1/sessions", Some(r#"{"ttl_ms":60000}"#)).await;
    let (_, sb) = call(&app_b, "POST", "/v1/sessions", Some(r#"{"ttl_ms":60000}"#)).await;
    let (sa, sb) = (
        sa["session"].as_u64().unwrap(),
        sb["session"].as_u64().unwrap(),
    );
    let (s, _) = call(
        &app_a,
        "PUT",
        "/v1/names/leader",
        Some(&format!(r#"{{"meta":"a","session":{sa}}}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (s, _) = call(
        &app_b,
        "PUT",
        "/v1/names/leader",
        Some(&format!(r#"{{"meta":"b","session":{sb}}}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    net.heal();
    wait_until("one winner on both", || {
        let (x, y) = (a.lookup("leader"), b.lookup("leader"));
        x.is_some() && x == y && a.members().len() == 2
    })
    .await;
    let winner = a.lookup("leader").unwrap();
    // keep-oldest: a registered first.
    assert_eq!(winner.meta.as_ref(), b"a");
    let mut told = false;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) && !told {
        let (s, v) = call(&app_b, "GET", &format!("/v1/sessions/{sb}"), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        told = v["recent_events"].as_array().is_some_and(|e| {
            e.iter().any(|e| {
                e["type"] == "lost" && e["reason"] == "conflict" && e["winner"]["meta"] == "a"
            })
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The winner's session still holds the name and was told nothing.
    let (_, v) = call(&app_a, "GET", &format!("/v1/sessions/{sa}"), None).await;
    assert_eq!(v["names"][0], "leader");
    assert_eq!(v["recent_events"].as_array().map(Vec::len), Some(0));
    assert!(told, "the losing session was not told");
    a.shutdown().await;
    b.shutdown().await;
}

/// Splits a shell line into words, honouring single quotes (enough for the documented examples).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// The curl examples of docs/operations.md run, in order, against an in-process node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_curl_examples_work() {
    let doc = include_str!("../../../docs/operations.md");
    let block = doc
        .split("<!-- api-examples -->")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("the api-examples block");
    let net = MemNetwork::new(SEED);
    let r = node(&net, "a", vec![]).await;
    let sidecar = Sidecar::new(r.clone(), Duration::from_secs(3600));
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let st = AppState {
        registry: r.clone(),
        sidecar,
        token: None,
        min_members: 1,
        metrics: Some(recorder.handle()),
        started: Instant::now(),
        singletons: Default::default(),
    };
    let app = router(st);
    let mut ran = 0;
    for line in block.lines().filter(|l| l.starts_with("curl ")) {
        let words = shell_words(line);
        let mut method = "GET".to_owned();
        let mut data = None;
        let mut url = None;
        let mut i = 1;
        while i < words.len() {
            match words[i].as_str() {
                "-X" => {
                    method = words[i + 1].clone();
                    i += 1;
                }
                "-d" => {
                    data = Some(words[i + 1].clone());
                    i += 1;
                }
                "-H" => i += 1,
                w if w.starts_with("127.0.0.1:7947") => {
                    url = Some(w.trim_start_matches("127.0.0.1:7947").to_owned())
                }
                _ => {}
            }
            i += 1;
        }
        let url = url.expect("a URL on 127.0.0.1:7947");
        let (s, v) = call(&app, &method, &url, data.as_deref()).await;
        assert!(s.is_success(), "{line}\n→ {s} {v}");
        ran += 1;
    }
    assert!(ran >= 15, "only {ran} examples found");
    println!("{ran} documented curl examples answered 2xx");
    r.shutdown().await;
}
