//! `octopus inspect` on components the limb accepts and on ones it refuses.

use std::path::Path;

use crate::common::{component_path, run};

fn inspect(name: &str, json: bool) -> crate::common::Run {
    let path = component_path(name);
    let mut args = vec!["inspect", path.to_str().unwrap()];
    if json {
        args.extend(["-o", "json"]);
    }
    // No cluster is needed: a kubeconfig that does not exist must not matter.
    run(
        Path::new(env!("CARGO_BIN_EXE_octopus")),
        Path::new("/nonexistent/kubeconfig"),
        &args,
    )
}

#[test]
fn a_good_component_is_accepted_with_its_world_imports_and_models() {
    let r = inspect("adaptor_modbus", true).success();
    let v = r.json();
    assert_eq!(v["accepted"], true);
    assert_eq!(v["reasons"], serde_json::json!([]));
    assert_eq!(v["adaptor"]["name"], "adaptors.edge.cattle.io/modbus");
    assert_eq!(v["adaptor"]["models"][0]["kind"], "ModbusDevice");
    assert_eq!(
        v["world"]["name"],
        "octopus:adaptor/described-adaptor@0.1.3"
    );
    assert_eq!(v["adaptor"]["models"][0]["declared"], true);
    assert_eq!(
        v["size"].as_u64().unwrap(),
        std::fs::metadata(component_path("adaptor_modbus"))
            .unwrap()
            .len()
    );
    let digest = limb::adaptors::package::digest(&crate::common::component("adaptor_modbus"));
    assert_eq!(v["digest"], digest);
    let imports = v["imports"].as_array().unwrap();
    assert!(
        imports
            .iter()
            .any(|i| i["name"] == "octopus:adaptor/socket@0.1.3" && i["kind"] == "ours")
    );
    assert!(
        imports
            .iter()
            .any(|i| i["name"].as_str().unwrap().starts_with("wasi:") && i["kind"] == "wasi")
    );
    assert!(imports.iter().all(|i| i["kind"] != "unknown"));
    let exports: Vec<(&str, &str)> = v["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert!(
        exports.contains(&("octopus:adaptor/driver@0.1.3", "driver")),
        "{exports:?}"
    );
    assert!(
        exports.contains(&("octopus:adaptor/models@0.1.3", "models")),
        "{exports:?}"
    );
    let uses: Vec<&str> = v["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(
        uses.contains(&"socket") && uses.contains(&"serial") && uses.contains(&"driver"),
        "{uses:?}"
    );

    let text = inspect("adaptor_modbus", false).success().stdout;
    assert!(text.contains("accepted by this limb"), "{text}");
    assert!(
        text.contains("serves     devices.edge.cattle.io/v1alpha1/ModbusDevice"),
        "{text}"
    );
    assert!(
        text.contains("resource field protocol.tcp.endpoint (tcp)"),
        "{text}"
    );
}

#[test]
fn a_component_of_another_world_is_refused_with_every_reason() {
    let r = inspect("adaptor_other_world", true).failure();
    let v = r.json();
    assert_eq!(v["accepted"], false);
    assert!(v["adaptor"].is_null());
    assert!(v["world"]["name"].is_null());
    let reasons: Vec<&str> = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].contains("does not provide: acme:thing/host-stuff@1.0.0"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("does not export octopus:adaptor/driver"),
        "{reasons:?}"
    );
    let unknown: Vec<&str> = v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "unknown")
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(unknown, ["acme:thing/host-stuff@1.0.0"]);
    assert!(r.stderr.contains("the limb would refuse"), "{}", r.stderr);

    let text = inspect("adaptor_other_world", false).failure().stdout;
    assert!(text.contains("REFUSED by this limb"), "{text}");
    assert!(
        text.contains("acme:thing/host-stuff@1.0.0     unknown: not provided, refused"),
        "{text}"
    );
}

