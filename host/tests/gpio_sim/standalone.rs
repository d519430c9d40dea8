//! The whole limb on the real kernel: the shipped static limb, in standalone mode, runs
//! `GPIODevice` links through the GPIO adaptor on gpio-sim chips. The device side is
//! gpio-sim's sysfs, as in the capability tests; what the user sees is the limb's JSON
//! lines (one device report per change).
//!
//! The guest puts the limb at `OCTOPUS_LIMB` and the adaptors in `OCTOPUS_GPIO_ADAPTORS`
//! (`scripts/test-gpio.sh`); without them these tests fail, they never pass by default.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sim::{Pull, Sim};

/// Long enough for the first compile of the adaptor under TCG.
const START: Duration = Duration::from_secs(90);
const STEP: Duration = Duration::from_secs(10);

fn env_path(var: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(var).unwrap_or_else(|| panic!("{var} is not set")))
}

/// A limb process on a folder of its own, and the device reports it prints.
struct Limb {
    child: Child,
    dir: PathBuf,
    reports: mpsc::Receiver<Value>,
    latest: HashMap<String, Value>,
}

impl Limb {
    fn start(name: &str, policy: &str) -> Self {
        let dir = Path::new("/tmp").join(format!("limb-{name}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let adaptors = env_path("OCTOPUS_GPIO_ADAPTORS");
        fs::copy(adaptors.join("adaptor_gpio.wasm"), dir.join("gpio.wasm")).unwrap();
        let policy_file = dir.with_extension("policy.yaml");
        fs::write(&policy_file, policy).unwrap();
        let log = fs::File::create(dir.with_extension("log")).unwrap();
        let mut child = Command::new(env_path("OCTOPUS_LIMB"))
            .arg("standalone")
            .arg(&dir)
            .args(["--listen", "off", "--output", "json", "--gpio", "cdev"])
            .args(["--scan-interval", "200ms", "--cache-dir", "/tmp/limb-cache"])
            .arg("--policy")
            .arg(&policy_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start the limb");
        let stdout = child.stdout.take().unwrap();
        let (tx, reports) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let Ok(report) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if tx.send(report).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            dir,
            reports,
            latest: HashMap::new(),
        }
    }

    /// Writes a link file the way an editor or `kubectl cp` would: whole, by rename.
    fn put(&self, file: &str, content: &[u8]) {
        let tmp = self.dir.join(format!(".{file}.tmp"));
        fs::write(&tmp, content).unwrap();
        fs::rename(&tmp, self.dir.join(file)).unwrap();
    }

    /// Waits until device `name`'s report satisfies `done`, and returns it.
    fn wait(&mut self, name: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        if let Some(r) = self.latest.get(name).filter(|r| done(r)) {
            return r.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.reports.recv_timeout(left) {
                Ok(r) => {
                    let Some(n) = r["name"].as_str().map(str::to_owned) else {
                        continue;
                    };
                    let hit = n == name && done(&r);
                    self.latest.insert(n, r.clone());
                    if hit {
                        return r;
                    }
                }
                Err(_) => {
                    let log =
                        fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    panic!(
                        "device {name} did not get there within {within:?}; its last report: {:#}\nlimb log (newest first):\n{}",
                        self.latest.get(name).cloned().unwrap_or(Value::Null),
                        tail.join("\n")
                    );
                }
            }
        }
    }
}

impl Drop for Limb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GPIODevice link on `chip` with `properties` (a YAML flow list).
fn link(name: &str, chip: &str, properties: &str) -> Vec<u8> {
    format!(
        "apiVersion: edge.cattle.io/v1alpha1\nkind: DeviceLink\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  adaptor: {{node: guest, name: adaptors.edge.cattle.io/gpio}}\n  model: {{apiVersion: devices.edge.cattle.io/v1alpha1, kind: GPIODevice}}\n  template:\n    spec:\n      chip: {chip}\n      syncInterval: 200ms\n      properties: {properties}\n"
    )
    .into_bytes()
}

/// Property `name` of a report's status.
fn prop<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["status"]["properties"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or(&Value::Null)
}

fn healthy(r: &Value) -> bool {
    r["phase"] == "Healthy"
}

#[test]
fn cdev_on_gpio_sim_limb_drives_outputs_from_the_spec_and_inputs_follow_the_pins() {
    let sim = Sim::new("limb-io", 8, &[(6, "relay1")], &[]);
    let chip = sim.chip();
    let mut limb = Limb::start("io", &format!("gpio: ['{chip}']\n"));
    limb.put(
        "panel.yaml",
        &link(
            "panel",
            chip,
            "[{name: relay, line: relay1, direction: output, value: true}, {name: led, line: 2, direction: output}, {name: door, line: 1, direction: input, edges: both}, {name: level, line: 3, direction: input}]",
        ),
    );
    let r = limb.wait("panel", START, |r| {
        healthy(r) && prop(r, "relay")["value"] == true
    });
    assert_eq!(
        r["grants"].as_array().map(Vec::len),
        Some(4),
        "one grant per line: {r:#}"
    );
    assert_eq!(
        sim.value(6),
        1,
        "relay1 (line 6) driven active from the spec"
    );
    assert_eq!(sim.value(2), 0, "led inactive: the spec sets no value");
    assert_eq!(prop(&r, "door")["value"], false);

    sim.pull(1, Pull::Up);
    limb.wait("panel", STEP, |r| {
        prop(r, "door")["value"] == true && prop(r, "door")["risingEdges"] == 1
    });
    sim.pull(1, Pull::Down);
    let r = limb.wait("panel", STEP, |r| prop(r, "door")["fallingEdges"] == 1);
    assert_eq!(prop(&r, "door")["value"], false);
    assert_eq!(prop(&r, "door")["lostEdges"], 0);
    assert!(prop(&r, "door")["updatedAt"].is_string(), "{r:#}");

    sim.pull(3, Pull::Up);
    let r = limb.wait("panel", STEP, |r| prop(r, "level")["value"] == true);
    assert!(
        prop(&r, "level")["risingEdges"].is_null(),
        "no edge counts without edge detection"
    );

    // A spec change drives the outputs, on the lines already held.
    limb.put(
        "panel.yaml",
        &link(
            "panel",
            chip,
            "[{name: relay, line: relay1, direction: output, value: false}, {name: led, line: 2, direction: output, value: true}, {name: door, line: 1, direction: input, edges: both}, {name: level, line: 3, direction: input}]",
        ),
    );
    limb.wait("panel", STEP, |r| {
        prop(r, "led")["value"] == true && prop(r, "relay")["value"] == false
    });
    assert_eq!((sim.value(6), sim.value(2)), (0, 1));
    assert_eq!(
        limb.latest["panel"]["restarts"], 0,
        "a changed value is not a restart"
    );
}

#[test]
fn cdev_on_gpio_sim_limb_refuses_a_taken_line_naming_its_link_and_a_line_beyond_the_policy() {
    let sim = Sim::new("limb-refuse", 8, &[], &[]);
    let chip = sim.chip();
    let mut limb = Limb::start("refuse", &format!("gpio: ['{chip} 0-5']\n"));
    limb.put(
        "first.yaml",
        &link(
            "first",
            chip,
            "[{name: relay, line: 4, direction: output, value: true}]",
        ),
    );
    limb.wait("first", START, healthy);
    limb.put(
        "second.yaml",
        &link(
            "second",
            chip,
            "[{name: relay, line: 4, direction: output}]",
        ),
    );
    let r = limb.wait("second", STEP, |r| {
        r["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("in use by device default/first"))
    });
    assert_ne!(r["phase"], "Healthy", "{r:#}");
    assert_eq!(sim.value(4), 1, "the holder's output is untouched");

    limb.put(
        "beyond.yaml",
        &link(
            "beyond",
            chip,
            "[{name: siren, line: 7, direction: output}]",
        ),
    );
    let r = limb.wait("beyond", STEP, |r| {
        r.to_string()
            .contains(r#"node policy refused gpio grant \"properties[0].line\""#)
    });
    assert_eq!(r["conditions"][3]["type"], "DeviceCreated", "{r:#}");
    assert_eq!(r["conditions"][3]["status"], "False", "{r:#}");
    assert_eq!(sim.value(7), 0);
    let r = limb.wait("first", STEP, healthy);
    assert_eq!(
        prop(&r, "relay")["value"],
        true,
        "the first link keeps serving"
    );
}

#[test]
fn cdev_on_gpio_sim_limb_hot_swap_keeps_every_output_level_and_the_edge_counts() {
    let sim = Arc::new(Sim::new("limb-swap", 8, &[], &[]));
    let chip = sim.chip().to_owned();
    let mut limb = Limb::start("swap", &format!("gpio: ['{chip}']\n"));
    limb.put(
        "outputs.yaml",
        &link(
            "outputs",
            &chip,
            "[{name: relay, line: 0, direction: output, value: true}, {name: led, line: 1, direction: output, value: false, shutdownValue: true}, {name: door, line: 2, direction: input, edges: both}]",
        ),
    );
    let r = limb.wait("outputs", START, |r| {
        healthy(r) && prop(r, "relay")["value"] == true
    });
    let version = r["adaptorVersion"].as_str().unwrap().to_owned();
    sim.pull(2, Pull::Up);
    limb.wait("outputs", STEP, |r| prop(r, "door")["risingEdges"] == 1);

    // Samples both outputs as fast as sysfs answers, from before the swap until well
    // after the old instance was shut down.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (sim, stop) = (Arc::clone(&sim), Arc::clone(&stop));
        std::thread::spawn(move || {
            let (mut samples, mut glitches) = (0_u64, Vec::new());
            while !stop.load(Ordering::Relaxed) && samples < 10_000_000 {
                let levels = (sim.value(0), sim.value(1));
                samples += 1;
                if levels != (1, 0) {
                    glitches.push((samples, levels));
                }
            }
            (samples, glitches)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let v2 = fs::read(env_path("OCTOPUS_GPIO_ADAPTORS").join("adaptor_gpio_v2.wasm")).unwrap();
    limb.put("gpio.wasm", &v2);
    let r = limb.wait("outputs", START, |r| {
        r["adaptorVersion"]
            .as_str()
            .is_some_and(|v| v.ends_with("+v2"))
            && healthy(r)
    });
    assert_ne!(r["adaptorVersion"], version.as_str());
    // The old instance is shut down after the new one's first poll; give it time.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let (samples, glitches) = sampler.join().unwrap();
    eprintln!(
        "OCTOPUS-GPIO-FIGURE hot-swap samples={samples} glitches={}",
        glitches.len()
    );
    assert!(samples > 100, "the sampler ran: {samples}");
    assert!(
        glitches.is_empty(),
        "outputs changed across the swap (sample, (relay, led)): {:?}",
        &glitches[..glitches.len().min(10)]
    );
    assert_eq!(r["swaps"], 1, "{r:#}");
    assert_eq!(
        prop(&r, "door")["risingEdges"],
        1,
        "counts survive the swap"
    );

    // The new instance drives the lines and counts on.
    sim.pull(2, Pull::Down);
    limb.wait("outputs", STEP, |r| prop(r, "door")["fallingEdges"] == 1);
    limb.put(
        "outputs.yaml",
        &link(
            "outputs",
            &chip,
            "[{name: relay, line: 0, direction: output, value: false}, {name: led, line: 1, direction: output, value: false, shutdownValue: true}, {name: door, line: 2, direction: input, edges: both}]",
        ),
    );
    limb.wait("outputs", STEP, |r| prop(r, "relay")["value"] == false);
    assert_eq!(sim.value(0), 0);
}

/// The figure: from the sysfs write that pulls the pin to the limb's JSON line showing
/// the edge in the device's status, over 1,000 edges, and how many were lost. Edges are
/// 20 ms apart, so each finds the adaptor back in its wait (the limb spaces polls at
/// least 10 ms apart; an edge in that gap waits for the next poll). Under TCG
/// emulation: one emulated CPU runs the kernel, the limb, the adaptor and this test.
#[test]
fn cdev_on_gpio_sim_limb_edge_to_status_latency_over_1000_edges() {
    const EDGES: u64 = 1000;
    let sim = Sim::new("limb-latency", 8, &[], &[]);
    let chip = sim.chip();
    let mut limb = Limb::start("latency", &format!("gpio: ['{chip}']\n"));
    limb.put(
        "contact.yaml",
        &link(
            "contact",
            chip,
            "[{name: contact, line: 0, direction: input, edges: both}]",
        ),
    );
    limb.wait("contact", START, healthy);
    let mut latencies = Vec::with_capacity(EDGES as usize);
    for i in 0..EDGES {
        let pulled = Instant::now();
        sim.pull(0, if i % 2 == 0 { Pull::Up } else { Pull::Down });
        let seen = i + 1;
        limb.wait("contact", STEP, |r| {
            let p = prop(r, "contact");
            p["risingEdges"].as_u64().unwrap_or(0) + p["fallingEdges"].as_u64().unwrap_or(0) >= seen
        });
        latencies.push(pulled.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = &limb.latest["contact"];
    let p = prop(r, "contact");
    let counted = p["risingEdges"].as_u64().unwrap() + p["fallingEdges"].as_u64().unwrap();
    let lost = p["lostEdges"].as_u64().unwrap();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    eprintln!(
        "OCTOPUS-GPIO-FIGURE edge-to-status edges={EDGES} counted={counted} lost={lost} p50_us={} p99_us={} max_us={}",
        at(0.5).as_micros(),
        at(0.99).as_micros(),
        latencies[latencies.len() - 1].as_micros()
    );
    assert_eq!((counted, lost), (EDGES, 0), "{r:#}");
}
