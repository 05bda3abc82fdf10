//! `GET /v1/models` and `GET /v1/models/{id}`: the aliases a key may use,
//! in OpenAI's shape, or in Anthropic's when the request carries
//! `anthropic-version` (as the Anthropic SDKs' `models.list()` do).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse as _, Json, Response};
use http::HeaderMap;
use llmgw_openai::{ModelList, ModelObject};
use llmgw_proto::ErrorCode;
use llmgw_proto::router_v1::Model;
use serde_json::json;

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

/// Anthropic's models carry a creation date; the catalog has none, so
/// every alias reports the Unix epoch (as OpenAI's shape reports 0).
const CREATED_AT: &str = "1970-01-01T00:00:00Z";

pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let anthropic = wants_anthropic(&headers);
    let models = match visible(&state, &headers).await {
        Ok(models) => models,
        Err(error) => return respond_error(error, anthropic),
    };
    if anthropic {
        let data: Vec<_> = models.iter().map(anthropic_model).collect();
        return Json(json!({
            "data": data,
            "has_more": false,
            "first_id": models.first().map(|model| &model.alias),
            "last_id": models.last().map(|model| &model.alias),
        }))
        .into_response();
    }
    Json(ModelList {
        object: "list".to_owned(),
        data: models.iter().map(openai_model).collect(),
    })
    .into_response()
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let anthropic = wants_anthropic(&headers);
    let models = match visible(&state, &headers).await {
        Ok(models) => models,
        Err(error) => return respond_error(error, anthropic),
    };
    let Some(model) = models.iter().find(|model| model.alias == id) else {
        let shown: String = id.chars().take(64).collect();
        let error = ApiError::new(
            ErrorCode::ModelNotFound,
            format!("The model `{shown}` does not exist or you do not have access to it."),
        )
        .with_param("model");
        return respond_error(error, anthropic);
    };
    if anthropic {
        Json(anthropic_model(model)).into_response()
    } else {
        Json(openai_model(model)).into_response()
    }
}

fn wants_anthropic(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
}

fn respond_error(error: ApiError, anthropic: bool) -> Response {
    if anthropic {
        error.into_anthropic_response()
    } else {
        error.into_response()
    }
}

/// The aliases the caller's key may use, sorted.
async fn visible(state: &AppState, headers: &HeaderMap) -> Result<Vec<Model>, ApiError> {
    let principal: Principal = state.keys.authenticate(headers).await?;
    let Some(models) = state.catalog.current() else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "the gateway is starting; retry the request",
        ));
    };
    let mut visible: Vec<Model> = models
        .values()
        .filter(|model| principal.may_use(&model.alias))
        .cloned()
        .collect();
    visible.sort_by(|a, b| a.alias.cmp(&b.alias));
    Ok(visible)
}

fn openai_model(model: &Model) -> ModelObject {
    ModelObject {
        id: model.alias.clone(),
        object: "model".to_owned(),
        created: 0,
        owned_by: model.owned_by.clone(),
    }
}

fn anthropic_model(model: &Model) -> serde_json::Value {
    json!({
        "type": "model",
        "id": model.alias,
        "display_name": model.alias,
        "created_at": CREATED_AT,
    })
}
