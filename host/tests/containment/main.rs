//! The release containment suite: a misbehaving adaptor costs its neighbours nothing.
//!
//! Each case runs the real `limb` binary as a process, the way an operator runs it and an
//! attacker meets it: `limb standalone DIR --output json` on a folder, driven through files
//! and the HTTP endpoint only, with its stdout read as a user piping it would. It is meant
//! to run in **release**, where the limb's numbers mean something:
//!
//! ```sh
//! cargo test --release -p limb --test containment
//! ```
//!
//! (`env!("CARGO_BIN_EXE_limb")` is then the release binary.) `OCTOPUS_LIMB_BIN` names
//! another limb binary to attack instead: `scripts/test.sh` points it at the static
//! release binary that goes into the image, so the suite proves the shipped artifact and
//! the harness itself can stay a debug build. A plain `cargo test` leaves this target out
//! (`test = false` in `host/Cargo.toml`); a debug build of the limb still runs when named,
//! and says it is not the build it is meant for. The cases share a lock, so libtest may
//! report them as running long while they wait their turn.
//!
//! The adaptor components come from `$OCTOPUS_ADAPTORS_DIR` (default
//! `~/.cache/octopus/adaptors`, filled by `scripts/build-adaptors.sh`, which also builds
//! `adaptor_hostile_huge_describe.wasm`).
//!
//! A case, one limb at a time:
//!
//! 1. start a limb with one healthy neighbour, the dummy `DummySpecialDevice` fan polled
//!    every 100 ms, and time how long a new link takes to reach its first poll;
//! 2. **baseline** (4 s): the neighbour's poll count (`polls` of
//!    `GET /devices/default/fan`), the limb's RSS and CPU;
//! 3. **attack** (6 s): the hostile link files (and components) are added;
//! 4. **after** (4 s): they are removed, a new unrelated link is added at once.
//!
//! Throughout, one thread reads the limb's stdout JSON lines and another asks `/healthz`
//! every 200 ms with a 1 s timeout and samples the limb's RSS. Every case asserts:
//!
//! - the neighbour keeps at least 90% of its baseline poll rate during and after the
//!   attack, and its lines on stdout keep 90% of their baseline rate;
//! - every `/healthz` answered `ok` within 1 s, and the limb never died;
//! - every stdout line is one JSON object (guest text cannot break the stream);
//! - peak RSS (sampled VmRSS, and VmHWM if it grew) stays under the baseline RSS plus
//!   256 MiB ([`RSS_HEADROOM_MIB`] says why);
//! - the hostile devices leave `/devices` within 10 scan intervals (2 s) of their files
//!   going, i.e. removal interrupts a running call;
//! - the new link after the attack reaches its first poll within 3x the time the same
//!   kind of link took before the attack, or 10 neighbour intervals, whichever is larger;
//! - the case's own evidence that the attack ran (the hostile device polled, trapped,
//!   was quarantined, was refused ...) and its specific claim (escaped guest text,
//!   refused `describe`).
//!
//! Every threshold is a ratio to the same run's baseline or a multiple of the
//! neighbour's interval, never an absolute time. Each case prints one summary line (on
//! stderr, past the test harness's capture, and appended to
//! `$CARGO_TARGET_TMPDIR/containment-summary.txt`), so the numbers can be quoted.
//! Each case keeps the limb's log (its stderr) in `$CARGO_TARGET_TMPDIR/containment-CASE.log`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

// The one lookup of components (and of the cache they sit in), shared with the
// end-to-end suites. Included by path rather than as a dev-dependency: this suite is
// built in release with `--no-default-features`, and the `octopus-tests` crate would
// bring its kube and k8s-openapi half into that build for one function.
#[path = "../../../tests/src/paths.rs"]
#[allow(dead_code, reason = "this suite needs only the component lookup")]
mod paths;
use paths::component;

/// The healthy neighbour's poll interval; the unit of the time bounds.
const INTERVAL: Duration = Duration::from_millis(100);
/// How often the limb rescans its folder.
const SCAN: Duration = Duration::from_millis(200);
/// `--call-timeout`: above `spin-poll`'s 400 ms, so that one never hits the deadline.
const CALL_TIMEOUT: &str = "1s";
const BASELINE: Duration = Duration::from_secs(4);
const ATTACK: Duration = Duration::from_secs(6);
const AFTER: Duration = Duration::from_secs(4);
/// Quiet time between start-up and the baseline.
const SETTLE: Duration = Duration::from_secs(1);
const HEALTHZ_EVERY: Duration = Duration::from_millis(200);
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(1);
/// Share of its baseline rate the neighbour keeps during and after an attack.
const KEEP: f64 = 0.9;
/// Removed devices leave `/devices` within this many scans.
const REMOVAL_SCANS: u32 = 10;
/// A new link's first poll after an attack: within this multiple of the same link's
/// first poll before it...
const FIRST_POLL_RATIO: f64 = 3.0;
/// ...or this many neighbour intervals, whichever is larger.
const FIRST_POLL_INTERVALS: u32 = 10;
/// Headroom over the baseline RSS. The limb's default `--memory-limit-mib` is 64: a
/// hostile instance may legitimately hold that much linear memory, and the cases that
/// grow memory run at most three such instances at once (3 x 64 MiB), plus 64 MiB for
/// the host's own buffers. A host that copies or queues what a guest hands it without a
/// bound (32 MiB of `wasi:random` per call, 1 MiB statuses 100 times a second, a 4 MiB
/// `describe`) goes past it within the attack window.
const RSS_HEADROOM_MIB: u64 = 256;
/// Stdout lines up to this size are parsed as JSON; longer ones are checked for shape
/// (one object, no raw control characters) so the reader keeps up like a user's pipe.
const PARSE_LINES_UP_TO: usize = 256 << 10;
/// Longest wait for start-up steps (a component's first compile on a busy machine).
const STARTUP: Duration = Duration::from_secs(60);
/// The timestamp of the line `forge` tries to fake in the limb's log
/// (`2026-12-06T00:00:00.000000Z  INFO limb: forged line`).
const FORGED_TIMESTAMP: &str = "2026-12-06T00:00:00.000000Z";

