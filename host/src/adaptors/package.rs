//! The ConfigMap format of an adaptor, shared by `octopus push` (which writes it) and
//! cluster mode (which reads it).
//!
//! An adaptor is one ConfigMap, or several when it does not fit in one:
//!
//! - label `adaptors.edge.cattle.io/component: "true"` on every part;
//! - annotations on the first (the manifest): `adaptors.edge.cattle.io/name` (the
//!   adaptor's name, e.g. `adaptors.edge.cattle.io/modbus`), `.../digest`
//!   (`sha256:` and the hex of the *uncompressed* component), `.../encoding` (`gzip` or
//!   `identity`), `.../parts` (how many ConfigMaps the payload spans) and `.../models`
//!   (what it serves, `apiVersion/Kind` comma-separated; informational);
//! - `binaryData["component"]` holds the payload; with several parts, the manifest holds
//!   part 0 and `<manifest>-part-<i>` hold the rest, each labelled
//!   `adaptors.edge.cattle.io/part-of: <manifest>` and annotated `.../part: <i>`.
//!
//! The payload is gzip when that makes it smaller. The digest is checked after
//! reassembly and decompression, so a torn update is refused, never loaded.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use sha2::{Digest, Sha256};

pub const COMPONENT_LABEL: &str = "adaptors.edge.cattle.io/component";
pub const PART_OF_LABEL: &str = "adaptors.edge.cattle.io/part-of";
pub const NAME_ANNOTATION: &str = "adaptors.edge.cattle.io/name";
pub const DIGEST_ANNOTATION: &str = "adaptors.edge.cattle.io/digest";
pub const ENCODING_ANNOTATION: &str = "adaptors.edge.cattle.io/encoding";
pub const PARTS_ANNOTATION: &str = "adaptors.edge.cattle.io/parts";
pub const PART_ANNOTATION: &str = "adaptors.edge.cattle.io/part";
/// The models the adaptor serves (`apiVersion/Kind`, comma-separated), so admission can
/// refuse a link whose adaptor cannot drive it without running the component.
pub const MODELS_ANNOTATION: &str = "adaptors.edge.cattle.io/models";
/// `"true"`: pushed with `--force`, so this version takes over every link, even those
/// whose spec its declared schema rejects.
pub const FORCE_ANNOTATION: &str = "adaptors.edge.cattle.io/force";
pub const DATA_KEY: &str = "component";

/// Largest payload per ConfigMap: the API server's 1 MiB limit minus room for metadata.
pub const MAX_PART: usize = 900 * 1024;
/// Largest component accepted after decompression (a zip-bomb guard).
pub const MAX_COMPONENT: usize = 256 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("annotation {0} is missing")]
    Missing(&'static str),
    #[error("annotation {key} is invalid: {value:?}")]
    Invalid { key: &'static str, value: String },
    #[error("part {0} of {1} has not arrived")]
    MissingPart(usize, usize),
    #[error("payload cannot be decompressed: {0}")]
    Decompress(String),
    #[error("component larger than {MAX_COMPONENT} bytes")]
    TooLarge,
    #[error("digest mismatch: the ConfigMap says {expected}, the component is {actual}")]
    Digest { expected: String, actual: String },
}

/// What the manifest ConfigMap says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub adaptor: String,
    pub digest: String,
    pub gzip: bool,
    pub parts: usize,
    /// [`FORCE_ANNOTATION`].
    pub force: bool,
}

impl Manifest {
    pub fn from_annotations(a: &BTreeMap<String, String>) -> Result<Self, Error> {
        let get = |k: &'static str| a.get(k).ok_or(Error::Missing(k));
        let adaptor = get(NAME_ANNOTATION)?.clone();
        let digest = get(DIGEST_ANNOTATION)?.clone();
        if !digest.starts_with("sha256:") || digest.len() != 71 {
            return Err(Error::Invalid {
                key: DIGEST_ANNOTATION,
                value: digest,
            });
        }
        let gzip = match a.get(ENCODING_ANNOTATION).map(String::as_str) {
            None | Some("identity") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(Error::Invalid {
                    key: ENCODING_ANNOTATION,
                    value: other.to_owned(),
                });
            }
        };
        let parts = match a.get(PARTS_ANNOTATION) {
            None => 1,
            Some(p) => p
                .parse()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| Error::Invalid {
                    key: PARTS_ANNOTATION,
                    value: p.clone(),
                })?,
        };
        Ok(Self {
            adaptor,
            digest,
            gzip,
            parts,
            force: a.get(FORCE_ANNOTATION).is_some_and(|v| v == "true"),
        })
    }
}

/// `sha256:<hex>` of a component.
pub fn digest(component: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(component)))
}

