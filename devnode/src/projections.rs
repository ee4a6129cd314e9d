//! The system projections (`--run-projections system`): the records a real node's projection
//! subsystem writes on its own, through the ordinary store write path, so they are `$all` records
//! like any other (both faces, ACLs, restarts, the chunk layout).
//!
//! Followed from the KurrentDB source (paths under `src/`):
//! * which projections exist, in which order they are registered and that they are created
//!   stopped: `KurrentDB.Projections.Management/Services/Management/ProjectionManager.cs`
//!   (`CreateSystemProjections`, `WriteProjectionsInitialized`, `PostNewProjections`),
//!   `KurrentDB.Projections.Management/ProjectionsSubsystem.cs` (`--start-standard-projections`
//!   enables them when it finds them stopped),
//!   `KurrentDB.Core/Configuration/ClusterVNodeOptions.cs` (`RunProjections` defaults to
//!   `None`, `StartStandardProjections` to `false`);
//! * what each writes: `KurrentDB.Projections.V1/Standard/IndexStreams.cs` (`$streams`),
//!   `CategorizeStreamByPath.cs` (`$category-*`), `CategorizeEventsByStreamPath.cs` (`$ce-*`),
//!   `IndexEventsByEventType.cs` (`$et-*` and its `$et` checkpoints), `ByCorrelationId.cs`
//!   (`$bc-*`), `StreamCategoryExtractorByFirstSeparator.cs` (the category),
//!   `KurrentDB.Projections.Shared/Standard/StreamDeletedHelper.cs` (deletes);
//! * which records they see: `KurrentDB.Projections.V1/Services/Processing/TransactionFile/
//!   TransactionFileEventFilter.cs` (no system streams except metastreams of non-system
//!   streams; links only for projections that include them) and `Strategies/ReaderStrategy.cs`
//!   (links are not resolved; deleted-stream events pass);
//! * the record format: `Emitting/EmittedStream.cs` (a new emitted stream gets its metadata
//!   first: `$acl` with `$r`/`$mr` `$all`, no `$maxCount`/`$maxAge` as the standard handlers pass
//!   no stream metadata, `Checkpointing/ProjectionCheckpoint.cs`; event metadata is the caused-by
//!   checkpoint tag, then `$causedBy` and `$correlationId`),
//!   `Emitting/EmittedEvents/EmittedLinkToWithRecategorization.cs` (`$o`, `$deleted`),
//!   `KurrentDB.Projections.Shared/Services/Processing/Checkpointing/CheckpointTag.cs` (`$v` =
//!   `id:epoch:version:subsystem`, `$c`, `$p`), `ProjectionConstants.cs` (subsystem 4),
//!   `Checkpointing/CoreProjectionCheckpointWriter.cs` (`$projections-<name>-checkpoint`: its
//!   metadata `$maxCount` 2 and admin ACL, `$ProjectionCheckpoint` events),
//!   `KurrentDB.Projections.Shared/Common/ProjectionConsts.cs` (checkpoint after 4000 handled
//!   events or 10 MB).
//!
//! Projections run behind the log: a worker wakes on every commit, waits [`LAG`], and processes
//! what is new. A restart neither loses nor duplicates links: each projection resumes after the
//! newest source position it has emitted for or checkpointed (the caused-by tag in its records'
//! metadata), as the server's emitted-stream recovery skips events already written.
//!
//! Simplifications: the `$ProjectionUpdated` definitions carry the persisted state's main fields,
//! not byte-exact; the subsystem version is 4 on every profile; emitted writes are batched per
//! stream, so the interleaving of emitted streams in `$all` may differ from a server's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{Profile, RunProjections};
use crate::store::acl::{is_metastream, is_system_stream, metastream_of, original_of_metastream};
use crate::store::{
    AppendResult, EventRead, ProposedEvent, Store, StoreError, TfPos, DELETED_STREAM, EXPECTED_ANY,
    EXPECTED_NO_STREAM,
};

/// How far the projections run behind the log at least: they start reading a commit this long
/// after it (the server's run behind by a read round-trip and a queue; tests must wait for links,
/// never assume them).
pub const LAG: Duration = Duration::from_millis(20);

