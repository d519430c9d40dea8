//! Modbus wire formats: PDUs of function codes 1, 2, 3, 4, 5, 6, 15 and 16, exception
//! replies, MBAP framing (TCP) and RTU framing with its CRC.
//!
//! Pure byte work, no I/O, so that known frames can be checked in unit tests.

use std::fmt;

use crate::value::{pack_bits, unpack_bits};

/// Most registers one FC3/FC4 request may read.
pub const MAX_READ_REGISTERS: u16 = 125;
/// Most bits one FC1/FC2 request may read.
pub const MAX_READ_BITS: u16 = 2000;
/// Most registers one FC16 request may write.
pub const MAX_WRITE_REGISTERS: u16 = 123;
/// Most coils one FC15 request may write.
pub const MAX_WRITE_COILS: u16 = 1968;

/// Length of the MBAP header, unit ID included.
pub const MBAP_HEADER_LEN: usize = 7;
/// Largest PDU the protocol allows.
pub const MAX_PDU_LEN: usize = 253;

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Coil,
    DiscreteInput,
    Input,
    Holding,
}

impl Table {
    /// The spec's name of the table.
    pub fn name(self) -> &'static str {
        match self {
            Table::Coil => "CoilRegister",
            Table::DiscreteInput => "DiscreteInputRegister",
            Table::Input => "InputRegister",
            Table::Holding => "HoldingRegister",
        }
    }

    /// Coils and discrete inputs hold bits; the others 16-bit registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// Only coils and holding registers can be written.
    pub fn is_writable(self) -> bool {
        matches!(self, Table::Coil | Table::Holding)
    }

    /// Most items one read request may cover.
    pub fn read_limit(self) -> u16 {
        if self.is_bits() {
            MAX_READ_BITS
        } else {
            MAX_READ_REGISTERS
        }
    }

    fn read_function(self) -> u8 {
        match self {
            Table::Coil => 1,
            Table::DiscreteInput => 2,
            Table::Holding => 3,
            Table::Input => 4,
        }
    }
}

/// One request to a slave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// FC1–FC4: `count` items of `table` from `address`.
    Read {
        table: Table,
        address: u16,
        count: u16,
    },
    /// FC5.
    WriteCoil { address: u16, value: bool },
    /// FC6.
    WriteRegister { address: u16, value: u16 },
    /// FC15.
    WriteCoils { address: u16, values: Vec<bool> },
    /// FC16.
    WriteRegisters { address: u16, values: Vec<u16> },
}

/// What a successful reply carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Bits(Vec<bool>),
    Registers(Vec<u16>),
    Written,
}

/// A Modbus exception code from a slave (or a gateway in front of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception(pub u8);

impl Exception {
    pub const ILLEGAL_DATA_ADDRESS: Exception = Exception(2);

    /// Codes 10 and 11: a gateway could not reach the slave, so the device (not the
    /// request) is the problem.
    pub fn means_unreachable(self) -> bool {
        matches!(self.0, 10 | 11)
    }

    fn name(self) -> &'static str {
        match self.0 {
            1 => "illegal function",
            2 => "illegal data address",
            3 => "illegal data value",
            4 => "server device failure",
            5 => "acknowledge",
            6 => "server device busy",
            8 => "memory parity error",
            10 => "gateway path unavailable",
            11 => "gateway target device failed to respond",
            _ => "unknown exception",
        }
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (exception {})", self.name(), self.0)
    }
}

/// Why a reply cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The slave answered with an exception.
    Exception(Exception),
    /// The bytes are not the reply to this request.
    Malformed(String),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Exception(e) => e.fmt(f),
            ReplyError::Malformed(m) => write!(f, "malformed reply: {m}"),
        }
    }
}

fn malformed(message: impl Into<String>) -> ReplyError {
    ReplyError::Malformed(message.into())
}

/// A count that the protocol carries in 16 bits; requests never exceed the limits
/// above, so saturating is only a guard.
fn count16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

fn count8(len: usize) -> u8 {
    u8::try_from(len).unwrap_or(u8::MAX)
}

