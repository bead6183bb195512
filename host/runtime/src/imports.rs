//! The host side of the plugin imports: logging, settings, secrets, clock, HTTP.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::bindings::{host, http, types};
use crate::egress::{self, Egress, Refused};
use crate::manifest::HostPattern;
use crate::state::{CallState, MAX_LOG_RECORDS};

impl types::Host for CallState {}

impl host::Host for CallState {
    fn log(
        &mut self,
        level: host::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        if fields.iter().any(|(k, v)| k == "panic" && v == "true") {
            self.panic = Some(message.clone());
        }
        self.logs_written += 1;
        if self.logs_written > MAX_LOG_RECORDS {
            if self.logs_written == MAX_LOG_RECORDS + 1 {
                tracing::warn!(plugin = %self.id, "plugin log limit reached; dropping further records of this call");
            }
            return Ok(());
        }
        // A plugin's text is bounded and escaped: one record is one line, and
        // no plugin writes a line of its own into the server's log.
        let message = escaped(&message, MAX_LOG_MESSAGE);
        let fields: Vec<(String, String)> = fields
            .iter()
            .take(MAX_LOG_FIELDS)
            // Values are written escaped, as `key="value"`.
            .map(|(k, v)| (escaped(k, 64), cut(v, MAX_LOG_MESSAGE).to_string()))
            .collect();
        // Formatted only if a subscriber wants the record.
        let fields = Fields(&fields);
        let plugin = &*self.id;
        match level {
            host::Level::Trace => tracing::trace!(target: "plugin", plugin, %fields, "{message}"),
            host::Level::Debug => tracing::debug!(target: "plugin", plugin, %fields, "{message}"),
            host::Level::Info => tracing::info!(target: "plugin", plugin, %fields, "{message}"),
            host::Level::Warn => tracing::warn!(target: "plugin", plugin, %fields, "{message}"),
            host::Level::Error => tracing::error!(target: "plugin", plugin, %fields, "{message}"),
        }
        Ok(())
    }

    fn settings(&mut self) -> wasmtime::Result<String> {
        Ok(self.context.settings.to_string())
    }

    fn secret(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        if !self.manifest.secrets.contains(&name) {
            tracing::warn!(plugin = %self.id, secret = %name, "plugin asked for a secret its manifest does not list");
            return Ok(None);
        }
        Ok(self.context.secrets.get(&name).cloned())
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(now_ms())
    }

    fn cache_get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self
            .context
            .cache
            .as_ref()
            .and_then(|c| c.get(&key, now_ms())))
    }

    fn cache_put(&mut self, key: String, value: String, ttl_ms: u64) -> wasmtime::Result<()> {
        if let Some(cache) = &self.context.cache {
            cache.put(&key, value, ttl_ms, now_ms());
        }
        Ok(())
    }
}

/// The most bytes of a plugin's log message (and of each field's value) kept.
pub(crate) const MAX_LOG_MESSAGE: usize = 4096;
/// The most fields of one log record kept.
const MAX_LOG_FIELDS: usize = 32;

