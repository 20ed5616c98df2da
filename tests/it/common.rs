//! Helpers shared by the integration tests: a server on 127.0.0.1:0 (in
//! process or the real binary), WebSocket clients, raw HTTP over sockets.
//! Every blocking read has a timeout, so a stuck test fails instead of hanging.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

/// How long any single expectation may wait.
pub const WAIT: Duration = Duration::from_secs(5);

pub type Ws = WebSocket<TcpStream>;

/// An in-process server; shut down and joined on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: wspush::Handle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Stops the server and returns what `run` returned.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.handle.shutdown();
        self.thread
            .take()
            .expect("joined once")
            .join()
            .expect("server thread panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.shutdown();
            let _ = t.join();
        }
    }
}

/// Starts a server with default settings on a free loopback port.
pub fn start() -> TestServer {
    start_with(|b| b)
}

/// Starts a server after `f` adjusted the builder.
pub fn start_with(f: impl FnOnce(wspush::Builder) -> wspush::Builder) -> TestServer {
    let builder = wspush::Builder::new().listen("127.0.0.1:0");
    let server = f(builder).bind().expect("server binds");
    let addr = server.local_addr();
    let handle = server.handle();
    let thread = std::thread::spawn(move || server.run());
    TestServer {
        addr,
        handle,
        thread: Some(thread),
    }
}

/// Opens a WebSocket to `path` (e.g. "/ws").
#[track_caller]
pub fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    try_ws(addr, path, &[]).unwrap_or_else(|r| panic!("upgrade refused: {r:?}"))
}

#[track_caller]
pub fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send text");
}

/// Connects and registers `token` for `event` (seed format, no id), then
/// makes sure the server has processed it with an acknowledged no-op.
#[track_caller]
pub fn connect_registered(addr: SocketAddr, token: &str, event: &str) -> Ws {
    let mut ws = ws_connect(addr, "/ws");
    register(&mut ws, token, event);
    ws
}

/// Registers with an `id` and waits for the ack, so the binding is in place.
#[track_caller]
pub fn register(ws: &mut Ws, token: &str, event: &str) {
    let cmd = serde_json::json!({"token": token, "event": event, "id": "reg"}).to_string();
    send_text(ws, &cmd);
    let reply = read_text(ws);
    let v: serde_json::Value = serde_json::from_str(&reply).expect("ack is JSON");
    assert_eq!(v, serde_json::json!({"id": "reg", "ok": true}), "register ack");
}

