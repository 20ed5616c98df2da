//! `/push`, `/broadcast` and `/drop`: checking the request body, and the
//! request it becomes (`PushRequest`, also the cluster record's body).
//!
//! A body is turned into a `PushRequest` here or refused with a one-line
//! reason; the loop never sees unchecked JSON.

use crate::fields::Field;
use crate::message::Message;
use crate::names;
use serde::de::{Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashSet;

/// Which push endpoint a body was posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Push,
    Broadcast,
    Drop,
}

/// A checked push-side request.
#[derive(Debug, Clone, PartialEq)]
pub enum PushRequest {
    /// Deliver to every connection of these users subscribed to `event`.
    /// Users are distinct, so nobody gets a message twice.
    Push {
        users: Vec<String>,
        event: String,
        message: Message,
        /// Latest-value key (SPEC §8): a newer message with the same key
        /// on the same stream replaces this one wherever it still waits.
        key: Option<String>,
    },
    /// Deliver to every connection subscribed to `event`.
    Broadcast {
        event: String,
        message: Message,
        key: Option<String>,
    },
    /// Close the user's connections (those subscribed to `event` if given)
    /// with 4000, or with 4001 when they must not `reconnect`.
    Drop {
        user: String,
        event: Option<String>,
        reconnect: bool,
    },
}

impl PushRequest {
    pub fn endpoint(&self) -> Endpoint {
        match self {
            PushRequest::Push { .. } => Endpoint::Push,
            PushRequest::Broadcast { .. } => Endpoint::Broadcast,
            PushRequest::Drop { .. } => Endpoint::Drop,
        }
    }

    /// The event and message of a push or broadcast.
    pub fn message(&self) -> Option<(&str, &Message)> {
        match self {
            PushRequest::Push { event, message, .. } | PushRequest::Broadcast { event, message, .. } => {
                Some((event, message))
            }
            PushRequest::Drop { .. } => None,
        }
    }
}

/// Users in order, each once: nobody gets a message twice.
pub fn distinct(users: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::with_capacity(users.len());
    users.into_iter().filter(|u| seen.insert(u.clone())).collect()
}

/// A request as the body of its endpoint: what a cluster record carries,
/// and what `parse` reads back.
impl serde::Serialize for PushRequest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        match self {
            PushRequest::Push {
                users,
                event,
                message,
                key,
            } => {
                map.serialize_entry("userIds", users)?;
                map.serialize_entry("event", event)?;
                map.serialize_entry("message", message)?;
                if let Some(key) = key {
                    map.serialize_entry("key", key)?;
                }
            }
            PushRequest::Broadcast { event, message, key } => {
                map.serialize_entry("event", event)?;
                map.serialize_entry("message", message)?;
                if let Some(key) = key {
                    map.serialize_entry("key", key)?;
                }
            }
            PushRequest::Drop {
                user,
                event,
                reconnect,
            } => {
                map.serialize_entry("userId", user)?;
                if let Some(event) = event {
                    map.serialize_entry("event", event)?;
                }
                if !reconnect {
                    map.serialize_entry("reconnect", &false)?;
                }
            }
        }
        map.end()
    }
}

