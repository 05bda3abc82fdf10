//! Counters that tests and benchmarks read from `GET /stats`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http::HeaderMap;
use serde_json::{Map, Value, json};

use crate::production::{Production, Productions};

/// Shared, cheaply cloned handle on the mock's counters.
#[derive(Debug, Clone, Default)]
pub struct Stats(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    requests_total: AtomicU64,
    open_connections: AtomicU64,
    active_responses: AtomicU64,
    last_request: Mutex<Option<Value>>,
    productions: Productions,
}

impl Stats {
    /// Chat completion requests received since start or the last reset.
    pub fn requests_total(&self) -> u64 {
        self.0.requests_total.load(Ordering::Relaxed)
    }

    /// TCP connections currently open.
    pub fn open_connections(&self) -> u64 {
        self.0.open_connections.load(Ordering::Relaxed)
    }

    /// Chat responses whose body is not yet fully sent or dropped.
    pub fn active_responses(&self) -> u64 {
        self.0.active_responses.load(Ordering::Relaxed)
    }

    /// The headers and body of the last chat request, if any.
    pub fn last_request(&self) -> Option<Value> {
        self.last_request_slot().clone()
    }

    /// What the mock produced for the request tagged `tag` (see
    /// [`crate::production`]).
    pub fn production(&self, tag: &str) -> Option<Production> {
        self.0.productions.get(tag)
    }

    /// Every tagged request's production, by tag.
    pub fn productions(&self) -> Value {
        self.0.productions.all()
    }

    pub(crate) fn production_table(&self) -> &Productions {
        &self.0.productions
    }

    /// The `GET /stats` document.
    pub fn snapshot(&self) -> Value {
        json!({
            "requests_total": self.requests_total(),
            "open_connections": self.open_connections(),
            "active_responses": self.active_responses(),
            "last_request": self.last_request(),
        })
    }

    /// Forgets past requests. The gauges are left alone: they describe
    /// what is open right now, which a reset does not change.
    pub fn reset(&self) {
        self.0.requests_total.store(0, Ordering::Relaxed);
        *self.last_request_slot() = None;
        self.0.productions.clear();
    }

    /// Records an arriving chat request and counts its response as active
    /// until the returned guard is dropped.
    pub(crate) fn chat_request(&self, headers: &HeaderMap, body: &[u8]) -> Gauge {
        self.0.requests_total.fetch_add(1, Ordering::Relaxed);
        let mut names = Map::new();
        for name in headers.keys() {
            // Repeated headers are joined the way HTTP allows them to be folded.
            let joined = headers
                .get_all(name)
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ");
            names.insert(name.as_str().to_owned(), Value::String(joined));
        }
        // A body that is not JSON is kept as text so the test can still see it.
        let body = serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
        *self.last_request_slot() = Some(json!({"headers": names, "body": body}));
        Gauge::hold(self, |inner| &inner.active_responses)
    }

    /// Counts a TCP connection as open until the returned guard is dropped.
    pub(crate) fn connection(&self) -> Gauge {
        Gauge::hold(self, |inner| &inner.open_connections)
    }

    fn last_request_slot(&self) -> std::sync::MutexGuard<'_, Option<Value>> {
        // A panic while holding the lock cannot leave the value half-written
        // (it is replaced whole), so a poisoned lock is still usable.
        self.0
            .last_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One unit of a gauge, given back on drop, so every exit path (completion,
/// error, client disconnect, task cancellation) decrements exactly once.
#[derive(Debug)]
pub(crate) struct Gauge {
    stats: Arc<Inner>,
    counter: fn(&Inner) -> &AtomicU64,
}

impl Gauge {
    fn hold(stats: &Stats, counter: fn(&Inner) -> &AtomicU64) -> Self {
        counter(&stats.0).fetch_add(1, Ordering::Relaxed);
        Self {
            stats: Arc::clone(&stats.0),
            counter,
        }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        (self.counter)(&self.stats).fetch_sub(1, Ordering::Relaxed);
    }
}
