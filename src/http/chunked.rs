//! Decoding of `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! [`ChunkedDecoder`] is a state machine fed the bytes as they arrive: it
//! keeps its place (inside a size line, an extension, chunk data or the
//! trailers) and the body decoded so far between reads, so each byte is
//! looked at once however the client splits its request. Framing bytes are
//! consumed as they come and never kept: what a request holds in memory is
//! its decoded body, which the limit bounds. [`decode_chunked`] is the same
//! machine run over one buffer.

use super::request::{HttpError, Parsed};

/// Most hex digits in a chunk size. Sixteen digits already cover 64 bits; more
/// can only be padding or an overflow attempt, and parsers that disagree about
/// how to truncate a huge size disagree about framing.
const MAX_SIZE_DIGITS: u8 = 16;

/// Longest chunk extension: everything between a chunk's size and the CRLF
/// ending its line (whitespace and `;name=value` pairs). Extensions are
/// ignored; without a bound a client could make us scan an endless line, and
/// 256 bytes is far more than any real client sends.
pub const MAX_EXTENSION_BYTES: usize = 256;

/// Largest trailer section (all trailer lines plus the final empty line).
/// Trailers are ignored, so they only need to be bounded like a request head.
const MAX_TRAILER_BYTES: usize = 8192;

/// Where the decoder stands between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Reading the hex digits of a chunk size.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the digits, before the CR: whitespace and extensions. `len`
    /// counts their bytes, `ext` says a `;` was seen.
    Extension {
        size: usize,
        len: usize,
        ext: bool,
    },
    /// The size line's CR was seen; its LF must follow.
    SizeLf {
        size: usize,
    },
    /// Inside chunk data, `left` bytes still due.
    Data {
        left: usize,
    },
    /// Chunk data ended; its CR must follow, then its LF.
    DataCr,
    DataLf,
    /// In the trailer section, `total` bytes into it, `line` bytes into the
    /// current line; `cr`: the line's CR was seen and its LF must follow.
    Trailer {
        total: usize,
        line: usize,
        cr: bool,
    },
    /// The final empty line was consumed.
    Done,
    /// An error was reported; it is reported again for any further input.
    Failed(HttpError),
}

/// What one [`ChunkedDecoder::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Every byte given was consumed; the body goes on.
    Incomplete,
    /// The body ended after this many of the bytes given; the rest belong
    /// to whatever follows the request.
    Done(usize),
}

/// An incremental decoder for one chunked body.
///
/// Line endings must be CRLF: a bare LF (or a CR not followed by LF) anywhere
/// in the framing is a `BadRequest`. RFC 9112 lets recipients accept a bare LF,
/// but chunked framing is where lenient and strict parsers disagreeing on line
/// ends lets a request be smuggled past a front proxy, and no real client
/// sends bare LFs here.
///
/// The body limit counts decoded body bytes only, never framing: a body sent
/// as many tiny chunks is judged by its size. It is enforced against
/// announced chunk sizes, so a chunk header promising more than the remaining
/// allowance fails with `BodyTooLarge` before any of its data has to arrive.
/// Chunk extensions (at most [`MAX_EXTENSION_BYTES`]) and trailer fields are
/// syntax-checked only as far as framing needs (no control characters, CRLF
/// endings) and otherwise ignored.
///
/// The outcome never depends on how the bytes were split between calls:
/// every proper prefix of a valid body is `Incomplete`, and errors are
/// reported as early as the bytes seen so far prove them.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    max_body_bytes: usize,
    body: Vec<u8>,
    step: Step,
}

