//! The lifecycle as tables: each error the host can see from a call, at each step, and
//! whole lives (traps to quarantine, exhaustion strikes, swaps, link changes) as
//! sequences of events with the decision expected after each.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::bindings::AdaptorError as A;

const MS: Duration = Duration::from_millis(1);

fn policy() -> RestartPolicy {
    RestartPolicy {
        base: 100 * MS,
        max: Duration::from_secs(1),
        quarantine_after: 3,
    }
}

/// Every way a call can fail, as the supervisor sees it: each WIT `adaptor-error`
/// variant, a trap, and CPU exhaustion.
fn err(name: &str) -> CallError {
    let m = || "x".to_owned();
    match name {
        "invalid-spec" => CallError::Adaptor(A::InvalidSpec(m())),
        "not-permitted" => CallError::Adaptor(A::NotPermitted(m())),
        "unreachable" => CallError::Adaptor(A::Unreachable(m())),
        "protocol" => CallError::Adaptor(A::Protocol(m())),
        "incompatible-state" => CallError::Adaptor(A::IncompatibleState(m())),
        "internal" => CallError::Adaptor(A::Internal(m())),
        "trap" => CallError::Trap(m()),
        "cpu" => CallError::CpuExhausted(m()),
        other => CallError::Trap(format!("unknown error name {other} in a test table")),
    }
}

const EVERY_ERROR: [&str; 8] = [
    "invalid-spec",
    "not-permitted",
    "unreachable",
    "protocol",
    "incompatible-state",
    "internal",
    "trap",
    "cpu",
];

fn describe_failure(a: &AfterFailure) -> String {
    match a {
        AfterFailure::Blocked(m) => format!("blocked: {m}"),
        AfterFailure::Retry { delay, trapped } => format!(
            "retry {}ms{}",
            delay.as_millis(),
            if *trapped { " trap" } else { "" }
        ),
        AfterFailure::Quarantined { trapped, .. } => {
            format!("quarantined{}", if *trapped { " trap" } else { "" })
        }
    }
}

fn describe_poll(a: &AfterPoll<()>) -> String {
    match a {
        AfterPoll::Healthy { commit: true, .. } => "healthy, commit".into(),
        AfterPoll::Healthy { commit: false, .. } => "healthy".into(),
        AfterPoll::Unhealthy(e) => format!("unhealthy: {e}"),
        AfterPoll::Revert(e) => format!("revert: {e}"),
        AfterPoll::Failed(_, f) => describe_failure(f),
    }
}

fn describe_swap(a: &AfterSwapFailure) -> String {
    match a {
        AfterSwapFailure::Refuse(why) => format!("refuse: {why}"),
        AfterSwapFailure::ContinueWithoutState => "continue without state".into(),
        AfterSwapFailure::Failed(f) => format!("failed, {}", describe_failure(f)),
    }
}

#[test]
fn a_failure_of_each_kind() {
    let cases = [
        // (error, decision on a fresh device)
        ("invalid-spec", "blocked: invalid spec: x"),
        ("not-permitted", "blocked: not permitted: x"),
        ("unreachable", "retry 100ms"),
        ("protocol", "retry 100ms"),
        ("incompatible-state", "retry 100ms"),
        ("internal", "retry 100ms"),
        ("trap", "retry 100ms trap"),
        ("cpu", "retry 100ms trap"),
    ];
    assert_eq!(cases.len(), EVERY_ERROR.len());
    let t0 = Instant::now();
    for (name, want) in cases {
        let mut life = Lifecycle::default();
        let got = life.failed(
            &policy(),
            &err(name),
            Clock {
                now: t0,
                jitter: 1.0,
            },
        );
        assert_eq!(describe_failure(&got), want, "{name}");
        let blocked = want.starts_with("blocked");
        assert_eq!(life.blocked().is_some(), blocked, "{name}");
        // Blocked waits for a change; otherwise the retry is due after the delay.
        assert_eq!(
            life.wake(false, None),
            (!blocked).then_some(t0 + 100 * MS),
            "{name}"
        );
    }
}

