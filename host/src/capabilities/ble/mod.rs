//! `ble`: Bluetooth LE GATT for adaptors, on a controller the limb owns.
//!
//! The node policy names the controller (`ble.controller`): H4 over TCP (what the tests
//! use, with Bumble's virtual controllers) or H4 over a UART (USB and serial dongles).
//! All devices share it: commands take FIFO turns, each connection has one ATT request
//! outstanding at a time, and every wait ends at the caller's deadline.
//!
//! An adaptor reaches only the peripheral its grant names (`protocol.endpoint` of a
//! `BluetoothDevice`, an address or a local name): `find` resolves the grant, and every
//! later call goes through the [`Peripheral`] it returned. A name can be spoofed by any
//! nearby device, so the policy must allow name grants explicitly (`ble.allowNames`).
//!
//! Our own HCI/ATT client, not a crate: see `hci` and `att` for what it covers (GATT
//! client, MTU exchange up to 517 with Read Blob for longer values, no pairing) and the
//! README for why.
//!
//! Handles are never trusted across a change: every (re)connection discovers again, and
//! so does the next call after a Service Changed indication or an "invalid handle"
//! answer, so a peripheral restarted with another GATT table is read by UUID, not by
//! stale handles.

pub mod att;
pub mod hci;
pub mod radio;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use octopus_backoff::{Backoff, Retries};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use self::hci::Address;
pub use self::radio::{Link, Radio, Target};
use super::CapabilityError;
use super::socket::BoxFuture;

/// Why a BLE operation failed, before it becomes a [`CapabilityError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BleError {
    #[error("timed out")]
    Timeout,
    #[error("the controller's transport is gone")]
    ControllerGone,
    #[error("controller refused: HCI status 0x{0:02X}")]
    Hci(u8),
    #[error("peripheral refused: {}", att::error_name(*.0))]
    Att(u8),
    #[error("connection limit reached: {0}")]
    Limit(String),
    #[error("disconnected")]
    Disconnected,
    #[error("{0}")]
    Invalid(String),
    #[error("cannot open the controller: {0}")]
    Open(String),
    #[error("{0}")]
    Waiting(String),
}

impl From<BleError> for CapabilityError {
    fn from(e: BleError) -> Self {
        match e {
            BleError::Timeout => CapabilityError::Timeout,
            BleError::Limit(m) => CapabilityError::LimitReached(m),
            BleError::Invalid(m) => CapabilityError::InvalidArgument(m),
            BleError::Disconnected => CapabilityError::Closed,
            other => CapabilityError::Io(other.to_string()),
        }
    }
}

/// The byte stream to a controller, carrying H4 packets both ways.
pub trait HciIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> HciIo for T {}

/// Where the controller is, as the node policy writes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Controller {
    /// `tcp:127.0.0.1:19002`: H4 over TCP (Bumble's `tcp-server` transport).
    Tcp(String),
    /// `serial:/dev/ttyUSB0` or `serial:/dev/ttyUSB0@1000000`: H4 over a UART, 8N1
    /// (115200 baud unless given).
    Serial { path: String, baud: u32 },
}

impl Controller {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(addr) = text.strip_prefix("tcp:") {
            return match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(Self::Tcp(addr.to_owned()))
                }
                _ => Err(format!("{text:?}: expected tcp:HOST:PORT")),
            };
        }
        if let Some(rest) = text.strip_prefix("serial:") {
            let (path, baud) = match rest.rsplit_once('@') {
                Some((path, baud)) => (
                    path,
                    baud.parse::<u32>()
                        .map_err(|_| format!("{text:?}: bad baud rate {baud:?}"))?,
                ),
                None => (rest, 115_200),
            };
            if !path.starts_with('/') {
                return Err(format!("{text:?}: expected serial:/dev/PATH[@BAUD]"));
            }
            return Ok(Self::Serial {
                path: path.to_owned(),
                baud,
            });
        }
        Err(format!(
            "{text:?}: expected tcp:HOST:PORT or serial:/dev/PATH[@BAUD] (the HCI user channel is not supported)"
        ))
    }
}

