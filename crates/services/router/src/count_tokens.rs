//! `Router.CountTokens`: the input tokens of a Messages request, for
//! `POST /v1/messages/count_tokens`. An Anthropic deployment is asked (its
//! own count is exact); for OpenAI-compatible ones, or when Anthropic
//! cannot be asked, the request is counted with our tokenizer as the chat
//! request it would be translated to, and flagged `estimated`. Nothing is
//! billed: Anthropic does not charge for counting either.

use std::time::Duration;

use llmgw_proto::ErrorCode;
use llmgw_proto::router_v1::{CountTokensRequest, CountTokensResponse};
use serde::Deserialize;

use crate::State;
use crate::catalog::Deployment;
use crate::config::{ClientApi, Provider};
use crate::provider::{ClientHeaders, ProviderError, anthropic, model_field};
use crate::relay::prompt_tokens;

#[derive(Debug, Deserialize)]
struct Counted {
    input_tokens: u64,
}

pub(crate) async fn count(state: &State, request: CountTokensRequest) -> CountTokensResponse {
    let envelope = request.envelope.unwrap_or_default();
    let Some(route) = state
        .catalog
        .resolve_for(&envelope.model, ClientApi::Messages)
    else {
        return failed(ProviderError::new(
            ErrorCode::ModelNotFound,
            format!(
                "The model `{}` does not exist or does not serve the Messages API",
                envelope.model
            ),
        ));
    };
    let order = route.deployment_order(&mut fastrand::Rng::new());
    let Some(deployment) = order.first().and_then(|i| route.deployments.get(*i)) else {
        return failed(ProviderError::new(ErrorCode::Internal, "no deployment"));
    };
    if deployment.provider == Provider::Anthropic {
        let headers = ClientHeaders {
            anthropic_version: Some(envelope.anthropic_version.as_str()).filter(|v| !v.is_empty()),
            anthropic_beta: Some(envelope.anthropic_beta.as_str()).filter(|b| !b.is_empty()),
        };
        match ask(state, deployment, &request.body, &headers).await {
            Ok(input_tokens) => {
                return CountTokensResponse {
                    input_tokens,
                    estimated: false,
                    error: None,
                };
            }
            // A request Anthropic refuses is the client's to fix.
            Err(error) if !error.is_retryable() => return failed(error),
            Err(error) => tracing::info!(
                deployment = %deployment.name,
                code = error.code.as_str_name(),
                "count_tokens: the provider could not count; estimating"
            ),
        }
    }
    let model = deployment.upstream_model.clone();
    let body = request.body;
    let counted =
        tokio::task::spawn_blocking(move || prompt_tokens(ClientApi::Messages, &model, &body))
            .await;
    match counted {
        Ok(input_tokens) => CountTokensResponse {
            input_tokens,
            estimated: true,
            error: None,
        },
        Err(_) => failed(ProviderError::new(
            ErrorCode::Internal,
            "the gateway could not count the tokens",
        )),
    }
}

/// Anthropic's own count (`POST {base_url}/messages/count_tokens`).
async fn ask(
    state: &State,
    deployment: &Deployment,
    body: &[u8],
    headers: &ClientHeaders<'_>,
) -> Result<u64, ProviderError> {
    let url = deployment
        .count_tokens_url
        .as_ref()
        .ok_or_else(|| ProviderError::new(ErrorCode::Internal, "no count_tokens endpoint"))?;
    let body = model_field::replace(body, &deployment.upstream_model)?;
    let wait = Duration::from_millis(deployment.timeouts.first_byte_ms);
    let response = anthropic::send(&state.client, deployment, url, body, wait, headers).await?;
    let answer = tokio::time::timeout(wait, response.bytes())
        .await
        .map_err(|_| crate::provider::upstream_error::timeout())?
        .map_err(|error| crate::provider::upstream_error::transport_error(deployment, &error))?;
    let counted: Counted = serde_json::from_slice(&answer)
        .map_err(|_| crate::provider::upstream_error::invalid_json())?;
    Ok(counted.input_tokens)
}

fn failed(error: ProviderError) -> CountTokensResponse {
    CountTokensResponse {
        input_tokens: 0,
        estimated: false,
        error: Some(error.into_proto()),
    }
}
