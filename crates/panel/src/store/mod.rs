//! The panel's store: every durable fact lives here, in SQLite (default) or
//! PostgreSQL (to scale out to several panel replicas sharing one database).
//!
//! One code path serves both backends through sqlx's `Any` driver; the SQL is
//! the common subset (`$1` placeholders, `RETURNING`, `ON CONFLICT`), booleans
//! are stored as `0/1` and times as unix milliseconds. The schemas live in
//! `migrations/sqlite` and `migrations/postgres` and are applied at open.
//!
//! ## Transactions and revisions
//!
//! Every change runs in one write transaction that starts by advancing the
//! global revision (`UPDATE meta SET revision = revision + 1`). That row lock
//! serializes writers (on SQLite, a process-wide mutex and `BEGIN IMMEDIATE`
//! do the same), so revisions are committed in increasing order: a reader that
//! has seen revision `R` committed has seen every change `<= R`. This is what
//! makes the edge sync deltas exact. The firewall's own revision and the
//! `policy_revision` of every server whose effective policy changes are set to
//! the new global revision in the same transaction, together with the audit
//! entry. A method returns only after `COMMIT` succeeded, so an API 2xx is
//! never given for a write that could be lost.
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
mod servers;
mod sync;
mod types;

pub use accounts::{random_hex, secret_hash, NewToken};
pub use firewalls::MAX_FIREWALL_DESCRIPTION;
pub use labels::{parse_labels, Selector};
pub use sync::{ZoneChanges, REPORT_IGNORED_REASON};
pub use types::*;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Row, Transaction};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex, OwnedMutexGuard};

/// The NOTIFY channel a commit signals on PostgreSQL; its payload is the new
/// global revision.
pub const NOTIFY_CHANNEL: &str = "portwall_revision";

/// Most rules one firewall may hold.
pub const MAX_RULES_PER_FIREWALL: usize = 10_000;
/// Most source networks all rules of one firewall may name together.
pub const MAX_SOURCES_PER_FIREWALL: usize = 100_000;

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
    /// `If-Match` did not match the current revision (412).
    #[error("the firewall changed: its revision is now {current}")]
    Precondition { current: u64 },
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
    /// SQLite only: verified tokens by secret hash, with the revision known
    /// when they were read (see [`Store::verify_token`]).
    token_cache: std::sync::Mutex<std::collections::HashMap<String, accounts::CachedToken>>,
    /// Advanced after every commit that changes what the server status shows
    /// without advancing the revision (edge reports); part of the caches'
    /// [`cache::Stamp`].
    status_epoch: std::sync::atomic::AtomicU64,
    /// SQLite only: the hot customer reads (see [`cache`]).
    caches: Caches,
}

/// The read caches (SQLite only; see [`cache`]).
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

    /// The stamp a cached read must carry to be current, taken before the
    /// database read; None on PostgreSQL, which is never cached.
    fn read_stamp(&self) -> Option<cache::Stamp> {
        (self.inner.backend == Backend::Sqlite).then(|| cache::Stamp {
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
    /// without advancing the revision (an edge report): cached statuses are
    /// stale from now on.
    fn status_changed(&self) {
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

    /// Begins a write transaction and advances the global revision in it.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx> {
        let guard = match self.inner.backend {
            Backend::Sqlite => Some(self.inner.write_lock.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        let mut tx = match self.inner.backend {
            Backend::Sqlite => self.inner.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.inner.pool.begin().await?,
        };
        let rev: i64 =
            sqlx::query("UPDATE meta SET revision = revision + 1 WHERE id = 1 RETURNING revision")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        Ok(WriteTx {
            tx,
            rev,
            _guard: guard,
            store: self.clone(),
        })
    }

    /// Begins a write transaction that does not advance the revision (edge
    /// reports, sessions): it still takes the writers' lock so that it can
    /// never deadlock with a policy change. A caller that changes what a
    /// server's status shows must call [`Store::status_changed`] after its
    /// commit (the read caches rely on it).
    pub(crate) async fn begin_status_write(
        &self,
    ) -> Result<(Transaction<'static, Any>, Option<OwnedMutexGuard<()>>)> {
        let guard = match self.inner.backend {
            Backend::Sqlite => Some(self.inner.write_lock.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        let mut tx = match self.inner.backend {
            Backend::Sqlite => self.inner.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.inner.pool.begin().await?,
        };
        sqlx::query("UPDATE meta SET revision = revision WHERE id = 1")
            .execute(&mut *tx)
            .await?;
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

/// A write transaction whose global revision is already advanced to `rev`.
/// Dropping it without [`WriteTx::commit`] rolls everything back, including the
/// revision.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Any>,
    pub rev: i64,
    _guard: Option<OwnedMutexGuard<()>>,
    store: Store,
}

impl WriteTx {
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Commits, then wakes the long-polls. Returns the committed revision.
    pub async fn commit(mut self) -> Result<u64> {
        if self.store.inner.backend == Backend::Postgres {
            // Delivered to the listeners of every replica when (and only if) the
            // transaction commits.
            let sql = format!("NOTIFY {NOTIFY_CHANNEL}, '{}'", self.rev);
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *self.tx)
                .await?;
        }
        let rev = self.rev as u64;
        let store = self.store.clone();
        self.tx.commit().await?;
        store.notify_revision(rev);
        Ok(rev)
    }
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
