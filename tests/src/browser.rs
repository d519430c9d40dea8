//! Headless Chromium driven over the DevTools protocol, for the dashboard's browser
//! tests: a page is opened, scripts evaluated in it, screenshots taken.
//!
//! A small blocking client over one WebSocket per page (tungstenite) rather than a
//! browser-automation crate: the tests need five protocol methods, and a blocking
//! client keeps every wait bounded by a socket timeout. Chromium is Debian's package
//! (`ensure_chromium` in scripts/env.sh, which exports `OCTOPUS_CHROMIUM`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// Longest one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest Chromium may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The Chromium executable: `$OCTOPUS_CHROMIUM`, else `chromium` on the PATH.
pub fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("OCTOPUS_CHROMIUM") {
        return PathBuf::from(p);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("chromium");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "no chromium: run `source scripts/env.sh && ensure_chromium` (Debian's chromium package)"
    )
}

/// A headless Chromium with its own profile, killed when dropped.
pub struct Browser {
    child: Child,
    port: u16,
    /// The browser's own WebSocket path (`/devtools/browser/<id>`).
    path: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium, its DevTools endpoint on a loopback port it picks, and waits
    /// until that port is written to the profile.
    pub fn start(log: &Path) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(chromium())
            .args([
                "--headless=new",
                // The tests may run as root, where Chromium's sandbox refuses to start;
                // the page is the limb's own, on loopback.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--disable-component-update",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromium().display()));
        let mut browser = Self {
            child,
            port: 0,
            path: String::new(),
            _profile: profile,
        };
        let file = browser._profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // The port on the first line, the browser's path on the second.
            if let Ok(text) = std::fs::read_to_string(&file)
                && let [port, path] = text.lines().collect::<Vec<_>>()[..]
                && let Ok(port) = port.trim().parse()
            {
                browser.port = port;
                browser.path = path.trim().to_owned();
                return browser;
            }
            assert!(
                matches!(browser.child.try_wait(), Ok(None)),
                "chromium exited before listening"
            );
            assert!(
                Instant::now() < deadline,
                "chromium did not listen within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Opens a new tab at `url`.
    pub fn open(&self, url: &str) -> Page {
        let mut browser = Page::connect(self.port, &self.path);
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let id = target["targetId"].as_str().unwrap().to_owned();
        let mut page = Page::connect(self.port, &format!("/devtools/page/{id}"));
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
        page.call("Runtime.enable", json!({}));
        page.goto(url);
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab (or the browser itself), over its own WebSocket.
pub struct Page {
    ws: WebSocket<TcpStream>,
    next_id: u64,
}

impl Page {
    fn connect(port: u16, path: &str) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (ws, _) = tungstenite::client::client(url.as_str(), stream)
            .unwrap_or_else(|e| panic!("DevTools WebSocket {url}: {e}"));
        Self { ws, next_id: 0 }
    }

    /// Calls a protocol method and returns its result; events in between are skipped.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::text(msg.to_string())).unwrap();
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "{method}: no answer");
            let text = match self.ws.read() {
                Ok(Message::Text(t)) => t.to_string(),
                Ok(_) => continue,
                Err(e) => panic!("{method}: {e}"),
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] != id {
                continue;
            }
            if let Some(err) = v.get("error") {
                panic!("{method}: {err}");
            }
            return v["result"].clone();
        }
    }

    /// Loads `url` and waits for the document to be ready.
    pub fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_for("the page to load", "document.readyState === 'complete'");
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value; a thrown
    /// exception fails the test with the script's message.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluates `expr` until it is truthy, for up to 20 s, and returns its value.
    pub fn wait_for(&mut self, what: &str, expr: &str) -> Value {
        self.wait_for_within(what, expr, Duration::from_secs(20))
    }

    pub fn wait_for_within(&mut self, what: &str, expr: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(expr);
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {within:?} ({expr} is {v})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the whole page at `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let data = r["data"].as_str().unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}
