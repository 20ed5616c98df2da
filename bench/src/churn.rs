//! Short-lived clients of the soak (users `churn<k>`, event `c`): each one
//! opens, maybe registers (with or without an id), maybe receives a push to
//! itself, then vanishes in one of the ways a real client vanishes.
//!
//! Every step has a deadline, so a churner thread always ends.

use crate::client::{
    close_frame, connect_with, read_until_ack, read_upgrade, set_reset_on_close, text_frame, timed_out,
    upgrade_request, Frame, FrameReader, HttpConn, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
};
use crate::soak::Rng;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a churner vanishes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Drops the socket without a close frame (FIN).
    Abrupt,
    /// Drops the socket without a close frame, with SO_LINGER 0 (RST).
    Reset,
    /// Sends a close frame, waits for the answer and the server's FIN.
    Close,
    /// Writes part of a frame, then drops the socket.
    HalfFrame,
    /// Upgrades, never registers, drops the socket.
    NoRegister,
    /// Registers, stops reading while pushes queue up, is dropped through
    /// `/drop` (close 4000 it never reads), holds the socket up to the
    /// server's close grace and beyond, then drops it.
    Stalled,
    /// Registers with a tiny window and stops reading; pushes of 32 KiB
    /// overflow the server's backlog limit, so the server closes it (4008).
    Overflow,
}

pub const KINDS: [Kind; 7] = [
    Kind::Abrupt,
    Kind::Reset,
    Kind::Close,
    Kind::HalfFrame,
    Kind::NoRegister,
    Kind::Stalled,
    Kind::Overflow,
];

/// The order kinds come in: each cycle of 20 has one `Overflow` (the
/// expensive one: over 1 MiB through the server each).
const CYCLE: [Kind; 20] = {
    use Kind::*;
    [
        Abrupt, Close, Reset, HalfFrame, NoRegister, Stalled, Close, Abrupt, Reset, HalfFrame, NoRegister,
        Close, Stalled, Abrupt, Reset, HalfFrame, NoRegister, Close, Stalled, Overflow,
    ]
};

/// Pushes a stalled churner gets before its /drop, and their size.
pub const STALL_PUSHES: usize = 8;
const STALL_MESSAGE_BYTES: usize = 4096;
/// A stalled churner holds its socket this long (ms) after the /drop; the
/// server gives up on a close answer after 2 s.
const STALL_HOLD_MS: (u64, u64) = (200, 2800);
/// Overflow pushes: their size, and how many at most before giving up.
const OVERFLOW_MESSAGE_BYTES: usize = 32 * 1024;
const OVERFLOW_MAX_PUSHES: u64 = 256;
/// Receive buffer asked for by churners that stop reading.
const SMALL_RCVBUF: usize = 4096;
/// How long one expectation (a frame, an EOF) may wait.
const WAIT: Duration = Duration::from_secs(5);
/// Source-address index offset, so churners and stayers spread differently.
const SRC_OFFSET: usize = 100_000;

/// The kinds churners come in, in order, restricted to `only` (all when
/// empty); churner `k` is of kind `plan[k % plan.len()]`.
pub fn plan(only: &[Kind]) -> Vec<Kind> {
    CYCLE
        .iter()
        .copied()
        .filter(|k| only.is_empty() || only.contains(k))
        .collect()
}

impl Kind {
    pub fn from_name(name: &str) -> Option<Kind> {
        KINDS.iter().copied().find(|k| k.name() == name)
    }

    pub fn index(self) -> usize {
        KINDS.iter().position(|&x| x == self).expect("listed")
    }

    /// Key in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Abrupt => "abrupt_fin",
            Kind::Reset => "abrupt_rst",
            Kind::Close => "close_frame",
            Kind::HalfFrame => "half_frame",
            Kind::NoRegister => "never_registered",
            Kind::Stalled => "stalled_dropped",
            Kind::Overflow => "slow_4008",
        }
    }

    /// Row label in the human report.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Abrupt => "dropped, no close (FIN)",
            Kind::Reset => "dropped, no close (RST)",
            Kind::Close => "close handshake",
            Kind::HalfFrame => "half-written frame",
            Kind::NoRegister => "upgraded, never registered",
            Kind::Stalled => "stopped reading, /drop",
            Kind::Overflow => "stopped reading, 4008",
        }
    }

    /// Whether churner `k` of this kind registers with an id (and then gets
    /// a push to itself); the others register without one.
    fn with_id(self, k: usize) -> bool {
        match self {
            Kind::Stalled | Kind::Overflow => true,
            Kind::NoRegister => false,
            _ => (k / CYCLE.len() + k % CYCLE.len()) & 1 == 0,
        }
    }
}

/// A churner that ended as planned.
#[derive(Debug)]
pub struct Done {
    pub kind: Kind,
    pub with_id: bool,
    /// Received a push to itself and checked it.
    pub got_push: bool,
    pub overflow: Option<Overflow>,
}

