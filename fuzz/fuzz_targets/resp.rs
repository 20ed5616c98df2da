//! `resp::parse`, two ways per input:
//!
//! 1. On the raw bytes, under tight and roomy `Limits`: no panic; a value
//!    uses at least one byte and no more than the buffer; a prefix cut where
//!    the input says, and one byte short of the value, is `Ok(None)` before
//!    the value ends and the whole buffer's outcome after (for an error: that
//!    error or `Ok(None)`); bytes appended change neither a value nor an
//!    error. A value, re-encoded by the general encoder below, parses back to
//!    itself using all of the encoding, every strict prefix of which is
//!    `Ok(None)`; and the encoding is never longer than the input it came
//!    from, and as long only if it is the same bytes (the one spelling of
//!    each value is the shortest).
//! 2. As a recipe for a command: arguments of any bytes go through
//!    `encode_command` and must parse back as an array of those bulk strings.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wspush::resp::{encode_command, parse, Limits, ParseError, Value};

type Outcome = std::result::Result<Option<(Value, usize)>, ParseError>;

const TIGHT: Limits = Limits {
    max_bulk: 16,
    max_elements: 4,
    max_depth: 3,
};

const ROOMY: Limits = Limits {
    max_bulk: 64 << 10,
    max_elements: 1024,
    max_depth: 32,
};

const TAILS: [&[u8]; 3] = [b"\r\n", b"+OK\r\n", b"*1\r\n\n\0\xff"];

/// Any value, as Redis would send it (integers without leading zeros).
fn encode(v: &Value, out: &mut Vec<u8>) {
    let mut line = |kind: u8, text: &[u8]| {
        out.push(kind);
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
    };
    match v {
        Value::Simple(s) => line(b'+', s),
        Value::Error(s) => line(b'-', s),
        Value::Integer(i) => line(b':', i.to_string().as_bytes()),
        Value::Bulk(None) => line(b'$', b"-1"),
        Value::Bulk(Some(body)) => {
            line(b'$', body.len().to_string().as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        Value::Array(None) => line(b'*', b"-1"),
        Value::Array(Some(items)) => {
            line(b'*', items.len().to_string().as_bytes());
            for item in items {
                encode(item, out);
            }
        }
    }
}

/// What a cut of the buffer may give, knowing the whole buffer gives `out`.
fn check_prefix(buf: &[u8], cut: usize, limits: &Limits, out: &Outcome) {
    let part = parse(&buf[..cut], limits);
    match out {
        Ok(Some((_, n))) if cut < *n => assert_eq!(part, Ok(None), "cut at {cut} of a {n}-byte value"),
        Err(_) if part == Ok(None) => {}
        _ => assert_eq!(&part, out, "cut at {cut} of {} bytes", buf.len()),
    }
}

fn check_raw(buf: &[u8], limits: &Limits) {
    let out = parse(buf, limits);
    let (Some(&first), Some(&last)) = (buf.first(), buf.last()) else {
        assert_eq!(out, Ok(None));
        return;
    };
    for b in [first, last] {
        check_prefix(buf, usize::from(b) * buf.len() / 256, limits, &out);
    }
    if matches!(out, Ok(Some(_)) | Err(_)) {
        for tail in TAILS {
            let longer = [buf, tail].concat();
            assert_eq!(parse(&longer, limits), out, "with {tail:?} appended");
        }
    }
    let Ok(Some((value, n))) = &out else {
        return;
    };
    let n = *n;
    assert!(0 < n && n <= buf.len(), "used {n} of {} bytes", buf.len());
    check_prefix(buf, n - 1, limits, &out);

    let mut enc = Vec::new();
    encode(value, &mut enc);
    assert_eq!(
        parse(&enc, limits),
        Ok(Some((value.clone(), enc.len()))),
        "re-encoded as {:?}",
        String::from_utf8_lossy(&enc)
    );
    assert!(
        enc.len() < n || enc == buf[..n],
        "{:?} re-encoded as {:?}",
        String::from_utf8_lossy(&buf[..n]),
        String::from_utf8_lossy(&enc)
    );
    // Every cut when short; beyond that checking all is quadratic.
    let step = enc.len() / 256 + 1;
    for cut in (0..enc.len()).step_by(step).chain([enc.len() - 1]) {
        assert_eq!(parse(&enc[..cut], limits), Ok(None), "encoding cut at {cut}");
    }
}

fn check_command(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let mut args: Vec<&[u8]> = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let len = u.int_in_range(0..=40)?;
        args.push(u.bytes(len.min(u.len()))?);
    }
    let mut enc = Vec::new();
    encode_command(&mut enc, &args);
    let expected = Value::Array(Some(args.iter().map(|a| Value::Bulk(Some(a.to_vec()))).collect()));
    let show = || String::from_utf8_lossy(&enc).into_owned();
    assert_eq!(parse(&enc, &ROOMY), Ok(Some((expected, enc.len()))), "{}", show());
    for cut in 0..enc.len() {
        assert_eq!(parse(&enc[..cut], &ROOMY), Ok(None), "cut at {cut} of {}", show());
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    for limits in [TIGHT, ROOMY] {
        check_raw(data, &limits);
    }
    let _ = check_command(data);
});
