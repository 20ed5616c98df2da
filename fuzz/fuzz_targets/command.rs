//! `command::parse`, two ways per input:
//!
//! 1. On the input as text: no panic, a `Register`/`Unregister` only comes out
//!    of a JSON object with non-empty string fields, "not JSON" exactly when
//!    serde_json rejects the text, and the outcome depends only on the JSON
//!    value (the same for its compact re-serialization).
//! 2. As a recipe for a JSON object with non-empty string `token` and `event`,
//!    arbitrary other fields (including keys that differ from `token`,
//!    `event`, `id` only in case) and an optional `id`: the result must be
//!    `Register` with exactly those values, and the `id` the lookup rules give.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};
use wspush::command::{field, parse, Action, Command};

fn check_text(text: &str) {
    let out = parse(text);
    let value = serde_json::from_str::<Value>(text);
    match (&out, &value) {
        (Err(m), Err(_)) => assert_eq!(m.reason, "command is not JSON"),
        (_, Err(e)) => panic!("parsed {out:?} from text serde_json rejects: {e}"),
        (Err(m), Ok(_)) => assert_ne!(m.reason, "command is not JSON"),
        (Ok(cmd), Ok(v)) => {
            let obj = v.as_object().expect("a command from a non-object");
            assert_ne!(cmd.id, Some(Value::Null));
            let is_str = |key, s: &str| field(obj, key) == Some(&Value::String(s.to_owned()));
            match &cmd.action {
                Action::Register { token, event } => {
                    assert!(!token.is_empty() && !event.is_empty());
                    assert!(is_str("token", token) && is_str("event", event));
                }
                Action::Unregister { event } => {
                    assert!(!event.is_empty());
                    assert!(is_str("event", event) && is_str("type", "unregister"));
                }
                Action::Refresh { token } => {
                    assert!(!token.is_empty());
                    assert!(is_str("token", token) && is_str("type", "refresh"));
                }
            }
        }
    }
    // The outcome depends on the value only, not on its spelling. (Ids are
    // compared by presence: floats need not survive a text round trip.)
    if let Ok(v) = &value {
        let again = parse(&v.to_string());
        let shape = |r: &std::result::Result<Command, wspush::command::Malformed>| match r {
            Ok(c) => (Ok(c.action.clone()), c.id.is_some()),
            Err(m) => (Err(m.reason), m.id.is_some()),
        };
        assert_eq!(shape(&out), shape(&again), "{text:?} vs {v}");
    }
}

fn string(u: &mut Unstructured) -> Result<String> {
    // Mostly short, often one of the keys that matter, in some letter case.
    if u.ratio(1, 3)? {
        let key: &str = u.choose(&["token", "event", "id", "type", "userId", ""])?;
        let mask: u8 = u.arbitrary()?;
        return Ok(key
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 8) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect());
    }
    u.arbitrary()
}

fn value(u: &mut Unstructured, depth: u32) -> Result<Value> {
    let kinds = if depth == 0 { 4 } else { 6 };
    Ok(match u.int_in_range(0..=kinds - 1)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        // Integers only: they compare exactly after a text round trip.
        2 => Value::Number(Number::from(u.arbitrary::<i64>()?)),
        3 => Value::String(string(u)?),
        4 => Value::Array(
            (0..u.int_in_range(0..=3)?)
                .map(|_| value(u, depth - 1))
                .collect::<Result<_>>()?,
        ),
        _ => {
            let mut obj = Map::new();
            for _ in 0..u.int_in_range(0..=3)? {
                obj.insert(string(u)?, value(u, depth - 1)?);
            }
            Value::Object(obj)
        }
    })
}

fn non_empty(u: &mut Unstructured) -> Result<String> {
    let s = string(u)?;
    Ok(if s.is_empty() { "x".to_owned() } else { s })
}

fn check_register(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let token = non_empty(&mut u)?;
    let event = non_empty(&mut u)?;
    let mut obj = Map::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let key = string(&mut u)?;
        // Any spelling of "type" must say register for this to be one.
        let v = if key.eq_ignore_ascii_case("type") {
            Value::String("register".into())
        } else {
            value(&mut u, 3)?
        };
        obj.insert(key, v);
    }
    obj.insert("token".into(), Value::String(token.clone()));
    obj.insert("event".into(), Value::String(event.clone()));
    if u.arbitrary()? {
        obj.insert("id".into(), value(&mut u, 2)?);
    }
    let id = field(&obj, "id").filter(|v| !v.is_null()).cloned();
    let obj = Value::Object(obj);
    let text = if u.arbitrary()? {
        serde_json::to_string_pretty(&obj)
    } else {
        serde_json::to_string(&obj)
    }
    .expect("serializable");

    let expected = Command {
        id,
        action: Action::Register { token, event },
    };
    assert_eq!(parse(&text), Ok(expected), "{text}");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    check_text(&String::from_utf8_lossy(data));
    let _ = check_register(data);
});
