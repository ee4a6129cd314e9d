//! [`Client`]: the one face of an Event Store node that everything above `esdb/` uses, with an
//! arm per wire. The configured address picks the arm: `http://`/`https://` is AtomPub,
//! `kurrentdb://`/`esdb://` (and their `+discover` forms) gRPC.
//!
//! An enum rather than a trait: there are exactly two wires, the pipeline's stages must be
//! `Send` futures, and a type parameter would spread through every stage and report.
//!
//! # Positions
//!
//! A `$all` position handed to [`Client::read_all_forward`] means "what comes after it" on both
//! wires. The AtomPub wire continues from the page's `previous` link, a record's post-position with
//! prepare half 0 ("(C, 0)"); no record sits there, so the read includes everything from it. The
//! gRPC wire continues from the last record delivered, its own position ("(C, P)", P > 0), which
//! the read then leaves out. Either form is a valid resume point on either wire, so a checkpoint
//! written over one wire resumes over the other with nothing lost and nothing repeated. Positions
//! this face hands out keep to these two forms: [`Client::head`] over AtomPub, whose link says
//! (C, C), answers (C, 0).

use bytes::Bytes;
use serde_json::Value;
use uuid::Uuid;

use super::config::ClientConfig;
use super::grpc::{self, client::ReadFrom, convert::ReadEvent, ConnectionSettings};
use super::http::{self, AllFrom, Embed, PageSize, ReadOptions, StreamFrom};
use super::metadata::{StreamMetadata, SystemSettings, SETTINGS_EVENT_TYPE};
use super::node::{Gossip, NodeInfo, Security};
use super::page::{AllPage, Direction, Entry, Links, Lookup, RecordedEvent, StreamPage};
use super::types::{Appended, DeleteMode, DeleteOutcome, EventData, NewUser, UserDetails};
use super::Error;
use crate::position::{CurrentVersion, ExpectedVersion, Position, StreamRevision};

/// The wire a [`Client`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wire {
    /// AtomPub over HTTP/1.1 (`http://`, `https://`).
    Http,
    /// gRPC over HTTP/2 (`kurrentdb://`, `esdb://`, `+discover`).
    Grpc,
}

impl Wire {
    /// The wire an address names, by its scheme.
    pub fn of(address: &str) -> Option<Wire> {
        let scheme = address.split_once("://")?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "http" | "https" => Some(Wire::Http),
            "kurrentdb" | "kurrentdb+discover" | "esdb" | "esdb+discover" | "kdb"
            | "kdb+discover" => Some(Wire::Grpc),
            _ => None,
        }
    }

    /// Its name in configuration, logs and benchmark output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Wire::Http => "http",
            Wire::Grpc => "grpc",
        }
    }
}

impl std::fmt::Display for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection to one Event Store node (or cluster), over one wire.
#[derive(Clone, Debug)]
pub enum Client {
    /// AtomPub.
    Http(http::Client),
    /// gRPC.
    Grpc(grpc::Client),
}

/// A page size as the gRPC wire counts.
fn page_size(count: PageSize) -> u64 {
    u64::from(count.get())
}

impl Client {
    /// A client for `config`; the scheme of its address picks the wire. Credentials, CA file
    /// and request timeout of the configuration apply to both wires (a gRPC connection string's
    /// own credentials and `tlsCaFile` win).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an address no wire understands or unusable TLS files.
    pub fn connect(config: ClientConfig) -> Result<Client, Error> {
        match &config.grpc {
            None => http::Client::new(config).map(Client::Http),
            Some(settings) => {
                let mut settings = ConnectionSettings::clone(settings);
                if settings.tls_ca_file.is_none() {
                    settings.tls_ca_file = config.ca_file.clone();
                }
                if settings.default_deadline.is_none() {
                    settings.default_deadline = Some(config.request_timeout);
                }
                grpc::Client::new(settings.or_credentials(config.credentials)).map(Client::Grpc)
            }
        }
    }

