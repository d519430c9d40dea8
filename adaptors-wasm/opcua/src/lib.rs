//! The Octopus OPC UA adaptor as a WebAssembly component.
//!
//! It serves `OPCUADevice` (`devices.edge.cattle.io/v1alpha1`) for
//! `adaptors.edge.cattle.io/opcua`: nodes of an OPC UA server over `opc.tcp`, under
//! security policy None, Basic256Sha256 or Aes128_Sha256_RsaOaep, as an anonymous or
//! username/password session. Polls run back to back: each keeps the session up
//! (reconnecting with a capped backoff), writes the spec values that changed, and waits
//! for the subscription's next publish response, so a data change reaches the status
//! as it arrives. The status is `{"properties": [{name, type, value, updatedAt,
//! error}]}`; a bad status code of one node is that property's `error`, not a failed
//! poll.
//!
//! Module map: `spec` validates, `value` converts typed values, `wire` is UA-TCP and
//! the secure channel without I/O, `session` the services over any byte link, and
//! this file the device over the limb's socket.

mod security;
mod session;
mod spec;
mod value;
mod wire;

/// The decoders, public only for the fuzz target in `fuzz/` (and the session, for
/// `examples/live.rs`); not an API.
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz {
    pub mod wire {
        pub use crate::wire::*;
    }
    pub mod value {
        pub use crate::value::*;
    }
    pub mod spec {
        pub use crate::spec::*;
    }
    pub mod session {
        pub use crate::session::*;
    }
    pub mod security {
        pub use crate::security::*;
    }
}

use std::collections::BTreeMap;

use crds::models::opcua::OPCUADeviceSpec;
use octopus_adaptor_sdk::{
    CapabilityError, Context, Device, Error, Info, ModelInfo, ResourceKind, Result, Settings,
    clock, events, log, socket, time,
};
use opcua_types::DataValue;
use serde::{Deserialize, Serialize};

use session::{Link, LinkError, Session, SessionError};
use spec::Config;

const NAME: &str = "adaptors.edge.cattle.io/opcua";
#[cfg(not(feature = "v2"))]
const VERSION: &str = env!("CARGO_PKG_VERSION");
#[cfg(feature = "v2")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+v2");
const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";
const KIND: &str = "OPCUADevice";
/// The spec field the limb turns into the socket grant (`host:port` of the URL).
const GRANT: &str = "protocol.endpoint";
/// The longest a poll waits for a publish response. Polls run back to back and a poll
/// returns as soon as one arrives, so a data change reaches the status at once; this
/// only bounds a quiet poll, well inside the limb's call timeout.
const WINDOW_MS: u64 = 300;
/// The longest a poll pauses while waiting out the reconnect backoff or, without a
/// subscription, the next read.
const NAP_MS: u64 = 200;
/// The longest a poll spends on the network, however many requests it makes: under the
/// limb's default 5 s call timeout, so a slow server fails the poll instead of
/// trapping the instance.
const ROUND_MS: u64 = 4_000;
/// CreateSubscription's answers from a server without subscriptions (or without room for
/// ours): the device then reads its nodes every poll.
const NO_SUBSCRIPTIONS: [&str; 4] = [
    "BadServiceUnsupported",
    "BadNotSupported",
    "BadNotImplemented",
    "BadTooManySubscriptions",
];
/// Making the application certificate's key (about a second of CPU, often more) goes in
/// slices of this much work, each followed by a rest of [`KEYGEN_REST_MS`]: a fifth of
/// a core, inside the limb's CPU budget for a device (a quarter), so that the work is
/// not mistaken for a runaway guest.
const KEYGEN_SLICE_MS: u64 = 100;
const KEYGEN_REST_MS: u64 = 400;
/// Reconnect backoff: doubling from the first to the cap.
const BACKOFF_FIRST_MS: u64 = 1_000;
const BACKOFF_CAP_MS: u64 = 30_000;

/// The limb's TCP stream as a [`Link`].
struct SocketLink(socket::TcpStream);

