//! Tokens, users and browser sessions.
//!
//! Secrets (API tokens, session ids) are 256 random bits; only their SHA-256
//! is stored, which is enough for secrets of that entropy. Passwords are
//! hashed with argon2 by [`crate::auth`] before they reach the store.

use super::customers::get_customer;
use super::labels::{check_name, check_zone};
use super::{
    now_ms, rfc3339, Actor, Backend, CreatedToken, Page, PageRequest, Result, Scope, SessionInfo,
    Store, StoreError, TokenAuth, TokenInfo, TokenKind, UserInfo, WriteScope,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::time::{Duration, Instant};

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the OS random number generator failed");
    hex(&buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a secret, hex: what the store keeps instead of the secret.
pub fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// How often `last_used_at` is refreshed (a write per request would be waste).
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// Longest a verified token is remembered (SQLite; see
/// [`Store::verify_token`]).
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);
/// Most tokens remembered at once; the cache starts over when full.
const TOKEN_CACHE_MAX: usize = 10_000;

/// A verified token and when it was read.
pub(crate) struct CachedToken {
    auth: TokenAuth,
    /// The committed revision known before the token was read.
    revision: u64,
    at: Instant,
}

const TOKEN_COLUMNS: &str =
    "id, kind, customer_id, zone, scope, name, prefix, created_at, last_used_at, revoked_at";

fn token_from(r: &AnyRow) -> Result<TokenInfo> {
    let kind: String = r.try_get("kind")?;
    let scope: String = r.try_get("scope")?;
    Ok(TokenInfo {
        id: r.try_get("id")?,
        kind: TokenKind::parse(&kind).unwrap_or(TokenKind::Customer),
        customer_id: r.try_get("customer_id")?,
        zone: r.try_get("zone")?,
        scope: Scope::parse(&scope).unwrap_or(Scope::Read),
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        created_at: rfc3339(r.try_get("created_at")?),
        last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(rfc3339),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(rfc3339),
    })
}

/// What a new token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub kind: TokenKind,
    /// Required for customer tokens, absent otherwise.
    pub customer_id: Option<i64>,
    /// Required for edge tokens, absent otherwise.
    pub zone: Option<String>,
    pub scope: Scope,
    pub name: String,
}

