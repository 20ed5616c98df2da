//! `--redis URL`: where the cluster's Redis is and how to log in.
//!
//! Parsed once at startup so a typo stops the server with a clear message
//! instead of turning into an endless reconnect loop. The password is a
//! [`Secret`]: neither `Debug` nor `Display` ever shows it, so the URL can
//! be logged as is.

use crate::secret::Secret;
use std::fmt;
use std::path::PathBuf;

/// Where Redis listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddr {
    /// A host name or IP literal and a port (6379 unless given).
    Tcp { host: String, port: u16 },
    /// A Unix socket path.
    Unix(PathBuf),
}

/// A parsed `redis://[user:password@]host[:port][/db]` or
/// `unix://[user:password@]/path[?db=N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub addr: RedisAddr,
    /// ACL user (Redis 6+); `AUTH password` alone when absent.
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// Database for `SELECT` (pub/sub channels are global, but a shared
    /// Redis may insist on one).
    pub db: u32,
}

const DEFAULT_PORT: u16 = 6379;

impl RedisUrl {
    /// Parses the URL forms above; the error says what is wrong, never the
    /// password.
    pub fn parse(s: &str) -> Result<RedisUrl, String> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("redis://") {
            parse_tcp(rest)
        } else if let Some(rest) = s.strip_prefix("unix://") {
            parse_unix(rest)
        } else if s.starts_with("rediss://") {
            Err(
                "rediss:// (TLS) is not supported; reach a remote Redis through a TLS tunnel \
                 (stunnel, spiped) or a unix:// socket"
                    .into(),
            )
        } else {
            Err("expected redis://[user:password@]host[:port][/db] or unix:///path".into())
        }
    }
}

/// Splits `userinfo@` off the front; only the last `@` counts, so a
/// password may contain `@` when percent-encoding was forgotten.
fn split_userinfo(rest: &str, end: usize) -> (Option<&str>, &str) {
    match rest[..end].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    }
}

fn credentials(info: Option<&str>) -> Result<(Option<String>, Option<Secret>), String> {
    let Some(info) = info else {
        return Ok((None, None));
    };
    let (user, password) = match info.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (info, None),
    };
    let user = percent_decode(user).map_err(|e| format!("user name: {e}"))?;
    let password = match password {
        Some(p) => Some(Secret::new(
            percent_decode(p).map_err(|e| format!("password: {e}"))?,
        )),
        None => None,
    };
    match (user.is_empty(), &password) {
        // `redis://name@host` is ambiguous; redis-cli reads it as a password.
        (false, None) => Ok((None, Some(Secret::new(user)))),
        (true, _) => Ok((None, password.filter(|p| !p.expose().is_empty()))),
        (false, Some(_)) => Ok((Some(user), password)),
    }
}

fn parse_tcp(rest: &str) -> Result<RedisUrl, String> {
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (info, rest) = split_userinfo(rest, end);
    let (user, password) = credentials(info)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hostport, tail) = rest.split_at(end);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("an IPv6 host needs a closing ']'")?;
        match after.strip_prefix(':') {
            Some(p) => (host, parse_port(p)?),
            None if after.is_empty() => (host, DEFAULT_PORT),
            None => return Err(format!("unexpected {after:?} after the IPv6 host")),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, parse_port(p)?),
            None => (hostport, DEFAULT_PORT),
        }
    };
    if host.is_empty() {
        return Err("the host is missing (redis://127.0.0.1:6379)".into());
    }
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let mut db = match path.trim_start_matches('/') {
        "" => 0,
        d => parse_db(d)?,
    };
    if let Some(q) = query {
        db = query_db(q)?.unwrap_or(db);
    }
    Ok(RedisUrl {
        addr: RedisAddr::Tcp {
            host: host.to_string(),
            port,
        },
        user,
        password,
        db,
    })
}

fn parse_unix(rest: &str) -> Result<RedisUrl, String> {
    let end = rest.find('/').unwrap_or(rest.len());
    let (info, rest) = split_userinfo(rest, end);
    let (user, password) = credentials(info)?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if !path.starts_with('/') || path.len() < 2 {
        return Err("a unix socket URL needs an absolute path (unix:///run/redis.sock)".into());
    }
    let db = match query {
        Some(q) => query_db(q)?.unwrap_or(0),
        None => 0,
    };
    Ok(RedisUrl {
        addr: RedisAddr::Unix(PathBuf::from(percent_decode(path)?)),
        user,
        password,
        db,
    })
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port (1-65535)")),
        Ok(n) => Ok(n),
    }
}

fn parse_db(d: &str) -> Result<u32, String> {
    d.parse::<u32>()
        .map_err(|_| format!("database {d:?} is not a number"))
}

/// `db=N` among `&`-separated parameters; others are refused rather than
/// silently ignored, so a misspelt option is noticed.
fn query_db(q: &str) -> Result<Option<u32>, String> {
    let mut db = None;
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("db", v)) => db = Some(parse_db(v)?),
            _ => return Err(format!("unknown URL parameter {pair:?} (only db=N)")),
        }
    }
    Ok(db)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a '%' is not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding is not UTF-8".to_string())
}

