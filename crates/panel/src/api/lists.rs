//! `/v1/lists`: a customer's IP lists (named sets of IPv4 and IPv6 addresses
//! and networks). Customer tokens and sessions only; another customer's list
//! is 404. Entries are read by the model's one parser
//! ([`model::parse_net`]); a bad one is named by its index
//! (`entries[3]`) with the reason.

use super::{etag_response, ApiJson, ApiPath, IfMatch, QueryMap};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::store::{EntryChange, IpList, IpListSummary, Page, StoreError, MAX_ENTRIES_PER_LIST};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use ipnet::IpNet;
use serde::Deserialize;
use utoipa::ToSchema;

/// A new list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewList {
    /// 1-26 characters: lowercase letters, digits, '-' and '_', starting with
    /// a letter.
    #[schema(
        example = "office",
        pattern = "^[a-z][a-z0-9_-]{0,25}$",
        min_length = 1,
        max_length = 26
    )]
    pub name: String,
    /// At most 1000 bytes, no control characters but newlines.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: String,
    /// Addresses and networks (`198.51.100.7`, `203.0.113.0/24`,
    /// `2001:db8::/32`); at most 100,000. Duplicates are kept once.
    #[serde(default)]
    #[schema(max_items = 100000, example = json!(["203.0.113.0/24", "198.51.100.7"]))]
    pub entries: Vec<String>,
}

/// Entries to replace the list with, add to it or remove from it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryList {
    /// Addresses and networks (`198.51.100.7`, `203.0.113.0/24`,
    /// `2001:db8::/32`); at most 100,000.
    #[schema(max_items = 100000, example = json!(["203.0.113.0/24", "2001:db8::/32"]))]
    pub entries: Vec<String>,
}

/// Parses request entries with the model's parser. Over the list limit is
/// refused before anything is parsed (or locked); a bad entry is named by
/// its index and the reason.
pub fn parse_entries(entries: &[String]) -> Result<Vec<IpNet>, ApiError> {
    if entries.len() > MAX_ENTRIES_PER_LIST {
        return Err(StoreError::Limit {
            field: "entries".into(),
            message: format!(
                "a list holds at most {MAX_ENTRIES_PER_LIST} entries; this request names {}",
                entries.len()
            ),
        }
        .into());
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            model::parse_net(e.trim()).map_err(|reason| {
                ApiError::unprocessable(
                    &format!("entries[{i}]"),
                    format!("entry {} of {}: {reason}", i + 1, entries.len()),
                )
            })
        })
        .collect()
}

/// Create a list with its entries.
#[utoipa::path(post, path = "/v1/lists", tag = "lists", request_body = NewList,
    responses((status = 201, body = IpList, description = "with ETag"),
        (status = 409, description = "you already have a list of that name", body = ErrorBody),
        (status = 422, description = "a bad name, description or entry (named by its index), or a limit: 100,000 entries per list, 1,000,000 per customer, 100 lists per customer", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn create_list(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<NewList>,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let entries = parse_entries(&body.entries)?;
    let list = st
        .store
        .create_list(actor, customer, &body.name, &body.description, &entries)
        .await?;
    Ok(etag_response(StatusCode::CREATED, list.revision, &list))
}

/// List your IP lists (without their entries).
#[utoipa::path(get, path = "/v1/lists", tag = "lists",
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<IpListSummary>)), security(("bearer" = []), ("session" = [])))]
pub async fn list_lists(
    State(st): State<AppState>,
    p: Principal,
    q: QueryMap,
) -> Result<Json<Page<IpListSummary>>, ApiError> {
    let (customer, _) = p.customer()?;
    Ok(Json(
        st.store
            .list_lists(customer, q.only(&["limit", "cursor"])?.page()?)
            .await?,
    ))
}

/// Show a list: its entries, how many, and how many kernel ranges they merge
/// into; `ETag` header.
#[utoipa::path(get, path = "/v1/lists/{id}", tag = "lists", params(("id" = i64, Path)),
    responses((status = 200, body = IpList, description = "with ETag"), (status = 404, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn get_list(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let (customer, _) = p.customer()?;
    let list = st.store.ip_list(customer, id).await?;
    Ok(etag_response(StatusCode::OK, list.revision, &list))
}

/// Delete a list (`If-Match` honoured).
#[utoipa::path(delete, path = "/v1/lists/{id}", tag = "lists",
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "ETag from a GET; 412 if the list changed since")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn delete_list(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    IfMatch(expect): IfMatch,
) -> Result<StatusCode, ApiError> {
    let (customer, actor) = p.customer()?;
    st.store.delete_list(actor, customer, id, expect).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn change(
    st: &AppState,
    p: &Principal,
    id: i64,
    expect: Option<u64>,
    body: &EntryList,
    make: fn(Vec<IpNet>) -> EntryChange,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let entries = parse_entries(&body.entries)?;
    let (list, _) = st
        .store
        .change_list_entries(actor, customer, id, expect, make(entries))
        .await?;
    Ok(etag_response(StatusCode::OK, list.revision, &list))
}

/// Replace all entries of a list. Sending the entries it holds changes
/// nothing (same revision).
#[utoipa::path(put, path = "/v1/lists/{id}/entries", tag = "lists", request_body = EntryList,
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "ETag from a GET; 412 if the list changed since")),
    responses((status = 200, body = IpList, description = "with ETag"), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody),
        (status = 422, description = "a bad entry (named by its index), or a limit: 100,000 entries per list, 1,000,000 per customer", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn replace_entries(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    IfMatch(expect): IfMatch,
    ApiJson(body): ApiJson<EntryList>,
) -> Result<Response, ApiError> {
    change(&st, &p, id, expect, &body, EntryChange::Replace).await
}

/// Add entries to a list (those it already holds change nothing).
#[utoipa::path(post, path = "/v1/lists/{id}/entries", tag = "lists", request_body = EntryList,
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "ETag from a GET; 412 if the list changed since")),
    responses((status = 200, body = IpList, description = "with ETag"), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody),
        (status = 422, description = "a bad entry (named by its index), or a limit: 100,000 entries per list, 1,000,000 per customer", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn add_entries(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    IfMatch(expect): IfMatch,
    ApiJson(body): ApiJson<EntryList>,
) -> Result<Response, ApiError> {
    change(&st, &p, id, expect, &body, EntryChange::Add).await
}

/// Remove entries from a list (those it does not hold change nothing).
#[utoipa::path(delete, path = "/v1/lists/{id}/entries", tag = "lists", request_body = EntryList,
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "ETag from a GET; 412 if the list changed since")),
    responses((status = 200, body = IpList, description = "with ETag"), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody),
        (status = 422, description = "a bad entry (named by its index)", body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn remove_entries(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    IfMatch(expect): IfMatch,
    ApiJson(body): ApiJson<EntryList>,
) -> Result<Response, ApiError> {
    change(&st, &p, id, expect, &body, EntryChange::Remove).await
}
