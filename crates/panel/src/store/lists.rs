//! Customer-owned IP lists: named sets of IPv4 and IPv6 addresses and
//! networks (blocklists, offices, partners), for rules to name later.
//!
//! Every method here takes the customer id and treats another customer's list
//! as not found. Changes take `expect`, the revision from the client's
//! `If-Match` (None: unconditional), and fail with
//! [`StoreError::Precondition`] when the list moved on; they advance the
//! global revision exactly as firewall writes do (the commit stamps the list's
//! revision, its ETag, with it), so edges can follow lists the same way.
//!
//! ## Storage
//!
//! A list's entries are one value: sorted, without duplicates, in a compact
//! binary form (per entry one byte for the family, 4 or 6, one for the prefix
//! length, then the network address), so 100,000 entries are one row of at
//! most 1.8 MB written in one statement, not 100,000 rows. `entry_count` and
//! `range_count` are kept beside it, so listing lists and checking a
//! customer's total never decode entries. Reading fails closed: bytes that do
//! not decode are an error, never a shorter (or longer) list.
//!
//! ## Limits
//!
//! [`MAX_ENTRIES_PER_LIST`], [`MAX_ENTRIES_PER_CUSTOMER`] over all of a
//! customer's lists, [`MAX_LISTS_PER_CUSTOMER`]. They are checked on a
//! snapshot before the write transaction begins (so a request over a limit
//! takes no lock), and again, exactly, inside it.

use super::{
    corrupt, rfc3339, Actor, IpList, IpListSummary, Page, PageRequest, Result, Store, StoreError,
    WriteScope,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use model::list::{Intervals, ListName};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Most entries one list may hold.
pub const MAX_ENTRIES_PER_LIST: usize = 100_000;
/// Most entries all lists of one customer may hold together.
pub const MAX_ENTRIES_PER_CUSTOMER: usize = 1_000_000;
/// Most lists one customer may have.
pub const MAX_LISTS_PER_CUSTOMER: usize = 100;
/// Longest list description, in bytes.
pub const MAX_LIST_DESCRIPTION: usize = 1000;

/// A change to a list's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryChange {
    /// The list holds exactly these afterwards.
    Replace(Vec<IpNet>),
    /// These are added (those already in the list change nothing).
    Add(Vec<IpNet>),
    /// These are removed (those not in the list change nothing).
    Remove(Vec<IpNet>),
}

impl EntryChange {
    fn nets(&self) -> &[IpNet] {
        match self {
            EntryChange::Replace(n) | EntryChange::Add(n) | EntryChange::Remove(n) => n,
        }
    }

    fn action(&self) -> &'static str {
        match self {
            EntryChange::Replace(_) => "list.entries.replace",
            EntryChange::Add(_) => "list.entries.add",
            EntryChange::Remove(_) => "list.entries.remove",
        }
    }

    /// The entries after the change, from the current (canonical) ones.
    fn apply(&self, current: &[IpNet]) -> Vec<IpNet> {
        match self {
            EntryChange::Replace(n) => canonical(n.clone()),
            EntryChange::Add(n) => canonical(current.iter().chain(n).copied().collect()),
            EntryChange::Remove(n) => {
                let gone: HashSet<&IpNet> = n.iter().collect();
                current
                    .iter()
                    .filter(|e| !gone.contains(e))
                    .copied()
                    .collect()
            }
        }
    }
}

/// Sorted (IPv4 first, then by address and prefix), without duplicates.
fn canonical(mut nets: Vec<IpNet>) -> Vec<IpNet> {
    nets.sort_unstable();
    nets.dedup();
    nets
}

