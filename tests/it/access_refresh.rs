//! SPEC §9 refresh: `{"type": "refresh", "token": T}` (optional `id`)
//! swaps in a new token for the same user — its expiry and its permitted
//! events (events no longer permitted are unsubscribed). Another user:
//! 4403; rejected: 4401; before any register: 4400. Over real sockets.

use crate::access_events::*;
use crate::common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// A connection whose token expires within two seconds outlives it after
/// a refresh with a longer-lived token, and keeps receiving pushes.
#[test]
fn a_refresh_moves_the_expiry() {
    let s = jwt_server();
    let mut ws = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(
            &mut ws,
            json!({"token": token_with("ann", 2, json!({})), "event": "e", "id": 1})
        ),
        ok(1)
    );
    let later = token_with("ann", 600, json!({}));
    assert_eq!(
        ask(&mut ws, json!({"type": "refresh", "token": later, "id": 2})),
        ok(2)
    );
    std::thread::sleep(Duration::from_millis(2200));
    reaches(s.addr, "ann", "e", "still here", 1);
    assert_eq!(read_text(&mut ws), "still here");
}

/// Without an id, a refresh is silent; the new token's (short) expiry is
/// the one in force.
#[test]
fn a_refresh_without_an_id_is_silent_and_its_expiry_counts() {
    let s = jwt_server();
    let mut ws = connect_registered(s.addr, &token_with("bo", 600, json!({})), "e");
    let t0 = Instant::now();
    send_text(
        &mut ws,
        &json!({"type": "refresh", "token": token_with("bo", 1, json!({}))}).to_string(),
    );
    assert_eq!(expect_close_frame(&mut ws), (4401, "token expired".into()));
    let waited = t0.elapsed();
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[test]
fn events_no_longer_permitted_are_unsubscribed() {
    let s = jwt_server();
    let mut ws = ws_connect(s.addr, "/ws");
    let wide = events_token("cy", json!(["a", "b:*"]));
    for (id, e) in [(1, "a"), (2, "b:1"), (3, "b:2")] {
        assert_eq!(ask(&mut ws, json!({"token": wide, "event": e, "id": id})), ok(id));
    }
    let narrow = events_token("cy", json!(["a", "b:1"]));
    assert_eq!(
        ask(&mut ws, json!({"type": "refresh", "token": narrow, "id": 4})),
        ok(4)
    );
    reaches(s.addr, "cy", "b:2", "gone", 0);
    for e in ["a", "b:1"] {
        reaches(s.addr, "cy", e, e, 1);
        assert_eq!(read_text(&mut ws), e);
    }
    // A refresh that permits nothing leaves the connection bound but deaf.
    let none = events_token("cy", json!([]));
    assert_eq!(
        ask(&mut ws, json!({"type": "refresh", "token": none, "id": 5})),
        ok(5)
    );
    reaches(s.addr, "cy", "a", "x", 0);
    assert_eq!(
        ask(&mut ws, json!({"token": none, "event": "a", "id": 6})),
        refused(6, 4403, "event not allowed")
    );
}

#[test]
fn another_users_token_is_refused_with_4403() {
    let s = jwt_server();
    let mut ws = connect_registered(s.addr, &token_with("dee", 600, json!({})), "e");
    let mallory = token_with("mallory", 600, json!({}));
    assert_eq!(
        ask(&mut ws, json!({"type": "refresh", "token": mallory, "id": 1})),
        refused(1, 4403, "token belongs to another user")
    );
    // The old token is still in force.
    reaches(s.addr, "dee", "e", "mine", 1);
    assert_eq!(read_text(&mut ws), "mine");
    send_text(&mut ws, &json!({"type": "refresh", "token": mallory}).to_string());
    assert_eq!(expect_close(&mut ws), 4403);
    reaches(s.addr, "dee", "e", "x", 0);
}

#[test]
fn a_rejected_token_is_refused_with_4401_and_the_old_one_stays() {
    let s = jwt_server();
    let mut ws = connect_registered(s.addr, &token_with("eve", 600, json!({})), "e");
    let forged = wspush::sign_jwt("eve", b"not-the-secret", wspush::unix_now(), 600);
    let expired = token_with("eve", -3600, json!({}));
    let bad_claim = events_token("eve", json!("e"));
    for (id, token, why) in [
        (1, forged.as_str(), "bad token signature"),
        (2, expired.as_str(), "token expired"),
        (3, "garbage", "malformed token"),
        (4, bad_claim.as_str(), "events claim is not an array of strings"),
    ] {
        assert_eq!(
            ask(&mut ws, json!({"type": "refresh", "token": token, "id": id})),
            refused(id, 4401, why)
        );
    }
    reaches(s.addr, "eve", "e", "ok", 1);
    assert_eq!(read_text(&mut ws), "ok");
    assert_eq!(metric(s.addr, "wspush_auth_failures_total"), 4);
    send_text(&mut ws, &json!({"type": "refresh", "token": forged}).to_string());
    assert_eq!(expect_close_frame(&mut ws), (4401, "bad token signature".into()));
}

#[test]
fn a_refresh_before_any_register_is_refused_with_4400() {
    let s = jwt_server();
    let good = token_with("fay", 600, json!({}));
    let mut ws = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(&mut ws, json!({"type": "refresh", "token": good, "id": 1})),
        refused(1, 4400, "refresh before register")
    );
    // A refresh without a token is malformed too.
    assert_eq!(
        ask(&mut ws, json!({"type": "refresh", "id": 2})),
        refused(2, 4400, "token must be a non-empty string")
    );
    // Still usable: register, then refresh works.
    assert_eq!(ask(&mut ws, json!({"token": good, "event": "e", "id": 3})), ok(3));
    assert_eq!(
        ask(&mut ws, json!({"type": "refresh", "token": good, "id": 4})),
        ok(4)
    );
    let mut fresh = ws_connect(s.addr, "/ws");
    send_text(&mut fresh, &json!({"type": "refresh", "token": good}).to_string());
    assert_eq!(
        expect_close_frame(&mut fresh),
        (4400, "refresh before register".into())
    );
}
