//! The spool itself: every emitted event is written to an append-only log on
//! local disk (see `segment`) and then delivered (see `sender`), so a
//! receiver outage or a restart loses no event and never slows the caller.
//!
//! `emit` only queues the event for the writer thread (`writer`), which
//! fsyncs in groups. The spool is bounded: past `max_bytes` of unacknowledged
//! events, `emit` fails and `has_room` tells the owner to refuse work it
//! could not record (the router refuses requests it could not bill).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::{oneshot, watch};

use crate::delivery::Delivery;
use crate::metrics::SpoolMetrics;
use crate::segment::{self, Position, Reader};
use crate::sender::Sender;
use crate::writer::{self, Msg, Writer};

#[derive(Clone, Debug)]
pub struct SpoolConfig {
    /// Names the spool in log lines and its writer thread (`usage`).
    pub name: &'static str,
    /// One process per directory: it is locked while the spool runs.
    pub dir: PathBuf,
    /// Bound on unacknowledged events (bytes as spooled records, in memory
    /// or on disk). Disk use is at most this plus one segment (the oldest,
    /// partly acknowledged) plus `rejected/`.
    pub max_bytes: u64,
    /// A segment is closed at this size and deleted once fully acknowledged.
    pub segment_bytes: u64,
    /// Group-commit cadence: at most one fsync per interval; an event is
    /// durable at most this long (plus the fsync) after `emit`.
    pub flush_interval: Duration,
    /// Events per delivery.
    pub batch_size: usize,
}

