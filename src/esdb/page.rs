//! Domain results of reads: pages of `$all` and of streams, their entries, and [`Lookup`] for reads
//! whose "not there" answers are expected values rather than errors.
//!
//! Feeds list entries newest first in both directions (contract §3.3); the pages here list them in
//! *read direction* instead (oldest first for forward reads), so a consumer simply iterates.

use bytes::Bytes;
use uuid::Uuid;

use super::http::headers::ETag;
use crate::position::{Position, StreamRevision};

/// Outcome of a read that may find nothing: 404 and 410 are answers, not failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// 200: the thing exists.
    Found(T),
    /// 404: the stream or event does not exist, or the stream is soft-deleted.
    NotFound,
    /// 410: the stream is hard-deleted (tombstoned); it can never be written again.
    Deleted,
}

impl<T> Lookup<T> {
    /// The found value, `None` for not-found and deleted.
    pub fn found(self) -> Option<T> {
        match self {
            Lookup::Found(value) => Some(value),
            Lookup::NotFound | Lookup::Deleted => None,
        }
    }

    /// Maps the found value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Found(value) => Lookup::Found(f(value)),
            Lookup::NotFound => Lookup::NotFound,
            Lookup::Deleted => Lookup::Deleted,
        }
    }
}

/// Direction of a paged read.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    /// Oldest to newest.
    Forward,
    /// Newest to oldest.
    Backward,
}

impl Direction {
    /// URL segment (`forward` / `backward`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Backward => "backward",
        }
    }
}

/// The navigation links of a feed page, by relation (absolute URLs as the server sent them).
///
/// Remember the inverted RFC 5005 names: `previous` points to *newer* events, `next` to *older*
/// ones (contract §3.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// `self`.
    pub self_: Option<String>,
    /// `first`: the head page.
    pub first: Option<String>,
    /// `last`: the oldest page (absent on pages that start at the beginning).
    pub last: Option<String>,
    /// `next`: older events.
    pub next: Option<String>,
    /// `previous`: newer events (absent on an empty page at the end).
    pub previous: Option<String>,
    /// `metadata`.
    pub metadata: Option<String>,
}

/// One page of `$all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllPage {
    /// Direction of the read that produced the page.
    pub direction: Direction,
    /// Entries in read direction: oldest first for forward pages (the feed's entries reversed),
    /// newest first for backward pages.
    pub entries: Vec<Entry>,
    /// Where to continue reading in the same direction: the `previous` link of a forward page (a
    /// position whose prepare half is 0, contract §3.4) or the `next` link of a backward page.
    ///
    /// `None` on a forward page with no entries (end of `$all`: poll the same position again) and
    /// on a backward page that reached the start of the log.
    pub next: Option<Position>,
    /// Fewer entries than requested: a forward read reached the current end of `$all`, a backward
    /// read reached its start.
    pub is_end: bool,
    /// `ETag` of a page at the live edge (absent on cacheable full pages).
    pub etag: Option<ETag>,
    /// Raw navigation links.
    pub links: Links,
}

/// One page of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPage {
    /// Stream name as reported by the feed (falls back to the requested name).
    pub stream: String,
    /// Direction of the read that produced the page.
    pub direction: Direction,
    /// Entries in read direction (see [`AllPage::entries`]).
    pub entries: Vec<Entry>,
    /// Event number to continue from in the same direction: the `previous` link of a forward page,
    /// the `next` link of a backward page; `None` when there is nothing further yet/at all.
    pub next: Option<StreamRevision>,
    /// Fewer entries than requested.
    pub is_end: bool,
    /// The server's `headOfStream`: the page reaches the current end of the stream.
    pub head_of_stream: bool,
    /// `ETag` of a page at the live edge.
    pub etag: Option<ETag>,
    /// Raw navigation links.
    pub links: Links,
}

/// One feed entry.
///
/// An entry is an [`Entry::Event`] when it carries everything needed to copy the event (the rich
/// fields of `embed=rich` and above: event id, type, number, stream). Plain entries (`embed=none` or
/// `content`), 2013-era entries without `eventId`, and the minimal entries the server emits for a
/// link whose target is gone (contract §3.8) are [`Entry::Summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A fully described event.
    Event(RecordedEvent),
    /// An entry identified only by its title/summary.
    Summary(EntrySummary),
}