/// `ProjectionConstants.SubsystemVersion`.
const SUBSYSTEM_VERSION: u32 = 4;
/// `ProjectionNamesBuilder.ProjectionsRegistrationStream`.
const REGISTRATION_STREAM: &str = "$projections-$all";
/// `ProjectionConsts.CheckpointHandledThreshold`.
const CHECKPOINT_HANDLED_THRESHOLD: u64 = 4000;
/// `ProjectionConsts.CheckpointUnhandledBytesThreshold`.
const CHECKPOINT_UNHANDLED_BYTES: u64 = 10_000_000;
/// `ProjectionConsts.MaxWriteBatchLength`: events per emitted-stream write.
const MAX_WRITE_BATCH: usize = 500;
/// `$all` records read per step.
const READ_BATCH: usize = 500;

const LINK: &str = "$>";
const STREAM_REFERENCE: &str = "$@";
const PARTITION_CHECKPOINT: &str = "$Checkpoint";
const PROJECTION_CHECKPOINT: &str = "$ProjectionCheckpoint";

/// The standard projections in the order `CreateSystemProjections` posts them: their
/// `$ProjectionCreated` events take event numbers 1–5 of `$projections-$all`: their ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Streams,
    StreamByCategory,
    ByCategory,
    ByEventType,
    ByCorrelationId,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Streams,
        Kind::StreamByCategory,
        Kind::ByCategory,
        Kind::ByEventType,
        Kind::ByCorrelationId,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Streams => "$streams",
            Kind::StreamByCategory => "$stream_by_category",
            Kind::ByCategory => "$by_category",
            Kind::ByEventType => "$by_event_type",
            Kind::ByCorrelationId => "$by_correlation_id",
        }
    }

    fn handler(self) -> &'static str {
        match self {
            Kind::Streams => "IndexStreams",
            Kind::StreamByCategory => "CategorizeStreamByPath",
            Kind::ByCategory => "CategorizeEventsByStreamPath",
            Kind::ByEventType => "IndexEventsByEventType",
            Kind::ByCorrelationId => "ByCorrelationId",
        }
    }

    fn query(self) -> &'static str {
        match self {
            Kind::Streams | Kind::ByEventType => "",
            Kind::StreamByCategory | Kind::ByCategory => "first\r\n-",
            Kind::ByCorrelationId => "{\"correlationIdProperty\":\"$correlationId\"}",
        }
    }

    /// `SetIncludeLinks()` in the handler's source definition.
    fn includes_links(self) -> bool {
        matches!(
            self,
            Kind::Streams | Kind::StreamByCategory | Kind::ByCategory
        )
    }
}

/// One event a projection emits, before it is written.
struct Emitted {
    stream: String,
    event_type: &'static str,
    is_json: bool,
    data: String,
    metadata: String,
}

/// A running projection's progress.
struct Running {
    kind: Kind,
    /// `$v` of its records: `id:epoch:version:subsystem`.
    version_tag: String,
    /// Position of the newest `$all` record it has processed.
    done: Option<u64>,
    handled_since_checkpoint: u64,
    bytes_since_checkpoint: u64,
    /// Position of its last written checkpoint.
    checkpoint: Option<u64>,
    /// The checkpoint stream's metadata is written once per start, before the first checkpoint.
    checkpoint_meta_written: bool,
    /// After a restart: per emitted stream, the newest source position whose emission is already
    /// in it (found past the checkpoint); emissions up to there are not written again.
    written: std::collections::HashMap<String, u64>,
}

struct Engine {
    store: Arc<Store>,
    running: Vec<Running>,
    processed: watch::Sender<u64>,
}

/// The running projection worker of a node.
pub(crate) struct Worker {
    task: JoinHandle<()>,
    processed: watch::Receiver<u64>,
    store: Arc<Store>,
}

impl Worker {
    /// Returns when the projections have processed every record written before the call.
    pub(crate) async fn caught_up(&self) {
        let target = self.store.end();
        let mut rx = self.processed.clone();
        let _ = rx.wait_for(|p| *p >= target).await;
    }

