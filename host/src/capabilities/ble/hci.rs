//! HCI as the host side of an H4 transport sees it: command packets out, events and ACL
//! data in. Only what a GATT client needs; pure functions, so the parsing is unit tested
//! and fuzzed without a controller.

/// H4 packet indicators.
pub const H4_COMMAND: u8 = 0x01;
pub const H4_ACL: u8 = 0x02;
pub const H4_EVENT: u8 = 0x04;

/// Command opcodes (OGF << 10 | OCF).
pub mod op {
    pub const DISCONNECT: u16 = 0x0406;
    pub const SET_EVENT_MASK: u16 = 0x0C01;
    pub const RESET: u16 = 0x0C03;
    pub const READ_BUFFER_SIZE: u16 = 0x1005;
    pub const LE_SET_EVENT_MASK: u16 = 0x2001;
    pub const LE_READ_BUFFER_SIZE: u16 = 0x2002;
    pub const LE_SET_RANDOM_ADDRESS: u16 = 0x2005;
    pub const LE_SET_SCAN_PARAMETERS: u16 = 0x200B;
    pub const LE_SET_SCAN_ENABLE: u16 = 0x200C;
    pub const LE_CREATE_CONNECTION: u16 = 0x200D;
    pub const LE_CREATE_CONNECTION_CANCEL: u16 = 0x200E;
}

/// HCI status codes the stack acts on.
pub mod status {
    pub const SUCCESS: u8 = 0x00;
    pub const UNKNOWN_CONNECTION_ID: u8 = 0x02;
    pub const MEMORY_CAPACITY_EXCEEDED: u8 = 0x07;
    pub const CONNECTION_LIMIT_EXCEEDED: u8 = 0x09;
    pub const REMOTE_USER_TERMINATED: u8 = 0x13;
    pub const CONTROLLER_BUSY: u8 = 0x3A;
}

/// Whether an HCI status says the controller holds all the connections it can.
pub fn is_limit(status: u8) -> bool {
    matches!(
        status,
        status::CONNECTION_LIMIT_EXCEEDED
            | status::MEMORY_CAPACITY_EXCEEDED
            | status::CONTROLLER_BUSY
    )
}

/// A Bluetooth device address, in HCI (little-endian) byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    pub bytes: [u8; 6],
    /// 0 public, 1 random (as advertising reports give it).
    pub kind: u8,
}

impl Address {
    /// Parses `C0:98:E5:49:00:01` (most significant byte first, as printed).
    pub fn parse(text: &str) -> Option<[u8; 6]> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for slot in bytes.iter_mut().rev() {
            let part = parts.next()?;
            if part.len() != 2 {
                return None;
            }
            *slot = u8::from_str_radix(part, 16).ok()?;
        }
        parts.next().is_none().then_some(bytes)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.bytes;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[5], b[4], b[3], b[2], b[1], b[0]
        )
    }
}

/// An H4 command packet.
pub fn command(opcode: u16, params: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + params.len());
    p.push(H4_COMMAND);
    p.extend_from_slice(&opcode.to_le_bytes());
    // Every parameter block built here is far below 255 bytes.
    p.push(u8::try_from(params.len()).unwrap_or(u8::MAX));
    p.extend_from_slice(params);
    p
}

/// An H4 ACL packet carrying one whole L2CAP basic frame on `cid`.
pub fn acl(handle: u16, cid: u16, payload: &[u8]) -> Vec<u8> {
    let l2len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut p = Vec::with_capacity(9 + payload.len());
    p.push(H4_ACL);
    // Packet boundary 0b00: first non-automatically-flushable fragment (host to LE).
    p.extend_from_slice(&(handle & 0x0FFF).to_le_bytes());
    p.extend_from_slice(&(l2len + 4).to_le_bytes());
    p.extend_from_slice(&l2len.to_le_bytes());
    p.extend_from_slice(&cid.to_le_bytes());
    p.extend_from_slice(payload);
    p
}

/// The H4 ACL packets carrying one L2CAP basic frame on `cid`, each with at most
/// `max_data` bytes of data (the controller's ACL data packet length): the first marked
/// as a start, the others as continuations. A frame longer than 65535 bytes is cut
/// (ATT frames here are at most 521).
pub fn acl_fragments(handle: u16, cid: u16, payload: &[u8], max_data: usize) -> Vec<Vec<u8>> {
    let payload = payload.get(..usize::from(u16::MAX)).unwrap_or(payload);
    let l2len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&l2len.to_le_bytes());
    frame.extend_from_slice(&cid.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
        .chunks(max_data.max(1))
        .enumerate()
        .map(|(i, chunk)| {
            // Packet boundary 0b00 (first, host to LE), then 0b01 (continuing).
            let boundary: u16 = if i == 0 { 0 } else { 1 << 12 };
            let mut p = Vec::with_capacity(5 + chunk.len());
            p.push(H4_ACL);
            p.extend_from_slice(&((handle & 0x0FFF) | boundary).to_le_bytes());
            p.extend_from_slice(&u16::try_from(chunk.len()).unwrap_or(u16::MAX).to_le_bytes());
            p.extend_from_slice(chunk);
            p
        })
        .collect()
}

