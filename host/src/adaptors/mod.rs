//! Adaptor components: compile (through the cache), validate against our world, and
//! read the adaptor's self-description.

pub mod cache;
pub mod package;
pub mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

pub use cache::CompileCache;

use crate::bindings::{AdaptorInfo, AdaptorPre, Model, ModelInfo};
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
    #[error("compilation task failed: {0}")]
    Join(String),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Compile(_) => "compile",
            Self::Validate(_) => "validate",
            Self::Prepare(_) => "prepare",
            Self::Describe(_) | Self::NoName => "describe",
            Self::Join(_) => "internal",
        }
    }
}

/// A loaded adaptor version: compiled, validated, ready to instantiate.
pub struct Adaptor {
    pub info: AdaptorInfo,
    /// sha256 of the component bytes, hex.
    pub digest: String,
    /// Where it came from (a file path or a ConfigMap), for messages.
    pub source: String,
    pub pre: AdaptorPre<StoreState>,
    /// How long compiling (or loading from the cache) took.
    pub load_time: Duration,
    pub from_cache: bool,
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

/// sha256 of `bytes`, hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compiles (or loads from the cache), validates and describes a component. The CPU
/// work runs on the blocking pool so devices keep polling meanwhile.
pub async fn load(
    runtime: &Arc<Runtime>,
    cache: &Arc<CompileCache>,
    bytes: Vec<u8>,
    source: String,
) -> Result<Arc<Adaptor>, Error> {
    let started = Instant::now();
    let digest = digest(&bytes);
    let (component, from_cache) = {
        let runtime = runtime.clone();
        let cache = cache.clone();
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || {
            cache.load_or_compile(runtime.engine(), &digest, &bytes)
        })
        .await
        .map_err(|e| Error::Join(e.to_string()))??
    };
    finish(runtime, component, digest, source, started, from_cache).await
}

/// Validates and describes a component the caller compiled (`octopus inspect` lists its
/// imports and exports first); `digest` is the sha256 of its bytes, hex.
pub async fn load_compiled(
    runtime: &Arc<Runtime>,
    component: Component,
    digest: String,
    source: String,
) -> Result<Arc<Adaptor>, Error> {
    finish(runtime, component, digest, source, Instant::now(), false).await
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
    finish(runtime, component, digest, source, started, true)
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
) -> Result<Arc<Adaptor>, Error> {
    validate::check(runtime.engine(), &component)?;
    let pre = prepare(runtime, &component)?;
    let load_time = started.elapsed();
    let info = describe(runtime, &pre).await?;
    if info.name.trim().is_empty() {
        return Err(Error::NoName);
    }
    tracing::info!(
        adaptor = %info.name, version = %info.version, digest = %&digest[..12], %source,
        from_cache, load_ms = load_time.as_millis() as u64, "adaptor loaded"
    );
    Ok(Arc::new(Adaptor {
        info,
        digest,
        source,
        pre,
        load_time,
        from_cache,
    }))
}

fn prepare(runtime: &Runtime, component: &Component) -> Result<AdaptorPre<StoreState>, Error> {
    let pre = runtime
        .linker()
        .instantiate_pre(component)
        .map_err(|e| Error::Prepare(format!("{e:#}")))?;
    AdaptorPre::new(pre).map_err(|e| Error::Prepare(format!("{e:#}")))
}

/// Calls `describe` on a scratch instance with nothing granted.
async fn describe(runtime: &Runtime, pre: &AdaptorPre<StoreState>) -> Result<AdaptorInfo, Error> {
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
    let result = async {
        let bindings = pre.instantiate_async(&mut store).await?;
        bindings
            .octopus_adaptor_driver()
            .call_describe(&mut store)
            .await
    };
    let out = tokio::time::timeout(timeout * 2, result).await;
    match out {
        Ok(Ok(info)) => Ok(info),
        Ok(Err(e)) => Err(Error::Describe(crate::supervisor::describe_trap(
            &e,
            store.data(),
        ))),
        Err(_) => Err(Error::Describe(format!(
            "did not return within {timeout:?}"
        ))),
    }
}
