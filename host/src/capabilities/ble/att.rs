//! ATT PDUs of a GATT client (Core spec Vol 3 Part F), and UUIDs. Pure functions: the
//! parsing of what a peripheral sends is unit tested and fuzzed here.

/// The ATT fixed channel.
pub const CID: u16 = 0x0004;
/// The ATT MTU every connection starts with (and keeps if the peripheral will not
/// exchange).
pub const DEFAULT_MTU: u16 = 23;
/// The MTU the client asks for: the largest attribute value (512 bytes) plus a Read
/// Response's header fits, so one read or notification carries any value whole.
pub const CLIENT_MTU: u16 = 517;
/// The longest attribute value (Core spec Vol 3 Part F 3.2.9): a Read Blob walk stops here.
pub const MAX_VALUE: usize = 512;

pub const ERROR_RSP: u8 = 0x01;
pub const EXCHANGE_MTU_REQ: u8 = 0x02;
pub const EXCHANGE_MTU_RSP: u8 = 0x03;
pub const FIND_INFORMATION_REQ: u8 = 0x04;
pub const FIND_INFORMATION_RSP: u8 = 0x05;
pub const READ_BY_TYPE_REQ: u8 = 0x08;
pub const READ_BY_TYPE_RSP: u8 = 0x09;
pub const READ_REQ: u8 = 0x0A;
pub const READ_RSP: u8 = 0x0B;
pub const READ_BLOB_REQ: u8 = 0x0C;
pub const READ_BLOB_RSP: u8 = 0x0D;
pub const READ_BY_GROUP_TYPE_REQ: u8 = 0x10;
pub const READ_BY_GROUP_TYPE_RSP: u8 = 0x11;
pub const WRITE_REQ: u8 = 0x12;
pub const WRITE_RSP: u8 = 0x13;
pub const NOTIFICATION: u8 = 0x1B;
pub const INDICATION: u8 = 0x1D;
pub const CONFIRMATION: u8 = 0x1E;
pub const WRITE_CMD: u8 = 0x52;

/// ATT error: the attribute was not found (ends a discovery).
pub const ATTRIBUTE_NOT_FOUND: u8 = 0x0A;
/// ATT error: the handle does not exist (the peripheral's table changed).
pub const INVALID_HANDLE: u8 = 0x01;
/// ATT error: the offset is past the value's end (ends a Read Blob walk).
pub const INVALID_OFFSET: u8 = 0x07;
/// ATT error: the value fits one read (ends a Read Blob walk).
pub const ATTRIBUTE_NOT_LONG: u8 = 0x0B;
/// ATT error: the request is not supported (our answer to a peripheral's request).
pub const REQUEST_NOT_SUPPORTED: u8 = 0x06;

pub const PRIMARY_SERVICE: u16 = 0x2800;
pub const CHARACTERISTIC: u16 = 0x2803;
pub const CCCD: u16 = 0x2902;
/// GATT's Service Changed characteristic: indicates that handles moved.
pub const SERVICE_CHANGED: u16 = 0x2A05;

/// The Bluetooth base UUID; a 16-bit UUID `x` is `0000xxxx-0000-1000-8000-00805f9b34fb`.
const BASE: u128 = 0x0000_0000_0000_1000_8000_0080_5f9b_34fb;

pub fn from16(short: u16) -> u128 {
    BASE | (u128::from(short) << 96)
}

/// Parses `2a19`, `0000180f`, or 128-bit with or without dashes, in any case.
pub fn parse_uuid(text: &str) -> Option<u128> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    match hex.len() {
        4 => u16::from_str_radix(&hex, 16).ok().map(from16),
        8 => u32::from_str_radix(&hex, 16)
            .ok()
            .map(|v| BASE | (u128::from(v) << 96)),
        32 => u128::from_str_radix(&hex, 16).ok(),
        _ => None,
    }
}

