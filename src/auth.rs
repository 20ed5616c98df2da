//! Who a WebSocket client is (token → userId), who may push, and which
//! browser origins may open a WebSocket.
//!
//! Connection auth has three modes — the seed's userId = token (or any
//! library closure), a token file, HS256 JWT — behind one `user_for` call;
//! push auth is loopback-only, a bearer key, or a library closure.

use crate::http::request::Head;
use crate::{jwt, token_file};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use subtle::ConstantTimeEq;

/// Turns a register token into a userId, or rejects it (`None`).
pub type TokenAuth = Box<dyn FnMut(&str) -> Option<String> + Send>;

/// Decides whether a request to a guarded endpoint may proceed.
pub type PushAuth = Box<dyn FnMut(&Request<'_>) -> bool + Send>;

/// The seed's default: the token is the userId.
pub fn token_is_user() -> TokenAuth {
    Box::new(|token: &str| Some(token.to_string()))
}

/// How a register token becomes a userId.
pub enum ConnAuth {
    /// userId = token (the default), or the library's closure.
    Hook(TokenAuth),
    /// `--auth-tokens FILE`: a fixed table, re-read on SIGHUP.
    TokenFile {
        path: PathBuf,
        table: HashMap<String, String>,
    },
    /// `--jwt-secret`: an HS256 JWT whose `sub` is the userId.
    Jwt { secret: Vec<u8> },
}

impl ConnAuth {
    /// The userId for `token`, or `None` when it is rejected.
    pub fn user_for(&mut self, token: &str) -> Option<String> {
        let user = match self {
            ConnAuth::Hook(f) => f(token),
            ConnAuth::TokenFile { table, .. } => table.get(token).cloned(),
            ConnAuth::Jwt { secret } => match jwt::verify(token, secret, jwt::unix_now()) {
                Ok(sub) => Some(sub),
                Err(e) => {
                    debug!("JWT rejected: {e}");
                    None
                }
            },
        };
        user.filter(|u| !u.is_empty())
    }

    /// SIGHUP: re-reads the token file. A file that cannot be read or
    /// parsed keeps the old table, so a bad edit never locks everyone out.
    pub fn reload(&mut self) {
        if let ConnAuth::TokenFile { path, table } = self {
            match token_file::load(path) {
                Ok(t) => {
                    info!("reloaded {} tokens from {}", t.len(), path.display());
                    *table = t;
                }
                Err(e) => warn!("keeping the old token table: {e}"),
            }
        }
    }
}

/// A request as a push-auth hook sees it.
pub struct Request<'a> {
    head: &'a Head,
    peer: SocketAddr,
}

