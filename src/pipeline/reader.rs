//! The reader: the primary's `$all`, forward from the checkpoint, planned and sent to the writer
//! through a bounded channel.
//!
//! Over gRPC it subscribes to `$all` after the checkpoint: the server pushes the catch-up and
//! then the live events, with their stored bytes, and the reader sends what has arrived as one
//! batch (up to a page). Nothing is filtered on the server: the official clients' "exclude
//! system events" filter would also drop the `$metadata` and `$streamDeleted` records a mirror
//! needs, and an unfiltered subscription lets every record move the checkpoint.
//!
//! Over AtomPub it reads pages. While catching up it reads full pages, one request ahead: the next page is requested as soon as
//! a page arrives (its position from the links at the top of the body), so the primary prepares
//! it while this one is decoded and planned. At the head it long-polls (`ES-LongPoll`), so a new
//! event is seen as soon as it commits rather than at the next poll (contract §3.5). Pages are read with
//! `embed=body` and links unresolved: JSON data and metadata arrive as stored; the data of non-JSON
//! events is not in the feed, so each is fetched raw (`application/octet-stream`, links not
//! resolved), the only lossless way (§3.7).

use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::plan::{self, classify, StreamKind, TOMBSTONE_TYPE};
use super::{Batch, Shared, StageError};
use crate::config::ReplicationConfig;
use crate::esdb::grpc::{self, SubscriptionMessage};
use crate::esdb::{
    AllPage, Client, Embed, Entry, FetchedAllPage, Lookup, PageSize, ReadOptions, RecordedEvent,
};
use crate::fidelity::{LossKind, LossRecord};
use crate::position::{Position, StreamRevision};
use crate::retry::{retry, Gave};

/// How long one long-poll read waits at the head before the server answers empty.
pub const LONG_POLL: Duration = Duration::from_secs(10);

/// While a subscription catches up, how long a partly filled batch waits for the next event.
const CATCH_UP_IDLE: Duration = Duration::from_millis(20);

/// How pages of `$all` are read: bodies embedded, links unresolved, long-polling at the head.
fn page_options(at_head: bool) -> ReadOptions {
    ReadOptions {
        embed: Embed::Body,
        long_poll: at_head.then_some(LONG_POLL),
        resolve_link_tos: Some(false),
    }
}

/// The page size after a read of `size` records timed out: half, at least 1. The server builds a
/// whole page before its first byte, so a page of very large events can time out before anything
/// arrives, and retrying it at the same size would never end.
fn shrink(size: PageSize) -> PageSize {
    PageSize::new((size.get() / 2).max(1)).unwrap_or(size)
}

/// The page size after a read of `size` records succeeded: double, up to the configured `max`,
/// so a run of small events after a large one is read at full speed again.
fn grow(size: PageSize, max: PageSize) -> PageSize {
    PageSize::new(size.get().saturating_mul(2).min(max.get())).unwrap_or(max)
}

fn is_timeout(e: &crate::esdb::Error) -> bool {
    matches!(e, crate::esdb::Error::Timeout { .. })
}

/// The next page, requested before the current one was decoded.
struct ReadAhead {
    from: Position,
    /// The page size it was requested with.
    count: PageSize,
    task: AbortOnDropHandle<Result<FetchedAllPage, crate::esdb::Error>>,
}

pub(super) struct Reader {
    pub client: Client,
    pub page_size: PageSize,
    pub filter: ReplicationConfig,
    pub shared: Arc<Shared>,
}

impl Reader {
    /// Reads from `from` until cancelled or the writer hangs up.
    ///
    /// # Cancel safety
    /// Cancelling drops at most one page that was read but not sent; it is read again after a
    /// restart because the checkpoint never covers it.
    pub async fn run(
        self,
        from: Position,
        tx: mpsc::Sender<Batch>,
        cancel: CancellationToken,
    ) -> Result<(), StageError> {
        match &self.client {
            Client::Grpc(grpc) => {
                let grpc = grpc.clone();
                self.subscribe(grpc, from, tx, cancel).await
            }
            Client::Http(_) => self.read_pages(from, tx, cancel).await,
        }
    }