#[test]
fn a_poll_ending_in_each_kind_of_error() {
    let cases = [
        // (error, on probation, decision)
        ("invalid-spec", false, "unhealthy: invalid spec: x"),
        ("not-permitted", false, "unhealthy: not permitted: x"),
        ("unreachable", false, "unhealthy: device unreachable: x"),
        ("protocol", false, "unhealthy: protocol error: x"),
        (
            "incompatible-state",
            false,
            "unhealthy: incompatible state: x",
        ),
        ("internal", false, "unhealthy: adaptor error: x"),
        ("trap", false, "retry 100ms trap"),
        ("cpu", false, "retry 100ms trap"),
        // On probation an adaptor error is still only unhealthy; a dead instance
        // hands the device back to the previous version.
        ("invalid-spec", true, "unhealthy: invalid spec: x"),
        ("not-permitted", true, "unhealthy: not permitted: x"),
        ("unreachable", true, "unhealthy: device unreachable: x"),
        ("protocol", true, "unhealthy: protocol error: x"),
        (
            "incompatible-state",
            true,
            "unhealthy: incompatible state: x",
        ),
        ("internal", true, "unhealthy: adaptor error: x"),
        ("trap", true, "revert: trapped: x"),
        ("cpu", true, "revert: stopped: x"),
    ];
    let at = Clock {
        now: Instant::now(),
        jitter: 1.0,
    };
    for (name, probation, want) in cases {
        let mut life = Lifecycle::default();
        let got = life.polled(&policy(), Err(err(name)), probation, "new", at);
        assert_eq!(describe_poll(&got), want, "{name} probation={probation}");
        // A reverted version is refused from then on; nothing else is.
        let refused = want.starts_with("revert");
        assert_eq!(
            life.offered("new", "old", true) == AfterOffer::Ignore,
            refused,
            "{name} probation={probation}"
        );
    }
}

#[test]
fn a_reconfigure_ending_in_each_kind_of_error() {
    let cases = [
        // (error, decision): an adaptor error keeps the instance serving (even a
        // refused spec: the running one still has the previous spec).
        ("invalid-spec", None),
        ("not-permitted", None),
        ("unreachable", None),
        ("protocol", None),
        ("incompatible-state", None),
        ("internal", None),
        ("trap", Some("retry 100ms trap")),
        ("cpu", Some("retry 100ms trap")),
    ];
    assert_eq!(cases.len(), EVERY_ERROR.len());
    let at = Clock {
        now: Instant::now(),
        jitter: 1.0,
    };
    for (name, want) in cases {
        let mut life = Lifecycle::default();
        let got = life.reconfigure_failed(&policy(), &err(name), at);
        assert_eq!(
            got.as_ref().map(describe_failure).as_deref(),
            want,
            "{name}"
        );
    }
}

#[test]
fn a_swap_step_ending_in_each_kind_of_error() {
    use SwapStep::{Configure, Connect, Restore, Snapshot};
    let cases = [
        // (step, error, old instance alive, decision)
        (Connect, "internal", true, "refuse: adaptor error: x"),
        (Connect, "trap", true, "refuse: trapped: x"),
        (Connect, "cpu", true, "refuse: stopped: x"),
        (
            Snapshot,
            "unreachable",
            true,
            "refuse: snapshot failed: device unreachable: x",
        ),
        (
            Snapshot,
            "incompatible-state",
            true,
            "refuse: snapshot failed: incompatible state: x",
        ),
        (Snapshot, "trap", true, "continue without state"),
        (Snapshot, "cpu", true, "continue without state"),
        (
            Restore,
            "incompatible-state",
            true,
            "refuse: restore failed: incompatible state: x",
        ),
        (Restore, "trap", true, "refuse: restore failed: trapped: x"),
        // The old one died in its snapshot: the new version owns the device now.
        (Restore, "incompatible-state", false, "failed, retry 100ms"),
        (Restore, "trap", false, "failed, retry 100ms trap"),
        (
            Configure,
            "invalid-spec",
            true,
            "refuse: configure failed: invalid spec: x",
        ),
        (
            Configure,
            "not-permitted",
            true,
            "refuse: configure failed: not permitted: x",
        ),
        (
            Configure,
            "protocol",
            true,
            "refuse: configure failed: protocol error: x",
        ),
        (
            Configure,
            "cpu",
            true,
            "refuse: configure failed: stopped: x",
        ),
        (
            Configure,
            "invalid-spec",
            false,
            "failed, blocked: invalid spec: x",
        ),
        (Configure, "unreachable", false, "failed, retry 100ms"),
        (Configure, "trap", false, "failed, retry 100ms trap"),
    ];
    let at = Clock {
        now: Instant::now(),
        jitter: 1.0,
    };
    for (step, name, alive, want) in cases {
        let mut life = Lifecycle::default();
        let got = life.swap_failed(&policy(), step, &err(name), alive, "new", at);
        assert_eq!(describe_swap(&got), want, "{step:?} {name} alive={alive}");
        // Only a refused version is not offered again.
        assert_eq!(
            life.offered("new", "old", true) == AfterOffer::Ignore,
            want.starts_with("refuse"),
            "{step:?} {name} alive={alive}"
        );
    }
}

