//! Where a request goes, decided from its head alone: a pure function,
//! called once per request (before any `100 Continue`), so everything
//! that refuses a request before its body is read is decided in one place.

use super::request::Head;
use crate::listen::Role;
use crate::push::Endpoint;

/// Paths served besides the configurable ones.
pub const BROADCAST_PATH: &str = "/broadcast";
pub const DROP_PATH: &str = "/drop";
pub const HEALTH_PATH: &str = "/healthz";
pub const METRICS_PATH: &str = "/metrics";
pub const PRESENCE_PATH: &str = "/presence";
pub const LIFECYCLE_PATH: &str = "/lifecycle";
/// The demo page's helper (see `static_files::whoami`).
pub const WHOAMI_PATH: &str = "/demo/whoami";

/// The paths a server answers, as configured.
#[derive(Debug, Clone)]
pub struct Paths {
    pub ws: String,
    pub sse: String,
    pub push: String,
    /// The demo page, its helper and the browser client are served.
    pub demo: bool,
    /// Push listeners exist (`--push-listen`): push endpoints answer
    /// there only, and 404 on the others.
    pub push_listeners: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The WebSocket path: an upgrade (checked by `http::upgrade`).
    Upgrade,
    /// The SSE path: a stream (checked by `requests::open_stream`).
    Sse,
    /// An embedded file, by its index in `static_files::FILES`.
    Static(usize),
    Whoami,
    Push(Endpoint),
    Health,
    Metrics,
    /// `GET /presence?userId=U|event=E` (SPEC §10).
    Presence,
    /// The back ends' stream of online/offline (SPEC §10).
    Lifecycle,
}

impl Route {
    /// Whether push auth guards it (SPEC §3: pushes and metrics; §10:
    /// presence and lifecycle).
    pub fn guarded(self) -> bool {
        matches!(
            self,
            Route::Push(_) | Route::Metrics | Route::Presence | Route::Lifecycle
        )
    }
}

/// Why a request is refused on its head alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// 404.
    NotFound,
    /// 405, with the methods to say in `Allow`.
    Method(&'static str),
}

