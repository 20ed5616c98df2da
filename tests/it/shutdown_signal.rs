//! SIGTERM and SIGINT: clients get close 1001, the process exits 0.
use crate::common::*;
use std::time::{Duration, Instant};

fn signal(pid: u32, sig: &str) {
    let ok = command("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} failed");
}

fn wait_exit(server: &mut BinServer) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn graceful(sig: &str) {
    let mut server = spawn_bin(&[]);
    let mut a = connect_registered(server.addr, "a", "e");
    let mut b = ws_connect(server.addr, "/ws");
    signal(server.child.id(), sig);
    assert_eq!(expect_close(&mut a), 1001);
    assert_eq!(expect_close(&mut b), 1001);
    // The tungstenite client answers the close; the server then exits.
    let status = wait_exit(&mut server);
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_zero() {
    graceful("-TERM");
}

#[test]
fn sigint_does_the_same() {
    graceful("-INT");
}

#[test]
fn library_shutdown_returns_from_run() {
    let server = start();
    let mut ws = connect_registered(server.addr, "a", "e");
    let handle = server.handle.clone();
    handle.shutdown();
    assert_eq!(expect_close(&mut ws), 1001);
    server.stop().expect("run returns Ok");
    assert!(
        handle.push("a", "e", "late").is_err(),
        "a stopped server pushes nothing"
    );
}
