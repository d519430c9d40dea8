//! What a team moving from Octopus reads, on a real API server with the limb and brain as
//! processes: refusals that reach the link as a condition and a Warning event, with the
//! cause; an adaptor that goes away is an event each time; deletions that log no
//! warnings.

use std::time::Duration;

use crds::conditions::{ConditionStatus, ConditionType};
use crds::v1alpha1::DeviceLink;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::cluster::{Limb, control_plane, device_instances, limb_logs, ship, start_limb, wait};
use crate::common::component;

fn dummy_link(name: &str, template_spec: Value) -> DeviceLink {
    serde_json::from_value(json!({
        "apiVersion": "edge.cattle.io/v1alpha1", "kind": "DeviceLink",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "adaptor": {"node": "edge-1", "name": "adaptors.edge.cattle.io/dummy"},
            "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummySpecialDevice"},
            "template": {"spec": template_spec}
        }
    }))
    .unwrap()
}

/// The condition `t` of the link `name`: status, reason, message.
async fn condition(
    links: &Api<DeviceLink>,
    name: &str,
    t: ConditionType,
) -> Option<(ConditionStatus, String, String)> {
    let l = links.get(name).await.ok()?;
    l.status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status, c.reason, c.message))
}

/// Warning events with `reason` on the link `name`, counting a series as its count.
pub(crate) async fn warnings(client: &Client, name: &str, reason: &str) -> (u32, Vec<String>) {
    events_of(client, name, reason, "Warning").await
}

/// The events of `type_` and `reason` on link `name`: how many (series counted) and
/// their notes.
async fn events_of(client: &Client, name: &str, reason: &str, type_: &str) -> (u32, Vec<String>) {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&Default::default()).await.unwrap();
    let mine: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some(type_)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("DeviceLink")
        })
        .collect();
    let count = mine
        .iter()
        .map(|e| {
            e.series
                .as_ref()
                .map_or(1, |s| u32::try_from(s.count).unwrap_or(1))
        })
        .sum();
    (count, mine.into_iter().filter_map(|e| e.note).collect())
}

/// With the webhook bypassed (its failure policy is Ignore; this control plane has none),
/// a template field the model does not declare is refused before any instance exists:
/// the dummy declares its model (contract 0.1.3), so the limb refuses the spec by that
/// schema, as the API server's strict apply would for an adaptor that declares none.
/// The refusal reaches the link: DeviceCreated=False with Octopus's reason and the field
/// named, and a Warning event, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_the_api_server_refuses_is_a_condition_and_a_warning_on_the_link() {
    let (server, client, _brain) = control_plane().await;
    ship(&client, "dummy", &component("adaptor_dummy")).await;
    let _limb = start_limb(&server, "refused");
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    let typo = json!({"protocol": {"location": "lab"}, "on": true, "gaer": "fast"});
    links
        .create(&PostParams::default(), &dummy_link("typo", typo))
        .await
        .unwrap();

    let (status, reason, message) = wait(
        "DeviceCreated=False on the link",
        Duration::from_secs(60),
        async || {
            condition(&links, "typo", ConditionType::DeviceCreated)
                .await
                .filter(|c| c.0 == ConditionStatus::False)
        },
    )
    .await;
    eprintln!("DeviceCreated: {status:?} {reason}: {message}");
    assert_eq!(reason, "Fail", "Octopus's reason");
    assert!(
        message.starts_with("unable to make device from model: ")
            && message.contains("spec.template.spec.gaer: unknown field")
            && message.contains("did you mean `gear`?"),
        "the refusal, naming the field: {message}"
    );
    let (count, notes) = wait(
        "a FailedCreated Warning event on the link",
        Duration::from_secs(30),
        async || Some(warnings(&client, "typo", "FailedCreated").await).filter(|(n, _)| *n > 0),
    )
    .await;
    assert!(notes.iter().all(|n| n.contains("gaer")), "{notes:?}");
    assert!(
        device_instances(&client, "DummySpecialDevice", "dummyspecialdevices")
            .get_opt("typo")
            .await
            .unwrap()
            .is_none()
    );
    // The limb resyncs every 2 s: the same refusal is not announced again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (again, _) = warnings(&client, "typo", "FailedCreated").await;
    assert_eq!(again, count, "one event for one refusal");

    // Fixing the template heals the link.
    let fixed = json!({"spec": {"template": {"spec": {"gaer": null, "gear": "fast"}}}});
    links
        .patch(
            "typo",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(fixed),
        )
        .await
        .unwrap();
    wait(
        "DeviceConnected=True",
        Duration::from_secs(60),
        async || {
            condition(&links, "typo", ConditionType::DeviceConnected)
                .await
                .filter(|c| c.0 == ConditionStatus::True)
        },
    )
    .await;
}

