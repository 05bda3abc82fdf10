//! `/admin/v1/word-lists`: named lists of terms that policies' `words`
//! rules refer to. `PUT` replaces a list (`{"terms": [...]}`), `POST
//! .../terms` adds terms, `POST .../terms:remove` removes some; terms are
//! trimmed, deduplicated and kept in byte order. A list stored here
//! overrides the config file's of the same name (adding to or removing from
//! a list only the file has starts from the file's terms); deleting a list
//! a policy in force uses (and the file does not define) is a 409.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body::{self, Field, typed};
use super::error::ApiError;
use super::{AdminState, check_name_in};
use crate::store::Actor;
use crate::store::word_lists::{TermEdit, WordListInfo, normalize_terms};

type Shared = State<Arc<AdminState>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Terms {
    terms: Vec<String>,
}

const TERMS_FIELDS: &[Field] = &[Field {
    name: "terms",
    check: typed::<Vec<String>>,
    required: true,
}];

fn view(info: &WordListInfo, overrides_config: bool) -> Value {
    json!({
        "name": info.name,
        "source": "database",
        "overrides_config": overrides_config,
        "term_count": info.term_count,
        "updated_at": info.updated_at,
    })
}

/// `GET /admin/v1/word-lists`: the lists in force (without their terms).
pub async fn list(State(state): Shared) -> Result<Json<Value>, ApiError> {
    let stored = state
        .store
        .list_word_lists()
        .await
        .map_err(|error| ApiError::store(error, None))?;
    let defaults = state.store.policy_defaults();
    let mut data: BTreeMap<&str, Value> = defaults
        .word_lists
        .iter()
        .map(|(name, terms)| {
            let view = json!({
                "name": name,
                "source": "config",
                "overrides_config": false,
                "term_count": terms.len(),
                "updated_at": null,
            });
            (name.as_str(), view)
        })
        .collect();
    for info in &stored {
        let overrides = defaults.word_lists.contains_key(&info.name);
        data.insert(&info.name, view(info, overrides));
    }
    Ok(Json(
        json!({ "data": data.into_values().collect::<Vec<_>>() }),
    ))
}

/// `GET /admin/v1/word-lists/{name}`: the list in force, with its terms.
pub async fn get(State(state): Shared, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let stored = state
        .store
        .get_word_list(&name)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    let defaults = state.store.policy_defaults();
    let overrides = defaults.word_lists.contains_key(&name);
    match (stored, defaults.word_lists.get(&name)) {
        (Some((info, terms)), _) => {
            let mut view = view(&info, overrides);
            view["terms"] = json!(terms);
            Ok(Json(view))
        }
        (None, Some(terms)) => Ok(Json(json!({
            "name": name,
            "source": "config",
            "overrides_config": false,
            "term_count": terms.len(),
            "updated_at": null,
            "terms": terms,
        }))),
        (None, None) => Err(no_list(&name)),
    }
}

/// `PUT /admin/v1/word-lists/{name}`: creates (201) or replaces (200).
pub async fn put(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_name_in("word list", "name", &name)?;
    let terms = terms(&body)?;
    let (info, created) = state
        .store
        .put_word_list(&name, &terms, &by)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    tracing::info!(word_list = %name, terms = info.term_count, created, "word list stored");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let overrides = state.store.policy_defaults().word_lists.contains_key(&name);
    Ok((status, Json(view(&info, overrides))))
}

/// `POST /admin/v1/word-lists/{name}/terms`: adds terms (those present
/// already are ignored).
pub async fn add(
    state: Shared,
    by: Extension<Actor>,
    name: Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    edit(state, by, name, body, TermEdit::Add).await
}

/// `POST /admin/v1/word-lists/{name}/terms:remove`: removes terms (those
/// absent are ignored).
pub async fn remove(
    state: Shared,
    by: Extension<Actor>,
    name: Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    edit(state, by, name, body, TermEdit::Remove).await
}

async fn edit(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    Path(name): Path<String>,
    body: Bytes,
    edit: TermEdit,
) -> Result<Json<Value>, ApiError> {
    let terms = terms(&body)?;
    let info = state
        .store
        .edit_word_list(&name, edit, &terms, &by)
        .await
        .map_err(|error| ApiError::store(error, None))?
        .ok_or_else(|| no_list(&name))?;
    tracing::info!(word_list = %name, terms = info.term_count, ?edit, "word list edited");
    let overrides = state.store.policy_defaults().word_lists.contains_key(&name);
    Ok(Json(view(&info, overrides)))
}

/// `DELETE /admin/v1/word-lists/{name}`: the deleted list (without terms).
pub async fn delete(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let deleted = state
        .store
        .delete_word_list(&name, &by)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    let falls_back = state.store.policy_defaults().word_lists.contains_key(&name);
    let Some(info) = deleted else {
        if falls_back {
            return Err(ApiError::conflict(format!(
                "word list {name:?} is defined in the config file; only the admin API's lists \
                 can be deleted here"
            )));
        }
        return Err(no_list(&name));
    };
    tracing::info!(word_list = %name, "word list deleted");
    let mut view = view(&info, false);
    view["deleted"] = json!(true);
    view["falls_back_to_config"] = json!(falls_back);
    Ok(Json(view))
}

/// The body's terms, checked and normalized (an error names `terms[i]`).
pub(super) fn terms(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let request: Terms = body::parse(body, TERMS_FIELDS)?;
    normalize_terms(request.terms).map_err(|error| ApiError::store(error, None))
}

fn no_list(name: &str) -> ApiError {
    ApiError::not_found(format!("no word list {name:?}"))
}
