//! `--trusted-proxies CIDR,...` (SPEC §9): who a request is from when a
//! reverse proxy stands in front.
//!
//! Behind nginx every socket's peer is the proxy. Only for a peer in the
//! list does the server believe `X-Forwarded-For` (the rightmost address
//! that is not itself a trusted proxy: each proxy appends the address it
//! saw, so everything left of that is whatever the client claimed) or,
//! without it, `Forwarded` (RFC 7239, its `for=` parameters). From any
//! other peer those headers are ignored for the address — and, in
//! loopback-only push mode, refused on push endpoints, as before. The
//! result feeds per-IP limits, logs and the loopback rule.

use crate::http::request::Head;
use crate::listen::Peer;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// A network in CIDR notation; a bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `127.0.0.1`, `fd00::/8`, `::1`. Host bits set below
    /// the prefix are refused (a typo for another network, most likely).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR network"))?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        let c = Cidr { net, bits };
        if c.masked(net) != net {
            return Err(format!(
                "{s:?} has bits set past its /{bits} prefix (did you mean {}?)",
                Cidr {
                    net: c.masked(net),
                    bits
                }
            ));
        }
        Ok(c)
    }

    /// `ip` with the bits past this network's prefix cleared.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let m = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & m).into())
            }
            IpAddr::V6(v6) => {
                let m = u128::MAX.checked_shl(128 - u32::from(self.bits)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & m).into())
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && self.masked(ip) == self.net
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

/// A comma-separated list of networks (`--trusted-proxies`).
pub fn parse_list(s: &str) -> Result<Vec<Cidr>, String> {
    let list: Vec<Cidr> = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(Cidr::parse)
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err("lists no network".into());
    }
    Ok(list)
}

fn trusted(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().any(|c| c.contains(ip))
}

/// Who a request is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The client's address (port 0 when the proxy did not say it).
    pub addr: Peer,
    /// Taken from forwarding headers a trusted proxy sent.
    pub forwarded: bool,
}

/// The client of a request that arrived from `peer`. Headers from an
/// untrusted peer, or ones that name no usable address (`unknown`, an
/// obfuscated name, garbage), leave it at the peer.
pub fn client(list: &[Cidr], head: &Head, peer: Peer) -> Client {
    let direct = Client {
        addr: peer,
        forwarded: false,
    };
    // A unix-socket peer is never a trusted proxy: no CIDR names it.
    let Some(ip) = peer.ip() else { return direct };
    if list.is_empty() || !trusted(list, ip) {
        return direct;
    }
    let mut hops: Vec<&str> = head
        .values("X-Forwarded-For")
        .flat_map(|v| v.split(','))
        .collect();
    if hops.is_empty() {
        hops = head
            .values("Forwarded")
            .flat_map(|v| v.split(','))
            .filter_map(forwarded_for)
            .collect();
    }
    let mut leftmost = None;
    for hop in hops.iter().rev() {
        let Some(addr) = node(hop) else {
            return direct;
        };
        if !trusted(list, addr.ip()) {
            return Client {
                addr: Peer::Tcp(addr),
                forwarded: true,
            };
        }
        leftmost = Some(addr);
    }
    // Every hop is a trusted proxy: the first one is the client.
    match leftmost {
        Some(addr) => Client {
            addr: Peer::Tcp(addr),
            forwarded: true,
        },
        None => direct,
    }
}

/// The `for=` value of one `Forwarded` element (`for=1.2.3.4;proto=https`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
    })
}

