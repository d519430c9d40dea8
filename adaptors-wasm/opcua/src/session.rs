//! An OPC UA client session over any [`Link`]: Hello, OpenSecureChannel (and its
//! renewal), CreateSession/ActivateSession, Read, Write, one subscription with its
//! monitored items, and the Publish loop with keep-alive and Republish of missed
//! notifications. The link is a trait so the whole flow runs in unit tests against a
//! scripted server.

use std::collections::{BTreeSet, VecDeque};

use opcua_types::{
    ActivateSessionRequest, AnonymousIdentityToken, ApplicationDescription, ApplicationType,
    BinaryEncodable, ByteString, CloseSecureChannelRequest, CloseSessionRequest,
    CreateMonitoredItemsRequest, CreateSessionRequest, CreateSubscriptionRequest,
    DataChangeNotification, DataValue, DateTime, EndpointDescription, ExtensionObject,
    GetEndpointsRequest, LocalizedText, MessageInfo, MessageSecurityMode,
    MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters, NodeId, NotificationMessage,
    OpenSecureChannelRequest, PublishRequest, PublishResponse, ReadRequest, ReadValueId,
    RepublishRequest, RequestHeader, SecurityTokenRequestType, SignatureData, StatusCode,
    SubscriptionAcknowledgement, TimestampsToReturn, UAString, UserNameIdentityToken,
    UserTokenType, Variant, WriteRequest, WriteValue,
};

use crate::security::{self, Mode};
use crate::spec::Identity;
use crate::wire::{self, Channel, Incoming, Kind, Response, Secure, WireError};

/// Our application URI, in CreateSession and in a generated certificate's
/// subjectAltName (servers check that the two agree).
pub const APPLICATION_URI: &str = "urn:octopus:adaptor:opcua";
/// Publish requests kept at the server, so a notification never waits for a round trip.
const PUBLISH_DEPTH: usize = 2;
/// Missed notifications asked again per gap; older ones are given up.
const MAX_REPUBLISH: u32 = 16;
/// Receive calls per wait, on top of the wait's time limit.
const MAX_RECEIVES: u32 = 10_000;
/// Keep-alives the server sends per silent publishing cycle count.
const KEEP_ALIVE_COUNT: u32 = 10;
/// The secure channel token lifetime we ask for.
const TOKEN_LIFETIME_MS: u32 = 600_000;

/// Why the link failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("timed out")]
    Timeout,
    #[error("the server closed the connection")]
    Closed,
    #[error("not permitted: {0}")]
    Denied(String),
    #[error("{0}")]
    Io(String),
}

/// A byte stream to the server.
pub trait Link {
    fn send(&mut self, bytes: &[u8], timeout_ms: u32) -> Result<(), LinkError>;
    /// Whatever arrives within `timeout_ms` (at least one byte), `Timeout` if nothing.
    fn receive(&mut self, timeout_ms: u32) -> Result<Vec<u8>, LinkError>;
    /// Milliseconds of a monotonic clock.
    fn now_ms(&self) -> u64;
}

/// Why the session failed. Any of these ends the session; the caller reconnects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("{service} failed: {status}")]
    Service {
        service: &'static str,
        status: String,
    },
    #[error("{0}")]
    Refused(String),
    #[error("no answer to {0} in time")]
    Timeout(&'static str),
}

impl SessionError {
    /// Whether retrying cannot help until the spec or the server changes: a refused
    /// login or grant.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            SessionError::Refused(_)
                | SessionError::Link(LinkError::Denied(_))
                | SessionError::Service {
                    service: "ActivateSession",
                    ..
                }
        )
    }
}

fn service_error(service: &'static str, status: StatusCode) -> SessionError {
    SessionError::Service {
        service,
        status: status.to_string(),
    }
}

/// One changed value from a subscription: the item's client handle and its value.
pub type Change = (u32, DataValue);

/// The subscription and its publish bookkeeping.
#[derive(Debug)]
struct Subscription {
    id: u32,
    /// The longest silence before the subscription counts as lost.
    silence_ms: u64,
    last_sequence: Option<u32>,
    last_heard_ms: u64,
    acks: Vec<SubscriptionAcknowledgement>,
}

/// A connected, activated session.
#[derive(Debug)]
pub struct Session<L: Link> {
    link: L,
    channel: Channel,
    rx: Vec<u8>,
    auth: NodeId,
    timeout_ms: u32,
    /// When the current round (one poll's work) must end, on the link's clock: every
    /// wait stops there, so a poll stays inside the limb's call budget however many
    /// requests it makes.
    until: u64,
    next_handle: u32,
    /// When the channel token was issued and for how long.
    token: (u64, u32),
    publishing: BTreeSet<u32>,
    /// Publish responses that arrived while waiting for something else.
    published: VecDeque<PublishResponse>,
    subscription: Option<Subscription>,
    depth: usize,
}

impl<L: Link> Session<L> {
    /// Says Hello, opens a secure channel (policy None) and activates a session as
    /// `identity`; each request waits at most `timeout_ms`, and all of them end by
    /// `until` (see [`Session::limit_round`]).
    // Policy None only: the tests and examples/live.rs.
    #[cfg(any(test, feature = "fuzz"))]
    pub fn open(
        link: L,
        endpoint: &str,
        identity: &Identity,
        timeout_ms: u32,
        until: u64,
    ) -> Result<Session<L>, SessionError> {
        Session::open_secured(link, endpoint, identity, None, &[], timeout_ms, until)
    }

