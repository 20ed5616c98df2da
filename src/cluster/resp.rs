//! RESP2, the Redis wire protocol, as plain functions over bytes: enough to
//! send commands to Redis and read its replies, pub/sub messages included.
//!
//! Like the chunked decoder, the parser keeps no state between calls: the
//! caller appends each socket read to one buffer, calls [`parse`] until it
//! returns a value, and drops the `n` bytes that value used. Each call starts
//! again at the front of the buffer. That stays cheap because the parser
//! never scans a bulk string's body (its header says how long it is), every
//! line it does scan is bounded, and [`Limits`] are checked on headers, before
//! the bodies they announce arrive. Keeping a parse state across reads would
//! only save re-reading the finished elements of an unfinished array, at the
//! price of a second code path that must agree with this one.
//!
//! Every verdict is taken on the bytes read so far, left to right, so how a
//! reply is split across reads never changes the outcome: a prefix of the
//! input is incomplete or fails exactly as the whole input does.

use std::fmt;

/// Longest simple-string or error line, without its CRLF. Redis sends such
/// lines only for status words and error messages; without a bound a peer
/// that never sends CR would make every call rescan an ever-growing line.
const MAX_LINE: usize = 64 * 1024;

/// Digits allowed in an integer. Nineteen cover every `i64`; more can only be
/// leading zeros or an overflow, and the count keeps the line bounded.
const MAX_DIGITS: usize = 19;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK\r\n`
    Simple(Vec<u8>),
    /// `-ERR msg\r\n`: the text after the `-`.
    Error(Vec<u8>),
    /// `:42\r\n`
    Integer(i64),
    /// `$3\r\nfoo\r\n`; `$-1\r\n` is `Bulk(None)`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`; `*-1\r\n` is `Array(None)`.
    Array(Option<Vec<Value>>),
}

/// Why the bytes are not RESP2. Any of these means the stream is out of step
/// (or the peer is not Redis), so the connection cannot be used further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A value starts with a byte other than `+ - : $ *` (inline replies do
    /// not exist in RESP2, and RESP3 types are never asked for).
    BadType(u8),
    /// A bulk or array length is negative but not -1, the null marker.
    BadLength,
    /// An integer or length is empty, not decimal, longer than 19 digits or
    /// outside `i64`.
    BadInteger,
    /// A line or bulk body is not followed by exactly CR LF.
    MissingCrlf,
    /// A bulk string, array or line is over its limit.
    TooLarge,
    /// Arrays nest deeper than [`Limits::max_depth`].
    TooDeep,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::BadType(b) => write!(f, "unknown RESP type byte '{}'", b.escape_ascii()),
            ParseError::BadLength => f.write_str("negative RESP length other than -1"),
            ParseError::BadInteger => f.write_str("malformed or out-of-range RESP integer"),
            ParseError::MissingCrlf => f.write_str("RESP line or bulk string not ended by CRLF"),
            ParseError::TooLarge => f.write_str("RESP bulk string, array or line over the limit"),
            ParseError::TooDeep => f.write_str("RESP arrays nested deeper than the limit"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Limits so a hostile or broken peer cannot make us allocate without bound.
///
/// Each is checked as soon as a header is read, so a reply announcing too
/// much fails at once instead of after it has been buffered.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest bulk string body, in bytes.
    pub max_bulk: usize,
    /// Most elements in one array (each nested array has its own count).
    pub max_elements: usize,
    /// Most arrays inside one another: every `*` header counts, `*-1` and
    /// `*0` included, so a flat array is depth 1. The parser itself does not
    /// recurse, but dropping a `Value` does, so this also bounds that.
    pub max_depth: usize,
}

