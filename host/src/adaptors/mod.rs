//! Adaptor components: compile (through the cache and the compile pool, within the node
//! policy's bounds), validate against our world, and read and check the adaptor's
//! self-description.

pub mod cache;
pub mod compile;
pub mod declared;
pub mod package;
mod trap;
pub mod validate;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

pub use cache::CompileCache;
pub use trap::describe_trap;

use crate::bindings::{AdaptorInfo, AdaptorPre, Model, ModelInfo};
use crate::bounds;
use crate::capabilities::policy::CompileLimits;
use crate::capabilities::{Backends, Capabilities};
use crate::engine::{DeviceTag, Runtime, StoreState};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a WebAssembly component: {0}")]
    Compile(String),
    #[error(transparent)]
    Validate(#[from] validate::Error),
    #[error("cannot prepare the component for instantiation: {0}")]
    Prepare(String),
    #[error("describe() failed: {0}")]
    Describe(String),
    #[error("the adaptor describes itself with an empty name")]
    NoName,
    #[error("the adaptor's self-description is refused: {0}")]
    Description(#[from] DescriptionError),
    #[error("component is {len} bytes, over the node policy's maxComponentBytes of {max}")]
    TooLarge { len: usize, max: usize },
    #[error(
        "compilation took longer than the node policy's compileTimeout of {}; abandoned",
        humantime::format_duration(*.0)
    )]
    CompileTimeout(Duration),
    #[error("compilation task failed: {0}")]
    Join(String),
}

/// What is wrong with a self-description. Never carries an oversized value, only its
/// field and size, so the refusal itself stays small.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    #[error(transparent)]
    TooLong(#[from] bounds::TooLong),
    #[error(transparent)]
    TooMany(#[from] bounds::TooMany),
    #[error("{what} \"{escaped}\" contains control characters")]
    Control { what: String, escaped: String },
    /// A broken `describe-models` (contract 0.1.3).
    #[error("declared models: {0}")]
    Declaration(String),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Compile(_) => "compile",
            Self::Validate(_) => "validate",
            Self::Prepare(_) => "prepare",
            Self::Describe(_) | Self::NoName | Self::Description(_) => "describe",
            Self::TooLarge { .. } => "too_large",
            Self::CompileTimeout(_) => "compile_timeout",
            Self::Join(_) => "internal",
        }
    }
}

/// A loaded adaptor version: compiled, validated, ready to instantiate.
pub struct Adaptor {
    pub info: AdaptorInfo,
    /// The schemas of the models it declares (none before contract 0.1.3).
    pub declared: Vec<crds::declared::DeclaredModel>,
    /// sha256 of the component bytes, hex.
    pub digest: String,
    /// Where it came from (a file path or a ConfigMap), for messages.
    pub source: String,
    pub pre: AdaptorPre<StoreState>,
    /// How long compiling (or loading from the cache) took.
    pub load_time: Duration,
    pub from_cache: bool,
    /// How much the process's resident memory grew while this component compiled, in
    /// bytes (process-wide, see [`compile::Cost`]); `None` when it was not compiled here
    /// or `/proc` does not say.
    pub compile_rss_growth: Option<u64>,
    /// Pushed with `--force`: takes over links whose spec its schema rejects.
    pub forced: bool,
}

impl std::fmt::Debug for Adaptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adaptor")
            .field("name", &self.info.name)
            .field("version", &self.info.version)
            .field("digest", &self.short_digest())
            .finish()
    }
}

impl std::fmt::Display for Adaptor {
    /// `name version (digest)`, as events and logs name a version.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.info.name,
            self.info.version,
            self.short_digest()
        )
    }
}

impl Adaptor {
    /// The model entry for `api_version`/`kind`, if this adaptor serves it.
    pub fn model(&self, api_version: &str, kind: &str) -> Option<&ModelInfo> {
        self.info
            .models
            .iter()
            .find(|m| m.model.api_version == api_version && m.model.kind == kind)
    }

