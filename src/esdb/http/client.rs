//! [`Client`]: the IO half of the Event Store HTTP client. Each method builds one request (URL,
//! headers, body), sends it over a shared connection pool, captures the response as a
//! [`RawResponse`] and hands it to one pure decoder in [`super::response`].
//!
//! # Cancel safety
//!
//! Every method is cancel-safe in the Rust sense (dropping the future aborts the HTTP request and
//! leaves the client usable). For *writes* a dropped or timed-out request has an unknown outcome:
//! the server may have applied it. Retry with the same event ids and an exact expected version,
//! which the server treats as an idempotent replay (contract §5.5).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, IF_NONE_MATCH};
use reqwest::{Method, Url};
use tracing::{debug, instrument};
use uuid::Uuid;

use super::encode::{self, EncodeError, Part};
use super::headers::{media, ETag, HeaderFamily, RequestHeader};
use super::request::{AllFrom, Embed, PageSize, ReadOptions, Routes, StreamFrom};
use super::response::{self, RawResponse, RequestInfo};
use crate::esdb::config::{ClientConfig, Credentials};
use crate::esdb::error::Error;
use crate::esdb::metadata::{StreamMetadata, SystemSettings, SETTINGS_EVENT_TYPE};
use crate::esdb::node::{Gossip, Liveness, NodeInfo, Security};
use crate::esdb::page::{AllPage, Direction, Entry, Lookup, StreamPage};
use crate::esdb::tls;
use crate::esdb::types::{Appended, DeleteMode, DeleteOutcome, EventData};
use crate::position::{ExpectedVersion, Position, StreamRevision};

/// The system settings stream (contract §8).
pub const SETTINGS_STREAM: &str = "$settings";

/// Most bytes reserved up front from a response's `Content-Length`.
const BODY_CAPACITY_HINT_MAX: u64 = 16 << 20;

/// One request, before it is sent.
pub(super) struct Call {
    method: Method,
    url: Url,
    accept: Option<&'static str>,
    content_type: Option<&'static str>,
    headers: Vec<(HeaderName, HeaderValue)>,
    if_none_match: Option<ETag>,
    body: Option<Bytes>,
    /// Added to the request timeout (long polls).
    extra_timeout: Duration,
}

impl Call {
    pub(super) fn new(method: Method, url: Url) -> Call {
        Call {
            method,
            url,
            accept: None,
            content_type: None,
            headers: Vec::new(),
            if_none_match: None,
            body: None,
            extra_timeout: Duration::ZERO,
        }
    }

    pub(super) fn accept(mut self, media_type: &'static str) -> Call {
        self.accept = Some(media_type);
        self
    }

    pub(super) fn body(mut self, content_type: &'static str, body: Bytes) -> Call {
        self.content_type = Some(content_type);
        self.body = Some(body);
        self
    }

    fn header(mut self, name: HeaderName, value: HeaderValue) -> Call {
        self.headers.push((name, value));
        self
    }
}

/// An Event Store AtomPub HTTP client for one node (or load balancer).
///
/// Cheap to clone: clones share the connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    pub(super) routes: Routes,
    credentials: Option<Credentials>,
    family: HeaderFamily,
    request_timeout: Duration,
}

fn config_error(detail: impl Into<String>) -> Error {
    Error::Config {
        detail: detail.into(),
    }
}

