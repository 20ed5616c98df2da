//! Parsing of HTTP/1.x request heads into a [`Head`].
//!
//! Everything here works on bytes and does no I/O: the event loop keeps its
//! own read buffer and hands a connection's [`HeadParser`] what arrived, which
//! resumes where it stopped ([`parse_head`] is the same parser run over one
//! buffer). The parser faces the internet, so every decision that affects
//! message framing (where this request ends and the next one begins) is made
//! strictly: any ambiguity a front proxy could resolve differently from us is
//! an error rather than a guess, because such differences are what request
//! smuggling exploits.

use std::mem::MaybeUninit;
use std::ops::Range;

/// Limits applied while parsing; the loop builds one from its config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest accepted request head (request line, header lines and the
    /// terminating empty line). Bounds memory held per connection and the work
    /// spent re-parsing an incomplete head.
    pub max_head_bytes: usize,
    /// Most header fields accepted in one head.
    pub max_headers: usize,
    /// Largest accepted request body, whether announced by `Content-Length` or
    /// decoded from chunked framing.
    pub max_body_bytes: usize,
}

/// The protocol versions this server speaks; anything else is rejected by the
/// parser before a [`Head`] exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the body following the head is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No `Content-Length` and no `Transfer-Encoding`: a request body of zero
    /// bytes (RFC 9112 §6.3 rule 6; requests are never delimited by close).
    None,
    /// Exactly this many body bytes follow the head.
    Length(usize),
    /// The body uses `Transfer-Encoding: chunked`; see
    /// [`decode_chunked`](super::chunked::decode_chunked).
    Chunked,
}

/// A parsed request head. Header names are kept as sent; lookups are
/// case-insensitive.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: String,
    /// The target up to the first `?`, e.g. `/push`. Always starts with `/`.
    pub path: String,
    /// The part of the target after the first `?`, without it; empty if none.
    pub query: String,
    pub version: Version,
    /// Header names and values back to back, in the order received; `fields`
    /// says where each one is. One string for all of them instead of two per
    /// header: a push request's head was a third of its allocations.
    text: String,
    fields: Vec<(Range<usize>, Range<usize>)>,
    pub framing: BodyFraming,
    /// Whether the connection may carry another request after this one
    /// (RFC 9112 §9.3): HTTP/1.1 defaults to persistent unless the client
    /// sends `Connection: close`; HTTP/1.0 only persists when the client opts
    /// in with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` and waits for an interim
    /// response before sending the body. Always false for HTTP/1.0, whose
    /// clients cannot understand a 1xx response (RFC 9110 §10.1.1 requires the
    /// server to ignore the expectation there).
    pub expect_continue: bool,
}

impl Head {
    /// Header fields in the order received, names as sent. Values have
    /// surrounding whitespace removed and are guaranteed to be valid UTF-8 (a
    /// request carrying any other value is rejected rather than lossily
    /// converted, so nothing downstream ever acts on a value different from
    /// the one sent).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields
            .iter()
            .map(|(n, v)| (&self.text[n.clone()], &self.text[v.clone()]))
    }

    /// The values of every header named `name`, in order, names compared
    /// case-insensitively since field names are case-insensitive (RFC 9110
    /// §5.1). Names are compared as bytes and only matching values are
    /// sliced out: a push request's head is searched this way six times.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.fields
            .iter()
            .filter(move |(n, _)| self.text.as_bytes()[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(move |(_, v)| &self.text[v.clone()])
    }

    /// The value of the first header named `name` (see `values`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.values(name).next()
    }

    /// Whether any comma-separated element of any header named `name` equals
    /// `token`, ignoring case and surrounding whitespace. List-valued fields
    /// may be split across several header lines or combined into one
    /// (RFC 9110 §5.3), so both forms must be treated alike, e.g. for
    /// `Connection: keep-alive, Upgrade`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(list_elements)
            .any(|t| t.eq_ignore_ascii_case(token))
    }

    /// `Accept` names `application/json` (SPEC §2: every answer is JSON then).
    pub fn accepts_json(&self) -> bool {
        self.values("Accept").any(names_json)
    }
}

fn names_json(accept: &str) -> bool {
    const JSON: &[u8] = b"application/json";
    accept
        .as_bytes()
        .windows(JSON.len())
        .any(|w| w.eq_ignore_ascii_case(JSON))
}

/// Whether a request refused before it became a `Head` (a body over the
/// limit by its `Content-Length`, a bad framing header) asked for JSON:
/// its header section is complete and well-formed, only its meaning was
/// refused, so the client still gets the form it asked for. Anything that
/// does not even parse gets plain text.
pub fn raw_accepts_json(buf: &[u8], limits: &Limits) -> bool {
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    matches!(req.parse(window), Ok(httparse::Status::Complete(_)))
        && req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("Accept"))
            .any(|h| std::str::from_utf8(h.value).is_ok_and(names_json))
}

/// Why a request was rejected. Each variant maps to one response status; after
/// any of them the connection's framing can no longer be trusted, so the
/// caller should answer and close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// 400: the request is malformed or ambiguous; the string is a short human
    /// reason such as `"malformed request line"`.
    BadRequest(&'static str),
    /// 431: the head is longer than `max_head_bytes` or has more than
    /// `max_headers` fields (also used for oversized chunked trailers).
    HeadersTooLarge,
    /// 413: the body is, or is announced to be, larger than `max_body_bytes`.
    BodyTooLarge,
    /// 417: an `Expect` header asks for something other than `100-continue`.
    ExpectationFailed,
    /// 501: a `Transfer-Encoding` other than exactly `chunked`.
    NotImplemented,
}

