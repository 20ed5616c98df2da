//! Decoding of `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! The decoder is stateless: the event loop calls [`decode_chunked`] on the
//! whole buffered body each time more bytes arrive. That is cheap because
//! bodies are capped (64 KiB by default) and every line the decoder scans is
//! bounded, so a slow or hostile sender cannot make one call expensive.

use super::request::{HttpError, Parsed};

/// Most hex digits in a chunk size. Sixteen digits already cover 64 bits; more
/// can only be padding or an overflow attempt, and parsers that disagree about
/// how to truncate a huge size disagree about framing.
const MAX_SIZE_DIGITS: usize = 16;

/// Longest chunk-size line (size, whitespace and extensions) without its CRLF.
/// Extensions are ignored, so without this cap a client could make us buffer
/// and rescan an endless line.
const MAX_SIZE_LINE: usize = 1024;

/// Largest trailer section (all trailer lines plus the final empty line).
/// Trailers are ignored, so they only need to be bounded like a request head.
const MAX_TRAILER_BYTES: usize = 8192;

/// Decode a complete `Transfer-Encoding: chunked` body from the start of `buf`.
///
/// Returns the decoded body and the bytes consumed (through the final CRLF
/// after the trailers), or [`Parsed::Incomplete`] while more bytes are needed.
/// Every proper prefix of a valid body is `Incomplete`; errors are reported as
/// early as the bytes seen so far prove them.
///
/// Line endings must be CRLF: a bare LF (or a CR not followed by LF) anywhere
/// in the framing is a `BadRequest`. RFC 9112 lets recipients accept a bare LF,
/// but chunked framing is where lenient and strict parsers disagreeing on line
/// ends lets a request be smuggled past a front proxy, and no real client
/// sends bare LFs here.
///
/// `max_body_bytes` is enforced against announced chunk sizes, so a chunk
/// header promising more than the remaining allowance fails with
/// `BodyTooLarge` before any of its data has to arrive. Chunk extensions and
/// trailer fields are syntax-checked only as far as framing needs (no control
/// characters, CRLF endings) and otherwise ignored.
pub fn decode_chunked(buf: &[u8], max_body_bytes: usize) -> Result<Parsed<Vec<u8>>, HttpError> {
    let mut body = Vec::new();
    let mut pos = 0;

    loop {
        let allowance = max_body_bytes.saturating_sub(body.len());
        let (size, line_len) = match parse_size_line(&buf[pos..], allowance)? {
            Some(v) => v,
            None => return Ok(Parsed::Incomplete),
        };
        pos += line_len;
        if size == 0 {
            break;
        }

        let rest = &buf[pos..];
        if rest.len() < size {
            return Ok(Parsed::Incomplete);
        }
        let (data, after) = rest.split_at(size);
        match after {
            [b'\r', b'\n', ..] => {}
            [] | [b'\r'] => return Ok(Parsed::Incomplete),
            _ => return Err(HttpError::BadRequest("chunk data not followed by CRLF")),
        }
        body.extend_from_slice(data);
        pos += size + 2;
    }

    match skip_trailers(&buf[pos..])? {
        Some(len) => Ok(Parsed::Done(body, pos + len)),
        None => Ok(Parsed::Incomplete),
    }
}

/// Parse `chunk-size [ chunk-ext ] CRLF` at the start of `buf`, returning the
/// size and the line length including CRLF, or `None` if the line is not
/// complete yet.
///
/// The size is `1*HEXDIG` with nothing before it: no sign, no `0x`, no
/// leading whitespace. After it only BWS and `;`-introduced extensions may
/// follow; e.g. `5 5` is rejected rather than read as 5 or 55.
fn parse_size_line(buf: &[u8], allowance: usize) -> Result<Option<(usize, usize)>, HttpError> {
    let allowance = u64::try_from(allowance).unwrap_or(u64::MAX);
    let mut size: u64 = 0;
    let mut digits = 0;
    while let Some(d) = buf.get(digits).and_then(|&b| hex_value(b)) {
        digits += 1;
        if digits > MAX_SIZE_DIGITS {
            return Err(HttpError::BadRequest("chunk size has too many digits"));
        }
        // Cannot overflow: at most 16 digits of 4 bits each.
        size = (size << 4) | u64::from(d);
        // The value only grows as digits arrive, so an over-limit prefix is
        // already conclusive. Checked per digit, so the verdict does not
        // depend on how many more digits were read in the same call.
        if size > allowance {
            return Err(HttpError::BodyTooLarge);
        }
    }
    let size = usize::try_from(size).map_err(|_| HttpError::BadRequest("chunk size overflows"))?;
    if digits == buf.len() {
        return Ok(None);
    }
    if digits == 0 {
        return Err(HttpError::BadRequest("invalid chunk size"));
    }

    let mut in_extension = false;
    for (i, &b) in buf.iter().enumerate().skip(digits) {
        match b {
            b'\r' => {
                return match buf.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((size, i + 2))),
                    Some(_) => Err(HttpError::BadRequest("bare CR in chunk size line")),
                };
            }
            _ if i >= MAX_SIZE_LINE => {
                return Err(HttpError::BadRequest("chunk size line too long"));
            }
            b'\n' => return Err(HttpError::BadRequest("bare LF in chunk size line")),
            b' ' | b'\t' => {}
            b';' => in_extension = true,
            _ if in_extension && is_text(b) => {}
            _ => return Err(HttpError::BadRequest("invalid chunk size line")),
        }
    }
    Ok(None)
}

/// Skip the trailer section after the last chunk: field lines up to and
/// including an empty line. Returns its length, or `None` if incomplete.
fn skip_trailers(buf: &[u8]) -> Result<Option<usize>, HttpError> {
    // Never look further than the limit allows, so the scan is bounded no
    // matter how much the client has sent.
    let window = &buf[..buf.len().min(MAX_TRAILER_BYTES)];
    let mut line_start = 0;
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\r' => match window.get(i + 1) {
                Some(b'\n') | None => {}
                Some(_) => return Err(HttpError::BadRequest("bare CR in trailer")),
            },
            b'\n' => {
                if i == 0 || window[i - 1] != b'\r' {
                    return Err(HttpError::BadRequest("bare LF in trailer"));
                }
                if i == line_start + 1 {
                    return Ok(Some(i + 1));
                }
                line_start = i + 1;
            }
            _ if is_text(b) => {}
            _ => return Err(HttpError::BadRequest("invalid byte in trailer")),
        }
    }
    if buf.len() > MAX_TRAILER_BYTES {
        Err(HttpError::HeadersTooLarge)
    } else {
        Ok(None)
    }
}

fn hex_value(b: u8) -> Option<u8> {
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
    fn long_size_line() {
        let mut line = b"5;".to_vec();
        line.resize(MAX_SIZE_LINE, b'a');
        assert!(incomplete(&line));
        let mut exact = line.clone();
        exact.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(done(&exact).0, b"hello");
        line.push(b'a');
        assert!(is_bad_request(err(&line)));
        // Whitespace padding is bounded the same way.
        let mut spaces = b"5".to_vec();
        spaces.resize(MAX_SIZE_LINE + 1, b' ');
        assert!(is_bad_request(err(&spaces)));
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
}
