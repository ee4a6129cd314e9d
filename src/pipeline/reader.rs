//! The reader: the primary's `$all`, forward from the checkpoint, planned and sent to the writer
//! through a bounded channel.
//!
//! Over gRPC it subscribes to `$all` after the checkpoint: the server pushes the catch-up and
//! then the live events, with their stored bytes, and the reader sends what has arrived as one
//! batch (up to a page). Nothing is filtered on the server: the official clients' "exclude
//! system events" filter would also drop the `$metadata` and `$streamDeleted` records a mirror
//! needs, and an unfiltered subscription lets every record move the checkpoint.
//!
//! Over AtomPub it reads pages of `$all` through [`http::AllFeed`], which keeps the wire's
//! workarounds (read ahead, long poll, smaller pages after timeouts, the data the feed leaves
//! out); the reader plans each page and sends it on.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::plan::{self, classify, StreamKind};
use super::{Batch, Shared, StageError};
use crate::config::ReplicationConfig;
use crate::esdb::grpc::{self, SubscriptionMessage};
use crate::esdb::{http, Client, PageSize};
use crate::fidelity::{LossKind, LossRecord};
use crate::position::Position;
use crate::retry::{retry, Gave};

/// How long one long-poll read waits at the head before the server answers empty; over gRPC,
/// how long a quiet subscription waits before the reader asks the primary something.
pub use http::all_feed::LONG_POLL;

/// While a subscription catches up, how long a partly filled batch waits for the next event.
const CATCH_UP_IDLE: Duration = Duration::from_millis(20);

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
            Client::Http(http) => {
                let http = http.clone();
                self.read_pages(http, from, tx, cancel).await
            }
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
                // Sized for a page while catching up: grown one push at a time, a page of
                // events would be moved to a larger allocation a dozen times.
                let mut events = Vec::with_capacity(if live { 16 } else { page });
                // The last event's position and creation time.
                let mut last: Option<(Position, Option<i64>)> = None;
                // `Some(None)`: the server ended the subscription; `Some(Some(e))`: it failed.
                let mut ended: Option<Option<crate::esdb::Error>> = None;
                // Nothing more has arrived: what is held is everything there is for now.
                let mut drained = false;
                let mut message = first;
                // Up to a page: while catching up, what the server sends next; once live, what
                // has arrived, without waiting.
                loop {
                    match message {
                        Ok(Some(SubscriptionMessage::Event(e))) => {
                            last = Some((e.position, e.created_ticks));
                            events.push(e.event);
                        }
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
                    let end = last.map_or(from, |(position, _)| position);
                    let records = events.len();
                    let updated = last
                        .and_then(|(_, created)| created)
                        .map(crate::clock::ticks_rfc3339);
                    let plan = plan::plan(events, &self.filter)
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

    /// The AtomPub reader: pages of `$all` from [`http::AllFeed`], planned and sent.
    async fn read_pages(
        self,
        client: http::Client,
        mut from: Position,
        tx: mpsc::Sender<Batch>,
        cancel: CancellationToken,
    ) -> Result<(), StageError> {
        let mut feed = http::AllFeed::new(client, self.page_size);
        let on_retry = |e: &crate::esdb::Error| self.shared.note_retry("reader", e);
        let wants_data = |stream: &str| match classify(stream) {
            StreamKind::User(s) => self.filter.replicates(s),
            _ => false,
        };
        let hooks = http::Hooks {
            on_retry: &on_retry,
            wants_data: &wants_data,
            cancel: &cancel,
        };
        loop {
            let page = match feed.next(from, &hooks).await {
                Ok(page) => page,
                Err(Gave::Cancelled) => return Ok(()),
                Err(Gave::Up(e)) => return Err(StageError::Primary(e)),
            };
            let Some(end) = page.next else {
                // An empty page at the end of `$all` has no `previous` link (§3.4): stay here.
                self.shared.set_head(from, true);
                self.shared.health.caught_up(true);
                continue;
            };
            let records = page.events.len();
            let losses = page
                .lossy
                .into_iter()
                .map(|e| {
                    self.shared.note_fidelity_loss();
                    LossRecord {
                        stream: e.stream,
                        revision: e.revision.get(),
                        event_id: e.event_id,
                        kind: LossKind::DataFromFeedText,
                    }
                })
                .collect();
            let plan = plan::plan(page.events, &self.filter)
                .map_err(|e| StageError::Unexpected(e.to_string()))?;
            self.shared.set_head(end, page.is_end);
            self.shared.health.caught_up(false);
            let batch = Batch {
                plan,
                end,
                records,
                at_head: page.is_end,
                losses,
                updated: page.updated,
            };
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                sent = tx.send(batch) => if sent.is_err() { return Ok(()) },
            }
            from = end;
        }
    }
}