impl HttpError {
    /// The response status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::HeadersTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::ExpectationFailed => 417,
            HttpError::NotImplemented => 501,
        }
    }

    /// A short text for the response body.
    pub fn reason(&self) -> &'static str {
        match self {
            HttpError::BadRequest(reason) => reason,
            HttpError::HeadersTooLarge => "request header fields too large",
            HttpError::BodyTooLarge => "request body too large",
            HttpError::ExpectationFailed => "expectation failed",
            HttpError::NotImplemented => "transfer encoding not implemented",
        }
    }
}

/// Outcome of parsing a prefix of a connection's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// More bytes are needed; call again once they arrive.
    Incomplete,
    /// The parsed value and the number of bytes of the buffer it consumed.
    Done(T, usize),
}

/// Header slots kept on the stack; larger limits fall back to the heap.
const STACK_HEADERS: usize = 64;

/// Optional whitespace around list elements and values (RFC 9110 §5.6.3).
const OWS: &[char] = &[' ', '\t'];

/// Parse one request head from the start of `buf` (which may hold more: a
/// body, pipelined requests).
///
/// Only the first `max_head_bytes` bytes are ever examined, so a client
/// trickling an endless head costs bounded work per call, and the limit is
/// reported as soon as the buffer holds more than that without a complete head.
/// Leading empty lines before the request line are skipped, as RFC 9112 §2.2
/// permits, and count towards the limit and the consumed length. Line endings
/// may be CRLF or a bare LF (also permitted by RFC 9112 §2.2); this only
/// affects where header lines end, never where the message ends.
///
/// This parses the buffer from its start every time; a connection receiving
/// a head piecemeal uses a [`HeadParser`], which gives the same answers
/// without re-reading what it has seen.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Parsed<Head>, HttpError> {
    match parse_window(buf, limits)? {
        Some((head, n)) => Ok(Parsed::Done(head, n)),
        None if buf.len() > limits.max_head_bytes => Err(HttpError::HeadersTooLarge),
        None => Ok(Parsed::Incomplete),
    }
}

/// Finds the end of a request head in bytes that arrive piecemeal.
///
/// Re-parsing a growing buffer after every read costs quadratic work when a
/// client sends its head one byte per packet. This looks at each new byte
/// once, for the empty line that ends the head, and runs httparse (which
/// cannot resume) only when the outcome may have changed:
/// - the head's end has arrived;
/// - the request line is complete, or a byte arrived that no head may hold
///   (a control character, a CR without LF): a malformed request, such as a
///   TLS handshake, is refused at once as it was when every read re-parsed;
/// - the bytes buffered have doubled since httparse last ran, so any other
///   malformed head is refused within twice its length, and the total work
///   stays linear;
/// - more than `max_head_bytes` are buffered (then the verdict is final).
///
/// Whenever httparse runs it sees what [`parse_head`] would see, so every
/// answer other than `Incomplete` is exactly `parse_head`'s for the same
/// bytes; once the head is complete both always answer.
#[derive(Debug, Clone, Default)]
pub struct HeadParser {
    /// Bytes from the start of the request looked at so far.
    scanned: usize,
    /// Bytes of the current line so far.
    line: usize,
    /// The last byte looked at was a CR.
    cr: bool,
    /// A non-empty line ended: the request line is in, and the next empty
    /// line ends the head (empty lines before it are skipped).
    request_line: bool,
    /// Bytes buffered when httparse last ran.
    checked: usize,
    /// How often httparse ran, for the tests that prove the work linear.
    #[cfg(test)]
    runs: usize,
}

impl HeadParser {
    /// Parses the head at the start of `buf`: everything received of this
    /// request so far. Between calls `buf` may only grow at its end.
    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Result<Parsed<Head>, HttpError> {
        let window = &buf[..buf.len().min(limits.max_head_bytes)];
        loop {
            let end = self.scan(window);
            let due = end
                || buf.len() > limits.max_head_bytes
                || (!buf.is_empty() && buf.len() >= 2 * self.checked);
            if !due {
                return Ok(Parsed::Incomplete);
            }
            self.checked = buf.len();
            #[cfg(test)]
            {
                self.runs += 1;
            }
            match parse_head(buf, limits)? {
                Parsed::Incomplete if end && self.scanned < window.len() => {}
                outcome => return Ok(outcome),
            }
        }
    }

    /// Looks at the bytes of `window` not seen yet; true when it stopped at
    /// a byte after which httparse must run.
    fn scan(&mut self, window: &[u8]) -> bool {
        while let Some(&b) = window.get(self.scanned) {
            self.scanned += 1;
            let after_cr = std::mem::replace(&mut self.cr, b == b'\r');
            if after_cr && b != b'\n' {
                return true;
            }
            match b {
                b'\n' => {
                    let empty = self.line == usize::from(after_cr);
                    self.line = 0;
                    if !empty {
                        // The first non-empty line is the request line.
                        let first = !self.request_line;
                        self.request_line = true;
                        if first {
                            return true;
                        }
                    } else if self.request_line {
                        return true;
                    }
                }
                b'\r' | b'\t' => self.line += 1,
                0..=0x1f | 0x7f => {
                    self.line += 1;
                    return true;
                }
                _ => self.line += 1,
            }
        }
        false
    }
}

