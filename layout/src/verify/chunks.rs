//! Chunk rules: names, headers, one chunk size, coverage of `0..=writer/ChunkSize` without gaps
//! or overlaps, nothing past the writer's chunk, completed historical chunks with consistent
//! sizes and MD5, and at the deep level the record framing. The labelling of files as latest or
//! old versions follows `TFChunk/ChunkLocalFileSystem.cs` (`TFChunkEnumerable`); what the server
//! requires of them follows `TFChunkDb.Open` and `TFChunkDbTruncator.TruncateDb`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::chunk::{ChunkFile, ChunkHeader, ChunkName, HEADER_SIZE, TRANSFORM_IDENTITY};
use crate::error::{Error, Result};
use crate::record::RecordHeader;

use super::checkpoints::Checkpoints;
use super::{FindingKind, Level, Severity, Sink};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    Latest,
    /// A lower version of the same number, or a number inside an earlier merged file.
    Old,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub path: PathBuf,
    pub name: ChunkName,
    pub header: Option<ChunkHeader>,
    pub completed: bool,
    /// Last chunk number covered, as the server's enumerator takes it (the name's number for
    /// version-0 files, the header's end for others).
    pub end: u32,
    pub label: Label,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Chunks {
    pub entries: Vec<Entry>,
    pub chunk_size: Option<i64>,
    pub temp_files: Vec<PathBuf>,
}

impl Chunks {
    /// The latest file covering logical chunk `n`.
    pub fn latest_covering(&self, n: u32) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.label == Label::Latest && e.name.number <= n && n <= e.end)
    }
}

const RECOPY: &str = "copy this chunk again from the source node";

