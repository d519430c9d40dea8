//! The dashboard: a few pages served from the admin listener (`/`), live through
//! server-sent events, with a plot per numeric status property.
//!
//! It only reads: the status board for devices and adaptors, and its own [`History`],
//! which a recorder task fills from the board's change feed. The pages, their assets
//! and the history are the `octopus-dashboard` crate's, shared with the brain's
//! cluster-wide dashboard; this module serves one node's JSON to them.

pub mod readings;

/// The bearer-token check of the cluster dashboard (`--dashboard-token`).
#[cfg(feature = "cluster")]
pub use octopus_dashboard::auth;
pub use octopus_dashboard::history;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use crate::status::{AdaptorReport, Changes, DeviceReport, Phase, StatusBoard};
pub use history::History;

/// Live pages open at once; each holds one change feed (a key per device at most).
const MAX_STREAMS: usize = 32;
/// Changes are sent in batches at most this often, so a busy node costs a page a few
/// messages a second, not one per poll.
const BATCH: Duration = Duration::from_millis(250);
/// Devices in one batch; the rest follow in the next.
const BATCH_DEVICES: usize = 500;
/// How often a live page is told every device present, so that it drops removed ones
/// (the board's feed announces changes, not removals).
const PRESENT_EVERY: Duration = Duration::from_secs(5);
/// Changes the recorder takes in a row before it lets other tasks run.
const RECORD_BEFORE_YIELD: usize = 32;
/// How often the recorder forgets devices gone from the board.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// How this dashboard was configured.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The node the limb drives, shown and filterable (one node: the limb's).
    pub node: Option<String>,
    /// `standalone` or `cluster`, shown in the header.
    pub mode: &'static str,
    /// Numeric property series the history keeps, over all devices.
    pub max_series: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            node: None,
            mode: "standalone",
            max_series: 4096,
        }
    }
}

