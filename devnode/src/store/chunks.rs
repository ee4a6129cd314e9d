//! The log in the server's on-disk layout (`--layout chunks`): chunk files, checkpoint files and
//! an index directory, written through the `layout` crate (docs/on-disk-layout.md), so that
//! backup, restore and `verify-backup` can be tested against a node that writes what a real one
//! writes.
//!
//! Write order, as the server's (`TFChunkWriter.Write` / `StorageWriterService`): every record of
//! a batch is appended to the open chunk; a record that does not fit completes the chunk, creates
//! the next one and moves `writer.chk` to its start; then the data is flushed and `writer.chk`
//! written. The chaser lags one batch behind the writer (`StorageChaser`: it indexes what the
//! writer made durable before): each commit moves `chaser.chk` to where the writer stood after the
//! previous commit, and the records it passes go to a memtable. A full memtable becomes a level-0
//! PTable and a new `indexmap`; four tables of a level are merged into one of the next
//! (`IndexMap.AddAndMergePTable`, default `MaxTablesPerLevel` 4).
//!
//! Opening follows the server's start: truncation from `truncate.chk`
//! (`TFChunkDbTruncator.TruncateDb`), the `TFChunkDb.Open` checks (checkpoint order, every chunk
//! before the writer's completed, one excessive chunk deleted, old versions and temporary files
//! deleted), then the index decision of `TableIndex.Initialize` (reuse the index and re-index
//! from its commit checkpoint to the chaser, or delete it and index the log again).
//!
//! Not implemented: scavenges (refused), the background MD5 check of completed chunks, epoch
//! records (`epoch.chk` stays -1), the stream-existence filter, and the v25 profile's exit after a
//! truncation (the node goes on opening the database, as before 24.6).

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use layout::checkpoint::{self, CheckpointKind};
use layout::chunk::{Appended, ChunkFile, ChunkName, ChunkWriter, HEADER_SIZE};
use layout::index::bloom::xxhash;
use layout::index::{write_ptable, IndexEntry, IndexMap, IndexMapEntry, PTableFile};
use layout::record::{LogRecord, PrepareFlags, PrepareRecord, TICKS_AT_UNIX_EPOCH};
use uuid::Uuid;

use super::log::{Decoded, NewRecord, FLAG_JSON, FLAG_TOMBSTONE};
use super::DELETED_STREAM;

/// `ClusterVNodeOptions.MaxTruncation` default: a larger truncation is refused.
pub const MAX_TRUNCATION: i64 = 256 * 1024 * 1024;
/// Entries per memtable before it is written as a PTable. The server's default is 1,000,000; a
/// small one makes a dev node write and merge PTables within a test.
const MEMTABLE_ENTRIES: usize = 1_000;
/// `IndexMap` `MaxTablesPerLevel` default.
const MAX_TABLES_PER_LEVEL: usize = 4;
/// `PTable` midpoint cache depth default.
const CACHE_DEPTH: u32 = 16;

/// The open log: the chunk being written, the checkpoints, the chaser and the index behind it.
pub struct ChunkLog {
    dir: PathBuf,
    index_dir: PathBuf,
    chunk_size: u32,
    open: ChunkWriter,
    fsync: bool,
    writer: i64,
    /// Where the writer stood after the previous commit: the chaser's next stop.
    lagging: i64,
    /// Records the writer has written and the chaser not yet passed: (post-position, entry).
    unindexed: VecDeque<(i64, IndexEntry, i64)>,
    map: IndexMap,
    memtable: Vec<IndexEntry>,
    /// Pre-position of the last record in the memtable.
    memtable_last: i64,
}

/// What the index decision at open was (`TableIndex.Initialize`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexDecision {
    /// No `indexmap`: the log is indexed from its start.
    Built,
    /// The index is kept; the log after its commit checkpoint is indexed again.
    Reused { commit_checkpoint: i64 },
    /// The index was unusable and is deleted; the log is indexed from its start.
    Rebuilt { reason: String },
}

/// The result of [`ChunkLog::open`].
pub struct Opened {
    pub log: ChunkLog,
    /// The events of the log in order, with their logical positions.
    pub records: Vec<(u64, Decoded)>,
    pub writer: u64,
    /// The truncation done from `truncate.chk`: (writer before, writer after).
    pub truncated: Option<(i64, i64)>,
    pub index: IndexDecision,
}

