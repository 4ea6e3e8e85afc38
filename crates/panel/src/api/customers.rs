//! `/v1/customers` and `/v1/users`: provider operations (admin only).

use super::{ApiJson, ApiPath, QueryMap};
use crate::auth::{hash_password, Principal};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::store::{Customer, Page, UserInfo};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    pub name: String,
    #[serde(default)]
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerPatch {
    pub name: Option<String>,
    pub email: Option<String>,
}

/// Create a customer.
#[utoipa::path(post, path = "/v1/customers", tag = "customers", request_body = NewCustomer,
    responses((status = 201, body = Customer), (status = 409, description = "name taken", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_customer(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<NewCustomer>,
) -> Result<(StatusCode, Json<Customer>), ApiError> {
    let actor = p.admin()?;
    Ok((
        StatusCode::CREATED,
        Json(
            st.store
                .create_customer(actor, body.name.trim(), body.email.trim())
                .await?,
        ),
    ))
}

/// List customers.
#[utoipa::path(get, path = "/v1/customers", tag = "customers",
    params(("limit" = Option<u32>, Query, description = "1-1000, default 50"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, body = Page<Customer>)), security(("bearer" = [])))]
pub async fn list_customers(
    State(st): State<AppState>,
    p: Principal,
    q: QueryMap,
) -> Result<Json<Page<Customer>>, ApiError> {
    p.admin()?;
    Ok(Json(
        st.store
            .list_customers(q.only(&["limit", "cursor"])?.page()?)
            .await?,
    ))
}

/// Show a customer.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers", params(("id" = i64, Path)),
    responses((status = 200, body = Customer), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_customer(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Customer>, ApiError> {
    p.admin()?;
    Ok(Json(st.store.customer(id).await?))
}

/// Rename a customer or change its e-mail.
#[utoipa::path(patch, path = "/v1/customers/{id}", tag = "customers", params(("id" = i64, Path)), request_body = CustomerPatch,
    responses((status = 200, body = Customer), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_customer(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CustomerPatch>,
) -> Result<Json<Customer>, ApiError> {
    let actor = p.admin()?;
    Ok(Json(
        st.store
            .update_customer(
                actor,
                id,
                body.name.as_deref().map(str::trim),
                body.email.as_deref().map(str::trim),
            )
            .await?,
    ))
}

/// Delete a customer (refused while it has servers).
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "customers", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_customer(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let actor = p.admin()?;
    st.store.delete_customer(actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub login: String,
    /// At least 10 characters; stored as an argon2 hash.
    pub password: String,
    /// The customer the login acts for; absent: a provider operator.
    pub customer_id: Option<i64>,
}

/// Create a web login.
#[utoipa::path(post, path = "/v1/users", tag = "customers", request_body = NewUser,
    responses((status = 201, body = UserInfo), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_user(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    let actor = p.admin()?;
    let hash = hash_password(&body.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            st.store
                .create_user(actor, body.login.trim(), &hash, body.customer_id)
                .await?,
        ),
    ))
}

/// List web logins.
#[utoipa::path(get, path = "/v1/users", tag = "customers",
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<UserInfo>)), security(("bearer" = [])))]
pub async fn list_users(
    State(st): State<AppState>,
    p: Principal,
    q: QueryMap,
) -> Result<Json<Page<UserInfo>>, ApiError> {
    p.admin()?;
    Ok(Json(
        st.store
            .list_users(q.only(&["limit", "cursor"])?.page()?)
            .await?,
    ))
}

/// Delete a web login and its sessions.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "customers", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_user(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let actor = p.admin()?;
    st.store.delete_user(actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