    /// The gRPC reader: a subscription to `$all` after `from`, resubscribed after the last batch
    /// sent when it fails with a transient error.
    ///
    /// # Cancel safety
    /// As [`Reader::run`]: events received but not sent arrive again after the resubscription.
    async fn subscribe(
        self,
        client: grpc::Client,
        mut from: Position,
        tx: mpsc::Sender<Batch>,
        cancel: CancellationToken,
    ) -> Result<(), StageError> {
        let page = usize::from(self.page_size.get());
        let mut delays = crate::retry::policy().build();
        loop {
            let after = (from != Position::START).then_some(from);
            let subscribed = retry(
                "subscribe to $all",
                &cancel,
                |e| self.shared.note_retry("reader", e),
                || client.subscribe_all(after, None),
            )
            .await;
            let mut subscription = match subscribed {
                Ok(s) => s,
                Err(Gave::Cancelled) => return Ok(()),
                Err(Gave::Up(e)) => return Err(StageError::Primary(e)),
            };
            let mut live = false;
            let failure = loop {
                let waited = tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    m = tokio::time::timeout(LONG_POLL, subscription.next()) => m,
                };
                let first = match waited {
                    Ok(m) => m,
                    // Quiet for a while: ask the primary something cheap, so that health knows
                    // it answers (a subscription says nothing while nothing is written) and a
                    // connection that died silently is noticed.
                    Err(_) => match client
                        .read_all(
                            grpc::ReadFrom::End,
                            crate::esdb::Direction::Backward,
                            1,
                            None,
                        )
                        .await
                    {
                        Ok(_) => {
                            // Nothing arrived for a while: this is the head.
                            live = true;
                            self.shared.set_head(from, live);
                            self.shared.health.caught_up(live);
                            continue;
                        }
                        Err(e) => break Some(e),
                    },
                };
                let mut events = Vec::new();
                // `Some(None)`: the server ended the subscription; `Some(Some(e))`: it failed.
                let mut ended: Option<Option<crate::esdb::Error>> = None;
                // Nothing more has arrived: what is held is everything there is for now.
                let mut drained = false;
                let mut message = first;
                // Up to a page: while catching up, what the server sends next; once live, what
                // has arrived, without waiting.
                loop {
                    match message {
                        Ok(Some(SubscriptionMessage::Event(e))) => events.push(*e),
                        Ok(Some(SubscriptionMessage::CaughtUp { .. })) => live = true,
                        Ok(Some(SubscriptionMessage::FellBehind)) => live = false,
                        Ok(Some(_)) => {}
                        Ok(None) => ended = Some(None),
                        Err(e) => ended = Some(Some(e)),
                    }
                    if ended.is_some() || events.len() >= page {
                        break;
                    }
                    if !live {
                        // Catching up: more is on its way; fill the page, but not for longer
                        // than a moment (servers before `caught_up` messages never say live).
                        let next = tokio::select! {
                            _ = cancel.cancelled() => return Ok(()),
                            m = tokio::time::timeout(CATCH_UP_IDLE, subscription.next()) => m,
                        };
                        match next {
                            Ok(m) => {
                                message = m;
                                continue;
                            }
                            Err(_) => {
                                drained = true;
                                break;
                            }
                        }
                    }
                    match futures_util::FutureExt::now_or_never(subscription.next()) {
                        Some(m) => message = m,
                        None => {
                            drained = true;
                            break;
                        }
                    }
                }
                if !events.is_empty() {
                    delays = crate::retry::policy().build();
                    let at_head = live && drained;
                    let end = events.last().map_or(from, |e| e.position);
                    let records = events.len();
                    let updated = events
                        .last()
                        .and_then(|e| e.created_ticks.map(crate::clock::ticks_rfc3339));
                    let plan =
                        plan::plan(events.into_iter().map(|e| e.event).collect(), &self.filter)
                            .map_err(|e| StageError::Unexpected(e.to_string()))?;
                    self.shared.set_head(end, at_head);
                    self.shared.health.caught_up(at_head);
                    let batch = Batch {
                        plan,
                        end,
                        records,
                        at_head,
                        losses: Vec::new(),
                        updated,
                    };
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        sent = tx.send(batch) => if sent.is_err() { return Ok(()) },
                    }
                    from = end;
                } else if live {
                    self.shared.set_head(from, true);
                    self.shared.health.caught_up(true);
                }
                if let Some(failure) = ended {
                    break failure;
                }
            };
            match failure {
                Some(e) if !crate::retry::Transient::is_transient(&e) => {
                    return Err(StageError::Primary(e))
                }
                Some(e) => {
                    self.shared.note_retry("reader", &e);
                    tracing::warn!(error = %e, "the $all subscription failed; subscribing again after {from}");
                }
                None => tracing::info!(
                    "the primary ended the $all subscription; subscribing again after {from}"
                ),
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// The AtomPub reader: pages of `$all`, read one ahead while catching up, long-polled at
    /// the head.
    async fn read_pages(
        self,
        mut from: Position,
        tx: mpsc::Sender<Batch>,
        cancel: CancellationToken,
    ) -> Result<(), StageError> {
        let mut at_head = false;
        let mut ahead: Option<ReadAhead> = None;
        // The page size of the next read: the configured one, smaller after timeouts.
        let mut count = self.page_size;
        loop {
            let fetched = match ahead.take() {
                Some(ahead) if ahead.from == from => match ahead.task.await {
                    Ok(Ok(fetched)) => Some((fetched, ahead.count)),
                    Ok(Err(e)) if is_timeout(&e) => {
                        count = shrink(ahead.count);
                        None
                    }
                    _ => None,
                },
                _ => None,
            };
            let read = match fetched {
                Some((fetched, used)) => {
                    count = grow(used, self.page_size);
                    if !at_head {
                        ahead = self.read_ahead(fetched.continuation_hint(), count).await;
                    }
                    match fetched.decode() {
                        Ok(page) => Ok((page, used)),
                        // Read it again, with retries: the error may be transient.
                        Err(_) => self.read_page(from, at_head, used, &cancel).await,
                    }
                }
                None => {
                    let read = self.read_page(from, at_head, count, &cancel).await;
                    if let Ok((page, used)) = &read {
                        count = grow(*used, self.page_size);
                        if !page.is_end {
                            ahead = self.read_ahead(page.next, count).await;
                        }
                    }
                    read
                }
            };
            let (page, used) = match read {
                Ok(read) => read,
                Err(Gave::Cancelled) => return Ok(()),
                Err(Gave::Up(e)) => return Err(StageError::Primary(e)),
            };
            let records = page.entries.len();
            at_head = page.is_end;
            let Some(end) = page.next else {
                // An empty page at the end of `$all` has no `previous` link (§3.4): stay here.
                self.shared.set_head(from, true);
                self.shared.health.caught_up(true);
                continue;
            };
            let updated = page.entries.last().and_then(|e| match e {
                Entry::Event(e) => e.updated.clone(),
                Entry::Summary(s) => s.updated.clone(),
            });
            let mut events = Vec::with_capacity(records);
            let mut losses = Vec::new();
            for entry in page.entries {
                match entry {
                    Entry::Event(e) => events.push(e),
                    Entry::Summary(s) => {
                        return Err(StageError::Unexpected(format!(
                            "the primary returned an entry without event fields ({}@{}) in the page at {from}; \
                             is it serving `$all` with embed=body?",
                            s.revision, s.stream
                        )))
                    }
                }
            }
            for e in events.iter_mut() {
                match self.fetch_data(e, (from, used), &mut losses, &cancel).await {
                    Ok(()) => {}
                    Err(Gave::Cancelled) => return Ok(()),
                    Err(Gave::Up(err)) => return Err(StageError::Primary(err)),
                }
            }
            let plan = plan::plan(events, &self.filter)
                .map_err(|e| StageError::Unexpected(e.to_string()))?;
            self.shared.set_head(end, at_head);
            self.shared.health.caught_up(false);
            let batch = Batch {
                plan,
                end,
                records,
                at_head,
                losses,
                updated,
            };
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                sent = tx.send(batch) => if sent.is_err() { return Ok(()) },
            }
            from = end;
        }
    }

