//! Checkpoint files: exactly 8 bytes, a signed 64-bit little-endian integer, overwritten in place.
//! Follows `TransactionLog/Checkpoint/FileCheckpoint.cs` (and `MemoryMappedFileCheckpoint.cs`,
//! which maps the same 8 bytes) and the names in `Checkpoint/Checkpoint.cs`; paths and initial
//! values from `ClusterVNode.cs` `CreateDbConfig` and
//! `LogV2/LogV2StreamExistenceFilterInitializer.cs`.
//!
//! The server is lenient where a backup must not be: a file of any other length is cut or
//! zero-padded to 8 bytes and read, so a 0-byte `chaser.chk` reads as 0. [`read`] reports the
//! length so callers can refuse what the server would silently accept.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Bytes in a checkpoint file.
pub const CHECKPOINT_SIZE: usize = 8;

/// The checkpoint files a node keeps on disk. `replication` and `index` exist only in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckpointKind {
    /// Next write position: the end of the log. Always present.
    Writer,
    /// Post-position of the last record the chaser (indexing) processed; ≤ writer.
    Chaser,
    /// Log position of the last epoch record; -1 before the first. ≤ writer.
    Epoch,
    /// -1, or the position to truncate the log to at the next start; ≤ writer when set.
    Truncate,
    /// 20.10+: the last epoch number proposed in an election (a number, not a position).
    Proposal,
    /// HEAD only (not in any release): a random tag of the database.
    Tag,
    /// 21.10+, in `index/stream-existence/`: how far the stream-existence filter is filled.
    StreamExistenceFilter,
}

impl CheckpointKind {
    pub const ALL: [CheckpointKind; 7] = [
        CheckpointKind::Writer,
        CheckpointKind::Chaser,
        CheckpointKind::Epoch,
        CheckpointKind::Truncate,
        CheckpointKind::Proposal,
        CheckpointKind::Tag,
        CheckpointKind::StreamExistenceFilter,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            CheckpointKind::Writer => "writer.chk",
            CheckpointKind::Chaser => "chaser.chk",
            CheckpointKind::Epoch => "epoch.chk",
            CheckpointKind::Truncate => "truncate.chk",
            CheckpointKind::Proposal => "proposal.chk",
            CheckpointKind::Tag => "tag.chk",
            CheckpointKind::StreamExistenceFilter => "streamExistenceFilter.chk",
        }
    }

    /// Where the file lives, given the database and index directories.
    pub fn path(self, db: &Path, index: &Path) -> PathBuf {
        match self {
            CheckpointKind::StreamExistenceFilter => {
                index.join("stream-existence").join(self.file_name())
            }
            _ => db.join(self.file_name()),
        }
    }

    /// The value a node writes when it creates the file. `None` for the random tag.
    pub fn initial_value(self) -> Option<i64> {
        match self {
            CheckpointKind::Writer | CheckpointKind::Chaser => Some(0),
            CheckpointKind::Tag => None,
            _ => Some(-1),
        }
    }

    /// Whether -1 means "not set" for this checkpoint (everything but writer, chaser and tag).
    pub fn minus_one_means_unset(self) -> bool {
        !matches!(
            self,
            CheckpointKind::Writer | CheckpointKind::Chaser | CheckpointKind::Tag
        )
    }
}

/// What a checkpoint file holds, with its length so damage the server hides can be seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointRead {
    /// The value as the server reads it: the first 8 bytes, zero-padded if the file is shorter.
    pub value: i64,
    /// The file's length; anything but 8 is damage.
    pub len: u64,
}

impl CheckpointRead {
    pub fn is_well_formed(&self) -> bool {
        self.len == CHECKPOINT_SIZE as u64
    }
}

/// Decodes checkpoint bytes as the server would (`BinaryReader.ReadInt64` after `SetLength(8)`).
pub fn decode(bytes: &[u8]) -> CheckpointRead {
    let mut b = [0u8; CHECKPOINT_SIZE];
    let n = bytes.len().min(CHECKPOINT_SIZE);
    b[..n].copy_from_slice(&bytes[..n]);
    CheckpointRead {
        value: i64::from_le_bytes(b),
        len: bytes.len() as u64,
    }
}

pub fn encode(value: i64) -> [u8; CHECKPOINT_SIZE] {
    value.to_le_bytes()
}

/// Reads a checkpoint file. `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<CheckpointRead>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut b = Vec::with_capacity(CHECKPOINT_SIZE);
    // Never read more than a few bytes from a file that should hold 8.
    (&mut f)
        .take(4096)
        .read_to_end(&mut b)
        .map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut r = decode(&b);
    r.len = len;
    Ok(Some(r))
}

/// Writes a checkpoint in place and syncs it, as `FileCheckpoint.Flush` does: seek to 0, write 8
/// bytes, flush to disk. Creates the file if needed and cuts it to 8 bytes.
pub fn write(path: &Path, value: i64) -> Result<()> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    f.write_all(&encode(value))
        .map_err(|e| Error::io(path, e))?;
    f.set_len(CHECKPOINT_SIZE as u64)
        .map_err(|e| Error::io(path, e))?;
    f.sync_data().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `BinaryWriter.Write(long)`: 8 bytes little-endian.
    #[test]
    fn golden_values() {
        assert_eq!(encode(-1), [0xFF; 8]);
        assert_eq!(encode(0), [0; 8]);
        assert_eq!(encode(1 << 40), [0, 0, 0, 0, 0, 1, 0, 0]);
    }

    /// A 0-byte file reads as 0 and a 3-byte one as its bytes zero-padded, as the server reads
    /// them, but neither is well formed.
    #[test]
    fn short_files_read_as_the_server_reads_them() {
        let r = decode(&[]);
        assert_eq!((r.value, r.is_well_formed()), (0, false));
        let r = decode(&[1, 2, 3]);
        assert_eq!((r.value, r.is_well_formed()), (0x030201, false));
        let r = decode(&[0xFF; 12]);
        assert_eq!((r.value, r.is_well_formed()), (-1, false));
    }

    #[test]
    fn file_round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("writer.chk");
        assert_eq!(read(&p).unwrap(), None);
        write(&p, 12345).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), 12345i64.to_le_bytes());
        std::fs::write(&p, [0u8; 20]).unwrap();
        write(&p, -1).unwrap();
        assert_eq!(
            read(&p).unwrap(),
            Some(CheckpointRead { value: -1, len: 8 })
        );
    }

    #[test]
    fn names_paths_and_initial_values() {
        let (db, ix) = (Path::new("/db"), Path::new("/db/index"));
        assert_eq!(
            CheckpointKind::StreamExistenceFilter.path(db, ix),
            Path::new("/db/index/stream-existence/streamExistenceFilter.chk")
        );
        assert_eq!(
            CheckpointKind::Truncate.path(db, ix),
            Path::new("/db/truncate.chk")
        );
        assert_eq!(CheckpointKind::Writer.initial_value(), Some(0));
        assert_eq!(CheckpointKind::Epoch.initial_value(), Some(-1));
        assert!(CheckpointKind::Truncate.minus_one_means_unset());
        assert!(!CheckpointKind::Chaser.minus_one_means_unset());
    }

    proptest! {
        #[test]
        fn round_trips(v: i64) {
            let r = decode(&encode(v));
            prop_assert_eq!(r, CheckpointRead { value: v, len: 8 });
        }
    }
}