impl ChunkedDecoder {
    pub fn new(max_body_bytes: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            max_body_bytes,
            body: Vec::new(),
            step: Step::Size { size: 0, digits: 0 },
        }
    }

    /// Decoded body bytes so far.
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The decoded body, leaving the decoder empty-handed.
    pub fn take_body(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.body)
    }

    /// Consumes the next bytes of the body. After an error the decoder stays
    /// failed and reports the same error again.
    pub fn feed(&mut self, input: &[u8]) -> Result<Feed, HttpError> {
        let r = self.run(input);
        if let Err(e) = r {
            self.step = Step::Failed(e);
        }
        r
    }

    fn run(&mut self, input: &[u8]) -> Result<Feed, HttpError> {
        use HttpError::BadRequest;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.step = match self.step {
                Step::Size { size, digits } => match hex_value(b) {
                    Some(d) => {
                        let digits = digits + 1;
                        if digits > MAX_SIZE_DIGITS {
                            return Err(BadRequest("chunk size has too many digits"));
                        }
                        // Cannot overflow: at most 16 digits of 4 bits each.
                        let size = (size << 4) | u64::from(d);
                        // The value only grows as digits arrive, so an
                        // over-limit prefix is already conclusive.
                        let allowance = self.max_body_bytes.saturating_sub(self.body.len());
                        if size > u64::try_from(allowance).unwrap_or(u64::MAX) {
                            return Err(HttpError::BodyTooLarge);
                        }
                        Step::Size { size, digits }
                    }
                    None if digits == 0 => return Err(BadRequest("invalid chunk size")),
                    None => {
                        let size = usize::try_from(size).map_err(|_| BadRequest("chunk size overflows"))?;
                        // This byte is the first after the digits: look at it again there.
                        self.step = Step::Extension {
                            size,
                            len: 0,
                            ext: false,
                        };
                        continue;
                    }
                },
                // The size is `1*HEXDIG` with nothing before it; after it only
                // whitespace and `;`-introduced extensions may follow, so `5 5`
                // is rejected rather than read as 5 or 55.
                Step::Extension { size, len, ext } => match b {
                    b'\r' => Step::SizeLf { size },
                    _ if len >= MAX_EXTENSION_BYTES => return Err(BadRequest("chunk extension too long")),
                    b'\n' => return Err(BadRequest("bare LF in chunk size line")),
                    b' ' | b'\t' => Step::Extension {
                        size,
                        len: len + 1,
                        ext,
                    },
                    b';' => Step::Extension {
                        size,
                        len: len + 1,
                        ext: true,
                    },
                    _ if ext && is_text(b) => Step::Extension {
                        size,
                        len: len + 1,
                        ext,
                    },
                    _ => return Err(BadRequest("invalid chunk size line")),
                },
                Step::SizeLf { size } => match (b, size) {
                    (b'\n', 0) => Step::Trailer {
                        total: 0,
                        line: 0,
                        cr: false,
                    },
                    (b'\n', left) => Step::Data { left },
                    _ => return Err(BadRequest("bare CR in chunk size line")),
                },
                Step::Data { left } => {
                    // Data is opaque: copied in one go, not looked at.
                    let n = left.min(input.len() - i);
                    self.body.extend_from_slice(&input[i..i + n]);
                    i += n;
                    self.step = if n == left {
                        Step::DataCr
                    } else {
                        Step::Data { left: left - n }
                    };
                    continue;
                }
                Step::DataCr if b == b'\r' => Step::DataLf,
                Step::DataLf if b == b'\n' => Step::Size { size: 0, digits: 0 },
                Step::DataCr | Step::DataLf => return Err(BadRequest("chunk data not followed by CRLF")),
                Step::Trailer { total, .. } if total >= MAX_TRAILER_BYTES => {
                    return Err(HttpError::HeadersTooLarge)
                }
                Step::Trailer { line, cr: true, .. } if b == b'\n' && line == 0 => {
                    self.step = Step::Done;
                    return Ok(Feed::Done(i + 1));
                }
                Step::Trailer { total, cr: true, .. } if b == b'\n' => Step::Trailer {
                    total: total + 1,
                    line: 0,
                    cr: false,
                },
                Step::Trailer { cr: true, .. } => return Err(BadRequest("bare CR in trailer")),
                Step::Trailer { total, line, .. } => match b {
                    b'\r' => Step::Trailer {
                        total: total + 1,
                        line,
                        cr: true,
                    },
                    b'\n' => return Err(BadRequest("bare LF in trailer")),
                    _ if is_text(b) => Step::Trailer {
                        total: total + 1,
                        line: line + 1,
                        cr: false,
                    },
                    _ => return Err(BadRequest("invalid byte in trailer")),
                },
                Step::Done => return Ok(Feed::Done(i)),
                Step::Failed(e) => return Err(e),
            };
            i += 1;
        }
        match self.step {
            Step::Done => Ok(Feed::Done(input.len())),
            Step::Failed(e) => Err(e),
            _ => Ok(Feed::Incomplete),
        }
    }
}

