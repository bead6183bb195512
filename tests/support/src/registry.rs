//! The CNCF distribution registry (Debian: `docker-registry`) started on
//! 127.0.0.1 for a test, with filesystem storage in a temporary directory,
//! deletes enabled, and optionally htpasswd or token authentication.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry; stopped when dropped.
pub struct TestRegistry {
    child: Option<Child>,
    /// `127.0.0.1:<port>`.
    pub address: String,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// A registry anyone may push to.
    pub fn anonymous() -> TestRegistry {
        TestRegistry::start(Auth::Anonymous)
    }

    /// A registry that wants `user` and `password` (basic authentication).
    pub fn htpasswd(user: &str, password: &str) -> TestRegistry {
        TestRegistry::start(Auth::Htpasswd(user, password))
    }

    /// A registry that wants Bearer tokens from `realm`, signed by the
    /// certificate `cert_pem`, for `service` from `issuer`.
    pub fn token(realm: &str, service: &str, issuer: &str, cert_pem: &str) -> TestRegistry {
        TestRegistry::start(Auth::Token {
            realm,
            service,
            issuer,
            cert_pem,
        })
    }

    fn start(auth: Auth) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let root = dir.path().display();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}/data\n  delete:\n    enabled: true\n\
             http:\n  addr: {address}\n  secret: slipway-test\n"
        );
        match auth {
            Auth::Anonymous => {}
            Auth::Htpasswd(user, password) => {
                let hash = bcrypt::hash(password, 4).unwrap();
                std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: slipway-test\n    path: {root}/htpasswd\n"
                ));
            }
            Auth::Token {
                realm,
                service,
                issuer,
                cert_pem,
            } => {
                std::fs::write(dir.path().join("token.pem"), cert_pem).unwrap();
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    \
                     issuer: {issuer}\n    rootcertbundle: {root}/token.pem\n"
                ));
            }
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let mut registry = TestRegistry {
            child: None,
            address,
            dir,
        };
        registry.resume();
        registry
    }

    /// Stops the registry (its storage stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub fn resume(&mut self) {
        self.stop();
        let config = self.dir.path().join("config.yml");
        self.child = Some(spawn(&config));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&self.address).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// How the registry authenticates.
enum Auth<'a> {
    Anonymous,
    Htpasswd(&'a str, &'a str),
    Token {
        realm: &'a str,
        service: &'a str,
        issuer: &'a str,
        cert_pem: &'a str,
    },
}

fn spawn(config: &Path) -> Child {
    Command::new("docker-registry")
        .arg("serve")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry is installed (Debian: apt-get install docker-registry)")
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `skopeo inspect` of `reference` (`host:port/repo:tag` or `@digest`) as JSON.
pub fn skopeo_inspect(reference: &str, creds: Option<&str>) -> Result<serde_json::Value, String> {
    let mut command = Command::new("skopeo");
    command.args(["inspect", "--tls-verify=false"]);
    if let Some(creds) = creds {
        command.args(["--creds", creds]);
    }
    let out = command
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo is installed (Debian: apt-get install skopeo)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}
