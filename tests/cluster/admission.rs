//! The admission webhook on the real API server, with the brain binary running under
//! exactly the RBAC in deploy/brain.yaml and the webhook configuration shipped there
//! (pointed at the brain by URL, as a test cannot route to a Service).
//!
//! Scenarios: each kind of bad link is refused with the message the user sees; a valid
//! link is admitted unchanged; metadata-only updates pass; node changes are refused; the
//! serving certificate, and then the CA, rotate under a stream of admissions without one
//! being skipped;
//! with the brain stopped, links are admitted unchecked (failure policy Ignore).

use std::time::{Duration, Instant};

use crds::v1alpha1::DeviceLink;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::apiserver::ApiServer;
use octopus_tests::paths::repo_file;
use octopus_tests::process::{Process, free_port};

const WEBHOOK: &str = "octopus-brain";
const NS: &str = "octopus-system";

fn deploy_brain_yaml() -> std::path::PathBuf {
    repo_file("deploy/brain.yaml")
}

/// The shipped RBAC, the shipped webhook configuration with a URL client config, and
/// the adaptor ConfigMap of the dummy adaptor. Returns the webhook port.
pub(crate) async fn install(server: &ApiServer, client: &Client) -> u16 {
    crate::install_all(client).await;
    server
        .apply_rbac(&deploy_brain_yaml(), "octopus-brain")
        .await;
    let port = free_port();
    octopus_tests::apiserver::register_brain_webhook(client, port).await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "adaptor-dummy", "namespace": NS,
            "labels": {"adaptors.edge.cattle.io/component": "true"},
            "annotations": {"adaptors.edge.cattle.io/name": "adaptors.edge.cattle.io/dummy",
                "adaptors.edge.cattle.io/digest": format!("sha256:{}", "0".repeat(64))}},
        "binaryData": {"component": ""}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    // An adaptor packaged by `octopus push`, which says what it serves.
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "adaptor-opcua", "namespace": NS,
            "labels": {"adaptors.edge.cattle.io/component": "true"},
            "annotations": {"adaptors.edge.cattle.io/name": "adaptors.edge.cattle.io/opcua",
                "adaptors.edge.cattle.io/models": "devices.edge.cattle.io/v1alpha1/OPCUADevice",
                "adaptors.edge.cattle.io/digest": format!("sha256:{}", "0".repeat(64))}},
        "binaryData": {"component": ""}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    port
}

pub(crate) fn spawn_brain(
    server: &ApiServer,
    id: &str,
    webhook_port: u16,
    extra: &[&str],
) -> Process {
    let webhook = format!("127.0.0.1:{webhook_port}");
    let mut args = vec!["run", "--identity", id, "--lease-namespace", NS];
    args.extend(["--lease-duration", "3s", "--lease-retry", "500ms"]);
    args.extend([
        "--webhook-listen",
        &webhook,
        "--webhook-extra-sans",
        "127.0.0.1",
    ]);
    args.extend(extra);
    Process::start(
        octopus_tests::bins::brain(),
        &args,
        &server.user_kubeconfig("brain"),
        &[],
        &server.dir.path().join(format!("{id}.log")),
    )
}

pub(crate) fn links(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::erase::<DeviceLink>(&()),
    )
}

fn link(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec
    }))
    .unwrap()
}

/// The shipped Modbus TCP example's spec, on node edge-1 with the dummy adaptor
/// installed (the adaptor is only checked for presence).
fn modbus_spec() -> Value {
    let text = std::fs::read_to_string(repo_file("examples/modbus/modbus-tcp.yaml")).unwrap();
    let mut v: Value = serde_yaml::from_str(&text).unwrap();
    let mut spec = v["spec"].take();
    spec["adaptor"] = json!({"node": "edge-1", "name": "adaptors.edge.cattle.io/dummy"});
    spec
}

fn with(mut v: Value, pointer: &str, x: Value) -> Value {
    *v.pointer_mut(pointer).unwrap() = x;
    v
}

/// A link with Octopus's typo: `readOnlye`.
fn typo_spec() -> Value {
    let mut spec = modbus_spec();
    let p = spec.pointer_mut("/template/spec/properties/0").unwrap();
    let ro = p.as_object_mut().unwrap().remove("readOnly").unwrap();
    p["readOnlye"] = ro;
    spec
}

