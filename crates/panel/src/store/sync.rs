//! What the edges need: effective per-server policies, snapshots and deltas
//! of a zone, and the apply status they report back.

use super::firewalls::{effective_servers, fw_row, rule_from, RULE_COLUMNS};
use super::servers::{load_server, server_from, SERVER_COLUMNS};
use super::{
    id_list, json_column, now_ms, rfc3339, stored_selector, ApplyState, Backend, CounterInfo,
    FirewallApplyStatus, ReportOutcome, Result, Selector, Server, ServerStatus, Store, StoreError,
    STATUS_CHANNEL,
};
use model::network::sync::{EdgeReport, EdgeRule, ServerPolicy, SyncResponse};
use model::network::NetworkRule;
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::OnceLock;

/// What [`Store::zone_changes`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneChanges {
    /// A snapshot or a delta to send now.
    Changes(SyncResponse),
    /// Nothing in the zone changed after `since` up to `revision`.
    Unchanged { revision: u64 },
}

/// Why a report entry was not recorded.
pub const REPORT_IGNORED_REASON: &str = "not a server of this zone";

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The effective policies of these servers, computed in one snapshot.
pub(crate) async fn policies(
    conn: &mut AnyConnection,
    servers: &[Server],
) -> Result<Vec<ServerPolicy>> {
    if servers.is_empty() {
        return Ok(Vec::new());
    }
    // Active firewalls per server: by id ...
    let mut fws: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    let ids: Vec<i64> = servers.iter().map(|s| s.id).collect();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT a.server_id, a.firewall_id FROM assignments a JOIN firewalls f ON f.id = a.firewall_id \
             WHERE f.active = 1 AND a.server_id IN ({})",
            id_list(chunk)
        );
        for r in sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await?
        {
            fws.entry(r.try_get(0)?).or_default().insert(r.try_get(1)?);
        }
    }
    // ... and by the selectors of the customer's active firewalls.
    let customers: Vec<i64> = servers
        .iter()
        .map(|s| s.customer_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut selectors: BTreeMap<i64, Vec<(i64, Selector)>> = BTreeMap::new();
    for chunk in customers.chunks(500) {
        let sql = format!(
            "SELECT f.customer_id, s.firewall_id, s.selector FROM selectors s JOIN firewalls f ON f.id = s.firewall_id \
             WHERE f.active = 1 AND f.customer_id IN ({})",
            id_list(chunk)
        );
        for r in sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await?
        {
            let fw: i64 = r.try_get(1)?;
            let sel = stored_selector(
                format!("a selector of firewall {fw}"),
                &r.try_get::<String, _>(2)?,
            )?;
            selectors.entry(r.try_get(0)?).or_default().push((fw, sel));
        }
    }
    for s in servers.iter().filter(|s| s.kind.supports_firewall()) {
        for (fw, sel) in selectors
            .get(&s.customer_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if sel.matches(&s.labels) {
                fws.entry(s.id).or_default().insert(*fw);
            }
        }
    }
    let needed: Vec<i64> = fws
        .values()
        .flatten()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rules: BTreeMap<i64, Vec<(i64, NetworkRule)>> = BTreeMap::new();
    for chunk in needed.chunks(500) {
        let sql = format!(
            "SELECT {RULE_COLUMNS} FROM rules WHERE enabled = 1 AND firewall_id IN ({}) ORDER BY firewall_id, position, id",
            id_list(chunk)
        );
        for r in sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await?
        {
            let fw: i64 = r.try_get("firewall_id")?;
            rules.entry(fw).or_default().push(rule_from(&r)?);
        }
    }
    Ok(servers
        .iter()
        .map(|s| {
            let active: Vec<i64> = if s.kind.supports_firewall() {
                fws.get(&s.id)
                    .map(|f| f.iter().copied().collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let mut edge_rules = Vec::new();
            for fw in &active {
                for (rule_id, r) in rules.get(fw).map(Vec::as_slice).unwrap_or_default() {
                    edge_rules.push(EdgeRule {
                        firewall_id: *fw,
                        rule_id: *rule_id,
                        protocol: r.protocol,
                        ports: r.ports,
                        sources: r.sources.clone(),
                    });
                }
            }
            ServerPolicy {
                server_id: s.id,
                name: s.name.clone(),
                addresses: s
                    .ipv4
                    .iter()
                    .map(|a| IpAddr::V4(*a))
                    .chain(s.ipv6.iter().map(|a| IpAddr::V6(*a)))
                    .collect(),
                revision: s.policy_revision,
                enforced: !active.is_empty(),
                rules: edge_rules,
            }
        })
        .collect())
}

/// The statement of [`status_of`]: the server, its edge status, the
/// firewalls assigned by id, the selectors of its customer's firewalls and
/// its counters, in one round trip and one snapshot.
fn status_sql(backend: Backend) -> &'static str {
    static SQLITE: OnceLock<String> = OnceLock::new();
    static POSTGRES: OnceLock<String> = OnceLock::new();
    let cell = match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    };
    cell.get_or_init(|| {
        let b = backend;
        let server_columns = SERVER_COLUMNS
            .split(", ")
            .map(|c| format!("s.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {server_columns}, st.edge, st.realized_revision, st.error, st.error_revision, st.reported_at, \
             (SELECT {} FROM assignments a JOIN firewalls f ON f.id = a.firewall_id WHERE a.server_id = s.id) AS assigned_json, \
             (SELECT {} FROM selectors sel JOIN firewalls f ON f.id = sel.firewall_id WHERE f.customer_id = s.customer_id) AS selectors_json, \
             (SELECT {} FROM counters c WHERE c.server_id = s.id) AS counters_json \
             FROM servers s LEFT JOIN server_status st ON st.server_id = s.id WHERE s.id = $1",
            b.json_agg(&b.json_array(&["f.id", "f.active"]), "f.id"),
            b.json_agg(&b.json_array(&["f.id", "f.active", "sel.selector"]), "sel.id"),
            b.json_agg(
                &b.json_array(&["c.rule_id", "c.packets", "c.bytes", "c.updated_at"]),
                "c.rule_id"
            ),
        )
    })
}

/// Whether the edge applied the current policy of server `id`; with
/// `customer` set, another customer's server is not found.
async fn status_of(
    conn: &mut AnyConnection,
    id: i64,
    customer: Option<i64>,
) -> Result<ServerStatus> {
    let row = sqlx::query(status_sql(Backend::of(conn)))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("server {id}")))?;
    let s = server_from(&row)?;
    if customer.is_some_and(|c| c != s.customer_id) {
        return Err(StoreError::NotFound(format!("server {id}")));
    }
    // Every firewall assigned to the server (by id or selector), active or not.
    let mut all: BTreeMap<i64, bool> = BTreeMap::new();
    let assigned: Vec<(i64, i64)> = json_column(&row, "assigned_json")?;
    for (fw, active) in assigned {
        all.insert(fw, active != 0);
    }
    if s.kind.supports_firewall() {
        let selected: Vec<(i64, i64, String)> = json_column(&row, "selectors_json")?;
        for (fw, active, selector) in selected {
            if stored_selector(format!("a selector of firewall {fw}"), &selector)?
                .matches(&s.labels)
            {
                all.insert(fw, active != 0);
            }
        }
    }
    let enforced = s.kind.supports_firewall() && all.values().any(|a| *a);
    let firewalls: Vec<i64> = all.into_keys().collect();
    let edge: Option<String> = row.try_get("edge")?;
    let realized: Option<i64> = row.try_get("realized_revision")?;
    let error: Option<String> = row.try_get("error")?;
    let error_rev: Option<i64> = row.try_get("error_revision")?;
    let reported_at: Option<i64> = row.try_get("reported_at")?;
    let policy = s.policy_revision as i64;
    let (state, reason) = match (&error, error_rev) {
        (Some(e), Some(er)) if er >= policy && realized.is_none_or(|r| r < er) => {
            (ApplyState::Failed, Some(e.clone()))
        }
        _ if realized.is_some_and(|r| r >= policy) => (ApplyState::Applied, None),
        _ => (ApplyState::Pending, None),
    };
    let status = match (state, &reason) {
        (ApplyState::Failed, Some(r)) => format!("failed: {r}"),
        (ApplyState::Applied, _) => "applied".into(),
        _ => "pending".into(),
    };
    let counters: Vec<(i64, i64, i64, i64)> = json_column(&row, "counters_json")?;
    let counters = counters
        .into_iter()
        .map(|(rule, packets, bytes, updated_at)| CounterInfo {
            rule_id: (rule != 0).then_some(rule),
            packets: packets as u64,
            bytes: bytes as u64,
            updated_at: rfc3339(updated_at),
        })
        .collect();
    Ok(ServerStatus {
        server_id: s.id,
        name: s.name,
        zone: s.zone,
        status,
        state,
        reason,
        policy_revision: s.policy_revision,
        realized_revision: realized.map(|r| r as u64),
        edge,
        reported_at: reported_at.map(rfc3339),
        enforced,
        firewalls,
        counters,
    })
}

