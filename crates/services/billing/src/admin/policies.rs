//! `/admin/v1/policies`: content policies. The body of a PUT is a
//! `PolicySpec` (the config file's `policy.policies.<name>` schema),
//! validated by compiling it with the engine against the word lists in
//! force; errors name the rule in `param` (`rules[2]`). A policy stored
//! here overrides the config file's of the same name; deleting it falls
//! back to the file's. Deleting a policy a tenant or the default uses (and
//! the file does not define) is a 409.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use llmgw_policy::{Policy, PolicyError, PolicySpec, RuleSpec};
use serde::Deserialize as _;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{AdminState, check_name, check_name_in};
use crate::store::Actor;
use crate::store::policies::StoredPolicy;

type Shared = State<Arc<AdminState>>;

/// More rules than any sane policy has: bounds what one compile costs.
const MAX_RULES: usize = 1_000;

/// `GET /admin/v1/policies`: the policies in force, the database's and the
/// config file's (those the database overrides are marked).
pub async fn list(State(state): Shared) -> Result<Json<Value>, ApiError> {
    let stored = state
        .store
        .list_policies()
        .await
        .map_err(|error| ApiError::store(error, None))?;
    let defaults = state.store.policy_defaults();
    let mut data: BTreeMap<&str, Value> = defaults
        .policies
        .iter()
        .map(|(name, spec)| (name.as_str(), summary(name, "config", false, spec, None)))
        .collect();
    for policy in &stored {
        let overrides = defaults.policies.contains_key(&policy.name);
        data.insert(
            &policy.name,
            summary(
                &policy.name,
                "database",
                overrides,
                &policy.spec,
                Some(policy.updated_at),
            ),
        );
    }
    let default = (!defaults.default.is_empty()).then_some(defaults.default.as_str());
    Ok(Json(json!({
        "default": default,
        "data": data.into_values().collect::<Vec<_>>(),
    })))
}

fn summary(
    name: &str,
    source: &str,
    overrides_config: bool,
    spec: &PolicySpec,
    updated_at: Option<i64>,
) -> Value {
    json!({
        "name": name,
        "source": source,
        "overrides_config": overrides_config,
        "rules": spec.rules.len(),
        "updated_at": updated_at,
    })
}

/// `GET /admin/v1/policies/{name}`: the policy in force by that name, its
/// spec and the tenants assigned it.
pub async fn get(State(state): Shared, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let stored = state
        .store
        .get_policy(&name)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    let tenants = state
        .store
        .tenants_with_policy(&name)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    let defaults = state.store.policy_defaults();
    let view = match (&stored, defaults.policies.get(&name)) {
        (Some(policy), file) => detail(&state, policy, file.is_some(), &tenants),
        (None, Some(spec)) => {
            let mut view = summary(&name, "config", false, spec, None);
            view["spec"] = json!(spec);
            view["is_default"] = json!(defaults.default == name);
            view["tenants"] = json!(tenants);
            view
        }
        (None, None) => return Err(no_policy(&name)),
    };
    Ok(Json(view))
}

fn detail(state: &AdminState, policy: &StoredPolicy, overrides: bool, tenants: &[String]) -> Value {
    let mut view = summary(
        &policy.name,
        "database",
        overrides,
        &policy.spec,
        Some(policy.updated_at),
    );
    view["spec"] = json!(policy.spec);
    view["is_default"] = json!(state.store.policy_defaults().default == policy.name);
    view["tenants"] = json!(tenants);
    view
}

/// `PUT /admin/v1/policies/{name}`: creates (201) or replaces (200).
pub async fn put(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_name_in("policy", "name", &name)?;
    let spec = parse_spec(&body)?;
    validate(&state, &name, &spec).await?;
    let (stored, created) = state
        .store
        .put_policy(&name, &spec, &by)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    let tenants = state
        .store
        .tenants_with_policy(&name)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    let overrides = state.store.policy_defaults().policies.contains_key(&name);
    tracing::info!(policy = %name, rules = spec.rules.len(), created, "policy stored");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(detail(&state, &stored, overrides, &tenants))))
}

/// `DELETE /admin/v1/policies/{name}`: the deleted policy.
pub async fn delete(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let deleted = state
        .store
        .delete_policy(&name, &by)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    let defaults = state.store.policy_defaults();
    let Some(deleted) = deleted else {
        if defaults.policies.contains_key(&name) {
            return Err(ApiError::conflict(format!(
                "policy {name:?} is defined in the config file; only the admin API's policies \
                 can be deleted here"
            )));
        }
        return Err(no_policy(&name));
    };
    tracing::info!(policy = %name, "policy deleted");
    let mut view = summary(
        &name,
        "database",
        false,
        &deleted.spec,
        Some(deleted.updated_at),
    );
    view["spec"] = json!(deleted.spec);
    view["deleted"] = json!(true);
    view["falls_back_to_config"] = json!(defaults.policies.contains_key(&name));
    Ok(Json(view))
}

