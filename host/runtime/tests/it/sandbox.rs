//! Hostile plugins: each is stopped or refused with an exact error, and the
//! host keeps serving afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use slipway_runtime::{CallContext, CallFailure, LoadFailure, Plugin};

use crate::common::{body, echo_server, guest, install, run, runtime};

async fn hostile() -> (slipway_runtime::Runtime, Arc<Plugin>) {
    let rt = runtime();
    let plugin = install(&rt, &guest("hostile")).await;
    (rt, plugin)
}

/// The runtime still loads and runs plugins after a refusal.
async fn runtime_still_serves(rt: &slipway_runtime::Runtime) {
    let log = install(rt, crate::common::builtin("log")).await;
    let out = run(
        &log,
        &CallContext::default(),
        json!({"message": "after"}),
        "{}",
    )
    .await
    .expect("the runtime still serves")
    .unwrap();
    assert_eq!(out.message.body, b"{}");
}

/// The plugin still answers after whatever happened before.
async fn still_serves(plugin: &Plugin) {
    let out = run(
        plugin,
        &CallContext::default(),
        json!({"mode": "echo"}),
        r#"{"alive": true}"#,
    )
    .await
    .expect("the plugin still serves")
    .unwrap();
    assert_eq!(body(&out), json!({"alive": true}));
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_its_deadline() {
    let (_rt, plugin) = hostile().await;
    assert_eq!(plugin.deadline(), Duration::from_millis(200));
    let started = Instant::now();
    let err = run(
        &plugin,
        &CallContext::default(),
        json!({"mode": "spin"}),
        "{}",
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.cause, CallFailure::Deadline(200));
    assert_eq!(
        err.to_string(),
        "plugin `hostile@1.0.0` ran past its 200 ms deadline and was stopped (in `invoke`)"
    );
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    still_serves(&plugin).await;
}

#[tokio::test]
async fn unbounded_memory_growth_is_stopped_at_the_cap() {
    let (_rt, plugin) = hostile().await;
    let err = run(
        &plugin,
        &CallContext::default(),
        json!({"mode": "grow"}),
        "{}",
    )
    .await
    .unwrap_err();
    assert_eq!(err.cause, CallFailure::MemoryCap(32));
    assert_eq!(
        err.to_string(),
        "plugin `hostile@1.0.0` hit its 32 MiB memory cap (in `invoke`)"
    );
    still_serves(&plugin).await;
}

#[tokio::test]
async fn a_panic_is_reported_with_its_message() {
    let (_rt, plugin) = hostile().await;
    let err = run(
        &plugin,
        &CallContext::default(),
        json!({"mode": "panic"}),
        "{}",
    )
    .await
    .unwrap_err();
    let CallFailure::Panic(message) = &err.cause else {
        panic!("expected a panic, got {err}");
    };
    assert!(
        message.contains("the hostile guest panics on purpose"),
        "{message}"
    );
    still_serves(&plugin).await;
}

#[tokio::test]
async fn a_trap_is_reported() {
    let (_rt, plugin) = hostile().await;
    let err = run(
        &plugin,
        &CallContext::default(),
        json!({"mode": "trap"}),
        "{}",
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.cause,
        CallFailure::Trap("wasm `unreachable` instruction executed".into())
    );
    still_serves(&plugin).await;
}

#[tokio::test]
async fn a_filesystem_import_is_refused_at_load() {
    let rt = runtime();
    let err = rt.load(&guest("fs-reader")).await.unwrap_err();
    let LoadFailure::ForbiddenImport { import, reason } = &err.reason else {
        panic!("expected a refused import, got {err}");
    };
    assert!(import.starts_with("wasi:filesystem/"), "{import}");
    assert_eq!(*reason, "plugins get no filesystem access");
    assert!(
        err.to_string()
            .starts_with("cannot load plugin `fs-reader@1.0.0`: imports `wasi:filesystem/")
    );
    assert!(rt.catalog().list().is_empty());
    runtime_still_serves(&rt).await;
}

#[tokio::test]
async fn http_to_a_host_outside_the_manifest_is_denied() {
    let (_rt, plugin) = hostile().await;
    let ctx = CallContext::default();
    let port = echo_server().await;
    // The manifest allows 127.0.0.1 only: `localhost` is another host.
    let err = run(
        &plugin,
        &ctx,
        json!({"mode": "fetch", "url": format!("http://localhost:{port}/")}),
        "{}",
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(err.code, "denied");
    assert_eq!(
        err.message,
        format!("`localhost:{port}` is not among the hosts this plugin may call")
    );

    let out = run(
        &plugin,
        &ctx,
        json!({"mode": "fetch", "url": format!("http://127.0.0.1:{port}/ok")}),
        "{}",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(body(&out)["path"], "/ok");
}

#[tokio::test]
async fn waiting_on_http_does_not_count_against_the_deadline() {
    let (_rt, plugin) = hostile().await;
    let port = echo_server().await;
    // 400 ms waiting for the server, against a 200 ms deadline on the plugin's own code.
    let out = run(
        &plugin,
        &CallContext::default(),
        json!({"mode": "fetch", "url": format!("http://127.0.0.1:{port}/slow/400")}),
        "{}",
    )
    .await
    .expect("the wait is not the plugin's time")
    .unwrap();
    assert_eq!(body(&out)["path"], "/slow/400");
}

#[tokio::test]
async fn secrets_reach_a_plugin_only_when_listed_and_granted() {
    let (_rt, plugin) = hostile().await;
    let none = run(
        &plugin,
        &CallContext::default(),
        json!({"mode": "secret"}),
        "{}",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(body(&none), json!({"token": null, "unlisted": null}));

    let granted = CallContext {
        secrets: Arc::new(BTreeMap::from([
            ("token".to_string(), "s3cret".to_string()),
            ("unlisted".to_string(), "not for you".to_string()),
        ])),
        ..CallContext::default()
    };
    let seen = run(&plugin, &granted, json!({"mode": "secret"}), "{}")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body(&seen), json!({"token": "s3cret", "unlisted": null}));

    let settings = CallContext::with_settings(&json!({"region": "eu"}));
    let out = run(&plugin, &settings, json!({"mode": "settings"}), "{}")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body(&out), json!({"region": "eu"}));
}

#[tokio::test]
async fn a_component_of_another_world_is_refused() {
    let rt = runtime();
    let err = rt.load(&guest("wrong-world")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot load plugin `wrong-world@1.0.0`: declares kind `node-type` but does not export `slipway:plugin/node@0.1.0` (it exports: slipway:plugin/registry@0.1.0)"
    );
    runtime_still_serves(&rt).await;
}

#[tokio::test]
async fn bytes_that_are_not_a_component_are_refused() {
    let rt = runtime();
    let err = rt.load(b"#!/bin/sh\necho hi\n").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot load plugin: not a WebAssembly binary"
    );
    let core_module = b"\0asm\x01\0\0\0";
    let err = rt.load(core_module).await.unwrap_err();
    assert!(matches!(err.reason, LoadFailure::NotComponent), "{err}");
    let mut truncated = guest("hostile");
    truncated.truncate(truncated.len() / 2);
    let err = rt.load(&truncated).await.unwrap_err();
    assert!(matches!(err.reason, LoadFailure::Invalid(_)), "{err}");
    runtime_still_serves(&rt).await;
}

#[tokio::test]
async fn no_state_survives_between_calls() {
    let (_rt, plugin) = hostile().await;
    for _ in 0..3 {
        let out = run(
            &plugin,
            &CallContext::default(),
            json!({"mode": "count"}),
            "{}",
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            body(&out),
            json!(1),
            "every call starts from a fresh instance"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_succeed() {
    let rt = runtime();
    let plugin = install(&rt, crate::common::builtin("transform")).await;
    let node = plugin
        .translate(&CallContext::default(), &json!({"expression": ".n * 2"}))
        .await
        .unwrap()
        .unwrap()
        .node
        .to_string();
    let node: Arc<str> = Arc::from(node);
    let mut tasks = Vec::new();
    for n in 0..1000 {
        let plugin = plugin.clone();
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            let out = plugin
                .invoke(
                    &CallContext::default(),
                    &node,
                    slipway_runtime::Message::from_body(format!(r#"{{"n": {n}}}"#)),
                )
                .await
                .unwrap()
                .unwrap();
            assert_eq!(body(&out), json!(n * 2));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_call_does_not_stall_others() {
    let (_rt, plugin) = hostile().await;
    let spinner = {
        let plugin = plugin.clone();
        tokio::spawn(async move {
            run(
                &plugin,
                &CallContext::default(),
                json!({"mode": "spin"}),
                "{}",
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..3 {
        still_serves(&plugin).await;
    }
    assert!(
        !spinner.is_finished(),
        "the echo calls finished while the spinner ran"
    );
    assert_eq!(
        spinner.await.unwrap().unwrap_err().cause,
        CallFailure::Deadline(200)
    );
}

#[tokio::test]
async fn a_call_ends_at_its_wall_clock_cap_even_while_it_waits_on_the_host() {
    use slipway_runtime::{Egress, Runtime, RuntimeConfig};
    let rt = Runtime::new(RuntimeConfig {
        call_time_limit: Duration::from_millis(500),
        egress: Egress::loopback(),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let plugin = install(&rt, &guest("hostile")).await;
    let port = echo_server().await;
    // An hour's sleep, and fetches of a slow page without end: neither uses
    // the 200 ms of its own code the deadline counts.
    for config in [
        json!({"mode": "sleep"}),
        json!({"mode": "fetch-forever", "url": format!("http://127.0.0.1:{port}/slow/300")}),
    ] {
        let started = Instant::now();
        let err = run(&plugin, &CallContext::default(), config.clone(), "{}")
            .await
            .unwrap_err();
        assert_eq!(err.cause, CallFailure::WallClock(500), "{config}");
        assert!(started.elapsed() < Duration::from_secs(2), "{config}");
    }
    still_serves(&plugin).await;
}

#[tokio::test]
async fn a_manifest_cannot_ask_for_an_endless_deadline() {
    use slipway_runtime::{Runtime, RuntimeConfig};
    // The hostile guest asks for 200 ms.
    let rt = Runtime::new(RuntimeConfig {
        max_deadline: Duration::from_millis(100),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let err = rt.load(&guest("hostile")).await.unwrap_err();
    assert!(
        matches!(
            err.reason,
            LoadFailure::DeadlineTooLong {
                asked: 200,
                max: 100
            }
        ),
        "{err}"
    );
}

/// The pooling allocator resets a slot's memory between calls, with
/// `PAGEMAP_SCAN` where the kernel has it and swap is off, by clearing what
/// the slot keeps resident otherwise: either way, a call that leaves a secret
/// in hundreds of separate dirty pages leaves none of it to the next call.
#[tokio::test]
async fn memory_a_call_dirtied_is_clean_for_the_next() {
    for pagemap_scan in [true, false] {
        let rt = slipway_runtime::Runtime::new(slipway_runtime::RuntimeConfig {
            pagemap_scan,
            ..slipway_runtime::RuntimeConfig::default()
        })
        .unwrap();
        let plugin = install(&rt, &guest("hostile")).await;
        calls_leave_no_secret(&plugin, pagemap_scan).await;
    }
}

async fn calls_leave_no_secret(plugin: &Plugin, pagemap_scan: bool) {
    let secret = "the previous call's secret: 7c1f9e";
    for round in 0..20 {
        let dirty = json!({"mode": "dirty", "secret": secret});
        let out = run(plugin, &CallContext::default(), dirty, "{}")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body(&out), json!("dirtied"));
        let scan = json!({"mode": "scan", "secret": secret});
        let out = run(plugin, &CallContext::default(), scan, "{}")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            body(&out),
            json!(0),
            "round {round}, pagemap_scan {pagemap_scan}: the secret survived"
        );
    }
}

/// Running calls share a memory budget, and each tenant a part of it:
/// growth past either fails the call naming it, and the memory comes back
/// when the call ends.
#[tokio::test]
async fn memory_growth_stops_at_the_shared_and_the_tenants_budget() {
    let rt = slipway_runtime::Runtime::new(slipway_runtime::RuntimeConfig {
        memory_budget_mib: 24,
        tenant_memory_mib: 12,
        ..slipway_runtime::RuntimeConfig::default()
    })
    .unwrap();
    let plugin = install(&rt, &guest("hostile")).await;
    let tenant = CallContext {
        tenant: Some(7),
        ..CallContext::default()
    };
    for _ in 0..5 {
        let grow = json!({"mode": "grow"});
        let err = run(&plugin, &CallContext::default(), grow.clone(), "{}")
            .await
            .unwrap_err();
        assert_eq!(err.cause, CallFailure::MemoryBudget(24), "{err}");
        let err = run(&plugin, &tenant, grow, "{}").await.unwrap_err();
        assert_eq!(err.cause, CallFailure::TenantMemoryBudget(12), "{err}");
        assert!(
            err.to_string()
                .contains("its organisation's 12 MiB for running calls is in use"),
            "{err}"
        );
    }
    // Nothing stayed taken: ordinary calls, the tenant's too, still run.
    still_serves(&plugin).await;
    let out = run(&plugin, &tenant, json!({"mode": "echo"}), r#"{"ok": 1}"#)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body(&out), json!({"ok": 1}));
}