    /// Waits for the worker to write its stop checkpoint and end (after `shutdown` was cancelled).
    pub(crate) async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Registers the system projections (first start) and enables them (`start_standard`), then
/// starts the worker for those enabled. `None` when the subsystem is off or nothing runs.
pub(crate) fn start(
    store: Arc<Store>,
    mode: RunProjections,
    start_standard: bool,
    profile: Profile,
    shutdown: CancellationToken,
) -> Result<Option<Worker>, StoreError> {
    if mode == RunProjections::None {
        return Ok(None);
    }
    let ids = register(&store, profile)?;
    let mut running = Vec::new();
    for (kind, id) in ids {
        let stream = format!("$projections-{}", kind.name());
        let (mut state, mut version) = last_definition(&store, &stream);
        let enabled = state.get("enabled").and_then(Value::as_bool) == Some(true);
        if !enabled && start_standard {
            // `ProjectionsSubsystem.Handle(Stopped)` → `Enable`: the definition is rewritten with
            // `enabled` and the next version.
            version += 1;
            state.insert("enabled".into(), Value::Bool(true));
            state.insert("version".into(), Value::from(version));
            write_definition(&store, &stream, &state)?;
        } else if !enabled {
            continue;
        }
        running.push(Running {
            kind,
            version_tag: format!("{id}:-1:{version}:{SUBSYSTEM_VERSION}"),
            done: None,
            handled_since_checkpoint: 0,
            bytes_since_checkpoint: 0,
            checkpoint: None,
            checkpoint_meta_written: false,
            written: Default::default(),
        });
    }
    if running.is_empty() {
        return Ok(None);
    }
    recover(&store, &mut running);
    let (tx, rx) = watch::channel(0u64);
    let engine = Arc::new(Mutex::new(Engine {
        store: store.clone(),
        running,
        processed: tx,
    }));
    let changes = store.subscribe();
    let task = tokio::spawn(run(engine, changes, shutdown));
    Ok(Some(Worker {
        task,
        processed: rx,
        store,
    }))
}

/// `$projections-$all` at the first start: `$ProjectionsInitialized`, then one `$ProjectionCreated`
/// (data: the name) per standard projection, and each projection's first `$ProjectionUpdated`
/// definition (stopped). Returns each projection with its id.
fn register(store: &Store, profile: Profile) -> Result<Vec<(Kind, i64)>, StoreError> {
    if store.last_event_number(REGISTRATION_STREAM) < 0 {
        let init = raw_event("$ProjectionsInitialized", false, Bytes::new(), Bytes::new());
        store.append(REGISTRATION_STREAM, EXPECTED_NO_STREAM, vec![init])?;
    }
    let mut ids = Vec::new();
    let mut missing = Vec::new();
    let registered = registrations(store);
    for kind in Kind::ALL {
        match registered.iter().find(|(n, _)| n == kind.name()) {
            Some((_, id)) => ids.push((kind, *id)),
            None => missing.push(kind),
        }
    }
    if !missing.is_empty() {
        let events = missing
            .iter()
            .map(|k| {
                raw_event(
                    "$ProjectionCreated",
                    false,
                    Bytes::from(k.name()),
                    Bytes::new(),
                )
            })
            .collect();
        if let AppendResult::Written { first, .. } =
            store.append(REGISTRATION_STREAM, EXPECTED_ANY, events)?
        {
            for (i, kind) in missing.iter().enumerate() {
                ids.push((*kind, first + i as i64));
            }
        }
    }
    for (kind, _) in &ids {
        let stream = format!("$projections-{}", kind.name());
        if store.last_event_number(&stream) < 0 {
            write_definition(store, &stream, &definition(*kind, profile))?;
        }
    }
    ids.sort_by_key(|(_, id)| *id);
    Ok(ids)
}

/// (name, id) of every `$ProjectionCreated` in `$projections-$all`.
fn registrations(store: &Store) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let last = store.last_event_number(REGISTRATION_STREAM);
    for n in 0..=last.max(-1) {
        if let EventRead::Ok { event, .. } = store.read_event(REGISTRATION_STREAM, Some(n), false) {
            let rec = event.original();
            if &*rec.event_type == "$ProjectionCreated" {
                out.push((String::from_utf8_lossy(&rec.data).into_owned(), n));
            }
        }
    }
    out
}

