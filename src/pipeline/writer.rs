//! The writer: applies each page's operations to the secondary, then reports the page's end
//! position as applied.
//!
//! Every append carries the source event ids and the exact expected version `number − 1`
//! (minus the stream's offset, see [`crate::offsets`]), so replaying a page after a crash is a
//! no-op answered 201 (strong idempotency, contract §5.5). A `400 Wrong expected EventNumber` is
//! therefore never retried blindly: either the stream is missing on the secondary because the
//! primary no longer has its first events (the offset rule), or the secondary differs from the
//! primary, which stops replication with a [`Divergence`] report. Nothing is overwritten.
//!
//! Metadata records (soft deletes included) are written the same way into `$$stream`: original
//! id, exact metastream number (see [`Writer::metadata`]); tombstones with the stream's exact last
//! number. No write of a user stream is sent with expected version `Any`, so no replay can delete,
//! undelete or rewrite anything.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use tokio::sync::{mpsc, watch, Mutex};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::lanes::{Lanes, PageInfo, Work};
use super::plan::{Op, SourceEvent, LINK_TYPE};
use super::{Applied, Batch, Shared, StageError};
use crate::config::Ordering;
use crate::esdb::{self, Client, DeleteMode, DeleteOutcome, EventData, Lookup};
use crate::fidelity::{self, LossKind, LossRecord};
use crate::offsets::{StreamOffsets, OFFSETS_STREAM};
use crate::position::{CurrentVersion, ExpectedVersion, Position, StreamRevision};
use crate::retry::{retry, Gave};

/// Most events in one append request.
pub(super) const MAX_APPEND_EVENTS: usize = 500;
/// Most data + metadata bytes in one append request (the server's limit is 4 MiB per event).
pub(super) const MAX_APPEND_BYTES: usize = 2 << 20;
/// Streams applied at once with `ordering = "stream"`.
pub const STREAM_CONCURRENCY: usize = 128;
/// How long lanes may wait for further pages before they are sent anyway: what was read is
/// written soon even when the primary stops answering.
pub const LINGER_TIME: std::time::Duration = std::time::Duration::from_millis(250);

/// The secondary differs from the primary: replication stops, nothing is overwritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    pub stream: String,
    /// The source event number being applied.
    pub source_revision: u64,
    /// The expected version sent to the secondary.
    pub expected: String,
    /// The secondary's current version, as it answered.
    pub current: String,
    /// Id of the event the primary has at that number.
    pub primary_event_id: Option<Uuid>,
    /// Id of the event the secondary has at that number, if any.
    pub secondary_event_id: Option<Uuid>,
    pub explanation: String,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "divergence in stream {:?} at source event {}: expected version {}, secondary current version {}",
            self.stream, self.source_revision, self.expected, self.current
        )?;
        if let Some(p) = self.primary_event_id {
            write!(f, "; primary event {p}")?;
        }
        match self.secondary_event_id {
            Some(s) => write!(f, ", secondary event {s}")?,
            None => write!(f, ", no such event on the secondary")?,
        }
        write!(f, ". {}", self.explanation)
    }
}

pub(super) struct Writer {
    pub client: Client,
    pub ordering: Ordering,
    pub offsets: Mutex<StreamOffsets>,
    pub shared: Arc<Shared>,
}

/// What one page needs to know while applying an operation.
struct PageCtx<'a> {
    hard_deleted: &'a HashSet<String>,
    cancel: &'a CancellationToken,
}

impl Writer {
    /// Applies batches until the channel closes or `stop` fires, reporting the low-water mark of
    /// retired pages on `applied` (see [`super::lanes`]).
    ///
    /// A page holding a delete (a barrier) is applied alone: every earlier page is retired and
    /// made durable first (locally and in the copy on the secondary), so that no replay can run
    /// an earlier page's operations after the delete; then the page itself is applied and made
    /// durable before any later page is admitted.
    ///
    /// # Cancel safety
    /// `stop` ends admission and dispatch; the work in flight is finished and what it retires is
    /// reported. `abort` abandons the work in flight (shutdown deadline passed); unretired pages
    /// are replayed after the restart.
    pub async fn run(
        self,
        rx: mpsc::Receiver<Batch>,
        applied: watch::Sender<Applied>,
        flushed: watch::Receiver<Position>,
        stop: CancellationToken,
        abort: CancellationToken,
    ) -> Result<(), StageError> {
        match self.schedule(rx, applied, flushed, stop, abort).await {
            Err(StageError::Cancelled) => Ok(()),
            other => other,
        }
    }

