//! A small in-memory cache of recent authentication answers (a verified password, a
//! permission service's answer), for a short time. Keys are salted SHA-256 digests of what was
//! asked, so the cache never holds a password or an `Authorization` header; the salt is random
//! per process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// Most entries kept; past that, expired entries go, and if none had expired, all of them.
const MAX_ENTRIES: usize = 10_000;

/// A cache key: a salted digest of the parts of a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

/// Answers remembered for `ttl`.
#[derive(Debug)]
pub struct TtlCache<V> {
    ttl: Duration,
    salt: [u8; 32],
    entries: Mutex<HashMap<CacheKey, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    /// A cache keeping answers for `ttl`; a zero `ttl` keeps nothing.
    pub fn new(ttl: Duration) -> Self {
        let mut salt = [0_u8; 32];
        salt[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        salt[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        TtlCache {
            ttl,
            salt,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The key of a question made of `parts` (each length-prefixed, so parts cannot run
    /// into each other).
    pub fn key(&self, parts: &[&[u8]]) -> CacheKey {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        CacheKey(hasher.finalize().into())
    }

    pub fn get(&self, key: &CacheKey) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, value)| value.clone())
    }

    pub fn insert(&self, key: CacheKey, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (now + self.ttl, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_key_and_never_with_zero_ttl() {
        let cache = TtlCache::new(Duration::from_secs(60));
        let a = cache.key(&[b"alice", b"secret"]);
        let b = cache.key(&[b"alices", b"ecret"]);
        assert_ne!(a, b, "parts are length-prefixed");
        cache.insert(a, true);
        assert_eq!(cache.get(&a), Some(true));
        assert_eq!(cache.get(&b), None);
        let off = TtlCache::new(Duration::ZERO);
        let key = off.key(&[b"x"]);
        off.insert(key, 1);
        assert_eq!(off.get(&key), None);
        // Another process (another salt) derives other keys.
        let other: TtlCache<bool> = TtlCache::new(Duration::from_secs(60));
        assert_ne!(other.key(&[b"alice", b"secret"]), a);
    }
}
