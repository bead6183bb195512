//! User code: each `rust-code` node's Rust source compiled, in the
//! compiling stage, into a node-type component of its own that takes the
//! node's place in the image.
//!
//! The source is built with cargo for `wasm32-wasip2` against the SDK
//! plugin authors use (embedded in this binary), inside the sandbox of
//! [`super::sandbox`], in a work directory of its own that is removed
//! afterwards, with a time limit. The SDK's dependencies are built once per
//! SDK, from a crate of the server's own, and each build starts from a copy
//! of them: no build sees another's files. A failure carries the compiler's messages, with
//! `source:line:column` pointing into the node's source. Built components
//! are kept by the hash of their source, so a release of unchanged code
//! compiles nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use slipway_flow::{FlowDocument, PluginRef};

use super::sandbox::{Build, NoSandbox, Toolchain};

mod vendored {
    include!(concat!(env!("OUT_DIR"), "/vendored_sdk.rs"));
}

/// The node type whose nodes carry Rust source.
pub const NODE_TYPE: &str = "rust-code";
/// The plugin name compiled user code gets in the flow document.
pub const PLUGIN_NAME: &str = "user-code";
/// The compiler's messages kept in an error.
const MESSAGE_LINES: usize = 40;

/// Why a node's source did not become a component.
#[derive(Debug, thiserror::Error)]
pub enum UserCodeError {
    /// The compiler refused the source.
    #[error("the Rust source of node `{node}` does not compile:\n{message}")]
    Rejected {
        /// The node.
        node: String,
        /// The compiler's messages.
        message: String,
    },
    /// The compiler ran past the time limit.
    #[error("compiling the Rust source of node `{node}` took longer than {}s and was stopped", limit.as_secs())]
    TimedOut {
        /// The node.
        node: String,
        /// The limit.
        limit: Duration,
    },
    /// The toolchain could not be run, or its work directory written.
    #[error("cannot compile user code: {0}")]
    Toolchain(String),
    /// No sandbox works here, so no user code is compiled.
    #[error(transparent)]
    NoSandbox(#[from] NoSandbox),
}

/// A compiled node.
#[derive(Debug, Clone)]
pub struct CompiledCode {
    /// The node it replaces.
    pub node: String,
    /// Its plugin in the flow document.
    pub plugin: PluginRef,
    /// The component.
    pub component: Arc<[u8]>,
    /// Whether it was built now (rather than kept from an earlier build).
    pub built: bool,
    /// How long the build took.
    pub elapsed: Duration,
}

/// Compiles user code under one directory: `sdk/` (the vendored SDK),
/// `dependencies/` (the SDK's dependencies, built from a crate of the
/// server's), `work/<key>-<n>/` (one build: its crate and target directory)
/// and `components/<key>.wasm`.
///
/// Builds may run at once, in one server or several sharing the directory:
/// cargo takes turns on the dependencies' target directory, each build has
/// a work directory of its own, and every file is written whole or not at
/// all.
#[derive(Debug)]
pub struct UserCodeCompiler {
    dir: PathBuf,
    time_limit: Duration,
    /// One build of the dependencies at a time in this process.
    dependencies: tokio::sync::Mutex<()>,
}

/// What the dependencies' crate holds: a node that passes its input on.
const DEPENDENCIES_SOURCE: &str = "pub fn process(input: Message, _: &Value) -> Result<Output, NodeError> {\n    Ok(Output::out(input))\n}\n";

/// Work directories made by this process.
static BUILDS: AtomicU64 = AtomicU64::new(0);

impl UserCodeCompiler {
    /// A compiler working in `dir`, stopping a build after `time_limit`.
    pub fn new(dir: PathBuf, time_limit: Duration) -> UserCodeCompiler {
        UserCodeCompiler {
            dir,
            time_limit,
            dependencies: tokio::sync::Mutex::new(()),
        }
    }

