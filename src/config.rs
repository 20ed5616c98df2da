//! Every setting in one place: its default, its flag, its environment twin,
//! and the checks that keep a bad value from reaching the loop.
//!
//! The flag table below is the single source for parsing, `--help` and the
//! README's configuration table, so they cannot drift apart.

use crate::cluster::url::RedisUrl;
use crate::listen::{Addr, BindOptions, Role};
use crate::log::Level;
pub use crate::proxy::Cidr;
pub use crate::secret::Secret;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::log::Format as LogFormat;

/// All settings of a server. `Config::default()` is what `wspush` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`host:port`, port 0 picks a free one, or
    /// `unix:/path`): the main listener, the one `listening on` names
    /// first.
    pub listen: String,
    /// More addresses served like `listen` (`--listen` given again).
    pub listen_more: Vec<String>,
    /// Addresses that serve the push endpoints; when any is set, the
    /// other listeners answer those paths with 404.
    pub push_listen: Vec<String>,
    /// Permission bits of unix socket files (`--socket-mode`).
    pub socket_mode: u32,
    /// SO_REUSEPORT on TCP listeners: several processes share one port.
    pub reuse_port: bool,
    /// Path of the WebSocket endpoint.
    pub ws_path: String,
    /// Path of the Server-Sent Events endpoint.
    pub sse_path: String,
    /// Path of the push endpoint (`/broadcast` and `/drop` are fixed).
    pub push_path: String,
    /// Open WebSocket connections allowed; upgrades over it get 503.
    pub max_connections: usize,
    /// Open sockets that are not WebSocket (yet) allowed; see SPEC §12.
    pub max_http_connections: usize,
    /// Largest incoming WebSocket message (and frame) in bytes.
    pub max_message_bytes: usize,
    /// Events one connection may subscribe to.
    pub max_events: usize,
    /// Bytes queued for one connection before it is dropped as a slow consumer.
    pub max_backlog_bytes: usize,
    /// Largest HTTP request body in bytes.
    pub max_body_bytes: usize,
    /// Time a new WebSocket has to register; zero disables the limit.
    pub register_timeout: Duration,
    /// Interval of server pings; zero disables pings and the silence check.
    pub ping_interval: Duration,
    /// Time allowed to send a request or read a response; also the idle
    /// keep-alive time of an HTTP connection.
    pub request_timeout: Duration,
    /// How long a user stays online after its last connection went
    /// (`/lifecycle` says `offline` only then); zero: at once.
    pub offline_grace: Duration,
    /// Log level.
    pub log_level: Level,
    /// Log line format: text, or one JSON object per line.
    pub log_format: LogFormat,
    /// Bearer key for the push endpoints; none = loopback clients only.
    pub push_key: Option<Secret>,
    /// The file `push_key` was read from (`--push-key-file`), so an error
    /// can name it.
    pub push_key_file: Option<PathBuf>,
    /// `token userId` table for connection auth (re-read on SIGHUP).
    pub auth_tokens: Option<PathBuf>,
    /// HS256 secret for JWT connection auth (`sub` = userId); verifies,
    /// and is the one `wspush token` mints with.
    pub jwt_secret: Option<Secret>,
    /// A file of HS256 secrets, one per line (blank lines ignored), read
    /// at bind; each verifies. Combines with `jwt_secret` (rotation).
    pub jwt_secret_file: Option<PathBuf>,
    /// JWT mode: the `aud` a token must name (one string or in its array);
    /// none = `aud` is not checked.
    pub jwt_audience: Option<String>,
    /// JWT mode: the `iss` a token must carry; none = not checked.
    pub jwt_issuer: Option<String>,
    /// Connections one user may have registered at once; 0 = unlimited.
    pub max_connections_per_user: usize,
    /// WebSocket and SSE connections one client address may have open at
    /// once; 0 = unlimited.
    pub max_connections_per_ip: usize,
    /// Peers whose `X-Forwarded-For`/`Forwarded` name the client (reverse
    /// proxies); empty = none, the socket's peer is the client.
    pub trusted_proxies: Vec<Cidr>,
    /// Origins allowed to open a WebSocket; none = any.
    pub allowed_origins: Option<Vec<String>>,
    /// Serve the demo page at `/` and the browser client at `/wspush.js`.
    pub demo: bool,
    /// Cluster mode: pushes go through this Redis to every node.
    pub redis: Option<RedisUrl>,
    /// The file `redis` was read from (`--redis-url-file`).
    pub redis_url_file: Option<PathBuf>,
    /// The pub/sub channel the nodes of one cluster share.
    pub redis_channel: String,
    /// How long Redis may take to connect or answer before the node counts
    /// it as down (pushes then get 503 instead of hanging).
    pub redis_timeout: Duration,
    /// Messages kept per stream for clients that resume (SPEC §8); 0:
    /// real-time only, as the seed.
    pub history: usize,
    /// How long a kept message may be replayed.
    pub history_ttl: Duration,
    /// All kept messages together, in (estimated) bytes.
    pub history_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:12345".into(),
            listen_more: Vec::new(),
            push_listen: Vec::new(),
            socket_mode: crate::listen::DEFAULT_SOCKET_MODE,
            reuse_port: false,
            ws_path: "/ws".into(),
            sse_path: "/sse".into(),
            push_path: "/push".into(),
            max_connections: 10_000,
            max_http_connections: 1024,
            max_message_bytes: 4096,
            max_events: 64,
            max_backlog_bytes: 1 << 20,
            max_body_bytes: 64 << 10,
            register_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            offline_grace: Duration::from_secs(5),
            log_level: Level::Info,
            log_format: LogFormat::Text,
            push_key: None,
            push_key_file: None,
            auth_tokens: None,
            jwt_secret: None,
            jwt_secret_file: None,
            jwt_audience: None,
            jwt_issuer: None,
            max_connections_per_user: 0,
            max_connections_per_ip: 0,
            trusted_proxies: Vec::new(),
            allowed_origins: None,
            demo: true,
            redis: None,
            redis_url_file: None,
            redis_channel: "wspush".into(),
            redis_timeout: Duration::from_secs(2),
            history: 0,
            history_ttl: Duration::from_secs(300),
            history_bytes: 16 << 20,
        }
    }
}

use crate::http::route::{
    BROADCAST_PATH, DROP_PATH, HEALTH_PATH, LIFECYCLE_PATH, METRICS_PATH, PRESENCE_PATH,
};

/// The largest byte limit accepted (1 GiB): far above any sane message,
/// body or backlog, and low enough that no arithmetic on it overflows.
pub const MAX_BYTES: usize = 1 << 30;
/// The longest duration accepted (one year); anything longer is a typo,
/// and `Instant + it` must never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The shortest non-zero duration accepted: below it a timer would spin.
pub const MIN_DURATION: Duration = Duration::from_millis(1);
/// More than this many connections is beyond any machine's descriptors.
pub const MAX_CONNECTIONS: usize = 10_000_000;
/// Events per connection beyond this is a typo, not a plan.
pub const MAX_EVENTS: usize = 100_000;
/// Messages kept per stream beyond this is a typo too (the byte cap holds
/// whatever it is).
pub const MAX_HISTORY: usize = 1_000_000;

