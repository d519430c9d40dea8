//! `octopus:adaptor/gpio`: GPIO lines on the Linux character device (uAPI v2), or on a
//! simulated chip for machines without GPIO.
//!
//! Which backend a test ran says its name: `fake_chip_...` here (the in-process
//! [`SimBackend`]), `cdev_on_gpio_sim_...` in `tests/gpio_sim` ([`CdevBackend`] on the
//! kernel's gpio-sim, inside the qemu guest of `scripts/test-gpio.sh`).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crds::GrantKind;

use super::policy::{LineRef, parse_gpio_target};
use super::{Capabilities, CapabilityError};

/// The consumer label the limb's line requests carry; `gpioinfo` shows it, and a
/// refused request elsewhere names it.
pub const CONSUMER: &str = "octopus-limb";

/// The longest debounce period a line may ask for.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// Edge events a line keeps until they are read; older ones are dropped first, and the
/// gap shows in the sequence numbers (the kernel does the same with its buffer).
pub const EVENT_BUFFER: usize = 1024;

/// Which way a requested line goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

/// The line's internal bias resistor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bias {
    PullUp,
    PullDown,
    Disabled,
}

/// How an output drives its pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drive {
    PushPull,
    OpenDrain,
    OpenSource,
}

/// Which transitions of an input are reported as edge events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edges {
    Rising,
    Falling,
    Both,
}

/// How a line is requested, beyond its direction. `None` leaves the chip's setting as
/// it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Active means low on the pin; reads, writes and edge kinds are all inverted.
    pub active_low: bool,
    pub bias: Option<Bias>,
    /// Outputs only.
    pub drive: Option<Drive>,
    /// Inputs only; at most [`MAX_DEBOUNCE`].
    pub debounce: Option<Duration>,
    /// Inputs only.
    pub edges: Option<Edges>,
}

impl Settings {
    /// The settings that make no sense for `direction`, refused before any I/O.
    pub fn check(&self, direction: Direction) -> Result<(), String> {
        match direction {
            Direction::Output if self.edges.is_some() => {
                Err("edge detection needs an input line".into())
            }
            Direction::Output if self.debounce.is_some() => {
                Err("a debounce period needs an input line".into())
            }
            Direction::Input if self.drive.is_some() => {
                Err("a drive mode needs an output line".into())
            }
            _ => match self.debounce {
                Some(d) if d > MAX_DEBOUNCE => Err(format!(
                    "debounce period {d:?} exceeds the limit of {MAX_DEBOUNCE:?}"
                )),
                _ => Ok(()),
            },
        }
    }
}

/// One edge the kernel saw on a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeEvent {
    /// When it happened, in nanoseconds of `CLOCK_MONOTONIC` (the kernel's stamp).
    pub timestamp_ns: u64,
    /// Inactive to active (after any active-low inversion); otherwise the reverse.
    pub rising: bool,
    /// Position among the events of this request, from 1; a gap means events were lost.
    pub seqno: u32,
    /// Position among the events of this line, from 1.
    pub line_seqno: u32,
}

/// A requested line.
pub trait LineIo: Send + Sync {
    fn get(&self) -> io::Result<bool>;
    fn set(&self, active: bool) -> io::Result<()>;
    /// Waits up to `timeout` for edge events and returns at most `max` of them, oldest
    /// first; empty when none came. Fails if edge detection is off for the line.
    fn wait_edges(&self, timeout: Duration, max: usize) -> io::Result<Vec<EdgeEvent>>;
}

/// Requests lines. The calls are short ioctls, so the trait is synchronous; waiting for
/// edges blocks, and the host call runs it on a blocking thread.
pub trait Backend: Send + Sync {
    fn request(
        &self,
        chip: &str,
        line: u32,
        direction: Direction,
        settings: &Settings,
    ) -> io::Result<Box<dyn LineIo>>;

    /// The offset of the line that the chip names `name` (`gpio-line-names` in a
    /// device tree; `name` in gpio-sim).
    fn find_line(&self, chip: &str, name: &str) -> io::Result<u32>;
}

/// The Linux GPIO character device (`/dev/gpiochipN`).
pub struct CdevBackend;

struct CdevLine {
    req: gpiocdev::Request,
    offset: u32,
    output: bool,
    edges: bool,
}

fn not_found(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, what)
}

