//! `/v1/firewalls`: a customer's network firewalls, their rules and
//! assignments. Customer tokens and sessions only; another customer's
//! firewall or server is 404.

use super::inputs::{RuleInput, RulePatch};
use super::{firewall_response, ApiJson, ApiPath, IfMatch, QueryMap};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::store::{
    AssignOutcome, Firewall, FirewallApplyStatus, FirewallRule, FirewallSummary, Page, StoreError,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use model::network::NetworkRule;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFirewall {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Initial rules. A new firewall is always inactive until enabled.
    #[serde(default)]
    pub rules: Vec<RuleInput>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallPatch {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// The whole rule list, for `PUT /v1/firewalls/{id}/rules`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleList {
    pub rules: Vec<RuleInput>,
}

/// What to assign: one server, several, or a label selector (stored: it also
/// assigns servers labelled later).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    pub server_id: Option<i64>,
    pub server_ids: Option<Vec<i64>>,
    /// `key=value[,key=value]`, e.g. `env=prod`.
    pub selector: Option<String>,
}

/// A rule list response.
#[derive(Debug, Serialize, ToSchema)]
pub struct RulesResponse {
    pub firewall_id: i64,
    pub revision: u64,
    pub rules: Vec<FirewallRule>,
}

/// A rule just added, with the firewall's new revision.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleCreated {
    pub rule: FirewallRule,
    pub firewall: Firewall,
}

fn to_rules(inputs: &[RuleInput]) -> Result<Vec<NetworkRule>, ApiError> {
    if inputs.len() > crate::store::MAX_RULES_PER_FIREWALL {
        return Err(StoreError::Limit {
            field: "rules".into(),
            message: format!(
                "a firewall holds at most {} rules; this would make {}",
                crate::store::MAX_RULES_PER_FIREWALL,
                inputs.len()
            ),
        }
        .into());
    }
    Ok(inputs
        .iter()
        .enumerate()
        .map(|(i, r)| r.to_rule(&format!("rules[{i}].")))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Create a firewall (inactive until enabled).
#[utoipa::path(post, path = "/v1/firewalls", tag = "firewalls", request_body = NewFirewall,
    responses((status = 201, body = Firewall, description = "with ETag"), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn create_firewall(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<NewFirewall>,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let rules = to_rules(&body.rules)?;
    let fw = st
        .store
        .create_firewall(actor, customer, body.name.trim(), &body.description, &rules)
        .await?;
    Ok(firewall_response(StatusCode::CREATED, &fw, &fw))
}

/// List your firewalls.
#[utoipa::path(get, path = "/v1/firewalls", tag = "firewalls",
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<FirewallSummary>)), security(("bearer" = []), ("session" = [])))]
pub async fn list_firewalls(
    State(st): State<AppState>,
    p: Principal,
    q: QueryMap,
) -> Result<Json<Page<FirewallSummary>>, ApiError> {
    let (customer, _) = p.customer()?;
    Ok(Json(
        st.store
            .list_firewalls(customer, q.only(&["limit", "cursor"])?.page()?)
            .await?,
    ))
}

