//! Offline verification of a node's database directory or a backup copy of one.
//!
//! [`verify_dir`] returns a [`Report`]: one [`Finding`] per problem, each naming the file, what is
//! wrong and what to do, and at the `deep` level what the server will do when it starts on the
//! directory (truncation, index reuse or rebuild, files it deletes). Levels follow
//! `backup-and-on-disk-layout.md` §4.3:
//!
//! - [`Level::Quick`]: names, sizes, headers, footers and checkpoints; 256 bytes per chunk.
//! - [`Level::Full`]: plus the MD5 of every completed chunk and PTable, the `indexmap` hash and
//!   the Bloom filter line hashes.
//! - [`Level::Deep`]: plus the record framing up to `chaser.chk` and to `writer.chk`, position
//!   maps, and the start-up prediction.
//!
//! Every read streams through fixed buffers; the largest allocation is one record (≤ 16 MiB).

mod checkpoints;
mod chunks;
mod index;
mod start;

use std::path::{Path, PathBuf};

use crate::error::Result;

pub use start::{IndexOutcome, TruncationPlan};

/// How much to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Quick,
    Full,
    Deep,
}

/// Which truncation the deep level predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TruncateSource {
    /// What `truncate.chk` says now (no truncation when it is -1).
    #[default]
    Checkpoint,
    /// What a restore sets: `truncate.chk := chaser.chk`.
    Chaser,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub level: Level,
    /// The index directory when it is not `<db>/index` (the server's `--index`).
    pub index_dir: Option<PathBuf>,
    /// The server's `MaxTruncation` in bytes; `None` for -1 (no limit). Default 256 MiB.
    pub max_truncation: Option<i64>,
    pub truncate_source: TruncateSource,
}

impl Options {
    pub fn new(level: Level) -> Self {
        Options {
            level,
            index_dir: None,
            max_truncation: Some(DEFAULT_MAX_TRUNCATION),
            truncate_source: TruncateSource::Checkpoint,
        }
    }
}

/// `ClusterVNodeOptions` default `MaxTruncation`.
pub const DEFAULT_MAX_TRUNCATION: i64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Damaged or inconsistent: the node will not start, loses data, or discards part of what
    /// was copied.
    Error,
    /// Worth knowing, not damage: a pending truncation, a rebuild of an optional structure.
    Warning,
}

/// What kind of problem a finding is; stable names for JSON output and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindingKind {
    CheckpointMissing,
    CheckpointMalformed,
    CheckpointOrder,
    TruncatePending,
    ChunkUnreadable,
    ChunkHeader,
    ChunkSizeMismatch,
    ChunkMissing,
    ChunkBeyondWriter,
    ChunkOverlap,
    ChunkNotCompleted,
    ChunkLayout,
    ChunkHash,
    ChunkRecords,
    ChunkPosMap,
    OpenChunk,
    IndexMapMissing,
    IndexMapUnreadable,
    IndexMapHash,
    IndexMapStructure,
    IndexMapAhead,
    PTableMissing,
    PTableUnreadable,
    PTableHash,
    BloomFilter,
    StreamExistenceFilter,
    ScavengeInProgress,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub kind: FindingKind,
    /// The file concerned, relative to the database directory when it lies inside it.
    pub file: PathBuf,
    /// What is wrong, in one sentence.
    pub problem: String,
    /// What to do about it.
    pub action: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{sev}: {}: {} ({})",
            self.file.display(),
            self.problem,
            self.action
        )
    }
}

/// One action the server is predicted to take at start (deep level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    pub file: Option<PathBuf>,
    pub action: String,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Deep level only: the server's start, one action per line, in order.
    pub predictions: Vec<Prediction>,
    pub truncation: Option<TruncationPlan>,
    pub index_outcome: Option<IndexOutcome>,
    pub chunks_checked: usize,
    pub bytes_hashed: u64,
}

impl Report {
    /// No error findings: the directory can be started on (warnings may remain).
    pub fn is_sound(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// Findings about one file.
    pub fn for_file<'a>(&'a self, file: &'a Path) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings.iter().filter(move |f| f.file == file)
    }
}

/// Collects findings with paths made relative to the database directory.
pub(crate) struct Sink<'a> {
    db: &'a Path,
    pub(crate) report: Report,
}

impl Sink<'_> {
    pub(crate) fn add(
        &mut self,
        severity: Severity,
        kind: FindingKind,
        file: &Path,
        problem: impl Into<String>,
        action: impl Into<String>,
    ) {
        let file = file.strip_prefix(self.db).unwrap_or(file).to_path_buf();
        self.report.findings.push(Finding {
            severity,
            kind,
            file,
            problem: problem.into(),
            action: action.into(),
        });
    }

    pub(crate) fn predict(&mut self, file: Option<&Path>, action: impl Into<String>) {
        let file = file.map(|f| f.strip_prefix(self.db).unwrap_or(f).to_path_buf());
        self.report.predictions.push(Prediction {
            file,
            action: action.into(),
        });
    }
}

/// Verifies the database directory `db` (a node's `--db` or a backup copy of it).
///
/// # Errors
/// Only when `db` itself cannot be listed; everything wrong with the files in it is a finding.
pub fn verify_dir(db: &Path, options: &Options) -> Result<Report> {
    let index_dir = options
        .index_dir
        .clone()
        .unwrap_or_else(|| db.join("index"));
    let mut sink = Sink {
        db,
        report: Report::default(),
    };
    let cps = checkpoints::check(&mut sink, db, &index_dir);
    let chunks = chunks::check(&mut sink, db, &cps, options.level)?;
    let index = index::check(&mut sink, &index_dir, &cps, options.level);
    if options.level >= Level::Deep {
        start::predict(&mut sink, db, &index_dir, &cps, &chunks, &index, options);
    }
    Ok(sink.report)
}
