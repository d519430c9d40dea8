//! One controller, owned by the limb and shared by every BLE device on the node.
//!
//! A reader task turns the controller's byte stream into events and ATT frames; callers
//! send commands one at a time (a FIFO lock, so turns are fair) and ATT requests one at a
//! time per connection (one outstanding request is what ATT allows). Every wait has a
//! deadline; a silent peripheral costs only its own device's calls.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

use super::hci::{self, Address, Event, op};
use super::{BleError, HciIo, att};

/// How many pushed values a connection keeps for its device before dropping the oldest.
const MAX_QUEUED: usize = 256;
/// Largest H4 packet accepted from the controller.
const MAX_PACKET: usize = 4096;
/// How long setting up the controller may take.
const INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A value pushed by the peripheral.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    pub handle: u16,
    pub value: Vec<u8>,
    pub indication: bool,
}

/// One connection to a peripheral.
pub struct Link {
    pub handle: u16,
    pub peer: Address,
    radio: Arc<Radio>,
    /// ATT responses to this connection's one outstanding request.
    responses: tokio::sync::Mutex<mpsc::Receiver<Vec<u8>>>,
    responses_tx: mpsc::Sender<Vec<u8>>,
    pushed: Mutex<VecDeque<Push>>,
    pushed_notify: Notify,
    closed: AtomicBool,
    closed_notify: Notify,
    /// The ATT MTU in use: 23 until an exchange settles it.
    mtu: AtomicU16,
    /// The value handle of the peripheral's Service Changed characteristic (0: none).
    service_changed: AtomicU16,
    /// The peripheral indicated that its services changed: handles are stale.
    changed: AtomicBool,
}

impl Link {
    /// The ATT MTU in use on this connection.
    pub fn mtu(&self) -> u16 {
        self.mtu.load(Ordering::SeqCst)
    }

    /// Watches `handle` for Service Changed indications (they are not queued as values).
    pub fn watch_service_changed(&self, handle: u16) {
        self.service_changed.store(handle, Ordering::SeqCst);
    }

    /// Whether the peripheral said its services changed since the last call.
    pub fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::SeqCst)
    }

    /// Asks for [`att::CLIENT_MTU`] and keeps what both sides support. A peripheral that
    /// refuses the exchange keeps the default (ATT requires servers to answer, but an
    /// Error Response is no reason to drop the connection).
    pub async fn exchange_mtu(&self, deadline: Instant) -> Result<u16, BleError> {
        match self
            .request(att::exchange_mtu(true, att::CLIENT_MTU), deadline)
            .await
        {
            Ok(rsp) => {
                let theirs = att::parse_mtu(&rsp)
                    .ok_or_else(|| BleError::Invalid("malformed Exchange MTU Response".into()))?;
                let mtu = att::negotiated(att::CLIENT_MTU, theirs);
                self.mtu.store(mtu, Ordering::SeqCst);
                Ok(mtu)
            }
            Err(BleError::Att(code)) => {
                tracing::debug!(code, "the peripheral refused to exchange the MTU");
                Ok(self.mtu())
            }
            Err(e) => Err(e),
        }
    }

    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.radio.is_alive()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.closed_notify.notify_waiters();
        self.pushed_notify.notify_waiters();
    }

    /// One ATT request and its response (or the peripheral's Error Response as `Att`).
    /// A request that times out ends the connection, as ATT requires.
    pub async fn request(&self, pdu: Vec<u8>, deadline: Instant) -> Result<Vec<u8>, BleError> {
        let mut responses = timeout_at(deadline, self.responses.lock())
            .await
            .map_err(|_| BleError::Timeout)?;
        // A response that arrived after an earlier request gave up is stale.
        while responses.try_recv().is_ok() {}
        let closed = self.closed_notify.notified();
        if !self.is_open() {
            return Err(BleError::Disconnected);
        }
        self.radio.send_acl(self.handle, &pdu, deadline).await?;
        tokio::select! {
            got = timeout_at(deadline, responses.recv()) => match got {
                Ok(Some(rsp)) => match att::error_code(&rsp) {
                    Some(code) => Err(BleError::Att(code)),
                    None => Ok(rsp),
                },
                Ok(None) => Err(BleError::Disconnected),
                Err(_) => {
                    tracing::debug!(handle = self.handle, "ATT request timed out; disconnecting");
                    self.radio.disconnect(self.handle).await;
                    self.close();
                    Err(BleError::Timeout)
                }
            },
            () = closed => Err(BleError::Disconnected),
        }
    }

    /// Sends a PDU that expects no response (a write command).
    pub async fn send(&self, pdu: Vec<u8>, deadline: Instant) -> Result<(), BleError> {
        if !self.is_open() {
            return Err(BleError::Disconnected);
        }
        self.radio.send_acl(self.handle, &pdu, deadline).await
    }

    /// Up to `max` pushed values, waiting until `deadline` for the first.
    pub async fn pushed(&self, max: usize, deadline: Instant) -> Vec<Push> {
        // Bounded: each round either returns or waits for a notify or the deadline.
        loop {
            let waiter = self.pushed_notify.notified();
            {
                let mut q = self.pushed.lock().unwrap_or_else(|e| e.into_inner());
                if !q.is_empty() || self.closed.load(Ordering::SeqCst) {
                    let n = q.len().min(max);
                    return q.drain(..n).collect();
                }
            }
            if timeout_at(deadline, waiter).await.is_err() {
                return Vec::new();
            }
        }
    }

    pub async fn disconnect(&self) {
        if self.is_open() {
            self.radio.disconnect(self.handle).await;
        }
        self.close();
    }
}

