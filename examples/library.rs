//! wspush inside your own program: your auth, your push rule, a hook for
//! what clients send, and pushes from another thread through a `Handle`.
//! `cargo run --release --example library`, then connect to
//! ws://127.0.0.1:12345/ws and register with token "session-alice" on
//! "news": a push arrives every second for a minute.
use std::collections::HashMap;
use std::time::Duration;
use wspush::{Builder, ClientMessage, Reply};

fn main() -> Result<(), wspush::Error> {
    // Your sessions: token -> userId.
    let sessions: HashMap<String, String> = [("session-alice", "alice"), ("session-bob", "bob")]
        .into_iter()
        .map(|(token, user)| (token.to_string(), user.to_string()))
        .collect();

    let server = Builder::new()
        .listen("127.0.0.1:12345")
        .auth(move |token| sessions.get(token).cloned()) // Some(userId), or None: close 4401
        .push_auth(|req| req.header("authorization") == Some("Bearer s3cret"))
        .on_message(|user, msg| match msg {
            // The seed's AfterReadFunc: frames that are not commands.
            ClientMessage::Text(t) => Some(Reply::Text(format!("{user:?} said {t}"))),
            ClientMessage::Binary(_) => None,
        })
        .configure(|c| c.max_events = 16)
        .bind()?; // the address is known and connections queue from here on
    println!("listening on {}", server.local_addr());
    let handle = server.handle(); // Send + Clone
    let serving = std::thread::spawn(move || server.run());

    for tick in 1..=60 {
        std::thread::sleep(Duration::from_secs(1));
        let n = handle.push("alice", "news", &format!("tick {tick}"))?; // connections reached
        if n == 0 && tick % 10 == 0 {
            handle.broadcast("news", "alice is not here")?;
        }
    }
    handle.drop_user("bob", None)?; // close 4000: bob's clients may reconnect
    handle.drop_user_for_good("mallory", None)?; // close 4001: they must not
    handle.shutdown(); // every client gets 1001, then run() returns
    if let Ok(ran) = serving.join() {
        ran?;
    }
    Ok(())
}
