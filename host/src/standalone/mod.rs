//! Standalone mode: adaptors (`*.wasm`) and DeviceLinks (`*.yaml`) from one folder, no
//! cluster. The folder is rescanned on an interval; new, changed and removed files take
//! effect without a restart, and a file that fails to load leaves the last good state.

pub mod output;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crds::DeviceLink;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::adaptors::{self, Adaptor, CompileCache};
use crate::fleet::{Block, Fleet, Observed, Offer, Version};
use crate::status::{AdaptorReport, DeviceReport, Event, EventType};
use crate::supervisor::Context;

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

pub struct Standalone {
    ctx: Arc<Context>,
    cache: Arc<CompileCache>,
    dir: PathBuf,
    node: Option<String>,
    adaptor_files: HashMap<PathBuf, AdaptorFile>,
    adaptors: HashMap<String, Arc<Adaptor>>,
    link_files: BTreeMap<PathBuf, LinkFile>,
    fleet: Fleet,
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
            fleet: Fleet::new(ctx.clone()),
            ctx,
            cache,
            dir,
            node,
            adaptor_files: HashMap::new(),
            adaptors: HashMap::new(),
            link_files: BTreeMap::new(),
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
        self.fleet.stop_all().await;
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
        self.ctx.metrics.set_devices(self.fleet.len());
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
                    for key in self.fleet.using(name) {
                        let ev = Event::new(
                            EventType::Warning,
                            "AdaptorRefused",
                            &format!("{source}: {msg}"),
                        );
                        self.ctx.board.modify(key, |d| d.record(ev));
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

    /// Observes every link of the folder and hands it to the fleet; links no file
    /// holds any more are gone.
    async fn reconcile(&mut self) {
        let desired = self.desired();
        let stale: Vec<String> = self
            .fleet
            .keys()
            .cloned()
            .chain(self.ctx.board.devices().iter().map(DeviceReport::key))
            .filter(|k| !desired.contains_key(k))
            .collect();
        for key in stale {
            self.fleet.apply(&key, Observed::Gone);
        }
        for (key, link) in desired {
            let observed = observe(link, &self.adaptors, self.loading.len());
            self.fleet.apply(&key, observed);
        }
    }
}

/// What the folder says of one link: invalid, or wanted with the adaptors loaded (by
/// name) and `loading` loads still running.
fn observe<A: Version>(
    link: Arc<DeviceLink>,
    adaptors: &HashMap<String, Arc<A>>,
    loading: usize,
) -> Observed<A> {
    let problems = crds::validate::device_link(&link);
    if !problems.is_empty() {
        return Observed::Blocked {
            link,
            block: Block {
                stage: None,
                message: problems.join("; "),
            },
        };
    }
    let (api_version, kind) = (&link.spec.model.api_version, &link.spec.model.kind);
    let offer = Offer {
        named: adaptors.get(&link.spec.adaptor.name).cloned(),
        model_known: adaptors.values().any(|a| a.serves(api_version, kind)),
        refusal: None,
        loading,
    };
    Observed::Wanted {
        link,
        references: Vec::new(),
        offer,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::testing::{DUMMY, fake, link};
    use crate::fleet::{Action, decide};
    use crds::ConditionType;

    /// Standalone mode honours `spec.adaptor.digest` as cluster mode does: a pinned
    /// link runs only on the version with that digest.
    #[test]
    fn a_pinned_digest_picks_the_version() {
        let adaptors = HashMap::from([(DUMMY.to_owned(), fake("d1"))]);
        let cases = [
            (None, 0, "start"),
            (Some("sha256:d1"), 0, "start"),
            (Some("sha256:d0"), 0, "refused at AdaptorExisted"),
            (Some("sha256:d0"), 1, "wait"),
        ];
        for (pin, loading, want) in cases {
            let observed = observe(
                Arc::new(link("DummySpecialDevice", "slow", pin, "u1")),
                &adaptors,
                loading,
            );
            let got = match decide(&observed, None) {
                Action::Start(a) if a.digest == "d1" => "start",
                Action::Refuse(b) if b.stage == Some(ConditionType::AdaptorExisted) => {
                    "refused at AdaptorExisted"
                }
                Action::Wait(_) => "wait",
                other => panic!("{pin:?}: unexpected {other:?}"),
            };
            assert_eq!(got, want, "pin {pin:?} with {loading} load(s) running");
        }
    }

    #[test]
    fn a_model_no_adaptor_serves_is_refused_at_model_existed() {
        let adaptors = HashMap::from([(DUMMY.to_owned(), fake("d1"))]);
        let observed = observe(
            Arc::new(link("RegisterDevice", "slow", None, "u1")),
            &adaptors,
            0,
        );
        let Action::Refuse(b) = decide(&observed, None) else {
            panic!("not refused");
        };
        assert_eq!(b.stage, Some(ConditionType::ModelExisted));
    }
}
