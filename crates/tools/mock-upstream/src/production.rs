//! What the mock produced for each tagged chat request, so a test or the
//! soak harness can hold the gateway's ledger (and its buffering) against
//! the provider's side of the story.
//!
//! A request opts in with the body field `"mock": {"tag": "<unique>"}`; the
//! record is read at `GET /stats/requests/<tag>` (all of them at
//! `GET /stats/requests`) and forgotten by `POST /stats/reset`. Untagged
//! requests are not recorded, so a benchmark's memory does not grow.
//!
//! Counted as the body is handed to the HTTP server, event by event: the
//! server writes it to the socket as the reader makes room, so once the
//! socket buffers are full a stream's `bytes` stop growing. Tokens are
//! completion tokens (one per content or reasoning chunk, as the mock's
//! usage reports them): a stream cut early has produced only the chunks
//! sent before the cut.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use serde_json::Value;

/// One tagged request's production so far.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Production {
    /// The HTTP status answered (200 for streams, also those cut later; 0
    /// while stalled before the first byte).
    pub status: u16,
    pub stream: bool,
    /// The fault the request asked for, if any (`"429"`, `"truncate"`, ...).
    pub fault: Option<String>,
    /// Prompt tokens as the mock's usage reports them, once it answers
    /// (0 for a request refused with an error status or stalled before
    /// its first byte).
    pub prompt_tokens: u64,
    /// Completion tokens produced so far (the whole answer's for JSON).
    pub completion_tokens: u64,
    /// Stream events (`data:` lines) handed to the HTTP server.
    pub events: u64,
    /// Body bytes handed to the HTTP server.
    pub bytes: u64,
    /// The answer was produced to its end (`[DONE]` for streams).
    pub finished: bool,
}

/// Shared table of tagged requests.
#[derive(Debug, Clone, Default)]
pub(crate) struct Productions(Arc<Mutex<HashMap<String, Production>>>);

impl Productions {
    /// Starts (or restarts, for a repeated tag) a request's record; `None`
    /// for an untagged request.
    pub(crate) fn start(&self, tag: Option<&str>, production: Production) -> Option<Recorder> {
        let tag = tag?.to_owned();
        self.table().insert(tag.clone(), production);
        Some(Recorder {
            table: self.clone(),
            tag,
        })
    }

    pub(crate) fn get(&self, tag: &str) -> Option<Production> {
        self.table().get(tag).cloned()
    }

    pub(crate) fn all(&self) -> Value {
        serde_json::to_value(&*self.table()).unwrap_or(Value::Null)
    }

    pub(crate) fn clear(&self) {
        self.table().clear();
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Production>> {
        // Each update is a whole field write: a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Updates one request's record as its body is produced.
#[derive(Debug)]
pub(crate) struct Recorder {
    table: Productions,
    tag: String,
}

impl Recorder {
    pub(crate) fn update(&self, change: impl FnOnce(&mut Production)) {
        if let Some(production) = self.table.table().get_mut(&self.tag) {
            change(production);
        }
    }
}
