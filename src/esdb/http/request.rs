//! Request-side vocabulary and URL building: embed levels, page sizes, read options, where a read
//! starts, and the `/streams/...` paths with stream names escaped like .NET
//! `Uri.EscapeDataString` (contract §2.4, §3.1, §4.1).
//!
//! Everything here is pure so tests can check the exact URLs the client requests.

use std::fmt;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Url;

use crate::esdb::page::Direction;
use crate::position::{Position, StreamRevision};

/// Characters .NET `Uri.EscapeDataString` escapes: everything except the RFC 3986 unreserved set
/// `A-Z a-z 0-9 - _ . ~` (so `$` → `%24`, `@` → `%40`, space → `%20`, `/` → `%2F`).
const DATA_STRING: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Escapes a stream name (or any path segment) like .NET `Uri.EscapeDataString`.
pub fn escape_segment(segment: &str) -> String {
    utf8_percent_encode(segment, DATA_STRING).to_string()
}

/// How much of each event a feed embeds (`?embed=`, contract §3.7).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Embed {
    /// Title, id, summary (event type) only. The server default.
    #[default]
    None,
    /// Plain entry plus `content` with parsed JSON data (JSON events only).
    Content,
    /// Rich fields (event id, type, number, flags) without data.
    Rich,
    /// Rich plus the stored data of JSON events unchanged and all metadata: the level the
    /// replicator uses.
    Body,
    /// Like body, JSON objects re-indented.
    Pretty,
    /// Like pretty, non-JSON data included as (lossy) UTF-8 text.
    TryHarder,
}

impl Embed {
    /// The query value, or `None` for the default (no parameter sent).
    pub const fn query_value(self) -> Option<&'static str> {
        match self {
            Embed::None => None,
            Embed::Content => Some("content"),
            Embed::Rich => Some("rich"),
            Embed::Body => Some("body"),
            Embed::Pretty => Some("pretty"),
            Embed::TryHarder => Some("tryharder"),
        }
    }
}

/// Number of entries per page: 1 ..= 4096 (above, the server answers 500, contract §3.2).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PageSize(u16);

impl PageSize {
    /// The largest page the server serves.
    pub const MAX: PageSize = PageSize(4096);
    /// The server's default page size.
    pub const DEFAULT: PageSize = PageSize(20);

    /// Builds a page size; `None` outside 1 ..= 4096.
    pub const fn new(count: u16) -> Option<PageSize> {
        if count == 0 || count > 4096 {
            None
        } else {
            Some(PageSize(count))
        }
    }

    /// The count.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Options of a feed read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Embed level; the replicator uses [`Embed::Body`].
    pub embed: Embed,
    /// `ES-LongPoll`: on a forward read at the end, wait up to this long for new events (rounded
    /// up to whole seconds, at least 1). Ignored by the server on backward reads. The request
    /// timeout is extended by this much.
    pub long_poll: Option<Duration>,
    /// `ES-ResolveLinkTos`; `None` leaves the server default (false for `$all` on v20+, true for
    /// streams, contract §3.8, §4.3).
    pub resolve_link_tos: Option<bool>,
}

impl ReadOptions {
    /// Options with the given embed level and nothing else.
    pub fn embed(embed: Embed) -> ReadOptions {
        ReadOptions {
            embed,
            ..ReadOptions::default()
        }
    }

    /// The long-poll header value in whole seconds (rounded up, at least 1).
    pub fn long_poll_seconds(&self) -> Option<u64> {
        self.long_poll.map(|wait| {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            secs.max(1)
        })
    }
}

/// Where a backward `$all` read starts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AllFrom {
    /// The newest event.
    Head,
    /// A position handed out by the server.
    Position(Position),
}

/// Where a backward stream read starts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum StreamFrom {
    /// The newest event.
    Head,
    /// An event number.
    Revision(StreamRevision),
}

impl fmt::Display for StreamFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamFrom::Head => f.write_str("head"),
            StreamFrom::Revision(revision) => write!(f, "{revision}"),
        }
    }
}

impl fmt::Display for AllFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllFrom::Head => f.write_str("head"),
            AllFrom::Position(position) => write!(f, "{position}"),
        }
    }
}

/// Builds request URLs under a base URL (which may carry a path prefix, e.g. behind a proxy with
/// `X-Forwarded-Prefix`).
#[derive(Clone, Debug)]
pub struct Routes {
    base: Url,
}

impl Routes {
    /// Routes under `base`; query and fragment of `base` are dropped.
    pub fn new(mut base: Url) -> Routes {
        base.set_query(None);
        base.set_fragment(None);
        Routes { base }
    }

