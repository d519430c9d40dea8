//! `scripts/bench-languages.sh`: what an adaptor costs per guest language. For the
//! registers adaptor of every language in `adaptors-wasm/languages/` (the same behaviour
//! written six times), in one process and one run:
//!
//! - component size, compile time with an empty cache and load time from a warm one;
//! - instantiation (a fresh store and instance, no call);
//! - resident memory per configured instance that has polled once;
//! - CPU per poll against a fast Rust Modbus server on loopback, and its ratio to a
//!   native tokio-modbus client doing the same exchange in alternating rounds;
//! - CPU per poll of the counter template (no I/O: the cost of the call and the
//!   language's runtime alone).
//!
//! Prints the table and writes it to `docs/benchmarks/languages.md` (`LANGUAGES_OUT`).
//! Every loop is bounded in count; all traffic stays on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench harness"
)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cpu_time::ThreadTime;
use limb::capabilities::Grants;
use limb::engine::{DeviceTag, Pooling};
use limb::supervisor::Instance;
use serde_json::{Value, json};
use support::{Stat, adaptors_dir, ctx, instance, load, rss_bytes, start_server, stat};

const LANGUAGES: [&str; 6] = ["rust", "c", "go", "python", "javascript", "zig"];
/// Live instances per language for the memory figure.
const RESIDENT: usize = 40;
const INSTANTIATIONS: usize = 30;
const ROUNDS: usize = 8;
const POLLS_PER_ROUND: u32 = 300;

struct Row {
    lang: &'static str,
    bytes: usize,
    compile_ms: f64,
    load_ms: f64,
    instantiate_us: f64,
    resident_kib: f64,
    poll_cpu_us: f64,
    /// Adaptor CPU over native CPU per round: median and spread.
    ratio: Stat,
    counter_cpu_us: f64,
}

fn registers_spec(port: u16) -> Value {
    json!({"endpoint": format!("127.0.0.1:{port}"), "unitId": 1, "address": 0, "count": 2, "syncIntervalMs": 1000})
}

