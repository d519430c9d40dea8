//! The MQTT extension's publisher: one task per device with `extension.mqtt`, holding
//! one broker connection and publishing the device's status document on every change.
//!
//! The supervisor only drops documents into a one-slot mailbox (latest wins), so a slow
//! or absent broker never delays a poll, and a slow broker never makes a queue: besides
//! the mailbox, a device holds at most `REQUEST_QUEUE` documents handed to the
//! connection and `IN_FLIGHT` awaiting the broker's acknowledgement. The task connects
//! on the device's behalf, so the broker's address must pass the node policy for tcp
//! like any capability target.
//! Broker trouble (refused credentials, a certificate that does not verify, a broker
//! that is down) is retried with capped backoff and reported as one Warning event per
//! kind of failure, never as a device failure.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use crds::GrantKind;
use crds::models::extension::{MqttClientTls, MqttOptions, ReferenceRelationship};
use mqtt_topic::{self as topic, Values};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, NetworkOptions, Outgoing,
    Packet, QoS, TlsConfiguration, Transport,
};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::Env;
use crate::bindings::ReferenceValue;
use crate::status::{Event as DeviceEvent, EventType};

/// MQTT 3.1 limits client IDs to 23 characters; Octopus truncates `octopus-<uid>` to that.
const CLIENT_ID_MAX: usize = 23;
/// Requests queued towards the connection; when full, documents wait in the mailbox
/// (where a newer one replaces them). Small: a queued document can no longer be replaced.
const REQUEST_QUEUE: usize = 2;
/// QoS 1 and 2 documents sent and not acknowledged yet; the client's default of 100
/// would let a broker that reads but never acknowledges hold 100 status documents per
/// device.
const IN_FLIGHT: u16 = 2;
/// Largest status document sent; the supervisor's own limit is normally far below.
const MAX_OUTGOING: usize = 16 << 20;
/// The extension subscribes to nothing, so incoming packets are small.
const MAX_INCOMING: usize = 64 << 10;
/// First reconnect delay; it doubles up to `maxReconnectInterval` (and [`MAX_BACKOFF`]).
const BASE_BACKOFF: Duration = Duration::from_millis(250);
/// Upper bound of the reconnect delay whatever the spec says, so a fixed broker is
/// found again within a minute.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a stopping publisher waits for its DISCONNECT to go out.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// Why `extension.mqtt` cannot be used as written; reported once per change of the spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("extension.mqtt is not valid: {0}")]
    Spec(String),
    #[error("server {0:?} is not of the form scheme://host[:port]")]
    BadServer(String),
    #[error(
        "server scheme {0}:// is not supported by the MQTT extension; use tcp://, or ssl://, tls:// or tcps:// for TLS"
    )]
    UnsupportedScheme(String),
    #[error(
        "{field}: reference {name:?} item {item:?} is not among the DeviceLink's resolved references"
    )]
    MissingReference {
        field: &'static str,
        name: String,
        item: String,
    },
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("{field} {value:?} is not a duration such as 30s or 10m")]
    BadDuration { field: &'static str, value: String },
    #[error("message.qos {0} is not 0, 1 or 2")]
    BadQos(u8),
    #[error("message.will.content is not base64")]
    BadWill,
    #[error("message.topic {0:?} renders to an empty topic")]
    EmptyTopic(String),
    #[error("tlsConfig: {0}")]
    Tls(String),
}

/// Who the device is, for topic keywords and the client ID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub name: String,
    /// The DeviceLink's UID.
    pub uid: String,
}

/// `extension.mqtt`, resolved against the identity and the references: everything a
/// connection needs, checked before any I/O.
#[derive(Clone, Debug)]
pub struct Config {
    /// The server as written, for messages.
    pub server: String,
    pub host: String,
    pub port: u16,
    pub tls: Option<Arc<ClientConfig>>,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    pub topic: String,
    pub qos: QoS,
    pub retain: bool,
    /// Topic and payload of the will (sent with QoS 1, retained).
    pub will: Option<(String, Vec<u8>)>,
    pub keep_alive: Duration,
    pub clean_session: bool,
    pub connect_timeout: Duration,
    pub max_backoff: Duration,
}

