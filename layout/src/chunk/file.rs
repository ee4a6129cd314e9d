//! Reading a chunk file: header, footer, size rules, MD5, position map and the framed records,
//! all streamed so that memory stays bounded by one record (at most 16 MiB) plus one I/O buffer.
//!
//! A completed chunk is `header(128) | data(PhysicalDataSize) | posmap(MapSize) | zero padding |
//! footer(128)`, the total a multiple of 4096 from version 3 on, and the MD5 in the footer covers
//! every byte before it (`TFChunk.cs` `WriteFooter`, `VerifyFileHash`;
//! `Transforms/Identity/IdentityChunkWriteTransform.cs` `CompleteData`). An open chunk is
//! preallocated to `Aligned(128 + ChunkSize + 128)` with an all-zero footer; how much of its data
//! is valid only `writer.chk` says.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::hash::{md5_range, IO_BUFFER};
use crate::record::{RecordHeader, FRAME_OVERHEAD, MAX_RECORD_SIZE, RECORD_BASE_SIZE};

use super::footer::{ChunkFooter, PosMapEntry, CHECKSUM_SIZE, FOOTER_SIZE};
use super::header::{ChunkHeader, HEADER_SIZE, VERSION_ALIGNED};
use super::ALIGNMENT;

/// An opened chunk file with its header and footer decoded.
#[derive(Debug)]
pub struct ChunkFile {
    path: PathBuf,
    file: File,
    len: u64,
    pub header: ChunkHeader,
    /// Decoded from the last 128 bytes; for an open chunk these are zero (`is_completed` false).
    pub footer: ChunkFooter,
    /// Whether the last 128 bytes are all zero, as in an open chunk.
    pub footer_blank: bool,
}

impl ChunkFile {
    /// Opens a chunk and decodes its header and footer.
    ///
    /// # Errors
    /// I/O failures, a file shorter than header plus footer, or a header that is not a chunk's.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < (HEADER_SIZE + FOOTER_SIZE) as u64 {
            return Err(Error::format(
                path,
                format!(
                    "{len} bytes is shorter than a chunk header and footer ({} bytes)",
                    HEADER_SIZE + FOOTER_SIZE
                ),
            ));
        }
        let mut h = [0u8; HEADER_SIZE];
        file.read_exact(&mut h).map_err(|e| Error::io(path, e))?;
        let header = ChunkHeader::decode(&h).map_err(|e| e.at(path))?;
        let mut f = [0u8; FOOTER_SIZE];
        file.seek(SeekFrom::Start(len - FOOTER_SIZE as u64))
            .map_err(|e| Error::io(path, e))?;
        file.read_exact(&mut f).map_err(|e| Error::io(path, e))?;
        let footer = ChunkFooter::decode(&f).map_err(|e| e.at(path))?;
        Ok(ChunkFile {
            path: path.to_path_buf(),
            file,
            len,
            header,
            footer,
            footer_blank: ChunkFooter::is_blank(&f),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_len(&self) -> u64 {
        self.len
    }

    pub fn is_completed(&self) -> bool {
        self.footer.is_completed
    }

    /// What is wrong with the sizes of a completed chunk (empty when sound). The rules of
    /// `backup-and-on-disk-layout.md` §4.3, from `ChunkFooter`'s constructor and `TFChunk`'s writer.
    pub fn completed_size_problems(&self) -> Vec<String> {
        let h = &self.header;
        let f = &self.footer;
        let mut p = Vec::new();
        let entry = f.pos_map_entry_size() as i64;
        if f.physical_data_size < 0 || f.logical_data_size < 0 || f.map_size < 0 {
            p.push(format!(
                "footer sizes are negative (physical {}, logical {}, map {})",
                f.physical_data_size, f.logical_data_size, f.map_size
            ));
            return p;
        }
        if f.map_size as i64 % entry != 0 {
            p.push(format!(
                "position map of {} bytes is not a whole number of {entry}-byte entries",
                f.map_size
            ));
        }
        if (f.physical_data_size as i64) > f.logical_data_size {
            p.push(format!(
                "physical data size {} exceeds logical data size {}",
                f.physical_data_size, f.logical_data_size
            ));
        }
        let covered = h.end_position() - h.start_position();
        if f.logical_data_size > covered {
            p.push(format!(
                "logical data size {} exceeds the {covered} bytes the header's range covers",
                f.logical_data_size
            ));
        }
        if f.physical_data_size as i64 > h.chunk_size as i64 {
            p.push(format!(
                "physical data size {} exceeds the chunk size {}",
                f.physical_data_size, h.chunk_size
            ));
        }
        let needed =
            (HEADER_SIZE + FOOTER_SIZE) as u64 + f.physical_data_size as u64 + f.map_size as u64;
        if needed > self.len {
            p.push(format!(
                "header, {} data bytes, {} map bytes and footer need {needed} bytes; the file has {}",
                f.physical_data_size, f.map_size, self.len
            ));
        } else if h.version >= VERSION_ALIGNED
            && self.len != super::header::align_up(needed, ALIGNMENT)
        {
            p.push(format!(
                "file is {} bytes; a completed version-{} chunk with these sizes is {} (padded to {ALIGNMENT})",
                self.len,
                h.version,
                super::header::align_up(needed, ALIGNMENT)
            ));
        }
        if !h.is_scavenged
            && (f.map_size != 0 || f.logical_data_size != f.physical_data_size as i64)
        {
            p.push(format!(
                "unscavenged chunk with a position map of {} bytes or logical size {} ≠ physical size {}",
                f.map_size, f.logical_data_size, f.physical_data_size
            ));
        }
        p
    }

    /// Recomputes the MD5 of every byte before the stored hash and compares it.
    ///
    /// Only meaningful for completed chunks; an open chunk carries no hash.
    pub fn md5_matches(&mut self) -> Result<bool> {
        let actual = md5_range(
            &mut self.file,
            &self.path,
            0,
            self.len - CHECKSUM_SIZE as u64,
        )?;
        Ok(actual == self.footer.md5)
    }

    /// Streams the position map of a completed scavenged chunk.
    pub fn pos_map(&mut self) -> Result<PosMapIter<'_>> {
        let start = HEADER_SIZE as u64 + self.footer.physical_data_size.max(0) as u64;
        self.file
            .seek(SeekFrom::Start(start))
            .map_err(|e| Error::io(&self.path, e))?;
        let entry = self.footer.pos_map_entry_size();
        Ok(PosMapIter {
            path: &self.path,
            reader: BufReader::with_capacity(IO_BUFFER.min(1 << 16), &self.file),
            left: self.footer.map_size.max(0) as usize / entry,
            entry,
        })
    }

    /// Walks the framed records of the data area from physical offset 0 to `physical_end`
    /// (`PhysicalDataSize` for a completed chunk, `writer − start` for the open one).
    pub fn records(&mut self, physical_end: u64) -> Result<RecordIter<'_>> {
        self.file
            .seek(SeekFrom::Start(HEADER_SIZE as u64))
            .map_err(|e| Error::io(&self.path, e))?;
        let limit = physical_end.min(self.len.saturating_sub(HEADER_SIZE as u64));
        Ok(RecordIter {
            path: &self.path,
            reader: BufReader::with_capacity(IO_BUFFER, &self.file),
            at: 0,
            end: physical_end,
            limit,
            failed: false,
        })
    }
}