/// The persisted state `ManagedProjection.PersistedState` of a standard projection as created:
/// continuous, stopped, emitting, checkpointed, run as system.
fn definition(kind: Kind, profile: Profile) -> Map<String, Value> {
    let namespace = match profile {
        Profile::V5 | Profile::V20 | Profile::V21_10 => "EventStore.Projections.Core.Standard",
        Profile::V25 | Profile::V26 => "KurrentDB.Projections.Core.Standard",
    };
    let v = json!({
        "handlerType": format!("native:{namespace}.{}", kind.handler()),
        "query": kind.query(),
        "mode": "Continuous",
        "enabled": false,
        "deleted": false,
        "emitEnabled": true,
        "checkpointsDisabled": false,
        "trackEmittedStreams": false,
        "epoch": -1,
        "version": 0,
        "runAs": { "name": "$system", "roles": ["$admins"] },
        "checkpointHandledThreshold": CHECKPOINT_HANDLED_THRESHOLD,
        "checkpointAfterMs": 0,
        "checkpointUnhandledBytesThreshold": CHECKPOINT_UNHANDLED_BYTES,
        "pendingEventsThreshold": 5000,
        "maxWriteBatchLength": MAX_WRITE_BATCH,
        "projectionSubsystemVersion": SUBSYSTEM_VERSION,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn write_definition(
    store: &Store,
    stream: &str,
    state: &Map<String, Value>,
) -> Result<(), StoreError> {
    let data = Value::Object(state.clone()).to_string();
    let ev = raw_event("$ProjectionUpdated", true, Bytes::from(data), Bytes::new());
    store.append(stream, EXPECTED_ANY, vec![ev])?;
    Ok(())
}

/// The last `$ProjectionUpdated` of `stream` and its version (the persisted `version`, else the
/// event number).
fn last_definition(store: &Store, stream: &str) -> (Map<String, Value>, i64) {
    let last = store.last_event_number(stream);
    if let EventRead::Ok { event, .. } = store.read_event(stream, Some(last), false) {
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&event.original().data) {
            let version = m.get("version").and_then(Value::as_i64).unwrap_or(last);
            return (m, version);
        }
    }
    (Map::new(), last.max(0))
}

/// Where each projection resumes: after its last checkpoint, as on the server. The events it
/// re-processes from there may already have been emitted before a crash: as
/// `EmittedStream`'s recovery does, it remembers per emitted stream the newest source position
/// already written (the caused-by tag in the records' metadata) and skips those emissions.
fn recover(store: &Store, running: &mut [Running]) {
    for r in running.iter_mut() {
        let stream = checkpoint_stream(r.kind);
        let last = store.last_event_number(&stream);
        if last >= 0 {
            if let EventRead::Ok { event, .. } = store.read_event(&stream, Some(last), false) {
                if let Some((_, c)) = caused_by(&event.original().metadata) {
                    r.done = Some(c);
                    r.checkpoint = Some(c);
                }
            }
        }
    }
    let from = running
        .iter()
        .map(|r| r.done.map_or(0, |d| d + 1))
        .min()
        .unwrap_or(0);
    let mut pos = TfPos::new(from as i64, from as i64);
    loop {
        let slice = store.read_all_forward(pos, READ_BATCH, false);
        for ev in &slice.events {
            let rec = ev.original();
            if !is_system_stream(&rec.stream)
                || !matches!(
                    &*rec.event_type,
                    LINK | STREAM_REFERENCE | PARTITION_CHECKPOINT
                )
            {
                continue;
            }
            let Some((id, c)) = caused_by(&rec.metadata) else {
                continue;
            };
            for r in running.iter_mut() {
                if r.version_tag.split(':').next() == Some(id.as_str())
                    && r.done.is_none_or(|d| d < c)
                {
                    let w = r.written.entry(rec.stream.to_string()).or_insert(c);
                    *w = (*w).max(c);
                }
            }
        }
        if slice.events.len() < READ_BATCH {
            break;
        }
        pos = slice.next;
    }
}

/// (projection id, `$c`) of a record's metadata written by a projection.
fn caused_by(metadata: &[u8]) -> Option<(String, u64)> {
    let v: Value = serde_json::from_slice(metadata).ok()?;
    let id = v.get("$v")?.as_str()?.split(':').next()?.to_owned();
    let c = v.get("$c")?.as_i64()?;
    Some((id, u64::try_from(c).ok()?))
}

fn checkpoint_stream(kind: Kind) -> String {
    format!("$projections-{}-checkpoint", kind.name())
}

fn raw_event(event_type: &str, is_json: bool, data: Bytes, metadata: Bytes) -> ProposedEvent {
    ProposedEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        is_json,
        data,
        metadata,
    }
}

/// Wakes on commits, waits [`LAG`], processes what is new; on shutdown writes a checkpoint.
async fn run(
    engine: Arc<Mutex<Engine>>,
    mut changes: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    loop {
        let e = engine.clone();
        let stepped =
            tokio::task::spawn_blocking(move || e.lock().unwrap_or_else(|p| p.into_inner()).step())
                .await;
        match stepped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "projections: a write failed; retrying"),
            Err(err) => {
                tracing::error!(error = %err, "projections: the worker failed");
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = changes.changed() => if changed.is_err() { break },
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(LAG) => {}
        }
    }
    // A stopping projection writes a checkpoint at its position.
    let _ = tokio::task::spawn_blocking(move || {
        let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = e.checkpoint_all(true) {
            tracing::warn!(error = %err, "projections: the stop checkpoint failed");
        }
    })
    .await;
}