fn link_error(e: CapabilityError) -> LinkError {
    match e {
        CapabilityError::Timeout => LinkError::Timeout,
        CapabilityError::Closed => LinkError::Closed,
        CapabilityError::NotPermitted(m) => LinkError::Denied(m),
        other => LinkError::Io(other.to_string()),
    }
}

impl Link for SocketLink {
    fn send(&mut self, bytes: &[u8], timeout_ms: u32) -> std::result::Result<(), LinkError> {
        self.0.send(bytes, timeout_ms).map_err(link_error)
    }
    fn receive(&mut self, timeout_ms: u32) -> std::result::Result<Vec<u8>, LinkError> {
        self.0.receive(65_536, timeout_ms).map_err(link_error)
    }
    fn now_ms(&self) -> u64 {
        clock::monotonic_ms()
    }
}

/// The last value of a property and when it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reading {
    pub value: String,
    pub updated_at: String,
}

/// What survives a hot swap: values written (so they are not written again) and the
/// last readings (so the status is not empty until the first notification).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format: String,
    #[serde(default)]
    pub written: BTreeMap<String, String>,
    #[serde(default)]
    pub readings: BTreeMap<String, Reading>,
    /// The application certificate the adaptor made, when `tlsConfig` gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<Application>,
}

/// A generated application certificate and its key, base64 DER (PKCS#8 for the key).
/// The key stays in the limb: snapshots go from one instance to the next, nowhere else.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    pub certificate: String,
    pub key: String,
}

impl std::fmt::Debug for Application {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").finish_non_exhaustive()
    }
}

impl Application {
    fn encode(
        key: &rsa::RsaPrivateKey,
        cert: &[u8],
    ) -> std::result::Result<Self, security::SecurityError> {
        let key = security::private_key_to_der(key)?;
        Ok(Application {
            certificate: opcua_types::ByteString::from(cert.to_vec()).as_base64(),
            key: opcua_types::ByteString::from(key).as_base64(),
        })
    }

    fn decode(&self) -> std::result::Result<spec::Own, security::SecurityError> {
        let bytes = |text: &str, what: &str| {
            opcua_types::ByteString::from_base64(text)
                .map(|b| b.as_ref().to_vec())
                .ok_or_else(|| {
                    security::SecurityError::Key(format!("the kept {what} is not base64"))
                })
        };
        let cert = bytes(&self.certificate, "application certificate")?;
        let key = security::private_key_from_der(&bytes(&self.key, "key")?)?;
        if security::public_key(&cert)? != key.to_public_key() {
            return Err(security::SecurityError::Key(
                "the kept key does not belong to the kept certificate".to_owned(),
            ));
        }
        Ok(spec::Own { key, cert })
    }
}

const STATE_FORMAT: &str = "opcua/1";

/// One property in the status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusProperty {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    properties: Vec<StatusProperty>,
}

/// One configured `OPCUADevice`.
pub struct OpcuaDevice {
    name: String,
    config: Config,
    session: Option<Session<SocketLink>>,
    /// Monotonic time of the next connect attempt, and the delay after that one.
    retry_at_ms: u64,
    backoff_ms: u64,
    /// Why the server is unreachable, while it is.
    down: Option<String>,
    /// The application certificate made for this device, decoded (the state keeps its
    /// encoding for the next version).
    made: Option<spec::Own>,
    /// The primes found so far for the application certificate's key, and the time
    /// spent looking.
    primes: Vec<rsa::BigUint>,
    keygen_ms: u64,
    /// The server refused our subscription: nodes are read every `syncInterval` instead,
    /// next at this monotonic time.
    polling: bool,
    next_read_ms: u64,
    state: State,
    /// The current bad status (or type mismatch) of each property, by name.
    errors: BTreeMap<String, String>,
    /// Writes the server refused: the value, and why. Not tried again until the value
    /// changes or the connection is new, so a refused write does not repeat every poll.
    refused: BTreeMap<String, (String, String)>,
}

