//! The worker's hot cache: decoded entries this worker recently fetched from or stored to the
//! cache service, answered without a call (the LRU and expiry rules are
//! `llm_forward_core::cache::hot`). One per worker VM, owned by the root's `Plugin` and used by the
//! HTTP contexts of that worker (single-threaded: a `RefCell` is enough).

use llm_forward_core::cache::hot::{hot_expiry, HotCache};
use llm_forward_core::cache::{Entry, FilterCache};
use std::cell::RefCell;

#[derive(Debug)]
pub struct WorkerCache {
    entries: RefCell<HotCache<Entry>>,
    ttl_seconds: u64,
    hot_ttl_seconds: u64,
}

impl Default for WorkerCache {
    fn default() -> Self {
        WorkerCache {
            entries: RefCell::new(HotCache::new(0)),
            ttl_seconds: 0,
            hot_ttl_seconds: 0,
        }
    }
}

impl WorkerCache {
    pub fn configure(cache: Option<&FilterCache>) -> WorkerCache {
        match cache {
            Some(c) => WorkerCache {
                entries: RefCell::new(HotCache::new(
                    usize::try_from(c.hot_bytes).unwrap_or(usize::MAX),
                )),
                ttl_seconds: c.ttl_seconds,
                hot_ttl_seconds: c.hot_ttl_seconds,
            },
            None => WorkerCache::default(),
        }
    }

    /// `f` applied to the live entry under `key` (the borrow ends before `f`'s result is used,
    /// so a local reply sent afterwards never re-enters it).
    pub fn with<R>(&self, key: &str, now_ms: u64, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let mut entries = self.entries.try_borrow_mut().ok()?;
        if !entries.enabled() {
            return None;
        }
        entries.get(key, now_ms).map(f)
    }

    /// Keeps `entry` (`size`: its encoded length) until the service's copy expires, at most
    /// `hot_ttl_seconds`. Replaces (or, when not kept, drops) what was under `key`.
    pub fn put(&self, key: &str, entry: Entry, size: usize, now_ms: u64) {
        let Ok(mut entries) = self.entries.try_borrow_mut() else {
            return;
        };
        if !entries.enabled() {
            return;
        }
        let expires = hot_expiry(
            entry.meta.created,
            self.ttl_seconds,
            self.hot_ttl_seconds,
            now_ms,
        );
        entries.insert(key.to_string(), entry, size, expires, now_ms);
    }
}
