//! A deliberately misbehaving adaptor for the limb's containment tests.
//!
//! The spec `{"mode": "<mode>"}` picks the misbehaviour (see [`Mode`]); the poll
//! interval comes from `parameters.syncIntervalMs` (default 100 ms, 10 ms for the
//! flooding modes), and sizes and durations from `parameters` (see [`Params`]). Panics,
//! endless loops and unbounded growth are the point here, so the usual lints are relaxed.
#![allow(
    clippy::panic,
    reason = "trapping on purpose is what this adaptor is for"
)]

use std::cell::RefCell;
use std::hint::black_box;

use serde_json::{Value, json};

use exports::octopus::adaptor::driver::{
    AdaptorError, AdaptorInfo, DeviceConfig, DeviceSettings, Guest,
};
use octopus::adaptor::clock;
use octopus::adaptor::events::{self, EventType};
use octopus::adaptor::gpio::{self, Direction};
use octopus::adaptor::log::{self, Level};
use octopus::adaptor::serial::{self, Parity, Settings};
use octopus::adaptor::socket;
use octopus::adaptor::types::{CapabilityError, Model, ModelInfo};

wit_bindgen::generate!({
    path: "../../wit",
    world: "adaptor",
});

/// `wasi:random/random`, called directly (the standard library only asks it for seeds):
/// `random-flood` asks it for many MiB in one call. The limb links the WASI 0.2 version
/// it has; any 0.2.x import is accepted.
mod wasi_random {
    wit_bindgen::generate!({
        inline: "
            package wasi:random@0.2.0;
            interface random {
                get-random-bytes: func(len: u64) -> list<u8>;
                get-random-u64: func() -> u64;
            }
            world random-only {
                import random;
            }
        ",
        world: "random-only",
    });
}

const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";

/// A second version of the same misbehaviour, for hot-swap tests (feature `v2`).
#[cfg(not(feature = "v2"))]
const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(feature = "v2")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+v2");
const KIND: &str = "HostileDevice";
const DEFAULT_POLL_INTERVAL_MS: u64 = 100;
/// The poll interval of the modes that flood the host on every poll.
const FLOOD_POLL_INTERVAL_MS: u64 = 10;
const MIB: usize = 1024 * 1024;
/// Size of the version string `describe` returns with the feature `huge-describe`.
const HUGE_VERSION_BYTES: usize = 4 * MIB;
/// A line of the limb's own log, as `forge` tries to fake it.
const FORGED_LINE: &str = "2026-12-06T00:00:00.000000Z  INFO limb: forged line";

/// What the adaptor does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Spins forever in `configure`.
    LoopConfigure,
    /// Spins forever in `poll`.
    LoopPoll,
    /// Spins forever in `snapshot`.
    LoopSnapshot,
    /// Every poll allocates and touches 16 MiB more, never freed.
    GrowMemory,
    /// `poll` recurses until the stack overflows.
    Recurse,
    /// Every `configure` panics.
    Trap,
    /// `configure` works; every `poll` panics.
    TrapPoll,
    /// `poll` reads `/etc/passwd` and the environment through WASI.
    ReadFile,
    /// `poll` opens a socket, a serial port and a GPIO line that were never granted.
    OpenUngranted,
    /// Behaves.
    Ok,
    /// Every poll logs 10,000 lines of 1 KiB.
    LogFlood,
    /// `poll` returns 8 MiB of valid JSON.
    HugeStatus,
    /// `poll` returns something that is not JSON.
    BadJson,
    /// `poll` prints 2,000 lines on stdout and stderr.
    PrintFlood,
    /// Every poll spins in pure wasm for `parameters.spinMs` (default 400 ms, below the
    /// call deadline): CPU-bound but never past a deadline. Interval 10 ms.
    SpinPoll,
    /// Every poll loops for `parameters.spinMs` on cheap host calls (`clock.now-ms` and
    /// `log.log` at trace level). Interval 10 ms.
    ClockLoop,
    /// Every poll asks `wasi:random` for `parameters.randomMiB` MiB (default 32) in one
    /// call; the status says whether the call returned. Interval 10 ms.
    RandomFlood,
    /// Every poll records `parameters.events` events (default 1,000), pushes a status of
    /// `parameters.statusKiB` KiB (default 1023, just under the 1 MiB default limit)
    /// through `events.report-status` three times and returns it. Interval 10 ms.
    StatusFlood,
    /// Behaves, but `shutdown` spins forever.
    StallShutdown,
    /// Tries to forge the limb's output: log lines, printed lines, events and status
    /// strings carrying newlines, a fake log line, ANSI escapes and carriage returns.
    Forge,
}

