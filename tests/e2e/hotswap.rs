//! Hot swap under continuous polling: state carried over, no poll missed, broken new
//! versions leave the old one serving.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use limb::status::{Phase, StatusBoard};
use limb::supervisor::{Command, Handle};
use tokio::time::Instant;

use crate::common::*;

/// Records, per device, the largest gap between two consecutive polls and whether the
/// adaptor's own poll counter ever went backwards.
pub struct Watcher {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<HashMap<String, (Duration, bool, u64)>>,
}

impl Watcher {
    pub fn start(board: &Arc<StatusBoard>) -> Self {
        let mut rx = board.subscribe();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut seen: HashMap<String, (Instant, u64, Duration, bool, u64)> = HashMap::new();
            loop {
                let r = tokio::select! {
                    r = rx.recv() => r,
                    _ = &mut stopped => break,
                };
                let now = Instant::now();
                let guest = r.status["polls"].as_u64().unwrap_or(0);
                let e = seen
                    .entry(r.key())
                    .or_insert((now, r.polls, Duration::ZERO, false, guest));
                if r.polls > e.1 {
                    e.2 = e.2.max(now - e.0);
                    e.0 = now;
                    e.1 = r.polls;
                    if guest < e.4 {
                        e.3 = true;
                    }
                    e.4 = guest;
                }
            }
            seen.into_iter()
                .map(|(k, v)| (k, (v.2, v.3, v.1)))
                .collect()
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> HashMap<String, (Duration, bool, u64)> {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

async fn fleet(h: &Harness, n: usize, interval: &str) -> Vec<Handle> {
    let dummy = h.load("adaptor_dummy").await;
    let devices: Vec<Handle> = (0..n)
        .map(|i| h.spawn(fan(&format!("d{i}"), "middle", interval), dummy.clone()))
        .collect();
    for i in 0..n {
        h.wait(&key(&format!("d{i}")), Duration::from_secs(20), |r| {
            r.polls >= 2
        })
        .await;
    }
    devices
}

/// Waits until each of the `n` devices of [`fleet`] has polled `more` times since the
/// call: the watcher then has gaps to measure on each side of a swap.
async fn polled_again(h: &Harness, n: usize, more: u64) {
    let since: Vec<u64> = (0..n)
        .map(|i| {
            h.ctx
                .board
                .get(&key(&format!("d{i}")))
                .map_or(0, |r| r.polls)
        })
        .collect();
    for (i, p) in since.into_iter().enumerate() {
        h.wait(&key(&format!("d{i}")), Duration::from_secs(20), |r| {
            r.polls >= p + more
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_many_devices_there_and_back_misses_no_poll_and_keeps_state() {
    let h = harness();
    let n = 20;
    let interval = Duration::from_millis(100);
    let devices = fleet(&h, n, "100ms").await;
    let v1 = h.load("adaptor_dummy").await;
    let v2 = h.load("adaptor_dummy_v2").await;
    let watcher = Watcher::start(&h.ctx.board);
    polled_again(&h, n, 3).await;
    for d in &devices {
        d.send(Command::Swap(v2.clone()));
    }
    for i in 0..n {
        h.wait(&key(&format!("d{i}")), Duration::from_secs(20), |r| {
            r.status["variant"] == "v2"
        })
        .await;
    }
    polled_again(&h, n, 3).await;
    for d in &devices {
        d.send(Command::Swap(v1.clone()));
    }
    for i in 0..n {
        h.wait(&key(&format!("d{i}")), Duration::from_secs(20), |r| {
            r.status.get("variant").is_none() && r.adaptor_version.as_deref() == Some("0.1.0")
        })
        .await;
    }
    polled_again(&h, n, 3).await;
    let seen = watcher.finish().await;
    for d in devices {
        d.stop().await;
    }
    assert_eq!(seen.len(), n);
    for (dev, (max_gap, backwards, polls)) in seen {
        assert!(
            !backwards,
            "{dev}: the adaptor's poll counter went backwards (state lost in a swap)"
        );
        assert!(polls >= 10, "{dev}: only {polls} polls");
        assert!(
            max_gap < interval * 3,
            "{dev}: {max_gap:?} between two polls at a {interval:?} interval: a poll was missed"
        );
    }
}

#[tokio::test]
async fn a_version_whose_restore_refuses_the_state_leaves_the_old_one_serving() {
    let h = harness();
    let devices = fleet(&h, 1, "50ms").await;
    let broken = h.load("adaptor_dummy_broken_restore").await;
    let before = h.ctx.board.get(&key("d0")).unwrap();
    devices[0].send(Command::Swap(broken));
    let r = h
        .wait(&key("d0"), Duration::from_secs(10), |r| {
            r.events.iter().any(|e| e.reason == "SwapFailed")
        })
        .await;
    let ev = r.events.iter().find(|e| e.reason == "SwapFailed").unwrap();
    assert!(
        ev.message.contains("restore failed") && ev.message.contains("keeps serving"),
        "{}",
        ev.message
    );
    assert_eq!(r.adaptor_version.as_deref(), Some("0.1.0"));
    assert_eq!(r.swaps, 0);
    let later = h.polls_past(&key("d0"), &r, 3).await;
    assert_eq!(later.phase, Phase::Healthy);
    assert!(later.status["polls"].as_u64() > before.status["polls"].as_u64());
    for d in devices {
        d.stop().await;
    }
}

#[tokio::test]
async fn a_version_that_traps_on_its_first_poll_is_rolled_back_without_losing_a_poll() {
    let h = harness();
    let devices = fleet(&h, 1, "50ms").await;
    let broken = h.load("adaptor_dummy_broken_poll").await;
    let before = h.ctx.board.get(&key("d0")).unwrap();
    devices[0].send(Command::Swap(broken.clone()));
    let r = h
        .wait(&key("d0"), Duration::from_secs(10), |r| {
            r.events.iter().any(|e| e.reason == "SwapFailed")
        })
        .await;
    let ev = r.events.iter().find(|e| e.reason == "SwapFailed").unwrap();
    assert!(ev.message.contains("rolled back"), "{}", ev.message);
    let later = h.polls_past(&key("d0"), &r, 3).await;
    assert_eq!(later.adaptor_version.as_deref(), Some("0.1.0"));
    assert_eq!(later.phase, Phase::Healthy);
    assert_eq!(later.traps, 0, "a rolled-back swap is not a device failure");
    assert!(
        later.status["polls"].as_u64() > before.status["polls"].as_u64(),
        "state kept"
    );
    // The same broken version is not retried on this device.
    devices[0].send(Command::Swap(broken));
    // Nothing happening is the case under test: no second SwapFailed in 300 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = h.ctx.board.get(&key("d0")).unwrap();
    assert_eq!(
        again
            .events
            .iter()
            .filter(|e| e.reason == "SwapFailed")
            .count(),
        1
    );
    for d in devices {
        d.stop().await;
    }
}
