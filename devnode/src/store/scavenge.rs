//! Scavenging: physically removing the records that reads no longer return (contract §3.3, §5.7).
//!
//! Follows the scavenger 5.0.12 runs (the "new" scavenge: `newScavenge = true` in
//! `ClusterVNode.cs@oss-v5.0.12`, also the one of 22.10+): `TransactionLog/Scavenging/Stages/
//! {Accumulator,Calculator,StreamCalculator,EventCalculator,ChunkExecutor}.cs`. For every record
//! before the scavenge point:
//!
//! * a stream with metadata or a tombstone loses the events at the start of the stream that are
//!   tombstoned, below `$tb`, outside the last `$maxCount` or older than `$maxAge` (measured from
//!   the scavenge point's time), scanning forward and stopping at the first event to keep. The
//!   stream's **last event is always kept**, even when truncated or expired, so its last event
//!   number (expected versions, `ES-CurrentVersion`) survives; a soft-deleted stream keeps exactly
//!   that event. Streams without metadata or tombstone keep everything;
//! * a hard-deleted stream keeps only its tombstone, and its metastream loses every record;
//! * any other metastream (`$$x`, fixed `$maxCount` 1) keeps only its last record; which metadata
//!   applies is decided by `StreamMetadata.TryFromJsonBytes` of that record, whatever its flags;
//! * records keep their logical positions (the chunk's position map); what remains in `$all`
//!   reads exactly as before, minus the removed records (`TFChunkReadSide.TFChunkReadSideScavenged`).
//!
//! Bookkeeping written to the log like `TFChunkScavengerLog`: metadata of `$scavenges-<id>`
//! (`$maxAge` 30 days, read `$ops`), `$scavengeStarted` and its `$>` link in `$scavenges`, then
//! (new scavenger only) the `$scavengePoint` in `$scavengePoints`, and at the end
//! `$scavengeCompleted` and its link.
//!
//! Simplifications: the whole log counts as completed chunks (a real node never scavenges its
//! open chunk, and completes the chunk holding a new scavenge point, so its next write jumps to the
//! next 256 MiB boundary; here positions go on contiguously); no chunk weights (`threshold` only
//! lands in the scavenge point), no `$scavengeChunksCompleted`/`Merge`/`Index` events;
//! `spaceSaved` is the size of the removed frames, which are zero-filled in place rather than
//! dropped from the file. Without a scavenge point (the 20.x/21.x `TFChunkScavenger` profiles) the
//! same rules are applied to everything written before the request, from `startFromChunk`
//! × 256 MiB on; that scavenger's extra rule for `$tmp` streams is not implemented.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use uuid::Uuid;

use super::acl::{self, StreamMetadata};
use super::log::{self, NewRecord, FLAG_JSON, FLAG_SCAVENGED};
use super::{
    now_ticks, State, Store, StoreError, DELETED_STREAM, LINK_EVENT_TYPE, METADATA_EVENT_TYPE,
};

/// `SystemStreams.ScavengesStream`.
pub const SCAVENGES_STREAM: &str = "$scavenges";
/// `SystemStreams.ScavengePointsStream`.
pub const SCAVENGE_POINTS_STREAM: &str = "$scavengePoints";
/// `TFConsts.ChunkSize` (256 MiB), the unit of `startFromChunk`.
pub const CHUNK_SIZE: u64 = 256 * 1024 * 1024;
/// `Opts.ScavengeHistoryMaxAgeDefault`: 30 days.
const SCAVENGE_HISTORY_MAX_AGE_SECS: i64 = 30 * 24 * 3600;
const TICKS_PER_SECOND: i64 = 10_000_000;