impl OpcuaDevice {
    /// Connects, reads every node once, subscribes and writes what is pending.
    fn connect(&mut self) -> std::result::Result<(), SessionError> {
        let until = clock::monotonic_ms() + ROUND_MS;
        let connect_ms = self.config.timeout_ms.min(ROUND_MS as u32);
        let secure = match self.config.security.clone() {
            None => None,
            Some(security) => {
                let own = match security.own {
                    Some(own) => own,
                    None => self.application()?,
                };
                // The server's certificate and policies first, over policy None: an
                // untrusted certificate or a policy not offered ends here, with its
                // thumbprint or the offered list, before anything is signed.
                let stream = socket::connect_tcp(GRANT, connect_ms).map_err(link_error)?;
                let endpoints = session::discover(
                    SocketLink(stream),
                    &self.config.endpoint,
                    self.config.timeout_ms,
                    until,
                )?;
                let server_cert = session::trusted_server_certificate(
                    &endpoints,
                    security.policy,
                    security.mode,
                    &self.config.pins,
                )?;
                Some(wire::Secure {
                    policy: security.policy,
                    mode: security.mode,
                    own_key: own.key,
                    own_cert: own.cert,
                    server_key: security::public_key(&server_cert).map_err(|e| {
                        SessionError::Refused(format!("the server's certificate: {e}"))
                    })?,
                    server_cert,
                })
            }
        };
        let stream = socket::connect_tcp(GRANT, connect_ms).map_err(link_error)?;
        let mut session = Session::open_secured(
            SocketLink(stream),
            &self.config.endpoint,
            &self.config.identity,
            secure,
            &self.config.pins,
            self.config.timeout_ms,
            until,
        )?;
        let nodes = self.nodes();
        if !nodes.is_empty() {
            self.apply_all(session.read(&nodes)?);
            let items: Vec<_> = (1u32..).zip(nodes).collect();
            match session.subscribe(self.config.interval_ms, &items) {
                Ok(statuses) => {
                    self.polling = false;
                    for (property, status) in self.config.properties.iter().zip(statuses) {
                        // A node that could not be read already says why.
                        if status.is_bad() && !self.errors.contains_key(&property.name) {
                            self.errors
                                .insert(property.name.clone(), format!("subscribe: {status}"));
                        }
                    }
                }
                Err(SessionError::Service {
                    service: "CreateSubscription",
                    status,
                }) if NO_SUBSCRIPTIONS.iter().any(|bad| status.starts_with(bad)) => {
                    if !self.polling {
                        let line = format!(
                            "the server takes no subscription ({status}): reading every node \
                             every syncInterval instead"
                        );
                        log::warn(&format!("{}: {line}", self.name));
                        events::normal("ReadingByPoll", &line);
                    }
                    self.polling = true;
                    self.next_read_ms = clock::monotonic_ms() + self.config.interval_ms;
                }
                Err(other) => return Err(other),
            }
        }
        self.session = Some(session);
        self.write_pending()
    }

    /// The application certificate the adaptor made for itself (made before, perhaps by
    /// the version this one took over from, and kept in the state so that a hot swap
    /// does not change it and the server's trust list stays valid).
    fn application(&self) -> std::result::Result<spec::Own, SessionError> {
        self.made.clone().ok_or_else(|| {
            SessionError::Refused("the application certificate is not made yet".to_owned())
        })
    }

    /// Whether this device must still make its application certificate.
    fn needs_certificate(&self) -> bool {
        matches!(&self.config.security, Some(s) if s.own.is_none()) && self.made.is_none()
    }

