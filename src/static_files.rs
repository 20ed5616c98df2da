//! The browser client and the demo page, compiled into the binary.
//!
//! Served with an `ETag` (a hash of the content, fixed for the build) and
//! `Cache-Control: no-cache`, so browsers revalidate with `If-None-Match`
//! and get a body-less 304 until the server is upgraded.
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
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
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

const FILES: [(&str, &str, &str); 3] = [
    ("/", "text/html; charset=utf-8", include_str!("../web/index.html")),
    (
        "/wspush.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/wspush.js"),
    ),
    (
        "/wspush.mjs",
        "text/javascript; charset=utf-8",
        include_str!("../web/wspush.mjs"),
    ),
];

/// The files; each ETag is computed when first needed.
pub fn files() -> Vec<StaticFile> {
    FILES
        .iter()
        .map(|&(path, content_type, body)| StaticFile {
            path,
            content_type,
            body,
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
    r.with_header("ETag", file.etag())
        .with_header("Cache-Control", "no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_head, Limits, Parsed};

    fn head(extra: &str) -> Head {
        let req = format!("GET /wspush.js HTTP/1.1\r\n{extra}\r\n");
        let limits = Limits {
            max_head_bytes: 1024,
            max_headers: 8,
            max_body_bytes: 8,
        };
        match parse_head(req.as_bytes(), &limits) {
            Ok(Parsed::Done(h, _)) => h,
            _ => panic!("did not parse"),
        }
    }

    #[test]
    fn etags_and_revalidation() {
        let files = files();
        let js = files.iter().find(|f| f.path == "/wspush.js").unwrap();
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
