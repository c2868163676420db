//! An on-disk cache of compiled components, so a restart does not compile
//! again. Entries are keyed by the component's SHA-256 and the engine's
//! compatibility hash, and carry a SHA-256 of their own bytes that is
//! checked before the file is used: a stale or corrupt entry is rebuilt,
//! never trusted (it holds machine code).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// No cache directory was configured: compiled.
    Disabled,
    /// Loaded from a verified cache entry.
    Hit,
    /// Compiled, and stored for next time (there was no usable entry).
    Miss,
    /// An entry existed but failed verification; compiled and replaced.
    Rebuilt,
}

/// Magic, then the SHA-256 of the serialized component, then the bytes.
const MAGIC: &[u8; 8] = b"S1CWASM1";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn entry_path(dir: &Path, engine: &Engine, component: &[u8]) -> PathBuf {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let key = format!(
        "{}-{:016x}-{}",
        hex(&Sha256::digest(component)),
        engine_hash.finish(),
        env!("CARGO_PKG_VERSION")
    );
    dir.join(format!("{key}.cwasm"))
}

/// Loads `component` through the cache in `dir`, compiling when needed.
pub(crate) fn load(
    dir: &Path,
    engine: &Engine,
    component: &[u8],
) -> wasmtime::Result<(Component, CacheStatus)> {
    let path = entry_path(dir, engine, component);
    let existed = path.exists();
    if let Some(serialized) = read_verified(&path) {
        // SAFETY: the bytes were produced by `Engine::precompile_component`
        // for an engine with the same compatibility hash (part of the key),
        // and their SHA-256 matches the one written with them.
        if let Ok(loaded) = unsafe { Component::deserialize(engine, &serialized) } {
            return Ok((loaded, CacheStatus::Hit));
        }
    }
    let serialized = engine.precompile_component(component)?;
    // SAFETY: produced just now by this engine.
    let loaded = unsafe { Component::deserialize(engine, &serialized) }?;
    store(dir, &path, &serialized);
    Ok((
        loaded,
        if existed {
            CacheStatus::Rebuilt
        } else {
            CacheStatus::Miss
        },
    ))
}

fn read_verified(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::read(path).ok()?;
    let rest = file.strip_prefix(MAGIC.as_slice())?;
    let (digest, body) = rest.split_at_checked(32)?;
    (Sha256::digest(body).as_slice() == digest).then(|| body.to_vec())
}

/// Best effort: a cache that cannot be written only costs a compile.
fn store(dir: &Path, path: &Path, serialized: &[u8]) {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut bytes = Vec::with_capacity(serialized.len() + 40);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&Sha256::digest(serialized));
        bytes.extend_from_slice(serialized);
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(tmp, path)
    };
    if let Err(e) = write() {
        tracing::warn!(target: "connector_host::cache", "cannot write {}: {e}", path.display());
    }
}
