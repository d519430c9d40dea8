//! Where the suites find things outside the test binary: files of this checkout, the
//! build cache `scripts/env.sh` fills, and the adaptor components in it. The one copy of
//! each lookup; it uses `std` only, so the release containment suite of the limb can
//! include it without building this crate's API-server half.

use std::path::PathBuf;

/// A file of this repository, found when the test runs. `env!("CARGO_MANIFEST_DIR")`
/// would keep the directory the binary was built in, and the target dir that
/// `scripts/env.sh` shares between checkouts can hand that binary to another one. Every
/// package sits one folder below the root.
pub fn repo_file(path: &str) -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    std::path::Path::new(&manifest).join("..").join(path)
}

/// The cache `scripts/env.sh` uses: `$OCTOPUS_CACHE`, else `$XDG_CACHE_HOME/octopus`,
/// else `~/.cache/octopus`.
pub fn cache_home() -> PathBuf {
    if let Some(c) = std::env::var_os("OCTOPUS_CACHE") {
        return PathBuf::from(c);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("octopus")
}

/// Where the built components are (`$OCTOPUS_ADAPTORS_DIR`, else the cache's
/// `adaptors/`, as in `scripts/env.sh`); fails with the command to run when they are
/// missing.
pub fn adaptors_dir() -> PathBuf {
    let dir = std::env::var_os("OCTOPUS_ADAPTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_home().join("adaptors"));
    assert!(
        dir.join("adaptor_dummy.wasm").exists(),
        "adaptor components not found in {}; run scripts/build-adaptors.sh (scripts/test.sh does) or set OCTOPUS_ADAPTORS_DIR",
        dir.display()
    );
    dir
}

/// The file of the component `name` (without `.wasm`).
pub fn component_path(name: &str) -> PathBuf {
    adaptors_dir().join(format!("{name}.wasm"))
}

/// The bytes of the component `name` (without `.wasm`).
pub fn component(name: &str) -> Vec<u8> {
    let path = component_path(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}; run scripts/build-adaptors.sh (or set OCTOPUS_ADAPTORS_DIR)",
            path.display()
        )
    })
}
