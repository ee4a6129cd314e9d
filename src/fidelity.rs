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

/// Mixed into a source event's id to name the record of its lossy copy.
const LOSS_ID_SALT: u128 = 0x7374_616e_6462_792d_6c6f_7373_2d69_6400;

/// Appends `records` to [`FIDELITY_STREAM`]. Readers treat the stream as a set.
///
/// Expected version `Any`: the stream is standby's own notebook, not a mirrored one, so a repeat
/// cannot change what applications see. Each record's id is derived from the event it describes,
/// so a retry or replay while the server still caches the id is answered "already written"
/// (weak idempotency, §5.5); later ones add a duplicate line to a set.
///
/// # Errors
/// Client errors.
pub async fn record(client: &Client, records: &[LossRecord]) -> Result<(), esdb::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let events: Vec<EventData> = records
        .iter()
        .map(|r| {
            EventData::json(
                Uuid::from_u128(r.event_id.as_u128() ^ LOSS_ID_SALT ^ r.kind as u128),
                LOSS_EVENT_TYPE,
                serde_json::to_vec(r).expect("serialisable"),
            )
        })
        .collect();
    client
        .append_events(FIDELITY_STREAM, &events, ExpectedVersion::Any)
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
