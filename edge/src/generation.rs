//! Values worked out from the replicated state and kept until the state changes: what every bind or
//! search would otherwise read and decode again (an organization, a lockout rule, who a viewer is).
//!
//! A cache holds the values of one generation of the state: the number of changes the store has applied
//! ([`Store::changes_sent`]). A change is counted after it is stored, so a value worked out at generation
//! `g` saw every write counted in `g`; the first read after any later write starts a new generation. Writes
//! are rare next to reads here, so nothing finer is needed. Only records whose writes broadcast a change
//! may be kept here (organizations, users, applications, groups, …): sign-in failure records are written
//! without one, so they are always read from the store.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;

use jeton_raft::Store;

pub(crate) struct GenerationCache<K, V> {
    at: RwLock<At<K, V>>,
    /// Entries kept before the cache starts afresh.
    max: usize,
}

struct At<K, V> {
    generation: u64,
    values: HashMap<K, V>,
}

impl<K: Hash + Eq, V: Clone> GenerationCache<K, V> {
    pub(crate) fn new(max: usize) -> Self {
        GenerationCache { at: RwLock::new(At { generation: 0, values: HashMap::new() }), max: max.max(1) }
    }

    /// The value of `key` in the store's current generation: kept, or worked out by `fill` and kept.
    pub(crate) fn get<Q, E>(&self, store: &Store, key: &Q, fill: impl FnOnce() -> Result<V, E>) -> Result<V, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let generation = store.changes_sent();
        {
            let at = self.at.read().unwrap_or_else(|p| p.into_inner());
            if at.generation == generation {
                if let Some(v) = at.values.get(key) {
                    return Ok(v.clone());
                }
            }
        }
        let value = fill()?;
        let mut at = self.at.write().unwrap_or_else(|p| p.into_inner());
        // A value worked out before a newer generation was kept is not kept.
        if at.generation <= generation {
            if at.generation < generation || at.values.len() >= self.max {
                at.generation = generation;
                at.values.clear();
            }
            at.values.insert(key.to_owned(), value.clone());
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jeton_raft::model::Organization;
    use jeton_raft::node::RaftSettings;
    use jeton_raft::{Command, PutMode, ReplicaNode};

    #[tokio::test]
    async fn a_value_is_kept_until_the_state_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = RaftSettings::default();
        let node = ReplicaNode::start(&dir.path().join("data"), 1, "127.0.0.1:1", &settings, Default::default())
            .await
            .expect("node");
        let cache: GenerationCache<String, u32> = GenerationCache::new(10);
        let fills = std::cell::Cell::new(0);
        let get = || cache.get(&node.store, "k", || Ok::<_, ()>(fills.replace(fills.get() + 1) + 1)).expect("value");
        assert_eq!((get(), get()), (1, 1), "kept within a generation");
        let org = Organization { name: "acme".into(), ..Default::default() };
        node.write(Command::PutOrganization { org, mode: PutMode::Create }).await.expect("write");
        assert_eq!((get(), get()), (2, 2), "worked out again after a change, then kept");
    }
}
