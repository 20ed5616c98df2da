//! Where connections come from: TCP and unix-socket listeners, the sockets
//! systemd hands over (socket activation), and who is on the other end.
//!
//! The loop sees one [`Listener`] per `--listen`/`--push-listen` address
//! (or per inherited socket), tagged with its [`Role`], and one [`Socket`]
//! per accepted connection; whether it is TCP or a unix socket only
//! matters here and in [`Peer::is_loopback`].
//!
//! # Unix sockets
//!
//! A socket file left behind by a crash (nobody accepts on it) is
//! replaced; a live one is an error naming the path, so two servers never
//! silently steal each other's socket. The mode (`--socket-mode`) is set
//! before `listen`, so nobody can connect while the file still has the
//! umask's mode. The file is removed when its [`Listener`] is dropped —
//! only if it is still the file this process made: a newer process that
//! already took the path over keeps its socket.
//!
//! # systemd socket activation
//!
//! `LISTEN_PID` (this process), `LISTEN_FDS` (how many, from fd 3) and
//! `LISTEN_FDNAMES` (`push` marks a push listener) are read once; each
//! descriptor must be a listening stream socket. The variables are then
//! removed, so nothing started later believes the sockets are its own.

use mio::event::Source;
use mio::{Interest, Registry, Token};
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Pending connections the kernel queues per listener: a reconnect storm
/// after a deploy brings thousands of SYNs at once, and the usual default
/// (128) would drop most of them into retransmit back-off.
pub const BACKLOG: i32 = 4096;

/// The mode of a unix socket file when `--socket-mode` is not given:
/// the owner and its group may connect, nobody else.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `--listen` (or an inherited socket with any name but `push`):
    /// WebSocket, SSE, the demo, `/healthz` — and the push endpoints too
    /// unless push listeners exist.
    Main,
    /// `--push-listen` (or an inherited socket named `push`): the push
    /// endpoints are served only on listeners of this role when any exist.
    Push,
}

/// An address to listen on, as `--listen` takes it: `host:port`,
/// `[::1]:port` or `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for Addr {
    type Err = String;

    /// A host name is resolved now (its first address is used), as
    /// `--listen localhost:8080` always meant.
    fn from_str(s: &str) -> Result<Addr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!(
                    "{s:?}: a unix socket needs a path (unix:/run/wspush.sock)"
                ));
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Addr::Tcp(addr));
        }
        s.to_socket_addrs()
            .map_err(|e| format!("{s:?}: {e}"))?
            .next()
            .map(Addr::Tcp)
            .ok_or_else(|| format!("{s:?}: no address"))
    }
}

impl fmt::Display for Addr {
    /// The text of the `listening on ADDR` line: what `--listen` would take.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// How to bind: the settings that are not part of the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindOptions {
    /// SO_REUSEPORT on TCP listeners: several processes share one port
    /// and the kernel spreads new connections over them.
    pub reuse_port: bool,
    /// Permission bits of a unix socket file (connecting needs write
    /// permission on it).
    pub socket_mode: u32,
}

impl Default for BindOptions {
    fn default() -> Self {
        BindOptions {
            reuse_port: false,
            socket_mode: DEFAULT_SOCKET_MODE,
        }
    }
}

/// Identifies one file (not its name), to remove only our own socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> io::Result<FileId> {
        let m = std::fs::symlink_metadata(path)?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// A listening socket, TCP or unix.
#[derive(Debug)]
pub enum Listener {
    Tcp(mio::net::TcpListener),
    Unix {
        listener: mio::net::UnixListener,
        /// Its address: the socket file (or `@name` for an inherited
        /// abstract socket).
        path: PathBuf,
        /// The socket file this process made, removed on drop; `None` for
        /// an inherited socket, whose file belongs to systemd.
        created: Option<FileId>,
    },
}

