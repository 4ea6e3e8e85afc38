//! The audit log: who changed what, when. Entries are written in the same
//! transaction as the change they describe, by its commit, with its revision
//! ([`super::WriteTx::audit`]).

use super::{rfc3339, AuditEntry, Page, PageRequest, Result, Store};
use sqlx::Row;

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
