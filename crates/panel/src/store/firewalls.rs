//! Firewalls, their rules and their assignments.
//!
//! Every method here takes the customer id and treats another customer's
//! firewall or server as not found. Mutations take `expect`, the revision from
//! the client's `If-Match` (None: unconditional), and fail with
//! [`StoreError::Precondition`] when the firewall moved on.

use super::labels::check_name;
use super::servers::{customer_servers, load_server, server_from, SERVER_COLUMNS};
use super::{
    corrupt, json_column, rfc3339, stored_selector, Actor, AssignOutcome, Backend, Firewall,
    FirewallRule, FirewallStatus, FirewallSummary, Page, PageRequest, Result, Selector,
    SelectorRecord, Server, SkippedServer, Store, StoreError, WriteScope, WriteTx,
    MAX_RULES_PER_FIREWALL, MAX_SERVERS_PER_SELECTOR, MAX_SERVER_IDS_PER_REQUEST,
    MAX_SOURCES_PER_FIREWALL,
};
use model::network::{NetworkProtocol, NetworkRule};
use model::PortRange;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

/// Longest firewall description.
pub const MAX_FIREWALL_DESCRIPTION: usize = 1000;

/// The firewall row without rules.
#[derive(Debug, Clone)]
pub(crate) struct FwRow {
    pub id: i64,
    pub customer_id: i64,
    pub name: String,
    pub description: String,
    pub active: bool,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

fn fw_from(r: &AnyRow) -> Result<FwRow> {
    Ok(FwRow {
        id: r.try_get("id")?,
        customer_id: r.try_get("customer_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        active: r.try_get::<i64, _>("active")? != 0,
        revision: r.try_get("revision")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn status_of(active: bool) -> FirewallStatus {
    if active {
        FirewallStatus::Active
    } else {
        FirewallStatus::Inactive
    }
}

/// Decodes a stored protocol: exactly one of the spellings
/// [`NetworkProtocol::as_str`] writes. Anything else is corrupt data and an
/// error, never [`NetworkProtocol::Any`] (which would widen the rule).
fn protocol_from(rule: i64, s: &str) -> Result<NetworkProtocol> {
    [
        NetworkProtocol::Tcp,
        NetworkProtocol::Udp,
        NetworkProtocol::Icmp,
        NetworkProtocol::Any,
    ]
    .into_iter()
    .find(|p| p.as_str() == s)
    .ok_or_else(|| corrupt(format!("rule {rule}"), "protocol", s))
}

/// A stored rule's columns: `id, protocol, port_start, port_end, sources,
/// description, enabled`.
type RuleParts = (i64, String, Option<i64>, Option<i64>, String, String, i64);

/// Decodes a stored rule. Fails closed: a protocol, port or source that does
/// not decode is an error for the whole read (the edge keeps its last good
/// policy), never a wider rule (`any`, every port, "from anywhere").
fn rule_from_parts(
    (id, protocol, start, end, sources, description, enabled): RuleParts,
) -> Result<(i64, NetworkRule)> {
    let port = |v: i64| {
        u16::try_from(v).map_err(|_| corrupt(format!("rule {id}"), "port", &v.to_string()))
    };
    let ports = match (start, end) {
        (None, None) => None,
        (Some(s), Some(e)) if port(s)? <= port(e)? => Some(PortRange {
            start: port(s)?,
            end: port(e)?,
        }),
        (s, e) => {
            return Err(corrupt(
                format!("rule {id}"),
                "port_start/port_end",
                &format!("{s:?}/{e:?}"),
            ))
        }
    };
    let sources = sources
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| corrupt(format!("rule {id}"), "sources", s))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((
        id,
        NetworkRule {
            protocol: protocol_from(id, &protocol)?,
            ports,
            sources,
            description,
            enabled: enabled != 0,
        },
    ))
}

/// Decodes a stored rule row (`id, protocol, port_start, port_end, sources,
/// description, enabled`).
pub(crate) fn rule_from(r: &AnyRow) -> Result<(i64, NetworkRule)> {
    rule_from_parts((
        r.try_get("id")?,
        r.try_get("protocol")?,
        r.try_get("port_start")?,
        r.try_get("port_end")?,
        r.try_get("sources")?,
        r.try_get("description")?,
        r.try_get("enabled")?,
    ))
}

pub(crate) const RULE_COLUMNS: &str =
    "id, firewall_id, protocol, port_start, port_end, sources, description, enabled";

pub(crate) async fn fw_row(conn: &mut AnyConnection, customer: i64, id: i64) -> Result<FwRow> {
    let row = sqlx::query(
        "SELECT id, customer_id, name, description, active, revision, created_at, updated_at FROM firewalls WHERE id = $1 AND customer_id = $2",
    )
    .bind(id)
    .bind(customer)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("firewall {id}")))?;
    fw_from(&row)
}

async fn fw_rules(conn: &mut AnyConnection, id: i64) -> Result<Vec<(i64, NetworkRule)>> {
    let sql =
        format!("SELECT {RULE_COLUMNS} FROM rules WHERE firewall_id = $1 ORDER BY position, id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(rule_from).collect()
}

async fn fw_selectors(conn: &mut AnyConnection, id: i64) -> Result<Vec<SelectorRecord>> {
    let rows = sqlx::query("SELECT id, selector FROM selectors WHERE firewall_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SelectorRecord {
                id: r.try_get("id")?,
                selector: r.try_get("selector")?,
            })
        })
        .collect()
}

