//! The browser client and the demo page, compiled into the binary.
//!
//! Served with an `ETag` (a hash of the content, fixed for the build) and
//! `Cache-Control: no-cache`, so browsers revalidate with `If-None-Match`
//! and get a body-less 304 until the server is upgraded.

use crate::http::request::Head;
use crate::http::response::Response;
use sha2::{Digest, Sha256};

/// One embedded file.
pub struct StaticFile {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
    pub etag: String,
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

/// The files, with their ETags computed once at startup.
pub fn files() -> Vec<StaticFile> {
    FILES
        .iter()
        .map(|&(path, content_type, body)| {
            let digest = Sha256::digest(body.as_bytes());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            StaticFile {
                path,
                content_type,
                body,
                etag: format!("\"{hex}\""),
            }
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
    let mut r = if not_modified(head, &file.etag) {
        Response::text(304, "")
    } else {
        Response::text(200, file.body)
    };
    r.content_type = file.content_type;
    r.with_header("ETag", file.etag.clone())
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
        assert!(js.etag.starts_with('"') && js.etag.len() == 18);
        let r = respond(js, &head(""));
        assert_eq!(r.status, 200);
        assert!(r.body.contains("connect"));
        let r = respond(js, &head(&format!("If-None-Match: {}\r\n", js.etag)));
        assert_eq!((r.status, r.body.as_str()), (304, ""));
        let r = respond(js, &head(&format!("If-None-Match: \"x\", W/{}\r\n", js.etag)));
        assert_eq!(r.status, 304);
        assert_eq!(respond(js, &head("If-None-Match: \"other\"\r\n")).status, 200);
        let etags: std::collections::HashSet<_> = files.iter().map(|f| f.etag.clone()).collect();
        assert_eq!(etags.len(), files.len());
    }
}