impl Engine {
    /// Processes every record from the slowest projection's position to the end of the log.
    fn step(&mut self) -> Result<(), StoreError> {
        let end = self.store.end();
        let from = self
            .running
            .iter()
            .map(|r| r.done.map_or(0, |d| d + 1))
            .min()
            .unwrap_or(0);
        let mut pos = TfPos::new(from as i64, from as i64);
        loop {
            let slice = self.store.read_all_forward(pos, READ_BATCH, false);
            let mut emitted = Vec::new();
            for ev in &slice.events {
                let rec = ev.original();
                for r in self.running.iter_mut() {
                    if r.done.is_some_and(|d| rec.pos <= d) {
                        continue;
                    }
                    r.bytes_since_checkpoint += u64::from(rec.len);
                    if passes(r.kind, rec) {
                        r.handled_since_checkpoint += 1;
                        if let Some(e) = process(r.kind, &r.version_tag, rec) {
                            let already = r.written.get(&e.stream).is_some_and(|w| *w >= rec.pos);
                            if !already {
                                emitted.push(e);
                            }
                        }
                    }
                    r.done = Some(rec.pos);
                }
            }
            self.write(emitted)?;
            self.checkpoint_all(false)?;
            if slice.events.len() < READ_BATCH {
                break;
            }
            pos = slice.next;
        }
        self.processed.send_replace(end);
        Ok(())
    }

    /// Writes `emitted` stream by stream, in order; a new emitted stream gets its metadata first
    /// (`EmittedStream.SubmitWriteMetadata`: `$r` and `$mr` `$all` for `$`-streams).
    fn write(&self, emitted: Vec<Emitted>) -> Result<(), StoreError> {
        let mut order: Vec<String> = Vec::new();
        let mut groups: std::collections::HashMap<String, Vec<ProposedEvent>> =
            std::collections::HashMap::new();
        for e in emitted {
            if !groups.contains_key(&e.stream) {
                order.push(e.stream.clone());
            }
            groups.entry(e.stream).or_default().push(raw_event(
                e.event_type,
                e.is_json,
                Bytes::from(e.data),
                Bytes::from(e.metadata),
            ));
        }
        for stream in order {
            let mut events = groups.remove(&stream).unwrap_or_default();
            if self.store.last_event_number(&stream) == -1 {
                let meta = json!({ "$acl": { "$r": "$all", "$mr": "$all" } }).to_string();
                let ev = raw_event("$metadata", true, Bytes::from(meta), Bytes::new());
                self.store
                    .append(&metastream_of(&stream), EXPECTED_ANY, vec![ev])?;
            }
            while !events.is_empty() {
                let rest = events.split_off(events.len().min(MAX_WRITE_BATCH));
                match self.store.append(&stream, EXPECTED_ANY, events)? {
                    AppendResult::Written { .. } | AppendResult::Idempotent { .. } => {}
                    other => {
                        // The server faults the projection ("written to from the outside").
                        tracing::warn!(
                            %stream,
                            result = ?other,
                            "projections: cannot write an emitted stream"
                        );
                    }
                }
                events = rest;
            }
        }
        Ok(())
    }

