//! The MQTT client session of one device: connecting (with the 3.1.1 → 3.1 fallback),
//! subscribing, publishing writes on change, taking in pushed messages, keep-alive,
//! and reconnecting with a capped backoff.
//!
//! The engine reaches the broker only through [`Net`], so everything, including time, is
//! tested natively against a simulated broker.

use std::collections::{BTreeMap, BTreeSet};

use mqtt_topic::Values;
use serde_json::{Map, Value, json};

use crate::codec::{self, Connect, Decoder, Packet, Publish, SUBACK_FAILURE, Version};
use crate::spec::{Pattern, Property, Spec, SpecError, Tls, VersionChoice};
use crate::state::{Memory, Published, Reading};
use crate::time;
use crate::topic;
use crate::value;

/// The longest a poll waits for messages. Pushed data is returned as soon as it arrives;
/// this only bounds a quiet poll, well inside the limb's call timeout.
pub const WINDOW_MS: u64 = 300;
/// The longest a poll pauses while waiting out the reconnect backoff.
pub const NAP_MS: u64 = 200;
/// The first pause after a failed connection attempt; it doubles up to the cap.
pub const FIRST_BACKOFF_MS: u64 = 1_000;
/// The largest read asked of the host.
const RECEIVE_MAX: u32 = 64 * 1024;

/// How the engine reaches the broker (and the clock).
pub trait Net {
    /// Opens the connection, over TLS when `tls` is given.
    fn open(&mut self, tls: Option<&Tls>, timeout_ms: u32) -> Result<(), NetError>;
    fn send(&mut self, data: &[u8], timeout_ms: u32) -> Result<(), NetError>;
    /// Bytes that arrived within `timeout_ms`, never empty (a closed stream is an error).
    fn receive(&mut self, max: u32, timeout_ms: u32) -> Result<Vec<u8>, NetError>;
    fn close(&mut self);
    /// Monotonic milliseconds.
    fn now_ms(&self) -> u64;
    /// Wall-clock milliseconds since the Unix epoch.
    fn wall_ms(&self) -> u64;
    /// Waits, holding nothing.
    fn nap(&mut self, ms: u64);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// The host refused: no grant, node policy, a certificate that does not verify.
    Denied(String),
    Timeout,
    Closed,
    Io(String),
}

impl NetError {
    fn describe(&self) -> String {
        match self {
            NetError::Denied(m) | NetError::Io(m) => m.clone(),
            NetError::Timeout => "timed out".to_owned(),
            NetError::Closed => "the connection was closed".to_owned(),
        }
    }
}

/// Why the device cannot be served right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The broker cannot be reached or the connection was lost.
    Unreachable(String),
    /// The host refused the capability (grant, policy, TLS verification, bad PEM).
    Denied(String),
    /// The broker refused the client (credentials, authorization, client ID).
    Refused(String),
    /// The broker said something that is not MQTT.
    Protocol(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Unreachable(m)
            | Failure::Denied(m)
            | Failure::Refused(m)
            | Failure::Protocol(m) => m,
        }
    }
}

/// The status document and, if the device is not served, why.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Value,
    pub failure: Option<Failure>,
}

/// The DeviceLink, for topic keywords and the client ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// A subscription and the properties it feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sub {
    filter: String,
    qos: u8,
    members: Vec<usize>,
}

/// A publication the spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Write {
    /// The property name, or `message` (AttributedMessage).
    key: String,
    publication: Published,
}

/// A publication the broker has not acknowledged yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outgoing {
    key: String,
    publication: Published,
}

#[derive(Debug, Default)]
struct Session {
    decoder: Decoder,
    last_sent_ms: u64,
    ping_sent_ms: Option<u64>,
    last_id: u16,
    /// SUBSCRIBE packet ID → its filters.
    pending_subs: BTreeMap<u16, Vec<String>>,
    outgoing: BTreeMap<u16, Outgoing>,
    /// QoS 2 messages received and delivered, awaiting PUBREL.
    incoming: BTreeSet<u16>,
}

