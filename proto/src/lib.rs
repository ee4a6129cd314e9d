//! The Event Store v1 gRPC protocol, as prost messages and tonic clients and servers.
//!
//! `protos/` holds the project's own definitions of the services `standby` and the dev node
//! speak (Streams, Users, Gossip, ServerFeatures and their shared messages); docs/grpc.md
//! describes the contract in prose. The Rust code in `src/generated/` is generated from them
//! and committed, so a build needs neither `protoc` nor a build script. After changing a
//! `.proto` file, regenerate with
//!
//! ```text
//! PROTO_REGEN=1 cargo test -p proto --features regen --test generated
//! ```
//!
//! and without `PROTO_REGEN` the same test fails when the committed code is stale.
//!
//! Generation choices: every `bytes` field is [`bytes::Bytes`] (event data and metadata are
//! passed on without copying), and `event_store.client.Empty` is `()`.
//!
//! Module paths follow the protobuf packages: [`event_store::client::streams`],
//! [`event_store::client::users`], [`event_store::client::gossip`],
//! [`event_store::client::server_features`], shared messages in [`event_store::client`], and
//! the v1 flavour of `google.rpc.Status` in [`google::rpc`].

#![allow(clippy::all, missing_docs, rustdoc::all)]

pub mod event_store {
    pub mod client {
        include!("generated/event_store.client.rs");

        pub mod streams {
            include!("generated/event_store.client.streams.rs");
        }
        pub mod users {
            include!("generated/event_store.client.users.rs");
        }
        pub mod gossip {
            include!("generated/event_store.client.gossip.rs");
        }
        pub mod server_features {
            include!("generated/event_store.client.server_features.rs");
        }
    }
}

pub mod google {
    pub mod rpc {
        include!("generated/google.rpc.rs");
    }
}

/// The `.proto` files, relative to `protos/`, in dependency order.
pub const PROTO_FILES: &[&str] = &[
    "code.proto",
    "status.proto",
    "shared.proto",
    "streams.proto",
    "users.proto",
    "gossip.proto",
    "serverfeatures.proto",
];

pub mod ids;