    async fn schedule(
        &self,
        mut rx: mpsc::Receiver<Batch>,
        applied: watch::Sender<Applied>,
        mut flushed: watch::Receiver<Position>,
        stop: CancellationToken,
        abort: CancellationToken,
    ) -> Result<(), StageError> {
        let concurrency = match self.ordering {
            Ordering::Global => 1,
            Ordering::Stream => STREAM_CONCURRENCY,
        };
        let mut lanes = Lanes::new(self.ordering);
        let mut running = FuturesUnordered::new();
        // A barrier page received and waiting for the pages before it.
        let mut waiting: Option<Batch> = None;
        // The end of the barrier page being applied, and the streams it hard-deletes.
        let mut barrier: Option<Position> = None;
        let mut hard_deleted: Arc<HashSet<String>> = Arc::default();
        let mut last: Option<Position> = None;
        let (mut closed, mut stopping) = (false, false);
        // When lingering lanes are sent even though no further page came.
        let mut linger_until: Option<tokio::time::Instant> = None;
        loop {
            // Nothing may wait for company while the writer drains, or around a delete.
            if closed || stopping || waiting.is_some() || barrier.is_some() {
                lanes.release_all();
            }
            while !stopping && running.len() < concurrency {
                let Some(work) = lanes.next_work() else { break };
                running.push(self.run_work(work, hard_deleted.clone(), abort.clone()));
            }
            if running.is_empty() && stopping {
                return Ok(());
            }
            if running.is_empty() && lanes.is_idle() {
                // Every admitted page is retired, so `last` is the end of the newest.
                if let Some(end) = barrier.take() {
                    debug_assert_eq!(last, Some(end));
                    // A delete cannot be replayed blindly: make its page durable first.
                    self.flush(&applied, &mut flushed, end, &abort).await?;
                    hard_deleted = Arc::default();
                }
                if let Some(batch) = waiting.take() {
                    if let Some(before) = last {
                        self.flush(&applied, &mut flushed, before, &abort).await?;
                    }
                    barrier = Some(batch.end);
                    hard_deleted = Arc::new(batch.plan.hard_deleted.clone());
                    last = self
                        .admit(&mut lanes, batch, &applied, &abort)
                        .await?
                        .or(last);
                    continue;
                }
                if closed {
                    return Ok(());
                }
            }
            let admitting = !closed && !stopping && waiting.is_none() && barrier.is_none();
            tokio::select! {
                biased;
                _ = abort.cancelled() => return Ok(()),
                _ = stop.cancelled(), if !stopping => stopping = true,
                _ = tokio::time::sleep_until(linger_until.unwrap_or_else(tokio::time::Instant::now)), if linger_until.is_some() => {
                    linger_until = None;
                    lanes.release_all();
                }
                Some((work, result)) = running.next(), if !running.is_empty() => {
                    result?;
                    last = self.retired(lanes.complete(work), &applied).or(last);
                }
                batch = rx.recv(), if admitting && lanes.has_room() => match batch {
                    None => closed = true,
                    Some(batch) if batch.plan.barrier => waiting = Some(batch),
                    Some(batch) => {
                        linger_until = (!batch.at_head).then(|| tokio::time::Instant::now() + LINGER_TIME);
                        last = self.admit(&mut lanes, batch, &applied, &abort).await?.or(last);
                    }
                },
            }
        }
    }

    /// Admits a page: records its lossy copies first, so `verify` never sees an unexplained one.
    async fn admit(
        &self,
        lanes: &mut Lanes,
        batch: Batch,
        applied: &watch::Sender<Applied>,
        abort: &CancellationToken,
    ) -> Result<Option<Position>, StageError> {
        if !batch.losses.is_empty() {
            let ctx = PageCtx {
                hard_deleted: &HashSet::new(),
                cancel: abort,
            };
            let losses = fidelity::events(&batch.losses);
            self.call("record lossy copies", &ctx, || {
                fidelity::append(&self.client, &losses)
            })
            .await?;
        }
        let info = PageInfo {
            end: batch.end,
            records: batch.records,
            updated: batch.updated,
        };
        Ok(self.retired(lanes.admit(batch.plan.ops, info, batch.at_head), applied))
    }

    /// Reports retired pages; returns the new low-water mark, if any page retired.
    fn retired(&self, pages: Vec<PageInfo>, applied: &watch::Sender<Applied>) -> Option<Position> {
        let end = pages.last()?.end;
        for page in &pages {
            self.shared.note_applied(page);
        }
        applied.send_replace(Applied {
            position: end,
            flush: false,
        });
        Some(end)
    }

    /// Asks for `position` to be made durable (locally and on the secondary) and waits for it.
    async fn flush(
        &self,
        applied: &watch::Sender<Applied>,
        flushed: &mut watch::Receiver<Position>,
        position: Position,
        abort: &CancellationToken,
    ) -> Result<(), StageError> {
        applied.send_replace(Applied {
            position,
            flush: true,
        });
        tokio::select! {
            _ = abort.cancelled() => Err(StageError::Cancelled),
            r = flushed.wait_for(|p| *p >= position) => match r {
                Ok(_) => Ok(()),
                // The checkpointer is gone: it failed, and says why.
                Err(_) => Err(StageError::Cancelled),
            },
        }
    }

