//! A remote Docker Engine over TLS, `tcp://host:port` as `dockerd
//! --tlsverify` serves it: the host presents the target's client
//! certificate, checks the engine's against the target's CA, and connects
//! only to addresses the operator's egress rules allow, checked at every
//! connection (so a name that changes its answer is held to them too).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::{BollardRequest, Docker};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use slipway_runtime::Egress;

/// The port a TLS Docker Engine listens on by convention.
pub const DEFAULT_PORT: u16 = 2376;
/// The secrets a TLS endpoint takes, PEM: the CA, the client's certificate
/// and its key.
pub const SECRETS: &[&str] = &["ca", "cert", "key"];
/// Seconds an engine call may take (pulls and log streams are streamed).
const CALL_TIMEOUT_SECS: u64 = 120;

/// The host and port of `tcp://host[:port]`.
pub fn check_endpoint(endpoint: &str) -> Result<(String, u16), String> {
    let rest = endpoint
        .strip_prefix("tcp://")
        .ok_or("`local` (the server's own engine) or `tcp://host:port` (TLS)")?;
    let uri: http::Uri = format!("https://{rest}")
        .parse()
        .map_err(|e| format!("not `tcp://host:port`: {e}"))?;
    if uri.path() != "/" || uri.query().is_some() || rest.contains('@') || rest.contains('/') {
        return Err("`tcp://host:port`, with nothing after the port".into());
    }
    let host = uri.host().filter(|h| !h.is_empty()).ok_or("no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // The URI drops a port it cannot read, so it is read here.
    let authority = uri.authority().map_or("", |a| a.as_str());
    let port = match authority
        .rsplit_once(':')
        .filter(|_| !authority.ends_with(']'))
    {
        Some((_, port)) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or("a port is 1 to 65535")?,
        None => DEFAULT_PORT,
    };
    Ok((host.to_string(), port))
}

/// The client's certificate chain and key from their PEM, checked.
pub fn client_identity(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), (&'static str, String)> {
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ("cert", format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(("cert", "no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| ("key", format!("not a PEM private key: {e}")))?;
    Ok((chain, key))
}

/// The engine at `endpoint` with the `ca`, `cert` and `key` of `secrets`.
pub fn connect(
    endpoint: &str,
    ca: &str,
    cert: &str,
    key: &str,
    egress: Egress,
) -> Result<Docker, String> {
    let (host, port) = check_endpoint(endpoint)?;
    // An address is connected to as it is, never through the resolver.
    if let Ok(ip) = host.parse::<std::net::IpAddr>()
        && !egress.permits(SocketAddr::new(ip, port))
    {
        return Err(format!(
            "the Docker Engine `{host}` is on an internal address the operator did not allow (`egress-allow`)"
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for der in super::kubernetes::certificates(ca)? {
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| format!("the CA certificate: {e}"))?;
    }
    let (chain, key) = client_identity(cert, key).map_err(|(_, e)| e)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| format!("the client certificate and key: {e}"))?;
    let mut http = HttpConnector::new_with_resolver(Checked {
        egress: Arc::new(egress),
        port,
    });
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client = Arc::new(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    );
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Docker::connect_with_custom_transport(
        move |request: BollardRequest| {
            let client = client.clone();
            async move {
                client
                    .request(request)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some(format!("https://{authority}")),
        CALL_TIMEOUT_SECS,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| e.to_string())
}

/// Resolves an engine's name to the addresses the operator allows; a name
/// with any other address is refused whole.
#[derive(Clone)]
struct Checked {
    egress: Arc<Egress>,
    port: u16,
}

impl tower_service::Service<Name> for Checked {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (egress, port) = (self.egress.clone(), self.port);
        Box::pin(async move {
            let host = name.as_str();
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            if let Some(refused) = addresses.iter().find(|a| !egress.permits(**a)) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "the Docker Engine `{host}` is on {}, an internal address the operator did not allow (`egress-allow`)",
                        refused.ip()
                    ),
                ));
            }
            Ok(addresses.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_a_host_and_a_port() {
        assert_eq!(
            check_endpoint("tcp://docker.example:2376").unwrap(),
            ("docker.example".into(), 2376)
        );
        assert_eq!(
            check_endpoint("tcp://10.0.0.5").unwrap(),
            ("10.0.0.5".into(), DEFAULT_PORT)
        );
        assert_eq!(check_endpoint("tcp://[::1]:1234").unwrap().1, 1234);
        for bad in [
            "docker.example:2376",
            "http://docker.example",
            "tcp://",
            "tcp://a:2376/v1.41",
            "tcp://user@a:1",
            "tcp://a:99999",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }
}
