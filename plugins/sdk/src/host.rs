//! What the host offers every plugin: logging, settings, granted secrets, a clock.

use crate::bindings::host_api as api;

pub use api::Level;

/// Writes one log record with structured fields.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    api::log(level, message, &fields);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// The plugin's settings as JSON text ("{}" when an operator set none).
pub fn settings() -> String {
    api::settings()
}

/// A secret the manifest asks for and an operator granted, or `None`.
pub fn secret(name: &str) -> Option<String> {
    api::secret(name)
}

/// A secret the settings need: its value, or a problem at
/// `/secrets/<name>` that tells the operator `what` to grant.
pub fn required_secret(name: &str, what: impl Into<String>) -> Result<String, crate::Diagnostic> {
    secret(name).ok_or_else(|| {
        crate::Diagnostic::at(format!("/secrets/{}", crate::config::escape(name)), what)
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    api::now_ms()
}

/// A value kept with [`cache_put`] by a call with the same settings and
/// secrets, if it has not expired.
pub fn cache_get(key: &str) -> Option<String> {
    api::cache_get(key)
}

/// Keeps `value` under `key` for `ttl_ms` milliseconds, for later calls.
pub fn cache_put(key: &str, value: &str, ttl_ms: u64) {
    api::cache_put(key, value, ttl_ms)
}

/// Reports panics to the host log, so the host can say why a call trapped.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            log(Level::Error, &info.to_string(), &[("panic", "true")]);
        }));
    });
}
