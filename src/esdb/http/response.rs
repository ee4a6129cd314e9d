//! Pure response decoding: (request info, status, reason phrase, headers, body) → domain result or
//! [`Error`].
//!
//! The [`Client`](super::client::Client) performs the IO, captures the response as a
//! [`RawResponse`] and hands it to exactly one `decode_*` function here. Tests feed recorded server
//! responses (`tests/fixtures/http-api`) through the same functions, parsing the recorded status
//! line and headers with [`RawResponse::from_http1_head`].

use std::fmt;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use uuid::Uuid;

use super::feed::{ContentDto, EntryDto, FeedDto, GossipDto, InfoDto, LinkDto, MemberDto, Text};
use super::headers::{self, media};
use super::request::PageSize;
use crate::esdb::error::Error;
use crate::esdb::node::{Endpoint, Features, Gossip, Liveness, Member, NodeInfo, NodeState};
use crate::esdb::page::{
    AllPage, Direction, Entry, EntryContent, EntrySummary, EventRef, Links, Lookup, RecordedEvent,
    StreamPage,
};
use crate::esdb::types::{Appended, DeleteOutcome};
use crate::position::{ExpectedVersion, LogPosition, Position, StreamRevision};

/// What the decoders need to know about the request, for error messages. Never holds a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// Request method.
    pub method: Method,
    /// Request URL (never contains credentials: the client refuses base URLs with user info).
    pub url: String,
    /// User name sent with Basic auth, if any.
    pub user: Option<String>,
}

impl RequestInfo {
    /// Request info without a user.
    pub fn new(method: Method, url: impl Into<String>) -> RequestInfo {
        RequestInfo {
            method,
            url: url.into(),
            user: None,
        }
    }

    fn decode_error(&self, detail: impl Into<String>) -> Error {
        Error::Decode {
            method: self.method.clone(),
            url: self.url.clone(),
            detail: detail.into(),
        }
    }
}

/// A complete HTTP response as the decoders see it.
#[derive(Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// Status code.
    pub status: StatusCode,
    /// The reason phrase if it differs from the canonical one for `status` (what hyper exposes as
    /// `hyper::ext::ReasonPhrase`); the server's only error text (contract §2.2). Always `None`
    /// over HTTP/2.
    pub reason: Option<String>,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body.
    pub body: Bytes,
}

impl fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawResponse")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why a recorded response head could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadParseError {
    /// The first line is not `HTTP/x.y NNN reason`.
    #[error("malformed status line: expected `HTTP/1.1 200 OK`")]
    StatusLine,
    /// A header line is not `Name: value` with a valid name and value.
    #[error("malformed header line {line}")]
    Header {
        /// 1-based line number.
        line: usize,
    },
}

impl RawResponse {
    /// A response without a non-canonical reason phrase.
    pub fn new(status: StatusCode, headers: HeaderMap, body: impl Into<Bytes>) -> RawResponse {
        RawResponse {
            status,
            reason: None,
            headers,
            body: body.into(),
        }
    }

    /// Parses a recorded HTTP/1.x response head (status line, then `Name: value` lines, up to the
    /// first empty line) and attaches `body`.
    ///
    /// The reason phrase is kept only when it differs from the canonical phrase, exactly as hyper
    /// does for live responses, so recorded and live responses decode identically.
    ///
    /// # Errors
    ///
    /// [`HeadParseError`] for a malformed status line or header line.
    pub fn from_http1_head(
        head: &str,
        body: impl Into<Bytes>,
    ) -> Result<RawResponse, HeadParseError> {
        let mut lines = head
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line));
        let status_line = lines.next().ok_or(HeadParseError::StatusLine)?;
        let (version, rest) = status_line
            .split_once(' ')
            .ok_or(HeadParseError::StatusLine)?;
        if !version.starts_with("HTTP/") {
            return Err(HeadParseError::StatusLine);
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeadParseError::StatusLine);
        }
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or(HeadParseError::StatusLine)?;
        let reason = reason.trim();
        let reason = (!reason.is_empty() && Some(reason) != status.canonical_reason())
            .then(|| reason.to_owned());

        let mut headers = HeaderMap::new();
        for (index, line) in lines.enumerate() {
            if line.is_empty() {
                break;
            }
            let error = HeadParseError::Header { line: index + 2 };
            let (name, value) = line.split_once(':').ok_or(error.clone())?;
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| error.clone())?;
            let value = HeaderValue::from_str(value.trim()).map_err(|_| error)?;
            headers.append(name, value);
        }
        Ok(RawResponse {
            status,
            reason,
            headers,
            body: body.into(),
        })
    }
}

