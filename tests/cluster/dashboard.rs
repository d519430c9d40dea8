//! The brain's cluster-wide dashboard against a real API server: links of two nodes, the
//! instances' status and the events about them, watched with the brain's own RBAC and
//! shown live in headless Chromium; and the bearer-token mode (TokenReview and
//! SubjectAccessReview, answered by the real API server) that the limb shares.
//!
//! The links' conditions and the instances' status are written here as the limbs of
//! two nodes would write them, so the pages can be checked against known phases.
//! Screenshots go to `$OCTOPUS_DASHBOARD_SCREENSHOTS` when set (`docs/`), else to the
//! test's temporary folder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crds::v1alpha1::DeviceLink;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Event;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, Config};
use serde_json::{Value, json};

use crate::apiserver::ApiServer;
use octopus_tests::browser::Browser;
use octopus_tests::paths::repo_file;
use octopus_tests::process::free_port;

/// A status value that would run if a page parsed it as HTML.
const XSS: &str = "<script>window.pwned=1;</script>";

/// A client as the token user `octopus-<component>`, bound by `deploy/<component>.yaml`.
async fn component_client(server: &ApiServer, component: &str) -> Client {
    server
        .apply_rbac(
            &repo_file(&format!("deploy/{component}.yaml")),
            &format!("octopus-{component}"),
        )
        .await;
    let kc = kube::config::Kubeconfig::read_from(server.user_kubeconfig(component)).unwrap();
    let cfg = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

/// Starts the brain's dashboard in this process on a free loopback port.
async fn start_dashboard(client: Client, token: bool) -> (u16, tokio::sync::watch::Sender<bool>) {
    let port = free_port();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let settings = brain::dashboard::Settings {
        listen: ([127, 0, 0, 1], port).into(),
        token,
        max_series: 64,
    };
    brain::dashboard::start(client, settings, stopped)
        .await
        .unwrap();
    (port, stop)
}

/// A GET on loopback `port`, with a bearer token if given: the status and the body.
fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    octopus_tests::process::http_get_as(port, path, token)
        .unwrap_or_else(|| panic!("no answer on {port} for {path}"))
}

async fn get_async(port: u16, path: &str, token: Option<String>) -> (u16, String) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || get(port, &path, token.as_deref()))
        .await
        .unwrap()
}

fn link(name: &str, node: &str, kind: &str) -> DeviceLink {
    serde_json::from_value(json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "adaptor": {"node": node, "name": "adaptors.edge.cattle.io/dummy"},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": kind},
            "template": {"spec": {}}
        }
    }))
    .unwrap()
}

/// The pipeline as a limb leaves it: every stage passed, the last as `connected` says.
fn conditions(connected: &str, message: &str) -> Value {
    let now = k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap()
        .to_string();
    let stage = |t: &str, s: &str, m: &str| {
        json!({"type": t, "status": s, "reason": if s == "True" { "Found" } else { "Unhealthy" },
               "message": m, "lastTransitionTime": now, "lastUpdateTime": now})
    };
    json!({"status": {"nodeName": Value::Null, "conditions": [
        stage("NodeExisted", "True", "found"),
        stage("ModelExisted", "True", "found"),
        stage("AdaptorExisted", "True", "found"),
        stage("DeviceCreated", "True", "created"),
        stage("DeviceConnected", connected, message),
    ]}})
}

async fn set_conditions(links: &Api<DeviceLink>, name: &str, connected: &str, message: &str) {
    links
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(conditions(connected, message)),
        )
        .await
        .unwrap();
}

