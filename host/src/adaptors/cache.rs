//! The compile cache: precompiled components on disk, keyed by the component's sha256
//! and the engine's compatibility hash, checked against a digest before every load.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::Error;
use super::compile::Pool;

/// Compiled components on disk, and the compile pool every compile in the process takes
/// a slot from (one cache serves a whole limb).
pub struct CompileCache {
    dir: Option<PathBuf>,
    pool: Pool,
}

/// Feeds `Hash` output into sha256, so the key is stable for one engine build.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl CompileCache {
    /// A cache in `dir` (created if needed); `None` compiles in memory every time.
    /// Compiles run one at a time ([`super::compile::DEFAULT_SLOTS`]).
    pub fn new(dir: Option<PathBuf>) -> Self {
        let dir = dir.and_then(|d| match std::fs::create_dir_all(&d) {
            Ok(()) => Some(d),
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "compile cache disabled: cannot create its directory");
                None
            }
        });
        Self {
            dir,
            pool: Pool::default(),
        }
    }

    /// This cache with `slots` concurrent compiles (plus the small lane) instead of one.
    pub fn with_compile_slots(mut self, slots: usize) -> Self {
        self.pool = Pool::new(slots);
        self
    }

    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn paths(&self, engine: &Engine, digest: &str) -> Option<(PathBuf, PathBuf)> {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let compat = hex::encode(h.0.finalize());
        let base = self
            .dir
            .as_ref()?
            .join(format!("{digest}-{}", &compat[..16]));
        Some((base.with_extension("cwasm"), base.with_extension("sha256")))
    }

    /// Loads the precompiled artifact for `digest`, or compiles `bytes` and stores it.
    /// A missing, corrupt or unreadable entry is rebuilt; a cache that cannot be written
    /// still returns a compiled component. Returns whether the cache was hit. Takes no
    /// compile slot and has no time bound: [`super::load`] is the way that does.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> Result<(Component, bool), Error> {
        if let Some(component) = self.lookup(engine, digest) {
            return Ok((component, true));
        }
        let compiled = self.compile(engine, digest, bytes, &|| true)?;
        compiled
            .map(|c| (c, false))
            .ok_or_else(|| Error::Join("the compile was abandoned".into()))
    }

    /// The sound artifact for `digest`, if the cache holds one; an entry that cannot be
    /// trusted is removed, so the next compile rebuilds it.
    pub fn lookup(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let (artifact, sum) = self.paths(engine, digest)?;
        match load_verified(engine, &artifact, &sum) {
            Ok(found) => found,
            Err(why) => {
                tracing::warn!(artifact = %artifact.display(), %why, "compile cache entry is corrupt; rebuilding");
                let _ = std::fs::remove_file(&artifact);
                let _ = std::fs::remove_file(&sum);
                None
            }
        }
    }

    /// Compiles `bytes` and stores the artifact. `keep` is asked once the compile is
    /// done: when it says the result is no longer wanted (its load was abandoned), the
    /// result is neither stored nor returned, so a later load compiles it again under
    /// the same bounds. A cache that cannot be written still returns the component.
    pub fn compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
        keep: &dyn Fn() -> bool,
    ) -> Result<Option<Component>, Error> {
        let Some((artifact, sum)) = self.paths(engine, digest) else {
            let component =
                Component::new(engine, bytes).map_err(|e| Error::Compile(format!("{e:#}")))?;
            return Ok(keep().then_some(component));
        };
        let serialized = engine
            .precompile_component(bytes)
            .map_err(|e| Error::Compile(format!("{e:#}")))?;
        if !keep() {
            return Ok(None);
        }
        if let Err(e) = store(&artifact, &sum, &serialized) {
            tracing::warn!(artifact = %artifact.display(), error = %e, "cannot write the compile cache; continuing without it");
            return deserialize_fresh(engine, &serialized).map(Some);
        }
        match load_verified(engine, &artifact, &sum) {
            Ok(Some(component)) => Ok(Some(component)),
            _ => deserialize_fresh(engine, &serialized).map(Some),
        }
    }
}

