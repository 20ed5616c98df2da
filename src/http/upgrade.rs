//! The HTTP side of becoming a WebSocket: the upgrade checks (in
//! gorilla's order, so the seed's clients see the same statuses), the
//! accept key and the `101`.

use crate::http::request::{Head, Version};

/// Why an upgrade request is refused, in gorilla's order of checks so the
/// seed's clients see the same statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: not a WebSocket handshake (missing headers, bad key).
    BadRequest(&'static str),
    /// 405: a handshake with another method than GET.
    Method,
    /// 426 with `Sec-WebSocket-Version: 13`.
    Version,
}

/// Checks an upgrade request; returns the `Sec-WebSocket-Accept` value.
pub fn check_upgrade(head: &Head) -> Result<String, Refusal> {
    if !head.header_has_token("Connection", "upgrade") {
        return Err(Refusal::BadRequest(
            "'upgrade' token not found in 'Connection' header",
        ));
    }
    if !head.header_has_token("Upgrade", "websocket") {
        return Err(Refusal::BadRequest(
            "'websocket' token not found in 'Upgrade' header",
        ));
    }
    if head.method != "GET" {
        return Err(Refusal::Method);
    }
    if head.version != Version::Http11 {
        return Err(Refusal::BadRequest("WebSocket needs HTTP/1.1"));
    }
    if !head.header_has_token("Sec-WebSocket-Version", "13") {
        return Err(Refusal::Version);
    }
    let key = head.header("Sec-WebSocket-Key").map(str::trim).unwrap_or("");
    if !valid_key(key) {
        return Err(Refusal::BadRequest("missing or malformed Sec-WebSocket-Key"));
    }
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// RFC 6455 §4.1: the key is 16 random bytes in base64, i.e. 22 base64
/// characters and `==`.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// The `101 Switching Protocols` answer.
pub fn handshake_response(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::head_for_test;

    fn head(extra: &str, method: &str) -> Head {
        head_for_test(&format!("{method} /ws HTTP/1.1\r\nHost: x\r\n{extra}\r\n"))
    }

    const GOOD: &str = "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn rfc_example_key() {
        assert_eq!(
            check_upgrade(&head(GOOD, "GET")).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn refusals_in_gorilla_order() {
        assert!(matches!(
            check_upgrade(&head("", "GET")),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            check_upgrade(&head("Connection: upgrade\r\n", "GET")),
            Err(Refusal::BadRequest(_))
        ));
        assert_eq!(check_upgrade(&head(GOOD, "POST")), Err(Refusal::Method));
        let v8 = GOOD.replace("Version: 13", "Version: 8");
        assert_eq!(check_upgrade(&head(&v8, "GET")), Err(Refusal::Version));
        for bad in ["", "abc", "dGhlIHNhbXBsZSBub25jZQ=!", "dGhlIHNhbXBsZSBub25jZQ"] {
            let h = GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", bad);
            assert!(
                matches!(check_upgrade(&head(&h, "GET")), Err(Refusal::BadRequest(_))),
                "{bad:?}"
            );
        }
    }
}
