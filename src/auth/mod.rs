//! Who a WebSocket client is (token → userId, permitted events, expiry),
//! who may push, and which browser origins may open a WebSocket.
//!
//! Connection auth has four modes — the seed's userId = token (or any
//! library closure), a library closure that returns a [`grant::Grant`], a
//! token file, HS256 JWT — behind one `grant` call; push auth is
//! loopback-only, a bearer key, or a library closure. Every refusal
//! carries the reason the client is told, so a user debugging a 4401 or a
//! 401 does not have to guess.

use crate::http::request::{Head, Version};
pub mod grant;
pub mod jwt;
pub mod patterns;
pub mod token_file;

use crate::listen::Peer;
pub use grant::GrantAuth;
use jwt::JwtError;
use patterns::{PatternError, Patterns};
use sha2::{Digest, Sha256};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Turns a register token into a userId, or rejects it (`None`).
pub type TokenAuth = Box<dyn FnMut(&str) -> Option<String> + Send>;

/// Decides whether a request to a guarded endpoint may proceed.
pub type PushAuth = Box<dyn FnMut(&Request<'_>) -> bool + Send>;

/// The seed's default: the token is the userId.
pub fn token_is_user() -> TokenAuth {
    Box::new(|token: &str| Some(token.to_string()))
}

/// Shorter HS256 secrets than this are warned about (RFC 7518 §3.2: a key
/// at least as long as the hash output).
pub const MIN_SECRET_BYTES: usize = 32;

/// How a register token becomes a userId.
pub enum ConnAuth {
    /// userId = token (the default), or the library's closure.
    Hook(TokenAuth),
    /// The library's closure that also says which events and until when.
    Grants(GrantAuth),
    /// `--auth-tokens FILE`: a fixed table, re-read on SIGHUP.
    TokenFile(TokenFile),
    /// `--jwt-secret` and/or `--jwt-secret-file`: an HS256 JWT whose `sub`
    /// is the userId, signed with any of the secrets (rotation).
    Jwt(JwtAuth),
}

/// The token-file mode's table, and the key its fingerprints are made with.
pub struct TokenFile {
    pub path: PathBuf,
    pub table: token_file::Table,
    keys: RandomState,
}

impl TokenFile {
    pub fn new(path: PathBuf, table: token_file::Table) -> TokenFile {
        TokenFile {
            path,
            table,
            keys: RandomState::new(),
        }
    }
}

/// The JWT mode's secrets: the flag's (never re-read) and the file's
/// (re-read on SIGHUP), and what `aud`/`iss` must say.
pub struct JwtAuth {
    flag: Option<Vec<u8>>,
    file: Option<PathBuf>,
    /// The flag's first, then the file's lines, in order.
    secrets: Vec<Vec<u8>>,
    expect: jwt::Expect,
    keys: RandomState,
}

/// The secrets of a `--jwt-secret-file` with their line numbers: one per
/// line, blank lines skipped, a trailing CR dropped (the rule of
/// `config::parse_secret_lines`, which `wspush token` reads with).
fn read_secret_file(path: &std::path::Path) -> Result<Vec<(usize, Vec<u8>)>, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("--jwt-secret-file {name}: {e}"))?;
    let secrets: Vec<(usize, Vec<u8>)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i, l.as_bytes().to_vec()))
        .collect();
    if secrets.is_empty() {
        return Err(format!("--jwt-secret-file {name} holds no secret"));
    }
    Ok(secrets)
}

/// The warning for a secret shorter than [`MIN_SECRET_BYTES`]; it names
/// where the secret is, never the secret.
fn short_secret(len: usize, where_: &str) -> Option<String> {
    (len < MIN_SECRET_BYTES).then(|| {
        format!(
            "the JWT secret {where_} is {len} bytes; use at least {MIN_SECRET_BYTES} random bytes \
             (a short HS256 secret can be guessed offline from any token)"
        )
    })
}

impl JwtAuth {
    /// JWT mode from `--jwt-secret` and/or `--jwt-secret-file` (read now:
    /// a bad file stops startup); also the warnings about short secrets.
    pub fn new(
        flag: Option<Vec<u8>>,
        file: Option<PathBuf>,
        expect: jwt::Expect,
    ) -> Result<(JwtAuth, Vec<String>), String> {
        let mut auth = JwtAuth {
            flag,
            file,
            secrets: Vec::new(),
            expect,
            keys: RandomState::new(),
        };
        let mut warnings: Vec<String> = auth
            .flag
            .as_ref()
            .and_then(|s| short_secret(s.len(), "of --jwt-secret"))
            .into_iter()
            .collect();
        let lines = match &auth.file {
            Some(path) => read_secret_file(path)?,
            None => Vec::new(),
        };
        warnings.extend(auth.take_lines(lines));
        Ok((auth, warnings))
    }

