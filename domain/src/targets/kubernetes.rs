//! The host's driver for Kubernetes objects. What a deploy-target plugin
//! rendered is checked ([`plan`]: kinds the driver applies, the target's
//! namespace, the service's image, only the host paths it declares),
//! labelled with the service it belongs to, and applied server-side with
//! field manager [`FIELD_MANAGER`]; the objects are read back for the
//! plugin to judge; a service's objects are deleted with foreground
//! propagation, so its pods go before it is reported gone.
//!
//! The API server's address is resolved once and every address it
//! resolves to must pass the operator's egress rules; the client then
//! connects to that address (TLS still checks the server's name), so a
//! name that changes its answer later is never followed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use slipway_runtime::Egress;
use slipway_runtime::kinds::{MountKind, Observed, Rendered, Service, ServiceType};

use super::DriverError;
use crate::services::spec::is_dns_label;

/// The label on everything the host applies, as `slipway`.
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// The field manager of everything Slipway applies.
pub const FIELD_MANAGER: &str = "slipway";
/// The field manager of restarts: it owns only the pod template's
/// `kubectl.kubernetes.io/restartedAt` annotation, so a later deploy keeps
/// it and does not roll the pods again.
pub const RESTART_MANAGER: &str = "slipway-restart";
/// On every object and pod of a service: its id.
pub const SERVICE_LABEL: &str = "slipway.dev/service";

/// What a plugin may render (API version, kind), in the order applied.
const KINDS: &[(&str, &str)] = &[
    ("v1", "ConfigMap"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Service"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "Job"),
];

/// Pod volumes a plugin may render beside the host paths the service
/// declares: none reads anything the service was not given.
const VOLUMES: &[&str] = &["emptyDir", "persistentVolumeClaim", "configMap"];

/// The longest one API call may take (my choice).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// An object as the driver addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// Its name.
    pub name: String,
}

impl ObjectRef {
    /// The reference of an object's body.
    pub fn of_value(object: &Value) -> ObjectRef {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        ObjectRef {
            api_version: text(&object["apiVersion"]),
            kind: text(&object["kind"]),
            name: text(&object["metadata"]["name"]),
        }
    }

    /// Whether it runs pods (a Deployment, StatefulSet or Job).
    pub fn is_workload(&self) -> bool {
        matches!(self.kind.as_str(), "Deployment" | "StatefulSet" | "Job")
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// How the host reaches one Kubernetes API server, for one namespace.
#[derive(Clone)]
pub struct KubernetesDriver {
    inner: Arc<Inner>,
}

struct Inner {
    url: http::Uri,
    namespace: String,
    token: Option<String>,
    ca: Option<Vec<Vec<u8>>>,
    /// A client certificate and key, base64 of PEM.
    identity: Option<(String, String)>,
    egress: Egress,
    client: tokio::sync::OnceCell<kube::Client>,
    resources: Mutex<HashMap<(String, String), ApiResource>>,
}

/// Checks an API server's address as a target sets it: `https://…`, or
/// `http://…` on a loopback address (`kubectl proxy`), since the token
/// would otherwise cross the network in the clear.
pub fn check_server(server: &str) -> Result<http::Uri, String> {
    let url: http::Uri = server
        .parse()
        .map_err(|e| format!("`{server}` is not a URL: {e}"))?;
    let host = url.host().unwrap_or_default();
    if host.is_empty() || url.path().len() > 1 || url.query().is_some() {
        return Err(format!(
            "`{server}` is not `https://host[:port]` (no path, no query)"
        ));
    }
    match url.scheme_str() {
        Some("https") => Ok(url),
        Some("http")
            if slipway_runtime::egress::literal(host).is_some_and(|ip| ip.is_loopback()) =>
        {
            Ok(url)
        }
        _ => Err(format!(
            "`{server}` is not `https://…` (plain `http://` only to a loopback address)"
        )),
    }
}

/// The certificates of a PEM bundle (the `ca` secret), as DER.
pub fn certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
    if certificates.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certificates)
}

/// Bytes of one log line kept; the rest of the line is dropped, so a
/// server that never sends a newline holds no more than this.
const MAX_LOG_LINE: usize = 16 << 10;
/// Objects one list reads at most (a service has a handful).
const MAX_LISTED: u32 = 1000;

/// The lines of `reader`, each cut at [`MAX_LOG_LINE`] bytes.
fn bounded_lines<R>(reader: R) -> impl futures::Stream<Item = std::io::Result<String>>
where
    R: futures::AsyncBufRead + Unpin,
{
    futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut line = Vec::new();
        loop {
            let buf = match reader.fill_buf().await {
                Ok(buf) => buf,
                Err(e) => return Some((Err(e), None)),
            };
            if buf.is_empty() {
                let last = String::from_utf8_lossy(&line).into_owned();
                return (!line.is_empty()).then_some((Ok(last), None));
            }
            let newline = buf.iter().position(|b| *b == b'\n');
            let take = newline.map_or(buf.len(), |i| i + 1);
            let room = MAX_LOG_LINE.saturating_sub(line.len());
            line.extend_from_slice(&buf[..take.min(room)]);
            reader.consume_unpin(take);
            if newline.is_some() {
                while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    line.pop();
                }
                return Some((
                    Ok(String::from_utf8_lossy(&line).into_owned()),
                    Some(reader),
                ));
            }
        }
    })
}

/// The largest `kubeconfig` secret read.
const MAX_KUBECONFIG: usize = 64 << 10;

/// What a target's `kubeconfig` secret gives the driver: its current
/// context's credentials.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// A bearer token.
    pub token: Option<String>,
    /// The API server's CA certificates, DER.
    pub ca: Option<Vec<Vec<u8>>>,
    /// A client certificate and its key, base64 of PEM as kubeconfig
    /// holds them.
    pub identity: Option<(String, String)>,
}

