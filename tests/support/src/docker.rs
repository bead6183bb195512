//! The docker CLI for tests, with a client configuration of the test's own so
//! logins stay out of the user's.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The docker CLI with its own configuration directory.
pub struct Docker {
    config: tempfile::TempDir,
}

impl Default for Docker {
    fn default() -> Docker {
        Docker {
            config: tempfile::tempdir().unwrap(),
        }
    }
}

impl Docker {
    /// The CLI with a fresh, empty configuration.
    pub fn new() -> Docker {
        Docker::default()
    }

    fn command(&self) -> Command {
        let mut command = Command::new("docker");
        command.env("DOCKER_CONFIG", self.config.path());
        command
    }

    /// Runs `docker args`; panics with its error when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Logs in to `registry`, the password on standard input.
    pub fn login(&self, registry: &str, user: &str, password: &str) {
        let mut child = self
            .command()
            .args(["login", registry, "-u", user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "docker login {registry}");
    }

    /// Removes `container` and `image` when the result is dropped.
    pub fn cleanup(&self, container: &str, image: &str) -> Cleanup<'_> {
        Cleanup {
            docker: self,
            container: container.to_string(),
            image: image.to_string(),
        }
    }

    /// The address of `container`'s port 8080 once its `/readyz` answers 200.
    pub async fn ready(&self, container: &str) -> String {
        let address = self.run(&["port", container, "8080/tcp"]);
        let address = address.lines().next().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match reqwest::get(format!("http://{address}/readyz")).await {
                Ok(r) if r.status() == 200 => return address,
                _ if Instant::now() > deadline => {
                    panic!("not ready: {}", self.run(&["logs", container]))
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// Removes a test's container and image however the test ends.
pub struct Cleanup<'a> {
    docker: &'a Docker,
    container: String,
    image: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for args in [["rm", "-f", &self.container], ["rmi", "-f", &self.image]] {
            let _ = self.docker.command().args(args).output();
        }
    }
}
