//! The edge sync endpoints (edge tokens only): `GET /v1/edge/sync` and
//! `POST /v1/edge/report`, with the wire types of `model::network::sync`.

use super::{ApiJson, QueryMap};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::store::ReportOutcome;
use axum::extract::State;
use axum::Json;
use model::network::sync::{EdgeReport, SyncResponse, DEFAULT_WAIT_SECONDS};
use serde_json::json;
use std::time::Duration;

fn check_zone(token_zone: &str, zone: &str) -> Result<(), ApiError> {
    if token_zone != zone {
        return Err(ApiError::forbidden(
            Some("zone"),
            format!("this edge token is for zone '{token_zone}', not '{zone}'"),
        ));
    }
    Ok(())
}

/// Long-poll for the zone's policies: a `snapshot` (no/zero `since`, or a gap
/// the panel cannot bridge), a `delta` since `since`, or, after holding up to
/// `wait` seconds (default 30, at most 60) without a change, `unchanged`.
#[utoipa::path(get, path = "/v1/edge/sync", tag = "edge",
    params(("zone" = String, Query), ("since" = Option<u64>, Query, description = "the revision the edge has applied"),
        ("wait" = Option<u64>, Query, description = "seconds to hold the poll, default 30, capped at 60")),
    responses((status = 200, description = "SyncResponse (see components)", body = Object), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sync(
    State(st): State<AppState>,
    p: Principal,
    q: QueryMap,
) -> Result<Json<SyncResponse>, ApiError> {
    let token_zone = p.edge_zone()?;
    let q = q.only(&["zone", "since", "wait"])?;
    let zone = q
        .str("zone")
        .ok_or_else(|| ApiError::bad_request("zone", "required: the edge's zone"))?;
    check_zone(token_zone, zone)?;
    let since = q.int("since", 0, i64::MAX)?.map(|s| s as u64);
    let wait = Duration::from_secs(
        q.int("wait", 0, 86_400)?
            .map(|w| w as u64)
            .unwrap_or(DEFAULT_WAIT_SECONDS),
    )
    .min(st.config.max_wait);
    let _connected = st.metrics.as_ref().map(|m| m.edge_poll(zone));
    Ok(Json(
        crate::sync::long_poll(&st.store, zone, since, wait, st.shutdown.clone()).await?,
    ))
}

/// Report what the edge applied: per server the revision or the error, and
/// counters.
#[utoipa::path(post, path = "/v1/edge/report", tag = "edge",
    request_body(content = Object, description = "EdgeReport (see components)"),
    responses((status = 200, body = ReportOutcome), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn report(
    State(st): State<AppState>,
    p: Principal,
    ApiJson(body): ApiJson<EdgeReport>,
) -> Result<Json<ReportOutcome>, ApiError> {
    let token_zone = p.edge_zone()?;
    check_zone(token_zone, &body.zone)?;
    Ok(Json(st.store.record_report(&body.zone, &body).await?))
}

/// JSON Schemas of the sync wire types (defined in `model`, which stays free
/// of OpenAPI dependencies), added to the document's components.
pub(super) fn document_wire_types(openapi: &mut utoipa::openapi::OpenApi) {
    let schemas = json!({
        "EdgeRule": {"type": "object", "required": ["firewall_id", "rule_id", "protocol"], "properties": {
            "firewall_id": {"type": "integer"}, "rule_id": {"type": "integer"},
            "protocol": {"type": "string", "enum": ["tcp", "udp", "icmp", "any"]},
            "ports": {"type": ["object", "null"], "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}}},
            "sources": {"type": "array", "items": {"type": "string"}, "description": "empty: from anywhere"}}},
        "ServerPolicy": {"type": "object", "required": ["server_id", "name", "addresses", "revision", "enforced", "rules"], "properties": {
            "server_id": {"type": "integer"}, "name": {"type": "string"},
            "addresses": {"type": "array", "items": {"type": "string"}},
            "revision": {"type": "integer", "description": "the global revision at which this policy last changed"},
            "enforced": {"type": "boolean", "description": "an active firewall is assigned: drop what no rule accepts"},
            "rules": {"type": "array", "items": {"$ref": "#/components/schemas/EdgeRule"}}}},
        "SyncResponse": {"oneOf": [
            {"type": "object", "required": ["kind", "revision", "servers"], "properties": {
                "kind": {"type": "string", "enum": ["snapshot"]}, "revision": {"type": "integer"},
                "servers": {"type": "array", "items": {"$ref": "#/components/schemas/ServerPolicy"}}}},
            {"type": "object", "required": ["kind", "from", "revision", "changed", "removed"], "properties": {
                "kind": {"type": "string", "enum": ["delta"]}, "from": {"type": "integer"}, "revision": {"type": "integer"},
                "changed": {"type": "array", "items": {"$ref": "#/components/schemas/ServerPolicy"}},
                "removed": {"type": "array", "items": {"type": "integer"}}}},
            {"type": "object", "required": ["kind", "revision"], "properties": {
                "kind": {"type": "string", "enum": ["unchanged"]}, "revision": {"type": "integer"}}}]},
        "ServerApplyResult": {"type": "object", "required": ["server_id", "revision"], "properties": {
            "server_id": {"type": "integer"}, "revision": {"type": "integer"},
            "error": {"type": ["string", "null"], "description": "null: applied"}}},
        "RuleCounter": {"type": "object", "required": ["server_id", "packets", "bytes"], "properties": {
            "server_id": {"type": "integer"}, "rule_id": {"type": ["integer", "null"], "description": "null: dropped packets"},
            "packets": {"type": "integer"}, "bytes": {"type": "integer"}}},
        "EdgeReport": {"type": "object", "required": ["edge", "zone", "revision", "servers"], "properties": {
            "edge": {"type": "string"}, "zone": {"type": "string"}, "revision": {"type": "integer"},
            "servers": {"type": "array", "items": {"$ref": "#/components/schemas/ServerApplyResult"}},
            "counters": {"type": "array", "items": {"$ref": "#/components/schemas/RuleCounter"}}}}
    });
    let components = openapi.components.get_or_insert_with(Default::default);
    if let Some(map) = schemas.as_object() {
        for (name, schema) in map {
            match serde_json::from_value::<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>(
                schema.clone(),
            ) {
                Ok(s) => {
                    components.schemas.insert(name.clone(), s);
                }
                Err(e) => tracing::warn!(schema = %name, error = %e, "cannot document wire type"),
            }
        }
    }
}

/// Points the sync endpoints' bodies at the wire-type schemas.
pub(super) fn link_wire_types(doc: &mut serde_json::Value) {
    let set = |doc: &mut serde_json::Value, ptr: &str, name: &str| {
        if let Some(slot) = doc.pointer_mut(ptr) {
            *slot = json!({"$ref": format!("#/components/schemas/{name}")});
        }
    };
    set(
        doc,
        "/paths/~1v1~1edge~1sync/get/responses/200/content/application~1json/schema",
        "SyncResponse",
    );
    set(
        doc,
        "/paths/~1v1~1edge~1report/post/requestBody/content/application~1json/schema",
        "EdgeReport",
    );
    set(
        doc,
        "/paths/~1v1~1servers~1{id}~1policy/get/responses/200/content/application~1json/schema",
        "ServerPolicy",
    );
}
