//! Header names and media types of the AtomPub API, and pure parsers for the response headers the
//! client reads (`ES-CurrentVersion`, `ETag`, `Location`, `Content-Type`).
//!
//! The API has two naming families (contract §1): the `ES-*` headers and `vnd.eventstore` media
//! types understood by every server version, and the `Kurrent-*` / `vnd.kurrent` names that
//! KurrentDB 25+ prefers (while still accepting the old ones). The client *sends* one family, chosen
//! by [`HeaderFamily`] (default [`HeaderFamily::Es`], which works everywhere), and *accepts* both in
//! responses.

use std::fmt;

use reqwest::header::{HeaderMap, HeaderName, CONTENT_TYPE, ETAG, LOCATION};
use serde::Deserialize;

use crate::position::CurrentVersion;

/// Which header/media-type naming family the client sends.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeaderFamily {
    /// `ES-*` headers and `application/vnd.eventstore.*` media types: accepted by v3 … KurrentDB
    /// HEAD (contract §1), so the safe default.
    #[default]
    Es,
    /// `Kurrent-*` headers and `application/vnd.kurrent.*` media types: KurrentDB 25+ only.
    Kurrent,
}

/// The request headers the client sends; [`RequestHeader::name`] spells them per family.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RequestHeader {
    /// Expected version of a write or delete (contract §5.2).
    ExpectedVersion,
    /// Event id of a single-event or metadata write.
    EventId,
    /// Event type of a single-event write.
    EventType,
    /// `true` turns a `DELETE` into a hard delete (tombstone).
    HardDelete,
    /// Seconds a forward read may wait for new events (contract §3.5).
    LongPoll,
    /// Whether link events are resolved (spelled with the trailing `s`, contract §1).
    ResolveLinkTos,
}

impl RequestHeader {
    /// The header name in the given family.
    pub const fn name(self, family: HeaderFamily) -> &'static str {
        match (family, self) {
            (HeaderFamily::Es, RequestHeader::ExpectedVersion) => "ES-ExpectedVersion",
            (HeaderFamily::Es, RequestHeader::EventId) => "ES-EventId",
            (HeaderFamily::Es, RequestHeader::EventType) => "ES-EventType",
            (HeaderFamily::Es, RequestHeader::HardDelete) => "ES-HardDelete",
            (HeaderFamily::Es, RequestHeader::LongPoll) => "ES-LongPoll",
            (HeaderFamily::Es, RequestHeader::ResolveLinkTos) => "ES-ResolveLinkTos",
            (HeaderFamily::Kurrent, RequestHeader::ExpectedVersion) => "Kurrent-ExpectedVersion",
            (HeaderFamily::Kurrent, RequestHeader::EventId) => "Kurrent-EventId",
            (HeaderFamily::Kurrent, RequestHeader::EventType) => "Kurrent-EventType",
            (HeaderFamily::Kurrent, RequestHeader::HardDelete) => "Kurrent-HardDelete",
            (HeaderFamily::Kurrent, RequestHeader::LongPoll) => "Kurrent-LongPoll",
            (HeaderFamily::Kurrent, RequestHeader::ResolveLinkTos) => "Kurrent-ResolveLinkTos",
        }
    }

    /// The header name as a typed [`HeaderName`].
    pub fn header_name(self, family: HeaderFamily) -> HeaderName {
        HeaderName::from_static(lower_case_name(self, family))
    }
}