/// Reassembles and checks a component from its parts' payloads, in order.
pub fn assemble(manifest: &Manifest, parts: &[Option<&[u8]>]) -> Result<Vec<u8>, Error> {
    let mut payload = Vec::new();
    for i in 0..manifest.parts {
        match parts.get(i).copied().flatten() {
            Some(p) => payload.extend_from_slice(p),
            None => return Err(Error::MissingPart(i, manifest.parts)),
        }
    }
    let component = if manifest.gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(payload.as_slice())
            .take(MAX_COMPONENT as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::Decompress(e.to_string()))?;
        if out.len() > MAX_COMPONENT {
            return Err(Error::TooLarge);
        }
        out
    } else {
        payload
    };
    let actual = digest(&component);
    if actual != manifest.digest {
        return Err(Error::Digest {
            expected: manifest.digest.clone(),
            actual,
        });
    }
    Ok(component)
}

/// A stored ConfigMap, as far as the part format cares.
#[derive(Clone, Copy, Debug)]
pub struct Stored<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    /// `binaryData["component"]`.
    pub payload: Option<&'a [u8]>,
}

#[cfg(feature = "configmaps")]
impl<'a> From<&'a k8s_openapi::api::core::v1::ConfigMap> for Stored<'a> {
    fn from(c: &'a k8s_openapi::api::core::v1::ConfigMap) -> Self {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        Self {
            name: c.metadata.name.as_deref().unwrap_or_default(),
            labels: c.metadata.labels.as_ref().unwrap_or(&NONE),
            annotations: c.metadata.annotations.as_ref().unwrap_or(&NONE),
            payload: c
                .binary_data
                .as_ref()
                .and_then(|d| d.get(DATA_KEY))
                .map(|b| b.0.as_slice()),
        }
    }
}

/// The payloads of the parts of the manifest ConfigMap `manifest`, in order, gathered
/// from `stored` (every ConfigMap of the namespace will do: those that are not parts of
/// this manifest are skipped), ready for [`assemble`]. Also returns the names of the
/// ConfigMaps that claim to be a part of it but carry no index it has.
pub fn collect_parts<'a>(
    manifest: Stored<'a>,
    parts: usize,
    stored: impl IntoIterator<Item = Stored<'a>>,
) -> (Vec<Option<&'a [u8]>>, Vec<&'a str>) {
    let mut slots: Vec<Option<&'a [u8]>> = vec![None; parts];
    if let Some(first) = slots.get_mut(0) {
        *first = manifest.payload;
    }
    let mut strays = Vec::new();
    for c in stored
        .into_iter()
        .filter(|c| c.labels.get(PART_OF_LABEL).map(String::as_str) == Some(manifest.name))
    {
        let index = c
            .annotations
            .get(PART_ANNOTATION)
            .and_then(|i| i.parse::<usize>().ok());
        match index.filter(|i| *i > 0).and_then(|i| slots.get_mut(i)) {
            Some(slot) => *slot = c.payload,
            None => strays.push(c.name),
        }
    }
    (slots, strays)
}

/// One ConfigMap of a packaged adaptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub data: Vec<u8>,
}

/// Splits a component into ConfigMaps named after `name`.
pub fn package(name: &str, adaptor: &str, models: &[String], component: &[u8]) -> Vec<Part> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let compressed = gz.write_all(component).and_then(|()| gz.finish()).ok();
    let (payload, gzip) = match compressed {
        Some(c) if c.len() < component.len() => (c, true),
        _ => (component.to_vec(), false),
    };
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[][..]]
    } else {
        payload.chunks(MAX_PART).collect()
    };
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            let mut labels = BTreeMap::from([(COMPONENT_LABEL.to_owned(), "true".to_owned())]);
            let mut annotations = BTreeMap::new();
            let part_name = if i == 0 {
                annotations.insert(NAME_ANNOTATION.to_owned(), adaptor.to_owned());
                annotations.insert(DIGEST_ANNOTATION.to_owned(), digest(component));
                annotations.insert(
                    ENCODING_ANNOTATION.to_owned(),
                    if gzip { "gzip" } else { "identity" }.to_owned(),
                );
                annotations.insert(PARTS_ANNOTATION.to_owned(), n.to_string());
                if !models.is_empty() {
                    annotations.insert(MODELS_ANNOTATION.to_owned(), models.join(","));
                }
                name.to_owned()
            } else {
                labels.insert(PART_OF_LABEL.to_owned(), name.to_owned());
                annotations.insert(PART_ANNOTATION.to_owned(), i.to_string());
                format!("{name}-part-{i}")
            };
            Part {
                name: part_name,
                labels,
                annotations,
                data: data.to_vec(),
            }
        })
        .collect()
}

/// A ConfigMap name for an adaptor: `adaptors.edge.cattle.io/modbus` -> `adaptor-modbus`.
pub fn configmap_name(adaptor: &str) -> String {
    let base = adaptor.rsplit('/').next().unwrap_or(adaptor);
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("adaptor-{}", clean.trim_matches('-'))
}

