//! The built-in node types, through the real sandbox.

use std::sync::Arc;

use serde_json::json;
use slipway_runtime::{CallContext, Description, HostPattern, Kind, Message};

use crate::common::{body, builtin, echo_server, install, run, runtime};

#[tokio::test]
async fn every_builtin_loads_and_describes_itself() {
    let rt = runtime();
    for name in ["http-trigger", "http-call", "transform", "choice", "log"] {
        let plugin = install(&rt, builtin(name)).await;
        assert_eq!(plugin.manifest().kind, Kind::NodeType);
        assert_eq!(plugin.manifest().name, name);
        assert_eq!(plugin.world_version(), "0.1.0");
        assert_eq!(plugin.sha256().len(), 64);
        let Description::Node(info) = plugin.description() else {
            panic!("{name} is not described as a node type");
        };
        assert_eq!(info.name, name);
        assert!(info.config_schema.is_object(), "{name} has a schema");
        assert_eq!(info.trigger, name == "http-trigger");
    }
}

#[tokio::test]
async fn transform_maps_json_with_jq() {
    let rt = runtime();
    let transform = install(&rt, builtin("transform")).await;
    let ctx = CallContext::default();
    let out = run(
        &transform,
        &ctx,
        json!({"expression": "{id: .order.id, total: (.order.items | map(.price) | add)}"}),
        r#"{"order": {"id": 7, "items": [{"price": 2.5}, {"price": 4}]}}"#,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.port, "out");
    assert_eq!(body(&out), json!({"id": 7, "total": 6.5}));

    let collected = run(
        &transform,
        &ctx,
        json!({"expression": ".[] | . * 2", "collect": true}),
        "[1, 2, 3]",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(body(&collected), json!([2, 4, 6]));
}

#[tokio::test]
async fn transform_reports_problems_precisely() {
    let rt = runtime();
    let transform = install(&rt, builtin("transform")).await;
    let ctx = CallContext::default();

    let problems = transform
        .validate(&ctx, &json!({"expression": ".a | nosuch(1)"}))
        .await
        .unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "/expression");
    assert_eq!(
        problems[0].message,
        "undefined filter `nosuch` at character 6"
    );

    let problems = transform
        .validate(&ctx, &json!({"expresion": "."}))
        .await
        .unwrap();
    assert_eq!(problems[0].path, "/expresion");
    assert!(problems[0].message.starts_with("unknown field `expresion`"));

    let problems = transform.validate(&ctx, &json!({})).await.unwrap();
    assert_eq!(problems[0].path, "/expression");
    assert_eq!(problems[0].message, "missing field `expression`");

    let err = run(&transform, &ctx, json!({"expression": ".a"}), "not json")
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code, "transform-failed");
    assert_eq!(err.status, Some(400));
}