/// LE Create Connection parameters for `peer`, from our random address.
pub fn create_connection_params(peer: Address) -> Vec<u8> {
    let mut p = Vec::with_capacity(25);
    p.extend_from_slice(&0x0060u16.to_le_bytes()); // scan interval 60 ms
    p.extend_from_slice(&0x0030u16.to_le_bytes()); // scan window 30 ms
    p.push(0); // no filter accept list
    p.push(peer.kind);
    p.extend_from_slice(&peer.bytes);
    p.push(1); // own address: random
    p.extend_from_slice(&0x0018u16.to_le_bytes()); // interval min 30 ms
    p.extend_from_slice(&0x0028u16.to_le_bytes()); // interval max 50 ms
    p.extend_from_slice(&0u16.to_le_bytes()); // latency
    p.extend_from_slice(&0x00C8u16.to_le_bytes()); // supervision timeout 2 s
    p.extend_from_slice(&0u16.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    p
}

/// Active scanning (so scan responses carry names), from our random address.
pub fn scan_parameters() -> Vec<u8> {
    let mut p = vec![1];
    p.extend_from_slice(&0x0030u16.to_le_bytes());
    p.extend_from_slice(&0x0030u16.to_le_bytes());
    p.push(1);
    p.push(0);
    p
}

/// One advertising report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub address: Address,
    /// The complete or shortened local name, if this report carries one.
    pub name: Option<String>,
}

/// An event the stack acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    CommandComplete {
        opcode: u16,
        params: Vec<u8>,
    },
    CommandStatus {
        opcode: u16,
        status: u8,
    },
    DisconnectionComplete {
        handle: u16,
        reason: u8,
    },
    CompletedPackets(Vec<(u16, u16)>),
    ConnectionComplete {
        status: u8,
        handle: u16,
        peer: Address,
    },
    Advertising(Vec<Report>),
    /// Anything else, ignored.
    Other(u8),
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Parses an event packet's code and parameters (after the H4 indicator and length).
pub fn parse_event(code: u8, p: &[u8]) -> Option<Event> {
    Some(match code {
        0x0E => Event::CommandComplete {
            opcode: u16_at(p, 1)?,
            params: p.get(3..)?.to_vec(),
        },
        0x0F => Event::CommandStatus {
            status: *p.first()?,
            opcode: u16_at(p, 2)?,
        },
        0x05 => Event::DisconnectionComplete {
            handle: u16_at(p, 1)? & 0x0FFF,
            reason: *p.get(3)?,
        },
        0x13 => {
            let n = usize::from(*p.first()?);
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                out.push((u16_at(p, 1 + 4 * i)? & 0x0FFF, u16_at(p, 3 + 4 * i)?));
            }
            Event::CompletedPackets(out)
        }
        0x3E => match *p.first()? {
            // Connection Complete, and the Enhanced ones (v1, v2) that start alike.
            0x01 | 0x0A | 0x29 => {
                let mut bytes = [0u8; 6];
                bytes.copy_from_slice(p.get(6..12)?);
                Event::ConnectionComplete {
                    status: *p.get(1)?,
                    handle: u16_at(p, 2)? & 0x0FFF,
                    peer: Address {
                        bytes,
                        kind: *p.get(5)?,
                    },
                }
            }
            0x02 => Event::Advertising(advertising_reports(p.get(1..)?)?),
            0x0D => Event::Advertising(extended_reports(p.get(1..)?)?),
            _ => Event::Other(code),
        },
        _ => Event::Other(code),
    })
}

/// LE Advertising Report parameters, one report after another (what controllers send
/// in practice; almost always one per event).
fn advertising_reports(p: &[u8]) -> Option<Vec<Report>> {
    let n = usize::from(*p.first()?);
    let mut at = 1;
    let mut out = Vec::with_capacity(n.min(8));
    for _ in 0..n {
        let kind = *p.get(at + 1)?;
        let mut bytes = [0u8; 6];
        bytes.copy_from_slice(p.get(at + 2..at + 8)?);
        let len = usize::from(*p.get(at + 8)?);
        let data = p.get(at + 9..at + 9 + len)?;
        at += 9 + len + 1; // data, then RSSI
        out.push(Report {
            address: Address { bytes, kind },
            name: local_name(data),
        });
    }
    Some(out)
}

