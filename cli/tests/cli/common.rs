//! Running the binary, finding components, and reading back what push wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use limb::adaptors::package::{self, Manifest};

/// Where the built components are; fails with the command to run when they are missing.
pub fn adaptors_dir() -> PathBuf {
    let dir = std::env::var_os("OCTOPUS_ADAPTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("OCTOPUS_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/octopus")
                });
            cache.join("adaptors")
        });
    assert!(
        dir.join("adaptor_dummy.wasm").exists(),
        "adaptor components not found in {}; run scripts/build-adaptors.sh (or scripts/test.sh) and set OCTOPUS_ADAPTORS_DIR",
        dir.display()
    );
    dir
}

pub fn component_path(name: &str) -> PathBuf {
    adaptors_dir().join(format!("{name}.wasm"))
}

pub fn component(name: &str) -> Vec<u8> {
    std::fs::read(component_path(name)).unwrap()
}

/// The result of one run of the binary.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}): {}\n{}", self.stdout, self.stderr)
        })
    }

    #[track_caller]
    pub fn success(self) -> Self {
        assert!(self.ok, "failed:\n{}\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn failure(self) -> Self {
        assert!(!self.ok, "succeeded:\n{}\n{}", self.stdout, self.stderr);
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// `octopus ARGS` with `KUBECONFIG`, nothing else of the environment's octopus settings.
pub fn octopus(kubeconfig: &Path, args: &[&str]) -> Run {
    run(Path::new(env!("CARGO_BIN_EXE_octopus")), kubeconfig, args)
}

pub fn run(bin: &Path, kubeconfig: &Path, args: &[&str]) -> Run {
    Command::new(bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("OCTOPUS_NAMESPACE")
        .env_remove("OCTOPUS_OUTPUT")
        .env_remove("OCTOPUS_CONTEXT")
        .output()
        .unwrap()
        .into()
}

pub async fn create_namespace(client: &Client, name: &str) {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// Every adaptor ConfigMap in `namespace`, by name.
pub async fn adaptor_configmaps(client: &Client, namespace: &str) -> Vec<ConfigMap> {
    let mut items = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("{}=true", package::COMPONENT_LABEL)))
        .await
        .unwrap()
        .items;
    items.sort_by_key(ResourceExt::name_any);
    items
}

/// Reassembles the adaptor in `configmap` as the limb does, checking its digest.
pub fn reassemble(cms: &[ConfigMap], configmap: &str) -> (Manifest, Vec<u8>) {
    let payload = |c: &ConfigMap| c.binary_data.as_ref().unwrap()[package::DATA_KEY].0.clone();
    let manifest_cm = cms.iter().find(|c| c.name_any() == configmap).unwrap();
    let manifest = Manifest::from_annotations(manifest_cm.annotations()).unwrap();
    let mut parts = vec![payload(manifest_cm)];
    for i in 1..manifest.parts {
        let part = cms
            .iter()
            .find(|c| c.name_any() == format!("{configmap}-part-{i}"))
            .unwrap();
        assert_eq!(part.labels()[package::PART_OF_LABEL], configmap);
        assert_eq!(part.annotations()[package::PART_ANNOTATION], i.to_string());
        parts.push(payload(part));
    }
    let refs: Vec<Option<&[u8]>> = parts.iter().map(|p| Some(p.as_slice())).collect();
    let component = package::assemble(&manifest, &refs).unwrap();
    (manifest, component)
}

/// `base` with an incompressible custom section of `n` bytes appended: still the same
/// valid component, but too large and random for one ConfigMap.
pub fn padded(base: &[u8], n: usize) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let name = b"octopus-test-padding";
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(&noise);
    let mut out = base.to_vec();
    out.push(0); // custom section
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}
