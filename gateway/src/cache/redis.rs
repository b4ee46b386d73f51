//! The `redis` backend: GET, SET PX and DEL through the shared Redis client
//! ([`crate::redis_client`]: the maintained `redis` crate, one multiplexed connection that
//! reconnects by itself), so a fleet of gateways can share one cache.
//!
//! Keys are prefixed with `llm-forward:cache:`. Every command is bounded by a timeout; a reply of
//! the wrong type is an error, never a panic. Messages name the server without its password.

use crate::redis_client::{Redis, Timeouts};
use bytes::Bytes;
use std::time::Duration;

const KEY_PREFIX: &str = "llm-forward:cache:";
const TIMEOUTS: Timeouts = Timeouts {
    command: Duration::from_secs(2),
    connect: Duration::from_secs(2),
};

pub struct RedisStore {
    redis: Redis,
}

impl RedisStore {
    /// Parses `redis://[[user]:password@]host[:port][/db]`; connects on first use.
    pub fn new(url: &str) -> Result<RedisStore, String> {
        Ok(RedisStore {
            redis: Redis::new(url, TIMEOUTS)?,
        })
    }

    fn key(key: &str) -> String {
        format!("{KEY_PREFIX}{key}")
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, String> {
        let value: Option<Vec<u8>> = self
            .redis
            .query(redis::cmd("GET").arg(Self::key(key)))
            .await?;
        Ok(value.map(Bytes::from))
    }

    pub async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), String> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let () = self
            .redis
            .query(
                redis::cmd("SET")
                    .arg(Self::key(key))
                    .arg(value)
                    .arg("PX")
                    .arg(ms),
            )
            .await?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<bool, String> {
        let n: i64 = self
            .redis
            .query(redis::cmd("DEL").arg(Self::key(key)))
            .await?;
        Ok(n > 0)
    }

    pub async fn ping(&self) -> Result<(), String> {
        let _: String = self.redis.query(&redis::cmd("PING")).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A fake server that answers every command with `reply`.
    async fn fake_server(reply: &'static [u8]) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn a_hostile_server_cannot_make_the_client_allocate_or_hang() {
        // A 512 MiB bulk length that never arrives, a huge array, a wrong type: each is an error
        // within the command timeout, without allocating what the length prefix claims.
        for reply in [
            &b"$536870912\r\nabc"[..],
            &b"*2000000000\r\n:1\r\n"[..],
            &b":42\r\n"[..],
            &b"\x00\x01garbage\r\n"[..],
        ] {
            let port = fake_server(reply).await;
            let store = RedisStore::new(&format!("redis://127.0.0.1:{port}")).unwrap();
            let started = std::time::Instant::now();
            assert!(store.get("k").await.is_err(), "{reply:?}");
            assert!(started.elapsed() < Duration::from_secs(10));
        }
    }

    /// The command names in a chunk of RESP requests (`*N` arrays of `$len` bulk strings).
    fn command_names(mut buf: &[u8]) -> Vec<String> {
        fn line<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
            let at = buf.windows(2).position(|w| w == b"\r\n")?;
            let l = &buf[..at];
            *buf = &buf[at + 2..];
            Some(l)
        }
        let mut names = Vec::new();
        while let Some(head) = line(&mut buf) {
            let n: usize = std::str::from_utf8(&head[1..]).unwrap().parse().unwrap();
            for i in 0..n {
                let len: usize = std::str::from_utf8(&line(&mut buf).unwrap()[1..])
                    .unwrap()
                    .parse()
                    .unwrap();
                if i == 0 {
                    names.push(String::from_utf8_lossy(&buf[..len]).to_uppercase());
                }
                buf = &buf[len + 2..];
            }
        }
        names
    }

    #[tokio::test]
    async fn a_long_array_reply_does_not_desynchronise_the_connection() {
        // The first GET is answered with a 2000-item array (the old client read 1024 of them and
        // left the rest for the next command), the second with a proper value.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut gets = 0;
            let mut buf = vec![0u8; 65536];
            loop {
                let n = match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut out = Vec::new();
                for name in command_names(&buf[..n]) {
                    if name != "GET" {
                        out.extend_from_slice(b"+OK\r\n");
                    } else if gets == 0 {
                        gets += 1;
                        out.extend_from_slice(b"*2000\r\n");
                        for _ in 0..2000 {
                            out.extend_from_slice(b":7\r\n");
                        }
                    } else {
                        out.extend_from_slice(b"$5\r\nvalue\r\n");
                    }
                }
                if s.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
        let store = RedisStore::new(&format!("redis://127.0.0.1:{port}")).unwrap();
        // Whatever the first answer becomes, it must be read whole.
        let _ = store.get("a").await;
        assert_eq!(
            store.get("b").await.unwrap(),
            Some(Bytes::from_static(b"value"))
        );
    }

    #[test]
    fn url_errors_do_not_echo_the_password() {
        for url in ["redis://:hunter2@host/db", "memcached://:hunter2@host"] {
            let Err(e) = RedisStore::new(url) else {
                panic!("{url} accepted")
            };
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