impl Config {
    /// Resolves `options` for the device `identity` with the link's resolved references.
    pub fn resolve(
        identity: &Identity,
        options: &MqttOptions,
        references: &[ReferenceValue],
    ) -> Result<Self, Error> {
        let client = &options.client;
        let message = &options.message;
        let (scheme, host, port) = parse_server(&client.server)?;
        let tls = match scheme {
            Scheme::Tcp => None,
            Scheme::Tls => Some(tls_config(client.tls_config.as_ref(), references, &host)?),
        };
        let credentials = match &client.basic_auth {
            None => None,
            Some(auth) => {
                let user = inline_or_ref(
                    auth.username.as_deref(),
                    auth.username_ref.as_ref(),
                    references,
                    "basicAuth.usernameRef",
                )?;
                let password = inline_or_ref(
                    auth.password.as_deref(),
                    auth.password_ref.as_ref(),
                    references,
                    "basicAuth.passwordRef",
                )?;
                let text = |b: Option<Vec<u8>>, what| {
                    b.map(String::from_utf8)
                        .transpose()
                        .map_err(|_| Error::NotUtf8(what))
                };
                match (
                    text(user, "basicAuth.username")?,
                    text(password, "basicAuth.password")?,
                ) {
                    (None, None) => None,
                    (u, p) => Some((u.unwrap_or_default(), p.unwrap_or_default())),
                }
            }
        };
        let values = Values {
            namespace: &identity.namespace,
            name: &identity.name,
            uid: &identity.uid,
            path: message.path.as_deref(),
            operator: message.operator.as_ref().and_then(|o| o.write.as_deref()),
        };
        let topic = topic::render(&message.topic, &values);
        if topic.is_empty() {
            return Err(Error::EmptyTopic(message.topic.clone()));
        }
        let qos = match message.qos() {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            other => return Err(Error::BadQos(other)),
        };
        let will = match &message.will {
            None => None,
            Some(will) => {
                let payload = base64::engine::general_purpose::STANDARD
                    .decode(will.content.trim())
                    .map_err(|_| Error::BadWill)?;
                let topic = topic::render(&will.topic(&message.topic), &values);
                if topic.is_empty() {
                    return Err(Error::EmptyTopic(will.topic(&message.topic)));
                }
                Some((topic, payload))
            }
        };
        let keep_alive = duration("client.keepAlive", client.keep_alive())?;
        Ok(Self {
            server: client.server.clone(),
            host,
            port,
            tls,
            client_id: client_id(&identity.uid),
            credentials,
            topic,
            qos,
            retain: message.retained(),
            will,
            // The client library counts keep-alive in whole seconds (0 disables it).
            keep_alive: if keep_alive.is_zero() {
                keep_alive
            } else {
                keep_alive.max(Duration::from_secs(1))
            },
            clean_session: client.clean_session(),
            connect_timeout: duration("client.connectTimeout", client.connect_timeout())?,
            max_backoff: duration(
                "client.maxReconnectInterval",
                client.max_reconnect_interval(),
            )?
            .clamp(BASE_BACKOFF, MAX_BACKOFF),
        })
    }
}

/// `octopus-` + the link UID, cut to the 23 characters MQTT 3.1 allows.
pub fn client_id(uid: &str) -> String {
    format!("octopus-{uid}")
        .chars()
        .take(CLIENT_ID_MAX)
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Tcp,
    Tls,
}

fn parse_server(server: &str) -> Result<(Scheme, String, u16), Error> {
    let bad = || Error::BadServer(server.to_owned());
    let (scheme, rest) = server.split_once("://").ok_or_else(bad)?;
    let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "tcp" | "mqtt" => (Scheme::Tcp, 1883),
        "ssl" | "tls" | "tcps" | "mqtts" => (Scheme::Tls, 8883),
        other => return Err(Error::UnsupportedScheme(other.to_owned())),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return Err(bad());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (host, p.parse().map_err(|_| bad())?),
            None if after.is_empty() => (host, default_port),
            None => return Err(bad()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, p)) => (host, p.parse().map_err(|_| bad())?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((scheme, host.to_owned(), port))
}

