//! Every setting in one place: its default, its flag, its environment twin,
//! and the checks that keep a bad value from reaching the loop.
//!
//! The flag table below is the single source for parsing, `--help` and the
//! README's configuration table, so they cannot drift apart.

use crate::log::Level;
use crate::redis::RedisUrl;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A key or secret: printed as `<redacted>` by `Debug`, so it never reaches
/// a log line or a panic message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// All settings of a server. `Config::default()` is what `wspush` runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`host:port`; port 0 picks a free one).
    pub listen: String,
    /// Path of the WebSocket endpoint.
    pub ws_path: String,
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
    /// Log level.
    pub log_level: Level,
    /// Bearer key for the push endpoints; none = loopback clients only.
    pub push_key: Option<Secret>,
    /// `token userId` table for connection auth (re-read on SIGHUP).
    pub auth_tokens: Option<PathBuf>,
    /// HS256 secret for JWT connection auth (`sub` = userId).
    pub jwt_secret: Option<Secret>,
    /// Origins allowed to open a WebSocket; none = any.
    pub allowed_origins: Option<Vec<String>>,
    /// Serve the demo page at `/` and the browser client at `/wspush.js`.
    pub demo: bool,
    /// Cluster mode: pushes go through this Redis to every node.
    pub redis: Option<RedisUrl>,
    /// The pub/sub channel the nodes of one cluster share.
    pub redis_channel: String,
    /// How long Redis may take to connect or answer before the node counts
    /// it as down (pushes then get 503 instead of hanging).
    pub redis_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:12345".into(),
            ws_path: "/ws".into(),
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
            log_level: Level::Info,
            push_key: None,
            auth_tokens: None,
            jwt_secret: None,
            allowed_origins: None,
            demo: true,
            redis: None,
            redis_channel: "wspush".into(),
            redis_timeout: Duration::from_secs(2),
        }
    }
}

/// Paths served by the loop besides the configurable two.
pub const BROADCAST_PATH: &str = "/broadcast";
pub const DROP_PATH: &str = "/drop";
pub const HEALTH_PATH: &str = "/healthz";
pub const METRICS_PATH: &str = "/metrics";

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
        for (name, path) in [("ws-path", &self.ws_path), ("push-path", &self.push_path)] {
            if !path.starts_with('/') || path.contains('?') || path.contains(' ') {
                return err(format!(
                    "--{name}: {path:?} must start with '/' and hold no '?' or space"
                ));
            }
        }
        let fixed = [BROADCAST_PATH, DROP_PATH, HEALTH_PATH, METRICS_PATH];
        if self.ws_path == self.push_path {
            return err("--ws-path and --push-path must differ".into());
        }
        for path in [&self.ws_path, &self.push_path] {
            if fixed.contains(&path.as_str()) {
                return err(format!("path {path} is already used by a built-in endpoint"));
            }
        }
        if self.max_connections == 0 {
            return err("--max-connections must be at least 1".into());
        }
        if self.max_http_connections == 0 {
            return err("--max-http-connections must be at least 1".into());
        }
        if self.max_message_bytes < 64 {
            return err("--max-message-bytes must be at least 64".into());
        }
        if self.max_events == 0 {
            return err("--max-events must be at least 1".into());
        }
        if self.max_backlog_bytes < 1024 {
            return err("--max-backlog-bytes must be at least 1024".into());
        }
        if self.max_body_bytes == 0 {
            return err("--max-body-bytes must be at least 1".into());
        }
        if self.request_timeout.is_zero() {
            return err("--request-timeout must be above 0".into());
        }
        if self.auth_tokens.is_some() && self.jwt_secret.is_some() {
            return err("choose one connection auth: --auth-tokens or --jwt-secret, not both".into());
        }
        if self.push_key.as_ref().is_some_and(|k| k.expose().is_empty()) {
            return err("--push-key is empty".into());
        }
        if self.jwt_secret.as_ref().is_some_and(|k| k.expose().is_empty()) {
            return err("--jwt-secret is empty".into());
        }
        if self.redis_channel.is_empty() {
            return err("--redis-channel is empty".into());
        }
        if self.redis_timeout.is_zero() {
            return err("--redis-timeout must be above 0".into());
        }
        if self.allowed_origins.as_ref().is_some_and(Vec::is_empty) {
            return err("--allowed-origins lists no origin".into());
        }
        Ok(())
    }
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
/// one trailing newline (as editors write) is not part of it.
pub fn read_secret_file(path: &str) -> Result<Secret, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let s = s.strip_suffix('\n').unwrap_or(&s);
    let s = s.strip_suffix('\r').unwrap_or(s);
    Ok(Secret::new(s))
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

