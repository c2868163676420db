//! Builds the connector component for `wasm32-wasip2` so the host can embed
//! it. The nested cargo uses its own target directory, which avoids waiting on
//! the outer build's lock (the wasmtime test-programs way). The connector's
//! core module then goes through Binaryen's `wasm-opt -Oz`, and the result is
//! written to `<target>/component/sentinelone_connector.wasm`, the file to
//! ship.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use wasm_encoder::{Component, RawSection};
use wasm_opt::{Feature, OptimizationOptions};
use wasmparser::{Parser, Payload, Validator};

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
        "token-redact",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    // The nested cargo reads it: `=2` builds the faster, larger guest the
    // README describes.
    println!("cargo:rerun-if-env-changed=CARGO_PROFILE_COMPONENT_OPT_LEVEL");

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

    let built = target_dir.join("wasm32-wasip2/component");
    let connector = std::fs::read(built.join("sentinelone_connector.wasm"))
        .expect("reading the built connector component");
    let shipped = shrink(&connector, &out_dir);
    for dir in [&out_dir, &target_dir] {
        std::fs::write(dir.join("sentinelone_connector.wasm"), &shipped)
            .expect("writing the optimised connector component");
    }
    // The hostile component's loops and recursion are its behaviour under
    // test, so it ships exactly as rustc built it.
    std::fs::copy(
        built.join("hostile_connector.wasm"),
        out_dir.join("hostile_connector.wasm"),
    )
    .expect("copying the hostile component");
}

/// `component` with its first core module (rustc's code; the others are the
/// canonical ABI's few-hundred-byte shims) optimised for size by Binaryen.
/// Imports and exports keep their names and types, so the component's other
/// sections still fit; the result is validated to prove it.
fn shrink(component: &[u8], scratch: &Path) -> Vec<u8> {
    let mut out = Component::new();
    let mut depth = 0;
    let mut replaced = false;
    for payload in Parser::new(0).parse_all(component) {
        let payload = payload.expect("parsing the built component");
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            // Sections of nested modules are copied whole with their module.
            _ if depth != 1 => {}
            Payload::ModuleSection {
                unchecked_range, ..
            } if !replaced => {
                let module = wasm_opt_oz(&component[unchecked_range], scratch);
                out.section(&RawSection {
                    id: 1,
                    data: &module,
                });
                replaced = true;
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    out.section(&RawSection {
                        id,
                        data: &component[range],
                    });
                }
            }
        }
    }
    assert!(replaced, "the built component has no core module");
    let shrunk = out.finish();
    Validator::new()
        .validate_all(&shrunk)
        .expect("the optimised component does not validate");
    shrunk
}

/// `module` through `wasm-opt -Oz`, told the features rustc's `wasm32-wasip2`
/// target uses so that it emits nothing newer than wasmtime reads.
fn wasm_opt_oz(module: &[u8], scratch: &Path) -> Vec<u8> {
    let input = scratch.join("connector-core.wasm");
    let output = scratch.join("connector-core-oz.wasm");
    std::fs::write(&input, module).expect("writing the core module for wasm-opt");
    let mut options = OptimizationOptions::new_optimize_for_size_aggressively();
    options.mvp_features_only();
    for feature in [
        Feature::BulkMemory,
        Feature::MutableGlobals,
        Feature::Multivalue,
        Feature::ReferenceTypes,
        Feature::SignExt,
        Feature::TruncSat,
    ] {
        options.enable_feature(feature);
    }
    options
        .run(&input, &output)
        .expect("wasm-opt failed on the connector's core module");
    std::fs::read(&output).expect("reading wasm-opt's output")
}
