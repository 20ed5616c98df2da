//! An echo server on the same connection code as wspush: every frame that
//! is not a command comes back unchanged. Used for conformance runs
//! (Autobahn|Testsuite), so the message limit is raised to 16 MiB and the
//! register timeout is off.
//!
//!     cargo run --release --example echo -- 127.0.0.1:9001

use std::time::Duration;
use wspush::{Builder, ClientMessage, Reply};

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let server = Builder::new()
        .listen(addr)
        .ws_path("/")
        .configure(|c| {
            c.max_message_bytes = 16 << 20;
            c.max_backlog_bytes = 64 << 20;
            c.register_timeout = Duration::ZERO;
            c.ping_interval = Duration::ZERO;
        })
        .on_message(|_user, msg| {
            Some(match msg {
                ClientMessage::Text(t) => Reply::Text(t.to_string()),
                ClientMessage::Binary(b) => Reply::Binary(b.to_vec()),
            })
        })
        .handle_signals(true)
        .bind();
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on {}", server.local_addr());
    if let Err(e) = server.run() {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}
