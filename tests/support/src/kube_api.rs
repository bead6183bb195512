//! A Kubernetes API server as Slipway's Kubernetes driver meets it,
//! following the real protocol for what the driver uses:
//! - discovery: `GET /api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`;
//! - server-side apply: `PATCH` with `Content-Type:
//!   application/apply-patch+yaml` and `fieldManager` (415 for another
//!   content type, 422 without a field manager or for an invalid object, 409
//!   when another manager owns a field with another value and `force` is
//!   not set), each manager's applied configuration kept apart and the
//!   object their merge;
//! - `GET`, `LIST` with `labelSelector`, `DELETE` with `propagationPolicy`
//!   (`Foreground` keeps the object with a `deletionTimestamp` until its
//!   pods are gone, `Background` removes it and then its pods, `Orphan`
//!   leaves the pods), and pod logs;
//! - 401 without the bearer token, 404 with a `NotFound` status;
//! - a controller that advances status as the real ones do: a new
//!   generation observed a tick later; Deployments rolled by their
//!   `maxSurge`/`maxUnavailable`; StatefulSets one ordinal at a time or in
//!   parallel; Jobs complete or fail; pods that never turn ready (an image
//!   whose reference contains `crash`) make a Deployment pass its progress
//!   deadline; pods asking more than the one node has stay pending with the
//!   scheduler's reason.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// How often the controller advances.
pub const TICK: Duration = Duration::from_millis(25);
/// Ticks a scheduled pod takes to turn ready.
const READY_TICKS: u64 = 3;
/// The one node's allocatable CPU, in millicores.
pub const NODE_CPU_MILLIS: u64 = 4000;
/// The one node's allocatable memory.
pub const NODE_MEMORY: u64 = 8 << 30;

/// A resource the server serves: group/version, plural, kind.
const RESOURCES: &[(&str, &str, &str)] = &[
    ("v1", "pods", "Pod"),
    ("v1", "services", "Service"),
    ("v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ("v1", "configmaps", "ConfigMap"),
    ("apps/v1", "deployments", "Deployment"),
    ("apps/v1", "statefulsets", "StatefulSet"),
    ("batch/v1", "jobs", "Job"),
];

/// An object by resource, namespace and name.
type Key = (String, String, String);

#[derive(Default)]
struct Cluster {
    objects: BTreeMap<Key, Stored>,
    tick: u64,
    version: u64,
    uid: u64,
    ports: u16,
}

struct Stored {
    /// Each field manager's applied configuration, in the order they came.
    applied: Vec<(String, Value)>,
    /// The object as served: the merge of the configurations, metadata the
    /// server keeps, and status.
    object: Value,
    /// When it was created, in ticks.
    born: u64,
    /// Workloads: the tick of the last progress.
    progressed: u64,
    /// Pods: log lines.
    log: Vec<String>,
}

/// The test API server.
pub struct FakeKube {
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// The bearer token it wants.
    pub token: String,
    /// Every request, as `METHOD path?query content-type`, a delete's body
    /// after it.
    pub requests: Mutex<Vec<String>>,
    cluster: Mutex<Cluster>,
    started: Instant,
}

impl FakeKube {
    /// Serves on 127.0.0.1 and runs the controller until dropped.
    pub async fn start(token: &str) -> Arc<FakeKube> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Arc::new(FakeKube {
            url: format!("http://{}", listener.local_addr().unwrap()),
            token: token.into(),
            requests: Mutex::default(),
            cluster: Mutex::default(),
            started: Instant::now(),
        });
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(Arc::downgrade(&fake));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let weak = Arc::downgrade(&fake);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                let Some(fake) = weak.upgrade() else { return };
                fake.cluster.lock().unwrap().advance();
            }
        });
        fake
    }

    /// The object `name` of `resource` (a plural) in `namespace`.
    pub fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let cluster = self.cluster.lock().unwrap();
        cluster
            .objects
            .get(&(resource.into(), namespace.into(), name.into()))
            .map(|s| s.object.clone())
    }

    /// The names of the objects of `resource` in `namespace`.
    pub fn names(&self, resource: &str, namespace: &str) -> Vec<String> {
        let cluster = self.cluster.lock().unwrap();
        cluster
            .objects
            .keys()
            .filter(|(r, n, _)| r == resource && n == namespace)
            .map(|(_, _, name)| name.clone())
            .collect()
    }

    /// The requests whose line starts with `prefix`.
    pub fn requests_like(&self, prefix: &str) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Milliseconds since the server started.
    pub fn uptime_ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }
}

fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The query's pairs, `?&` and a bare `?` included.
fn query(request: &Request) -> BTreeMap<String, String> {
    form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn serve(State(fake): State<Weak<FakeKube>>, request: Request) -> Response {
    let Some(fake) = fake.upgrade() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let line = format!("{} {} {content_type}", request.method(), request.uri());
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method().clone();
    let params = query(&request);
    let body = to_bytes(request.into_body(), 4 << 20)
        .await
        .unwrap_or_default();
    // A delete's options are in its body.
    let line = if method == Method::DELETE {
        format!("{line} {}", String::from_utf8_lossy(&body))
    } else {
        line
    };
    fake.requests.lock().unwrap().push(line);
    if bearer.as_deref() != Some(fake.token.as_str()) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    // Discovery.
    match segments.as_slice() {
        ["api"] => return ok(json!({"kind": "APIVersions", "versions": ["v1"]})),
        ["apis"] => {
            let groups: Vec<Value> = ["apps", "batch"]
                .iter()
                .map(|g| {
                    let version = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
                    json!({"name": g, "versions": [version], "preferredVersion": version})
                })
                .collect();
            return ok(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}));
        }
        ["api", "v1"] => return ok(resource_list("v1")),
        ["apis", group, version] => {
            let gv = format!("{group}/{version}");
            if !RESOURCES.iter().any(|(g, _, _)| *g == gv) {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "the server could not find the requested resource",
                );
            }
            return ok(resource_list(&gv));
        }
        _ => {}
    }
    let (gv, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
    };
    let (namespace, resource, name, sub) = match rest {
        ["namespaces", ns, resource] => (*ns, *resource, None, None),
        ["namespaces", ns, resource, name] => (*ns, *resource, Some(*name), None),
        ["namespaces", ns, resource, name, sub] => (*ns, *resource, Some(*name), Some(*sub)),
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
    };
    let Some((_, _, kind)) = RESOURCES
        .iter()
        .find(|(g, r, _)| *g == gv && *r == resource)
    else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let key = |name: &str| {
        (
            resource.to_string(),
            namespace.to_string(),
            name.to_string(),
        )
    };
    match (method, name, sub) {
        (Method::GET, None, None) => {
            let cluster = fake.cluster.lock().unwrap();
            let selector = params.get("labelSelector").cloned().unwrap_or_default();
            let items: Vec<Value> = cluster
                .objects
                .iter()
                .filter(|((r, n, _), s)| {
                    r == resource && n == namespace && selected(&s.object, &selector)
                })
                .map(|(_, s)| s.object.clone())
                .collect();
            ok(json!({
                "kind": format!("{kind}List"),
                "apiVersion": gv,
                "metadata": {"resourceVersion": cluster.version.to_string()},
                "items": items,
            }))
        }
        (Method::GET, Some(name), None) => {
            let cluster = fake.cluster.lock().unwrap();
            match cluster.objects.get(&key(name)) {
                Some(stored) => ok(stored.object.clone()),
                None => not_found(resource, name),
            }
        }
        (Method::GET, Some(name), Some("log")) if resource == "pods" => {
            logs(&fake, key(name), &params)
        }
        (Method::PATCH, Some(name), None) => {
            if content_type != "application/apply-patch+yaml" {
                return status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {content_type}"
                    ),
                );
            }
            let Some(manager) = params.get("fieldManager").filter(|m| !m.is_empty()) else {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                );
            };
            let force = params.get("force").is_some_and(|f| f == "true");
            let Ok(config) = serde_json::from_slice::<Value>(&body) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the body does not parse",
                );
            };
            let mut cluster = fake.cluster.lock().unwrap();
            cluster.apply(key(name), &gv, kind, manager, force, config)
        }
        (Method::DELETE, Some(name), None) => {
            let options: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            let policy = options["propagationPolicy"]
                .as_str()
                .unwrap_or("Background")
                .to_string();
            let mut cluster = fake.cluster.lock().unwrap();
            cluster.delete(key(name), kind, &policy)
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
    }
}

fn not_found(resource: &str, name: &str) -> Response {
    let group = RESOURCES
        .iter()
        .find(|(_, r, _)| *r == resource)
        .map(|(g, _, _)| g.split_once('/').map_or("", |(g, _)| g))
        .unwrap_or_default();
    let what = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{what} \"{name}\" not found"),
    )
}

fn resource_list(gv: &str) -> Value {
    let mut resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|(g, _, _)| *g == gv)
        .map(|(_, plural, kind)| {
            json!({
                "name": plural,
                "singularName": kind.to_ascii_lowercase(),
                "namespaced": true,
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            })
        })
        .collect();
    if gv == "v1" {
        resources.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// Whether `object`'s labels match `selector` (`a=b,c=d`, `a==b`, `a!=b`).
fn selected(object: &Value, selector: &str) -> bool {
    let labels = &object["metadata"]["labels"];
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k.trim()].as_str() != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels[k.trim()].as_str() == Some(v.trim())
        } else {
            !labels[term.trim()].is_null()
        }
    })
}

