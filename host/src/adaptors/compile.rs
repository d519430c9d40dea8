//! The compile pool: compiling is the one thing the limb does with a component before any
//! sandbox applies to it, so every compile in the process takes a slot here, is bounded
//! in time, and has the process's memory growth measured while it runs.
//!
//! One slot by default, so compiling takes at most one core from the running devices.
//! A component of at most [`SMALL_COMPONENT_BYTES`] that finds every slot busy takes the
//! small lane instead: a compile cannot be interrupted, so ordering the queue would still
//! leave a small adaptor waiting out whatever big compile holds the slot (up to the
//! policy's compile timeout), while the small lane costs at most one small compile's
//! worth of a second core.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Concurrent compiles by default.
pub const DEFAULT_SLOTS: usize = 1;

/// Components up to this size may use the small lane: every Rust, C and Zig adaptor we
/// ship (the largest is 380 KiB) compiles in well under a second.
pub const SMALL_COMPONENT_BYTES: usize = 1 << 20;

/// How often the process's resident memory is sampled while a compile runs.
const RSS_SAMPLE: Duration = Duration::from_millis(50);

/// The compile slots of one process.
pub struct Pool {
    slots: Arc<Semaphore>,
    small: Arc<Semaphore>,
}

impl Default for Pool {
    fn default() -> Self {
        Self::new(DEFAULT_SLOTS)
    }
}

impl Pool {
    /// A pool of `slots` compiles (at least one) plus the small lane.
    pub fn new(slots: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            small: Arc::new(Semaphore::new(1)),
        }
    }

    /// Waits for a slot for a component of `len` bytes: first come first served, and a
    /// small one takes whichever of a slot and the small lane frees first.
    /// (The semaphores are never closed, so this does not fail in practice.)
    pub async fn acquire(&self, len: usize) -> Result<OwnedSemaphorePermit, Failed> {
        let permit = if len <= SMALL_COMPONENT_BYTES {
            tokio::select! {
                biased;
                p = self.slots.clone().acquire_owned() => p,
                p = self.small.clone().acquire_owned() => p,
            }
        } else {
            self.slots.clone().acquire_owned().await
        };
        permit.map_err(|_| Failed::Internal("the compile pool is closed".into()))
    }
}

/// Why [`run`] has no result.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failed {
    /// It ran past its time; its result is discarded.
    #[error("ran past its time")]
    Overrun,
    /// The work panicked (a compiler bug), or the pool is gone.
    #[error("{0}")]
    Internal(String),
}

/// What a finished compile cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub elapsed: Duration,
    /// Resident memory of the whole process before the compile, in bytes.
    pub rss_before: Option<u64>,
    /// Largest growth of the process's resident memory seen while the compile ran, in
    /// bytes. Process-wide: it includes whatever else grew meanwhile (devices, a small
    /// compile beside a big one) and misses memory the allocator reused.
    pub rss_growth: Option<u64>,
}

const RUNNING: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

/// Runs `work` on the blocking pool, holding `permit` until it really returns, and waits
/// for it at most `timeout`. `work` gets `keep`: called once its result is ready, it says
/// whether the result is still wanted (then the caller gets it) or was abandoned (then
/// `work` must not publish it anywhere, the compile cache included). An abandoned `work`
/// runs to its end in the background, still holding its slot, so abandoned compiles
/// cannot pile up.
pub async fn run<T, F>(
    permit: OwnedSemaphorePermit,
    timeout: Duration,
    work: F,
) -> Result<(T, Cost), Failed>
where
    T: Send + 'static,
    F: FnOnce(&dyn Fn() -> bool) -> T + Send + 'static,
{
    let state = Arc::new(AtomicU8::new(RUNNING));
    let rss_before = rss();
    let started = Instant::now();
    let mut task = tokio::task::spawn_blocking({
        let state = state.clone();
        move || {
            let _permit = permit;
            let keep = || {
                state
                    .compare_exchange(RUNNING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            };
            let out = work(&keep);
            if state.load(Ordering::Acquire) == ABANDONED {
                tracing::warn!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "an abandoned compile has ended; its result was discarded"
                );
            }
            out
        }
    });
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut sample = tokio::time::interval(RSS_SAMPLE);
    let mut peak = rss_before;
    let mut overdue = false;
    let joined = loop {
        tokio::select! {
            joined = &mut task => break joined,
            _ = sample.tick() => peak = peak.max(rss()),
            () = &mut deadline, if !overdue => {
                overdue = true;
                if state
                    .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Err(Failed::Overrun);
                }
                // Finished in time and being handed over (written to the cache): wait.
            }
        }
    };
    peak = peak.max(rss());
    let cost = Cost {
        elapsed: started.elapsed(),
        rss_before,
        rss_growth: rss_before.zip(peak).map(|(b, p)| p.saturating_sub(b)),
    };
    joined
        .map(|out| (out, cost))
        .map_err(|e| Failed::Internal(e.to_string()))
}

/// The process's resident memory in bytes (`VmRSS`, which the kernel gives in kB, so no
/// page size is assumed), or `None` where `/proc` does not say.
pub fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tlimb\nVmHWM:\t  9000 kB\nVmRSS:\t  8192 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(8192 * 1024));
        assert_eq!(parse_vm_rss("Name:\tlimb\n"), None);
        assert!(rss().is_some_and(|b| b > 0));
    }

    #[tokio::test]
    async fn a_small_component_is_not_held_behind_a_big_compile() {
        let pool = Pool::new(1);
        let big = pool.acquire(SMALL_COMPONENT_BYTES + 1).await.unwrap();
        let small = tokio::time::timeout(Duration::from_secs(1), pool.acquire(1000)).await;
        assert!(small.is_ok(), "the small lane is free");
        let another_big = tokio::time::timeout(
            Duration::from_millis(50),
            pool.acquire(SMALL_COMPONENT_BYTES + 1),
        )
        .await;
        assert!(
            another_big.is_err(),
            "a second big compile waits for the slot"
        );
        drop(big);
        let another_big = tokio::time::timeout(
            Duration::from_secs(1),
            pool.acquire(SMALL_COMPONENT_BYTES + 1),
        )
        .await;
        assert!(another_big.is_ok());
    }

    #[tokio::test]
    async fn a_result_in_time_is_kept() {
        let pool = Pool::new(1);
        let permit = pool.acquire(10).await.unwrap();
        let (out, cost) = run(permit, Duration::from_secs(5), |keep| keep().then_some(7))
            .await
            .unwrap();
        assert_eq!(out, Some(7));
        assert!(cost.elapsed < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_overrun_is_abandoned_and_keeps_its_slot_until_it_ends() {
        let pool = Arc::new(Pool::new(1));
        let published = Arc::new(AtomicBool::new(false));
        let permit = pool.acquire(SMALL_COMPONENT_BYTES + 1).await.unwrap();
        let started = Instant::now();
        let outcome = run(permit, Duration::from_millis(50), {
            let published = published.clone();
            move |keep| {
                std::thread::sleep(Duration::from_millis(1000));
                if keep() {
                    published.store(true, Ordering::SeqCst);
                }
            }
        })
        .await;
        assert_eq!(outcome.unwrap_err(), Failed::Overrun);
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "not waited out"
        );
        // The abandoned work still holds the slot: the next big compile waits for it.
        let next = pool.acquire(SMALL_COMPONENT_BYTES + 1).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(1000));
        assert!(
            !published.load(Ordering::SeqCst),
            "an abandoned result is not published"
        );
        drop(next);
    }
}