/// A command's outcome: Command Complete's parameters, or the failing HCI status.
type Completion = oneshot::Sender<Result<Vec<u8>, u8>>;

#[derive(Default)]
struct State {
    pending_command: Option<(u16, Completion)>,
    finders: Vec<Finder>,
    names: HashMap<[u8; 6], String>,
    pending_connection: Option<oneshot::Sender<(u8, u16, Address)>>,
    links: HashMap<u16, Arc<Link>>,
    in_flight: HashMap<u16, usize>,
    reassembly: HashMap<u16, hci::Reassembly>,
}

/// What a `find` looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Address([u8; 6]),
    /// A local name, compared without case as Octopus did.
    Name(String),
}

impl Target {
    pub fn parse(text: &str) -> Self {
        match Address::parse(text.trim()) {
            Some(a) => Self::Address(a),
            None => Self::Name(text.trim().to_owned()),
        }
    }

    fn matches(&self, address: &Address, name: Option<&str>) -> bool {
        match self {
            Self::Address(a) => *a == address.bytes,
            Self::Name(n) => name.is_some_and(|got| got.eq_ignore_ascii_case(n)),
        }
    }
}

struct Finder {
    id: u64,
    target: Target,
    found: Option<oneshot::Sender<Address>>,
}

/// A controller in use.
pub struct Radio {
    writer: mpsc::Sender<Vec<u8>>,
    state: Mutex<State>,
    alive: AtomicBool,
    /// Commands go one at a time, in arrival order.
    commands: tokio::sync::Mutex<()>,
    /// Scan on/off and connection setup go one at a time.
    scanning: tokio::sync::Mutex<bool>,
    /// ACL buffers free in the controller.
    credits: Arc<Semaphore>,
    /// The controller's LE ACL data packet length: longer L2CAP frames go in fragments.
    acl_len: AtomicUsize,
    /// One L2CAP frame's fragments go out together, never interleaved with another's.
    acl_out: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    /// Connections the node policy allows on this controller.
    pub max_connections: usize,
}

