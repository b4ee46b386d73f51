//! A real `redis-server` child process on a free loopback port, for tests and benchmarks (the cache's
//! redis backend, the rate-limit service, fleet-wide limits). Stopped on drop.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    pub port: u16,
    /// Extra arguments (e.g. `--requirepass`), kept for restarts.
    extra: Vec<String>,
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn spawn(port: u16, extra: &[String]) -> Result<Child, String> {
    Command::new("redis-server")
        .args(extra)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("redis-server could not be started ({e}): run scripts/setup-test.sh (apt-get install -y redis-server)")
        })
}

fn wait_listening(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("redis-server did not listen on {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl RedisServer {
    /// Starts one and waits until it accepts connections.
    pub fn try_start() -> Result<RedisServer, String> {
        RedisServer::try_start_with(&[])
    }

    /// With extra `redis-server` arguments, e.g. `["--requirepass", "secret"]`.
    pub fn try_start_with(extra: &[&str]) -> Result<RedisServer, String> {
        let port = free_port()?;
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let child = spawn(port, &extra)?;
        let server = RedisServer { child, port, extra };
        wait_listening(port)?;
        Ok(server)
    }

    /// [`RedisServer::try_start`] for tests: a missing `redis-server` fails the test loudly.
    #[allow(clippy::panic)]
    pub fn start() -> RedisServer {
        RedisServer::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server (its data is gone: it keeps nothing on disk).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A fresh server on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.child = spawn(self.port, &self.extra)?;
        wait_listening(self.port)
    }

    /// SIGSTOP / SIGCONT: a Redis that accepts connections but never answers, then recovers.
    pub fn pause(&self, paused: bool) -> Result<(), String> {
        let signal = if paused { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill {signal} failed"))
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a paused (SIGSTOP) server.
        self.kill();
    }
}
