//! Compilation: a packaged flow becomes an OCI image, built in-process with
//! no Docker daemon.
//!
//! Three layers, from the least to the most often changed, so a registry
//! holds the first two once for many releases:
//!
//! 1. the engine binary (`/slipway-engine`) and CA certificates;
//! 2. the node-type components and their code compiled ahead of time by that
//!    engine (`/bundle/plugins`, `/bundle/code`);
//! 3. the flow document (`/bundle/flow.json`).
//!
//! Images are reproducible: the same flow, components and engine give the
//! same digest. Every time in them is `SOURCE_DATE_EPOCH` (0 when unset).
//!
//! What needs a Dockerfile is built by a Docker Engine instead ([`docker`],
//! from a [`context::BuildContext`]).

pub mod context;
pub mod docker;
pub mod engine;
pub mod sandbox;
mod spec;
pub mod user_code;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use slipway_flow::{FlowDocument, PluginRef};
use tokio::sync::{Mutex, OnceCell};

pub use slipway_oci::digest;
pub use slipway_oci::layer::{self, Layer};
pub use spec::{Image, ImageMeta, PORT};

/// What each layer holds, bottom first.
pub const LAYER_CONTENTS: [&str; 3] = [
    "engine and CA certificates",
    "components and compiled code",
    "flow document",
];

/// Compiled-code layers kept in memory; beyond this many the oldest go.
const CODE_LAYERS_KEPT: usize = 64;

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// No engine binary is configured and none was found.
    #[error(
        "no static engine binary: build one with `cargo build -p slipway-engine --profile engine \
         --target x86_64-unknown-linux-musl`, or set `engine-binary` in the configuration"
    )]
    NoEngine,
    /// The engine binary cannot go into an image.
    #[error("the engine binary {path} cannot be used: {problem}")]
    Engine {
        /// Where it is.
        path: PathBuf,
        /// Why not.
        problem: String,
    },
    /// A component the flow names is not available.
    #[error("the component of {0} is no longer stored")]
    MissingComponent(String),
    /// Compiling the components ahead of time failed.
    #[error("compiling the components ahead of time failed: {0}")]
    Precompile(String),
    /// The work directory could not be used.
    #[error("cannot prepare the build directory: {0}")]
    Io(#[from] std::io::Error),
}

/// The engine binary and its layer, for one version of the file on disk.
struct EngineLayer {
    stamp: Stamp,
    binary: engine::EngineBinary,
    layer: Arc<Layer>,
}

