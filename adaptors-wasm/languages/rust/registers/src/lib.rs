//! `adaptors.edge.cattle.io/registers`: reads Modbus TCP holding registers through the
//! limb's socket capability. Made from the counter template: the same [`Device`] shape,
//! plus a connection kept across polls and a Modbus request/reply codec.

use octopus_adaptor_sdk::socket::{self, TcpStream};
use octopus_adaptor_sdk::{
    Context, Device, Error, Info, ModelInfo, ResourceKind, Result, Settings, log, spec,
};
use serde::{Deserialize, Serialize};

const NAME: &str = "adaptors.edge.cattle.io/registers";
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+rust");
const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";
const KIND: &str = "RegisterDevice";
/// The resource field naming the server; the limb grants exactly it, under this name.
const ENDPOINT: &str = "endpoint";
const TIMEOUT_MS: u32 = 1000;
const READ_HOLDING_REGISTERS: u8 = 0x03;

/// The DeviceLink's `template.spec` as written. `unitId` and `address` get their range
/// from their type; the others are checked in [`Target::from_spec`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    endpoint: String,
    #[serde(default = "default_unit")]
    unit_id: u8,
    #[serde(default)]
    address: u16,
    #[serde(default = "default_count")]
    count: i64,
    #[serde(default = "default_interval")]
    sync_interval_ms: i64,
}

fn default_unit() -> u8 {
    1
}

fn default_count() -> i64 {
    1
}

fn default_interval() -> i64 {
    1000
}

/// A checked spec: what to read and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    endpoint: String,
    unit_id: u8,
    address: u16,
    count: u16,
    interval_ms: u64,
}

impl Target {
    fn from_spec(spec: Spec) -> Result<Target> {
        let port = spec
            .endpoint
            .rsplit_once(':')
            .and_then(|(host, port)| (!host.is_empty()).then_some(port))
            .and_then(|port| port.parse::<u16>().ok());
        if port.is_none() {
            return Err(spec::invalid(
                "endpoint",
                format!("must be host:port, got {:?}", spec.endpoint),
            ));
        }
        let count = spec::in_range("count", spec.count, 1..=16)?;
        if i64::from(spec.address) + count > 65_536 {
            return Err(spec::invalid(
                "count",
                format!(
                    "must keep address + count <= 65536, got {} + {count}",
                    spec.address
                ),
            ));
        }
        let interval = spec::at_least("syncIntervalMs", spec.sync_interval_ms, 10)?;
        Ok(Target {
            endpoint: spec.endpoint,
            unit_id: spec.unit_id,
            address: spec.address,
            count: u16::try_from(count).unwrap_or(1),
            interval_ms: interval.unsigned_abs(),
        })
    }
}

/// What `poll` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    registers: Vec<u16>,
    polls: u64,
    language: &'static str,
}

/// What a hot swap carries over: `{"polls": N}` in every language's build.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    polls: u64,
}

/// One configured register reader.
#[derive(Debug)]
pub struct Registers {
    target: Target,
    /// Opened by the first poll, dropped on any I/O error so the next poll reconnects.
    stream: Option<TcpStream>,
    polls: u64,
}

impl Device for Registers {
    type Spec = Spec;
    type Status = Status;
    type State = State;

    fn describe() -> Info {
        Info::new(NAME, VERSION).model(
            ModelInfo::new(API_VERSION, KIND)
                .resource(ENDPOINT, ResourceKind::Tcp)
                .declared(include_str!("../models/registerdevices.json")),
        )
    }

    /// Connects nothing: an unreachable server is a poll error the limb retries.
    fn configure(spec: Spec, _ctx: &Context) -> Result<(Self, Settings)> {
        let target = Target::from_spec(spec)?;
        let settings = Settings::poll_every_ms(target.interval_ms);
        Ok((
            Registers {
                target,
                stream: None,
                polls: 0,
            },
            settings,
        ))
    }

    /// Keeps the connection unless it now leads elsewhere (endpoint or unit changed).
    fn reconfigure(&mut self, spec: Spec, _ctx: &Context) -> Result<Settings> {
        let target = Target::from_spec(spec)?;
        if target.endpoint != self.target.endpoint || target.unit_id != self.target.unit_id {
            self.stream = None;
        }
        self.target = target;
        Ok(Settings::poll_every_ms(self.target.interval_ms))
    }

