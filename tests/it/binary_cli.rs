//! The `wspush` binary's command line: help, version, env twins, bad input
//! (exit status 2 with a one-line reason), startup lines and warnings.
use crate::common::*;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn wspush(args: &[&str]) -> std::process::Output {
    command(env!("CARGO_BIN_EXE_wspush"))
        .args(args)
        .output()
        .expect("run wspush")
}

#[test]
fn help_lists_every_spec_flag_with_its_env_twin() {
    let out = wspush(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--listen", "WSPUSH_LISTEN"),
        ("--ws-path", "WSPUSH_WS_PATH"),
        ("--push-path", "WSPUSH_PUSH_PATH"),
        ("--max-connections", "WSPUSH_MAX_CONNECTIONS"),
        ("--max-message-bytes", "WSPUSH_MAX_MESSAGE_BYTES"),
        ("--max-events", "WSPUSH_MAX_EVENTS"),
        ("--max-backlog-bytes", "WSPUSH_MAX_BACKLOG_BYTES"),
        ("--max-body-bytes", "WSPUSH_MAX_BODY_BYTES"),
        ("--register-timeout", "WSPUSH_REGISTER_TIMEOUT"),
        ("--ping-interval", "WSPUSH_PING_INTERVAL"),
        ("--request-timeout", "WSPUSH_REQUEST_TIMEOUT"),
        ("--log-level", "WSPUSH_LOG"),
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
        assert!(text.contains(env), "--help lacks {env}");
    }
}

