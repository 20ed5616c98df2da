//! HTTP responses: status lines, headers, plain-text and JSON bodies, and
//! the answers the server gives, each built in one place.
//!
//! Every answer goes through `Response::encode_into`, so `Content-Length`,
//! `Connection: close` and `HEAD` are right in one place; how a request
//! wants its answer (`Style`) is read once per request.

use super::request::{Head, Version};

/// One response, built by a handler and encoded by the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Close the connection after this response (errors that leave the
    /// request stream in an unknown state).
    pub close: bool,
}

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: TEXT,
            headers: Vec::new(),
            body: body.into(),
            close: false,
        }
    }

    pub fn json(status: u16, body: impl Into<String>) -> Response {
        Response {
            content_type: JSON,
            ..Response::text(status, body)
        }
    }

    /// An error in the format the client asked for: the plain text as is,
    /// or `{"error": text}` when it accepts JSON.
    pub fn error(status: u16, text: &str, as_json: bool) -> Response {
        if as_json {
            Response::json(status, serde_json::json!({ "error": text }).to_string())
        } else {
            Response::text(status, text)
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    /// Appends the encoded response to `out`. `keep_alive` is false when the
    /// connection will close after it (said in the header so the client
    /// does not reuse it); `head_only` drops the body for `HEAD`.
    ///
    /// Built by copying slices into space reserved once: `write!` through
    /// the formatting machinery, growing `out` piece by piece, cost as much
    /// as parsing the request it answers.
    pub fn encode_into(&self, out: &mut Vec<u8>, keep_alive: bool, head_only: bool) {
        const CLOSE: &[u8] = b"Connection: close\r\n";
        let reason = reason(self.status);
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let body = if head_only { 0 } else { self.body.len() };
        // Status line and the two fixed headers with their longest numbers.
        out.reserve(64 + reason.len() + self.content_type.len() + headers + CLOSE.len() + body);
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, usize::from(self.status));
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        // A 304 has no body, and a Content-Length on it would have to be
        // the 200's (RFC 9110 §8.6): it carries neither header.
        if self.status != 304 {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(self.content_type.as_bytes());
            out.extend_from_slice(b"\r\nContent-Length: ");
            push_decimal(out, self.body.len());
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !keep_alive || self.close {
            out.extend_from_slice(CLOSE);
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
    }
}

/// How a request wants its answer written: read from its head once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// The connection stays open after the answer.
    pub keep_alive: bool,
    /// An HTTP/1.0 client, told `Connection: keep-alive` when it stays.
    pub http10: bool,
    /// `HEAD`: the head of the answer without its body.
    pub head_only: bool,
    /// `Accept: application/json`: JSON bodies.
    pub json: bool,
}

impl Style {
    pub fn of(head: &Head) -> Style {
        Style {
            keep_alive: head.keep_alive,
            http10: head.version == Version::Http10,
            head_only: head.method == "HEAD",
            json: head.accepts_json(),
        }
    }

    /// An answer that is not to a readable request (a malformed one, a
    /// timeout, a refused socket): plain text, and the connection closes.
    pub const CLOSING: Style = Style {
        keep_alive: false,
        http10: false,
        head_only: false,
        json: false,
    };
}

impl Response {
    /// Encodes the answer the way the request asked; true when the
    /// connection is to close after it.
    pub fn write_styled(mut self, out: &mut Vec<u8>, style: Style) -> bool {
        if style.keep_alive && style.http10 {
            // A 1.0 client assumes close unless told otherwise.
            self = self.with_header("Connection", "keep-alive");
        }
        self.encode_into(out, style.keep_alive, style.head_only);
        !style.keep_alive || self.close
    }

    /// Text or JSON, as the request asked.
    fn counted(json: bool, json_key: &str, text: (&str, &str), n: u64) -> Response {
        let n = Decimal::new(usize::try_from(n).unwrap_or(usize::MAX));
        if json {
            Response::json(200, [json_key, n.as_str(), "}"].concat())
        } else {
            Response::text(200, [text.0, n.as_str(), text.1].concat())
        }
    }

    /// `message sent to N clients` or `{"sent": N}` (the seed's words).
    pub fn sent(n: usize, json: bool) -> Response {
        Response::counted(json, "{\"sent\":", ("message sent to ", " clients"), n as u64)
    }

    /// With history on (SPEC §8) a JSON answer to a push names the
    /// message's cursor: `{"sent":N,"cursor":C}`; text answers stay the
    /// seed's words.
    pub fn with_cursor(mut self, cursor: Option<&str>) -> Response {
        if let Some(c) = cursor {
            if self.content_type == JSON && self.body.ends_with('}') {
                self.body.pop();
                self.body.push_str(",\"cursor\":");
                self.body.push_str(&serde_json::to_string(c).unwrap_or_default());
                self.body.push('}');
            }
        }
        self
    }

    /// `dropped N clients` or `{"dropped": N}`.
    pub fn dropped(n: usize, json: bool) -> Response {
        Response::counted(json, "{\"dropped\":", ("dropped ", " clients"), n as u64)
    }

    /// Cluster mode: a node cannot know how many clients other nodes
    /// reached, only how many nodes got the record.
    pub fn published(nodes: u64, json: bool) -> Response {
        Response::counted(
            json,
            "{\"published\":true,\"nodes\":",
            ("message published to ", " nodes"),
            nodes,
        )
    }

    pub fn method_not_allowed(allow: &'static str, json: bool) -> Response {
        Response::error(405, "method not allowed", json).with_header("Allow", allow)
    }

    /// A refused WebSocket upgrade or SSE stream: its status, the close code
    /// the same refusal gets on an open connection in `Wspush-Code`, and
    /// with JSON `{"error": ..., "code": C}`.
    pub fn refusal(status: u16, text: &str, code: u16, json: bool) -> Response {
        let r = if json {
            // Keys in SPEC §7's order (`json!` would sort them).
            let text = serde_json::to_string(text).unwrap_or_default();
            Response::json(status, format!(r#"{{"error":{text},"code":{code}}}"#))
        } else {
            Response::text(status, text)
        };
        r.with_header("Wspush-Code", Decimal::new(usize::from(code)).as_str())
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(Decimal::new(n).as_bytes());
}

/// A number's decimal digits on the stack, so answers that carry a count
/// are built without `format!` (whose machinery cost as much as the rest
/// of a push's answer).
pub(crate) struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(crate) fn new(mut n: usize) -> Decimal {
        let mut d = Decimal {
            digits: [0; 20],
            start: 20,
        };
        loop {
            d.start -= 1;
            d.digits[d.start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return d;
            }
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(self.as_bytes()).unwrap_or("0")
    }
}

/// Reason phrases for the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    #[test]
    fn a_json_push_answer_names_the_cursor() {
        let r = Response::sent(3, true).with_cursor(Some("ab-1"));
        assert_eq!(r.body, r#"{"sent":3,"cursor":"ab-1"}"#);
        let r = Response::published(2, true).with_cursor(Some("ab-1-0"));
        assert_eq!(r.body, r#"{"published":true,"nodes":2,"cursor":"ab-1-0"}"#);
        assert_eq!(
            Response::sent(3, false).with_cursor(Some("x")).body,
            "message sent to 3 clients"
        );
        assert_eq!(Response::sent(3, true).with_cursor(None).body, r#"{"sent":3}"#);
    }

    use super::*;

    fn encode(r: &Response, keep_alive: bool, head_only: bool) -> String {
        let mut out = Vec::new();
        r.encode_into(&mut out, keep_alive, head_only);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_text_keep_alive() {
        let s = encode(&Response::text(200, "message sent to 1 clients"), true, false);
        assert_eq!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 25\r\n\r\nmessage sent to 1 clients"
        );
    }

    #[test]
    fn closing_and_extra_headers() {
        let r = Response::text(405, "method not allowed")
            .with_header("Allow", "POST")
            .closing();
        let s = encode(&r, true, false);
        assert!(s.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(s.contains("\r\nAllow: POST\r\n"));
        assert!(s.contains("\r\nConnection: close\r\n"));
        assert!(s.ends_with("\r\n\r\nmethod not allowed"));
    }

    #[test]
    fn head_keeps_length_drops_body() {
        let s = encode(&Response::text(200, "ok"), false, true);
        assert!(s.contains("Content-Length: 2\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn numbers_in_the_head() {
        let mut r = Response::text(503, "x".repeat(1234567));
        r.headers.push(("Retry-After", "5".into()));
        let s = encode(&r, true, true);
        assert_eq!(
            s,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 1234567\r\nRetry-After: 5\r\n\r\n"
        );
        assert!(encode(&Response::text(200, ""), true, false).contains("\r\nContent-Length: 0\r\n"));
        let mut out = Vec::new();
        push_decimal(&mut out, usize::MAX);
        assert_eq!(out, usize::MAX.to_string().as_bytes());
    }

    #[test]
    fn json_errors_escape() {
        let r = Response::error(400, "bad \"x\"", true);
        assert_eq!(r.content_type, JSON);
        assert_eq!(r.body, r#"{"error":"bad \"x\""}"#);
        assert_eq!(Response::error(404, "not found", false).body, "not found");
    }

    #[test]
    fn answers() {
        assert_eq!(Response::sent(3, false).body, "message sent to 3 clients");
        assert_eq!(Response::sent(3, true).body, r#"{"sent":3}"#);
        assert_eq!(Response::dropped(0, false).body, "dropped 0 clients");
        assert_eq!(Response::dropped(2, true).body, r#"{"dropped":2}"#);
        assert_eq!(
            Response::sent(usize::MAX, true).body,
            format!("{{\"sent\":{}}}", usize::MAX)
        );
        assert_eq!(Response::published(2, false).body, "message published to 2 nodes");
        assert_eq!(
            Response::published(2, true).body,
            r#"{"published":true,"nodes":2}"#
        );
        let r = Response::refusal(401, "unknown token", 4401, true);
        assert_eq!(r.body, r#"{"error":"unknown token","code":4401}"#);
        assert!(r.headers.contains(&("Wspush-Code", "4401".into())));
        assert_eq!(Response::refusal(400, "no event", 4400, false).body, "no event");
    }
}