    /// Compiles every `rust-code` node of `flow` and points the node at its
    /// component; the flow's plugin list follows.
    pub async fn compile_flow(
        &self,
        flow: &mut FlowDocument,
    ) -> Result<Vec<CompiledCode>, UserCodeError> {
        let mut compiled = Vec::new();
        for node in flow.nodes.iter_mut().filter(|n| n.plugin.name == NODE_TYPE) {
            let source = node.node["source"].as_str().unwrap_or_default();
            let code = self.compile(&node.id, source).await?;
            node.plugin = code.plugin.clone();
            node.node = serde_json::json!({ "settings": node.node["settings"].clone() });
            compiled.push(code);
        }
        if !compiled.is_empty() {
            let mut plugins: Vec<PluginRef> = flow.nodes.iter().map(|n| n.plugin.clone()).collect();
            plugins.sort();
            plugins.dedup();
            flow.plugins = plugins;
        }
        Ok(compiled)
    }

    /// Compiles one node's source (or finds it built before).
    pub async fn compile(&self, node: &str, source: &str) -> Result<CompiledCode, UserCodeError> {
        let started = Instant::now();
        let key = key(source);
        let kept = self.dir.join("components").join(format!("{key}.wasm"));
        let (component, built) = match tokio::fs::read(&kept).await {
            Ok(bytes) => (bytes, false),
            Err(_) => {
                let bytes = self.build(node, &key, source).await?;
                write_atomically(&kept, &bytes)
                    .await
                    .map_err(toolchain_error)?;
                (bytes, true)
            }
        };
        let plugin = PluginRef {
            name: PLUGIN_NAME.into(),
            version: version(&key),
            sha256: hex::encode(Sha256::digest(&component)),
        };
        Ok(CompiledCode {
            node: node.to_string(),
            plugin,
            component: component.into(),
            built,
            elapsed: started.elapsed(),
        })
    }

    async fn build(&self, node: &str, key: &str, source: &str) -> Result<Vec<u8>, UserCodeError> {
        let toolchain = Toolchain::get()?;
        let sdk = self.vendor_sdk().await.map_err(toolchain_error)?;
        let dependencies = self.dependencies(toolchain, &sdk, node).await?;
        let n = BUILDS.fetch_add(1, Ordering::Relaxed);
        let work = self
            .dir
            .join("work")
            .join(format!("{key}-{}-{n}", std::process::id()));
        let built = async {
            write_crate(&work, &sdk, key, source)
                .await
                .map_err(toolchain_error)?;
            link_copy(&dependencies.join("target"), &work.join("target")).await?;
            self.cargo(toolchain, node, &work, &sdk).await?;
            let wasm = work.join(format!("target/wasm32-wasip2/release/user_code_{key}.wasm"));
            tokio::fs::read(&wasm).await.map_err(toolchain_error)
        }
        .await;
        if let Err(err) = tokio::fs::remove_dir_all(&work).await {
            tracing::warn!(error = %err, dir = %work.display(), "cannot remove a user-code work directory");
        }
        built
    }