/// How an entry is shown: an address alone for a single host, else the
/// network in CIDR notation (what [`model::parse_net`] reads back).
pub(crate) fn entry_text(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

/// Entries given to the store must be networks without host bits (what the
/// model's parser yields); the error names the entry by its index.
fn check_entries(nets: &[IpNet]) -> Result<()> {
    if nets.len() > MAX_ENTRIES_PER_LIST {
        return Err(StoreError::Limit {
            field: "entries".into(),
            message: format!(
                "a list holds at most {MAX_ENTRIES_PER_LIST} entries; this request names {}",
                nets.len()
            ),
        });
    }
    if let Some((i, n)) = nets.iter().enumerate().find(|(_, n)| n.trunc() != **n) {
        return Err(StoreError::invalid(
            format!("entries[{i}]"),
            format!("'{n}' has host bits set: did you mean {}?", n.trunc()),
        ));
    }
    Ok(())
}

/// The list and customer limits for a list that would hold `entries`, its
/// customer's other lists holding `others` together.
fn check_entry_limits(entries: usize, others: usize) -> Result<()> {
    if entries > MAX_ENTRIES_PER_LIST {
        return Err(StoreError::Limit {
            field: "entries".into(),
            message: format!(
                "a list holds at most {MAX_ENTRIES_PER_LIST} entries; this would make {entries}"
            ),
        });
    }
    if others + entries > MAX_ENTRIES_PER_CUSTOMER {
        return Err(StoreError::Limit {
            field: "entries".into(),
            message: format!(
                "your lists hold at most {MAX_ENTRIES_PER_CUSTOMER} entries together; this would make {}",
                others + entries
            ),
        });
    }
    Ok(())
}

fn check_list_count(lists: usize) -> Result<()> {
    if lists > MAX_LISTS_PER_CUSTOMER {
        return Err(StoreError::Limit {
            field: "name".into(),
            message: format!(
                "you can have at most {MAX_LISTS_PER_CUSTOMER} lists; delete one first"
            ),
        });
    }
    Ok(())
}

/// The stored form of canonical entries (see the module docs).
fn encode(nets: &[IpNet]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nets.len() * 6);
    for n in nets {
        match n {
            IpNet::V4(n) => {
                out.extend([4, n.prefix_len()]);
                out.extend(n.network().octets());
            }
            IpNet::V6(n) => {
                out.extend([6, n.prefix_len()]);
                out.extend(n.network().octets());
            }
        }
    }
    out
}

/// Decodes stored entries; anything but canonical entries is corrupt data.
fn decode(list: i64, bytes: &[u8]) -> Result<Vec<IpNet>> {
    let bad = |at: usize| {
        corrupt(
            format!("list {list}"),
            "entries",
            &format!("undecodable bytes at offset {at}"),
        )
    };
    let mut out = Vec::with_capacity(bytes.len() / 6);
    let mut at = 0;
    while at < bytes.len() {
        let net = match (bytes[at], bytes.get(at + 1).copied()) {
            (4, Some(len)) => {
                let octets: [u8; 4] = bytes
                    .get(at + 2..at + 6)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| bad(at))?;
                at += 6;
                Ipv4Net::new(Ipv4Addr::from(octets), len)
                    .map(IpNet::V4)
                    .map_err(|_| bad(at - 6))?
            }
            (6, Some(len)) => {
                let octets: [u8; 16] = bytes
                    .get(at + 2..at + 18)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| bad(at))?;
                at += 18;
                Ipv6Net::new(Ipv6Addr::from(octets), len)
                    .map(IpNet::V6)
                    .map_err(|_| bad(at - 18))?
            }
            _ => return Err(bad(at)),
        };
        if net.trunc() != net || out.last().is_some_and(|prev| *prev >= net) {
            return Err(bad(at));
        }
        out.push(net);
    }
    Ok(out)
}

const SUMMARY_COLUMNS: &str =
    "id, customer_id, name, description, entry_count, range_count, revision, created_at, updated_at";

