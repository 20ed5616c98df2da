//! Many registered clients at once, WebSocket or Server-Sent Events:
//! opening them in waves of handshakes, confirming their registration with
//! pushes (servers without `id` replies), and reading all of them from one
//! mio `Poll`.
//!
//! Reading: every socket is registered edge-triggered for READABLE. On an
//! event a socket is read into one shared 64 KiB buffer until a read comes
//! back shorter than the buffer (the socket was drained at that moment; data
//! arriving later raises a new edge) or WouldBlock: one `read()` per event in
//! the common case. Whole frames are parsed in place; a partial one waits in
//! the connection's own buffer. The time a read returned is the receive time
//! of every message it carried. An SSE stream is read the same way, its
//! chunks and event blocks parsed by `sse::SseStream`.

use crate::client::{
    connect_with, frame_at, read_until_ack, read_upgrade, text_frame, upgrade_request, HttpConn,
};
use crate::sse::{self, SseStream};
use mio::net::TcpStream as MioStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How a registration is known to have happened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ack {
    /// The register carries `"id":1` and the server's `{"id":1,"ok":true}`
    /// is awaited (wspush).
    Id,
    /// No id: the upgrade's 101 is awaited, and pushes confirm the
    /// registrations afterwards (the seed and every peer).
    None,
}

impl Ack {
    pub fn parse(s: &str) -> Result<Ack, String> {
        match s {
            "id" => Ok(Ack::Id),
            "none" => Ok(Ack::None),
            _ => Err(format!("--ack: {s:?} is neither id nor none")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Ack::Id => "id",
            Ack::None => "none",
        }
    }
}

/// What the clients speak.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    /// `GET /ws` and a register command.
    Ws,
    /// `GET /sse?event=E&token=T`: the stream's `200` and preamble are
    /// its registration.
    Sse,
}