/// Show a firewall with its rules and assignments; `ETag` header.
#[utoipa::path(get, path = "/v1/firewalls/{id}", tag = "firewalls", params(("id" = i64, Path)),
    responses((status = 200, body = Firewall), (status = 404, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn get_firewall(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let (customer, _) = p.customer()?;
    let fw = st.store.firewall(customer, id).await?;
    Ok(firewall_response(StatusCode::OK, &fw, &fw))
}

/// Rename a firewall or change its description (`If-Match` honoured).
#[utoipa::path(patch, path = "/v1/firewalls/{id}", tag = "firewalls", request_body = FirewallPatch,
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "ETag from a GET; 412 if the firewall changed since")),
    responses((status = 200, body = Firewall), (status = 404, body = ErrorBody), (status = 409, description = "name taken", body = ErrorBody), (status = 412, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn update_firewall(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    IfMatch(expect): IfMatch,
    ApiJson(body): ApiJson<FirewallPatch>,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let fw = st
        .store
        .update_firewall(
            actor,
            customer,
            id,
            expect,
            body.name.as_deref().map(str::trim),
            body.description.as_deref(),
        )
        .await?;
    Ok(firewall_response(StatusCode::OK, &fw, &fw))
}

/// Delete a firewall (`If-Match` honoured).
#[utoipa::path(delete, path = "/v1/firewalls/{id}", tag = "firewalls", params(("id" = i64, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn delete_firewall(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    IfMatch(expect): IfMatch,
) -> Result<StatusCode, ApiError> {
    let (customer, actor) = p.customer()?;
    st.store
        .delete_firewall(actor, customer, id, expect)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enable a firewall: from now on, every inbound packet to its servers is
/// dropped unless a rule (of this or another active firewall) accepts it.
#[utoipa::path(post, path = "/v1/firewalls/{id}/enable", tag = "firewalls", params(("id" = i64, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Firewall), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn enable_firewall(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    IfMatch(expect): IfMatch,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let fw = st
        .store
        .set_firewall_active(actor, customer, id, expect, true)
        .await?;
    Ok(firewall_response(StatusCode::OK, &fw, &fw))
}

/// Disable a firewall: its rules stop applying.
#[utoipa::path(post, path = "/v1/firewalls/{id}/disable", tag = "firewalls", params(("id" = i64, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Firewall), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn disable_firewall(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    IfMatch(expect): IfMatch,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let fw = st
        .store
        .set_firewall_active(actor, customer, id, expect, false)
        .await?;
    Ok(firewall_response(StatusCode::OK, &fw, &fw))
}

/// The firewall's rules, in order; `ETag` header.
#[utoipa::path(get, path = "/v1/firewalls/{id}/rules", tag = "firewalls", params(("id" = i64, Path)),
    responses((status = 200, body = RulesResponse), (status = 404, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn list_rules(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let (customer, _) = p.customer()?;
    let fw = st.store.firewall(customer, id).await?;
    let body = RulesResponse {
        firewall_id: fw.id,
        revision: fw.revision,
        rules: fw.rules.clone(),
    };
    Ok(firewall_response(StatusCode::OK, &fw, &body))
}

/// Add a rule (a preset, or protocol and port) at the end.
#[utoipa::path(post, path = "/v1/firewalls/{id}/rules", tag = "firewalls", request_body = RuleInput,
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 201, body = RuleCreated), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn add_rule(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    IfMatch(expect): IfMatch,
    ApiJson(body): ApiJson<RuleInput>,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let rule = body.to_rule("")?;
    let (fw, rule_id) = st
        .store
        .add_rule(actor, customer, id, expect, &rule)
        .await?;
    let rule = fw
        .rules
        .iter()
        .find(|r| r.id == rule_id)
        .cloned()
        .ok_or_else(|| ApiError::internal("added rule vanished"))?;
    let body = RuleCreated {
        rule,
        firewall: fw.clone(),
    };
    Ok(firewall_response(StatusCode::CREATED, &fw, &body))
}

/// Replace the whole rule list. Idempotent: sending the current list again
/// changes nothing (same revision, same rule ids).
#[utoipa::path(put, path = "/v1/firewalls/{id}/rules", tag = "firewalls", request_body = RuleList,
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Firewall), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn replace_rules(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    IfMatch(expect): IfMatch,
    ApiJson(body): ApiJson<RuleList>,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let rules = to_rules(&body.rules)?;
    let (fw, _) = st
        .store
        .replace_rules(actor, customer, id, expect, &rules)
        .await?;
    Ok(firewall_response(StatusCode::OK, &fw, &fw))
}

