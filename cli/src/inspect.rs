//! `octopus inspect`: what a component is, and whether this limb would accept it.
//! `push` judges through the same [`Inspector`] before it writes anything.
//!
//! Owns the report (text and JSON) and the facts it shows about the limb and its engine
//! ([`LimbInfo`]). The verdict is the limb's own: the component is compiled within a
//! node policy's compile bounds, validated and described by `limb::adaptors` exactly as
//! a limb loading it from a ConfigMap would. The listing of imports and exports comes
//! from wasmtime's component type, each import classified by
//! `limb::adaptors::validate`. Must not know the cluster: inspecting needs none.

use std::path::Path;
use std::sync::Arc;

use limb::adaptors::validate::{self, Import};
use limb::adaptors::{self, Adaptor, CompileCache, compile, package};
use limb::bindings::ResourceKind;
use limb::capabilities::policy::{CompileLimits, Policy};
use limb::engine::{Pooling, Runtime, Settings};
use serde::Serialize;
use tokio::sync::Semaphore;
use wasmtime::component::Component;

use crate::output::{bytes, percent, plural};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the WebAssembly engine")]
    Engine(#[source] limb::engine::Error),
    #[error("cannot read the node policy {path}")]
    PolicyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid node policy {path}: {}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Policy {
        path: String,
        errors: Vec<limb::capabilities::policy::Error>,
    },
    #[error("the limb would refuse {}", .0.join(", "))]
    Refused(Vec<String>),
}

/// Everything `inspect` says about a component (`-o json` prints this).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub file: String,
    /// Bytes of the component.
    pub size: usize,
    /// `sha256:<hex>` of the component, as the ConfigMap's digest annotation says it.
    pub digest: String,
    /// Whether this limb would load it.
    pub accepted: bool,
    /// Why not, the limb's own message first; empty when accepted.
    pub reasons: Vec<String>,
    pub limb: LimbInfo,
    /// What the adaptor's `describe()` returned; absent when it could not be called.
    pub adaptor: Option<Described>,
    /// Absent when the file is not a WebAssembly component.
    pub world: Option<World>,
    pub imports: Vec<ImportEntry>,
    pub exports: Vec<ExportEntry>,
    /// Our interfaces (`octopus:adaptor/<name>`) the component imports or exports.
    pub interfaces: Vec<String>,
    /// How `push` would store it.
    pub package: Packaged,
}

/// The limb that judged: what it accepts and the engine it runs components on. Facts
/// about the engine belong in [`EngineInfo`].
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimbInfo {
    /// The limb library linked into this command.
    pub version: String,
    /// The contract versions it accepts, e.g. `octopus:adaptor@0.1.x`.
    pub contract: String,
    pub engine: EngineInfo,
}

