//! Adaptors that bring their own model (contract 0.1.3): on a real API server, a
//! JavaScript adaptor pushed with `octopus push` installs its model's CRD, the admission
//! webhook refuses a link with a typo against that schema, a good link runs, and a new
//! version that renames a field is held for the link that still uses the old name until
//! the link is fixed. In standalone mode the limb makes the same refusals itself.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crds::conditions::ConditionType;
use crds::v1alpha1::DeviceLink;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::cluster::{Limb, control_plane_with, device_instances, start_limb, wait};
use octopus_tests::bins;

const COUNTER: &str = "adaptors.edge.cattle.io/counter";
const CRD: &str = "counterdevices.devices.edge.cattle.io";

/// `octopus push FILE` with the test's kubeconfig; its stderr (the progress).
fn push(kubeconfig: &Path, component: &str) -> String {
    let path = octopus_tests::paths::component_path(component);
    let out = Command::new(bins::octopus())
        .args(["push", path.to_str().unwrap()])
        .env("KUBECONFIG", kubeconfig)
        .env_remove("OCTOPUS_NAMESPACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "octopus push {component} failed:\n{stderr}"
    );
    eprintln!("octopus push {component}:\n{stderr}");
    stderr
}

fn counter_link(name: &str, spec: Value) -> DeviceLink {
    serde_json::from_value(json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "adaptor": {"node": "edge-1", "name": COUNTER},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "CounterDevice"},
            "template": {"spec": spec}
        }
    }))
    .unwrap()
}

fn condition(l: &DeviceLink, t: ConditionType) -> Option<(String, String)> {
    l.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_adaptor_brings_its_model_and_a_swap_its_schema_rejects_waits_for_the_fix() {
    let (server, client, _brain) = control_plane_with(&["CounterDevice"], true).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    assert!(crds.get_opt(CRD).await.unwrap().is_none());

    // One file: the component, whose push installs its model.
    let out = push(&server.kubeconfig, "adaptor_counter_javascript");
    assert!(out.contains(&format!("created   CRD {CRD}")), "{out}");
    kube::runtime::wait::await_condition(
        crds.clone(),
        CRD,
        kube::runtime::conditions::is_crd_established(),
    )
    .await
    .unwrap();
    let limb = start_limb(&server, "schema");

    // A typo is refused at admission, by the schema the component declared.
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    let typo = counter_link("typo", json!({"stepp": 2, "syncIntervalMs": 200}));
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let refused = wait(
        "the webhook refuses the typo",
        Duration::from_secs(60),
        async || match links.create(&dry, &typo).await {
            Err(kube::Error::Api(e)) => Some(e.message),
            _ => None,
        },
    )
    .await;
    assert!(
        refused.contains("spec.template.spec.stepp: unknown field")
            && refused.contains("did you mean `step`?"),
        "{refused}"
    );
    assert!(links.create(&PostParams::default(), &typo).await.is_err());

    // A good link runs.
    links
        .create(
            &PostParams::default(),
            &counter_link("counter", json!({"step": 2, "syncIntervalMs": 200})),
        )
        .await
        .unwrap();
    let instances = device_instances(&client, "CounterDevice", "counterdevices");
    let before = wait(
        "counts in the instance",
        Duration::from_secs(120),
        async || {
            let i = instances.get("counter").await.ok()?;
            i.data["status"]["count"].as_i64().filter(|c| *c >= 4)
        },
    )
    .await;

    // A new version renames `step` to `increment`: push says which link it holds...
    let out = push(&server.kubeconfig, "adaptor_counter_renamed_javascript");
    assert!(
        out.contains("spec.step: renamed to spec.increment (breaking)"),
        "{out}"
    );
    assert!(
        out.contains("held      DeviceLink default/counter: spec.template.spec.step"),
        "{out}"
    );
    // ...and the limb keeps the link on the running version, saying why on the link.
    let (_, message) = wait(
        "AdaptorExisted says the swap is held",
        Duration::from_secs(60),
        async || {
            let l = links.get("counter").await.ok()?;
            condition(&l, ConditionType::AdaptorExisted).filter(|(r, _)| r == "SwapHeld")
        },
    )
    .await;
    assert!(
        message.starts_with(&format!("{COUNTER} 0.1.0+javascript"))
            && message.contains(&format!("held: {COUNTER} 0.2.0+javascript"))
            && message.contains("spec.template.spec.step: unknown field"),
        "{message}"
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    wait("a SwapHeld event", Duration::from_secs(30), async || {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SwapHeld"))
    })
    .await;
    // It keeps counting meanwhile, on 0.1.0.
    wait(
        "counting on 0.1.0 while held",
        Duration::from_secs(30),
        async || {
            let d = limb.device_named("counter")?;
            (d["adaptorVersion"] == "0.1.0+javascript"
                && d["status"]["count"].as_i64()? > before + 4)
                .then_some(())
        },
    )
    .await;

    // Fixing the link moves it to the new version, which takes the count over.
    links
        .patch(
            "counter",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"step": null, "increment": 2}}}})),
        )
        .await
        .unwrap();
    let count = wait(
        "the link runs on 0.2.0",
        Duration::from_secs(60),
        async || {
            let d = limb.device_named("counter")?;
            (d["adaptorVersion"] == "0.2.0+javascript")
                .then(|| d["status"]["count"].as_i64())
                .flatten()
        },
    )
    .await;
    assert!(
        count > before,
        "the count was carried over: {count} <= {before}"
    );
    let (reason, _) = wait("the hold is gone", Duration::from_secs(30), async || {
        let l = links.get("counter").await.ok()?;
        condition(&l, ConditionType::AdaptorExisted).filter(|(r, _)| r != "SwapHeld")
    })
    .await;
    assert_eq!(reason, "Found");
}
