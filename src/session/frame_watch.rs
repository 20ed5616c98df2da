//! Following a WebSocket client's frame headers before tungstenite parses
//! them: what one message and one turn may cost (SPEC §12).

/// Most data frames one message may have (SPEC §12). An empty
/// continuation costs the client 6 bytes and the server a frame parse, so
/// without a cap a message that never ends is an endless stream of work.
pub const MAX_FRAGMENTS: u16 = 256;

/// Input one WebSocket may feed the loop per turn, in bytes and in frames
/// (SPEC §12: then the others are served). Commands are a few dozen bytes,
/// so an honest client never notices; a flood is read at this pace.
pub const TURN_BYTES: usize = 16 * 1024;
pub const TURN_FRAMES: usize = 64;

/// Where the watcher is in the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Step {
    /// Next byte: FIN, RSV and opcode.
    #[default]
    Opcode,
    /// Next byte: MASK and the 7-bit length.
    Length,
    /// This many bytes of the 16- or 64-bit length remain.
    ExtLength(u8),
    /// This many bytes of the masking key remain.
    Mask(u8),
    /// `FrameWatch::left` payload bytes remain.
    Payload,
}

/// Follows the frame headers in a client's raw input, before tungstenite
/// parses it, to count what tungstenite does not let us count: the data
/// frames of a message still being assembled (its `read` keeps consuming
/// fragments of an unfinished message without returning), and every frame
/// of a turn, control frames included.
///
/// Sans-IO: it sees bytes only, in pieces of any size, and keeps 16 bytes
/// of state per connection. It trusts nothing it reads; a header
/// tungstenite will refuse (reserved bits, unmasked, too long) only has to
/// keep the watcher in step until that refusal closes the connection.
#[derive(Debug, Clone, Default)]
pub struct FrameWatch {
    /// Payload bytes of the current frame still to pass.
    left: u64,
    step: Step,
    masked: bool,
    /// Data frames of the message being assembled; 0 between messages.
    fragments: u16,
    /// A message went over `MAX_FRAGMENTS`; everything after is refused.
    tripped: bool,
}

/// What one piece of input held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Frame headers that began in the piece.
    pub frames: usize,
    /// Set when a message went over `MAX_FRAGMENTS`: the offset of the
    /// header of its first frame too many. Bytes before it are whole
    /// frames of the stream as it was; nothing from it on may be parsed.
    pub cut: Option<usize>,
}

impl FrameWatch {
    /// True once a message had too many frames.
    pub fn tripped(&self) -> bool {
        self.tripped
    }

    /// Follows `bytes`, the next piece of the client's input.
    pub fn feed(&mut self, bytes: &[u8]) -> Fed {
        let mut fed = Fed { frames: 0, cut: None };
        if self.tripped {
            fed.cut = Some(0);
            return fed;
        }
        let mut i = 0;
        while i < bytes.len() {
            match self.step {
                Step::Opcode => {
                    let b = bytes[i];
                    // Opcodes 0-7 are data frames, 8-15 control frames.
                    if b & 0x08 == 0 {
                        let continuation = b & 0x0F == 0;
                        self.fragments = if continuation {
                            self.fragments.saturating_add(1)
                        } else {
                            1
                        };
                        if self.fragments > MAX_FRAGMENTS {
                            self.tripped = true;
                            fed.cut = Some(i);
                            return fed;
                        }
                        if b & 0x80 != 0 {
                            // FIN: the message is complete.
                            self.fragments = 0;
                        }
                    }
                    fed.frames += 1;
                    self.step = Step::Length;
                    i += 1;
                }
                Step::Length => {
                    let b = bytes[i];
                    i += 1;
                    self.masked = b & 0x80 != 0;
                    self.left = 0;
                    match b & 0x7F {
                        126 => self.step = Step::ExtLength(2),
                        127 => self.step = Step::ExtLength(8),
                        n => {
                            self.left = u64::from(n);
                            self.after_length();
                        }
                    }
                }
                Step::ExtLength(n) => {
                    self.left = (self.left << 8) | u64::from(bytes[i]);
                    i += 1;
                    if n > 1 {
                        self.step = Step::ExtLength(n - 1);
                    } else {
                        self.after_length();
                    }
                }
                Step::Mask(n) => {
                    let take = usize::from(n).min(bytes.len() - i);
                    i += take;
                    // `take` is at most `n`, which is at most 4.
                    let rest = n - take as u8;
                    if rest > 0 {
                        self.step = Step::Mask(rest);
                    } else {
                        self.enter_payload();
                    }
                }
                Step::Payload => {
                    let avail = (bytes.len() - i) as u64;
                    let take = self.left.min(avail);
                    i += take as usize;
                    self.left -= take;
                    if self.left == 0 {
                        self.step = Step::Opcode;
                    }
                }
            }
        }
        fed
    }