/// Parses one complete value at the start of `buf`.
/// Ok(None): need more bytes (nothing consumed). Ok(Some((v, n))): v used the first n bytes.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, ParseError> {
    // Arrays being filled, innermost last, each with how many elements it
    // still needs. A stack on the heap instead of recursion, so nesting
    // cannot overflow the call stack.
    let mut open: Vec<(Vec<Value>, usize)> = Vec::new();
    let mut pos = 0;
    loop {
        let Some((head, next)) = header(buf, pos)? else {
            return Ok(None);
        };
        pos = next;
        let mut value = match head {
            Header::Simple(line) => Value::Simple(line.to_vec()),
            Header::Error(line) => Value::Error(line.to_vec()),
            Header::Integer(i) => Value::Integer(i),
            Header::Bulk(None) => Value::Bulk(None),
            Header::Bulk(Some(len)) => {
                if len > limits.max_bulk {
                    return Err(ParseError::TooLarge);
                }
                // Only lengths are compared until the whole body is here: an
                // unfinished body costs nothing to recognise.
                let end = pos.saturating_add(len);
                let Some(&after) = buf.get(end) else {
                    return Ok(None);
                };
                if after != b'\r' {
                    return Err(ParseError::MissingCrlf);
                }
                let Some(next) = after_cr(buf, end)? else {
                    return Ok(None);
                };
                let body = buf[pos..end].to_vec();
                pos = next;
                Value::Bulk(Some(body))
            }
            Header::Array(len) => {
                if open.len() >= limits.max_depth {
                    return Err(ParseError::TooDeep);
                }
                match len {
                    None => Value::Array(None),
                    Some(n) if n > limits.max_elements => return Err(ParseError::TooLarge),
                    Some(0) => Value::Array(Some(Vec::new())),
                    Some(n) => {
                        // Every element takes at least 3 bytes, so this never
                        // reserves more than the buffer could fill, whatever
                        // the header claims.
                        let room = (buf.len() - pos) / 3;
                        open.push((Vec::with_capacity(n.min(room)), n));
                        continue;
                    }
                }
            }
        };
        // Hand the finished value to its array; an array that this fills is
        // finished in turn and goes to the array around it, and so on.
        loop {
            let Some((mut items, left)) = open.pop() else {
                return Ok(Some((value, pos)));
            };
            items.push(value);
            if left > 1 {
                open.push((items, left - 1));
                break;
            }
            value = Value::Array(Some(items));
        }
    }
}

/// Appends a command as a RESP array of bulk strings (how clients send commands).
///
/// Bulk strings carry their length, so arguments may hold any bytes,
/// CR LF included, unlike Redis's space-separated inline commands.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// A value's first line, checked as far as it goes on its own; a bulk body
/// or an array's elements follow it.
enum Header<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Integer(i64),
    Bulk(Option<usize>),
    Array(Option<usize>),
}

/// The header starting at `buf[pos]` and the offset just after its CRLF, or
/// `None` while the line is incomplete.
fn header(buf: &[u8], pos: usize) -> Result<Option<(Header<'_>, usize)>, ParseError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let start = pos + 1;
    let parsed = match kind {
        b'+' => line(buf, start)?.map(|(l, next)| (Header::Simple(l), next)),
        b'-' => line(buf, start)?.map(|(l, next)| (Header::Error(l), next)),
        b':' => integer(buf, start)?.map(|(i, next)| (Header::Integer(i), next)),
        b'$' => match integer(buf, start)? {
            Some((n, next)) => Some((Header::Bulk(length(n)?), next)),
            None => None,
        },
        b'*' => match integer(buf, start)? {
            Some((n, next)) => Some((Header::Array(length(n)?), next)),
            None => None,
        },
        other => return Err(ParseError::BadType(other)),
    };
    Ok(parsed)
}

