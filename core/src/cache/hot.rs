//! The worker's hot cache: a small, byte-bounded LRU of entries in front of the cache service.
//!
//! Each Envoy worker keeps the entries it recently fetched from or stored to the cache service, so
//! a repeated request is answered without a second HTTP exchange. Entries expire no later than
//! the service's entry ([`hot_expiry`]) and at most `hot_ttl_seconds` after they were taken in, so
//! workers and gateways converge on what the service holds. The clock is passed in (milliseconds),
//! which keeps this module pure and testable.

use std::collections::{BTreeMap, HashMap};

/// Bytes charged per entry on top of its key and value (maps, bookkeeping).
pub const ENTRY_OVERHEAD: usize = 96;

/// Entries bigger than this fraction of the bound (`max_bytes / MAX_SHARE`) are not kept: one big
/// answer must not flush the whole cache.
pub const MAX_SHARE: usize = 4;

#[derive(Debug)]
struct Slot<V> {
    value: V,
    size: usize,
    expires_ms: u64,
    /// Position in `order` (higher = used more recently).
    tick: u64,
}

/// A byte-bounded LRU with a per-entry expiry. `max_bytes == 0` disables it (nothing is kept).
#[derive(Debug)]
pub struct HotCache<V> {
    max_bytes: usize,
    used: usize,
    next_tick: u64,
    map: HashMap<String, Slot<V>>,
    /// Recency order: tick → key, oldest first.
    order: BTreeMap<u64, String>,
}

