//! `/v1/servers`: the provider registers servers; customers list, show and
//! label their own.

use super::{ApiJson, ApiPath, QueryMap};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::store::{NewServer, Page, Server, ServerPatch, ServerStatus};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use model::network::sync::ServerPolicy;

/// Register a server (admin).
#[utoipa::path(post, path = "/v1/servers", tag = "servers", request_body = NewServer,
    responses((status = 201, body = Server), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_server(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<NewServer>,
) -> Result<(StatusCode, Json<Server>), ApiError> {
    let actor = p.admin()?;
    Ok((
        StatusCode::CREATED,
        Json(st.store.create_server(actor, &body).await?),
    ))
}

/// List servers: a customer's own, or (admin) all.
#[utoipa::path(get, path = "/v1/servers", tag = "servers",
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query), ("customer_id" = Option<i64>, Query, description = "admin: only this customer's; a customer gets 403")),
    responses((status = 200, body = Page<Server>)), security(("bearer" = []), ("session" = [])))]
pub async fn list_servers(
    State(st): State<AppState>,
    p: Principal,
    q: QueryMap,
) -> Result<Json<Page<Server>>, ApiError> {
    let tenant = p.tenant()?;
    let q = q.only(&["limit", "cursor", "customer_id"])?;
    let filter = q.customer_filter(tenant)?;
    Ok(Json(st.store.list_servers(filter, q.page()?).await?))
}

/// Show a server.
#[utoipa::path(get, path = "/v1/servers/{id}", tag = "servers", params(("id" = i64, Path)),
    responses((status = 200, body = Server), (status = 404, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn get_server(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Server>, ApiError> {
    Ok(Json(st.store.server(p.tenant()?, id).await?))
}

/// Change a server. The provider may change every field; a customer only
/// `labels` (403 naming any other field).
#[utoipa::path(patch, path = "/v1/servers/{id}", tag = "servers", params(("id" = i64, Path)), request_body = ServerPatch,
    responses((status = 200, body = Server), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn update_server(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ServerPatch>,
) -> Result<Json<Server>, ApiError> {
    let tenant = p.tenant()?;
    Ok(Json(
        st.store.update_server(p.actor(), tenant, id, &body).await?,
    ))
}

/// Delete a server (admin).
#[utoipa::path(delete, path = "/v1/servers/{id}", tag = "servers", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_server(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let actor = p.admin()?;
    st.store.delete_server(actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the edge applied the server's current policy: `applied`,
/// `pending` or `failed: REASON`, with the edge's counters.
#[utoipa::path(get, path = "/v1/servers/{id}/status", tag = "servers", params(("id" = i64, Path)),
    responses((status = 200, body = ServerStatus), (status = 404, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn server_status(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ServerStatus>, ApiError> {
    Ok(Json(st.store.server_status(p.tenant()?, id).await?))
}

/// The effective policy the edge enforces for a server (the union of its
/// active firewalls' enabled rules), as in the sync protocol.
#[utoipa::path(get, path = "/v1/servers/{id}/policy", tag = "servers", params(("id" = i64, Path)),
    responses((status = 200, description = "model::network::sync::ServerPolicy", body = Object), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn server_policy(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ServerPolicy>, ApiError> {
    let tenant = p.tenant()?;
    st.store.server(tenant, id).await?;
    Ok(Json(st.store.server_policy(id).await?))
}