/// Opens controller transports. Real: TCP and UART; tests pass an in-memory one.
pub trait Transport: Send + Sync {
    fn open(&self, controller: &Controller) -> BoxFuture<'_, std::io::Result<Box<dyn HciIo>>>;
}

/// TCP with tokio, a UART with tokio-serial.
pub struct RealTransport;

impl Transport for RealTransport {
    fn open(&self, controller: &Controller) -> BoxFuture<'_, std::io::Result<Box<dyn HciIo>>> {
        let controller = controller.clone();
        Box::pin(async move {
            match controller {
                Controller::Tcp(addr) => {
                    let s = tokio::net::TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    Ok(Box::new(s) as Box<dyn HciIo>)
                }
                Controller::Serial { path, baud } => {
                    let builder = tokio_serial::new(path, baud)
                        .data_bits(tokio_serial::DataBits::Eight)
                        .parity(tokio_serial::Parity::None)
                        .stop_bits(tokio_serial::StopBits::One)
                        .flow_control(tokio_serial::FlowControl::Hardware);
                    let port = tokio_serial::SerialStream::open(&builder)
                        .map_err(std::io::Error::other)?;
                    Ok(Box::new(port) as Box<dyn HciIo>)
                }
            }
        })
    }
}

/// The node's controllers in use, opened on first use and reopened when their transport
/// ends. One per process, shared by every device.
pub struct Radios {
    transport: Arc<dyn Transport>,
    open: tokio::sync::Mutex<HashMap<Controller, Arc<Radio>>>,
}

impl Radios {
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
            open: tokio::sync::Mutex::default(),
        }
    }

    /// The radio on `controller`, set up if it is not (or no longer) running.
    pub async fn get(
        &self,
        controller: &Controller,
        max_connections: usize,
        deadline: Instant,
    ) -> Result<Arc<Radio>, BleError> {
        let mut open = tokio::time::timeout_at(deadline, self.open.lock())
            .await
            .map_err(|_| BleError::Timeout)?;
        if let Some(r) = open.get(controller)
            && r.is_alive()
        {
            return Ok(Arc::clone(r));
        }
        let io = tokio::time::timeout_at(deadline, self.transport.open(controller))
            .await
            .map_err(|_| BleError::Timeout)?
            .map_err(|e| BleError::Open(e.to_string()))?;
        // A static random address (top two bits set), new for each start.
        let mut own = fastrand::u64(..).to_le_bytes();
        own[5] |= 0xC0;
        let mut address = [0u8; 6];
        address.copy_from_slice(&own[..6]);
        let radio = Radio::start(io, max_connections, address).await?;
        open.insert(controller.clone(), Arc::clone(&radio));
        Ok(radio)
    }
}

impl Default for Radios {
    fn default() -> Self {
        Self::new(Arc::new(RealTransport))
    }
}

/// A characteristic as discovery found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Characteristic {
    pub service: u128,
    pub uuid: u128,
    pub properties: u8,
    pub value_handle: u16,
    /// Its Client Characteristic Configuration descriptor, if it has one.
    pub cccd: Option<u16>,
}

/// GATT characteristic property bits.
pub mod props {
    pub const READ: u8 = 0x02;
    pub const WRITE_WITHOUT_RESPONSE: u8 = 0x04;
    pub const WRITE: u8 = 0x08;
    pub const NOTIFY: u8 = 0x10;
    pub const INDICATE: u8 = 0x20;
}

/// A pushed value, by characteristic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub uuid: u128,
    pub value: Vec<u8>,
    pub indication: bool,
}

/// The granted peripheral of one device: the host side of the guest's `peripheral`.
pub struct Peripheral {
    radios: Arc<Radios>,
    controller: Controller,
    max_connections: usize,
    address: Address,
    link: Option<Arc<Link>>,
    characteristics: Vec<Characteristic>,
    subscribed: BTreeSet<u128>,
    /// The handles may be stale: discover again before the next operation.
    stale: bool,
    retries: Retries,
    next_attempt: Option<Instant>,
}

/// Reconnect backoff: 1 s doubling to 30 s.
const RECONNECT: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