#[tokio::test]
async fn choice_routes_by_condition() {
    let rt = runtime();
    let choice = install(&rt, builtin("choice")).await;
    let ctx = CallContext::default();
    let config = json!({
        "routes": [
            {"when": ".total > 100", "port": "large"},
            {"when": ".total > 10", "port": "medium"}
        ],
        "otherwise": "small"
    });
    let translated = choice.translate(&ctx, &config).await.unwrap().unwrap();
    assert_eq!(translated.outputs, ["large", "medium", "small"]);
    for (total, port) in [(500, "large"), (50, "medium"), (5, "small")] {
        let out = choice
            .invoke(
                &ctx,
                &translated.node.to_string(),
                Message::from_body(format!(r#"{{"total": {total}}}"#)),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.port, port, "total {total}");
    }

    let strict = json!({"routes": [{"when": ".ok", "port": "yes"}]});
    let err = run(&choice, &ctx, strict, r#"{"ok": false}"#)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code, "no-route");

    let problems = choice
        .validate(&ctx, &json!({"routes": [{"when": ".a ==", "port": "ok"}, {"when": "true", "port": "Bad Port"}]}))
        .await
        .unwrap();
    let paths: Vec<&str> = problems.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/routes/0/when", "/routes/1/port"]);
}

#[tokio::test]
async fn http_trigger_checks_method_and_path() {
    let rt = runtime();
    let trigger = install(&rt, builtin("http-trigger")).await;
    let ctx = CallContext::default();
    let problems = trigger
        .validate(&ctx, &json!({"method": "FETCH", "path": "orders/{id}"}))
        .await
        .unwrap();
    let paths: Vec<&str> = problems.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/method", "/path"]);

    let translated = trigger
        .translate(&ctx, &json!({"method": "post", "path": "/orders/{id}"}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        translated.node,
        json!({"method": "POST", "path": "/orders/{id}"})
    );
    assert_eq!(translated.outputs, ["out"]);

    let mut request = Message::from_body("{}");
    request
        .attributes
        .push(("http.method".into(), "GET".into()));
    let err = trigger
        .invoke(&ctx, &translated.node.to_string(), request)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.status, Some(405));
}

#[tokio::test]
async fn http_call_reaches_granted_hosts_only() {
    let rt = runtime();
    let call = install(&rt, builtin("http-call")).await;
    let port = echo_server().await;
    let config = json!({"url": format!("http://127.0.0.1:{port}/orders"), "method": "POST"});
    let translated = call
        .translate(&CallContext::default(), &config)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(translated.node["host"], format!("127.0.0.1:{port}"));

    // The engine grants each node the host its URL names.
    let granted = CallContext {
        allowed_hosts: Some(Arc::from([HostPattern::try_from(format!(
            "127.0.0.1:{port}"
        ))
        .unwrap()])),
        ..CallContext::default()
    };
    let out = call
        .invoke(
            &granted,
            &translated.node.to_string(),
            Message::from_body(r#"{"n": 1}"#),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.message.attribute("http.status"), Some("200"));
    assert_eq!(
        body(&out),
        json!({"method": "POST", "path": "/orders", "body": "{\"n\": 1}"})
    );

    let elsewhere = CallContext {
        allowed_hosts: Some(Arc::from([HostPattern::try_from(
            "api.example.com".to_string(),
        )
        .unwrap()])),
        ..CallContext::default()
    };
    let err = call
        .invoke(
            &elsewhere,
            &translated.node.to_string(),
            Message::from_body("{}"),
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code, "denied");
    assert_eq!(
        err.message,
        format!("`127.0.0.1:{port}` is not among the hosts this plugin may call")
    );

    // A Host header naming another site on the granted address is refused;
    // one naming the URL's own host goes.
    for (host, allowed) in [
        ("metadata.internal".to_string(), false),
        (format!("127.0.0.1:{port}"), true),
    ] {
        let config = json!({"url": format!("http://127.0.0.1:{port}/orders"),
            "headers": {"Host": host}});
        let node = call
            .translate(&CallContext::default(), &config)
            .await
            .unwrap()
            .unwrap()
            .node;
        let out = call
            .invoke(&granted, &node.to_string(), Message::from_body("{}"))
            .await
            .unwrap();
        match out {
            Ok(out) => {
                assert!(allowed, "{host} went through");
                assert_eq!(out.message.attribute("http.status"), Some("200"));
            }
            Err(err) => {
                assert!(!allowed, "{host}: {err:?}");
                assert_eq!(err.code, "denied");
                assert_eq!(
                    err.message,
                    format!("the Host header `{host}` does not name the URL's host `127.0.0.1`")
                );
            }
        }
    }

    let failing = json!({"url": format!("http://127.0.0.1:{port}/status/503")});
    let err = crate::common::run(&call, &granted, failing, "{}")
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code, "upstream-status");
    assert_eq!(err.status, Some(502));
}

#[tokio::test]
async fn log_passes_messages_on() {
    let rt = runtime();
    let log = install(&rt, builtin("log")).await;
    let ctx = CallContext::default();
    let out = run(
        &log,
        &ctx,
        json!({"message": "order seen", "includeBody": true}),
        r#"{"a": 1}"#,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.message.body, br#"{"a": 1}"#);
    let problems = log
        .validate(&ctx, &json!({"message": "x", "level": "loud"}))
        .await
        .unwrap();
    assert_eq!(problems[0].path, "/level");
}
