//! The introspection cache: the answers for active tokens, and the index that finds them again when the
//! state an answer was computed from changes (a revocation, a user change).
//!
//! No cached `active: true` may outlive such a change, whatever the token's lifetime. So nothing here has a
//! lifetime or a capacity of its own that could drift from the cache's:
//! - an answer lives until its token's `exp`, or until the cache evicts it (capacity) or a change drops it;
//! - the index is a plain map, not a cache: an entry enters it before its answer enters the cache, and leaves
//!   it only when the cache reports that answer removed (moka's eviction listener, called for every
//!   removal: expiry, eviction, rejection at admission, replacement, invalidation). There is no time or size
//!   limit under which an index entry could go while its answer stays;
//! - one `jti` may stand for several token strings (an ECDSA token re-signed, or with its signature's `s`
//!   turned into `n - s`: both verify), so the index keeps every cached answer of a `jti` and of a user.
//!
//! The hit path is one cache lookup, as before: the index is only touched on a miss (one lock to add
//! two links) and on removals.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::clock::now;
use crate::secrets::TokenDigest;

/// A cached introspection answer.
pub struct CachedToken {
    /// The JSON answer for an active token.
    pub body: bytes::Bytes,
    /// Unix seconds; the entry is never served after it.
    pub exp: i64,
    pub jti: String,
    /// User id (`sub`) or empty for client credentials.
    pub user_id: String,
    /// Organization of the token's application: who may introspect it.
    pub organization: String,
    pub client_id: String,
    pub kid: String,
}

/// One cached answer as the index knows it: the token's digest, and the address of the answer inserted
/// under it. moka holds a removed answer until it has reported the removal, and the report unlinks it, so
/// no other answer can have that address while the link exists: a report for an older answer of the same
/// token never unlinks a newer one.
type Link = (TokenDigest, usize);

fn link(digest: TokenDigest, entry: &Arc<CachedToken>) -> Link {
    (digest, Arc::as_ptr(entry) as usize)
}

/// Which cached answers belong to which `jti` and which user.
#[derive(Default)]
struct Index {
    /// Usually one link; more when several token strings share the `jti`.
    by_jti: HashMap<String, Vec<Link>>,
    /// A set: a busy user (a service account on the password grant) may have thousands of cached answers,
    /// and every removal unlinks one.
    by_user: HashMap<String, HashSet<Link>>,
}

impl Index {
    fn add(&mut self, l: Link, entry: &CachedToken) {
        self.by_jti.entry(entry.jti.clone()).or_default().push(l);
        if !entry.user_id.is_empty() {
            self.by_user.entry(entry.user_id.clone()).or_default().insert(l);
        }
    }

    fn remove(&mut self, l: Link, entry: &CachedToken) {
        if let Some(links) = self.by_jti.get_mut(&entry.jti) {
            links.retain(|x| *x != l);
            if links.is_empty() {
                self.by_jti.remove(&entry.jti);
            }
        }
        if let Some(links) = self.by_user.get_mut(&entry.user_id) {
            links.remove(&l);
            if links.is_empty() {
                self.by_user.remove(&entry.user_id);
            }
        }
    }
}

/// Expiry of a cached answer: its token's own `exp`.
struct UntilTokenExpiry;

impl moka::Expiry<TokenDigest, Arc<CachedToken>> for UntilTokenExpiry {
    fn expire_after_create(&self, _k: &TokenDigest, v: &Arc<CachedToken>, _at: Instant) -> Option<Duration> {
        Some(Duration::from_secs((v.exp - now()).max(0) as u64))
    }
}

/// Cached introspection answers by token digest, with the index that finds them by `jti` and by user.
pub(crate) struct IntrospectionCache {
    answers: Cache<TokenDigest, Arc<CachedToken>>,
    /// Locked on a miss and on removals; never held while calling into `answers` (whose removal reports
    /// lock it).
    index: Arc<Mutex<Index>>,
}

fn locked(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    index.lock().unwrap_or_else(|p| p.into_inner())
}

impl IntrospectionCache {
    pub(crate) fn new(capacity: u64) -> IntrospectionCache {
        let index = Arc::new(Mutex::new(Index::default()));
        let reported = index.clone();
        let answers = Cache::builder()
            .max_capacity(capacity)
            .expire_after(UntilTokenExpiry)
            .support_invalidation_closures()
            .eviction_listener(move |digest: Arc<TokenDigest>, entry: Arc<CachedToken>, _: RemovalCause| {
                locked(&reported).remove(link(*digest, &entry), &entry)
            })
            .build();
        IntrospectionCache { answers, index }
    }

    /// The cached answer for a token digest: the hot path, one lookup.
    #[inline]
    pub(crate) fn get(&self, digest: &TokenDigest) -> Option<Arc<CachedToken>> {
        self.answers.get(digest)
    }

    /// Caches an answer. Indexed first, so that from the moment the cache can serve it, a change that
    /// concerns it finds it.
    pub(crate) fn insert(&self, digest: TokenDigest, entry: Arc<CachedToken>) {
        locked(&self.index).add(link(digest, &entry), &entry);
        self.answers.insert(digest, entry);
    }