    /// The wire this client speaks.
    pub fn wire(&self) -> Wire {
        match self {
            Client::Http(_) => Wire::Http,
            Client::Grpc(_) => Wire::Grpc,
        }
    }

    /// The AtomPub client, for what only that wire has (the contract tests, `/info`).
    pub fn as_http(&self) -> Option<&http::Client> {
        match self {
            Client::Http(c) => Some(c),
            Client::Grpc(_) => None,
        }
    }

    /// Where the node is, printable: no credentials.
    pub fn endpoint(&self) -> String {
        match self {
            Client::Http(c) => {
                let mut url = c.base_url().clone();
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.as_str().trim_end_matches('/').to_owned()
            }
            Client::Grpc(c) => c.endpoint(),
        }
    }

    /// The most data and metadata one append request may carry on this wire. AtomPub takes
    /// large requests; gRPC servers refuse appends above `MaxAppendSize` (1 MiB by default), so
    /// a request stays below it with room for the per-event fields.
    pub fn max_append_bytes(&self) -> usize {
        match self {
            Client::Http(_) => 2 << 20,
            Client::Grpc(_) => (1 << 20) - (64 << 10),
        }
    }

    /// The same node, without credentials: what an anonymous caller is allowed.
    pub fn anonymous(&self) -> Client {
        match self {
            Client::Http(c) => Client::Http(c.anonymous()),
            Client::Grpc(c) => Client::Grpc(c.anonymous()),
        }
    }

    /// Up to `count` records of `$all` after `from` (see the module docs), oldest first.
    /// [`AllPage::next`] continues; `None` with no records means the end of `$all` for now.
    /// `options` shape AtomPub reads (embed level, long poll); gRPC always carries the stored
    /// bytes and does not wait.
    ///
    /// # Errors
    ///
    /// [`Error`]; reading `$all` needs `$admins`.
    pub async fn read_all_forward(
        &self,
        from: Position,
        count: PageSize,
        options: &ReadOptions,
    ) -> Result<AllPage, Error> {
        match self {
            Client::Http(c) => {
                if from.prepare() == 0 {
                    return c.read_all_forward(from, count, options).await;
                }
                // A record's own position (a checkpoint written over gRPC): read that record,
                // and continue from its post-position, which the page's link carries.
                let one = PageSize::new(1).expect("1 is a valid page size");
                let first = c
                    .read_all_forward(
                        from,
                        one,
                        &ReadOptions {
                            long_poll: None,
                            ..options.clone()
                        },
                    )
                    .await?;
                match first.next {
                    Some(next) => c.read_all_forward(next, count, options).await,
                    None => Ok(first),
                }
            }
            Client::Grpc(c) => {
                let skip = from.prepare() != 0;
                let mut events = c
                    .read_all(
                        ReadFrom::At(from),
                        Direction::Forward,
                        page_size(count) + u64::from(skip),
                        None,
                    )
                    .await?;
                if skip && events.first().is_some_and(|e| e.position == from) {
                    events.remove(0);
                }
                events.truncate(usize::from(count.get()));
                Ok(all_page(events, Direction::Forward, count))
            }
        }
    }

    /// The end of `$all` now: a position after which nothing has been written yet, in the form
    /// of this wire (see the module docs); the start of the log when it is empty.
    ///
    /// # Errors
    ///
    /// As [`Client::read_all_forward`].
    pub async fn head(&self) -> Result<Position, Error> {
        Ok(self.head_and_newest().await?.0)
    }

