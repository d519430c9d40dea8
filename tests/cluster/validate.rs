//! `brain validate` is the admission webhook, offline: one corpus of good and broken
//! DeviceLinks (tests/corpus, plus the shipped examples) goes to the webhook on the real
//! API server (dry-run creates) and to the `brain validate` binary, and every link gets
//! the same verdict and the same denials, word for word.

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject, PostParams};

use crate::admission::{install, links, spawn_brain, wait_for_webhook};
use crate::apiserver::ApiServer;
use octopus_tests::paths::repo_file;

const DENIED: &str = "admission webhook \"devicelinks.edge.cattle.io\" denied the request: ";

fn corpus() -> Vec<std::path::PathBuf> {
    vec![
        repo_file("tests/corpus/good.yaml"),
        repo_file("tests/corpus/broken.yaml"),
        repo_file("examples/modbus/modbus-tcp.yaml"),
        repo_file("examples/mqtt/kitchen-light.yaml"),
        repo_file("examples/mqtt/fan-with-extension.yaml"),
    ]
}

/// `namespace/name` to the denials (empty: admitted), from `brain validate`'s output.
fn offline(files: &[std::path::PathBuf]) -> BTreeMap<String, Vec<String>> {
    let out = std::process::Command::new(octopus_tests::bins::brain())
        .arg("validate")
        .args(files)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut verdicts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        // `FILE: KEY ok`, `FILE: KEY denied`, `FILE: KEY: DENIAL`, `FILE: KEY: warning: ..`
        let (_, rest) = line.split_once(": ").unwrap_or_else(|| panic!("{line}"));
        if let Some(key) = rest
            .strip_suffix(" ok")
            .or_else(|| rest.strip_suffix(" denied"))
            .filter(|k| !k.contains(": "))
        {
            verdicts.entry(key.to_owned()).or_default();
        } else if let Some((key, what)) = rest.split_once(": ")
            && !what.starts_with("warning: ")
        {
            verdicts
                .entry(key.to_owned())
                .or_default()
                .push(what.to_owned());
        }
    }
    let denied = verdicts.values().filter(|d| !d.is_empty()).count();
    assert_eq!(
        out.status.success(),
        denied == 0,
        "exit status and verdicts agree: {text}"
    );
    verdicts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brain_validate_and_the_webhook_agree_on_a_corpus() {
    let files = corpus();
    let offline = offline(&files);

    let server = ApiServer::start().await;
    let client = server.client().await;
    let port = install(&server, &client).await;
    let _brain = spawn_brain(&server, "brain-validate", port, &[]);
    wait_for_webhook(&client).await;
    let api: Api<DynamicObject> = links(&client);

    let mut online: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for link in crds::parse::device_links(&text).unwrap() {
            let key = link.key();
            let object: DynamicObject =
                serde_json::from_value(serde_json::to_value(&link).unwrap()).unwrap();
            let pp = PostParams {
                dry_run: true,
                ..Default::default()
            };
            let denials = match api.create(&pp, &object).await {
                Ok(_) => Vec::new(),
                Err(kube::Error::Api(e)) => {
                    let message = e.message.strip_prefix(DENIED).unwrap_or_else(|| {
                        panic!("{key}: refused by the API server, not the webhook: {e:?}")
                    });
                    vec![message.to_owned()]
                }
                Err(e) => panic!("{key}: {e}"),
            };
            online.insert(key, denials);
        }
    }

    // The webhook joins its denials with "; ": compare in that form.
    let joined: BTreeMap<String, Vec<String>> = offline
        .iter()
        .map(|(k, d)| {
            let d = if d.is_empty() {
                Vec::new()
            } else {
                vec![d.join("; ")]
            };
            (k.clone(), d)
        })
        .collect();
    for (key, denials) in &online {
        eprintln!(
            "{key}: {}",
            if denials.is_empty() {
                "admitted".to_owned()
            } else {
                denials.join("; ")
            }
        );
    }
    assert_eq!(
        joined, online,
        "brain validate (left) and the webhook (right)"
    );

    // A denied link whose adaptor is not installed either: the denial alone, without the
    // "not installed, the link waits" warning that would contradict it.
    let text = std::fs::read_to_string(repo_file("tests/corpus/broken.yaml")).unwrap();
    let link = crds::parse::device_links(&text)
        .unwrap()
        .into_iter()
        .find(|l| l.metadata.name.as_deref() == Some("readonlye"))
        .unwrap();
    let req = axum::http::Request::post(
        "/apis/edge.cattle.io/v1alpha1/namespaces/default/devicelinks?dryRun=All",
    )
    .header("content-type", "application/json")
    .body(kube::client::Body::from(serde_json::to_vec(&link).unwrap()))
    .unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let warnings: Vec<_> = resp.headers().get_all("warning").iter().collect();
    assert!(warnings.is_empty(), "{warnings:?}");

    // The corpus exercises both verdicts and the suggestion.
    let denied = online.values().filter(|d| !d.is_empty()).count();
    assert!(denied >= 9 && online.len() - denied >= 5, "{online:#?}");
    let all = online
        .values()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    for hint in [
        "properties[0].readOnlye: unknown field (Kubernetes would silently drop it); did you mean `readOnly`?",
        "properties[0].nmae: unknown field (Kubernetes would silently drop it); did you mean `name`?",
        "spec.template.spec.gaer: unknown field (Kubernetes would silently drop it); did you mean `gear`?",
    ] {
        assert!(all.contains(hint), "{hint} not in {all}");
    }
}

/// `floatValue` is what Octopus wrote, `resource.MustParse(fmt.Sprintf("%f", v))`: the
/// API server parses a quantity with the same code and stores it canonicalised, so a
/// ResourceQuota's `spec.hard.cpu` given the same text shows Kubernetes's result, which
/// `crds::octopus::quantity` must equal. Core objects round resource lists up to
/// thousandths, so only values in thousandths are asked (the dummy's are hundredths;
/// the texts Kubernetes keeps as written are `crds::octopus`'s unit test), and quotas
/// take no negative values (the sign is only a prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn float_values_are_kubernetes_canonical_quantities() {
    use k8s_openapi::api::core::v1::ResourceQuota;
    let server = ApiServer::start().await;
    let client = server.client().await;
    let mut values = vec![
        7.24,
        7.0,
        0.5,
        0.01,
        0.001,
        1000.0,
        1500.0,
        999.99,
        2e6,
        0.0,
        123.456,
        5e17,
        1e18,
        27.1,
        0.1,
        0.3,
        1_234_000.0,
        1e9,
    ];
    // The dummy's floats: hundredths up to 1,000.
    let mut seed = 7u64;
    for _ in 0..30 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        values.push(f64::from(u32::try_from(seed >> 47).unwrap_or(0) % 100_000) / 100.0);
    }
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), "default");
    for (i, v) in values.iter().enumerate() {
        let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("q{i}"), "namespace": "default"},
            "spec": {"hard": {"cpu": format!("{v:.6}")}}
        }))
        .unwrap();
        let stored = quotas.create(&PostParams::default(), &quota).await.unwrap();
        let kubernetes = stored.spec.unwrap().hard.unwrap()["cpu"].0.clone();
        assert_eq!(crds::octopus::quantity(*v), kubernetes, "{v}");
    }
}
