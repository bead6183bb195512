//! Guest bindings for the `slipway:plugin` worlds, generated from `wit/`.
//!
//! Each world gets its own module; the shared imports (`types`, `host`, `http`)
//! are generated once, in [`node`], and reused by the others.

#![allow(missing_docs, clippy::all)]

/// The `node-type` world; also home of the shared imports.
pub mod node {
    wit_bindgen::generate!({
        world: "node-type",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_node_world",
        default_bindings_module: "slipway_sdk::bindings::node",
    });
}

/// The `registry-adapter` world.
pub mod registry {
    wit_bindgen::generate!({
        world: "registry-adapter",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_registry_world",
        default_bindings_module: "slipway_sdk::bindings::registry",
        with: {
            "slipway:plugin/types@0.1.0": crate::bindings::node::slipway::plugin::types,
            "slipway:plugin/host@0.1.0": crate::bindings::node::slipway::plugin::host,
            "slipway:plugin/http@0.1.0": crate::bindings::node::slipway::plugin::http,
        },
    });
}

/// The `deploy-target` world.
pub mod target {
    wit_bindgen::generate!({
        world: "deploy-target",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_target_world",
        default_bindings_module: "slipway_sdk::bindings::target",
        with: {
            "slipway:plugin/types@0.1.0": crate::bindings::node::slipway::plugin::types,
            "slipway:plugin/host@0.1.0": crate::bindings::node::slipway::plugin::host,
            "slipway:plugin/http@0.1.0": crate::bindings::node::slipway::plugin::http,
        },
    });
}

pub use node::slipway::plugin::{host as host_api, http as http_api, types};
