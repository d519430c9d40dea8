//! Sharing the CPU between devices.
//!
//! Deadlines end one call; they do not stop a device from taking a core for most of
//! every second with calls that each stay under the deadline. Every guest call runs
//! inside [`Metered`], which times each step of the call (guest code and the host calls
//! it makes, since both run inside the step) and charges it to the device:
//!
//! - **Budget**: each device has a token bucket of CPU time (`budget` per second, up to
//!   `burst` saved). A device whose bucket is empty waits, off the executor, until it
//!   refills: it is throttled to its budget whatever it runs.
//! - **Strikes**: a device that empties its bucket in `strikes` one-second windows in a
//!   row is not having a busy moment; its call is ended with [`Exhausted`] and the
//!   supervisor treats that as a trap (backoff, then quarantine).
//! - **Lanes**: a call that has run longer than `slice` on the CPU is a long call, and so
//!   is every call of an instance whose last call was long; long calls take turns on
//!   `lanes` lanes (fewer than the executor's threads), one epoch tick at a time, so
//!   however many devices spin, short calls (a healthy poll, the API watches,
//!   `/healthz`) always find a free thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How the CPU is shared, from the limb's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuSettings {
    /// CPU time a device may use per second, sustained.
    pub budget: Duration,
    /// CPU time a device may save up and spend at once (a slow start, a big reply).
    pub burst: Duration,
    /// One-second windows in a row with an empty bucket after which the call ends.
    pub strikes: u32,
    /// CPU time after which a call counts as long and queues for a lane.
    pub slice: Duration,
    /// Long calls running at once, limb-wide.
    pub lanes: usize,
}

impl Default for CpuSettings {
    fn default() -> Self {
        Self {
            budget: Duration::from_millis(250),
            burst: Duration::from_secs(1),
            strikes: 5,
            slice: Duration::from_millis(5),
            lanes: default_lanes(),
        }
    }
}

/// Half the machine's threads, at least one: the other half stays free for short calls
/// and the limb's own work.
pub fn default_lanes() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The limb-wide part: the lanes long calls share.
#[derive(Debug)]
pub struct Scheduler {
    settings: CpuSettings,
    lanes: Arc<Semaphore>,
}

impl Scheduler {
    pub fn new(settings: CpuSettings) -> Self {
        let lanes = Arc::new(Semaphore::new(settings.lanes.max(1)));
        Self { settings, lanes }
    }

    pub fn settings(&self) -> &CpuSettings {
        &self.settings
    }

    /// A fresh account for one instance, with a full bucket.
    pub fn account(&self, now: Instant) -> CpuAccount {
        CpuAccount::new(&self.settings, now)
    }
}

/// A device kept emptying its CPU budget.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "CPU budget exhausted: used more than {budget:?} of CPU per second for {strikes} s in a row"
)]
pub struct Exhausted {
    pub budget: Duration,
    pub strikes: u32,
}

/// What the account says about the next step of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Run the step.
    Run,
    /// The bucket is empty: wait this long before running.
    Wait(Duration),
    /// Too many windows in a row with an empty bucket: end the call.
    Exhausted,
}

/// One instance's CPU use: the bucket, the strike count and the totals for metrics.
#[derive(Clone, Debug)]
pub struct CpuAccount {
    budget: Duration,
    burst: Duration,
    max_strikes: u32,
    /// Saved CPU time; negative after a step overran what was left.
    tokens: f64,
    refilled_at: Instant,
    window_start: Instant,
    empty_in_window: bool,
    strikes: u32,
    used: Duration,
    throttled: u64,
    /// The last call ran past the slice: the next one starts in a lane.
    long: bool,
}

const WINDOW: Duration = Duration::from_secs(1);

impl CpuAccount {
    fn new(s: &CpuSettings, now: Instant) -> Self {
        Self {
            budget: s.budget,
            burst: s.burst.max(s.budget),
            max_strikes: s.strikes.max(1),
            tokens: s.burst.max(s.budget).as_secs_f64(),
            refilled_at: now,
            window_start: now,
            empty_in_window: false,
            strikes: 0,
            used: Duration::ZERO,
            throttled: 0,
            long: false,
        }
    }

