//! OPC UA over TCP (UA-TCP, Part 6 §7.1) and the secure conversation layer (§6.7)
//! under policy None or a signing policy (chunks protected by `security`), without I/O:
//! bytes in, bytes and decoded responses out.
//!
//! The transport messages (HEL, ACK, ERR) and the chunk headers are written here; every
//! service body (and every built-in type inside the headers: strings, byte strings,
//! node IDs, status codes) is encoded and decoded by `async-opcua-types`.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use crate::security::{self, Keys, Mode, Policy, SecurityError};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};

use opcua_types::{
    ActivateSessionResponse, BinaryDecodable, BinaryEncodable, ByteString, CloseSessionResponse,
    ContextOwned, CreateMonitoredItemsResponse, CreateSessionResponse, CreateSubscriptionResponse,
    DecodingOptions, GetEndpointsResponse, MessageInfo, NodeId, ObjectId,
    OpenSecureChannelResponse, PublishResponse, ReadResponse, RepublishResponse, ServiceFault,
    StatusCode, UAString, WriteResponse,
};

/// The SecurityPolicy URI of policy None.
pub const POLICY_NONE: &str = "http://opcfoundation.org/UA/SecurityPolicy#None";

/// Size of the message header every UA-TCP message starts with (type, chunk, size).
pub const HEADER_LEN: usize = 8;

/// What we offer the server in Hello, and the floor both sides must accept (§7.1.2.3).
const BUFFER_SIZE: u32 = 65_536;
const MIN_BUFFER_SIZE: u32 = 8_192;
/// The largest response we assemble, so a server cannot make us buffer without bound.
pub const MAX_MESSAGE: u32 = 4 << 20;
/// The most chunks one response may span.
const MAX_CHUNKS: u32 = 256;
/// The most elements of one array in a response (one per property in Read, Write
/// and CreateMonitoredItems).
const MAX_ARRAY: usize = 100_000;
/// Responses being assembled at once (chunks of different requests may interleave).
const MAX_PARTIAL: usize = 8;

/// A UA-TCP or secure-conversation protocol failure, or a server `ERR`/abort.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The server sent bytes that are not the protocol (or not what was due).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server closed the connection with an Error message.
    #[error("server error {status}: {reason}")]
    Server { status: String, reason: String },
    /// A limit (message size, chunk count) was exceeded.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// A signature, decryption or certificate check failed.
    #[error("security: {0}")]
    Security(#[from] SecurityError),
}

fn protocol(why: impl Into<String>) -> WireError {
    WireError::Protocol(why.into())
}

fn decoding(what: &str, e: impl std::fmt::Display) -> WireError {
    protocol(format!("cannot decode {what}: {e}"))
}

/// Buffer sizes the server acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest chunk we may send (the server's receive buffer).
    pub send_chunk: u32,
    /// The largest message the server takes (0: no limit).
    pub max_message: u32,
    /// The most chunks the server takes per message (0: no limit).
    pub max_chunks: u32,
}

/// How many bytes of `buf` make the first complete UA-TCP message, if it is all there.
/// A size below the header or above the chunk limit is an error, so a corrupt length
/// cannot make the reader wait or buffer forever.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if (size as usize) < HEADER_LEN || size > BUFFER_SIZE.max(MAX_MESSAGE) {
        return Err(protocol(format!("message size {size} is out of range")));
    }
    let size = size as usize;
    Ok((buf.len() >= size).then_some(size))
}

