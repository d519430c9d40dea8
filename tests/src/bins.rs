//! The `limb`, `brain` and `octopus` executables, built from this checkout before a suite runs one.
//!
//! `env!("CARGO_BIN_EXE_…")` names only the binaries of the package that owns the test,
//! and neither binary belongs to this crate. Guessing a path next to another binary ran
//! whatever an older build had left there. So the first test that needs a binary asks
//! Cargo to build both, from the repository this test binary belongs to, with the
//! profile it was built with, and runs exactly the executables Cargo reports in its
//! `compiler-artifact` messages. Cargo's own freshness check (sources, features,
//! toolchain) is then the check: a stale binary cannot be reported. The build runs once
//! per test binary; when nothing changed it costs Cargo's no-op time (about a second).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::paths::repo_file;

struct Bins {
    limb: PathBuf,
    brain: PathBuf,
    octopus: PathBuf,
}

static BINS: OnceLock<Bins> = OnceLock::new();

/// The `limb` executable built from this checkout.
pub fn limb() -> &'static Path {
    &bins().limb
}

/// The `brain` executable built from this checkout.
pub fn brain() -> &'static Path {
    &bins().brain
}

/// The `octopus` command built from this checkout.
pub fn octopus() -> &'static Path {
    &bins().octopus
}

fn bins() -> &'static Bins {
    BINS.get_or_init(build)
}

fn build() -> Bins {
    // `cargo test` runs tests with `$CARGO` set to itself; a bare run falls back to PATH.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_file(""))
        .args([
            "build",
            "--locked",
            "-p",
            "limb",
            "-p",
            "brain",
            "-p",
            "octopus-cli",
            "--bins",
        ])
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    // Cargo runs this test with the package's own variables set (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME, …). Build scripts (ring's, for one) ask to rerun when those change,
    // so passing them on would rebuild such crates here and again in the next `cargo
    // test`, every time.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_for_the_test) {
            cmd.env_remove(&name);
        }
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running cargo to build limb and brain: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p limb -p brain -p octopus-cli failed ({}); its errors are above",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    Bins {
        limb: executable(&stdout, "limb"),
        brain: executable(&stdout, "brain"),
        octopus: executable(&stdout, "octopus"),
    }
}

/// Whether Cargo sets `name` for the test it runs (rather than the user for Cargo).
fn set_for_the_test(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_MANIFEST_LINKS",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
            "OUT_DIR",
        ]
        .contains(&name)
}

/// The executable Cargo reported for the bin target `name` of the package `name`.
fn executable(messages: &str, name: &str) -> PathBuf {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo build reported no executable for the bin {name}"))
}

#[cfg(test)]
mod tests {
    use super::{executable, set_for_the_test};

    #[test]
    fn the_package_variables_of_the_test_are_not_passed_on_and_the_users_are() {
        for (name, dropped) in [
            ("CARGO_MANIFEST_DIR", true),
            ("CARGO_PKG_NAME", true),
            ("CARGO_PKG_VERSION_MAJOR", true),
            ("CARGO_TARGET_TMPDIR", true),
            ("CARGO_TARGET_DIR", false),
            ("CARGO_INCREMENTAL", false),
            ("CARGO_HOME", false),
            ("RUSTFLAGS", false),
        ] {
            assert_eq!(set_for_the_test(name), dropped, "{name}");
        }
    }

    #[test]
    fn the_executable_is_the_bin_artifact_of_that_name() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"limb","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"limb","kind":["bin"]},"executable":"/t/debug/limb"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable(messages, "limb"),
            std::path::Path::new("/t/debug/limb")
        );
    }
}