    /// Decides whether the next step may run at `now`.
    pub fn verdict(&mut self, now: Instant) -> Verdict {
        self.refill(now);
        self.roll(now);
        if self.strikes >= self.max_strikes {
            return Verdict::Exhausted;
        }
        if self.tokens > 0.0 {
            return Verdict::Run;
        }
        self.empty_in_window = true;
        self.throttled += 1;
        // Wait until a tenth of a second's budget is back, so a throttled device runs
        // in a few steps per second rather than one per tick.
        let rate = self.budget.as_secs_f64();
        if rate <= 0.0 {
            return Verdict::Exhausted;
        }
        let want = rate / 10.0 - self.tokens;
        Verdict::Wait(Duration::from_secs_f64(want / rate))
    }

    /// Charges one step's CPU time.
    pub fn charge(&mut self, spent: Duration) {
        self.tokens -= spent.as_secs_f64();
        self.used += spent;
        if self.tokens <= 0.0 {
            self.empty_in_window = true;
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.budget.as_secs_f64())
            .min(self.burst.as_secs_f64());
        self.refilled_at = now;
    }

    /// Closes the windows that ended before `now`: one with an empty bucket is a
    /// strike, one without forgives them all.
    fn roll(&mut self, now: Instant) {
        let passed = now.saturating_duration_since(self.window_start);
        if passed < WINDOW {
            return;
        }
        if self.empty_in_window && passed < 2 * WINDOW {
            self.strikes += 1;
        } else {
            // Either the last window was fine, or a whole window passed without a
            // step at all: the device was idle.
            self.strikes = 0;
        }
        self.empty_in_window = false;
        self.window_start = now;
    }

    pub fn exhausted(&self) -> Exhausted {
        Exhausted {
            budget: self.budget,
            strikes: self.strikes,
        }
    }

    /// CPU time charged so far.
    pub fn used(&self) -> Duration {
        self.used
    }

    /// Steps that had to wait for the bucket.
    pub fn throttled(&self) -> u64 {
        self.throttled
    }
}

/// Runs `call` under `account` and `scheduler`.
pub fn metered<'a, F: Future>(
    scheduler: &'a Scheduler,
    account: &'a mut CpuAccount,
    call: F,
) -> Metered<'a, F> {
    Metered {
        call: Box::pin(call),
        scheduler,
        account,
        on_cpu: Duration::ZERO,
        wait: None,
        acquire: None,
    }
}

type Acquire = Pin<
    Box<dyn Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>> + Send + Sync>,
>;

/// A guest call charged to its device; see the module documentation.
pub struct Metered<'a, F: Future> {
    call: Pin<Box<F>>,
    scheduler: &'a Scheduler,
    account: &'a mut CpuAccount,
    /// CPU time of this call so far.
    on_cpu: Duration,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    acquire: Option<Acquire>,
}

