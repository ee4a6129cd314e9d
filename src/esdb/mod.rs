//! What `standby` asks of an Event Store node, on either wire.
//!
//! * [`client`]: [`Client`], the one face everything above `esdb/` uses, with an arm per wire;
//!   the address's scheme picks it ([`Wire`]).
//! * [`http`]: the AtomPub client (contract of `docs/http-api.md`, cited as "contract §N").
//! * [`grpc`]: the gRPC client (its own connection strings, discovery and calls).
//! * [`types`], [`page`], [`metadata`], [`node`]: the values both wires speak: events to append,
//!   what reads and writes answer, stream metadata and system settings, cluster members.
//! * [`config`], [`tls`]: [`ClientConfig`] and [`Credentials`] (never printed), and the rustls
//!   configuration, for both wires.
//! * [`error`]: [`Error`] with [`Error::is_transient`], shared by both wires.
//!
//! Expected conditions are values: a missing stream is [`Lookup::NotFound`], a hard-deleted one
//! [`Lookup::Deleted`], a repeated hard delete [`DeleteOutcome::AlreadyHardDeleted`].

pub mod client;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metadata;
pub mod node;
pub mod page;
pub mod tls;
pub mod types;

pub use client::{Client, Wire};
pub use config::{ClientConfig, Credentials, Password};
pub use error::Error;
pub use http::client::SETTINGS_STREAM;
pub use http::{
    AllFrom, ETag, Embed, EncodeError, FetchedAllPage, HeaderFamily, PageSize, RawResponse,
    ReadOptions, RequestInfo, StreamFrom,
};
pub use metadata::{Acl, Roles, StreamMetadata, SystemSettings};
pub use node::{Endpoint, Gossip, Liveness, Member, NodeInfo, NodeState, Security};
pub use page::{
    AllPage, Direction, Entry, EntryContent, EntrySummary, EventRef, Links, Lookup, RecordedEvent,
    StreamPage,
};
pub use types::{Appended, DeleteMode, DeleteOutcome, EventData, NewUser, UserDetails};
