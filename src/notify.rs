//! Telling systemd how the service is doing (`sd_notify`), without
//! linking libsystemd: the protocol is one datagram of `KEY=VALUE` lines
//! sent to the unix socket named by `NOTIFY_SOCKET`.
//!
//! - `READY=1` once the listeners accept (a `Type=notify` unit is
//!   "started" only then, so units ordered after it find it serving);
//! - `STOPPING=1` when shutdown begins;
//! - `WATCHDOG=1` every [`Notifier::watchdog_interval`] (half of
//!   `WATCHDOG_USEC`) from the loop's own timer: if the loop hangs, the
//!   pings stop and systemd restarts the service.
//!
//! Nothing here may stall or stop the server: the socket is nonblocking
//! (a full receive queue drops the message), and a failure is logged
//! once, then ignored — a service manager that went away is no reason to
//! drop every client.

use std::cell::Cell;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where to send notifications; does nothing when the process was not
/// started by a service manager that asked for them.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
    /// A failure was logged already; later ones are silent.
    warned: Cell<bool>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `NOTIFY_SOCKET` as given, for the one warning.
    name: String,
}

impl Notifier {
    /// From this process's environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`,
    /// `WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        Notifier::from_vars(|k| std::env::var(k).ok(), std::process::id())
    }

    /// As [`from_env`](Notifier::from_env), with the variables read by
    /// `env` and `pid` as this process's id (for tests).
    pub fn from_vars(env: impl Fn(&str) -> Option<String>, pid: u32) -> Notifier {
        let watchdog = watchdog_interval(&env, pid);
        let target = env("NOTIFY_SOCKET")
            .filter(|s| !s.is_empty())
            .and_then(|name| match connect(&name) {
                Ok((socket, addr)) => Some(Target { socket, addr, name }),
                Err(e) => {
                    warn!("NOTIFY_SOCKET={name:?}: {e}; systemd will not hear from wspush");
                    None
                }
            });
        Notifier {
            // Pings nobody can hear would only cost wake-ups.
            watchdog: watchdog.filter(|_| target.is_some()),
            target,
            warned: Cell::new(false),
        }
    }

    /// A notifier that sends nothing (library use, tests).
    pub fn none() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
            warned: Cell::new(false),
        }
    }

    /// True when there is a service manager to tell.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// The listeners accept connections.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// Shutdown has begun.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// The loop is alive; due every [`watchdog_interval`](Notifier::watchdog_interval).
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// How often to call [`watchdog`](Notifier::watchdog): half of
    /// `WATCHDOG_USEC` (systemd's advice, so one late turn of the loop is
    /// not fatal); `None` when no watchdog is set for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message (`KEY=VALUE` lines); never blocks, never fails.
    pub fn send(&self, message: &str) {
        let Some(t) = &self.target else { return };
        match t.socket.send_to_addr(message.as_bytes(), &t.addr) {
            Ok(_) => {}
            Err(e) => {
                if !self.warned.replace(true) {
                    warn!(
                        "notifying systemd ({}) failed: {e}; further failures are not logged",
                        t.name
                    );
                }
            }
        }
    }
}

