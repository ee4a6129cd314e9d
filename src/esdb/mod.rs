//! The Event Store HTTP (AtomPub) client: everything `standby` says to a node, on the wire
//! contract of `docs/http-api.md` (cited as "contract §N").
//!
//! One concern per file:
//!
//! * [`config`]: [`ClientConfig`] and [`Credentials`] (never printed).
//! * [`tls`]: the rustls configuration (ring provider, system roots + optional CA file).
//! * [`client`]: [`Client`], the IO: builds requests, sends them, captures responses.
//! * [`request`]: URLs (stream names escaped like .NET `Uri.EscapeDataString`), [`Embed`],
//!   [`PageSize`], [`ReadOptions`].
//! * [`headers`]: `ES-*`/`Kurrent-*` header names, media types, response header parsing.
//! * [`encode`]: request bodies: the `events+json` batch encoding of [`EventData`].
//! * [`response`]: pure decoders (status, reason phrase, headers, body → result); tests feed
//!   recorded server responses through them.
//! * [`feed`]: wire DTOs (serde shapes of feeds, entries, `/info`, `/gossip`).
//! * [`page`], [`metadata`], [`node`]: domain results ([`AllPage`], [`StreamPage`], [`Entry`],
//!   [`Lookup`], [`StreamMetadata`], [`SystemSettings`], [`NodeInfo`], [`Gossip`]).
//! * [`users`]: user management ([`UserDetails`], [`NewUser`]; enable, disable, reset password).
//! * [`error`]: [`Error`] with [`Error::is_transient`], shared by both wires.
//! * [`grpc`]: the gRPC client (its own connection strings, discovery and calls), reporting
//!   through the same [`Error`].
//!
//! Expected conditions are values: a missing stream is [`Lookup::NotFound`], a hard-deleted one
//! [`Lookup::Deleted`], a repeated hard delete [`DeleteOutcome::AlreadyHardDeleted`].

pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metadata;
pub mod node;
pub mod page;
pub mod tls;
pub mod types;

pub use config::{ClientConfig, Credentials, Password};
pub use error::Error;
pub use http::client::SETTINGS_STREAM;
pub use http::{
    AllFrom, Client, ETag, Embed, EncodeError, FetchedAllPage, HeaderFamily, PageSize, RawResponse,
    ReadOptions, RequestInfo, StreamFrom,
};
pub use metadata::{Acl, Roles, StreamMetadata, SystemSettings};
pub use node::{Endpoint, Gossip, Liveness, Member, NodeInfo, NodeState, Security};
pub use page::{
    AllPage, Direction, Entry, EntryContent, EntrySummary, EventRef, Links, Lookup, RecordedEvent,
    StreamPage,
};
pub use types::{Appended, DeleteMode, DeleteOutcome, EventData, NewUser, UserDetails};
