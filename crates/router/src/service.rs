//! The `llmgw.router.v1.Router` gRPC service.

use std::sync::Arc;

use llmgw_proto::ErrorCode;
use llmgw_proto::router_v1::router_server::Router;
use llmgw_proto::router_v1::{
    ChatEvent, ChatRequest, ListModelsRequest, ListModelsResponse, chat_event::Event,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::State;
use crate::provider::ProviderError;
use crate::relay;

/// Events buffered per call before backpressure reaches the upstream read.
const CHAT_BUFFER: usize = 16;

pub struct RouterService {
    pub(crate) state: Arc<State>,
}

#[tonic::async_trait]
impl Router for RouterService {
    type ChatStream = ReceiverStream<Result<ChatEvent, Status>>;

    async fn chat(
        &self,
        request: Request<ChatRequest>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let headers = request.metadata().as_ref().clone();
        let ChatRequest {
            envelope,
            openai_request,
        } = request.into_inner();
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
        );
        llmgw_telemetry::set_parent_from(&span, &headers);

        let (tx, rx) = mpsc::channel(CHAT_BUFFER);
        match self.state.catalog.resolve(&envelope.model) {
            Some(deployment) => {
                let call = relay::relay(
                    self.state.clone(),
                    deployment.clone(),
                    envelope,
                    openai_request,
                    tx,
                );
                tokio::spawn(call.instrument(span));
            }
            None => {
                let error = ProviderError::new(
                    ErrorCode::ModelNotFound,
                    format!("The model `{}` does not exist", envelope.model),
                );
                let event = ChatEvent {
                    event: Some(Event::Error(error.into_proto())),
                };
                // The receiver is still ours: this cannot fail.
                let _ = tx.try_send(Ok(event));
            }
        }
        Ok(Response::new(ReceiverStream::new(rx)))
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