/// The statement of [`load_firewall`]: the firewall row with its rules,
/// assigned servers and selectors as JSON arrays, so that a firewall is one
/// round trip and one snapshot (no transaction needed on either backend).
fn load_firewall_sql(backend: Backend) -> &'static str {
    static SQLITE: OnceLock<String> = OnceLock::new();
    static POSTGRES: OnceLock<String> = OnceLock::new();
    let cell = match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    };
    cell.get_or_init(|| {
        let b = backend;
        let rule = b.json_array(&[
            "r.id",
            "r.protocol",
            "r.port_start",
            "r.port_end",
            "r.sources",
            "r.description",
            "r.enabled",
        ]);
        format!(
            "SELECT f.id, f.customer_id, f.name, f.description, f.active, f.revision, f.created_at, f.updated_at, \
             (SELECT {} FROM rules r WHERE r.firewall_id = f.id) AS rules_json, \
             (SELECT {} FROM assignments a WHERE a.firewall_id = f.id) AS servers_json, \
             (SELECT {} FROM selectors s WHERE s.firewall_id = f.id) AS selectors_json \
             FROM firewalls f WHERE f.id = $1 AND f.customer_id = $2",
            b.json_agg(&rule, "r.position, r.id"),
            b.json_agg("a.server_id", "a.server_id"),
            b.json_agg(&b.json_array(&["s.id", "s.selector"]), "s.id"),
        )
    })
}

/// The full firewall as the API shows it, in one statement.
pub(crate) async fn load_firewall(
    conn: &mut AnyConnection,
    customer: i64,
    id: i64,
) -> Result<Firewall> {
    let row = sqlx::query(load_firewall_sql(Backend::of(conn)))
        .bind(id)
        .bind(customer)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("firewall {id}")))?;
    let f = fw_from(&row)?;
    let rules: Vec<RuleParts> = json_column(&row, "rules_json")?;
    let servers: Vec<i64> = json_column(&row, "servers_json")?;
    let selectors: Vec<(i64, String)> = json_column(&row, "selectors_json")?;
    Ok(Firewall {
        id: f.id,
        customer_id: f.customer_id,
        name: f.name,
        description: f.description,
        status: status_of(f.active),
        revision: f.revision as u64,
        rules: rules
            .into_iter()
            .map(|p| {
                let (id, r) = rule_from_parts(p)?;
                Ok(FirewallRule::new(id, &r))
            })
            .collect::<Result<_>>()?,
        servers,
        selectors: selectors
            .into_iter()
            .map(|(id, selector)| SelectorRecord { id, selector })
            .collect(),
        created_at: rfc3339(f.created_at),
        updated_at: rfc3339(f.updated_at),
    })
}

