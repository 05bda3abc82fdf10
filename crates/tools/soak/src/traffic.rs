//! The soak's clients: workers sending mixed JSON and streamed requests
//! from every key, some asking the mock for a fault, some leaving a stream
//! early. Each request is tagged for the mock (`mock.tag`), and what the
//! client saw (the edge's request id, status, when it ran) is kept for the
//! reconciliation.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::Stop;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::cluster::KEYS;

/// Words that are one token each in the router's BPEs (a leading space, a
/// common word), so the router's estimate of a cut answer counts exactly
/// the pieces the mock produced.
const PIECES: [&str; 16] = [
    " one", " two", " three", " four", " five", " six", " seven", " eight", " nine", " ten",
    " red", " green", " blue", " black", " white", " time",
];

/// What a request asked of the mock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Json,
    Stream,
    /// A stream the client drops after a few events.
    Disconnect,
    Fault(&'static str),
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Stream => "stream",
            Kind::Disconnect => "client disconnect",
            Kind::Fault(fault) => fault,
        }
    }
}

/// One request as the client saw it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub tag: String,
    pub kind: Kind,
    /// The edge's `x-request-id` (none when the edge was not reached).
    pub request_id: Option<String>,
    pub status: u16,
    /// Seconds since the run began.
    pub started: f64,
    pub ended: f64,
}

#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Sent>>>);

impl Log {
    fn push(&self, sent: Sent) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sent);
    }

    pub fn take(&self) -> Vec<Sent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Runs `workers` clients against `edge` until `stop`.
pub async fn run(edge: String, workers: usize, begun: Instant, stop: Stop, log: Log) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        // A stall is ended by the router's timeouts; this only guards the
        // client against a gateway bug.
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client");
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (client, edge, stop, log) =
                (client.clone(), edge.clone(), stop.clone(), log.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.is_stopped() {
                    n += 1;
                    let tag = format!("soak-{worker}-{n}");
                    let sent = one(&client, &edge, tag, begun).await;
                    log.push(sent);
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

fn pick_kind() -> Kind {
    match fastrand::u32(0..100) {
        0..=39 => Kind::Stream,
        40..=72 => Kind::Json,
        73..=80 => Kind::Disconnect,
        81..=84 => Kind::Fault("429"),
        85..=88 => Kind::Fault("500"),
        89 => Kind::Fault("stall-first-byte"),
        90..=91 => Kind::Fault("stall-mid-stream"),
        _ => Kind::Fault("truncate"),
    }
}

async fn one(client: &reqwest::Client, edge: &str, tag: String, begun: Instant) -> Sent {
    let kind = pick_kind();
    let (key, _) = KEYS[fastrand::usize(..KEYS.len())];
    let pieces: Vec<&str> = (0..fastrand::usize(4..40))
        .map(|_| PIECES[fastrand::usize(..PIECES.len())])
        .collect();
    let stream = match kind {
        Kind::Json => false,
        Kind::Stream | Kind::Disconnect => true,
        Kind::Fault("stall-mid-stream" | "truncate") => true,
        Kind::Fault(_) => fastrand::bool(),
    };
    let mut mock = json!({"tag": tag, "content": pieces, "chunk_delay_ms": fastrand::u64(0..20)});
    if let Kind::Fault(fault) = kind {
        mock["fault"] = json!(fault);
    }
    let body = json!({
        "model": "mock",
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
        "messages": [{"role": "user", "content": format!("soak request {tag}: tell me things")}],
        "mock": mock,
    });
    let started = begun.elapsed().as_secs_f64();
    let response = client
        .post(format!("{edge}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await;
    let mut sent = Sent {
        tag,
        kind,
        request_id: None,
        status: 0,
        started,
        ended: started,
    };
    let Ok(response) = response else {
        sent.ended = begun.elapsed().as_secs_f64();
        return sent;
    };
    sent.status = response.status().as_u16();
    sent.request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let mut body = response.bytes_stream();
    let mut events = 0;
    while let Some(Ok(bytes)) = body.next().await {
        events += bytes.windows(2).filter(|pair| pair == b"\n\n").count();
        if kind == Kind::Disconnect && events >= 3 {
            break;
        }
    }
    drop(body);
    sent.ended = begun.elapsed().as_secs_f64();
    sent
}
