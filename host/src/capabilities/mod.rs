//! What an adaptor can reach: capability handles opened by grant name.
//!
//! Every open goes through the same three checks before any I/O: the grant exists for
//! this device and is of the right kind, the node's policy allows its target, and the
//! device is under its handle cap. Each capability has a real backend and a fake one.
//!
//! Owns grants, policy, limits and the handles. Knows nothing of wasmtime, the WIT
//! bindings or the engine: `engine::host_calls` adapts these types to the guest's
//! interfaces, so a capability can be tested (and fuzzed) without an engine.

pub mod ble;
pub mod gpio;
pub mod grants;
pub mod policy;
pub mod serial;
pub mod socket;
pub mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crds::GrantKind;

pub use grants::{DeclaredResource, Grants, ResolvedGrant};
pub use policy::Policy;

/// Why a capability call failed. Mirrors the WIT `capability-error`, which the host-call
/// layer converts it into; the texts are what the guest and the operator read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("not permitted: {0}")]
    NotPermitted(String),
    #[error("timed out")]
    Timeout,
    #[error("limit reached: {0}")]
    LimitReached(String),
    #[error("closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Bounds on what one device may hold and ask for.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open serial ports, sockets and GPIO lines per device.
    pub max_handles: usize,
    /// Upper bound on any single capability call; guests asking for more get this.
    pub max_timeout: Duration,
    /// Largest single read a guest may ask for, in bytes.
    pub max_read: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_handles: 8,
            max_timeout: Duration::from_secs(10),
            max_read: 64 * 1024,
        }
    }
}

/// The backends the capabilities use; real ones in production, fakes in unit tests.
#[derive(Clone)]
pub struct Backends {
    pub serial: Arc<dyn serial::Backend>,
    /// The serial lines open on this node; one per process, shared by all devices.
    pub buses: Arc<serial::bus::Buses>,
    pub socket: Arc<dyn socket::Backend>,
    pub gpio: Arc<dyn gpio::Backend>,
    /// The GPIO lines held on this node, and by which device.
    pub gpio_holders: Arc<gpio::Holders>,
    /// The Bluetooth controllers in use on this node, shared by every device.
    pub ble: Arc<ble::Radios>,
}

impl Backends {
    /// Real serial and socket backends; GPIO on the character device when `gpio_sim`
    /// is false, else on the simulated chip.
    pub fn real(gpio_sim: bool) -> Self {
        Self {
            serial: Arc::new(serial::RealBackend),
            buses: Arc::default(),
            socket: Arc::new(socket::RealBackend),
            gpio: if gpio_sim {
                Arc::new(gpio::SimBackend::default())
            } else {
                Arc::new(gpio::CdevBackend)
            },
            gpio_holders: Arc::default(),
            ble: Arc::default(),
        }
    }
}

/// One device's capability state: its grants, the node policy, and its open handles.
pub struct Capabilities {
    grants: Arc<Grants>,
    policy: Arc<Policy>,
    limits: Limits,
    backends: Backends,
    open_handles: usize,
    /// The device these capabilities serve, for the GPIO lines it holds; `None` for
    /// scratch instances and tests.
    gpio_holder: Option<gpio::Holder>,
    /// When the guest call in progress must have returned, less a reserve for the guest
    /// to handle the error: no capability call outlives the call that made it.
    call_deadline: Option<Instant>,
}

impl Capabilities {
    pub fn new(
        grants: Arc<Grants>,
        policy: Arc<Policy>,
        limits: Limits,
        backends: Backends,
    ) -> Self {
        Self {
            grants,
            policy,
            limits,
            backends,
            open_handles: 0,
            gpio_holder: None,
            call_deadline: None,
        }
    }

    /// Names the device (`namespace/name`) these capabilities serve, as a new instance
    /// of it: lines it requests are recorded as held by it (see [`gpio::Holders`]).
    pub fn for_device(mut self, device: Arc<str>) -> Self {
        self.gpio_holder = Some(self.backends.gpio_holders.holder(device));
        self
    }

    pub(crate) fn gpio_holder(&self) -> Option<&gpio::Holder> {
        self.gpio_holder.as_ref()
    }

