//! SPEC §11, systemd socket activation: the sockets systemd passes
//! (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, descriptors from 3) become
//! listeners, `push` marks a push listener, and the variables are removed.
//!
//! systemd's own `systemd-socket-activate` binds the sockets and execs this
//! test binary, running only [`systemd_child`], which adopts them through
//! `wspush::listen::inherited` and serves a connection the parent made
//! before the exec — exactly the path a socket-activated wspush takes.
use crate::common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use wspush::listen::{self, Addr, Listener, Peer, Role};

const CHILD: &str = "WSPUSH_TEST_ACTIVATION_CHILD";

/// A free loopback port (bound and released; systemd-socket-activate
/// cannot bind port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[track_caller]
fn accept_within(l: &Listener) -> (listen::Socket, Peer) {
    let deadline = Instant::now() + WAIT;
    loop {
        match l.accept() {
            Ok(c) => return c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[track_caller]
fn read_exactly(s: &mut listen::Socket, n: usize) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0; n];
    let mut have = 0;
    while have < n {
        match s.read(&mut buf[have..]) {
            Ok(0) => panic!("eof"),
            Ok(k) => have += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    buf
}

/// Runs only inside the process systemd-socket-activate started (it
/// passes trivially anywhere else).
#[test]
fn systemd_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let want_main: Addr = std::env::var("WSPUSH_TEST_MAIN").unwrap().parse().unwrap();
    let want_push: Addr = std::env::var("WSPUSH_TEST_PUSH").unwrap().parse().unwrap();
    let got = listen::inherited(|k| std::env::var(k).ok()).expect("inherited sockets");
    let seen: Vec<(Addr, Role)> = got.iter().map(|(l, r)| (l.local_addr().unwrap(), *r)).collect();
    assert_eq!(
        seen,
        [(want_main.clone(), Role::Main), (want_push.clone(), Role::Push)]
    );
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        assert!(std::env::var_os(var).is_none(), "{var} is still set");
    }
    // The parent's connection, made before the exec, waits on fd 3.
    let (mut s, peer) = accept_within(&got[0].0);
    assert_eq!(peer, Peer::Unix);
    assert!(peer.is_loopback());
    assert_eq!(read_exactly(&mut s, 5), b"hello");
    s.write_all(b"welcome").unwrap();
    // The push socket serves as well.
    let Addr::Tcp(push) = want_push else { panic!("tcp") };
    let _c = std::net::TcpStream::connect(push).unwrap();
    let (_, peer) = accept_within(&got[1].0);
    assert!(peer.is_loopback());
    // Dropped: the inherited unix socket's file is systemd's, not ours.
    drop(got);
    let Addr::Unix(path) = want_main else {
        panic!("unix")
    };
    assert!(path.exists(), "an inherited socket file was removed");
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sockets_passed_by_systemd_are_adopted_with_their_roles() {
    let tool = "systemd-socket-activate";
    let dir: PathBuf = std::env::temp_dir().join(format!("wspush-it-activation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let main = dir.join("main.sock");
    let push = format!("127.0.0.1:{}", free_port());
    let me = std::env::current_exe().unwrap();
    let mut child = command(tool)
        .arg("-l")
        .arg(&main)
        .args(["-l", &push, "--fdname=wspush.socket:push"])
        .arg(format!("-E{CHILD}=1"))
        .arg(format!("-EWSPUSH_TEST_MAIN=unix:{}", main.display()))
        .arg(format!("-EWSPUSH_TEST_PUSH={push}"))
        .arg(&me)
        .args(["deploy_activation::systemd_child", "--exact", "--test-threads=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} (Debian: apt-get install systemd): {e}"));
    // The tool execs the program on the first connection, as systemd
    // starts a socket-activated service.
    wait_for(&main);
    let mut c = std::os::unix::net::UnixStream::connect(&main).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"hello").unwrap();
    let mut answer = [0u8; 7];
    let read = c.read_exact(&mut answer);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child failed or did not run:\n{stdout}\n{stderr}"
    );
    read.expect("the child answered on the inherited socket");
    assert_eq!(&answer, b"welcome");
    let _ = std::fs::remove_dir_all(&dir);
}