/// One field's value, as far as checking a push body needs it: strings
/// stay borrowed from the body unless they hold escapes.
#[derive(Debug)]
enum Json<'a> {
    Null,
    Bool(bool),
    Str(Cow<'a, str>),
    List(Vec<Json<'a>>),
    /// A number or object: never valid where `Json` is used.
    Other,
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Json<'de>, E> {
        Ok(Json::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Json<'de>, E> {
        Ok(Json::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json<'de>, E> {
        Ok(Json::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = seq.next_element()? {
            list.push(item);
        }
        Ok(Json::List(list))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Json<'de>, A::Error> {
        IgnoredAny.visit_map(map).map(|_| Json::Other)
    }
}

/// An object key, borrowed from the body unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The fields a push body may have. Read in one pass over the body,
/// without building a map of owned keys and values first (that and the
/// copies out of it were a fifth of the instructions of a push).
struct Fields<'a> {
    user_id: Field<'a, Json<'a>>,
    user_ids: Field<'a, Json<'a>>,
    event: Field<'a, Json<'a>>,
    /// Kept as the body's text: see `message`.
    message: Field<'a, &'a RawValue>,
    reconnect: Field<'a, Json<'a>>,
    key: Field<'a, Json<'a>>,
}

impl<'de> Fields<'de> {
    fn new() -> Self {
        Fields {
            user_id: Field::new(),
            user_ids: Field::new(),
            event: Field::new(),
            message: Field::new(),
            reconnect: Field::new(),
            key: Field::new(),
        }
    }
}

/// Fills the caller's `Fields` in place: returned by value, the struct
/// was copied through serde's layers of `Result` six times per push.
impl<'de> DeserializeSeed<'de> for &mut Fields<'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut Fields<'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key()? {
            let is = |name: &str| key.eq_ignore_ascii_case(name);
            if is("userId") {
                self.user_id.offer("userId", key, map.next_value()?);
            } else if is("userIds") {
                self.user_ids.offer("userIds", key, map.next_value()?);
            } else if is("event") {
                self.event.offer("event", key, map.next_value()?);
            } else if is("message") {
                self.message.offer("message", key, map.next_value()?);
            } else if is("reconnect") {
                self.reconnect.offer("reconnect", key, map.next_value()?);
            } else if is("key") {
                self.key.offer("key", key, map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

fn non_empty_string(v: Option<Json<'_>>, name: &str) -> Result<String, String> {
    match v {
        Some(Json::Str(s)) if !s.is_empty() => Ok(s.into_owned()),
        Some(Json::Str(_)) => Err(format!("{name} is empty")),
        Some(_) => Err(format!("{name} must be a string")),
        None => Err(format!("{name} is missing")),
    }
}

/// SPEC §2: a non-empty string, or any other JSON value but null.
fn message(v: Option<&RawValue>) -> Result<Message, String> {
    Message::from_raw(v.ok_or("message is missing")?)
}

fn users(user_id: Option<Json<'_>>, user_ids: Option<Json<'_>>) -> Result<Vec<String>, String> {
    match (user_id, user_ids) {
        (Some(_), Some(_)) => Err("give userId or userIds, not both".into()),
        (one, None) => Ok(vec![non_empty_string(one, "userId")?]),
        (None, Some(Json::List(list))) => {
            if list.is_empty() {
                return Err("userIds is empty".into());
            }
            let list: Result<Vec<String>, String> = list
                .into_iter()
                .map(|v| non_empty_string(Some(v), "each of userIds"))
                .collect();
            Ok(distinct(list?))
        }
        (None, Some(_)) => Err("userIds must be an array of strings".into()),
    }
}

/// Why a body is not a JSON object, once reading it as one failed.
fn not_an_object(body: &[u8], e: serde_json::Error) -> String {
    if e.is_eof() && body.iter().all(u8::is_ascii_whitespace) {
        return "body is empty".to_string();
    }
    let first = body.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') && serde_json::from_slice::<IgnoredAny>(body).is_ok() {
        return "body must be a JSON object".into();
    }
    format!("body is not valid JSON ({e})")
}

impl Fields<'_> {
    fn has(field: &Field<'_, impl Sized>) -> bool {
        field.is_offered()
    }

    /// SPEC §2: a field of another endpoint refuses the whole body, in
    /// any case and with any value (`null` too). Applying the rest would
    /// do what the sender did not ask: a broadcast that was meant for one
    /// user reaches every subscriber.
    fn foreign(&self, endpoint: Endpoint) -> Result<(), String> {
        let (what, fields): (&str, &[(&str, bool)]) = match endpoint {
            Endpoint::Push => ("a push", &[("reconnect", Self::has(&self.reconnect))]),
            Endpoint::Broadcast => (
                "a broadcast",
                &[
                    ("userId", Self::has(&self.user_id)),
                    ("userIds", Self::has(&self.user_ids)),
                    ("reconnect", Self::has(&self.reconnect)),
                ],
            ),
            Endpoint::Drop => (
                "a drop",
                &[
                    ("message", Self::has(&self.message)),
                    ("userIds", Self::has(&self.user_ids)),
                    ("key", Self::has(&self.key)),
                ],
            ),
        };
        match fields.iter().find(|(_, present)| *present) {
            Some((name, _)) => Err(format!("{what} takes no {name}")),
            None => Ok(()),
        }
    }
}

/// `/drop`'s `reconnect`: a boolean, true when absent.
fn reconnect(v: Option<Json<'_>>) -> Result<bool, String> {
    match v {
        None => Ok(true),
        Some(Json::Bool(b)) => Ok(b),
        Some(_) => Err("reconnect must be a boolean".into()),
    }
}

/// A push's latest-value `key`: absent or null for none, else a
/// non-empty string of at most `names::MAX_NAME_BYTES`.
fn latest_key(v: Option<Json<'_>>) -> Result<Option<String>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Str(s)) if s.len() > names::MAX_NAME_BYTES => Err("key too long".into()),
        Some(Json::Str(s)) if !s.is_empty() => Ok(Some(s.into_owned())),
        Some(_) => Err("key must be a non-empty string".into()),
    }
}

/// The name limits (`names`) on every name a request carries; the error
/// is the reason shown after `request data illegal: `.
pub fn check_names(req: &PushRequest) -> Result<(), &'static str> {
    match req {
        PushRequest::Push { users, event, .. } => {
            users.iter().try_for_each(|u| names::check_user(u))?;
            names::check_event(event)
        }
        PushRequest::Broadcast { event, .. } => names::check_event(event),
        PushRequest::Drop { user, event, .. } => {
            names::check_user(user)?;
            event.as_deref().map_or(Ok(()), names::check_event)
        }
    }
}

/// Checks a request body. The error is the reason shown after
/// `request data illegal: `.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<PushRequest, String> {
    let mut f = Fields::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    (&mut f)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| not_an_object(body, e))?;
    f.foreign(endpoint)?;
    let req = match endpoint {
        Endpoint::Push => PushRequest::Push {
            users: users(f.user_id.take(), f.user_ids.take())?,
            event: non_empty_string(f.event.take(), "event")?,
            message: message(f.message.take())?,
            key: latest_key(f.key.take())?,
        },
        Endpoint::Broadcast => PushRequest::Broadcast {
            event: non_empty_string(f.event.take(), "event")?,
            message: message(f.message.take())?,
            key: latest_key(f.key.take())?,
        },
        Endpoint::Drop => PushRequest::Drop {
            user: non_empty_string(f.user_id.take(), "userId")?,
            event: match f.event.take() {
                None | Some(Json::Null) => None,
                v => Some(non_empty_string(v, "event")?),
            },
            reconnect: reconnect(f.reconnect.take())?,
        },
    };
    check_names(&req)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn msg(v: Value) -> Message {
        Message::from_value(v)
    }

    fn push(body: &str) -> Result<PushRequest, String> {
        parse(Endpoint::Push, body.as_bytes())
    }

    #[test]
    fn seed_push() {
        assert_eq!(
            push(r#"{"userId":"aaa","event":"topic1","message":"hi"}"#).unwrap(),
            PushRequest::Push {
                users: vec!["aaa".into()],
                event: "topic1".into(),
                message: msg(json!("hi")),
                key: None
            }
        );
    }

    #[test]
    fn batch_users_are_distinct_in_order() {
        let r = push(r#"{"userIds":["b","a","b"],"event":"e","message":{"k":1}}"#).unwrap();
        assert_eq!(
            r,
            PushRequest::Push {
                users: vec!["b".into(), "a".into()],
                event: "e".into(),
                message: msg(json!({"k": 1})),
                key: None
            }
        );
    }

    #[test]
    fn every_bad_body_has_a_reason() {
        let bad = [
            "",
            "   ",
            "{",
            "[]",
            "\"x\"",
            r#"{"event":"e","message":"m"}"#,
            r#"{"userId":"","event":"e","message":"m"}"#,
            r#"{"userId":5,"event":"e","message":"m"}"#,
            r#"{"userId":"u","message":"m"}"#,
            r#"{"userId":"u","event":"","message":"m"}"#,
            r#"{"userId":"u","event":"e"}"#,
            r#"{"userId":"u","event":"e","message":""}"#,
            r#"{"userId":"u","event":"e","message":null}"#,
            r#"{"userIds":[],"event":"e","message":"m"}"#,
            r#"{"userIds":"u","event":"e","message":"m"}"#,
            r#"{"userIds":["u",""],"event":"e","message":"m"}"#,
            r#"{"userIds":["u",1],"event":"e","message":"m"}"#,
            r#"{"userId":"u","userIds":["v"],"event":"e","message":"m"}"#,
        ];
        for b in bad {
            let e = push(b).expect_err(b);
            assert!(!e.is_empty() && !e.contains('\n'), "{b}: {e}");
        }
        assert!(parse(Endpoint::Push, b"\xff\xfe").is_err());
    }

    #[test]
    fn broadcast_and_drop() {
        assert_eq!(
            parse(Endpoint::Broadcast, br#"{"event":"e","message":[1,2]}"#).unwrap(),
            PushRequest::Broadcast {
                event: "e".into(),
                message: msg(json!([1, 2])),
                key: None
            }
        );
        assert!(parse(Endpoint::Broadcast, br#"{"event":"e"}"#).is_err());
        assert_eq!(
            parse(Endpoint::Drop, br#"{"userId":"u"}"#).unwrap(),
            PushRequest::Drop {
                user: "u".into(),
                event: None,
                reconnect: true
            }
        );
        assert_eq!(
            parse(Endpoint::Drop, br#"{"userId":"u","event":"e"}"#).unwrap(),
            PushRequest::Drop {
                user: "u".into(),
                event: Some("e".into()),
                reconnect: true
            }
        );
        assert!(parse(Endpoint::Drop, br#"{"userId":"u","event":""}"#).is_err());
        assert!(parse(Endpoint::Drop, br#"{}"#).is_err());
    }

    /// The parser before it read fields in one pass: a `Value` tree and
    /// `command::field` lookups. The new one must agree with it.
    fn parse_via_value(endpoint: Endpoint, body: &[u8]) -> Result<PushRequest, ()> {
        use crate::command::field;
        let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
            return Err(());
        };
        let string = |v: Option<&Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(()),
        };
        let message = match field(&obj, "message") {
            None | Some(Value::Null) => Err(()),
            Some(Value::String(s)) if s.is_empty() => Err(()),
            Some(v) => Ok(msg(v.clone())),
        };
        let has = |name: &str| field(&obj, name).is_some();
        let foreign: &[&str] = match endpoint {
            Endpoint::Push => &["reconnect"],
            Endpoint::Broadcast => &["userId", "userIds", "reconnect"],
            Endpoint::Drop => &["message", "userIds"],
        };
        if foreign.iter().any(|f| has(f)) {
            return Err(());
        }
        let req = match endpoint {
            Endpoint::Push => {
                let users = match (field(&obj, "userId"), field(&obj, "userIds")) {
                    (Some(_), Some(_)) => return Err(()),
                    (one, None) => vec![string(one)?],
                    (None, Some(Value::Array(list))) if !list.is_empty() => {
                        let mut out: Vec<String> = Vec::new();
                        for v in list {
                            let u = string(Some(v))?;
                            if !out.contains(&u) {
                                out.push(u);
                            }
                        }
                        out
                    }
                    _ => return Err(()),
                };
                PushRequest::Push {
                    users,
                    event: string(field(&obj, "event"))?,
                    message: message?,
                    key: None,
                }
            }
            Endpoint::Broadcast => PushRequest::Broadcast {
                event: string(field(&obj, "event"))?,
                message: message?,
                key: None,
            },
            Endpoint::Drop => PushRequest::Drop {
                user: string(field(&obj, "userId"))?,
                event: match field(&obj, "event") {
                    None | Some(Value::Null) => None,
                    v => Some(string(v)?),
                },
                reconnect: match field(&obj, "reconnect") {
                    None => true,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(()),
                },
            },
        };
        check_names(&req).map_err(|_| ())?;
        Ok(req)
    }

    #[test]
    fn field_lookup_agrees_with_a_parsed_object() {
        let bodies = [
            r#"{"userId":"u","event":"e","message":"m"}"#,
            r#"{"UserId":"u","EVENT":"e","Message":"m"}"#,
            r#"{"userid":"a","USERID":"b","event":"e","message":"m"}"#,
            r#"{"userId":"exact","USERID":"folded","event":"e","message":"m"}"#,
            r#"{"USERID":"folded","userId":"exact","event":"e","message":"m"}"#,
            r#"{"userId":"first","userId":"last","event":"e","message":"m"}"#,
            r#"{"userId":5,"userId":"last","event":"e","message":"m"}"#,
            r#"{"userId":"last","userId":5,"event":"e","message":"m"}"#,
            r#"{"Event":"x","Event":"y","userId":"u","message":"m"}"#,
            r#"{"userIDs":["a","b","a"],"event":"e","message":{"k":[1,2.5,null]}}"#,
            r#"{"userIds":["a",["b"]],"event":"e","message":"m"}"#,
            r#"{"userIds":[],"event":"e","message":"m"}"#,
            r#"{"userIds":null,"event":"e","message":"m"}"#,
            r#"{"userId":null,"event":"e","message":"m"}"#,
            r#"{"userId":"u","event":null,"message":"m"}"#,
            r#"{"userId":"u","event":"e","message":null}"#,
            r#"{"userId":"u","event":"e","message":""}"#,
            r#"{"userId":"u","event":"e","message":true}"#,
            r#"{"userId":"u","event":{"a":"b"},"message":"m"}"#,
            r#"{"user\u0049d":"esc","event":"\u00e9\ud83d\ude00","message":"a\"b\\c\n"}"#,
            r#"{"other":{"userId":"nested"},"userId":"u","event":"e","message":[]}"#,
            r#" { "userId" : "u" , "event" : "e" , "message" : { "b" : 1 , "a" : 2 } } "#,
            r#"{"userId":"u","event":"e","message":-0.0e0}"#,
            r#"{}"#,
            r#"[]"#,
            r#""userId""#,
            r#"null"#,
            r#"{"userId":"u","event":"e","message":"m"} x"#,
            r#"{"userId":"u","event":"e","message":"m""#,
            "",
            r#"{"event":"e","message":"m"}"#,
            r#"{"userId":"u"}"#,
            r#"{"userId":"u","event":"e"}"#,
            r#"{"userId":"u","reconnect":false}"#,
            r#"{"userId":"u","ReConnect":true}"#,
            r#"{"userId":"u","reconnect":"false"}"#,
            r#"{"userId":"u","reconnect":null}"#,
            r#"{"userId":"u","event":"e","message":"m","reconnect":true}"#,
            r#"{"USERIDS":null,"event":"e","message":"m"}"#,
            r#"{"userId":"u","Message":null}"#,
        ];
        for body in bodies {
            for endpoint in [Endpoint::Push, Endpoint::Broadcast, Endpoint::Drop] {
                let new = parse(endpoint, body.as_bytes());
                let old = parse_via_value(endpoint, body.as_bytes());
                match (&new, &old) {
                    // As JSON values: the old parser sorted a message's keys.
                    (Ok(n), Ok(o)) => assert_eq!(
                        serde_json::to_value(n).ok(),
                        serde_json::to_value(o).ok(),
                        "{endpoint:?} {body}"
                    ),
                    (Err(reason), Err(())) => assert!(!reason.is_empty() && !reason.contains('\n')),
                    _ => panic!("{endpoint:?} {body}: new {new:?}, old {old:?}"),
                }
            }
        }
    }

    /// SPEC §2: a field of another endpoint refuses the body, whatever its
    /// case or value, so nothing is half-applied.
    #[test]
    fn fields_of_another_endpoint_are_refused() {
        let cases: &[(Endpoint, &str, &str)] = &[
            (
                Endpoint::Broadcast,
                r#"{"userId":"u","event":"e","message":"m"}"#,
                "a broadcast takes no userId",
            ),
            (
                Endpoint::Broadcast,
                r#"{"USERID":"u","event":"e","message":"m"}"#,
                "a broadcast takes no userId",
            ),
            (
                Endpoint::Broadcast,
                r#"{"userIds":["u"],"event":"e","message":"m"}"#,
                "a broadcast takes no userIds",
            ),
            (
                Endpoint::Broadcast,
                r#"{"userId":null,"event":"e","message":"m"}"#,
                "a broadcast takes no userId",
            ),
            (
                Endpoint::Broadcast,
                r#"{"event":"e","message":"m","reconnect":false}"#,
                "a broadcast takes no reconnect",
            ),
            (
                Endpoint::Push,
                r#"{"userId":"u","event":"e","message":"m","reconnect":true}"#,
                "a push takes no reconnect",
            ),
            (
                Endpoint::Drop,
                r#"{"userId":"u","message":"m"}"#,
                "a drop takes no message",
            ),
            (
                Endpoint::Drop,
                r#"{"userId":"u","userIds":["v"]}"#,
                "a drop takes no userIds",
            ),
            (
                Endpoint::Drop,
                r#"{"userId":"u","reconnect":"no"}"#,
                "reconnect must be a boolean",
            ),
            (
                Endpoint::Drop,
                r#"{"userId":"u","reconnect":0}"#,
                "reconnect must be a boolean",
            ),
            (
                Endpoint::Drop,
                r#"{"userId":"u","reconnect":null}"#,
                "reconnect must be a boolean",
            ),
        ];
        for (endpoint, body, reason) in cases {
            assert_eq!(
                parse(*endpoint, body.as_bytes()),
                Err(reason.to_string()),
                "{endpoint:?} {body}"
            );
        }
        assert_eq!(
            parse(Endpoint::Drop, br#"{"userId":"u","Reconnect":false}"#),
            Ok(PushRequest::Drop {
                user: "u".into(),
                event: None,
                reconnect: false
            })
        );
    }

    /// SPEC §8: `key` on a push or broadcast, carried through; refused on
    /// a drop, and when it is not a non-empty string.
    #[test]
    fn latest_value_keys() {
        let r = push(r#"{"userId":"u","event":"e","message":"m","key":"AAPL"}"#).unwrap();
        assert!(matches!(r, PushRequest::Push { key: Some(k), .. } if k == "AAPL"));
        let r = parse(Endpoint::Broadcast, br#"{"event":"e","message":1,"Key":"k"}"#).unwrap();
        assert!(matches!(r, PushRequest::Broadcast { key: Some(k), .. } if k == "k"));
        let r = push(r#"{"userId":"u","event":"e","message":"m","key":null}"#).unwrap();
        assert!(matches!(r, PushRequest::Push { key: None, .. }));
        for bad in [r#""""#, "1", "[\"k\"]", "true"] {
            let body = format!(r#"{{"userId":"u","event":"e","message":"m","key":{bad}}}"#);
            assert_eq!(
                push(&body),
                Err("key must be a non-empty string".into()),
                "{body}"
            );
        }
        let long = json!({"userId": "u", "event": "e", "message": "m", "key": "k".repeat(257)}).to_string();
        assert_eq!(push(&long), Err("key too long".into()));
        assert_eq!(
            parse(Endpoint::Drop, br#"{"userId":"u","key":"k"}"#),
            Err("a drop takes no key".into())
        );
    }

    #[test]
    fn names_over_256_bytes_are_refused() {
        let long = "x".repeat(257);
        let ok = "x".repeat(256);
        let body =
            |user: &str, event: &str| json!({"userId": user, "event": event, "message": "m"}).to_string();
        assert_eq!(push(&body("u", &long)), Err("event too long".into()));
        assert_eq!(push(&body(&long, "e")), Err("userId too long".into()));
        assert!(push(&body(&ok, &ok)).is_ok());
        let many = json!({"userIds": ["a", long], "event": "e", "message": "m"}).to_string();
        assert_eq!(push(&many), Err("userId too long".into()));
        let b = json!({"event": long, "message": "m"}).to_string();
        assert_eq!(
            parse(Endpoint::Broadcast, b.as_bytes()),
            Err("event too long".into())
        );
        let d = json!({"userId": long}).to_string();
        assert_eq!(parse(Endpoint::Drop, d.as_bytes()), Err("userId too long".into()));
        let d = json!({"userId": "u", "event": long}).to_string();
        assert_eq!(parse(Endpoint::Drop, d.as_bytes()), Err("event too long".into()));
    }

    #[test]
    fn reasons_name_the_problem() {
        let reason = |body: &str| push(body).unwrap_err();
        assert_eq!(reason(""), "body is empty");
        assert_eq!(reason(" \n"), "body is empty");
        assert_eq!(reason("[1]"), "body must be a JSON object");
        assert_eq!(reason(" \"x\""), "body must be a JSON object");
        assert!(reason("{").starts_with("body is not valid JSON ("));
        assert!(reason("[").starts_with("body is not valid JSON ("));
        assert!(reason(r#"{"a":1} {}"#).starts_with("body is not valid JSON ("));
        assert_eq!(
            reason(r#"{"userId":1,"event":"e","message":"m"}"#),
            "userId must be a string"
        );
        assert_eq!(
            reason(r#"{"userIds":"u","event":"e","message":"m"}"#),
            "userIds must be an array of strings"
        );
        assert_eq!(
            reason(r#"{"userIds":["u",""],"event":"e","message":"m"}"#),
            "each of userIds is empty"
        );
        assert_eq!(reason(r#"{"userId":"u","message":"m"}"#), "event is missing");
        assert_eq!(
            reason(r#"{"userId":"u","event":"e","message":null}"#),
            "message is null"
        );
    }
}