impl Session {
    fn next_id(&mut self) -> u16 {
        loop {
            self.last_id = self.last_id.checked_add(1).unwrap_or(1);
            let id = self.last_id;
            if !self.outgoing.contains_key(&id) && !self.pending_subs.contains_key(&id) {
                return id;
            }
        }
    }
}

pub struct Engine {
    spec: Spec,
    client_id: String,
    will: Option<codec::Will>,
    subs: Vec<Sub>,
    writes: Vec<Write>,
    session: Option<Session>,
    /// Set once a 3.1.1 CONNECT was refused with "unacceptable protocol version" under
    /// `protocolVersion: 0`.
    fallback_v31: bool,
    next_attempt_ms: u64,
    backoff_ms: u64,
    /// This instance lost a connection it had: the broker may have restarted and
    /// forgotten retained messages, so retained writes go out again on reconnect. (A
    /// fresh instance after a hot swap trusts its restored memory instead.)
    lost_since_publish: bool,
    last_failure: Option<Failure>,
    read_errors: BTreeMap<String, String>,
    sub_errors: BTreeMap<String, String>,
    write_errors: BTreeMap<String, String>,
}

fn signature(filter: &str, property: &Property) -> String {
    format!("{filter}\n{}\n{}", property.path, property.kind.name())
}

/// `octopus-` + the DeviceLink's UID; MQTT 3.1 allows 23 characters.
pub fn client_id(uid: &str, version: Version) -> String {
    let id = format!("octopus-{uid}");
    match version {
        Version::V31 => id.chars().take(23).collect(),
        Version::V311 => id,
    }
}

fn render(
    spec_topic: &str,
    identity: &Identity,
    path: Option<&str>,
    operator: Option<&str>,
) -> Option<String> {
    let topic = mqtt_topic::render(
        spec_topic,
        &Values {
            namespace: &identity.namespace,
            name: &identity.name,
            uid: &identity.uid,
            path,
            operator,
        },
    );
    (!topic.is_empty()).then_some(topic)
}

