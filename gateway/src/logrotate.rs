//! Size-based rotation of the files Envoy writes (chat logs, access log) for `llm-forward run`.
//!
//! Envoy keeps its log files open. Rotation renames a file that reached the limit to
//! `<name>.<UTC timestamp>` (Envoy keeps writing into the renamed file for a moment, so nothing is
//! lost), then asks Envoy to reopen its logs (`POST /reopen_logs` on the admin socket), after which
//! new lines go to a fresh file under the original name. Nothing is deleted.

use crate::http_server::ListenAddr;
use llm_forward_core::chatlog::rfc3339_utc;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often file sizes are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// `20261126T134015Z` for a file rotated at `unix_ms`.
pub fn suffix(unix_ms: u64) -> String {
    let t = rfc3339_utc(unix_ms);
    let compact: String = t
        .get(..19)
        .unwrap_or(&t)
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{compact}Z")
}

/// Renames every file in `files` that is at least `limit` bytes; returns the new names.
pub fn rotate_large(files: &[PathBuf], limit: u64, unix_ms: u64) -> Vec<PathBuf> {
    let mut rotated = Vec::new();
    if limit == 0 {
        return rotated;
    }
    for file in files {
        let Ok(meta) = std::fs::metadata(file) else {
            continue;
        };
        if meta.len() < limit {
            continue;
        }
        let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let mut target = file.with_file_name(format!("{name}.{}", suffix(unix_ms)));
        let mut n = 1;
        while target.exists() {
            target = file.with_file_name(format!("{name}.{}-{n}", suffix(unix_ms)));
            n += 1;
        }
        if std::fs::rename(file, &target).is_ok() {
            rotated.push(target);
        }
    }
    rotated
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Checks every [`CHECK_EVERY`] and rotates the files `watched` names at that moment, at the
/// limit it gives (0 = never), so routes added by a hot reload are rotated too; runs until the
/// task is dropped with the runtime.
pub fn spawn(
    watched: impl Fn() -> (Vec<PathBuf>, u64) + Send + 'static,
    admin: ListenAddr,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (files, limit) = watched();
            if limit == 0 || files.is_empty() {
                continue;
            }
            let rotated =
                tokio::task::spawn_blocking(move || rotate_large(&files, limit, now_ms()))
                    .await
                    .unwrap_or_default();
            if rotated.is_empty() {
                continue;
            }
            let admin = admin.clone();
            let reopened = tokio::task::spawn_blocking(move || {
                crate::envoy::admin_post(&admin, "/reopen_logs")
            })
            .await;
            match reopened {
                Ok(Ok((200, _))) => {}
                other => eprintln!("llm-forward: rotated logs but /reopen_logs failed: {other:?}"),
            }
        }
    })
}

/// The files `run` rotates: the chat logs of the config and the access log.
pub fn files(chat_logs: Vec<PathBuf>, log_dir: &Path) -> Vec<PathBuf> {
    let mut all = chat_logs;
    all.push(log_dir.join("access.log"));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_only_large_files_with_a_timestamp_suffix() {
        let dir = std::env::temp_dir().join(format!("llm-forward-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("chat.log");
        let small = dir.join("access.log");
        std::fs::write(&big, vec![b'x'; 2000]).unwrap();
        std::fs::write(&small, b"x").unwrap();
        let files = vec![big.clone(), small.clone(), dir.join("missing.log")];
        let rotated = rotate_large(&files, 1000, 1_798_292_415_000);
        assert_eq!(rotated, vec![dir.join("chat.log.20261226T134015Z")]);
        assert!(!big.exists() && small.exists());
        // Same second again: a distinct name, nothing overwritten.
        std::fs::write(&big, vec![b'y'; 2000]).unwrap();
        let again = rotate_large(&files, 1000, 1_798_292_415_000);
        assert_eq!(again, vec![dir.join("chat.log.20261226T134015Z-1")]);
        assert!(rotate_large(&files, 0, 0).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
