//! Pass-through trace context (no exporter): a caller's `traceparent` and
//! `tracestate` are checked, kept as they arrived on the server span of the
//! request (in the span's extensions in the `tracing_subscriber` registry),
//! and copied unchanged into every call made under that span, spawned tasks
//! included (they run under the request's spans already). Nothing is
//! generated: no ids, no OpenTelemetry context.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderMap, HeaderValue};
use tracing_subscriber::Layer;
use tracing_subscriber::Registry;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::registry::{LookupSpan as _, SpanRef};

use crate::propagation::{TRACEPARENT, TRACESTATE};

/// A `tracestate` longer than this is dropped (the `traceparent` alone
/// keeps the trace): W3C asks vendors to pass on at least 512 characters,
/// and gRPC metadata has a size limit of its own.
const MAX_TRACESTATE_BYTES: usize = 4096;

/// A caller's trace context, as it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    traceparent: HeaderValue,
    tracestate: Option<HeaderValue>,
}

impl Incoming {
    /// The context `headers` carry, if their `traceparent` is well formed.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Incoming> {
        let traceparent = headers.get(TRACEPARENT)?;
        if !valid_traceparent(traceparent.as_bytes()) {
            return None;
        }
        Some(Incoming {
            traceparent: traceparent.clone(),
            tracestate: tracestate(headers),
        })
    }
}

/// `tracestate` headers, combined into one value as W3C prescribes.
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(TRACESTATE).iter();
    let first = values.next()?;
    let combined = match values.next() {
        None => first.clone(),
        Some(second) => {
            let mut joined = first.as_bytes().to_vec();
            for value in std::iter::once(second).chain(values) {
                joined.push(b',');
                joined.extend_from_slice(value.as_bytes());
            }
            HeaderValue::from_bytes(&joined).ok()?
        }
    };
    (combined.len() <= MAX_TRACESTATE_BYTES && !combined.is_empty()).then_some(combined)
}

/// Whether `value` is a W3C `traceparent`: `version-traceid-parentid-flags`
/// in lowercase hex, ids not all zero, version not `ff`; version `00` has
/// exactly these four fields, later versions may append more.
fn valid_traceparent(value: &[u8]) -> bool {
    fn hex(field: &[u8]) -> bool {
        field
            .iter()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    }
    fn zero(field: &[u8]) -> bool {
        field.iter().all(|&byte| byte == b'0')
    }
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return false;
    }
    let (version, trace_id, parent_id, flags) =
        (&value[..2], &value[3..35], &value[36..52], &value[53..55]);
    let length_ok = if version == b"00" {
        value.len() == 55
    } else {
        value.len() == 55 || value[55] == b'-'
    };
    length_ok
        && hex(version)
        && version != b"ff"
        && hex(trace_id)
        && !zero(trace_id)
        && hex(parent_id)
        && !zero(parent_id)
        && hex(flags)
}

/// Live spans carrying an incoming context: while there are none (no
/// caller sends one), an outgoing call costs one atomic load, not a walk up
/// its spans.
static CARRIED: AtomicUsize = AtomicUsize::new(0);

/// What a server span keeps in its extensions; dropped with the span.
struct Carried(Incoming);

impl Carried {
    fn new(incoming: Incoming) -> Carried {
        CARRIED.fetch_add(1, Ordering::Relaxed);
        Carried(incoming)
    }
}

impl Drop for Carried {
    fn drop(&mut self) {
        CARRIED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The registry's record of `span`, if the subscriber is (or wraps) a
/// `tracing_subscriber` registry and the span is enabled.
fn with_record<R>(span: &tracing::Span, f: impl FnOnce(SpanRef<'_, Registry>) -> R) -> Option<R> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        registry.span(id).map(f)
    })
    .flatten()
}

/// A layer that keeps every info span in existence whatever the log level
/// (at `warn`, the log filter would not create them): the request spans are
/// what the context rides on, from the server span to the calls the request
/// makes later, from spawned tasks too. It does nothing with them; the
/// registry keeps them. (Keeping only the spans of requests that carry a
/// context would need a dynamic filter, and with per-layer filters a dynamic
/// filter cannot stop the registry from creating a span: no saving.)
pub(crate) fn request_spans() -> Box<dyn Layer<Registry> + Send + Sync> {
    tracing_subscriber::layer::Identity::new()
        .with_filter(FilterFn::new(|metadata| {
            metadata.is_span() && *metadata.level() <= tracing::Level::INFO
        }))
        .boxed()
}

/// Keeps `incoming` on `span` for the calls made under it. Without a
/// registry-based subscriber, or with the span disabled, nothing is kept.
pub(crate) fn attach(span: &tracing::Span, incoming: Incoming) {
    with_record(span, |record| {
        record.extensions_mut().insert(Carried::new(incoming));
    });
}

/// The incoming context of `span` or of its nearest ancestor having one.
fn find(span: &tracing::Span) -> Option<Incoming> {
    if CARRIED.load(Ordering::Relaxed) == 0 {
        return None;
    }
    with_record(span, |record| {
        record.scope().find_map(|ancestor| {
            ancestor
                .extensions()
                .get::<Carried>()
                .map(|carried| carried.0.clone())
        })
    })
    .flatten()
}

/// Writes the incoming context that `span` is under into `headers`.
pub(crate) fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let Some(incoming) = find(span) else {
        return;
    };
    headers.insert(TRACEPARENT, incoming.traceparent);
    match incoming.tracestate {
        Some(tracestate) => headers.insert(TRACESTATE, tracestate),
        None => headers.remove(TRACESTATE),
    };
}

/// The incoming `traceparent` that `span` is under.
pub(crate) fn traceparent(span: &tracing::Span) -> Option<String> {
    let incoming = find(span)?;
    incoming.traceparent.to_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_checked_as_w3c_defines_them() {
        let valid = [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            // A later version may add fields.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",
        ];
        for value in valid {
            assert!(valid_traceparent(value.as_bytes()), "{value} is valid");
        }
        let invalid = [
            "",
            "garbage",
            // Version 00 has exactly four fields.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Uppercase hex is not allowed.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for value in invalid {
            assert!(!valid_traceparent(value.as_bytes()), "{value} is invalid");
        }
    }

    #[test]
    fn tracestate_headers_are_combined_and_bounded() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(traceparent));
        let incoming = Incoming::from_headers(&headers).expect("valid");
        assert_eq!(incoming.tracestate, None);

        headers.append(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        headers.append(
            TRACESTATE,
            HeaderValue::from_static("rojo=00f067aa0ba902b7"),
        );
        let incoming = Incoming::from_headers(&headers).expect("valid");
        assert_eq!(incoming.traceparent, traceparent);
        assert_eq!(
            incoming.tracestate.expect("tracestate"),
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        );

        let long = format!("vendor={}", "x".repeat(MAX_TRACESTATE_BYTES));
        headers.insert(TRACESTATE, HeaderValue::try_from(long).expect("header"));
        let incoming = Incoming::from_headers(&headers).expect("still valid");
        assert_eq!(
            incoming.tracestate, None,
            "an oversized tracestate is dropped"
        );

        headers.insert(TRACEPARENT, HeaderValue::from_static("00-bad"));
        assert!(Incoming::from_headers(&headers).is_none());
    }
}