impl Listener {
    /// Takes one pending connection; `WouldBlock` when there is none.
    pub fn accept(&self) -> io::Result<(Socket, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                Ok((Socket::Tcp(s), Peer::Tcp(peer)))
            }
            Listener::Unix { listener, .. } => {
                let (s, _) = listener.accept()?;
                Ok((Socket::Unix(s), Peer::Unix))
            }
        }
    }

    /// The address really bound: port 0 resolved, `unix:/path` for a
    /// unix socket.
    pub fn local_addr(&self) -> io::Result<Addr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(Addr::Tcp),
            Listener::Unix { path, .. } => Ok(Addr::Unix(path.clone())),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix {
            path,
            created: Some(id),
            ..
        } = self
        {
            if FileId::of(path).ok() == Some(*id) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Source for Listener {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.register(r, t, i),
            Listener::Unix { listener, .. } => listener.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.reregister(r, t, i),
            Listener::Unix { listener, .. } => listener.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.deregister(r),
            Listener::Unix { listener, .. } => listener.deregister(r),
        }
    }
}

/// An accepted connection.
#[derive(Debug)]
pub enum Socket {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Socket {
    /// Sends FIN after what is queued (the half close of an HTTP/1.0 or
    /// `Connection: close` response).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.shutdown(Shutdown::Write),
            Socket::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }

    /// TCP_NODELAY: pushes are small and must leave at once. A unix
    /// socket has no Nagle delay; nothing to do.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_nodelay(on),
            Socket::Unix(_) => Ok(()),
        }
    }

    pub fn peer_addr(&self) -> io::Result<Peer> {
        match self {
            Socket::Tcp(s) => s.peer_addr().map(Peer::Tcp),
            Socket::Unix(_) => Ok(Peer::Unix),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read_vectored(bufs),
            Socket::Unix(s) => s.read_vectored(bufs),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write_vectored(bufs),
            Socket::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Unix(s) => s.flush(),
        }
    }
}

impl Source for Socket {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.register(r, t, i),
            Socket::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.reregister(r, t, i),
            Socket::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.deregister(r),
            Socket::Unix(s) => s.deregister(r),
        }
    }
}

/// Who connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A unix-socket client: on this machine, and allowed by the socket
    /// file's mode.
    Unix,
}

impl Peer {
    /// The client's IP address; none for a unix-socket client.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Peer::Tcp(a) => Some(a.ip()),
            Peer::Unix => None,
        }
    }

    /// For the push rule without a key (loopback clients only). A unix
    /// socket can only be reached from this machine, so it counts.
    pub fn is_loopback(&self) -> bool {
        match self {
            Peer::Tcp(a) => a.ip().to_canonical().is_loopback(),
            Peer::Unix => true,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// Binds `addr` and starts listening (nonblocking, close-on-exec). Errors
/// name the address.
pub fn bind(addr: &Addr, opts: &BindOptions) -> io::Result<Listener> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{addr}: {e}"));
    match addr {
        Addr::Tcp(a) => bind_tcp(*a, opts.reuse_port).map_err(named),
        Addr::Unix(path) => bind_unix(path, opts.socket_mode).map_err(named),
    }
}

fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> io::Result<Listener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    let std = std::net::TcpListener::from(OwnedFd::from(socket));
    Ok(Listener::Tcp(mio::net::TcpListener::from_std(std)))
}

fn bind_unix(path: &Path, mode: u32) -> io::Result<Listener> {
    use socket2::{Domain, SockAddr, Socket, Type};
    clear_stale(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    // The file exists from here on: take it away again if a step fails.
    let made = FileId::of(path)?;
    let undo = |e: io::Error| {
        if FileId::of(path).ok() == Some(made) {
            let _ = std::fs::remove_file(path);
        }
        e
    };
    // Before `listen`: until then a connect is refused, so the umask's
    // mode is never usable by anyone.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(undo)?;
    socket.listen(BACKLOG).map_err(undo)?;
    socket.set_nonblocking(true).map_err(undo)?;
    let std = std::os::unix::net::UnixListener::from(OwnedFd::from(socket));
    Ok(Listener::Unix {
        listener: mio::net::UnixListener::from_std(std),
        path: path.to_path_buf(),
        created: Some(made),
    })
}

/// Removes a socket file nobody listens on (left by a crash or `kill -9`);
/// refuses a live socket and anything that is not a socket.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    use std::os::unix::fs::FileTypeExt;
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; not replacing it",
        ));
    }
    // A nonblocking connect: a live listener with a full queue answers
    // `WouldBlock` at once instead of making us wait.
    let probe = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&socket2::SockAddr::unix(path)?) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Ok(()) => Err(in_use()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(in_use()),
        Err(e) => Err(e),
    }
}

fn in_use() -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        "another process is listening on this socket",
    )
}

