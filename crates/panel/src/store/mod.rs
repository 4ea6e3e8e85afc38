//! The panel's store: every durable fact lives here, in SQLite (default) or
//! PostgreSQL (to scale out to several panel replicas sharing one database).
//!
//! One code path serves both backends through sqlx's `Any` driver; the SQL is
//! the common subset (`$1` placeholders, `RETURNING`, `ON CONFLICT`), booleans
//! are stored as `0/1` and times as unix milliseconds. The schemas live in
//! `migrations/sqlite` and `migrations/postgres` and are applied at open.
//!
//! ## Transactions and revisions: the contract
//!
//! **A reader that has seen revision `R` has seen every change `<= R`, and
//! no change `> R`.** Concretely: a read transaction that reads
//! `meta.revision = R` sees every write that committed with a revision
//! `<= R` and none with a revision above; and every write that changes a
//! server's effective policy sets that server's `policy_revision` to the
//! write's own revision. So an edge that applied a snapshot or delta at `R`
//! and asks for servers with `policy_revision > R` learns every later change
//! of its zone exactly once, in revision order. This is what makes the edge
//! deltas exact.
//!
//! How it holds without one global lock held across every transaction:
//!
//! 1. **The revision is taken last.** A write transaction
//!    ([`Store::begin_write`]) does all its work first and records what
//!    carries the revision (the firewall's ETag, the `policy_revision` of
//!    every server whose policy changes, tombstones, the audit entry).
//!    [`WriteTx::commit`] then takes the next revision
//!    (`UPDATE meta SET revision = revision + 1`), stamps it on those rows
//!    and commits. On PostgreSQL that is one statement (data-modifying CTEs,
//!    with `pg_notify`) followed by `COMMIT`, so the `meta` row lock is held
//!    for that statement and the commit only, not for the transaction.
//!    Because the next writer cannot take `meta` before this one committed,
//!    commits happen in revision order: when `R` is visible, every revision
//!    below it is committed (or never existed: a failed transaction rolls its
//!    revision back with it, so revisions have no gaps).
//! 2. **Writes that affect the same policies run one at a time.** A
//!    server's effective policy depends only on its own row and its
//!    customer's firewalls (rules, assignments, selectors). Every write that
//!    can change it first locks its customer's row
//!    ([`WriteScope::Customer`], `SELECT ... FOR NO KEY UPDATE`), so it
//!    computes which servers it affects (e.g. who a selector matches) from
//!    state no concurrent write of that customer can change under it. Writes
//!    of different customers run in parallel and meet only at the commit.
//!    (Without this, adding a rule could miss a server whose labels a
//!    parallel write just changed, and that server would never be
//!    re-published.)
//! 3. The provider's rare writes whose checks span customers (customer
//!    names, logins, tokens) and the deletion of a customer (whose row the
//!    token and login inserts reference) take `meta` from their first statement
//!    ([`WriteScope::Exclusive`]). Lock order is always the customer's row,
//!    then `meta`, so writers never deadlock on them.
//!
//! On SQLite, one writer at a time holds the database (a process-wide mutex
//! and `BEGIN IMMEDIATE`), which gives the same order trivially; the commit
//! runs the same stamps statement by statement.
//!
//! A method returns only after `COMMIT` succeeded, so an API 2xx is never
//! given for a write that could be lost. Edge reports and sessions
//! ([`Store::begin_status_write`]) do not advance the revision and take no
//! lock on PostgreSQL.
//!
//! After a commit the store wakes every long-poll of this process through a
//! [`tokio::sync::watch`] channel ([`Store::subscribe`]); on PostgreSQL the
//! transaction also runs `NOTIFY portwall_revision` so that the other replicas
//! wake their long-polls too (see [`crate::sync`]).
//!
//! ## Durability (SQLite)
//!
//! The database runs in WAL mode with `synchronous = FULL`: every commit
//! fsyncs the WAL before `COMMIT` returns, so an acknowledged write survives a
//! `kill -9` of the panel and a power loss of the host. (`NORMAL` would survive
//! a process crash but could lose the last commits on power loss.)
//!
//! ## Tenancy
//!
//! Methods that act for a customer take the customer id and filter every query
//! by it; an object of another customer is reported as [`StoreError::NotFound`],
//! exactly as one that does not exist.