impl Entry {
    /// The stream the entry describes.
    pub fn stream(&self) -> &str {
        match self {
            Entry::Event(event) => &event.stream,
            Entry::Summary(summary) => &summary.stream,
        }
    }

    /// The event number the entry describes.
    pub fn revision(&self) -> StreamRevision {
        match self {
            Entry::Event(event) => event.revision,
            Entry::Summary(summary) => summary.revision,
        }
    }

    /// The event, if the entry is fully described.
    pub fn as_event(&self) -> Option<&RecordedEvent> {
        match self {
            Entry::Event(event) => Some(event),
            Entry::Summary(_) => None,
        }
    }
}

/// An event as read from a feed at `embed >= rich`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Stream of the event (for a resolved link: the target's stream).
    pub stream: String,
    /// Event number in `stream`.
    pub revision: StreamRevision,
    /// Event id (preserve it when copying: it is the idempotency key, contract §5.5).
    pub event_id: Uuid,
    /// Event type.
    pub event_type: String,
    /// The stored isJson flag.
    pub is_json: bool,
    /// Stored data bytes, when the embed level includes them: `body` returns them only for JSON
    /// events, unchanged; `pretty`/`tryharder` re-indent (contract §3.7). `None` = not included,
    /// which is *not* the same as empty.
    pub data: Option<Bytes>,
    /// Stored metadata bytes (UTF-8 text as the server decoded it), when non-empty and embedded.
    pub metadata: Option<Bytes>,
    /// The server's `isMetaData`: the metadata is non-empty.
    pub is_metadata: bool,
    /// Metadata of the link record, for a resolved link.
    pub link_metadata: Option<Bytes>,
    /// The server's `isLinkMetaData`.
    pub is_link_metadata: bool,
    /// 23.6+: the event was redacted; its data is empty.
    pub is_redacted: bool,
    /// For a resolved link: the link record that was read (`positionStreamId`/`positionEventNumber`);
    /// `None` when the record read is the event itself.
    pub link: Option<EventRef>,
    /// Event timestamp as the server formatted it (not parsed: format varies, contract §2.4).
    pub updated: Option<String>,
}

/// A reference to an event by stream and number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventRef {
    /// Stream name.
    pub stream: String,
    /// Event number.
    pub revision: StreamRevision,
}

/// An entry without rich fields, identified by its title `"<number>@<stream>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySummary {
    /// Stream from the title (or the rich field, when present).
    pub stream: String,
    /// Event number from the title (or the rich field, when present).
    pub revision: StreamRevision,
    /// The entry's `summary` (the event type; `$>` for a link whose target is gone).
    pub event_type: Option<String>,
    /// Event id, when the entry or its `content` carries one.
    pub event_id: Option<Uuid>,
    /// The isJson flag, when the entry carries it.
    pub is_json: Option<bool>,
    /// `content` of `embed=content` entries and single-event reads: data and metadata as parsed
    /// JSON values (not the stored bytes).
    pub content: Option<EntryContent>,
    /// Entry URL.
    pub uri: Option<String>,
    /// Event timestamp as the server formatted it.
    pub updated: Option<String>,
}

/// The `content` object of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryContent {
    /// Parsed data (a JSON string when the data is not JSON).
    pub data: Option<serde_json::Value>,
    /// Parsed metadata (`""` when the event has none).
    pub metadata: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_helpers() {
        assert_eq!(Lookup::Found(2).map(|n| n * 2).found(), Some(4));
        assert_eq!(Lookup::<u8>::NotFound.found(), None);
        assert_eq!(Lookup::<u8>::Deleted.map(|n| n + 1), Lookup::Deleted);
    }

    #[test]
    fn entry_accessors() {
        let summary = Entry::Summary(EntrySummary {
            stream: "s".into(),
            revision: StreamRevision::new(3).unwrap(),
            event_type: None,
            event_id: None,
            is_json: None,
            content: None,
            uri: None,
            updated: None,
        });
        assert_eq!(summary.stream(), "s");
        assert_eq!(summary.revision().get(), 3);
        assert!(summary.as_event().is_none());
        assert_eq!(Direction::Backward.as_str(), "backward");
    }
}