/// A Go duration as Octopus writes them (`30s`, `10m`, `1m30s`, `0`).
fn duration(field: &'static str, text: &str) -> Result<Duration, Error> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text.trim()).map_err(|_| Error::BadDuration {
        field,
        value: text.to_owned(),
    })
}

fn reference(
    rel: &ReferenceRelationship,
    references: &[ReferenceValue],
    field: &'static str,
) -> Result<Vec<u8>, Error> {
    references
        .iter()
        .find(|r| r.reference == rel.name && r.item == rel.item)
        .map(|r| r.value.clone())
        .ok_or_else(|| Error::MissingReference {
            field,
            name: rel.name.clone(),
            item: rel.item.clone(),
        })
}

/// The inline value if given, else the referenced one.
fn inline_or_ref(
    inline: Option<&str>,
    rel: Option<&ReferenceRelationship>,
    references: &[ReferenceValue],
    field: &'static str,
) -> Result<Option<Vec<u8>>, Error> {
    match (inline, rel) {
        (Some(v), _) => Ok(Some(v.as_bytes().to_vec())),
        (None, Some(rel)) => reference(rel, references, field).map(Some),
        (None, None) => Ok(None),
    }
}

fn tls_config(
    tls: Option<&MqttClientTls>,
    references: &[ReferenceValue],
    host: &str,
) -> Result<Arc<ClientConfig>, Error> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Error::Tls(format!("{what}: {e}"));
    let default = MqttClientTls::default();
    let tls = tls.unwrap_or(&default);
    let ca = inline_or_ref(
        tls.ca_file_pem.as_deref(),
        tls.ca_file_pem_ref.as_ref(),
        references,
        "tlsConfig.caFilePEMRef",
    )?;
    let cert = inline_or_ref(
        tls.client.cert_file_pem.as_deref(),
        tls.client.cert_file_pem_ref.as_ref(),
        references,
        "tlsConfig.certFilePEMRef",
    )?;
    let key = inline_or_ref(
        tls.client.key_file_pem.as_deref(),
        tls.client.key_file_pem_ref.as_ref(),
        references,
        "tlsConfig.keyFilePEMRef",
    )?;
    // The limb connects to the address it checked against the node policy, so the
    // certificate is verified against the name the user meant: serverName, else the
    // host of the server URL.
    let name = tls.server_name.clone().unwrap_or_else(|| host.to_owned());
    let verify_as = ServerName::try_from(name.clone())
        .map_err(|e| fail(&format!("server name {name:?}"), &e))?;
    crate::capabilities::tls::build(&crate::capabilities::tls::ClientTls {
        ca_pem: ca.as_deref(),
        cert_pem: cert.as_deref(),
        key_pem: key.as_deref(),
        insecure: tls.insecure_skip_verify == Some(true),
        verify_as: Some(verify_as),
    })
    .map_err(|e| Error::Tls(e.0))
}

/// A one-slot mailbox between the supervisor and the publisher: the newest document
/// replaces an unsent one, so the supervisor never waits.
#[derive(Default)]
pub struct Mailbox {
    slot: Mutex<Slot>,
    ready: Notify,
}

#[derive(Default)]
struct Slot {
    pending: Option<Arc<str>>,
    /// The newest document offered, republished after every (re)connect.
    last: Option<Arc<str>>,
}

/// What became of an offered document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Same as the last one: nothing to publish.
    Unchanged,
    Queued,
    /// Queued, dropping an older document that was not sent yet.
    Superseded,
}

impl Mailbox {
    pub fn offer(&self, doc: &str) -> Offer {
        let outcome = {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            if slot.last.as_deref() == Some(doc) {
                return Offer::Unchanged;
            }
            let doc: Arc<str> = Arc::from(doc);
            slot.last = Some(doc.clone());
            match slot.pending.replace(doc) {
                Some(_) => Offer::Superseded,
                None => Offer::Queued,
            }
        };
        self.ready.notify_one();
        outcome
    }

    fn take(&self) -> Option<Arc<str>> {
        self.slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending
            .take()
    }