/// LE Extended Advertising Report parameters (controllers that support extended
/// advertising, Bumble's among them, report legacy advertising this way too).
fn extended_reports(p: &[u8]) -> Option<Vec<Report>> {
    let n = usize::from(*p.first()?);
    let mut at = 1;
    let mut out = Vec::with_capacity(n.min(8));
    for _ in 0..n {
        let kind = *p.get(at + 2)?;
        let mut bytes = [0u8; 6];
        bytes.copy_from_slice(p.get(at + 3..at + 9)?);
        let len = usize::from(*p.get(at + 23)?);
        let data = p.get(at + 24..at + 24 + len)?;
        at += 24 + len;
        out.push(Report {
            address: Address { bytes, kind },
            name: local_name(data),
        });
    }
    Some(out)
}

/// The local name in advertising data (complete 0x09, else shortened 0x08).
pub fn local_name(mut data: &[u8]) -> Option<String> {
    let mut short = None;
    // Each structure is at least one byte long, so this ends within data.len() rounds.
    while let Some((&len, rest)) = data.split_first() {
        let len = usize::from(len);
        if len == 0 || rest.len() < len {
            break;
        }
        let (field, next) = rest.split_at(len);
        match field.split_first() {
            Some((0x09, name)) => return Some(String::from_utf8_lossy(name).into_owned()),
            Some((0x08, name)) => short = Some(String::from_utf8_lossy(name).into_owned()),
            _ => {}
        }
        data = next;
    }
    short
}

/// An ACL packet's header: handle, packet boundary flag, and its data.
pub fn parse_acl(p: &[u8]) -> Option<(u16, u8, &[u8])> {
    let head = u16_at(p, 0)?;
    let len = usize::from(u16_at(p, 2)?);
    Some((
        head & 0x0FFF,
        ((head >> 12) & 0x3) as u8,
        p.get(4..4 + len)?,
    ))
}

/// Reassembles L2CAP basic frames from ACL fragments of one connection.
#[derive(Default)]
pub struct Reassembly {
    buf: Vec<u8>,
}

/// Largest L2CAP frame accepted; ATT at our largest MTU needs 521 bytes.
const MAX_FRAME: usize = 4096;

