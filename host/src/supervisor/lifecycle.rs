//! The lifecycle decisions of one device, as pure steps: what a failed call, a poll, a
//! link change or a new adaptor version means for retries, quarantine, probation and
//! rollback. Each step takes the state and what happened (with the time and a jitter
//! sample passed in) and returns what to do; the supervisor task carries it out through
//! a driver. Nothing here calls an adaptor, reads a clock or writes a status.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::driver::CallError;
use super::restart::{Decision, RestartPolicy};
use crate::bindings::AdaptorError;

/// Successful polls after which an instance's earlier traps are forgiven.
pub const STABLE_AFTER_POLLS: u32 = 10;

/// How long a device must go without spending its whole CPU budget before earlier
/// exhaustions are forgiven. Good polls do not forgive them: a throttled device still
/// completes polls, slowly, while it takes its whole budget.
pub const EXHAUSTION_FORGIVEN_AFTER: Duration = Duration::from_secs(300);

/// Why a device is not being started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// The spec or grants are wrong; waits for the link to change.
    Spec(String),
    /// Too many traps; waits for the link or adaptor to change.
    Quarantined(String),
}

/// When a step happens: the time, and a uniform sample in [0, 1) for the backoff's jitter.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub now: Instant,
    pub jitter: f64,
}

/// What a failed start or a dead instance leads to.
#[derive(Clone, Debug, PartialEq)]
pub enum AfterFailure {
    /// The adaptor refused the spec or a grant: retrying cannot help until the link
    /// changes, so the device waits (blocked on the spec).
    Blocked(String),
    /// Start again after `delay`; `trapped` says whether the instance died.
    Retry { delay: Duration, trapped: bool },
    /// Too many traps or CPU exhaustions in a row: the device waits for a change of the
    /// link or the adaptor.
    Quarantined { why: String, trapped: bool },
}

/// What a poll's result leads to; `T` is what the poll returned.
#[derive(Clone, Debug)]
pub enum AfterPoll<T> {
    /// A status came back; `commit` ends the probation of the previous version.
    Healthy { value: T, commit: bool },
    /// The adaptor returned an error; the instance keeps serving.
    Unhealthy(CallError),
    /// The new version died on its first poll: the previous one takes the device back
    /// at once and polls (the new version's digest is refused from now on).
    Revert(CallError),
    /// The instance died.
    Failed(CallError, AfterFailure),
}

/// What a changed DeviceLink leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterUpdate {
    /// Another adaptor or model: stop the instance and start afresh.
    RestartFresh,
    /// Other grants: handles are bound to the old ones, so carry the state to a new
    /// instance.
    RestartWithState,
    /// Same adaptor, model and grants: hand the running instance the new spec.
    Reconfigure,
    /// Nothing runs: the next start uses the new link.
    Nothing,
}

/// What an offered adaptor version leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterOffer {
    /// The version runs already, or failed to take over before.
    Ignore,
    /// Nothing runs (backoff, quarantine, not started): the next start uses it.
    StartOnNew,
    /// Move the running device to it, keeping the old one until it proves itself.
    TakeOver,
}

/// A step of moving a running device to a new version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapStep {
    Connect,
    Snapshot,
    Restore,
    Configure,
}

/// What a failed swap step leads to.
#[derive(Clone, Debug, PartialEq)]
pub enum AfterSwapFailure {
    /// The new version is refused (never offered again until the link changes) and the
    /// old one keeps serving; the message says why.
    Refuse(String),
    /// The old instance died in its snapshot: the new version goes on without state.
    ContinueWithoutState,
    /// The old instance is gone and the new one failed: the device is on the new
    /// version now, and failed.
    Failed(AfterFailure),
}

/// The counters and flags behind the decisions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lifecycle {
    /// Failed starts and dead instances in a row (for the backoff delay).
    failures: u32,
    /// Traps without a stable instance in between (for quarantine); an unreachable
    /// device is never quarantined.
    traps_in_row: u32,
    /// Successful polls of the current instance.
    good_polls: u32,
    /// Instances stopped for spending their CPU budget, and when the last one was.
    exhaustions: u32,
    last_exhaustion: Option<Instant>,
    retry_at: Option<Instant>,
    blocked: Option<Blocked>,
    /// Adaptor versions that failed to take over this device; not retried.
    refused: HashSet<String>,
}

impl Lifecycle {
    pub fn blocked(&self) -> Option<&Blocked> {
        self.blocked.as_ref()
    }

    /// Whether a device with nothing running should start now; clears the retry time
    /// when it should.
    pub fn start_due(&mut self, running: bool, now: Instant) -> bool {
        let due = !running && self.blocked.is_none() && self.retry_at.is_none_or(|t| t <= now);
        if due {
            self.retry_at = None;
        }
        due
    }

    /// When the task must wake next: the next poll while an instance runs (`None` for
    /// a device that is never polled), else the retry time unless the device is blocked.
    pub fn wake(&self, running: bool, next_poll: Option<Instant>) -> Option<Instant> {
        if running {
            next_poll
        } else if self.blocked.is_none() {
            self.retry_at
        } else {
            None
        }
    }

    /// The grants cannot be resolved or the node policy refuses one.
    pub fn grants_refused(&mut self, why: String) -> Blocked {
        let b = Blocked::Spec(why);
        self.blocked = Some(b.clone());
        b
    }

