//! The adaptor ConfigMap format (`limb::adaptors::package`): the manifest annotations,
//! reassembly of the parts, gzip decompression (bounded by `MAX_COMPONENT`) and the
//! digest check, plus `package`/`configmap_name` on arbitrary components and names.
//!
//! Input, by its first byte:
//! - even: the rest is YAML, ConfigMaps as `kubectl get -o yaml` or `octopus push`
//!   prints them; parts are ordered by their `part` annotation as cluster mode does;
//! - odd: the rest is an `arbitrary` [`Structured`] manifest and parts, with the digest
//!   made to match when asked, so reassembly and decompression are reached.
#![no_main]

use std::collections::BTreeMap;
use std::io::Read;

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use limb::adaptors::package::{self, Manifest};

#[derive(Arbitrary, Debug)]
enum Key {
    Name,
    Digest,
    Encoding,
    Parts,
    Models,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Structured {
    annotations: Vec<(Key, String)>,
    parts: Vec<Option<Vec<u8>>>,
    /// Gzip the concatenated parts before splitting them again.
    gzip: bool,
    /// Write the digest of the (decompressed) payload into the manifest.
    fix_digest: bool,
    /// A component, name and adaptor to `package` and assemble again.
    component: Vec<u8>,
    name: String,
    adaptor: String,
    models: Vec<String>,
}

fn check(annotations: &BTreeMap<String, String>, parts: &[Option<Vec<u8>>]) {
    let Ok(manifest) = Manifest::from_annotations(annotations) else {
        return;
    };
    assert!((1..=64).contains(&manifest.parts));
    let refs: Vec<Option<&[u8]>> = parts.iter().map(|p| p.as_deref()).collect();
    match package::assemble(&manifest, &refs) {
        Ok(component) => {
            assert!(component.len() <= package::MAX_COMPONENT);
            assert_eq!(package::digest(&component), manifest.digest);
        }
        Err(package::Error::TooLarge) => {}
        Err(_) => {}
    }
}

/// What the harness needs to make a digest match: the payload decompressed the way the
/// real code does, bounded the same.
fn gunzip(payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(payload)
        .take(package::MAX_COMPONENT as u64)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

fn structured(s: Structured) {
    let mut annotations: BTreeMap<String, String> = s
        .annotations
        .into_iter()
        .map(|(k, v)| {
            let k = match k {
                Key::Name => package::NAME_ANNOTATION.to_owned(),
                Key::Digest => package::DIGEST_ANNOTATION.to_owned(),
                Key::Encoding => package::ENCODING_ANNOTATION.to_owned(),
                Key::Parts => package::PARTS_ANNOTATION.to_owned(),
                Key::Models => package::MODELS_ANNOTATION.to_owned(),
                Key::Other(k) => k,
            };
            (k, v)
        })
        .collect();
    let mut parts = s.parts;
    if s.gzip {
        let joined: Vec<u8> = parts.iter().flatten().flatten().copied().collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &joined).expect("writing to a Vec");
        let compressed = gz.finish().expect("writing to a Vec");
        let n = parts.len().clamp(1, 64);
        let size = compressed.len().div_ceil(n).max(1);
        parts = compressed.chunks(size).map(|c| Some(c.to_vec())).collect();
        annotations.insert(package::ENCODING_ANNOTATION.into(), "gzip".into());
        annotations.insert(package::PARTS_ANNOTATION.into(), parts.len().to_string());
    }
    if s.fix_digest {
        let n = annotations
            .get(package::PARTS_ANNOTATION)
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(1);
        let payload: Vec<u8> = parts.iter().take(n).flatten().flatten().copied().collect();
        let gzip = annotations
            .get(package::ENCODING_ANNOTATION)
            .map(String::as_str)
            == Some("gzip");
        let component = if gzip {
            gunzip(&payload)
        } else {
            Some(payload)
        };
        if let Some(c) = component {
            annotations.insert(package::DIGEST_ANNOTATION.into(), package::digest(&c));
        }
    }
    check(&annotations, &parts);

    // What `octopus push` writes, cluster mode must read back.
    let packaged = package::package(&s.name, &s.adaptor, &s.models, &s.component);
    let manifest = Manifest::from_annotations(&packaged[0].annotations)
        .expect("a packaged manifest reads back");
    assert_eq!(manifest.parts, packaged.len());
    let refs: Vec<Option<&[u8]>> = packaged.iter().map(|p| Some(p.data.as_slice())).collect();
    assert_eq!(
        package::assemble(&manifest, &refs).as_deref(),
        Ok(s.component.as_slice())
    );
    let name = package::configmap_name(&s.adaptor);
    assert!(name.starts_with("adaptor-"));
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{name}"
    );
}

/// ConfigMaps from YAML, grouped as cluster mode groups them: a manifest (with a name
/// annotation) and the parts labelled as part of it, by their part index.
fn yaml(text: &str) {
    let mut maps = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let Ok(value) = <serde_json::Value as serde::Deserialize>::deserialize(doc) else {
            return;
        };
        maps.push(value);
    }
    let strings = |v: &serde_json::Value, pointer: &str| -> BTreeMap<String, String> {
        v.pointer(pointer)
            .and_then(serde_json::Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let data = |v: &serde_json::Value| -> Option<Vec<u8>> {
        let text = v
            .pointer(&format!("/binaryData/{}", package::DATA_KEY))?
            .as_str()?;
        base64::engine::general_purpose::STANDARD.decode(text).ok()
    };
    for cm in &maps {
        let annotations = strings(cm, "/metadata/annotations");
        if !annotations.contains_key(package::NAME_ANNOTATION) {
            continue;
        }
        let name = cm
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        let mut parts: Vec<Option<Vec<u8>>> = vec![data(cm)];
        for other in &maps {
            let labels = strings(other, "/metadata/labels");
            if labels.get(package::PART_OF_LABEL).map(String::as_str) != Some(name) {
                continue;
            }
            let Some(i) = strings(other, "/metadata/annotations")
                .get(package::PART_ANNOTATION)
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| (1..=64).contains(i))
            else {
                continue;
            };
            if parts.len() <= i {
                parts.resize(i + 1, None);
            }
            parts[i] = data(other);
        }
        check(&annotations, &parts);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            yaml(text);
        }
    } else if let Ok(s) = Structured::arbitrary_take_rest(Unstructured::new(rest)) {
        structured(s);
    }
});