/// `set` on an input line, in every backend.
fn requested_as_input() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "line was requested as input")
}

/// `wait_edges` on a line requested without edge detection, in every backend.
fn no_edge_detection() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "edge detection is off for this line",
    )
}

impl LineIo for CdevLine {
    fn get(&self) -> io::Result<bool> {
        self.req
            .value(self.offset)
            .map(|v| v == gpiocdev::line::Value::Active)
            .map_err(io::Error::other)
    }

    fn set(&self, active: bool) -> io::Result<()> {
        if !self.output {
            return Err(requested_as_input());
        }
        let v = if active {
            gpiocdev::line::Value::Active
        } else {
            gpiocdev::line::Value::Inactive
        };
        self.req
            .set_value(self.offset, v)
            .map(|_| ())
            .map_err(io::Error::other)
    }

    fn wait_edges(&self, timeout: Duration, max: usize) -> io::Result<Vec<EdgeEvent>> {
        if !self.edges {
            return Err(no_edge_detection());
        }
        let max = max.min(EVENT_BUFFER);
        if max == 0
            || !self
                .req
                .wait_edge_event(timeout)
                .map_err(io::Error::other)?
        {
            return Ok(Vec::new());
        }
        // One read of up to `max` whole events. Not `Request::read_edge_event`: in
        // gpiocdev 0.7.3 it reads into a buffer of several events and returns only the
        // first, so the others were lost (seen on gpio-sim: four edges, one event).
        let size = self.req.edge_event_u64_size();
        let mut buf = vec![0_u64; size * max];
        let words = self
            .req
            .read_edge_events_into_slice(&mut buf)
            .map_err(io::Error::other)?;
        buf.get(..words)
            .unwrap_or_default()
            .chunks_exact(size)
            .map(|raw| {
                let e = self
                    .req
                    .edge_event_from_slice(raw)
                    .map_err(io::Error::other)?;
                Ok(EdgeEvent {
                    timestamp_ns: e.timestamp_ns,
                    rising: e.kind == gpiocdev::line::EdgeKind::Rising,
                    seqno: e.seqno,
                    line_seqno: e.line_seqno,
                })
            })
            .collect()
    }
}

fn chip_path(chip: &str) -> String {
    if chip.starts_with('/') {
        chip.to_owned()
    } else {
        format!("/dev/{chip}")
    }
}

impl Backend for CdevBackend {
    fn request(
        &self,
        chip: &str,
        line: u32,
        direction: Direction,
        settings: &Settings,
    ) -> io::Result<Box<dyn LineIo>> {
        use gpiocdev::line;
        let path = chip_path(chip);
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(&path)
            .with_consumer(CONSUMER)
            .with_line(line);
        let output = matches!(direction, Direction::Output);
        if output {
            builder.as_output(line::Value::Inactive);
        } else {
            builder.as_input();
        }
        if settings.active_low {
            builder.as_active_low();
        }
        if let Some(bias) = settings.bias {
            builder.with_bias(match bias {
                Bias::PullUp => line::Bias::PullUp,
                Bias::PullDown => line::Bias::PullDown,
                Bias::Disabled => line::Bias::Disabled,
            });
        }
        if let Some(drive) = settings.drive {
            builder.with_drive(match drive {
                Drive::PushPull => line::Drive::PushPull,
                Drive::OpenDrain => line::Drive::OpenDrain,
                Drive::OpenSource => line::Drive::OpenSource,
            });
        }
        if let Some(period) = settings.debounce {
            builder.with_debounce_period(period);
        }
        if let Some(edges) = settings.edges {
            builder.with_edge_detection(match edges {
                Edges::Rising => line::EdgeDetection::RisingEdge,
                Edges::Falling => line::EdgeDetection::FallingEdge,
                Edges::Both => line::EdgeDetection::BothEdges,
            });
        }
        let req = builder.request().map_err(|err| refusal(&path, line, err))?;
        Ok(Box::new(CdevLine {
            req,
            offset: line,
            output,
            edges: settings.edges.is_some(),
        }))
    }

    fn find_line(&self, chip: &str, name: &str) -> io::Result<u32> {
        let path = chip_path(chip);
        let chip = gpiocdev::Chip::from_path(&path).map_err(io::Error::other)?;
        chip.find_line_info(name)
            .map(|info| info.offset)
            .ok_or_else(|| not_found(format!("{path} has no line named {name:?}")))
    }
}

