//! Shared set-up: runtimes, components, and a small HTTP server on loopback.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use slipway_runtime::{CallContext, Kind, Message, Plugin, Runtime, RuntimeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A runtime sharing one code cache across the tests, so each component is
/// compiled once per run.
pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("code-cache")),
        // The tests' servers listen on loopback.
        egress: slipway_runtime::Egress::loopback(),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

/// A built-in plugin's component.
pub fn builtin(name: &str) -> &'static [u8] {
    slipway_plugin_artifacts::builtin(name).expect("a built-in plugin")
}

/// A test guest's component.
pub fn guest(name: &str) -> Vec<u8> {
    std::fs::read(slipway_plugin_artifacts::test_guest(name).expect("a test guest"))
        .expect("read the test guest")
}

/// Installs a component and returns the plugin.
pub async fn install(runtime: &Runtime, wasm: &[u8]) -> Arc<Plugin> {
    runtime.install(wasm).await.expect("install").plugin
}

/// A node type by name and requirement.
pub fn node(runtime: &Runtime, name: &str, requirement: &str) -> Arc<Plugin> {
    runtime
        .catalog()
        .resolve(Kind::NodeType, name, &requirement.parse().unwrap())
        .expect("resolve")
}

/// Translates `config` and invokes the node with a JSON body.
pub async fn run(
    plugin: &Plugin,
    context: &CallContext,
    config: Value,
    body: &str,
) -> Result<Result<slipway_runtime::Output, slipway_runtime::NodeError>, slipway_runtime::CallError>
{
    let translated = plugin
        .translate(context, &config)
        .await?
        .expect("a valid config");
    plugin
        .invoke(
            context,
            &translated.node.to_string(),
            Message::from_body(body),
        )
        .await
}

/// The body of a successful invocation, as JSON.
pub fn body(output: &slipway_runtime::Output) -> Value {
    serde_json::from_slice(&output.message.body).expect("a JSON body")
}

/// Serves HTTP/1.1 on 127.0.0.1: answers every request with status 200 and
/// `{"method", "path", "body"}`; `/status/NNN` answers NNN, `/slow/MS` waits
/// MS milliseconds first. Returns the port.
pub async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let mut first = head.lines().next().unwrap_or_default().split(' ');
                let method = first.next().unwrap_or_default().to_string();
                let path = first.next().unwrap_or_default().to_string();
                let status = path
                    .strip_prefix("/status/")
                    .and_then(|s| s.parse::<u16>().ok())
                    .unwrap_or(200);
                if let Some(ms) = path.strip_prefix("/slow/").and_then(|s| s.parse().ok()) {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                let answer =
                    serde_json::json!({"method": method, "path": path, "body": body}).to_string();
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}
