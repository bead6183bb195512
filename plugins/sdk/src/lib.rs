//! The Slipway plugin SDK.
//!
//! A plugin is a WebAssembly component built for `wasm32-wasip2` that implements
//! one of the `slipway:plugin` worlds. With this crate a node type is a type that
//! implements [`node::NodeType`] plus one line:
//!
//! ```text
//! slipway_sdk::export_node_type!(MyNode);
//! ```
//!
//! The macro exports the world and embeds the plugin's manifest (name, version
//! and description from `Cargo.toml`, plus the extra TOML you pass) in the
//! component's `slipway:manifest` custom section.

pub mod bindings;
pub mod cloud;
pub mod config;
pub mod distribution;
pub mod host;
pub mod http;
pub mod message;
pub mod node;
pub mod registry;
pub mod target;

pub use bindings::types::{Diagnostic, Message};
pub use serde_json;

impl Diagnostic {
    /// A problem at `path`, a JSON pointer into the checked document.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The identity of the plugin crate, filled in by the export macros from `Cargo.toml`.
pub trait Named {
    /// The package name.
    const NAME: &'static str;
    /// The package version (semver).
    const VERSION: &'static str;
    /// The package description.
    const DESCRIPTION: &'static str;
}

/// Copies a string into a fixed-size array, for embedding in a custom section.
#[doc(hidden)]
pub const fn __manifest_bytes<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Embeds the manifest and implements [`Named`]; used by the export macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __manifest {
    ($ty:ty, $kind:literal, [$($name:tt)+], $extra:expr) => {
        impl $crate::Named for $ty {
            const NAME: &'static str = $($name)+;
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
            const DESCRIPTION: &'static str = env!("CARGO_PKG_DESCRIPTION");
        }
        const __SLIPWAY_MANIFEST_TEXT: &str = concat!(
            "kind = \"",
            $kind,
            "\"\nname = \"",
            $($name)+,
            "\"\nversion = \"",
            env!("CARGO_PKG_VERSION"),
            "\"\ndescription = '''",
            env!("CARGO_PKG_DESCRIPTION"),
            "'''\n",
            $extra,
            "\n"
        );
        #[cfg(target_arch = "wasm32")]
        #[unsafe(link_section = "slipway:manifest")]
        #[used]
        static __SLIPWAY_MANIFEST: [u8; __SLIPWAY_MANIFEST_TEXT.len()] =
            $crate::__manifest_bytes(__SLIPWAY_MANIFEST_TEXT);
    };
}

/// Exports a [`node::NodeType`] as this component's `node-type` world.
///
/// The plugin's name, version and description come from `Cargo.toml`; `name`
/// overrides the name. The optional `manifest` is TOML appended to the
/// generated manifest, e.g. `allowed-hosts = ["api.example.com"]`,
/// `secrets = ["token"]` or a `[limits]` table.
#[macro_export]
macro_rules! export_node_type {
    ($ty:ty) => {
        $crate::export_node_type!($ty, manifest: "");
    };
    ($ty:ty, manifest: $extra:expr) => {
        $crate::__manifest!($ty, "node-type", [env!("CARGO_PKG_NAME")], $extra);
        $crate::__export_node!($ty);
    };
    ($ty:ty, name: $name:literal, manifest: $extra:expr) => {
        $crate::__manifest!($ty, "node-type", [$name], $extra);
        $crate::__export_node!($ty);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_node {
    ($ty:ty) => {
        type __SlipwayNodeExport = $crate::node::Adapter<$ty>;
        // Exported for wasm only: a native build (unit tests) has no component to export from.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::node::export_node_world!(__SlipwayNodeExport with_types_in $crate::bindings::node);
    };
}

/// Exports a [`registry::RegistryAdapter`] as this component's `registry-adapter` world.
/// Takes the same options as [`export_node_type!`].
#[macro_export]
macro_rules! export_registry_adapter {
    ($ty:ty) => {
        $crate::export_registry_adapter!($ty, manifest: "");
    };
    ($ty:ty, manifest: $extra:expr) => {
        $crate::__manifest!($ty, "registry-adapter", [env!("CARGO_PKG_NAME")], $extra);
        $crate::__export_registry!($ty);
    };
    ($ty:ty, name: $name:literal, manifest: $extra:expr) => {
        $crate::__manifest!($ty, "registry-adapter", [$name], $extra);
        $crate::__export_registry!($ty);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_registry {
    ($ty:ty) => {
        type __SlipwayRegistryExport = $crate::registry::Adapter<$ty>;
        // Exported for wasm only: a native build (unit tests) has no component to export from.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::registry::export_registry_world!(__SlipwayRegistryExport with_types_in $crate::bindings::registry);
    };
}

/// Exports a [`target::DeployTarget`] as this component's `deploy-target` world.
/// Takes the same options as [`export_node_type!`].
#[macro_export]
macro_rules! export_deploy_target {
    ($ty:ty) => {
        $crate::export_deploy_target!($ty, manifest: "");
    };
    ($ty:ty, manifest: $extra:expr) => {
        $crate::__manifest!($ty, "deploy-target", [env!("CARGO_PKG_NAME")], $extra);
        $crate::__export_target!($ty);
    };
    ($ty:ty, name: $name:literal, manifest: $extra:expr) => {
        $crate::__manifest!($ty, "deploy-target", [$name], $extra);
        $crate::__export_target!($ty);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_target {
    ($ty:ty) => {
        type __SlipwayTargetExport = $crate::target::Adapter<$ty>;
        // Exported for wasm only: a native build (unit tests) has no component to export from.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::target::export_target_world!(__SlipwayTargetExport with_types_in $crate::bindings::target);
    };
}
