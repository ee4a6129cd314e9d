//! The on-disk format of an Event Store / KurrentDB node, read and written without a server:
//! chunk files ([`chunk`]), log records ([`record`]), the 8-byte checkpoint files
//! ([`checkpoint`]), the index directory ([`index`]: `indexmap`, PTables, Bloom filters) and an
//! offline verifier ([`verify`]) that reports, file by file, what is damaged or inconsistent and
//! what the server will do with the directory when it starts.
//!
//! Writing, as the dev node does it: [`chunk::ChunkWriter::create_new`] for each new chunk,
//! [`chunk::ChunkWriter::append`] per record (it answers [`chunk::Appended::ChunkFull`] when the
//! record belongs in the next chunk), [`chunk::ChunkWriter::flush`] before
//! [`checkpoint::write`] of `writer.chk`, [`chunk::ChunkWriter::complete`] when full,
//! [`chunk::ChunkWriter::reopen`] after a restart; scavenges through
//! [`chunk::ChunkWriter::create_scavenged`] and `complete_scavenged`; the index through
//! [`index::write_ptable`] and [`index::IndexMap::write`].
//!
//! Reading and checking, as `verify-backup` does: [`verify::verify_dir`] for a whole directory,
//! or the per-file readers ([`chunk::ChunkFile`], [`index::PTableFile`], [`index::IndexMap::read`],
//! [`checkpoint::read`], [`index::bloom::verify_filter`]) for files one at a time.
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