/// Maps a status the operation does not handle itself to an error.
pub fn status_error(req: &RequestInfo, resp: &RawResponse) -> Error {
    let method = req.method.clone();
    let url = req.url.clone();
    let reason = resp.reason.clone();
    match resp.status {
        StatusCode::UNAUTHORIZED => Error::Unauthorized {
            method,
            url,
            user: req.user.clone(),
            reason,
        },
        StatusCode::NOT_FOUND => Error::NotFound {
            method,
            url,
            reason,
        },
        StatusCode::BAD_REQUEST => Error::BadRequest {
            method,
            url,
            reason,
        },
        status if status.is_redirection() && status != StatusCode::NOT_MODIFIED => {
            Error::Redirected {
                method,
                url,
                status,
                location: headers::location(&resp.headers),
            }
        }
        status => Error::Status {
            method,
            url,
            status,
            reason,
            current_version: headers::current_version(&resp.headers),
        },
    }
}

/// Checks that a 200 response is a JSON feed/entry before parsing it.
fn check_feed_media_type(req: &RequestInfo, resp: &RawResponse) -> Result<(), Error> {
    match headers::media_type(&resp.headers) {
        None => Ok(()),
        Some(media_type) if headers::is_json_feed_type(&media_type) => Ok(()),
        Some(media_type) if media_type == media::STREAM_DESCRIPTION => Err(req.decode_error(
            "the server sent the stream description document instead of the feed, which it does \
             when the request has no usable Accept header; a proxy between standby and the node \
             may be stripping Accept",
        )),
        Some(media_type) => Err(req.decode_error(format!(
            "expected an Atom JSON feed, got Content-Type {media_type}"
        ))),
    }
}

fn parse_json<'a, T: serde::Deserialize<'a>>(
    req: &RequestInfo,
    resp: &'a RawResponse,
    what: &str,
) -> Result<T, Error> {
    serde_json::from_slice(&resp.body)
        .map_err(|e| req.decode_error(format!("the {what} is not the expected JSON: {e}")))
}

/// Parses a feed body. Exposed for tests and tools; the decoders below use it.
///
/// # Errors
///
/// The JSON error if the body is not a feed object.
pub fn parse_feed(body: &[u8]) -> Result<FeedDto<'_>, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Where a forward `$all` page continues (its `previous` link), read from the top of the body
/// without decoding the entries: a reader can request the next page while it decodes this one.
///
/// The server writes `links` before `entries` (every recorded feed, fixtures `all-*`); when a body
/// does not, or is not a feed, this is `None` and the reader waits for the decoded page. A hint
/// only: [`decode_all_page`] stays the authority on where a page continues.
pub fn peek_forward_continuation(body: &[u8]) -> Option<Position> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};

    /// Fills `links` with the feed's links and stops at `entries` or right after `links`.
    struct LinksFirst<'s, 'a>(&'s mut Option<Vec<LinkDto<'a>>>);

    impl<'de> Visitor<'de> for LinksFirst<'_, 'de> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a feed object")
        }

        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
            while let Some(key) = map.next_key::<Text<'de>>()? {
                match &*key {
                    "links" => {
                        *self.0 = Some(map.next_value()?);
                        // Stopping here leaves the rest unread: the deserializer then reports
                        // an unclosed object, which the caller ignores.
                        return Ok(());
                    }
                    "entries" => return Ok(()),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }

    let mut links = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let _unclosed = de.deserialize_map(LinksFirst(&mut links));
    let links = collect_links(&links?);
    all_link_position(links.previous.as_deref()?).ok().flatten()
}