/// Why a request failed. A line that is in use (by another request, or by a kernel
/// consumer such as a hog or a driver) is refused with `ResourceBusy`, naming the
/// consumer that holds it, read from the chip's line info: the kernel's own error says
/// only "device or resource busy".
fn refusal(chip: &str, line: u32, err: gpiocdev::Error) -> io::Error {
    let holder = gpiocdev::Chip::from_path(chip)
        .and_then(|c| c.line_info(line))
        .ok()
        .filter(|info| info.used);
    match holder {
        Some(info) if info.consumer.is_empty() => io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("line {line} of {chip} is in use by an unnamed consumer"),
        ),
        Some(info) => io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("line {line} of {chip} is in use by {:?}", info.consumer),
        ),
        None => io::Error::other(err),
    }
}

/// A simulated chip: every line is a shared level that anyone may drive; outputs can be
/// read back by inputs of the same line, so a test can wire an adaptor's output to its
/// own input. Unlike the kernel it lets several requests hold one line (that loop-back
/// needs it); the kernel's refusal is tested on gpio-sim. Bias and drive are accepted
/// and not simulated.
#[derive(Clone, Default)]
pub struct SimBackend {
    state: Arc<Mutex<SimState>>,
}

#[derive(Default)]
struct SimState {
    /// Pin levels (high = true) and who watches their edges.
    pins: HashMap<(String, u32), SimPin>,
    names: HashMap<(String, String), u32>,
}

#[derive(Default)]
struct SimPin {
    high: bool,
    watchers: Vec<Weak<Watcher>>,
}

/// One edge-detecting request's view of its pin: its own queue and counters, as in the
/// kernel.
struct Watcher {
    edges: Edges,
    active_low: bool,
    queue: Mutex<(VecDeque<EdgeEvent>, u32)>,
    ready: Condvar,
}

fn poisoned<T>(_: T) -> io::Error {
    io::Error::other("simulated chip state poisoned")
}

fn monotonic_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl SimBackend {
    /// Sets a pin's level from outside, like a button press (`true` = high).
    pub fn drive(&self, chip: &str, line: u32, high: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let pin = state.pins.entry((chip.to_owned(), line)).or_default();
        if pin.high == high {
            return;
        }
        pin.high = high;
        let timestamp_ns = monotonic_ns();
        pin.watchers.retain(|w| w.strong_count() > 0);
        for watcher in pin.watchers.iter().filter_map(Weak::upgrade) {
            let rising = high != watcher.active_low;
            let wanted = match watcher.edges {
                Edges::Both => true,
                Edges::Rising => rising,
                Edges::Falling => !rising,
            };
            if !wanted {
                continue;
            }
            if let Ok(mut q) = watcher.queue.lock() {
                let (queue, count) = &mut *q;
                *count = count.wrapping_add(1);
                if queue.len() == EVENT_BUFFER {
                    queue.pop_front();
                }
                queue.push_back(EdgeEvent {
                    timestamp_ns,
                    rising,
                    seqno: *count,
                    line_seqno: *count,
                });
                watcher.ready.notify_all();
            }
        }
    }

    /// A pin's level from outside, like a probe on an LED (`true` = high).
    pub fn level(&self, chip: &str, line: u32) -> bool {
        self.state
            .lock()
            .map(|s| s.pins.get(&(chip.to_owned(), line)).is_some_and(|p| p.high))
            .unwrap_or(false)
    }

    /// Names a line, as a board's `gpio-line-names` does.
    pub fn name_line(&self, chip: &str, line: u32, name: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.names.insert((chip.to_owned(), name.to_owned()), line);
        }
    }
}

struct SimLine {
    sim: SimBackend,
    key: (String, u32),
    output: bool,
    active_low: bool,
    watcher: Option<Arc<Watcher>>,
}

impl LineIo for SimLine {
    fn get(&self) -> io::Result<bool> {
        Ok(self.sim.level(&self.key.0, self.key.1) != self.active_low)
    }

    fn set(&self, active: bool) -> io::Result<()> {
        if !self.output {
            return Err(requested_as_input());
        }
        self.sim
            .drive(&self.key.0, self.key.1, active != self.active_low);
        Ok(())
    }

