//! `octopus crd` on the shipped components: the CRD each makes from the models it
//! declares is byte for byte the one `crdgen` writes from the Rust types, so the
//! component is the model's single source and the drift check covers it. And `push`
//! installs the CRDs beside the adaptor.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};

use crate::apiserver::ApiServer;
use crate::common::{component_path, create_namespace, octopus};

/// The committed CRD of `plural`, as `octopus crd` prints it (a `---` instead of the
/// generated-file header).
pub fn generated_yaml(plural: &str) -> String {
    let path = octopus_tests::paths::repo_file(&format!(
        "crds/generated/devices.edge.cattle.io_{plural}.yaml"
    ));
    let text = std::fs::read_to_string(&path).unwrap();
    let (_, body) = text.split_once('\n').unwrap();
    format!("---\n{body}")
}

pub async fn installed_crd(client: &Client, name: &str) -> Option<CustomResourceDefinition> {
    Api::<CustomResourceDefinition>::all(client.clone())
        .get_opt(name)
        .await
        .unwrap()
}

#[test]
fn every_shipped_component_declares_exactly_the_generated_crd() {
    let none = std::path::Path::new("/nonexistent/kubeconfig");
    for (component, plurals) in [
        ("adaptor_modbus", &["modbusdevices"][..]),
        ("adaptor_mqtt", &["mqttdevices"]),
        ("adaptor_opcua", &["opcuadevices"]),
        ("adaptor_gpio", &["gpiodevices"]),
        ("adaptor_ble", &["bluetoothdevices"]),
        (
            "adaptor_dummy",
            &["dummyspecialdevices", "dummyprotocoldevices"],
        ),
        ("adaptor_registers_rust", &["registerdevices"]),
        ("adaptor_counter_rust", &["counterdevices"]),
        ("adaptor_counter_javascript", &["counterdevices"]),
        ("adaptor_counter_python", &["counterdevices"]),
        ("adaptor_counter_c", &["counterdevices"]),
        ("adaptor_counter_go", &["counterdevices"]),
        ("adaptor_counter_zig", &["counterdevices"]),
    ] {
        let path = component_path(component);
        let r = octopus(none, &["crd", path.to_str().unwrap()]).success();
        let want: String = plurals.iter().map(|p| generated_yaml(p)).collect();
        assert!(
            r.stdout == want,
            "{component}: `octopus crd` differs from crds/generated; rebuild the adaptors after `cargo run -p crds --bin crdgen`"
        );
    }
}

#[test]
fn a_component_that_declares_nothing_says_so() {
    let none = std::path::Path::new("/nonexistent/kubeconfig");
    // The Python `registers` has no models.json: it builds for the plain `adaptor` world.
    let path = component_path("adaptor_registers_python");
    let r = octopus(none, &["crd", path.to_str().unwrap()]).failure();
    assert!(
        r.stderr.contains("declares no model schema"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn push_installs_the_declared_crds_with_the_adaptor() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    create_namespace(&client, "octopus-system").await;
    let path = component_path("adaptor_dummy");
    let r = octopus(&server.kubeconfig, &["push", path.to_str().unwrap()]).success();
    for name in [
        "dummyspecialdevices.devices.edge.cattle.io",
        "dummyprotocoldevices.devices.edge.cattle.io",
    ] {
        assert!(
            r.stderr.contains(&format!("created   CRD {name}")),
            "{}",
            r.stderr
        );
        let crd = installed_crd(&client, name).await.unwrap();
        let managers: Vec<_> = crd
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|f| f.manager.as_deref())
            .collect();
        // One field manager for the spec (the API server manages the status).
        assert!(managers.contains(&"octopus-cli"), "{name}: {managers:?}");
        assert!(
            managers
                .iter()
                .all(|m| ["octopus-cli", "kube-apiserver"].contains(m)),
            "{name}: {managers:?}"
        );
    }
    // Pushing it again changes nothing.
    let r = octopus(&server.kubeconfig, &["push", path.to_str().unwrap()]).success();
    assert!(
        r.stderr
            .contains("unchanged CRD dummyspecialdevices.devices.edge.cattle.io"),
        "{}",
        r.stderr
    );
}