    /// Nothing granted: used for `describe` on a scratch instance.
    pub fn none(backends: Backends) -> Self {
        Self::new(
            Arc::new(Grants::default()),
            Arc::new(Policy::deny_all()),
            Limits::default(),
            backends,
        )
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    pub fn open_handles(&self) -> usize {
        self.open_handles
    }

    /// The grant named `name`, if it is of `kind`, allowed by policy, and a handle is free.
    /// Reserves the handle; call [`Capabilities::release`] when it closes (or fails to open).
    pub fn authorize(
        &mut self,
        name: &str,
        kind: GrantKind,
    ) -> Result<ResolvedGrant, CapabilityError> {
        let grant = self.grants.get(name).ok_or_else(|| {
            CapabilityError::NotPermitted(format!(
                "{kind} grant {name:?} is not granted to this device (granted: {})",
                self.grants.describe()
            ))
        })?;
        if grant.kind != kind {
            return Err(CapabilityError::NotPermitted(format!(
                "grant {name:?} is a {} grant, not {kind}",
                grant.kind
            )));
        }
        self.policy.check(kind, &grant.target).map_err(|why| {
            CapabilityError::NotPermitted(format!(
                "{kind} grant {name:?} ({}) refused by node policy: {why}",
                grant.target
            ))
        })?;
        if self.open_handles >= self.limits.max_handles {
            return Err(CapabilityError::LimitReached(format!(
                "device already holds {} handles, the cap is {}",
                self.open_handles, self.limits.max_handles
            )));
        }
        self.open_handles += 1;
        Ok(grant.clone())
    }

    /// The target of the grant `name`, if this device holds it.
    pub fn grants_target(&self, name: &str) -> Option<String> {
        self.grants.get(name).map(|g| g.target.clone())
    }

    /// The node policy, for checks on resolved addresses.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Finds the peripheral the `ble` grant `name` names, on the policy's controller,
    /// scanning for at most `timeout`. Holds a handle slot until the peripheral is dropped.
    pub async fn open_ble(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> Result<ble::Peripheral, CapabilityError> {
        let grant = self.authorize(name, GrantKind::Ble)?;
        let Some(policy) = self.policy.ble().cloned() else {
            self.release();
            return Err(CapabilityError::NotPermitted(
                "this node has no Bluetooth controller (policy `ble`)".into(),
            ));
        };
        let target = ble::Target::parse(&grant.target);
        let deadline = tokio::time::Instant::now() + timeout;
        match ble::Peripheral::find(
            Arc::clone(&self.backends.ble),
            policy.controller,
            policy.max_connections,
            &target,
            deadline,
        )
        .await
        {
            Ok(p) => Ok(p),
            Err(e) => {
                self.release();
                Err(e.into())
            }
        }
    }

    /// Frees one handle slot.
    pub fn release(&mut self) {
        self.open_handles = self.open_handles.saturating_sub(1);
    }

    /// Bounds capability calls by the guest call that makes them: a guest whose device
    /// is silent then gets `timeout` in time to report it, instead of being interrupted.
    pub fn set_call_deadline(&mut self, call: Option<(Instant, Duration)>) {
        self.call_deadline = call.map(|(deadline, timeout)| {
            let reserve =
                (timeout / 10).clamp(Duration::from_millis(10), Duration::from_millis(250));
            deadline.checked_sub(reserve).unwrap_or(deadline)
        });
    }

    /// The timeout for one call: the guest's request, capped by the limit and by what is
    /// left of the guest call; 0 means the cap.
    pub fn timeout(&self, requested_ms: u32) -> Duration {
        let requested = Duration::from_millis(u64::from(requested_ms));
        let capped = if requested.is_zero() || requested > self.limits.max_timeout {
            self.limits.max_timeout
        } else {
            requested
        };
        match self.call_deadline {
            Some(deadline) => capped.min(deadline.saturating_duration_since(Instant::now())),
            None => capped,
        }
    }

    /// The largest single read a guest may ask for.
    pub fn max_read(&self) -> usize {
        self.limits.max_read as usize
    }

    /// The checked size and the timeout of one read.
    pub fn read_limits(
        &self,
        max: u32,
        timeout_ms: u32,
    ) -> Result<(usize, Duration), CapabilityError> {
        Ok((self.read_size(max)?, self.timeout(timeout_ms)))
    }

    /// Checks a read size against the cap.
    pub fn read_size(&self, max: u32) -> Result<usize, CapabilityError> {
        if max > self.limits.max_read {
            return Err(CapabilityError::InvalidArgument(format!(
                "read of {max} bytes exceeds the limit of {}",
                self.limits.max_read
            )));
        }
        Ok(max as usize)
    }
}

/// Writes all of `data` and flushes within `timeout`; returns the length written.
pub(crate) async fn write_all<W>(
    io: &mut W,
    data: &[u8],
    timeout: Duration,
) -> Result<u32, CapabilityError>
where
    W: tokio::io::AsyncWrite + Unpin + ?Sized,
{
    use tokio::io::AsyncWriteExt;
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    with_timeout(timeout, async {
        io.write_all(data).await?;
        io.flush().await
    })
    .await
    .map(|()| len)
}

/// Reads at most `max` bytes within `timeout`.
pub(crate) async fn read_some<R>(
    io: &mut R,
    max: usize,
    timeout: Duration,
) -> Result<Vec<u8>, CapabilityError>
where
    R: tokio::io::AsyncRead + Unpin + ?Sized,
{
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0; max];
    with_timeout(timeout, io.read(&mut buf)).await.map(|n| {
        buf.truncate(n);
        buf
    })
}

/// Maps an I/O error to the guest-facing error.
pub(crate) fn io_error(err: std::io::Error) -> CapabilityError {
    use std::io::ErrorKind::*;
    match err.kind() {
        TimedOut => CapabilityError::Timeout,
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof | NotConnected => {
            CapabilityError::Closed
        }
        _ => CapabilityError::Io(err.to_string()),
    }
}

/// Runs `fut` with a timeout, mapping both failure kinds to the guest-facing error.
pub(crate) async fn with_timeout<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, CapabilityError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(io_error(e)),
        Err(_) => Err(CapabilityError::Timeout),
    }
}