/// One limb at a time: the cases measure rates on a shared machine.
static ONE_LIMB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_LIMB_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------
// Components, links and files

fn link_yaml(name: &str, adaptor: &str, kind: &str, spec: &Value) -> String {
    // YAML is a superset of JSON: the spec goes in as one flow mapping.
    format!(
        "apiVersion: edge.cattle.io/v1alpha1\n\
         kind: DeviceLink\n\
         metadata:\n  name: {name}\n  namespace: default\n\
         spec:\n  adaptor:\n    node: edge-worker\n    name: adaptors.edge.cattle.io/{adaptor}\n\
         \x20 model:\n    apiVersion: devices.edge.cattle.io/v1alpha1\n    kind: {kind}\n\
         \x20 template:\n    spec: {spec}\n"
    )
}

/// A healthy dummy fan polled every [`INTERVAL`].
fn fan_yaml(name: &str) -> String {
    link_yaml(
        name,
        "dummy",
        "DummySpecialDevice",
        &json!({"protocol": {"location": "lab"}, "gear": "slow", "on": true,
                "parameters": {"syncInterval": format!("{}ms", INTERVAL.as_millis())}}),
    )
}

/// Writes a file the way `cp` to a temporary name and `mv` would, so the limb never
/// reads half of it.
fn put(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------------
// HTTP on 127.0.0.1, /proc

/// `GET path` with every step bounded by what is left of `timeout`.
fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let start = Instant::now();
    let left = || {
        timeout
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {timeout:?}"))
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, left()?).map_err(|e| format!("connect: {e}"))?;
    s.set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        s.set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read after {:?}: {e}", start.elapsed())),
        }
    }
    if start.elapsed() > timeout {
        return Err(format!("answered after {:?}", start.elapsed()));
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status code")?;
    Ok((code, raw[split + 4..].to_vec()))
}

fn get_json(port: u16, path: &str, timeout: Duration) -> Result<(u16, Value, usize), String> {
    let (code, body) = http_get(port, path, timeout)?;
    let len = body.len();
    let value = if code == 200 {
        serde_json::from_slice(&body).map_err(|e| format!("{path}: not JSON: {e}"))?
    } else {
        Value::Null
    };
    Ok((code, value, len))
}

/// (VmRSS, VmHWM) in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it do not.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// At most `n` characters of `s`, control characters escaped.
fn short(s: &str, n: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == n {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The limb process and its watchers

/// Which window a case is in; indexes [`Shared::windows`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Startup = 0,
    Baseline = 1,
    Attack = 2,
    After = 3,
}

const WINDOWS: [Phase; 3] = [Phase::Baseline, Phase::Attack, Phase::After];

#[derive(Clone, Debug, Default)]
struct Window {
    healthz: u32,
    healthz_failed: u32,
    healthz_errors: Vec<String>,
    healthz_max: Duration,
    /// Largest VmRSS sampled, KiB.
    rss_peak: u64,
    lines: u64,
    bytes: u64,
    longest_line: usize,
    /// Lines about the neighbour.
    fan_lines: u64,
    bad_lines: u64,
    bad_sample: Option<String>,
}

struct Shared {
    phase: AtomicUsize,
    stop: AtomicBool,
    windows: Mutex<[Window; 4]>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut Window) -> R) -> R {
        let i = self.phase.load(Ordering::SeqCst);
        let mut w = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut w[i])
    }

    fn window(&self, phase: Phase) -> Window {
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)[phase as usize]
            .clone()
    }
}

struct Limb {
    child: Child,
    pid: u32,
    port: u16,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    shared: Arc<Shared>,
    watchers: Vec<JoinHandle<()>>,
}

impl Drop for Limb {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.child.kill();
        let _ = self.child.wait();
        for w in self.watchers.drain(..) {
            let _ = w.join();
        }
    }
}

/// What a measurement reads at one moment.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    polls: u64,
    rss: u64,
    hwm: u64,
    cpu: u64,
}

