//! The edge's link to the quota service: Acquires and Settles over one
//! long-lived `Quota.Session` stream instead of an HTTP/2 stream (headers,
//! interceptors, a task on each side) per call. Acquires are tagged with an
//! id and answered in any order; settles waiting to be sent go out
//! together in one message.
//!
//! The session opens on first use and again after it ends. When it ends
//! cleanly (the quota service is shutting down: it answers every call it
//! read, then ends the stream), the Acquires it had not read are sent again
//! on a new session, since the service never saw them. When it breaks, the
//! waiting Acquires fail as a unary call would, and the caller applies its
//! `on_quota_unreachable` policy. A quota service without `Session` (an
//! older version during a rolling upgrade) is called unary from then on.
//!
//! A quota service in the same process (`llmgw all`) is called unary: a
//! call there is a function call in the caller's task, and a session would
//! add four task switches (the session's tasks on both sides) to each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use llmgw_grpc::Channel;
use llmgw_proto::quota_v1::quota_client::QuotaClient;
use llmgw_proto::quota_v1::{
    AcquireRequest, AcquireResponse, SessionAnswer, SessionCall, SettleRequest, TraceContext,
    TracedSettle,
};
use llmgw_telemetry::MessageTrace;
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};
use tracing::Instrument as _;

/// At most this many settles in one message.
const MAX_SETTLES_PER_MESSAGE: usize = 512;

pub struct QuotaLink {
    client: QuotaClient<Channel>,
    session: Mutex<Option<Arc<Session>>>,
    next_id: AtomicU64,
    /// The quota service has no `Session`: unary calls from now on.
    unary: AtomicBool,
}

/// One open session.
struct Session {
    calls: mpsc::UnboundedSender<Outgoing>,
    /// Acquires sent and not answered yet. `None` once the session has
    /// ended: nothing may wait on it any more.
    waiting: Mutex<Option<HashMap<u64, oneshot::Sender<Answer>>>>,
}

enum Outgoing {
    Acquire(SessionCall),
    Settle(TracedSettle),
}

/// What an Acquire sent on a session came to.
enum Answer {
    Answered(Result<AcquireResponse, Status>),
    /// The session ended cleanly before the service read the call.
    NotRead,
}

impl QuotaLink {
    pub fn new(client: QuotaClient<Channel>, sessions: bool) -> QuotaLink {
        QuotaLink {
            client,
            session: Mutex::new(None),
            next_id: AtomicU64::new(1),
            unary: AtomicBool::new(!sessions),
        }
    }