    /// [`Session::open`] under a signing policy when `secure` is given: the channel is
    /// opened with nonces and our certificate, the session is created with them and
    /// activated with our signature over the server's certificate and nonce.
    ///
    /// A password the server wants encrypted is sealed with the server's key: the
    /// channel's, or under policy None the certificate from CreateSession, which must
    /// then match one of `pins`.
    pub fn open_secured(
        link: L,
        endpoint: &str,
        identity: &Identity,
        secure: Option<Secure>,
        pins: &[Pin],
        timeout_ms: u32,
        until: u64,
    ) -> Result<Session<L>, SessionError> {
        let mut session = Session::connect(link, endpoint, secure, timeout_ms, until)?;
        let (client_certificate, client_nonce) = match session.channel.secure() {
            Some(s) => (ByteString::from(s.own_cert.clone()), nonce(s)?),
            None => (ByteString::null(), Vec::new()),
        };
        let request_header = session.header();
        let created = match session.call(
            Kind::Message,
            "CreateSession",
            &CreateSessionRequest {
                request_header,
                client_description: ApplicationDescription {
                    application_uri: UAString::from(APPLICATION_URI),
                    product_uri: UAString::from("urn:octopus"),
                    application_name: LocalizedText::new("", "Octopus OPC UA adaptor"),
                    application_type: ApplicationType::Client,
                    ..Default::default()
                },
                endpoint_url: UAString::from(endpoint),
                session_name: UAString::from("octopus"),
                requested_session_timeout: 60_000.0,
                max_response_message_size: wire::MAX_MESSAGE,
                client_certificate: client_certificate.clone(),
                client_nonce: ByteString::from(client_nonce.clone()),
                ..Default::default()
            },
        )? {
            Response::CreateSession(r) => r,
            other => return Err(unexpected("CreateSession", &other)),
        };
        session.auth = created.authentication_token.clone();
        let (policy_uri, mode) = match session.channel.secure() {
            Some(s) => (s.policy.uri(), message_mode(s.mode)),
            None => (wire::POLICY_NONE, MessageSecurityMode::None),
        };
        let server_key = match session.channel.secure() {
            Some(s) => Some(s.server_key.clone()),
            None => {
                let cert = created.server_certificate.as_ref();
                if !cert.is_empty() && trusts(pins, cert) {
                    Some(security::public_key(cert).map_err(WireError::from)?)
                } else {
                    None
                }
            }
        };
        let token = identity_token(
            identity,
            created.server_endpoints.as_deref().unwrap_or(&[]),
            (policy_uri, mode),
            server_key
                .as_ref()
                .map(|key| (key, created.server_nonce.as_ref())),
        )?;
        let client_signature = match session.channel.secure() {
            None => SignatureData::default(),
            Some(s) => {
                // The server proves it holds its key: its signature over our
                // certificate and nonce (Part 4 §5.6.2).
                let mut signed = client_certificate.as_ref().to_vec();
                signed.extend_from_slice(&client_nonce);
                let theirs = created.server_signature.signature.as_ref();
                if !security::rsa_verify(&s.server_key, &signed, theirs) {
                    return Err(SessionError::Refused(
                        "the server's CreateSession signature does not verify".to_owned(),
                    ));
                }
                // Ours over the server's certificate and nonce.
                let mut data = s.server_cert.clone();
                data.extend_from_slice(created.server_nonce.as_ref());
                SignatureData {
                    algorithm: UAString::from(RSA_SHA256),
                    signature: ByteString::from(
                        security::rsa_sign(&s.own_key, &data).map_err(WireError::from)?,
                    ),
                }
            }
        };
        let request_header = session.header();
        let activated = session.call(
            Kind::Message,
            "ActivateSession",
            &ActivateSessionRequest {
                request_header,
                user_identity_token: token,
                client_signature,
                ..Default::default()
            },
        )?;
        match activated {
            Response::ActivateSession(_) => Ok(session),
            other => Err(unexpected("ActivateSession", &other)),
        }
    }

    /// Hello and OpenSecureChannel: a channel without a session yet.
    fn connect(
        link: L,
        endpoint: &str,
        secure: Option<Secure>,
        timeout_ms: u32,
        until: u64,
    ) -> Result<Session<L>, SessionError> {
        let mut link = link;
        link.send(&wire::hello(endpoint)?, timeout_ms)?;
        let mut rx = Vec::new();
        let deadline = (link.now_ms() + u64::from(timeout_ms)).min(until);
        let ack =
            next_frame(&mut link, &mut rx, deadline)?.ok_or(SessionError::Timeout("Hello"))?;
        let limits = wire::acknowledge(&ack)?;
        let mut session = Session {
            link,
            channel: match secure {
                Some(secure) => Channel::secured(limits, secure),
                None => Channel::new(limits),
            },
            rx,
            auth: NodeId::null(),
            timeout_ms,
            until,
            next_handle: 1,
            token: (0, 0),
            publishing: BTreeSet::new(),
            published: VecDeque::new(),
            subscription: None,
            depth: PUBLISH_DEPTH,
        };
        session.open_channel(SecurityTokenRequestType::Issue)?;
        Ok(session)
    }

    fn open_channel(&mut self, kind: SecurityTokenRequestType) -> Result<(), SessionError> {
        let (security_mode, client_nonce) = match self.channel.secure() {
            Some(s) => (message_mode(s.mode), nonce(s)?),
            None => (MessageSecurityMode::None, Vec::new()),
        };
        let request = OpenSecureChannelRequest {
            request_header: self.header(),
            client_protocol_version: 0,
            request_type: kind,
            security_mode,
            client_nonce: if client_nonce.is_empty() {
                ByteString::null()
            } else {
                ByteString::from(client_nonce.clone())
            },
            requested_lifetime: TOKEN_LIFETIME_MS,
        };
        match self.call(Kind::Open, "OpenSecureChannel", &request)? {
            Response::OpenSecureChannel(r) => {
                let token = &r.security_token;
                if kind == SecurityTokenRequestType::Renew
                    && token.channel_id != self.channel.channel_id()
                {
                    return Err(SessionError::Refused(
                        "the server renewed another secure channel".to_owned(),
                    ));
                }
                self.channel.opened(token.channel_id, token.token_id);
                if self.channel.secure().is_some() {
                    let server_nonce = r.server_nonce.as_ref();
                    if server_nonce.len() < client_nonce.len() {
                        return Err(SessionError::Refused(format!(
                            "the server's nonce has {} bytes, fewer than {}",
                            server_nonce.len(),
                            client_nonce.len()
                        )));
                    }
                    self.channel
                        .derive_keys(token.token_id, &client_nonce, server_nonce);
                }
                self.token = (self.link.now_ms(), token.revised_lifetime.max(1000));
                Ok(())
            }
            other => Err(unexpected("OpenSecureChannel", &other)),
        }
    }

    /// Renews the channel token once 75 % of its lifetime has passed (Part 4 §5.5.2).
    pub fn renew_if_due(&mut self) -> Result<(), SessionError> {
        let (issued, lifetime) = self.token;
        if self.link.now_ms().saturating_sub(issued) * 4 >= u64::from(lifetime) * 3 {
            self.open_channel(SecurityTokenRequestType::Renew)?;
        }
        Ok(())
    }

    /// Ends every wait of this round by `until` (monotonic ms of the link's clock).
    pub fn limit_round(&mut self, until: u64) {
        self.until = until;
    }

    /// The deadline of a request sent now.
    fn deadline(&self, wait_ms: u32) -> u64 {
        (self.link.now_ms() + u64::from(wait_ms)).min(self.until)
    }

    fn header(&mut self) -> RequestHeader {
        let handle = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        let mut header = RequestHeader::new(&self.auth, &DateTime::now(), handle);
        header.timeout_hint = self.timeout_ms;
        header
    }

    fn send<T: BinaryEncodable + MessageInfo>(
        &mut self,
        kind: Kind,
        request: &T,
    ) -> Result<u32, SessionError> {
        let (id, chunks) = self.channel.encode(kind, request)?;
        for chunk in chunks {
            let left = self
                .deadline(self.timeout_ms)
                .saturating_sub(self.link.now_ms());
            if left == 0 {
                return Err(SessionError::Timeout("sending"));
            }
            self.link
                .send(&chunk, u32::try_from(left).unwrap_or(u32::MAX))?;
        }
        Ok(id)
    }

