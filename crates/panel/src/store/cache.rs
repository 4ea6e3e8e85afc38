//! Read caches for the hot customer reads on SQLite: a firewall, a page of
//! firewalls, a server's apply status.
//!
//! ## Why it is exact
//!
//! On SQLite this process is the only writer (see [`super::Store`]: every
//! change runs under the process-wide write lock), and every change to what
//! these reads show advances the global revision in its transaction; the
//! store learns the new revision right after `COMMIT` and before the write
//! returns. The one exception, the edges' apply reports (server status and
//! counters), advances the store's status epoch after its commit instead. An
//! entry is tagged with the [`Stamp`] (revision, status epoch) read *before*
//! its database read, and used only while the stamp is still current: so a
//! hit returns exactly what the database would return now, and a read that
//! starts after a write returned never sees the state before it. The same
//! invariant already makes the edge sync deltas exact.
//!
//! Entries also expire after [`TTL`] (plus up to [`TTL`] of jitter, so that
//! entries filled together are not all re-read in the same instant), which
//! bounds what a change made by another process behind the store's back (an
//! operator's `sqlite3`) could hide. PostgreSQL (several replicas, whose revisions reach this process
//! asynchronously) is never cached. Not-found answers are never cached.
//!
//! Each cache is bounded by an estimate of its memory use, [`MAX_WEIGHT`],
//! and starts over when full.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an entry is used at least; at most twice that.
pub const TTL: Duration = Duration::from_secs(1);
/// Largest estimated size of one cache, in bytes.
pub const MAX_WEIGHT: usize = 32 << 20;

/// What the state of the database was when an entry was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub revision: u64,
    pub status_epoch: u64,
}

struct Entry<V> {
    value: V,
    stamp: Stamp,
    expires: Instant,
    weight: usize,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    weight: usize,
    /// Counts insertions, to spread expiries.
    puts: u64,
}

/// One read cache: key to value, with stamps.
pub(crate) struct ReadCache<K, V> {
    inner: Mutex<Inner<K, V>>,
}

impl<K, V> Default for ReadCache<K, V> {
    fn default() -> Self {
        ReadCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                weight: 0,
                puts: 0,
            }),
        }
    }
}

