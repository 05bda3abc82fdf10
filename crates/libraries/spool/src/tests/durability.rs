//! What survives a crash, a torn write, a restart; and the directory lock.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Received, Running, TempDir, TestEvent, config, down, id, segments, wait_until};
use crate::segment::{self, Position, Reader};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts a spool, retrying while a crashed predecessor's threads still
/// hold the lock (a real crash releases it with the process).
async fn start_after_crash(dir: &std::path::Path, receiver: &Arc<Received>) -> Running {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Running::start(config(dir), receiver).await {
            Ok(running) => return running,
            Err(error) if format!("{error:#}").contains("locked") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("restart failed: {error:#}"),
        }
    }
}

#[test]
fn a_crash_loses_nothing_durable_and_a_restart_delivers_it_once() {
    let dir = TempDir::new("crash");
    let first = runtime();
    let running = first
        .block_on(Running::start(config(dir.path()), &down()))
        .expect("start");
    running.emit_range(0..500);
    first.block_on(wait_until("500 events durable", 10, || {
        running.metrics.spooled.get() == 500
    }));
    assert!(segments(dir.path()).len() > 1, "small segments rotated");
    // The crash: no shutdown, the stop future never runs, tasks vanish.
    drop(running);
    first.shutdown_background();

    let second = runtime();
    second.block_on(async {
        let receiver = Arc::new(Received::default());
        let running = start_after_crash(dir.path(), &receiver).await;
        assert_eq!(running.depth().0, 500, "replayed backlog counted");
        wait_until("replayed events delivered", 20, || receiver.unique() == 500).await;
        wait_until("depth back to zero", 10, || running.depth() == (0, 0)).await;
        assert_eq!(receiver.duplicates(), 0);
        running.stop().await;
    });
}

/// Writes `count` events to a spool whose receiver is down, and stops it.
async fn spool_undelivered(dir: &std::path::Path, count: u64) {
    let running = Running::start_draining(config(dir), &down(), Duration::from_millis(100))
        .await
        .expect("start");
    running.emit_range(0..count);
    running.stop().await;
}

fn append(path: &std::path::Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open segment");
    file.write_all(bytes).expect("append");
}

fn last_nonempty_segment(dir: &std::path::Path) -> std::path::PathBuf {
    segments(dir)
        .into_iter()
        .rev()
        .map(|id| segment::segment_path(dir, id))
        .find(|path| std::fs::metadata(path).is_ok_and(|meta| meta.len() > 0))
        .expect("a segment with records")
}

#[tokio::test]
async fn a_torn_tail_record_is_cut_off_and_the_rest_replayed() {
    let dir = TempDir::new("torn");
    spool_undelivered(dir.path(), 10).await;
    let path = last_nonempty_segment(dir.path());
    let intact = std::fs::metadata(&path).expect("meta").len();
    // A record header promising 100 bytes, then only 10 of them: a crash
    // in the middle of a write.
    let mut torn = 100u32.to_le_bytes().to_vec();
    torn.extend_from_slice(&[0xAB; 4]);
    torn.extend_from_slice(&[7; 10]);
    append(&path, &torn);
    let scan = segment::scan(&path, 0).expect("scan");
    assert_eq!((scan.valid_len, scan.events_total), (intact, 10));
    assert_eq!(scan.corruption, Some("torn record"));

    let receiver = Arc::new(Received::default());
    let running = Running::start(config(dir.path()), &receiver)
        .await
        .expect("restart");
    assert_eq!(running.depth().0, 10);
    wait_until("10 events delivered", 10, || receiver.unique() == 10).await;
    running.stop().await;
    assert_eq!(receiver.duplicates(), 0);
}

#[tokio::test]
async fn a_corrupt_last_record_ends_the_segment() {
    let dir = TempDir::new("corrupt");
    spool_undelivered(dir.path(), 10).await;
    let path = last_nonempty_segment(dir.path());
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&path, &bytes).expect("write");

    let receiver = Arc::new(Received::default());
    let running = Running::start(config(dir.path()), &receiver)
        .await
        .expect("restart");
    assert_eq!(running.depth().0, 9, "the damaged record is gone");
    wait_until("9 events delivered", 10, || receiver.unique() == 9).await;
    running.stop().await;
    assert!(!receiver.has(&id(9)));
}

#[test]
fn zero_filled_tails_and_bad_cursors_are_not_records() {
    let dir = TempDir::new("scan");
    std::fs::create_dir_all(dir.path()).expect("mkdir");
    let path = segment::segment_path(dir.path(), 1);
    let mut records = Vec::new();
    for n in 0..3 {
        segment::encode_record(&super::event(n), &mut records).expect("encode");
    }
    let first_len = segment::record_len(&super::event(0));
    records.extend_from_slice(&[0; 64]);
    std::fs::write(&path, &records).expect("write");
    let scan = segment::scan(&path, first_len).expect("scan");
    assert_eq!(scan.events_total, 3);
    assert_eq!(scan.valid_len, records.len() as u64 - 64);
    assert!(scan.from_is_boundary);
    assert_eq!(
        (scan.events_from, scan.corruption),
        (2, Some("length out of bounds"))
    );
    assert!(!segment::scan(&path, 3).expect("scan").from_is_boundary);

    // The reader stops at the durable position of the segment being written.
    let mut reader = Reader::new(
        dir.path().to_owned(),
        Position {
            segment: 1,
            offset: 0,
        },
    );
    let durable = Position {
        segment: 1,
        offset: first_len,
    };
    let batch = reader.read_batch::<TestEvent>(durable, 10).expect("read");
    assert_eq!((batch.events.len(), batch.end), (1, durable));
}

