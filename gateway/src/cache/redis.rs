//! The `redis` backend: a small RESP2 client (GET, SET PX, DEL, PING) over pooled connections, so
//! a fleet of gateways can share one cache without a big client dependency.
//!
//! Keys are prefixed with `llm-forward:cache:`. Each command takes an idle connection from the pool
//! (or opens one, with `AUTH`/`SELECT` from the URL), and returns it after a well-formed reply; a
//! connection that failed in any way is dropped. Every command is bounded by a timeout.

use bytes::Bytes;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const KEY_PREFIX: &str = "llm-forward:cache:";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections kept for reuse.
const POOL_SIZE: usize = 16;
/// Largest bulk reply accepted (values are bounded by the service anyway).
const MAX_BULK: usize = 512 * 1024 * 1024;

/// Where the server is and how to log in, from `redis://[[user]:password@]host[:port][/db]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub addr: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("`{url}`: only redis:// URLs are supported"))?;
        let (auth, host_db) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (host, db) = match host_db.split_once('/') {
            Some((h, "")) => (h, 0),
            Some((h, d)) => (
                h,
                d.parse()
                    .map_err(|_| format!("`{url}`: database `{d}` is not a number"))?,
            ),
            None => (host_db, 0),
        };
        if host.is_empty() {
            return Err(format!("`{url}`: no host"));
        }
        let addr = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_string()
        } else {
            format!("{host}:6379")
        };
        let (user, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some(("", p)) => (None, Some(p.to_string())),
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(a.to_string()), None),
            },
        };
        Ok(RedisUrl {
            addr,
            user,
            password,
            db,
        })
    }
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

type Conn = BufReader<TcpStream>;