    fn poll(&mut self) -> Result<Status> {
        let transaction = u16::try_from(self.polls.wrapping_add(1) % 65_536).unwrap_or(0);
        let request = read_request(transaction, &self.target);
        let stream = match self.stream.take() {
            Some(stream) => stream,
            None => {
                let stream = socket::connect_tcp(ENDPOINT, TIMEOUT_MS)
                    .map_err(|e| Error::from(e).context("connect endpoint"))?;
                log::info(&format!("connected to {}", self.target.endpoint));
                stream
            }
        };
        // The stream goes back only after a complete, well-formed exchange: anything
        // else may leave stray bytes that would shift every later reply.
        let reply = exchange(&stream, &request)?;
        match parse_reply(&reply, transaction, &self.target) {
            Ok(registers) => {
                self.stream = Some(stream);
                self.polls += 1;
                Ok(Status {
                    registers,
                    polls: self.polls,
                    language: "rust",
                })
            }
            Err(BadReply::Exception(code)) => {
                self.stream = Some(stream);
                Err(BadReply::Exception(code).into())
            }
            Err(malformed) => Err(malformed.into()),
        }
    }

    fn snapshot(&self) -> State {
        State { polls: self.polls }
    }

    fn restore(&mut self, state: State) {
        self.polls = state.polls;
    }

    fn shutdown(&mut self) {
        self.stream = None;
    }
}

octopus_adaptor_sdk::export_adaptor!(Registers);

/// The 12-byte Modbus TCP "read holding registers" request: MBAP header (transaction,
/// protocol 0, length 6, unit) then function, address and count, all big-endian.
fn read_request(transaction: u16, target: &Target) -> [u8; 12] {
    let [t0, t1] = transaction.to_be_bytes();
    let [a0, a1] = target.address.to_be_bytes();
    let [c0, c1] = target.count.to_be_bytes();
    [
        t0,
        t1,
        0,
        0,
        0,
        6,
        target.unit_id,
        READ_HOLDING_REGISTERS,
        a0,
        a1,
        c0,
        c1,
    ]
}

/// Sends the request and reads one reply, framed by the MBAP header's length field: a
/// normal reply is `9 + 2 * count` bytes, an exception 9, and a reply with a wrong byte
/// count is read whole and refused as `protocol` instead of waiting for the timeout.
fn exchange(stream: &TcpStream, request: &[u8]) -> Result<Vec<u8>> {
    stream
        .send(request, TIMEOUT_MS)
        .map_err(|e| Error::from(e).context("send"))?;
    stream
        .receive_frame(TIMEOUT_MS, frame_len)
        .map_err(|e| Error::from(e).context("receive"))
}

/// How long the reply whose first bytes are `buf` is: the 6 bytes up to the length
/// field, then 6 + length (capped at a Modbus PDU's 254 bytes + unit id).
fn frame_len(buf: &[u8]) -> usize {
    match buf {
        [_, _, _, _, l0, l1, ..] => 6 + usize::from(u16::from_be_bytes([*l0, *l1])).min(254),
        _ => 6,
    }
}

/// Why a reply was not the registers.
#[derive(Debug, PartialEq, Eq)]
enum BadReply {
    /// A well-formed Modbus exception; the connection stays usable.
    Exception(u8),
    /// Anything else; the connection is dropped.
    Malformed(String),
}

impl From<BadReply> for Error {
    fn from(bad: BadReply) -> Self {
        match bad {
            BadReply::Exception(code) => {
                Error::Protocol(format!("exception {code} ({})", exception_name(code)))
            }
            BadReply::Malformed(why) => Error::Protocol(why),
        }
    }
}

fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        10 => "gateway path unavailable",
        11 => "gateway target failed to respond",
        _ => "unknown",
    }
}