    /// Applies one lane's work, its operations in order.
    async fn run_work(
        &self,
        work: Work,
        hard_deleted: Arc<HashSet<String>>,
        abort: CancellationToken,
    ) -> (Work, Result<(), StageError>) {
        let ctx = PageCtx {
            hard_deleted: &hard_deleted,
            cancel: &abort,
        };
        for op in &work.ops {
            if let Err(e) = self.apply_op(op, &ctx).await {
                return (work, Err(e));
            }
        }
        (work, Ok(()))
    }

    async fn apply_op(&self, op: &Op, ctx: &PageCtx<'_>) -> Result<(), StageError> {
        match op {
            Op::Append { stream, events } => self.append(stream, events, ctx).await,
            Op::Metadata {
                stream,
                revision,
                event_id,
                data,
            } => self.metadata(stream, *revision, *event_id, data, ctx).await,
            Op::HardDelete { stream, last } => self.hard_delete(stream, *last, ctx).await,
        }
    }

    /// Runs one client call with the retry policy; permanent errors come back as they are.
    async fn call<T, F, Fut>(&self, what: &str, ctx: &PageCtx<'_>, op: F) -> Result<T, StageError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, esdb::Error>>,
    {
        match retry(
            what,
            ctx.cancel,
            |e| self.shared.note_retry("writer", e),
            op,
        )
        .await
        {
            Ok(v) => Ok(v),
            Err(Gave::Cancelled) => Err(StageError::Cancelled),
            Err(Gave::Up(e)) => Err(StageError::Secondary(e)),
        }
    }

    async fn append(
        &self,
        stream: &str,
        events: &[SourceEvent],
        ctx: &PageCtx<'_>,
    ) -> Result<(), StageError> {
        let mut rest = events;
        while !rest.is_empty() {
            let (first, mapping) = {
                let offsets = self.offsets.lock().await;
                // Numbers are consecutive, so the events before the offset are a prefix.
                let skipped = rest
                    .iter()
                    .take_while(|e| offsets.to_secondary(stream, e.revision).is_none())
                    .count();
                rest = &rest[skipped..];
                let Some(first) = rest
                    .first()
                    .and_then(|e| offsets.to_secondary(stream, e.revision))
                else {
                    // Every event lies before the stream's offset: never replicated by the rule.
                    return Ok(());
                };
                let mapping: Vec<Cow<'_, EventData>> = rest
                    .iter()
                    .map(|e| self.translate_link(&offsets, &e.event))
                    .collect();
                (first, mapping)
            };
            match self.append_mapped(stream, first, &mapping, ctx).await {
                Ok(()) => return Ok(()),
                Err(AppendFailure::Stage(e)) => return Err(e),
                Err(AppendFailure::Mismatch {
                    at,
                    expected,
                    current,
                }) => {
                    // An earlier run applied a prefix of these events in other batches (a crash
                    // between pages at the live edge, or another ordering): skip what is there
                    // with the same ids, then go on. Anything else is divergence.
                    if let (Some(CurrentVersion::Revision(current)), Some(from)) =
                        (current, nth(first, at).filter(|_| at < mapping.len()))
                    {
                        if current >= from {
                            let present = self
                                .applied_prefix(stream, from, &mapping[at..], current, ctx)
                                .await?;
                            if present > 0 {
                                tracing::info!(stream, %from, events = present, "events already on the secondary from an earlier run; skipping them");
                                rest = &rest[at + present..];
                                continue;
                            }
                        }
                    }
                    let source = rest[at].revision;
                    let mut offsets = self.offsets.lock().await;
                    let gap = current == Some(CurrentVersion::NoStream)
                        && at == 0
                        && source > StreamRevision::START
                        && offsets.get(stream).is_none();
                    if !gap {
                        drop(offsets);
                        return Err(self
                            .divergence(stream, &rest[at], expected, current, ctx)
                            .await);
                    }
                    // The primary's stream starts at `source` (earlier events truncated and
                    // scavenged): persist the offset, then append again under it.
                    tracing::info!(stream, first_event = %source, "stream's first surviving event on the primary is not 0; replicating it with a number offset");
                    let mut entries = vec![(
                        stream.to_string(),
                        i64::try_from(source.get()).unwrap_or(i64::MAX),
                    )];
                    if self.translate_truncation(stream, source, ctx).await? {
                        let meta = crate::offsets::metastream_key(stream);
                        let shifted = offsets.shift(&meta) - 1;
                        entries.push((meta, shifted));
                    }
                    self.record_offsets(&mut offsets, &entries, ctx).await?;
                }
            }
        }
        Ok(())
    }

    /// How many leading `events` (mapped to secondary numbers from `first` on) the secondary
    /// already holds, up to its `current` last number.
    ///
    /// The prefix is sent again as its own append with the exact expected version before `first`:
    /// the server answers "already written" only when every id is at its number, and it checks
    /// that in its index (strong idempotency, §5.5), so events the secondary hides from reads
    /// (`$maxCount`, `$tb`, `$maxAge`) are proven as well as visible ones. A refusal means the
    /// secondary holds other events there.
    async fn applied_prefix(
        &self,
        stream: &str,
        first: StreamRevision,
        events: &[Cow<'_, EventData>],
        current: StreamRevision,
        ctx: &PageCtx<'_>,
    ) -> Result<usize, StageError> {
        let held = current.get().saturating_sub(first.get()).saturating_add(1);
        let n = usize::try_from(held).map_or(events.len(), |h| h.min(events.len()));
        match Box::pin(self.append_mapped(stream, first, &events[..n], ctx)).await {
            Ok(()) => Ok(n),
            Err(AppendFailure::Mismatch { at, .. }) => Ok(at),
            Err(AppendFailure::Stage(e)) => Err(e),
        }
    }

    /// A user-written link to an event of an offset stream points at the translated number.
    fn translate_link<'e>(
        &self,
        offsets: &StreamOffsets,
        event: &'e EventData,
    ) -> Cow<'e, EventData> {
        if event.event_type != LINK_TYPE || offsets.is_empty() {
            return Cow::Borrowed(event);
        }
        let parsed = std::str::from_utf8(&event.data).ok().and_then(|t| {
            let (n, target) = t.split_once('@')?;
            Some((n.parse::<u64>().ok()?, target))
        });
        match parsed.and_then(|(n, target)| {
            let to = offsets.to_secondary(target, StreamRevision::new(n)?)?;
            (to.get() != n).then(|| format!("{}@{target}", to.get()))
        }) {
            Some(data) => Cow::Owned(EventData {
                data: Bytes::from(data),
                ..event.clone()
            }),
            None => Cow::Borrowed(event),
        }
    }