#[test]
fn version_prints_the_package_version() {
    let out = wspush(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim(), format!("wspush {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_flags_fail_fast_with_a_named_reason() {
    for (args, needle) in [
        (vec!["--max-events", "lots"], "--max-events"),
        (vec!["--frobnicate"], "--frobnicate"),
        (vec!["--ping-interval"], "needs a value"),
        (vec!["--listen", "not an address"], "--listen"),
    ] {
        let out = wspush(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(needle), "{args:?}: stderr {err:?} lacks {needle}");
    }
}

#[test]
fn environment_twins_configure_the_server() {
    let server = spawn_bin_raw(
        &[],
        &[
            ("WSPUSH_LISTEN", "127.0.0.1:0"),
            ("WSPUSH_WS_PATH", "/socket"),
            ("WSPUSH_PUSH_PATH", "/send"),
        ],
    );
    let mut ws = ws_connect(server.addr, "/socket");
    register(&mut ws, "u", "e");
    let body = r#"{"userId":"u","event":"e","message":"via env"}"#;
    let r = post(server.addr, "/send", body);
    assert_eq!((r.status, r.body.as_str()), (200, "message sent to 1 clients"));
    assert_eq!(read_text(&mut ws), "via env");
    assert_eq!(post(server.addr, "/push", body).status, 404);
}

#[test]
fn flags_beat_environment() {
    let server = spawn_bin_raw(
        &["--listen", "127.0.0.1:0", "--push-path", "/flag"],
        &[("WSPUSH_PUSH_PATH", "/env")],
    );
    let body = r#"{"userId":"u","event":"e","message":"m"}"#;
    assert_eq!(post(server.addr, "/flag", body).status, 200);
    assert_eq!(post(server.addr, "/env", body).status, 404);
}

/// Runs the binary to its exit (killing it, and failing, if it is still
/// running after `WAIT`: a setting that should have stopped it did not).
pub(crate) fn run_to_exit(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    use std::io::Read;
    let mut cmd = command(env!("CARGO_BIN_EXE_wspush"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for k in [
        "WSPUSH_PUSH_KEY",
        "WSPUSH_PUSH_KEY_FILE",
        "WSPUSH_LOG",
        "WSPUSH_LOG_LEVEL",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn wspush");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} {envs:?}: still running, the setting was accepted");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.code(), err)
}

/// Exit status 2 and one line on stderr that contains every needle.
#[track_caller]
fn assert_refused(args: &[&str], envs: &[(&str, &str)], needles: &[&str]) {
    let (code, err) = run_to_exit(args, envs);
    assert_eq!(code, Some(2), "{args:?} {envs:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?} {envs:?}: one line, got {err:?}");
    for n in needles {
        assert!(err.contains(n), "{args:?} {envs:?}: {err:?} lacks {n:?}");
    }
}

#[test]
fn nonsense_settings_exit_2_naming_the_flag() {
    let huge = usize::MAX.to_string();
    let l = ["--listen", "127.0.0.1:0"];
    for (flag, value) in [
        ("--ping-interval", "1e30"),
        ("--ping-interval", "inf"),
        ("--register-timeout", "400d"),
        ("--request-timeout", "0"),
        ("--redis-timeout", "0.00001"),
        ("--max-body-bytes", huge.as_str()),
        ("--max-body-bytes", "2147483648"),
        ("--max-backlog-bytes", huge.as_str()),
        ("--max-message-bytes", huge.as_str()),
        ("--max-connections", huge.as_str()),
        ("--max-connections", "0"),
        ("--max-events", "0"),
    ] {
        assert_refused(&[l[0], l[1], flag, value], &[], &[flag]);
    }
    // Through the environment twin: the variable is named.
    assert_refused(&l, &[("WSPUSH_MAX_BODY_BYTES", &huge)], &["--max-body-bytes"]);
    assert_refused(&l, &[("WSPUSH_PING_INTERVAL", "1e30")], &["WSPUSH_PING_INTERVAL"]);
}

#[test]
fn durations_take_units_in_flags_and_env() {
    let flag = spawn_bin(&["--register-timeout", "300ms", "--ping-interval", "1m"]);
    let env = spawn_bin_raw(
        &["--listen", "127.0.0.1:0"],
        &[
            ("WSPUSH_REGISTER_TIMEOUT", "300ms"),
            ("WSPUSH_REQUEST_TIMEOUT", "1h"),
        ],
    );
    for addr in [flag.addr, env.addr] {
        let mut ws = ws_connect(addr, "/ws");
        let t = Instant::now();
        assert_eq!(expect_close(&mut ws), 4408);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
}

#[test]
fn push_key_and_key_file_together_exit_2_naming_both() {
    let path = std::env::temp_dir().join(format!("wspush-it-clash-{}", std::process::id()));
    std::fs::write(&path, "file-key\n").unwrap();
    let file = path.to_str().unwrap();
    let l = ["--listen", "127.0.0.1:0"];
    /// Arguments, environment, and the two names the error must give.
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, [&'a str; 2]);
    let cases: [Case; 4] = [
        (
            vec![l[0], l[1], "--push-key", "flag-key", "--push-key-file", file],
            vec![],
            ["--push-key ", "--push-key-file"],
        ),
        (
            vec![l[0], l[1], "--push-key-file", file],
            vec![("WSPUSH_PUSH_KEY", "env-key")],
            ["WSPUSH_PUSH_KEY ", "--push-key-file"],
        ),
        (
            vec![l[0], l[1], "--push-key", "flag-key"],
            vec![("WSPUSH_PUSH_KEY_FILE", file)],
            ["--push-key ", "WSPUSH_PUSH_KEY_FILE"],
        ),
        (
            l.to_vec(),
            vec![("WSPUSH_PUSH_KEY", "env-key"), ("WSPUSH_PUSH_KEY_FILE", file)],
            ["WSPUSH_PUSH_KEY ", "WSPUSH_PUSH_KEY_FILE"],
        ),
    ];
    for (args, envs, names) in &cases {
        assert_refused(args, envs, names);
        let (_, err) = run_to_exit(args, envs);
        for secret in ["file-key", "flag-key", "env-key"] {
            assert!(!err.contains(secret), "{err}");
        }
    }
    // An empty key file is named as such.
    std::fs::write(&path, "\n").unwrap();
    assert_refused(
        &[l[0], l[1], "--push-key-file", file],
        &[],
        &[&format!("--push-key-file {file} is empty")],
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn log_level_env_alias() {
    // WSPUSH_LOG_LEVEL alone works like WSPUSH_LOG.
    let s = crate::auth_push_key::Piped::start_env(
        &["--listen", "127.0.0.1:0"],
        &[("WSPUSH_LOG_LEVEL", "debug")],
    );
    let _ = get(s.addr, "/healthz");
    let log = s.finish();
    assert!(log.contains("wspush debug: "), "no debug lines: {log}");
    // Both set and disagreeing: exit 2 naming both.
    assert_refused(
        &["--listen", "127.0.0.1:0"],
        &[("WSPUSH_LOG", "warn"), ("WSPUSH_LOG_LEVEL", "debug")],
        &["WSPUSH_LOG=", "WSPUSH_LOG_LEVEL="],
    );
}

/// The binary's stdout and stderr merged into one pipe (as `2>&1` does),
/// read line by line.
struct Merged {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Merged {
    fn start(args: &[&str]) -> Merged {
        use std::io::BufRead;
        let mut child = command("sh")
            .args(["-c", r#"exec "$0" "$@" 2>&1"#, env!("CARGO_BIN_EXE_wspush")])
            .args(args)
            .env_remove("WSPUSH_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn wspush");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Merged { child, lines }
    }

    /// Lines up to and including the first that mentions `listening on`.
    fn until_listening(&self) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no listening line; got {seen:?}"));
            let done = line.contains("listening on");
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    /// SIGTERM, then every line until the pipe closes.
    fn finish(mut self) -> Vec<String> {
        let _ = command("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            rest.push(line);
        }
        let _ = self.child.wait();
        rest
    }
}

impl Drop for Merged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SPEC §12: the first line that mentions `listening on` is the real
/// `listening on ADDR` (not a warning naming port 0); the warnings come
/// after it, name the real address and never contain those words.
/// SPEC §4: on a public address with the default auth, a warning says that
/// anyone can subscribe as any user and names `--auth-tokens`/`--jwt-secret`.
#[test]
fn listening_line_first_then_warnings_with_the_real_address() {
    let m = Merged::start(&["--listen", "0.0.0.0:0"]);
    let first = m.until_listening();
    let line = first.last().unwrap();
    let addr: SocketAddr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first mention of `listening on` is {line:?}"))
        .parse()
        .expect("an address");
    assert_ne!(addr.port(), 0, "{line}");
    // Bound to all addresses; this test only ever talks to loopback.
    let local = SocketAddr::from(([127, 0, 0, 1], addr.port()));
    assert_eq!(get(local, "/healthz").status, 200);
    let rest = m.finish();
    let all: Vec<&String> = first.iter().chain(&rest).collect();
    let warnings: Vec<&&String> = all.iter().filter(|l| l.starts_with("wspush warn:")).collect();
    for w in &warnings {
        assert!(!w.contains("listening on"), "{w}");
        assert!(!w.contains(":0 ") && !w.contains(":0:"), "port 0 in {w}");
    }
    let real = format!("0.0.0.0:{}", addr.port());
    let open = warnings
        .iter()
        .find(|w| w.contains("any user"))
        .unwrap_or_else(|| panic!("no open-auth warning in {all:?}"));
    assert!(
        open.contains("--auth-tokens") && open.contains("--jwt-secret"),
        "{open}"
    );
    assert!(open.contains(&real), "{open}");
    let key = warnings
        .iter()
        .find(|w| w.contains("--push-key"))
        .unwrap_or_else(|| panic!("no push-key warning in {all:?}"));
    assert!(key.contains(&real), "{key}");
    // Warnings come after the listening line, never before it.
    assert!(first.iter().all(|l| !l.starts_with("wspush warn:")), "{first:?}");
}

#[test]
fn no_open_auth_warning_with_real_auth_or_on_loopback() {
    for args in [
        &["--listen", "0.0.0.0:0", "--jwt-secret", "warn-test-secret"][..],
        &["--listen", "127.0.0.1:0"],
    ] {
        let m = Merged::start(args);
        let mut all = m.until_listening();
        all.extend(m.finish());
        assert!(all.iter().all(|l| !l.contains("any user")), "{args:?}: {all:?}");
    }
}