/// The credentials of `yaml`'s current context for `server`: inline
/// only. A kubeconfig that names files, runs a command or an auth
/// provider, skips TLS checks, goes through a proxy or points at another
/// server is refused, since the server would read its own files, run
/// programs or connect elsewhere.
pub fn read_kubeconfig(yaml: &str, server: &str) -> Result<Credentials, String> {
    use secrecy::ExposeSecret;
    if yaml.len() > MAX_KUBECONFIG {
        return Err(format!("larger than {} KiB", MAX_KUBECONFIG >> 10));
    }
    let config =
        kube::config::Kubeconfig::from_yaml(yaml).map_err(|e| format!("not a kubeconfig: {e}"))?;
    let current = match (&config.current_context, config.contexts.as_slice()) {
        (Some(name), _) => name.clone(),
        (None, [only]) => only.name.clone(),
        (None, _) => return Err("no `current-context`".into()),
    };
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| format!("no context `{current}`"))?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| format!("no cluster `{}`", context.cluster))?;
    let named = cluster.server.as_deref().unwrap_or_default();
    if named.trim_end_matches('/') != server.trim_end_matches('/') {
        return Err(format!(
            "its cluster's server is `{named}`, not the connection's `{server}`"
        ));
    }
    let refused = |what: &str| {
        Err(format!(
            "it {what}; give the credentials inline (`token`, `client-certificate-data`, `certificate-authority-data`)"
        ))
    };
    if cluster.certificate_authority.is_some() {
        return refused("names a file (`certificate-authority`)");
    }
    if cluster.insecure_skip_tls_verify == Some(true) || cluster.proxy_url.is_some() {
        return refused("skips TLS checks or goes through a proxy");
    }
    let decode = |b64: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
    };
    let mut credentials = Credentials::default();
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = decode(data).ok_or("`certificate-authority-data` is not base64 of PEM")?;
        credentials.ca = Some(certificates(&pem)?);
    }
    let user = context
        .user
        .as_ref()
        .and_then(|u| config.auth_infos.iter().find(|a| &a.name == u))
        .and_then(|a| a.auth_info.as_ref());
    let Some(user) = user else {
        return Ok(credentials);
    };
    if user.exec.is_some() || user.auth_provider.is_some() {
        return refused("runs a command or an auth provider to log in");
    }
    if user.token_file.is_some() || user.client_certificate.is_some() || user.client_key.is_some() {
        return refused("names a file");
    }
    if user.username.is_some() || user.password.is_some() || user.impersonate.is_some() {
        return refused("logs in with a password or impersonates");
    }
    credentials.token = user.token.as_ref().map(|t| t.expose_secret().to_string());
    credentials.identity = match (&user.client_certificate_data, &user.client_key_data) {
        (Some(cert), Some(key)) => {
            for (data, what) in [(cert.as_str(), "certificate"), (key.expose_secret(), "key")] {
                if decode(data).is_none() {
                    return Err(format!("the client {what} is not base64 of PEM"));
                }
            }
            Some((cert.clone(), key.expose_secret().to_string()))
        }
        (None, None) => None,
        _ => return Err("a client certificate without its key, or a key without it".into()),
    };
    Ok(credentials)
}