impl Radio {
    /// Starts the reader and writer tasks on `io` and sets the controller up: reset,
    /// events, buffers, a static random address, active scanning.
    pub async fn start(
        io: Box<dyn HciIo>,
        max_connections: usize,
        own_address: [u8; 6],
    ) -> Result<Arc<Self>, BleError> {
        let (mut reader, mut writer) = tokio::io::split(io);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
        let radio = Arc::new(Self {
            writer: tx,
            state: Mutex::default(),
            alive: AtomicBool::new(true),
            commands: tokio::sync::Mutex::new(()),
            scanning: tokio::sync::Mutex::new(false),
            credits: Arc::new(Semaphore::new(0)),
            acl_len: AtomicUsize::new(usize::from(att::DEFAULT_MTU) + 4),
            acl_out: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
            max_connections,
        });
        let weak = Arc::downgrade(&radio);
        tokio::spawn(async move {
            while let Some(packet) = rx.recv().await {
                if writer.write_all(&packet).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
            if let Some(r) = weak.upgrade() {
                r.die();
            }
        });
        let weak = Arc::downgrade(&radio);
        tokio::spawn(async move {
            let why = read_loop(&mut reader, &weak).await;
            tracing::warn!(%why, "BLE controller transport ended");
            if let Some(r) = weak.upgrade() {
                r.die();
            }
        });
        let deadline = Instant::now() + INIT_TIMEOUT;
        radio.command(op::RESET, &[], deadline).await?;
        radio
            .command(
                op::SET_EVENT_MASK,
                &0x3DBF_F807_FFFB_FFFFu64.to_le_bytes(),
                deadline,
            )
            .await?;
        radio
            // Connection complete, advertising reports (legacy and extended), updates.
            .command(op::LE_SET_EVENT_MASK, &0x101Fu64.to_le_bytes(), deadline)
            .await?;
        let le = radio
            .command(op::LE_READ_BUFFER_SIZE, &[], deadline)
            .await?;
        let mut buffers = le.get(3).copied().map(usize::from).unwrap_or(0);
        let mut acl_len = le
            .get(1..3)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .unwrap_or(0);
        if buffers == 0 {
            // No LE-only buffers: LE shares the BR/EDR ones.
            let br = radio.command(op::READ_BUFFER_SIZE, &[], deadline).await?;
            buffers = br
                .get(4..6)
                .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
                .unwrap_or(1);
            acl_len = br
                .get(1..3)
                .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
                .unwrap_or(0);
        }
        radio.credits.add_permits(buffers.clamp(1, 64));
        // 27 bytes is the least an LE controller must take; a bogus 0 would stall.
        radio
            .acl_len
            .store(acl_len.clamp(27, MAX_PACKET - 5), Ordering::SeqCst);
        radio
            .command(op::LE_SET_RANDOM_ADDRESS, &own_address, deadline)
            .await?;
        radio
            .command(
                op::LE_SET_SCAN_PARAMETERS,
                &hci::scan_parameters(),
                deadline,
            )
            .await?;
        Ok(radio)
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The transport is gone: every waiter fails, every link closes.
    fn die(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let mut s = self.lock();
        s.pending_command = None;
        s.pending_connection = None;
        s.finders.clear();
        for (_, link) in s.links.drain() {
            link.close();
        }
    }

    /// Sends one command and waits for its completion (Command Complete's parameters
    /// after the status; Command Status' success as empty). A failing status is `Hci`.
    pub async fn command(
        &self,
        opcode: u16,
        params: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, BleError> {
        let _turn = timeout_at(deadline, self.commands.lock())
            .await
            .map_err(|_| BleError::Timeout)?;
        if !self.is_alive() {
            return Err(BleError::ControllerGone);
        }
        let (tx, rx) = oneshot::channel();
        self.lock().pending_command = Some((opcode, tx));
        self.writer
            .send(hci::command(opcode, params))
            .await
            .map_err(|_| BleError::ControllerGone)?;
        match timeout_at(deadline, rx).await {
            Ok(Ok(Ok(params))) => Ok(params),
            Ok(Ok(Err(status))) => Err(BleError::Hci(status)),
            Ok(Err(_)) => Err(BleError::ControllerGone),
            Err(_) => {
                self.lock().pending_command = None;
                Err(BleError::Timeout)
            }
        }
    }

    /// Sends one ATT PDU, in as many ACL packets as the controller's packet length needs,
    /// each taking one of its buffers.
    async fn send_acl(&self, handle: u16, pdu: &[u8], deadline: Instant) -> Result<(), BleError> {
        let fragments =
            hci::acl_fragments(handle, att::CID, pdu, self.acl_len.load(Ordering::SeqCst));
        let _frame = timeout_at(deadline, self.acl_out.lock())
            .await
            .map_err(|_| BleError::Timeout)?;
        for fragment in fragments {
            let permit = timeout_at(deadline, self.credits.acquire())
                .await
                .map_err(|_| BleError::Timeout)?
                .map_err(|_| BleError::ControllerGone)?;
            permit.forget();
            *self.lock().in_flight.entry(handle).or_default() += 1;
            self.writer
                .send(fragment)
                .await
                .map_err(|_| BleError::ControllerGone)?;
        }
        Ok(())
    }

    /// Answers the peripheral (a confirmation, an MTU, a refusal) from the reader task:
    /// through [`Self::send_acl`], so it takes a buffer and never splits another frame.
    fn reply(self: &Arc<Self>, handle: u16, pdu: Vec<u8>) {
        let radio = Arc::clone(self);
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(2);
            if let Err(e) = radio.send_acl(handle, &pdu, deadline).await {
                tracing::debug!(handle, error = %e, "ATT reply not sent");
            }
        });
    }

    /// Scans until a peripheral matching `target` advertises, or `deadline`.
    pub async fn find(
        self: &Arc<Self>,
        target: &Target,
        deadline: Instant,
    ) -> Result<Address, BleError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().finders.push(Finder {
            id,
            target: target.clone(),
            found: Some(tx),
        });
        let result = async {
            self.set_scan(true, deadline).await?;
            match timeout_at(deadline, rx).await {
                Ok(Ok(address)) => Ok(address),
                Ok(Err(_)) => Err(BleError::ControllerGone),
                Err(_) => Err(BleError::Timeout),
            }
        }
        .await;
        let idle = {
            let mut s = self.lock();
            s.finders.retain(|f| f.id != id);
            s.finders.is_empty()
        };
        if idle {
            // Best effort, and bounded: scanning with nobody waiting only costs radio time.
            let _ = self
                .set_scan(false, Instant::now() + Duration::from_secs(2))
                .await;
        }
        result
    }

