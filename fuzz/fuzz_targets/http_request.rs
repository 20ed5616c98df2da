//! `parse_head` on arbitrary bytes, under three sets of limits.
//!
//! Beyond "no panic", it checks the properties the event loop relies on when
//! it re-parses its growing read buffer after every read:
//! - a `Done` never claims more bytes than the buffer (or the head limit) holds,
//!   and what it claims ends with the line feed closing the head;
//! - a `Done` is stable: the same head and length for the claimed bytes alone
//!   and for the buffer with more bytes appended (a body, the next request);
//! - every strict prefix of a claimed head is `Incomplete` (a head split across
//!   reads is never rejected), and an error on a prefix is the same error on
//!   the whole buffer (more bytes never turn a rejection into something else);
//! - the parsed head respects the limits and the documented invariants.
//!
//! And it drives the incremental `HeadParser` the way a connection does, the
//! buffer growing piece by piece: split where the input chooses (its last
//! byte says how many cuts, the bytes before it where) and one byte at a
//! time. Whatever it answers besides `Incomplete` is `parse_head`'s answer
//! for the whole buffer; it answers as soon as the head is complete (or over
//! the limit); and it never stays `Incomplete` where `parse_head` has a head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wspush::http::request::{parse_head, BodyFraming, Head, HeadParser, HttpError, Limits, Parsed, Version};

const LIMITS: [Limits; 3] = [
    // The server's defaults.
    Limits {
        max_head_bytes: 8192,
        max_headers: 64,
        max_body_bytes: 64 << 10,
    },
    // Tight limits, so the limit paths are reached by small inputs.
    Limits {
        max_head_bytes: 96,
        max_headers: 3,
        max_body_bytes: 16,
    },
    // More header slots than fit on the stack, no body limit.
    Limits {
        max_head_bytes: 16384,
        max_headers: 100,
        max_body_bytes: usize::MAX,
    },
];

/// Bytes appended to check that a `Done` does not depend on what follows.
const TAILS: [&[u8]; 3] = [b"x", b"GET / HTTP/1.1\r\n\r\n", b"\r\n\r\n\n\0\xff"];

type Outcome = Result<Parsed<Head>, HttpError>;

/// `Head` has no `PartialEq`; its `Debug` form shows every field.
fn same(a: &Outcome, b: &Outcome) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn check(buf: &[u8], limits: &Limits) {
    let out = parse_head(buf, limits);

    // A prefix cut where the input says: an error there must stay the same
    // error, a `Done` there must be the same `Done` on the whole buffer.
    if !buf.is_empty() {
        let cut = usize::from(buf[0]) * buf.len() / 256;
        let early = parse_head(&buf[..cut], limits);
        match &early {
            Ok(Parsed::Incomplete) => {}
            Ok(Parsed::Done(..)) | Err(_) => assert!(
                same(&early, &out),
                "prefix of {cut} bytes gave {early:?}, whole buffer gave {out:?}"
            ),
        }
    }

    match &out {
        Ok(Parsed::Incomplete) => {
            assert!(
                buf.len() <= limits.max_head_bytes,
                "incomplete past the head limit"
            );
        }
        Err(_) => {}
        Ok(Parsed::Done(head, n)) => {
            let n = *n;
            assert!(n > 0 && n <= buf.len(), "consumed {n} of {} bytes", buf.len());
            assert!(n <= limits.max_head_bytes, "consumed {n} past the head limit");
            assert_eq!(buf[n - 1], b'\n', "head does not end with a line feed");
            check_head(head, limits);

            assert!(
                same(&parse_head(&buf[..n], limits), &out),
                "not stable without the tail"
            );
            for tail in TAILS {
                let longer = [&buf[..n], tail].concat();
                assert!(
                    same(&parse_head(&longer, limits), &out),
                    "not stable with {tail:?} appended"
                );
            }
            // Every strict prefix is incomplete. Checking all of them is
            // quadratic, so long heads get a sample.
            let step = if n <= 512 { 1 } else { n / 256 };
            let cuts = (0..n).step_by(step).chain(n.saturating_sub(8)..n);
            for cut in cuts {
                let r = parse_head(&buf[..cut], limits);
                assert!(
                    matches!(r, Ok(Parsed::Incomplete)),
                    "prefix of {cut} bytes of a {n}-byte head gave {r:?}"
                );
            }
        }
    }
}

