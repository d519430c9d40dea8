//! The two ways to reach a slave through the host's capabilities: Modbus TCP over a
//! granted socket, and Modbus RTU as single `transact` turns on a granted serial bus
//! that other devices may share.
//!
//! Connections open lazily and stay open across polls; after an I/O fault the
//! connection is dropped and the next request opens a new one.

use crate::codec::{self, MBAP_HEADER_LEN, Reply, ReplyError, Request};
use crate::engine::{Bus, BusError};
use crate::octopus::adaptor::clock;
use crate::octopus::adaptor::serial::{self, Exchange, Port, Settings};
use crate::octopus::adaptor::socket::{self, TcpStream};
use crate::octopus::adaptor::types::CapabilityError;
use crate::spec::{Line, Link, Parity, Spec};

/// Grant of a TCP slave: the spec field that names its endpoint.
pub const TCP_GRANT: &str = "protocol.tcp.endpoint";
/// Grant of an RTU slave's serial port.
pub const RTU_GRANT: &str = "protocol.rtu.endpoint";

enum Connection {
    Tcp(TcpStream),
    Rtu(Port),
}

/// The link to one slave.
pub struct Transport {
    link: Link,
    unit: u8,
    timeout_ms: u32,
    connection: Option<Connection>,
    /// MBAP transaction ID of the last TCP request.
    transaction: u16,
}

/// How one TCP attempt failed, which decides whether the connection survives.
enum Fault {
    /// Opening the connection failed.
    Open(BusError),
    /// The stream failed; the connection is unusable.
    Stream(CapabilityError),
    /// A frame that cannot be a Modbus TCP header: the stream is out of step.
    Desync(String),
    /// A well-framed reply that is an exception or not the answer.
    Reply(ReplyError),
}

/// A point in monotonic time by which a request must be answered.
struct Deadline(u64);

impl Deadline {
    fn after(ms: u32) -> Deadline {
        Deadline(clock::monotonic_ns().saturating_add(u64::from(ms) * 1_000_000))
    }

    /// Milliseconds left (at least 1), or `None` once the deadline passed.
    fn remaining_ms(&self) -> Option<u32> {
        let now = clock::monotonic_ns();
        (now < self.0)
            .then(|| u32::try_from((self.0 - now).div_ceil(1_000_000)).unwrap_or(u32::MAX))
    }
}

impl Transport {
    pub fn new(spec: &Spec) -> Transport {
        Transport {
            link: spec.link.clone(),
            unit: spec.unit,
            timeout_ms: spec.timeout_ms,
            connection: None,
            transaction: 0,
        }
    }

    /// Applies a changed spec, keeping the connection when the link is the same (a
    /// new setpoint or timeout must not drop it).
    pub fn update(&mut self, spec: &Spec) {
        if self.link != spec.link {
            self.close();
            self.link = spec.link.clone();
        }
        self.unit = spec.unit;
        self.timeout_ms = spec.timeout_ms;
    }

    pub fn close(&mut self) {
        self.connection = None;
    }

    /// Opens the connection unless it is open already.
    pub fn connect(&mut self) -> Result<(), BusError> {
        if self.connection.is_none() {
            self.connection = Some(self.open()?);
        }
        Ok(())
    }

    fn open(&self) -> Result<Connection, BusError> {
        match &self.link {
            Link::Tcp { endpoint } => socket::connect_tcp(TCP_GRANT, self.timeout_ms)
                .map(Connection::Tcp)
                .map_err(|e| open_error(e, &format!("connect to {endpoint}"), self.timeout_ms)),
            Link::Rtu { endpoint, line } => serial::open(RTU_GRANT, settings(*line))
                .map(Connection::Rtu)
                .map_err(|e| open_error(e, &format!("open {endpoint}"), self.timeout_ms)),
        }
    }

    fn tcp_request(&mut self, request: &Request) -> Result<Reply, BusError> {
        let reused = self.connection.is_some();
        let result = match self.tcp_once(request) {
            // Servers drop idle connections; one that died between polls is reopened
            // and the (idempotent) request sent again before the device counts as lost.
            Err(Fault::Stream(CapabilityError::Closed | CapabilityError::Io(_))) if reused => {
                self.close();
                self.tcp_once(request)
            }
            other => other,
        };
        result.map_err(|fault| self.fault(fault))
    }

    fn tcp_once(&mut self, request: &Request) -> Result<Reply, Fault> {
        self.connect().map_err(Fault::Open)?;
        self.transaction = self.transaction.wrapping_add(1);
        let transaction = self.transaction;
        let Some(Connection::Tcp(stream)) = &self.connection else {
            return Err(Fault::Desync("no TCP connection".to_owned()));
        };
        let deadline = Deadline::after(self.timeout_ms);
        let frame = codec::mbap_frame(transaction, self.unit, &request.encode());
        let sent = stream
            .send(&frame, self.timeout_ms)
            .map_err(Fault::Stream)?;
        if usize::try_from(sent).ok() != Some(frame.len()) {
            return Err(Fault::Stream(CapabilityError::Io(format!(
                "sent {sent} of {} bytes",
                frame.len()
            ))));
        }
        loop {
            let header = receive_exact(stream, MBAP_HEADER_LEN, &deadline)?;
            let header: [u8; MBAP_HEADER_LEN] = header
                .try_into()
                .map_err(|_| Fault::Desync("short MBAP header".to_owned()))?;
            let header = codec::mbap_header(&header).map_err(|e| Fault::Desync(e.to_string()))?;
            let pdu = receive_exact(stream, header.pdu_len, &deadline)?;
            // A late reply to an earlier, timed-out request: skip it.
            if header.transaction == transaction {
                return request.decode_reply(&pdu).map_err(Fault::Reply);
            }
        }
    }

