//! An adaptor that exercises every capability, so the limb's tests can prove that
//! grants work end to end.
//!
//! `ProbeDevice` opens nothing in `configure`. Every `poll` does one exchange per
//! section present in the spec (TCP, UDP, serial, GPIO, an explicit grant) and reports
//! each outcome in the status, with capability errors rendered as
//! `not-permitted: ...`, `timeout`, `limit-reached: ...`, `closed`, `io: ...` or
//! `invalid-argument: ...`. `openMany` opens TCP streams on the first poll and holds
//! them until shutdown (or until `openMany` changes), to exercise the handle cap.
//! `gpioEdges` requests `gpio.input` with edge detection on the first poll, holds it,
//! and reports the edges each poll collects (`gpio.request`, `line.wait-edges`), plus
//! the refusal of settings that do not fit (edges on an output).

mod spec;

use std::cell::RefCell;

use serde_json::{Value, json};

use exports::octopus::adaptor::driver::{
    AdaptorError, AdaptorInfo, DeviceConfig, DeviceSettings, Guest,
};
use octopus::adaptor::clock;
use octopus::adaptor::gpio::{self, Bias, Direction, Drive, Edges, LineSettings};
use octopus::adaptor::log::{self, Level};
use octopus::adaptor::serial::{self, Parity, Settings};
use octopus::adaptor::socket::{self, TcpStream};
use octopus::adaptor::types::{CapabilityError, Model, ModelInfo, ResourceField, ResourceKind};

use spec::{Exchange, SerialSpec, Spec};

wit_bindgen::generate!({
    path: "../../wit",
    world: "adaptor",
});

const NAME: &str = "adaptors.edge.cattle.io/probe";
const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";
const KIND: &str = "ProbeDevice";

/// Grant names: the host turns each resource field into a grant named by its path.
const TCP_GRANT: &str = "tcp.endpoint";
const UDP_GRANT: &str = "udp.endpoint";
const SERIAL_GRANT: &str = "serial.port";
const GPIO_OUTPUT_GRANT: &str = "gpio.output";
const GPIO_INPUT_GRANT: &str = "gpio.input";

/// Timeout of connects, sends and receives on sockets, in milliseconds.
const IO_TIMEOUT_MS: u32 = 1000;
/// Largest reply read from a socket.
const MAX_REPLY: u32 = 1024;
/// Total time a serial exchange waits for its reply line.
const SERIAL_REPLY_MS: u64 = 1000;
/// Timeout of each serial read within that time.
const SERIAL_READ_MS: u32 = 200;
/// Largest single serial read.
const SERIAL_READ_MAX: u32 = 256;

/// Renders a capability error the way the host's tests match it.
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

/// `{"ok": true, "reply": ...}` or `{"ok": false, "error": ...}`.
fn reply_outcome(result: Result<String, CapabilityError>) -> Value {
    match result {
        Ok(reply) => json!({ "ok": true, "reply": reply }),
        Err(err) => json!({ "ok": false, "error": capability_error(&err) }),
    }
}

