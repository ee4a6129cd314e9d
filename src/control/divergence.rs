//! `standby divergence`: the old primary's orphaned tail, for manual reconciliation.
//!
//! From the position the promotion recorded as last applied (or, before any promotion, the
//! checkpoint), every event of a replicated user stream that the secondary does not hold is
//! written as one JSON line, in the old primary's `$all` order, with its exact data: JSON data as
//! JSON, other data as text when it is UTF-8, base64 otherwise. The file is written to a
//! temporary name and renamed when complete, so a partial export never looks finished.
//!
//! "Holds" is checked by event id, not by number: after a promotion, applications write to the
//! same streams, and their events take the numbers of the orphaned ones; those orphans are the
//! conflicting writes the operator must reconcile (`docs/failover.md`). Records are read as
//! stored: a link (`$>`) is exported as the link, since single-event reads resolve links by
//! default (contract §4.3). An event hidden on the old primary (deleted, truncated, scavenged)
//! cannot be read over HTTP: its line says `"data_encoding": "unavailable"` with `null` data,
//! so it is not mistaken for an event with empty data.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use super::promote::PromoteError;
use super::record;
use super::tail::{self, TailEvent};
use crate::checkpoint::CheckpointStore;
use crate::config::Config;
use crate::esdb::{Client, Embed, Entry, Lookup, PageSize, ReadOptions};
use crate::offsets::StreamOffsets;
use crate::position::Position;

/// One exported event.
#[derive(Debug, Serialize)]
struct Line<'a> {
    stream: &'a str,
    event_number: u64,
    event_id: Option<String>,
    event_type: Option<&'a str>,
    /// The old primary's timestamp.
    created: Option<&'a str>,
    /// `json`, `text` or `base64`: how `data` is written; `unavailable` (and `data` null) when
    /// the old primary no longer serves the event (hidden by a delete or truncation, or
    /// scavenged).
    data_encoding: &'static str,
    data: Value,
    metadata: Option<String>,
}

/// What was exported.
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    /// The position the export starts after.
    pub from: Position,
    /// Where it comes from: `promotion epoch N` or `checkpoint`.
    pub from_source: String,
    /// The old primary's head at the end of the export.
    pub head: Position,
    pub events: u64,
}

/// Exports the orphaned tail to `out` (JSON lines).
///
/// # Errors
/// [`PromoteError`]: usage, unreachable sides, IO.
pub async fn export(config: &Config, out: &Path) -> Result<Export, PromoteError> {
    let (primary, replicator) =
        crate::pipeline::clients(config).map_err(|e| PromoteError::Config(e.to_string()))?;
    let secondary = match config
        .secondary
        .admin_client_config()
        .map_err(|e| PromoteError::Config(e.to_string()))?
    {
        Some(c) => Client::connect(c).map_err(|e| PromoteError::Config(e.to_string()))?,
        None => replicator,
    };
    let control = record::read(&secondary)
        .await
        .map_err(|e| PromoteError::Unreachable(e.to_string()))?;
    let (from, from_source) = match control.as_ref().and_then(|c| c.promoted()) {
        Some(p) => (
            p.last_applied.unwrap_or(Position::START),
            format!("promotion epoch {}", p.epoch),
        ),
        None => (
            CheckpointStore::read(&config.checkpoint.path)
                .map_err(|e| PromoteError::Refused(e.to_string()))?
                .map_or(Position::START, |c| c.position),
            "checkpoint (the secondary is not promoted)".to_owned(),
        ),
    };
    let offsets = StreamOffsets::load(&secondary)
        .await
        .map_err(|e| PromoteError::Unreachable(format!("secondary: {e}")))?;
    let tail = tail::analyse(
        &primary,
        &secondary,
        &config.replication,
        &offsets,
        from,
        true,
    )
    .await
    .map_err(|e| PromoteError::Unreachable(e.to_string()))?;
    if tail.truncated {
        return Err(PromoteError::Refused(format!(
            "the tail holds more than {} events; export it in parts (not supported yet) or check that the configuration points at the right clusters",
            tail::MAX_TAIL_EVENTS
        )));
    }

    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| PromoteError::Config(format!("cannot write in {}: {e}", dir.display())))?;
    for event in &tail.diverged {
        let line = line(&primary, event).await?;
        serde_json::to_writer(&mut file, &line)
            .map_err(|e| PromoteError::Internal(format!("writing {}: {e}", out.display())))?;
        file.write_all(b"\n")
            .map_err(|e| PromoteError::Internal(format!("writing {}: {e}", out.display())))?;
    }
    file.as_file()
        .sync_all()
        .map_err(|e| PromoteError::Internal(format!("writing {}: {e}", out.display())))?;
    file.persist(out)
        .map_err(|e| PromoteError::Internal(format!("renaming to {}: {e}", out.display())))?;
    Ok(Export {
        from,
        from_source,
        head: tail.head,
        events: tail.diverged.len() as u64,
    })
}

async fn line<'a>(primary: &Client, event: &'a TailEvent) -> Result<Line<'a>, PromoteError> {
    let unreachable = |e: crate::esdb::Error| PromoteError::Unreachable(format!("primary: {e}"));
    // Both reads leave links unresolved: the export is of the record, not of what it points at.
    let data = match primary
        .read_record_raw(&event.stream, event.revision)
        .await
        .map_err(unreachable)?
    {
        Lookup::Found(bytes) => Some(bytes),
        Lookup::NotFound | Lookup::Deleted => None,
    };
    let options = ReadOptions {
        resolve_link_tos: Some(false),
        ..ReadOptions::embed(Embed::Body)
    };
    let one = PageSize::new(1).expect("1 is a valid page size");
    let metadata = match primary
        .read_stream_forward(&event.stream, event.revision, one, &options)
        .await
        .map_err(unreachable)?
    {
        Lookup::Found(page) => page
            .entries
            .iter()
            .filter_map(Entry::as_event)
            .find(|e| e.revision == event.revision)
            .and_then(|e| e.metadata.clone())
            .map(|m| String::from_utf8_lossy(&m).into_owned()),
        Lookup::NotFound | Lookup::Deleted => None,
    };
    let (data_encoding, data) = match data {
        None => ("unavailable", Value::Null),
        Some(data) => match serde_json::from_slice::<Value>(&data) {
            Ok(v) if !data.is_empty() => ("json", v),
            _ => match std::str::from_utf8(&data) {
                Ok(text) => ("text", Value::String(text.to_owned())),
                Err(_) => (
                    "base64",
                    Value::String(base64::engine::general_purpose::STANDARD.encode(&data)),
                ),
            },
        },
    };
    Ok(Line {
        stream: &event.stream,
        event_number: event.revision.get(),
        event_id: event.event_id.map(|i| i.to_string()),
        event_type: event.event_type.as_deref(),
        created: event.updated.as_deref(),
        data_encoding,
        data,
        metadata,
    })
}
