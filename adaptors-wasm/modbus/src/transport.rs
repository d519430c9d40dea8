//! The two ways to reach a slave through the host's capabilities: Modbus TCP over a
//! granted socket, and Modbus RTU as single `transact` turns on a granted serial bus
//! that other devices may share.
//!
//! Connections open lazily and stay open across polls; after an I/O fault the
//! connection is dropped and the next request opens a new one.

use crate::codec::{self, MBAP_HEADER_LEN, Reply, ReplyError, Request};
use crate::engine::{Bus, BusError};
use crate::spec::{Line, Link, Parity, Spec};
use octopus_adaptor_sdk::bindings::octopus::adaptor::clock;
use octopus_adaptor_sdk::bindings::octopus::adaptor::serial::{self, Exchange, Port, Settings};
use octopus_adaptor_sdk::bindings::octopus::adaptor::socket::{self, TcpStream};
use octopus_adaptor_sdk::bindings::octopus::adaptor::types::CapabilityError;

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
    /// TCP bytes received but not yet taken as a frame. Receiving a whole ADU's worth
    /// at a time gets most replies in one host call instead of two.
    received: Vec<u8>,
    /// The TCP request being sent, kept to reuse its allocation.
    frame: Vec<u8>,
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
            received: Vec::new(),
            frame: Vec::new(),
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
        self.received.clear();
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
        codec::write_mbap_frame(&mut self.frame, transaction, self.unit, request);
        let sent = stream
            .send(&self.frame, self.timeout_ms)
            .map_err(Fault::Stream)?;
        if usize::try_from(sent).ok() != Some(self.frame.len()) {
            return Err(Fault::Stream(CapabilityError::Io(format!(
                "sent {sent} of {} bytes",
                self.frame.len()
            ))));
        }
        // The deadline was just set: the first wait needs no clock reading.
        let mut first_wait = Some(self.timeout_ms);
        loop {
            let (header, end) = next_frame(stream, &mut self.received, &deadline, &mut first_wait)?;
            // A late reply to an earlier, timed-out request is skipped.
            let reply = (header.transaction == transaction).then(|| {
                request.decode_reply(self.received.get(MBAP_HEADER_LEN..end).unwrap_or_default())
            });
            self.received.drain(..end);
            if let Some(reply) = reply {
                return reply.map_err(Fault::Reply);
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

/// The largest Modbus TCP ADU: what one receive asks for.
const MAX_ADU: u32 = 260;

/// Receives until `received` starts with a whole MBAP frame, before the deadline, and
/// returns its header and where it ends; the caller takes it out. `first_wait`, if set,
/// is used (once) instead of reading the clock.
fn next_frame(
    stream: &TcpStream,
    received: &mut Vec<u8>,
    deadline: &Deadline,
    first_wait: &mut Option<u32>,
) -> Result<(codec::MbapHeader, usize), Fault> {
    loop {
        if let Some(frame) = whole_frame(received)? {
            return Ok(frame);
        }
        let wait = match first_wait.take() {
            Some(ms) => ms,
            None => deadline
                .remaining_ms()
                .ok_or(Fault::Stream(CapabilityError::Timeout))?,
        };
        let chunk = stream.receive(MAX_ADU, wait).map_err(Fault::Stream)?;
        if chunk.is_empty() {
            return Err(Fault::Stream(CapabilityError::Closed));
        }
        received.extend_from_slice(&chunk);
    }
}

/// The header of the frame at the start of `received` and where the frame ends, or
/// `None` while it is partial. The PDU is decoded in place, not copied out.
fn whole_frame(received: &[u8]) -> Result<Option<(codec::MbapHeader, usize)>, Fault> {
    let Some(bytes) = received.first_chunk::<MBAP_HEADER_LEN>() else {
        return Ok(None);
    };
    let header = codec::mbap_header(bytes).map_err(|e| Fault::Desync(e.to_string()))?;
    let end = MBAP_HEADER_LEN + header.pdu_len;
    Ok((received.len() >= end).then_some((header, end)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(transaction: u16, pdu: &[u8]) -> Vec<u8> {
        codec::mbap_frame(transaction, 1, pdu)
    }

    /// Takes the first whole frame out of `received`, as `tcp_once` does.
    fn take_frame(received: &mut Vec<u8>) -> Result<Option<(codec::MbapHeader, Vec<u8>)>, Fault> {
        Ok(whole_frame(received)?.map(|(header, end)| {
            let pdu = received
                .get(MBAP_HEADER_LEN..end)
                .unwrap_or_default()
                .to_vec();
            received.drain(..end);
            (header, pdu)
        }))
    }

    #[test]
    fn frames_are_taken_whole_and_in_order() {
        let first = frame(7, &[3, 4, 0, 101, 0, 102]);
        let second = frame(8, &[3, 2, 0, 9]);
        let mut received = [first.clone(), second].concat();
        // Byte by byte, a frame appears only once all of it is there.
        let mut partial = Vec::new();
        for (i, b) in first.iter().enumerate() {
            assert!(take_frame(&mut partial).ok().flatten().is_none(), "at {i}");
            partial.push(*b);
        }
        let Ok(Some((header, pdu))) = take_frame(&mut partial) else {
            unreachable!("a whole frame")
        };
        assert_eq!(
            (header.transaction, pdu.as_slice()),
            (7, &[3, 4, 0, 101, 0, 102][..])
        );
        assert!(partial.is_empty());

        let Ok(Some((h1, _))) = take_frame(&mut received) else {
            unreachable!("first frame")
        };
        let Ok(Some((h2, p2))) = take_frame(&mut received) else {
            unreachable!("second frame")
        };
        assert_eq!(
            (h1.transaction, h2.transaction, p2),
            (7, 8, vec![3, 2, 0, 9])
        );
        assert!(received.is_empty());
        assert!(matches!(take_frame(&mut received), Ok(None)));
    }

    #[test]
    fn a_header_that_cannot_be_mbap_is_a_desync() {
        // Protocol ID 0x1234 instead of 0.
        let mut received = vec![0, 1, 0x12, 0x34, 0, 3, 1, 3, 0];
        assert!(matches!(take_frame(&mut received), Err(Fault::Desync(_))));
    }
}
