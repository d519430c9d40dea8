//! Load-time validation, the compile cache, and the compile pool's bounds.

use limb::adaptors::compile::SMALL_COMPONENT_BYTES;
use limb::adaptors::{self, CompileCache};
use limb::capabilities::{Backends, Policy};
use limb::standalone::Standalone;
use limb::status::Phase;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::common::*;

async fn load_err(bytes: Vec<u8>) -> String {
    let h = harness();
    adaptors::load(&h.ctx.runtime, &h.cache, bytes, "test".into())
        .await
        .unwrap_err()
        .to_string()
}

#[tokio::test]
async fn a_truncated_component_is_refused() {
    let mut bytes = component("adaptor_dummy");
    bytes.truncate(bytes.len() / 2);
    let err = load_err(bytes).await;
    assert!(err.contains("not a WebAssembly component"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_wasm_is_refused() {
    let err = load_err(b"#!/bin/sh\necho hi\n".to_vec()).await;
    assert!(err.contains("not a WebAssembly component"), "{err}");
}

#[tokio::test]
async fn a_component_of_another_world_is_refused_naming_its_imports() {
    let err = load_err(component("adaptor_other_world")).await;
    assert!(err.contains("acme:thing/host-stuff@1.0.0"), "{err}");
}

#[tokio::test]
async fn a_component_built_for_an_older_contract_gets_a_version_message() {
    let err = load_err(component("adaptor_legacy")).await;
    assert!(
        err.contains("octopus:adaptor@0.0.9") && err.contains("0.1.x"),
        "{err}"
    );
}

#[tokio::test]
async fn the_compile_cache_is_used_and_a_corrupt_entry_is_rebuilt() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(CompileCache::new(Some(dir.path().to_owned())));
    let bytes = component("adaptor_dummy");
    let first = adaptors::load(&h.ctx.runtime, &cache, bytes.clone(), "a".into())
        .await
        .unwrap();
    assert!(!first.from_cache);
    let second = adaptors::load(&h.ctx.runtime, &cache, bytes.clone(), "a".into())
        .await
        .unwrap();
    assert!(second.from_cache);
    let artifact = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    let mut data = std::fs::read(&artifact).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&artifact, data).unwrap();
    let third = adaptors::load(&h.ctx.runtime, &cache, bytes, "a".into())
        .await
        .unwrap();
    assert!(
        !third.from_cache,
        "a corrupt entry must be rebuilt, not loaded"
    );
    assert_eq!(third.info.name, "adaptors.edge.cattle.io/dummy");
}

#[tokio::test]
async fn a_full_compile_cache_disk_costs_the_cache_not_the_adaptor() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(CompileCache::new(Some(dir.path().to_owned())));
    let bytes = component("adaptor_dummy");
    adaptors::load(&h.ctx.runtime, &cache, bytes.clone(), "a".into())
        .await
        .unwrap();
    let artifact = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    std::fs::remove_file(&artifact).unwrap();
    // The cache writes a temporary file first: make that write hit a full disk.
    let tmp = artifact.with_extension(format!("tmp{}", std::process::id()));
    std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
    let loaded = adaptors::load(&h.ctx.runtime, &cache, bytes.clone(), "a".into())
        .await
        .unwrap();
    assert!(!loaded.from_cache);
    assert_eq!(loaded.info.name, "adaptors.edge.cattle.io/dummy");
    assert!(!artifact.exists(), "no half-written entry");
    assert!(
        std::fs::symlink_metadata(&tmp).is_err(),
        "the temporary file is cleaned up"
    );
    // Space again: the next load fills the cache, the one after hits it.
    adaptors::load(&h.ctx.runtime, &cache, bytes.clone(), "a".into())
        .await
        .unwrap();
    let hit = adaptors::load(&h.ctx.runtime, &cache, bytes, "a".into())
        .await
        .unwrap();
    assert!(hit.from_cache);
}

/// A component that is slow to compile and over the small lane's size: functions of
/// nested-free `if`s over many locals, which keep the register allocator busy. It exports
/// nothing, so once compiled it is refused for having no `driver`.
fn heavy() -> Vec<u8> {
    static HEAVY: OnceLock<Vec<u8>> = OnceLock::new();
    HEAVY
        .get_or_init(|| {
            const LOCALS: usize = 128;
            let mut wat = String::from("(component (core module\n");
            for f in 0..260 {
                wat.push_str(&format!(
                    "(func (export \"f{f}\") (param i32 i32) (result i32) (local{})\n",
                    " i32".repeat(LOCALS)
                ));
                for s in 0..400 {
                    let (a, b, c) = (
                        (s * 7 + f) % LOCALS,
                        (s * 3 + 1) % LOCALS,
                        (s * 5 + 2) % LOCALS,
                    );
                    wat.push_str(&format!(
                        "local.get {a} if local.get {b} i32.const 1 i32.add local.set {c} end\n"
                    ));
                }
                wat.push_str("local.get 2)\n");
            }
            wat.push_str("))");
            let bytes = wat::parse_str(&wat).unwrap();
            assert!(bytes.len() > SMALL_COMPONENT_BYTES, "{} bytes", bytes.len());
            bytes
        })
        .clone()
}

