//! The limb as a real process on a real kube-apiserver, with the brain validating links:
//! adaptors from ConfigMaps, device instances, status relay, hot swap, recovery.

use std::time::{Duration, Instant};

use crds::conditions::{ConditionStatus, ConditionType};
use crds::v1alpha1::{DeviceLink, LIMB_FINALIZER};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use octopus_tests::apiserver::ApiServer;
use octopus_tests::bins;
use octopus_tests::process::{Process, start_brain};

use crate::common::component;
use octopus_tests::paths::repo_file;

pub(crate) fn start_limb(server: &ApiServer, tag: &str) -> Process {
    start_limb_resyncing(server, tag, "2s")
}

/// The limb, re-reading everything every `resync`.
pub(crate) fn start_limb_resyncing(server: &ApiServer, tag: &str, resync: &str) -> Process {
    start_limb_timing(server, tag, resync, "1s")
}

/// The limb, re-reading everything every `resync`, with adaptor calls bounded by
/// `call_timeout`.
pub(crate) fn start_limb_timing(
    server: &ApiServer,
    tag: &str,
    resync: &str,
    call_timeout: &str,
) -> Process {
    let cache = server.dir.path().join("limb-cache");
    Process::start(
        bins::limb(),
        &[
            "--cache-dir",
            &cache.display().to_string(),
            "--call-timeout",
            call_timeout,
            "cluster",
            "--node",
            "edge-1",
            "--namespace",
            "octopus-system",
            "--status-flush",
            "100ms",
            "--resync",
            resync,
        ],
        &server.user_kubeconfig("limb"),
        &[],
        &server.dir.path().join(format!("limb-{tag}.log")),
    )
}

/// What the suite reads from the limb's admin endpoint.
pub(crate) trait Limb {
    /// The limb's report of `default/fan`.
    fn device(&self) -> Option<Value> {
        self.device_named("fan")
    }
    /// The limb's report of `default/<name>`.
    fn device_named(&self, name: &str) -> Option<Value>;
    /// The limb's reports of its adaptors.
    fn adaptors(&self) -> Option<Value>;
}

impl Limb for Process {
    fn device_named(&self, name: &str) -> Option<Value> {
        self.get_json(&format!("/devices/default/{name}"))
    }
    fn adaptors(&self) -> Option<Value> {
        self.get_json("/adaptors")
    }
}
/// Ships a component as `octopus push` would, as ConfigMap(s) named `adaptor-<short>`
/// for the adaptor `adaptors.edge.cattle.io/<short>`.
pub(crate) async fn ship(client: &Client, short: &str, bytes: &[u8]) {
    let yaml = limb::adaptors::package::render(
        &format!("adaptor-{short}"),
        "octopus-system",
        &format!("adaptors.edge.cattle.io/{short}"),
        &[],
        bytes,
    );
    octopus_tests::apiserver::apply_config_maps(client, "octopus-system", &yaml, "test").await;
}

/// The instances of the device model `kind` (resource `plural`) in `default`.
pub(crate) fn device_instances(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        plural: plural.into(),
        ..ApiResource::from_gvk(&GroupVersionKind::gvk(
            "devices.edge.cattle.io",
            "v1alpha1",
            kind,
        ))
    };
    Api::namespaced_with(client.clone(), "default", &ar)
}

pub(crate) fn cond(l: &DeviceLink, t: ConditionType) -> Option<(ConditionStatus, String)> {
    l.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status, c.reason.clone()))
}

