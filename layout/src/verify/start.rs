//! The deep level's prediction of the server's start on this directory: the truncation of
//! `ClusterVNode.StartNode` → `TFChunkDbTruncator.TruncateDb` (limit, excessive chunks, deleted
//! and zero-filled chunks, the scavenged-chunk rule, epoch reset, exit after truncating since
//! 24.6), then `TFChunkDb.Open` (old versions and temp files deleted, one excessive chunk
//! removed, background MD5 check) and `TableIndex.Initialize` (index reused or rebuilt, unlisted
//! files deleted).

use std::fs;
use std::path::{Path, PathBuf};

use crate::index::INDEXMAP_FILE_NAME;

use super::checkpoints::Checkpoints;
use super::chunks::{Chunks, Label};
use super::index::IndexState;
use super::{Options, Sink, TruncateSource};

/// What the truncation at start will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncationPlan {
    pub writer: i64,
    /// The position asked for (`truncate.chk`, or `chaser.chk` for a restore).
    pub requested: i64,
    /// Where the log ends afterwards: the requested position, or the start of the scavenged
    /// chunk it falls in.
    pub effective: i64,
    /// Why the server refuses to truncate and does not start; `None` when it proceeds.
    pub refused: Option<String>,
    /// Chunk files deleted, largest first.
    pub deleted: Vec<PathBuf>,
    /// The chunk cut back to an open chunk and zero-filled from the truncation point.
    pub zero_filled: Option<PathBuf>,
    /// `epoch.chk` reset to -1: the node then scans the log backwards for the last epoch.
    pub epoch_reset: bool,
    pub chaser_after: i64,
}

/// What the server does with the index at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOutcome {
    /// No `indexmap`: the index is built from the whole log.
    Built,
    /// The index is kept; the log from `from` (its commit checkpoint) to `to` (the chaser) is
    /// indexed again.
    Reused { from: i64, to: i64 },
    /// The index is backed up to `index-backup-<time>`, deleted and rebuilt from the log.
    Rebuilt { reason: String },
}

pub(crate) fn predict(
    sink: &mut Sink<'_>,
    db: &Path,
    index_dir: &Path,
    cps: &Checkpoints,
    chunks: &Chunks,
    index: &IndexState,
    options: &Options,
) {
    let Some(cs) = chunks.chunk_size.filter(|_| cps.trustworthy) else {
        sink.predict(
            None,
            "no prediction: the checkpoints or chunk headers cannot be trusted",
        );
        return;
    };
    let requested = match options.truncate_source {
        TruncateSource::Checkpoint => cps.truncate,
        TruncateSource::Chaser => cps.chaser,
    };
    let mut writer = cps.writer;
    let mut chaser = cps.chaser;
    if requested >= 0
        && requested <= writer
        && (options.truncate_source == TruncateSource::Chaser || cps.truncate != -1)
    {
        let plan = truncation(cps, chunks, cs, requested, options.max_truncation);
        match &plan.refused {
            Some(why) => sink.predict(
                None,
                format!("truncation refused, the node does not start: {why}"),
            ),
            None => {
                for d in &plan.deleted {
                    sink.predict(Some(d), "deleted by truncation");
                }
                if let Some(z) = &plan.zero_filled {
                    sink.predict(
                        Some(z),
                        format!(
                            "cut back to an open chunk and zero-filled from position {}",
                            plan.effective
                        ),
                    );
                }
                if plan.effective != plan.requested {
                    sink.predict(None, format!(
                        "truncation position moved from {} to {} (start of a scavenged chunk): the records between are lost locally and re-replicated in a cluster",
                        plan.requested, plan.effective
                    ));
                }
                if plan.epoch_reset {
                    sink.predict(
                        Some(&db.join("epoch.chk")),
                        "reset to -1; the node then scans the log backwards for the last epoch",
                    );
                }
                sink.predict(None, format!(
                    "writer {} → {}, chaser {} → {}, truncate.chk → -1; from 24.6 the node then exits with code 0 and must be started again",
                    writer, plan.effective.min(writer), chaser, plan.chaser_after
                ));
                writer = plan.effective.min(writer);
                chaser = plan.chaser_after;
            }
        }
        let refused = plan.refused.is_some();
        sink.report.truncation = Some(plan);
        if refused {
            return;
        }
    }

    // TFChunkDb.Open.
    let last = (writer / cs) as u32;
    for e in &chunks.entries {
        if e.label == Label::Old && e.name.number <= last {
            sink.predict(Some(&e.path), "old version, deleted at open");
        }
        if e.name.number == last + 1
            && e.name.version == 0
            && e.end == e.name.number
            && sink.report.truncation.is_none()
        {
            sink.predict(
                Some(&e.path),
                "excessive chunk created before writer.chk moved, deleted at open",
            );
        }
    }
    for t in &chunks.temp_files {
        sink.predict(Some(t), "temporary file, deleted at open");
    }
    sink.predict(None, "completed chunks are MD5-checked in the background after start, newest first; a mismatch stops the node");

    // TableIndex.Initialize.
    let outcome = match (&index.map, &index.rebuild_reason) {
        (_, Some(reason)) => IndexOutcome::Rebuilt {
            reason: reason.clone(),
        },
        (None, None) => IndexOutcome::Built,
        (Some(m), None) if m.commit_checkpoint >= chaser => IndexOutcome::Rebuilt {
            reason: format!(
                "commit checkpoint {} is not below the chaser {chaser} after truncation",
                m.commit_checkpoint
            ),
        },
        (Some(m), None) => IndexOutcome::Reused {
            from: m.commit_checkpoint,
            to: chaser,
        },
    };
    match &outcome {
        IndexOutcome::Built => sink.predict(None, "index built from the whole log"),
        IndexOutcome::Rebuilt { reason } => sink.predict(None, format!("index backed up to index-backup-<time>, deleted and rebuilt from the log: {reason}")),
        IndexOutcome::Reused { from, to } => sink.predict(None, format!("index reused; the log from {from} to {to} is indexed again")),
    }
    if let (Some(m), IndexOutcome::Reused { .. }) = (&index.map, &outcome) {
        let keep: Vec<String> = m
            .tables
            .iter()
            .flat_map(|t| {
                [
                    t.file_name.to_lowercase(),
                    format!("{}.bloomfilter", t.file_name).to_lowercase(),
                ]
            })
            .chain([INDEXMAP_FILE_NAME.to_string()])
            .collect();
        if let Ok(rd) = fs::read_dir(index_dir) {
            let mut extra: Vec<PathBuf> = rd
                .flatten()
                .filter(|d| d.file_type().map(|t| t.is_file()).unwrap_or(false))
                .filter(|d| !keep.contains(&d.file_name().to_string_lossy().to_lowercase()))
                .map(|d| d.path())
                .collect();
            extra.sort();
            for x in extra {
                sink.predict(
                    Some(&x),
                    "not listed in indexmap, deleted by index initialisation",
                );
            }
        }
    }
    sink.report.index_outcome = Some(outcome);
}

