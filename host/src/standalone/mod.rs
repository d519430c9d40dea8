//! Standalone mode: adaptors (`*.wasm`) and DeviceLinks (`*.yaml`) from one folder, no
//! cluster. The folder is rescanned on an interval; new, changed and removed files take
//! effect without a restart, and a file that fails to load leaves the last good state.

pub mod output;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crds::{ConditionType, DeviceLink};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::adaptors::{self, Adaptor, CompileCache};
use crate::status::{AdaptorReport, DeviceReport, Event, EventType, Phase, now};
use crate::supervisor::{self, Command, Context, Handle};

/// File identity for change detection: modification time and length.
type Signature = (Option<SystemTime>, u64);

/// Files of one kind with their signatures.
type Listing = Vec<(PathBuf, Signature)>;

struct AdaptorFile {
    sig: Signature,
    digest: Option<String>,
    name: Option<String>,
}

/// An adaptor load a scan started, finished in the background.
struct Loaded {
    path: PathBuf,
    digest: String,
    result: Result<Arc<Adaptor>, adaptors::Error>,
}

struct LinkFile {
    sig: Signature,
    links: Vec<Arc<DeviceLink>>,
}

struct Running {
    link: Arc<DeviceLink>,
    digest: String,
    handle: Handle,
}

pub struct Standalone {
    ctx: Arc<Context>,
    cache: Arc<CompileCache>,
    dir: PathBuf,
    node: Option<String>,
    adaptor_files: HashMap<PathBuf, AdaptorFile>,
    adaptors: HashMap<String, Arc<Adaptor>>,
    link_files: BTreeMap<PathBuf, LinkFile>,
    running: HashMap<String, Running>,
    /// Adaptor files compiling: each loads on its own, so a small adaptor dropped beside
    /// a big one serves as soon as its own compile is done.
    loading: JoinSet<Loaded>,
}

impl Standalone {
    /// `node`: when set, only links whose `spec.adaptor.node` names it are driven.
    pub fn new(
        ctx: Arc<Context>,
        cache: Arc<CompileCache>,
        dir: PathBuf,
        node: Option<String>,
    ) -> Self {
        Self {
            ctx,
            cache,
            dir,
            node,
            adaptor_files: HashMap::new(),
            adaptors: HashMap::new(),
            link_files: BTreeMap::new(),
            running: HashMap::new(),
            loading: JoinSet::new(),
        }
    }

