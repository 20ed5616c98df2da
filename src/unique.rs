//! Numbers that differ between processes, without a dependency: std's
//! `RandomState` is keyed from the OS's randomness once per process, and
//! the pid and the clock separate processes further (two started in the
//! same instant included). For jitter, epochs and node names — not keys.

use std::hash::{BuildHasher, Hash, Hasher};

/// A value unique to this process (and to `salt` within it).
pub fn per_process(salt: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    std::process::id().hash(&mut h);
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .hash(&mut h);
    salt.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    #[test]
    fn calls_differ() {
        assert_ne!(super::per_process(0), super::per_process(0));
    }
}
