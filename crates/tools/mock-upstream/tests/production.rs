//! Per-request production records (`mock.tag`, `GET /stats/requests`).

use llmgw_mock_upstream::Config;
use serde_json::{Value, json};

mod support;
use support::{Server, hello};

async fn production(server: &Server, tag: &str) -> (u16, Value) {
    let response = server
        .client
        .get(format!("{}/stats/requests/{tag}", server.base))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn tagged_requests_record_what_was_produced() {
    let server = Server::start(Config::default()).await;
    // A whole stream: every chunk, [DONE], the usage's tokens.
    let body = server
        .chat(hello(
            json!({"stream": true, "mock": {"chunks": 5, "tag": "whole"}}),
        ))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    let (status, whole) = production(&server, "whole").await;
    assert_eq!(status, 200);
    assert_eq!(whole["status"], 200);
    assert_eq!(whole["stream"], true);
    assert_eq!(whole["completion_tokens"], 5);
    assert_eq!(whole["finished"], true);
    // Role, five pieces, finish, [DONE].
    assert_eq!(whole["events"], 8);
    assert_eq!(whole["bytes"], body.len());

    // A truncated stream: half the pieces, not finished.
    let _ = server
        .chat(hello(
            json!({"stream": true, "mock": {"chunks": 6, "fault": "truncate", "tag": "cut"}}),
        ))
        .send()
        .await
        .expect("send")
        .text()
        .await;
    let (_, cut) = production(&server, "cut").await;
    assert_eq!(cut["completion_tokens"], 3, "{cut}");
    assert_eq!(cut["finished"], false, "{cut}");
    assert_eq!(cut["fault"], "truncate", "{cut}");

    // A refused request produced nothing; JSON answers are whole at once.
    let refused = server
        .chat(hello(json!({"mock": {"fault": "429", "tag": "refused"}})))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 429);
    let (_, refused) = production(&server, "refused").await;
    assert_eq!(refused["status"], 429);
    assert_eq!(refused["completion_tokens"], 0);
    assert_eq!(refused["prompt_tokens"], 0);
    let _ = server
        .chat(hello(json!({"mock": {"chunks": 4, "tag": "json"}})))
        .send()
        .await
        .expect("send");
    let (_, json_answer) = production(&server, "json").await;
    assert_eq!(json_answer["completion_tokens"], 4);
    assert_eq!(json_answer["prompt_tokens"], 4);
    assert_eq!(json_answer["finished"], true);

    // Untagged requests are not recorded; a reset forgets the rest.
    let _ = server.chat(hello(json!({}))).send().await.expect("send");
    let all: Value = server
        .client
        .get(format!("{}/stats/requests", server.base))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(all.as_object().map(|table| table.len()), Some(4), "{all}");
    let _ = server
        .client
        .post(format!("{}/stats/reset", server.base))
        .send()
        .await
        .expect("reset");
    assert_eq!(production(&server, "whole").await.0, 404);
}
