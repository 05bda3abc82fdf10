//! The in-process transport behaves like a port: a call to a server that is
//! registered but not serving yet waits for it; a stopping server refuses
//! new calls while the open ones (streams included) run to their end, and
//! `serve` returns only once they have; a stopped server refuses calls.

mod support;

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt as _};
use llmgw_grpc::{InProcessListener, Listener};
use llmgw_proto::router_v1::router_client::RouterClient;
use llmgw_proto::router_v1::router_server::{Router, RouterServer};
use llmgw_proto::router_v1::{
    ChatEvent, ChatInput, CountTokensRequest, CountTokensResponse, ListModelsRequest,
    ListModelsResponse, chat_event::Event,
};
use support::within;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

/// Lets every other task of the (current-thread) test runtime run until it
/// waits: what "still pending" is checked after, without a clock.
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

/// Answers every chat with one chunk per input message and ends the answer
/// when the caller closes its half.
struct Echo {
    entered: Arc<Notify>,
}

#[tonic::async_trait]
impl Router for Echo {
    type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatEvent, Status>> + Send>>;

    async fn chat(
        &self,
        request: Request<Streaming<ChatInput>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        self.entered.notify_one();
        let inputs = request.into_inner();
        let events = inputs.map(|input| {
            input.map(|_| ChatEvent {
                billed: None,
                event: Some(Event::Chunk("echo".into())),
            })
        });
        Ok(Response::new(Box::pin(events)))
    }

    async fn list_models(
        &self,
        _request: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        Ok(Response::new(ListModelsResponse::default()))
    }

    async fn count_tokens(
        &self,
        _request: Request<CountTokensRequest>,
    ) -> Result<Response<CountTokensResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

struct Server {
    url: String,
    entered: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    listener: Option<Listener>,
}

impl Server {
    /// Registered, not serving yet.
    async fn bound() -> Server {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let in_process = InProcessListener::bind("echo");
        Server {
            url: in_process.url(),
            entered: Arc::new(Notify::new()),
            stop: None,
            task: None,
            listener: Some(Listener::new(tcp, Some(in_process))),
        }
    }

    fn serve(&mut self) {
        let (stop, stopped) = oneshot::channel::<()>();
        let routes = Routes::new(RouterServer::new(Echo {
            entered: self.entered.clone(),
        }));
        let listener = self.listener.take().expect("not serving yet");
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(llmgw_grpc::serve(
            routes,
            || "# EOF\n".to_owned(),
            listener,
            async {
                let _ = stopped.await;
            },
        )));
    }

    async fn serving() -> Server {
        let mut server = Server::bound().await;
        server.serve();
        server
    }

    fn stop(&mut self) {
        let _ = self.stop.take().expect("serving").send(());
    }

    fn is_finished(&self) -> bool {
        self.task.as_ref().expect("serving").is_finished()
    }

    async fn stopped(&mut self) {
        within("the server stops", self.task.take().expect("serving"))
            .await
            .expect("server task")
            .expect("server ran");
    }

    fn client(&self) -> RouterClient<llmgw_grpc::Channel> {
        RouterClient::new(llmgw_grpc::channel(&self.url).expect("channel"))
    }
}

/// A chat call whose input half stays open until `inputs` is dropped, its
/// first chunk read.
async fn open_chat(
    client: &mut RouterClient<llmgw_grpc::Channel>,
) -> (mpsc::Sender<ChatInput>, Streaming<ChatEvent>) {
    let (inputs, receiver) = mpsc::channel(4);
    inputs
        .send(ChatInput::default())
        .await
        .expect("room for one input");
    let call = client.chat(Request::new(stream_of(receiver)));
    let mut events = within("open the call", call)
        .await
        .expect("the call opens")
        .into_inner();
    assert!(next_chunk(&mut events).await.is_some(), "the first chunk");
    (inputs, events)
}

/// A new call's refusal.
async fn refusal(client: &mut RouterClient<llmgw_grpc::Channel>, what: &str) -> Status {
    within(what, client.list_models(ListModelsRequest::default()))
        .await
        .expect_err(what)
}

fn stream_of(receiver: mpsc::Receiver<ChatInput>) -> impl Stream<Item = ChatInput> {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|input| (input, receiver))
    })
}

async fn next_chunk(events: &mut Streaming<ChatEvent>) -> Option<ChatEvent> {
    within("the next event", events.message())
        .await
        .expect("the answer streams")
}

#[tokio::test]
async fn a_call_before_the_server_serves_waits_for_it() {
    let mut server = Server::bound().await;
    let mut client = server.client();
    let call = tokio::spawn(async move { client.list_models(ListModelsRequest::default()).await });
    settle().await;
    assert!(!call.is_finished(), "the call waits for the server");

    server.serve();
    within("the call", call)
        .await
        .expect("call task")
        .expect("answered once the server serves");
    server.stop();
    server.stopped().await;
}

#[tokio::test]
async fn a_stopping_server_refuses_new_calls_and_drains_open_streams() {
    let mut server = Server::serving().await;
    let mut client = server.client();
    let (inputs, mut events) = open_chat(&mut client).await;

    server.stop();
    settle().await;
    let refused = refusal(&mut client, "a stopping server takes no new call").await;
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(!server.is_finished(), "the open stream holds the drain");

    // The stream goes on while the server drains.
    inputs
        .send(ChatInput::default())
        .await
        .expect("the input half is open");
    assert!(
        next_chunk(&mut events).await.is_some(),
        "a chunk during the drain"
    );
    drop(inputs);
    assert!(next_chunk(&mut events).await.is_none(), "the answer ends");
    server.stopped().await;

    let refused = refusal(&mut server.client(), "a stopped server answers nothing").await;
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
}

#[tokio::test]
async fn a_caller_dropping_its_answer_ends_the_call_for_the_drain() {
    let mut server = Server::serving().await;
    let mut client = server.client();
    let (inputs, events) = open_chat(&mut client).await;
    within("the handler runs", server.entered.notified()).await;

    server.stop();
    settle().await;
    assert!(!server.is_finished(), "the open stream holds the drain");
    // The caller goes away without reading to the end (its input half
    // still open): the server must not wait for it.
    drop(events);
    server.stopped().await;
    drop(inputs);
}

#[tokio::test]
async fn a_call_to_an_unknown_address_is_refused() {
    let mut client = RouterClient::new(llmgw_grpc::channel("inproc://nobody-1").expect("channel"));
    let refused = refusal(&mut client, "nobody serves the address").await;
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("inproc://nobody-1"),
        "{refused:?}"
    );
}