/// Descriptors passed by systemd start here (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;
/// More inherited sockets than this is a corrupt environment, not a plan.
const MAX_FDS: usize = 1024;
/// The inherited descriptors become owned once; see [`take_fd`].
static ADOPTED: AtomicBool = AtomicBool::new(false);

/// The listeners systemd passed to this process, each with its role; empty
/// when the process was not socket-activated (no `LISTEN_PID`/`LISTEN_FDS`,
/// or they name another process). `env` reads a variable (the process
/// environment in `main`). On success the variables are removed from the
/// environment. An error names the variable or descriptor at fault.
pub fn inherited(env: impl Fn(&str) -> Option<String>) -> Result<Vec<(Listener, Role)>, String> {
    let Some(roles) = activation(&env, std::process::id())? else {
        return Ok(Vec::new());
    };
    if ADOPTED.swap(true, Ordering::SeqCst) {
        return Err("the sockets passed by systemd were already taken".into());
    }
    let mut out = Vec::with_capacity(roles.len());
    for (fd, role) in (FIRST_FD..).zip(roles) {
        out.push((adopt(fd)?, role));
    }
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    Ok(out)
}

/// The role of each inherited descriptor (fd 3 first), from the
/// environment; `None` when the sockets are not for process `pid`.
pub fn activation(env: &impl Fn(&str) -> Option<String>, pid: u32) -> Result<Option<Vec<Role>>, String> {
    let (Some(for_pid), Some(fds)) = (env("LISTEN_PID"), env("LISTEN_FDS")) else {
        return Ok(None);
    };
    let for_pid: u32 = for_pid
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_PID={for_pid:?} is not a process id"))?;
    if for_pid != pid {
        return Ok(None);
    }
    let n: usize = fds
        .trim()
        .parse()
        .ok()
        .filter(|n| *n <= MAX_FDS)
        .ok_or_else(|| format!("LISTEN_FDS={fds:?} is not a count of sockets"))?;
    let names = env("LISTEN_FDNAMES");
    let names: Vec<&str> = match &names {
        Some(s) => s.split(':').collect(),
        None => vec![""; n],
    };
    if names.len() != n {
        return Err(format!(
            "LISTEN_FDNAMES names {} sockets but LISTEN_FDS={n}",
            names.len()
        ));
    }
    Ok(Some(
        names
            .iter()
            .map(|name| if *name == "push" { Role::Push } else { Role::Main })
            .collect(),
    ))
}

/// Makes inherited descriptor `fd` a [`Listener`]: checked to be a
/// listening stream socket (TCP or unix), then set nonblocking and
/// close-on-exec (systemd passes it inheritable).
fn adopt(fd: RawFd) -> Result<Listener, String> {
    let bad = |why: String| format!("socket activation: descriptor {fd} {why}");
    // Checked before taking ownership, without unsafe: the kernel's view
    // of our descriptor table says whether `fd` is open and a socket.
    let link =
        std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|e| bad(format!("is not open ({e})")))?;
    if !link.to_string_lossy().starts_with("socket:") {
        return Err(bad(format!("is not a socket ({})", link.display())));
    }
    let socket = socket2::Socket::from(take_fd(fd));
    let check = |e: io::Error| bad(e.to_string());
    if socket.r#type().map_err(check)? != socket2::Type::STREAM {
        return Err(bad("is not a stream socket (ListenStream=)".into()));
    }
    if !socket.is_listener().map_err(check)? {
        return Err(bad("is not listening".into()));
    }
    socket.set_nonblocking(true).map_err(check)?;
    socket.set_cloexec(true).map_err(check)?;
    let local = socket.local_addr().map_err(check)?;
    if local.as_socket().is_some() {
        let std = std::net::TcpListener::from(OwnedFd::from(socket));
        return Ok(Listener::Tcp(mio::net::TcpListener::from_std(std)));
    }
    if !local.is_unix() {
        return Err(bad("is neither TCP nor a unix socket".into()));
    }
    let path = match (local.as_pathname(), local.as_abstract_namespace()) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(name)) => PathBuf::from(format!("@{}", String::from_utf8_lossy(name))),
        (None, None) => PathBuf::from("(unnamed)"),
    };
    let std = std::os::unix::net::UnixListener::from(OwnedFd::from(socket));
    Ok(Listener::Unix {
        listener: mio::net::UnixListener::from_std(std),
        path,
        created: None,
    })
}

