//! Customers (provider operations).

use super::labels::check_name;
use super::{
    now_ms, rfc3339, Actor, Customer, Page, PageRequest, Result, Store, StoreError, WriteScope,
};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

fn customer_from(r: &AnyRow) -> Result<Customer> {
    Ok(Customer {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        created_at: rfc3339(r.try_get("created_at")?),
    })
}

fn check_email(email: &str) -> Result<()> {
    if !email.is_empty()
        && (email.len() > 254
            || !email.contains('@')
            || email.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(StoreError::invalid(
            "email",
            format!("'{email}' is not an e-mail address"),
        ));
    }
    Ok(())
}

pub(crate) async fn get_customer(conn: &mut AnyConnection, id: i64) -> Result<Customer> {
    let row = sqlx::query("SELECT id, name, email, created_at FROM customers WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("customer {id}")))?;
    customer_from(&row)
}

impl Store {
    /// Creates a customer; names are unique.
    pub async fn create_customer(
        &self,
        actor: &Actor,
        name: &str,
        email: &str,
    ) -> Result<Customer> {
        check_name("name", name)?;
        check_email(email)?;
        let mut tx = self.begin_write(WriteScope::Exclusive(None)).await?;
        let taken = sqlx::query("SELECT id FROM customers WHERE name = $1")
            .bind(name)
            .fetch_optional(tx.conn())
            .await?;
        if taken.is_some() {
            return Err(StoreError::conflict(
                Some("name"),
                format!("a customer named '{name}' exists"),
            ));
        }
        let row = sqlx::query("INSERT INTO customers (name, email, created_at) VALUES ($1, $2, $3) RETURNING id, name, email, created_at")
            .bind(name)
            .bind(email)
            .bind(now_ms())
            .fetch_one(tx.conn())
            .await?;
        let customer = customer_from(&row)?;
        tx.audit(
            actor,
            Some(customer.id),
            "customer.create",
            &format!("customer/{}", customer.id),
            json!({"name": name, "email": email}),
        );
        tx.commit().await?;
        Ok(customer)
    }

    /// Lists customers by id.
    pub async fn list_customers(&self, page: PageRequest) -> Result<Page<Customer>> {
        let rows = sqlx::query(
            "SELECT id, name, email, created_at FROM customers WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(page.cursor.unwrap_or(0))
        .bind(page.limit as i64 + 1)
        .fetch_all(self.pool())
        .await?;
        let items = rows.iter().map(customer_from).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |c| c.id))
    }

    pub async fn customer(&self, id: i64) -> Result<Customer> {
        let mut conn = self.pool().acquire().await?;
        get_customer(&mut conn, id).await
    }

    /// Renames a customer or changes its e-mail.
    pub async fn update_customer(
        &self,
        actor: &Actor,
        id: i64,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<Customer> {
        if let Some(n) = name {
            check_name("name", n)?;
        }
        if let Some(e) = email {
            check_email(e)?;
        }
        let mut tx = self.begin_write(WriteScope::Exclusive(Some(id))).await?;
        let current = get_customer(tx.conn(), id).await?;
        if let Some(n) = name {
            let taken = sqlx::query("SELECT id FROM customers WHERE name = $1 AND id <> $2")
                .bind(n)
                .bind(id)
                .fetch_optional(tx.conn())
                .await?;
            if taken.is_some() {
                return Err(StoreError::conflict(
                    Some("name"),
                    format!("a customer named '{n}' exists"),
                ));
            }
        }
        let new_name = name.unwrap_or(&current.name);
        let new_email = email.unwrap_or(&current.email);
        sqlx::query("UPDATE customers SET name = $1, email = $2 WHERE id = $3")
            .bind(new_name)
            .bind(new_email)
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.audit(
            actor,
            Some(id),
            "customer.update",
            &format!("customer/{id}"),
            json!({"name": new_name, "email": new_email}),
        );
        let out = get_customer(tx.conn(), id).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Deletes a customer with its firewalls, users and tokens. Refused (409)
    /// while it still has servers.
    pub async fn delete_customer(&self, actor: &Actor, id: i64) -> Result<()> {
        let mut tx = self.begin_write(WriteScope::Exclusive(Some(id))).await?;
        get_customer(tx.conn(), id).await?;
        let servers: i64 = sqlx::query("SELECT COUNT(*) FROM servers WHERE customer_id = $1")
            .bind(id)
            .fetch_one(tx.conn())
            .await?
            .try_get(0)?;
        if servers > 0 {
            return Err(StoreError::conflict(
                None,
                format!("customer {id} still has {servers} server(s): delete them first"),
            ));
        }
        sqlx::query("DELETE FROM firewalls WHERE customer_id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM customers WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.audit(
            actor,
            Some(id),
            "customer.delete",
            &format!("customer/{id}"),
            json!({}),
        );
        tx.commit().await?;
        Ok(())
    }
}
