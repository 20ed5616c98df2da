//! wspush: a WebSocket push server on one `mio` event loop.
//!
//! Clients connect over WebSocket and register `{"token": T, "event": E}`;
//! back ends push with `POST /push {"userId": U, "event": E, "message": M}`.
//! This crate is the server as a library, shaped like the Go seed's
//! `wserver.Server`: build it, run it, and push from any thread through a
//! [`Handle`].
//!
//! ```no_run
//! let server = wspush::Builder::new()
//!     .listen("127.0.0.1:12345")
//!     .auth(|token| token.strip_prefix("user-").map(str::to_string))
//!     .bind()?;
//! let handle = server.handle();
//! std::thread::spawn(move || server.run());
//! // later, from any thread:
//! let n = handle.push("alice", "news", "hello")?;
//! println!("message sent to {n} clients");
//! handle.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The one exception, with its proof, is `trim::release_free_memory`.
#![deny(unsafe_code)]

#[macro_use]
mod log;

mod api;
mod auth;
mod binder;
mod close;
mod cluster;
/// The client command parser; public for fuzz targets and property tests.
#[doc(hidden)]
pub mod command;
mod commands;
pub mod config;
mod conn;
mod delivery;
mod event_loop;
mod fields;
/// The HTTP parsers; public for fuzz targets.
#[doc(hidden)]
pub mod http;
mod hub;
mod idle;
mod lifecycle;
mod metrics;
mod names;
mod outbound;
mod payload;
mod presence;
mod push;
mod requests;
mod secret;
mod session;
mod slab;
mod static_files;
mod timers;
mod trim;

pub use api::{ClientMessage, Error, OnMessage, Reply};
pub use auth::jwt::{parse_ttl, sign as sign_jwt, unix_now};
pub use auth::Request;
pub use cluster::redis::{RedisAddr, RedisUrl};
#[doc(hidden)]
pub use cluster::resp;
pub use config::{Config, ConfigError};
pub use log::Level;
pub use secret::Secret;

/// Waits, at most `limit`, until the log lines queued so far are written
/// to stderr; call it before the process exits. The server never writes
/// stderr itself (a stalled or closed stderr must not stop it): a thread
/// of the logger's own does.
pub fn flush_log(limit: std::time::Duration) {
    log::flush(limit)
}

use event_loop::{Control, Loop, LISTENER, SIGNALS, WAKER};
use hub::Hooks;
use mio::net::TcpListener;
use mio::{Interest, Poll, Waker};
use push::PushRequest;
use serde_json::Value;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

/// Builds a [`Server`]: settings, auth hooks, message hook.
pub struct Builder {
    config: Config,
    token_auth: Option<auth::TokenAuth>,
    push_auth: Option<auth::PushAuth>,
    on_message: Option<OnMessage>,
    signals: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Defaults as the binary's, except logging, which stays at `warn`
    /// unless [`Builder::config`] says otherwise.
    pub fn new() -> Builder {
        Builder {
            config: Config {
                log_level: Level::Warn,
                ..Config::default()
            },
            token_auth: None,
            push_auth: None,
            on_message: None,
            signals: false,
        }
    }

    /// Replaces every setting at once.
    pub fn config(mut self, config: Config) -> Builder {
        self.config = config;
        self
    }

