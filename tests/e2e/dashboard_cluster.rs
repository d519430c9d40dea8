//! The limb's cluster dashboard in token mode, as a process on a real API server: it
//! asks the API server about every bearer token (TokenReview, then SubjectAccessReview
//! for `list devicelinks`) with the rights `deploy/limb.yaml` gives it.

use std::time::{Duration, Instant};

use octopus_tests::process::{Process, free_port, http_get_as};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limb_s_dashboard_with_tokens_answers_401_403_and_200() {
    let (server, client, _brain) = crate::cluster::control_plane().await;
    let (viewer, nobody) = octopus_tests::apiserver::devicelink_viewer_tokens(&client).await;

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
        if let Some(answer) = http_get_as(port, path, None) {
            break answer;
        }
        assert!(Instant::now() < deadline, "no dashboard on {port}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(first.0, 401, "no token: {}", first.1);
    assert_eq!(
        http_get_as(port, "/", None).unwrap().0,
        401,
        "not even the page"
    );
    assert_eq!(
        http_get_as(port, path, Some("not-a-token")).unwrap().0,
        401,
        "an unknown token"
    );
    let (code, body) = http_get_as(port, path, Some(&nobody)).unwrap();
    assert_eq!(code, 403, "a valid token without the right: {body}");
    let (code, body) = http_get_as(port, path, Some(&viewer)).unwrap();
    assert_eq!(code, 200, "a token allowed to list devicelinks: {body}");
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["node"], "edge-1", "{overview}");
}
