//! `standby verify-backup`: checks a copied or restored database directory offline, with the
//! `layout` crate's verifier, and says file by file what is damaged and what to do.
//!
//! Levels (`backup-and-on-disk-layout.md` §4.3): `quick` reads names, sizes, headers, footers and
//! checkpoints (256 bytes per chunk); `full` adds the MD5 of every completed chunk and PTable, the
//! `indexmap` hash and the Bloom filters; `deep` adds the record framing up to the checkpoints and
//! predicts what the server does when it starts on the directory. The directory is only read.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use layout::verify::{
    verify_dir, Finding, FindingKind, IndexOutcome, Level, Options, Prediction, Report, Severity,
    TruncationPlan,
};
use serde::Serialize;

/// Why a directory could not be verified at all (as opposed to findings about its files).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{0}: no such directory; pass the node's database directory (its --db) or a copy of it"
    )]
    Missing(PathBuf),
    #[error(
        "{0} is not a directory; pass the directory that holds writer.chk and the chunk files, \
         not a file in it"
    )]
    NotADirectory(PathBuf),
    #[error("cannot read the directory: {source}; check the path and its permissions")]
    Unreadable {
        path: PathBuf,
        source: layout::Error,
    },
}

/// The outcome of one verification: the report and what was asked.
#[derive(Debug)]
pub struct Verified {
    pub dir: PathBuf,
    pub index_dir: PathBuf,
    pub level: Level,
    pub report: Report,
    pub elapsed: Duration,
}

impl Verified {
    /// No error findings: a node can start on the directory without losing what was copied.
    pub fn is_sound(&self) -> bool {
        self.report.is_sound()
    }

    /// The report in the stable JSON form of `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        let r = &self.report;
        let json = JsonReport {
            dir: &self.dir,
            index_dir: &self.index_dir,
            level: level_name(self.level),
            sound: r.is_sound(),
            errors: count(r, Severity::Error),
            warnings: count(r, Severity::Warning),
            findings: r.findings.iter().map(JsonFinding::from).collect(),
            predictions: r.predictions.iter().map(JsonPrediction::from).collect(),
            truncation: r.truncation.as_ref().map(JsonTruncation::from),
            index_outcome: r.index_outcome.as_ref().map(JsonIndexOutcome::from),
            chunks_checked: r.chunks_checked,
            bytes_hashed: r.bytes_hashed,
            elapsed_ms: self.elapsed.as_millis() as u64,
        };
        serde_json::to_value(json).expect("a report serialises")
    }
}

/// Verifies `dir` (and its index in `index`, `<dir>/index` when `None`) at `level`.
///
/// # Errors
/// When `dir` or `index` is not a readable directory; damage to the files inside is reported
/// as findings in the [`Verified`] report, never as an error.
pub fn verify_backup(dir: &Path, index: Option<&Path>, level: Level) -> Result<Verified, Error> {
    check_dir(dir)?;
    if let Some(index) = index {
        check_dir(index)?;
    }
    let mut options = Options::new(level);
    options.index_dir = index.map(Path::to_path_buf);
    let started = Instant::now();
    let report = verify_dir(dir, &options).map_err(|source| Error::Unreadable {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(Verified {
        dir: dir.to_path_buf(),
        index_dir: index.map_or_else(|| dir.join("index"), Path::to_path_buf),
        level,
        report,
        elapsed: started.elapsed(),
    })
}

fn check_dir(dir: &Path) -> Result<(), Error> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::NotADirectory(dir.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::Missing(dir.to_path_buf()))
        }
        Err(e) => Err(Error::Unreadable {
            path: dir.to_path_buf(),
            source: layout::Error::Io {
                path: dir.to_path_buf(),
                source: e,
            },
        }),
    }
}

fn count(r: &Report, severity: Severity) -> usize {
    r.findings.iter().filter(|f| f.severity == severity).count()
}

pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Quick => "quick",
        Level::Full => "full",
        Level::Deep => "deep",
    }
}