mod accounts;
mod audit;
mod cache;
mod customers;
mod firewalls;
mod labels;
mod lists;
mod servers;
mod sync;
mod types;

pub use accounts::{random_hex, secret_hash, NewToken};
pub use firewalls::MAX_FIREWALL_DESCRIPTION;
pub use labels::{parse_labels, Selector};
pub use lists::{
    EntryChange, MAX_ENTRIES_PER_CUSTOMER, MAX_ENTRIES_PER_LIST, MAX_LISTS_PER_CUSTOMER,
    MAX_LIST_DESCRIPTION,
};
pub use sync::{ZoneChanges, REPORT_IGNORED_REASON};
pub use types::*;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Row, Transaction};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex, OwnedMutexGuard};

/// The NOTIFY channel a commit signals on PostgreSQL; its payload is the new
/// global revision.
pub const NOTIFY_CHANNEL: &str = "portwall_revision";
/// The NOTIFY channel an edge report signals on PostgreSQL: what server
/// statuses show changed without a new revision.
pub const STATUS_CHANNEL: &str = "portwall_status";

/// Most rules one firewall may hold.
pub const MAX_RULES_PER_FIREWALL: usize = 10_000;
/// Most source networks all rules of one firewall may name together.
pub const MAX_SOURCES_PER_FIREWALL: usize = 100_000;
/// Most servers one assignment request may name by id.
pub const MAX_SERVER_IDS_PER_REQUEST: usize = 1_000;
/// Most servers one label selector may select when it is assigned.
pub const MAX_SERVERS_PER_SELECTOR: usize = 10_000;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Where the store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL URL, `postgres://user@host/db` (a unix socket directory can
    /// be given as `?host=/path`).
    Postgres(String),
}

impl DatabaseConfig {
    /// The default store: `panel.db` in `data_dir`.
    pub fn sqlite_in(data_dir: &Path) -> DatabaseConfig {
        DatabaseConfig::Sqlite(data_dir.join("panel.db"))
    }

    /// Parses `--database-url`: `postgres://...`/`postgresql://...` or
    /// `sqlite://PATH` / `sqlite:PATH`.
    pub fn from_url(url: &str) -> Result<DatabaseConfig, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseConfig::Postgres(url.to_string()))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(format!("'{url}': a sqlite URL needs a file path, e.g. sqlite:///var/lib/portwall/panel.db"));
            }
            Ok(DatabaseConfig::Sqlite(PathBuf::from(path)))
        } else {
            Err(format!("'{url}' is not a database URL: use postgres://user@host/db or sqlite:///path/panel.db"))
        }
    }
}

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The engine behind a connection.
    pub(crate) fn of(conn: &AnyConnection) -> Backend {
        if conn.backend_name() == "PostgreSQL" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// SQL for a JSON array of these SQL values.
    pub(crate) fn json_array(self, values: &[&str]) -> String {
        match self {
            Backend::Sqlite => format!("json_array({})", values.join(", ")),
            Backend::Postgres => format!("json_build_array({})", values.join(", ")),
        }
    }

    /// SQL for an aggregate: the JSON array, as text, of `value` over the
    /// rows in `order`; `[]` when there are none. Read paths use it to fetch
    /// an object and its children in one statement, i.e. one round trip and
    /// one consistent snapshot without a transaction.
    pub(crate) fn json_agg(self, value: &str, order: &str) -> String {
        match self {
            Backend::Sqlite => format!("json_group_array({value} ORDER BY {order})"),
            Backend::Postgres => {
                format!("COALESCE(json_agg({value} ORDER BY {order}), '[]'::json)::text")
            }
        }
    }
}

