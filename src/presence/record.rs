//! The presence records nodes publish to each other, on the channel pushes
//! use (so they travel wherever the cluster link carries records).
//!
//! Format: version `1`, kind `N` (node), then a JSON object naming the
//! node and the record's type, readable in `redis-cli SUBSCRIBE`:
//!
//! ```text
//! 1N{"node":"9f2c…","type":"hello"}
//! 1N{"node":"9f2c…","type":"beat","userCount":2}
//! 1N{"node":"9f2c…","type":"update","users":[{"userId":"alice","connections":2,"events":{"news":2}}]}
//! 1N{"node":"9f2c…","type":"snapshot","users":[…every user the node holds…]}
//! ```
//!
//! An update carries the whole state of each user it names (zero
//! connections: gone from that node); a snapshot is the node's whole
//! state. A record that fails a check is refused whole.

use super::cluster::UserState;
use crate::names;
use serde_json::Value;
use std::rc::Rc;

/// The first two bytes of every presence record.
pub const PREFIX: &[u8] = b"1N";

/// Longest node name accepted.
const MAX_NODE: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The node (re)joined: every other node answers with a snapshot.
    Hello { node: String },
    /// The node is alive and holds this many users.
    Beat { node: String, users: usize },
    /// States of users on the node; `snapshot`: all it holds.
    States {
        node: String,
        users: Vec<(String, UserState)>,
        snapshot: bool,
    },
}

pub fn is_presence(record: &[u8]) -> bool {
    record.starts_with(PREFIX)
}

fn head(out: &mut Vec<u8>, node: &str, kind: &str) {
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(b"{\"node\":");
    string(out, node);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.push(b'"');
}

/// A JSON string (serializing a `&str` into a `Vec` cannot fail).
fn string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

pub fn hello(node: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    head(&mut out, node, "hello");
    out.push(b'}');
    out
}

pub fn beat(node: &str, users: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    head(&mut out, node, "beat");
    out.extend_from_slice(format!(",\"userCount\":{users}}}").as_bytes());
    out
}

/// An update or snapshot of `users`, each with its state.
pub fn states<'a>(
    node: &str,
    snapshot: bool,
    users: impl IntoIterator<Item = (&'a str, &'a UserState)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    head(&mut out, node, if snapshot { "snapshot" } else { "update" });
    out.extend_from_slice(b",\"users\":[");
    for (i, (user, s)) in users.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"userId\":");
        string(&mut out, user);
        out.extend_from_slice(format!(",\"connections\":{},\"events\":{{", s.connections).as_bytes());
        for (j, (event, n)) in s.events.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            string(&mut out, event);
            out.extend_from_slice(format!(":{n}").as_bytes());
        }
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b"]}");
    out
}

/// A received presence record, checked.
pub fn decode(record: &[u8]) -> Result<Record, String> {
    let body = record.strip_prefix(PREFIX).ok_or("not a presence record")?;
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("presence record is not valid JSON: {e}"))?;
    let node = match v.get("node") {
        Some(Value::String(n)) if !n.is_empty() && n.len() <= MAX_NODE => n.clone(),
        _ => return Err("presence record without a valid node name".into()),
    };
    match v.get("type").and_then(Value::as_str) {
        Some("hello") => Ok(Record::Hello { node }),
        Some("beat") => {
            let users = v
                .get("userCount")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or("presence beat without a userCount")?;
            Ok(Record::Beat { node, users })
        }
        Some(kind @ ("update" | "snapshot")) => {
            let Some(Value::Array(list)) = v.get("users") else {
                return Err("presence states without a users array".into());
            };
            let users = list.iter().map(user_state).collect::<Result<_, _>>()?;
            Ok(Record::States {
                node,
                users,
                snapshot: kind == "snapshot",
            })
        }
        _ => Err("presence record of unknown type".into()),
    }
}

