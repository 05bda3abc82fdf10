//! `GET /admin/v1/openapi.json`: a minimal, hand-written OpenAPI 3
//! description of the admin API, enough for a client generator or a quick
//! look in an OpenAPI viewer. Kept next to the handlers so a route change
//! shows up in review beside it.

use std::sync::LazyLock;

use axum::Json;
use serde_json::{Value, json};

use super::error::ADMIN_CODES;

// Built once, on first request.
static DOCUMENT: LazyLock<Value> = LazyLock::new(build);

pub async fn document() -> Json<Value> {
    Json(DOCUMENT.clone())
}

fn build() -> Value {
    let json_body = |schema: &str| json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let answer = |description: &str, schema: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let errors = json!({
        "400": {"$ref": "#/components/responses/Error"},
        "401": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"},
        "409": {"$ref": "#/components/responses/Error"},
        "500": {"$ref": "#/components/responses/Error"},
        "503": {"$ref": "#/components/responses/Error"}
    });
    let with_errors = |mut responses: Value| {
        if let (Some(responses), Some(errors)) = (responses.as_object_mut(), errors.as_object()) {
            for (status, error) in errors {
                responses
                    .entry(status.clone())
                    .or_insert_with(|| error.clone());
            }
        }
        responses
    };
    let tenant_param = json!({"name": "tenant", "in": "path", "required": true, "description": "tenant id or name", "schema": {"type": "string"}});
    let key_param = json!({"name": "key", "in": "path", "required": true, "description": "key id", "schema": {"type": "string"}});
    let limit = json!({"type": ["integer", "null"], "minimum": 0});
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {"title": "llmgw billing admin API", "version": "v1"},
        "security": [{"admin": []}],
        "paths": {
            "/admin/v1/tenants": {
                "get": {"summary": "List tenants", "responses": with_errors(json!({"200": answer("tenants", "TenantList")}))},
                "post": {"summary": "Create a tenant", "requestBody": json_body("NewTenant"), "responses": with_errors(json!({"201": answer("created", "Tenant")}))}
            },
            "/admin/v1/tenants/{tenant}": {
                "parameters": [tenant_param],
                "get": {"summary": "Read a tenant", "responses": with_errors(json!({"200": answer("the tenant", "Tenant")}))},
                "patch": {"summary": "Update a tenant (absent: unchanged, null: cleared)", "requestBody": json_body("TenantUpdate"), "responses": with_errors(json!({"200": answer("updated", "Tenant")}))}
            },
            "/admin/v1/tenants/{tenant}/disable": {"parameters": [tenant_param], "post": {"summary": "Disable a tenant: its keys stop working", "responses": with_errors(json!({"200": answer("disabled", "Tenant")}))}},
            "/admin/v1/tenants/{tenant}/enable": {"parameters": [tenant_param], "post": {"summary": "Enable a tenant", "responses": with_errors(json!({"200": answer("enabled", "Tenant")}))}},
            "/admin/v1/tenants/{tenant}/keys": {
                "parameters": [tenant_param],
                "get": {"summary": "List the tenant's keys (never their secrets)", "responses": with_errors(json!({"200": answer("keys", "KeyList")}))},
                "post": {"summary": "Create a key; the secret is shown once", "requestBody": json_body("NewKey"), "responses": with_errors(json!({"201": answer("created", "CreatedKey")}))}
            },
            "/admin/v1/keys/{key}": {
                "parameters": [key_param],
                "get": {"summary": "Read a key", "responses": with_errors(json!({"200": answer("the key", "Key")}))},
                "patch": {"summary": "Change an active key's models, limits or expiry (absent: unchanged, null: cleared)", "requestBody": json_body("KeyUpdate"), "responses": with_errors(json!({"200": answer("updated", "Key")}))}
            },
            "/admin/v1/keys/{key}/revoke": {"parameters": [key_param], "post": {"summary": "Revoke a key", "responses": with_errors(json!({"200": answer("revoked", "Key")}))}},
            "/admin/v1/keys/{key}/rotate": {"parameters": [key_param], "post": {"summary": "Revoke a key and issue a new one with the same settings", "responses": with_errors(json!({"201": answer("the new key", "CreatedKey")}))}},
            "/admin/v1/openapi.json": {"get": {"summary": "This document", "responses": with_errors(json!({"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}))}}
        },
        "components": {
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer", "description": "the configured admin token (role admin) or an admin credential (sk-llmgw-admin-..., its own role; see x-llmgw-roles on each operation). The console authenticates with its session cookie instead, and sends X-CSRF-Token with every change."}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Limits": {"type": "object", "additionalProperties": false, "properties": {
                    "requests_per_minute": limit, "tokens_per_minute": limit, "tokens_per_day": limit, "concurrent": limit
                }},
                "Budget": {"type": ["string", "null"], "pattern": "^[0-9]+(\\.[0-9]{1,9})?$", "description": "USD per month, exact decimal string"},
                "NewTenant": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
                    "monthly_budget_usd": {"$ref": "#/components/schemas/Budget"},
                    "limits": {"$ref": "#/components/schemas/Limits"},
                    "policy": {"$ref": "#/components/schemas/TenantPolicy"}
                }},
                "TenantUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
                    "monthly_budget_usd": {"$ref": "#/components/schemas/Budget"},
                    "limits": {"oneOf": [{"$ref": "#/components/schemas/Limits"}, {"type": "null"}]},
                    "policy": {"$ref": "#/components/schemas/TenantPolicy"}
                }},
                "TenantPolicy": {"type": ["string", "null"], "description": "the tenant's content policy (the database's or the config file's); null: the default policy. An unknown policy is a 400 with param `policy`."},
                "Tenant": {"type": "object", "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"},
                    "status": {"enum": ["active", "disabled"]},
                    "monthly_budget_usd": {"$ref": "#/components/schemas/Budget"},
                    "limits": {"$ref": "#/components/schemas/Limits"},
                    "policy": {"$ref": "#/components/schemas/TenantPolicy"},
                    "created_at": {"type": "integer", "description": "unix ms"},
                    "updated_at": {"type": "integer", "description": "unix ms"}
                }},
                "TenantList": {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Tenant"}}}},
                "NewKey": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "allowed_models": {"type": "array", "items": {"type": "string"}, "description": "empty: every model"},
                    "limits": {"$ref": "#/components/schemas/Limits"},
                    "expires_at": {"type": ["integer", "null"], "description": "unix ms, in the future"}
                }},
                "KeyUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "allowed_models": {"type": "array", "items": {"type": "string"}, "description": "empty: every model"},
                    "limits": {"oneOf": [{"$ref": "#/components/schemas/Limits"}, {"type": "null"}]},
                    "expires_at": {"type": ["integer", "null"], "description": "unix ms, in the future; null: never"}
                }},
                "Key": {"type": "object", "properties": {
                    "id": {"type": "string"}, "tenant_id": {"type": "string"}, "name": {"type": "string"},
                    "prefix": {"type": "string"}, "status": {"enum": ["active", "revoked"]},
                    "allowed_models": {"type": "array", "items": {"type": "string"}},
                    "limits": {"$ref": "#/components/schemas/Limits"},
                    "expires_at": {"type": ["integer", "null"]}, "created_at": {"type": "integer"},
                    "last_used_at": {"type": ["integer", "null"]}, "revoked_at": {"type": ["integer", "null"]}
                }},
                "KeyList": {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}}},
                "CreatedKey": {"type": "object", "properties": {
                    "key": {"$ref": "#/components/schemas/Key"},
                    "secret": {"type": "string", "description": "shown only in this answer"}
                }},
                "Error": error_schema()
            }
        }
    });
    add_usage(&mut document, &with_errors);
    super::openapi_audit::add(&mut document, &with_errors);
    super::openapi_admins::add(&mut document, &with_errors);
    document
}