/// Collects the navigation links by relation (first occurrence wins).
fn collect_links(dtos: &[LinkDto<'_>]) -> Links {
    let mut links = Links::default();
    for dto in dtos {
        let (Some(uri), Some(relation)) = (&dto.uri, &dto.relation) else {
            continue;
        };
        let slot = match &**relation {
            "self" => &mut links.self_,
            "first" => &mut links.first,
            "last" => &mut links.last,
            "next" => &mut links.next,
            "previous" => &mut links.previous,
            "metadata" => &mut links.metadata,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(uri.to_string());
        }
    }
    links
}

/// Splits a page link `…/{from}/{direction}/{count}[?query]` into its last three path segments.
fn page_link_parts(uri: &str) -> Option<(&str, &str, &str)> {
    let path = uri.split(['?', '#']).next()?;
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let count = segments.next()?;
    let direction = segments.next()?;
    let from = segments.next()?;
    Some((from, direction, count))
}

/// The position a `$all` page link starts from; `Ok(None)` for `head`.
///
/// # Errors
///
/// A description of what is wrong with the link.
pub fn all_link_position(uri: &str) -> Result<Option<Position>, String> {
    let (from, direction, _) =
        page_link_parts(uri).ok_or_else(|| format!("link {uri:?} is not a $all page link"))?;
    if direction != "forward" && direction != "backward" {
        return Err(format!("link {uri:?} is not a $all page link"));
    }
    if from.eq_ignore_ascii_case("head") {
        return Ok(None);
    }
    from.parse::<Position>()
        .map(Some)
        .map_err(|e| format!("link {uri:?}: {e}"))
}

/// The event number a stream page link starts from; `Ok(None)` for `head`.
///
/// # Errors
///
/// A description of what is wrong with the link.
pub fn stream_link_revision(uri: &str) -> Result<Option<StreamRevision>, String> {
    let (from, direction, _) =
        page_link_parts(uri).ok_or_else(|| format!("link {uri:?} is not a stream page link"))?;
    if direction != "forward" && direction != "backward" {
        return Err(format!("link {uri:?} is not a stream page link"));
    }
    if from.eq_ignore_ascii_case("head") {
        return Ok(None);
    }
    from.parse::<StreamRevision>()
        .map(Some)
        .map_err(|e| format!("link {uri:?}: {e}"))
}

/// Splits an entry title `"<number>@<stream>"` (stream names may contain `@`; the number cannot).
fn parse_title(title: &str) -> Option<(StreamRevision, &str)> {
    let (number, stream) = title.split_once('@')?;
    Some((number.parse().ok()?, stream))
}

fn bytes_of(text: Option<Text<'_>>) -> Option<Bytes> {
    text.map(|text| Bytes::from(text.into_owned().into_bytes()))
}

fn owned(text: Option<Text<'_>>) -> Option<String> {
    text.map(Text::into_owned)
}

fn content_of(dto: Option<ContentDto>) -> (Option<EntryContent>, Option<Uuid>) {
    match dto {
        None => (None, None),
        Some(content) => {
            let event_id = content.event_id.as_deref().and_then(|id| id.parse().ok());
            (
                Some(EntryContent {
                    data: content.data,
                    metadata: content.metadata,
                }),
                event_id,
            )
        }
    }
}

/// Converts a wire entry into an [`Entry`].
///
/// # Errors
///
/// A description when the entry identifies no event (no usable rich fields and no `N@stream`
/// title) or carries an event number outside 0 ..= `i64::MAX`.
pub fn entry_from_dto(dto: EntryDto<'_>) -> Result<Entry, String> {
    let label = |dto: &EntryDto<'_>| {
        dto.title
            .as_deref()
            .or(dto.id.as_deref())
            .unwrap_or("<untitled>")
            .to_owned()
    };
    let revision = match dto.event_number {
        None => None,
        Some(number) => Some(
            StreamRevision::from_signed(number)
                .ok_or_else(|| format!("entry {:?} has eventNumber {number}", label(&dto)))?,
        ),
    };
    let event_id = dto
        .event_id
        .as_deref()
        .and_then(|id| id.parse::<Uuid>().ok())
        .filter(|id| !id.is_nil());

    if let (Some(event_id), true, true, Some(revision)) = (
        event_id,
        dto.event_type.is_some(),
        dto.stream_id.is_some(),
        revision,
    ) {
        let position_revision = match dto.position_event_number {
            None => None,
            Some(number) => Some(StreamRevision::from_signed(number).ok_or_else(|| {
                format!("entry {:?} has positionEventNumber {number}", label(&dto))
            })?),
        };
        let stream = owned(dto.stream_id).unwrap_or_default();
        let link = match (dto.position_stream_id, position_revision) {
            (Some(link_stream), Some(link_revision))
                if *link_stream != *stream || link_revision != revision =>
            {
                Some(EventRef {
                    stream: link_stream.into_owned(),
                    revision: link_revision,
                })
            }
            _ => None,
        };
        return Ok(Entry::Event(RecordedEvent {
            stream,
            revision,
            event_id,
            event_type: owned(dto.event_type).unwrap_or_default(),
            is_json: dto.is_json.unwrap_or(false),
            data: bytes_of(dto.data),
            metadata: bytes_of(dto.meta_data),
            is_metadata: dto.is_meta_data.unwrap_or(false),
            link_metadata: bytes_of(dto.link_meta_data),
            is_link_metadata: dto.is_link_meta_data.unwrap_or(false),
            is_redacted: dto.is_redacted.unwrap_or(false),
            link,
            updated: owned(dto.updated),
        }));
    }

    // Plain, content-only, 2013-era or "link to a deleted event" entry: identified by its title.
    let from_title = dto
        .title
        .as_deref()
        .and_then(parse_title)
        .map(|(revision, stream)| (stream.to_owned(), revision));
    let (stream, revision) = match (from_title, dto.stream_id.as_deref(), revision) {
        (Some(identity), _, _) => identity,
        (None, Some(stream), Some(revision)) => (stream.to_owned(), revision),
        _ => {
            return Err(format!(
                "entry {:?} names no event: no rich fields and no \"<number>@<stream>\" title",
                label(&dto)
            ))
        }
    };
    let (content, content_event_id) = content_of(dto.content);
    Ok(Entry::Summary(EntrySummary {
        stream,
        revision,
        event_type: owned(dto.summary.or(dto.event_type)),
        event_id: event_id.or(content_event_id),
        is_json: dto.is_json,
        content,
        uri: owned(dto.id),
        updated: owned(dto.updated),
    }))
}