/// Edit a rule; absent fields stay (`"port": null` removes the port).
#[utoipa::path(patch, path = "/v1/firewalls/{id}/rules/{rule_id}", tag = "firewalls", request_body = RulePatch,
    params(("id" = i64, Path), ("rule_id" = i64, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Firewall), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn update_rule(
    State(st): State<AppState>,
    p: Principal,
    ApiPath((id, rule_id)): ApiPath<(i64, i64)>,
    IfMatch(expect): IfMatch,
    ApiJson(body): ApiJson<RulePatch>,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let fw = st
        .store
        .update_rule(actor, customer, id, rule_id, expect, |r| body.apply(r))
        .await?;
    Ok(firewall_response(StatusCode::OK, &fw, &fw))
}

/// Delete a rule.
#[utoipa::path(delete, path = "/v1/firewalls/{id}/rules/{rule_id}", tag = "firewalls",
    params(("id" = i64, Path), ("rule_id" = i64, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Firewall), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn delete_rule(
    State(st): State<AppState>,
    p: Principal,
    ApiPath((id, rule_id)): ApiPath<(i64, i64)>,
    IfMatch(expect): IfMatch,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let fw = st
        .store
        .delete_rule(actor, customer, id, rule_id, expect)
        .await?;
    Ok(firewall_response(StatusCode::OK, &fw, &fw))
}

/// Assign the firewall to servers by id (`server_id` or `server_ids`) or by a
/// label selector (`selector`, stored: it also applies to servers labelled
/// later; Dedicated servers it matches are skipped and listed). A Dedicated
/// server named by id is refused with 409.
#[utoipa::path(post, path = "/v1/firewalls/{id}/assignments", tag = "firewalls", request_body = AssignRequest,
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = AssignOutcome), (status = 404, body = ErrorBody), (status = 409, description = "a Dedicated server", body = ErrorBody),
        (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn assign(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    IfMatch(expect): IfMatch,
    ApiJson(body): ApiJson<AssignRequest>,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let out = match (body.server_id, body.server_ids, body.selector) {
        (Some(s), None, None) => {
            st.store
                .assign_servers(actor, customer, id, expect, &[s])
                .await?
        }
        (None, Some(ids), None) => {
            st.store
                .assign_servers(actor, customer, id, expect, &ids)
                .await?
        }
        (None, None, Some(sel)) => {
            st.store
                .assign_selector(actor, customer, id, expect, &sel)
                .await?
        }
        _ => {
            return Err(ApiError::unprocessable(
                "server_id",
                "give exactly one of server_id, server_ids or selector",
            ))
        }
    };
    Ok(firewall_response(StatusCode::OK, &out.firewall, &out))
}

/// Unassign a server assigned by id.
#[utoipa::path(delete, path = "/v1/firewalls/{id}/assignments/{server_id}", tag = "firewalls",
    params(("id" = i64, Path), ("server_id" = i64, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Firewall), (status = 404, body = ErrorBody), (status = 409, description = "assigned through a selector", body = ErrorBody),
        (status = 412, body = ErrorBody)),
    security(("bearer" = []), ("session" = [])))]
pub async fn unassign_server(
    State(st): State<AppState>,
    p: Principal,
    ApiPath((id, server_id)): ApiPath<(i64, i64)>,
    IfMatch(expect): IfMatch,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let fw = st
        .store
        .unassign_server(actor, customer, id, server_id, expect)
        .await?;
    Ok(firewall_response(StatusCode::OK, &fw, &fw))
}

/// Remove a stored selector.
#[utoipa::path(delete, path = "/v1/firewalls/{id}/selectors/{selector_id}", tag = "firewalls",
    params(("id" = i64, Path), ("selector_id" = i64, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Firewall), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn remove_selector(
    State(st): State<AppState>,
    p: Principal,
    ApiPath((id, selector_id)): ApiPath<(i64, i64)>,
    IfMatch(expect): IfMatch,
) -> Result<Response, ApiError> {
    let (customer, actor) = p.customer()?;
    let fw = st
        .store
        .remove_selector(actor, customer, id, selector_id, expect)
        .await?;
    Ok(firewall_response(StatusCode::OK, &fw, &fw))
}

/// Per server the firewall applies to: `applied`, `pending` or `failed: REASON`.
#[utoipa::path(get, path = "/v1/firewalls/{id}/status", tag = "firewalls", params(("id" = i64, Path)),
    responses((status = 200, body = FirewallApplyStatus), (status = 404, body = ErrorBody)), security(("bearer" = []), ("session" = [])))]
pub async fn firewall_status(
    State(st): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<FirewallApplyStatus>, ApiError> {
    let (customer, _) = p.customer()?;
    Ok(Json(st.store.firewall_status(customer, id).await?))
}
