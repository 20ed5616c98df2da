//! SPEC §11 and §4 on the command line: the deployment flags, their env
//! twins, and settings that clash or make no sense (exit 2, one line
//! naming them). Read from the real binary.
use crate::binary_cli::run_to_exit;
use crate::common::*;

/// Exit status 2 and one line on stderr that contains every needle.
#[track_caller]
fn refused(args: &[&str], envs: &[(&str, &str)], needles: &[&str]) -> String {
    let (code, err) = run_to_exit(args, envs);
    assert_eq!(code, Some(2), "{args:?} {envs:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?} {envs:?}: one line, got {err:?}");
    for n in needles {
        assert!(err.contains(n), "{args:?} {envs:?}: {err:?} lacks {n:?}");
    }
    err
}

fn temp_file(tag: &str, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = std::env::temp_dir().join(format!("wspush-it-deploy-{tag}-{}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn help_lists_the_deployment_flags_with_their_env_twins() {
    let out = command(env!("CARGO_BIN_EXE_wspush"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--listen ADDR", "WSPUSH_LISTEN"),
        ("--push-listen ADDR", "WSPUSH_PUSH_LISTEN"),
        ("--socket-mode OCTAL", "WSPUSH_SOCKET_MODE"),
        ("--reuse-port", "WSPUSH_REUSE_PORT"),
        ("--push-key-file FILE", "WSPUSH_PUSH_KEY_FILE"),
        ("--jwt-secret-file FILE", "WSPUSH_JWT_SECRET_FILE"),
        ("--redis-url-file FILE", "WSPUSH_REDIS_URL_FILE"),
        ("--log-format FORMAT", "WSPUSH_LOG_FORMAT"),
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
        assert!(text.contains(&format!("[env: {env}]")), "--help lacks {env}");
    }
    assert!(text.contains("unix:/path"), "{text}");
}

#[test]
fn redis_and_redis_url_file_together_exit_2_naming_both() {
    let file = temp_file("redis-url", "redis://:pw-4b1d9e@127.0.0.1:1/0\n");
    let f = file.to_str().unwrap();
    let l = ["--listen", "127.0.0.1:0"];
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, [&'a str; 2]);
    let cases: [Case; 4] = [
        (
            vec![
                l[0],
                l[1],
                "--redis",
                "redis://127.0.0.1:1",
                "--redis-url-file",
                f,
            ],
            vec![],
            ["--redis ", "--redis-url-file"],
        ),
        (
            vec![l[0], l[1], "--redis-url-file", f],
            vec![("WSPUSH_REDIS", "redis://127.0.0.1:1")],
            ["WSPUSH_REDIS ", "--redis-url-file"],
        ),
        (
            vec![l[0], l[1], "--redis", "redis://127.0.0.1:1"],
            vec![("WSPUSH_REDIS_URL_FILE", f)],
            ["--redis ", "WSPUSH_REDIS_URL_FILE"],
        ),
        (
            l.to_vec(),
            vec![
                ("WSPUSH_REDIS", "redis://127.0.0.1:1"),
                ("WSPUSH_REDIS_URL_FILE", f),
            ],
            ["WSPUSH_REDIS ", "WSPUSH_REDIS_URL_FILE"],
        ),
    ];
    for (args, envs, names) in &cases {
        let err = refused(args, envs, names);
        assert!(!err.contains("pw-4b1d9e"), "{err}");
    }
    std::fs::write(&file, "\n").unwrap();
    refused(
        &[l[0], l[1], "--redis-url-file", f],
        &[],
        &[&format!("--redis-url-file: {f} is empty")],
    );
    std::fs::remove_file(&file).unwrap();
}

/// The URL comes from the file (cluster mode is on: with this Redis
/// unreachable, /healthz says so) and its password is never shown.
#[test]
fn redis_url_file_turns_cluster_mode_on() {
    let file = temp_file("redis-url-on", "redis://:pw-7c2e51@127.0.0.1:1\n");
    let s = crate::auth_push_key::Piped::start_env(
        &[
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "debug",
            "--redis-timeout",
            "200ms",
        ],
        &[("WSPUSH_REDIS_URL_FILE", file.to_str().unwrap())],
    );
    eventually("/healthz reports Redis down", || {
        let r = get(s.addr, "/healthz");
        r.status == 503 && r.body.contains("redis unavailable")
    });
    let log = s.finish();
    assert!(!log.contains("pw-7c2e51"), "{log}");
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn nonsense_listener_settings_exit_2_naming_the_flag() {
    for (args, envs, needle) in [
        (vec!["--listen", "unix:"], vec![], "--listen \"unix:\""),
        (vec!["--listen", ""], vec![], "--listen gives no address"),
        (
            vec!["--listen", "127.0.0.1:0", "--push-listen", "nowhere"],
            vec![],
            "--push-listen \"nowhere\"",
        ),
        (
            vec!["--listen", "127.0.0.1:0", "--socket-mode", "0888"],
            vec![],
            "--socket-mode",
        ),
        (
            vec!["--listen", "127.0.0.1:0"],
            vec![("WSPUSH_SOCKET_MODE", "0444")],
            "--socket-mode: 0444 lets not even the owner connect",
        ),
        (
            vec!["--listen", "127.0.0.1:0"],
            vec![("WSPUSH_REUSE_PORT", "maybe")],
            "WSPUSH_REUSE_PORT",
        ),
        (
            vec!["--listen", "127.0.0.1:9", "--push-listen", "127.0.0.1:9"],
            vec![],
            "--push-listen 127.0.0.1:9 is given twice",
        ),
    ] {
        refused(&args, &envs, &[needle]);
    }
}

/// WSPUSH_LISTEN may hold a list; --listen replaces it rather than adding
/// to it (the first given is the one `listening on` names).
#[test]
fn listen_flag_replaces_the_environment_list() {
    let s = spawn_bin_raw(
        &["--listen", "127.0.0.1:0"],
        &[("WSPUSH_LISTEN", "127.0.0.1:9,127.0.0.1:10")],
    );
    assert!(s.addr.ip().is_loopback());
    assert_ne!(s.addr.port(), 9);
    assert_eq!(get(s.addr, "/healthz").status, 200);
}
