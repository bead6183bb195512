//! Plugin runtime benchmarks, each beside a baseline measured in the same run.
//!
//! `cargo bench -p slipway-runtime --bench plugins` prints Markdown for
//! BENCHMARKS.md:
//! 1. fresh instance + one `invoke` of `transform`: Slipway beside plain
//!    wasmtime (same component, same allocator, no Slipway machinery) and
//!    plain wasmtime with its default on-demand allocator;
//! 2. loading each built-in plugin from the code cache beside compiling it;
//! 3. peak memory of a process with every built-in plugin loaded, beside one
//!    with the runtime and no plugin.

use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::Arc;

use slipway_runtime::{CallContext, Message, Plugin, Runtime, RuntimeConfig};

const WARMUP: usize = 2_000;
const CALLS: usize = 20_000;
const EXPRESSION: &str = "{id: .order.id, total: (.order.items | map(.price) | add)}";
const BODY: &str = r#"{"order": {"id": 7, "items": [{"price": 2.5}, {"price": 4}]}}"#;

mod plain {
    //! Plain wasmtime: the same world bound with `bindgen!`, wasmtime-wasi
    //! for WASI, host imports that do nothing.
    use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
    use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

    wasmtime::component::bindgen!({
        world: "node-type",
        path: "../../wit",
        imports: { "slipway:plugin/http.send": async, default: trappable },
        exports: { default: async },
    });

    pub struct State {
        wasi: WasiCtx,
        table: ResourceTable,
    }

    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }

    impl slipway::plugin::types::Host for State {}

    impl slipway::plugin::host::Host for State {
        fn log(
            &mut self,
            _: slipway::plugin::host::Level,
            _: String,
            _: Vec<(String, String)>,
        ) -> wasmtime::Result<()> {
            Ok(())
        }
        fn settings(&mut self) -> wasmtime::Result<String> {
            Ok("{}".into())
        }
        fn secret(&mut self, _: String) -> wasmtime::Result<Option<String>> {
            Ok(None)
        }
        fn now_ms(&mut self) -> wasmtime::Result<u64> {
            Ok(0)
        }
        fn cache_get(&mut self, _: String) -> wasmtime::Result<Option<String>> {
            Ok(None)
        }
        fn cache_put(&mut self, _: String, _: String, _: u64) -> wasmtime::Result<()> {
            Ok(())
        }
    }

    impl slipway::plugin::http::Host for State {
        async fn send(
            &mut self,
            _: slipway::plugin::http::Request,
        ) -> Result<slipway::plugin::http::Response, slipway::plugin::http::Error> {
            Err(slipway::plugin::http::Error::Denied("no".into()))
        }
    }

    pub struct Plain {
        engine: Engine,
        pre: NodeTypePre<State>,
    }

    impl Plain {
        pub fn new(wasm: &[u8], pooling: bool) -> Plain {
            let mut config = Config::new();
            if pooling {
                // The same pool tuning as Slipway's, so the comparison is of the machinery.
                let mut pool = PoolingAllocationConfig::default();
                pool.linear_memory_keep_resident(slipway_runtime::KEEP_RESIDENT)
                    .pagemap_scan(wasmtime::Enabled::Auto);
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            }
            let engine = Engine::new(&config).unwrap();
            let component = Component::new(&engine, wasm).unwrap();
            let mut linker = Linker::new(&engine);
            NodeType::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).unwrap();
            wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
            let pre = NodeTypePre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
            Plain { engine, pre }
        }

        /// Median and p99 of creating a store and instance, without a call.
        pub async fn instantiate_only(&self) -> (std::time::Duration, std::time::Duration) {
            let mut samples = Vec::new();
            for _ in 0..20_000 {
                let started = std::time::Instant::now();
                let state = State {
                    wasi: WasiCtx::builder().build(),
                    table: ResourceTable::new(),
                };
                let mut store = Store::new(&self.engine, state);
                let _instance = self.pre.instantiate_async(&mut store).await.unwrap();
                samples.push(started.elapsed());
            }
            super::stats(samples)
        }

        pub async fn invoke(&self, node: &str, body: &[u8]) -> Vec<u8> {
            let state = State {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            };
            let mut store = Store::new(&self.engine, state);
            let instance = self.pre.instantiate_async(&mut store).await.unwrap();
            let message = slipway::plugin::types::Message {
                body: body.to_vec(),
                headers: Vec::new(),
                attributes: Vec::new(),
            };
            let out = instance
                .slipway_plugin_node()
                .call_invoke(&mut store, &node.to_string(), &message)
                .await
                .unwrap()
                .unwrap();
            out.message.body
        }
    }
}

