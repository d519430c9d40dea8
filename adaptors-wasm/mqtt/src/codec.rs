//! MQTT 3.1 / 3.1.1 control packets: encoding of what a client sends, decoding of what a
//! broker sends, and an incremental [`Decoder`] that takes bytes as they arrive (a
//! packet split over several reads, several packets in one read).
//!
//! Pure: no I/O, so every packet is tested against known byte sequences.

use std::fmt;

/// The largest remaining length the 4-byte varint can express.
pub const MAX_REMAINING: usize = 268_435_455;

/// Protocol level and name sent in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1 (`MQIsdp`, level 3): client IDs of at most 23 characters.
    V31,
    /// MQTT 3.1.1 (`MQTT`, level 4).
    V311,
}

/// A last-will message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: Version,
    pub client_id: String,
    pub clean_session: bool,
    /// Seconds; 0 disables keep-alive.
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub will: Option<Will>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    /// Present exactly when `qos > 0`.
    pub id: Option<u16>,
}

/// A control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    ConnAck { session_present: bool, code: u8 },
    Publish(Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe { id: u16, filters: Vec<(String, u8)> },
    SubAck { id: u16, codes: Vec<u8> },
    Unsubscribe { id: u16, filters: Vec<String> },
    UnsubAck(u16),
    PingReq,
    PingResp,
    Disconnect,
}

/// SUBACK return code of a refused subscription.
pub const SUBACK_FAILURE: u8 = 0x80;

/// What a CONNACK return code means.
pub fn connack_reason(code: u8) -> String {
    let what = match code {
        0 => "accepted",
        1 => "unacceptable protocol version",
        2 => "client identifier rejected",
        3 => "server unavailable",
        4 => "bad username or password",
        5 => "not authorized",
        _ => "unknown return code",
    };
    format!("{what} ({code})")
}

/// Bytes that are not a valid packet; the stream cannot be trusted afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(message: impl Into<String>) -> CodecError {
    CodecError(message.into())
}

fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// A length-prefixed field; MQTT caps them at 65535 bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), CodecError> {
    let len = u16::try_from(bytes.len())
        .map_err(|_| bad(format!("a field of {} bytes is too long", bytes.len())))?;
    put_u16(out, len);
    out.extend_from_slice(bytes);
    Ok(())
}

/// Appends the remaining-length varint.
pub fn put_remaining(out: &mut Vec<u8>, mut len: usize) -> Result<(), CodecError> {
    if len > MAX_REMAINING {
        return Err(bad(format!("a packet of {len} bytes is too long")));
    }
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            return Ok(());
        }
    }
}

fn frame(header: u8, body: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(header);
    put_remaining(&mut out, body.len())?;
    out.extend_from_slice(body);
    Ok(out)
}

fn check_qos(qos: u8) -> Result<(), CodecError> {
    if qos > 2 {
        return Err(bad(format!("QoS {qos} does not exist")));
    }
    Ok(())
}

impl Packet {
    /// The packet on the wire.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        match self {
            Packet::Connect(c) => encode_connect(c),
            Packet::ConnAck {
                session_present,
                code,
            } => frame(0x20, &[u8::from(*session_present), *code]),
            Packet::Publish(p) => encode_publish(p),
            Packet::PubAck(id) => frame(0x40, &id.to_be_bytes()),
            Packet::PubRec(id) => frame(0x50, &id.to_be_bytes()),
            Packet::PubRel(id) => frame(0x62, &id.to_be_bytes()),
            Packet::PubComp(id) => frame(0x70, &id.to_be_bytes()),
            Packet::Subscribe { id, filters } => {
                if filters.is_empty() {
                    return Err(bad("SUBSCRIBE needs at least one topic filter"));
                }
                let mut body = Vec::new();
                put_u16(&mut body, *id);
                for (filter, qos) in filters {
                    check_qos(*qos)?;
                    put_bytes(&mut body, filter.as_bytes())?;
                    body.push(*qos);
                }
                frame(0x82, &body)
            }
            Packet::SubAck { id, codes } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend_from_slice(codes);
                frame(0x90, &body)
            }
            Packet::Unsubscribe { id, filters } => {
                if filters.is_empty() {
                    return Err(bad("UNSUBSCRIBE needs at least one topic filter"));
                }
                let mut body = Vec::new();
                put_u16(&mut body, *id);
                for filter in filters {
                    put_bytes(&mut body, filter.as_bytes())?;
                }
                frame(0xA2, &body)
            }
            Packet::UnsubAck(id) => frame(0xB0, &id.to_be_bytes()),
            Packet::PingReq => Ok(vec![0xC0, 0]),
            Packet::PingResp => Ok(vec![0xD0, 0]),
            Packet::Disconnect => Ok(vec![0xE0, 0]),
        }
    }
}

