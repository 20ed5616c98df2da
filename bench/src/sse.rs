//! Just enough Server-Sent Events client (SPEC §7) to drive a server from
//! outside: the `GET /sse` request, the `200` head and its preamble, and a
//! parser for the chunked event stream that follows.
//!
//! The server writes every event as one chunk, but nothing here counts on
//! it: chunks are decoded first, then the body is split into blocks at
//! its empty lines, as EventSource does. A block without `data:` (a
//! comment such as `: ping`, `retry:`) is not an event. The common case,
//! whole chunks holding whole blocks at the start of a read, is parsed in
//! place; only a piece cut by the read is copied, into the stream's own
//! buffers.

use crate::client::READ_TIMEOUT;
use std::borrow::Cow;
use std::io::Read;
use std::net::TcpStream;

/// The server's first chunk on every stream.
pub const PREAMBLE: &[u8] = b": ok\nretry: 3000\n\n";

/// The request that opens a stream for `token` on `event` (HTTP/1.1, so
/// the body comes chunked).
pub fn request(token: &str, event: &str) -> Vec<u8> {
    format!("GET /sse?event={event}&token={token} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()
}

/// Reads the `200` head and the preamble chunk (the stream is bound to its
/// user once they are written: they are the registration's ack). Anything
/// else (a refusal, an event already) is an error.
pub fn read_open(s: &mut TcpStream) -> Result<(), String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    for _ in 0..64 {
        let n = match s.read(&mut chunk) {
            Ok(0) => return Err("closed before the stream opened".into()),
            Ok(n) => n,
            Err(e) if crate::client::timed_out(&e) => {
                return Err(format!("stream open: nothing within {READ_TIMEOUT:?}"))
            }
            Err(e) => return Err(format!("stream open: {e}")),
        };
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]);
        if !head.starts_with("HTTP/1.1 200 ") {
            return Err(format!("stream refused: {head}"));
        }
        let chunked = head.split("\r\n").any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
            })
        });
        if !chunked {
            return Err(format!("stream not chunked: {head}"));
        }
        let want = format!("{:x}\r\n", PREAMBLE.len()).into_bytes();
        let want = [&want[..], PREAMBLE, b"\r\n"].concat();
        let body = &buf[end + 4..];
        if body.len() < want.len() {
            continue;
        }
        return if body == want {
            Ok(())
        } else {
            Err(format!(
                "unexpected start of the stream {:?}",
                String::from_utf8_lossy(body)
            ))
        };
    }
    Err("stream head too long".into())
}

/// One dispatched event: its name (`message` without an `event:` line)
/// and its `data:` lines joined by `\n`.
pub struct Event<'a> {
    pub name: &'a [u8],
    pub data: Cow<'a, [u8]>,
}

/// The body of one stream after its preamble: bytes not yet whole chunks,
/// and decoded bytes not yet a whole block (both usually empty).
#[derive(Default)]
pub struct SseStream {
    raw: Vec<u8>,
    body: Vec<u8>,
    ended: bool,
}

impl SseStream {
    /// Bytes held back (a partial chunk or block).
    pub fn buffered(&self) -> usize {
        self.raw.len() + self.body.len()
    }

    /// Whether the last chunk (the end of the stream) has arrived.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Takes `bytes` from the socket and hands each whole event to
    /// `each`. Bytes after the last chunk are an error.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        each: &mut impl FnMut(Event<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        if self.ended {
            return Err(format!("{} bytes after the end of the stream", bytes.len()));
        }
        let (body, ended) = (&mut self.body, &mut self.ended);
        let mut on_chunk = |data: &[u8]| blocks_into(body, data, each);
        if self.raw.is_empty() {
            let used = chunks(bytes, &mut on_chunk, ended)?;
            self.raw.extend_from_slice(&bytes[used..]);
        } else {
            self.raw.extend_from_slice(bytes);
            let used = chunks(&self.raw, &mut on_chunk, ended)?;
            self.raw.drain(..used);
        }
        if self.ended && !self.raw.is_empty() {
            return Err(format!("{} bytes after the end of the stream", self.raw.len()));
        }
        if self.raw.len() > 1024 * 1024 || self.body.len() > 1024 * 1024 {
            return Err("over 1 MiB of an unfinished chunk or event".into());
        }
        Ok(())
    }
}