    /// The declaration of `api_version`/`kind`, if the adaptor declares one.
    pub fn declared(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Option<&crds::declared::DeclaredModel> {
        self.declared
            .iter()
            .find(|m| m.api_version == api_version && m.kind == kind)
    }

    /// The first 12 hex digits of the digest, as shown to people.
    pub fn short_digest(&self) -> &str {
        self.digest.get(..12).unwrap_or(&self.digest)
    }

    pub fn models(&self) -> impl Iterator<Item = &Model> {
        self.info.models.iter().map(|m| &m.model)
    }

    /// How `/adaptors` and the terminal view show this version.
    pub fn report(&self) -> crate::status::AdaptorReport {
        crate::status::AdaptorReport {
            source: self.source.clone(),
            name: Some(self.info.name.clone()),
            version: Some(self.info.version.clone()),
            digest: Some(self.short_digest().to_owned()),
            models: self
                .models()
                .map(|m| format!("{}/{}", m.api_version, m.kind))
                .collect(),
            error: None,
            loaded_at: crate::status::now(),
        }
    }
}

/// `adaptor`, marked as pushed with `--force` when `force`.
pub fn forced(adaptor: Arc<Adaptor>, force: bool) -> Arc<Adaptor> {
    if !force {
        return adaptor;
    }
    match Arc::try_unwrap(adaptor) {
        Ok(mut a) => {
            a.forced = true;
            Arc::new(a)
        }
        Err(shared) => shared,
    }
}

/// sha256 of `bytes`, hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// [`load_with`] under the default compile bounds (benches, which run under no node
/// policy).
pub async fn load(
    runtime: &Arc<Runtime>,
    cache: &Arc<CompileCache>,
    bytes: Vec<u8>,
    source: String,
) -> Result<Arc<Adaptor>, Error> {
    load_with(runtime, cache, &CompileLimits::default(), bytes, source).await
}

/// Compiles (or loads from the cache), validates and describes a component within the
/// node policy's compile bounds: the size is checked before anything else, the compile
/// waits for a slot of the cache's compile pool and is abandoned past its time. The CPU
/// work runs on the blocking pool so devices keep polling meanwhile.
pub async fn load_with(
    runtime: &Arc<Runtime>,
    cache: &Arc<CompileCache>,
    limits: &CompileLimits,
    bytes: Vec<u8>,
    source: String,
) -> Result<Arc<Adaptor>, Error> {
    let started = Instant::now();
    if bytes.len() > limits.max_component_bytes {
        return Err(Error::TooLarge {
            len: bytes.len(),
            max: limits.max_component_bytes,
        });
    }
    let (digest, bytes, cached) = {
        let runtime = runtime.clone();
        let cache = cache.clone();
        tokio::task::spawn_blocking(move || {
            let digest = digest(&bytes);
            let cached = cache.lookup(runtime.engine(), &digest);
            (digest, bytes, cached)
        })
        .await
        .map_err(|e| Error::Join(e.to_string()))?
    };
    if let Some(component) = cached {
        return finish(runtime, component, digest, source, started, true, None).await;
    }
    let permit = cache
        .pool()
        .acquire(bytes.len())
        .await
        .map_err(|e| Error::Join(e.to_string()))?;
    let len = bytes.len();
    let work = {
        let runtime = runtime.clone();
        let cache = cache.clone();
        let digest = digest.clone();
        move |keep: &dyn Fn() -> bool| cache.compile(runtime.engine(), &digest, &bytes, keep)
    };
    let (compiled, cost) = match compile::run(permit, limits.compile_timeout, work).await {
        Ok(done) => done,
        Err(compile::Failed::Overrun) => {
            tracing::warn!(%source, bytes = len, timeout = ?limits.compile_timeout, "compile abandoned: it runs past the node policy's compileTimeout");
            return Err(Error::CompileTimeout(limits.compile_timeout));
        }
        Err(compile::Failed::Internal(why)) => return Err(Error::Join(why)),
    };
    tracing::info!(
        %source, bytes = len, compile_ms = cost.elapsed.as_millis() as u64,
        rss_before_mib = cost.rss_before.map(|b| b >> 20),
        rss_growth_mib = cost.rss_growth.map(|b| b >> 20),
        ok = compiled.is_ok(), "component compiled"
    );
    let component = compiled?.ok_or_else(|| Error::Join("the compile was abandoned".into()))?;
    finish(
        runtime,
        component,
        digest,
        source,
        started,
        false,
        cost.rss_growth,
    )
    .await
}

/// Validates and describes a component the caller compiled (`octopus inspect` lists its
/// imports and exports first); `digest` is the sha256 of its bytes, hex.
pub async fn load_compiled(
    runtime: &Arc<Runtime>,
    component: Component,
    digest: String,
    source: String,
) -> Result<Arc<Adaptor>, Error> {
    finish(
        runtime,
        component,
        digest,
        source,
        Instant::now(),
        false,
        None,
    )
    .await
}

/// Loads the last version of `adaptor` that loaded successfully here, from the compile
/// cache alone: what a restarted limb serves while its ConfigMap holds a broken update.
pub async fn load_last_good(
    runtime: &Arc<Runtime>,
    cache: &Arc<CompileCache>,
    adaptor: &str,
    source: String,
) -> Result<Option<Arc<Adaptor>>, Error> {
    let started = Instant::now();
    let Some(digest) = cache.last_good(adaptor) else {
        return Ok(None);
    };
    let found = {
        let runtime = runtime.clone();
        let cache = cache.clone();
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || cache.load_cached(runtime.engine(), &digest))
            .await
            .map_err(|e| Error::Join(e.to_string()))?
    };
    let Some(component) = found else {
        return Ok(None);
    };
    finish(runtime, component, digest, source, started, true, None)
        .await
        .map(Some)
}

