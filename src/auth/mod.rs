//! Who a WebSocket client is (token → userId), who may push, and which
//! browser origins may open a WebSocket.
//!
//! Connection auth has three modes — the seed's userId = token (or any
//! library closure), a token file, HS256 JWT — behind one `grant` call;
//! push auth is loopback-only, a bearer key, or a library closure. Every
//! refusal carries the reason the client is told, so a user debugging a
//! 4401 or a 401 does not have to guess.

use crate::http::request::{Head, Version};
pub mod jwt;
pub mod token_file;

use crate::listen::Peer;
use jwt::JwtError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
    /// `--jwt-secret` and/or `--jwt-secret-file`: an HS256 JWT whose `sub`
    /// is the userId, signed with any of `secrets` (rotation).
    Jwt { secrets: Vec<Vec<u8>> },
}

/// Why a token was refused; `reason()` is what the client is told (the
/// 4401 close reason, or the error of a reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not in the token file, or the library hook (or the default) said no.
    Unknown,
    Malformed,
    /// A JWT whose header does not say HS256 (`none`, RS256, ...).
    Algorithm,
    BadSignature,
    Expired,
    NotYetValid,
    /// A correctly signed JWT without a usable `sub`.
    NoSubject,
}

impl Rejection {
    /// The text sent to the client.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Unknown => "unknown token",
            Rejection::Malformed | Rejection::Algorithm => "malformed token",
            Rejection::BadSignature => "bad token signature",
            Rejection::Expired => "token expired",
            Rejection::NotYetValid => "token not valid yet",
            Rejection::NoSubject => "token has no sub",
        }
    }
}

/// For the log, a little more than the client is told.
impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Algorithm => f.write_str("malformed token (alg is not HS256)"),
            other => f.write_str(other.reason()),
        }
    }
}

impl From<JwtError> for Rejection {
    fn from(e: JwtError) -> Rejection {
        match e {
            JwtError::Malformed => Rejection::Malformed,
            JwtError::Algorithm => Rejection::Algorithm,
            JwtError::Signature => Rejection::BadSignature,
            JwtError::Expired => Rejection::Expired,
            JwtError::NotYetValid => Rejection::NotYetValid,
            JwtError::MissingSubject => Rejection::NoSubject,
        }
    }
}

/// What an accepted token grants: a user, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user: String,
    /// When a connection it opened must end (Unix seconds): the JWT's
    /// `exp` — or, for a token accepted within the clock-skew leeway
    /// after it, the end of that leeway.
    pub expires: Option<i64>,
}

