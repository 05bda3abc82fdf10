//! The writer: one OS thread that turns queued events into fsynced
//! segment records. It runs on its own thread, not the async runtime,
//! because fsync blocks for milliseconds and must never stall a request.
//!
//! Group commit: it takes everything queued, writes it with one `write` and
//! makes it durable with one `fdatasync`, then publishes the new durable
//! position to the sender. Commits are at most one per `flush_interval`: an
//! event waits at most that long (plus the fsync) to become durable, and a
//! busy process does ~50 fsyncs a second however many events it emits.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{oneshot, watch};

use crate::metrics::SpoolMetrics;
use crate::segment::{self, Position};

/// What the writer's queue carries.
// Nearly every message is an event: boxing it to shrink `Stop` would add an
// allocation to every `emit` and save nothing.
#[allow(clippy::large_enum_variant)]
pub enum Msg<E> {
    Event(E),
    /// Write and fsync everything queued before this, then stop.
    Stop,
}

/// A commit writes at most this much: bounds the writer's buffer when a
/// burst is queued (the queue itself is bounded by the spool's `max_bytes`).
const MAX_COMMIT_BYTES: usize = 8 << 20;
/// While stopping, a failing disk gets this many more tries before the
/// events still in memory are given up (shutdown must finish).
const STOP_TRIES: u32 = 3;

pub struct Writer<E> {
    /// The spool's name, for log lines.
    pub name: &'static str,
    /// Names an event in log lines (`Delivery::span`).
    pub span: fn(&E) -> tracing::Span,
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub flush_interval: Duration,
    pub rx: UnboundedReceiver<Msg<E>>,
    /// The segment being appended to, and its durable length.
    pub file: File,
    pub segment: u64,
    pub len: u64,
    pub durable: watch::Sender<Position>,
    pub metrics: SpoolMetrics,
    /// Signalled when the thread ends, so the async side can await it.
    pub done: oneshot::Sender<()>,
    /// Set when shutdown begins, before `Msg::Stop` is queued: a writer
    /// stuck retrying a failing disk cannot see the message, but must still
    /// give up in bounded time.
    pub stop_requested: Arc<AtomicBool>,
    /// The spool directory's lock, held while this thread may write.
    pub _lock: Arc<File>,
}

/// The writer's working state beyond its configuration.
struct Pending {
    /// Encoded records not yet durable. Kept until fsync succeeds: after a
    /// failed fsync Linux may have dropped the dirty pages, so a retry
    /// rewrites them rather than trusting a second fsync.
    buf: Vec<u8>,
    events: u64,
    stopping: bool,
}

impl<E: prost::Message> Writer<E> {
    /// The thread's body.
    pub fn run(mut self) {
        let mut pending = Pending {
            buf: Vec::with_capacity(64 << 10),
            events: 0,
            stopping: false,
        };
        let mut last_commit: Option<Instant> = None;
        while !pending.stopping {
            match self.rx.blocking_recv() {
                Some(Msg::Event(event)) => {
                    if !self.push(event, &mut pending) {
                        break;
                    }
                }
                Some(Msg::Stop) | None => pending.stopping = true,
            }
            // Gather for the rest of the interval: the group in group commit.
            if !pending.stopping
                && let Some(at) = last_commit
            {
                let wait = (at + self.flush_interval).saturating_duration_since(Instant::now());
                std::thread::sleep(wait);
            }
            if !self.drain(&mut pending) {
                break;
            }
            if pending.stopping {
                // Refuse anything sent from now on (emit reports it), and
                // take in what was sent before the refusal.
                self.rx.close();
                if !self.drain(&mut pending) {
                    break;
                }
            }
            if !self.commit_retrying(&mut pending) {
                break;
            }
            last_commit = Some(Instant::now());
        }
        // Whatever is sent from now on is refused (emit reports it).
        self.rx.close();
        let lost = pending.events + self.rx.len() as u64;
        if lost > 0 {
            tracing::error!(
                spool = self.name,
                lost_events = lost,
                dir = %self.dir.display(),
                "spool writer stopped with events it could not write: they are lost"
            );
        }
        tracing::debug!(
            spool = self.name,
            segment = self.segment,
            len = self.len,
            "spool writer stopped"
        );
        // The file and the directory lock go before `done` is sent: the
        // owner reopening the spool once stopped must find it unlocked.
        let Writer {
            done, file, _lock, ..
        } = self;
        drop((file, _lock));
        let _ = done.send(());
    }