fn instances(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
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

/// Creates the instance `name` with `spec`, then writes its `status`, as the limb does.
async fn instance(api: &Api<DynamicObject>, kind: &str, name: &str, spec: Value, status: Value) {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
}

/// Reads the overview until `ok` holds of it, for up to 30 s.
async fn wait_overview(port: u16, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = get_async(port, "/dashboard/api/overview", None).await;
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        if code == 200 && ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: last overview {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn phase_of(overview: &Value, key: &str) -> Option<String> {
    overview["devices"]
        .as_array()?
        .iter()
        .find(|d| d["key"] == key)
        .and_then(|d| d["phase"].as_str())
        .map(str::to_owned)
}

fn screenshots_dir(fallback: &std::path::Path) -> PathBuf {
    std::env::var_os("OCTOPUS_DASHBOARD_SCREENSHOTS")
        .map_or_else(|| fallback.to_owned(), PathBuf::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brain_s_dashboard_shows_the_links_of_two_nodes_live_in_a_browser() {
    let server = ApiServer::start().await;
    let admin = server.client().await;
    crate::install_all(&admin).await;
    // The dashboard reads with the brain's own rights, as deployed.
    let brain = component_client(&server, "brain").await;
    let (port, _stop) = start_dashboard(brain, false).await;

    let links: Api<DeviceLink> = Api::namespaced(admin.clone(), "default");
    for (name, node, kind) in [
        ("thermometer", "edge-1", "DummyProtocolDevice"),
        ("fan", "edge-2", "DummySpecialDevice"),
    ] {
        links
            .create(&PostParams::default(), &link(name, node, kind))
            .await
            .unwrap();
    }
    set_conditions(&links, "thermometer", "True", "connected").await;
    set_conditions(
        &links,
        "fan",
        "False",
        "received error from adaptor: stalled",
    )
    .await;
    let protocol = instances(&admin, "DummyProtocolDevice", "dummyprotocoldevices");
    instance(
        &protocol,
        "DummyProtocolDevice",
        "thermometer",
        json!({"protocol": {"ip": "127.0.0.1"}}),
        json!({"properties": {
            "label": {"type": "string", "stringValue": XSS},
            "temperature": {"type": "int", "intValue": 21},
        }}),
    )
    .await;
    let special = instances(&admin, "DummySpecialDevice", "dummyspecialdevices");
    instance(
        &special,
        "DummySpecialDevice",
        "fan",
        json!({"protocol": {"location": "hall"}, "on": true}),
        json!({"rotatingSpeed": 300}),
    )
    .await;
    // An event about the failing link, as the limb records it.
    let now = k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap()
        .to_string();
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "fan.stalled", "namespace": "default"},
        "involvedObject": {"apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
                           "name": "fan", "namespace": "default"},
        "type": "Warning", "reason": "FailedConnected", "message": "stalled; retrying",
        "firstTimestamp": now, "lastTimestamp": now,
        "source": {"component": "octopus-limb"},
    }))
    .unwrap();
    Api::<Event>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &event)
        .await
        .unwrap();

    let overview = wait_overview(port, "both links with their phases", |o| {
        phase_of(o, "default/thermometer").as_deref() == Some("Healthy")
            && phase_of(o, "default/fan").as_deref() == Some("Unhealthy")
    })
    .await;
    let nodes: Vec<&str> = overview["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["node"].as_str())
        .collect();
    assert_eq!(nodes, ["edge-2", "edge-1"], "keyed fan, thermometer");
    // The instance's status and the event reach the device's JSON.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = get_async(port, "/dashboard/api/devices/default/fan", None).await;
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        if v["report"]["status"]["rotatingSpeed"] == 300
            && v["report"]["events"][0]["reason"] == "FailedConnected"
            && v["history"]["series"]["rotatingSpeed"].as_array().is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "fan's status and event: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let shots = tempfile::tempdir().unwrap();
    let dir = screenshots_dir(shots.path());
    let log = server.dir.path().join("chromium.log");
    let url = format!("http://127.0.0.1:{port}/");
    let browse = {
        let links = links.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let browser = Browser::start(&log);
            let mut page = browser.open(&url);
            page.wait_for(
                "both devices listed with their phases",
                r#"document.querySelector('#devices tr[data-key="default/thermometer"][data-phase="Healthy"]')
                   && document.querySelector('#devices tr[data-key="default/fan"][data-phase="Unhealthy"]')"#,
            );
            let where_ = page.eval("document.getElementById('where').textContent");
            assert_eq!(where_, "cluster-wide");
            // Filters by node.
            page.eval(
                "(() => { const s = document.getElementById('filter-node'); s.value = 'edge-2'; s.dispatchEvent(new Event('change')); })()",
            );
            let shown = page.eval("[...document.querySelectorAll('#devices tbody tr')].map(r => r.dataset.key).join(',')");
            assert_eq!(shown, "default/fan", "the node filter");
            page.eval(
                "(() => { const s = document.getElementById('filter-node'); s.value = ''; s.dispatchEvent(new Event('change')); window.loadedOnce = true; })()",
            );
            page.wait_for(
                "the live stream",
                "document.getElementById('live').dataset.state === 'live'",
            );
            page.screenshot(&dir.join("dashboard-brain.png"));

            // Live: the fan recovers, and the page shows it without a reload.
            handle.block_on(set_conditions(&links, "fan", "True", "connected"));
            page.wait_for(
                "the fan healthy, live",
                r#"document.querySelector('#devices tr[data-key="default/fan"][data-phase="Healthy"]')"#,
            );
            assert_eq!(
                page.eval("window.loadedOnce === true"),
                json!(true),
                "no reload"
            );

            // One device: its status as text, its plot, its conditions.
            page.eval("location.hash = '#/device/default/thermometer'");
            page.wait_for(
                "the label as text",
                "document.querySelector('#status tr[data-path=\"properties.label.stringValue\"] td.value')",
            );
            let label = page.eval(
                "document.querySelector('#status tr[data-path=\"properties.label.stringValue\"] td.value').textContent",
            );
            assert_eq!(label, XSS, "the markup shows as text");
            assert_eq!(
                page.eval("typeof window.pwned"),
                "undefined",
                "and never ran"
            );
            assert_eq!(
                page.eval("document.querySelectorAll('#status script').length"),
                0
            );
            page.wait_for(
                "the temperature's plot",
                "document.querySelector('.plot[data-property=\"properties.temperature\"]')",
            );
            let conditions = page.eval("document.querySelectorAll('#conditions li').length");
            assert_eq!(conditions, 5);
            page.screenshot(&dir.join("dashboard-brain-device.png"));
        })
    };
    browse.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_with_tokens_wants_a_valid_token_allowed_to_list_devicelinks() {
    let server = ApiServer::start().await;
    let admin = server.client().await;
    crate::install_all(&admin).await;
    let brain = component_client(&server, "brain").await;
    let (port, _stop) = start_dashboard(brain, true).await;

    let (viewer, nobody) = octopus_tests::apiserver::devicelink_viewer_tokens(&admin).await;

    let path = "/dashboard/api/overview";
    let (code, _) = get_async(port, path, None).await;
    assert_eq!(code, 401, "no token");
    let (code, _) = get_async(port, "/", None).await;
    assert_eq!(code, 401, "not even the page");
    let (code, _) = get_async(port, path, Some("not-a-token".into())).await;
    assert_eq!(code, 401, "an unknown token");
    let (code, body) = get_async(port, path, Some(nobody)).await;
    assert_eq!(code, 403, "a valid token without the right: {body}");
    let (code, body) = get_async(port, path, Some(viewer.clone())).await;
    assert_eq!(code, 200, "a token allowed to list devicelinks: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["mode"], "cluster-wide");
    // Again, from the cache.
    let (code, _) = get_async(port, "/dashboard/app.js", Some(viewer.clone())).await;
    assert_eq!(code, 200);

    // The limb checks tokens the same way, with the rights its manifest grants.
    let limb = component_client(&server, "limb").await;
    let check = Arc::new(limb::dashboard::auth::TokenCheck::new(limb));
    use limb::dashboard::auth::Verdict;
    assert_eq!(check.check(&viewer).await.unwrap(), Verdict::Allowed);
    assert_eq!(
        check.check("not-a-token").await.unwrap(),
        Verdict::Unauthenticated
    );
    assert_eq!(
        check.remembered(),
        1,
        "only the allowed token is remembered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_may_review_tokens_and_the_brain_read_instances_and_events_but_change_nothing()
 {
    let server = ApiServer::start().await;
    let admin = server.client().await;
    let deploy = repo_file("deploy");
    server
        .apply_rbac(&deploy.join("brain.yaml"), "octopus-brain")
        .await;
    server
        .apply_rbac(&deploy.join("limb.yaml"), "octopus-limb")
        .await;
    let api: Api<SubjectAccessReview> = Api::all(admin);
    // (user, verb, group, resource, allowed)
    let rows = [
        (
            "octopus-brain",
            "create",
            "authentication.k8s.io",
            "tokenreviews",
            true,
        ),
        (
            "octopus-brain",
            "create",
            "authorization.k8s.io",
            "subjectaccessreviews",
            true,
        ),
        (
            "octopus-limb",
            "create",
            "authentication.k8s.io",
            "tokenreviews",
            true,
        ),
        (
            "octopus-limb",
            "create",
            "authorization.k8s.io",
            "subjectaccessreviews",
            true,
        ),
        (
            "octopus-brain",
            "watch",
            "devices.edge.cattle.io",
            "dummyspecialdevices",
            true,
        ),
        ("octopus-brain", "watch", "", "events", true),
        (
            "octopus-brain",
            "patch",
            "devices.edge.cattle.io",
            "dummyspecialdevices",
            false,
        ),
        (
            "octopus-brain",
            "delete",
            "devices.edge.cattle.io",
            "dummyspecialdevices",
            false,
        ),
        ("octopus-brain", "create", "", "events", false),
        ("octopus-limb", "list", "", "events", false),
        (
            "octopus-limb",
            "create",
            "authorization.k8s.io",
            "localsubjectaccessreviews",
            false,
        ),
    ];
    let mut wrong = Vec::new();
    for (user, verb, group, resource, want) in rows {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.into()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    namespace: Some("default".into()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let allowed = api
            .create(&PostParams::default(), &review)
            .await
            .unwrap()
            .status
            .unwrap()
            .allowed;
        if allowed != want {
            wrong.push(format!(
                "{user} {verb} {group}/{resource}: allowed={allowed}, want {want}"
            ));
        }
    }
    assert!(wrong.is_empty(), "RBAC differs:\n{}", wrong.join("\n"));
}
