//! The HTTP endpoints: `/devices`, `/devices/{namespace}/{name}`, `/adaptors`,
//! `/metrics` and `/healthz`, and the [dashboard](crate::dashboard) at `/`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use tokio::sync::watch;

use crate::dashboard::Dashboard;
use crate::dashboard::readings::Readings;
use crate::metrics::Metrics;
use crate::status::{AdaptorReport, StatusBoard};

#[derive(Clone)]
struct AppState {
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    readings: Option<Arc<Readings>>,
}

/// What the admin listener serves beyond its JSON endpoints.
#[derive(Debug, Default)]
pub struct Options {
    /// The dashboard at `/`, unless `None`.
    pub dashboard: Option<crate::dashboard::Settings>,
    /// Device readings on `/metrics`, when the node opts in.
    pub readings: Option<Readings>,
}

pub fn router(board: Arc<StatusBoard>, metrics: Arc<Metrics>) -> Router {
    router_with(board, metrics, None)
}

fn router_with(
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    readings: Option<Arc<Readings>>,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .route("/devices", get(devices))
        .route("/devices/{namespace}/{name}", get(device))
        .route("/adaptors", get(adaptors))
        .with_state(AppState {
            board,
            metrics,
            readings,
        })
}

/// Serves on `listener`, bound by the caller so that a port in use fails the start,
/// until `shutdown` turns true; with the dashboard and device readings as `options` say.
pub async fn serve(
    listener: std::net::TcpListener,
    board: Arc<StatusBoard>,
    metrics: Arc<Metrics>,
    options: Options,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let mut app = router_with(board.clone(), metrics, options.readings.map(Arc::new));
    if let Some(settings) = options.dashboard {
        let (dashboard, recorder) = Dashboard::new(board, settings, shutdown.clone());
        tokio::spawn(recorder);
        app = app.merge(dashboard.router());
        tracing::info!("dashboard at http://{addr}/");
    }
    tracing::info!(%addr, "admin endpoint listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
}

/// Serves the dashboard alone on `listener` (in a cluster, where it has a listener of its
/// own on the pod's loopback), until `shutdown` turns true; `guard` wraps its routes
/// (with a bearer-token check, or as they are).
pub async fn serve_dashboard(
    listener: std::net::TcpListener,
    board: Arc<StatusBoard>,
    settings: crate::dashboard::Settings,
    guard: impl FnOnce(Router) -> Router + Send,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let (dashboard, recorder) = Dashboard::new(board, settings, shutdown.clone());
    tokio::spawn(recorder);
    tracing::info!("dashboard at http://{addr}/");
    axum::serve(listener, guard(dashboard.router()))
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    let mut text = s.metrics.encode();
    if let Some(readings) = &s.readings {
        text = crate::dashboard::readings::append(text, &readings.encode(&s.board));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn devices(State(s): State<AppState>) -> Response {
    Json(s.board.devices()).into_response()
}

async fn device(
    State(s): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match s.board.get(&format!("{namespace}/{name}")) {
        Some(d) => Json(d).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no device {namespace}/{name}\n"),
        )
            .into_response(),
    }
}

/// The adaptor reports, each with the execution mode its code runs in (one per process:
/// "cranelift (aarch64)", "pulley32 interpreter"), so a fleet's `/adaptors` show which
/// nodes interpret.
async fn adaptors(State(s): State<AppState>) -> Response {
    let execution = crate::engine::execution_mode().map(|m| m.to_string());
    Json(with_execution(s.board.adaptors(), execution.as_deref())).into_response()
}

fn with_execution(reports: Vec<AdaptorReport>, execution: Option<&str>) -> Vec<serde_json::Value> {
    reports
        .into_iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if let serde_json::Value::Object(o) = &mut v {
                o.insert("execution".into(), execution.into());
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_adaptor_report_names_the_execution_mode() {
        let refused = AdaptorReport::refused("a.wasm", None, None, "bad");
        let out = with_execution(vec![refused.clone(), refused], Some("pulley32 interpreter"));
        assert_eq!(out.len(), 2);
        for v in &out {
            assert_eq!(v["execution"], "pulley32 interpreter", "{v}");
            assert_eq!(v["source"], "a.wasm", "{v}");
        }
        let unknown = with_execution(vec![AdaptorReport::refused("b", None, None, "x")], None);
        assert!(unknown[0]["execution"].is_null());
    }
}
