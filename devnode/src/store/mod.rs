//! The storage core: one append-only log plus in-memory indexes, and the server's write rules.
//!
//! Free of HTTP types on purpose so a gRPC front can share it. Implements:
//! * stream index and event numbers, `$all` reads by log position (§3.2–§3.4),
//! * expected-version and strong/weak idempotency decisions (§5.2, §5.5),
//! * soft/hard deletes with the automatic "undelete" metadata follow-ups (§5.7),
//! * stream metadata, `$settings` and ACL evaluation (§8, see [`acl`]).

pub mod acl;
pub mod log;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::Storage;
use acl::{Principal, Right, StreamMetadata, SystemSettings};
use log::{LogFile, NewRecord, Record, FLAG_JSON, FLAG_TOMBSTONE};

pub use log::Record as StoredRecord;

/// `EventNumber.DeletedStream` / the tombstone's event number (§5.7).
pub const DELETED_STREAM: i64 = i64::MAX;
/// Expected-version constants (§5.2).
pub const EXPECTED_ANY: i64 = -2;
pub const EXPECTED_NO_STREAM: i64 = -1;
pub const EXPECTED_INVALID: i64 = -3;
pub const EXPECTED_STREAM_EXISTS: i64 = -4;

/// Maximum events per read (`MaxPageSize`, §3.2/§11.9).
pub const MAX_PAGE_SIZE: usize = 4096;

/// Bound of the in-memory event-id cache (the real one is 8 MiB of entries, §5.5).
const ID_CACHE_CAPACITY: usize = 100_000;

const SETTINGS_STREAM: &str = "$settings";
const METADATA_EVENT_TYPE: &str = "$metadata";
const TOMBSTONE_EVENT_TYPE: &str = "$streamDeleted";
const LINK_EVENT_TYPE: &str = "$>";

/// Errors of the storage core (I/O only; decisions are results, not errors).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("log i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Encode(#[from] log::EncodeError),
}

/// An event as a client proposes it.
#[derive(Debug, Clone)]
pub struct ProposedEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub is_json: bool,
    pub data: Bytes,
    pub metadata: Bytes,
}

/// Outcome of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendResult {
    Written {
        first: i64,
        last: i64,
    },
    /// Replay of events already in the stream; nothing written (§5.5).
    Idempotent {
        first: i64,
    },
    WrongExpectedVersion {
        current: i64,
    },
    StreamDeleted,
    /// Expected version −3: the server throws before writing anything (§5.2).
    NothingWritten,
}

/// Outcome of a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteResult {
    Deleted,
    WrongExpectedVersion { current: i64 },
    StreamDeleted,
}

/// An entry of a read: `event` is what the entry shows, `link` the `$>` record that pointed at it
/// when links were resolved. `event == None` means a link whose target is gone.
#[derive(Debug, Clone)]
pub struct ResolvedEvent {
    pub event: Option<Record>,
    pub link: Option<Record>,
}

impl ResolvedEvent {
    /// The record actually read (the link when there is one).
    pub fn original(&self) -> &Record {
        match (&self.link, &self.event) {
            (Some(l), _) => l,
            (None, Some(e)) => e,
            // Constructed only with at least one side set.
            (None, None) => unreachable!("resolved event without records"),
        }
    }
}

/// A `$all` position (§3.2). Commit then prepare, compared lexicographically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TfPos {
    pub commit: i64,
    pub prepare: i64,
}

impl TfPos {
    pub const fn new(commit: i64, prepare: i64) -> Self {
        TfPos { commit, prepare }
    }

    /// 32 upper-case hex digits, commit then prepare (`{0:X16}{1:X16}`).
    pub fn to_hex(self) -> String {
        format!("{:016X}{:016X}", self.commit as u64, self.prepare as u64)
    }

    /// Accepts exactly 32 hex digits of either case; negative halves are rejected (§3.2).
    pub fn parse(s: &str) -> Option<TfPos> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let c = u64::from_str_radix(&s[..16], 16).ok()? as i64;
        let p = u64::from_str_radix(&s[16..], 16).ok()? as i64;
        if c < 0 || p < 0 {
            return None;
        }
        Some(TfPos::new(c, p))
    }
}

/// A page of `$all`.
#[derive(Debug, Clone)]
pub struct AllSlice {
    /// In log order (oldest first for forward reads, newest first for backward reads).
    pub events: Vec<ResolvedEvent>,
    pub requested: TfPos,
    /// Forward: (post-position of last event, 0). Backward: (pre, pre) of the oldest event.
    pub next: TfPos,
    /// Forward: (pre, pre) of the first record at/after the request, else (commit, MAX).
    /// Backward: (post, post) of the newest record read, else (commit, 0).
    pub prev: TfPos,
    pub max_count: usize,
    /// Commit position of the newest record (ETag number of `$all`), −1 when the log is empty.
    pub last_commit: i64,
}

impl AllSlice {
    pub fn is_end_of_stream(&self) -> bool {
        self.events.len() < self.max_count
    }
}

