//! Taking over a cluster Octopus ran (docs/from-octopus.md), on the real API server with
//! its garbage collector. The "Octopus was here" state is built directly with the objects
//! Octopus's controllers left (per docs/shared octopus.md §1-3): its DeviceLink and
//! dummy-model CRDs (v1alpha1, schemas as its Go types gave them, trimmed to what the
//! objects here use), a DeviceLink with its limb finalizer, the five conditions and the
//! observed fields, and the device instance with its controller owner reference,
//! Octopus's annotations and a status. Octopus's brain and limb are not running (they
//! were uninstalled, its CRDs kept). Then ours is installed the way docs/from-octopus.md
//! says, and nothing may be lost: the same link and instance (UIDs), one finalizer, the
//! owner reference, status continuing, and a deletion that still completes.

use std::time::Duration;

use crds::conditions::{ConditionStatus, ConditionType};
use crds::v1alpha1::{DeviceLink, LIMB_FINALIZER};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use octopus_tests::apiserver::ApiServer;
use octopus_tests::bins;
use octopus_tests::paths::repo_file;
use octopus_tests::process::start_brain;

use crate::cluster::{Limb, device_instances, ship, start_limb, wait};
use crate::common::component;

/// Octopus's DeviceLink CRD (`edge.cattle.io_devicelinks.yaml`): v1alpha1, `dl`, its
/// printer columns, `template.spec` kept as written.
fn octopus_devicelink_crd() -> Value {
    let string = json!({"type": "string"});
    let type_meta = json!({"type": "object", "properties": {"apiVersion": string, "kind": string}});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "devicelinks.edge.cattle.io"},
        "spec": {
            "group": "edge.cattle.io", "scope": "Namespaced",
            "names": {"kind": "DeviceLink", "listKind": "DeviceLinkList", "plural": "devicelinks",
                      "singular": "devicelink", "shortNames": ["dl"]},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "KIND", "type": "string", "jsonPath": ".spec.model.kind"},
                    {"name": "NODE", "type": "string", "jsonPath": ".spec.adaptor.node"},
                    {"name": "ADAPTOR", "type": "string", "jsonPath": ".spec.adaptor.name"},
                    {"name": "PHASE", "type": "string", "jsonPath": ".status.conditions[-1].type"},
                    {"name": "STATUS", "type": "string", "jsonPath": ".status.conditions[-1].reason"},
                    {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
                ],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["adaptor", "model", "template"], "properties": {
                        "adaptor": {"type": "object", "required": ["name", "node"], "properties": {
                            "node": string, "name": string,
                            "parameters": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                        "model": type_meta,
                        "references": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                        "template": {"type": "object", "properties": {
                            "metadata": {"type": "object", "properties": {
                                "labels": {"type": "object", "additionalProperties": string}}},
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
                    }},
                    "status": {"type": "object", "properties": {
                        "conditions": {"type": "array", "items": {"type": "object", "required": ["status", "type"], "properties": {
                            "type": string, "status": string, "reason": string, "message": string,
                            "lastUpdateTime": {"type": "string", "format": "date-time"},
                            "lastTransitionTime": {"type": "string", "format": "date-time"}}}},
                        "nodeName": string, "nodeHostName": string, "nodeInternalIP": string,
                        "nodeInternalDNS": string, "nodeExternalIP": string, "nodeExternalDNS": string,
                        "model": type_meta, "adaptorName": string
                    }}
                }}}
            }]
        }
    })
}

/// Octopus's `DummySpecialDevice` CRD (`adaptors/dummy/deploy/e2e/all_in_one.yaml`).
fn octopus_dummy_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "dummyspecialdevices.devices.edge.cattle.io",
                     "annotations": {"devices.edge.cattle.io/enable": "true"}},
        "spec": {
            "group": "devices.edge.cattle.io", "scope": "Namespaced",
            "names": {"kind": "DummySpecialDevice", "listKind": "DummySpecialDeviceList",
                      "plural": "dummyspecialdevices", "singular": "dummyspecialdevice",
                      "shortNames": ["dummyspecial"]},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["on", "protocol"], "properties": {
                        "extension": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "protocol": {"type": "object", "required": ["location"],
                                     "properties": {"location": {"type": "string"}}},
                        "on": {"type": "boolean"},
                        "gear": {"type": "string", "enum": ["slow", "middle", "fast"]}
                    }},
                    "status": {"type": "object", "properties": {
                        "gear": {"type": "string", "enum": ["slow", "middle", "fast"]},
                        "rotatingSpeed": {"type": "integer", "format": "int32"}
                    }}
                }}}
            }]
        }
    })
}

async fn create_crd(client: &Client, crd: Value) {
    let crd: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    api.create(&PostParams::default(), &crd).await.unwrap();
    kube::runtime::wait::await_condition(
        api,
        &name,
        kube::runtime::wait::conditions::is_crd_established(),
    )
    .await
    .unwrap();
}