/// `HeaderName::from_static` requires lower-case input; HTTP header names are case-insensitive.
const fn lower_case_name(header: RequestHeader, family: HeaderFamily) -> &'static str {
    match (family, header) {
        (HeaderFamily::Es, RequestHeader::ExpectedVersion) => "es-expectedversion",
        (HeaderFamily::Es, RequestHeader::EventId) => "es-eventid",
        (HeaderFamily::Es, RequestHeader::EventType) => "es-eventtype",
        (HeaderFamily::Es, RequestHeader::HardDelete) => "es-harddelete",
        (HeaderFamily::Es, RequestHeader::LongPoll) => "es-longpoll",
        (HeaderFamily::Es, RequestHeader::ResolveLinkTos) => "es-resolvelinktos",
        (HeaderFamily::Kurrent, RequestHeader::ExpectedVersion) => "kurrent-expectedversion",
        (HeaderFamily::Kurrent, RequestHeader::EventId) => "kurrent-eventid",
        (HeaderFamily::Kurrent, RequestHeader::EventType) => "kurrent-eventtype",
        (HeaderFamily::Kurrent, RequestHeader::HardDelete) => "kurrent-harddelete",
        (HeaderFamily::Kurrent, RequestHeader::LongPoll) => "kurrent-longpoll",
        (HeaderFamily::Kurrent, RequestHeader::ResolveLinkTos) => "kurrent-resolvelinktos",
    }
}

/// Response header carrying the stream's current version after a wrong-expected-version failure;
/// v25+ sends this one first.
pub const KURRENT_CURRENT_VERSION: &str = "kurrent-currentversion";
/// Response header carrying the stream's current version (all versions).
pub const ES_CURRENT_VERSION: &str = "es-currentversion";

/// Media types the client sends or recognises.
pub mod media {
    use super::HeaderFamily;

    /// Atom feed as JSON, v3 … HEAD.
    pub const ATOM_JSON_ES: &str = "application/vnd.eventstore.atom+json";
    /// Atom feed as JSON, KurrentDB 25+.
    pub const ATOM_JSON_KURRENT: &str = "application/vnd.kurrent.atom+json";
    /// Batch append body, v3 … HEAD.
    pub const EVENTS_JSON_ES: &str = "application/vnd.eventstore.events+json";
    /// Batch append body, KurrentDB 25+.
    pub const EVENTS_JSON_KURRENT: &str = "application/vnd.kurrent.events+json";
    /// Description document, served when `Accept` is missing (contract §2.3).
    pub const STREAM_DESCRIPTION: &str = "application/vnd.eventstore.streamdesc+json";
    /// Plain JSON: single-event JSON writes, metadata reads and writes, `/info`, `/gossip`.
    pub const JSON: &str = "application/json";
    /// Raw bytes: binary single-event writes, raw event reads.
    pub const OCTET_STREAM: &str = "application/octet-stream";

    /// The atom+json media type of a family (sent as `Accept` for feeds and entries).
    pub const fn atom_json(family: HeaderFamily) -> &'static str {
        match family {
            HeaderFamily::Es => ATOM_JSON_ES,
            HeaderFamily::Kurrent => ATOM_JSON_KURRENT,
        }
    }

    /// The events+json media type of a family (sent as `Content-Type` of batch appends).
    pub const fn events_json(family: HeaderFamily) -> &'static str {
        match family {
            HeaderFamily::Es => EVENTS_JSON_ES,
            HeaderFamily::Kurrent => EVENTS_JSON_KURRENT,
        }
    }
}

/// The bare media type of a `Content-Type` value: text before `;`, trimmed, lower case.
///
/// Tolerates the malformed `charset: utf-8` parameter of 2013 servers and empty values (both
/// recorded, see the fixtures).
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let bare = value.split(';').next().unwrap_or("").trim();
    if bare.is_empty() {
        None
    } else {
        Some(bare.to_ascii_lowercase())
    }
}

/// Whether a media type is one of the JSON feed/entry types the client asked for (either family,
/// or plain `application/json`, which v3+ servers may answer with the same JSON).
pub fn is_json_feed_type(media_type: &str) -> bool {
    matches!(
        media_type,
        media::ATOM_JSON_ES | media::ATOM_JSON_KURRENT | media::JSON
    )
}

/// The stream's current version from `Kurrent-CurrentVersion` or `ES-CurrentVersion`.
///
/// `Kurrent-CurrentVersion` wins when both are present (v25+ sends both with the same value).
/// `None` when neither header is present or parseable.
pub fn current_version(headers: &HeaderMap) -> Option<CurrentVersion> {
    [KURRENT_CURRENT_VERSION, ES_CURRENT_VERSION]
        .iter()
        .filter_map(|name| headers.get(*name))
        .filter_map(|value| value.to_str().ok())
        .find_map(|text| text.parse().ok())
}