    /// One slice of making the application certificate: looks for the key's primes for
    /// at most [`KEYGEN_SLICE_MS`], then rests; `true` once the certificate is made and
    /// kept.
    fn make_certificate(&mut self) -> std::result::Result<bool, security::SecurityError> {
        let started = clock::monotonic_ms();
        let until = started + KEYGEN_SLICE_MS;
        // `keygen_ms` counts the work, not the rests.
        while self.primes.len() < 2 {
            match security::find_prime(security::GENERATED_KEY_BITS / 2, || {
                clock::monotonic_ms() >= until
            }) {
                Some(prime) => self.primes.push(prime),
                None => {
                    self.keygen_ms += clock::monotonic_ms() - started;
                    nap(KEYGEN_REST_MS);
                    return Ok(false);
                }
            }
        }
        let q = self.primes.pop();
        let p = self.primes.pop();
        let (Some(p), Some(q)) = (p, q) else {
            return Ok(false);
        };
        let key = match security::key_from_primes(p.clone(), q) {
            Ok(key) => key,
            Err(_) => {
                // p - 1 or q - 1 shares a factor with 65537: keep p, find another q.
                self.primes.push(p);
                return Ok(false);
            }
        };
        let cert = security::certificate_for(
            &key,
            session::APPLICATION_URI,
            &format!("Octopus OPC UA adaptor {}", self.name),
            clock::now_ms() / 1000,
        )?;
        self.keygen_ms += clock::monotonic_ms() - started;
        let took_ms = std::mem::take(&mut self.keygen_ms);
        let thumbprint = security::thumbprint_hex(&cert);
        let pem = security::certificate_to_pem(&cert)?;
        log::info(&format!(
            "{}: made a self-signed application certificate in {took_ms} ms of work, SHA-1 \
             thumbprint {thumbprint} (a server that trusts only known clients must trust \
             it):\n{pem}",
            self.name
        ));
        events::normal(
            "ApplicationCertificate",
            &format!(
                "made a self-signed application certificate for {} in {took_ms} ms of work, SHA-1 \
                 thumbprint {thumbprint}; it is kept across hot swaps",
                session::APPLICATION_URI
            ),
        );
        self.state.application = Some(Application::encode(&key, &cert)?);
        self.made = Some(spec::Own { key, cert });
        Ok(true)
    }

    /// Writes spec values that differ from what was last written.
    fn write_pending(&mut self) -> std::result::Result<(), SessionError> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        let pending: Vec<_> = self
            .config
            .properties
            .iter()
            .filter_map(|p| {
                let (text, variant) = p.write.as_ref()?;
                (self.state.written.get(&p.name) != Some(text)).then(|| {
                    (
                        p.name.clone(),
                        text.clone(),
                        p.node.clone(),
                        variant.clone(),
                    )
                })
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let values: Vec<_> = pending
            .iter()
            .map(|(_, _, node, variant)| (node.clone(), variant.clone()))
            .collect();
        let results = session.write(&values)?;
        for ((name, text, _, _), status) in pending.into_iter().zip(results) {
            if status.is_good() {
                self.refused.remove(&name);
                self.state.written.insert(name, text);
            } else {
                log::warn(&format!("{}: writing {name} failed: {status}", self.name));
                self.refused
                    .insert(name, (text, format!("write: {status}")));
            }
        }
        Ok(())
    }

    /// The node of every property, in spec order.
    fn nodes(&self) -> Vec<opcua_types::NodeId> {
        self.config
            .properties
            .iter()
            .map(|p| p.node.clone())
            .collect()
    }

    /// Takes the values of a Read of [`Self::nodes`].
    fn apply_all(&mut self, values: Vec<DataValue>) {
        let now = time::rfc3339(clock::now_ms());
        for (index, value) in values.into_iter().enumerate() {
            self.apply(index, &value, &now);
        }
    }

    /// Takes a value of the property at `index`.
    fn apply(&mut self, index: usize, value: &DataValue, now: &str) {
        let Some(property) = self.config.properties.get(index) else {
            return;
        };
        let name = property.name.clone();
        let status = value.status();
        if status.is_bad() {
            self.errors.insert(name, status.to_string());
            return;
        }
        let variant = value.value.clone().unwrap_or_default();
        match value::format(property.kind, &variant) {
            Ok(text) => {
                self.errors.remove(&name);
                let updated_at = value
                    .source_timestamp
                    .or(value.server_timestamp)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| now.to_owned());
                self.state.readings.insert(
                    name,
                    Reading {
                        value: text,
                        updated_at,
                    },
                );
            }
            Err(why) => {
                self.errors.insert(name, why);
            }
        }
    }

