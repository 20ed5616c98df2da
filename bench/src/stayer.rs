//! Long-lived clients of the soak: each one registered (user `stay<i>`,
//! event `s`) and read by its own thread, which checks that the pushed
//! sequence numbers arrive exactly once and in order. Slow readers have a
//! small receive window and read in bursts with pauses, so the server has
//! to queue for them (but never near its backlog limit).

use crate::client::{
    close_frame, frame, timed_out, Frame, FrameReader, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
};
use crate::fleet::{self, Ack, Plan};
use crate::soak::Rng;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A slow reader asks for this receive buffer (the kernel doubles it).
pub const SLOW_RCVBUF: usize = 4096;
/// A slow reader sleeps between bursts for a random time in this range (ms).
const SLOW_PAUSE_MS: (u64, u64) = (50, 500);
/// A fast reader wakes at least this often to look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// How long the close handshake may take at the end.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What one stayer saw.
#[derive(Default, Debug)]
pub struct Report {
    pub slow: bool,
    /// Text frames received.
    pub received: u64,
    /// Frames that were not the next sequence number.
    pub anomalies: u64,
    pub first_anomaly: Option<String>,
    /// Anything that ended the stayer early or spoiled its close.
    pub error: Option<String>,
    /// Pings answered.
    pub pongs: u64,
}

/// State shared with the main thread.
pub struct Shared {
    /// Highest sequence number received in order, per stayer.
    pub seen: Vec<AtomicU64>,
    /// Set once: close properly and return.
    pub stop: AtomicBool,
}

/// Connects and registers `n` stayers, `in_flight` handshakes at a time.
/// Every tenth one (i % 10 == 9) is a slow reader.
pub fn connect_all(addr: SocketAddr, n: usize, in_flight: usize) -> Result<Vec<TcpStream>, String> {
    fleet::connect_all(addr, n, in_flight, Ack::Id, |j| Plan {
        token: format!("stay{j}"),
        event: "s",
        rcvbuf: is_slow(j).then_some(SLOW_RCVBUF),
    })
    .map_err(|e| format!("stayers: {e}"))
}

pub fn is_slow(i: usize) -> bool {
    i % 10 == 9
}

fn mask(i: usize) -> [u8; 4] {
    [(i >> 8) as u8, 0x5a, i as u8, 0xa5]
}

/// Starts the reader thread of stayer `i`.
pub fn spawn(
    i: usize,
    s: TcpStream,
    shared: Arc<Shared>,
    hard_deadline: Instant,
    seed: u64,
) -> io::Result<JoinHandle<Report>> {
    std::thread::Builder::new()
        .name(format!("stay{i}"))
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut st = Stayer {
                i,
                s,
                fr: FrameReader::default(),
                rep: Report {
                    slow: is_slow(i),
                    ..Report::default()
                },
                last: 0,
                shared,
            };
            if let Err(e) = st.run(hard_deadline, Rng::new(seed)) {
                st.rep.error = Some(e);
            }
            st.rep
        })
}

struct Stayer {
    i: usize,
    s: TcpStream,
    fr: FrameReader,
    rep: Report,
    /// Last sequence number seen (in order or not).
    last: u64,
    shared: Arc<Shared>,
}

/// What a read round found.
enum Got {
    Data,
    Nothing,
    Eof,
}

impl Stayer {
    fn run(&mut self, hard_deadline: Instant, mut rng: Rng) -> Result<(), String> {
        let slow = self.rep.slow;
        let mut chunk = vec![0u8; 64 * 1024];
        if slow {
            self.s.set_nonblocking(true).map_err(|e| e.to_string())?;
        } else {
            self.s.set_read_timeout(Some(POLL)).map_err(|e| e.to_string())?;
        }
        while !self.shared.stop.load(Ordering::Acquire) {
            if Instant::now() >= hard_deadline {
                return Err("never told to stop".into());
            }
            if slow {
                std::thread::sleep(rng.ms(SLOW_PAUSE_MS.0, SLOW_PAUSE_MS.1));
            }
            // A fast reader reads once (blocking up to POLL); a slow one
            // drains everything that queued up during its pause.
            for _ in 0..if slow { 4096 } else { 1 } {
                match self.read_some(&mut chunk)? {
                    Got::Data => {
                        if let Some(f) = self.process()? {
                            return Err(format!(
                                "closed by the server (code {:?}) after seq {}",
                                f.close_code(),
                                self.last
                            ));
                        }
                    }
                    Got::Nothing => break,
                    Got::Eof => return Err(format!("connection ended after seq {}", self.last)),
                }
            }
        }
        self.close(&mut chunk)
    }