/// Takes ownership of an inherited descriptor.
///
/// Sound because: `fd` was checked (through /proc) to be an open socket of
/// this process; by the `LISTEN_FDS` protocol systemd opened it for this
/// process (`LISTEN_PID` matched) and nothing else in the process owns it —
/// no code opens a descriptor it already finds open, and [`inherited`]
/// hands each one out at most once (`ADOPTED`). So the returned `OwnedFd`
/// is its only owner and closes it exactly once. Tests call it only on
/// descriptors they released with `into_raw_fd`.
#[allow(unsafe_code)]
fn take_fd(fd: RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: see above: open, a socket, and owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::IntoRawFd;
    use std::os::unix::fs::FileTypeExt;
    use std::time::{Duration, Instant};

    fn temp_sock(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("wspush-listen-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    /// The next connection, polling (listeners are nonblocking).
    #[track_caller]
    fn accept_one(l: &Listener) -> (Socket, Peer) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match l.accept() {
                Ok(c) => return c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    /// Reads `n` bytes from a nonblocking socket.
    #[track_caller]
    fn read_n(s: &mut Socket, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = vec![0; n];
        let mut have = 0;
        while have < n {
            match s.read(&mut got[have..]) {
                Ok(0) => panic!("eof after {have}"),
                Ok(k) => have += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        got
    }

    #[test]
    fn addresses_parse_and_print_as_given() {
        for text in [
            "127.0.0.1:80",
            "[::1]:8080",
            "0.0.0.0:12345",
            "unix:/run/wspush.sock",
        ] {
            let a: Addr = text.parse().unwrap();
            assert_eq!(a.to_string(), text);
        }
        assert_eq!(
            "unix:/tmp/x.sock".parse::<Addr>(),
            Ok(Addr::Unix(PathBuf::from("/tmp/x.sock")))
        );
        assert!(matches!("localhost:0".parse::<Addr>(), Ok(Addr::Tcp(a)) if a.ip().is_loopback()));
        for bad in ["unix:", "nonsense", "127.0.0.1", "1.2.3.4:99999", ""] {
            let e = bad.parse::<Addr>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn loopback_peers() {
        let tcp = |s: &str| Peer::Tcp(s.parse().unwrap());
        assert!(tcp("127.0.0.1:1").is_loopback());
        assert!(tcp("127.9.8.7:1").is_loopback());
        assert!(tcp("[::1]:1").is_loopback());
        assert!(tcp("[::ffff:127.0.0.1]:1").is_loopback());
        assert!(!tcp("10.0.0.1:1").is_loopback());
        assert!(!tcp("[::ffff:10.0.0.1]:1").is_loopback());
        assert!(!tcp("[2001:db8::1]:1").is_loopback());
        assert!(Peer::Unix.is_loopback());
        assert_eq!(Peer::Unix.to_string(), "unix");
        assert_eq!(tcp("127.0.0.1:5").to_string(), "127.0.0.1:5");
    }

    #[test]
    fn tcp_binds_port_zero_and_reports_the_real_port() {
        let l = bind(&"127.0.0.1:0".parse().unwrap(), &BindOptions::default()).unwrap();
        let Ok(Addr::Tcp(a)) = l.local_addr() else {
            panic!("tcp")
        };
        assert_ne!(a.port(), 0);
        let mut client = std::net::TcpStream::connect(a).unwrap();
        let (mut s, peer) = accept_one(&l);
        assert!(matches!(peer, Peer::Tcp(p) if p == client.local_addr().unwrap()));
        assert!(peer.is_loopback());
        assert_eq!(s.peer_addr().unwrap(), peer);
        s.set_nodelay(true).unwrap();
        client.write_all(b"ping").unwrap();
        assert_eq!(read_n(&mut s, 4), b"ping");
        s.write_all(b"pong").unwrap();
        s.shutdown_write().unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"pong", "FIN after the bytes");
    }

    #[test]
    fn reuse_port_lets_two_listeners_share_a_port() {
        let opts = BindOptions {
            reuse_port: true,
            ..BindOptions::default()
        };
        let first = bind(&"127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind(&addr, &opts).expect("SO_REUSEPORT shares the port");
        assert_eq!(second.local_addr().unwrap(), addr);
        // Without it, the port is taken, and the error names the address.
        let e = bind(&addr, &BindOptions::default()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().starts_with(&addr.to_string()), "{e}");
    }

    #[test]
    fn unix_socket_serves_counts_as_loopback_and_has_its_mode() {
        let path = temp_sock("serve");
        let addr = Addr::Unix(path.clone());
        let l = bind(&addr, &BindOptions::default()).unwrap();
        assert_eq!(l.local_addr().unwrap(), addr);
        assert_eq!(
            l.local_addr().unwrap().to_string(),
            format!("unix:{}", path.display())
        );
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (mut s, peer) = accept_one(&l);
        assert_eq!(peer, Peer::Unix);
        assert!(peer.is_loopback());
        assert_eq!(s.peer_addr().unwrap(), Peer::Unix);
        s.set_nodelay(true).expect("a no-op on unix sockets");
        client.write_all(b"hello").unwrap();
        assert_eq!(read_n(&mut s, 5), b"hello");
        s.write_all(b"bye").unwrap();
        s.shutdown_write().unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"bye");
        drop(l);
        assert!(!path.exists(), "the socket file is removed with its listener");
    }

    #[test]
    fn socket_mode_is_applied() {
        let path = temp_sock("mode");
        let opts = BindOptions {
            socket_mode: 0o600,
            ..BindOptions::default()
        };
        let l = bind(&Addr::Unix(path.clone()), &opts).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(l);
    }

    #[test]
    fn a_stale_socket_is_replaced_a_live_one_refused() {
        let path = temp_sock("stale");
        // A crashed server: its socket file stays, nobody accepts on it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let l = bind(&Addr::Unix(path.clone()), &BindOptions::default()).expect("stale replaced");
        let _client = std::os::unix::net::UnixStream::connect(&path).expect("ours now");
        let _ = accept_one(&l);
        // A second server on the same path: refused, and the first keeps it.
        let e = bind(&Addr::Unix(path.clone()), &BindOptions::default()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let msg = e.to_string();
        assert!(msg.contains(&format!("unix:{}", path.display())), "{msg}");
        assert!(msg.contains("another process"), "{msg}");
        let _again = std::os::unix::net::UnixStream::connect(&path).expect("still served");
        drop(l);
        assert!(!path.exists());
    }

    #[test]
    fn a_live_socket_with_a_full_queue_is_refused_at_once() {
        let path = temp_sock("full");
        let owner = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        owner.bind(&socket2::SockAddr::unix(&path).unwrap()).unwrap();
        owner.listen(0).unwrap();
        // Fill its accept queue (backlog 0 still admits one or two).
        let mut held = Vec::new();
        for _ in 0..4 {
            let c = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
            c.set_nonblocking(true).unwrap();
            let _ = c.connect(&socket2::SockAddr::unix(&path).unwrap());
            held.push(c);
        }
        let start = Instant::now();
        let e = bind(&Addr::Unix(path.clone()), &BindOptions::default()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the probe did not block"
        );
        drop(owner);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_never_replaced() {
        let path = temp_sock("file");
        std::fs::write(&path, "precious").unwrap();
        let e = bind(&Addr::Unix(path.clone()), &BindOptions::default()).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn drop_leaves_a_socket_file_another_process_took_over() {
        let path = temp_sock("takeover");
        let ours = bind(&Addr::Unix(path.clone()), &BindOptions::default()).unwrap();
        // Someone removed our file and bound a new socket at the path.
        std::fs::remove_file(&path).unwrap();
        let theirs = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(ours);
        assert!(path.exists(), "their socket is not ours to remove");
        drop(theirs);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_bad_unix_path_is_an_error_naming_it() {
        let e = bind(
            &"unix:/nonexistent-dir/x.sock".parse().unwrap(),
            &BindOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("unix:/nonexistent-dir/x.sock: "), "{e}");
    }

    #[test]
    fn mio_registers_listeners_and_sockets() {
        use mio::{Events, Poll};
        let path = temp_sock("mio");
        let mut poll = Poll::new().unwrap();
        let mut l = bind(&Addr::Unix(path.clone()), &BindOptions::default()).unwrap();
        poll.registry()
            .register(&mut l, Token(1), Interest::READABLE)
            .unwrap();
        let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let mut events = Events::with_capacity(8);
        poll.poll(&mut events, Some(Duration::from_secs(5))).unwrap();
        assert!(events.iter().any(|e| e.token() == Token(1)));
        let (mut s, _) = l.accept().unwrap();
        poll.registry()
            .register(&mut s, Token(2), Interest::READABLE)
            .unwrap();
        client.write_all(b"x").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
            if events.iter().any(|e| e.token() == Token(2) && e.is_readable()) {
                break;
            }
            assert!(Instant::now() < deadline, "no readable event");
        }
        poll.registry()
            .reregister(&mut s, Token(3), Interest::WRITABLE)
            .unwrap();
        poll.registry().deregister(&mut s).unwrap();
        poll.registry().deregister(&mut l).unwrap();
    }

    #[test]
    fn activation_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(activation(&env(&[]), 10), Ok(None));
        assert_eq!(activation(&env(&[("LISTEN_FDS", "1")]), 10), Ok(None));
        assert_eq!(
            activation(&env(&[("LISTEN_PID", "11"), ("LISTEN_FDS", "1")]), 10),
            Ok(None),
            "meant for another process"
        );
        assert_eq!(
            activation(&env(&[("LISTEN_PID", "10"), ("LISTEN_FDS", "2")]), 10),
            Ok(Some(vec![Role::Main, Role::Main]))
        );
        assert_eq!(
            activation(
                &env(&[
                    ("LISTEN_PID", "10"),
                    ("LISTEN_FDS", "3"),
                    ("LISTEN_FDNAMES", "wspush.socket:push:web")
                ]),
                10
            ),
            Ok(Some(vec![Role::Main, Role::Push, Role::Main]))
        );
        assert_eq!(
            activation(&env(&[("LISTEN_PID", "10"), ("LISTEN_FDS", "0")]), 10),
            Ok(Some(vec![]))
        );
        for (vars, needle) in [
            (&[("LISTEN_PID", "x"), ("LISTEN_FDS", "1")][..], "LISTEN_PID"),
            (&[("LISTEN_PID", "10"), ("LISTEN_FDS", "-1")], "LISTEN_FDS"),
            (&[("LISTEN_PID", "10"), ("LISTEN_FDS", "99999")], "LISTEN_FDS"),
            (
                &[
                    ("LISTEN_PID", "10"),
                    ("LISTEN_FDS", "2"),
                    ("LISTEN_FDNAMES", "push"),
                ],
                "LISTEN_FDNAMES",
            ),
        ] {
            let vars: &'static [(&'static str, &'static str)] = vars;
            let e = activation(&env(vars), 10).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn adopting_a_tcp_listener_keeps_it_serving() {
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_l.local_addr().unwrap();
        // Released, as systemd's descriptors arrive: owned by nothing.
        let fd = std_l.into_raw_fd();
        let l = adopt(fd).unwrap();
        assert_eq!(l.local_addr().unwrap(), Addr::Tcp(addr));
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let (_, peer) = accept_one(&l);
        assert!(peer.is_loopback());
        assert!(
            matches!(l.accept(), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "made nonblocking"
        );
    }

    #[test]
    fn adopting_a_unix_listener_leaves_its_file_alone() {
        let path = temp_sock("adopt");
        let fd = std::os::unix::net::UnixListener::bind(&path)
            .unwrap()
            .into_raw_fd();
        let l = adopt(fd).unwrap();
        assert_eq!(l.local_addr().unwrap(), Addr::Unix(path.clone()));
        let _c = std::os::unix::net::UnixStream::connect(&path).unwrap();
        assert_eq!(accept_one(&l).1, Peer::Unix);
        drop(l);
        assert!(
            path.exists(),
            "the file of an inherited socket belongs to systemd"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn adopting_refuses_what_is_not_a_listening_stream_socket() {
        // Not listening (a connected stream).
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let e = adopt(c.into_raw_fd()).unwrap_err();
        assert!(e.contains("not listening"), "{e}");
        // A datagram socket.
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = adopt(u.into_raw_fd()).unwrap_err();
        assert!(e.contains("not a stream socket"), "{e}");
        // A file: checked before ownership is taken, so it stays open.
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = adopt(std::os::fd::AsRawFd::as_raw_fd(&f)).unwrap_err();
        assert!(e.contains("is not a socket"), "{e}");
        drop(f);
        // Not open at all.
        let e = adopt(1_000_000).unwrap_err();
        assert!(e.contains("is not open"), "{e}");
    }
}
