//! The OpenAPI description of the audit, policy and word-list routes,
//! merged into the document built in `openapi.rs` (one `json!` literal for
//! everything would exceed the macro's recursion limit).

use serde_json::{Value, json};

use super::openapi::merge;

pub(super) fn add(document: &mut Value, with_errors: &dyn Fn(Value) -> Value) {
    let query = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}});
    let name_param = |what: &str| json!({"name": "name", "in": "path", "required": true, "description": format!("{what} name"), "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}});
    let json_answer = |description: &str, schema: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let json_body = |schema: &str| json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let paging = [
        query(
            "from",
            "from this time on (inclusive): unix ms or a UTC day YYYY-MM-DD",
        ),
        query(
            "to",
            "before this time (exclusive): unix ms or a UTC day YYYY-MM-DD",
        ),
        query(
            "limit",
            "rows of a JSON page, 1 to 1000 (default 100); for CSV the most rows exported (default: all)",
        ),
        query("cursor", "the previous page's next_cursor"),
        query(
            "format",
            "json (default) or csv (also chosen by Accept: text/csv): CSV exports every matching row from the cursor on",
        ),
    ];
    let with_paging = |filters: Vec<Value>| {
        let mut all = filters;
        all.extend(paging.iter().cloned());
        Value::Array(all)
    };
    let csv_or = |schema: &str| {
        json!({"200": {"description": "newest first", "content": {
            "application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}},
            "text/csv": {"schema": {"type": "string"}}
        }}})
    };
    let paths = json!({
        "/admin/v1/audit": {"get": {
            "summary": "Content-policy hits recorded by the edge (input) and the routers (output), newest first",
            "parameters": with_paging(vec![
                query("tenant", "only this tenant"),
                query("key_id", "only this API key"),
                query("rule_id", "only this rule"),
                query("action", "block, redact or flag"),
                query("direction", "input or output"),
                query("policy", "only this policy"),
                query("request_id", "only this request"),
                query("match_hash", "only matches of this value (its keyed hash)"),
            ]),
            "responses": with_errors(csv_or("AuditPage"))
        }},
        "/admin/v1/audit/admin": {"get": {
            "summary": "The admin-action trail: every change made through this API, newest first",
            "parameters": with_paging(vec![
                query("actor", "only this admin token id (admin:<12 hex digits>)"),
                query("action", "e.g. tenant.create, key.revoke, policy.update, word_list.add_terms"),
                query("target", "e.g. tenant:<id>, key:<id>, policy:<name>, word_list:<name>"),
            ]),
            "responses": with_errors(csv_or("AdminAuditPage"))
        }},
        "/admin/v1/policies": {"get": {
            "summary": "The content policies in force: the database's and the config file's",
            "responses": with_errors(json!({"200": json_answer("policies", "PolicyList")}))
        }},
        "/admin/v1/policies/{name}": {
            "parameters": [name_param("policy")],
            "get": {"summary": "A policy, its rules and the tenants assigned it", "responses": with_errors(json!({"200": json_answer("the policy", "Policy")}))},
            "put": {
                "summary": "Create or replace a policy (validated by compiling it; an error names the rule in param, e.g. rules[2]); overrides the config file's of the same name",
                "requestBody": json_body("PolicySpec"),
                "responses": with_errors(json!({"200": json_answer("replaced", "Policy"), "201": json_answer("created", "Policy")}))
            },
            "delete": {"summary": "Delete a policy of the database (409 while a tenant or the default uses it, unless the config file defines it)", "responses": with_errors(json!({"200": json_answer("the deleted policy", "Policy")}))}
        },
        "/admin/v1/word-lists": {"get": {
            "summary": "The word lists in force (without terms)",
            "responses": with_errors(json!({"200": json_answer("word lists", "WordListList")}))
        }},
        "/admin/v1/word-lists/{name}": {
            "parameters": [name_param("word list")],
            "get": {"summary": "A word list with its terms", "responses": with_errors(json!({"200": json_answer("the list", "WordList")}))},
            "put": {"summary": "Create a word list or replace all its terms", "requestBody": json_body("Terms"), "responses": with_errors(json!({"200": json_answer("replaced", "WordList"), "201": json_answer("created", "WordList")}))},
            "delete": {"summary": "Delete a word list of the database (409 while a policy in force uses it, unless the config file defines it)", "responses": with_errors(json!({"200": json_answer("the deleted list", "WordList")}))}
        },
        "/admin/v1/word-lists/{name}/terms": {
            "parameters": [name_param("word list")],
            "post": {"summary": "Add terms (present ones are ignored); a list only the config file has is copied first", "requestBody": json_body("Terms"), "responses": with_errors(json!({"200": json_answer("the list", "WordList")}))}
        },
        "/admin/v1/word-lists/{name}/terms:remove": {
            "parameters": [name_param("word list")],
            "post": {"summary": "Remove terms (absent ones are ignored)", "requestBody": json_body("Terms"), "responses": with_errors(json!({"200": json_answer("the list", "WordList")}))}
        }
    });
    let text = json!({"type": "string"});
    let ms = json!({"type": "integer", "description": "unix ms"});
    let next = json!({"type": ["string", "null"], "description": "pass as cursor for the next page; null on the last"});
    let schemas = json!({
        "AuditEvent": {"type": "object", "description": "one content-policy hit (llmgw.billing.v1.AuditEvent); never the matched text", "properties": {
            "request_id": text, "attempt": {"type": "integer", "description": "0: found by the edge; 1..: the router's upstream attempt"},
            "sequence": {"type": "integer"}, "tenant": text, "key_id": text, "model": text, "policy": text,
            "rule_id": text, "rule_kind": text, "direction": {"enum": ["input", "output"]},
            "action": {"enum": ["block", "redact", "flag"]}, "location": text,
            "offset": {"type": "integer", "description": "byte offset of the match"}, "length": {"type": "integer"},
            "match_hash": {"type": "string", "description": "keyed hash (HMAC-SHA-256, hex) of the normalised match"},
            "excerpt": {"type": "string", "description": "empty unless the policy sets audit_excerpts; the match masked"},
            "occurred_at_ms": ms
        }},
        "AuditPage": {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}}, "next_cursor": next}},
        "AdminAction": {"type": "object", "properties": {
            "id": {"type": "integer"}, "at": ms,
            "actor": {"type": "string", "description": "admin:<first 12 hex digits of the token's SHA-256>"},
            "client_address": {"type": "string", "description": "the TCP peer, ip:port"},
            "action": text, "target": text,
            "before": {"description": "the object before the change (null: it did not exist); never a secret"},
            "after": {"description": "the object after the change (null: deleted); never a secret"}
        }},
        "AdminAuditPage": {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/AdminAction"}}, "next_cursor": next}},
        "PolicySpec": {"type": "object", "additionalProperties": false, "required": ["rules"], "description": "the config file's policy.policies.<name> schema (crate llmgw-policy)", "properties": {
            "audit_excerpts": {"type": "boolean", "description": "keep a short excerpt (match masked) in audit events"},
            "rules": {"type": "array", "items": {"$ref": "#/components/schemas/RuleSpec"}}
        }},
        "RuleSpec": {"type": "object", "additionalProperties": false, "required": ["id", "kind", "action"], "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
            "kind": {"enum": ["words", "email", "phone", "resident_id", "bank_card", "ipv4", "secret", "regex"]},
            "direction": {"enum": ["input", "output", "both"], "default": "both"},
            "action": {"enum": ["block", "redact", "flag"]},
            "mask": {"type": "string"},
            "terms": {"type": "array", "items": {"type": "string"}},
            "word_lists": {"type": "array", "items": {"type": "string"}},
            "pattern": {"type": "string"},
            "skip_separators": {"type": "boolean"},
            "fold_chinese_variants": {"type": "boolean"}
        }},
        "Policy": {"type": "object", "properties": {
            "name": text, "source": {"enum": ["database", "config"]},
            "overrides_config": {"type": "boolean"}, "rules": {"type": "integer"},
            "updated_at": {"type": ["integer", "null"]}, "spec": {"$ref": "#/components/schemas/PolicySpec"},
            "is_default": {"type": "boolean"}, "tenants": {"type": "array", "items": text}
        }},
        "PolicyList": {"type": "object", "properties": {
            "default": {"type": ["string", "null"], "description": "the config file's default policy"},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Policy"}}
        }},
        "Terms": {"type": "object", "additionalProperties": false, "required": ["terms"], "properties": {
            "terms": {"type": "array", "items": {"type": "string", "maxLength": 256}, "description": "trimmed and deduplicated; no empty terms or control characters; at most 1,000,000"}
        }},
        "WordList": {"type": "object", "properties": {
            "name": text, "source": {"enum": ["database", "config"]}, "overrides_config": {"type": "boolean"},
            "term_count": {"type": "integer"}, "updated_at": {"type": ["integer", "null"]},
            "terms": {"type": "array", "items": text, "description": "GET of one list only"}
        }},
        "WordListList": {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/WordList"}}}}
    });
    merge(&mut document["paths"], paths);
    merge(&mut document["components"], json!({ "schemas": schemas }));
}