pub struct RedisStore {
    url: RedisUrl,
    pool: Mutex<Vec<Conn>>,
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn read_line(conn: &mut Conn) -> Result<String, String> {
    let mut line = Vec::new();
    conn.read_until(b'\n', &mut line)
        .await
        .map_err(|e| e.to_string())?;
    if !line.ends_with(b"\r\n") {
        return Err("connection closed mid-reply".into());
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| "reply line is not UTF-8".into())
}

async fn read_reply(conn: &mut Conn) -> Result<Reply, String> {
    // Arrays nest; an explicit stack would avoid recursion, but a cache only sees flat replies.
    let line = read_line(conn).await?;
    let (kind, rest) = line.split_at_checked(1).ok_or("empty reply line")?;
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| format!("bad length `{rest}`"))
    };
    match kind {
        "+" => Ok(Reply::Status(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => Ok(Reply::Integer(number()?)),
        "$" => {
            let n = number()?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let n = n as usize;
            if n > MAX_BULK {
                return Err(format!("bulk reply of {n} bytes is too large"));
            }
            let mut buf = vec![0u8; n + 2];
            conn.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            buf.truncate(n);
            Ok(Reply::Bulk(Some(buf)))
        }
        "*" => {
            let n = number()?;
            if n < 0 {
                return Ok(Reply::Array(None));
            }
            let mut items = Vec::new();
            for _ in 0..n.min(1024) {
                items.push(Box::pin(read_reply(conn)).await?);
            }
            Ok(Reply::Array(Some(items)))
        }
        other => Err(format!("unknown reply type `{other}`")),
    }
}

impl RedisStore {
    pub fn new(url: &str) -> Result<RedisStore, String> {
        Ok(RedisStore {
            url: RedisUrl::parse(url)?,
            pool: Mutex::new(Vec::new()),
        })
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn connect(&self) -> Result<Conn, String> {
        let stream = TcpStream::connect(&self.url.addr)
            .await
            .map_err(|e| format!("redis {}: {e}", self.url.addr))?;
        let _ = stream.set_nodelay(true);
        let mut conn = BufReader::new(stream);
        if let Some(password) = &self.url.password {
            let reply = match &self.url.user {
                Some(user) => {
                    roundtrip(&mut conn, &[b"AUTH", user.as_bytes(), password.as_bytes()]).await?
                }
                None => roundtrip(&mut conn, &[b"AUTH", password.as_bytes()]).await?,
            };
            if let Reply::Error(e) = reply {
                return Err(format!("redis AUTH: {e}"));
            }
        }
        if self.url.db != 0 {
            let db = self.url.db.to_string();
            if let Reply::Error(e) = roundtrip(&mut conn, &[b"SELECT", db.as_bytes()]).await? {
                return Err(format!("redis SELECT: {e}"));
            }
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply; a server error reply is an `Err`.
    pub async fn command(&self, args: &[&[u8]]) -> Result<Reply, String> {
        let pooled = self.pool().pop();
        let work = async {
            let mut conn = match pooled {
                Some(c) => c,
                None => self.connect().await?,
            };
            let reply = roundtrip(&mut conn, args).await?;
            Ok::<_, String>((conn, reply))
        };
        let (conn, reply) = tokio::time::timeout(COMMAND_TIMEOUT, work)
            .await
            .map_err(|_| "redis command timed out".to_string())??;
        {
            let mut pool = self.pool();
            if pool.len() < POOL_SIZE {
                pool.push(conn);
            }
        }
        match reply {
            Reply::Error(e) => Err(format!("redis: {e}")),
            other => Ok(other),
        }
    }

    fn key(key: &str) -> String {
        format!("{KEY_PREFIX}{key}")
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, String> {
        match self.command(&[b"GET", Self::key(key).as_bytes()]).await? {
            Reply::Bulk(v) => Ok(v.map(Bytes::from)),
            other => Err(format!("redis GET: unexpected reply {other:?}")),
        }
    }

    pub async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), String> {
        let ms = ttl.as_millis().max(1).to_string();
        let k = Self::key(key);
        match self
            .command(&[b"SET", k.as_bytes(), value, b"PX", ms.as_bytes()])
            .await?
        {
            Reply::Status(_) => Ok(()),
            other => Err(format!("redis SET: unexpected reply {other:?}")),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<bool, String> {
        match self.command(&[b"DEL", Self::key(key).as_bytes()]).await? {
            Reply::Integer(n) => Ok(n > 0),
            other => Err(format!("redis DEL: unexpected reply {other:?}")),
        }
    }

    pub async fn ping(&self) -> Result<(), String> {
        self.command(&[b"PING"]).await.map(|_| ())
    }
}

async fn roundtrip(conn: &mut Conn, args: &[&[u8]]) -> Result<Reply, String> {
    conn.get_mut()
        .write_all(&encode(args))
        .await
        .map_err(|e| e.to_string())?;
    read_reply(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (u.addr.as_str(), u.db, u.password),
            ("127.0.0.1:6380", 2, None)
        );
        let u = RedisUrl::parse("redis://:secret@cache").unwrap();
        assert_eq!(u.addr, "cache:6379");
        assert_eq!(u.password.as_deref(), Some("secret"));
        let u = RedisUrl::parse("redis://me:pw@h:1/").unwrap();
        assert_eq!(u.user.as_deref(), Some("me"));
        assert!(RedisUrl::parse("http://x").is_err());
        assert!(RedisUrl::parse("redis://h/x").is_err());
    }

    #[test]
    fn commands_are_resp_arrays() {
        assert_eq!(
            encode(&[b"GET", b"k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()
        );
    }

    #[tokio::test]
    async fn replies_parse() {
        // A listener that writes canned replies.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(
                b"+OK\r\n$-1\r\n$5\r\nhe\r\no\r\n:3\r\n-ERR bad\r\n*2\r\n:1\r\n$1\r\nx\r\n",
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let mut c = BufReader::new(TcpStream::connect(addr).await.unwrap());
        assert_eq!(
            read_reply(&mut c).await.unwrap(),
            Reply::Status("OK".into())
        );
        assert_eq!(read_reply(&mut c).await.unwrap(), Reply::Bulk(None));
        assert_eq!(
            read_reply(&mut c).await.unwrap(),
            Reply::Bulk(Some(b"he\r\no".to_vec()))
        );
        assert_eq!(read_reply(&mut c).await.unwrap(), Reply::Integer(3));
        assert_eq!(
            read_reply(&mut c).await.unwrap(),
            Reply::Error("ERR bad".into())
        );
        assert_eq!(
            read_reply(&mut c).await.unwrap(),
            Reply::Array(Some(vec![
                Reply::Integer(1),
                Reply::Bulk(Some(b"x".to_vec()))
            ]))
        );
    }
}
