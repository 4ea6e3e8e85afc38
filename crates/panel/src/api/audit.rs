//! `/v1/audit` and `/v1/presets` (health is in [`crate::health`]).

use super::QueryMap;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{format_port, AuditEntry, Page};
use axum::extract::State;
use axum::Json;
use model::network::PRESETS;
use serde::Serialize;
use utoipa::ToSchema;

/// The audit log, newest first: a customer sees the entries about its own
/// objects; an admin sees all (or one customer's with `customer_id`).
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query), ("customer_id" = Option<i64>, Query, description = "admin: only this customer's; a customer gets 403")),
    responses((status = 200, body = Page<AuditEntry>)), security(("bearer" = []), ("session" = [])))]
pub async fn audit_log(
    State(st): State<AppState>,
    p: Principal,
    q: QueryMap,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    let q = q.only(&["limit", "cursor", "customer_id"])?;
    let filter = q.customer_filter(p.tenant()?)?;
    Ok(Json(st.store.audit_log(filter, q.page()?).await?))
}

/// A rule template; add it with `{"preset": NAME}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresetInfo {
    pub name: String,
    #[schema(example = "tcp")]
    pub protocol: String,
    #[schema(example = "22")]
    pub port: Option<String>,
}

/// Presets for common services.
#[utoipa::path(get, path = "/v1/presets", tag = "misc", responses((status = 200, body = Vec<PresetInfo>)))]
pub async fn presets() -> Json<Vec<PresetInfo>> {
    Json(
        PRESETS
            .iter()
            .map(|p| PresetInfo {
                name: p.name.to_string(),
                protocol: p.protocol.as_str().to_string(),
                port: p.port.map(|n| format_port(model::PortRange::single(n))),
            })
            .collect(),
    )
}