    fn read_some(&mut self, chunk: &mut [u8]) -> Result<Got, String> {
        match self.s.read(chunk) {
            Ok(0) => Ok(Got::Eof),
            Ok(n) => {
                self.fr.feed(&chunk[..n]);
                Ok(Got::Data)
            }
            Err(e) if timed_out(&e) || e.kind() == io::ErrorKind::Interrupted => Ok(Got::Nothing),
            Err(e) => Err(format!("read after seq {}: {e}", self.last)),
        }
    }

    /// Handles every whole frame received so far; stops at a close frame
    /// and returns it.
    fn process(&mut self) -> Result<Option<Frame>, String> {
        while let Some(f) = self.fr.next_frame()? {
            match f.opcode {
                OP_TEXT if f.fin => self.on_text(&f.payload),
                OP_TEXT | OP_CONT => return Err("fragmented message from the server".into()),
                OP_PING => {
                    self.write_all(&frame(OP_PONG, &f.payload, mask(self.i)))?;
                    self.rep.pongs += 1;
                }
                OP_PONG => {}
                OP_CLOSE => return Ok(Some(f)),
                op => return Err(format!("unexpected opcode {op:#x}")),
            }
        }
        Ok(None)
    }

    fn on_text(&mut self, payload: &[u8]) {
        self.rep.received += 1;
        let seq = std::str::from_utf8(payload)
            .ok()
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        let Some(seq) = seq else {
            self.anomaly(format!(
                "not a sequence number: {:?}",
                String::from_utf8_lossy(payload)
            ));
            return;
        };
        if seq == self.last + 1 {
            self.last = seq;
            self.shared.seen[self.i].store(seq, Ordering::Release);
            return;
        }
        let what = if seq <= self.last {
            "duplicate or out of order"
        } else {
            "gap"
        };
        self.anomaly(format!("{what}: got {seq} after {}", self.last));
        self.last = self.last.max(seq);
    }

    fn anomaly(&mut self, what: String) {
        self.rep.anomalies += 1;
        if self.rep.first_anomaly.is_none() {
            self.rep.first_anomaly = Some(what);
        }
    }

    /// Writes a small control frame, also on a non-blocking socket.
    fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !bytes.is_empty() {
            match self.s.write(bytes) {
                Ok(0) => return Err("write returned 0".into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if timed_out(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        Ok(())
    }

    /// Close handshake: our close frame, the server's answer (1000), then
    /// the server closes the TCP connection.
    fn close(&mut self, chunk: &mut [u8]) -> Result<(), String> {
        self.s.set_nonblocking(false).map_err(|e| e.to_string())?;
        self.s.set_read_timeout(Some(POLL)).map_err(|e| e.to_string())?;
        self.write_all(&close_frame(1000, mask(self.i)))?;
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut answered = false;
        while Instant::now() < deadline {
            if !answered {
                if let Some(f) = self.process()? {
                    if f.close_code() != Some(1000) {
                        return Err(format!("close answered with code {:?}", f.close_code()));
                    }
                    answered = true;
                }
            }
            match self.read_some(chunk)? {
                Got::Data | Got::Nothing => {}
                Got::Eof if answered => return Ok(()),
                Got::Eof => return Err("connection ended before the close answer".into()),
            }
        }
        Err(if answered {
            "server kept the TCP connection open after the close handshake".into()
        } else {
            "no close answer".into()
        })
    }
}
