//! The storage core: one append-only log plus in-memory indexes, and the server's write rules.
//!
//! Free of HTTP types on purpose so a gRPC front can share it. Implements:
//! * stream index and event numbers, `$all` reads by log position (§3.2–§3.4),
//! * expected-version and strong/weak idempotency decisions (§5.2, §5.5),
//! * soft/hard deletes with the automatic "undelete" metadata follow-ups (§5.7),
//! * stream metadata, `$settings` and ACL evaluation (§8, see [`acl`]),
//! * stream reads truncated by `$tb`/`$maxCount`/`$maxAge` (`IndexReader`, §4.3),
//! * scavenging ([`Store::scavenge`], see [`scavenge`]),
//! * user accounts as `$user-<login>` streams ([`users`]).

pub mod acl;
pub mod chunks;
pub mod credentials;
pub mod log;
pub mod scavenge;
pub mod users;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::Storage;
use acl::{Principal, Right, StreamMetadata, SystemSettings};
use log::{LogFile, NewRecord, Record, FLAG_JSON, FLAG_TOMBSTONE};
pub use scavenge::{ScavengeOptions, ScavengeOutcome};

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
    file: Option<Backend>,
    metastream_meta: Arc<StreamMetadata>,
    empty_meta: Arc<StreamMetadata>,
    /// Set by [`Store::close`]; later writes fail instead of touching a reused directory.
    closed: bool,
}

/// Where a durable log lives: the dev node's own file, or the server's chunk layout.
enum Backend {
    Log(LogFile),
    Chunks(Box<chunks::ChunkLog>),
}