impl SpoolConfig {
    /// The defaults: 1 GiB bound, 16 MiB segments, 20 ms commits, batches of 500.
    pub fn new(name: &'static str, dir: impl Into<PathBuf>) -> SpoolConfig {
        SpoolConfig {
            name,
            dir: dir.into(),
            max_bytes: 1 << 30,
            segment_bytes: 16 << 20,
            flush_interval: Duration::from_millis(20),
            batch_size: 500,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The spool is at `max_bytes`: the receiver has been unreachable for long.
    #[error("spool is full")]
    Full,
    /// The spool has stopped (emitted after shutdown completed).
    #[error("spool has stopped")]
    Closed,
}

/// Where events are emitted into the spool. Cheap to clone.
pub struct Sink<E> {
    /// `None`: a sink that discards (no receiver configured).
    inner: Option<Arc<SinkInner<E>>>,
}

// Not derived: a derive would require `E: Clone`.
impl<E> Clone for Sink<E> {
    fn clone(&self) -> Self {
        Sink {
            inner: self.inner.clone(),
        }
    }
}

struct SinkInner<E> {
    name: &'static str,
    span: fn(&E) -> tracing::Span,
    tx: UnboundedSender<Msg<E>>,
    metrics: SpoolMetrics,
    max_bytes: i64,
    /// `has_room` turns false below `max_bytes`, keeping a reserve for the
    /// events of requests already admitted, so those are still recorded.
    admit_below: i64,
    /// The largest event emitted so far: `has_room` also turns false when
    /// one more such event would not fit (a small bound's reserve may be
    /// smaller than one event).
    largest_event: AtomicI64,
}

impl<E: prost::Message> Sink<E> {
    /// Queues `event` for the spool. Never blocks and does no I/O: a size
    /// check, two atomic adds and a channel send. Each error is logged here
    /// with the event's identity (an unrecorded event is lost), so
    /// the caller needs no log of its own.
    pub fn emit(&self, event: E) -> Result<(), EmitError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let size = i64::try_from(segment::record_len(&event)).unwrap_or(i64::MAX);
        inner.largest_event.fetch_max(size, Ordering::Relaxed);
        let before = inner.metrics.bytes.inc_by(size);
        if before.saturating_add(size) > inner.max_bytes {
            inner.metrics.bytes.dec_by(size);
            inner.metrics.full.inc();
            inner.log_unrecorded(&event, EmitError::Full);
            return Err(EmitError::Full);
        }
        inner.metrics.events.inc();
        if let Err(mpsc::error::SendError(msg)) = inner.tx.send(Msg::Event(event)) {
            inner.metrics.bytes.dec_by(size);
            inner.metrics.events.dec();
            if let Msg::Event(event) = msg {
                inner.log_unrecorded(&event, EmitError::Closed);
            }
            return Err(EmitError::Closed);
        }
        Ok(())
    }

    /// False when the spool is (nearly) at its bound: the owner then refuses
    /// new work rather than do work it could not record.
    pub fn has_room(&self) -> bool {
        self.inner.as_ref().is_none_or(|inner| {
            let bytes = inner.metrics.bytes.get();
            bytes < inner.admit_below
                && bytes.saturating_add(inner.largest_event.load(Ordering::Relaxed))
                    <= inner.max_bytes
        })
    }

    /// A sink that discards everything (no receiver configured).
    pub fn disabled() -> Sink<E> {
        Sink { inner: None }
    }
}

impl<E> SinkInner<E> {
    fn log_unrecorded(&self, event: &E, error: EmitError) {
        (self.span)(event).in_scope(|| {
            tracing::error!(spool = self.name, %error, "event not recorded");
        });
    }
}

/// Opens the spool in `config.dir` (creating it), locks it (a second process
/// on the same directory fails here), replays what a previous run left
/// unacknowledged, and starts the writer thread and the sender task, which
/// delivers through `delivery`. `metrics` should be registered by the
/// caller (`SpoolMetrics::register`).
///
/// The returned future drives the stop: once `shutdown` has resolved *and*
/// the future is awaited, the writer writes and fsyncs everything queued,
/// then the sender delivers what it can within `drain_deadline`; the rest
/// stays on disk for the next start. It completes when both have stopped.
/// Await it after the last `emit` (after the server has drained):
/// events emitted once it has stopped the writer are refused
/// (`EmitError::Closed`). Dropping it instead of awaiting it is a crash, as
/// far as the spool can tell: nothing is lost that was made durable.
///
/// `delivery` should connect lazily so that the owner starts while the
/// receiver is down.
pub async fn start<D: Delivery>(
    config: SpoolConfig,
    delivery: D,
    metrics: SpoolMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_deadline: Duration,
) -> anyhow::Result<(Sink<D::Event>, impl Future<Output = ()> + Send + 'static)> {
    let name = config.name;
    if config.batch_size == 0 || config.segment_bytes < 4096 || config.max_bytes == 0 {
        bail!("{name} spool: batch_size and max_bytes must be > 0 and segment_bytes >= 4096");
    }
    let dir = config.dir.clone();
    let opened = tokio::task::spawn_blocking(move || open(name, &dir))
        .await
        .with_context(|| format!("{name} spool: opening panicked"))??;
    metrics.events.set(to_i64(opened.events));
    metrics.bytes.set(to_i64(opened.bytes));
    metrics.oldest.clear();

    let lock = Arc::new(opened.lock);
    let (tx, rx) = mpsc::unbounded_channel();
    let (durable_tx, durable_rx) = watch::channel(Position {
        segment: opened.segment,
        offset: 0,
    });
    let (done_tx, done_rx) = oneshot::channel();
    let stop_requested = Arc::new(AtomicBool::new(false));
    let writer = Writer {
        name,
        span: D::span,
        dir: config.dir.clone(),
        segment_bytes: config.segment_bytes,
        flush_interval: config.flush_interval,
        rx,
        file: opened.file,
        segment: opened.segment,
        len: 0,
        durable: durable_tx,
        metrics: metrics.clone(),
        done: done_tx,
        stop_requested: stop_requested.clone(),
        _lock: lock.clone(),
    };
    std::thread::Builder::new()
        .name(format!("{name}-spool-writer"))
        .spawn(move || writer.run())
        .with_context(|| format!("{name} spool: starting the writer thread"))?;

    let (drain_tx, drain_rx) = watch::channel(false);
    let sender = Sender {
        name,
        delivery,
        reader: Some(Reader::new(config.dir.clone(), opened.start)),
        dir: config.dir.clone(),
        durable: durable_rx,
        drain: drain_rx,
        metrics: metrics.clone(),
        batch_size: config.batch_size,
        lock: lock.clone(),
    };
    let mut sender = tokio::spawn(sender.run());

    let max_bytes = to_i64(config.max_bytes);
    let sink = Sink {
        inner: Some(Arc::new(SinkInner {
            name,
            span: D::span,
            tx: tx.clone(),
            metrics: metrics.clone(),
            max_bytes,
            admit_below: max_bytes - max_bytes / 32,
            largest_event: AtomicI64::new(0),
        })),
    };
    let stopped = async move {
        shutdown.await;
        stop_requested.store(true, Ordering::Relaxed);
        // FIFO: everything emitted before this is written first.
        let _ = tx.send(Msg::Stop);
        if done_rx.await.is_err() {
            tracing::error!(spool = name, "spool writer thread died");
        }
        let _ = drain_tx.send(true);
        match tokio::time::timeout(drain_deadline, &mut sender).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(spool = name, %error, "spool sender task failed"),
            Err(_) => {
                sender.abort();
                let _ = sender.await;
            }
        }
        let (events, bytes) = (metrics.events.get(), metrics.bytes.get());
        if events > 0 {
            tracing::warn!(
                spool = name,
                events,
                bytes,
                "spool stopped with undelivered events: they stay on disk for the next start"
            );
        } else {
            tracing::info!(spool = name, "spool stopped, everything delivered");
        }
        drop(lock);
    };
    Ok((sink, stopped))
}