/// What the dashboard's handlers share.
#[derive(Clone)]
pub struct Dashboard {
    board: Arc<StatusBoard>,
    history: Arc<Mutex<History>>,
    settings: Arc<Settings>,
    streams: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl Dashboard {
    /// A dashboard over `board`, and the recorder that fills its history until `stop`
    /// (spawn it).
    pub fn new(
        board: Arc<StatusBoard>,
        settings: Settings,
        stop: watch::Receiver<bool>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let history = Arc::new(Mutex::new(History::new(settings.max_series)));
        let recorder = record(
            board.clone(),
            history.clone(),
            board.subscribe(),
            stop.clone(),
        );
        let dashboard = Self {
            board,
            history,
            settings: Arc::new(settings),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            stop,
        };
        (dashboard, recorder)
    }

    /// The pages, their assets and their JSON, to merge into the admin router.
    pub fn router(self) -> Router {
        octopus_dashboard::assets()
            .route("/dashboard/api/overview", get(overview))
            .route("/dashboard/api/devices/{namespace}/{name}", get(device))
            .route("/dashboard/api/events", get(events))
            .route("/dashboard/api/events/{namespace}/{name}", get(events_of))
            .with_state(self)
    }

    /// The history the plots draw (the density benchmark fills and weighs it).
    pub fn shared_history(&self) -> Arc<Mutex<History>> {
        self.history.clone()
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn overview(&self) -> Overview {
        let mut devices = Vec::with_capacity(self.board.len());
        self.board
            .for_each(|r| devices.push(Summary::of(r, self.settings.node.as_deref())));
        let execution = crate::engine::execution_mode().map(|m| m.to_string());
        let adaptors = self
            .board
            .adaptors()
            .into_iter()
            .map(|report| AdaptorView::of(report, &devices, execution.clone()))
            .collect();
        Overview {
            node: self.settings.node.clone(),
            mode: self.settings.mode,
            devices,
            adaptors,
        }
    }

    fn detail(&self, key: &str) -> Option<Detail> {
        let report = self.board.get(key)?;
        let history = self.history().device(key);
        Some(Detail {
            summary: Summary::of(&report, self.settings.node.as_deref()),
            report,
            history,
        })
    }
}

/// Follows the board and records each changed device's numeric properties.
async fn record(
    board: Arc<StatusBoard>,
    history: Arc<Mutex<History>>,
    mut changes: Changes,
    mut stop: watch::Receiver<bool>,
) {
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut since_yield = 0usize;
    loop {
        // The feed answers at once while keys are pending, so on a busy node this loop
        // would keep its runtime thread from the devices' polls (the density benchmark
        // saw p99 poll drift go from 53 ms to 609 ms at 10,000 devices): it yields.
        since_yield += 1;
        if since_yield >= RECORD_BEFORE_YIELD {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = sweep.tick() => {
                let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
                for key in h.keys() {
                    if !board.contains(&key) {
                        h.forget(&key);
                    }
                }
            }
            key = changes.next() => {
                // Only reports with a poll are readings. The numbers are read under the
                // board's lock (a bounded walk, no copy of the document), and recorded
                // after it is released.
                let reading = board.read(&key, |r| {
                    r.last_poll
                        .as_ref()
                        .map(|_| (r.incarnation, history::numeric_properties(&r.status)))
                });
                if let Some(Some((incarnation, values))) = reading {
                    let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
                    h.record(&key, incarnation, values, SystemTime::now());
                }
            }
        }
    }
}

/// A device as the device list shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub model: String,
    pub adaptor: String,
    pub adaptor_version: Option<String>,
    pub node: Option<String>,
    pub phase: Phase,
    pub last_poll: Option<String>,
    pub last_error: Option<String>,
    pub polls: u64,
    pub failed_polls: u64,
}

impl Summary {
    fn of(r: &DeviceReport, node: Option<&str>) -> Self {
        Self {
            key: r.key(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            model: r.model.clone(),
            adaptor: r.adaptor.clone(),
            adaptor_version: r.adaptor_version.clone(),
            node: node.map(str::to_owned),
            phase: r.phase,
            last_poll: r.last_poll.clone(),
            last_error: r.last_error.clone(),
            polls: r.polls,
            failed_polls: r.failed_polls,
        }
    }
}

/// An adaptor with the devices it drives.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AdaptorView {
    #[serde(flatten)]
    report: AdaptorReport,
    execution: Option<String>,
    devices: Vec<String>,
    quarantined: Vec<String>,
}

impl AdaptorView {
    fn of(report: AdaptorReport, devices: &[Summary], execution: Option<String>) -> Self {
        // Links name `adaptors.edge.cattle.io/NAME`; the component calls itself NAME.
        let drives = |d: &&Summary| {
            report
                .name
                .as_deref()
                .is_some_and(|n| d.adaptor == n || d.adaptor.rsplit('/').next() == Some(n))
                && report.error.is_none()
        };
        let mine: Vec<&Summary> = devices.iter().filter(drives).collect();
        Self {
            devices: mine.iter().map(|d| d.key.clone()).collect(),
            quarantined: mine
                .iter()
                .filter(|d| d.phase == Phase::Quarantined)
                .map(|d| d.key.clone())
                .collect(),
            report,
            execution,
        }
    }
}

#[derive(Debug, Serialize)]
struct Overview {
    node: Option<String>,
    mode: &'static str,
    devices: Vec<Summary>,
    adaptors: Vec<AdaptorView>,
}

/// One device in full, with its history.
#[derive(Debug, Serialize)]
struct Detail {
    summary: Summary,
    report: DeviceReport,
    history: history::DeviceHistory,
}

/// What one batch of the live stream carries.
#[derive(Debug, Default, Serialize)]
struct Batch {
    devices: Vec<Summary>,
    /// The followed device, when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<Detail>,
    /// Every device present, now and then (see [`PRESENT_EVERY`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    present: Option<Vec<String>>,
    /// The adaptors, sent with `present`.
    #[serde(skip_serializing_if = "Option::is_none")]
    adaptors: Option<Vec<AdaptorView>>,
}

async fn overview(State(d): State<Dashboard>) -> Response {
    Json(d.overview()).into_response()
}

async fn device(
    State(d): State<Dashboard>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    match d.detail(&format!("{namespace}/{name}")) {
        Some(detail) => Json(detail).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no device {namespace}/{name}\n"),
        )
            .into_response(),
    }
}

