//! Who a WebSocket client is (token → userId) and who may push.
//!
//! Both are hooks so a library user can plug their own; the defaults are
//! the seed's (userId = token) and the safe choice for push (loopback only).

use crate::http::request::Head;
use std::net::SocketAddr;

/// Turns a register token into a userId, or rejects it (`None`).
pub type TokenAuth = Box<dyn FnMut(&str) -> Option<String> + Send>;

/// Decides whether a request to a guarded endpoint may proceed.
pub type PushAuth = Box<dyn FnMut(&Request<'_>) -> bool + Send>;

/// The seed's default: the token is the userId.
pub fn token_is_user() -> TokenAuth {
    Box::new(|token: &str| Some(token.to_string()))
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

/// Applies the library hook if there is one, else the loopback rule.
pub fn check_push(hook: Option<&mut PushAuth>, req: &Request<'_>) -> Verdict {
    match hook {
        Some(f) => {
            if f(req) {
                Verdict::Allow
            } else {
                Verdict::Unauthorized
            }
        }
        None if is_loopback(&req.peer) => Verdict::Allow,
        None => Verdict::Forbidden,
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
            assert_eq!(check_push(None, &req), want, "{addr}");
        }
    }

    #[test]
    fn hook_replaces_the_rule() {
        let h = head();
        let mut hook: PushAuth = Box::new(|r: &Request<'_>| r.header("authorization") == Some("Bearer k"));
        let remote = Request::new(&h, "10.0.0.1:1".parse().unwrap());
        assert_eq!(check_push(Some(&mut hook), &remote), Verdict::Allow);
        let mut deny: PushAuth = Box::new(|_: &Request<'_>| false);
        let local = Request::new(&h, "127.0.0.1:1".parse().unwrap());
        assert_eq!(check_push(Some(&mut deny), &local), Verdict::Unauthorized);
        assert_eq!(local.method(), "POST");
        assert_eq!(local.path(), "/push");
    }

    #[test]
    fn default_token_auth() {
        let mut f = token_is_user();
        assert_eq!(f("aaa"), Some("aaa".to_string()));
    }
}