/// The servers a firewall applies to: assigned by id, or a VPS/VDS of its
/// customer matching one of its selectors.
pub(crate) async fn effective_servers(conn: &mut AnyConnection, fw: &FwRow) -> Result<Vec<Server>> {
    let sql = format!(
        "SELECT {} FROM servers s JOIN assignments a ON a.server_id = s.id WHERE a.firewall_id = $1",
        SERVER_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ")
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(fw.id)
        .fetch_all(&mut *conn)
        .await?;
    let mut out: BTreeMap<i64, Server> = BTreeMap::new();
    for r in &rows {
        let s = server_from(r)?;
        out.insert(s.id, s);
    }
    let selectors: Vec<Selector> = fw_selectors(conn, fw.id)
        .await?
        .iter()
        .map(|s| stored_selector(format!("selector {}", s.id), &s.selector))
        .collect::<Result<_>>()?;
    if !selectors.is_empty() {
        for s in customer_servers(conn, fw.customer_id).await? {
            if s.kind.supports_firewall() && selectors.iter().any(|sel| sel.matches(&s.labels)) {
                out.insert(s.id, s);
            }
        }
    }
    Ok(out.into_values().collect())
}

fn check_expect(row: &FwRow, expect: Option<u64>) -> Result<()> {
    match expect {
        Some(e) if e != row.revision as u64 => Err(StoreError::Precondition {
            current: row.revision as u64,
            what: "firewall",
        }),
        _ => Ok(()),
    }
}

/// Re-publishes the policy of every server the firewall applies to.
async fn bump_effective(tx: &mut WriteTx, fw: &FwRow) -> Result<()> {
    let ids: Vec<i64> = effective_servers(tx.conn(), fw)
        .await?
        .iter()
        .map(|s| s.id)
        .collect();
    tx.publish_servers(&ids);
    Ok(())
}

/// A description of at most `max` bytes without control characters (but
/// newlines): a firewall's, a list's.
pub(super) fn check_description(d: &str, max: usize) -> Result<()> {
    if d.len() > max || d.chars().any(|c| c.is_control() && c != '\n') {
        return Err(StoreError::invalid(
            "description",
            format!("at most {max} bytes, no control characters"),
        ));
    }
    Ok(())
}

/// Checks rules against the model and the firewall limits. `field` prefixes
/// field names (`rules[3].`).
fn check_rules(rules: &[NetworkRule], field: impl Fn(usize) -> String) -> Result<()> {
    if rules.len() > MAX_RULES_PER_FIREWALL {
        return Err(StoreError::Limit {
            field: "rules".into(),
            message: format!(
                "a firewall holds at most {MAX_RULES_PER_FIREWALL} rules; this would make {}",
                rules.len()
            ),
        });
    }
    let sources: usize = rules.iter().map(|r| r.sources.len()).sum();
    if sources > MAX_SOURCES_PER_FIREWALL {
        return Err(StoreError::Limit {
            field: "sources".into(),
            message: format!(
                "the rules of a firewall name at most {MAX_SOURCES_PER_FIREWALL} source networks together; this would make {sources}"
            ),
        });
    }
    for (i, r) in rules.iter().enumerate() {
        r.validate().map_err(|e| {
            let name = if e.field == "ports" {
                "port".to_string()
            } else {
                e.field.clone()
            };
            StoreError::invalid(format!("{}{name}", field(i)), e.message)
        })?;
    }
    Ok(())
}

/// Inserts rules at the given positions; `Some(id)` keeps a rule's id.
async fn insert_rules(
    conn: &mut AnyConnection,
    fw: i64,
    rules: &[(Option<i64>, i64, &NetworkRule)],
) -> Result<()> {
    for keep_ids in [true, false] {
        let batch: Vec<_> = rules
            .iter()
            .filter(|(id, _, _)| id.is_some() == keep_ids)
            .collect();
        for chunk in batch.chunks(400) {
            let cols = if keep_ids { 10 } else { 9 };
            let mut sql = String::from(if keep_ids {
                "INSERT INTO rules (id, firewall_id, position, protocol, port_start, port_end, sources, source_count, description, enabled) VALUES "
            } else {
                "INSERT INTO rules (firewall_id, position, protocol, port_start, port_end, sources, source_count, description, enabled) VALUES "
            });
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                for c in 0..cols {
                    if c > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("${}", i * cols + c + 1));
                }
                sql.push(')');
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, position, rule) in chunk.iter() {
                if let Some(id) = id {
                    q = q.bind(*id);
                }
                q = q
                    .bind(fw)
                    .bind(*position)
                    .bind(rule.protocol.as_str())
                    .bind(rule.ports.map(|p| p.start as i64))
                    .bind(rule.ports.map(|p| p.end as i64))
                    .bind(
                        rule.sources
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                    )
                    .bind(rule.sources.len() as i64)
                    .bind(rule.description.as_str())
                    .bind(rule.enabled as i64);
            }
            q.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// A rule's content, to keep ids stable across a whole-list replace.
fn rule_key(r: &NetworkRule) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

impl Store {
    async fn fw_for_change(
        &self,
        tx: &mut WriteTx,
        customer: i64,
        id: i64,
        expect: Option<u64>,
    ) -> Result<FwRow> {
        let row = fw_row(tx.conn(), customer, id).await?;
        check_expect(&row, expect)?;
        Ok(row)
    }

    /// Creates a firewall, inactive until enabled, with optional rules.
    pub async fn create_firewall(
        &self,
        actor: &Actor,
        customer: i64,
        name: &str,
        description: &str,
        rules: &[NetworkRule],
    ) -> Result<Firewall> {
        check_name("name", name)?;
        check_description(description, MAX_FIREWALL_DESCRIPTION)?;
        check_rules(rules, |i| format!("rules[{i}]."))?;
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let taken = sqlx::query("SELECT id FROM firewalls WHERE customer_id = $1 AND name = $2")
            .bind(customer)
            .bind(name)
            .fetch_optional(tx.conn())
            .await?;
        if taken.is_some() {
            return Err(StoreError::conflict(
                Some("name"),
                format!("you already have a firewall named '{name}'"),
            ));
        }
        // Revision 0 until the commit stamps the firewall with its revision.
        let id: i64 = sqlx::query(
            "INSERT INTO firewalls (customer_id, name, description, active, revision, created_at, updated_at) VALUES ($1, $2, $3, 0, 0, $4, $4) RETURNING id",
        )
        .bind(customer)
        .bind(name)
        .bind(description)
        .bind(tx.now)
        .fetch_one(tx.conn())
        .await?
        .try_get(0)?;
        let positioned: Vec<_> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (None, i as i64, r))
            .collect();
        insert_rules(tx.conn(), id, &positioned).await?;
        tx.touch_firewall(id);
        tx.audit(
            actor,
            Some(customer),
            "firewall.create",
            &format!("firewall/{id}"),
            json!({"name": name, "rules": rules.len()}),
        );
        let fw = load_firewall(tx.conn(), customer, id).await?;
        tx.commit_firewall(fw).await
    }

    /// The customer's firewalls, by id.
    pub async fn list_firewalls(
        &self,
        customer: i64,
        page: PageRequest,
    ) -> Result<Page<FirewallSummary>> {
        self.read_through(
            &self.inner.caches.firewall_pages,
            (customer, page.cursor, page.limit),
            |out| {
                256 + out
                    .items
                    .iter()
                    .map(|f| 256 + f.name.len() + f.description.len())
                    .sum::<usize>()
            },
            self.read_firewall_page(customer, page),
        )
        .await
    }

    async fn read_firewall_page(
        &self,
        customer: i64,
        page: PageRequest,
    ) -> Result<Page<FirewallSummary>> {
        let rows = sqlx::query(
            "SELECT f.id, f.customer_id, f.name, f.description, f.active, f.revision, f.created_at, f.updated_at, \
             (SELECT COUNT(*) FROM rules r WHERE r.firewall_id = f.id) AS rule_count \
             FROM firewalls f WHERE f.customer_id = $1 AND f.id > $2 ORDER BY f.id LIMIT $3",
        )
        .bind(customer)
        .bind(page.cursor.unwrap_or(0))
        .bind(page.limit as i64 + 1)
        .fetch_all(self.pool())
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                let f = fw_from(r)?;
                Ok(FirewallSummary {
                    id: f.id,
                    customer_id: f.customer_id,
                    name: f.name,
                    description: f.description,
                    status: status_of(f.active),
                    revision: f.revision as u64,
                    rule_count: r.try_get::<i64, _>("rule_count")? as u64,
                    created_at: rfc3339(f.created_at),
                    updated_at: rfc3339(f.updated_at),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |f| f.id))
    }

    /// One firewall with its rules and assignments.
    pub async fn firewall(&self, customer: i64, id: i64) -> Result<Firewall> {
        self.read_through(
            &self.inner.caches.firewalls,
            (customer, id),
            |fw| {
                512 + fw
                    .rules
                    .iter()
                    .map(|r| 160 + r.description.len() + 64 * r.sources.len())
                    .sum::<usize>()
                    + 8 * fw.servers.len()
                    + fw.selectors
                        .iter()
                        .map(|s| 64 + s.selector.len())
                        .sum::<usize>()
            },
            // One statement: a consistent snapshot without a transaction.
            async {
                let mut conn = self.pool().acquire().await?;
                load_firewall(&mut conn, customer, id).await
            },
        )
        .await
    }

    /// Renames a firewall or changes its description.
    pub async fn update_firewall(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        expect: Option<u64>,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Firewall> {
        if let Some(n) = name {
            check_name("name", n)?;
        }
        if let Some(d) = description {
            check_description(d, MAX_FIREWALL_DESCRIPTION)?;
        }
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let row = self.fw_for_change(&mut tx, customer, id, expect).await?;
        if let Some(n) = name {
            let taken = sqlx::query(
                "SELECT id FROM firewalls WHERE customer_id = $1 AND name = $2 AND id <> $3",
            )
            .bind(customer)
            .bind(n)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?;
            if taken.is_some() {
                return Err(StoreError::conflict(
                    Some("name"),
                    format!("you already have a firewall named '{n}'"),
                ));
            }
        }
        sqlx::query("UPDATE firewalls SET name = $1, description = $2 WHERE id = $3")
            .bind(name.unwrap_or(&row.name))
            .bind(description.unwrap_or(&row.description))
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.touch_firewall(id);
        tx.audit(
            actor,
            Some(customer),
            "firewall.update",
            &format!("firewall/{id}"),
            json!({"name": name, "description": description}),
        );
        let fw = load_firewall(tx.conn(), customer, id).await?;
        tx.commit_firewall(fw).await
    }

    /// Deletes a firewall; the servers it applied to lose its rules.
    pub async fn delete_firewall(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        expect: Option<u64>,
    ) -> Result<()> {
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let row = self.fw_for_change(&mut tx, customer, id, expect).await?;
        if row.active {
            bump_effective(&mut tx, &row).await?;
        }
        sqlx::query("DELETE FROM firewalls WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.audit(
            actor,
            Some(customer),
            "firewall.delete",
            &format!("firewall/{id}"),
            json!({"name": row.name}),
        );
        tx.commit().await?;
        Ok(())
    }

    /// Enables (active) or disables a firewall. Enabling an active firewall
    /// changes nothing and does not advance the revision.
    pub async fn set_firewall_active(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        expect: Option<u64>,
        active: bool,
    ) -> Result<Firewall> {
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let row = self.fw_for_change(&mut tx, customer, id, expect).await?;
        if row.active == active {
            let fw = load_firewall(tx.conn(), customer, id).await?;
            drop(tx);
            return Ok(fw);
        }
        sqlx::query("UPDATE firewalls SET active = $1 WHERE id = $2")
            .bind(active as i64)
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.touch_firewall(id);
        bump_effective(&mut tx, &row).await?;
        let action = if active {
            "firewall.enable"
        } else {
            "firewall.disable"
        };
        tx.audit(
            actor,
            Some(customer),
            action,
            &format!("firewall/{id}"),
            json!({}),
        );
        let fw = load_firewall(tx.conn(), customer, id).await?;
        tx.commit_firewall(fw).await
    }

    async fn rule_totals(
        conn: &mut AnyConnection,
        fw: i64,
        except_rule: Option<i64>,
    ) -> Result<(usize, usize)> {
        let row = sqlx::query("SELECT COUNT(*) AS n, CAST(COALESCE(SUM(source_count), 0) AS BIGINT) AS s FROM rules WHERE firewall_id = $1 AND id <> $2")
            .bind(fw)
            .bind(except_rule.unwrap_or(-1))
            .fetch_one(conn)
            .await?;
        Ok((
            row.try_get::<i64, _>("n")? as usize,
            row.try_get::<i64, _>("s")? as usize,
        ))
    }

    async fn after_rule_change(
        tx: &mut WriteTx,
        actor: &Actor,
        row: &FwRow,
        customer: i64,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        tx.touch_firewall(row.id);
        if row.active {
            bump_effective(tx, row).await?;
        }
        tx.audit(
            actor,
            Some(customer),
            action,
            &format!("firewall/{}", row.id),
            detail,
        );
        Ok(())
    }

    /// Appends a rule. Returns the firewall and the new rule's id.
    pub async fn add_rule(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        expect: Option<u64>,
        rule: &NetworkRule,
    ) -> Result<(Firewall, i64)> {
        check_rules(std::slice::from_ref(rule), |_| String::new())?;
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let row = self.fw_for_change(&mut tx, customer, id, expect).await?;
        let (count, sources) = Self::rule_totals(tx.conn(), id, None).await?;
        check_limits(count + 1, sources + rule.sources.len())?;
        let position: i64 =
            sqlx::query("SELECT COALESCE(MAX(position), -1) + 1 FROM rules WHERE firewall_id = $1")
                .bind(id)
                .fetch_one(tx.conn())
                .await?
                .try_get(0)?;
        insert_rules(tx.conn(), id, &[(None, position, rule)]).await?;
        let rule_id: i64 = sqlx::query("SELECT MAX(id) FROM rules WHERE firewall_id = $1")
            .bind(id)
            .fetch_one(tx.conn())
            .await?
            .try_get(0)?;
        Self::after_rule_change(
            &mut tx,
            actor,
            &row,
            customer,
            "rule.create",
            json!({"rule_id": rule_id, "rule": rule}),
        )
        .await?;
        let fw = load_firewall(tx.conn(), customer, id).await?;
        Ok((tx.commit_firewall(fw).await?, rule_id))
    }

    /// Edits one rule: `edit` gets the current rule and returns the new one,
    /// inside the transaction, so concurrent edits cannot interleave.
    pub async fn update_rule(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        rule_id: i64,
        expect: Option<u64>,
        edit: impl FnOnce(NetworkRule) -> Result<NetworkRule>,
    ) -> Result<Firewall> {
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let row = self.fw_for_change(&mut tx, customer, id, expect).await?;
        let sql = format!("SELECT {RULE_COLUMNS} FROM rules WHERE id = $1 AND firewall_id = $2");
        let current = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(rule_id)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("rule {rule_id} of firewall {id}")))?;
        let (_, before) = rule_from(&current)?;
        let after = edit(before.clone())?;
        check_rules(std::slice::from_ref(&after), |_| String::new())?;
        let (count, sources) = Self::rule_totals(tx.conn(), id, Some(rule_id)).await?;
        check_limits(count + 1, sources + after.sources.len())?;
        if after == before {
            let fw = load_firewall(tx.conn(), customer, id).await?;
            return Ok(fw);
        }
        sqlx::query(
            "UPDATE rules SET protocol = $1, port_start = $2, port_end = $3, sources = $4, source_count = $5, description = $6, enabled = $7 WHERE id = $8",
        )
        .bind(after.protocol.as_str())
        .bind(after.ports.map(|p| p.start as i64))
        .bind(after.ports.map(|p| p.end as i64))
        .bind(after.sources.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
        .bind(after.sources.len() as i64)
        .bind(after.description.as_str())
        .bind(after.enabled as i64)
        .bind(rule_id)
        .execute(tx.conn())
        .await?;
        Self::after_rule_change(
            &mut tx,
            actor,
            &row,
            customer,
            "rule.update",
            json!({"rule_id": rule_id, "before": before, "after": after}),
        )
        .await?;
        let fw = load_firewall(tx.conn(), customer, id).await?;
        tx.commit_firewall(fw).await
    }

    /// Deletes one rule.
    pub async fn delete_rule(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        rule_id: i64,
        expect: Option<u64>,
    ) -> Result<Firewall> {
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let row = self.fw_for_change(&mut tx, customer, id, expect).await?;
        let done = sqlx::query("DELETE FROM rules WHERE id = $1 AND firewall_id = $2")
            .bind(rule_id)
            .bind(id)
            .execute(tx.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "rule {rule_id} of firewall {id}"
            )));
        }
        Self::after_rule_change(
            &mut tx,
            actor,
            &row,
            customer,
            "rule.delete",
            json!({"rule_id": rule_id}),
        )
        .await?;
        let fw = load_firewall(tx.conn(), customer, id).await?;
        tx.commit_firewall(fw).await
    }

    /// Replaces the whole rule list. Idempotent: rules equal to existing ones
    /// keep their ids, and a list equal to the current one changes nothing
    /// (no revision, no audit entry). Returns the firewall and whether it
    /// changed.
    pub async fn replace_rules(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        expect: Option<u64>,
        rules: &[NetworkRule],
    ) -> Result<(Firewall, bool)> {
        check_rules(rules, |i| format!("rules[{i}]."))?;
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let row = self.fw_for_change(&mut tx, customer, id, expect).await?;
        let existing = fw_rules(tx.conn(), id).await?;
        if existing.len() == rules.len() && existing.iter().zip(rules).all(|((_, a), b)| a == b) {
            let fw = load_firewall(tx.conn(), customer, id).await?;
            return Ok((fw, false));
        }
        let mut pool: HashMap<String, Vec<i64>> = HashMap::new();
        for (rid, r) in existing.iter().rev() {
            pool.entry(rule_key(r)).or_default().push(*rid);
        }
        let positioned: Vec<(Option<i64>, i64, &NetworkRule)> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (pool.get_mut(&rule_key(r)).and_then(Vec::pop), i as i64, r))
            .collect();
        sqlx::query("DELETE FROM rules WHERE firewall_id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        insert_rules(tx.conn(), id, &positioned).await?;
        Self::after_rule_change(
            &mut tx,
            actor,
            &row,
            customer,
            "rules.replace",
            json!({"before": existing.len(), "after": rules.len()}),
        )
        .await?;
        let fw = load_firewall(tx.conn(), customer, id).await?;
        Ok((tx.commit_firewall(fw).await?, true))
    }

    /// Assigns servers by id. A Dedicated server refuses the whole request
    /// (409); another customer's server is not found (404).
    pub async fn assign_servers(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        expect: Option<u64>,
        server_ids: &[i64],
    ) -> Result<AssignOutcome> {
        if server_ids.is_empty() {
            return Err(StoreError::invalid(
                "server_ids",
                "name at least one server",
            ));
        }
        if server_ids.len() > MAX_SERVER_IDS_PER_REQUEST {
            return Err(StoreError::Limit {
                field: "server_ids".into(),
                message: format!(
                    "one request assigns at most {MAX_SERVER_IDS_PER_REQUEST} servers by id; this names {}",
                    server_ids.len()
                ),
            });
        }
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let row = self.fw_for_change(&mut tx, customer, id, expect).await?;
        let mut new = Vec::new();
        for (i, sid) in server_ids.iter().enumerate() {
            let field = if server_ids.len() == 1 {
                "server_id".to_string()
            } else {
                format!("server_ids[{i}]")
            };
            let server =
                load_server(tx.conn(), *sid, Some(customer))
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound(m) => StoreError::NotFound(m),
                        other => other,
                    })?;
            if !server.kind.supports_firewall() {
                return Err(StoreError::conflict(
                    Some(&field),
                    format!(
                        "server {} ('{}') is a Dedicated server: network firewalls are available for VPS and VDS only; use the server's OS firewall instead",
                        server.id, server.name
                    ),
                ));
            }
            let exists =
                sqlx::query("SELECT 1 FROM assignments WHERE firewall_id = $1 AND server_id = $2")
                    .bind(id)
                    .bind(sid)
                    .fetch_optional(tx.conn())
                    .await?;
            if exists.is_none() && !new.contains(sid) {
                new.push(*sid);
            }
        }
        if new.is_empty() {
            let fw = load_firewall(tx.conn(), customer, id).await?;
            return Ok(AssignOutcome {
                firewall: fw,
                assigned: vec![],
                skipped: vec![],
            });
        }
        for sid in &new {
            sqlx::query(
                "INSERT INTO assignments (firewall_id, server_id, created_at) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(sid)
            .bind(tx.now)
            .execute(tx.conn())
            .await?;
        }
        if row.active {
            tx.publish_servers(&new);
        }
        tx.touch_firewall(id);
        tx.audit(
            actor,
            Some(customer),
            "assignment.create",
            &format!("firewall/{id}"),
            json!({"server_ids": new}),
        );
        let fw = load_firewall(tx.conn(), customer, id).await?;
        Ok(AssignOutcome {
            firewall: tx.commit_firewall(fw).await?,
            assigned: new,
            skipped: vec![],
        })
    }

    /// Stores a label selector on the firewall: every VPS/VDS of the customer
    /// whose labels match, now or later, is assigned. Dedicated servers that
    /// match are skipped and listed.
    pub async fn assign_selector(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        expect: Option<u64>,
        selector: &str,
    ) -> Result<AssignOutcome> {
        let sel = Selector::parse(selector)?;
        let canonical = sel.to_string();
        // Bounded work before any lock: the selection as it stands now (the
        // same check runs again, exactly, inside the transaction).
        let now_selected = self.servers_matching(customer, &sel).await?.len();
        check_selected(now_selected)?;
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let row = self.fw_for_change(&mut tx, customer, id, expect).await?;
        let before: BTreeSet<i64> = effective_servers(tx.conn(), &row)
            .await?
            .iter()
            .map(|s| s.id)
            .collect();
        let matching: Vec<Server> = customer_servers(tx.conn(), customer)
            .await?
            .into_iter()
            .filter(|s| sel.matches(&s.labels))
            .collect();
        check_selected(matching.len())?;
        let skipped: Vec<SkippedServer> = matching
            .iter()
            .filter(|s| !s.kind.supports_firewall())
            .map(|s| SkippedServer { server_id: s.id, reason: format!("'{}' is a Dedicated server: network firewalls are available for VPS and VDS only", s.name) })
            .collect();
        let assigned: Vec<i64> = matching
            .iter()
            .filter(|s| s.kind.supports_firewall())
            .map(|s| s.id)
            .collect();
        let exists =
            sqlx::query("SELECT 1 FROM selectors WHERE firewall_id = $1 AND selector = $2")
                .bind(id)
                .bind(canonical.as_str())
                .fetch_optional(tx.conn())
                .await?;
        if exists.is_some() {
            let fw = load_firewall(tx.conn(), customer, id).await?;
            return Ok(AssignOutcome {
                firewall: fw,
                assigned,
                skipped,
            });
        }
        sqlx::query(
            "INSERT INTO selectors (firewall_id, selector, created_at) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(canonical.as_str())
        .bind(tx.now)
        .execute(tx.conn())
        .await?;
        if row.active {
            let newly: Vec<i64> = assigned
                .iter()
                .copied()
                .filter(|s| !before.contains(s))
                .collect();
            tx.publish_servers(&newly);
        }
        tx.touch_firewall(id);
        tx.audit(
            actor,
            Some(customer),
            "assignment.create",
            &format!("firewall/{id}"),
            json!({"selector": canonical, "matched": assigned}),
        );
        let fw = load_firewall(tx.conn(), customer, id).await?;
        Ok(AssignOutcome {
            firewall: tx.commit_firewall(fw).await?,
            assigned,
            skipped,
        })
    }

    /// Removes an assignment by server id.
    pub async fn unassign_server(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        server_id: i64,
        expect: Option<u64>,
    ) -> Result<Firewall> {
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let row = self.fw_for_change(&mut tx, customer, id, expect).await?;
        load_server(tx.conn(), server_id, Some(customer)).await?;
        let done = sqlx::query("DELETE FROM assignments WHERE firewall_id = $1 AND server_id = $2")
            .bind(id)
            .bind(server_id)
            .execute(tx.conn())
            .await?;
        if done.rows_affected() == 0 {
            let via_selector = effective_servers(tx.conn(), &row)
                .await?
                .iter()
                .any(|s| s.id == server_id);
            return Err(if via_selector {
                StoreError::conflict(Some("server_id"), format!("server {server_id} is assigned through a selector of firewall {id}: remove the selector or change the server's labels"))
            } else {
                StoreError::NotFound(format!("assignment of server {server_id} to firewall {id}"))
            });
        }
        if row.active {
            tx.publish_servers(&[server_id]);
        }
        tx.touch_firewall(id);
        tx.audit(
            actor,
            Some(customer),
            "assignment.delete",
            &format!("firewall/{id}"),
            json!({"server_id": server_id}),
        );
        let fw = load_firewall(tx.conn(), customer, id).await?;
        tx.commit_firewall(fw).await
    }

    /// Removes a stored selector.
    pub async fn remove_selector(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        selector_id: i64,
        expect: Option<u64>,
    ) -> Result<Firewall> {
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let row = self.fw_for_change(&mut tx, customer, id, expect).await?;
        let before: BTreeSet<i64> = effective_servers(tx.conn(), &row)
            .await?
            .iter()
            .map(|s| s.id)
            .collect();
        let sel = sqlx::query("SELECT selector FROM selectors WHERE id = $1 AND firewall_id = $2")
            .bind(selector_id)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("selector {selector_id} of firewall {id}"))
            })?;
        let text: String = sel.try_get(0)?;
        sqlx::query("DELETE FROM selectors WHERE id = $1")
            .bind(selector_id)
            .execute(tx.conn())
            .await?;
        if row.active {
            let after: BTreeSet<i64> = effective_servers(tx.conn(), &row)
                .await?
                .iter()
                .map(|s| s.id)
                .collect();
            let gone: Vec<i64> = before.difference(&after).copied().collect();
            tx.publish_servers(&gone);
        }
        tx.touch_firewall(id);
        tx.audit(
            actor,
            Some(customer),
            "assignment.delete",
            &format!("firewall/{id}"),
            json!({"selector": text}),
        );
        let fw = load_firewall(tx.conn(), customer, id).await?;
        tx.commit_firewall(fw).await
    }
}

/// A selector may select at most [`MAX_SERVERS_PER_SELECTOR`] servers.
fn check_selected(n: usize) -> Result<()> {
    if n > MAX_SERVERS_PER_SELECTOR {
        return Err(StoreError::Limit {
            field: "selector".into(),
            message: format!(
                "a selector selects at most {MAX_SERVERS_PER_SELECTOR} servers; this one selects {n}: narrow it with another label"
            ),
        });
    }
    Ok(())
}

fn check_limits(rules: usize, sources: usize) -> Result<()> {
    if rules > MAX_RULES_PER_FIREWALL {
        return Err(StoreError::Limit {
            field: "rules".into(),
            message: format!(
                "a firewall holds at most {MAX_RULES_PER_FIREWALL} rules; this would make {rules}"
            ),
        });
    }
    if sources > MAX_SOURCES_PER_FIREWALL {
        return Err(StoreError::Limit {
            field: "sources".into(),
            message: format!("the rules of a firewall name at most {MAX_SOURCES_PER_FIREWALL} source networks together; this would make {sources}"),
        });
    }
    Ok(())
}
