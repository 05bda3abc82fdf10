//! The spool's disk format, and reading it back.
//!
//! A segment is an append-only file named by its id
//! (`00000000000000000001.seg`) holding records:
//! `u32 payload length | u32 CRC-32 of the payload | payload`, both integers
//! little-endian, the payload one prost-encoded event. Records are never
//! rewritten in place, so a crash can only leave a torn record at the very
//! end of the segment being written; replay cuts it off.
//!
//! The delivery position (`cursor`) is a small text file replaced by rename:
//! either the old or the new one is read after a crash, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use prost::Message;

pub const HEADER_BYTES: u64 = 8;
/// An event is a few hundred bytes; a length above this is corruption (and
/// the writer refuses such an event: a receiver behind gRPC's 4 MiB default
/// message limit would refuse it forever anyway).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// A batch read for one delivery stays under this many bytes, far from
/// gRPC's 4 MiB default message limit.
const MAX_BATCH_BYTES: u64 = 1 << 20;
const CURSOR: &str = "cursor";
const CURSOR_TMP: &str = "cursor.tmp";
pub const REJECTED: &str = "rejected";

/// A place in the spool: a segment id and a byte offset in it (always a
/// record boundary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Ids of the segments in `dir`, oldest first. Other files are ignored.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|name| name.strip_suffix(".seg")) else {
            continue;
        };
        if stem.len() == 20
            && let Ok(id) = stem.parse::<u64>()
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Size of the record `event` becomes, header included.
pub fn record_len(event: &impl Message) -> u64 {
    HEADER_BYTES + event.encoded_len() as u64
}

/// An event no record can hold.
#[derive(Debug, thiserror::Error)]
pub enum Unspoolable {
    #[error("event of {0} bytes exceeds the {MAX_PAYLOAD}-byte record limit")]
    TooLarge(usize),
    /// Every field at its default encodes to nothing, and a zero-length
    /// record reads back as a zero-filled tail: it would end the segment
    /// there, losing every event after it.
    #[error("event is empty (every field at its default): nothing to spool")]
    Empty,
}