/// Position map entries in file order.
pub struct PosMapIter<'a> {
    path: &'a Path,
    reader: BufReader<&'a File>,
    left: usize,
    entry: usize,
}

impl Iterator for PosMapIter<'_> {
    type Item = Result<PosMapEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut b = [0u8; 12];
        if let Err(e) = self.reader.read_exact(&mut b[..self.entry]) {
            self.left = 0;
            return Some(Err(Error::io(self.path, e)));
        }
        Some(Ok(if self.entry == 12 {
            PosMapEntry::decode(&b)
        } else {
            PosMapEntry::decode_deprecated(&b)
        }))
    }
}

/// One record as found in a chunk.
#[derive(Debug, Clone)]
pub struct FramedRecord {
    /// Offset of the length prefix in the data area (after the 128-byte header).
    pub physical_offset: u64,
    pub header: RecordHeader,
    /// The record without its frame; decode with [`crate::record::LogRecord::decode`].
    pub body: Vec<u8>,
}

impl FramedRecord {
    /// Bytes the record takes in the chunk, frame included.
    pub fn framed_len(&self) -> u64 {
        (self.body.len() + FRAME_OVERHEAD) as u64
    }
}

/// Why the record walk stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at data offset {offset}: {what}")]
pub struct FramingError {
    pub offset: u64,
    pub what: String,
}

/// Records of a data area in order; yields a [`FramingError`] once and then stops.
pub struct RecordIter<'a> {
    path: &'a Path,
    reader: BufReader<&'a File>,
    at: u64,
    end: u64,
    limit: u64,
    failed: bool,
}

impl RecordIter<'_> {
    /// Offset just past the last record returned: where the walk stands.
    pub fn offset(&self) -> u64 {
        self.at
    }

    fn fail(&mut self, what: String) -> Option<Result<FramedRecord, FramingError>> {
        self.failed = true;
        Some(Err(FramingError {
            offset: self.at,
            what,
        }))
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<FramedRecord, FramingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.end {
            return None;
        }
        if self.at + 4 > self.limit {
            return self.fail(format!(
                "the data area ends at {} but records should continue to {}",
                self.limit, self.end
            ));
        }
        let mut len = [0u8; 4];
        if let Err(e) = self.reader.read_exact(&mut len) {
            return self.fail(format!("{}: {e}", self.path.display()));
        }
        let len = i32::from_le_bytes(len);
        if len < RECORD_BASE_SIZE as i32 || len as usize > MAX_RECORD_SIZE {
            return self.fail(format!(
                "length prefix {len} is not a record length (zeros mean the data stops before {})",
                self.end
            ));
        }
        let framed = len as u64 + FRAME_OVERHEAD as u64;
        if self.at + framed > self.end {
            return self.fail(format!(
                "a record of {framed} bytes runs past the end of the data at {}",
                self.end
            ));
        }
        let mut body = vec![0u8; len as usize];
        let mut suffix = [0u8; 4];
        if let Err(e) = self
            .reader
            .read_exact(&mut body)
            .and_then(|_| self.reader.read_exact(&mut suffix))
        {
            return self.fail(format!("{}: {e}", self.path.display()));
        }
        let suffix = i32::from_le_bytes(suffix);
        if suffix != len {
            return self.fail(format!(
                "prefix/suffix length inconsistency: prefix {len}, suffix {suffix}"
            ));
        }
        let header = RecordHeader::decode(&body).expect("length checked above");
        let rec = FramedRecord {
            physical_offset: self.at,
            header,
            body,
        };
        self.at += framed;
        Some(Ok(rec))
    }
}