/// `0000180f-0000-1000-8000-00805f9b34fb`.
pub fn format_uuid(u: u128) -> String {
    let h = format!("{u:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A UUID on the wire (2 or 16 bytes, little-endian).
fn wire_uuid(b: &[u8]) -> Option<u128> {
    match b.len() {
        2 => Some(from16(u16::from_le_bytes([b[0], b[1]]))),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Some(u128::from_le_bytes(a))
        }
        _ => None,
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

pub fn read_by_group_type(start: u16, end: u16, uuid: u16) -> Vec<u8> {
    let mut p = vec![READ_BY_GROUP_TYPE_REQ];
    p.extend_from_slice(&start.to_le_bytes());
    p.extend_from_slice(&end.to_le_bytes());
    p.extend_from_slice(&uuid.to_le_bytes());
    p
}

pub fn read_by_type(start: u16, end: u16, uuid: u16) -> Vec<u8> {
    let mut p = read_by_group_type(start, end, uuid);
    p[0] = READ_BY_TYPE_REQ;
    p
}

pub fn find_information(start: u16, end: u16) -> Vec<u8> {
    let mut p = vec![FIND_INFORMATION_REQ];
    p.extend_from_slice(&start.to_le_bytes());
    p.extend_from_slice(&end.to_le_bytes());
    p
}

pub fn read(handle: u16) -> Vec<u8> {
    let mut p = vec![READ_REQ];
    p.extend_from_slice(&handle.to_le_bytes());
    p
}

/// Read Blob Request: the part of a long value from `offset`.
pub fn read_blob(handle: u16, offset: u16) -> Vec<u8> {
    let mut p = vec![READ_BLOB_REQ];
    p.extend_from_slice(&handle.to_le_bytes());
    p.extend_from_slice(&offset.to_le_bytes());
    p
}

/// Exchange MTU Request (as a client) or Response (as a server): our receive MTU.
pub fn exchange_mtu(request: bool, mtu: u16) -> Vec<u8> {
    let mut p = vec![if request {
        EXCHANGE_MTU_REQ
    } else {
        EXCHANGE_MTU_RSP
    }];
    p.extend_from_slice(&mtu.to_le_bytes());
    p
}

/// The MTU a peer's Exchange MTU Request or Response gives, if `pdu` is one.
pub fn parse_mtu(pdu: &[u8]) -> Option<u16> {
    match *pdu.first()? {
        EXCHANGE_MTU_REQ | EXCHANGE_MTU_RSP => u16_at(pdu, 1),
        _ => None,
    }
}

/// The MTU both sides use: the smaller receive MTU, never below the default.
pub fn negotiated(ours: u16, theirs: u16) -> u16 {
    ours.min(theirs).max(DEFAULT_MTU)
}

pub fn write(handle: u16, value: &[u8], with_response: bool) -> Vec<u8> {
    let mut p = vec![if with_response { WRITE_REQ } else { WRITE_CMD }];
    p.extend_from_slice(&handle.to_le_bytes());
    p.extend_from_slice(value);
    p
}

/// An Error Response's code, if `pdu` is one.
pub fn error_code(pdu: &[u8]) -> Option<u8> {
    (pdu.first() == Some(&ERROR_RSP)).then(|| pdu.get(4).copied())?
}

/// A discovered service: handle range and UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    pub start: u16,
    pub end: u16,
    pub uuid: u128,
}

/// A characteristic declaration: properties, value handle, UUID (and its own handle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Declaration {
    pub handle: u16,
    pub properties: u8,
    pub value_handle: u16,
    pub uuid: u128,
}

/// Read By Group Type Response: the services in it.
pub fn parse_services(pdu: &[u8]) -> Option<Vec<Service>> {
    if pdu.first() != Some(&READ_BY_GROUP_TYPE_RSP) {
        return None;
    }
    let len = usize::from(*pdu.get(1)?);
    if len < 6 {
        return None;
    }
    pdu.get(2..)?
        .chunks(len)
        .map(|c| {
            Some(Service {
                start: u16_at(c, 0)?,
                end: u16_at(c, 2)?,
                uuid: wire_uuid(c.get(4..)?)?,
            })
        })
        .collect()
}

/// Read By Type Response for characteristic declarations.
pub fn parse_declarations(pdu: &[u8]) -> Option<Vec<Declaration>> {
    if pdu.first() != Some(&READ_BY_TYPE_RSP) {
        return None;
    }
    let len = usize::from(*pdu.get(1)?);
    if len < 7 {
        return None;
    }
    pdu.get(2..)?
        .chunks(len)
        .map(|c| {
            Some(Declaration {
                handle: u16_at(c, 0)?,
                properties: *c.get(2)?,
                value_handle: u16_at(c, 3)?,
                uuid: wire_uuid(c.get(5..)?)?,
            })
        })
        .collect()
}

/// Find Information Response: (handle, type) pairs.
pub fn parse_information(pdu: &[u8]) -> Option<Vec<(u16, u128)>> {
    if pdu.first() != Some(&FIND_INFORMATION_RSP) {
        return None;
    }
    let size = match *pdu.get(1)? {
        1 => 4,
        2 => 18,
        _ => return None,
    };
    pdu.get(2..)?
        .chunks(size)
        .map(|c| Some((u16_at(c, 0)?, wire_uuid(c.get(2..)?)?)))
        .collect()
}

/// A notification or indication: (value handle, value, is an indication).
pub fn parse_push(pdu: &[u8]) -> Option<(u16, Vec<u8>, bool)> {
    let indication = match *pdu.first()? {
        NOTIFICATION => false,
        INDICATION => true,
        _ => return None,
    };
    Some((u16_at(pdu, 1)?, pdu.get(3..)?.to_vec(), indication))
}

/// Whether `opcode` is a response to one of our requests (as opposed to a request, a
/// command or a push from the peripheral).
pub fn is_response(opcode: u8) -> bool {
    matches!(
        opcode,
        ERROR_RSP
            | EXCHANGE_MTU_RSP
            | FIND_INFORMATION_RSP
            | 0x07
            | READ_BY_TYPE_RSP
            | READ_RSP
            | READ_BLOB_RSP
            | 0x0F
            | READ_BY_GROUP_TYPE_RSP
            | WRITE_RSP
            | 0x17
            | 0x19
    )
}

/// Whether `opcode` is a request that expects a response (the peripheral acting as a
/// client); commands (bit 6) and pushes expect none.
pub fn is_request(opcode: u8) -> bool {
    opcode & 0x40 == 0
        && !is_response(opcode)
        && !matches!(opcode, NOTIFICATION | INDICATION | CONFIRMATION)
}

/// Our Error Response to a request we do not serve.
pub fn not_supported(opcode: u8) -> Vec<u8> {
    vec![ERROR_RSP, opcode, 0, 0, REQUEST_NOT_SUPPORTED]
}

/// A readable name for an ATT error code.
pub fn error_name(code: u8) -> String {
    let name = match code {
        0x01 => "invalid handle",
        0x02 => "read not permitted",
        0x03 => "write not permitted",
        0x05 => "insufficient authentication",
        0x06 => "request not supported",
        0x07 => "invalid offset",
        0x08 => "insufficient authorization",
        0x0A => "attribute not found",
        0x0B => "attribute not long",
        0x0D => "invalid attribute value length",
        0x0E => "unlikely error",
        0x0F => "insufficient encryption",
        0x11 => "insufficient resources",
        0x13 => "value not allowed",
        0x80..=0x9F => "application error",
        _ => "error",
    };
    format!("{name} (ATT 0x{code:02X})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_parse_in_every_spelling_and_print_long() {
        let battery = parse_uuid("2A19").unwrap();
        assert_eq!(format_uuid(battery), "00002a19-0000-1000-8000-00805f9b34fb");
        assert_eq!(parse_uuid("00002a19"), Some(battery));
        assert_eq!(
            parse_uuid("00002A19-0000-1000-8000-00805F9B34FB"),
            Some(battery)
        );
        assert_eq!(parse_uuid("00002a190000100080000080 5f9b34fb"), None);
        let custom = parse_uuid("226c000064764566756266734470666d").unwrap();
        assert_eq!(format_uuid(custom), "226c0000-6476-4566-7562-66734470666d");
        for bad in ["", "2A1", "2A19X", "+2A1", "0x2A19"] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn discovery_responses_parse_and_truncated_ones_are_refused() {
        let services = [
            READ_BY_GROUP_TYPE_RSP,
            6,
            1,
            0,
            5,
            0,
            0x0F,
            0x18,
            6,
            0,
            9,
            0,
            0x0A,
            0x18,
        ];
        assert_eq!(
            parse_services(&services),
            Some(vec![
                Service {
                    start: 1,
                    end: 5,
                    uuid: from16(0x180F)
                },
                Service {
                    start: 6,
                    end: 9,
                    uuid: from16(0x180A)
                },
            ])
        );
        assert_eq!(parse_services(&services[..services.len() - 1]), None);
        assert_eq!(parse_services(&[READ_BY_GROUP_TYPE_RSP, 0]), None);
        let decl = [READ_BY_TYPE_RSP, 7, 2, 0, 0x12, 3, 0, 0x19, 0x2A];
        assert_eq!(
            parse_declarations(&decl),
            Some(vec![Declaration {
                handle: 2,
                properties: 0x12,
                value_handle: 3,
                uuid: from16(0x2A19)
            }])
        );
        assert_eq!(parse_declarations(&decl[..8]), None);
        let info = [FIND_INFORMATION_RSP, 1, 4, 0, 0x02, 0x29];
        assert_eq!(parse_information(&info), Some(vec![(4, from16(CCCD))]));
        assert_eq!(parse_information(&[FIND_INFORMATION_RSP, 3, 4, 0]), None);
        assert_eq!(error_code(&[ERROR_RSP, READ_REQ, 3, 0, 0x02]), Some(0x02));
        assert_eq!(error_code(&[ERROR_RSP, READ_REQ, 3]), None);
        assert_eq!(
            parse_push(&[NOTIFICATION, 3, 0, 42]),
            Some((3, vec![42], false))
        );
        assert_eq!(parse_push(&[INDICATION, 3, 0]), Some((3, vec![], true)));
        assert_eq!(parse_push(&[INDICATION, 3]), None);
    }

    #[test]
    fn the_mtu_is_the_smaller_of_both_and_never_below_the_default() {
        assert_eq!(parse_mtu(&[EXCHANGE_MTU_RSP, 0x05, 0x02]), Some(517));
        assert_eq!(parse_mtu(&[EXCHANGE_MTU_REQ, 247, 0]), Some(247));
        assert_eq!(parse_mtu(&[EXCHANGE_MTU_RSP, 247]), None);
        assert_eq!(parse_mtu(&[READ_RSP, 247, 0]), None);
        assert_eq!(negotiated(CLIENT_MTU, 247), 247);
        assert_eq!(negotiated(CLIENT_MTU, 1000), CLIENT_MTU);
        // A peer that claims less than the minimum gets the minimum.
        assert_eq!(negotiated(CLIENT_MTU, 5), DEFAULT_MTU);
    }

    #[test]
    fn requests_frame_as_the_spec_says() {
        assert_eq!(read(3), [READ_REQ, 3, 0]);
        assert_eq!(write(3, &[1], true), [WRITE_REQ, 3, 0, 1]);
        assert_eq!(write(3, &[1], false), [WRITE_CMD, 3, 0, 1]);
        assert_eq!(
            read_by_type(1, 0xFFFF, CHARACTERISTIC),
            [READ_BY_TYPE_REQ, 1, 0, 0xFF, 0xFF, 0x03, 0x28]
        );
        assert_eq!(read_blob(3, 22), [READ_BLOB_REQ, 3, 0, 22, 0]);
        assert_eq!(
            exchange_mtu(true, CLIENT_MTU),
            [EXCHANGE_MTU_REQ, 0x05, 0x02]
        );
        assert_eq!(exchange_mtu(false, 247), [EXCHANGE_MTU_RSP, 247, 0]);
        assert!(is_request(READ_REQ) && is_request(EXCHANGE_MTU_REQ));
        assert!(is_response(EXCHANGE_MTU_RSP) && is_response(READ_BLOB_RSP));
        assert!(!is_request(WRITE_CMD) && !is_request(NOTIFICATION) && !is_request(READ_RSP));
        assert_eq!(error_name(0x80), "application error (ATT 0x80)");
    }
}
