//! Files the gateway writes may hold keys (rendered Envoy config with literal keys from a `.env`,
//! config backups) or conversations (chat logs, the disk cache): they are created owner-only
//! (0600), or 0640 with `logging.group_readable`, never world-readable, whatever the user's umask.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Mode of a file the gateway creates.
pub fn file_mode(group_read: bool) -> u32 {
    if group_read {
        0o640
    } else {
        0o600
    }
}

/// The umask of `run` and its Envoy, so that files created by others' code (Envoy's logs, the redb
/// file, log folders) get the same modes: 0600/0700, or 0640/0750 with `group_read`.
pub fn umask(group_read: bool) -> u32 {
    if group_read {
        0o027
    } else {
        0o077
    }
}

/// Set this process's umask (see [`umask`]).
pub fn set_process_umask(group_read: bool) {
    // SAFETY: umask(2) only replaces the process's mask and cannot fail.
    unsafe {
        libc::umask(umask(group_read) as libc::mode_t);
    }
}

/// Create `path`, failing if anything exists there (`O_EXCL`: a planted file or symlink is never
/// written through), with `mode`.
pub fn create_new(path: &Path, mode: u32) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // The umask may have removed bits of `mode`; it never adds any, so this only widens to what
    // was asked (0640 under a 077 umask).
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(f)
}

/// Replace `path` with `text` atomically: written to a new owner-only temporary file beside it,
/// then renamed over it, so readers (Envoy's file watcher) see a complete file, never a half one.
pub fn write_atomic(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    // A temporary left by a crash of this very process id: ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let written = create_new(&tmp, file_mode(false)).and_then(|mut f| f.write_all(text));
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_owner_only_and_never_written_through_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("envoy.yaml");
        write_atomic(&p, b"a: 1\n").unwrap();
        assert_eq!(mode(&p), 0o600);
        write_atomic(&p, b"a: 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a: 2\n");
        assert_eq!(mode(&p), 0o600);
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_new(&link, 0o600).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let g = dir.path().join("g");
        create_new(&g, file_mode(true)).unwrap();
        assert_eq!(mode(&g), 0o640);
    }
}
