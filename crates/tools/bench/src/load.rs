//! Closed-loop load: N workers, each sending its next request as soon as the
//! previous one finished (so offered load adapts to the server's speed).

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PROMPT: &str = "Say hello to the benchmark.";
const DONE_MARKER: &[u8] = b"data: [DONE]";
/// How an Anthropic Messages stream ends: the data of `message_stop`.
const MESSAGE_STOP_MARKER: &[u8] = br#""type":"message_stop"}"#;

/// The client API the load speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// OpenAI chat completions: `POST {url}/chat/completions`, Bearer key.
    #[default]
    Chat,
    /// Anthropic Messages: `POST {url}/messages`, `x-api-key`.
    Messages,
}
/// Enough trailing bytes to find the `[DONE]` marker plus trailing blank lines.
const TAIL_KEEP: usize = 64;
/// How many bytes of an error response body to keep as a sample.
const ERROR_BODY_SAMPLE: usize = 300;
/// The longest `Retry-After` a worker honours (the SDKs' own cap).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Everything needed to send one request; shared read-only by all workers.
pub struct Target {
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    /// Serialised once: building JSON per request would be load-generator
    /// overhead showing up in the gateway's latency numbers.
    body: Bytes,
    stream: bool,
    api: Api,
    honour_retry_after: bool,
}

pub struct TargetConfig<'a> {
    pub base_url: &'a str,
    pub key: Option<String>,
    pub model: &'a str,
    pub stream: bool,
    pub chunks: Option<u32>,
    pub concurrency: usize,
    pub timeout: Duration,
    pub api: Api,
    pub honour_retry_after: bool,
}

impl Target {
    pub fn new(cfg: TargetConfig<'_>) -> Result<Self> {
        let client = reqwest::Client::builder()
            // HTTP/1.1 with one pooled connection per worker, like typical SDK
            // clients; HTTP/2 multiplexing would measure something else.
            .http1_only()
            .pool_max_idle_per_host(cfg.concurrency)
            .tcp_nodelay(true)
            // Targets are local; an inherited HTTP(S)_PROXY would silently
            // put a proxy into every measurement.
            .no_proxy()
            .timeout(cfg.timeout)
            .build()
            .context("building HTTP client")?;
        let path = match cfg.api {
            Api::Chat => "chat/completions",
            Api::Messages => "messages",
        };
        Ok(Self {
            client,
            url: format!("{}/{path}", cfg.base_url.trim_end_matches('/')),
            key: cfg.key,
            body: Bytes::from(request_body(cfg.api, cfg.model, cfg.stream, cfg.chunks)?),
            stream: cfg.stream,
            api: cfg.api,
            honour_retry_after: cfg.honour_retry_after,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

fn request_body(api: Api, model: &str, stream: bool, chunks: Option<u32>) -> Result<Vec<u8>> {
    let mut body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 64,
    });
    if let Some(chunks) = chunks {
        // Read by the mock upstream; the gateway passes unknown fields through.
        body["mock"] = serde_json::json!({ "chunks": chunks });
    }
    if stream {
        body["stream"] = true.into();
        // Messages streams always end with their usage.
        if api == Api::Chat {
            body["stream_options"] = serde_json::json!({ "include_usage": true });
        }
    }
    serde_json::to_vec(&body).context("serialising request body")
}

/// A failed request: `kind` groups errors for the summary, `detail` is one
/// example kept so the user can see *why* (e.g. the gateway's error body).
struct Failure {
    kind: String,
    detail: String,
    /// A 429 or 503's `Retry-After`, in whole seconds.
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    fn from_reqwest(stage: &str, err: &reqwest::Error) -> Self {
        let kind = if err.is_timeout() {
            "timeout"
        } else if err.is_connect() {
            "connect error"
        } else if err.is_body() || err.is_decode() {
            "body error"
        } else {
            "request error"
        };
        // The Display of reqwest errors hides the root cause; walk the chain.
        let mut detail = format!("{stage}: {err}");
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            detail.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        Self::new(kind, detail)
    }
}

struct Success {
    latency_us: u64,
    ttfb_us: u64,
}

/// Sends one request and reads the full body.
async fn send_one(target: &Target) -> Result<Success, Failure> {
    let start = Instant::now();
    let mut req = target
        .client
        .post(&target.url)
        .header(CONTENT_TYPE, "application/json")
        .body(target.body.clone());
    if target.stream {
        req = req.header(ACCEPT, "text/event-stream");
    }
    match (&target.key, target.api) {
        (Some(key), Api::Chat) => req = req.bearer_auth(key),
        (Some(key), Api::Messages) => req = req.header("x-api-key", key),
        (None, _) => {}
    }
    if target.api == Api::Messages {
        req = req.header("anthropic-version", "2023-06-01");
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Failure::from_reqwest("send", &e))?;

    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        let retry_after = retry_after(status, resp.headers());
        // Read the body anyway: it usually says what is wrong (bad key, unknown
        // model), and draining lets the connection go back to the pool.
        let body = resp.bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_SAMPLE)]);
        // One line per error kind in the summary, even for HTML error pages.
        let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        return Err(Failure {
            retry_after,
            ..Failure::new(format!("HTTP {status}"), one_line)
        });
    }

    let mut body = resp.bytes_stream();
    let mut ttfb = None;
    let mut tail: Vec<u8> = Vec::with_capacity(TAIL_KEEP * 2);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Failure::from_reqwest("reading body", &e))?;
        if chunk.is_empty() {
            continue;
        }
        ttfb.get_or_insert_with(|| start.elapsed());
        // Only the end matters for the [DONE] check; keep memory bounded.
        tail.extend_from_slice(&chunk);
        if tail.len() > TAIL_KEEP * 2 {
            tail.drain(..tail.len() - TAIL_KEEP);
        }
    }
    let latency = start.elapsed();

    let complete = match target.api {
        Api::Chat => ends_with_done(&tail),
        Api::Messages => tail.trim_ascii_end().ends_with(MESSAGE_STOP_MARKER),
    };
    if target.stream && !complete {
        let shown = String::from_utf8_lossy(&tail);
        return Err(Failure::new(
            "stream without its end",
            format!("stream ended with: {:?}", shown.trim()),
        ));
    }
    Ok(Success {
        latency_us: micros(latency),
        ttfb_us: micros(ttfb.unwrap_or(latency)),
    })
}