impl ConnAuth {
    /// What `token` grants at `now` (Unix seconds), or why it is rejected.
    pub fn grant(&mut self, token: &str, now: i64) -> Result<Grant, Rejection> {
        let (user, expires) = match self {
            ConnAuth::Hook(f) => (f(token).ok_or(Rejection::Unknown)?, None),
            ConnAuth::TokenFile { table, .. } => (table.get(token).cloned().ok_or(Rejection::Unknown)?, None),
            ConnAuth::Jwt { secrets } => {
                let claims = jwt::verify_any(token, secrets, now)?;
                let expires = claims.exp.map(|exp| {
                    if exp >= now {
                        exp
                    } else {
                        exp.saturating_add(jwt::LEEWAY_SECS)
                    }
                });
                (claims.sub, expires)
            }
        };
        if user.is_empty() {
            return Err(Rejection::Unknown);
        }
        Ok(Grant { user, expires })
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
    peer: Peer,
}

impl<'a> Request<'a> {
    pub(crate) fn new(head: &'a Head, peer: Peer) -> Request<'a> {
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

    /// The client's address; for a unix-socket client (always on this
    /// machine) `127.0.0.1:0`.
    pub fn peer(&self) -> SocketAddr {
        match self.peer {
            Peer::Tcp(a) => a,
            Peer::Unix => SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// Whether the client came through a unix socket.
    pub fn is_unix(&self) -> bool {
        self.peer == Peer::Unix
    }
}

/// Who may use `/push`, `/broadcast`, `/drop` and `/metrics`.
pub enum PushGuard {
    /// No key set: loopback peers only, and only requests no browser or
    /// proxy could have sent on someone else's behalf (see [`local_refusal`]).
    LoopbackOnly,
    /// `--push-key`: `Authorization: Bearer <key>` from anywhere. Holds
    /// the key's SHA-256, see [`PushGuard::key`].
    Key([u8; 32]),
    /// The library's closure.
    Hook(PushAuth),
}

/// The outcome of push auth, mapped to a status by the loop; the text is
/// the one-line body that says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// 401 with `WWW-Authenticate`: credentials missing or wrong.
    Unauthorized(&'static str),
    /// 403: no credentials can help (no key set, and the request is not
    /// a local one).
    Forbidden(&'static str),
}

/// 401 bodies. None of them says anything about the key itself.
pub const KEY_MISSING: &str = "push key missing: send Authorization: Bearer <key>";
pub const KEY_MALFORMED: &str = "push key malformed: Authorization must be \"Bearer <key>\"";
pub const KEY_WRONG: &str = "push key wrong: the Bearer key does not match the server's";
pub const HOOK_REFUSED: &str = "unauthorized: the server's push-auth hook refused this request";

/// The 403 body for a peer that is not on this host: it tells the operator
/// how to open the endpoints up.
pub const FORBIDDEN_BODY: &str =
    "push endpoints answer loopback clients only; set a push key (--push-key) to allow remote pushes";
/// 403 bodies for local requests that a browser or a proxy may have sent
/// on someone else's behalf.
pub const FROM_WEB_PAGE: &str =
    "push refused: requests from web pages (Origin) are not accepted without a push key";
pub const FROM_FETCH: &str =
    "push refused: requests from web pages (Sec-Fetch-Site) are not accepted without a push key";
pub const FORWARDED: &str =
    "push refused: forwarded requests (X-Forwarded-For, Forwarded) are not accepted without a push key";
pub const NOT_LOCAL_HOST: &str =
    "push refused: Host must be localhost or a loopback address without a push key";

/// A `Host` value naming this machine: `localhost`, 127.0.0.0/8 or `[::1]`,
/// with or without a port. Anything else — a DNS name that resolves to
/// 127.0.0.1 included — is what a DNS-rebinding page would send.
fn is_local_host(host: &str) -> bool {
    let (name, port, bracketed) = if let Some(rest) = host.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        (inner, port, true)
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port), false),
            None => (host, None, false),
        }
    };
    if port.is_some_and(|p| !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if bracketed {
        name.parse::<Ipv6Addr>()
            .is_ok_and(|ip| IpAddr::V6(ip).to_canonical().is_loopback())
    } else {
        name.eq_ignore_ascii_case("localhost") || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Loopback-only mode trusts the peer address, which a browser on this
/// machine (any page the user visits can POST to localhost), a DNS
/// rebinding page, or a local reverse proxy would all satisfy on someone
/// else's behalf. Each leaves a mark a local script does not: `Origin` or
/// `Sec-Fetch-Site`, a forwarding header, or a `Host` that is not this
/// machine's. The reason, if the request carries one.
pub fn local_refusal(head: &Head) -> Option<&'static str> {
    if head.header("Origin").is_some() {
        return Some(FROM_WEB_PAGE);
    }
    if head
        .values("Sec-Fetch-Site")
        .any(|v| !v.eq_ignore_ascii_case("none"))
    {
        return Some(FROM_FETCH);
    }
    if head.header("X-Forwarded-For").is_some() || head.header("Forwarded").is_some() {
        return Some(FORWARDED);
    }
    let mut hosts = head.values("Host").peekable();
    if hosts.peek().is_none() {
        // HTTP/1.0 has no Host; HTTP/1.1 requires it (RFC 9112 §3.2).
        return (head.version != Version::Http10).then_some(NOT_LOCAL_HOST);
    }
    if !hosts.all(is_local_host) {
        return Some(NOT_LOCAL_HOST);
    }
    None
}

/// How `Authorization` presents a bearer key.
pub(crate) enum Presented<'a> {
    Missing,
    Malformed,
    Bearer(&'a str),
}

/// The credentials of `Authorization: Bearer <token>` (scheme case-insensitive).
pub(crate) fn bearer(header: Option<&str>) -> Presented<'_> {
    let Some(value) = header else {
        return Presented::Missing;
    };
    match value.trim().split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() => {
            Presented::Bearer(rest.trim())
        }
        _ => Presented::Malformed,
    }
}

impl PushGuard {
    /// A key guard. Only the key's SHA-256 is kept and compared: digests
    /// have one length, so the comparison takes the same time whatever the
    /// length of the key a client guesses, and `ct_eq` makes it constant
    /// in how much of the digest matched.
    pub fn key(key: &[u8]) -> PushGuard {
        PushGuard::Key(Sha256::digest(key).into())
    }

