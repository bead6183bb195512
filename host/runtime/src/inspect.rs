//! Reads a component without compiling it: its manifest, imports and exports,
//! and whether a plugin may have those imports.

use wasmparser::{Parser, Payload};

use crate::error::LoadFailure;
use crate::manifest::{Manifest, SECTION};

/// The WIT package version this host implements.
pub const WORLD_VERSION: &str = "0.1.0";

/// What a component says about itself.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The embedded manifest.
    pub manifest: Manifest,
    /// Top-level import names, e.g. `slipway:plugin/host@0.1.0`.
    pub imports: Vec<String>,
    /// Top-level export names, e.g. `slipway:plugin/node@0.1.0`.
    pub exports: Vec<String>,
}

impl Inspection {
    /// The version of the `slipway:plugin` package the component exports.
    pub fn world_version(&self) -> Option<&str> {
        let prefix = format!("{}@", self.manifest.kind.export());
        self.exports.iter().find_map(|e| e.strip_prefix(&prefix))
    }
}

/// Reads the manifest, imports and exports and applies the import policy.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, (Option<String>, LoadFailure)> {
    if !bytes.starts_with(b"\0asm") {
        return Err((None, LoadFailure::NotWasm));
    }
    if !Parser::is_component(bytes) {
        return Err((None, LoadFailure::NotComponent));
    }
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut manifests = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| (None, LoadFailure::Invalid(e.to_string())))?;
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| (None, LoadFailure::Invalid(e.to_string())))?;
                    imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| (None, LoadFailure::Invalid(e.to_string())))?;
                    exports.push(export.name.name.to_string());
                }
            }
            Payload::CustomSection(section) if section.name() == SECTION => {
                manifests.push(section.data().to_vec());
            }
            _ => {}
        }
    }
    let text = match manifests.as_slice() {
        [] => return Err((None, LoadFailure::NoManifest)),
        [one] => String::from_utf8(one.clone()).map_err(|_| {
            (
                None,
                LoadFailure::Manifest(crate::manifest::ManifestError::from_text(
                    "the manifest is not UTF-8",
                )),
            )
        })?,
        _ => return Err((None, LoadFailure::ManyManifests)),
    };
    let manifest = Manifest::parse(&text).map_err(|e| (None, e.into()))?;
    let id = Some(manifest.id());
    for import in &imports {
        if let Some(reason) = refusal(import) {
            return Err((
                id,
                LoadFailure::ForbiddenImport {
                    import: import.clone(),
                    reason,
                },
            ));
        }
    }
    let expected = format!("{}@{WORLD_VERSION}", manifest.kind.export());
    if !exports.contains(&expected) {
        let found = if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        };
        let kind = manifest.kind;
        return Err((
            id,
            LoadFailure::WrongWorld {
                kind,
                expected,
                found,
            },
        ));
    }
    Ok(Inspection {
        manifest,
        imports,
        exports,
    })
}

/// Interfaces a plugin may import: the Slipway host imports, plus the WASI
/// pieces Rust's standard library links (stdio goes to the host log; the
/// environment is empty; clocks and randomness are harmless).
const ALLOWED: &[&str] = &[
    "slipway:plugin/types",
    "slipway:plugin/host",
    "slipway:plugin/http",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// Why an import is refused, or `None` when it is allowed.
pub fn refusal(import: &str) -> Option<&'static str> {
    let (interface, version) = import.split_once('@').unwrap_or((import, ""));
    if interface.starts_with("slipway:plugin/") && version != WORLD_VERSION {
        return Some("this host implements slipway:plugin@0.1.0 only");
    }
    if ALLOWED.contains(&interface) {
        return None;
    }
    Some(if interface.starts_with("wasi:filesystem/") {
        "plugins get no filesystem access"
    } else if interface.starts_with("wasi:sockets/") {
        "plugins get no sockets: use slipway:plugin/http"
    } else if interface.starts_with("wasi:http/") {
        "plugins make HTTP calls through slipway:plugin/http"
    } else {
        "not an interface this host offers plugins"
    })
}

/// Why a manifest could not be added to a component.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The manifest does not parse or check.
    #[error("invalid manifest: {0}")]
    Manifest(#[from] crate::manifest::ManifestError),
    /// The bytes are not a component.
    #[error("{0}")]
    NotComponent(LoadFailure),
    /// There is a manifest already.
    #[error("the component already has a `slipway:manifest` section")]
    AlreadyPacked,
}

/// Adds a manifest (TOML) to a component built without the SDK, as a
/// top-level `slipway:manifest` custom section.
pub fn pack(wasm: &[u8], manifest: &str) -> Result<Vec<u8>, PackError> {
    Manifest::parse(manifest)?;
    if !wasm.starts_with(b"\0asm") {
        return Err(PackError::NotComponent(LoadFailure::NotWasm));
    }
    if !Parser::is_component(wasm) {
        return Err(PackError::NotComponent(LoadFailure::NotComponent));
    }
    for payload in Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::CustomSection(s)) if s.name() == SECTION => {
                return Err(PackError::AlreadyPacked);
            }
            Ok(_) => {}
            Err(e) => return Err(PackError::NotComponent(LoadFailure::Invalid(e.to_string()))),
        }
    }
    let mut payload = Vec::new();
    leb128(&mut payload, SECTION.len());
    payload.extend_from_slice(SECTION.as_bytes());
    payload.extend_from_slice(manifest.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    leb128(&mut out, payload.len());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
