//! The server side of the edge sync protocol (`model::network::sync`).
//!
//! `GET /v1/edge/sync?zone=Z&since=REV&wait=S` answers at once with a
//! `Snapshot` (no `since`, `since` 0, or a gap the panel cannot bridge) or a
//! `Delta` (servers of the zone whose `policy_revision` is above `since`, and
//! servers removed from the zone since). When nothing in the zone changed it
//! holds the request until a commit changes the zone or `wait` seconds pass
//! (then `Unchanged`).
//!
//! Waking: every commit of this process bumps the store's watch channel
//! ([`crate::store::Store::subscribe`]). With PostgreSQL, every commit also
//! runs `NOTIFY portwall_revision` in its transaction, and
//! [`spawn_pg_listener`] (started by [`crate::Panel::start`]) `LISTEN`s on
//! every replica and bumps the local channel, so a change committed through
//! any replica wakes the long-polls held by all of them. After the listener
//! reconnects (it may have missed notifications) it wakes every waiter to
//! re-read the database, and waiters also re-read every
//! [`RECHECK_INTERVAL`] as a last resort.

use crate::store::{Store, ZoneChanges, NOTIFY_CHANNEL, STATUS_CHANNEL};
use model::network::sync::SyncResponse;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A held poll re-reads the database at least this often, even without a
/// notification.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Answers one sync poll, holding it up to `wait` when nothing changed.
/// Returns early with `Unchanged` when `shutdown` turns true.
pub async fn long_poll(
    store: &Store,
    zone: &str,
    since: Option<u64>,
    wait: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> crate::store::Result<SyncResponse> {
    let deadline = Instant::now() + wait;
    let mut changes = store.subscribe();
    loop {
        // Mark the current value seen *before* reading, so that a commit
        // between the read and the wait still wakes us.
        changes.borrow_and_update();
        let revision = match store.zone_changes(zone, since).await? {
            ZoneChanges::Changes(resp) => return Ok(resp),
            ZoneChanges::Unchanged { revision } => revision,
        };
        let now = Instant::now();
        if now >= deadline || *shutdown.borrow() {
            return Ok(SyncResponse::Unchanged { revision });
        }
        let wake_at = deadline.min(now + RECHECK_INTERVAL);
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return Ok(SyncResponse::Unchanged { revision });
                }
            }
            _ = shutdown.changed() => return Ok(SyncResponse::Unchanged { revision }),
            _ = tokio::time::sleep_until(wake_at) => {
                if wake_at >= deadline {
                    return Ok(SyncResponse::Unchanged { revision });
                }
            }
        }
    }
}

/// On PostgreSQL: listens for other replicas' commits and edge reports,
/// wakes this replica's long-polls and keeps its read caches exact.
/// Reconnects by itself; runs until aborted.
///
/// The caches serve only while the listener is connected and caught up
/// ([`Store::caches_exact`]): after `LISTEN` succeeded it re-reads the
/// revision (anything committed while it was not listening), and when the
/// connection is lost it turns them off until it is back.
pub fn spawn_pg_listener(store: Store) -> Option<JoinHandle<()>> {
    let url = store.postgres_url()?.to_string();
    Some(tokio::spawn(async move {
        loop {
            if let Err(e) = listen(&store, &url).await {
                tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
            }
            store.set_listening(false);
            store.wake_all();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }))
}

/// One LISTEN connection, until it fails.
async fn listen(store: &Store, url: &str) -> Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener
        .listen_all([NOTIFY_CHANNEL, STATUS_CHANNEL])
        .await?;
    tracing::debug!("listening on {NOTIFY_CHANNEL} and {STATUS_CHANNEL}");
    // Anything committed while we were not listening.
    match store.revision().await {
        Ok(rev) => store.notify_revision(rev),
        Err(e) => return Err(sqlx::Error::Protocol(e.to_string())),
    }
    store.set_listening(true);
    store.wake_all();
    loop {
        // `try_recv` answers None when the connection was lost (and would
        // reconnect on the next call): start over instead, so that the
        // revision is re-read before the caches serve again.
        let Some(n) = listener.try_recv().await? else {
            return Err(sqlx::Error::Protocol("connection lost".into()));
        };
        if n.channel() == STATUS_CHANNEL {
            store.status_changed();
        } else {
            match n.payload().parse::<u64>() {
                Ok(rev) => store.notify_revision(rev),
                Err(_) => store.wake_all(),
            }
        }
    }
}
