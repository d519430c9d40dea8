//! Paths into the repository for tests and benches of every package (each sits one
//! folder below the root); shared with the brain's unit tests and the limb's tests
//! and benches.

/// A file of this repository, found when the test runs. `env!("CARGO_MANIFEST_DIR")`
/// would keep the directory the binary was built in, and the target dir that
/// `scripts/env.sh` shares between checkouts can hand that binary to another one.
pub fn repo_file(path: &str) -> std::path::PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    std::path::Path::new(&manifest).join("..").join(path)
}
