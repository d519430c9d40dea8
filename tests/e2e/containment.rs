//! Misbehaving adaptors next to healthy ones: each gets a clear error, the limb stays
//! up, and the healthy devices keep their poll rate.

use std::time::Duration;

use limb::capabilities::{Backends, Policy};
use limb::status::Phase;

use crate::common::*;

/// Polls a healthy neighbour must reach in `window` at `interval`: a generous 50% of
/// the ideal count, so a loaded 2-core machine passes but a stalled device does not.
fn floor(window: Duration, interval: Duration) -> u64 {
    (window.as_millis() / interval.as_millis()) as u64 / 2
}

/// Runs `mode` next to three healthy fans for `window`, returns the hostile report
/// and asserts the fans kept their rate.
async fn beside_healthy(mode: &str, window: Duration) -> limb::status::DeviceReport {
    beside_healthy_with(hostile("bad", mode), window).await
}

/// [`beside_healthy`] with any hostile link (named `bad`).
async fn beside_healthy_with(
    bad_link: std::sync::Arc<crds::DeviceLink>,
    window: Duration,
) -> limb::status::DeviceReport {
    let mode = bad_link.spec.template.spec["mode"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let h = harness();
    let dummy = h.load("adaptor_dummy").await;
    let hostile_adaptor = h.load("adaptor_hostile").await;
    let interval = Duration::from_millis(50);
    let fans = start_fans(&h, &dummy, 3).await;
    let start: Vec<u64> = (0..3)
        .map(|i| h.ctx.board.get(&key(&format!("n{i}"))).unwrap().polls)
        .collect();
    let bad = h.spawn(bad_link, hostile_adaptor);
    // The neighbours' rate over this window is the case under test.
    tokio::time::sleep(window).await;
    for (i, s) in start.iter().enumerate() {
        let r = h.ctx.board.get(&key(&format!("n{i}"))).unwrap();
        let got = r.polls - s;
        assert!(
            got >= floor(window, interval),
            "{mode}: neighbour n{i} polled {got} times in {window:?}"
        );
        assert_eq!(r.phase, Phase::Healthy, "{mode}: neighbour n{i}");
        assert_eq!(r.traps, 0);
    }
    let report = h.ctx.board.get(&key("bad")).unwrap();
    bad.stop().await;
    for f in fans {
        f.stop().await;
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_in_poll_is_interrupted_and_neighbours_keep_their_rate() {
    let r = beside_healthy("loop-poll", Duration::from_secs(3)).await;
    assert!(r.traps >= 1, "{r:#?}");
    assert!(
        r.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("deadline exceeded"),
        "{r:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_in_configure_ends_in_quarantine() {
    let r = beside_healthy("loop-configure", Duration::from_secs(4)).await;
    assert_eq!(r.phase, Phase::Quarantined, "{r:#?}");
    assert_eq!(r.traps, 3);
    let msg = r.last_error.unwrap();
    assert!(
        msg.contains("quarantined after 3 traps") && msg.contains("deadline exceeded"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_memory_growth_is_stopped_at_the_limit() {
    let r = beside_healthy("grow-memory", Duration::from_secs(2)).await;
    assert!(r.traps >= 1, "{r:#?}");
    assert!(
        r.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("memory limit of 32 MiB"),
        "{r:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_on_every_call_backs_off_then_quarantines() {
    let r = beside_healthy("trap", Duration::from_secs(2)).await;
    assert_eq!(r.phase, Phase::Quarantined, "{r:#?}");
    assert!(r.restarts >= 2, "backed off before quarantine: {r:#?}");
    assert!(r.events.iter().any(|e| e.reason == "Quarantined"));
    let cond = r
        .conditions
        .get(crds::ConditionType::DeviceConnected)
        .unwrap();
    assert!(cond.message.contains("quarantined"), "{}", cond.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_traps_without_harm() {
    let r = beside_healthy("recurse", Duration::from_secs(2)).await;
    assert!(r.traps >= 1, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_rate_limited_and_the_device_keeps_polling() {
    let r = beside_healthy("log-flood", Duration::from_secs(3)).await;
    assert!(r.polls >= 2, "{r:#?}");
    assert_eq!(r.traps, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_flood_is_rate_limited_and_the_device_keeps_polling() {
    let r = beside_healthy("print-flood", Duration::from_secs(4)).await;
    assert!(r.polls >= 2, "{r:#?}");
    assert_eq!(r.traps, 0);
}

#[tokio::test]
async fn files_and_environment_are_not_reachable() {
    let h = harness();
    let a = h.load("adaptor_hostile").await;
    let dev = h.spawn(hostile("sneaky", "read-file"), a);
    let r = h
        .wait(&key("sneaky"), Duration::from_secs(10), |r| r.polls >= 1)
        .await;
    let file = r.status["file"].as_str().unwrap();
    assert!(file.starts_with("error"), "read /etc/passwd: {file}");
    assert_eq!(r.status["env"], 0);
    assert!(r.status["home"].as_str().unwrap().starts_with("error"));
    dev.stop().await;
}

#[tokio::test]
async fn ungranted_capabilities_are_refused_by_name() {
    let h = harness();
    let a = h.load("adaptor_hostile").await;
    let dev = h.spawn(hostile("grabby", "open-ungranted"), a);
    let r = h
        .wait(&key("grabby"), Duration::from_secs(10), |r| r.polls >= 1)
        .await;
    for cap in ["socket", "serial", "gpio"] {
        let outcome = r.status[cap].as_str().unwrap();
        assert!(
            outcome.contains("not-permitted") && outcome.contains("not granted"),
            "{cap}: {outcome}"
        );
    }
    dev.stop().await;
}

#[tokio::test]
async fn status_that_is_not_json_is_refused() {
    let h = harness();
    let a = h.load("adaptor_hostile").await;
    let dev = h.spawn(hostile("garbled", "bad-json"), a);
    let r = h
        .wait(&key("garbled"), Duration::from_secs(10), |r| {
            r.failed_polls >= 1
        })
        .await;
    assert_eq!(r.phase, Phase::Unhealthy);
    assert!(r.last_error.unwrap().contains("not valid JSON"));
    assert!(r.status.is_null(), "no garbage reaches the status");
    dev.stop().await;
}

#[tokio::test]
async fn an_enormous_status_is_refused_with_its_size() {
    let h = harness();
    let a = h.load("adaptor_hostile").await;
    let dev = h.spawn(hostile("huge", "huge-status"), a);
    let r = h
        .wait(&key("huge"), Duration::from_secs(20), |r| {
            r.failed_polls >= 1
        })
        .await;
    let msg = r.last_error.unwrap();
    assert!(
        msg.contains("8388608 bytes") && msg.contains("limit of 1048576"),
        "{msg}"
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_in_snapshot_during_a_swap_costs_no_neighbour_and_the_device_comes_back() {
    let h = harness();
    let hostile_adaptor = h.load("adaptor_hostile").await;
    let dummy = h.load("adaptor_dummy").await;
    let neighbour = h.spawn(fan("calm", "slow", "50ms"), dummy);
    let dev = h.spawn(hostile("hoarder", "loop-snapshot"), hostile_adaptor);
    let before = h
        .wait(&key("hoarder"), Duration::from_secs(10), |r| r.polls >= 2)
        .await;
    let calm = h.ctx.board.get(&key("calm")).unwrap().polls;
    // A new version arrives: taking the snapshot never ends.
    let v2 = h.load("adaptor_hostile_v2").await;
    dev.send(limb::supervisor::Command::Swap(v2));
    // The old instance is interrupted in `snapshot`; the new version takes the device
    // over without the state it could not give, and says so.
    let after = h
        .wait(&key("hoarder"), Duration::from_secs(20), |r| {
            r.adaptor_version.as_deref() == Some("0.1.0+v2") && r.polls >= before.polls + 2
        })
        .await;
    assert!(
        after
            .events
            .iter()
            .any(|e| e.message.contains("trapped in snapshot")
                && e.message.contains("without its state")),
        "the events say the snapshot failed: {:#?}",
        after.events
    );
    assert_eq!(after.phase, Phase::Healthy);
    let n = h.ctx.board.get(&key("calm")).unwrap();
    assert!(n.polls >= calm + 10, "the neighbour kept polling");
    assert_eq!(n.traps, 0);
    dev.stop().await;
    neighbour.stop().await;
}

/// A hostile link with extra `parameters` (`spinMs`, `randomMiB`, ...).
fn hostile_with(
    name: &str,
    mode: &str,
    parameters: serde_json::Value,
) -> std::sync::Arc<crds::DeviceLink> {
    link(
        name,
        "hostile",
        "HostileDevice",
        serde_json::json!({"mode": mode, "parameters": parameters}),
    )
}

/// Starts healthy fans `n0..n{count}` polling every 50 ms and waits for each one's
/// first poll.
async fn start_fans(
    h: &Harness,
    dummy: &std::sync::Arc<limb::adaptors::Adaptor>,
    count: usize,
) -> Vec<limb::supervisor::Handle> {
    let fans: Vec<_> = (0..count)
        .map(|i| h.spawn(fan(&format!("n{i}"), "slow", "50ms"), dummy.clone()))
        .collect();
    for i in 0..count {
        h.wait(&key(&format!("n{i}")), Duration::from_secs(10), |r| {
            r.polls >= 1
        })
        .await;
    }
    fans
}

/// Polls of the fans `n0..n{count}` so far.
fn fan_polls(h: &Harness, count: usize) -> Vec<u64> {
    (0..count)
        .map(|i| {
            h.ctx
                .board
                .get(&key(&format!("n{i}")))
                .map_or(0, |r| r.polls)
        })
        .collect()
}

/// Devices spinning in pure wasm, each call under its deadline, take no neighbour's
/// rate: long calls share one lane, and each spinner is held to its CPU budget. Before
/// the budget and the lanes, two spinners cut a neighbour to a third of its rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_spinning_under_their_deadline_do_not_starve_a_neighbour() {
    let h = harness_with(Policy::loopback(), Backends::real(true), |s| {
        s.call_timeout = Duration::from_secs(5);
    });
    let dummy = h.load("adaptor_dummy").await;
    let hostile_adaptor = h.load("adaptor_hostile").await;
    let interval = Duration::from_millis(50);
    let fans = start_fans(&h, &dummy, 2).await;
    let window = Duration::from_secs(4);
    let spinners: Vec<_> = (0..4)
        .map(|i| {
            h.spawn(
                hostile_with(
                    &format!("spin{i}"),
                    "spin-poll",
                    serde_json::json!({"syncIntervalMs": 10, "spinMs": 400}),
                ),
                hostile_adaptor.clone(),
            )
        })
        .collect();
    let start = fan_polls(&h, 2);
    // The fans' rate over this window is the case under test.
    tokio::time::sleep(window).await;
    let end = fan_polls(&h, 2);
    for (i, (s, e)) in start.iter().zip(&end).enumerate() {
        assert!(
            e - s >= floor(window, interval),
            "neighbour n{i} polled {} times in {window:?} next to four spinners",
            e - s
        );
    }
    let text = h.ctx.metrics.encode();
    assert!(
        text.contains("octopus_limb_device_cpu_seconds_total{device=\"default/spin0\"}"),
        "the spinners' CPU time is a metric"
    );
    for s in spinners {
        s.stop().await;
    }
    for f in fans {
        f.stop().await;
    }
}

/// A device that keeps spending its whole CPU budget, in calls that each stay under
/// the deadline, is stopped, backed off, and quarantined like one that traps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_keeps_spending_its_cpu_budget_ends_in_quarantine() {
    let h = harness_with(Policy::loopback(), Backends::real(true), |s| {
        s.call_timeout = Duration::from_secs(5);
        s.cpu = limb::engine::CpuSettings {
            budget: Duration::from_millis(50),
            burst: Duration::from_millis(100),
            strikes: 2,
            ..limb::engine::CpuSettings::default()
        };
    });
    let a = h.load("adaptor_hostile").await;
    let dev = h.spawn(
        hostile_with(
            "hog",
            "spin-poll",
            serde_json::json!({"syncIntervalMs": 10, "spinMs": 100}),
        ),
        a,
    );
    let r = h
        .wait(&key("hog"), Duration::from_secs(40), |r| {
            r.phase == Phase::Quarantined
        })
        .await;
    let msg = r.last_error.clone().unwrap_or_default();
    assert!(
        msg.contains("CPU budget exhausted") && msg.contains("quarantined after 3"),
        "{msg}"
    );
    assert!(r.polls >= 1, "each call stayed under its deadline: {r:#?}");
    dev.stop().await;
}

/// Removing a device interrupts its running call at once instead of waiting for the
/// call's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_device_interrupts_its_running_call() {
    let call_timeout = Duration::from_secs(10);
    let h = harness_with(Policy::loopback(), Backends::real(true), |s| {
        s.call_timeout = call_timeout;
    });
    let a = h.load("adaptor_hostile").await;
    let dev = h.spawn(hostile("stuck", "loop-poll"), a);
    h.wait(&key("stuck"), Duration::from_secs(10), |r| {
        r.phase == Phase::Healthy || r.last_poll.is_none() && r.phase == Phase::Starting
    })
    .await;
    // Let the first poll start spinning.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    dev.stop().await;
    let took = started.elapsed();
    assert!(
        took < call_timeout / 4,
        "stopping took {took:?}; the call's deadline was {call_timeout:?}"
    );
}

/// A guest stalling in `shutdown` is held to the shutdown deadline, and a fleet that
/// retires it does not wait at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_shutdown_holds_up_nothing() {
    let h = harness_with(Policy::loopback(), Backends::real(true), |s| {
        s.call_timeout = Duration::from_secs(10);
        s.shutdown_timeout = Duration::from_millis(300);
    });
    let a = h.load("adaptor_hostile").await;
    let devs: Vec<_> = (0..3)
        .map(|i| h.spawn(hostile(&format!("stall{i}"), "stall-shutdown"), a.clone()))
        .collect();
    for i in 0..3 {
        h.wait(&key(&format!("stall{i}")), Duration::from_secs(10), |r| {
            r.polls >= 1
        })
        .await;
    }
    let started = std::time::Instant::now();
    let mut devs = devs.into_iter();
    for d in devs.by_ref().take(2) {
        d.retire();
    }
    let retired = started.elapsed();
    assert!(
        retired < Duration::from_millis(100),
        "retiring took {retired:?}"
    );
    let started = std::time::Instant::now();
    if let Some(d) = devs.next() {
        d.stop().await;
    }
    let stopped = started.elapsed();
    assert!(
        stopped < Duration::from_secs(3),
        "stop took {stopped:?}, with a shutdown deadline of 300ms and a call deadline of 10s"
    );
}

/// `wasi:random` is capped per call: asking for tens of MiB traps with the size and
/// the limit instead of making the host produce them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_random_request_is_refused_with_its_size() {
    let r = beside_healthy_with(
        hostile_with(
            "bad",
            "random-flood",
            serde_json::json!({"syncIntervalMs": 10, "randomMiB": 32}),
        ),
        Duration::from_secs(2),
    )
    .await;
    assert!(r.traps >= 1, "{r:#?}");
    let msg = r.last_error.unwrap_or_default();
    assert!(
        msg.contains("33554432") && msg.contains("65536"),
        "the trap names the size and the limit: {msg}"
    );
}

/// An adaptor's events are checked before they are kept: one with a forged reason is
/// replaced by the limb's own event saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_events_are_refused_and_said_so() {
    let h = harness();
    let a = h.load("adaptor_hostile").await;
    let dev = h.spawn(hostile("forger", "forge"), a);
    let r = h
        .wait(&key("forger"), Duration::from_secs(10), |r| {
            r.events.iter().any(|e| e.reason == "EventRefused")
        })
        .await;
    for e in &r.events {
        assert!(
            e.reason.chars().all(|c| c.is_ascii_alphanumeric()),
            "reason {:?}",
            e.reason
        );
        assert!(!e.message.contains('\n'), "message {:?}", e.message);
    }
    dev.stop().await;
}
