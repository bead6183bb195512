//! Errors of loading and calling plugins.

use std::fmt;

use crate::manifest::{Kind, ManifestError};

/// A plugin could not be loaded; nothing was registered.
#[derive(Debug, thiserror::Error)]
pub struct LoadError {
    /// `name@version` when the manifest was read.
    pub plugin: Option<String>,
    /// What was wrong (part of this error's message, so not a `source`).
    pub reason: LoadFailure,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.plugin {
            Some(id) => write!(f, "cannot load plugin `{id}`: {}", self.reason),
            None => write!(f, "cannot load plugin: {}", self.reason),
        }
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly binary")]
    NotWasm,
    /// A core module rather than a component.
    #[error("a core WebAssembly module, not a component: build the plugin for wasm32-wasip2")]
    NotComponent,
    /// The binary does not parse or validate.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// No manifest section.
    #[error(
        "no `slipway:manifest` section: export the plugin with the SDK's export macro, or add the section with `slipway plugin pack`"
    )]
    NoManifest,
    /// Several manifest sections.
    #[error("more than one `slipway:manifest` section")]
    ManyManifests,
    /// The manifest is not valid.
    #[error("invalid manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// The component imports something plugins may not have.
    #[error("imports `{import}`: {reason}")]
    ForbiddenImport {
        /// The import's full name.
        import: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The component does not export its declared kind's interface.
    #[error("declares kind `{kind}` but does not export `{expected}` (it exports: {found})")]
    WrongWorld {
        /// The declared kind.
        kind: Kind,
        /// The interface expected, with version.
        expected: String,
        /// What it does export.
        found: String,
    },
    /// The exports exist but their types do not match the world.
    #[error("does not implement the `{kind}` world: {detail}")]
    Incompatible {
        /// The declared kind.
        kind: Kind,
        /// Wasmtime's explanation.
        detail: String,
    },
    /// The manifest asks for more memory than the host allows.
    #[error("asks for {asked} MiB of memory per call; this host allows at most {max} MiB")]
    MemoryTooLarge {
        /// What the manifest asks.
        asked: u64,
        /// The host's maximum.
        max: u64,
    },
    /// The manifest asks for a longer deadline than the host allows.
    #[error("asks for a {asked} ms deadline per call; this host allows at most {max} ms")]
    DeadlineTooLong {
        /// What the manifest asks.
        asked: u64,
        /// The host's maximum.
        max: u64,
    },
    /// `describe` does not agree with the manifest.
    #[error("describe() names `{found}` but the manifest names `{expected}`")]
    IdentityMismatch {
        /// From the manifest.
        expected: String,
        /// From `describe`.
        found: String,
    },
    /// `describe` failed.
    #[error("describe() failed: {0}")]
    Describe(CallError),
    /// Cranelift could not compile the component.
    #[error("cannot compile: {0}")]
    Compile(String),
    /// Reading the file or the code cache failed.
    #[error("{0}")]
    Io(String),
}

impl LoadFailure {
    pub(crate) fn of(self, plugin: Option<String>) -> LoadError {
        LoadError {
            plugin,
            reason: self,
        }
    }
}

/// A call into a plugin failed; the host is unaffected.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("plugin `{plugin}` {cause} (in `{function}`)")]
pub struct CallError {
    /// `name@version`.
    pub plugin: String,
    /// The exported function called.
    pub function: &'static str,
    /// What happened.
    pub cause: CallFailure,
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CallFailure {
    /// The plugin's code ran past its deadline and was stopped.
    #[error("ran past its {0} ms deadline and was stopped")]
    Deadline(u64),
    /// The call as a whole, time waiting on the host included, ran past
    /// the host's cap.
    #[error(
        "ran past the {0} ms a call may take in all (waiting on the host included) and was stopped"
    )]
    WallClock(u64),
    /// The plugin asked for more memory than its cap.
    #[error("hit its {0} MiB memory cap")]
    MemoryCap(u64),
    /// Growing its memory would pass what every running call shares.
    #[error("could not grow its memory: the {0} MiB that running calls share is in use")]
    MemoryBudget(u64),
    /// Growing its memory would pass its tenant's part of that.
    #[error("could not grow its memory: its organisation's {0} MiB for running calls is in use")]
    TenantMemoryBudget(u64),
    /// The plugin panicked (message from the SDK's panic hook).
    #[error("panicked: {0}")]
    Panic(String),
    /// Any other trap.
    #[error("trapped: {0}")]
    Trap(String),
    /// The instance could not be created.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// The host asked a plugin for a function its kind does not have.
    #[error("is a {0} plugin and has no such function")]
    WrongKind(Kind),
    /// The plugin returned something the host cannot use.
    #[error("returned an invalid result: {0}")]
    BadResult(String),
}