/// Half of `WATCHDOG_USEC`, if the watchdog is meant for process `pid`
/// (`WATCHDOG_PID` unset, or equal to it).
fn watchdog_interval(env: &impl Fn(&str) -> Option<String>, pid: u32) -> Option<Duration> {
    if let Some(for_pid) = env("WATCHDOG_PID") {
        if for_pid.trim().parse::<u32>().ok() != Some(pid) {
            return None;
        }
    }
    let usec: u64 = env("WATCHDOG_USEC")?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// An unbound nonblocking datagram socket and the address `name` gives:
/// a path, or `@name` for an abstract socket (Linux).
fn connect(name: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(abstract_name.as_bytes())?
    } else if name.starts_with('/') {
        SocketAddr::from_pathname(name)?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a socket path or @abstract name",
        ));
    };
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    Ok((socket, addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Instant;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn temp_path(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("wspush-notify-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_stopping_and_watchdog_reach_the_socket() {
        let path = temp_path("path");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_vars(
            vars(&[
                ("NOTIFY_SOCKET", path.to_str().unwrap()),
                ("WATCHDOG_USEC", "3000000"),
            ]),
            42,
        );
        assert!(n.is_active());
        assert_eq!(n.watchdog_interval(), Some(Duration::from_millis(1500)));
        n.ready();
        n.watchdog();
        n.stopping();
        assert_eq!(recv(&systemd), "READY=1");
        assert_eq!(recv(&systemd), "WATCHDOG=1");
        assert_eq!(recv(&systemd), "STOPPING=1");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn abstract_sockets_start_with_at() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("wspush-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::from_vars(vars(&[("NOTIFY_SOCKET", &format!("@{name}"))]), 1);
        n.ready();
        assert_eq!(recv(&systemd), "READY=1");
    }

    #[test]
    fn watchdog_honours_its_pid_and_needs_a_socket() {
        let path = temp_path("wd");
        let _systemd = UnixDatagram::bind(&path).unwrap();
        let p = path.to_str().unwrap();
        let with = |extra: &[(&str, &str)]| {
            let mut all = vec![("NOTIFY_SOCKET", p), ("WATCHDOG_USEC", "200000")];
            all.extend_from_slice(extra);
            Notifier::from_vars(vars(&all), 7).watchdog_interval()
        };
        assert_eq!(with(&[]), Some(Duration::from_millis(100)));
        assert_eq!(with(&[("WATCHDOG_PID", "7")]), Some(Duration::from_millis(100)));
        assert_eq!(with(&[("WATCHDOG_PID", "8")]), None, "another process's watchdog");
        assert_eq!(with(&[("WATCHDOG_PID", "x")]), None);
        let n = Notifier::from_vars(vars(&[("NOTIFY_SOCKET", p), ("WATCHDOG_USEC", "0")]), 7);
        assert_eq!(n.watchdog_interval(), None);
        let n = Notifier::from_vars(vars(&[("NOTIFY_SOCKET", p), ("WATCHDOG_USEC", "soon")]), 7);
        assert_eq!(n.watchdog_interval(), None);
        let n = Notifier::from_vars(vars(&[("WATCHDOG_USEC", "200000")]), 7);
        assert_eq!(n.watchdog_interval(), None, "no socket to ping");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn without_notify_socket_nothing_happens() {
        let n = Notifier::from_vars(vars(&[]), 1);
        assert!(!n.is_active());
        n.ready();
        n.stopping();
        let n = Notifier::from_vars(vars(&[("NOTIFY_SOCKET", "relative/path")]), 1);
        assert!(!n.is_active(), "a relative path is not a notify socket");
        assert!(!Notifier::none().is_active());
    }

    #[test]
    fn a_missing_socket_is_warned_about_once_and_never_fails() {
        let path = temp_path("gone");
        let n = Notifier::from_vars(vars(&[("NOTIFY_SOCKET", path.to_str().unwrap())]), 1);
        assert!(n.is_active());
        assert!(!n.warned.get());
        n.ready();
        assert!(n.warned.get(), "the failure was noted");
        n.watchdog();
        n.stopping();
    }

    #[test]
    fn a_full_receiver_never_blocks_the_sender() {
        let path = temp_path("full");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_vars(vars(&[("NOTIFY_SOCKET", path.to_str().unwrap())]), 1);
        // Nobody reads: the receive queue fills after a few hundred
        // datagrams, and a blocking send would hang here forever.
        let start = Instant::now();
        for _ in 0..5_000 {
            n.watchdog();
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        assert!(n.warned.get(), "the queue filled up and the drop was noted");
        assert_eq!(recv(&systemd), "WATCHDOG=1", "the early ones arrived");
        std::fs::remove_file(&path).unwrap();
    }
}