/// The route of a request, or why there is none. Method rules: pushes
/// are `POST`; streams, files, health and metrics `GET` (and `HEAD` where
/// a body could be skipped). The upgrade's own method check is the
/// handshake's, in gorilla's order, so it is not made here.
pub fn route(head: &Head, paths: &Paths, role: Role) -> Result<Route, Refused> {
    let path = head.path.as_str();
    let route = if path == paths.ws {
        return Ok(Route::Upgrade);
    } else if path == paths.push {
        Route::Push(Endpoint::Push)
    } else if path == BROADCAST_PATH {
        Route::Push(Endpoint::Broadcast)
    } else if path == DROP_PATH {
        Route::Push(Endpoint::Drop)
    } else if path == paths.sse {
        Route::Sse
    } else if path == HEALTH_PATH {
        Route::Health
    } else if path == METRICS_PATH {
        Route::Metrics
    } else if path == PRESENCE_PATH {
        Route::Presence
    } else if path == LIFECYCLE_PATH {
        Route::Lifecycle
    } else if let Some(i) = crate::static_files::index_of(path).filter(|_| paths.demo) {
        Route::Static(i)
    } else if paths.demo && path == WHOAMI_PATH {
        Route::Whoami
    } else {
        return Err(Refused::NotFound);
    };
    if route.guarded() && paths.push_listeners && role != Role::Push {
        return Err(Refused::NotFound);
    }
    let method = head.method.as_str();
    match route {
        Route::Push(_) if method != "POST" => Err(Refused::Method("POST")),
        Route::Sse | Route::Lifecycle if method != "GET" => Err(Refused::Method("GET")),
        Route::Health | Route::Metrics | Route::Presence | Route::Static(_) | Route::Whoami
            if !matches!(method, "GET" | "HEAD") =>
        {
            Err(Refused::Method("GET, HEAD"))
        }
        route => Ok(route),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::head_for_test;

    fn head(method: &str, path: &str) -> Head {
        head_for_test(&format!("{method} {path} HTTP/1.1\r\n\r\n"))
    }

    fn paths(demo: bool) -> Paths {
        Paths {
            ws: "/ws".into(),
            sse: "/sse".into(),
            push: "/push".into(),
            demo,
            push_listeners: false,
        }
    }

    #[test]
    fn routes_and_methods() {
        let p = paths(true);
        let r = |m: &str, path: &str| route(&head(m, path), &p, Role::Main);
        assert_eq!(r("GET", "/ws"), Ok(Route::Upgrade));
        assert_eq!(r("POST", "/ws"), Ok(Route::Upgrade), "the handshake says 405");
        assert_eq!(r("POST", "/push"), Ok(Route::Push(Endpoint::Push)));
        assert_eq!(r("POST", "/broadcast"), Ok(Route::Push(Endpoint::Broadcast)));
        assert_eq!(r("POST", "/drop?x=1"), Ok(Route::Push(Endpoint::Drop)));
        assert_eq!(r("GET", "/push"), Err(Refused::Method("POST")));
        assert_eq!(r("GET", "/sse?event=a"), Ok(Route::Sse));
        assert_eq!(r("POST", "/sse"), Err(Refused::Method("GET")));
        assert_eq!(r("HEAD", "/healthz"), Ok(Route::Health));
        assert_eq!(r("DELETE", "/metrics"), Err(Refused::Method("GET, HEAD")));
        assert_eq!(r("GET", "/wspush.js"), Ok(Route::Static(1)));
        assert_eq!(r("GET", "/demo/whoami"), Ok(Route::Whoami));
        assert_eq!(r("GET", "/presence?userId=u"), Ok(Route::Presence));
        assert_eq!(r("HEAD", "/presence?event=e"), Ok(Route::Presence));
        assert_eq!(r("POST", "/presence"), Err(Refused::Method("GET, HEAD")));
        assert_eq!(r("GET", "/lifecycle"), Ok(Route::Lifecycle));
        assert_eq!(r("HEAD", "/lifecycle"), Err(Refused::Method("GET")));
        assert_eq!(r("GET", "/nope"), Err(Refused::NotFound));
        let p = paths(false);
        assert_eq!(
            route(&head("GET", "/wspush.js"), &p, Role::Main),
            Err(Refused::NotFound)
        );
        assert_eq!(
            route(&head("GET", "/demo/whoami"), &p, Role::Main),
            Err(Refused::NotFound)
        );
    }

    /// With push listeners, push endpoints answer there only.
    #[test]
    fn push_endpoints_only_on_push_listeners() {
        let p = Paths {
            push_listeners: true,
            ..paths(true)
        };
        let get = head("GET", "/metrics");
        let post = head("POST", "/push");
        assert_eq!(route(&post, &p, Role::Main), Err(Refused::NotFound));
        assert_eq!(route(&get, &p, Role::Main), Err(Refused::NotFound));
        assert_eq!(route(&post, &p, Role::Push), Ok(Route::Push(Endpoint::Push)));
        assert_eq!(route(&get, &p, Role::Push), Ok(Route::Metrics));
        assert_eq!(route(&head("GET", "/healthz"), &p, Role::Main), Ok(Route::Health));
        assert_eq!(route(&head("GET", "/ws"), &p, Role::Main), Ok(Route::Upgrade));
    }

    #[test]
    fn only_pushes_metrics_and_presence_are_guarded() {
        assert!(Route::Push(Endpoint::Drop).guarded() && Route::Metrics.guarded());
        assert!(Route::Presence.guarded() && Route::Lifecycle.guarded());
        for r in [
            Route::Upgrade,
            Route::Sse,
            Route::Static(0),
            Route::Whoami,
            Route::Health,
        ] {
            assert!(!r.guarded(), "{r:?}");
        }
    }
}