impl Backend {
    fn sync(&mut self) -> std::io::Result<()> {
        match self {
            Backend::Log(f) => f.sync(),
            Backend::Chunks(c) => c.sync(),
        }
    }
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    state: RwLock<State>,
    changes: watch::Sender<u64>,
    /// Writes go to a log file (and may block on the disk); false in memory mode.
    durable: bool,
    /// How far this node's clock is off, in ticks: a node with a wrong clock stamps its events
    /// and its `Date` headers with it.
    clock_offset: std::sync::atomic::AtomicI64,
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
            if opened.repaired > 0 {
                tracing::warn!(
                    path = %opened.file.path().display(),
                    records = opened.repaired,
                    "repaired records whose scavenge rewrite was torn; they stay removed"
                );
            }
            let mut pos = 0u64;
            for d in opened.records {
                let stream = state.intern_stream(&d.stream);
                let event_type = state.intern_type(&d.event_type);
                let removed = d.flags & log::FLAG_SCAVENGED != 0;
                let rec = Record {
                    pos,
                    len: d.len,
                    stream,
                    number: d.number,
                    event_id: d.event_id,
                    event_type,
                    flags: d.flags,
                    timestamp: d.timestamp,
                    // A scavenged frame's data is zero-filled; keep nothing of it in memory.
                    data: if removed { Bytes::new() } else { d.data },
                    metadata: if removed { Bytes::new() } else { d.metadata },
                };
                pos += d.len as u64;
                state.index(rec);
            }
            state.end = opened.end;
            state.file = Some(Backend::Log(opened.file));
            tracing::info!(records = state.records.len(), end = state.end, "log opened");
        }
        if let Storage::Chunks { dir, chunk_size } = storage {
            let opened = chunks::ChunkLog::open(dir, *chunk_size, fsync)?;
            for (pos, d) in opened.records {
                let rec = Record {
                    pos,
                    len: d.len,
                    stream: state.intern_stream(&d.stream),
                    number: d.number,
                    event_id: d.event_id,
                    event_type: state.intern_type(&d.event_type),
                    flags: d.flags,
                    timestamp: d.timestamp,
                    data: d.data,
                    metadata: d.metadata,
                };
                state.index(rec);
            }
            state.end = opened.writer;
            tracing::info!(
                path = %opened.log.path().display(),
                records = state.records.len(),
                end = state.end,
                truncated = ?opened.truncated,
                index = ?opened.index,
                "chunk log opened"
            );
            state.file = Some(Backend::Chunks(Box::new(opened.log)));
        }
        let end = state.end;
        let durable = state.file.is_some();
        Ok(Store {
            state: RwLock::new(state),
            changes: watch::channel(end).0,
            durable,
            clock_offset: Default::default(),
        })
    }

    /// Whether writes touch a log file (and so may block on the disk); false in memory mode,
    /// where a write takes microseconds under the state lock.
    pub fn is_durable(&self) -> bool {
        self.durable
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
        // A post-position is a boundary too: in the chunk layout the last record of a chunk ends
        // before the next record starts (the chunk's unused tail), and `$all` hands it out.
        pos >= st.end
            || st.records.binary_search_by_key(&pos, |r| r.pos).is_ok()
            || st.records.binary_search_by_key(&pos, |r| r.post()).is_ok()
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

    /// Log position of event `number` of `stream` (its tombstone for [`DELETED_STREAM`]),
    /// whatever truncation or deletion hides it from reads; `None` when there is no such event.
    /// The gRPC front answers writes with it.
    pub fn event_position(&self, stream: &str, number: i64) -> Option<u64> {
        let st = self.read();
        let entry = st.streams.get(stream)?;
        let index = if number == DELETED_STREAM {
            entry.tombstone?
        } else {
            *entry.events.get(usize::try_from(number).ok()?)?
        };
        st.records.get(index as usize).map(|r| r.pos)
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
        self.append_at(stream, expected, events, self.now())
    }

    /// Appends the `$epoch-information` event the server writes after the epoch record at every
    /// start and election (21.10+, `EpochManager.WriteEpochInformationWithRetry`): the epoch's
    /// number, id, position, previous epoch's position, time and leader, as JSON. The epoch record
    /// itself is a system record outside `$all` and is not modelled.
    /// `time` is the node's clock in the server's text form (the store knows no wire formats).
    pub fn write_epoch_information(&self, leader: Uuid, time: &str) -> Result<(), StoreError> {
        const STREAM: &str = "$epoch-information";
        let last = self.last_event_number(STREAM);
        let (number, previous) = match last {
            n if n >= 0 => match self.read_event(STREAM, Some(n), false) {
                EventRead::Ok { event, .. } => {
                    let rec = event.original();
                    let previous = serde_json::from_slice::<serde_json::Value>(&rec.data)
                        .ok()
                        .and_then(|v| v["epochPosition"].as_i64())
                        .unwrap_or(-1);
                    (n + 1, previous)
                }
                _ => (n + 1, -1),
            },
            _ => (0, -1),
        };
        let ticks = self.now();
        let data = serde_json::json!({
            "epochPosition": self.end(),
            "epochNumber": number,
            "epochId": Uuid::new_v4(),
            "prevEpochPosition": previous,
            "timeStamp": time,
            "leaderInstanceId": leader,
        });
        let event = ProposedEvent {
            event_id: Uuid::new_v4(),
            event_type: "$epoch-information".into(),
            is_json: true,
            data: Bytes::from(data.to_string()),
            metadata: Bytes::new(),
        };
        self.append_at(STREAM, last.max(-1), vec![event], ticks)?;
        Ok(())
    }

    /// This node's time in ticks: the machine's clock plus [`Store::set_clock_offset`].
    pub fn now(&self) -> i64 {
        now_ticks().saturating_add(self.clock_offset.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Makes this node's clock run `ticks` ahead (negative: behind) of the machine's.
    pub fn set_clock_offset(&self, ticks: i64) {
        self.clock_offset
            .store(ticks, std::sync::atomic::Ordering::Relaxed);
    }

    /// [`Store::append`] with an explicit creation time (100 ns ticks since the Unix epoch) for
    /// the new events and any metadata follow-up. A test hook: the HTTP API cannot set
    /// timestamps, so this is how tests get events old enough for `$maxAge` without sleeping.
    pub fn append_with_timestamp(
        &self,
        stream: &str,
        expected: i64,
        events: Vec<ProposedEvent>,
        timestamp: i64,
    ) -> Result<AppendResult, StoreError> {
        self.append_at(stream, expected, events, timestamp)
    }

    fn append_at(
        &self,
        stream: &str,
        expected: i64,
        events: Vec<ProposedEvent>,
        now: i64,
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
        let now = self.now();
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

    /// Forward stream read from `from`, up to `count` events (`IndexReader.ReadStreamEventsForward`,
    /// §4.2/§4.3). Events below `$tb` / outside the last `$maxCount` are skipped by clamping the
    /// range, events older than `$maxAge` and scavenged events are left out of it. A range that
    /// lies wholly below the truncation point answers an empty slice that is *not* the end of the
    /// stream (so the feed still links onwards). `reader` selects the `$maxAge` algorithm of the
    /// server generation (see [`ReaderVersion`]).
    pub fn read_stream_forward(
        &self,
        stream: &str,
        from: i64,
        count: usize,
        resolve: bool,
        reader: ReaderVersion,
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
        let end = from.saturating_add(count_i - 1);
        let min = st.min_event_number(&meta, last);
        if end < min {
            // Checked before "past the end", as the server does: not the end of the stream.
            slice.is_end_of_stream = false;
            return StreamRead::Ok(slice);
        }
        let start = from.max(min);
        if start > last {
            return StreamRead::Ok(slice);
        }
        let entry = &st.streams[stream];
        let cutoff = max_age_cutoff(&meta);
        if reader == ReaderVersion::V20Plus && meta.max_age.is_some() {
            st.forward_with_max_age(entry, &mut slice, start, end, cutoff, resolve);
            return StreamRead::Ok(slice);
        }
        for n in start..=end.min(last) {
            let rec = &st.records[entry.events[n as usize] as usize];
            if rec.is_removed() || rec.timestamp < cutoff {
                continue;
            }
            slice.events.push(st.resolve(rec, resolve));
        }
        slice.is_end_of_stream = end >= last;
        StreamRead::Ok(slice)
    }

    /// Backward stream read from `from` (`None` = head), up to `count` events
    /// (`IndexReader.ReadStreamEventsBackward`, identical in 5.0.12 … KurrentDB 25).
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
        let end = from.unwrap_or(last);
        let mut slice = StreamSlice {
            events: Vec::new(),
            from: end,
            max_count: count,
            last_event_number: last,
            is_end_of_stream: false,
            metadata: meta.clone(),
        };
        let mut start = end.saturating_sub(count as i64 - 1).max(0);
        let min = st.min_event_number(&meta, last);
        if end < min {
            // The server answers this case with the *requested* number (−1 for a head read),
            // so a head read of a wholly truncated stream links `previous` to 0.
            slice.from = from.unwrap_or(-1);
            slice.is_end_of_stream = true;
            return StreamRead::Ok(slice);
        }
        let mut end_of_stream = false;
        if start <= min {
            end_of_stream = true;
            start = min;
        }
        let entry = &st.streams[stream];
        let cutoff = max_age_cutoff(&meta);
        let mut n = end.min(last);
        while n >= start {
            let rec = &st.records[entry.events[n as usize] as usize];
            if !rec.is_removed() && rec.timestamp >= cutoff {
                slice.events.push(st.resolve(rec, resolve));
            }
            n -= 1;
        }
        // A page whose oldest slot is missing ($maxAge, scavenged) also ends the stream.
        let oldest = slice.events.last().map(|e| e.original().number);
        slice.is_end_of_stream =
            end_of_stream || start == 0 || (start <= last && oldest != Some(start));
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
        // Scavenged records are gone from `$all`; the others keep their positions.
        let live = || st.records[start..].iter().filter(|r| !r.is_removed());
        if let Some(first) = live().next() {
            slice.prev = TfPos::new(first.pos as i64, first.pos as i64);
        }
        for rec in live() {
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
        for rec in st.records[..upto].iter().rev().filter(|r| !r.is_removed()) {
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

/// Which `IndexReader` a forward stream read imitates. They differ only for streams with `$maxAge`:
/// 5.0.12 filters the requested range by age; 20.6+ (`ForStreamWithMaxAge`, same in KurrentDB 25)
/// jumps over a range that has no index entries left (scavenged) to the next surviving event and
/// reports the end of the stream when every event, the last one included, has expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderVersion {
    V5,
    V20Plus,
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
    /// `IndexReader.ForStreamWithMaxAge` (oss-v20.10.6, v25.0.0) for `[start, end]`, both already
    /// clamped by `$tb`/`$maxCount`, `start <= last`. Timestamps are taken as ascending within a
    /// stream, so the server's binary search over expired events reduces to its outcomes.
    fn forward_with_max_age(
        &self,
        entry: &StreamEntry,
        slice: &mut StreamSlice,
        start: i64,
        end: i64,
        cutoff: i64,
        resolve: bool,
    ) {
        let last = slice.last_event_number;
        let live = |n: i64| {
            let r = &self.records[entry.events[n as usize] as usize];
            (!r.is_removed()).then_some(r)
        };
        let (mut start, mut end) = (start, end);
        if !(start..=end.min(last)).any(|n| live(n).is_some()) {
            // No index entries left in the range (scavenged): continue at the next one.
            match (start..=last).find(|&n| live(n).is_some()) {
                Some(next) => {
                    start = next;
                    end = next.saturating_add(slice.max_count as i64 - 1);
                }
                None => {
                    slice.is_end_of_stream = false;
                    return;
                }
            }
        }
        // Newest first, stopping at the first expired event.
        let mut got = Vec::new();
        for n in (start..=end.min(last)).rev() {
            let Some(rec) = live(n) else { continue };
            if rec.timestamp < cutoff {
                break;
            }
            got.push(rec);
        }
        if !got.is_empty() {
            slice.events = got
                .into_iter()
                .rev()
                .map(|r| self.resolve(r, resolve))
                .collect();
            slice.is_end_of_stream = end >= last;
            return;
        }
        // Nothing readable here: the end of the stream if even the last event has expired.
        let last_expired = live(last).is_none_or(|r| r.timestamp < cutoff);
        slice.is_end_of_stream = last_expired || last < slice.from;
    }

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
            // A scavenged record keeps its event number (so numbering and the last event number
            // survive), but its data is gone: it never becomes the metadata or the settings.
            entry.events.push(idx);
            if is_meta && !rec.is_removed() {
                entry.meta = Some(Arc::new(StreamMetadata::parse(rec.is_json(), &rec.data)));
            }
        } else {
            tracing::warn!(stream = %stream, number = rec.number, "record out of sequence; not indexed");
        }
        if &*stream == SETTINGS_STREAM && !rec.is_tombstone() && !rec.is_removed() {
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
        let mut placed = Vec::with_capacity(batch.len());
        let mut pos = self.end;
        for r in &batch {
            let before = buf.len();
            log::encode(r, &mut buf)?;
            let len = (buf.len() - before) as u32;
            placed.push((pos, len));
            pos += len as u64;
        }
        match self.file.as_mut() {
            Some(Backend::Log(f)) => f.append(self.end, &buf)?,
            Some(Backend::Chunks(c)) => {
                placed = c.append(&batch)?;
                pos = placed.last().map_or(self.end, |&(p, l)| p + l as u64);
            }
            None => {}
        }
        for (r, (at, len)) in batch.into_iter().zip(placed) {
            self.ids.insert(r.event_id, r.stream.clone(), r.number);
            let rec = Record {
                pos: at,
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
        // A scavenged event is gone from the index: `ReadPrepare` finds nothing (§5.5).
        let rec = &self.records[idx as usize];
        (!rec.is_removed()).then_some(rec.event_id)
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
        if rec.is_removed() || rec.timestamp < max_age_cutoff(&meta) {
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
            s.read_stream_forward("x", 0, 10, true, ReaderVersion::V5),
            StreamRead::NoStream
        ));
        let r = s.append("x", -1, vec![ev(Uuid::new_v4())]).unwrap();
        assert_eq!(r, AppendResult::Written { first: 1, last: 1 });
        assert_eq!(s.stream_metadata("x").truncate_before, Some(1));
        match s.read_stream_forward("x", 0, 10, true, ReaderVersion::V5) {
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

    fn meta(s: &Store, stream: &str, json: &str) {
        let e = ProposedEvent {
            event_id: Uuid::new_v4(),
            event_type: "$metadata".into(),
            is_json: true,
            data: Bytes::copy_from_slice(json.as_bytes()),
            metadata: Bytes::new(),
        };
        let r = s.append(&format!("$${stream}"), -2, vec![e]).unwrap();
        assert!(matches!(r, AppendResult::Written { .. }), "{r:?}");
    }

    fn numbers(r: &StreamRead) -> (Vec<i64>, bool, i64) {
        match r {
            StreamRead::Ok(sl) => (
                sl.events.iter().map(|e| e.original().number).collect(),
                sl.is_end_of_stream,
                sl.from,
            ),
            other => panic!("{other:?}"),
        }
    }

    fn all_titles(s: &Store) -> Vec<(String, i64, u64)> {
        s.read_all_forward(TfPos::new(0, 0), MAX_PAGE_SIZE, false)
            .events
            .iter()
            .map(|e| {
                let r = e.original();
                (r.stream.to_string(), r.number, r.pos)
            })
            .collect()
    }

    /// `IndexReader.ReadStreamEventsForward/Backward@oss-v5.0.12` on a `$maxCount` stream.
    #[test]
    fn truncated_stream_reads() {
        let s = mem();
        for _ in 0..5 {
            s.append("t", -2, vec![ev(Uuid::new_v4())]).unwrap();
        }
        meta(&s, "t", r#"{"$maxCount":2}"#);
        let v5 = ReaderVersion::V5;
        // Forward from 0 skips to the first visible event; the page reaches the end.
        assert_eq!(
            numbers(&s.read_stream_forward("t", 0, 20, false, v5)),
            (vec![3, 4], true, 0)
        );
        // A range wholly below the truncation point: empty but not the end.
        assert_eq!(
            numbers(&s.read_stream_forward("t", 0, 2, false, v5)),
            (vec![], false, 0)
        );
        assert_eq!(
            numbers(&s.read_stream_forward("t", 2, 2, false, v5)),
            (vec![3], false, 2)
        );
        // Backward from head stops at the truncation point.
        assert_eq!(
            numbers(&s.read_stream_backward("t", None, 20, false)),
            (vec![4, 3], true, 4)
        );
        assert_eq!(
            numbers(&s.read_stream_backward("t", Some(4), 1, false)),
            (vec![4], false, 4)
        );
        assert_eq!(
            numbers(&s.read_stream_backward("t", Some(1), 5, false)),
            (vec![], true, 1)
        );
        assert!(matches!(
            s.read_event("t", Some(2), false),
            EventRead::NotFound
        ));
        assert!(matches!(
            s.read_event("t", Some(3), false),
            EventRead::Ok { .. }
        ));
        // `$tb` beyond the last event: a head read answers with the requested number −1.
        meta(&s, "t", r#"{"$tb":10}"#);
        assert_eq!(
            numbers(&s.read_stream_backward("t", None, 20, false)),
            (vec![], true, -1)
        );
        // … and a forward range below `$tb` is not the end, even past the last event.
        assert_eq!(
            numbers(&s.read_stream_forward("t", 6, 2, false, v5)),
            (vec![], false, 6)
        );
        assert!(matches!(
            s.read_event("t", None, false),
            EventRead::NotFound
        ));
    }

    #[test]
    fn max_age_reads_and_scavenge() {
        let s = mem();
        let hour_ago = now_ticks() - 3600 * 10_000_000;
        for _ in 0..3 {
            s.append_with_timestamp("a", -2, vec![ev(Uuid::new_v4())], hour_ago)
                .unwrap();
        }
        s.append("a", -2, vec![ev(Uuid::new_v4())]).unwrap();
        s.append("a", -2, vec![ev(Uuid::new_v4())]).unwrap();
        meta(&s, "a", r#"{"$maxAge":60}"#);
        for r in [ReaderVersion::V5, ReaderVersion::V20Plus] {
            assert_eq!(
                numbers(&s.read_stream_forward("a", 0, 20, false, r)),
                (vec![3, 4], true, 0)
            );
            assert_eq!(
                numbers(&s.read_stream_forward("a", 0, 2, false, r)),
                (vec![], false, 0)
            );
        }
        // A backward page whose oldest slot expired is the end of the stream.
        assert_eq!(
            numbers(&s.read_stream_backward("a", None, 3, false)),
            (vec![4, 3], true, 4)
        );
        assert!(matches!(
            s.read_event("a", Some(1), false),
            EventRead::NotFound
        ));

        let out = s.scavenge(&ScavengeOptions::default()).unwrap();
        assert_eq!(out.removed, 3);
        let titles = all_titles(&s);
        assert!(!titles.iter().any(|(st, n, _)| st == "a" && *n < 3));
        // 5.0.12 reads the (now empty) range and links on; 20.6+ jumps over the scavenged gap.
        assert_eq!(
            numbers(&s.read_stream_forward("a", 0, 2, false, ReaderVersion::V5)),
            (vec![], false, 0)
        );
        assert_eq!(
            numbers(&s.read_stream_forward("a", 0, 2, false, ReaderVersion::V20Plus)),
            (vec![3, 4], true, 0)
        );

        // Everything expired: the last event stays (physically), invisible to reads.
        let b_old = now_ticks() - 7200 * 10_000_000;
        for _ in 0..3 {
            s.append_with_timestamp("b", -2, vec![ev(Uuid::new_v4())], b_old)
                .unwrap();
        }
        meta(&s, "b", r#"{"$maxAge":60}"#);
        assert_eq!(
            numbers(&s.read_stream_forward("b", 0, 1, false, ReaderVersion::V5)),
            (vec![], false, 0)
        );
        assert_eq!(
            numbers(&s.read_stream_forward("b", 0, 1, false, ReaderVersion::V20Plus)),
            (vec![], true, 0)
        );
        s.scavenge(&ScavengeOptions::default()).unwrap();
        let b: Vec<i64> = all_titles(&s)
            .into_iter()
            .filter(|(st, _, _)| st == "b")
            .map(|(_, n, _)| n)
            .collect();
        assert_eq!(b, vec![2]);
        assert_eq!(s.last_event_number("b"), 2);
    }

    #[test]
    fn scavenge_rules_and_positions() {
        let s = mem();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        s.append("soft", -1, ids.iter().map(|&i| ev(i)).collect())
            .unwrap();
        s.append("hard", -1, vec![ev(Uuid::new_v4()), ev(Uuid::new_v4())])
            .unwrap();
        meta(&s, "hard", r#"{"k":1}"#);
        s.append("plain", -1, vec![ev(Uuid::new_v4()), ev(Uuid::new_v4())])
            .unwrap();
        meta(&s, "plain", r#"{"k":1}"#);
        meta(&s, "plain", r#"{"k":2}"#);
        s.delete("soft", -2, false, true).unwrap();
        s.delete("hard", -2, true, true).unwrap();
        let before = all_titles(&s);
        s.scavenge(&ScavengeOptions::default()).unwrap();
        let after: Vec<(String, i64, u64)> = all_titles(&s)
            .into_iter()
            .filter(|(st, _, _)| !st.starts_with("$scaveng") && !st.starts_with("$$$scaveng"))
            .collect();
        let kept = |st: &str, n: i64| after.iter().any(|(a, b, _)| a == st && *b == n);
        // Soft-deleted: only the last event; its metastream: only the last record.
        assert!(!kept("soft", 0) && !kept("soft", 1) && kept("soft", 2));
        assert!(kept("$$soft", 0));
        // Hard-deleted: only the tombstone; the metastream goes entirely.
        assert!(!kept("hard", 0) && !kept("hard", 1) && kept("hard", DELETED_STREAM));
        assert!(!after.iter().any(|(a, _, _)| a == "$$hard"));
        // No truncation: every event stays; old metadata goes.
        assert!(kept("plain", 0) && kept("plain", 1));
        assert!(!kept("$$plain", 0) && kept("$$plain", 1));
        // Survivors keep their positions.
        for rec in &after {
            assert!(before.contains(rec), "{rec:?} moved");
        }
        // The last event number survives: recreating the soft-deleted stream continues at 3.
        assert_eq!(s.last_event_number("soft"), 2);
        assert_eq!(
            s.append("soft", 2, vec![ev(Uuid::new_v4())]).unwrap(),
            AppendResult::Written { first: 3, last: 3 }
        );
        // The id cache still knows the scavenged events (lost on restart, §5.5) …
        assert_eq!(
            s.append("soft", -1, vec![ev(ids[0])]).unwrap(),
            AppendResult::Idempotent { first: 0 }
        );
        // … the index does not.
        s.clear_idempotency_cache();
        assert_eq!(
            s.append("soft", -1, vec![ev(ids[0])]).unwrap(),
            AppendResult::WrongExpectedVersion { current: 3 }
        );
        assert_eq!(
            s.append("soft", 1, vec![ev(ids[2])]).unwrap(),
            AppendResult::Idempotent { first: 2 }
        );
    }

    #[test]
    fn scavenge_persists_and_matches_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::Dir(dir.path().to_owned());
        let snapshot = |s: &Store| {
            let all = all_titles(s);
            let reads: Vec<_> = ["m", "$$m"]
                .iter()
                .map(|st| numbers(&s.read_stream_forward(st, 0, 50, false, ReaderVersion::V5)))
                .collect();
            (
                all,
                reads,
                s.last_event_number("m"),
                s.stream_metadata("m"),
                s.end(),
            )
        };
        let (state, log_len) = {
            let s = Store::open(&storage, true).unwrap();
            let data = |t: &str| ProposedEvent {
                data: Bytes::from(format!("{{\"secret\":\"{t}\"}}")),
                ..ev(Uuid::new_v4())
            };
            for i in 0..4 {
                s.append("m", -2, vec![data(&format!("MARKER-{i}"))])
                    .unwrap();
            }
            meta(&s, "m", r#"{"$maxCount":1}"#);
            meta(&s, "m", r#"{"$maxCount":2}"#);
            let out = s.scavenge(&ScavengeOptions::default()).unwrap();
            assert_eq!(out.removed, 3, "events 0, 1 and the first metadata");
            assert!(out.scavenge_point.is_some());
            let snap = snapshot(&s);
            s.close().unwrap();
            (
                snap,
                std::fs::metadata(dir.path().join(log::LOG_FILE))
                    .unwrap()
                    .len(),
            )
        };
        let raw = std::fs::read(dir.path().join(log::LOG_FILE)).unwrap();
        assert_eq!(raw.len() as u64, log_len);
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("MARKER-0") && !text.contains("MARKER-1"));
        assert!(text.contains("MARKER-2") && text.contains("MARKER-3"));
        let s = Store::open(&storage, false).unwrap();
        assert_eq!(snapshot(&s), state);
    }
}