    /// Sends a request and waits for its response, keeping publish responses that
    /// arrive meanwhile. A bad service result (or a ServiceFault) is an error.
    fn call<T: BinaryEncodable + MessageInfo>(
        &mut self,
        kind: Kind,
        service: &'static str,
        request: &T,
    ) -> Result<Response, SessionError> {
        let id = self.send(kind, request)?;
        let deadline = self.deadline(self.timeout_ms);
        loop {
            let Some(incoming) = self.next_incoming(deadline)? else {
                return Err(SessionError::Timeout(service));
            };
            if incoming.request_id == id {
                let status = incoming.response.service_result();
                if status.is_bad() {
                    return Err(service_error(service, status));
                }
                return Ok(incoming.response);
            }
            self.keep(incoming)?;
        }
    }

    /// Files a response that is not the one being waited for.
    fn keep(&mut self, incoming: Incoming) -> Result<(), SessionError> {
        if !self.publishing.remove(&incoming.request_id) {
            return Err(SessionError::Wire(WireError::Protocol(format!(
                "a response to request {} which is not pending",
                incoming.request_id
            ))));
        }
        match incoming.response {
            Response::Publish(r) => self.published.push_back(*r),
            Response::ServiceFault(f) => {
                let status = f.response_header.service_result;
                // BadTimeout: the request outlived its hint; BadTooManyPublishRequests:
                // the server holds fewer than we sent. Neither ends the session.
                if status == StatusCode::BadTooManyPublishRequests {
                    self.depth = self.publishing.len().max(1);
                } else if status != StatusCode::BadTimeout {
                    return Err(service_error("Publish", status));
                }
            }
            other => return Err(unexpected("Publish", &other)),
        }
        Ok(())
    }

    fn next_incoming(&mut self, deadline: u64) -> Result<Option<Incoming>, SessionError> {
        for _ in 0..MAX_RECEIVES {
            let Some(frame) = next_frame(&mut self.link, &mut self.rx, deadline)? else {
                return Ok(None);
            };
            if let Some(incoming) = self.channel.receive(&frame)? {
                return Ok(Some(incoming));
            }
        }
        Ok(None)
    }

    /// Reads the Value attribute of each node, in order.
    pub fn read(&mut self, nodes: &[NodeId]) -> Result<Vec<DataValue>, SessionError> {
        let request = ReadRequest {
            request_header: self.header(),
            max_age: 0.0,
            timestamps_to_return: TimestampsToReturn::Both,
            nodes_to_read: Some(nodes.iter().map(ReadValueId::from).collect()),
        };
        match self.call(Kind::Message, "Read", &request)? {
            Response::Read(r) => same_length("Read", r.results.unwrap_or_default(), nodes.len()),
            other => Err(unexpected("Read", &other)),
        }
    }

    /// Writes each value to its node's Value attribute; one status per write.
    pub fn write(&mut self, values: &[(NodeId, Variant)]) -> Result<Vec<StatusCode>, SessionError> {
        let nodes = values
            .iter()
            .map(|(node, value)| WriteValue {
                node_id: node.clone(),
                attribute_id: opcua_types::AttributeId::Value as u32,
                index_range: Default::default(),
                value: DataValue::value_only(value.clone()),
            })
            .collect();
        let request = WriteRequest {
            request_header: self.header(),
            nodes_to_write: Some(nodes),
        };
        match self.call(Kind::Message, "Write", &request)? {
            Response::Write(r) => same_length("Write", r.results.unwrap_or_default(), values.len()),
            other => Err(unexpected("Write", &other)),
        }
    }

    /// Creates the subscription and a monitored item per `(handle, node)`; one status
    /// per item.
    pub fn subscribe(
        &mut self,
        interval_ms: u64,
        items: &[(u32, NodeId)],
    ) -> Result<Vec<StatusCode>, SessionError> {
        let request = CreateSubscriptionRequest {
            request_header: self.header(),
            requested_publishing_interval: interval_ms as f64,
            requested_lifetime_count: KEEP_ALIVE_COUNT * 6,
            requested_max_keep_alive_count: KEEP_ALIVE_COUNT,
            max_notifications_per_publish: 0,
            publishing_enabled: true,
            priority: 0,
        };
        let created = match self.call(Kind::Message, "CreateSubscription", &request)? {
            Response::CreateSubscription(r) => r,
            other => return Err(unexpected("CreateSubscription", &other)),
        };
        let revised_ms = if created.revised_publishing_interval.is_finite() {
            created.revised_publishing_interval.max(1.0) as u64
        } else {
            interval_ms
        };
        let keep_alive = u64::from(created.revised_max_keep_alive_count.max(1));
        self.subscription = Some(Subscription {
            id: created.subscription_id,
            // Server-chosen numbers: saturate rather than overflow.
            silence_ms: revised_ms
                .saturating_mul(keep_alive)
                .saturating_mul(2)
                .saturating_add(u64::from(self.timeout_ms)),
            last_sequence: None,
            last_heard_ms: self.link.now_ms(),
            acks: Vec::new(),
        });
        let request = CreateMonitoredItemsRequest {
            request_header: self.header(),
            subscription_id: created.subscription_id,
            timestamps_to_return: TimestampsToReturn::Both,
            items_to_create: Some(
                items
                    .iter()
                    .map(|(handle, node)| MonitoredItemCreateRequest {
                        item_to_monitor: ReadValueId::from(node),
                        monitoring_mode: MonitoringMode::Reporting,
                        requested_parameters: MonitoringParameters {
                            client_handle: *handle,
                            sampling_interval: interval_ms as f64,
                            filter: ExtensionObject::null(),
                            queue_size: 1,
                            discard_oldest: true,
                        },
                    })
                    .collect(),
            ),
        };
        match self.call(Kind::Message, "CreateMonitoredItems", &request)? {
            Response::CreateMonitoredItems(r) => {
                let results = same_length(
                    "CreateMonitoredItems",
                    r.results.unwrap_or_default(),
                    items.len(),
                )?;
                Ok(results.into_iter().map(|r| r.status_code).collect())
            }
            other => Err(unexpected("CreateMonitoredItems", &other)),
        }
    }

    /// Keeps publish requests at the server and waits up to `wait_ms` for the next
    /// publish response, returning as soon as one arrived with its data changes (and
    /// those of any others already received). A subscription silent for longer than its
    /// keep-alive allows is an error.
    pub fn pump(&mut self, wait_ms: u32) -> Result<Vec<Change>, SessionError> {
        if self.subscription.is_none() {
            return Ok(Vec::new());
        }
        while self.publishing.len() < self.depth {
            let acks = self
                .subscription
                .as_mut()
                .map(|s| std::mem::take(&mut s.acks))
                .unwrap_or_default();
            let request = PublishRequest {
                request_header: self.header(),
                subscription_acknowledgements: (!acks.is_empty()).then_some(acks),
            };
            let id = self.send(Kind::Message, &request)?;
            self.publishing.insert(id);
        }
        let mut deadline = self.deadline(wait_ms);
        while let Some(incoming) = self.next_incoming(deadline)? {
            self.keep(incoming)?;
            if !self.published.is_empty() {
                // Pushed data returns at once: take what is already buffered, no more.
                deadline = 0;
            }
        }
        let mut changes = Vec::new();
        while let Some(response) = self.published.pop_front() {
            self.take_publish(response, &mut changes)?;
        }
        if let Some(sub) = &self.subscription {
            let silent = self.link.now_ms().saturating_sub(sub.last_heard_ms);
            if silent > sub.silence_ms {
                return Err(SessionError::Refused(format!(
                    "the subscription has been silent for {silent} ms (keep-alive missed)"
                )));
            }
        }
        Ok(changes)
    }