/// `ChunkHash` → `chunk_hash`, `PTableHash` → `ptable_hash`: the finding kinds' stable names
/// in JSON.
pub fn kind_name(kind: FindingKind) -> String {
    let debug = format!("{kind:?}").replace("PTable", "Ptable");
    let mut out = String::with_capacity(debug.len() + 4);
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for Verified {
    /// One line per finding (file, problem, what to do), the deep level's predictions, then a
    /// summary line that says whether the directory is sound.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        writeln!(
            f,
            "verify-backup {} (level {})",
            self.dir.display(),
            level_name(self.level)
        )?;
        for finding in &r.findings {
            writeln!(f, "  {finding}")?;
        }
        if !r.predictions.is_empty() {
            writeln!(
                f,
                "what the server will do when it starts on this directory:"
            )?;
            for p in &r.predictions {
                match &p.file {
                    Some(file) => writeln!(f, "  {}: {}", file.display(), p.action)?,
                    None => writeln!(f, "  {}", p.action)?,
                }
            }
        }
        let mib = r.bytes_hashed as f64 / (1024.0 * 1024.0);
        writeln!(
            f,
            "{} chunks checked, {mib:.1} MiB hashed in {:.2} s",
            r.chunks_checked,
            self.elapsed.as_secs_f64()
        )?;
        let (errors, warnings) = (count(r, Severity::Error), count(r, Severity::Warning));
        if r.is_sound() {
            writeln!(f, "sound: no damage found ({warnings} warnings)")
        } else {
            writeln!(
                f,
                "DAMAGED: {errors} errors, {warnings} warnings; do not restore or start a node \
                 on this copy before acting on each error above"
            )
        }
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    dir: &'a Path,
    index_dir: &'a Path,
    level: &'static str,
    sound: bool,
    errors: usize,
    warnings: usize,
    findings: Vec<JsonFinding<'a>>,
    predictions: Vec<JsonPrediction<'a>>,
    truncation: Option<JsonTruncation<'a>>,
    index_outcome: Option<JsonIndexOutcome<'a>>,
    chunks_checked: usize,
    bytes_hashed: u64,
    elapsed_ms: u64,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    severity: &'static str,
    kind: String,
    file: &'a Path,
    problem: &'a str,
    action: &'a str,
}

impl<'a> From<&'a Finding> for JsonFinding<'a> {
    fn from(f: &'a Finding) -> Self {
        JsonFinding {
            severity: match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            kind: kind_name(f.kind),
            file: &f.file,
            problem: &f.problem,
            action: &f.action,
        }
    }
}

#[derive(Serialize)]
struct JsonPrediction<'a> {
    file: Option<&'a Path>,
    action: &'a str,
}

impl<'a> From<&'a Prediction> for JsonPrediction<'a> {
    fn from(p: &'a Prediction) -> Self {
        JsonPrediction {
            file: p.file.as_deref(),
            action: &p.action,
        }
    }
}

#[derive(Serialize)]
struct JsonTruncation<'a> {
    writer: i64,
    requested: i64,
    effective: i64,
    refused: Option<&'a str>,
    deleted: &'a [PathBuf],
    zero_filled: Option<&'a Path>,
    epoch_reset: bool,
    chaser_after: i64,
}

impl<'a> From<&'a TruncationPlan> for JsonTruncation<'a> {
    fn from(t: &'a TruncationPlan) -> Self {
        JsonTruncation {
            writer: t.writer,
            requested: t.requested,
            effective: t.effective,
            refused: t.refused.as_deref(),
            deleted: &t.deleted,
            zero_filled: t.zero_filled.as_deref(),
            epoch_reset: t.epoch_reset,
            chaser_after: t.chaser_after,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum JsonIndexOutcome<'a> {
    Built,
    Reused { from: i64, to: i64 },
    Rebuilt { reason: &'a str },
}

impl<'a> From<&'a IndexOutcome> for JsonIndexOutcome<'a> {
    fn from(o: &'a IndexOutcome) -> Self {
        match o {
            IndexOutcome::Built => JsonIndexOutcome::Built,
            IndexOutcome::Reused { from, to } => JsonIndexOutcome::Reused {
                from: *from,
                to: *to,
            },
            IndexOutcome::Rebuilt { reason } => JsonIndexOutcome::Rebuilt { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_kinds_have_snake_case_names() {
        assert_eq!(kind_name(FindingKind::ChunkHash), "chunk_hash");
        assert_eq!(kind_name(FindingKind::PTableMissing), "ptable_missing");
        assert_eq!(
            kind_name(FindingKind::CheckpointMalformed),
            "checkpoint_malformed"
        );
    }
}
