//! The spool after a crash that damaged its segments: what a restart
//! delivers. The events are written by the spool itself; the damage (torn
//! tails, flipped bits, zeroed ranges, junk appended, a lost segment) and
//! the delivery cursor left by the previous run come from the input.
//!
//! Properties: nothing panics; every event the spool accepted is written,
//! in order; the restart delivers exactly the events of intact records
//! from the cursor on: per segment, the records before the first damaged
//! one, never one before the cursor (already acknowledged), never one
//! twice; a second restart delivers nothing.
//!
//! The oracle reads segments by their documented format (`u32` length,
//! `u32` CRC-32, payload, little-endian), independently of the spool.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use llmgw_spool::{Delivery, DeliveryError, SpoolConfig, SpoolMetrics};

use crate::Input;

/// The spooled event: an identity and a body of any size (empty included).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Event {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub body: Vec<u8>,
}

/// A receiver that records every batch, or refuses them all.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Event>>>,
    down: bool,
}

impl Delivery for Receiver {
    type Event = Event;

    async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
        if self.down {
            return Err(DeliveryError::RetryLater("receiver down".to_owned()));
        }
        self.got
            .lock()
            .expect("receiver lock")
            .extend_from_slice(batch);
        Ok(())
    }

    fn span(event: &Event) -> tracing::Span {
        tracing::error_span!("event", id = event.id)
    }

    fn occurred_at_ms(_: &Event) -> Option<i64> {
        None
    }
}

/// One record as written: where it is, and its event.
#[derive(Debug)]
struct Record {
    offset: usize,
    len: usize,
    event: Event,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: Vec<u8>,
    records: Vec<Record>,
}

/// Input: event sizes, the cursor, then damage operations.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let count = input.byte() % 48;
    let events: Vec<Event> = (0..u64::from(count))
        .map(|id| Event {
            id,
            body: vec![b'x'; usize::from(input.byte()) * 8],
        })
        .collect();
    let dir = ScratchDir::new();

    // The previous run: the receiver was down, so everything stays spooled.
    let segments = {
        let receiver = Receiver {
            down: true,
            ..Receiver::default()
        };
        run(dir.path(), receiver, |sink| {
            for event in &events {
                // Refused only when full, which 48 small events never are.
                sink.emit(event.clone()).expect("emit");
            }
        });
        read_segments(dir.path())
    };
    let written: Vec<&Event> = segments
        .iter()
        .flat_map(|segment| &segment.records)
        .map(|record| &record.event)
        .collect();
    let accepted: Vec<&Event> = events.iter().filter(|event| spoolable(event)).collect();
    assert_eq!(written, accepted, "the spool wrote something else");

    // Where the previous run had acknowledged up to (a record boundary).
    let (has_cursor, in_segment, at_record) = (input.byte(), input.byte(), input.byte());
    let cursor = match has_cursor % 4 {
        0 => None,
        _ if segments.is_empty() => None,
        _ => {
            let segment = &segments[usize::from(in_segment) % segments.len()];
            let record = usize::from(at_record) % (segment.records.len() + 1);
            let offset = segment
                .records
                .get(record)
                .map_or(segment.bytes.len(), |record| record.offset);
            std::fs::write(
                dir.path().join("cursor"),
                format!("v1 {} {offset}\n", segment.id),
            )
            .expect("write cursor");
            Some((segment.id, record))
        }
    };

    let mut ops = 0;
    while !input.is_empty() && ops < 8 && !segments.is_empty() {
        damage(dir.path(), &segments, &mut input);
        ops += 1;
    }

    let expected: Vec<Event> = segments
        .iter()
        .flat_map(|segment| intact_from(dir.path(), segment, cursor))
        .collect();
    let receiver = Receiver::default();
    run(dir.path(), receiver.clone(), |_| {});
    let delivered = receiver.got.lock().expect("receiver lock").clone();
    assert_eq!(
        ids(&delivered),
        ids(&expected),
        "the restart delivered something else (cursor {cursor:?})"
    );
    assert_eq!(delivered, expected);

    let again = Receiver::default();
    run(dir.path(), again.clone(), |_| {});
    let redelivered = again.got.lock().expect("receiver lock").clone();
    assert!(
        redelivered.is_empty(),
        "a second restart delivered {:?} again",
        ids(&redelivered)
    );
}

/// An event that encodes to nothing is refused by the writer (an empty
/// record would read as a zero-filled tail).
fn spoolable(event: &Event) -> bool {
    prost::Message::encoded_len(event) > 0
}