    pub async fn acquire(&self, request: AcquireRequest) -> Result<AcquireResponse, Status> {
        // A session that ends cleanly hands its unread calls back; one more
        // try on the next session (or unary) is enough: ends are rare.
        for _ in 0..2 {
            if self.unary.load(Ordering::Relaxed) {
                break;
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (answer, answered) = oneshot::channel();
            let call = SessionCall {
                id,
                acquire: Some(request.clone()),
                trace: trace_context(),
                settles: Vec::new(),
            };
            let session = self.session();
            if !session.wait_for(id, answer) || session.calls.send(Outgoing::Acquire(call)).is_err()
            {
                continue; // That session just ended: the next one.
            }
            match answered.await {
                Ok(Answer::Answered(Err(status))) if status.code() == Code::Unimplemented => {
                    self.unary.store(true, Ordering::Relaxed);
                }
                Ok(Answer::Answered(result)) => return result,
                Ok(Answer::NotRead) => {}
                Err(_) => return Err(Status::unavailable("quota session ended")),
            }
        }
        let mut client = self.client.clone();
        client
            .acquire(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Sends a settle without waiting: a lost one is released by its lease
    /// timeout, as with a failed unary Settle.
    pub fn settle(&self, request: SettleRequest) {
        if self.unary.load(Ordering::Relaxed) {
            return self.settle_unary(request);
        }
        let settle = TracedSettle {
            settle: Some(request),
            trace: trace_context(),
        };
        // The session just ended: the settle comes back, and goes unary.
        if let Err(mpsc::error::SendError(Outgoing::Settle(TracedSettle {
            settle: Some(request),
            ..
        }))) = self.session().calls.send(Outgoing::Settle(settle))
        {
            self.settle_unary(request);
        }
    }

    fn settle_unary(&self, request: SettleRequest) {
        let mut client = self.client.clone();
        tokio::spawn(
            async move {
                if let Err(status) = client.settle(request).await {
                    tracing::debug!(error = %status, "quota settle failed; the lease timeout will release it");
                }
            }
            .in_current_span(),
        );
    }

    /// The open session, opened if there is none.
    fn session(&self) -> Arc<Session> {
        let mut slot = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(session) = slot.as_ref().filter(|session| session.is_open()) {
            return session.clone();
        }
        let (calls, outgoing) = mpsc::unbounded_channel();
        let session = Arc::new(Session {
            calls,
            waiting: Mutex::new(Some(HashMap::new())),
        });
        *slot = Some(session.clone());
        // Not under any request's span: the session outlives the request
        // that happened to open it.
        tokio::spawn(
            run(self.client.clone(), session.clone(), outgoing).instrument(tracing::Span::none()),
        );
        session
    }
}

impl Session {
    fn is_open(&self) -> bool {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Registers a waiting Acquire; false once the session has ended.
    fn wait_for(&self, id: u64, answer: oneshot::Sender<Answer>) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        match waiting.as_mut() {
            Some(waiting) => {
                waiting.insert(id, answer);
                true
            }
            None => false,
        }
    }

    fn answer(&self, id: u64, answer: Answer) {
        let waiter = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .and_then(|waiting| waiting.remove(&id));
        if let Some(waiter) = waiter {
            // The caller may have stopped waiting (its timeout): fine.
            let _ = waiter.send(answer);
        }
    }

    /// Ends the session: every Acquire still waiting gets `why`.
    fn end(&self, why: impl Fn() -> Answer) {
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        for (_, waiter) in waiting.into_iter().flatten() {
            let _ = waiter.send(why());
        }
    }
}

/// Runs one session until its stream ends.
async fn run(
    mut client: QuotaClient<Channel>,
    session: Arc<Session>,
    outgoing: mpsc::UnboundedReceiver<Outgoing>,
) {
    let opened = client.session(batched(outgoing)).await;
    let mut answers = match opened {
        Ok(answers) => answers.into_inner(),
        Err(status) => {
            session.end(|| Answer::Answered(Err(status.clone())));
            return;
        }
    };
    let ended = loop {
        match answers.message().await {
            Ok(Some(answer)) => session.answer(answer.id, Answer::Answered(result(answer))),
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    match ended {
        // Every call the service read was answered: the rest go again.
        None => session.end(|| Answer::NotRead),
        Some(status) => {
            tracing::debug!(error = %status, "quota session broken");
            session.end(|| Answer::Answered(Err(status.clone())));
        }
    }
}

/// The calls as the session's request stream: each Acquire in a message of
/// its own (sent at once), settles that are waiting together in one.
fn batched(
    outgoing: mpsc::UnboundedReceiver<Outgoing>,
) -> impl futures_util::Stream<Item = SessionCall> + Send + 'static {
    futures_util::stream::unfold(
        (outgoing, None::<SessionCall>),
        |(mut outgoing, held)| async move {
            if let Some(call) = held {
                return Some((call, (outgoing, None)));
            }
            let mut call = match outgoing.recv().await? {
                Outgoing::Acquire(call) => return Some((call, (outgoing, None))),
                Outgoing::Settle(settle) => SessionCall {
                    settles: vec![settle],
                    ..SessionCall::default()
                },
            };
            let mut held = None;
            while call.settles.len() < MAX_SETTLES_PER_MESSAGE {
                match outgoing.try_recv() {
                    Ok(Outgoing::Settle(settle)) => call.settles.push(settle),
                    Ok(Outgoing::Acquire(acquire)) => {
                        held = Some(acquire);
                        break;
                    }
                    Err(_) => break,
                }
            }
            Some((call, (outgoing, held)))
        },
    )
}

fn result(answer: SessionAnswer) -> Result<AcquireResponse, Status> {
    match answer.acquire {
        Some(response) => Ok(response),
        None => Err(Status::new(Code::from_i32(answer.code), answer.message)),
    }
}

/// The current request's trace context, for the message (the session's own
/// headers carry none).
fn trace_context() -> Option<TraceContext> {
    let MessageTrace {
        traceparent,
        tracestate,
    } = MessageTrace::current();
    (!traceparent.is_empty()).then_some(TraceContext {
        traceparent,
        tracestate,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::AtomicUsize;

    use futures_util::Stream;
    use llmgw_proto::quota_v1::quota_server::{Quota, QuotaServer};
    use llmgw_proto::quota_v1::{SettleResponse, Subject};
    use tokio::net::TcpListener;
    use tonic::{Request, Response, Streaming};

    use super::*;

    /// A quota service that grants everything and counts what it was asked.
    #[derive(Default)]
    struct Fake {
        /// Without `Session`, as a quota service before it had one.
        no_session: bool,
        sessions: AtomicUsize,
        unary_acquires: AtomicUsize,
        unary_settles: AtomicUsize,
        session_settles: Arc<AtomicUsize>,
    }

    fn granted() -> AcquireResponse {
        AcquireResponse {
            allowed: true,
            ..AcquireResponse::default()
        }
    }

    /// The served side of a [`Fake`] the test keeps a handle on.
    struct Served(Arc<Fake>);

    #[tonic::async_trait]
    impl Quota for Served {
        async fn acquire(
            &self,
            _: Request<AcquireRequest>,
        ) -> Result<Response<AcquireResponse>, Status> {
            self.0.unary_acquires.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(granted()))
        }

        async fn settle(
            &self,
            _: Request<SettleRequest>,
        ) -> Result<Response<SettleResponse>, Status> {
            self.0.unary_settles.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(SettleResponse {}))
        }

        type SessionStream = Pin<Box<dyn Stream<Item = Result<SessionAnswer, Status>> + Send>>;

        /// The first session answers one call, then ends cleanly (as a
        /// replica shutting down does); later ones answer every call.
        async fn session(
            &self,
            request: Request<Streaming<SessionCall>>,
        ) -> Result<Response<Self::SessionStream>, Status> {
            if self.0.no_session {
                return Err(Status::unimplemented("no Session here"));
            }
            let first = self.0.sessions.fetch_add(1, Ordering::SeqCst) == 0;
            let settles = self.0.session_settles.clone();
            let answers = futures_util::stream::unfold(
                (request.into_inner(), first, false),
                move |(mut calls, first, answered)| {
                    let settles = settles.clone();
                    async move {
                        if first && answered {
                            return None;
                        }
                        loop {
                            let call = calls.message().await.ok()??;
                            settles.fetch_add(call.settles.len(), Ordering::SeqCst);
                            if call.acquire.is_some() {
                                let answer = SessionAnswer {
                                    id: call.id,
                                    acquire: Some(granted()),
                                    ..SessionAnswer::default()
                                };
                                return Some((Ok(answer), (calls, first, true)));
                            }
                        }
                    }
                },
            );
            Ok(Response::new(Box::pin(answers)))
        }
    }

    async fn serve(fake: Arc<Fake>) -> QuotaLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let routes = tonic::service::Routes::new(QuotaServer::new(Served(fake)));
        tokio::spawn(llmgw_grpc::serve(
            routes,
            String::new,
            listener,
            std::future::pending(),
        ));
        QuotaLink::new(QuotaClient::new(llmgw_grpc::channel(&url).unwrap()), true)
    }

    fn acquire_request(id: &str) -> AcquireRequest {
        AcquireRequest {
            request_id: id.to_owned(),
            subject: Some(Subject {
                tenant: "t".to_owned(),
                key_id: "k".to_owned(),
                model: "m".to_owned(),
            }),
            ..AcquireRequest::default()
        }
    }

    #[tokio::test]
    async fn calls_a_quota_service_without_sessions_unary() {
        let fake = Arc::new(Fake {
            no_session: true,
            ..Fake::default()
        });
        let link = serve(fake.clone()).await;
        for id in ["a", "b", "c"] {
            assert!(link.acquire(acquire_request(id)).await.unwrap().allowed);
        }
        link.settle(SettleRequest::default());
        // Asked for a session once, then unary only.
        assert_eq!(fake.unary_acquires.load(Ordering::SeqCst), 3);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while fake.unary_settles.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the settle never came"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn calls_a_session_did_not_read_go_on_the_next_one() {
        let fake = Arc::new(Fake::default());
        let link = Arc::new(serve(fake.clone()).await);
        // Many at once: the first session answers one and ends, the rest
        // are answered on the next session, none fails, none goes unary.
        let calls: Vec<_> = (0..20)
            .map(|n| {
                let link = link.clone();
                tokio::spawn(async move { link.acquire(acquire_request(&n.to_string())).await })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().unwrap().allowed);
        }
        assert_eq!(fake.unary_acquires.load(Ordering::SeqCst), 0);
        assert!(fake.sessions.load(Ordering::SeqCst) >= 2);
        // Settles waiting together leave in one message.
        for _ in 0..10 {
            link.settle(SettleRequest::default());
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while fake.session_settles.load(Ordering::SeqCst) < 10 {
            assert!(std::time::Instant::now() < deadline, "settles lost");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(fake.unary_settles.load(Ordering::SeqCst), 0);
    }
}
