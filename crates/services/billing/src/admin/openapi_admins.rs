//! The OpenAPI description of the admin-credential routes, and each
//! operation's roles (`x-llmgw-roles`, from the same table `roles` enforces),
//! merged into the document built in `openapi.rs`.

use http::Method;
use serde_json::{Value, json};

use super::openapi::merge;
use super::roles;

pub(super) fn add(document: &mut Value, with_errors: &dyn Fn(Value) -> Value) {
    let answer = |description: &str, schema: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let paths = json!({
        "/admin/v1/admins": {
            "get": {"summary": "List admin credentials (never their text)", "responses": with_errors(json!({"200": answer("credentials", "AdminCredentialList")}))},
            "post": {"summary": "Create an admin credential with a role; its text is shown once", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewAdminCredential"}}}}, "responses": with_errors(json!({"201": answer("created", "CreatedAdminCredential")}))}
        },
        "/admin/v1/admins/{credential}/revoke": {
            "parameters": [{"name": "credential", "in": "path", "required": true, "description": "credential id or name", "schema": {"type": "string"}}],
            "post": {"summary": "Revoke an admin credential; its console sessions end", "responses": with_errors(json!({"200": answer("revoked", "AdminCredential")}))}
        }
    });
    let role = json!({"enum": ["admin", "finance", "auditor"], "description": "admin: everything; finance: read usage, tenants (budgets) and exports; auditor: read usage and the audit trails"});
    let schemas = json!({
        "NewAdminCredential": {"type": "object", "additionalProperties": false, "required": ["name", "role"], "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$", "description": "never reused, even after a revocation"},
            "role": role
        }},
        "AdminCredential": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "role": role,
            "prefix": {"type": "string"}, "status": {"enum": ["active", "revoked"]},
            "created_at": {"type": "integer"}, "last_used_at": {"type": ["integer", "null"]},
            "revoked_at": {"type": ["integer", "null"]}
        }},
        "AdminCredentialList": {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/AdminCredential"}}}},
        "CreatedAdminCredential": {"type": "object", "properties": {
            "credential": {"$ref": "#/components/schemas/AdminCredential"},
            "secret": {"type": "string", "description": "sk-llmgw-admin-...; shown only in this answer"}
        }}
    });
    merge(&mut document["paths"], paths);
    merge(&mut document["components"], json!({"schemas": schemas}));
    merge(
        &mut document["components"]["responses"],
        json!({"Forbidden": {"description": "the credential's role may not call this route, or a console change lacks its CSRF token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}),
    );
    add_roles(document);
}

/// Each operation's `x-llmgw-roles` and, where some role is refused, its
/// 403 answer.
fn add_roles(document: &mut Value) {
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (name, method) in [
            ("get", Method::GET),
            ("post", Method::POST),
            ("put", Method::PUT),
            ("patch", Method::PATCH),
            ("delete", Method::DELETE),
        ] {
            let Some(operation) = item.get_mut(name) else {
                continue;
            };
            let allowed = roles::roles_for(&method, path);
            if allowed.len() < 3 {
                operation["responses"]["403"] = json!({"$ref": "#/components/responses/Forbidden"});
            }
            operation["x-llmgw-roles"] = json!(allowed);
        }
    }
}