fn header_value_of(value: impl ToString) -> HeaderValue {
    // Only used for decimal numbers, UUIDs and `true`: always valid header values.
    HeaderValue::from_str(&value.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl Client {
    /// Builds a client: validates the base URL, sets up TLS (ring provider, system roots plus the
    /// optional CA file) and the connection pool.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a base URL that is not http(s), has no host or carries credentials,
    /// for an unusable CA file, or when no trust root is available for an https URL.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        let base = config.base_url;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(config_error(format!(
                "the base URL must start with http:// or https://, got {:?}",
                base.scheme()
            )));
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(config_error("the base URL has no host"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(config_error(
                "the base URL contains user info; remove it and configure the username and \
                 password as credentials instead (URLs end up in logs, credentials never do)",
            ));
        }
        let tls = tls::client_config(
            config.ca_file.as_deref(),
            config.http2,
            base.scheme() == "https",
        )?;
        // `tls_backend_preconfigured` downcasts to reqwest's own `rustls::ClientConfig` type, so
        // our `rustls` must stay the same semver-compatible version as reqwest's (one entry in
        // Cargo.lock); a mismatch makes `build()` fail, which the tests below would catch.
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(config.connect_timeout)
            // Redirects are surfaced as errors: a 307 from a follower names the leader, and
            // silently re-sending writes elsewhere would hide a misconfiguration.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("standby/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config_error(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            routes: Routes::new(base),
            credentials: config.credentials,
            family: config.header_family,
            request_timeout: config.request_timeout,
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &Url {
        self.routes.base()
    }

    /// The header family this client sends.
    pub fn header_family(&self) -> HeaderFamily {
        self.family
    }

    fn request_header(&self, header: RequestHeader) -> HeaderName {
        header.header_name(self.family)
    }

    fn expected_version_header(&self, expected: ExpectedVersion) -> (HeaderName, HeaderValue) {
        (
            self.request_header(RequestHeader::ExpectedVersion),
            header_value_of(expected.header_value()),
        )
    }

    fn read_headers(&self, mut call: Call, options: &ReadOptions) -> Call {
        if let Some(seconds) = options.long_poll_seconds() {
            call = call.header(
                self.request_header(RequestHeader::LongPoll),
                header_value_of(seconds),
            );
            call.extra_timeout = Duration::from_secs(seconds);
        }
        if let Some(resolve) = options.resolve_link_tos {
            call = call.header(
                self.request_header(RequestHeader::ResolveLinkTos),
                HeaderValue::from_static(if resolve { "true" } else { "false" }),
            );
        }
        call
    }

    /// Sends one request and captures the whole response.
    #[instrument(level = "debug", skip_all, fields(method = %call.method, url = %call.url))]
    pub(super) async fn execute(&self, call: Call) -> Result<(RequestInfo, RawResponse), Error> {
        let info = RequestInfo {
            method: call.method.clone(),
            url: call.url.to_string(),
            user: self.credentials.as_ref().map(|c| c.username.clone()),
        };
        let timeout = self.request_timeout + call.extra_timeout;
        let mut builder = self.http.request(call.method, call.url);
        if let Some(accept) = call.accept {
            builder = builder.header(ACCEPT, accept);
        }
        if let Some(content_type) = call.content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        if let Some(etag) = &call.if_none_match {
            builder = builder.header(IF_NONE_MATCH, etag.as_str());
        }
        for (name, value) in call.headers {
            builder = builder.header(name, value);
        }
        if let Some(credentials) = &self.credentials {
            builder =
                builder.basic_auth(&credentials.username, Some(credentials.password.expose()));
        }
        if let Some(body) = call.body {
            builder = builder.body(body);
        }

        let map_error = |e: reqwest::Error| {
            if e.is_timeout() {
                Error::Timeout {
                    method: info.method.clone(),
                    url: info.url.clone(),
                    timeout,
                }
            } else if e.is_connect() {
                Error::Connect {
                    url: info.url.clone(),
                    source: e,
                }
            } else {
                Error::Transport {
                    method: info.method.clone(),
                    url: info.url.clone(),
                    source: e,
                }
            }
        };
        // No whole-request timeout: a large page over a slow link can take longer than any fixed
        // bound while still arriving, and retrying it at the same size would never end (engine
        // review 14). The wait for the response head is bounded (it includes a long poll), then
        // the wait for each chunk of the body, so only a stalled transfer times out.
        let timed_out = |timeout: Duration| Error::Timeout {
            method: info.method.clone(),
            url: info.url.clone(),
            timeout,
        };
        let mut response = tokio::time::timeout(timeout, builder.send())
            .await
            .map_err(|_| timed_out(timeout))?
            .map_err(map_error)?;
        let status = response.status();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|reason| String::from_utf8_lossy(reason.as_bytes()).into_owned())
            .filter(|reason| !reason.is_empty());
        let headers = response.headers().clone();
        // The announced length is a hint only: capped, so a bad header cannot reserve gigabytes.
        let hint = response
            .content_length()
            .unwrap_or(0)
            .min(BODY_CAPACITY_HINT_MAX);
        let mut body = BytesMut::with_capacity(usize::try_from(hint).unwrap_or(0));
        loop {
            let chunk = tokio::time::timeout(self.request_timeout, response.chunk())
                .await
                .map_err(|_| timed_out(self.request_timeout))?
                .map_err(map_error)?;
            match chunk {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        let body = body.freeze();
        debug!(
            status = status.as_u16(),
            reason = reason.as_deref(),
            body_bytes = body.len(),
            "response"
        );
        Ok((
            info,
            RawResponse {
                status,
                reason,
                headers,
                body,
            },
        ))
    }

    async fn read_all(
        &self,
        from: AllFrom,
        direction: Direction,
        count: PageSize,
        options: &ReadOptions,
        if_none_match: Option<&ETag>,
    ) -> Result<Option<AllPage>, Error> {
        let (info, resp) = self
            .fetch_all(from, direction, count, options, if_none_match)
            .await?;
        response::decode_all_page(&info, &resp, direction, count)
    }

    /// Sends a `$all` page request and returns the response undecoded.
    async fn fetch_all(
        &self,
        from: AllFrom,
        direction: Direction,
        count: PageSize,
        options: &ReadOptions,
        if_none_match: Option<&ETag>,
    ) -> Result<(RequestInfo, RawResponse), Error> {
        let url = self.routes.all(from, direction, count, options.embed);
        let mut call = Call::new(Method::GET, url).accept(media::atom_json(self.family));
        call = self.read_headers(call, options);
        call.if_none_match = if_none_match.cloned();
        self.execute(call).await
    }

    /// Reads a page of `$all` forward from `from` (a position handed out by the server, or
    /// [`Position::START`]).
    ///
    /// Continue from [`AllPage::next`]; when it is `None` (end of `$all`), poll `from` again,
    /// preferably with [`ReadOptions::long_poll`].
    ///
    /// # Errors
    ///
    /// [`Error`]; notably [`Error::Unauthorized`] (reading `$all` needs `$admins`) and
    /// [`Error::NotFound`] when AtomPub is disabled.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all, fields(from = %from, count = count.get(), embed = ?options.embed))]
    pub async fn read_all_forward(
        &self,
        from: Position,
        count: PageSize,
        options: &ReadOptions,
    ) -> Result<AllPage, Error> {
        self.fetch_all_forward(from, count, options).await?.decode()
    }

    /// [`Client::read_all_forward`] in two steps: the response as received, then
    /// [`FetchedAllPage::decode`]. In between, [`FetchedAllPage::continuation_hint`] tells where
    /// the next page starts, so that it can be requested while this one is decoded.
    ///
    /// # Errors
    ///
    /// Transport errors; status and body errors come from [`FetchedAllPage::decode`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    pub async fn fetch_all_forward(
        &self,
        from: Position,
        count: PageSize,
        options: &ReadOptions,
    ) -> Result<FetchedAllPage, Error> {
        let (info, resp) = self
            .fetch_all(
                AllFrom::Position(from),
                Direction::Forward,
                count,
                options,
                None,
            )
            .await?;
        Ok(FetchedAllPage { info, resp, count })
    }

    /// Like [`Client::read_all_forward`] with `If-None-Match: etag`: `Ok(None)` when `$all` has not
    /// changed since the page that carried `etag` (304). With a long poll the server waits for a
    /// change instead of answering 304 at once (contract §3.5).
    ///
    /// # Errors
    ///
    /// As [`Client::read_all_forward`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all, fields(from = %from, count = count.get(), etag = %etag))]
    pub async fn read_all_forward_if_changed(
        &self,
        from: Position,
        count: PageSize,
        options: &ReadOptions,
        etag: &ETag,
    ) -> Result<Option<AllPage>, Error> {
        self.read_all(
            AllFrom::Position(from),
            Direction::Forward,
            count,
            options,
            Some(etag),
        )
        .await
    }

    /// Reads a page of `$all` backward from the head or a position; [`AllPage::next`] continues
    /// towards older events.
    ///
    /// # Errors
    ///
    /// As [`Client::read_all_forward`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all, fields(from = %from, count = count.get(), embed = ?options.embed))]
    pub async fn read_all_backward(
        &self,
        from: AllFrom,
        count: PageSize,
        options: &ReadOptions,
    ) -> Result<AllPage, Error> {
        self.read_all(from, Direction::Backward, count, options, None)
            .await?
            .ok_or_else(|| {
                unexpected_not_modified(self.routes.all(
                    from,
                    Direction::Backward,
                    count,
                    options.embed,
                ))
            })
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: StreamFrom,
        direction: Direction,
        count: PageSize,
        options: &ReadOptions,
    ) -> Result<Lookup<StreamPage>, Error> {
        let url = self
            .routes
            .stream_page(stream, from, direction, count, options.embed);
        let call = self.read_headers(
            Call::new(Method::GET, url).accept(media::atom_json(self.family)),
            options,
        );
        let (info, resp) = self.execute(call).await?;
        response::decode_stream_page(&info, &resp, stream, direction, count)
    }

    /// Reads a page of a stream forward from `from`.
    ///
    /// Returns [`Lookup::NotFound`] for a stream that never existed or is soft-deleted and
    /// [`Lookup::Deleted`] for a hard-deleted one. A node with AtomPub disabled also answers 404 for
    /// every stream, indistinguishably; check [`NodeInfo::atom_pub_enabled`] (via
    /// [`Client::info`]) once at startup.
    ///
    /// # Errors
    ///
    /// [`Error`] for everything else.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all, fields(stream = %stream, from = %from, count = count.get()))]
    pub async fn read_stream_forward(
        &self,
        stream: &str,
        from: StreamRevision,
        count: PageSize,
        options: &ReadOptions,
    ) -> Result<Lookup<StreamPage>, Error> {
        self.read_stream(
            stream,
            StreamFrom::Revision(from),
            Direction::Forward,
            count,
            options,
        )
        .await
    }

    /// Reads a page of a stream backward from the head or an event number.
    ///
    /// # Errors
    ///
    /// As [`Client::read_stream_forward`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all, fields(stream = %stream, from = %from, count = count.get()))]
    pub async fn read_stream_backward(
        &self,
        stream: &str,
        from: StreamFrom,
        count: PageSize,
        options: &ReadOptions,
    ) -> Result<Lookup<StreamPage>, Error> {
        self.read_stream(stream, from, Direction::Backward, count, options)
            .await
    }

    /// Reads the stored data bytes of one event (`Accept: application/octet-stream`), the only
    /// lossless way to get the data of a non-JSON event (contract §3.7).
    ///
    /// # Errors
    ///
    /// [`Error`]; a missing event or stream is [`Lookup::NotFound`], not an error.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all, fields(stream = %stream, at = %at))]
    pub async fn read_event_raw(
        &self,
        stream: &str,
        at: StreamFrom,
    ) -> Result<Lookup<Bytes>, Error> {
        let url = self.routes.event(stream, at, Embed::None);
        let (info, resp) = self
            .execute(Call::new(Method::GET, url).accept(media::OCTET_STREAM))
            .await?;
        response::decode_raw_event(&info, &resp)
    }

    /// Reads the stored data bytes of one *record*, without resolving it when it is a link
    /// (`ES-ResolveLinkTos: false`): for a `$>` record, its own `"<n>@<stream>"` data rather than
    /// the target's. Stream and single-event reads resolve links by default (contract §4.3), which
    /// is right for applications and wrong for a copy.
    ///
    /// # Errors
    ///
    /// As [`Client::read_event_raw`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all, fields(stream = %stream, revision = %revision))]
    pub async fn read_record_raw(
        &self,
        stream: &str,
        revision: StreamRevision,
    ) -> Result<Lookup<Bytes>, Error> {
        let url = self
            .routes
            .event(stream, StreamFrom::Revision(revision), Embed::None);
        let options = ReadOptions {
            resolve_link_tos: Some(false),
            ..ReadOptions::default()
        };
        let call = self.read_headers(
            Call::new(Method::GET, url).accept(media::OCTET_STREAM),
            &options,
        );
        let (info, resp) = self.execute(call).await?;
        response::decode_raw_event(&info, &resp)
    }

    /// Reads one event as an Atom entry (with `content` for JSON events, or rich fields when
    /// `embed >= rich`).
    ///
    /// # Errors
    ///
    /// As [`Client::read_event_raw`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all, fields(stream = %stream, at = %at, embed = ?embed))]
    pub async fn read_event_entry(
        &self,
        stream: &str,
        at: StreamFrom,
        embed: Embed,
    ) -> Result<Lookup<Entry>, Error> {
        let url = self.routes.event(stream, at, embed);
        let (info, resp) = self
            .execute(Call::new(Method::GET, url).accept(media::atom_json(self.family)))
            .await?;
        response::decode_entry(&info, &resp)
    }

    /// The newest entry of `stream` (data embedded, links unresolved): [`Lookup::Found`] with
    /// `None` when the stream has no readable event. For standby's own state streams, whose head
    /// is the current record.
    ///
    /// # Errors
    ///
    /// As [`Client::read_stream_backward`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    pub async fn read_last_entry(&self, stream: &str) -> Result<Lookup<Option<Entry>>, Error> {
        let options = ReadOptions {
            embed: Embed::Body,
            long_poll: None,
            resolve_link_tos: Some(false),
        };
        let one = PageSize::new(1).expect("1 is a valid page size");
        Ok(
            match self
                .read_stream_backward(stream, StreamFrom::Head, one, &options)
                .await?
            {
                Lookup::Found(page) => Lookup::Found(page.entries.into_iter().next()),
                Lookup::NotFound => Lookup::NotFound,
                Lookup::Deleted => Lookup::Deleted,
            },
        )
    }

    /// Reads the last record of the metastream `$$stream` (number, id, data): the only one a
    /// metastream keeps readable (§4.5). `None` when `$$stream` holds no record: the server
    /// answers a read of the empty metastream of an existing stream with the document `{}`.
    ///
    /// # Errors
    ///
    /// As [`Client::read_event_entry`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all, fields(stream = %stream))]
    pub async fn read_metastream_head(
        &self,
        stream: &str,
    ) -> Result<Option<crate::esdb::RecordedEvent>, Error> {
        let meta = format!("$${stream}");
        let url = self.routes.event(&meta, StreamFrom::Head, Embed::Body);
        let (info, resp) = self
            .execute(Call::new(Method::GET, url).accept(media::atom_json(self.family)))
            .await?;
        if resp.status == reqwest::StatusCode::OK
            && serde_json::from_slice::<serde_json::Value>(&resp.body)
                .is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
        {
            return Ok(None);
        }
        Ok(match response::decode_entry(&info, &resp)? {
            Lookup::Found(entry) => entry.as_event().cloned(),
            Lookup::NotFound | Lookup::Deleted => None,
        })
    }

    /// Reads the metadata of a stream (`GET /streams/{s}/metadata`, `Accept: application/json`):
    /// `{}` when the stream exists without metadata, [`Lookup::NotFound`] when it does not exist.
    ///
    /// # Errors
    ///
    /// [`Error`] for failures.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all, fields(stream = %stream))]
    pub async fn read_stream_metadata(
        &self,
        stream: &str,
    ) -> Result<Lookup<StreamMetadata>, Error> {
        let url = self.routes.metadata(stream);
        let (info, resp) = self
            .execute(Call::new(Method::GET, url).accept(media::JSON))
            .await?;
        Ok(response::decode_json_document(&info, &resp)?.map(StreamMetadata::new))
    }

    /// Writes stream metadata (`POST /streams/{s}/metadata`, `application/json` with the event id
    /// header): one `$metadata` event in `$$s` whose data is `metadata` (JSON text, sent
    /// unchanged). `expected` refers to the metastream `$$s`.
    ///
    /// A soft delete is better sent with [`Client::delete_stream`] (contract §7).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] for metadata that is not valid UTF-8 (the server would corrupt it),
    /// [`Error::WrongExpectedVersion`] (reported for `$$s`), [`Error::StreamDeleted`] after a hard
    /// delete, other [`Error`]s.
    ///
    /// # Cancel safety
    ///
    /// Not idempotent unless `expected` is exact: a cancelled call may or may not have written.
    #[instrument(skip_all, fields(stream = %stream, event_id = %event_id, expected = %expected))]
    pub async fn write_stream_metadata(
        &self,
        stream: &str,
        event_id: Uuid,
        metadata: Bytes,
        expected: ExpectedVersion,
    ) -> Result<Appended, Error> {
        encode::check_identity(0, event_id, "$metadata")?;
        encode::check_json_body(event_id, &metadata, Part::Metadata)?;
        let url = self.routes.metadata(stream);
        let (name, value) = self.expected_version_header(expected);
        let call = Call::new(Method::POST, url)
            .body(media::JSON, metadata)
            .header(
                self.request_header(RequestHeader::EventId),
                header_value_of(event_id.hyphenated()),
            )
            .header(name, value);
        let (info, resp) = self.execute(call).await?;
        response::decode_append(&info, &resp, &format!("$${stream}"), expected)
    }

    /// Appends events atomically with the `events+json` batch form, preserving ids, types, data
    /// and metadata as far as the form allows (see [`encode::encode_events_json`]).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] for events the batch form cannot carry (with the form to use instead),
    /// [`Error::WrongExpectedVersion`], [`Error::StreamDeleted`], other [`Error`]s. Only `Ok` means
    /// the events are stored.
    ///
    /// # Cancel safety
    ///
    /// With an exact `expected` a retry of the same events is an idempotent replay (201 with the
    /// original location); with [`ExpectedVersion::Any`] only while the server's id cache holds
    /// them (contract §5.5).
    #[instrument(skip_all, fields(stream = %stream, events = events.len(), expected = %expected))]
    pub async fn append_events<E: std::borrow::Borrow<EventData>>(
        &self,
        stream: &str,
        events: &[E],
        expected: ExpectedVersion,
    ) -> Result<Appended, Error> {
        let body = encode::encode_events_json(events)?;
        let (name, value) = self.expected_version_header(expected);
        let call = Call::new(Method::POST, self.routes.stream(stream))
            .body(media::events_json(self.family), body)
            .header(name, value);
        let (info, resp) = self.execute(call).await?;
        response::decode_append(&info, &resp, stream, expected)
    }

    fn single_event_call(
        &self,
        stream: &str,
        event_id: Uuid,
        event_type: &str,
        content_type: &'static str,
        data: Bytes,
        expected: ExpectedVersion,
    ) -> Result<Call, Error> {
        encode::check_identity(0, event_id, event_type)?;
        let event_type_value =
            HeaderValue::from_str(event_type).map_err(|_| EncodeError::EventTypeNotHeaderSafe {
                event_id,
                event_type: event_type.to_owned(),
            })?;
        let (name, value) = self.expected_version_header(expected);
        Ok(Call::new(Method::POST, self.routes.stream(stream))
            .body(content_type, data)
            .header(
                self.request_header(RequestHeader::EventId),
                header_value_of(event_id.hyphenated()),
            )
            .header(
                self.request_header(RequestHeader::EventType),
                event_type_value,
            )
            .header(name, value))
    }

    /// Appends one JSON event with the `application/json` single-event form: the body is stored
    /// unchanged and flagged JSON, but no metadata can be sent (contract §5.1).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] for non-UTF-8 data (the server would replace invalid sequences) or an
    /// event type that cannot be a header value; otherwise as [`Client::append_events`].
    ///
    /// # Cancel safety
    ///
    /// As [`Client::append_events`].
    #[instrument(skip_all, fields(stream = %stream, event_id = %event_id, expected = %expected))]
    pub async fn append_json_event(
        &self,
        stream: &str,
        event_id: Uuid,
        event_type: &str,
        data: Bytes,
        expected: ExpectedVersion,
    ) -> Result<Appended, Error> {
        encode::check_json_body(event_id, &data, Part::Data)?;
        let call =
            self.single_event_call(stream, event_id, event_type, media::JSON, data, expected)?;
        let (info, resp) = self.execute(call).await?;
        response::decode_append(&info, &resp, stream, expected)
    }

    /// Appends one non-JSON event with the `application/octet-stream` form: any bytes, stored
    /// unchanged, flagged non-JSON, no metadata (contract §5.1).
    ///
    /// # Errors
    ///
    /// As [`Client::append_json_event`] (except that any bytes are accepted).
    ///
    /// # Cancel safety
    ///
    /// As [`Client::append_events`].
    #[instrument(skip_all, fields(stream = %stream, event_id = %event_id, expected = %expected))]
    pub async fn append_binary_event(
        &self,
        stream: &str,
        event_id: Uuid,
        event_type: &str,
        data: Bytes,
        expected: ExpectedVersion,
    ) -> Result<Appended, Error> {
        let call = self.single_event_call(
            stream,
            event_id,
            event_type,
            media::OCTET_STREAM,
            data,
            expected,
        )?;
        let (info, resp) = self.execute(call).await?;
        response::decode_append(&info, &resp, stream, expected)
    }

    /// Deletes a stream (`DELETE /streams/{s}`, `ES-HardDelete: true` for [`DeleteMode::Hard`]).
    ///
    /// A stream that is already hard-deleted answers [`DeleteOutcome::AlreadyHardDeleted`], so a
    /// retried hard delete succeeds.
    ///
    /// # Errors
    ///
    /// [`Error::WrongExpectedVersion`] and other [`Error`]s.
    ///
    /// # Cancel safety
    ///
    /// Safe to retry: a soft delete rewrites the same metadata, a hard delete ends in
    /// [`DeleteOutcome::AlreadyHardDeleted`].
    #[instrument(skip_all, fields(stream = %stream, mode = ?mode, expected = %expected))]
    pub async fn delete_stream(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        mode: DeleteMode,
    ) -> Result<DeleteOutcome, Error> {
        let (name, value) = self.expected_version_header(expected);
        let mut call = Call::new(Method::DELETE, self.routes.stream(stream)).header(name, value);
        if mode == DeleteMode::Hard {
            call = call.header(
                self.request_header(RequestHeader::HardDelete),
                HeaderValue::from_static("true"),
            );
        }
        let (info, resp) = self.execute(call).await?;
        response::decode_delete(&info, &resp, stream, expected)
    }

    /// Reads the system settings: the data of the last event of `$settings` (any event type),
    /// `None` when `$settings` is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when the settings are not JSON, [`Error::Unauthorized`] without `$admins`
    /// rights, other [`Error`]s.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all)]
    pub async fn read_settings(&self) -> Result<Option<SystemSettings>, Error> {
        let url = self
            .routes
            .event(SETTINGS_STREAM, StreamFrom::Head, Embed::None);
        let (info, resp) = self
            .execute(Call::new(Method::GET, url.clone()).accept(media::OCTET_STREAM))
            .await?;
        match response::decode_raw_event(&info, &resp)? {
            Lookup::Found(bytes) => serde_json::from_slice(&bytes)
                .map(|json| Some(SystemSettings::new(json)))
                .map_err(|e| Error::Decode {
                    method: Method::GET,
                    url: url.to_string(),
                    detail: format!("the last $settings event is not JSON: {e}"),
                }),
            Lookup::NotFound | Lookup::Deleted => Ok(None),
        }
    }

    /// Reads the system settings with the number of the `$settings` event that holds them, for a
    /// conditional write: [`ExpectedVersion::NoStream`] when `$settings` is empty.
    ///
    /// # Errors
    ///
    /// As [`Client::read_settings`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a read has no side effects.
    #[instrument(skip_all)]
    pub async fn read_settings_versioned(
        &self,
    ) -> Result<(Option<SystemSettings>, ExpectedVersion), Error> {
        let entry = match self
            .read_event_entry(SETTINGS_STREAM, StreamFrom::Head, Embed::Body)
            .await?
        {
            Lookup::Found(entry) => entry,
            Lookup::NotFound | Lookup::Deleted => return Ok((None, ExpectedVersion::NoStream)),
        };
        let version = ExpectedVersion::Exact(entry.revision());
        let data = entry.as_event().and_then(|e| e.data.clone());
        let document = match data {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
                method: Method::GET,
                url: format!("/streams/{SETTINGS_STREAM}/head"),
                detail: format!("the last $settings event is not JSON: {e}"),
            })?,
            None => return Ok((self.read_settings().await?, version)),
        };
        Ok((Some(SystemSettings::new(document)), version))
    }

    /// Writes the system settings: appends one JSON event of type `event_type` (default
    /// `update-default-acl`) to `$settings`. The server reloads its default ACLs from it.
    ///
    /// # Errors
    ///
    /// As [`Client::append_json_event`].
    ///
    /// # Cancel safety
    ///
    /// As [`Client::append_events`].
    #[instrument(skip_all, fields(event_id = %event_id, expected = %expected))]
    pub async fn write_settings(
        &self,
        settings: &SystemSettings,
        event_id: Uuid,
        event_type: Option<&str>,
        expected: ExpectedVersion,
    ) -> Result<Appended, Error> {
        let body = serde_json::to_vec(settings.as_json())
            .map(Bytes::from)
            .map_err(|e| config_error(format!("cannot serialise the settings: {e}")))?;
        self.append_json_event(
            SETTINGS_STREAM,
            event_id,
            event_type.unwrap_or(SETTINGS_EVENT_TYPE),
            body,
            expected,
        )
        .await
    }

    /// `GET /info`: version, state, and (v20+) whether AtomPub is enabled. Anonymous on every
    /// version.
    ///
    /// # Errors
    ///
    /// [`Error`] for failures.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    #[instrument(skip_all)]
    pub async fn info(&self) -> Result<NodeInfo, Error> {
        let url = self.routes.endpoint("/info");
        let (info, resp) = self
            .execute(Call::new(Method::GET, url).accept(media::JSON))
            .await?;
        response::decode_info(&info, &resp)
    }

    /// The same node, asked without credentials.
    pub fn anonymous(&self) -> Client {
        Client {
            credentials: None,
            ..self.clone()
        }
    }

    /// How the node treats credentials (the server's `PassthroughAuthenticationProvider.cs`, `ClusterVNode.cs`; docs/devnode.md "Security modes"): `/info`
    /// names the passthrough provider of `--insecure` on v20+; otherwise an anonymous
    /// `GET /users/$current` is refused (401) where authentication is enforced. Where `/users`
    /// is not served (an external provider, or a server whose `/info` says nothing), an
    /// anonymous read of `$all`, which only `$admins` may do, tells the two apart.
    ///
    /// # Errors
    ///
    /// [`Error`] when the node does not answer `/info`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn security(&self) -> Result<Security, Error> {
        let info = self.info().await?;
        let user_management = info
            .features
            .as_ref()
            .and_then(|f| f.user_management)
            .unwrap_or(true);
        let tls = self.base_url().scheme() == "https";
        let authenticated = if tls {
            Security::Secure
        } else {
            Security::PlaintextWithAuth
        };
        let external = Security::External { tls };
        if info.authentication.as_deref() == Some("insecure") {
            return Ok(Security::Insecure);
        }
        let anonymous = self.anonymous();
        match anonymous.current_user().await {
            Err(Error::Unauthorized { .. }) if user_management => return Ok(authenticated),
            Err(Error::Unauthorized { .. }) => return Ok(external),
            Ok(Lookup::Found(_)) => return Ok(Security::Insecure),
            _ => {}
        }
        let open = anonymous
            .read_all_backward(
                AllFrom::Head,
                PageSize::new(1).unwrap_or(PageSize::MAX),
                &ReadOptions::embed(Embed::None),
            )
            .await;
        Ok(match open {
            Ok(_) => Security::Insecure,
            Err(_) if user_management => authenticated,
            Err(_) => external,
        })
    }

    /// How far the node's clock is ahead of this host's (negative: behind), in seconds, from the
    /// `Date` header of a `GET /info` answer against the local clock half-way through the request.
    /// `Date` has one-second resolution, so only offsets of a few seconds mean anything. `None`
    /// when the node sends no readable `Date`.
    ///
    /// # Errors
    ///
    /// [`Error`] when the node does not answer.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn clock_offset_secs(&self) -> Result<Option<f64>, Error> {
        let sent = std::time::SystemTime::now();
        let url = self.routes.endpoint("/info");
        let (_, resp) = self
            .execute(Call::new(Method::GET, url).accept(media::JSON))
            .await?;
        let received = std::time::SystemTime::now();
        let local = sent + received.duration_since(sent).unwrap_or_default() / 2;
        let Some(date) = resp
            .headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
        else {
            return Ok(None);
        };
        // `Date` drops the fraction of a second: the node's time lies in [date, date + 1 s).
        let date = date + Duration::from_millis(500);
        Ok(Some(match date.duration_since(local) {
            Ok(ahead) => ahead.as_secs_f64(),
            Err(behind) => -behind.duration().as_secs_f64(),
        }))
    }

    /// `GET /health/live` (v20.6+; v5 answers [`Liveness::Unsupported`]).
    ///
    /// # Errors
    ///
    /// [`Error`] for failures other than the three expected answers.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    #[instrument(skip_all)]
    pub async fn health_live(&self) -> Result<Liveness, Error> {
        let url = self.routes.endpoint("/health/live");
        let (info, resp) = self.execute(Call::new(Method::GET, url)).await?;
        response::decode_liveness(&info, &resp)
    }

    /// `GET /gossip`: cluster members, their states and checkpoints.
    ///
    /// # Errors
    ///
    /// [`Error`] for failures.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    #[instrument(skip_all)]
    pub async fn gossip(&self) -> Result<Gossip, Error> {
        let url = self.routes.endpoint("/gossip");
        let (info, resp) = self
            .execute(Call::new(Method::GET, url).accept(media::JSON))
            .await?;
        response::decode_gossip(&info, &resp)
    }
}