/// The OpenAI error shape, with the `type` and `code` values listed from
/// the same [`ErrorCode`] mapping the answers are rendered with, so the
/// document cannot drift from them.
fn error_schema() -> Value {
    let mut types: Vec<&str> = ADMIN_CODES.iter().map(|code| code.openai_type()).collect();
    types.sort_unstable();
    types.dedup();
    let mut codes: Vec<Value> = Vec::new();
    for code in ADMIN_CODES {
        let code = code.openai_code().map_or(Value::Null, Value::from);
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    let meaning = ADMIN_CODES
        .iter()
        .map(|code| {
            format!(
                "{} -> type {}, code {}",
                code.http_status().as_u16(),
                code.openai_type(),
                code.openai_code().unwrap_or("null")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    json!({
        "type": "object",
        "required": ["error"],
        "description": format!("Every non-2xx answer, in OpenAI's error shape: {meaning}. A 401 also carries `WWW-Authenticate: Bearer`."),
        "properties": {"error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string", "description": "safe to show; never carries driver errors"},
                "type": {"enum": types},
                "param": {"type": ["string", "null"], "description": "the request field at fault, e.g. limits.concurrent"},
                "code": {"enum": codes}
            }
        }}
    })
}

/// The usage routes, merged in separately: one `json!` literal for the
/// whole document would exceed the macro's recursion limit.
fn add_usage(document: &mut Value, with_errors: &dyn Fn(Value) -> Value) {
    let query = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}});
    let csv = json!({"text/csv": {"schema": {"type": "string"}}});
    let paths = json!({
        "/admin/v1/usage": {"get": {
            "summary": "Usage report from the daily rollup: sums per group and a total (JSON, or CSV with format=csv or Accept: text/csv)",
            "parameters": [
                query("from", "first UTC day, YYYY-MM-DD, inclusive (with `to`; neither: the current month)"),
                query("to", "UTC day YYYY-MM-DD, exclusive; from = to is an empty range; at most 366 days after from"),
                query("tenant", "only this tenant (name)"),
                query("key_id", "only this key"),
                query("group_by", "comma-separated: tenant, key, model, provider, day, month"),
                query("format", "json (default) or csv")
            ],
            "responses": with_errors(json!({"200": {"description": "the report", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/UsageReport"}},
                "text/csv": csv["text/csv"].clone()
            }}}))
        }},
        "/admin/v1/usage/requests/{request_id}": {"get": {
            "summary": "The ledger rows (attempts) of one request",
            "parameters": [{"name": "request_id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": with_errors(json!({"200": {"description": "the attempts", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RequestUsage"}}}}}))
        }},
        "/admin/v1/usage/export": {"get": {
            "summary": "One month of the ledger as CSV, one line per attempt",
            "parameters": [
                {"name": "month", "in": "query", "required": true, "description": "YYYY-MM (UTC)", "schema": {"type": "string"}},
                query("tenant", "only this tenant (name)")
            ],
            "responses": with_errors(json!({"200": {"description": "CSV with a header line", "content": csv}}))
        }}
    });
    let count = json!({"type": "integer", "minimum": 0});
    let sums = json!({"type": "object", "properties": {
        "requests": count, "prompt_tokens": count, "completion_tokens": count,
        "cached_tokens": count, "reasoning_tokens": count,
        "cost_usd": {"type": "string", "description": "exact decimal USD"},
        "cost_nano_usd": count
    }});
    let schemas = json!({
        "UsageSums": sums,
        "UsageReport": {"type": "object", "properties": {
            "from": {"type": "string"}, "to": {"type": "string"},
            "tenant": {"type": ["string", "null"]}, "key_id": {"type": ["string", "null"]},
            "group_by": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": {"description": "the group's fields (tenant, key_id, model, provider, day, month) and UsageSums", "type": "object"}},
            "total": {"$ref": "#/components/schemas/UsageSums"}
        }},
        "RequestUsage": {"type": "object", "properties": {
            "request_id": {"type": "string"},
            "attempts": {"type": "array", "items": {"type": "object", "description": "every UsageEvent field (llmgw.billing.v1), day, and cost_usd"}}
        }}
    });
    for (section, entries) in [
        ("paths", paths),
        ("components", json!({"schemas": schemas})),
    ] {
        merge(&mut document[section], entries);
    }
}

/// Adds `entries` into `target`, recursing into objects both have.
pub(super) fn merge(target: &mut Value, entries: Value) {
    match (target, entries) {
        (Value::Object(target), Value::Object(entries)) => {
            for (name, value) in entries {
                merge(target.entry(name).or_insert(Value::Null), value);
            }
        }
        (target, value) => *target = value,
    }
}