/// What a previous run left, ready for this one.
struct Opened {
    lock: File,
    /// Where delivery resumes.
    start: Position,
    /// Unacknowledged events (and their bytes) from before.
    events: u64,
    bytes: u64,
    /// The new segment this run writes to (every older one is complete).
    segment: u64,
    file: File,
}

fn open(name: &str, dir: &Path) -> anyhow::Result<Opened> {
    fs::create_dir_all(dir)
        .with_context(|| format!("creating {name} spool dir {}", dir.display()))?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .with_context(|| format!("opening the lock file of {name} spool {}", dir.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => bail!(
            "{name} spool dir {} is locked by another process: another instance is using it \
             (each one needs its own spool dir)",
            dir.display()
        ),
        Err(TryLockError::Error(error)) => {
            return Err(error)
                .with_context(|| format!("locking {name} spool dir {}", dir.display()));
        }
    }
    let cursor = segment::read_cursor(dir);
    let ids =
        segment::list_segments(dir).with_context(|| format!("listing {name} spool segments"))?;
    let mut start = None;
    let (mut events, mut bytes) = (0u64, 0u64);
    for &id in &ids {
        let path = segment::segment_path(dir, id);
        if cursor.is_some_and(|cursor| id < cursor.segment) {
            // Acknowledged; the previous run stopped before deleting it.
            fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
            continue;
        }
        let from = cursor
            .filter(|cursor| cursor.segment == id)
            .map_or(0, |cursor| cursor.offset);
        let scan =
            segment::scan(&path, from).with_context(|| format!("reading {}", path.display()))?;
        if let Some(why) = scan.corruption {
            // A crash mid-write leaves a torn last record: it was never
            // fsynced, so no event in it had been reported durable.
            tracing::warn!(
                spool = name,
                segment = id,
                valid_bytes = scan.valid_len,
                dropped_bytes = scan.file_len - scan.valid_len,
                why,
                "spool segment ends in a torn or corrupt record: cut off there"
            );
            segment::truncate(&path, scan.valid_len)
                .with_context(|| format!("truncating {}", path.display()))?;
        }
        if scan.valid_len == 0 {
            fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
            continue;
        }
        if from > scan.valid_len {
            // Damage before the cursor: everything up to the cursor was
            // acknowledged and nothing after the damage can be read, so
            // nothing of this segment is left to deliver. (Replaying it
            // from the start would deliver acknowledged events again.)
            tracing::warn!(
                spool = name,
                segment = id,
                cursor = from,
                valid_bytes = scan.valid_len,
                "spool segment damaged before its cursor: nothing left to deliver in it"
            );
            fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
            continue;
        }
        let (from, segment_events, segment_bytes) = if scan.from_is_boundary {
            (from, scan.events_from, scan.bytes_from)
        } else {
            tracing::warn!(
                spool = name,
                segment = id,
                cursor = from,
                "spool cursor is not on a record; redelivering the segment"
            );
            (0, scan.events_total, scan.valid_len)
        };
        start.get_or_insert(Position {
            segment: id,
            offset: from,
        });
        events += segment_events;
        bytes += segment_bytes;
    }
    let last = ids
        .last()
        .copied()
        .unwrap_or(0)
        .max(cursor.map_or(0, |cursor| cursor.segment));
    let segment = last + 1;
    let file = writer::create_segment(dir, segment)
        .with_context(|| format!("creating a {name} spool segment"))?;
    tracing::info!(spool = name, dir = %dir.display(), events, bytes, segment, "spool opened");
    Ok(Opened {
        lock,
        start: start.unwrap_or(Position { segment, offset: 0 }),
        events,
        bytes,
        segment,
        file,
    })
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
