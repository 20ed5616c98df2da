//! SPEC §11: deploy/ holds a hardened unit and socket units. These checks
//! keep them in step with the binary (every flag they pass exists, every
//! credential they read is loaded); scripts/verify-units.sh runs systemd's
//! own `systemd-analyze verify` and `security` on them in CI.
use crate::common::*;

fn unit(name: &str) -> String {
    let path = format!("{}/deploy/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `Key=value` lines, continuation lines joined.
fn settings(text: &str) -> Vec<(String, String)> {
    let mut joined = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => joined.push_str(head),
            None => {
                joined.push_str(line);
                joined.push('\n');
            }
        }
    }
    joined
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

fn get<'a>(s: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    s.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn services_are_hardened_notify_units_that_read_secrets_from_credentials() {
    let out = command(env!("CARGO_BIN_EXE_wspush"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for name in ["wspush.service", "wspush@.service"] {
        let s = settings(&unit(name));
        for (key, want) in [
            ("Type", "notify"),
            ("DynamicUser", "yes"),
            ("ProtectSystem", "strict"),
            ("NoNewPrivileges", "yes"),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ] {
            assert_eq!(get(&s, key), [want], "{name}: {key}");
        }
        for key in ["LimitNOFILE", "MemoryMax", "WatchdogSec"] {
            assert_eq!(get(&s, key).len(), 1, "{name} lacks {key}=");
        }
        let exec = get(&s, "ExecStart");
        assert_eq!(exec.len(), 1, "{name}");
        let words: Vec<&str> = exec[0].split(' ').collect();
        assert_eq!(
            words[0], "/usr/local/bin/wspush",
            "{name}: README installs it there"
        );
        for w in &words[1..] {
            if let Some(flag) = w.strip_prefix("--") {
                let flag = flag.split('=').next().unwrap();
                assert!(
                    help.contains(&format!("  --{flag}")),
                    "{name}: --{flag} is not a wspush flag"
                );
            }
            // No secret on the command line: only credential files.
            assert!(
                !["--push-key", "--jwt-secret", "--redis"].contains(w),
                "{name}: {w}"
            );
            if let Some(cred) = w.strip_prefix("${CREDENTIALS_DIRECTORY}/") {
                assert!(
                    get(&s, "LoadCredential")
                        .iter()
                        .any(|l| l.starts_with(&format!("{cred}:/etc/wspush/"))),
                    "{name}: {cred} is read but not loaded"
                );
            }
        }
        assert!(
            exec[0].contains("--push-key-file ${CREDENTIALS_DIRECTORY}/push-key"),
            "{name}"
        );
    }
    let template = settings(&unit("wspush@.service"));
    let exec = get(&template, "ExecStart")[0];
    assert!(
        exec.contains("--reuse-port") && exec.contains("--redis-url-file"),
        "{exec}"
    );
    // One dynamic user for all instances: SO_REUSEPORT needs one UID.
    assert_eq!(get(&template, "User"), ["wspush"]);
}

#[test]
fn the_socket_units_pass_a_main_and_a_push_socket_to_the_service() {
    let service = settings(&unit("wspush.service"));
    let main = settings(&unit("wspush.socket"));
    let push = settings(&unit("wspush-push.socket"));
    assert_eq!(get(&main, "ListenStream"), ["12345"], "the seed's port");
    assert_ne!(get(&main, "FileDescriptorName"), ["push"]);
    assert_eq!(get(&push, "FileDescriptorName"), ["push"]);
    assert!(get(&push, "ListenStream").contains(&"127.0.0.1:12346"));
    for s in [&main, &push] {
        assert_eq!(get(s, "Service"), ["wspush.service"]);
    }
    let requires = get(&service, "Requires").join(" ");
    assert!(
        requires.contains("wspush.socket") && requires.contains("wspush-push.socket"),
        "{requires}"
    );
    // Socket activation replaces --listen: the service must not bind.
    assert!(!get(&service, "ExecStart")[0].contains("--listen"));
}