    fn take_publish(
        &mut self,
        response: PublishResponse,
        changes: &mut Vec<Change>,
    ) -> Result<(), SessionError> {
        let now = self.link.now_ms();
        let Some(sub) = self.subscription.as_mut() else {
            return Ok(());
        };
        if response.subscription_id != sub.id {
            return Ok(());
        }
        sub.last_heard_ms = now;
        let message = response.notification_message;
        let keep_alive = message
            .notification_data
            .as_ref()
            .is_none_or(|data| data.is_empty());
        if keep_alive {
            // A keep-alive carries the next sequence number; anything before it that
            // we never saw was lost.
            let next = message.sequence_number;
            let missing_from = sub.last_sequence.map_or(next, |last| last.wrapping_add(1));
            self.republish(missing_from, next, changes)?;
            return Ok(());
        }
        let sequence = message.sequence_number;
        let missing_from = sub
            .last_sequence
            .map_or(sequence, |last| last.wrapping_add(1));
        self.republish(missing_from, sequence, changes)?;
        collect(&message, changes);
        if let Some(sub) = self.subscription.as_mut() {
            sub.acks.push(SubscriptionAcknowledgement {
                subscription_id: sub.id,
                sequence_number: sequence,
            });
            sub.last_sequence = Some(sequence);
        }
        Ok(())
    }

    /// Asks again for the notifications `from..until` that never arrived (at most the
    /// last [`MAX_REPUBLISH`]); those the server no longer has are given up.
    fn republish(
        &mut self,
        from: u32,
        until: u32,
        changes: &mut Vec<Change>,
    ) -> Result<(), SessionError> {
        let Some(id) = self.subscription.as_ref().map(|s| s.id) else {
            return Ok(());
        };
        if until <= from || until - from > 1 << 20 {
            return Ok(());
        }
        let first = from.max(until.saturating_sub(MAX_REPUBLISH));
        for sequence in first..until {
            let request = RepublishRequest {
                request_header: self.header(),
                subscription_id: id,
                retransmit_sequence_number: sequence,
            };
            match self.call(Kind::Message, "Republish", &request) {
                Ok(Response::Republish(r)) => collect(&r.notification_message, changes),
                Ok(other) => return Err(unexpected("Republish", &other)),
                Err(SessionError::Service { .. }) => {} // BadMessageNotAvailable and kin
                Err(other) => return Err(other),
            }
            if let Some(sub) = self.subscription.as_mut() {
                sub.last_sequence = Some(sequence);
            }
        }
        if let Some(sub) = self.subscription.as_mut() {
            sub.last_sequence = Some(until.wrapping_sub(1).max(sub.last_sequence.unwrap_or(0)));
        }
        Ok(())
    }

    /// Closes the session and the channel, best effort and without waiting long.
    pub fn close(mut self) {
        self.timeout_ms = self.timeout_ms.min(1000);
        self.until = u64::MAX;
        let request = CloseSessionRequest {
            request_header: self.header(),
            delete_subscriptions: true,
        };
        if self.call(Kind::Message, "CloseSession", &request).is_ok() {
            let request = CloseSecureChannelRequest {
                request_header: self.header(),
            };
            let _ = self.send(Kind::Close, &request);
        }
    }
}

/// The data changes in a notification message.
fn collect(message: &NotificationMessage, changes: &mut Vec<Change>) {
    for data in message.notification_data.iter().flatten() {
        if let Some(notification) = data.inner_as::<DataChangeNotification>() {
            for item in notification.monitored_items.iter().flatten() {
                changes.push((item.client_handle, item.value.clone()));
            }
        }
    }
}

fn unexpected(service: &'static str, got: &Response) -> SessionError {
    if let Response::ServiceFault(f) = got {
        return service_error(service, f.response_header.service_result);
    }
    SessionError::Wire(WireError::Protocol(format!(
        "{service} was answered with another service's response"
    )))
}

fn same_length<T>(
    service: &'static str,
    results: Vec<T>,
    len: usize,
) -> Result<Vec<T>, SessionError> {
    if results.len() == len {
        Ok(results)
    } else {
        Err(SessionError::Wire(WireError::Protocol(format!(
            "{service} returned {} results for {len} items",
            results.len()
        ))))
    }
}

/// The server's endpoints, asked for over a channel of policy None (Part 4 §5.4.4), to
/// learn its certificate and policies before opening a secured channel.
pub fn discover<L: Link>(
    link: L,
    endpoint: &str,
    timeout_ms: u32,
    until: u64,
) -> Result<Vec<EndpointDescription>, SessionError> {
    let mut session = Session::connect(link, endpoint, None, timeout_ms, until)?;
    let request = GetEndpointsRequest {
        request_header: session.header(),
        endpoint_url: UAString::from(endpoint),
        ..Default::default()
    };
    let endpoints = match session.call(Kind::Message, "GetEndpoints", &request)? {
        Response::GetEndpoints(r) => r.endpoints.unwrap_or_default(),
        other => return Err(unexpected("GetEndpoints", &other)),
    };
    let request = CloseSecureChannelRequest {
        request_header: session.header(),
    };
    let _ = session.send(Kind::Close, &request);
    Ok(endpoints)
}

/// The server certificate for `policy`/`mode` out of the server's endpoints, if the
/// server offers that pair and one of `pins` trusts its certificate.
pub fn trusted_server_certificate(
    endpoints: &[EndpointDescription],
    policy: security::Policy,
    mode: Mode,
    pins: &[Pin],
) -> Result<Vec<u8>, SessionError> {
    let wanted = message_mode(mode);
    let Some(found) = endpoints
        .iter()
        .find(|e| e.security_policy_uri.as_ref() == policy.uri() && e.security_mode == wanted)
    else {
        let offered: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{} {:?}", e.security_policy_uri, e.security_mode))
            .collect();
        return Err(SessionError::Refused(format!(
            "the server does not offer {} with mode {mode:?}; it offers: {}",
            policy.uri(),
            offered.join(", ")
        )));
    };
    let cert = found.server_certificate.as_ref().to_vec();
    let thumbprint = security::thumbprint_hex(&cert);
    if !trusts(pins, &cert) {
        return Err(SessionError::Refused(format!(
            "the server's certificate (SHA-1 thumbprint {thumbprint}) is not the trusted one; pin it to trust it"
        )));
    }
    Ok(cert)
}

/// Whether any of `pins` trusts `cert` (DER); none trusts nothing.
pub fn trusts(pins: &[Pin], cert: &[u8]) -> bool {
    pins.iter().any(|pin| pin.trusts(cert))
}

