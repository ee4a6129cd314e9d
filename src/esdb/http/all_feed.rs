//! `$all` over AtomPub as a sequence of complete pages: what a reader that copies every byte it
//! can needs from this wire, with the wire's workarounds kept here.
//!
//! * **Read ahead.** While catching up, the next page is requested as soon as a page arrives
//!   (its position from the links at the top of the body), so the primary prepares it while
//!   this one is decoded and planned.
//! * **Long poll at the head** (`ES-LongPoll`): a new event is seen as soon as it commits rather
//!   than at the next poll (contract §3.5).
//! * **Smaller pages after a timeout.** The server builds a whole page before its first byte, so
//!   a page of very large events can time out before anything arrives; the size halves down to
//!   one record, and grows back after successes.
//! * **Data the feed leaves out.** Pages are read with `embed=body` and links unresolved: JSON
//!   data and metadata arrive as stored, non-JSON data does not, so each such event is fetched
//!   raw (`application/octet-stream`), the only lossless way (§3.7). A hidden event (soft-deleted
//!   or truncated stream) cannot be fetched raw, yet a later metadata write can make it visible
//!   again; its data then comes from the same page read with `embed=tryharder`, exact for valid
//!   UTF-8 and lossy (U+FFFD) otherwise, which [`FeedPage::lossy`] reports.

use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use super::{Client, Embed, FetchedAllPage, PageSize, ReadOptions};
use crate::esdb::{AllPage, Entry, Error, Lookup, RecordedEvent};
use crate::position::{Position, StreamRevision};
use crate::retry::{retry, Gave};

/// How long one long-poll read waits at the head before the server answers empty.
pub const LONG_POLL: Duration = Duration::from_secs(10);

/// The type of the record a hard delete writes.
const TOMBSTONE_TYPE: &str = "$streamDeleted";

/// How pages of `$all` are read: bodies embedded, links unresolved, long-polling at the head.
fn page_options(at_head: bool) -> ReadOptions {
    ReadOptions {
        embed: Embed::Body,
        long_poll: at_head.then_some(LONG_POLL),
        resolve_link_tos: Some(false),
    }
}

/// The page size after a read of `size` records timed out: half, at least 1.
fn shrink(size: PageSize) -> PageSize {
    PageSize::new((size.get() / 2).max(1)).unwrap_or(size)
}

/// The page size after a read of `size` records succeeded: double, up to the configured `max`,
/// so a run of small events after a large one is read at full speed again.
fn grow(size: PageSize, max: PageSize) -> PageSize {
    PageSize::new(size.get().saturating_mul(2).min(max.get())).unwrap_or(max)
}

fn is_timeout(e: &Error) -> bool {
    matches!(e, Error::Timeout { .. })
}

/// What the feed asks of its reader.
pub struct Hooks<'a> {
    /// Called for each transient failure before it is retried (for metrics).
    pub on_retry: &'a (dyn Fn(&Error) + Sync),
    /// Whether the events of this stream are copied, hence need their data.
    pub wants_data: &'a (dyn Fn(&str) -> bool + Sync),
    /// Stops the feed between attempts.
    pub cancel: &'a CancellationToken,
}

/// One page of `$all`, every event in it of a wanted stream with its data.
#[derive(Debug)]
pub struct FeedPage {
    /// The page's events, in `$all` order.
    pub events: Vec<RecordedEvent>,
    /// Where the next page starts; `None` for an empty page at the end of `$all`.
    pub next: Option<Position>,
    /// The page reached the head of `$all`.
    pub is_end: bool,
    /// The timestamp of the page's last record, as the server wrote it.
    pub updated: Option<String>,
    /// Events whose data came from the feed's text with bytes replaced by U+FFFD.
    pub lossy: Vec<TextCopy>,
}

/// An event copied with data from the feed's text, where bytes that are not UTF-8 read as U+FFFD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextCopy {
    pub stream: String,
    pub revision: StreamRevision,
    pub event_id: Uuid,
}

/// The next page, requested before the current one was decoded.
struct ReadAhead {
    from: Position,
    /// The page size it was requested with.
    count: PageSize,
    task: AbortOnDropHandle<Result<FetchedAllPage, Error>>,
}

/// A forward reader of `$all` over AtomPub (see the module documentation).
pub struct AllFeed {
    client: Client,
    /// The configured page size.
    max: PageSize,
    /// The page size of the next read: the configured one, smaller after timeouts.
    count: PageSize,
    ahead: Option<ReadAhead>,
    /// The last page reached the head: the next read long-polls.
    at_head: bool,
}