#[test]
fn a_component_of_an_old_contract_is_told_which_version_it_has() {
    let v = inspect("adaptor_legacy", true).failure().json();
    assert_eq!(v["accepted"], false);
    let reason = v["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("octopus:adaptor@0.0.9") && reason.contains("0.1.x"),
        "{reason}"
    );
    assert_eq!(v["world"]["name"], "octopus:adaptor/adaptor@0.0.9");
    assert_eq!(v["exports"][0]["kind"], "other-version");
    assert!(
        v["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "other-version")
    );
}

#[test]
fn a_file_that_is_not_a_component_is_refused_and_a_missing_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").unwrap();
    let r = run(
        Path::new(env!("CARGO_BIN_EXE_octopus")),
        Path::new("/nonexistent"),
        &["inspect", junk.to_str().unwrap(), "-o", "json"],
    )
    .failure();
    let v = r.json();
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("not a WebAssembly component")
    );
    assert!(v["world"].is_null());

    let r = run(
        Path::new(env!("CARGO_BIN_EXE_octopus")),
        Path::new("/nonexistent"),
        &["inspect", "/nonexistent/a.wasm"],
    )
    .failure();
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains("error: cannot read /nonexistent/a.wasm"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_kubectl_plugin_is_the_same_command() {
    let path = component_path("adaptor_dummy");
    let r = run(
        Path::new(env!("CARGO_BIN_EXE_kubectl-octopus")),
        Path::new("/nonexistent"),
        &["inspect", path.to_str().unwrap(), "-o", "json"],
    )
    .success();
    assert_eq!(r.json()["adaptor"]["name"], "adaptors.edge.cattle.io/dummy");
}

#[test]
fn several_files_are_judged_in_one_run_and_any_refusal_fails_it() {
    let (dummy, modbus, other) = (
        component_path("adaptor_dummy"),
        component_path("adaptor_modbus"),
        component_path("adaptor_other_world"),
    );
    let octopus = Path::new(env!("CARGO_BIN_EXE_octopus"));
    let nowhere = Path::new("/nonexistent");
    let v = run(
        octopus,
        nowhere,
        &[
            "inspect",
            dummy.to_str().unwrap(),
            modbus.to_str().unwrap(),
            "-o",
            "json",
        ],
    )
    .success()
    .json();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["adaptor"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "adaptors.edge.cattle.io/dummy",
            "adaptors.edge.cattle.io/modbus"
        ]
    );

    let r = run(
        octopus,
        nowhere,
        &["inspect", dummy.to_str().unwrap(), other.to_str().unwrap()],
    )
    .failure();
    let dummy_at = r.stdout.find("adaptor_dummy.wasm: accepted").unwrap();
    let other_at = r.stdout.find("adaptor_other_world.wasm: REFUSED").unwrap();
    assert!(dummy_at < other_at, "{}", r.stdout);
    assert!(
        r.stderr
            .contains(&format!("the limb would refuse {}", other.display())),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("adaptor_dummy"), "{}", r.stderr);
}

#[test]
fn a_node_policy_bounds_the_component_size() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "maxComponentBytes: 1000\n").unwrap();
    let dummy = component_path("adaptor_dummy");
    let octopus = Path::new(env!("CARGO_BIN_EXE_octopus"));
    let args = |p: &Path| {
        vec![
            "inspect".to_owned(),
            dummy.display().to_string(),
            "--policy".to_owned(),
            p.display().to_string(),
            "-o".to_owned(),
            "json".to_owned(),
        ]
    };
    let refused = args(&policy);
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let v = run(octopus, Path::new("/nonexistent"), &refused)
        .failure()
        .json();
    assert_eq!(v["accepted"], false);
    let reason = v["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("over the node policy's maxComponentBytes of 1000"),
        "{reason}"
    );

    std::fs::write(&policy, "maxComponentBytes: 1000000\n").unwrap();
    let accepted = args(&policy);
    let accepted: Vec<&str> = accepted.iter().map(String::as_str).collect();
    let v = run(octopus, Path::new("/nonexistent"), &accepted)
        .success()
        .json();
    assert_eq!(v["accepted"], true);

    std::fs::write(&policy, "bogus: 1\n").unwrap();
    let r = run(octopus, Path::new("/nonexistent"), &refused).failure();
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(r.stderr.contains("invalid node policy"), "{}", r.stderr);
}