/// Why a store operation failed. The API maps each variant to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist, or belongs to another customer (404).
    #[error("{0} not found")]
    NotFound(String),
    /// A field is not acceptable (422).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A limit was hit (422, naming the field and the limit).
    #[error("{field}: {message}")]
    Limit { field: String, message: String },
    /// The request conflicts with the current state (409).
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    /// The caller may not do this (403).
    #[error("{message}")]
    Forbidden {
        field: Option<String>,
        message: String,
    },
    /// `If-Match` did not match the current revision (412) of the object
    /// `what` names (`firewall`, `list`).
    #[error("the {what} changed: its revision is now {current}")]
    Precondition { current: u64, what: &'static str },
    /// The database failed (500).
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The database failed while migrating (startup only).
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> StoreError {
        StoreError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
    pub(crate) fn conflict(field: Option<&str>, message: impl Into<String>) -> StoreError {
        StoreError::Conflict {
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

struct Inner {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL URL, for the LISTEN connection.
    url: String,
    /// SQLite allows one writer; writers of this process queue here instead of
    /// spinning on SQLITE_BUSY.
    write_lock: Arc<Mutex<()>>,
    /// The latest committed revision this process knows of; bumped after every
    /// local commit and by the PostgreSQL listener for other replicas' commits.
    revision_tx: watch::Sender<u64>,
    /// When this process last scheduled a `last_used_at` update, per token id,
    /// so that a busy token triggers one update per interval, not one per
    /// request.
    token_touches: std::sync::Mutex<std::collections::HashMap<i64, i64>>,
    /// PostgreSQL: whether this process hears every other replica's commits
    /// and reports (the listener of [`crate::sync::spawn_pg_listener`] is
    /// connected and caught up). The read caches serve only while it does.
    listening: std::sync::atomic::AtomicBool,
    /// Verified tokens by secret hash, with the revision known when they
    /// were read (see [`Store::verify_token`]).
    token_cache: std::sync::Mutex<std::collections::HashMap<String, accounts::CachedToken>>,
    /// Advanced after every commit that changes what the server status shows
    /// without advancing the revision (edge reports); part of the caches'
    /// [`cache::Stamp`].
    status_epoch: std::sync::atomic::AtomicU64,
    /// The hot customer reads (see [`cache`]).
    caches: Caches,
}

/// The read caches (see [`cache`]; on PostgreSQL only while
/// [`Store::caches_exact`]).
#[derive(Default)]
struct Caches {
    /// By (customer, firewall id).
    firewalls: cache::ReadCache<(i64, i64), Firewall>,
    /// By (customer, cursor, limit).
    firewall_pages: cache::ReadCache<(i64, Option<i64>, u32), Page<FirewallSummary>>,
    /// By (customer filter, server id).
    statuses: cache::ReadCache<(Option<i64>, i64), ServerStatus>,
}

/// A handle on the panel's database. Cheap to clone; every clone shares the
/// pool and the change notifier.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database and applies the migrations.
    /// On PostgreSQL several replicas may open the same database at once: the
    /// migrator serializes them with an advisory lock.
    pub async fn open(config: &DatabaseConfig) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url, pool) = match config {
            DatabaseConfig::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
                }
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let options = AnyConnectOptions::from_str(&url)?;
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    // A local file connection cannot go stale; pinging it on
                    // every acquire costs a round trip to its worker thread.
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                "PRAGMA synchronous = FULL",
                                "PRAGMA foreign_keys = ON",
                                "PRAGMA busy_timeout = 10000",
                            ] {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?;
                (Backend::Sqlite, url, pool)
            }
            DatabaseConfig::Postgres(url) => {
                let options = AnyConnectOptions::from_str(url)?;
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await?;
                (Backend::Postgres, url.clone(), pool)
            }
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let current: i64 = sqlx::query("SELECT revision FROM meta WHERE id = 1")
            .fetch_one(&pool)
            .await?
            .try_get(0)?;
        let (revision_tx, _) = watch::channel(current as u64);
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                backend,
                url,
                write_lock: Arc::new(Mutex::new(())),
                revision_tx,
                token_touches: Default::default(),
                listening: Default::default(),
                token_cache: Default::default(),
                status_epoch: Default::default(),
                caches: Caches::default(),
            }),
        })
    }

    /// The database engine.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The PostgreSQL URL this store was opened with (empty for SQLite).
    pub fn postgres_url(&self) -> Option<&str> {
        (self.inner.backend == Backend::Postgres).then_some(self.inner.url.as_str())
    }

    /// The pool, for code that needs a plain query (tests, health checks).
    pub fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    /// A receiver that changes whenever a revision is committed (locally, or on
    /// another replica when the PostgreSQL listener runs). Its value is the
    /// highest revision known to be committed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.revision_tx.subscribe()
    }

    /// Records that `revision` was committed somewhere and wakes the waiters.
    /// Used by the PostgreSQL listener; harmless to call with an old revision.
    pub fn notify_revision(&self, revision: u64) {
        self.inner.revision_tx.send_if_modified(|r| {
            if revision > *r {
                *r = revision;
                true
            } else {
                false
            }
        });
    }

    /// Wakes every waiter so that it re-reads the database, without claiming a
    /// new revision (used after the listener reconnects and may have missed
    /// notifications).
    pub fn wake_all(&self) {
        self.inner.revision_tx.send_modify(|_| {});
    }

    /// Whether a cached read is exact: always on SQLite (every writer is in
    /// this process); on PostgreSQL while the listener hears every replica's
    /// commits (`NOTIFY` on [`NOTIFY_CHANNEL`], with the revision) and edge
    /// reports ([`STATUS_CHANNEL`]). A cache entry is tagged with the revision
    /// and status epoch known before its read; a change committed on another
    /// replica makes it stale as soon as the notification arrives (they are
    /// delivered at commit, in commit order).
    pub fn caches_exact(&self) -> bool {
        match self.inner.backend {
            Backend::Sqlite => true,
            Backend::Postgres => self
                .inner
                .listening
                .load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// PostgreSQL: the listener caught up (`true`, after it re-read the
    /// revision) or lost its connection (`false`: caches off until it is
    /// back). Either way every cached entry becomes stale.
    pub(crate) fn set_listening(&self, on: bool) {
        self.inner
            .listening
            .store(on, std::sync::atomic::Ordering::SeqCst);
        self.status_changed();
    }

    /// The stamp a cached read must carry to be current, taken before the
    /// database read; None while caching would not be exact.
    fn read_stamp(&self) -> Option<cache::Stamp> {
        self.caches_exact().then(|| cache::Stamp {
            revision: *self.inner.revision_tx.borrow(),
            status_epoch: self
                .inner
                .status_epoch
                .load(std::sync::atomic::Ordering::SeqCst),
        })
    }

    /// A read through `cache`: the value cached under `key` while the database
    /// is still at the stamp it was read at; else `load`'s, remembered with the
    /// size `weight` estimates. The stamp is taken before `load` runs (a future
    /// does nothing until awaited), so a change committed meanwhile makes the
    /// entry stale rather than hiding the change.
    async fn read_through<K, V>(
        &self,
        cache: &cache::ReadCache<K, V>,
        key: K,
        weight: impl FnOnce(&V) -> usize,
        load: impl std::future::Future<Output = Result<V>>,
    ) -> Result<V>
    where
        K: Eq + std::hash::Hash,
        V: Clone,
    {
        let stamp = self.read_stamp();
        if let Some(v) = stamp.and_then(|s| cache.get(&key, s)) {
            return Ok(v);
        }
        let v = load.await?;
        if let Some(s) = stamp {
            cache.put(key, s, weight(&v), v.clone());
        }
        Ok(v)
    }

    /// Called after a commit that changed what the server status shows
    /// without advancing the revision (an edge report, here or, through the
    /// listener, on another replica): cached statuses are stale from now on.
    pub(crate) fn status_changed(&self) {
        self.inner
            .status_epoch
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The current global revision.
    pub async fn revision(&self) -> Result<u64> {
        let row = sqlx::query("SELECT revision FROM meta WHERE id = 1")
            .fetch_one(&self.inner.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    /// Begins a write transaction. On PostgreSQL it first takes the lock
    /// `scope` names (see the module docs); the revision is taken only by
    /// [`WriteTx::commit`].
    pub(crate) async fn begin_write(&self, scope: WriteScope) -> Result<WriteTx> {
        let guard = match self.inner.backend {
            Backend::Sqlite => Some(self.inner.write_lock.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        let mut tx = match self.inner.backend {
            Backend::Sqlite => self.inner.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.inner.pool.begin().await?,
        };
        if self.inner.backend == Backend::Postgres {
            let (customer, exclusive) = match scope {
                WriteScope::Customer(c) => (Some(c), false),
                WriteScope::Exclusive(c) => (c, true),
            };
            // Always the customer first, then `meta`: one lock order for
            // every writer, so writers never deadlock on these two.
            if let Some(c) = customer {
                sqlx::query("SELECT id FROM customers WHERE id = $1 FOR NO KEY UPDATE")
                    .bind(c)
                    .fetch_optional(&mut *tx)
                    .await?;
            }
            if exclusive {
                sqlx::query("SELECT revision FROM meta WHERE id = 1 FOR NO KEY UPDATE")
                    .fetch_one(&mut *tx)
                    .await?;
            }
        }
        Ok(WriteTx {
            tx,
            _guard: guard,
            store: self.clone(),
            now: now_ms(),
            stamps: Stamps::default(),
        })
    }

    /// Begins a write transaction that does not advance the revision (edge
    /// reports, sessions). On SQLite it takes the writers' lock (one writer
    /// at a time); on PostgreSQL it takes no lock up front. A caller that
    /// changes what a server's status shows must call
    /// [`Store::status_changed`] after its commit (the read caches rely on
    /// it).
    pub(crate) async fn begin_status_write(
        &self,
    ) -> Result<(Transaction<'static, Any>, Option<OwnedMutexGuard<()>>)> {
        let guard = match self.inner.backend {
            Backend::Sqlite => Some(self.inner.write_lock.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        let tx = match self.inner.backend {
            Backend::Sqlite => self.inner.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.inner.pool.begin().await?,
        };
        Ok((tx, guard))
    }

    /// Begins a read transaction that sees one consistent snapshot.
    pub(crate) async fn begin_read(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.inner.backend {
            Backend::Sqlite => self.inner.pool.begin().await?,
            Backend::Postgres => {
                self.inner
                    .pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        })
    }
}

/// What a write transaction locks on PostgreSQL before its first statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteScope {
    /// The customer's row (`FOR NO KEY UPDATE`): writes of one customer run
    /// one at a time, writes of different customers in parallel. Every write
    /// that can change a server's effective policy takes the lock of the
    /// server's customer (a server's policy depends only on its own row and
    /// its customer's firewalls).
    Customer(i64),
    /// The `meta` row from the first statement on (after the customer's row,
    /// if any): every other commit waits. For the provider's rare writes
    /// whose checks span customers (unique customer names, logins).
    Exclusive(Option<i64>),
}

/// What a commit stamps with the revision it takes.
#[derive(Default)]
struct Stamps {
    /// Firewalls whose revision becomes the new one and `updated_at` the
    /// transaction's time.
    touched: BTreeSet<i64>,
    /// Firewalls whose revision (their ETag) becomes the new one.
    retagged: BTreeSet<i64>,
    /// Servers whose `policy_revision` becomes the new one.
    servers: BTreeSet<i64>,
    /// IP lists whose revision becomes the new one and `updated_at` the
    /// transaction's time.
    lists: BTreeSet<i64>,
    /// Servers that left a zone: (server, zone).
    tombstones: Vec<(i64, String)>,
    /// Audit entries, written with the new revision.
    audit: Vec<PendingAudit>,
}

struct PendingAudit {
    actor_kind: &'static str,
    actor_id: Option<i64>,
    actor: String,
    customer_id: Option<i64>,
    action: String,
    target: String,
    detail: String,
}

/// A write transaction. Its statements write everything but the revision;
/// what carries the revision (firewall ETags, servers' `policy_revision`,
/// tombstones, the audit entry) is recorded here and stamped by
/// [`WriteTx::commit`] in its last statement. Dropping it without `commit`
/// rolls everything back.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Any>,
    _guard: Option<OwnedMutexGuard<()>>,
    store: Store,
    /// The time of the change (unix ms): `updated_at`, the audit entry.
    pub now: i64,
    stamps: Stamps,
}

impl WriteTx {
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// The firewall changed: its revision and `updated_at` move at commit.
    pub fn touch_firewall(&mut self, id: i64) {
        self.stamps.touched.insert(id);
    }

    /// The firewall's representation changed (its ETag moves at commit).
    pub fn retag_firewalls(&mut self, ids: &[i64]) {
        self.stamps.retagged.extend(ids);
    }

    /// The IP list changed: its revision (its ETag) and `updated_at` move at
    /// commit, with the global revision, as for a firewall.
    pub fn touch_list(&mut self, id: i64) {
        self.stamps.lists.insert(id);
    }

    /// The effective policy of these servers changed: their edges learn it
    /// at the new revision.
    pub fn publish_servers(&mut self, ids: &[i64]) {
        self.stamps.servers.extend(ids);
    }

    /// The server left `zone` (deleted or moved): that zone's edges drop it.
    pub fn tombstone(&mut self, server: i64, zone: &str) {
        self.stamps.tombstones.push((server, zone.to_string()));
    }

    /// The audit entry of this change, written with its revision.
    pub fn audit(
        &mut self,
        actor: &Actor,
        customer_id: Option<i64>,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) {
        self.stamps.audit.push(PendingAudit {
            actor_kind: actor.kind.as_str(),
            actor_id: actor.id,
            actor: actor.label.clone(),
            customer_id,
            action: action.to_string(),
            target: target.to_string(),
            detail: detail.to_string(),
        });
    }

    /// Takes the next revision, stamps it, commits, then wakes the
    /// long-polls. Returns the committed revision.
    ///
    /// On PostgreSQL this is one statement (`UPDATE meta ... RETURNING` with
    /// the stamps and `pg_notify` in data-modifying CTEs) and `COMMIT`: the
    /// `meta` row lock, which orders the commits, is held for that statement
    /// and the commit only. On SQLite the transaction holds the database's
    /// one write lock from `BEGIN IMMEDIATE` anyway.
    pub async fn commit(self) -> Result<u64> {
        let (rev, _guard, store) = self.stamp_and_commit().await?;
        store.notify_revision(rev);
        Ok(rev)
    }

    /// [`WriteTx::commit`] for a write that returns a firewall read inside
    /// the transaction: the firewall as committed.
    pub async fn commit_firewall(self, fw: Firewall) -> Result<Firewall> {
        let touched = self.stamps.touched.contains(&fw.id);
        let retagged = self.stamps.retagged.contains(&fw.id);
        let now = self.now;
        let rev = self.commit().await?;
        let mut fw = fw;
        if touched {
            fw.revision = rev;
            fw.updated_at = rfc3339(now);
        } else if retagged {
            fw.revision = rev;
        }
        Ok(fw)
    }

    async fn stamp_and_commit(mut self) -> Result<(u64, Option<OwnedMutexGuard<()>>, Store)> {
        let backend = self.store.inner.backend;
        let mut stamps = std::mem::take(&mut self.stamps);
        stamps.retagged.retain(|id| !stamps.touched.contains(id));
        let rev = match backend {
            Backend::Postgres => stamp_postgres(&mut self.tx, &stamps, self.now).await?,
            Backend::Sqlite => stamp_sqlite(&mut self.tx, &stamps, self.now).await?,
        };
        self.tx.commit().await?;
        Ok((rev as u64, self._guard, self.store))
    }
}

/// The audit columns a commit inserts, after `at` and before `revision`.
const AUDIT_INSERT: &str =
    "INSERT INTO audit (at, actor_kind, actor_id, actor, customer_id, action, target, detail, revision)";

/// PostgreSQL: the revision and every stamp in one statement.
async fn stamp_postgres(conn: &mut AnyConnection, stamps: &Stamps, now: i64) -> Result<i64> {
    let mut sql = String::from(
        "WITH r AS (UPDATE meta SET revision = revision + 1 WHERE id = 1 RETURNING revision)",
    );
    let mut n = 1; // $1 is `now`
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if !stamps.touched.is_empty() {
        let ids: Vec<i64> = stamps.touched.iter().copied().collect();
        sql.push_str(&format!(", ft AS (UPDATE firewalls SET revision = (SELECT revision FROM r), updated_at = $1 WHERE id IN ({}))", id_list(&ids)));
    }
    if !stamps.retagged.is_empty() {
        let ids: Vec<i64> = stamps.retagged.iter().copied().collect();
        sql.push_str(&format!(
            ", fr AS (UPDATE firewalls SET revision = (SELECT revision FROM r) WHERE id IN ({}))",
            id_list(&ids)
        ));
    }
    if !stamps.lists.is_empty() {
        let ids: Vec<i64> = stamps.lists.iter().copied().collect();
        sql.push_str(&format!(", lt AS (UPDATE lists SET revision = (SELECT revision FROM r), updated_at = $1 WHERE id IN ({}))", id_list(&ids)));
    }
    if !stamps.servers.is_empty() {
        let ids: Vec<i64> = stamps.servers.iter().copied().collect();
        sql.push_str(&format!(", sp AS (UPDATE servers SET policy_revision = (SELECT revision FROM r) WHERE id IN ({}))", id_list(&ids)));
    }
    if !stamps.tombstones.is_empty() {
        let values: Vec<String> = stamps
            .tombstones
            .iter()
            .map(|_| format!("({}, {})", next(), next()))
            .collect();
        sql.push_str(&format!(", st AS (INSERT INTO server_tombstones (server_id, zone, revision, at) SELECT v.server_id, v.zone, r.revision, $1 FROM r, (VALUES {}) AS v(server_id, zone))", values.join(", ")));
    }
    if !stamps.audit.is_empty() {
        let values: Vec<String> = stamps
            .audit
            .iter()
            .map(|_| {
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, {})",
                    next(),
                    next(),
                    next(),
                    next(),
                    next(),
                    next(),
                    next(),
                    next()
                )
            })
            .collect();
        sql.push_str(&format!(", au AS ({AUDIT_INSERT} SELECT $1, v.kind, v.actor_id, v.actor, v.customer_id, v.action, v.target, v.detail, r.revision FROM r, (VALUES {}) AS v(n, kind, actor_id, actor, customer_id, action, target, detail) ORDER BY v.n)", values.join(", ")));
    }
    // Delivered to the listeners of every replica when (and only if) the
    // transaction commits.
    sql.push_str(&format!(
        " SELECT r.revision FROM r, LATERAL (SELECT pg_notify('{NOTIFY_CHANNEL}', r.revision::text)) AS n"
    ));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
    for (server, zone) in &stamps.tombstones {
        q = q.bind(*server).bind(zone.as_str());
    }
    for (i, a) in stamps.audit.iter().enumerate() {
        q = q
            .bind(i as i64)
            .bind(a.actor_kind)
            .bind(a.actor_id)
            .bind(a.actor.as_str())
            .bind(a.customer_id)
            .bind(a.action.as_str())
            .bind(a.target.as_str())
            .bind(a.detail.as_str());
    }
    Ok(q.fetch_one(conn).await?.try_get(0)?)
}

/// SQLite: the revision and the stamps, statement by statement (the
/// transaction holds the database's write lock anyway).
async fn stamp_sqlite(conn: &mut AnyConnection, stamps: &Stamps, now: i64) -> Result<i64> {
    let rev: i64 =
        sqlx::query("UPDATE meta SET revision = revision + 1 WHERE id = 1 RETURNING revision")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
    for (table, ids) in [("firewalls", &stamps.touched), ("lists", &stamps.lists)] {
        let ids: Vec<i64> = ids.iter().copied().collect();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "UPDATE {table} SET revision = $1, updated_at = $2 WHERE id IN ({})",
                id_list(chunk)
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(rev)
                .bind(now)
                .execute(&mut *conn)
                .await?;
        }
    }
    for (table, column, ids) in [
        ("firewalls", "revision", &stamps.retagged),
        ("servers", "policy_revision", &stamps.servers),
    ] {
        let ids: Vec<i64> = ids.iter().copied().collect();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "UPDATE {table} SET {column} = $1 WHERE id IN ({})",
                id_list(chunk)
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(rev)
                .execute(&mut *conn)
                .await?;
        }
    }
    for (server, zone) in &stamps.tombstones {
        sqlx::query(
            "INSERT INTO server_tombstones (server_id, zone, revision, at) VALUES ($1, $2, $3, $4)",
        )
        .bind(*server)
        .bind(zone.as_str())
        .bind(rev)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    for a in &stamps.audit {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{AUDIT_INSERT} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )))
        .bind(now)
        .bind(a.actor_kind)
        .bind(a.actor_id)
        .bind(a.actor.as_str())
        .bind(a.customer_id)
        .bind(a.action.as_str())
        .bind(a.target.as_str())
        .bind(a.detail.as_str())
        .bind(rev)
        .execute(&mut *conn)
        .await?;
    }
    Ok(rev)
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats unix milliseconds as RFC 3339 UTC (`2024-05-01T12:00:00.123Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Decodes a JSON text column (from [`Backend::json_agg`]).
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    row: &sqlx::any::AnyRow,
    name: &str,
) -> Result<T> {
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Db(sqlx::Error::Decode(Box::new(e))))
}

/// The error for a stored value that does not decode: `what` names the row
/// (`rule 12`), `column` the column. Reads fail closed on it: the request
/// fails (500) and an edge keeps the last policy it applied, rather than
/// getting a wider one.
pub(crate) fn corrupt(what: impl std::fmt::Display, column: &str, value: &str) -> StoreError {
    let value: String = value.chars().take(64).collect();
    StoreError::Db(sqlx::Error::Decode(
        format!("stored data is corrupt: {what}: column {column} holds '{value}'").into(),
    ))
}

/// Decodes a stored label selector; one that does not parse is corrupt data
/// (an error), never a selector that matches nothing (that would drop the
/// firewall from the servers it protects).
pub(crate) fn stored_selector(what: impl std::fmt::Display, text: &str) -> Result<Selector> {
    Selector::parse(text).map_err(|_| corrupt(what, "selector", text))
}

/// Formats ids as a SQL list for `IN (...)`: integers only, so no injection.
pub(crate) fn id_list(ids: &[i64]) -> String {
    let mut s = String::with_capacity(ids.len() * 6);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            DatabaseConfig::from_url("sqlite:///tmp/x.db").unwrap(),
            DatabaseConfig::Sqlite(PathBuf::from("/tmp/x.db"))
        );
        assert!(matches!(
            DatabaseConfig::from_url("postgres://u@h/db"),
            Ok(DatabaseConfig::Postgres(_))
        ));
        assert!(DatabaseConfig::from_url("mysql://x").is_err());
    }
}