    /// [`Client::head`] with the timestamp of the newest record, as the server formats it.
    ///
    /// # Errors
    ///
    /// As [`Client::read_all_forward`]; [`Error::Protocol`] when an AtomPub head page has no
    /// usable `previous` link (contract §3.4).
    pub async fn head_and_newest(&self) -> Result<(Position, Option<String>), Error> {
        let one = PageSize::new(1).expect("1 is a valid page size");
        let page = self
            .read_all_backward(AllFrom::Head, one, &ReadOptions::embed(Embed::None))
            .await?;
        let newest = page.entries.first().and_then(|e| match e {
            Entry::Event(e) => e.updated.clone(),
            Entry::Summary(s) => s.updated.clone(),
        });
        let head = match self {
            // The head page's `previous` link names the end of the log as (C, C); in the form
            // of forward pages, (C, 0), it cannot be taken for a record's own position, which
            // a read would leave out (see the module docs).
            Client::Http(_) => page
                .links
                .previous
                .as_deref()
                .and_then(|uri| http::response::all_link_position(uri).ok().flatten())
                .and_then(|p| Position::new(p.commit(), 0)),
            Client::Grpc(_) => page.next,
        };
        match head {
            Some(head) => Ok((head, newest)),
            None if page.entries.is_empty() => Ok((Position::START, None)),
            None => Err(Error::Protocol {
                op: "read the head of $all",
                endpoint: self.endpoint(),
                detail: "the head page has no usable `previous` link; the server does not \
                         follow the AtomPub contract (contract §3.4)"
                    .to_owned(),
            }),
        }
    }

    /// The record that starts exactly at `position`, when a record's own position (the gRPC
    /// form of a resume point, prepare half > 0) names one. A backward read from a position
    /// leaves out the record there; this is how to include it.
    ///
    /// # Errors
    ///
    /// As [`Client::read_all_forward`].
    pub async fn read_record_at(&self, position: Position) -> Result<Option<Entry>, Error> {
        if position.prepare() == 0 {
            return Ok(None);
        }
        let one = PageSize::new(1).expect("1 is a valid page size");
        match self {
            // AtomPub entries carry no `$all` position: the record read from a position is the
            // one there when the position came from that record.
            Client::Http(c) => Ok(c
                .read_all_forward(position, one, &ReadOptions::embed(Embed::Rich))
                .await?
                .entries
                .into_iter()
                .next()),
            Client::Grpc(c) => Ok(c
                .read_all(ReadFrom::At(position), Direction::Forward, 1, None)
                .await?
                .into_iter()
                .find(|e| e.position == position)
                .map(|e| Entry::Event(e.event))),
        }
    }

    /// Up to `count` records of `$all` before `from` (or the newest), newest first.
    ///
    /// # Errors
    ///
    /// As [`Client::read_all_forward`].
    pub async fn read_all_backward(
        &self,
        from: AllFrom,
        count: PageSize,
        options: &ReadOptions,
    ) -> Result<AllPage, Error> {
        match self {
            Client::Http(c) => c.read_all_backward(from, count, options).await,
            Client::Grpc(c) => {
                let start = match from {
                    AllFrom::Head => ReadFrom::End,
                    AllFrom::Position(p) => ReadFrom::At(p),
                };
                let events = c
                    .read_all(start, Direction::Backward, page_size(count), None)
                    .await?;
                Ok(all_page(events, Direction::Backward, count))
            }
        }
    }

    /// A page of `stream` forward from `from`.
    ///
    /// # Errors
    ///
    /// [`Error`]; a missing stream is [`Lookup::NotFound`], a hard-deleted one
    /// [`Lookup::Deleted`].
    pub async fn read_stream_forward(
        &self,
        stream: &str,
        from: StreamRevision,
        count: PageSize,
        options: &ReadOptions,
    ) -> Result<Lookup<StreamPage>, Error> {
        match self {
            Client::Http(c) => c.read_stream_forward(stream, from, count, options).await,
            Client::Grpc(c) => Ok(c
                .read_stream(
                    stream,
                    ReadFrom::At(from),
                    Direction::Forward,
                    page_size(count),
                )
                .await?
                .map(|events| stream_page(stream, events, Direction::Forward, count))),
        }
    }