    /// Changes settings in place: `.configure(|c| c.max_events = 8)`.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Builder {
        f(&mut self.config);
        self
    }

    pub fn listen(mut self, addr: impl Into<String>) -> Builder {
        self.config.listen = addr.into();
        self
    }

    pub fn ws_path(mut self, path: impl Into<String>) -> Builder {
        self.config.ws_path = path.into();
        self
    }

    pub fn push_path(mut self, path: impl Into<String>) -> Builder {
        self.config.push_path = path.into();
        self
    }

    /// Connection auth: token → userId, `None` rejects (close 4401).
    /// Replaces the token-file and JWT modes of the config (setting both is
    /// an error at `bind`).
    pub fn auth(mut self, f: impl FnMut(&str) -> Option<String> + Send + 'static) -> Builder {
        self.token_auth = Some(Box::new(f));
        self
    }

    /// Push auth for `/push`, `/broadcast`, `/drop`, `/metrics`, `/presence`
    /// and `/lifecycle`; `false` answers 401. Replaces the default
    /// loopback-only rule.
    pub fn push_auth(mut self, f: impl FnMut(&Request<'_>) -> bool + Send + 'static) -> Builder {
        self.push_auth = Some(Box::new(f));
        self
    }

    /// Hook for client frames that are not commands; its reply, if any, is
    /// sent back on the same connection. Without a hook such frames close
    /// the connection with 4400.
    pub fn on_message(
        mut self,
        f: impl FnMut(Option<&str>, ClientMessage<'_>) -> Option<Reply> + Send + 'static,
    ) -> Builder {
        self.on_message = Some(Box::new(f));
        self
    }

    /// Shut down gracefully on SIGINT and SIGTERM, and re-read the token
    /// file on SIGHUP (the binary does this).
    pub fn handle_signals(mut self, on: bool) -> Builder {
        self.signals = on;
        self
    }

    /// Checks the settings and binds the listening socket, so the real
    /// address is known (and connections queue) before [`Server::run`].
    pub fn bind(mut self) -> Result<Server, Error> {
        self.config.validate().map_err(Error::Config)?;
        log::set_level(self.config.log_level);
        let c = &self.config;
        let open_auth = self.token_auth.is_none()
            && c.auth_tokens.is_none()
            && c.jwt_secret.is_none()
            && c.jwt_secret_file.is_none();
        let conn_auth = self.conn_auth()?;
        let push_guard = match (self.push_auth.take(), &self.config.push_key) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(ConfigError(
                    "a push-auth hook and a push key are both set; choose one".into(),
                )))
            }
            (Some(f), None) => auth::PushGuard::Hook(f),
            (None, Some(key)) => auth::PushGuard::key(key.expose().as_bytes()),
            (None, None) => auth::PushGuard::LoopbackOnly,
        };
        let addr = resolve(&self.config.listen)?;
        let redis_target = match &self.config.redis {
            Some(url) => Some(cluster::redis::resolve(url).map_err(|e| Error::Config(ConfigError(e)))?),
            None => None,
        };
        let mut listener = listen(addr)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let signals = if self.signals {
            let mut s = signal_hook_mio::v1_0::Signals::new([
                signal_hook::consts::SIGINT,
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGHUP,
            ])?;
            poll.registry().register(&mut s, SIGNALS, Interest::READABLE)?;
            Some(s)
        } else {
            None
        };
        let local_addr = listener.local_addr()?;
        let warnings = startup_warnings(
            &self.config,
            local_addr,
            matches!(push_guard, auth::PushGuard::LoopbackOnly),
            open_auth,
        );
        let (tx, rx) = mpsc::channel();
        Ok(Server {
            local_addr,
            handle: Handle { tx, waker },
            parts: Parts {
                poll,
                listener,
                signals,
                rx,
                config: self.config,
                hooks: Hooks {
                    auth: conn_auth,
                    push: push_guard,
                    on_message: self.on_message,
                },
                redis_target,
                warnings,
            },
        })
    }
}

/// What an operator should hear about the settings at start. Written after
/// the `listening on` line (by [`Server::run`]), so that line stays the
/// first to name an address, and naming the real one (not port 0). None of
/// them contains the words "listening on": scripts look for that line.
fn startup_warnings(config: &Config, addr: SocketAddr, loopback_push: bool, open_auth: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(limit) = open_file_limit() {
        // One descriptor per client, plus the listener, the poller and
        // some room for push requests.
        let need = (config.max_connections as u64).saturating_add(64);
        if need > limit {
            out.push(format!(
                "--max-connections {} needs about {need} file descriptors but the limit is {limit}: \
                 raise `ulimit -n` or lower --max-connections (accepting pauses when descriptors run out)",
                config.max_connections
            ));
        }
    }
    if addr.ip().is_loopback() {
        return out;
    }
    if open_auth {
        out.push(format!(
            "anyone who can reach {addr} can subscribe as any user: with the default auth the token \
             is the userId; set --auth-tokens FILE or --jwt-secret to check tokens"
        ));
    }
    if loopback_push {
        out.push(format!(
            "no push key on {addr}: push endpoints answer loopback clients only \
             (set --push-key to push from other hosts)"
        ));
    }
    out
}

impl Builder {
    /// The one connection-auth mode in force: the library hook, the token
    /// file (read now, so a bad file stops startup), JWT, or userId = token.
    fn conn_auth(&mut self) -> Result<auth::ConnAuth, Error> {
        let c = &self.config;
        let modes = [
            self.token_auth.is_some(),
            c.auth_tokens.is_some(),
            c.jwt_secret.is_some() || c.jwt_secret_file.is_some(),
        ];
        if modes.iter().filter(|m| **m).count() > 1 {
            return Err(Error::Config(ConfigError(
                "choose one connection auth: a hook, --auth-tokens or --jwt-secret".into(),
            )));
        }
        Ok(if let Some(f) = self.token_auth.take() {
            auth::ConnAuth::Hook(f)
        } else if let Some(path) = &c.auth_tokens {
            let table = auth::token_file::load(path).map_err(|e| Error::Config(ConfigError(e)))?;
            info!("connection auth: {} tokens from {}", table.len(), path.display());
            auth::ConnAuth::TokenFile {
                path: path.clone(),
                table,
            }
        } else if c.jwt_secret.is_some() || c.jwt_secret_file.is_some() {
            // The flag's secret (the one that mints) first, then the file's.
            let mut secrets: Vec<Vec<u8>> = c
                .jwt_secret
                .iter()
                .map(|s| s.expose().as_bytes().to_vec())
                .collect();
            if let Some(path) = &c.jwt_secret_file {
                let lines = config::read_secret_lines(path).map_err(|e| Error::Config(ConfigError(e)))?;
                info!(
                    "connection auth: JWT, {} secrets from {}",
                    lines.len(),
                    path.display()
                );
                secrets.extend(lines.iter().map(|s| s.expose().as_bytes().to_vec()));
            }
            auth::ConnAuth::Jwt { secrets }
        } else {
            auth::ConnAuth::Hook(auth::token_is_user())
        })
    }
}

