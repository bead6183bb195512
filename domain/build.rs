//! Embeds the plugin SDK, the WIT contracts and the lock file, so the server
//! can compile user code (`rust-code` nodes) against the same SDK plugin
//! authors use, wherever it runs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("..").canonicalize().unwrap();
    let mut files = Vec::new();
    for dir in ["plugins/sdk/src", "wit"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
        println!("cargo::rerun-if-changed={}", root.join(dir).display());
    }
    files.push(root.join("plugins/sdk/Cargo.toml"));
    files.sort();

    let mut out = String::from(
        "/// The vendored SDK tree: `(path, contents)`.\npub const FILES: &[(&str, &str)] = &[\n",
    );
    for path in &files {
        let relative = path.strip_prefix(&root).unwrap().display().to_string();
        writeln!(
            out,
            "    ({relative:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
        println!("cargo::rerun-if-changed={}", path.display());
    }
    out.push_str("];\n");
    writeln!(
        out,
        "/// The vendored tree's workspace manifest.\npub const WORKSPACE_MANIFEST: &str = {:?};",
        workspace_manifest(&root)
    )
    .unwrap();
    let lock = root.join("Cargo.lock");
    writeln!(
        out,
        "/// The project's lock file: user code builds with the same dependency versions.\npub const LOCK: &str = include_str!({:?});",
        lock.display().to_string()
    )
    .unwrap();
    println!("cargo::rerun-if-changed={}", lock.display());
    println!(
        "cargo::rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out_dir.join("vendored_sdk.rs"), out).unwrap();
}

/// A workspace holding only the SDK: the project's package fields, lints and
/// the versions of the dependencies the SDK uses.
fn workspace_manifest(root: &Path) -> String {
    let read =
        |path: &Path| -> toml::Table { std::fs::read_to_string(path).unwrap().parse().unwrap() };
    let project = read(&root.join("Cargo.toml"));
    let sdk = read(&root.join("plugins/sdk/Cargo.toml"));
    let workspace = project["workspace"].as_table().unwrap();
    let all = workspace["dependencies"].as_table().unwrap();
    let used: toml::Table = sdk["dependencies"]
        .as_table()
        .unwrap()
        .keys()
        .map(|name| (name.clone(), all[name].clone()))
        .collect();
    let mut vendored = toml::Table::new();
    vendored.insert("resolver".into(), "3".into());
    vendored.insert("members".into(), vec!["plugins/sdk"].into());
    vendored.insert("package".into(), workspace["package"].clone());
    vendored.insert("dependencies".into(), used.into());
    vendored.insert("lints".into(), workspace["lints"].clone());
    let mut manifest = toml::Table::new();
    manifest.insert("workspace".into(), vendored.into());
    toml::to_string(&manifest).unwrap()
}
