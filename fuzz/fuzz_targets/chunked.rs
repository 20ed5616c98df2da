//! `decode_chunked`, two ways per input:
//!
//! 1. On the raw bytes: no panic, and the properties the event loop relies on
//!    when it re-decodes the growing body after every read (a `Done` never
//!    claims more than the buffer, is stable with the tail cut off or more
//!    bytes appended, every strict prefix of it is `Incomplete`, and an error
//!    on a prefix is the same error on the whole buffer).
//! 2. As a recipe for a valid encoding: the input picks a body, its split
//!    into chunks, the spelling of each size line (leading zeros, hex case,
//!    whitespace, extensions) and trailers. Decoding must give back exactly
//!    the body with `consumed` equal to the encoding's length, every strict
//!    prefix must be `Incomplete`, and a limit one byte below the body's
//!    length must give `BodyTooLarge`.
//!
//! Both the raw bytes and the built encodings are also fed to one
//! `ChunkedDecoder` in pieces, split where the input chooses and one byte at
//! a time: the outcome must be exactly the one-shot outcome.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wspush::http::chunked::{decode_chunked, ChunkedDecoder, Feed, MAX_EXTENSION_BYTES};
use wspush::http::request::{HttpError, Parsed};

type Outcome = std::result::Result<Parsed<Vec<u8>>, HttpError>;

const TAILS: [&[u8]; 3] = [b"x", b"0\r\n\r\n", b"\r\n\r\n\n\0\xff"];

/// Cuts to try for "every strict prefix" of an `n`-byte encoding: all of them
/// for short ones; for long ones (checking all is quadratic) the first and
/// last bytes, an even sample, and a few bytes around each of (a sample of)
/// `marks`, the offsets where framing elements start.
fn prefix_cuts(n: usize, marks: &[usize]) -> Vec<usize> {
    if n <= 256 {
        return (0..n).collect();
    }
    let mut cuts: Vec<usize> = (0..24).chain(n - 8..n).chain((0..n).step_by(n / 64)).collect();
    for &m in marks.iter().step_by(marks.len() / 48 + 1) {
        cuts.extend((m.saturating_sub(3)..m + 4).filter(|&c| c < n));
    }
    cuts
}

/// Cut points the input chooses: its last byte says how many (up to 15),
/// the bytes before it where, each as a fraction of the length of `len`.
fn cuts(data: &[u8], len: usize) -> Vec<usize> {
    let Some((&k, rest)) = data.split_last() else {
        return Vec::new();
    };
    let k = usize::from(k % 16).min(rest.len());
    let mut cuts: Vec<usize> = rest[rest.len() - k..]
        .iter()
        .map(|&b| usize::from(b) * len / 256)
        .collect();
    cuts.sort_unstable();
    cuts
}

/// `buf` fed to one decoder in the pieces `cuts` makes, as `decode_chunked`
/// would report it.
fn fed(buf: &[u8], cuts: impl Iterator<Item = usize>, max: usize) -> Outcome {
    let mut d = ChunkedDecoder::new(max);
    let mut from = 0;
    for to in cuts.chain([buf.len()]) {
        match d.feed(&buf[from..to])? {
            Feed::Done(n) => return Ok(Parsed::Done(d.take_body(), from + n)),
            Feed::Incomplete => from = to,
        }
    }
    Ok(Parsed::Incomplete)
}

/// Split where `data` says and byte by byte, `buf` decodes to `expected`.
fn check_split(buf: &[u8], data: &[u8], max: usize, expected: &Outcome) {
    let split = fed(buf, cuts(data, buf.len()).into_iter(), max);
    assert_eq!(&split, expected, "split at {:?}", cuts(data, buf.len()));
    assert_eq!(&fed(buf, 0..buf.len(), max), expected, "byte by byte");
}

fn check_raw(buf: &[u8], max: usize) {
    let out = decode_chunked(buf, max);
    check_split(buf, buf, max, &out);

    if !buf.is_empty() {
        let cut = usize::from(buf[0]) * buf.len() / 256;
        let early = decode_chunked(&buf[..cut], max);
        if !matches!(early, Ok(Parsed::Incomplete)) {
            assert_eq!(
                early, out,
                "prefix of {cut} bytes disagrees with the whole buffer"
            );
        }
    }

    if let Ok(Parsed::Done(body, n)) = &out {
        let n = *n;
        assert!(n <= buf.len(), "consumed {n} of {} bytes", buf.len());
        assert!(
            body.len() <= max,
            "body of {} bytes over the limit {max}",
            body.len()
        );
        assert!(
            body.len() < n,
            "body of {} bytes from {n} bytes of framing",
            body.len()
        );
        assert_eq!(&buf[n - 2..n], b"\r\n", "consumed bytes do not end with CRLF");
        assert_eq!(decode_chunked(&buf[..n], max), out, "not stable without the tail");
        assert_eq!(
            decode_chunked(&buf[..n], body.len()),
            out,
            "needs more than the body's length"
        );
        for tail in TAILS {
            let longer = [&buf[..n], tail].concat();
            assert_eq!(
                decode_chunked(&longer, max),
                out,
                "not stable with {tail:?} appended"
            );
        }
        for cut in prefix_cuts(n, &[]) {
            let r = decode_chunked(&buf[..cut], max);
            assert_eq!(r, Ok(Parsed::Incomplete), "prefix of {cut} of {n} bytes");
        }
    }
}

