//! Builds every plugin crate of the workspace for `wasm32-wasip2` with the
//! `plugin` profile, in a target directory of its own, installing the target
//! with rustup when it is missing. Writes `artifacts.rs` listing the results.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Built-in plugins, shipped inside the `slipway` binary: name and directory.
const BUILTIN: &[(&str, &str)] = &[
    ("http-trigger", "plugins"),
    ("http-call", "plugins"),
    ("transform", "plugins"),
    ("choice", "plugins"),
    ("log", "plugins"),
    ("rust-code", "plugins"),
    ("distribution", "registry-adapters"),
    ("harbor", "registry-adapters"),
    ("gcr", "registry-adapters"),
    ("acr", "registry-adapters"),
    ("ecr", "registry-adapters"),
    ("ocir", "registry-adapters"),
    ("docker", "deploy-targets"),
    ("kubernetes", "deploy-targets"),
];
/// Test guests: hostile and edge-case plugins for the runtime's tests.
const TEST_GUESTS: &[&str] = &[
    "hostile",
    "fs-reader",
    "wrong-world",
    "registry-fixed",
    "target-echo",
    "greeter-v1",
    "greeter-v2",
    "prober",
    "impostor",
    "registry-fixed-v2",
];
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().expect("workspace root");
    for dir in [
        "plugins",
        "registry-adapters",
        "deploy-targets",
        "tests/guests",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let target_dir = out.join("target");
    ensure_target();

    let crates: Vec<(&str, PathBuf)> = BUILTIN
        .iter()
        .map(|(name, dir)| (*name, root.join(dir).join(name)))
        .chain(
            TEST_GUESTS
                .iter()
                .map(|name| (*name, root.join("tests/guests").join(name))),
        )
        .collect();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args(["build", "--target", TARGET, "--profile", "plugin"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (_, path) in &crates {
        // A path spec: unambiguous even where a crates.io package has the same name.
        command
            .arg("-p")
            .arg(format!("path+file://{}", path.display()));
    }
    // The outer build's flags and wrappers are for the host, not for wasm.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_LLVM_COV",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("run cargo to build the plugins");
    assert!(status.success(), "building the plugins for {TARGET} failed");

    let wasm_dir = target_dir.join(TARGET).join("plugin");
    let mut code = String::new();
    code.push_str("/// Built-in plugins: name and component bytes.\n");
    code.push_str("pub const BUILTIN: &[(&str, &[u8])] = &[\n");
    for (name, _) in BUILTIN {
        let path = wasm_path(&wasm_dir, name);
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n\n/// Test guests: name and path of the component.\n");
    code.push_str("pub const TEST_GUESTS: &[(&str, &str)] = &[\n");
    for name in TEST_GUESTS {
        let path = wasm_path(&wasm_dir, name);
        code.push_str(&format!(
            "    ({name:?}, {:?}),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out.join("artifacts.rs"), code).expect("write artifacts.rs");
}

fn wasm_path(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Installs the wasm target with rustup when the toolchain lacks it.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc --print sysroot");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
    {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .expect("run rustup; install the wasm32-wasip2 target by hand if rustup is not available");
    assert!(status.success(), "rustup target add {TARGET} failed");
}
