//! The API client the commands share: where the server is, the token, and
//! requests whose errors read as the server wrote them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What `slipway login` saves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Login {
    /// The server's base URL.
    pub server: String,
    /// The API token.
    pub token: String,
}

/// Where the login is kept: `$SLIPWAY_CLIENT_CONFIG`, else
/// `$XDG_CONFIG_HOME/slipway/client.toml`, else `~/.config/slipway/client.toml`.
pub fn login_file() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SLIPWAY_CLIENT_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("slipway").join("client.toml"))
}

impl Login {
    /// The saved login, if any.
    pub fn load(path: &Path) -> anyhow::Result<Option<Login>> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                Ok(Some(toml::from_str(&text).with_context(|| {
                    format!("{} is not valid", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Saves it, readable by its owner only.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let text = toml::to_string(self).expect("a login serializes");
        use std::io::Write;
        options
            .open(path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// An error the server answered, as its JSON body says.
#[derive(Debug, thiserror::Error)]
#[error("{message}{}{}", path.as_ref().map(|p| format!(" (at {p}{})", place(at))).unwrap_or_default(), problems.iter().map(|p| format!("\n  {p}")).collect::<String>())]
pub struct ApiFailure {
    /// The HTTP status.
    pub status: StatusCode,
    /// The error code.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// A JSON pointer to the field at fault.
    pub path: Option<String>,
    /// Its line and column in a text body.
    pub at: Option<(u64, u64)>,
    /// Every problem, when there are several, each as a line.
    pub problems: Vec<String>,
}

/// `, line L, column C` for a place in a text body.
fn place(at: &Option<(u64, u64)>) -> String {
    at.map(|(line, column)| format!(", line {line}, column {column}"))
        .unwrap_or_default()
}

fn located(value: &Value) -> Option<(u64, u64)> {
    Some((value["line"].as_u64()?, value["column"].as_u64()?))
}

impl ApiFailure {
    /// The failure an error answer's JSON body describes.
    fn from_body(status: StatusCode, body: &Value) -> ApiFailure {
        let error = &body["error"];
        ApiFailure {
            status,
            code: error["code"].as_str().unwrap_or("unknown").to_string(),
            message: error["message"]
                .as_str()
                .map_or_else(|| format!("the server answered {status}"), str::to_string),
            path: error["path"].as_str().map(str::to_string),
            at: located(error),
            problems: error["problems"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}{}: {}",
                        p["path"].as_str().unwrap_or_default(),
                        place(&located(p)),
                        p["message"].as_str().unwrap_or_default()
                    )
                })
                .collect(),
        }
    }
}

/// A client of one server, with one token.
pub struct Client {
    http: reqwest::Client,
    login: Login,
}

impl Client {
    /// A client for `login`.
    pub fn new(login: Login) -> Client {
        Client {
            http: reqwest::Client::new(),
            login: Login {
                server: login.server.trim_end_matches('/').to_string(),
                ..login
            },
        }
    }

    /// Sends a request; the JSON answer (null when empty), or the server's error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.login.server);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.login.token);
        if let Some((content_type, bytes)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.login.server))?;
        let status = response.status();
        let bytes = response.bytes().await.context("the answer was cut off")?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("the server at {url} did not answer JSON ({status})"))?
        };
        if status.is_success() {
            Ok(value)
        } else {
            Err(ApiFailure::from_body(status, &value).into())
        }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, None).await
    }

    /// POST of a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let bytes = serde_json::to_vec(body).expect("JSON serializes");
        self.send(Method::POST, path, Some(("application/json", bytes)))
            .await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::DELETE, path, None).await
    }

    /// Reads a Server-Sent Events stream, calling `each` with every event's
    /// data until the server ends the stream.
    pub async fn events(&self, path: &str, mut each: impl FnMut(Value)) -> anyhow::Result<()> {
        let mut stream = self.stream(path, "text/event-stream").await?;
        let mut buffer = Vec::new();
        while let Some(chunk) = stream.next().await {
            buffer.extend_from_slice(&chunk.context("the event stream was cut off")?);
            while let Some(end) = find_blank_line(&buffer) {
                let event: Vec<u8> = buffer.drain(..end).collect();
                if let Some(data) = event_data(&event) {
                    each(data);
                }
            }
        }
        Ok(())
    }
}

impl Client {
    /// A GET answered as a stream of bytes, or the server's error.
    async fn stream(
        &self,
        path: &str,
        accept: &str,
    ) -> anyhow::Result<impl futures::Stream<Item = reqwest::Result<bytes::Bytes>>> {
        let response = self
            .http
            .get(format!("{}{path}", self.login.server))
            .bearer_auth(&self.login.token)
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.login.server))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(ApiFailure::from_body(status, &body).into());
        }
        Ok(response.bytes_stream())
    }

    /// Copies a plain-text answer to standard output as it arrives, until
    /// the server ends it.
    pub async fn print_stream(&self, path: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut stream = self.stream(path, "text/plain").await?;
        let mut out = std::io::stdout();
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk.context("the stream was cut off")?)?;
            out.flush()?;
        }
        Ok(())
    }
}

/// Where the first event of `buffer` ends (after its blank line).
fn find_blank_line(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

/// The JSON in an event's `data:` lines.
fn event_data(event: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(event);
    let data: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    serde_json::from_str(&data.join("\n")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_on_blank_lines() {
        let stream = b"event: status\ndata: {\"status\":\"queued\"}\n\n: keep-alive\n\nevent: status\ndata: {\"status\"";
        let end = find_blank_line(stream).unwrap();
        assert_eq!(
            event_data(&stream[..end]),
            Some(serde_json::json!({"status": "queued"}))
        );
        let rest = &stream[end..];
        let end = find_blank_line(rest).unwrap();
        assert_eq!(event_data(&rest[..end]), None, "a comment has no data");
        assert_eq!(find_blank_line(&rest[end..]), None, "incomplete");
    }

    #[test]
    fn a_login_round_trips_and_only_its_owner_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/client.toml");
        assert_eq!(Login::load(&path).unwrap(), None);
        let login = Login {
            server: "http://127.0.0.1:7420".into(),
            token: "slw_x".into(),
        };
        login.save(&path).unwrap();
        assert_eq!(Login::load(&path).unwrap(), Some(login));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
