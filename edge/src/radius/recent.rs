//! The requests seen within the duplicate window (RFC 5080 §2.2.2), and their replies.
//!
//! Two generations of hash maps per shard instead of a cache with per-entry expiry: every `window` the
//! current generation becomes the previous one and the previous one is dropped whole, so an entry lives
//! between one and two windows and keeping it costs one insert, with no eviction bookkeeping per request
//! (at tens of thousands of requests a second, a general-purpose cache's expiry work grew with its size).
//! A generation that reaches `capacity / 2` entries rotates early, which bounds memory under a flood.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shards (each behind its own lock).
const SHARDS: usize = 16;

/// What a retransmission is recognised by: the same client address and port, listener, identifier and
/// Request Authenticator.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct RequestKey {
    pub(crate) from: SocketAddr,
    pub(crate) port: u8,
    pub(crate) identifier: u8,
    pub(crate) authenticator: [u8; 16],
}

/// A request seen within the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Being worked on.
    Working,
    /// Answered with these bytes.
    Answered(Arc<[u8]>),
}

struct Generations {
    current: HashMap<RequestKey, Seen>,
    previous: HashMap<RequestKey, Seen>,
    rotated: Instant,
}

pub(crate) struct Recent {
    shards: Vec<Mutex<Generations>>,
    hasher: std::hash::RandomState,
    window: Duration,
    per_generation: usize,
}

impl Recent {
    pub(crate) fn new(window: Duration, capacity: usize) -> Recent {
        let now = Instant::now();
        Recent {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Generations { current: HashMap::new(), previous: HashMap::new(), rotated: now }))
                .collect(),
            hasher: std::hash::RandomState::new(),
            window,
            per_generation: (capacity / SHARDS / 2).max(1),
        }
    }

    fn shard(&self, key: &RequestKey) -> std::sync::MutexGuard<'_, Generations> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut g = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
        if g.rotated.elapsed() >= self.window || g.current.len() >= self.per_generation {
            g.previous = std::mem::take(&mut g.current);
            g.rotated = Instant::now();
        }
        g
    }

    /// Claims `key` for the caller (`None`: it is new, now `Working`), or says what it is already.
    pub(crate) fn claim(&self, key: &RequestKey) -> Option<Seen> {
        let mut g = self.shard(key);
        if let Some(seen) = g.current.get(key).or_else(|| g.previous.get(key)) {
            return Some(seen.clone());
        }
        g.current.insert(key.clone(), Seen::Working);
        None
    }

    /// Keeps the reply of a claimed request.
    pub(crate) fn answered(&self, key: RequestKey, reply: Arc<[u8]>) {
        let mut g = self.shard(&key);
        g.previous.remove(&key);
        g.current.insert(key, Seen::Answered(reply));
    }

    /// Forgets a claimed request that got no answer: a retransmission is worked on again.
    pub(crate) fn forget(&self, key: &RequestKey) {
        let mut g = self.shard(key);
        g.current.remove(key);
        g.previous.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> RequestKey {
        RequestKey { from: "127.0.0.1:1000".parse().unwrap(), port: 0, identifier: n, authenticator: [n; 16] }
    }

    #[test]
    fn a_request_is_claimed_once_then_answered_from_memory() {
        let r = Recent::new(Duration::from_secs(60), 1000);
        assert_eq!(r.claim(&key(1)), None);
        assert_eq!(r.claim(&key(1)), Some(Seen::Working));
        r.answered(key(1), Arc::from(&b"reply"[..]));
        assert_eq!(r.claim(&key(1)), Some(Seen::Answered(Arc::from(&b"reply"[..]))));
        r.forget(&key(1));
        assert_eq!(r.claim(&key(1)), None, "forgotten: worked on again");
        assert_eq!(r.claim(&key(2)), None, "another identifier is another request");
    }

    #[test]
    fn entries_last_one_to_two_windows() {
        let r = Recent::new(Duration::from_millis(50), 1000);
        r.claim(&key(1));
        r.answered(key(1), Arc::from(&b"x"[..]));
        std::thread::sleep(Duration::from_millis(60));
        // One rotation: still there (in the previous generation).
        assert!(matches!(r.claim(&key(1)), Some(Seen::Answered(_))));
        std::thread::sleep(Duration::from_millis(60));
        // Two rotations: gone.
        assert_eq!(r.claim(&key(1)), None);
    }

    #[test]
    fn a_flood_rotates_early_and_stays_bounded() {
        let r = Recent::new(Duration::from_secs(3600), SHARDS * 2 * 4);
        for n in 0..=255u8 {
            r.claim(&key(n));
        }
        let held: usize = r
            .shards
            .iter()
            .map(|s| {
                let g = s.lock().unwrap();
                g.current.len() + g.previous.len()
            })
            .sum();
        assert!(held <= SHARDS * 2 * 4, "{held} entries held");
    }
}