    /// A start failed or an instance died with `err`.
    pub fn failed(&mut self, policy: &RestartPolicy, err: &CallError, at: Clock) -> AfterFailure {
        let msg = err.to_string();
        if let CallError::Adaptor(AdaptorError::InvalidSpec(_) | AdaptorError::NotPermitted(_)) =
            err
        {
            self.blocked = Some(Blocked::Spec(msg.clone()));
            return AfterFailure::Blocked(msg);
        }
        self.failures = self.failures.saturating_add(1);
        let trapped = err.is_trap();
        if trapped {
            self.traps_in_row = self.traps_in_row.saturating_add(1);
        }
        self.good_polls = 0;
        if matches!(err, CallError::CpuExhausted(_)) {
            if self
                .last_exhaustion
                .is_some_and(|t| at.now.duration_since(t) > EXHAUSTION_FORGIVEN_AFTER)
            {
                self.exhaustions = 0;
            }
            self.exhaustions = self.exhaustions.saturating_add(1);
            self.last_exhaustion = Some(at.now);
        }
        let strikes = self.traps_in_row.max(self.exhaustions);
        let decision = if trapped {
            policy.decide(strikes, at.jitter)
        } else {
            Decision::RetryAfter(policy.delay(self.failures, at.jitter))
        };
        match decision {
            Decision::RetryAfter(delay) => {
                self.retry_at = Some(at.now + delay);
                AfterFailure::Retry { delay, trapped }
            }
            Decision::Quarantine => {
                let why = format!(
                    "quarantined after {strikes} traps in a row (last: {msg}); change the DeviceLink or the adaptor to retry"
                );
                self.blocked = Some(Blocked::Quarantined(why.clone()));
                AfterFailure::Quarantined { why, trapped }
            }
        }
    }

    /// A poll ended with `result`; `probation` says whether the previous version is
    /// still kept, `digest` is the polled version's.
    pub fn polled<T>(
        &mut self,
        policy: &RestartPolicy,
        result: Result<T, CallError>,
        probation: bool,
        digest: &str,
        at: Clock,
    ) -> AfterPoll<T> {
        match result {
            Ok(value) => {
                self.failures = 0;
                self.good_polls = self.good_polls.saturating_add(1);
                // An instance must prove itself before its trap record is forgiven, so
                // a device that traps every few polls still ends in quarantine.
                if self.good_polls >= STABLE_AFTER_POLLS {
                    self.traps_in_row = 0;
                }
                AfterPoll::Healthy {
                    value,
                    commit: probation,
                }
            }
            Err(err @ CallError::Adaptor(_)) => AfterPoll::Unhealthy(err),
            Err(err) if probation => {
                self.refused.insert(digest.to_owned());
                AfterPoll::Revert(err)
            }
            Err(err) => {
                let after = self.failed(policy, &err, at);
                AfterPoll::Failed(err, after)
            }
        }
    }

    /// The DeviceLink changed: every earlier verdict is void.
    pub fn link_changed(
        &mut self,
        identity_changed: bool,
        grants_changed: bool,
        running: bool,
    ) -> AfterUpdate {
        self.blocked = None;
        self.failures = 0;
        self.traps_in_row = 0;
        self.exhaustions = 0;
        self.retry_at = None;
        self.refused.clear();
        if identity_changed {
            AfterUpdate::RestartFresh
        } else if grants_changed {
            AfterUpdate::RestartWithState
        } else if running {
            AfterUpdate::Reconfigure
        } else {
            AfterUpdate::Nothing
        }
    }

    /// Handing the running instance a changed spec failed; `None` while it still serves.
    pub fn reconfigure_failed(
        &mut self,
        policy: &RestartPolicy,
        err: &CallError,
        at: Clock,
    ) -> Option<AfterFailure> {
        err.is_trap().then(|| self.failed(policy, err, at))
    }

    /// A version with `digest` is offered while `current` runs (or would run).
    pub fn offered(&mut self, digest: &str, current: &str, running: bool) -> AfterOffer {
        if digest == current || self.refused.contains(digest) {
            return AfterOffer::Ignore;
        }
        if running {
            return AfterOffer::TakeOver;
        }
        self.blocked = None;
        self.failures = 0;
        self.traps_in_row = 0;
        self.exhaustions = 0;
        self.retry_at = None;
        AfterOffer::StartOnNew
    }

    /// A step of a swap to the version with `digest` failed with `err`; `old_alive`
    /// says whether the previous instance still serves.
    pub fn swap_failed(
        &mut self,
        policy: &RestartPolicy,
        step: SwapStep,
        err: &CallError,
        old_alive: bool,
        digest: &str,
        at: Clock,
    ) -> AfterSwapFailure {
        let why = match step {
            SwapStep::Connect => err.to_string(),
            SwapStep::Snapshot if err.is_trap() => return AfterSwapFailure::ContinueWithoutState,
            SwapStep::Snapshot => format!("snapshot failed: {err}"),
            SwapStep::Restore => format!("restore failed: {err}"),
            SwapStep::Configure => format!("configure failed: {err}"),
        };
        if !old_alive && step != SwapStep::Connect {
            return AfterSwapFailure::Failed(self.failed(policy, err, at));
        }
        self.refused.insert(digest.to_owned());
        AfterSwapFailure::Refuse(why)
    }
}

#[cfg(test)]
mod tests;
