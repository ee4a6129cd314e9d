//! The Event Store gRPC client: the server's main API since 20.6, and the only one that carries
//! events byte for byte (binary metadata, non-UTF-8 data, JSON as written).
//!
//! * [`settings`]: [`ConnectionSettings`], the `kurrentdb://` / `esdb://` connection string.

pub mod settings;

pub use settings::{ConnectionSettings, NodePreference, ParseError, UserCertificate};
