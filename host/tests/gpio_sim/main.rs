//! The limb's real GPIO backend ([`CdevBackend`], the v2 character-device uAPI) against
//! the kernel's gpio-sim, inside the qemu guest that `scripts/test-gpio.sh` boots.
//!
//! Every test names its backend (`cdev_on_gpio_sim_...`); the fast tests of the fake chip
//! live beside the module (`capabilities::gpio::tests`, `fake_chip_...`). Each test makes
//! its own simulated chip through configfs, so they share nothing but the kernel. The
//! device side is gpio-sim's sysfs: `value` is what the chip's pin carries (what a probe
//! on an LED would see), `pull` is what the outside world does to an input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod sim;
mod standalone;

use std::sync::Arc;

use crds::{Grant, GrantKind};
use std::time::{Duration, Instant};

use limb::capabilities::gpio::{
    Backend, Bias, CONSUMER, CdevBackend, Direction, Drive, EdgeEvent, Edges, LineIo, Settings,
};
use limb::capabilities::grants::NO_FIELDS;
use limb::capabilities::{Backends, Capabilities, CapabilityError, Grants, Limits, Policy};
use sim::{Hog, Pull, Sim};

const PLAIN: Settings = Settings {
    active_low: false,
    bias: None,
    drive: None,
    debounce: None,
    edges: None,
};

#[test]
fn cdev_on_gpio_sim_outputs_are_seen_on_the_sim_pins() {
    let sim = Sim::new("outputs", 8, &[], &[]);
    let relay = CdevBackend
        .request(sim.chip(), 3, Direction::Output, &PLAIN)
        .expect("request line 3 as output");
    assert_eq!(sim.value(3), 0, "an output is requested inactive");
    relay.set(true).expect("drive line 3 active");
    assert_eq!(sim.value(3), 1);
    relay.set(false).expect("drive line 3 inactive");
    assert_eq!(sim.value(3), 0);
    assert_eq!(sim.value(4), 0, "a neighbouring line is untouched");
}

#[test]
fn cdev_on_gpio_sim_inputs_follow_the_sim_pull() {
    let sim = Sim::new("inputs", 8, &[], &[]);
    let contact = CdevBackend
        .request(sim.chip(), 1, Direction::Input, &PLAIN)
        .expect("request line 1 as input");
    for (pull, level) in [
        (Pull::Up, true),
        (Pull::Down, false),
        (Pull::Up, true),
        (Pull::Down, false),
    ] {
        sim.pull(1, pull);
        assert_eq!(contact.get().expect("read line 1"), level, "after {pull:?}");
    }
    assert!(contact.set(true).is_err(), "an input cannot be driven");
}