    pub(crate) fn invalidate(&self, digest: &TokenDigest) {
        self.answers.invalidate(digest);
    }

    /// Drops every cached answer of a token id (revoked).
    pub(crate) fn drop_jti(&self, jti: &str) {
        let links = locked(&self.index).by_jti.get(jti).cloned().unwrap_or_default();
        for (digest, _) in links {
            self.answers.invalidate(&digest);
        }
    }

    /// Drops every cached answer of a user (changed, forbidden, deleted).
    pub(crate) fn drop_user(&self, user_id: &str) {
        let links = locked(&self.index).by_user.remove(user_id).unwrap_or_default();
        for (digest, _) in links {
            self.answers.invalidate(&digest);
        }
    }

    /// Drops the cached answers that match (an application or a signing key changed: rare, so a scan).
    pub(crate) fn drop_if(&self, matches: impl Fn(&CachedToken) -> bool + Send + Sync + 'static) {
        // Only fails when invalidation closures are not enabled, and they are (`new`).
        let _ = self.answers.invalidate_entries_if(move |_, v| matches(v));
    }

    pub(crate) fn drop_all(&self) {
        self.answers.invalidate_all();
    }

    /// Links in the index (tests: it must not keep links of answers that are gone).
    #[cfg(test)]
    fn links(&self) -> (usize, usize) {
        let index = locked(&self.index);
        (index.by_jti.values().map(Vec::len).sum(), index.by_user.values().map(HashSet::len).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(jti: &str, user: &str, exp: i64) -> Arc<CachedToken> {
        Arc::new(CachedToken {
            body: bytes::Bytes::from_static(br#"{"active":true}"#),
            exp,
            jti: jti.into(),
            user_id: user.into(),
            organization: "acme".into(),
            client_id: "c".into(),
            kid: "k".into(),
        })
    }

    /// Lets the cache finish its pending work (admissions, evictions, predicates) and report removals.
    fn settle(cache: &IntrospectionCache) {
        for _ in 0..10 {
            cache.answers.run_pending_tasks();
        }
    }

    /// Whatever removes an answer — invalidation, replacement, expiry, eviction past the capacity, a
    /// predicate, `invalidate_all` — the index lets go of it too: it never grows past the cache.
    #[test]
    fn the_index_follows_every_removal() {
        let cache = IntrospectionCache::new(100);
        let later = now() + 3600;
        cache.insert(1, answer("j1", "u1", later));
        cache.insert(2, answer("j2", "u1", later));
        cache.insert(3, answer("j3", "", later));
        assert_eq!(cache.links(), (3, 2));
        // Replaced: the old answer's links go, the new one's stay.
        cache.insert(1, answer("j1", "u1", later));
        settle(&cache);
        assert_eq!(cache.links(), (3, 2));
        cache.invalidate(&3);
        assert_eq!(cache.links(), (2, 2));
        cache.drop_jti("j2");
        assert!(cache.get(&2).is_none());
        assert_eq!(cache.links(), (1, 1));
        cache.drop_if(|_| true);
        settle(&cache);
        assert!(cache.get(&1).is_none());
        assert_eq!(cache.links(), (0, 0));
        // Already expired: never served, and unlinked once the cache notices (its timer wheel turns in
        // steps of about a second).
        cache.insert(4, answer("j4", "u4", now() - 1));
        assert!(cache.get(&4).is_none());
        for _ in 0..40 {
            settle(&cache);
            if cache.links() == (0, 0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(cache.links(), (0, 0));
        // Far more answers than the capacity: the index shrinks with the cache.
        for d in 0..1000u128 {
            cache.insert(100 + d, answer(&format!("j{d}"), &format!("u{}", d % 7), later));
        }
        settle(&cache);
        let cached = (0..1000u128).filter(|d| cache.answers.contains_key(&(100 + d))).count();
        assert!(cached <= 100, "{cached}");
        assert_eq!(cache.links().0, cache.answers.entry_count() as usize);
        cache.drop_all();
        settle(&cache);
        assert_eq!(cache.links(), (0, 0));
    }

    /// Every answer of a user and of a jti is found, also when several token strings share one jti.
    #[test]
    fn users_and_jtis_find_all_their_answers() {
        let cache = IntrospectionCache::new(1000);
        let later = now() + 3600;
        for d in 0..300u128 {
            cache.insert(d, answer(&format!("j{}", d % 2), "busy", later));
        }
        cache.insert(1000, answer("j0", "other", later));
        cache.drop_jti("j0");
        assert!((0..300u128).step_by(2).all(|d| cache.get(&d).is_none()));
        assert!(cache.get(&1000).is_none());
        assert!(cache.get(&1).is_some());
        cache.drop_user("busy");
        assert!((0..300u128).all(|d| cache.get(&d).is_none()), "a user with 300 answers loses all of them");
        assert_eq!(cache.links(), (0, 0));
    }
}
