//! Writing chunk files the way the server does, one record at a time, so the dev node can drive
//! it: create (header, preallocate), append framed records, flush, complete (position map for
//! scavenged chunks, zero padding to 4096, footer with the running MD5, resize, read-only).
//! Follows `TFChunk/TFChunk.cs` (`CreateNew`, `TryAppend`, `WriteFooter`, `CompleteScavenge`) and
//! `TFChunkScavenger.cs` (`WriteRecord`: the position map entry of each kept record).
//!
//! Scavenged versions are built in `<guid>.tmp` and renamed to `chunk-X.Y` on completion, as
//! `TFChunkManager.SwitchChunk` does; deleting the old versions is left to the caller.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::hash::feed_range;
use crate::record::{LogRecord, FRAME_OVERHEAD};

use super::file::ChunkFile;
use super::footer::{ChunkFooter, PosMapEntry, CHECKSUM_SIZE, FOOTER_SIZE};
use super::header::{align_up, ChunkHeader, HEADER_SIZE, VERSION_ALIGNED};
use super::{ChunkName, ALIGNMENT};

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written at `position`; the next record of this chunk goes to `next_position`.
    Written { position: i64, next_position: i64 },
    /// Does not fit in what is left of the chunk: complete it and continue in the next one, at
    /// its start position (the tail of this chunk stays unused).
    ChunkFull,
}

/// A completed chunk file.
#[derive(Debug, Clone)]
pub struct Completed {
    pub path: PathBuf,
    pub header: ChunkHeader,
    pub footer: ChunkFooter,
    pub file_size: u64,
}

/// Writes one chunk file. Plain chunks take records at consecutive positions; scavenged ones take
/// any increasing positions inside their range and record where each landed.
pub struct ChunkWriter {
    path: PathBuf,
    out: BufWriter<File>,
    header: ChunkHeader,
    md5: Md5,
    physical: u64,
    logical: u64,
    pos_map: Option<Vec<PosMapEntry>>,
}

impl ChunkWriter {
    /// Creates `chunk-<number>.000000` in `dir` for a new chunk of the log, preallocated to its
    /// full size with a zero footer (an open chunk).
    ///
    /// # Errors
    /// I/O failures, or a file of that name already existing.
    pub fn create_new(dir: &Path, number: u32, chunk_size: u32) -> Result<Self> {
        Self::create_new_with_id(dir, number, chunk_size, Uuid::new_v4())
    }

    /// [`ChunkWriter::create_new`] with a given `ChunkId`, for reproducible files.
    pub fn create_new_with_id(dir: &Path, number: u32, chunk_size: u32, id: Uuid) -> Result<Self> {
        let header = ChunkHeader::new_current(chunk_size, number, number, false, id);
        let path = dir.join(ChunkName::new(number, 0).to_string());
        let size = header.preallocated_file_size();
        Self::create(path, header, Some(size), None)
    }

    /// Starts a scavenged version covering chunks `start..=end` in a temporary `<guid>.tmp` file
    /// in `dir`; [`ChunkWriter::complete_scavenged`] renames it into place.
    pub fn create_scavenged(dir: &Path, start: u32, end: u32, chunk_size: u32) -> Result<Self> {
        if end < start {
            return Err(Error::Misuse(format!("scavenged range {start}..{end}")));
        }
        let header = ChunkHeader::new_current(chunk_size, start, end, true, Uuid::new_v4());
        let path = dir.join(format!("{}.tmp", Uuid::new_v4()));
        Self::create(path, header, None, Some(Vec::new()))
    }

    fn create(
        path: PathBuf,
        header: ChunkHeader,
        prealloc: Option<u64>,
        pos_map: Option<Vec<PosMapEntry>>,
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if let Some(size) = prealloc {
            file.set_len(size).map_err(|e| Error::io(&path, e))?;
        }
        let bytes = header.encode();
        let mut md5 = Md5::new();
        md5.update(bytes);
        let mut out = BufWriter::with_capacity(1 << 16, file);
        // The header goes to the file at once, so a new chunk is recognisable even before its
        // first record, as a server's is.
        out.write_all(&bytes)
            .and_then(|_| out.flush())
            .map_err(|e| Error::io(&path, e))?;
        Ok(ChunkWriter {
            path,
            out,
            header,
            md5,
            physical: 0,
            logical: 0,
            pos_map,
        })
    }

