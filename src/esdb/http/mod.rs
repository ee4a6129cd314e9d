//! The AtomPub (HTTP) wire: everything `standby` says to a node over the contract of
//! `docs/http-api.md` (cited as "contract §N").
//!
//! * [`client`]: [`Client`], the IO: builds requests, sends them, captures responses.
//! * [`request`]: URLs (stream names escaped like .NET `Uri.EscapeDataString`), [`Embed`],
//!   [`PageSize`], [`ReadOptions`].
//! * [`headers`]: `ES-*`/`Kurrent-*` header names, media types, response header parsing.
//! * [`encode`]: request bodies: the `events+json` batch encoding of events.
//! * [`response`]: pure decoders (status, reason phrase, headers, body → result); tests feed
//!   recorded server responses through them.
//! * [`feed`]: wire DTOs (serde shapes of feeds, entries, `/info`, `/gossip`).
//! * [`users`]: user management over `/users`.
//! * [`append`]: the events the `events+json` batch cannot carry, and the single-event forms.
//! * [`all_feed`]: `$all` as complete pages for the replicator: read ahead, long poll, smaller
//!   pages after timeouts, the data the feed leaves out.

pub mod all_feed;
pub mod append;
pub mod client;
pub mod encode;
pub mod feed;
pub mod headers;
pub mod request;
pub mod response;
pub mod users;

pub use all_feed::{AllFeed, FeedPage, Hooks, TextCopy};
pub use client::{Client, FetchedAllPage};
pub use encode::EncodeError;
pub use headers::{ETag, HeaderFamily};
pub use request::{AllFrom, Embed, PageSize, ReadOptions, StreamFrom};
pub use response::{RawResponse, RequestInfo};