    /// Reads the page at `from`, long-polling at the head, retrying transient errors; after a
    /// timeout the next attempts ask for half as many records (see [`shrink`]). Returns the page
    /// and the size it was read with.
    async fn read_page(
        &self,
        from: Position,
        at_head: bool,
        count: PageSize,
        cancel: &CancellationToken,
    ) -> Result<(AllPage, PageSize), Gave<crate::esdb::Error>> {
        let options = page_options(at_head);
        // Shared by the two closures below; atomic only so that the future stays `Send`.
        let size = AtomicU16::new(count.get());
        let current = || PageSize::new(size.load(Relaxed)).unwrap_or(count);
        retry(
            "read $all",
            cancel,
            |e| {
                self.shared.note_retry("reader", e);
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

    /// Requests the page at `from` now, to be decoded later: while catching up, the primary
    /// prepares and sends the next page while this one is decoded and planned, instead of after.
    /// A failed or unused read ahead is dropped (and aborted); the page is then read as usual.
    async fn read_ahead(&self, from: Option<Position>, count: PageSize) -> Option<ReadAhead> {
        let from = from?;
        let (client, page_size) = (self.client.as_http()?.clone(), count);
        let task = tokio::spawn(async move {
            client
                .fetch_all_forward(from, page_size, &page_options(false))
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

    /// Fills in the data of a user-stream event that the feed did not carry.
    ///
    /// The raw read respects the stream's visibility, so it fails for an event that is hidden
    /// right now (soft-deleted or truncated stream) — yet a later metadata write can make it
    /// visible again, so it must be copied with its data. The fallback is the same `$all` page
    /// read with `embed=tryharder`, which includes non-JSON data as UTF-8 text for every record
    /// (§3.7): exact for valid UTF-8, lossy (U+FFFD) otherwise, which is counted and logged.
    async fn fetch_data(
        &self,
        e: &mut RecordedEvent,
        page: (Position, PageSize),
        losses: &mut Vec<LossRecord>,
        cancel: &CancellationToken,
    ) -> Result<(), Gave<crate::esdb::Error>> {
        let StreamKind::User(stream) = classify(&e.stream) else {
            return Ok(());
        };
        if e.data.is_some() || !self.filter.replicates(stream) {
            return Ok(());
        }
        if e.is_json
            || e.is_redacted
            || (e.event_type == TOMBSTONE_TYPE && e.revision == StreamRevision::TOMBSTONE)
        {
            // `body` omits empty JSON data; redacted data is empty; a tombstone has none.
            e.data = Some(Default::default());
            return Ok(());
        }
        let (stream, revision) = (e.stream.clone(), e.revision);
        let found = retry(
            "read event data",
            cancel,
            |err| self.shared.note_retry("reader", err),
            || self.client.read_record_raw(&stream, revision),
        )
        .await?;
        e.data = Some(match found {
            Lookup::Found(bytes) => bytes,
            Lookup::NotFound | Lookup::Deleted => {
                let (data, lossy) = self.data_from_all(e, page, cancel).await?;
                if lossy {
                    losses.push(LossRecord {
                        stream: e.stream.clone(),
                        revision: e.revision.get(),
                        event_id: e.event_id,
                        kind: LossKind::DataFromFeedText,
                    });
                }
                data
            }
        });
        Ok(())
    }

    /// The data of a hidden non-JSON event, from the `$all` page read with `embed=tryharder`:
    /// `page` is the start and size the page holding `e` was read with, so it holds `e` again.
    async fn data_from_all(
        &self,
        e: &RecordedEvent,
        (page_start, page_size): (Position, PageSize),
        cancel: &CancellationToken,
    ) -> Result<(bytes::Bytes, bool), Gave<crate::esdb::Error>> {
        let options = ReadOptions {
            embed: Embed::TryHarder,
            long_poll: None,
            resolve_link_tos: Some(false),
        };
        let page = retry(
            "read $all (tryharder)",
            cancel,
            |err| self.shared.note_retry("reader", err),
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
                    self.shared.note_fidelity_loss();
                    tracing::warn!(stream = %e.stream, revision = %e.revision, event_id = %e.event_id,
                        "this non-JSON event is hidden on the primary (deleted or truncated) and its data is not valid UTF-8; copied from the $all feed, where invalid bytes read as U+FFFD (HTTP API limit)");
                }
                Ok((data, lossy))
            }
            None => {
                // Scavenged between the two reads: gone from the primary for good.
                tracing::warn!(stream = %e.stream, revision = %e.revision, event_id = %e.event_id,
                    "this non-JSON event was removed from the primary while being read; copying it with empty data");
                Ok((bytes::Bytes::new(), false))
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
