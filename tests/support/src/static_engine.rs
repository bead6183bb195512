//! The engine built statically (musl), as release images hold it; shared by
//! the tests that need it. It is built with the `engine-test` profile: the
//! `engine` profile's settings without LTO, so an edit to the engine costs
//! seconds here rather than minutes.
//!
//! Needs the `x86_64-unknown-linux-musl` target (added with rustup here) and
//! a musl C compiler (Debian: `musl-tools`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const TARGET: &str = "x86_64-unknown-linux-musl";
const PROFILE: &str = "engine-test";

/// Builds `slipway-engine` once per test binary, in a target directory of its
/// own under `scratch`, the tests' scratch space (`CARGO_TARGET_TMPDIR`; the
/// outer build holds the usual target directory).
pub fn static_engine(scratch: impl AsRef<Path>) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let target_dir = scratch.as_ref().join("musl");
            let _ = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status();
            let mut command = Command::new(env!("CARGO"));
            // Only what a build needs: what cargo set for this test (its
            // package, its library path, ...) differs between test binaries
            // and would make each one rebuild the engine.
            command.env_clear();
            for name in [
                "PATH",
                "HOME",
                "TMPDIR",
                "CARGO_HOME",
                "RUSTUP_HOME",
                "RUSTUP_TOOLCHAIN",
            ] {
                if let Some(value) = std::env::var_os(name) {
                    command.env(name, value);
                }
            }
            let status = command
                .current_dir(&root)
                .args([
                    "build",
                    "--locked",
                    "-p",
                    "slipway-engine",
                    "--bin",
                    "slipway-engine",
                ])
                .args(["--profile", PROFILE, "--target", TARGET])
                .arg("--target-dir")
                .arg(&target_dir)
                .status()
                .unwrap();
            assert!(status.success(), "the static engine build failed");
            target_dir.join(TARGET).join(PROFILE).join("slipway-engine")
        })
        .clone()
}

/// The directory holding the workspace's `Cargo.lock`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").exists())
        .expect("inside the workspace")
        .to_path_buf()
}