impl Mode {
    const ALL: [(&str, Mode); 20] = [
        ("loop-configure", Mode::LoopConfigure),
        ("loop-poll", Mode::LoopPoll),
        ("loop-snapshot", Mode::LoopSnapshot),
        ("grow-memory", Mode::GrowMemory),
        ("recurse", Mode::Recurse),
        ("trap", Mode::Trap),
        ("trap-poll", Mode::TrapPoll),
        ("read-file", Mode::ReadFile),
        ("open-ungranted", Mode::OpenUngranted),
        ("ok", Mode::Ok),
        ("log-flood", Mode::LogFlood),
        ("huge-status", Mode::HugeStatus),
        ("bad-json", Mode::BadJson),
        ("print-flood", Mode::PrintFlood),
        ("spin-poll", Mode::SpinPoll),
        ("clock-loop", Mode::ClockLoop),
        ("random-flood", Mode::RandomFlood),
        ("status-flood", Mode::StatusFlood),
        ("stall-shutdown", Mode::StallShutdown),
        ("forge", Mode::Forge),
    ];

    fn parse(name: &str) -> Option<Mode> {
        Mode::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, mode)| *mode)
    }

    fn default_poll_interval_ms(self) -> u64 {
        match self {
            Mode::SpinPoll | Mode::ClockLoop | Mode::RandomFlood | Mode::StatusFlood => {
                FLOOD_POLL_INTERVAL_MS
            }
            _ => DEFAULT_POLL_INTERVAL_MS,
        }
    }
}

/// Sizes and durations from `parameters`, each with its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Params {
    /// `spinMs`: how long `spin-poll` and `clock-loop` keep each poll busy.
    spin_ms: u64,
    /// `randomMiB`: what `random-flood` asks `wasi:random` for in one call.
    random_mib: u64,
    /// `statusKiB`: the size of `status-flood`'s status.
    status_kib: u64,
    /// `events`: events `status-flood` records per poll.
    events: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            spin_ms: 400,
            random_mib: 32,
            status_kib: 1023,
            events: 1000,
        }
    }
}

struct Config {
    mode: Mode,
    poll_interval_ms: u64,
    params: Params,
}

/// `parameters.<name>` as a non-negative integer, or `default` when absent.
fn parameter(value: &Value, name: &str, default: u64) -> Result<u64, AdaptorError> {
    match value.get("parameters").and_then(|p| p.get(name)) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().ok_or_else(|| {
            AdaptorError::InvalidSpec(format!("parameters.{name} must be a non-negative integer"))
        }),
    }
}

fn parse_spec(spec: &str) -> Result<Config, AdaptorError> {
    let invalid = |msg: String| AdaptorError::InvalidSpec(msg);
    let value: Value =
        serde_json::from_str(spec).map_err(|e| invalid(format!("spec is not valid JSON: {e}")))?;
    let mode = match value.get("mode") {
        None | Some(Value::Null) => return Err(invalid("mode is required".to_owned())),
        Some(Value::String(name)) => Mode::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Mode::ALL.iter().map(|(n, _)| *n).collect();
            invalid(format!(
                "mode: unknown mode {name:?} (expected one of {})",
                known.join(", ")
            ))
        })?,
        Some(_) => return Err(invalid("mode must be a string".to_owned())),
    };
    let poll_interval_ms = match value.pointer("/parameters/syncIntervalMs") {
        None | Some(Value::Null) => mode.default_poll_interval_ms(),
        Some(v) => v.as_u64().filter(|ms| *ms > 0).ok_or_else(|| {
            invalid("parameters.syncIntervalMs must be a positive integer".to_owned())
        })?,
    };
    let defaults = Params::default();
    let params = Params {
        spin_ms: parameter(&value, "spinMs", defaults.spin_ms)?,
        random_mib: parameter(&value, "randomMiB", defaults.random_mib)?,
        status_kib: parameter(&value, "statusKiB", defaults.status_kib)?,
        events: parameter(&value, "events", defaults.events)?,
    };
    Ok(Config {
        mode,
        poll_interval_ms,
        params,
    })
}

#[derive(Default)]
struct Instance {
    mode: Option<Mode>,
    params: Params,
    polls: u64,
    /// What `grow-memory` has taken so far; never freed.
    hoard: Vec<Vec<u8>>,
}

