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

mod access;
mod api;
mod auth;
mod binder;
mod clients;
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
mod history;
/// The HTTP parsers; public for fuzz targets.
#[doc(hidden)]
pub mod http;
mod hub;
mod idle;
mod lifecycle;
/// Listeners (TCP, unix, systemd's); public for integration tests.
#[doc(hidden)]
pub mod listen;
mod message;
mod metrics;
mod names;
/// sd_notify without libsystemd; public for integration tests.
#[doc(hidden)]
pub mod notify;
mod outbound;
mod payload;
mod presence;
mod proxy;
mod push;
mod replay;
mod requests;
mod secret;
mod session;
mod slab;
mod static_files;
mod timers;
mod trim;
mod unique;

pub use api::{ClientMessage, Error, OnMessage, Reply};
pub use auth::grant::Grant;
pub use auth::jwt::{parse_ttl, sign as sign_jwt, sign_with as sign_jwt_with, unix_now};
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

use event_loop::{listener_token, Control, Loop, Parts, MAX_LISTENERS, SIGNALS, WAKER};
use hub::Hooks;
use listen::{Listener, Role};
use message::Message;
use mio::{Interest, Poll, Waker};
use push::PushRequest;
use serde_json::Value;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

/// Builds a [`Server`]: settings, auth hooks, message hook.
pub struct Builder {
    config: Config,
    token_auth: Option<auth::TokenAuth>,
    grant_auth: Option<auth::GrantAuth>,
    push_auth: Option<auth::PushAuth>,
    on_message: Option<OnMessage>,
    signals: bool,
    systemd: bool,
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
            grant_auth: None,
            push_auth: None,
            on_message: None,
            signals: false,
            systemd: false,
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

    /// Connection auth that says more than the user: a [`Grant`] with the
    /// events the token permits (a register for any other is refused with
    /// 4403 `event not allowed`) and when it expires (the connection is
    /// then closed with 4401 `token expired`, unless refreshed); `None`
    /// rejects (4401 `unknown token`). Like [`Builder::auth`], it replaces
    /// the token-file and JWT modes; not with [`Builder::auth`].
    ///
    /// ```no_run
    /// let server = wspush::Builder::new()
    ///     .auth_grant(|token| {
    ///         let user = token.strip_prefix("user-")?;
    ///         Some(wspush::Grant::new(user).events([format!("user:{user}:*"), "news".into()]))
    ///     })
    ///     .bind()?;
    /// # Ok::<(), wspush::Error>(())
    /// ```
    pub fn auth_grant(mut self, f: impl FnMut(&str) -> Option<Grant> + Send + 'static) -> Builder {
        self.grant_auth = Some(Box::new(f));
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

    /// Shut down gracefully on SIGINT and SIGTERM, and on SIGHUP re-read
    /// the token file or the JWT secret file, closing connections whose
    /// token they no longer accept (the binary does this).
    pub fn handle_signals(mut self, on: bool) -> Builder {
        self.signals = on;
        self
    }

    /// Run as a systemd service (the binary does this): with `LISTEN_FDS`
    /// set, serve the inherited sockets instead of the configured ones
    /// (named `push` in `LISTEN_FDNAMES`: push listeners); with
    /// `NOTIFY_SOCKET` set, say `READY=1` once serving, `STOPPING=1` at
    /// shutdown, and `WATCHDOG=1` while the loop turns. A library inside
    /// another service leaves both to its host.
    pub fn systemd(mut self, on: bool) -> Builder {
        self.systemd = on;
        self
    }

    /// Checks the settings and binds the listening socket, so the real
    /// address is known (and connections queue) before [`Server::run`].
    pub fn bind(self) -> Result<Server, Error> {
        self.config.validate().map_err(Error::Config)?;
        // This server's level, for the lines bind writes (the loop thread
        // takes it too, in `Server::run`); the caller's is put back after.
        let caller_level = log::set_thread_level(Some(self.config.log_level));
        let bound = self.bind_inner();
        log::set_thread_level(caller_level);
        bound
    }

    fn bind_inner(mut self) -> Result<Server, Error> {
        let c = &self.config;
        let open_auth = self.token_auth.is_none()
            && self.grant_auth.is_none()
            && c.auth_tokens.is_none()
            && c.jwt_secret.is_none()
            && c.jwt_secret_file.is_none();
        let (conn_auth, auth_warnings) = self.conn_auth()?;
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
        let listeners = self.listeners()?;
        let redis_target = match &self.config.redis {
            Some(url) => Some(cluster::redis::resolve(url).map_err(|e| Error::Config(ConfigError(e)))?),
            None => None,
        };
        let poll = Poll::new()?;
        let mut listeners = listeners;
        let mut addrs = Vec::with_capacity(listeners.len());
        for (i, (l, _)) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(l, listener_token(i), Interest::READABLE)?;
            addrs.push(l.local_addr()?);
        }
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
        let mut warnings = startup_warnings(
            &self.config,
            &addrs,
            matches!(push_guard, auth::PushGuard::LoopbackOnly),
            open_auth,
        );
        warnings.extend(auth_warnings);
        let notifier = if self.systemd {
            notify::Notifier::from_env()
        } else {
            notify::Notifier::none()
        };
        let (tx, rx) = mpsc::channel();
        Ok(Server {
            addrs,
            handle: Handle { tx, waker },
            warnings,
            parts: Parts {
                poll,
                listeners,
                signals,
                rx,
                config: self.config,
                hooks: Hooks {
                    auth: conn_auth,
                    push: push_guard,
                    on_message: self.on_message,
                },
                redis_target,
                notifier,
            },
        })
    }
}

