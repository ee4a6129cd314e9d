//! The append-only transaction log.
//!
//! Every event is one record. A record's *pre-position* is its byte offset in the log and its
//! *post-position* is the offset right after it; both are the numbers the `$all` API exposes
//! (contract §3.2: every event is an implicit commit, so commit == prepare == pre-position).
//!
//! On-disk framing (little endian), also used to compute sizes in memory mode so that positions
//! do not depend on the storage choice:
//!
//! ```text
//! u32 payload_len | payload | u32 crc32c(payload)
//! payload = u8 version(1) | u8 flags | i64 event_number | [16] event_id | i64 timestamp
//!         | u16 stream_len | stream | u16 type_len | type | u32 data_len | data | u32 meta_len | meta
//! ```
//!
//! Opening a log scans it from the start and truncates everything from the first record that is
//! incomplete or fails its checksum (a torn write at the tail after a crash).
//!
//! Scavenging ([`LogFile::rewrite`]) is the only write that is not an append: it rewrites a
//! removed record's frame in place, same offset and length, with [`FLAG_SCAVENGED`] set, data and
//! metadata zero-filled and a fresh checksum, so every `$all` position stays where it was. A frame
//! that fails its checksum but is structurally intact and followed by a valid record can only be
//! such a rewrite torn by a power loss (appends only ever tear the tail), so opening takes it as
//! removed and repairs it instead of truncating the log there.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

/// Name of the single log file inside a `--db` directory.
pub const LOG_FILE: &str = "devnode.log";

const VERSION: u8 = 1;
const FRAME_OVERHEAD: u64 = 8; // length prefix + crc suffix
const FIXED_PAYLOAD: usize = 1 + 1 + 8 + 16 + 8 + 2 + 2 + 4 + 4;
/// Sanity bound while scanning: a larger length prefix can only be garbage.
const MAX_PAYLOAD: u32 = 256 * 1024 * 1024;

/// Record flag: data (or metadata) is JSON (`PrepareFlags.IsJson`).
pub const FLAG_JSON: u8 = 1;
/// Record flag: hard-delete tombstone (`PrepareFlags.StreamDelete`).
pub const FLAG_TOMBSTONE: u8 = 2;
/// Record flag: removed by a scavenge. The frame keeps its place (so positions do not move), its
/// stream, number and id (so event numbering survives a restart), but no data; every read skips it.
pub const FLAG_SCAVENGED: u8 = 4;

/// One event as stored in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Pre-position (byte offset of the record).
    pub pos: u64,
    /// Serialized length; post-position = `pos + len`.
    pub len: u32,
    pub stream: Arc<str>,
    pub number: i64,
    pub event_id: Uuid,
    pub event_type: Arc<str>,
    pub flags: u8,
    /// Creation time in 100 ns ticks since the Unix epoch (.NET `DateTime` precision).
    pub timestamp: i64,
    pub data: Bytes,
    pub metadata: Bytes,
}

impl Record {
    pub fn post(&self) -> u64 {
        self.pos + self.len as u64
    }
    pub fn is_json(&self) -> bool {
        self.flags & FLAG_JSON != 0
    }
    pub fn is_tombstone(&self) -> bool {
        self.flags & FLAG_TOMBSTONE != 0
    }
    /// Physically removed by a scavenge: invisible to every read, `$all` included.
    pub fn is_removed(&self) -> bool {
        self.flags & FLAG_SCAVENGED != 0
    }
}

/// What the store asks the log to write.
#[derive(Clone, Debug)]
pub struct NewRecord {
    pub stream: Arc<str>,
    pub number: i64,
    pub event_id: Uuid,
    pub event_type: Arc<str>,
    pub flags: u8,
    pub timestamp: i64,
    pub data: Bytes,
    pub metadata: Bytes,
}

/// Why a record cannot be stored at all (names too long for the framing).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("stream name longer than 65535 bytes")]
    StreamTooLong,
    #[error("event type longer than 65535 bytes")]
    TypeTooLong,
    #[error("record larger than the log allows")]
    TooLarge,
}

/// Serialized size of a record; identical for memory and disk so positions match.
pub fn encoded_len(r: &NewRecord) -> Result<u32, EncodeError> {
    if r.stream.len() > u16::MAX as usize {
        return Err(EncodeError::StreamTooLong);
    }
    if r.event_type.len() > u16::MAX as usize {
        return Err(EncodeError::TypeTooLong);
    }
    let payload =
        FIXED_PAYLOAD + r.stream.len() + r.event_type.len() + r.data.len() + r.metadata.len();
    if payload > MAX_PAYLOAD as usize {
        return Err(EncodeError::TooLarge);
    }
    Ok(payload as u32 + FRAME_OVERHEAD as u32)
}

