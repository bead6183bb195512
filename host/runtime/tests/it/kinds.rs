//! Registry adapters and deploy targets load and answer through their worlds.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use slipway_runtime::kinds::{Credentials, RegistryError};
use slipway_runtime::{CallContext, Description, Kind};

use crate::common::{guest, install, runtime};

fn settings(secrets: &[(&str, &str)]) -> CallContext {
    CallContext {
        secrets: Arc::new(
            secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..CallContext::with_settings(
            &json!({"registry": "registry.example.com:5000", "prefix": "flows", "username": "ci"}),
        )
    }
}

#[tokio::test]
async fn a_registry_adapter_resolves_names_and_credentials() {
    let rt = runtime();
    let adapter = install(&rt, &guest("registry-fixed")).await;
    assert_eq!(adapter.manifest().kind, Kind::RegistryAdapter);
    assert!(matches!(adapter.description(), Description::Registry(_)));

    let ctx = settings(&[("password", "hunter2")]);
    let image = adapter
        .resolve_image(&ctx, "orders", "1.2.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        image.reference(),
        "registry.example.com:5000/flows/orders:1.2.0"
    );

    let err = adapter
        .resolve_image(&ctx, "Orders", "1")
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        RegistryError::InvalidName("`Orders` has uppercase letters".into())
    );

    let creds = adapter
        .authenticate(&ctx, &image, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        creds.credentials,
        Credentials::Basic {
            username: "ci".into(),
            password: "hunter2".into()
        }
    );
    assert!(
        !format!("{creds:?}").contains("hunter2"),
        "Debug hides the password"
    );

    let err = adapter
        .authenticate(&settings(&[]), &image, &[])
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        RegistryError::Unauthorized("no `password` secret was granted".into())
    );

    let problems = adapter
        .validate_settings(&ctx, &json!({"registry": "", "prefix": "x"}))
        .await
        .unwrap();
    assert_eq!(problems[0].path, "/username");

    // A node-type call on an adapter is refused, not attempted.
    let err = adapter.validate(&ctx, &json!({})).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `registry-fixed@1.0.0` is a registry-adapter plugin and has no such function (in `validate`)"
    );
}

#[tokio::test]
async fn a_deploy_target_renders_and_assesses() {
    let rt = runtime();
    let target = install(&rt, &guest("target-echo")).await;
    assert_eq!(target.manifest().kind, Kind::DeployTarget);
    let harness_input = json!({"name": "orders", "image": "r/flows/orders:1", "replicas": 2, "env": {"MODE": "prod"}});
    let harness = slipway_runtime::harness::Harness::from_bytes(&guest("target-echo"))
        .await
        .unwrap();
    let rendered = harness
        .call(slipway_runtime::harness::Call::Render, &harness_input)
        .await
        .unwrap();
    assert_eq!(
        rendered.value,
        json!([{"kind": "Workload", "name": "orders", "body": {"image": "r/flows/orders:1", "replicas": 2, "env": [{"name": "MODE", "value": "prod"}]}}])
    );
    let assess = |ready: u64| json!({"service": harness_input, "observed": [{"kind": "Workload", "name": "orders", "state": {"ready": ready}}]});
    let health = harness
        .call(slipway_runtime::harness::Call::Assess, &assess(1))
        .await
        .unwrap();
    assert_eq!(
        health.value,
        json!({"status": "progressing", "detail": "1 of 2 ready"})
    );
    let health = harness
        .call(slipway_runtime::harness::Call::Assess, &assess(2))
        .await
        .unwrap();
    assert_eq!(health.value, json!({"status": "healthy"}));

    let unobserved = harness
        .call(
            slipway_runtime::harness::Call::Assess,
            &json!({"service": harness_input, "observed": []}),
        )
        .await
        .unwrap();
    assert_eq!(
        unobserved.value,
        json!({"status": "progressing", "detail": "not created yet"})
    );
}