/// The ConfigMaps of a packaged adaptor as multi-document YAML for `kubectl apply`.
pub fn render(
    name: &str,
    namespace: &str,
    adaptor: &str,
    models: &[String],
    component: &[u8],
) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    for p in package(name, adaptor, models, component) {
        let doc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": p.name, "namespace": namespace, "labels": p.labels, "annotations": p.annotations},
            "binaryData": {DATA_KEY: base64::engine::general_purpose::STANDARD.encode(&p.data)},
        });
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&doc).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_found_by_label_and_index_and_strays_named() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let none = BTreeMap::new();
        let of_m = map(&[(PART_OF_LABEL, "m")]);
        let of_other = map(&[(PART_OF_LABEL, "other")]);
        let (one, two, zero, five, bad) = (
            map(&[(PART_ANNOTATION, "1")]),
            map(&[(PART_ANNOTATION, "2")]),
            map(&[(PART_ANNOTATION, "0")]),
            map(&[(PART_ANNOTATION, "5")]),
            map(&[(PART_ANNOTATION, "x")]),
        );
        let stored = |name, labels, annotations, payload| Stored {
            name,
            labels,
            annotations,
            payload,
        };
        let all = [
            stored("m-part-2", &of_m, &two, Some(&b"c"[..])),
            stored("m-part-1", &of_m, &one, Some(&b"b"[..])),
            stored("elsewhere", &of_other, &one, Some(&b"x"[..])),
            stored("unlabelled", &none, &one, Some(&b"y"[..])),
            stored("zero", &of_m, &zero, Some(&b"z"[..])),
            stored("five", &of_m, &five, Some(&b"f"[..])),
            stored("bad", &of_m, &bad, Some(&b"q"[..])),
        ];
        let manifest = stored("m", &none, &none, Some(&b"a"[..]));
        let (parts, strays) = collect_parts(manifest, 3, all);
        assert_eq!(parts, [Some(&b"a"[..]), Some(&b"b"[..]), Some(&b"c"[..])]);
        assert_eq!(strays, ["zero", "five", "bad"]);
        // A part not there yet leaves its slot empty, for `assemble` to report.
        let (parts, _) = collect_parts(manifest, 3, all.into_iter().skip(1));
        assert_eq!(parts[2], None);
    }

    fn round_trip(component: &[u8]) -> (usize, bool) {
        let parts = package("modbus", "adaptors.edge.cattle.io/modbus", &[], component);
        let m = Manifest::from_annotations(&parts[0].annotations).unwrap();
        let datas: Vec<Option<&[u8]>> = parts.iter().map(|p| Some(p.data.as_slice())).collect();
        assert_eq!(assemble(&m, &datas).unwrap(), component);
        for p in &parts {
            assert!(p.data.len() <= MAX_PART);
        }
        (parts.len(), m.gzip)
    }

    #[test]
    fn small_compressible_components_fit_in_one_gzip_part() {
        assert_eq!(round_trip(&vec![7u8; 3 << 20]), (1, true));
    }

    #[test]
    fn large_incompressible_components_are_split() {
        let mut x: u32 = 1;
        let noise: Vec<u8> = (0..(2 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let (n, gzip) = round_trip(&noise);
        assert_eq!((n, gzip), (3, false));
    }

    #[test]
    fn a_missing_part_or_wrong_digest_is_refused() {
        let mut x: u32 = 9;
        let noise: Vec<u8> = (0..(1 << 20))
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        let parts = package("a", "x", &[], &noise);
        let m = Manifest::from_annotations(&parts[0].annotations).unwrap();
        assert_eq!(
            assemble(&m, &[Some(&parts[0].data), None]),
            Err(Error::MissingPart(1, 2))
        );
        let mut torn = parts[1].data.clone();
        torn[0] ^= 1;
        assert!(matches!(
            assemble(&m, &[Some(&parts[0].data), Some(&torn)]),
            Err(Error::Digest { .. })
        ));
    }

    #[test]
    fn rendered_yaml_round_trips() {
        let yaml = render(
            "adaptor-dummy",
            "octopus-system",
            "adaptors.edge.cattle.io/dummy",
            &["devices.edge.cattle.io/v1alpha1/DummySpecialDevice".to_owned()],
            &vec![1u8; 1000],
        );
        let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 1);
        assert_eq!(
            docs[0]["metadata"]["annotations"][NAME_ANNOTATION],
            "adaptors.edge.cattle.io/dummy"
        );
        assert_eq!(
            docs[0]["metadata"]["annotations"][MODELS_ANNOTATION],
            "devices.edge.cattle.io/v1alpha1/DummySpecialDevice"
        );
        assert_eq!(
            configmap_name("adaptors.edge.cattle.io/dummy"),
            "adaptor-dummy"
        );
    }

    #[test]
    fn manifests_are_checked() {
        let ok = package("a", "x", &[], b"\0asm")[0].annotations.clone();
        assert!(Manifest::from_annotations(&ok).is_ok());
        let mut bad = ok.clone();
        bad.insert(DIGEST_ANNOTATION.into(), "md5:abc".into());
        assert!(matches!(
            Manifest::from_annotations(&bad),
            Err(Error::Invalid { .. })
        ));
        let mut bad = ok.clone();
        bad.insert(PARTS_ANNOTATION.into(), "0".into());
        assert!(Manifest::from_annotations(&bad).is_err());
        let mut bad = ok;
        bad.remove(NAME_ANNOTATION);
        assert_eq!(
            Manifest::from_annotations(&bad),
            Err(Error::Missing(NAME_ANNOTATION))
        );
    }
}
