//! One way to reach Redis for the whole gateway (the cache's redis backend and the rate-limit
//! service): the maintained `redis` crate with a multiplexed connection that reconnects by itself
//! (`ConnectionManager`), every command bounded by a deadline, and a URL that is never echoed with
//! its password.
//!
//! Why the crate and not a hand-written client: its parser takes bulk replies from what has
//! arrived (no allocation sized by the server's length prefix), bounds nesting, and matches
//! replies to requests on a multiplexed connection, so a command that timed out cannot leave a
//! reply behind for the next caller.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// How long to wait for Redis.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// One command, end to end (the caller's own deadline is applied on top).
    pub command: Duration,
    /// One TCP connect (+ AUTH/SELECT) attempt.
    pub connect: Duration,
}

/// `redis://user:secret@host:6379/0` → `redis://***@host:6379/0`: safe for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL at all: it might be a bare password pasted by mistake; show nothing of it.
        return "<not a redis:// URL>".to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
        None => format!("{scheme}://{authority}{tail}"),
    }
}

/// A Redis client bound to one URL. Cheap to clone: clones share one multiplexed connection.
#[derive(Clone)]
pub struct Redis {
    manager: ConnectionManager,
    /// The URL without its password, for messages.
    shown: String,
    timeouts: Timeouts,
}

impl Redis {
    /// Parses the URL and prepares the connection without opening it: the first command (or a
    /// later one, when Redis was down) connects. Errors never contain the password.
    pub fn new(url: &str, timeouts: Timeouts) -> Result<Redis, String> {
        let shown = redact(url);
        if !(url.starts_with("redis://") || url.starts_with("unix://")) {
            return Err(format!(
                "{shown}: only redis:// (and unix://) URLs are supported"
            ));
        }
        let client = redis::Client::open(url)
            .map_err(|e| format!("{shown}: invalid redis URL ({})", describe(&e)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.command))
            // Reconnects are driven by traffic: a short backoff, then the next command retries.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("{shown}: {}", describe(&e)))?;
        Ok(Redis {
            manager,
            shown,
            timeouts,
        })
    }

    /// The URL without its password.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// A connection handle for one command (clones share the multiplexed connection).
    pub fn connection(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// Runs one command under the command deadline.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        self.bounded(self.timeouts.command, async {
            let mut conn = self.connection();
            cmd.query_async::<T>(&mut conn).await
        })
        .await
    }

    /// Runs `work` under `deadline`; both a timeout and a Redis error become a message naming
    /// the server without its password.
    pub async fn bounded<T>(
        &self,
        deadline: Duration,
        work: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(deadline, work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("redis {}: {}", self.shown, describe(&e))),
            Err(_) => Err(format!(
                "redis {}: no answer within {} ms",
                self.shown,
                deadline.as_millis()
            )),
        }
    }
}

/// A Redis error as text. The crate's messages name the failure, never the URL's password.
fn describe(e: &redis::RedisError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_user_and_password() {
        assert_eq!(
            redact("redis://me:s3cret@cache:6380/2"),
            "redis://***@cache:6380/2"
        );
        assert_eq!(redact("redis://:s3cret@cache"), "redis://***@cache");
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
        // An '@' in the password does not leak its tail.
        assert_eq!(redact("redis://:a@b@h/1"), "redis://***@h/1");
        assert_eq!(redact("s3cret"), "<not a redis:// URL>");
    }

    #[tokio::test]
    async fn url_errors_do_not_echo_the_password() {
        let t = Timeouts {
            command: Duration::from_millis(50),
            connect: Duration::from_millis(50),
        };
        for url in [
            "redis://:s3cret@host/notanumber",
            "http://:s3cret@host",
            "redis://:s3cret@/0",
            "s3cret",
        ] {
            let Err(e) = Redis::new(url, t) else {
                panic!("{url} should be refused");
            };
            assert!(!e.contains("s3cret"), "{e}");
        }
        // Connection errors name the host, not the password.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = Redis::new(&format!("redis://:s3cret@127.0.0.1:{port}"), t).unwrap();
        let e = r
            .query::<String>(&redis::cmd("PING"))
            .await
            .expect_err("nothing listens there");
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