/// A setting that could not be used, named the way the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Rejects combinations the loop cannot serve, so a typo fails at start
    /// instead of as a strange runtime behaviour.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        let paths = [
            ("ws-path", &self.ws_path),
            ("sse-path", &self.sse_path),
            ("push-path", &self.push_path),
        ];
        for (name, path) in paths {
            if !path.starts_with('/') || path.contains('?') || path.contains(' ') {
                return err(format!(
                    "--{name}: {path:?} must start with '/' and hold no '?' or space"
                ));
            }
        }
        for (i, (a, pa)) in paths.iter().enumerate() {
            if let Some((b, _)) = paths[i + 1..].iter().find(|(_, pb)| pb == pa) {
                return err(format!("--{a} and --{b} must differ"));
            }
        }
        let fixed = [
            BROADCAST_PATH,
            DROP_PATH,
            HEALTH_PATH,
            METRICS_PATH,
            PRESENCE_PATH,
            LIFECYCLE_PATH,
        ];
        for (_, path) in paths {
            if fixed.contains(&path.as_str()) {
                return err(format!("path {path} is already used by a built-in endpoint"));
            }
        }
        for (name, value, min, max) in [
            ("max-connections", self.max_connections, 1, MAX_CONNECTIONS),
            (
                "max-http-connections",
                self.max_http_connections,
                1,
                MAX_CONNECTIONS,
            ),
            ("max-message-bytes", self.max_message_bytes, 64, MAX_BYTES),
            ("max-events", self.max_events, 1, MAX_EVENTS),
            (
                "max-connections-per-user",
                self.max_connections_per_user,
                0,
                MAX_CONNECTIONS,
            ),
            (
                "max-connections-per-ip",
                self.max_connections_per_ip,
                0,
                MAX_CONNECTIONS,
            ),
            ("max-backlog-bytes", self.max_backlog_bytes, 1024, MAX_BYTES),
            ("max-body-bytes", self.max_body_bytes, 1, MAX_BYTES),
            ("history", self.history, 0, MAX_HISTORY),
            ("history-bytes", self.history_bytes, 1024, MAX_BYTES),
        ] {
            if value < min {
                return err(format!("--{name} must be at least {min}"));
            }
            if value > max {
                return err(format!("--{name} {value} is over the limit of {max}"));
            }
        }
        for (name, value, zero_ok) in [
            ("register-timeout", self.register_timeout, true),
            ("ping-interval", self.ping_interval, true),
            ("request-timeout", self.request_timeout, false),
            ("offline-grace", self.offline_grace, true),
            ("redis-timeout", self.redis_timeout, false),
            ("history-ttl", self.history_ttl, false),
        ] {
            if value.is_zero() && !zero_ok {
                return err(format!("--{name} must be above 0"));
            }
            if let Err(why) = check_duration(value) {
                return err(format!("--{name}: {why}"));
            }
        }
        if self.auth_tokens.is_some() && (self.jwt_secret.is_some() || self.jwt_secret_file.is_some()) {
            return err("choose one connection auth: --auth-tokens or --jwt-secret, not both".into());
        }
        if self.push_key.as_ref().is_some_and(|k| k.expose().is_empty()) {
            return err(match &self.push_key_file {
                Some(path) => format!("--push-key-file {} is empty", path.display()),
                None => "--push-key is empty".into(),
            });
        }
        if self.jwt_secret.as_ref().is_some_and(|k| k.expose().is_empty()) {
            return err("--jwt-secret is empty".into());
        }
        let jwt = self.jwt_secret.is_some() || self.jwt_secret_file.is_some();
        for (name, value) in [
            ("jwt-audience", &self.jwt_audience),
            ("jwt-issuer", &self.jwt_issuer),
        ] {
            match value {
                Some(v) if v.is_empty() => return err(format!("--{name} is empty")),
                Some(_) if !jwt => {
                    return err(format!(
                        "--{name} checks JWTs: it needs --jwt-secret or --jwt-secret-file"
                    ))
                }
                _ => {}
            }
        }
        if self.redis_channel.is_empty() {
            return err("--redis-channel is empty".into());
        }
        if self.allowed_origins.as_ref().is_some_and(Vec::is_empty) {
            return err("--allowed-origins lists no origin".into());
        }
        if let Err(why) = check_socket_mode(self.socket_mode) {
            return err(format!("--socket-mode: {why}"));
        }
        self.listeners()?;
        Ok(())
    }

    /// Every address to listen on, with its role: the `--listen` ones in
    /// the order given (the first is the main one), then `--push-listen`.
    /// An error names the flag and the address.
    pub fn listeners(&self) -> Result<Vec<(Addr, Role)>, ConfigError> {
        if self.listen.trim().is_empty() {
            return Err(ConfigError("--listen gives no address".into()));
        }
        let main = std::iter::once(&self.listen).chain(&self.listen_more);
        let all = main
            .map(|a| ("--listen", a, Role::Main))
            .chain(self.push_listen.iter().map(|a| ("--push-listen", a, Role::Push)));
        let mut out: Vec<(Addr, Role)> = Vec::new();
        for (flag, text, role) in all {
            let addr: Addr = text.parse().map_err(|e| ConfigError(format!("{flag} {e}")))?;
            // Port 0 is a fresh port each time; anything else twice would
            // fail to bind, or with --reuse-port silently split one
            // address's clients between two roles.
            let fixed = !matches!(addr, Addr::Tcp(a) if a.port() == 0);
            if fixed && out.iter().any(|(a, _)| *a == addr) {
                return Err(ConfigError(format!("{flag} {addr} is given twice")));
            }
            out.push((addr, role));
        }
        Ok(out)
    }

    /// How [`listeners`](Config::listeners) are bound.
    pub fn bind_options(&self) -> BindOptions {
        BindOptions {
            reuse_port: self.reuse_port,
            socket_mode: self.socket_mode,
        }
    }

    /// Warnings about secret files others can read (the key is as good as
    /// published on a shared machine). Said at start, after `listening on`.
    pub fn secret_file_warnings(&self) -> Vec<String> {
        let files = [
            ("--push-key-file", &self.push_key_file),
            ("--jwt-secret-file", &self.jwt_secret_file),
            ("--redis-url-file", &self.redis_url_file),
        ];
        files
            .into_iter()
            .filter_map(|(flag, path)| {
                let path = path.as_deref()?;
                let mode = exposed_mode(path)?;
                Some(format!(
                    "{flag} {} is open to other users (mode {mode:04o}): `chmod 600` it, \
                     or pass it with systemd's LoadCredential=",
                    path.display()
                ))
            })
            .collect()
    }
}

/// The permission bits of `path` if its group or others have any access.
fn exposed_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

/// A socket file mode: permission bits only, and the owner must be able
/// to connect (connecting needs write permission).
fn check_socket_mode(mode: u32) -> Result<(), String> {
    if mode > 0o777 {
        return Err(format!("{mode:o} is not a permission mode (at most 777)"));
    }
    if mode & 0o200 == 0 {
        return Err(format!(
            "{mode:04o} lets not even the owner connect (connecting needs write permission; try 0660)"
        ));
    }
    Ok(())
}

/// `0660`, `660` or `0o660`: octal, as chmod takes it.
fn parse_mode(v: &str) -> Result<u32, String> {
    let t = v.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    let bad = || format!("{v:?} is not an octal mode like 0660");
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    u32::from_str_radix(digits, 8).map_err(|_| bad())
}

/// `a,b` → `["a", "b"]`, blanks dropped: a list flag's value (one
/// environment variable can hold several addresses).
fn split_list(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Cli {
    Run(Box<Config>),
    Help,
    Version,
}

/// One setting as the user sees it.
struct Flag {
    name: &'static str,
    env: &'static str,
    metavar: &'static str,
    help: &'static str,
    set: fn(&mut Config, &str) -> Result<(), String>,
}

fn parse_count(v: &str) -> Result<usize, String> {
    v.trim()
        .parse::<usize>()
        .map_err(|_| format!("{v:?} is not a whole number"))
}

/// Reads a secret from a file, so it stays out of `ps` and shell history;
/// trailing line breaks, spaces and tabs (as editors and `echo` leave
/// them) are not part of it: a push key or Redis URL cannot end in
/// whitespace that an HTTP header or URL would keep.
pub fn read_secret_file(path: &str) -> Result<Secret, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(Secret::new(s.trim_end_matches(['\n', '\r', ' ', '\t'])))
}

/// The secrets of a `--jwt-secret-file`: one per line, blank lines
/// ignored, so a new secret can be added above the old one and the old
/// one removed once every token signed with it has expired.
pub fn parse_secret_lines(text: &str) -> Vec<Secret> {
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty())
        .map(Secret::new)
        .collect()
}

/// Reads a `--jwt-secret-file`; an error names the file (a file without
/// any secret is one).
pub fn read_secret_lines(path: &std::path::Path) -> Result<Vec<Secret>, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("--jwt-secret-file {name}: {e}"))?;
    let secrets = parse_secret_lines(&text);
    if secrets.is_empty() {
        return Err(format!("--jwt-secret-file {name} holds no secret"));
    }
    Ok(secrets)
}

/// `https://a.example,https://b.example` → the list, trailing slashes dropped.
fn parse_origins(v: &str) -> Vec<String> {
    v.split(',')
        .map(|o| o.trim().trim_end_matches('/').to_string())
        .filter(|o| !o.is_empty())
        .collect()
}

/// A switch's value from the environment: `1`, `true`, `yes` or `on` (and
/// their opposites). On the command line a switch takes no value.
fn parse_switch(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("{v:?} is not a switch value (1/0, true/false)")),
    }
}

/// Zero, or between [`MIN_DURATION`] and [`MAX_DURATION`].
fn check_duration(d: Duration) -> Result<(), String> {
    if d > MAX_DURATION {
        return Err(format!("{d:?} is over the limit of one year"));
    }
    if !d.is_zero() && d < MIN_DURATION {
        return Err(format!("{d:?} is below the minimum of 1ms"));
    }
    Ok(())
}

/// The name duration flags used before units were accepted; the same parser.
pub fn parse_secs(v: &str) -> Result<Duration, String> {
    parse_duration(v)
}