static LOGS: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// The limb's logs, for a failure message.
pub(crate) fn limb_logs() -> String {
    let Some(dir) = LOGS.get() else {
        return String::new();
    };
    let mut out = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("limb-") || name == "brain.log" {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!(
                "--- {}\n{}\n",
                e.path().display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
    }
    out
}

pub(crate) async fn wait<T>(
    what: &str,
    within: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            eprintln!("converged: {what} in {:.2?}", start.elapsed());
            return v;
        }
        assert!(
            start.elapsed() < within,
            "{what}: not reached within {within:?}\n{}",
            limb_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn fan(gear: &str) -> Value {
    json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": "fan", "namespace": "default"},
        "spec": {
            "adaptor": {"node": "edge-1", "name": "adaptors.edge.cattle.io/dummy"},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummySpecialDevice"},
            "references": [
                {"name": "creds", "secret": {"name": "fan-creds", "items": ["password"]}},
                {"name": "me", "downwardAPI": {"items": [{"name": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}
            ],
            "template": {
                "metadata": {"labels": {"room": "lab"}},
                "spec": {"protocol": {"location": "lab"}, "gear": gear, "on": true, "parameters": {"syncInterval": "200ms"}}
            }
        }
    })
}

/// After a restart: the link `fan` has exactly one instance and one limb finalizer.
async fn assert_one_instance_and_finalizer(
    instances: &Api<DynamicObject>,
    links: &Api<DeviceLink>,
) {
    assert_eq!(
        instances
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let l = links.get("fan").await.unwrap();
    assert_eq!(
        l.finalizers()
            .iter()
            .filter(|f| *f == LIMB_FINALIZER)
            .count(),
        1
    );
}

/// Applies a CRD and waits until the API server serves it.
/// Waits (up to a minute) for the link `name` to report `DeviceConnected=True/Healthy`.
pub(crate) async fn wait_healthy(links: &Api<DeviceLink>, name: &str) {
    wait(
        "DeviceConnected=True/Healthy",
        Duration::from_secs(60),
        async || {
            let l = links.get(name).await.ok()?;
            (cond(&l, ConditionType::DeviceConnected)
                == Some((ConditionStatus::True, "Healthy".into())))
            .then_some(())
        },
    )
    .await;
}

pub(crate) async fn install_crd(client: &Client, crd: &CustomResourceDefinition) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    api.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap();
    kube::runtime::wait::await_condition(
        api,
        &name,
        kube::runtime::wait::conditions::is_crd_established(),
    )
    .await
    .unwrap();
}

/// A control plane as users install it: API server, garbage collector, the CRDs, the
/// RBAC in deploy/, a node `edge-1`, and the brain as a process.
pub(crate) async fn control_plane() -> (ApiServer, Client, Process) {
    control_plane_with(&[], false).await
}

/// [`control_plane`] without the model CRDs of the kinds in `skip` (a test that installs
/// them itself), and with `webhook`, the brain also admitting DeviceLinks, registered as
/// deploy/brain.yaml registers it (by URL: a test cannot route to a Service).
pub(crate) async fn control_plane_with(
    skip: &[&str],
    webhook: bool,
) -> (ApiServer, Client, Process) {
    let mut server = ApiServer::start().await;
    server.start_controller_manager();
    let _ = LOGS.set(server.dir.path().to_owned());
    let client = server.client().await;
    // CRDs, the limb's namespace, a node, the brain.
    for (_, crd) in crds::generated::all() {
        if !skip.contains(&crd.spec.names.kind.as_str()) {
            install_crd(&client, &crd).await;
        }
    }
    // The limb runs as a user holding exactly the RBAC that deploy/limb.yaml grants.
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "octopus-system"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    server
        .apply_rbac(&repo_file("deploy/limb.yaml"), "octopus-limb")
        .await;
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "edge-1"}})).unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    // The brain, as a process with exactly the RBAC that deploy/brain.yaml grants.
    server
        .apply_rbac(&repo_file("deploy/brain.yaml"), "octopus-brain")
        .await;
    let brain = if webhook {
        start_admitting_brain(&server, &client).await
    } else {
        start_brain(&server, bins::brain(), "info,brain=debug")
    };
    (server, client, brain)
}

