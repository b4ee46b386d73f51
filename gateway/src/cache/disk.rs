//! The `disk` backend: one `redb` database file, so entries survive restarts.
//!
//! A value is stored as its expiry (Unix milliseconds, u64 big-endian) followed by the bytes. Reads
//! treat an expired value as absent; [`DiskStore::sweep`] (run periodically by the service) deletes
//! them. redb is blocking, so the service calls it from `spawn_blocking`.

use bytes::Bytes;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn expiry_of(stored: &[u8]) -> u64 {
    stored
        .first_chunk::<8>()
        .map(|b| u64::from_be_bytes(*b))
        .unwrap_or(0)
}

pub struct DiskStore {
    db: Database,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl DiskStore {
    /// Opens (or creates) the database file; the folder must exist.
    pub fn open(path: &Path) -> Result<DiskStore, String> {
        let db = Database::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(TABLE).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(DiskStore { db })
    }

    pub fn get(&self, key: &str) -> Result<Option<Bytes>, String> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(TABLE).map_err(err)?;
        let Some(guard) = table.get(key).map_err(err)? else {
            return Ok(None);
        };
        let stored = guard.value();
        if expiry_of(stored) <= now_ms() {
            return Ok(None);
        }
        Ok(stored.get(8..).map(Bytes::copy_from_slice))
    }

    pub fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), String> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let expires = now_ms().saturating_add(ttl_ms);
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&expires.to_be_bytes());
        stored.extend_from_slice(value);
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(TABLE).map_err(err)?;
            table.insert(key, stored.as_slice()).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    pub fn delete(&self, key: &str) -> Result<bool, String> {
        let tx = self.db.begin_write().map_err(err)?;
        let removed = {
            let mut table = tx.open_table(TABLE).map_err(err)?;
            let removed = table.remove(key).map_err(err)?.is_some();
            removed
        };
        tx.commit().map_err(err)?;
        Ok(removed)
    }

    /// Deletes expired entries; returns how many, and the entries and value bytes left.
    pub fn sweep(&self) -> Result<(usize, u64, u64), String> {
        let now = now_ms();
        let tx = self.db.begin_write().map_err(err)?;
        let (removed, left, bytes) = {
            let mut table = tx.open_table(TABLE).map_err(err)?;
            let before = table.len().map_err(err)?;
            table
                .retain(|_, stored| expiry_of(stored) > now)
                .map_err(err)?;
            let left = table.len().map_err(err)?;
            let mut bytes = 0u64;
            for item in table.iter().map_err(err)? {
                let (k, v) = item.map_err(err)?;
                bytes += (k.value().len() + v.value().len()) as u64;
            }
            (before.saturating_sub(left) as usize, left, bytes)
        };
        tx.commit().map_err(err)?;
        Ok((removed, left, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(tag: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("llm-forward-disk-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("cache.redb")
    }

    #[test]
    fn survives_reopening() {
        let path = temp_file("reopen");
        {
            let d = DiskStore::open(&path).unwrap();
            d.put("k", b"value", Duration::from_secs(60)).unwrap();
            assert_eq!(d.get("k").unwrap().as_deref(), Some(&b"value"[..]));
        }
        let d = DiskStore::open(&path).unwrap();
        assert_eq!(d.get("k").unwrap().as_deref(), Some(&b"value"[..]));
        assert!(d.delete("k").unwrap());
        assert_eq!(d.get("k").unwrap(), None);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn expired_entries_are_absent_and_swept() {
        let path = temp_file("ttl");
        let d = DiskStore::open(&path).unwrap();
        d.put("short", b"1", Duration::from_millis(20)).unwrap();
        d.put("long", b"22", Duration::from_secs(60)).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(d.get("short").unwrap(), None);
        let (removed, left, bytes) = d.sweep().unwrap();
        assert_eq!((removed, left), (1, 1));
        assert_eq!(bytes, 4 + 8 + 2);
        assert!(d.get("long").unwrap().is_some());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
