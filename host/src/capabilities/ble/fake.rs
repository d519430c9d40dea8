//! A fake controller with one peripheral behind it, over an in-memory stream: enough HCI
//! and ATT for the capability's unit tests (find, connect, discover, read, write,
//! notify, a refused write, a full controller) without Bumble.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::hci::{H4_ACL, H4_EVENT, op};
use super::{BoxFuture, Controller, HciIo, Transport, att};

/// The fake peripheral's address, as printed.
pub const ADDRESS: &str = "C0:98:E5:49:00:01";
pub const NAME: &str = "Fake-Sensor";
/// Its one GATT table: Battery service (1-4): level 0x2A19 at 3 (read, notify), CCCD 4;
/// a second characteristic 0x2A56 at 6 (read, write) whose writes are refused when
/// `refuse_writes` is set; a Model Number String 0x2A24 at 8 (read) longer than one
/// response at the MTU of 23 the fake settles on, so reads of it take Read Blobs.
const LEVEL: u8 = 87;

/// The long value at handle 8.
pub fn long_value() -> Vec<u8> {
    (0..50u8).map(|i| b'a' + i % 26).collect()
}

#[derive(Default)]
pub struct FakeTransport {
    /// The controller answers LE Create Connection with "connection limit exceeded".
    pub full: AtomicBool,
    pub refuse_writes: AtomicBool,
    /// The next read of the level answers "invalid handle" (as after a table change).
    pub invalid_once: AtomicBool,
    /// Service discoveries started (Read By Group Type from handle 1).
    pub discoveries: AtomicUsize,
}

impl Transport for Arc<FakeTransport> {
    fn open(&self, _: &Controller) -> BoxFuture<'_, std::io::Result<Box<dyn HciIo>>> {
        let (ours, theirs) = tokio::io::duplex(4096);
        tokio::spawn(run(theirs, Arc::clone(self)));
        Box::pin(async move { Ok(Box::new(ours) as Box<dyn HciIo>) })
    }
}

fn event(code: u8, params: &[u8]) -> Vec<u8> {
    let mut p = vec![H4_EVENT, code, params.len() as u8];
    p.extend_from_slice(params);
    p
}

fn complete(opcode: u16, ret: &[u8]) -> Vec<u8> {
    let mut p = vec![1];
    p.extend_from_slice(&opcode.to_le_bytes());
    p.extend_from_slice(ret);
    event(0x0E, &p)
}

fn att_packet(pdu: &[u8]) -> Vec<u8> {
    let mut p = vec![H4_ACL, 0x40, 0x20];
    p.extend_from_slice(&((pdu.len() + 4) as u16).to_le_bytes());
    p.extend_from_slice(&(pdu.len() as u16).to_le_bytes());
    p.extend_from_slice(&att::CID.to_le_bytes());
    p.extend_from_slice(pdu);
    p
}

fn address() -> [u8; 6] {
    super::hci::Address::parse(ADDRESS).unwrap_or_default()
}