/// How a scavenge runs (the query parameters of `POST /admin/scavenge` and the server generation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScavengeOptions {
    /// Write a `$scavengePoint` and scavenge everything before it (the new scavenger of 5.0.12 and
    /// 22.10+). Without it (20.x/21.x) everything written before the request is scavenged.
    pub scavenge_point: bool,
    /// `threshold`, recorded in the scavenge point's payload only (the dev node has no chunk weights).
    pub threshold: i32,
    /// `startFromChunk` of the old scavenger; ignored with a scavenge point, as on the server.
    pub start_from_chunk: u64,
    /// `syncOnly=true` with a scavenge point: only finish an existing, unfinished scavenge point.
    /// A dev node never has one, so nothing is removed (the start/completed events are written).
    pub sync_only: bool,
    /// `nodeEndpoint` of the `$scavenges-<id>` events (the node's HTTP endpoint).
    pub node_endpoint: String,
}

impl Default for ScavengeOptions {
    fn default() -> Self {
        ScavengeOptions {
            scavenge_point: true,
            threshold: 0,
            start_from_chunk: 0,
            sync_only: false,
            node_endpoint: "127.0.0.1:2113".to_owned(),
        }
    }
}

/// What a scavenge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScavengeOutcome {
    /// The `scavengeId` the HTTP API answers with (`$scavenges-<id>`).
    pub scavenge_id: Uuid,
    /// Position of the `$scavengePoint` record, when one was written.
    pub scavenge_point: Option<u64>,
    /// Records removed by this scavenge.
    pub removed: usize,
    /// Their total frame size in bytes.
    pub removed_bytes: u64,
}

impl Store {
    /// Scavenges synchronously (see the [module docs](self)); the same as `POST /admin/scavenge`.
    /// Long polls are woken by the bookkeeping events.
    pub fn scavenge(&self, opts: &ScavengeOptions) -> Result<ScavengeOutcome, StoreError> {
        let started = Instant::now();
        let mut st = self.write();
        if matches!(st.file, Some(super::Backend::Chunks(_))) {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "scavenging is not implemented for the chunk layout",
            )));
        }
        let id = Uuid::new_v4();
        let log_stream = format!("{SCAVENGES_STREAM}-{id}");
        let before = st.end;
        let now = now_ticks();

        // `TFChunkScavengerLog.ScavengeStarted`.
        let meta = json!({
            "$maxAge": SCAVENGE_HISTORY_MAX_AGE_SECS,
            "$acl": { "$r": "$ops", "$w": [], "$d": [], "$mr": [], "$mw": [] }
        });
        let mut batch = Vec::new();
        batch.extend(st.system_event(
            &acl::metastream_of(&log_stream),
            METADATA_EVENT_TYPE,
            FLAG_JSON,
            serde_json::to_vec(&meta).unwrap_or_default(),
            now,
        ));
        let started_event =
            pretty(&json!({ "scavengeId": id.to_string(), "nodeEndpoint": opts.node_endpoint }));
        batch.extend(st.system_event(
            &log_stream,
            "$scavengeStarted",
            FLAG_JSON,
            started_event,
            now,
        ));
        batch.extend(st.system_event(
            SCAVENGES_STREAM,
            LINK_EVENT_TYPE,
            0,
            format!("0@{log_stream}").into_bytes(),
            now,
        ));
        st.commit(batch)?;

        // `Scavenger.StartNewAsync` / `ScavengePointSource.AddScavengePointAsync`.
        let mut point = None;
        let run = !(opts.scavenge_point && opts.sync_only);
        if opts.scavenge_point && run {
            // `ScavengePointPayload`, Json.NET with `DefaultValueHandling.Ignore`: 0 is left out.
            let payload = if opts.threshold == 0 {
                json!({})
            } else {
                json!({ "threshold": opts.threshold })
            };
            let at = st.end;
            let rec = st.system_event(
                SCAVENGE_POINTS_STREAM,
                "$scavengePoint",
                FLAG_JSON,
                pretty(&payload),
                now,
            );
            if let Some(rec) = rec {
                st.commit(vec![rec])?;
                point = Some(at);
            }
        }

        let (mut removed, mut removed_bytes) = (0, 0);
        if run {
            let (upto, from) = match point {
                Some(p) => (p, 0),
                None => (before, opts.start_from_chunk.saturating_mul(CHUNK_SIZE)),
            };
            let plan = st.plan_scavenge(upto, from, now);
            (removed, removed_bytes) = st.execute_scavenge(&plan)?;
        }

        // `TFChunkScavengerLog.ScavengeCompleted`: a dictionary, so nulls and zeros are written.
        let done = now_ticks();
        let completed = pretty(&json!({
            "scavengeId": id.to_string(),
            "nodeEndpoint": opts.node_endpoint,
            "result": "Success",
            "error": Value::Null,
            "timeTaken": timespan(started.elapsed()),
            "spaceSaved": removed_bytes,
        }));
        if let Some(rec) = st.system_event(
            &log_stream,
            "$scavengeCompleted",
            FLAG_JSON,
            completed,
            done,
        ) {
            let number = rec.number;
            st.commit(vec![rec])?;
            if let Some(link) = st.system_event(
                SCAVENGES_STREAM,
                LINK_EVENT_TYPE,
                0,
                format!("{number}@{log_stream}").into_bytes(),
                done,
            ) {
                st.commit(vec![link])?;
            }
        }
        let end = st.end;
        drop(st);
        self.changes.send_replace(end);
        tracing::info!(scavenge_id = %id, removed, removed_bytes, "scavenge completed");
        Ok(ScavengeOutcome {
            scavenge_id: id,
            scavenge_point: point,
            removed,
            removed_bytes,
        })
    }
}

