//! Adaptors from ConfigMaps: watched through the API (not a mounted volume, whose
//! refresh takes a minute), reassembled, digest-checked, compiled in the background (each
//! on its own, so a small adaptor is not held up by a big one compiling) and handed to
//! the manager, which hot-swaps every device using them.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::manager::Trigger;
use super::{MANAGER, Registry};
use crate::adaptors::package::{self, COMPONENT_LABEL, Manifest, PART_OF_LABEL};
use crate::adaptors::{self, Adaptor, CompileCache};
use crate::status::AdaptorReport;
use crate::supervisor::Context;

/// What was last loaded (or refused) from each manifest ConfigMap.
struct Seen {
    adaptor: String,
    digest: String,
    /// Pushed with `--force`: pushing the same digest again with (or without) it loads
    /// it again, marked accordingly.
    force: bool,
}

/// A load started from a manifest ConfigMap, finished in the background.
struct Loaded {
    cm: Arc<ConfigMap>,
    source: String,
    manifest: Manifest,
    result: Result<Arc<Adaptor>, String>,
}

pub async fn run(
    client: Client,
    ctx: Arc<Context>,
    cache: Arc<CompileCache>,
    registry: Arc<Registry>,
    namespace: String,
    trigger: mpsc::UnboundedSender<Trigger>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let (store, writer) = reflector::store();
    let cfg = watcher::Config::default().labels(&format!("{COMPONENT_LABEL}=true"));
    // Raw events: the store only holds the initial list once `InitDone` has arrived.
    let mut stream = watcher(api, cfg)
        .backoff(super::WatchBackoff::default())
        .reflect(writer)
        .boxed();
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
    );
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut loading: JoinSet<Loaded> = JoinSet::new();
    loop {
        tokio::select! {
            Some(done) = loading.join_next() => {
                match done {
                    Ok(loaded) => {
                        let current = seen
                            .get(&loaded.cm.name_any())
                            .is_some_and(|s| s.digest == loaded.manifest.digest);
                        if current {
                            loaded_one(&ctx, &cache, &registry, &recorder, &trigger, loaded).await;
                        } else {
                            tracing::debug!(configmap = %loaded.cm.name_any(), "a load of a ConfigMap that has changed since is discarded");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "an adaptor load failed"),
                }
                continue;
            }
            ev = stream.next() => match ev {
                Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "adaptor ConfigMap watch failed; retrying");
                    continue;
                }
                None => {
                    tracing::warn!("adaptor ConfigMap watch ended");
                    return;
                }
            },
            _ = shutdown.changed() => {
                tracing::info!("adaptor source stopped");
                loading.abort_all();
                return;
            }
        }
        let all = store.state();
        let manifests: Vec<_> = all
            .iter()
            .filter(|c| !c.labels().contains_key(PART_OF_LABEL))
            .cloned()
            .collect();
        // Removed manifests: their adaptors go away.
        let names: Vec<String> = manifests.iter().map(|c| c.name_any()).collect();
        let gone: Vec<String> = seen
            .keys()
            .filter(|k| !names.contains(k))
            .cloned()
            .collect();
        for cm in gone {
            if let Some(s) = seen.remove(&cm) {
                tracing::info!(adaptor = %s.adaptor, configmap = %cm, "adaptor removed");
                registry.remove(&s.adaptor);
                ctx.board.remove_adaptor(&format!("configmap/{cm}"));
                let _ = trigger.send(Trigger::Adaptor(s.adaptor));
            }
        }
        for cm in manifests {
            let name = cm.name_any();
            let source = format!("configmap/{name}");
            let manifest = match Manifest::from_annotations(cm.annotations()) {
                Ok(m) => m,
                Err(e) => {
                    refuse(&ctx, &recorder, &cm, &source, None, &e.to_string()).await;
                    continue;
                }
            };
            if seen
                .get(&name)
                .is_some_and(|s| s.digest == manifest.digest && s.force == manifest.force)
            {
                continue;
            }
            tracing::info!(configmap = %name, adaptor = %manifest.adaptor, digest = %manifest.digest, "adaptor ConfigMap changed");
            let (parts, _) = package::collect_parts(
                package::Stored::from(&*cm),
                manifest.parts,
                all.iter().map(|c| package::Stored::from(&**c)),
            );
            let assembled = package::assemble(&manifest, &parts);
            if let Err(package::Error::MissingPart(..)) = assembled {
                continue; // the rest is on its way
            }
            seen.insert(
                name.clone(),
                Seen {
                    adaptor: manifest.adaptor.clone(),
                    digest: manifest.digest.clone(),
                    force: manifest.force,
                },
            );
            match assembled {
                Ok(bytes) => {
                    let (ctx, cache) = (ctx.clone(), cache.clone());
                    loading.spawn(async move {
                        let limits = ctx.policy.compile();
                        let force = manifest.force;
                        let result = adaptors::load_with(
                            &ctx.runtime,
                            &cache,
                            limits,
                            bytes,
                            source.clone(),
                        )
                        .await
                        .map(|a| adaptors::forced(a, force))
                        .inspect_err(|e| ctx.metrics.load(e.kind()))
                        .map_err(|e| e.to_string());
                        Loaded {
                            cm,
                            source,
                            manifest,
                            result,
                        }
                    });
                }
                Err(e) => {
                    let loaded = Loaded {
                        cm,
                        source,
                        manifest,
                        result: Err(e.to_string()),
                    };
                    loaded_one(&ctx, &cache, &registry, &recorder, &trigger, loaded).await;
                }
            }
        }
    }
}

