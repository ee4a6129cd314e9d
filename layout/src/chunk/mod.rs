//! Chunk files: the transaction log, split into files of `ChunkSize` logical bytes.
//!
//! Chunk `X` covers logical positions `[X·ChunkSize, (X+1)·ChunkSize)`; a scavenged file may
//! cover several (`ChunkStartNumber..=ChunkEndNumber`). Records never straddle chunks: when one
//! does not fit, the chunk is completed and the record goes to the next chunk's start, so the
//! tail of every chunk is unused and positions are not dense (`TFChunkWriter.cs`).

mod file;
mod footer;
mod header;
mod name;
mod writer;

pub use file::{ChunkFile, FramedRecord, FramingError, PosMapIter, RecordIter};
pub use footer::{
    ChunkFooter, PosMapEntry, CHECKSUM_SIZE, FOOTER_SIZE, POS_MAP_DEPRECATED_ENTRY_SIZE,
    POS_MAP_ENTRY_SIZE,
};
pub use header::{
    ChunkHeader, CHUNK_FILE_TYPE, CURRENT_VERSION, HEADER_SIZE, TRANSFORM_ENCRYPTION_AES_GCM,
    TRANSFORM_IDENTITY, VERSION_ALIGNED, VERSION_TRANSFORMED, VERSION_UNALIGNED,
};
pub use name::ChunkName;
pub(crate) use writer::sync_dir;
pub use writer::{Appended, ChunkWriter, Completed};

/// Completed chunks of version 3 and later are padded to a multiple of this (`TFChunk.AlignmentSize`).
pub const ALIGNMENT: u64 = 4096;
/// `TFConsts.ChunkSize`: the default data bytes per chunk (256 MiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024 * 1024;
