//! Builds the connector component for `wasm32-wasip2` so the host can embed
//! it. The nested cargo uses its own target directory, which avoids waiting on
//! the outer build's lock (the wasmtime test-programs way).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    // `<target>/<profile>/build/<pkg>-<hash>/out` → `<target>/component`: one
    // guest build cache shared by every profile and by clippy, so the
    // component is compiled once, not once per build-script hash.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map_or_else(|| out_dir.join("component-target"), |t| t.join("component"));

    for path in [
        ".cargo",
        "src",
        "wit",
        "tests/hostile",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--package=sentinelone-connector",
            "--package=hostile-connector",
            "--lib",
            "--target=wasm32-wasip2",
            "--profile=component",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        // Flags meant for the host build (and clippy's wrapper) must not leak
        // into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .status()
        .expect("failed to run cargo for the wasm32-wasip2 component");
    assert!(
        status.success(),
        "building the connector component failed; is the target installed? \
         Run: rustup target add wasm32-wasip2"
    );

    for name in ["sentinelone_connector.wasm", "hostile_connector.wasm"] {
        let built = target_dir.join("wasm32-wasip2/component").join(name);
        std::fs::copy(&built, out_dir.join(name)).expect("copying a built component");
    }
}