fn truncation(
    cps: &Checkpoints,
    chunks: &Chunks,
    cs: i64,
    truncate: i64,
    max: Option<i64>,
) -> TruncationPlan {
    let writer = cps.writer;
    let mut plan = TruncationPlan {
        writer,
        requested: truncate,
        effective: truncate,
        refused: None,
        deleted: Vec::new(),
        zero_filled: None,
        epoch_reset: false,
        chaser_after: cps.chaser.min(truncate),
    };
    let asked = writer - truncate;
    if let Some(max) = max {
        if asked > max {
            plan.refused = Some(format!(
                "it would remove {asked} bytes, more than MaxTruncation ({max}); raise MaxTruncation or set it to -1 for this start"
            ));
            return plan;
        }
    }
    let old_last = (writer / cs) as u32;
    let new_last = (truncate / cs) as u32;
    let excessive: Vec<_> = chunks
        .entries
        .iter()
        .filter(|e| e.name.number == old_last + 1)
        .collect();
    if !excessive.is_empty() {
        plan.refused = Some(format!(
            "excessive chunk {} past the writer's chunk; delete it before starting",
            excessive[0].path.display()
        ));
        return plan;
    }
    let target = chunks
        .entries
        .iter()
        .find(|e| e.label == Label::Latest && e.end >= new_last);
    let covered_to = chunks
        .entries
        .iter()
        .filter(|e| e.label == Label::Latest)
        .map(|e| e.end + 1)
        .fold(0, |acc: u32, end| if acc >= end { acc } else { end });
    if covered_to < new_last {
        plan.refused = Some(format!(
            "chunk {covered_to} is missing below the truncation point"
        ));
        return plan;
    }
    if let Some(t) = target {
        let Some(h) = &t.header else {
            plan.refused = Some(format!("{} cannot be read", t.path.display()));
            return plan;
        };
        let boundary = truncate % cs == 0;
        let delete_from = if h.is_scavenged {
            t.name.number
        } else if boundary {
            new_last
        } else {
            new_last + 1
        };
        let mut deleted: Vec<PathBuf> = chunks
            .entries
            .iter()
            .filter(|e| e.name.number >= delete_from)
            .map(|e| e.path.clone())
            .collect();
        deleted.reverse();
        plan.deleted = deleted;
        if !h.is_scavenged && !boundary {
            plan.zero_filled = Some(t.path.clone());
        } else {
            plan.effective = h.start_position();
        }
    }
    plan.epoch_reset = cps.epoch >= plan.effective;
    plan.chaser_after = cps.chaser.min(plan.effective);
    plan
}
