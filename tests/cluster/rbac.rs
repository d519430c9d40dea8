//! What each component may and may not do with the RBAC in `deploy/`, asked the way
//! `kubectl auth can-i --as` asks: a SubjectAccessReview per row, answered by the real
//! API server's RBAC authorizer.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use crate::apiserver::ApiServer;
use octopus_tests::paths::repo_file;

/// (verb, group, resource, subresource, namespace, name, allowed)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
);

const LIMB: &[Row] = &[
    // Its links and their status; never creating or deleting them.
    ("watch", "edge.cattle.io", "devicelinks", "", "", "", true),
    (
        "patch",
        "edge.cattle.io",
        "devicelinks",
        "status",
        "default",
        "fan",
        true,
    ),
    (
        "create",
        "edge.cattle.io",
        "devicelinks",
        "",
        "default",
        "",
        false,
    ),
    (
        "delete",
        "edge.cattle.io",
        "devicelinks",
        "",
        "default",
        "fan",
        false,
    ),
    // Device instances of any model, and their status.
    (
        "create",
        "devices.edge.cattle.io",
        "modbusdevices",
        "",
        "default",
        "",
        true,
    ),
    (
        "patch",
        "devices.edge.cattle.io",
        "mqttdevices",
        "status",
        "default",
        "x",
        true,
    ),
    // Adaptor ConfigMaps: read, in its own namespace only.
    ("watch", "", "configmaps", "", "octopus-system", "", true),
    (
        "update",
        "",
        "configmaps",
        "",
        "octopus-system",
        "adaptor-dummy",
        false,
    ),
    ("list", "", "configmaps", "", "kube-system", "", false),
    // References: read and watched where a namespace grants it, nothing else.
    ("get", "", "secrets", "", "default", "fan-creds", true),
    ("list", "", "secrets", "", "default", "", true),
    ("watch", "", "secrets", "", "default", "", true),
    ("watch", "", "configmaps", "", "default", "", true),
    ("watch", "", "secrets", "", "kube-system", "", false),
    ("get", "", "secrets", "", "kube-system", "anything", false),
    ("list", "", "secrets", "", "", "", false),
    // Nothing of the cluster beyond that.
    ("create", "", "pods", "", "default", "", false),
    ("get", "", "nodes", "", "", "edge-1", false),
    ("create", "events.k8s.io", "events", "", "default", "", true),
];

const BRAIN: &[Row] = &[
    ("list", "edge.cattle.io", "devicelinks", "", "", "", true),
    (
        "patch",
        "edge.cattle.io",
        "devicelinks",
        "status",
        "default",
        "fan",
        true,
    ),
    (
        "delete",
        "edge.cattle.io",
        "devicelinks",
        "",
        "default",
        "fan",
        false,
    ),
    ("watch", "", "nodes", "", "", "", true),
    ("patch", "", "nodes", "", "", "edge-1", false),
    (
        "list",
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "",
        "",
        "",
        true,
    ),
    (
        "create",
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "",
        "",
        "",
        false,
    ),
    // Device instances are the limb's business.
    (
        "create",
        "devices.edge.cattle.io",
        "modbusdevices",
        "",
        "default",
        "",
        false,
    ),
    // Its own Lease, its own webhook configuration, its own Secret; no other.
    (
        "update",
        "coordination.k8s.io",
        "leases",
        "",
        "octopus-system",
        "octopus-brain",
        true,
    ),
    (
        "update",
        "coordination.k8s.io",
        "leases",
        "",
        "octopus-system",
        "someone-else",
        false,
    ),
    (
        "patch",
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "",
        "",
        "octopus-brain",
        true,
    ),
    (
        "patch",
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "",
        "",
        "other",
        false,
    ),
    (
        "get",
        "",
        "secrets",
        "",
        "octopus-system",
        "octopus-brain-webhook",
        true,
    ),
    (
        "get",
        "",
        "secrets",
        "",
        "octopus-system",
        "other-secret",
        false,
    ),
    ("list", "", "secrets", "", "octopus-system", "", false),
    ("get", "", "secrets", "", "default", "fan-creds", false),
    ("list", "", "secrets", "", "", "", false),
    ("list", "", "configmaps", "", "octopus-system", "", true),
    ("list", "", "configmaps", "", "default", "", false),
];

async fn can_i(api: &Api<SubjectAccessReview>, user: &str, row: &Row) -> bool {
    let (verb, group, resource, subresource, namespace, name, _) = *row;
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            resource_attributes: Some(ResourceAttributes {
                verb: opt(verb),
                group: Some(group.to_owned()),
                resource: opt(resource),
                subresource: opt(subresource),
                namespace: opt(namespace),
                name: opt(name),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = api.create(&PostParams::default(), &review).await.unwrap();
    answer.status.is_some_and(|s| s.allowed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_component_may_do_exactly_what_its_manifest_says() {
    let server = ApiServer::start().await;
    let client = server.client().await;
    let deploy = &repo_file("deploy");
    server
        .apply_rbac(&deploy.join("limb.yaml"), "octopus-limb")
        .await;
    server
        .apply_rbac(&deploy.join("limb-references.yaml"), "octopus-limb")
        .await;
    server
        .apply_rbac(&deploy.join("brain.yaml"), "octopus-brain")
        .await;
    let api: Api<SubjectAccessReview> = Api::all(client);
    let mut wrong = Vec::new();
    for (user, rows) in [("octopus-limb", LIMB), ("octopus-brain", BRAIN)] {
        for row in rows {
            let allowed = can_i(&api, user, row).await;
            if allowed != row.6 {
                wrong.push(format!(
                    "{user} {} {}{}{} in {:?} named {:?}: allowed={allowed}, want {}",
                    row.0,
                    row.2,
                    if row.3.is_empty() { "" } else { "/" },
                    row.3,
                    row.4,
                    row.5,
                    row.6
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "RBAC differs:\n{}", wrong.join("\n"));
}
