//! The host side of the plugin imports: logging, settings, secrets, clock, HTTP.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::bindings::{host, http, types};
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
        let started = Instant::now();
        let result = self.send_checked(request).await;
        self.clock.add_host_time(started.elapsed());
        result
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
        let granted = self
            .context
            .allowed_hosts
            .as_ref()
            .is_none_or(|hosts| hosts.iter().any(|p| p.matches(&host, port)));
        if !self.manifest.allows_host(&host, port) || !granted {
            tracing::warn!(plugin = %self.id, %host, port, "plugin HTTP call denied");
            return Err(http::Error::Denied(format!(
                "`{host}:{port}` is not among the hosts this plugin may call"
            )));
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

fn transport(err: reqwest::Error) -> http::Error {
    if err.is_timeout() {
        http::Error::Timeout
    } else {
        // Without the URL: it may carry credentials in its query.
        http::Error::Transport(err.without_url().to_string())
    }
}
