//! Streams whose first surviving event on the primary is not event 0.
//!
//! A stream truncated by `$tb`/`$maxCount`/`$maxAge` and scavenged, or soft-deleted and recreated
//! and then scavenged, starts in `$all` at some event number `n > 0`. The HTTP API cannot create a
//! stream whose first event is `n` (an append to a missing stream always writes event 0), so exact
//! mirroring of numbers is impossible for such a stream. The rule, decided once per stream and
//! persisted before it is used:
//!
//! * the stream gets an *offset* `n`: source event `k` is secondary event `k − n`, appended with
//!   expected version `k − n − 1`, so strong idempotency (contract §5.5) still holds on replay;
//! * `$tb` in the stream's replicated metadata is translated the same way (`$maxCount` counts
//!   events and needs no translation); a soft delete (`$tb` = Int64.MaxValue) stays as it is;
//! * the offset is recorded in the secondary's `$standby-offsets` stream *before* the first append
//!   that depends on it, so a restart, a lost local checkpoint or `verify` all see the same rule.
//!
//! The rule applies only when the secondary does not have the stream at all; any other mismatch is
//! divergence and halts replication.
//!
//! Metastreams need the same rule: the server keeps only the last record of `$$x` (its
//! `$maxCount` is 1), so after a scavenge the first `$$x` record in `$all` is not number 0. Its
//! offset is recorded under the key `$$x` ([`metastream_key`]), and metadata records are written at
//! their metastream number less it.

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::esdb::{self, Client, Embed, EventData, Lookup, PageSize, ReadOptions};
use crate::position::{ExpectedVersion, StreamRevision};

/// The secondary stream that records offsets. A system stream: applications do not see it, and
/// the replication user needs write access to it (granted at setup).
pub const OFFSETS_STREAM: &str = "$standby-offsets";
/// Event type of an offset record.
pub const OFFSET_EVENT_TYPE: &str = "standby-stream-offset";

/// One persisted offset record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetRecord {
    pub stream: String,
    /// What to subtract from a source number to get the secondary's: for a stream, the source
    /// number of its first replicated event; for a metastream it can be negative, once standby
    /// has inserted a record of its own (see [`StreamOffsets::prepare`]).
    pub offset: i64,
}

/// The offsets known on the secondary.
#[derive(Debug, Clone, Default)]
pub struct StreamOffsets {
    map: HashMap<String, i64>,
    /// Expected version of the next record appended to [`OFFSETS_STREAM`].
    next_expected: Option<StreamRevision>,
}

impl StreamOffsets {
    /// Reads every record of [`OFFSETS_STREAM`] from the secondary. A missing stream is an empty
    /// set.
    ///
    /// # Errors
    /// Transport or permission errors from the client; a record that does not parse is
    /// [`esdb::Error::Decode`]-like and permanent.
    pub async fn load(client: &Client) -> Result<StreamOffsets, esdb::Error> {
        let mut offsets = StreamOffsets::default();
        let mut from = StreamRevision::START;
        let options = ReadOptions::embed(Embed::Body);
        loop {
            let page = match client
                .read_stream_forward(
                    OFFSETS_STREAM,
                    from,
                    PageSize::new(500).expect("valid"),
                    &options,
                )
                .await?
            {
                Lookup::Found(page) => page,
                Lookup::NotFound | Lookup::Deleted => return Ok(offsets),
            };
            for entry in &page.entries {
                let Some(event) = entry.as_event() else {
                    continue;
                };
                let data = event.data.clone().unwrap_or_default();
                let record: OffsetRecord = serde_json::from_slice(&data).map_err(|e| {
                    esdb::Error::Decode {
                        method: reqwest::Method::GET,
                        url: format!("/streams/{OFFSETS_STREAM}/{}", event.revision),
                        detail: format!("not an offset record ({e}); the secondary's {OFFSETS_STREAM} stream was written by something else"),
                    }
                })?;
                offsets.map.insert(record.stream, record.offset);
                offsets.next_expected = Some(event.revision);
                from = event.revision.next().unwrap_or(event.revision);
            }
            if page.is_end || page.entries.is_empty() {
                return Ok(offsets);
            }
        }
    }

    /// The offset of `stream`, if one was recorded.
    pub fn get(&self, stream: &str) -> Option<StreamRevision> {
        self.map
            .get(stream)
            .and_then(|o| u64::try_from(*o).ok())
            .and_then(StreamRevision::new)
    }

    /// The signed offset recorded under `key` (a stream or a [`metastream_key`]), 0 if none.
    pub fn shift(&self, key: &str) -> i64 {
        self.map.get(key).copied().unwrap_or(0)
    }

    /// Number of streams with an offset.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The secondary event number of source event `source` of `stream`; `None` when `source` lies
    /// before the stream's offset (it was never replicated).
    pub fn to_secondary(&self, stream: &str, source: StreamRevision) -> Option<StreamRevision> {
        let shifted = i64::try_from(source.get())
            .ok()?
            .checked_sub(self.shift(stream))?;
        u64::try_from(shifted).ok().and_then(StreamRevision::new)
    }

