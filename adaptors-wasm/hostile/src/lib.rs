//! A deliberately misbehaving adaptor for the limb's containment tests.
//!
//! The spec `{"mode": "<mode>"}` picks the misbehaviour (see [`Mode`]); the poll
//! interval comes from `parameters.syncIntervalMs` (default 100 ms). Panics, endless
//! loops and unbounded growth are the point here, so the usual lints are relaxed.
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
use octopus::adaptor::gpio::{self, Direction};
use octopus::adaptor::log::{self, Level};
use octopus::adaptor::serial::{self, Parity, Settings};
use octopus::adaptor::socket;
use octopus::adaptor::types::{CapabilityError, Model, ModelInfo};

wit_bindgen::generate!({
    path: "../../wit",
    world: "adaptor",
});

const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";

/// A second version of the same misbehaviour, for hot-swap tests (feature `v2`).
#[cfg(not(feature = "v2"))]
const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(feature = "v2")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+v2");
const KIND: &str = "HostileDevice";
const DEFAULT_POLL_INTERVAL_MS: u64 = 100;
const MIB: usize = 1024 * 1024;

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
}

impl Mode {
    const ALL: [(&str, Mode); 14] = [
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
    ];

    fn parse(name: &str) -> Option<Mode> {
        Mode::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, mode)| *mode)
    }
}

struct Config {
    mode: Mode,
    poll_interval_ms: u64,
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
        None | Some(Value::Null) => DEFAULT_POLL_INTERVAL_MS,
        Some(v) => v.as_u64().filter(|ms| *ms > 0).ok_or_else(|| {
            invalid("parameters.syncIntervalMs must be a positive integer".to_owned())
        })?,
    };
    Ok(Config {
        mode,
        poll_interval_ms,
    })
}

#[derive(Default)]
struct Instance {
    mode: Option<Mode>,
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
    const SIZE: usize = 8 * MIB;
    let mut status = format!("{{\"polls\":{polls},\"padding\":\"");
    let fill = SIZE - status.len() - "\"}".len();
    status.extend(std::iter::repeat_n('x', fill));
    status.push_str("\"}");
    status
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
    } = parse_spec(&config.spec)?;
    log::log(Level::Info, &format!("hostile mode {mode:?}"));
    match mode {
        Mode::LoopConfigure => spin(),
        Mode::Trap => panic!("hostile: trap on purpose"),
        _ => {}
    }
    with_instance(|instance| instance.mode = Some(mode));
    Ok(DeviceSettings {
        poll_interval_ms: Some(poll_interval_ms),
    })
}

fn poll() -> Result<String, AdaptorError> {
    let (mode, polls) = with_instance(|instance| {
        instance.polls += 1;
        (instance.mode, instance.polls)
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
        Mode::Ok | Mode::LoopConfigure | Mode::LoopSnapshot | Mode::Trap => {
            json!({ "polls": polls })
        }
    };
    Ok(status.to_string())
}

struct Hostile;

impl Guest for Hostile {
    fn describe() -> AdaptorInfo {
        AdaptorInfo {
            name: "adaptors.edge.cattle.io/hostile".to_owned(),
            version: VERSION.to_owned(),
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
        with_instance(|instance| instance.mode = None);
    }
}

export!(Hostile);