/// Appends `event` as one record to `buf`.
pub fn encode_record(event: &impl Message, buf: &mut Vec<u8>) -> Result<(), Unspoolable> {
    let len = event.encoded_len();
    if len == 0 {
        return Err(Unspoolable::Empty);
    }
    let Ok(len32) = u32::try_from(len) else {
        return Err(Unspoolable::TooLarge(len));
    };
    if len > MAX_PAYLOAD {
        return Err(Unspoolable::TooLarge(len));
    }
    let start = buf.len();
    buf.reserve(HEADER_BYTES as usize + len);
    buf.extend_from_slice(&[0; HEADER_BYTES as usize]);
    // Encoding into a Vec only fails for lack of capacity, which a Vec grows.
    if event.encode(buf).is_err() {
        buf.truncate(start);
        return Err(Unspoolable::TooLarge(len));
    }
    let crc = crc32fast::hash(&buf[start + HEADER_BYTES as usize..]);
    buf[start..start + 4].copy_from_slice(&len32.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What reading the next record found.
pub enum Next {
    /// A whole record of this many bytes (header included); its payload is
    /// in the caller's buffer.
    Record(u64),
    /// Clean end of the file.
    End,
    /// A torn or damaged record: nothing from here on can be trusted.
    Corrupt(&'static str),
}

/// Reads the record at the reader's position into `payload`.
pub fn read_record(reader: &mut impl Read, payload: &mut Vec<u8>) -> io::Result<Next> {
    let mut header = [0u8; HEADER_BYTES as usize];
    match read_full(reader, &mut header)? {
        0 => return Ok(Next::End),
        n if n < header.len() => return Ok(Next::Corrupt("torn header")),
        _ => {}
    }
    let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    let crc = u32::from_le_bytes([c0, c1, c2, c3]);
    // Zero length is refused too: a zero-filled tail (a file extended but
    // its data never written) would otherwise pass as empty records.
    if len == 0 || len > MAX_PAYLOAD {
        return Ok(Next::Corrupt("length out of bounds"));
    }
    payload.clear();
    payload.resize(len, 0);
    if read_full(reader, payload)? < len {
        return Ok(Next::Corrupt("torn record"));
    }
    if crc32fast::hash(payload) != crc {
        return Ok(Next::Corrupt("checksum mismatch"));
    }
    Ok(Next::Record(HEADER_BYTES + len as u64))
}

/// Like `read_exact`, but tells how much was there instead of failing at EOF.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// One segment checked record by record at start.
pub struct Scan {
    /// Length of the intact prefix: where a torn or corrupt record begins.
    pub valid_len: u64,
    pub file_len: u64,
    pub corruption: Option<&'static str>,
    /// Whether `from` (the cursor) falls on a record boundary.
    pub from_is_boundary: bool,
    /// Records (and their bytes) at or after `from`: still to deliver.
    pub events_from: u64,
    /// Records in the intact prefix (their bytes are `valid_len`).
    pub events_total: u64,
    pub bytes_from: u64,
}

pub fn scan(path: &Path, from: u64) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(256 << 10, file);
    let mut payload = Vec::new();
    let mut scan = Scan {
        valid_len: 0,
        file_len,
        corruption: None,
        from_is_boundary: from == 0,
        events_from: 0,
        events_total: 0,
        bytes_from: 0,
    };
    loop {
        if scan.valid_len == from {
            scan.from_is_boundary = true;
        }
        match read_record(&mut reader, &mut payload)? {
            Next::Record(len) => {
                if scan.valid_len >= from {
                    scan.events_from += 1;
                    scan.bytes_from += len;
                }
                scan.valid_len += len;
                scan.events_total += 1;
            }
            Next::End => return Ok(scan),
            Next::Corrupt(why) => {
                scan.corruption = Some(why);
                return Ok(scan);
            }
        }
    }
}

/// Cuts a segment back to `len` bytes, durably.
pub fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

/// The persisted delivery position; `None` when there is none or it cannot
/// be read (then delivery starts at the oldest segment: the receiver dedupes).
pub fn read_cursor(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join(CURSOR)).ok()?;
    let mut fields = text.split_whitespace();
    if fields.next()? != "v1" {
        return None;
    }
    let segment = fields.next()?.parse().ok()?;
    let offset = fields.next()?.parse().ok()?;
    Some(Position { segment, offset })
}

/// Replaces the cursor atomically. Not fsynced: losing it to a power cut
/// only redelivers (at most the oldest segment), which the receiver dedupes.
pub fn write_cursor(dir: &Path, at: Position) -> io::Result<()> {
    let tmp = dir.join(CURSOR_TMP);
    fs::write(&tmp, format!("v1 {} {}\n", at.segment, at.offset))?;
    fs::rename(&tmp, dir.join(CURSOR))
}

/// Appends raw records to a file under `rejected/`, durably, and returns
/// its path. Same record format as segments, so they can be replayed by hand.
pub fn append_rejected(dir: &Path, name: &str, records: &[u8]) -> io::Result<PathBuf> {
    let rejected = dir.join(REJECTED);
    fs::create_dir_all(&rejected)?;
    let path = rejected.join(name);
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    file.write_all(records)?;
    file.sync_data()?;
    Ok(path)
}

/// Events read for one delivery, all from one segment.
pub struct Batch<E> {
    pub events: Vec<E>,
    /// Records whose checksum holds but that do not decode as an event
    /// (header included): they can never be delivered, so they are rejected.
    pub undecodable: Vec<u8>,
    pub undecodable_count: u64,
    pub start: Position,
    pub end: Position,
    /// Record bytes from `start` to `end`.
    pub bytes: u64,
    /// Bytes of a damaged segment that were skipped (their events are lost;
    /// they no longer count against the spool's bound).
    pub skipped_bytes: u64,
    /// Segments read to their end before this batch: once the batch is
    /// acknowledged (and at once when it is empty) they can be deleted.
    pub finished: Vec<u64>,
}

/// Reads the spool sequentially for the sender.
pub struct Reader {
    dir: PathBuf,
    at: Position,
    file: Option<BufReader<File>>,
    payload: Vec<u8>,
}

impl Reader {
    pub fn new(dir: PathBuf, at: Position) -> Reader {
        Reader {
            dir,
            at,
            file: None,
            payload: Vec::new(),
        }
    }

    /// Reads up to `max_events` records from the read position, never past
    /// `durable` (what the writer has fsynced): segments before
    /// `durable.segment` are complete and read to their end.
    pub fn read_batch<E: Message + Default>(
        &mut self,
        durable: Position,
        max_events: usize,
    ) -> io::Result<Batch<E>> {
        let mut batch = Batch {
            events: Vec::new(),
            undecodable: Vec::new(),
            undecodable_count: 0,
            start: self.at,
            end: self.at,
            bytes: 0,
            skipped_bytes: 0,
            finished: Vec::new(),
        };
        loop {
            let sealed = self.at.segment < durable.segment;
            if !sealed && self.at.offset >= durable.offset {
                break;
            }
            let reader = match self.file.as_mut() {
                Some(reader) => reader,
                None => match File::open(segment_path(&self.dir, self.at.segment)) {
                    Ok(file) => self.file.insert(BufReader::with_capacity(256 << 10, file)),
                    Err(error) if sealed && error.kind() == io::ErrorKind::NotFound => {
                        self.next_segment(durable, &mut batch)?;
                        continue;
                    }
                    Err(error) => return Err(error),
                },
            };
            // Always seek: it drops BufReader's read-ahead, which in the
            // segment being written may hold bytes the writer had not
            // finished (they lie past `durable` and are never parsed, but
            // must not be served from the buffer on the next call).
            if batch.bytes == 0 {
                reader.seek(SeekFrom::Start(self.at.offset))?;
            }
            match read_record(reader, &mut self.payload)? {
                Next::Record(len) => {
                    match E::decode(self.payload.as_slice()) {
                        Ok(event) => batch.events.push(event),
                        Err(_) => {
                            batch
                                .undecodable
                                .extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
                            batch
                                .undecodable
                                .extend_from_slice(&crc32fast::hash(&self.payload).to_le_bytes());
                            batch.undecodable.extend_from_slice(&self.payload);
                            batch.undecodable_count += 1;
                        }
                    }
                    self.at.offset += len;
                    batch.bytes += len;
                    if batch.events.len() >= max_events || batch.bytes >= MAX_BATCH_BYTES {
                        break;
                    }
                }
                Next::End if sealed => {
                    if batch.bytes > 0 {
                        break;
                    }
                    self.next_segment(durable, &mut batch)?;
                }
                // Only reachable if the file shrank under us.
                Next::End => {
                    return Err(io::Error::other("spool segment is shorter than written"));
                }
                Next::Corrupt(why) if sealed => {
                    // Deliver what came before first; the next call skips.
                    if batch.bytes > 0 {
                        break;
                    }
                    // Replay already cut torn tails, so this is damage to a
                    // complete segment: the rest of it cannot be read.
                    let len = fs::metadata(segment_path(&self.dir, self.at.segment))?.len();
                    let dropped_bytes = len.saturating_sub(self.at.offset);
                    batch.skipped_bytes += dropped_bytes;
                    tracing::error!(
                        dir = %self.dir.display(),
                        segment = self.at.segment,
                        offset = self.at.offset,
                        dropped_bytes,
                        why,
                        "spool segment damaged: the rest of it is skipped"
                    );
                    self.next_segment(durable, &mut batch)?;
                }
                Next::Corrupt(why) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("spool record at {:?}: {why}", self.at),
                    ));
                }
            }
        }
        batch.end = self.at;
        Ok(batch)
    }

    /// Moves to the next segment after a complete one, noting it finished.
    fn next_segment<E>(&mut self, durable: Position, batch: &mut Batch<E>) -> io::Result<()> {
        let done = self.at.segment;
        let next = list_segments(&self.dir)?
            .into_iter()
            .find(|&id| id > done)
            .unwrap_or(durable.segment)
            .min(durable.segment);
        batch.finished.push(done);
        self.at = Position {
            segment: next,
            offset: 0,
        };
        self.file = None;
        batch.start = self.at;
        Ok(())
    }
}
