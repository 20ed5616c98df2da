//! SPEC §9 with the real binary: `wspush token --events 'chat:*' --ttl
//! 15m` mints the claim the server enforces; `--jwt-audience` and
//! `--jwt-issuer` are enforced when set (and only then); a secret shorter
//! than 32 bytes is warned about without being shown; every new flag has
//! its environment twin and `--help` text.

use crate::access_events::{ask, ok, refused};
use crate::auth_push_key::Piped;
use crate::common::*;
use data_encoding::BASE64URL_NOPAD;
use serde_json::{json, Value};

const SECRET: &str = "claims-test-secret-of-32-bytes!!";

fn mint(args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut cmd = command(env!("CARGO_BIN_EXE_wspush"));
    cmd.arg("token")
        .args(args)
        .env_remove("WSPUSH_JWT_SECRET")
        .env_remove("WSPUSH_JWT_SECRET_FILE")
        .env_remove("WSPUSH_JWT_AUDIENCE")
        .env_remove("WSPUSH_JWT_ISSUER");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn claims_of(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&BASE64URL_NOPAD.decode(p.as_bytes()).unwrap()).unwrap()
}

#[test]
fn wspush_token_events_mints_the_claim_the_server_enforces() {
    let t = mint(
        &[
            "--jwt-secret",
            SECRET,
            "--sub",
            "alice",
            "--events",
            "chat:*",
            "--ttl",
            "15m",
        ],
        &[],
    );
    let c = claims_of(&t);
    assert_eq!(c["events"], json!(["chat:*"]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    let several = claims_of(&mint(
        &["--jwt-secret", SECRET, "--sub", "a", "--events", "chat:*, news"],
        &[],
    ));
    assert_eq!(several["events"], json!(["chat:*", "news"]));
    let none = claims_of(&mint(
        &["--jwt-secret", SECRET, "--sub", "a", "--events", ""],
        &[],
    ));
    assert_eq!(none["events"], json!([]));
    assert!(claims_of(&mint(&["--jwt-secret", SECRET, "--sub", "a"], &[]))
        .get("events")
        .is_none());

    let s = spawn_bin(&["--jwt-secret", SECRET]);
    let mut ws = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(&mut ws, json!({"token": t, "event": "chat:lobby", "id": 1})),
        ok(1)
    );
    assert_eq!(
        ask(&mut ws, json!({"token": t, "event": "news", "id": 2})),
        refused(2, 4403, "event not allowed")
    );
}

#[test]
fn audience_and_issuer_are_enforced_when_set() {
    let s = spawn_bin(&[
        "--jwt-secret",
        SECRET,
        "--jwt-audience",
        "push",
        "--jwt-issuer",
        "https://app.example",
    ]);
    let base = ["--jwt-secret", SECRET, "--sub", "bob"];
    let good = mint(
        &[
            &base[..],
            &["--jwt-audience", "push", "--jwt-issuer", "https://app.example"],
        ]
        .concat(),
        &[],
    );
    let by_env = mint(
        &base,
        &[
            ("WSPUSH_JWT_AUDIENCE", "push"),
            ("WSPUSH_JWT_ISSUER", "https://app.example"),
        ],
    );
    let wrong_aud = mint(
        &[
            &base[..],
            &["--jwt-audience", "web", "--jwt-issuer", "https://app.example"],
        ]
        .concat(),
        &[],
    );
    let no_iss = mint(&[&base[..], &["--jwt-audience", "push"]].concat(), &[]);
    let plain = mint(&base, &[]);
    let mut ws = ws_connect(s.addr, "/ws");
    assert_eq!(ask(&mut ws, json!({"token": good, "event": "e", "id": 1})), ok(1));
    assert_eq!(
        ask(&mut ws, json!({"token": by_env, "event": "f", "id": 2})),
        ok(2)
    );
    for (id, t, why) in [
        (3, &wrong_aud, "wrong token audience"),
        (4, &no_iss, "wrong token issuer"),
        (5, &plain, "wrong token audience"),
    ] {
        assert_eq!(
            ask(&mut ws, json!({"token": t, "event": "e", "id": id})),
            refused(id, 4401, why)
        );
    }
    // Unset, they are not looked at.
    let open = spawn_bin(&["--jwt-secret", SECRET]);
    let mut ws = ws_connect(open.addr, "/ws");
    assert_eq!(
        ask(&mut ws, json!({"token": wrong_aud, "event": "e", "id": 1})),
        ok(1)
    );
    // By environment too.
    let env = spawn_bin_raw(
        &["--listen", "127.0.0.1:0", "--jwt-secret", SECRET],
        &[("WSPUSH_JWT_AUDIENCE", "push")],
    );
    let mut ws = ws_connect(env.addr, "/ws");
    assert_eq!(
        ask(&mut ws, json!({"token": plain, "event": "e", "id": 1})),
        refused(1, 4401, "wrong token audience")
    );
}

#[test]
fn audience_or_issuer_without_jwt_auth_is_a_bad_setting() {
    for args in [
        &["--jwt-audience", "push"][..],
        &["--jwt-issuer", "x"],
        &["--jwt-secret", SECRET, "--jwt-audience", ""],
    ] {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let (code, err) = crate::binary_cli::run_to_exit(&all, &[]);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(args[args.len() - 2]), "{args:?}: {err}");
    }
}