impl Peripheral {
    /// Finds the peripheral `target` names on `controller`.
    pub async fn find(
        radios: Arc<Radios>,
        controller: Controller,
        max_connections: usize,
        target: &Target,
        deadline: Instant,
    ) -> Result<Self, BleError> {
        let radio = radios.get(&controller, max_connections, deadline).await?;
        let address = radio.find(target, deadline).await?;
        Ok(Self {
            radios,
            controller,
            max_connections,
            address,
            link: None,
            characteristics: Vec::new(),
            subscribed: BTreeSet::new(),
            stale: false,
            retries: Retries::new(RECONNECT),
            next_attempt: None,
        })
    }

    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The ATT MTU of the current connection (23 when not connected).
    pub fn mtu(&self) -> u16 {
        self.link
            .as_ref()
            .filter(|l| l.is_open())
            .map_or(att::DEFAULT_MTU, |l| l.mtu())
    }

    pub fn is_connected(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.is_open())
    }

    /// Connects if needed (after the backoff of earlier failures), discovers, and
    /// re-subscribes what was subscribed before a reconnect.
    pub async fn connect(&mut self, deadline: Instant) -> Result<Vec<Characteristic>, BleError> {
        if self.is_connected() {
            return Ok(self.characteristics.clone());
        }
        if let Some(at) = self.next_attempt
            && Instant::now() < at
        {
            return Err(BleError::Waiting(format!(
                "{} is not connected; next attempt in {} ms (backoff)",
                self.address,
                at.saturating_duration_since(Instant::now()).as_millis()
            )));
        }
        match self.try_connect(deadline).await {
            Ok(chars) => {
                self.retries.reset();
                self.next_attempt = None;
                Ok(chars)
            }
            Err(e) => {
                if let Some(link) = self.link.take() {
                    link.disconnect().await;
                }
                let delay = self.retries.fail(fastrand::f64());
                self.next_attempt = Some(Instant::now() + delay);
                Err(e)
            }
        }
    }

    async fn try_connect(&mut self, deadline: Instant) -> Result<Vec<Characteristic>, BleError> {
        let radio = self
            .radios
            .get(&self.controller, self.max_connections, deadline)
            .await?;
        let link = radio.connect(self.address, deadline).await?;
        self.link = Some(Arc::clone(&link));
        link.exchange_mtu(deadline).await?;
        self.rediscover(deadline).await?;
        Ok(self.characteristics.clone())
    }

    /// Discovers the GATT table again on the current connection, watches Service
    /// Changed, and re-enables what was subscribed that is (still, or again) there.
    async fn rediscover(&mut self, deadline: Instant) -> Result<(), BleError> {
        let link = Arc::clone(self.link()?);
        self.characteristics = discover(&link, deadline).await?;
        self.stale = false;
        let _ = link.take_changed();
        if let Some(c) = self
            .characteristics
            .iter()
            .find(|c| c.uuid == att::from16(att::SERVICE_CHANGED))
        {
            link.watch_service_changed(c.value_handle);
            if let Some(cccd) = c.cccd {
                // Best effort: a peripheral that will not indicate is still rediscovered
                // on reconnection and on an invalid handle.
                let enabled = link
                    .request(att::write(cccd, &2u16.to_le_bytes(), true), deadline)
                    .await;
                if let Err(e) = enabled {
                    tracing::debug!(error = %e, "Service Changed indications not enabled");
                    if !matches!(e, BleError::Att(_)) {
                        return Err(e);
                    }
                }
            }
        }
        for uuid in self.subscribed.clone() {
            if self.characteristics.iter().any(|c| c.uuid == uuid) {
                self.enable(uuid, deadline).await?;
            }
        }
        Ok(())
    }

    fn link(&self) -> Result<&Arc<Link>, BleError> {
        match &self.link {
            Some(l) if l.is_open() => Ok(l),
            _ => Err(BleError::Disconnected),
        }
    }

    fn characteristic(&self, uuid: u128) -> Result<&Characteristic, BleError> {
        self.characteristics
            .iter()
            .find(|c| c.uuid == uuid)
            .ok_or_else(|| {
                BleError::Invalid(format!(
                    "the peripheral has no characteristic {}",
                    att::format_uuid(uuid)
                ))
            })
    }

    /// Connects first if the connection is down; discovers again if the handles are
    /// stale.
    async fn ready(&mut self, deadline: Instant) -> Result<(), BleError> {
        if !self.is_connected() {
            self.connect(deadline).await?;
        } else if self.stale || self.link()?.take_changed() {
            self.rediscover(deadline).await?;
        }
        Ok(())
    }

    /// Marks the handles stale when the peripheral says one is invalid: its table
    /// changed under us.
    fn check<T>(&mut self, result: Result<T, BleError>) -> Result<T, BleError> {
        if matches!(result, Err(BleError::Att(att::INVALID_HANDLE))) {
            self.stale = true;
        }
        result
    }

    /// Reads a value whole: one Read, then Read Blobs while the answers come full (a
    /// value longer than the MTU allows in one response), up to 512 bytes.
    pub async fn read(&mut self, uuid: u128, deadline: Instant) -> Result<Vec<u8>, BleError> {
        self.ready(deadline).await?;
        let handle = self.characteristic(uuid)?.value_handle;
        let result = self.read_long(handle, deadline).await;
        self.check(result)
    }

    async fn read_long(&self, handle: u16, deadline: Instant) -> Result<Vec<u8>, BleError> {
        let link = self.link()?;
        let full = usize::from(link.mtu()) - 1;
        let rsp = link.request(att::read(handle), deadline).await?;
        let mut value = rsp.get(1..).unwrap_or_default().to_vec();
        let mut last = value.len();
        // Each round adds a full response's worth, so at most 512 / 22 + 1 rounds.
        while last == full && value.len() < att::MAX_VALUE {
            let offset = u16::try_from(value.len()).unwrap_or(u16::MAX);
            match link.request(att::read_blob(handle, offset), deadline).await {
                Ok(rsp) => {
                    let part = rsp.get(1..).unwrap_or_default();
                    last = part.len();
                    value.extend_from_slice(part);
                }
                // The value ended exactly at a response's end.
                Err(BleError::Att(att::ATTRIBUTE_NOT_LONG | att::INVALID_OFFSET)) => break,
                Err(e) => return Err(e),
            }
        }
        value.truncate(att::MAX_VALUE);
        Ok(value)
    }

    pub async fn write(
        &mut self,
        uuid: u128,
        data: &[u8],
        with_response: bool,
        deadline: Instant,
    ) -> Result<(), BleError> {
        self.ready(deadline).await?;
        let room = usize::from(self.mtu()) - 3;
        if data.len() > room {
            return Err(BleError::Invalid(format!(
                "{} bytes to write; at most {room} fit one write at this connection's MTU",
                data.len(),
            )));
        }
        let handle = self.characteristic(uuid)?.value_handle;
        let pdu = att::write(handle, data, with_response);
        let link = self.link()?;
        let result = if with_response {
            link.request(pdu, deadline).await.map(drop)
        } else {
            link.send(pdu, deadline).await
        };
        self.check(result)
    }

    /// Enables pushes of `uuid`, now and after every reconnection or rediscovery. A
    /// characteristic that is missing now is remembered, so it is enabled when it
    /// comes back.
    pub async fn subscribe(&mut self, uuid: u128, deadline: Instant) -> Result<(), BleError> {
        self.ready(deadline).await?;
        let missing = self.characteristic(uuid).is_err();
        let result = self.enable(uuid, deadline).await;
        if result.is_ok() || missing {
            self.subscribed.insert(uuid);
        }
        self.check(result)
    }

    async fn enable(&self, uuid: u128, deadline: Instant) -> Result<(), BleError> {
        let c = self.characteristic(uuid)?;
        let value: u16 = if c.properties & props::NOTIFY != 0 {
            1
        } else if c.properties & props::INDICATE != 0 {
            2
        } else {
            return Err(BleError::Invalid(format!(
                "characteristic {} neither notifies nor indicates",
                att::format_uuid(uuid)
            )));
        };
        let cccd = c.cccd.ok_or_else(|| {
            BleError::Invalid(format!(
                "characteristic {} has no configuration descriptor",
                att::format_uuid(uuid)
            ))
        })?;
        self.link()?
            .request(att::write(cccd, &value.to_le_bytes(), true), deadline)
            .await
            .map(drop)
    }

    /// Pushed values since the last call. A connection that went down is `Disconnected`
    /// once what it received has been taken.
    pub async fn notifications(
        &mut self,
        max: usize,
        deadline: Instant,
    ) -> Result<Vec<Notification>, BleError> {
        let Some(link) = self.link.clone() else {
            return Err(BleError::Disconnected);
        };
        let pushed = link.pushed(max, deadline).await;
        if pushed.is_empty() && !link.is_open() {
            return Err(BleError::Disconnected);
        }
        Ok(pushed
            .into_iter()
            .filter_map(|p| {
                let c = self
                    .characteristics
                    .iter()
                    .find(|c| c.value_handle == p.handle)?;
                Some(Notification {
                    uuid: c.uuid,
                    value: p.value,
                    indication: p.indication,
                })
            })
            .collect())
    }

    pub async fn disconnect(&mut self) {
        if let Some(link) = self.link.take() {
            link.disconnect().await;
        }
    }
}