pub(crate) fn check(
    sink: &mut Sink<'_>,
    db: &Path,
    cps: &Checkpoints,
    level: Level,
) -> Result<Chunks> {
    let mut chunks = Chunks::default();
    let listing = fs::read_dir(db).map_err(|e| Error::io(db, e))?;
    for item in listing {
        let item = item.map_err(|e| Error::io(db, e))?;
        let file_name = item.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if let Some(name) = ChunkName::parse(file_name) {
            chunks.entries.push(Entry {
                path: item.path(),
                name,
                header: None,
                completed: false,
                end: name.number,
                label: Label::Latest,
            });
        } else if file_name.ends_with(".tmp") {
            chunks.temp_files.push(item.path());
        }
    }
    chunks.entries.sort_by_key(|e| e.name);

    // Headers and footers.
    for e in &mut chunks.entries {
        match ChunkFile::open(&e.path) {
            Ok(cf) => {
                let h = &cf.header;
                for p in h.problems() {
                    sink.add(
                        Severity::Error,
                        FindingKind::ChunkHeader,
                        &e.path,
                        format!("header: {p}"),
                        RECOPY,
                    );
                }
                if h.chunk_start_number != e.name.number as i32 {
                    sink.add(
                        Severity::Error,
                        FindingKind::ChunkHeader,
                        &e.path,
                        format!(
                            "header starts at chunk {}, the name at {}",
                            h.chunk_start_number, e.name.number
                        ),
                        RECOPY,
                    );
                }
                match chunks.chunk_size {
                    None if h.chunk_size > 0 => chunks.chunk_size = Some(h.chunk_size as i64),
                    Some(cs) if cs != h.chunk_size as i64 => sink.add(
                        Severity::Error,
                        FindingKind::ChunkSizeMismatch,
                        &e.path,
                        format!("chunk size {} differs from the {cs} of the chunks before it", h.chunk_size),
                        "all chunks of a database share one size; this file is damaged or from another database",
                    ),
                    _ => {}
                }
                if e.name.version > 0 && !h.is_scavenged {
                    sink.add(
                        Severity::Warning,
                        FindingKind::ChunkHeader,
                        &e.path,
                        "a rewritten version (Y > 0) whose header is not marked scavenged",
                        "check that the file was not renamed by hand",
                    );
                }
                if e.name.version > 0 && h.chunk_end_number >= h.chunk_start_number {
                    e.end = h.chunk_end_number as u32;
                }
                e.completed = cf.is_completed();
                e.header = Some(h.clone());
            }
            Err(err) => sink.add(
                Severity::Error,
                FindingKind::ChunkUnreadable,
                &e.path,
                format!("cannot be read as a chunk: {err}"),
                RECOPY,
            ),
        }
    }

    // Latest and old versions, gaps and overlaps, as the server's enumerator sees them.
    let mut expected: u32 = 0;
    let mut missing = Vec::new();
    let n = chunks.entries.len();
    for i in 0..n {
        let num = chunks.entries[i].name.number;
        let next = chunks.entries.get(i + 1).map(|e| e.name.number);
        if num < expected {
            chunks.entries[i].label = Label::Old;
            let e = &chunks.entries[i];
            if e.name.version > 0 && e.end >= expected {
                sink.add(
                    Severity::Error,
                    FindingKind::ChunkOverlap,
                    &e.path,
                    format!(
                        "covers chunks {}..{} but an earlier file already covers up to {}: overlapping scavenged ranges",
                        num, e.end, expected - 1
                    ),
                    format!(
                        "the server takes this file for an old version and deletes it, losing chunks {}..{}; copy the chunk files again from the source",
                        expected, e.end
                    ),
                );
            }
            continue;
        }
        if num > expected {
            missing.extend(expected..num);
        }
        if next == Some(num) {
            chunks.entries[i].label = Label::Old;
            expected = num;
        } else {
            chunks.entries[i].label = Label::Latest;
            expected = chunks.entries[i].end + 1;
        }
    }

    let (Some(cs), true) = (chunks.chunk_size, cps.trustworthy) else {
        return Ok(chunks);
    };
    let writer = cps.writer;
    let last = (writer / cs) as u32;
    missing.extend(expected..=last);
    for m in missing {
        let file = db.join(ChunkName::new(m, 0).to_string());
        if m < last {
            sink.add(
                Severity::Error,
                FindingKind::ChunkMissing,
                &file,
                format!("chunk {m} is missing but the log continues to {writer}"),
                "the server refuses to open the database; copy the missing chunk from the source node",
            );
        } else if m == last && writer != m as i64 * cs && chunks.latest_covering(m).is_none() {
            sink.add(
                Severity::Error,
                FindingKind::ChunkMissing,
                &file,
                format!("writer.chk ({writer}) points inside chunk {m}, which is missing"),
                "copy the open chunk from the source node",
            );
        }
    }

    for e in &chunks.entries {
        if e.name.number > last {
            sink.add(
                Severity::Error,
                FindingKind::ChunkBeyondWriter,
                &e.path,
                format!("starts past chunk {last}, which holds writer.chk ({writer})"),
                "delete it: a chunk past the writer makes startup truncation fail (\"excessive TFChunks\"); it was created after writer.chk was copied",
            );
        }
    }

    for e in chunks
        .entries
        .iter()
        .filter(|e| e.label == Label::Latest && e.name.number <= last)
    {
        let Some(h) = &e.header else { continue };
        sink.report.chunks_checked += 1;
        let holds_writer = e.name.number <= last && last <= e.end;
        let mut cf = match ChunkFile::open(&e.path) {
            Ok(cf) => cf,
            Err(_) => continue,
        };
        if holds_writer && e.name.number == last && !h.is_scavenged && !e.completed {
            open_chunk(sink, &mut cf, writer - h.start_position(), level);
            continue;
        }
        if holds_writer && h.is_scavenged && writer != h.start_position() && e.name.number == last {
            sink.add(
                Severity::Error,
                FindingKind::OpenChunk,
                &e.path,
                format!("writer.chk ({writer}) points inside a scavenged chunk; the server requires it at the chunk's start"),
                "copy writer.chk and the chunks again from the source node",
            );
        }
        if holds_writer && e.name.number < last && writer != last as i64 * cs {
            sink.add(
                Severity::Error,
                FindingKind::OpenChunk,
                &e.path,
                format!("writer.chk ({writer}) points inside chunks merged by a scavenge"),
                "copy writer.chk and the chunks again from the source node",
            );
        }
        if !e.completed {
            // A full chunk not yet completed when the writer sits exactly on the next boundary
            // is valid: the server completes it at start.
            let boundary_case = (e.end as i64 + 1) * cs == writer;
            if !boundary_case {
                sink.add(
                    Severity::Error,
                    FindingKind::ChunkNotCompleted,
                    &e.path,
                    format!("has no completed footer but the log continues past it to {writer}"),
                    "the server refuses historical chunks that are not completed; copy it again from the source node",
                );
            }
            continue;
        }
        let problems = cf.completed_size_problems();
        for p in &problems {
            sink.add(
                Severity::Error,
                FindingKind::ChunkLayout,
                &e.path,
                p.clone(),
                RECOPY,
            );
        }
        if level >= Level::Full {
            match cf.md5_matches() {
                Ok(true) => sink.report.bytes_hashed += cf.file_len(),
                Ok(false) => sink.add(
                    Severity::Error,
                    FindingKind::ChunkHash,
                    &e.path,
                    "MD5 does not match the one in the footer",
                    "the file is damaged: the server stops when it finds this in its background check; copy it again from the source node",
                ),
                Err(err) => sink.add(Severity::Error, FindingKind::ChunkUnreadable, &e.path, err.to_string(), RECOPY),
            }
        }
        if level >= Level::Deep && problems.is_empty() && h.transform_type == TRANSFORM_IDENTITY {
            let chaser_local = if (h.start_position()..h.end_position()).contains(&cps.chaser)
                && !h.is_scavenged
            {
                Some(cps.chaser - h.start_position())
            } else {
                None
            };
            walk_completed(sink, &mut cf, chaser_local);
        }
    }
    Ok(chunks)
}