impl Store {
    /// Creates a token and returns its secret (shown once).
    pub async fn create_token(&self, actor: &Actor, new: &NewToken) -> Result<CreatedToken> {
        check_name("name", &new.name)?;
        match new.kind {
            TokenKind::Customer if new.customer_id.is_none() => {
                return Err(StoreError::invalid(
                    "customer_id",
                    "a customer token needs customer_id",
                ))
            }
            TokenKind::Edge => {
                check_zone("zone", new.zone.as_deref().unwrap_or_default())?;
            }
            _ => {}
        }
        if new.kind != TokenKind::Edge && new.zone.is_some() {
            return Err(StoreError::invalid("zone", "only edge tokens have a zone"));
        }
        if new.kind != TokenKind::Customer && new.customer_id.is_some() {
            return Err(StoreError::invalid(
                "customer_id",
                "only customer tokens belong to a customer",
            ));
        }
        let secret = format!("{}{}", new.kind.secret_prefix(), random_hex(32));
        let mut tx = self.begin_write(WriteScope::Exclusive(None)).await?;
        if let Some(c) = new.customer_id {
            get_customer(tx.conn(), c).await.map_err(|_| {
                StoreError::invalid("customer_id", format!("customer {c} does not exist"))
            })?;
        }
        let sql = format!(
            "INSERT INTO tokens (kind, customer_id, zone, scope, name, hash, prefix, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {TOKEN_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new.kind.as_str())
            .bind(new.customer_id)
            .bind(new.zone.clone())
            .bind(new.scope.as_str())
            .bind(new.name.as_str())
            .bind(secret_hash(&secret))
            .bind(secret[..12].to_string())
            .bind(now_ms())
            .fetch_one(tx.conn())
            .await?;
        let info = token_from(&row)?;
        tx.audit(
            actor,
            new.customer_id,
            "token.create",
            &format!("token/{}", info.id),
            json!({"kind": new.kind, "scope": new.scope, "name": new.name, "zone": new.zone}),
        );
        tx.commit().await?;
        Ok(CreatedToken {
            info,
            token: secret,
        })
    }

    /// Lists tokens by id: one customer's (`customer` set) or every token.
    pub async fn list_tokens(
        &self,
        customer: Option<i64>,
        page: PageRequest,
    ) -> Result<Page<TokenInfo>> {
        let rows = match customer {
            Some(c) => {
                let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE customer_id = $1 AND id > $2 ORDER BY id LIMIT $3");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(c)
                    .bind(page.cursor.unwrap_or(0))
                    .bind(page.limit as i64 + 1)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE id > $1 ORDER BY id LIMIT $2"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(page.cursor.unwrap_or(0))
                    .bind(page.limit as i64 + 1)
                    .fetch_all(self.pool())
                    .await?
            }
        };
        let items = rows.iter().map(token_from).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |t| t.id))
    }

    /// Revokes a token; a customer can revoke only its own. Revoking twice is
    /// not an error.
    pub async fn revoke_token(
        &self,
        actor: &Actor,
        customer: Option<i64>,
        id: i64,
    ) -> Result<TokenInfo> {
        let mut tx = self.begin_write(WriteScope::Exclusive(None)).await?;
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(tx.conn())
            .await?;
        let info = match row {
            Some(r) => token_from(&r)?,
            None => return Err(StoreError::NotFound(format!("token {id}"))),
        };
        if customer.is_some() && info.customer_id != customer {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        if info.revoked_at.is_some() {
            return Ok(info);
        }
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.audit(
            actor,
            info.customer_id,
            "token.revoke",
            &format!("token/{id}"),
            json!({"name": info.name}),
        );
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1");
        let info = token_from(
            &sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_one(tx.conn())
                .await?,
        )?;
        tx.commit().await?;
        Ok(info)
    }

    /// Finds the live token with this secret.
    ///
    /// On SQLite, where this process is the only writer (the store's write
    /// lock), a token once verified is remembered until the next committed
    /// revision of this process, and at most [`TOKEN_CACHE_TTL`]: revoking a
    /// token, deleting its customer or anything else that can end it advances
    /// the revision, so a revoked token is refused by every request that
    /// starts after the revocation returned, exactly as without the cache.
    /// The TTL bounds what another process could change behind our back (an
    /// operator's `sqlite3`). Unknown secrets are never remembered.
    pub async fn verify_token(&self, secret: &str) -> Result<Option<TokenAuth>> {
        let hash = secret_hash(secret);
        let cache = self.caches_exact();
        // Read before the database: an entry is tagged with a revision no
        // later than the state it saw.
        let revision = *self.inner.revision_tx.borrow();
        let now = Instant::now();
        let cached = cache
            .then(|| {
                let map = self
                    .inner
                    .token_cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                map.get(&hash)
                    .filter(|c| {
                        c.revision == revision && now.duration_since(c.at) < TOKEN_CACHE_TTL
                    })
                    .map(|c| c.auth.clone())
            })
            .flatten();
        let auth = match cached {
            Some(auth) => auth,
            None => match self.load_token(&hash).await? {
                Some(auth) => {
                    if cache {
                        let mut map = self
                            .inner
                            .token_cache
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        if map.len() >= TOKEN_CACHE_MAX {
                            map.clear();
                        }
                        map.insert(
                            hash,
                            CachedToken {
                                auth: auth.clone(),
                                revision,
                                at: now,
                            },
                        );
                    }
                    auth
                }
                None => return Ok(None),
            },
        };
        self.note_token_use(&auth);
        Ok(Some(auth))
    }

    async fn load_token(&self, hash: &str) -> Result<Option<TokenAuth>> {
        let row = sqlx::query(
            "SELECT id, kind, customer_id, zone, scope, name, last_used_at FROM tokens WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let auth = TokenAuth {
            id: r.try_get("id")?,
            kind: TokenKind::parse(&r.try_get::<String, _>("kind")?).unwrap_or(TokenKind::Customer),
            customer_id: r.try_get("customer_id")?,
            zone: r.try_get("zone")?,
            scope: Scope::parse(&r.try_get::<String, _>("scope")?).unwrap_or(Scope::Read),
            name: r.try_get("name")?,
            last_used_at: r.try_get("last_used_at")?,
        };
        Ok(Some(auth))
    }

    /// Schedules the `last_used_at` update of a token when it is due.
    fn note_token_use(&self, auth: &TokenAuth) {
        let now = now_ms();
        if auth
            .last_used_at
            .is_none_or(|t| now - t > LAST_USED_GRANULARITY_MS)
            && self.claim_token_touch(auth.id, now)
        {
            // Best effort and off the request path: the request neither waits
            // for the writers' lock nor fails when the database is busy.
            let store = self.clone();
            let id = auth.id;
            tokio::spawn(async move { store.touch_token(id, now).await });
        }
    }

    /// Whether this request should schedule the `last_used_at` update of
    /// token `id` (none was scheduled within the interval).
    fn claim_token_touch(&self, id: i64, now: i64) -> bool {
        let mut touches = self
            .inner
            .token_touches
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if touches
            .get(&id)
            .is_some_and(|t| now - t <= LAST_USED_GRANULARITY_MS)
        {
            return false;
        }
        if touches.len() > 100_000 {
            touches.clear();
        }
        touches.insert(id, now);
        true
    }

    /// Records that token `id` was used at `now`. On SQLite it queues with the
    /// other writers of this process instead of spinning on a busy database.
    async fn touch_token(&self, id: i64, now: i64) {
        let _guard = match self.inner.backend {
            Backend::Sqlite => Some(self.inner.write_lock.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        let done = sqlx::query(
            "UPDATE tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
        )
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await;
        if let Err(e) = done {
            tracing::debug!(token = id, error = %e, "recording a token's last use failed");
        }
    }

    /// Creates an admin token if none is live. Returns its secret when it did.
    pub async fn ensure_admin_token(&self) -> Result<Option<String>> {
        let live: i64 =
            sqlx::query("SELECT COUNT(*) FROM tokens WHERE kind = 'admin' AND revoked_at IS NULL")
                .fetch_one(self.pool())
                .await?
                .try_get(0)?;
        if live > 0 {
            return Ok(None);
        }
        Ok(Some(self.create_admin_token("initial admin token").await?))
    }

    /// Creates another admin token (`portwall-panel --new-admin-token`).
    pub async fn create_admin_token(&self, name: &str) -> Result<String> {
        let new = NewToken {
            kind: TokenKind::Admin,
            customer_id: None,
            zone: None,
            scope: Scope::Write,
            name: name.into(),
        };
        Ok(self.create_token(&Actor::system(), &new).await?.token)
    }

    /// Creates a web login. `password_hash` is an argon2 PHC string.
    pub async fn create_user(
        &self,
        actor: &Actor,
        login: &str,
        password_hash: &str,
        customer_id: Option<i64>,
    ) -> Result<UserInfo> {
        if login.is_empty()
            || login.chars().count() > 100
            || login.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(StoreError::invalid("login", "1-100 characters, no spaces"));
        }
        let mut tx = self.begin_write(WriteScope::Exclusive(None)).await?;
        if let Some(c) = customer_id {
            get_customer(tx.conn(), c).await.map_err(|_| {
                StoreError::invalid("customer_id", format!("customer {c} does not exist"))
            })?;
        }
        if sqlx::query("SELECT id FROM users WHERE login = $1")
            .bind(login)
            .fetch_optional(tx.conn())
            .await?
            .is_some()
        {
            return Err(StoreError::conflict(
                Some("login"),
                format!("the login '{login}' is taken"),
            ));
        }
        let row = sqlx::query("INSERT INTO users (login, customer_id, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id, login, customer_id, created_at")
            .bind(login)
            .bind(customer_id)
            .bind(password_hash)
            .bind(now_ms())
            .fetch_one(tx.conn())
            .await?;
        let user = user_from(&row)?;
        tx.audit(
            actor,
            customer_id,
            "user.create",
            &format!("user/{}", user.id),
            json!({"login": login}),
        );
        tx.commit().await?;
        Ok(user)
    }

    /// Lists logins by id.
    pub async fn list_users(&self, page: PageRequest) -> Result<Page<UserInfo>> {
        let rows = sqlx::query("SELECT id, login, customer_id, created_at FROM users WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(page.cursor.unwrap_or(0))
            .bind(page.limit as i64 + 1)
            .fetch_all(self.pool())
            .await?;
        let items = rows.iter().map(user_from).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |u| u.id))
    }

    /// Deletes a login and its sessions.
    pub async fn delete_user(&self, actor: &Actor, id: i64) -> Result<()> {
        let mut tx = self.begin_write(WriteScope::Exclusive(None)).await?;
        let row = sqlx::query("SELECT id, login, customer_id, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
        let user = user_from(&row)?;
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.audit(
            actor,
            user.customer_id,
            "user.delete",
            &format!("user/{id}"),
            json!({"login": user.login}),
        );
        tx.commit().await?;
        Ok(())
    }

    /// The user id, customer and password hash of a login.
    pub async fn user_credentials(&self, login: &str) -> Result<Option<(UserInfo, String)>> {
        let row = sqlx::query(
            "SELECT id, login, customer_id, created_at, password_hash FROM users WHERE login = $1",
        )
        .bind(login)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) => Ok(Some((user_from(&r)?, r.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    /// Opens a session for a user. Returns the cookie secret and the session.
    pub async fn create_session(
        &self,
        user: &UserInfo,
        ttl_ms: i64,
    ) -> Result<(String, SessionInfo)> {
        let secret = random_hex(32);
        let csrf = random_hex(32);
        let now = now_ms();
        let (mut tx, _guard) = self.begin_status_write().await?;
        // Expired sessions are swept as new ones are made.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let id: i64 = sqlx::query("INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING id")
            .bind(secret_hash(&secret))
            .bind(user.id)
            .bind(csrf.as_str())
            .bind(now)
            .bind(now + ttl_ms)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok((
            secret,
            SessionInfo {
                id,
                user_id: user.id,
                login: user.login.clone(),
                customer_id: user.customer_id,
                csrf_token: csrf,
                expires_at: rfc3339(now + ttl_ms),
            },
        ))
    }

    /// The live session with this cookie secret.
    pub async fn session(&self, secret: &str) -> Result<Option<SessionInfo>> {
        let row = sqlx::query(
            "SELECT s.id, s.user_id, u.login, u.customer_id, s.csrf, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.hash = $1 AND s.expires_at > $2",
        )
        .bind(secret_hash(secret))
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(SessionInfo {
            id: r.try_get("id")?,
            user_id: r.try_get("user_id")?,
            login: r.try_get("login")?,
            customer_id: r.try_get("customer_id")?,
            csrf_token: r.try_get("csrf")?,
            expires_at: rfc3339(r.try_get("expires_at")?),
        }))
    }

    /// Ends a session (logout).
    pub async fn delete_session(&self, session_id: i64) -> Result<()> {
        let (mut tx, _guard) = self.begin_status_write().await?;
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn user_from(r: &AnyRow) -> Result<UserInfo> {
    Ok(UserInfo {
        id: r.try_get("id")?,
        login: r.try_get("login")?,
        customer_id: r.try_get("customer_id")?,
        created_at: rfc3339(r.try_get("created_at")?),
    })
}