/// Appends the framed record to `out`.
pub fn encode(r: &NewRecord, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let total = encoded_len(r)?;
    let payload_len = total - FRAME_OVERHEAD as u32;
    out.reserve(total as usize);
    out.extend_from_slice(&payload_len.to_le_bytes());
    let start = out.len();
    out.push(VERSION);
    out.push(r.flags);
    out.extend_from_slice(&r.number.to_le_bytes());
    out.extend_from_slice(r.event_id.as_bytes());
    out.extend_from_slice(&r.timestamp.to_le_bytes());
    out.extend_from_slice(&(r.stream.len() as u16).to_le_bytes());
    out.extend_from_slice(r.stream.as_bytes());
    out.extend_from_slice(&(r.event_type.len() as u16).to_le_bytes());
    out.extend_from_slice(r.event_type.as_bytes());
    out.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.data);
    out.extend_from_slice(&(r.metadata.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.metadata);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The frame a scavenge writes over a removed record: same fields and lengths, [`FLAG_SCAVENGED`]
/// set, data and metadata zero-filled, fresh checksum. Same length as the original frame.
#[allow(clippy::too_many_arguments)]
pub fn encode_removed(
    stream: &str,
    number: i64,
    event_id: Uuid,
    event_type: &str,
    flags: u8,
    timestamp: i64,
    data_len: usize,
    meta_len: usize,
) -> Result<Vec<u8>, EncodeError> {
    let r = NewRecord {
        stream: stream.into(),
        number,
        event_id,
        event_type: event_type.into(),
        flags: flags | FLAG_SCAVENGED,
        timestamp,
        data: Bytes::from(vec![0u8; data_len]),
        metadata: Bytes::from(vec![0u8; meta_len]),
    };
    let mut out = Vec::new();
    encode(&r, &mut out)?;
    Ok(out)
}

/// A decoded record whose byte fields are slices of the scanned file buffer (no copies).
pub struct Decoded {
    pub len: u32,
    pub stream: String,
    pub number: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub flags: u8,
    pub timestamp: i64,
    pub data: Bytes,
    pub metadata: Bytes,
}

/// Decodes the record starting at `buf[at..]`; `None` when it is incomplete or corrupt.
pub fn decode(buf: &Bytes, at: usize) -> Option<Decoded> {
    decode_frame(buf, at, true)
}

/// Like [`decode`] but ignoring the checksum: the frame's structure (lengths, version, UTF-8
/// names) must still be intact. Used to recognise torn in-place scavenge rewrites.
fn decode_lenient(buf: &Bytes, at: usize) -> Option<Decoded> {
    decode_frame(buf, at, false)
}

fn decode_frame(buf: &Bytes, at: usize, check_crc: bool) -> Option<Decoded> {
    let rest = buf.get(at..)?;
    let payload_len = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?);
    if payload_len > MAX_PAYLOAD || (payload_len as usize) < FIXED_PAYLOAD {
        return None;
    }
    let total = payload_len as usize + FRAME_OVERHEAD as usize;
    let frame = rest.get(..total)?;
    let payload = &frame[4..4 + payload_len as usize];
    let crc = u32::from_le_bytes(frame[total - 4..].try_into().ok()?);
    if check_crc && crc32c::crc32c(payload) != crc {
        return None;
    }
    let mut c = Cursor { b: payload, i: 0 };
    if c.u8()? != VERSION {
        return None;
    }
    let flags = c.u8()?;
    let number = i64::from_le_bytes(c.take(8)?.try_into().ok()?);
    let event_id = Uuid::from_slice(c.take(16)?).ok()?;
    let timestamp = i64::from_le_bytes(c.take(8)?.try_into().ok()?);
    let sl = u16::from_le_bytes(c.take(2)?.try_into().ok()?) as usize;
    let stream = std::str::from_utf8(c.take(sl)?).ok()?.to_owned();
    let tl = u16::from_le_bytes(c.take(2)?.try_into().ok()?) as usize;
    let event_type = std::str::from_utf8(c.take(tl)?).ok()?.to_owned();
    let dl = u32::from_le_bytes(c.take(4)?.try_into().ok()?) as usize;
    let data_start = at + 4 + c.i;
    c.take(dl)?;
    let ml = u32::from_le_bytes(c.take(4)?.try_into().ok()?) as usize;
    let meta_start = at + 4 + c.i;
    c.take(ml)?;
    if c.i != payload.len() {
        return None;
    }
    Some(Decoded {
        len: total as u32,
        stream,
        number,
        event_id,
        event_type,
        flags,
        timestamp,
        data: buf.slice(data_start..data_start + dl),
        metadata: buf.slice(meta_start..meta_start + ml),
    })
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
}

