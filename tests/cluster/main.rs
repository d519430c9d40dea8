//! The brain against a real kube-apiserver with etcd: CRDs install, the schema rejects
//! bad links, and NodeExisted / ModelExisted follow nodes and CRDs as they come and go.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod admission;
mod dashboard;
mod rbac;
mod validate;

use octopus_tests::apiserver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::{ApiServer, install_crds};
use brain::metrics::Metrics;
use brain::reconciler::{self, Context};
use crds::conditions::{ConditionStatus, ConditionType};
use crds::v1alpha1::{DeviceLink, LIMB_FINALIZER, NODE_LABEL};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use octopus_tests::paths::repo_file;
use octopus_tests::process::Process;

async fn install_all(client: &Client) {
    install_crds(client, crds::generated::all().into_iter().map(|(_, c)| c)).await;
}

/// Runs the brain's controller in this process until the returned sender is dropped.
fn start_brain(client: &Client) -> tokio::sync::oneshot::Sender<()> {
    start_brain_with(client, Arc::new(Metrics::default()))
}

/// [`start_brain`] counting into `metrics`, for a test that waits on its reconciles.
fn start_brain_with(client: &Client, metrics: Arc<Metrics>) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let ctx = Arc::new(Context::new(client.clone(), metrics, Some("test".into())));
    tokio::spawn(reconciler::run(ctx, async move {
        let _ = rx.await;
    }));
    tx
}

fn link_json(name: &str, node: &str, api_version: &str, kind: &str) -> DeviceLink {
    serde_json::from_value(json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "adaptor": {"node": node, "name": "adaptors.edge.cattle.io/dummy"},
            "model": {"apiVersion": api_version, "kind": kind},
            "template": {"spec": {"protocol": {"location": "lab"}, "gear": "slow", "on": true}}
        }
    }))
    .unwrap()
}

fn cond(l: &DeviceLink, t: ConditionType) -> Option<(ConditionStatus, String)> {
    l.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == t))
        .map(|c| (c.status, c.reason.clone()))
}