    /// Puts the file's secrets in (after the flag's); the warnings.
    fn take_lines(&mut self, lines: Vec<(usize, Vec<u8>)>) -> Vec<String> {
        let name = self
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let warnings = lines
            .iter()
            .filter_map(|(n, s)| short_secret(s.len(), &format!("on line {n} of {name}")))
            .collect();
        self.secrets = self.flag.iter().cloned().collect();
        self.secrets.extend(lines.into_iter().map(|(_, s)| s));
        warnings
    }

    pub fn file_secrets(&self) -> usize {
        self.secrets.len() - usize::from(self.flag.is_some())
    }

    fn print_of(&self, secret: &[u8]) -> NonZeroU64 {
        fingerprint(self.keys.hash_one(secret))
    }
}

/// A token's fingerprint: a keyed hash (the key is random per process),
/// never 0.
fn fingerprint(h: u64) -> NonZeroU64 {
    NonZeroU64::new(h).unwrap_or(NonZeroU64::MIN)
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
    /// `aud` does not name `--jwt-audience`.
    Audience,
    /// `iss` is not `--jwt-issuer`.
    Issuer,
    /// The `events` claim (or a hook's list) is unusable.
    Events(PatternError),
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
            Rejection::Audience => "wrong token audience",
            Rejection::Issuer => "wrong token issuer",
            Rejection::Events(e) => e.reason(),
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
            JwtError::Audience => Rejection::Audience,
            JwtError::Issuer => Rejection::Issuer,
        }
    }
}

impl From<PatternError> for Rejection {
    fn from(e: PatternError) -> Rejection {
        Rejection::Events(e)
    }
}

/// What an accepted token grants: a user, which events, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user: String,
    /// When a connection it opened must end (Unix seconds): the JWT's
    /// `exp`.
    pub expires: Option<i64>,
    /// The events it allows; `None`: every one (no claim, no column).
    pub events: Option<Arc<Patterns>>,
    /// What SIGHUP re-checks: the token's hash (token file) or its
    /// secret's (JWT). `None` for hooks: nothing to re-read.
    pub print: Option<NonZeroU64>,
}

impl Grant {
    fn to(user: String) -> Grant {
        Grant {
            user,
            expires: None,
            events: None,
            print: None,
        }
    }

    /// Whether a connection holding this grant may receive `event`.
    pub fn allows(&self, event: &str) -> bool {
        self.events.as_ref().is_none_or(|p| p.allows(event))
    }

    /// When the expiry (Unix seconds) falls on the monotonic clock, read
    /// at `now` (and `unix_now` on the wall clock).
    pub fn deadline(&self, unix_now: i64, now: Instant) -> Option<Instant> {
        let secs = self.expires?.saturating_sub(unix_now).max(0);
        Some(now + Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
    }
}

/// After a SIGHUP reload: what a live connection's fingerprint must still
/// match for its token to be good.
#[derive(Debug)]
pub enum Still {
    /// Token file: fingerprint → user and permitted events of every token
    /// listed now.
    Tokens(HashMap<NonZeroU64, (String, Option<Arc<Patterns>>)>),
    /// JWT: the fingerprints of every secret that verifies now.
    Secrets(HashSet<NonZeroU64>),
}

impl Still {
    /// Whether a connection of `user` whose token has fingerprint `print`
    /// keeps its token.
    pub fn keeps(&self, print: NonZeroU64, user: &str) -> bool {
        match self {
            Still::Tokens(t) => t.get(&print).is_some_and(|(u, _)| u == user),
            Still::Secrets(s) => s.contains(&print),
        }
    }

