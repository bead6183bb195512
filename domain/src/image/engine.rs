//! The flow engine baked into images: a statically linked `slipway-engine`,
//! found once and checked, and the code it compiles ahead of time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::CompileError;
use slipway_oci::digest;

/// Where `cargo build -p slipway-engine --profile engine --target
/// x86_64-unknown-linux-musl` puts the binary, relative to the directory of
/// a `slipway` built in the same target directory.
const BESIDE_BUILD: &str = "../x86_64-unknown-linux-musl/engine/slipway-engine";

/// How long compiling a flow's components ahead of time may take.
const PRECOMPILE_LIMIT: Duration = Duration::from_secs(300);

/// The engine binary's bytes and digest.
#[derive(Debug)]
pub struct EngineBinary {
    /// Where it was read from.
    pub path: PathBuf,
    /// The binary.
    pub bytes: Arc<[u8]>,
    /// `sha256:<hex>` of the binary.
    pub digest: String,
}

/// The configured engine, or the first static one found beside this
/// executable (as `slipway-engine`, or where the musl build puts it).
pub fn locate(configured: Option<&Path>) -> Result<PathBuf, CompileError> {
    if let Some(path) = configured {
        return Ok(path.to_path_buf());
    }
    let here = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    here.iter()
        .flat_map(|dir| [dir.join("slipway-engine"), dir.join(BESIDE_BUILD)])
        .find(|candidate| elf_header(candidate).is_some_and(|bytes| is_static_elf(&bytes)))
        .ok_or(CompileError::NoEngine)
}

/// The start of a file, enough for the ELF and program headers: the check
/// runs on every build, so it does not read the whole binary.
fn elf_header(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut header = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut header)
        .ok()?;
    Some(header)
}

/// Reads the engine and refuses one that cannot run in an image with
/// nothing else in it (a dynamically linked build).
pub fn read(path: &Path) -> Result<EngineBinary, CompileError> {
    let bytes = std::fs::read(path).map_err(|e| CompileError::Engine {
        path: path.to_path_buf(),
        problem: format!("cannot read it: {e}"),
    })?;
    if !is_static_elf(&bytes) {
        return Err(CompileError::Engine {
            path: path.to_path_buf(),
            problem: "it is not a statically linked x86-64 ELF executable; images hold nothing \
                      but the engine, so build it for x86_64-unknown-linux-musl"
                .into(),
        });
    }
    Ok(EngineBinary {
        path: path.to_path_buf(),
        digest: digest(&bytes),
        bytes: bytes.into(),
    })
}

/// A 64-bit little-endian x86-64 ELF executable without an interpreter
/// (`PT_INTERP`), i.e. one that needs no dynamic loader.
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    const EM_X86_64: u16 = 62;
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1]) || u16_at(18) != Some(EM_X86_64) {
        return false;
    }
    let (Some(offset), Some(size), Some(count)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return false;
    };
    (0..count as usize).all(|i| {
        let at = offset as usize + i * size as usize;
        u32_at(at).is_some_and(|kind| kind != PT_INTERP)
    })
}

/// Runs `engine precompile` on the bundle in `dir` (`flow.json`,
/// `plugins/`), leaving the compiled code in `dir/code`.
pub async fn precompile(engine: &Path, dir: &Path) -> Result<(), CompileError> {
    let mut command = tokio::process::Command::new(engine);
    command
        .args(["precompile", "--bundle"])
        .arg(dir)
        .env("SLIPWAY_LOG", "warn")
        .kill_on_drop(true);
    let output = tokio::time::timeout(PRECOMPILE_LIMIT, command.output())
        .await
        .map_err(|_| {
            CompileError::Precompile(format!(
                "did not finish within {} s",
                PRECOMPILE_LIMIT.as_secs()
            ))
        })?
        .map_err(|e| CompileError::Precompile(format!("cannot run {}: {e}", engine.display())))?;
    if output.status.success() {
        return Ok(());
    }
    // The engine logs JSON lines; its error says what went wrong.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let message = stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["level"] == "ERROR")
        .find_map(|r| r["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&output.stderr).trim().to_string());
    Err(CompileError::Precompile(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_is_not_static() {
        let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(
            !is_static_elf(&this),
            "test binaries link glibc dynamically"
        );
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(&[]));
    }
}