impl Request {
    pub fn function(&self) -> u8 {
        match self {
            Request::Read { table, .. } => table.read_function(),
            Request::WriteCoil { .. } => 5,
            Request::WriteRegister { .. } => 6,
            Request::WriteCoils { .. } => 15,
            Request::WriteRegisters { .. } => 16,
        }
    }

    /// The request PDU: function code and data.
    pub fn encode(&self) -> Vec<u8> {
        let mut pdu = Vec::new();
        self.encode_into(&mut pdu);
        pdu
    }

    /// Appends the PDU to `pdu`.
    pub fn encode_into(&self, pdu: &mut Vec<u8>) {
        pdu.push(self.function());
        match self {
            Request::Read { address, count, .. } => {
                pdu.extend(address.to_be_bytes());
                pdu.extend(count.to_be_bytes());
            }
            Request::WriteCoil { address, value } => {
                pdu.extend(address.to_be_bytes());
                pdu.extend(if *value { [0xff, 0x00] } else { [0x00, 0x00] });
            }
            Request::WriteRegister { address, value } => {
                pdu.extend(address.to_be_bytes());
                pdu.extend(value.to_be_bytes());
            }
            Request::WriteCoils { address, values } => {
                let packed = pack_bits(values);
                pdu.extend(address.to_be_bytes());
                pdu.extend(count16(values.len()).to_be_bytes());
                pdu.push(count8(packed.len()));
                pdu.extend(packed);
            }
            Request::WriteRegisters { address, values } => {
                pdu.extend(address.to_be_bytes());
                pdu.extend(count16(values.len()).to_be_bytes());
                pdu.push(count8(values.len() * 2));
                pdu.extend(values.iter().flat_map(|v| v.to_be_bytes()));
            }
        }
    }

    /// Length of the PDU of a successful reply, which RTU needs to know when a reply
    /// is complete.
    pub fn reply_len(&self) -> usize {
        match self {
            Request::Read { table, count, .. } if table.is_bits() => {
                2 + usize::from(*count).div_ceil(8)
            }
            Request::Read { count, .. } => 2 + 2 * usize::from(*count),
            _ => 5,
        }
    }

    /// Checks a reply PDU against this request and extracts its data.
    pub fn decode_reply(&self, pdu: &[u8]) -> Result<Reply, ReplyError> {
        let function = self.function();
        let (&code, data) = pdu.split_first().ok_or_else(|| malformed("empty reply"))?;
        if code == function | 0x80 {
            return match data {
                [exception] => Err(ReplyError::Exception(Exception(*exception))),
                _ => Err(malformed(format!("exception reply of {} bytes", pdu.len()))),
            };
        }
        if code != function {
            return Err(malformed(format!(
                "function code {code} in reply to function {function}"
            )));
        }
        match self {
            Request::Read { table, count, .. } => {
                let (&byte_count, payload) = data
                    .split_first()
                    .ok_or_else(|| malformed("no byte count"))?;
                let expected = self.reply_len() - 2;
                if usize::from(byte_count) != expected || payload.len() != expected {
                    return Err(malformed(format!(
                        "{} data bytes (byte count {byte_count}) where {expected} were expected",
                        payload.len()
                    )));
                }
                if table.is_bits() {
                    Ok(Reply::Bits(unpack_bits(payload, usize::from(*count))))
                } else {
                    Ok(Reply::Registers(
                        payload
                            .chunks_exact(2)
                            .map(|c| u16::from_be_bytes([c[0], c[1]]))
                            .collect(),
                    ))
                }
            }
            Request::WriteCoil { .. } | Request::WriteRegister { .. } => {
                if pdu == self.encode() {
                    Ok(Reply::Written)
                } else {
                    Err(malformed("the echo differs from the request"))
                }
            }
            Request::WriteCoils { .. } | Request::WriteRegisters { .. } => {
                let request = self.encode();
                if pdu.len() == 5 && request.get(..5) == Some(pdu) {
                    Ok(Reply::Written)
                } else {
                    Err(malformed("the echoed address or quantity differs"))
                }
            }
        }
    }
}

/// An MBAP header as read off a TCP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbapHeader {
    pub transaction: u16,
    pub unit: u8,
    /// Length of the PDU that follows the header.
    pub pdu_len: usize,
}