/// The head at the start of `buf` if all of it lies within the head limit;
/// `None` while it may yet be completed.
fn parse_window(buf: &[u8], limits: &Limits) -> Result<Option<(Head, usize)>, HttpError> {
    let window = &buf[..buf.len().min(limits.max_head_bytes)];

    // Left uninitialised: httparse fills only the slots it uses, and
    // zeroing 64 of them (2 KiB) on every parse was a visible part of a push.
    let mut stack = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADERS];
    let mut heap: Vec<MaybeUninit<httparse::Header<'_>>>;
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap = vec![MaybeUninit::uninit(); limits.max_headers];
        &mut heap
    };

    let mut req = httparse::Request::new(&mut []);
    let consumed = match req.parse_with_uninit_headers(window, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(map_httparse_error(e)),
    };

    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HttpError::BadRequest("unsupported HTTP version")),
    };
    let method = req
        .method
        .ok_or(HttpError::BadRequest("malformed request line"))?;
    let target = req.path.ok_or(HttpError::BadRequest("malformed request line"))?;
    // Only origin-form is meaningful for a server that is not a proxy
    // (RFC 9112 §3.2.1); absolute-form and `*` would need host/authority
    // handling we do not do, and silently treating them as paths would let
    // the routing decision differ from what an intermediary saw.
    if !target.starts_with('/') {
        return Err(HttpError::BadRequest("request target must be origin-form"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let mut text = String::with_capacity(req.headers.iter().map(|h| h.name.len() + h.value.len()).sum());
    let mut fields = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HttpError::BadRequest("header value is not valid UTF-8"))?;
        let name = text.len()..text.len() + h.name.len();
        text.push_str(h.name);
        let value = value.trim_matches(OWS);
        fields.push((name, text.len()..text.len() + value.len()));
        text.push_str(value);
    }

    let mut head = Head {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        version,
        text,
        fields,
        framing: BodyFraming::None,
        keep_alive: false,
        expect_continue: false,
    };

    head.framing = body_framing(&head, limits)?;
    head.expect_continue = expectation(&head)?;
    let close = head.header_has_token("connection", "close");
    head.keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => !close && head.header_has_token("connection", "keep-alive"),
    };

    Ok(Some((head, consumed)))
}

/// A complete request head from text, for unit tests elsewhere.
#[cfg(test)]
pub fn head_for_test(raw: &str) -> Head {
    let limits = Limits {
        max_head_bytes: 8192,
        max_headers: 64,
        max_body_bytes: 1024,
    };
    match parse_head(raw.as_bytes(), &limits) {
        Ok(Parsed::Done(h, _)) => h,
        _ => panic!("test request did not parse: {raw:?}"),
    }
}

fn map_httparse_error(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::HeadersTooLarge,
        httparse::Error::HeaderName => HttpError::BadRequest("invalid header name"),
        httparse::Error::HeaderValue => HttpError::BadRequest("invalid header value"),
        httparse::Error::NewLine => HttpError::BadRequest("invalid line ending"),
        httparse::Error::Version => HttpError::BadRequest("unsupported HTTP version"),
        httparse::Error::Token | httparse::Error::Status => HttpError::BadRequest("malformed request line"),
    }
}

/// Elements of a comma-separated list value, trimmed; empty elements are kept
/// so callers that must be strict (framing) can see them.
fn list_elements(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(|t| t.trim_matches(OWS))
}

/// Decide the body framing per RFC 9112 §6.3, refusing every combination that
/// two parsers might frame differently.
fn body_framing(head: &Head, limits: &Limits) -> Result<BodyFraming, HttpError> {
    let has = |name: &str| head.values(name).next().is_some();
    let has_te = has("transfer-encoding");
    let has_cl = has("content-length");

    if has_te {
        // A message with both is the classic smuggling vector: one hop frames
        // by length, the next by chunks. RFC 9112 §6.3 rule 3 lets a server
        // reject it outright, which is the only safe option without a proxy's
        // obligation to forward it.
        if has_cl {
            return Err(HttpError::BadRequest("both Transfer-Encoding and Content-Length"));
        }
        // HTTP/1.0 has no transfer codings; a 1.0 message claiming one was
        // probably produced by a confused or malicious intermediary
        // (RFC 9112 §6.1 says to treat the framing as faulty).
        if head.version == Version::Http10 {
            return Err(HttpError::BadRequest("Transfer-Encoding in HTTP/1.0"));
        }
        // All Transfer-Encoding lines form one list; the only coding we can
        // decode is a lone `chunked`. Anything else (other codings, chunked
        // twice, empty elements) is refused rather than partially understood.
        let mut codings = head.values("transfer-encoding").flat_map(list_elements);
        return match (codings.next(), codings.next()) {
            (Some(c), None) if c.eq_ignore_ascii_case("chunked") => Ok(BodyFraming::Chunked),
            _ => Err(HttpError::NotImplemented),
        };
    }

    if !has_cl {
        return Ok(BodyFraming::None);
    }
    content_length(head, limits.max_body_bytes).map(BodyFraming::Length)
}