impl Store {
    /// What an edge of `zone` that has applied `since` must learn: a snapshot
    /// (first contact, or a gap the panel cannot bridge), a delta, or nothing.
    pub async fn zone_changes(&self, zone: &str, since: Option<u64>) -> Result<ZoneChanges> {
        let mut tx = self.begin_read().await?;
        let meta = sqlx::query("SELECT revision, bridge_from FROM meta WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let current = meta.try_get::<i64, _>(0)? as u64;
        let bridge_from = meta.try_get::<i64, _>(1)? as u64;
        let snapshot = match since {
            None | Some(0) => true,
            Some(s) => s > current || s < bridge_from,
        };
        let out = if snapshot {
            let sql = format!("SELECT {SERVER_COLUMNS} FROM servers WHERE zone = $1 ORDER BY id");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(zone)
                .fetch_all(&mut *tx)
                .await?;
            let servers = rows.iter().map(server_from).collect::<Result<Vec<_>>>()?;
            ZoneChanges::Changes(SyncResponse::Snapshot {
                revision: current,
                servers: policies(&mut tx, &servers).await?,
            })
        } else {
            let since = since.unwrap_or_default();
            let sql = format!("SELECT {SERVER_COLUMNS} FROM servers WHERE zone = $1 AND policy_revision > $2 ORDER BY id");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(zone)
                .bind(clamp(since))
                .fetch_all(&mut *tx)
                .await?;
            let servers = rows.iter().map(server_from).collect::<Result<Vec<_>>>()?;
            let gone: Vec<i64> = sqlx::query("SELECT DISTINCT server_id FROM server_tombstones WHERE zone = $1 AND revision > $2 ORDER BY server_id")
                .bind(zone)
                .bind(clamp(since))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<Vec<i64>, _>>()?;
            // A tombstoned server that is in the zone again (it moved away
            // and back) is not removed. The zone's ids are read only when
            // there is a tombstone to check: a poll of a zone where nothing
            // changed (every held poll wakes on every commit) reads no row.
            let removed: Vec<i64> = if gone.is_empty() {
                gone
            } else {
                let present: BTreeSet<i64> = sqlx::query("SELECT id FROM servers WHERE zone = $1")
                    .bind(zone)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
                gone.into_iter()
                    .filter(|id| !present.contains(id))
                    .collect()
            };
            if servers.is_empty() && removed.is_empty() {
                ZoneChanges::Unchanged { revision: current }
            } else {
                ZoneChanges::Changes(SyncResponse::Delta {
                    from: since,
                    revision: current,
                    changed: policies(&mut tx, &servers).await?,
                    removed,
                })
            }
        };
        tx.commit().await?;
        Ok(out)
    }

    /// The policy the edge should enforce for one server (admin view).
    pub async fn server_policy(&self, id: i64) -> Result<ServerPolicy> {
        let mut tx = self.begin_read().await?;
        let s = load_server(&mut tx, id, None).await?;
        let mut p = policies(&mut tx, std::slice::from_ref(&s)).await?;
        tx.commit().await?;
        p.pop()
            .ok_or_else(|| StoreError::NotFound(format!("server {id}")))
    }

    /// Records what an edge of `zone` applied: per server the realized
    /// revision or the error, the counters, and the edge's last report.
    /// Entries for servers outside the zone are ignored and listed.
    pub async fn record_report(&self, zone: &str, report: &EdgeReport) -> Result<ReportOutcome> {
        let now = now_ms();
        let (mut tx, _guard) = self.begin_status_write().await?;
        let mut results: Vec<_> = report.servers.iter().collect();
        results.sort_by_key(|r| r.server_id);
        let mut in_zone: BTreeSet<i64> = BTreeSet::new();
        let mut ignored = Vec::new();
        let mut recorded = 0u64;
        for ids in [
            results.iter().map(|r| r.server_id).collect::<Vec<_>>(),
            report.counters.iter().map(|c| c.server_id).collect(),
        ] {
            for chunk in ids.chunks(500) {
                let sql = format!(
                    "SELECT id FROM servers WHERE zone = $1 AND id IN ({})",
                    id_list(chunk)
                );
                for r in sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(zone)
                    .fetch_all(&mut *tx)
                    .await?
                {
                    in_zone.insert(r.try_get(0)?);
                }
            }
        }
        for r in results {
            if !in_zone.contains(&r.server_id) {
                ignored.push(r.server_id);
                continue;
            }
            let current = sqlx::query("SELECT realized_revision, error, error_revision FROM server_status WHERE server_id = $1")
                .bind(r.server_id)
                .fetch_optional(&mut *tx)
                .await?;
            let (mut realized, mut error, mut error_rev): (
                Option<i64>,
                Option<String>,
                Option<i64>,
            ) = match &current {
                Some(c) => (c.try_get(0)?, c.try_get(1)?, c.try_get(2)?),
                None => (None, None, None),
            };
            let rev = clamp(r.revision);
            match &r.error {
                None => {
                    realized = Some(realized.map_or(rev, |x| x.max(rev)));
                    if error_rev.is_some_and(|e| e <= rev) {
                        error = None;
                        error_rev = None;
                    }
                }
                Some(e) => {
                    if error_rev.is_none_or(|x| x <= rev) {
                        error = Some(e.chars().take(1000).collect());
                        error_rev = Some(rev);
                    }
                }
            }
            sqlx::query(
                "INSERT INTO server_status (server_id, edge, realized_revision, error, error_revision, reported_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (server_id) DO UPDATE SET edge = excluded.edge, realized_revision = excluded.realized_revision, \
                 error = excluded.error, error_revision = excluded.error_revision, reported_at = excluded.reported_at",
            )
            .bind(r.server_id)
            .bind(report.edge.as_str())
            .bind(realized)
            .bind(error)
            .bind(error_rev)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            recorded += 1;
        }
        let mut counters: Vec<_> = report
            .counters
            .iter()
            .filter(|c| in_zone.contains(&c.server_id))
            .collect();
        counters.sort_by_key(|c| (c.server_id, c.rule_id));
        for c in counters {
            sqlx::query(
                "INSERT INTO counters (server_id, rule_id, packets, bytes, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (server_id, rule_id) DO UPDATE SET packets = excluded.packets, bytes = excluded.bytes, updated_at = excluded.updated_at",
            )
            .bind(c.server_id)
            .bind(c.rule_id.unwrap_or(0))
            .bind(clamp(c.packets))
            .bind(clamp(c.bytes))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO edges (zone, name, revision, reported_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (zone, name) DO UPDATE SET revision = excluded.revision, reported_at = excluded.reported_at",
        )
        .bind(zone)
        .bind(report.edge.as_str())
        .bind(clamp(report.revision))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if self.backend() == Backend::Postgres {
            // The other replicas' cached statuses go stale at this commit.
            sqlx::query(sqlx::AssertSqlSafe(format!("NOTIFY {STATUS_CHANNEL}")))
                .execute(&mut *tx)
                .await?;
        }
        let committed = tx.commit().await;
        // Even when COMMIT reported an error: whether it took effect is then
        // unknown, and a cached status must not outlive it.
        self.status_changed();
        committed?;
        Ok(ReportOutcome { recorded, ignored })
    }

    /// Whether the edge applied the current policy of a server.
    pub async fn server_status(&self, customer: Option<i64>, id: i64) -> Result<ServerStatus> {
        self.read_through(
            &self.inner.caches.statuses,
            (customer, id),
            |st| {
                512 + st.name.len()
                    + st.reason.as_ref().map_or(0, String::len)
                    + 8 * st.firewalls.len()
                    + 96 * st.counters.len()
            },
            // One statement: a consistent snapshot without a transaction.
            async {
                let mut conn = self.pool().acquire().await?;
                status_of(&mut conn, id, customer).await
            },
        )
        .await
    }

    /// The apply status of every server a firewall applies to.
    pub async fn firewall_status(&self, customer: i64, id: i64) -> Result<FirewallApplyStatus> {
        let mut tx = self.begin_read().await?;
        let fw = fw_row(&mut tx, customer, id).await?;
        let mut servers = Vec::new();
        for s in effective_servers(&mut tx, &fw).await? {
            servers.push(status_of(&mut tx, s.id, None).await?);
        }
        tx.commit().await?;
        Ok(FirewallApplyStatus {
            firewall_id: fw.id,
            status: if fw.active {
                super::FirewallStatus::Active
            } else {
                super::FirewallStatus::Inactive
            },
            revision: fw.revision as u64,
            servers,
        })
    }

    /// Forgets server removals older than `max_age_ms`; edges further behind
    /// than the newest forgotten removal get a snapshot instead of a delta.
    pub async fn prune_tombstones(&self, max_age_ms: i64) -> Result<u64> {
        let (mut tx, _guard) = self.begin_status_write().await?;
        let cutoff = now_ms() - max_age_ms;
        let newest: Option<i64> =
            sqlx::query("SELECT MAX(revision) FROM server_tombstones WHERE at < $1")
                .bind(cutoff)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        let Some(newest) = newest else { return Ok(0) };
        let done = sqlx::query("DELETE FROM server_tombstones WHERE revision <= $1")
            .bind(newest)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE meta SET bridge_from = $1 WHERE id = 1 AND bridge_from < $1")
            .bind(newest)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
