//! Load-time validation and the compile cache.

use limb::adaptors::{self, CompileCache};
use std::sync::Arc;

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