/// The single body length announced by all `Content-Length` headers.
///
/// Grammar is `1*DIGIT` only (RFC 9110 §8.6): signs, inner spaces or empty
/// values are rejected because number parsers differ on them. Repeated headers
/// or a comma list are accepted only when every element denotes the same number
/// (the RFC allows that one recovery); values are compared as digit strings
/// without leading zeros, so even numbers too big for `usize` are compared
/// exactly and disagreements are reported as malformed, not as too large.
fn content_length(head: &Head, max_body_bytes: usize) -> Result<usize, HttpError> {
    let mut agreed: Option<&str> = None;
    let values = head.values("content-length").flat_map(list_elements);
    for element in values {
        if element.is_empty() || !element.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::BadRequest("invalid Content-Length"));
        }
        let canonical = element.trim_start_matches('0');
        match agreed {
            None => agreed = Some(canonical),
            Some(prev) if prev != canonical => {
                return Err(HttpError::BadRequest("conflicting Content-Length values"));
            }
            Some(_) => {}
        }
    }
    let digits = agreed.ok_or(HttpError::BadRequest("invalid Content-Length"))?;

    let mut length: usize = 0;
    for b in digits.bytes() {
        length = length
            .checked_mul(10)
            .and_then(|l| l.checked_add(usize::from(b - b'0')))
            .ok_or(HttpError::BodyTooLarge)?;
    }
    if length > max_body_bytes {
        return Err(HttpError::BodyTooLarge);
    }
    Ok(length)
}