    fn status(&self) -> Status {
        Status {
            properties: self
                .config
                .properties
                .iter()
                .map(|p| {
                    let reading = self.state.readings.get(&p.name);
                    StatusProperty {
                        name: p.name.clone(),
                        kind: value::type_name(p.kind),
                        value: reading.map(|r| r.value.clone()),
                        updated_at: reading.map(|r| r.updated_at.clone()),
                        error: self
                            .errors
                            .get(&p.name)
                            .or(self.refused.get(&p.name).map(|(_, why)| why))
                            .or(self.down.as_ref())
                            .cloned(),
                    }
                })
                .collect(),
        }
    }

    /// One round with a live session: pending writes, data changes, token renewal.
    fn exchange(&mut self) -> std::result::Result<(), SessionError> {
        if let Some(session) = self.session.as_mut() {
            session.limit_round(clock::monotonic_ms() + ROUND_MS);
        }
        self.write_pending()?;
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        session.renew_if_due()?;
        if self.polling {
            let now = clock::monotonic_ms();
            if now < self.next_read_ms {
                nap((self.next_read_ms - now).min(NAP_MS));
                return Ok(());
            }
            self.next_read_ms = now + self.config.interval_ms;
            let nodes = self.nodes();
            let values = match self.session.as_mut() {
                Some(session) => session.read(&nodes)?,
                None => return Ok(()),
            };
            self.apply_all(values);
            return Ok(());
        }
        let wait = self.config.interval_ms.min(WINDOW_MS);
        let changes = session.pump(u32::try_from(wait).unwrap_or(u32::MAX))?;
        if !changes.is_empty() {
            let now = time::rfc3339(clock::now_ms());
            for (handle, value) in changes {
                let index = (handle as usize).wrapping_sub(1);
                self.apply(index, &value, &now);
            }
        }
        Ok(())
    }

    /// Whether the backoff is over, pausing a little for it first: polls run back to
    /// back, and must not spin while the server is away.
    fn due_to_connect(&self) -> bool {
        let now = clock::monotonic_ms();
        if now < self.retry_at_ms {
            nap((self.retry_at_ms - now).min(NAP_MS));
        }
        clock::monotonic_ms() >= self.retry_at_ms
    }

    /// Ends the session after `err`, schedules the next attempt and says why.
    fn lost(&mut self, err: &SessionError) -> Error {
        if let Some(session) = self.session.take() {
            drop(session);
        }
        // The server may have restarted and lost what we wrote (or now takes it).
        self.state.written.clear();
        self.refused.clear();
        let message = err.to_string();
        if self.down.is_none() {
            log::warn(&format!("{}: {message}; reconnecting", self.name));
            events::warning("Unreachable", &message);
        }
        self.down = Some(message.clone());
        self.retry_at_ms = clock::monotonic_ms() + self.backoff_ms;
        self.backoff_ms = (self.backoff_ms * 2).min(BACKOFF_CAP_MS);
        if err.is_refusal() {
            Error::NotPermitted(message)
        } else {
            Error::Unreachable(message)
        }
    }
}

impl Device for OpcuaDevice {
    type Spec = OPCUADeviceSpec;
    type Status = Status;
    type State = State;

    fn describe() -> Info {
        Info::new(NAME, VERSION).model(
            ModelInfo::new(API_VERSION, KIND)
                .resource(GRANT, ResourceKind::Tcp)
                .declared(include_str!(
                    "../../../crds/generated/models/opcuadevices.json"
                )),
        )
    }