/// A page of one stream.
#[derive(Debug, Clone)]
pub struct StreamSlice {
    /// In read order (ascending for forward, descending for backward).
    pub events: Vec<ResolvedEvent>,
    /// Requested start (for a head read: the last event number).
    pub from: i64,
    pub max_count: usize,
    pub last_event_number: i64,
    pub is_end_of_stream: bool,
    pub metadata: Arc<StreamMetadata>,
}

#[derive(Debug, Clone)]
pub enum StreamRead {
    Ok(StreamSlice),
    NoStream,
    Deleted,
}

#[derive(Debug, Clone)]
pub enum EventRead {
    Ok {
        event: Box<ResolvedEvent>,
        metadata: Arc<StreamMetadata>,
    },
    /// A metastream read whose original stream exists but has no metadata yet: 200 `{}` (§4.5).
    NoMetadata,
    NotFound,
    NoStream,
    Deleted,
}

/// Access-checked operations (§8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
    Delete,
}

#[derive(Default)]
struct StreamEntry {
    /// Record index of each event; the event number is the position in this vector.
    events: Vec<u32>,
    tombstone: Option<u32>,
    /// For metastreams only: parsed metadata (last event) of the original stream.
    meta: Option<Arc<StreamMetadata>>,
}

/// Bounded FIFO cache eventId → (stream, number), lost on restart like the real one (§5.5).
#[derive(Default)]
struct IdCache {
    map: HashMap<Uuid, (Arc<str>, i64)>,
    order: VecDeque<Uuid>,
}