#[test]
fn link_changes() {
    let cases = [
        // (adaptor or model changed, grants changed, running, plan)
        (true, false, true, AfterUpdate::RestartFresh),
        (true, true, true, AfterUpdate::RestartFresh),
        (true, false, false, AfterUpdate::RestartFresh),
        (false, true, true, AfterUpdate::RestartWithState),
        (false, true, false, AfterUpdate::RestartWithState),
        (false, false, true, AfterUpdate::Reconfigure),
        (false, false, false, AfterUpdate::Nothing),
    ];
    for (identity, grants, running, want) in cases {
        let mut life = Lifecycle::default();
        assert_eq!(
            life.link_changed(identity, grants, running),
            want,
            "identity={identity} grants={grants} running={running}"
        );
    }
}

#[test]
fn offers() {
    let cases = [
        // (offered, current, running, decision)
        ("a", "a", true, AfterOffer::Ignore),
        ("a", "a", false, AfterOffer::Ignore),
        ("b", "a", true, AfterOffer::TakeOver),
        ("b", "a", false, AfterOffer::StartOnNew),
    ];
    for (digest, current, running, want) in cases {
        let mut life = Lifecycle::default();
        assert_eq!(
            life.offered(digest, current, running),
            want,
            "{digest} over {current} running={running}"
        );
    }
}

#[test]
fn when_the_task_wakes() {
    let t0 = Instant::now();
    let mut backing_off = Lifecycle::default();
    backing_off.failed(
        &policy(),
        &err("unreachable"),
        Clock {
            now: t0,
            jitter: 0.0,
        },
    );
    let mut blocked = Lifecycle::default();
    blocked.grants_refused("no".into());
    let cases = [
        // (state, running, next poll, wake)
        (Lifecycle::default(), true, Some(t0), Some(t0)),
        // Running but never polled (push-only): only commands wake it.
        (Lifecycle::default(), true, None, None),
        (Lifecycle::default(), false, None, None),
        (backing_off.clone(), false, None, Some(t0 + 50 * MS)),
        (backing_off, true, Some(t0 + MS), Some(t0 + MS)),
        (blocked, false, None, None),
    ];
    for (i, (life, running, next_poll, want)) in cases.into_iter().enumerate() {
        assert_eq!(life.wake(running, next_poll), want, "case {i}");
    }
}