/// Next text message, skipping pings/pongs.
#[track_caller]
pub fn read_text(ws: &mut Ws) -> String {
    loop {
        match read_msg(ws) {
            Ok(Message::Text(t)) => return t.as_str().to_string(),
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Waits for the server's close frame and returns its code.
#[track_caller]
pub fn expect_close(ws: &mut Ws) -> u16 {
    loop {
        match read_msg(ws) {
            Ok(Message::Close(Some(frame))) => {
                let _ = ws.flush();
                return u16::from(frame.code);
            }
            Ok(Message::Close(None)) => panic!("close frame without a code"),
            Ok(Message::Text(t)) => panic!("expected close, got text {t}"),
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got error {e}"),
        }
    }
}

/// Waits for the server's close frame; its code and reason.
#[track_caller]
pub fn expect_close_frame(ws: &mut Ws) -> (u16, String) {
    loop {
        match read_msg(ws) {
            Ok(Message::Close(Some(frame))) => {
                let _ = ws.flush();
                return (u16::from(frame.code), frame.reason.as_str().to_string());
            }
            Ok(Message::Close(None)) => panic!("close frame without a code"),
            Ok(Message::Text(t)) => panic!("expected close, got text {t}"),
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got error {e}"),
        }
    }
}

/// Asserts no message arrives for `for_how_long` (pings aside).
#[track_caller]
pub fn expect_silence(ws: &mut Ws, for_how_long: Duration) {
    let deadline = Instant::now() + for_how_long;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        ws.get_mut().set_read_timeout(Some(left)).unwrap();
        match ws.read() {
            Err(e) if interrupted(&e) => continue,
            Err(tungstenite::Error::Io(e))
                if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut =>
            {
                break
            }
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            other => panic!("expected nothing, got {other:?}"),
        }
    }
    ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
}

pub fn close_code(code: CloseCode) -> u16 {
    u16::from(code)
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (Content-Length framed, or to EOF) from a reader.
#[track_caller]
pub fn read_response(r: &mut BufReader<TcpStream>) -> HttpResponse {
    let (status, headers) = read_status_and_headers(r);
    let mut resp = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    if status == 100 || status == 101 || status == 304 {
        return resp;
    }
    let mut body = Vec::new();
    match resp.header("Content-Length") {
        Some(n) => {
            body.resize(n.parse().expect("numeric length"), 0);
            r.read_exact(&mut body).expect("body");
        }
        None => {
            r.read_to_end(&mut body).expect("body to EOF");
        }
    }
    resp.body = String::from_utf8(body).expect("utf-8 body");
    resp
}

/// A response's status line and headers (the body left unread).
#[track_caller]
pub fn read_status_and_headers(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let mut parts = line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header line");
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').expect("header has a colon");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    (status, headers)
}

/// The server closes the connection: reading gives EOF (a reset also counts
/// as closed), never a timeout, and no further bytes.
#[track_caller]
pub fn expect_eof(r: &mut BufReader<TcpStream>) {
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => assert!(
            rest.is_empty(),
            "bytes after the last response: {:?}",
            String::from_utf8_lossy(&rest)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("connection not closed by the server: {e}"),
    }
}

/// A normal push to user "aaa" on "topic1" still reaches `ws`, and it is the
/// next thing that client sees (nothing leaked from earlier bad requests).
#[track_caller]
pub fn still_serves(addr: SocketAddr, ws: &mut Ws, msg: &str) {
    let r = push(addr, "aaa", "topic1", msg);
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(ws), msg);
}

/// A raw HTTP connection for edge cases.
pub fn raw_conn(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// Sends raw bytes on a fresh connection and reads one response.
#[track_caller]
pub fn raw_request(addr: SocketAddr, raw: &[u8]) -> HttpResponse {
    let (mut s, mut r) = raw_conn(addr);
    s.write_all(raw).expect("write request");
    read_response(&mut r)
}

/// POSTs `body` to `path` (closing the connection after) and reads the answer.
#[track_caller]
pub fn post(addr: SocketAddr, path: &str, body: &str) -> HttpResponse {
    post_with(addr, path, body, &[])
}

#[track_caller]
pub fn post_with(addr: SocketAddr, path: &str, body: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw_request(addr, req.as_bytes())
}

#[track_caller]
pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    raw_request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// `POST /push` for one user.
#[track_caller]
pub fn push(addr: SocketAddr, user: &str, event: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({"userId": user, "event": event, "message": message}).to_string();
    post(addr, "/push", &body)
}

/// A raw `POST /push` request with `body`, for pipelining several in one write.
pub fn push_request(body: &str) -> String {
    format!(
        "POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Polls `f` until it returns true or `WAIT` passes.
#[track_caller]
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for: {what}");
}

/// Reads one gauge/counter value from /metrics.
#[track_caller]
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let m = get(addr, "/metrics");
    assert_eq!(m.status, 200);
    metric_in(&m.body, name)
}

/// The value of metric `name` in a `/metrics` text: exact when `name`
/// carries labels (`wspush_connections{transport="sse"}`), else the sum
/// over every label set (a metric split by `transport` counts both).
#[track_caller]
pub fn metric_in(text: &str, name: &str) -> u64 {
    let values: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = match rest.strip_prefix('{') {
                Some(labels) if !name.contains('{') => &labels[labels.find('}')? + 1..],
                _ => rest,
            };
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
        .collect();
    assert!(!values.is_empty(), "metric {name} missing");
    values.iter().sum()
}

/// The real binary, started with `args`; killed on drop.
pub struct BinServer {
    pub addr: SocketAddr,
    pub child: Child,
}

impl Drop for BinServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `target/.../wspush` with `args` (add `--listen 127.0.0.1:0` yourself
/// or use `spawn_bin`), waits for `listening on ADDR`.
#[track_caller]
pub fn spawn_bin_raw(args: &[&str], envs: &[(&str, &str)]) -> BinServer {
    let mut cmd = command(env!("CARGO_BIN_EXE_wspush"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn wspush");
    let addr = listening_addr(&mut child);
    BinServer { addr, child }
}

/// Reads the server's first stdout line, `listening on ADDR`, and returns ADDR.
#[track_caller]
pub fn listening_addr(child: &mut Child) -> SocketAddr {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read first line");
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("address")
}

/// The real binary on a free loopback port.
#[track_caller]
pub fn spawn_bin(extra: &[&str]) -> BinServer {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    spawn_bin_raw(&args, &[])
}

// ---- Surviving EINTR -------------------------------------------------------
//
// Helpers for the `auth_*` tests that survive `EINTR`.
//
// Why: a socket read with a timeout (`SO_RCVTIMEO`, which every test
// client sets) is not restarted after a signal, even an ignored one. When a
// thread of this test binary spawns a short-lived process with
// `posix_spawn` (std's default), it blocks all signals until the child has
// exec'd; if the child exits before the parent unblocks them (common on a
// loaded 2-core machine), its SIGCHLD is not discarded but queued to the
// process and wakes whichever test thread sits in `recv`, which then fails
// with `EINTR` ("Interrupted system call"). `common.rs`'s WebSocket helpers
// panic on that. So the auth tests (a) spawn their short-lived processes
// through [`command`] (fork + exec: the parent never blocks signals), and
// (b) read WebSockets through the retrying helpers below. The HTTP helpers
// of `common.rs` are fine: std's `read_line`/`read_exact`/`read_to_end`
// already retry `Interrupted`.

/// `Command::new(program)` that spawns with fork + exec instead of
/// `posix_spawn` (see the module comment).
pub fn command(program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    // SAFETY: the closure does nothing; it only makes std use fork + exec.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
    cmd
}

fn interrupted(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if io.kind() == ErrorKind::Interrupted)
}

/// The next message, retrying reads a signal interrupted.
pub fn read_msg(ws: &mut Ws) -> tungstenite::Result<Message> {
    loop {
        match ws.read() {
            Err(e) if interrupted(&e) => continue,
            other => return other,
        }
    }
}

/// The RFC 6455 §1.3 sample key and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Reads an HTTP response head byte by byte (so no WebSocket bytes are
/// swallowed), then a Content-Length body if the status is not 101.
fn read_head(s: &mut TcpStream) -> HttpResponse {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => panic!("EOF in the response head: {:?}", String::from_utf8_lossy(&head)),
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("reading the response head: {e}"),
        }
    }
    let text = String::from_utf8(head).expect("utf-8 head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header has a colon");
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut resp = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    if status != 101 {
        let n: usize = resp
            .header("Content-Length")
            .map_or(0, |n| n.parse().expect("length"));
        let mut body = vec![0; n];
        s.read_exact(&mut body).expect("body");
        resp.body = String::from_utf8(body).expect("utf-8 body");
    }
    resp
}

/// Opens a WebSocket to `path` with extra request headers; the refusal
/// response when the server does not switch protocols.
#[track_caller]
pub fn try_ws(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Ws, HttpResponse> {
    let mut s = TcpStream::connect(addr).expect("tcp connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write upgrade");
    let resp = read_head(&mut s);
    if resp.status != 101 {
        return Err(resp);
    }
    assert_eq!(resp.header("Sec-WebSocket-Accept"), Some(ACCEPT), "{resp:?}");
    Ok(tungstenite::WebSocket::from_raw_socket(s, Role::Client, None))
}

// ---- Temporary files and a binary with its log ------------------------------

/// A file under the temp dir with a unique name, removed on drop.
pub struct TempFile(std::path::PathBuf);

impl TempFile {
    pub fn new(tag: &str, text: &str) -> TempFile {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let f = TempFile(std::env::temp_dir().join(format!(
            "wspush-it-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )));
        f.write(text);
        f
    }

    /// Replaces the contents atomically (write a sibling, rename over), as
    /// an editor or a deploy does, so the server never reads half a file.
    pub fn write(&self, text: &str) {
        let tmp = self.0.with_extension("new");
        std::fs::write(&tmp, text).expect("write temp file");
        std::fs::rename(&tmp, &self.0).expect("rename temp file");
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Spawns `cmd` with stdin closed and stdout and stderr piped; stderr is
/// read to its end on a thread (so the child never blocks on a full pipe)
/// and handed back by the handle once the child has exited.
#[track_caller]
pub fn spawn_collecting_stderr(cmd: &mut Command) -> (Child, JoinHandle<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = child.stderr.take().expect("stderr piped");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    (child, stderr)
}

/// The real binary on 127.0.0.1:0 with its stderr lines delivered on a
/// channel (always drained, so it never blocks on a full pipe); killed on
/// drop.
pub struct LoggedBin {
    pub addr: SocketAddr,
    pub child: Child,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for LoggedBin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LoggedBin {
    pub fn start(args: &[&str]) -> LoggedBin {
        let mut child = command(env!("CARGO_BIN_EXE_wspush"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wspush");
        let (tx, stderr) = std::sync::mpsc::channel();
        let err = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let addr = listening_addr(&mut child);
        LoggedBin { addr, child, stderr }
    }

    /// SIGHUP: re-read the token and secret files.
    pub fn hup(&self) {
        let ok = command("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -HUP failed");
    }

    /// Waits for the next stderr line containing every needle; returns it.
    #[track_caller]
    pub fn line_with(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) if needles.iter().all(|n| l.contains(n)) => return l,
                Ok(_) => {}
                Err(e) => panic!("no stderr line with {needles:?}: {e}"),
            }
        }
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}
