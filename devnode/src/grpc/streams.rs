//! Streams: Append, BatchAppend, Delete and Tombstone over the store's write rules, which the
//! AtomPub front uses too (expected version, idempotency, deletes: `store/mod.rs`).
//!
//! Followed: `src/KurrentDB.Core/Services/Transport/Grpc/Streams.{Append,BatchAppend,Delete,
//! Tombstone}.cs` and `MetadataHelpers.cs` of the server.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use proto::event_store::client as shared;
use proto::event_store::client::streams::{
    append_req, append_resp, batch_append_req, batch_append_resp, delete_req, delete_resp,
    streams_server, tombstone_req, tombstone_resp, AppendReq, AppendResp, BatchAppendReq,
    BatchAppendResp, DeleteReq, DeleteResp, ReadReq, ReadResp, TombstoneReq, TombstoneResp,
};
use proto::google::rpc;

use super::status;
use crate::config::Profile;
use crate::http::App;
use crate::store::acl::{self, Principal};
use crate::store::{
    AppendResult, DeleteResult, Operation, ProposedEvent, Store, DELETED_STREAM, EXPECTED_ANY,
    EXPECTED_NO_STREAM, EXPECTED_STREAM_EXISTS,
};

/// `MaxAppendSize`: the server's default limit on one append, counted as in `Event.SizeOnDisk`
/// (data + custom metadata + two bytes per UTF-16 unit of the type).
pub(crate) const MAX_APPEND_SIZE: usize = 1024 * 1024;

pub(crate) struct Streams {
    pub(super) app: Arc<App>,
}

impl Streams {
    pub(crate) fn new(app: Arc<App>) -> Self {
        Streams { app }
    }

    /// Authenticates and checks `op` on `stream` for the caller.
    pub(super) fn authorize<T>(
        &self,
        req: &Request<T>,
        stream: &str,
        op: Operation,
    ) -> Result<Option<Principal>, Status> {
        let principal = super::principal(&self.app, req)?;
        check(&self.app, stream, op, principal.as_ref())?;
        Ok(principal)
    }
}

/// The ACL check, after the 23.6+ refusal of anonymous stream access.
pub(super) fn check(
    app: &App,
    stream: &str,
    op: Operation,
    principal: Option<&Principal>,
) -> Result<(), Status> {
    if principal.is_none() && app.wire.refuses_anonymous() {
        return Err(status::access_denied());
    }
    if app.store.check_access(stream, op, principal) {
        Ok(())
    } else {
        Err(status::access_denied())
    }
}

/// The stream named by a request. The server reads the bytes as UTF-8 (invalid sequences
/// become U+FFFD, as .NET's decoder does); an absent or empty name is refused.
pub(super) fn stream_name(id: Option<&shared::StreamIdentifier>) -> Result<String, Status> {
    let id = id.ok_or_else(|| status::required("stream_identifier"))?;
    if id.stream_name.is_empty() {
        return Err(status::required("stream_identifier"));
    }
    Ok(String::from_utf8_lossy(&id.stream_name).into_owned())
}

/// One proposed event of Append or BatchAppend, and its size as the limit counts it.
pub(super) fn proposed(
    id: Option<&shared::Uuid>,
    metadata: &HashMap<String, String>,
    custom_metadata: &Bytes,
    data: &Bytes,
) -> Result<(ProposedEvent, usize), Status> {
    let event_id = id
        .and_then(proto::ids::parse)
        .ok_or_else(|| status::required("id"))?;
    let event_type = metadata
        .get("type")
        .ok_or_else(|| status::missing_metadata("type"))?;
    let content_type = metadata
        .get("content-type")
        .ok_or_else(|| status::missing_metadata("content-type"))?;
    let size = data.len() + custom_metadata.len() + 2 * event_type.encode_utf16().count();
    Ok((
        ProposedEvent {
            event_id,
            event_type: event_type.clone(),
            // The server keeps only this flag; reads answer application/json or
            // application/octet-stream.
            is_json: content_type == "application/json",
            data: data.clone(),
            metadata: custom_metadata.clone(),
        },
        size,
    ))
}

/// Runs a write on the store: on the blocking pool when it may touch the disk.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> T + Send + 'static,
) -> Result<T, Status> {
    if store.is_durable() {
        let store = store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(status::internal)
    } else {
        Ok(f(store))
    }
}

/// The outcome of one append, before it is put into the answer of Append or BatchAppend.
enum Appended {
    Done { last: i64, position: Option<u64> },
    Wrong { current: i64 },
}

