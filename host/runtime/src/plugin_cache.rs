//! Values plugins keep between calls (an access token, say), behind the
//! `cache-get` and `cache-put` imports. Each [`CacheScope`] is a namespace of
//! its own: the host gives calls with the same plugin, settings and secrets
//! the same scope, so nothing crosses organisations or credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Longest key a plugin may use, in bytes.
pub const MAX_KEY: usize = 256;
/// Largest value a plugin may keep, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;
/// Entries kept in all; past this the one expiring soonest goes.
const MAX_ENTRIES: usize = 4096;

/// The cache every scope shares.
#[derive(Debug, Default)]
pub struct PluginCache {
    entries: Mutex<HashMap<(Arc<str>, String), Entry>>,
}

#[derive(Debug)]
struct Entry {
    value: String,
    expires_ms: u64,
}

/// One namespace of a [`PluginCache`].
#[derive(Debug, Clone)]
pub struct CacheScope {
    cache: Arc<PluginCache>,
    scope: Arc<str>,
}

impl PluginCache {
    /// The namespace `scope` (e.g. a digest of a plugin's id, settings and secrets).
    pub fn scope(self: &Arc<Self>, scope: impl Into<Arc<str>>) -> CacheScope {
        CacheScope {
            cache: self.clone(),
            scope: scope.into(),
        }
    }

    /// How many entries are kept (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.entries.lock().expect("plugin cache lock").len()
    }

    /// Forgets every scope's entries.
    pub fn clear(&self) {
        self.entries.lock().expect("plugin cache lock").clear();
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CacheScope {
    /// The value under `key`, unless it expired at `now_ms`.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<String> {
        let entries = self.cache.entries.lock().expect("plugin cache lock");
        entries
            .get(&(self.scope.clone(), key.to_string()))
            .filter(|e| e.expires_ms > now_ms)
            .map(|e| e.value.clone())
    }

    /// Forgets everything the scope keeps (e.g. credentials a server refused).
    pub fn clear(&self) {
        let mut entries = self.cache.entries.lock().expect("plugin cache lock");
        entries.retain(|(scope, _), _| *scope != self.scope);
    }

    /// Keeps `value` until `now_ms + ttl_ms`; oversized keys or values, and a
    /// zero TTL, remove the entry instead.
    pub fn put(&self, key: &str, value: String, ttl_ms: u64, now_ms: u64) {
        let mut entries = self.cache.entries.lock().expect("plugin cache lock");
        let id = (self.scope.clone(), key.to_string());
        if key.len() > MAX_KEY || value.len() > MAX_VALUE || ttl_ms == 0 {
            entries.remove(&id);
            return;
        }
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&id) {
            entries.retain(|_, e| e.expires_ms > now_ms);
            if entries.len() >= MAX_ENTRIES
                && let Some(soonest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires_ms)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&soonest);
            }
        }
        let expires_ms = now_ms.saturating_add(ttl_ms);
        entries.insert(id, Entry { value, expires_ms });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_separate_and_entries_expire() {
        let cache = Arc::new(PluginCache::default());
        let a = cache.scope("a");
        let b = cache.scope("b");
        a.put("token", "one".into(), 1_000, 10);
        assert_eq!(a.get("token", 500).as_deref(), Some("one"));
        assert_eq!(b.get("token", 500), None);
        assert_eq!(a.get("token", 1_010), None);
        a.put("token", "x".repeat(MAX_VALUE + 1), 1_000, 10);
        assert_eq!(a.get("token", 20), None);
        a.put("token", "two".into(), 1_000, 10);
        b.put("token", "three".into(), 1_000, 10);
        a.clear();
        assert_eq!(a.get("token", 20), None);
        assert_eq!(b.get("token", 20).as_deref(), Some("three"));
    }

    #[test]
    fn the_entry_expiring_soonest_goes_first() {
        let cache = Arc::new(PluginCache::default());
        let scope = cache.scope("s");
        for i in 0..MAX_ENTRIES as u64 {
            scope.put(&i.to_string(), "v".into(), 1_000 + i, 0);
        }
        scope.put("new", "v".into(), 5_000, 0);
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert_eq!(scope.get("0", 1), None);
        assert!(scope.get("1", 1).is_some());
        assert!(scope.get("new", 1).is_some());
    }
}