fn summary_from(r: &AnyRow) -> Result<IpListSummary> {
    Ok(IpListSummary {
        id: r.try_get("id")?,
        customer_id: r.try_get("customer_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        entry_count: r.try_get::<i64, _>("entry_count")? as u64,
        range_count: r.try_get::<i64, _>("range_count")? as u64,
        revision: r.try_get::<i64, _>("revision")? as u64,
        created_at: rfc3339(r.try_get("created_at")?),
        updated_at: rfc3339(r.try_get("updated_at")?),
    })
}

/// The list with its entries as the API shows it.
fn full(s: IpListSummary, entries: &[IpNet]) -> IpList {
    let merged = Intervals::merge(entries.iter().copied());
    IpList {
        id: s.id,
        customer_id: s.customer_id,
        name: s.name,
        description: s.description,
        revision: s.revision,
        entries: entries.iter().map(entry_text).collect(),
        entry_count: merged.entries() as u64,
        range_count: merged.ranges().len() as u64,
        merged_away: merged.merged_away() as u64,
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}

/// The list row (404 for another customer's) and its decoded entries.
async fn load_list(
    conn: &mut AnyConnection,
    customer: i64,
    id: i64,
) -> Result<(IpListSummary, Vec<IpNet>)> {
    let sql =
        format!("SELECT {SUMMARY_COLUMNS}, entries FROM lists WHERE id = $1 AND customer_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(customer)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("list {id}")))?;
    let entries: Vec<u8> = row.try_get("entries")?;
    Ok((summary_from(&row)?, decode(id, &entries)?))
}

/// How many lists the customer has, and how many entries they hold together,
/// not counting list `except`.
async fn customer_totals(
    conn: &mut AnyConnection,
    customer: i64,
    except: Option<i64>,
) -> Result<(usize, usize)> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(entry_count), 0) AS BIGINT) AS e FROM lists WHERE customer_id = $1 AND id <> $2",
    )
    .bind(customer)
    .bind(except.unwrap_or(-1))
    .fetch_one(conn)
    .await?;
    Ok((
        row.try_get::<i64, _>("n")? as usize,
        row.try_get::<i64, _>("e")? as usize,
    ))
}

fn check_expect(s: &IpListSummary, expect: Option<u64>) -> Result<()> {
    match expect {
        Some(e) if e != s.revision => Err(StoreError::Precondition {
            current: s.revision,
            what: "list",
        }),
        _ => Ok(()),
    }
}

impl Store {
    /// Creates a list with its entries.
    pub async fn create_list(
        &self,
        actor: &Actor,
        customer: i64,
        name: &str,
        description: &str,
        entries: &[IpNet],
    ) -> Result<IpList> {
        let name = ListName::parse(name).map_err(|e| StoreError::invalid("name", e.to_string()))?;
        super::firewalls::check_description(description, MAX_LIST_DESCRIPTION)?;
        check_entries(entries)?;
        let entries = canonical(entries.to_vec());
        // Bounded work before any lock: the limits as they stand now (checked
        // again, exactly, inside the transaction).
        {
            let mut conn = self.pool().acquire().await?;
            let (lists, total) = customer_totals(&mut conn, customer, None).await?;
            check_list_count(lists + 1)?;
            check_entry_limits(entries.len(), total)?;
        }
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let taken = sqlx::query("SELECT id FROM lists WHERE customer_id = $1 AND name = $2")
            .bind(customer)
            .bind(name.as_str())
            .fetch_optional(tx.conn())
            .await?;
        if taken.is_some() {
            return Err(StoreError::conflict(
                Some("name"),
                format!("you already have a list named '{name}'"),
            ));
        }
        let (lists, total) = customer_totals(tx.conn(), customer, None).await?;
        check_list_count(lists + 1)?;
        check_entry_limits(entries.len(), total)?;
        let ranges = Intervals::merge(entries.iter().copied()).ranges().len();
        // Revision 0 until the commit stamps the list with its revision.
        let id: i64 = sqlx::query(
            "INSERT INTO lists (customer_id, name, description, entries, entry_count, range_count, revision, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) RETURNING id",
        )
        .bind(customer)
        .bind(name.as_str())
        .bind(description)
        .bind(encode(&entries))
        .bind(entries.len() as i64)
        .bind(ranges as i64)
        .bind(tx.now)
        .fetch_one(tx.conn())
        .await?
        .try_get(0)?;
        tx.touch_list(id);
        tx.audit(
            actor,
            Some(customer),
            "list.create",
            &format!("list/{id}"),
            json!({"name": name.as_str(), "entries": entries.len()}),
        );
        let now = tx.now;
        let revision = tx.commit().await?;
        Ok(full(
            IpListSummary {
                id,
                customer_id: customer,
                name: name.to_string(),
                description: description.to_string(),
                revision,
                entry_count: entries.len() as u64,
                range_count: ranges as u64,
                created_at: rfc3339(now),
                updated_at: rfc3339(now),
            },
            &entries,
        ))
    }

