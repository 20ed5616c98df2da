//! HS256 JSON Web Tokens: verify a client's token, mint one for `wspush token`.
//!
//! Only what a push server needs, and only the safe subset: the header must
//! say `"alg": "HS256"` (so `none` and RS/ES tokens — the classic algorithm
//! confusion attacks — are refused before any signature work), the HMAC is
//! RustCrypto's and compared in constant time by `verify_slice`, `sub` is the
//! userId, `exp` is honoured to the second (a live connection is closed at
//! that very second too, so accepting a token past it would only make the
//! two rules disagree), and `nbf` gets a small leeway: a token minted on a
//! back end whose clock runs a little ahead must still work at once.

use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// Clock skew tolerated on `nbf`, in seconds.
pub const NBF_LEEWAY_SECS: i64 = 30;

/// Why a token was refused (`auth::Rejection` turns it into the reason the
/// client is told).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    Algorithm,
    Signature,
    Expired,
    NotYetValid,
    MissingSubject,
    /// `--jwt-audience` is set and `aud` does not name it.
    Audience,
    /// `--jwt-issuer` is set and `iss` is not it.
    Issuer,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwtError::Malformed => "malformed token",
            JwtError::Algorithm => "algorithm is not HS256",
            JwtError::Signature => "bad signature",
            JwtError::Expired => "token expired",
            JwtError::NotYetValid => "token not yet valid",
            JwtError::MissingSubject => "token has no sub",
            JwtError::Audience => "wrong audience",
            JwtError::Issuer => "wrong issuer",
        })
    }
}

fn decode_json(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = BASE64URL_NOPAD
        .decode(part.as_bytes())
        .map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwtError::Malformed),
    }
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// A numeric claim: JWT times are seconds since the epoch, possibly fractional.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| Some(f as i64))
            .ok_or(JwtError::Malformed),
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    /// `exp`, Unix seconds.
    pub exp: Option<i64>,
    /// The `events` claim as sent (checked by `auth::patterns`).
    pub events: Option<Value>,
    /// Which of the secrets verified it (its index), so a connection can
    /// be revoked when that secret is removed.
    pub secret: usize,
}

/// Claims the server insists on when configured (`--jwt-audience`,
/// `--jwt-issuer`); unset, `aud` and `iss` are not looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    pub audience: Option<String>,
    pub issuer: Option<String>,
}

/// RFC 7519 §4.1.3: `aud` is one string or an array of them.
fn names_audience(aud: Option<&Value>, want: &str) -> bool {
    match aud {
        Some(Value::String(s)) => s == want,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(want)),
        _ => false,
    }
}

/// Checks `token` against `secret` at `now` (Unix seconds); returns `sub`.
#[cfg(test)]
pub fn verify(token: &str, secret: &[u8], now: i64) -> Result<String, JwtError> {
    verify_any(token, &[secret], now).map(|c| c.sub)
}

/// As [`verify`], for a token signed with any of `secrets` (secret
/// rotation: old and new both verify while clients move over).
#[cfg(test)]
pub fn verify_any<S: AsRef<[u8]>>(token: &str, secrets: &[S], now: i64) -> Result<Claims, JwtError> {
    verify_with(token, secrets, now, &Expect::default())
}

/// As [`verify_any`], also checking `aud` and `iss` when `expect` names them.
pub fn verify_with<S: AsRef<[u8]>>(
    token: &str,
    secrets: &[S],
    now: i64,
    expect: &Expect,
) -> Result<Claims, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let header = decode_json(h)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(JwtError::Algorithm);
    }
    let sig = BASE64URL_NOPAD
        .decode(s.as_bytes())
        .map_err(|_| JwtError::Malformed)?;
    let signed_by = secrets.iter().position(|secret| {
        let mut m = mac(secret.as_ref());
        m.update(h.as_bytes());
        m.update(b".");
        m.update(p.as_bytes());
        m.verify_slice(&sig).is_ok()
    });
    let Some(secret) = signed_by else {
        return Err(JwtError::Signature);
    };
    // Only a token we signed gets its claims read.
    let mut claims = decode_json(p)?;
    let exp = time_claim(&claims, "exp")?;
    if let Some(exp) = exp {
        // RFC 7519 §4.1.4: valid only *before* exp.
        if now >= exp {
            return Err(JwtError::Expired);
        }
    }
    if let Some(nbf) = time_claim(&claims, "nbf")? {
        if now.saturating_add(NBF_LEEWAY_SECS) < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(want) = &expect.audience {
        if !names_audience(claims.get("aud"), want) {
            return Err(JwtError::Audience);
        }
    }
    if let Some(want) = &expect.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(want.as_str()) {
            return Err(JwtError::Issuer);
        }
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() => Ok(Claims {
            sub: sub.to_string(),
            exp,
            events: claims.remove("events"),
            secret,
        }),
        _ => Err(JwtError::MissingSubject),
    }
}

/// Mints `{"sub": sub, "iat": now, "exp": now + ttl}` signed with `secret`.
pub fn sign(sub: &str, secret: &[u8], now: i64, ttl_secs: i64) -> String {
    sign_with(sub, secret, now, ttl_secs, Map::new())
}