fn encode_connect(c: &Connect) -> Result<Vec<u8>, CodecError> {
    let mut body = Vec::new();
    let (name, level): (&[u8], u8) = match c.version {
        Version::V31 => (b"MQIsdp", 3),
        Version::V311 => (b"MQTT", 4),
    };
    put_bytes(&mut body, name)?;
    body.push(level);
    let mut flags = 0u8;
    if c.clean_session {
        flags |= 0x02;
    }
    if let Some(will) = &c.will {
        check_qos(will.qos)?;
        flags |= 0x04 | (will.qos << 3);
        if will.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        if c.username.is_none() {
            return Err(bad("a password needs a username"));
        }
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    body.push(flags);
    put_u16(&mut body, c.keep_alive);
    put_bytes(&mut body, c.client_id.as_bytes())?;
    if let Some(will) = &c.will {
        put_bytes(&mut body, will.topic.as_bytes())?;
        put_bytes(&mut body, &will.payload)?;
    }
    if let Some(username) = &c.username {
        put_bytes(&mut body, username.as_bytes())?;
    }
    if let Some(password) = &c.password {
        put_bytes(&mut body, password)?;
    }
    frame(0x10, &body)
}

fn encode_publish(p: &Publish) -> Result<Vec<u8>, CodecError> {
    check_qos(p.qos)?;
    let mut header = 0x30 | (p.qos << 1);
    if p.dup {
        header |= 0x08;
    }
    if p.retain {
        header |= 0x01;
    }
    let mut body = Vec::with_capacity(p.topic.len() + p.payload.len() + 4);
    put_bytes(&mut body, p.topic.as_bytes())?;
    match (p.qos, p.id) {
        (0, None) => {}
        (0, Some(_)) => return Err(bad("a QoS 0 PUBLISH has no packet identifier")),
        (_, Some(0) | None) => return Err(bad("a QoS 1 or 2 PUBLISH needs a packet identifier")),
        (_, Some(id)) => put_u16(&mut body, id),
    }
    body.extend_from_slice(&p.payload);
    frame(header, &body)
}

/// Reads fields out of a packet body.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CodecError> {
        if self.bytes.len() < n {
            return Err(bad(format!("truncated {what}")));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or(0))
    }

    fn u16(&mut self, what: &str) -> Result<u16, CodecError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], CodecError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    fn string(&mut self, what: &str) -> Result<String, CodecError> {
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| bad(format!("{what} is not UTF-8")))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    fn end(&self, what: &str) -> Result<(), CodecError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(bad(format!("{what} is longer than expected")))
        }
    }
}