/// Connects to a TCP grant, sends `message` and reads one reply; the stream is dropped
/// (closed) on return.
fn tcp_exchange(grant: &str, message: &str) -> Result<String, CapabilityError> {
    let stream = socket::connect_tcp(grant, IO_TIMEOUT_MS)?;
    stream.send(message.as_bytes(), IO_TIMEOUT_MS)?;
    let reply = stream.receive(MAX_REPLY, IO_TIMEOUT_MS)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

fn udp_exchange(exchange: &Exchange) -> Result<String, CapabilityError> {
    let socket = socket::connect_udp(UDP_GRANT)?;
    socket.send(exchange.message.as_bytes(), IO_TIMEOUT_MS)?;
    let reply = socket.receive(MAX_REPLY, IO_TIMEOUT_MS)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Writes `message` and a newline, then reads until a newline arrives or
/// [`SERIAL_REPLY_MS`] have passed.
fn serial_exchange(spec: &SerialSpec) -> Result<String, CapabilityError> {
    let port = serial::open(
        SERIAL_GRANT,
        Settings {
            baud_rate: spec.baud_rate,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
        },
    )?;
    let mut line = spec.message.clone().into_bytes();
    line.push(b'\n');
    port.write(&line, IO_TIMEOUT_MS)?;

    let start = clock::monotonic_ns();
    let mut reply = Vec::new();
    loop {
        let elapsed_ms = clock::monotonic_ns().saturating_sub(start) / 1_000_000;
        if elapsed_ms >= SERIAL_REPLY_MS {
            if reply.is_empty() {
                return Err(CapabilityError::Timeout);
            }
            break;
        }
        let left = u32::try_from(SERIAL_REPLY_MS - elapsed_ms).unwrap_or(SERIAL_READ_MS);
        match port.read(SERIAL_READ_MAX, SERIAL_READ_MS.min(left).max(1)) {
            Ok(bytes) => {
                reply.extend_from_slice(&bytes);
                if bytes.contains(&b'\n') {
                    break;
                }
            }
            Err(CapabilityError::Timeout) if !reply.is_empty() => break,
            Err(CapabilityError::Timeout) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(String::from_utf8_lossy(&reply).trim().to_owned())
}

/// Drives the output line to `level`, then reads the input line (with the output still
/// held, so a simulated chip can wire one to the other).
fn gpio_exchange(level: bool) -> Result<(bool, bool), CapabilityError> {
    let output = gpio::open(GPIO_OUTPUT_GRANT, Direction::Output)?;
    output.set(level)?;
    let input = gpio::open(GPIO_INPUT_GRANT, Direction::Input)?;
    let read = input.get()?;
    drop(input);
    drop(output);
    Ok((level, read))
}

/// What `openMany` achieved on the first poll.
#[derive(Debug, Clone)]
struct OpenMany {
    /// The `openMany` count it was done for.
    wanted: u32,
    opened: usize,
    error: Option<String>,
}

impl OpenMany {
    fn to_json(&self) -> Value {
        json!({ "opened": self.opened, "error": self.error })
    }
}

/// Opens up to `wanted` TCP streams on [`TCP_GRANT`], stopping at the first error.
fn open_many(wanted: u32, held: &mut Vec<TcpStream>) -> OpenMany {
    let mut error = None;
    for _ in 0..wanted {
        match socket::connect_tcp(TCP_GRANT, IO_TIMEOUT_MS) {
            Ok(stream) => held.push(stream),
            Err(err) => {
                error = Some(capability_error(&err));
                break;
            }
        }
    }
    OpenMany {
        wanted,
        opened: held.len(),
        error,
    }
}

/// Edges `gpioEdges` has seen so far.
#[derive(Default)]
struct EdgeLog {
    line: Option<gpio::Line>,
    rising: u64,
    falling: u64,
    last_seqno: u32,
    last_timestamp_ns: u64,
    /// Whether every event came later than (or with) the one before it.
    in_order: bool,
    /// What `gpio.request` said to an output asking for edge detection.
    refused: String,
}

fn input_with_edges() -> LineSettings {
    LineSettings {
        direction: Direction::Input,
        active_low: false,
        bias: Bias::AsIs,
        drive: Drive::PushPull,
        debounce_us: 0,
        edges: Edges::Both,
    }
}

impl EdgeLog {
    /// Requests the line on first use, then takes what edges have come (no waiting).
    fn collect(&mut self) -> Value {
        if self.line.is_none() {
            self.refused = match gpio::request(
                GPIO_INPUT_GRANT,
                LineSettings {
                    direction: Direction::Output,
                    ..input_with_edges()
                },
            ) {
                Ok(_) => "accepted".to_owned(),
                Err(err) => capability_error(&err),
            };
            match gpio::request(GPIO_INPUT_GRANT, input_with_edges()) {
                Ok(line) => {
                    self.line = Some(line);
                    self.in_order = true;
                }
                Err(err) => return json!({ "ok": false, "error": capability_error(&err) }),
            }
        }
        let Some(line) = &self.line else {
            return json!({ "ok": false, "error": "no line" });
        };
        match line.wait_edges(64, 1) {
            Ok(events) => {
                for e in events {
                    if e.rising {
                        self.rising += 1;
                    } else {
                        self.falling += 1;
                    }
                    self.in_order &= e.timestamp_ns >= self.last_timestamp_ns
                        && e.seqno == self.last_seqno.wrapping_add(1);
                    self.last_seqno = e.seqno;
                    self.last_timestamp_ns = e.timestamp_ns;
                }
                json!({
                    "ok": true,
                    "rising": self.rising,
                    "falling": self.falling,
                    "lastSeqno": self.last_seqno,
                    "inOrder": self.in_order,
                    "refused": self.refused,
                })
            }
            Err(err) => json!({ "ok": false, "error": capability_error(&err) }),
        }
    }
}

/// Everything one instance (one device) holds.
#[derive(Default)]
struct Instance {
    spec: Option<Spec>,
    polls: u64,
    /// Streams `openMany` opened; they stay open across polls.
    held: Vec<TcpStream>,
    open_many: Option<OpenMany>,
    edges: EdgeLog,
}

impl Instance {
    fn apply(&mut self, config: &DeviceConfig, verb: &str) -> Result<DeviceSettings, AdaptorError> {
        if config.model.api_version != API_VERSION || config.model.kind != KIND {
            return Err(AdaptorError::InvalidSpec(format!(
                "unsupported model {}/{}: this adaptor serves {API_VERSION}/{KIND}",
                config.model.api_version, config.model.kind
            )));
        }
        let spec = spec::parse(&config.spec).map_err(|e| AdaptorError::InvalidSpec(e.0))?;
        let settings = DeviceSettings {
            poll_interval_ms: Some(spec.poll_interval_ms),
        };
        // A changed (or removed) `openMany` releases the held streams; the next poll
        // opens them again.
        if self.open_many.as_ref().map(|o| o.wanted) != spec.open_many {
            self.release();
        }
        log::log(
            Level::Info,
            &format!(
                "{verb} {}/{}: polling every {} ms",
                config.device.namespace, config.device.name, spec.poll_interval_ms
            ),
        );
        self.spec = Some(spec);
        Ok(settings)
    }

    fn release(&mut self) {
        self.held.clear();
        self.open_many = None;
    }

    fn poll(&mut self) -> Result<String, AdaptorError> {
        let spec = self
            .spec
            .as_ref()
            .ok_or_else(|| AdaptorError::Internal("the device is not configured yet".to_owned()))?;
        self.polls += 1;
        let mut status = serde_json::Map::new();
        status.insert("polls".to_owned(), json!(self.polls));
        if let Some(tcp) = &spec.tcp {
            status.insert(
                "tcp".to_owned(),
                reply_outcome(tcp_exchange(TCP_GRANT, &tcp.message)),
            );
        }
        if let Some(udp) = &spec.udp {
            status.insert("udp".to_owned(), reply_outcome(udp_exchange(udp)));
        }
        if let Some(serial) = &spec.serial {
            status.insert("serial".to_owned(), reply_outcome(serial_exchange(serial)));
        }
        if spec.gpio {
            let outcome = match gpio_exchange(self.polls % 2 == 1) {
                Ok((wrote, read)) => json!({ "ok": true, "wrote": wrote, "read": read }),
                Err(err) => json!({ "ok": false, "error": capability_error(&err) }),
            };
            status.insert("gpio".to_owned(), outcome);
        }
        if spec.gpio_edges {
            status.insert("gpioEdges".to_owned(), self.edges.collect());
        }
        if let Some(grant) = &spec.grant {
            status.insert(
                "grant".to_owned(),
                reply_outcome(tcp_exchange(grant, spec::DEFAULT_MESSAGE)),
            );
        }
        if let Some(wanted) = spec.open_many {
            let held = &mut self.held;
            let result = self
                .open_many
                .get_or_insert_with(|| open_many(wanted, held));
            status.insert("openMany".to_owned(), result.to_json());
        }
        Ok(Value::Object(status).to_string())
    }
}

thread_local! {
    static INSTANCE: RefCell<Instance> = RefCell::new(Instance::default());
}

fn with_instance<R>(f: impl FnOnce(&mut Instance) -> R) -> R {
    INSTANCE.with_borrow_mut(f)
}

fn resource_field(path: &str, kind: ResourceKind) -> ResourceField {
    ResourceField {
        path: path.to_owned(),
        kind,
    }
}

struct Probe;

impl Guest for Probe {
    fn describe() -> AdaptorInfo {
        AdaptorInfo {
            name: NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            models: vec![ModelInfo {
                model: Model {
                    api_version: API_VERSION.to_owned(),
                    kind: KIND.to_owned(),
                },
                resource_fields: vec![
                    resource_field(TCP_GRANT, ResourceKind::Tcp),
                    resource_field(UDP_GRANT, ResourceKind::Udp),
                    resource_field(SERIAL_GRANT, ResourceKind::Serial),
                    resource_field(GPIO_OUTPUT_GRANT, ResourceKind::Gpio),
                    resource_field(GPIO_INPUT_GRANT, ResourceKind::Gpio),
                ],
            }],
        }
    }

    fn configure(config: DeviceConfig) -> Result<DeviceSettings, AdaptorError> {
        with_instance(|instance| instance.apply(&config, "configured"))
    }

    fn reconfigure(config: DeviceConfig) -> Result<DeviceSettings, AdaptorError> {
        with_instance(|instance| instance.apply(&config, "reconfigured"))
    }

    fn poll() -> Result<String, AdaptorError> {
        with_instance(Instance::poll)
    }

    fn snapshot() -> Result<Vec<u8>, AdaptorError> {
        let polls = with_instance(|instance| instance.polls);
        Ok(json!({ "polls": polls }).to_string().into_bytes())
    }

    fn restore(state: Vec<u8>, from_version: String) -> Result<(), AdaptorError> {
        let polls = serde_json::from_slice::<Value>(&state)
            .ok()
            .and_then(|v| v.get("polls").and_then(Value::as_u64))
            .ok_or_else(|| {
                AdaptorError::IncompatibleState("expected a {\"polls\": N} snapshot".to_owned())
            })?;
        log::log(
            Level::Info,
            &format!("restored state of version {from_version} after {polls} polls"),
        );
        with_instance(|instance| instance.polls = polls);
        Ok(())
    }

    fn shutdown() {
        with_instance(|instance| {
            instance.release();
            instance.spec = None;
        });
    }
}

export!(Probe);