    /// Reopens the open chunk after a restart with `local_position` bytes of data valid
    /// (`writer.chk` minus the chunk's start). Bytes past it are left as they are and overwritten
    /// by the next appends, as the server does.
    ///
    /// # Errors
    /// I/O failures, a completed or scavenged chunk, or a position past the chunk's data area.
    pub fn reopen(path: &Path, local_position: u64) -> Result<Self> {
        let chunk = ChunkFile::open(path)?;
        if chunk.is_completed() || chunk.header.is_scavenged {
            return Err(Error::format(
                path,
                "only an open, unscavenged chunk can be reopened for writing",
            ));
        }
        if local_position > chunk.header.chunk_size as u64 {
            return Err(Error::format(
                path,
                format!(
                    "position {local_position} is past the chunk's {} data bytes",
                    chunk.header.chunk_size
                ),
            ));
        }
        let header = chunk.header.clone();
        drop(chunk);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut md5 = Md5::new();
        feed_range(
            &mut md5,
            &mut file,
            path,
            0,
            HEADER_SIZE as u64 + local_position,
        )?;
        file.seek(SeekFrom::Start(HEADER_SIZE as u64 + local_position))
            .map_err(|e| Error::io(path, e))?;
        Ok(ChunkWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 16, file),
            header,
            md5,
            physical: local_position,
            logical: local_position,
            pos_map: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &ChunkHeader {
        &self.header
    }

    /// The logical position the next record of a plain chunk must carry.
    pub fn next_position(&self) -> i64 {
        self.header.start_position() + self.logical as i64
    }

    /// Data bytes written so far.
    pub fn physical_size(&self) -> u64 {
        self.physical
    }

    /// Appends one record. In a plain chunk its `log_position` must be [`Self::next_position`];
    /// in a scavenged one it must lie in the chunk's range, after the previous record.
    ///
    /// # Errors
    /// I/O failures, or a record whose position breaks the rules above ([`Error::Misuse`]).
    pub fn append(&mut self, record: &LogRecord) -> Result<Appended> {
        let framed = record.encode_framed();
        let pos = record.log_position();
        let start = self.header.start_position();
        if self.pos_map.is_none() && pos != self.next_position() {
            return Err(Error::Misuse(format!(
                "record at {pos} appended to {} whose next position is {}",
                self.path.display(),
                self.next_position()
            )));
        }
        if self.pos_map.is_some()
            && (pos < start + self.logical as i64 || pos >= self.header.end_position())
        {
            return Err(Error::Misuse(format!(
                "scavenged record at {pos} outside {}..{} or before the previous one",
                start + self.logical as i64,
                self.header.end_position()
            )));
        }
        // The server's fit test: header + data so far + this record must stay within the chunk.
        if self.physical + framed.len() as u64 > self.header.chunk_size as u64 {
            return Ok(Appended::ChunkFull);
        }
        self.out
            .write_all(&framed)
            .map_err(|e| Error::io(&self.path, e))?;
        self.md5.update(&framed);
        let local = (pos - start) as u64;
        if let Some(map) = &mut self.pos_map {
            map.push(PosMapEntry {
                log_pos: local as i64,
                actual_pos: self.physical as i32,
            });
        }
        self.physical += framed.len() as u64;
        self.logical = local + framed.len() as u64;
        debug_assert!(framed.len() >= FRAME_OVERHEAD);
        Ok(Appended::Written {
            position: pos,
            next_position: start + self.logical as i64,
        })
    }

    /// Writes buffered records and syncs them to disk; call before moving `writer.chk` past them.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Hands buffered records to the operating system without syncing them: they survive the
    /// writing process being killed, not a power loss. For writers that sync only on request.
    pub fn flush_unsynced(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }

    /// Completes a plain chunk in place: footer, MD5, resize, read-only.
    pub fn complete(self) -> Result<Completed> {
        if self.pos_map.is_some() {
            return Err(Error::Misuse(
                "a scavenged chunk is completed with complete_scavenged".into(),
            ));
        }
        let path = self.path.clone();
        self.finish(&path)
    }

    /// Completes a scavenged chunk with its position map and renames it to
    /// `chunk-<start>.<version>`, replacing nothing: the caller removes the old versions.
    pub fn complete_scavenged(self, version: u32) -> Result<Completed> {
        if self.pos_map.is_none() {
            return Err(Error::Misuse(
                "a plain chunk is completed with complete".into(),
            ));
        }
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let name = ChunkName::new(self.header.chunk_start_number as u32, version);
        let target = dir.join(name.to_string());
        if target.exists() {
            return Err(Error::Misuse(format!(
                "{} already exists",
                target.display()
            )));
        }
        let tmp = self.path.clone();
        let mut done = self.finish(&tmp)?;
        fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))?;
        sync_dir(&dir)?;
        done.path = target;
        Ok(done)
    }

    fn finish(mut self, path: &Path) -> Result<Completed> {
        let mut map_size = 0u64;
        if let Some(map) = self.pos_map.take() {
            for e in &map {
                let b = e.encode();
                self.out.write_all(&b).map_err(|e| Error::io(path, e))?;
                self.md5.update(b);
            }
            map_size = (map.len() * super::POS_MAP_ENTRY_SIZE) as u64;
        }
        let body = HEADER_SIZE as u64 + self.physical + map_size;
        let alignment = if self.header.version >= VERSION_ALIGNED {
            ALIGNMENT
        } else {
            1
        };
        let file_size = align_up(body + FOOTER_SIZE as u64, alignment);
        let padding = vec![0u8; (file_size - body - FOOTER_SIZE as u64) as usize];
        self.out
            .write_all(&padding)
            .map_err(|e| Error::io(path, e))?;
        self.md5.update(&padding);
        let mut footer =
            ChunkFooter::completed(self.physical as u32, self.logical, map_size as u32);
        let unhashed = footer.encode();
        self.md5.update(&unhashed[..FOOTER_SIZE - CHECKSUM_SIZE]);
        footer.md5 = self.md5.finalize_reset().into();
        self.out
            .write_all(&footer.encode())
            .map_err(|e| Error::io(path, e))?;
        self.out.flush().map_err(|e| Error::io(path, e))?;
        let file = self.out.get_ref();
        file.set_len(file_size).map_err(|e| Error::io(path, e))?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        let mut perms = file
            .metadata()
            .map_err(|e| Error::io(path, e))?
            .permissions();
        perms.set_readonly(true);
        fs::set_permissions(path, perms).map_err(|e| Error::io(path, e))?;
        Ok(Completed {
            path: path.to_path_buf(),
            header: self.header,
            footer,
            file_size,
        })
    }
}

/// Makes a rename or a new file in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
