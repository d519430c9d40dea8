//! The compile cache: precompiled components on disk, keyed by the component's sha256,
//! the engine's execution mode and its compatibility hash (target triple, CPU flags,
//! settings, wasmtime version), checked against a digest before every load. A cache
//! directory shared by limbs of different architectures, or by native code and Pulley,
//! keeps their artifacts apart.

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

/// The file name (without extension) of `digest`'s artifact for `engine`. The
/// compatibility hash alone already differs between targets (it covers the compiler's
/// triple); the execution mode is spelled out as well so an entry says what it is, and
/// so that native code and Pulley bytecode never meet even if the hash changed shape.
fn entry_name(engine: &Engine, digest: &str) -> String {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    let compat = hex::encode(h.0.finalize());
    let mode = crate::engine::execution_mode_of(engine).tag();
    format!("{digest}-{mode}-{}", &compat[..16])
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
        let base = self.dir.as_ref()?.join(entry_name(engine, digest));
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
    load_verified_with(engine, artifact, sum, &|p| std::fs::read(p))
}

/// [`load_verified`] reading the artifact through `read`. The bytes whose digest was
/// checked are the bytes deserialized: the file is read once, never opened again by
/// path, so one swapped in after the check is not loaded unverified.
fn load_verified_with(
    engine: &Engine,
    artifact: &Path,
    sum: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<Option<Component>, String> {
    let Ok(expected) = std::fs::read_to_string(sum) else {
        return Ok(None);
    };
    let data = match read(artifact) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if hex::encode(Sha256::digest(&data)) != expected.trim() {
        return Err("digest mismatch".into());
    }
    deserialize_verified(engine, &data).map(Some)
}

/// Loads an artifact whose bytes were just verified.
#[allow(unsafe_code)]
fn deserialize_verified(engine: &Engine, verified: &[u8]) -> Result<Component, String> {
    // SAFETY: these bytes are the ones whose sha256 matched our sidecar, written by us
    // from `Engine::precompile_component` of this engine configuration (its execution
    // mode and compatibility hash are part of the file name).
    unsafe { Component::deserialize(engine, verified) }.map_err(|e| format!("{e:#}"))
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

    fn component_exporting(name: &str) -> Vec<u8> {
        wat::parse_str(format!(
            "(component (core module $m (func (export \"run\"))) (export \"{name}\" (core module $m)))"
        ))
        .unwrap()
    }

    fn exports(engine: &Engine, c: &Component) -> Vec<String> {
        c.component_type()
            .exports(engine)
            .map(|(n, _)| n.to_owned())
            .collect()
    }

    fn engine_for(target: Option<&str>) -> Engine {
        let mut config = wasmtime::Config::new();
        if let Some(t) = target {
            config.target(t).unwrap();
        }
        Engine::new(&config).unwrap()
    }

    #[test]
    fn entries_of_different_targets_and_execution_modes_never_share_a_name() {
        let digest = "ab".repeat(32);
        let engines = [
            ("native", engine_for(None)),
            ("pulley32", engine_for(Some("pulley32"))),
            ("pulley64", engine_for(Some("pulley64"))),
        ];
        let names: Vec<(&str, String)> = engines
            .iter()
            .map(|(what, e)| (*what, entry_name(e, &digest)))
            .collect();
        for (i, (a, na)) in names.iter().enumerate() {
            for (b, nb) in &names[i + 1..] {
                assert_ne!(na, nb, "{a} and {b} would share a cache entry");
            }
        }
        assert!(
            names[0]
                .1
                .contains(&format!("-{}-", std::env::consts::ARCH)),
            "{names:?}"
        );
        // Pulley bytecode of either width is apart from native code by name, and the
        // two widths by the compatibility hash (it covers the engine's target).
        assert!(names[1].1.contains("-pulley-"), "{names:?}");
        assert!(names[2].1.contains("-pulley-"), "{names:?}");
    }

    #[test]
    fn an_entry_compiled_for_one_mode_is_not_found_by_another() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(Some(dir.path().to_owned()));
        let bytes = component_exporting("f");
        let digest = super::super::digest(&bytes);
        let native = engine_for(None);
        let pulley = engine_for(Some("pulley64"));
        let (_, hit) = cache.load_or_compile(&native, &digest, &bytes).unwrap();
        assert!(!hit);
        assert!(cache.lookup(&native, &digest).is_some());
        assert!(cache.load_cached(&pulley, &digest).is_none());
        let (c, hit) = cache.load_or_compile(&pulley, &digest, &bytes).unwrap();
        assert!(!hit, "the native entry must not serve the interpreter");
        assert!(pulley.is_pulley());
        assert_eq!(
            exports(&pulley, &c),
            exports(&native, &cache.lookup(&native, &digest).unwrap())
        );
    }

    #[test]
    fn the_verified_bytes_are_the_ones_loaded_even_if_the_file_is_swapped_after_the_check() {
        let engine = engine_for(None);
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(Some(dir.path().to_owned()));
        let f = component_exporting("f");
        let g = component_exporting("g");
        let digest = super::super::digest(&f);
        cache
            .compile(&engine, &digest, &f, &|| true)
            .unwrap()
            .unwrap();
        let (artifact, sum) = cache.paths(&engine, &digest).unwrap();
        let other = engine.precompile_component(&g).unwrap();
        // Reads the entry, then swaps another sound artifact in under its name, as a
        // writer racing the load would.
        let read_then_swap = |p: &Path| {
            let bytes = std::fs::read(p)?;
            std::fs::write(p, &other)?;
            Ok(bytes)
        };
        let loaded = load_verified_with(&engine, &artifact, &sum, &read_then_swap)
            .unwrap()
            .unwrap();
        assert_eq!(exports(&engine, &loaded), ["f"]);
        // The swapped file itself no longer matches its digest, and is refused.
        assert!(load_verified(&engine, &artifact, &sum).is_err());
    }
}
