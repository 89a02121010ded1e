//! The REST API on 127.0.0.1: everything the CLI does, as JSON, behind a bearer token kept in a
//! 0600 file; `/openapi.json` describes it and `/metrics` exposes Prometheus counters. `/` is
//! the web dashboard (see [`crate::dashboard`]), a client of the same API.

use std::{path::Path, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path as UrlPath, Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::{
    api_types::{ApiError, ConnectRequest, DisconnectRequest, LockdownRequest},
    dashboard::{self, LoginAnswer, LoginCodes, LoginRequest},
    error::NodeError,
    metrics::Metrics,
    node::Command,
};

#[derive(Clone)]
struct ApiState {
    commands: mpsc::Sender<Command>,
    token: Arc<String>,
    metrics: Arc<Metrics>,
    /// One-time dashboard link codes.
    codes: LoginCodes,
    /// `http://ADDR` of this API (the dashboard link's base).
    base: Arc<String>,
}

/// Reads the token file, creating it (mode 0600, 32 random bytes as hex) when missing.
pub fn load_or_create_token(path: &Path) -> std::io::Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(path)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

fn error(status: u16, msg: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(ApiError { error: msg.into() })).into_response()
}

impl IntoResponse for NodeError {
    fn into_response(self) -> Response {
        error(self.status(), self.to_string())
    }
}

async fn auth(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if constant_time_eq(t.trim().as_bytes(), st.token.as_bytes()) => {
            next.run(req).await
        }
        Some(_) => error(
            401,
            "wrong API token: use the one in the daemon's DATA_DIR/api-token (the CLI reads it with --data-dir or --token-file)",
        ),
        None => error(
            401,
            "missing API token: send `Authorization: Bearer <token>` (the token is in the daemon's DATA_DIR/api-token)",
        ),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn ask<T: Serialize>(
    st: &ApiState,
    make: impl FnOnce(oneshot::Sender<Result<T, NodeError>>) -> Command,
) -> Response {
    let (tx, rx) = oneshot::channel();
    if st.commands.send(make(tx)).await.is_err() {
        return error(503, "the daemon is shutting down");
    }
    match rx.await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => error(503, "the daemon is shutting down"),
    }
}

async fn status(State(st): State<ApiState>) -> Response {
    let (tx, rx) = oneshot::channel();
    if st.commands.send(Command::Status(tx)).await.is_err() {
        return error(503, "the daemon is shutting down");
    }
    match rx.await {
        Ok(v) => Json(v).into_response(),
        Err(_) => error(503, "the daemon is shutting down"),
    }
}

#[derive(serde::Deserialize)]
struct OffersQuery {
    sort: Option<String>,
}

async fn offers(
    State(st): State<ApiState>,
    axum::extract::Query(q): axum::extract::Query<OffersQuery>,
) -> Response {
    let sort = q.sort.unwrap_or_default();
    ask(&st, |tx| Command::Offers(sort, tx)).await
}

async fn connect(State(st): State<ApiState>, body: Option<Json<ConnectRequest>>) -> Response {
    let req = body.map(|b| b.0).unwrap_or_default();
    ask(&st, |tx| Command::Connect(req, tx)).await
}

async fn disconnect(State(st): State<ApiState>, body: Option<Json<DisconnectRequest>>) -> Response {
    let req = body.map(|b| b.0).unwrap_or_default();
    ask(&st, |tx| Command::Disconnect(req, tx)).await
}

async fn lockdown(State(st): State<ApiState>, Json(req): Json<LockdownRequest>) -> Response {
    ask(&st, |tx| Command::Lockdown(req.on, tx)).await
}

async fn sessions(State(st): State<ApiState>) -> Response {
    ask(&st, Command::Sessions).await
}

async fn session(State(st): State<ApiState>, UrlPath(id): UrlPath<String>) -> Response {
    ask(&st, |tx| Command::Session(id, tx)).await
}

async fn channels(State(st): State<ApiState>) -> Response {
    ask(&st, Command::Channels).await
}

async fn close(State(st): State<ApiState>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = id.parse() else {
        return error(
            400,
            format!("{id:?} is not a channel id (0x + 64 hex digits)"),
        );
    };
    ask(&st, |tx| Command::Close(id, tx)).await
}

async fn seller(State(st): State<ApiState>) -> Response {
    ask(&st, Command::SellerStatus).await
}

async fn withdraw(State(st): State<ApiState>) -> Response {
    ask(&st, Command::Withdraw).await
}

async fn metrics(State(st): State<ApiState>) -> Response {
    let (tx, rx) = oneshot::channel();
    let mut live = 0.0;
    let mut block = 0.0;
    if st.commands.send(Command::Status(tx)).await.is_ok()
        && let Ok(s) = rx.await
    {
        live = s.sessions.iter().filter(|s| s.live).count() as f64;
        block = s.chain_block as f64;
    }
    let body = st.metrics.render(&[
        ("wayfare_live_sessions", "Sessions moving traffic now", live),
        (
            "wayfare_chain_block",
            "Last block whose market events were read",
            block,
        ),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn dashboard_link(State(st): State<ApiState>) -> Response {
    let code = st.codes.issue(std::time::Instant::now());
    dashboard::link(&st.base, &code).into_response()
}

/// Trades a one-time dashboard code for the token (no token needed: the code is the proof).
async fn login(State(st): State<ApiState>, Json(req): Json<LoginRequest>) -> Response {
    if st.codes.redeem(req.code.trim(), std::time::Instant::now()) {
        Json(LoginAnswer {
            token: st.token.to_string(),
        })
        .into_response()
    } else {
        error(
            401,
            "this dashboard link was used or has expired: run `wayfare dashboard` for a new one",
        )
    }
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::DOCUMENT,
    )
        .into_response()
}

/// The API's routes.
pub fn router(
    commands: mpsc::Sender<Command>,
    token: String,
    counters: Arc<Metrics>,
    base: String,
) -> Router {
    let st = ApiState {
        commands,
        token: Arc::new(token),
        metrics: counters,
        codes: LoginCodes::default(),
        base: Arc::new(base),
    };
    let authed = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/offers", get(offers))
        .route("/v1/connect", post(connect))
        .route("/v1/disconnect", post(disconnect))
        .route("/v1/lockdown", post(lockdown))
        .route("/v1/sessions", get(sessions))
        .route("/v1/sessions/{id}", get(session))
        .route("/v1/channels", get(channels))
        .route("/v1/channels/{id}/close", post(close))
        .route("/v1/seller", get(seller))
        .route("/v1/withdraw", post(withdraw))
        .route("/metrics", get(metrics))
        .route("/v1/dashboard/link", post(dashboard_link))
        .layer(middleware::from_fn_with_state(st.clone(), auth));
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/", get(dashboard::index))
        .route("/ui", get(dashboard::index))
        .route("/ui/app.js", get(dashboard::app_js))
        .route("/ui/style.css", get(dashboard::style))
        .route("/v1/login", post(login))
        .merge(authed)
        .with_state(st)
}
