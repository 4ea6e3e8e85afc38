//! What the OpenAPI document says about every operation, stated once for all
//! of them from what the shared extractors do, so that the document is
//! complete (the schema-driven test, `tests/schemathesis.rs`, checks every
//! response against it):
//!
//! - error responses: 400 where a query string, path or body can be
//!   malformed ([`super::QueryMap`], [`super::ApiPath`], [`super::ApiJson`]),
//!   401 and 403 on every authenticated operation ([`crate::auth::Principal`]:
//!   no or unknown token, read-only token on a change, missing CSRF token,
//!   the wrong kind of caller), 404 where a path or the body names an
//!   object by id, 412 where
//!   `If-Match` is taken, 413, 415 and 422 where a JSON body is read;
//! - the bounds of the shared parameters: `limit` 1-1000, `cursor` (the
//!   previous page's `next_cursor`: digits, or empty for the first page),
//!   ids 1 to 2^63-1;
//! - a rule is a preset *or* a protocol with its port, never both (`oneOf`).

use model::network::PRESETS;
use serde_json::{json, Map, Value};

/// The largest id (ids are SQL BIGINTs).
const MAX_ID: i64 = i64::MAX;

/// Adds the error responses, parameter bounds and rule schema to `doc`.
pub(super) fn complete(doc: &mut Value) {
    let naming_objects = bodies_naming_objects(doc);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                if matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch") {
                    complete_operation(op, &naming_objects);
                }
            }
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("RuleInput".into(), rule_input_schema());
    }
}