fn plan(spec: &Spec, identity: &Identity) -> Result<(Vec<Sub>, Vec<Write>), SpecError> {
    let message = &spec.message;
    let bad_topic = |what: &str, topic: Option<&str>| {
        SpecError(format!(
            "protocol.message.topic: the {what} renders to {}",
            match topic {
                None => "nothing".to_owned(),
                Some(t) => format!("{t:?}, which is not a valid topic"),
            }
        ))
    };
    let mut subs: Vec<Sub> = Vec::new();
    let mut add_sub =
        |filter: String, qos: u8, member: usize| match subs.iter_mut().find(|s| s.filter == filter)
        {
            Some(sub) => {
                sub.qos = sub.qos.max(qos);
                sub.members.push(member);
            }
            None => subs.push(Sub {
                filter,
                qos,
                members: vec![member],
            }),
        };
    let mut writes = Vec::new();
    match spec.pattern {
        Pattern::AttributedMessage => {
            let path = message.path.as_deref();
            let read = render(
                &message.topic,
                identity,
                path,
                message.operator.read.as_deref(),
            )
            .filter(|t| topic::valid_filter(t));
            let Some(read) = read else {
                return Err(bad_topic("read topic", None));
            };
            for member in 0..spec.properties.len() {
                add_sub(read.clone(), message.qos, member);
            }
            let mut document = Value::Object(Map::new());
            let mut any = false;
            for (i, property) in spec.properties.iter().enumerate() {
                let (Some(value), Some(json_path)) = (&property.value, &property.json_path) else {
                    continue;
                };
                json_path
                    .set(&mut document, value.clone())
                    .map_err(|e| SpecError(format!("properties[{i}].path: {e}")))?;
                any = true;
            }
            if any {
                let write = render(
                    &message.topic,
                    identity,
                    path,
                    message.operator.write.as_deref(),
                );
                let Some(topic) = write.filter(|t| topic::valid_name(t)) else {
                    return Err(bad_topic(
                        "write topic",
                        render(
                            &message.topic,
                            identity,
                            path,
                            message.operator.write.as_deref(),
                        )
                        .as_deref(),
                    ));
                };
                writes.push(Write {
                    key: "message".to_owned(),
                    publication: Published {
                        topic,
                        payload: document.to_string(),
                        qos: message.qos,
                        retain: message.retained,
                    },
                });
            }
        }
        Pattern::AttributedTopic => {
            for (i, property) in spec.properties.iter().enumerate() {
                let operator = |write: bool| {
                    let own = property.operator.as_ref().and_then(|o| {
                        if write {
                            o.write.as_deref()
                        } else {
                            o.read.as_deref()
                        }
                    });
                    own.or(if write {
                        message.operator.write.as_deref()
                    } else {
                        message.operator.read.as_deref()
                    })
                };
                let qos = property.qos.unwrap_or(message.qos);
                let read = render(
                    &message.topic,
                    identity,
                    Some(&property.path),
                    operator(false),
                );
                match read.filter(|t| topic::valid_filter(t)) {
                    Some(filter) => add_sub(filter, qos, i),
                    None => {
                        return Err(SpecError(format!(
                            "properties[{i}]: the read topic renders to nothing or to an invalid filter"
                        )));
                    }
                }
                if let Some(value) = &property.value {
                    let write = render(
                        &message.topic,
                        identity,
                        Some(&property.path),
                        operator(true),
                    );
                    let Some(topic) = write.filter(|t| topic::valid_name(t)) else {
                        return Err(SpecError(format!(
                            "properties[{i}]: the write topic renders to nothing or holds a wildcard"
                        )));
                    };
                    writes.push(Write {
                        key: property.name.clone(),
                        publication: Published {
                            topic,
                            payload: String::from_utf8_lossy(&value::to_payload(value))
                                .into_owned(),
                            qos,
                            retain: property.retained.unwrap_or(message.retained),
                        },
                    });
                }
            }
        }
    }
    Ok((subs, writes))
}

