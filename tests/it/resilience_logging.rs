//! SPEC §12: logging never stops the server. With stderr closed (a closed
//! pipe: `wspush 2>&1 | head -1`, or fd 2 closed: `2>&-`) every log line
//! used to be a panic (`eprintln!`), so the first `/drop` after it killed
//! the process with 101; with stderr a pipe nobody reads, the loop used to
//! block in `write` once the pipe was full. The real binary, in each case.
//! (With `2>&-`, Rust's runtime reopens fd 2 on /dev/null at start, so
//! that case passed before too; it stays as a guard.)
use crate::common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary, its stdout read up to `listening on`.
struct Bin {
    addr: SocketAddr,
    child: Child,
}

impl Bin {
    fn spawn(mut cmd: std::process::Command) -> Bin {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn wspush");
        let addr = listening_addr(&mut child);
        Bin { addr, child }
    }

    /// SIGTERM, then the exit status (within `WAIT`).
    fn terminate(mut self) -> ExitStatus {
        let _ = command("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within {WAIT:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Things that log at `info` and `debug` all work: connections, a `/drop`
/// (logged at info; closes the client with 4000), pushes.
fn exercise(addr: SocketAddr) {
    let mut ws = connect_registered(addr, "aaa", "topic1");
    let r = push(addr, "aaa", "topic1", "before");
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(&mut ws), "before");
    let r = post(addr, "/drop", r#"{"userId":"aaa"}"#);
    assert_eq!((r.status, r.body.as_str()), (200, "dropped 1 clients"));
    assert_eq!(expect_close(&mut ws), 4000);
    let mut ws = connect_registered(addr, "bbb", "topic1");
    let r = push(addr, "bbb", "topic1", "after");
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(&mut ws), "after");
    assert_eq!(get(addr, "/healthz").status, 200);
}

#[test]
fn stderr_a_closed_pipe() {
    let mut cmd = command(env!("CARGO_BIN_EXE_wspush"));
    cmd.args(["--listen", "127.0.0.1:0", "--log-level", "debug"])
        .stderr(Stdio::piped());
    let mut bin = Bin::spawn(cmd);
    // Nobody will ever read it: the next write to it fails with EPIPE.
    drop(bin.child.stderr.take());
    exercise(bin.addr);
    assert!(
        bin.child.try_wait().expect("try_wait").is_none(),
        "the server died"
    );
    assert_eq!(bin.terminate().code(), Some(0));
}

#[test]
fn stderr_closed_by_the_shell() {
    let mut cmd = command("sh");
    cmd.args(["-c", r#"exec "$0" "$@" 2>&-"#, env!("CARGO_BIN_EXE_wspush")])
        .args(["--listen", "127.0.0.1:0", "--log-level", "debug"]);
    let bin = Bin::spawn(cmd);
    exercise(bin.addr);
    assert_eq!(bin.terminate().code(), Some(0));
}

/// Registers refused by JWT auth, each logged at debug level (at debug,
/// refusals are not rate-limited); about 50 bytes a line, so far more than
/// a pipe holds.
const FLOOD: usize = 4000;
const BATCH: usize = 100;

#[test]
fn stderr_a_pipe_nobody_reads() {
    let mut cmd = command(env!("CARGO_BIN_EXE_wspush"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--log-level",
        "debug",
        "--jwt-secret",
        "flood-secret",
    ])
    .stderr(Stdio::piped());
    let mut bin = Bin::spawn(cmd);
    // Held open, never read: once its 64 KiB are full, writes block.
    let _stderr: ChildStderr = bin.child.stderr.take().expect("piped");
    let addr = bin.addr;

    let started = Instant::now();
    let mut ws = ws_connect(addr, "/ws");
    for batch in 0..FLOOD / BATCH {
        for i in 0..BATCH {
            let id = batch * BATCH + i;
            send_text(
                &mut ws,
                &format!(r#"{{"token":"not-a-jwt-{id}","event":"e","id":{id}}}"#),
            );
        }
        for i in 0..BATCH {
            let reply = read_text(&mut ws);
            assert!(reply.contains("4401"), "reply {}: {reply}", batch * BATCH + i);
        }
    }
    assert!(started.elapsed() < WAIT, "the flood took {:?}", started.elapsed());

    // The loop is not stuck behind stderr: /healthz answers at once, and a
    // client can still register and get a push.
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = BufReader::new(&s).read_line(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let token = wspush::sign_jwt("zoe", b"flood-secret", wspush::unix_now(), 60);
    let mut ok = connect_registered(addr, &token, "e");
    let r = push(addr, "zoe", "e", "through");
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(&mut ok), "through");
    // Shutdown does not wait forever for the stalled log either.
    assert_eq!(bin.terminate().code(), Some(0));
}