impl<F: Future> Future for Metered<'_, F> {
    type Output = Result<F::Output, Exhausted>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            if let Some(wait) = this.wait.as_mut() {
                ready!(wait.as_mut().poll(cx));
                this.wait = None;
            }
            match this.account.verdict(Instant::now()) {
                Verdict::Run => break,
                Verdict::Exhausted => return Poll::Ready(Err(this.account.exhausted())),
                Verdict::Wait(d) => this.wait = Some(Box::pin(tokio::time::sleep(d))),
            }
        }
        let slice = this.scheduler.settings.slice;
        let mut _lane = None;
        if this.on_cpu >= slice || this.account.long {
            let acquire = this
                .acquire
                .get_or_insert_with(|| Box::pin(this.scheduler.lanes.clone().acquire_owned()));
            // The semaphore is never closed; if it were, run without a lane.
            _lane = ready!(acquire.as_mut().poll(cx)).ok();
            this.acquire = None;
        }
        let started = Instant::now();
        let out = this.call.as_mut().poll(cx);
        let spent = started.elapsed();
        this.on_cpu += spent;
        this.account.charge(spent);
        if out.is_ready() {
            this.account.long = this.on_cpu >= slice;
        }
        out.map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CpuSettings {
        CpuSettings {
            budget: Duration::from_millis(100),
            burst: Duration::from_millis(200),
            strikes: 3,
            slice: Duration::from_millis(20),
            lanes: 1,
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// A scripted device, one step a row: at `.0` ms it spends `.1` ms if allowed, and
    /// the account's verdict must be `.2`.
    fn run(steps: &[(u64, u64, &str)]) {
        let t0 = Instant::now();
        let mut a = Scheduler::new(settings()).account(t0);
        for (i, &(at, spend, expect)) in steps.iter().enumerate() {
            let v = a.verdict(t0 + MS(at));
            let got = match v {
                Verdict::Run => {
                    a.charge(MS(spend));
                    "run"
                }
                Verdict::Wait(_) => "wait",
                Verdict::Exhausted => "exhausted",
            };
            assert_eq!(got, expect, "step {i} at {at} ms: {v:?} {a:?}");
        }
    }

    #[test]
    fn a_light_device_always_runs() {
        let steps: Vec<(u64, u64, &str)> = (0..50).map(|i| (i * 100, 2, "run")).collect();
        run(&steps);
    }

    #[test]
    fn one_heavy_start_is_paid_from_the_burst_and_forgiven() {
        run(&[
            (0, 190, "run"),
            (200, 5, "run"),
            (1200, 5, "run"),
            (2200, 5, "run"),
            (3200, 5, "run"),
            (4200, 5, "run"),
        ]);
    }

    #[test]
    fn an_empty_bucket_waits_for_the_refill() {
        run(&[(0, 250, "run"), (10, 10, "wait"), (600, 10, "run")]);
    }

    #[test]
    fn emptying_the_bucket_window_after_window_ends_in_exhaustion() {
        // Spends everything it gets: every window sees an empty bucket.
        run(&[
            (0, 250, "run"),
            (5, 0, "wait"),
            (1001, 100, "run"),
            (1005, 0, "wait"),
            (2001, 100, "run"),
            (2005, 0, "wait"),
            (3001, 0, "exhausted"),
        ]);
    }

    #[test]
    fn an_idle_second_forgives_strikes() {
        run(&[
            (0, 250, "run"),
            (5, 0, "wait"),
            (1001, 100, "run"),
            (1005, 0, "wait"),
            // One strike so far; then nothing runs for over a second.
            (4000, 10, "run"),
            (5001, 250, "run"),
            (5005, 0, "wait"),
            (6001, 100, "run"),
            (6005, 0, "wait"),
            (7001, 100, "run"),
        ]);
    }

    #[test]
    fn a_wait_is_long_enough_for_a_tenth_of_the_budget() {
        let t0 = Instant::now();
        let mut a = Scheduler::new(settings()).account(t0);
        a.charge(MS(200));
        let Verdict::Wait(d) = a.verdict(t0) else {
            panic!("an empty bucket waits")
        };
        assert!(d.abs_diff(MS(100)) < MS(1), "{d:?}");
        assert_eq!(a.throttled(), 1);
        assert_eq!(a.used(), MS(200));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_metered_call_returns_its_output_and_is_charged() {
        let sched = Scheduler::new(settings());
        let mut acct = sched.account(Instant::now());
        let out = metered(&sched, &mut acct, async {
            tokio::task::yield_now().await;
            std::thread::sleep(MS(5));
            7
        })
        .await;
        assert_eq!(out, Ok(7));
        assert!(acct.used() >= MS(5));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spinning_call_ends_exhausted() {
        let mut s = settings();
        s.strikes = 2;
        let sched = Scheduler::new(s);
        let mut acct = sched.account(Instant::now());
        let spin = async {
            loop {
                std::thread::sleep(MS(5));
                tokio::task::yield_now().await;
            }
        };
        let out = tokio::time::timeout(Duration::from_secs(10), metered(&sched, &mut acct, spin))
            .await
            .expect("ended by the budget, not the timeout");
        let err = out.unwrap_err();
        assert_eq!(err.strikes, 2);
        assert!(err.to_string().contains("CPU budget exhausted"), "{err}");
        // Throttled to about its budget meanwhile: at most burst + budget per window.
        assert!(acct.used() < MS(700), "{:?}", acct.used());
    }
}