impl AllFeed {
    /// A feed of `client`'s `$all` in pages of up to `page_size` records.
    pub fn new(client: Client, page_size: PageSize) -> AllFeed {
        AllFeed {
            client,
            max: page_size,
            count: page_size,
            ahead: None,
            at_head: false,
        }
    }

    /// The page at `from`, retrying transient errors until it is read or `hooks.cancel` fires.
    ///
    /// # Errors
    /// A permanent client error, or a page with an entry that carries no event fields (the
    /// node does not honour `embed=body`), as [`Error::Protocol`].
    ///
    /// # Cancel safety
    /// Cancelling drops the page being read; reading `from` again reads it again.
    pub async fn next(
        &mut self,
        from: Position,
        hooks: &Hooks<'_>,
    ) -> Result<FeedPage, Gave<Error>> {
        let fetched = match self.ahead.take() {
            Some(ahead) if ahead.from == from => match ahead.task.await {
                Ok(Ok(fetched)) => Some((fetched, ahead.count)),
                Ok(Err(e)) if is_timeout(&e) => {
                    self.count = shrink(ahead.count);
                    None
                }
                _ => None,
            },
            _ => None,
        };
        let (page, used) = match fetched {
            Some((fetched, used)) => {
                self.count = grow(used, self.max);
                if !self.at_head {
                    self.ahead = self.read_ahead(fetched.continuation_hint()).await;
                }
                match fetched.decode() {
                    Ok(page) => (page, used),
                    // Read it again, with retries: the error may be transient.
                    Err(_) => self.read_page(from, used, hooks).await?,
                }
            }
            None => {
                let (page, used) = self.read_page(from, self.count, hooks).await?;
                self.count = grow(used, self.max);
                if !page.is_end {
                    self.ahead = self.read_ahead(page.next).await;
                }
                (page, used)
            }
        };
        self.at_head = page.is_end;
        let updated = page.entries.last().and_then(|e| match e {
            Entry::Event(e) => e.updated.clone(),
            Entry::Summary(s) => s.updated.clone(),
        });
        let mut events = Vec::with_capacity(page.entries.len());
        for entry in page.entries {
            match entry {
                Entry::Event(e) => events.push(e),
                Entry::Summary(s) => {
                    return Err(Gave::Up(Error::Protocol {
                        op: "read $all",
                        endpoint: {
                            let url = self.client.base_url();
                            format!(
                                "{}:{}",
                                url.host_str().unwrap_or_default(),
                                url.port_or_known_default().unwrap_or_default()
                            )
                        },
                        detail: format!(
                            "an entry without event fields ({}@{}) in the page at {from}; \
                             is the node serving `$all` with embed=body?",
                            s.revision, s.stream
                        ),
                    }))
                }
            }
        }
        let mut lossy = Vec::new();
        for e in events.iter_mut() {
            if self.fill_data(e, (from, used), hooks).await? {
                lossy.push(TextCopy {
                    stream: e.stream.clone(),
                    revision: e.revision,
                    event_id: e.event_id,
                });
            }
        }
        Ok(FeedPage {
            events,
            next: page.next,
            is_end: page.is_end,
            updated,
            lossy,
        })
    }

    /// Reads the page at `from`, long-polling at the head, retrying transient errors; after a
    /// timeout the next attempts ask for half as many records. Returns the page and the size it
    /// was read with.
    async fn read_page(
        &self,
        from: Position,
        count: PageSize,
        hooks: &Hooks<'_>,
    ) -> Result<(AllPage, PageSize), Gave<Error>> {
        let options = page_options(self.at_head);
        // Shared by the two closures below; atomic only so that the future stays `Send`.
        let size = AtomicU16::new(count.get());
        let current = || PageSize::new(size.load(Relaxed)).unwrap_or(count);
        retry(
            "read $all",
            hooks.cancel,
            |e| {
                (hooks.on_retry)(e);
                if is_timeout(e) {
                    size.store(shrink(current()).get(), Relaxed);
                }
            },
            || {
                let count = current();
                let read = self.client.read_all_forward(from, count, &options);
                async move { read.await.map(|page| (page, count)) }
            },
        )
        .await
    }

