//! Just enough WebSocket and HTTP/1.1 client to drive a server from outside:
//! masked client frames, a parser for the server's (unmasked) frames, the
//! upgrade request, and a keep-alive HTTP connection for pushes.
//!
//! Every blocking read has a timeout, so nothing here can hang for ever.

use socket2::{Domain, SockRef, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// How long any single blocking read may wait.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A masked client text frame (a register with a JWT is longer than 125
/// bytes: any length).
pub fn text_frame(payload: &str, mask: [u8; 4]) -> Vec<u8> {
    frame(OP_TEXT, payload.as_bytes(), mask)
}

/// A masked, final client frame of any opcode and length.
pub fn frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A close frame with a status code.
pub fn close_frame(code: u16, mask: [u8; 4]) -> Vec<u8> {
    frame(OP_CLOSE, &code.to_be_bytes(), mask)
}

/// The upgrade request for `/ws`.
pub fn upgrade_request(addr: SocketAddr) -> Vec<u8> {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Connects from 127.0.0.(2 + i % 250), so ephemeral ports never run out;
/// optionally with a small receive buffer (set before the
/// connect, so the advertised window stays small: a slow reader).
pub fn connect_with(i: usize, to: SocketAddr, rcvbuf: Option<usize>) -> io::Result<TcpStream> {
    connect_within(i, to, rcvbuf, READ_TIMEOUT)
}

/// `connect_with`, giving up after `limit` (connect, reads and writes): a
/// probe that must not wait longer than its own timeout.
pub fn connect_within(
    i: usize,
    to: SocketAddr,
    rcvbuf: Option<usize>,
    limit: Duration,
) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n)?;
    }
    let src = SocketAddr::from(([127, 0, 0, 2 + (i % 250) as u8], 0));
    s.bind(&src.into())?;
    s.connect_timeout(&to.into(), limit)?;
    let s: TcpStream = s.into();
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    Ok(s)
}

/// Makes dropping the stream send a reset instead of a FIN.
pub fn set_reset_on_close(s: &TcpStream) -> io::Result<()> {
    SockRef::from(s).set_linger(Some(Duration::ZERO))
}

/// Reads the 101 response and the register ack that follows it.
pub fn read_until_ack(s: &mut TcpStream) -> Result<(), String> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).map_err(|e| read_error("handshake read", &e))?;
        if n == 0 {
            return Err("closed during handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(format!(
                    "upgrade refused: {}",
                    String::from_utf8_lossy(&buf[..end])
                ));
            }
            let rest = &buf[end + 4..];
            // The ack {"id":1,"ok":true} is an unmasked text frame of 18 bytes.
            if rest.len() >= 20 {
                return if &rest[2..20] == br#"{"id":1,"ok":true}"# {
                    Ok(())
                } else {
                    Err(format!("unexpected ack {:?}", String::from_utf8_lossy(rest)))
                };
            }
        }
    }
}

/// Reads the 101 response only (no register ack expected); returns any
/// bytes that followed it.
pub fn read_upgrade(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    for _ in 0..64 {
        let n = s.read(&mut chunk).map_err(|e| read_error("handshake read", &e))?;
        if n == 0 {
            return Err("closed during handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(format!(
                    "upgrade refused: {}",
                    String::from_utf8_lossy(&buf[..end])
                ));
            }
            return Ok(buf.split_off(end + 4));
        }
    }
    Err("upgrade response too long".into())
}

/// One server frame.
#[derive(Debug)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The status code of a close frame, if it has one.
    pub fn close_code(&self) -> Option<u16> {
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Splits the server's byte stream into frames (server frames are unmasked).
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet taken as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        let b = &self.buf[self.start..];
        let Some((head, payload)) = frame_at(b)? else {
            return Ok(None);
        };
        let f = Frame {
            fin: head & 0x80 != 0,
            opcode: head & 0x0f,
            payload: b[payload.clone()].to_vec(),
        };
        self.start += payload.end;
        Ok(Some(f))
    }
}

/// The server frame at the start of `b` (unmasked, no reserved bits): its
/// first byte (FIN and opcode) and where its payload is; None until whole.
pub fn frame_at(b: &[u8]) -> Result<Option<(u8, std::ops::Range<usize>)>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] & 0x70 != 0 {
        return Err(format!("reserved bits set in frame header {:#04x}", b[0]));
    }
    if b[1] & 0x80 != 0 {
        return Err("server sent a masked frame".into());
    }
    let (len, head) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            (u64::from_be_bytes(n) as usize, 10)
        }
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if len > 16 * 1024 * 1024 {
        return Err(format!("frame of {len} bytes"));
    }
    if b.len() < head + len {
        return Ok(None);
    }
    Ok(Some((b[0], head..head + len)))
}

