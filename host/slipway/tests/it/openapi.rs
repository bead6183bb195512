//! The OpenAPI document: served without a token, it lists exactly the
//! routes the server answers, and every schema it refers to is in it.

use crate::common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::Value;
use slipway_store::Store;

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| refs(i, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_describes_every_route_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let admin = store.bootstrap("acme", None).unwrap().unwrap().token;
    let state = common::state(store);

    let (status, doc) = common::call(&state, "GET", "/api/v1/openapi.json", None, "", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Slipway API");

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let expected: BTreeSet<String> = [
        "GET /api/v1/me",
        "GET /api/v1/integrations",
        "POST /api/v1/integrations",
        "GET /api/v1/integrations/{name}",
        "DELETE /api/v1/integrations/{name}",
        "GET /api/v1/integrations/{name}/versions",
        "POST /api/v1/integrations/{name}/versions",
        "GET /api/v1/integrations/{name}/versions/{version}",
        "POST /api/v1/integrations/{name}/versions/{version}/validate",
        "GET /api/v1/plans",
        "POST /api/v1/plans",
        "GET /api/v1/plans/{id}",
        "DELETE /api/v1/plans/{id}",
        "POST /api/v1/plans/{id}/executions",
        "GET /api/v1/executions",
        "GET /api/v1/executions/{id}",
        "DELETE /api/v1/executions/{id}",
        "POST /api/v1/executions/{id}/pause",
        "POST /api/v1/executions/{id}/stop",
        "POST /api/v1/executions/{id}/resume",
        "POST /api/v1/executions/{id}/rollback",
        "GET /api/v1/executions/{id}/report",
        "GET /api/v1/executions/{id}/events",
        "GET /api/v1/plugins",
        "POST /api/v1/plugins",
        "GET /api/v1/plugins/{kind}/{name}",
        "DELETE /api/v1/plugins/{kind}/{name}/{version}",
        "PUT /api/v1/plugins/{kind}/{name}/allowed-hosts",
        "GET /api/v1/registry",
        "PUT /api/v1/registry",
        "GET /api/v1/registry/changes",
        "GET /api/v1/releases",
        "POST /api/v1/releases",
        "GET /api/v1/releases/{id}",
        "DELETE /api/v1/releases/{id}",
        "GET /api/v1/releases/{id}/events",
        "GET /api/v1/services",
        "POST /api/v1/services",
        "GET /api/v1/services/{id}",
        "PUT /api/v1/services/{id}",
        "DELETE /api/v1/services/{id}",
        "POST /api/v1/services/{id}/operations",
        "GET /api/v1/services/{id}/operations/{job}",
        "GET /api/v1/services/{id}/revisions",
        "GET /api/v1/services/{id}/logs",
        "GET /api/v1/targets",
        "GET /api/v1/targets/{name}",
        "PUT /api/v1/targets/{name}",
        "DELETE /api/v1/targets/{name}",
        "GET /api/v1/targets/{name}/changes",
        "GET /api/v1/users",
        "POST /api/v1/users",
        "DELETE /api/v1/users/{id}",
        "POST /api/v1/users/{id}/tokens",
        "DELETE /api/v1/users/{id}/tokens",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(documented, expected);

    // Each documented operation is routed: it never meets the fallback's
    // "no such resource" nor a 405.
    for operation in &documented {
        let (method, path) = operation.split_once(' ').unwrap();
        let concrete = path
            .replace("{kind}", "node-type")
            .replace("{version}/validate", "1/validate")
            .replace("versions/{version}", "versions/1")
            .replace("{version}", "1.0.0")
            .replace("{name}", "nosuch")
            .replace("{id}", "999999")
            .replace("{job}", "999999");
        let (status, body) = common::call(
            &state,
            method,
            &concrete,
            Some(&admin),
            "application/json",
            "{}",
        )
        .await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{operation}");
        assert_ne!(
            body["error"]["message"], "no such resource",
            "{operation} is not routed"
        );
    }

    // The bearer token scheme is declared, and every reference resolves.
    let schemes = doc["components"]["securitySchemes"]["token"].clone();
    assert_eq!(schemes["scheme"], "bearer");
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 20, "{found:?}");
    for target in found {
        let name = target.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{target} is missing"
        );
    }
    let release = &doc["components"]["schemas"]["Release"]["properties"];
    assert!(release["status"].is_object() && release["diagnostics"].is_object());
}