    async fn set_scan(&self, on: bool, deadline: Instant) -> Result<(), BleError> {
        let mut scanning = timeout_at(deadline, self.scanning.lock())
            .await
            .map_err(|_| BleError::Timeout)?;
        if on && self.lock().finders.is_empty() {
            return Ok(());
        }
        if *scanning != on {
            self.command(op::LE_SET_SCAN_ENABLE, &[u8::from(on), 0], deadline)
                .await?;
            *scanning = on;
        }
        Ok(())
    }

    /// Connects to `peer`. Scanning pauses meanwhile (controllers may refuse both at
    /// once). A full controller, or the policy's limit, is `LimitReached`.
    pub async fn connect(
        self: &Arc<Self>,
        peer: Address,
        deadline: Instant,
    ) -> Result<Arc<Link>, BleError> {
        let mut scanning = timeout_at(deadline, self.scanning.lock())
            .await
            .map_err(|_| BleError::Timeout)?;
        let open = self.lock().links.len();
        if open >= self.max_connections {
            return Err(BleError::Limit(format!(
                "the controller holds {open} connections, the node policy's maximum"
            )));
        }
        if *scanning {
            self.command(op::LE_SET_SCAN_ENABLE, &[0, 0], deadline)
                .await?;
            *scanning = false;
        }
        let (tx, rx) = oneshot::channel();
        self.lock().pending_connection = Some(tx);
        let result = async {
            match self
                .command(
                    op::LE_CREATE_CONNECTION,
                    &hci::create_connection_params(peer),
                    deadline,
                )
                .await
            {
                Err(BleError::Hci(s)) if hci::is_limit(s) => {
                    return Err(BleError::Limit(format!(
                        "the controller refused another connection (HCI 0x{s:02X})"
                    )));
                }
                other => other?,
            };
            let (status, handle, _) = match timeout_at(deadline, rx).await {
                Ok(Ok(done)) => done,
                Ok(Err(_)) => return Err(BleError::ControllerGone),
                Err(_) => {
                    // Cancel, then take whichever completion comes (a connection may have
                    // been made meanwhile).
                    let (tx, rx) = oneshot::channel();
                    self.lock().pending_connection = Some(tx);
                    let grace = Instant::now() + Duration::from_secs(2);
                    let _ = self
                        .command(op::LE_CREATE_CONNECTION_CANCEL, &[], grace)
                        .await;
                    if let Ok(Ok((hci::status::SUCCESS, handle, _))) = timeout_at(grace, rx).await {
                        self.disconnect(handle).await;
                    }
                    return Err(BleError::Timeout);
                }
            };
            if hci::is_limit(status) {
                return Err(BleError::Limit(format!(
                    "the controller refused another connection (HCI 0x{status:02X})"
                )));
            }
            if status != hci::status::SUCCESS {
                return Err(BleError::Hci(status));
            }
            self.lock()
                .links
                .get(&handle)
                .cloned()
                .ok_or(BleError::Disconnected)
        }
        .await;
        let waiting = {
            let mut s = self.lock();
            s.pending_connection = None;
            !s.finders.is_empty()
        };
        if waiting
            && self
                .command(
                    op::LE_SET_SCAN_ENABLE,
                    &[1, 0],
                    Instant::now() + Duration::from_secs(2),
                )
                .await
                .is_ok()
        {
            *scanning = true;
        }
        result
    }

