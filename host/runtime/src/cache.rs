//! The compiled-code cache: native code for each component, on disk, keyed by
//! the component's sha256 and the engine's compatibility hash, so a restart
//! loads plugins without compiling them again. Only files this cache wrote are
//! ever deserialized.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of `<sha256>-<engine hash>.cwasm` files.
#[derive(Debug, Clone)]
pub(crate) struct CodeCache {
    dir: PathBuf,
    engine_hash: String,
}

/// Where compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSource {
    /// Read from the cache.
    Cached,
    /// Compiled now (and written to the cache when there is one).
    Compiled,
}

impl CodeCache {
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(CodeCache {
            dir: dir.to_path_buf(),
            engine_hash: engine_hash(engine),
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{}.cwasm", self.engine_hash))
    }

    /// Loads cached code, or compiles and caches it.
    pub fn load(
        &self,
        engine: &Engine,
        sha256: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CodeSource)> {
        let path = self.path(sha256);
        if path.exists() {
            // SAFETY: the file was written by `store` below from
            // `Engine::precompile_component`, under a name that binds it to
            // this engine's compatibility hash; wasmtime checks its header again.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CodeSource::Cached)),
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "discarding unusable cached code");
                }
            }
        }
        let code = engine.precompile_component(wasm)?;
        if let Err(err) = self.store(&path, &code) {
            tracing::warn!(path = %path.display(), error = %err, "cannot write the code cache");
        }
        // SAFETY: `code` was produced by this engine just now.
        let component = unsafe { Component::deserialize(engine, &code)? };
        Ok((component, CodeSource::Compiled))
    }

    /// Writes atomically: a reader sees the whole file or none.
    fn store(&self, path: &Path, code: &[u8]) -> std::io::Result<()> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
        std::fs::write(&tmp, code)?;
        std::fs::rename(&tmp, path)
    }
}

/// A short stable name for the engine's compatibility (version, target, settings).
pub(crate) fn engine_hash(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