/// As [`sign`], with more claims (`events`, `aud`, `iss`, ...) beside
/// `sub`, `iat` and `exp`; a claim in `extra` with one of those names
/// replaces it.
pub fn sign_with(sub: &str, secret: &[u8], now: i64, ttl_secs: i64, extra: Map<String, Value>) -> String {
    let header = BASE64URL_NOPAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::from(sub));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now.saturating_add(ttl_secs)));
    claims.extend(extra);
    let claims = Value::Object(claims);
    let payload = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let sig = BASE64URL_NOPAD.encode(&m.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Seconds since the Unix epoch, as JWT claims count them.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Parses a lifetime for `wspush token --ttl` with the parser every
/// duration flag uses (`90`, `90s`, `15m`, `1h`, `7d`, at most a year),
/// in whole seconds, at least one.
pub fn parse_ttl(s: &str) -> Result<i64, String> {
    let d = crate::config::parse_duration(s)?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("{s:?} is too short: a token lives at least 1s"));
    }
    Ok(d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";
    const NOW: i64 = 1_700_000_000;

    fn forge(header: &str, claims: &str, secret: &[u8]) -> String {
        let h = BASE64URL_NOPAD.encode(header.as_bytes());
        let p = BASE64URL_NOPAD.encode(claims.as_bytes());
        let mut m = mac(secret);
        m.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", BASE64URL_NOPAD.encode(&m.finalize().into_bytes()))
    }

    #[test]
    fn round_trip() {
        let t = sign("alice", SECRET, NOW, 3600);
        assert_eq!(verify(&t, SECRET, NOW), Ok("alice".into()));
        assert_eq!(verify(&t, SECRET, NOW + 3599), Ok("alice".into()));
        assert_eq!(verify(&t, SECRET, NOW + 3600), Err(JwtError::Expired));
        assert_eq!(verify(&t, SECRET, NOW + 3601), Err(JwtError::Expired));
        assert_eq!(verify(&t, b"other", NOW), Err(JwtError::Signature));
    }

    /// Computed independently (Python: hmac.new(b"test-secret", signing_input,
    /// hashlib.sha256), base64url without padding) for sub "alice", iat
    /// 1700000000, exp 1700003600.
    const VECTOR: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAzNjAwfQ.4nOHfbK54qhAMXm0e6npitpHkibCYgn_iA9JRooiRlY";

    #[test]
    fn independent_vector() {
        assert_eq!(verify(VECTOR, SECRET, NOW), Ok("alice".into()));
    }

    #[test]
    fn refusals() {
        let ok_claims = r#"{"sub":"a","exp":1700003600}"#;
        let cases = [
            (forge(r#"{"alg":"none"}"#, ok_claims, SECRET), JwtError::Algorithm),
            (
                forge(r#"{"alg":"RS256"}"#, ok_claims, SECRET),
                JwtError::Algorithm,
            ),
            (
                forge(r#"{"alg":"hs256"}"#, ok_claims, SECRET),
                JwtError::Algorithm,
            ),
            (forge(r#"{"typ":"JWT"}"#, ok_claims, SECRET), JwtError::Algorithm),
            (
                forge(r#"{"alg":"HS256"}"#, r#"{"exp":1700003600}"#, SECRET),
                JwtError::MissingSubject,
            ),
            (
                forge(r#"{"alg":"HS256"}"#, r#"{"sub":""}"#, SECRET),
                JwtError::MissingSubject,
            ),
            (
                forge(r#"{"alg":"HS256"}"#, r#"{"sub":5}"#, SECRET),
                JwtError::MissingSubject,
            ),
            (
                forge(r#"{"alg":"HS256"}"#, r#"{"sub":"a","exp":1600000000}"#, SECRET),
                JwtError::Expired,
            ),
            (
                forge(r#"{"alg":"HS256"}"#, r#"{"sub":"a","nbf":1800000000}"#, SECRET),
                JwtError::NotYetValid,
            ),
            (
                forge(r#"{"alg":"HS256"}"#, r#"{"sub":"a","exp":"soon"}"#, SECRET),
                JwtError::Malformed,
            ),
            (forge(r#"{"alg":"HS256"}"#, "[1]", SECRET), JwtError::Malformed),
            (
                forge(r#"{"alg":"HS256"}"#, ok_claims, b"wrong"),
                JwtError::Signature,
            ),
        ];
        for (token, want) in cases {
            assert_eq!(verify(&token, SECRET, NOW), Err(want), "{token}");
        }
        // An unsigned `alg: none` token with an empty signature.
        let h = BASE64URL_NOPAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let p = BASE64URL_NOPAD.encode(ok_claims.as_bytes());
        assert_eq!(
            verify(&format!("{h}.{p}."), SECRET, NOW),
            Err(JwtError::Algorithm)
        );
        for junk in ["", "a", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.", "e30.e30.e30"] {
            assert!(verify(junk, SECRET, NOW).is_err(), "{junk}");
        }
    }

    #[test]
    fn any_of_several_secrets_verifies() {
        let old = sign("a", b"old", NOW, 60);
        let new = sign("a", b"new", NOW, 60);
        let secrets = [b"new".to_vec(), b"old".to_vec()];
        assert_eq!(verify_any(&old, &secrets, NOW).map(|c| c.sub), Ok("a".into()));
        assert_eq!(verify_any(&new, &secrets, NOW).map(|c| c.sub), Ok("a".into()));
        let other = sign("a", b"other", NOW, 60);
        assert_eq!(verify_any(&other, &secrets, NOW), Err(JwtError::Signature));
        let none: [&[u8]; 0] = [];
        assert_eq!(verify_any(&new, &none, NOW), Err(JwtError::Signature));
    }

    #[test]
    fn nbf_leeway() {
        let t = forge(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"sub":"a","nbf":{}}}"#, NOW + 10),
            SECRET,
        );
        assert_eq!(verify(&t, SECRET, NOW), Ok("a".into()));
        assert_eq!(
            verify(&t, SECRET, NOW - NBF_LEEWAY_SECS),
            Err(JwtError::NotYetValid)
        );
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert_eq!(parse_ttl("1.5m"), Ok(90));
        for bad in [
            "",
            "h",
            "1y",
            "-5m",
            "0",
            "500ms",
            "99999999999999999999d",
            "400d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