    /// Puts back a document the connection could not take, unless a newer one came.
    fn restore(&self, doc: Arc<str>) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.pending.is_none() {
            slot.pending = Some(doc);
        }
    }

    /// Clears the pending document and returns the newest one, for a fresh connection.
    fn take_last(&self) -> Option<Arc<str>> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.pending = None;
        slot.last.clone()
    }
}

/// The registry's side of a running publisher; dropping it disconnects and ends the task.
pub struct Publisher {
    config: watch::Sender<Arc<Config>>,
    pub mailbox: Arc<Mailbox>,
    _task: JoinHandle<()>,
}

impl Publisher {
    pub fn spawn(key: String, config: Config, env: Env) -> Self {
        let (tx, rx) = watch::channel(Arc::new(config));
        let mailbox = Arc::new(Mailbox::default());
        let task = tokio::spawn(run(key, env, rx, mailbox.clone()));
        Self {
            config: tx,
            mailbox,
            _task: task,
        }
    }

    /// Moves to a new configuration: the current connection is closed and a new one made.
    pub fn reconfigure(&self, config: Config) {
        self.config.send_replace(Arc::new(config));
    }
}

/// Kinds of connection failure; each is reported once until a connection succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// The node policy does not allow the broker's address.
    Policy,
    Resolve,
    Unreachable,
    /// The broker answered CONNECT with a refusal (credentials, client ID...).
    Refused,
    Tls,
    /// An established connection broke.
    Lost,
    Protocol,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::Resolve => "resolve",
            Self::Unreachable => "unreachable",
            Self::Refused => "refused",
            Self::Tls => "tls",
            Self::Lost => "lost",
            Self::Protocol => "protocol",
        }
    }
}

enum End {
    Stop,
    Reconfigured,
    Failed(Failure, String),
}

async fn run(
    key: String,
    env: Env,
    mut config_rx: watch::Receiver<Arc<Config>>,
    mailbox: Arc<Mailbox>,
) {
    let mut reported: Option<Failure> = None;
    let mut failures: u32 = 0;
    loop {
        let config = config_rx.borrow_and_update().clone();
        let end = session(
            &key,
            &env,
            &config,
            &mut config_rx,
            &mailbox,
            (&mut reported, &mut failures),
        )
        .await;
        match end {
            End::Stop => break,
            End::Reconfigured => {
                failures = 0;
                reported = None;
            }
            End::Failed(kind, message) => {
                env.metrics.mqtt_connection(kind.as_str());
                failures += 1;
                let delay = backoff(failures, config.max_backoff, fastrand::f64());
                if reported != Some(kind) {
                    reported = Some(kind);
                    let message = format!(
                        "mqtt extension cannot publish to {}: {message}; the device is not affected, retrying with backoff",
                        config.server
                    );
                    env.record(&key, EventType::Warning, "MqttExtensionFailed", &message);
                } else {
                    tracing::debug!(device = %key, %message, ?delay, "mqtt extension still failing");
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    changed = config_rx.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        failures = 0;
                        reported = None;
                    }
                }
            }
        }
    }
    tracing::debug!(device = %key, "mqtt extension stopped");
}

/// The reconnect delay after `failures` in a row: the shared backoff from
/// [`BASE_BACKOFF`] to the spec's `max`.
fn backoff(failures: u32, max: Duration, jitter: f64) -> Duration {
    octopus_backoff::Backoff::new(BASE_BACKOFF, max).delay(failures, jitter)
}

/// Picks an address of the broker that the node policy allows.
async fn target(env: &Env, host: &str, port: u16) -> Result<SocketAddr, (Failure, String)> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| (Failure::Resolve, format!("cannot resolve {host}: {e}")))?
            .collect(),
    };
    addrs
        .iter()
        .copied()
        .find(|a| env.policy.check_addr(GrantKind::Tcp, *a).is_ok())
        .ok_or_else(|| {
            (
                Failure::Policy,
                format!("{host}:{port} resolves to {addrs:?}, which the node policy does not allow for tcp"),
            )
        })
}

