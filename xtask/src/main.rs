//! Repository tasks.
//!
//! `manifests` renders the plain manifests in `deploy/` from the Helm chart in
//! `deploy/helm/octopus`, copies the generated CRDs into the chart, and writes the
//! kustomization that ties them together; `--check` fails on drift instead (the test
//! command runs it), so the chart and the plain manifests can never disagree. With
//! `--values FILE` (merged over the chart's values, as `helm -f` does) and `--out DIR` it
//! renders a release's manifests elsewhere: scripts/release.sh pins the image digests so.
//!
//! `wasi-adapter` writes the WASI preview1 reactor adapter that the C, Go and Zig adaptor
//! builds wrap their core modules with.

mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Octopus repository tasks")]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Render deploy/*.yaml from the Helm chart (and the chart's CRDs from crds/generated).
    Manifests {
        /// Fail if any file would change instead of writing it.
        #[arg(long)]
        check: bool,
        /// Values files merged over the chart's values.yaml, in order (like `helm -f`).
        #[arg(long = "values")]
        values: Vec<PathBuf>,
        /// Render into this directory (CRDs under `crds/`) instead of `deploy/`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the WASI preview1 reactor adapter (from the crate wasmtime ships it in), which
    /// turns a core module built for wasi_snapshot_preview1 into a component.
    WasiAdapter {
        /// Where to write it.
        out: PathBuf,
    },
}

/// The namespace the plain manifests install into.
const NAMESPACE: &str = "octopus-system";
/// Chart templates rendered into plain manifests of the same name.
const TEMPLATES: [&str; 3] = ["brain.yaml", "limb.yaml", "limb-references.yaml"];

fn main() -> ExitCode {
    let args = Args::parse();
    // The checkout `cargo run` runs for, not the one compiled in: checkouts that share a
    // target directory share this binary.
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("..");
    let outcome = match args.task {
        Task::Manifests { check, values, out } => manifests(&root, &values, out.as_deref(), check),
        Task::WasiAdapter { out } => std::fs::write(
            &out,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .with_context(|| format!("writing {}", out.display()))
        .map(|()| 0),
    };
    match outcome {
        Ok(0) => ExitCode::SUCCESS,
        Ok(drift) => {
            eprintln!("{drift} file(s) out of date; run `cargo run -p xtask -- manifests`");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Merges `over` into `base` the way Helm merges values files: maps key by key, anything
/// else (lists included) replaced whole.
fn merge_values(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge_values(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, over) => *slot = over,
    }
}

fn read_values(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Every file `manifests` owns, with its content: in `deploy/` (and the chart's `crds/`),
/// or all in `out` (CRDs in `out/crds/`) when rendering with extra values elsewhere.
fn render_all(
    root: &Path,
    extra_values: &[PathBuf],
    out: Option<&Path>,
) -> Result<BTreeMap<PathBuf, String>> {
    let deploy = root.join("deploy");
    let chart = deploy.join("helm/octopus");
    let mut values = read_values(&chart.join("values.yaml"))?;
    for path in extra_values {
        merge_values(&mut values, read_values(path)?);
    }
    let (dest, crd_dir, crd_rel) = match out {
        Some(out) => (out.to_path_buf(), out.join("crds"), "crds"),
        None => (deploy.clone(), chart.join("crds"), "helm/octopus/crds"),
    };
    let ctx = template::Context {
        values: &values,
        release_namespace: NAMESPACE,
    };
    let mut files = BTreeMap::new();
    for name in TEMPLATES {
        let src = std::fs::read_to_string(chart.join("templates").join(name))
            .with_context(|| format!("reading template {name}"))?;
        let out = template::render(&src, &ctx).with_context(|| format!("rendering {name}"))?;
        for (i, doc) in serde_yaml::Deserializer::from_str(&out).enumerate() {
            serde::Deserialize::deserialize(doc)
                .map(|_: serde_yaml::Value| ())
                .with_context(|| format!("{name} renders invalid YAML in document {i}"))?;
        }
        let header = format!(
            "# Generated from deploy/helm/octopus/templates/{name} by `cargo run -p xtask -- manifests`.\n# Edit the chart, not this file.\n"
        );
        files.insert(dest.join(name), header + out.trim_start());
    }
    let mut crds = Vec::new();
    let mut generated: Vec<_> = std::fs::read_dir(root.join("crds/generated"))
        .context("reading crds/generated")?
        .collect::<Result<_, _>>()?;
    generated.sort_by_key(|e| e.file_name());
    for entry in generated {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") {
            continue;
        }
        files.insert(crd_dir.join(&name), std::fs::read_to_string(entry.path())?);
        crds.push(format!("{crd_rel}/{name}"));
    }
    if crds.is_empty() {
        bail!("no CRDs in crds/generated; run `cargo run -p crds --bin crdgen`");
    }
    let mut kustomization = String::from(
        "# Generated by `cargo run -p xtask -- manifests`: the CRDs and the plain manifests.\n# Install with `kubectl apply -k deploy/`.\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - namespace.yaml\n",
    );
    for r in crds
        .iter()
        .map(String::as_str)
        .chain(["brain.yaml", "limb.yaml"])
    {
        kustomization.push_str(&format!("  - {r}\n"));
    }
    files.insert(dest.join("kustomization.yaml"), kustomization);
    if out.is_some() {
        let namespace = deploy.join("namespace.yaml");
        files.insert(
            dest.join("namespace.yaml"),
            std::fs::read_to_string(&namespace)
                .with_context(|| format!("reading {}", namespace.display()))?,
        );
    }
    Ok(files)
}

/// Writes (or with `check`, compares) every file; returns how many differ.
fn manifests(root: &Path, values: &[PathBuf], out: Option<&Path>, check: bool) -> Result<usize> {
    let mut drift = 0;
    for (path, content) in render_all(root, values, out)? {
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(content.as_str()) {
            continue;
        }
        if check {
            eprintln!("{} is out of date", path.display());
            drift += 1;
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(drift)
}

#[cfg(test)]
mod tests {
    use super::merge_values;
    use serde_json::json;

    #[test]
    fn values_merge_like_helm_f() {
        for (base, over, want) in [
            // Maps merge key by key, at any depth.
            (
                json!({"image": {"registry": "a", "tag": "1"}, "limb": {"image": {"digest": ""}}}),
                json!({"image": {"registry": "b"}, "limb": {"image": {"digest": "sha256:x"}}}),
                json!({"image": {"registry": "b", "tag": "1"}, "limb": {"image": {"digest": "sha256:x"}}}),
            ),
            // Lists and scalars are replaced whole, new keys are added.
            (
                json!({"tcp": ["127.0.0.0/8"], "n": 1}),
                json!({"tcp": ["10.0.0.0/8"], "extra": true}),
                json!({"tcp": ["10.0.0.0/8"], "n": 1, "extra": true}),
            ),
            // A scalar over a map replaces it, and the other way round.
            (json!({"a": {"b": 1}}), json!({"a": "x"}), json!({"a": "x"})),
            (
                json!({"a": "x"}),
                json!({"a": {"b": 1}}),
                json!({"a": {"b": 1}}),
            ),
        ] {
            let mut merged = base.clone();
            merge_values(&mut merged, over.clone());
            assert_eq!(merged, want, "{base} <- {over}");
        }
    }
}
