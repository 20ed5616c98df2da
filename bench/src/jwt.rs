//! HS256 JWTs for `idle --jwt-secret` (SPEC §9 benchmark): one per
//! connection, minted before the clock starts so the measured time is the
//! server's, with an optional `events` claim of N patterns.

use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// `{"sub": sub, "iat": now, "exp": now + 1 h}` plus, with `patterns`
/// Some(n), an `events` claim of n patterns: n - 1 prefixes that do not
/// match `event` (`x0:*`, `x1:*`, ...), then `event` itself last, so every
/// register scans the whole list.
pub fn mint(secret: &[u8], sub: &str, now: u64, patterns: Option<usize>, event: &str) -> String {
    let header = BASE64URL_NOPAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let mut claims = format!(r#"{{"sub":"{sub}","iat":{now},"exp":{}"#, now + 3600);
    if let Some(n) = patterns {
        let mut list: Vec<String> = (0..n.saturating_sub(1)).map(|k| format!(r#""x{k}:*""#)).collect();
        if n > 0 {
            list.push(format!(r#""{event}""#));
        }
        claims.push_str(&format!(r#","events":[{}]"#, list.join(",")));
    }
    claims.push('}');
    let input = format!("{header}.{}", BASE64URL_NOPAD.encode(claims.as_bytes()));
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(input.as_bytes());
    format!("{input}.{}", BASE64URL_NOPAD.encode(&mac.finalize().into_bytes()))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