async fn finish(
    runtime: &Arc<Runtime>,
    component: Component,
    digest: String,
    source: String,
    started: Instant,
    from_cache: bool,
    compile_rss_growth: Option<u64>,
) -> Result<Arc<Adaptor>, Error> {
    validate::check(runtime.engine(), &component)?;
    let pre = prepare(runtime, &component)?;
    let load_time = started.elapsed();
    let (info, declared) = describe(runtime, &pre).await?;
    check_description(&info)?;
    let declared = declared::check(&info, declared)?;
    tracing::info!(
        adaptor = %info.name, version = %info.version, digest = %&digest[..12], %source,
        from_cache, load_ms = load_time.as_millis() as u64, "adaptor loaded"
    );
    Ok(Arc::new(Adaptor {
        info,
        declared,
        digest,
        source,
        pre,
        load_time,
        from_cache,
        compile_rss_growth,
        forced: false,
    }))
}

/// Checks every string and list of a self-description against [`bounds`] before the
/// limb keeps it: the name and version are repeated into every device report, event and
/// log line, so an oversized or line-forging one is refused, never cut.
pub fn check_description(info: &AdaptorInfo) -> Result<(), Error> {
    if info.name.trim().is_empty() {
        return Err(Error::NoName);
    }
    let text = |what: String, value: &str, max: usize| -> Result<(), DescriptionError> {
        bounds::check(what.as_str(), value, max)?;
        match bounds::escape(value) {
            Cow::Borrowed(_) => Ok(()),
            Cow::Owned(escaped) => Err(DescriptionError::Control { what, escaped }),
        }
    };
    text("name".into(), &info.name, bounds::MAX_NAME)?;
    text("version".into(), &info.version, bounds::MAX_VERSION)?;
    bounds::check_count("models", info.models.len(), bounds::MAX_MODELS)
        .map_err(DescriptionError::from)?;
    for (i, m) in info.models.iter().enumerate() {
        let at = |field: &str| format!("models[{i}].{field}");
        text(
            at("model.api-version"),
            &m.model.api_version,
            bounds::MAX_MODEL_FIELD,
        )?;
        text(at("model.kind"), &m.model.kind, bounds::MAX_MODEL_FIELD)?;
        bounds::check_count(
            at("resource-fields"),
            m.resource_fields.len(),
            bounds::MAX_RESOURCE_FIELDS,
        )
        .map_err(DescriptionError::from)?;
        for (j, f) in m.resource_fields.iter().enumerate() {
            text(
                at(&format!("resource-fields[{j}].path")),
                &f.path,
                bounds::MAX_FIELD_PATH,
            )?;
        }
    }
    Ok(())
}

fn prepare(runtime: &Runtime, component: &Component) -> Result<AdaptorPre<StoreState>, Error> {
    let pre = runtime
        .linker()
        .instantiate_pre(component)
        .map_err(|e| Error::Prepare(format!("{e:#}")))?;
    AdaptorPre::new(pre).map_err(|e| Error::Prepare(format!("{e:#}")))
}

