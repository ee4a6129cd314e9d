//! `devnode`: an Event Store–compatible node speaking the AtomPub HTTP API, for `standby`'s tests
//! and demo. Not a production database.
//!
//! Module map:
//! * [`config`] – [`NodeConfig`], [`Profile`] (which server generation to imitate), [`Storage`], [`User`].
//! * [`tls`] – secure mode: the rustls server side and the development certificates ([`DevCerts`]).
//! * [`store`] – the storage core, free of HTTP types: append-only log with byte positions
//!   ([`store::log`]), stream index, expected-version and idempotency rules, deletes, metadata and
//!   ACLs ([`store::acl`]).
//! * `auth` – Basic credentials → principal, shared by both fronts.
//! * `grpc` – the gRPC front (v1 Streams, Users, Gossip, ServerFeatures; docs/grpc.md), served
//!   on the HTTP port beside the AtomPub API.
//! * [`projections`] – the system projections (`--run-projections system`): `$streams`, `$ce-*`,
//!   `$et-*`, `$category-*`, `$bc-*` link events written behind the log through the store.
//! * [`http`] – the protocol front: routing on raw paths, content negotiation, feed rendering,
//!   append parsing, reason phrases; and [`Node`], which runs it.
//!
//! The wire contract followed throughout is `docs/http-api.md`; comments cite
//! its sections as `§n.m`.

mod auth;
pub mod config;
mod grpc;
pub mod http;
pub mod projections;
pub mod store;
pub mod tls;

pub use config::{NodeConfig, Profile, RunProjections, Security, Storage, User};
pub use http::Node;
pub use tls::{DevCerts, SecurityError};

/// Errors of [`Node::start`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: {0}")]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Security(#[from] SecurityError),
}