/// A forward `$all` page as the server sent it, not yet decoded.
#[derive(Debug)]
pub struct FetchedAllPage {
    info: RequestInfo,
    resp: RawResponse,
    count: PageSize,
}

impl FetchedAllPage {
    /// Where the next page starts, read from the links ahead of the entries; `None` when unknown
    /// (an error status, the end of `$all`, a body that does not put its links first). A hint:
    /// [`FetchedAllPage::decode`] decides.
    pub fn continuation_hint(&self) -> Option<Position> {
        (self.resp.status == reqwest::StatusCode::OK)
            .then(|| response::peek_forward_continuation(&self.resp.body))
            .flatten()
    }

    /// Decodes the page, exactly as [`Client::read_all_forward`] does.
    ///
    /// # Errors
    ///
    /// As [`Client::read_all_forward`].
    pub fn decode(self) -> Result<AllPage, Error> {
        response::decode_all_page(&self.info, &self.resp, Direction::Forward, self.count)?
            .ok_or_else(|| unexpected_not_modified(&self.info.url))
    }
}

fn unexpected_not_modified(url: impl ToString) -> Error {
    Error::Status {
        method: Method::GET,
        url: url.to_string(),
        status: reqwest::StatusCode::NOT_MODIFIED,
        reason: None,
        current_version: None,
    }
}

