//! The limb's cluster dashboard in token mode, as a process on a real API server: it
//! asks the API server about every bearer token (TokenReview, then SubjectAccessReview
//! for `list devicelinks`) with the rights `deploy/limb.yaml` gives it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, PostParams};
use serde_json::json;

use octopus_tests::process::{Process, free_port};

/// A GET on loopback `port` with a bearer token if given: the status and the body, or
/// `None` while nothing listens.
fn get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limb_s_dashboard_with_tokens_answers_401_403_and_200() {
    let (server, client, _brain) = crate::cluster::control_plane().await;
    // Two service accounts: one bound to `list devicelinks`, one with no rights.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    for name in ["viewer", "nobody"] {
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        accounts.create(&PostParams::default(), &sa).await.unwrap();
    }
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "devicelink-viewer"},
        "rules": [{"apiGroups": ["edge.cattle.io"], "resources": ["devicelinks"], "verbs": ["list"]}],
    }))
    .unwrap();
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "devicelink-viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "devicelink-viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": "default"}],
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for name in ["viewer", "nobody"] {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let issued = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap();
        tokens.push(issued.status.unwrap().token);
    }
    let (viewer, nobody) = (tokens[0].clone(), tokens[1].clone());

    let port = free_port();
    let cache = server.dir.path().join("limb-cache");
    let _limb = Process::start(
        octopus_tests::bins::limb(),
        &[
            "--cache-dir",
            &cache.display().to_string(),
            "cluster",
            "--node",
            "edge-1",
            "--namespace",
            "octopus-system",
            "--dashboard-listen",
            &format!("127.0.0.1:{port}"),
            "--dashboard-token",
            "true",
        ],
        &server.user_kubeconfig("limb"),
        &[],
        &server.dir.path().join("limb-dashboard-token.log"),
    );
    let path = "/dashboard/api/overview";
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(answer) = get(port, path, None) {
            break answer;
        }
        assert!(Instant::now() < deadline, "no dashboard on {port}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(first.0, 401, "no token: {}", first.1);
    assert_eq!(get(port, "/", None).unwrap().0, 401, "not even the page");
    assert_eq!(
        get(port, path, Some("not-a-token")).unwrap().0,
        401,
        "an unknown token"
    );
    let (code, body) = get(port, path, Some(&nobody)).unwrap();
    assert_eq!(code, 403, "a valid token without the right: {body}");
    let (code, body) = get(port, path, Some(&viewer)).unwrap();
    assert_eq!(code, 200, "a token allowed to list devicelinks: {body}");
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["node"], "edge-1", "{overview}");
}
