//! The dashboard in a real browser: the `limb standalone` binary on the standalone
//! example's devices plus a Modbus device against pymodbus, its pages driven in headless
//! Chromium over the DevTools protocol (`octopus_tests::browser`).
//!
//! One page load for the whole test: every change below (a register written, the slave
//! stopped and started, another page opened) must reach the page live, and the test
//! checks at the end that the page was never reloaded. Screenshots are saved in
//! `$OCTOPUS_DASHBOARD_SCREENSHOTS` when set (`docs/` to refresh the README's), else in
//! the test's temporary folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use octopus_tests::browser::{Browser, Page};
use octopus_tests::paths::repo_file;
use octopus_tests::process::{Process, free_port, http_get};

use crate::common::*;
use crate::peers::{Line, Mbpoll, ModbusServer};

/// A string a device reports that would run if the page parsed it as HTML: 32 ASCII
/// characters, 16 registers.
const XSS: &str = "<script>window.pwned=1;</script>";
/// Where the Modbus link reads it, and its temperature.
const HR_LABEL: u16 = 300;
const HR_TEMPERATURE: u16 = 200;

fn modbus_yaml(port: u16) -> String {
    format!(
        r#"apiVersion: edge.cattle.io/v1alpha1
kind: DeviceLink
metadata:
  name: boiler
  namespace: plant
spec:
  adaptor:
    node: edge-worker
    name: adaptors.edge.cattle.io/modbus
  model:
    apiVersion: devices.edge.cattle.io/v1alpha1
    kind: ModbusDevice
  template:
    spec:
      protocol:
        tcp: {{endpoint: "127.0.0.1:{port}", workerID: 1}}
      parameters: {{syncInterval: 300ms, timeout: 300ms}}
      properties:
        - name: temperature
          type: int16
          readOnly: true
          visitor: {{register: HoldingRegister, offset: {HR_TEMPERATURE}}}
        - name: label
          type: string
          readOnly: true
          visitor: {{register: HoldingRegister, offset: {HR_LABEL}, quantity: 16}}
"#
    )
}