impl<K: Eq + Hash, V: Clone> ReadCache<K, V> {
    /// The value read at `stamp`, if there is one and `stamp` is current.
    pub fn get(&self, key: &K, stamp: Stamp) -> Option<V> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .entries
            .get(key)
            .filter(|e| e.stamp == stamp && Instant::now() < e.expires)
            .map(|e| e.value.clone())
    }

    /// Remembers `value`, read from the database after `stamp` was taken.
    /// `weight` estimates its size in bytes; too large a value is not kept.
    pub fn put(&self, key: K, stamp: Stamp, weight: usize, value: V) {
        if weight > MAX_WEIGHT / 16 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.weight + weight > MAX_WEIGHT {
            inner.entries.clear();
            inner.weight = 0;
        }
        inner.puts = inner.puts.wrapping_add(1);
        // A well-spread fraction of TTL (Fibonacci hashing of the count).
        let jitter = (inner.puts.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44) as u32; // < 2^20
        let entry = Entry {
            value,
            stamp,
            expires: Instant::now() + TTL + TTL.mul_f64(f64::from(jitter) / f64::from(1u32 << 20)),
            weight,
        };
        if let Some(old) = inner.entries.insert(key, entry) {
            inner.weight -= old.weight;
        }
        inner.weight += weight;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        Actor, ApplyState, DatabaseConfig, NewServer, NewToken, PageRequest, Scope, ServerKind,
        Store, TokenKind,
    };
    use model::network::sync::{EdgeReport, ServerApplyResult};
    use model::network::{NetworkProtocol, NetworkRule};

    fn rule(port: u16) -> NetworkRule {
        NetworkRule {
            protocol: NetworkProtocol::Tcp,
            ports: Some(model::PortRange::single(port)),
            sources: vec![],
            description: String::new(),
            enabled: true,
        }
    }

    /// Every read right after an acknowledged change sees it, through warm
    /// caches: firewall, page, status and token.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cached_reads_see_every_acknowledged_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&DatabaseConfig::sqlite_in(dir.path()))
            .await
            .unwrap();
        let sys = Actor::system();
        let c = store
            .create_customer(&sys, "acme", "ops@example.com")
            .await
            .unwrap();
        let page = PageRequest {
            limit: 50,
            cursor: None,
        };
        let fw = store
            .create_firewall(&sys, c.id, "web", "", &[rule(22)])
            .await
            .unwrap();
        let server = store
            .create_server(
                &sys,
                &NewServer {
                    customer_id: c.id,
                    name: "s1".into(),
                    kind: ServerKind::Vps,
                    ipv4: vec!["192.0.2.1".parse().unwrap()],
                    ipv6: vec![],
                    zone: "fra1".into(),
                    labels: Default::default(),
                },
            )
            .await
            .unwrap();
        store
            .assign_servers(&sys, c.id, fw.id, None, &[server.id])
            .await
            .unwrap();
        // Active: a rule change moves the server's policy on.
        store
            .set_firewall_active(&sys, c.id, fw.id, None, true)
            .await
            .unwrap();
        for round in 0..3u16 {
            // Warm every cache, twice.
            for _ in 0..2 {
                store.firewall(c.id, fw.id).await.unwrap();
                store.list_firewalls(c.id, page).await.unwrap();
                store.server_status(Some(c.id), server.id).await.unwrap();
            }
            let (after, _) = store
                .add_rule(&sys, c.id, fw.id, None, &rule(1000 + round))
                .await
                .unwrap();
            assert_eq!(store.firewall(c.id, fw.id).await.unwrap(), after);
            let listed = store.list_firewalls(c.id, page).await.unwrap();
            assert_eq!(listed.items[0].rule_count, after.rules.len() as u64);
            assert_eq!(listed.items[0].revision, after.revision);
            let status = store.server_status(Some(c.id), server.id).await.unwrap();
            assert_eq!(status.state, ApplyState::Pending);
            // An edge report does not advance the revision: the status epoch
            // must still retire the cached status.
            let rev = store.revision().await.unwrap();
            store
                .record_report(
                    "fra1",
                    &EdgeReport {
                        edge: "e1".into(),
                        zone: "fra1".into(),
                        revision: rev,
                        servers: vec![ServerApplyResult {
                            server_id: server.id,
                            revision: rev,
                            error: None,
                        }],
                        counters: vec![],
                    },
                )
                .await
                .unwrap();
            let status = store.server_status(Some(c.id), server.id).await.unwrap();
            assert_eq!(status.state, ApplyState::Applied, "round {round}");
            // Another customer never gets a cached answer.
            assert!(store
                .server_status(Some(c.id + 1), server.id)
                .await
                .is_err());
            assert!(store.firewall(c.id + 1, fw.id).await.is_err());
        }
        // A revoked token is refused at once, though it was just verified.
        let token = store
            .create_token(
                &sys,
                &NewToken {
                    kind: TokenKind::Customer,
                    customer_id: Some(c.id),
                    zone: None,
                    scope: Scope::Read,
                    name: "t".into(),
                },
            )
            .await
            .unwrap();
        for _ in 0..2 {
            assert!(store.verify_token(&token.token).await.unwrap().is_some());
        }
        store.revoke_token(&sys, None, token.info.id).await.unwrap();
        assert!(store.verify_token(&token.token).await.unwrap().is_none());
    }

    #[test]
    fn an_entry_serves_only_its_stamp_and_the_cache_stays_bounded() {
        let c: ReadCache<i64, String> = ReadCache::default();
        let s1 = Stamp {
            revision: 1,
            status_epoch: 0,
        };
        let s2 = Stamp {
            revision: 2,
            status_epoch: 0,
        };
        let s3 = Stamp {
            revision: 2,
            status_epoch: 1,
        };
        c.put(7, s1, 10, "a".into());
        assert_eq!(c.get(&7, s1).as_deref(), Some("a"));
        assert_eq!(c.get(&7, s2), None, "a newer revision");
        assert_eq!(c.get(&8, s1), None);
        c.put(7, s2, 10, "b".into());
        assert_eq!(c.get(&7, s2).as_deref(), Some("b"));
        assert_eq!(c.get(&7, s3), None, "a newer status epoch");
        c.put(9, s2, MAX_WEIGHT, "huge".into());
        assert_eq!(c.get(&9, s2), None, "too large to keep");
        for i in 0..40 {
            c.put(100 + i, s2, MAX_WEIGHT / 32, "x".into());
        }
        let inner = c.inner.lock().unwrap();
        assert!(inner.weight <= MAX_WEIGHT);
        assert_eq!(
            inner.weight,
            inner.entries.values().map(|e| e.weight).sum::<usize>()
        );
    }
}
