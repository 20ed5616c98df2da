//! SPEC §3, pushes from another host: with no push key the push endpoints
//! answer 403 to non-loopback peers (and say how to set a key); with a key,
//! the right bearer works from anywhere. The "other host" is a network
//! namespace made by this test (a veth pair, 10.213.X.1/30 on the host side,
//! .2 inside), and curl run inside it. This is the only test that uses a
//! non-loopback address, and only the project's own namespace.
//!
//! Needs root and iproute2 (`ip`) and curl; where a namespace cannot be
//! made it prints `SKIPPED auth_netns: <why>` and returns.
use crate::common::*;
use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

const KEY: &str = "netns-push-key-41c7";

fn run(program: &str, args: &[&str]) -> Result<Output, String> {
    command(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))
}

/// `ip ARGS`, failing with the command and its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = run("ip", args)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespace and the veth pair; both removed on drop, whatever happened.
struct Netns {
    ns: String,
    host_if: String,
    subnet: u8,
}

impl Netns {
    fn host_ip(&self) -> String {
        format!("10.213.{}.1", self.subnet)
    }

    fn create() -> Result<Netns, String> {
        let pid = std::process::id();
        let used = run("ip", &["-o", "-4", "addr", "show"])?;
        let used = String::from_utf8_lossy(&used.stdout).into_owned();
        let subnet = (0..250u32)
            .map(|i| ((pid + i) % 250 + 1) as u8)
            .find(|x| !used.contains(&format!("10.213.{x}.")))
            .ok_or("no free 10.213.X.0/30 subnet")?;
        let ns = format!("wspush-t{pid}");
        // Interface names are at most 15 bytes.
        let (host_if, ns_if) = (format!("wsp{pid}h"), format!("wsp{pid}n"));
        ip(&["netns", "add", &ns])?;
        // From here on, Drop cleans up whatever was made.
        let n = Netns { ns, host_if, subnet };
        let host_cidr = format!("10.213.{subnet}.1/30");
        let ns_cidr = format!("10.213.{subnet}.2/30");
        ip(&["link", "add", &n.host_if, "type", "veth", "peer", "name", &ns_if])?;
        ip(&["link", "set", &ns_if, "netns", &n.ns])?;
        ip(&["addr", "add", &host_cidr, "dev", &n.host_if])?;
        ip(&["link", "set", &n.host_if, "up"])?;
        ip(&["-n", &n.ns, "addr", "add", &ns_cidr, "dev", &ns_if])?;
        ip(&["-n", &n.ns, "link", "set", &ns_if, "up"])?;
        ip(&["-n", &n.ns, "link", "set", "lo", "up"])?;
        Ok(n)
    }

    /// curl inside the namespace: (status, raw response with headers).
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let mut full = vec![
            "netns",
            "exec",
            &self.ns,
            "curl",
            "-s",
            "-S",
            "-i",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code}",
        ];
        full.extend_from_slice(args);
        let out = command("ip")
            .args(&full)
            .output()
            .expect("run ip netns exec curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (resp, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code = code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl {args:?} gave no status ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, resp.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth end in it, and so the pair;
        // the second command covers a pair whose end never moved.
        let _ = run("ip", &["netns", "del", &self.ns]);
        let _ = run("ip", &["link", "del", &self.host_if]);
    }
}

/// Why this machine cannot run the test, if it cannot.
fn cannot_run() -> Option<String> {
    match command("ip").arg("-V").output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some("iproute2 is not installed (no `ip` command); install the iproute2 package".into())
        }
        Err(e) => return Some(format!("cannot run `ip`: {e}")),
        Ok(_) => {}
    }
    if command("curl").arg("--version").output().is_err() {
        return Some("curl is not installed".into());
    }
    match run("id", &["-u"]) {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "0" => None,
        Ok(o) => Some(format!(
            "not root (uid {}); network namespaces need root",
            String::from_utf8_lossy(&o.stdout).trim()
        )),
        Err(e) => Some(e),
    }
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn has_header(resp: &str, name: &str, value_part: &str) -> bool {
    let head = resp.split_once("\r\n\r\n").map_or(resp, |(h, _)| h);
    head.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case(name) && v.contains(value_part))
    })
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

