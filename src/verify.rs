//! `verify`: proves (or refutes) that the secondary's user streams equal the primary's, the
//! promise of the design's "Replication semantics".
//!
//! What is compared, and why it is enough:
//!
//! 1. **Which streams.** The primary's `$all` is scanned once (`embed=none`, titles only): every
//!    stream name with a record is collected, `$`-streams skipped, a metastream record `$$x` counted
//!    for its user stream `x`, and the whole-stream filters
//!    ([`ReplicationConfig::replicates`]) applied. The set is deduplicated, so memory is
//!    O(number of streams), never O(number of events). The secondary's `$all` is scanned the same
//!    way afterwards to find user streams that exist only there.
//! 2. **Each stream**, read forward in pages on both sides at the same time (never a whole stream
//!    in memory), links not resolved (a user-written `$>` record is compared as itself):
//!    * the stream state: exists, 404 (never written or soft-deleted) or 410 (hard-deleted);
//!    * the visible events in order: event number (modulo the stream's offset from
//!      [`StreamOffsets`]), event id, event type, data, metadata;
//!    * the current stream metadata document (JSON-equal; `$tb` translated for offset streams).
//!      The whole current document is compared, server-written keys included: the secondary's
//!      server performs the same automatic "undelete" metadata writes as the primary's (contract
//!      §5.7), so a faithful copy ends with the same current document.
//!
//! Data and metadata are equal when byte-equal; otherwise when both parse as JSON and are equal as
//! values (the `events+json` form makes the server re-indent JSON objects and arrays, contract §7):
//! such events are counted in [`VerifyReport::json_equivalent_events`]. Metadata missing on the
//! secondary is a documented fidelity limit of the HTTP API, listed in
//! [`VerifyReport::fidelity_limits`] and not a difference, exactly when the event's data cannot
//! travel in the `events+json` batch form (binary data that is not UTF-8, say: "binary data with
//! metadata cannot be copied exactly") and so had to go through a single-event form, which carries
//! no metadata; the client's own encoder decides. Metadata missing on a batchable event is a
//! difference. Timestamps are never compared (the HTTP API cannot set them), nor is the isJson flag
//! (an event whose metadata is JSON becomes isJson on the secondary, contract §7).
//!
//! Verification stops at the first difference. It is meaningful when the secondary has caught up
//! and the primary is quiet (as during `switchover`); events written while it runs may show as
//! missing on the secondary.
//!
//! Every read is retried on transient errors (connect, timeout, 408, 429, 5xx) a bounded number of
//! times with capped exponential backoff and jitter; then [`VerifyError::Unreachable`] names the
//! side that could not be reached.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::config::ReplicationConfig;
use crate::esdb::{self, Client, Embed, Entry, Lookup, PageSize, ReadOptions, StreamPage};
use crate::offsets::StreamOffsets;
use crate::position::{Position, StreamRevision};

/// At most this many fidelity-limit events are listed in a report; the rest are only counted, so a
/// report stays small however many events hit the limit.
pub const MAX_LISTED_FIDELITY_LIMITS: usize = 100;

/// The UTF-8 encoding of U+FFFD: a feed's `data` text containing it may be a lossy decoding of
/// stored bytes, so such data is re-read raw.
const REPLACEMENT_CHARACTER: &[u8] = "\u{FFFD}".as_bytes();

/// Which cluster a read went to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The cluster replicated from.
    Primary,
    /// The standby cluster replicated into.
    Secondary,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Primary => "primary",
            Side::Secondary => "secondary",
        })
    }
}

/// Why verification could not complete. A *difference* between the clusters is not an error: it is
/// [`VerifyReport::first_difference`].
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Transient failures persisted through every attempt: the side is down or unreachable.
    #[error(
        "the {side} cluster is unreachable ({attempts} attempts): {source}; verify needs both \
         clusters: bring the {side} back or fix its URL, then run verify again"
    )]
    Unreachable {
        /// The side that failed.
        side: Side,
        /// Attempts made (the first one included).
        attempts: u32,
        /// The last error.
        #[source]
        source: esdb::Error,
    },
    /// A permanent failure (401, 400, decode error, ...); retrying will not help.
    #[error("reading the {side} cluster failed: {source}")]
    Read {
        /// The side that failed.
        side: Side,
        /// The error.
        #[source]
        source: esdb::Error,
    },
    /// An event listed in a page could no longer be read: the stream changed while verify ran.
    #[error(
        "event {revision} of stream {stream:?} on the {side} disappeared while verify was \
         reading it (truncated, deleted or scavenged meanwhile); run verify again when the \
         clusters are quiet"
    )]
    Changed {
        /// The side that changed.
        side: Side,
        /// The stream.
        stream: String,
        /// The event number that vanished.
        revision: StreamRevision,
    },
}

impl VerifyError {
    /// Whether running verify again later may succeed: an unreachable side, a transient error, a
    /// stream that changed under verify. Permanent client errors (401, 400, decode) are not.
    pub fn is_transient(&self) -> bool {
        match self {
            VerifyError::Unreachable { .. } | VerifyError::Changed { .. } => true,
            VerifyError::Read { source, .. } => source.is_transient(),
        }
    }

    /// Whether a side could not be reached at all (the CLI's "unreachable" exit code).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, VerifyError::Unreachable { .. })
    }

    /// The side the error concerns.
    pub fn side(&self) -> Side {
        match self {
            VerifyError::Unreachable { side, .. }
            | VerifyError::Read { side, .. }
            | VerifyError::Changed { side, .. } => *side,
        }
    }
}