/// A link whose adaptor is not loaded gets AdaptorExisted=False/NotFound and a Warning
/// event; when the adaptor comes the device connects, and when it goes the link gets
/// the condition and the event again. Deleting the link then logs nothing above DEBUG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adaptor_that_is_missing_or_goes_away_is_a_warning_each_time() {
    let (server, client, _brain) = control_plane().await;
    let limb = start_limb(&server, "adaptor");
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    let spec = json!({"protocol": {"location": "lab"}, "on": true, "parameters": {"syncInterval": "200ms"}});
    links
        .create(&PostParams::default(), &dummy_link("fan", spec))
        .await
        .unwrap();

    let not_found = async || {
        condition(&links, "fan", ConditionType::AdaptorExisted)
            .await
            .filter(|c| c.0 == ConditionStatus::False && c.1 == "NotFound")
    };
    wait(
        "AdaptorExisted=False/NotFound",
        Duration::from_secs(60),
        not_found,
    )
    .await;
    let (first, notes) = wait(
        "an AdaptorNotFound Warning event",
        Duration::from_secs(30),
        async || Some(warnings(&client, "fan", "AdaptorNotFound").await).filter(|(n, _)| *n > 0),
    )
    .await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("adaptors.edge.cattle.io/dummy")),
        "{notes:?}"
    );

    ship(&client, "dummy", &component("adaptor_dummy")).await;
    wait(
        "DeviceConnected=True once the adaptor is there",
        Duration::from_secs(60),
        async || {
            condition(&links, "fan", ConditionType::DeviceConnected)
                .await
                .filter(|c| c.0 == ConditionStatus::True)
        },
    )
    .await;
    let (_, notes) = wait(
        "an AdaptorFound Normal event answering the warning",
        Duration::from_secs(30),
        async || {
            Some(events_of(&client, "fan", "AdaptorFound", "Normal").await).filter(|(n, _)| *n > 0)
        },
    )
    .await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("adaptors.edge.cattle.io/dummy")),
        "{notes:?}"
    );

    Api::<ConfigMap>::namespaced(client.clone(), "octopus-system")
        .delete("adaptor-dummy", &DeleteParams::default())
        .await
        .unwrap();
    wait(
        "AdaptorExisted=False/NotFound after the adaptor went",
        Duration::from_secs(60),
        not_found,
    )
    .await;
    wait(
        "a second AdaptorNotFound Warning event",
        Duration::from_secs(30),
        async || {
            Some(warnings(&client, "fan", "AdaptorNotFound").await).filter(|(n, _)| *n > first)
        },
    )
    .await;

    // An ordinary deletion: gone from the limb, and nothing above DEBUG about it (no INFO,
    // WARN or ERROR line).
    let log = server.dir.path().join("limb-adaptor.log");
    let before = std::fs::read_to_string(&log).unwrap_or_default().len();
    links.delete("fan", &DeleteParams::default()).await.unwrap();
    wait("the link deleted", Duration::from_secs(60), async || {
        links
            .get_opt("fan")
            .await
            .ok()
            .and_then(|l| l.is_none().then_some(()))
    })
    .await;
    wait(
        "the limb forgot the device",
        Duration::from_secs(30),
        async || limb.device().is_none().then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let after = &text[before.min(text.len())..];
    let loud: Vec<&str> = after
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains(" INFO"))
        .collect();
    assert!(
        loud.is_empty(),
        "deletion logged: {loud:#?}\n{}",
        limb_logs()
    );
    assert!(
        text[..before.min(text.len())].contains(" INFO"),
        "the limb logs at INFO, so the check above can fail"
    );
}

/// The limb's other refusals, on real links: each in the condition Octopus used, with
/// its reason, Octopus's words and the cause, and a Warning event. A grant the node
/// policy refuses (this limb allows TCP to loopback only) is `DeviceCreated=False/Fail`
/// and `FailedGrant`; a spec the adaptor rejects is `DeviceConnected=False/Unhealthy`
/// and Octopus's `FailedConnected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_octopus_s_reason_and_the_cause() {
    let (server, client, _brain) = control_plane().await;
    ship(&client, "dummy", &component("adaptor_dummy")).await;
    let _limb = start_limb(&server, "refusals");
    let links: Api<DeviceLink> = Api::namespaced(client.clone(), "default");
    let mut far = dummy_link("far", json!({"protocol": {"location": "lab"}, "on": true}));
    far.spec.grants =
        serde_json::from_value(json!([{"name": "plc", "kind": "tcp", "target": "192.0.2.10:502"}]))
            .unwrap();
    links.create(&PostParams::default(), &far).await.unwrap();
    let bad_spec = json!({"protocol": {"location": "lab"}, "on": true, "parameters": {"syncInterval": "banana"}});
    links
        .create(&PostParams::default(), &dummy_link("banana", bad_spec))
        .await
        .unwrap();

    for (name, stage, reason, words, cause, event) in [
        (
            "far",
            ConditionType::DeviceCreated,
            "Fail",
            "unable to make device from model: ",
            "node policy refused tcp grant \"plc\" (192.0.2.10:502)",
            "FailedGrant",
        ),
        (
            "banana",
            ConditionType::DeviceConnected,
            "Unhealthy",
            "unable to connect to device: ",
            "parameters.syncInterval",
            "FailedConnected",
        ),
    ] {
        let (_, got_reason, message) = wait(
            &format!("{name}: {stage}=False"),
            Duration::from_secs(60),
            async || {
                condition(&links, name, stage)
                    .await
                    .filter(|c| c.0 == ConditionStatus::False)
            },
        )
        .await;
        eprintln!("{name}: {stage} {got_reason}: {message}");
        assert_eq!(got_reason, reason, "{name}");
        assert!(
            message.starts_with(words) && message.contains(cause),
            "{name}: {message}"
        );
        let (_, notes) = wait(
            &format!("{name}: a {event} Warning event"),
            Duration::from_secs(30),
            async || Some(warnings(&client, name, event).await).filter(|(n, _)| *n > 0),
        )
        .await;
        assert!(notes.iter().any(|n| n.contains(cause)), "{name}: {notes:?}");
    }
}