/// Loads an artifact this process's engine produced a moment ago, without compiling it
/// a second time.
#[allow(unsafe_code)]
fn deserialize_fresh(engine: &Engine, serialized: &[u8]) -> Result<Component, Error> {
    // SAFETY: `serialized` is the output of `Engine::precompile_component` of this very
    // engine, and it never left this process's memory.
    unsafe { Component::deserialize(engine, serialized) }
        .map_err(|e| Error::Compile(format!("{e:#}")))
}

/// Writes the artifact beside its final name and renames it into place, so a crash or a
/// full disk never leaves a half-written entry under the real name.
fn store(artifact: &Path, sum: &Path, serialized: &[u8]) -> std::io::Result<()> {
    let tmp = artifact.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::write(&tmp, serialized)
        .and_then(|()| std::fs::write(sum, hex::encode(Sha256::digest(serialized))))
        .and_then(|()| std::fs::rename(&tmp, artifact));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(sum);
    }
    written
}

impl CompileCache {
    fn good_path(&self, adaptor: &str) -> Option<PathBuf> {
        let key = hex::encode(Sha256::digest(adaptor.as_bytes()));
        Some(self.dir.as_ref()?.join("last-good").join(&key[..32]))
    }

    /// Remembers `digest` as the last version of `adaptor` that loaded and served.
    pub fn remember_good(&self, adaptor: &str, digest: &str) {
        if let Some(p) = self.good_path(adaptor) {
            let tmp = p.with_extension("tmp");
            let ok = p.parent().map(std::fs::create_dir_all).transpose().is_ok()
                && std::fs::write(&tmp, digest).is_ok()
                && std::fs::rename(&tmp, &p).is_ok();
            if !ok {
                tracing::debug!(adaptor, "cannot record the last good version");
            }
        }
    }

    /// The digest of the last version of `adaptor` that loaded here, if known.
    pub fn last_good(&self, adaptor: &str) -> Option<String> {
        let d = std::fs::read_to_string(self.good_path(adaptor)?).ok()?;
        let d = d.trim();
        (d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit())).then(|| d.to_owned())
    }

    /// The precompiled artifact for `digest`, if the cache holds a sound one.
    pub fn load_cached(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let (artifact, sum) = self.paths(engine, digest)?;
        load_verified(engine, &artifact, &sum).ok().flatten()
    }
}

/// `Ok(None)` when there is no entry; `Err` when there is one and it cannot be trusted.
fn load_verified(
    engine: &Engine,
    artifact: &Path,
    sum: &Path,
) -> Result<Option<Component>, String> {
    let Ok(expected) = std::fs::read_to_string(sum) else {
        return Ok(None);
    };
    let data = match std::fs::read(artifact) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if hex::encode(Sha256::digest(&data)) != expected.trim() {
        return Err("digest mismatch".into());
    }
    deserialize(engine, artifact).map(Some)
}

/// Maps a verified artifact.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &Path) -> Result<Component, String> {
    // SAFETY: the artifact was produced by `Engine::precompile_component` of this
    // process's engine configuration (its compatibility hash is part of the file name),
    // written by us, and its sha256 was verified against our sidecar just now.
    unsafe { Component::deserialize_file(engine, artifact) }.map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |d| d.count())
    }

    #[test]
    fn an_abandoned_compile_is_not_cached_and_a_kept_one_is() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(Some(dir.path().to_owned()));
        let bytes = wat::parse_str("(component (core module (func (export \"f\"))))").unwrap();
        let digest = super::super::digest(&bytes);
        let dropped = cache.compile(&engine, &digest, &bytes, &|| false).unwrap();
        assert!(dropped.is_none());
        assert_eq!(files(dir.path()), 0, "nothing of it is stored");
        assert!(cache.lookup(&engine, &digest).is_none());
        let kept = cache.compile(&engine, &digest, &bytes, &|| true).unwrap();
        assert!(kept.is_some());
        assert!(cache.lookup(&engine, &digest).is_some());
        let in_memory = CompileCache::new(None);
        assert!(
            in_memory
                .compile(&engine, &digest, &bytes, &|| false)
                .unwrap()
                .is_none()
        );
        assert!(
            in_memory
                .compile(&engine, &digest, &bytes, &|| true)
                .unwrap()
                .is_some()
        );
    }
}
