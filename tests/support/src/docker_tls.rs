//! This machine's Docker Engine behind TLS with client certificates, as a
//! remote engine's `tcp://host:2376` is reached (`dockerd --tlsverify`):
//! a listener on 127.0.0.1 that accepts only clients whose certificate its
//! CA signed, and passes their bytes to the engine's socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The engine's socket.
const SOCKET: &str = "/var/run/docker.sock";

/// A client certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS #8).
    pub key: String,
}

/// The engine behind TLS; stops when dropped.
pub struct DockerTls {
    /// Where it listens.
    pub address: SocketAddr,
    /// The CA that signed the engine's certificate and its clients', PEM.
    pub ca: String,
    /// A client the engine accepts.
    pub client: ClientCertificate,
    /// A client of another CA, which it refuses.
    pub stranger: ClientCertificate,
    /// Connections that finished the handshake.
    pub accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DockerTls {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn signed(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (rcgen::Certificate, KeyPair) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert, key)
}

impl DockerTls {
    /// Listens on 127.0.0.1 with a certificate for `localhost` and
    /// `127.0.0.1`.
    pub async fn start() -> DockerTls {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let authority = ca("docker test CA");
        let (server_cert, server_key) = signed(
            &authority,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            signed(&authority, &["client"], ExtendedKeyUsagePurpose::ClientAuth);
        let other = ca("another CA");
        let (stranger_cert, stranger_key) =
            signed(&other, &["stranger"], ExtendedKeyUsagePurpose::ClientAuth);

        let mut roots = rustls::RootCertStore::empty();
        roots.add(authority.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from(server_cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::Relaxed);
                    let Ok(mut engine) = tokio::net::UnixStream::connect(SOCKET).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
                });
            }
        });
        DockerTls {
            address,
            ca: authority.pem(),
            client: ClientCertificate {
                cert: client_cert.pem(),
                key: client_key.serialize_pem(),
            },
            stranger: ClientCertificate {
                cert: stranger_cert.pem(),
                key: stranger_key.serialize_pem(),
            },
            accepted,
            task,
        }
    }
}