    /// A page of `stream` backward from `from`.
    ///
    /// # Errors
    ///
    /// As [`Client::read_stream_forward`].
    pub async fn read_stream_backward(
        &self,
        stream: &str,
        from: StreamFrom,
        count: PageSize,
        options: &ReadOptions,
    ) -> Result<Lookup<StreamPage>, Error> {
        match self {
            Client::Http(c) => c.read_stream_backward(stream, from, count, options).await,
            Client::Grpc(c) => {
                let start = match from {
                    StreamFrom::Head => ReadFrom::End,
                    StreamFrom::Revision(r) => ReadFrom::At(r),
                };
                Ok(
                    c.read_stream(stream, start, Direction::Backward, page_size(count))
                        .await?
                        .map(|events| stream_page(stream, events, Direction::Backward, count)),
                )
            }
        }
    }

    /// One event of `stream` (the newest for [`StreamFrom::Head`]). Over gRPC the entry always
    /// carries the stored data and metadata, whatever `embed` asks.
    ///
    /// # Errors
    ///
    /// As [`Client::read_stream_forward`].
    pub async fn read_event_entry(
        &self,
        stream: &str,
        at: StreamFrom,
        embed: Embed,
    ) -> Result<Lookup<Entry>, Error> {
        match self {
            Client::Http(c) => c.read_event_entry(stream, at, embed).await,
            Client::Grpc(c) => Ok(match grpc_one(c, stream, at).await? {
                Lookup::Found(Some(e)) => Lookup::Found(Entry::Event(e.event)),
                Lookup::Found(None) | Lookup::NotFound => Lookup::NotFound,
                Lookup::Deleted => Lookup::Deleted,
            }),
        }
    }

    /// The stored data bytes of one event, exactly; links are not resolved.
    ///
    /// # Errors
    ///
    /// As [`Client::read_stream_forward`].
    pub async fn read_record_raw(
        &self,
        stream: &str,
        revision: StreamRevision,
    ) -> Result<Lookup<Bytes>, Error> {
        match self {
            Client::Http(c) => c.read_record_raw(stream, revision).await,
            Client::Grpc(c) => Ok(
                match grpc_one(c, stream, StreamFrom::Revision(revision)).await? {
                    Lookup::Found(Some(e)) => Lookup::Found(e.data().clone()),
                    Lookup::Found(_) | Lookup::NotFound => Lookup::NotFound,
                    Lookup::Deleted => Lookup::Deleted,
                },
            ),
        }
    }

    /// The newest event of `stream`, with its data; `Found(None)` for a stream without events.
    ///
    /// # Errors
    ///
    /// As [`Client::read_stream_forward`].
    pub async fn read_last_entry(&self, stream: &str) -> Result<Lookup<Option<Entry>>, Error> {
        match self {
            Client::Http(c) => c.read_last_entry(stream).await,
            Client::Grpc(c) => Ok(grpc_one(c, stream, StreamFrom::Head)
                .await?
                .map(|e| e.map(|e| Entry::Event(e.event)))),
        }
    }

    /// The last record of the metastream `$$stream`; `None` when it holds none.
    ///
    /// # Errors
    ///
    /// As [`Client::read_stream_forward`].
    pub async fn read_metastream_head(&self, stream: &str) -> Result<Option<RecordedEvent>, Error> {
        match self {
            Client::Http(c) => c.read_metastream_head(stream).await,
            Client::Grpc(c) => Ok(c.read_metadata_raw(stream).await?.found().map(|e| e.event)),
        }
    }