/// The soft limit on open files, from /proc (Linux); `None` elsewhere.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn resolve(listen: &str) -> Result<SocketAddr, Error> {
    listen
        .to_socket_addrs()
        .map_err(|e| Error::Config(ConfigError(format!("--listen {listen:?}: {e}"))))?
        .next()
        .ok_or_else(|| Error::Config(ConfigError(format!("--listen {listen:?}: no address"))))
}

/// A listening socket with a deep accept queue: a reconnect storm after a
/// deploy brings thousands of SYNs at once, and the std default (128)
/// would drop most of them into retransmit back-off.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

struct Parts {
    poll: Poll,
    listener: TcpListener,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    rx: Receiver<Control>,
    config: Config,
    hooks: Hooks,
    redis_target: Option<cluster::redis::Target>,
    /// Said once the server runs, after `listening on`.
    warnings: Vec<String>,
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    local_addr: SocketAddr,
    handle: Handle,
    parts: Parts,
}

impl Server {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle for pushing and shutting down from other threads.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Serves until [`Handle::shutdown`] (or a signal, when enabled).
    pub fn run(self) -> io::Result<()> {
        let p = self.parts;
        info!("listening on {}", self.local_addr);
        for w in &p.warnings {
            warn!("{w}");
        }
        Loop::new(
            p.poll,
            p.listener,
            p.signals,
            p.rx,
            p.config,
            p.hooks,
            p.redis_target,
        )
        .run()
    }
}

/// Pushes, broadcasts, drops and shuts down from any thread. Each call
/// wakes the loop and waits for its answer; do not call it from inside a
/// hook (the loop would wait for itself).
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Control>,
    waker: Arc<Waker>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Handle")
    }
}

impl Handle {
    fn ask(&self, req: PushRequest) -> Result<usize, Error> {
        push::check_names(&req).map_err(|why| Error::Invalid(why.into()))?;
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.tx
            .send(Control::Push(req, reply_tx))
            .map_err(|_| Error::Stopped)?;
        self.waker.wake().map_err(|_| Error::Stopped)?;
        reply_rx.recv().map_err(|_| Error::Stopped)?
    }

    /// Sends `message` to every connection of `user` subscribed to `event`;
    /// returns how many connections took it. In cluster mode (`--redis`)
    /// the push goes to every node through Redis and the count is the
    /// number of nodes that received it; [`Error::Unavailable`] while
    /// Redis is down.
    pub fn push(&self, user: &str, event: &str, message: &str) -> Result<usize, Error> {
        self.push_many(&[user], event, message)
    }

    /// As [`push`](Handle::push), for several users (each counted once).
    pub fn push_many(&self, users: &[&str], event: &str, message: &str) -> Result<usize, Error> {
        self.push_value(users, event, Value::String(message.to_string()))
    }

    /// Pushes any JSON value (sent as its compact text; a string as is).
    pub fn push_value(&self, users: &[&str], event: &str, message: Value) -> Result<usize, Error> {
        let mut distinct: Vec<String> = Vec::with_capacity(users.len());
        for u in users {
            if !distinct.iter().any(|d| d == u) {
                distinct.push(u.to_string());
            }
        }
        self.ask(PushRequest::Push {
            users: distinct,
            event: event.to_string(),
            message,
        })
    }

    /// Sends `message` to every connection subscribed to `event`.
    pub fn broadcast(&self, event: &str, message: &str) -> Result<usize, Error> {
        self.ask(PushRequest::Broadcast {
            event: event.to_string(),
            message: Value::String(message.to_string()),
        })
    }

    /// Closes `user`'s connections (only those on `event` if given) with
    /// 4000: the clients may reconnect (a session ended, a user moved).
    pub fn drop_user(&self, user: &str, event: Option<&str>) -> Result<usize, Error> {
        self.drop_with(user, event, true)
    }

    /// As [`drop_user`](Handle::drop_user), with 4001: the clients must
    /// not reconnect (`wspush.js` stops for good). For a user who logged
    /// out or was banned, where a reconnect would only be refused again.
    pub fn drop_user_for_good(&self, user: &str, event: Option<&str>) -> Result<usize, Error> {
        self.drop_with(user, event, false)
    }

    /// `/drop` with its `reconnect` field: 4000 when true, 4001 when false.
    pub fn drop_with(&self, user: &str, event: Option<&str>, reconnect: bool) -> Result<usize, Error> {
        self.ask(PushRequest::Drop {
            user: user.to_string(),
            event: event.map(str::to_string),
            reconnect,
        })
    }

    /// Stops the server gracefully: WebSockets get 1001, pending responses
    /// finish, then `run` returns. Returns at once.
    pub fn shutdown(&self) {
        if self.tx.send(Control::Shutdown).is_ok() {
            let _ = self.waker.wake();
        }
    }
}
