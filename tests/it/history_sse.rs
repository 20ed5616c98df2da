//! Resuming a Server-Sent Events stream (SPEC §8): `Last-Event-ID` (what
//! EventSource sends by itself) or `?since=`, the header winning; every
//! event of the stream resumed in push order; one `event: gap` per event
//! that cannot be recovered, before any live message.

use crate::history::{post_json, push_cursor, with_history};
use crate::sse::{sse_open, Event, Sse};
use serde_json::{json, Value};
use std::net::SocketAddr;

#[track_caller]
fn open(addr: SocketAddr, query: &str, headers: &str) -> Sse {
    sse_open(addr, query, headers).unwrap_or_else(|r| panic!("stream refused: {r:?}"))
}

#[track_caller]
fn data_of(e: &Event) -> (&str, &str, Option<&str>) {
    (e.event.as_str(), e.data.as_str(), e.id.as_deref())
}

#[track_caller]
fn expect_gap(sse: &mut Sse, event: &str) {
    let gap = sse.next_event();
    assert_eq!((gap.event.as_str(), gap.id.as_deref()), ("gap", None), "{gap:?}");
    let data: Value = serde_json::from_str(&gap.data).expect("gap data is JSON");
    assert_eq!(data, json!({"event": event, "recovered": false}));
}

#[test]
fn a_stream_resumes_from_last_event_id_or_since_and_the_header_wins() {
    let server = with_history(100);
    let addr = server.addr;
    let mut sse = open(addr, "event=e1&event=e2&token=u", "");
    let c1 = push_cursor(addr, "u", "e1", "seen");
    assert_eq!(data_of(&sse.next_event()), ("e1", "seen", Some(c1.as_str())));
    drop(sse);

    let ca = push_cursor(addr, "u", "e1", "a");
    push_cursor(addr, "v", "e1", "not mine");
    let cb = post_json(addr, "/broadcast", json!({"event": "e2", "message": "b"}))["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    push_cursor(addr, "u", "e3", "not subscribed");

    let resumed = |sse: &mut Sse| {
        assert_eq!(data_of(&sse.next_event()), ("e1", "a", Some(ca.as_str())));
        assert_eq!(data_of(&sse.next_event()), ("e2", "b", Some(cb.as_str())));
    };
    let mut by_header = open(
        addr,
        "event=e1&event=e2&token=u",
        &format!("Last-Event-ID: {c1}\r\n"),
    );
    resumed(&mut by_header);
    let mut by_query = open(addr, &format!("event=e1&event=e2&token=u&since={c1}"), "");
    resumed(&mut by_query);
    let mut header_wins = open(
        addr,
        "event=e1&event=e2&token=u&since=nonsense",
        &format!("Last-Event-ID: {c1}\r\n"),
    );
    resumed(&mut header_wins);
    let mut header_loses = open(
        addr,
        &format!("event=e1&event=e2&token=u&since={c1}"),
        "Last-Event-ID: nonsense\r\n",
    );
    expect_gap(&mut header_loses, "e1");
    expect_gap(&mut header_loses, "e2");

    // Then live, on every one of them, with its cursor.
    let c = push_cursor(addr, "u", "e2", "live");
    for sse in [&mut by_header, &mut by_query, &mut header_wins, &mut header_loses] {
        assert_eq!(data_of(&sse.next_event()), ("e2", "live", Some(c.as_str())));
    }
}

/// An event whose missed messages were evicted gets one `event: gap`
/// before anything else; the stream's other events are still replayed.
/// In envelope mode the data carries the cursor too.
#[test]
fn each_event_that_cannot_be_recovered_gets_one_gap_first() {
    let server = with_history(2);
    let addr = server.addr;
    let mut sse = open(addr, "event=a&event=b&token=u&envelope=1", "");
    let c1 = push_cursor(addr, "u", "a", "seen");
    let seen: Value = serde_json::from_str(&sse.next_event().data).unwrap();
    assert_eq!(seen, json!({"event": "a", "message": "seen", "cursor": c1}));
    drop(sse);
    for i in 0..3 {
        push_cursor(addr, "u", "a", &format!("lost {i}"));
    }
    let cb = push_cursor(addr, "u", "b", "kept");

    let mut sse = open(
        addr,
        "event=a&event=b&token=u&envelope=1",
        &format!("Last-Event-ID: {c1}\r\n"),
    );
    expect_gap(&mut sse, "a");
    let kept = sse.next_event();
    assert_eq!(
        (kept.event.as_str(), kept.id.as_deref()),
        ("b", Some(cb.as_str()))
    );
    assert_eq!(
        serde_json::from_str::<Value>(&kept.data).unwrap(),
        json!({"event": "b", "message": "kept", "cursor": cb})
    );
    let live = push_cursor(addr, "u", "a", "live");
    let e = sse.next_event();
    assert_eq!((e.event.as_str(), e.id.as_deref()), ("a", Some(live.as_str())));
}