/// Converts the feed's entries (newest first) into read-direction order.
fn entries_in_read_order(
    req: &RequestInfo,
    dtos: Vec<EntryDto<'_>>,
    direction: Direction,
) -> Result<Vec<Entry>, Error> {
    let mut entries = dtos
        .into_iter()
        .map(entry_from_dto)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|detail| req.decode_error(detail))?;
    if direction == Direction::Forward {
        entries.reverse();
    }
    Ok(entries)
}

/// Decodes a `$all` page (`GET /streams/%24all/…`).
///
/// `Ok(None)` is a 304 Not Modified (only possible when the request carried `If-None-Match`).
/// `count` is the requested page size (for [`AllPage::is_end`]).
///
/// # Errors
///
/// [`Error::Decode`] for a body that is not a feed, a description document, a malformed link or
/// entry, or a non-empty forward page without a `previous` link (which would make the reader
/// re-read the same page forever); status errors via [`status_error`].
pub fn decode_all_page(
    req: &RequestInfo,
    resp: &RawResponse,
    direction: Direction,
    count: PageSize,
) -> Result<Option<AllPage>, Error> {
    match resp.status {
        StatusCode::OK => {}
        StatusCode::NOT_MODIFIED => return Ok(None),
        _ => return Err(status_error(req, resp)),
    }
    check_feed_media_type(req, resp)?;
    let feed: FeedDto = parse_json(req, resp, "$all feed")?;
    let links = collect_links(feed.links.as_deref().unwrap_or_default());
    let entries = entries_in_read_order(req, feed.entries.unwrap_or_default(), direction)?;
    let continuation = match direction {
        Direction::Forward => &links.previous,
        Direction::Backward => &links.next,
    };
    let next = match continuation {
        None => None,
        Some(uri) => all_link_position(uri).map_err(|detail| req.decode_error(detail))?,
    };
    if direction == Direction::Forward && !entries.is_empty() && next.is_none() {
        return Err(req.decode_error(format!(
            "a forward $all page with {} entries has no `previous` link to continue from",
            entries.len()
        )));
    }
    Ok(Some(AllPage {
        direction,
        is_end: entries.len() < usize::from(count.get()),
        entries,
        next,
        etag: headers::etag(&resp.headers),
        links,
    }))
}

/// Decodes a stream page (`GET /streams/{s}/…`): 404 → [`Lookup::NotFound`], 410 →
/// [`Lookup::Deleted`].
///
/// # Errors
///
/// As [`decode_all_page`]; a 304 is an [`Error::Status`] because stream reads never send
/// `If-None-Match`.
pub fn decode_stream_page(
    req: &RequestInfo,
    resp: &RawResponse,
    stream: &str,
    direction: Direction,
    count: PageSize,
) -> Result<Lookup<StreamPage>, Error> {
    match resp.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Ok(Lookup::NotFound),
        StatusCode::GONE => return Ok(Lookup::Deleted),
        _ => return Err(status_error(req, resp)),
    }
    check_feed_media_type(req, resp)?;
    let feed: FeedDto = parse_json(req, resp, "stream feed")?;
    let links = collect_links(feed.links.as_deref().unwrap_or_default());
    let entries = entries_in_read_order(req, feed.entries.unwrap_or_default(), direction)?;
    let continuation = match direction {
        Direction::Forward => &links.previous,
        Direction::Backward => &links.next,
    };
    let next = match continuation {
        None => None,
        Some(uri) => stream_link_revision(uri).map_err(|detail| req.decode_error(detail))?,
    };
    Ok(Lookup::Found(StreamPage {
        stream: owned(feed.stream_id).unwrap_or_else(|| stream.to_owned()),
        direction,
        is_end: entries.len() < usize::from(count.get()),
        entries,
        next,
        head_of_stream: feed.head_of_stream.unwrap_or(false),
        etag: headers::etag(&resp.headers),
        links,
    }))
}

/// Decodes a single event read as an Atom entry (`GET /streams/{s}/{n}` with atom+json).
///
/// # Errors
///
/// [`Error::Decode`] for a body that is not an entry; status errors via [`status_error`].
pub fn decode_entry(req: &RequestInfo, resp: &RawResponse) -> Result<Lookup<Entry>, Error> {
    match resp.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Ok(Lookup::NotFound),
        StatusCode::GONE => return Ok(Lookup::Deleted),
        _ => return Err(status_error(req, resp)),
    }
    check_feed_media_type(req, resp)?;
    let dto: EntryDto = parse_json(req, resp, "event entry")?;
    entry_from_dto(dto)
        .map(Lookup::Found)
        .map_err(|detail| req.decode_error(detail))
}