    fn rtu_request(&mut self, request: &Request) -> Result<Reply, BusError> {
        self.connect()?;
        let (Some(Connection::Rtu(port)), Link::Rtu { line, .. }) = (&self.connection, &self.link)
        else {
            return Err(BusError::Unreachable("no serial port open".to_owned()));
        };
        let exchange = Exchange {
            request: codec::rtu_frame(self.unit, &request.encode()),
            timeout_ms: self.timeout_ms,
            reply_len: u32::try_from(codec::rtu_len(request.reply_len())).unwrap_or(u32::MAX),
            idle_ms: codec::rtu_silence_ms(line.baud_rate, line.bits_per_char()),
        };
        let reply = match port.transact(&exchange) {
            Ok(reply) => reply,
            // A silent slave says nothing about the bus: keep the port.
            Err(CapabilityError::Timeout) => {
                return Err(BusError::Unreachable(format!(
                    "no reply within {} ms from slave {}",
                    self.timeout_ms, self.unit
                )));
            }
            Err(err) => {
                self.close();
                return Err(capability_error(err, self.timeout_ms));
            }
        };
        let pdu = codec::rtu_unframe(self.unit, &reply).map_err(reply_error)?;
        request.decode_reply(pdu).map_err(reply_error)
    }

    /// Turns a TCP fault into a bus error, dropping the connection when the stream can
    /// no longer be trusted.
    fn fault(&mut self, fault: Fault) -> BusError {
        match fault {
            Fault::Open(err) => err,
            Fault::Stream(err) => {
                self.close();
                capability_error(err, self.timeout_ms)
            }
            Fault::Desync(message) => {
                self.close();
                BusError::Invalid(message)
            }
            Fault::Reply(err) => reply_error(err),
        }
    }
}

impl Bus for Transport {
    fn request(&mut self, request: &Request) -> Result<Reply, BusError> {
        match self.link {
            Link::Tcp { .. } => self.tcp_request(request),
            Link::Rtu { .. } => self.rtu_request(request),
        }
    }
}

/// Reads exactly `len` bytes before the deadline.
fn receive_exact(stream: &TcpStream, len: usize, deadline: &Deadline) -> Result<Vec<u8>, Fault> {
    let mut buffer = Vec::with_capacity(len);
    while buffer.len() < len {
        let wait = deadline
            .remaining_ms()
            .ok_or(Fault::Stream(CapabilityError::Timeout))?;
        let want = u32::try_from(len - buffer.len()).unwrap_or(u32::MAX);
        let chunk = stream.receive(want, wait).map_err(Fault::Stream)?;
        if chunk.is_empty() {
            return Err(Fault::Stream(CapabilityError::Closed));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer)
}

fn settings(line: Line) -> Settings {
    Settings {
        baud_rate: line.baud_rate,
        data_bits: line.data_bits,
        parity: match line.parity {
            Parity::None => serial::Parity::None,
            Parity::Even => serial::Parity::Even,
            Parity::Odd => serial::Parity::Odd,
        },
        stop_bits: line.stop_bits,
    }
}

fn reply_error(err: ReplyError) -> BusError {
    match err {
        ReplyError::Exception(e) => BusError::Exception(e),
        other @ ReplyError::Malformed(_) => BusError::Invalid(other.to_string()),
    }
}

fn capability_error(err: CapabilityError, timeout_ms: u32) -> BusError {
    match err {
        CapabilityError::NotPermitted(m) => BusError::Denied(m),
        CapabilityError::InvalidArgument(m) => BusError::Denied(format!("refused: {m}")),
        CapabilityError::Timeout => {
            BusError::Unreachable(format!("no reply within {timeout_ms} ms"))
        }
        CapabilityError::Closed => BusError::Unreachable("the connection was closed".to_owned()),
        CapabilityError::Io(m) => BusError::Unreachable(format!("I/O error: {m}")),
        CapabilityError::LimitReached(m) => {
            BusError::Unreachable(format!("handle limit reached: {m}"))
        }
    }
}

fn open_error(err: CapabilityError, what: &str, timeout_ms: u32) -> BusError {
    match capability_error(err, timeout_ms) {
        BusError::Denied(m) => BusError::Denied(format!("cannot {what}: {m}")),
        BusError::Unreachable(m) if m.starts_with("no reply") => {
            BusError::Unreachable(format!("cannot {what}: timed out after {timeout_ms} ms"))
        }
        other => BusError::Unreachable(format!("cannot {what}: {other}")),
    }
}