/// Decodes one packet from its first byte and body.
pub fn decode(header: u8, body: &[u8]) -> Result<Packet, CodecError> {
    let kind = header >> 4;
    let flags = header & 0x0F;
    let mut r = Reader { bytes: body };
    let expect_flags = |want: u8, name: &str| {
        if flags == want {
            Ok(())
        } else {
            Err(bad(format!("{name} with reserved flags {flags:#x}")))
        }
    };
    let packet = match kind {
        2 => {
            expect_flags(0, "CONNACK")?;
            let ack = r.u8("CONNACK")?;
            let code = r.u8("CONNACK")?;
            Packet::ConnAck {
                session_present: ack & 1 == 1,
                code,
            }
        }
        3 => {
            let qos = (flags >> 1) & 3;
            if qos == 3 {
                return Err(bad("PUBLISH with QoS 3"));
            }
            let topic = r.string("PUBLISH topic")?;
            let id = if qos > 0 {
                Some(r.u16("PUBLISH packet identifier")?)
            } else {
                None
            };
            Packet::Publish(Publish {
                topic,
                payload: r.rest().to_vec(),
                qos,
                retain: flags & 1 == 1,
                dup: flags & 8 == 8,
                id,
            })
        }
        4 => {
            expect_flags(0, "PUBACK")?;
            Packet::PubAck(r.u16("PUBACK")?)
        }
        5 => {
            expect_flags(0, "PUBREC")?;
            Packet::PubRec(r.u16("PUBREC")?)
        }
        6 => {
            expect_flags(2, "PUBREL")?;
            Packet::PubRel(r.u16("PUBREL")?)
        }
        7 => {
            expect_flags(0, "PUBCOMP")?;
            Packet::PubComp(r.u16("PUBCOMP")?)
        }
        9 => {
            expect_flags(0, "SUBACK")?;
            let id = r.u16("SUBACK")?;
            let codes = r.rest().to_vec();
            if codes.is_empty() {
                return Err(bad("SUBACK without return codes"));
            }
            Packet::SubAck { id, codes }
        }
        11 => {
            expect_flags(0, "UNSUBACK")?;
            Packet::UnsubAck(r.u16("UNSUBACK")?)
        }
        12 => Packet::PingReq,
        13 => {
            expect_flags(0, "PINGRESP")?;
            Packet::PingResp
        }
        14 => Packet::Disconnect,
        1 => return Err(bad("a CONNECT from the broker")),
        8 | 10 => return Err(bad("a (UN)SUBSCRIBE from the broker")),
        _ => return Err(bad(format!("unknown packet type {kind}"))),
    };
    r.end("packet")?;
    Ok(packet)
}

/// Reassembles packets from a byte stream.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

