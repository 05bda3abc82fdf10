//! `Quota.Session`: Acquires and Settles over one long-lived stream per
//! edge connection. Each call is handled in a task of its own, so a slow
//! Redis answer holds up nobody else and concurrent scripts go to Redis
//! pipelined on its one multiplexed connection; answers go back as they
//! complete, tagged with the call's id.
//!
//! Shutdown: the server's graceful shutdown waits for open calls, and a
//! session never ends by itself. So when the server starts stopping, each
//! session stops reading, answers what it has read and ends its stream; the
//! edge then sends what it had not sent on a new session (to another
//! replica, or over unary calls).

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use llmgw_proto::quota_v1::{SessionAnswer, SessionCall, TracedSettle};
use llmgw_telemetry::MessageTrace;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};
use tracing::Instrument as _;

use crate::service::{self, State};

/// The answers of one session, in completion order.
pub type Answers = Pin<Box<dyn Stream<Item = Result<SessionAnswer, Status>> + Send>>;

/// Answers waiting to be written; a full buffer pauses reading calls, so a
/// client that stops reading answers cannot make the service buffer more.
const ANSWER_BUFFER: usize = 1024;

pub fn start(
    state: Arc<State>,
    mut calls: Streaming<SessionCall>,
    stopping: CancellationToken,
) -> Answers {
    let (answers, receiver) = mpsc::channel(ANSWER_BUFFER);
    tokio::spawn(async move {
        loop {
            let call = tokio::select! {
                // Checked first: once stopping, no new call is read.
                biased;
                () = stopping.cancelled() => break,
                call = calls.message() => call,
            };
            match call {
                Ok(Some(call)) => handle(&state, call, &answers).await,
                // The edge closed the session.
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(error = %status, "quota session ended by a transport error");
                    break;
                }
            }
        }
        // The stream ends once the calls already read are answered: each
        // holds a clone of `answers`.
    });
    Box::pin(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|answer| (answer, receiver)) },
    ))
}

async fn handle(
    state: &Arc<State>,
    call: SessionCall,
    answers: &mpsc::Sender<Result<SessionAnswer, Status>>,
) {
    let SessionCall {
        id,
        acquire,
        trace,
        settles,
    } = call;
    for TracedSettle { settle, trace } in settles {
        let Some(settle) = settle else { continue };
        let span = message_span("/llmgw.quota.v1.Quota/Settle", trace)
            .in_scope(|| service::settle_span(&settle));
        let state = state.clone();
        tokio::spawn(
            async move {
                if let Err(status) = service::settle(&state, settle).await {
                    tracing::debug!(error = %status, "quota session: invalid settle dropped");
                }
            }
            .instrument(span),
        );
    }
    let Some(acquire) = acquire else { return };
    // Waits while the answer buffer is full (see ANSWER_BUFFER).
    let Ok(permit) = answers.clone().reserve_owned().await else {
        return; // The session's answers are no longer read.
    };
    let span = message_span("/llmgw.quota.v1.Quota/Acquire", trace)
        .in_scope(|| service::acquire_span(&acquire));
    let state = state.clone();
    tokio::spawn(
        async move {
            let answer = match service::acquire(&state, acquire).await {
                Ok(answer) => SessionAnswer {
                    id,
                    acquire: Some(answer),
                    ..SessionAnswer::default()
                },
                Err(status) => SessionAnswer {
                    id,
                    acquire: None,
                    code: status.code() as i32,
                    message: status.message().to_owned(),
                },
            };
            permit.send(Ok(answer));
        }
        .instrument(span),
    );
}

fn message_span(
    rpc: &'static str,
    trace: Option<llmgw_proto::quota_v1::TraceContext>,
) -> tracing::Span {
    let trace = trace.map_or_else(MessageTrace::default, |trace| MessageTrace {
        traceparent: trace.traceparent,
        tracestate: trace.tracestate,
    });
    llmgw_telemetry::message_span(rpc, &trace)
}