/// Ours over Octopus's, as `kubectl replace -f` (or a client-side apply of the whole
/// object) does: the new definition replaces the old one; objects stay.
async fn replace_crd(client: &Client, crd: &CustomResourceDefinition) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    match api.get_opt(&name).await.unwrap() {
        Some(old) => {
            let mut new = crd.clone();
            new.metadata.resource_version = old.resource_version();
            api.replace(&name, &PostParams::default(), &new)
                .await
                .unwrap();
        }
        None => {
            api.create(&PostParams::default(), crd).await.unwrap();
        }
    }
    kube::runtime::wait::await_condition(
        api,
        &name,
        kube::runtime::wait::conditions::is_crd_established(),
    )
    .await
    .unwrap();
}

/// What Octopus's controllers left for one working link `name`: the link with its
/// finalizer, conditions and observed fields, and its instance, whose spec is the
/// template's as the API server kept it (`stored`: Octopus's limb created it with a
/// plain create, so fields the model does not declare were pruned).
async fn octopus_was_here(client: &Client, name: &str, template: Value, stored: Value) {
    let links: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::api::ApiResource::erase::<DeviceLink>(&()),
    );
    let link: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": name, "namespace": "default",
                     "finalizers": [LIMB_FINALIZER]},
        "spec": {
            "adaptor": {"node": "edge-1", "name": "adaptors.edge.cattle.io/dummy"},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummySpecialDevice"},
            "template": {"metadata": {"labels": {"device": name}}, "spec": template}
        }
    }))
    .unwrap();
    let link = links.create(&PostParams::default(), &link).await.unwrap();
    let at = "2020-07-08T13:24:00Z";
    let condition = |t: &str, reason: &str| json!({"type": t, "status": "True", "reason": reason, "lastUpdateTime": at, "lastTransitionTime": at});
    let status = json!({"status": {
        "conditions": [
            condition("NodeExisted", "Found"), condition("ModelExisted", "Found"),
            condition("AdaptorExisted", "Found"), condition("DeviceCreated", "Success"),
            condition("DeviceConnected", "Healthy")
        ],
        "nodeName": "edge-1", "nodeHostName": "edge-1",
        "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummySpecialDevice"},
        "adaptorName": "adaptors.edge.cattle.io/dummy"
    }});
    links
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();

    let instances = device_instances(client, "DummySpecialDevice", "dummyspecialdevices");
    let instance: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummySpecialDevice",
        "metadata": {
            "name": name, "namespace": "default",
            "labels": {"device": name},
            "annotations": {"edge.cattle.io/node-name": "edge-1",
                            "edge.cattle.io/adaptor-name": "adaptors.edge.cattle.io/dummy"},
            "ownerReferences": [{"apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
                "name": name, "uid": link.uid().unwrap(),
                "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": stored
    }))
    .unwrap();
    instances
        .create(&PostParams::default(), &instance)
        .await
        .unwrap();
    instances
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"gear": "slow", "rotatingSpeed": 42}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_octopus_ran_is_taken_over_in_place_without_losing_a_link_or_instance() {
    let mut server = ApiServer::start().await;
    server.start_controller_manager();
    let client = server.client().await;
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "edge-1"}})).unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "octopus-system"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    // Octopus was here.
    create_crd(&client, octopus_devicelink_crd()).await;
    create_crd(&client, octopus_dummy_crd()).await;
    let spec = json!({"protocol": {"location": "living-room"}, "on": true, "gear": "slow"});
    octopus_was_here(&client, "living-room-fan", spec.clone(), spec).await;
    // Octopus's own kind of typo (its MQTT example spells `readOnlye`): its limb's create
    // let the API server drop the field, and the device ran without it.
    let typo = json!({"protocol": {"location": "kitchen"}, "on": true, "gaer": "fast"});
    let pruned = json!({"protocol": {"location": "kitchen"}, "on": true});
    octopus_was_here(&client, "kitchen-fan", typo, pruned).await;
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    let instances = device_instances(&client, "DummySpecialDevice", "dummyspecialdevices");
    let link_before = links.get("living-room-fan").await.unwrap();
    let instance_before = instances.get("living-room-fan").await.unwrap();
    let typo_before = instances.get("kitchen-fan").await.unwrap();

    // Before switching, docs/from-octopus.md has `brain validate` read the links as
    // `kubectl get dl -A -o yaml` prints them: the typo is named, the good link passes.
    let listed = serde_json::json!({
        "apiVersion": "v1", "kind": "List",
        "items": links.list(&Default::default()).await.unwrap().items,
    });
    let file = server.dir.path().join("links.yaml");
    std::fs::write(&file, serde_yaml::to_string(&listed).unwrap()).unwrap();
    let out = std::process::Command::new(bins::brain())
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("default/living-room-fan ok"), "{report}");
    assert!(
        report.contains("default/kitchen-fan: spec.template.spec.gaer: unknown field (Kubernetes would silently drop it); did you mean `gear`?"),
        "{report}"
    );

    // Ours, as docs/from-octopus.md installs it: CRDs replaced (not deleted), RBAC, the
    // brain, the adaptor, the limb.
    for (_, crd) in crds::generated::all() {
        replace_crd(&client, &crd).await;
    }
    server
        .apply_rbac(&repo_file("deploy/limb.yaml"), "octopus-limb")
        .await;
    server
        .apply_rbac(&repo_file("deploy/brain.yaml"), "octopus-brain")
        .await;
    let _brain = start_brain(&server, bins::brain(), "info,brain=debug");
    ship(&client, "dummy", &component("adaptor_dummy")).await;
    let limb = start_limb(&server, "migration");

    // The device runs again, writing the same instance.
    wait(
        "the limb's readings in Octopus's instance",
        Duration::from_secs(60),
        async || {
            let i = instances.get("living-room-fan").await.ok()?;
            let polls = i.data["status"]["polls"].as_u64()?;
            (polls >= 3).then_some(())
        },
    )
    .await;
    let link = wait("the link Healthy", Duration::from_secs(30), async || {
        let l = links.get("living-room-fan").await.ok()?;
        let c = l
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::DeviceConnected)?;
        (c.status == ConditionStatus::True && c.reason == "Healthy").then_some(l)
    })
    .await;
    let instance = instances.get("living-room-fan").await.unwrap();

    // Adopted, not re-created.
    assert_eq!(link.uid(), link_before.uid(), "the same link");
    assert_eq!(instance.uid(), instance_before.uid(), "the same instance");
    assert_eq!(
        instance.creation_timestamp(),
        instance_before.creation_timestamp()
    );
    assert_eq!(
        link.finalizers(),
        [LIMB_FINALIZER.to_owned()],
        "Octopus's finalizer, once"
    );
    let types: Vec<_> = link
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .map(|c| (c.type_, c.status))
        .collect();
    assert_eq!(
        types,
        ConditionType::ALL.map(|t| (t, ConditionStatus::True)),
        "{:?}",
        link.status
    );
    let owners = instance.owner_references();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        (
            Some(owners[0].uid.as_ref()),
            owners[0].controller,
            owners[0].block_owner_deletion
        ),
        (link.uid(), Some(true), Some(true))
    );
    let annotations = instance.annotations();
    assert_eq!(
        annotations
            .get("edge.cattle.io/node-name")
            .map(String::as_str),
        Some("edge-1")
    );
    assert_eq!(
        annotations
            .get("edge.cattle.io/adaptor-name")
            .map(String::as_str),
        Some("adaptors.edge.cattle.io/dummy")
    );
    assert_eq!(
        instance.labels().get("device").map(String::as_str),
        Some("living-room-fan")
    );
    assert_eq!(
        crds::octopus::check("DummySpecialDevice", &instance.data["status"]),
        Vec::<String>::new()
    );
    assert!(limb.device_named("living-room-fan").is_some());

    // The link with the typo is not silently changed: it says why it stopped, its
    // instance stays as it was, and fixing the template brings it back, same instance.
    let created = wait(
        "kitchen-fan DeviceCreated=False naming the typo",
        Duration::from_secs(60),
        async || {
            let l = links.get("kitchen-fan").await.ok()?;
            l.status?.conditions.into_iter().find(|c| {
                c.type_ == ConditionType::DeviceCreated && c.status == ConditionStatus::False
            })
        },
    )
    .await;
    assert_eq!(created.reason, "Fail");
    assert!(created.message.contains("gaer"), "{}", created.message);
    assert_eq!(
        instances.get("kitchen-fan").await.unwrap().uid(),
        typo_before.uid(),
        "the instance is kept"
    );
    links
        .patch(
            "kitchen-fan",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"gaer": null, "gear": "fast"}}}})),
        )
        .await
        .unwrap();
    wait(
        "kitchen-fan Healthy after the fix",
        Duration::from_secs(60),
        async || {
            let i = instances.get("kitchen-fan").await.ok()?;
            (i.data["status"]["gear"] == "fast" && i.data["status"]["polls"].as_u64()? >= 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        instances.get("kitchen-fan").await.unwrap().uid(),
        typo_before.uid()
    );

    // Deleting the link still completes: the finalizer is released, the instance goes.
    links
        .delete("living-room-fan", &DeleteParams::default())
        .await
        .unwrap();
    wait(
        "the link and its instance deleted",
        Duration::from_secs(60),
        async || {
            let link = links.get_opt("living-room-fan").await.ok()?;
            let instance = instances.get_opt("living-room-fan").await.ok()?;
            (link.is_none() && instance.is_none()).then_some(())
        },
    )
    .await;
}