thread_local! {
    static INSTANCE: RefCell<Instance> = RefCell::new(Instance::default());
}

fn with_instance<R>(f: impl FnOnce(&mut Instance) -> R) -> R {
    INSTANCE.with_borrow_mut(f)
}

/// Spins without end; `black_box` keeps the optimiser from removing the loop.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Spins in wasm for `ms` milliseconds of wall time, looking at the clock only every
/// 100,000 iterations; returns the iterations done.
fn spin_for(ms: u64) -> u64 {
    let start = clock::monotonic_ns();
    let budget = ms.saturating_mul(1_000_000);
    let mut n = 0u64;
    loop {
        for _ in 0..100_000 {
            n = black_box(n.wrapping_add(1));
        }
        if clock::monotonic_ns().saturating_sub(start) >= budget {
            return n;
        }
    }
}

/// Calls cheap host functions in a loop for `ms` milliseconds; returns the calls made.
fn clock_loop(ms: u64) -> u64 {
    let start = clock::now_ms();
    let mut calls = 0u64;
    loop {
        let now = clock::now_ms();
        log::log(Level::Trace, "clock-loop tick");
        calls += 2;
        if now.saturating_sub(start) >= ms {
            return calls;
        }
    }
}

/// Asks `wasi:random` for `mib` MiB in one call. Returning at all is the success the
/// status reports; a limb that refuses the size traps the call instead.
fn random_flood(mib: u64, polls: u64) -> Value {
    let len = mib.saturating_mul(MIB as u64);
    let bytes = wasi_random::wasi::random::random::get_random_bytes(len);
    let got = bytes.len();
    let ok = u64::try_from(got).is_ok_and(|got| got == len);
    json!({ "polls": polls, "asked": len, "got": got, "randomOk": ok })
}

/// A JSON object of exactly `size` bytes (at least the bare object).
fn padded_status(polls: u64, size: usize) -> String {
    let mut status = format!("{{\"polls\":{polls},\"padding\":\"");
    let fill = size.saturating_sub(status.len() + "\"}".len());
    status.extend(std::iter::repeat_n('x', fill));
    status.push_str("\"}");
    status
}

/// Records many events, pushes a large status a few times and returns it.
fn status_flood(params: Params, polls: u64) -> String {
    for i in 0..params.events {
        events::record_event(
            EventType::Normal,
            "StatusFlood",
            &format!("event {i} of poll {polls}"),
        );
    }
    let size = usize::try_from(params.status_kib)
        .unwrap_or(usize::MAX)
        .saturating_mul(1024);
    let status = padded_status(polls, size);
    for _ in 0..3 {
        events::report_status(&status);
    }
    status
}

/// Text that, printed raw, would fake a line of the limb's log, clear the screen and
/// overwrite the line it is on. It starts with `forge CHANNEL POLL`, so a test can tell
/// which channel carried it into the limb's output.
fn forged_text(channel: &str, polls: u64) -> String {
    format!("forge {channel} {polls}\n{FORGED_LINE}\x1b[2J\rhidden\r\n{FORGED_LINE} again")
}

/// Tries every channel into the limb's output with control characters: the log, stdout
/// and stderr, events (reason and message) and the status.
fn forge(polls: u64) -> Value {
    log::log(Level::Info, &forged_text("log", polls));
    log::log(Level::Warn, &forged_text("log", polls));
    println!("{}", forged_text("print", polls));
    eprintln!("{}", forged_text("print", polls));
    events::record_event(
        EventType::Warning,
        &format!("Forged\n{FORGED_LINE}"),
        &forged_text("event", polls),
    );
    events::record_event(
        EventType::Normal,
        "Forged\r\x1b[2J",
        &forged_text("event", polls),
    );
    json!({
        "polls": polls,
        "text": forged_text("status", polls),
        "bell": "\u{7}\u{8}\u{0}\u{1b}[31mred",
        "nested": { "line": format!("\n{FORGED_LINE}") },
    })
}

/// Recurses without bound. Not a tail call: the result is used after the call returns,
/// and each frame keeps 1 KiB alive on the stack.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 128]);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let below = recurse(depth + 1);
    black_box(below.wrapping_add(frame[usize::try_from(depth % 128).unwrap_or(0)]))
}