/// Fixtures for the capability modules' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crds::Grant;

    /// `grants` as a link grants them (no spec fields), under the node policy `policy`,
    /// with at most `max_handles` open at once.
    pub(crate) fn caps(
        grants: &[Grant],
        policy: Policy,
        max_handles: usize,
        backends: Backends,
    ) -> Capabilities {
        let grants = Grants::resolve(grants, &serde_json::Value::Null, grants::NO_FIELDS).0;
        Capabilities::new(
            Arc::new(grants),
            Arc::new(policy),
            Limits {
                max_handles,
                ..Limits::default()
            },
            backends,
        )
    }

    pub(crate) fn grant(name: &str, kind: GrantKind, target: &str) -> Grant {
        Grant {
            name: name.into(),
            kind,
            target: target.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::grant;
    use super::*;

    fn caps(grants: Vec<crds::Grant>, policy: &str, max_handles: usize) -> Capabilities {
        let policy = Policy::from_yaml(policy).unwrap();
        fixtures::caps(&grants, policy, max_handles, Backends::real(true))
    }

    #[test]
    fn ungranted_name_is_refused_with_what_was_asked() {
        let mut c = caps(vec![], "tcp: ['127.0.0.0/8']", 4);
        let err = c.authorize("plc", GrantKind::Tcp).unwrap_err();
        assert!(
            matches!(&err, CapabilityError::NotPermitted(m) if m.contains("\"plc\"") && m.contains("not granted")),
            "{err}"
        );
    }

    #[test]
    fn wrong_kind_is_refused() {
        let mut c = caps(
            vec![grant("bus", GrantKind::Serial, "/dev/ttyS0")],
            "serial: ['/dev/ttyS*']",
            4,
        );
        let err = c.authorize("bus", GrantKind::Tcp).unwrap_err();
        assert!(
            matches!(&err, CapabilityError::NotPermitted(m) if m.contains("serial grant")),
            "{err}"
        );
    }

    #[test]
    fn policy_refusal_names_the_target() {
        let mut c = caps(
            vec![grant("plc", GrantKind::Tcp, "10.1.2.3:502")],
            "tcp: ['127.0.0.0/8']",
            4,
        );
        let err = c.authorize("plc", GrantKind::Tcp).unwrap_err();
        assert!(
            matches!(&err, CapabilityError::NotPermitted(m) if m.contains("10.1.2.3:502") && m.contains("node policy")),
            "{err}"
        );
    }

    #[test]
    fn handle_cap_is_enforced_and_released() {
        let mut c = caps(
            vec![grant("plc", GrantKind::Tcp, "127.0.0.1:502")],
            "tcp: ['127.0.0.1/32 502']",
            2,
        );
        c.authorize("plc", GrantKind::Tcp).unwrap();
        c.authorize("plc", GrantKind::Tcp).unwrap();
        let err = c.authorize("plc", GrantKind::Tcp).unwrap_err();
        assert!(matches!(err, CapabilityError::LimitReached(_)));
        c.release();
        c.authorize("plc", GrantKind::Tcp).unwrap();
    }

    #[test]
    fn timeouts_are_capped() {
        let c = caps(vec![], "{}", 1);
        assert_eq!(c.timeout(0), Limits::default().max_timeout);
        assert_eq!(c.timeout(100), Duration::from_millis(100));
        assert_eq!(c.timeout(u32::MAX), Limits::default().max_timeout);
        assert!(c.read_size(Limits::default().max_read + 1).is_err());
    }

    #[test]
    fn timeouts_end_before_the_guest_call_does() {
        let mut c = caps(vec![], "{}", 1);
        let call = Duration::from_secs(1);
        c.set_call_deadline(Some((Instant::now() + call, call)));
        // 10% of the call is kept for the guest to handle the timeout.
        assert!(c.timeout(0) <= Duration::from_millis(900));
        assert!(c.timeout(0) > Duration::from_millis(800));
        assert_eq!(c.timeout(100), Duration::from_millis(100));
        c.set_call_deadline(Some((Instant::now(), call)));
        assert_eq!(c.timeout(100), Duration::ZERO);
        c.set_call_deadline(None);
        assert_eq!(c.timeout(0), Limits::default().max_timeout);
    }
}
