//! `standby` keeps a warm standby Event Store (EventStoreDB / KurrentDB) cluster in step with a
//! primary cluster, over gRPC or the AtomPub HTTP API, and promotes it on an operator's command.
//!
//! # Architecture
//!
//! ```text
//!            primary cluster                                   standby cluster
//!                  │  $all subscription (gRPC)                       ▲  Append (gRPC) or POST
//!                  │  or pages (AtomPub)                             │  (original ids, exact
//!   esdb::Client ──► pipeline::reader ──mpsc──► pipeline::writer ────┘   expected versions)
//!                                                      │ watch<Position>
//!                                                      ▼
//!                                           pipeline::checkpointer ──► checkpoint (file)
//! ```
//!
//! Modules, one concern each:
//!
//! * [`position`]: typed numbers: `$all` [`Position`](position::Position), stream revisions,
//!   expected/current versions, log positions, the fencing [`Epoch`](position::Epoch). No raw
//!   integer crosses a module boundary where one of these fits.
//! * [`esdb`]: [`esdb::Client`], the one face of a node, with an arm per wire picked by the
//!   address: [`esdb::http`] (AtomPub: requests, pure response decoders, wire DTOs, and the
//!   wire's workarounds: `$all` as complete pages, the single-event forms) and [`esdb::grpc`]
//!   (connection strings, discovery, leader redirects, appends and reads encoded without
//!   property maps); the values both speak, and [`esdb::Error`] with `is_transient()`.
//! * [`pipeline`]: the start-up checks, then reader → bounded channel → writer → checkpointer,
//!   and the shutdown order. [`pipeline::plan`] says what each `$all` record becomes.
//! * [`checkpoint`]: the versioned, checksummed checkpoint file with atomic replace.
//! * [`offsets`]: the persisted number offsets of streams that do not start at 0.
//! * [`control`]: epochs, the write fence, `promote` and `switchover`, the divergence export.
//! * [`verify`], [`status`]: read-only comparisons and reports.
//! * [`backup`]: file-level backup of a node's database directory; so far `verify-backup`, on
//!   the `layout` crate.
//! * [`config`], [`metrics`], [`serve`], [`progress`], [`retry`], [`exit`], [`clock`]:
//!   operations.
//! * [`demo`], [`bench`]: the embedded default and the benchmarks, on in-process dev nodes.

pub mod backup;
pub mod bench;
pub mod check;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod esdb;
pub mod exit;
pub mod fidelity;
pub mod lease;
pub mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod position;
pub mod progress;
pub mod retry;
pub mod serve;
pub mod status;
pub mod verify;
