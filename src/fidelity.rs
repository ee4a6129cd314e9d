//! Events the HTTP API could not copy exactly, recorded on the secondary.
//!
//! Some events cannot travel through the Event Store HTTP API unchanged (`docs/replication.md`,
//! "Fidelity limits"): binary data with metadata loses its metadata; the non-UTF-8 data of an event
//! that was hidden on the primary when it was read can only be taken from the feed's text. The
//! writer records each such event in [`FIDELITY_STREAM`] *before* appending it, so `verify` can tell
//! a known limit from a divergence, and an operator can list them.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::esdb::{self, Client, Embed, EventData, Lookup, PageSize, ReadOptions};
use crate::position::{ExpectedVersion, StreamRevision};

/// The secondary stream listing lossy copies.
pub const FIDELITY_STREAM: &str = "$standby-fidelity";
/// Event type of a [`LossRecord`].
pub const LOSS_EVENT_TYPE: &str = "standby-lossy-copy";

/// What was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// The data needed a single-event form, which cannot carry metadata: metadata not copied.
    MetadataDropped,
    /// The event was hidden on the primary when read, so its data came from the `$all` feed as
    /// text; bytes that are not UTF-8 became U+FFFD.
    DataFromFeedText,
}

impl fmt::Display for LossKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LossKind::MetadataDropped => {
                "metadata not copied (binary data cannot travel with metadata)"
            }
            LossKind::DataFromFeedText => {
                "data copied from the feed's text (non-UTF-8 bytes of an event hidden when read)"
            }
        })
    }
}

/// One lossy copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossRecord {
    pub stream: String,
    /// The event's number as it was being written (informational: `event_id` is the key).
    pub revision: u64,
    pub event_id: Uuid,
    pub kind: LossKind,
}

/// The events that record `records` in [`FIDELITY_STREAM`], each with a fresh id. Build them
/// once and send the same events on every attempt ([`append`]): a retry after a lost answer is
/// then answered "already written" while the server still caches the ids (§5.5).
pub fn events(records: &[LossRecord]) -> Vec<EventData> {
    records
        .iter()
        .map(|r| {
            EventData::json(
                Uuid::new_v4(),
                LOSS_EVENT_TYPE,
                serde_json::to_vec(r).expect("serialisable"),
            )
        })
        .collect()
}

/// Appends loss records built by [`events`]. Readers treat the stream as a set.
///
/// Expected version `Any`: the stream is standby's own notebook, not a mirrored one, so a
/// repeat cannot change what applications see; a replay after a crash (new ids) adds duplicate
/// lines to a set. Ids derived from the source events would not do: a replayed batch that
/// overlaps an earlier one only in part is refused as "corrupted idempotency" (§5.5).
///
/// # Errors
/// Client errors.
pub async fn append(client: &Client, events: &[EventData]) -> Result<(), esdb::Error> {
    if events.is_empty() {
        return Ok(());
    }
    client
        .append_events(FIDELITY_STREAM, events, ExpectedVersion::Any)
        .await
        .map(|_| ())
}

/// Every recorded lossy copy, by event id.
///
/// # Errors
/// Client errors; a record that does not parse is skipped with a warning.
pub async fn load(client: &Client) -> Result<HashMap<Uuid, LossKind>, esdb::Error> {
    let mut out = HashMap::new();
    let mut from = StreamRevision::START;
    let options = ReadOptions::embed(Embed::Body);
    loop {
        let page = match client
            .read_stream_forward(
                FIDELITY_STREAM,
                from,
                PageSize::new(500).expect("valid"),
                &options,
            )
            .await?
        {
            Lookup::Found(page) => page,
            Lookup::NotFound | Lookup::Deleted => return Ok(out),
        };
        for event in page.entries.iter().filter_map(|e| e.as_event()) {
            match serde_json::from_slice::<LossRecord>(event.data.as_deref().unwrap_or_default()) {
                Ok(r) => {
                    out.insert(r.event_id, r.kind);
                }
                Err(e) => {
                    tracing::warn!(revision = %event.revision, error = %e, "skipping an unreadable {FIDELITY_STREAM} record")
                }
            }
            from = event.revision.next().unwrap_or(event.revision);
        }
        if page.is_end || page.entries.is_empty() {
            return Ok(out);
        }
    }
}