/// Evaluate `Expect` (RFC 9110 §10.1.1). Any expectation we cannot meet is
/// answered with 417 instead of being ignored, so a client never waits for, or
/// assumes, behaviour we will not provide.
fn expectation(head: &Head) -> Result<bool, HttpError> {
    let mut wants_continue = false;
    let elements = head
        .values("expect")
        .flat_map(list_elements)
        .filter(|e| !e.is_empty());
    for element in elements {
        if element.eq_ignore_ascii_case("100-continue") {
            wants_continue = true;
        } else {
            return Err(HttpError::ExpectationFailed);
        }
    }
    Ok(wants_continue && head.version == Version::Http11)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head_bytes: 8192,
        max_headers: 64,
        max_body_bytes: 65536,
    };

    fn parse(buf: &[u8]) -> Result<Parsed<Head>, HttpError> {
        parse_head(buf, &LIMITS)
    }

    fn done(buf: &[u8]) -> (Head, usize) {
        match parse(buf) {
            Ok(Parsed::Done(head, n)) => (head, n),
            Ok(Parsed::Incomplete) => panic!("incomplete: {:?}", String::from_utf8_lossy(buf)),
            Err(e) => panic!("error {e:?}: {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn err(buf: &[u8]) -> HttpError {
        match parse(buf) {
            Err(e) => e,
            Ok(Parsed::Incomplete) => panic!("incomplete: {:?}", String::from_utf8_lossy(buf)),
            Ok(Parsed::Done(head, _)) => panic!("parsed: {head:?}"),
        }
    }

    fn is_bad_request(e: HttpError) -> bool {
        matches!(e, HttpError::BadRequest(_))
    }

    #[test]
    fn simple_get() {
        let req = b"GET /events?topic=a&x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let (head, n) = done(req);
        assert_eq!(n, req.len());
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/events");
        assert_eq!(head.query, "topic=a&x=1");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.framing, BodyFraming::None);
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
        assert!(head.headers().eq([("Host", "example.com")]));
    }

    #[test]
    fn path_without_query_and_query_with_second_question_mark() {
        let (head, _) = done(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(head.path, "/");
        assert_eq!(head.query, "");
        let (head, _) = done(b"GET /a?b?c HTTP/1.1\r\n\r\n");
        assert_eq!(head.path, "/a");
        assert_eq!(head.query, "b?c");
        let (head, _) = done(b"GET /a? HTTP/1.1\r\n\r\n");
        assert_eq!(head.path, "/a");
        assert_eq!(head.query, "");
    }

    #[test]
    fn post_with_content_length() {
        let req = b"POST /push HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let (head, n) = done(req);
        assert_eq!(head.method, "POST");
        assert_eq!(head.framing, BodyFraming::Length(5));
        assert_eq!(n, req.len() - 5);
        assert_eq!(&req[n..], b"hello");
    }

    #[test]
    fn head_split_across_calls() {
        let req = b"POST /push HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
        let head_len = req.len() - 3;
        for cut in 0..head_len {
            assert!(
                matches!(parse(&req[..cut]), Ok(Parsed::Incomplete)),
                "prefix of {cut} bytes"
            );
        }
        for cut in head_len..=req.len() {
            let (head, n) = done(&req[..cut]);
            assert_eq!(n, head_len);
            assert_eq!(head.framing, BodyFraming::Length(3));
        }
    }

    #[test]
    fn pipelined_requests_consume_exactly_one_head() {
        let first = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n".as_slice();
        let second = b"POST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi".as_slice();
        let third = b"GET /c HTTP/1.1\r\n\r\n".as_slice();
        let buf = [first, second, third].concat();

        let (a, n1) = done(&buf);
        assert_eq!(a.path, "/a");
        assert_eq!(n1, first.len());

        let (b, n2) = done(&buf[n1..]);
        assert_eq!(b.path, "/b");
        assert_eq!(b.framing, BodyFraming::Length(2));
        let body_start = n1 + n2;
        assert_eq!(&buf[body_start..body_start + 2], b"hi");

        let (c, n3) = done(&buf[body_start + 2..]);
        assert_eq!(c.path, "/c");
        assert_eq!(body_start + 2 + n3, buf.len());
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_names_kept() {
        let (head, _) = done(b"GET / HTTP/1.1\r\nX-Token: one\r\nx-token: two\r\nCONTENT-length: 0\r\n\r\n");
        assert_eq!(head.header("x-token"), Some("one"));
        assert_eq!(head.header("X-TOKEN"), Some("one"));
        assert_eq!(head.header("missing"), None);
        let names: Vec<&str> = head.headers().map(|(n, _)| n).collect();
        assert_eq!(names, ["X-Token", "x-token", "CONTENT-length"]);
        assert_eq!(head.framing, BodyFraming::Length(0));
    }

    #[test]
    fn header_values_are_trimmed_and_may_be_utf8() {
        let (head, _) = done("GET / HTTP/1.1\r\nX-Name: \t caf\u{e9} \t\r\n\r\n".as_bytes());
        assert_eq!(head.header("x-name"), Some("caf\u{e9}"));
        let (head, _) = done(b"GET / HTTP/1.1\r\nX-Empty:\r\n\r\n");
        assert_eq!(head.header("x-empty"), Some(""));
    }

    #[test]
    fn non_utf8_header_value_is_rejected() {
        assert!(is_bad_request(err(b"GET / HTTP/1.1\r\nX-Bin: a\xffb\r\n\r\n")));
        assert!(is_bad_request(err(b"GET / HTTP/1.1\r\nX-Bin: \xc3\r\n\r\n")));
    }

    #[test]
    fn http11_keep_alive_rules() {
        assert!(done(b"GET / HTTP/1.1\r\n\r\n").0.keep_alive);
        assert!(!done(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").0.keep_alive);
        assert!(!done(b"GET / HTTP/1.1\r\nConnection: CLOSE\r\n\r\n").0.keep_alive);
        assert!(
            !done(b"GET / HTTP/1.1\r\nConnection: Upgrade, Close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            done(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(done(b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n").0.keep_alive);
    }

    #[test]
    fn http10_keep_alive_rules() {
        let (head, _) = done(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(head.version, Version::Http10);
        assert!(!head.keep_alive);
        assert!(
            done(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            done(b"GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            done(b"GET / HTTP/1.0\r\nConnection: foo,  keep-alive \r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !done(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !done(b"GET / HTTP/1.0\r\nConnection: keep-alive-ish\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn connection_token_lists() {
        let (head, _) =
            done(b"GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(head.header_has_token("connection", "upgrade"));
        assert!(head.header_has_token("Connection", "KEEP-ALIVE"));
        assert!(!head.header_has_token("connection", "close"));
        assert!(!head.header_has_token("connection", "keep"));
        assert!(head.header_has_token("upgrade", "WebSocket"));
        assert!(!head.header_has_token("missing", "x"));

        let (head, _) = done(b"GET / HTTP/1.1\r\nConnection: foo\r\nconnection: ,\t upgrade\t,\r\n\r\n");
        assert!(head.header_has_token("connection", "upgrade"));
        assert!(head.header_has_token("connection", "foo"));
    }

    #[test]
    fn expect_continue() {
        let req = b"POST /push HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 10\r\n\r\n";
        let (head, _) = done(req);
        assert!(head.expect_continue);
        assert_eq!(head.framing, BodyFraming::Length(10));
        // HTTP/1.0 clients cannot handle 1xx: the expectation is ignored.
        let (head, _) = done(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
        assert!(!head.expect_continue);
    }

    #[test]
    fn unknown_expectation_fails() {
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n"),
            HttpError::ExpectationFailed
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nExpect: 100-continue, foo\r\n\r\n"),
            HttpError::ExpectationFailed
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nExpect: bar\r\n\r\n"),
            HttpError::ExpectationFailed
        );
        assert_eq!(
            err(b"POST / HTTP/1.0\r\nExpect: foo\r\n\r\n"),
            HttpError::ExpectationFailed
        );
    }

    #[test]
    fn chunked_framing() {
        let (head, _) = done(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Chunked);
        let (head, _) = done(b"POST / HTTP/1.1\r\ntransfer-encoding:  CHUNKED \r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Chunked);
    }

    #[test]
    fn unsupported_transfer_encodings() {
        for te in [
            "gzip",
            "chunked, gzip",
            "gzip, chunked",
            "chunked, chunked",
            "chunked,",
            "",
            "chunkedx",
            "identity",
        ] {
            let req = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(err(req.as_bytes()), HttpError::NotImplemented, "{te:?}");
        }
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HttpError::NotImplemented
        );
    }

    #[test]
    fn transfer_encoding_with_content_length_is_rejected() {
        assert!(is_bad_request(err(
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        )));
        assert!(is_bad_request(err(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 0\r\n\r\n"
        )));
        // Even an unsupported coding is first of all a smuggling attempt.
        assert!(is_bad_request(err(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n"
        )));
    }

    #[test]
    fn transfer_encoding_on_http10_is_rejected() {
        assert!(is_bad_request(err(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
        )));
    }

    #[test]
    fn duplicate_content_length() {
        let (head, _) = done(b"POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Length(7));
        let (head, _) = done(b"POST / HTTP/1.1\r\nContent-Length: 7, 7,007\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Length(7));
        let (head, _) = done(b"POST / HTTP/1.1\r\nContent-Length: 00\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Length(0));

        assert!(is_bad_request(err(
            b"POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n"
        )));
        assert!(is_bad_request(err(
            b"POST / HTTP/1.1\r\nContent-Length: 7, 8\r\n\r\n"
        )));
        assert!(is_bad_request(err(
            b"POST / HTTP/1.1\r\nContent-Length: 7,\r\n\r\n"
        )));
        // Disagreeing huge values are malformed, not merely too large.
        assert!(is_bad_request(err(
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999, 99999999999999999999998\r\n\r\n"
        )));
    }

    #[test]
    fn malformed_content_length() {
        for cl in [
            "+5", "-5", "5 5", "1_0", "0x10", "", " ", "5a", "five", "\u{0663}", "1.0", "١",
        ] {
            let req = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            assert!(is_bad_request(err(req.as_bytes())), "{cl:?}");
        }
        // Surrounding whitespace is OWS, not part of the value.
        let (head, _) = done(b"POST / HTTP/1.1\r\nContent-Length:   12 \t\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Length(12));
    }

    #[test]
    fn content_length_limits() {
        let (head, _) = done(b"POST / HTTP/1.1\r\nContent-Length: 65536\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::Length(65536));
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n"),
            HttpError::BodyTooLarge
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n"),
            HttpError::BodyTooLarge
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: 999999999999999999999999999999999999999\r\n\r\n"),
            HttpError::BodyTooLarge
        );
        let unlimited = Limits {
            max_body_bytes: usize::MAX,
            ..LIMITS
        };
        let max = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", usize::MAX);
        assert!(matches!(
            parse_head(max.as_bytes(), &unlimited),
            Ok(Parsed::Done(
                Head {
                    framing: BodyFraming::Length(usize::MAX),
                    ..
                },
                _
            ))
        ));
        let over = format!("POST / HTTP/1.1\r\nContent-Length: {}0\r\n\r\n", usize::MAX);
        assert!(matches!(
            parse_head(over.as_bytes(), &unlimited),
            Err(HttpError::BodyTooLarge)
        ));
    }

    #[test]
    fn target_must_be_origin_form() {
        assert!(is_bad_request(err(b"GET http://example.com/ HTTP/1.1\r\n\r\n")));
        assert!(is_bad_request(err(b"OPTIONS * HTTP/1.1\r\n\r\n")));
        assert!(is_bad_request(err(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")));
    }

    #[test]
    fn malformed_request_lines() {
        for req in [
            b"GET / HTTP/2.0\r\n\r\n".as_slice(),
            b"GET / HTTP/1.2\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nName : x\r\n\r\n",
            b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            assert!(is_bad_request(err(req)), "{:?}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let req = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let (head, n) = done(req);
        assert_eq!(head.path, "/");
        assert_eq!(n, req.len());
    }

    #[test]
    fn too_many_headers() {
        let limits = Limits {
            max_headers: 3,
            ..LIMITS
        };
        let ok = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert!(matches!(parse_head(ok, &limits), Ok(Parsed::Done(..))));
        let over = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(parse_head(over, &limits).err(), Some(HttpError::HeadersTooLarge));

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..65 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(err(&many), HttpError::HeadersTooLarge);

        // Limits above the stack array size use heap slots.
        let big = Limits {
            max_headers: 100,
            ..LIMITS
        };
        let (head, _) = match parse_head(&many, &big) {
            Ok(Parsed::Done(h, n)) => (h, n),
            other => panic!("{:?}", other.err()),
        };
        assert_eq!(head.headers().count(), 65);

        let none = Limits {
            max_headers: 0,
            ..LIMITS
        };
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\n\r\n", &none),
            Ok(Parsed::Done(..))
        ));
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nA: 1\r\n\r\n", &none).err(),
            Some(HttpError::HeadersTooLarge)
        );
    }

    #[test]
    fn head_over_limit() {
        let limits = Limits {
            max_head_bytes: 64,
            ..LIMITS
        };
        // A head of exactly the limit is accepted.
        let mut exact = b"GET / HTTP/1.1\r\nX: ".to_vec();
        exact.resize(64 - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(exact.len(), 64);
        assert!(matches!(parse_head(&exact, &limits), Ok(Parsed::Done(_, 64))));
        // One byte more is not, whether complete or not.
        let mut over = b"GET / HTTP/1.1\r\nX: ".to_vec();
        over.resize(64 - 3, b'a');
        over.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_head(&over, &limits).err(), Some(HttpError::HeadersTooLarge));
        // Without a CRLFCRLF: incomplete up to the limit, then an error.
        let endless = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 100]].concat();
        assert!(matches!(
            parse_head(&endless[..64], &limits),
            Ok(Parsed::Incomplete)
        ));
        assert_eq!(
            parse_head(&endless[..65], &limits).err(),
            Some(HttpError::HeadersTooLarge)
        );
        // Endless empty lines are bounded too.
        let blank = b"\r\n".repeat(40);
        assert_eq!(
            parse_head(&blank, &limits).err(),
            Some(HttpError::HeadersTooLarge)
        );
        // A body after a small head does not count against the head limit.
        let small = b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
        let with_body = [small.as_slice(), &[b'z'; 100]].concat();
        assert!(matches!(
            parse_head(&with_body, &limits),
            Ok(Parsed::Done(_, n)) if n == small.len()
        ));
    }

    #[test]
    fn empty_buffer_is_incomplete() {
        assert!(matches!(parse(b""), Ok(Parsed::Incomplete)));
        let zero = Limits {
            max_head_bytes: 0,
            ..LIMITS
        };
        assert!(matches!(parse_head(b"", &zero), Ok(Parsed::Incomplete)));
        assert_eq!(parse_head(b"G", &zero).err(), Some(HttpError::HeadersTooLarge));
    }

    #[test]
    fn error_status_and_reason() {
        let cases = [
            (HttpError::BadRequest("malformed request line"), 400),
            (HttpError::HeadersTooLarge, 431),
            (HttpError::BodyTooLarge, 413),
            (HttpError::ExpectationFailed, 417),
            (HttpError::NotImplemented, 501),
        ];
        for (e, status) in cases {
            assert_eq!(e.status(), status);
            assert!(!e.reason().is_empty());
        }
        assert_eq!(
            HttpError::BadRequest("malformed request line").reason(),
            "malformed request line"
        );
    }

    /// Every truncation and many single-byte mutations of valid requests must
    /// return (never panic) and never claim to consume more than was given.
    #[test]
    fn robustness_truncations_and_mutations() {
        let samples: [&[u8]; 6] = [
            b"GET /events?topic=a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"POST /push HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
            b"POST /push HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
            b"\r\nPOST /p?q HTTP/1.1\r\ncontent-length: 3, 3\r\nX: \xc3\xa9\r\n\r\nabc",
            b"PUT /x HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        ];
        let replacements = [0u8, b'\n', b'\r', b':', b' ', b',', b'?', b'0', 0x7f, 0xff];
        let limit_sets = [
            LIMITS,
            Limits {
                max_head_bytes: 40,
                max_headers: 2,
                max_body_bytes: 4,
            },
            Limits {
                max_head_bytes: 0,
                max_headers: 0,
                max_body_bytes: 0,
            },
        ];
        let check = |buf: &[u8], limits: &Limits| {
            if let Ok(Parsed::Done(head, n)) = parse_head(buf, limits) {
                assert!(n <= buf.len() && n <= limits.max_head_bytes);
                assert!(head.path.starts_with('/'));
            }
        };
        for sample in samples {
            for limits in &limit_sets {
                for cut in 0..=sample.len() {
                    check(&sample[..cut], limits);
                }
                let mut buf = sample.to_vec();
                for i in 0..buf.len() {
                    let original = buf[i];
                    for r in replacements {
                        buf[i] = r;
                        check(&buf, limits);
                    }
                    buf[i] = original;
                }
            }
        }
    }

    /// Random byte soup and random splices of valid fragments never panic.
    #[test]
    fn robustness_pseudo_random() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let fragments: [&[u8]; 12] = [
            b"GET ",
            b"POST ",
            b"/p",
            b"?",
            b" HTTP/1.1",
            b" HTTP/1.0",
            b"\r\n",
            b"\n",
            b"Content-Length: 1",
            b"Transfer-Encoding: chunked",
            b"Expect: 100-continue",
            b"Connection: close",
        ];
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            let parts = next() % 12;
            for _ in 0..parts {
                if next() % 4 == 0 {
                    buf.push(next() as u8);
                } else {
                    buf.extend_from_slice(fragments[(next() % 12) as usize]);
                }
            }
            if let Ok(Parsed::Done(_, n)) = parse(&buf) {
                assert!(n <= buf.len());
            }
        }
    }

    /// Feeds `buf` to a fresh `HeadParser` in the pieces `cuts` makes (a
    /// growing buffer, as a connection sees it) and returns the first
    /// answer that is not `Incomplete`, or `Incomplete`, with the bytes
    /// given when it came.
    fn incremental(buf: &[u8], cuts: &[usize], limits: &Limits) -> (String, usize) {
        let mut p = HeadParser::default();
        for &cut in cuts.iter().chain([&buf.len()]) {
            match p.parse(&buf[..cut], limits) {
                Ok(Parsed::Incomplete) => {}
                other => return (format!("{other:?}"), cut),
            }
        }
        (
            format!("{:?}", Ok::<_, HttpError>(Parsed::<Head>::Incomplete)),
            buf.len(),
        )
    }

    /// Requests (some complete, some not, some malformed) for the
    /// incremental parser to agree with `parse_head` on.
    const SAMPLES: [&[u8]; 16] = [
        b"GET /events?topic=a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"POST /push HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        b"POST /push HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
        b"\r\nPOST /p?q HTTP/1.1\r\ncontent-length: 3, 3\r\nX: \xc3\xa9\r\n\r\nabc",
        b"\n\r\n\nGET / HTTP/1.1\nA: b\n\n",
        b"GET / HTTP/1.1\r\nX: a\r\n\nrest",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET http://example.com/ HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n",
    ];

    /// Split anywhere, or fed one byte at a time, the incremental parser
    /// gives `parse_head`'s answer for the whole buffer; and where
    /// `parse_head` already answers on the bytes given, it does too (a
    /// complete head is never left waiting).
    #[test]
    fn incremental_agrees_with_one_shot_at_every_split() {
        let tight = Limits {
            max_head_bytes: 40,
            max_headers: 2,
            max_body_bytes: 4,
        };
        let mut samples: Vec<Vec<u8>> = SAMPLES.iter().map(|s| s.to_vec()).collect();
        let mut long = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..60 {
            long.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(i)).as_bytes());
        }
        long.extend_from_slice(b"\r\n");
        samples.push(long);
        for limits in [LIMITS, tight] {
            for buf in &samples {
                let whole = format!("{:?}", parse_head(buf, &limits));
                let complete = !whole.starts_with("Ok(Incomplete");
                for cut in 0..=buf.len() {
                    let (got, at) = incremental(buf, &[cut], &limits);
                    assert!(
                        got == whole || (!complete && got.starts_with("Ok(Incomplete")),
                        "{:?} cut at {cut}: {got} after {at} bytes, one-shot {whole}",
                        String::from_utf8_lossy(buf)
                    );
                }
                let every: Vec<usize> = (0..buf.len()).collect();
                let (got, at) = incremental(buf, &every, &limits);
                assert!(
                    got == whole || (!complete && got.starts_with("Ok(Incomplete")),
                    "{:?} byte by byte: {got} after {at} bytes, one-shot {whole}",
                    String::from_utf8_lossy(buf)
                );
                // It answers as soon as parse_head answers for the bytes
                // given, when that answer is a parsed head.
                if let Ok(Parsed::Done(_, n)) = parse_head(buf, &limits) {
                    assert_eq!(at, n, "{:?}", String::from_utf8_lossy(buf));
                }
            }
        }
    }

    /// Garbage is refused as soon as it arrives, not when the head would
    /// have ended: a TLS handshake, a NUL, a bad request line.
    #[test]
    fn incremental_refuses_garbage_early() {
        for (buf, at) in [
            (b"\x16\x03\x01\x02\x00".as_slice(), 1),
            (b"GET / HTTP/1.1\r\nX: a\x00", 21),
            (b"G(T / HTTP/1.1\r\n", 2),
            (b"GET / HTTP/2.0\r\n", 16),
            (b"GET / HTTP/1.1\r\nX: a\rb", 22),
        ] {
            let every: Vec<usize> = (0..buf.len()).collect();
            let (got, n) = incremental(buf, &every, &LIMITS);
            assert!(got.starts_with("Err(BadRequest"), "{buf:?}: {got}");
            assert!(n <= at, "{buf:?}: refused after {n} bytes");
        }
    }

    /// A head sent one byte per read runs httparse a logarithmic number of
    /// times plus once per trigger, not once per byte: linear work.
    #[test]
    fn a_trickled_head_is_parsed_a_few_times_not_per_byte() {
        let mut buf = b"POST /push HTTP/1.1\r\n".to_vec();
        while buf.len() < 8000 {
            buf.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        buf.extend_from_slice(b"\r\n");
        let limits = Limits {
            max_headers: 200,
            ..LIMITS
        };
        let mut p = HeadParser::default();
        for cut in 1..buf.len() {
            assert!(matches!(p.parse(&buf[..cut], &limits), Ok(Parsed::Incomplete)));
            // A call without new bytes does no work.
            assert!(matches!(p.parse(&buf[..cut], &limits), Ok(Parsed::Incomplete)));
        }
        assert!(matches!(p.parse(&buf, &limits), Ok(Parsed::Done(_, n)) if n == buf.len()));
        assert!(p.runs <= 16, "httparse ran {} times", p.runs);
        assert_eq!(p.scanned, buf.len(), "every byte looked at once");
    }

    /// Over the head limit the answer is final (431) however the bytes came,
    /// and no byte past the limit is looked at.
    #[test]
    fn incremental_head_over_limit() {
        let limits = Limits {
            max_head_bytes: 64,
            ..LIMITS
        };
        let endless = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 200]].concat();
        let mut p = HeadParser::default();
        for cut in 0..=64 {
            assert!(matches!(
                p.parse(&endless[..cut], &limits),
                Ok(Parsed::Incomplete)
            ));
        }
        assert_eq!(
            p.parse(&endless[..65], &limits).err(),
            Some(HttpError::HeadersTooLarge)
        );
        let mut p = HeadParser::default();
        assert_eq!(p.parse(&endless, &limits).err(), Some(HttpError::HeadersTooLarge));
        assert!(p.scanned <= 64);
    }

    /// A control byte makes the incremental parser run httparse at once;
    /// that is only worth it, and only bounded, because httparse refuses
    /// one anywhere in a head: each such run is the last.
    #[test]
    fn a_control_byte_is_refused_wherever_it_stands() {
        let controls = (0u8..0x20)
            .chain([0x7f])
            .filter(|b| !matches!(b, b'\t' | b'\r' | b'\n'));
        for c in controls {
            for (before, after) in [
                ("", " / HTTP/1.1\r\n\r\n"),
                ("G", "T / HTTP/1.1\r\n\r\n"),
                ("GET /", " HTTP/1.1\r\n\r\n"),
                ("GET /a", "b HTTP/1.1\r\n\r\n"),
                ("GET / HTTP/1.", "\r\n\r\n"),
                ("GET / HTTP/1.1\r\n", "X: a\r\n\r\n"),
                ("GET / HTTP/1.1\r\nX", ": a\r\n\r\n"),
                ("GET / HTTP/1.1\r\nX: ", "a\r\n\r\n"),
                ("GET / HTTP/1.1\r\nX: a", "\r\n\r\n"),
                ("\r\n", "GET / HTTP/1.1\r\n\r\n"),
            ] {
                let buf = [before.as_bytes(), &[c], after.as_bytes()].concat();
                let prefix = &buf[..before.len() + 1];
                assert!(
                    parse_head(prefix, &LIMITS).is_err() && parse_head(&buf, &LIMITS).is_err(),
                    "{:?}",
                    String::from_utf8_lossy(&buf)
                );
            }
        }
    }
}
