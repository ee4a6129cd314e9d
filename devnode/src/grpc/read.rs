//! Streams.Read: bounded reads of a stream or of `$all` in either direction, catch-up
//! subscriptions that go live, and the server-side `$all` filters.
//!
//! Positions (docs/grpc.md "Positions"): a forward `$all` read from a position includes the
//! record there, a backward one stops before it, and a subscription from a position starts
//! after it (`src/KurrentDB.Core/Services/Transport/Enumerators/Enumerator.{ReadAllForwards,
//! ReadAllBackwards,AllSubscription,AllSubscriptionFiltered,StreamSubscription}.cs`). The
//! accepted combinations of options are those of `Streams.Read.cs` `CreateEnumerator`.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use proto::event_store::client as shared;
use proto::event_store::client::streams::read_req::options::{
    self as opts, all_options::AllOption, filter_options, stream_options::RevisionOption,
    uuid_option, CountOption, FilterOption, ReadDirection, StreamOption,
};
use proto::event_store::client::streams::read_resp::{self, read_event, Content};
use proto::event_store::client::streams::{ReadReq, ReadResp};

use super::status;
use super::streams::{check, stream_name, Streams};
use crate::http::App;
use crate::store::{
    Operation, ReaderVersion, ResolvedEvent, StoredRecord, StreamRead, TfPos, MAX_PAGE_SIZE,
};

/// `Enumerator.DefaultReadBatchSize`: the default filter window.
const DEFAULT_WINDOW: u32 = 32;
/// Answers buffered towards a slow client before the reader waits.
const CHANNEL_CAPACITY: usize = 64;

type Tx = mpsc::Sender<Result<ReadResp, Status>>;

/// Which id form the reader asked for.
#[derive(Clone, Copy)]
enum IdForm {
    Structured,
    String,
}

/// A server-side filter on the stream name or the event type of each `$all` record.
pub(crate) struct Filter {
    on_stream: bool,
    prefixes: Vec<String>,
    regex: Option<fancy_regex::Regex>,
    /// A checkpoint every this many considered records (window × multiplier).
    interval: u64,
}

impl Filter {
    /// Validates the request's filter. The regex dialect is .NET's, which has look-around
    /// (the Python client's default is `^(?!(\$.+$|…))`): `fancy-regex` accepts it.
    pub(crate) fn new(f: &opts::FilterOptions) -> Result<Filter, Status> {
        let (on_stream, expr) = match &f.filter {
            Some(filter_options::Filter::StreamIdentifier(e)) => (true, e),
            Some(filter_options::Filter::EventType(e)) => (false, e),
            None => return Err(status::required("filter")),
        };
        let window = match f.window {
            Some(filter_options::Window::Max(n)) if n > 0 => n,
            Some(filter_options::Window::Max(_)) => {
                return Err(Status::invalid_argument("'max' must be greater than zero"))
            }
            Some(filter_options::Window::Count(())) | None => DEFAULT_WINDOW,
        };
        if f.checkpoint_interval_multiplier == 0 {
            return Err(Status::invalid_argument(
                "'checkpointIntervalMultiplier' must be greater than zero",
            ));
        }
        let regex = if expr.prefix.is_empty() && !expr.regex.is_empty() {
            Some(fancy_regex::Regex::new(&expr.regex).map_err(|e| {
                Status::invalid_argument(format!("'{}' is not a valid regex: {e}", expr.regex))
            })?)
        } else {
            None
        };
        Ok(Filter {
            on_stream,
            prefixes: expr.prefix.clone(),
            regex,
            interval: u64::from(window) * u64::from(f.checkpoint_interval_multiplier),
        })
    }

    /// Prefixes win over the regex when both are given; neither matches everything.
    pub(crate) fn matches(&self, rec: &StoredRecord) -> bool {
        let subject: &str = if self.on_stream {
            &rec.stream
        } else {
            &rec.event_type
        };
        if !self.prefixes.is_empty() {
            return self
                .prefixes
                .iter()
                .any(|p| subject.starts_with(p.as_str()));
        }
        match &self.regex {
            // A regex that fails to run (backtracking limit) lets nothing through.
            Some(re) => re.is_match(subject).unwrap_or(false),
            None => true,
        }
    }
}

/// The validated request.
struct Plan {
    id_form: IdForm,
    backwards: bool,
    resolve: bool,
    compatibility: u32,
    target: Target,
}

enum Target {
    Stream {
        name: String,
        from: RevisionOption,
        count: Option<u64>,
    },
    All {
        from: AllOption,
        count: Option<u64>,
        filter: Option<Filter>,
    },
}