/// Decodes a raw event read (`Accept: application/octet-stream`): the stored data bytes.
///
/// # Errors
///
/// Status errors via [`status_error`].
pub fn decode_raw_event(req: &RequestInfo, resp: &RawResponse) -> Result<Lookup<Bytes>, Error> {
    match resp.status {
        StatusCode::OK => Ok(Lookup::Found(resp.body.clone())),
        StatusCode::NOT_FOUND => Ok(Lookup::NotFound),
        StatusCode::GONE => Ok(Lookup::Deleted),
        _ => Err(status_error(req, resp)),
    }
}

/// Decodes a JSON document read with `Accept: application/json`: stream metadata (`{}` when the
/// stream has none, contract §4.5) or the data of a single event.
///
/// # Errors
///
/// [`Error::Decode`] for a body that is not JSON; status errors via [`status_error`].
pub fn decode_json_document(
    req: &RequestInfo,
    resp: &RawResponse,
) -> Result<Lookup<serde_json::Value>, Error> {
    match resp.status {
        StatusCode::OK => parse_json(req, resp, "JSON document").map(Lookup::Found),
        StatusCode::NOT_FOUND => Ok(Lookup::NotFound),
        StatusCode::GONE => Ok(Lookup::Deleted),
        _ => Err(status_error(req, resp)),
    }
}

/// Whether a 400 is the wrong-expected-version answer: the server sends `ES-CurrentVersion` with it
/// (appends always, deletes from 22.10) and the phrase `Wrong expected EventNumber` (HTTP/1.1 only).
fn is_wrong_expected_version(resp: &RawResponse) -> bool {
    headers::current_version(&resp.headers).is_some()
        || resp
            .reason
            .as_deref()
            .is_some_and(|reason| reason.to_ascii_lowercase().starts_with("wrong expected"))
}

/// Decodes the answer to an append (`POST /streams/{s}` or `/streams/{s}/metadata`).
///
/// `stream` and `expected` are what the request wrote to and sent, for the error.
///
/// # Errors
///
/// [`Error::WrongExpectedVersion`] (400 with `ES-CurrentVersion` or the phrase),
/// [`Error::StreamDeleted`] (410), [`Error::BadRequest`], [`Error::Redirected`] (e.g. the 307 the
/// server sends for a JSON write without an event id), and anything but 201 via [`status_error`]:
/// only 201 means "written" (contract §5.2).
pub fn decode_append(
    req: &RequestInfo,
    resp: &RawResponse,
    stream: &str,
    expected: ExpectedVersion,
) -> Result<Appended, Error> {
    match resp.status {
        StatusCode::CREATED => {
            let location = headers::location(&resp.headers);
            let first = location
                .as_deref()
                .and_then(|uri| uri.split(['?', '#']).next())
                .and_then(|path| path.trim_end_matches('/').rsplit('/').next())
                .and_then(|segment| segment.parse().ok());
            Ok(Appended { first, location })
        }
        StatusCode::BAD_REQUEST if is_wrong_expected_version(resp) => {
            Err(Error::WrongExpectedVersion {
                stream: stream.to_owned(),
                expected,
                current: headers::current_version(&resp.headers),
            })
        }
        StatusCode::GONE => Err(Error::StreamDeleted {
            stream: stream.to_owned(),
            reason: resp.reason.clone(),
        }),
        _ => Err(status_error(req, resp)),
    }
}

/// Decodes the answer to `DELETE /streams/{s}`.
///
/// # Errors
///
/// [`Error::WrongExpectedVersion`] (400, except the "nothing to delete" case mapped to
/// [`DeleteOutcome::StreamNotFound`]); others via [`status_error`].
pub fn decode_delete(
    req: &RequestInfo,
    resp: &RawResponse,
    stream: &str,
    expected: ExpectedVersion,
) -> Result<DeleteOutcome, Error> {
    match resp.status {
        status if status.is_success() => Ok(DeleteOutcome::Deleted),
        StatusCode::GONE => Ok(DeleteOutcome::AlreadyHardDeleted),
        StatusCode::BAD_REQUEST if is_wrong_expected_version(resp) => {
            let current = headers::current_version(&resp.headers);
            if expected == ExpectedVersion::Any
                && current == Some(crate::position::CurrentVersion::NoStream)
            {
                return Ok(DeleteOutcome::StreamNotFound);
            }
            Err(Error::WrongExpectedVersion {
                stream: stream.to_owned(),
                expected,
                current,
            })
        }
        _ => Err(status_error(req, resp)),
    }
}