async fn measure(lang: &'static str, port: u16, scratch: &Path) -> Row {
    let c = ctx(Pooling::Auto, 256);
    let path = adaptors_dir().join(format!("adaptor_registers_{lang}.wasm"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let size = bytes.len();

    // Compile with an empty cache, then load from the warm one.
    let cache = scratch.join(format!("cache-{lang}"));
    let t = Instant::now();
    let adaptor = load(&c, &cache, bytes.clone(), lang).await;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut loads = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        load(&c, &cache, bytes.clone(), lang).await;
        loads.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // Instantiation alone.
    let model = adaptor
        .model("devices.edge.cattle.io/v1alpha1", "RegisterDevice")
        .unwrap();
    let spec = registers_spec(port);
    let (grants, problems) = Grants::resolve(&[], &spec, &model.resource_fields);
    assert!(problems.is_empty(), "{problems:?}");
    let grants = Arc::new(grants);
    let mut inst = Vec::new();
    for i in 0..INSTANTIATIONS {
        let t = Instant::now();
        let device = Instance::new(
            &c,
            adaptor.clone(),
            DeviceTag(format!("i{i}").into()),
            grants.clone(),
        )
        .await
        .unwrap();
        inst.push(t.elapsed().as_secs_f64() * 1e6);
        device.shutdown().await;
    }

    // Resident memory of live, configured instances that have polled once.
    let before = rss_bytes();
    let mut live = Vec::new();
    for _ in 0..RESIDENT {
        let mut d = instance(&c, &adaptor, "RegisterDevice", &spec).await;
        d.poll().await.unwrap();
        live.push(d);
    }
    let resident_kib = (rss_bytes().saturating_sub(before)) as f64 / 1024.0 / RESIDENT as f64;
    for d in live {
        d.shutdown().await;
    }

    // CPU per poll, against native code in alternating rounds.
    use tokio_modbus::client::Reader;
    let mut device = instance(&c, &adaptor, "RegisterDevice", &spec).await;
    let doc: Value = serde_json::from_str(&device.poll().await.unwrap()).unwrap();
    assert_eq!(doc["registers"], json!([0, 1]), "{lang}: {doc}");
    assert_eq!(doc["language"], lang);
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let mut native = tokio_modbus::client::tcp::attach_slave(stream, tokio_modbus::Slave(1));
    let (mut wasm, mut ratios) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut pair = [0.0; 2];
        for side in [round % 2, 1 - round % 2] {
            let cpu = ThreadTime::now();
            for _ in 0..POLLS_PER_ROUND {
                if side == 0 {
                    device.poll().await.unwrap();
                } else {
                    native.read_holding_registers(0, 2).await.unwrap().unwrap();
                }
            }
            pair[side] = cpu.elapsed().as_secs_f64() * 1e6 / f64::from(POLLS_PER_ROUND);
        }
        wasm.push(pair[0]);
        ratios.push(pair[0] / pair[1]);
    }
    device.shutdown().await;

    // The counter template: the call and the runtime, no I/O.
    let counter_path = adaptors_dir().join(format!("adaptor_counter_{lang}.wasm"));
    let counter = load(
        &c,
        &cache,
        std::fs::read(&counter_path).unwrap(),
        &format!("counter-{lang}"),
    )
    .await;
    let mut d = instance(
        &c,
        &counter,
        "CounterDevice",
        &json!({"step": 1, "syncIntervalMs": 1000}),
    )
    .await;
    let mut counter_cpu = Vec::new();
    for _ in 0..ROUNDS {
        let cpu = ThreadTime::now();
        for _ in 0..POLLS_PER_ROUND {
            d.poll().await.unwrap();
        }
        counter_cpu.push(cpu.elapsed().as_secs_f64() * 1e6 / f64::from(POLLS_PER_ROUND));
    }
    d.shutdown().await;

    Row {
        lang,
        bytes: size,
        compile_ms,
        load_ms: stat("load", "ms", loads).median,
        instantiate_us: stat("instantiate", "us", inst).median,
        resident_kib,
        poll_cpu_us: stat("poll", "us", wasm).median,
        ratio: stat("ratio", "x", ratios),
        counter_cpu_us: stat("counter poll", "us", counter_cpu).median,
    }
}

fn render(rows: &[Row]) -> String {
    let mut t = String::from(
        "| language | registers .wasm | compile, empty cache | load, warm cache | instantiate | resident per instance | CPU per Modbus poll | ratio to native (p10 .. p90) | CPU per counter poll |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        t.push_str(&format!(
            "| {} | {:.1} KiB | {:.0} ms | {:.2} ms | {:.0} us | {:.0} KiB | {:.1} us | {:.2}x ({:.2} .. {:.2}) | {:.1} us |\n",
            r.lang,
            r.bytes as f64 / 1024.0,
            r.compile_ms,
            r.load_ms,
            r.instantiate_us,
            r.resident_kib,
            r.poll_cpu_us,
            r.ratio.median,
            r.ratio.p10,
            r.ratio.p90,
            r.counter_cpu_us,
        ));
    }
    t
}

fn main() {
    let port = start_server();
    let scratch = tempfile::tempdir().unwrap();
    // One thread, one current-thread runtime: that thread's CPU time is exactly the
    // client side of each exchange (the server runs on its own thread).
    let dir = scratch.path().to_owned();
    let rows = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut rows = Vec::new();
                for lang in LANGUAGES {
                    eprintln!("measuring {lang}");
                    rows.push(measure(lang, port, &dir).await);
                }
                rows
            })
    })
    .join()
    .unwrap();
    let table = render(&rows);
    println!("{table}");
    if let Some(out) = std::env::var_os("LANGUAGES_OUT") {
        let doc = format!(
            "# Adaptor cost per guest language\n\n\
             The registers adaptor of `adaptors-wasm/languages/` (the same Modbus TCP behaviour \
             written in each language) and its counter template, through the limb's engine \
             (release build, pooling allocator), against a fast Rust Modbus server on loopback. \
             \"Ratio to native\" divides the adaptor's CPU per poll by a native tokio-modbus \
             client's for the same exchange, measured in alternating rounds of {POLLS_PER_ROUND} \
             polls ({ROUNDS} rounds); it is the figure to compare, absolute times are noisy on \
             a shared machine. Resident memory is the RSS growth over {RESIDENT} configured \
             instances that each polled once, divided by {RESIDENT}.\n\n\
             Command: `scripts/bench-languages.sh`. Machine and date: {}.\n\n{table}",
            support::measured_on()
        );
        std::fs::write(out, doc).unwrap();
    }
}
