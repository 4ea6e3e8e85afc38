//! Liveness and readiness: `GET /healthz` and `GET /readyz`.
//!
//! - `/healthz`: the process answers HTTP (200, always). It does not touch
//!   the database, so a slow database does not get a healthy panel restarted.
//! - `/readyz`: the panel can serve: the database answers (within 5 s) and
//!   every migration this binary knows is applied. 200 with the backend,
//!   revision and migration counts; 503 with the reason otherwise, so a load
//!   balancer sends no traffic to a replica that would fail it.

use crate::state::AppState;
use crate::store::Backend;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use sqlx::Row;
use std::collections::BTreeSet;
use std::time::Duration;

/// The migrations of this binary, per backend (the same directories the store
/// runs at start-up).
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// The body of `/healthz`.
#[derive(Debug, Serialize)]
pub struct Alive {
    pub status: &'static str,
    pub version: &'static str,
}

/// `GET /healthz`.
pub async fn healthz() -> Json<Alive> {
    Json(Alive {
        status: "alive",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub backend: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Migrations applied in the database / known to this binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrations_applied: Option<usize>,
    pub migrations_expected: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

async fn check(st: &AppState) -> Result<(u64, usize), String> {
    let migrator = match st.store.backend() {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    };
    let mut conn = st
        .store
        .pool()
        .acquire()
        .await
        .map_err(|e| format!("the database is unreachable: {e}"))?;
    let revision: i64 = sqlx::query("SELECT revision FROM meta WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| format!("the database does not answer: {e}"))?;
    let applied: BTreeSet<i64> = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| format!("cannot read the applied migrations: {e}"))?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read the applied migrations: {e}"))?;
    let missing: Vec<String> = migrator
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{} ({})", m.version, m.description))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "migrations not applied: {}; restart the panel to apply them",
            missing.join(", ")
        ));
    }
    Ok((revision as u64, applied.len()))
}

/// `GET /readyz`.
pub async fn readyz(State(st): State<AppState>) -> Response {
    let backend = match st.store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let expected = match st.store.backend() {
        Backend::Sqlite => SQLITE_MIGRATIONS.iter().count(),
        Backend::Postgres => POSTGRES_MIGRATIONS.iter().count(),
    };
    let result = match tokio::time::timeout(READY_TIMEOUT, check(&st)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the database did not answer within {} s",
            READY_TIMEOUT.as_secs()
        )),
    };
    match result {
        Ok((revision, applied)) => (
            StatusCode::OK,
            Json(Readiness {
                ready: true,
                backend,
                revision: Some(revision),
                migrations_applied: Some(applied),
                migrations_expected: expected,
                reason: None,
            }),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                ready: false,
                backend,
                revision: None,
                migrations_applied: None,
                migrations_expected: expected,
                reason: Some(reason),
            }),
        )
            .into_response(),
    }
}
