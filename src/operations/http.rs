//! The job's HTTP server (axum, on the process's async runtime): speeders by date (live for an
//! open day), a vehicle's latest figures, Prometheus metrics, health, readiness and a status
//! page. Bound to 127.0.0.1 by default; bound elsewhere it requires a bearer token. Handlers
//! never touch dataflow state directly: queries go to the workers as messages (see
//! [`crate::operations::live_state`]) and are answered between steps.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fleetflow_dataflows::time::{align, DAY_MS};
use fleetflow_dataflows::Vin;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::operations::live_state::{LiveState, QueryError};
use crate::operations::metrics::Metrics;
use crate::operations::status::{JobInfo, Samples};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Live state.
    pub live: Arc<LiveState>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    token: Option<String>,
    samples: Arc<Samples>,
    info: Arc<JobInfo>,
}

/// HTTP errors.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address is not usable.
    #[error("http.bind: {addr:?}: {source}; pick a free address (e.g. 127.0.0.1:0) or \"\" to turn the API off")]
    Bind {
        /// The address.
        addr: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A running server; dropping it stops it.
pub struct Server {
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

/// Starts the server on `bind` for the job `info`; `token`, if set, is required as
/// `Authorization: Bearer TOKEN`.
pub fn start(bind: &str, token: Option<String>, info: JobInfo, live: Arc<LiveState>, metrics: Arc<Metrics>) -> Result<Server, HttpError> {
    let rt = crate::aws::runtime();
    let listener = rt.block_on(tokio::net::TcpListener::bind(bind)).map_err(|source| HttpError::Bind { addr: bind.to_string(), source })?;
    let addr = listener.local_addr().map_err(|source| HttpError::Bind { addr: bind.to_string(), source })?;
    let samples = Arc::new(Samples::default());
    let state = AppState {
        live: live.clone(),
        metrics: metrics.clone(),
        registry: Arc::new(crate::operations::prometheus::registry(metrics.clone())),
        token,
        samples: samples.clone(),
        info: Arc::new(info),
    };
    rt.spawn(crate::operations::status::sample(samples, metrics, live.clone()));
    let app = router(state);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("HTTP server: {e}");
        }
    });
    *live.http_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    tracing::info!("HTTP API on http://{addr} (status page /, /api/status, /speeders?date=, /vehicles/VIN, /metrics, /healthz, /readyz)");
    Ok(Server { addr, shutdown: Some(tx) })
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Html(crate::operations::status_page::PAGE) }))
        .route("/api/status", get(status))
        .route("/speeders", get(speeders))
        .route("/vehicles/{vin}", get(vehicle))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(token) = &state.token {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a bearer token is required\n").into_response();
        }
    }
    next.run(request).await
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

#[derive(Deserialize)]
struct DateQuery {
    date: Option<String>,
}

async fn speeders(State(state): State<AppState>, Query(q): Query<DateQuery>) -> Response {
    let Some(date) = q.date else {
        return error(StatusCode::BAD_REQUEST, "date: missing; ask /speeders?date=YYYY-MM-DD".into());
    };
    let day = match chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d") {
        Ok(d) => d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or(-1),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("date: {date:?} is not a date ({e}); write YYYY-MM-DD")),
    };
    if day < 0 {
        return error(StatusCode::BAD_REQUEST, format!("date: {date:?} is before 1970-01-01"));
    }
    let live = state.live.clone();
    match tokio::task::spawn_blocking(move || live.daily_speeders(day as u64)).await {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err(e @ QueryError::NotStored(_))) => error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn vehicle(State(state): State<AppState>, Path(vin): Path<String>) -> Response {
    let parsed = match Vin::parse(vin.as_bytes()) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("vin: {vin:?}: {e}")),
    };
    let (latest, sensor) = state.live.vehicle(&parsed);
    let no_window = latest.is_none().then(|| {
        if state.metrics.out_of(crate::stream::Timing::WindowClose) == 0 {
            "no window has closed yet (each closes its allowed lateness after its end; / and /api/status say when)"
        } else {
            "no window of this vehicle in the last hour"
        }
    });
    if latest.is_none() && sensor.is_none() {
        return error(StatusCode::NOT_FOUND, format!("vin {parsed}: {} and no sensor known", no_window.unwrap_or_default()));
    }
    let mut answer = serde_json::json!({
        "vin": parsed.to_string(),
        "latest_window": latest,
        "sensor_id": sensor.as_ref().map(|s| s.0.clone()),
        "sensor_buggy": sensor.as_ref().map(|s| s.1),
    });
    if let Some(why) = no_window {
        answer["note"] = why.into();
    }
    Json(answer).into_response()
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    // OpenMetrics for Prometheus (it asks for it); the classic text format for everything else.
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if crate::operations::prometheus::wants_openmetrics(accept) {
        let body = crate::operations::prometheus::render(&state.registry);
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
    } else {
        let body = crate::operations::prometheus::render_classic(&state.registry);
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    use std::sync::atomic::Ordering;
    if state.live.stopping.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response()
    } else if state.live.ready.load(Ordering::Relaxed) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn status(State(state): State<AppState>) -> Response {
    let live = state.live.clone();
    // "Today" is the watermark's day (the wall clock's for a live source, the data's for a replay).
    let day = align(state.metrics.watermark().unwrap_or_else(crate::clock::now_ms), DAY_MS);
    let top = tokio::task::spawn_blocking(move || live.top_speeders(day, 10)).await.unwrap_or_default();
    Json(crate::operations::status::snapshot(&state.info, &state.metrics, &state.live, &state.samples, day, &top)).into_response()
}