    fn configure(spec: OPCUADeviceSpec, ctx: &Context) -> Result<(Self, Settings)> {
        let config = spec::check(&spec, ctx)?;
        let name = ctx.device_name();
        let line = format!(
            "{KIND} {name}: {} ({:?}), {} properties, publishing every {} ms",
            config.endpoint,
            config.identity,
            config.properties.len(),
            config.interval_ms
        );
        log::info(&format!("configured {line}"));
        events::normal("Configured", &line);
        // Back to back: each poll waits for the server's next publish response itself.
        let settings = Settings::poll_every_ms(0);
        Ok((
            OpcuaDevice {
                name,
                config,
                session: None,
                retry_at_ms: 0,
                backoff_ms: BACKOFF_FIRST_MS,
                down: None,
                polling: false,
                next_read_ms: 0,
                made: None,
                primes: Vec::new(),
                keygen_ms: 0,
                state: State {
                    format: STATE_FORMAT.to_owned(),
                    ..State::default()
                },
                errors: BTreeMap::new(),
                refused: BTreeMap::new(),
            },
            settings,
        ))
    }

    fn poll(&mut self) -> Result<Status> {
        if self.session.is_none() && self.needs_certificate() {
            let why = match self.make_certificate() {
                Ok(true) => None,
                Ok(false) => Some(
                    "making a self-signed application certificate (RSA 2048) before connecting"
                        .to_owned(),
                ),
                Err(e) => Some(format!("cannot make the application certificate: {e}")),
            };
            if let Some(why) = why {
                return Err(Error::Unreachable(why));
            }
        }
        let outcome = if self.session.is_some() {
            self.exchange()
        } else if self.due_to_connect() {
            self.connect()
        } else {
            // Still backing off: report the last status with the reason.
            let status = self.status();
            let _ = events::report_status(&status);
            return Err(Error::Unreachable(
                self.down
                    .clone()
                    .unwrap_or_else(|| "reconnecting".to_owned()),
            ));
        };
        match outcome {
            Ok(()) => {
                if self.down.take().is_some() {
                    log::info(&format!("{} is reachable again", self.name));
                }
                self.backoff_ms = BACKOFF_FIRST_MS;
                Ok(self.status())
            }
            Err(err) => {
                let error = self.lost(&err);
                // The error alone would leave the status stale.
                let _ = events::report_status(&self.status());
                Err(error)
            }
        }
    }

    fn snapshot(&self) -> State {
        self.state.clone()
    }

    fn restore(&mut self, state: State) {
        let names: std::collections::BTreeSet<&str> = self
            .config
            .properties
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        self.state.written = state
            .written
            .into_iter()
            .filter(|(name, _)| names.contains(name.as_str()))
            .collect();
        self.state.readings = state
            .readings
            .into_iter()
            .filter(|(name, _)| names.contains(name.as_str()))
            .collect();
        if let Some(kept) = state.application {
            match kept.decode() {
                Ok(own) => {
                    self.made = Some(own);
                    self.state.application = Some(kept);
                }
                Err(e) => log::warn(&format!(
                    "{}: the application certificate taken over does not decode ({e}); \
                     making a new one",
                    self.name
                )),
            }
        }
    }

    fn check_state(state: &State, _from_version: &str) -> Result<()> {
        if state.format == STATE_FORMAT {
            Ok(())
        } else {
            Err(Error::IncompatibleState(format!(
                "not a {STATE_FORMAT} snapshot: format is {:?}",
                state.format
            )))
        }
    }

    fn shutdown(&mut self) {
        if let Some(session) = self.session.take() {
            session.close();
        }
        log::info(&format!("shut down {}", self.name));
    }
}