impl fmt::Display for RedisUrl {
    /// The URL with the password masked: safe for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match (&self.user, &self.password) {
            (Some(u), _) => format!("{u}:***@"),
            (None, Some(_)) => ":***@".to_string(),
            (None, None) => String::new(),
        };
        match &self.addr {
            RedisAddr::Tcp { host, port } if host.contains(':') => {
                write!(f, "redis://{auth}[{host}]:{port}")?
            }
            RedisAddr::Tcp { host, port } => write!(f, "redis://{auth}{host}:{port}")?,
            RedisAddr::Unix(p) => write!(f, "unix://{auth}{}", p.display())?,
        }
        match (&self.addr, self.db) {
            (_, 0) => Ok(()),
            (RedisAddr::Tcp { .. }, db) => write!(f, "/{db}"),
            (RedisAddr::Unix(_), db) => write!(f, "?db={db}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> RedisAddr {
        RedisAddr::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn host_port_and_db() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380/3").unwrap();
        assert_eq!(u.addr, tcp("127.0.0.1", 6380));
        assert_eq!(u.db, 3);
        assert_eq!((u.user, u.password), (None, None));
        let u = RedisUrl::parse("redis://cache.internal").unwrap();
        assert_eq!(u.addr, tcp("cache.internal", 6379));
        assert_eq!(u.db, 0);
        let u = RedisUrl::parse("redis://[::1]:7000/").unwrap();
        assert_eq!(u.addr, tcp("::1", 7000));
        let u = RedisUrl::parse("redis://[::1]").unwrap();
        assert_eq!(u.addr, tcp("::1", 6379));
        let u = RedisUrl::parse("redis://h:1?db=5").unwrap();
        assert_eq!(u.db, 5);
    }

    #[test]
    fn credentials_in_every_form() {
        let u = RedisUrl::parse("redis://app:s%40cret@h:1/2").unwrap();
        assert_eq!(u.user.as_deref(), Some("app"));
        assert_eq!(u.password.as_ref().map(Secret::expose), Some("s@cret"));
        assert_eq!(u.db, 2);
        let u = RedisUrl::parse("redis://:pw@h").unwrap();
        assert_eq!(u.user, None);
        assert_eq!(u.password.as_ref().map(Secret::expose), Some("pw"));
        // As redis-cli reads it: a lone name is the password.
        let u = RedisUrl::parse("redis://pw@h").unwrap();
        assert_eq!(
            (u.user, u.password.map(|p| p.expose().to_string())),
            (None, Some("pw".into()))
        );
        // A raw '@' in the password: the last '@' ends the user info.
        let u = RedisUrl::parse("redis://u:a@b@h:9").unwrap();
        assert_eq!(u.password.as_ref().map(Secret::expose), Some("a@b"));
        assert_eq!(u.addr, tcp("h", 9));
        let u = RedisUrl::parse("redis://:@h").unwrap();
        assert_eq!(u.password, None);
    }

    #[test]
    fn unix_sockets() {
        let u = RedisUrl::parse("unix:///run/redis/redis.sock").unwrap();
        assert_eq!(u.addr, RedisAddr::Unix("/run/redis/redis.sock".into()));
        let u = RedisUrl::parse("unix://:pw@/tmp/r.sock?db=4").unwrap();
        assert_eq!(u.addr, RedisAddr::Unix("/tmp/r.sock".into()));
        assert_eq!(u.password.as_ref().map(Secret::expose), Some("pw"));
        assert_eq!(u.db, 4);
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, want) in [
            ("127.0.0.1:6379", "expected redis://"),
            ("http://h", "expected redis://"),
            ("rediss://h", "TLS"),
            ("redis://", "host is missing"),
            ("redis://:6379", "host is missing"),
            ("redis://h:0", "not a port"),
            ("redis://h:99999", "not a port"),
            ("redis://h:x", "not a port"),
            ("redis://h/x", "not a number"),
            ("redis://h?timeout=1", "unknown URL parameter"),
            ("redis://[::1", "closing"),
            ("redis://u:%zz@h", "hex"),
            ("unix://relative.sock", "absolute path"),
            ("unix://", "absolute path"),
        ] {
            let e = RedisUrl::parse(url).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
        }
    }

    #[test]
    fn display_and_debug_hide_the_password() {
        let u = RedisUrl::parse("redis://app:hunter2@h:1/2").unwrap();
        assert_eq!(u.to_string(), "redis://app:***@h:1/2");
        assert!(!format!("{u:?}").contains("hunter2"));
        let u = RedisUrl::parse("redis://:hunter2@[::1]:1").unwrap();
        assert_eq!(u.to_string(), "redis://:***@[::1]:1");
        let u = RedisUrl::parse("unix:///s?db=1").unwrap();
        assert_eq!(u.to_string(), "unix:///s?db=1");
    }
}
