//! The browser client and the demo page, compiled into the binary, and the
//! demo page's one helper endpoint, `/demo/whoami`.
//!
//! Served with an `ETag` (a hash of the content, fixed for the build) and
//! `Cache-Control: no-cache`, so browsers revalidate with `If-None-Match`
//! and get a body-less 304 until the server is upgraded.
//!
//! The client files (`/wspush.js`, `/wspush.mjs`, `/wspush.d.ts`) carry
//! `Access-Control-Allow-Origin: *` on every answer, 304 and HEAD included:
//! they are public, and without it a page served from elsewhere could not
//! `import` the module (module scripts are fetched in CORS mode). The demo
//! page itself does not need it.
//!
//! The hash is taken on the first request for a file, not at startup:
//! hashing every file at startup read all of them (and the SHA-256 code)
//! into memory, in a server that may never serve one.

use crate::http::request::Head;
use crate::http::response::Response;
use sha2::{Digest, Sha256};
use std::cell::OnceCell;

/// One embedded file.
pub struct StaticFile {
    pub content_type: &'static str,
    pub body: &'static str,
    /// Loadable from any origin (the client files).
    public: bool,
    etag: OnceCell<String>,
}

impl StaticFile {
    /// A strong validator: the first 8 bytes of the body's SHA-256, quoted.
    pub fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.body.as_bytes());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
    }
}

const JS: &str = "text/javascript; charset=utf-8";

/// Path, type, body, public.
const FILES: [(&str, &str, &str, bool); 5] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../web/index.html"),
        false,
    ),
    ("/wspush.js", JS, include_str!("../web/wspush.js"), true),
    ("/wspush.mjs", JS, include_str!("../web/wspush.mjs"), true),
    (
        "/wspush.d.ts",
        "application/typescript; charset=utf-8",
        include_str!("../web/wspush.d.ts"),
        true,
    ),
    // Browsers ask for it on every page of the origin; a 404 is a red line
    // in the demo page's console that looks like a fault of the page.
    (
        "/favicon.ico",
        "image/svg+xml",
        include_str!("../web/favicon.svg"),
        false,
    ),
];

/// The index of the file served at `path`, if one is.
pub fn index_of(path: &str) -> Option<usize> {
    FILES.iter().position(|f| f.0 == path)
}

/// The files; each ETag is computed when first needed.
pub fn files() -> Vec<StaticFile> {
    FILES
        .iter()
        .map(|&(_, content_type, body, public)| StaticFile {
            content_type,
            body,
            public,
            etag: OnceCell::new(),
        })
        .collect()
}

/// True when `If-None-Match` lists `etag` (or `*`): the client's copy is current.
fn not_modified(head: &Head, etag: &str) -> bool {
    head.header("If-None-Match").is_some_and(|v| {
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*")
    })
}

/// The answer to a GET or HEAD of `file`.
pub fn respond(file: &StaticFile, head: &Head) -> Response {
    let mut r = if not_modified(head, file.etag()) {
        Response::text(304, "")
    } else {
        Response::text(200, file.body)
    };
    r.content_type = file.content_type;
    let r = r
        .with_header("ETag", file.etag())
        .with_header("Cache-Control", "no-cache");
    if file.public {
        r.with_header("Access-Control-Allow-Origin", "*")
    } else {
        r
    }
}

/// The demo page's helper, served only with the demo on: which user the
/// token in `Authorization: Bearer <token>` is (asked of `user_for`, the
/// server's own connection auth) and whether pushes need a key, so the
/// page can show a curl command that works as pasted. Without it the page
/// could only guess userId = token, wrong under `--auth-tokens` and
/// `--jwt-secret`. Telling a token's holder its own userId gives away
/// nothing a register with that token would not.
pub fn whoami(
    head: &Head,
    user_for: impl FnOnce(&str) -> Result<String, &'static str>,
    push_key: bool,
    push_path: &str,
) -> Response {
    let token = head.header("Authorization").and_then(|v| {
        let (scheme, rest) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let refuse = |why: &str| {
        Response::error(401, why, true)
            .with_header("WWW-Authenticate", "Bearer")
            .with_header("Cache-Control", "no-store")
    };
    let user = match token {
        None | Some("") => return refuse("missing token: send Authorization: Bearer <token>"),
        Some(t) => match user_for(t) {
            Ok(u) => u,
            Err(why) => return refuse(why),
        },
    };
    let body = serde_json::json!({ "userId": user, "pushKey": push_key, "pushPath": push_path });
    Response::json(200, body.to_string()).with_header("Cache-Control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::head_for_test;

    fn head(extra: &str) -> Head {
        head_for_test(&format!("GET /wspush.js HTTP/1.1\r\n{extra}\r\n"))
    }

    #[test]
    fn etags_and_revalidation() {
        let files = files();
        let js = &files[index_of("/wspush.js").unwrap()];
        assert!(js.etag().starts_with('"') && js.etag().len() == 18);
        let r = respond(js, &head(""));
        assert_eq!(r.status, 200);
        assert!(r.body.contains("connect"));
        let r = respond(js, &head(&format!("If-None-Match: {}\r\n", js.etag())));
        assert_eq!((r.status, r.body.as_str()), (304, ""));
        let r = respond(js, &head(&format!("If-None-Match: \"x\", W/{}\r\n", js.etag())));
        assert_eq!(r.status, 304);
        assert_eq!(respond(js, &head("If-None-Match: \"other\"\r\n")).status, 200);
        let etags: std::collections::HashSet<_> = files.iter().map(|f| f.etag().to_owned()).collect();
        assert_eq!(etags.len(), files.len());
    }
}