    fn wait_edges(&self, timeout: Duration, max: usize) -> io::Result<Vec<EdgeEvent>> {
        let Some(watcher) = &self.watcher else {
            return Err(no_edge_detection());
        };
        let deadline = Instant::now() + timeout;
        let mut q = watcher.queue.lock().map_err(poisoned)?;
        // Bounded in time by the deadline, and in count against spurious wake-ups.
        for _ in 0..1000 {
            let left = deadline.saturating_duration_since(Instant::now());
            if !q.0.is_empty() || left.is_zero() {
                break;
            }
            q = watcher.ready.wait_timeout(q, left).map_err(poisoned)?.0;
        }
        let n = q.0.len().min(max);
        Ok(q.0.drain(..n).collect())
    }
}

impl Backend for SimBackend {
    fn request(
        &self,
        chip: &str,
        line: u32,
        direction: Direction,
        settings: &Settings,
    ) -> io::Result<Box<dyn LineIo>> {
        let key = (chip.to_owned(), line);
        let output = matches!(direction, Direction::Output);
        let watcher = settings.edges.map(|edges| {
            Arc::new(Watcher {
                edges,
                active_low: settings.active_low,
                queue: Mutex::new((VecDeque::new(), 0)),
                ready: Condvar::new(),
            })
        });
        {
            let mut state = self.state.lock().map_err(poisoned)?;
            let pin = state.pins.entry(key.clone()).or_default();
            if let Some(w) = &watcher {
                pin.watchers.push(Arc::downgrade(w));
            }
        }
        let line = SimLine {
            sim: self.clone(),
            key,
            output,
            active_low: settings.active_low,
            watcher,
        };
        if output {
            // Requested inactive, as the kernel does.
            line.set(false)?;
        }
        Ok(Box::new(line))
    }

    fn find_line(&self, chip: &str, name: &str) -> io::Result<u32> {
        self.state
            .lock()
            .map_err(poisoned)?
            .names
            .get(&(chip.to_owned(), name.to_owned()))
            .copied()
            .ok_or_else(|| not_found(format!("{chip} has no line named {name:?}")))
    }
}

/// The host side of a guest's GPIO `line`. Shared, so that a wait for edges can run on
/// a blocking thread while the handle stays in the guest's table.
pub struct Line {
    io: Arc<dyn LineIo>,
    /// The limb's record of who holds the line; `None` for requests made outside a
    /// device (unit tests, the loop-back of one instance's own output).
    hold: Option<Hold>,
}

/// The lines this limb holds, by chip and offset, and the device holding each.
///
/// Why the limb keeps its own record beside the kernel's: the kernel names every line the
/// limb holds with one consumer label, so a refusal there cannot say which link holds
/// the line; and a hot swap must hand a line from one instance of a device to the next
/// without releasing it, or an output would fall back to its default level between the
/// two requests. So a device's new instance asking for a line its old one holds, with
/// the same settings, shares the old request; from then on only the newest instance
/// drives it, and the old one's `shutdown` (which drives shutdown levels) cannot
/// glitch the output. The last holder to let go releases the line.
#[derive(Default)]
pub struct Holders {
    lines: Mutex<HashMap<(String, u32), Held>>,
    next_instance: AtomicU64,
}

struct Held {
    device: Arc<str>,
    direction: Direction,
    settings: Settings,
    io: Arc<dyn LineIo>,
    /// The instances holding it, oldest first; the last one drives it.
    instances: Vec<u64>,
}

/// One instance's hold on a line in [`Holders`]; dropping it lets go.
struct Hold {
    holders: Arc<Holders>,
    key: (String, u32),
    instance: u64,
}

/// Who is asking for a line: the device (`namespace/name`) and its instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub device: Arc<str>,
    pub instance: u64,
}