/// Decodes the whole chunks at the start of `b`, handing each one's data
/// to `on_chunk`; returns the bytes they took. Sets `ended` at the last
/// chunk (size 0, no trailers from this server) and stops there.
fn chunks(
    b: &[u8],
    on_chunk: &mut impl FnMut(&[u8]) -> Result<(), String>,
    ended: &mut bool,
) -> Result<usize, String> {
    let mut pos = 0;
    while !*ended {
        let rest = &b[pos..];
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            if rest.len() > 32 {
                return Err(format!("bad chunk size line {:?}", String::from_utf8_lossy(rest)));
            }
            break;
        };
        let line = std::str::from_utf8(&rest[..eol]).map_err(|_| "chunk size is not text".to_string())?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        if size > 1024 * 1024 {
            return Err(format!("chunk of {size} bytes"));
        }
        if size == 0 {
            if rest.len() < eol + 4 {
                break;
            }
            if &rest[eol + 2..eol + 4] != b"\r\n" {
                return Err("trailers after the last chunk".into());
            }
            *ended = true;
            pos += eol + 4;
            break;
        }
        let data = eol + 2..eol + 2 + size;
        if rest.len() < data.end + 2 {
            break;
        }
        if &rest[data.end..data.end + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        on_chunk(&rest[data.clone()])?;
        pos += data.end + 2;
    }
    Ok(pos)
}

/// Appends decoded `data` to the partial block in `body` (in place when
/// there is none) and dispatches every whole block.
fn blocks_into(
    body: &mut Vec<u8>,
    data: &[u8],
    each: &mut impl FnMut(Event<'_>) -> Result<(), String>,
) -> Result<(), String> {
    if body.is_empty() {
        let used = blocks(data, each)?;
        body.extend_from_slice(&data[used..]);
    } else {
        body.extend_from_slice(data);
        let used = blocks(body, each)?;
        body.drain(..used);
    }
    Ok(())
}

/// Dispatches every whole block (ended by an empty line) at the start of
/// `b`; returns the bytes they took. Lines end with LF (a CR before it is
/// dropped).
fn blocks(b: &[u8], each: &mut impl FnMut(Event<'_>) -> Result<(), String>) -> Result<usize, String> {
    let mut pos = 0;
    while let Some(end) = b[pos..].windows(2).position(|w| w == b"\n\n") {
        let block = &b[pos..pos + end + 1];
        pos += end + 2;
        if let Some(e) = event(block) {
            each(e)?;
        }
    }
    Ok(pos)
}

/// The event a block dispatches, if any (`None`: no `data:` line).
fn event(block: &[u8]) -> Option<Event<'_>> {
    let mut name: &[u8] = b"message";
    let mut data: Option<Cow<[u8]>> = None;
    for line in block.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => name = value,
            b"data" => {
                data = Some(match data {
                    None => Cow::Borrowed(value),
                    Some(d) => {
                        let mut d = d.into_owned();
                        d.push(b'\n');
                        d.extend_from_slice(value);
                        Cow::Owned(d)
                    }
                })
            }
            _ => {}
        }
    }
    data.map(|data| Event { name, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(s: &mut SseStream, bytes: &[u8], out: &mut Vec<(String, String)>) -> Result<(), String> {
        s.feed(bytes, &mut |e| {
            out.push((
                String::from_utf8_lossy(e.name).into_owned(),
                String::from_utf8_lossy(&e.data).into_owned(),
            ));
            Ok(())
        })
    }

    #[test]
    fn events_are_found_however_the_bytes_are_cut() {
        let ch = |s: &str| format!("{:x}\r\n{s}\r\n", s.len());
        let stream = [
            ch("event: e\ndata: 1 2\n\n"),
            ch(": ping\n\n"),
            ch("event: e\ndata: a\ndata: b\n\nev"),
            ch("ent: e\ndata:"),
            ch(" c\n\n"),
            "0\r\n\r\n".into(),
        ]
        .concat();
        let stream = stream.as_bytes();
        let want = vec![
            ("e".to_string(), "1 2".to_string()),
            ("e".to_string(), "a\nb".to_string()),
            ("e".to_string(), "c".to_string()),
        ];
        for step in 1..=stream.len() {
            let mut s = SseStream::default();
            let mut got = Vec::new();
            for piece in stream.chunks(step) {
                collect(&mut s, piece, &mut got).unwrap();
            }
            assert_eq!(got, want, "pieces of {step}");
            assert!(s.ended() && s.buffered() == 0, "pieces of {step}");
        }
    }

    #[test]
    fn broken_framing_and_bytes_after_the_end_are_errors() {
        let mut got = Vec::new();
        assert!(collect(&mut SseStream::default(), b"zz\r\n", &mut got).is_err());
        assert!(collect(&mut SseStream::default(), b"2\r\nabXY", &mut got).is_err());
        let mut s = SseStream::default();
        assert!(collect(&mut s, b"0\r\n\r\nx", &mut got).is_err());
    }
}