/// Loads `bytes` under the harness's node policy: the error, if any, and how long it took.
async fn timed_load(
    h: &Harness,
    cache: &Arc<CompileCache>,
    bytes: Vec<u8>,
    name: &str,
) -> (Result<(), String>, Duration) {
    let started = Instant::now();
    let result = adaptors::load_with(
        &h.ctx.runtime,
        cache,
        h.ctx.policy.compile(),
        bytes,
        name.into(),
    )
    .await;
    (
        result.map(|_| ()).map_err(|e| e.to_string()),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_small_adaptor_is_not_held_behind_a_big_compile() {
    let h = Arc::new(harness());
    // No cache: both compile, in every run.
    let cache = Arc::new(CompileCache::new(None));
    let heavy = heavy();
    let big = tokio::spawn({
        let (h, cache) = (h.clone(), cache.clone());
        async move { timed_load(&h, &cache, heavy, "heavy").await }
    });
    // Let the big one take the compile slot first: the case that used to hold the small
    // one back for the whole big compile.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (small, small_time) = timed_load(&h, &cache, component("adaptor_dummy"), "dummy").await;
    let big_running = !big.is_finished();
    let (big, big_time) = big.await.unwrap();
    assert!(small.is_ok(), "{small:?}");
    let big = big.unwrap_err();
    assert!(
        big.contains("does not export"),
        "compiled, then refused: {big}"
    );
    eprintln!("dummy loaded in {small_time:?} beside a big compile of {big_time:?}");
    assert!(
        big_running,
        "the small one finished while the big one was compiling"
    );
    assert!(
        small_time * 3 < big_time,
        "the small one took {small_time:?}, the big one {big_time:?}"
    );
}

#[tokio::test]
async fn an_over_size_component_is_refused_before_it_is_compiled() {
    let h = harness_with(
        Policy::from_yaml("maxComponentBytes: 4096").unwrap(),
        Backends::real(true),
        |_| {},
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(CompileCache::new(Some(dir.path().to_owned())));
    // Not WebAssembly at all: compiled, it would be refused as such.
    let (err, _) = timed_load(&h, &cache, vec![0xff; 5000], "junk").await;
    assert_eq!(
        err.unwrap_err(),
        "component is 5000 bytes, over the node policy's maxComponentBytes of 4096"
    );
    let dummy = component("adaptor_dummy");
    let (err, _) = timed_load(&h, &cache, dummy.clone(), "dummy").await;
    assert_eq!(
        err.unwrap_err(),
        format!(
            "component is {} bytes, over the node policy's maxComponentBytes of 4096",
            dummy.len()
        )
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing was compiled"
    );
    // At the bound it is compiled (and refused for what it is).
    let (err, _) = timed_load(&h, &cache, vec![0xff; 4096], "junk").await;
    assert!(
        err.unwrap_err().contains("not a WebAssembly component"),
        "checked only after the size"
    );
}

#[tokio::test]
async fn a_compile_past_the_policy_timeout_is_abandoned() {
    let h = harness_with(
        Policy::from_yaml("compileTimeout: 200ms").unwrap(),
        Backends::real(true),
        |_| {},
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(CompileCache::new(Some(dir.path().to_owned())));
    let (err, refused_after) = timed_load(&h, &cache, heavy(), "heavy").await;
    assert_eq!(
        err.unwrap_err(),
        "compilation took longer than the node policy's compileTimeout of 200ms; abandoned"
    );
    // The same component under the default bounds: it waits for the abandoned compile's
    // slot, then compiles in full (nothing of the abandoned compile was kept).
    let started = Instant::now();
    let err = adaptors::load(&h.ctx.runtime, &cache, heavy(), "heavy".into())
        .await
        .unwrap_err()
        .to_string();
    let full = started.elapsed();
    assert!(err.contains("does not export"), "{err}");
    assert!(
        refused_after * 4 < full,
        "refused after {refused_after:?}; the whole compile takes {full:?}"
    );
}

#[tokio::test]
async fn standalone_serves_a_small_adaptor_while_a_big_one_compiles() {
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    // Sorted first, so a folder scanned one file at a time would compile it first.
    std::fs::write(dir.path().join("a_heavy.wasm"), heavy()).unwrap();
    std::fs::write(dir.path().join("dummy.wasm"), component("adaptor_dummy")).unwrap();
    std::fs::write(
        dir.path().join("fan.yaml"),
        r#"apiVersion: edge.cattle.io/v1alpha1
kind: DeviceLink
metadata: {name: fan}
spec:
  adaptor: {node: edge-worker, name: adaptors.edge.cattle.io/dummy}
  model: {apiVersion: devices.edge.cattle.io/v1alpha1, kind: DummySpecialDevice}
  template:
    spec: {protocol: {location: lab}, gear: slow, "on": true, parameters: {syncInterval: 100ms}}
"#,
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let limb = Standalone::new(
        h.ctx.clone(),
        Arc::new(CompileCache::new(None)),
        dir.path().to_owned(),
        None,
    );
    let limb = tokio::spawn(limb.run(Duration::from_millis(100), stopped));
    let heavy_done = || {
        h.ctx
            .board
            .adaptors()
            .into_iter()
            .any(|a| a.source.ends_with("a_heavy.wasm"))
    };
    h.wait(&key("fan"), Duration::from_secs(60), |r| {
        r.phase == Phase::Healthy
    })
    .await;
    let fan_serving = started.elapsed();
    assert!(
        !heavy_done(),
        "the fan serves while the big one still compiles"
    );
    while !heavy_done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the big one never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let heavy_refused = started.elapsed();
    eprintln!(
        "the fan served after {fan_serving:?}; the big one was refused after {heavy_refused:?}"
    );
    assert!(
        fan_serving * 3 < heavy_refused,
        "the fan served after {fan_serving:?}, the big one was refused after {heavy_refused:?}"
    );
    stop.send(true).unwrap();
    limb.await.unwrap();
}
