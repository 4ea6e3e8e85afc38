//! The audit log: who changed what, when. Entries are written in the same
//! transaction as the change they describe.

use super::{now_ms, rfc3339, Actor, AuditEntry, Page, PageRequest, Result, Store};
use sqlx::{AnyConnection, Row};

/// Appends an entry.
pub(crate) async fn record(
    conn: &mut AnyConnection,
    actor: &Actor,
    customer_id: Option<i64>,
    action: &str,
    target: &str,
    revision: Option<i64>,
    detail: serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (at, actor_kind, actor_id, actor, customer_id, action, target, revision, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(now_ms())
    .bind(actor.kind.as_str())
    .bind(actor.id)
    .bind(actor.label.as_str())
    .bind(customer_id)
    .bind(action)
    .bind(target)
    .bind(revision)
    .bind(detail.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// The audit log, newest first. `customer` restricts it to one customer's
    /// entries (what a customer sees); None shows everything (admin).
    pub async fn audit_log(
        &self,
        customer: Option<i64>,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>> {
        let cursor = page.cursor.unwrap_or(i64::MAX);
        let rows = match customer {
            Some(c) => {
                sqlx::query(
                    "SELECT id, at, actor_kind, actor_id, actor, customer_id, action, target, revision, detail \
                     FROM audit WHERE customer_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .bind(c)
                .bind(cursor)
                .bind(page.limit as i64 + 1)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT id, at, actor_kind, actor_id, actor, customer_id, action, target, revision, detail \
                     FROM audit WHERE id < $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(cursor)
                .bind(page.limit as i64 + 1)
                .fetch_all(self.pool())
                .await?
            }
        };
        let items = rows
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: rfc3339(r.try_get("at")?),
                    actor_kind: r.try_get("actor_kind")?,
                    actor_id: r.try_get("actor_id")?,
                    actor: r.try_get("actor")?,
                    customer_id: r.try_get("customer_id")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    revision: r.try_get::<Option<i64>, _>("revision")?.map(|v| v as u64),
                    detail: serde_json::from_str(&r.try_get::<String, _>("detail")?)
                        .unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |e| e.id))
    }
}