fn capability_error(err: &CapabilityError) -> String {
    match err {
        CapabilityError::NotPermitted(msg) => format!("not-permitted: {msg}"),
        CapabilityError::Timeout => "timeout".to_owned(),
        CapabilityError::LimitReached(msg) => format!("limit-reached: {msg}"),
        CapabilityError::Closed => "closed".to_owned(),
        CapabilityError::Io(msg) => format!("io: {msg}"),
        CapabilityError::InvalidArgument(msg) => format!("invalid-argument: {msg}"),
    }
}

fn outcome<T>(result: Result<T, CapabilityError>) -> String {
    match result {
        Ok(_) => "opened".to_owned(),
        Err(err) => capability_error(&err),
    }
}

fn open_ungranted() -> Value {
    let socket = outcome(socket::connect_tcp("not-granted", 100));
    let serial = outcome(serial::open(
        "/dev/ttyS0",
        Settings {
            baud_rate: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
        },
    ));
    let gpio = outcome(gpio::open("gpiochip0:1", Direction::Input));
    json!({ "socket": socket, "serial": serial, "gpio": gpio })
}

fn read_file() -> Value {
    let file = std::fs::read_to_string("/etc/passwd").unwrap_or_else(|e| format!("error: {e}"));
    let env = std::env::vars().count();
    let home = std::env::var("HOME").unwrap_or_else(|e| format!("error: {e}"));
    json!({ "file": file, "env": env, "home": home })
}

/// A JSON object of exactly 8 MiB.
fn huge_status(polls: u64) -> String {
    padded_status(polls, 8 * MIB)
}

fn configure(config: &DeviceConfig) -> Result<DeviceSettings, AdaptorError> {
    if config.model.api_version != API_VERSION || config.model.kind != KIND {
        return Err(AdaptorError::InvalidSpec(format!(
            "unsupported model {}/{}: this adaptor serves {API_VERSION}/{KIND}",
            config.model.api_version, config.model.kind
        )));
    }
    let Config {
        mode,
        poll_interval_ms,
        params,
    } = parse_spec(&config.spec)?;
    log::log(Level::Info, &format!("hostile mode {mode:?}"));
    match mode {
        Mode::LoopConfigure => spin(),
        Mode::Trap => panic!("hostile: trap on purpose"),
        _ => {}
    }
    with_instance(|instance| {
        instance.mode = Some(mode);
        instance.params = params;
    });
    Ok(DeviceSettings {
        poll_interval_ms: Some(poll_interval_ms),
    })
}

fn poll() -> Result<String, AdaptorError> {
    let (mode, params, polls) = with_instance(|instance| {
        instance.polls += 1;
        (instance.mode, instance.params, instance.polls)
    });
    let mode = mode.ok_or_else(|| AdaptorError::Internal("not configured".to_owned()))?;
    let status = match mode {
        Mode::LoopPoll => spin(),
        Mode::Recurse => json!({ "depth": recurse(0) }),
        Mode::TrapPoll => panic!("hostile: trap on purpose"),
        Mode::GrowMemory => {
            let total = with_instance(|instance| {
                let chunk = black_box(vec![0xa5_u8; 16 * MIB]);
                instance.hoard.push(chunk);
                instance.hoard.len() * 16
            });
            json!({ "polls": polls, "heldMiB": total })
        }
        Mode::ReadFile => read_file(),
        Mode::OpenUngranted => open_ungranted(),
        Mode::LogFlood => {
            let line = "x".repeat(1024);
            for _ in 0..10_000 {
                log::log(Level::Info, &line);
            }
            json!({ "polls": polls })
        }
        Mode::PrintFlood => {
            let line = "y".repeat(512);
            for i in 0..2_000 {
                if i % 2 == 0 {
                    println!("{line}");
                } else {
                    eprintln!("{line}");
                }
            }
            json!({ "polls": polls })
        }
        Mode::HugeStatus => return Ok(huge_status(polls)),
        Mode::BadJson => return Ok("not json {".to_owned()),
        Mode::SpinPoll => json!({ "polls": polls, "spins": spin_for(params.spin_ms) }),
        Mode::ClockLoop => json!({ "polls": polls, "hostCalls": clock_loop(params.spin_ms) }),
        Mode::RandomFlood => random_flood(params.random_mib, polls),
        Mode::StatusFlood => return Ok(status_flood(params, polls)),
        Mode::Forge => forge(polls),
        Mode::Ok | Mode::LoopConfigure | Mode::LoopSnapshot | Mode::Trap | Mode::StallShutdown => {
            json!({ "polls": polls })
        }
    };
    Ok(status.to_string())
}