    /// The events a kept token permits now, when the reload can change
    /// them (a token file's third column; a JWT carries its own).
    pub fn permits(&self, print: NonZeroU64) -> Option<&Arc<Patterns>> {
        match self {
            Still::Tokens(t) => t.get(&print).and_then(|(_, events)| events.as_ref()),
            Still::Secrets(_) => None,
        }
    }
}

impl ConnAuth {
    /// What `token` grants at `now` (Unix seconds), or why it is rejected.
    pub fn grant(&mut self, token: &str, now: i64) -> Result<Grant, Rejection> {
        let grant = match self {
            ConnAuth::Hook(f) => Grant::to(f(token).ok_or(Rejection::Unknown)?),
            ConnAuth::Grants(f) => {
                let g = f(token).ok_or(Rejection::Unknown)?;
                if g.expires.is_some_and(|exp| exp <= now) {
                    return Err(Rejection::Expired);
                }
                let events = match &g.events {
                    Some(list) => Some(Arc::new(Patterns::new(list)?)),
                    None => None,
                };
                Grant {
                    user: g.user,
                    expires: g.expires,
                    events,
                    print: None,
                }
            }
            ConnAuth::TokenFile(t) => {
                let line = t.table.get(token).ok_or(Rejection::Unknown)?;
                Grant {
                    user: line.user.clone(),
                    expires: None,
                    events: line.events.clone(),
                    print: Some(fingerprint(t.keys.hash_one(token))),
                }
            }
            ConnAuth::Jwt(j) => {
                let claims = jwt::verify_with(token, &j.secrets, now, &j.expect)?;
                let expires = claims.exp;
                let events = match &claims.events {
                    Some(claim) => Some(Arc::new(Patterns::from_claim(claim)?)),
                    None => None,
                };
                let print = j.secrets.get(claims.secret).map(|s| j.print_of(s));
                Grant {
                    user: claims.sub,
                    expires,
                    events,
                    print,
                }
            }
        };
        if grant.user.is_empty() {
            return Err(Rejection::Unknown);
        }
        Ok(grant)
    }

    /// SIGHUP: re-reads the token file, or the JWT secret file, whole. A
    /// file that cannot be read or has a bad line keeps the old state
    /// whole, so a bad edit never locks everyone out, and the log says
    /// where. After a reload, what live connections must still match.
    pub fn reload(&mut self) -> Option<Still> {
        match self {
            ConnAuth::TokenFile(t) => match token_file::load(&t.path) {
                Ok(table) => {
                    info!("reloaded {} tokens from {}", table.len(), t.path.display());
                    t.table = table;
                    let still = t
                        .table
                        .iter()
                        .map(|(token, line)| {
                            let print = fingerprint(t.keys.hash_one(token));
                            (print, (line.user.clone(), line.events.clone()))
                        })
                        .collect();
                    Some(Still::Tokens(still))
                }
                Err(e) => {
                    warn!("keeping the old token table: {e}");
                    None
                }
            },
            ConnAuth::Jwt(j) => {
                let path = j.file.clone()?;
                match read_secret_file(&path) {
                    Ok(lines) => {
                        for w in j.take_lines(lines) {
                            warn!("{w}");
                        }
                        info!(
                            "reloaded {} JWT secrets from {}",
                            j.file_secrets(),
                            path.display()
                        );
                        let still = j.secrets.iter().map(|s| j.print_of(s)).collect();
                        Some(Still::Secrets(still))
                    }
                    Err(e) => {
                        warn!("keeping the old JWT secrets: {e}");
                        None
                    }
                }
            }
            ConnAuth::Hook(_) | ConnAuth::Grants(_) => None,
        }
    }
}

/// A request as a push-auth hook sees it.
pub struct Request<'a> {
    head: &'a Head,
    peer: Peer,
    /// `peer` is the client a trusted proxy forwarded for (SPEC §9
    /// `--trusted-proxies`), not the socket's peer.
    forwarded: bool,
}

