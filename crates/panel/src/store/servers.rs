//! Servers: registered by the provider, seen (and labelled) by their owner.

use super::customers::get_customer;
use super::labels::{check_name, check_zone, parse_labels};
use super::{
    corrupt, rfc3339, Actor, NewServer, Page, PageRequest, Result, Server, ServerKind, ServerPatch,
    Store, StoreError, WriteScope,
};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

pub(crate) const SERVER_COLUMNS: &str =
    "id, customer_id, name, kind, ipv4, ipv6, zone, labels, policy_revision, created_at";

fn join<T: ToString>(v: &[T]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Decodes a stored address list; one address that does not parse makes the
/// whole row corrupt (an error), never a server with an address missing.
fn split<T: std::str::FromStr>(id: i64, column: &str, s: &str) -> Result<Vec<T>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|_| corrupt(format!("server {id}"), column, p))
        })
        .collect()
}

/// Decodes a stored server row. Fails closed: an unknown kind, an address
/// or labels that do not decode are an error, never a Dedicated server, a
/// server without that address or without labels (each would take the
/// server out of its firewalls).
pub(crate) fn server_from(r: &AnyRow) -> Result<Server> {
    let id: i64 = r.try_get("id")?;
    let kind: String = r.try_get("kind")?;
    let labels: String = r.try_get("labels")?;
    Ok(Server {
        id,
        customer_id: r.try_get("customer_id")?,
        name: r.try_get("name")?,
        kind: ServerKind::parse(&kind)
            .ok_or_else(|| corrupt(format!("server {id}"), "kind", &kind))?,
        ipv4: split(id, "ipv4", &r.try_get::<String, _>("ipv4")?)?,
        ipv6: split(id, "ipv6", &r.try_get::<String, _>("ipv6")?)?,
        zone: r.try_get("zone")?,
        labels: serde_json::from_str(&labels)
            .map_err(|_| corrupt(format!("server {id}"), "labels", &labels))?,
        policy_revision: r.try_get::<i64, _>("policy_revision")? as u64,
        created_at: rfc3339(r.try_get("created_at")?),
    })
}

/// Loads a server; with `customer` set, another customer's server is NotFound.
pub(crate) async fn load_server(
    conn: &mut AnyConnection,
    id: i64,
    customer: Option<i64>,
) -> Result<Server> {
    let sql = format!("SELECT {SERVER_COLUMNS} FROM servers WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    match row {
        Some(r) => {
            let s = server_from(&r)?;
            if customer.is_some_and(|c| c != s.customer_id) {
                return Err(StoreError::NotFound(format!("server {id}")));
            }
            Ok(s)
        }
        None => Err(StoreError::NotFound(format!("server {id}"))),
    }
}

/// All servers of a customer.
pub(crate) async fn customer_servers(
    conn: &mut AnyConnection,
    customer: i64,
) -> Result<Vec<Server>> {
    let sql = format!("SELECT {SERVER_COLUMNS} FROM servers WHERE customer_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(customer)
        .fetch_all(conn)
        .await?;
    rows.iter().map(server_from).collect()
}

/// The customer of server `id` (a server never changes customer), to lock
/// before changing it; with `customer` set, another customer's server is
/// not found.
async fn server_owner(store: &Store, id: i64, customer: Option<i64>) -> Result<i64> {
    let row = sqlx::query("SELECT customer_id FROM servers WHERE id = $1")
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    match row {
        Some(r) => {
            let owner: i64 = r.try_get(0)?;
            if customer.is_some_and(|c| c != owner) {
                return Err(StoreError::NotFound(format!("server {id}")));
            }
            Ok(owner)
        }
        None => Err(StoreError::NotFound(format!("server {id}"))),
    }
}

/// A server as its audit entries show it: without `policy_revision`, which
/// the entry's own revision gives.
fn audit_detail(server: &Server) -> serde_json::Value {
    let mut v = json!(server);
    if let Some(o) = v.as_object_mut() {
        o.remove("policy_revision");
    }
    v
}

fn check_addresses(ipv4: &[Ipv4Addr], ipv6: &[Ipv6Addr]) -> Result<()> {
    for (i, a) in ipv4.iter().enumerate() {
        if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
            return Err(StoreError::invalid(
                format!("ipv4[{i}]"),
                format!("{a} cannot be a server address"),
            ));
        }
    }
    for (i, a) in ipv6.iter().enumerate() {
        if a.is_unspecified() || a.is_multicast() {
            return Err(StoreError::invalid(
                format!("ipv6[{i}]"),
                format!("{a} cannot be a server address"),
            ));
        }
    }
    if ipv4.len() + ipv6.len() > 256 {
        return Err(StoreError::invalid(
            "ipv4",
            "at most 256 addresses per server",
        ));
    }
    Ok(())
}

