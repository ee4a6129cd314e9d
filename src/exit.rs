//! Process exit codes: one meaning each, the same for every command (documented in
//! `docs/operations.md`, *Restart and upgrade*), so scripts and orchestrators can act on them.

/// Clean stop (`run` after SIGINT/SIGTERM), or the command did what it was asked.
pub const OK: u8 = 0;
/// An internal error: a bug or an unexpected condition; the message says what. Also a replicator
/// that stopped because it could not renew its lease (the secondary did not answer): a restart
/// resumes once the secondary answers.
pub const INTERNAL: u8 = 1;
/// Bad command line or configuration.
pub const USAGE: u8 = 2;
/// Fenced or refused: a corrupt or foreign checkpoint, missing credentials or permissions, a
/// promoted secondary, another replicator holding the checkpoint lock or the lease.
pub const REFUSED: u8 = 3;
/// The secondary differs from the primary (`run` halted, or `verify` found a difference).
pub const DIVERGENCE: u8 = 4;
/// A one-shot command could not reach a cluster.
pub const UNREACHABLE: u8 = 5;
/// A database directory or backup is damaged or inconsistent (`verify-backup` found an error):
/// restoring it or starting a node on it would fail or lose data. Distinct from 4, which is about
/// two clusters differing.
pub const DAMAGED: u8 = 6;