    /// The metadata of `stream`: `{}` for a stream without metadata, [`Lookup::NotFound`] for a
    /// stream that has neither events nor metadata.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`]/[`Error::Decode`] when the metadata is not a JSON object.
    pub async fn read_stream_metadata(
        &self,
        stream: &str,
    ) -> Result<Lookup<StreamMetadata>, Error> {
        match self {
            Client::Http(c) => c.read_stream_metadata(stream).await,
            Client::Grpc(c) => match c.read_metadata_raw(stream).await? {
                Lookup::Found(e) => {
                    let document: Value =
                        serde_json::from_slice(e.data()).map_err(|err| Error::Protocol {
                            op: "read stream metadata",
                            endpoint: c.endpoint(),
                            detail: format!("the metadata of {stream:?} is not JSON: {err}"),
                        })?;
                    Ok(Lookup::Found(StreamMetadata::new(document)))
                }
                Lookup::Deleted => Ok(Lookup::Deleted),
                Lookup::NotFound => Ok(match grpc_one(c, stream, StreamFrom::Head).await? {
                    Lookup::Found(_) => {
                        Lookup::Found(StreamMetadata::new(Value::Object(serde_json::Map::new())))
                    }
                    Lookup::NotFound => Lookup::NotFound,
                    Lookup::Deleted => Lookup::Deleted,
                }),
            },
        }
    }

    /// Writes a `$metadata` record with id `event_id` and the bytes `metadata` into `$$stream`;
    /// `expected` refers to the metastream.
    ///
    /// # Errors
    ///
    /// [`Error::WrongExpectedVersion`], [`Error::StreamDeleted`], other [`Error`]s.
    pub async fn write_stream_metadata(
        &self,
        stream: &str,
        event_id: Uuid,
        metadata: Bytes,
        expected: ExpectedVersion,
    ) -> Result<Appended, Error> {
        match self {
            Client::Http(c) => {
                c.write_stream_metadata(stream, event_id, metadata, expected)
                    .await
            }
            Client::Grpc(c) => {
                let written = c
                    .write_metadata_raw(stream, expected, event_id, metadata)
                    .await?;
                Ok(appended(written.current, 1))
            }
        }
    }

    /// Appends `events` atomically if `stream` is at `expected`. Over gRPC the ids, types,
    /// content types, data and metadata bytes are stored exactly; over AtomPub as far as the
    /// batch form allows ([`Error::Encode`] names the events it cannot carry).
    ///
    /// # Errors
    ///
    /// [`Error::WrongExpectedVersion`], [`Error::StreamDeleted`], other [`Error`]s. Only `Ok`
    /// means the events are stored.
    pub async fn append_events<E: std::borrow::Borrow<EventData>>(
        &self,
        stream: &str,
        events: &[E],
        expected: ExpectedVersion,
    ) -> Result<Appended, Error> {
        match self {
            Client::Http(c) => c.append_events(stream, events, expected).await,
            Client::Grpc(c) => {
                let owned: Vec<EventData> = events.iter().map(|e| e.borrow().clone()).collect();
                let written = c.append(stream, expected, &owned).await?;
                Ok(appended(written.current, owned.len()))
            }
        }
    }

    /// The index of the first event a failed batch append could not carry (AtomPub's batch form
    /// holds only JSON text); that event must go alone through [`Client::append_single`]. `None`
    /// for any other error, and always over gRPC, which carries every event.
    pub fn refused_in_batch(&self, e: &Error) -> Option<usize> {
        match self {
            Client::Http(_) => http::append::refused_in_batch(e),
            Client::Grpc(_) => None,
        }
    }

    /// Whether [`Client::append_single`] leaves out part of `event` (over AtomPub: its metadata).
    pub fn single_drops_metadata(&self, event: &EventData) -> bool {
        match self {
            Client::Http(_) => http::append::single_drops_metadata(event),
            Client::Grpc(_) => false,
        }
    }

    /// Appends `event` alone, its data bytes unchanged; over AtomPub in a single-event form,
    /// without its metadata.
    ///
    /// # Errors
    ///
    /// As [`Client::append_events`].
    pub async fn append_single(
        &self,
        stream: &str,
        event: &EventData,
        expected: ExpectedVersion,
    ) -> Result<Appended, Error> {
        match self {
            Client::Http(c) => http::append::append_single(c, stream, event, expected).await,
            Client::Grpc(_) => {
                self.append_events(stream, std::slice::from_ref(event), expected)
                    .await
            }
        }
    }