impl Holders {
    /// A new instance of `device`, to request lines as.
    pub fn holder(&self, device: Arc<str>) -> Holder {
        Holder {
            device,
            instance: self.next_instance.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The lines held, as `(chip, offset, device)`, sorted: what the tests check.
    pub fn held(&self) -> Vec<(String, u32, String)> {
        let Ok(lines) = self.lines.lock() else {
            return Vec::new();
        };
        let mut held: Vec<_> = lines
            .iter()
            .map(|((chip, line), h)| (chip.clone(), *line, h.device.to_string()))
            .collect();
        held.sort();
        held
    }

    /// The line for `holder`: the request another instance of the same device holds
    /// with the same settings, a new one from `request`, or a refusal naming the device
    /// that holds it. Requests with other settings than a same-device holder's go to
    /// the backend unrecorded (the kernel refuses them; the fake chip allows loop-backs).
    fn acquire(
        self: &Arc<Self>,
        chip: &str,
        line: u32,
        holder: &Holder,
        direction: Direction,
        settings: &Settings,
        request: impl FnOnce() -> io::Result<Box<dyn LineIo>>,
    ) -> io::Result<(Arc<dyn LineIo>, Option<Hold>)> {
        let key = (chip.to_owned(), line);
        let mut lines = self.lines.lock().map_err(poisoned)?;
        // Made only on success: a `Hold` dropped here would take the lock held above.
        let hold = || Hold {
            holders: Arc::clone(self),
            key: key.clone(),
            instance: holder.instance,
        };
        match lines.get_mut(&key) {
            Some(held) if held.device != holder.device => Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "line {line} of {chip} is in use by device {} on this node",
                    held.device
                ),
            )),
            Some(held) if held.direction == direction && held.settings == *settings => {
                if !held.instances.contains(&holder.instance) {
                    held.instances.push(holder.instance);
                }
                Ok((Arc::clone(&held.io), Some(hold())))
            }
            Some(_) => {
                drop(lines);
                Ok((request()?.into(), None))
            }
            None => {
                let io: Arc<dyn LineIo> = request()?.into();
                let hold = hold();
                lines.insert(
                    key,
                    Held {
                        device: Arc::clone(&holder.device),
                        direction,
                        settings: *settings,
                        io: Arc::clone(&io),
                        instances: vec![holder.instance],
                    },
                );
                Ok((io, Some(hold)))
            }
        }
    }
}

impl Hold {
    /// Whether this instance drives the line: it is the newest holding it.
    fn drives(&self) -> bool {
        self.holders.lines.lock().is_ok_and(|lines| {
            lines
                .get(&self.key)
                .is_some_and(|h| h.instances.last() == Some(&self.instance))
        })
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Ok(mut lines) = self.holders.lines.lock() else {
            return;
        };
        let emptied = lines.get_mut(&self.key).is_some_and(|h| {
            h.instances.retain(|i| *i != self.instance);
            h.instances.is_empty()
        });
        if emptied {
            // Releases the kernel's request, unless a guest call still borrows it.
            lines.remove(&self.key);
        }
    }
}

impl Capabilities {
    /// Requests the line that the grant `grant` names. The target is `chip:offset` or
    /// `chip:name`; a name is resolved through the chip (on a chip the policy allows),
    /// and the line it names is checked against the policy's line ranges before the
    /// line is requested.
    pub fn open_gpio(
        &mut self,
        grant: &str,
        direction: Direction,
        settings: &Settings,
    ) -> Result<Line, CapabilityError> {
        settings
            .check(direction)
            .map_err(CapabilityError::InvalidArgument)?;
        let g = self.authorize(grant, GrantKind::Gpio)?;
        let opened = self.request_gpio(grant, &g.target, direction, settings);
        match opened {
            Ok((io, hold)) => Ok(Line { io, hold }),
            Err(e) => {
                self.release();
                Err(e)
            }
        }
    }

    fn request_gpio(
        &self,
        grant: &str,
        target: &str,
        direction: Direction,
        settings: &Settings,
    ) -> Result<(Arc<dyn LineIo>, Option<Hold>), CapabilityError> {
        let backend = &self.backends().gpio;
        let (chip, line) = parse_gpio_target(target).map_err(CapabilityError::InvalidArgument)?;
        let offset = match line {
            LineRef::Offset(offset) => offset,
            LineRef::Name(name) => {
                let offset = backend.find_line(chip, name).map_err(super::io_error)?;
                self.policy()
                    .check(GrantKind::Gpio, &format!("{chip}:{offset}"))
                    .map_err(|why| {
                        CapabilityError::NotPermitted(format!(
                            "gpio grant {grant:?} ({target}, line {offset}) refused by node policy: {why}"
                        ))
                    })?;
                offset
            }
        };
        let request = || backend.request(chip, offset, direction, settings);
        match self.gpio_holder() {
            Some(holder) => self
                .backends()
                .gpio_holders
                .acquire(
                    &chip_path(chip),
                    offset,
                    holder,
                    direction,
                    settings,
                    request,
                )
                .map_err(super::io_error),
            None => request()
                .map(|io| (io.into(), None))
                .map_err(super::io_error),
        }
    }
}