/// One connection, until it fails, the configuration changes or the device goes.
async fn session(
    key: &str,
    env: &Env,
    config: &Config,
    config_rx: &mut watch::Receiver<Arc<Config>>,
    mailbox: &Mailbox,
    (reported, failures): (&mut Option<Failure>, &mut u32),
) -> End {
    let addr = match target(env, &config.host, config.port).await {
        Ok(a) => a,
        Err((kind, message)) => return End::Failed(kind, message),
    };
    let mut options =
        rumqttc::MqttOptions::new(config.client_id.clone(), addr.ip().to_string(), addr.port());
    options
        .set_keep_alive(config.keep_alive)
        .set_clean_session(config.clean_session)
        .set_inflight(IN_FLIGHT)
        .set_max_packet_size(MAX_INCOMING, MAX_OUTGOING);
    if let Some((user, password)) = &config.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some((topic, payload)) = &config.will {
        options.set_last_will(LastWill::new(
            topic.clone(),
            payload.clone(),
            QoS::AtLeastOnce,
            true,
        ));
    }
    if let Some(tls) = &config.tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
    let mut network = NetworkOptions::new();
    network.set_connection_timeout(config.connect_timeout.as_secs().max(1));
    eventloop.set_network_options(network);
    // The event loop runs in its own task so that nothing here cancels a half-done
    // connect or read.
    let (events_tx, mut events) = mpsc::channel(64);
    let poller = AbortOnDrop(tokio::spawn(async move {
        loop {
            let event = eventloop.poll().await;
            let failed = event.is_err();
            if events_tx.send(event).await.is_err() || failed {
                break;
            }
        }
    }));
    let mut connected = false;
    // The connection's request queue is full: documents wait in the mailbox (where a
    // newer one replaces them) until the event loop makes progress.
    let mut blocked = false;
    let end = loop {
        if connected && !blocked {
            while let Some(doc) = mailbox.take() {
                if !send(&client, config, &doc) {
                    mailbox.restore(doc);
                    blocked = true;
                    break;
                }
            }
        }
        tokio::select! {
            changed = config_rx.changed() => {
                break if changed.is_ok() { End::Reconfigured } else { End::Stop };
            }
            event = events.recv() => match event.inspect(|_| blocked = false) {
                None => break End::Failed(Failure::Protocol, "the MQTT event loop ended".into()),
                Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    connected = true;
                    env.metrics.mqtt_connection("connected");
                    *reported = None;
                    *failures = 0;
                    env.record(
                        key,
                        EventType::Normal,
                        "MqttExtensionConnected",
                        &format!(
                            "mqtt extension connected to {} as {}, publishing status on {}",
                            config.server, config.client_id, config.topic
                        ),
                    );
                    // A broker that restarted may have lost the retained status.
                    if let Some(doc) = mailbox.take_last()
                        && !send(&client, config, &doc)
                    {
                        mailbox.restore(doc);
                    }
                }
                Some(Ok(Event::Outgoing(Outgoing::Publish(_)))) => env.metrics.mqtt_publish("published"),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let (kind, message) = classify(&e, connected);
                    break End::Failed(kind, message);
                }
            },
            () = mailbox.ready.notified(), if connected && !blocked => {}
        }
    };
    if matches!(end, End::Stop | End::Reconfigured) && connected && client.try_disconnect().is_ok()
    {
        let _ = tokio::time::timeout(DISCONNECT_GRACE, async {
            while let Some(event) = events.recv().await {
                if matches!(event, Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)) {
                    break;
                }
            }
        })
        .await;
    }
    drop(poller);
    end
}

/// Queues a document on the connection; false when its queue is full.
fn send(client: &AsyncClient, config: &Config, doc: &str) -> bool {
    client
        .try_publish(
            config.topic.clone(),
            config.qos,
            config.retain,
            doc.as_bytes().to_vec(),
        )
        .is_ok()
}