    /// Scans until `shutdown` turns true, then stops every device. A finished adaptor
    /// load is applied at once, with a scan.
    pub async fn run(mut self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.scan().await;
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                Some(done) = self.loading.join_next() => match done {
                    Ok(loaded) => self.loaded(loaded),
                    Err(e) => tracing::error!(error = %e, "an adaptor load failed"),
                },
                _ = shutdown.changed() => break,
            }
        }
        self.loading.abort_all();
        crate::supervisor::stop_all(self.running.drain().map(|(_, r)| r.handle)).await;
    }

    /// One pass: start loading changed adaptors (in the background, see [`Self::run`]),
    /// read changed link files, reconcile devices.
    pub async fn scan(&mut self) {
        let (wasm, yaml) = match list(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the folder; keeping the current state");
                return;
            }
        };
        self.scan_adaptors(wasm);
        self.scan_links(yaml);
        self.reconcile().await;
        self.ctx.metrics.set_devices(self.running.len());
    }

    fn scan_adaptors(&mut self, files: Listing) {
        let present: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
        let gone: Vec<PathBuf> = self
            .adaptor_files
            .keys()
            .filter(|p| !present.contains(p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(f) = self.adaptor_files.remove(&path)
                && let Some(name) = f.name
                && self
                    .adaptors
                    .get(&name)
                    .is_some_and(|a| a.source == path.display().to_string())
            {
                tracing::info!(adaptor = %name, file = %path.display(), "adaptor removed");
                self.adaptors.remove(&name);
            }
            self.ctx.board.remove_adaptor(&path.display().to_string());
        }
        let limits = self.ctx.policy.compile().clone();
        for (path, sig) in files {
            if self.adaptor_files.get(&path).is_some_and(|f| f.sig == sig) {
                continue;
            }
            let source = path.display().to_string();
            let entry = self
                .adaptor_files
                .entry(path.clone())
                .or_insert(AdaptorFile {
                    sig,
                    digest: None,
                    name: None,
                });
            entry.sig = sig;
            // Over the size bound: refused without reading it.
            let len = usize::try_from(sig.1).unwrap_or(usize::MAX);
            if len > limits.max_component_bytes {
                entry.digest = None;
                let refused = Err(adaptors::Error::TooLarge {
                    len,
                    max: limits.max_component_bytes,
                });
                self.apply(&path, None, refused);
                continue;
            }
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(file = %source, error = %e, "cannot read adaptor");
                    continue;
                }
            };
            let digest = adaptors::digest(&bytes);
            if entry.digest.as_deref() == Some(digest.as_str()) {
                continue;
            }
            entry.digest = Some(digest.clone());
            let (ctx, cache, limits) = (self.ctx.clone(), self.cache.clone(), limits.clone());
            self.loading.spawn(async move {
                let result =
                    adaptors::load_with(&ctx.runtime, &cache, &limits, bytes, source).await;
                Loaded {
                    path,
                    digest,
                    result,
                }
            });
        }
    }

    /// Applies a finished load, unless its file has changed or gone since.
    fn loaded(&mut self, loaded: Loaded) {
        let Loaded {
            path,
            digest,
            result,
        } = loaded;
        if self
            .adaptor_files
            .get(&path)
            .is_none_or(|f| f.digest.as_deref() != Some(digest.as_str()))
        {
            tracing::debug!(file = %path.display(), "a load of a file that has changed since is discarded");
            return;
        }
        self.apply(&path, Some(digest), result);
    }

    fn apply(
        &mut self,
        path: &Path,
        digest: Option<String>,
        result: Result<Arc<Adaptor>, adaptors::Error>,
    ) {
        let source = path.display().to_string();
        let Some(entry) = self.adaptor_files.get_mut(path) else {
            return;
        };
        match result {
            Ok(adaptor) => {
                self.ctx.metrics.load("ok");
                entry.name = Some(adaptor.info.name.clone());
                if let Some(prev) = self.adaptors.get(&adaptor.info.name)
                    && prev.source != source
                {
                    tracing::warn!(adaptor = %adaptor.info.name, previous = %prev.source, now = %source, "two files provide the same adaptor; the newer load wins");
                }
                self.ctx.board.set_adaptor(adaptor.report());
                self.adaptors.insert(adaptor.info.name.clone(), adaptor);
            }
            Err(e) => {
                self.ctx.metrics.load(e.kind());
                let msg = format!("{e}");
                tracing::error!(file = %source, error = %msg, "adaptor refused; the previous version, if any, keeps serving");
                self.ctx.board.set_adaptor(AdaptorReport::refused(
                    &source,
                    entry.name.clone(),
                    digest.map(|d| d.get(..12).unwrap_or(&d).to_owned()),
                    &msg,
                ));
                if let Some(name) = &entry.name {
                    for r in self
                        .running
                        .values()
                        .filter(|r| r.handle.adaptor_name == *name)
                    {
                        let ev = Event::new(
                            EventType::Warning,
                            "AdaptorRefused",
                            &format!("{source}: {msg}"),
                        );
                        self.ctx.board.modify(&r.link.key(), |d| d.record(ev));
                    }
                }
            }
        }
    }

    fn scan_links(&mut self, files: Listing) {
        let present: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
        self.link_files.retain(|p, _| present.contains(p));
        for (path, sig) in files {
            if self.link_files.get(&path).is_some_and(|f| f.sig == sig) {
                continue;
            }
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| crds::parse::device_links(&text).map_err(|e| error_chain(&e)));
            match parsed {
                Ok(links) => {
                    tracing::info!(file = %path.display(), links = links.len(), "read DeviceLinks");
                    self.link_files.insert(
                        path,
                        LinkFile {
                            sig,
                            links: links.into_iter().map(Arc::new).collect(),
                        },
                    );
                }
                Err(e) => {
                    // Keep the last good links of this file; remember the signature so
                    // the error is reported once per change.
                    tracing::error!(file = %path.display(), error = %e, "invalid DeviceLink file; keeping its last good links");
                    let links = self
                        .link_files
                        .remove(&path)
                        .map(|f| f.links)
                        .unwrap_or_default();
                    self.link_files.insert(path, LinkFile { sig, links });
                }
            }
        }
    }

    fn desired(&self) -> BTreeMap<String, Arc<DeviceLink>> {
        let mut out = BTreeMap::new();
        for (path, f) in &self.link_files {
            for link in &f.links {
                if self
                    .node
                    .as_ref()
                    .is_some_and(|n| *n != link.spec.adaptor.node)
                {
                    continue;
                }
                if out.insert(link.key(), link.clone()).is_some() {
                    tracing::warn!(link = %link.key(), file = %path.display(), "DeviceLink defined twice; the later file wins");
                }
            }
        }
        out
    }

    async fn reconcile(&mut self) {
        let desired = self.desired();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(r) = self.running.remove(&key) {
                r.handle.retire();
            }
        }
        for key in self.ctx.board.devices().iter().map(DeviceReport::key) {
            if !desired.contains_key(&key) {
                self.ctx.board.remove(&key);
            }
        }
        for (key, link) in desired {
            let adaptor = self.adaptors.get(&link.spec.adaptor.name).cloned();
            let serves = adaptor.as_ref().is_some_and(|a| {
                a.model(&link.spec.model.api_version, &link.spec.model.kind)
                    .is_some()
            });
            let model_known = self.adaptors.values().any(|a| {
                a.model(&link.spec.model.api_version, &link.spec.model.kind)
                    .is_some()
            });
            let stamp = now();
            let init = || {
                DeviceReport::new(
                    link.namespace_or_default(),
                    link.name(),
                    &link.spec.model.kind,
                    &link.spec.adaptor.name,
                )
            };
            let problems = crds::validate::device_link(&link);
            if !problems.is_empty() {
                if let Some(r) = self.running.remove(&key) {
                    r.handle.retire();
                }
                let msg = problems.join("; ");
                self.ctx.board.update(&key, init, |r| {
                    r.phase = Phase::Pending;
                    r.conditions.0.clear();
                    r.last_error = Some(format!("invalid DeviceLink: {msg}"));
                });
                continue;
            }
            if (!model_known || !serves)
                && !self.loading.is_empty()
                && !self.running.contains_key(&key)
            {
                // Its adaptor may be among the files still compiling: say so, rather
                // than that it does not exist.
                let n = self.loading.len();
                self.ctx.board.update(&key, init, |r| {
                    r.phase = Phase::Pending;
                    r.last_error = Some(format!(
                        "waiting for {n} adaptor file(s) still loading; none loaded so far serves {}/{} as {}",
                        link.spec.model.api_version, link.spec.model.kind, link.spec.adaptor.name
                    ));
                });
                continue;
            }
            if !model_known || !serves {
                if let Some(r) = self.running.remove(&key) {
                    r.handle.retire();
                }
                let adaptor_msg = if adaptor.is_some() {
                    format!(
                        "the adaptor isn't existed: {} does not serve {}",
                        link.spec.adaptor.name, link.spec.model.kind
                    )
                } else {
                    format!(
                        "the adaptor isn't existed: no adaptor named {} is loaded",
                        link.spec.adaptor.name
                    )
                };
                self.ctx.board.update(&key, init, |r| {
                    r.phase = Phase::Pending;
                    r.conditions.succeed(ConditionType::NodeExisted, &stamp);
                    if model_known {
                        r.conditions.succeed(ConditionType::ModelExisted, &stamp);
                        r.conditions
                            .fail(ConditionType::AdaptorExisted, &adaptor_msg, &stamp);
                    } else {
                        r.conditions.fail(
                            ConditionType::ModelExisted,
                            &format!(
                                "model isn't existed: no loaded adaptor serves {}/{}",
                                link.spec.model.api_version, link.spec.model.kind
                            ),
                            &stamp,
                        );
                    }
                    r.last_error = Some(adaptor_msg.clone());
                });
                continue;
            }
            let Some(adaptor) = adaptor else { continue };
            match self.running.get_mut(&key) {
                Some(r) => {
                    if r.link.spec != link.spec || r.link.metadata.uid != link.metadata.uid {
                        r.link = link.clone();
                        r.handle.send(Command::Update(link, vec![]));
                    }
                    if r.digest != adaptor.digest {
                        r.digest = adaptor.digest.clone();
                        r.handle.send(Command::Swap(adaptor));
                    }
                }
                None => {
                    self.ctx.board.update(&key, init, |r| {
                        r.conditions.succeed(ConditionType::NodeExisted, &stamp);
                        r.conditions.succeed(ConditionType::ModelExisted, &stamp);
                    });
                    let handle = supervisor::spawn(
                        self.ctx.clone(),
                        link.clone(),
                        adaptor.clone(),
                        Vec::new(),
                    );
                    self.running.insert(
                        key,
                        Running {
                            link,
                            digest: adaptor.digest.clone(),
                            handle,
                        },
                    );
                }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The folder's `*.wasm` and `*.yaml`/`*.yml` files with their signatures, sorted.
fn list(dir: &Path) -> std::io::Result<(Listing, Listing)> {
    let mut wasm = Vec::new();
    let mut yaml = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let sig = (meta.modified().ok(), meta.len());
        match path.extension().and_then(|e| e.to_str()) {
            Some("wasm") => wasm.push((path, sig)),
            Some("yaml" | "yml") => yaml.push((path, sig)),
            _ => {}
        }
    }
    wasm.sort();
    yaml.sort();
    Ok((wasm, yaml))
}
