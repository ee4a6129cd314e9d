//! The primary's tail after the last applied position, checked against the secondary: what a
//! promotion would lose (`promote`), what is still to drain (`switchover`), and the orphaned
//! events to reconcile (`divergence`).
//!
//! The primary's `$all` is read forward from `from` (rich entries: ids and types, no data). Each
//! event of a replicated user stream is looked up on the secondary by stream and event number
//! (translated by the stream's offset): present when the secondary's stream reaches that number
//! and, when ids are checked, holds the same event id there. `$all` positions of single events
//! are not exposed (contract §3.6), so the bound in bytes is the log distance from `from` to the
//! head, an upper bound.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use crate::config::ReplicationConfig;
use crate::esdb::{self, Client, Embed, Entry, Lookup, PageSize, ReadOptions, StreamFrom};
use crate::offsets::StreamOffsets;
use crate::pipeline::plan::{classify, StreamKind, TOMBSTONE_TYPE};
use crate::position::{Position, StreamRevision};

/// The walk stops after this many events; the figures then say "at least".
pub const MAX_TAIL_EVENTS: usize = 1_000_000;

/// One event of the primary's tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TailEvent {
    pub stream: String,
    pub revision: StreamRevision,
    pub event_id: Option<Uuid>,
    pub event_type: Option<String>,
    /// The primary's timestamp, as the server formats it.
    pub updated: Option<String>,
}

/// An event number both sides hold with different ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub primary: TailEvent,
    pub secondary_id: Uuid,
}

/// What the tail holds.
#[derive(Debug, Clone, Serialize)]
pub struct Tail {
    pub from: Position,
    /// The primary's head when the walk ended.
    pub head: Position,
    /// Events of replicated streams the secondary does not hold, in `$all` order.
    pub missing: Vec<TailEvent>,
    /// Events of replicated streams the secondary holds.
    pub present: u64,
    /// Metadata and delete records of replicated streams in the tail.
    pub other_records: u64,
    /// Same number, different id (only with id checks).
    pub mismatched: Vec<Mismatch>,
    /// `missing` and the primary's side of `mismatched` together, in `$all` order: the events of
    /// the primary the secondary does not hold as they are (only with id checks). After a
    /// promotion these are the orphaned events, including those whose numbers new writes reused.
    #[serde(skip)]
    pub diverged: Vec<TailEvent>,
    /// The walk stopped at [`MAX_TAIL_EVENTS`].
    pub truncated: bool,
}

impl Tail {
    /// Bytes of the primary's log after `from` (an upper bound of the missing volume).
    pub fn bytes(&self) -> u64 {
        self.head.commit().saturating_sub(self.from.commit())
    }
}

