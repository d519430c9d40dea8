//! The brain's dashboard: every device of the cluster, read-only, from watches of
//! DeviceLinks, their instances and their events, live over server-sent events.
//!
//! It serves the limb's pages (the `octopus-dashboard` crate) with the same JSON, so a
//! person sees one dashboard whether they reach a node or the cluster. It runs on every
//! replica, leader or not: it only reads. Plots come from the instances' status as the
//! watch delivers it, in the same bounded history as the limb's.

pub mod store;
pub mod watch;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use octopus_dashboard::auth::TokenCheck;
use serde::Serialize;
use tokio::sync::{Semaphore, broadcast};

pub use store::Store;
use store::{AdaptorView, Detail, Summary};

/// Live pages open at once; each holds one change feed.
const MAX_STREAMS: usize = 32;
/// Changes are sent in batches at most this often.
const BATCH: Duration = Duration::from_millis(250);
/// Devices in one batch; the rest follow in the next.
const BATCH_DEVICES: usize = 500;
/// How often a live page is told every device present, so that it drops removed ones.
const PRESENT_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listener could not be bound or served.
    #[error("cannot serve the dashboard on {0}")]
    Serve(SocketAddr, #[source] std::io::Error),
}

/// How the dashboard is served.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Require a bearer token allowed to list DeviceLinks (TokenReview and
    /// SubjectAccessReview); without it, only loopback should be listened on.
    pub token: bool,
    /// Numeric property series the plots keep, over all devices.
    pub max_series: usize,
}

/// What the handlers share.
#[derive(Clone)]
pub struct Dashboard {
    store: Arc<Store>,
    streams: Arc<Semaphore>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Dashboard {
    pub fn new(store: Arc<Store>, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        Self {
            store,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            stop,
        }
    }

    /// The pages, their assets and their JSON; behind `check` when given.
    pub fn router(self, check: Option<Arc<TokenCheck>>) -> Router {
        let router = octopus_dashboard::assets()
            .route("/dashboard/api/overview", get(overview))
            .route("/dashboard/api/devices/{namespace}/{name}", get(device))
            .route("/dashboard/api/events", get(events))
            .route("/dashboard/api/events/{namespace}/{name}", get(events_of))
            .route("/healthz", get(|| async { "ok\n" }))
            .with_state(self);
        match check {
            Some(check) => octopus_dashboard::auth::require(router, check),
            None => router,
        }
    }
}

/// Watches the cluster and serves the dashboard on `settings.listen` until `stop`
/// turns true. The listener is bound before this returns, so a port in use is told.
pub async fn start(
    client: kube::Client,
    settings: Settings,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| Error::Serve(settings.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Serve(settings.listen, e))?;
    if !settings.token && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "dashboard listens beyond loopback without tokens: anyone who reaches it reads every device");
    }
    let store = Arc::new(Store::new(settings.max_series));
    let check = settings
        .token
        .then(|| Arc::new(TokenCheck::new(client.clone())));
    let app = Dashboard::new(store.clone(), stop.clone()).router(check);
    let watches = watch::run(client, store, stop.clone());
    tracing::info!(%addr, token = settings.token, "brain dashboard at http://{addr}/");
    let mut stop_serving = stop;
    Ok(tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop_serving.wait_for(|s| *s).await;
        });
        tokio::select! {
            r = serve => if let Err(e) = r { tracing::warn!(error = %e, "dashboard stopped"); },
            () = watches => {}
        }
    }))
}

async fn overview(State(d): State<Dashboard>) -> Response {
    Json(d.store.overview()).into_response()
}

async fn device(
    State(d): State<Dashboard>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match d.store.detail(&format!("{namespace}/{name}")) {
        Some(detail) => Json(detail).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no device {namespace}/{name}\n"),
        )
            .into_response(),
    }
}

/// What one batch of the live stream carries (the limb's shape).
#[derive(Debug, Default, Serialize)]
struct Batch {
    devices: Vec<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<Detail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    present: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adaptors: Option<Vec<AdaptorView>>,
}

struct Stream {
    dashboard: Dashboard,
    changes: broadcast::Receiver<String>,
    follow: Option<String>,
    next_present: tokio::time::Instant,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

async fn events(State(d): State<Dashboard>) -> Response {
    live(d, None)
}

async fn events_of(
    State(d): State<Dashboard>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    live(d, Some(format!("{namespace}/{name}")))
}

fn live(d: Dashboard, follow: Option<String>) -> Response {
    let Ok(permit) = d.streams.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} live pages are open already\n"),
        )
            .into_response();
    };
    let stream = Stream {
        changes: d.store.subscribe(),
        follow,
        next_present: tokio::time::Instant::now() + PRESENT_EVERY,
        dashboard: d,
        _permit: permit,
    };
    let events = futures::stream::unfold(stream, |mut s| async move {
        let batch = s.next_batch().await?;
        let event = SseEvent::default()
            .event("batch")
            .json_data(&batch)
            .unwrap_or_else(|_| SseEvent::default().comment("unencodable batch"));
        Some((Ok::<_, Infallible>(event), s))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

impl Stream {
    /// Waits for changes (or the time to list every device) and gathers them; `None`
    /// ends the stream, when the brain stops.
    async fn next_batch(&mut self) -> Option<Batch> {
        let mut stop = self.dashboard.stop.clone();
        if *stop.borrow() {
            return None;
        }
        let first = tokio::select! {
            _ = stop.wait_for(|s| *s) => return None,
            () = tokio::time::sleep_until(self.next_present) => None,
            key = self.changes.recv() => Some(key),
        };
        let mut batch = Batch::default();
        let mut keys = Vec::new();
        let mut behind = false;
        match first {
            Some(Ok(key)) => keys.push(key),
            Some(Err(broadcast::error::RecvError::Lagged(_))) => behind = true,
            Some(Err(broadcast::error::RecvError::Closed)) => return None,
            None => {}
        }
        if !keys.is_empty() || behind {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return None,
                () = tokio::time::sleep(BATCH) => {}
            }
            while keys.len() < BATCH_DEVICES {
                match self.changes.try_recv() {
                    Ok(key) => keys.push(key),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => behind = true,
                    Err(_) => break,
                }
            }
        }
        let store = &self.dashboard.store;
        if behind {
            // Fell behind the feed: everything, as at the start.
            batch.devices = store.summaries();
            keys.extend(self.follow.clone());
            self.next_present = tokio::time::Instant::now();
        }
        keys.sort();
        keys.dedup();
        for key in keys {
            if self.follow.as_deref() == Some(&*key) {
                batch.detail = store.detail(&key);
            }
            if !behind && let Some(s) = store.summary(&key) {
                batch.devices.push(s);
            }
        }
        if tokio::time::Instant::now() >= self.next_present {
            self.next_present = tokio::time::Instant::now() + PRESENT_EVERY;
            let overview = store.overview();
            batch.present = Some(overview.devices.into_iter().map(|d| d.key).collect());
            batch.adaptors = Some(overview.adaptors);
        }
        Some(batch)
    }
}