/// Decodes `GET /info` (v5 and v20+ shapes).
///
/// # Errors
///
/// [`Error::Decode`] for a non-JSON body; status errors via [`status_error`].
pub fn decode_info(req: &RequestInfo, resp: &RawResponse) -> Result<NodeInfo, Error> {
    if resp.status != StatusCode::OK {
        return Err(status_error(req, resp));
    }
    let dto: InfoDto = parse_json(req, resp, "/info document")?;
    Ok(NodeInfo {
        version: dto.es_version,
        state: dto.state.as_deref().map(NodeState::parse),
        features: dto.features.map(|f| Features {
            projections: f.projections,
            user_management: f.user_management,
            atom_pub: f.atom_pub,
        }),
        authentication: dto.authentication.and_then(|a| a.kind),
        projections_mode: dto.projections_mode,
    })
}

fn endpoint(host: Option<String>, port: Option<i64>) -> Option<Endpoint> {
    let host = host.filter(|host| !host.is_empty())?;
    let port = u16::try_from(port?).ok()?;
    Some(Endpoint { host, port })
}

fn log_position(value: Option<i64>) -> Option<LogPosition> {
    value.and_then(LogPosition::from_signed)
}

fn member_from_dto(dto: MemberDto) -> Member {
    let http_endpoint = endpoint(dto.http_end_point_ip, dto.http_end_point_port)
        .or_else(|| endpoint(dto.external_http_ip, dto.external_http_port));
    Member {
        instance_id: dto.instance_id.as_deref().and_then(|id| id.parse().ok()),
        state: NodeState::parse(dto.state.as_deref().unwrap_or("Unknown")),
        is_alive: dto.is_alive.unwrap_or(false),
        http_endpoint,
        internal_http_endpoint: endpoint(dto.internal_http_ip, dto.internal_http_port),
        last_commit_position: log_position(dto.last_commit_position),
        writer_checkpoint: log_position(dto.writer_checkpoint),
        chaser_checkpoint: log_position(dto.chaser_checkpoint),
        epoch_position: log_position(dto.epoch_position),
        election_epoch: dto.epoch_number.and_then(|n| u64::try_from(n).ok()),
        election_epoch_id: dto.epoch_id.as_deref().and_then(|id| id.parse().ok()),
        node_priority: dto.node_priority,
        is_read_only_replica: dto.is_read_only_replica.unwrap_or(false),
        timestamp: dto.time_stamp,
    }
}

/// Decodes `GET /gossip` (v5 `externalHttp*` and v20+ `httpEndPoint*` member shapes).
///
/// # Errors
///
/// [`Error::Decode`] for a non-JSON body; status errors via [`status_error`].
pub fn decode_gossip(req: &RequestInfo, resp: &RawResponse) -> Result<Gossip, Error> {
    if resp.status != StatusCode::OK {
        return Err(status_error(req, resp));
    }
    let dto: GossipDto = parse_json(req, resp, "/gossip document")?;
    Ok(Gossip {
        members: dto
            .members
            .unwrap_or_default()
            .into_iter()
            .map(member_from_dto)
            .collect(),
        server: endpoint(dto.server_ip, dto.server_port),
    })
}