impl IdCache {
    fn insert(&mut self, id: Uuid, stream: Arc<str>, number: i64) {
        if self.map.insert(id, (stream, number)).is_none() {
            self.order.push_back(id);
            while self.order.len() > ID_CACHE_CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
    fn get(&self, id: &Uuid) -> Option<&(Arc<str>, i64)> {
        self.map.get(id)
    }
    fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

struct State {
    records: Vec<Record>,
    streams: HashMap<Arc<str>, StreamEntry>,
    types: HashSet<Arc<str>>,
    end: u64,
    settings: Arc<SystemSettings>,
    ids: IdCache,
    file: Option<LogFile>,
    metastream_meta: Arc<StreamMetadata>,
    empty_meta: Arc<StreamMetadata>,
    /// Set by [`Store::close`]; later writes fail instead of touching a reused directory.
    closed: bool,
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    state: RwLock<State>,
    changes: watch::Sender<u64>,
}

/// Current time in 100 ns ticks since the Unix epoch.
pub fn now_ticks() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_nanos() / 100) as i64
}

impl Store {
    /// Opens the log (recovering a torn tail) and rebuilds every index.
    pub fn open(storage: &Storage, fsync: bool) -> Result<Store, StoreError> {
        let mut state = State {
            records: Vec::new(),
            streams: HashMap::new(),
            types: HashSet::new(),
            end: 0,
            settings: Arc::new(SystemSettings::default()),
            ids: IdCache::default(),
            file: None,
            // Metastreams keep only their latest event readable (server default `$maxCount` 1, §4.5).
            metastream_meta: Arc::new(StreamMetadata {
                max_count: Some(1),
                ..StreamMetadata::default()
            }),
            empty_meta: Arc::new(StreamMetadata::default()),
            closed: false,
        };
        if let Storage::Dir(dir) = storage {
            let opened = LogFile::open(dir, fsync)?;
            if opened.truncated_bytes > 0 {
                tracing::warn!(
                    path = %opened.file.path().display(),
                    bytes = opened.truncated_bytes,
                    "truncated an incomplete or corrupt tail of the log"
                );
            }
            let mut pos = 0u64;
            for d in opened.records {
                let stream = state.intern_stream(&d.stream);
                let event_type = state.intern_type(&d.event_type);
                let rec = Record {
                    pos,
                    len: d.len,
                    stream,
                    number: d.number,
                    event_id: d.event_id,
                    event_type,
                    flags: d.flags,
                    timestamp: d.timestamp,
                    data: d.data,
                    metadata: d.metadata,
                };
                pos += d.len as u64;
                state.index(rec);
            }
            state.end = opened.end;
            state.file = Some(opened.file);
            tracing::info!(records = state.records.len(), end = state.end, "log opened");
        }
        let end = state.end;
        Ok(Store {
            state: RwLock::new(state),
            changes: watch::channel(end).0,
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Watch the log end; it changes on every commit (used by long polls).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// How many long polls (or other watchers) currently wait for commits; lets tests
    /// synchronise on a parked poll instead of sleeping.
    pub fn watchers(&self) -> usize {
        self.changes.receiver_count()
    }

    /// Next write position (`writer.chk`).
    pub fn end(&self) -> u64 {
        self.read().end
    }

    /// Commit position of the newest record, −1 when empty (`$all` ETag number, §3.5).
    pub fn last_commit_position(&self) -> i64 {
        self.read().records.last().map_or(-1, |r| r.pos as i64)
    }

    pub fn record_count(&self) -> usize {
        self.read().records.len()
    }

    /// True if `pos` starts a record or is the end of the log (positions handed out by the server).
    pub fn is_boundary(&self, pos: i64) -> bool {
        let st = self.read();
        if pos < 0 {
            return false;
        }
        let pos = pos as u64;
        pos >= st.end || st.records.binary_search_by_key(&pos, |r| r.pos).is_ok()
    }

    /// Forgets the recent-event-id cache, as a restart or leader change does (§5.5).
    pub fn clear_idempotency_cache(&self) {
        self.write().ids.clear();
    }

    /// Flushes the log file to stable storage.
    pub fn flush(&self) -> Result<(), StoreError> {
        if let Some(f) = self.write().file.as_mut() {
            f.sync()?;
        }
        Ok(())
    }

    /// Flushes and releases the log file; every later write fails. Used by `Node::stop` so a
    /// connection that outlives the server cannot write into a directory a new node has opened.
    pub fn close(&self) -> Result<(), StoreError> {
        let mut st = self.write();
        st.closed = true;
        if let Some(mut f) = st.file.take() {
            f.sync()?;
        }
        Ok(())
    }

    pub fn settings(&self) -> Arc<SystemSettings> {
        self.read().settings.clone()
    }

    /// Metadata in force for `stream` (fixed `$maxCount: 1` for metastreams).
    pub fn stream_metadata(&self, stream: &str) -> Arc<StreamMetadata> {
        self.read().metadata_of(stream)
    }

    /// Last event number: −1 when there is none, [`DELETED_STREAM`] when hard-deleted.
    pub fn last_event_number(&self, stream: &str) -> i64 {
        self.read().last_event_number(stream)
    }

    /// The role list in force for `right` on `stream` (for `public` cache headers in v5).
    pub fn roles(&self, stream: &str, right: Right) -> Vec<String> {
        let st = self.read();
        let meta = st.metadata_of(stream);
        acl::effective_roles(stream, meta.acl.as_ref(), &st.settings, right)
    }

    /// ACL decision for `op` on `stream` (§8): metastream rights map to `$mr`/`$mw` of the original
    /// stream; writes/deletes of `$all`, deletes of metastreams and metadata-of-metadata are denied
    /// to everyone including admins.
    pub fn check_access(&self, stream: &str, op: Operation, principal: Option<&Principal>) -> bool {
        let (target, right) = if acl::is_metastream(stream) {
            let original = acl::original_of_metastream(stream);
            if acl::is_metastream(original) {
                return false;
            }
            match op {
                Operation::Read => (original, Right::MetaRead),
                Operation::Write => (original, Right::MetaWrite),
                Operation::Delete => return false,
            }
        } else {
            if stream == "$all" && op != Operation::Read {
                return false;
            }
            let right = match op {
                Operation::Read => Right::Read,
                Operation::Write => Right::Write,
                Operation::Delete => Right::Delete,
            };
            (stream, right)
        };
        let roles = self.roles(target, right);
        acl::roles_allow(&roles, principal)
    }

    /// Appends `events` to `stream` under the expected-version and idempotency rules (§5.2, §5.5).
    pub fn append(
        &self,
        stream: &str,
        expected: i64,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendResult, StoreError> {
        let mut st = self.write();
        let cur = st.last_event_number(stream);
        if cur == DELETED_STREAM {
            return Ok(AppendResult::StreamDeleted);
        }
        if expected == EXPECTED_INVALID || expected < EXPECTED_STREAM_EXISTS {
            // §5.2: −3 passes the header check, then the write message constructor throws.
            return Ok(AppendResult::NothingWritten);
        }
        let is_meta = acl::is_metastream(stream);
        let soft_deleted = !is_meta && st.metadata_of(stream).is_soft_deleted();
        let decision = st.check_commit(stream, expected, cur, soft_deleted, &events);
        match decision {
            Decision::Write => {}
            Decision::Idempotent(first) => return Ok(AppendResult::Idempotent { first }),
            Decision::Wrong => return Ok(AppendResult::WrongExpectedVersion { current: cur }),
            Decision::Deleted => return Ok(AppendResult::StreamDeleted),
        }

        let now = now_ticks();
        let first = cur + 1;
        let stream_arc = st.intern_stream(stream);
        let mut batch = Vec::with_capacity(events.len() + 1);
        for (i, e) in events.iter().enumerate() {
            batch.push(NewRecord {
                stream: stream_arc.clone(),
                number: first + i as i64,
                event_id: e.event_id,
                event_type: st.intern_type(&e.event_type),
                flags: if e.is_json { FLAG_JSON } else { 0 },
                timestamp: now,
                data: e.data.clone(),
                metadata: e.metadata.clone(),
            });
        }
        let last = first + events.len() as i64 - 1;

        // §5.7 "undelete" follow-ups, appended after the new events to the metastream.
        if soft_deleted {
            // Re-creating a soft-deleted stream: current metadata with `$tb` = first new number.
            let mut raw = st.metadata_of(stream).raw.clone();
            raw.insert("$tb".into(), Value::from(first));
            let meta_stream = acl::metastream_of(stream);
            let n = st.last_event_number(&meta_stream) + 1;
            batch.push(st.metadata_record(&meta_stream, n, &raw, now));
        } else if is_meta {
            let original = acl::original_of_metastream(stream).to_owned();
            let orig_last = st.last_event_number(&original);
            let was_soft_deleted = st.metadata_of(&original).is_soft_deleted();
            if was_soft_deleted && orig_last != DELETED_STREAM {
                // Writing JSON metadata to a soft-deleted stream: the new JSON with `$tb` = old last + 1.
                let new_json = events.last().and_then(|e| {
                    if !e.is_json {
                        return None;
                    }
                    match serde_json::from_slice::<Value>(&e.data) {
                        Ok(Value::Object(m)) => Some(m),
                        _ => None,
                    }
                });
                if let Some(mut raw) = new_json {
                    raw.insert("$tb".into(), Value::from(orig_last + 1));
                    batch.push(st.metadata_record(stream, last + 1, &raw, now));
                }
            }
        }

        st.commit(batch)?;
        let end = st.end;
        drop(st);
        self.changes.send_replace(end);
        Ok(AppendResult::Written { first, last })
    }

    /// Soft or hard delete (§5.4, §5.7). `reject_missing_soft_delete`: 21.10+ answers a soft delete
    /// of a stream with neither events nor metadata with "wrong expected version".
    pub fn delete(
        &self,
        stream: &str,
        expected: i64,
        hard: bool,
        reject_missing_soft_delete: bool,
    ) -> Result<DeleteResult, StoreError> {
        let mut st = self.write();
        let cur = st.last_event_number(stream);
        if cur == DELETED_STREAM {
            return Ok(DeleteResult::StreamDeleted);
        }
        let meta_stream = acl::metastream_of(stream);
        let meta_last = st.last_event_number(&meta_stream);
        let soft_deleted = st.metadata_of(stream).is_soft_deleted();
        let ok = match expected {
            EXPECTED_ANY => true,
            EXPECTED_NO_STREAM => cur == -1 || soft_deleted,
            EXPECTED_STREAM_EXISTS => {
                if soft_deleted {
                    return Ok(DeleteResult::StreamDeleted);
                }
                cur >= 0 || meta_last >= 0
            }
            n if n >= 0 => cur == n,
            _ => false,
        };
        if !ok {
            return Ok(DeleteResult::WrongExpectedVersion { current: cur });
        }
        if !hard && reject_missing_soft_delete && cur == -1 && meta_last < 0 {
            return Ok(DeleteResult::WrongExpectedVersion { current: cur });
        }
        let now = now_ticks();
        let rec = if hard {
            // Tombstone: number Int64.MaxValue, `$streamDeleted`, empty, not JSON (§5.7).
            NewRecord {
                stream: st.intern_stream(stream),
                number: DELETED_STREAM,
                event_id: Uuid::new_v4(),
                event_type: st.intern_type(TOMBSTONE_EVENT_TYPE),
                flags: FLAG_TOMBSTONE,
                timestamp: now,
                data: Bytes::new(),
                metadata: Bytes::new(),
            }
        } else {
            // Soft delete: compact `{"$tb":9223372036854775807}` replacing all metadata (§5.7).
            let mut raw = serde_json::Map::new();
            raw.insert("$tb".into(), Value::from(DELETED_STREAM));
            st.metadata_record(&meta_stream, meta_last.max(-1) + 1, &raw, now)
        };
        st.commit(vec![rec])?;
        let end = st.end;
        drop(st);
        self.changes.send_replace(end);
        Ok(DeleteResult::Deleted)
    }

    /// Forward stream read from `from`, up to `count` events (IndexReader semantics, §4.2).
    pub fn read_stream_forward(
        &self,
        stream: &str,
        from: i64,
        count: usize,
        resolve: bool,
    ) -> StreamRead {
        let st = self.read();
        let last = st.last_event_number(stream);
        if last == DELETED_STREAM {
            return StreamRead::Deleted;
        }
        let meta = st.metadata_of(stream);
        if last < 0 || meta.is_soft_deleted() {
            return StreamRead::NoStream;
        }
        let count_i = count as i64;
        let mut slice = StreamSlice {
            events: Vec::new(),
            from,
            max_count: count,
            last_event_number: last,
            is_end_of_stream: true,
            metadata: meta.clone(),
        };
        if from > last {
            return StreamRead::Ok(slice);
        }
        let end = from.saturating_add(count_i - 1);
        let min = st.min_event_number(&meta, last);
        if end < min {
            slice.is_end_of_stream = false;
            return StreamRead::Ok(slice);
        }
        let start = from.max(min);
        let stop = end.min(last);
        let entry = &st.streams[stream];
        let cutoff = max_age_cutoff(&meta);
        for n in start..=stop {
            let rec = &st.records[entry.events[n as usize] as usize];
            if rec.timestamp < cutoff {
                continue;
            }
            slice.events.push(st.resolve(rec, resolve));
        }
        slice.is_end_of_stream = end >= last;
        StreamRead::Ok(slice)
    }

    /// Backward stream read from `from` (`None` = head), up to `count` events.
    pub fn read_stream_backward(
        &self,
        stream: &str,
        from: Option<i64>,
        count: usize,
        resolve: bool,
    ) -> StreamRead {
        let st = self.read();
        let last = st.last_event_number(stream);
        if last == DELETED_STREAM {
            return StreamRead::Deleted;
        }
        let meta = st.metadata_of(stream);
        if last < 0 || meta.is_soft_deleted() {
            return StreamRead::NoStream;
        }
        let from = from.unwrap_or(last);
        let mut slice = StreamSlice {
            events: Vec::new(),
            from,
            max_count: count,
            last_event_number: last,
            is_end_of_stream: false,
            metadata: meta.clone(),
        };
        let mut start = (from - count as i64 + 1).max(0);
        let min = st.min_event_number(&meta, last);
        if from < min {
            slice.is_end_of_stream = true;
            return StreamRead::Ok(slice);
        }
        if start <= min {
            slice.is_end_of_stream = true;
            start = min;
        }
        let entry = &st.streams[stream];
        let cutoff = max_age_cutoff(&meta);
        let mut n = from.min(last);
        while n >= start {
            let rec = &st.records[entry.events[n as usize] as usize];
            if rec.timestamp >= cutoff {
                slice.events.push(st.resolve(rec, resolve));
            }
            n -= 1;
        }
        StreamRead::Ok(slice)
    }

    /// One event (`None` = the last one), with the metastream special case of §4.5.
    pub fn read_event(&self, stream: &str, number: Option<i64>, resolve: bool) -> EventRead {
        let st = self.read();
        let r = st.read_event(stream, number, resolve);
        if matches!(r, EventRead::NoStream | EventRead::NotFound) && acl::is_metastream(stream) {
            let original_last = st.last_event_number(acl::original_of_metastream(stream));
            if original_last >= 0 && original_last != DELETED_STREAM {
                return EventRead::NoMetadata;
            }
        }
        r
    }

    /// Forward `$all` read (`AllReader.ReadAllEventsForward`, §3.4).
    pub fn read_all_forward(&self, pos: TfPos, count: usize, resolve: bool) -> AllSlice {
        let st = self.read();
        let start = st.records.partition_point(|r| (r.pos as i64) < pos.commit);
        let mut slice = AllSlice {
            events: Vec::new(),
            requested: pos,
            next: pos,
            prev: TfPos::new(pos.commit, i64::MAX),
            max_count: count,
            last_commit: st.records.last().map_or(-1, |r| r.pos as i64),
        };
        if let Some(first) = st.records.get(start) {
            slice.prev = TfPos::new(first.pos as i64, first.pos as i64);
        }
        for rec in &st.records[start..] {
            if slice.events.len() >= count {
                break;
            }
            let p = rec.pos as i64;
            if TfPos::new(p, p) >= pos {
                slice.events.push(st.resolve(rec, resolve));
                // §3.4: forward resume point has prepare 0.
                slice.next = TfPos::new(rec.post() as i64, 0);
            }
        }
        slice
    }

    /// Backward `$all` read from `pos` (`None` = head), strictly before the position.
    pub fn read_all_backward(&self, pos: Option<TfPos>, count: usize, resolve: bool) -> AllSlice {
        let st = self.read();
        let pos = pos.unwrap_or(TfPos::new(st.end as i64, st.end as i64));
        let mut slice = AllSlice {
            events: Vec::new(),
            requested: pos,
            next: pos,
            prev: TfPos::new(pos.commit, 0),
            max_count: count,
            last_commit: st.records.last().map_or(-1, |r| r.pos as i64),
        };
        // Records ending at or before the requested commit position.
        let upto = st
            .records
            .partition_point(|r| (r.post() as i64) <= pos.commit);
        let mut first = true;
        for rec in st.records[..upto].iter().rev() {
            if slice.events.len() >= count {
                break;
            }
            let post = rec.post() as i64;
            if first {
                first = false;
                slice.prev = TfPos::new(post, post);
            }
            if TfPos::new(post, post) <= pos {
                slice.events.push(st.resolve(rec, resolve));
                slice.next = TfPos::new(rec.pos as i64, rec.pos as i64);
            }
        }
        slice
    }
}

enum Decision {
    Write,
    Idempotent(i64),
    Wrong,
    Deleted,
}

fn max_age_cutoff(meta: &StreamMetadata) -> i64 {
    match meta.max_age {
        Some(secs) if secs >= 0 => now_ticks().saturating_sub(secs.saturating_mul(10_000_000)),
        _ => i64::MIN,
    }
}

impl State {
    fn intern_stream(&mut self, name: &str) -> Arc<str> {
        if let Some((k, _)) = self.streams.get_key_value(name) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(name);
        self.streams.insert(k.clone(), StreamEntry::default());
        k
    }

    fn intern_type(&mut self, name: &str) -> Arc<str> {
        if let Some(k) = self.types.get(name) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(name);
        self.types.insert(k.clone());
        k
    }

    /// Adds a record (already positioned) to the in-memory indexes.
    fn index(&mut self, rec: Record) {
        let idx = self.records.len() as u32;
        let stream = rec.stream.clone();
        let is_meta = acl::is_metastream(&stream);
        let entry = self.streams.entry(stream.clone()).or_default();
        if rec.is_tombstone() {
            entry.tombstone = Some(idx);
        } else if rec.number >= 0 && rec.number as usize == entry.events.len() {
            entry.events.push(idx);
            if is_meta {
                entry.meta = Some(Arc::new(StreamMetadata::parse(rec.is_json(), &rec.data)));
            }
        } else {
            tracing::warn!(stream = %stream, number = rec.number, "record out of sequence; not indexed");
        }
        if &*stream == SETTINGS_STREAM && !rec.is_tombstone() {
            // §8: the last `$settings` event, whatever its type, is in force from the next request.
            self.settings = Arc::new(SystemSettings::parse(&rec.data));
        }
        self.records.push(rec);
    }

    /// Writes a batch as one `write(2)` and indexes it.
    fn commit(&mut self, batch: Vec<NewRecord>) -> Result<(), StoreError> {
        if self.closed {
            return Err(StoreError::Io(std::io::Error::other("store closed")));
        }
        let mut buf = Vec::new();
        let mut lens = Vec::with_capacity(batch.len());
        for r in &batch {
            let before = buf.len();
            log::encode(r, &mut buf)?;
            lens.push((buf.len() - before) as u32);
        }
        let at = self.end;
        if let Some(f) = self.file.as_mut() {
            f.append(at, &buf)?;
        }
        let mut pos = at;
        for (r, len) in batch.into_iter().zip(lens) {
            self.ids.insert(r.event_id, r.stream.clone(), r.number);
            let rec = Record {
                pos,
                len,
                stream: r.stream,
                number: r.number,
                event_id: r.event_id,
                event_type: r.event_type,
                flags: r.flags,
                timestamp: r.timestamp,
                data: r.data,
                metadata: r.metadata,
            };
            pos += len as u64;
            self.index(rec);
        }
        self.end = pos;
        Ok(())
    }

    fn metadata_record(
        &mut self,
        meta_stream: &str,
        number: i64,
        raw: &serde_json::Map<String, Value>,
        now: i64,
    ) -> NewRecord {
        let data = serde_json::to_vec(raw).unwrap_or_else(|_| b"{}".to_vec());
        NewRecord {
            stream: self.intern_stream(meta_stream),
            number,
            event_id: Uuid::new_v4(),
            event_type: self.intern_type(METADATA_EVENT_TYPE),
            flags: FLAG_JSON,
            timestamp: now,
            data: Bytes::from(data),
            metadata: Bytes::new(),
        }
    }

    fn last_event_number(&self, stream: &str) -> i64 {
        // "if original stream was deleted, metastream is deleted as well" (IndexReader).
        if acl::is_metastream(stream) {
            let original = acl::original_of_metastream(stream);
            if let Some(e) = self.streams.get(original) {
                if e.tombstone.is_some() {
                    return DELETED_STREAM;
                }
            }
        }
        match self.streams.get(stream) {
            None => -1,
            Some(e) if e.tombstone.is_some() => DELETED_STREAM,
            Some(e) => e.events.len() as i64 - 1,
        }
    }

    fn metadata_of(&self, stream: &str) -> Arc<StreamMetadata> {
        if acl::is_metastream(stream) {
            return self.metastream_meta.clone();
        }
        let meta_stream = acl::metastream_of(stream);
        self.streams
            .get(meta_stream.as_str())
            .and_then(|e| e.meta.clone())
            .unwrap_or_else(|| self.empty_meta.clone())
    }

    fn min_event_number(&self, meta: &StreamMetadata, last: i64) -> i64 {
        let mut min = 0i64;
        if let Some(mc) = meta.max_count {
            min = min.max(last.saturating_sub(mc).saturating_add(1));
        }
        if let Some(tb) = meta.truncate_before {
            min = min.max(tb);
        }
        min
    }

    fn event_id_at(&self, stream: &str, number: i64) -> Option<Uuid> {
        let e = self.streams.get(stream)?;
        let idx = *e.events.get(usize::try_from(number).ok()?)?;
        Some(self.records[idx as usize].event_id)
    }

    /// `IndexWriter.CheckCommit` (§5.5).
    fn check_commit(
        &self,
        stream: &str,
        expected: i64,
        cur: i64,
        soft_deleted: bool,
        events: &[ProposedEvent],
    ) -> Decision {
        let mut expected = expected;
        if expected == EXPECTED_STREAM_EXISTS {
            if soft_deleted {
                return Decision::Deleted;
            }
            if cur < 0 && self.last_event_number(&acl::metastream_of(stream)) < 0 {
                return Decision::Wrong;
            }
            expected = EXPECTED_ANY;
        }
        if expected == EXPECTED_ANY {
            // Weak idempotency: the recent-id cache only.
            let mut first = None;
            for (i, e) in events.iter().enumerate() {
                match self.ids.get(&e.event_id) {
                    Some((s, n)) if &**s == stream => {
                        if i == 0 {
                            first = Some(*n);
                        }
                    }
                    _ => {
                        return if i == 0 {
                            Decision::Write
                        } else {
                            // "corrupted idempotency"
                            Decision::Wrong
                        };
                    }
                }
            }
            return match first {
                Some(n) => Decision::Idempotent(n),
                None => Decision::Write,
            };
        }
        if expected < cur {
            // Strong idempotency: cache first, then the stream index (survives restarts).
            for (i, e) in events.iter().enumerate() {
                let number = expected + 1 + i as i64;
                let cached = matches!(self.ids.get(&e.event_id), Some((s, n)) if &**s == stream && *n == number);
                if cached || self.event_id_at(stream, number) == Some(e.event_id) {
                    continue;
                }
                if i == 0 {
                    if expected == EXPECTED_NO_STREAM && soft_deleted {
                        return Decision::Write;
                    }
                    return Decision::Wrong;
                }
                return Decision::Wrong;
            }
            return Decision::Idempotent(expected + 1);
        }
        if expected > cur {
            return Decision::Wrong;
        }
        Decision::Write
    }

    fn read_event(&self, stream: &str, number: Option<i64>, resolve: bool) -> EventRead {
        let last = self.last_event_number(stream);
        if last == DELETED_STREAM {
            return EventRead::Deleted;
        }
        let meta = self.metadata_of(stream);
        if last < 0 || meta.is_soft_deleted() {
            return EventRead::NoStream;
        }
        let n = number.unwrap_or(last);
        let min = self.min_event_number(&meta, last);
        if n < min || n > last {
            return EventRead::NotFound;
        }
        let Some(entry) = self.streams.get(stream) else {
            return EventRead::NoStream;
        };
        let rec = &self.records[entry.events[n as usize] as usize];
        if rec.timestamp < max_age_cutoff(&meta) {
            return EventRead::NotFound;
        }
        EventRead::Ok {
            event: Box::new(self.resolve(rec, resolve)),
            metadata: meta,
        }
    }

    /// Resolves a `$>` link (`"<number>@<stream>"`) when asked to; unresolvable → `event: None`.
    fn resolve(&self, rec: &Record, resolve: bool) -> ResolvedEvent {
        if !resolve || &*rec.event_type != LINK_EVENT_TYPE {
            return ResolvedEvent {
                event: Some(rec.clone()),
                link: None,
            };
        }
        let target =
            parse_link(&rec.data).and_then(|(n, s)| match self.read_event(s, Some(n), false) {
                EventRead::Ok { event, .. } => event.event,
                _ => None,
            });
        ResolvedEvent {
            event: target,
            link: Some(rec.clone()),
        }
    }
}

/// Parses link data `"<number>@<stream>"`.
pub fn parse_link(data: &[u8]) -> Option<(i64, &str)> {
    let s = std::str::from_utf8(data).ok()?;
    let (n, stream) = s.split_once('@')?;
    Some((n.trim().parse().ok()?, stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: Uuid) -> ProposedEvent {
        ProposedEvent {
            event_id: id,
            event_type: "t".into(),
            is_json: true,
            data: Bytes::from_static(b"{}"),
            metadata: Bytes::new(),
        }
    }

    fn mem() -> Store {
        Store::open(&Storage::Memory, false).unwrap()
    }

    #[test]
    fn tfpos_roundtrip() {
        let p = TfPos::new(0x3233, 0);
        assert_eq!(p.to_hex(), "00000000000032330000000000000000");
        assert_eq!(TfPos::parse(&p.to_hex()), Some(p));
        assert_eq!(
            TfPos::parse("00000000000032337fffffffffffffff"),
            Some(TfPos::new(0x3233, i64::MAX))
        );
        assert!(TfPos::parse("FFFFFFFFFFFFFFFF0000000000000000").is_none());
        assert!(TfPos::parse("123").is_none());
    }

    #[test]
    fn strong_and_weak_idempotency() {
        let s = mem();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            s.append("x", -1, vec![ev(a), ev(b)]).unwrap(),
            AppendResult::Written { first: 0, last: 1 }
        );
        let end = s.end();
        // strong replay
        assert_eq!(
            s.append("x", -1, vec![ev(a), ev(b)]).unwrap(),
            AppendResult::Idempotent { first: 0 }
        );
        // other id at that version
        assert_eq!(
            s.append("x", -1, vec![ev(Uuid::new_v4())]).unwrap(),
            AppendResult::WrongExpectedVersion { current: 1 }
        );
        // corrupted idempotency
        assert_eq!(
            s.append("x", -1, vec![ev(a), ev(Uuid::new_v4())]).unwrap(),
            AppendResult::WrongExpectedVersion { current: 1 }
        );
        // weak replay
        assert_eq!(
            s.append("x", -2, vec![ev(b)]).unwrap(),
            AppendResult::Idempotent { first: 1 }
        );
        assert_eq!(s.end(), end);
        // after the cache is lost: strong still works, weak duplicates
        s.clear_idempotency_cache();
        assert_eq!(
            s.append("x", -1, vec![ev(a), ev(b)]).unwrap(),
            AppendResult::Idempotent { first: 0 }
        );
        assert_eq!(
            s.append("x", -2, vec![ev(a)]).unwrap(),
            AppendResult::Written { first: 2, last: 2 }
        );
    }

    #[test]
    fn soft_delete_and_recreate() {
        let s = mem();
        s.append("x", -1, vec![ev(Uuid::new_v4())]).unwrap();
        assert_eq!(
            s.delete("x", -2, false, true).unwrap(),
            DeleteResult::Deleted
        );
        assert!(matches!(
            s.read_stream_forward("x", 0, 10, true),
            StreamRead::NoStream
        ));
        let r = s.append("x", -1, vec![ev(Uuid::new_v4())]).unwrap();
        assert_eq!(r, AppendResult::Written { first: 1, last: 1 });
        assert_eq!(s.stream_metadata("x").truncate_before, Some(1));
        match s.read_stream_forward("x", 0, 10, true) {
            StreamRead::Ok(sl) => {
                assert_eq!(sl.events.len(), 1);
                assert_eq!(sl.events[0].original().number, 1);
            }
            other => panic!("{other:?}"),
        }
        // 21.10+: soft delete of a stream that never existed
        assert_eq!(
            s.delete("never", -2, false, true).unwrap(),
            DeleteResult::WrongExpectedVersion { current: -1 }
        );
        assert_eq!(
            s.delete("never", -2, false, false).unwrap(),
            DeleteResult::Deleted
        );
    }

    #[test]
    fn hard_delete() {
        let s = mem();
        s.append("x", -1, vec![ev(Uuid::new_v4())]).unwrap();
        assert_eq!(
            s.delete("x", -2, true, true).unwrap(),
            DeleteResult::Deleted
        );
        assert_eq!(
            s.append("x", -2, vec![ev(Uuid::new_v4())]).unwrap(),
            AppendResult::StreamDeleted
        );
        assert_eq!(
            s.append("$$x", -2, vec![ev(Uuid::new_v4())]).unwrap(),
            AppendResult::StreamDeleted
        );
        assert_eq!(
            s.delete("x", -2, true, true).unwrap(),
            DeleteResult::StreamDeleted
        );
        assert!(matches!(
            s.read_stream_backward("x", None, 10, true),
            StreamRead::Deleted
        ));
        let all = s.read_all_backward(None, 1, false);
        let rec = all.events[0].original();
        assert_eq!(rec.number, DELETED_STREAM);
        assert_eq!(&*rec.event_type, "$streamDeleted");
    }

    #[test]
    fn all_positions() {
        let s = mem();
        for _ in 0..3 {
            s.append("x", -2, vec![ev(Uuid::new_v4())]).unwrap();
        }
        let f = s.read_all_forward(TfPos::new(0, 0), 2, false);
        assert_eq!(f.events.len(), 2);
        let second = f.events[1].original().clone();
        assert_eq!(f.next, TfPos::new(second.post() as i64, 0));
        assert_eq!(f.prev, TfPos::new(0, 0));
        let g = s.read_all_forward(f.next, 2, false);
        assert_eq!(g.events.len(), 1);
        assert_eq!(g.events[0].original().pos, second.post());
        let empty = s.read_all_forward(g.next, 2, false);
        assert!(empty.events.is_empty());
        assert_eq!(empty.prev, TfPos::new(g.next.commit, i64::MAX));
        let b = s.read_all_backward(
            Some(TfPos::new(second.pos as i64, second.pos as i64)),
            5,
            false,
        );
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].original().pos, 0);
        let head = s.read_all_backward(None, 5, false);
        assert_eq!(head.events.len(), 3);
        assert_eq!(head.prev, TfPos::new(s.end() as i64, s.end() as i64));
    }

    #[test]
    fn metadata_read_special_case() {
        let s = mem();
        assert!(matches!(
            s.read_event("$$x", None, false),
            EventRead::NoStream
        ));
        s.append("x", -2, vec![ev(Uuid::new_v4())]).unwrap();
        assert!(matches!(
            s.read_event("$$x", None, false),
            EventRead::NoMetadata
        ));
    }
}