impl<V> HotCache<V> {
    pub fn new(max_bytes: usize) -> HotCache<V> {
        HotCache {
            max_bytes,
            used: 0,
            next_tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// Bytes charged (keys, values and overhead).
    pub fn bytes(&self) -> usize {
        self.used
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn tick(&mut self) -> u64 {
        let t = self.next_tick;
        self.next_tick = self.next_tick.wrapping_add(1);
        t
    }

    /// The live entry under `key`, now the most recently used. An expired entry is dropped.
    pub fn get(&mut self, key: &str, now_ms: u64) -> Option<&V> {
        let expired = self.map.get(key)?.expires_ms <= now_ms;
        if expired {
            self.remove(key);
            return None;
        }
        let tick = self.tick();
        let slot = self.map.get_mut(key)?;
        if let Some(k) = self.order.remove(&slot.tick) {
            self.order.insert(tick, k);
        }
        slot.tick = tick;
        Some(&slot.value)
    }

    /// Keeps `value` (of about `size` bytes) under `key` until `expires_ms`, replacing any entry
    /// under that key and evicting the least recently used ones to stay within the bound. Returns
    /// false (and keeps nothing, dropping an older entry under `key`) when the cache is disabled,
    /// the entry is already expired or too big.
    pub fn insert(
        &mut self,
        key: String,
        value: V,
        size: usize,
        expires_ms: u64,
        now_ms: u64,
    ) -> bool {
        self.remove(&key);
        let charged = size
            .saturating_add(key.len())
            .saturating_add(ENTRY_OVERHEAD);
        if !self.enabled() || expires_ms <= now_ms || charged > self.max_bytes / MAX_SHARE {
            return false;
        }
        while self.used.saturating_add(charged) > self.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.map.remove(&oldest) {
                self.used = self.used.saturating_sub(slot.size);
            }
        }
        let tick = self.tick();
        self.order.insert(tick, key.clone());
        self.map.insert(
            key,
            Slot {
                value,
                size: charged,
                expires_ms,
                tick,
            },
        );
        self.used = self.used.saturating_add(charged);
        true
    }

    /// Drops the entry under `key`, if any.
    pub fn remove(&mut self, key: &str) {
        if let Some(slot) = self.map.remove(key) {
            self.order.remove(&slot.tick);
            self.used = self.used.saturating_sub(slot.size);
        }
    }
}

/// When a hot entry expires (Unix ms): when the service's entry does (`created_s` + `ttl_s`, the
/// entry's own stamp, so an entry fetched late in its life is not kept past it), and at most
/// `hot_ttl_s` after `now_ms`.
pub fn hot_expiry(created_s: u64, ttl_s: u64, hot_ttl_s: u64, now_ms: u64) -> u64 {
    let service = created_s.saturating_add(ttl_s).saturating_mul(1000);
    let local = now_ms.saturating_add(hot_ttl_s.saturating_mul(1000));
    service.min(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(key: &str, size: usize) -> usize {
        key.len() + size + ENTRY_OVERHEAD
    }

    #[test]
    fn keeps_and_returns_entries_until_they_expire() {
        let mut c = HotCache::new(1 << 20);
        assert!(c.insert("k".into(), 1, 10, 2_000, 1_000));
        assert_eq!(c.get("k", 1_000), Some(&1));
        assert_eq!(c.get("k", 1_999), Some(&1));
        assert_eq!(c.get("k", 2_000), None, "expired at its instant");
        assert!(c.is_empty());
        assert_eq!(c.bytes(), 0);
        assert_eq!(c.get("other", 0), None);
    }

    #[test]
    fn stays_within_the_byte_bound_evicting_least_recently_used_first() {
        let size = 100;
        let one = charge("a", size);
        let mut c = HotCache::new(one * 4);
        for k in ["a", "b", "c", "d"] {
            assert!(c.insert(k.into(), k.to_string(), size, u64::MAX, 0));
        }
        assert_eq!(c.bytes(), one * 4);
        // `a` used: `b` is now the oldest.
        assert!(c.get("a", 1).is_some());
        assert!(c.insert("e".into(), "e".into(), size, u64::MAX, 1));
        assert!(c.bytes() <= one * 4);
        assert!(c.get("b", 2).is_none(), "least recently used evicted");
        for k in ["a", "c", "d", "e"] {
            assert!(c.get(k, 2).is_some(), "{k}");
        }
        // Order now a, c, d, e (by the gets above): two more evict a and c.
        assert!(c.insert("f".into(), "f".into(), size, u64::MAX, 3));
        assert!(c.insert("g".into(), "g".into(), size, u64::MAX, 3));
        assert_eq!(c.len(), 4);
        assert!(c.get("a", 4).is_none());
        assert!(c.get("c", 4).is_none());
        assert!(c.get("d", 4).is_some());
    }

    #[test]
    fn replacing_a_key_replaces_its_value_and_its_charge() {
        let mut c = HotCache::new(10_000);
        assert!(c.insert("k".into(), "old", 100, u64::MAX, 0));
        assert!(c.insert("k".into(), "new", 200, u64::MAX, 0));
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), charge("k", 200));
        assert_eq!(c.get("k", 0), Some(&"new"));
        c.remove("k");
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }

    #[test]
    fn refuses_disabled_expired_and_oversized_entries() {
        let mut off = HotCache::new(0);
        assert!(!off.enabled());
        assert!(!off.insert("k".into(), 1, 1, u64::MAX, 0));
        assert_eq!(off.get("k", 0), None);

        let mut c = HotCache::new(4_000);
        assert!(!c.insert("k".into(), 1, 1, 5, 5), "already expired");
        assert!(
            !c.insert("k".into(), 1, 1_000, u64::MAX, 0),
            "above a quarter"
        );
        assert!(c.insert("k".into(), 1, 800, u64::MAX, 0));
        // A refused replacement still drops the stale entry under that key.
        assert!(!c.insert("k".into(), 2, 5_000, u64::MAX, 0));
        assert_eq!(c.get("k", 0), None);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn many_inserts_never_exceed_the_bound() {
        let mut c = HotCache::new(50_000);
        for i in 0..2_000u64 {
            let key = format!("key-{i}");
            let size = (i as usize * 37) % 9_000;
            c.insert(key, i, size, u64::MAX, i);
            assert!(c.bytes() <= 50_000);
            assert_eq!(c.map.len(), c.order.len());
        }
    }

    #[test]
    fn expiry_is_the_earlier_of_the_service_ttl_and_the_hot_ttl() {
        // Stored at 100 s with a 1 s TTL: gone at 101 s whatever the hot TTL.
        assert_eq!(hot_expiry(100, 1, 60, 100_500), 101_000);
        // Long service TTL: the hot TTL bounds it.
        assert_eq!(hot_expiry(100, 86_400, 60, 100_500), 160_500);
        // Fetched after the service's expiry (clock skew): already expired, never kept.
        let mut c = HotCache::new(10_000);
        let exp = hot_expiry(100, 1, 60, 200_000);
        assert!(!c.insert("k".into(), 1, 1, exp, 200_000));
        assert_eq!(hot_expiry(u64::MAX, u64::MAX, u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn config_defaults_validation_and_filter_defaults() {
        use crate::cache::{CacheConfig, FilterCache};
        let c = CacheConfig::default();
        assert_eq!((c.hot_bytes, c.hot_ttl_seconds), (8 * 1024 * 1024, 60));
        let mut errors = Vec::new();
        c.check(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let bad = CacheConfig {
            hot_bytes: 2 * 1024 * 1024 * 1024,
            hot_ttl_seconds: 0,
            ..CacheConfig::default()
        };
        let mut errors = Vec::new();
        bad.check(&mut errors);
        let paths: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            paths.iter().any(|p| p.contains("cache.hot_bytes")),
            "{paths:?}"
        );
        assert!(
            paths.iter().any(|p| p.contains("cache.hot_ttl_seconds")),
            "{paths:?}"
        );
        let off = CacheConfig {
            hot_bytes: 0,
            ..CacheConfig::default()
        };
        let mut errors = Vec::new();
        off.check(&mut errors);
        assert!(errors.is_empty(), "0 turns it off: {errors:?}");
        // A filter config without the fields (an older renderer) gets the defaults.
        let fc = FilterCache::from_config(&CacheConfig {
            openai: true,
            ..CacheConfig::default()
        })
        .unwrap();
        let mut json = serde_json::to_value(&fc).unwrap();
        let obj = json.as_object_mut().unwrap();
        obj.remove("hot_bytes");
        obj.remove("hot_ttl_seconds");
        let back: FilterCache = serde_json::from_value(json).unwrap();
        assert_eq!(back, fc);
    }
}