fn user_state(v: &Value) -> Result<(String, UserState), String> {
    let user = match v.get("userId") {
        Some(Value::String(u)) if !u.is_empty() => u,
        _ => return Err("presence state without a userId".into()),
    };
    names::check_user(user)?;
    let count = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let connections = v
        .get("connections")
        .and_then(count)
        .ok_or("presence state without a connection count")?;
    let Some(Value::Object(events)) = v.get("events") else {
        return Err("presence state without an events object".into());
    };
    let mut list = Vec::with_capacity(events.len());
    for (event, n) in events {
        names::check_event(event)?;
        let n = count(n).ok_or("presence event count is not a number")?;
        if event.is_empty() || n == 0 || n > connections {
            return Err("presence event count out of range".into());
        }
        list.push((Rc::from(event.as_str()), n));
    }
    Ok((
        user.clone(),
        UserState {
            connections,
            events: list,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(conns: u32, events: &[(&str, u32)]) -> UserState {
        UserState {
            connections: conns,
            events: events.iter().map(|(e, n)| (Rc::from(*e), *n)).collect(),
        }
    }

    #[test]
    fn records_are_readable_and_survive_the_trip() {
        assert_eq!(hello("n1"), br#"1N{"node":"n1","type":"hello"}"#);
        assert_eq!(decode(&hello("n1")), Ok(Record::Hello { node: "n1".into() }));
        assert_eq!(beat("n1", 7), br#"1N{"node":"n1","type":"beat","userCount":7}"#);
        assert_eq!(
            decode(&beat("n1", 7)),
            Ok(Record::Beat {
                node: "n1".into(),
                users: 7
            })
        );
        let a = st(2, &[("news", 2), ("chat", 1)]);
        let b = st(0, &[]);
        let weird = st(1, &[("e\"\n✓", 1)]);
        let rec = states("n1", false, [("alice", &a), ("bob", &b), ("q\"uote", &weird)]);
        assert!(rec.starts_with(
            br#"1N{"node":"n1","type":"update","users":[{"userId":"alice","connections":2,"events":{"news":2,"chat":1}},{"userId":"bob","connections":0,"events":{}}"#
        ));
        let Ok(Record::States {
            node,
            users,
            snapshot,
        }) = decode(&rec)
        else {
            panic!("{}", String::from_utf8_lossy(&rec))
        };
        assert_eq!((node.as_str(), snapshot), ("n1", false));
        let mut got = users;
        got[0].1.events.sort();
        let mut want_a = a.clone();
        want_a.events.sort();
        assert_eq!(
            got,
            vec![
                ("alice".into(), want_a),
                ("bob".into(), b),
                ("q\"uote".into(), weird)
            ]
        );
        let snap = states("n2", true, std::iter::empty());
        assert_eq!(snap, br#"1N{"node":"n2","type":"snapshot","users":[]}"#);
        assert!(matches!(decode(&snap), Ok(Record::States { snapshot: true, .. })));
    }

    #[test]
    fn broken_records_are_refused_whole() {
        let long = "u".repeat(257);
        for (rec, want) in [
            ("1N{", "not valid JSON"),
            ("1N{\"type\":\"hello\"}", "node name"),
            ("1N{\"node\":\"\",\"type\":\"hello\"}", "node name"),
            ("1N{\"node\":\"n\",\"type\":\"nope\"}", "unknown type"),
            ("1N{\"node\":\"n\",\"type\":\"beat\"}", "userCount"),
            ("1N{\"node\":\"n\",\"type\":\"update\"}", "users array"),
            (
                "1N{\"node\":\"n\",\"type\":\"update\",\"users\":[{\"connections\":1,\"events\":{}}]}",
                "userId",
            ),
            (
                &format!("1N{{\"node\":\"n\",\"type\":\"update\",\"users\":[{{\"userId\":\"{long}\",\"connections\":1,\"events\":{{}}}}]}}"),
                "userId too long",
            ),
            (
                "1N{\"node\":\"n\",\"type\":\"update\",\"users\":[{\"userId\":\"u\",\"connections\":-1,\"events\":{}}]}",
                "connection count",
            ),
            (
                "1N{\"node\":\"n\",\"type\":\"update\",\"users\":[{\"userId\":\"u\",\"connections\":1,\"events\":{\"e\":2}}]}",
                "out of range",
            ),
            (
                "1N{\"node\":\"n\",\"type\":\"update\",\"users\":[{\"userId\":\"u\",\"connections\":1,\"events\":[]}]}",
                "events object",
            ),
        ] {
            let e = decode(rec.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{rec}: {e}");
        }
        assert!(is_presence(b"1N{}") && !is_presence(b"1P{}"));
    }
}