    /// Checkpoints each projection past a threshold (`force`: any that moved since its last one).
    fn checkpoint_all(&mut self, force: bool) -> Result<(), StoreError> {
        for i in 0..self.running.len() {
            let r = &self.running[i];
            let Some(done) = r.done else { continue };
            let due = r.handled_since_checkpoint >= CHECKPOINT_HANDLED_THRESHOLD
                || r.bytes_since_checkpoint >= CHECKPOINT_UNHANDLED_BYTES
                || (force && r.checkpoint != Some(done));
            if !due {
                continue;
            }
            let tag = (done, r.version_tag.clone());
            if r.kind == Kind::ByEventType {
                // `IndexEventsByEventType.ProcessNewCheckpoint`: the position, emitted to `$et`.
                let data = json!({ "$c": tag.0, "$p": tag.0 }).to_string();
                self.write(vec![Emitted {
                    stream: "$et".into(),
                    event_type: PARTITION_CHECKPOINT,
                    is_json: true,
                    data,
                    metadata: tag_metadata(&tag.1, tag.0, Map::new(), None, None),
                }])?;
            }
            let stream = checkpoint_stream(r.kind);
            if !r.checkpoint_meta_written {
                let meta = json!({
                    "$maxCount": 2,
                    "$acl": {
                        "$r": "$admins", "$w": "$admins", "$d": "$admins",
                        "$mr": "$all", "$mw": "$admins"
                    }
                })
                .to_string();
                let ev = raw_event("$metadata", true, Bytes::from(meta), Bytes::new());
                self.store
                    .append(&metastream_of(&stream), EXPECTED_ANY, vec![ev])?;
            }
            let metadata = tag_metadata(&tag.1, tag.0, Map::new(), None, None);
            let ev = raw_event(
                PROJECTION_CHECKPOINT,
                true,
                Bytes::new(),
                Bytes::from(metadata),
            );
            self.store.append(&stream, EXPECTED_ANY, vec![ev])?;
            let r = &mut self.running[i];
            r.checkpoint_meta_written = true;
            r.checkpoint = Some(done);
            r.handled_since_checkpoint = 0;
            r.bytes_since_checkpoint = 0;
        }
        Ok(())
    }
}

/// `TransactionFileEventFilter.PassesSource`: no links unless the projection includes them; no
/// system streams, except the metastreams of non-system streams.
fn passes(kind: Kind, rec: &crate::store::StoredRecord) -> bool {
    if &*rec.event_type == LINK && !kind.includes_links() {
        return false;
    }
    let s = &*rec.stream;
    !is_system_stream(s) || (is_metastream(s) && !is_system_stream(original_of_metastream(s)))
}

/// `StreamDeletedHelper.IsStreamDeletedEvent`: a tombstone, or metadata with `$tb` =
/// `EventNumber.DeletedStream` (a soft delete). Returns it with the stream id stripped of `$$`.
fn stream_deleted(rec: &crate::store::StoredRecord) -> (bool, &str) {
    let s = &*rec.stream;
    if is_metastream(s) {
        let deleted = &*rec.event_type == "$metadata"
            && serde_json::from_slice::<Value>(&rec.data)
                .ok()
                .and_then(|v| v.get("$tb").and_then(Value::as_i64))
                == Some(DELETED_STREAM);
        (deleted, original_of_metastream(s))
    } else {
        (&*rec.event_type == "$streamDeleted", s)
    }
}

/// `StreamCategoryExtractorByFirstSeparator` with `-`: the part before the first `-` of a
/// non-system stream, if any.
fn category(stream: &str) -> Option<&str> {
    if stream.starts_with('$') {
        return None;
    }
    match stream.find('-') {
        Some(i) if i > 0 => Some(&stream[..i]),
        _ => None,
    }
}