/// How the server's certificate is trusted: explicitly, never by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// Its SHA-1 thumbprint in hex.
    Thumbprint(String),
    /// The certificate itself (DER).
    Certificate(Vec<u8>),
}

impl Pin {
    /// Whether `cert` (DER) is the pinned certificate.
    pub fn trusts(&self, cert: &[u8]) -> bool {
        match self {
            Pin::Thumbprint(hex) => {
                let hex: String = hex.chars().filter(|c| *c != ':').collect();
                hex.eq_ignore_ascii_case(&security::thumbprint_hex(cert))
            }
            Pin::Certificate(der) => der == cert,
        }
    }
}

/// The algorithm URI of a password sealed with RSA-OAEP (SHA-1), as the signing
/// policies we speak seal secrets.
const RSA_OAEP: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep";

/// The algorithm URI of RSA PKCS#1 v1.5 SHA-256 session signatures.
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

fn message_mode(mode: Mode) -> MessageSecurityMode {
    match mode {
        Mode::Sign => MessageSecurityMode::Sign,
        Mode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    }
}

fn nonce(secure: &Secure) -> Result<Vec<u8>, SessionError> {
    Ok(secure.policy.nonce().map_err(WireError::from)?)
}

/// The identity token for `identity`, with the policy ID the server's endpoint of our
/// channel's policy and mode offers for it. A password goes in plain text only where the
/// token policy says None (an encrypted channel, or a server that allows it); otherwise
/// it is sealed for `server` (its key and the session's nonce), as Part 4 §7.41.2.2
/// says: RSA-OAEP over the length, the password and the nonce.
fn identity_token(
    identity: &Identity,
    endpoints: &[EndpointDescription],
    (channel_policy, channel_mode): (&str, MessageSecurityMode),
    server: Option<(&rsa::RsaPublicKey, &[u8])>,
) -> Result<ExtensionObject, SessionError> {
    let wanted = match identity {
        Identity::Anonymous => UserTokenType::Anonymous,
        Identity::UserName { .. } => UserTokenType::UserName,
    };
    let policies: Vec<_> = endpoints
        .iter()
        .filter(|e| {
            e.security_mode == channel_mode && e.security_policy_uri.as_ref() == channel_policy
        })
        .flat_map(|e| e.user_identity_tokens.iter().flatten())
        .filter(|p| p.token_type == wanted)
        .map(|p| {
            // An empty token policy means the channel's (Part 4 §7.41).
            let uri = match p.security_policy_uri.as_ref() {
                "" => channel_policy.to_owned(),
                uri => uri.to_owned(),
            };
            (p.policy_id.clone(), uri)
        })
        .collect();
    let (user, password) = match identity {
        Identity::Anonymous => {
            let (policy_id, _) = policies.into_iter().next().ok_or_else(|| {
                SessionError::Refused(format!(
                    "the server's endpoint for {channel_policy} offers no {wanted:?} login"
                ))
            })?;
            return Ok(ExtensionObject::from_message(AnonymousIdentityToken {
                policy_id,
            }));
        }
        Identity::UserName { user, password } => (user, password),
    };
    // Sealed where we can, else plain where the server allows it.
    let sealed = policies.iter().find_map(|(id, uri)| {
        let policy = security::Policy::from_uri(uri)?;
        Some((id.clone(), policy, server?))
    });
    if let Some((policy_id, _policy, (key, nonce))) = sealed {
        let mut secret = Vec::with_capacity(4 + password.len() + nonce.len());
        let length = u32::try_from(password.len() + nonce.len())
            .map_err(|_| SessionError::Refused("the password is too long".to_owned()))?;
        secret.extend_from_slice(&length.to_le_bytes());
        secret.extend_from_slice(password);
        secret.extend_from_slice(nonce);
        let password = security::rsa_encrypt(key, &secret).map_err(WireError::from)?;
        return Ok(ExtensionObject::from_message(UserNameIdentityToken {
            policy_id,
            user_name: UAString::from(user.as_str()),
            password: ByteString::from(password),
            encryption_algorithm: UAString::from(RSA_OAEP),
        }));
    }
    if let Some((policy_id, _)) = policies.iter().find(|(_, uri)| uri == wire::POLICY_NONE) {
        return Ok(ExtensionObject::from_message(UserNameIdentityToken {
            policy_id: policy_id.clone(),
            user_name: UAString::from(user.as_str()),
            password: ByteString::from(password.clone()),
            encryption_algorithm: UAString::null(),
        }));
    }
    Err(SessionError::Refused(match policies.first() {
        None => format!("the server's endpoint for {channel_policy} offers no {wanted:?} login"),
        Some((_, uri)) if security::Policy::from_uri(uri).is_some() => format!(
            "the server wants the password encrypted with {uri}: pin the server's certificate \
             (serverCertificateThumbprint) so that the adaptor can encrypt it"
        ),
        Some((_, uri)) => format!(
            "the server wants the password encrypted with {uri}, which this adaptor does not \
             support (supported: {})",
            crate::spec::SUPPORTED_POLICIES
        ),
    }))
}