impl Line {
    /// The line's level (active or not, after any active-low inversion).
    pub fn get(&self) -> Result<bool, CapabilityError> {
        self.io.get().map_err(super::io_error)
    }

    /// Drives an output line, if this instance is the newest of its device holding it:
    /// after a hot swap the old instance's writes (its `shutdown` levels) are refused.
    pub fn set(&self, active: bool) -> Result<(), CapabilityError> {
        if self.hold.as_ref().is_some_and(|h| !h.drives()) {
            return Err(CapabilityError::NotPermitted(
                "the line was handed over to a newer instance of this device".into(),
            ));
        }
        self.io.set(active).map_err(super::io_error)
    }

    /// Waits up to `timeout` for at most `max` edge events, on a blocking thread.
    pub async fn wait_edges(
        &self,
        timeout: Duration,
        max: usize,
    ) -> Result<Vec<EdgeEvent>, CapabilityError> {
        let io = Arc::clone(&self.io);
        tokio::task::spawn_blocking(move || io.wait_edges(timeout, max))
            .await
            .map_err(|e| CapabilityError::Io(format!("edge wait did not finish: {e}")))?
            .map_err(super::io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::{Backends, Limits, Policy, fixtures};

    fn caps(sim: SimBackend) -> Capabilities {
        let grants = [
            ("led", "gpiochip0:17"),
            ("button", "gpiochip0:4"),
            ("relay", "gpiochip0:relay1"),
            ("siren", "gpiochip0:siren"),
            ("ghost", "gpiochip0:nothing"),
        ]
        .map(|(name, target)| fixtures::grant(name, GrantKind::Gpio, target));
        let mut backends = Backends::real(true);
        backends.gpio = Arc::new(sim);
        let policy = Policy::from_yaml("gpio: ['gpiochip0 10-20']").unwrap();
        fixtures::caps(&grants, policy, Limits::default().max_handles, backends)
    }

    fn input() -> Settings {
        Settings::default()
    }

    #[test]
    fn fake_chip_granted_line_drives_the_chip() {
        let sim = SimBackend::default();
        let mut c = caps(sim.clone());
        let led = c.open_gpio("led", Direction::Output, &input()).unwrap();
        led.set(true).unwrap();
        assert!(sim.level("gpiochip0", 17));
        let read_back = c.open_gpio("led", Direction::Input, &input()).unwrap();
        assert!(read_back.get().unwrap());
        assert!(read_back.set(false).is_err(), "inputs cannot be driven");
    }

    #[test]
    fn fake_chip_line_outside_policy_is_refused_even_when_granted() {
        let mut c = caps(SimBackend::default());
        let err = c
            .open_gpio("button", Direction::Input, &input())
            .err()
            .unwrap();
        assert!(
            matches!(&err, CapabilityError::NotPermitted(m) if m.contains("gpiochip0:4")),
            "{err}"
        );
    }

    #[test]
    fn fake_chip_line_names_resolve_through_the_chip_and_then_meet_the_policy() {
        let sim = SimBackend::default();
        sim.name_line("gpiochip0", 12, "relay1");
        sim.name_line("gpiochip0", 3, "siren");
        let mut c = caps(sim.clone());
        let relay = c.open_gpio("relay", Direction::Output, &input()).unwrap();
        relay.set(true).unwrap();
        assert!(sim.level("gpiochip0", 12));

        let err = c
            .open_gpio("siren", Direction::Output, &input())
            .err()
            .unwrap();
        assert!(
            matches!(&err, CapabilityError::NotPermitted(m) if m.contains("line 3")),
            "a name resolving outside the policy's range is refused: {err}"
        );
        let err = c
            .open_gpio("ghost", Direction::Input, &input())
            .err()
            .unwrap();
        assert!(
            matches!(&err, CapabilityError::Io(m) if m.contains("no line named \"nothing\"")),
            "{err}"
        );
        assert_eq!(c.open_handles(), 1, "refusals hold no handle");
    }

    #[test]
    fn fake_chip_settings_that_do_not_fit_the_direction_are_refused_before_io() {
        let mut c = caps(SimBackend::default());
        for (direction, settings) in [
            (
                Direction::Output,
                Settings {
                    edges: Some(Edges::Both),
                    ..Settings::default()
                },
            ),
            (
                Direction::Output,
                Settings {
                    debounce: Some(Duration::from_millis(5)),
                    ..Settings::default()
                },
            ),
            (
                Direction::Input,
                Settings {
                    drive: Some(Drive::OpenDrain),
                    ..Settings::default()
                },
            ),
            (
                Direction::Input,
                Settings {
                    debounce: Some(MAX_DEBOUNCE + Duration::from_millis(1)),
                    ..Settings::default()
                },
            ),
        ] {
            let err = c.open_gpio("led", direction, &settings).err().unwrap();
            assert!(
                matches!(err, CapabilityError::InvalidArgument(_)),
                "{direction:?} {settings:?}: {err}"
            );
        }
        assert_eq!(c.open_handles(), 0);
    }

    #[test]
    fn fake_chip_active_low_inverts_levels_and_edge_kinds() {
        let sim = SimBackend::default();
        let mut c = caps(sim.clone());
        let low = Settings {
            active_low: true,
            ..Settings::default()
        };
        let led = c.open_gpio("led", Direction::Output, &low).unwrap();
        assert!(
            sim.level("gpiochip0", 17),
            "inactive is high when active-low"
        );
        led.set(true).unwrap();
        assert!(!sim.level("gpiochip0", 17));
        drop(led);

        let contact = c
            .open_gpio(
                "led",
                Direction::Input,
                &Settings {
                    edges: Some(Edges::Rising),
                    ..low
                },
            )
            .unwrap();
        sim.drive("gpiochip0", 17, true); // high: inactive, a falling edge, filtered out
        sim.drive("gpiochip0", 17, false); // low: active, rising
        assert!(contact.get().unwrap());
        let events = contact.io.wait_edges(Duration::ZERO, 8).unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].rising);
        assert_eq!((events[0].seqno, events[0].line_seqno), (1, 1));
    }

