//! Client commands: what a text frame from a WebSocket client asks for.
//!
//! Parsing is separate from acting on it, so every malformed input is a
//! plain value in a unit test and the loop only sees checked commands.

use serde_json::{Map, Value};

/// A checked command. `id` is kept only when the client wants an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub id: Option<Value>,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `{"token": T, "event": E}` (the seed's format) or `"type": "register"`.
    Register { token: String, event: String },
    /// `{"type": "unregister", "event": E}`.
    Unregister { event: String },
    /// `{"type": "refresh", "token": T}`: a new token for the same user
    /// (SPEC §9).
    Refresh { token: String },
}

/// A frame that is not a usable command; `id` is set when one could be read,
/// so the client gets an error reply instead of a close.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    pub id: Option<Value>,
    pub reason: &'static str,
}

/// Looks a key up the way the Go seed did (`encoding/json` matches field
/// names case-insensitively, so `{"Token": ...}` worked there): the exact
/// key first, then any key equal ignoring ASCII case.
pub fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    crate::fields::lookup(obj, key)
}

fn non_empty_str(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match field(obj, key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Command, Malformed> {
    parse_resuming(text).map(|(cmd, _)| cmd)
}

/// Parses one text frame, with the cursor a register resumes from
/// (`"since": C`, SPEC §8; `null` counts as none).
pub fn parse_resuming(text: &str) -> Result<(Command, Option<String>), Malformed> {
    let malformed = |id: Option<Value>, reason| Err(Malformed { id, reason });
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return malformed(None, "command is not JSON"),
    };
    let Value::Object(obj) = value else {
        return malformed(None, "command is not a JSON object");
    };
    // `"id": null` counts as no id: null cannot be echoed back distinguishably.
    let id = field(&obj, "id").filter(|v| !v.is_null()).cloned();
    let kind = match field(&obj, "type") {
        None => "register",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return malformed(id, "type must be a string"),
    };
    if kind == "refresh" {
        return match non_empty_str(&obj, "token") {
            Some(token) => Ok((
                Command {
                    id,
                    action: Action::Refresh { token },
                },
                None,
            )),
            None => malformed(id, "token must be a non-empty string"),
        };
    }
    let Some(event) = non_empty_str(&obj, "event") else {
        return malformed(id, "event must be a non-empty string");
    };
    let mut since = None;
    let action = match kind {
        "register" => {
            let Some(token) = non_empty_str(&obj, "token") else {
                return malformed(id, "token must be a non-empty string");
            };
            match field(&obj, "since") {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => since = Some(s.clone()),
                Some(_) => return malformed(id, "since must be a string"),
            }
            Action::Register { token, event }
        }
        "unregister" => Action::Unregister { event },
        _ => return malformed(id, "unknown command type"),
    };
    Ok((Command { id, action }, since))
}

/// The success reply to a command that carried an `id`.
pub fn ok_reply(id: &Value) -> String {
    serde_json::json!({ "id": id, "ok": true }).to_string()
}

/// The success reply to a register that asked to resume (`since`): says
/// whether everything after the cursor follows (SPEC §8).
pub fn resumed_reply(id: &Value, recovered: bool) -> String {
    serde_json::json!({ "id": id, "ok": true, "recovered": recovered }).to_string()
}

/// The error reply: `code` is the close code the same failure gets without
/// an `id`. Keys in SPEC §1's order (`json!` would sort them).
pub fn error_reply(id: &Value, code: u16, reason: &str) -> String {
    let reason = serde_json::to_string(reason).unwrap_or_default();
    format!(r#"{{"id":{id},"ok":false,"code":{code},"error":{reason}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reg(token: &str, event: &str) -> Action {
        Action::Register {
            token: token.into(),
            event: event.into(),
        }
    }

    #[test]
    fn seed_register() {
        let c = parse(r#"{"token":"aaa","event":"topic1"}"#).unwrap();
        assert_eq!(
            c,
            Command {
                id: None,
                action: reg("aaa", "topic1")
            }
        );
    }

    #[test]
    fn seed_field_names_are_case_insensitive() {
        let c = parse(r#"{"Token":"aaa","Event":"topic1"}"#).unwrap();
        assert_eq!(c.action, reg("aaa", "topic1"));
    }

    #[test]
    fn ids_of_any_type_but_null() {
        for id in [json!(1), json!("x"), json!({"a": [1]}), json!(false)] {
            let text = json!({"token": "t", "event": "e", "id": id}).to_string();
            assert_eq!(parse(&text).unwrap().id, Some(id));
        }
        let c = parse(r#"{"token":"t","event":"e","id":null}"#).unwrap();
        assert_eq!(c.id, None);
    }

    #[test]
    fn typed_commands() {
        let c = parse(r#"{"type":"register","token":"t","event":"e","id":7}"#).unwrap();
        assert_eq!(
            c,
            Command {
                id: Some(json!(7)),
                action: reg("t", "e")
            }
        );
        let c = parse(r#"{"type":"unregister","event":"e"}"#).unwrap();
        assert_eq!(c.action, Action::Unregister { event: "e".into() });
    }

    #[test]
    fn malformed_commands_keep_the_id_when_readable() {
        let cases: &[(&str, Option<Value>)] = &[
            ("not json", None),
            ("", None),
            ("[1,2]", None),
            ("\"token\"", None),
            ("{\"token\":\"t\"}", None),
            ("{\"event\":\"e\"}", None),
            ("{\"token\":\"\",\"event\":\"e\"}", None),
            ("{\"token\":\"t\",\"event\":\"\"}", None),
            ("{\"token\":5,\"event\":\"e\"}", None),
            ("{\"token\":\"t\",\"event\":[\"e\"]}", None),
            (
                "{\"type\":\"subscribe\",\"event\":\"e\",\"id\":1}",
                Some(json!(1)),
            ),
            ("{\"type\":3,\"event\":\"e\",\"id\":\"a\"}", Some(json!("a"))),
            ("{\"type\":\"unregister\",\"id\":2}", Some(json!(2))),
            ("{\"event\":\"e\",\"id\":{\"k\":1}}", Some(json!({"k": 1}))),
        ];
        for (text, id) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(&err.id, id, "{text}");
            assert!(!err.reason.is_empty());
        }
    }

    #[test]
    fn refresh_needs_a_token_only() {
        let c = parse(r#"{"type":"refresh","token":"t2","id":4}"#).unwrap();
        assert_eq!(
            c,
            Command {
                id: Some(json!(4)),
                action: Action::Refresh { token: "t2".into() }
            }
        );
        let c = parse(r#"{"type":"refresh","token":"t2","event":"ignored"}"#).unwrap();
        assert_eq!(c.action, Action::Refresh { token: "t2".into() });
        for bad in [
            r#"{"type":"refresh","id":1}"#,
            r#"{"type":"refresh","token":"","id":1}"#,
            r#"{"type":"refresh","token":7,"id":1}"#,
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(
                (e.id, e.reason),
                (Some(json!(1)), "token must be a non-empty string")
            );
        }
    }

    #[test]
    fn a_register_may_resume_from_a_cursor() {
        let (c, since) = parse_resuming(r#"{"token":"t","event":"e","since":"ab-12","id":1}"#).unwrap();
        assert_eq!(c.action, reg("t", "e"));
        assert_eq!(since.as_deref(), Some("ab-12"));
        let (_, since) = parse_resuming(r#"{"token":"t","event":"e","Since":null}"#).unwrap();
        assert_eq!(since, None);
        let bad = parse_resuming(r#"{"token":"t","event":"e","since":12,"id":2}"#).unwrap_err();
        assert_eq!((bad.id, bad.reason), (Some(json!(2)), "since must be a string"));
        // Unregister has no use for it.
        let (_, since) = parse_resuming(r#"{"type":"unregister","event":"e","since":"x"}"#).unwrap();
        assert_eq!(since, None);
    }

    #[test]
    fn replies() {
        assert_eq!(ok_reply(&json!(1)), r#"{"id":1,"ok":true}"#);
        assert_eq!(
            error_reply(&json!(7), 4400, "bad \"x\""),
            r#"{"id":7,"ok":false,"code":4400,"error":"bad \"x\""}"#
        );
        let v: Value = serde_json::from_str(&error_reply(&json!("a"), 4403, "other user")).unwrap();
        assert_eq!(
            v,
            json!({"id": "a", "ok": false, "code": 4403, "error": "other user"})
        );
    }
}