fn check_head(head: &Head, limits: &Limits) {
    assert!(!head.method.is_empty());
    assert!(head.path.starts_with('/'), "path {:?}", head.path);
    assert!(!head.path.contains('?'), "path {:?}", head.path);
    assert!(head.headers().count() <= limits.max_headers);
    for (name, value) in head.headers() {
        assert!(!name.is_empty());
        assert_eq!(value.trim_matches([' ', '\t']), value, "value not trimmed");
        assert!(
            !value.contains(['\r', '\n', '\0']),
            "control byte in value {value:?}"
        );
    }
    match head.framing {
        BodyFraming::Length(len) => assert!(len <= limits.max_body_bytes),
        BodyFraming::Chunked => assert_eq!(head.version, Version::Http11),
        BodyFraming::None => {}
    }
    if head.expect_continue {
        assert_eq!(head.version, Version::Http11);
    }
    if head.header_has_token("connection", "close") {
        assert!(!head.keep_alive);
    }
}

/// Cut points the input chooses: its last byte says how many (up to 15),
/// the bytes before it where, each as a fraction of the length.
fn cuts(data: &[u8]) -> Vec<usize> {
    let Some((&k, rest)) = data.split_last() else {
        return Vec::new();
    };
    let k = usize::from(k % 16).min(rest.len());
    let mut cuts: Vec<usize> = rest[rest.len() - k..]
        .iter()
        .map(|&b| usize::from(b) * data.len() / 256)
        .collect();
    cuts.sort_unstable();
    cuts
}

/// Feeds a growing prefix of `buf`, ending at each of `cuts` and then at its
/// end, to one `HeadParser`; returns its first answer other than
/// `Incomplete` (or `Incomplete`) and how many bytes it had been given.
fn incremental(buf: &[u8], cuts: impl Iterator<Item = usize>, limits: &Limits) -> (Outcome, usize) {
    let mut p = HeadParser::default();
    for cut in cuts.chain([buf.len()]) {
        let out = p.parse(&buf[..cut], limits);
        if !matches!(out, Ok(Parsed::Incomplete)) {
            return (out, cut);
        }
    }
    (Ok(Parsed::Incomplete), buf.len())
}

fn check_incremental(buf: &[u8], limits: &Limits) {
    let whole = parse_head(buf, limits);
    // Where a head ends (or the limit is passed), if it does in `buf`.
    let decided = match &whole {
        Ok(Parsed::Done(_, n)) => Some(*n),
        Err(HttpError::HeadersTooLarge) if buf.len() > limits.max_head_bytes => {
            Some(limits.max_head_bytes + 1)
        }
        _ => None,
    };
    let runs = [
        incremental(buf, cuts(buf).into_iter(), limits),
        incremental(buf, 0..buf.len(), limits),
    ];
    for (i, (out, at)) in runs.iter().enumerate() {
        let how = if i == 0 {
            "split where the input says"
        } else {
            "byte by byte"
        };
        match out {
            Ok(Parsed::Incomplete) => {
                assert!(
                    decided.is_none() && !matches!(whole, Ok(Parsed::Done(..))),
                    "{how}: still incomplete where parse_head gives {whole:?}"
                );
            }
            _ => {
                assert!(
                    same(out, &whole),
                    "{how}: {out:?} after {at} bytes, parse_head {whole:?}"
                );
                assert!(
                    same(&parse_head(&buf[..*at], limits), out),
                    "{how}: {out:?} is not parse_head's answer for the {at} bytes given"
                );
            }
        }
        // One byte at a time, it answers with the byte that completes the
        // head (or passes the limit), if not earlier with an error.
        if let (Some(n), 1) = (decided, i) {
            match out {
                Ok(Parsed::Done(..)) => {
                    assert_eq!(*at, n, "byte by byte: head done after {at} bytes, ends at {n}")
                }
                _ => assert!(
                    *at <= n,
                    "byte by byte: answered after {at} bytes, decided by {n}"
                ),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for limits in &LIMITS {
        check(data, limits);
        check_incremental(data, limits);
    }
});