    /// The SDK's dependencies built for `wasm32-wasip2` from the server's own
    /// crate, once per SDK, for `node`'s build; answers their directory
    /// (`target/` inside).
    async fn dependencies(
        &self,
        toolchain: &Toolchain,
        sdk: &Path,
        node: &str,
    ) -> Result<PathBuf, UserCodeError> {
        let _one = self.dependencies.lock().await;
        let dir = self.dir.join("dependencies");
        let stamp = dir.join(".slipway-sdk");
        let wanted: &str = &SDK_HASH;
        if tokio::fs::read_to_string(&stamp).await.ok().as_deref() == Some(wanted) {
            return Ok(dir);
        }
        write_crate(&dir, sdk, "dependencies", DEPENDENCIES_SOURCE)
            .await
            .map_err(toolchain_error)?;
        // Downloading needs the network, so it runs outside the sandbox; it
        // reads only the manifest and lock file written above.
        let fetched = tokio::process::Command::new(toolchain.cargo())
            .current_dir(&dir)
            .args(["fetch", "--quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let Ok(fetched) = tokio::time::timeout(self.time_limit, fetched).await else {
            return Err(UserCodeError::TimedOut {
                node: node.to_string(),
                limit: self.time_limit,
            });
        };
        let fetched = fetched.map_err(toolchain_error)?;
        if !fetched.status.success() {
            return Err(UserCodeError::Toolchain(format!(
                "cannot download the SDK's dependencies: {}",
                String::from_utf8_lossy(&fetched.stderr).trim()
            )));
        }
        self.cargo(toolchain, node, &dir, sdk).await?;
        write_atomically(&stamp, wanted.as_bytes())
            .await
            .map_err(toolchain_error)?;
        Ok(dir)
    }

    /// `cargo build` of the crate in `work`, in the sandbox, under the time
    /// limit; its target directory is `work/target`.
    async fn cargo(
        &self,
        toolchain: &Toolchain,
        node: &str,
        work: &Path,
        sdk: &Path,
    ) -> Result<(), UserCodeError> {
        let build = Build {
            work,
            read_only: &[sdk],
            cpu_seconds: self.time_limit.as_secs().max(1),
        };
        let args = [
            "build",
            "--release",
            "--offline",
            "--target",
            "wasm32-wasip2",
            "--message-format",
            "short",
            "--quiet",
            "--target-dir",
            "target",
        ];
        let mut command = toolchain.command(&build, args.map(Into::into));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| UserCodeError::Toolchain(format!("cannot run the sandbox: {e}")))?;
        let group = child.id();
        let output = match tokio::time::timeout(self.time_limit, child.wait_with_output()).await {
            Ok(output) => output.map_err(toolchain_error)?,
            Err(_) => {
                // The sandbox dies with bwrap, which leads this group.
                if let Some(group) = group.and_then(|g| i32::try_from(g).ok()).filter(|g| *g > 1) {
                    // SAFETY: killpg takes no pointers; `group` is the group
                    // this build's bwrap leads (never 0 or 1, which would
                    // reach our own group or every process).
                    unsafe { libc::killpg(group, libc::SIGKILL) };
                }
                return Err(UserCodeError::TimedOut {
                    node: node.to_string(),
                    limit: self.time_limit,
                });
            }
        };
        if !output.status.success() {
            return Err(UserCodeError::Rejected {
                node: node.to_string(),
                message: compiler_messages(&String::from_utf8_lossy(&output.stderr)),
            });
        }
        Ok(())
    }

    /// Writes the embedded SDK under `sdk/` unless this build of the
    /// server wrote it already; answers its directory.
    async fn vendor_sdk(&self) -> std::io::Result<PathBuf> {
        let sdk = self.dir.join("sdk");
        let stamp = sdk.join(".slipway-sdk");
        let wanted: &str = &SDK_HASH;
        if tokio::fs::read_to_string(&stamp).await.ok().as_deref() == Some(wanted) {
            return Ok(sdk);
        }
        for (path, contents) in vendored::FILES {
            write_atomically(&sdk.join(path), contents.as_bytes()).await?;
        }
        write_atomically(
            &sdk.join("Cargo.toml"),
            vendored::WORKSPACE_MANIFEST.as_bytes(),
        )
        .await?;
        write_atomically(&stamp, wanted.as_bytes()).await?;
        Ok(sdk)
    }
}

/// A source's key: its hash and the SDK's, so a new SDK rebuilds.
fn key(source: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(&*SDK_HASH);
    hash.update(source);
    hex::encode(&hash.finalize()[..8])
}

/// The version user code gets: `0.0.0+<key>`.
fn version(key: &str) -> String {
    format!("0.0.0+{key}")
}

/// The embedded SDK's hash, computed once.
static SDK_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    for (path, contents) in vendored::FILES {
        hash.update(path);
        hash.update(contents);
    }
    hash.update(vendored::WORKSPACE_MANIFEST);
    hex::encode(&hash.finalize()[..8])
});

/// The node's crate: the source included into a module that sees the
/// SDK's common names, wrapped as a node type.
async fn write_crate(work: &Path, sdk: &Path, key: &str, source: &str) -> std::io::Result<()> {
    let manifest = format!(
        "[package]\n\
         name = \"user-code-{key}\"\n\
         version = \"{version}\"\n\
         edition = \"2024\"\n\
         publish = false\n\n\
         [lib]\n\
         crate-type = [\"cdylib\"]\n\n\
         [dependencies]\n\
         slipway-sdk = {{ path = {sdk:?} }}\n\n\
         [profile.release]\n\
         opt-level = \"s\"\n\
         strip = true\n\n\
         [workspace]\n",
        version = version(key),
        sdk = sdk.join("plugins/sdk").display().to_string(),
    );
    write_atomically(&work.join("Cargo.toml"), manifest.as_bytes()).await?;
    write_atomically(&work.join("Cargo.lock"), vendored::LOCK.as_bytes()).await?;
    write_atomically(&work.join("src/lib.rs"), WRAPPER.as_bytes()).await?;
    write_atomically(&work.join("src/source.rs"), source.as_bytes()).await
}

