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

/// A masked client text frame (payload < 126 bytes).
pub fn text_frame(payload: &str, mask: [u8; 4]) -> Vec<u8> {
    let p = payload.as_bytes();
    assert!(p.len() < 126);
    frame(OP_TEXT, p, mask)
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

/// Connects from 127.0.0.(2 + i % 250), so ephemeral ports never run out.
pub fn connect_from(i: usize, to: SocketAddr) -> io::Result<TcpStream> {
    connect_with(i, to, None)
}

/// `connect_from`, optionally with a small receive buffer (set before the
/// connect, so the advertised window stays small: a slow reader).
pub fn connect_with(i: usize, to: SocketAddr, rcvbuf: Option<usize>) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n)?;
    }
    let src = SocketAddr::from(([127, 0, 0, 2 + (i % 250) as u8], 0));
    s.bind(&src.into())?;
    s.connect_timeout(&to.into(), READ_TIMEOUT)?;
    let s: TcpStream = s.into();
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    s.set_write_timeout(Some(READ_TIMEOUT))?;
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

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        let b = &self.buf[self.start..];
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
        let f = Frame {
            fin: b[0] & 0x80 != 0,
            opcode: b[0] & 0x0f,
            payload: b[head..head + len].to_vec(),
        };
        self.start += head + len;
        Ok(Some(f))
    }
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

/// POSTs on a fresh connection (closed after) and returns the body.
pub fn http_post(addr: SocketAddr, path: &str, body: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
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
        self.req.clear();
        write!(
            self.req,
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .expect("write to a Vec");
        self.req.extend_from_slice(body.as_bytes());
        self.s
            .write_all(&self.req)
            .map_err(|e| format!("write request: {e}"))?;
        self.read_response()
    }

    pub fn post(&mut self, path: &str, body: &str) -> Result<(u16, String), String> {
        self.request("POST", path, body)
    }

    fn read_response(&mut self) -> Result<(u16, String), String> {
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if self.buf.len() > 16 * 1024 {
                return Err("response head too long".into());
            }
            self.fill(&mut chunk)?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line in {head:?}"))?;
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
        if len > 1024 * 1024 {
            return Err(format!("response body of {len} bytes"));
        }
        while self.buf.len() < head_end + len {
            self.fill(&mut chunk)?;
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + len]).into_owned();
        self.buf.drain(..head_end + len);
        Ok((status, body))
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
