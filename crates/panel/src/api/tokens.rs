//! `/v1/tokens`: API tokens (customers: their own; admin: any, including
//! admin and edge tokens). The secret is in the create response only.

use super::{ApiJson, ApiPath, QueryMap};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::store::{CreatedToken, NewToken, Page, Scope, TokenInfo, TokenKind};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub name: String,
    /// `customer` (default), or (admin only) `admin` or `edge`.
    pub kind: Option<TokenKind>,
    /// `read` (default: GET only) or `write`. Admin and edge tokens ignore it.
    pub scope: Option<Scope>,
    /// Admin creating a customer token: whose.
    pub customer_id: Option<i64>,
    /// Edge tokens: the zone they may sync.
    pub zone: Option<String>,
}

/// Create a token; its secret is shown in this response only.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = TokenRequest,
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn create_token(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let kind = body.kind.unwrap_or(TokenKind::Customer);
    let new = match p.tenant()? {
        Some(customer) => {
            if kind != TokenKind::Customer {
                return Err(ApiError::forbidden(
                    Some("kind"),
                    "customers can create customer tokens only",
                ));
            }
            if body.customer_id.is_some_and(|c| c != customer) {
                return Err(ApiError::not_found(format!(
                    "customer {}",
                    body.customer_id.unwrap_or_default()
                )));
            }
            if body.zone.is_some() {
                return Err(ApiError::unprocessable(
                    "zone",
                    "only edge tokens have a zone",
                ));
            }
            NewToken {
                kind,
                customer_id: Some(customer),
                zone: None,
                scope: body.scope.unwrap_or(Scope::Read),
                name: body.name.trim().into(),
            }
        }
        None => NewToken {
            kind,
            customer_id: body.customer_id,
            zone: body.zone.clone(),
            scope: if kind == TokenKind::Customer {
                body.scope.unwrap_or(Scope::Read)
            } else {
                Scope::Write
            },
            name: body.name.trim().into(),
        },
    };
    Ok((
        StatusCode::CREATED,
        Json(st.store.create_token(p.actor(), &new).await?),
    ))
}

/// List tokens (never their secrets).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query), ("customer_id" = Option<i64>, Query, description = "admin: only this customer's")),
    responses((status = 200, body = Page<TokenInfo>)), security(("bearer" = []), ("session" = [])))]
pub async fn list_tokens(
    State(st): State<AppState>,
    p: Principal,
    q: QueryMap,
) -> Result<Json<Page<TokenInfo>>, ApiError> {
    let q = q.only(&["limit", "cursor", "customer_id"])?;
    let tenant = p.tenant()?;
    let asked = q.customer_filter(tenant)?;
    let filter = tenant.or(asked);
    Ok(Json(st.store.list_tokens(filter, q.page()?).await?))
}

/// Revoke a token; it stops working at once.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path)),
    responses((status = 200, body = TokenInfo), (status = 404, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn revoke_token(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TokenInfo>, ApiError> {
    let tenant = p.tenant()?;
    Ok(Json(st.store.revoke_token(p.actor(), tenant, id).await?))
}