fn logs(fake: &Arc<FakeKube>, key: Key, params: &BTreeMap<String, String>) -> Response {
    let lines = {
        let cluster = fake.cluster.lock().unwrap();
        let Some(stored) = cluster.objects.get(&key) else {
            return not_found("pods", &key.2);
        };
        stored.log.clone()
    };
    let tail = params
        .get("tailLines")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let skip = lines.len().saturating_sub(tail);
    let first: String = lines[skip..].iter().map(|l| format!("{l}\n")).collect();
    if params.get("follow").is_none_or(|f| f != "true") {
        return (StatusCode::OK, first).into_response();
    }
    // Follows until the pod is gone.
    let weak = Arc::downgrade(fake);
    let stream = futures_stream(weak, key, lines.len(), first);
    (StatusCode::OK, Body::from_stream(stream)).into_response()
}

fn futures_stream(
    fake: Weak<FakeKube>,
    key: Key,
    seen: usize,
    first: String,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> + Send {
    let state = (fake, key, seen, Some(first));
    futures::stream::unfold(state, |(fake, key, seen, first)| async move {
        if let Some(first) = first {
            return Some((Ok(first), (fake, key, seen, None)));
        }
        loop {
            tokio::time::sleep(TICK).await;
            let fake = fake.upgrade()?;
            let lines = {
                let cluster = fake.cluster.lock().unwrap();
                cluster.objects.get(&key)?.log.clone()
            };
            if lines.len() > seen {
                let chunk: String = lines[seen..].iter().map(|l| format!("{l}\n")).collect();
                let seen = lines.len();
                return Some((Ok(chunk), (Arc::downgrade(&fake), key, seen, None)));
            }
        }
    })
}

/// Merges `from` into `into`: objects key by key, anything else replaced.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (k, v) in from {
                merge(into.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (into, from) => *into = from.clone(),
    }
}

/// The leaf paths where `a` and `b` both set a value and disagree.
fn conflicts(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if let Some(w) = b.get(k) {
                    conflicts(v, w, &format!("{path}.{k}"), out);
                }
            }
        }
        (a, b) if a != b => out.push(path.to_string()),
        _ => {}
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// What the API server's validation would refuse in `object` of `kind`.
fn invalid(kind: &str, object: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if !is_dns_subdomain(name) {
        problems.push(format!("metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"));
    }
    if let Some(template) = object["spec"].get("template") {
        if let Some(replicas) = object["spec"]["replicas"].as_i64()
            && replicas < 0
        {
            problems.push(format!(
                "spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
            ));
        }
        let containers = template["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if containers.is_empty() {
            problems.push("spec.template.spec.containers: Required value".into());
        }
        for (i, c) in containers.iter().enumerate() {
            if c["image"].as_str().unwrap_or_default().is_empty() {
                problems.push(format!(
                    "spec.template.spec.containers[{i}].image: Required value"
                ));
            }
        }
        if kind != "Job" {
            let wanted = object["spec"]["selector"]["matchLabels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let labels = &template["metadata"]["labels"];
            if wanted.is_empty() || wanted.iter().any(|(k, v)| &labels[k] != v) {
                problems.push("spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`".into());
            }
        }
    }
    problems
}

/// What an update may not change in a `kind`'s spec, as the API server
/// refuses it.
fn immutable(kind: &str, old: &Value, new: &Value) -> Option<String> {
    match kind {
        "StatefulSet" => {
            let fixed = |spec: &Value| {
                let mut spec = spec.clone();
                if let Some(spec) = spec.as_object_mut() {
                    for field in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        spec.remove(field);
                    }
                }
                spec
            };
            (fixed(old) != fixed(new)).then(|| "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".to_string())
        }
        "Deployment" => (old["selector"] != new["selector"]).then(|| {
            format!(
                "spec.selector: Invalid value: {}: field is immutable",
                new["selector"]
            )
        }),
        "Job" => (old["template"] != new["template"])
            .then(|| "spec.template: Invalid value: field is immutable".to_string()),
        _ => None,
    }
}