#[cfg(test)]
mod tests {
    //! The client against a scripted TCP peer: checks the exact request bytes and that live
    //! responses (reason phrases included) reach the decoders.

    use super::*;
    use crate::esdb::http::headers::HeaderFamily;
    use crate::esdb::types::EventData;
    use crate::position::{CurrentVersion, StreamRevision};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    /// Serves one connection: records the request (head + body) and answers `response` verbatim.
    async fn serve_once(response: &'static str) -> (Url, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8_lossy(&request).to_string()
        });
        (url, handle)
    }

    fn client(url: Url) -> Client {
        Client::new(ClientConfig::new(url).with_credentials(Credentials::new("admin", "changeit")))
            .unwrap()
    }

    fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
        request.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[tokio::test]
    async fn append_events_request_and_created_response() {
        let (url, server) = serve_once(
            "HTTP/1.1 201 Created\r\nLocation: http://127.0.0.1:2113/streams/newstream/2\r\n\
             Content-Length: 0\r\n\r\n",
        )
        .await;
        let id = Uuid::parse_str("fbf4a1a1-b4a3-4dfe-a01f-ec52c34e16e4").unwrap();
        let appended = client(url)
            .append_events(
                "new stream",
                &[EventData::json(id, "event-type", &b"{\"a\":\"1\"}"[..])],
                ExpectedVersion::Exact(StreamRevision::new(1).unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(appended.first, StreamRevision::new(2));
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /streams/new%20stream HTTP/1.1\r\n"),
            "{request}"
        );
        assert_eq!(
            header(&request, "content-type"),
            Some("application/vnd.eventstore.events+json")
        );
        assert_eq!(header(&request, "es-expectedversion"), Some("1"));
        // admin:changeit
        assert_eq!(
            header(&request, "authorization"),
            Some("Basic YWRtaW46Y2hhbmdlaXQ=")
        );
        assert!(request.ends_with(
            r#"[{"eventId":"fbf4a1a1-b4a3-4dfe-a01f-ec52c34e16e4","eventType":"event-type","data":{"a":"1"}}]"#
        ));
    }

    #[tokio::test]
    async fn live_reason_phrase_and_current_version_reach_the_decoder() {
        let (url, server) = serve_once(
            "HTTP/1.1 400 Wrong expected EventNumber\r\nES-CurrentVersion: 0\r\n\
             Content-Length: 0\r\n\r\n",
        )
        .await;
        let err = client(url)
            .append_json_event(
                "s",
                Uuid::from_u128(7),
                "t",
                Bytes::from_static(b"{}"),
                ExpectedVersion::NoStream,
            )
            .await
            .unwrap_err();
        match &err {
            Error::WrongExpectedVersion {
                stream,
                expected,
                current,
            } => {
                assert_eq!(stream, "s");
                assert_eq!(*expected, ExpectedVersion::NoStream);
                assert_eq!(
                    *current,
                    Some(CurrentVersion::Revision(StreamRevision::START))
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!err.is_transient());
        let request = server.await.unwrap();
        assert_eq!(header(&request, "content-type"), Some("application/json"));
        assert_eq!(header(&request, "es-eventtype"), Some("t"));
        assert_eq!(
            header(&request, "es-eventid"),
            Some("00000000-0000-0000-0000-000000000007")
        );
        assert_eq!(header(&request, "es-expectedversion"), Some("-1"));
    }

    #[tokio::test]
    async fn custom_reason_phrase_is_kept_in_status_errors() {
        let (url, _server) =
            serve_once("HTTP/1.1 500 Write timeout\r\nContent-Length: 0\r\n\r\n").await;
        let err = client(url)
            .append_binary_event(
                "s",
                Uuid::from_u128(1),
                "t",
                Bytes::from_static(&[0xff, 0x00]),
                ExpectedVersion::Any,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Status { reason: Some(r), .. } if r == "Write timeout"),
            "{err:?}"
        );
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn unauthorized_names_the_user_but_not_the_password() {
        let (url, _server) = serve_once(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"ES\"\r\n\
             Content-Length: 0\r\n\r\n",
        )
        .await;
        let err = client(url)
            .read_all_forward(Position::START, PageSize::DEFAULT, &ReadOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(&err, Error::Unauthorized { user: Some(u), .. } if u == "admin"));
        let text = format!("{err} {err:?}");
        assert!(!text.contains("changeit"), "{text}");
        assert!(text.contains("admin"));
    }

    #[tokio::test]
    async fn read_all_sends_accept_long_poll_and_decodes_the_page() {
        let (url, server) = serve_once(concat!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.eventstore.atom+json; charset=utf-8\r\n",
            "ETag: \"12713;-2060438500\"\r\nContent-Length: 2\r\n\r\n{}"
        ))
        .await;
        let options = ReadOptions {
            embed: Embed::Body,
            long_poll: Some(Duration::from_secs(2)),
            resolve_link_tos: Some(false),
        };
        let page = client(url)
            .read_all_forward(
                Position::new(0x3233, 0).unwrap(),
                PageSize::new(4).unwrap(),
                &options,
            )
            .await
            .unwrap();
        assert!(page.entries.is_empty() && page.is_end && page.next.is_none());
        assert_eq!(page.etag.unwrap().as_str(), "\"12713;-2060438500\"");
        let request = server.await.unwrap();
        assert!(request.starts_with(
            "GET /streams/%24all/00000000000032330000000000000000/forward/4?embed=body HTTP/1.1"
        ));
        assert_eq!(
            header(&request, "accept"),
            Some("application/vnd.eventstore.atom+json")
        );
        assert_eq!(header(&request, "es-longpoll"), Some("2"));
        assert_eq!(header(&request, "es-resolvelinktos"), Some("false"));
    }

    #[tokio::test]
    async fn kurrent_family_and_hard_delete_headers() {
        let (url, server) =
            serve_once("HTTP/1.1 204 Stream deleted\r\nContent-Length: 0\r\n\r\n").await;
        let mut config = ClientConfig::new(url);
        config.header_family = HeaderFamily::Kurrent;
        let outcome = Client::new(config)
            .unwrap()
            .delete_stream("$$x", ExpectedVersion::Any, DeleteMode::Hard)
            .await
            .unwrap();
        assert_eq!(outcome, DeleteOutcome::Deleted);
        let request = server.await.unwrap();
        assert!(
            request.starts_with("DELETE /streams/%24%24x HTTP/1.1"),
            "{request}"
        );
        assert_eq!(header(&request, "kurrent-harddelete"), Some("true"));
        assert_eq!(header(&request, "kurrent-expectedversion"), Some("-2"));
        assert_eq!(header(&request, "authorization"), None);
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (url, _server) = serve_once(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://leader:2113/streams/s\r\n\
             Content-Length: 0\r\n\r\n",
        )
        .await;
        let err = client(url)
            .append_events(
                "s",
                &[EventData::json(Uuid::from_u128(1), "t", &b"{}"[..])],
                ExpectedVersion::Any,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Redirected { location: Some(l), .. } if l == "http://leader:2113/streams/s")
        );
        assert!(!err.is_transient());
    }

    #[tokio::test]
    async fn connection_refused_is_a_transient_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let err = client(url).info().await.unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn silent_server_is_a_transient_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let hold = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let mut config = ClientConfig::new(url);
        config.request_timeout = Duration::from_millis(200);
        let err = Client::new(config).unwrap().gossip().await.unwrap_err();
        assert!(
            matches!(err, Error::Timeout { timeout, .. } if timeout == Duration::from_millis(200)),
            "{err:?}"
        );
        assert!(err.is_transient());
        hold.abort();
    }

    #[test]
    fn https_client_builds_with_a_custom_ca() {
        // Proves reqwest accepts our preconfigured rustls config (same rustls version).
        let mut ca = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut ca, crate::esdb::tls::ISRG_ROOT_X1.as_bytes()).unwrap();
        let mut config = ClientConfig::new(Url::parse("https://node1:2113").unwrap());
        config.ca_file = Some(ca.path().to_owned());
        config.http2 = true;
        Client::new(config).unwrap();
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for url in ["ftp://node:2113", "http://admin:changeit@node:2113"] {
            let err = Client::new(ClientConfig::new(Url::parse(url).unwrap())).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{url}");
            assert!(!err.to_string().contains("changeit"));
        }
    }

    #[tokio::test]
    async fn encode_errors_are_raised_before_sending() {
        // No server: an attempt to connect would be a Connect error instead.
        let c = client(Url::parse("http://127.0.0.1:9").unwrap());
        let err = c
            .append_json_event(
                "s",
                Uuid::from_u128(1),
                "t",
                Bytes::from_static(&[0xff]),
                ExpectedVersion::Any,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Encode(EncodeError::NotUtf8 { .. })));
        let err = c
            .append_binary_event(
                "s",
                Uuid::from_u128(1),
                "bad\ntype",
                Bytes::new(),
                ExpectedVersion::Any,
            )
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::Encode(EncodeError::EventTypeNotHeaderSafe { .. })
        ));
        let err = c
            .write_stream_metadata(
                "s",
                Uuid::nil(),
                Bytes::from_static(b"{}"),
                ExpectedVersion::Any,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Encode(EncodeError::NilEventId { .. })));
    }
}