/// The brain with its admission webhook on a free loopback port, and the webhook
/// configuration of deploy/brain.yaml pointed there.
async fn start_admitting_brain(server: &ApiServer, client: &Client) -> Process {
    let port = octopus_tests::process::free_port();
    octopus_tests::apiserver::register_brain_webhook(client, port).await;
    let listen = format!("127.0.0.1:{port}");
    Process::start(
        bins::brain(),
        &[
            "run",
            "--identity",
            "brain-0",
            "--lease-namespace",
            "octopus-system",
            "--webhook-listen",
            &listen,
            "--webhook-extra-sans",
            "127.0.0.1",
        ],
        &server.user_kubeconfig("brain"),
        &[("BRAIN_LOG", "info,brain=debug")],
        &server.dir.path().join("brain.log"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_link_runs_end_to_end_on_a_real_api_server() {
    let (mut server, client, mut brain) = control_plane().await;

    ship(&client, "dummy", &component("adaptor_dummy")).await;
    let mut limb = start_limb(&server, "1");
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    let link: DeviceLink = serde_json::from_value(fan("slow")).unwrap();
    links.create(&PostParams::default(), &link).await.unwrap();

    // References: the limb may not read Secrets until a namespace grants it, and says so.
    let connected_msg = async |needle: &str| {
        let l = links.get("fan").await.ok()?;
        let c = l
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::DeviceConnected)?;
        (c.status == ConditionStatus::False && c.message.contains(needle)).then_some(())
    };
    wait(
        "a condition naming the missing grant",
        Duration::from_secs(30),
        async || connected_msg("may not read Secret default/fan-creds").await,
    )
    .await;
    server
        .apply_rbac(&repo_file("deploy/limb-references.yaml"), "octopus-limb")
        .await;
    wait(
        "a condition naming the missing Secret",
        Duration::from_secs(30),
        async || connected_msg("Secret default/fan-creds does not exist").await,
    )
    .await;
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({"metadata": {"name": "fan-creds"}, "stringData": {"password": "s3cret", "other": "x"}})).unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    // All five conditions, in Octopus's order, ending Healthy.
    let l = wait(
        "DeviceConnected=True/Healthy",
        Duration::from_secs(60),
        async || {
            let l = links.get("fan").await.ok()?;
            (cond(&l, ConditionType::DeviceConnected)
                == Some((ConditionStatus::True, "Healthy".into())))
            .then_some(l)
        },
    )
    .await;
    let types: Vec<_> = l
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .map(|c| c.type_)
        .collect();
    assert_eq!(types, ConditionType::ALL);
    assert!(l.finalizers().iter().any(|f| f == LIMB_FINALIZER));
    assert_eq!(
        l.status.as_ref().unwrap().adaptor_name.as_deref(),
        Some("adaptors.edge.cattle.io/dummy")
    );

    // The instance: owned by the link, labelled from the template, with live status.
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "devices.edge.cattle.io",
        "v1alpha1",
        "DummySpecialDevice",
    ));
    let ar = ApiResource {
        plural: "dummyspecialdevices".into(),
        ..ar
    };
    let instances: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let inst = wait("instance status", Duration::from_secs(30), async || {
        let i = instances.get("fan").await.ok()?;
        i.data["status"]["rotatingSpeed"].is_number().then_some(i)
    })
    .await;
    assert_eq!(inst.labels().get("room").map(String::as_str), Some("lab"));
    let owner = &inst.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("DeviceLink", Some(true))
    );
    assert_eq!(inst.data["status"]["gear"], "slow");
    let d = limb.device().unwrap();
    let configured = d["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["reason"] == "Configured"))
        .and_then(|e| e["message"].as_str());
    assert!(
        configured.is_some_and(|m| m.ends_with("references creds/password, me/name")),
        "only the listed key, and the link's name: {configured:?}"
    );
    assert_eq!(
        (
            inst.annotations().get("edge.cattle.io/node-name"),
            inst.annotations().get("edge.cattle.io/adaptor-name")
        ),
        (
            Some(&"edge-1".to_owned()),
            Some(&"adaptors.edge.cattle.io/dummy".to_owned())
        ),
        "Octopus's annotations"
    );
    assert_eq!(
        crds::octopus::check("DummySpecialDevice", &inst.data["status"]),
        Vec::<String>::new()
    );

    // Editing the template changes the device.
    links
        .patch(
            "fan",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"template": {"spec": {"gear": "fast"}}}})),
        )
        .await
        .unwrap();
    wait(
        "the new gear in the instance status",
        Duration::from_secs(30),
        async || {
            let i = instances.get("fan").await.ok()?;
            (i.data["spec"]["gear"] == "fast" && i.data["status"]["gear"] == "fast").then_some(())
        },
    )
    .await;

    // Updating the ConfigMap hot-swaps, without a trap or a restart.
    let before = limb.device().unwrap();
    ship(&client, "dummy", &component("adaptor_dummy_v2")).await;
    let d = wait(
        "the v2 adaptor on the device",
        Duration::from_secs(30),
        async || limb.device().filter(|d| d["adaptorVersion"] == "0.1.0+v2"),
    )
    .await;
    assert_eq!(d["swaps"], 1);
    assert_eq!(d["traps"], 0);
    assert!(
        d["status"]["polls"].as_u64() > before["status"]["polls"].as_u64(),
        "state carried over"
    );

    // A broken update is refused; v2 keeps serving.
    ship(&client, "dummy", b"not a component at all").await;
    wait(
        "the limb refusing the broken update of adaptor-dummy",
        Duration::from_secs(30),
        async || {
            limb.adaptors()?
                .as_array()?
                .iter()
                .find(|a| {
                    a["source"]
                        .as_str()
                        .is_some_and(|s| s.ends_with("/adaptor-dummy"))
                        && a["error"].is_string()
                })
                .cloned()
        },
    )
    .await;
    let polls = limb.device().unwrap()["polls"].as_u64().unwrap();
    let d = wait(
        "polls continuing after a broken update",
        Duration::from_secs(30),
        async || {
            limb.device()
                .filter(|d| d["polls"].as_u64().unwrap_or(0) >= polls + 3)
        },
    )
    .await;
    assert_eq!(d["adaptorVersion"], "0.1.0+v2");

    // A deleted instance comes back.
    let uid = instances.get("fan").await.unwrap().uid();
    instances
        .delete("fan", &DeleteParams::default())
        .await
        .unwrap();
    wait(
        "the instance re-created",
        Duration::from_secs(30),
        async || instances.get("fan").await.ok().filter(|i| i.uid() != uid),
    )
    .await;

    // A restarted limb reconnects, without duplicates.
    drop(limb);
    limb = start_limb(&server, "2");
    let d = wait(
        "reconnected after a limb restart",
        Duration::from_secs(30),
        async || {
            limb.device()
                .filter(|d| d["phase"] == "Healthy" && d["polls"].as_u64().unwrap_or(0) >= 2)
        },
    )
    .await;
    assert_eq!(
        d["adaptorVersion"], "0.1.0+v2",
        "the ConfigMap is broken: the last good version serves, from cache"
    );
    assert_one_instance_and_finalizer(&instances, &links).await;

    // SIGKILL in the middle of a hot swap: the restarted limb serves one version, with
    // one instance and one finalizer.
    ship(&client, "dummy", &component("adaptor_dummy")).await;
    // The kill lands at a moment, not on a state: 30 ms into the swap is the case under
    // test.
    tokio::time::sleep(Duration::from_millis(30)).await;
    drop(limb);
    limb = start_limb(&server, "3");
    let d = wait(
        "one version after a kill during a swap",
        Duration::from_secs(30),
        async || {
            limb.device().filter(|d| {
                d["phase"] == "Healthy"
                    && d["adaptorVersion"] == "0.1.0"
                    && d["polls"].as_u64().unwrap_or(0) >= 2
            })
        },
    )
    .await;
    assert_eq!(d["traps"], 0);
    assert_one_instance_and_finalizer(&instances, &links).await;

    // The API server goes away for a minute: the device keeps polling and stays healthy
    // in the limb's own view the whole time, and its status catches up when the server
    // is back.
    server.stop_api();
    let outage = Instant::now();
    let before = limb.device().unwrap()["polls"].as_u64().unwrap();
    for second in 1..=60 {
        // A look every second of the outage is the test: the device is Healthy at each.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Instant::now();
        let d = limb
            .device()
            .unwrap_or_else(|| panic!("the limb stopped answering {second} s into the outage"));
        assert_eq!(d["phase"], "Healthy", "{second} s into the outage: {d}");
        if second % 10 == 0 {
            eprintln!(
                "outage {second} s: polls {} lastPoll {} (GET took {:.2?})",
                d["polls"],
                d["lastPoll"],
                t.elapsed()
            );
        }
    }
    let during = limb.device().unwrap();
    let polled = during["polls"].as_u64().unwrap() - before;
    assert!(
        polled >= 200,
        "only {polled} polls in 60 s without the API server (200 ms interval)\n{}",
        limb_logs()
    );
    assert!(!limb.exited(), "the limb exited during the outage");
    let guest_polls = during["status"]["polls"].as_u64().unwrap();
    server.restart_api().await;
    eprintln!("API server back after {:.2?}", outage.elapsed());
    let client = server.client().await;
    let instances: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    wait(
        "status caught up after the outage",
        Duration::from_secs(60),
        async || {
            let i = instances.get("fan").await.ok()?;
            (i.data["status"]["polls"].as_u64()? > guest_polls).then_some(())
        },
    )
    .await;
    let l = links.get("fan").await.unwrap();
    assert_eq!(
        cond(&l, ConditionType::DeviceConnected),
        Some((ConditionStatus::True, "Healthy".into())),
        "no condition lied: {:#?}",
        l.status
    );

    // Deleting the link removes the instance and the link (the limb's finalizer goes).
    links.delete("fan", &DeleteParams::default()).await.unwrap();
    wait(
        "link and instance gone",
        Duration::from_secs(30),
        async || {
            let link_gone = links.get_opt("fan").await.ok()?.is_none();
            let inst_gone = instances.get_opt("fan").await.ok()?.is_none();
            (link_gone && inst_gone).then_some(())
        },
    )
    .await;

    // What the limb may not do, with the RBAC it ships.
    let limb_client = {
        let kc = kube::config::Kubeconfig::read_from(server.user_kubeconfig("limb")).unwrap();
        Client::try_from(
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .unwrap(),
        )
        .unwrap()
    };
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::all(limb_client.clone());
    assert!(
        matches!(secrets.list(&Default::default()).await, Err(kube::Error::Api(e)) if e.code == 403)
    );
    let cms: Api<ConfigMap> = Api::namespaced(limb_client.clone(), "kube-system");
    assert!(
        matches!(cms.list(&Default::default()).await, Err(kube::Error::Api(e)) if e.code == 403),
        "configmaps only in its namespace and the granted ones"
    );
    let own: Api<ConfigMap> = Api::namespaced(limb_client, "octopus-system");
    let probe = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("x".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(
        matches!(own.create(&PostParams::default(), &probe).await, Err(kube::Error::Api(e)) if e.code == 403),
        "adaptors are read only"
    );

    // A brain that could not renew its Lease through the outage exits so that a fresh
    // replica leads; the Deployment would restart it, and so does this test.
    if brain.exited() {
        eprintln!("the brain exited after the outage (lease lost); restarting it");
        brain = start_brain(&server, bins::brain(), "info,brain=debug");
    }

    // The owner reference is one the garbage collector honours: with the limb gone and
    // its finalizer removed by hand, deleting a link still removes its instance.
    let link: DeviceLink = serde_json::from_value(fan("slow")).unwrap();
    let link = DeviceLink {
        metadata: kube::api::ObjectMeta {
            name: Some("fan-gc".into()),
            ..link.metadata
        },
        ..link
    };
    links.create(&PostParams::default(), &link).await.unwrap();
    wait("the second instance", Duration::from_secs(30), async || {
        instances.get_opt("fan-gc").await.ok().flatten()
    })
    .await;
    drop(limb);
    links
        .patch(
            "fan-gc",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    links
        .delete("fan-gc", &DeleteParams::default())
        .await
        .unwrap();
    wait(
        "the garbage collector removing the orphaned instance",
        Duration::from_secs(60),
        async || {
            instances
                .get_opt("fan-gc")
                .await
                .ok()
                .filter(Option::is_none)
        },
    )
    .await;
    drop(brain);
}

/// With the grant the chart ships (get, list, watch in the namespace), a Secret that
/// changes reaches the device at once; the limb's resync is ten minutes here, so only
/// the watch can explain it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_secret_reaches_the_device_without_waiting_for_the_resync() {
    let (server, client, _brain) = control_plane().await;
    server
        .apply_rbac(&repo_file("deploy/limb-references.yaml"), "octopus-limb")
        .await;
    ship(&client, "dummy", &component("adaptor_dummy")).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "default");
    let secret = |data: Value| -> k8s_openapi::api::core::v1::Secret {
        serde_json::from_value(json!({"metadata": {"name": "fan-creds"}, "stringData": data}))
            .unwrap()
    };
    secrets
        .create(&PostParams::default(), &secret(json!({"password": "one"})))
        .await
        .unwrap();
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    let link: DeviceLink = serde_json::from_value(fan("slow")).unwrap();
    links.create(&PostParams::default(), &link).await.unwrap();
    let _limb = start_limb_resyncing(&server, "watch", "600s");
    let connected = async |status: ConditionStatus, needle: &str| {
        let l = links.get("fan").await.ok()?;
        let c = l
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::DeviceConnected)?;
        (c.status == status && c.message.contains(needle)).then_some(())
    };
    wait(
        "the device connected",
        Duration::from_secs(60),
        async || connected(ConditionStatus::True, "").await,
    )
    .await;

    // The key the link names goes away, and the condition says so; it comes back, and
    // the device connects again.
    let steps = [
        (
            json!({"other": "x"}),
            ConditionStatus::False,
            "no key \"password\"",
        ),
        (json!({"password": "two"}), ConditionStatus::True, ""),
    ];
    for (data, status, needle) in steps {
        secrets
            .replace("fan-creds", &PostParams::default(), &secret(data))
            .await
            .unwrap();
        wait(
            &format!("DeviceConnected={status:?} {needle}, well before the resync"),
            Duration::from_secs(30),
            async || connected(status, needle).await,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modbus_link_written_for_octopus_reads_registers_into_its_instance() {
    let (server, client, _brain) = control_plane().await;
    let slave = crate::peers::ModbusServer::tcp(server.dir.path());
    ship(&client, "modbus", &component("adaptor_modbus")).await;
    let limb = start_limb(&server, "modbus");

    // The example from examples/modbus, pointed at this test's slave and node.
    let text = std::fs::read_to_string(repo_file("examples/modbus/modbus-tcp.yaml")).unwrap();
    let mut link: DeviceLink = serde_yaml::from_str(&text).unwrap();
    link.spec.adaptor.node = "edge-1".into();
    let spec = &mut link.spec.template.spec;
    spec["protocol"]["tcp"]["endpoint"] = json!(slave.endpoint());
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    links.create(&PostParams::default(), &link).await.unwrap();

    wait_healthy(&links, "modbus-tcp").await;
    let instances = device_instances(&client, "ModbusDevice", "modbusdevices");
    let inst = wait(
        "register values in the instance",
        Duration::from_secs(30),
        async || {
            let i = instances.get("modbus-tcp").await.ok()?;
            let props = i.data["status"]["properties"].as_array()?;
            (props.len() == 6 && props.iter().all(|p| p["value"].is_string())).then_some(i)
        },
    )
    .await;
    // Cross-checked with an independent master reading the same slave.
    let mbpoll = crate::peers::Mbpoll::new(
        crate::peers::Line::Tcp(
            slave
                .endpoint()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap(),
        ),
        1,
    );
    let raw = mbpoll.read("4", 101, 1, true).unwrap()[0].signed();
    let props = inst.data["status"]["properties"].as_array().unwrap();
    let temperature = props.iter().find(|p| p["name"] == "temperature").unwrap();
    assert_eq!(temperature["value"], json!(raw.to_string()), "{props:#?}");
    let operated: f64 = temperature["operatedValue"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((operated - raw as f64 / 10.0).abs() < 1e-9, "{temperature}");
    // Octopus's text: Go's FormatFloat(v, 'f', 6, 64), e.g. "27.100000".
    assert_eq!(
        temperature["operatedValue"],
        json!(format!("{:.6}", raw as f64 / 10.0)),
        "{temperature}"
    );
    assert_eq!(
        crds::octopus::check("ModbusDevice", &inst.data["status"]),
        Vec::<String>::new()
    );
    // The writable property reached the slave.
    let limit = mbpoll.read("4", 200, 1, true).unwrap()[0].signed();
    assert_eq!(limit, 30);
    assert!(props.iter().all(|p| p.get("error").is_none()), "{props:#?}");
    drop(limb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_link_written_for_octopus_gets_pushed_readings_into_its_instance() {
    let (server, client, _brain) = control_plane().await;
    let broker = crate::mosquitto::Broker::start(server.dir.path());
    ship(&client, "mqtt", &component("adaptor_mqtt")).await;
    let limb = start_limb(&server, "mqtt");

    let text = std::fs::read_to_string(repo_file("examples/mqtt/kitchen-light.yaml"))
        .unwrap()
        .replace(
            "tcp://127.0.0.1:1883",
            &format!("tcp://127.0.0.1:{}", broker.anonymous),
        );
    let mut link: DeviceLink = serde_yaml::from_str(&text).unwrap();
    link.spec.adaptor.node = "edge-1".into();
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    links.create(&PostParams::default(), &link).await.unwrap();
    wait_healthy(&links, "kitchen-light").await;

    crate::mosquitto::publish(&broker, "home/status/kitchen/temperature", "23.25", &[]).await;
    let instances = device_instances(&client, "MQTTDevice", "mqttdevices");
    let status = wait(
        "the pushed reading in the instance",
        Duration::from_secs(30),
        async || {
            let i = instances.get("kitchen-light").await.ok()?;
            let props = i.data["status"]["properties"].as_array()?;
            props
                .iter()
                .any(|p| p["name"] == "temperature" && p["value"].as_f64() == Some(23.25))
                .then(|| i.data["status"].clone())
        },
    )
    .await;
    assert_eq!(
        crds::octopus::check("MQTTDevice", &status),
        Vec::<String>::new(),
        "{status}"
    );
    drop(limb);
}

/// The OPC UA example, written for Octopus, against an asyncua server: connected, live
/// values in the instance (a change made on the server arrives), the setpoint written on
/// the server, and the status published by the MQTT extension.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opcua_link_written_for_octopus_gets_live_values_and_publishes_them_over_mqtt() {
    let (server, client, _brain) = control_plane().await;
    let opcua = octopus_tests::opcua::Server::start(server.dir.path());
    let broker = crate::mosquitto::Broker::start(server.dir.path());
    ship(&client, "opcua", &component("adaptor_opcua")).await;
    // The adaptor bounds a poll's network waits at 4 s, under the limb's default call
    // timeout of 5 s (the suite's 1 s would trap a slow first connect).
    let limb = start_limb_timing(&server, "opcua", "2s", "5s");

    let text = std::fs::read_to_string(repo_file("examples/opcua/opcua.yaml"))
        .unwrap()
        .replace("opc.tcp://127.0.0.1:14840/octopus/", &opcua.url());
    let mut link: DeviceLink = serde_yaml::from_str(&text).unwrap();
    link.spec.adaptor.node = "edge-1".into();
    link.spec.template.spec["extension"] = json!({"mqtt": {
        "client": {"server": format!("tcp://127.0.0.1:{}", broker.anonymous)},
        "message": {"topic": "cattle.io/octopus/:namespace/:name"},
    }});
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    links.create(&PostParams::default(), &link).await.unwrap();
    wait_healthy(&links, "opcua").await;

    // A value changed by another client reaches the instance through the subscription.
    opcua.write("ns=2;s=Double", "Double", "77.125");
    let instances = device_instances(&client, "OPCUADevice", "opcuadevices");
    let property = |status: &Value, name: &str| -> Option<Value> {
        status["properties"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
    };
    let status = wait(
        "the server's change in the instance",
        Duration::from_secs(30),
        async || {
            let i = instances.get("opcua").await.ok()?;
            let status = i.data["status"].clone();
            (property(&status, "temperature")?["value"] == "77.125").then_some(status)
        },
    )
    .await;
    assert_eq!(
        crds::octopus::check("OPCUADevice", &status),
        Vec::<String>::new(),
        "{status}"
    );
    let ticker = property(&status, "ticker").unwrap();
    assert!(
        ticker["value"].as_str().unwrap().parse::<i32>().is_ok(),
        "{ticker}"
    );
    // The writable property reached the server (read back by asyncua's client).
    assert_eq!(
        opcua.read(&["ns=2;s=Int32"]),
        vec![("Int32".to_owned(), "42".to_owned())]
    );

    // The extension publishes the same document, retained.
    let topic = "cattle.io/octopus/default/opcua";
    let published = crate::mosquitto::subscribe(&broker, topic, 1, 15, &[]).await;
    let doc: Value = serde_json::from_str(
        &published
            .first()
            .unwrap_or_else(|| panic!("nothing on {topic}; {}", broker.log()))
            .payload,
    )
    .unwrap();
    assert!(
        property(&doc, "temperature").is_some_and(|p| p["value"] == "77.125"),
        "{doc}"
    );
    drop(limb);
}

/// The biggest adaptors (Python's runtime makes ~17 MiB) travel as several ConfigMaps
/// under the API server's 1 MiB object limit and are reassembled, checked and run by the
/// limb like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_adaptor_of_over_15_mib_reaches_the_limb_through_config_maps() {
    let (server, client, _brain) = control_plane().await;
    let slave = crate::peers::ModbusServer::tcp(server.dir.path());
    let bytes = component("adaptor_registers_python");
    assert!(bytes.len() > 15 << 20, "only {} bytes", bytes.len());
    ship(&client, "registers", &bytes).await;
    let parts = Api::<ConfigMap>::namespaced(client.clone(), "octopus-system")
        .list(
            &kube::api::ListParams::default()
                .labels("adaptors.edge.cattle.io/part-of=adaptor-registers"),
        )
        .await
        .unwrap();
    assert!(!parts.items.is_empty(), "the component fit one ConfigMap");
    let limb = start_limb(&server, "python");

    let link: DeviceLink = serde_json::from_value(json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": "meter", "namespace": "default"},
        "spec": {
            "adaptor": {"node": "edge-1", "name": "adaptors.edge.cattle.io/registers"},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "RegisterDevice"},
            "template": {"spec": {"endpoint": slave.endpoint(), "count": 2, "syncIntervalMs": 200}}
        }
    }))
    .unwrap();
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    links.create(&PostParams::default(), &link).await.unwrap();
    let l = wait(
        "DeviceConnected=True/Healthy",
        Duration::from_secs(180),
        async || {
            let l = links.get("meter").await.ok()?;
            (cond(&l, ConditionType::DeviceConnected)
                == Some((ConditionStatus::True, "Healthy".into())))
            .then_some(l)
        },
    )
    .await;
    // The condition names the build that runs: the digest of the reassembled bytes.
    let loaded = l
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == ConditionType::AdaptorExisted)
        })
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let digest = limb::adaptors::digest(&bytes);
    assert_eq!(
        loaded,
        format!(
            "adaptors.edge.cattle.io/registers 0.1.0+python (sha256:{})",
            &digest[..12]
        )
    );
    let instances = device_instances(&client, "RegisterDevice", "registerdevices");
    let status = wait(
        "registers in the instance",
        Duration::from_secs(30),
        async || {
            let i = instances.get("meter").await.ok()?;
            (i.data["status"]["polls"].as_u64()? >= 2).then(|| i.data["status"].clone())
        },
    )
    .await;
    assert_eq!(status["registers"], json!([0xCFC7, 54321]), "{status}");
    assert_eq!(status["language"], "python");
    drop(limb);
}

