//! Status relay: what the supervisors report reaches the API, coalesced per device
//! (latest wins), with its own field manager. Nothing queues without bound: a device
//! that changes faster than the API accepts simply has its older reports replaced, and
//! while the API server is away the latest report waits and is written when it returns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crds::conditions::{ConditionType, Conditions, now};
use crds::v1alpha1::DeviceLink;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use super::MANAGER;
use super::manager::{lookup, model_resource};
use crate::status::{DeviceReport, StatusBoard};

pub async fn run(
    client: Client,
    board: Arc<StatusBoard>,
    links: Store<DeviceLink>,
    flush: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut rx = board.subscribe();
    let mut pending: HashMap<String, Arc<DeviceReport>> = HashMap::new();
    let mut written: HashMap<String, Value> = HashMap::new();
    let mut resources: HashMap<kube::api::GroupVersionKind, ApiResource> = HashMap::new();
    let mut tick = tokio::time::interval(flush);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(r) => { pending.insert(r.key(), r); }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    for r in board.devices() {
                        pending.insert(r.key(), Arc::new(r));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                let batch: Vec<_> = pending.drain().collect();
                for (key, report) in batch {
                    if let Err(e) = write(&client, &links, &mut resources, &mut written, &report).await {
                        tracing::debug!(device = %key, error = %e, "status not written yet; retrying");
                        pending.entry(key).or_insert(report);
                    }
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn write(
    client: &Client,
    links: &Store<DeviceLink>,
    resources: &mut HashMap<kube::api::GroupVersionKind, ApiResource>,
    written: &mut HashMap<String, Value>,
    report: &DeviceReport,
) -> Result<(), kube::Error> {
    let key = report.key();
    let Some(link) = lookup(links, &key) else {
        written.remove(&key);
        return Ok(());
    };
    if link.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let ns = link.namespace_or_default();
    // Link: the limb's conditions on top of the brain's.
    let status = link.status.clone().unwrap_or_default();
    let mut conditions = Conditions(status.conditions.clone());
    let stamp = now();
    for c in report
        .conditions
        .0
        .iter()
        .filter(|c| c.type_ >= ConditionType::AdaptorExisted)
    {
        conditions.set(c.type_, c.status, &c.reason, &c.message, &stamp);
    }
    let adaptor_name = conditions
        .get(ConditionType::AdaptorExisted)
        .filter(|c| c.status == crds::ConditionStatus::True)
        .map(|_| link.spec.adaptor.name.clone());
    if conditions.0 != status.conditions || adaptor_name != status.adaptor_name {
        let api: Api<DeviceLink> = Api::namespaced(client.clone(), ns);
        let patch = json!({
            "metadata": {"resourceVersion": link.resource_version()},
            "status": {"conditions": conditions.0, "adaptorName": adaptor_name},
        });
        let pp = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        api.patch_status(link.name(), &pp, &Patch::Merge(&patch))
            .await?;
    }
    // Instance: the adaptor's last good status.
    if report.status.is_object() && written.get(&key) != Some(&report.status) {
        let gvk = model_resource(&link);
        let ar = match resources.get(&gvk) {
            Some(ar) => ar.clone(),
            None => {
                let (ar, _) = kube::discovery::pinned_kind(client, &gvk).await?;
                resources.insert(gvk, ar.clone());
                ar
            }
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let pp = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        api.patch_status(
            &link.name_any(),
            &pp,
            &Patch::Merge(&json!({"status": report.status})),
        )
        .await?;
        written.insert(key, report.status.clone());
    }
    Ok(())
}