fn api_error(e: kube::Error) -> DriverError {
    DriverError::Api(match e {
        kube::Error::Api(status) => {
            let mut message = status.message.clone();
            if message.len() > 500 {
                let mut end = 500;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            format!("{message} ({} {})", status.code, status.reason)
        }
        other => other.to_string(),
    })
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

/// Runs one API call within [`CALL_TIMEOUT`].
async fn call<T>(
    future: impl Future<Output = Result<T, kube::Error>>,
) -> Result<Result<T, kube::Error>, DriverError> {
    tokio::time::timeout(CALL_TIMEOUT, future)
        .await
        .map_err(|_| DriverError::Api(format!("no answer in {} s", CALL_TIMEOUT.as_secs())))
}

/// Without state: an object's state as the plugin judges it, without the
/// field managers' bookkeeping.
fn trimmed(object: DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(metadata) = value["metadata"].as_object_mut() {
        metadata.remove("managedFields");
    }
    value
}

impl KubernetesDriver {
    /// A driver for `namespace` on the API server at `server`, with the
    /// `token` and `ca` secrets; connects on first use.
    pub fn new(
        server: &str,
        namespace: &str,
        secrets: &BTreeMap<String, String>,
        egress: Egress,
    ) -> Result<KubernetesDriver, String> {
        let url = check_server(server)?;
        let credentials = match secrets.get("kubeconfig") {
            Some(yaml) => read_kubeconfig(yaml, server)?,
            None => Credentials {
                token: secrets.get("token").cloned(),
                ca: secrets.get("ca").map(|pem| certificates(pem)).transpose()?,
                identity: None,
            },
        };
        Ok(KubernetesDriver {
            inner: Arc::new(Inner {
                url,
                namespace: namespace.into(),
                token: credentials.token,
                ca: credentials.ca,
                identity: credentials.identity,
                egress,
                client: tokio::sync::OnceCell::new(),
                resources: Mutex::default(),
            }),
        })
    }

    /// The namespace services go to.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    async fn client(&self) -> Result<&kube::Client, DriverError> {
        self.inner.client.get_or_try_init(|| self.connect()).await
    }

    async fn connect(&self) -> Result<kube::Client, DriverError> {
        let inner = &self.inner;
        let host = inner.url.host().unwrap_or_default();
        let https = inner.url.scheme_str() == Some("https");
        let port = inner.url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| DriverError::Api(format!("cannot resolve `{host}`: {e}")))?
            .collect();
        let Some(first) = addresses.first() else {
            return Err(DriverError::Api(format!("`{host}` resolves to nothing")));
        };
        if addresses.iter().any(|a| !inner.egress.permits(*a)) {
            return Err(DriverError::NotAllowed(format!(
                "the Kubernetes API server `{host}` is on an internal address the operator did not allow (`egress-allow`)"
            )));
        }
        let scheme = if https { "https" } else { "http" };
        let pinned: http::Uri = format!("{scheme}://{first}")
            .parse()
            .map_err(|e| DriverError::Api(format!("{e}")))?;
        let mut config = kube::Config::new(pinned);
        config.default_namespace = inner.namespace.clone();
        config.auth_info.token = inner.token.clone().map(secrecy::SecretString::from);
        if let Some((cert, key)) = &inner.identity {
            config.auth_info.client_certificate_data = Some(cert.clone());
            config.auth_info.client_key_data = Some(secrecy::SecretString::from(key.clone()));
        }
        config.root_cert = inner.ca.clone();
        if slipway_runtime::egress::literal(host).is_none() {
            config.tls_server_name = Some(host.to_string());
        }
        config.connect_timeout = Some(Duration::from_secs(10));
        // Log streams that follow stay open; every other call has its own
        // timeout.
        config.read_timeout = None;
        // The operations poll again themselves.
        config.default_retry = false;
        // The one crypto provider the server's TLS uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        kube::Client::try_from(config).map_err(api_error)
    }

    /// The resource of `api_version` and `kind`, as the server's discovery
    /// names it.
    async fn resource(&self, api_version: &str, kind: &str) -> Result<ApiResource, DriverError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self.inner.resources.lock().expect("resources").get(&key) {
            return Ok(found.clone());
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let client = self.client().await?;
        let (resource, _) = call(kube::discovery::pinned_kind(client, &gvk))
            .await?
            .map_err(api_error)?;
        self.inner
            .resources
            .lock()
            .expect("resources")
            .insert(key, resource.clone());
        Ok(resource)
    }

    async fn api(&self, api_version: &str, kind: &str) -> Result<Api<DynamicObject>, DriverError> {
        let resource = self.resource(api_version, kind).await?;
        let client = self.client().await?.clone();
        Ok(Api::namespaced_with(
            client,
            &self.inner.namespace,
            &resource,
        ))
    }

    /// Applies `object` server-side as `manager`, unless an object of that
    /// name exists that is not service `id`'s; answers the object served.
    pub async fn apply(
        &self,
        id: u64,
        object: &Value,
        manager: &str,
    ) -> Result<Value, DriverError> {
        let target = ObjectRef::of_value(object);
        let api = self.api(&target.api_version, &target.kind).await?;
        let current = call(api.get_opt(&target.name)).await?.map_err(api_error)?;
        let mut object = std::borrow::Cow::Borrowed(object);
        if let Some(current) = &current {
            let owner = current
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_LABEL));
            if owner.map(String::as_str) != Some(id.to_string().as_str()) {
                return Err(DriverError::NotAllowed(format!(
                    "{target} exists in namespace {} and is not this service's",
                    self.inner.namespace
                )));
            }
            // A workload's selector never changes: one an earlier server
            // made (without the service's label in it) keeps its own.
            let selector = &current.data["spec"]["selector"];
            if matches!(target.kind.as_str(), "Deployment" | "StatefulSet")
                && !selector.is_null()
                && *selector != object["spec"]["selector"]
            {
                force(object.to_mut(), &["spec", "selector"], selector.clone())
                    .map_err(DriverError::Rendered)?;
            }
        }
        let params = PatchParams::apply(manager).force();
        let patch = |object: &Value| {
            let object = object.clone();
            let (api, name, params) = (api.clone(), target.name.clone(), params.clone());
            async move { call(api.patch(&name, &params, &Patch::Apply(&object))).await }
        };
        let applied = match patch(&object).await? {
            // A Job's pod template never changes: one rendered otherwise
            // (by an earlier server) is replaced.
            Err(kube::Error::Api(status))
                if status.code == 422 && target.kind == "Job" && current.is_some() =>
            {
                self.delete(&target, false).await?;
                patch(&object).await?.map_err(api_error)?
            }
            other => other.map_err(api_error)?,
        };
        Ok(trimmed(applied))
    }

    /// The objects' states (`None` for one that does not exist) and the
    /// service's pods.
    pub async fn observe(
        &self,
        id: u64,
        objects: &[ObjectRef],
    ) -> Result<Vec<Observed>, DriverError> {
        let mut observed = Vec::new();
        for object in objects {
            let api = self.api(&object.api_version, &object.kind).await?;
            let state = call(api.get_opt(&object.name)).await?.map_err(api_error)?;
            observed.push(Observed {
                kind: object.kind.clone(),
                name: object.name.clone(),
                state: state.map(trimmed),
            });
        }
        let pods = self.api("v1", "Pod").await?;
        let selector = ListParams::default()
            .limit(MAX_LISTED)
            .labels(&format!("{SERVICE_LABEL}={id}"));
        let list = call(pods.list(&selector)).await?.map_err(api_error)?;
        for pod in list.items {
            observed.push(Observed {
                kind: "Pod".into(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                state: Some(trimmed(pod)),
            });
        }
        Ok(observed)
    }

    /// Every object of service `id` of the kinds plugins may render.
    pub async fn owned(&self, id: u64) -> Result<Vec<ObjectRef>, DriverError> {
        self.labelled(&format!("{SERVICE_LABEL}={id}")).await
    }

    /// Those of them the host applied itself: not the claims a StatefulSet
    /// made from its templates, which carry its selector's labels too.
    pub async fn applied(&self, id: u64) -> Result<Vec<ObjectRef>, DriverError> {
        self.labelled(&format!("{SERVICE_LABEL}={id},{MANAGED_BY}=slipway"))
            .await
    }

    async fn labelled(&self, selector: &str) -> Result<Vec<ObjectRef>, DriverError> {
        let selector = ListParams::default().limit(MAX_LISTED).labels(selector);
        let mut owned = Vec::new();
        for (api_version, kind) in KINDS {
            let api = self.api(api_version, kind).await?;
            let list = call(api.list(&selector)).await?.map_err(api_error)?;
            owned.extend(list.items.into_iter().map(|o| ObjectRef {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                name: o.metadata.name.unwrap_or_default(),
            }));
        }
        Ok(owned)
    }

    /// Deletes `object`: `foreground` keeps it until what it owns is gone.
    /// Whether it was there.
    pub async fn delete(&self, object: &ObjectRef, foreground: bool) -> Result<bool, DriverError> {
        let api = self.api(&object.api_version, &object.kind).await?;
        let params = if foreground {
            DeleteParams::foreground()
        } else {
            DeleteParams::background()
        };
        match call(api.delete(&object.name, &params)).await? {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(api_error(e)),
        }
    }

    /// The names of service `id`'s pods.
    pub async fn pods(&self, id: u64) -> Result<Vec<String>, DriverError> {
        let pods = self.api("v1", "Pod").await?;
        let selector = ListParams::default()
            .limit(MAX_LISTED)
            .labels(&format!("{SERVICE_LABEL}={id}"));
        let list = call(pods.list(&selector)).await?.map_err(api_error)?;
        let mut names: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Pod `name`'s output, a line at a time: its last `tail` lines, then,
    /// when `follow`, what it writes until it ends.
    pub fn logs(
        &self,
        name: &str,
        tail: u32,
        follow: bool,
    ) -> futures::stream::BoxStream<'static, Result<String, DriverError>> {
        let driver = self.clone();
        let name = name.to_string();
        let opened = async move {
            let client = driver.client().await?.clone();
            let pods: Api<Pod> = Api::namespaced(client, &driver.inner.namespace);
            let params = LogParams {
                follow,
                tail_lines: Some(i64::from(tail)),
                ..LogParams::default()
            };
            let reader = call(pods.log_stream(&name, &params))
                .await?
                .map_err(api_error)?;
            Ok::<_, DriverError>(bounded_lines(reader).map_err(|e| DriverError::Api(e.to_string())))
        };
        futures::stream::once(opened)
            .map(|opened| match opened {
                Ok(lines) => lines.boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten()
            .boxed()
    }
}

/// Whether `name` is a DNS subdomain (what most object names must be).
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && !name.is_empty() && name.split('.').all(is_dns_label)
}

/// Checks what the plugin rendered for `service` and makes it the
/// driver's: every object of a kind the driver applies, in the target's
/// namespace, named after the service, its pods running the service's
/// image with only the host paths and host network it declares; each
/// labelled [`SERVICE_LABEL`], pod templates too. In the order applied.
pub fn plan(rendered: &[Rendered], service: &Service) -> Result<Vec<Value>, DriverError> {
    let mut objects: Vec<Value> = Vec::new();
    for (i, object) in rendered.iter().enumerate() {
        let refuse = |why: String| {
            DriverError::Rendered(format!(
                "object {i} ({} {}): {why}",
                object.kind, object.name
            ))
        };
        let body = &object.body;
        let target = ObjectRef::of_value(body);
        let Some(order) = KINDS
            .iter()
            .position(|(v, k)| *v == target.api_version && *k == target.kind)
        else {
            return Err(refuse(format!(
                "`{} {}` is not a kind the driver applies ({})",
                target.api_version,
                target.kind,
                KINDS
                    .iter()
                    .map(|(v, k)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if target.kind != object.kind || target.name != object.name {
            return Err(refuse("its body names another object".into()));
        }
        let prefix = format!("{}-", service.name);
        if !is_dns_subdomain(&target.name)
            || !(target.name == service.name || target.name.starts_with(&prefix))
        {
            return Err(refuse(format!(
                "the name is not the service's (`{}` or `{prefix}…`, a DNS subdomain)",
                service.name
            )));
        }
        match &body["metadata"]["namespace"] {
            Value::Null => {}
            Value::String(ns) if *ns == service.namespace => {}
            other => {
                return Err(refuse(format!(
                    "it is in namespace {other}, not the target's"
                )));
            }
        }
        if objects
            .iter()
            .any(|o| ObjectRef::of_value(&o["body"]) == target)
        {
            return Err(refuse("it is rendered twice".into()));
        }
        for field in ["finalizers", "ownerReferences"] {
            if !body["metadata"][field].is_null() {
                return Err(refuse(format!("it sets `metadata.{field}`")));
            }
        }
        if target.is_workload() {
            check_workload(body, service).map_err(refuse)?;
            check_pod(&body["spec"]["template"]["spec"], service).map_err(refuse)?;
        }
        if target.kind == "Service" {
            check_service(&body["spec"], service).map_err(refuse)?;
        }
        if target.kind == "PersistentVolumeClaim" {
            check_claim(&body["spec"]).map_err(refuse)?;
        }
        let mut body = body.clone();
        let own = json!(service.id.to_string());
        let mut forced = vec![
            (vec!["metadata", "namespace"], json!(service.namespace)),
            (vec!["metadata", "labels", SERVICE_LABEL], own.clone()),
            (vec!["metadata", "labels", MANAGED_BY], json!("slipway")),
        ];
        if target.is_workload() {
            // Its pods are the service's only, and hold nothing of the
            // namespace's service account or other Services.
            let pod = ["spec", "template"];
            forced.push((
                vec!["spec", "template", "metadata", "labels", SERVICE_LABEL],
                own.clone(),
            ));
            forced.push((
                vec!["spec", "template", "metadata", "labels", MANAGED_BY],
                json!("slipway"),
            ));
            if target.kind != "Job" {
                forced.push((
                    vec!["spec", "selector", "matchLabels", SERVICE_LABEL],
                    own.clone(),
                ));
            }
            forced.push((
                [&pod[..], &["spec", "automountServiceAccountToken"]].concat(),
                json!(false),
            ));
            forced.push((
                [&pod[..], &["spec", "enableServiceLinks"]].concat(),
                json!(false),
            ));
        }
        if target.kind == "Service" {
            // It sends traffic to the service's pods, never to another's.
            forced.push((vec!["spec", "selector", SERVICE_LABEL], own));
        }
        for (path, value) in forced {
            force(&mut body, &path, value).map_err(refuse)?;
        }
        if target.is_workload() {
            for field in ["containers", "initContainers", "ephemeralContainers"] {
                let containers = body["spec"]["template"]["spec"][field].as_array_mut();
                for container in containers.into_iter().flatten() {
                    force(container, &["imagePullPolicy"], json!("Always")).map_err(refuse)?;
                    force(
                        container,
                        &["securityContext", "allowPrivilegeEscalation"],
                        json!(false),
                    )
                    .map_err(refuse)?;
                }
            }
        }
        objects.push(json!({"order": order, "body": body}));
    }
    objects.sort_by_key(|o| o["order"].as_u64());
    Ok(objects.into_iter().map(|mut o| o["body"].take()).collect())
}

/// Sets `path` under `value` to `to`, making the objects on the way; a
/// value on the way that is not an object (what a plugin rendered) is
/// refused rather than overwritten.
fn force(value: &mut Value, path: &[&str], to: Value) -> Result<(), String> {
    let mut at = value;
    for (i, key) in path.iter().enumerate() {
        if at.is_null() {
            *at = json!({});
        }
        let Some(map) = at.as_object_mut() else {
            return Err(format!("`{}` is not an object", path[..i].join(".")));
        };
        if i + 1 == path.len() {
            map.insert((*key).to_string(), to);
            return Ok(());
        }
        at = map.entry((*key).to_string()).or_insert(Value::Null);
    }
    Ok(())
}

/// Whether `name` is the service's own: its name, or its name and `-…`.
fn owns(service: &Service, name: &Value) -> bool {
    name.as_str()
        .is_some_and(|n| n == service.name || n.starts_with(&format!("{}-", service.name)))
}

/// Checks a workload's own fields: as many replicas as the service has,
/// a Job of one pod that selects its pods itself, claims of its own.
fn check_workload(body: &Value, service: &Service) -> Result<(), String> {
    let spec = &body["spec"];
    if spec["replicas"].as_u64().unwrap_or(1) > u64::from(service.replicas.max(1)) {
        return Err(format!(
            "more replicas than the service's {}",
            service.replicas
        ));
    }
    for field in ["parallelism", "completions"] {
        if spec[field].as_u64().unwrap_or(1) > 1 {
            return Err(format!("a Job whose `{field}` is more than 1"));
        }
    }
    if spec["manualSelector"] == true {
        return Err("a Job with `manualSelector`".into());
    }
    for claim in spec["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        check_claim(&claim["spec"])?;
    }
    Ok(())
}

/// Checks a claim's spec: a new volume, never another's data.
fn check_claim(spec: &Value) -> Result<(), String> {
    for field in ["dataSource", "dataSourceRef", "volumeName", "selector"] {
        if !spec[field].is_null() {
            return Err(format!("a claim that sets `{field}`"));
        }
    }
    Ok(())
}

/// Checks a Service's spec: of the service's type, on addresses the
/// cluster chooses.
fn check_service(spec: &Value, service: &Service) -> Result<(), String> {
    if spec["externalIPs"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Err("a Service with `externalIPs`".into());
    }
    let declared = match service.service_type {
        ServiceType::ClusterIp => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    if spec["type"].as_str().unwrap_or("ClusterIP") != declared {
        return Err(format!(
            "a Service type other than the service's ({declared})"
        ));
    }
    let fixed = |v: &Value| v.as_str().is_some_and(|ip| ip != "None" && !ip.is_empty());
    if fixed(&spec["clusterIP"])
        || spec["clusterIPs"]
            .as_array()
            .is_some_and(|ips| ips.iter().any(fixed))
        || !spec["loadBalancerIP"].is_null()
    {
        return Err("a Service on an address it chose itself".into());
    }
    Ok(())
}

/// Checks a pod template's spec against what `service` declares.
fn check_pod(spec: &Value, service: &Service) -> Result<(), String> {
    if !spec.is_object() {
        return Err("a workload without a pod template".into());
    }
    for field in ["hostPID", "hostIPC", "shareProcessNamespace"] {
        if spec[field] == true {
            return Err(format!("a pod with `{field}`"));
        }
    }
    for field in [
        "serviceAccountName",
        "serviceAccount",
        "nodeName",
        "nodeSelector",
        "affinity",
        "tolerations",
        "topologySpreadConstraints",
        "schedulerName",
        "runtimeClassName",
        "priorityClassName",
        "imagePullSecrets",
    ] {
        if !spec[field].is_null() {
            return Err(format!("a pod that sets `{field}`"));
        }
    }
    check_security(&spec["securityContext"])?;
    if spec["securityContext"]["sysctls"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Err("a pod that sets `sysctls`".into());
    }
    if spec["hostNetwork"].as_bool().unwrap_or(false) != service.host_network {
        return Err("a pod whose host network is not what the service declares".into());
    }
    let mut containers = 0;
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        for container in spec[field].as_array().into_iter().flatten() {
            containers += 1;
            if container["image"] != service.image.as_str() {
                return Err(format!(
                    "a container whose image is not the service's ({})",
                    service.image
                ));
            }
            let security = &container["securityContext"];
            if security["privileged"] == true || security["allowPrivilegeEscalation"] == true {
                return Err("a privileged container".into());
            }
            if security["capabilities"]["add"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
            {
                return Err("a container that adds capabilities".into());
            }
            check_security(security)?;
            check_container(container, service)?;
            if field != "ephemeralContainers" {
                check_limits(&container["resources"]["limits"], service)?;
            }
        }
    }
    if containers == 0 {
        return Err("a pod without containers".into());
    }
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        if let Some(host) = volume.get("hostPath") {
            let declared = service.host_mounts.iter().any(|m| {
                host["path"] == m.host_path.as_str() && host["type"] == host_path_type(m.kind)
            });
            if !declared {
                return Err(format!(
                    "a host path the service does not declare ({} of type {})",
                    host["path"], host["type"]
                ));
            }
            continue;
        }
        let claim = &volume["persistentVolumeClaim"]["claimName"];
        let config = &volume["configMap"]["name"];
        if (!claim.is_null() && !owns(service, claim))
            || (!config.is_null() && !owns(service, config))
        {
            return Err(format!(
                "a volume of another's claim or ConfigMap ({})",
                if claim.is_null() { config } else { claim }
            ));
        }
        let kinds: Vec<&String> = volume
            .as_object()
            .map(|o| o.keys().filter(|k| *k != "name").collect())
            .unwrap_or_default();
        if kinds.len() != 1 || !VOLUMES.contains(&kinds[0].as_str()) {
            return Err(format!(
                "a volume of a kind the driver does not mount ({})",
                kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

/// Checks a container's limits: within the service's, where it sets them.
fn check_limits(limits: &Value, service: &Service) -> Result<(), String> {
    use crate::services::spec::{Quantity, cpu_millis, memory_bytes};
    let quantity = |v: &Value| match v {
        Value::String(s) => Some(Quantity::Text(s.clone())),
        Value::Number(n) => Some(Quantity::Number(n.clone())),
        _ => None,
    };
    let cpu = quantity(&limits["cpu"]).and_then(|q| cpu_millis(&q));
    if let Some(max) = service.limits.cpu_millis
        && cpu.is_none_or(|cpu| cpu > u64::from(max))
    {
        return Err(format!(
            "a container whose CPU limit is not within the service's {max}m"
        ));
    }
    let memory = quantity(&limits["memory"]).and_then(|q| memory_bytes(&q));
    if let Some(max) = service.limits.memory_bytes
        && memory.is_none_or(|memory| memory > max)
    {
        return Err(format!(
            "a container whose memory limit is not within the service's {max} bytes"
        ));
    }
    Ok(())
}

/// Checks a pod's or container's security context: no way round the
/// node's confinement.
fn check_security(security: &Value) -> Result<(), String> {
    for field in ["seLinuxOptions", "windowsOptions"] {
        if !security[field].is_null() {
            return Err(format!("a security context that sets `{field}`"));
        }
    }
    if security["procMount"] == "Unmasked" {
        return Err("an unmasked /proc".into());
    }
    for field in ["seccompProfile", "appArmorProfile"] {
        if security[field]["type"] == "Unconfined" {
            return Err(format!("an unconfined `{field}`"));
        }
    }
    Ok(())
}

/// Checks one container: its environment reads no Secret and no other
/// service's ConfigMap, it binds no host port the service did not ask for
/// (with the host network), and no probe or hook reaches another host.
fn check_container(container: &Value, service: &Service) -> Result<(), String> {
    for env in container["env"].as_array().into_iter().flatten() {
        let from = &env["valueFrom"];
        if !from["secretKeyRef"].is_null() {
            return Err("an environment variable read from a Secret".into());
        }
        let config = &from["configMapKeyRef"]["name"];
        if !config.is_null() && !owns(service, config) {
            return Err(format!(
                "an environment variable read from another's ConfigMap ({config})"
            ));
        }
    }
    for from in container["envFrom"].as_array().into_iter().flatten() {
        if !from["secretRef"].is_null() {
            return Err("an environment read from a Secret".into());
        }
        let config = &from["configMapRef"]["name"];
        if !config.is_null() && !owns(service, config) {
            return Err(format!(
                "an environment read from another's ConfigMap ({config})"
            ));
        }
    }
    for port in container["ports"].as_array().into_iter().flatten() {
        if (!port["hostPort"].is_null() && !service.host_network) || !port["hostIP"].is_null() {
            return Err("a container port bound on the node".into());
        }
    }
    let handlers = ["livenessProbe", "readinessProbe", "startupProbe"]
        .iter()
        .map(|p| &container[*p])
        .chain(
            ["postStart", "preStop"]
                .iter()
                .map(|h| &container["lifecycle"][*h]),
        );
    for handler in handlers {
        for action in ["httpGet", "tcpSocket"] {
            if !handler[action]["host"].is_null() {
                return Err(format!("a probe or hook whose `{action}` names a host"));
            }
        }
    }
    Ok(())
}

/// The `hostPath` type of a mount kind.
fn host_path_type(kind: MountKind) -> &'static str {
    match kind {
        MountKind::File => "File",
        MountKind::CharacterDevice => "CharDevice",
        MountKind::Directory => "Directory",
        MountKind::Socket => "Socket",
        MountKind::BlockDevice => "BlockDevice",
    }
}

/// The restart manager's configuration for `workload`: only the annotation
/// that rolls its pods, as `kubectl rollout restart` sets it.
pub fn restart_config(workload: &ObjectRef, namespace: &str, at: &str) -> Value {
    json!({
        "apiVersion": workload.api_version,
        "kind": workload.kind,
        "metadata": {"name": workload.name, "namespace": namespace},
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}},
    })
}

/// The references of `objects`.
pub fn refs(objects: &[Value]) -> Vec<ObjectRef> {
    objects.iter().map(ObjectRef::of_value).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        super::super::tests::service("shop")
    }

    fn deployment(pod: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod}},
        })
    }

    fn rendered(body: Value) -> Vec<Rendered> {
        vec![Rendered {
            kind: body["kind"].as_str().unwrap_or_default().into(),
            name: body["metadata"]["name"].as_str().unwrap_or_default().into(),
            body,
        }]
    }

    fn container() -> Value {
        json!({"name": "web", "image": "registry.example/web@sha256:ab"})
    }

    fn refused(body: Value) -> String {
        match plan(&rendered(body), &service()) {
            Err(DriverError::Rendered(why)) => why,
            other => panic!("not refused: {other:?}"),
        }
    }

    fn kubeconfig(cluster: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: shop\n\
             contexts:\n- name: shop\n  context: {{cluster: c, user: u}}\n\
             clusters:\n- name: c\n  cluster: {{{cluster}}}\n\
             users:\n- name: u\n  user: {{{user}}}\n"
        )
    }

    #[tokio::test]
    async fn log_lines_are_bounded_whatever_the_server_sends() {
        let endless = vec![b'x'; 3 * MAX_LOG_LINE];
        let mut text = b"first\r\n".to_vec();
        text.extend_from_slice(&endless);
        text.extend_from_slice(b"\nlast");
        let lines: Vec<String> = bounded_lines(futures::io::Cursor::new(text))
            .map(|l| l.unwrap())
            .collect()
            .await;
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "first");
        assert_eq!(lines[1].len(), MAX_LOG_LINE);
        assert_eq!(lines[2], "last");
    }

    #[test]
    fn a_kubeconfig_gives_inline_credentials_only() {
        let server = "https://k8s.example:6443";
        let read = |cluster: &str, user: &str| read_kubeconfig(&kubeconfig(cluster, user), server);
        let ok = read(&format!("server: \"{server}\""), "token: abc").unwrap();
        assert_eq!(ok.token.as_deref(), Some("abc"));
        let both = read(
            &format!("server: \"{server}\""),
            "client-certificate-data: Y2VydA==, client-key-data: a2V5",
        )
        .unwrap();
        assert_eq!(both.identity, Some(("Y2VydA==".into(), "a2V5".into())));
        for (cluster, user, why) in [
            (
                "server: \"https://other.example\"",
                "token: abc",
                "not the connection's",
            ),
            (
                &format!("server: \"{server}\", certificate-authority: /etc/kubernetes/ca.crt"),
                "token: abc",
                "names a file",
            ),
            (
                &format!("server: \"{server}\", insecure-skip-tls-verify: true"),
                "token: abc",
                "skips TLS",
            ),
            (
                &format!("server: \"{server}\""),
                "exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh}",
                "runs a command",
            ),
            (
                &format!("server: \"{server}\""),
                "tokenFile: /var/run/secrets/token",
                "names a file",
            ),
            (
                &format!("server: \"{server}\""),
                "client-certificate-data: Y2VydA==",
                "without its key",
            ),
            (
                &format!("server: \"{server}\", certificate-authority-data: bm90IHBlbQ=="),
                "token: abc",
                "PEM",
            ),
        ] {
            let refused = read(cluster, user).unwrap_err();
            assert!(refused.contains(why), "{cluster} {user}: {refused}");
        }
        assert!(read_kubeconfig("[not, a: kubeconfig", server).is_err());
        assert!(
            read_kubeconfig(&"a".repeat(MAX_KUBECONFIG + 1), server)
                .unwrap_err()
                .contains("KiB")
        );
    }

    #[test]
    fn a_plan_labels_what_it_applies_and_puts_it_in_the_targets_namespace() {
        let service_body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"type": "ClusterIP", "selector": {"app": "web"}}});
        let mut objects = rendered(deployment(json!({
            "containers": [container()],
            "volumes": [{"name": "data", "hostPath": {"path": "/srv/data", "type": "Directory"}}, {"name": "logs", "emptyDir": {}}],
        })));
        objects.extend(rendered(service_body));
        let planned = plan(&objects, &service()).unwrap();
        // Services before the workloads that use them.
        assert_eq!(planned[0]["kind"], "Service");
        let deployment = &planned[1];
        assert_eq!(deployment["metadata"]["namespace"], "shop");
        assert_eq!(deployment["metadata"]["labels"][SERVICE_LABEL], "7");
        assert_eq!(deployment["metadata"]["labels"]["app"], "web");
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"][SERVICE_LABEL],
            "7"
        );
        // It selects the service's pods only, which carry no account token
        // and always pull.
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"][SERVICE_LABEL],
            "7"
        );
        assert_eq!(
            planned[0]["spec"]["selector"],
            json!({"app": "web", SERVICE_LABEL: "7"})
        );
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["enableServiceLinks"], false);
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"],
            false
        );
    }

    #[test]
    fn a_plan_refuses_what_the_service_did_not_ask_for() {
        let cases = [
            (
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "web"}}),
                "not a kind the driver applies",
            ),
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "namespace": "kube-system"}}),
                "namespace",
            ),
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "api"}}),
                "not the service's",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"externalIPs": ["10.0.0.1"]}}),
                "externalIPs",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"type": "ExternalName"}}),
                "Service type",
            ),
            (
                deployment(json!({"containers": [{"name": "x", "image": "evil/miner:1"}]})),
                "image",
            ),
            (
                deployment(
                    json!({"containers": [container()], "initContainers": [{"name": "x", "image": "evil/miner:1"}]}),
                ),
                "image",
            ),
            (
                deployment(
                    json!({"containers": [container()], "volumes": [{"name": "root", "hostPath": {"path": "/", "type": "Directory"}}]}),
                ),
                "host path",
            ),
            (
                deployment(
                    json!({"containers": [container()], "volumes": [{"name": "data", "hostPath": {"path": "/srv/data", "type": "Socket"}}]}),
                ),
                "host path",
            ),
            (
                deployment(
                    json!({"containers": [container()], "volumes": [{"name": "t", "projected": {"sources": []}}]}),
                ),
                "volume",
            ),
            (
                deployment(json!({"containers": [container()], "hostNetwork": true})),
                "host network",
            ),
            (
                deployment(json!({"containers": [container()], "hostPID": true})),
                "hostPID",
            ),
            (
                deployment(json!({"containers": [container()], "serviceAccountName": "admin"})),
                "serviceAccountName",
            ),
            (
                deployment(
                    json!({"containers": [{"name": "web", "image": "registry.example/web@sha256:ab", "securityContext": {"privileged": true}}]}),
                ),
                "privileged",
            ),
            (
                deployment(
                    json!({"containers": [{"name": "web", "image": "registry.example/web@sha256:ab", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}),
                ),
                "capabilities",
            ),
            (deployment(json!({"containers": []})), "without containers"),
            (
                deployment(
                    json!({"containers": [container()], "volumes": [{"name": "x", "configMap": {"name": "billing"}}]}),
                ),
                "another's claim or ConfigMap",
            ),
            (
                deployment(
                    json!({"containers": [container()], "volumes": [{"name": "x", "persistentVolumeClaim": {"claimName": "data-billing-0"}}]}),
                ),
                "another's claim or ConfigMap",
            ),
            (
                deployment(
                    json!({"containers": [{"name": "web", "image": "registry.example/web@sha256:ab", "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}]}),
                ),
                "from a Secret",
            ),
            (
                deployment(
                    json!({"containers": [{"name": "web", "image": "registry.example/web@sha256:ab", "envFrom": [{"configMapRef": {"name": "billing"}}]}]}),
                ),
                "another's ConfigMap",
            ),
            (
                deployment(
                    json!({"containers": [{"name": "web", "image": "registry.example/web@sha256:ab", "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
                ),
                "bound on the node",
            ),
            (
                deployment(
                    json!({"containers": [{"name": "web", "image": "registry.example/web@sha256:ab", "livenessProbe": {"httpGet": {"host": "169.254.169.254", "path": "/", "port": 80}}}]}),
                ),
                "names a host",
            ),
            (
                deployment(
                    json!({"containers": [container()], "imagePullSecrets": [{"name": "theirs"}]}),
                ),
                "imagePullSecrets",
            ),
            (
                deployment(
                    json!({"containers": [container()], "tolerations": [{"operator": "Exists"}]}),
                ),
                "tolerations",
            ),
            (
                deployment(
                    json!({"containers": [container()], "securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
                ),
                "unconfined",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 50, "template": {"spec": {"containers": [container()]}}}}),
                "more replicas",
            ),
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "finalizers": ["example.com/never"]}}),
                "finalizers",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"type": "LoadBalancer"}}),
                "Service type",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.10"}}),
                "address it chose",
            ),
            (
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "web-data"}, "spec": {"dataSource": {"kind": "PersistentVolumeClaim", "name": "billing-data"}}}),
                "dataSource",
            ),
        ];
        for (body, why) in cases {
            let refusal = refused(body.clone());
            assert!(refusal.contains(why), "{body}: {refusal}");
        }
        // What is not an object where the host writes is refused, never a panic.
        for body in [
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"selector": [], "template": {"spec": {"containers": [container()]}}}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"metadata": "x", "spec": {"containers": [container()]}}}}),
            deployment(
                json!({"containers": [{"name": "web", "image": "registry.example/web@sha256:ab", "securityContext": 5}]}),
            ),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": "app=web"}}),
        ] {
            assert!(refused(body.clone()).contains("is not an object"), "{body}");
        }
        // Containers stay within the service's limits, where it sets them.
        let mut limited = service();
        limited.limits.cpu_millis = Some(500);
        limited.limits.memory_bytes = Some(128 << 20);
        let with = |limits: Value| {
            rendered(deployment(
                json!({"containers": [{"name": "web", "image": "registry.example/web@sha256:ab", "resources": {"limits": limits}}]}),
            ))
        };
        assert!(plan(&with(json!({"cpu": "500m", "memory": "128Mi"})), &limited).is_ok());
        for (limits, why) in [
            (json!({"cpu": "2", "memory": "128Mi"}), "CPU limit"),
            (json!({"cpu": "0.5", "memory": "1Gi"}), "memory limit"),
            (json!({}), "CPU limit"),
        ] {
            let refusal = plan(&with(limits.clone()), &limited);
            assert!(
                matches!(&refusal, Err(DriverError::Rendered(w)) if w.contains(why)),
                "{limits}: {refusal:?}"
            );
        }
        // The same object twice.
        let once = || rendered(deployment(json!({"containers": [container()]})));
        let twice: Vec<Rendered> = once().into_iter().chain(once()).collect();
        assert!(
            matches!(plan(&twice, &service()), Err(DriverError::Rendered(w)) if w.contains("twice"))
        );
    }

    #[test]
    fn servers_are_https_or_plain_http_on_loopback() {
        assert!(check_server("https://k8s.example:6443").is_ok());
        assert!(check_server("http://127.0.0.1:8001").is_ok());
        assert!(check_server("http://k8s.example:8080").is_err());
        assert!(check_server("http://10.0.0.1:8080").is_err());
        assert!(check_server("https://k8s.example/api").is_err());
        assert!(check_server("ftp://k8s.example").is_err());
        assert!(certificates("not a certificate").is_err());
    }
}