#[tokio::test]
async fn delivery_resumes_at_the_cursor() {
    let dir = TempDir::new("cursor");
    spool_undelivered(dir.path(), 10).await;
    let path = last_nonempty_segment(dir.path());
    let id_of_segment = segments(dir.path())
        .into_iter()
        .find(|&id| segment::segment_path(dir.path(), id) == path)
        .expect("segment id");
    // A previous run had the first 4 events acknowledged.
    let record = segment::record_len(&super::event(0));
    segment::write_cursor(
        dir.path(),
        Position {
            segment: id_of_segment,
            offset: 4 * record,
        },
    )
    .expect("write cursor");

    let receiver = Arc::new(Received::default());
    let running = Running::start(config(dir.path()), &receiver)
        .await
        .expect("restart");
    assert_eq!(running.depth(), (6, 6 * record as i64));
    wait_until("6 events delivered", 10, || receiver.unique() == 6).await;
    running.stop().await;
    assert!((0..4).all(|n| !receiver.has(&id(n))));
    assert!((4..10).all(|n| receiver.has(&id(n))));
}

#[tokio::test]
async fn a_second_spool_on_the_same_dir_fails_to_start() {
    let dir = TempDir::new("lock");
    let down = down();
    let first = Running::start_draining(config(dir.path()), &down, Duration::from_millis(50))
        .await
        .expect("first start");
    let second = Running::start(config(dir.path()), &down).await;
    let error = format!("{:#}", second.err().expect("second start must fail"));
    assert!(error.contains("locked by another process"), "{error}");
    first.stop().await;
    // Released with the first spool.
    let third = Running::start_draining(config(dir.path()), &down, Duration::from_millis(50))
        .await
        .expect("start after stop");
    third.stop().await;
}

/// Regression (spool property test): damage to a record before the cursor
/// made the restart replay the segment from its start, delivering events
/// the receiver had acknowledged already.
#[tokio::test]
async fn damage_before_the_cursor_redelivers_nothing_acknowledged() {
    let dir = TempDir::new("damage-before-cursor");
    spool_undelivered(dir.path(), 10).await;
    let path = last_nonempty_segment(dir.path());
    let id_of_segment = segments(dir.path())
        .into_iter()
        .find(|&id| segment::segment_path(dir.path(), id) == path)
        .expect("segment id");
    let record = segment::record_len(&super::event(0));
    // The first 4 were acknowledged; then the second record rotted.
    segment::write_cursor(
        dir.path(),
        Position {
            segment: id_of_segment,
            offset: 4 * record,
        },
    )
    .expect("write cursor");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[record as usize + 20] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");

    let receiver = Arc::new(Received::default());
    let running = Running::start(config(dir.path()), &receiver)
        .await
        .expect("restart");
    // Nothing before the cursor again; what followed the damage is lost.
    assert_eq!(running.depth(), (0, 0));
    running.stop().await;
    assert_eq!(receiver.unique(), 0, "acknowledged events delivered again");
}

/// Regression (spool property test): an event encoding to nothing was
/// written as a zero-length record, which reads back as a zero-filled
/// tail: the live reader stalled on it and a restart cut the segment
/// there, losing every event after it.
#[tokio::test]
async fn an_empty_event_is_refused_and_the_rest_delivered() {
    let dir = TempDir::new("empty-event");
    let receiver = Arc::new(Received::default());
    let running = Running::start(config(dir.path()), &receiver)
        .await
        .expect("start");
    running.emit_range(0..3);
    running.sink.emit(TestEvent::default()).expect("emit");
    running.emit_range(3..6);
    wait_until("6 events delivered", 20, || receiver.unique() == 6).await;
    wait_until("depth back to zero", 10, || running.depth() == (0, 0)).await;
    assert_eq!(running.metrics.rejected.get(), 1);
    running.stop().await;

    let again = Arc::new(Received::default());
    let running = Running::start(config(dir.path()), &again)
        .await
        .expect("restart");
    running.stop().await;
    assert_eq!(again.unique(), 0);
}

/// Regression (spool property test): the writer thread sent "stopped"
/// before letting go of the directory lock, so reopening the spool right
/// after its stop could find it locked. A race: many rounds make it likely
/// to show, not certain.
#[tokio::test]
async fn a_stopped_spool_reopens_at_once() {
    let dir = TempDir::new("reopen");
    let receiver = Arc::new(Received::default());
    for round in 0..100 {
        let running = Running::start(config(dir.path()), &receiver)
            .await
            .unwrap_or_else(|error| panic!("round {round}: {error:#}"));
        running.emit_range(round..round + 1);
        running.stop().await;
    }
    assert_eq!(receiver.unique(), 100);
}