/// How many reconciles the brain has finished, whatever their outcome.
fn reconciles(metrics: &Metrics) -> u64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("octopus_brain_reconciles_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Waits for `pred` on the link; returns it and how long it took.
async fn wait_link(
    api: &Api<DeviceLink>,
    name: &str,
    what: &str,
    pred: impl Fn(&DeviceLink) -> bool,
) -> (DeviceLink, Duration) {
    let start = Instant::now();
    loop {
        if let Some(l) = api.get_opt(name).await.unwrap()
            && pred(&l)
        {
            eprintln!("converged: {name}: {what} in {:.2?}", start.elapsed());
            return (l, start.elapsed());
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{name}: {what} not reached; last: {:#?}",
            api.get_opt(name).await.unwrap().map(|l| l.status)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_node(client: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}),
    )
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.1.2.3"}, {"type": "Hostname", "address": name}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_install_and_the_schema_rejects_what_cannot_work() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    install_all(&client).await;
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");

    // Octopus's own example applies unchanged.
    let yaml =
        std::fs::read_to_string(repo_file("examples/standalone/living-room-fan.yaml")).unwrap();
    let value: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    let dyn_api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::api::ApiResource::erase::<DeviceLink>(&()),
    );
    let obj: kube::api::DynamicObject = serde_json::from_value(value).unwrap();
    dyn_api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(links.get_opt("living-room-fan").await.unwrap().is_some());

    // A link without a node, and one whose model is a string, are refused by the schema.
    for (name, bad) in [
        (
            "no-node",
            json!({"adaptor": {"name": "x"}, "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "K"}, "template": {"spec": {}}}),
        ),
        (
            "bad-model",
            json!({"adaptor": {"node": "n", "name": "x"}, "model": "DummySpecialDevice", "template": {"spec": {}}}),
        ),
    ] {
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
            "metadata": {"name": name, "namespace": "default"}, "spec": bad
        }))
        .unwrap();
        let err = dyn_api
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_err();
        let kube::Error::Api(e) = err else {
            panic!("{name}: {err}")
        };
        assert_eq!(e.code, 422, "{name}: {}", e.message);
        eprintln!("{name} rejected: {}", e.message);
    }

    // Every device model CRD is established.
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for kind in [
        "DummySpecialDevice",
        "DummyProtocolDevice",
        "ModbusDevice",
        "MQTTDevice",
        "OPCUADevice",
    ] {
        let all = crd_api.list(&Default::default()).await.unwrap();
        assert!(
            all.items
                .iter()
                .any(|c| c.spec.names.kind == kind && c.spec.group == "devices.edge.cattle.io"),
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_existed_follows_the_node() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    install_all(&client).await;
    let metrics = Arc::new(Metrics::default());
    let _brain = start_brain_with(&client, metrics.clone());
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    links
        .create(
            &PostParams::default(),
            &link_json(
                "fan",
                "edge-1",
                "devices.edge.cattle.io/v1alpha1",
                "DummySpecialDevice",
            ),
        )
        .await
        .unwrap();
    let (l, _) = wait_link(&links, "fan", "NodeExisted=False/NotFound", |l| {
        cond(l, ConditionType::NodeExisted) == Some((ConditionStatus::False, "NotFound".into()))
    })
    .await;
    assert_eq!(
        l.status.as_ref().unwrap().conditions.len(),
        1,
        "a failed node ends the pipeline"
    );

    create_node(&client, "edge-1").await;
    // The node gets its addresses in a second write (as a kubelet's registration does),
    // so the brain may first see it without any: wait for them to be copied too.
    let (l, _) = wait_link(
        &links,
        "fan",
        "NodeExisted=True after the node is created",
        // The brain labels a link after writing its status: wait for both.
        |l| {
            cond(l, ConditionType::ModelExisted).is_some_and(|c| c.0 == ConditionStatus::True)
                && l.status
                    .as_ref()
                    .is_some_and(|s| s.node_internal_ip.is_some())
                && l.labels().get(NODE_LABEL).map(String::as_str) == Some("edge-1")
        },
    )
    .await;
    let st = l.status.clone().unwrap();
    assert_eq!(st.node_internal_ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(st.node_host_name.as_deref(), Some("edge-1"));
    assert_eq!(
        cond(&l, ConditionType::AdaptorExisted),
        Some((ConditionStatus::Unknown, "Confirming".into()))
    );
    assert_eq!(
        l.labels().get(NODE_LABEL).map(String::as_str),
        Some("edge-1")
    );
    assert_eq!(st.observed_generation, l.metadata.generation);

    // The limb's conditions survive re-validation.
    let mut st2 = st.clone();
    let mut c = crds::Conditions(st2.conditions.clone());
    c.succeed(ConditionType::AdaptorExisted, &crds::conditions::now());
    c.succeed(ConditionType::DeviceCreated, &crds::conditions::now());
    st2.conditions = c.0;
    links
        .patch_status(
            "fan",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": st2.conditions}})),
        )
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let before = reconciles(&metrics);
    nodes
        .patch(
            "edge-1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"touch": "1"}}})),
        )
        .await
        .unwrap();
    // The node's change re-validates its links: wait for the brain to finish a reconcile
    // after it (the limb's status write above triggers one too; either re-validates).
    let start = Instant::now();
    while reconciles(&metrics) <= before {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the brain finished no reconcile in 30 s after the node changed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let l = links.get("fan").await.unwrap();
    assert_eq!(
        cond(&l, ConditionType::DeviceCreated),
        Some((ConditionStatus::True, "Success".into())),
        "limb conditions kept"
    );

    nodes
        .delete("edge-1", &DeleteParams::default())
        .await
        .unwrap();
    let (l, _) = wait_link(
        &links,
        "fan",
        "NodeExisted=False and no node label after the node is deleted",
        |l| {
            cond(l, ConditionType::NodeExisted).is_some_and(|c| c.0 == ConditionStatus::False)
                && l.labels().get(NODE_LABEL).is_none()
        },
    )
    .await;
    assert!(
        l.labels().get(NODE_LABEL).is_none(),
        "the node label goes with the node"
    );
    assert!(l.status.unwrap().node_internal_ip.is_none());

    // Moving the link to another existing node re-validates it.
    create_node(&client, "edge-2").await;
    links
        .patch(
            "fan",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"adaptor": {"node": "edge-2"}}})),
        )
        .await
        .unwrap();
    wait_link(
        &links,
        "fan",
        "NodeExisted=True after moving to another node",
        |l| {
            cond(l, ConditionType::NodeExisted).is_some_and(|c| c.0 == ConditionStatus::True)
                && l.labels().get(NODE_LABEL).map(String::as_str) == Some("edge-2")
        },
    )
    .await;
}