/// Decode a complete `Transfer-Encoding: chunked` body from the start of `buf`.
///
/// Returns the decoded body and the bytes consumed (through the final CRLF
/// after the trailers), or [`Parsed::Incomplete`] while more bytes are needed.
/// The rules are [`ChunkedDecoder`]'s: this is one `feed` of the whole buffer.
pub fn decode_chunked(buf: &[u8], max_body_bytes: usize) -> Result<Parsed<Vec<u8>>, HttpError> {
    let mut d = ChunkedDecoder::new(max_body_bytes);
    Ok(match d.feed(buf)? {
        Feed::Done(n) => Parsed::Done(d.take_body(), n),
        Feed::Incomplete => Parsed::Incomplete,
    })
}

pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Bytes allowed inside extensions and trailer lines: visible characters,
/// space, tab and obs-text. Other controls (NUL in particular) have no place
/// in HTTP field syntax and are treated differently by different parsers.
fn is_text(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 65536;

    fn done(buf: &[u8]) -> (Vec<u8>, usize) {
        match decode_chunked(buf, MAX) {
            Ok(Parsed::Done(body, n)) => (body, n),
            Ok(Parsed::Incomplete) => panic!("incomplete: {:?}", String::from_utf8_lossy(buf)),
            Err(e) => panic!("error {e:?}: {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn err(buf: &[u8]) -> HttpError {
        err_with(buf, MAX)
    }

    fn err_with(buf: &[u8], max: usize) -> HttpError {
        match decode_chunked(buf, max) {
            Err(e) => e,
            Ok(Parsed::Incomplete) => panic!("incomplete: {:?}", String::from_utf8_lossy(buf)),
            Ok(Parsed::Done(body, _)) => panic!("decoded {:?}", String::from_utf8_lossy(&body)),
        }
    }

    fn incomplete(buf: &[u8]) -> bool {
        matches!(decode_chunked(buf, MAX), Ok(Parsed::Incomplete))
    }

    fn is_bad_request(e: HttpError) -> bool {
        matches!(e, HttpError::BadRequest(_))
    }

    const VALID: [&[u8]; 7] = [
        b"0\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n",
        b"a;name=value\r\n0123456789\r\n0 ; last=\"yes\"\r\n\r\n",
        b"A\r\n0123456789\r\nf\r\n0123456789abcde\r\n0\r\n\r\n",
        b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\nChecksum: abc\r\n\r\n",
        b"0003 \t;x\r\n\r\n\n\r\n0\r\n\r\n",
    ];

    #[test]
    fn empty_body() {
        assert_eq!(done(b"0\r\n\r\n"), (Vec::new(), 5));
        assert_eq!(done(b"000\r\n\r\n"), (Vec::new(), 7));
    }

    #[test]
    fn single_chunk() {
        let buf = b"5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(done(buf), (b"hello".to_vec(), buf.len()));
    }

    #[test]
    fn several_chunks() {
        let buf = b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n";
        assert_eq!(done(buf), (b"hello world".to_vec(), buf.len()));
    }

    #[test]
    fn chunk_data_is_opaque() {
        // Data containing CRLF, "0\r\n\r\n" and NUL is passed through untouched.
        let buf = b"7\r\n0\r\n\r\n\x00\xff\r\n0\r\n\r\n";
        assert_eq!(done(buf), (b"0\r\n\r\n\x00\xff".to_vec(), buf.len()));
    }

    #[test]
    fn extensions_are_ignored() {
        let buf = b"a;name=value\r\n0123456789\r\n0 ; last=\"yes\"\r\n\r\n";
        assert_eq!(done(buf), (b"0123456789".to_vec(), buf.len()));
        let buf = b"2;a;b=c\t;d=\"\xc3\xa9\"\r\nok\r\n0;\r\n\r\n";
        assert_eq!(done(buf), (b"ok".to_vec(), buf.len()));
    }

    #[test]
    fn trailers_are_ignored() {
        let buf = b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\nChecksum: abc\r\n\r\n";
        assert_eq!(done(buf), (b"abc".to_vec(), buf.len()));
    }

    #[test]
    fn uppercase_and_lowercase_hex() {
        let mut buf = b"1A\r\n".to_vec();
        buf.extend_from_slice(&[b'x'; 26]);
        buf.extend_from_slice(b"\r\n1a\r\n");
        buf.extend_from_slice(&[b'y'; 26]);
        buf.extend_from_slice(b"\r\n0\r\n\r\n");
        let (body, n) = done(&buf);
        assert_eq!(body.len(), 52);
        assert_eq!(n, buf.len());
    }

    #[test]
    fn consumed_count_stops_at_end_of_body() {
        let mut buf = b"5\r\nhello\r\n0\r\n\r\n".to_vec();
        let end = buf.len();
        buf.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        assert_eq!(done(&buf), (b"hello".to_vec(), end));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for buf in VALID {
            for cut in 0..buf.len() {
                assert!(
                    incomplete(&buf[..cut]),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(buf)
                );
            }
            let (_, n) = done(buf);
            assert_eq!(n, buf.len());
        }
    }

    #[test]
    fn missing_crlf_after_data() {
        assert!(is_bad_request(err(b"5\r\nhelloX\r\n0\r\n\r\n")));
        assert!(is_bad_request(err(b"5\r\nhello\n0\r\n\r\n")));
        assert!(is_bad_request(err(b"5\r\nhello\rX")));
        // Data longer than announced is detected as soon as the extra byte is seen.
        assert!(is_bad_request(err(b"3\r\nhello")));
        assert!(incomplete(b"5\r\nhello\r"));
    }

    #[test]
    fn bare_lf_is_rejected() {
        assert!(is_bad_request(err(b"5\nhello\r\n0\r\n\r\n")));
        assert!(is_bad_request(err(b"0\n\r\n")));
        assert!(is_bad_request(err(b"0\r\n\n")));
        assert!(is_bad_request(err(b"0\r\nX: 1\n\r\n")));
        assert!(is_bad_request(err(b"5\rhello")));
        assert!(is_bad_request(err(b"0\r\n\rX")));
    }

    #[test]
    fn bad_chunk_size() {
        for buf in [
            b"\r\n".as_slice(),
            b"g\r\n",
            b"-5\r\n",
            b"+5\r\n",
            b"0x5\r\n",
            b" 5\r\n",
            b";ext\r\n",
            b"5 5\r\nhello\r\n",
            b"5x\r\n",
            b"5;\x00\r\n",
            b"5;a\x7f\r\n",
        ] {
            assert!(is_bad_request(err(buf)), "{:?}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn overflowing_chunk_size() {
        // Sixteen digits are accepted syntactically, the seventeenth is not,
        // even when they are leading zeros.
        assert!(is_bad_request(err_with(b"FFFFFFFFFFFFFFFFF\r\n", usize::MAX)));
        assert!(is_bad_request(err_with(b"00000000000000001\r\n", usize::MAX)));
        assert!(is_bad_request(err_with(
            b"1000000000000000000000000000000000000000\r\n",
            usize::MAX
        )));
        let buf = b"0000000000000001\r\nx\r\n0\r\n\r\n";
        assert_eq!(done(buf), (b"x".to_vec(), buf.len()));
        // Sixteen F's are fine syntactically but too large for any real limit.
        assert_eq!(err(b"FFFFFFFFFFFFFFFF\r\n"), HttpError::BodyTooLarge);
    }

    /// Found by fuzzing: a size over the limit gave 413 when the read ended
    /// within its first 16 digits but 400 ("too many digits") when more had
    /// arrived, so the answer depended on how the client's bytes were split.
    #[test]
    fn over_limit_size_is_too_large_however_many_digits_follow() {
        let long = [b"3".as_slice(), &[b'D'; 39], b"\r\n5\r"].concat();
        for cut in 2..=long.len() {
            assert_eq!(
                err_with(&long[..cut], 16),
                HttpError::BodyTooLarge,
                "cut at {cut}"
            );
        }
        // Leading zeros never exceed a limit, so their count still decides.
        assert!(is_bad_request(err_with(b"00000000000000000\r\n", 16)));
    }

    #[test]
    fn oversize_announced() {
        // The chunk header alone is enough; no data needs to arrive.
        assert_eq!(err_with(b"11\r\n", 16), HttpError::BodyTooLarge);
        assert_eq!(err_with(b"10000\r\n", 0xffff), HttpError::BodyTooLarge);
        // Even before the size line is complete, once the digits prove it.
        assert_eq!(err_with(b"100", 16), HttpError::BodyTooLarge);
        // Exactly at the limit is fine.
        let buf = b"10\r\n0123456789abcdef\r\n0\r\n\r\n";
        assert!(matches!(decode_chunked(buf, 16), Ok(Parsed::Done(_, _))));
        assert_eq!(err_with(b"1\r\nx\r\n0\r\n\r\n", 0), HttpError::BodyTooLarge);
        assert!(matches!(decode_chunked(b"0\r\n\r\n", 0), Ok(Parsed::Done(_, 5))));
    }

    #[test]
    fn oversize_accumulated() {
        let buf = b"8\r\n01234567\r\n8\r\n01234567\r\n1\r\n";
        assert_eq!(err_with(buf, 16), HttpError::BodyTooLarge);
        let ok = b"8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n";
        assert!(matches!(decode_chunked(ok, 16), Ok(Parsed::Done(..))));
    }

    #[test]
    fn long_extensions() {
        // Up to MAX_EXTENSION_BYTES after the size digits: fine.
        let mut line = b"0005;".to_vec();
        line.resize(4 + MAX_EXTENSION_BYTES, b'a');
        assert!(incomplete(&line));
        let mut exact = line.clone();
        exact.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(done(&exact).0, b"hello");
        // One byte more is a malformed request, whatever the byte.
        for extra in [b'a', b' ', b'\n', b';'] {
            let mut over = line.clone();
            over.push(extra);
            assert_eq!(
                err(&over),
                HttpError::BadRequest("chunk extension too long"),
                "{extra}"
            );
        }
        // Whitespace padding counts too.
        let mut spaces = b"5".to_vec();
        spaces.resize(1 + MAX_EXTENSION_BYTES + 1, b' ');
        assert_eq!(err(&spaces), HttpError::BadRequest("chunk extension too long"));
        // The last chunk's extensions as well.
        let mut last = b"0;".to_vec();
        last.resize(1 + MAX_EXTENSION_BYTES + 1, b'x');
        assert_eq!(err(&last), HttpError::BadRequest("chunk extension too long"));
    }

    #[test]
    fn trailer_limit() {
        let mut buf = b"0\r\n".to_vec();
        let mut trailer = b"X: ".to_vec();
        trailer.resize(MAX_TRAILER_BYTES - 4, b'a');
        trailer.extend_from_slice(b"\r\n\r\n");
        assert_eq!(trailer.len(), MAX_TRAILER_BYTES);
        buf.extend_from_slice(&trailer);
        assert_eq!(done(&buf).1, buf.len());

        let mut over = b"0\r\nX: ".to_vec();
        over.resize(3 + MAX_TRAILER_BYTES - 3, b'a');
        over.extend_from_slice(b"\r\n\r\n");
        assert_eq!(err(&over), HttpError::HeadersTooLarge);

        // Many small lines add up.
        let mut many = b"0\r\n".to_vec();
        while many.len() < MAX_TRAILER_BYTES + 10 {
            many.extend_from_slice(b"X: y\r\n");
        }
        assert_eq!(err(&many), HttpError::HeadersTooLarge);

        // Incomplete but already over the limit.
        let mut endless = b"0\r\nX: ".to_vec();
        endless.resize(3 + MAX_TRAILER_BYTES, b'a');
        assert!(incomplete(&endless));
        endless.push(b'a');
        assert_eq!(err(&endless), HttpError::HeadersTooLarge);
    }

    #[test]
    fn invalid_trailer_bytes() {
        assert!(is_bad_request(err(b"0\r\nX: \x00\r\n\r\n")));
    }

    /// Every truncation and many single-byte mutations of valid bodies must
    /// return (never panic), and a decoded body never exceeds the limit or
    /// claims more bytes than were given.
    #[test]
    fn robustness_truncations_and_mutations() {
        let replacements = [0u8, b'\n', b'\r', b':', b';', b' ', b'0', b'f', b'G', 0xff];
        let check = |buf: &[u8], max: usize| {
            if let Ok(Parsed::Done(body, n)) = decode_chunked(buf, max) {
                assert!(n <= buf.len());
                assert!(body.len() <= max);
                assert!(body.len() <= n);
            }
        };
        for sample in VALID {
            for max in [0, 4, 10, MAX] {
                for cut in 0..=sample.len() {
                    check(&sample[..cut], max);
                }
                let mut buf = sample.to_vec();
                for i in 0..buf.len() {
                    let original = buf[i];
                    for r in replacements {
                        buf[i] = r;
                        check(&buf, max);
                    }
                    buf[i] = original;
                }
            }
        }
    }

    /// Random splices of framing fragments never panic.
    #[test]
    fn robustness_pseudo_random() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let fragments: [&[u8]; 10] = [
            b"0",
            b"5",
            b"fF",
            b"\r\n",
            b"\r",
            b"\n",
            b";x=y",
            b"hello",
            b"X: 1",
            b"FFFFFFFF",
        ];
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            for _ in 0..next() % 16 {
                if next() % 5 == 0 {
                    buf.push(next() as u8);
                } else {
                    buf.extend_from_slice(fragments[(next() % 10) as usize]);
                }
            }
            let max = (next() % 32) as usize;
            if let Ok(Parsed::Done(body, n)) = decode_chunked(&buf, max) {
                assert!(n <= buf.len() && body.len() <= max);
            }
        }
    }

    /// Feeds `buf` in the pieces `cuts` makes; the outcome as
    /// `decode_chunked` reports it, with `Done`'s count over all of `buf`.
    fn fed(buf: &[u8], cuts: &[usize], max: usize) -> Result<Parsed<Vec<u8>>, HttpError> {
        let mut d = ChunkedDecoder::new(max);
        let mut from = 0;
        for &to in cuts.iter().chain([&buf.len()]) {
            match d.feed(&buf[from..to])? {
                Feed::Done(n) => return Ok(Parsed::Done(d.take_body(), from + n)),
                Feed::Incomplete => from = to,
            }
        }
        Ok(Parsed::Incomplete)
    }

    /// Split anywhere, or fed one byte at a time, the decoder gives exactly
    /// the answer it gives for the whole buffer.
    #[test]
    fn split_anywhere_same_outcome() {
        let mut samples: Vec<Vec<u8>> = VALID.iter().map(|v| v.to_vec()).collect();
        for bad in [
            b"5\r\nhelloX\r\n".as_slice(),
            b"5;a\x7f\r\n",
            b"0\r\nX: 1\n\r\n",
            b"3\r\nabc\r\n0\r\nT: \x00\r\n\r\n",
            b"8\r\n01234567\r\n8\r\n01234567\r\n1\r\n",
            b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            samples.push(bad.to_vec());
        }
        let mut ext = b"1;".to_vec();
        ext.resize(1 + MAX_EXTENSION_BYTES + 1, b'e');
        samples.push(ext);
        for buf in &samples {
            for max in [0, 16, MAX] {
                let whole = decode_chunked(buf, max);
                for cut in 0..=buf.len() {
                    assert_eq!(fed(buf, &[cut], max), whole, "{buf:?} cut at {cut}");
                }
                let every: Vec<usize> = (0..buf.len()).collect();
                assert_eq!(fed(buf, &every, max), whole, "{buf:?} byte by byte");
            }
        }
    }

    /// The body limit counts body bytes, not framing: a body of exactly the
    /// limit sent one byte per chunk, each with a long extension, is fine.
    #[test]
    fn limit_counts_body_bytes_not_framing() {
        let mut enc = Vec::new();
        for _ in 0..1000 {
            enc.extend_from_slice(b"1;");
            enc.extend_from_slice(&[b'x'; 200]);
            enc.extend_from_slice(b"\r\nz\r\n");
        }
        enc.extend_from_slice(b"0\r\n\r\n");
        assert!(enc.len() > 200 * 1000);
        let (body, n) = match decode_chunked(&enc, 1000) {
            Ok(Parsed::Done(body, n)) => (body, n),
            other => panic!("{other:?}"),
        };
        assert_eq!((body.len(), n), (1000, enc.len()));
        assert_eq!(decode_chunked(&enc, 999), Err(HttpError::BodyTooLarge));
    }

    /// After an error the decoder keeps failing the same way; after the end
    /// it consumes nothing more.
    #[test]
    fn errors_and_the_end_are_sticky() {
        let mut d = ChunkedDecoder::new(MAX);
        let e = d.feed(b"5x").unwrap_err();
        assert_eq!(d.feed(b"\r\nhello\r\n0\r\n\r\n"), Err(e));
        let mut d = ChunkedDecoder::new(MAX);
        assert_eq!(d.feed(b"0\r\n\r\nnext"), Ok(Feed::Done(5)));
        assert_eq!(d.feed(b"more"), Ok(Feed::Done(0)));
        assert_eq!(d.body_len(), 0);
    }
}
