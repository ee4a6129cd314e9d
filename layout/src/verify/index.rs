//! Index rules: `indexmap` parses, its hash matches, its structure is what the server accepts,
//! its commit checkpoint is below `chaser.chk`, every PTable it lists exists, opens and (full
//! level) matches its MD5; Bloom filters and the stream-existence filter are checked as the
//! server counts them. Any of these failing makes the server discard the index and rebuild it
//! from the log (`Index/TableIndex.cs` `Initialize`): nothing is lost, but the start is slow.

use std::path::Path;

use crate::index::bloom::{self, STREAM_EXISTENCE_DAT, STREAM_EXISTENCE_DIR};
use crate::index::{IndexMap, PTableFile, INDEXMAP_FILE_NAME};

use super::checkpoints::Checkpoints;
use super::{FindingKind, Level, Severity, Sink};

/// What the server will find in the index directory.
#[derive(Debug, Clone, Default)]
pub(crate) struct IndexState {
    pub map: Option<IndexMap>,
    /// Why the server would discard the index (None: reusable, or absent).
    pub rebuild_reason: Option<String>,
}

const REBUILD: &str =
    "the server will discard the index and rebuild it from the log (slow, nothing lost); copy the index directory again, before the checkpoints";

pub(crate) fn check(
    sink: &mut Sink<'_>,
    dir: &Path,
    cps: &Checkpoints,
    level: Level,
) -> IndexState {
    let mut state = IndexState::default();
    let path = dir.join(INDEXMAP_FILE_NAME);
    if !path.exists() {
        sink.add(
            Severity::Warning,
            FindingKind::IndexMapMissing,
            &path,
            "no indexmap",
            "the server builds the index from the whole log at start (slow); copy the index directory if the source has one",
        );
    } else {
        match IndexMap::read(&path) {
            Err(e) => {
                sink.add(
                    Severity::Error,
                    FindingKind::IndexMapUnreadable,
                    &path,
                    e.to_string(),
                    REBUILD,
                );
                state.rebuild_reason = Some(format!("indexmap unreadable: {e}"));
            }
            Ok(parsed) => {
                if !parsed.hash_matches() {
                    sink.add(
                        Severity::Error,
                        FindingKind::IndexMapHash,
                        &path,
                        "the MD5 on its first line does not match its content",
                        REBUILD,
                    );
                    state.rebuild_reason = Some("indexmap hash mismatch".into());
                }
                for p in parsed.map.structure_problems() {
                    sink.add(
                        Severity::Error,
                        FindingKind::IndexMapStructure,
                        &path,
                        p.clone(),
                        REBUILD,
                    );
                    state.rebuild_reason.get_or_insert(p);
                }
                if cps.trustworthy && parsed.map.commit_checkpoint >= cps.chaser {
                    let p = format!(
                        "commit checkpoint {} is not below chaser.chk ({})",
                        parsed.map.commit_checkpoint, cps.chaser
                    );
                    sink.add(
                        Severity::Error,
                        FindingKind::IndexMapAhead,
                        &path,
                        p.clone(),
                        "the index was copied after the checkpoints; the server will rebuild it. Copy the index first, then the checkpoints",
                    );
                    state.rebuild_reason.get_or_insert(p);
                }
                for t in &parsed.map.tables {
                    let pt = dir.join(&t.file_name);
                    if !pt.exists() {
                        sink.add(
                            Severity::Error,
                            FindingKind::PTableMissing,
                            &pt,
                            format!(
                                "listed in indexmap at {},{} but missing",
                                t.level, t.position
                            ),
                            REBUILD,
                        );
                        state
                            .rebuild_reason
                            .get_or_insert(format!("PTable {} missing", t.file_name));
                        continue;
                    }
                    match PTableFile::open(&pt) {
                        Err(e) => {
                            sink.add(
                                Severity::Error,
                                FindingKind::PTableUnreadable,
                                &pt,
                                e.to_string(),
                                REBUILD,
                            );
                            state
                                .rebuild_reason
                                .get_or_insert(format!("PTable {} unreadable", t.file_name));
                        }
                        Ok(mut f) if level >= Level::Full => match f.md5_matches() {
                            Ok(true) => sink.report.bytes_hashed += f.info.file_len,
                            Ok(false) => {
                                sink.add(
                                    Severity::Error,
                                    FindingKind::PTableHash,
                                    &pt,
                                    "MD5 at the end does not match the content",
                                    REBUILD,
                                );
                                state
                                    .rebuild_reason
                                    .get_or_insert(format!("PTable {} hash mismatch", t.file_name));
                            }
                            Err(e) => {
                                sink.add(
                                    Severity::Error,
                                    FindingKind::PTableUnreadable,
                                    &pt,
                                    e.to_string(),
                                    REBUILD,
                                );
                            }
                        },
                        Ok(_) => {}
                    }
                    let bf = dir.join(format!("{}.bloomfilter", t.file_name));
                    if level >= Level::Full && bf.exists() {
                        filter(sink, &bf, "the server drops this PTable's Bloom filter (lookups get slower) or rebuilds it");
                    }
                }
                state.map = Some(parsed.map);
            }
        }
    }
    let dat = dir.join(STREAM_EXISTENCE_DIR).join(STREAM_EXISTENCE_DAT);
    if cps.stream_filter >= 0 && !dat.exists() {
        sink.add(
            Severity::Warning,
            FindingKind::StreamExistenceFilter,
            &dat,
            "missing although its checkpoint is set",
            "the server rebuilds the stream-existence filter from the log (slow); copy its .chk and then its .dat",
        );
    } else if level >= Level::Full && dat.exists() {
        filter(
            sink,
            &dat,
            "the server rebuilds the stream-existence filter from the log at start (slow)",
        );
    }
    let wal = dir.join("scavenging").join("scavenging.db-wal");
    if wal.exists() {
        sink.add(
            Severity::Warning,
            FindingKind::ScavengeInProgress,
            &wal,
            "a scavenge was running or crashed when this was copied",
            "do not restore scavenging.db from this copy; the next scavenge starts from scratch without it",
        );
    }
    state
}

fn filter(sink: &mut Sink<'_>, path: &Path, consequence: &str) {
    match bloom::verify_filter(path) {
        Ok(c) if c.server_rebuilds() => sink.add(
            Severity::Warning,
            FindingKind::BloomFilter,
            path,
            format!("{} of {} lines are damaged, over the server's 5% limit", c.bad_lines, c.lines),
            consequence,
        ),
        Ok(c) if c.bad_lines > 0 => sink.add(
            Severity::Warning,
            FindingKind::BloomFilter,
            path,
            format!("{} of {} lines are damaged (within the server's 5% tolerance)", c.bad_lines, c.lines),
            "the server makes those lines safe and keeps the filter; copy it again if you want it intact",
        ),
        Ok(_) => {}
        Err(e) => sink.add(Severity::Warning, FindingKind::BloomFilter, path, e.to_string(), consequence),
    }
}