fn ids(events: &[Event]) -> Vec<u64> {
    events.iter().map(|event| event.id).collect()
}

/// The events of `segment` a restart must deliver: from the cursor to the
/// first record the damage touched (what follows cannot be trusted).
fn intact_from(dir: &Path, segment: &Segment, cursor: Option<(u64, usize)>) -> Vec<Event> {
    let start = match cursor {
        Some((id, _)) if id > segment.id => return Vec::new(),
        Some((id, record)) if id == segment.id => record,
        _ => 0,
    };
    let now = std::fs::read(segment_path(dir, segment.id)).unwrap_or_default();
    let damaged = segment
        .records
        .iter()
        .position(|record| {
            let range = record.offset..record.offset + record.len;
            now.get(range.clone()) != segment.bytes.get(range)
        })
        .unwrap_or(segment.records.len());
    segment
        .records
        .get(start..damaged)
        .unwrap_or_default()
        .iter()
        .map(|record| record.event.clone())
        .collect()
}

/// One damage operation on one segment file.
fn damage(dir: &Path, segments: &[Segment], input: &mut Input<'_>) {
    let op = input.byte() % 5;
    let segment = &segments[usize::from(input.byte()) % segments.len()];
    let path = segment_path(dir, segment.id);
    let Ok(mut bytes) = std::fs::read(&path) else {
        return;
    };
    let at = usize::from(input.u16()) % (bytes.len() + 1);
    let arg = input.byte();
    match op {
        // A torn tail: the file ends early.
        0 => bytes.truncate(at),
        // A flipped bit or byte.
        1 => {
            if let Some(byte) = bytes.get_mut(at) {
                *byte ^= arg.max(1);
            }
        }
        // A range that never reached the disk (reads as zeros).
        2 => {
            let end = (at + usize::from(arg) + 1).min(bytes.len());
            bytes[at..end].fill(0);
        }
        // Garbage after the last record (a write torn mid-way).
        3 => {
            let mut state = u64::from(arg) | 1 << 32;
            bytes.extend((0..usize::from(arg) + 1).map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            }));
        }
        // The whole segment lost.
        _ => {
            std::fs::remove_file(&path).expect("remove segment");
            return;
        }
    }
    std::fs::write(&path, bytes).expect("rewrite segment");
}

/// Starts the spool in `dir` with `receiver`, lets `work` emit, stops it
/// (draining what the receiver takes) and waits until it has stopped.
fn run(dir: &Path, receiver: Receiver, work: impl FnOnce(&llmgw_spool::Sink<Event>)) {
    let config = SpoolConfig {
        name: "fuzz",
        dir: dir.to_owned(),
        max_bytes: 16 << 20,
        segment_bytes: 4096,
        flush_interval: Duration::from_millis(1),
        batch_size: 7,
    };
    // A receiver that is down is given no time: the events stay on disk.
    let drain = if receiver.down {
        Duration::ZERO
    } else {
        Duration::from_secs(60)
    };
    runtime().block_on(async {
        let (sink, stopped) = llmgw_spool::start(
            config,
            receiver,
            SpoolMetrics::default(),
            std::future::ready(()),
            drain,
        )
        .await
        .expect("the spool opens whatever its segments hold");
        work(&sink);
        stop(stopped).await;
    });
}

async fn stop(stopped: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(120), stopped)
        .await
        .expect("the spool stops");
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Every segment file, oldest first, read by the documented format; each
/// must be whole (the spool was stopped cleanly).
fn read_segments(dir: &Path) -> Vec<Segment> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .expect("read spool dir")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            name.to_str()?.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids.into_iter()
        .map(|id| {
            let bytes = std::fs::read(segment_path(dir, id)).expect("read segment");
            let mut records = Vec::new();
            let mut offset = 0;
            while offset < bytes.len() {
                let header = bytes.get(offset..offset + 8).expect("a whole header");
                let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
                let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
                let len = len as usize;
                let payload = bytes
                    .get(offset + 8..offset + 8 + len)
                    .expect("a whole payload");
                assert!(len > 0, "an empty record at {offset} of segment {id}");
                assert_eq!(crc32fast::hash(payload), crc, "a bad CRC as written");
                let event = prost::Message::decode(payload).expect("a written event decodes");
                records.push(Record {
                    offset,
                    len: 8 + len,
                    event,
                });
                offset += 8 + len;
            }
            Segment { id, bytes, records }
        })
        .collect()
}

/// A fresh directory in memory where possible (`/dev/shm`), removed when
/// dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!(
            "llmgw-spool-property-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        ScratchDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
