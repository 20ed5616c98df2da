//! Out of file descriptors: the server pauses accepting (no spin, no exit)
//! and serves again as soon as descriptors come free.
use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::time::Duration;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User plus system CPU time of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn upgrade_request(addr: SocketAddr) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn out_of_descriptors_pauses_then_recovers() {
    let cmd = format!(
        "ulimit -n 40 && exec {} --listen 127.0.0.1:0 --register-timeout 0 --log-level warn",
        env!("CARGO_BIN_EXE_wspush")
    );
    let mut child = command("sh")
        .args(["-c", &cmd])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let addr: SocketAddr = listening_addr(&mut child);
    let pid = child.id();
    let mut stderr = child.stderr.take().unwrap();
    let _guard = Killed(child);

    // Far more clients than descriptors: the kernel queues the rest.
    let mut clients = Vec::new();
    for _ in 0..80 {
        let mut s = TcpStream::connect(addr).expect("connect (queued by the kernel)");
        s.write_all(&upgrade_request(addr)).unwrap();
        clients.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));

    // Saturated, the server must idle, not spin on accept.
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    assert!(
        used < 30,
        "server burned {used} ticks in 1 s while out of descriptors"
    );

    // Free descriptors: most clients leave.
    clients.truncate(5);
    let mut ws = None;
    eventually("a new client is served again", || {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        match tungstenite::client(format!("ws://{addr}/ws"), s) {
            Ok((w, _)) => {
                ws = Some(w);
                true
            }
            Err(_) => false,
        }
    });
    let mut ws = ws.unwrap();
    ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    register(&mut ws, "after", "e");
    let r = push(addr, "after", "e", "back");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "back");

    // It said why it paused, once, not once per retry.
    drop(_guard);
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    let warnings = log.matches("accept failed").count();
    assert!(
        (1..=2).contains(&warnings),
        "expected one accept warning, got {warnings}:\n{log}"
    );
}