/// Bounded retries of each read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per read, the first included (at least 1).
    pub attempts: u32,
    /// Delay before the second attempt.
    pub min_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 200 ms doubling up to 5 s, with jitter: about 10 s of an outage is tolerated.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Tuning of [`verify_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Events per stream page (with `embed=body`).
    pub stream_page_size: PageSize,
    /// Records per `$all` page of the stream-name scans (titles only, so large pages are cheap).
    pub all_page_size: PageSize,
    /// Retries of each read.
    pub retry: RetryPolicy,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            stream_page_size: PageSize::new(500).expect("500 is a valid page size"),
            all_page_size: PageSize::MAX,
            retry: RetryPolicy::default(),
        }
    }
}

/// Progress of a running verification, for a progress line on long runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
#[non_exhaustive]
pub enum VerifyProgress {
    /// Scanning the primary's `$all` for stream names (after each page).
    ScanningPrimary {
        /// `$all` records read so far.
        records: u64,
        /// Distinct replicated user streams found so far.
        streams: u64,
    },
    /// Comparing streams (after each stream).
    ComparingStreams {
        /// Streams compared so far.
        done: u64,
        /// Streams to compare.
        total: u64,
        /// Events compared so far.
        events: u64,
    },
    /// Scanning the secondary's `$all` for streams the primary does not have (after each page).
    ScanningSecondary {
        /// `$all` records read so far.
        records: u64,
        /// Distinct user streams found so far that the primary does not replicate.
        streams: u64,
    },
}

/// State of a stream as a stream read reports it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// 200: readable (possibly with no visible events).
    Exists,
    /// 404: never written, or soft-deleted.
    NotFound,
    /// 410: hard-deleted (tombstoned).
    Deleted,
}

impl StreamState {
    fn of<T>(lookup: &Lookup<T>) -> StreamState {
        match lookup {
            Lookup::Found(_) => StreamState::Exists,
            Lookup::NotFound => StreamState::NotFound,
            Lookup::Deleted => StreamState::Deleted,
        }
    }
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamState::Exists => "exists",
            StreamState::NotFound => "not found (404: never written or soft-deleted)",
            StreamState::Deleted => "hard-deleted (410)",
        })
    }
}

/// Identity of one event in a [`Difference`] (never its payload: data may be large or sensitive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventIdentity {
    /// Event number on this side.
    pub number: StreamRevision,
    /// Event id, when the feed carried one.
    pub event_id: Option<Uuid>,
    /// Event type, when the feed carried one.
    pub event_type: Option<String>,
}

impl EventIdentity {
    fn of(entry: &Entry) -> EventIdentity {
        match entry {
            Entry::Event(event) => EventIdentity {
                number: event.revision,
                event_id: Some(event.event_id),
                event_type: Some(event.event_type.clone()),
            },
            Entry::Summary(summary) => EventIdentity {
                number: summary.revision,
                event_id: summary.event_id,
                event_type: summary.event_type.clone(),
            },
        }
    }
}

impl fmt::Display for EventIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {}", self.number)?;
        if let Some(id) = self.event_id {
            write!(f, " (id {id}")?;
            if let Some(t) = &self.event_type {
                write!(f, ", type {t:?}")?;
            }
            f.write_str(")")?;
        } else if let Some(t) = &self.event_type {
            write!(f, " (type {t:?})")?;
        }
        Ok(())
    }
}

/// How two data or metadata payloads differ (sizes and the first differing byte, not the bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PayloadDifference {
    /// Length on the primary.
    pub primary_bytes: u64,
    /// Length on the secondary.
    pub secondary_bytes: u64,
    /// Offset of the first differing byte (the shorter length when one is a prefix of the other).
    pub first_differing_byte: u64,
    /// Both sides parse as JSON (and the values differ); `false` = compared as bytes only.
    pub both_json: bool,
}

impl fmt::Display for PayloadDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes on the primary, {} on the secondary, first difference at byte {}{}",
            self.primary_bytes,
            self.secondary_bytes,
            self.first_differing_byte,
            if self.both_json {
                "; both are JSON but not equal as values"
            } else {
                ""
            }
        )
    }
}

/// What differs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DifferenceKind {
    /// The primary's event has no counterpart on the secondary (the secondary's next event, if
    /// any, has a higher number).
    MissingOnSecondary,
    /// The secondary has an event the primary does not (at this number).
    ExtraOnSecondary,
    /// Same number, different event id.
    EventId,
    /// Same number and id, different event type.
    EventType,
    /// Different data.
    Data(PayloadDifference),
    /// Different event metadata.
    Metadata(PayloadDifference),
    /// The stream reads differently (exists / 404 / 410).
    ///
    /// Serialized as `primary_state`/`secondary_state` (the difference's `primary`/`secondary`
    /// keys name events).
    State {
        /// State on the primary.
        #[serde(rename = "primary_state")]
        primary: StreamState,
        /// State on the secondary.
        #[serde(rename = "secondary_state")]
        secondary: StreamState,
    },
    /// The current stream metadata documents differ (`None` = the metadata read answered 404/410).
    ///
    /// Serialized as `primary_metadata`/`secondary_metadata`.
    StreamMetadata {
        /// The primary's document, `$tb` translated for an offset stream.
        #[serde(rename = "primary_metadata")]
        primary: Option<Value>,
        /// The secondary's document.
        #[serde(rename = "secondary_metadata")]
        secondary: Option<Value>,
    },
    /// A user stream exists on the secondary that the primary does not have or does not replicate.
    ExtraStream {
        /// State of the stream on the secondary (serialized as `secondary_state`).
        #[serde(rename = "secondary_state")]
        secondary: StreamState,
    },
}

/// The first difference found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    /// The stream.
    pub stream: String,
    /// What differs.
    #[serde(flatten)]
    pub kind: DifferenceKind,
    /// The primary's event involved, if any.
    pub primary: Option<EventIdentity>,
    /// The secondary's event involved, if any.
    pub secondary: Option<EventIdentity>,
}

impl Difference {
    fn stream_level(stream: &str, kind: DifferenceKind) -> Difference {
        Difference {
            stream: stream.to_owned(),
            kind,
            primary: None,
            secondary: None,
        }
    }
}

fn side_event(
    f: &mut fmt::Formatter<'_>,
    side: &str,
    event: &Option<EventIdentity>,
) -> fmt::Result {
    match event {
        Some(event) => write!(f, "; {side}: {event}"),
        None => Ok(()),
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stream = &self.stream;
        match &self.kind {
            DifferenceKind::MissingOnSecondary => write!(
                f,
                "stream {stream:?}: an event of the primary is missing on the secondary"
            )?,
            DifferenceKind::ExtraOnSecondary => write!(
                f,
                "stream {stream:?}: the secondary has an event the primary does not have"
            )?,
            DifferenceKind::EventId => write!(
                f,
                "stream {stream:?}: different event ids at the same number"
            )?,
            DifferenceKind::EventType => write!(f, "stream {stream:?}: different event types")?,
            DifferenceKind::Data(d) => write!(f, "stream {stream:?}: different data ({d})")?,
            DifferenceKind::Metadata(d) => {
                write!(f, "stream {stream:?}: different event metadata ({d})")?
            }
            DifferenceKind::State { primary, secondary } => write!(
                f,
                "stream {stream:?}: on the primary it {primary}, on the secondary it {secondary}"
            )?,
            DifferenceKind::StreamMetadata { primary, secondary } => {
                let doc = |v: &Option<Value>| {
                    v.as_ref()
                        .map_or_else(|| "none (404/410)".to_owned(), Value::to_string)
                };
                write!(
                    f,
                    "stream {stream:?}: different stream metadata: primary {}, secondary {}",
                    doc(primary),
                    doc(secondary)
                )?
            }
            DifferenceKind::ExtraStream { secondary } => write!(
                f,
                "stream {stream:?} exists on the secondary ({secondary}) but the primary does not \
                 have or replicate it"
            )?,
        }
        side_event(f, "primary", &self.primary)?;
        side_event(f, "secondary", &self.secondary)
    }
}

/// Which fidelity limit of the HTTP API an event hit: the kinds the replicator records in
/// `$standby-fidelity` (see [`crate::fidelity`]).
pub use crate::fidelity::LossKind as FidelityLimitKind;

/// One event that differs only by a documented fidelity limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FidelityLimit {
    /// The stream.
    pub stream: String,
    /// The event on the primary.
    pub event: EventIdentity,
    /// Which limit.
    pub kind: FidelityLimitKind,
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerifyReport {
    /// No difference was found: every replicated user stream is equal, up to the listed fidelity
    /// limits and JSON re-indentation.
    pub equal: bool,
    /// Streams compared (both sides read), the differing one included.
    pub streams_compared: u64,
    /// Event pairs compared, the differing one included.
    pub events_compared: u64,
    /// Events whose data or metadata were equal only as JSON values, not as bytes.
    pub json_equivalent_events: u64,
    /// Events that differ only by a fidelity limit (all of them, listed or not).
    pub fidelity_limit_events: u64,
    /// The first [`MAX_LISTED_FIDELITY_LIMITS`] of those events.
    pub fidelity_limits: Vec<FidelityLimit>,
    /// The first difference; verification stops there.
    pub first_difference: Option<Difference>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.first_difference {
            None => writeln!(
                f,
                "EQUAL: {} streams and {} events compared, the secondary mirrors the primary",
                self.streams_compared, self.events_compared
            )?,
            Some(d) => {
                writeln!(f, "DIFFERENT: {d}")?;
                writeln!(
                    f,
                    "  compared before stopping: {} streams, {} events",
                    self.streams_compared, self.events_compared
                )?;
                writeln!(
                    f,
                    "  what to do: do not promote this secondary as an exact copy; if replication \
                     is running, let it catch up and verify again, otherwise investigate who wrote \
                     to the secondary or rebuild it by replicating into an empty cluster"
                )?;
            }
        }
        if self.json_equivalent_events > 0 {
            writeln!(
                f,
                "  {} events equal as JSON values but not as bytes (the server re-indents JSON \
                 sent in batches)",
                self.json_equivalent_events
            )?;
        }
        if self.fidelity_limit_events > 0 {
            writeln!(
                f,
                "  {} events differ only by a documented HTTP API fidelity limit:",
                self.fidelity_limit_events
            )?;
            for limit in &self.fidelity_limits {
                writeln!(f, "    {:?} {}: {}", limit.stream, limit.event, limit.kind)?;
            }
            let unlisted = self.fidelity_limit_events - self.fidelity_limits.len() as u64;
            if unlisted > 0 {
                writeln!(f, "    ... and {unlisted} more")?;
            }
        }
        Ok(())
    }
}

/// Compares the replicated user streams of `primary` and `secondary` with default
/// [`VerifyOptions`]; see the module documentation for what is compared.
///
/// Memory is O(number of streams) (the deduplicated set of stream names), never O(number of
/// events): streams are read page by page on both sides.
///
/// # Errors
///
/// [`VerifyError::Unreachable`] when a side keeps failing with transient errors,
/// [`VerifyError::Read`] for permanent read errors (e.g. 401: reading `$all` needs `$admins`),
/// [`VerifyError::Changed`] when an event vanishes mid-read. Differences are not errors.
///
/// # Cancel safety
///
/// Cancel-safe: verify only reads.
pub async fn verify(
    primary: &Client,
    secondary: &Client,
    filter: &ReplicationConfig,
    progress: impl FnMut(VerifyProgress),
) -> Result<VerifyReport, VerifyError> {
    verify_with(
        primary,
        secondary,
        filter,
        &VerifyOptions::default(),
        progress,
    )
    .await
}

/// [`verify`] with explicit page sizes and retry policy.
///
/// # Errors
///
/// As [`verify`].
///
/// # Cancel safety
///
/// Cancel-safe: verify only reads.
#[tracing::instrument(skip_all, fields(primary = %primary.endpoint(), secondary = %secondary.endpoint()))]
pub async fn verify_with(
    primary: &Client,
    secondary: &Client,
    filter: &ReplicationConfig,
    options: &VerifyOptions,
    progress: impl FnMut(VerifyProgress),
) -> Result<VerifyReport, VerifyError> {
    let offsets = with_retry(
        &options.retry,
        Side::Secondary,
        "load stream offsets",
        || StreamOffsets::load(secondary),
    )
    .await?;
    let losses = with_retry(
        &options.retry,
        Side::Secondary,
        "load the lossy-copy records",
        || crate::fidelity::load(secondary),
    )
    .await?;
    let mut verifier = Verifier {
        primary,
        secondary,
        filter,
        options,
        offsets,
        losses,
        exact: primary.wire() == esdb::Wire::Grpc && secondary.wire() == esdb::Wire::Grpc,
        progress,
        report: VerifyReport {
            equal: true,
            streams_compared: 0,
            events_compared: 0,
            json_equivalent_events: 0,
            fidelity_limit_events: 0,
            fidelity_limits: Vec::new(),
            first_difference: None,
        },
    };
    verifier.run().await?;
    let mut report = verifier.report;
    report.equal = report.first_difference.is_none();
    tracing::info!(
        equal = report.equal,
        streams = report.streams_compared,
        events = report.events_compared,
        "verification finished"
    );
    Ok(report)
}

/// Runs `op` until it succeeds, fails permanently, or `policy.attempts` attempts failed
/// transiently.
async fn with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    side: Side,
    what: &str,
    op: F,
) -> Result<T, VerifyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, esdb::Error>>,
{
    let attempts = policy.attempts.max(1);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_jitter()
        .with_max_times(attempts as usize - 1);
    op.retry(backoff)
        .when(esdb::Error::is_transient)
        .notify(|error, delay| {
            tracing::warn!(%side, operation = what, %error, retry_in = ?delay, "transient read error, retrying");
        })
        .await
        .map_err(|source| {
            if source.is_transient() {
                VerifyError::Unreachable {
                    side,
                    attempts,
                    source,
                }
            } else {
                VerifyError::Read { side, source }
            }
        })
}

/// Which user stream a `$all` record belongs to, if any: `x` for records of `x` and of its
/// metastream `$$x`; `None` for system streams (contract §6).
fn user_stream_of(stream: &str) -> Option<&str> {
    match stream.strip_prefix("$$") {
        Some(of) if !of.is_empty() && !of.starts_with('$') => Some(of),
        Some(_) => None,
        None if stream.starts_with('$') || stream.is_empty() => None,
        None => Some(stream),
    }
}

/// Outcome of comparing two payloads.
enum PayloadMatch {
    Bytes,
    Json,
    Differ(PayloadDifference),
}

/// Equal bytes, or JSON that parses to the same value: what AtomPub stores when it re-indents
/// JSON. Over gRPC nothing is re-indented, so such an event was copied over AtomPub before; it
/// is counted (`json_equivalent_events`), not called a difference.
fn compare_payload(primary: &[u8], secondary: &[u8]) -> PayloadMatch {
    if primary == secondary {
        return PayloadMatch::Bytes;
    }
    let parsed = (
        serde_json::from_slice::<Value>(primary),
        serde_json::from_slice::<Value>(secondary),
    );
    let both_json = match parsed {
        (Ok(a), Ok(b)) if a == b => return PayloadMatch::Json,
        (Ok(_), Ok(_)) => true,
        _ => false,
    };
    let first = primary
        .iter()
        .zip(secondary)
        .position(|(a, b)| a != b)
        .unwrap_or(primary.len().min(secondary.len()));
    PayloadMatch::Differ(PayloadDifference {
        primary_bytes: primary.len() as u64,
        secondary_bytes: secondary.len() as u64,
        first_differing_byte: first as u64,
        both_json,
    })
}

/// Whether the `events+json` batch form can carry the primary's event with its data and metadata
/// unchanged (up to JSON re-indentation), by the client's own encoder rule. When it cannot, the
/// replicator must use a single-event form, which has no metadata, so metadata missing on the
/// secondary is the documented fidelity limit rather than a difference.
fn batch_can_carry(entry: &Entry, data: &Bytes, metadata: &Bytes) -> bool {
    let EventIdentity {
        event_id: Some(event_id),
        event_type: Some(event_type),
        ..
    } = EventIdentity::of(entry)
    else {
        return true;
    };
    let event = esdb::EventData {
        event_id,
        event_type,
        data: data.clone(),
        metadata: metadata.clone(),
        is_json: entry.as_event().is_some_and(|event| event.is_json),
    };
    esdb::http::append::batch_carries(&event)
}

/// Reads one side of one stream forward, a page at a time.
struct Cursor<'a> {
    client: &'a Client,
    side: Side,
    stream: &'a str,
    /// Where the next page starts; `None` once the end was reached.
    next: Option<StreamRevision>,
    buffer: VecDeque<Entry>,
}

fn stream_read_options() -> ReadOptions {
    ReadOptions {
        embed: Embed::Body,
        long_poll: None,
        // A user-written `$>` record is compared as itself, not as its target (contract §4.3).
        resolve_link_tos: Some(false),
    }
}

impl<'a> Cursor<'a> {
    async fn read(
        &self,
        from: StreamRevision,
        options: &VerifyOptions,
    ) -> Result<Lookup<StreamPage>, VerifyError> {
        let read_options = stream_read_options();
        with_retry(&options.retry, self.side, "read stream", || {
            self.client.read_stream_forward(
                self.stream,
                from,
                options.stream_page_size,
                &read_options,
            )
        })
        .await
    }

    /// Reads the first page: the stream's state, and a cursor over its events.
    async fn open(
        client: &'a Client,
        side: Side,
        stream: &'a str,
        options: &VerifyOptions,
    ) -> Result<(StreamState, Cursor<'a>), VerifyError> {
        let mut cursor = Cursor {
            client,
            side,
            stream,
            next: None,
            buffer: VecDeque::new(),
        };
        let first = cursor.read(StreamRevision::START, options).await?;
        let state = StreamState::of(&first);
        if let Lookup::Found(page) = first {
            cursor.take(StreamRevision::START, page);
        }
        Ok((state, cursor))
    }

    /// Buffers a page's entries and decides where the next page starts.
    ///
    /// The end is `headOfStream`, not a short page: a forward read below a stream's `$tb` answers
    /// an empty, non-final page whose `previous` link continues further on (contract §4.2).
    fn take(&mut self, from: StreamRevision, page: StreamPage) {
        self.buffer.extend(page.entries);
        self.next = match page.next {
            Some(next) if !page.head_of_stream && next > from => Some(next),
            _ => None,
        };
    }

    /// The next entry, reading further pages as needed.
    async fn next(&mut self, options: &VerifyOptions) -> Result<Option<Entry>, VerifyError> {
        loop {
            if let Some(entry) = self.buffer.pop_front() {
                return Ok(Some(entry));
            }
            let Some(from) = self.next else {
                return Ok(None);
            };
            match self.read(from, options).await? {
                Lookup::Found(page) => self.take(from, page),
                Lookup::NotFound | Lookup::Deleted => {
                    return Err(VerifyError::Changed {
                        side: self.side,
                        stream: self.stream.to_owned(),
                        revision: from,
                    })
                }
            }
        }
    }
}

struct Verifier<'a, P> {
    primary: &'a Client,
    secondary: &'a Client,
    filter: &'a ReplicationConfig,
    options: &'a VerifyOptions,
    offsets: StreamOffsets,
    /// Events the replicator recorded as copied with a known HTTP API loss.
    losses: std::collections::HashMap<Uuid, FidelityLimitKind>,
    /// Both sides are read over gRPC: every byte is read as stored, so metadata missing on the
    /// secondary is a difference unless the replicator recorded dropping it.
    exact: bool,
    progress: P,
    report: VerifyReport,
}

impl<P: FnMut(VerifyProgress)> Verifier<'_, P> {
    fn client(&self, side: Side) -> &Client {
        match side {
            Side::Primary => self.primary,
            Side::Secondary => self.secondary,
        }
    }

    async fn run(&mut self) -> Result<(), VerifyError> {
        let streams = self.primary_streams().await?;
        let total = streams.len() as u64;
        for stream in &streams {
            let difference = self.compare_stream(stream).await?;
            self.report.streams_compared += 1;
            (self.progress)(VerifyProgress::ComparingStreams {
                done: self.report.streams_compared,
                total,
                events: self.report.events_compared,
            });
            if let Some(difference) = difference {
                self.report.first_difference = Some(difference);
                return Ok(());
            }
        }
        if let Some(difference) = self.secondary_only_streams(&streams).await? {
            self.report.first_difference = Some(difference);
        }
        Ok(())
    }

    /// Reads `$all` forward from the start to its current end, titles only, and collects the
    /// distinct user streams that `keep` accepts. Progress is reported after each page.
    async fn scan_all(
        &mut self,
        side: Side,
        keep: impl Fn(&str) -> bool,
    ) -> Result<BTreeSet<String>, VerifyError> {
        let options = ReadOptions::embed(Embed::None);
        let mut streams = BTreeSet::new();
        let mut from = Position::START;
        let mut records = 0u64;
        loop {
            let client = self.client(side);
            let page_size = self.options.all_page_size;
            let page = with_retry(&self.options.retry, side, "read $all", || {
                client.read_all_forward(from, page_size, &options)
            })
            .await?;
            records += page.entries.len() as u64;
            for entry in &page.entries {
                if let Some(stream) = user_stream_of(entry.stream()) {
                    if !streams.contains(stream) && keep(stream) {
                        streams.insert(stream.to_owned());
                    }
                }
            }
            (self.progress)(match side {
                Side::Primary => VerifyProgress::ScanningPrimary {
                    records,
                    streams: streams.len() as u64,
                },
                Side::Secondary => VerifyProgress::ScanningSecondary {
                    records,
                    streams: streams.len() as u64,
                },
            });
            match page.next {
                Some(next) if !page.is_end && next > from => from = next,
                _ => return Ok(streams),
            }
        }
    }

    /// The deduplicated names of the primary's replicated user streams.
    async fn primary_streams(&mut self) -> Result<BTreeSet<String>, VerifyError> {
        let filter = self.filter;
        self.scan_all(Side::Primary, |stream| filter.replicates(stream))
            .await
    }

    /// Scans the secondary's `$all` for user streams outside `known` and checks each.
    async fn secondary_only_streams(
        &mut self,
        known: &BTreeSet<String>,
    ) -> Result<Option<Difference>, VerifyError> {
        let candidates = self
            .scan_all(Side::Secondary, |stream| !known.contains(stream))
            .await?;
        for stream in &candidates {
            let difference = self.check_secondary_only(stream).await?;
            self.report.streams_compared += 1;
            if difference.is_some() {
                return Ok(difference);
            }
        }
        Ok(None)
    }

    /// A user stream seen in the secondary's `$all` but not among the primary's replicated
    /// streams: a difference when anything of it is visible on the secondary.
    async fn check_secondary_only(
        &mut self,
        stream: &str,
    ) -> Result<Option<Difference>, VerifyError> {
        if self.filter.replicates(stream) {
            // The primary may still know the stream (e.g. scavenged from its `$all`): compare.
            let difference = self.compare_stream(stream).await?;
            return Ok(difference.map(|d| match d.kind {
                DifferenceKind::State {
                    primary: StreamState::NotFound,
                    secondary,
                } => Difference::stream_level(stream, DifferenceKind::ExtraStream { secondary }),
                DifferenceKind::StreamMetadata { primary: None, .. } => Difference::stream_level(
                    stream,
                    DifferenceKind::ExtraStream {
                        secondary: StreamState::NotFound,
                    },
                ),
                _ => d,
            }));
        }
        // Not replicated: nothing of it may be visible on the secondary.
        let (state, _) =
            Cursor::open(self.secondary, Side::Secondary, stream, self.options).await?;
        let metadata = self.stream_metadata(Side::Secondary, stream).await?;
        if state != StreamState::NotFound || matches!(metadata, Lookup::Found(_)) {
            return Ok(Some(Difference::stream_level(
                stream,
                DifferenceKind::ExtraStream { secondary: state },
            )));
        }
        Ok(None)
    }

    async fn stream_metadata(
        &self,
        side: Side,
        stream: &str,
    ) -> Result<Lookup<Value>, VerifyError> {
        let client = self.client(side);
        let lookup = with_retry(&self.options.retry, side, "read stream metadata", || {
            client.read_stream_metadata(stream)
        })
        .await?;
        Ok(lookup.map(esdb::StreamMetadata::into_json))
    }

    /// Compares one stream: state, events, current metadata.
    async fn compare_stream(&mut self, stream: &str) -> Result<Option<Difference>, VerifyError> {
        let (primary_state, mut primary) =
            Cursor::open(self.primary, Side::Primary, stream, self.options).await?;
        let (secondary_state, mut secondary) =
            Cursor::open(self.secondary, Side::Secondary, stream, self.options).await?;
        if primary_state != secondary_state {
            return Ok(Some(Difference::stream_level(
                stream,
                DifferenceKind::State {
                    primary: primary_state,
                    secondary: secondary_state,
                },
            )));
        }
        let mut p = primary.next(self.options).await?;
        let mut s = secondary.next(self.options).await?;
        loop {
            let (pe, se) = match (&p, &s) {
                (None, None) => break,
                (Some(pe), None) => {
                    self.report.events_compared += 1;
                    return Ok(Some(Difference {
                        stream: stream.to_owned(),
                        kind: DifferenceKind::MissingOnSecondary,
                        primary: Some(EventIdentity::of(pe)),
                        secondary: None,
                    }));
                }
                (None, Some(se)) => {
                    self.report.events_compared += 1;
                    return Ok(Some(Difference {
                        stream: stream.to_owned(),
                        kind: DifferenceKind::ExtraOnSecondary,
                        primary: None,
                        secondary: Some(EventIdentity::of(se)),
                    }));
                }
                (Some(pe), Some(se)) => (pe, se),
            };
            self.report.events_compared += 1;
            let expected = self.offsets.to_secondary(stream, pe.revision());
            let pair = || (Some(EventIdentity::of(pe)), Some(EventIdentity::of(se)));
            match expected.map(|n| n.cmp(&se.revision())) {
                // Before the stream's offset (never replicated), or the secondary skipped it.
                None | Some(std::cmp::Ordering::Less) => {
                    let (primary, secondary) = pair();
                    return Ok(Some(Difference {
                        stream: stream.to_owned(),
                        kind: DifferenceKind::MissingOnSecondary,
                        primary,
                        secondary,
                    }));
                }
                Some(std::cmp::Ordering::Greater) => {
                    let (primary, secondary) = pair();
                    return Ok(Some(Difference {
                        stream: stream.to_owned(),
                        kind: DifferenceKind::ExtraOnSecondary,
                        primary,
                        secondary,
                    }));
                }
                Some(std::cmp::Ordering::Equal) => {}
            }
            if let Some(difference) = self.compare_events(stream, pe, se).await? {
                return Ok(Some(difference));
            }
            p = primary.next(self.options).await?;
            s = secondary.next(self.options).await?;
        }
        self.compare_stream_metadata(stream).await
    }

    /// The current metadata documents, `$tb` of the primary's translated for an offset stream.
    async fn compare_stream_metadata(
        &mut self,
        stream: &str,
    ) -> Result<Option<Difference>, VerifyError> {
        let primary = self.stream_metadata(Side::Primary, stream).await?;
        let secondary = self.stream_metadata(Side::Secondary, stream).await?;
        let primary = primary.map(|doc| self.translate(stream, doc));
        if primary == secondary {
            return Ok(None);
        }
        Ok(Some(Difference::stream_level(
            stream,
            DifferenceKind::StreamMetadata {
                primary: primary.found(),
                secondary: secondary.found(),
            },
        )))
    }

    /// Applies [`StreamOffsets::translate_metadata`] (the replicator's own rule) to a document.
    fn translate(&self, stream: &str, doc: Value) -> Value {
        if self.offsets.get(stream).is_none() {
            return doc;
        }
        let Ok(bytes) = serde_json::to_vec(&doc) else {
            return doc;
        };
        let translated = self.offsets.translate_metadata(stream, &Bytes::from(bytes));
        serde_json::from_slice(&translated).unwrap_or(doc)
    }

    /// The stored data of an entry: the feed's `data` for JSON events (stored bytes as UTF-8,
    /// unchanged at `embed=body`, contract §3.7), else the raw single-event read, the only lossless
    /// way for non-JSON data. Feed text with U+FFFD may be a lossy decoding and is re-read raw.
    async fn data_of(&self, side: Side, stream: &str, entry: &Entry) -> Result<Bytes, VerifyError> {
        if let Entry::Event(event) = entry {
            if let (true, Some(data)) = (event.is_json, &event.data) {
                let lossy = data
                    .windows(REPLACEMENT_CHARACTER.len())
                    .any(|w| w == REPLACEMENT_CHARACTER);
                if !lossy {
                    return Ok(data.clone());
                }
            }
        }
        let client = self.client(side);
        let revision = entry.revision();
        let raw = with_retry(&self.options.retry, side, "read event data", || {
            client.read_record_raw(stream, revision)
        })
        .await?;
        raw.found().ok_or_else(|| VerifyError::Changed {
            side,
            stream: stream.to_owned(),
            revision,
        })
    }

    /// Compares two events at corresponding numbers.
    async fn compare_events(
        &mut self,
        stream: &str,
        pe: &Entry,
        se: &Entry,
    ) -> Result<Option<Difference>, VerifyError> {
        let primary = EventIdentity::of(pe);
        let secondary = EventIdentity::of(se);
        let difference = |kind| {
            Some(Difference {
                stream: stream.to_owned(),
                kind,
                primary: Some(primary.clone()),
                secondary: Some(secondary.clone()),
            })
        };
        if primary.event_id != secondary.event_id {
            return Ok(difference(DifferenceKind::EventId));
        }
        if primary.event_type != secondary.event_type {
            return Ok(difference(DifferenceKind::EventType));
        }
        let mut json_used = false;
        let primary_data = self.data_of(Side::Primary, stream, pe).await?;
        let secondary_data = self.data_of(Side::Secondary, stream, se).await?;
        match compare_payload(&primary_data, &secondary_data) {
            PayloadMatch::Bytes => {}
            PayloadMatch::Json => json_used = true,
            PayloadMatch::Differ(d) => {
                if self.loss_of(&primary) == Some(FidelityLimitKind::DataFromFeedText) {
                    self.record_fidelity_limit(
                        stream,
                        primary.clone(),
                        FidelityLimitKind::DataFromFeedText,
                    );
                } else {
                    return Ok(difference(DifferenceKind::Data(d)));
                }
            }
        }
        // Metadata has no raw endpoint: the feed's text is all there is (contract §3.7). A summary
        // entry (no rich fields) carries none; it then compares as empty on that side.
        let metadata_of = |entry: &Entry| match entry {
            Entry::Event(event) => event.metadata.clone().unwrap_or_default(),
            Entry::Summary(_) => Bytes::new(),
        };
        let (primary_meta, secondary_meta) = (metadata_of(pe), metadata_of(se));
        match compare_payload(&primary_meta, &secondary_meta) {
            PayloadMatch::Bytes => {}
            PayloadMatch::Json => json_used = true,
            PayloadMatch::Differ(d) => {
                let dropped = (!self.exact && !batch_can_carry(pe, &primary_data, &primary_meta))
                    || self.loss_of(&primary) == Some(FidelityLimitKind::MetadataDropped);
                if secondary_meta.is_empty() && dropped {
                    self.record_fidelity_limit(
                        stream,
                        primary.clone(),
                        FidelityLimitKind::MetadataDropped,
                    );
                } else {
                    return Ok(difference(DifferenceKind::Metadata(d)));
                }
            }
        }
        if json_used {
            self.report.json_equivalent_events += 1;
        }
        Ok(None)
    }

    /// The loss the replicator recorded for this event, if any.
    fn loss_of(&self, event: &EventIdentity) -> Option<FidelityLimitKind> {
        event.event_id.and_then(|id| self.losses.get(&id).copied())
    }

    fn record_fidelity_limit(
        &mut self,
        stream: &str,
        event: EventIdentity,
        kind: FidelityLimitKind,
    ) {
        self.report.fidelity_limit_events += 1;
        if self.report.fidelity_limits.len() < MAX_LISTED_FIDELITY_LIMITS {
            self.report.fidelity_limits.push(FidelityLimit {
                stream: stream.to_owned(),
                event,
                kind,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_streams_of_records() {
        assert_eq!(user_stream_of("order-1"), Some("order-1"));
        assert_eq!(user_stream_of("$$order-1"), Some("order-1"));
        assert_eq!(user_stream_of("$$$settings"), None);
        assert_eq!(user_stream_of("$settings"), None);
        assert_eq!(user_stream_of("$ce-order"), None);
        assert_eq!(user_stream_of("$$"), None);
        assert_eq!(user_stream_of(""), None);
    }

    #[test]
    fn payloads_compare_bytes_then_json() {
        assert!(matches!(compare_payload(b"", b""), PayloadMatch::Bytes));
        assert!(matches!(
            compare_payload(
                br#"{"a":1,"b":[1,2]}"#,
                b"{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2\n  ]\n}"
            ),
            PayloadMatch::Json
        ));
        // Key order does not matter for JSON values.
        assert!(matches!(
            compare_payload(br#"{"a":1,"b":2}"#, br#"{"b":2,"a":1}"#),
            PayloadMatch::Json
        ));
        match compare_payload(br#"{"a":1}"#, br#"{"a":2}"#) {
            PayloadMatch::Differ(d) => {
                assert!(d.both_json);
                assert_eq!(d.first_differing_byte, 5);
            }
            _ => panic!("JSON values differ"),
        }
        match compare_payload(&[0, 1, 2], &[0, 1]) {
            PayloadMatch::Differ(d) => {
                assert!(!d.both_json);
                assert_eq!((d.primary_bytes, d.secondary_bytes), (3, 2));
                assert_eq!(d.first_differing_byte, 2);
            }
            _ => panic!("bytes differ"),
        }
        // Invalid JSON is compared as bytes only.
        assert!(matches!(
            compare_payload(b"{a : 1}", b"{a: 1}"),
            PayloadMatch::Differ(PayloadDifference {
                both_json: false,
                ..
            })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_a_bounded_number_of_times() {
        let mut calls = 0u32;
        let policy = RetryPolicy::default();
        let result: Result<(), _> = with_retry(&policy, Side::Secondary, "test", || {
            calls += 1;
            async {
                Err(esdb::Error::Timeout {
                    method: reqwest::Method::GET,
                    url: "http://secondary:2113/streams/x".into(),
                    timeout: Duration::from_secs(1),
                })
            }
        })
        .await;
        assert_eq!(calls, 5);
        let err = result.unwrap_err();
        assert!(err.is_unreachable() && err.is_transient());
        assert_eq!(err.side(), Side::Secondary);
        assert!(err.to_string().contains("secondary cluster is unreachable"));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let mut calls = 0u32;
        let result: Result<(), _> =
            with_retry(&RetryPolicy::default(), Side::Primary, "test", || {
                calls += 1;
                async {
                    Err(esdb::Error::Unauthorized {
                        method: reqwest::Method::GET,
                        url: "http://primary:2113/streams/%24all".into(),
                        user: Some("ops".into()),
                        reason: None,
                    })
                }
            })
            .await;
        assert_eq!(calls, 1);
        let err = result.unwrap_err();
        assert!(matches!(
            err,
            VerifyError::Read {
                side: Side::Primary,
                ..
            }
        ));
        assert!(!err.is_transient() && !err.is_unreachable());
    }

    #[test]
    fn report_serialises_and_displays() {
        let report = VerifyReport {
            equal: false,
            streams_compared: 2,
            events_compared: 7,
            json_equivalent_events: 1,
            fidelity_limit_events: 0,
            fidelity_limits: vec![],
            first_difference: Some(Difference {
                stream: "order-1".into(),
                kind: DifferenceKind::MissingOnSecondary,
                primary: Some(EventIdentity {
                    number: StreamRevision::new(4).unwrap(),
                    event_id: Some(Uuid::from_u128(1)),
                    event_type: Some("OrderShipped".into()),
                }),
                secondary: None,
            }),
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["first_difference"]["kind"], "missing_on_secondary");
        assert_eq!(json["first_difference"]["stream"], "order-1");
        assert_eq!(json["first_difference"]["primary"]["number"], 4);
        let text = report.to_string();
        assert!(text.starts_with("DIFFERENT: stream \"order-1\""), "{text}");
        assert!(text.contains("event 4 (id 00000000-0000-0000-0000-000000000001"));

        let state = Difference::stream_level(
            "s",
            DifferenceKind::State {
                primary: StreamState::NotFound,
                secondary: StreamState::Exists,
            },
        );
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["kind"], "state");
        assert_eq!(json["primary_state"], "not_found");
        assert_eq!(json["secondary_state"], "exists");
        assert_eq!(json["primary"], Value::Null);
    }
}
