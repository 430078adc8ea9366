//! The admin and sidecar HTTP API (axum).
//!
//! Read-only admin routes, health, Prometheus metrics and the sidecar routes share one router.
//! With a token configured, every route but `/healthz`, `/readyz` and the static dashboard page
//! needs `Authorization: Bearer <token>`. Every error is a JSON body `{error, code}` with a 4xx
//! status (503 for "not ready" and for a stopped node); request bodies are limited to
//! [`MAX_BODY`] bytes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::Stream;
use metrics_exporter_prometheus::PrometheusHandle;
use pidmesh::{RegisterError, Registry, RemoveError};
use serde::Deserialize;

use crate::api::{
    EntryJson, ErrorJson, EventJson, MemberJson, PutBody, SessionBody, SessionEventJson,
    SessionJson, SessionRef, StatsJson,
};
use crate::sidecar::{Sidecar, SidecarError, StreamGuard};

/// Largest accepted request body.
pub(crate) const MAX_BODY: usize = 16 * 1024;

/// What every handler sees.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) registry: Registry,
    pub(crate) sidecar: Arc<Sidecar>,
    pub(crate) token: Option<Arc<str>>,
    pub(crate) min_members: usize,
    pub(crate) metrics: Option<PrometheusHandle>,
    pub(crate) started: Instant,
    pub(crate) singletons: crate::singletons::Table,
}

/// A JSON error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorJson {
                error: self.message,
                code: self.code.to_owned(),
            }),
        )
            .into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let status = if status.is_client_error() {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        Self::new(status, code, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_path", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_query", r.body_text())
    }
}

impl From<SidecarError> for ApiError {
    fn from(e: SidecarError) -> Self {
        use SidecarError as S;
        let msg = e.to_string();
        let (status, code) = match &e {
            S::Register(RegisterError::InvalidName(_))
            | S::Join(pidmesh::JoinError::InvalidName(_)) => {
                (StatusCode::BAD_REQUEST, "invalid_name")
            }
            S::Register(RegisterError::MetaTooLarge(_))
            | S::Join(pidmesh::JoinError::MetaTooLarge(_))
            | S::Remove(RemoveError::MetaTooLarge(_)) => {
                (StatusCode::BAD_REQUEST, "meta_too_large")
            }
            S::Register(RegisterError::AlreadyRegistered(_)) => (StatusCode::CONFLICT, "conflict"),
            S::Join(pidmesh::JoinError::AlreadyMember(_)) => (StatusCode::CONFLICT, "conflict"),
            S::Remove(RemoveError::NotFound) | S::NoSession(_) | S::NotHeld(_) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            S::BadTtl(_) => (StatusCode::BAD_REQUEST, "bad_ttl"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "stopped"),
        };
        Self::new(status, code, msg)
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Builds the router.
pub(crate) fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/members", get(members))
        .route("/v1/names", get(list_names))
        .route(
            "/v1/names/{name}",
            get(get_name).put(put_name).delete(delete_name),
        )
        .route("/v1/names/{name}/renew", post(renew_name))
        .route("/v1/groups/{group}", get(get_group))
        .route(
            "/v1/groups/{group}/{member}",
            put(put_member).delete(delete_member),
        )
        .route("/v1/groups/{group}/{member}/renew", post(renew_member))
        .route("/v1/stats", get(stats))
        .route("/v1/singletons", get(singletons))
        .route("/v1/events", get(events))
        .route("/v1/sessions", post(open_session))
        .route("/v1/sessions/stream", get(stream_session))
        .route("/v1/sessions/{id}", get(get_session).delete(delete_session))
        .route("/v1/sessions/{id}/renew", post(renew_session))
        .route("/v1/sessions/{id}/events", get(session_events))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Constant-time comparison, so a wrong token's timing says nothing about the right one.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(
    State(st): State<AppState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if let Some(token) = &st.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g) if same(g.trim().as_bytes(), token.as_bytes()) => {}
            Some(_) => {
                return ApiError::new(StatusCode::UNAUTHORIZED, "bad_token", "wrong bearer token")
                    .into_response();
            }
            None => {
                let mut r = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "token_required",
                    "this API needs `Authorization: Bearer <token>`",
                )
                .into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                return r;
            }
        }
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<AppState>) -> Response {
    let n = st.registry.members().len();
    if n >= st.min_members {
        (StatusCode::OK, format!("ready: {n} members\n")).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {n} of {} members\n", st.min_members),
        )
            .into_response()
    }
}

async fn members(State(st): State<AppState>) -> Json<Vec<MemberJson>> {
    let mut v: Vec<MemberJson> = st.registry.members().iter().map(Into::into).collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Json(v)
}

#[derive(Deserialize)]
struct PrefixQuery {
    #[serde(default)]
    prefix: String,
}