/// Decodes `GET /health/live`: 204/200 live, 503 not ready, 404 unsupported (v5).
///
/// # Errors
///
/// Other statuses via [`status_error`].
pub fn decode_liveness(req: &RequestInfo, resp: &RawResponse) -> Result<Liveness, Error> {
    match resp.status {
        StatusCode::NO_CONTENT | StatusCode::OK => Ok(Liveness::Live),
        StatusCode::SERVICE_UNAVAILABLE => Ok(Liveness::NotReady),
        StatusCode::NOT_FOUND => Ok(Liveness::Unsupported),
        _ => Err(status_error(req, resp)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method) -> RequestInfo {
        RequestInfo::new(method, "http://127.0.0.1:2113/streams/s")
    }

    fn response(head: &str, body: &'static str) -> RawResponse {
        RawResponse::from_http1_head(head, body).unwrap()
    }

    #[test]
    fn head_parser_keeps_only_custom_reason_phrases() {
        let r = response(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",
            "",
        );
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.reason, None);
        let r = response(
            "HTTP/1.1 400 Wrong expected EventNumber\nES-CurrentVersion: 0\nContent-Type:\n",
            "",
        );
        assert_eq!(r.reason.as_deref(), Some("Wrong expected EventNumber"));
        assert_eq!(r.headers.get("content-type").unwrap(), "");
        assert_eq!(
            RawResponse::from_http1_head("nonsense", "").unwrap_err(),
            HeadParseError::StatusLine
        );
        assert_eq!(
            RawResponse::from_http1_head("HTTP/1.1 200 OK\nbad header", "").unwrap_err(),
            HeadParseError::Header { line: 2 }
        );
        assert!(RawResponse::from_http1_head("HTTP/1.1 99 X", "").is_err());
    }

    #[test]
    fn link_parsing() {
        assert_eq!(
            all_link_position("http://h/streams/%24all/00000000000032330000000000000000/forward/4"),
            Ok(Position::new(0x3233, 0))
        );
        assert_eq!(
            all_link_position("http://h/streams/%24all/head/backward/20"),
            Ok(None)
        );
        assert!(all_link_position("http://h/streams/%24all/metadata").is_err());
        assert!(all_link_position("http://h/streams/%24all/XYZ/forward/4").is_err());
        assert_eq!(
            stream_link_revision("http://h/streams/alphabet/27/forward/20?embed=body"),
            Ok(StreamRevision::new(27))
        );
        assert!(stream_link_revision("").is_err());
    }

    #[test]
    fn title_parsing_allows_at_in_stream_names() {
        assert_eq!(
            parse_title("3@user@example.com"),
            Some((StreamRevision::new(3).unwrap(), "user@example.com"))
        );
        assert_eq!(parse_title("x@s"), None);
        assert_eq!(parse_title("3"), None);
    }

    #[test]
    fn rich_entry_with_resolved_link() {
        let dto: EntryDto = serde_json::from_str(
            r#"{"eventId":"5c7f2a4e-1d3b-4a8e-9f60-2b7c1e0d9a11","eventType":"OrderPlaced",
                "eventNumber":0,"streamId":"order-1","isJson":true,"data":"{}",
                "linkMetaData":"{\"$v\":1}","isLinkMetaData":true,
                "positionEventNumber":4,"positionStreamId":"$ce-order","title":"0@order-1"}"#,
        )
        .unwrap();
        let Entry::Event(event) = entry_from_dto(dto).unwrap() else {
            panic!("expected a rich entry")
        };
        assert_eq!(
            event.link,
            Some(EventRef {
                stream: "$ce-order".into(),
                revision: StreamRevision::new(4).unwrap()
            })
        );
        assert_eq!(event.data.as_deref(), Some(&b"{}"[..]));
        assert!(event.is_link_metadata);
    }

    #[test]
    fn nil_event_id_entry_is_a_summary() {
        // KurrentDB HEAD (b3c6d1c0): rich entry for a link to a missing event.
        let dto: EntryDto = serde_json::from_str(
            r#"{"eventId":"00000000-0000-0000-0000-000000000000","eventType":null,"eventNumber":0,
                "streamId":null,"positionEventNumber":2,"positionStreamId":"$ce-x",
                "title":"5@x-1","summary":"$>"}"#,
        )
        .unwrap();
        let Entry::Summary(summary) = entry_from_dto(dto).unwrap() else {
            panic!("expected a summary")
        };
        assert_eq!(
            (summary.stream.as_str(), summary.revision.get()),
            ("x-1", 5)
        );
        assert_eq!(summary.event_type.as_deref(), Some("$>"));
    }

    #[test]
    fn bad_entries_are_decode_errors() {
        let dto: EntryDto = serde_json::from_str(r#"{"title":"nothing"}"#).unwrap();
        assert!(entry_from_dto(dto).is_err());
        let dto: EntryDto = serde_json::from_str(
            r#"{"eventId":"5c7f2a4e-1d3b-4a8e-9f60-2b7c1e0d9a11","eventType":"t","eventNumber":-3,"streamId":"s"}"#,
        )
        .unwrap();
        assert!(entry_from_dto(dto).unwrap_err().contains("-3"));
    }

    #[test]
    fn the_continuation_is_peeked_only_from_links_before_the_entries() {
        let previous = r#"{"uri":"http://h/streams/%24all/00000000000032330000000000000000/forward/4","relation":"previous"}"#;
        let before = format!(
            r#"{{"title":"All events","headOfStream":false,"links":[{previous}],"entries":[{{"title":"0@s"}}]}}"#
        );
        assert_eq!(
            peek_forward_continuation(before.as_bytes()),
            Position::new(0x3233, 0)
        );
        let after = format!(r#"{{"entries":[{{"title":"0@s"}}],"links":[{previous}]}}"#);
        assert_eq!(peek_forward_continuation(after.as_bytes()), None);
        for body in ["", "[]", "{", r#"{"links":"#, r#"{"links":[]}"#, "<html>"] {
            assert_eq!(peek_forward_continuation(body.as_bytes()), None, "{body}");
        }
    }

    #[test]
    fn forward_page_without_previous_link_is_refused() {
        let body = r#"{"links":[],"entries":[{"title":"0@s"}]}"#;
        let resp = RawResponse::new(StatusCode::OK, HeaderMap::new(), body);
        let err = decode_all_page(
            &req(Method::GET),
            &resp,
            Direction::Forward,
            PageSize::DEFAULT,
        )
        .unwrap_err();
        assert!(err.to_string().contains("previous"), "{err}");
    }

    #[test]
    fn html_is_not_a_feed() {
        let resp = response("HTTP/1.1 200 OK\nContent-Type: text/html\n", "<html>");
        let err = decode_all_page(
            &req(Method::GET),
            &resp,
            Direction::Forward,
            PageSize::DEFAULT,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Decode { .. }));
        assert!(err.to_string().contains("text/html"));
    }

    #[test]
    fn delete_outcomes() {
        let r = req(Method::DELETE);
        let gone = response("HTTP/1.1 410 Deleted\n", "");
        assert_eq!(
            decode_delete(&r, &gone, "s", ExpectedVersion::Any).unwrap(),
            DeleteOutcome::AlreadyHardDeleted
        );
        let missing = response(
            "HTTP/1.1 400 Wrong expected EventNumber\nES-CurrentVersion: -1\n",
            "",
        );
        assert_eq!(
            decode_delete(&r, &missing, "s", ExpectedVersion::Any).unwrap(),
            DeleteOutcome::StreamNotFound
        );
        let err = decode_delete(&r, &missing, "s", ExpectedVersion::StreamExists).unwrap_err();
        assert!(matches!(err, Error::WrongExpectedVersion { .. }));
        // Pre-22.10 deletes send no ES-CurrentVersion, only the phrase.
        let old = response("HTTP/1.1 400 Wrong expected EventNumber\n", "");
        assert!(matches!(
            decode_delete(&r, &old, "s", ExpectedVersion::NoStream).unwrap_err(),
            Error::WrongExpectedVersion { current: None, .. }
        ));
    }

    #[test]
    fn append_anything_but_201_is_not_written() {
        let r = req(Method::POST);
        let ok = response("HTTP/1.1 200 OK\n", "");
        let err = decode_append(&r, &ok, "s", ExpectedVersion::Any).unwrap_err();
        assert!(matches!(err, Error::Status { .. }));
        assert!(!err.is_transient());
        let timeout = response("HTTP/1.1 500 Write timeout\n", "");
        let err = decode_append(&r, &timeout, "s", ExpectedVersion::Any).unwrap_err();
        assert!(err.is_transient());
        assert!(err.to_string().contains("Write timeout"));
        let created = response("HTTP/1.1 201 Created\n", "");
        assert_eq!(
            decode_append(&r, &created, "s", ExpectedVersion::Any).unwrap(),
            Appended {
                first: None,
                location: None
            }
        );
    }

    #[test]
    fn liveness() {
        let r = req(Method::GET);
        for (head, expected) in [
            ("HTTP/1.1 204 No Content\n", Liveness::Live),
            ("HTTP/1.1 503 Service Unavailable\n", Liveness::NotReady),
            ("HTTP/1.1 404 Not Found\n", Liveness::Unsupported),
        ] {
            assert_eq!(decode_liveness(&r, &response(head, "")).unwrap(), expected);
        }
        assert!(
            decode_liveness(&r, &response("HTTP/1.1 500 Internal Server Error\n", "")).is_err()
        );
    }

    #[test]
    fn gossip_v5_member_shape() {
        let body = r#"{"members":[{"instanceId":"f72a02ff-e4c5-468b-a4fc-e4ba66dde9f0","state":"Master",
            "isAlive":true,"externalHttpIp":"10.0.0.1","externalHttpPort":2113,
            "internalHttpIp":"10.0.1.1","internalHttpPort":2112,"lastCommitPosition":-1,
            "writerCheckpoint":100,"epochNumber":3}],"serverIp":"10.0.0.1","serverPort":2113}"#;
        let resp = RawResponse::new(StatusCode::OK, HeaderMap::new(), body);
        let gossip = decode_gossip(&req(Method::GET), &resp).unwrap();
        let leader = gossip.leader().unwrap();
        assert_eq!(
            leader.http_endpoint.as_ref().unwrap().to_string(),
            "10.0.0.1:2113"
        );
        assert_eq!(leader.internal_http_endpoint.as_ref().unwrap().port, 2112);
        assert_eq!(leader.last_commit_position, None);
        assert_eq!(leader.writer_checkpoint, LogPosition::new(100));
        assert_eq!(leader.election_epoch, Some(3));
        assert_eq!(gossip.server.unwrap().port, 2113);
    }

    #[test]
    fn info_v5_shape() {
        let body = r#"{"esVersion":"5.0.12.0","state":"master","projectionsMode":"System"}"#;
        let resp = RawResponse::new(StatusCode::OK, HeaderMap::new(), body);
        let info = decode_info(&req(Method::GET), &resp).unwrap();
        assert_eq!(info.state, Some(NodeState::Leader));
        assert_eq!(info.projections_mode.as_deref(), Some("System"));
        assert!(info.atom_pub_enabled());
    }
}
