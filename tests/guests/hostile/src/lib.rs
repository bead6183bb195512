//! A node type that misbehaves on request, for the runtime's hostile tests.
//! Its node config is `{"mode": "..."}` (and `url` for `fetch`); with
//! `"stage": "validate"` it misbehaves when a canvas is validated instead.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use slipway_sdk::node::{Info, NodeError, NodeType, Output, Translated};
use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::{Diagnostic, Message, http};

/// The node type.
pub struct Hostile;

/// What to do.
#[derive(Debug, Deserialize, Serialize)]
pub struct Config {
    /// `echo`, `count`, `spin`, `sleep`, `grow`, `panic`, `trap`, `fetch`,
    /// `fetch-forever`, `secret`, `settings`, `dirty`, `scan`.
    pub mode: String,
    /// For `dirty` and `scan`: what to leave in memory, and look for.
    #[serde(default)]
    pub secret: String,
    /// For `fetch`.
    #[serde(default)]
    pub url: String,
    /// `validate` to misbehave when validated; otherwise when invoked.
    #[serde(default)]
    pub stage: String,
}

impl NodeType for Hostile {
    type Config = Config;
    type Node = Config;

    fn info() -> Info {
        Info::new("misbehaves on request", json!({"type": "object"}))
    }

    fn validate(config: &Config) -> Vec<Diagnostic> {
        if config.stage == "validate"
            && let Err(error) = misbehave(config, Message::json(&json!({})))
        {
            return vec![Diagnostic::at("/mode", error.message)];
        }
        Vec::new()
    }

    fn translate(config: Config) -> Result<Translated<Config>, Vec<Diagnostic>> {
        Ok(Translated::new(config))
    }

    fn invoke(node: Config, input: Message) -> Result<Output, NodeError> {
        misbehave(&node, input)
    }
}

/// `text` with every byte flipped.
fn flipped(text: &str) -> Vec<u8> {
    text.bytes().map(|b| !b).collect()
}

/// Occurrences of `needle` in this instance's linear memory, but for `needle` itself.
#[cfg(target_arch = "wasm32")]
fn found_in_memory(needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    // Grown without the allocator (which may zero what it hands out), so
    // these pages are as the runtime gives them.
    core::arch::wasm32::memory_grow(0, 64);
    let size = core::arch::wasm32::memory_size(0) * 65536;
    let own = needle.as_ptr() as usize;
    // Address 0 is never a copy; starting at 1 keeps the pointer non-null.
    // SAFETY: every address below `memory.size` is readable linear memory.
    let memory = unsafe { core::slice::from_raw_parts(1 as *const u8, size - 1) };
    memory
        .windows(needle.len())
        .enumerate()
        .filter(|(at, window)| window[0] == needle[0] && *window == needle && at + 1 != own)
        .count()
}

#[cfg(not(target_arch = "wasm32"))]
fn found_in_memory(_: &[u8]) -> usize {
    0
}

/// Does what `node.mode` says.
fn misbehave(node: &Config, input: Message) -> Result<Output, NodeError> {
    match node.mode.as_str() {
        "echo" => Ok(Output::out(input)),
        "count" => {
            // State that would leak if instances were reused between calls.
            static CALLS: AtomicU32 = AtomicU32::new(0);
            let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Output::out(Message::json(&calls)))
        }
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        // Waits on the host, where the CPU deadline does not run.
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Ok(Output::out(input))
        }
        "fetch-forever" => loop {
            let _ = http::get(&node.url);
        },
        "grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "panic" => panic!("the hostile guest panics on purpose"),
        "trap" => {
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_arch = "wasm32"))]
            unreachable!("trap")
        }
        "fetch" => match http::get(&node.url) {
            Ok(response) => {
                let mut out = input;
                out.body = response.body;
                out.set_attribute("http.status", &response.status.to_string());
                Ok(Output::out(out))
            }
            Err(http::Error::Denied(m)) => Err(NodeError::new("denied", m)),
            Err(e) => Err(NodeError::new("http", format!("{e:?}"))),
        },
        "secret" => {
            let seen = json!({
                "token": slipway_sdk::host::secret("token"),
                "unlisted": slipway_sdk::host::secret("unlisted"),
            });
            Ok(Output::out(Message::json(&seen)))
        }
        // The secret (each byte flipped, so that this call's config does not
        // hold it) in 256 separate pages, a clean page between each two.
        "dirty" => {
            let secret = flipped(&node.secret);
            let mut hoard = vec![0u8; 256 * 8192];
            for page in hoard.chunks_mut(8192) {
                page[..secret.len()].copy_from_slice(&secret);
            }
            std::hint::black_box(&hoard);
            Ok(Output::out(Message::json(&"dirtied")))
        }
        // How many times the flipped secret is in linear memory, besides
        // this call's own copy of it.
        "scan" => {
            let secret = flipped(&node.secret);
            Ok(Output::out(Message::json(&found_in_memory(&secret))))
        }
        "settings" => {
            let settings: Value = slipway_sdk::serde_json::from_str(&slipway_sdk::host::settings())
                .unwrap_or(Value::Null);
            Ok(Output::out(Message::json(&settings)))
        }
        other => Err(NodeError::new(
            "bad-mode",
            format!("unknown mode `{other}`"),
        )),
    }
}

slipway_sdk::export_node_type!(
    Hostile,
    manifest: r#"
allowed-hosts = ["127.0.0.1"]
secrets = ["token"]
[limits]
deadline-ms = 200
memory-mib = 32
"#
);