impl<'a> Request<'a> {
    pub(crate) fn new(head: &'a Head, peer: Peer) -> Request<'a> {
        Request {
            head,
            peer,
            forwarded: false,
        }
    }

    /// A request a trusted proxy forwarded for `client`.
    pub(crate) fn forwarded(head: &'a Head, client: Peer) -> Request<'a> {
        Request {
            head,
            peer: client,
            forwarded: true,
        }
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

    /// The client's address: the socket's peer, or — from a peer in
    /// `--trusted-proxies` — the address it forwarded the request for; for
    /// a unix-socket client (always on this machine) `127.0.0.1:0`.
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
/// machine's. The reason, if the request carries one. `forwarded`: a
/// trusted proxy vouched for the forwarding headers (and the client they
/// name was found local), so they are no mark of a stranger.
pub fn local_refusal(head: &Head, forwarded: bool) -> Option<&'static str> {
    if head.header("Origin").is_some() {
        return Some(FROM_WEB_PAGE);
    }
    if head
        .values("Sec-Fetch-Site")
        .any(|v| !v.eq_ignore_ascii_case("none"))
    {
        return Some(FROM_FETCH);
    }
    if !forwarded && (head.header("X-Forwarded-For").is_some() || head.header("Forwarded").is_some()) {
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
            PushGuard::LoopbackOnly => match local_refusal(req.head, req.forwarded) {
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

    /// SPEC §9: a request a trusted proxy forwarded is judged by the
    /// client it names; its forwarding headers are no mark of a stranger
    /// then, but the other marks still are.
    #[test]
    fn a_forwarded_request_is_judged_by_its_client() {
        let h = head_with("X-Forwarded-For: 127.0.0.1");
        let mut g = PushGuard::LoopbackOnly;
        let local = Peer::Tcp("127.0.0.1:0".parse().unwrap());
        assert_eq!(g.check(&Request::forwarded(&h, local)), Verdict::Allow);
        assert_eq!(
            check(&mut g, &h, LOCAL),
            Verdict::Forbidden(FORWARDED),
            "not vouched for"
        );
        let far = Peer::Tcp("203.0.113.9:0".parse().unwrap());
        assert_eq!(
            g.check(&Request::forwarded(&h, far)),
            Verdict::Forbidden(FORBIDDEN_BODY)
        );
        let h = head_with("X-Forwarded-For: 127.0.0.1\r\nOrigin: https://evil.example");
        assert_eq!(
            g.check(&Request::forwarded(&h, local)),
            Verdict::Forbidden(FROM_WEB_PAGE)
        );
        assert_eq!(
            Request::forwarded(&h, local).peer(),
            "127.0.0.1:0".parse::<SocketAddr>().unwrap()
        );
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

    fn temp(tag: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("wspush-auth-unit-{tag}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn users(a: &mut ConnAuth, token: &str) -> Result<String, Rejection> {
        a.grant(token, jwt::unix_now()).map(|g| g.user)
    }

    #[test]
    fn token_file_mode_and_reload() {
        let path = temp("tokens", "t1 alice\n");
        let table = token_file::load(&path).unwrap();
        let mut a = ConnAuth::TokenFile(TokenFile::new(path.clone(), table));
        assert_eq!(users(&mut a, "t1"), Ok("alice".into()));
        assert_eq!(users(&mut a, "t2"), Err(Rejection::Unknown));
        let t1 = a.grant("t1", 0).unwrap().print.expect("a fingerprint");
        std::fs::write(&path, "t2 bob\n").unwrap();
        let still = a.reload().expect("reloaded");
        assert!(!still.keeps(t1, "alice"), "t1 is gone");
        assert_eq!(users(&mut a, "t1"), Err(Rejection::Unknown));
        assert_eq!(users(&mut a, "t2"), Ok("bob".into()));
        let t2 = a.grant("t2", 0).unwrap().print.unwrap();
        assert!(still.keeps(t2, "bob"));
        assert!(!still.keeps(t2, "alice"), "a remapped token is not kept");
        std::fs::write(&path, "broken line here now\n").unwrap();
        assert!(a.reload().is_none());
        assert_eq!(
            users(&mut a, "t2"),
            Ok("bob".into()),
            "a bad file keeps the old table"
        );
        std::fs::remove_file(&path).unwrap();
    }

    /// The same token has the same fingerprint across reloads; another
    /// token has another.
    #[test]
    fn token_fingerprints_are_stable_and_distinct() {
        let path = temp("prints", "t1 alice chat:*\nt2 alice\n");
        let table = token_file::load(&path).unwrap();
        let mut a = ConnAuth::TokenFile(TokenFile::new(path.clone(), table));
        let g1 = a.grant("t1", 0).unwrap();
        let g2 = a.grant("t2", 0).unwrap();
        assert_ne!(g1.print, g2.print);
        assert!(g1.allows("chat:x") && !g1.allows("admin"));
        assert!(g2.allows("admin"), "no column: every event");
        let still = a.reload().unwrap();
        assert!(still.keeps(g1.print.unwrap(), "alice"));
        assert_eq!(a.grant("t1", 0).unwrap().print, g1.print);
        std::fs::remove_file(&path).unwrap();
    }

    fn jwt_auth(secrets: &[&str], expect: jwt::Expect) -> ConnAuth {
        let (flag, rest) = secrets.split_first().unwrap();
        let file = (!rest.is_empty()).then(|| temp("jwt-secrets", &rest.join("\n")));
        let (j, _) = JwtAuth::new(Some(flag.as_bytes().to_vec()), file, expect).unwrap();
        ConnAuth::Jwt(j)
    }

    #[test]
    fn jwt_mode_says_why() {
        let now = jwt::unix_now();
        let token = jwt::sign("carol", b"k", now, 60);
        let mut a = jwt_auth(&["k"], jwt::Expect::default());
        assert_eq!(users(&mut a, &token), Ok("carol".into()));
        for (token, want) in [
            ("carol".to_string(), "malformed token"),
            (jwt::sign("carol", b"other", now, 60), "bad token signature"),
            (jwt::sign("carol", b"k", now - 3600, 60), "token expired"),
        ] {
            assert_eq!(
                users(&mut a, &token).map_err(Rejection::reason),
                Err(want),
                "{token}"
            );
        }
        // A live connection ends at `exp`; from that second on the token
        // is refused outright (no skew allowance on `exp`).
        let t = jwt::sign("carol", b"k", now, 60);
        assert_eq!(a.grant(&t, now).map(|g| g.expires), Ok(Some(now + 60)));
        assert_eq!(a.grant(&t, now + 60).map(|g| g.expires), Err(Rejection::Expired));
        assert_eq!(Rejection::NotYetValid.reason(), "token not valid yet");
        assert_eq!(Rejection::Algorithm.reason(), "malformed token");
        assert!(Rejection::Algorithm.to_string().contains("HS256"));
    }

    fn with_claims(extra: serde_json::Value, secret: &[u8]) -> String {
        let serde_json::Value::Object(m) = extra else {
            panic!()
        };
        jwt::sign_with("dana", secret, jwt::unix_now(), 60, m)
    }

    #[test]
    fn jwt_events_claim() {
        let mut a = jwt_auth(&["k"], jwt::Expect::default());
        let g = a
            .grant(
                &with_claims(serde_json::json!({"events": ["chat:*", "news"]}), b"k"),
                jwt::unix_now(),
            )
            .unwrap();
        assert!(g.allows("chat:1") && g.allows("news") && !g.allows("admin"));
        let none = a
            .grant(
                &with_claims(serde_json::json!({"events": []}), b"k"),
                jwt::unix_now(),
            )
            .unwrap();
        assert!(!none.allows("news"));
        let all = a
            .grant(&with_claims(serde_json::json!({}), b"k"), jwt::unix_now())
            .unwrap();
        assert_eq!(all.events, None, "no claim: nothing held");
        assert!(all.allows("anything"));
        for (claim, why) in [
            (
                serde_json::json!("chat:*"),
                "events claim is not an array of strings",
            ),
            (
                serde_json::json!({"chat": true}),
                "events claim is not an array of strings",
            ),
            (
                serde_json::json!(["chat", 7]),
                "events claim is not an array of strings",
            ),
            (serde_json::json!(null), "events claim is not an array of strings"),
            (
                serde_json::Value::Array((0..257).map(|i| i.to_string().into()).collect()),
                "too many event patterns",
            ),
            (serde_json::json!(["x".repeat(300)]), "event pattern too long"),
        ] {
            let t = with_claims(serde_json::json!({ "events": claim }), b"k");
            assert_eq!(users(&mut a, &t).map_err(Rejection::reason), Err(why), "{claim}");
        }
    }

    #[test]
    fn jwt_audience_and_issuer_when_set() {
        let expect = jwt::Expect {
            audience: Some("push".into()),
            issuer: Some("https://app.example".into()),
        };
        let mut a = jwt_auth(&["k"], expect);
        let good = serde_json::json!({"aud": "push", "iss": "https://app.example"});
        assert_eq!(users(&mut a, &with_claims(good, b"k")), Ok("dana".into()));
        let list = serde_json::json!({"aud": ["web", "push"], "iss": "https://app.example"});
        assert_eq!(users(&mut a, &with_claims(list, b"k")), Ok("dana".into()));
        for (claims, why) in [
            (
                serde_json::json!({"iss": "https://app.example"}),
                "wrong token audience",
            ),
            (
                serde_json::json!({"aud": "web", "iss": "https://app.example"}),
                "wrong token audience",
            ),
            (
                serde_json::json!({"aud": 5, "iss": "https://app.example"}),
                "wrong token audience",
            ),
            (serde_json::json!({"aud": "push"}), "wrong token issuer"),
            (
                serde_json::json!({"aud": "push", "iss": "https://evil.example"}),
                "wrong token issuer",
            ),
        ] {
            assert_eq!(
                users(&mut a, &with_claims(claims.clone(), b"k")).map_err(Rejection::reason),
                Err(why),
                "{claims}"
            );
        }
        // Unset: not looked at.
        let mut open = jwt_auth(&["k"], jwt::Expect::default());
        let any = serde_json::json!({"aud": 5, "iss": ["x"]});
        assert_eq!(users(&mut open, &with_claims(any, b"k")), Ok("dana".into()));
    }

    /// SIGHUP re-reads the secret file: a token whose secret was removed
    /// is no longer kept; the flag's secret always is.
    #[test]
    fn secret_rotation_and_revocation() {
        let path = temp("rotation", "new-secret-of-at-least-32-bytes!\nold-secret\n");
        let (j, warnings) =
            JwtAuth::new(Some(b"flag".to_vec()), Some(path.clone()), jwt::Expect::default()).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("--jwt-secret") && warnings[0].contains("4 bytes"));
        assert!(warnings[1].contains("line 2 of") && !warnings[1].contains("old-secret"));
        let mut a = ConnAuth::Jwt(j);
        let now = jwt::unix_now();
        let prints: Vec<NonZeroU64> = ["flag", "new-secret-of-at-least-32-bytes!", "old-secret"]
            .iter()
            .map(|k| {
                a.grant(&jwt::sign("u", k.as_bytes(), now, 60), now)
                    .unwrap()
                    .print
                    .unwrap()
            })
            .collect();
        assert_ne!(prints[1], prints[2]);
        std::fs::write(&path, "new-secret-of-at-least-32-bytes!\n").unwrap();
        let still = a.reload().expect("reloaded");
        assert!(still.keeps(prints[0], "u") && still.keeps(prints[1], "u"));
        assert!(!still.keeps(prints[2], "u"));
        assert_eq!(
            users(&mut a, &jwt::sign("u", b"old-secret", now, 60)),
            Err(Rejection::BadSignature)
        );
        // A file with no secret keeps the old ones.
        std::fs::write(&path, "\n\n").unwrap();
        assert!(a.reload().is_none());
        assert_eq!(
            users(
                &mut a,
                &jwt::sign("u", b"new-secret-of-at-least-32-bytes!", now, 60)
            ),
            Ok("u".into())
        );
        std::fs::remove_file(&path).unwrap();
        // Without a file there is nothing to reload.
        assert!(jwt_auth(&["k"], jwt::Expect::default()).reload().is_none());
    }

    #[test]
    fn grant_hooks_say_which_events_and_until_when() {
        let now = jwt::unix_now();
        let mut a = ConnAuth::Grants(Box::new(move |t: &str| match t {
            "chat" => Some(grant::Grant::new("ann").events(["chat:*"]).expires_at(now + 60)),
            "all" => Some(grant::Grant::new("bea")),
            "stale" => Some(grant::Grant::new("cy").expires_at(now - 1)),
            "many" => Some(grant::Grant::new("di").events((0..10_000).map(|i| i.to_string()))),
            "" => Some(grant::Grant::new("")),
            _ => None,
        }));
        let g = a.grant("chat", now).unwrap();
        assert_eq!(
            (g.user.as_str(), g.expires, g.print),
            ("ann", Some(now + 60), None)
        );
        assert!(g.allows("chat:1") && !g.allows("news"));
        let g = a.grant("all", now).unwrap();
        assert!(g.allows("news") && g.expires.is_none());
        assert_eq!(a.grant("stale", now).map(|g| g.user), Err(Rejection::Expired));
        assert_eq!(
            a.grant("many", now).map(|g| g.user).map_err(Rejection::reason),
            Err("too many event patterns")
        );
        assert_eq!(a.grant("nope", now).map(|g| g.user), Err(Rejection::Unknown));
        assert_eq!(a.grant("", now).map(|g| g.user), Err(Rejection::Unknown));
        assert!(a.reload().is_none());
    }

    /// Expiry on the monotonic clock, stepped: `exp` minus the wall clock.
    #[test]
    fn a_grants_deadline() {
        let t0 = Instant::now();
        let mut g = Grant::to("u".into());
        assert_eq!(g.deadline(1000, t0), None);
        g.expires = Some(1003);
        assert_eq!(g.deadline(1000, t0), Some(t0 + Duration::from_secs(3)));
        assert_eq!(g.deadline(1005, t0), Some(t0), "already past: now");
        g.expires = Some(i64::MIN);
        assert_eq!(g.deadline(i64::MAX, t0), Some(t0));
    }
}