/// An opaque entity tag from the `ETag` header, e.g. `"26;-2060438500"` (quotes included, so it can
/// be sent back verbatim in `If-None-Match`).
///
/// The number before `;` is the last event number (streams) or the last commit position (`$all`);
/// the suffix is a per-process hash on v20+ servers, so the whole value is treated as opaque
/// (contract §2.5).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ETag(String);

impl ETag {
    /// Wraps a raw `ETag` header value.
    pub fn new(value: impl Into<String>) -> ETag {
        ETag(value.into())
    }

    /// The raw header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `ETag` response header, if present and visible ASCII.
pub fn etag(headers: &HeaderMap) -> Option<ETag> {
    let value = headers.get(ETAG)?.to_str().ok()?.trim();
    if value.is_empty() {
        None
    } else {
        Some(ETag::new(value))
    }
}

/// The `Location` response header, if present and visible ASCII.
pub fn location(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(LOCATION)?.to_str().ok()?.trim();
    if value.is_empty() {
        None
    } else {
        Some(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::StreamRevision;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn header_names_per_family() {
        for header in [
            RequestHeader::ExpectedVersion,
            RequestHeader::EventId,
            RequestHeader::EventType,
            RequestHeader::HardDelete,
            RequestHeader::LongPoll,
            RequestHeader::ResolveLinkTos,
        ] {
            for family in [HeaderFamily::Es, HeaderFamily::Kurrent] {
                assert_eq!(
                    header.header_name(family).as_str(),
                    header.name(family).to_ascii_lowercase()
                );
            }
        }
        assert_eq!(
            RequestHeader::ResolveLinkTos.name(HeaderFamily::Es),
            "ES-ResolveLinkTos"
        );
        assert_eq!(
            RequestHeader::ExpectedVersion.name(HeaderFamily::Kurrent),
            "Kurrent-ExpectedVersion"
        );
    }

    #[test]
    fn media_type_tolerates_recorded_oddities() {
        let h = headers(&[("content-type", "application/json; charset: utf-8")]);
        assert_eq!(media_type(&h).as_deref(), Some("application/json"));
        let h = headers(&[("content-type", "")]);
        assert_eq!(media_type(&h), None);
        let h = headers(&[(
            "content-type",
            "Application/Vnd.Kurrent.Atom+Json; charset=utf-8",
        )]);
        let media = media_type(&h).unwrap();
        assert!(is_json_feed_type(&media));
        assert!(!is_json_feed_type(media::STREAM_DESCRIPTION));
    }

    #[test]
    fn current_version_from_either_family() {
        let h = headers(&[("ES-CurrentVersion", "0")]);
        assert_eq!(
            current_version(&h),
            Some(CurrentVersion::Revision(StreamRevision::START))
        );
        let h = headers(&[("Kurrent-CurrentVersion", "-1")]);
        assert_eq!(current_version(&h), Some(CurrentVersion::NoStream));
        let h = headers(&[
            ("Kurrent-CurrentVersion", "junk"),
            ("ES-CurrentVersion", "5"),
        ]);
        assert_eq!(
            current_version(&h),
            Some(CurrentVersion::Revision(StreamRevision::new(5).unwrap()))
        );
        assert_eq!(current_version(&HeaderMap::new()), None);
    }

    #[test]
    fn etag_and_location() {
        let h = headers(&[
            ("etag", "\"26;-2060438500\""),
            ("location", "http://127.0.0.1:2113/streams/newstream/2"),
        ]);
        assert_eq!(etag(&h).unwrap().as_str(), "\"26;-2060438500\"");
        assert_eq!(
            location(&h).as_deref(),
            Some("http://127.0.0.1:2113/streams/newstream/2")
        );
        assert_eq!(etag(&HeaderMap::new()), None);
    }
}