/// Bytes allowed in a chunk extension or trailer line (the decoder's `is_text`).
fn text(u: &mut Unstructured, max_len: usize) -> Result<Vec<u8>> {
    let len = u.int_in_range(0..=max_len)?;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        let b: u8 = u.arbitrary()?;
        out.push(if b == b'\t' || (b >= 0x20 && b != 0x7f) {
            b
        } else {
            b'a'
        });
    }
    Ok(out)
}

/// `size` in hex as the input chooses to spell it, then optional whitespace
/// and extensions, then CRLF.
fn size_line(u: &mut Unstructured, size: usize, out: &mut Vec<u8>) -> Result<()> {
    let hex = if u.arbitrary()? {
        format!("{size:X}")
    } else {
        format!("{size:x}")
    };
    let zeros = u.int_in_range(0..=16 - hex.len())?;
    out.extend(std::iter::repeat_n(b'0', zeros));
    out.extend_from_slice(hex.as_bytes());
    let digits = out.len();
    let ws: &[u8] = u.choose(&[b"".as_slice(), b" ", b"\t", b" \t "])?;
    out.extend_from_slice(ws);
    // (`ratio` says yes forever once the input is used up: bound the loops.)
    for _ in 0..8 {
        if u.is_empty() || !u.ratio(1, 3)? {
            break;
        }
        out.push(b';');
        let used = out.len() - digits;
        let ext = text(u, MAX_EXTENSION_BYTES.saturating_sub(used).min(80))?;
        out.extend_from_slice(&ext);
    }
    // The decoder allows MAX_EXTENSION_BYTES after the digits (a cut can
    // only fall inside extension text, which stays valid).
    out.truncate(digits + MAX_EXTENSION_BYTES);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// A body and a valid chunked encoding of it, with the offsets where its
/// size lines, chunk data and trailer lines start.
fn encode(u: &mut Unstructured) -> Result<(Vec<u8>, Vec<u8>, Vec<usize>)> {
    let most = u.len().min(4096);
    let body_len = u.int_in_range(0..=most)?;
    let body = u.bytes(body_len.min(u.len()))?.to_vec();
    let mut enc = Vec::new();
    let mut marks = Vec::new();
    let mut rest = &body[..];
    while !rest.is_empty() {
        let size = u.int_in_range(1..=rest.len())?;
        marks.push(enc.len());
        size_line(u, size, &mut enc)?;
        marks.push(enc.len());
        enc.extend_from_slice(&rest[..size]);
        enc.extend_from_slice(b"\r\n");
        rest = &rest[size..];
    }
    marks.push(enc.len());
    size_line(u, 0, &mut enc)?;
    for _ in 0..8 {
        if u.is_empty() || !u.ratio(1, 4)? {
            break;
        }
        marks.push(enc.len());
        let mut line = text(u, 60)?;
        if line.is_empty() {
            line.push(b'x');
        }
        enc.extend_from_slice(&line);
        enc.extend_from_slice(b"\r\n");
    }
    marks.push(enc.len());
    enc.extend_from_slice(b"\r\n");
    Ok((body, enc, marks))
}

fn check_roundtrip(data: &[u8]) {
    let Ok((body, enc, marks)) = encode(&mut Unstructured::new(data)) else {
        return;
    };
    let expected: Outcome = Ok(Parsed::Done(body.clone(), enc.len()));
    let show = || String::from_utf8_lossy(&enc).into_owned();
    for max in [body.len(), 64 << 10, usize::MAX] {
        if max < body.len() {
            continue;
        }
        assert_eq!(decode_chunked(&enc, max), expected, "max {max}: {}", show());
    }
    for tail in TAILS {
        let longer = [&enc[..], tail].concat();
        assert_eq!(
            decode_chunked(&longer, body.len()),
            expected,
            "tail {tail:?}: {}",
            show()
        );
    }
    for cut in prefix_cuts(enc.len(), &marks) {
        let r = decode_chunked(&enc[..cut], body.len());
        assert_eq!(r, Ok(Parsed::Incomplete), "prefix of {cut} bytes of {}", show());
    }
    check_split(&enc, data, body.len(), &expected);
    if !body.is_empty() {
        let r = decode_chunked(&enc, body.len() - 1);
        assert_eq!(
            r,
            Err(HttpError::BodyTooLarge),
            "limit below the body: {}",
            show()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    for max in [64 << 10, 16, 0] {
        check_raw(data, max);
    }
    check_roundtrip(data);
});