    /// Appends one JSON event whose data is `data`, unchanged.
    ///
    /// # Errors
    ///
    /// As [`Client::append_events`].
    pub async fn append_json_event(
        &self,
        stream: &str,
        event_id: Uuid,
        event_type: &str,
        data: Bytes,
        expected: ExpectedVersion,
    ) -> Result<Appended, Error> {
        match self {
            Client::Http(c) => {
                c.append_json_event(stream, event_id, event_type, data, expected)
                    .await
            }
            Client::Grpc(_) => {
                self.append_events(
                    stream,
                    &[EventData::json(event_id, event_type, data)],
                    expected,
                )
                .await
            }
        }
    }

    /// Appends one non-JSON event whose data is `data`, unchanged.
    ///
    /// # Errors
    ///
    /// As [`Client::append_events`].
    pub async fn append_binary_event(
        &self,
        stream: &str,
        event_id: Uuid,
        event_type: &str,
        data: Bytes,
        expected: ExpectedVersion,
    ) -> Result<Appended, Error> {
        match self {
            Client::Http(c) => {
                c.append_binary_event(stream, event_id, event_type, data, expected)
                    .await
            }
            Client::Grpc(_) => {
                self.append_events(
                    stream,
                    &[EventData::binary(event_id, event_type, data)],
                    expected,
                )
                .await
            }
        }
    }