    async fn disconnect(&self, handle: u16) {
        let mut params = handle.to_le_bytes().to_vec();
        params.push(hci::status::REMOTE_USER_TERMINATED);
        let _ = self
            .command(
                op::DISCONNECT,
                &params,
                Instant::now() + Duration::from_secs(2),
            )
            .await;
    }

    /// Acts on one event from the controller.
    fn on_event(self: &Arc<Self>, event: Event) {
        let mut s = self.lock();
        match event {
            Event::CommandComplete { opcode, params } => {
                if s.pending_command
                    .as_ref()
                    .is_some_and(|(o, _)| *o == opcode)
                    && let Some((_, tx)) = s.pending_command.take()
                {
                    let status = params.first().copied().unwrap_or(0);
                    let _ = tx.send(if status == 0 { Ok(params) } else { Err(status) });
                }
            }
            Event::CommandStatus { opcode, status } => {
                if s.pending_command
                    .as_ref()
                    .is_some_and(|(o, _)| *o == opcode)
                    && let Some((_, tx)) = s.pending_command.take()
                {
                    let _ = tx.send(if status == 0 {
                        Ok(Vec::new())
                    } else {
                        Err(status)
                    });
                }
            }
            Event::ConnectionComplete {
                status,
                handle,
                peer,
            } => {
                if status == hci::status::SUCCESS {
                    let (responses_tx, responses) = mpsc::channel(4);
                    let link = Arc::new(Link {
                        handle,
                        peer,
                        radio: Arc::clone(self),
                        responses: tokio::sync::Mutex::new(responses),
                        responses_tx,
                        pushed: Mutex::default(),
                        pushed_notify: Notify::new(),
                        closed: AtomicBool::new(false),
                        closed_notify: Notify::new(),
                        mtu: AtomicU16::new(att::DEFAULT_MTU),
                        service_changed: AtomicU16::new(0),
                        changed: AtomicBool::new(false),
                    });
                    s.links.insert(handle, link);
                }
                if let Some(tx) = s.pending_connection.take() {
                    let _ = tx.send((status, handle, peer));
                } else if status == hci::status::SUCCESS {
                    // Nobody asked (a cancelled attempt that completed late).
                    tracing::debug!(handle, "unexpected connection; it will be dropped");
                }
            }
            Event::DisconnectionComplete { handle, reason } => {
                tracing::debug!(handle, reason, "BLE disconnected");
                if let Some(link) = s.links.remove(&handle) {
                    link.close();
                }
                s.reassembly.remove(&handle);
                if let Some(n) = s.in_flight.remove(&handle) {
                    self.credits.add_permits(n);
                }
            }
            Event::CompletedPackets(done) => {
                for (handle, n) in done {
                    let n = usize::from(n);
                    let pending = s.in_flight.entry(handle).or_default();
                    let n = n.min(*pending);
                    *pending -= n;
                    self.credits.add_permits(n);
                }
            }
            Event::Advertising(reports) => {
                for r in reports {
                    if let Some(name) = &r.name {
                        s.names.insert(r.address.bytes, name.clone());
                    }
                    let name = s.names.get(&r.address.bytes).cloned();
                    for f in &mut s.finders {
                        if f.target.matches(&r.address, name.as_deref())
                            && let Some(tx) = f.found.take()
                        {
                            let _ = tx.send(r.address);
                        }
                    }
                }
            }
            Event::Other(_) => {}
        }
    }