impl Engine {
    pub fn new(spec: Spec, identity: &Identity) -> Result<Engine, SpecError> {
        let (subs, writes) = plan(&spec, identity)?;
        let will = match &spec.connection.will {
            None => None,
            Some(w) => {
                let topic = render(&w.topic, identity, None, None)
                    .filter(|t| topic::valid_name(t))
                    .ok_or_else(|| {
                        SpecError(
                            "protocol.message.will.topic: renders to nothing or holds a wildcard"
                                .to_owned(),
                        )
                    })?;
                Some(codec::Will {
                    topic,
                    payload: w.payload.clone(),
                    qos: 1,
                    retain: true,
                })
            }
        };
        Ok(Engine {
            client_id: client_id(&identity.uid, Version::V311),
            spec,
            will,
            subs,
            writes,
            session: None,
            fallback_v31: false,
            next_attempt_ms: 0,
            backoff_ms: FIRST_BACKOFF_MS,
            lost_since_publish: false,
            last_failure: None,
            read_errors: BTreeMap::new(),
            sub_errors: BTreeMap::new(),
            write_errors: BTreeMap::new(),
        })
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    #[cfg(test)]
    pub fn connected(&self) -> bool {
        self.session.is_some()
    }

    pub fn subscription_count(&self) -> usize {
        self.subs.len()
    }

    /// Forgets readings taken under another topic, path or type, and publications of
    /// writes the spec no longer has.
    pub fn retain(&self, memory: &mut Memory) {
        let mut current = BTreeMap::new();
        for sub in &self.subs {
            for &m in &sub.members {
                if let Some(p) = self.spec.properties.get(m) {
                    current.insert(p.name.clone(), signature(&sub.filter, p));
                }
            }
        }
        memory
            .readings
            .retain(|name, r| current.get(name) == Some(&r.signature));
        memory
            .published
            .retain(|key, _| self.writes.iter().any(|w| &w.key == key));
    }

    /// Takes over `old`'s broker session when the connection settings are the same,
    /// adjusting subscriptions; otherwise disconnects it so the next attempt uses the
    /// new settings right away.
    pub fn take_over(&mut self, mut old: Engine, net: &mut dyn Net) {
        self.fallback_v31 = old.fallback_v31;
        if old.spec.connection != self.spec.connection || old.will != self.will {
            old.disconnect(net);
            return;
        }
        let Some(session) = old.session.take() else {
            // Down: keep the backoff unless the spec changed how to connect (it did not).
            self.next_attempt_ms = old.next_attempt_ms;
            self.backoff_ms = old.backoff_ms;
            self.last_failure = old.last_failure;
            return;
        };
        self.session = Some(session);
        self.write_errors = old.write_errors;
        let old_subs: BTreeSet<(String, u8)> =
            old.subs.iter().map(|s| (s.filter.clone(), s.qos)).collect();
        let new_subs: BTreeSet<(String, u8)> = self
            .subs
            .iter()
            .map(|s| (s.filter.clone(), s.qos))
            .collect();
        let gone: Vec<String> = old_subs
            .iter()
            .filter(|(f, _)| !self.subs.iter().any(|s| &s.filter == f))
            .map(|(f, _)| f.clone())
            .collect();
        let added: Vec<(String, u8)> = new_subs.difference(&old_subs).cloned().collect();
        let result = (|| {
            if !gone.is_empty() {
                let id = self.session_mut()?.next_id();
                self.send(net, &Packet::Unsubscribe { id, filters: gone })?;
            }
            if !added.is_empty() {
                self.subscribe(net, added)?;
            }
            Ok(())
        })();
        if let Err(failure) = result {
            self.lost(net, failure);
        }
    }

    fn session_mut(&mut self) -> Result<&mut Session, Failure> {
        self.session
            .as_mut()
            .ok_or_else(|| Failure::Unreachable("not connected".to_owned()))
    }

    fn send(&mut self, net: &mut dyn Net, packet: &Packet) -> Result<(), Failure> {
        let bytes = packet
            .encode()
            .map_err(|e| Failure::Protocol(format!("cannot encode a packet: {e}")))?;
        let timeout = self.spec.timing.connect_ms;
        net.send(&bytes, timeout).map_err(|e| match e {
            NetError::Denied(m) => Failure::Denied(m),
            other => Failure::Unreachable(format!("lost the broker: {}", other.describe())),
        })?;
        let now = net.now_ms();
        self.session_mut()?.last_sent_ms = now;
        Ok(())
    }

    fn subscribe(&mut self, net: &mut dyn Net, filters: Vec<(String, u8)>) -> Result<(), Failure> {
        if filters.is_empty() {
            return Ok(());
        }
        let session = self.session_mut()?;
        let id = session.next_id();
        session
            .pending_subs
            .insert(id, filters.iter().map(|(f, _)| f.clone()).collect());
        self.send(net, &Packet::Subscribe { id, filters })
    }

    /// Drops the session after a failure; the next poll reconnects at once.
    fn lost(&mut self, net: &mut dyn Net, failure: Failure) {
        net.close();
        self.lost_since_publish |= self.session.is_some();
        self.session = None;
        self.next_attempt_ms = net.now_ms();
        self.last_failure = Some(failure);
    }

    /// Connects now, whatever the backoff says (a new spec deserves a try).
    pub fn connect(&mut self, memory: &mut Memory, net: &mut dyn Net) -> Result<(), Failure> {
        if self.session.is_some() {
            return self.publish_pending(memory, net);
        }
        if self.lost_since_publish {
            memory.published.retain(|_, p| !p.retain);
        }
        match self.establish(memory, net) {
            Ok(()) => {
                self.backoff_ms = FIRST_BACKOFF_MS;
                self.last_failure = None;
                self.lost_since_publish = false;
                Ok(())
            }
            Err(failure) => {
                net.close();
                self.session = None;
                self.next_attempt_ms = net.now_ms().saturating_add(self.backoff_ms);
                self.backoff_ms = (self.backoff_ms * 2).min(self.spec.timing.max_backoff_ms);
                self.last_failure = Some(failure.clone());
                Err(failure)
            }
        }
    }

    fn version(&self) -> Version {
        match self.spec.connection.version {
            VersionChoice::V31 => Version::V31,
            VersionChoice::V311 => Version::V311,
            VersionChoice::Auto if self.fallback_v31 => Version::V31,
            VersionChoice::Auto => Version::V311,
        }
    }

    fn establish(&mut self, memory: &mut Memory, net: &mut dyn Net) -> Result<(), Failure> {
        let code = self.handshake(net)?;
        let code = if code == 1
            && self.spec.connection.version == VersionChoice::Auto
            && !self.fallback_v31
        {
            // The broker speaks only 3.1: try again with it.
            net.close();
            self.session = None;
            self.fallback_v31 = true;
            self.handshake(net)?
        } else {
            code
        };
        let refused = || {
            format!(
                "broker refused the connection: {}",
                codec::connack_reason(code)
            )
        };
        match code {
            0 => {}
            2 | 4 | 5 => return Err(Failure::Refused(refused())),
            3 => return Err(Failure::Unreachable(refused())),
            _ => return Err(Failure::Protocol(refused())),
        }
        let filters = self
            .subs
            .iter()
            .map(|s| (s.filter.clone(), s.qos))
            .collect();
        self.subscribe(net, filters)?;
        self.publish_pending(memory, net)
    }

    /// Opens the connection, sends CONNECT and returns the CONNACK code.
    fn handshake(&mut self, net: &mut dyn Net) -> Result<u8, Failure> {
        let timing = self.spec.timing;
        let server = self.spec.connection.server.clone();
        net.open(self.spec.connection.tls.as_ref(), timing.connect_ms)
            .map_err(|e| match e {
                NetError::Denied(m) => Failure::Denied(format!("cannot connect to {server}: {m}")),
                NetError::Timeout => Failure::Unreachable(format!(
                    "cannot connect to {server}: timed out after {} ms",
                    timing.connect_ms
                )),
                other => Failure::Unreachable(format!(
                    "cannot connect to {server}: {}",
                    other.describe()
                )),
            })?;
        self.session = Some(Session::default());
        let version = self.version();
        let connection = &self.spec.connection;
        let connect = Packet::Connect(Connect {
            version,
            client_id: match version {
                Version::V31 => self.client_id.chars().take(23).collect(),
                Version::V311 => self.client_id.clone(),
            },
            clean_session: connection.clean_session,
            keep_alive: connection.keep_alive_s,
            username: connection.username.clone(),
            password: connection.password.clone(),
            will: self.will.clone(),
        });
        self.send(net, &connect)?;
        let deadline = net.now_ms().saturating_add(u64::from(timing.connect_ms));
        loop {
            if let Some(packet) = self
                .session_mut()?
                .decoder
                .next_packet()
                .map_err(|e| Failure::Protocol(format!("{server} does not speak MQTT: {e}")))?
            {
                return match packet {
                    Packet::ConnAck { code, .. } => Ok(code),
                    other => Err(Failure::Protocol(format!(
                        "{server} answered CONNECT with {other:?} instead of CONNACK"
                    ))),
                };
            }
            let now = net.now_ms();
            let wait = deadline.saturating_sub(now);
            let bytes = if wait == 0 {
                Err(NetError::Timeout)
            } else {
                net.receive(RECEIVE_MAX, u32::try_from(wait).unwrap_or(u32::MAX))
            };
            match bytes {
                Ok(bytes) => self.session_mut()?.decoder.push(&bytes),
                Err(NetError::Timeout) => {
                    return Err(Failure::Unreachable(format!(
                        "{server} sent no CONNACK within {} ms",
                        timing.connect_ms
                    )));
                }
                Err(NetError::Denied(m)) => return Err(Failure::Denied(m)),
                Err(other) => {
                    return Err(Failure::Unreachable(format!(
                        "{server} closed the connection during the handshake: {}",
                        other.describe()
                    )));
                }
            }
        }
    }

    /// Publishes every write whose publication is neither acknowledged nor in flight.
    fn publish_pending(&mut self, memory: &mut Memory, net: &mut dyn Net) -> Result<(), Failure> {
        for write in self.writes.clone() {
            if memory.published.get(&write.key) == Some(&write.publication) {
                self.write_errors.remove(&write.key);
                continue;
            }
            let session = self.session_mut()?;
            if session
                .outgoing
                .values()
                .any(|o| o.key == write.key && o.publication == write.publication)
            {
                continue;
            }
            let p = &write.publication;
            let id = (p.qos > 0).then(|| session.next_id());
            let packet = Packet::Publish(Publish {
                topic: p.topic.clone(),
                payload: p.payload.clone().into_bytes(),
                qos: p.qos,
                retain: p.retain,
                dup: false,
                id,
            });
            if let Err(e) = packet.encode() {
                self.write_errors
                    .insert(write.key.clone(), format!("cannot publish: {e}"));
                continue;
            }
            self.send(net, &packet)?;
            match id {
                None => {
                    memory.published.insert(write.key.clone(), p.clone());
                    self.write_errors.remove(&write.key);
                }
                Some(id) => {
                    self.session_mut()?.outgoing.insert(
                        id,
                        Outgoing {
                            key: write.key.clone(),
                            publication: p.clone(),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// One poll: (re)connect if due, publish what changed, then wait up to
    /// [`WINDOW_MS`] for messages, returning as soon as one changed the status.
    pub fn poll(&mut self, memory: &mut Memory, net: &mut dyn Net) -> Outcome {
        let failure = self.poll_inner(memory, net).err();
        Outcome {
            status: self.status(memory),
            failure,
        }
    }

    fn poll_inner(&mut self, memory: &mut Memory, net: &mut dyn Net) -> Result<(), Failure> {
        if self.session.is_none() {
            let now = net.now_ms();
            if now < self.next_attempt_ms {
                // Back-to-back polls must not hammer the broker (or the CPU).
                net.nap((self.next_attempt_ms - now).min(NAP_MS));
                if net.now_ms() < self.next_attempt_ms {
                    return Err(self
                        .last_failure
                        .clone()
                        .unwrap_or_else(|| Failure::Unreachable("not connected".to_owned())));
                }
            }
            self.connect(memory, net)?;
        } else if let Err(failure) = self.publish_pending(memory, net) {
            self.lost(net, failure.clone());
            return Err(failure);
        }
        let deadline = net.now_ms().saturating_add(WINDOW_MS);
        if let Err(failure) = self.pump(memory, net, deadline) {
            self.lost(net, failure.clone());
            return Err(failure);
        }
        Ok(())
    }

    fn keep_alive(&mut self, net: &mut dyn Net) -> Result<(), Failure> {
        let keep_alive_ms = u64::from(self.spec.connection.keep_alive_s) * 1_000;
        if keep_alive_ms == 0 {
            return Ok(());
        }
        let ping_timeout = self.spec.timing.ping_timeout_ms;
        let now = net.now_ms();
        let session = self.session_mut()?;
        match session.ping_sent_ms {
            Some(sent) if now.saturating_sub(sent) > ping_timeout => Err(Failure::Unreachable(
                format!("the broker did not answer a PINGREQ within {ping_timeout} ms"),
            )),
            Some(_) => Ok(()),
            // Ping well before the broker's 1.5 × keep-alive: polls may be late.
            None if now.saturating_sub(session.last_sent_ms) >= keep_alive_ms * 3 / 4 => {
                session.ping_sent_ms = Some(now);
                self.send(net, &Packet::PingReq)
            }
            None => Ok(()),
        }
    }

    fn pump(
        &mut self,
        memory: &mut Memory,
        net: &mut dyn Net,
        deadline: u64,
    ) -> Result<(), Failure> {
        loop {
            let mut changed = false;
            while let Some(packet) = self.session_mut()?.decoder.next_packet().map_err(|e| {
                Failure::Protocol(format!("the broker sent a malformed packet: {e}"))
            })? {
                changed |= self.handle(packet, memory, net)?;
            }
            self.keep_alive(net)?;
            let now = net.now_ms();
            if changed || now >= deadline {
                return Ok(());
            }
            let wait = u32::try_from(deadline - now).unwrap_or(u32::MAX);
            match net.receive(RECEIVE_MAX, wait) {
                Ok(bytes) => self.session_mut()?.decoder.push(&bytes),
                Err(NetError::Timeout) => return self.keep_alive(net),
                Err(NetError::Denied(m)) => return Err(Failure::Denied(m)),
                Err(other) => {
                    return Err(Failure::Unreachable(format!(
                        "lost the broker: {}",
                        other.describe()
                    )));
                }
            }
        }
    }

    /// Handles one packet from the broker; true when the status changed.
    fn handle(
        &mut self,
        packet: Packet,
        memory: &mut Memory,
        net: &mut dyn Net,
    ) -> Result<bool, Failure> {
        match packet {
            Packet::Publish(p) => {
                let fresh = match (p.qos, p.id) {
                    (1, Some(id)) => {
                        self.send(net, &Packet::PubAck(id))?;
                        true
                    }
                    (2, Some(id)) => {
                        let fresh = self.session_mut()?.incoming.insert(id);
                        self.send(net, &Packet::PubRec(id))?;
                        fresh
                    }
                    _ => true,
                };
                let now = time::rfc3339(net.wall_ms());
                Ok(fresh && self.deliver(&p.topic, &p.payload, memory, &now))
            }
            Packet::PubAck(id) | Packet::PubComp(id) => {
                if let Some(done) = self.session_mut()?.outgoing.remove(&id) {
                    self.write_errors.remove(&done.key);
                    memory.published.insert(done.key, done.publication);
                }
                Ok(false)
            }
            Packet::PubRec(id) => {
                self.send(net, &Packet::PubRel(id))?;
                Ok(false)
            }
            Packet::PubRel(id) => {
                self.session_mut()?.incoming.remove(&id);
                self.send(net, &Packet::PubComp(id))?;
                Ok(false)
            }
            Packet::SubAck { id, codes } => {
                let filters = self
                    .session_mut()?
                    .pending_subs
                    .remove(&id)
                    .unwrap_or_default();
                let mut changed = false;
                for (filter, code) in filters.into_iter().zip(codes) {
                    if code == SUBACK_FAILURE {
                        let why = format!("the broker refused the subscription to {filter}");
                        changed |= self.sub_errors.insert(filter, why.clone()) != Some(why);
                    } else {
                        changed |= self.sub_errors.remove(&filter).is_some();
                    }
                }
                Ok(changed)
            }
            Packet::PingResp => {
                self.session_mut()?.ping_sent_ms = None;
                Ok(false)
            }
            Packet::UnsubAck(_) => Ok(false),
            Packet::Disconnect => Err(Failure::Unreachable(
                "the broker closed the session".to_owned(),
            )),
            other => Err(Failure::Protocol(format!(
                "the broker sent {other:?}, which a broker never sends"
            ))),
        }
    }

    /// Routes a message to the properties it feeds; true when any reading or error
    /// changed.
    fn deliver(
        &mut self,
        topic_name: &str,
        payload: &[u8],
        memory: &mut Memory,
        now: &str,
    ) -> bool {
        if payload.is_empty() {
            // A retained message being cleared: no value.
            return false;
        }
        let mut changed = false;
        let mut results: Vec<(usize, String, Result<Value, String>)> = Vec::new();
        for sub in self
            .subs
            .iter()
            .filter(|s| topic::matches(&s.filter, topic_name))
        {
            match self.spec.pattern {
                Pattern::AttributedMessage => {
                    let document = serde_json::from_slice::<Value>(payload);
                    for &m in &sub.members {
                        let Some(property) = self.spec.properties.get(m) else {
                            continue;
                        };
                        let result = match &document {
                            Err(e) => Err(format!("the message on {topic_name} is not JSON: {e}")),
                            Ok(doc) => match property.json_path.as_ref().and_then(|p| p.get(doc)) {
                                // Not in this message: keep the last value.
                                None => continue,
                                Some(v) => value::coerce(property.kind, v)
                                    .map_err(|e| format!("{} on {topic_name}: {e}", property.path)),
                            },
                        };
                        results.push((m, sub.filter.clone(), result));
                    }
                }
                Pattern::AttributedTopic => {
                    for &m in &sub.members {
                        let Some(property) = self.spec.properties.get(m) else {
                            continue;
                        };
                        let result = value::from_payload(property.kind, payload)
                            .map_err(|e| format!("the message on {topic_name}: {e}"));
                        results.push((m, sub.filter.clone(), result));
                    }
                }
            }
        }
        for (m, filter, result) in results {
            let Some(property) = self.spec.properties.get(m) else {
                continue;
            };
            match result {
                Ok(value) => {
                    memory.readings.insert(
                        property.name.clone(),
                        Reading {
                            signature: signature(&filter, property),
                            value,
                            updated_at: now.to_owned(),
                        },
                    );
                    self.read_errors.remove(&property.name);
                    changed = true;
                }
                Err(why) => {
                    changed |=
                        self.read_errors.insert(property.name.clone(), why.clone()) != Some(why);
                }
            }
        }
        changed
    }

    /// The status document, properties in spec order.
    pub fn status(&self, memory: &Memory) -> Value {
        let properties: Vec<Value> = self
            .spec
            .properties
            .iter()
            .enumerate()
            .map(|(i, property)| {
                let mut entry = Map::new();
                entry.insert("name".into(), json!(property.name));
                entry.insert("type".into(), json!(property.kind.name()));
                for (key, value) in &property.echo {
                    entry.insert(key.clone(), value.clone());
                }
                if let Some(reading) = memory.readings.get(&property.name) {
                    entry.insert("value".into(), reading.value.clone());
                    // Octopus's JSON name (sic), which its readers look for.
                    entry.insert("updateAt".into(), json!(reading.updated_at));
                }
                let mut errors = Vec::new();
                if let Some(why) = self.read_errors.get(&property.name) {
                    errors.push(why.clone());
                }
                for sub in self.subs.iter().filter(|s| s.members.contains(&i)) {
                    if let Some(why) = self.sub_errors.get(&sub.filter) {
                        errors.push(why.clone());
                    }
                }
                let key = match self.spec.pattern {
                    Pattern::AttributedMessage => "message",
                    Pattern::AttributedTopic => property.name.as_str(),
                };
                if property.value.is_some()
                    && let Some(why) = self.write_errors.get(key)
                {
                    errors.push(why.clone());
                }
                if !errors.is_empty() {
                    entry.insert("error".into(), json!(errors.join("; ")));
                }
                Value::Object(entry)
            })
            .collect();
        json!({ "properties": properties })
    }

    /// Sends DISCONNECT (so the broker drops the will) and closes the connection.
    pub fn disconnect(&mut self, net: &mut dyn Net) {
        if self.session.is_some() {
            let _ = self.send(net, &Packet::Disconnect);
        }
        net.close();
        self.session = None;
    }
}

#[cfg(test)]
mod tests;
