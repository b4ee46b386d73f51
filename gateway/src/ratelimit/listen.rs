//! Where the service listens: `host:port` (TCP) or `unix:/path` (a Unix socket, mode 0600, for
//! an Envoy on the same host: its cluster uses a `pipe` address).

use std::path::{Path, PathBuf};

/// A listen address as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `host:port`; the host may be a name (`0.0.0.0:8081`, `localhost:0`).
    Tcp(String),
    Unix(PathBuf),
}

impl Listen {
    pub fn parse(s: &str) -> Result<Listen, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path (unix:/run/llm-forward/ratelimit.sock)".into());
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Listen::Tcp(s.to_string()))
            }
            _ => Err(format!(
                "`{s}`: expected host:port (127.0.0.1:8081) or unix:/path"
            )),
        }
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The address actually bound (the port is known when `:0` was asked): the same type as the
/// gateway's other servers use.
pub use crate::http_server::ListenAddr as BoundAddr;

/// A bound listener.
pub enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

pub async fn bind(listen: &Listen) -> Result<(Bound, BoundAddr), String> {
    match listen {
        Listen::Tcp(a) => {
            let l = tokio::net::TcpListener::bind(a.as_str())
                .await
                .map_err(|e| format!("cannot listen on {a}: {e}"))?;
            let addr = l.local_addr().map_err(|e| e.to_string())?;
            Ok((Bound::Tcp(l), BoundAddr::Tcp(addr)))
        }
        Listen::Unix(path) => {
            remove_stale_socket(path)?;
            let l = bind_private(path)
                .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?;
            Ok((Bound::Unix(l), BoundAddr::Unix(path.clone())))
        }
    }
}

/// Binds the socket inside a fresh 0700 folder next to `path`, makes it 0600, then renames it into
/// place: it is never reachable by others, not even between bind and chmod.
fn bind_private(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the socket path has no file name"))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let staging = parent.join(format!(
        ".{}.{}-{nanos}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let result = (|| {
        let tmp = staging.join("s");
        let listener = tokio::net::UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// A socket file left by a previous run is replaced; any other file is not touched.
fn remove_stale_socket(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .map_err(|e| format!("cannot replace {}: {e}", path.display())),
        Ok(_) => Err(format!(
            "{} exists and is not a socket; not replacing it",
            path.display()
        )),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            Listen::parse("127.0.0.1:8081").unwrap(),
            Listen::Tcp("127.0.0.1:8081".into())
        );
        assert_eq!(
            Listen::parse("[::1]:0").unwrap(),
            Listen::Tcp("[::1]:0".into())
        );
        assert_eq!(
            Listen::parse("unix:/run/x.sock").unwrap(),
            Listen::Unix("/run/x.sock".into())
        );
        for bad in ["unix:", "8081", ":8081", "host:port", "host:99999"] {
            assert!(Listen::parse(bad).is_err(), "{bad}");
        }
    }
}