#[test]
fn short_secrets_are_warned_about_without_being_shown() {
    let file = std::env::temp_dir().join(format!("wspush-it-short-secrets-{}", std::process::id()));
    std::fs::write(&file, format!("\n{SECRET}\nshorty-file\n")).unwrap();
    let s = Piped::start(&[
        "--listen",
        "127.0.0.1:0",
        "--jwt-secret",
        "tiny-flag",
        "--jwt-secret-file",
        file.to_str().unwrap(),
    ]);
    let log = s.finish();
    std::fs::remove_file(&file).unwrap();
    let warns: Vec<&str> = log.lines().filter(|l| l.starts_with("wspush warn:")).collect();
    assert!(
        warns
            .iter()
            .any(|w| w.contains("--jwt-secret") && w.contains("9 bytes") && w.contains("32")),
        "{log}"
    );
    assert!(
        warns
            .iter()
            .any(|w| w.contains("line 3 of") && w.contains("11 bytes")),
        "{log}"
    );
    assert!(
        !warns.iter().any(|w| w.contains("line 2 of")),
        "32 bytes is enough: {log}"
    );
    for secret in ["tiny-flag", "shorty-file", SECRET] {
        assert!(!log.contains(secret), "the log shows a secret: {log}");
    }
}

#[test]
fn every_new_flag_has_help_and_an_env_twin() {
    let out = command(env!("CARGO_BIN_EXE_wspush"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--jwt-audience", "WSPUSH_JWT_AUDIENCE"),
        ("--jwt-issuer", "WSPUSH_JWT_ISSUER"),
        ("--max-connections-per-user", "WSPUSH_MAX_CONNECTIONS_PER_USER"),
        ("--max-connections-per-ip", "WSPUSH_MAX_CONNECTIONS_PER_IP"),
        ("--trusted-proxies", "WSPUSH_TRUSTED_PROXIES"),
        ("--jwt-secret-file", "WSPUSH_JWT_SECRET_FILE"),
    ] {
        assert!(help.contains(flag) && help.contains(env), "{flag} / {env}");
    }
    let out = command(env!("CARGO_BIN_EXE_wspush"))
        .args(["token", "--help"])
        .output()
        .unwrap();
    let usage = String::from_utf8(out.stdout).unwrap();
    assert!(
        usage.contains("--events") && usage.contains("--jwt-audience"),
        "{usage}"
    );
    // The per-user cap by its environment twin.
    let s = spawn_bin_raw(
        &["--listen", "127.0.0.1:0"],
        &[("WSPUSH_MAX_CONNECTIONS_PER_USER", "1")],
    );
    let _one = connect_registered(s.addr, "u", "e");
    let mut two = ws_connect(s.addr, "/ws");
    assert_eq!(
        ask(&mut two, json!({"token": "u", "event": "e", "id": 1})),
        refused(1, 4429, "too many connections for user")
    );
    let (code, err) = crate::binary_cli::run_to_exit(
        &["--listen", "127.0.0.1:0", "--max-connections-per-ip", "lots"],
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("--max-connections-per-ip"), "{err}");
}
