//! The one HTTP/1.1 accept loop of the gateway's own servers (cache service, console, mock
//! upstream), on a TCP port or a Unix socket.
//!
//! Internal services listen on Unix sockets in `run`'s private runtime folder (mode 0600 inside a
//! 0700 folder): only this user's processes — Envoy and the gateway — can connect, unlike a
//! loopback port, which every local user and pod neighbour reaches.

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

/// Where a server listens: `127.0.0.1:8002` or `unix:/path/to.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix("unix:") {
            Some(p) if !p.is_empty() => Ok(ListenAddr::Unix(PathBuf::from(p))),
            Some(_) => Err("unix: needs a socket path".into()),
            None => s
                .parse()
                .map(ListenAddr::Tcp)
                .map_err(|_| format!("`{s}` is neither IP:PORT nor unix:/path")),
        }
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(a: SocketAddr) -> Self {
        ListenAddr::Tcp(a)
    }
}

/// A bound listener of either kind.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Bind `addr`. A Unix socket is created with mode 0600 (owner only), replacing a stale socket
    /// file at that path (never any other kind of file).
    pub async fn bind(addr: &ListenAddr) -> std::io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => Ok(Listener::Tcp(TcpListener::bind(a).await?)),
            ListenAddr::Unix(path) => bind_unix(path).map(Listener::Unix),
        }
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(l) => {
                let a = l.local_addr()?;
                let p = a.as_pathname().map(Path::to_path_buf).unwrap_or_default();
                Ok(ListenAddr::Unix(p))
            }
        }
    }
}

fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    let listener = UnixListener::bind(path)?;
    // The folder is private already; the mode keeps the socket private if it is not.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Connection settings of one server.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Close connections that do not send their headers within this time (None: never; Envoy
    /// keeps idle pooled connections and must not find them closed behind its back).
    pub header_read_timeout: Option<Duration>,
    /// At most this many connections at once; more are closed right away (None: no bound).
    pub max_connections: Option<usize>,
    /// hyper's read buffer bound (None: hyper's default).
    pub max_buf_size: Option<usize>,
}

/// Accept connections until `shutdown` changes; each connection is served by `handler` on its own
/// task and ends when `shutdown` fires.
pub async fn serve<F, Fut, B>(
    listener: Listener,
    options: ServeOptions,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let slots = options
        .max_connections
        .map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
    loop {
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = shutdown.changed() => return,
        };
        let Ok(stream) = accepted else {
            // E.g. out of file descriptors: back off instead of spinning, and keep serving.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let permit = match &slots {
            Some(s) => match Arc::clone(s).try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => continue, // dropped: too many connections
            },
            None => None,
        };
        let handler = handler.clone();
        let options = options.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .keep_alive(true)
                .timer(TokioTimer::new())
                .header_read_timeout(options.header_read_timeout);
            if let Some(n) = options.max_buf_size {
                builder.max_buf_size(n);
            }
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

/// A connected stream of either kind.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn accept(listener: &Listener) -> std::io::Result<Box<dyn Stream>> {
    match listener {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
        Listener::Unix(l) => {
            let (s, _) = l.accept().await?;
            Ok(Box::new(s))
        }
    }
}

/// A running server's lifetime: its shutdown signal and, when it runs on a thread of its own, that
/// thread. [`ServerHandle::stop`] (or dropping the handle) signals the server and joins its thread,
/// so whatever the server owns (a redb file, a Unix socket) is released when it returns.
pub struct ServerHandle {
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// Serve on the caller's tokio runtime: `serve` gets the shutdown signal.
    pub fn on_current_runtime<Fut>(serve: impl FnOnce(watch::Receiver<bool>) -> Fut) -> ServerHandle
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (shutdown, rx) = watch::channel(false);
        tokio::spawn(serve(rx));
        ServerHandle {
            shutdown,
            thread: None,
        }
    }

    /// Open and serve on a thread `name` with a runtime of its own, for blocking callers (tests,
    /// benches). Returns once `open` has finished, with what it reported (e.g. the bound address) or
    /// its error; the opened state `T` stays on that thread and goes to `serve`.
    pub fn on_own_thread<T, A, Open, Opened, Serve, Served>(
        name: &str,
        open: Open,
        serve: Serve,
    ) -> Result<(A, ServerHandle), String>
    where
        Open: FnOnce() -> Opened + Send + 'static,
        Opened: Future<Output = Result<(T, A), String>>,
        Serve: FnOnce(T, watch::Receiver<bool>) -> Served + Send + 'static,
        Served: Future<Output = ()>,
        A: Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown, rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    match open().await {
                        Ok((opened, reported)) => {
                            let _ = ready_tx.send(Ok(reported));
                            serve(opened, rx).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
                // Dropping the runtime here cancels the connection tasks the server left.
            })
            .map_err(|e| e.to_string())?;
        let reported = ready_rx
            .recv()
            .map_err(|_| format!("{name} thread ended"))??;
        Ok((
            reported,
            ServerHandle {
                shutdown,
                thread: Some(thread),
            },
        ))
    }

    /// Signal the server to stop and join its thread (if it has one). Idempotent.
    pub fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse_both_kinds() {
        assert_eq!(
            "127.0.0.1:8002".parse::<ListenAddr>(),
            Ok(ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 8002))))
        );
        assert_eq!(
            "unix:/run/x.sock".parse::<ListenAddr>(),
            Ok(ListenAddr::Unix(PathBuf::from("/run/x.sock")))
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
        assert!("localhost".parse::<ListenAddr>().is_err());
    }

    #[tokio::test]
    async fn unix_sockets_are_owner_only_and_never_replace_a_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = Listener::bind(&ListenAddr::Unix(path.clone()))
            .await
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(l);
        // A stale socket is replaced; a regular file is not.
        Listener::bind(&ListenAddr::Unix(path.clone()))
            .await
            .unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "keep").unwrap();
        assert!(Listener::bind(&ListenAddr::Unix(file.clone()))
            .await
            .is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    }
}