/// Serves (or refuses) what a manifest ConfigMap loaded to.
async fn loaded_one(
    ctx: &Context,
    cache: &Arc<CompileCache>,
    registry: &Registry,
    recorder: &Recorder,
    trigger: &mpsc::UnboundedSender<Trigger>,
    loaded: Loaded,
) {
    let Loaded {
        cm,
        source,
        manifest,
        result,
    } = loaded;
    match result {
        Ok(a) if a.info.name != manifest.adaptor => {
            let why = format!(
                "the component calls itself {:?}, the ConfigMap says {:?}",
                a.info.name, manifest.adaptor
            );
            refuse(ctx, recorder, &cm, &source, Some(&manifest), &why).await;
        }
        Ok(a) => {
            ctx.metrics.load("ok");
            ctx.board.set_adaptor(a.report());
            let note = format!(
                "loaded {} {} ({})",
                a.info.name, a.info.version, manifest.digest
            );
            publish(recorder, &cm, EventType::Normal, "AdaptorLoaded", &note).await;
            cache.remember_good(&a.info.name, &a.digest);
            registry.set(a);
            let _ = trigger.send(Trigger::Adaptor(manifest.adaptor.clone()));
        }
        Err(why) => {
            // The previous version, if any, stays in the registry and serving.
            refuse(ctx, recorder, &cm, &source, Some(&manifest), &why).await;
            if registry.get(&manifest.adaptor).is_none() {
                registry.refuse(&manifest.adaptor, why);
            }
            fall_back(ctx, cache, registry, &manifest.adaptor, &source, trigger).await;
        }
    }
}

/// When nothing serves `adaptor` (a limb restarted onto a broken ConfigMap), serve the
/// last version that loaded here, from the compile cache.
async fn fall_back(
    ctx: &Context,
    cache: &Arc<CompileCache>,
    registry: &Registry,
    adaptor: &str,
    source: &str,
    trigger: &mpsc::UnboundedSender<Trigger>,
) {
    if registry.get(adaptor).is_some() {
        return;
    }
    match adaptors::load_last_good(
        &ctx.runtime,
        cache,
        adaptor,
        format!("{source} (last good, from cache)"),
    )
    .await
    {
        Ok(Some(a)) if a.info.name == adaptor => {
            tracing::warn!(adaptor, version = %a.info.version, "serving the last good version from the compile cache");
            registry.set(a);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(adaptor, error = %e, "the last good version does not load either"),
    }
    let _ = trigger.send(Trigger::Adaptor(adaptor.to_owned()));
}

async fn refuse(
    ctx: &Context,
    recorder: &Recorder,
    cm: &ConfigMap,
    source: &str,
    manifest: Option<&Manifest>,
    why: &str,
) {
    tracing::error!(configmap = %cm.name_any(), error = %why, "adaptor refused; the previous version, if any, keeps serving");
    ctx.board.set_adaptor(AdaptorReport::refused(
        source,
        manifest.map(|m| m.adaptor.clone()),
        manifest.map(|m| m.digest.clone()),
        why,
    ));
    publish(recorder, cm, EventType::Warning, "AdaptorRefused", why).await;
}

async fn publish(recorder: &Recorder, cm: &ConfigMap, type_: EventType, reason: &str, note: &str) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note.to_owned()),
        action: "Load".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &cm.object_ref(&())).await {
        tracing::debug!(error = %e, "cannot record event");
    }
}