fn err(what: impl Into<String>) -> io::Error {
    io::Error::other(what.into())
}

fn lerr(e: layout::Error) -> io::Error {
    match e {
        layout::Error::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

fn chk_path(dir: &Path, kind: CheckpointKind) -> PathBuf {
    dir.join(kind.file_name())
}

fn read_chk(dir: &Path, kind: CheckpointKind) -> io::Result<Option<i64>> {
    Ok(checkpoint::read(&chk_path(dir, kind))
        .map_err(lerr)?
        .map(|r| r.value))
}

/// Writes a checkpoint in place; synced only when the node syncs (`--fsync`).
fn write_chk(dir: &Path, kind: CheckpointKind, value: i64, sync: bool) -> io::Result<()> {
    let path = chk_path(dir, kind);
    if sync {
        return checkpoint::write(&path, value).map_err(lerr);
    }
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    f.write_all_at(&checkpoint::encode(value), 0)?;
    f.set_len(8)
}

/// The chunk files of `dir`: (name, path), sorted by number then version.
fn list_chunks(dir: &Path) -> io::Result<Vec<(ChunkName, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(c) = ChunkName::parse(name) {
            out.push((c, e.path()));
        } else if name.ends_with(".tmp") {
            // `TFChunkDb.Open`: scavenge output never renamed into place.
            fs::remove_file(e.path())?;
        }
    }
    out.sort_by_key(|(c, _)| (c.number, c.version));
    Ok(out)
}

/// The latest version of each chunk with the range it covers: (start, end, scavenged, path).
/// Older versions are deleted, as `TFChunkDb.Open` does.
fn latest_chunks(dir: &Path, delete_old: bool) -> io::Result<Vec<(u32, u32, bool, PathBuf)>> {
    let all = list_chunks(dir)?;
    let mut latest: Vec<(u32, u32, bool, PathBuf)> = Vec::new();
    for (i, (name, path)) in all.iter().enumerate() {
        let newer = all.get(i + 1).is_some_and(|(n, _)| n.number == name.number);
        let covered = latest.last().is_some_and(|l| name.number <= l.1);
        if newer || covered {
            if delete_old {
                make_writable(path)?;
                fs::remove_file(path)?;
            }
            continue;
        }
        let header = ChunkFile::open(path).map_err(lerr)?.header;
        latest.push((
            name.number,
            header.chunk_end_number as u32,
            header.is_scavenged,
            path.clone(),
        ));
    }
    Ok(latest)
}

fn make_writable(path: &Path) -> io::Result<()> {
    let mut perms = fs::metadata(path)?.permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(path, perms)
}

/// The 64-bit stream hash of a V4 index entry. The server combines XXHash (high half) and
/// Murmur3 (low half) (`TableIndex.GetHash`); the low half here is XXHash with another seed, so
/// a real server reading this index finds its entries under other hashes.
fn stream_hash(stream: &str) -> u64 {
    let b = stream.as_bytes();
    ((xxhash(b, 0xc58f_1a7b) as u64) << 32) | xxhash(b, 0x1234_5678) as u64
}

/// Logical positions of `truncate` done as `TFChunkDbTruncator.TruncateDb` does: returns the new
/// writer. Refuses more than [`MAX_TRUNCATION`] bytes and a chunk past the writer's.
fn truncate_db(dir: &Path, cs: u32, writer: i64, mut truncate: i64) -> io::Result<i64> {
    let cs64 = cs as i64;
    if writer - truncate > MAX_TRUNCATION {
        return Err(err(format!(
            "refusing to truncate {} bytes from {writer} to {truncate}: more than MaxTruncation \
             ({MAX_TRUNCATION}); set truncate.chk nearer to writer.chk or truncate by hand",
            writer - truncate
        )));
    }
    let old_last = (writer / cs64) as u32;
    let new_last = (truncate / cs64) as u32;
    let all = list_chunks(dir)?;
    if all.iter().any(|(n, _)| n.number == old_last + 1) {
        return Err(err(format!(
            "during truncation of the database excessive chunks were found: chunk {} exists \
             past writer.chk {writer}",
            old_last + 1
        )));
    }
    let latest = latest_chunks(dir, false)?;
    let target = latest
        .iter()
        .find(|l| l.0 <= new_last && new_last <= l.1)
        .cloned();
    let mut delete_from = new_last + 1;
    let mut zero_fill = None;
    match target {
        Some((start, _, true, _)) => {
            // A scavenged chunk cannot be cut inside: it goes, and so does what follows it.
            truncate = start as i64 * cs64;
            delete_from = start;
        }
        Some(_) if truncate % cs64 == 0 => delete_from = new_last,
        Some((_, _, false, path)) => zero_fill = Some(path),
        None => {
            return Err(err(format!(
                "cannot truncate to {truncate}: chunk {new_last} is missing"
            )))
        }
    }
    for (name, path) in all.iter().rev() {
        if name.number >= delete_from {
            make_writable(path)?;
            fs::remove_file(path)?;
        }
    }
    if let Some(path) = zero_fill {
        // `TruncateChunkAndFillWithZeros`: back to the full preallocated size, zero from the
        // point on (which also clears the footer): an open chunk again.
        make_writable(&path)?;
        let header = ChunkFile::open(&path).map_err(lerr)?.header;
        let f = OpenOptions::new().write(true).open(&path)?;
        f.set_len(HEADER_SIZE as u64 + (truncate - header.start_position()) as u64)?;
        f.set_len(header.preallocated_file_size())?;
        f.sync_all()?;
    }
    Ok(truncate)
}

impl ChunkLog {
    /// Opens (or creates) the database in `dir` with chunks of `chunk_size` bytes, following the
    /// server's start sequence.
    ///
    /// # Errors
    /// I/O failures, and every condition under which the server refuses to start: checkpoints out
    /// of order, a missing or uncompleted chunk before the writer's, files past the writer, a
    /// refused truncation, a chunk size different from the existing chunks'.
    pub fn open(dir: &Path, chunk_size: u32, fsync: bool) -> io::Result<Opened> {
        let index_dir = dir.join("index");
        fs::create_dir_all(&index_dir)?;
        let mut writer = read_chk(dir, CheckpointKind::Writer)?.unwrap_or(0);
        let mut chaser = read_chk(dir, CheckpointKind::Chaser)?.unwrap_or(0);
        let mut epoch = read_chk(dir, CheckpointKind::Epoch)?.unwrap_or(-1);
        let truncate = read_chk(dir, CheckpointKind::Truncate)?.unwrap_or(-1);
        // An existing database keeps its chunk size, as the server reads it from the headers.
        let cs = match list_chunks(dir)?.first() {
            Some((_, p)) => ChunkFile::open(p).map_err(lerr)?.header.chunk_size as u32,
            None => chunk_size,
        };
        if cs != chunk_size {
            tracing::warn!(
                existing = cs,
                asked = chunk_size,
                "the database has another chunk size; using it"
            );
        }
        let cs64 = cs as i64;

        let mut truncated = None;
        if truncate != -1 && truncate < writer {
            let new_writer = truncate_db(dir, cs, writer, truncate)?;
            if epoch >= new_writer {
                epoch = -1;
                write_chk(dir, CheckpointKind::Epoch, -1, true)?;
            }
            chaser = chaser.min(new_writer);
            write_chk(dir, CheckpointKind::Chaser, chaser, true)?;
            truncated = Some((writer, new_writer));
            writer = new_writer;
            write_chk(dir, CheckpointKind::Writer, writer, true)?;
            tracing::warn!(
                from = truncated.unwrap().0,
                to = writer,
                "truncated the log from truncate.chk"
            );
        }
        write_chk(dir, CheckpointKind::Truncate, -1, true)?;
        for (kind, value) in [
            (CheckpointKind::Writer, writer),
            (CheckpointKind::Chaser, chaser),
            (CheckpointKind::Epoch, epoch),
        ] {
            write_chk(dir, kind, value, true)?;
        }
        if read_chk(dir, CheckpointKind::Proposal)?.is_none() {
            write_chk(dir, CheckpointKind::Proposal, -1, true)?;
        }

        // `TFChunkDb.Open`.
        if chaser > writer || epoch > writer {
            return Err(err(format!(
                "{}: chaser.chk {chaser} or epoch.chk {epoch} is past writer.chk {writer}; the \
                 checkpoints are corrupt",
                dir.display()
            )));
        }
        let last = (writer / cs64) as u32;
        let mut latest = latest_chunks(dir, true)?;
        if let Some(pos) = latest.iter().position(|l| l.0 > last) {
            for (i, l) in latest.iter().enumerate().skip(pos) {
                if i == pos && l.0 == last + 1 && !l.2 && l.1 == l.0 {
                    // A chunk created before writer.chk moved into it.
                    make_writable(&l.3)?;
                    fs::remove_file(&l.3)?;
                } else {
                    return Err(err(format!(
                        "{}: a chunk file past writer.chk {writer}; remove it or restore the \
                         checkpoints that go with it",
                        l.3.display()
                    )));
                }
            }
            latest.truncate(pos);
        }
        let mut expected = 0u32;
        let mut records = Vec::new();
        let mut open_path = None;
        for (start, end, _, path) in &latest {
            if *start != expected {
                return Err(err(format!(
                    "chunk {expected} is missing from {} (writer.chk {writer})",
                    dir.display()
                )));
            }
            let mut file = ChunkFile::open(path).map_err(lerr)?;
            let physical_end = if file.is_completed() {
                file.footer.physical_data_size as u64
            } else if *start == last {
                open_path = Some(path.clone());
                (writer - file.header.start_position()) as u64
            } else {
                return Err(err(format!(
                    "{}: a chunk before the writer's is not completed",
                    path.display()
                )));
            };
            for framed in file.records(physical_end).map_err(lerr)? {
                let framed = framed.map_err(|e| err(format!("{}: {e}", path.display())))?;
                let len = framed.framed_len() as u32;
                let rec = LogRecord::decode(&framed.body)
                    .map_err(|e| err(format!("{}: {e}", path.display())))?;
                if let LogRecord::Prepare(p) = rec {
                    let pos = p.log_position as u64;
                    records.push((pos, decoded(p, len)));
                }
            }
            expected = end + 1;
        }
        let open = match open_path {
            Some(p) => {
                let local = (writer - last as i64 * cs64) as u64;
                ChunkWriter::reopen(&p, local).map_err(lerr)?
            }
            None if expected == last && writer == last as i64 * cs64 => {
                ChunkWriter::create_new(dir, last, cs).map_err(lerr)?
            }
            None => {
                return Err(err(format!(
                    "chunk {last}, which holds writer.chk {writer}, is missing or completed in {}",
                    dir.display()
                )))
            }
        };

        let (map, index) = index_decision(&index_dir, chaser)?;
        let mut log = ChunkLog {
            dir: dir.to_path_buf(),
            index_dir,
            chunk_size: cs,
            open,
            fsync,
            writer,
            lagging: writer,
            unindexed: VecDeque::new(),
            memtable_last: map.commit_checkpoint,
            map,
            memtable: Vec::new(),
        };
        for (pos, d) in &records {
            let pos = *pos as i64;
            if pos > log.map.commit_checkpoint {
                log.unindexed
                    .push_back((pos + d.len as i64, entry(&d.stream, d.number, pos), pos));
            }
        }
        log.chase(chaser)?;
        Ok(Opened {
            log,
            records,
            writer: writer as u64,
            truncated,
            index,
        })
    }

    /// Appends a batch and returns each record's (position, length). Records that do not fit the
    /// open chunk go to the next one, after completing it.
    ///
    /// # Errors
    /// I/O failures, or a record larger than a chunk.
    pub fn append(&mut self, batch: &[NewRecord]) -> io::Result<Vec<(u64, u32)>> {
        let mut placed = Vec::with_capacity(batch.len());
        for r in batch {
            loop {
                let pos = self.open.next_position();
                let rec = to_layout(r, pos);
                match self.open.append(&rec).map_err(lerr)? {
                    Appended::Written { next_position, .. } => {
                        placed.push((pos as u64, (next_position - pos) as u32));
                        self.unindexed.push_back((
                            next_position,
                            entry(&r.stream, r.number, pos),
                            pos,
                        ));
                        break;
                    }
                    Appended::ChunkFull if self.open.physical_size() == 0 => {
                        return Err(err(format!(
                            "a record of {} bytes does not fit a chunk of {} bytes",
                            r.data.len() + r.metadata.len(),
                            self.chunk_size
                        )));
                    }
                    Appended::ChunkFull => self.next_chunk()?,
                }
            }
        }
        self.flush_data()?;
        self.writer = self.open.next_position();
        write_chk(&self.dir, CheckpointKind::Writer, self.writer, self.fsync)?;
        let stop = std::mem::replace(&mut self.lagging, self.writer);
        self.chase(stop)?;
        Ok(placed)
    }

    fn flush_data(&mut self) -> io::Result<()> {
        if self.fsync {
            self.open.flush().map_err(lerr)
        } else {
            self.open.flush_unsynced().map_err(lerr)
        }
    }

    /// Completes the open chunk, creates the next and moves `writer.chk` to its start.
    fn next_chunk(&mut self) -> io::Result<()> {
        let n = self.open.header().chunk_start_number as u32 + 1;
        let next = ChunkWriter::create_new(&self.dir, n, self.chunk_size).map_err(lerr)?;
        // Complete first: the new file exists before writer.chk moves into it, as on the server.
        std::mem::replace(&mut self.open, next)
            .complete()
            .map_err(lerr)?;
        self.writer = self.open.next_position();
        write_chk(&self.dir, CheckpointKind::Writer, self.writer, self.fsync)
    }

    /// Moves the chaser to `to`: indexes the records that end there or before, writes
    /// `chaser.chk`, and turns a full memtable into a PTable.
    fn chase(&mut self, to: i64) -> io::Result<()> {
        while let Some((post, _, _)) = self.unindexed.front() {
            if *post > to {
                break;
            }
            let (_, e, pre) = self.unindexed.pop_front().expect("front exists");
            self.memtable.push(e);
            self.memtable_last = pre;
        }
        write_chk(&self.dir, CheckpointKind::Chaser, to, self.fsync)?;
        if self.memtable.len() >= MEMTABLE_ENTRIES {
            self.write_memtable()?;
        }
        Ok(())
    }

    /// Writes the memtable as a level-0 PTable, merges full levels, then writes `indexmap`; the
    /// replaced tables are deleted after the new map is in place (`IndexMap.AddAndMergePTable`,
    /// `TableIndex.ReadOffQueue`).
    fn write_memtable(&mut self) -> io::Result<()> {
        let entries = std::mem::take(&mut self.memtable);
        let name = self.new_table(entries)?;
        let mut map = self.map.clone();
        let level0 = map.tables.iter().filter(|t| t.level == 0).count() as u32;
        map.tables.push(IndexMapEntry {
            level: 0,
            position: level0,
            file_name: name,
        });
        let mut replaced = Vec::new();
        let mut level = 0;
        loop {
            let tables: Vec<IndexMapEntry> = map
                .tables
                .iter()
                .filter(|t| t.level == level)
                .cloned()
                .collect();
            if tables.len() < MAX_TABLES_PER_LEVEL {
                break;
            }
            let mut merged = Vec::new();
            for t in &tables {
                let mut file = PTableFile::open(self.index_dir.join(&t.file_name)).map_err(lerr)?;
                for e in file.entries().map_err(lerr)? {
                    merged.push(e.map_err(lerr)?);
                }
                replaced.push(t.file_name.clone());
            }
            let name = self.new_table(merged)?;
            map.tables.retain(|t| t.level != level);
            let position = map.tables.iter().filter(|t| t.level == level + 1).count() as u32;
            map.tables.push(IndexMapEntry {
                level: level + 1,
                position,
                file_name: name,
            });
            level += 1;
        }
        map.tables.sort_by_key(|t| (t.level, t.position));
        map.prepare_checkpoint = self.memtable_last;
        map.commit_checkpoint = self.memtable_last;
        map.write(&self.index_dir).map_err(lerr)?;
        for name in replaced {
            fs::remove_file(self.index_dir.join(name))?;
        }
        self.map = map;
        Ok(())
    }

    fn new_table(&self, entries: Vec<IndexEntry>) -> io::Result<String> {
        let name = Uuid::new_v4().to_string();
        write_ptable(&self.index_dir.join(&name), entries, CACHE_DEPTH).map_err(lerr)?;
        Ok(name)
    }

    /// Makes everything durable and lets the chaser catch up with the writer, as a clean
    /// shutdown does.
    pub fn sync(&mut self) -> io::Result<()> {
        self.open.flush().map_err(lerr)?;
        checkpoint::write(&chk_path(&self.dir, CheckpointKind::Writer), self.writer)
            .map_err(lerr)?;
        self.lagging = self.writer;
        self.chase(self.writer)?;
        checkpoint::write(&chk_path(&self.dir, CheckpointKind::Chaser), self.writer).map_err(lerr)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// `TableIndex.Initialize`: reuse the index when its map is intact, every table opens and its
/// commit checkpoint is below the chaser; otherwise delete it and index from the start. Files
/// the map does not list are deleted either way.
fn index_decision(index_dir: &Path, chaser: i64) -> io::Result<(IndexMap, IndexDecision)> {
    let map_path = index_dir.join(layout::index::INDEXMAP_FILE_NAME);
    let (map, decision) = if !map_path.exists() {
        (IndexMap::empty(), IndexDecision::Built)
    } else {
        let verdict = match IndexMap::read(&map_path) {
            Err(e) => Err(format!("indexmap unreadable: {e}")),
            Ok(p) if !p.hash_matches() => Err("indexmap hash mismatch".to_owned()),
            Ok(p) if !p.map.structure_problems().is_empty() => {
                Err(p.map.structure_problems().join("; "))
            }
            Ok(p) if p.map.commit_checkpoint >= chaser && !p.map.tables.is_empty() => Err(format!(
                "index commit checkpoint {} is not below chaser.chk {chaser}",
                p.map.commit_checkpoint
            )),
            Ok(p) => match p
                .map
                .tables
                .iter()
                .find_map(|t| PTableFile::open(index_dir.join(&t.file_name)).err())
            {
                Some(e) => Err(format!("PTable unusable: {e}")),
                None => Ok(p.map),
            },
        };
        match verdict {
            Ok(map) => {
                let commit_checkpoint = map.commit_checkpoint;
                (map, IndexDecision::Reused { commit_checkpoint })
            }
            Err(reason) => {
                tracing::warn!(%reason, "the index is unusable; rebuilding it from the log");
                (IndexMap::empty(), IndexDecision::Rebuilt { reason })
            }
        }
    };
    let keep: Vec<&str> = map.tables.iter().map(|t| t.file_name.as_str()).collect();
    for e in fs::read_dir(index_dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if e.file_type()?.is_file()
            && name != layout::index::INDEXMAP_FILE_NAME
            && !keep.contains(&name.as_ref())
        {
            fs::remove_file(e.path())?;
        }
    }
    if !matches!(decision, IndexDecision::Reused { .. }) {
        map.write(index_dir).map_err(lerr)?;
    }
    Ok((map, decision))
}

fn entry(stream: &str, number: i64, pos: i64) -> IndexEntry {
    IndexEntry {
        stream: stream_hash(stream),
        version: number,
        position: pos,
    }
}

/// A dev-node record as the server writes an append: one self-committed prepare.
fn to_layout(r: &NewRecord, pos: i64) -> LogRecord {
    let mut flags = PrepareFlags::SINGLE_WRITE | PrepareFlags::IS_COMMITTED;
    if r.flags & FLAG_JSON != 0 {
        flags = flags | PrepareFlags::IS_JSON;
    }
    if r.flags & FLAG_TOMBSTONE != 0 {
        flags = flags | PrepareFlags::STREAM_DELETE;
    }
    LogRecord::Prepare(PrepareRecord {
        version: 1,
        log_position: pos,
        flags,
        transaction_position: pos,
        transaction_offset: 0,
        expected_version: r.number - 1,
        stream: r.stream.to_string(),
        event_id: r.event_id,
        correlation_id: r.event_id,
        timestamp_ticks: r.timestamp + TICKS_AT_UNIX_EPOCH,
        event_type: r.event_type.to_string(),
        data: r.data.to_vec(),
        metadata: r.metadata.to_vec(),
    })
}

fn decoded(p: PrepareRecord, len: u32) -> Decoded {
    let mut flags = 0;
    if p.flags.contains(PrepareFlags::IS_JSON) {
        flags |= FLAG_JSON;
    }
    let number = if p.flags.contains(PrepareFlags::STREAM_DELETE) {
        flags |= FLAG_TOMBSTONE;
        DELETED_STREAM
    } else {
        p.expected_version + 1
    };
    Decoded {
        len,
        stream: p.stream,
        number,
        event_id: p.event_id,
        event_type: p.event_type,
        flags,
        timestamp: p.timestamp_ticks - TICKS_AT_UNIX_EPOCH,
        data: Bytes::from(p.data),
        metadata: Bytes::from(p.metadata),
    }
}