/// Walks the tail (see the module documentation). `check_ids`: also compare the ids of the
/// events the secondary holds (one stream page per stream).
///
/// # Errors
/// Client errors from either side.
pub async fn analyse(
    primary: &Client,
    secondary: &Client,
    filter: &ReplicationConfig,
    offsets: &StreamOffsets,
    from: Position,
    check_ids: bool,
) -> Result<Tail, esdb::Error> {
    let mut tail = Tail {
        from,
        head: from,
        missing: Vec::new(),
        present: 0,
        other_records: 0,
        mismatched: Vec::new(),
        diverged: Vec::new(),
        truncated: false,
    };
    let mut order: Vec<TailEvent> = Vec::new();
    // Links are records of their own streams: never resolve them (some versions do by default).
    let options = unresolved(Embed::Rich);
    let mut at = from;
    loop {
        let page = primary
            .read_all_forward(at, PageSize::MAX, &options)
            .await?;
        for entry in &page.entries {
            let stream = entry.stream();
            let (event_type, event_id, updated) = identity(entry);
            match classify(stream) {
                StreamKind::User(s) if filter.replicates(s) => {
                    if event_type.as_deref() == Some(TOMBSTONE_TYPE) {
                        tail.other_records += 1;
                    } else {
                        order.push(TailEvent {
                            stream: s.to_owned(),
                            revision: entry.revision(),
                            event_id,
                            event_type,
                            updated,
                        });
                    }
                }
                StreamKind::MetadataOf(s) if filter.replicates(s) => tail.other_records += 1,
                _ => {}
            }
        }
        match page.next {
            Some(next) if next > at => {
                at = next;
                tail.head = next;
            }
            _ => {}
        }
        if page.is_end || page.entries.is_empty() {
            break;
        }
        if order.len() >= MAX_TAIL_EVENTS {
            tail.truncated = true;
            break;
        }
    }

    // The secondary's last number of each stream in the tail.
    let mut streams: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in order.iter().enumerate() {
        streams.entry(e.stream.as_str()).or_default().push(i);
    }
    let mut missing = vec![false; order.len()];
    let mut mismatched: Vec<Option<Uuid>> = vec![None; order.len()];
    let one = PageSize::new(1).expect("1 is a valid page size");
    for (stream, indices) in &streams {
        let last = match secondary
            .read_stream_backward(stream, StreamFrom::Head, one, &unresolved(Embed::None))
            .await?
        {
            Lookup::Found(page) => page.entries.first().map(Entry::revision),
            Lookup::NotFound => None,
            // Hard-deleted on the secondary: nothing more can be written there; the tail's events
            // of it were superseded by the delete (or the stream diverged, which `verify` reports).
            Lookup::Deleted => Some(StreamRevision::TOMBSTONE),
        };
        let mut held = Vec::new();
        for &i in indices {
            let on_secondary = offsets.to_secondary(stream, order[i].revision);
            match (on_secondary, last) {
                (Some(n), Some(last)) if n <= last => held.push((i, n)),
                // Before the stream's offset: never replicated by design.
                (None, _) => {}
                _ => missing[i] = true,
            }
        }
        if check_ids && last != Some(StreamRevision::TOMBSTONE) {
            for (i, secondary_id) in compare_ids(secondary, stream, &held, &order).await? {
                mismatched[i] = Some(secondary_id);
            }
        }
    }
    for (i, event) in order.into_iter().enumerate() {
        if missing[i] || mismatched[i].is_some() {
            tail.diverged.push(event.clone());
        }
        if let Some(secondary_id) = mismatched[i] {
            tail.mismatched.push(Mismatch {
                primary: event.clone(),
                secondary_id,
            });
        }
        if missing[i] {
            tail.missing.push(event);
        } else {
            tail.present += 1;
        }
    }
    Ok(tail)
}

/// Reads the secondary's events at `held` numbers and returns those whose id differs, as
/// (index in `order`, the secondary's id).
async fn compare_ids(
    secondary: &Client,
    stream: &str,
    held: &[(usize, StreamRevision)],
    order: &[TailEvent],
) -> Result<Vec<(usize, Uuid)>, esdb::Error> {
    let mut mismatched = Vec::new();
    let Some(&(_, first)) = held.first() else {
        return Ok(mismatched);
    };
    let mut ids: BTreeMap<StreamRevision, Uuid> = BTreeMap::new();
    let mut from = first;
    let last = held.last().map_or(first, |&(_, n)| n);
    let options = unresolved(Embed::Rich);
    while from <= last {
        let Lookup::Found(page) = secondary
            .read_stream_forward(stream, from, PageSize::MAX, &options)
            .await?
        else {
            break;
        };
        for entry in &page.entries {
            if let (_, Some(id), _) = identity(entry) {
                ids.insert(entry.revision(), id);
            }
        }
        match page.next {
            Some(next) if next > from && !page.entries.is_empty() => from = next,
            _ => break,
        }
    }
    for &(i, n) in held {
        if let (Some(primary_id), Some(&secondary_id)) = (order[i].event_id, ids.get(&n)) {
            if primary_id != secondary_id {
                mismatched.push((i, secondary_id));
            }
        }
    }
    Ok(mismatched)
}

fn unresolved(embed: Embed) -> ReadOptions {
    ReadOptions {
        resolve_link_tos: Some(false),
        ..ReadOptions::embed(embed)
    }
}

fn identity(entry: &Entry) -> (Option<String>, Option<Uuid>, Option<String>) {
    match entry {
        Entry::Event(e) => (
            Some(e.event_type.clone()),
            Some(e.event_id),
            e.updated.clone(),
        ),
        Entry::Summary(s) => (s.event_type.clone(), s.event_id, s.updated.clone()),
    }
}