/// An address as proxies write one: `1.2.3.4`, `2001:db8::1`,
/// `1.2.3.4:5678`, `[2001:db8::1]`, `[2001:db8::1]:4711`, maybe quoted.
fn node(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    let s = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(s);
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(SocketAddr::new(ip, 0)));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(canonical(a));
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<IpAddr>()
        .ok()
        .map(|ip| canonical(SocketAddr::new(ip, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::head_for_test;

    fn list(s: &str) -> Vec<Cidr> {
        parse_list(s).unwrap()
    }

    fn req(headers: &str) -> Head {
        head_for_test(&format!("GET /ws HTTP/1.1\r\nHost: x\r\n{headers}\r\n"))
    }

    fn sa(s: &str) -> Peer {
        Peer::Tcp(s.parse().unwrap())
    }

    #[test]
    fn networks() {
        let l = list("10.0.0.0/8, 127.0.0.1,fd00::/8,::1");
        assert_eq!(l.len(), 4);
        for ip in ["10.1.2.3", "127.0.0.1", "fd12::1", "::1", "::ffff:10.9.9.9"] {
            assert!(trusted(&l, ip.parse().unwrap()), "{ip}");
        }
        for ip in ["11.0.0.1", "127.0.0.2", "fe80::1", "::2"] {
            assert!(!trusted(&l, ip.parse().unwrap()), "{ip}");
        }
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("::/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert_eq!(
            Cidr::parse(" 192.168.0.0/16 ").unwrap().to_string(),
            "192.168.0.0/16"
        );
        for bad in [
            "",
            "x",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "10.0.0.1/8",
            "10.0.0.0/8/8",
            "a.b.c.d/8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Cidr::parse("10.0.0.1/8").unwrap_err().contains("10.0.0.0/8"));
        assert!(parse_list(" , ").is_err());
    }

    #[test]
    fn only_trusted_peers_are_believed() {
        let l = list("127.0.0.1");
        let h = req("X-Forwarded-For: 203.0.113.9\r\n");
        let c = client(&l, &h, sa("127.0.0.1:5000"));
        assert_eq!((c.addr, c.forwarded), (sa("203.0.113.9:0"), true));
        let c = client(&l, &h, sa("10.0.0.1:5000"));
        assert_eq!((c.addr, c.forwarded), (sa("10.0.0.1:5000"), false));
        let c = client(&[], &h, sa("127.0.0.1:5000"));
        assert_eq!((c.addr, c.forwarded), (sa("127.0.0.1:5000"), false));
        // A trusted peer without the headers is the client itself.
        let c = client(&l, &req(""), sa("127.0.0.1:5000"));
        assert_eq!((c.addr, c.forwarded), (sa("127.0.0.1:5000"), false));
    }

    /// The rightmost address that is not a trusted proxy; what the client
    /// wrote to the left of it is not believed.
    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let l = list("127.0.0.1,10.0.0.0/8");
        let peer = sa("127.0.0.1:1");
        for (xff, want) in [
            ("1.1.1.1, 203.0.113.9", "203.0.113.9:0"),
            ("1.1.1.1, 203.0.113.9, 10.0.0.7", "203.0.113.9:0"),
            ("127.0.0.1, 203.0.113.9, 10.0.0.7", "203.0.113.9:0"),
            ("203.0.113.9:4711", "203.0.113.9:4711"),
            ("2001:db8::1", "[2001:db8::1]:0"),
            ("[2001:db8::1]:80", "[2001:db8::1]:80"),
            ("::ffff:203.0.113.9", "203.0.113.9:0"),
            // Every hop trusted: the leftmost is the client.
            ("127.0.0.1", "127.0.0.1:0"),
            ("10.0.0.5, 10.0.0.6", "10.0.0.5:0"),
        ] {
            let c = client(&l, &req(&format!("X-Forwarded-For: {xff}\r\n")), peer);
            assert_eq!((c.addr, c.forwarded), (sa(want), true), "{xff}");
        }
        // Two headers are one list, in order.
        let h = req("X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2, 10.0.0.1\r\n");
        assert_eq!(client(&l, &h, peer).addr, sa("2.2.2.2:0"));
        // Garbage on the way: not believed at all.
        for xff in ["unknown", "203.0.113.9, nonsense", "", "1.1.1.1,,", "[::1"] {
            let c = client(&l, &req(&format!("X-Forwarded-For: {xff}\r\n")), peer);
            assert_eq!((c.addr, c.forwarded), (peer, false), "{xff:?}");
        }
        // Garbage left of the client does not matter.
        let c = client(&l, &req("X-Forwarded-For: junk, 203.0.113.9\r\n"), peer);
        assert_eq!(c.addr, sa("203.0.113.9:0"));
    }

    #[test]
    fn forwarded_header() {
        let l = list("127.0.0.1");
        let peer = sa("127.0.0.1:1");
        for (fwd, want) in [
            ("for=203.0.113.9", "203.0.113.9:0"),
            ("For=\"203.0.113.9:8080\";proto=https", "203.0.113.9:8080"),
            (
                "proto=http;for=\"[2001:db8:cafe::17]:4711\"",
                "[2001:db8:cafe::17]:4711",
            ),
            ("for=\"[2001:db8::2]\"", "[2001:db8::2]:0"),
            ("for=198.51.100.1, for=203.0.113.9;by=127.0.0.1", "203.0.113.9:0"),
            ("for=198.51.100.1, for=127.0.0.1", "198.51.100.1:0"),
        ] {
            let c = client(&l, &req(&format!("Forwarded: {fwd}\r\n")), peer);
            assert_eq!((c.addr, c.forwarded), (sa(want), true), "{fwd}");
        }
        for fwd in ["for=unknown", "for=_hidden", "proto=https", "for=\"[::1\""] {
            let c = client(&l, &req(&format!("Forwarded: {fwd}\r\n")), peer);
            assert_eq!((c.addr, c.forwarded), (peer, false), "{fwd}");
        }
        // X-Forwarded-For wins when both are sent.
        let h = req("Forwarded: for=198.51.100.1\r\nX-Forwarded-For: 203.0.113.9\r\n");
        assert_eq!(client(&l, &h, peer).addr, sa("203.0.113.9:0"));
    }
}