/// Seconds, fractional allowed (`0.5`), as SPEC §4 says.
pub fn parse_secs(v: &str) -> Result<Duration, String> {
    let secs: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("{v:?} is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=31_536_000.0).contains(&secs) {
        return Err(format!("{v:?} is out of range (0 to one year)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

const FLAGS: &[Flag] = &[
    Flag {
        name: "listen",
        env: "WSPUSH_LISTEN",
        metavar: "ADDR",
        help: "address to listen on (default 0.0.0.0:12345; port 0 picks a free port)",
        set: |c, v| {
            c.listen = v.to_string();
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
        help: "require Authorization: Bearer KEY on /push, /broadcast, /drop, /metrics (default: none, loopback clients only)",
        set: |c, v| {
            c.push_key = Some(Secret::new(v));
            Ok(())
        },
    },
    Flag {
        name: "push-key-file",
        env: "WSPUSH_PUSH_KEY_FILE",
        metavar: "FILE",
        help: "read the push key from FILE (keeps it out of ps)",
        set: |c, v| {
            c.push_key = Some(read_secret_file(v)?);
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
        help: "connection auth by HS256 JWT signed with SECRET; sub = userId, exp/nbf honoured",
        set: |c, v| {
            c.jwt_secret = Some(Secret::new(v));
            Ok(())
        },
    },
    Flag {
        name: "jwt-secret-file",
        env: "WSPUSH_JWT_SECRET_FILE",
        metavar: "FILE",
        help: "read the JWT secret from FILE (keeps it out of ps)",
        set: |c, v| {
            c.jwt_secret = Some(read_secret_file(v)?);
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
        help: "open WebSocket connections; more get HTTP 503 (default 10000)",
        set: |c, v| {
            c.max_connections = parse_count(v)?;
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
            c.register_timeout = parse_secs(v)?;
            Ok(())
        },
    },
    Flag {
        name: "ping-interval",
        env: "WSPUSH_PING_INTERVAL",
        metavar: "SECS",
        help: "server ping interval; silent for two intervals = dropped; 0 = off (default 30)",
        set: |c, v| {
            c.ping_interval = parse_secs(v)?;
            Ok(())
        },
    },
    Flag {
        name: "request-timeout",
        env: "WSPUSH_REQUEST_TIMEOUT",
        metavar: "SECS",
        help: "time to send an HTTP request or read its response, and keep-alive idle time (default 10)",
        set: |c, v| {
            c.request_timeout = parse_secs(v)?;
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
            c.redis_timeout = parse_secs(v)?;
            Ok(())
        },
    },
    Flag {
        name: "log-level",
        env: "WSPUSH_LOG",
        metavar: "LEVEL",
        help: "off, error, warn, info or debug (default info)",
        set: |c, v| {
            c.log_level = Level::parse(v).ok_or_else(|| format!("unknown log level {v:?}"))?;
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
        "\nEndpoints: GET <ws-path> (WebSocket), POST <push-path>, POST /broadcast,\n\
         POST /drop, GET /healthz, GET /metrics; the demo page at / and the browser\n\
         client at /wspush.js. Without --push-key, /push, /broadcast, /drop and\n\
         /metrics answer loopback clients only; with it they need\n\
         Authorization: Bearer KEY from anywhere. SIGHUP re-reads --auth-tokens.\n\
         With --redis, a push on any node reaches the clients of every node and\n\
         answers \"message published to N nodes\".\n\n\
         Also: wspush token --jwt-secret SECRET --sub USER [--ttl 1h]   prints a signed JWT\n",
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
    for f in FLAGS {
        if let Some(v) = env(f.env) {
            (f.set)(&mut cfg, &v).map_err(|e| ConfigError(format!("{}: {e}", f.env)))?;
        }
    }
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
        (flag.set)(&mut cfg, &value).map_err(|e| ConfigError(format!("--{name}: {e}")))?;
    }
    cfg.validate()?;
    Ok(Cli::Run(Box::new(cfg)))
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
}