fn test_crd(served_alpha: bool) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "thermostats.devices.edge.cattle.io"},
        "spec": {
            "group": "devices.edge.cattle.io",
            "names": {"kind": "Thermostat", "plural": "thermostats", "singular": "thermostat", "listKind": "ThermostatList"},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1alpha1", "served": served_alpha, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                {"name": "v1beta1", "served": true, "storage": true,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
            ]
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_existed_follows_the_crd_and_its_served_versions() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    install_crds(&client, vec![crds::generated::all().remove(0).1]).await;
    create_node(&client, "edge-1").await;
    let _brain = start_brain(&client);
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    // "Thermostat" pluralises to "thermostats" by luck; the point is the lookup by group
    // and kind, which the second CRD below (kind "Box", plural "boxen") proves.
    links
        .create(
            &PostParams::default(),
            &link_json(
                "t",
                "edge-1",
                "devices.edge.cattle.io/v1alpha1",
                "Thermostat",
            ),
        )
        .await
        .unwrap();
    wait_link(&links, "t", "ModelExisted=False without the CRD", |l| {
        cond(l, ConditionType::ModelExisted) == Some((ConditionStatus::False, "NotFound".into()))
    })
    .await;
    install_crds(&client, vec![test_crd(true)]).await;
    wait_link(&links, "t", "ModelExisted=True once the CRD exists", |l| {
        cond(l, ConditionType::ModelExisted).is_some_and(|c| c.0 == ConditionStatus::True)
    })
    .await;
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    crd_api
        .patch(
            "thermostats.devices.edge.cattle.io",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&test_crd(false)),
        )
        .await
        .unwrap();
    let (l, _) = wait_link(
        &links,
        "t",
        "ModelExisted=False when v1alpha1 is no longer served",
        |l| cond(l, ConditionType::ModelExisted).is_some_and(|c| c.0 == ConditionStatus::False),
    )
    .await;
    let msg = &l.status.unwrap().conditions[1].message;
    assert!(
        msg.contains("isn't served") && msg.contains("v1beta1"),
        "{msg}"
    );
    crd_api
        .patch(
            "thermostats.devices.edge.cattle.io",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&test_crd(true)),
        )
        .await
        .unwrap();
    wait_link(&links, "t", "ModelExisted=True when served again", |l| {
        cond(l, ConditionType::ModelExisted).is_some_and(|c| c.0 == ConditionStatus::True)
    })
    .await;
    crd_api
        .delete(
            "thermostats.devices.edge.cattle.io",
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    wait_link(
        &links,
        "t",
        "ModelExisted=False after the CRD is deleted",
        |l| cond(l, ConditionType::ModelExisted).is_some_and(|c| c.0 == ConditionStatus::False),
    )
    .await;

    // An irregular plural: found by group and kind, not by kind + "s".
    let mut boxes = test_crd(true);
    boxes.metadata.name = Some("boxen.devices.edge.cattle.io".into());
    boxes.spec.names.kind = "Box".into();
    boxes.spec.names.plural = "boxen".into();
    boxes.spec.names.singular = Some("box".into());
    boxes.spec.names.list_kind = Some("BoxList".into());
    install_crds(&client, vec![boxes]).await;
    links
        .create(
            &PostParams::default(),
            &link_json("b", "edge-1", "devices.edge.cattle.io/v1alpha1", "Box"),
        )
        .await
        .unwrap();
    wait_link(
        &links,
        "b",
        "ModelExisted=True for an irregular plural",
        |l| cond(l, ConditionType::ModelExisted).is_some_and(|c| c.0 == ConditionStatus::True),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_link_whose_node_is_gone_does_not_hang() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    install_all(&client).await;
    let _brain = start_brain(&client);
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    let mut l = link_json(
        "orphan",
        "gone-node",
        "devices.edge.cattle.io/v1alpha1",
        "DummySpecialDevice",
    );
    l.metadata.finalizers = Some(vec![LIMB_FINALIZER.to_owned()]);
    links.create(&PostParams::default(), &l).await.unwrap();
    wait_link(&links, "orphan", "NodeExisted=False", |l| {
        cond(l, ConditionType::NodeExisted).is_some()
    })
    .await;
    let start = Instant::now();
    links
        .delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    while links.get_opt("orphan").await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "deletion hangs on the limb finalizer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("converged: orphan link deleted in {:.2?}", start.elapsed());
}

fn spawn_brain(server: &ApiServer, id: &str) -> Process {
    spawn_brain_with(&server.kubeconfig, server, id, "default")
}

fn spawn_brain_with(
    kubeconfig: &std::path::Path,
    server: &ApiServer,
    id: &str,
    lease_ns: &str,
) -> Process {
    brain_process(
        kubeconfig,
        server,
        id,
        &[
            "--lease-namespace",
            lease_ns,
            "--lease-duration",
            "3s",
            "--lease-retry",
            "500ms",
        ],
    )
}

/// The brain `id` with the Lease settings `lease`, logging to `<id>.log`.
fn brain_process(
    kubeconfig: &std::path::Path,
    server: &ApiServer,
    id: &str,
    lease: &[&str],
) -> Process {
    let mut args = vec!["run", "--identity", id];
    args.extend(lease);
    Process::start(
        octopus_tests::bins::brain(),
        &args,
        kubeconfig,
        &[("BRAIN_LOG", "info,brain=debug,kube_runtime=debug")],
        &server.dir.path().join(format!("{id}.log")),
    )
}

async fn holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    leases
        .get_opt("octopus-brain")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brains_elect_one_leader_and_the_second_takes_over() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    install_all(&client).await;
    create_node(&client, "edge-1").await;
    let a = spawn_brain(&server, "brain-a");
    let start = Instant::now();
    while holder(&client).await.as_deref() != Some("brain-a") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "brain-a never led"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = spawn_brain(&server, "brain-b");
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    links
        .create(
            &PostParams::default(),
            &link_json(
                "one",
                "edge-1",
                "devices.edge.cattle.io/v1alpha1",
                "DummySpecialDevice",
            ),
        )
        .await
        .unwrap();
    wait_link(&links, "one", "validated by the leader", |l| {
        cond(l, ConditionType::ModelExisted).is_some()
    })
    .await;
    // Nothing happening is the case under test: for 2 s (renewals by brain-a, attempts
    // by brain-b) the lease stays with brain-a.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        holder(&client).await.as_deref(),
        Some("brain-a"),
        "the standby must not steal a live lease"
    );

    // SIGKILL: no release, so the standby waits out the lease (3 s) and takes over.
    let killed = Instant::now();
    drop(a);
    while holder(&client).await.as_deref() != Some("brain-b") {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "brain-b never took over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "converged: brain-b took over {:.2?} after brain-a was killed",
        killed.elapsed()
    );
    links
        .create(
            &PostParams::default(),
            &link_json(
                "two",
                "edge-1",
                "devices.edge.cattle.io/v1alpha1",
                "DummySpecialDevice",
            ),
        )
        .await
        .unwrap();
    wait_link(&links, "two", "validated by the new leader", |l| {
        cond(l, ConditionType::ModelExisted).is_some_and(|c| c.0 == ConditionStatus::True)
    })
    .await;
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brain_works_with_exactly_the_rbac_it_ships() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    install_all(&client).await;
    create_node(&client, "edge-1").await;
    server
        .apply_rbac(&repo_file("deploy/brain.yaml"), "octopus-brain")
        .await;
    let _brain = spawn_brain_with(
        &server.user_kubeconfig("brain"),
        &server,
        "brain-rbac",
        "octopus-system",
    );
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    links
        .create(
            &PostParams::default(),
            &link_json(
                "least",
                "edge-1",
                "devices.edge.cattle.io/v1alpha1",
                "DummySpecialDevice",
            ),
        )
        .await
        .unwrap();
    let (l, _) = wait_link(&links, "least", "validated with the shipped RBAC", |l| {
        cond(l, ConditionType::ModelExisted).is_some_and(|c| c.0 == ConditionStatus::True)
            && l.labels().get(NODE_LABEL).is_some()
    })
    .await;
    assert_eq!(
        l.labels().get(NODE_LABEL).map(String::as_str),
        Some("edge-1")
    );
    let leases: Api<Lease> = Api::namespaced(client.clone(), "octopus-system");
    let lease = leases.get("octopus-brain").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("brain-rbac")
    );
    // And it cannot read Secrets.
    let brain_client = {
        let kc = kube::config::Kubeconfig::read_from(server.user_kubeconfig("brain")).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        Client::try_from(cfg).unwrap()
    };
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::all(brain_client);
    let err = secrets.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 403),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brain_keeps_validating_after_the_api_server_comes_back() {
    let mut server = ApiServer::start().await;
    let client = server.client().await;
    install_all(&client).await;
    create_node(&client, "edge-1").await;
    // A Lease that outlives the outage: the leader must keep leading and keep watching.
    let mut brain = brain_process(
        &server.kubeconfig,
        &server,
        "brain-outage",
        &["--lease-namespace", "default", "--lease-duration", "30s"],
    );
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    let validated = |l: &DeviceLink| {
        cond(l, ConditionType::ModelExisted).is_some_and(|c| c.0 == ConditionStatus::True)
    };
    links
        .create(
            &PostParams::default(),
            &link_json(
                "before",
                "edge-1",
                "devices.edge.cattle.io/v1alpha1",
                "DummySpecialDevice",
            ),
        )
        .await
        .unwrap();
    wait_link(&links, "before", "validated", validated).await;

    server.stop_api();
    // The outage's length is the case under test: 10 s, shorter than the Lease.
    tokio::time::sleep(Duration::from_secs(10)).await;
    server.restart_api().await;
    let client = server.client().await;
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    links
        .create(
            &PostParams::default(),
            &link_json(
                "after",
                "edge-1",
                "devices.edge.cattle.io/v1alpha1",
                "DummySpecialDevice",
            ),
        )
        .await
        .unwrap();
    let log = server.dir.path().join("brain-outage.log");
    let _dump = DumpOnPanic(log);
    wait_link(&links, "after", "validated after the outage", validated).await;
    assert!(
        !brain.exited(),
        "the brain exited during a 10 s outage, shorter than its Lease"
    );
}

/// Prints a log file if the test fails while it is alive.
struct DumpOnPanic(std::path::PathBuf);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {}\n{}",
                self.0.display(),
                std::fs::read_to_string(&self.0).unwrap_or_default()
            );
        }
    }
}