impl Limb {
    fn start(wasm: &[(&str, &str)], args: &[&str]) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("octopus-containment-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        for (file, name) in wasm {
            put(&dir.join(file), &component(name));
        }
        put(&dir.join("fan.yaml"), fan_yaml("fan").as_bytes());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cache = std::env::var_os("LIMB_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("containment-cache"));
        let mut cmd = Command::new(limb_binary());
        // Only what this suite says: no LIMB_* setting of the caller's changes the limb
        // (LIMB_LOG, the log filter, still applies).
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LIMB_") && k != "LIMB_LOG" {
                cmd.env_remove(k);
            }
        }
        let err = std::fs::File::create(dir.join("limb.log")).unwrap();
        let mut child = cmd
            .env("NO_COLOR", "1")
            .args(["standalone", &dir.display().to_string(), "--output", "json"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--scan-interval", &format!("{}ms", SCAN.as_millis())])
            .args(["--call-timeout", CALL_TIMEOUT])
            .args(["--cache-dir", &cache.display().to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        let pid = child.id();
        let shared = Arc::new(Shared {
            phase: AtomicUsize::new(Phase::Startup as usize),
            stop: AtomicBool::new(false),
            windows: Mutex::new(Default::default()),
        });
        let stdout = child.stdout.take().unwrap();
        let watchers = vec![
            {
                let shared = shared.clone();
                std::thread::spawn(move || read_stdout(stdout, &shared))
            },
            {
                let shared = shared.clone();
                std::thread::spawn(move || probe(port, pid, &shared))
            },
        ];
        Self {
            child,
            pid,
            port,
            dir,
            _tmp: tmp,
            shared,
            watchers,
        }
    }

    fn enter(&self, phase: Phase) {
        self.shared.phase.store(phase as usize, Ordering::SeqCst);
    }

    /// `Err` with the exit status and the end of the log once the limb has exited.
    fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "the limb died ({status}); its log ends:\n{}",
                self.log_tail(15)
            )),
            Err(e) => Err(format!("cannot wait on the limb: {e}")),
        }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("limb.log")).unwrap_or_default())
            .into_owned()
    }

    fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| format!("  {}", short(l, 300)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The device's report, `None` when it is not listed (404).
    fn device(&self, name: &str) -> Result<Option<Value>, String> {
        let mut last = String::new();
        for _ in 0..3 {
            match get_json(
                self.port,
                &format!("/devices/default/{name}"),
                Duration::from_secs(5),
            ) {
                Ok((200, v, _)) => return Ok(Some(v)),
                Ok((404, _, _)) => return Ok(None),
                Ok((code, _, _)) => last = format!("HTTP {code}"),
                Err(e) => last = e,
            }
        }
        Err(format!("GET /devices/default/{name}: {last}"))
    }

    /// Names listed by `/devices`, and the body's size.
    fn listed(&self) -> Result<(Vec<String>, usize), String> {
        let (_, v, len) = get_json(self.port, "/devices", Duration::from_secs(5))?;
        let names = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok((names, len))
    }

    fn sample(&mut self) -> Result<Sample, String> {
        self.alive()?;
        let before = Instant::now();
        let fan = self.device("fan")?.ok_or("the neighbour is not listed")?;
        // The counter was read somewhere during the request.
        let at = before + before.elapsed() / 2;
        let (rss, hwm) = memory_kib(self.pid).ok_or("no /proc status")?;
        let cpu = cpu_ticks(self.pid).ok_or("no /proc stat")?;
        Ok(Sample {
            at,
            polls: fan["polls"].as_u64().unwrap_or(0),
            rss,
            hwm,
            cpu,
        })
    }

    /// Waits until `name` is listed and `pred` holds; returns the time it took.
    fn wait_device(
        &mut self,
        name: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < within {
            self.alive()?;
            if let Ok(Some(d)) = self.device(name) {
                if pred(&d) {
                    return Ok(start.elapsed());
                }
                last = Some(d);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!(
            "{name}: not there within {within:?}; last report: {}",
            last.map_or_else(|| "none".to_owned(), |d| short(&d.to_string(), 400))
        ))
    }

    /// Waits until none of `names` is listed; returns the time it took.
    fn wait_gone(&mut self, names: &[String], within: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut left = names.to_vec();
        while start.elapsed() < within {
            self.alive()?;
            if let Ok((listed, _)) = self.listed() {
                left.retain(|n| listed.contains(n));
                if left.is_empty() {
                    return Ok(start.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "{} of {} still listed after {within:?}: {}",
            left.len(),
            names.len(),
            left.join(", ")
        ))
    }

    /// Adds a fresh fan link and times its first poll; `Err` past `within`.
    fn first_poll(&mut self, name: &str, within: Duration) -> Result<Duration, String> {
        put(
            &self.dir.join(format!("{name}.yaml")),
            fan_yaml(name).as_bytes(),
        );
        self.wait_device(name, within, |d| d["polls"].as_u64().unwrap_or(0) >= 1)
    }

    /// Right after the hostile files went (at `removed`): adds the fan `newcomer` and
    /// watches both, until `within` of `removed`. Returns how long the hostile devices
    /// took to leave `/devices` and the newcomer to reach its first poll (`None`: not
    /// within the time).
    fn after_removal(
        &mut self,
        removed: Instant,
        hostile: &[String],
        newcomer: &str,
        within: Duration,
    ) -> Result<(Option<Duration>, Option<Duration>), String> {
        let added = Instant::now();
        put(
            &self.dir.join(format!("{newcomer}.yaml")),
            fan_yaml(newcomer).as_bytes(),
        );
        let (mut gone, mut first) = (None, None);
        let mut last_listing = None::<Instant>;
        while removed.elapsed() < within && (gone.is_none() || first.is_none()) {
            self.alive()?;
            if first.is_none()
                && let Ok(Some(d)) = self.device(newcomer)
                && d["polls"].as_u64().unwrap_or(0) >= 1
            {
                first = Some(added.elapsed());
            }
            if gone.is_none()
                && last_listing.is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
            {
                last_listing = Some(Instant::now());
                if let Ok((listed, _)) = self.listed()
                    && !hostile.iter().any(|n| listed.contains(n))
                {
                    gone = Some(removed.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok((gone, first))
    }
}

/// Reads the limb's stdout as a user's pipe would: every line must be one JSON object.
fn read_stdout(stdout: ChildStdout, shared: &Shared) {
    let mut reader = BufReader::with_capacity(1 << 20, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let bytes = line.len();
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let (ok, name) = classify(&line);
        shared.with(|w| {
            w.lines += 1;
            w.bytes += bytes as u64;
            w.longest_line = w.longest_line.max(bytes);
            if name.as_deref() == Some("fan") {
                w.fan_lines += 1;
            }
            if !ok {
                w.bad_lines += 1;
                if w.bad_sample.is_none() {
                    w.bad_sample = Some(short(&String::from_utf8_lossy(&line), 200));
                }
            }
        });
    }
}

/// Whether a stdout line is one JSON object, and the device it is about.
fn classify(line: &[u8]) -> (bool, Option<String>) {
    if line.len() <= PARSE_LINES_UP_TO {
        return match serde_json::from_slice::<Value>(line) {
            Ok(v) if v.is_object() => (true, v["name"].as_str().map(str::to_owned)),
            _ => (false, None),
        };
    }
    // Too long to parse at the pace it comes: its shape, and the name near its start
    // (the report's fields begin with namespace and name).
    let shaped = line.first() == Some(&b'{')
        && line.last() == Some(&b'}')
        && !line.iter().any(|b| *b < 0x20);
    let head = String::from_utf8_lossy(&line[..line.len().min(512)]);
    let name = head
        .split_once("\"name\":\"")
        .and_then(|(_, rest)| rest.split_once('"').map(|(name, _)| name.to_owned()));
    (shaped, name)
}

/// Asks `/healthz` every [`HEALTHZ_EVERY`] and samples the limb's RSS.
fn probe(port: u16, pid: u32, shared: &Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        let tick = Instant::now();
        let answer = http_get(port, "/healthz", HEALTHZ_TIMEOUT);
        let took = tick.elapsed();
        let rss = memory_kib(pid).map_or(0, |(rss, _)| rss);
        let startup = shared.phase.load(Ordering::SeqCst) == Phase::Startup as usize;
        shared.with(|w| {
            w.rss_peak = w.rss_peak.max(rss);
            if startup {
                return;
            }
            w.healthz += 1;
            w.healthz_max = w.healthz_max.max(took);
            let failure = match answer {
                Ok((200, body)) if body == b"ok\n" && took <= HEALTHZ_TIMEOUT => None,
                Ok((code, body)) => Some(format!(
                    "HTTP {code} \"{}\" after {took:?}",
                    short(&String::from_utf8_lossy(&body), 40)
                )),
                Err(e) => Some(e),
            };
            if let Some(f) = failure {
                w.healthz_failed += 1;
                if w.healthz_errors.len() < 3 {
                    w.healthz_errors.push(f);
                }
            }
        });
        if let Some(rest) = HEALTHZ_EVERY.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cases

/// One hostile link.
struct Hostile {
    name: String,
    mode: &'static str,
    parameters: Value,
}

fn hostiles(n: usize, prefix: &str, mode: &'static str, parameters: Value) -> Vec<Hostile> {
    (0..n)
        .map(|i| Hostile {
            name: format!("{prefix}-{i}"),
            mode,
            parameters: parameters.clone(),
        })
        .collect()
}

/// What the case looked at, for its own checks.
struct Evidence {
    /// The hostile devices' reports at the end of the attack (`None`: not listed).
    reports: Vec<(String, Option<Value>)>,
    adaptors: Value,
    adaptors_len: usize,
    devices_len: usize,
    /// The limb's log (stderr), read at the end of the case.
    log: String,
}

impl Evidence {
    fn listed(&self) -> impl Iterator<Item = &Value> {
        self.reports.iter().filter_map(|(_, r)| r.as_ref())
    }

    fn sum(&self, field: &str) -> u64 {
        self.listed().map(|r| r[field].as_u64().unwrap_or(0)).sum()
    }

    /// Short description of the first hostile device, for the summary.
    fn note(&self) -> String {
        let Some((name, report)) = self.reports.first() else {
            return String::new();
        };
        let Some(r) = report else {
            return format!("{name}: not listed");
        };
        let mut s = format!(
            "{name}: {} polls {} failed {} traps {}",
            r["phase"].as_str().unwrap_or("?"),
            r["polls"],
            r["failedPolls"],
            r["traps"]
        );
        if let Some(e) = r["lastError"].as_str() {
            let _ = write!(s, ", last error \"{}\"", short(e, 120));
        }
        s
    }

    /// The hostile code ran: some device polled or trapped.
    fn ran(&self, fails: &mut Vec<String>) {
        if self.sum("polls") + self.sum("failedPolls") + self.sum("traps") == 0 {
            fails.push(format!(
                "the attack did not run (no hostile poll or trap); {}{}",
                self.note(),
                self.stale_hint()
            ));
        }
    }

    fn polled(&self, fails: &mut Vec<String>) {
        if self.sum("polls") == 0 {
            fails.push(format!(
                "no hostile device completed a poll; {}{}",
                self.note(),
                self.stale_hint()
            ));
        }
    }

    fn stale_hint(&self) -> &'static str {
        if self.listed().any(|r| {
            r["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("unknown mode"))
        }) {
            " (the hostile component predates this mode: run scripts/build-adaptors.sh)"
        } else {
            ""
        }
    }
}

type Check = fn(&Evidence, &mut Vec<String>);

struct Case {
    name: &'static str,
    /// Links added for the attack and removed after it.
    hostile: Vec<Hostile>,
    /// Components in the folder from the start: (file, component).
    wasm: Vec<(&'static str, &'static str)>,
    /// Components added for the attack and removed after it.
    attack_wasm: Vec<(&'static str, &'static str)>,
    /// Extra limb flags (existing ones only: an unknown flag would stop the limb).
    args: Vec<&'static str>,
    check: Check,
}

impl Case {
    fn new(name: &'static str, hostile: Vec<Hostile>, check: Check) -> Self {
        Self {
            name,
            hostile,
            wasm: vec![
                ("dummy.wasm", "adaptor_dummy"),
                ("hostile.wasm", "adaptor_hostile"),
            ],
            attack_wasm: Vec::new(),
            args: Vec::new(),
            check,
        }
    }

    fn names(&self) -> Vec<String> {
        self.hostile.iter().map(|h| h.name.clone()).collect()
    }

    /// Runs the case; panics with every failed claim and the numbers.
    fn run(self) {
        let _one = one_at_a_time();
        if cfg!(debug_assertions) && std::env::var_os("OCTOPUS_LIMB_BIN").is_none() {
            say(&format!(
                "containment {}: WARNING: built without --release; this suite is meant for the release limb (cargo test --release -p limb --test containment)",
                self.name
            ));
        }
        let started = Instant::now();
        let mut limb = Limb::start(&self.wasm, &self.args);
        let mut fails = Vec::new();
        let summary = match self.drive(&mut limb, &mut fails) {
            Ok(s) => s,
            Err(e) => {
                fails.push(e);
                format!("aborted: {}", fails.last().map_or("", |f| f.as_str()))
            }
        };
        let verdict = if fails.is_empty() {
            "ok".to_owned()
        } else {
            format!("FAILED ({})", fails.len())
        };
        say(&format!(
            "containment {}: {summary}; {:.0} s; {verdict}",
            self.name,
            started.elapsed().as_secs_f64()
        ));
        let kept =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("containment-{}.log", self.name));
        let _ = std::fs::copy(limb.dir.join("limb.log"), &kept);
        drop(limb);
        if !fails.is_empty() {
            panic!(
                "containment {}: {} claim(s) failed:\n- {}\n(the limb's log: {})",
                self.name,
                fails.len(),
                fails.join("\n- "),
                kept.display()
            );
        }
    }

    /// The case's steps; `Err` when it cannot go on (the limb died, an endpoint is gone).
    fn drive(&self, limb: &mut Limb, fails: &mut Vec<String>) -> Result<String, String> {
        let interval_s = INTERVAL.as_secs_f64();
        limb.wait_device("fan", STARTUP, |d| {
            d["phase"] == "Healthy" && d["polls"].as_u64().unwrap_or(0) >= 3
        })?;
        // How long a new link takes to its first poll on a quiet limb.
        let first_before = limb.first_poll("newcomer-before", STARTUP)?;
        std::fs::remove_file(limb.dir.join("newcomer-before.yaml")).unwrap();
        limb.wait_gone(&["newcomer-before".to_owned()], STARTUP)?;
        std::thread::sleep(SETTLE);

        // Baseline.
        limb.enter(Phase::Baseline);
        let m0 = limb.sample()?;
        std::thread::sleep(BASELINE);
        let m1 = limb.sample()?;

        // Attack.
        limb.enter(Phase::Attack);
        for (file, name) in &self.attack_wasm {
            put(&limb.dir.join(file), &component(name));
        }
        for h in &self.hostile {
            let spec = json!({"mode": h.mode, "parameters": h.parameters});
            put(
                &limb.dir.join(format!("{}.yaml", h.name)),
                link_yaml(&h.name, "hostile", "HostileDevice", &spec).as_bytes(),
            );
        }
        std::thread::sleep(ATTACK.saturating_sub(m1.at.elapsed()));
        limb.alive()?;
        let mut reports = Vec::new();
        for name in self.names() {
            let report = limb.device(&name).unwrap_or_else(|e| {
                fails.push(e);
                None
            });
            reports.push((name, report));
        }
        let (adaptors, adaptors_len) =
            match get_json(limb.port, "/adaptors", Duration::from_secs(5)) {
                Ok((200, v, len)) => (v, len),
                Ok((code, _, _)) => {
                    fails.push(format!("GET /adaptors: HTTP {code}"));
                    (Value::Null, 0)
                }
                Err(e) => {
                    fails.push(format!("GET /adaptors: {e}"));
                    (Value::Null, 0)
                }
            };
        let devices_len = limb.listed().map_or_else(
            |e| {
                fails.push(format!("GET /devices: {e}"));
                0
            },
            |(_, len)| len,
        );
        let m2 = limb.sample()?;

        // After: the hostile files go, and a new link comes at once.
        limb.enter(Phase::After);
        for h in &self.hostile {
            std::fs::remove_file(limb.dir.join(format!("{}.yaml", h.name))).unwrap();
        }
        for (file, _) in &self.attack_wasm {
            std::fs::remove_file(limb.dir.join(file)).unwrap();
        }
        let removed = Instant::now();
        let (gone, first_after) =
            limb.after_removal(removed, &self.names(), "newcomer-after", AFTER)?;
        let removal_bound = SCAN * REMOVAL_SCANS;
        std::thread::sleep(AFTER.saturating_sub(m2.at.elapsed()));
        let m3 = limb.sample()?;
        let log = limb.log();
        let evidence = Evidence {
            reports,
            adaptors,
            adaptors_len,
            devices_len,
            log,
        };

        // The neighbour's poll rate.
        let rate = |a: &Sample, b: &Sample| {
            b.polls.saturating_sub(a.polls) as f64 / b.at.duration_since(a.at).as_secs_f64()
        };
        let (r0, r1, r2) = (rate(&m0, &m1), rate(&m1, &m2), rate(&m2, &m3));
        if r0 < 0.5 / interval_s {
            fails.push(format!(
                "the baseline itself is off: the neighbour polled {r0:.1}/s at a {INTERVAL:?} interval"
            ));
        }
        for (what, r) in [("during", r1), ("after", r2)] {
            if r < KEEP * r0 {
                fails.push(format!(
                    "the neighbour polled {r:.1}/s {what} the attack, {:.0}% of its baseline {r0:.1}/s (at least {:.0}% required)",
                    100.0 * r / r0,
                    100.0 * KEEP
                ));
            }
        }

        // What a user piping stdout sees, and /healthz.
        let windows: Vec<Window> = WINDOWS.iter().map(|p| limb.shared.window(*p)).collect();
        let spans = [
            m1.at.duration_since(m0.at),
            m2.at.duration_since(m1.at),
            m3.at.duration_since(m2.at),
        ];
        let line_rate = |i: usize| windows[i].fan_lines as f64 / spans[i].as_secs_f64();
        let (l0, l1, l2) = (line_rate(0), line_rate(1), line_rate(2));
        for (what, l) in [("during", l1), ("after", l2)] {
            if l < KEEP * l0 {
                fails.push(format!(
                    "the neighbour's stdout lines came at {l:.1}/s {what} the attack, {:.0}% of the baseline {l0:.1}/s",
                    100.0 * l / l0.max(f64::MIN_POSITIVE)
                ));
            }
        }
        for (w, p) in windows.iter().zip(WINDOWS) {
            if w.bad_lines > 0 {
                fails.push(format!(
                    "{} stdout line(s) in the {p:?} window are not one JSON object, e.g. \"{}\"",
                    w.bad_lines,
                    w.bad_sample.as_deref().unwrap_or("")
                ));
            }
            if w.healthz_failed > 0 {
                fails.push(format!(
                    "/healthz failed {} of {} times in the {p:?} window (bound {HEALTHZ_TIMEOUT:?}): {}",
                    w.healthz_failed,
                    w.healthz,
                    w.healthz_errors.join("; ")
                ));
            }
        }

        // Memory.
        let peak_sampled = windows[1].rss_peak.max(windows[2].rss_peak);
        let peak = if m3.hwm > m1.hwm {
            peak_sampled.max(m3.hwm)
        } else {
            peak_sampled
        };
        let bound = m1.rss + (RSS_HEADROOM_MIB << 10);
        if peak > bound {
            fails.push(format!(
                "peak RSS {:.0} MiB over the bound of {:.0} MiB (baseline {:.0} MiB + {RSS_HEADROOM_MIB} MiB)",
                mib(peak),
                mib(bound),
                mib(m1.rss)
            ));
        }

        // Removal and the newcomer.
        let removal = match gone {
            Some(t) => {
                if t > removal_bound {
                    fails.push(format!(
                        "the hostile devices left /devices {:.2} s after their files, over {REMOVAL_SCANS} scans ({removal_bound:?})",
                        t.as_secs_f64()
                    ));
                }
                format!("{:.2} s", t.as_secs_f64())
            }
            None => {
                fails.push(format!(
                    "the hostile devices were still listed {AFTER:?} after their files went (bound {removal_bound:?})"
                ));
                format!(">{:.1} s", AFTER.as_secs_f64())
            }
        };
        let first_bound = first_before
            .mul_f64(FIRST_POLL_RATIO)
            .max(INTERVAL * FIRST_POLL_INTERVALS);
        let first = match first_after {
            Some(t) => {
                if t > first_bound {
                    fails.push(format!(
                        "a new link added as the hostile ones went reached its first poll after {:.2} s, over {:.2} s ({FIRST_POLL_RATIO}x the {:.2} s before the attack, or {FIRST_POLL_INTERVALS} intervals)",
                        t.as_secs_f64(),
                        first_bound.as_secs_f64(),
                        first_before.as_secs_f64()
                    ));
                }
                format!("{:.2} s", t.as_secs_f64())
            }
            None => {
                fails.push(format!(
                    "a new link added as the hostile ones went had no poll within {AFTER:?} (bound {:.2} s)",
                    first_bound.as_secs_f64()
                ));
                format!(">{:.1} s", AFTER.as_secs_f64())
            }
        };

        // The case's own claims.
        (self.check)(&evidence, fails);
        limb.alive()?;

        let ticks = clock_ticks_per_second();
        let cores = |a: &Sample, b: &Sample| {
            b.cpu.saturating_sub(a.cpu) as f64 / ticks / b.at.duration_since(a.at).as_secs_f64()
        };
        let healthz: u32 = windows.iter().map(|w| w.healthz).sum();
        let healthz_failed: u32 = windows.iter().map(|w| w.healthz_failed).sum();
        let healthz_max = windows
            .iter()
            .map(|w| w.healthz_max)
            .max()
            .unwrap_or_default();
        Ok(format!(
            "neighbour {r0:.1}/{r1:.1}/{r2:.1} polls/s before/during/after ({:.0}%/{:.0}%); \
             its stdout lines {l0:.1}/{l1:.1}/{l2:.1}/s; \
             RSS {:.0} MiB before, peak {:.0} MiB (bound {:.0}); \
             CPU {:.2}/{:.2}/{:.2} cores; \
             healthz {}/{healthz} ok, slowest {} ms; \
             stdout {:.1} MiB during, longest line {} KiB; \
             removal {removal}; first poll {:.2} s before, {first} after; \
             {}",
            100.0 * r1 / r0,
            100.0 * r2 / r0,
            mib(m1.rss),
            mib(peak),
            mib(bound),
            cores(&m0, &m1),
            cores(&m1, &m2),
            cores(&m2, &m3),
            healthz - healthz_failed,
            healthz_max.as_millis(),
            windows[1].bytes as f64 / (1 << 20) as f64,
            windows[1].longest_line >> 10,
            first_before.as_secs_f64(),
            evidence.note()
        ))
    }
}

/// Writes past the test harness's capture, and into the summary file.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("containment-summary.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

// ---------------------------------------------------------------------------------------
// The forge case's log checks

/// Removes SGR colour sequences (`ESC [ ... m`), which the limb's own log may use.
fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("\x1b[") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find(|c: char| !(c.is_ascii_digit() || c == ';')) {
            Some(j) if after[j..].starts_with('m') => rest = &after[j + 1..],
            _ => {
                out.push_str("\x1b[");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn check_forge(e: &Evidence, fails: &mut Vec<String>) {
    e.polled(fails);
    let log = &e.log;
    let forged: Vec<&str> = log
        .lines()
        .filter(|l| strip_colours(l).starts_with(FORGED_TIMESTAMP))
        .collect();
    if !forged.is_empty() {
        fails.push(format!(
            "{} line(s) of the limb's log start with the guest's forged timestamp, e.g. \"{}\"",
            forged.len(),
            short(forged[0], 160)
        ));
    }
    if log.contains("\x1b[2J") {
        fails.push("the guest's ANSI escape (ESC [2J) reached the limb's log raw".to_owned());
    }
    if log.contains('\r') {
        fails.push("the guest's carriage returns reached the limb's log raw".to_owned());
    }
    // Lines carrying what the guest logged or printed are marked as the guest's.
    let (mut guest_lines, mut unmarked, mut sample) = (0, 0, None);
    for line in log.lines().map(strip_colours) {
        for channel in ["forge log ", "forge print "] {
            if let Some(at) = line.find(channel) {
                guest_lines += 1;
                if !line[..at].contains(" adaptor: ") {
                    unmarked += 1;
                    sample.get_or_insert_with(|| short(&line, 200));
                }
            }
        }
    }
    if guest_lines == 0 {
        fails.push(format!(
            "none of the guest's log or stdout lines reached the limb's log{}",
            e.stale_hint()
        ));
    }
    if unmarked > 0 {
        fails.push(format!(
            "{unmarked} of {guest_lines} lines with the guest's log or stdout text are not marked with the target `adaptor`, e.g. \"{}\"",
            sample.unwrap_or_default()
        ));
    }
}

// ---------------------------------------------------------------------------------------
// The tests, one limb each, one at a time

#[test]
fn spin_poll_x2() {
    Case::new(
        "spin-poll-x2",
        hostiles(2, "spinner", "spin-poll", json!({})),
        |e, f| e.polled(f),
    )
    .run();
}

#[test]
fn spin_poll_x24() {
    Case::new(
        "spin-poll-x24",
        hostiles(24, "spinner", "spin-poll", json!({})),
        |e, f| e.ran(f),
    )
    .run();
}

#[test]
fn clock_loop_x3() {
    Case::new(
        "clock-loop-x3",
        hostiles(3, "ticker", "clock-loop", json!({})),
        |e, f| e.polled(f),
    )
    .run();
}

#[test]
fn random_flood() {
    // Succeeding or being refused are both fine; the bounds are the neighbours'.
    Case::new(
        "random-flood",
        hostiles(1, "entropy", "random-flood", json!({})),
        |e, f| e.ran(f),
    )
    .run();
}

#[test]
fn status_flood() {
    Case::new(
        "status-flood",
        hostiles(1, "chatter", "status-flood", json!({})),
        |e, f| e.polled(f),
    )
    .run();
}

#[test]
fn stall_shutdown_x3() {
    // The newcomer after removal is the point here: three shutdowns that never end
    // must not hold up the limb's reconciliation.
    Case::new(
        "stall-shutdown-x3",
        hostiles(3, "staller", "stall-shutdown", json!({})),
        |e, f| e.polled(f),
    )
    .run();
}

#[test]
fn forge() {
    Case::new(
        "forge",
        hostiles(1, "forger", "forge", json!({})),
        check_forge,
    )
    .run();
}

#[test]
fn huge_describe() {
    let mut case = Case::new(
        "huge-describe",
        hostiles(1, "described", "ok", json!({})),
        |e, f| {
            let refused = e.adaptors.as_array().and_then(|a| {
                a.iter().find(|a| {
                    a["source"]
                        .as_str()
                        .is_some_and(|s| s.ends_with("huge.wasm"))
                })
            });
            match refused {
                None => f.push(format!(
                    "/adaptors does not list the huge-describe component: {}",
                    short(&e.adaptors.to_string(), 300)
                )),
                Some(a) => match a["error"].as_str() {
                    Some(err) if err.contains("4194304") => {}
                    Some(err) => f.push(format!(
                        "the refusal does not name the version's size (4194304 bytes): \"{}\"",
                        short(err, 300)
                    )),
                    None => f.push(format!(
                        "the component with a 4 MiB version was accepted, version {} bytes long",
                        a["version"].as_str().map_or(0, str::len)
                    )),
                },
            }
            for (what, len) in [("/adaptors", e.adaptors_len), ("/devices", e.devices_len)] {
                if len > 64 << 10 {
                    f.push(format!(
                        "{what} is {len} bytes during the attack (bound 64 KiB): the version string got through"
                    ));
                }
            }
        },
    );
    // The hostile adaptor comes only in its huge-describe build, during the attack.
    case.wasm = vec![("dummy.wasm", "adaptor_dummy")];
    case.attack_wasm = vec![("hostile-huge.wasm", "adaptor_hostile_huge_describe")];
    case.run();
}

#[test]
fn loop_poll() {
    Case::new(
        "loop-poll",
        hostiles(1, "looper", "loop-poll", json!({})),
        |e, f| {
            if e.sum("traps") == 0 {
                f.push(format!(
                    "the endless poll was not interrupted: {}",
                    e.note()
                ));
            }
        },
    )
    .run();
}

#[test]
fn grow_memory() {
    Case::new(
        "grow-memory",
        hostiles(3, "hoarder", "grow-memory", json!({})),
        |e, f| {
            if e.sum("traps") == 0 {
                f.push(format!("memory growth was not stopped: {}", e.note()));
            }
        },
    )
    .run();
}

#[test]
fn log_flood() {
    Case::new(
        "log-flood",
        hostiles(1, "logger", "log-flood", json!({})),
        |e, f| e.polled(f),
    )
    .run();
}

#[test]
fn huge_status() {
    Case::new(
        "huge-status",
        hostiles(1, "bloated", "huge-status", json!({})),
        |e, f| {
            let named = e.listed().any(|r| {
                r["lastError"]
                    .as_str()
                    .is_some_and(|m| m.contains("8388608"))
            });
            if !named {
                f.push(format!(
                    "the 8 MiB status was not refused with its size: {}",
                    e.note()
                ));
            }
        },
    )
    .run();
}

#[test]
fn trap_quarantine() {
    let mut case = Case::new("trap", hostiles(1, "crasher", "trap", json!({})), |e, f| {
        if !e.listed().all(|r| r["phase"] == "Quarantined") {
            f.push(format!(
                "the device trapping on every call was not quarantined within the attack: {}",
                e.note()
            ));
        }
    });
    // Short backoff, so the five traps before quarantine fit in the attack window.
    case.args = vec!["--backoff-base", "100ms", "--backoff-max", "1s"];
    case.run();
}

// ---------------------------------------------------------------------------------------
// The checks themselves, on made-up input (no limb, no lock)

fn evidence_with_log(log: &str) -> Evidence {
    Evidence {
        reports: vec![("forger-0".to_owned(), Some(json!({"polls": 3})))],
        adaptors: Value::Null,
        adaptors_len: 0,
        devices_len: 0,
        log: log.to_owned(),
    }
}

#[test]
fn the_forge_check_catches_raw_guest_text_and_passes_escaped_text() {
    let raw = "2026-12-06T20:00:00.000001Z  INFO limb.device{device=default/forger-0}: adaptor: forge log 1\n\
               2026-12-06T00:00:00.000000Z  INFO limb: forged line\x1b[2J\rhidden\r\n\
               2026-12-06T20:00:00.000002Z  WARN limb.device{device=default/forger-0}: limb::status: forge print 1\n";
    let mut fails = Vec::new();
    check_forge(&evidence_with_log(raw), &mut fails);
    assert_eq!(fails.len(), 4, "{fails:#?}");
    let escaped = "\x1b[2m2026-12-06T20:00:00.000001Z\x1b[0m  INFO limb.device{device=default/forger-0}: adaptor: forge log 1\\n2026-12-06T00:00:00.000000Z  INFO limb: forged line\\u{1b}[2J\\r\n";
    let mut fails = Vec::new();
    check_forge(&evidence_with_log(escaped), &mut fails);
    assert!(fails.is_empty(), "{fails:#?}");
}

#[test]
fn stdout_lines_are_judged_as_one_json_object_each() {
    assert_eq!(
        classify(br#"{"namespace":"default","name":"fan","polls":1}"#),
        (true, Some("fan".to_owned()))
    );
    assert_eq!(classify(b"[1,2]"), (false, None));
    assert_eq!(classify(b"{\"name\":\"x\""), (false, None));
    let mut long = br#"{"namespace":"default","name":"chatter","status":""#.to_vec();
    long.extend(std::iter::repeat_n(b'x', PARSE_LINES_UP_TO));
    long.extend_from_slice(b"\"}");
    assert_eq!(classify(&long), (true, Some("chatter".to_owned())));
    let at = long.len() / 2;
    long[at] = b'\r';
    assert!(
        !classify(&long).0,
        "a raw control character breaks the line"
    );
}

#[test]
fn colours_are_stripped_and_other_escapes_kept() {
    assert_eq!(
        strip_colours("\x1b[2mtime\x1b[0m \x1b[32m INFO\x1b[0m"),
        "time  INFO"
    );
    assert_eq!(strip_colours("a\x1b[2Jb"), "a\x1b[2Jb");
}

/// The limb under attack: `OCTOPUS_LIMB_BIN` if set (the shipped static binary), else the
/// one cargo built with this suite.
fn limb_binary() -> PathBuf {
    std::env::var_os("OCTOPUS_LIMB_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_limb")), PathBuf::from)
}