/// The largest packet the decoder accepts; a bigger one means a broken or hostile peer.
pub const MAX_PACKET: usize = 1 << 20;

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received but not yet decoded.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete packet, `None` if more bytes are needed.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, CodecError> {
        let Some(&header) = self.buffer.first() else {
            return Ok(None);
        };
        let mut len = 0usize;
        let mut shift = 0u32;
        let mut at = 1usize;
        loop {
            let Some(&byte) = self.buffer.get(at) else {
                return Ok(None);
            };
            len |= usize::from(byte & 0x7F) << shift;
            at += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return Err(bad("remaining length longer than 4 bytes"));
            }
        }
        if len > MAX_PACKET {
            return Err(bad(format!(
                "a packet of {len} bytes is larger than the limit of {MAX_PACKET}"
            )));
        }
        let end = at + len;
        if self.buffer.len() < end {
            return Ok(None);
        }
        let body: Vec<u8> = self.buffer.drain(..end).skip(at).collect();
        decode(header, &body).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Packet> {
        let mut d = Decoder::default();
        d.push(bytes);
        let mut out = Vec::new();
        while let Some(p) = d.next_packet().unwrap() {
            out.push(p);
        }
        assert_eq!(d.pending(), 0);
        out
    }

    #[test]
    fn connect_minimal_311() {
        let c = Connect {
            version: Version::V311,
            client_id: "ab".into(),
            clean_session: true,
            keep_alive: 60,
            username: None,
            password: None,
            will: None,
        };
        assert_eq!(
            Packet::Connect(c).encode().unwrap(),
            [
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'a', b'b'
            ]
        );
    }

    #[test]
    fn connect_31_with_will_and_credentials() {
        let c = Connect {
            version: Version::V31,
            client_id: "c".into(),
            clean_session: false,
            keep_alive: 30,
            username: Some("u".into()),
            password: Some(b"pw".to_vec()),
            will: Some(Will {
                topic: "t/$will".into(),
                payload: b"off".to_vec(),
                qos: 1,
                retain: true,
            }),
        };
        let bytes = Packet::Connect(c).encode().unwrap();
        let mut want = vec![0x10, 0];
        want.extend_from_slice(&[0, 6]);
        want.extend_from_slice(b"MQIsdp");
        want.push(3);
        // username, password, will retain, will QoS 1, will flag; no clean session.
        want.push(0x80 | 0x40 | 0x20 | 0x08 | 0x04);
        want.extend_from_slice(&[0, 30, 0, 1, b'c', 0, 7]);
        want.extend_from_slice(b"t/$will");
        want.extend_from_slice(&[0, 3]);
        want.extend_from_slice(b"off");
        want.extend_from_slice(&[0, 1, b'u', 0, 2, b'p', b'w']);
        want[1] = (want.len() - 2) as u8;
        assert_eq!(bytes, want);
    }

    #[test]
    fn a_password_needs_a_username() {
        let c = Connect {
            version: Version::V311,
            client_id: String::new(),
            clean_session: true,
            keep_alive: 0,
            username: None,
            password: Some(vec![1]),
            will: None,
        };
        assert!(Packet::Connect(c).encode().is_err());
    }

    #[test]
    fn connack_codes() {
        assert_eq!(
            decode_all(&[0x20, 2, 1, 0]),
            [Packet::ConnAck {
                session_present: true,
                code: 0
            }]
        );
        assert_eq!(
            decode_all(&[0x20, 2, 0, 5]),
            [Packet::ConnAck {
                session_present: false,
                code: 5
            }]
        );
        assert_eq!(connack_reason(4), "bad username or password (4)");
        assert_eq!(connack_reason(5), "not authorized (5)");
        assert_eq!(connack_reason(1), "unacceptable protocol version (1)");
        assert_eq!(connack_reason(9), "unknown return code (9)");
    }

    #[test]
    fn publish_qos0_1_2() {
        let p0 = Publish {
            topic: "a/b".into(),
            payload: b"hi".to_vec(),
            qos: 0,
            retain: true,
            dup: false,
            id: None,
        };
        let bytes = Packet::Publish(p0.clone()).encode().unwrap();
        assert_eq!(bytes, [0x31, 7, 0, 3, b'a', b'/', b'b', b'h', b'i']);
        assert_eq!(decode_all(&bytes), [Packet::Publish(p0)]);

        let p1 = Publish {
            topic: "t".into(),
            payload: vec![],
            qos: 1,
            retain: false,
            dup: true,
            id: Some(10),
        };
        let bytes = Packet::Publish(p1.clone()).encode().unwrap();
        assert_eq!(bytes, [0x3A, 5, 0, 1, b't', 0, 10]);
        assert_eq!(decode_all(&bytes), [Packet::Publish(p1)]);

        let p2 = Publish {
            topic: "t".into(),
            payload: b"x".to_vec(),
            qos: 2,
            retain: false,
            dup: false,
            id: Some(0x0102),
        };
        let bytes = Packet::Publish(p2.clone()).encode().unwrap();
        assert_eq!(bytes, [0x34, 6, 0, 1, b't', 1, 2, b'x']);
        assert_eq!(decode_all(&bytes), [Packet::Publish(p2)]);
    }

    #[test]
    fn publish_needs_an_id_exactly_above_qos0() {
        let mut p = Publish {
            topic: "t".into(),
            payload: vec![],
            qos: 1,
            retain: false,
            dup: false,
            id: None,
        };
        assert!(Packet::Publish(p.clone()).encode().is_err());
        p.id = Some(0);
        assert!(Packet::Publish(p.clone()).encode().is_err());
        p.qos = 0;
        p.id = Some(1);
        assert!(Packet::Publish(p.clone()).encode().is_err());
        p.qos = 3;
        assert!(Packet::Publish(p).encode().is_err());
        assert!(decode(0x36, &[0, 1, b't', 0, 1]).is_err(), "QoS 3");
    }

    #[test]
    fn acknowledgements_both_directions() {
        assert_eq!(Packet::PubAck(7).encode().unwrap(), [0x40, 2, 0, 7]);
        assert_eq!(Packet::PubRec(7).encode().unwrap(), [0x50, 2, 0, 7]);
        assert_eq!(Packet::PubRel(7).encode().unwrap(), [0x62, 2, 0, 7]);
        assert_eq!(Packet::PubComp(7).encode().unwrap(), [0x70, 2, 0, 7]);
        assert_eq!(
            decode_all(&[0x40, 2, 0, 7, 0x50, 2, 1, 0, 0x62, 2, 0, 9, 0x70, 2, 0, 9]),
            [
                Packet::PubAck(7),
                Packet::PubRec(256),
                Packet::PubRel(9),
                Packet::PubComp(9)
            ]
        );
        assert!(decode(0x60, &[0, 1]).is_err(), "PUBREL needs flags 0010");
        assert!(decode(0x40, &[0, 1, 2]).is_err(), "too long");
        assert!(decode(0x40, &[0]).is_err(), "too short");
    }

    #[test]
    fn subscribe_and_suback_with_failure() {
        let bytes = Packet::Subscribe {
            id: 1,
            filters: vec![("a/+".into(), 1), ("b/#".into(), 2)],
        }
        .encode()
        .unwrap();
        assert_eq!(
            bytes,
            [
                0x82, 14, 0, 1, 0, 3, b'a', b'/', b'+', 1, 0, 3, b'b', b'/', b'#', 2
            ]
        );
        assert_eq!(
            decode_all(&[0x90, 4, 0, 1, 1, 0x80]),
            [Packet::SubAck {
                id: 1,
                codes: vec![1, SUBACK_FAILURE]
            }]
        );
        assert!(
            Packet::Subscribe {
                id: 1,
                filters: vec![]
            }
            .encode()
            .is_err()
        );
    }

    #[test]
    fn unsubscribe_and_unsuback() {
        assert_eq!(
            Packet::Unsubscribe {
                id: 2,
                filters: vec!["a".into()]
            }
            .encode()
            .unwrap(),
            [0xA2, 5, 0, 2, 0, 1, b'a']
        );
        assert_eq!(decode_all(&[0xB0, 2, 0, 2]), [Packet::UnsubAck(2)]);
    }

    #[test]
    fn ping_and_disconnect() {
        assert_eq!(Packet::PingReq.encode().unwrap(), [0xC0, 0]);
        assert_eq!(Packet::Disconnect.encode().unwrap(), [0xE0, 0]);
        assert_eq!(decode_all(&[0xD0, 0]), [Packet::PingResp]);
    }

    #[test]
    fn remaining_length_varint() {
        for (len, want) in [
            (0usize, vec![0x00]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_151, vec![0xFF, 0xFF, 0x7F]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
            (MAX_REMAINING, vec![0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut out = Vec::new();
            put_remaining(&mut out, len).unwrap();
            assert_eq!(out, want, "{len}");
        }
        assert!(put_remaining(&mut Vec::new(), MAX_REMAINING + 1).is_err());
        let mut d = Decoder::default();
        d.push(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
        assert!(d.next_packet().is_err(), "5-byte varint");
    }

    #[test]
    fn large_publish_round_trips_through_a_two_byte_length() {
        let p = Publish {
            topic: "big".into(),
            payload: vec![7; 300],
            qos: 0,
            retain: false,
            dup: false,
            id: None,
        };
        let bytes = Packet::Publish(p.clone()).encode().unwrap();
        assert_eq!(&bytes[..3], [0x30, 0xB1, 0x02]);
        assert_eq!(decode_all(&bytes), [Packet::Publish(p)]);
    }

    #[test]
    fn decoder_handles_partial_reads_and_several_packets_per_read() {
        let mut stream = vec![0x20, 2, 0, 0];
        stream.extend(
            Packet::Publish(Publish {
                topic: "x/y".into(),
                payload: b"{\"a\":1}".to_vec(),
                qos: 1,
                retain: true,
                dup: false,
                id: Some(3),
            })
            .encode()
            .unwrap(),
        );
        stream.extend([0xD0, 0, 0x90, 3, 0, 1, 0]);
        // Byte by byte.
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in &stream {
            d.push(&[*b]);
            while let Some(p) = d.next_packet().unwrap() {
                got.push(p);
            }
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got, decode_all(&stream));
        assert!(matches!(got[1], Packet::Publish(ref p) if p.id == Some(3) && p.retain));
        assert_eq!(
            got[3],
            Packet::SubAck {
                id: 1,
                codes: vec![0]
            }
        );
        // A split in the middle of the varint.
        let big = Packet::Publish(Publish {
            topic: "t".into(),
            payload: vec![1; 200],
            qos: 0,
            retain: false,
            dup: false,
            id: None,
        })
        .encode()
        .unwrap();
        let mut d = Decoder::default();
        d.push(&big[..2]);
        assert_eq!(d.next_packet().unwrap(), None);
        d.push(&big[2..100]);
        assert_eq!(d.next_packet().unwrap(), None);
        d.push(&big[100..]);
        assert!(d.next_packet().unwrap().is_some());
    }

    #[test]
    fn broker_never_sends_client_packets_and_oversize_is_refused() {
        assert!(decode(0x10, &[]).is_err());
        assert!(decode(0x82, &[]).is_err());
        assert!(decode(0xF0, &[]).is_err());
        let mut d = Decoder::default();
        d.push(&[0x30, 0xFF, 0xFF, 0x7F]);
        assert!(d.next_packet().is_err());
    }
}