impl State {
    /// An event the node writes itself (system account, expected version Any); `None` if the
    /// stream is hard-deleted, where the server's write fails.
    fn system_event(
        &mut self,
        stream: &str,
        event_type: &str,
        flags: u8,
        data: Vec<u8>,
        now: i64,
    ) -> Option<NewRecord> {
        let last = self.last_event_number(stream);
        if last == DELETED_STREAM {
            return None;
        }
        Some(NewRecord {
            stream: self.intern_stream(stream),
            number: last + 1,
            event_id: Uuid::new_v4(),
            event_type: self.intern_type(event_type),
            flags,
            timestamp: now,
            data: Bytes::from(data),
            metadata: Bytes::new(),
        })
    }

    /// Record indices to remove: records in `[from, point)` that the rules of the module docs
    /// discard. `now` is the scavenge point's time (`ScavengePoint.EffectiveNow`).
    fn plan_scavenge(&self, point: u64, from: u64, now: i64) -> Vec<u32> {
        let mut out = Vec::new();
        let candidate = |idx: u32| {
            let r = &self.records[idx as usize];
            !r.is_removed() && r.pos >= from && r.pos < point
        };
        // Events of a stream before the point: positions grow with event numbers.
        let before_point =
            |events: &[u32]| events.partition_point(|&i| self.records[i as usize].pos < point);
        let tombstoned = |stream: &str| {
            self.streams
                .get(stream)
                .and_then(|e| e.tombstone)
                .is_some_and(|t| self.records[t as usize].pos < point)
        };
        for (name, entry) in &self.streams {
            let upto = before_point(&entry.events);
            if acl::is_metastream(name) {
                // `ChunkExecutor`: a tombstoned original takes the whole metastream with it;
                // otherwise the metastream's discard point is its last record (`Accumulator`).
                let keep_from = if tombstoned(acl::original_of_metastream(name)) {
                    upto
                } else {
                    upto.saturating_sub(1)
                };
                out.extend(
                    entry.events[..keep_from]
                        .iter()
                        .copied()
                        .filter(|&i| candidate(i)),
                );
                continue;
            }
            let tomb = tombstoned(name);
            let meta = self
                .streams
                .get(acl::metastream_of(name).as_str())
                .and_then(|m| {
                    let n = before_point(&m.events);
                    let rec = &self.records[*m.events[..n].last()? as usize];
                    // `ChunkReaderForAccumulator`: `StreamMetadata.TryFromJsonBytes(data)`, flags unchecked.
                    Some(if rec.is_removed() {
                        StreamMetadata::default()
                    } else {
                        StreamMetadata::parse(true, &rec.data)
                    })
                });
            if meta.is_none() && !tomb {
                continue;
            }
            let meta = meta.unwrap_or_default();
            // `StreamCalculator.LastEventNumber`: as of the scavenge point.
            let last = if tomb {
                DELETED_STREAM
            } else {
                upto as i64 - 1
            };
            for (n, &idx) in entry.events[..upto].iter().enumerate() {
                let rec = &self.records[idx as usize];
                if rec.is_removed() {
                    // Gone already: the index starts at the first survivor.
                    continue;
                }
                let n = n as i64;
                // `EventCalculator.DecideEvent`: the last event is always kept.
                if n >= last {
                    break;
                }
                let discard = tomb
                    || meta.truncate_before.is_some_and(|tb| n < tb)
                    || meta
                        .max_count
                        .is_some_and(|mc| n <= last.saturating_sub(mc))
                    || meta.max_age.is_some_and(|secs| {
                        secs >= 0
                            && rec.timestamp
                                < now.saturating_sub(secs.saturating_mul(TICKS_PER_SECOND))
                    });
                if !discard {
                    // `Calculator`: the first event to keep ends the discarded prefix.
                    break;
                }
                if candidate(idx) {
                    out.push(idx);
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Marks the planned records removed: rewrites each frame in place (same offset and length,
    /// zero-filled data, fresh checksum), syncs if `--fsync`, then drops their data in memory.
    /// Returns how many records and bytes were removed.
    fn execute_scavenge(&mut self, plan: &[u32]) -> Result<(usize, u64), StoreError> {
        let mut bytes = 0u64;
        let mut metastreams = Vec::new();
        for &idx in plan {
            let State { records, file, .. } = self;
            let rec = &mut records[idx as usize];
            if let Some(super::Backend::Log(f)) = file.as_mut() {
                let frame = log::encode_removed(
                    &rec.stream,
                    rec.number,
                    rec.event_id,
                    &rec.event_type,
                    rec.flags,
                    rec.timestamp,
                    rec.data.len(),
                    rec.metadata.len(),
                )?;
                if frame.len() != rec.len as usize {
                    return Err(StoreError::Io(std::io::Error::other(
                        "scavenged frame would change length",
                    )));
                }
                f.rewrite(rec.pos, &frame)?;
            }
            rec.flags |= FLAG_SCAVENGED;
            rec.data = Bytes::new();
            rec.metadata = Bytes::new();
            bytes += rec.len as u64;
            if acl::is_metastream(&rec.stream) {
                metastreams.push(rec.stream.clone());
            }
        }
        if let Some(super::Backend::Log(f)) = self.file.as_mut() {
            f.sync_if_configured()?;
        }
        // The metadata in force is what a restart would rebuild: the last surviving record.
        metastreams.sort_unstable();
        metastreams.dedup();
        for name in metastreams {
            let meta = self.streams.get(&name).and_then(|e| {
                let idx = e
                    .events
                    .iter()
                    .rev()
                    .find(|&&i| !self.records[i as usize].is_removed())?;
                let rec = &self.records[*idx as usize];
                Some(std::sync::Arc::new(StreamMetadata::parse(
                    rec.is_json(),
                    &rec.data,
                )))
            });
            if let Some(e) = self.streams.get_mut(&name) {
                e.meta = meta;
            }
        }
        Ok((plan.len(), bytes))
    }
}

/// Json.NET indented output (`Json.ToJsonBytes`): two spaces.
fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// .NET `TimeSpan.ToString()` ("c"): `[d.]hh:mm:ss[.fffffff]`.
fn timespan(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let ticks = d.subsec_nanos() / 100;
    let mut out = String::new();
    if days > 0 {
        out.push_str(&format!("{days}."));
    }
    out.push_str(&format!("{h:02}:{m:02}:{s:02}"));
    if ticks > 0 {
        out.push_str(&format!(".{ticks:07}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespan_format() {
        assert_eq!(timespan(Duration::from_millis(0)), "00:00:00");
        assert_eq!(
            timespan(Duration::from_nanos(1_234_567_800)),
            "00:00:01.2345678"
        );
        assert_eq!(timespan(Duration::from_secs(90_061)), "1.01:01:01");
    }
}