    /// Requests the page at `from` now, to be decoded later. A failed or unused read ahead is
    /// dropped (and aborted); the page is then read as usual.
    async fn read_ahead(&self, from: Option<Position>) -> Option<ReadAhead> {
        let from = from?;
        let (client, count) = (self.client.clone(), self.count);
        let task = tokio::spawn(async move {
            client
                .fetch_all_forward(from, count, &page_options(false))
                .await
        });
        // On a current-thread runtime the request leaves only once this task yields: let the new
        // task and then the connection's task write it before decoding takes the thread.
        for _ in 0..2 {
            tokio::task::yield_now().await;
        }
        Some(ReadAhead {
            from,
            count,
            task: AbortOnDropHandle::new(task),
        })
    }

    /// Fills in the data of an event the feed did not carry, if its stream is wanted. Returns
    /// whether the data had to come from the feed's text with bytes lost.
    async fn fill_data(
        &self,
        e: &mut RecordedEvent,
        page: (Position, PageSize),
        hooks: &Hooks<'_>,
    ) -> Result<bool, Gave<Error>> {
        if e.data.is_some() || !(hooks.wants_data)(&e.stream) {
            return Ok(false);
        }
        if e.is_json
            || e.is_redacted
            || (e.event_type == TOMBSTONE_TYPE && e.revision == StreamRevision::TOMBSTONE)
        {
            // `body` omits empty JSON data; redacted data is empty; a tombstone has none.
            e.data = Some(Bytes::new());
            return Ok(false);
        }
        let (stream, revision) = (e.stream.clone(), e.revision);
        let found = retry(
            "read event data",
            hooks.cancel,
            |err| (hooks.on_retry)(err),
            || self.client.read_record_raw(&stream, revision),
        )
        .await?;
        let (data, lossy) = match found {
            Lookup::Found(bytes) => (bytes, false),
            Lookup::NotFound | Lookup::Deleted => self.data_from_all(e, page, hooks).await?,
        };
        e.data = Some(data);
        Ok(lossy)
    }

    /// The data of a hidden non-JSON event, from the `$all` page read with `embed=tryharder`:
    /// `page` is the start and size the page holding `e` was read with, so it holds `e` again.
    async fn data_from_all(
        &self,
        e: &RecordedEvent,
        (page_start, page_size): (Position, PageSize),
        hooks: &Hooks<'_>,
    ) -> Result<(Bytes, bool), Gave<Error>> {
        let options = ReadOptions {
            embed: Embed::TryHarder,
            long_poll: None,
            resolve_link_tos: Some(false),
        };
        let page = retry(
            "read $all (tryharder)",
            hooks.cancel,
            |err| (hooks.on_retry)(err),
            || {
                self.client
                    .read_all_forward(page_start, page_size, &options)
            },
        )
        .await?;
        let text = page
            .entries
            .iter()
            .filter_map(Entry::as_event)
            .find(|x| x.event_id == e.event_id && x.stream == e.stream)
            .and_then(|x| x.data.clone());
        match text {
            Some(data) => {
                let lossy = std::str::from_utf8(&data).is_ok_and(|t| t.contains('\u{FFFD}'));
                if lossy {
                    tracing::warn!(stream = %e.stream, revision = %e.revision, event_id = %e.event_id,
                        "this non-JSON event is hidden on the primary (deleted or truncated) and its data is not valid UTF-8; copied from the $all feed, where invalid bytes read as U+FFFD (HTTP API limit)");
                }
                Ok((data, lossy))
            }
            None => {
                // Scavenged between the two reads: gone from the primary for good.
                tracing::warn!(stream = %e.stream, revision = %e.revision, event_id = %e.event_id,
                    "this non-JSON event was removed from the primary while being read; copying it with empty data");
                Ok((Bytes::new(), false))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(n: u16) -> PageSize {
        PageSize::new(n).unwrap()
    }

    #[test]
    fn timeouts_halve_the_page_down_to_one_and_successes_grow_it_back_to_the_configured_size() {
        let configured = size(500);
        let mut n = configured;
        let mut seen = Vec::new();
        for _ in 0..12 {
            n = shrink(n);
            seen.push(n.get());
        }
        assert_eq!(seen, [250, 125, 62, 31, 15, 7, 3, 1, 1, 1, 1, 1]);
        let mut seen = Vec::new();
        for _ in 0..12 {
            n = grow(n, configured);
            seen.push(n.get());
        }
        assert_eq!(seen, [2, 4, 8, 16, 32, 64, 128, 256, 500, 500, 500, 500]);
        assert_eq!(grow(PageSize::MAX, PageSize::MAX), PageSize::MAX);
    }
}