    /// The base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `base` + `path` (already escaped) + optional query.
    fn url(&self, path: &str, query: Option<(&str, &str)>) -> Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}{path}"));
        if let Some((key, value)) = query {
            url.query_pairs_mut().append_pair(key, value);
        }
        url
    }

    fn embed_query(embed: Embed) -> Option<(&'static str, &'static str)> {
        embed.query_value().map(|value| ("embed", value))
    }

    /// `/streams/%24all/{position}/forward/{count}` or `/streams/%24all/{head|position}/backward/{count}`.
    pub fn all(&self, from: AllFrom, direction: Direction, count: PageSize, embed: Embed) -> Url {
        let from = match from {
            AllFrom::Head => "head".to_owned(),
            AllFrom::Position(position) => position.to_hex(),
        };
        self.url(
            &format!("/streams/%24all/{from}/{}/{count}", direction.as_str()),
            Self::embed_query(embed),
        )
    }

    /// `/streams/{s}/{from}/{direction}/{count}`.
    pub fn stream_page(
        &self,
        stream: &str,
        from: StreamFrom,
        direction: Direction,
        count: PageSize,
        embed: Embed,
    ) -> Url {
        self.url(
            &format!(
                "/streams/{}/{from}/{}/{count}",
                escape_segment(stream),
                direction.as_str()
            ),
            Self::embed_query(embed),
        )
    }

    /// `/streams/{s}` (appends, deletes).
    pub fn stream(&self, stream: &str) -> Url {
        self.url(&format!("/streams/{}", escape_segment(stream)), None)
    }

    /// `/streams/{s}/{n|head}` (single event).
    pub fn event(&self, stream: &str, at: StreamFrom, embed: Embed) -> Url {
        self.url(
            &format!("/streams/{}/{at}", escape_segment(stream)),
            Self::embed_query(embed),
        )
    }

    /// `/streams/{s}/metadata`.
    pub fn metadata(&self, stream: &str) -> Url {
        self.url(
            &format!("/streams/{}/metadata", escape_segment(stream)),
            None,
        )
    }

    /// A node endpoint such as `/info`, `/gossip`, `/health/live`.
    pub fn endpoint(&self, path: &str) -> Url {
        self.url(path, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(base: &str) -> Routes {
        Routes::new(Url::parse(base).unwrap())
    }

    #[test]
    fn escapes_like_dotnet() {
        assert_eq!(escape_segment("$all"), "%24all");
        assert_eq!(escape_segment("$$order-1"), "%24%24order-1");
        assert_eq!(escape_segment("a b@c/d?e#f%g"), "a%20b%40c%2Fd%3Fe%23f%25g");
        assert_eq!(escape_segment("Az09-_.~"), "Az09-_.~");
        assert_eq!(escape_segment("é"), "%C3%A9");
    }

    #[test]
    fn all_urls() {
        let r = routes("http://127.0.0.1:2113");
        let count = PageSize::new(4).unwrap();
        assert_eq!(
            r.all(
                AllFrom::Position(Position::new(0x2F7F, 0).unwrap()),
                Direction::Forward,
                count,
                Embed::Body
            )
            .as_str(),
            "http://127.0.0.1:2113/streams/%24all/0000000000002F7F0000000000000000/forward/4?embed=body"
        );
        assert_eq!(
            r.all(
                AllFrom::Head,
                Direction::Backward,
                PageSize::DEFAULT,
                Embed::None
            )
            .as_str(),
            "http://127.0.0.1:2113/streams/%24all/head/backward/20"
        );
    }

    #[test]
    fn stream_urls_with_prefix() {
        let r = routes("https://proxy.example/es/?x=1");
        assert_eq!(
            r.stream_page(
                "$ce-order",
                StreamFrom::Revision(StreamRevision::new(7).unwrap()),
                Direction::Forward,
                PageSize::MAX,
                Embed::TryHarder
            )
            .as_str(),
            "https://proxy.example/es/streams/%24ce-order/7/forward/4096?embed=tryharder"
        );
        assert_eq!(
            r.metadata("my stream").as_str(),
            "https://proxy.example/es/streams/my%20stream/metadata"
        );
        assert_eq!(
            r.event("s", StreamFrom::Head, Embed::None).as_str(),
            "https://proxy.example/es/streams/s/head"
        );
        assert_eq!(
            r.endpoint("/info").as_str(),
            "https://proxy.example/es/info"
        );
        assert_eq!(
            r.stream("a/b").as_str(),
            "https://proxy.example/es/streams/a%2Fb"
        );
    }

    #[test]
    fn page_size_bounds() {
        assert!(PageSize::new(0).is_none());
        assert!(PageSize::new(4097).is_none());
        assert_eq!(PageSize::new(4096), Some(PageSize::MAX));
    }

    #[test]
    fn long_poll_rounds_up() {
        let mut options = ReadOptions::embed(Embed::Body);
        assert_eq!(options.long_poll_seconds(), None);
        options.long_poll = Some(Duration::from_millis(1500));
        assert_eq!(options.long_poll_seconds(), Some(2));
        options.long_poll = Some(Duration::ZERO);
        assert_eq!(options.long_poll_seconds(), Some(1));
        options.long_poll = Some(Duration::from_secs(30));
        assert_eq!(options.long_poll_seconds(), Some(30));
    }
}