    /// Takes in everything queued now. False when the disk failed for good.
    fn drain(&mut self, pending: &mut Pending) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Event(event)) => {
                    if !self.push(event, pending) {
                        return false;
                    }
                    if pending.buf.len() >= MAX_COMMIT_BYTES && !self.commit_retrying(pending) {
                        return false;
                    }
                }
                Ok(Msg::Stop) => pending.stopping = true,
                Err(TryRecvError::Disconnected) => {
                    pending.stopping = true;
                    return true;
                }
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    /// Encodes one event into the buffer, rotating first if it would not fit
    /// in the current segment. False when the disk failed for good.
    fn push(&mut self, event: E, pending: &mut Pending) -> bool {
        let len = segment::record_len(&event);
        let used = self.len + pending.buf.len() as u64;
        if used > 0 && used + len > self.segment_bytes {
            if !self.commit_retrying(pending) {
                return false;
            }
            if !self.retrying(pending.stopping, Writer::rotate) {
                return false;
            }
        }
        if let Err(error) = segment::encode_record(&event, &mut pending.buf) {
            // The receiver could never accept it either; keep the rest flowing.
            (self.span)(&event).in_scope(|| {
                tracing::error!(
                    spool = self.name,
                    %error,
                    "event cannot be spooled: it is dropped"
                );
            });
            self.metrics.events.dec();
            self.metrics
                .bytes
                .dec_by(i64::try_from(len).unwrap_or(i64::MAX));
            self.metrics.rejected.inc();
            return true;
        }
        pending.events += 1;
        true
    }

    fn commit_retrying(&mut self, pending: &mut Pending) -> bool {
        let stopping = pending.stopping;
        self.retrying(stopping, |writer| writer.commit(pending))
    }

    /// Writes the buffer at the durable end of the segment and fsyncs it.
    /// Idempotent on failure: a retry rewrites from the same offset, so a
    /// partial write is overwritten.
    fn commit(&mut self, pending: &mut Pending) -> io::Result<()> {
        if pending.buf.is_empty() {
            return Ok(());
        }
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.write_all(&pending.buf)?;
        self.file.sync_data()?;
        self.len += pending.buf.len() as u64;
        pending.buf.clear();
        self.metrics.spooled.inc_by(pending.events);
        pending.events = 0;
        self.durable.send_replace(Position {
            segment: self.segment,
            offset: self.len,
        });
        Ok(())
    }

    /// Starts the next segment. The directory is fsynced so the new file's
    /// entry is as durable as the records that will be written into it.
    fn rotate(&mut self) -> io::Result<()> {
        let next = self.segment + 1;
        let file = create_segment(&self.dir, next)?;
        self.file = file;
        self.segment = next;
        self.len = 0;
        // The sender may now read the previous segment to its end.
        self.durable.send_replace(Position {
            segment: next,
            offset: 0,
        });
        Ok(())
    }

    /// Runs `op` until it succeeds, with backoff, logging the failure once
    /// per minute. A full or failing disk thus stops the writer, the queue
    /// fills, `emit` reports the spool full and the owner refuses work it
    /// could not record (the router: requests it could not bill). While
    /// stopping, gives up after a few tries (false).
    fn retrying(
        &mut self,
        stopping: bool,
        mut op: impl FnMut(&mut Writer<E>) -> io::Result<()>,
    ) -> bool {
        let mut tries = 0u32;
        let mut logged: Option<Instant> = None;
        loop {
            let error = match op(self) {
                Ok(()) => {
                    if tries > 0 {
                        tracing::info!(
                            spool = self.name,
                            tries,
                            segment = self.segment,
                            "spool writes succeed again"
                        );
                    }
                    return true;
                }
                Err(error) => error,
            };
            tries += 1;
            if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                tracing::error!(
                    spool = self.name,
                    %error,
                    tries,
                    segment = self.segment,
                    dir = %self.dir.display(),
                    "spool cannot write; retrying (emits fail once the spool is full)"
                );
                logged = Some(Instant::now());
            }
            let stopping = stopping || self.stop_requested.load(Ordering::Relaxed);
            if stopping && tries >= STOP_TRIES {
                return false;
            }
            let backoff = Duration::from_millis(100u64 << tries.min(6)).min(Duration::from_secs(5));
            std::thread::sleep(backoff);
        }
    }
}

/// Creates segment `id` (it must not exist) and makes its entry durable.
pub fn create_segment(dir: &std::path::Path, id: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(segment::segment_path(dir, id))?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}
