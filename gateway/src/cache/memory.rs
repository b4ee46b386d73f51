//! The `memory` backend: a byte-bounded LRU map with a TTL per entry.
//!
//! One mutex around a `HashMap` (key → entry) and a `BTreeMap` (use tick → key) that orders entries
//! from least to most recently used. Every operation is O(log n); the lock is held for microseconds,
//! which is far below what one HTTP exchange with the service costs. Expired entries are dropped
//! when read and by [`MemoryStore::sweep`]; when a store would exceed the byte bound, the least
//! recently used entries are evicted first.

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Expiry used when `now + ttl` does not fit the clock (about 30 years).
const FOREVER: Duration = Duration::from_secs(1 << 30);

/// Bytes counted for an entry besides its key and value (map nodes, timestamps).
const ENTRY_OVERHEAD: u64 = 128;

struct Slot {
    value: Bytes,
    expires: Instant,
    tick: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Slot>,
    order: BTreeMap<u64, String>,
    next_tick: u64,
    bytes: u64,
    evictions: u64,
}

/// The key is held twice (map and LRU order).
fn weight(key: &str, value: &Bytes) -> u64 {
    2 * key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD
}

impl Inner {
    fn remove(&mut self, key: &str) -> Option<Slot> {
        let slot = self.map.remove(key)?;
        self.order.remove(&slot.tick);
        self.bytes = self.bytes.saturating_sub(weight(key, &slot.value));
        Some(slot)
    }

    fn touch(&mut self, key: &str) {
        let tick = self.next_tick;
        if let Some(slot) = self.map.get_mut(key) {
            self.order.remove(&slot.tick);
            slot.tick = tick;
            self.order.insert(tick, key.to_string());
            self.next_tick += 1;
        }
    }
}

pub struct MemoryStore {
    max_bytes: u64,
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new(max_bytes: u64) -> MemoryStore {
        MemoryStore {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        let mut inner = self.lock();
        let expired = inner.map.get(key)?.expires <= Instant::now();
        if expired {
            inner.remove(key);
            return None;
        }
        inner.touch(key);
        inner.map.get(key).map(|s| s.value.clone())
    }

    /// Stores `value`; `false` when it alone is bigger than the bound (nothing is evicted then).
    pub fn put(&self, key: &str, value: Bytes, ttl: Duration) -> bool {
        // A body collected from the network may be a view into a larger buffer; keep an exact copy
        // so the bound counts what is really held (the soak test saw ~3x more memory without this).
        let value = Bytes::copy_from_slice(&value);
        let w = weight(key, &value);
        if w > self.max_bytes {
            return false;
        }
        // Checked: `Instant + Duration` panics on overflow, and the TTL comes from a request.
        let now = Instant::now();
        let expires = now
            .checked_add(ttl)
            .or_else(|| now.checked_add(FOREVER))
            .unwrap_or(now);
        let mut inner = self.lock();
        inner.remove(key);
        while inner.bytes + w > self.max_bytes {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(slot) = inner.map.remove(&oldest) {
                inner.bytes = inner.bytes.saturating_sub(weight(&oldest, &slot.value));
                inner.evictions += 1;
            }
        }
        let tick = inner.next_tick;
        inner.next_tick += 1;
        inner.order.insert(tick, key.to_string());
        inner.bytes += w;
        inner.map.insert(
            key.to_string(),
            Slot {
                value,
                expires,
                tick,
            },
        );
        true
    }

    pub fn delete(&self, key: &str) -> bool {
        self.lock().remove(key).is_some()
    }

    /// Drops every expired entry; returns how many.
    pub fn sweep(&self) -> usize {
        let mut inner = self.lock();
        let now = Instant::now();
        let expired: Vec<String> = inner
            .map
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            inner.remove(k);
        }
        expired.len()
    }

    /// Bytes held (keys, values and overhead).
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    pub fn entries(&self) -> u64 {
        self.lock().map.len() as u64
    }

    /// Entries evicted to make room, since start.
    pub fn evictions(&self) -> u64 {
        self.lock().evictions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn stores_reads_and_deletes() {
        let m = MemoryStore::new(10_000);
        assert!(m.put("a", Bytes::from_static(b"1"), HOUR));
        assert_eq!(m.get("a").as_deref(), Some(&b"1"[..]));
        assert!(m.put("a", Bytes::from_static(b"22"), HOUR));
        assert_eq!(m.get("a").as_deref(), Some(&b"22"[..]));
        assert_eq!(m.bytes(), weight("a", &Bytes::from_static(b"22")));
        assert!(m.delete("a"));
        assert!(!m.delete("a"));
        assert_eq!(m.get("a"), None);
        assert_eq!(m.bytes(), 0);
    }

    #[test]
    fn least_recently_used_goes_first_and_the_bound_holds() {
        let value = Bytes::from(vec![0u8; 100]);
        let one = weight("a", &value);
        let m = MemoryStore::new(one * 3);
        for k in ["a", "b", "c"] {
            assert!(m.put(k, value.clone(), HOUR));
        }
        assert!(m.get("a").is_some()); // a is now the most recent
        assert!(m.put("d", value.clone(), HOUR));
        assert_eq!(m.get("b"), None, "b was the least recently used");
        assert!(m.get("a").is_some() && m.get("c").is_some() && m.get("d").is_some());
        assert_eq!(m.evictions(), 1);
        assert!(m.bytes() <= one * 3);
        assert!(!m.put("huge", Bytes::from(vec![0u8; 1000]), HOUR));
        assert_eq!(m.entries(), 3);
    }

    #[test]
    fn a_ttl_beyond_the_clock_does_not_panic() {
        let m = MemoryStore::new(10_000);
        assert!(m.put("a", Bytes::from_static(b"1"), Duration::from_secs(u64::MAX)));
        assert!(m.put("b", Bytes::from_static(b"1"), Duration::MAX));
        assert_eq!(m.get("a").as_deref(), Some(&b"1"[..]));
        assert_eq!(m.sweep(), 0);
    }

    #[test]
    fn entries_expire() {
        let m = MemoryStore::new(10_000);
        m.put("a", Bytes::from_static(b"1"), Duration::from_millis(30));
        m.put("b", Bytes::from_static(b"1"), Duration::from_millis(30));
        m.put("c", Bytes::from_static(b"1"), HOUR);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(m.get("a"), None);
        assert_eq!(m.sweep(), 1);
        assert_eq!(m.entries(), 1);
        assert!(m.get("c").is_some());
    }
}