/// The `$ref`s of the request body schemas that name another object by id
/// (`customer_id`, `server_ids`, ...): an operation taking one can answer
/// 404 when that object does not exist (or is another customer's).
fn bodies_naming_objects(doc: &Value) -> Vec<String> {
    doc.pointer("/components/schemas")
        .and_then(Value::as_object)
        .map(|schemas| {
            schemas
                .iter()
                .filter(|(_, s)| {
                    s.get("properties")
                        .and_then(Value::as_object)
                        .is_some_and(|p| {
                            p.keys().any(|k| k.ends_with("_id") || k.ends_with("_ids"))
                        })
                })
                .map(|(name, _)| format!("#/components/schemas/{name}"))
                .collect()
        })
        .unwrap_or_default()
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

fn complete_operation(op: &mut Value, naming_objects: &[String]) {
    let params: Vec<(String, String)> = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or_default().to_string(),
                        p["in"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let has_body = op.get("requestBody").is_some();
    let secured = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let has_path = params.iter().any(|(_, at)| at == "path");
    let if_match = params
        .iter()
        .any(|(n, at)| at == "header" && n == "If-Match");
    let mut errors: Vec<(&str, &str)> = Vec::new();
    if has_body || !params.is_empty() {
        errors.push((
            "400",
            "A malformed request: a query parameter that is unknown or out of its bounds, a path that does not parse, a body that is not JSON.",
        ));
    }
    if secured {
        errors.push((
            "401",
            "No credentials, or an unknown, revoked or expired token or session.",
        ));
        errors.push((
            "403",
            "The caller may not do this: a read-only token on a change, a session change without its X-CSRF-Token, or the wrong kind of caller (customer, admin, edge).",
        ));
    }
    let body_names_object = op
        .pointer("/requestBody/content/application~1json/schema/$ref")
        .and_then(Value::as_str)
        .is_some_and(|r| naming_objects.iter().any(|n| n == r));
    if has_path || body_names_object {
        errors.push(("404", "No such object (in the path or named by id in the body), or it belongs to another customer."));
    }
    if if_match {
        errors.push((
            "412",
            "If-Match names no current revision of the firewall or list.",
        ));
    }
    if has_body {
        errors.push(("413", "The body is larger than the panel accepts."));
        errors.push(("415", "The body is not application/json."));
        errors.push((
            "422",
            "A value does not fit: the error names the field (`rules[3].port`) and says what is accepted.",
        ));
    }
    let responses = op
        .as_object_mut()
        .and_then(|o| o.get_mut("responses"))
        .and_then(Value::as_object_mut);
    if let Some(responses) = responses {
        for (code, description) in errors {
            responses
                .entry(code)
                .or_insert_with(|| error_response(description));
        }
    }
    if let Some(ps) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in ps {
            bound_parameter(p);
        }
    }
}

fn integer(min: i64, max: i64) -> Value {
    json!({"type": "integer", "format": "int64", "minimum": min, "maximum": max})
}

fn bound_parameter(p: &mut Value) {
    let name = p["name"].as_str().unwrap_or_default().to_string();
    let at = p["in"].as_str().unwrap_or_default().to_string();
    let schema = match (at.as_str(), name.as_str()) {
        ("query", "limit") => {
            json!({"type": "integer", "format": "int32", "minimum": 1, "maximum": super::MAX_LIMIT, "default": super::DEFAULT_LIMIT})
        }
        ("query", "cursor") => {
            json!({"type": "string", "pattern": "^[0-9]{0,18}$", "description": "the previous page's next_cursor; empty or absent: the first page"})
        }
        ("query", "customer_id") => integer(1, MAX_ID),
        ("query", "since") => integer(0, MAX_ID),
        ("query", "wait") => integer(0, 86_400),
        ("path", n) if n == "id" || n.ends_with("_id") => integer(1, MAX_ID),
        _ => return,
    };
    if let Some(o) = p.as_object_mut() {
        o.insert("schema".into(), schema);
    }
}

/// The rule a request gives: exactly one of a preset, a tcp/udp rule with its
/// port, an icmp rule (no port), or an `any` rule (port optional).
fn rule_input_schema() -> Value {
    let common = |extra: Map<String, Value>| {
        let mut props = Map::new();
        props.insert(
            "sources".into(),
            json!({"type": "array", "items": {"type": "string"}, "description": "Source addresses or networks (203.0.113.0/24, 2001:db8::/32, 198.51.100.7). Empty: from anywhere."}),
        );
        props.insert("description".into(), json!({"type": "string"}));
        props.insert(
            "enabled".into(),
            json!({"type": "boolean", "default": true}),
        );
        props.extend(extra);
        props
    };
    let port = json!({
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": 65535},
            {"type": "string", "pattern": "^[0-9]{1,5}(-[0-9]{1,5})?$", "description": "22 or 8000-8100"}
        ]
    });
    let presets: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
    let variant = |title: &str, required: &[&str], props: Map<String, Value>| {
        json!({
            "title": title,
            "type": "object",
            "required": required,
            "properties": common(props),
            "additionalProperties": false
        })
    };
    let mut preset = Map::new();
    preset.insert(
        "preset".into(),
        json!({"type": "string", "enum": presets, "description": "A preset from GET /v1/presets (case-insensitive); sets protocol and port."}),
    );
    let mut with_port = Map::new();
    with_port.insert(
        "protocol".into(),
        json!({"type": "string", "enum": ["tcp", "udp"]}),
    );
    with_port.insert("port".into(), port.clone());
    let mut icmp = Map::new();
    icmp.insert(
        "protocol".into(),
        json!({"type": "string", "enum": ["icmp"]}),
    );
    let mut any = Map::new();
    any.insert(
        "protocol".into(),
        json!({"type": "string", "enum": ["any"]}),
    );
    any.insert("port".into(), port);
    json!({
        "description": "A rule: a preset, or a protocol with its port (required for tcp and udp, none for icmp, optional for any); never both.",
        "oneOf": [
            variant("preset", &["preset"], preset),
            variant("tcp or udp", &["protocol", "port"], with_port),
            variant("icmp", &["protocol"], icmp),
            variant("any protocol", &["protocol"], any),
        ]
    })
}
