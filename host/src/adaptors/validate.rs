//! Load-time validation: a component must export our `driver` and import nothing beyond
//! our interfaces and the inert WASI subset we provide.

use wasmtime::Engine;
use wasmtime::component::Component;

/// The WIT package this limb implements.
pub const PACKAGE: &str = "octopus:adaptor";
/// The package version, matched on major.minor (0.1.x).
pub const VERSION: &str = "0.1.3";

/// WASI interfaces the limb links, all inert: no preopens, no environment, no sockets.
const WASI_ALLOWED: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

const OURS: &[&str] = &[
    "types", "log", "clock", "events", "serial", "socket", "gpio", "ble",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "built against {found}, but this limb supports {PACKAGE}@0.1.x; rebuild the adaptor against the WIT shipped with this limb"
    )]
    Version { found: String },
    #[error("imports interfaces this limb does not provide: {}", .0.join(", "))]
    Imports(Vec<String>),
    #[error("does not export {PACKAGE}/driver@0.1.x (exports: {}); it was built for another world", .0.join(", "))]
    NoDriver(Vec<String>),
}

/// What an import is to this limb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Import {
    /// One of our interfaces, of a contract version this limb supports.
    Ours,
    /// One of our interfaces, of a contract version this limb does not support.
    OtherVersion,
    /// A WASI interface the limb links, inert: nothing is granted through it.
    Wasi,
    /// Anything else: the limb refuses the component.
    Unknown,
}

/// Classifies one import name, as [`check_names`] judges it.
pub fn classify(name: &str) -> Import {
    match ours(name) {
        Some((iface, _)) if !OURS.contains(&iface.as_str()) => Import::Unknown,
        Some((_, version)) if !compatible(&version) => Import::OtherVersion,
        Some(_) => Import::Ours,
        None => {
            let (iface, version) = name.split_once('@').unwrap_or((name, ""));
            if WASI_ALLOWED.contains(&iface) && version.starts_with("0.2.") {
                Import::Wasi
            } else {
                Import::Unknown
            }
        }
    }
}

/// The names of the component's imports and exports, in its own order.
pub fn names(engine: &Engine, component: &Component) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
    let exports = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    (imports, exports)
}

/// Checks the component's imports and exports.
pub fn check(engine: &Engine, component: &Component) -> Result<(), Error> {
    let (imports, exports) = names(engine, component);
    check_names(&imports, &exports)
}

/// Our interface and its version, when `name` is in our package.
fn ours(name: &str) -> Option<(String, String)> {
    let (iface, version) = name.split_once('@').unwrap_or((name, ""));
    iface
        .strip_prefix(PACKAGE)
        .and_then(|rest| rest.strip_prefix('/'))
        .map(|i| (i.to_owned(), version.to_owned()))
}

/// The pure part of [`check`], on interface names.
pub fn check_names(imports: &[String], exports: &[String]) -> Result<(), Error> {
    if let Some(found) = imports
        .iter()
        .chain(exports)
        .filter_map(|n| ours(n))
        .find(|(_, v)| !compatible(v))
        .map(|(_, v)| format!("{PACKAGE}@{v}"))
    {
        return Err(Error::Version { found });
    }
    let refused: Vec<String> = imports
        .iter()
        .filter(|name| classify(name) == Import::Unknown)
        .cloned()
        .collect();
    if !refused.is_empty() {
        return Err(Error::Imports(refused));
    }
    if !exports
        .iter()
        .any(|n| ours(n).is_some_and(|(i, _)| i == "driver"))
    {
        return Err(Error::NoDriver(exports.to_vec()));
    }
    Ok(())
}

fn compatible(version: &str) -> bool {
    version.starts_with("0.1.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn imports_are_classified_as_check_names_judges_them() {
        for (name, want) in [
            ("octopus:adaptor/log@0.1.0", Import::Ours),
            ("octopus:adaptor/log@0.0.9", Import::OtherVersion),
            ("octopus:adaptor/i2c@0.1.0", Import::Unknown),
            ("wasi:io/streams@0.2.6", Import::Wasi),
            ("wasi:io/streams@0.3.0", Import::Unknown),
            ("wasi:sockets/tcp@0.2.6", Import::Unknown),
            ("acme:thing/host-stuff@1.0.0", Import::Unknown),
        ] {
            assert_eq!(classify(name), want, "{name}");
        }
    }

    #[test]
    fn validation_table() {
        let driver = s(&["octopus:adaptor/driver@0.1.0"]);
        type Case = (
            &'static str,
            Vec<String>,
            Vec<String>,
            Result<(), &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "ours and wasi",
                s(&["octopus:adaptor/log@0.1.0", "wasi:io/streams@0.2.6"]),
                driver.clone(),
                Ok(()),
            ),
            (
                "patch versions are compatible",
                s(&["octopus:adaptor/log@0.1.7"]),
                driver.clone(),
                Ok(()),
            ),
            (
                "sockets are refused",
                s(&["wasi:sockets/tcp@0.2.6"]),
                driver.clone(),
                Err("wasi:sockets/tcp@0.2.6"),
            ),
            (
                "http is refused",
                s(&["wasi:http/outgoing-handler@0.2.0"]),
                driver.clone(),
                Err("wasi:http"),
            ),
            (
                "wasi 0.3 is refused",
                s(&["wasi:io/streams@0.3.0"]),
                driver.clone(),
                Err("wasi:io/streams@0.3.0"),
            ),
            (
                "foreign imports are named",
                s(&["acme:thing/host-stuff@1.0.0"]),
                driver.clone(),
                Err("acme:thing/host-stuff@1.0.0"),
            ),
            (
                "another world",
                vec![],
                s(&["acme:thing/api@1.0.0"]),
                Err("another world"),
            ),
            (
                "old wit version",
                s(&["octopus:adaptor/log@0.0.9"]),
                s(&["octopus:adaptor/driver@0.0.9"]),
                Err("octopus:adaptor@0.0.9"),
            ),
            (
                "unknown interface of ours",
                s(&["octopus:adaptor/i2c@0.1.0"]),
                driver.clone(),
                Err("i2c"),
            ),
        ];
        for (name, imports, exports, want) in cases {
            let got = check_names(&imports, &exports);
            match want {
                Ok(()) => assert_eq!(got, Ok(()), "{name}"),
                Err(needle) => {
                    let msg = got.expect_err(name).to_string();
                    assert!(msg.contains(needle), "{name}: {msg}");
                }
            }
        }
    }
}