/// The standalone limb on `dir`, its dashboard on a free loopback port.
fn start_limb(dir: &Path) -> Process {
    let port = free_port();
    let err = std::fs::File::create(dir.join("limb.err")).unwrap();
    let child = Command::new(octopus_tests::bins::limb())
        .arg("standalone")
        .arg(dir)
        .args(["--output", "none", "--scan-interval", "200ms"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--call-timeout", "1s", "--backoff-max", "2s"])
        .args(["--device-metrics", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    Process { child, port }
}

/// Registers holding `text` as the Modbus adaptor's `string` reads it (two ASCII
/// characters a register, the first in the high byte).
fn registers(text: &str) -> Vec<String> {
    text.as_bytes()
        .chunks(2)
        .map(|c| (u16::from(c[0]) << 8 | u16::from(c.get(1).copied().unwrap_or(0))).to_string())
        .collect()
}

fn write(mbpoll: &Mbpoll, address: u16, values: &[String]) {
    let v: Vec<&str> = values.iter().map(String::as_str).collect();
    mbpoll
        .write("4", address, &v)
        .unwrap_or_else(|e| panic!("mbpoll write at {address}: {e}"));
}

fn screenshots() -> PathBuf {
    let dir = std::env::var_os("OCTOPUS_DASHBOARD_SCREENSHOTS")
        .map(|d| {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                repo_file("").join(d)
            }
        })
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The device table's rows as `{key: phase}`.
const ROWS: &str = "Object.fromEntries([...document.querySelectorAll('#devices tbody tr')].map(r => [r.dataset.key, r.dataset.phase]))";

fn row_phase(page: &mut Page, key: &str, phase: &str) {
    page.wait_for(
        &format!("{key} {phase} in the device table"),
        &format!(
            "document.querySelector('#devices tr[data-key=\"{key}\"]')?.dataset.phase === '{phase}'"
        ),
    );
}

/// Waits for `line` in the limb's `/metrics`.
fn wait_metric(limb: &Process, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = limb.get("/metrics").unwrap_or_default();
        if text.contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "{line} not in /metrics:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The text of the status value at `path` on the device page.
fn status_value(path: &str) -> String {
    format!("document.querySelector('#status tr[data-path=\"{path}\"] .value')?.textContent")
}

#[test]
fn the_dashboard_shows_devices_live_with_plots_and_escapes_device_strings() {
    let dir = tempfile::tempdir().unwrap();
    let mut slave = ModbusServer::tcp(dir.path());
    let modbus_port = slave.port;
    let mbpoll = Mbpoll::new(Line::Tcp(modbus_port), 1);
    write(&mbpoll, HR_TEMPERATURE, &["215".into()]);
    write(
        &mbpoll,
        HR_LABEL,
        &registers("boiler room 2   ".repeat(2).as_str()),
    );

    // The standalone example, as scripts/standalone.sh runs it, and the Modbus device.
    for name in ["living-room-fan.yaml", "localhost-robot.yaml"] {
        std::fs::copy(
            repo_file("examples/standalone").join(name),
            dir.path().join(name),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("boiler.yaml"), modbus_yaml(modbus_port)).unwrap();
    std::fs::write(
        dir.path().join("adaptor_dummy.wasm"),
        component("adaptor_dummy"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("adaptor_modbus.wasm"),
        component("adaptor_modbus"),
    )
    .unwrap();
    let mut limb = start_limb(dir.path());
    let base = format!("http://127.0.0.1:{}", limb.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while limb.get("/healthz").is_none() {
        assert!(
            !limb.exited(),
            "the limb exited; see {}/limb.err",
            dir.path().display()
        );
        assert!(Instant::now() < deadline, "the limb did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }

    let browser = Browser::start(&dir.path().join("chromium.log"));
    let mut page = browser.open(&format!("{base}/"));
    page.eval("window.loadedOnce = true");

    // The device list: every device, with the phase it has.
    let want = json!({
        "default/living-room-fan": "Healthy",
        "default/localhost-robot": "Healthy",
        "plant/boiler": "Healthy",
    });
    page.wait_for(
        "the three devices Healthy",
        &format!("JSON.stringify({ROWS}) === {:?}", want.to_string()),
    );
    // The filters narrow the table.
    page.eval("(() => { const s = document.getElementById('filter-namespace'); s.value = 'plant'; s.dispatchEvent(new Event('change')); })()");
    assert_eq!(page.eval(ROWS), json!({"plant/boiler": "Healthy"}));
    page.eval("(() => { const s = document.getElementById('filter-namespace'); s.value = ''; s.dispatchEvent(new Event('change')); const q = document.getElementById('search'); q.value = 'robot'; q.dispatchEvent(new Event('input')); })()");
    assert_eq!(
        page.eval(ROWS),
        json!({"default/localhost-robot": "Healthy"})
    );
    page.eval("(() => { const q = document.getElementById('search'); q.value = ''; q.dispatchEvent(new Event('input')); })()");
    page.wait_for(
        "all rows back",
        &format!("Object.keys({ROWS}).length === 3"),
    );
    page.screenshot(&screenshots().join("dashboard-devices.png"));

    // The Modbus device's page: a register written on the slave shows as its value and
    // as the last point of its plot, without a reload.
    page.eval("location.hash = '#/device/plant/boiler'");
    let temperature = status_value("properties.temperature.value");
    page.wait_for("the temperature read", &format!("{temperature} === '215'"));
    let last =
        "document.querySelector('.plot[data-property=\"properties.temperature\"]')?.dataset.last";
    page.wait_for("the temperature plotted", &format!("{last} === '215'"));
    // -40 as the register holds it (mbpoll would take "-40" for an option).
    let minus_40 = u16::from_be_bytes((-40i16).to_be_bytes());
    write(&mbpoll, HR_TEMPERATURE, &[minus_40.to_string()]);
    page.wait_for_within(
        "the new temperature on the page",
        &format!("{temperature} === '-40' && {last} === '-40'"),
        Duration::from_secs(10),
    );
    // The same reading as a Prometheus gauge (the node opts in with --device-metrics).
    wait_metric(
        &limb,
        r#"octopus_device_property{namespace="plant",link="boiler",property="properties.temperature"} -40.0"#,
    );
    page.wait_for(
        "the live status, the conditions and the adaptor's digest",
        "document.querySelectorAll('#conditions li').length >= 3 && /[0-9a-f]{12}/.test(document.querySelector('.facts').textContent)",
    );
    page.screenshot(&screenshots().join("dashboard-device.png"));

    // A device string holding markup is shown as text and runs nothing.
    write(&mbpoll, HR_LABEL, &registers(XSS));
    let label = status_value("properties.label.value");
    page.wait_for("the label as text", &format!("{label} === {XSS:?}"));
    let check = page.eval(
        "({pwned: window.pwned === undefined ? null : window.pwned, \
          scripts: document.scripts.length, \
          markupInCells: document.querySelectorAll('#status td *').length, \
          html: document.querySelector('#status tr[data-path=\"properties.label.value\"] .value').innerHTML})",
    );
    assert_eq!(check["pwned"], Value::Null, "{check}");
    assert_eq!(
        check["scripts"], 1,
        "only the dashboard's own script: {check}"
    );
    assert_eq!(check["markupInCells"], 0, "{check}");
    assert_eq!(
        check["html"], "&lt;script&gt;window.pwned=1;&lt;/script&gt;",
        "{check}"
    );

    // A failing device shows as failing, on its page and in the list, and recovers.
    slave.stop();
    page.wait_for(
        "the boiler Unhealthy on its page",
        "document.querySelector('#device-phase .phase')?.dataset.phase === 'Unhealthy' && !!document.getElementById('last-error')",
    );
    page.eval("location.hash = '#/'");
    row_phase(&mut page, "plant/boiler", "Unhealthy");
    let error = page.eval(
        "document.querySelector('#devices tr[data-key=\"plant/boiler\"] td.error').textContent",
    );
    assert!(error.as_str().is_some_and(|e| !e.is_empty()), "{error}");
    page.screenshot(&screenshots().join("dashboard-failing.png"));
    wait_metric(
        &limb,
        r#"octopus_device_condition{namespace="plant",link="boiler",type="DeviceConnected",status="False"} 1"#,
    );
    let _again = ModbusServer::tcp_on(dir.path(), modbus_port);
    row_phase(&mut page, "plant/boiler", "Healthy");
    wait_metric(
        &limb,
        r#"octopus_device_condition{namespace="plant",link="boiler",type="DeviceConnected",status="True"} 1"#,
    );
    assert_eq!(
        page.eval(
            "document.querySelector('#devices tr[data-key=\"plant/boiler\"] td.error').textContent"
        ),
        ""
    );

    // The adaptors page: both adaptors, their digests and their devices.
    page.eval("location.hash = '#/adaptors'");
    let adaptors = page.wait_for(
        "two adaptors with their devices",
        "(() => { const rows = [...document.querySelectorAll('#adaptors tbody tr')]; \
          return rows.length === 2 && rows.map(r => [...r.cells].map(c => c.textContent)); })()",
    );
    let text = adaptors.to_string();
    for part in [
        "plant/boiler",
        "default/living-room-fan",
        "default/localhost-robot",
    ] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
    page.screenshot(&screenshots().join("dashboard-adaptors.png"));

    assert_eq!(
        page.eval("window.loadedOnce === true"),
        true,
        "the page was reloaded"
    );
}

/// In a cluster the dashboard is not on the admin listener (the pod network) but on a
/// listener of its own, on the pod's loopback by default, which only `kubectl
/// port-forward` reaches; it shows the node it runs on and the mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_the_dashboard_has_its_own_listener_and_the_admin_one_has_none() {
    let (server, _client, _brain) = crate::cluster::control_plane().await;
    let dashboard_port = free_port();
    let cache = server.dir.path().join("limb-cache");
    let limb = Process::start(
        octopus_tests::bins::limb(),
        &[
            "--cache-dir",
            &cache.display().to_string(),
            "cluster",
            "--node",
            "edge-1",
            "--namespace",
            "octopus-system",
            "--dashboard-listen",
            &format!("127.0.0.1:{dashboard_port}"),
        ],
        &server.user_kubeconfig("limb"),
        &[],
        &server.dir.path().join("limb-dashboard.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let overview = loop {
        if let Some((200, body)) = http_get(dashboard_port, "/dashboard/api/overview") {
            break serde_json::from_str::<Value>(&body).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no dashboard on {dashboard_port}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(overview["mode"], "cluster", "{overview}");
    assert_eq!(overview["node"], "edge-1", "{overview}");
    let (code, page) = http_get(dashboard_port, "/").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("/dashboard/app.js"), "{page}");
    // The admin listener serves the JSON endpoints, not the dashboard.
    assert_eq!(limb.request("/healthz").map(|r| r.0), Some(200));
    assert_eq!(limb.request("/").map(|r| r.0), Some(404));
    assert_eq!(
        limb.request("/dashboard/api/overview").map(|r| r.0),
        Some(404)
    );
}