/// A 429 or 503's `Retry-After` in seconds, capped at [`MAX_RETRY_AFTER`]
/// (the HTTP-date form is not sent by the gateways measured here).
fn retry_after(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> Option<Duration> {
    if !matches!(status.as_u16(), 429 | 503) {
        return None;
    }
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// True if the SSE body's last event is `data: [DONE]`.
fn ends_with_done(tail: &[u8]) -> bool {
    tail.trim_ascii_end().ends_with(DONE_MARKER)
}

/// Error kind -> how many, plus the first example seen.
#[derive(Debug, Default, Clone)]
pub struct ErrorGroup {
    pub count: u64,
    pub sample: String,
}

/// Results of one phase (warm-up or measured), merged over workers.
#[derive(Debug, Default)]
pub struct PhaseResult {
    pub elapsed: Duration,
    /// Sorted ascending.
    pub latencies_us: Vec<u64>,
    /// Sorted ascending; only meaningful for streaming.
    pub ttfb_us: Vec<u64>,
    pub errors: BTreeMap<String, ErrorGroup>,
}

impl PhaseResult {
    pub fn ok(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|g| g.count).sum()
    }

    fn merge(&mut self, other: PhaseResult) {
        self.latencies_us.extend(other.latencies_us);
        self.ttfb_us.extend(other.ttfb_us);
        for (kind, group) in other.errors {
            let entry = self.errors.entry(kind).or_insert_with(|| ErrorGroup {
                count: 0,
                sample: group.sample.clone(),
            });
            entry.count += group.count;
        }
    }
}

/// When a phase stops: after `requests` in total and/or at `duration`,
/// whichever comes first. Requests in flight at the deadline still finish.
#[derive(Debug, Clone, Copy)]
pub struct StopAt {
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
}

pub async fn run_phase(
    target: &Arc<Target>,
    concurrency: usize,
    stop: StopAt,
) -> Result<PhaseResult> {
    // A shared ticket counter rather than a fixed per-worker quota: a worker
    // stuck on a slow request does not leave the others idle at the end.
    let tickets = Arc::new(AtomicU64::new(0));
    let per_worker = stop
        .requests
        .map_or(1024, |n| n / concurrency as u64 + 1)
        .min(1 << 20) as usize;
    let start = Instant::now();
    let deadline = stop.duration.map(|d| start + d);

    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let target = Arc::clone(target);
            let tickets = Arc::clone(&tickets);
            tokio::spawn(async move {
                let mut result = PhaseResult {
                    latencies_us: Vec::with_capacity(per_worker),
                    ttfb_us: Vec::with_capacity(if target.stream { per_worker } else { 0 }),
                    ..PhaseResult::default()
                };
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    if let Some(limit) = stop.requests
                        && tickets.fetch_add(1, Ordering::Relaxed) >= limit
                    {
                        break;
                    }
                    match send_one(&target).await {
                        Ok(ok) => {
                            result.latencies_us.push(ok.latency_us);
                            if target.stream {
                                result.ttfb_us.push(ok.ttfb_us);
                            }
                        }
                        Err(fail) => {
                            let group = result.errors.entry(fail.kind).or_default();
                            if group.count == 0 {
                                group.sample = fail.detail;
                            }
                            group.count += 1;
                            if let Some(wait) =
                                fail.retry_after.filter(|_| target.honour_retry_after)
                            {
                                // Not past the phase's end: the run stops on time.
                                let until = Instant::now() + wait;
                                tokio::time::sleep_until(
                                    deadline.map_or(until, |d| d.min(until)).into(),
                                )
                                .await;
                            }
                        }
                    }
                }
                result
            })
        })
        .collect();

    let mut merged = PhaseResult::default();
    for worker in futures_util::future::join_all(workers).await {
        merged.merge(worker.context("load worker panicked")?);
    }
    merged.elapsed = start.elapsed();
    merged.latencies_us.sort_unstable();
    merged.ttfb_us.sort_unstable();
    Ok(merged)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;

    #[test]
    fn done_marker_detection() {
        assert!(ends_with_done(b"data: {\"x\":1}\n\ndata: [DONE]\n\n"));
        assert!(ends_with_done(b"data: [DONE]\r\n\r\n"));
        assert!(ends_with_done(b"data: [DONE]"));
        assert!(!ends_with_done(b"data: {\"x\":1}\n\n"));
        assert!(!ends_with_done(b"data: [DONE]\n\ndata: {}\n\n"));
        assert!(!ends_with_done(b""));
    }

    #[test]
    fn body_shape() {
        let body: serde_json::Value =
            serde_json::from_slice(&request_body(Api::Chat, "m", true, Some(20)).unwrap()).unwrap();
        assert_eq!(body["model"], "m");
        assert_eq!(body["max_tokens"], 64);
        assert_eq!(body["messages"][0]["content"], PROMPT);
        assert_eq!(body["mock"]["chunks"], 20);
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);

        let plain: serde_json::Value =
            serde_json::from_slice(&request_body(Api::Chat, "m", false, None).unwrap()).unwrap();
        assert!(plain.get("stream").is_none() && plain.get("mock").is_none());
        let messages: serde_json::Value =
            serde_json::from_slice(&request_body(Api::Messages, "m", true, None).unwrap()).unwrap();
        assert_eq!(messages["max_tokens"], 64);
        assert!(messages.get("stream_options").is_none());
    }

    #[test]
    fn retry_after_is_read_from_refusals_only() {
        let headers = |value: &str| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            headers
        };
        let unavailable = reqwest::StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(
            retry_after(unavailable, &headers("1")),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            retry_after(reqwest::StatusCode::TOO_MANY_REQUESTS, &headers("600")),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after(reqwest::StatusCode::BAD_GATEWAY, &headers("1")),
            None
        );
        assert_eq!(retry_after(unavailable, &headers("soon")), None);
        assert_eq!(
            retry_after(unavailable, &reqwest::header::HeaderMap::new()),
            None
        );
    }

    #[tokio::test]
    async fn connection_refused_is_counted_not_fatal() {
        // Bind then drop to get a port that (almost certainly) refuses.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = Arc::new(
            Target::new(TargetConfig {
                base_url: &format!("http://127.0.0.1:{port}/v1"),
                key: None,
                model: "bench",
                stream: false,
                chunks: None,
                concurrency: 2,
                timeout: Duration::from_secs(5),
                api: Api::Chat,
                honour_retry_after: false,
            })
            .unwrap(),
        );
        let stop = StopAt {
            requests: Some(5),
            duration: None,
        };
        let res = run_phase(&target, 2, stop).await.unwrap();
        assert_eq!(res.ok(), 0);
        assert_eq!(res.error_count(), 5);
        assert!(res.errors.contains_key("connect error"), "{:?}", res.errors);
    }
}