/// The WebAssembly engine as a limb built for this machine runs it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineInfo {
    /// The machine architecture, e.g. `x86_64`, `aarch64`, `arm`.
    pub arch: &'static str,
    /// How guest code runs here: `cranelift (x86_64)`, or `pulley32 interpreter` where
    /// Cranelift has no backend (armv7).
    pub execution: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Described {
    pub name: String,
    pub version: String,
    pub models: Vec<ModelEntry>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntry {
    pub api_version: String,
    pub kind: String,
    pub resource_fields: Vec<ResourceFieldEntry>,
    /// Whether the component declares the model's schema (contract 0.1.3 `models`):
    /// then `octopus crd` makes its CRD and the limb checks specs against it.
    pub declared: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFieldEntry {
    pub path: String,
    /// `tcp`, `udp`, `serial` or `gpio`.
    pub kind: &'static str,
}

/// The component's world, as far as its type shows it: a compiled component keeps its
/// imports and exports, not the name of the WIT world it was built from.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct World {
    /// `octopus:adaptor/adaptor@<version>` when it exports our `driver`, else absent.
    pub name: Option<String>,
    /// Every package it imports from or exports, e.g. `wasi:io@0.2.6`.
    pub packages: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportEntry {
    pub name: String,
    pub kind: ImportKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportKind {
    /// One of our interfaces, of a supported contract version.
    Ours,
    /// One of our interfaces, of a contract version this limb does not support.
    OtherVersion,
    /// WASI the limb links, inert: no files, environment or network are granted.
    Wasi,
    /// Not provided: the limb refuses the component.
    Unknown,
}

impl From<Import> for ImportKind {
    fn from(i: Import) -> Self {
        match i {
            Import::Ours => Self::Ours,
            Import::OtherVersion => Self::OtherVersion,
            Import::Wasi => Self::Wasi,
            Import::Unknown => Self::Unknown,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportEntry {
    pub name: String,
    pub kind: ExportKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportKind {
    /// Our `driver`, of a supported contract version: what the limb calls.
    Driver,
    /// Our `driver`, of a contract version this limb does not support.
    OtherVersion,
    /// Our `models`: the schemas of the models it serves (contract 0.1.3).
    Models,
    /// Anything else: ignored by the limb.
    Other,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Packaged {
    /// `gzip` or `identity`.
    pub encoding: &'static str,
    /// Bytes stored in ConfigMaps.
    pub stored_bytes: usize,
    /// How many ConfigMaps.
    pub parts: usize,
}

/// A report with the limb's loaded adaptor and the bytes, for `push`.
pub struct Inspection {
    pub report: Report,
    pub component: Vec<u8>,
    pub adaptor: Option<Arc<Adaptor>>,
}

/// The compile bounds of the node policy at `path` (`--policy`), or a limb's defaults.
pub fn compile_limits(path: Option<&Path>) -> Result<CompileLimits, Error> {
    let Some(path) = path else {
        return Ok(CompileLimits::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| Error::PolicyFile {
        path: path.display().to_string(),
        source,
    })?;
    Policy::from_yaml(&text)
        .map(|p| p.compile().clone())
        .map_err(|errors| Error::Policy {
            path: path.display().to_string(),
            errors,
        })
}

/// The engine and linker of a limb, for judging components.
pub struct Inspector {
    runtime: Arc<Runtime>,
    cache: Arc<CompileCache>,
    limits: CompileLimits,
    /// One compile at a time, as on a limb.
    slot: Arc<Semaphore>,
}

impl Inspector {
    /// An inspector that judges as a limb under a node policy with these compile bounds.
    pub fn new(limits: CompileLimits) -> Result<Self, Error> {
        let runtime = Runtime::new(Settings {
            // One scratch instance for describe(); reserving a pool is wasted here.
            pooling: Pooling::Off,
            ..Settings::default()
        })
        .map_err(Error::Engine)?;
        Ok(Self {
            runtime: Arc::new(runtime),
            cache: Arc::new(CompileCache::new(None)),
            limits,
            slot: Arc::new(Semaphore::new(1)),
        })
    }

    /// Compiles within the policy's bounds, as a limb's load does: the size is checked
    /// first, and a compile that runs past the timeout is abandoned and refused.
    async fn compile(&self, hex: &str, component: &[u8]) -> Result<Component, adaptors::Error> {
        let max = self.limits.max_component_bytes;
        if component.len() > max {
            return Err(adaptors::Error::TooLarge {
                len: component.len(),
                max,
            });
        }
        let permit = self
            .slot
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| adaptors::Error::Join(e.to_string()))?;
        let work = {
            let (runtime, cache) = (self.runtime.clone(), self.cache.clone());
            let (digest, bytes) = (hex.to_owned(), component.to_vec());
            move |keep: &dyn Fn() -> bool| cache.compile(runtime.engine(), &digest, &bytes, keep)
        };
        let timeout = self.limits.compile_timeout;
        match compile::run(permit, timeout, work).await {
            Ok((compiled, _)) => {
                compiled?.ok_or_else(|| adaptors::Error::Join("the compile was abandoned".into()))
            }
            Err(compile::Failed::Overrun) => Err(adaptors::Error::CompileTimeout(timeout)),
            Err(compile::Failed::Internal(why)) => Err(adaptors::Error::Join(why)),
        }
    }

    /// Reads and inspects a file; a refused component is a report, not an error.
    pub async fn inspect_file(&self, path: &Path) -> Result<Inspection, Error> {
        let component = std::fs::read(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(self.inspect(path.display().to_string(), component).await)
    }

    pub async fn inspect(&self, file: String, component: Vec<u8>) -> Inspection {
        let hex = adaptors::digest(&component);
        let mut report = Report {
            file: file.clone(),
            size: component.len(),
            digest: format!("sha256:{hex}"),
            accepted: false,
            reasons: Vec::new(),
            limb: limb_info(),
            adaptor: None,
            world: None,
            imports: Vec::new(),
            exports: Vec::new(),
            interfaces: Vec::new(),
            package: packaged(&component),
        };
        let compiled = match self.compile(&hex, &component).await {
            Ok(c) => c,
            Err(e) => {
                report.reasons.push(e.to_string());
                return Inspection {
                    report,
                    component,
                    adaptor: None,
                };
            }
        };
        let (imports, exports) = validate::names(self.runtime.engine(), &compiled);
        describe_type(&mut report, &imports, &exports);
        let adaptor = match adaptors::load_compiled(&self.runtime, compiled, hex, file).await {
            Ok(a) => {
                report.accepted = true;
                report.adaptor = Some(described(&a));
                Some(a)
            }
            Err(e) => {
                report.reasons = reasons(&e, &imports, &exports);
                None
            }
        };
        Inspection {
            report,
            component,
            adaptor,
        }
    }
}

fn limb_info() -> LimbInfo {
    let minor = validate::VERSION
        .rsplit_once('.')
        .map_or(validate::VERSION, |(mm, _)| mm);
    LimbInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        contract: format!("{}@{minor}.x", validate::PACKAGE),
        engine: EngineInfo {
            arch: std::env::consts::ARCH,
            execution: limb::engine::execution_mode()
                .map_or_else(|| "unavailable".to_owned(), |m| m.to_string()),
        },
    }
}

/// What `-o json` prints for the reports of one run: the report itself for one file (so
/// `octopus inspect FILE -o json` is one object), an array for several.
pub fn json_document(reports: &[Report]) -> serde_json::Value {
    match reports {
        [one] => serde_json::to_value(one),
        many => serde_json::to_value(many),
    }
    .unwrap_or(serde_json::Value::Null)
}

/// Fails, naming them, when the limb would refuse any of the files.
pub fn verdict(reports: &[Report]) -> Result<(), Error> {
    let refused: Vec<String> = reports
        .iter()
        .filter(|r| !r.accepted)
        .map(|r| r.file.clone())
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Error::Refused(refused))
    }
}

fn packaged(component: &[u8]) -> Packaged {
    let parts = package::package("inspect", "inspect", &[], component);
    let gzip = parts
        .first()
        .and_then(|p| p.annotations.get(package::ENCODING_ANNOTATION))
        .is_some_and(|e| e == "gzip");
    Packaged {
        encoding: if gzip { "gzip" } else { "identity" },
        stored_bytes: parts.iter().map(|p| p.data.len()).sum(),
        parts: parts.len(),
    }
}

/// The driver export of our package this limb accepts, to judge imports on their own.
fn driver_placeholder() -> String {
    format!("{}/driver@{}", validate::PACKAGE, validate::VERSION)
}

/// Fills the world, imports, exports and our interfaces from the component's type.
pub fn describe_type(report: &mut Report, imports: &[String], exports: &[String]) {
    report.imports = imports
        .iter()
        .map(|n| ImportEntry {
            name: n.clone(),
            kind: validate::classify(n).into(),
        })
        .collect();
    report.exports = exports
        .iter()
        .map(|n| ExportEntry {
            name: n.clone(),
            kind: export_kind(n),
        })
        .collect();
    let ours = |n: &str| {
        let iface = n.split_once('@').map_or(n, |(i, _)| i);
        iface
            .strip_prefix(validate::PACKAGE)
            .and_then(|r| r.strip_prefix('/'))
            .map(str::to_owned)
    };
    let mut interfaces: Vec<String> = imports
        .iter()
        .chain(exports)
        .filter_map(|n| ours(n))
        .collect();
    interfaces.dedup();
    report.interfaces = interfaces;
    let mut packages: Vec<String> = imports
        .iter()
        .chain(exports)
        .map(|n| {
            let (iface, version) = n.split_once('@').unwrap_or((n, ""));
            let pkg = iface.split_once('/').map_or(iface, |(p, _)| p);
            if version.is_empty() {
                pkg.to_owned()
            } else {
                format!("{pkg}@{version}")
            }
        })
        .collect();
    packages.sort();
    packages.dedup();
    let world = if report.exports.iter().any(|e| e.kind == ExportKind::Models) {
        "described-adaptor"
    } else {
        "adaptor"
    };
    let name = report
        .exports
        .iter()
        .find(|e| matches!(e.kind, ExportKind::Driver | ExportKind::OtherVersion))
        .map(|e| {
            let version = e.name.split_once('@').map_or("", |(_, v)| v);
            format!("{}/{world}@{version}", validate::PACKAGE)
        });
    report.world = Some(World { name, packages });
}

/// Our `driver` (of a version we accept or not), or something the limb ignores; judged
/// by the limb's own check on that export alone.
fn export_kind(name: &str) -> ExportKind {
    let models = format!("{}/models@", validate::PACKAGE);
    if name
        .strip_prefix(&models)
        .is_some_and(|v| v.starts_with("0.1."))
    {
        return ExportKind::Models;
    }
    match validate::check_names(&[], &[name.to_owned()]) {
        Ok(()) => ExportKind::Driver,
        Err(validate::Error::Version { .. }) => ExportKind::OtherVersion,
        Err(_) => ExportKind::Other,
    }
}

/// The limb's refusal first, then the problems it stops before naming (it reports only
/// the first): the exports judged alone, then the imports judged alone.
fn reasons(error: &adaptors::Error, imports: &[String], exports: &[String]) -> Vec<String> {
    let mut out = vec![error.to_string()];
    if matches!(error, adaptors::Error::Validate(_)) {
        let more = [
            validate::check_names(&[], exports),
            validate::check_names(imports, &[driver_placeholder()]),
        ];
        for e in more.into_iter().filter_map(Result::err) {
            let msg = e.to_string();
            if !out.contains(&msg) {
                out.push(msg);
            }
        }
    }
    out
}

fn described(a: &Adaptor) -> Described {
    Described {
        name: a.info.name.clone(),
        version: a.info.version.clone(),
        models: a
            .info
            .models
            .iter()
            .map(|m| ModelEntry {
                api_version: m.model.api_version.clone(),
                kind: m.model.kind.clone(),
                resource_fields: m
                    .resource_fields
                    .iter()
                    .map(|f| ResourceFieldEntry {
                        path: f.path.clone(),
                        kind: match f.kind {
                            ResourceKind::Tcp => "tcp",
                            ResourceKind::Udp => "udp",
                            ResourceKind::Serial => "serial",
                            ResourceKind::Gpio => "gpio",
                        },
                    })
                    .collect(),
                declared: a.declared(&m.model.api_version, &m.model.kind).is_some(),
            })
            .collect(),
    }
}

impl Report {
    /// The report for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let verdict = if self.accepted { "accepted" } else { "REFUSED" };
        let _ = writeln!(
            s,
            "{}: {verdict} by this limb (limb {}, contract {})",
            self.file, self.limb.version, self.limb.contract
        );
        for (i, r) in self.reasons.iter().enumerate() {
            let _ = writeln!(s, "  {:<10} {r}", if i == 0 { "because" } else { "and" });
        }
        if let Some(a) = &self.adaptor {
            let _ = writeln!(s, "  {:<10} {} {}", "adaptor", a.name, a.version);
        }
        let _ = writeln!(
            s,
            "  {:<10} {} ({} bytes), {}",
            "size",
            bytes(self.size),
            self.size,
            self.digest
        );
        let _ = writeln!(
            s,
            "  {:<10} {} {} in {} ({}% of the component)",
            "stored as",
            self.package.encoding,
            bytes(self.package.stored_bytes),
            plural(self.package.parts, "ConfigMap", "ConfigMaps"),
            percent(self.package.stored_bytes, self.size)
        );
        let _ = writeln!(
            s,
            "  {:<10} wasmtime on {}, {}",
            "engine", self.limb.engine.arch, self.limb.engine.execution
        );
        if let Some(w) = &self.world {
            let name = w.name.clone().unwrap_or_else(|| {
                format!(
                    "not an Octopus adaptor (no {}/driver export)",
                    validate::PACKAGE
                )
            });
            let _ = writeln!(s, "  {:<10} {name}", "world");
            let _ = writeln!(s, "  {:<10} {}", "packages", w.packages.join(", "));
            let uses = if self.interfaces.is_empty() {
                "none of ours".to_owned()
            } else {
                self.interfaces.join(", ")
            };
            let _ = writeln!(s, "  {:<10} {uses}", "uses");
        }
        if let Some(a) = &self.adaptor {
            for m in &a.models {
                let schema = if m.declared {
                    " (declares its schema)"
                } else {
                    ""
                };
                let _ = writeln!(s, "  {:<10} {}/{}{schema}", "serves", m.api_version, m.kind);
                for f in &m.resource_fields {
                    let _ = writeln!(s, "  {:<10}   resource field {} ({})", "", f.path, f.kind);
                }
            }
        }
        if self.world.is_some() {
            let width = self
                .imports
                .iter()
                .map(|i| i.name.len())
                .chain(self.exports.iter().map(|e| e.name.len()))
                .max()
                .unwrap_or(0);
            let _ = writeln!(s, "  imports ({})", self.imports.len());
            for i in &self.imports {
                let what = match i.kind {
                    ImportKind::Ours => "ours".to_owned(),
                    ImportKind::OtherVersion => format!(
                        "ours, but another contract version: refused (this limb supports {})",
                        self.limb.contract
                    ),
                    ImportKind::Wasi => "WASI, linked but inert (nothing granted)".to_owned(),
                    ImportKind::Unknown => "unknown: not provided, refused".to_owned(),
                };
                let _ = writeln!(s, "    {:<width$}  {what}", i.name);
            }
            let _ = writeln!(s, "  exports ({})", self.exports.len());
            for e in &self.exports {
                let what = match e.kind {
                    ExportKind::Driver => "the driver the limb calls".to_owned(),
                    ExportKind::OtherVersion => format!(
                        "a driver of another contract version: refused (this limb supports {})",
                        self.limb.contract
                    ),
                    ExportKind::Models => "the models it declares, checked by the limb".to_owned(),
                    ExportKind::Other => "ignored by the limb".to_owned(),
                };
                let _ = writeln!(s, "    {:<width$}  {what}", e.name);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn empty_report() -> Report {
        Report {
            file: "a.wasm".into(),
            size: 4,
            digest: "sha256:00".into(),
            accepted: false,
            reasons: vec![],
            limb: limb_info(),
            adaptor: None,
            world: None,
            imports: vec![],
            exports: vec![],
            interfaces: vec![],
            package: packaged(b"\0asm"),
        }
    }

    #[test]
    fn the_type_is_listed_with_each_import_classified() {
        let mut r = empty_report();
        describe_type(
            &mut r,
            &s(&[
                "octopus:adaptor/types@0.1.0",
                "octopus:adaptor/log@0.1.0",
                "wasi:io/streams@0.2.6",
                "wasi:sockets/tcp@0.2.6",
            ]),
            &s(&["octopus:adaptor/driver@0.1.0", "acme:x/y@1.0.0"]),
        );
        let kinds: Vec<ImportKind> = r.imports.iter().map(|i| i.kind).collect();
        assert_eq!(
            kinds,
            [
                ImportKind::Ours,
                ImportKind::Ours,
                ImportKind::Wasi,
                ImportKind::Unknown
            ]
        );
        let kinds: Vec<ExportKind> = r.exports.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [ExportKind::Driver, ExportKind::Other]);
        assert_eq!(r.interfaces, ["types", "log", "driver"]);
        let w = r.world.unwrap();
        assert_eq!(w.name.as_deref(), Some("octopus:adaptor/adaptor@0.1.0"));
        assert_eq!(
            w.packages,
            [
                "acme:x@1.0.0",
                "octopus:adaptor@0.1.0",
                "wasi:io@0.2.6",
                "wasi:sockets@0.2.6"
            ]
        );
    }

    #[test]
    fn another_world_has_no_name_and_every_problem_is_given() {
        let (imports, exports) = (
            s(&["acme:thing/host-stuff@1.0.0"]),
            s(&["acme:thing/api@1.0.0"]),
        );
        let mut r = empty_report();
        describe_type(&mut r, &imports, &exports);
        assert_eq!(r.world.as_ref().unwrap().name, None);
        assert_eq!(r.exports[0].kind, ExportKind::Other);
        let err = validate::check_names(&imports, &exports).unwrap_err();
        let why = reasons(&adaptors::Error::Validate(err), &imports, &exports);
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].contains("acme:thing/host-stuff@1.0.0"), "{why:?}");
        assert!(why[1].contains("does not export"), "{why:?}");
    }

    #[test]
    fn an_old_contract_is_one_reason_and_marked_on_imports_and_exports() {
        let (imports, exports) = (
            s(&["octopus:adaptor/log@0.0.9"]),
            s(&["octopus:adaptor/driver@0.0.9"]),
        );
        let mut r = empty_report();
        describe_type(&mut r, &imports, &exports);
        assert_eq!(r.imports[0].kind, ImportKind::OtherVersion);
        assert_eq!(r.exports[0].kind, ExportKind::OtherVersion);
        let err = validate::check_names(&imports, &exports).unwrap_err();
        let why = reasons(&adaptors::Error::Validate(err), &imports, &exports);
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].contains("octopus:adaptor@0.0.9"), "{why:?}");
        assert!(r.text().contains("another contract version"));
    }

    #[test]
    fn one_file_is_one_json_object_and_several_an_array() {
        let report = |file: &str, accepted: bool| Report {
            file: file.into(),
            accepted,
            ..empty_report()
        };
        let (good, bad, worse) = (
            report("good.wasm", true),
            report("bad.wasm", false),
            report("worse.wasm", false),
        );
        let one = json_document(std::slice::from_ref(&good));
        assert_eq!(one["file"], "good.wasm");
        let two = json_document(&[good.clone(), bad.clone()]);
        assert_eq!(two.as_array().map(Vec::len), Some(2));
        assert_eq!(two[1]["file"], "bad.wasm");
        assert_eq!(json_document(&[]), serde_json::json!([]));

        let cases: [(Vec<Report>, Option<&str>); 4] = [
            (vec![], None),
            (vec![good.clone()], None),
            (
                vec![good.clone(), bad.clone()],
                Some("the limb would refuse bad.wasm"),
            ),
            (
                vec![bad, good, worse],
                Some("the limb would refuse bad.wasm, worse.wasm"),
            ),
        ];
        for (reports, want) in cases {
            let got = verdict(&reports).err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), want);
        }
    }

    #[test]
    fn the_node_policy_sets_the_compile_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, "maxComponentBytes: 1000\ncompileTimeout: 3s\n").unwrap();
        let limits = compile_limits(Some(&path)).unwrap();
        assert_eq!(limits.max_component_bytes, 1000);
        assert_eq!(limits.compile_timeout, std::time::Duration::from_secs(3));
        assert_eq!(compile_limits(None).unwrap(), CompileLimits::default());

        std::fs::write(&path, "maxComponentBytes: 0\n").unwrap();
        let e = compile_limits(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("maxComponentBytes"), "{e}");
        let e = compile_limits(Some(&dir.path().join("missing.yaml"))).unwrap_err();
        assert!(matches!(e, Error::PolicyFile { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_component_over_the_policy_size_is_refused_before_compiling() {
        let limits = CompileLimits {
            max_component_bytes: 3,
            ..CompileLimits::default()
        };
        let inspector = Inspector::new(limits).unwrap();
        let r = inspector
            .inspect("big.wasm".into(), b"\0asm".to_vec())
            .await;
        assert!(!r.report.accepted);
        assert_eq!(
            r.report.reasons,
            ["component is 4 bytes, over the node policy's maxComponentBytes of 3"]
        );
        assert!(r.report.world.is_none());
    }

    #[test]
    fn json_field_names_are_stable() {
        let mut r = empty_report();
        describe_type(&mut r, &s(&["wasi:io/poll@0.2.6"]), &s(&[]));
        let v = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "accepted",
                "adaptor",
                "digest",
                "exports",
                "file",
                "imports",
                "interfaces",
                "limb",
                "package",
                "reasons",
                "size",
                "world"
            ]
        );
        assert_eq!(v["imports"][0]["kind"], "wasi");
        assert_eq!(v["package"]["storedBytes"], 4);
        assert_eq!(v["package"]["encoding"], "identity");
        assert_eq!(v["limb"]["contract"], "octopus:adaptor@0.1.x");
        assert_eq!(v["limb"]["engine"]["arch"], std::env::consts::ARCH);
        assert!(v["world"]["name"].is_null());
    }
}
