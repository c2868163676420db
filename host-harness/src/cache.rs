//! An on-disk cache of compiled components, so a restart does not compile
//! again. Entries are keyed by the component's SHA-256 and the engine's
//! compatibility hash, and carry a SHA-256 of their own bytes that is
//! checked before the file is used: a stale or corrupt entry is rebuilt,
//! never trusted (it holds machine code).
//!
//! The digest proves the file is whole, not who wrote it. On Unix the cache
//! is therefore used only in a directory that belongs to the process's user
//! and that nobody else may write to (otherwise the component is compiled
//! and the cache left alone), entries are written readable and writable by
//! that user only, and an entry others may write to is replaced unread.

use std::hash::{Hash, Hasher};
use std::io::Write;
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
    /// An entry existed but failed verification, or another user could
    /// have written to it; compiled and replaced.
    Rebuilt,
    /// The cache directory could not be created, belongs to another user,
    /// or others may write to it, so it was neither read nor written:
    /// compiled.
    Untrusted,
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
    if !private_dir(dir) {
        tracing::warn!(
            target: "connector_host::cache",
            "not using {}: it must belong to this user and be writable by no one else",
            dir.display()
        );
        return Ok((Component::new(engine, component)?, CacheStatus::Untrusted));
    }
    let path = entry_path(dir, engine, component);
    let entry = std::fs::symlink_metadata(&path);
    let existed = entry.is_ok();
    // An entry others may write to is replaced, not read: the directory is
    // this user's alone, so the new file cannot be swapped again.
    if entry.is_ok_and(owner_only_writes)
        && let Some(serialized) = read_verified(&path)
    {
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
    store(&path, &serialized);
    Ok((
        loaded,
        if existed {
            CacheStatus::Rebuilt
        } else {
            CacheStatus::Miss
        },
    ))
}

/// Creates `dir` if needed (private to this user), and tells whether it
/// belongs to this user and no one else may write to it.
fn private_dir(dir: &Path) -> bool {
    let mut create = std::fs::DirBuilder::new();
    create.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut create, 0o700);
    if let Err(e) = create.create(dir) {
        tracing::warn!(target: "connector_host::cache", "cannot create {}: {e}", dir.display());
        return false;
    }
    // Followed if a link: an embedder may point the cache elsewhere.
    std::fs::metadata(dir).is_ok_and(owner_only_writes)
}

/// Whether a file with `meta` belongs to this process's user and is not
/// writable by its group or others. A symbolic link never is (its mode is
/// 0777). Always true off Unix, where this is not checked.
#[cfg(unix)]
fn owner_only_writes(meta: std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let user = unsafe { libc::geteuid() };
    meta.uid() == user && meta.mode() & 0o022 == 0
}

#[cfg(not(unix))]
fn owner_only_writes(_: std::fs::Metadata) -> bool {
    true
}

fn read_verified(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::read(path).ok()?;
    let rest = file.strip_prefix(MAGIC.as_slice())?;
    let (digest, body) = rest.split_at_checked(32)?;
    (Sha256::digest(body).as_slice() == digest).then(|| body.to_vec())
}

/// Best effort: a cache that cannot be written only costs a compile.
fn store(path: &Path, serialized: &[u8]) {
    let write = || -> std::io::Result<()> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
        let mut file = file.open(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&Sha256::digest(serialized))?;
        file.write_all(serialized)?;
        drop(file);
        std::fs::rename(tmp, path)
    };
    if let Err(e) = write() {
        tracing::warn!(target: "connector_host::cache", "cannot write {}: {e}", path.display());
    }
}