/// Takes the first complete message off the front of `buf`.
pub fn take_frame(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, WireError> {
    Ok(frame_len(buf)?.map(|len| {
        let rest = buf.split_off(len);
        std::mem::replace(buf, rest)
    }))
}

fn header(kind: &[u8; 3], chunk: u8, body: &[u8]) -> Result<Vec<u8>, WireError> {
    let size = u32::try_from(body.len() + HEADER_LEN)
        .map_err(|_| WireError::Limit("message over 4 GiB".to_owned()))?;
    let mut out = Vec::with_capacity(body.len() + HEADER_LEN);
    out.extend_from_slice(kind);
    out.push(chunk);
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

fn encode_into<T: BinaryEncodable>(out: &mut Vec<u8>, value: &T, ctx: &ContextOwned) {
    // Writing into a Vec cannot fail; byte_len is exact for the library's types.
    let _ = value.encode(out, &ctx.context());
}

/// The Hello message for `endpoint_url`.
pub fn hello(endpoint_url: &str) -> Result<Vec<u8>, WireError> {
    let ctx = ContextOwned::default();
    let mut body = Vec::new();
    for field in [0, BUFFER_SIZE, BUFFER_SIZE, MAX_MESSAGE, MAX_CHUNKS] {
        body.extend_from_slice(&u32::to_le_bytes(field));
    }
    encode_into(&mut body, &UAString::from(endpoint_url), &ctx);
    header(b"HEL", b'F', &body)
}

fn read_u32(stream: &mut impl Read, what: &str) -> Result<u32, WireError> {
    let mut bytes = [0; 4];
    stream
        .read_exact(&mut bytes)
        .map_err(|_| protocol(format!("{what} is cut short")))?;
    Ok(u32::from_le_bytes(bytes))
}

/// The server's Error message (`ERR`, or the body of an abort chunk) as an error.
fn server_error(body: &[u8]) -> WireError {
    let ctx = ContextOwned::default();
    let mut stream = Cursor::new(body);
    let status = match read_u32(&mut stream, "the error") {
        Ok(code) => StatusCode::from(code).to_string(),
        Err(e) => return e,
    };
    let reason = UAString::decode(&mut stream, &ctx.context())
        .ok()
        .and_then(|s| s.value().clone())
        .unwrap_or_default();
    WireError::Server { status, reason }
}

/// Reads the server's reply to Hello: Acknowledge, or Error.
pub fn acknowledge(frame: &[u8]) -> Result<Limits, WireError> {
    let (kind, body) = split(frame)?;
    match kind {
        b"ACK" => {
            let mut stream = Cursor::new(body);
            let _version = read_u32(&mut stream, "Acknowledge")?;
            let receive = read_u32(&mut stream, "Acknowledge")?;
            let _send = read_u32(&mut stream, "Acknowledge")?;
            let max_message = read_u32(&mut stream, "Acknowledge")?;
            let max_chunks = read_u32(&mut stream, "Acknowledge")?;
            if receive < MIN_BUFFER_SIZE {
                return Err(protocol(format!(
                    "the server's receive buffer of {receive} bytes is below {MIN_BUFFER_SIZE}"
                )));
            }
            Ok(Limits {
                send_chunk: receive.min(BUFFER_SIZE),
                max_message,
                max_chunks,
            })
        }
        b"ERR" => Err(server_error(body)),
        other => Err(protocol(format!(
            "expected Acknowledge, got {}",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// The message type and everything after the 8-byte header.
fn split(frame: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    if frame.len() < HEADER_LEN {
        return Err(protocol("a message shorter than its header"));
    }
    Ok((&frame[..3], &frame[HEADER_LEN..]))
}

/// The kind of secure-conversation message a request travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// OpenSecureChannel (asymmetric security header).
    Open,
    /// Any service request (symmetric security header).
    Message,
    /// CloseSecureChannel.
    Close,
}

/// A response the client understands, decoded by `async-opcua-types`.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    OpenSecureChannel(Box<OpenSecureChannelResponse>),
    CreateSession(Box<CreateSessionResponse>),
    ActivateSession(Box<ActivateSessionResponse>),
    CloseSession(Box<CloseSessionResponse>),
    Read(Box<ReadResponse>),
    Write(Box<WriteResponse>),
    CreateSubscription(Box<CreateSubscriptionResponse>),
    CreateMonitoredItems(Box<CreateMonitoredItemsResponse>),
    Publish(Box<PublishResponse>),
    Republish(Box<RepublishResponse>),
    ServiceFault(Box<ServiceFault>),
    GetEndpoints(Box<GetEndpointsResponse>),
}

impl Response {
    /// The service result of the response header.
    pub fn service_result(&self) -> StatusCode {
        match self {
            Response::OpenSecureChannel(r) => r.response_header.service_result,
            Response::CreateSession(r) => r.response_header.service_result,
            Response::ActivateSession(r) => r.response_header.service_result,
            Response::CloseSession(r) => r.response_header.service_result,
            Response::Read(r) => r.response_header.service_result,
            Response::Write(r) => r.response_header.service_result,
            Response::CreateSubscription(r) => r.response_header.service_result,
            Response::CreateMonitoredItems(r) => r.response_header.service_result,
            Response::Publish(r) => r.response_header.service_result,
            Response::Republish(r) => r.response_header.service_result,
            Response::ServiceFault(r) => r.response_header.service_result,
            Response::GetEndpoints(r) => r.response_header.service_result,
        }
    }
}

/// A whole response and the request it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub request_id: u32,
    pub response: Response,
}

/// What a signing policy needs: our key and certificate, the server's (pinned).
#[derive(Debug, Clone)]
pub struct Secure {
    pub policy: Policy,
    pub mode: Mode,
    pub own_key: RsaPrivateKey,
    /// Our application certificate (DER), sent in OpenSecureChannel.
    pub own_cert: Vec<u8>,
    pub server_key: RsaPublicKey,
    /// The server's certificate (DER), the one its OPN chunks must carry.
    pub server_cert: Vec<u8>,
}

/// Symmetric keys of one token: ours to send, the server's to receive.
#[derive(Debug, Clone)]
struct TokenKeys {
    token_id: u32,
    send: Keys,
    receive: Keys,
}

/// One secure channel: its IDs and sequence numbers, and responses being assembled from
/// chunks.
#[derive(Debug)]
pub struct Channel {
    secure: Option<Secure>,
    /// The current token's keys, and the previous token's until the server moves on
    /// (it may still answer with the old one just after a renewal).
    keys: Option<TokenKeys>,
    old_keys: Option<TokenKeys>,
    limits: Limits,
    channel_id: u32,
    token_id: u32,
    next_sequence: u32,
    next_request: u32,
    /// The server's last sequence number, to catch lost or replayed chunks.
    last_server_sequence: Option<u32>,
    partial: BTreeMap<u32, (u32, Vec<u8>)>,
    ctx: ContextOwned,
}

impl Channel {
    pub fn new(limits: Limits) -> Channel {
        let options = DecodingOptions {
            max_message_size: MAX_MESSAGE as usize,
            max_chunk_count: MAX_CHUNKS as usize,
            // The library's defaults (1,000 elements, 64 KiB strings) would refuse the
            // Read response of a device with more properties or a larger value; the
            // message size bounds them all anyway.
            max_array_length: MAX_ARRAY,
            max_string_length: MAX_MESSAGE as usize,
            max_byte_string_length: MAX_MESSAGE as usize,
            ..DecodingOptions::default()
        };
        Channel {
            secure: None,
            keys: None,
            old_keys: None,
            limits,
            channel_id: 0,
            token_id: 0,
            next_sequence: 1,
            next_request: 1,
            last_server_sequence: None,
            partial: BTreeMap::new(),
            ctx: ContextOwned::new_default(Default::default(), options),
        }
    }

    /// A channel under a signing policy.
    pub fn secured(limits: Limits, secure: Secure) -> Channel {
        Channel {
            secure: Some(secure),
            ..Channel::new(limits)
        }
    }

    /// The signing policy, if any.
    pub fn secure(&self) -> Option<&Secure> {
        self.secure.as_ref()
    }

    /// Derives the symmetric keys of `token_id` from both nonces (a no-op under None).
    pub fn derive_keys(&mut self, token_id: u32, client_nonce: &[u8], server_nonce: &[u8]) {
        let Some(secure) = &self.secure else { return };
        let (send, receive) = Keys::pair(secure.policy, client_nonce, server_nonce);
        let new = TokenKeys {
            token_id,
            send,
            receive,
        };
        self.old_keys = self.keys.replace(new);
    }

    /// Takes the channel and token IDs the server issued.
    pub fn opened(&mut self, channel_id: u32, token_id: u32) {
        self.channel_id = channel_id;
        self.token_id = token_id;
    }

    pub fn channel_id(&self) -> u32 {
        self.channel_id
    }

    /// Encodes `request` as the chunks of one message; returns its request ID.
    pub fn encode<T: BinaryEncodable + MessageInfo>(
        &mut self,
        kind: Kind,
        request: &T,
    ) -> Result<(u32, Vec<Vec<u8>>), WireError> {
        let mut body = Vec::new();
        encode_into(&mut body, &NodeId::from(request.type_id()), &self.ctx);
        encode_into(&mut body, request, &self.ctx);
        if self.limits.max_message != 0 && body.len() > self.limits.max_message as usize {
            return Err(WireError::Limit(format!(
                "a request of {} bytes is over the server's {}-byte limit",
                body.len(),
                self.limits.max_message
            )));
        }
        let request_id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        let security = self.security_header(kind);
        // Sequence header (8 bytes) and the security header precede each chunk's body.
        let offset = HEADER_LEN + 4 + security.len();
        let overhead = offset + 8;
        let room = self.room(kind, offset);
        if room == 0 {
            return Err(WireError::Limit(
                "the server's buffer is too small".to_owned(),
            ));
        }
        let pieces: Vec<&[u8]> = if body.is_empty() {
            vec![&body[..]]
        } else {
            body.chunks(room).collect()
        };
        if self.limits.max_chunks != 0 && pieces.len() > self.limits.max_chunks as usize {
            return Err(WireError::Limit(format!(
                "a request of {} chunks is over the server's limit of {}",
                pieces.len(),
                self.limits.max_chunks
            )));
        }
        let last = pieces.len() - 1;
        let mut chunks = Vec::with_capacity(pieces.len());
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut chunk = Vec::with_capacity(overhead + piece.len());
            chunk.extend_from_slice(&self.channel_id.to_le_bytes());
            chunk.extend_from_slice(&security);
            chunk.extend_from_slice(&self.next_sequence.to_le_bytes());
            chunk.extend_from_slice(&request_id.to_le_bytes());
            chunk.extend_from_slice(piece);
            // Sequence numbers wrap below 1024 after 4294966271 (Part 6 §6.7.2.4).
            self.next_sequence = if self.next_sequence >= 4_294_966_271 {
                1
            } else {
                self.next_sequence + 1
            };
            let kind_bytes = match kind {
                Kind::Open => b"OPN",
                Kind::Message => b"MSG",
                Kind::Close => b"CLO",
            };
            let plain = header(kind_bytes, if i == last { b'F' } else { b'C' }, &chunk)?;
            chunks.push(self.protect(kind, plain, offset)?);
        }
        Ok((request_id, chunks))
    }

    /// The body bytes one chunk carries once the security header, sequence header,
    /// padding and signature are in, so a protected chunk stays within the server's
    /// receive buffer.
    fn room(&self, kind: Kind, offset: usize) -> usize {
        let chunk = self.limits.send_chunk as usize;
        match (&self.secure, kind) {
            (None, _) => chunk.saturating_sub(offset + 8),
            (Some(s), Kind::Open) => {
                let cipher = s.server_key.size();
                let plain = cipher.saturating_sub(42);
                let blocks = chunk.saturating_sub(offset) / cipher.max(1);
                // Padding size bytes (two for keys over 2048 bits) and our signature.
                (blocks * plain).saturating_sub(8 + 2 + s.own_key.size())
            }
            (Some(s), _) => match s.mode {
                Mode::Sign => chunk.saturating_sub(offset + 8 + 32),
                Mode::SignAndEncrypt => {
                    let encrypted = chunk.saturating_sub(offset) / 16 * 16;
                    encrypted.saturating_sub(8 + 32 + 1)
                }
            },
        }
    }

    fn protect(&self, kind: Kind, plain: Vec<u8>, offset: usize) -> Result<Vec<u8>, WireError> {
        let Some(secure) = &self.secure else {
            return Ok(plain);
        };
        Ok(match kind {
            Kind::Open => {
                security::protect_asymmetric(plain, offset, &secure.own_key, &secure.server_key)?
            }
            Kind::Message | Kind::Close => {
                let keys = self
                    .keys
                    .as_ref()
                    .ok_or_else(|| protocol("a message before the secure channel has keys"))?;
                security::protect_symmetric(plain, offset, &keys.send, secure.mode)?
            }
        })
    }

    fn security_header(&self, kind: Kind) -> Vec<u8> {
        let mut out = Vec::new();
        match kind {
            Kind::Open => match &self.secure {
                None => {
                    encode_into(&mut out, &UAString::from(POLICY_NONE), &self.ctx);
                    encode_into(&mut out, &ByteString::null(), &self.ctx);
                    encode_into(&mut out, &ByteString::null(), &self.ctx);
                }
                Some(s) => {
                    encode_into(&mut out, &UAString::from(s.policy.uri()), &self.ctx);
                    encode_into(&mut out, &ByteString::from(s.own_cert.clone()), &self.ctx);
                    let thumbprint = security::thumbprint(&s.server_cert).to_vec();
                    encode_into(&mut out, &ByteString::from(thumbprint), &self.ctx);
                }
            },
            Kind::Message | Kind::Close => out.extend_from_slice(&self.token_id.to_le_bytes()),
        }
        out
    }

    /// Takes one message from the server. Returns the response once its final chunk
    /// is in; intermediate chunks return `None`.
    pub fn receive(&mut self, frame: &[u8]) -> Result<Option<Incoming>, WireError> {
        let (kind, rest) = split(frame)?;
        let chunk_type = frame[3];
        if kind == b"ERR" {
            return Err(server_error(rest));
        }
        let mut stream = Cursor::new(rest);
        let channel_id = read_u32(&mut stream, "the chunk header")?;
        let opened: Vec<u8>;
        match kind {
            b"OPN" => {
                let ctx = self.ctx.context();
                let policy = UAString::decode(&mut stream, &ctx)
                    .map_err(|e| decoding("the security header", e))?;
                let expected = self.secure.as_ref().map_or(POLICY_NONE, |s| s.policy.uri());
                if policy.as_ref() != expected {
                    return Err(protocol(format!(
                        "the server answered with security policy {policy}"
                    )));
                }
                let sender = ByteString::decode(&mut stream, &ctx)
                    .map_err(|e| decoding("the security header", e))?;
                let receiver = ByteString::decode(&mut stream, &ctx)
                    .map_err(|e| decoding("the security header", e))?;
                if let Some(s) = &self.secure {
                    // The server must sign with the pinned certificate and encrypt for
                    // ours.
                    let sender = sender.as_ref();
                    if sender != s.server_cert.as_slice() {
                        return Err(SecurityError::Key(format!(
                            "the server signed with certificate {}, not the trusted one {}",
                            security::thumbprint_hex(sender),
                            security::thumbprint_hex(&s.server_cert)
                        ))
                        .into());
                    }
                    if receiver.as_ref() != security::thumbprint(&s.own_cert).as_slice() {
                        return Err(protocol(
                            "the server encrypted for another client certificate",
                        ));
                    }
                    let position = usize::try_from(stream.position()).unwrap_or(usize::MAX);
                    opened = security::unprotect_asymmetric(
                        frame,
                        HEADER_LEN + position,
                        &s.own_key,
                        &s.server_key,
                    )?;
                    stream = Cursor::new(opened.get(HEADER_LEN..).unwrap_or_default());
                    stream.set_position(position as u64);
                }
            }
            b"MSG" | b"CLO" => {
                if channel_id != self.channel_id {
                    return Err(protocol(format!(
                        "a message for channel {channel_id}, not {}",
                        self.channel_id
                    )));
                }
                let token = read_u32(&mut stream, "the security header")?;
                if let Some(s) = &self.secure {
                    let keys = [&self.keys, &self.old_keys]
                        .into_iter()
                        .flatten()
                        .find(|k| k.token_id == token)
                        .ok_or_else(|| protocol(format!("a message for unknown token {token}")))?;
                    opened = security::unprotect_symmetric(
                        frame,
                        HEADER_LEN + 8,
                        &keys.receive,
                        s.mode,
                    )?;
                    stream = Cursor::new(opened.get(HEADER_LEN..).unwrap_or_default());
                    stream.set_position(8);
                }
            }
            other => {
                return Err(protocol(format!(
                    "unexpected message type {}",
                    String::from_utf8_lossy(other)
                )));
            }
        }
        let sequence = read_u32(&mut stream, "the sequence header")?;
        let request_id = read_u32(&mut stream, "the sequence header")?;
        self.check_sequence(sequence)?;
        let start = usize::try_from(stream.position()).unwrap_or(usize::MAX);
        let body = stream.get_ref().get(start..).unwrap_or_default();
        match chunk_type {
            b'A' => {
                self.partial.remove(&request_id);
                Err(server_error(body))
            }
            b'C' => {
                if !self.partial.contains_key(&request_id) && self.partial.len() >= MAX_PARTIAL {
                    return Err(WireError::Limit(format!(
                        "more than {MAX_PARTIAL} responses in chunks at once"
                    )));
                }
                let (count, buf) = self.partial.entry(request_id).or_default();
                *count += 1;
                buf.extend_from_slice(body);
                if *count >= MAX_CHUNKS || buf.len() > MAX_MESSAGE as usize {
                    self.partial.remove(&request_id);
                    return Err(WireError::Limit(format!(
                        "a response over {MAX_CHUNKS} chunks or {MAX_MESSAGE} bytes"
                    )));
                }
                Ok(None)
            }
            b'F' => {
                let whole = match self.partial.remove(&request_id) {
                    Some((_, mut buf)) => {
                        buf.extend_from_slice(body);
                        if buf.len() > MAX_MESSAGE as usize {
                            return Err(WireError::Limit(format!(
                                "a response over {MAX_MESSAGE} bytes"
                            )));
                        }
                        buf
                    }
                    None => body.to_vec(),
                };
                let response = self.decode(&whole)?;
                Ok(Some(Incoming {
                    request_id,
                    response,
                }))
            }
            other => Err(protocol(format!("unknown chunk type {other:#04x}"))),
        }
    }

    fn check_sequence(&mut self, sequence: u32) -> Result<(), WireError> {
        if let Some(last) = self.last_server_sequence {
            let expected = last.wrapping_add(1);
            let wrapped = last > 4_294_966_271 && sequence < 1024;
            if sequence != expected && !wrapped {
                return Err(protocol(format!(
                    "sequence number {sequence} after {last}: a chunk was lost or replayed"
                )));
            }
        }
        self.last_server_sequence = Some(sequence);
        Ok(())
    }

    /// Decodes a whole message body: the encoding's node ID, then that response.
    fn decode(&self, body: &[u8]) -> Result<Response, WireError> {
        let ctx = self.ctx.context();
        let mut stream = Cursor::new(body);
        let type_id = NodeId::decode(&mut stream, &ctx).map_err(|e| decoding("a type ID", e))?;
        let object = type_id
            .as_object_id()
            .map_err(|_| protocol(format!("unknown response type {type_id}")))?;
        macro_rules! decode {
            ($variant:ident, $ty:ty) => {
                Response::$variant(Box::new(
                    <$ty>::decode(&mut stream, &ctx).map_err(|e| decoding(stringify!($ty), e))?,
                ))
            };
        }
        Ok(match object {
            ObjectId::OpenSecureChannelResponse_Encoding_DefaultBinary => {
                decode!(OpenSecureChannel, OpenSecureChannelResponse)
            }
            ObjectId::CreateSessionResponse_Encoding_DefaultBinary => {
                decode!(CreateSession, CreateSessionResponse)
            }
            ObjectId::ActivateSessionResponse_Encoding_DefaultBinary => {
                decode!(ActivateSession, ActivateSessionResponse)
            }
            ObjectId::CloseSessionResponse_Encoding_DefaultBinary => {
                decode!(CloseSession, CloseSessionResponse)
            }
            ObjectId::ReadResponse_Encoding_DefaultBinary => decode!(Read, ReadResponse),
            ObjectId::WriteResponse_Encoding_DefaultBinary => decode!(Write, WriteResponse),
            ObjectId::CreateSubscriptionResponse_Encoding_DefaultBinary => {
                decode!(CreateSubscription, CreateSubscriptionResponse)
            }
            ObjectId::CreateMonitoredItemsResponse_Encoding_DefaultBinary => {
                decode!(CreateMonitoredItems, CreateMonitoredItemsResponse)
            }
            ObjectId::PublishResponse_Encoding_DefaultBinary => decode!(Publish, PublishResponse),
            ObjectId::RepublishResponse_Encoding_DefaultBinary => {
                decode!(Republish, RepublishResponse)
            }
            ObjectId::ServiceFault_Encoding_DefaultBinary => decode!(ServiceFault, ServiceFault),
            ObjectId::GetEndpointsResponse_Encoding_DefaultBinary => {
                decode!(GetEndpoints, GetEndpointsResponse)
            }
            other => return Err(protocol(format!("unexpected response {other:?}"))),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opcua_types::{ReadRequest, ResponseHeader};

    pub(crate) const LIMITS: Limits = Limits {
        send_chunk: 8192,
        max_message: 0,
        max_chunks: 0,
    };

    /// A server-side chunk: what a server would send for `response`.
    pub(crate) fn server_chunk<T: BinaryEncodable + MessageInfo>(
        kind: &[u8; 3],
        chunk: u8,
        channel: u32,
        sequence: u32,
        request_id: u32,
        response: &T,
    ) -> Vec<u8> {
        let ctx = ContextOwned::default();
        let mut body = channel.to_le_bytes().to_vec();
        if kind == b"OPN" {
            encode_into(&mut body, &UAString::from(POLICY_NONE), &ctx);
            encode_into(&mut body, &ByteString::null(), &ctx);
            encode_into(&mut body, &ByteString::null(), &ctx);
        } else {
            body.extend_from_slice(&1u32.to_le_bytes());
        }
        body.extend_from_slice(&sequence.to_le_bytes());
        body.extend_from_slice(&request_id.to_le_bytes());
        encode_into(&mut body, &NodeId::from(response.type_id()), &ctx);
        encode_into(&mut body, response, &ctx);
        header(kind, chunk, &body).unwrap()
    }

    pub(crate) fn ack(receive: u32) -> Vec<u8> {
        let mut body = Vec::new();
        for field in [0, receive, 65536, 0, 0] {
            body.extend_from_slice(&u32::to_le_bytes(field));
        }
        header(b"ACK", b'F', &body).unwrap()
    }

    #[test]
    fn hello_carries_the_url_and_limits() {
        let hello = hello("opc.tcp://127.0.0.1:4840/x").unwrap();
        assert_eq!(&hello[..4], b"HELF");
        assert_eq!(frame_len(&hello).unwrap(), Some(hello.len()));
        assert_eq!(&hello[12..16], &BUFFER_SIZE.to_le_bytes());
        assert!(hello.ends_with(b"\x1a\0\0\0opc.tcp://127.0.0.1:4840/x"));
    }

    #[test]
    fn acknowledge_and_error() {
        let limits = acknowledge(&ack(16384)).unwrap();
        assert_eq!(limits.send_chunk, 16384);
        assert!(matches!(
            acknowledge(&ack(100)),
            Err(WireError::Protocol(_))
        ));
        let ctx = ContextOwned::default();
        let mut body = StatusCode::BadTcpEndpointUrlInvalid
            .bits()
            .to_le_bytes()
            .to_vec();
        encode_into(&mut body, &UAString::from("no such endpoint"), &ctx);
        let err = header(b"ERR", b'F', &body).unwrap();
        assert_eq!(
            acknowledge(&err),
            Err(WireError::Server {
                status: "BadTcpEndpointUrlInvalid".to_owned(),
                reason: "no such endpoint".to_owned()
            })
        );
    }

    #[test]
    fn frames_are_taken_whole_and_bad_sizes_refused() {
        let hello = hello("opc.tcp://h:1").unwrap();
        let mut buf = hello.clone();
        buf.extend_from_slice(&hello[..5]);
        assert_eq!(take_frame(&mut buf).unwrap(), Some(hello.clone()));
        assert_eq!(take_frame(&mut buf).unwrap(), None);
        assert_eq!(buf, &hello[..5]);
        assert!(frame_len(b"MSGF\x03\0\0\0").is_err());
        assert!(frame_len(b"MSGF\xff\xff\xff\xff").is_err());
    }

    #[test]
    fn large_requests_are_split_into_chunks_and_numbered() {
        let mut channel = Channel::new(LIMITS);
        channel.opened(7, 1);
        let nodes = (0..2000)
            .map(|i| opcua_types::ReadValueId::from(NodeId::new(1, i as u32)))
            .collect();
        let request = ReadRequest {
            nodes_to_read: Some(nodes),
            ..Default::default()
        };
        let (id, chunks) = channel.encode(Kind::Message, &request).unwrap();
        assert_eq!(id, 1);
        assert!(chunks.len() > 1, "{} chunks", chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            assert!(chunk.len() <= 8192);
            let last = i == chunks.len() - 1;
            assert_eq!(chunk[3], if last { b'F' } else { b'C' });
            assert_eq!(&chunk[8..12], &7u32.to_le_bytes());
            assert_eq!(&chunk[16..20], &(i as u32 + 1).to_le_bytes(), "sequence");
            assert_eq!(&chunk[20..24], &1u32.to_le_bytes(), "request ID");
        }
        let (id, _) = channel.encode(Kind::Message, &request).unwrap();
        assert_eq!(id, 2);
    }

    #[test]
    fn responses_are_assembled_from_chunks() {
        let mut channel = Channel::new(LIMITS);
        channel.opened(7, 1);
        let response = ReadResponse {
            response_header: ResponseHeader::new_good(5),
            results: Some(vec![opcua_types::DataValue::value_only(42i32)]),
            diagnostic_infos: None,
        };
        let whole = server_chunk(b"MSG", b'F', 7, 10, 3, &response);
        // Split its body over two chunks with their own headers.
        let body = &whole[24..];
        let (a, b) = body.split_at(5);
        let mut first = Vec::new();
        for part in [
            &7u32.to_le_bytes()[..],
            &1u32.to_le_bytes(),
            &10u32.to_le_bytes(),
        ] {
            first.extend_from_slice(part);
        }
        first.extend_from_slice(&3u32.to_le_bytes());
        let mut second = first.clone();
        second[8..12].copy_from_slice(&11u32.to_le_bytes());
        first.extend_from_slice(a);
        second.extend_from_slice(b);
        assert_eq!(
            channel
                .receive(&header(b"MSG", b'C', &first).unwrap())
                .unwrap(),
            None
        );
        let incoming = channel
            .receive(&header(b"MSG", b'F', &second).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(incoming.request_id, 3);
        assert_eq!(incoming.response, Response::Read(Box::new(response)));
    }

    #[test]
    fn responses_past_the_librarys_default_limits_decode() {
        let mut channel = Channel::new(LIMITS);
        channel.opened(7, 1);
        let mut results = vec![opcua_types::DataValue::value_only(1.5f64); 5000];
        results.push(opcua_types::DataValue::value_only(ByteString::from(
            vec![7u8; 200_000],
        )));
        let response = ReadResponse {
            response_header: ResponseHeader::new_good(5),
            results: Some(results),
            diagnostic_infos: None,
        };
        let got = channel
            .receive(&server_chunk(b"MSG", b'F', 7, 1, 1, &response))
            .unwrap()
            .unwrap();
        assert_eq!(got.response, Response::Read(Box::new(response)));
    }

    #[test]
    fn lost_chunks_wrong_channels_and_aborts_are_errors() {
        let mut channel = Channel::new(LIMITS);
        channel.opened(7, 1);
        let fault = ServiceFault {
            response_header: ResponseHeader::new_service_result(1, StatusCode::BadTimeout),
        };
        let got = channel
            .receive(&server_chunk(b"MSG", b'F', 7, 1, 1, &fault))
            .unwrap()
            .unwrap();
        assert_eq!(got.response.service_result(), StatusCode::BadTimeout);
        let skipped = server_chunk(b"MSG", b'F', 7, 3, 2, &fault);
        assert!(
            matches!(channel.receive(&skipped), Err(WireError::Protocol(m)) if m.contains("lost"))
        );
        let mut channel = Channel::new(LIMITS);
        channel.opened(7, 1);
        let other = server_chunk(b"MSG", b'F', 8, 1, 2, &fault);
        assert!(channel.receive(&other).is_err());
        let mut body = Vec::new();
        for v in [7u32, 1, 1, 2, StatusCode::BadEncodingLimitsExceeded.bits()] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        let abort = header(b"MSG", b'A', &body).unwrap();
        assert!(matches!(
            channel.receive(&abort),
            Err(WireError::Server { status, .. }) if status == "BadEncodingLimitsExceeded"
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut channel = Channel::new(LIMITS);
        for junk in [
            &b"MSGF\x0c\0\0\0\0\0\0\0"[..],
            b"XYZF\x08\0\0\0",
            b"MSGF\x20\0\0\0\0\0\0\0\x01\0\0\0\x01\0\0\0\x01\0\0\0\xff\xff\xff",
            b"OPNF\x10\0\0\0\0\0\0\0\xff\xff\xff\x7f",
        ] {
            assert!(channel.receive(junk).is_err(), "{junk:?}");
        }
    }

    /// A client channel under `policy`/`mode` and the server's keys, with 1024-bit RSA
    /// keys (quick to generate in a debug build; the framing is the same at 2048).
    fn secured(policy: Policy, mode: Mode) -> (Channel, RsaPrivateKey, RsaPublicKey) {
        use rand_core::OsRng;
        let client = RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        let server = RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        let client_public = client.to_public_key();
        let channel = Channel::secured(
            LIMITS,
            Secure {
                policy,
                mode,
                own_key: client,
                own_cert: b"client certificate".to_vec(),
                server_key: server.to_public_key(),
                server_cert: b"server certificate".to_vec(),
            },
        );
        (channel, server, client_public)
    }

    /// What the server sends: a plain chunk with the secured OPN header or the token,
    /// then protected as the policy wants.
    fn secured_reply<T: BinaryEncodable + MessageInfo>(
        kind: &[u8; 3],
        sender_cert: &[u8],
        policy: Policy,
        sequence: u32,
        response: &T,
    ) -> (Vec<u8>, usize) {
        let ctx = ContextOwned::default();
        let mut body = 5u32.to_le_bytes().to_vec();
        if kind == b"OPN" {
            encode_into(&mut body, &UAString::from(policy.uri()), &ctx);
            encode_into(&mut body, &ByteString::from(sender_cert.to_vec()), &ctx);
            let thumbprint = security::thumbprint(b"client certificate").to_vec();
            encode_into(&mut body, &ByteString::from(thumbprint), &ctx);
        } else {
            body.extend_from_slice(&1u32.to_le_bytes());
        }
        let offset = HEADER_LEN + body.len();
        body.extend_from_slice(&sequence.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        encode_into(&mut body, &NodeId::from(response.type_id()), &ctx);
        encode_into(&mut body, response, &ctx);
        (header(kind, b'F', &body).unwrap(), offset)
    }

    #[test]
    fn a_secured_channel_opens_and_exchanges_protected_messages() {
        use opcua_types::{OpenSecureChannelRequest, ReadResponse};
        for (policy, mode) in [
            (Policy::Basic256Sha256, Mode::SignAndEncrypt),
            (Policy::Basic256Sha256, Mode::Sign),
            (Policy::Aes128Sha256RsaOaep, Mode::SignAndEncrypt),
        ] {
            let (mut channel, server, client) = secured(policy, mode);
            // The client's OPN: encrypted for the server, signed by the client.
            let (_, chunks) = channel
                .encode(Kind::Open, &OpenSecureChannelRequest::default())
                .unwrap();
            let opn = &chunks[0];
            assert!(opn.windows(18).any(|w| w == b"client certificate"));
            let offset = opn.len() - (opn.len() - 12) / 128 * 128;
            let plain = security::unprotect_asymmetric(opn, offset, &server, &client).unwrap();
            assert_eq!(&plain[offset..offset + 4], &1u32.to_le_bytes());

            // The server's answer from the pinned certificate opens; another is refused
            // with both thumbprints.
            let response = OpenSecureChannelResponse::default();
            let (reply, offset) =
                secured_reply(b"OPN", b"server certificate", policy, 1, &response);
            let sealed = security::protect_asymmetric(reply, offset, &server, &client).unwrap();
            let got = channel.receive(&sealed).unwrap().unwrap();
            assert!(matches!(got.response, Response::OpenSecureChannel(_)));
            let (reply, offset) = secured_reply(b"OPN", b"impostor", policy, 2, &response);
            let sealed = security::protect_asymmetric(reply, offset, &server, &client).unwrap();
            let err = channel.receive(&sealed).unwrap_err().to_string();
            assert!(
                err.contains(&security::thumbprint_hex(b"impostor")),
                "{err}"
            );

            // Symmetric messages both ways with keys from both nonces.
            channel.opened(5, 1);
            channel.derive_keys(1, &[1; 32], &[2; 32]);
            let (client_keys, server_keys) = Keys::pair(policy, &[1; 32], &[2; 32]);
            let request = ReadRequest {
                nodes_to_read: Some(vec![Default::default(); 3]),
                ..Default::default()
            };
            let (_, chunks) = channel.encode(Kind::Message, &request).unwrap();
            let plain =
                security::unprotect_symmetric(&chunks[0], HEADER_LEN + 8, &client_keys, mode)
                    .unwrap();
            assert_eq!(
                &plain[16..20],
                &2u32.to_le_bytes(),
                "the second sequence number"
            );
            let value = UAString::from("a secret reading");
            let response = ReadResponse {
                response_header: ResponseHeader::new_good(1),
                results: Some(vec![opcua_types::DataValue::new_now(value)]),
                ..Default::default()
            };
            let (reply, offset) = secured_reply(b"MSG", b"", policy, 2, &response);
            let sealed = security::protect_symmetric(reply, offset, &server_keys, mode).unwrap();
            assert_eq!(
                sealed.windows(16).any(|w| w == b"a secret reading"),
                mode == Mode::Sign
            );
            let got = channel.receive(&sealed).unwrap().unwrap();
            assert_eq!(got.response, Response::Read(Box::new(response)));
            // A message signed with the client's own keys (a reflection) is refused.
            let (reply, offset) = secured_reply(b"MSG", b"", policy, 3, &ReadResponse::default());
            let sealed = security::protect_symmetric(reply, offset, &client_keys, mode).unwrap();
            assert!(matches!(
                channel.receive(&sealed),
                Err(WireError::Security(_))
            ));
        }
    }
}
