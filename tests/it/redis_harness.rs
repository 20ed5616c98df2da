//! A real `redis-server` per test (Debian's package; `.ci/run` installs it)
//! on a free loopback port, nothing persisted, and cluster nodes joined to it.
#![allow(dead_code)]

use crate::common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    extra: Vec<String>,
    paused: bool,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    l.local_addr().expect("probe address").port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// On a given port (a node may already be waiting for it).
    pub fn start_on(port: u16) -> RedisServer {
        let mut r = RedisServer {
            port,
            child: None,
            extra: Vec::new(),
            paused: false,
        };
        r.spawn();
        r
    }

    /// With extra `redis-server` arguments (`--requirepass x`, ...).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut r = RedisServer {
            port: free_port(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            paused: false,
        };
        r.spawn();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut cmd = command("redis-server");
        cmd.args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(&self.extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        self.child = Some(
            cmd.spawn()
                .expect("redis-server is installed (apt-get install redis-server)"),
        );
        let deadline = Instant::now() + WAIT;
        loop {
            if self.ping() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True when the server answers PING (or demands a password, which
    /// also proves it runs).
    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        let _ = BufReader::new(s).read_line(&mut line);
        line.starts_with("+PONG") || line.starts_with("-NOAUTH")
    }

    /// SIGKILL: connections reset, nothing said.
    pub fn kill(&mut self) {
        self.resume();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOP: connections stay open, nothing answers.
    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    pub fn resume(&mut self) {
        if self.paused {
            self.signal("-CONT");
            self.paused = false;
        }
    }

    fn signal(&self, sig: &str) {
        let Some(c) = &self.child else { return };
        let status = command("kill")
            .args([sig, &c.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig}");
    }

    /// Sends one raw command (inline form) and returns the first reply line.
    pub fn command(&self, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut reply = String::new();
        r.read_line(&mut reply).expect("redis reply");
        reply.trim_end().to_string()
    }

    /// PUBLISH with a binary-safe payload; returns the receiver count.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> i64 {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut cmd = format!(
            "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n",
            channel.len(),
            payload.len()
        )
        .into_bytes();
        cmd.extend_from_slice(payload);
        cmd.extend_from_slice(b"\r\n");
        s.write_all(&cmd).unwrap();
        let mut reply = [0u8; 64];
        let n = s.read(&mut reply).expect("PUBLISH reply");
        let text = String::from_utf8_lossy(&reply[..n]);
        text.trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("PUBLISH reply {text:?}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster node in process, joined to `url`, and up (healthz 200).
#[track_caller]
pub fn node(url: &str) -> TestServer {
    node_with(url, |b| b)
}

#[track_caller]
pub fn node_with(url: &str, f: impl FnOnce(wspush::Builder) -> wspush::Builder) -> TestServer {
    let url = wspush::RedisUrl::parse(url).expect("test URL parses");
    let n = start_with(|b| f(b.configure(|c| c.redis = Some(url))));
    wait_up(n.addr);
    n
}

#[track_caller]
pub fn wait_up(addr: SocketAddr) {
    eventually("node reports redis up", || get(addr, "/healthz").status == 200);
}

#[track_caller]
pub fn wait_down(addr: SocketAddr) {
    eventually("node reports redis down", || get(addr, "/healthz").status == 503);
}

/// A Unix socket path in a fresh temporary directory.
pub fn socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wspush-test-{}-{name}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join("redis.sock")
}