/// Waits for the next whole message, until `deadline`; `None` when it passes.
fn next_frame(
    link: &mut impl Link,
    rx: &mut Vec<u8>,
    deadline: u64,
) -> Result<Option<Vec<u8>>, SessionError> {
    for _ in 0..MAX_RECEIVES {
        if let Some(frame) = wire::take_frame(rx)? {
            return Ok(Some(frame));
        }
        let left = deadline.saturating_sub(link.now_ms());
        if left == 0 {
            return Ok(None);
        }
        match link.receive(u32::try_from(left).unwrap_or(u32::MAX)) {
            Ok(bytes) if bytes.is_empty() => return Err(LinkError::Closed.into()),
            Ok(bytes) => rx.extend_from_slice(&bytes),
            Err(LinkError::Timeout) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::{ack, server_chunk};
    use opcua_types::{
        ActivateSessionResponse, BinaryDecodable, ChannelSecurityToken, ContextOwned,
        CreateMonitoredItemsResponse, CreateSessionResponse, CreateSubscriptionResponse,
        MonitoredItemCreateResult, MonitoredItemNotification, ObjectId, OpenSecureChannelResponse,
        ReadResponse, RepublishResponse, ResponseHeader, ServiceFault, UserTokenPolicy,
        WriteResponse,
    };
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::io::Cursor;
    use std::rc::Rc;

    /// The server nonce of the scripted server's sessions.
    const FAKE_NONCE: [u8; 32] = [7; 32];

    /// A scripted server behind a [`Link`]: answers each request as it is sent.
    #[derive(Debug)]
    struct Fake {
        out: VecDeque<Vec<u8>>,
        sequence: u32,
        clock: Rc<Cell<u64>>,
        endpoints: Vec<EndpointDescription>,
        /// Notification messages the server will publish, in order.
        to_publish: VecDeque<NotificationMessage>,
        /// Messages kept for Republish, by sequence number.
        kept: BTreeMap<u32, NotificationMessage>,
        /// What the client sent, by service.
        seen: Vec<(ObjectId, Vec<u8>)>,
        refuse_activate: bool,
        /// OpenSecureChannel requests seen (Issue and Renew).
        opens: u32,
        /// The certificate CreateSession returns (empty: none).
        certificate: Vec<u8>,
    }

    impl Fake {
        fn new(clock: Rc<Cell<u64>>) -> Fake {
            Fake {
                out: VecDeque::new(),
                sequence: 0,
                clock,
                endpoints: vec![endpoint(&[(UserTokenType::Anonymous, "anon", "")])],
                to_publish: VecDeque::new(),
                kept: BTreeMap::new(),
                seen: Vec::new(),
                refuse_activate: false,
                opens: 0,
                certificate: Vec::new(),
            }
        }

        fn reply<T: BinaryEncodable + MessageInfo>(&mut self, kind: &[u8; 3], id: u32, r: &T) {
            self.sequence += 1;
            self.out
                .push_back(server_chunk(kind, b'F', 5, self.sequence, id, r));
        }

        fn handle(&mut self, chunk: &[u8]) {
            let ctx = ContextOwned::default();
            match &chunk[..3] {
                b"HEL" => self.out.push_back(ack(65536)),
                b"OPN" => {
                    self.opens += 1;
                    // Channel ID, policy URI (4 + 47), two null byte strings.
                    let start = 12 + 4 + wire::POLICY_NONE.len() + 8;
                    let id = u32::from_le_bytes(chunk[start + 4..start + 8].try_into().unwrap());
                    let response = OpenSecureChannelResponse {
                        response_header: ResponseHeader::new_good(1),
                        security_token: ChannelSecurityToken {
                            channel_id: 5,
                            token_id: 1,
                            created_at: DateTime::now(),
                            revised_lifetime: 600_000,
                        },
                        ..Default::default()
                    };
                    self.reply(b"OPN", id, &response);
                }
                b"MSG" => {
                    let id = u32::from_le_bytes(chunk[20..24].try_into().unwrap());
                    let mut body = Cursor::new(&chunk[24..]);
                    let node = NodeId::decode(&mut body, &ctx.context()).unwrap();
                    let object = node.as_object_id().unwrap();
                    let rest = chunk[24 + body.position() as usize..].to_vec();
                    self.seen.push((object, rest.clone()));
                    self.service(object, id, &rest);
                }
                _ => {}
            }
        }

        fn service(&mut self, object: ObjectId, id: u32, body: &[u8]) {
            let good = ResponseHeader::new_good(1);
            match object {
                ObjectId::CreateSessionRequest_Encoding_DefaultBinary => {
                    let r = CreateSessionResponse {
                        response_header: good,
                        authentication_token: NodeId::new(0, 99u32),
                        server_endpoints: Some(self.endpoints.clone()),
                        server_certificate: ByteString::from(self.certificate.clone()),
                        server_nonce: ByteString::from(FAKE_NONCE.to_vec()),
                        ..Default::default()
                    };
                    self.reply(b"MSG", id, &r);
                }
                ObjectId::ActivateSessionRequest_Encoding_DefaultBinary => {
                    if self.refuse_activate {
                        let r = ServiceFault {
                            response_header: ResponseHeader::new_service_result(
                                1,
                                StatusCode::BadUserAccessDenied,
                            ),
                        };
                        self.reply(b"MSG", id, &r);
                    } else {
                        let r = ActivateSessionResponse {
                            response_header: good,
                            ..Default::default()
                        };
                        self.reply(b"MSG", id, &r);
                    }
                }
                ObjectId::ReadRequest_Encoding_DefaultBinary => {
                    let r = ReadResponse {
                        response_header: good,
                        results: Some(vec![
                            DataValue::value_only(7i32),
                            DataValue {
                                status: Some(StatusCode::BadNodeIdUnknown),
                                ..Default::default()
                            },
                        ]),
                        diagnostic_infos: None,
                    };
                    self.reply(b"MSG", id, &r);
                }
                ObjectId::WriteRequest_Encoding_DefaultBinary => {
                    let r = WriteResponse {
                        response_header: good,
                        results: Some(vec![StatusCode::Good, StatusCode::BadNotWritable]),
                        diagnostic_infos: None,
                    };
                    self.reply(b"MSG", id, &r);
                }
                ObjectId::CreateSubscriptionRequest_Encoding_DefaultBinary => {
                    let r = CreateSubscriptionResponse {
                        response_header: good,
                        subscription_id: 3,
                        revised_publishing_interval: 100.0,
                        revised_lifetime_count: 60,
                        revised_max_keep_alive_count: 10,
                    };
                    self.reply(b"MSG", id, &r);
                }
                ObjectId::CreateMonitoredItemsRequest_Encoding_DefaultBinary => {
                    let r = CreateMonitoredItemsResponse {
                        response_header: good,
                        results: Some(vec![MonitoredItemCreateResult::default(); 2]),
                        diagnostic_infos: None,
                    };
                    self.reply(b"MSG", id, &r);
                }
                ObjectId::PublishRequest_Encoding_DefaultBinary => {
                    if let Some(message) = self.to_publish.pop_front() {
                        let r = PublishResponse {
                            response_header: good,
                            subscription_id: 3,
                            notification_message: message,
                            ..Default::default()
                        };
                        self.reply(b"MSG", id, &r);
                    }
                }
                ObjectId::RepublishRequest_Encoding_DefaultBinary => {
                    let ctx = ContextOwned::default();
                    let request =
                        RepublishRequest::decode(&mut Cursor::new(body), &ctx.context()).unwrap();
                    match self.kept.get(&request.retransmit_sequence_number) {
                        Some(message) => {
                            let r = RepublishResponse {
                                response_header: good,
                                notification_message: message.clone(),
                            };
                            self.reply(b"MSG", id, &r);
                        }
                        None => {
                            let r = ServiceFault {
                                response_header: ResponseHeader::new_service_result(
                                    1,
                                    StatusCode::BadMessageNotAvailable,
                                ),
                            };
                            self.reply(b"MSG", id, &r);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    impl Link for Fake {
        fn send(&mut self, bytes: &[u8], _: u32) -> Result<(), LinkError> {
            self.handle(bytes);
            Ok(())
        }
        fn receive(&mut self, timeout_ms: u32) -> Result<Vec<u8>, LinkError> {
            match self.out.pop_front() {
                Some(bytes) => Ok(bytes),
                None => {
                    self.clock.set(self.clock.get() + u64::from(timeout_ms));
                    Err(LinkError::Timeout)
                }
            }
        }
        fn now_ms(&self) -> u64 {
            self.clock.get()
        }
    }

    fn endpoint(tokens: &[(UserTokenType, &str, &str)]) -> EndpointDescription {
        EndpointDescription {
            security_mode: MessageSecurityMode::None,
            security_policy_uri: UAString::from(wire::POLICY_NONE),
            user_identity_tokens: Some(
                tokens
                    .iter()
                    .map(|(kind, id, uri)| UserTokenPolicy {
                        policy_id: UAString::from(*id),
                        token_type: *kind,
                        security_policy_uri: UAString::from(*uri),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn data(sequence: u32, handle: u32, value: i32) -> NotificationMessage {
        NotificationMessage {
            sequence_number: sequence,
            publish_time: DateTime::now(),
            notification_data: Some(vec![ExtensionObject::from_message(
                DataChangeNotification {
                    monitored_items: Some(vec![MonitoredItemNotification {
                        client_handle: handle,
                        value: DataValue::value_only(value),
                    }]),
                    diagnostic_infos: None,
                },
            )]),
        }
    }

    fn keep_alive(next: u32) -> NotificationMessage {
        NotificationMessage {
            sequence_number: next,
            publish_time: DateTime::now(),
            notification_data: None,
        }
    }

    fn open(fake: Fake) -> Session<Fake> {
        Session::open(
            fake,
            "opc.tcp://127.0.0.1:4840/",
            &Identity::Anonymous,
            1000,
            u64::MAX,
        )
        .unwrap()
    }

    fn values(changes: &[Change]) -> Vec<(u32, Option<Variant>)> {
        changes.iter().map(|(h, v)| (*h, v.value.clone())).collect()
    }

    #[test]
    fn a_session_reads_and_writes_with_per_node_results() {
        let clock = Rc::new(Cell::new(0));
        let mut session = open(Fake::new(clock));
        let nodes = [NodeId::new(2, "a"), NodeId::new(2, "b")];
        let read = session.read(&nodes).unwrap();
        assert_eq!(read[0].value, Some(Variant::Int32(7)));
        assert_eq!(read[1].status(), StatusCode::BadNodeIdUnknown);
        let written = session
            .write(&[
                (nodes[0].clone(), Variant::Int32(1)),
                (nodes[1].clone(), Variant::Int32(2)),
            ])
            .unwrap();
        assert_eq!(written, [StatusCode::Good, StatusCode::BadNotWritable]);
        // The session's requests carry the authentication token it was given.
        assert_eq!(session.auth, NodeId::new(0, 99u32));
        assert!(
            session.read(&nodes[..1]).is_err(),
            "two results for one node"
        );
    }

    #[test]
    fn publish_delivers_changes_acknowledges_them_and_republishes_a_gap() {
        let clock = Rc::new(Cell::new(0));
        let mut fake = Fake::new(clock.clone());
        fake.to_publish.push_back(data(1, 1, 10));
        // Sequence 2 is lost on the way; the server still has it for Republish.
        fake.kept.insert(2, data(2, 2, 20));
        fake.to_publish.push_back(data(3, 1, 30));
        let mut session = open(fake);
        let items = [(1, NodeId::new(2, "a")), (2, NodeId::new(2, "b"))];
        assert_eq!(session.subscribe(100, &items).unwrap().len(), 2);
        // A pump returns with the first publish response; the next takes the rest.
        let first = session.pump(50).unwrap();
        assert_eq!(values(&first), [(1, Some(Variant::Int32(10)))]);
        let mut changes = first;
        changes.extend(session.pump(50).unwrap());
        assert_eq!(
            values(&changes),
            [
                (1, Some(Variant::Int32(10))),
                (2, Some(Variant::Int32(20))),
                (1, Some(Variant::Int32(30)))
            ]
        );
        // The next Publish acknowledges 1 and 3 (2 came by Republish).
        session.link.to_publish.push_back(keep_alive(4));
        session.pump(50).unwrap();
        let republished = session
            .link
            .seen
            .iter()
            .filter(|(o, _)| *o == ObjectId::RepublishRequest_Encoding_DefaultBinary)
            .count();
        assert_eq!(republished, 1);
        let ctx = ContextOwned::default();
        let acks: Vec<u32> = session
            .link
            .seen
            .iter()
            .filter(|(o, _)| *o == ObjectId::PublishRequest_Encoding_DefaultBinary)
            .flat_map(|(_, body)| {
                PublishRequest::decode(&mut Cursor::new(body), &ctx.context())
                    .unwrap()
                    .subscription_acknowledgements
                    .unwrap_or_default()
            })
            .map(|a| a.sequence_number)
            .collect();
        assert_eq!(acks, [1, 3]);
    }

    #[test]
    fn the_channel_token_is_renewed_at_three_quarters_of_its_lifetime() {
        let clock = Rc::new(Cell::new(0));
        let mut session = open(Fake::new(clock.clone()));
        assert_eq!(session.link.opens, 1);
        // The fake grants 600 s; 75 % is 450 s.
        clock.set(449_999);
        session.renew_if_due().unwrap();
        assert_eq!(session.link.opens, 1);
        clock.set(450_000);
        session.renew_if_due().unwrap();
        assert_eq!(session.link.opens, 2);
        session.renew_if_due().unwrap();
        assert_eq!(session.link.opens, 2, "the new token starts a new lifetime");
        // The session still works on the renewed channel.
        assert_eq!(
            session
                .read(&[NodeId::new(2, "a"), NodeId::new(2, "b")])
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_silent_subscription_ends_the_session() {
        let clock = Rc::new(Cell::new(0));
        let mut session = open(Fake::new(clock.clone()));
        let items = [(1, NodeId::new(2, "a")), (2, NodeId::new(2, "b"))];
        session.subscribe(100, &items).unwrap();
        // Keep-alives keep it alive...
        session.link.to_publish.push_back(keep_alive(1));
        assert!(session.pump(10).unwrap().is_empty());
        // ...silence past keep-alive count x interval x 2 + timeout does not.
        clock.set(clock.get() + 100 * 10 * 2 + 1000 + 1);
        let err = session.pump(10).unwrap_err();
        assert!(err.to_string().contains("silent"), "{err}");
    }

    /// The username token of the session's ActivateSession request.
    fn user_token(session: &Session<Fake>) -> UserNameIdentityToken {
        let ctx = ContextOwned::default();
        let (_, body) = session
            .link
            .seen
            .iter()
            .find(|(o, _)| *o == ObjectId::ActivateSessionRequest_Encoding_DefaultBinary)
            .unwrap();
        let request =
            ActivateSessionRequest::decode(&mut Cursor::new(body), &ctx.context()).unwrap();
        request
            .user_identity_token
            .inner_as::<UserNameIdentityToken>()
            .unwrap()
            .clone()
    }

    #[test]
    fn logins_follow_the_servers_token_policies() {
        let clock = Rc::new(Cell::new(0));
        let user = Identity::UserName {
            user: "u".into(),
            password: b"p".to_vec(),
        };
        let url = "opc.tcp://127.0.0.1:4840/";
        // Plain username on the None endpoint: accepted, with the server's policy ID.
        let mut fake = Fake::new(clock.clone());
        fake.endpoints = vec![endpoint(&[(UserTokenType::UserName, "pw", "")])];
        let session = Session::open(fake, url, &user, 1000, u64::MAX).unwrap();
        let token = user_token(&session);
        assert_eq!(token.policy_id.as_ref(), "pw");
        assert_eq!(token.password.as_ref(), b"p");
        // A password the server wants encrypted is refused before it is sent.
        let mut fake = Fake::new(clock.clone());
        fake.endpoints = vec![endpoint(&[(
            UserTokenType::UserName,
            "pw",
            "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256",
        )])];
        let err = Session::open(fake, url, &user, 1000, u64::MAX).unwrap_err();
        assert!(
            err.is_refusal() && err.to_string().contains("encrypted"),
            "{err}"
        );
        // Encrypted for a pinned server certificate (policy None on the channel): the
        // length, the password and the session's nonce, sealed with RSA-OAEP.
        let der = security::certificate_from_pem(include_bytes!("../testdata/client.crt")).unwrap();
        let key = security::private_key_from_pem(include_bytes!("../testdata/client.key")).unwrap();
        let encrypting = || {
            let mut fake = Fake::new(clock.clone());
            fake.certificate = der.clone();
            fake.endpoints = vec![endpoint(&[(
                UserTokenType::UserName,
                "sealed",
                "http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep",
            )])];
            fake
        };
        let pins = [Pin::Certificate(der.clone())];
        let session =
            Session::open_secured(encrypting(), url, &user, None, &pins, 1000, u64::MAX).unwrap();
        let token = user_token(&session);
        assert_eq!(token.policy_id.as_ref(), "sealed");
        assert_eq!(token.encryption_algorithm.as_ref(), RSA_OAEP);
        let plain = key
            .decrypt(rsa::Oaep::new::<sha1::Sha1>(), token.password.as_ref())
            .unwrap();
        let mut expected = 33u32.to_le_bytes().to_vec();
        expected.extend_from_slice(b"p");
        expected.extend_from_slice(&FAKE_NONCE);
        assert_eq!(plain, expected);
        // Unpinned (or pinned to another certificate): refused before it is sent, saying
        // how to fix it.
        for pins in [vec![], vec![Pin::Thumbprint("AB".repeat(20))]] {
            let err = Session::open_secured(encrypting(), url, &user, None, &pins, 1000, u64::MAX)
                .unwrap_err();
            assert!(
                err.is_refusal() && err.to_string().contains("pin the server's certificate"),
                "{err}"
            );
        }
        // No anonymous policy: refused, naming it.
        let mut fake = Fake::new(clock.clone());
        fake.endpoints = vec![endpoint(&[(UserTokenType::UserName, "pw", "")])];
        let err = Session::open(fake, url, &Identity::Anonymous, 1000, u64::MAX).unwrap_err();
        assert!(err.to_string().contains("Anonymous"), "{err}");
        // A refused activation is a refusal, not a network problem.
        let mut fake = Fake::new(clock);
        fake.refuse_activate = true;
        let err = Session::open(fake, url, &Identity::Anonymous, 1000, u64::MAX).unwrap_err();
        assert!(
            err.is_refusal() && err.to_string().contains("BadUserAccessDenied"),
            "{err}"
        );
    }

    #[test]
    fn a_server_that_never_answers_times_out_in_bounded_time() {
        #[derive(Debug)]
        struct Mute(Rc<Cell<u64>>);
        impl Link for Mute {
            fn send(&mut self, _: &[u8], _: u32) -> Result<(), LinkError> {
                Ok(())
            }
            fn receive(&mut self, timeout_ms: u32) -> Result<Vec<u8>, LinkError> {
                self.0.set(self.0.get() + u64::from(timeout_ms));
                Err(LinkError::Timeout)
            }
            fn now_ms(&self) -> u64 {
                self.0.get()
            }
        }
        let url = "opc.tcp://h:1/";
        let clock = Rc::new(Cell::new(0));
        let err = Session::open(
            Mute(clock.clone()),
            url,
            &Identity::Anonymous,
            500,
            u64::MAX,
        )
        .unwrap_err();
        assert_eq!(err, SessionError::Timeout("Hello"));
        assert_eq!(clock.get(), 500);
        // The round's limit wins over a longer request timeout.
        let clock = Rc::new(Cell::new(0));
        let err =
            Session::open(Mute(clock.clone()), url, &Identity::Anonymous, 500, 200).unwrap_err();
        assert_eq!(err, SessionError::Timeout("Hello"));
        assert_eq!(clock.get(), 200);
    }

    #[test]
    fn a_round_limit_cuts_a_long_wait_for_publish_responses() {
        let clock = Rc::new(Cell::new(0));
        let mut session = open(Fake::new(clock.clone()));
        let items = [(1, NodeId::new(2, "a")), (2, NodeId::new(2, "b"))];
        session.subscribe(100, &items).unwrap();
        let start = clock.get();
        session.limit_round(start + 30);
        assert!(session.pump(10_000).unwrap().is_empty());
        assert_eq!(clock.get(), start + 30);
    }

    #[test]
    fn server_certificates_are_trusted_only_when_pinned_and_the_policy_offered() {
        use crate::security::{Policy, thumbprint_hex};
        let endpoint = |policy: &str, mode, cert: &[u8]| EndpointDescription {
            security_policy_uri: UAString::from(policy),
            security_mode: mode,
            server_certificate: ByteString::from(cert.to_vec()),
            ..Default::default()
        };
        let endpoints = [
            endpoint(wire::POLICY_NONE, MessageSecurityMode::None, b""),
            endpoint(
                Policy::Basic256Sha256.uri(),
                MessageSecurityMode::SignAndEncrypt,
                b"server cert",
            ),
        ];
        let hex = thumbprint_hex(b"server cert");
        let colons: Vec<String> = hex
            .as_bytes()
            .chunks(2)
            .map(|p| String::from_utf8_lossy(p).to_lowercase())
            .collect();
        for pin in [
            Pin::Thumbprint(hex.clone()),
            Pin::Thumbprint(colons.join(":")),
            Pin::Certificate(b"server cert".to_vec()),
        ] {
            assert_eq!(
                trusted_server_certificate(
                    &endpoints,
                    Policy::Basic256Sha256,
                    Mode::SignAndEncrypt,
                    &[Pin::Certificate(b"another".to_vec()), pin]
                )
                .unwrap(),
                b"server cert"
            );
        }
        let err = trusted_server_certificate(
            &endpoints,
            Policy::Basic256Sha256,
            Mode::SignAndEncrypt,
            &[Pin::Thumbprint(thumbprint_hex(b"another"))],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&hex) && err.contains("not the trusted one"),
            "{err}"
        );
        let err = trusted_server_certificate(
            &endpoints,
            Policy::Basic256Sha256,
            Mode::Sign,
            &[Pin::Thumbprint(hex.clone())],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("does not offer") && err.contains("Sign"),
            "{err}"
        );
        let err = trusted_server_certificate(
            &endpoints,
            Policy::Aes128Sha256RsaOaep,
            Mode::SignAndEncrypt,
            &[Pin::Thumbprint(hex)],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Aes128_Sha256_RsaOaep"), "{err}");
    }
}