fn classify(err: &ConnectionError, connected: bool) -> (Failure, String) {
    let lost = |m: String| {
        if connected {
            (Failure::Lost, format!("connection lost: {m}"))
        } else {
            (Failure::Unreachable, m)
        }
    };
    match err {
        ConnectionError::ConnectionRefused(code) => {
            let why = match code {
                ConnectReturnCode::BadUserNamePassword => "bad user name or password",
                ConnectReturnCode::NotAuthorized => "not authorised",
                ConnectReturnCode::BadClientId => "client ID rejected",
                ConnectReturnCode::RefusedProtocolVersion => "protocol version refused",
                ConnectReturnCode::ServiceUnavailable => "service unavailable",
                ConnectReturnCode::Success => "no reason given",
            };
            (
                Failure::Refused,
                format!("the broker refused the connection: {why}"),
            )
        }
        ConnectionError::Tls(e) => (Failure::Tls, format!("TLS handshake failed: {e}")),
        ConnectionError::Io(e) => lost(e.to_string()),
        ConnectionError::NetworkTimeout => lost("timed out".into()),
        ConnectionError::MqttState(rumqttc::StateError::Io(e)) => lost(e.to_string()),
        ConnectionError::MqttState(rumqttc::StateError::ConnectionAborted) => {
            lost("closed by the broker".into())
        }
        other => (Failure::Protocol, other.to_string()),
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Env {
    fn record(&self, key: &str, type_: EventType, reason: &str, message: &str) {
        let event = DeviceEvent::new(type_, reason, message);
        self.board.modify(key, |r| r.record(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            namespace: "default".into(),
            name: "fan".into(),
            uid: "41478d1e-c3f8-46e3-a3b5-ba251f285277".into(),
        }
    }

    fn options(yaml: &str) -> MqttOptions {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn refs(items: &[(&str, &str, &str)]) -> Vec<ReferenceValue> {
        items
            .iter()
            .map(|(r, i, v)| ReferenceValue {
                reference: (*r).into(),
                item: (*i).into(),
                value: v.as_bytes().to_vec(),
            })
            .collect()
    }

    #[test]
    fn defaults_follow_octopus() {
        let o = options(
            "client: {server: tcp://127.0.0.1:1883}\nmessage:\n  topic: cattle.io/octopus/:namespace/:name\n  will: {content: b2ZmbGluZQ==}\n",
        );
        let c = Config::resolve(&identity(), &o, &[]).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 1883));
        assert!(c.tls.is_none());
        assert_eq!(c.client_id, "octopus-41478d1e-c3f8-4");
        assert_eq!(c.client_id.len(), 23);
        assert_eq!(c.topic, "cattle.io/octopus/default/fan");
        assert_eq!(c.qos, QoS::AtLeastOnce);
        assert!(c.retain);
        assert_eq!(
            c.will,
            Some((
                "cattle.io/octopus/default/fan/$will".into(),
                b"offline".to_vec()
            ))
        );
        assert_eq!(c.keep_alive, Duration::from_secs(30));
        assert!(c.clean_session);
        assert_eq!(c.max_backoff, MAX_BACKOFF);
        assert!(c.credentials.is_none());
    }

    #[test]
    fn the_write_operator_and_path_fill_the_topic() {
        let o = options(
            "client: {server: tcp://b:1}\nmessage: {topic: 'x/:operator/:path/:uid', path: p, operator: {read: r, write: w}, qos: 0, retained: false}\n",
        );
        let c = Config::resolve(&identity(), &o, &[]).unwrap();
        assert_eq!(c.topic, "x/w/p/41478d1e-c3f8-46e3-a3b5-ba251f285277");
        assert_eq!(c.qos, QoS::AtMostOnce);
        assert!(!c.retain);
    }

    #[test]
    fn credentials_come_inline_or_from_references() {
        let o = options(
            "client:\n  server: tcp://b:1\n  basicAuth: {username: octo, passwordRef: {name: creds, item: password}}\nmessage: {topic: t}\n",
        );
        let c =
            Config::resolve(&identity(), &o, &refs(&[("creds", "password", "s3cret")])).unwrap();
        assert_eq!(c.credentials, Some(("octo".into(), "s3cret".into())));
        let err = Config::resolve(&identity(), &o, &[]).unwrap_err();
        assert_eq!(
            err,
            Error::MissingReference {
                field: "basicAuth.passwordRef",
                name: "creds".into(),
                item: "password".into()
            }
        );
    }

    #[test]
    fn servers_parse_and_unsupported_schemes_say_so() {
        for (server, want) in [
            ("tcp://broker:1884", Ok((Scheme::Tcp, "broker", 1884))),
            ("tcp://broker", Ok((Scheme::Tcp, "broker", 1883))),
            ("ssl://broker", Ok((Scheme::Tls, "broker", 8883))),
            ("tls://10.0.0.1:8884/", Ok((Scheme::Tls, "10.0.0.1", 8884))),
            ("tcps://[::1]:8883", Ok((Scheme::Tls, "::1", 8883))),
            ("ws://broker:80", Err(Error::UnsupportedScheme("ws".into()))),
            (
                "wss://broker:443",
                Err(Error::UnsupportedScheme("wss".into())),
            ),
            (
                "unix:///run/m.sock",
                Err(Error::UnsupportedScheme("unix".into())),
            ),
            ("broker:1883", Err(Error::BadServer("broker:1883".into()))),
            (
                "tcp://broker:x",
                Err(Error::BadServer("tcp://broker:x".into())),
            ),
        ] {
            let got = parse_server(server);
            let want = want.map(|(s, h, p)| (s, h.to_owned(), p));
            assert_eq!(got, want, "{server}");
        }
        let o = options("client: {server: 'wss://b:1'}\nmessage: {topic: t}\n");
        let msg = Config::resolve(&identity(), &o, &[])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not supported"), "{msg}");
    }

    #[test]
    fn tls_needs_a_usable_ca() {
        let o = options(
            "client:\n  server: ssl://b\n  tlsConfig: {caFilePEMRef: {name: certs, item: ca.crt}}\nmessage: {topic: t}\n",
        );
        let err =
            Config::resolve(&identity(), &o, &refs(&[("certs", "ca.crt", "junk")])).unwrap_err();
        assert!(
            matches!(&err, Error::Tls(m) if m.contains("CA holds no certificate")),
            "{err}"
        );
        let insecure = options(
            "client:\n  server: ssl://b\n  tlsConfig: {insecureSkipVerify: true}\nmessage: {topic: t}\n",
        );
        assert!(
            Config::resolve(&identity(), &insecure, &[])
                .unwrap()
                .tls
                .is_some()
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (yaml, needle) in [
            (
                "client: {server: tcp://b, keepAlive: soon}\nmessage: {topic: t}\n",
                "client.keepAlive",
            ),
            (
                "client: {server: tcp://b}\nmessage: {topic: t, qos: 3}\n",
                "qos 3",
            ),
            (
                "client: {server: tcp://b}\nmessage: {topic: t, will: {content: '%%'}}\n",
                "base64",
            ),
            (
                "client: {server: tcp://b}\nmessage: {topic: ':operator'}\n",
                "empty topic",
            ),
        ] {
            let msg = Config::resolve(&identity(), &options(yaml), &[])
                .unwrap_err()
                .to_string();
            assert!(msg.contains(needle), "{yaml}: {msg}");
        }
    }

    #[test]
    fn the_mailbox_keeps_only_the_newest_document() {
        let m = Mailbox::default();
        assert_eq!(m.offer("{\"a\":1}"), Offer::Queued);
        assert_eq!(m.offer("{\"a\":1}"), Offer::Unchanged);
        assert_eq!(m.offer("{\"a\":2}"), Offer::Superseded);
        assert_eq!(m.take().as_deref(), Some("{\"a\":2}"));
        assert_eq!(m.take(), None);
        assert_eq!(m.offer("{\"a\":2}"), Offer::Unchanged, "already sent");
        // A document the connection could not take goes back, unless a newer one came.
        m.restore(Arc::from("{\"a\":2}"));
        assert_eq!(m.take().as_deref(), Some("{\"a\":2}"));
        m.offer("{\"a\":3}");
        m.restore(Arc::from("{\"a\":2}"));
        assert_eq!(m.take().as_deref(), Some("{\"a\":3}"));
        assert_eq!(m.take_last().as_deref(), Some("{\"a\":3}"));
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let max = Duration::from_secs(10);
        assert_eq!(backoff(1, max, 1.0), BASE_BACKOFF);
        assert_eq!(backoff(3, max, 1.0), BASE_BACKOFF * 4);
        assert_eq!(backoff(40, max, 1.0), max);
        assert_eq!(backoff(40, max, 0.0), max / 2);
    }
}
