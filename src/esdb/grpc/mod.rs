//! The Event Store gRPC client: the server's main API since 20.6, and the only one that carries
//! events byte for byte (binary metadata, non-UTF-8 data, JSON as written).
//!
//! * [`settings`]: [`ConnectionSettings`], the `kurrentdb://` / `esdb://` connection string.
//! * [`client`]: [`Client`], the IO: connection, discovery, leader redirects, credentials,
//!   deadlines; reads, subscriptions, appends, metadata, deletes, users, gossip.
//! * [`discovery`]: choosing a member from gossip by node preference.
//! * [`append`]: the `Append` request encoded straight from the events (no property maps).
//! * [`convert`]: proto ↔ domain types ([`ReadEvent`], UUIDs, expected revisions).
//! * [`read_resp`]: `ReadResp` decoded with an event's properties read straight into values.
//! * [`error`]: status and trailers → [`crate::esdb::Error`].
//!
//! The operations map onto the wire-neutral seam planned for `esdb::Client`: `read_all` /
//! `subscribe_all` behind `all_from`, `read_stream`, `read_metadata_raw`, `append`,
//! `write_metadata_raw`, `delete`/`tombstone` behind `delete`, `user`, `disable_user`.

pub mod append;
pub mod client;
pub mod convert;
pub mod discovery;
pub mod error;
pub mod read_resp;
pub mod settings;

pub use client::{
    Client, Filter, FilterOn, ReadFrom, ServerFeatures, Subscription, SupportedMethod, WriteResult,
};
pub use convert::{ReadEvent, SubscriptionMessage};
pub use settings::{ConnectionSettings, NodePreference, ParseError, UserCertificate};
