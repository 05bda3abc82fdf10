//! The `llmgw.router.v1.Router` gRPC service.

use std::sync::Arc;

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use llmgw_proto::ErrorCode;
use llmgw_proto::router_v1::router_server::Router;
use llmgw_proto::router_v1::{
    Billed, ChatEvent, ChatInput, ChatRequest, CountTokensRequest, CountTokensResponse,
    ListModelsRequest, ListModelsResponse, chat_event::Event, chat_input::Input,
};
use tonic::{Request, Response, Status, Streaming};

use crate::State;
use crate::catalog::api_of;
use crate::config::ClientApi;
use crate::provider::ProviderError;
use crate::relay;

pub struct RouterService {
    pub(crate) state: Arc<State>,
}

#[tonic::async_trait]
impl Router for RouterService {
    type ChatStream = BoxStream<'static, Result<ChatEvent, Status>>;

    async fn chat(
        &self,
        request: Request<Streaming<ChatInput>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let mut inputs = request.into_inner();
        let Some(ChatInput {
            input:
                Some(Input::Request(ChatRequest {
                    envelope,
                    openai_request,
                })),
        }) = inputs.message().await?
        else {
            return Err(Status::new(
                ErrorCode::InvalidRequest.grpc_code(),
                "the first message of a chat must be its request",
            ));
        };
        let envelope = envelope.ok_or_else(|| {
            Status::new(ErrorCode::InvalidRequest.grpc_code(), "missing envelope")
        })?;
        let span = tracing::info_span!(
            "router.chat",
            request_id = %envelope.request_id,
            tenant = %envelope.tenant,
            key_id = %envelope.key_id,
            model = %envelope.model,
            stream = envelope.stream,
            api = api_of(envelope.api()).as_str(),
        );

        // A call whose usage could not be recorded is not served.
        if !self.state.usage.has_room() {
            return Ok(Response::new(
                futures_util::stream::iter([Ok(error_event(
                    ErrorCode::Unavailable,
                    "the usage spool is full (billing has been unreachable for long); retry later"
                        .to_owned(),
                ))])
                .boxed(),
            ));
        }
        // Nor is a call whose answer's audit events could not be kept.
        // Embeddings answer vectors: no text for a policy to read.
        let api = api_of(envelope.api());
        let policy = match api {
            ClientApi::Embeddings => None,
            ClientApi::Chat | ClientApi::Messages => {
                relay::answer_policy(&self.state, &envelope.tenant)
            }
        };
        if policy.is_some() && !self.state.audit.has_room() {
            return Ok(Response::new(
                futures_util::stream::iter([Ok(error_event(
                    ErrorCode::Unavailable,
                    "the audit spool is full (billing has been unreachable for long); retry later"
                        .to_owned(),
                ))])
                .boxed(),
            ));
        }
        let Some(route) = self.state.catalog.resolve(&envelope.model) else {
            let event = error_event(
                ErrorCode::ModelNotFound,
                format!("The model `{}` does not exist", envelope.model),
            );
            return Ok(Response::new(
                futures_util::stream::iter([Ok(event)]).boxed(),
            ));
        };
        // The edge checks this against its copy of the catalog; a catalog
        // changed since is caught here.
        if !route.serves(api) {
            let event = error_event(
                ErrorCode::InvalidRequest,
                format!(
                    "The model `{}` does not serve the {} API",
                    envelope.model,
                    api.as_str()
                ),
            );
            return Ok(Response::new(
                futures_util::stream::iter([Ok(event)]).boxed(),
            ));
        }
        let events = relay::relay(
            self.state.clone(),
            route.clone(),
            envelope,
            openai_request,
            policy,
            span,
            cancel_asked(inputs),
        );
        Ok(Response::new(events.boxed()))
    }

    async fn count_tokens(
        &self,
        request: Request<CountTokensRequest>,
    ) -> Result<Response<CountTokensResponse>, Status> {
        let request = request.into_inner();
        let span = tracing::info_span!(
            "router.count_tokens",
            request_id = request
                .envelope
                .as_ref()
                .map_or("", |e| e.request_id.as_str()),
        );
        let counted =
            tracing::Instrument::instrument(crate::count_tokens::count(&self.state, request), span)
                .await;
        Ok(Response::new(counted))
    }

    async fn list_models(
        &self,
        _request: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        Ok(Response::new(ListModelsResponse {
            models: self.state.catalog.models(),
        }))
    }
}

/// Completes when the edge sends a cancel. An edge that closes its side
/// without one, or breaks the stream, never asks: a broken stream drops the
/// whole call anyway.
async fn cancel_asked(mut inputs: Streaming<ChatInput>) {
    loop {
        match inputs.message().await {
            Ok(Some(ChatInput {
                input: Some(Input::Cancel(_)),
            })) => return,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => std::future::pending::<()>().await,
        }
    }
}

/// A call answered by one error event (nothing was billed).
fn error_event(code: ErrorCode, message: String) -> ChatEvent {
    ChatEvent {
        billed: Some(Billed::default()),
        event: Some(Event::Error(ProviderError::new(code, message).into_proto())),
    }
}