impl Transport {
    pub fn parse(s: &str) -> Result<Transport, String> {
        match s {
            "ws" => Ok(Transport::Ws),
            "sse" => Ok(Transport::Sse),
            _ => Err(format!("--transport: {s:?} is neither ws nor sse")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
        }
    }
}

/// How client `j` registers.
pub struct Plan {
    pub token: String,
    pub event: &'static str,
    /// A receive buffer asked for before the connect (a slow reader).
    pub rcvbuf: Option<usize>,
}

/// The mask of client `j`'s register frame.
fn mask(j: usize) -> [u8; 4] {
    [(j >> 8) as u8, 0x5a, j as u8, 0xa5]
}

/// Opens `n` connections, `in_flight` handshakes at a time (a wave is
/// written, then its answers are read), each registering as `plan(j)` says.
/// With `Ack::Id` the register frame follows the upgrade request at once
/// and the wave waits for the id replies; with `Ack::None` it is sent once
/// the 101 came, as a browser does (gorilla refuses a client that sends
/// before the handshake is complete), and nothing more is awaited.
/// Source addresses are spread by `connect_with`.
pub fn connect_all(
    addr: SocketAddr,
    n: usize,
    in_flight: usize,
    ack: Ack,
    plan: impl Fn(usize) -> Plan,
) -> Result<Vec<TcpStream>, String> {
    let mut out = Vec::with_capacity(n);
    let in_flight = in_flight.max(1);
    let register = |j: usize, p: &Plan| {
        let cmd = match ack {
            Ack::Id => format!(r#"{{"token":"{}","event":"{}","id":1}}"#, p.token, p.event),
            Ack::None => format!(r#"{{"token":"{}","event":"{}"}}"#, p.token, p.event),
        };
        text_frame(&cmd, mask(j))
    };
    let mut i = 0;
    while i < n {
        let batch = in_flight.min(n - i);
        let mut wave = Vec::with_capacity(batch);
        for j in i..i + batch {
            let p = plan(j);
            let mut s =
                connect_with(j, addr, p.rcvbuf).map_err(|e| format!("connection {j}: connect: {e}"))?;
            let mut req = upgrade_request(addr);
            if ack == Ack::Id {
                req.extend(register(j, &p));
            }
            s.write_all(&req)
                .map_err(|e| format!("connection {j}: write: {e}"))?;
            wave.push((s, p));
        }
        for (k, (s, p)) in wave.iter_mut().enumerate() {
            let j = i + k;
            match ack {
                Ack::Id => read_until_ack(s).map_err(|e| format!("connection {j}: {e}"))?,
                Ack::None => {
                    let rest = read_upgrade(s).map_err(|e| format!("connection {j}: {e}"))?;
                    if !rest.is_empty() {
                        return Err(format!(
                            "connection {j}: {} unexpected bytes after the 101",
                            rest.len()
                        ));
                    }
                    s.write_all(&register(j, p))
                        .map_err(|e| format!("connection {j}: write: {e}"))?;
                }
            }
        }
        out.extend(wave.into_iter().map(|(s, _)| s));
        i += batch;
    }
    Ok(out)
}

/// Opens `n` SSE streams, `in_flight` at a time (a wave of requests is
/// written, then each stream's `200` and preamble are read), each for
/// `plan(j)`'s token and event. A stream is bound once its preamble is
/// written, so a push after this returns reaches every one of them.
/// Source addresses are spread by `connect_with`.
pub fn connect_sse(
    addr: SocketAddr,
    n: usize,
    in_flight: usize,
    plan: impl Fn(usize) -> Plan,
) -> Result<Vec<TcpStream>, String> {
    let mut out = Vec::with_capacity(n);
    let in_flight = in_flight.max(1);
    let mut i = 0;
    while i < n {
        let batch = in_flight.min(n - i);
        let mut wave = Vec::with_capacity(batch);
        for j in i..i + batch {
            let p = plan(j);
            let mut s = connect_with(j, addr, p.rcvbuf).map_err(|e| format!("stream {j}: connect: {e}"))?;
            s.write_all(&sse::request(&p.token, p.event))
                .map_err(|e| format!("stream {j}: write: {e}"))?;
            wave.push(s);
        }
        for (k, s) in wave.iter_mut().enumerate() {
            sse::read_open(s).map_err(|e| format!("stream {}: {e}", i + k))?;
        }
        out.extend(wave);
        i += batch;
    }
    Ok(out)
}

/// Pushes `message` to `user` on `event` until the answer counts `want`
/// connections (registrations are processed asynchronously by some
/// servers), for at most `limit`. Returns the counts of every answer: each
/// is a copy of `message` that some connection will receive.
pub fn probe(
    http: &mut HttpConn,
    user: &str,
    event: &str,
    message: &str,
    want: usize,
    limit: Duration,
) -> Result<Vec<usize>, String> {
    let body = format!(r#"{{"userId":"{user}","event":"{event}","message":"{message}"}}"#);
    let deadline = Instant::now() + limit;
    let mut counts = Vec::new();
    loop {
        let (status, text) = http.post("/push", &body)?;
        let n = sent_count(&text)
            .filter(|_| status == 200)
            .ok_or_else(|| format!("push to {user} answered {status} {text:?}"))?;
        counts.push(n);
        if n == want {
            return Ok(counts);
        }
        if n > want || Instant::now() >= deadline {
            return Err(format!(
                "{user}: {n} of {want} connections registered after {} probes",
                counts.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// N in `message sent to N clients`.
pub fn sent_count(body: &str) -> Option<usize> {
    body.strip_prefix("message sent to ")?
        .strip_suffix(" clients")?
        .parse()
        .ok()
}

/// One connection of a `Fleet`.
struct Conn {
    sock: MioStream,
    /// The start of a frame not yet whole (usually empty; WebSocket).
    pending: Vec<u8>,
    /// The stream's parser (SSE).
    sse: SseStream,
}

/// Open clients read through one mio registry; client `i` has token
/// `base + i`.
pub struct Fleet {
    conns: Vec<Conn>,
    base: usize,
    buf: Vec<u8>,
    /// SSE streams subscribed to this event; None: WebSocket clients.
    sse_event: Option<&'static str>,
}

impl Fleet {
    /// WebSocket clients: makes the sockets non-blocking and registers them.
    pub fn new(socks: Vec<TcpStream>, registry: &Registry, base: usize) -> io::Result<Fleet> {
        Fleet::with(socks, registry, base, None)
    }

    /// SSE streams past their preamble, all on `event` (any other event
    /// is an error).
    pub fn new_sse(
        socks: Vec<TcpStream>,
        registry: &Registry,
        base: usize,
        event: &'static str,
    ) -> io::Result<Fleet> {
        Fleet::with(socks, registry, base, Some(event))
    }

    fn with(
        socks: Vec<TcpStream>,
        registry: &Registry,
        base: usize,
        sse_event: Option<&'static str>,
    ) -> io::Result<Fleet> {
        let mut conns = Vec::with_capacity(socks.len());
        for (i, s) in socks.into_iter().enumerate() {
            s.set_nonblocking(true)?;
            let mut sock = MioStream::from_std(s);
            registry.register(&mut sock, Token(base + i), Interest::READABLE)?;
            conns.push(Conn {
                sock,
                pending: Vec::new(),
                sse: SseStream::default(),
            });
        }
        Ok(Fleet {
            conns,
            base,
            buf: vec![0; 64 * 1024],
            sse_event,
        })
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether `t` is one of ours.
    pub fn owns(&self, t: Token) -> bool {
        t.0 >= self.base && t.0 < self.base + self.conns.len()
    }

    /// Reads client `t` (a readiness event) and hands each whole text
    /// message (SSE: each event's data) to `on_text(client, payload,
    /// received_at)`. Pings are answered; a close frame (SSE: `event:
    /// close`, the end of the stream), EOF or a read error is an error.
    pub fn readable(&mut self, t: Token, on_text: impl FnMut(usize, &[u8], Instant)) -> Result<(), String> {
        match self.sse_event {
            None => self.readable_ws(t, on_text),
            Some(event) => self.readable_sse(t, event, on_text),
        }
    }

    fn readable_sse(
        &mut self,
        t: Token,
        event: &str,
        mut on_text: impl FnMut(usize, &[u8], Instant),
    ) -> Result<(), String> {
        let i = t.0 - self.base;
        let c = &mut self.conns[i];
        loop {
            let Some(n) = read_some(&c.sock, &mut self.buf, "stream", i)? else {
                return Ok(());
            };
            let now = Instant::now();
            c.sse
                .feed(&self.buf[..n], &mut |e| {
                    if e.name == event.as_bytes() {
                        on_text(i, &e.data, now);
                        Ok(())
                    } else {
                        Err(format!(
                            "event {:?} with data {:?}",
                            String::from_utf8_lossy(e.name),
                            String::from_utf8_lossy(&e.data)
                        ))
                    }
                })
                .map_err(|e| format!("stream {i}: {e}"))?;
            if c.sse.ended() {
                return Err(format!("stream {i}: ended by the server"));
            }
            if n < self.buf.len() {
                return Ok(());
            }
        }
    }

    fn readable_ws(
        &mut self,
        t: Token,
        mut on_text: impl FnMut(usize, &[u8], Instant),
    ) -> Result<(), String> {
        let i = t.0 - self.base;
        let c = &mut self.conns[i];
        loop {
            let Some(n) = read_some(&c.sock, &mut self.buf, "client", i)? else {
                return Ok(());
            };
            let now = Instant::now();
            let mut pong = Vec::new();
            let mut each = |op: u8, payload: &[u8]| match op {
                0x1 => {
                    on_text(i, payload, now);
                    Ok(())
                }
                0x9 => {
                    pong.extend(crate::client::frame(crate::client::OP_PONG, payload, mask(i)));
                    Ok(())
                }
                0xA => Ok(()),
                0x8 => Err(format!(
                    "client {i}: closed by the server (code {:?})",
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
                )),
                op => Err(format!("client {i}: unexpected opcode {op:#x} (fragmented?)")),
            };
            if c.pending.is_empty() {
                let used = frames(&self.buf[..n], &mut each)?;
                c.pending.extend_from_slice(&self.buf[used..n]);
            } else {
                c.pending.extend_from_slice(&self.buf[..n]);
                let used = frames(&c.pending, &mut each)?;
                c.pending.drain(..used);
            }
            if !pong.is_empty() {
                // Tiny and rare (server pings): an unsent pong is the
                // server's business, not a measurement error.
                let _ = (&c.sock).write(&pong);
            }
            if n < self.buf.len() {
                return Ok(());
            }
        }
    }
}

/// Hands every whole unmasked final frame at the start of `b` to
/// `each(opcode, payload)`; returns the bytes they took.
fn frames(b: &[u8], each: &mut impl FnMut(u8, &[u8]) -> Result<(), String>) -> Result<usize, String> {
    let mut pos = 0;
    while let Some((head, payload)) = frame_at(&b[pos..])? {
        if head & 0x80 == 0 {
            return Err("fragmented message from the server".into());
        }
        each(head & 0x0f, &b[pos + payload.start..pos + payload.end])?;
        pos += payload.end;
    }
    Ok(pos)
}

/// One read of a client's socket: the bytes read, `None` when there are
/// none now; the end of the stream or a failure is an error naming the
/// client (`what` `i`).
fn read_some(mut sock: impl Read, buf: &mut [u8], what: &str, i: usize) -> Result<Option<usize>, String> {
    loop {
        return match sock.read(buf) {
            Ok(0) => Err(format!("{what} {i}: connection closed by the server")),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(format!("{what} {i}: read: {e}")),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_in_place_and_partial_ones_wait() {
        let mut b = vec![0x81, 3, b'a', b'b', b'c', 0x89, 0, 0x81, 126, 0, 200];
        b.extend(std::iter::repeat_n(b'x', 100));
        let mut got = Vec::new();
        let used = frames(&b, &mut |op, p| {
            got.push((op, p.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![(1, 3), (9, 0)]);
        assert_eq!(used, 7);
    }

    #[test]
    fn sent_count_reads_the_seed_answer() {
        assert_eq!(sent_count("message sent to 12 clients"), Some(12));
        assert_eq!(sent_count("request data illegal"), None);
    }
}