    /// Soft-deletes (metadata `$tb`) or tombstones `stream`.
    ///
    /// # Errors
    ///
    /// [`Error::WrongExpectedVersion`], other [`Error`]s. A repeated hard delete is
    /// [`DeleteOutcome::AlreadyHardDeleted`].
    pub async fn delete_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        mode: DeleteMode,
    ) -> Result<DeleteOutcome, Error> {
        match self {
            Client::Http(c) => c.delete_stream(stream, expected, mode).await,
            Client::Grpc(c) => {
                let deleted = match mode {
                    DeleteMode::Soft => c.delete(stream, expected).await,
                    DeleteMode::Hard => c.tombstone(stream, expected).await,
                };
                match deleted {
                    Ok(_) => Ok(DeleteOutcome::Deleted),
                    Err(Error::StreamDeleted { .. }) if mode == DeleteMode::Hard => {
                        Ok(DeleteOutcome::AlreadyHardDeleted)
                    }
                    Err(Error::WrongExpectedVersion {
                        current: Some(CurrentVersion::NoStream),
                        ..
                    }) if expected == ExpectedVersion::Any => Ok(DeleteOutcome::StreamNotFound),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The system settings (the last `$settings` event), `None` when none were ever written.
    ///
    /// # Errors
    ///
    /// [`Error`]; reading `$settings` needs `$admins`.
    pub async fn read_settings(&self) -> Result<Option<SystemSettings>, Error> {
        Ok(self.read_settings_versioned().await?.0)
    }

    /// The system settings with the number of the `$settings` event that holds them, for a
    /// conditional write: [`ExpectedVersion::NoStream`] when `$settings` is empty.
    ///
    /// # Errors
    ///
    /// As [`Client::read_settings`].
    pub async fn read_settings_versioned(
        &self,
    ) -> Result<(Option<SystemSettings>, ExpectedVersion), Error> {
        match self {
            Client::Http(c) => c.read_settings_versioned().await,
            Client::Grpc(c) => {
                let event = match grpc_one(c, super::SETTINGS_STREAM, StreamFrom::Head).await? {
                    Lookup::Found(Some(e)) => e,
                    _ => return Ok((None, ExpectedVersion::NoStream)),
                };
                let document: Value =
                    serde_json::from_slice(event.data()).map_err(|err| Error::Protocol {
                        op: "read $settings",
                        endpoint: c.endpoint(),
                        detail: format!("the last $settings event is not JSON: {err}"),
                    })?;
                Ok((
                    Some(SystemSettings::new(document)),
                    ExpectedVersion::Exact(event.event.revision),
                ))
            }
        }
    }

    /// Appends the system settings to `$settings` as one JSON event of type `event_type`
    /// (default `update-default-acl`); the server reloads its default ACLs from it.
    ///
    /// # Errors
    ///
    /// As [`Client::append_events`].
    pub async fn write_settings(
        &self,
        settings: &SystemSettings,
        event_id: Uuid,
        event_type: Option<&str>,
        expected: ExpectedVersion,
    ) -> Result<Appended, Error> {
        let body = serde_json::to_vec(settings.as_json()).map_err(|e| Error::Config {
            detail: format!("cannot serialise the settings: {e}"),
        })?;
        self.append_json_event(
            super::SETTINGS_STREAM,
            event_id,
            event_type.unwrap_or(SETTINGS_EVENT_TYPE),
            body.into(),
            expected,
        )
        .await
    }

    /// The account `login`.
    ///
    /// # Errors
    ///
    /// [`Error`]; reading another account needs `$admins`.
    pub async fn get_user(&self, login: &str) -> Result<Lookup<UserDetails>, Error> {
        match self {
            Client::Http(c) => c.get_user(login).await,
            Client::Grpc(c) => c.user(login).await,
        }
    }

    /// Whether the configured credentials authenticate. Over AtomPub this is `GET
    /// /users/$current`; gRPC has no such call, so it reads the account of the configured login.
    ///
    /// # Errors
    ///
    /// [`Error::Unauthorized`]/[`Error::AccessDenied`] for credentials the node refuses.
    pub async fn authenticate(&self) -> Result<(), Error> {
        match self {
            Client::Http(c) => c.current_user().await.map(|_| ()),
            Client::Grpc(c) => {
                let login = c
                    .settings()
                    .credentials
                    .as_ref()
                    .map(|c| c.username.clone())
                    .unwrap_or_default();
                // Reading one's own account needs no role; an unknown account and a node
                // without user management still mean the credentials were accepted.
                match c.user(&login).await {
                    Ok(_) | Err(Error::UserNotFound { .. }) => Ok(()),
                    Err(Error::Rejected { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Creates an account.
    ///
    /// # Errors
    ///
    /// [`Error`]; needs `$admins`.
    pub async fn create_user(&self, user: &NewUser<'_>) -> Result<(), Error> {
        match self {
            Client::Http(c) => c.create_user(user).await,
            Client::Grpc(c) => c.create_user(user).await,
        }
    }

    /// Disables the account `login`: it fails authentication from now on.
    ///
    /// # Errors
    ///
    /// [`Error`]; needs `$admins`.
    pub async fn disable_user(&self, login: &str) -> Result<(), Error> {
        match self {
            Client::Http(c) => c.disable_user(login).await,
            Client::Grpc(c) => c.disable_user(login).await,
        }
    }

    /// Enables the account `login`.
    ///
    /// # Errors
    ///
    /// [`Error`]; needs `$admins`.
    pub async fn enable_user(&self, login: &str) -> Result<(), Error> {
        match self {
            Client::Http(c) => c.enable_user(login).await,
            Client::Grpc(c) => c.enable_user(login).await,
        }
    }

    /// The cluster's members as the node sees them.
    ///
    /// # Errors
    ///
    /// [`Error`].
    pub async fn gossip(&self) -> Result<Gossip, Error> {
        match self {
            Client::Http(c) => c.gossip().await,
            Client::Grpc(c) => c.gossip().await,
        }
    }

    /// What the node says about itself: over AtomPub `/info`; over gRPC the version from
    /// `ServerFeatures` (AtomPub's switch does not matter to this wire, so it reads as on).
    ///
    /// # Errors
    ///
    /// [`Error`] when the node cannot be asked.
    pub async fn info(&self) -> Result<NodeInfo, Error> {
        match self {
            Client::Http(c) => c.info().await,
            Client::Grpc(c) => Ok(NodeInfo {
                version: Some(c.server_features().await?.version),
                state: None,
                features: None,
                authentication: None,
                projections_mode: None,
            }),
        }
    }

    /// How the node is secured (see [`Security`]).
    ///
    /// # Errors
    ///
    /// [`Error`] when the node cannot be asked.
    pub async fn security(&self) -> Result<Security, Error> {
        match self {
            Client::Http(c) => c.security().await,
            Client::Grpc(c) => c.security().await,
        }
    }

    /// How far the node's clock is ahead of this machine's, in seconds, when the node says
    /// what time it is.
    ///
    /// # Errors
    ///
    /// [`Error`] when the node cannot be asked.
    pub async fn clock_offset_secs(&self) -> Result<Option<f64>, Error> {
        match self {
            Client::Http(c) => c.clock_offset_secs().await,
            // The node's HTTP face on the same address answers `/info` with its `Date`
            // whether AtomPub is on or not; gRPC replies carry no clock.
            Client::Grpc(c) => {
                let settings = c.settings();
                let Some(host) = settings.hosts.first() else {
                    return Ok(None);
                };
                let scheme = if settings.tls { "https" } else { "http" };
                let url = reqwest::Url::parse(&format!("{scheme}://{}:{}", host.host, host.port))
                    .map_err(|e| Error::Config {
                    detail: format!("{}: {e}", c.endpoint()),
                })?;
                let mut config = ClientConfig::new(url);
                config.ca_file = settings.tls_ca_file.clone();
                http::Client::new(config)?.clock_offset_secs().await
            }
        }
    }
}

/// One event of `stream` at `at` (`Found(None)`: the stream has no event there). A read from a
/// number returns the first visible event at or after it, so an event hidden by a truncation
/// or a soft delete would answer with a later one: only that exact number counts.
async fn grpc_one(
    c: &grpc::Client,
    stream: &str,
    at: StreamFrom,
) -> Result<Lookup<Option<ReadEvent>>, Error> {
    let (start, direction) = match at {
        StreamFrom::Head => (ReadFrom::End, Direction::Backward),
        StreamFrom::Revision(r) => (ReadFrom::At(r), Direction::Forward),
    };
    Ok(c.read_stream(stream, start, direction, 1)
        .await?
        .map(|mut events| {
            events.pop().filter(|e| match at {
                StreamFrom::Revision(r) => e.event.revision == r,
                StreamFrom::Head => true,
            })
        }))
}

/// What an append over gRPC answers, in the shape of an AtomPub one: the number of the first
/// event written, from the stream's revision after `n` events.
fn appended(current: CurrentVersion, n: usize) -> Appended {
    let first = match current {
        CurrentVersion::Revision(last) => {
            StreamRevision::new(last.get().saturating_sub(n.saturating_sub(1) as u64))
        }
        CurrentVersion::NoStream => None,
    };
    Appended {
        first,
        location: None,
    }
}

/// A page of `$all` from gRPC records: the next read continues after the last one.
fn all_page(events: Vec<ReadEvent>, direction: Direction, count: PageSize) -> AllPage {
    let is_end = events.len() < usize::from(count.get());
    let next = events.last().map(|e| e.position);
    AllPage {
        direction,
        entries: events.into_iter().map(|e| Entry::Event(e.event)).collect(),
        next,
        is_end,
        etag: None,
        links: Links::default(),
    }
}

/// A page of a stream from gRPC records.
fn stream_page(
    stream: &str,
    events: Vec<ReadEvent>,
    direction: Direction,
    count: PageSize,
) -> StreamPage {
    let is_end = events.len() < usize::from(count.get());
    let next = events.last().and_then(|e| match direction {
        Direction::Forward => e.event.revision.next(),
        Direction::Backward => e
            .event
            .revision
            .get()
            .checked_sub(1)
            .and_then(StreamRevision::new),
    });
    StreamPage {
        stream: stream.to_owned(),
        direction,
        entries: events.into_iter().map(|e| Entry::Event(e.event)).collect(),
        next,
        is_end,
        head_of_stream: direction == Direction::Forward && is_end,
        etag: None,
        links: Links::default(),
    }
}