    #[test]
    fn fake_chip_edges_come_in_order_with_sequence_numbers_and_bounded_waits() {
        let sim = SimBackend::default();
        let mut c = caps(sim.clone());
        let both = Settings {
            edges: Some(Edges::Both),
            ..Settings::default()
        };
        let contact = c.open_gpio("led", Direction::Input, &both).unwrap();
        let started = Instant::now();
        let none = contact.io.wait_edges(Duration::from_millis(50), 8).unwrap();
        assert!(none.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(50));

        for i in 0..5 {
            sim.drive("gpiochip0", 17, i % 2 == 0);
        }
        let first = contact.io.wait_edges(Duration::from_secs(1), 3).unwrap();
        let rest = contact.io.wait_edges(Duration::from_secs(1), 8).unwrap();
        let all: Vec<_> = first.iter().chain(&rest).collect();
        assert_eq!(
            all.iter().map(|e| e.seqno).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(
            all.iter().map(|e| e.rising).collect::<Vec<_>>(),
            [true, false, true, false, true]
        );
        assert!(
            all.windows(2)
                .all(|w| w[0].timestamp_ns <= w[1].timestamp_ns)
        );

        let plain = c.open_gpio("led", Direction::Input, &input()).unwrap();
        assert!(
            plain.io.wait_edges(Duration::ZERO, 1).is_err(),
            "no edge detection asked"
        );
    }

    #[test]
    fn fake_chip_event_buffer_drops_the_oldest_and_the_seqno_gap_shows_it() {
        let sim = SimBackend::default();
        let mut c = caps(sim.clone());
        let both = Settings {
            edges: Some(Edges::Both),
            ..Settings::default()
        };
        let contact = c.open_gpio("led", Direction::Input, &both).unwrap();
        let total = EVENT_BUFFER + 10;
        for i in 0..total {
            sim.drive("gpiochip0", 17, i % 2 == 0);
        }
        let events = contact.io.wait_edges(Duration::ZERO, total).unwrap();
        assert_eq!(events.len(), EVENT_BUFFER);
        assert_eq!(events[0].seqno, 11, "the first ten were dropped");
        assert_eq!(events.last().unwrap().seqno as usize, total);
    }

    /// Two instances of one device (a hot swap), and another device, on one chip.
    fn device_caps(sim: &SimBackend) -> (Backends, [Capabilities; 3]) {
        let mut backends = Backends::real(true);
        backends.gpio = Arc::new(sim.clone());
        let grants = [fixtures::grant("led", GrantKind::Gpio, "gpiochip0:17")];
        let make = |device: &str| {
            let policy = Policy::from_yaml("gpio: ['gpiochip0 10-20']").unwrap();
            fixtures::caps(&grants, policy, 4, backends.clone()).for_device(device.into())
        };
        let caps = [make("ns/relay"), make("ns/relay"), make("ns/other")];
        (backends, caps)
    }

    #[test]
    fn fake_chip_a_line_held_by_one_device_is_refused_to_another_naming_it() {
        let sim = SimBackend::default();
        let (backends, [mut relay, _, mut other]) = device_caps(&sim);
        let held = relay.open_gpio("led", Direction::Output, &input()).unwrap();
        let err = other
            .open_gpio("led", Direction::Output, &input())
            .err()
            .unwrap();
        assert!(
            matches!(&err, CapabilityError::Io(m) if m.contains("in use by device ns/relay")),
            "{err}"
        );
        let err = other
            .open_gpio("led", Direction::Input, &input())
            .err()
            .unwrap();
        assert!(matches!(&err, CapabilityError::Io(_)), "inputs too: {err}");
        assert_eq!(other.open_handles(), 0, "refusals hold no handle");
        assert_eq!(
            backends.gpio_holders.held(),
            [("/dev/gpiochip0".to_owned(), 17, "ns/relay".to_owned())]
        );
        drop(held);
        assert!(backends.gpio_holders.held().is_empty());
        other
            .open_gpio("led", Direction::Output, &input())
            .expect("a released line is free for the next device");
    }

    #[test]
    fn fake_chip_a_new_instance_takes_the_line_over_and_the_old_one_can_no_longer_drive_it() {
        let sim = SimBackend::default();
        let (backends, [mut old, mut new, _]) = device_caps(&sim);
        let old_line = old.open_gpio("led", Direction::Output, &input()).unwrap();
        old_line.set(true).unwrap();
        // Counts how often the pin changes from here on: a takeover must not touch it.
        let watch = Settings {
            edges: Some(Edges::Both),
            ..input()
        };
        let probe = sim
            .request("gpiochip0", 17, Direction::Input, &watch)
            .unwrap();
        let new_line = new.open_gpio("led", Direction::Output, &input()).unwrap();
        assert!(
            sim.level("gpiochip0", 17),
            "the takeover kept the level: no new request, no reset to inactive"
        );
        new_line.set(true).unwrap();
        assert!(
            old_line.set(false).is_err(),
            "the old instance's shutdown level is refused once the new one holds the line"
        );
        drop(old_line);
        assert!(sim.level("gpiochip0", 17));
        assert_eq!(
            backends.gpio_holders.held().len(),
            1,
            "still held by the new one"
        );
        assert!(
            probe.wait_edges(Duration::ZERO, 8).unwrap().is_empty(),
            "the pin never changed across the takeover"
        );
        new_line.set(false).unwrap();
        assert!(!sim.level("gpiochip0", 17));
        drop(new_line);
        assert!(backends.gpio_holders.held().is_empty());
    }

    #[test]
    fn fake_chip_when_the_new_instance_goes_away_first_the_old_one_drives_again() {
        let sim = SimBackend::default();
        let (_, [mut old, mut new, _]) = device_caps(&sim);
        let old_line = old.open_gpio("led", Direction::Output, &input()).unwrap();
        let new_line = new.open_gpio("led", Direction::Output, &input()).unwrap();
        assert!(old_line.set(true).is_err());
        drop(new_line); // a swap rolled back: the old version keeps serving
        old_line.set(true).unwrap();
        assert!(sim.level("gpiochip0", 17));
    }

    #[tokio::test]
    async fn fake_chip_waiting_for_edges_does_not_block_the_runtime() {
        let sim = SimBackend::default();
        let mut c = caps(sim.clone());
        let contact = c
            .open_gpio(
                "led",
                Direction::Input,
                &Settings {
                    edges: Some(Edges::Rising),
                    ..Settings::default()
                },
            )
            .unwrap();
        let driver = {
            let sim = sim.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                sim.drive("gpiochip0", 17, true);
            })
        };
        let events = contact.wait_edges(Duration::from_secs(5), 4).await.unwrap();
        driver.await.unwrap();
        assert_eq!(events.len(), 1);
        assert!(events[0].rising);
    }
}