/// `text` cut at `max` bytes (marked with `…`), with control characters
/// escaped (`\n`, `\u{1b}`).
pub(crate) fn escaped(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 8);
    for c in text.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` cut at the last character boundary within `max` bytes.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn now_ms() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.as_millis() as u64
}

/// A plugin's log fields as `key="value"` pairs.
struct Fields<'a>(&'a [(String, String)]);

impl std::fmt::Display for Fields<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{key}={value:?}")?;
        }
        Ok(())
    }
}

impl http::Host for CallState {
    async fn send(&mut self, request: http::Request) -> Result<http::Response, http::Error> {
        self.send_checked(request).await
    }
}

impl CallState {
    async fn send_checked(
        &mut self,
        request: http::Request,
    ) -> Result<http::Response, http::Error> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| http::Error::InvalidRequest(format!("bad URL `{}`: {e}", request.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(http::Error::InvalidRequest(format!(
                "unsupported scheme `{}`: use http or https",
                url.scheme()
            )));
        }
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(0);
        if !self.may_call(&host, port) {
            tracing::warn!(plugin = %self.id, %host, port, "plugin HTTP call denied");
            return Err(http::Error::Denied(format!(
                "`{host}:{port}` is not among the hosts this plugin may call"
            )));
        }
        // A Host header of its own would address another site on the same
        // address than the one granted.
        let authority = format!("{host}:{port}");
        for (_, value) in request
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            if !value.eq_ignore_ascii_case(&authority) && !value.eq_ignore_ascii_case(&host) {
                return Err(http::Error::Denied(format!(
                    "the Host header `{value}` does not name the URL's host `{host}`"
                )));
            }
        }
        if !self.egress.any {
            check_addresses(&self.egress, &self.id, &host, port).await?;
        }
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| http::Error::InvalidRequest(format!("bad method `{}`", request.method)))?;
        let timeout = request
            .timeout_ms
            .map(|ms| std::time::Duration::from_millis(ms.into()))
            .unwrap_or(self.http_timeout_cap)
            .min(self.http_timeout_cap);
        let mut builder = self.http.request(method, url).timeout(timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let built = builder
            .body(request.body)
            .build()
            .map_err(|e| http::Error::InvalidRequest(e.to_string()))?;
        let mut response = self.http.execute(built).await.map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > self.max_http_body {
                return Err(http::Error::Transport(format!(
                    "response body larger than {} bytes",
                    self.max_http_body
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(http::Response {
            status,
            headers,
            body,
        })
    }
}

impl CallState {
    /// Whether `host:port` is within the manifest's list, the operator's
    /// grant to an upload, and this call's narrowing. A manifest's `*`
    /// counts only where the host narrows it: per use, or by a grant.
    fn may_call(&self, host: &str, port: u16) -> bool {
        let matches = |hosts: &[HostPattern]| hosts.iter().any(|p| p.matches(host, port));
        let narrowed = match &self.context.allowed_hosts {
            Some(hosts) => matches(hosts),
            None => {
                self.grant.is_some() || !self.manifest.allowed_hosts.iter().any(HostPattern::is_any)
            }
        };
        self.manifest.allows_host(host, port)
            && narrowed
            && self.grant.as_deref().is_none_or(matches)
    }
}

/// Refuses a host that is, or resolves to, an address the operator's
/// [`Egress`] does not allow; `plugin` names the caller in the log.
async fn check_addresses(
    egress: &Egress,
    plugin: &str,
    host: &str,
    port: u16,
) -> Result<(), http::Error> {
    let addresses: Vec<SocketAddr> = match egress::literal(host) {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| http::Error::Transport(format!("cannot resolve `{host}`: {e}")))?
            .collect(),
    };
    match addresses.iter().find(|a| !egress.permits(**a)) {
        Some(refused) => {
            tracing::warn!(plugin, %host, address = %refused, "plugin HTTP call to an internal address denied");
            Err(http::Error::Denied(format!(
                "`{host}:{port}` is {}, an internal address plugins may not reach unless the operator allows it (`egress-allow`)",
                refused.ip()
            )))
        }
        None => Ok(()),
    }
}

fn transport(err: reqwest::Error) -> http::Error {
    let mut cause: Option<&dyn std::error::Error> = Some(&err);
    while let Some(error) = cause {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return http::Error::Denied(refused.to_string());
        }
        cause = error.source();
    }
    if err.is_timeout() {
        http::Error::Timeout
    } else {
        // Without the URL: it may carry credentials in its query.
        http::Error::Transport(err.without_url().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_text_is_one_bounded_line() {
        assert_eq!(
            escaped("ok\n{\"level\":\"ERROR\"}\r\u{1b}[2J", 100),
            "ok\\n{\"level\":\"ERROR\"}\\r\\u{1b}[2J"
        );
        let long = "x".repeat(10_000);
        let cut = escaped(&long, MAX_LOG_MESSAGE);
        assert_eq!(cut.len(), MAX_LOG_MESSAGE + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