/// Answers the host until the stream closes.
async fn run(mut io: DuplexStream, fake: Arc<FakeTransport>) {
    let mut out: Vec<u8> = Vec::new();
    loop {
        let mut kind = [0u8; 1];
        if io.read_exact(&mut kind).await.is_err() {
            return;
        }
        if kind[0] == 0x01 {
            let mut head = [0u8; 3];
            if io.read_exact(&mut head).await.is_err() {
                return;
            }
            let mut params = vec![0u8; usize::from(head[2])];
            if io.read_exact(&mut params).await.is_err() {
                return;
            }
            let opcode = u16::from_le_bytes([head[0], head[1]]);
            match opcode {
                op::LE_READ_BUFFER_SIZE => out.extend(complete(opcode, &[0, 27, 0, 4])),
                op::LE_SET_SCAN_ENABLE if params.first() == Some(&1) => {
                    out.extend(complete(opcode, &[0]));
                    let name = NAME.as_bytes();
                    let mut data = vec![name.len() as u8 + 1, 0x09];
                    data.extend_from_slice(name);
                    let mut adv = vec![0x02, 1, 0x00, 1];
                    adv.extend_from_slice(&address());
                    adv.push(data.len() as u8);
                    adv.extend_from_slice(&data);
                    adv.push(0xC0);
                    out.extend(event(0x3E, &adv));
                }
                op::LE_CREATE_CONNECTION => {
                    if fake.full.load(Ordering::SeqCst) {
                        out.extend(event(0x0F, &[0x09, 1, 0x0D, 0x20]));
                    } else {
                        out.extend(event(0x0F, &[0, 1, 0x0D, 0x20]));
                        let mut c = vec![0x01, 0, 0x40, 0x00, 0, params[5]];
                        c.extend_from_slice(&params[6..12]);
                        c.extend_from_slice(&[0x18, 0, 0, 0, 0xC8, 0, 0]);
                        out.extend(event(0x3E, &c));
                    }
                }
                op::DISCONNECT => {
                    out.extend(event(0x0F, &[0, 1, 0x06, 0x04]));
                    out.extend(event(0x05, &[0, 0x40, 0x00, 0x16]));
                }
                _ => out.extend(complete(opcode, &[0])),
            }
        } else {
            let mut head = [0u8; 4];
            if io.read_exact(&mut head).await.is_err() {
                return;
            }
            let mut data = vec![0u8; usize::from(u16::from_le_bytes([head[2], head[3]]))];
            if io.read_exact(&mut data).await.is_err() {
                return;
            }
            out.extend(event(0x13, &[1, 0x40, 0, 1, 0]));
            let pdu = data.get(4..).unwrap_or_default();
            let handle = |i: usize| u16::from_le_bytes([pdu[i], pdu[i + 1]]);
            let rsp: Vec<u8> = match pdu.first().copied() {
                Some(att::READ_BY_GROUP_TYPE_REQ) if handle(1) == 1 => {
                    fake.discoveries.fetch_add(1, Ordering::SeqCst);
                    vec![att::READ_BY_GROUP_TYPE_RSP, 6, 1, 0, 8, 0, 0x0F, 0x18]
                }
                Some(att::READ_REQ)
                    if handle(1) == 3 && fake.invalid_once.swap(false, Ordering::SeqCst) =>
                {
                    vec![att::ERROR_RSP, att::READ_REQ, 3, 0, att::INVALID_HANDLE]
                }
                Some(att::EXCHANGE_MTU_REQ) => att::exchange_mtu(false, att::DEFAULT_MTU),
                Some(att::READ_BY_TYPE_REQ) if handle(1) == 1 => vec![
                    att::READ_BY_TYPE_RSP,
                    7,
                    2,
                    0,
                    0x12,
                    3,
                    0,
                    0x19,
                    0x2A,
                    5,
                    0,
                    0x0A,
                    6,
                    0,
                    0x56,
                    0x2A,
                    7,
                    0,
                    0x02,
                    8,
                    0,
                    0x24,
                    0x2A,
                ],
                Some(att::FIND_INFORMATION_REQ) if handle(1) == 4 => {
                    vec![att::FIND_INFORMATION_RSP, 1, 4, 0, 0x02, 0x29]
                }
                Some(att::READ_REQ) if handle(1) == 3 => vec![att::READ_RSP, LEVEL],
                Some(att::READ_REQ) if handle(1) == 6 => vec![att::READ_RSP, 0],
                Some(att::READ_REQ) if handle(1) == 8 => {
                    let mut r = vec![att::READ_RSP];
                    r.extend(long_value().iter().take(22));
                    r
                }
                Some(att::READ_BLOB_REQ) if handle(1) == 8 => {
                    let offset = usize::from(handle(3));
                    let value = long_value();
                    match value.get(offset..) {
                        Some(rest) => {
                            let mut r = vec![att::READ_BLOB_RSP];
                            r.extend(rest.iter().take(22));
                            r
                        }
                        None => vec![
                            att::ERROR_RSP,
                            att::READ_BLOB_REQ,
                            8,
                            0,
                            att::INVALID_OFFSET,
                        ],
                    }
                }
                Some(att::WRITE_REQ) if handle(1) == 4 => {
                    out.extend(att_packet(&[att::WRITE_RSP]));
                    out.extend(att_packet(&[att::NOTIFICATION, 3, 0, 42]));
                    Vec::new()
                }
                Some(att::WRITE_REQ) if handle(1) == 6 => {
                    if fake.refuse_writes.load(Ordering::SeqCst) {
                        vec![att::ERROR_RSP, att::WRITE_REQ, 6, 0, 0x80]
                    } else {
                        vec![att::WRITE_RSP]
                    }
                }
                Some(op) => vec![att::ERROR_RSP, op, 0, 0, att::ATTRIBUTE_NOT_FOUND],
                None => Vec::new(),
            };
            if !rsp.is_empty() {
                out.extend(att_packet(&rsp));
            }
        }
        if io.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}