    /// Appends events already mapped to secondary numbers, in chunks.
    async fn append_mapped(
        &self,
        stream: &str,
        first: StreamRevision,
        events: &[Cow<'_, EventData>],
        ctx: &PageCtx<'_>,
    ) -> Result<(), AppendFailure> {
        let mut i = 0;
        while i < events.len() {
            let mut end = i;
            let mut bytes = 0;
            while end < events.len()
                && end - i < MAX_APPEND_EVENTS
                && (end == i || bytes + size(&events[end]) <= self.client.max_append_bytes())
            {
                bytes += size(&events[end]);
                end += 1;
            }
            let chunk = &events[i..end];
            let at = nth(first, i).ok_or_else(|| too_far(stream))?;
            let expected = expected_before(at);
            let started = std::time::Instant::now();
            let result = self
                .call("append", ctx, || {
                    self.client.append_events(stream, chunk, expected)
                })
                .await;
            let refused = match &result {
                Err(StageError::Secondary(e)) => self.client.refused_in_batch(e),
                _ => None,
            };
            if let Some(index) = refused {
                // Events before `index` go in one batch; the one at `index` alone in the
                // form that stores its bytes; then continue after it.
                if index > 0 {
                    Box::pin(self.append_mapped(stream, at, &events[i..i + index], ctx))
                        .await
                        .map_err(|f| f.shift(i))?;
                }
                let single = nth(first, i + index).ok_or_else(|| too_far(stream))?;
                self.append_single(stream, single, &events[i + index], ctx)
                    .await
                    .map_err(|f| f.shift(i + index))?;
                i += index + 1;
                continue;
            }
            match result {
                Ok(_) => {
                    let bytes = chunk
                        .iter()
                        .map(|e| (e.data.len() + e.metadata.len()) as u64)
                        .sum();
                    self.shared
                        .note_events(chunk.len() as u64, bytes, started.elapsed());
                    i = end;
                }
                Err(StageError::Secondary(esdb::Error::WrongExpectedVersion {
                    expected,
                    current,
                    ..
                })) => {
                    return Err(AppendFailure::Mismatch {
                        at: i,
                        expected,
                        current,
                    })
                }
                Err(StageError::Secondary(esdb::Error::StreamDeleted { .. }))
                    if ctx.hard_deleted.contains(stream) =>
                {
                    // Replay of a page whose hard delete was already applied.
                    return Ok(());
                }
                Err(e) => return Err(AppendFailure::Stage(e)),
            }
        }
        Ok(())
    }

    /// One event the batch form cannot carry, alone ([`Client::append_single`]). When that form
    /// leaves its metadata out (an HTTP API limit, documented in `docs/replication.md`), the loss
    /// is logged and recorded on the secondary first, so that no crash leaves a lossy copy
    /// unrecorded.
    async fn append_single(
        &self,
        stream: &str,
        revision: StreamRevision,
        event: &EventData,
        ctx: &PageCtx<'_>,
    ) -> Result<(), AppendFailure> {
        let started = std::time::Instant::now();
        if self.client.single_drops_metadata(event) {
            self.shared.note_fidelity_loss();
            tracing::warn!(stream, %revision, event_id = %event.event_id,
                "this event's data cannot travel in a batch and its single-event form cannot carry metadata; its metadata is not copied (HTTP API limit)");
            let loss = fidelity::events(&[LossRecord {
                stream: stream.to_string(),
                revision: revision.get(),
                event_id: event.event_id,
                kind: LossKind::MetadataDropped,
            }]);
            self.call("record a lossy copy", ctx, || {
                fidelity::append(&self.client, &loss)
            })
            .await
            .map_err(AppendFailure::Stage)?;
        }
        let expected = expected_before(revision);
        let result = self
            .call("append single event", ctx, || {
                self.client.append_single(stream, event, expected)
            })
            .await;
        match result {
            Ok(_) => {
                let bytes = (event.data.len() + event.metadata.len()) as u64;
                self.shared.note_events(1, bytes, started.elapsed());
                Ok(())
            }
            Err(StageError::Secondary(esdb::Error::WrongExpectedVersion {
                expected,
                current,
                ..
            })) => Err(AppendFailure::Mismatch {
                at: 0,
                expected,
                current,
            }),
            Err(StageError::Secondary(esdb::Error::StreamDeleted { .. }))
                if ctx.hard_deleted.contains(stream) =>
            {
                Ok(())
            }
            Err(e) => Err(AppendFailure::Stage(e)),
        }
    }

    /// Writes one record of `$$stream` as the primary's log holds it: its original id, at its
    /// metastream number (less the metastream's offset, see [`crate::offsets`]), with the exact
    /// expected version. A replay is answered "already written" and changes nothing.
    ///
    /// The secondary's server writes records of its own into `$$stream`, as the primary's did
    /// (§5.7): the "undelete" record after an append to, or a metadata write on, a soft-deleted
    /// stream. They take the same numbers as the primary's, with other ids; the primary's copy of
    /// such a record is recognised by its content and not written again. One primary record has
    /// no server-side twin: a soft delete of a stream that is already soft-deleted, which the
    /// primary wrote through a `DELETE` (no undelete record). Written as metadata it would
    /// undelete the stream, so it is sent as a `DELETE` too.
    async fn metadata(
        &self,
        stream: &str,
        revision: StreamRevision,
        event_id: Uuid,
        data: &Bytes,
        ctx: &PageCtx<'_>,
    ) -> Result<(), StageError> {
        let meta = crate::offsets::metastream_key(stream);
        let data = self.offsets.lock().await.translate_metadata(stream, data);
        let soft_delete = data.as_ref() == super::plan::SOFT_DELETE_BODY;
        loop {
            let Some(at) = self.offsets.lock().await.to_secondary(&meta, revision) else {
                // Before the metastream's first replicated record: never replicated by the rule.
                return Ok(());
            };
            let expected = expected_before(at);
            if soft_delete {
                let head = self.metastream_head(stream, ctx).await?;
                if head
                    .as_ref()
                    .is_some_and(|h| h.revision.next() == Some(at) && h.is_soft_delete())
                {
                    // Conditional all the same: "no stream" accepts only a stream that is still
                    // soft-deleted (or absent), so nothing recreated since is deleted.
                    return match self
                        .call("soft delete", ctx, || {
                            self.client.delete_stream(stream, ExpectedVersion::NoStream, DeleteMode::Soft)
                        })
                        .await
                    {
                        Ok(DeleteOutcome::Deleted | DeleteOutcome::StreamNotFound) => Ok(()),
                        Ok(DeleteOutcome::AlreadyHardDeleted) if ctx.hard_deleted.contains(stream) => Ok(()),
                        Ok(DeleteOutcome::AlreadyHardDeleted) => Err(self.metadata_divergence(stream, revision, event_id, expected, "hard-deleted".into(), None, "the primary soft-deletes this stream but it is hard-deleted on the secondary: something else deleted it there")),
                        Err(StageError::Secondary(esdb::Error::WrongExpectedVersion { current, .. })) => Err(self.metadata_divergence(stream, revision, event_id, expected, current.map_or_else(|| "unknown".into(), |c| c.to_string()), None, "the primary soft-deletes this stream again, but on the secondary it holds events written since: something else wrote to it")),
                        Err(e) => Err(e),
                    };
                }
            }
            let result = self
                .call("write metadata", ctx, || {
                    self.client
                        .write_stream_metadata(stream, event_id, data.clone(), expected)
                })
                .await;
            let current = match result {
                Ok(_) => return Ok(()),
                Err(StageError::Secondary(esdb::Error::StreamDeleted { .. }))
                    if ctx.hard_deleted.contains(stream) =>
                {
                    return Ok(())
                }
                Err(StageError::Secondary(esdb::Error::Encode(e))) => {
                    tracing::warn!(stream, %event_id, error = %e, "stream metadata that is not a JSON document is not replicated");
                    return Ok(());
                }
                Err(StageError::Secondary(esdb::Error::WrongExpectedVersion {
                    current, ..
                })) => current,
                Err(e) => return Err(e),
            };
            let mut offsets = self.offsets.lock().await;
            match current {
                Some(CurrentVersion::NoStream)
                    if revision > StreamRevision::START && offsets.get(&meta).is_none() =>
                {
                    // The primary's metastream keeps only its last record (`$maxCount` 1), so
                    // after a scavenge its first record in `$all` is not number 0: the same rule
                    // as for a stream whose first events are gone.
                    tracing::info!(stream, first_record = %revision, "the stream's first surviving metadata record on the primary is not 0; replicating its metadata with a number offset");
                    let entry = (
                        meta.clone(),
                        i64::try_from(revision.get()).unwrap_or(i64::MAX),
                    );
                    self.record_offsets(&mut offsets, &[entry], ctx).await?;
                }
                Some(CurrentVersion::Revision(c)) if c >= at => {
                    drop(offsets);
                    return self
                        .metadata_already_there(stream, revision, event_id, &data, at, c, ctx)
                        .await;
                }
                other => {
                    drop(offsets);
                    return Err(self.metadata_divergence(
                        stream,
                        revision,
                        event_id,
                        expected,
                        other.map_or_else(|| "unknown".into(), |c| c.to_string()),
                        None,
                        "the secondary's metadata stream is behind: metadata records the primary had before this one are missing there. Compare both sides with `standby verify`; do not write to the secondary",
                    ));
                }
            }
        }
    }

    /// The secondary's `$$stream` already reaches `at` (its last record is `current`) and the
    /// record there is not ours by id: a replay over a record the secondary's server wrote
    /// itself, or divergence.
    #[allow(clippy::too_many_arguments)]
    async fn metadata_already_there(
        &self,
        stream: &str,
        revision: StreamRevision,
        event_id: Uuid,
        data: &Bytes,
        at: StreamRevision,
        current: StreamRevision,
        ctx: &PageCtx<'_>,
    ) -> Result<(), StageError> {
        let ours: Option<serde_json::Value> = serde_json::from_slice(data).ok();
        if current == at {
            let head = self.metastream_head(stream, ctx).await?;
            let theirs = head.as_ref().and_then(|h| h.document.clone());
            if head.is_some() && ours.is_some() && theirs == ours {
                tracing::debug!(stream, %revision, "metadata record already written by the secondary's server");
                return Ok(());
            }
            return Err(self.metadata_divergence(
                stream,
                revision,
                event_id,
                expected_before(at),
                current.to_string(),
                head.map(|h| h.event_id),
                "the secondary's metadata record at this number differs from the primary's: something other than standby wrote the stream's metadata there. Nothing was overwritten. Compare both sides with `standby verify`",
            ));
        }
        // Older metastream records cannot be read (a metastream keeps its last record readable,
        // §4.5); the server proved the id differs. The records a server writes itself with ids
        // of its own all carry `$tb` (soft deletes, undelete records): such a record is taken
        // as the secondary server's twin of the primary's. Any other record was written by
        // standby with its original id, so a different one is divergence.
        let server_written = ours
            .as_ref()
            .and_then(|d| d.as_object())
            .is_some_and(|d| d.contains_key("$tb"));
        if server_written {
            tracing::debug!(stream, %revision, "metadata record already applied (hidden by the metastream's $maxCount)");
            return Ok(());
        }
        Err(self.metadata_divergence(
            stream,
            revision,
            event_id,
            expected_before(at),
            current.to_string(),
            None,
            "the secondary's metadata stream holds another record at this number: something other than standby wrote the stream's metadata. Nothing was overwritten. Compare both sides with `standby verify`",
        ))
    }

    /// The last record of the secondary's `$$stream`, if any.
    async fn metastream_head(
        &self,
        stream: &str,
        ctx: &PageCtx<'_>,
    ) -> Result<Option<MetaHead>, StageError> {
        let head = self
            .call("read the secondary's metadata stream", ctx, || {
                self.client.read_metastream_head(stream)
            })
            .await?;
        Ok(head.map(|e| MetaHead {
            revision: e.revision,
            event_id: e.event_id,
            document: e.data.as_ref().and_then(|d| serde_json::from_slice(d).ok()),
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn metadata_divergence(
        &self,
        stream: &str,
        revision: StreamRevision,
        event_id: Uuid,
        expected: ExpectedVersion,
        current: String,
        theirs: Option<Uuid>,
        explanation: &str,
    ) -> StageError {
        StageError::Divergence(Box::new(Divergence {
            stream: format!("$${stream}"),
            source_revision: revision.get(),
            expected: expected.to_string(),
            current,
            primary_event_id: Some(event_id),
            secondary_event_id: theirs,
            explanation: explanation.to_string(),
        }))
    }

    /// Persists number offsets (key, offset) on the secondary in one append, so they hold
    /// together or not at all. The records, and so their event ids, are built once: a retry after
    /// a lost answer is the same write at the same expected version, answered "already written".
    async fn record_offsets(
        &self,
        offsets: &mut StreamOffsets,
        entries: &[(String, i64)],
        ctx: &PageCtx<'_>,
    ) -> Result<(), StageError> {
        let pending = offsets.prepare(entries);
        let expected = pending.expected;
        self.call("record stream offset", ctx, || {
            self.client
                .append_events(OFFSETS_STREAM, &pending.events, expected)
        })
        .await?;
        offsets.committed(pending);
        Ok(())
    }

    /// Before `stream` gets the offset `first`: the metadata already copied to the secondary was
    /// written in source numbers (no offset existed yet), so a `$tb` in it would hide the copied
    /// events. Writes the document again with `$tb` translated, as a record
    /// of standby's own in `$$stream` whose id is derived from (stream, offset), so a replay after
    /// a crash finds it. Returns whether the metastream holds that record: the caller then shifts
    /// the metastream's numbers by one in the same offset append.
    async fn translate_truncation(
        &self,
        stream: &str,
        first: StreamRevision,
        ctx: &PageCtx<'_>,
    ) -> Result<bool, StageError> {
        let id = translation_id(stream, first);
        let Some(head) = self.metastream_head(stream, ctx).await? else {
            return Ok(false);
        };
        if head.event_id == id {
            return Ok(true);
        }
        let Some(serde_json::Value::Object(mut doc)) = head.document else {
            return Ok(false);
        };
        let Some(tb) = doc.get("$tb").and_then(serde_json::Value::as_u64) else {
            return Ok(false);
        };
        if tb == 0 || tb == StreamRevision::TOMBSTONE.get() {
            return Ok(false);
        }
        doc.insert("$tb".into(), tb.saturating_sub(first.get()).into());
        let data = Bytes::from(serde_json::to_vec(&doc).expect("a JSON object serialises"));
        tracing::info!(stream, tb, offset = %first, "translating the stream's $tb, copied before its offset was known");
        self.call("translate the stream's $tb", ctx, || {
            self.client.write_stream_metadata(
                stream,
                id,
                data.clone(),
                ExpectedVersion::Exact(head.revision),
            )
        })
        .await?;
        Ok(true)
    }

    /// Hard-deletes `stream` at its exact last number: the one this page appended last, or else
    /// the secondary's own (every event before the tombstone in `$all` is applied by now, and the
    /// pages before it are durable: the tombstone is a barrier). A stream already hard-deleted
    /// answers 410: the replay of a tombstone writes nothing.
    async fn hard_delete(
        &self,
        stream: &str,
        last: Option<StreamRevision>,
        ctx: &PageCtx<'_>,
    ) -> Result<(), StageError> {
        let last = match last {
            Some(source) => self.offsets.lock().await.to_secondary(stream, source),
            None => None,
        };
        let expected = match last {
            Some(n) => ExpectedVersion::Exact(n),
            None => match self
                .call("read the stream's last event", ctx, || {
                    self.client.read_event_entry(
                        stream,
                        crate::esdb::StreamFrom::Head,
                        crate::esdb::Embed::None,
                    )
                })
                .await?
            {
                Lookup::Found(entry) => ExpectedVersion::Exact(entry.revision()),
                // Absent or soft-deleted: "no stream" accepts both.
                Lookup::NotFound => ExpectedVersion::NoStream,
                Lookup::Deleted => return Ok(()),
            },
        };
        match self
            .call("hard delete", ctx, || {
                self.client.delete_stream(stream, expected, DeleteMode::Hard)
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(StageError::Secondary(esdb::Error::WrongExpectedVersion { current, .. })) => {
                Err(StageError::Divergence(Box::new(Divergence {
                    stream: stream.to_string(),
                    source_revision: StreamRevision::TOMBSTONE.get(),
                    expected: expected.to_string(),
                    current: current.map_or_else(|| "unknown".into(), |c| c.to_string()),
                    primary_event_id: None,
                    secondary_event_id: None,
                    explanation: "the primary hard-deletes this stream, but on the secondary it holds other events than the primary had: something else wrote to it. Nothing was deleted. Compare both sides with `standby verify`".into(),
                })))
            }
            Err(e) => Err(e),
        }
    }

    /// Builds the divergence report for a refused append: what the secondary has at that number.
    async fn divergence(
        &self,
        stream: &str,
        source: &SourceEvent,
        expected: ExpectedVersion,
        current: Option<CurrentVersion>,
        ctx: &PageCtx<'_>,
    ) -> StageError {
        let at = match expected {
            ExpectedVersion::Exact(r) => r.next(),
            _ => Some(StreamRevision::START),
        };
        let mut theirs = None;
        if let Some(at) = at {
            if let Ok(Lookup::Found(entry)) = self
                .call("read secondary event", ctx, || {
                    self.client.read_event_entry(
                        stream,
                        crate::esdb::StreamFrom::Revision(at),
                        crate::esdb::Embed::Rich,
                    )
                })
                .await
            {
                theirs = entry.as_event().map(|e| e.event_id);
            }
        }
        let behind = matches!((expected, current), (ExpectedVersion::Exact(e), Some(CurrentVersion::Revision(c))) if c < e)
            || matches!(
                (expected, current),
                (ExpectedVersion::Exact(_), Some(CurrentVersion::NoStream))
            );
        let explanation = if behind {
            "the secondary stream is behind: events the primary had before this one are missing there. Either they were \
             written elsewhere and removed, or the primary scavenged them before they were replicated. Compare both sides \
             with `standby verify`; do not write to the secondary"
        } else {
            "the secondary stream holds events the primary does not have at these numbers: something other than standby \
             wrote to it, or it was restored from another source. Nothing was overwritten. Compare both sides with \
             `standby verify`, then rebuild the secondary or reconcile the stream by hand"
        };
        StageError::Divergence(Box::new(Divergence {
            stream: stream.to_string(),
            source_revision: source.revision.get(),
            expected: expected.to_string(),
            current: current.map_or_else(|| "unknown".to_string(), |c| c.to_string()),
            primary_event_id: Some(source.event.event_id),
            secondary_event_id: theirs,
            explanation: explanation.to_string(),
        }))
    }
}

/// The last record of a secondary metastream.
struct MetaHead {
    revision: StreamRevision,
    event_id: Uuid,
    /// Its data as JSON, when it is.
    document: Option<serde_json::Value>,
}

impl MetaHead {
    fn is_soft_delete(&self) -> bool {
        self.document.as_ref()
            == serde_json::from_slice::<serde_json::Value>(super::plan::SOFT_DELETE_BODY)
                .ok()
                .as_ref()
    }
}

/// Why an append did not go through.
enum AppendFailure {
    Stage(StageError),
    /// 400 Wrong expected EventNumber for the event at index `at` of the mapped events.
    Mismatch {
        at: usize,
        expected: ExpectedVersion,
        current: Option<CurrentVersion>,
    },
}

impl AppendFailure {
    fn shift(self, by: usize) -> AppendFailure {
        match self {
            AppendFailure::Mismatch {
                at,
                expected,
                current,
            } => AppendFailure::Mismatch {
                at: at + by,
                expected,
                current,
            },
            other => other,
        }
    }
}

/// The id of the record [`Writer::translate_truncation`] writes for `stream` at offset `first`:
/// the same in every process, so a replay recognises it.
fn translation_id(stream: &str, first: StreamRevision) -> Uuid {
    const SALT: u128 = 0x7374_616e_6462_792d_7462_2d74_7261_6e73;
    let name = u128::from(crc32c::crc32c(stream.as_bytes()));
    Uuid::from_u128(SALT ^ (name << 64) ^ u128::from(first.get()))
}

/// The number `k` places after `first`.
fn nth(first: StreamRevision, k: usize) -> Option<StreamRevision> {
    StreamRevision::new(first.get().checked_add(u64::try_from(k).ok()?)?)
}

/// A run of events whose numbers would pass the largest the server can store.
fn too_far(stream: &str) -> AppendFailure {
    AppendFailure::Stage(StageError::Unexpected(format!(
        "stream {stream:?}: event numbers beyond the largest the server stores"
    )))
}

/// Expected version for appending at secondary number `at`.
fn expected_before(at: StreamRevision) -> ExpectedVersion {
    match at.previous() {
        Some(prev) => ExpectedVersion::Exact(prev),
        None => ExpectedVersion::NoStream,
    }
}

fn size(e: &EventData) -> usize {
    e.data.len() + e.metadata.len() + e.event_type.len() + 64
}