/// Frames a PDU for Modbus TCP (the tests and the fuzz target frame raw bytes).
#[cfg(any(test, feature = "fuzz"))]
pub fn mbap_frame(transaction: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(MBAP_HEADER_LEN + pdu.len());
    mbap_frame_with(&mut frame, transaction, unit, |f| f.extend_from_slice(pdu));
    frame
}

/// Replaces `frame` with the Modbus TCP frame of `request`, reusing its buffer.
pub fn write_mbap_frame(frame: &mut Vec<u8>, transaction: u16, unit: u8, request: &Request) {
    frame.clear();
    mbap_frame_with(frame, transaction, unit, |f| request.encode_into(f));
}

/// Appends a header, the PDU that `pdu` appends, and sets the header's length field.
fn mbap_frame_with(
    frame: &mut Vec<u8>,
    transaction: u16,
    unit: u8,
    pdu: impl FnOnce(&mut Vec<u8>),
) {
    let start = frame.len();
    frame.extend(transaction.to_be_bytes());
    frame.extend([0, 0, 0, 0]);
    frame.push(unit);
    pdu(frame);
    let length = count16(frame.len() - start - MBAP_HEADER_LEN + 1).to_be_bytes();
    if let Some(field) = frame.get_mut(start + 4..start + 6) {
        field.copy_from_slice(&length);
    }
}

/// Parses the seven header bytes of a Modbus TCP frame.
pub fn mbap_header(bytes: &[u8; MBAP_HEADER_LEN]) -> Result<MbapHeader, ReplyError> {
    let transaction = u16::from_be_bytes([bytes[0], bytes[1]]);
    let protocol = u16::from_be_bytes([bytes[2], bytes[3]]);
    let length = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
    if protocol != 0 {
        return Err(malformed(format!(
            "MBAP protocol {protocol}, expected 0 (Modbus)"
        )));
    }
    if !(2..=MAX_PDU_LEN + 1).contains(&length) {
        return Err(malformed(format!("MBAP length {length} out of range")));
    }
    Ok(MbapHeader {
        transaction,
        unit: bytes[6],
        pdu_len: length - 1,
    })
}

/// CRC-16/MODBUS: polynomial 0xA001 (reflected 0x8005), initial value 0xFFFF.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0xffff, |crc, &byte| {
        (0..8).fold(crc ^ u16::from(byte), |c, _| {
            if c & 1 == 1 {
                (c >> 1) ^ 0xa001
            } else {
                c >> 1
            }
        })
    })
}

/// Frames a PDU for Modbus RTU: slave address, PDU, CRC low byte first.
pub fn rtu_frame(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(pdu.len() + 3);
    frame.push(unit);
    frame.extend_from_slice(pdu);
    frame.extend(crc16(&frame).to_le_bytes());
    frame
}

/// Length of an RTU reply whose PDU is `pdu_len` bytes.
pub fn rtu_len(pdu_len: usize) -> usize {
    pdu_len + 3
}

/// Checks an RTU reply's length, CRC and slave address, and returns its PDU.
pub fn rtu_unframe(unit: u8, frame: &[u8]) -> Result<&[u8], ReplyError> {
    let [address, .., crc_lo, crc_hi] = frame else {
        return Err(malformed(format!("RTU frame of {} bytes", frame.len())));
    };
    if frame.len() < 4 {
        return Err(malformed(format!("RTU frame of {} bytes", frame.len())));
    }
    let body = &frame[..frame.len() - 2];
    let crc = u16::from_le_bytes([*crc_lo, *crc_hi]);
    if crc16(body) != crc {
        return Err(malformed(format!(
            "CRC {crc:04x} where {:04x} was expected",
            crc16(body)
        )));
    }
    if *address != unit {
        return Err(malformed(format!(
            "reply from slave {address}, expected {unit}"
        )));
    }
    Ok(&body[1..])
}