/// A read timeout shows as WouldBlock or TimedOut depending on the platform.
pub fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Describes a failed blocking read, naming a timeout as one.
fn read_error(what: &str, e: &io::Error) -> String {
    if timed_out(e) {
        format!("{what}: nothing within {READ_TIMEOUT:?}")
    } else {
        format!("{what}: {e}")
    }
}

/// A keep-alive HTTP/1.1 connection; one request at a time.
pub struct HttpConn {
    s: TcpStream,
    buf: Vec<u8>,
    req: Vec<u8>,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr) -> Result<HttpConn, String> {
        let s = TcpStream::connect_timeout(&addr, READ_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(READ_TIMEOUT))
            .map_err(|e| e.to_string())?;
        Ok(HttpConn {
            s,
            buf: Vec::with_capacity(1024),
            req: Vec::with_capacity(1024),
        })
    }

    /// Sends one request and reads its response: (status, body).
    pub fn request(&mut self, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
        self.request_with(method, path, "", body)
    }

    pub fn post(&mut self, path: &str, body: &str) -> Result<(u16, String), String> {
        self.request("POST", path, body)
    }

    /// A POST answered in JSON (`Accept: application/json`).
    pub fn post_json(&mut self, path: &str, body: &str) -> Result<(u16, String), String> {
        self.request_with("POST", path, "Accept: application/json\r\n", body)
    }

    /// `request` with extra header lines (each ending in CRLF).
    fn request_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &str,
    ) -> Result<(u16, String), String> {
        self.req.clear();
        write!(
            self.req,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .expect("write to a Vec");
        self.req.extend_from_slice(body.as_bytes());
        self.s
            .write_all(&self.req)
            .map_err(|e| format!("write request: {e}"))?;
        self.read_response()
    }

    fn read_response(&mut self) -> Result<(u16, String), String> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(r) = parse_response(&self.buf)? {
                let body = String::from_utf8_lossy(&r.body).into_owned();
                self.buf.drain(..r.len);
                return Ok((r.status, body));
            }
            self.fill(&mut chunk)?;
        }
    }

    fn fill(&mut self, chunk: &mut [u8]) -> Result<(), String> {
        match self.s.read(chunk) {
            Ok(0) => Err("connection closed by the server".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(read_error("read response", &e)),
        }
    }
}

/// One whole HTTP response at the start of a buffer.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// Bytes the response takes in the buffer (head and body).
    pub len: usize,
}

/// Parses the first response in `buf`: None until all of it has arrived.
/// Bodies with `Content-Length` or `Transfer-Encoding: chunked` (node's
/// http module answers chunked).
pub fn parse_response(buf: &[u8]) -> Result<Option<Response>, String> {
    let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > 16 * 1024 {
            Err("response head too long".into())
        } else {
            Ok(None)
        };
    };
    let head_end = p + 4;
    let head = std::str::from_utf8(&buf[..p]).map_err(|_| "response head is not UTF-8".to_string())?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let header = |name: &str| {
        head.split("\r\n").find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Ok(dechunk(&buf[head_end..])?.map(|(body, n)| Response {
            status,
            body,
            len: head_end + n,
        }));
    }
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
    if len > 1024 * 1024 {
        return Err(format!("response body of {len} bytes"));
    }
    if buf.len() < head_end + len {
        return Ok(None);
    }
    Ok(Some(Response {
        status,
        body: buf[head_end..head_end + len].to_vec(),
        len: head_end + len,
    }))
}

/// Decodes a chunked body at the start of `b`: the body and the bytes it
/// took, or None until all of it has arrived. Trailers are skipped.
fn dechunk(b: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut pos = 0;
    let line_at = |pos: usize| b[pos..].windows(2).position(|w| w == b"\r\n").map(|e| pos + e);
    loop {
        let Some(eol) = line_at(pos) else { return Ok(None) };
        let size_text = std::str::from_utf8(&b[pos..eol]).map_err(|_| "bad chunk size".to_string())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        pos = eol + 2;
        if size == 0 {
            // Trailer lines up to an empty one.
            loop {
                let Some(eol) = line_at(pos) else { return Ok(None) };
                let empty = eol == pos;
                pos = eol + 2;
                if empty {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if body.len() + size > 1024 * 1024 {
            return Err("chunked response body over 1 MiB".into());
        }
        if b.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&b[pos..pos + size]);
        pos += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_length_or_chunks() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP")
            .unwrap()
            .unwrap();
        assert_eq!((r.status, &r.body[..], r.len), (200, &b"hi"[..], 40));
        let full = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse_response(full).unwrap().unwrap();
        assert_eq!((&r.body[..], r.len), (&b"abcde"[..], full.len()));
        for cut in 0..full.len() {
            assert!(parse_response(&full[..cut]).unwrap().is_none(), "cut at {cut}");
        }
    }
}