/// What an operator should hear about the settings at start. Written after
/// the `listening on` line (by [`Server::run`]), so that line stays the
/// first to name an address, and naming the real one (not port 0). None of
/// them contains the words "listening on": scripts look for that line.
fn startup_warnings(
    config: &Config,
    addrs: &[listen::Addr],
    loopback_push: bool,
    open_auth: bool,
) -> Vec<String> {
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
    out.extend(config.secret_file_warnings());
    // Unix sockets and loopback addresses are reached from this machine only.
    let Some(addr) = addrs.iter().find_map(|a| match a {
        listen::Addr::Tcp(a) if !a.ip().to_canonical().is_loopback() => Some(a),
        _ => None,
    }) else {
        return out;
    };
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
    /// The one connection-auth mode in force: a library hook, the token
    /// file (read now, so a bad file stops startup), JWT, or userId =
    /// token; and what an operator should hear about it (short secrets).
    fn conn_auth(&mut self) -> Result<(auth::ConnAuth, Vec<String>), Error> {
        let c = &self.config;
        let config = |e: String| Error::Config(ConfigError(e));
        let modes = [
            self.token_auth.is_some(),
            self.grant_auth.is_some(),
            c.auth_tokens.is_some(),
            c.jwt_secret.is_some() || c.jwt_secret_file.is_some(),
        ];
        if modes.iter().filter(|m| **m).count() > 1 {
            return Err(config(
                "choose one connection auth: a hook (auth or auth_grant), --auth-tokens or --jwt-secret"
                    .into(),
            ));
        }
        Ok(if let Some(f) = self.token_auth.take() {
            (auth::ConnAuth::Hook(f), Vec::new())
        } else if let Some(f) = self.grant_auth.take() {
            (auth::ConnAuth::Grants(f), Vec::new())
        } else if let Some(path) = &c.auth_tokens {
            let table = auth::token_file::load(path).map_err(config)?;
            info!("connection auth: {} tokens from {}", table.len(), path.display());
            let file = auth::TokenFile::new(path.clone(), table);
            (auth::ConnAuth::TokenFile(file), Vec::new())
        } else if c.jwt_secret.is_some() || c.jwt_secret_file.is_some() {
            let expect = auth::jwt::Expect {
                audience: c.jwt_audience.clone(),
                issuer: c.jwt_issuer.clone(),
            };
            // The flag's secret (the one that mints) first, then the file's.
            let flag = c.jwt_secret.as_ref().map(|s| s.expose().as_bytes().to_vec());
            let (jwt, warnings) =
                auth::JwtAuth::new(flag, c.jwt_secret_file.clone(), expect).map_err(config)?;
            if let Some(path) = &c.jwt_secret_file {
                info!(
                    "connection auth: JWT, {} secrets from {}",
                    jwt.file_secrets(),
                    path.display()
                );
            }
            (auth::ConnAuth::Jwt(jwt), warnings)
        } else {
            (auth::ConnAuth::Hook(auth::token_is_user()), Vec::new())
        })
    }
}

/// The soft limit on open files, from /proc (Linux); `None` elsewhere.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl Builder {
    /// The sockets to serve: systemd's (when enabled and given), else the
    /// configured addresses, bound now so the real addresses are known.
    fn listeners(&self) -> Result<Vec<(Listener, Role)>, Error> {
        let config_err = |e: String| Error::Config(ConfigError(e));
        if self.systemd {
            let inherited = listen::inherited(|k| std::env::var(k).ok()).map_err(config_err)?;
            if !inherited.is_empty() {
                return Ok(inherited);
            }
        }
        let wanted = self.config.listeners().map_err(Error::Config)?;
        if wanted.len() > MAX_LISTENERS {
            return Err(config_err(format!("more than {MAX_LISTENERS} listeners")));
        }
        let opts = self.config.bind_options();
        wanted
            .iter()
            .map(|(addr, role)| Ok((listen::bind(addr, &opts)?, *role)))
            .collect()
    }
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    addrs: Vec<listen::Addr>,
    handle: Handle,
    /// Said once the server runs, after `listening on`.
    warnings: Vec<String>,
    parts: Parts,
}

impl Server {
    /// The first TCP address actually bound (useful with port 0);
    /// `0.0.0.0:0` when every listener is a unix socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs
            .iter()
            .find_map(|a| match a {
                listen::Addr::Tcp(a) => Some(*a),
                listen::Addr::Unix(_) => None,
            })
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Every address served, in the order given (`--listen`s, then
    /// `--push-listen`s), as `listening on` names them: `host:port` or
    /// `unix:/path`.
    pub fn listen_addrs(&self) -> Vec<String> {
        self.addrs.iter().map(ToString::to_string).collect()
    }

    /// A handle for pushing and shutting down from other threads.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Serves until [`Handle::shutdown`] (or a signal, when enabled).
    pub fn run(self) -> io::Result<()> {
        log::set_thread_level(Some(self.parts.config.log_level));
        for a in &self.addrs {
            info!("listening on {a}");
        }
        for w in &self.warnings {
            warn!("{w}");
        }
        Loop::new(self.parts).run()
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
        self.ask(PushRequest::Push {
            users: push::distinct(users.iter().map(|u| u.to_string()).collect()),
            event: event.to_string(),
            message: Message::from_value(message),
            key: None,
        })
    }

    /// Sends `message` to every connection subscribed to `event`.
    pub fn broadcast(&self, event: &str, message: &str) -> Result<usize, Error> {
        self.ask(PushRequest::Broadcast {
            event: event.to_string(),
            message: Message::Text(message.to_string()),
            key: None,
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