/// The text of a simple-string or error line starting at `start`.
fn line(buf: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, ParseError> {
    for (i, &b) in buf[start..].iter().enumerate() {
        match b {
            b'\r' => return Ok(after_cr(buf, start + i)?.map(|next| (&buf[start..start + i], next))),
            b'\n' => return Err(ParseError::MissingCrlf),
            _ if i >= MAX_LINE => return Err(ParseError::TooLarge),
            _ => {}
        }
    }
    Ok(None)
}

/// `[-]digits CRLF` starting at `start`. Checked byte by byte, so a prefix
/// that is already wrong is wrong for the same reason however it continues.
fn integer(buf: &[u8], start: usize) -> Result<Option<(i64, usize)>, ParseError> {
    let rest = &buf[start..];
    let negative = rest.first() == Some(&b'-');
    let first_digit = usize::from(negative);
    let mut n: i64 = 0;
    for (i, &b) in rest.iter().enumerate().skip(first_digit) {
        match b {
            b'0'..=b'9' => {
                if i - first_digit == MAX_DIGITS {
                    return Err(ParseError::BadInteger);
                }
                let d = i64::from(b - b'0');
                // Accumulated towards its sign, so that i64::MIN, whose
                // magnitude is no i64, parses as well.
                n = n
                    .checked_mul(10)
                    .and_then(|n| {
                        if negative {
                            n.checked_sub(d)
                        } else {
                            n.checked_add(d)
                        }
                    })
                    .ok_or(ParseError::BadInteger)?;
            }
            b'\r' if i > first_digit => return Ok(after_cr(buf, start + i)?.map(|next| (n, next))),
            b'\n' => return Err(ParseError::MissingCrlf),
            _ => return Err(ParseError::BadInteger),
        }
    }
    Ok(None)
}

/// A length from a `$` or `*` header: -1 is null.
fn length(n: i64) -> Result<Option<usize>, ParseError> {
    match n {
        -1 => Ok(None),
        n if n < 0 => Err(ParseError::BadLength),
        // Only on 32-bit targets, where such a length is over any limit.
        n => usize::try_from(n).map(Some).map_err(|_| ParseError::TooLarge),
    }
}

/// At a CR ending a line: the offset after its LF, `None` if the LF has not
/// arrived yet; anything else after a CR is an error.
fn after_cr(buf: &[u8], cr: usize) -> Result<Option<usize>, ParseError> {
    match buf.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(cr + 2)),
        Some(_) => Err(ParseError::MissingCrlf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bulk: 1 << 20,
        max_elements: 1024,
        max_depth: 8,
    };

    const TIGHT: Limits = Limits {
        max_bulk: 16,
        max_elements: 4,
        max_depth: 2,
    };

    fn show(buf: &[u8]) -> String {
        String::from_utf8_lossy(buf).into_owned()
    }

    /// The value `buf` holds, which must use all of it.
    #[track_caller]
    fn one(buf: &[u8]) -> Value {
        match parse(buf, &LIMITS) {
            Ok(Some((v, n))) => {
                assert_eq!(n, buf.len(), "{:?} used {n} bytes", show(buf));
                v
            }
            other => panic!("{other:?} from {:?}", show(buf)),
        }
    }

    #[track_caller]
    fn err(buf: &[u8]) -> ParseError {
        err_with(buf, &LIMITS)
    }

    #[track_caller]
    fn err_with(buf: &[u8], limits: &Limits) -> ParseError {
        match parse(buf, limits) {
            Err(e) => e,
            other => panic!("{other:?} from {:?}", show(buf)),
        }
    }

    #[track_caller]
    fn incomplete(buf: &[u8]) {
        assert_eq!(parse(buf, &LIMITS), Ok(None), "{:?}", show(buf));
    }

    fn bulk(s: &[u8]) -> Value {
        Value::Bulk(Some(s.to_vec()))
    }

    fn array(items: Vec<Value>) -> Value {
        Value::Array(Some(items))
    }

    #[test]
    fn simple_strings_and_errors() {
        assert_eq!(one(b"+OK\r\n"), Value::Simple(b"OK".to_vec()));
        assert_eq!(one(b"+\r\n"), Value::Simple(Vec::new()));
        assert_eq!(
            one(b"+a\tb \xff\x00\r\n"),
            Value::Simple(b"a\tb \xff\x00".to_vec())
        );
        assert_eq!(
            one(b"-ERR unknown command 'foo'\r\n"),
            Value::Error(b"ERR unknown command 'foo'".to_vec())
        );
        assert_eq!(one(b"-\r\n"), Value::Error(Vec::new()));
    }

    #[test]
    fn integers() {
        assert_eq!(one(b":0\r\n"), Value::Integer(0));
        assert_eq!(one(b":42\r\n"), Value::Integer(42));
        assert_eq!(one(b":-42\r\n"), Value::Integer(-42));
        assert_eq!(one(b":-0\r\n"), Value::Integer(0));
        assert_eq!(one(b":007\r\n"), Value::Integer(7));
        assert_eq!(one(b":9223372036854775807\r\n"), Value::Integer(i64::MAX));
        assert_eq!(one(b":-9223372036854775808\r\n"), Value::Integer(i64::MIN));
        // Nineteen digits are allowed even when most are leading zeros.
        assert_eq!(one(b":0000000000000000001\r\n"), Value::Integer(1));
    }

    #[test]
    fn bulk_strings() {
        assert_eq!(one(b"$3\r\nfoo\r\n"), bulk(b"foo"));
        assert_eq!(one(b"$0\r\n\r\n"), bulk(b""));
        assert_eq!(one(b"$-1\r\n"), Value::Bulk(None));
        // The body is opaque: CR LF, NUL and anything else pass through.
        assert_eq!(
            one(b"$9\r\n\r\n+OK\r\n\x00\xff\r\n"),
            bulk(b"\r\n+OK\r\n\x00\xff")
        );
    }

    #[test]
    fn arrays() {
        assert_eq!(one(b"*0\r\n"), array(vec![]));
        assert_eq!(one(b"*-1\r\n"), Value::Array(None));
        assert_eq!(
            one(b"*5\r\n+a\r\n-b\r\n:1\r\n$-1\r\n*-1\r\n"),
            array(vec![
                Value::Simple(b"a".to_vec()),
                Value::Error(b"b".to_vec()),
                Value::Integer(1),
                Value::Bulk(None),
                Value::Array(None),
            ])
        );
    }

    #[test]
    fn nested_arrays() {
        assert_eq!(
            one(b"*3\r\n*2\r\n:1\r\n*1\r\n$1\r\nx\r\n*0\r\n:2\r\n"),
            array(vec![
                array(vec![Value::Integer(1), array(vec![bulk(b"x")])]),
                array(vec![]),
                Value::Integer(2),
            ])
        );
        // Arrays that close together, innermost first.
        assert_eq!(
            one(b"*1\r\n*1\r\n*1\r\n:7\r\n"),
            array(vec![array(vec![array(vec![Value::Integer(7)])])])
        );
    }

    #[test]
    fn pubsub_shapes() {
        assert_eq!(
            one(b"*3\r\n$7\r\nmessage\r\n$6\r\nwspush\r\n$5\r\nhello\r\n"),
            array(vec![bulk(b"message"), bulk(b"wspush"), bulk(b"hello")])
        );
        assert_eq!(
            one(b"*3\r\n$9\r\nsubscribe\r\n$6\r\nwspush\r\n:1\r\n"),
            array(vec![bulk(b"subscribe"), bulk(b"wspush"), Value::Integer(1)])
        );
        // PING while subscribed answers with an array, not +PONG.
        assert_eq!(
            one(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
            array(vec![bulk(b"pong"), bulk(b"")])
        );
    }

    #[test]
    fn pipelined_values_are_taken_one_at_a_time() {
        let buf = b"+OK\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n$-1\r\n-ERR x\r\n+PART";
        let mut values = Vec::new();
        let mut at = 0;
        while let Some((v, n)) = parse(&buf[at..], &LIMITS).expect("valid") {
            values.push(v);
            at += n;
        }
        assert_eq!(
            values,
            [
                Value::Simple(b"OK".to_vec()),
                Value::Integer(1),
                array(vec![bulk(b"message"), bulk(b"c"), bulk(b"hi")]),
                Value::Bulk(None),
                Value::Error(b"ERR x".to_vec()),
            ]
        );
        assert_eq!(&buf[at..], b"+PART");
    }

    /// The caller's loop: reads of any size appended to one buffer give the
    /// same values as one big read.
    #[test]
    fn reads_of_any_size_give_the_same_values() {
        let stream = SAMPLES[..VALID].concat();
        let expected: Vec<Value> = SAMPLES[..VALID].iter().map(|s| one(s)).collect();
        for read in [1, 2, 3, 5, 7, 64] {
            let mut buf = Vec::new();
            let mut values = Vec::new();
            for chunk in stream.chunks(read) {
                buf.extend_from_slice(chunk);
                while let Some((v, n)) = parse(&buf, &LIMITS).expect("valid") {
                    values.push(v);
                    buf.drain(..n);
                }
            }
            assert!(buf.is_empty(), "reads of {read}: {:?} left", show(&buf));
            assert_eq!(values, expected, "reads of {read}");
        }
    }

    #[test]
    fn incomplete_values() {
        incomplete(b"");
        incomplete(b"+OK");
        incomplete(b"+OK\r");
        incomplete(b":");
        incomplete(b":-");
        incomplete(b":12\r");
        incomplete(b"$");
        incomplete(b"$3\r\n");
        incomplete(b"$3\r\nfo");
        incomplete(b"$3\r\nfoo");
        incomplete(b"$3\r\nfoo\r");
        incomplete(b"$0\r\n\r");
        incomplete(b"*2\r\n:1\r\n");
        incomplete(b"*2\r\n*1\r\n");
        // A header announcing a body within the limit is enough to wait for
        // it; nothing is scanned or reserved for what has not arrived.
        incomplete(b"$1048576\r\n");
        incomplete(b"*1024\r\n");
    }

    #[test]
    fn bad_type() {
        assert_eq!(err(b"PONG\r\n"), ParseError::BadType(b'P'));
        assert_eq!(err(b"\r\n"), ParseError::BadType(b'\r'));
        // RESP3 types are not RESP2.
        assert_eq!(err(b"_\r\n"), ParseError::BadType(b'_'));
        assert_eq!(err(b"%1\r\n"), ParseError::BadType(b'%'));
        assert_eq!(err(b"*2\r\n:1\r\n#t\r\n"), ParseError::BadType(b'#'));
    }

    #[test]
    fn bad_length() {
        assert_eq!(err(b"$-2\r\n"), ParseError::BadLength);
        assert_eq!(err(b"*-5\r\n"), ParseError::BadLength);
        assert_eq!(err(b"$-9223372036854775808\r\n"), ParseError::BadLength);
    }

    #[test]
    fn bad_integer() {
        for buf in [
            b":\r\n".as_slice(),
            b":-\r\n",
            b":--1\r\n",
            b":+1\r\n",
            b": 1\r\n",
            b":1 \r\n",
            b":1a\r\n",
            b":1.5\r\n",
            b":0x10\r\n",
            b":1-\r\n",
            b"$\r\n",
            b"$x\r\n",
            b"*1 \r\n",
            b"*\r\n",
        ] {
            assert_eq!(err(buf), ParseError::BadInteger, "{:?}", show(buf));
        }
    }

    #[test]
    fn integer_overflow() {
        for buf in [
            b":9223372036854775808\r\n".as_slice(),
            b":-9223372036854775809\r\n",
            b":9999999999999999999\r\n",
            b":99999999999999999999\r\n",
            b":18446744073709551616\r\n",
            b"$9223372036854775808\r\n",
            b"*99999999999999999999999999999999\r\n",
            // Twenty digits, even of zeros.
            b":00000000000000000001\r\n",
            b":-00000000000000000000\r\n",
        ] {
            assert_eq!(err(buf), ParseError::BadInteger, "{:?}", show(buf));
        }
        // Decided on the digits alone, before the line ends.
        assert_eq!(err(b":9223372036854775808"), ParseError::BadInteger);
        assert_eq!(err(b":00000000000000000000"), ParseError::BadInteger);
    }

    #[test]
    fn missing_crlf() {
        for buf in [
            b"+OK\n".as_slice(),
            b"+OK\rX",
            b"+OK\r\r\n",
            b"-ERR\n",
            b":1\n",
            b":1\rx",
            b":\n",
            b"$3\nfoo\r\n",
            b"$3\r\nfooX\r\n",
            b"$3\r\nfoo\n\r",
            b"$3\r\nfoo\rx",
            b"$0\r\nx",
            // A body longer than announced.
            b"$3\r\nfoobar\r\n",
            b"*1\r\n$1\r\nab\r\n",
        ] {
            assert_eq!(err(buf), ParseError::MissingCrlf, "{:?}", show(buf));
        }
    }

    #[test]
    fn limits_are_decided_on_the_header() {
        // No body or elements needed: the header alone is over the limit.
        assert_eq!(err_with(b"$17\r\n", &TIGHT), ParseError::TooLarge);
        assert_eq!(
            err_with(b"$9223372036854775807\r\n", &LIMITS),
            ParseError::TooLarge
        );
        assert_eq!(err_with(b"*5\r\n", &TIGHT), ParseError::TooLarge);
        assert_eq!(err_with(b"*2\r\n*5\r\n", &TIGHT), ParseError::TooLarge);
        assert_eq!(err_with(b"*1\r\n*1\r\n*1\r\n", &TIGHT), ParseError::TooDeep);
        assert_eq!(err_with(b"*1\r\n*1\r\n*-1\r\n", &TIGHT), ParseError::TooDeep);
        assert_eq!(err_with(b"*1\r\n*1\r\n*0\r\n", &TIGHT), ParseError::TooDeep);
        let none = Limits {
            max_depth: 0,
            ..TIGHT
        };
        assert_eq!(err_with(b"*0\r\n", &none), ParseError::TooDeep);
        assert_eq!(parse(b":1\r\n", &none), Ok(Some((Value::Integer(1), 4))));
    }

    #[test]
    fn limits_are_inclusive() {
        let body = [b'x'; 16];
        let buf = [b"$16\r\n".as_slice(), &body, b"\r\n"].concat();
        assert_eq!(parse(&buf, &TIGHT), Ok(Some((bulk(&body), buf.len()))));
        let buf = b"*4\r\n*1\r\n:1\r\n:2\r\n:3\r\n*0\r\n";
        let expected = array(vec![
            array(vec![Value::Integer(1)]),
            Value::Integer(2),
            Value::Integer(3),
            array(vec![]),
        ]);
        assert_eq!(parse(buf, &TIGHT), Ok(Some((expected, buf.len()))));
    }

    #[test]
    fn deep_nesting_needs_no_call_stack() {
        // A million open arrays would overflow the stack of a recursive parser.
        let buf = b"*1\r\n".repeat(1_000_000);
        let unbounded = Limits {
            max_depth: usize::MAX,
            ..LIMITS
        };
        assert_eq!(parse(&buf, &unbounded), Ok(None));
        assert_eq!(err(&buf), ParseError::TooDeep);
        let deep = Limits {
            max_depth: 1000,
            ..LIMITS
        };
        let buf = [b"*1\r\n".repeat(1000), b":1\r\n".to_vec()].concat();
        assert!(matches!(parse(&buf, &deep), Ok(Some((_, n))) if n == buf.len()));
    }

    #[test]
    fn long_lines() {
        let text = vec![b'a'; MAX_LINE];
        let buf = [b"+".as_slice(), &text, b"\r\n"].concat();
        assert_eq!(one(&buf), Value::Simple(text));
        incomplete(&buf[..buf.len() - 2]);
        let mut long = buf[..buf.len() - 2].to_vec();
        long.push(b'a');
        assert_eq!(err(&long), ParseError::TooLarge);
        long[0] = b'-';
        assert_eq!(err(&long), ParseError::TooLarge);
    }

    /// Valid inputs first (the first `VALID`), then at least one of every
    /// error (some under `TIGHT` only) and values followed by more bytes.
    const VALID: usize = 12;
    const SAMPLES: [&[u8]; 25] = [
        b"+OK\r\n",
        b"-ERR wrong type\r\n",
        b":-9223372036854775808\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"$5\r\n\r\n\r\n\n\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*3\r\n$7\r\nmessage\r\n$6\r\nwspush\r\n$5\r\nhello\r\n",
        b"*3\r\n$9\r\nsubscribe\r\n$6\r\nwspush\r\n:1\r\n",
        b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
        b"*2\r\n*2\r\n:1\r\n*0\r\n+x\r\n",
        b"*2\r\n:1\r\n?\r\n",
        b"$-2\r\n",
        b"*1\r\n:12x\r\n",
        b":99999999999999999999\r\n",
        b"*2\r\n+a\nb\r\n",
        b"*1\r\n$3\r\nabcd\r\n",
        b"+OK\r+\r\n",
        b"$17\r\n0123456789abcdef0\r\n",
        b"*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n",
        b"*1\r\n*1\r\n*1\r\n:1\r\n",
        b"*1\r\n*5\r\n",
        b"*1\r\n$-1\r\n:1\r\n",
        b":1\r\n:2\r\n*2\r\n",
    ];

    #[test]
    fn how_the_bytes_are_split_never_changes_the_outcome() {
        for whole in SAMPLES {
            for limits in [LIMITS, TIGHT] {
                let out = parse(whole, &limits);
                for cut in 0..=whole.len() {
                    let part = parse(&whole[..cut], &limits);
                    let why = || format!("{:?} cut at {cut}: {part:?} vs {out:?}", show(whole));
                    match &out {
                        Ok(Some((_, n))) if cut < *n => assert_eq!(part, Ok(None), "{}", why()),
                        Err(_) if part == Ok(None) => {}
                        _ => assert_eq!(part, out, "{}", why()),
                    }
                }
            }
        }
        // The samples do reach every outcome.
        let outcomes: Vec<_> = SAMPLES.iter().map(|s| parse(s, &TIGHT)).collect();
        for e in [
            ParseError::BadType(b'?'),
            ParseError::BadLength,
            ParseError::BadInteger,
            ParseError::MissingCrlf,
            ParseError::TooLarge,
            ParseError::TooDeep,
        ] {
            assert!(outcomes.contains(&Err(e.clone())), "no sample gives {e:?}");
        }
        for s in &SAMPLES[..VALID] {
            assert!(matches!(parse(s, &LIMITS), Ok(Some((_, n))) if n == s.len()));
        }
    }

    #[test]
    fn encode_command_round_trips() {
        let cases: [&[&[u8]]; 5] = [
            &[],
            &[b"PING"],
            &[b"SUBSCRIBE", b"wspush"],
            &[b"PUBLISH", b"ch", b""],
            &[b"SET", b"k\r\n", b"\r\n*1\r\n$-1\r\n\x00\xff", b"\n", b"\r"],
        ];
        for args in cases {
            let mut out = b"leading bytes stay".to_vec();
            encode_command(&mut out, args);
            let enc = &out[b"leading bytes stay".len()..];
            let expected = array(args.iter().map(|a| bulk(a)).collect());
            assert_eq!(
                parse(enc, &LIMITS),
                Ok(Some((expected, enc.len()))),
                "{:?}",
                show(enc)
            );
            for cut in 0..enc.len() {
                incomplete(&enc[..cut]);
            }
        }
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SUBSCRIBE", b"wspush"]);
        assert_eq!(out, b"*2\r\n$9\r\nSUBSCRIBE\r\n$6\r\nwspush\r\n");
    }

    #[test]
    fn errors_read_as_one_line() {
        for e in [
            ParseError::BadType(b'\n'),
            ParseError::BadLength,
            ParseError::BadInteger,
            ParseError::MissingCrlf,
            ParseError::TooLarge,
            ParseError::TooDeep,
        ] {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{e:?}: {text:?}");
        }
    }
}