/// Checks a request the way `Streams.Read.cs` does, before any access check.
fn plan(req: &ReadReq) -> Result<Plan, Status> {
    let o = req
        .options
        .as_ref()
        .ok_or_else(|| status::required("options"))?;
    let id_form = match o.uuid_option.as_ref().and_then(|u| u.content.as_ref()) {
        Some(uuid_option::Content::Structured(())) => IdForm::Structured,
        Some(uuid_option::Content::String(())) => IdForm::String,
        None => return Err(status::required("uuid_option")),
    };
    let backwards = match ReadDirection::try_from(o.read_direction) {
        Ok(ReadDirection::Forwards) => false,
        Ok(ReadDirection::Backwards) => true,
        Err(_) => {
            return Err(Status::invalid_argument(
                "'read_direction' is not a valid direction",
            ))
        }
    };
    let count = match o.count_option {
        Some(CountOption::Count(n)) => Some(n),
        Some(CountOption::Subscription(_)) => None,
        None => return Err(status::required("count_option")),
    };
    let filter = match &o.filter_option {
        Some(FilterOption::Filter(f)) => Some(f),
        Some(FilterOption::NoFilter(())) | None => None,
    };
    let combination = |what: &str| status::invalid_combination(what);
    let target = match &o.stream_option {
        Some(StreamOption::Stream(s)) => {
            if filter.is_some() {
                return Err(combination("a stream read with a filter"));
            }
            if count.is_none() && backwards {
                return Err(combination("a backwards stream subscription"));
            }
            Target::Stream {
                name: stream_name(s.stream_identifier.as_ref())?,
                from: s
                    .revision_option
                    .ok_or_else(|| status::required("revision_option"))?,
                count,
            }
        }
        Some(StreamOption::All(a)) => {
            if count.is_none() && backwards {
                return Err(combination("a backwards $all subscription"));
            }
            Target::All {
                from: a.all_option.ok_or_else(|| status::required("all_option"))?,
                count,
                filter: filter.map(Filter::new).transpose()?,
            }
        }
        None => return Err(status::required("stream_option")),
    };
    Ok(Plan {
        id_form,
        backwards,
        resolve: o.resolve_links,
        compatibility: o.control_option.as_ref().map_or(0, |c| c.compatibility),
        target,
    })
}