async fn create(
    api: &Api<DynamicObject>,
    name: &str,
    spec: Value,
    dry_run: bool,
) -> Result<DynamicObject, kube::core::Status> {
    let pp = PostParams {
        dry_run,
        ..Default::default()
    };
    match api.create(&pp, &link(name, spec)).await {
        Ok(o) => Ok(o),
        Err(kube::Error::Api(e)) => Err(*e),
        Err(e) => panic!("{name}: {e}"),
    }
}

/// Waits until the brain answers: a dry-run typo is refused (before that, Ignore lets it
/// through), which also proves the brain set the caBundle.
pub(crate) async fn wait_for_webhook(client: &Client) {
    let api = links(client);
    let start = Instant::now();
    loop {
        if create(&api, "probe", typo_spec(), true).await.is_err() {
            eprintln!("converged: webhook answering after {:.2?}", start.elapsed());
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the webhook never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates through the raw API to read the `Warning` headers the API server relays.
async fn create_with_warnings(client: &Client, name: &str, spec: Value) -> Vec<String> {
    let body = serde_json::to_vec(&link(name, spec)).unwrap();
    let req =
        axum::http::Request::post("/apis/edge.cattle.io/v1alpha1/namespaces/default/devicelinks")
            .header("content-type", "application/json")
            .body(kube::client::Body::from(body))
            .unwrap();
    let resp = client.send(req).await.unwrap();
    assert!(resp.status().is_success(), "{name}: {}", resp.status());
    resp.headers()
        .get_all("warning")
        .iter()
        .map(|h| h.to_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_rejects_links_that_cannot_work_and_says_why() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    let port = install(&server, &client).await;
    let _brain = spawn_brain(&server, "brain-webhook", port, &[]);
    wait_for_webhook(&client).await;
    let api = links(&client);

    let mut grant = modbus_spec();
    grant["grants"] = json!([{"name": "plc", "kind": "tcp", "target": "plc"}]);
    let cases = [
        (
            "typo",
            typo_spec(),
            "spec.template.spec.properties[0].readOnlye: unknown field (Kubernetes would silently drop it)",
        ),
        (
            "wrong-type",
            with(
                modbus_spec(),
                "/template/spec/protocol/tcp/workerID",
                json!("one"),
            ),
            "spec.template.spec.protocol.tcp.workerID: expected integer, got string \"one\"",
        ),
        (
            "bad-enum",
            with(
                modbus_spec(),
                "/template/spec/properties/0/type",
                json!("int12"),
            ),
            "spec.template.spec.properties[0].type: unsupported value \"int12\"",
        ),
        (
            "bad-grant",
            grant,
            "spec.grants[0].target: \"plc\" is not `host:port` (grant \"plc\", kind tcp)",
        ),
        (
            "wrong-adaptor",
            with(
                modbus_spec(),
                "/adaptor/name",
                json!("adaptors.edge.cattle.io/opcua"),
            ),
            "spec.adaptor.name: adaptor \"adaptors.edge.cattle.io/opcua\" serves devices.edge.cattle.io/v1alpha1/OPCUADevice, not devices.edge.cattle.io/v1alpha1/ModbusDevice",
        ),
        (
            "unserved-version",
            with(
                modbus_spec(),
                "/model/apiVersion",
                json!("devices.edge.cattle.io/v1"),
            ),
            "spec.model.apiVersion: CRD modbusdevices.devices.edge.cattle.io does not serve \"v1\" (served: v1alpha1)",
        ),
    ];
    for (name, spec, want) in cases {
        let e = create(&api, name, spec, false).await.unwrap_err();
        eprintln!("{name} rejected ({}): {}", e.code, e.message);
        assert_eq!(e.code, 422, "{name}: {}", e.message);
        assert!(
            e.message.starts_with(
                "admission webhook \"devicelinks.edge.cattle.io\" denied the request: "
            ),
            "{name}: {}",
            e.message
        );
        assert!(e.message.contains(want), "{name}: {}", e.message);
        assert!(api.get_opt(name).await.unwrap().is_none());
    }

    // A valid link is admitted and stored exactly as sent.
    let valid = modbus_spec();
    let created = create(&api, "valid", valid.clone(), false).await.unwrap();
    assert_eq!(created.data["spec"], valid);

    // A missing adaptor is a warning, not a refusal: it may be installed later.
    let warnings = create_with_warnings(
        &client,
        "later-adaptor",
        with(
            modbus_spec(),
            "/adaptor/name",
            json!("adaptors.edge.cattle.io/modbus"),
        ),
    )
    .await;
    eprintln!("later-adaptor warnings: {warnings:?}");
    assert!(
        warnings.iter().any(|w| w
            .contains("adaptor \\\"adaptors.edge.cattle.io/modbus\\\" is not installed")
            || w.contains("adaptor \"adaptors.edge.cattle.io/modbus\" is not installed")),
        "{warnings:?}"
    );

    // Metadata-only updates (what the limb and the brain write) pass.
    let pp = PatchParams::default();
    api.patch(
        "valid",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}, "finalizers": ["edge.cattle.io/octopus-limb"]}})),
    )
    .await
    .unwrap();
    // A template change passes; a node change is refused.
    api.patch(
        "valid",
        &pp,
        &Patch::Merge(json!({"spec": {"template": {"spec": {"parameters": {"timeout": "1s"}}}}})),
    )
    .await
    .unwrap();
    let err = api
        .patch(
            "valid",
            &pp,
            &Patch::Merge(json!({"spec": {"adaptor": {"node": "edge-2"}}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(e) = err else {
        panic!("{err}")
    };
    eprintln!("node change rejected ({}): {}", e.code, e.message);
    assert!(
        e.message
            .contains("spec.adaptor.node: is immutable (was \"edge-1\", now \"edge-2\")"),
        "{}",
        e.message
    );
    let err = api
        .patch(
            "valid",
            &pp,
            &Patch::Merge(json!({"spec": {"model": {"kind": "MQTTDevice"}}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(e) = err else {
        panic!("{err}")
    };
    assert!(
        e.message.contains("spec.model: is immutable"),
        "{}",
        e.message
    );
    // Finalizer removal and deletion pass.
    api.patch(
        "valid",
        &pp,
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    api.delete("valid", &DeleteParams::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_rotates_without_a_skipped_admission_and_a_stopped_brain_admits_unchecked()
{
    let server = ApiServer::start().await;
    let client = server.client().await;
    let port = install(&server, &client).await;
    // Renewed with a third (5 s) left, so about every 10 s.
    let brain = spawn_brain(
        &server,
        "brain-rotate",
        port,
        &["--webhook-cert-validity", "15s"],
    );
    wait_for_webhook(&client).await;
    let api = links(&client);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let webhooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let ca_bundle = |c: ValidatingWebhookConfiguration| {
        c.webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .clone()
            .unwrap()
            .0
    };
    let bundle_before = ca_bundle(webhooks.get(WEBHOOK).await.unwrap());
    let serving = |s: Secret| s.data.unwrap()["tls.crt"].0.clone();

    let mut certs = vec![serving(secrets.get("octopus-brain-webhook").await.unwrap())];
    let start = Instant::now();
    let mut i = 0;
    // Bounded in count and time: at most 300 rounds, stop after two rotations or 40 s.
    while certs.len() < 3 && i < 300 && start.elapsed() < Duration::from_secs(40) {
        // Each round: a valid link is admitted, and a typo is refused. Under Ignore a
        // failed call would admit the typo, so every refusal proves the call succeeded.
        create(&api, &format!("rot-{i}"), modbus_spec(), false)
            .await
            .unwrap_or_else(|e| panic!("rot-{i}: {}", e.message));
        let e = create(&api, &format!("rot-typo-{i}"), typo_spec(), false)
            .await
            .expect_err("a typo was admitted: the webhook call failed during rotation");
        assert!(e.message.contains("readOnlye"), "{}", e.message);
        let now = serving(secrets.get("octopus-brain-webhook").await.unwrap());
        if certs.last() != Some(&now) {
            eprintln!("rotated after {:.2?} (round {i})", start.elapsed());
            certs.push(now);
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        certs.len() >= 3,
        "expected two rotations in 40 s, saw {}",
        certs.len() - 1
    );
    eprintln!(
        "converged: {} rotations over {i} rounds, no admission skipped",
        certs.len() - 1
    );
    assert_eq!(
        ca_bundle(webhooks.get(WEBHOOK).await.unwrap()),
        bundle_before,
        "the CA (caBundle) must survive serving-certificate rotation"
    );

    // Brain stopped: failure policy Ignore admits links unchecked (the limb still checks
    // them), and metadata updates such as finalizer removal are never blocked.
    drop(brain);
    let admitted = create(&api, "unchecked", typo_spec(), false)
        .await
        .unwrap_or_else(|e| panic!("Ignore should admit: {}", e.message));
    assert_eq!(
        admitted.data["spec"]["template"]["spec"]["properties"][0]["readOnlye"],
        true
    );
    let pp = PatchParams::default();
    api.patch(
        "rot-0",
        &pp,
        &Patch::Merge(json!({"metadata": {"finalizers": ["edge.cattle.io/octopus-limb"]}})),
    )
    .await
    .unwrap();
    api.patch(
        "rot-0",
        &pp,
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    api.delete("rot-0", &DeleteParams::default()).await.unwrap();
}

/// The CAs in a webhook configuration's `caBundle`.
fn cas_in(c: &ValidatingWebhookConfiguration) -> Vec<String> {
    let pem = c
        .webhooks
        .as_ref()
        .and_then(|w| w.first())
        .and_then(|w| w.client_config.ca_bundle.as_ref())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default();
    pem.split_inclusive("-----END CERTIFICATE-----")
        .map(|c| c.trim().to_owned())
        .filter(|c| c.contains("BEGIN CERTIFICATE"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_rotates_under_a_stream_of_applies_without_one_failed_admission() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    let port = install(&server, &client).await;
    // A CA of 40 s with certificates of 15 s: the next CA is staged when less than a
    // certificate's lifetime and an overlap (4 s) is left, after about 21 s, and signs
    // an overlap later.
    let _brain = spawn_brain(
        &server,
        "brain-ca",
        port,
        &[
            "--webhook-cert-validity",
            "15s",
            "--webhook-ca-validity",
            "40s",
        ],
    );
    wait_for_webhook(&client).await;
    let api = links(&client);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let webhooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let signing_ca = |s: Secret| {
        String::from_utf8_lossy(&s.data.unwrap()["ca.crt"].0)
            .trim()
            .to_owned()
    };
    let first_ca = signing_ca(secrets.get("octopus-brain-webhook").await.unwrap());
    assert_eq!(
        cas_in(&webhooks.get(WEBHOOK).await.unwrap()),
        std::slice::from_ref(&first_ca)
    );

    let (mut saw_both, mut promoted, mut retired) = (false, false, false);
    let start = Instant::now();
    let mut i = 0;
    // Bounded in count and time: at most 400 rounds, or 60 s; it stops once the old CA
    // has left the bundle.
    while !retired && i < 400 && start.elapsed() < Duration::from_secs(60) {
        // Each round applies a valid link, which is admitted, and a typo, which is
        // refused: under Ignore a failed webhook call would admit the typo.
        let valid = link(&format!("ca-{i}"), modbus_spec());
        api.patch(
            &format!("ca-{i}"),
            &PatchParams::apply("test"),
            &Patch::Apply(&valid),
        )
        .await
        .unwrap_or_else(|e| panic!("ca-{i} after {:.2?}: {e}", start.elapsed()));
        let typo = link(&format!("ca-typo-{i}"), typo_spec());
        let refused = api
            .patch(
                &format!("ca-typo-{i}"),
                &PatchParams::apply("test"),
                &Patch::Apply(&typo),
            )
            .await;
        match refused {
            Err(kube::Error::Api(e)) => assert!(e.message.contains("readOnlye"), "{}", e.message),
            other => panic!(
                "ca-typo-{i} after {:.2?}: a typo was admitted or the call failed, so a webhook call failed during the CA rotation: {other:?}",
                start.elapsed()
            ),
        }
        let cas = cas_in(&webhooks.get(WEBHOOK).await.unwrap());
        let signing = signing_ca(secrets.get("octopus-brain-webhook").await.unwrap());
        if cas.len() == 2 && !saw_both {
            eprintln!(
                "both CAs published after {:.2?} (round {i})",
                start.elapsed()
            );
            saw_both = true;
        }
        if signing != first_ca && !promoted {
            eprintln!("the new CA signs after {:.2?} (round {i})", start.elapsed());
            assert!(
                saw_both,
                "the new CA signed before it was published beside the old one"
            );
            promoted = true;
        }
        if promoted && cas.len() == 1 {
            assert_eq!(cas, [signing], "only the new CA is left");
            eprintln!(
                "the old CA left the bundle after {:.2?} (round {i})",
                start.elapsed()
            );
            retired = true;
        }
        i += 1;
        // Pacing of the load, not a wait for state: about six applies a second.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        retired,
        "the CA rotation did not complete in {:.2?} ({i} rounds): both published {saw_both}, new CA signing {promoted}",
        start.elapsed()
    );
    eprintln!(
        "converged: the CA rotated over {i} rounds of applies in {:.2?}, none failed",
        start.elapsed()
    );
}