/// The version `describe` reports: 4 MiB of it with the feature `huge-describe`.
fn version() -> String {
    if cfg!(feature = "huge-describe") {
        let mut v = String::with_capacity(HUGE_VERSION_BYTES);
        v.push_str(VERSION);
        v.push('+');
        v.extend(std::iter::repeat_n('x', HUGE_VERSION_BYTES - v.len()));
        v
    } else {
        VERSION.to_owned()
    }
}

struct Hostile;

impl Guest for Hostile {
    fn describe() -> AdaptorInfo {
        AdaptorInfo {
            name: "adaptors.edge.cattle.io/hostile".to_owned(),
            version: version(),
            models: vec![ModelInfo {
                model: Model {
                    api_version: API_VERSION.to_owned(),
                    kind: KIND.to_owned(),
                },
                resource_fields: Vec::new(),
            }],
        }
    }

    fn configure(config: DeviceConfig) -> Result<DeviceSettings, AdaptorError> {
        configure(&config)
    }

    fn reconfigure(config: DeviceConfig) -> Result<DeviceSettings, AdaptorError> {
        configure(&config)
    }

    fn poll() -> Result<String, AdaptorError> {
        poll()
    }

    fn snapshot() -> Result<Vec<u8>, AdaptorError> {
        let (mode, polls) = with_instance(|instance| (instance.mode, instance.polls));
        if mode == Some(Mode::LoopSnapshot) {
            spin();
        }
        Ok(json!({ "polls": polls }).to_string().into_bytes())
    }

    fn restore(state: Vec<u8>, _from_version: String) -> Result<(), AdaptorError> {
        let polls = serde_json::from_slice::<Value>(&state)
            .ok()
            .and_then(|v| v.get("polls").and_then(Value::as_u64))
            .ok_or_else(|| {
                AdaptorError::IncompatibleState("expected a {\"polls\": N} snapshot".to_owned())
            })?;
        with_instance(|instance| instance.polls = polls);
        Ok(())
    }

    fn shutdown() {
        let mode = with_instance(|instance| instance.mode.take());
        if mode == Some(Mode::StallShutdown) {
            spin();
        }
    }
}

export!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(spec: &str) -> Config {
        match parse_spec(spec) {
            Ok(c) => c,
            Err(e) => panic!("{spec}: {e:?}"),
        }
    }

    #[test]
    fn every_mode_parses_with_its_default_interval() {
        for (name, mode) in Mode::ALL {
            let c = config(&format!(r#"{{"mode": "{name}"}}"#));
            assert_eq!(c.mode, mode);
            assert_eq!(c.params, Params::default());
            let flood = matches!(
                mode,
                Mode::SpinPoll | Mode::ClockLoop | Mode::RandomFlood | Mode::StatusFlood
            );
            assert_eq!(c.poll_interval_ms, if flood { 10 } else { 100 }, "{name}");
        }
    }

    #[test]
    fn parameters_set_sizes_durations_and_the_interval() {
        let c = config(
            r#"{"mode": "spin-poll", "parameters": {"syncIntervalMs": 50, "spinMs": 5,
                "randomMiB": 1, "statusKiB": 2, "events": 3}}"#,
        );
        assert_eq!(c.poll_interval_ms, 50);
        assert_eq!(
            c.params,
            Params {
                spin_ms: 5,
                random_mib: 1,
                status_kib: 2,
                events: 3
            }
        );
        for bad in [
            r#"{"mode": "spin-poll", "parameters": {"spinMs": -1}}"#,
            r#"{"mode": "spin-poll", "parameters": {"randomMiB": "32"}}"#,
            r#"{"mode": "nope"}"#,
            r#"{}"#,
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn padded_status_is_a_json_object_of_the_size_asked() {
        let s = padded_status(7, 1023 * 1024);
        assert_eq!(s.len(), 1023 * 1024);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["polls"], 7);
        assert_eq!(huge_status(1).len(), 8 * MIB);
    }

    #[test]
    fn forged_text_carries_the_control_characters() {
        let t = forged_text("log", 1);
        assert!(t.starts_with("forge log 1\n"));
        assert!(t.contains(&format!("\n{FORGED_LINE}")));
        assert!(t.contains("\x1b[2J") && t.contains('\r'));
    }

    #[test]
    fn version_is_huge_only_with_the_feature() {
        let v = version();
        if cfg!(feature = "huge-describe") {
            assert_eq!(v.len(), HUGE_VERSION_BYTES);
            assert!(v.starts_with(VERSION));
        } else {
            assert_eq!(v, VERSION);
        }
    }
}