    /// Translates a metadata document's `$tb` for an offset stream; other streams' metadata and
    /// a soft delete (`$tb` = Int64.MaxValue) are returned unchanged. Non-JSON metadata is
    /// returned unchanged.
    pub fn translate_metadata(&self, stream: &str, metadata: &Bytes) -> Bytes {
        let Some(offset) = self.get(stream) else {
            return metadata.clone();
        };
        let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_slice(metadata) else {
            return metadata.clone();
        };
        let Some(tb) = doc.get("$tb").and_then(|v| v.as_u64()) else {
            return metadata.clone();
        };
        if tb == StreamRevision::TOMBSTONE.get() {
            return metadata.clone();
        }
        doc.insert("$tb".into(), tb.saturating_sub(offset.get()).into());
        Bytes::from(serde_json::to_vec(&doc).expect("a JSON object serialises"))
    }

    /// The offset records for `entries` (key, offset), with their event ids and expected
    /// version chosen once: the caller appends them in one request (atomically, retrying the same
    /// request), then reports them with [`StreamOffsets::committed`]. Must complete before the
    /// first write that uses them.
    pub fn prepare(&self, entries: &[(String, i64)]) -> PendingOffset {
        let events = entries
            .iter()
            .map(|(key, offset)| {
                let record = OffsetRecord {
                    stream: key.clone(),
                    offset: *offset,
                };
                let data = serde_json::to_vec(&record).expect("serialisable");
                EventData::json(Uuid::new_v4(), OFFSET_EVENT_TYPE, data)
            })
            .collect();
        PendingOffset {
            entries: entries.to_vec(),
            events,
            // Exact: a concurrent writer (another replicator) is refused, and a retry of these
            // same records after a lost answer is answered "already written".
            expected: match self.next_expected {
                None => ExpectedVersion::NoStream,
                Some(last) => ExpectedVersion::Exact(last),
            },
        }
    }

    /// Remembers offset records the secondary acknowledged.
    pub fn committed(&mut self, pending: PendingOffset) {
        let appended = pending.events.len() as u64;
        let next = match pending.expected {
            ExpectedVersion::Exact(last) => last.get() + appended,
            _ => appended - 1,
        };
        self.next_expected = StreamRevision::new(next);
        self.map.extend(pending.entries);
    }

    /// Persists `offset` for `key` on the secondary, then remembers it (one attempt).
    ///
    /// # Errors
    /// Client errors. A concurrent writer (another replicator) shows as
    /// [`esdb::Error::WrongExpectedVersion`]: the caller must stop, as two replicators must
    /// never write the same secondary.
    pub async fn record(
        &mut self,
        client: &Client,
        key: &str,
        offset: StreamRevision,
    ) -> Result<(), esdb::Error> {
        if self.get(key) == Some(offset) {
            return Ok(());
        }
        let shift = i64::try_from(offset.get()).unwrap_or(i64::MAX);
        let pending = self.prepare(&[(key.to_string(), shift)]);
        client
            .append_events(OFFSETS_STREAM, &pending.events, pending.expected)
            .await?;
        self.committed(pending);
        Ok(())
    }
}

/// An offset record about to be appended (see [`StreamOffsets::prepare`]).
#[derive(Debug, Clone)]
pub struct PendingOffset {
    entries: Vec<(String, i64)>,
    pub events: Vec<EventData>,
    pub expected: ExpectedVersion,
}

/// The key under which the offset of `stream`'s metastream `$$stream` is recorded: user stream
/// names never start with `$`, so it cannot collide with a stream's own key.
pub fn metastream_key(stream: &str) -> String {
    format!("$${stream}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(n: u64) -> StreamRevision {
        StreamRevision::new(n).unwrap()
    }

    fn with(stream: &str, offset: u64) -> StreamOffsets {
        let mut o = StreamOffsets::default();
        o.map.insert(stream.into(), offset as i64);
        o
    }

    #[test]
    fn source_numbers_map_below_the_offset_to_nothing() {
        let o = with("s", 5);
        assert_eq!(o.to_secondary("s", revision(5)), Some(revision(0)));
        assert_eq!(o.to_secondary("s", revision(7)), Some(revision(2)));
        assert_eq!(o.to_secondary("s", revision(4)), None);
        assert_eq!(o.to_secondary("other", revision(4)), Some(revision(4)));
    }

    #[test]
    fn truncate_before_is_translated_but_soft_delete_is_not() {
        let o = with("s", 5);
        let tb = Bytes::from_static(br#"{"$tb":8,"custom":"x"}"#);
        let got: serde_json::Value =
            serde_json::from_slice(&o.translate_metadata("s", &tb)).unwrap();
        assert_eq!(got, serde_json::json!({"$tb": 3, "custom": "x"}));
        let deleted = Bytes::from_static(br#"{"$tb":9223372036854775807}"#);
        assert_eq!(o.translate_metadata("s", &deleted), deleted);
        assert_eq!(o.translate_metadata("t", &tb), tb);
        let text = Bytes::from_static(b"not json");
        assert_eq!(o.translate_metadata("s", &text), text);
    }
}