pub(super) async fn read(
    streams: &Streams,
    req: Request<ReadReq>,
) -> Result<Response<super::streams::BoxStream<ReadResp>>, Status> {
    let principal = super::principal(&streams.app, &req)?;
    let plan = plan(req.get_ref())?;
    let stream = match &plan.target {
        Target::Stream { name, .. } => name.as_str(),
        Target::All { .. } => "$all",
    };
    check(&streams.app, stream, Operation::Read, principal.as_ref())?;
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let app = streams.app.clone();
    tokio::spawn(async move {
        let result = match plan.target {
            Target::Stream {
                ref name,
                from,
                count: Some(n),
            } => read_stream(&app, &plan, name, from, n, &tx).await,
            Target::Stream {
                ref name,
                from,
                count: None,
            } => subscribe_stream(&app, &plan, name, from, &tx).await,
            Target::All {
                from,
                count: Some(n),
                ref filter,
            } => read_all(&app, &plan, from, n, filter.as_ref(), &tx).await,
            Target::All {
                from,
                count: None,
                ref filter,
            } => subscribe_all(&app, &plan, from, filter.as_ref(), &tx).await,
        };
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

/// The client went away: stop quietly.
struct Gone;

impl From<Gone> for Status {
    fn from(_: Gone) -> Status {
        Status::cancelled("client gone")
    }
}

async fn send(tx: &Tx, content: Content) -> Result<(), Gone> {
    tx.send(Ok(ReadResp {
        content: Some(content),
    }))
    .await
    .map_err(|_| Gone)
}

fn uuid(id: uuid::Uuid, form: IdForm) -> shared::Uuid {
    match form {
        IdForm::Structured => proto::ids::structured(id),
        IdForm::String => proto::ids::string(id),
    }
}

fn recorded(rec: &StoredRecord, form: IdForm) -> read_event::RecordedEvent {
    let metadata = [
        ("type".to_owned(), rec.event_type.to_string()),
        ("created".to_owned(), rec.timestamp.to_string()),
        (
            "content-type".to_owned(),
            if rec.is_json() {
                "application/json"
            } else {
                "application/octet-stream"
            }
            .to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    read_event::RecordedEvent {
        id: Some(uuid(rec.event_id, form)),
        stream_identifier: Some(shared::StreamIdentifier {
            stream_name: bytes::Bytes::copy_from_slice(rec.stream.as_bytes()),
        }),
        stream_revision: rec.number as u64,
        prepare_position: rec.pos,
        commit_position: rec.pos,
        metadata,
        custom_metadata: rec.metadata.clone(),
        data: rec.data.clone(),
    }
}

fn event(e: &ResolvedEvent, form: IdForm) -> Content {
    let original = e.original();
    let (event, link) = match (&e.event, &e.link) {
        (Some(ev), Some(link)) => (ev, Some(recorded(link, form))),
        _ => (original, None),
    };
    Content::Event(read_resp::ReadEvent {
        event: Some(recorded(event, form)),
        link,
        position: Some(read_resp::read_event::Position::CommitPosition(
            original.pos,
        )),
    })
}

fn page(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX).min(MAX_PAGE_SIZE)
}

async fn read_stream(
    app: &Arc<App>,
    plan: &Plan,
    name: &str,
    from: RevisionOption,
    count: u64,
    tx: &Tx,
) -> Result<(), Status> {
    let store = &app.store;
    let mut left = count;
    let mut next: Option<i64> = match from {
        RevisionOption::Start(()) => Some(0),
        RevisionOption::End(()) => None,
        RevisionOption::Revision(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
    };
    let not_found = || {
        Content::StreamNotFound(read_resp::StreamNotFound {
            stream_identifier: Some(shared::StreamIdentifier {
                stream_name: bytes::Bytes::copy_from_slice(name.as_bytes()),
            }),
        })
    };
    let mut last_event_number = -1;
    loop {
        if left == 0 {
            break;
        }
        let read = if plan.backwards {
            store.read_stream_backward(name, next, page(left), plan.resolve)
        } else {
            // Forwards from the end reads nothing but still tells whether the stream exists.
            let from = next.unwrap_or(i64::MAX);
            store.read_stream_forward(name, from, page(left), plan.resolve, ReaderVersion::V20Plus)
        };
        let slice = match read {
            StreamRead::Ok(s) => s,
            StreamRead::NoStream => {
                send(tx, not_found()).await?;
                return Ok(());
            }
            StreamRead::Deleted => return Err(status::stream_deleted(name)),
        };
        last_event_number = slice.last_event_number;
        for e in &slice.events {
            send(tx, event(e, plan.id_form)).await?;
            left -= 1;
        }
        let Some(last) = slice.events.last() else {
            if slice.is_end_of_stream {
                break;
            }
            // A range wholly below the truncation point: move on past it.
            next = Some(slice.from.saturating_add(slice.max_count as i64));
            continue;
        };
        if slice.is_end_of_stream {
            break;
        }
        let n = last.original().number;
        next = Some(if plan.backwards { n - 1 } else { n + 1 });
        if next < Some(0) {
            break;
        }
    }
    if plan.compatibility >= 1 && last_event_number >= 0 {
        send(tx, Content::LastStreamPosition(last_event_number as u64)).await?;
    }
    Ok(())
}

async fn read_all(
    app: &Arc<App>,
    plan: &Plan,
    from: AllOption,
    count: u64,
    filter: Option<&Filter>,
    tx: &Tx,
) -> Result<(), Status> {
    let store = &app.store;
    let mut left = count;
    if plan.backwards {
        let mut pos = match from {
            AllOption::Start(()) => return Ok(()),
            AllOption::End(()) => None,
            AllOption::Position(p) => Some(tf_pos(p.commit_position, p.prepare_position)?),
        };
        while left > 0 {
            let slice = store.read_all_backward(pos, MAX_PAGE_SIZE, plan.resolve);
            for e in &slice.events {
                if filter.is_none_or(|f| f.matches(e.original())) {
                    send(tx, event(e, plan.id_form)).await?;
                    left -= 1;
                    if left == 0 {
                        break;
                    }
                }
            }
            if slice.events.len() < MAX_PAGE_SIZE {
                break;
            }
            pos = Some(slice.next);
        }
    } else {
        let mut pos = match from {
            AllOption::Start(()) => TfPos::new(0, 0),
            AllOption::End(()) => return Ok(()),
            AllOption::Position(p) => tf_pos(p.commit_position, p.prepare_position)?,
        };
        while left > 0 {
            let slice = store.read_all_forward(pos, MAX_PAGE_SIZE, plan.resolve);
            for e in &slice.events {
                if filter.is_none_or(|f| f.matches(e.original())) {
                    send(tx, event(e, plan.id_form)).await?;
                    left -= 1;
                    if left == 0 {
                        break;
                    }
                }
            }
            if slice.is_end_of_stream() {
                break;
            }
            pos = slice.next;
        }
    }
    Ok(())
}

/// A position of the request as the store's; beyond i64 is no position the server hands out.
fn tf_pos(commit: u64, prepare: u64) -> Result<TfPos, Status> {
    match (i64::try_from(commit), i64::try_from(prepare)) {
        (Ok(c), Ok(p)) => Ok(TfPos::new(c, p)),
        _ => Err(Status::invalid_argument(
            "Trying to read from an invalid position.",
        )),
    }
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::now())
}

async fn subscribe_all(
    app: &Arc<App>,
    plan: &Plan,
    from: AllOption,
    filter: Option<&Filter>,
    tx: &Tx,
) -> Result<(), Status> {
    let store = &app.store;
    let mut changes = store.subscribe();
    send(
        tx,
        Content::Confirmation(read_resp::SubscriptionConfirmation {
            subscription_id: uuid::Uuid::new_v4().to_string(),
        }),
    )
    .await?;
    // Everything at or before `after` has been delivered (or was skipped by request).
    let mut after: Option<TfPos> = match from {
        AllOption::Start(()) => None,
        AllOption::End(()) => {
            let last = store.last_commit_position();
            (last >= 0).then(|| TfPos::new(last, last))
        }
        AllOption::Position(p) => Some(tf_pos(p.commit_position, p.prepare_position)?),
    };
    let mut considered: u64 = 0;
    let mut caught_up = false;
    loop {
        changes.borrow_and_update();
        // From the commit position itself: a subscription from (C, 0), the post-position form
        // AtomPub pages hand out, must deliver the record at C (it is after (C, 0)); the check
        // below skips what is at or before `after` (`Enumerator.AllSubscription.cs`).
        let start = after.map_or(TfPos::new(0, 0), |p| TfPos::new(p.commit, 0));
        let slice = store.read_all_forward(start, MAX_PAGE_SIZE, plan.resolve);
        for e in &slice.events {
            let rec = e.original();
            let pos = TfPos::new(rec.pos as i64, rec.pos as i64);
            if after.is_some_and(|a| pos <= a) {
                continue;
            }
            after = Some(pos);
            match filter {
                None => send(tx, event(e, plan.id_form)).await?,
                Some(f) => {
                    if f.matches(rec) {
                        send(tx, event(e, plan.id_form)).await?;
                    }
                    considered += 1;
                    if considered.is_multiple_of(f.interval) {
                        send(tx, checkpoint(pos)).await?;
                    }
                }
            }
        }
        if !slice.is_end_of_stream() {
            continue;
        }
        if !caught_up {
            caught_up = true;
            if let (Some(_), Some(p)) = (filter, after) {
                send(tx, checkpoint(p)).await?;
            }
            if app.wire.profile.sends_caught_up() {
                send(
                    tx,
                    Content::CaughtUp(read_resp::CaughtUp {
                        timestamp: Some(now()),
                        stream_revision: None,
                        position: after.map(|p| read_resp::Position {
                            commit_position: p.commit as u64,
                            prepare_position: p.prepare as u64,
                        }),
                    }),
                )
                .await?;
            }
        }
        if !wait(app, &mut changes, tx).await {
            return Ok(());
        }
    }
}

fn checkpoint(p: TfPos) -> Content {
    Content::Checkpoint(read_resp::Checkpoint {
        commit_position: p.commit as u64,
        prepare_position: p.prepare as u64,
        timestamp: Some(now()),
    })
}

/// Waits for the next commit; false when the client left or the node stops.
async fn wait(app: &App, changes: &mut tokio::sync::watch::Receiver<u64>, tx: &Tx) -> bool {
    tokio::select! {
        r = changes.changed() => r.is_ok(),
        _ = tx.closed() => false,
        _ = app.shutdown.cancelled() => false,
    }
}

async fn subscribe_stream(
    app: &Arc<App>,
    plan: &Plan,
    name: &str,
    from: RevisionOption,
    tx: &Tx,
) -> Result<(), Status> {
    let store = &app.store;
    let mut changes = store.subscribe();
    send(
        tx,
        Content::Confirmation(read_resp::SubscriptionConfirmation {
            subscription_id: uuid::Uuid::new_v4().to_string(),
        }),
    )
    .await?;
    // The next event number to deliver (a subscription from a revision starts after it).
    let mut next: i64 = match from {
        RevisionOption::Start(()) => 0,
        RevisionOption::End(()) => store.last_event_number(name).max(-1) + 1,
        RevisionOption::Revision(n) => i64::try_from(n).unwrap_or(i64::MAX).saturating_add(1),
    };
    let mut caught_up = false;
    loop {
        changes.borrow_and_update();
        let mut at_end = true;
        match store.read_stream_forward(
            name,
            next,
            MAX_PAGE_SIZE,
            plan.resolve,
            ReaderVersion::V20Plus,
        ) {
            StreamRead::Ok(slice) => {
                for e in &slice.events {
                    send(tx, event(e, plan.id_form)).await?;
                    next = e.original().number + 1;
                }
                if !slice.is_end_of_stream {
                    at_end = false;
                    if slice.events.is_empty() {
                        next = next.saturating_add(slice.max_count as i64);
                    }
                }
            }
            StreamRead::NoStream => {}
            StreamRead::Deleted => return Err(status::stream_deleted(name)),
        }
        if !at_end {
            continue;
        }
        if !caught_up {
            caught_up = true;
            if app.wire.profile.sends_caught_up() {
                send(
                    tx,
                    Content::CaughtUp(read_resp::CaughtUp {
                        timestamp: Some(now()),
                        stream_revision: (next > 0).then_some(next - 1),
                        position: None,
                    }),
                )
                .await?;
            }
        }
        if !wait(app, &mut changes, tx).await {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proto::event_store::client::streams::read_req::Options;

    fn record(stream: &str, ty: &str) -> StoredRecord {
        StoredRecord {
            pos: 0,
            len: 1,
            stream: stream.into(),
            number: 0,
            event_id: uuid::Uuid::nil(),
            event_type: ty.into(),
            flags: 0,
            timestamp: 0,
            data: Default::default(),
            metadata: Default::default(),
        }
    }

    fn filter(on_stream: bool, regex: &str, prefix: &[&str]) -> Filter {
        let expr = filter_options::Expression {
            regex: regex.into(),
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
        };
        Filter::new(&opts::FilterOptions {
            filter: Some(if on_stream {
                filter_options::Filter::StreamIdentifier(expr)
            } else {
                filter_options::Filter::EventType(expr)
            }),
            window: None,
            checkpoint_interval_multiplier: 1,
        })
        .unwrap()
    }

    #[test]
    fn the_python_clients_default_look_ahead_excludes_system_types() {
        let f = filter(false, r"^(?!(\$.+$|PersistentConfig\d+$|Result$))", &[]);
        assert!(f.matches(&record("orders", "OrderPlaced")));
        assert!(!f.matches(&record("orders", "$metadata")));
        assert!(!f.matches(&record("x", "PersistentConfig1")));
        assert!(!f.matches(&record("x", "Result")));
        assert!(f.matches(&record("x", "Results")));
    }

    #[test]
    fn prefixes_win_over_the_regex_and_match_stream_names() {
        let f = filter(true, "^nothing$", &["ord", "inv"]);
        assert!(f.matches(&record("orders-1", "A")));
        assert!(f.matches(&record("invoices", "A")));
        assert!(!f.matches(&record("users", "A")));
    }

    fn any_options() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..200)
    }

    proptest! {
        /// Whatever bytes arrive as a ReadReq, decoding and validation answer a value or an
        /// error status, never a panic.
        #[test]
        fn arbitrary_read_requests_never_panic(bytes in any_options()) {
            use prost::Message;
            if let Ok(req) = ReadReq::decode(bytes.as_slice()) {
                let _ = plan(&req);
            }
        }

        #[test]
        fn arbitrary_regexes_are_accepted_or_refused(regex in ".{0,30}") {
            let _ = Filter::new(&opts::FilterOptions {
                filter: Some(filter_options::Filter::EventType(filter_options::Expression {
                    regex,
                    prefix: vec![],
                })),
                window: Some(filter_options::Window::Max(1)),
                checkpoint_interval_multiplier: 1,
            });
        }
    }

    #[test]
    fn invalid_combinations_and_missing_options_are_invalid_argument() {
        let backwards_sub = ReadReq {
            options: Some(Options {
                stream_option: Some(StreamOption::All(opts::AllOptions {
                    all_option: Some(AllOption::Start(())),
                })),
                read_direction: ReadDirection::Backwards as i32,
                count_option: Some(CountOption::Subscription(opts::SubscriptionOptions {})),
                uuid_option: Some(opts::UuidOption {
                    content: Some(uuid_option::Content::String(())),
                }),
                ..Default::default()
            }),
        };
        assert_eq!(
            plan(&backwards_sub).err().unwrap().code(),
            tonic::Code::InvalidArgument
        );
        let no_uuid = ReadReq {
            options: Some(Options::default()),
        };
        assert_eq!(
            plan(&no_uuid).err().unwrap().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            plan(&ReadReq::default()).err().unwrap().code(),
            tonic::Code::InvalidArgument
        );
    }
}
