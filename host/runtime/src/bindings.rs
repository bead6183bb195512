//! Host bindings for the `slipway:plugin` worlds, generated from `wit/`. All
//! `bindgen!` calls live here. The shared imports are generated once, with the
//! `node-type` world, and reused by the other two.

#![allow(missing_docs)]

/// The `node-type` world, and the shared `types`, `host` and `http` interfaces.
pub mod node {
    wasmtime::component::bindgen!({
        world: "node-type",
        path: "../../wit",
        imports: { "slipway:plugin/http.send": async, default: trappable },
        exports: { default: async },
    });
}

/// The `registry-adapter` world.
pub mod registry {
    wasmtime::component::bindgen!({
        world: "registry-adapter",
        path: "../../wit",
        exports: { default: async },
        with: {
            "slipway:plugin/types": crate::bindings::node::slipway::plugin::types,
            "slipway:plugin/host": crate::bindings::node::slipway::plugin::host,
            "slipway:plugin/http": crate::bindings::node::slipway::plugin::http,
        },
    });
}

/// The `deploy-target` world.
pub mod target {
    wasmtime::component::bindgen!({
        world: "deploy-target",
        path: "../../wit",
        exports: { default: async },
        with: {
            "slipway:plugin/types": crate::bindings::node::slipway::plugin::types,
            "slipway:plugin/host": crate::bindings::node::slipway::plugin::host,
            "slipway:plugin/http": crate::bindings::node::slipway::plugin::http,
        },
    });
}

pub use node::slipway::plugin::{host, http, types};