fn no_policy(name: &str) -> ApiError {
    ApiError::not_found(format!("no policy {name:?}"))
}

/// Parses a `PolicySpec`, naming the field at fault: a top-level field, or
/// `rules[i]` for a rule serde refuses.
pub(super) fn parse_spec(body: &[u8]) -> Result<PolicySpec, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid(format!("malformed JSON body: {error}")))?;
    let Value::Object(fields) = &value else {
        return Err(ApiError::invalid(
            "the request body must be a policy: a JSON object with `rules`",
        ));
    };
    PolicySpec::deserialize(&value).map_err(|error| {
        for (name, field) in fields {
            match name.as_str() {
                "audit_excerpts" if !field.is_boolean() => {
                    return ApiError::invalid_param(name.clone(), "audit_excerpts: a boolean");
                }
                "rules" => {
                    let Some(rules) = field.as_array() else {
                        return ApiError::invalid_param("rules", "rules: an array of rules");
                    };
                    for (index, rule) in rules.iter().enumerate() {
                        if let Err(error) = RuleSpec::deserialize(rule) {
                            return ApiError::invalid_param(
                                format!("rules[{index}]"),
                                format!("rules[{index}]: {error}"),
                            );
                        }
                    }
                }
                "audit_excerpts" => {}
                other => {
                    return ApiError::invalid_param(
                        other,
                        format!("unknown field {other:?}, expected audit_excerpts or rules"),
                    );
                }
            }
        }
        if !fields.contains_key("rules") {
            return ApiError::invalid_param("rules", "missing required field rules");
        }
        ApiError::invalid(error.to_string())
    })
}

/// What the engine and the audit trail need of a spec: unique rule ids in
/// the name alphabet, and that it compiles against the word lists in
/// force (the database's over the config file's).
async fn validate(state: &AdminState, name: &str, spec: &PolicySpec) -> Result<(), ApiError> {
    check_rules(spec)?;
    let defaults = state.store.policy_defaults();
    let mut word_lists = BTreeMap::new();
    for list in spec.rules.iter().flat_map(|rule| &rule.word_lists) {
        if word_lists.contains_key(list) {
            continue;
        }
        let stored = state
            .store
            .get_word_list(list)
            .await
            .map_err(|error| ApiError::store(error, None))?;
        let terms = match (stored, defaults.word_lists.get(list)) {
            (Some((_, terms)), _) => terms,
            (None, Some(terms)) => terms.clone(),
            // Left out: the compile names the rule that refers to it.
            (None, None) => continue,
        };
        word_lists.insert(list.clone(), terms);
    }
    // Large word lists take the engine tens of milliseconds: off the
    // runtime's threads. The key only matters for hashes of matches; none
    // are made here.
    let (owned_name, owned_spec) = (name.to_owned(), spec.clone());
    let compiled = tokio::task::spawn_blocking(move || {
        Policy::compile(&owned_name, &owned_spec, &word_lists, &[0u8; 32]).map(drop)
    })
    .await
    .map_err(|error| {
        tracing::error!(error = %error, "compiling a policy panicked");
        ApiError::internal()
    })?;
    compiled.map_err(|error| compile_error(spec, &error))
}

/// What needs no database: the rule count, and unique rule ids in the name
/// alphabet.
pub(super) fn check_rules(spec: &PolicySpec) -> Result<(), ApiError> {
    if spec.rules.len() > MAX_RULES {
        return Err(ApiError::invalid_param(
            "rules",
            format!("rules: at most {MAX_RULES} rules"),
        ));
    }
    for (index, rule) in spec.rules.iter().enumerate() {
        let param = format!("rules[{index}].id");
        check_name("rule", &rule.id).map_err(|error| error.with_param(param.clone()))?;
        if spec.rules[..index].iter().any(|other| other.id == rule.id) {
            return Err(ApiError::invalid_param(
                param,
                format!("rule id {:?} is used twice", rule.id),
            ));
        }
    }
    Ok(())
}

/// A compile error, naming the rule at fault.
pub(super) fn compile_error(spec: &PolicySpec, error: &PolicyError) -> ApiError {
    let param = match error {
        PolicyError::Rule { rule, .. } => spec
            .rules
            .iter()
            .position(|candidate| &candidate.id == rule)
            .map_or_else(|| "rules".to_owned(), |index| format!("rules[{index}]")),
        _ => "rules".to_owned(),
    };
    ApiError::invalid_param(param, error.to_string())
}