#[test]
fn cdev_on_gpio_sim_line_held_by_a_kernel_hog_is_refused_naming_the_hog() {
    let sim = Sim::new(
        "hogged",
        8,
        &[],
        &[Hog {
            line: 5,
            name: "door-hog",
            direction: "output-high",
        }],
    );
    let err = CdevBackend
        .request(sim.chip(), 5, Direction::Input, &PLAIN)
        .err()
        .expect("a hogged line must be refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ResourceBusy, "{err}");
    assert!(err.to_string().contains("\"door-hog\""), "{err}");
    CdevBackend
        .request(sim.chip(), 4, Direction::Input, &PLAIN)
        .expect("the line beside the hog is free");
}

#[test]
fn cdev_on_gpio_sim_line_held_by_another_request_is_refused_until_released() {
    let sim = Sim::new("shared", 8, &[], &[]);
    let first = CdevBackend
        .request(sim.chip(), 2, Direction::Output, &PLAIN)
        .expect("first request");
    first.set(true).expect("drive");
    let err = CdevBackend
        .request(sim.chip(), 2, Direction::Output, &PLAIN)
        .err()
        .expect("two requests never share an output line");
    assert_eq!(err.kind(), std::io::ErrorKind::ResourceBusy, "{err}");
    assert!(err.to_string().contains(&format!("{CONSUMER:?}")), "{err}");
    assert_eq!(
        sim.value(2),
        1,
        "the refused request left the holder's level alone"
    );
    drop(first);
    let second = CdevBackend
        .request(sim.chip(), 2, Direction::Output, &PLAIN)
        .expect("a released line can be requested again");
    second.set(true).expect("drive");
    assert_eq!(sim.value(2), 1);
}

#[test]
fn cdev_on_gpio_sim_capabilities_resolve_line_names_and_refuse_what_the_policy_does_not_allow() {
    let sim = Sim::new("granted", 8, &[(6, "relay1"), (7, "siren")], &[]);
    let chip = sim.chip().to_owned();
    let grant = |name: &str, line: &str| Grant {
        name: name.into(),
        kind: GrantKind::Gpio,
        target: format!("{chip}:{line}"),
    };
    let grants = [
        grant("relay", "relay1"),
        grant("by-offset", "6"),
        grant("beyond-policy", "7"),
        grant("siren", "siren"),
        grant("ghost", "no-such-line"),
    ];
    let (grants, _) = Grants::resolve(&grants, &serde_json::Value::Null, NO_FIELDS);
    let policy = Policy::from_yaml(&format!("gpio: ['{chip} 0-6']")).expect("policy");
    let mut caps = Capabilities::new(
        Arc::new(grants),
        Arc::new(policy),
        Limits::default(),
        Backends::real(false),
    );
    let relay = caps
        .open_gpio("relay", Direction::Output, &PLAIN)
        .expect("open the line the chip names relay1");
    relay.set(true).expect("drive");
    assert_eq!(sim.value(6), 1, "relay1 is line 6");
    assert_eq!(caps.open_handles(), 1);

    for (grant, why) in [("beyond-policy", "line 7"), ("siren", "line 7")] {
        let err = caps
            .open_gpio(grant, Direction::Input, &PLAIN)
            .err()
            .expect("policy allows lines 0-6 only");
        assert!(
            matches!(&err, CapabilityError::NotPermitted(m) if m.contains(why)),
            "{grant}: {err}"
        );
    }
    let err = caps
        .open_gpio("not-granted", Direction::Output, &PLAIN)
        .err()
        .expect("a grant the link does not hold");
    assert!(
        matches!(&err, CapabilityError::NotPermitted(m) if m.contains("\"not-granted\" is not granted")),
        "{err}"
    );
    let err = caps
        .open_gpio("ghost", Direction::Input, &PLAIN)
        .err()
        .expect("the chip names no such line");
    assert!(
        matches!(&err, CapabilityError::Io(m) if m.contains("no line named")),
        "{err}"
    );
    let err = caps
        .open_gpio("by-offset", Direction::Input, &PLAIN)
        .err()
        .expect("line 6 is taken by this device's own output");
    assert!(
        matches!(&err, CapabilityError::Io(m) if m.contains(&format!("in use by {CONSUMER:?}"))),
        "{err}"
    );
    assert_eq!(caps.open_handles(), 1, "refusals hold no handle");
    assert_eq!(sim.value(6), 1, "refusals leave the output alone");
}

fn edges(edges: Edges) -> Settings {
    Settings {
        edges: Some(edges),
        ..PLAIN
    }
}

/// Waits for `n` events, in bounded rounds.
fn collect(line: &dyn LineIo, n: usize) -> Vec<EdgeEvent> {
    let mut events = Vec::new();
    for _ in 0..n * 4 {
        if events.len() >= n {
            break;
        }
        events.extend(
            line.wait_edges(Duration::from_secs(2), n - events.len())
                .expect("wait for edges"),
        );
    }
    events
}

#[test]
fn cdev_on_gpio_sim_edges_follow_the_sim_pulls_with_kernel_timestamps_and_seqnos() {
    let sim = Sim::new("edges", 8, &[], &[]);
    let contact = CdevBackend
        .request(sim.chip(), 2, Direction::Input, &edges(Edges::Both))
        .expect("request line 2 with edge detection");
    let started = Instant::now();
    let quiet = contact
        .wait_edges(Duration::from_millis(100), 8)
        .expect("wait");
    assert!(quiet.is_empty(), "no pull, no edge: {quiet:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "the wait lasted its timeout"
    );

    let gap = Duration::from_millis(50);
    for pull in [Pull::Up, Pull::Down, Pull::Up] {
        sim.pull(2, pull);
        std::thread::sleep(gap);
    }
    let events = collect(contact.as_ref(), 3);
    assert_eq!(
        events
            .iter()
            .map(|e| (e.rising, e.seqno, e.line_seqno))
            .collect::<Vec<_>>(),
        [(true, 1, 1), (false, 2, 2), (true, 3, 3)],
        "{events:?}"
    );
    for pair in events.windows(2) {
        let apart = pair[1].timestamp_ns.saturating_sub(pair[0].timestamp_ns);
        assert!(
            apart >= 40_000_000,
            "the kernel stamped the pulls {gap:?} apart, saw {apart} ns: {events:?}"
        );
    }
    assert!(
        contact
            .wait_edges(Duration::ZERO, 8)
            .expect("wait")
            .is_empty(),
        "nothing left"
    );
}

#[test]
fn cdev_on_gpio_sim_rising_only_detection_skips_falling_edges() {
    let sim = Sim::new("rising", 8, &[], &[]);
    let contact = CdevBackend
        .request(sim.chip(), 0, Direction::Input, &edges(Edges::Rising))
        .expect("request");
    for pull in [Pull::Up, Pull::Down, Pull::Up, Pull::Down] {
        sim.pull(0, pull);
    }
    let events = collect(contact.as_ref(), 2);
    assert_eq!(
        events
            .iter()
            .map(|e| (e.rising, e.seqno))
            .collect::<Vec<_>>(),
        [(true, 1), (true, 2)],
        "{events:?}"
    );
    let plain = CdevBackend
        .request(sim.chip(), 1, Direction::Input, &PLAIN)
        .expect("request");
    assert!(
        plain.wait_edges(Duration::ZERO, 1).is_err(),
        "a line without edge detection cannot wait for edges"
    );
}

#[test]
fn cdev_on_gpio_sim_active_low_inverts_levels_and_edge_kinds() {
    let sim = Sim::new("active-low", 8, &[], &[]);
    let low = Settings {
        active_low: true,
        ..PLAIN
    };
    let led = CdevBackend
        .request(sim.chip(), 3, Direction::Output, &low)
        .expect("request");
    assert_eq!(sim.value(3), 1, "inactive is high on an active-low line");
    led.set(true).expect("drive");
    assert_eq!(sim.value(3), 0);

    sim.pull(4, Pull::Up);
    let button = CdevBackend
        .request(
            sim.chip(),
            4,
            Direction::Input,
            &Settings {
                edges: Some(Edges::Rising),
                ..low
            },
        )
        .expect("request");
    assert!(!button.get().expect("read"), "pulled up = inactive");
    sim.pull(4, Pull::Down);
    assert!(
        button.get().expect("read"),
        "pulled down = active (pressed)"
    );
    let events = collect(button.as_ref(), 1);
    assert!(events[0].rising, "the press is a rising edge: {events:?}");
}

#[test]
fn cdev_on_gpio_sim_line_settings_reach_the_kernel() {
    let sim = Sim::new("settings", 8, &[], &[]);
    let _output = CdevBackend
        .request(
            sim.chip(),
            0,
            Direction::Output,
            &Settings {
                drive: Some(Drive::OpenDrain),
                bias: Some(Bias::PullUp),
                ..PLAIN
            },
        )
        .expect("request an open-drain output");
    let _input = CdevBackend
        .request(
            sim.chip(),
            1,
            Direction::Input,
            &Settings {
                bias: Some(Bias::PullDown),
                debounce: Some(Duration::from_millis(5)),
                edges: Some(Edges::Both),
                active_low: true,
                ..PLAIN
            },
        )
        .expect("request a debounced input");
    let chip = gpiocdev::Chip::from_path(format!("/dev/{}", sim.chip())).expect("open chip");
    let out = chip.line_info(0).expect("line info 0");
    assert_eq!(out.consumer, CONSUMER);
    assert_eq!(out.drive, Some(gpiocdev::line::Drive::OpenDrain), "{out:?}");
    assert_eq!(out.bias, Some(gpiocdev::line::Bias::PullUp), "{out:?}");
    let inp = chip.line_info(1).expect("line info 1");
    assert_eq!(inp.bias, Some(gpiocdev::line::Bias::PullDown), "{inp:?}");
    assert_eq!(
        inp.debounce_period,
        Some(Duration::from_millis(5)),
        "{inp:?}"
    );
    assert_eq!(
        inp.edge_detection,
        Some(gpiocdev::line::EdgeDetection::BothEdges),
        "{inp:?}"
    );
    assert!(inp.active_low, "{inp:?}");
}

/// The figure: how long from the sysfs write that pulls the pin until a thread waiting
/// in `wait_edges` has the event, over 1,000 edges, and how many were lost. Printed as
/// one `OCTOPUS-GPIO-FIGURE` line (run with `--nocapture`). Under TCG emulation: it
/// measures the emulated kernel's irq, thread and wake-up path, not a board's.
#[test]
fn cdev_on_gpio_sim_edge_latency_over_1000_edges() {
    const EDGES: usize = 1000;
    let sim = Sim::new("latency", 8, &[], &[]);
    let line: Arc<dyn LineIo> = CdevBackend
        .request(sim.chip(), 0, Direction::Input, &edges(Edges::Both))
        .expect("request")
        .into();
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, EdgeEvent)>();
    let waiter = std::thread::spawn(move || {
        for _ in 0..EDGES {
            let events = line.wait_edges(Duration::from_secs(5), 16).expect("wait");
            if events.is_empty() {
                return;
            }
            let seen = Instant::now();
            for e in events {
                if tx.send((seen, e)).is_err() {
                    return;
                }
            }
        }
    });
    let mut latencies = Vec::with_capacity(EDGES);
    let mut lost = 0;
    let mut last_seqno = 0;
    for i in 0..EDGES {
        let pulled = Instant::now();
        sim.pull(0, if i % 2 == 0 { Pull::Up } else { Pull::Down });
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok((seen, e)) => {
                lost += e.seqno.saturating_sub(last_seqno + 1) as usize;
                last_seqno = e.seqno;
                assert_eq!(e.rising, i % 2 == 0, "edge {i}: {e:?}");
                latencies.push(seen.saturating_duration_since(pulled));
            }
            Err(_) => lost += 1,
        }
    }
    drop(rx);
    waiter.join().expect("waiter");
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let (p50, p99) = (at(0.50), at(0.99));
    // Under TCG the kernel sometimes fails to calibrate the TSC and falls back to the
    // jiffies clock (4 ms steps): the times are then not worth printing.
    let clock =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .unwrap_or_default();
    let clock = clock.trim();
    let times = if clock.contains("jiffies") {
        "times=not-measured-on-jiffies".to_owned()
    } else {
        format!(
            "p50_us={} p99_us={} max_us={}",
            p50.as_micros(),
            p99.as_micros(),
            latencies.last().map_or(0, |d| d.as_micros())
        )
    };
    eprintln!(
        "OCTOPUS-GPIO-FIGURE edge-to-reader edges={EDGES} received={} lost={lost} {times} clocksource={clock}",
        latencies.len(),
    );
    assert_eq!(lost, 0, "every edge reaches the waiting reader");
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
}