impl Store {
    /// Registers a server for a customer.
    pub async fn create_server(&self, actor: &Actor, new: &NewServer) -> Result<Server> {
        check_name("name", &new.name)?;
        check_zone("zone", &new.zone)?;
        check_addresses(&new.ipv4, &new.ipv6)?;
        parse_labels(&new.labels)?;
        let mut tx = self
            .begin_write(WriteScope::Customer(new.customer_id))
            .await?;
        get_customer(tx.conn(), new.customer_id)
            .await
            .map_err(|_| {
                StoreError::invalid(
                    "customer_id",
                    format!("customer {} does not exist", new.customer_id),
                )
            })?;
        // policy_revision 0 until the commit stamps it.
        let sql = format!(
            "INSERT INTO servers (customer_id, name, kind, ipv4, ipv6, zone, labels, policy_revision, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8) RETURNING {SERVER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(new.customer_id)
            .bind(new.name.as_str())
            .bind(new.kind.as_str())
            .bind(join(&new.ipv4))
            .bind(join(&new.ipv6))
            .bind(new.zone.as_str())
            .bind(serde_json::to_string(&new.labels).unwrap_or_default())
            .bind(tx.now)
            .fetch_one(tx.conn())
            .await?;
        let mut server = server_from(&row)?;
        tx.publish_servers(&[server.id]);
        tx.audit(
            actor,
            Some(server.customer_id),
            "server.create",
            &format!("server/{}", server.id),
            audit_detail(&server),
        );
        server.policy_revision = tx.commit().await?;
        Ok(server)
    }

    /// Lists servers by id: a customer's own (`customer` set) or all (admin,
    /// optionally filtered by `filter_customer`).
    pub async fn list_servers(
        &self,
        customer: Option<i64>,
        page: PageRequest,
    ) -> Result<Page<Server>> {
        let rows = match customer {
            Some(c) => {
                let sql = format!("SELECT {SERVER_COLUMNS} FROM servers WHERE customer_id = $1 AND id > $2 ORDER BY id LIMIT $3");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(c)
                    .bind(page.cursor.unwrap_or(0))
                    .bind(page.limit as i64 + 1)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {SERVER_COLUMNS} FROM servers WHERE id > $1 ORDER BY id LIMIT $2"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(page.cursor.unwrap_or(0))
                    .bind(page.limit as i64 + 1)
                    .fetch_all(self.pool())
                    .await?
            }
        };
        let items = rows.iter().map(server_from).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |s| s.id))
    }

    /// One server; `customer` set hides other customers' servers.
    pub async fn server(&self, customer: Option<i64>, id: i64) -> Result<Server> {
        let mut conn = self.pool().acquire().await?;
        load_server(&mut conn, id, customer).await
    }

    /// Changes a server. With `customer` set (a customer acting), only labels
    /// may change. Every change re-publishes the server's policy to its edge;
    /// a zone change also removes it from the old zone's edges.
    pub async fn update_server(
        &self,
        actor: &Actor,
        customer: Option<i64>,
        id: i64,
        patch: &ServerPatch,
    ) -> Result<Server> {
        if customer.is_some() {
            let denied = [
                ("name", patch.name.is_some()),
                ("type", patch.kind.is_some()),
                ("ipv4", patch.ipv4.is_some()),
                ("ipv6", patch.ipv6.is_some()),
                ("zone", patch.zone.is_some()),
            ];
            if let Some((field, _)) = denied.iter().find(|(_, set)| *set) {
                return Err(StoreError::Forbidden {
                    field: Some(field.to_string()),
                    message: format!("only the provider can change a server's {field}; customers may change labels"),
                });
            }
        }
        if let Some(n) = &patch.name {
            check_name("name", n)?;
        }
        if let Some(z) = &patch.zone {
            check_zone("zone", z)?;
        }
        check_addresses(
            patch.ipv4.as_deref().unwrap_or_default(),
            patch.ipv6.as_deref().unwrap_or_default(),
        )?;
        if let Some(l) = &patch.labels {
            parse_labels(l)?;
        }
        let owner = server_owner(self, id, customer).await?;
        let mut tx = self.begin_write(WriteScope::Customer(owner)).await?;
        let current = load_server(tx.conn(), id, customer).await?;
        let kind = patch.kind.unwrap_or(current.kind);
        if !kind.supports_firewall() && current.kind.supports_firewall() {
            let assigned: i64 =
                sqlx::query("SELECT COUNT(*) FROM assignments WHERE server_id = $1")
                    .bind(id)
                    .fetch_one(tx.conn())
                    .await?
                    .try_get(0)?;
            if assigned > 0 {
                return Err(StoreError::conflict(
                    Some("type"),
                    format!("server {id} has {assigned} firewall assignment(s); a Dedicated server cannot have network firewalls: unassign them first"),
                ));
            }
        }
        let zone = patch.zone.clone().unwrap_or_else(|| current.zone.clone());
        let labels: BTreeMap<String, String> = patch
            .labels
            .clone()
            .unwrap_or_else(|| current.labels.clone());
        sqlx::query("UPDATE servers SET name = $1, kind = $2, ipv4 = $3, ipv6 = $4, zone = $5, labels = $6 WHERE id = $7")
            .bind(patch.name.clone().unwrap_or_else(|| current.name.clone()))
            .bind(kind.as_str())
            .bind(join(patch.ipv4.as_deref().unwrap_or(&current.ipv4)))
            .bind(join(patch.ipv6.as_deref().unwrap_or(&current.ipv6)))
            .bind(zone.as_str())
            .bind(serde_json::to_string(&labels).unwrap_or_default())
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.publish_servers(&[id]);
        if zone != current.zone {
            tx.tombstone(id, &current.zone);
        }
        let mut updated = load_server(tx.conn(), id, None).await?;
        tx.audit(
            actor,
            Some(updated.customer_id),
            "server.update",
            &format!("server/{id}"),
            json!({"before": audit_detail(&current), "after": audit_detail(&updated)}),
        );
        updated.policy_revision = tx.commit().await?;
        Ok(updated)
    }

    /// Deletes a server: it disappears from its firewalls and, at the next
    /// sync, from its zone's edges.
    pub async fn delete_server(&self, actor: &Actor, id: i64) -> Result<()> {
        let owner = server_owner(self, id, None).await?;
        let mut tx = self.begin_write(WriteScope::Customer(owner)).await?;
        let current = load_server(tx.conn(), id, None).await?;
        // The firewalls that listed it change representation: new ETag.
        let listed: Vec<i64> =
            sqlx::query("SELECT firewall_id FROM assignments WHERE server_id = $1")
                .bind(id)
                .fetch_all(tx.conn())
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
        tx.retag_firewalls(&listed);
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.tombstone(id, &current.zone);
        tx.audit(
            actor,
            Some(current.customer_id),
            "server.delete",
            &format!("server/{id}"),
            audit_detail(&current),
        );
        tx.commit().await?;
        Ok(())
    }

    /// Servers of a customer whose labels match a selector (all types; the
    /// caller decides what to do with Dedicated ones).
    pub async fn servers_matching(
        &self,
        customer: i64,
        selector: &super::Selector,
    ) -> Result<Vec<Server>> {
        let mut conn = self.pool().acquire().await?;
        Ok(customer_servers(&mut conn, customer)
            .await?
            .into_iter()
            .filter(|s| selector.matches(&s.labels))
            .collect())
    }
}
