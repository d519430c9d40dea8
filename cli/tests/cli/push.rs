//! `octopus push` against a real API server: new, larger, smaller (stale parts go),
//! refusals, and a dry run that touches nothing.

use kube::ResourceExt;
use limb::adaptors::package;

use crate::apiserver::ApiServer;
use crate::common::{
    adaptor_configmaps, component, component_path, create_namespace, octopus, padded, reassemble,
};

const NS: &str = "octopus-system";
const DUMMY: &str = "adaptors.edge.cattle.io/dummy";

#[tokio::test]
async fn push_writes_the_limb_format_and_removes_parts_a_smaller_version_no_longer_needs() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    create_namespace(&client, NS).await;
    let kc = server.kubeconfig.clone();
    let dir = tempfile::tempdir().unwrap();

    // A big, incompressible build of the dummy adaptor: three ConfigMaps.
    let big = padded(&component("adaptor_dummy"), 2 << 20);
    let big_path = dir.path().join("big.wasm");
    std::fs::write(&big_path, &big).unwrap();
    let r = octopus(&kc, &["push", big_path.to_str().unwrap()]).success();
    eprintln!("octopus push (big):\n{}{}", r.stderr, r.stdout);
    assert!(
        r.stdout.starts_with(&format!(
            "pushed {DUMMY} 0.1.0 as {NS}/adaptor-dummy: sha256:"
        )),
        "{}",
        r.stdout
    );
    for name in [
        "adaptor-dummy-part-1",
        "adaptor-dummy-part-2",
        "adaptor-dummy ",
    ] {
        assert!(
            r.stderr.contains(&format!("created   {name}")),
            "{name}: {}",
            r.stderr
        );
    }
    // Progress names the parts before the manifest.
    let first_part = r.stderr.find("adaptor-dummy-part-1").unwrap();
    let manifest = r.stderr.find("adaptor-dummy (").unwrap();
    assert!(first_part < manifest, "{}", r.stderr);

    let cms = adaptor_configmaps(&client, NS).await;
    let names: Vec<String> = cms.iter().map(ResourceExt::name_any).collect();
    assert_eq!(
        names,
        [
            "adaptor-dummy",
            "adaptor-dummy-part-1",
            "adaptor-dummy-part-2"
        ]
    );
    let (manifest, bytes) = reassemble(&cms, "adaptor-dummy");
    assert_eq!(bytes, big);
    assert_eq!(manifest.digest, package::digest(&big));
    assert_eq!(manifest.parts, 3);
    assert_eq!(manifest.adaptor, DUMMY);
    let annotations = cms[0].annotations();
    assert_eq!(
        annotations[package::MODELS_ANNOTATION],
        "devices.edge.cattle.io/v1alpha1/DummySpecialDevice,devices.edge.cattle.io/v1alpha1/DummyProtocolDevice"
    );
    for cm in &cms {
        let managers: Vec<&str> = cm
            .managed_fields()
            .iter()
            .filter_map(|f| f.manager.as_deref())
            .collect();
        assert_eq!(managers, ["octopus-cli"], "{}", cm.name_any());
    }
    // Exactly what the limb's `package::render` gives for the same component.
    let rendered = package::render(
        "adaptor-dummy",
        NS,
        DUMMY,
        &annotations[package::MODELS_ANNOTATION]
            .split(',')
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        &big,
    );
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&rendered)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    for (doc, cm) in docs.iter().zip(&cms) {
        let cm = serde_json::to_value(cm).unwrap();
        assert_eq!(doc["metadata"]["labels"], cm["metadata"]["labels"]);
        assert_eq!(
            doc["metadata"]["annotations"],
            cm["metadata"]["annotations"]
        );
        assert_eq!(doc["binaryData"], cm["binaryData"]);
    }

    // The ordinary build: one gzip part; the two others are stale and deleted.
    let dummy = component("adaptor_dummy");
    let r = octopus(
        &kc,
        &[
            "push",
            component_path("adaptor_dummy").to_str().unwrap(),
            "-o",
            "json",
        ],
    )
    .success();
    let v = r.json();
    assert_eq!(v["adaptor"], DUMMY);
    assert_eq!(v["version"], "0.1.0");
    assert_eq!(v["configMap"], "adaptor-dummy");
    assert_eq!(v["digest"], package::digest(&dummy));
    assert_eq!(v["previousDigest"], package::digest(&big));
    assert_eq!(v["encoding"], "gzip");
    assert_eq!(
        v["written"],
        serde_json::json!([{"name": "adaptor-dummy", "bytes": v["storedBytes"], "action": "updated"}])
    );
    assert_eq!(
        v["deleted"],
        serde_json::json!(["adaptor-dummy-part-1", "adaptor-dummy-part-2"])
    );
    eprintln!("octopus push (smaller):\n{}", r.stderr);
    assert!(
        r.stderr.contains("deleted   adaptor-dummy-part-2 (stale"),
        "{}",
        r.stderr
    );
    let cms = adaptor_configmaps(&client, NS).await;
    assert_eq!(cms.len(), 1);
    let (manifest, bytes) = reassemble(&cms, "adaptor-dummy");
    assert_eq!(bytes, dummy);
    assert_eq!((manifest.parts, manifest.gzip), (1, true));
    assert_eq!(manifest.digest, package::digest(&dummy));

    // Again: nothing to delete, and it says so.
    let r = octopus(
        &kc,
        &["push", component_path("adaptor_dummy").to_str().unwrap()],
    )
    .success();
    assert!(r.stdout.trim_end().ends_with("(unchanged)"), "{}", r.stdout);

    // Refusals change nothing.
    let before = adaptor_configmaps(&client, NS).await;
    let modbus = component_path("adaptor_modbus");
    let r = octopus(&kc, &["push", modbus.to_str().unwrap(), "--name", DUMMY]).failure();
    assert!(
        r.stderr
            .contains("describes itself as adaptors.edge.cattle.io/modbus"),
        "{}",
        r.stderr
    );
    let r = octopus(
        &kc,
        &[
            "push",
            modbus.to_str().unwrap(),
            "--configmap",
            "adaptor-dummy",
        ],
    )
    .failure();
    assert!(
        r.stderr
            .contains(&format!("ConfigMap {NS}/adaptor-dummy holds {DUMMY}")),
        "{}",
        r.stderr
    );
    let other = component_path("adaptor_other_world");
    let r = octopus(&kc, &["push", other.to_str().unwrap()]).failure();
    assert!(r.stderr.contains("the limb would refuse"), "{}", r.stderr);
    assert!(
        r.stderr.contains("acme:thing/host-stuff@1.0.0"),
        "{}",
        r.stderr
    );
    let r = octopus(&kc, &["push", other.to_str().unwrap(), "--force"]).failure();
    assert!(
        r.stderr.contains("pass --name with --force"),
        "{}",
        r.stderr
    );
    let r = octopus(&kc, &["push", modbus.to_str().unwrap(), "-n", "nowhere"]).failure();
    assert!(
        r.stderr.contains("namespace nowhere does not exist"),
        "{}",
        r.stderr
    );
    let after = adaptor_configmaps(&client, NS).await;
    assert_eq!(
        before
            .iter()
            .map(|c| c.resource_version())
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|c| c.resource_version())
            .collect::<Vec<_>>()
    );

    // --force pushes what the limb will refuse, and says what it overrode.
    let r = octopus(
        &kc,
        &[
            "push",
            other.to_str().unwrap(),
            "--force",
            "--name",
            "adaptors.edge.cattle.io/other",
            "-o",
            "json",
        ],
    )
    .success();
    let v = r.json();
    assert_eq!(v["configMap"], "adaptor-other");
    assert!(v["version"].is_null());
    assert!(
        v["overridden"][0]
            .as_str()
            .unwrap()
            .contains("the limb will refuse"),
        "{v}"
    );
    assert!(
        r.stderr.contains("warning: the limb will refuse"),
        "{}",
        r.stderr
    );

    // Without DeviceLinks' CRD, list still shows the ConfigMaps and says why no nodes.
    let r = octopus(&kc, &["list", "-o", "json"]).success();
    let v = r.json();
    assert!(
        v["linksError"]
            .as_str()
            .unwrap()
            .contains("cannot list DeviceLinks"),
        "{v}"
    );
    let names: Vec<&str> = v["adaptors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "adaptors.edge.cattle.io/dummy",
            "adaptors.edge.cattle.io/other"
        ]
    );
    assert!(
        r.stderr.contains("warning: cannot list DeviceLinks"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn a_dry_run_prints_the_limb_format_and_touches_nothing() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    create_namespace(&client, NS).await;
    let modbus = component("adaptor_modbus");
    let path = component_path("adaptor_modbus");
    let r = octopus(
        &server.kubeconfig,
        &["push", path.to_str().unwrap(), "--dry-run"],
    )
    .success();
    // The model's CRD first (the component declares it), then the ConfigMap.
    let expected = crate::models::generated_yaml("modbusdevices")
        + &package::render(
            "adaptor-modbus",
            NS,
            "adaptors.edge.cattle.io/modbus",
            &["devices.edge.cattle.io/v1alpha1/ModbusDevice".to_owned()],
            &modbus,
        );
    assert_eq!(r.stdout, expected);
    assert!(r.stderr.contains("nothing was written"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("created   CRD modbusdevices.devices.edge.cattle.io"),
        "the diff against the cluster: {}",
        r.stderr
    );

    let r = octopus(
        &server.kubeconfig,
        &[
            "push",
            path.to_str().unwrap(),
            "--dry-run",
            "-o",
            "json",
            "-n",
            "edge",
        ],
    )
    .success();
    let v = r.json();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"][0]["kind"], "CustomResourceDefinition");
    assert_eq!(v["items"][1]["metadata"]["namespace"], "edge");
    assert_eq!(
        v["items"][1]["metadata"]["annotations"][package::DIGEST_ANNOTATION],
        package::digest(&modbus)
    );

    // Nothing was written, and no cluster is needed at all.
    assert!(adaptor_configmaps(&client, NS).await.is_empty());
    assert!(
        crate::models::installed_crd(&client, "modbusdevices.devices.edge.cattle.io")
            .await
            .is_none()
    );
    let r = octopus(
        std::path::Path::new("/nonexistent/kubeconfig"),
        &["push", path.to_str().unwrap(), "--dry-run"],
    )
    .success();
    assert_eq!(r.stdout, expected);
    assert!(
        r.stderr.contains("no diff against the cluster"),
        "{}",
        r.stderr
    );
}