/// The silence that ends an RTU frame: 3.5 characters at the line's speed, rounded up
/// to whole milliseconds and never under 5 ms (OS serial timing is coarser than the
/// 1.75 ms the standard fixes for fast lines).
pub fn rtu_silence_ms(baud_rate: u32, bits_per_char: u32) -> u32 {
    let bits = 35 * u64::from(bits_per_char);
    let ms = (bits * 1000).div_ceil(10 * u64::from(baud_rate.max(1)));
    u32::try_from(ms).unwrap_or(u32::MAX).max(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(table: Table, address: u16, count: u16) -> Request {
        Request::Read {
            table,
            address,
            count,
        }
    }

    #[test]
    fn known_rtu_frames() {
        let pdu = read(Table::Holding, 0, 10).encode();
        assert_eq!(pdu, [0x03, 0x00, 0x00, 0x00, 0x0a]);
        assert_eq!(
            rtu_frame(1, &pdu),
            [0x01, 0x03, 0x00, 0x00, 0x00, 0x0a, 0xc5, 0xcd]
        );
        assert_eq!(
            rtu_frame(1, &read(Table::Coil, 0x13, 0x25).encode()),
            [0x01, 0x01, 0x00, 0x13, 0x00, 0x25, 0x0c, 0x14]
        );
        assert_eq!(
            rtu_frame(
                0x11,
                &Request::WriteRegister {
                    address: 1,
                    value: 3
                }
                .encode()
            ),
            [0x11, 0x06, 0x00, 0x01, 0x00, 0x03, 0x9a, 0x9b]
        );
        assert_eq!(crc16(&[]), 0xffff);
        assert_eq!(crc16(b"123456789"), 0x4b37);
    }

    #[test]
    fn rtu_unframe_checks_crc_and_address() {
        let reply = rtu_frame(1, &[0x03, 0x02, 0x00, 0x2a]);
        assert_eq!(rtu_unframe(1, &reply).unwrap(), [0x03, 0x02, 0x00, 0x2a]);
        assert!(
            rtu_unframe(2, &reply)
                .unwrap_err()
                .to_string()
                .contains("slave 1")
        );
        let mut garbled = reply.clone();
        garbled[3] ^= 1;
        assert!(
            rtu_unframe(1, &garbled)
                .unwrap_err()
                .to_string()
                .contains("CRC")
        );
        assert!(rtu_unframe(1, &[1, 2, 3]).is_err());
        assert!(rtu_unframe(1, &[]).is_err());
        assert_eq!(rtu_len(read(Table::Holding, 0, 3).reply_len()), 5 + 2 * 3);
    }

    #[test]
    fn request_pdus() {
        assert_eq!(
            read(Table::DiscreteInput, 0xc4, 0x16).encode(),
            [0x02, 0x00, 0xc4, 0x00, 0x16]
        );
        assert_eq!(
            read(Table::Input, 8, 1).encode(),
            [0x04, 0x00, 0x08, 0x00, 0x01]
        );
        assert_eq!(
            Request::WriteCoil {
                address: 0xac,
                value: true
            }
            .encode(),
            [0x05, 0x00, 0xac, 0xff, 0x00]
        );
        assert_eq!(
            Request::WriteCoils {
                address: 0x13,
                values: vec![
                    true, false, true, true, false, false, true, true, true, false
                ],
            }
            .encode(),
            [0x0f, 0x00, 0x13, 0x00, 0x0a, 0x02, 0xcd, 0x01]
        );
        assert_eq!(
            Request::WriteRegisters {
                address: 1,
                values: vec![0x000a, 0x0102]
            }
            .encode(),
            [0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0a, 0x01, 0x02]
        );
    }

    #[test]
    fn read_replies_are_checked_and_decoded() {
        let request = read(Table::Holding, 0, 2);
        assert_eq!(request.reply_len(), 6);
        assert_eq!(
            request.decode_reply(&[0x03, 0x04, 0x00, 0x2a, 0xff, 0xfe]),
            Ok(Reply::Registers(vec![42, 0xfffe]))
        );
        for bad in [
            &[0x03, 0x02, 0x00, 0x2a][..],
            &[0x03, 0x04, 0x00, 0x2a, 0xff],
            &[0x04, 0x04, 0x00, 0x2a, 0xff, 0xfe],
            &[],
        ] {
            assert!(
                matches!(request.decode_reply(bad), Err(ReplyError::Malformed(_))),
                "{bad:?}"
            );
        }
        let coils = read(Table::Coil, 0x13, 10);
        assert_eq!(coils.reply_len(), 4);
        assert_eq!(
            coils.decode_reply(&[0x01, 0x02, 0xcd, 0x01]),
            Ok(Reply::Bits(vec![
                true, false, true, true, false, false, true, true, true, false
            ]))
        );
    }

    #[test]
    fn exceptions_are_named() {
        let request = read(Table::Holding, 0, 1);
        let err = request.decode_reply(&[0x83, 0x02]).unwrap_err();
        assert_eq!(err, ReplyError::Exception(Exception(2)));
        assert_eq!(err.to_string(), "illegal data address (exception 2)");
        assert_eq!(
            Exception(11).to_string(),
            "gateway target device failed to respond (exception 11)"
        );
        assert!(Exception(11).means_unreachable());
        assert!(Exception(10).means_unreachable());
        assert!(!Exception(4).means_unreachable());
        assert_eq!(
            Exception(0x42).to_string(),
            "unknown exception (exception 66)"
        );
        assert!(matches!(
            request.decode_reply(&[0x83]),
            Err(ReplyError::Malformed(_))
        ));
    }

    #[test]
    fn write_echoes_are_checked() {
        let single = Request::WriteRegister {
            address: 5,
            value: 30,
        };
        assert_eq!(
            single.decode_reply(&[0x06, 0x00, 0x05, 0x00, 0x1e]),
            Ok(Reply::Written)
        );
        assert!(
            single
                .decode_reply(&[0x06, 0x00, 0x05, 0x00, 0x1f])
                .is_err()
        );
        let many = Request::WriteRegisters {
            address: 5,
            values: vec![1, 2],
        };
        assert_eq!(
            many.decode_reply(&[0x10, 0x00, 0x05, 0x00, 0x02]),
            Ok(Reply::Written)
        );
        assert!(many.decode_reply(&[0x10, 0x00, 0x05, 0x00, 0x01]).is_err());
        assert_eq!(
            many.decode_reply(&[0x90, 0x03]),
            Err(ReplyError::Exception(Exception(3)))
        );
    }

    #[test]
    fn mbap_frames_and_headers() {
        let frame = mbap_frame(0x1234, 7, &read(Table::Holding, 0x6b, 3).encode());
        let mut reused = vec![0xaa; 40];
        write_mbap_frame(&mut reused, 0x1234, 7, &read(Table::Holding, 0x6b, 3));
        assert_eq!(reused, frame);
        assert_eq!(
            frame,
            [
                0x12, 0x34, 0x00, 0x00, 0x00, 0x06, 0x07, 0x03, 0x00, 0x6b, 0x00, 0x03
            ]
        );
        let header: [u8; 7] = [0x12, 0x34, 0, 0, 0, 9, 7];
        assert_eq!(
            mbap_header(&header),
            Ok(MbapHeader {
                transaction: 0x1234,
                unit: 7,
                pdu_len: 8
            })
        );
        assert!(mbap_header(&[0, 1, 0, 1, 0, 3, 1]).is_err(), "protocol 1");
        assert!(mbap_header(&[0, 1, 0, 0, 0, 1, 1]).is_err(), "no PDU");
        assert!(mbap_header(&[0, 1, 0, 0, 1, 0, 1]).is_err(), "too long");
    }

    #[test]
    fn rtu_silence_is_three_and_a_half_characters() {
        assert_eq!(rtu_silence_ms(19_200, 11), 5);
        assert_eq!(rtu_silence_ms(9_600, 11), 5);
        assert_eq!(rtu_silence_ms(1_200, 11), 33);
        assert_eq!(rtu_silence_ms(2_400, 10), 15);
        assert_eq!(rtu_silence_ms(0, 11), 38_500);
    }

    #[test]
    fn tables_and_their_limits() {
        assert!(Table::Holding.is_writable() && !Table::Input.is_writable());
        assert_eq!(Table::Coil.read_limit(), 2000);
        assert_eq!(Table::Input.read_limit(), 125);
    }
}