/// What `kind` emits for `rec` (a record that passed its filter).
fn process(kind: Kind, version: &str, rec: &crate::store::StoredRecord) -> Option<Emitted> {
    let stream = &*rec.stream;
    let target = || format!("{}@{}", rec.number, stream);
    let correlation = if rec.is_json() {
        serde_json::from_slice::<Value>(&rec.metadata)
            .ok()
            .and_then(|v| v.get("$correlationId")?.as_str().map(str::to_owned))
    } else {
        None
    };
    let pos = rec.pos;
    let meta = |extra: Map<String, Value>| {
        tag_metadata(
            version,
            pos,
            extra,
            Some(rec.event_id),
            correlation.as_deref(),
        )
    };
    match kind {
        Kind::Streams => (rec.number == 0).then(|| Emitted {
            stream: "$streams".into(),
            event_type: LINK,
            is_json: false,
            data: target(),
            metadata: meta(Map::new()),
        }),
        Kind::StreamByCategory => {
            if rec.number != 0 {
                return None;
            }
            let cat = category(stream)?;
            Some(Emitted {
                stream: format!("$category-{cat}"),
                event_type: STREAM_REFERENCE,
                is_json: false,
                data: stream.to_owned(),
                metadata: meta(Map::new()),
            })
        }
        Kind::ByCategory => {
            let (deleted, deleted_id) = stream_deleted(rec);
            let original = if deleted { deleted_id } else { stream };
            let cat = category(original)?;
            let data = if &*rec.event_type == LINK {
                String::from_utf8_lossy(&rec.data).into_owned()
            } else {
                target()
            };
            let mut extra = Map::new();
            extra.insert("$o".into(), Value::from(original));
            if deleted {
                extra.insert("$deleted".into(), Value::from(-1));
            }
            Some(Emitted {
                stream: format!("$ce-{cat}"),
                event_type: LINK,
                is_json: false,
                data,
                metadata: meta(extra),
            })
        }
        Kind::ByEventType => {
            if &*rec.event_type == LINK {
                return None;
            }
            // As the source does, the link of a metastream event names the original stream.
            let (deleted, position_stream) = stream_deleted(rec);
            let event_type = if deleted {
                "$deleted"
            } else {
                &*rec.event_type
            };
            let mut extra = Map::new();
            if deleted {
                extra.insert("$deleted".into(), Value::from(-1));
            }
            Some(Emitted {
                stream: format!("$et-{event_type}"),
                event_type: LINK,
                is_json: false,
                data: format!("{}@{}", rec.number, position_stream),
                metadata: meta(extra),
            })
        }
        Kind::ByCorrelationId => {
            let metadata: Value = serde_json::from_slice(&rec.metadata).ok()?;
            let id = metadata.get("$correlationId")?.as_str()?;
            let mut extra = Map::new();
            extra.insert(
                "$eventTimestamp".into(),
                Value::from(timestamp(rec.timestamp)),
            );
            Some(Emitted {
                stream: format!("$bc-{id}"),
                event_type: LINK,
                is_json: false,
                data: target(),
                metadata: meta(extra),
            })
        }
    }
}

/// An emitted record's metadata: the caused-by checkpoint tag (`$v`, `$c`, `$p`), the handler's
/// extra properties, then `$causedBy` and `$correlationId` (`EmittedStream`,
/// `CheckpointTag.WriteTo`).
fn tag_metadata(
    version: &str,
    pos: u64,
    extra: Map<String, Value>,
    caused_by: Option<Uuid>,
    correlation: Option<&str>,
) -> String {
    let mut m = Map::new();
    m.insert("$v".into(), Value::from(version));
    m.insert("$c".into(), Value::from(pos));
    m.insert("$p".into(), Value::from(pos));
    let has_correlation = extra.contains_key("$correlationId");
    for (k, v) in extra {
        m.insert(k, v);
    }
    if let Some(id) = caused_by {
        m.insert("$causedBy".into(), Value::from(id.to_string()));
    }
    if let (Some(c), false) = (correlation, has_correlation) {
        m.insert("$correlationId".into(), Value::from(c));
    }
    Value::Object(m).to_string()
}

/// `yyyy-MM-ddTHH:mm:ss.ffffffZ` (`ByCorrelationId`'s `$eventTimestamp`).
fn timestamp(ticks: i64) -> String {
    let secs = ticks.div_euclid(10_000_000);
    let micros = ticks.rem_euclid(10_000_000) / 10;
    let (y, mo, d) = crate::http::feed::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_follow_the_first_separator() {
        assert_eq!(category("order-1"), Some("order"));
        assert_eq!(category("order-1-2"), Some("order"));
        assert_eq!(category("order"), None);
        assert_eq!(category("-x"), None);
        assert_eq!(category("$ce-order"), None);
    }

    #[test]
    fn metadata_keeps_the_server_order() {
        let mut extra = Map::new();
        extra.insert("$o".into(), Value::from("order-1"));
        let id = Uuid::nil();
        let m = tag_metadata("3:-1:1:4", 42, extra, Some(id), Some("c1"));
        assert_eq!(
            m,
            format!(
                r#"{{"$v":"3:-1:1:4","$c":42,"$p":42,"$o":"order-1","$causedBy":"{id}","$correlationId":"c1"}}"#
            )
        );
    }

    #[test]
    fn timestamps_have_microseconds() {
        // 2021-01-01T00:00:00.1234567Z
        let ticks = 1_609_459_200 * 10_000_000 + 1_234_567;
        assert_eq!(timestamp(ticks), "2021-01-01T00:00:00.123456Z");
    }
}