/// A file's identity cheap enough to check on every build.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(path: &Path) -> Result<Stamp, CompileError> {
        let meta = std::fs::metadata(path).map_err(|e| CompileError::Engine {
            path: path.to_path_buf(),
            problem: format!("cannot read it: {e}"),
        })?;
        Ok(Stamp {
            path: path.to_path_buf(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// Builds images, keeping the layers that do not change between releases.
pub struct Compiler {
    engine_path: Option<PathBuf>,
    ca_certificates: Option<PathBuf>,
    work_dir: PathBuf,
    epoch: u64,
    engine: Mutex<Option<Arc<EngineLayer>>>,
    code: Mutex<HashMap<String, Arc<OnceCell<Arc<Layer>>>>>,
}

/// Where a compiler finds its inputs.
#[derive(Debug, Clone, Default)]
pub struct CompilerConfig {
    /// The static engine binary; found beside the server when `None`.
    pub engine_binary: Option<PathBuf>,
    /// A CA bundle copied to `/etc/ssl/certs/ca-certificates.crt`, if any.
    pub ca_certificates: Option<PathBuf>,
    /// Scratch space for compiling ahead of time.
    pub work_dir: PathBuf,
    /// Seconds since the epoch for every time in the image.
    pub epoch: u64,
}

impl Compiler {
    /// A compiler; nothing is read until the first build.
    pub fn new(config: CompilerConfig) -> Compiler {
        Compiler {
            engine_path: config.engine_binary,
            ca_certificates: config.ca_certificates,
            work_dir: config.work_dir,
            epoch: config.epoch,
            engine: Mutex::new(None),
            code: Mutex::new(HashMap::new()),
        }
    }

    /// Builds the image of `flow`; `component` gives each plugin's bytes.
    pub async fn compile(
        &self,
        flow: &FlowDocument,
        component: impl Fn(&PluginRef) -> Option<Arc<[u8]>>,
        meta: &ImageMeta,
    ) -> Result<Image, CompileError> {
        let engine = self.engine().await?;
        let code = self.code_layer(&engine, flow, component).await?;
        let flow_json = serde_json::to_vec_pretty(flow).expect("flow documents serialize");
        let epoch = self.epoch;
        let flow_layer = tokio::task::spawn_blocking(move || {
            let mut files = layer::Files::default();
            files.add("bundle/flow.json", 0o644, flow_json);
            files.layer(epoch)
        })
        .await
        .expect("layer task");
        Ok(spec::image(
            [engine.layer.clone(), code, Arc::new(flow_layer)],
            meta,
            self.epoch,
        ))
    }

    /// The engine layer, rebuilt only when the binary on disk changes.
    async fn engine(&self) -> Result<Arc<EngineLayer>, CompileError> {
        let path = engine::locate(self.engine_path.as_deref())?;
        let stamp = Stamp::of(&path)?;
        let mut cached = self.engine.lock().await;
        if let Some(engine) = cached.as_ref().filter(|e| e.stamp == stamp) {
            return Ok(engine.clone());
        }
        let ca = self.ca_certificates.clone();
        let epoch = self.epoch;
        let built = tokio::task::spawn_blocking(move || {
            let binary = engine::read(&path)?;
            let mut files = layer::Files::default();
            files.add("slipway-engine", 0o755, binary.bytes.clone());
            if let Some(ca) = ca {
                files.add(
                    "etc/ssl/certs/ca-certificates.crt",
                    0o644,
                    std::fs::read(ca)?,
                );
            }
            let layer = Arc::new(files.layer(epoch));
            Ok::<_, CompileError>(EngineLayer {
                stamp,
                binary,
                layer,
            })
        })
        .await
        .expect("layer task")?;
        tracing::info!(engine = %built.binary.path.display(), digest = %built.binary.digest, "engine layer built");
        let built = Arc::new(built);
        *cached = Some(built.clone());
        Ok(built)
    }

    /// The components and their compiled code, built once per engine and
    /// set of components.
    async fn code_layer(
        &self,
        engine: &EngineLayer,
        flow: &FlowDocument,
        component: impl Fn(&PluginRef) -> Option<Arc<[u8]>>,
    ) -> Result<Arc<Layer>, CompileError> {
        let mut plugins: Vec<&PluginRef> = flow.plugins.iter().collect();
        plugins.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        let key = std::iter::once(engine.binary.digest.as_str())
            .chain(plugins.iter().map(|p| p.sha256.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let cell = {
            let mut cells = self.code.lock().await;
            if cells.len() >= CODE_LAYERS_KEPT && !cells.contains_key(&key) {
                cells.clear();
            }
            cells.entry(key).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            let mut components = Vec::new();
            for plugin in &plugins {
                let id = format!("{}@{}", plugin.name, plugin.version);
                let bytes = component(plugin).ok_or(CompileError::MissingComponent(id.clone()))?;
                components.push((id, bytes));
            }
            self.precompiled(engine, flow, components)
                .await
                .map(Arc::new)
        })
        .await
        .cloned()
    }

    async fn precompiled(
        &self,
        engine: &EngineLayer,
        flow: &FlowDocument,
        components: Vec<(String, Arc<[u8]>)>,
    ) -> Result<Layer, CompileError> {
        std::fs::create_dir_all(&self.work_dir)?;
        let dir = tempfile::TempDir::new_in(&self.work_dir)?;
        let plugins_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins_dir)?;
        std::fs::write(
            dir.path().join("flow.json"),
            serde_json::to_vec(flow).expect("serializes"),
        )?;
        let mut files = layer::Files::default();
        for (id, bytes) in components {
            std::fs::write(plugins_dir.join(format!("{id}.wasm")), &bytes)?;
            files.add(format!("bundle/plugins/{id}.wasm"), 0o644, bytes);
        }
        engine::precompile(&engine.binary.path, dir.path()).await?;
        for entry in std::fs::read_dir(dir.path().join("code"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            files.add(
                format!("bundle/code/{name}"),
                0o644,
                std::fs::read(entry.path())?,
            );
        }
        let epoch = self.epoch;
        Ok(tokio::task::spawn_blocking(move || files.layer(epoch))
            .await
            .expect("layer task"))
    }
}

/// `SOURCE_DATE_EPOCH` when set and valid, else 0.
pub fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