impl Drop for Peripheral {
    fn drop(&mut self) {
        if let Some(link) = self.link.take()
            && link.is_open()
        {
            tokio::spawn(async move { link.disconnect().await });
        }
    }
}

/// Primary services, their characteristics and each one's CCCD.
async fn discover(link: &Link, deadline: Instant) -> Result<Vec<Characteristic>, BleError> {
    let mut services = Vec::new();
    let mut start = 1u16;
    // Each round moves `start` past the last service found; at most 0xFFFF rounds.
    while start != 0 {
        let rsp = match link
            .request(
                att::read_by_group_type(start, 0xFFFF, att::PRIMARY_SERVICE),
                deadline,
            )
            .await
        {
            Err(BleError::Att(att::ATTRIBUTE_NOT_FOUND)) => break,
            other => other?,
        };
        let found = att::parse_services(&rsp)
            .filter(|f| !f.is_empty())
            .ok_or_else(|| BleError::Invalid("malformed service discovery response".into()))?;
        let last = found.iter().map(|s| s.end).max().unwrap_or(0xFFFF);
        services.extend(found);
        start = if last == 0xFFFF || last < start {
            0
        } else {
            last + 1
        };
    }
    let mut out = Vec::new();
    for service in services {
        let mut declarations = Vec::new();
        let mut at = service.start;
        while at <= service.end && at != 0 {
            let rsp = match link
                .request(
                    att::read_by_type(at, service.end, att::CHARACTERISTIC),
                    deadline,
                )
                .await
            {
                Err(BleError::Att(att::ATTRIBUTE_NOT_FOUND)) => break,
                other => other?,
            };
            let found = att::parse_declarations(&rsp)
                .filter(|f| !f.is_empty())
                .ok_or_else(|| {
                    BleError::Invalid("malformed characteristic discovery response".into())
                })?;
            let last = found.iter().map(|d| d.handle).max().unwrap_or(0xFFFF);
            declarations.extend(found);
            at = if last < at { 0 } else { last.wrapping_add(1) };
        }
        for (i, d) in declarations.iter().enumerate() {
            let end = declarations
                .get(i + 1)
                .map(|n| n.handle.saturating_sub(1))
                .unwrap_or(service.end);
            let mut cccd = None;
            if d.properties & (props::NOTIFY | props::INDICATE) != 0 && d.value_handle < end {
                let mut from = d.value_handle + 1;
                while from <= end && from != 0 && cccd.is_none() {
                    let rsp = match link
                        .request(att::find_information(from, end), deadline)
                        .await
                    {
                        Err(BleError::Att(att::ATTRIBUTE_NOT_FOUND)) => break,
                        other => other?,
                    };
                    let found = att::parse_information(&rsp)
                        .filter(|f| !f.is_empty())
                        .ok_or_else(|| {
                            BleError::Invalid("malformed descriptor discovery response".into())
                        })?;
                    cccd = found
                        .iter()
                        .find(|(_, t)| *t == att::from16(att::CCCD))
                        .map(|(h, _)| *h);
                    let last = found.iter().map(|(h, _)| *h).max().unwrap_or(0xFFFF);
                    from = if last < from { 0 } else { last.wrapping_add(1) };
                }
            }
            out.push(Characteristic {
                service: service.uuid,
                uuid: d.uuid,
                properties: d.properties,
                value_handle: d.value_handle,
                cccd,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
pub mod fake;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::fixtures::{caps, grant};
    use crate::capabilities::{Backends, Policy};
    use crds::GrantKind;

    fn backends(fake: &Arc<fake::FakeTransport>) -> Backends {
        Backends {
            ble: Arc::new(Radios::new(Arc::new(Arc::clone(fake)))),
            ..Backends::real(true)
        }
    }

    fn policy(allow_names: bool) -> Policy {
        Policy::from_yaml(&format!(
            "ble: {{controller: \"tcp:127.0.0.1:1\", allowNames: {allow_names}}}"
        ))
        .unwrap()
    }

    fn soon() -> Duration {
        Duration::from_secs(2)
    }

    #[tokio::test]
    async fn the_granted_peripheral_is_found_read_written_and_notifies() {
        let fake = Arc::new(fake::FakeTransport::default());
        let grants = [grant("protocol.endpoint", GrantKind::Ble, fake::ADDRESS)];
        let mut c = caps(&grants, policy(false), 2, backends(&fake));
        let mut p = c.open_ble("protocol.endpoint", soon()).await.unwrap();
        assert_eq!(p.address(), fake::ADDRESS);
        let deadline = Instant::now() + soon();
        let chars = p.connect(deadline).await.unwrap();
        assert_eq!(chars.len(), 3);
        assert_eq!(chars[0].uuid, att::from16(0x2A19));
        assert_eq!(chars[0].cccd, Some(4));
        assert_eq!(chars[1].cccd, None);
        assert!(p.is_connected());
        // The fake answers the MTU exchange with the default: 22 bytes per read.
        assert_eq!(p.mtu(), att::DEFAULT_MTU);
        assert_eq!(p.read(att::from16(0x2A19), deadline).await.unwrap(), [87]);
        // A longer value comes whole, by Read Blob after the first response.
        assert_eq!(
            p.read(att::from16(0x2A24), deadline).await.unwrap(),
            fake::long_value()
        );
        // A write longer than the MTU allows is refused before it is sent.
        let long = p.write(att::from16(0x2A56), &[0; 21], true, deadline).await;
        assert!(matches!(long, Err(BleError::Invalid(m)) if m.contains("at most 20")));
        p.write(att::from16(0x2A56), &[1], true, deadline)
            .await
            .unwrap();
        p.subscribe(att::from16(0x2A19), deadline).await.unwrap();
        let got = p.notifications(8, deadline).await.unwrap();
        assert_eq!(
            got,
            [Notification {
                uuid: att::from16(0x2A19),
                value: vec![42],
                indication: false
            }]
        );
        // A characteristic the peripheral lacks, and a write it refuses.
        let missing = p.read(att::from16(0x2A01), deadline).await.unwrap_err();
        assert!(
            missing.to_string().contains("no characteristic"),
            "{missing}"
        );
        fake.refuse_writes
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let refused = p.write(att::from16(0x2A56), &[1], true, deadline).await;
        assert_eq!(refused, Err(BleError::Att(0x80)));
        assert!(matches!(
            CapabilityError::from(BleError::Att(0x80)),
            CapabilityError::Io(m) if m.contains("application error")
        ));
        // The connection survived both.
        assert!(p.is_connected());
        p.disconnect().await;
        assert!(!p.is_connected());
    }

    #[tokio::test]
    async fn only_the_granted_peripheral_and_only_names_the_policy_allows() {
        let fake = Arc::new(fake::FakeTransport::default());
        let grants = [
            grant("protocol.endpoint", GrantKind::Ble, fake::ADDRESS),
            grant("by-name", GrantKind::Ble, fake::NAME),
            grant("plc", GrantKind::Tcp, "127.0.0.1:502"),
        ];
        let mut c = caps(&grants, policy(false), 4, backends(&fake));
        for (name, want) in [
            ("other", "not granted"),
            ("plc", "not ble"),
            ("by-name", "local name"),
        ] {
            match c.open_ble(name, soon()).await {
                Err(CapabilityError::NotPermitted(m)) => assert!(m.contains(want), "{name}: {m}"),
                Err(e) => panic!("{name}: {e}"),
                Ok(_) => panic!("{name}: opened"),
            }
        }
        assert_eq!(c.open_handles(), 0);
        let mut named = caps(&grants, policy(true), 4, backends(&fake));
        let p = named.open_ble("by-name", soon()).await.unwrap();
        assert_eq!(p.address(), fake::ADDRESS);
        let mut none = caps(&grants, Policy::loopback(), 4, backends(&fake));
        assert!(matches!(
            none.open_ble("protocol.endpoint", soon()).await,
            Err(CapabilityError::NotPermitted(m)) if m.contains("no Bluetooth controller")
        ));
    }

    #[tokio::test]
    async fn an_invalid_handle_makes_the_next_call_discover_again() {
        let fake = Arc::new(fake::FakeTransport::default());
        let grants = [grant("protocol.endpoint", GrantKind::Ble, fake::ADDRESS)];
        let mut c = caps(&grants, policy(false), 2, backends(&fake));
        let mut p = c.open_ble("protocol.endpoint", soon()).await.unwrap();
        let deadline = Instant::now() + soon();
        p.connect(deadline).await.unwrap();
        assert_eq!(
            fake.discoveries.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        // Reads on a connection with known handles do not discover.
        p.read(att::from16(0x2A19), deadline).await.unwrap();
        assert_eq!(
            fake.discoveries.load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        fake.invalid_once
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let stale = p.read(att::from16(0x2A19), deadline).await;
        assert_eq!(stale, Err(BleError::Att(att::INVALID_HANDLE)));
        // The connection stays; the next call finds the handles again, then reads.
        assert!(p.is_connected());
        assert_eq!(p.read(att::from16(0x2A19), deadline).await.unwrap(), [87]);
        assert_eq!(
            fake.discoveries.load(std::sync::atomic::Ordering::SeqCst),
            2
        );
    }

    #[tokio::test]
    async fn a_full_controller_is_limit_reached_and_reconnects_back_off() {
        let fake = Arc::new(fake::FakeTransport::default());
        fake.full.store(true, std::sync::atomic::Ordering::SeqCst);
        let grants = [grant("protocol.endpoint", GrantKind::Ble, fake::ADDRESS)];
        let mut c = caps(&grants, policy(false), 2, backends(&fake));
        let mut p = c.open_ble("protocol.endpoint", soon()).await.unwrap();
        let err = p.connect(Instant::now() + soon()).await.unwrap_err();
        assert!(matches!(err, BleError::Limit(_)), "{err}");
        assert!(matches!(
            CapabilityError::from(err),
            CapabilityError::LimitReached(_)
        ));
        // The next attempt waits for the backoff instead of hammering the controller.
        fake.full.store(false, std::sync::atomic::Ordering::SeqCst);
        let err = p.connect(Instant::now() + soon()).await.unwrap_err();
        assert!(err.to_string().contains("backoff"), "{err}");
    }

    #[test]
    fn controllers_parse_and_the_user_channel_is_named_unsupported() {
        assert_eq!(
            Controller::parse("tcp:127.0.0.1:19002"),
            Ok(Controller::Tcp("127.0.0.1:19002".into()))
        );
        assert_eq!(
            Controller::parse("serial:/dev/ttyUSB0@1000000"),
            Ok(Controller::Serial {
                path: "/dev/ttyUSB0".into(),
                baud: 1_000_000
            })
        );
        assert_eq!(
            Controller::parse("serial:/dev/ttyACM0"),
            Ok(Controller::Serial {
                path: "/dev/ttyACM0".into(),
                baud: 115_200
            })
        );
        for bad in ["tcp:nope", "serial:ttyUSB0", "serial:/dev/x@fast", "hci0"] {
            assert!(Controller::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Controller::parse("hci0")
                .unwrap_err()
                .contains("user channel")
        );
    }
}
