//! What the server keeps per live connection and per client address for
//! access control (SPEC §9), beside the binder: the fingerprint of the
//! token each connection holds (so SIGHUP can tell whether it still maps
//! to the same user) and how many WebSocket and SSE connections each
//! client address has open (`--max-connections-per-ip`).
//!
//! Neither keeps whole tokens nor anything per connection in the default
//! auth: a connection whose token has no fingerprint (a library hook, or
//! userId = token) costs nothing here, and with no per-IP limit no address
//! is counted. Permitted events are not kept either: they are checked
//! against the token of each register (and refresh), which is the one that
//! sets them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU64;

#[derive(Debug, Default)]
pub struct Clients {
    /// By connection id (slab index); grown only for connections that
    /// hold a fingerprint.
    prints: Vec<Option<NonZeroU64>>,
    /// Open WebSocket and SSE connections per client address; addresses
    /// with none are removed.
    per_ip: HashMap<IpAddr, u32>,
    max_per_ip: usize,
}

impl Clients {
    /// `max_per_ip` 0: unlimited, and nothing counted.
    pub fn new(max_per_ip: usize) -> Clients {
        Clients {
            max_per_ip,
            ..Clients::default()
        }
    }

    /// The token now held by connection `id` (the latest accepted).
    pub fn hold(&mut self, id: usize, print: Option<NonZeroU64>) {
        match print {
            Some(p) => {
                if self.prints.len() <= id {
                    self.prints.resize(id + 1, None);
                }
                self.prints[id] = Some(p);
            }
            None => {
                if let Some(slot) = self.prints.get_mut(id) {
                    *slot = None;
                }
            }
        }
    }

    /// The connection ended: it holds nothing any more.
    pub fn forget(&mut self, id: usize) {
        self.hold(id, None);
    }

    /// Every connection that holds a fingerprint.
    pub fn prints(&self) -> impl Iterator<Item = (usize, NonZeroU64)> + '_ {
        self.prints
            .iter()
            .enumerate()
            .filter_map(|(id, p)| p.map(|p| (id, p)))
    }

    /// Whether one more connection from `ip` would exceed the limit.
    /// A unix-socket client (`None`) is on this machine: not counted.
    pub fn ip_full(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip else { return false };
        self.max_per_ip > 0
            && self
                .per_ip
                .get(&ip.to_canonical())
                .is_some_and(|n| *n as usize >= self.max_per_ip)
    }

    /// A WebSocket or SSE connection from `ip` opened.
    pub fn opened(&mut self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        if self.max_per_ip > 0 {
            *self.per_ip.entry(ip.to_canonical()).or_default() += 1;
        }
    }

    /// One from `ip` ended (each `opened` is matched by one `closed`).
    pub fn closed(&mut self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let ip = ip.to_canonical();
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Client addresses with connections open.
    #[cfg(test)]
    pub fn addresses(&self) -> usize {
        self.per_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> Option<NonZeroU64> {
        NonZeroU64::new(n)
    }

    #[test]
    fn fingerprints_are_held_per_connection_and_forgotten() {
        let mut c = Clients::new(0);
        c.hold(3, None);
        assert!(c.prints.is_empty(), "nothing to hold: nothing grows");
        c.hold(3, p(7));
        c.hold(1, p(9));
        assert_eq!(
            c.prints().collect::<Vec<_>>(),
            vec![(1, p(9).unwrap()), (3, p(7).unwrap())]
        );
        c.hold(3, p(8));
        c.forget(1);
        c.forget(42);
        assert_eq!(c.prints().collect::<Vec<_>>(), vec![(3, p(8).unwrap())]);
        c.hold(3, None);
        assert_eq!(c.prints().count(), 0);
    }

    #[test]
    fn per_ip_counts() {
        let a: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        let mapped: Option<IpAddr> = Some("::ffff:10.0.0.1".parse().unwrap());
        let b: Option<IpAddr> = Some("10.0.0.2".parse().unwrap());
        let mut c = Clients::new(2);
        assert!(!c.ip_full(a));
        c.opened(a);
        assert!(!c.ip_full(a));
        c.opened(mapped);
        assert!(c.ip_full(a), "the same address, however written");
        assert!(!c.ip_full(b));
        c.closed(a);
        assert!(!c.ip_full(mapped));
        c.closed(a);
        assert_eq!(c.addresses(), 0, "an address with none left is forgotten");
        c.closed(b);
        assert_eq!(c.addresses(), 0);
        let mut off = Clients::new(0);
        for _ in 0..100 {
            off.opened(a);
        }
        assert!(!off.ip_full(a));
        assert_eq!(off.addresses(), 0, "no limit: nothing counted");
        off.closed(a);
        // A unix-socket client is on this machine: never counted.
        c.opened(None);
        assert!(!c.ip_full(None));
        assert_eq!(c.addresses(), 0);
    }
}