/// A status the API refuses (it breaks the model's schema) is not retried in a loop and
/// costs nothing else: the instance keeps the last status that passed, the device keeps
/// polling and stays connected, and a Warning event on the link says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_that_breaks_the_model_schema_leaves_the_last_good_one_and_an_event() {
    let (server, client, _brain) = control_plane().await;
    // HostileDevice, whose schema allows at most 5 in `status.polls`: the hostile
    // adaptor's `ok` mode counts its polls there, so its sixth status breaks the schema.
    let crd: CustomResourceDefinition =
        serde_json::from_value(json!({
            "metadata": {"name": "hostiledevices.devices.edge.cattle.io"},
            "spec": {
                "group": "devices.edge.cattle.io",
                "names": {"kind": "HostileDevice", "plural": "hostiledevices", "singular": "hostiledevice", "listKind": "HostileDeviceList"},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1alpha1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "status": {"type": "object", "properties": {"polls": {"type": "integer", "maximum": 5}}}
                    }}}
                }]
            }
        }))
        .unwrap();
    install_crd(&client, &crd).await;
    ship(&client, "hostile", &component("adaptor_hostile")).await;
    let mut limb = start_limb(&server, "schema");
    let link: DeviceLink = serde_json::from_value(json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": "counter", "namespace": "default"},
        "spec": {
            "adaptor": {"node": "edge-1", "name": "adaptors.edge.cattle.io/hostile"},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "HostileDevice"},
            "template": {"spec": {"mode": "ok", "parameters": {"syncIntervalMs": 200}}}
        }
    }))
    .unwrap();
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    links.create(&PostParams::default(), &link).await.unwrap();

    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let note = wait(
        "a StatusRejected event on the link",
        Duration::from_secs(60),
        async || {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("StatusRejected")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("counter")
                })
                .and_then(|e| e.note)
        },
    )
    .await;
    assert!(note.contains("polls"), "{note}");
    // Polling goes on, the link stays connected, the instance keeps the last good status.
    let before = limb.device_named("counter").unwrap()["polls"]
        .as_u64()
        .unwrap();
    wait(
        "5 more polls of counter after its status was rejected",
        Duration::from_secs(30),
        async || {
            limb.device_named("counter")
                .filter(|d| d["polls"].as_u64().unwrap_or(0) >= before + 5)
        },
    )
    .await;
    let l = links.get("counter").await.unwrap();
    assert_eq!(
        cond(&l, ConditionType::DeviceConnected),
        Some((ConditionStatus::True, "Healthy".into()))
    );
    let instance = device_instances(&client, "HostileDevice", "hostiledevices")
        .get("counter")
        .await
        .unwrap();
    assert_eq!(
        instance.data["status"]["polls"],
        json!(5),
        "{:?}",
        instance.data
    );
    // One event, folded into a series as it repeats, not one write per poll.
    let rejected = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("StatusRejected"))
        .count();
    assert!(rejected <= 3, "{rejected} StatusRejected events");
    assert!(!limb.exited());
}