/// The durable side of the log: an append-only file. Memory mode has none.
pub struct LogFile {
    file: File,
    path: PathBuf,
    fsync: bool,
}

/// Result of opening a log file: its records and how much garbage was cut off the tail.
pub struct Opened {
    pub file: LogFile,
    pub records: Vec<Decoded>,
    pub end: u64,
    pub truncated_bytes: u64,
    /// Torn scavenge rewrites found in the middle of the log, taken as removed and repaired.
    pub repaired: usize,
}

impl LogFile {
    /// Opens (or creates) `dir/devnode.log`, validates every record and truncates a bad tail.
    pub fn open(dir: &Path, fsync: bool) -> io::Result<Opened> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw)?;
        let buf = Bytes::from(raw);
        let mut records = Vec::new();
        // Frames with a bad checksum but an intact structure, not yet followed by a valid one.
        let mut suspects: Vec<(usize, Decoded)> = Vec::new();
        let mut repairs: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut at = 0usize;
        while at < buf.len() {
            if let Some(d) = decode(&buf, at) {
                // A valid record after suspects: they were torn in-place scavenge rewrites.
                for (pos, mut s) in suspects.drain(..) {
                    let frame = encode_removed(
                        &s.stream,
                        s.number,
                        s.event_id,
                        &s.event_type,
                        s.flags,
                        s.timestamp,
                        s.data.len(),
                        s.metadata.len(),
                    )
                    .map_err(io::Error::other)?;
                    if frame.len() != s.len as usize {
                        return Err(io::Error::other("repaired frame changed length"));
                    }
                    s.flags |= FLAG_SCAVENGED;
                    s.data = Bytes::new();
                    s.metadata = Bytes::new();
                    repairs.push((pos, frame));
                    records.push(s);
                }
                at += d.len as usize;
                records.push(d);
            } else if let Some(d) = decode_lenient(&buf, at) {
                let len = d.len as usize;
                suspects.push((at, d));
                at += len;
            } else {
                break;
            }
        }
        if let Some((first, _)) = suspects.first() {
            // Not followed by a valid record: a torn tail after all.
            at = *first;
        }
        let truncated_bytes = (buf.len() - at) as u64;
        if truncated_bytes > 0 {
            file.set_len(at as u64)?;
            file.sync_all()?;
        }
        let repaired = repairs.len();
        let mut log = LogFile { file, path, fsync };
        for (pos, frame) in &repairs {
            log.rewrite(*pos as u64, frame)?;
        }
        if repaired > 0 {
            log.file.sync_all()?;
        }
        log.file.seek(SeekFrom::Start(at as u64))?;
        Ok(Opened {
            file: log,
            records,
            end: at as u64,
            truncated_bytes,
            repaired,
        })
    }

    /// Overwrites the frame at `at` (a scavenge marking a record removed) without moving the
    /// append cursor. The caller keeps the length unchanged; [`LogFile::sync_if_configured`]
    /// makes a batch of rewrites durable.
    pub fn rewrite(&mut self, at: u64, bytes: &[u8]) -> io::Result<()> {
        write_all_at(&self.file, at, bytes)
    }

    /// fsync when the node runs with `--fsync` (after a batch of [`LogFile::rewrite`]s).
    pub fn sync_if_configured(&mut self) -> io::Result<()> {
        if self.fsync {
            self.file.sync_data()
        } else {
            Ok(())
        }
    }

    /// Writes already-framed records at `at` (the current end). On failure the file is cut back
    /// to `at` so that a half-written batch never becomes visible after a restart.
    pub fn append(&mut self, at: u64, bytes: &[u8]) -> io::Result<()> {
        let res = self.file.write_all(bytes).and_then(|_| {
            if self.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if res.is_err() {
            let _ = self.file.set_len(at);
            let _ = self.file.seek(SeekFrom::Start(at));
        }
        res
    }

    /// Flushes file data to stable storage (used on shutdown).
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
fn write_all_at(file: &File, at: u64, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, at)
}

#[cfg(not(unix))]
fn write_all_at(mut file: &File, at: u64, bytes: &[u8]) -> io::Result<()> {
    let back = file.stream_position()?;
    file.seek(SeekFrom::Start(at))?;
    let res = file.write_all(bytes);
    file.seek(SeekFrom::Start(back))?;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(stream: &str, n: i64, data: &[u8]) -> NewRecord {
        NewRecord {
            stream: stream.into(),
            number: n,
            event_id: Uuid::new_v4(),
            event_type: "t".into(),
            flags: FLAG_JSON,
            timestamp: 42,
            data: Bytes::copy_from_slice(data),
            metadata: Bytes::from_static(b"m"),
        }
    }

    #[test]
    fn roundtrip_and_length() {
        let r = rec("s-1", 3, b"{}");
        let mut out = Vec::new();
        encode(&r, &mut out).unwrap();
        assert_eq!(out.len() as u32, encoded_len(&r).unwrap());
        let buf = Bytes::from(out);
        let d = decode(&buf, 0).unwrap();
        assert_eq!(d.stream, "s-1");
        assert_eq!(d.number, 3);
        assert_eq!(d.event_id, r.event_id);
        assert_eq!(&d.data[..], b"{}");
        assert_eq!(&d.metadata[..], b"m");
        assert_eq!(d.timestamp, 42);
    }

    #[test]
    fn corrupt_and_short_records_are_rejected() {
        let mut out = Vec::new();
        encode(&rec("a", 0, b"x"), &mut out).unwrap();
        let short = Bytes::from(out[..out.len() - 1].to_vec());
        assert!(decode(&short, 0).is_none());
        let mut bad = out.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        assert!(decode(&Bytes::from(bad), 0).is_none());
    }

    #[test]
    fn open_truncates_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        encode(&rec("a", 0, b"one"), &mut bytes).unwrap();
        let good = bytes.len();
        encode(&rec("a", 1, b"two"), &mut bytes).unwrap();
        bytes.truncate(bytes.len() - 3); // torn second record
        std::fs::write(dir.path().join(LOG_FILE), &bytes).unwrap();
        let opened = LogFile::open(dir.path(), false).unwrap();
        assert_eq!(opened.records.len(), 1);
        assert_eq!(opened.end, good as u64);
        assert!(opened.truncated_bytes > 0);
        assert_eq!(
            std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(),
            good as u64
        );
    }

    #[test]
    fn torn_scavenge_rewrite_is_repaired_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (rec("a", 0, b"one"), rec("a", 1, b"two"));
        let mut bytes = Vec::new();
        encode(&a, &mut bytes).unwrap();
        let first = bytes.len();
        encode(&b, &mut bytes).unwrap();
        // Half of the rewrite of record 0 reached the disk: data zeroed, old checksum.
        let removed = encode_removed("a", 0, a.event_id, "t", a.flags, 42, 3, 1).unwrap();
        assert_eq!(removed.len(), first);
        let mut torn = bytes.clone();
        torn[..first - 4].copy_from_slice(&removed[..first - 4]);
        std::fs::write(dir.path().join(LOG_FILE), &torn).unwrap();
        let opened = LogFile::open(dir.path(), false).unwrap();
        assert_eq!(opened.records.len(), 2);
        assert_eq!(opened.repaired, 1);
        assert_eq!(opened.truncated_bytes, 0);
        assert!(opened.records[0].flags & FLAG_SCAVENGED != 0);
        assert_eq!(&opened.records[1].data[..], b"two");
        drop(opened);
        // Repaired on disk: the next open finds a valid scavenged frame.
        assert_eq!(
            std::fs::read(dir.path().join(LOG_FILE)).unwrap()[..first],
            removed[..]
        );

        // The same damage on the last record is a torn tail: cut off.
        let mut tail = bytes.clone();
        let removed_b = encode_removed("a", 1, b.event_id, "t", b.flags, 42, 3, 1).unwrap();
        tail[first..first + 10].copy_from_slice(&removed_b[..10]);
        tail[first + 20] ^= 0xff;
        std::fs::write(dir.path().join(LOG_FILE), &tail).unwrap();
        let opened = LogFile::open(dir.path(), false).unwrap();
        assert_eq!(opened.records.len(), 1);
        assert_eq!(opened.end, first as u64);
    }
}