async fn list_names(
    State(st): State<AppState>,
    q: Result<Query<PrefixQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<EntryJson>>> {
    let Query(q) = q?;
    let mut v: Vec<EntryJson> = st
        .registry
        .list_prefix(&q.prefix)
        .iter()
        .map(Into::into)
        .collect();
    v.sort_by(|a, b| (&a.kind, &a.key).cmp(&(&b.kind, &b.key)));
    Ok(Json(v))
}

async fn get_name(
    State(st): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<EntryJson>> {
    let Path(name) = name?;
    st.registry
        .lookup(&name)
        .map(|e| Json((&e).into()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no entry for name {name:?}"),
            )
        })
}

async fn get_group(
    State(st): State<AppState>,
    group: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Vec<EntryJson>>> {
    let Path(group) = group?;
    Ok(Json(
        st.registry
            .members_of(&group)
            .iter()
            .map(Into::into)
            .collect(),
    ))
}

async fn stats(State(st): State<AppState>) -> Json<StatsJson> {
    let s = st.registry.stats();
    Json(StatsJson::new(
        st.registry.node_id().to_string(),
        st.registry.members().len(),
        st.sidecar.session_count(),
        u64::try_from(st.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        &s,
    ))
}

async fn events(
    State(st): State<AppState>,
    q: Result<Query<PrefixQuery>, QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let Query(q) = q?;
    let sub = if q.prefix.is_empty() {
        st.registry.subscribe()
    } else {
        st.registry.subscribe_prefix(q.prefix)
    };
    let stream = futures_util::stream::unfold(sub, |mut sub| async move {
        let ev = sub.recv().await?;
        let j = EventJson::from(&ev);
        let sse = SseEvent::default()
            .event(j.kind.clone())
            .json_data(&j)
            .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"));
        Some((Ok(sse), sub))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(5))))
}

async fn singletons(State(st): State<AppState>) -> Json<Vec<crate::singletons::SingletonJson>> {
    let t = st
        .singletons
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(t.values().cloned().collect())
}

async fn metrics_text(State(st): State<AppState>) -> Response {
    match &st.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are not enabled",
        )
        .into_response(),
    }
}

// ----- sidecar -------------------------------------------------------------------------------

/// The answer to a PUT: the session holding the entry and the entry.
#[derive(serde::Serialize)]
struct PutAnswer {
    session: SessionRef,
    entry: EntryJson,
}

fn put_answer(created: bool, session: SessionRef, entry: EntryJson) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(PutAnswer { session, entry })).into_response()
}

async fn put_name(
    State(st): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<PutBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Path(name) = name?;
    let Json(b) = body?;
    let (s, e, created) = st
        .sidecar
        .put_name(&name, b.meta, b.ttl_ms, b.session)
        .await?;
    Ok(put_answer(created, s, e))
}

async fn delete_name(
    State(st): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<EntryJson>> {
    let Path(name) = name?;
    Ok(Json(st.sidecar.delete_name(&name).await?))
}

async fn renew_name(
    State(st): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<SessionRef>> {
    let Path(name) = name?;
    let id = st
        .sidecar
        .holder_of_name(&name)
        .ok_or_else(|| SidecarError::NotHeld(name.clone()))?;
    Ok(Json(st.sidecar.renew(id)?))
}

async fn put_member(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<PutBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Path((group, member)) = path?;
    let Json(b) = body?;
    let (s, e, created) = st
        .sidecar
        .put_member(&group, &member, b.meta, b.ttl_ms, b.session)
        .await?;
    Ok(put_answer(created, s, e))
}

async fn delete_member(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<EntryJson>> {
    let Path((group, member)) = path?;
    Ok(Json(st.sidecar.delete_member(&group, &member).await?))
}

async fn renew_member(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<SessionRef>> {
    let Path((group, member)) = path?;
    let id = st
        .sidecar
        .holder_of_member(&group, &member)
        .ok_or_else(|| SidecarError::NotHeld(format!("{group}/{member}")))?;
    Ok(Json(st.sidecar.renew(id)?))
}

async fn open_session(
    State(st): State<AppState>,
    body: Result<Json<SessionBody>, JsonRejection>,
) -> ApiResult<Response> {
    // An empty body is a default lease.
    let ttl = match body {
        Ok(Json(b)) => b.ttl_ms,
        Err(JsonRejection::MissingJsonContentType(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let j = st.sidecar.open(Some(ttl), false)?;
    Ok((StatusCode::CREATED, Json(j)).into_response())
}

#[derive(serde::Serialize)]
struct SessionDetail {
    #[serde(flatten)]
    session: SessionJson,
    recent_events: Vec<SessionEventJson>,
}

async fn get_session(
    State(st): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
) -> ApiResult<Json<SessionDetail>> {
    let Path(id) = id?;
    let (session, recent_events) = st.sidecar.get(id)?;
    Ok(Json(SessionDetail {
        session,
        recent_events,
    }))
}

async fn delete_session(
    State(st): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
) -> ApiResult<StatusCode> {
    let Path(id) = id?;
    if st.sidecar.end(id, "closed") {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(SidecarError::NoSession(id).into())
    }
}

async fn renew_session(
    State(st): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
) -> ApiResult<Json<SessionRef>> {
    let Path(id) = id?;
    Ok(Json(st.sidecar.renew(id)?))
}

fn session_sse(
    first: Option<SseEvent>,
    rx: tokio::sync::broadcast::Receiver<SessionEventJson>,
    guard: Option<StreamGuard>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = futures_util::stream::unfold(
        (first, rx, guard),
        |(mut first, mut rx, guard)| async move {
            if let Some(f) = first.take() {
                return Some((Ok(f), (None, rx, guard)));
            }
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        let sse = SseEvent::default()
                            .event(ev.kind.clone())
                            .json_data(&ev)
                            .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"));
                        return Some((Ok(sse), (None, rx, guard)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    // Frequent keep-alives make a closed client connection noticed within about a second.
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_millis(500)))
}

/// Opens a session held by this stream: it ends (and its entries go) when the stream closes.
async fn stream_session(
    State(st): State<AppState>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let j = st.sidecar.open(None, false)?;
    let rx = st.sidecar.subscribe(j.session)?;
    let first = SseEvent::default()
        .event("session")
        .json_data(&j)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let guard = StreamGuard {
        sidecar: st.sidecar.clone(),
        id: j.session,
    };
    Ok(session_sse(Some(first), rx, Some(guard)))
}

async fn session_events(
    State(st): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let Path(id) = id?;
    let rx = st.sidecar.subscribe(id)?;
    Ok(session_sse(None, rx, None))
}