#[test]
fn pushes_from_another_host() {
    if let Some(why) = cannot_run() {
        eprintln!("SKIPPED auth_netns: {why}");
        return;
    }
    let net = match Netns::create() {
        Ok(n) => n,
        Err(why) => {
            eprintln!("SKIPPED auth_netns: cannot create a network namespace: {why}");
            return;
        }
    };
    let open = spawn_bin_raw(&["--listen", "0.0.0.0:0"], &[]);
    let keyed = spawn_bin_raw(&["--listen", "0.0.0.0:0", "--push-key", KEY], &[]);
    let url =
        |server: &BinServer, path: &str| format!("http://{}:{}{path}", net.host_ip(), server.addr.port());

    // The link may take a moment to come up.
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, resp) = net.curl(&[&url(&open, "/healthz")]);
        if code == 200 {
            assert_eq!(body(&resp), "ok");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never reachable from the namespace (last status {code}): {resp}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // No key: a remote push is 403, and the answer says how to allow it.
    let push_body = r#"{"userId":"u","event":"e","message":"remote"}"#;
    let mut ws = connect_registered(loopback(open.addr), "u", "e");
    let (code, resp) = net.curl(&["-d", push_body, &url(&open, "/push")]);
    assert_eq!(code, 403, "{resp}");
    assert!(
        body(&resp).contains("--push-key"),
        "403 body should tell how to set a key: {resp}"
    );
    assert!(
        !has_header(&resp, "WWW-Authenticate", ""),
        "no credentials can help: {resp}"
    );
    // A bearer does not help when no key is set.
    let (code, _) = net.curl(&[
        "-H",
        "Authorization: Bearer anything",
        "-d",
        push_body,
        &url(&open, "/push"),
    ]);
    assert_eq!(code, 403);
    for (path, data) in [
        ("/broadcast", Some(r#"{"event":"e","message":"remote"}"#)),
        ("/drop", Some(r#"{"userId":"u"}"#)),
        ("/metrics", None),
    ] {
        let target = url(&open, path);
        let mut args = vec![];
        if let Some(d) = data {
            args.extend(["-d", d]);
        }
        args.push(&target);
        let (code, resp) = net.curl(&args);
        assert_eq!(code, 403, "{path}: {resp}");
    }
    let (code, resp) = net.curl(&[
        "-H",
        "Accept: application/json",
        "-d",
        push_body,
        &url(&open, "/push"),
    ]);
    assert_eq!(code, 403);
    let v: serde_json::Value = serde_json::from_str(body(&resp)).expect("JSON 403 body");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("--push-key")),
        "{v}"
    );
    expect_silence(&mut ws, Duration::from_millis(100));
    // Each refusal counts as a push-auth failure: 1 + 1 + 3 + 1 above.
    assert_eq!(metric(loopback(open.addr), "wspush_auth_failures_total"), 6);
    // Loopback still pushes to the same server without a key.
    let r = push(loopback(open.addr), "u", "e", "local");
    assert_eq!(r.body, "message sent to 1 clients");
    assert_eq!(read_text(&mut ws), "local");

    // With a key: the right bearer pushes from the other host.
    let mut ws = connect_registered(loopback(keyed.addr), "u", "e");
    let (code, resp) = net.curl(&[
        "-H",
        &format!("Authorization: Bearer {KEY}"),
        "-d",
        push_body,
        &url(&keyed, "/push"),
    ]);
    assert_eq!((code, body(&resp)), (200, "message sent to 1 clients"), "{resp}");
    assert_eq!(read_text(&mut ws), "remote");
    let (code, resp) = net.curl(&["-d", push_body, &url(&keyed, "/push")]);
    assert_eq!(code, 401, "{resp}");
    assert!(has_header(&resp, "WWW-Authenticate", "Bearer"), "{resp}");
    let (code, _) = net.curl(&[
        "-H",
        "Authorization: Bearer wrong",
        "-d",
        push_body,
        &url(&keyed, "/push"),
    ]);
    assert_eq!(code, 401);
    let (code, resp) = net.curl(&[
        "-H",
        &format!("Authorization: Bearer {KEY}"),
        &url(&keyed, "/metrics"),
    ]);
    assert_eq!(code, 200);
    assert!(body(&resp).contains("wspush_auth_failures_total 2"), "{resp}");
    let (code, resp) = net.curl(&[&url(&keyed, "/healthz")]);
    assert_eq!((code, body(&resp)), (200, "ok"));
    expect_silence(&mut ws, Duration::from_millis(100));
}
