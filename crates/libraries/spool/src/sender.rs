//! The sender: delivers spooled events through the owner's `Delivery` in
//! batches, reading them back from disk (one code path for a live process
//! and for a restart), and acknowledges them in the spool only once the
//! receiver has recorded them. The receiver dedupes, so every failure path
//! errs on the side of sending again.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::delivery::{DELIVERY_TIMEOUT, Delivery, DeliveryError};
use crate::metrics::{SpoolMetrics, now_ms};
use crate::outage::Outage;
use crate::segment::{self, Batch, Position, Reader};

const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub struct Sender<D> {
    /// The spool's name, for log lines.
    pub name: &'static str,
    pub delivery: D,
    /// `None` only while a blocking read has it.
    pub reader: Option<Reader>,
    pub dir: PathBuf,
    /// What the writer has made durable; closed when the writer stops.
    pub durable: watch::Receiver<Position>,
    /// Flips to true when the owner shuts down: the backoff is cut short so
    /// a last delivery is tried within the drain deadline.
    pub drain: watch::Receiver<bool>,
    pub metrics: SpoolMetrics,
    pub batch_size: usize,
    /// The spool directory's lock, held while this task may touch the dir.
    pub lock: Arc<File>,
}

impl<D: Delivery> Sender<D> {
    /// Delivers until the writer has stopped and everything it wrote is
    /// acknowledged. Retries forever otherwise: the spool's owner aborts the
    /// task at the drain deadline, leaving the rest on disk.
    pub async fn run(mut self) {
        let mut outage = Outage::new(self.name);
        let mut draining = false;
        let mut writer_open = true;
        let mut read_failures = 0u32;
        loop {
            let durable = *self.durable.borrow_and_update();
            let batch = match self.read(durable).await {
                Ok(batch) => batch,
                Err(ReadError::Lost) => return,
                Err(ReadError::Io(error)) => {
                    read_failures += 1;
                    tracing::error!(
                        spool = self.name,
                        %error,
                        dir = %self.dir.display(),
                        "spool read failed; retrying"
                    );
                    backoff(read_failures, &mut self.drain, &mut draining).await;
                    continue;
                }
            };
            read_failures = 0;
            if batch.bytes == 0 && batch.skipped_bytes == 0 && batch.finished.is_empty() {
                // Caught up with the writer.
                self.metrics.oldest.clear();
                if !writer_open {
                    return;
                }
                // Err: the writer has stopped; one more pass reads what it
                // made durable last, then the loop ends.
                if self.durable.changed().await.is_err() {
                    writer_open = false;
                }
                continue;
            }
            let delivered = self.deliver(&batch, &mut outage, &mut draining).await;
            self.ack(&batch, delivered).await;
        }
    }

    async fn read(&mut self, durable: Position) -> Result<Batch<D::Event>, ReadError> {
        let Some(mut reader) = self.reader.take() else {
            return Err(ReadError::Lost);
        };
        let max_events = self.batch_size;
        // File reads are blocking; the runtime's threads serve requests.
        let read = tokio::task::spawn_blocking(move || {
            let batch = reader.read_batch(durable, max_events);
            (reader, batch)
        })
        .await;
        match read {
            Ok((reader, batch)) => {
                self.reader = Some(reader);
                batch.map_err(ReadError::Io)
            }
            Err(error) => {
                // Only a panic gets here: a bug. Stop delivering; what is on
                // disk waits for the next start.
                tracing::error!(
                    spool = self.name,
                    %error,
                    "spool reader panicked; delivery stopped"
                );
                Err(ReadError::Lost)
            }
        }
    }