/// One event of a device's life, at a time in milliseconds from the start.
#[derive(Clone, Copy)]
enum Ev {
    /// The loop checks whether to start (nothing runs).
    Due,
    /// A start failed, or the instance died, with the named error.
    Fail(&'static str),
    /// A poll succeeded.
    Ok,
    /// Ten polls succeeded.
    Ok10,
    /// A poll failed with the named error; `true` while a previous version waits.
    PollErr(&'static str, bool),
    GrantsRefused,
    /// The link changed (adaptor or model, grants, running).
    Link(bool, bool, bool),
    /// A version is offered (digest, current digest, running).
    Offer(&'static str, &'static str, bool),
    /// A swap to the named digest failed at the step with the error (old one alive).
    SwapFail(&'static str, SwapStep, &'static str, bool),
}

fn apply(life: &mut Lifecycle, ev: Ev, at: Clock) -> String {
    let p = policy();
    match ev {
        Ev::Due => if life.start_due(false, at.now) {
            "due"
        } else {
            "waits"
        }
        .into(),
        Ev::Fail(e) => describe_failure(&life.failed(&p, &err(e), at)),
        Ev::Ok => describe_poll(&life.polled(&p, Ok(()), false, "d", at)),
        Ev::Ok10 => {
            for _ in 0..9 {
                life.polled(&p, Ok(()), false, "d", at);
            }
            describe_poll(&life.polled(&p, Ok(()), false, "d", at))
        }
        Ev::PollErr(e, probation) => {
            describe_poll(&life.polled(&p, Err(err(e)), probation, "new", at))
        }
        Ev::GrantsRefused => format!("{:?}", life.grants_refused("bad grant".into())),
        Ev::Link(identity, grants, running) => {
            format!("{:?}", life.link_changed(identity, grants, running))
        }
        Ev::Offer(digest, current, running) => {
            format!("{:?}", life.offered(digest, current, running))
        }
        Ev::SwapFail(digest, step, e, alive) => {
            describe_swap(&life.swap_failed(&p, step, &err(e), alive, digest, at))
        }
    }
}

/// A named life: events at times (ms) with the decision expected after each.
type Life = (&'static str, Vec<(u64, Ev, &'static str)>);

#[test]
fn lives() {
    use Ev::*;
    const S: u64 = 1000;
    let cases: Vec<Life> = vec![
        (
            "an unreachable device backs off to the cap and is never quarantined",
            vec![
                (0, Fail("unreachable"), "retry 100ms"),
                (0, Fail("unreachable"), "retry 200ms"),
                (0, Fail("unreachable"), "retry 400ms"),
                (0, Fail("unreachable"), "retry 800ms"),
                (0, Fail("unreachable"), "retry 1000ms"),
                (0, Fail("unreachable"), "retry 1000ms"),
                (0, Fail("internal"), "retry 1000ms"),
            ],
        ),
        (
            "the retry is due at its time, not before",
            vec![
                (0, Fail("trap"), "retry 100ms trap"),
                (99, Due, "waits"),
                (100, Due, "due"),
            ],
        ),
        (
            "traps in a row end in quarantine, which waits for a change",
            vec![
                (0, Fail("trap"), "retry 100ms trap"),
                (S, Fail("trap"), "retry 200ms trap"),
                (2 * S, Fail("trap"), "quarantined trap"),
                (9 * S, Due, "waits"),
                (9 * S, Link(false, false, false), "Nothing"),
                (9 * S, Due, "due"),
                (9 * S, Fail("trap"), "retry 100ms trap"),
            ],
        ),
        (
            "a new version lifts a quarantine",
            vec![
                (0, Fail("trap"), "retry 100ms trap"),
                (0, Fail("trap"), "retry 200ms trap"),
                (0, Fail("trap"), "quarantined trap"),
                (0, Offer("v2", "v1", false), "StartOnNew"),
                (0, Due, "due"),
            ],
        ),
        (
            "good polls forgive traps only after the instance proved stable",
            vec![
                (0, Fail("trap"), "retry 100ms trap"),
                (0, Ok, "healthy"),
                (0, Fail("trap"), "retry 200ms trap"),
                (0, Ok, "healthy"),
                (0, Fail("trap"), "quarantined trap"),
            ],
        ),
        (
            "ten good polls forgive the traps",
            vec![
                (0, Fail("trap"), "retry 100ms trap"),
                (0, Fail("trap"), "retry 200ms trap"),
                (0, Ok10, "healthy"),
                (0, Fail("trap"), "retry 100ms trap"),
                (0, Fail("trap"), "retry 200ms trap"),
            ],
        ),
        (
            "a good poll resets the backoff of an unreachable device",
            vec![
                (0, Fail("unreachable"), "retry 100ms"),
                (0, Fail("unreachable"), "retry 200ms"),
                (0, Ok, "healthy"),
                (0, Fail("unreachable"), "retry 100ms"),
            ],
        ),
        (
            "CPU exhaustion is counted apart from traps: good polls do not forgive it",
            vec![
                (0, Fail("cpu"), "retry 100ms trap"),
                (S, Ok10, "healthy"),
                (60 * S, Fail("cpu"), "retry 200ms trap"),
                (61 * S, Ok10, "healthy"),
                (120 * S, Fail("cpu"), "quarantined trap"),
            ],
        ),
        (
            "CPU exhaustion is forgiven after five quiet minutes",
            vec![
                (0, Fail("cpu"), "retry 100ms trap"),
                (S, Ok10, "healthy"),
                (60 * S, Fail("cpu"), "retry 200ms trap"),
                (61 * S, Ok10, "healthy"),
                (361 * S, Fail("cpu"), "retry 100ms trap"),
            ],
        ),
        (
            "traps and exhaustions: the larger count decides",
            vec![
                (0, Fail("cpu"), "retry 100ms trap"),
                (0, Fail("trap"), "retry 200ms trap"),
                (0, Ok10, "healthy"),
                (S, Fail("cpu"), "retry 200ms trap"),
                (S, Fail("cpu"), "quarantined trap"),
            ],
        ),
        (
            "a refused spec blocks until the link changes",
            vec![
                (0, Fail("invalid-spec"), "blocked: invalid spec: x"),
                (S, Due, "waits"),
                (S, Offer("v1", "v1", false), "Ignore"),
                (S, Due, "waits"),
                (S, Link(false, false, false), "Nothing"),
                (S, Due, "due"),
            ],
        ),
        (
            "refused grants block until the link changes",
            vec![
                (0, GrantsRefused, "Spec(\"bad grant\")"),
                (S, Due, "waits"),
                (S, Link(false, true, false), "RestartWithState"),
                (S, Due, "due"),
            ],
        ),
        (
            "swap, probation, rollback: the failed version is not taken again until the link changes",
            vec![
                (0, Offer("new", "v1", true), "TakeOver"),
                (0, PollErr("trap", true), "revert: trapped: x"),
                (0, Ok, "healthy"),
                (0, Offer("new", "v1", true), "Ignore"),
                (S, Link(false, false, true), "Reconfigure"),
                (S, Offer("new", "v1", true), "TakeOver"),
            ],
        ),
        (
            "a swap that cannot configure keeps the old version and refuses the new one",
            vec![
                (
                    0,
                    SwapFail("v2", SwapStep::Configure, "invalid-spec", true),
                    "refuse: configure failed: invalid spec: x",
                ),
                (0, Offer("v2", "v1", true), "Ignore"),
                (0, Offer("v3", "v1", true), "TakeOver"),
            ],
        ),
        (
            "a swap whose old instance died in its snapshot goes on, then counts as a failure",
            vec![
                (
                    0,
                    SwapFail("v2", SwapStep::Snapshot, "trap", true),
                    "continue without state",
                ),
                (
                    0,
                    SwapFail("v2", SwapStep::Configure, "trap", false),
                    "failed, retry 100ms trap",
                ),
                (0, Fail("trap"), "retry 200ms trap"),
                (0, Fail("trap"), "quarantined trap"),
            ],
        ),
    ];
    let mut steps = 0;
    for (name, events) in cases {
        let t0 = Instant::now();
        let mut life = Lifecycle::default();
        for (i, (ms, ev, want)) in events.into_iter().enumerate() {
            let at = Clock {
                now: t0 + Duration::from_millis(ms),
                jitter: 1.0,
            };
            assert_eq!(apply(&mut life, ev, at), want, "{name}, step {i}");
            steps += 1;
        }
    }
    assert!(steps > 60, "{steps}");
}

#[test]
fn the_quarantine_message_says_how_many_and_how_to_retry() {
    let mut life = Lifecycle::default();
    let at = Clock {
        now: Instant::now(),
        jitter: 0.5,
    };
    for _ in 0..2 {
        life.failed(&policy(), &err("trap"), at);
    }
    let got = life.failed(&policy(), &CallError::Trap("stack overflow".into()), at);
    let want = "quarantined after 3 traps in a row (last: trapped: stack overflow); change the DeviceLink or the adaptor to retry";
    assert_eq!(
        got,
        AfterFailure::Quarantined {
            why: want.into(),
            trapped: true
        }
    );
    assert_eq!(life.blocked(), Some(&Blocked::Quarantined(want.into())));
}
