//! The record one node publishes to the others: a push, broadcast or drop
//! that every node (the origin too) applies to its own connections.
//!
//! Format: one version byte (`1`), one kind byte (`P` push, `B` broadcast,
//! `D` drop), then the JSON body that endpoint accepts over HTTP, compact
//! (`1P{"userIds":["alice"],"event":"news","message":"hi"}`). Reusing the
//! endpoint's body means a received record goes through exactly the same
//! checks as a local request, and `redis-cli SUBSCRIBE wspush` shows
//! something a person can read. Records of another version or kind, or that
//! fail the checks, are refused and counted, never half-applied: someone
//! else may publish on the channel.

pub(crate) mod redis;
/// The Redis protocol parser; public for fuzz targets.
#[doc(hidden)]
pub mod resp;
pub(crate) mod stream;
pub(crate) mod url;

use crate::push::{self, Endpoint, PushRequest};

const VERSION: u8 = b'1';

/// The record for a checked request: the kind, then the request as its
/// endpoint's body (`PushRequest`'s `Serialize`, the one writer of it).
pub(crate) fn encode(req: &PushRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(VERSION);
    out.push(match req.endpoint() {
        Endpoint::Push => b'P',
        Endpoint::Broadcast => b'B',
        Endpoint::Drop => b'D',
    });
    // Serializing strings, string vectors and `Value`s into a Vec cannot
    // fail (no I/O, no maps with non-string keys).
    let _ = serde_json::to_writer(&mut out, req);
    out
}

/// A received record, checked like an HTTP body.
pub(crate) fn decode(record: &[u8]) -> Result<PushRequest, String> {
    let (&version, rest) = record.split_first().ok_or("empty record")?;
    if version != VERSION {
        return Err(format!("unknown record version {:?}", char::from(version)));
    }
    let (&kind, body) = rest.split_first().ok_or("record without a kind")?;
    let endpoint = match kind {
        b'P' => Endpoint::Push,
        b'B' => Endpoint::Broadcast,
        b'D' => Endpoint::Drop,
        other => return Err(format!("unknown record kind {:?}", char::from(other))),
    };
    push::parse(endpoint, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use serde_json::json;

    fn msg(v: serde_json::Value) -> Message {
        Message::from_value(v)
    }

    fn round_trip(req: PushRequest) {
        let rec = encode(&req);
        assert_eq!(decode(&rec), Ok(req), "{}", String::from_utf8_lossy(&rec));
    }

    #[test]
    fn every_kind_survives_the_trip() {
        round_trip(PushRequest::Push {
            users: vec!["alice".into(), "b\"o\\b\u{e9}".into()],
            event: "news".into(),
            message: msg(json!("hi \u{1F600} \"quoted\"\n")),
            key: None,
        });
        round_trip(PushRequest::Push {
            users: vec!["u".into()],
            event: "e".into(),
            message: msg(json!({"a": [1, 2.5, true, null], "b": "x"})),
            key: Some("k\u{0}1".into()),
        });
        round_trip(PushRequest::Broadcast {
            event: "e".into(),
            message: msg(json!(42)),
            key: None,
        });
        round_trip(PushRequest::Broadcast {
            event: "e".into(),
            message: msg(json!(42)),
            key: Some("latest".into()),
        });
        round_trip(PushRequest::Drop {
            user: "u".into(),
            event: None,
            reconnect: true,
        });
        round_trip(PushRequest::Drop {
            user: "u".into(),
            event: Some("e".into()),
            reconnect: true,
        });
        round_trip(PushRequest::Drop {
            user: "u".into(),
            event: Some("e".into()),
            reconnect: false,
        });
    }

    #[test]
    fn the_format_is_readable() {
        let rec = encode(&PushRequest::Push {
            users: vec!["alice".into()],
            event: "news".into(),
            message: msg(json!("hi")),
            key: None,
        });
        assert_eq!(rec, br#"1P{"userIds":["alice"],"event":"news","message":"hi"}"#);
        // A JSON message travels as the text it was pushed with.
        let body = br#"{"userId":"u","event":"e","message":{ "z" : 1e2, "a" : [ ] }}"#;
        let req = crate::push::parse(crate::push::Endpoint::Push, body).unwrap();
        assert_eq!(
            encode(&req),
            br#"1P{"userIds":["u"],"event":"e","message":{"z":1e2,"a":[]}}"#
        );
        // `reconnect` is written only when false, as a `/drop` body says it.
        let rec = encode(&PushRequest::Drop {
            user: "u".into(),
            event: None,
            reconnect: false,
        });
        assert_eq!(rec, br#"1D{"userId":"u","reconnect":false}"#);
    }

    #[test]
    fn foreign_or_broken_records_are_refused() {
        for (rec, want) in [
            (&b""[..], "empty"),
            (b"1", "without a kind"),
            (b"2P{}", "version"),
            (b"1X{}", "kind"),
            (b"1P{", "not valid JSON"),
            (b"1P{\"event\":\"e\",\"message\":\"m\"}", "userId"),
            (b"1B{\"event\":\"\",\"message\":\"m\"}", "event is empty"),
            (b"hello", "version"),
        ] {
            let e = decode(rec).unwrap_err();
            assert!(e.contains(want), "{:?}: {e}", String::from_utf8_lossy(rec));
        }
    }
}