    /// Gets every event of `batch` recorded or rejected; returns how many
    /// were recorded. Transient failures are retried without end.
    async fn deliver(
        &mut self,
        batch: &Batch<D::Event>,
        outage: &mut Outage,
        draining: &mut bool,
    ) -> u64 {
        if let Some(first) = batch.events.first() {
            self.metrics
                .oldest
                .set(D::occurred_at_ms(first).unwrap_or_else(now_ms));
        }
        if !batch.undecodable.is_empty() {
            self.reject_raw(batch).await;
        }
        // An invalid event makes the receiver refuse its whole batch (all or
        // nothing): split the batch until the invalid events are isolated,
        // so the valid ones still get recorded. Resending the valid halves
        // is harmless (the receiver dedupes).
        let events = &batch.events;
        let mut delivered = 0u64;
        let mut todo: Vec<Range<usize>> = Vec::with_capacity(16);
        todo.push(0..events.len());
        while let Some(range) = todo.pop() {
            if range.is_empty() {
                continue;
            }
            let slice = &events[range.clone()];
            match self.send(slice, outage, draining).await {
                Ok(()) => delivered += slice.len() as u64,
                Err(error) if slice.len() == 1 => self.reject(&slice[0], batch.start, &error).await,
                Err(error) => {
                    tracing::warn!(
                        spool = self.name,
                        events = slice.len(),
                        error,
                        "the receiver refused a batch as invalid; splitting it to isolate the bad events"
                    );
                    let mid = range.start + range.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
            }
        }
        delivered
    }

    /// One delivery, retried until the receiver records it (Ok) or refuses
    /// it as invalid (Err with the reason: retrying would never succeed).
    async fn send(
        &mut self,
        events: &[D::Event],
        outage: &mut Outage,
        draining: &mut bool,
    ) -> Result<(), String> {
        let mut failures = 0u32;
        loop {
            // The timer bounds a receiver that never answers.
            let answer = tokio::time::timeout(DELIVERY_TIMEOUT, self.delivery.deliver(events))
                .await
                .unwrap_or_else(|_| {
                    Err(DeliveryError::RetryLater(format!(
                        "no answer within {DELIVERY_TIMEOUT:?}"
                    )))
                });
            let error = match answer {
                Ok(()) => {
                    outage.resumed(&self.metrics);
                    return Ok(());
                }
                Err(DeliveryError::Invalid(reason)) => {
                    outage.resumed(&self.metrics);
                    return Err(reason);
                }
                Err(error) => error,
            };
            self.metrics.failures.inc();
            outage.failed(&error, &self.metrics);
            failures += 1;
            if backoff(failures, &mut self.drain, draining).await {
                // Shutdown began: retry at once, then back off from the start.
                failures = 0;
            }
        }
    }

    /// Moves one invalid event to `rejected/`.
    async fn reject(&self, event: &D::Event, origin: Position, error: &str) {
        let mut record = Vec::new();
        // It was decoded from a record, so it fits in one.
        let encoded = segment::encode_record(event, &mut record);
        let written = match encoded {
            Ok(()) => self.write_rejected(origin, record).await,
            Err(error) => Err(io::Error::other(error)),
        };
        self.metrics.rejected.inc();
        let _span = D::span(event).entered();
        match written {
            Ok(path) => tracing::error!(
                spool = self.name,
                error,
                file = %path.display(),
                "the receiver rejected an event as invalid; moved to the spool's rejected/"
            ),
            // The log line is then the only copy: it carries the whole event.
            Err(write_error) => tracing::error!(
                spool = self.name,
                ?event,
                error,
                %write_error,
                "the receiver rejected an event as invalid and it could not be saved to rejected/: lost"
            ),
        }
    }

    /// Records that passed their checksum but do not decode as an event
    /// (a bug or a foreign file): kept aside, never retried.
    async fn reject_raw(&self, batch: &Batch<D::Event>) {
        self.metrics.rejected.inc_by(batch.undecodable_count);
        let written = self
            .write_rejected(batch.start, batch.undecodable.clone())
            .await;
        match written {
            Ok(path) => tracing::error!(
                spool = self.name,
                events = batch.undecodable_count,
                file = %path.display(),
                "undecodable spool records moved to rejected/"
            ),
            Err(error) => tracing::error!(
                spool = self.name,
                events = batch.undecodable_count,
                %error,
                "undecodable spool records could not be saved to rejected/: lost"
            ),
        }
    }

    async fn write_rejected(&self, origin: Position, records: Vec<u8>) -> io::Result<PathBuf> {
        let dir = self.dir.clone();
        let lock = self.lock.clone();
        let name = format!("{:020}-{:020}.seg", origin.segment, origin.offset);
        tokio::task::spawn_blocking(move || {
            let _lock = lock;
            segment::append_rejected(&dir, &name, &records)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Marks `batch` done: the depth gauges drop, the cursor moves past it
    /// and segments read to their end are deleted.
    async fn ack(&mut self, batch: &Batch<D::Event>, delivered: u64) {
        let events = batch.events.len() as u64 + batch.undecodable_count;
        // The next read sets the age again if more is waiting.
        self.metrics.oldest.clear();
        self.metrics.delivered.inc_by(delivered);
        self.metrics.events.dec_by(to_i64(events));
        self.metrics
            .bytes
            .dec_by(to_i64(batch.bytes + batch.skipped_bytes));
        let dir = self.dir.clone();
        let lock = self.lock.clone();
        let finished = batch.finished.clone();
        let end = batch.end;
        let persisted = tokio::task::spawn_blocking(move || -> io::Result<()> {
            let _lock = lock;
            // Cursor first: a crash between the two leaves a segment older
            // than the cursor, which the next start deletes.
            segment::write_cursor(&dir, end)?;
            for id in finished {
                match std::fs::remove_file(segment::segment_path(&dir, id)) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                    _ => {}
                }
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other);
        if let Err(error) | Ok(Err(error)) = persisted {
            // Costs only redelivery after a restart (the receiver dedupes).
            tracing::warn!(
                spool = self.name,
                %error,
                "spool could not persist its delivery position"
            );
        }
    }
}

enum ReadError {
    Io(io::Error),
    /// The reader is gone (it panicked): delivery cannot go on.
    Lost,
}

/// Sleeps the `failures`-th backoff: capped exponential with jitter (half
/// fixed, half random, so replicas that failed together spread out). True
/// when it was cut short because shutdown began.
async fn backoff(failures: u32, drain: &mut watch::Receiver<bool>, draining: &mut bool) -> bool {
    let exp = INITIAL_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let cap = exp.min(MAX_BACKOFF);
    let wait = cap / 2 + cap.mul_f64(fastrand::f64() / 2.0);
    if *draining {
        tokio::time::sleep(wait).await;
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        // Err (the spool's owner is gone) counts as shutdown too: waiting on
        // a closed channel again would return at once, in a loop.
        _ = drain.changed() => {
            *draining = true;
            true
        }
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
