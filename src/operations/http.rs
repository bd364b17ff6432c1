//! The job's HTTP server (axum, on the process's async runtime): the analyses' queries by date
//! (`/<query>?date=`, live for an open day), a vehicle's latest figures, Prometheus metrics, health, readiness and a status
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

use crate::operations::date_queries::QueryError;
use crate::operations::live_state::LiveState;
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
    /// An analysis's query has the path of one of the API's own routes.
    #[error("query {0:?} of an enabled analysis has the name of an API route ({ROUTES:?}); rename the query")]
    Clash(&'static str),
}

/// The API's own first path segments (a query by date may not take one).
pub(crate) const ROUTES: [&str; 5] = ["api", "vehicles", "metrics", "healthz", "readyz"];

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
    if let Some(q) = live.date_queries.iter().find(|q| ROUTES.contains(&q.spec.name) || q.spec.name.is_empty()) {
        return Err(HttpError::Clash(q.spec.name));
    }
    rt.spawn(crate::operations::status::sample(samples, metrics, live.clone()));
    let paths: Vec<String> = live.date_queries.iter().map(|q| format!("/{}?date=", q.spec.name)).collect();
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
    tracing::info!(
        "HTTP API on http://{addr} (status page /, /api/status, {}/vehicles/VIN, /metrics, /healthz, /readyz)",
        paths.iter().map(|p| format!("{p}, ")).collect::<String>()
    );
    Ok(Server { addr, shutdown: Some(tx) })
}

/// The routes: the API's own and one per query by date.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/", get(|| async { Html(crate::operations::status_page::PAGE) }))
        .route("/api/status", get(status))
        .route("/vehicles/{vin}", get(vehicle));
    for q in &state.live.date_queries {
        let name = q.spec.name;
        router = router.route(&format!("/{name}"), get(move |state, query| by_date(state, name, query)));
    }
    router
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

async fn by_date(State(state): State<AppState>, name: &'static str, Query(q): Query<DateQuery>) -> Response {
    let Some(date) = q.date else {
        return error(StatusCode::BAD_REQUEST, format!("date: missing; ask /{name}?date=YYYY-MM-DD"));
    };
    let day = match chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d") {
        Ok(d) => d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or(-1),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("date: {date:?} is not a date ({e}); write YYYY-MM-DD")),
    };
    if day < 0 {
        return error(StatusCode::BAD_REQUEST, format!("date: {date:?} is before 1970-01-01"));
    }
    let live = state.live.clone();
    match tokio::task::spawn_blocking(move || live.by_date(name, day as u64)).await {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err(e @ (QueryError::NotStored { .. } | QueryError::Unknown(_)))) => error(StatusCode::NOT_FOUND, e.to_string()),
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
    let tops = tokio::task::spawn_blocking(move || live.tops(day, 10)).await.unwrap_or_default();
    Json(crate::operations::status::snapshot(&state.info, &state.metrics, &state.live, &state.samples, day, &tops)).into_response()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use fleetflow_dataflows::query::QuerySpec;

    use super::*;
    use crate::operations::date_queries::DateQuery;
    use crate::operations::stored_records::StoredRecords;

    /// A query no built-in analysis declares: the server serves it at its own path.
    static STOPS: QuerySpec = QuerySpec {
        name: "stops",
        about: "stops of a day",
        stream: "stop_events",
        row_of: |line| serde_json::from_slice(line).ok(),
        key_field: "vin",
        rank_field: "secs",
        columns: &[("vin", "vin"), ("secs", "seconds")],
    };

    struct Stored;
    impl StoredRecords for Stored {
        fn day(&self, stream: &str, day: fleetflow_dataflows::Time) -> Option<Vec<Vec<u8>>> {
            (stream == "stop_events" && day == 1_764_028_800_000).then(|| vec![br#"{"vin":"V1","secs":40}"#.to_vec()])
        }
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    }

    fn info() -> JobInfo {
        crate::job::info::job_info(&crate::config::Config::default())
    }

    #[test]
    fn any_analysis_query_is_served_at_its_name_and_a_route_name_is_refused() {
        let q = DateQuery::new(&STOPS, vec![Arc::new(Stored)]);
        q.closed_to(1_764_028_800_000 + 2 * DAY_MS);
        let live = Arc::new(LiveState::new(vec![q]));
        let server = start("127.0.0.1:0", None, info(), live, Arc::new(Metrics::new(1))).unwrap();
        let answer = get(server.addr, "/stops?date=2025-11-25");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(r#""stops":[{"secs":40,"vin":"V1"}]"#) && answer.contains(r#""source":"output""#), "{answer}");
        let missing = get(server.addr, "/stops");
        assert!(missing.starts_with("HTTP/1.1 400") && missing.contains("/stops?date=YYYY-MM-DD"), "{missing}");
        assert!(get(server.addr, "/speeders?date=2025-11-25").starts_with("HTTP/1.1 404"), "no analysis declares it here");
        let status = get(server.addr, "/api/status");
        assert!(status.contains(r#""top_stops":[]"#), "today (no watermark: the wall clock's day) has no rows yet: {status}");
        assert!(status.contains(r#""name":"stops""#), "the page learns the query and its columns: {status}");

        static METRICS: QuerySpec = QuerySpec { name: "metrics", ..STOPS };
        let clash = Arc::new(LiveState::new(vec![DateQuery::new(&METRICS, Vec::new())]));
        let refused = start("127.0.0.1:0", None, info(), clash, Arc::new(Metrics::new(1))).err().map(|e| e.to_string());
        assert!(refused.is_some_and(|e| e.contains("\"metrics\"") && e.contains("rename the query")));
    }

    #[test]
    fn no_registered_query_takes_an_api_route() {
        let names: Vec<&str> =
            fleetflow_dataflows::analyses::REGISTRY.iter().flat_map(|a| a.spec().queries.iter().map(|q| q.name)).collect();
        assert!(names.contains(&"speeders"));
        assert!(names.iter().all(|n| !ROUTES.contains(n)), "{names:?}");
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "two analyses declare the same query");
    }
}
