//! `octopus list` against a real API server, with DeviceLinks whose status the test
//! writes the way the limb does.

use crds::DeviceLink;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::apiserver::{ApiServer, install_crds};
use crate::common::{component, component_path, create_namespace, octopus};

const DUMMY: &str = "adaptors.edge.cattle.io/dummy";

/// Creates a link and writes its status as a limb that loaded `loaded` would.
async fn link(
    client: &Client,
    ns: &str,
    name: &str,
    node: &str,
    adaptor: &str,
    conditions: Option<Value>,
) {
    let api: Api<DeviceLink> = Api::namespaced(client.clone(), ns);
    let dl: DeviceLink = serde_json::from_value(json!({
        "apiVersion": "edge.cattle.io/v1alpha1",
        "kind": "DeviceLink",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "adaptor": {"node": node, "name": adaptor},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummySpecialDevice"},
            "template": {"spec": {"gear": "slow"}}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &dl).await.unwrap();
    if let Some(conditions) = conditions {
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": conditions}})),
        )
        .await
        .unwrap();
    }
}

/// The conditions of a running device, `AdaptorExisted`'s message as the limb writes it.
fn running(version: &str, hex12: &str, connected: bool) -> Value {
    let t = "2026-01-01T00:00:00Z";
    json!([
        {"type": "NodeExisted", "status": "True", "reason": "Found", "lastUpdateTime": t},
        {"type": "ModelExisted", "status": "True", "reason": "Found", "lastUpdateTime": t},
        {"type": "AdaptorExisted", "status": "True", "reason": "Found", "lastUpdateTime": t,
         "message": format!("{DUMMY} {version} (sha256:{hex12})")},
        {"type": "DeviceCreated", "status": "True", "reason": "Success", "lastUpdateTime": t},
        {"type": "DeviceConnected", "status": if connected { "True" } else { "False" },
         "reason": if connected { "Healthy" } else { "Unhealthy" }, "lastUpdateTime": t},
    ])
}

#[tokio::test]
async fn list_shows_each_adaptor_with_its_nodes_versions_and_health() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    create_namespace(&client, "octopus-system").await;
    create_namespace(&client, "factory").await;
    install_crds(&client, crds::generated::all().into_iter().map(|(_, c)| c)).await;
    let kc = server.kubeconfig.clone();
    octopus(
        &kc,
        &["push", component_path("adaptor_dummy").to_str().unwrap()],
    )
    .success();
    let digest = limb::adaptors::package::digest(&component("adaptor_dummy"));
    let hex12 = &digest[7..19];

    link(
        &client,
        "default",
        "fan-1",
        "edge-1",
        DUMMY,
        Some(running("0.1.0", hex12, true)),
    )
    .await;
    link(
        &client,
        "factory",
        "fan-2",
        "edge-1",
        DUMMY,
        Some(running("0.1.0", hex12, false)),
    )
    .await;
    link(
        &client,
        "default",
        "fan-3",
        "edge-2",
        DUMMY,
        Some(running("0.0.9", "0123456789ab", true)),
    )
    .await;
    link(&client, "default", "fan-4", "edge-2", DUMMY, None).await;
    link(
        &client,
        "default",
        "ghost-1",
        "edge-3",
        "adaptors.edge.cattle.io/ghost",
        None,
    )
    .await;

    let v = octopus(&kc, &["list", "-o", "json"]).success().json();
    assert_eq!(v["namespace"], "octopus-system");
    assert!(v["linksError"].is_null());
    let dummy = &v["adaptors"][0];
    assert_eq!(dummy["name"], DUMMY);
    assert_eq!(dummy["configMap"], "adaptor-dummy");
    assert_eq!(dummy["digest"], digest);
    assert_eq!(dummy["encoding"], "gzip");
    assert_eq!(
        (dummy["parts"].as_u64(), dummy["partsPresent"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        dummy["size"].as_u64().unwrap() as usize,
        component("adaptor_dummy").len()
    );
    assert_eq!(dummy["problems"], json!([]));
    assert_eq!(
        dummy["nodes"],
        json!([
            {"node": "edge-1", "links": 2, "connected": 1, "loaded": 2, "versions": [
                {"version": "0.1.0", "digest": format!("sha256:{hex12}"), "links": 2, "pinned": 0, "current": true}]},
            {"node": "edge-2", "links": 2, "connected": 1, "loaded": 1, "versions": [
                {"version": "0.0.9", "digest": "sha256:0123456789ab", "links": 1, "pinned": 0, "current": false}]},
        ])
    );
    let ghost = &v["adaptors"][1];
    assert_eq!(ghost["name"], "adaptors.edge.cattle.io/ghost");
    assert!(ghost["configMap"].is_null());
    assert!(
        ghost["problems"][0]
            .as_str()
            .unwrap()
            .contains("no ConfigMap in octopus-system")
    );
    assert_eq!(ghost["nodes"][0]["node"], "edge-3");
    assert_eq!(ghost["nodes"][0]["loaded"], 0);

    let text = octopus(&kc, &["list"]).success().stdout;
    eprintln!("octopus list:\n{text}");
    assert!(
        text.contains(&format!(
            "node edge-1: 2 links; 1 connected; 0.1.0 (sha256:{hex12}) on 2 links, current"
        )),
        "{text}"
    );
    assert!(
        text.contains("node edge-2: 2 links; 1 connected; 0.0.9 (sha256:0123456789ab) on 1 link, OLDER than the ConfigMap; 1 link not loaded (yet)"),
        "{text}"
    );
    assert!(
        text.contains("a node is listed only when a DeviceLink on it uses the adaptor"),
        "{text}"
    );

    // As a kubectl plugin, found on PATH by kubectl itself.
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("kubectl not installed: the plugin path is not exercised");
        return;
    }
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_kubectl-octopus"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("kubectl")
        .args(["octopus", "list", "-o", "json"])
        .env("KUBECONFIG", &kc)
        .env("PATH", path)
        .env_remove("OCTOPUS_NAMESPACE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plugin: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plugin, v);
}