/// Pauses the instance (a WASI clock wait, which the limb bounds by the call timeout).
fn nap(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

octopus_adaptor_sdk::export_adaptor!(OpcuaDevice);

#[cfg(test)]
mod tests {
    use super::*;
    use octopus_adaptor_sdk::{DeviceConfig, Instance};

    const SPEC: &str = r#"{"parameters": {"syncInterval": "1s"},
        "protocol": {"endpoint": "opc.tcp://127.0.0.1:4840/"},
        "properties": [
            {"name": "a", "type": "int32", "value": "5", "visitor": {"nodeID": "ns=2;s=A"}},
            {"name": "b", "type": "string", "visitor": {"nodeID": "ns=2;s=B"}}]}"#;

    #[test]
    fn describe_declares_the_endpoint_as_a_tcp_grant() {
        let info = OpcuaDevice::describe();
        let [model] = info.models.as_slice() else {
            panic!("one model")
        };
        assert_eq!(model.model.kind, KIND);
        let fields: Vec<_> = model
            .resource_fields
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(fields, [GRANT]);
    }

    #[test]
    fn without_a_limb_polls_fail_with_every_property_in_the_status() {
        let mut instance = Instance::<OpcuaDevice>::new();
        instance
            .configure(DeviceConfig::for_tests::<OpcuaDevice>(SPEC))
            .unwrap();
        let err = instance.poll().unwrap_err();
        assert!(matches!(err, Error::NotPermitted(_)), "{err}");
        let status = instance.device().unwrap().status();
        assert_eq!(status.properties.len(), 2);
        assert!(status.properties[0].error.is_some());
        // The next poll backs off rather than reconnecting at once.
        assert!(matches!(instance.poll(), Err(Error::Unreachable(_))));
    }

    #[test]
    fn a_made_certificate_is_kept_in_the_state_and_checked_when_taken_back() {
        // The key of testdata (generating one takes long in a debug build).
        let key = security::private_key_from_pem(include_bytes!("../testdata/client.key")).unwrap();
        let cert =
            security::certificate_for(&key, session::APPLICATION_URI, "t, a=b", 1_700_000_000)
                .unwrap();
        assert_eq!(security::public_key(&cert).unwrap(), key.to_public_key());
        let kept = Application::encode(&key, &cert).unwrap();
        assert!(
            !format!("{kept:?}").contains(&kept.key),
            "the key is never printed"
        );
        let back = kept.decode().unwrap();
        assert_eq!((back.key, back.cert), (key, cert.clone()));
        // The URI servers compare with CreateSession's is in the certificate.
        let text = String::from_utf8_lossy(&cert);
        assert!(text.contains(session::APPLICATION_URI), "subjectAltName");
        let pem = security::certificate_to_pem(&cert).unwrap();
        assert_eq!(
            security::certificate_from_pem(pem.as_bytes()).unwrap(),
            cert
        );
        // A kept key that does not belong to the kept certificate is refused.
        let other =
            security::private_key_from_pem(include_bytes!("../testdata/other-pkcs1.key")).unwrap();
        let mixed = Application {
            key: Application::encode(&other, &cert).unwrap().key,
            ..kept
        };
        assert!(mixed.decode().is_err());
    }

    #[test]
    fn state_survives_a_hot_swap_for_the_properties_still_there() {
        let mut old = Instance::<OpcuaDevice>::new();
        old.configure(DeviceConfig::for_tests::<OpcuaDevice>(SPEC))
            .unwrap();
        let state = State {
            format: STATE_FORMAT.into(),
            written: [
                ("a".to_owned(), "5".to_owned()),
                ("gone".into(), "1".into()),
            ]
            .into(),
            readings: [(
                "b".to_owned(),
                Reading {
                    value: "x".into(),
                    updated_at: "2024-05-01T10:00:00Z".into(),
                },
            )]
            .into(),
            application: None,
        };
        let bytes = serde_json::to_vec(&state).unwrap();
        let mut new = Instance::<OpcuaDevice>::new();
        new.restore(&bytes, "0.1.0").unwrap();
        new.configure(DeviceConfig::for_tests::<OpcuaDevice>(SPEC))
            .unwrap();
        let device = new.device().unwrap();
        assert_eq!(device.state.written.len(), 1, "unknown properties dropped");
        assert_eq!(device.status().properties[1].value.as_deref(), Some("x"));
        let snapshot: State = serde_json::from_slice(&new.snapshot().unwrap()).unwrap();
        assert_eq!(snapshot.written["a"], "5");
        let wrong = br#"{"format": "modbus/1"}"#;
        assert!(matches!(
            new.restore(wrong, "0.1.0"),
            Err(Error::IncompatibleState(_))
        ));
    }
}