    pub fn check(&mut self, req: &Request<'_>) -> Verdict {
        match self {
            PushGuard::LoopbackOnly if !req.peer.is_loopback() => Verdict::Forbidden(FORBIDDEN_BODY),
            PushGuard::LoopbackOnly => match local_refusal(req.head) {
                Some(why) => Verdict::Forbidden(why),
                None => Verdict::Allow,
            },
            PushGuard::Key(want) => match bearer(req.header("Authorization")) {
                Presented::Missing => Verdict::Unauthorized(KEY_MISSING),
                Presented::Malformed => Verdict::Unauthorized(KEY_MALFORMED),
                Presented::Bearer(given) => {
                    let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
                    if bool::from(given.ct_eq(want)) {
                        Verdict::Allow
                    } else {
                        Verdict::Unauthorized(KEY_WRONG)
                    }
                }
            },
            PushGuard::Hook(f) => match f(req) {
                true => Verdict::Allow,
                false => Verdict::Unauthorized(HOOK_REFUSED),
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::head_for_test as parse;

    fn head() -> Head {
        parse("POST /push HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer k\r\n\r\n")
    }

    fn head_with(header: &str) -> Head {
        parse(&format!(
            "POST /push HTTP/1.1\r\nHost: localhost\r\n{header}\r\n\r\n"
        ))
    }

    const LOCAL: &str = "127.0.0.1:1";

    fn check(guard: &mut PushGuard, head: &Head, peer: &str) -> Verdict {
        guard.check(&Request::new(head, Peer::Tcp(peer.parse().unwrap())))
    }

    #[test]
    fn loopback_rule() {
        let h = head();
        for (addr, want) in [
            ("127.0.0.1:1", Verdict::Allow),
            ("127.9.8.7:1", Verdict::Allow),
            ("[::1]:1", Verdict::Allow),
            ("[::ffff:127.0.0.1]:1", Verdict::Allow),
            ("10.0.0.1:1", Verdict::Forbidden(FORBIDDEN_BODY)),
            ("[2001:db8::1]:1", Verdict::Forbidden(FORBIDDEN_BODY)),
        ] {
            assert_eq!(check(&mut PushGuard::LoopbackOnly, &h, addr), want, "{addr}");
        }
    }

    #[test]
    fn local_requests_that_a_browser_or_proxy_sent_are_refused() {
        for (header, want) in [
            ("Origin: http://localhost:3000", FROM_WEB_PAGE),
            ("Origin: null", FROM_WEB_PAGE),
            ("origin: https://evil.example", FROM_WEB_PAGE),
            ("Sec-Fetch-Site: cross-site", FROM_FETCH),
            ("Sec-Fetch-Site: same-site", FROM_FETCH),
            ("Sec-Fetch-Site: same-origin", FROM_FETCH),
            ("X-Forwarded-For: 203.0.113.9", FORWARDED),
            ("X-Forwarded-For: 127.0.0.1", FORWARDED),
            ("Forwarded: for=203.0.113.9", FORWARDED),
        ] {
            let h = head_with(header);
            assert_eq!(
                check(&mut PushGuard::LoopbackOnly, &h, LOCAL),
                Verdict::Forbidden(want),
                "{header}"
            );
        }
        // What curl and scripts send is fine.
        for header in ["Sec-Fetch-Site: none", "User-Agent: curl/8.5.0", "Accept: */*"] {
            let h = head_with(header);
            assert_eq!(
                check(&mut PushGuard::LoopbackOnly, &h, LOCAL),
                Verdict::Allow,
                "{header}"
            );
        }
    }

    #[test]
    fn host_must_name_this_machine() {
        for host in [
            "localhost",
            "LocalHost:12345",
            "localhost:",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:12345",
        ] {
            let h = parse(&format!("POST /push HTTP/1.1\r\nHost: {host}\r\n\r\n"));
            assert_eq!(
                check(&mut PushGuard::LoopbackOnly, &h, LOCAL),
                Verdict::Allow,
                "{host}"
            );
        }
        for host in [
            "",
            "x",
            "evil.example",
            "localhost.evil.example",
            "evil.example:12345",
            "127.0.0.1.nip.io",
            "10.0.0.1:12345",
            "0.0.0.0:12345",
            "[::2]:1",
            "[::1",
            "[::1]x",
            "::1",
            "localhost:80:80",
            "localhost:http",
            "127.0.0.1:-1",
        ] {
            let h = parse(&format!("POST /push HTTP/1.1\r\nHost: {host}\r\n\r\n"));
            assert_eq!(
                check(&mut PushGuard::LoopbackOnly, &h, LOCAL),
                Verdict::Forbidden(NOT_LOCAL_HOST),
                "{host:?}"
            );
        }
        // Two Host headers: both must be local.
        let h = parse("POST /push HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n");
        assert_eq!(
            check(&mut PushGuard::LoopbackOnly, &h, LOCAL),
            Verdict::Forbidden(NOT_LOCAL_HOST)
        );
        // HTTP/1.1 requires Host; HTTP/1.0 has none.
        let h = parse("POST /push HTTP/1.1\r\n\r\n");
        assert_eq!(
            check(&mut PushGuard::LoopbackOnly, &h, LOCAL),
            Verdict::Forbidden(NOT_LOCAL_HOST)
        );
        let h = parse("POST /push HTTP/1.0\r\n\r\n");
        assert_eq!(check(&mut PushGuard::LoopbackOnly, &h, LOCAL), Verdict::Allow);
    }

    #[test]
    fn a_key_or_a_hook_replaces_the_local_rule() {
        let h = head_with(
            "Origin: https://evil.example\r\nHost: evil.example\r\nX-Forwarded-For: 1.2.3.4\r\nAuthorization: Bearer k",
        );
        let mut hook = PushGuard::Hook(Box::new(|_: &Request<'_>| true));
        assert_eq!(check(&mut hook, &h, "10.0.0.1:1"), Verdict::Allow);
        let mut key = PushGuard::key(b"k");
        assert_eq!(check(&mut key, &h, LOCAL), Verdict::Allow);
    }

    #[test]
    fn hook_replaces_the_rule() {
        let h = head();
        let mut hook = PushGuard::Hook(Box::new(|r: &Request<'_>| {
            r.header("authorization") == Some("Bearer k")
        }));
        assert_eq!(check(&mut hook, &h, "10.0.0.1:1"), Verdict::Allow);
        let mut deny = PushGuard::Hook(Box::new(|_: &Request<'_>| false));
        assert_eq!(check(&mut deny, &h, LOCAL), Verdict::Unauthorized(HOOK_REFUSED));
        let local = Request::new(&h, Peer::Tcp(LOCAL.parse().unwrap()));
        assert_eq!(local.method(), "POST");
        assert_eq!(local.path(), "/push");
    }

    #[test]
    fn default_token_auth() {
        let mut a = ConnAuth::Hook(token_is_user());
        assert_eq!(
            a.grant("aaa", jwt::unix_now()).map(|g| g.user),
            Ok("aaa".to_string())
        );
        assert_eq!(
            a.grant("", jwt::unix_now()).map(|g| g.user),
            Err(Rejection::Unknown)
        );
        let mut picky = ConnAuth::Hook(Box::new(|t: &str| t.strip_prefix("u-").map(str::to_string)));
        assert_eq!(
            picky.grant("x", jwt::unix_now()).map(|g| g.user),
            Err(Rejection::Unknown)
        );
        assert_eq!(
            picky
                .grant("x", jwt::unix_now())
                .map(|g| g.user)
                .unwrap_err()
                .reason(),
            "unknown token"
        );
    }

    #[test]
    fn bearer_key() {
        let mut g = PushGuard::key(b"s3cret");
        let remote = "10.0.0.1:1";
        for (auth, want) in [
            ("Bearer s3cret", Verdict::Allow),
            ("bearer  s3cret ", Verdict::Allow),
            ("Bearer s3cre", Verdict::Unauthorized(KEY_WRONG)),
            ("Bearer s3cret2", Verdict::Unauthorized(KEY_WRONG)),
            ("Bearer S3CRET", Verdict::Unauthorized(KEY_WRONG)),
            ("Bearer", Verdict::Unauthorized(KEY_MALFORMED)),
            ("Basic czNjcmV0", Verdict::Unauthorized(KEY_MALFORMED)),
            ("s3cret", Verdict::Unauthorized(KEY_MALFORMED)),
        ] {
            let h = head_with(&format!("Authorization: {auth}"));
            assert_eq!(check(&mut g, &h, remote), want, "{auth:?}");
        }
        let h = parse("POST /push HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(check(&mut g, &h, remote), Verdict::Unauthorized(KEY_MISSING));
        for body in [KEY_MISSING, KEY_MALFORMED, KEY_WRONG] {
            assert!(!body.contains("s3cret"));
        }
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
        let table = token_file::load(&path).unwrap();
        let mut a = ConnAuth::TokenFile {
            path: path.clone(),
            table,
        };
        assert_eq!(a.grant("t1", jwt::unix_now()).map(|g| g.user), Ok("alice".into()));
        assert_eq!(
            a.grant("t2", jwt::unix_now()).map(|g| g.user),
            Err(Rejection::Unknown)
        );
        std::fs::write(&path, "t2 bob\n").unwrap();
        a.reload();
        assert_eq!(
            a.grant("t1", jwt::unix_now()).map(|g| g.user),
            Err(Rejection::Unknown)
        );
        assert_eq!(a.grant("t2", jwt::unix_now()).map(|g| g.user), Ok("bob".into()));
        std::fs::write(&path, "broken line here\n").unwrap();
        a.reload();
        assert_eq!(
            a.grant("t2", jwt::unix_now()).map(|g| g.user),
            Ok("bob".into()),
            "a bad file keeps the old table"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn jwt_mode_says_why() {
        let now = jwt::unix_now();
        let token = jwt::sign("carol", b"k", now, 60);
        let mut a = ConnAuth::Jwt {
            secrets: vec![b"k".to_vec()],
        };
        assert_eq!(
            a.grant(&token, jwt::unix_now()).map(|g| g.user),
            Ok("carol".into())
        );
        for (token, want) in [
            ("carol".to_string(), "malformed token"),
            (jwt::sign("carol", b"other", now, 60), "bad token signature"),
            (jwt::sign("carol", b"k", now - 3600, 60), "token expired"),
        ] {
            assert_eq!(
                a.grant(&token, jwt::unix_now())
                    .map(|g| g.user)
                    .map_err(Rejection::reason),
                Err(want),
                "{token}"
            );
        }
        // A live connection ends at `exp`; a token taken within the
        // leeway after its `exp` lives until the leeway's end.
        let t = jwt::sign("carol", b"k", now, 60);
        assert_eq!(a.grant(&t, now).map(|g| g.expires), Ok(Some(now + 60)));
        assert_eq!(
            a.grant(&t, now + 70).map(|g| g.expires),
            Ok(Some(now + 60 + jwt::LEEWAY_SECS))
        );
        assert_eq!(Rejection::NotYetValid.reason(), "token not valid yet");
        assert_eq!(Rejection::Algorithm.reason(), "malformed token");
        assert!(Rejection::Algorithm.to_string().contains("HS256"));
    }
}