/// How an overflow churner was cut off.
#[derive(Debug)]
pub struct Overflow {
    /// Pushes the server counted for it before it was closed.
    pub counted: u64,
    /// Of these, how many it read back (an in-order prefix).
    pub received: u64,
    /// The 4008 close frame arrived (otherwise the connection just ended:
    /// the frame did not fit behind the full backlog).
    pub close_frame: bool,
}

/// Starts churner `k`.
pub fn spawn(
    k: usize,
    kind: Kind,
    addr: SocketAddr,
    seed: u64,
) -> io::Result<JoinHandle<Result<Done, String>>> {
    std::thread::Builder::new()
        .name(format!("churn{k}"))
        .stack_size(256 * 1024)
        .spawn(move || {
            run(k, kind, addr, Rng::new(seed)).map_err(|e| format!("churner {k} ({}): {e}", kind.name()))
        })
}

fn run(k: usize, kind: Kind, addr: SocketAddr, mut rng: Rng) -> Result<Done, String> {
    let with_id = kind.with_id(k);
    let mut done = Done {
        kind,
        with_id,
        got_push: false,
        overflow: None,
    };
    match kind {
        Kind::Abrupt | Kind::Reset => {
            let mut c = Churner::open(k, addr, None, Some(with_id))?;
            if with_id {
                c.push_to_self(addr)?;
                done.got_push = true;
            }
            std::thread::sleep(rng.ms(0, 100));
            if kind == Kind::Reset {
                set_reset_on_close(&c.s).map_err(|e| format!("SO_LINGER: {e}"))?;
            }
        }
        Kind::Close => {
            let mut c = Churner::open(k, addr, None, Some(with_id))?;
            if with_id {
                c.push_to_self(addr)?;
                done.got_push = true;
            }
            c.write(&close_frame(1000, c.mask))?;
            let f = c
                .next_frame(|_| false)?
                .ok_or("connection ended before the close answer")?;
            if f.opcode != OP_CLOSE || f.close_code() != Some(1000) {
                return Err(format!(
                    "close answered with opcode {:#x} code {:?}",
                    f.opcode,
                    f.close_code()
                ));
            }
            // The server ends the TCP connection once the handshake is done.
            match c.next_frame(|_| false) {
                Ok(None) => {}
                Ok(Some(f)) => return Err(format!("frame {:#x} after the close answer", f.opcode)),
                Err(e) => return Err(format!("after the close answer: {e}")),
            }
        }
        Kind::HalfFrame => {
            let mut c = Churner::open(k, addr, None, Some(with_id))?;
            if with_id {
                c.push_to_self(addr)?;
                done.got_push = true;
            }
            let whole = text_frame(r#"{"token":"never","event":"finished here"}"#, c.mask);
            let part: &[u8] = match k % 3 {
                0 => &whole[..1],          // one header byte
                1 => &whole[..2 + 4 + 10], // header, mask, 10 of 41 payload bytes
                _ => &[0x81, 0xfe, 0x01],  // 16-bit length, one byte of it
            };
            c.write(part)?;
            std::thread::sleep(rng.ms(0, 50));
        }
        Kind::NoRegister => {
            let _c = Churner::open(k, addr, None, None)?;
            std::thread::sleep(rng.ms(0, 200));
        }
        Kind::Stalled => {
            let c = Churner::open(k, addr, Some(SMALL_RCVBUF), Some(true))?;
            let mut http = HttpConn::connect(addr)?;
            for i in 1..=STALL_PUSHES {
                let body = push_body(&c.user, &padded(i as u64, STALL_MESSAGE_BYTES));
                expect(http.post("/push", &body)?, "message sent to 1 clients", "push")?;
            }
            let body = format!(r#"{{"userId":"{}"}}"#, c.user);
            expect(http.post("/drop", &body)?, "dropped 1 clients", "/drop")?;
            drop(http);
            // Never reads: the queued pushes and the 4000 close stay unread,
            // so dropping the socket at the end sends a reset.
            std::thread::sleep(rng.ms(STALL_HOLD_MS.0, STALL_HOLD_MS.1));
        }
        Kind::Overflow => {
            let c = Churner::open(k, addr, Some(SMALL_RCVBUF), Some(true))?;
            done.overflow = Some(overflow(c, addr)?);
        }
    }
    Ok(done)
}

/// Pushes 32 KiB messages to a churner that does not read until the server
/// counts 0 (it was closed as a slow consumer), then reads what arrived: an
/// in-order prefix of the counted pushes, then the 4008 close or the end.
fn overflow(mut c: Churner, addr: SocketAddr) -> Result<Overflow, String> {
    let mut http = HttpConn::connect(addr)?;
    let mut counted = 0;
    loop {
        if counted == OVERFLOW_MAX_PUSHES {
            return Err(format!(
                "not closed as a slow consumer after {counted} pushes of 32 KiB"
            ));
        }
        let body = push_body(&c.user, &padded(counted + 1, OVERFLOW_MESSAGE_BYTES));
        match http.post("/push", &body)? {
            (200, b) if b == "message sent to 1 clients" => counted += 1,
            (200, b) if b == "message sent to 0 clients" => break,
            other => return Err(format!("push {}: {other:?}", counted + 1)),
        }
    }
    drop(http);
    let mut received = 0;
    let mut bad = None;
    let end = c.next_frame(|f| {
        if f.opcode == OP_TEXT {
            let seq = seq_of(&f.payload);
            if seq != Some(received + 1) || received + 1 > counted {
                bad.get_or_insert(format!("got {seq:?} after {received} of {counted} counted"));
            }
            received += 1;
            return true;
        }
        false
    });
    if let Some(bad) = bad {
        return Err(bad);
    }
    let close_frame = match end {
        Ok(Some(f)) if f.close_code() == Some(4008) => true,
        Ok(Some(f)) => return Err(format!("closed with code {:?}, not 4008", f.close_code())),
        Ok(None) => false,
        Err(e) => return Err(format!("after {received} of {counted} counted pushes: {e}")),
    };
    Ok(Overflow {
        counted,
        received,
        close_frame,
    })
}

fn push_body(user: &str, message: &str) -> String {
    format!(r#"{{"userId":"{user}","event":"c","message":"{message}"}}"#)
}

/// `<seq>` padded with " xxx…" to `len` bytes.
pub fn padded(seq: u64, len: usize) -> String {
    let mut m = seq.to_string();
    if m.len() + 1 < len {
        m.push(' ');
        m.extend(std::iter::repeat_n('x', len - m.len()));
    }
    m
}

/// The sequence number at the start of a message.
pub fn seq_of(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok()?.split(' ').next()?.parse().ok()
}

fn expect(got: (u16, String), want: &str, what: &str) -> Result<(), String> {
    if got.0 == 200 && got.1 == want {
        Ok(())
    } else {
        Err(format!("{what}: {got:?}, expected 200 {want:?}"))
    }
}

/// One churner's WebSocket.
struct Churner {
    s: TcpStream,
    fr: FrameReader,
    user: String,
    mask: [u8; 4],
}

impl Churner {
    /// Connects and upgrades; `register` is None (stay unregistered) or
    /// whether to register with an id (then the ack is awaited).
    fn open(
        k: usize,
        addr: SocketAddr,
        rcvbuf: Option<usize>,
        register: Option<bool>,
    ) -> Result<Self, String> {
        let mut s = connect_with(SRC_OFFSET + k, addr, rcvbuf).map_err(|e| format!("connect: {e}"))?;
        let user = format!("churn{k}");
        let mask = [k as u8, (k >> 8) as u8, 0x3c, 0xc3];
        let mut req = upgrade_request(addr);
        match register {
            Some(true) => {
                let cmd = format!(r#"{{"token":"{user}","event":"c","id":1}}"#);
                req.extend(text_frame(&cmd, mask));
            }
            Some(false) => req.extend(text_frame(&format!(r#"{{"token":"{user}","event":"c"}}"#), mask)),
            None => {}
        }
        s.write_all(&req).map_err(|e| format!("write upgrade: {e}"))?;
        let mut fr = FrameReader::default();
        if register == Some(true) {
            read_until_ack(&mut s)?;
        } else {
            fr.feed(&read_upgrade(&mut s)?);
        }
        Ok(Churner { s, fr, user, mask })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.s.write_all(bytes).map_err(|e| format!("write: {e}"))
    }

    /// Pushes a message to this churner's own user and reads it back.
    fn push_to_self(&mut self, addr: SocketAddr) -> Result<(), String> {
        let msg = format!("hello {}", self.user);
        let mut http = HttpConn::connect(addr)?;
        expect(
            http.post("/push", &push_body(&self.user, &msg))?,
            "message sent to 1 clients",
            "push to self",
        )?;
        drop(http);
        let f = self
            .next_frame(|_| false)?
            .ok_or("connection ended before the push arrived")?;
        if f.opcode != OP_TEXT || f.payload != msg.as_bytes() {
            return Err(format!(
                "expected the push {msg:?}, got opcode {:#x} {:?}",
                f.opcode,
                String::from_utf8_lossy(&f.payload)
            ));
        }
        Ok(())
    }

    /// The next frame that `skip` does not swallow (pings are answered and
    /// skipped), or None when the server ended the connection (FIN or
    /// reset). Waits at most `WAIT` for each read.
    fn next_frame(&mut self, mut skip: impl FnMut(&Frame) -> bool) -> Result<Option<Frame>, String> {
        let mut chunk = [0u8; 16 * 1024];
        let deadline = Instant::now() + WAIT;
        // Bounded: each pass either parses a frame or reads new bytes, and
        // a read waits at most until the deadline.
        loop {
            while let Some(f) = self.fr.next_frame()? {
                if f.opcode == OP_PING {
                    let pong = crate::client::frame(OP_PONG, &f.payload, self.mask);
                    let _ = self.s.write_all(&pong);
                } else if !skip(&f) {
                    return Ok(Some(f));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("nothing from the server for {WAIT:?}"));
            }
            self.s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
            match self.s.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.fr.feed(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) if timed_out(&e) => return Err(format!("nothing from the server for {WAIT:?}")),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}