/// A short hash of `value`, as a pod-template-hash.
fn hash(value: &Value) -> String {
    let text = value.to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

/// A quantity (`500m`, `2`, `256Mi`, `1G`) in milli-units when `milli`,
/// else in units.
fn quantity(text: &str, milli: bool) -> u64 {
    let text = text.trim();
    let (number, factor): (&str, f64) = if let Some(n) = text.strip_suffix('m') {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("Ki") {
        (n, 1024.0)
    } else if let Some(n) = text.strip_suffix("Mi") {
        (n, 1024.0 * 1024.0)
    } else if let Some(n) = text.strip_suffix("Gi") {
        (n, 1024.0 * 1024.0 * 1024.0)
    } else if let Some(n) = text.strip_suffix('k') {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('M') {
        (n, 1e6)
    } else if let Some(n) = text.strip_suffix('G') {
        (n, 1e9)
    } else {
        (text, 1.0)
    };
    let value = number.parse::<f64>().unwrap_or(0.0) * factor;
    (if milli { value * 1000.0 } else { value }) as u64
}

/// Why the scheduler cannot place a pod of `template`, if it cannot.
fn unschedulable(template: &Value) -> Option<String> {
    let containers = template["spec"]["containers"].as_array()?;
    let (mut cpu, mut memory) = (0, 0);
    for c in containers {
        let requests = &c["resources"]["requests"];
        cpu += requests["cpu"].as_str().map_or(0, |q| quantity(q, true));
        memory += match &requests["memory"] {
            Value::String(q) => quantity(q, false),
            Value::Number(n) => n.as_u64().unwrap_or(0),
            _ => 0,
        };
    }
    let mut short = Vec::new();
    if cpu > NODE_CPU_MILLIS {
        short.push("1 Insufficient cpu");
    }
    if memory > NODE_MEMORY {
        short.push("1 Insufficient memory");
    }
    (!short.is_empty()).then(|| {
        format!(
            "0/1 nodes are available: {}. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
            short.join(", ")
        )
    })
}

fn now_rfc3339(tick: u64) -> String {
    // A fixed day, seconds advancing with the ticks: enough for ordering.
    let seconds = tick * TICK.as_millis() as u64 / 1000;
    format!(
        "2026-01-01T{:02}:{:02}:{:02}Z",
        (seconds / 3600) % 24,
        (seconds / 60) % 60,
        seconds % 60
    )
}

impl Cluster {
    fn next_version(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }

    fn apply(
        &mut self,
        key: Key,
        gv: &str,
        kind: &str,
        manager: &str,
        force: bool,
        config: Value,
    ) -> Response {
        let name = key.2.clone();
        if config["apiVersion"] != gv || config["kind"] != kind {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "the API version and kind in the body ({} {}) do not match the request ({gv} {kind})",
                    config["apiVersion"], config["kind"]
                ),
            );
        }
        if config["metadata"]["name"] != name.as_str() {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            );
        }
        if let Some(ns) = config["metadata"]["namespace"].as_str()
            && ns != key.1
        {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            );
        }
        let mut applied = self
            .objects
            .get(&key)
            .map(|s| s.applied.clone())
            .unwrap_or_default();
        if !force {
            let mut found = Vec::new();
            for (other, theirs) in applied.iter().filter(|(m, _)| m != manager) {
                let mut paths = Vec::new();
                conflicts(&config, theirs, "", &mut paths);
                found.extend(
                    paths
                        .into_iter()
                        .map(|p| format!("conflict with \"{other}\": {p}")),
                );
            }
            if !found.is_empty() {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Apply failed with {} conflict(s): {}",
                        found.len(),
                        found.join("; ")
                    ),
                );
            }
        }
        match applied.iter_mut().find(|(m, _)| m == manager) {
            Some((_, mine)) => *mine = config,
            None => applied.push((manager.to_string(), config)),
        }
        let mut object = json!({});
        for (_, config) in &applied {
            merge(&mut object, config);
        }
        let problems = invalid(kind, &object);
        if !problems.is_empty() {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!(
                    "{kind}.{} \"{name}\" is invalid: {}",
                    gv.split('/').next().unwrap_or_default(),
                    problems.join(", ")
                ),
            );
        }
        let previous = self.objects.get(&key).map(|s| s.object.clone());
        if let Some(old) = &previous
            && let Some(problem) = immutable(kind, &old["spec"], &object["spec"])
        {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!(
                    "{kind}.{} \"{name}\" is invalid: {problem}",
                    gv.split('/').next().unwrap_or_default()
                ),
            );
        }
        let tick = self.tick;
        let version = self.next_version();
        let (uid, created, generation, old_status) = match &previous {
            Some(old) => {
                let changed = old["spec"] != object["spec"];
                let generation =
                    old["metadata"]["generation"].as_i64().unwrap_or(1) + i64::from(changed);
                (
                    old["metadata"]["uid"].clone(),
                    old["metadata"]["creationTimestamp"].clone(),
                    generation,
                    old["status"].clone(),
                )
            }
            None => {
                self.uid += 1;
                (
                    json!(format!("00000000-0000-4000-8000-{:012}", self.uid)),
                    json!(now_rfc3339(tick)),
                    1,
                    json!({}),
                )
            }
        };
        let metadata = object["metadata"].as_object_mut().expect("metadata");
        metadata.insert("uid".into(), uid);
        metadata.insert("creationTimestamp".into(), created);
        metadata.insert("resourceVersion".into(), json!(version));
        metadata.insert("generation".into(), json!(generation));
        metadata.insert("namespace".into(), json!(key.1));
        metadata.insert(
            "managedFields".into(),
            Value::Array(
                applied
                    .iter()
                    .map(|(m, _)| json!({"manager": m, "operation": "Apply", "apiVersion": gv, "fieldsType": "FieldsV1"}))
                    .collect(),
            ),
        );
        if kind == "Service" {
            let spec = &mut object["spec"];
            spec["clusterIP"] = json!(format!("10.96.0.{}", 10 + self.uid % 200));
            if matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"))
                && let Some(ports) = spec["ports"].as_array_mut()
            {
                for port in ports {
                    self.ports += 1;
                    port["nodePort"] = json!(30000 + self.ports % 2768);
                }
            }
        }
        object["status"] = old_status;
        let stored = self.objects.entry(key).or_insert_with(|| Stored {
            applied: Vec::new(),
            object: Value::Null,
            born: tick,
            progressed: tick,
            log: Vec::new(),
        });
        stored.applied = applied;
        stored.object = object.clone();
        if previous
            .as_ref()
            .is_some_and(|p| p["spec"] != object["spec"])
        {
            stored.progressed = tick;
        }
        ok(object)
    }

    fn delete(&mut self, key: Key, kind: &str, policy: &str) -> Response {
        let Some(stored) = self.objects.get_mut(&key) else {
            return not_found(&key.0, &key.2);
        };
        let uid = stored.object["metadata"]["uid"].clone();
        match policy {
            "Foreground" => {
                let tick = self.tick;
                let stored = self.objects.get_mut(&key).expect("present");
                let metadata = &mut stored.object["metadata"];
                metadata["deletionTimestamp"] = json!(now_rfc3339(tick));
                metadata["finalizers"] = json!(["foregroundDeletion"]);
                let object = stored.object.clone();
                self.next_version();
                ok(object)
            }
            "Background" | "Orphan" => {
                self.objects.remove(&key);
                if policy == "Orphan" {
                    for stored in self.objects.values_mut() {
                        let owned = stored.object["metadata"]["ownerReferences"]
                            .as_array()
                            .is_some_and(|o| o.iter().any(|r| r["uid"] == uid));
                        if owned {
                            stored.object["metadata"]
                                .as_object_mut()
                                .expect("metadata")
                                .remove("ownerReferences");
                        }
                    }
                }
                self.next_version();
                ok(json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {"name": key.2, "kind": key.0, "uid": uid, "group": kind},
                }))
            }
            other => status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!(
                    "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                ),
            ),
        }
    }

    /// One controller tick.
    fn advance(&mut self) {
        self.tick += 1;
        let tick = self.tick;
        // Garbage collection: pods whose owner is gone; owners in
        // foreground deletion once their pods are gone.
        let uids: Vec<Value> = self
            .objects
            .values()
            .map(|s| s.object["metadata"]["uid"].clone())
            .collect();
        let owned: Vec<Value> = self
            .objects
            .values()
            .map(|s| s.object["metadata"]["ownerReferences"][0]["uid"].clone())
            .collect();
        let deleting: Vec<Value> = self
            .objects
            .values()
            .filter(|s| !s.object["metadata"]["deletionTimestamp"].is_null())
            .map(|s| s.object["metadata"]["uid"].clone())
            .collect();
        self.objects.retain(|_, s| {
            let owners = s.object["metadata"]["ownerReferences"].as_array().cloned();
            match owners {
                Some(owners) => owners
                    .iter()
                    .all(|o| uids.contains(&o["uid"]) && !deleting.contains(&o["uid"])),
                None => true,
            }
        });
        self.objects.retain(|_, s| {
            let uid = &s.object["metadata"]["uid"];
            !deleting.contains(uid) || owned.contains(uid)
        });
        // Pods turn ready, or do not.
        for ((resource, _, name), stored) in self.objects.iter_mut() {
            if resource != "pods" {
                continue;
            }
            let pod = &mut stored.object;
            if pod["status"]["phase"] != "Pending" && pod["status"]["phase"] != "Running" {
                continue;
            }
            if let Some(reason) = unschedulable(&json!({"spec": pod["spec"].clone()})) {
                pod["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": reason}]);
                continue;
            }
            let image = pod["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let age = tick - stored.born;
            if age < READY_TICKS {
                continue;
            }
            if image.contains("crash") {
                let restarts = age / READY_TICKS;
                pod["status"]["phase"] = json!("Running");
                pod["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]);
                pod["status"]["containerStatuses"] = json!([{"name": pod["spec"]["containers"][0]["name"], "ready": false, "restartCount": restarts, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]);
                continue;
            }
            let job = pod["metadata"]["labels"]["job-name"].is_string();
            if job {
                let failed = image.contains("fail");
                pod["status"]["phase"] = json!(if failed { "Failed" } else { "Succeeded" });
                stored
                    .log
                    .push(format!("{name} ran {image}: exit {}", i32::from(failed)));
            } else if pod["status"]["phase"] != "Running" {
                pod["status"]["phase"] = json!("Running");
                pod["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]);
                pod["status"]["containerStatuses"] = json!([{"name": pod["spec"]["containers"][0]["name"], "ready": true, "restartCount": 0, "state": {"running": {}}}]);
                stored.log.push(format!("{name} is ready"));
            }
        }
        // Workloads.
        let workloads: Vec<Key> = self
            .objects
            .keys()
            .filter(|(r, _, _)| matches!(r.as_str(), "deployments" | "statefulsets" | "jobs"))
            .cloned()
            .collect();
        for key in workloads {
            match key.0.as_str() {
                "deployments" => self.roll_deployment(&key),
                "statefulsets" => self.roll_stateful_set(&key),
                _ => self.run_job(&key),
            }
        }
    }

    /// The pods `uid` owns, as (name, template hash, ready).
    fn pods_of(&self, namespace: &str, uid: &Value) -> Vec<(String, String, bool)> {
        self.objects
            .iter()
            .filter(|((r, n, _), s)| {
                r == "pods"
                    && n == namespace
                    && s.object["metadata"]["ownerReferences"][0]["uid"] == *uid
            })
            .map(|((_, _, name), s)| {
                (
                    name.clone(),
                    s.object["metadata"]["labels"]["pod-template-hash"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    s.object["status"]["conditions"]
                        .as_array()
                        .is_some_and(|c| {
                            c.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        }),
                )
            })
            .collect()
    }

    fn create_pod(
        &mut self,
        namespace: &str,
        name: &str,
        owner: &Value,
        template: &Value,
        extra: Map<String, Value>,
    ) {
        let mut labels = template["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        labels.extend(extra);
        self.uid += 1;
        let tick = self.tick;
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": format!("00000000-0000-4000-8000-{:012}", self.uid),
                "labels": labels,
                "annotations": template["metadata"]["annotations"].clone(),
                "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"], "controller": true}],
                "creationTimestamp": now_rfc3339(tick),
            },
            "spec": template["spec"].clone(),
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
        });
        let image = template["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default();
        self.objects.insert(
            ("pods".into(), namespace.into(), name.into()),
            Stored {
                applied: Vec::new(),
                object: pod,
                born: tick,
                progressed: tick,
                log: vec![format!("{name} started {image}")],
            },
        );
        self.next_version();
    }

    /// The controller revision pod `name` runs.
    fn revision_of(&self, namespace: &str, name: &str) -> Option<String> {
        self.objects
            .get(&("pods".to_string(), namespace.to_string(), name.to_string()))
            .and_then(|s| {
                s.object["metadata"]["labels"]["controller-revision-hash"]
                    .as_str()
                    .map(str::to_string)
            })
    }

    fn remove_pod(&mut self, namespace: &str, name: &str) {
        self.objects
            .remove(&("pods".to_string(), namespace.to_string(), name.to_string()));
        self.next_version();
    }

    fn roll_deployment(&mut self, key: &Key) {
        let Some(stored) = self.objects.get(key) else {
            return;
        };
        let object = stored.object.clone();
        if !object["metadata"]["deletionTimestamp"].is_null() {
            return;
        }
        let progressed = stored.progressed;
        let namespace = key.1.clone();
        let uid = object["metadata"]["uid"].clone();
        let wanted = object["spec"]["replicas"].as_u64().unwrap_or(1);
        let template = object["spec"]["template"].clone();
        let current = hash(&template);
        let surge = amount(
            &object["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
            wanted,
            true,
        );
        let unavailable = amount(
            &object["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
            wanted,
            false,
        );
        let pods = self.pods_of(&namespace, &uid);
        let new: Vec<_> = pods.iter().filter(|p| p.1 == current).collect();
        let old: Vec<_> = pods.iter().filter(|p| p.1 != current).collect();
        let ready = pods.iter().filter(|p| p.2).count() as u64;
        let mut changed = false;
        // Scale the new ReplicaSet up within the surge.
        let room = (wanted + surge).saturating_sub(pods.len() as u64);
        let create = wanted.saturating_sub(new.len() as u64).min(room);
        let mut extra = Map::new();
        extra.insert("pod-template-hash".into(), json!(current));
        for i in 0..create {
            let name = format!("{}-{current}-{}{}", key.2, self.tick, i);
            self.create_pod(&namespace, &name, &object, &template, extra.clone());
            changed = true;
        }
        // Scale the old ones down while enough stay available.
        let floor = wanted.saturating_sub(unavailable);
        let mut available = ready;
        for (name, _, is_ready) in &old {
            if !*is_ready || available > floor {
                if *is_ready {
                    available -= 1;
                }
                self.remove_pod(&namespace, name);
                changed = true;
            }
        }
        // Surplus new pods (scaled down).
        for (name, _, _) in new.iter().skip(wanted as usize) {
            self.remove_pod(&namespace, name);
            changed = true;
        }
        let pods = self.pods_of(&namespace, &uid);
        let updated = pods.iter().filter(|p| p.1 == current).count() as u64;
        let ready = pods.iter().filter(|p| p.2).count() as u64;
        let updated_ready = pods.iter().filter(|p| p.1 == current && p.2).count() as u64;
        let tick = self.tick;
        let Some(stored) = self.objects.get_mut(key) else {
            return;
        };
        let status = &stored.object["status"];
        if changed || status["readyReplicas"].as_u64().unwrap_or(0) != ready {
            stored.progressed = tick;
        }
        let complete = updated == wanted && pods.len() as u64 == wanted && updated_ready == wanted;
        let deadline = object["spec"]["progressDeadlineSeconds"]
            .as_u64()
            .unwrap_or(600);
        let stalled = !complete && (tick - progressed) * TICK.as_millis() as u64 > deadline * 1000;
        let progressing = if complete {
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{}-{current}\" has successfully progressed.", key.2)})
        } else if stalled {
            json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": format!("ReplicaSet \"{}-{current}\" has timed out progressing.", key.2)})
        } else {
            json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": format!("ReplicaSet \"{}-{current}\" is progressing.", key.2)})
        };
        let available_condition = json!({"type": "Available", "status": if ready >= floor { "True" } else { "False" }, "reason": if ready >= floor { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }});
        stored.object["status"] = json!({
            "observedGeneration": object["metadata"]["generation"],
            "replicas": pods.len(),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": (pods.len() as u64).saturating_sub(ready),
            "conditions": [available_condition, progressing],
        });
    }

    fn roll_stateful_set(&mut self, key: &Key) {
        let Some(stored) = self.objects.get(key) else {
            return;
        };
        let object = stored.object.clone();
        if !object["metadata"]["deletionTimestamp"].is_null() {
            return;
        }
        let namespace = key.1.clone();
        let uid = object["metadata"]["uid"].clone();
        let wanted = object["spec"]["replicas"].as_u64().unwrap_or(1);
        let template = object["spec"]["template"].clone();
        let revision = format!("{}-{}", key.2, hash(&template));
        let ordered = object["spec"]["podManagementPolicy"] != "Parallel";
        let pods = self.pods_of(&namespace, &uid);
        let by_ordinal = |i: u64| pods.iter().find(|p| p.0 == format!("{}-{i}", key.2));
        let mut extra = Map::new();
        extra.insert("controller-revision-hash".into(), json!(revision));
        // Claims from the templates, one per ordinal.
        for i in 0..wanted {
            for claim in object["spec"]["volumeClaimTemplates"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let name = format!(
                    "{}-{}-{i}",
                    claim["metadata"]["name"].as_str().unwrap_or("data"),
                    key.2
                );
                let claim_key = (
                    "persistentvolumeclaims".to_string(),
                    namespace.clone(),
                    name.clone(),
                );
                if !self.objects.contains_key(&claim_key) {
                    let tick = self.tick;
                    // As the StatefulSet controller labels them: the
                    // template's labels and the set's selector.
                    let mut labels = claim["metadata"]["labels"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default();
                    for (k, v) in object["spec"]["selector"]["matchLabels"]
                        .as_object()
                        .into_iter()
                        .flatten()
                    {
                        labels.insert(k.clone(), v.clone());
                    }
                    self.uid += 1;
                    let uid = format!("00000000-0000-4000-8000-{:012}", self.uid);
                    self.objects.insert(claim_key, Stored {
                        applied: Vec::new(),
                        object: json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": namespace, "uid": uid, "labels": labels}, "spec": claim["spec"], "status": {"phase": "Bound"}}),
                        born: tick,
                        progressed: tick,
                        log: Vec::new(),
                    });
                }
            }
        }
        // Create what is missing, in order when ordered.
        for i in 0..wanted {
            match by_ordinal(i) {
                None => {
                    let name = format!("{}-{i}", key.2);
                    self.create_pod(&namespace, &name, &object, &template, extra.clone());
                    if ordered {
                        break;
                    }
                }
                Some((_, _, ready)) if ordered && !ready => break,
                Some(_) => {}
            }
        }
        // Scale down from the highest ordinal; update from the highest
        // ordinal down, one at a time, once every pod is ready.
        for (name, _, _) in &pods {
            let ordinal: u64 = name
                .rsplit('-')
                .next()
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            if ordinal >= wanted {
                self.remove_pod(&namespace, name);
            }
        }
        let pods = self.pods_of(&namespace, &uid);

        let all_ready = pods.len() as u64 == wanted && pods.iter().all(|p| p.2);
        if all_ready {
            let mut stale: Vec<_> = pods
                .iter()
                .filter(|p| {
                    self.revision_of(&namespace, &p.0).as_deref() != Some(revision.as_str())
                })
                .collect();
            stale.sort_by(|a, b| b.0.cmp(&a.0));
            if let Some((name, _, _)) = stale.first() {
                let name = name.clone();
                self.remove_pod(&namespace, &name);
            }
        }
        let pods = self.pods_of(&namespace, &uid);
        let updated = pods
            .iter()
            .filter(|p| self.revision_of(&namespace, &p.0).as_deref() == Some(revision.as_str()))
            .count() as u64;
        let ready = pods.iter().filter(|p| p.2).count() as u64;
        let current = if updated == wanted {
            revision.clone()
        } else {
            self.objects
                .get(key)
                .and_then(|s| {
                    s.object["status"]["currentRevision"]
                        .as_str()
                        .map(str::to_string)
                })
                .unwrap_or_else(|| revision.clone())
        };
        let Some(stored) = self.objects.get_mut(key) else {
            return;
        };
        stored.object["status"] = json!({
            "observedGeneration": object["metadata"]["generation"],
            "replicas": pods.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": if current == revision { updated } else { pods.len() as u64 - updated },
            "updatedReplicas": updated,
            "currentRevision": current,
            "updateRevision": revision,
        });
    }

    fn run_job(&mut self, key: &Key) {
        let Some(stored) = self.objects.get(key) else {
            return;
        };
        let object = stored.object.clone();
        if !object["metadata"]["deletionTimestamp"].is_null() {
            return;
        }
        let namespace = key.1.clone();
        let uid = object["metadata"]["uid"].clone();
        let template = object["spec"]["template"].clone();
        let pods = self.pods_of(&namespace, &uid);
        if pods.is_empty() && object["status"]["startTime"].is_null() {
            let mut extra = Map::new();
            extra.insert("job-name".into(), json!(key.2));
            let name = format!("{}-{}", key.2, hash(&template).get(..5).unwrap_or("x"));
            self.create_pod(&namespace, &name, &object, &template, extra);
        }
        let phases: Vec<String> = self
            .pods_of(&namespace, &uid)
            .iter()
            .filter_map(|p| {
                self.objects
                    .get(&("pods".to_string(), namespace.clone(), p.0.clone()))
                    .and_then(|s| s.object["status"]["phase"].as_str().map(str::to_string))
            })
            .collect();
        let tick = self.tick;
        let Some(stored) = self.objects.get_mut(key) else {
            return;
        };
        let mut status = json!({"startTime": now_rfc3339(tick), "active": phases.iter().filter(|p| *p == "Pending" || *p == "Running").count()});
        if !stored.object["status"]["startTime"].is_null() {
            status["startTime"] = stored.object["status"]["startTime"].clone();
        }
        if phases.iter().any(|p| p == "Succeeded") {
            status["succeeded"] = json!(1);
            status["conditions"] = json!([{"type": "Complete", "status": "True"}]);
        } else if phases.iter().any(|p| p == "Failed") {
            status["failed"] = json!(1);
            status["conditions"] = json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]);
        }
        stored.object["status"] = status;
    }
}

/// A rolling update's `maxSurge` or `maxUnavailable` of `replicas`: a
/// count or a percentage (surge rounds up, unavailable down), 25% when
/// left out.
fn amount(value: &Value, replicas: u64, up: bool) -> u64 {
    let percent = |p: u64| {
        let exact = replicas * p;
        if up { exact.div_ceil(100) } else { exact / 100 }
    };
    match value {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::String(s) => percent(s.trim_end_matches('%').parse().unwrap_or(25)),
        _ => percent(25),
    }
}