/// The open chunk: long enough for the writer, and at the deep level, records up to it.
fn open_chunk(sink: &mut Sink<'_>, cf: &mut ChunkFile, local: i64, level: Level) {
    let path = cf.path().to_path_buf();
    if (cf.file_len() as i64) < HEADER_SIZE as i64 + local {
        sink.add(
            Severity::Error,
            FindingKind::OpenChunk,
            &path,
            format!(
                "{} bytes, shorter than the {local} bytes of data writer.chk says it holds",
                cf.file_len()
            ),
            "copy the open chunk again, after the checkpoints",
        );
        return;
    }
    if !cf.footer_blank {
        sink.add(
            Severity::Warning,
            FindingKind::OpenChunk,
            &path,
            "open chunk with a non-zero footer area",
            "the footer area is rewritten when the chunk completes; check the copy if this persists",
        );
    }
    if level >= Level::Deep && cf.header.transform_type == TRANSFORM_IDENTITY {
        walk(sink, cf, local as u64, |_, _| None);
    }
}

/// Deep checks of a completed chunk: records frame and sit at their positions, the walk ends at
/// the chaser when it lies inside, and a scavenged chunk's position map matches its records.
fn walk_completed(sink: &mut Sink<'_>, cf: &mut ChunkFile, chaser_local: Option<i64>) {
    let path = cf.path().to_path_buf();
    let physical = cf.footer.physical_data_size as u64;
    if cf.header.is_scavenged {
        // The map is streamed from a second handle in step with the records, so memory stays
        // bounded however many records the chunk holds.
        let mut map_file = match ChunkFile::open(&path) {
            Ok(f) => f,
            Err(e) => {
                sink.add(
                    Severity::Error,
                    FindingKind::ChunkPosMap,
                    &path,
                    e.to_string(),
                    RECOPY,
                );
                return;
            }
        };
        let count = map_file.footer.map_size.max(0) as usize / map_file.footer.pos_map_entry_size();
        let mut map = match map_file.pos_map() {
            Ok(m) => m,
            Err(e) => {
                sink.add(
                    Severity::Error,
                    FindingKind::ChunkPosMap,
                    &path,
                    e.to_string(),
                    RECOPY,
                );
                return;
            }
        };
        let mut i = 0usize;
        let bad = walk(sink, cf, physical, |off, h| {
            let e = map.next();
            i += 1;
            match e {
                Some(Err(e)) => Some(format!("position map: {e}")),
                Some(Ok(e)) if e.actual_pos as u64 == off && e.log_pos == h.log_position => None,
                Some(Ok(e)) => Some(format!(
                    "position map entry {} says logical {} at {}, the record there is at logical {}",
                    i - 1, e.log_pos, e.actual_pos, h.log_position
                )),
                None => Some("more records than position map entries".into()),
            }
        });
        if !bad && i != count {
            sink.add(
                Severity::Error,
                FindingKind::ChunkPosMap,
                &path,
                format!("{count} position map entries for {i} records"),
                RECOPY,
            );
        }
        return;
    }
    let start = cf.header.start_position();
    match chaser_local {
        // Walking exactly to the chaser proves it falls on a record boundary.
        Some(c) if (c as u64) < physical => {
            walk(sink, cf, c as u64, |off, h| position_rule(start, off, h));
        }
        _ => {
            walk(sink, cf, physical, |off, h| position_rule(start, off, h));
        }
    }
}

fn position_rule(start: i64, off: u64, h: &RecordHeader) -> Option<String> {
    (h.log_position != start + off as i64).then(|| {
        format!(
            "record at data offset {off} says logical position {}, expected {}",
            h.log_position,
            start + off as i64
        )
    })
}

/// Walks records up to `end`, applying `rule` to each; true when a finding was added.
fn walk(
    sink: &mut Sink<'_>,
    cf: &mut ChunkFile,
    end: u64,
    mut rule: impl FnMut(u64, &RecordHeader) -> Option<String>,
) -> bool {
    let path = cf.path().to_path_buf();
    // Scavenged chunks keep each record's original logical position; make it chunk-relative.
    let rel = if cf.header.is_scavenged {
        cf.header.start_position()
    } else {
        0
    };
    let iter = match cf.records(end) {
        Ok(it) => it,
        Err(e) => {
            sink.add(
                Severity::Error,
                FindingKind::ChunkRecords,
                &path,
                e.to_string(),
                RECOPY,
            );
            return true;
        }
    };
    for r in iter {
        match r {
            Ok(rec) => {
                let mut h = rec.header;
                h.log_position -= rel;
                if let Some(p) = rule(rec.physical_offset, &h) {
                    sink.add(Severity::Error, FindingKind::ChunkRecords, &path, p, RECOPY);
                    return true;
                }
            }
            Err(e) => {
                sink.add(
                    Severity::Error,
                    FindingKind::ChunkRecords,
                    &path,
                    format!("record framing: {e}"),
                    "the data does not end on a record boundary where the checkpoints say; copy the chunk and checkpoints again",
                );
                return true;
            }
        }
    }
    false
}