    /// Acts on one ACL fragment.
    fn on_acl(self: &Arc<Self>, handle: u16, boundary: u8, data: &[u8]) {
        let (frame, link) = {
            let mut s = self.lock();
            let frame = s.reassembly.entry(handle).or_default().push(boundary, data);
            (frame, s.links.get(&handle).cloned())
        };
        let (Some((cid, pdu)), Some(link)) = (frame, link) else {
            return;
        };
        if cid != att::CID {
            return;
        }
        let Some(&opcode) = pdu.first() else {
            return;
        };
        if let Some((value_handle, value, indication)) = att::parse_push(&pdu) {
            if indication {
                self.reply(handle, vec![att::CONFIRMATION]);
            }
            let watched = link.service_changed.load(Ordering::SeqCst);
            if watched != 0 && value_handle == watched {
                tracing::debug!(handle, "the peripheral's services changed");
                link.changed.store(true, Ordering::SeqCst);
                return;
            }
            let mut q = link.pushed.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= MAX_QUEUED {
                q.pop_front();
            }
            q.push_back(Push {
                handle: value_handle,
                value,
                indication,
            });
            drop(q);
            link.pushed_notify.notify_waiters();
        } else if att::is_response(opcode) {
            let _ = link.responses_tx.try_send(pdu);
        } else if let Some(theirs) =
            att::parse_mtu(&pdu).filter(|_| opcode == att::EXCHANGE_MTU_REQ)
        {
            // The peripheral asks as a client: answer with ours, and both use the smaller.
            link.mtu
                .store(att::negotiated(att::CLIENT_MTU, theirs), Ordering::SeqCst);
            self.reply(handle, att::exchange_mtu(false, att::CLIENT_MTU));
        } else if att::is_request(opcode) {
            self.reply(handle, att::not_supported(opcode));
        }
    }
}

/// Reads H4 packets until the transport ends; returns why it ended.
async fn read_loop(
    reader: &mut tokio::io::ReadHalf<Box<dyn HciIo>>,
    radio: &std::sync::Weak<Radio>,
) -> String {
    let mut buf = vec![0u8; MAX_PACKET];
    // Bounded by the transport: each round reads one packet or ends.
    loop {
        let mut kind = [0u8; 1];
        if let Err(e) = reader.read_exact(&mut kind).await {
            return e.to_string();
        }
        let head = match kind[0] {
            hci::H4_EVENT => 2,
            hci::H4_ACL => 4,
            other => return format!("unexpected H4 packet type 0x{other:02X}"),
        };
        if let Err(e) = reader.read_exact(&mut buf[..head]).await {
            return e.to_string();
        }
        let len = if head == 2 {
            usize::from(buf[1])
        } else {
            usize::from(u16::from_le_bytes([buf[2], buf[3]]))
        };
        if head + len > MAX_PACKET {
            return format!("H4 packet of {len} bytes");
        }
        if let Err(e) = reader.read_exact(&mut buf[head..head + len]).await {
            return e.to_string();
        }
        let Some(radio) = radio.upgrade() else {
            return "controller dropped".into();
        };
        if head == 2 {
            if let Some(event) = hci::parse_event(buf[0], &buf[2..2 + len]) {
                radio.on_event(event);
            }
        } else if let Some((handle, boundary, data)) = hci::parse_acl(&buf[..4 + len]) {
            radio.on_acl(handle, boundary, data);
        }
    }
}