/// Calls `describe`, and `describe-models` when the component exports it, on a scratch
/// instance with nothing granted.
async fn describe(
    runtime: &Runtime,
    pre: &AdaptorPre<StoreState>,
) -> Result<(AdaptorInfo, Vec<declared::WitModelSchema>), Error> {
    let caps = Capabilities::none(Backends::real(true));
    let mut store = StoreState::new_store(
        runtime,
        DeviceTag("describe".into()),
        "describe",
        caps,
        None,
    );
    let timeout = runtime.settings().call_timeout;
    store.data_mut().arm(timeout);
    let models = declared::export(runtime.engine(), pre.instance_pre().component());
    let result = async {
        let instance = pre.instance_pre().instantiate_async(&mut store).await?;
        let bindings = crate::bindings::Adaptor::new(&mut store, &instance)?;
        let info = bindings
            .octopus_adaptor_driver()
            .call_describe(&mut store)
            .await?;
        let declared = match &models {
            Some(index) => {
                let f = instance
                    .get_typed_func::<(), (Vec<declared::WitModelSchema>,)>(&mut store, index)?;
                f.call_async(&mut store, ()).await?.0
            }
            None => Vec::new(),
        };
        Ok::<_, wasmtime::Error>((info, declared))
    };
    let out = tokio::time::timeout(timeout * 2, result).await;
    match out {
        Ok(Ok(info)) => Ok(info),
        Ok(Err(e)) => Err(Error::Describe(describe_trap(&e, store.data()))),
        Err(_) => Err(Error::Describe(format!(
            "did not return within {timeout:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::{ResourceField, ResourceKind};

    fn info(models: usize, fields: usize) -> AdaptorInfo {
        AdaptorInfo {
            name: "adaptors.edge.cattle.io/dummy".into(),
            version: "1.2.3".into(),
            models: (0..models)
                .map(|i| ModelInfo {
                    model: Model {
                        api_version: "devices.edge.cattle.io/v1alpha1".into(),
                        kind: format!("Kind{i}"),
                    },
                    resource_fields: (0..fields)
                        .map(|j| ResourceField {
                            path: format!("protocol.field{j}"),
                            kind: ResourceKind::Tcp,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn self_descriptions_are_checked_against_the_bounds() {
        type Case = (&'static str, AdaptorInfo, Result<(), &'static str>);
        let with = |f: &dyn Fn(&mut AdaptorInfo)| {
            let mut i = info(2, 2);
            f(&mut i);
            i
        };
        let cases: Vec<Case> = vec![
            ("ordinary", info(2, 2), Ok(())),
            ("no models", info(0, 0), Ok(())),
            ("at every list bound", info(64, 64), Ok(())),
            (
                "non-ASCII text is fine",
                with(&|i| i.version = "1.0-été".into()),
                Ok(()),
            ),
            (
                "name at its bound",
                with(&|i| i.name = "n".repeat(253)),
                Ok(()),
            ),
            (
                "empty name",
                with(&|i| i.name = " ".into()),
                Err("empty name"),
            ),
            (
                "multi-megabyte version",
                with(&|i| i.version = "9".repeat(3 << 20)),
                Err("version is 3145728 bytes long, over the limit of 128"),
            ),
            (
                "long name",
                with(&|i| i.name = "n".repeat(254)),
                Err("name is 254 bytes long, over the limit of 253"),
            ),
            (
                "too many models",
                info(65, 0),
                Err("models has 65 entries, over the limit of 64"),
            ),
            (
                "long kind",
                with(&|i| i.models[1].model.kind = "K".repeat(300)),
                Err("models[1].model.kind is 300 bytes long"),
            ),
            (
                "long api version",
                with(&|i| i.models[0].model.api_version = "a".repeat(254)),
                Err("models[0].model.api-version is 254 bytes long"),
            ),
            (
                "too many resource fields",
                info(1, 65),
                Err("models[0].resource-fields has 65 entries, over the limit of 64"),
            ),
            (
                "long field path",
                with(&|i| i.models[1].resource_fields[1].path = "p".repeat(257)),
                Err("models[1].resource-fields[1].path is 257 bytes long, over the limit of 256"),
            ),
            (
                "newline in the version forges log lines",
                with(&|i| i.version = "1.0\n2026-01-01T00:00:00Z  INFO limb: forged".into()),
                Err(
                    r#"version "1.0\n2026-01-01T00:00:00Z  INFO limb: forged" contains control characters"#,
                ),
            ),
            (
                "escape sequence in the name",
                with(&|i| i.name = "\x1b[2Jdummy".into()),
                Err("name"),
            ),
            (
                "bidi override in a kind",
                with(&|i| i.models[0].model.kind = "\u{202e}Kind".into()),
                Err("models[0].model.kind"),
            ),
            (
                "carriage return in a field path",
                with(&|i| i.models[0].resource_fields[0].path = "a\rb".into()),
                Err("models[0].resource-fields[0].path"),
            ),
        ];
        for (name, info, want) in cases {
            let got = check_description(&info);
            match want {
                Ok(()) => assert!(got.is_ok(), "{name}: {got:?}"),
                Err(needle) => {
                    let msg = got.expect_err(name).to_string();
                    assert!(msg.contains(needle), "{name}: {msg}");
                    assert!(
                        msg.len() < 512,
                        "{name}: the refusal is short: {}",
                        msg.len()
                    );
                }
            }
        }
    }
}