    fn after_length(&mut self) {
        if self.masked {
            self.step = Step::Mask(4);
        } else {
            self.enter_payload();
        }
    }

    fn enter_payload(&mut self) {
        self.step = if self.left == 0 {
            Step::Opcode
        } else {
            Step::Payload
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: `first` is the FIN/opcode byte; masked with a
    /// fixed key (the watcher never unmasks).
    fn frame(first: u8, len: usize, masked: bool) -> Vec<u8> {
        let mut f = vec![first];
        let mask_bit = if masked { 0x80 } else { 0 };
        if len < 126 {
            f.push(mask_bit | len as u8);
        } else if len <= usize::from(u16::MAX) {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    const TEXT: u8 = 0x01;
    const CONT: u8 = 0x00;
    const FIN: u8 = 0x80;
    const PING: u8 = 0x89;
    const CLOSE: u8 = 0x88;

    /// Feeds `bytes` in two pieces split at `at`; returns the frames seen
    /// and where (in the whole stream) the watcher cut, if it did.
    fn feed_split(bytes: &[u8], at: usize) -> (usize, Option<usize>, FrameWatch) {
        let mut w = FrameWatch::default();
        let a = w.feed(&bytes[..at]);
        if let Some(cut) = a.cut {
            return (a.frames, Some(cut), w);
        }
        let b = w.feed(&bytes[at..]);
        (a.frames + b.frames, b.cut.map(|c| at + c), w)
    }

    /// Every length form, masked and not, data and control frames: the
    /// same frames are seen however the input is split, and the watcher
    /// ends exactly at a frame boundary.
    #[test]
    fn frames_are_followed_across_every_split_point() {
        let parts = [
            frame(TEXT, 0, true),
            frame(CONT, 125, true),
            frame(PING, 4, true),
            frame(CONT, 126, true),
            frame(CONT, 65_535, false),
            frame(FIN | CONT, 65_536, true),
            frame(FIN | TEXT, 300, false),
            frame(CLOSE, 2, true),
        ];
        let stream: Vec<u8> = parts.concat();
        for at in 0..=stream.len() {
            let (frames, cut, w) = feed_split(&stream, at);
            assert_eq!((frames, cut), (parts.len(), None), "split at {at}");
            assert_eq!(w.step, Step::Opcode, "split at {at}");
            assert_eq!(w.fragments, 0, "split at {at}");
        }
        // Byte by byte, too.
        let mut w = FrameWatch::default();
        let frames: usize = stream.chunks(1).map(|b| w.feed(b).frames).sum();
        assert_eq!(frames, parts.len());
        // And tungstenite sees the same frames in the same bytes.
        let mut sock = tungstenite::protocol::frame::FrameSocket::new(std::io::Cursor::new(stream));
        let mut seen = 0;
        while let Ok(Some(_)) = sock.read(None) {
            seen += 1;
        }
        assert_eq!(seen, parts.len());
    }

    /// A message of `data` data frames (all but the last without FIN),
    /// with a ping after each of the first few: pings never count.
    fn message(data: usize) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for i in 0..data {
            let op = if i == 0 { TEXT } else { CONT };
            let fin = if i + 1 == data { FIN } else { 0 };
            starts.push(out.len());
            out.extend(frame(fin | op, usize::from(i == 0), true));
            if i < 3 {
                out.extend(frame(PING, 0, true));
            }
        }
        (out, starts)
    }

    #[test]
    fn a_message_of_256_frames_passes_and_257_are_cut_at_the_last() {
        let (ok, _) = message(usize::from(MAX_FRAGMENTS));
        // Two of them back to back: the count starts again per message.
        let twice = [ok.clone(), ok.clone()].concat();
        for at in 0..=twice.len() {
            let (frames, cut, w) = feed_split(&twice, at);
            assert_eq!(cut, None, "split at {at}");
            assert_eq!(frames, 2 * (256 + 3));
            assert!(!w.tripped());
        }
        let (over, starts) = message(usize::from(MAX_FRAGMENTS) + 1);
        let last = starts[256];
        for at in 0..=over.len() {
            let (_, cut, w) = feed_split(&over, at);
            assert_eq!(cut, Some(last), "split at {at}");
            assert!(w.tripped());
        }
        // Once tripped, nothing more passes.
        let mut w = FrameWatch::default();
        assert_eq!(w.feed(&over).cut, Some(last));
        assert_eq!(w.feed(&frame(FIN | TEXT, 1, true)).cut, Some(0));
    }
}