/// One open live stream.
struct Stream {
    dashboard: Dashboard,
    changes: Changes,
    follow: Option<String>,
    next_present: tokio::time::Instant,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// The live stream of the device list and the adaptors page.
async fn events(State(d): State<Dashboard>) -> Response {
    live(d, None)
}

/// The live stream of one device's page: the list's, and that device in full.
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
        changes: d.board.subscribe(),
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
    /// ends the stream, when the limb stops.
    async fn next_batch(&mut self) -> Option<Batch> {
        let mut stop = self.dashboard.stop.clone();
        if *stop.borrow() {
            return None;
        }
        let first = tokio::select! {
            _ = stop.changed() => return None,
            () = tokio::time::sleep_until(self.next_present) => None,
            key = self.changes.next() => Some(key),
        };
        let mut batch = Batch::default();
        if let Some(first) = first {
            tokio::select! {
                _ = stop.changed() => return None,
                () = tokio::time::sleep(BATCH) => {}
            }
            let node = self.dashboard.settings.node.as_deref();
            let mut keys = vec![first];
            while keys.len() < BATCH_DEVICES
                && let Some(key) = self.changes.try_next()
            {
                keys.push(key);
            }
            for key in keys {
                if self.follow.as_deref() == Some(&*key) {
                    batch.detail = self.dashboard.detail(&key);
                }
                if let Some(s) = self.dashboard.board.read(&key, |r| Summary::of(r, node)) {
                    batch.devices.push(s);
                }
            }
        }
        if tokio::time::Instant::now() >= self.next_present {
            self.next_present = tokio::time::Instant::now() + PRESENT_EVERY;
            let overview = self.dashboard.overview();
            batch.present = Some(overview.devices.into_iter().map(|d| d.key).collect());
            batch.adaptors = Some(overview.adaptors);
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn fan(board: &StatusBoard, name: &str, speed: u64) {
        board.update(
            &format!("ns/{name}"),
            || DeviceReport::new("ns", name, "Kind", "adaptors.edge.cattle.io/dummy"),
            |r| {
                r.status = serde_json::json!({ "rotatingSpeed": speed });
                r.last_poll = Some(crate::status::now());
            },
        );
    }

    /// Reads from `stream` until `want` has arrived or it ends; returns what was read.
    async fn read_until(stream: &mut tokio::net::TcpStream, want: &str) -> String {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let read = async {
            loop {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&seen).contains(want) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
        String::from_utf8_lossy(&seen).into_owned()
    }

    #[tokio::test]
    async fn a_live_page_gets_changes_and_its_device_and_the_stream_ends_on_stop() {
        let board = Arc::new(StatusBoard::default());
        fan(&board, "a", 1);
        let (stop_tx, stop) = watch::channel(false);
        let (dashboard, recorder) =
            Dashboard::new(board.clone(), Settings::default(), stop.clone());
        let recorder = tokio::spawn(recorder);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut stop_serving = stop.clone();
        let server = tokio::spawn(
            axum::serve(listener, dashboard.clone().router())
                .with_graceful_shutdown(async move {
                    let _ = stop_serving.changed().await;
                })
                .into_future(),
        );

        let mut page = tokio::net::TcpStream::connect(addr).await.unwrap();
        page.write_all(b"GET /dashboard/api/events/ns/a HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let head = read_until(&mut page, "\r\n\r\n").await;
        assert!(head.contains("text/event-stream"), "{head}");
        fan(&board, "a", 42);
        let text = read_until(&mut page, "\"rotatingSpeed\":[[").await;
        assert!(text.contains("event: batch"), "{text}");
        assert!(text.contains(r#""key":"ns/a""#), "{text}");
        assert!(
            text.contains(r#""detail""#),
            "the followed device in full: {text}"
        );

        // The history behind the plots holds the reading.
        let history = dashboard.history().device("ns/a");
        assert_eq!(
            history.series["rotatingSpeed"].last().map(|p| p.1),
            Some(42.0)
        );

        // Stopping the limb ends the stream, so the graceful shutdown does not wait on
        // an open page.
        stop_tx.send(true).unwrap();
        let rest = read_until(&mut page, "\u{0}never").await;
        assert!(!rest.contains("never"));
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops with a live page open")
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), recorder)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn pages_are_embedded_and_forbid_anything_from_elsewhere() {
        let (_stop_tx, stop) = watch::channel(false);
        let board = Arc::new(StatusBoard::default());
        let (dashboard, _recorder) = Dashboard::new(board, Settings::default(), stop);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, dashboard.router()).into_future());
        for (path, kind) in [
            ("/", "text/html"),
            ("/dashboard/app.js", "text/javascript"),
            ("/dashboard/style.css", "text/css"),
        ] {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let text = read_until(&mut s, "\u{0}never").await;
            assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
            assert!(text.contains(kind), "{path}");
            assert!(text.contains("default-src 'self'"), "{path}");
            // Nothing from elsewhere (the SVG namespace is a name, not a fetch).
            let text = text.replace("http://www.w3.org/2000/svg", "");
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{path} loads nothing from elsewhere"
            );
        }
        // The script never parses data as HTML.
        assert!(
            !octopus_dashboard::APP_JS.contains("innerHTML")
                && !octopus_dashboard::APP_JS.contains("insertAdjacentHTML")
        );
    }
}