/// A duration as every flag, environment variable and `wspush token --ttl`
/// take it: plain seconds (`30`, `0.5`) or a number with a unit (`500ms`,
/// `30s`, `5m`, `1h`, `1d`); zero, or 1 ms to one year.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let s = v.trim();
    let bad = || format!("{v:?} is not a duration (seconds like 30 or 0.5, or 500ms, 30s, 5m, 1h, 1d)");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let scale = match unit.trim_start() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(bad()),
    };
    // Digits and dots only: no sign, exponent, `inf` or `NaN` gets here.
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = n * scale;
    if !(0.0..=MAX_DURATION.as_secs_f64()).contains(&secs) {
        return Err(format!("{v:?} is over the limit of one year"));
    }
    let d = Duration::from_secs_f64(secs);
    check_duration(d).map_err(|_| format!("{v:?} is below the minimum of 1ms"))?;
    Ok(d)
}

const FLAGS: &[Flag] = &[
    Flag {
        name: "listen",
        env: "WSPUSH_LISTEN",
        metavar: "ADDR",
        help: "address to listen on: host:port (port 0 picks a free one) or unix:/path; repeat it \
               (or give A,B) for several, the first is the main one (default 0.0.0.0:12345)",
        set: |c, v| {
            for addr in split_list(v) {
                if c.listen.is_empty() {
                    c.listen = addr;
                } else {
                    c.listen_more.push(addr);
                }
            }
            Ok(())
        },
    },
    Flag {
        name: "push-listen",
        env: "WSPUSH_PUSH_LISTEN",
        metavar: "ADDR",
        help: "serve the push endpoints (/push, /broadcast, /drop, /metrics, ...) here only, \
               and 404 on the --listen addresses; repeatable (default: on every listener)",
        set: |c, v| {
            c.push_listen.extend(split_list(v));
            Ok(())
        },
    },
    Flag {
        name: "socket-mode",
        env: "WSPUSH_SOCKET_MODE",
        metavar: "OCTAL",
        help: "permissions of unix:/path socket files; connecting needs write permission (default 0660)",
        set: |c, v| {
            c.socket_mode = parse_mode(v)?;
            Ok(())
        },
    },
    Flag {
        name: "reuse-port",
        env: "WSPUSH_REUSE_PORT",
        metavar: "",
        help: "SO_REUSEPORT: several wspush processes share one port (join them with --redis)",
        set: |c, v| {
            c.reuse_port = parse_switch(v)?;
            Ok(())
        },
    },
    Flag {
        name: "ws-path",
        env: "WSPUSH_WS_PATH",
        metavar: "PATH",
        help: "WebSocket endpoint (default /ws)",
        set: |c, v| {
            c.ws_path = v.to_string();
            Ok(())
        },
    },
    Flag {
        name: "sse-path",
        env: "WSPUSH_SSE_PATH",
        metavar: "PATH",
        help: "Server-Sent Events endpoint: GET PATH?event=E&token=T streams pushes (default /sse)",
        set: |c, v| {
            c.sse_path = v.to_string();
            Ok(())
        },
    },
    Flag {
        name: "push-path",
        env: "WSPUSH_PUSH_PATH",
        metavar: "PATH",
        help: "push endpoint (default /push)",
        set: |c, v| {
            c.push_path = v.to_string();
            Ok(())
        },
    },
    Flag {
        name: "push-key",
        env: "WSPUSH_PUSH_KEY",
        metavar: "KEY",
        help: "require Authorization: Bearer KEY on /push, /broadcast, /drop, /metrics, /presence, /lifecycle \
               (default: none, loopback clients only)",
        set: |c, v| {
            c.push_key = Some(Secret::new(v));
            c.push_key_file = None;
            Ok(())
        },
    },
    Flag {
        name: "push-key-file",
        env: "WSPUSH_PUSH_KEY_FILE",
        metavar: "FILE",
        help: "read the push key from FILE (keeps it out of ps); not with --push-key",
        set: |c, v| {
            c.push_key = Some(read_secret_file(v)?);
            c.push_key_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "auth-tokens",
        env: "WSPUSH_AUTH_TOKENS",
        metavar: "FILE",
        help: "connection auth from a file of \"token userId\" lines; re-read on SIGHUP (default: userId = token)",
        set: |c, v| {
            c.auth_tokens = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "jwt-secret",
        env: "WSPUSH_JWT_SECRET",
        metavar: "SECRET",
        help: "connection auth by HS256 JWT signed with SECRET; sub = userId, exp/nbf honoured; \
               `wspush token` signs with it",
        set: |c, v| {
            c.jwt_secret = Some(Secret::new(v));
            Ok(())
        },
    },
    Flag {
        name: "jwt-secret-file",
        env: "WSPUSH_JWT_SECRET_FILE",
        metavar: "FILE",
        help: "JWT secrets from FILE, one per line, each accepted (rotation; keeps them out of ps); \
               combines with --jwt-secret",
        set: |c, v| {
            c.jwt_secret_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "jwt-audience",
        env: "WSPUSH_JWT_AUDIENCE",
        metavar: "AUD",
        help: "JWT mode: refuse tokens whose aud does not name AUD (default: aud not checked)",
        set: |c, v| {
            c.jwt_audience = Some(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "jwt-issuer",
        env: "WSPUSH_JWT_ISSUER",
        metavar: "ISS",
        help: "JWT mode: refuse tokens whose iss is not ISS (default: iss not checked)",
        set: |c, v| {
            c.jwt_issuer = Some(v.to_string());
            Ok(())
        },
    },
    Flag {
        name: "allowed-origins",
        env: "WSPUSH_ALLOWED_ORIGINS",
        metavar: "A,B",
        help: "browser origins allowed to connect, comma-separated; others get 403 (default: any)",
        set: |c, v| {
            c.allowed_origins = Some(parse_origins(v));
            Ok(())
        },
    },
    Flag {
        name: "max-connections",
        env: "WSPUSH_MAX_CONNECTIONS",
        metavar: "N",
        help: "open subscriber connections (WebSocket and SSE); more get HTTP 503 (default 10000)",
        set: |c, v| {
            c.max_connections = parse_count(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-connections-per-user",
        env: "WSPUSH_MAX_CONNECTIONS_PER_USER",
        metavar: "N",
        help: "registered connections (WebSocket and SSE) per user; the register over it gets 4429 \
               (default 0: unlimited)",
        set: |c, v| {
            c.max_connections_per_user = parse_count(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-connections-per-ip",
        env: "WSPUSH_MAX_CONNECTIONS_PER_IP",
        metavar: "N",
        help: "WebSocket and SSE connections per client address; more get HTTP 429 (default 0: unlimited)",
        set: |c, v| {
            c.max_connections_per_ip = parse_count(v)?;
            Ok(())
        },
    },
    Flag {
        name: "trusted-proxies",
        env: "WSPUSH_TRUSTED_PROXIES",
        metavar: "CIDR,...",
        help: "reverse proxies whose X-Forwarded-For/Forwarded name the client (for per-IP limits, logs \
               and the loopback push rule), e.g. 127.0.0.1,10.0.0.0/8 (default: none)",
        set: |c, v| {
            c.trusted_proxies = crate::proxy::parse_list(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-http-connections",
        env: "WSPUSH_MAX_HTTP_CONNECTIONS",
        metavar: "N",
        help: "open sockets that are not WebSocket; beyond it the oldest idle keep-alive one is closed, \
               or the new one gets HTTP 503 (default 1024)",
        set: |c, v| {
            c.max_http_connections = parse_count(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-message-bytes",
        env: "WSPUSH_MAX_MESSAGE_BYTES",
        metavar: "N",
        help: "largest incoming WebSocket message; bigger closes with 1009 (default 4096)",
        set: |c, v| {
            c.max_message_bytes = parse_count(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-events",
        env: "WSPUSH_MAX_EVENTS",
        metavar: "N",
        help: "events per connection; more is refused with 4429 (default 64)",
        set: |c, v| {
            c.max_events = parse_count(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-backlog-bytes",
        env: "WSPUSH_MAX_BACKLOG_BYTES",
        metavar: "N",
        help: "bytes queued for a client that does not read before it is closed with 4008 (default 1048576)",
        set: |c, v| {
            c.max_backlog_bytes = parse_count(v)?;
            Ok(())
        },
    },
    Flag {
        name: "max-body-bytes",
        env: "WSPUSH_MAX_BODY_BYTES",
        metavar: "N",
        help: "largest HTTP request body; bigger gets 413 (default 65536)",
        set: |c, v| {
            c.max_body_bytes = parse_count(v)?;
            Ok(())
        },
    },
    Flag {
        name: "register-timeout",
        env: "WSPUSH_REGISTER_TIMEOUT",
        metavar: "SECS",
        help: "time a new WebSocket has to register, else close 4408; 0 = no limit (default 10)",
        set: |c, v| {
            c.register_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "ping-interval",
        env: "WSPUSH_PING_INTERVAL",
        metavar: "SECS",
        help: "server ping interval; silent for two intervals = dropped; 0 = off (default 30)",
        set: |c, v| {
            c.ping_interval = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "request-timeout",
        env: "WSPUSH_REQUEST_TIMEOUT",
        metavar: "SECS",
        help: "time to send an HTTP request or read its response, and keep-alive idle time (default 10)",
        set: |c, v| {
            c.request_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "offline-grace",
        env: "WSPUSH_OFFLINE_GRACE",
        metavar: "SECS",
        help: "time a user stays online after its last connection went, so a page reload makes no \
               offline/online on /lifecycle; 0 = at once (default 5)",
        set: |c, v| {
            c.offline_grace = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "no-demo",
        env: "WSPUSH_NO_DEMO",
        metavar: "",
        help: "do not serve the demo page (/) and the browser client (/wspush.js, /wspush.mjs)",
        set: |c, v| {
            c.demo = !parse_switch(v)?;
            Ok(())
        },
    },
    Flag {
        name: "redis",
        env: "WSPUSH_REDIS",
        metavar: "URL",
        help: "cluster mode: share pushes with other nodes through Redis pub/sub; \
               redis://[user:password@]host[:port][/db] or unix:///path (default: off, one node)",
        set: |c, v| {
            c.redis = Some(RedisUrl::parse(v)?);
            c.redis_url_file = None;
            Ok(())
        },
    },
    Flag {
        name: "redis-url-file",
        env: "WSPUSH_REDIS_URL_FILE",
        metavar: "FILE",
        help: "read the --redis URL from FILE (keeps its password out of ps); not with --redis",
        set: |c, v| {
            let url = read_secret_file(v)?;
            if url.expose().trim().is_empty() {
                return Err(format!("{v} is empty"));
            }
            c.redis = Some(RedisUrl::parse(url.expose().trim()).map_err(|e| format!("{v}: {e}"))?);
            c.redis_url_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Flag {
        name: "redis-channel",
        env: "WSPUSH_REDIS_CHANNEL",
        metavar: "NAME",
        help: "pub/sub channel the nodes of one cluster share (default wspush)",
        set: |c, v| {
            c.redis_channel = v.to_string();
            Ok(())
        },
    },
    Flag {
        name: "redis-timeout",
        env: "WSPUSH_REDIS_TIMEOUT",
        metavar: "SECS",
        help: "time Redis has to connect or answer before pushes get 503 and the node reconnects (default 2)",
        set: |c, v| {
            c.redis_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "history",
        env: "WSPUSH_HISTORY",
        metavar: "N",
        help: "keep the last N messages of each stream so a client that reconnects gets what it missed \
               (register with \"since\", SSE Last-Event-ID); 0 = real-time only (default 0)",
        set: |c, v| {
            c.history = parse_count(v)?;
            Ok(())
        },
    },
    Flag {
        name: "history-ttl",
        env: "WSPUSH_HISTORY_TTL",
        metavar: "SECS",
        help: "with --history: how long a message is kept (default 300)",
        set: |c, v| {
            c.history_ttl = parse_duration(v)?;
            Ok(())
        },
    },
    Flag {
        name: "history-bytes",
        env: "WSPUSH_HISTORY_BYTES",
        metavar: "N",
        help: "with --history: bytes all kept messages may use together, oldest evicted first (default 16777216)",
        set: |c, v| {
            c.history_bytes = parse_count(v)?;
            Ok(())
        },
    },
    Flag {
        name: "log-level",
        env: "WSPUSH_LOG",
        metavar: "LEVEL",
        help: "off, error, warn, info or debug (default info; WSPUSH_LOG_LEVEL is also read)",
        set: |c, v| {
            c.log_level = Level::parse(v).ok_or_else(|| format!("unknown log level {v:?}"))?;
            Ok(())
        },
    },
    Flag {
        name: "log-format",
        env: "WSPUSH_LOG_FORMAT",
        metavar: "FORMAT",
        help: "text, or json: one object per line with time, level, message (default text)",
        set: |c, v| {
            c.log_format = LogFormat::parse(v).ok_or_else(|| format!("unknown log format {v:?} (text or json)"))?;
            Ok(())
        },
    },
];

/// The `--help` text.
pub fn help() -> String {
    let mut s = String::from(
        "wspush: a WebSocket push server.\n\
         Clients connect to the WebSocket path and register {\"token\": T, \"event\": E};\n\
         back ends POST {\"userId\": U, \"event\": E, \"message\": M} to the push path.\n\n\
         Usage: wspush [OPTIONS]\n\nOptions (each also read from the environment variable shown):\n",
    );
    for f in FLAGS {
        let left = format!("  --{} {}", f.name, f.metavar).trim_end().to_string();
        s.push_str(&format!("{left:<30} {}\n{:<30} [env: {}]\n", f.help, "", f.env));
    }
    s.push_str(&format!(
        "{:<30} print this help\n{:<30} print the version\n",
        "  -h, --help", "  -V, --version"
    ));
    s.push_str(
        "\nEndpoints: GET <ws-path> (WebSocket), GET <sse-path> (SSE), POST <push-path>, POST /broadcast,\n\
         POST /drop, GET /healthz, GET /metrics, GET /presence, GET /lifecycle; the\n\
         demo page at / and the browser client at /wspush.js. Without --push-key,\n\
         /push, /broadcast, /drop, /metrics, /presence and /lifecycle answer loopback\n\
         clients only, and refuse what a browser or a proxy\n\
         sends (Origin, Sec-Fetch-Site, X-Forwarded-For, Forwarded, a Host that is not\n\
         localhost or a loopback address); with it they need Authorization: Bearer KEY\n\
         from anywhere; a unix-socket client counts as loopback. With --push-listen,\n\
         those endpoints are served only there (404 elsewhere). SIGHUP re-reads\n\
         --auth-tokens and --jwt-secret-file, and closes connections whose token they\n\
         no longer accept (4401 token revoked). Under systemd, sockets it passes (LISTEN_FDS; the one named\n\
         \"push\" is a --push-listen) replace --listen, and NOTIFY_SOCKET gets\n\
         READY=1, STOPPING=1 and WATCHDOG=1.\n\
         Durations (SECS) are seconds (30, 0.5) or take a unit (500ms, 30s, 5m, 1h, 1d):\n\
         0 where it turns a timeout off, else 1ms to one year. Byte limits are at most\n\
         1073741824 (1 GiB); --max-connections at most 10000000, --max-events 100000.\n\
         With --redis, a push on any node reaches the clients of every node and\n\
         answers \"message published to N nodes\".\n\n\
         Also: wspush token --jwt-secret SECRET --sub USER [--ttl 1h] [--events 'chat:*,news']\n\
         prints a signed JWT (see wspush token --help).\n\
         Exit status 2: a setting is invalid (the message names it).\n",
    );
    s
}

/// Builds a config from the environment, then the command line (which wins).
/// `env` is passed in so tests need not touch the process environment.
pub fn parse_cli<I, S>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Cli, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut cfg = Config::default();
    // How each flag was last given (`--name` or its env twin), for errors
    // about two settings that clash.
    let mut given: Vec<(&'static str, String)> = Vec::new();
    let mut note = |name: &'static str, how: String| {
        given.retain(|(n, _)| *n != name);
        given.push((name, how));
    };
    for f in FLAGS {
        let (value, how) = env_value(f.env, &env)?;
        if let Some(v) = value {
            clear_list(&mut cfg, f.name);
            (f.set)(&mut cfg, &v).map_err(|e| ConfigError(format!("{how}: {e}")))?;
            note(f.name, how);
        }
    }
    // List flags given on the command line replace the environment's.
    let mut cleared: Vec<&str> = Vec::new();
    // Values of the other flags given on the command line: a second,
    // different one is a conflict, not a silent override.
    let mut once: Vec<(&str, String)> = Vec::new();
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Cli::Help),
            "-V" | "--version" => return Ok(Cli::Version),
            _ => {}
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(ConfigError(format!("unexpected argument {arg:?} (see --help)")));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let flag = FLAGS
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| ConfigError(format!("unknown option --{name} (see --help)")))?;
        let value = match inline {
            Some(v) => v,
            None if flag.metavar.is_empty() => "1".to_string(),
            None => args
                .next()
                .ok_or_else(|| ConfigError(format!("--{name} needs a value ({})", flag.metavar)))?,
        };
        if REPEATABLE.contains(&flag.name) {
            if !cleared.contains(&flag.name) {
                cleared.push(flag.name);
                clear_list(&mut cfg, flag.name);
            }
        } else {
            match once.iter().find(|(n, _)| *n == flag.name) {
                // Values are not shown: this may be a secret.
                Some((_, v)) if *v != value => {
                    return Err(ConfigError(format!(
                        "--{name} is given twice with different values; give it once"
                    )))
                }
                Some(_) => {}
                None => once.push((flag.name, value.clone())),
            }
        }
        (flag.set)(&mut cfg, &value).map_err(|e| ConfigError(format!("--{name}: {e}")))?;
        note(flag.name, format!("--{}", flag.name));
    }
    for (a, b, what) in EXCLUSIVE {
        let how = |name: &str| given.iter().find(|(n, _)| *n == name).map(|(_, how)| how.clone());
        if let (Some(a), Some(b)) = (how(a), how(b)) {
            return Err(ConfigError(format!("{a} and {b} both give {what}; use one")));
        }
    }
    cfg.validate()?;
    Ok(Cli::Run(Box::new(cfg)))
}

/// Pairs of flags that give one setting in two forms: with both, whichever
/// was applied last would silently win, so both is an error.
const EXCLUSIVE: &[(&str, &str, &str)] = &[
    ("push-key", "push-key-file", "the push key"),
    ("redis", "redis-url-file", "the Redis URL"),
];

/// The flags that may be given several times (each adds a listener).
const REPEATABLE: &[&str] = &["listen", "push-listen"];

/// A flag that may be given several times starts from empty the first
/// time a source (the environment, then the command line) gives it: the
/// default, or the environment's list, is replaced, not added to.
fn clear_list(cfg: &mut Config, flag: &str) {
    match flag {
        "listen" => {
            cfg.listen.clear();
            cfg.listen_more.clear();
        }
        "push-listen" => cfg.push_listen.clear(),
        _ => {}
    }
}

/// Other names read for an environment variable (the first is the one
/// documented).
const ENV_ALIASES: &[(&str, &str)] = &[("WSPUSH_LOG", "WSPUSH_LOG_LEVEL")];

/// The value of `name` or an alias of it, and which one it came from. Two
/// that disagree are an error: neither can be assumed to be meant.
fn env_value(
    name: &'static str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(Option<String>, String), ConfigError> {
    let mut found: Option<(String, &str)> = env(name).map(|v| (v, name));
    for (canonical, alias) in ENV_ALIASES {
        if *canonical != name {
            continue;
        }
        if let Some(v) = env(alias) {
            match &found {
                Some((w, _)) if !w.trim().eq_ignore_ascii_case(v.trim()) => {
                    return Err(ConfigError(format!(
                        "{name}={w:?} and {alias}={v:?} disagree; set one"
                    )))
                }
                Some(_) => {}
                None => found = Some((v, alias)),
            }
        }
    }
    Ok(match found {
        Some((v, how)) => (Some(v), how.to_string()),
        None => (None, name.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn run(args: &[&str]) -> Result<Config, ConfigError> {
        match parse_cli(args.iter().copied(), no_env)? {
            Cli::Run(c) => Ok(*c),
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_spec_table() {
        let c = run(&[]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:12345");
        assert_eq!(c.ws_path, "/ws");
        assert_eq!(c.push_path, "/push");
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.max_http_connections, 1024);
        assert_eq!(c.max_message_bytes, 4096);
        assert_eq!(c.max_events, 64);
        assert_eq!(c.max_backlog_bytes, 1_048_576);
        assert_eq!(c.max_body_bytes, 65_536);
        assert_eq!(c.register_timeout, Duration::from_secs(10));
        assert_eq!(c.ping_interval, Duration::from_secs(30));
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.log_level, Level::Info);
    }

    #[test]
    fn both_flag_forms_and_fractional_seconds() {
        let c = run(&[
            "--listen",
            "127.0.0.1:0",
            "--register-timeout=0.5",
            "--max-events",
            "3",
        ])
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.register_timeout, Duration::from_millis(500));
        assert_eq!(c.max_events, 3);
    }

    /// SPEC §4: a setting given twice in conflicting ways exits 2; the
    /// same flag twice with two values is one (the value is not shown: it
    /// may be a secret). The same value twice, and repeatable flags, are
    /// fine.
    #[test]
    fn a_flag_given_twice_with_different_values_is_refused() {
        let e = run(&["--push-key", "aaaaaaaa", "--push-key", "bbbbbbbb"]).unwrap_err();
        assert_eq!(
            e.0,
            "--push-key is given twice with different values; give it once"
        );
        assert!(!e.0.contains("aaaa") && !e.0.contains("bbbb"));
        assert!(run(&["--max-events", "3", "--max-events=4"]).is_err());
        let c = run(&["--max-events", "3", "--max-events=3"]).unwrap();
        assert_eq!(c.max_events, 3);
        let c = run(&["--listen", "127.0.0.1:1", "--listen", "127.0.0.1:2"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:1");
    }

    #[test]
    fn command_line_beats_environment() {
        let env = |k: &str| match k {
            "WSPUSH_LISTEN" => Some("127.0.0.1:1".to_string()),
            "WSPUSH_WS_PATH" => Some("/socket".to_string()),
            _ => None,
        };
        let Cli::Run(c) = parse_cli(["--listen", "127.0.0.1:2"], env).unwrap() else {
            panic!("expected run")
        };
        assert_eq!(c.listen, "127.0.0.1:2");
        assert_eq!(c.ws_path, "/socket");
    }

    #[test]
    fn bad_values_are_named() {
        let e = run(&["--max-events", "many"]).unwrap_err();
        assert!(e.0.contains("--max-events"), "{e}");
        let e = run(&["--ping-interval", "-1"]).unwrap_err();
        assert!(e.0.contains("--ping-interval"), "{e}");
        let e = run(&["--nope"]).unwrap_err();
        assert!(e.0.contains("unknown option --nope"), "{e}");
        let e = run(&["--listen"]).unwrap_err();
        assert!(e.0.contains("needs a value"), "{e}");
        let e = run(&["--ws-path", "ws"]).unwrap_err();
        assert!(e.0.contains("--ws-path"), "{e}");
        let e = run(&["--push-path", "/healthz"]).unwrap_err();
        assert!(e.0.contains("built-in"), "{e}");
        let bad_env = |k: &str| (k == "WSPUSH_LOG").then(|| "loud".to_string());
        let e = parse_cli(Vec::<String>::new(), bad_env).unwrap_err();
        assert!(e.0.contains("WSPUSH_LOG"), "{e}");
    }

    #[test]
    fn max_http_connections_flag_env_and_zero() {
        assert_eq!(
            run(&["--max-http-connections", "5"])
                .unwrap()
                .max_http_connections,
            5
        );
        let env = |k: &str| (k == "WSPUSH_MAX_HTTP_CONNECTIONS").then(|| "7".to_string());
        let Ok(Cli::Run(c)) = parse_cli(Vec::<String>::new(), env) else {
            panic!("env config")
        };
        assert_eq!(c.max_http_connections, 7);
        let e = run(&["--max-http-connections", "0"]).unwrap_err();
        assert_eq!(e.0, "--max-http-connections must be at least 1");
    }

    #[test]
    fn switches_take_no_value() {
        assert!(run(&[]).unwrap().demo);
        let c = run(&["--no-demo", "--max-events", "2"]).unwrap();
        assert!(!c.demo);
        assert_eq!(c.max_events, 2);
        let env = |k: &str| (k == "WSPUSH_NO_DEMO").then(|| "true".to_string());
        let Cli::Run(c) = parse_cli(Vec::<String>::new(), env).unwrap() else {
            panic!()
        };
        assert!(!c.demo);
        let env = |k: &str| (k == "WSPUSH_NO_DEMO").then(|| "maybe".to_string());
        assert!(parse_cli(Vec::<String>::new(), env).is_err());
    }

    #[test]
    fn auth_flags() {
        let dir = std::env::temp_dir();
        let key = dir.join(format!("wspush-key-{}", std::process::id()));
        std::fs::write(&key, "from-file\n").unwrap();
        let c = run(&[
            "--push-key-file",
            key.to_str().unwrap(),
            "--jwt-secret",
            "s",
            "--allowed-origins",
            "https://a.example/, http://b.example:8080",
        ])
        .unwrap();
        std::fs::remove_file(&key).unwrap();
        assert_eq!(c.push_key, Some(Secret::new("from-file")));
        assert_eq!(c.jwt_secret, Some(Secret::new("s")));
        assert_eq!(
            c.allowed_origins,
            Some(vec![
                "https://a.example".to_string(),
                "http://b.example:8080".to_string()
            ])
        );
        assert!(
            !format!("{c:?}").contains("from-file"),
            "secrets are redacted in Debug"
        );
        let e = run(&["--jwt-secret", "s", "--auth-tokens", "/tmp/t"]).unwrap_err();
        assert!(e.0.contains("not both"), "{e}");
        assert!(run(&["--push-key", ""]).is_err());
        assert!(run(&["--push-key-file", "/nonexistent/key"])
            .unwrap_err()
            .0
            .contains("/nonexistent/key"));
    }

    #[test]
    fn durations_take_seconds_or_units_everywhere() {
        for (v, want) in [
            ("30", Duration::from_secs(30)),
            ("0.5", Duration::from_millis(500)),
            (" 2 ", Duration::from_secs(2)),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1.5h", Duration::from_secs(5400)),
            ("1d", Duration::from_secs(86_400)),
            ("0", Duration::ZERO),
            ("0ms", Duration::ZERO),
            ("365d", MAX_DURATION),
        ] {
            assert_eq!(parse_duration(v), Ok(want), "{v}");
        }
        for bad in [
            "",
            "s",
            "-1",
            "+1",
            "1e30",
            "1e3",
            "inf",
            "NaN",
            "1y",
            "5 minutes",
            "1.2.3",
            "0x10",
            "366d",
            "0.0001",
            "0.5ms",
            "99999999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let c = run(&[
            "--ping-interval",
            "500ms",
            "--register-timeout=5m",
            "--request-timeout",
            "1h",
        ])
        .unwrap();
        assert_eq!(c.ping_interval, Duration::from_millis(500));
        assert_eq!(c.register_timeout, Duration::from_secs(300));
        assert_eq!(c.request_timeout, Duration::from_secs(3600));
        let env = |k: &str| match k {
            "WSPUSH_REDIS_TIMEOUT" => Some("250ms".to_string()),
            "WSPUSH_PING_INTERVAL" => Some("2m".to_string()),
            _ => None,
        };
        let Ok(Cli::Run(c)) = parse_cli(Vec::<String>::new(), env) else {
            panic!("env durations")
        };
        assert_eq!(c.redis_timeout, Duration::from_millis(250));
        assert_eq!(c.ping_interval, Duration::from_secs(120));
    }

    #[test]
    fn nonsense_settings_are_refused_naming_the_flag() {
        let huge = usize::MAX.to_string();
        let over = (MAX_BYTES + 1).to_string();
        for (args, want) in [
            (vec!["--ping-interval", "1e30"], "--ping-interval"),
            (vec!["--register-timeout", "400d"], "--register-timeout"),
            (
                vec!["--request-timeout", "0"],
                "--request-timeout must be above 0",
            ),
            (vec!["--request-timeout", "0.0001"], "--request-timeout"),
            (vec!["--max-body-bytes", &huge], "--max-body-bytes"),
            (vec!["--max-body-bytes", &over], "--max-body-bytes"),
            (vec!["--max-backlog-bytes", &huge], "--max-backlog-bytes"),
            (vec!["--max-message-bytes", &huge], "--max-message-bytes"),
            (vec!["--max-connections", &huge], "--max-connections"),
            (vec!["--max-events", &huge], "--max-events"),
            (vec!["--max-events", "0"], "--max-events must be at least 1"),
            (
                vec!["--max-body-bytes", "99999999999999999999999"],
                "--max-body-bytes",
            ),
        ] {
            let e = run(&args).unwrap_err().0;
            assert!(e.contains(want), "{args:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
        assert_eq!(
            run(&["--max-body-bytes", &MAX_BYTES.to_string()])
                .unwrap()
                .max_body_bytes,
            MAX_BYTES
        );
        // The library's Config goes through the same checks at bind.
        for (f, want) in [
            (
                (|c: &mut Config| c.ping_interval = Duration::MAX) as fn(&mut Config),
                "--ping-interval",
            ),
            (
                |c| c.register_timeout = Duration::from_nanos(5),
                "--register-timeout",
            ),
            (|c| c.redis_timeout = Duration::ZERO, "--redis-timeout"),
            (|c| c.max_backlog_bytes = usize::MAX, "--max-backlog-bytes"),
            (|c| c.max_message_bytes = usize::MAX - 1, "--max-message-bytes"),
        ] {
            let mut c = Config::default();
            f(&mut c);
            let e = c.validate().unwrap_err().0;
            assert!(e.contains(want), "{e}");
        }
    }

    fn temp_file(tag: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("wspush-cfg-{tag}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn push_key_and_key_file_clash_in_any_mix() {
        let key = temp_file("clash", "k\n");
        let file = key.to_str().unwrap().to_string();
        let both = |args: &[&str], envs: &[(&str, &str)]| {
            let envs: Vec<(String, String)> =
                envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let env = move |k: &str| envs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            parse_cli(args.iter().copied(), env).unwrap_err().0
        };
        for (e, names) in [
            (
                both(&["--push-key", "k", "--push-key-file", &file], &[]),
                ["--push-key", "--push-key-file"],
            ),
            (
                both(&["--push-key-file", &file, "--push-key", "k"], &[]),
                ["--push-key", "--push-key-file"],
            ),
            (
                both(&["--push-key-file", &file], &[("WSPUSH_PUSH_KEY", "k")]),
                ["WSPUSH_PUSH_KEY", "--push-key-file"],
            ),
            (
                both(&["--push-key", "k"], &[("WSPUSH_PUSH_KEY_FILE", &file)]),
                ["--push-key", "WSPUSH_PUSH_KEY_FILE"],
            ),
            (
                both(&[], &[("WSPUSH_PUSH_KEY", "k"), ("WSPUSH_PUSH_KEY_FILE", &file)]),
                ["WSPUSH_PUSH_KEY", "WSPUSH_PUSH_KEY_FILE"],
            ),
        ] {
            for n in names {
                assert!(e.contains(n), "{e} lacks {n}");
            }
            assert!(
                !e.contains(": k") && !e.contains("\"k\""),
                "the key is not shown: {e}"
            );
        }
        // A flag overriding its own env twin is no clash.
        let env = |k: &str| (k == "WSPUSH_PUSH_KEY").then(|| "from-env".to_string());
        let Ok(Cli::Run(c)) = parse_cli(["--push-key", "from-flag"], env) else {
            panic!("flag over env")
        };
        assert_eq!(c.push_key, Some(Secret::new("from-flag")));
        std::fs::remove_file(&key).unwrap();
    }

    #[test]
    fn an_empty_key_file_is_named() {
        let empty = temp_file("empty", "\n");
        let e = run(&["--push-key-file", empty.to_str().unwrap()]).unwrap_err().0;
        assert_eq!(e, format!("--push-key-file {} is empty", empty.display()));
        std::fs::remove_file(&empty).unwrap();
        assert_eq!(run(&["--push-key", ""]).unwrap_err().0, "--push-key is empty");
        // Trailing blank lines and spaces are not part of a key either.
        let padded = temp_file("padded", "the-key \r\n\n");
        let c = run(&["--push-key-file", padded.to_str().unwrap()]).unwrap();
        assert_eq!(c.push_key, Some(Secret::new("the-key")));
        std::fs::remove_file(&padded).unwrap();
    }

    #[test]
    fn log_level_env_has_an_alias_that_must_agree() {
        let env = |k: &str| (k == "WSPUSH_LOG_LEVEL").then(|| "debug".to_string());
        let Ok(Cli::Run(c)) = parse_cli(Vec::<String>::new(), env) else {
            panic!("alias")
        };
        assert_eq!(c.log_level, Level::Debug);
        let env = |k: &str| match k {
            "WSPUSH_LOG" | "WSPUSH_LOG_LEVEL" => Some("warn".to_string()),
            _ => None,
        };
        let Ok(Cli::Run(c)) = parse_cli(Vec::<String>::new(), env) else {
            panic!("agreeing twins")
        };
        assert_eq!(c.log_level, Level::Warn);
        let env = |k: &str| match k {
            "WSPUSH_LOG" => Some("warn".to_string()),
            "WSPUSH_LOG_LEVEL" => Some("debug".to_string()),
            _ => None,
        };
        let e = parse_cli(Vec::<String>::new(), env).unwrap_err().0;
        assert!(
            e.contains("WSPUSH_LOG=") && e.contains("WSPUSH_LOG_LEVEL="),
            "{e}"
        );
        let env = |k: &str| (k == "WSPUSH_LOG_LEVEL").then(|| "loud".to_string());
        let e = parse_cli(Vec::<String>::new(), env).unwrap_err().0;
        assert!(e.contains("WSPUSH_LOG_LEVEL"), "{e}");
    }

    #[test]
    fn jwt_secret_file_lines() {
        let got: Vec<String> = parse_secret_lines("new\r\n\n  \nold\n")
            .iter()
            .map(|s| s.expose().to_string())
            .collect();
        assert_eq!(got, ["new", "old"]);
        let blank = temp_file("blank-secrets", "\n \n");
        let e = read_secret_lines(&blank).unwrap_err();
        assert_eq!(
            e,
            format!("--jwt-secret-file {} holds no secret", blank.display())
        );
        std::fs::remove_file(&blank).unwrap();
        let c = run(&["--jwt-secret", "s", "--jwt-secret-file", "/some/file"]).unwrap();
        assert_eq!(c.jwt_secret, Some(Secret::new("s")));
        assert_eq!(c.jwt_secret_file, Some(PathBuf::from("/some/file")));
        let e = run(&["--jwt-secret-file", "/f", "--auth-tokens", "/t"]).unwrap_err();
        assert!(e.0.contains("not both"), "{e}");
    }

    /// SPEC §9 settings: defaults off, flags and env twins, bad values named.
    #[test]
    fn access_control_flags() {
        let c = run(&[]).unwrap();
        assert_eq!((c.max_connections_per_user, c.max_connections_per_ip), (0, 0));
        assert!(c.trusted_proxies.is_empty() && c.jwt_audience.is_none() && c.jwt_issuer.is_none());
        let c = run(&[
            "--max-connections-per-user",
            "3",
            "--max-connections-per-ip=4",
            "--trusted-proxies",
            "10.0.0.0/8, ::1",
            "--jwt-secret",
            "s",
            "--jwt-audience",
            "push",
            "--jwt-issuer",
            "app",
        ])
        .unwrap();
        assert_eq!((c.max_connections_per_user, c.max_connections_per_ip), (3, 4));
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.trusted_proxies[0].to_string(), "10.0.0.0/8");
        assert_eq!(
            (c.jwt_audience.as_deref(), c.jwt_issuer.as_deref()),
            (Some("push"), Some("app"))
        );
        let env = |k: &str| match k {
            "WSPUSH_MAX_CONNECTIONS_PER_USER" => Some("7".to_string()),
            "WSPUSH_TRUSTED_PROXIES" => Some("127.0.0.1".to_string()),
            _ => None,
        };
        let Ok(Cli::Run(c)) = parse_cli(Vec::<String>::new(), env) else {
            panic!("env")
        };
        assert_eq!((c.max_connections_per_user, c.trusted_proxies.len()), (7, 1));
        for (args, want) in [
            (&["--max-connections-per-ip", "x"][..], "--max-connections-per-ip"),
            (
                &["--max-connections-per-user", "99999999999"],
                "--max-connections-per-user",
            ),
            (&["--trusted-proxies", "10.0.0.1/8"], "--trusted-proxies"),
            (&["--trusted-proxies", ","], "--trusted-proxies"),
            (&["--jwt-audience", "a"], "--jwt-audience checks JWTs"),
            (&["--jwt-issuer", "i"], "--jwt-issuer checks JWTs"),
            (
                &["--jwt-secret", "s", "--jwt-issuer", ""],
                "--jwt-issuer is empty",
            ),
        ] {
            let e = run(args).unwrap_err().0;
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn help_lists_every_flag_and_env() {
        let h = help();
        for f in FLAGS {
            assert!(h.contains(&format!("--{}", f.name)), "{}", f.name);
            assert!(h.contains(f.env), "{}", f.env);
        }
        assert!(matches!(parse_cli(["--help"], no_env), Ok(Cli::Help)));
        assert!(matches!(parse_cli(["-V"], no_env), Ok(Cli::Version)));
    }

    #[test]
    fn offline_grace_takes_a_duration_by_flag_or_env() {
        assert_eq!(run(&[]).unwrap().offline_grace, Duration::from_secs(5));
        assert_eq!(
            run(&["--offline-grace", "500ms"]).unwrap().offline_grace,
            Duration::from_millis(500)
        );
        assert_eq!(run(&["--offline-grace=0"]).unwrap().offline_grace, Duration::ZERO);
        let env = |k: &str| (k == "WSPUSH_OFFLINE_GRACE").then(|| "1m".to_string());
        let Ok(Cli::Run(c)) = parse_cli(Vec::<String>::new(), env) else {
            panic!("env grace")
        };
        assert_eq!(c.offline_grace, Duration::from_secs(60));
        let e = run(&["--offline-grace", "soon"]).unwrap_err().0;
        assert!(e.contains("--offline-grace"), "{e}");
        for path in ["/presence", "/lifecycle"] {
            let e = run(&["--push-path", path]).unwrap_err().0;
            assert!(e.contains("built-in endpoint"), "{e}");
        }
    }

    #[test]
    fn redis_flags_and_their_env_twins() {
        let c = run(&[]).unwrap();
        assert_eq!(c.redis, None);
        assert_eq!(c.redis_channel, "wspush");
        assert_eq!(c.redis_timeout, Duration::from_secs(2));
        let c = run(&[
            "--redis",
            "redis://:pw@127.0.0.1:6380/2",
            "--redis-channel",
            "blue",
            "--redis-timeout=0.5",
        ])
        .unwrap();
        let url = c.redis.expect("set");
        assert_eq!(url.to_string(), "redis://:***@127.0.0.1:6380/2");
        assert_eq!(c.redis_channel, "blue");
        assert_eq!(c.redis_timeout, Duration::from_millis(500));
        let env = |k: &str| match k {
            "WSPUSH_REDIS" => Some("unix:///run/redis.sock".to_string()),
            "WSPUSH_REDIS_CHANNEL" => Some("green".to_string()),
            _ => None,
        };
        let Ok(Cli::Run(c)) = parse_cli(Vec::<String>::new(), env) else {
            panic!("env config")
        };
        assert_eq!(c.redis.expect("from env").to_string(), "unix:///run/redis.sock");
        assert_eq!(c.redis_channel, "green");
    }

    #[test]
    fn bad_redis_settings_name_the_flag() {
        for (args, want) in [
            (&["--redis", "localhost:6379"][..], "--redis: expected redis://"),
            (&["--redis", "redis://h:0"], "--redis: \"0\" is not a port"),
            (&["--redis-channel", ""], "--redis-channel is empty"),
            (&["--redis-timeout", "0"], "--redis-timeout must be above 0"),
        ] {
            let e = run(args).unwrap_err().0;
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    fn with_env(args: &[&str], envs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let envs: Vec<(String, String)> = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env = move |k: &str| envs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match parse_cli(args.iter().copied(), env)? {
            Cli::Run(c) => Ok(*c),
            other => panic!("expected a config, got {other:?}"),
        }
    }

    fn listed(c: &Config) -> Vec<(String, Role)> {
        c.listeners()
            .unwrap()
            .into_iter()
            .map(|(a, r)| (a.to_string(), r))
            .collect()
    }

    #[test]
    fn listen_repeats_and_replaces_the_default() {
        let c = run(&[]).unwrap();
        assert_eq!(listed(&c), [("0.0.0.0:12345".to_string(), Role::Main)]);
        let c = run(&["--listen", "127.0.0.1:1", "--listen", "unix:/run/w.sock"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:1", "the first stays the main one");
        assert_eq!(c.listen_more, ["unix:/run/w.sock"]);
        assert_eq!(
            listed(&c),
            [
                ("127.0.0.1:1".to_string(), Role::Main),
                ("unix:/run/w.sock".to_string(), Role::Main)
            ]
        );
        // The environment holds a list; the command line replaces it.
        let env = [("WSPUSH_LISTEN", "127.0.0.1:1, [::1]:2")];
        let c = with_env(&[], &env).unwrap();
        assert_eq!(listed(&c).len(), 2);
        assert_eq!(c.listen, "127.0.0.1:1");
        assert_eq!(c.listen_more, ["[::1]:2"]);
        let c = with_env(&["--listen", "127.0.0.1:3"], &env).unwrap();
        assert_eq!(listed(&c), [("127.0.0.1:3".to_string(), Role::Main)]);
        assert!(c.listen_more.is_empty());
    }

    #[test]
    fn push_listen_adds_push_listeners_after_the_main_ones() {
        let c = run(&[
            "--push-listen",
            "unix:/run/push.sock",
            "--listen",
            "127.0.0.1:1",
            "--push-listen=127.0.0.1:2",
        ])
        .unwrap();
        assert_eq!(
            listed(&c),
            [
                ("127.0.0.1:1".to_string(), Role::Main),
                ("unix:/run/push.sock".to_string(), Role::Push),
                ("127.0.0.1:2".to_string(), Role::Push)
            ]
        );
        let env = [("WSPUSH_PUSH_LISTEN", "127.0.0.1:2,127.0.0.1:3")];
        let c = with_env(&[], &env).unwrap();
        assert_eq!(c.push_listen, ["127.0.0.1:2", "127.0.0.1:3"]);
        let c = with_env(&["--push-listen", "127.0.0.1:4"], &env).unwrap();
        assert_eq!(c.push_listen, ["127.0.0.1:4"]);
        assert!(run(&[]).unwrap().push_listen.is_empty());
    }

    #[test]
    fn bad_or_clashing_listen_addresses_are_named() {
        for (args, want) in [
            (&["--listen", ""][..], "--listen gives no address"),
            (
                &["--listen", "unix:"],
                "--listen \"unix:\": a unix socket needs a path",
            ),
            (&["--push-listen", "nowhere"], "--push-listen \"nowhere\""),
            (
                &["--listen", "127.0.0.1:7", "--push-listen", "127.0.0.1:7"],
                "--push-listen 127.0.0.1:7 is given twice",
            ),
            (
                &["--listen", "unix:/a", "--listen", "unix:/a"],
                "--listen unix:/a is given twice",
            ),
        ] {
            let e = run(args).unwrap_err().0;
            assert!(e.contains(want), "{args:?}: {e}");
        }
        // Port 0 twice is two free ports, not a clash.
        assert!(run(&["--listen", "127.0.0.1:0", "--push-listen", "127.0.0.1:0"]).is_ok());
    }

    #[test]
    fn socket_mode_is_octal_and_must_let_the_owner_connect() {
        assert_eq!(run(&[]).unwrap().socket_mode, 0o660);
        assert_eq!(run(&[]).unwrap().bind_options().socket_mode, 0o660);
        for (v, want) in [
            ("0600", 0o600),
            ("666", 0o666),
            ("0o640", 0o640),
            (" 0770 ", 0o770),
        ] {
            assert_eq!(run(&["--socket-mode", v]).unwrap().socket_mode, want, "{v}");
        }
        let env = [("WSPUSH_SOCKET_MODE", "0600")];
        assert_eq!(with_env(&[], &env).unwrap().socket_mode, 0o600);
        for (v, want) in [
            ("0888", "not an octal mode"),
            ("rw", "not an octal mode"),
            ("", "not an octal mode"),
            ("-660", "not an octal mode"),
            ("1777", "at most 777"),
            ("0444", "not even the owner"),
            ("0", "not even the owner"),
        ] {
            let e = run(&["--socket-mode", v]).unwrap_err().0;
            assert!(e.starts_with("--socket-mode") && e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn reuse_port_switch() {
        assert!(!run(&[]).unwrap().reuse_port);
        assert!(run(&["--reuse-port"]).unwrap().reuse_port);
        assert!(run(&["--reuse-port"]).unwrap().bind_options().reuse_port);
        assert!(with_env(&[], &[("WSPUSH_REUSE_PORT", "1")]).unwrap().reuse_port);
        assert!(!with_env(&[], &[("WSPUSH_REUSE_PORT", "off")]).unwrap().reuse_port);
        assert!(with_env(&[], &[("WSPUSH_REUSE_PORT", "twice")]).is_err());
    }

    #[test]
    fn redis_url_file_reads_the_url_and_clashes_with_redis() {
        let file = temp_file("redis-url", "redis://:s3cret@127.0.0.1:6380/1\n");
        let f = file.to_str().unwrap();
        let c = run(&["--redis-url-file", f]).unwrap();
        assert_eq!(c.redis.unwrap().to_string(), "redis://:***@127.0.0.1:6380/1");
        assert_eq!(c.redis_url_file.as_deref(), Some(file.as_path()));
        let c = with_env(&[], &[("WSPUSH_REDIS_URL_FILE", f)]).unwrap();
        assert!(c.redis.is_some());
        for (args, envs, names) in [
            (
                vec!["--redis", "redis://h", "--redis-url-file", f],
                vec![],
                ["--redis ", "--redis-url-file"],
            ),
            (
                vec!["--redis-url-file", f],
                vec![("WSPUSH_REDIS", "redis://h")],
                ["WSPUSH_REDIS ", "--redis-url-file"],
            ),
            (
                vec!["--redis", "redis://h"],
                vec![("WSPUSH_REDIS_URL_FILE", f)],
                ["--redis ", "WSPUSH_REDIS_URL_FILE"],
            ),
            (
                vec![],
                vec![("WSPUSH_REDIS", "redis://h"), ("WSPUSH_REDIS_URL_FILE", f)],
                ["WSPUSH_REDIS ", "WSPUSH_REDIS_URL_FILE"],
            ),
        ] {
            let e = with_env(&args, &envs).unwrap_err().0;
            for n in names {
                assert!(e.contains(n), "{e} lacks {n}");
            }
            assert!(!e.contains("s3cret"), "{e}");
        }
        std::fs::write(&file, "\n").unwrap();
        let e = run(&["--redis-url-file", f]).unwrap_err().0;
        assert_eq!(e, format!("--redis-url-file: {f} is empty"));
        std::fs::write(&file, "http://user:s3cret@host\n").unwrap();
        let e = run(&["--redis-url-file", f]).unwrap_err().0;
        assert!(
            e.starts_with(&format!("--redis-url-file: {f}: expected redis://")),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        std::fs::remove_file(&file).unwrap();
        let e = run(&["--redis-url-file", "/nonexistent/url"]).unwrap_err().0;
        assert!(e.contains("/nonexistent/url"), "{e}");
    }

    #[test]
    fn log_format_flag_and_env() {
        assert_eq!(run(&[]).unwrap().log_format, LogFormat::Text);
        assert_eq!(
            run(&["--log-format", "json"]).unwrap().log_format,
            LogFormat::Json
        );
        let env = [("WSPUSH_LOG_FORMAT", "json")];
        assert_eq!(with_env(&[], &env).unwrap().log_format, LogFormat::Json);
        assert_eq!(
            with_env(&["--log-format=text"], &env).unwrap().log_format,
            LogFormat::Text
        );
        let e = run(&["--log-format", "xml"]).unwrap_err().0;
        assert_eq!(e, "--log-format: unknown log format \"xml\" (text or json)");
        let e = with_env(&[], &[("WSPUSH_LOG_FORMAT", "xml")]).unwrap_err().0;
        assert!(e.starts_with("WSPUSH_LOG_FORMAT: "), "{e}");
    }

    #[test]
    fn secret_files_others_can_read_are_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let key = temp_file("open-key", "k\n");
        let url = temp_file("open-url", "redis://127.0.0.1\n");
        let jwt = temp_file("closed-jwt", "s\n");
        let mode =
            |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        mode(&key, 0o644);
        mode(&url, 0o640);
        mode(&jwt, 0o600);
        let c = run(&[
            "--push-key-file",
            key.to_str().unwrap(),
            "--redis-url-file",
            url.to_str().unwrap(),
            "--jwt-secret-file",
            jwt.to_str().unwrap(),
        ])
        .unwrap();
        let w = c.secret_file_warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with(&format!(
                "--push-key-file {} is open to other users (mode 0644)",
                key.display()
            )),
            "{}",
            w[0]
        );
        assert!(
            w[1].contains("--redis-url-file") && w[1].contains("0640"),
            "{}",
            w[1]
        );
        assert!(w
            .iter()
            .all(|l| !l.contains("listening on") && l.contains("LoadCredential")));
        mode(&key, 0o400);
        mode(&url, 0o600);
        assert_eq!(c.secret_file_warnings(), Vec::<String>::new());
        assert_eq!(run(&[]).unwrap().secret_file_warnings(), Vec::<String>::new());
        for p in [key, url, jwt] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn every_file_flag_has_its_env_twin() {
        for f in FLAGS.iter().filter(|f| f.name.ends_with("-file")) {
            let want = format!("WSPUSH_{}", f.name.to_ascii_uppercase().replace('-', "_"));
            assert_eq!(f.env, want);
        }
        assert!(FLAGS.iter().any(|f| f.name == "redis-url-file"));
    }

    /// SPEC §8: off by default; flags and their env twins; the TTL must be
    /// above 0 and the byte cap at least 1 KiB.
    #[test]
    fn history_settings() {
        let c = run(&[]).unwrap();
        assert_eq!(
            (c.history, c.history_ttl, c.history_bytes),
            (0, Duration::from_secs(300), 16 << 20)
        );
        let c = run(&[
            "--history",
            "100",
            "--history-ttl",
            "5m",
            "--history-bytes",
            "1048576",
        ])
        .unwrap();
        assert_eq!(
            (c.history, c.history_ttl, c.history_bytes),
            (100, Duration::from_secs(300), 1 << 20)
        );
        let env = |k: &str| match k {
            "WSPUSH_HISTORY" => Some("7".to_string()),
            "WSPUSH_HISTORY_TTL" => Some("30s".to_string()),
            "WSPUSH_HISTORY_BYTES" => Some("4096".to_string()),
            _ => None,
        };
        let Ok(Cli::Run(c)) = parse_cli(Vec::<String>::new(), env) else {
            panic!("env config")
        };
        assert_eq!(
            (c.history, c.history_ttl, c.history_bytes),
            (7, Duration::from_secs(30), 4096)
        );
        for (args, want) in [
            (&["--history-ttl", "0"][..], "--history-ttl must be above 0"),
            (
                &["--history-bytes", "100"],
                "--history-bytes must be at least 1024",
            ),
            (&["--history", "-1"], "--history: \"-1\" is not a whole number"),
            (&["--history", "2000000"], "--history 2000000 is over the limit"),
        ] {
            let e = run(args).unwrap_err().0;
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }
}