impl Reassembly {
    /// Feeds one fragment; returns a whole frame (cid, payload) when one completes.
    pub fn push(&mut self, boundary: u8, data: &[u8]) -> Option<(u16, Vec<u8>)> {
        if boundary != 0x01 {
            self.buf.clear();
        }
        if self.buf.len() + data.len() > MAX_FRAME {
            self.buf.clear();
            return None;
        }
        self.buf.extend_from_slice(data);
        let len = usize::from(u16_at(&self.buf, 0)?);
        if self.buf.len() < 4 + len {
            return None;
        }
        let cid = u16_at(&self.buf, 2)?;
        let payload = self.buf.get(4..4 + len)?.to_vec();
        self.buf.clear();
        Some((cid, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_print_most_significant_byte_first() {
        let bytes = Address::parse("C0:98:E5:49:00:01").unwrap();
        assert_eq!(bytes, [0x01, 0x00, 0x49, 0xE5, 0x98, 0xC0]);
        let a = Address { bytes, kind: 1 };
        assert_eq!(a.to_string(), "C0:98:E5:49:00:01");
        assert_eq!(Address::parse("c0:98:e5:49:00:01"), Some(bytes));
        for bad in [
            "",
            "C0:98:E5:49:00",
            "C0:98:E5:49:00:01:02",
            "C0:98:E5:49:00:0G",
            "C0:98:E5:49:0:001",
        ] {
            assert_eq!(Address::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn events_parse_and_short_ones_are_refused() {
        assert_eq!(
            parse_event(0x0E, &[1, 0x03, 0x0C, 0]),
            Some(Event::CommandComplete {
                opcode: op::RESET,
                params: vec![0]
            })
        );
        assert_eq!(
            parse_event(0x0F, &[0x09, 1, 0x0D, 0x20]),
            Some(Event::CommandStatus {
                opcode: op::LE_CREATE_CONNECTION,
                status: 0x09
            })
        );
        assert_eq!(
            parse_event(0x05, &[0, 0x40, 0x00, 0x13]),
            Some(Event::DisconnectionComplete {
                handle: 0x40,
                reason: 0x13
            })
        );
        assert_eq!(
            parse_event(0x13, &[2, 1, 0, 3, 0, 2, 0, 1, 0]),
            Some(Event::CompletedPackets(vec![(1, 3), (2, 1)]))
        );
        let conn = [
            0x01, 0, 0x40, 0, 0, 1, 1, 0, 0x49, 0xE5, 0x98, 0xC0, 0x18, 0, 0, 0, 0xC8, 0, 0,
        ];
        assert_eq!(
            parse_event(0x3E, &conn),
            Some(Event::ConnectionComplete {
                status: 0,
                handle: 0x40,
                peer: Address {
                    bytes: [1, 0, 0x49, 0xE5, 0x98, 0xC0],
                    kind: 1
                },
            })
        );
        let name = b"\x0c\x09Octo-Sensor";
        let mut adv = vec![0x02, 1, 0x00, 1, 1, 0, 0x49, 0xE5, 0x98, 0xC0];
        adv.push(name.len() as u8);
        adv.extend_from_slice(name);
        adv.push(0xC0);
        match parse_event(0x3E, &adv) {
            Some(Event::Advertising(r)) => {
                assert_eq!(r.len(), 1);
                assert_eq!(r[0].name.as_deref(), Some("Octo-Sensor"));
                assert_eq!(r[0].address.to_string(), "C0:98:E5:49:00:01");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_event(0x3E, &adv[..adv.len() - 2]), None);
        // What Bumble's virtual controller sends: an extended report of legacy advertising.
        let ext = [
            0x0D, 0x01, 0x01, 0x00, 0x01, 0x01, 0x00, 0x49, 0xE5, 0x98, 0xC0, 0x01, 0x01, 0x00,
            0x00, 0xCE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05, 0x04, 0x09, b'O', b'c', b't',
        ];
        match parse_event(0x3E, &ext) {
            Some(Event::Advertising(r)) => {
                assert_eq!(r[0].address.to_string(), "C0:98:E5:49:00:01");
                assert_eq!(r[0].address.kind, 1);
                assert_eq!(r[0].name.as_deref(), Some("Oct"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_event(0x3E, &ext[..ext.len() - 1]), None);
        assert_eq!(parse_event(0x0E, &[1, 0x03]), None);
        assert_eq!(parse_event(0x13, &[3, 1, 0, 3, 0]), None);
    }

    #[test]
    fn local_names_complete_over_shortened_and_bad_lengths_end_the_walk() {
        assert_eq!(
            local_name(b"\x02\x01\x06\x04\x08Oct\x05\x09Octo"),
            Some("Octo".into())
        );
        assert_eq!(local_name(b"\x04\x08Oct"), Some("Oct".into()));
        assert_eq!(local_name(b"\x09\x09Oct"), None);
        assert_eq!(local_name(b"\x00\x09Oct"), None);
        assert_eq!(local_name(b""), None);
    }

    #[test]
    fn fragments_reassemble_and_commands_frame() {
        let frame = acl(0x40, 4, &[0x0A, 0x03, 0x00]);
        assert_eq!(frame, [2, 0x40, 0, 7, 0, 3, 0, 4, 0, 0x0A, 3, 0]);
        let (handle, pb, data) = parse_acl(&frame[1..]).unwrap();
        assert_eq!((handle, pb), (0x40, 0));
        let mut r = Reassembly::default();
        assert_eq!(r.push(2, &data[..5]), None);
        assert_eq!(r.push(1, &data[5..]), Some((4, vec![0x0A, 3, 0])));
        assert_eq!(command(op::RESET, &[]), [1, 0x03, 0x0C, 0]);
        // A frame longer than the controller's packets goes as a start and continuations,
        // and reassembles to the same frame.
        let long: Vec<u8> = (0..60u8).collect();
        let parts = acl_fragments(0x40, 4, &long, 27);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0][..5], [H4_ACL, 0x40, 0x00, 27, 0]);
        assert_eq!(parts[1][..5], [H4_ACL, 0x40, 0x10, 27, 0]);
        assert_eq!(parts[2][..5], [H4_ACL, 0x40, 0x10, 10, 0]);
        let mut r = Reassembly::default();
        let mut got = None;
        for p in &parts {
            let (handle, pb, data) = parse_acl(&p[1..]).unwrap();
            assert_eq!(handle, 0x40);
            got = r.push(pb, data);
        }
        assert_eq!(got, Some((4, long.clone())));
        assert_eq!(acl_fragments(0x40, 4, &[0x0A, 3, 0], 27), [frame]);
        assert!(is_limit(status::CONNECTION_LIMIT_EXCEEDED));
        assert!(!is_limit(status::SUCCESS));
    }
}