/// The generated crate root around `src/source.rs`.
const WRAPPER: &str = r#"//! Generated by Slipway around a `rust-code` node's source.

#[allow(unused_imports)]
mod user {
    use slipway_sdk::node::{NodeError, Output};
    use slipway_sdk::serde_json::{self, Value, json};
    use slipway_sdk::{Message, host};

    include!("source.rs");
}

use slipway_sdk::node::{Info, NodeError, NodeType, Output, Translated};
use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::{Diagnostic, Message};

pub struct UserCode;

impl NodeType for UserCode {
    type Config = Value;
    type Node = Value;

    fn info() -> Info {
        Info::new("A rust-code node's source, compiled.", json!({"type": "object"}))
    }

    fn translate(config: Value) -> Result<Translated<Value>, Vec<Diagnostic>> {
        Ok(Translated::new(config))
    }

    fn invoke(node: Value, input: Message) -> Result<Output, NodeError> {
        user::process(input, &node["settings"])
    }
}

slipway_sdk::export_node_type!(UserCode);
"#;

/// The compiler's errors, with paths into the node's source shown as
/// `source:line:column`, without cargo's own closing lines.
fn compiler_messages(stderr: &str) -> String {
    let lines: Vec<String> = stderr
        .lines()
        .filter(|l| l.starts_with("error") || l.contains(": error"))
        .filter(|l| !l.starts_with("error: could not compile"))
        .map(|l| l.replace("src/source.rs:", "source:"))
        .collect();
    let mut kept: Vec<String> = lines.iter().take(MESSAGE_LINES).cloned().collect();
    if lines.len() > MESSAGE_LINES {
        kept.push(format!(
            "... and {} more lines",
            lines.len() - MESSAGE_LINES
        ));
    }
    if kept.is_empty() {
        return "cargo failed without a message".into();
    }
    kept.join("\n")
}

fn toolchain_error(error: std::io::Error) -> UserCodeError {
    UserCodeError::Toolchain(error.to_string())
}

/// A copy of the tree `from` at `to` whose files are hard links: a build
/// starts from the dependencies without copying them.
async fn link_copy(from: &Path, to: &Path) -> Result<(), UserCodeError> {
    let output = tokio::process::Command::new("cp")
        .arg("-al")
        .arg(from)
        .arg(to)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(toolchain_error)?;
    if !output.status.success() {
        return Err(UserCodeError::Toolchain(format!(
            "cannot copy the built dependencies: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// Writes `path` through a temporary file and a rename, creating parents.
async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let temporary = path.with_extension("partial");
    tokio::fs::write(&temporary, bytes).await?;
    tokio::fs::rename(&temporary, path).await
}

/// Components by plugin, for the image's component lookup.
pub fn by_sha(compiled: &[CompiledCode]) -> HashMap<String, Arc<[u8]>> {
    compiled
        .iter()
        .map(|c| (c.plugin.sha256.clone(), c.component.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_messages_point_into_the_source() {
        let stderr = "src/source.rs:3:5: error[E0425]: cannot find value `x` in this scope\n\
                      src/source.rs:1:1: warning: unused import\n\
                      error: could not compile `user-code` (lib) due to 1 previous error\n";
        assert_eq!(
            compiler_messages(stderr),
            "source:3:5: error[E0425]: cannot find value `x` in this scope"
        );
    }

    #[test]
    fn the_vendored_workspace_names_the_sdk_and_its_dependencies() {
        let manifest: toml::Table = vendored::WORKSPACE_MANIFEST.parse().unwrap();
        let workspace = manifest["workspace"].as_table().unwrap();
        assert_eq!(
            workspace["members"].as_array().unwrap()[0].as_str(),
            Some("plugins/sdk")
        );
        assert!(
            workspace["dependencies"]
                .as_table()
                .unwrap()
                .contains_key("wit-bindgen")
        );
        assert!(
            vendored::FILES
                .iter()
                .any(|(p, _)| *p == "wit/node-type.wit")
        );
        assert!(
            vendored::FILES
                .iter()
                .any(|(p, _)| *p == "plugins/sdk/src/lib.rs")
        );
    }
}