fn transform() -> &'static [u8] {
    slipway_plugin_artifacts::builtin("transform").unwrap()
}

/// Median and 99th percentile of per-call times.
fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

async fn time_calls<F, Fut>(mut call: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<u8>>,
{
    for _ in 0..WARMUP {
        call().await;
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let out = call().await;
        samples.push(started.elapsed());
        assert_eq!(out, br#"{"id":7,"total":6.5}"#);
    }
    stats(samples)
}

/// [`time_calls`] of `plugin` invoked on `node`.
async fn time_invokes(plugin: &Arc<Plugin>, ctx: &CallContext, node: &str) -> (Duration, Duration) {
    time_calls(|| {
        let plugin = plugin.clone();
        let ctx = ctx.clone();
        async move {
            plugin
                .invoke(&ctx, node, Message::from_body(BODY))
                .await
                .unwrap()
                .unwrap()
                .message
                .body
        }
    })
    .await
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn bench_invoke() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let plugin = runtime.load(transform()).await.unwrap();
    let ctx = CallContext::default();
    let node = plugin
        .translate(&ctx, &serde_json::json!({ "expression": EXPRESSION }))
        .await
        .unwrap()
        .unwrap()
        .node
        .to_string();
    let node = node.as_str();
    let slipway = time_invokes(&plugin, &ctx, node).await;
    // The same runtime resetting slots without `PAGEMAP_SCAN`, as it does
    // where swap is configured.
    let cleared = Runtime::new(RuntimeConfig {
        pagemap_scan: false,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let cleared_plugin = cleared.load(transform()).await.unwrap();
    let slipway_cleared = time_invokes(&cleared_plugin, &ctx, node).await;
    let pooled = plain::Plain::new(transform(), true);
    let plain_pooled = time_calls(|| pooled.invoke(node, BODY.as_bytes())).await;
    let on_demand = plain::Plain::new(transform(), false);
    let plain_default = time_calls(|| on_demand.invoke(node, BODY.as_bytes())).await;

    let log = runtime
        .load(slipway_plugin_artifacts::builtin("log").unwrap())
        .await
        .unwrap();
    let log_node = r#"{"message":"seen","level":"trace","includeBody":false,"maxBodyBytes":0}"#;
    let log_floor = {
        let mut samples = Vec::with_capacity(CALLS);
        for i in 0..WARMUP + CALLS {
            let started = Instant::now();
            log.invoke(&ctx, log_node, Message::from_body(BODY))
                .await
                .unwrap()
                .unwrap();
            if i >= WARMUP {
                samples.push(started.elapsed());
            }
        }
        stats(samples)
    };
    let instantiate_only = pooled.instantiate_only().await;

    println!("### Fresh instance + one `invoke` of `transform` ({CALLS} calls, one task)\n");
    println!("| | median | p99 | median vs plain wasmtime (pooling) |");
    println!("|---|---|---|---|");
    let ratio = |d: Duration| format!("{:.2}×", d.as_secs_f64() / plain_pooled.0.as_secs_f64());
    println!(
        "| Slipway runtime | {} | {} | {} |",
        micros(slipway.0),
        micros(slipway.1),
        ratio(slipway.0)
    );
    println!(
        "| Slipway runtime, slots reset without `PAGEMAP_SCAN` (where swap is configured) | {} | {} | {} |",
        micros(slipway_cleared.0),
        micros(slipway_cleared.1),
        ratio(slipway_cleared.0)
    );
    println!(
        "| plain wasmtime, pooling allocator | {} | {} | 1.00× |",
        micros(plain_pooled.0),
        micros(plain_pooled.1)
    );
    println!(
        "| plain wasmtime, default allocator | {} | {} | {} |",
        micros(plain_default.0),
        micros(plain_default.1),
        ratio(plain_default.0)
    );
    println!(
        "| for scale: Slipway, `log` node (no jq work) | {} | {} | |",
        micros(log_floor.0),
        micros(log_floor.1)
    );
    println!(
        "| for scale: plain wasmtime, instantiate `transform` only | {} | {} | |",
        micros(instantiate_only.0),
        micros(instantiate_only.1)
    );
    println!();
}

async fn bench_load() {
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    println!("### Loading a built-in plugin: cached code beside a cold compile\n");
    println!("| plugin | component | cold compile (median of 3) | from cache (median of 20) |");
    println!("|---|---|---|---|");
    for (name, wasm) in slipway_plugin_artifacts::BUILTIN {
        let mut cold = Vec::new();
        for _ in 0..3 {
            let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
            let started = Instant::now();
            runtime.load(wasm).await.unwrap();
            cold.push(started.elapsed());
        }
        Runtime::new(config.clone())
            .unwrap()
            .load(wasm)
            .await
            .unwrap();
        let mut warm = Vec::new();
        for _ in 0..20 {
            let runtime = Runtime::new(config.clone()).unwrap();
            let started = Instant::now();
            let plugin = runtime.load(wasm).await.unwrap();
            warm.push(started.elapsed());
            assert_eq!(plugin.code_source(), slipway_runtime::CodeSource::Cached);
        }
        println!(
            "| {name} | {} KiB | {} | {} |",
            wasm.len() / 1024,
            millis(stats(cold).0),
            millis(stats(warm).0)
        );
    }
    println!();
}

/// Reads `VmHWM` (peak resident set) from /proc, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Child process: a runtime on the cache `dir`, with or without the built-ins.
async fn memory_probe(dir: &Path, load: bool) {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    if load {
        for (_, wasm) in slipway_plugin_artifacts::BUILTIN {
            runtime.install(wasm).await.unwrap();
        }
        // One call each, so instances have been made too; an empty config
        // is refused by some, which is a call all the same.
        for plugin in runtime.catalog().list() {
            let _ = plugin
                .validate(&CallContext::default(), &serde_json::json!({}))
                .await;
        }
    }
    println!("{}", peak_rss_kib());
}

fn probe(dir: &Path, load: bool) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .arg(if load {
            "--probe-loaded"
        } else {
            "--probe-empty"
        })
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "the probe printed {text:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

async fn bench_memory() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    for (_, wasm) in slipway_plugin_artifacts::BUILTIN {
        runtime.load(wasm).await.unwrap();
    }
    let empty = probe(cache.path(), false);
    let loaded = probe(cache.path(), true);
    println!("### Peak memory (VmHWM) of a process, code cache warm\n");
    println!("| process | peak RSS |");
    println!("|---|---|");
    println!("| runtime, no plugin | {:.1} MiB |", empty as f64 / 1024.0);
    println!(
        "| runtime + the 5 built-in plugins, one call each | {:.1} MiB |",
        loaded as f64 / 1024.0
    );
    println!();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--probe-empty") => return memory_probe(Path::new(&args[2]), false).await,
        Some("--probe-loaded") => return memory_probe(Path::new(&args[2]), true).await,
        _ => {}
    }
    // `cargo bench` passes `--bench`; any filter is ignored.
    bench_invoke().await;
    bench_load().await;
    bench_memory().await;
}