async fn append(
    app: &Arc<App>,
    stream: &str,
    expected: i64,
    events: Vec<ProposedEvent>,
) -> Result<Appended, Status> {
    let count = events.len() as i64;
    let s = stream.to_owned();
    let result = blocking(&app.store, move |store| store.append(&s, expected, events))
        .await?
        .map_err(status::internal)?;
    match result {
        AppendResult::Written { first, last } => Ok(Appended::Done {
            last,
            position: if last >= first {
                app.store.event_position(stream, last)
            } else {
                None
            },
        }),
        // A replay writes nothing; the server answers without a position.
        AppendResult::Idempotent { first } => Ok(Appended::Done {
            last: first + count - 1,
            position: None,
        }),
        AppendResult::WrongExpectedVersion { current } => Ok(Appended::Wrong { current }),
        AppendResult::StreamDeleted => Err(status::stream_deleted(stream)),
        AppendResult::NothingWritten => Err(status::invalid_transaction()),
    }
}

pub(super) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl streams_server::Streams for Streams {
    type ReadStream = BoxStream<ReadResp>;
    type BatchAppendStream = BoxStream<BatchAppendResp>;

    async fn read(&self, req: Request<ReadReq>) -> Result<Response<Self::ReadStream>, Status> {
        super::read::read(self, req).await
    }

    async fn append(
        &self,
        req: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        let principal = super::principal(&self.app, &req)?;
        let mut messages = req.into_inner();
        let options = match messages.message().await? {
            Some(AppendReq {
                content: Some(append_req::Content::Options(o)),
            }) => o,
            _ => return Err(status::bad_framing()),
        };
        let stream = stream_name(options.stream_identifier.as_ref())?;
        use append_req::options::ExpectedStreamRevision as E;
        let (expected, wev_expected) = match options.expected_stream_revision {
            Some(E::Revision(n)) => (
                revision_i64(n)?,
                append_resp::wrong_expected_version::ExpectedRevisionOption::ExpectedRevision(n),
            ),
            Some(E::NoStream(())) => (
                EXPECTED_NO_STREAM,
                append_resp::wrong_expected_version::ExpectedRevisionOption::ExpectedNoStream(()),
            ),
            Some(E::Any(())) => (
                EXPECTED_ANY,
                append_resp::wrong_expected_version::ExpectedRevisionOption::ExpectedAny(()),
            ),
            Some(E::StreamExists(())) => (
                EXPECTED_STREAM_EXISTS,
                append_resp::wrong_expected_version::ExpectedRevisionOption::ExpectedStreamExists(
                    (),
                ),
            ),
            None => return Err(status::required("expected_stream_revision")),
        };
        check(&self.app, &stream, Operation::Write, principal.as_ref())?;
        let mut events = Vec::new();
        let mut size = 0;
        while let Some(msg) = messages.message().await? {
            let Some(append_req::Content::ProposedMessage(m)) = msg.content else {
                return Err(status::bad_framing());
            };
            let (event, n) = proposed(m.id.as_ref(), &m.metadata, &m.custom_metadata, &m.data)?;
            size += n;
            if size > MAX_APPEND_SIZE {
                return Err(status::maximum_append_size_exceeded(MAX_APPEND_SIZE));
            }
            events.push(event);
        }
        let result = match append(&self.app, &stream, expected, events).await? {
            Appended::Done { last, position } => {
                use append_resp::success::{CurrentRevisionOption, PositionOption};
                append_resp::Result::Success(append_resp::Success {
                    current_revision_option: Some(if last < 0 {
                        CurrentRevisionOption::NoStream(())
                    } else {
                        CurrentRevisionOption::CurrentRevision(last as u64)
                    }),
                    position_option: Some(match position {
                        Some(p) => PositionOption::Position(append_resp::Position {
                            commit_position: p,
                            prepare_position: p,
                        }),
                        None => PositionOption::NoPosition(()),
                    }),
                })
            }
            Appended::Wrong { current } => append_resp::Result::WrongExpectedVersion(
                wrong_expected_version(wev_expected, current),
            ),
        };
        Ok(Response::new(AppendResp {
            result: Some(result),
        }))
    }

    async fn batch_append(
        &self,
        req: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<Self::BatchAppendStream>, Status> {
        let principal = super::principal(&self.app, &req)?;
        let mut requests = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let app = self.app.clone();
        tokio::spawn(async move {
            // Correlation id → (options, events so far, size so far).
            let mut pending: HashMap<shared::Uuid, Batch> = HashMap::new();
            loop {
                let msg = match requests.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let Some(correlation) = msg.correlation_id.clone() else {
                    let _ = tx.send(Err(status::required("correlation_id"))).await;
                    return;
                };
                let batch = pending.entry(correlation.clone()).or_default();
                if batch.options.is_none() {
                    batch.options = msg.options;
                }
                for m in &msg.proposed_messages {
                    match proposed(m.id.as_ref(), &m.metadata, &m.custom_metadata, &m.data) {
                        Ok((e, n)) => {
                            batch.size += n;
                            batch.events.push(e);
                        }
                        Err(e) => batch.error = batch.error.take().or(Some(e)),
                    }
                }
                if !msg.is_final {
                    continue;
                }
                let batch = pending.remove(&correlation).unwrap_or_default();
                let resp = batch_one(&app, principal.as_ref(), correlation, batch).await;
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delete(&self, req: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        let options = req
            .get_ref()
            .options
            .clone()
            .ok_or_else(|| status::required("options"))?;
        let stream = stream_name(options.stream_identifier.as_ref())?;
        use delete_req::options::ExpectedStreamRevision as E;
        let expected = match options.expected_stream_revision {
            Some(E::Revision(n)) => revision_i64(n)?,
            Some(E::NoStream(())) => EXPECTED_NO_STREAM,
            Some(E::Any(())) => EXPECTED_ANY,
            Some(E::StreamExists(())) => EXPECTED_STREAM_EXISTS,
            None => return Err(status::required("expected_stream_revision")),
        };
        self.authorize(&req, &stream, Operation::Delete)?;
        let position = delete(&self.app, &stream, expected, false).await?;
        use delete_resp::PositionOption;
        Ok(Response::new(DeleteResp {
            position_option: Some(match position {
                Some(p) => PositionOption::Position(delete_resp::Position {
                    commit_position: p,
                    prepare_position: p,
                }),
                None => PositionOption::NoPosition(()),
            }),
        }))
    }

    async fn tombstone(
        &self,
        req: Request<TombstoneReq>,
    ) -> Result<Response<TombstoneResp>, Status> {
        let options = req
            .get_ref()
            .options
            .clone()
            .ok_or_else(|| status::required("options"))?;
        let stream = stream_name(options.stream_identifier.as_ref())?;
        use tombstone_req::options::ExpectedStreamRevision as E;
        let expected = match options.expected_stream_revision {
            Some(E::Revision(n)) => revision_i64(n)?,
            Some(E::NoStream(())) => EXPECTED_NO_STREAM,
            Some(E::Any(())) => EXPECTED_ANY,
            Some(E::StreamExists(())) => EXPECTED_STREAM_EXISTS,
            None => return Err(status::required("expected_stream_revision")),
        };
        self.authorize(&req, &stream, Operation::Delete)?;
        let position = delete(&self.app, &stream, expected, true).await?;
        use tombstone_resp::PositionOption;
        Ok(Response::new(TombstoneResp {
            position_option: Some(match position {
                Some(p) => PositionOption::Position(tombstone_resp::Position {
                    commit_position: p,
                    prepare_position: p,
                }),
                None => PositionOption::NoPosition(()),
            }),
        }))
    }
}

/// A revision must fit the server's signed 64-bit event numbers.
fn revision_i64(n: u64) -> Result<i64, Status> {
    i64::try_from(n)
        .map_err(|_| Status::invalid_argument(format!("'{n}' is not a valid stream revision")))
}

fn wrong_expected_version(
    expected: append_resp::wrong_expected_version::ExpectedRevisionOption,
    current: i64,
) -> append_resp::WrongExpectedVersion {
    use append_resp::wrong_expected_version::{
        CurrentRevisionOption, CurrentRevisionOption2060, ExpectedRevisionOption,
        ExpectedRevisionOption2060,
    };
    // Both field generations are filled, as the server does (`Streams.Append.cs`).
    let expected_2060 = match &expected {
        ExpectedRevisionOption::ExpectedRevision(n) => {
            ExpectedRevisionOption2060::ExpectedRevision2060(*n)
        }
        ExpectedRevisionOption::ExpectedAny(()) => ExpectedRevisionOption2060::Any2060(()),
        ExpectedRevisionOption::ExpectedStreamExists(()) => {
            ExpectedRevisionOption2060::StreamExists2060(())
        }
        ExpectedRevisionOption::ExpectedNoStream(()) => {
            ExpectedRevisionOption2060::ExpectedRevision2060(u64::MAX)
        }
    };
    let (current_new, current_old) = if current < 0 {
        (
            CurrentRevisionOption::CurrentNoStream(()),
            CurrentRevisionOption2060::NoStream2060(()),
        )
    } else {
        (
            CurrentRevisionOption::CurrentRevision(current as u64),
            CurrentRevisionOption2060::CurrentRevision2060(current as u64),
        )
    };
    append_resp::WrongExpectedVersion {
        current_revision_option_20_6_0: Some(current_old),
        expected_revision_option_20_6_0: Some(expected_2060),
        current_revision_option: Some(current_new),
        expected_revision_option: Some(expected),
    }
}

async fn delete(
    app: &Arc<App>,
    stream: &str,
    expected: i64,
    hard: bool,
) -> Result<Option<u64>, Status> {
    let reject_missing = matches!(
        app.wire.profile,
        Profile::V21_10 | Profile::V25 | Profile::V26
    );
    let s = stream.to_owned();
    let result = blocking(&app.store, move |store| {
        store.delete(&s, expected, hard, reject_missing)
    })
    .await?
    .map_err(status::internal)?;
    let op = if hard { "Tombstone" } else { "Delete" };
    match result {
        DeleteResult::Deleted => Ok(if hard {
            app.store.event_position(stream, DELETED_STREAM)
        } else {
            let meta = acl::metastream_of(stream);
            app.store
                .event_position(&meta, app.store.last_event_number(&meta))
        }),
        DeleteResult::WrongExpectedVersion { current } => Err(status::wrong_expected_version(
            op, stream, expected, current,
        )),
        DeleteResult::StreamDeleted => Err(status::stream_deleted(stream)),
    }
}

/// One BatchAppend correlation as it arrives.
#[derive(Default)]
struct Batch {
    options: Option<batch_append_req::Options>,
    events: Vec<ProposedEvent>,
    size: usize,
    /// The first invalid proposed message.
    error: Option<Status>,
}

/// Carries out one correlation; every failure is an answer with a `google.rpc.Status`
/// (`Streams.BatchAppend.cs`, `Status.cs`), never a failed call.
async fn batch_one(
    app: &Arc<App>,
    principal: Option<&Principal>,
    correlation: shared::Uuid,
    batch: Batch,
) -> BatchAppendResp {
    use batch_append_req::options::ExpectedStreamPosition as E;
    let mut resp = BatchAppendResp {
        correlation_id: Some(correlation),
        ..Default::default()
    };
    let Some(options) = batch.options else {
        resp.result = Some(error(
            rpc::Code::InvalidArgument,
            "BadRequest",
            "event_store.client.BadRequest",
            &shared::BadRequest {
                message: "The first message of a batch must carry its options".into(),
            },
        ));
        return resp;
    };
    resp.stream_identifier = options.stream_identifier.clone();
    resp.expected_stream_position = options.expected_stream_position.map(|e| match e {
        E::StreamPosition(n) => batch_append_resp::ExpectedStreamPosition::StreamPosition(n),
        E::NoStream(x) => batch_append_resp::ExpectedStreamPosition::NoStream(x),
        E::Any(x) => batch_append_resp::ExpectedStreamPosition::Any(x),
        E::StreamExists(x) => batch_append_resp::ExpectedStreamPosition::StreamExists(x),
    });
    let bad_request = |message: String| {
        error(
            rpc::Code::InvalidArgument,
            "BadRequest",
            "event_store.client.BadRequest",
            &shared::BadRequest { message },
        )
    };
    let stream = match stream_name(options.stream_identifier.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            resp.result = Some(bad_request(e.message().to_owned()));
            return resp;
        }
    };
    let expected = match options.expected_stream_position {
        Some(E::StreamPosition(n)) => match revision_i64(n) {
            Ok(n) => n,
            Err(e) => {
                resp.result = Some(bad_request(e.message().to_owned()));
                return resp;
            }
        },
        Some(E::NoStream(_)) => EXPECTED_NO_STREAM,
        Some(E::Any(_)) | None => EXPECTED_ANY,
        Some(E::StreamExists(_)) => EXPECTED_STREAM_EXISTS,
    };
    if check(app, &stream, Operation::Write, principal).is_err() {
        resp.result = Some(error(
            rpc::Code::PermissionDenied,
            "",
            "event_store.client.AccessDenied",
            &shared::AccessDenied {},
        ));
        return resp;
    }
    if let Some(e) = batch.error {
        resp.result = Some(bad_request(e.message().to_owned()));
        return resp;
    }
    if batch.size > MAX_APPEND_SIZE {
        resp.result = Some(error(
            rpc::Code::InvalidArgument,
            "",
            "event_store.client.MaximumAppendSizeExceeded",
            &shared::MaximumAppendSizeExceeded {
                max_append_size: MAX_APPEND_SIZE as u32,
            },
        ));
        return resp;
    }
    resp.result = Some(match append(app, &stream, expected, batch.events).await {
        Ok(Appended::Done { last, position }) => {
            use batch_append_resp::success::{CurrentRevisionOption, PositionOption};
            batch_append_resp::Result::Success(batch_append_resp::Success {
                current_revision_option: Some(if last < 0 {
                    CurrentRevisionOption::NoStream(())
                } else {
                    CurrentRevisionOption::CurrentRevision(last as u64)
                }),
                position_option: Some(match position {
                    Some(p) => PositionOption::Position(shared::AllStreamPosition {
                        commit_position: p,
                        prepare_position: p,
                    }),
                    None => PositionOption::NoPosition(()),
                }),
            })
        }
        Ok(Appended::Wrong { current }) => {
            use shared::wrong_expected_version::{
                CurrentStreamRevisionOption as C, ExpectedStreamPositionOption as X,
            };
            let detail = shared::WrongExpectedVersion {
                current_stream_revision_option: Some(if current < 0 {
                    C::CurrentNoStream(())
                } else {
                    C::CurrentStreamRevision(current as u64)
                }),
                expected_stream_position_option: Some(match expected {
                    EXPECTED_ANY => X::ExpectedAny(()),
                    EXPECTED_NO_STREAM => X::ExpectedNoStream(()),
                    EXPECTED_STREAM_EXISTS => X::ExpectedStreamExists(()),
                    n => X::ExpectedStreamPosition(n as u64),
                }),
            };
            error(
                rpc::Code::AlreadyExists,
                "WrongExpectedVersion",
                "event_store.client.WrongExpectedVersion",
                &detail,
            )
        }
        Err(e) if e.code() == tonic::Code::FailedPrecondition => error(
            rpc::Code::NotFound,
            "StreamDeleted",
            "event_store.client.StreamDeleted",
            &shared::StreamDeleted {
                stream_identifier: options.stream_identifier,
            },
        ),
        Err(e) => error(
            rpc::Code::Unknown,
            e.message(),
            "event_store.client.Unknown",
            &shared::Unknown {},
        ),
    });
    resp
}

/// A BatchAppend error: the v1 `google.rpc.Status` with one packed detail.
fn error(
    code: rpc::Code,
    message: &str,
    detail_name: &str,
    detail: &impl Message,
) -> batch_append_resp::Result {
    batch_append_resp::Result::Error(rpc::Status {
        code: code as i32,
        message: message.to_owned(),
        details: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/{detail_name}"),
            value: detail.encode_to_vec(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever bytes arrive as an append message, decoding and validation answer an
        /// event or an error status, never a panic; a valid event's size counts its bytes.
        #[test]
        fn arbitrary_append_messages_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(AppendReq { content: Some(append_req::Content::ProposedMessage(m)) }) =
                AppendReq::decode(bytes.as_slice())
            {
                if let Ok((e, size)) = proposed(m.id.as_ref(), &m.metadata, &m.custom_metadata, &m.data) {
                    prop_assert!(size >= e.data.len() + e.metadata.len());
                }
            }
        }

        #[test]
        fn any_stream_name_bytes_are_named_or_refused(name in proptest::collection::vec(any::<u8>(), 0..40)) {
            let id = shared::StreamIdentifier { stream_name: Bytes::from(name.clone()) };
            match stream_name(Some(&id)) {
                Ok(s) => prop_assert!(!name.is_empty() && !s.is_empty()),
                Err(e) => {
                    prop_assert!(name.is_empty());
                    prop_assert_eq!(e.code(), tonic::Code::InvalidArgument);
                }
            }
        }
    }

    #[test]
    fn missing_type_or_content_type_names_the_required_properties() {
        let mut metadata = HashMap::new();
        metadata.insert("type".to_owned(), "A".to_owned());
        let id = proto::ids::string(uuid::Uuid::new_v4());
        let err = proposed(Some(&id), &metadata, &Bytes::new(), &Bytes::new()).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.metadata().get("required-metadata-properties").unwrap(),
            "type,content-type"
        );
        metadata.insert("content-type".to_owned(), "text/plain".to_owned());
        let (e, size) = proposed(
            Some(&id),
            &metadata,
            &Bytes::from_static(b"m"),
            &Bytes::from_static(b"dd"),
        )
        .unwrap();
        assert!(!e.is_json, "only application/json is JSON");
        assert_eq!(size, 2 + 1 + 2);
    }
}