/// Checks a reply against its request and decodes the registers.
fn parse_reply(
    reply: &[u8],
    transaction: u16,
    target: &Target,
) -> std::result::Result<Vec<u16>, BadReply> {
    let malformed = |why: String| Err(BadReply::Malformed(why));
    let [t0, t1, p0, p1, l0, l1, unit, function, body @ ..] = reply else {
        return malformed(format!("reply of {} bytes is too short", reply.len()));
    };
    let got = u16::from_be_bytes([*t0, *t1]);
    if got != transaction {
        return malformed(format!("transaction id {got}, expected {transaction}"));
    }
    if [*p0, *p1] != [0, 0] {
        return malformed("protocol id is not 0".to_owned());
    }
    let length = usize::from(u16::from_be_bytes([*l0, *l1]));
    if length != reply.len() - 6 {
        return malformed(format!(
            "MBAP length {length}, but {} bytes followed",
            reply.len() - 6
        ));
    }
    if *unit != target.unit_id {
        return malformed(format!("unit id {unit}, expected {}", target.unit_id));
    }
    if *function == READ_HOLDING_REGISTERS | 0x80 {
        return Err(BadReply::Exception(body.first().copied().unwrap_or(0)));
    }
    if *function != READ_HOLDING_REGISTERS {
        return malformed(format!("function {function:#04x}, expected 0x03"));
    }
    let expected = 2 * usize::from(target.count);
    let [byte_count, data @ ..] = body else {
        return malformed("no byte count".to_owned());
    };
    if usize::from(*byte_count) != expected || data.len() != expected {
        return malformed(format!(
            "byte count {byte_count} with {} data bytes, expected {expected}",
            data.len()
        ));
    }
    Ok(data
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => u16::from_be_bytes([*hi, *lo]),
            _ => 0,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use octopus_adaptor_sdk::{DeviceConfig, Instance};

    fn target(spec: &str) -> Result<Target> {
        Target::from_spec(spec::parse(spec)?)
    }

    #[test]
    fn specs() {
        assert_eq!(
            target(r#"{"endpoint": "127.0.0.1:5020", "count": 2, "x": 1}"#),
            Ok(Target {
                endpoint: "127.0.0.1:5020".into(),
                unit_id: 1,
                address: 0,
                count: 2,
                interval_ms: 1000,
            })
        );
        for (spec, message) in [
            (r#"{"count": 2}"#, "endpoint is required"),
            (
                r#"{"endpoint": "nohost"}"#,
                r#"endpoint must be host:port, got "nohost""#,
            ),
            (
                r#"{"endpoint": "h:1", "count": 40}"#,
                "count must be 1..=16, got 40",
            ),
            (
                r#"{"endpoint": "h:1", "address": 65530, "count": 10}"#,
                "count must keep address + count <= 65536, got 65530 + 10",
            ),
            (
                r#"{"endpoint": "h:1", "unitId": 256}"#,
                "unitId must be an integer 0..=255, got 256",
            ),
            (
                r#"{"endpoint": "h:1", "syncIntervalMs": 1}"#,
                "syncIntervalMs must be >= 10, got 1",
            ),
        ] {
            assert_eq!(
                target(spec),
                Err(Error::InvalidSpec(message.into())),
                "{spec}"
            );
        }
    }

    fn t(count: u16) -> Target {
        Target {
            endpoint: "h:1".into(),
            unit_id: 1,
            address: 0,
            count,
            interval_ms: 1000,
        }
    }

    #[test]
    fn request_bytes() {
        let mut target = t(2);
        target.address = 0x0102;
        assert_eq!(
            read_request(0xABCD, &target),
            [0xAB, 0xCD, 0, 0, 0, 6, 1, 3, 1, 2, 0, 2]
        );
    }

    #[test]
    fn frames_follow_the_length_field() {
        assert_eq!(frame_len(&[0, 7, 0]), 6);
        assert_eq!(frame_len(&[0, 7, 0, 0, 0, 7]), 13);
        assert_eq!(frame_len(&[0, 7, 0, 0, 0, 3, 1, 0x83]), 9);
        assert_eq!(frame_len(&[0, 7, 0, 0, 0xFF, 0xFF]), 260);
    }

    #[test]
    fn replies() {
        let ok = [0, 7, 0, 0, 0, 7, 1, 3, 4, 0xCF, 0xC7, 0xD4, 0x31];
        assert_eq!(parse_reply(&ok, 7, &t(2)), Ok(vec![53191, 54321]));
        assert!(matches!(
            parse_reply(&ok, 8, &t(2)),
            Err(BadReply::Malformed(m)) if m == "transaction id 7, expected 8"
        ));
        let exception = [0, 7, 0, 0, 0, 3, 1, 0x83, 2];
        assert_eq!(
            parse_reply(&exception, 7, &t(2)),
            Err(BadReply::Exception(2))
        );
        assert_eq!(
            Error::from(BadReply::Exception(2)),
            Error::Protocol("exception 2 (illegal data address)".into())
        );
        let short_count = [0, 7, 0, 0, 0, 5, 1, 3, 2, 0, 1];
        assert!(matches!(
            parse_reply(&short_count, 7, &t(2)),
            Err(BadReply::Malformed(m)) if m.starts_with("byte count 2")
        ));
        assert!(matches!(
            parse_reply(&[0, 7], 7, &t(2)),
            Err(BadReply::Malformed(_))
        ));
    }

    #[test]
    fn polls_survive_a_swap() {
        let mut instance = Instance::<Registers>::new();
        instance
            .restore(br#"{"polls": 41}"#, "0.1.0+python")
            .unwrap();
        instance
            .configure(DeviceConfig::for_tests::<Registers>(
                r#"{"endpoint": "127.0.0.1:5020"}"#,
            ))
            .unwrap();
        assert_eq!(instance.snapshot().unwrap(), br#"{"polls":41}"#);
        // Natively there is no limb, so the connect is refused, not attempted.
        assert!(matches!(instance.poll(), Err(Error::NotPermitted(_))));
        for bad in [&br#"{"polls": -1}"#[..], br#"{"count": 1}"#, b"7"] {
            assert!(matches!(
                instance.restore(bad, "x"),
                Err(Error::IncompatibleState(_))
            ));
        }
    }
}