    /// The customer's lists, by id, without their entries.
    pub async fn list_lists(
        &self,
        customer: i64,
        page: PageRequest,
    ) -> Result<Page<IpListSummary>> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM lists WHERE customer_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(customer)
            .bind(page.cursor.unwrap_or(0))
            .bind(page.limit as i64 + 1)
            .fetch_all(self.pool())
            .await?;
        let items = rows.iter().map(summary_from).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |l| l.id))
    }

    /// One list with its entries.
    pub async fn ip_list(&self, customer: i64, id: i64) -> Result<IpList> {
        let mut conn = self.pool().acquire().await?;
        let (s, entries) = load_list(&mut conn, customer, id).await?;
        Ok(full(s, &entries))
    }

    /// The current revision of a list (its ETag), without its entries.
    pub async fn list_revision(&self, customer: i64, id: i64) -> Result<u64> {
        let row = sqlx::query("SELECT revision FROM lists WHERE id = $1 AND customer_id = $2")
            .bind(id)
            .bind(customer)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("list {id}")))?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    /// Replaces, adds or removes entries. A change that leaves the entries as
    /// they are changes nothing (no revision, no audit entry). Returns the
    /// list and whether it changed.
    pub async fn change_list_entries(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        expect: Option<u64>,
        change: EntryChange,
    ) -> Result<(IpList, bool)> {
        check_entries(change.nets())?;
        // Bounded work before any lock: the change planned on a snapshot,
        // refused there when it is over a limit (or the list is gone or
        // moved on); the same checks run again, exactly, inside the
        // transaction.
        {
            let mut conn = self.pool().acquire().await?;
            let (s, current) = load_list(&mut conn, customer, id).await?;
            check_expect(&s, expect)?;
            let next = change.apply(&current);
            if next.len() > current.len() {
                let (_, others) = customer_totals(&mut conn, customer, Some(id)).await?;
                check_entry_limits(next.len(), others)?;
            }
        }
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let (s, current) = load_list(tx.conn(), customer, id).await?;
        check_expect(&s, expect)?;
        let next = change.apply(&current);
        if next == current {
            return Ok((full(s, &current), false));
        }
        if next.len() > current.len() {
            let (_, others) = customer_totals(tx.conn(), customer, Some(id)).await?;
            check_entry_limits(next.len(), others)?;
        }
        let ranges = Intervals::merge(next.iter().copied()).ranges().len();
        sqlx::query(
            "UPDATE lists SET entries = $1, entry_count = $2, range_count = $3 WHERE id = $4",
        )
        .bind(encode(&next))
        .bind(next.len() as i64)
        .bind(ranges as i64)
        .bind(id)
        .execute(tx.conn())
        .await?;
        let before: HashSet<&IpNet> = current.iter().collect();
        let added = next.iter().filter(|n| !before.contains(n)).count();
        let removed = current.len() + added - next.len();
        tx.touch_list(id);
        tx.audit(
            actor,
            Some(customer),
            change.action(),
            &format!("list/{id}"),
            json!({"name": s.name, "before": current.len(), "after": next.len(), "added": added, "removed": removed}),
        );
        let now = tx.now;
        let revision = tx.commit().await?;
        let s = IpListSummary {
            revision,
            updated_at: rfc3339(now),
            entry_count: next.len() as u64,
            range_count: ranges as u64,
            ..s
        };
        Ok((full(s, &next), true))
    }

    /// Deletes a list.
    pub async fn delete_list(
        &self,
        actor: &Actor,
        customer: i64,
        id: i64,
        expect: Option<u64>,
    ) -> Result<()> {
        let mut tx = self.begin_write(WriteScope::Customer(customer)).await?;
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM lists WHERE id = $1 AND customer_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(customer)
            .fetch_optional(tx.conn())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("list {id}")))?;
        let s = summary_from(&row)?;
        check_expect(&s, expect)?;
        sqlx::query("DELETE FROM lists WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.audit(
            actor,
            Some(customer),
            "list.delete",
            &format!("list/{id}"),
            json!({"name": s.name, "entries": s.entry_count}),
        );
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|t| model::parse_net(t).unwrap()).collect()
    }

    #[test]
    fn entries_round_trip_through_their_stored_form() {
        let e = canonical(nets(&[
            "2001:db8::/32",
            "203.0.113.0/24",
            "198.51.100.7",
            "::1",
            "0.0.0.0/0",
            "203.0.113.0/24",
        ]));
        assert_eq!(e.len(), 5);
        let bytes = encode(&e);
        assert_eq!(bytes.len(), 3 * 6 + 2 * 18);
        assert_eq!(decode(1, &bytes).unwrap(), e);
        let shown: Vec<String> = e.iter().map(entry_text).collect();
        assert_eq!(
            shown,
            [
                "0.0.0.0/0",
                "198.51.100.7",
                "203.0.113.0/24",
                "::1",
                "2001:db8::/32"
            ]
        );
    }

    #[test]
    fn stored_entries_that_do_not_decode_are_an_error() {
        let good = encode(&nets(&["10.0.0.0/8", "10.1.0.0/16"]));
        for bad in [
            vec![5u8, 8, 10, 0, 0, 0],         // no such family
            vec![4, 33, 10, 0, 0, 0],          // prefix too long
            vec![4, 8, 10, 0, 0],              // truncated
            vec![4, 8, 10, 0, 0, 1],           // host bits
            [&good[6..], &good[..6]].concat(), // out of order
            [&good[..], &good[..6]].concat(),  // a duplicate
        ] {
            assert!(decode(7, &bad).is_err(), "{bad:?}");
        }
        assert!(decode(7, &[]).unwrap().is_empty());
    }

    #[test]
    fn changes_apply_as_sets() {
        let cur = canonical(nets(&["10.0.0.0/8", "192.0.2.1"]));
        assert_eq!(
            EntryChange::Add(nets(&["192.0.2.1", "2001:db8::/32"])).apply(&cur),
            nets(&["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"])
        );
        assert_eq!(
            EntryChange::Remove(nets(&["192.0.2.1", "192.0.2.2"])).apply(&cur),
            nets(&["10.0.0.0/8"])
        );
        assert_eq!(
            EntryChange::Replace(nets(&["192.0.2.9", "192.0.2.9"])).apply(&cur),
            nets(&["192.0.2.9"])
        );
    }

    #[test]
    fn limits_name_the_limit() {
        let e = check_entry_limits(MAX_ENTRIES_PER_LIST + 1, 0).unwrap_err();
        assert!(e.to_string().contains("100000"), "{e}");
        let e = check_entry_limits(10, MAX_ENTRIES_PER_CUSTOMER - 5).unwrap_err();
        assert!(e.to_string().contains("1000000"), "{e}");
        assert!(check_entry_limits(10, MAX_ENTRIES_PER_CUSTOMER - 10).is_ok());
    }
}