impl<'a> Request<'a> {
    pub(crate) fn new(head: &'a Head, peer: SocketAddr) -> Request<'a> {
        Request { head, peer }
    }

    pub fn method(&self) -> &str {
        &self.head.method
    }

    pub fn path(&self) -> &str {
        &self.head.path
    }

    /// First header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// Who may use `/push`, `/broadcast`, `/drop` and `/metrics`.
pub enum PushGuard {
    /// No key set: loopback peers only.
    LoopbackOnly,
    /// `--push-key`: `Authorization: Bearer <key>` from anywhere.
    Key(Vec<u8>),
    /// The library's closure.
    Hook(PushAuth),
}

/// The outcome of push auth, mapped to a status by the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// 401 with `WWW-Authenticate`: credentials missing or wrong.
    Unauthorized,
    /// 403: no credentials can help (no key set, peer not on loopback).
    Forbidden,
}

/// True for 127.0.0.0/8 and ::1, also when written as an IPv4-mapped IPv6 address.
pub fn is_loopback(peer: &SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// The credentials of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, rest) = header?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

impl PushGuard {
    pub fn check(&mut self, req: &Request<'_>) -> Verdict {
        let allowed = match self {
            PushGuard::LoopbackOnly if is_loopback(&req.peer) => true,
            PushGuard::LoopbackOnly => return Verdict::Forbidden,
            // Constant time, so response timing does not reveal how much
            // of a guessed key was right.
            PushGuard::Key(key) => bearer(req.header("Authorization"))
                .is_some_and(|given| bool::from(given.as_bytes().ct_eq(key))),
            PushGuard::Hook(f) => f(req),
        };
        if allowed {
            Verdict::Allow
        } else {
            Verdict::Unauthorized
        }
    }
}

/// Whether an upgrade from `origin` may proceed. Requests without an
/// `Origin` (non-browser clients) always may: the check exists to stop
/// other web sites from riding a logged-in user's cookies.
pub fn origin_allowed(allowed: Option<&[String]>, origin: Option<&str>) -> bool {
    match (allowed, origin) {
        (None, _) | (_, None) => true,
        (Some(list), Some(o)) => {
            let o = o.trim().trim_end_matches('/');
            list.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(o))
        }
    }
}

/// The 403 body: it tells the operator how to open the endpoints up.
pub const FORBIDDEN_BODY: &str =
    "push endpoints answer loopback clients only; set a push key (--push-key) to allow remote pushes";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_head, Limits, Parsed};

    fn head() -> Head {
        let limits = Limits {
            max_head_bytes: 1024,
            max_headers: 8,
            max_body_bytes: 8,
        };
        match parse_head(b"POST /push HTTP/1.1\r\nAuthorization: Bearer k\r\n\r\n", &limits) {
            Ok(Parsed::Done(h, _)) => h,
            _ => panic!("did not parse"),
        }
    }

    #[test]
    fn loopback_rule() {
        let h = head();
        for (addr, want) in [
            ("127.0.0.1:1", Verdict::Allow),
            ("127.9.8.7:1", Verdict::Allow),
            ("[::1]:1", Verdict::Allow),
            ("[::ffff:127.0.0.1]:1", Verdict::Allow),
            ("10.0.0.1:1", Verdict::Forbidden),
            ("[2001:db8::1]:1", Verdict::Forbidden),
        ] {
            let req = Request::new(&h, addr.parse().unwrap());
            assert_eq!(PushGuard::LoopbackOnly.check(&req), want, "{addr}");
        }
    }

    #[test]
    fn hook_replaces_the_rule() {
        let h = head();
        let mut hook = PushGuard::Hook(Box::new(|r: &Request<'_>| {
            r.header("authorization") == Some("Bearer k")
        }));
        let remote = Request::new(&h, "10.0.0.1:1".parse().unwrap());
        assert_eq!(hook.check(&remote), Verdict::Allow);
        let mut deny = PushGuard::Hook(Box::new(|_: &Request<'_>| false));
        let local = Request::new(&h, "127.0.0.1:1".parse().unwrap());
        assert_eq!(deny.check(&local), Verdict::Unauthorized);
        assert_eq!(local.method(), "POST");
        assert_eq!(local.path(), "/push");
    }

    #[test]
    fn default_token_auth() {
        let mut a = ConnAuth::Hook(token_is_user());
        assert_eq!(a.user_for("aaa"), Some("aaa".to_string()));
        assert_eq!(a.user_for(""), None);
    }

    fn head_with(auth: &str) -> Head {
        let limits = Limits {
            max_head_bytes: 1024,
            max_headers: 8,
            max_body_bytes: 8,
        };
        let req = format!("POST /push HTTP/1.1\r\nAuthorization: {auth}\r\n\r\n");
        match parse_head(req.as_bytes(), &limits) {
            Ok(Parsed::Done(h, _)) => h,
            _ => panic!("did not parse"),
        }
    }

    #[test]
    fn bearer_key() {
        let mut g = PushGuard::Key(b"s3cret".to_vec());
        let remote = "10.0.0.1:1".parse().unwrap();
        for (auth, want) in [
            ("Bearer s3cret", Verdict::Allow),
            ("bearer  s3cret ", Verdict::Allow),
            ("Bearer s3cre", Verdict::Unauthorized),
            ("Bearer s3cret2", Verdict::Unauthorized),
            ("Bearer", Verdict::Unauthorized),
            ("Basic czNjcmV0", Verdict::Unauthorized),
            ("s3cret", Verdict::Unauthorized),
        ] {
            let h = head_with(auth);
            assert_eq!(g.check(&Request::new(&h, remote)), want, "{auth:?}");
        }
        let h = head();
        assert_eq!(g.check(&Request::new(&h, remote)), Verdict::Unauthorized);
    }

    #[test]
    fn origins() {
        let list = vec![
            "https://a.example".to_string(),
            "http://localhost:8080".to_string(),
        ];
        assert!(origin_allowed(None, Some("https://evil.example")));
        assert!(origin_allowed(Some(&list), None));
        assert!(origin_allowed(Some(&list), Some("https://a.example")));
        assert!(origin_allowed(Some(&list), Some("HTTPS://A.example/")));
        assert!(origin_allowed(Some(&list), Some("http://localhost:8080")));
        assert!(!origin_allowed(Some(&list), Some("https://a.example.evil")));
        assert!(!origin_allowed(Some(&list), Some("http://localhost:8081")));
        assert!(!origin_allowed(Some(&list), Some("null")));
        assert!(origin_allowed(Some(&["*".to_string()]), Some("https://x")));
    }

    #[test]
    fn token_file_mode_and_reload() {
        let path = std::env::temp_dir().join(format!("wspush-auth-unit-{}", std::process::id()));
        std::fs::write(&path, "t1 alice\n").unwrap();
        let table = crate::token_file::load(&path).unwrap();
        let mut a = ConnAuth::TokenFile {
            path: path.clone(),
            table,
        };
        assert_eq!(a.user_for("t1"), Some("alice".into()));
        assert_eq!(a.user_for("t2"), None);
        std::fs::write(&path, "t2 bob\n").unwrap();
        a.reload();
        assert_eq!(a.user_for("t1"), None);
        assert_eq!(a.user_for("t2"), Some("bob".into()));
        std::fs::write(&path, "broken line here\n").unwrap();
        a.reload();
        assert_eq!(
            a.user_for("t2"),
            Some("bob".into()),
            "a bad file keeps the old table"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn jwt_mode() {
        let secret = b"k".to_vec();
        let token = crate::jwt::sign("carol", &secret, crate::jwt::unix_now(), 60);
        let mut a = ConnAuth::Jwt { secret };
        assert_eq!(a.user_for(&token), Some("carol".into()));
        assert_eq!(a.user_for("carol"), None);
    }
}
