//! The on-disk format of an Event Store / KurrentDB node, read and written without a server:
//! chunk files ([`chunk`]), log records ([`record`]), the 8-byte checkpoint files
//! ([`checkpoint`]), the index directory ([`index`]: `indexmap`, PTables, Bloom filters) and an
//! offline verifier ([`verify`]) that reports, file by file, what is damaged or inconsistent and
//! what the server will do with the directory when it starts.
//!
//! Synchronous, no network, no policy: which files to copy, when to write which checkpoint and
//! what to do about a finding belong to the callers (the dev node's chunk layout and
//! `standby verify-backup`). Every structure names the server source file it follows; the format
//! in prose is `docs/on-disk-layout.md`.

pub mod checkpoint;
pub mod chunk;
pub mod error;
mod hash;
pub mod index;
pub mod record;
pub mod verify;

pub use error::{Error, Result};
