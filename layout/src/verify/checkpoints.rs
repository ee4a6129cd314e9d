//! Checkpoint rules: every file exactly 8 bytes; 0 ≤ chaser ≤ writer, −1 ≤ epoch ≤ writer
//! (`TFChunkDb.ValidateReaderChecksumsMustBeLess`), truncate −1 or ≤ writer, proposal ≥ −1, the
//! stream-existence checkpoint ≤ writer.

use std::path::Path;

use crate::checkpoint::{self, CheckpointKind};

use super::{FindingKind, Severity, Sink};

/// Checkpoint values as the server will read them (a missing file as its initial value).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checkpoints {
    pub writer: i64,
    pub chaser: i64,
    pub epoch: i64,
    pub truncate: i64,
    pub stream_filter: i64,
    /// Whether writer and chaser were readable and 8 bytes: positions can be trusted.
    pub trustworthy: bool,
}

pub(crate) fn check(sink: &mut Sink<'_>, db: &Path, index: &Path) -> Checkpoints {
    let mut cps = Checkpoints {
        writer: 0,
        chaser: 0,
        epoch: -1,
        truncate: -1,
        stream_filter: -1,
        trustworthy: true,
    };
    for kind in CheckpointKind::ALL {
        let path = kind.path(db, index);
        let read = match checkpoint::read(&path) {
            Ok(r) => r,
            Err(e) => {
                sink.add(
                    Severity::Error,
                    FindingKind::CheckpointMalformed,
                    &path,
                    format!("cannot be read: {e}"),
                    "copy it again from the source node",
                );
                if matches!(kind, CheckpointKind::Writer | CheckpointKind::Chaser) {
                    cps.trustworthy = false;
                }
                continue;
            }
        };
        let Some(read) = read else {
            let (sev, why) = match kind {
                CheckpointKind::Writer | CheckpointKind::Chaser => (
                    Some(Severity::Error),
                    "the node would start from position 0 and refuse or discard the log",
                ),
                CheckpointKind::Epoch | CheckpointKind::Proposal => (
                    Some(Severity::Warning),
                    "the node recreates it as -1 (epoch: it then scans the log backwards for the last epoch)",
                ),
                _ => (None, ""),
            };
            if let Some(sev) = sev {
                sink.add(
                    sev,
                    FindingKind::CheckpointMissing,
                    &path,
                    format!("missing; {why}"),
                    "copy the checkpoints from the source node (before the chunks)",
                );
                if sev == Severity::Error {
                    cps.trustworthy = false;
                }
            }
            continue;
        };
        if !read.is_well_formed() {
            sink.add(
                Severity::Error,
                FindingKind::CheckpointMalformed,
                &path,
                format!(
                    "is {} bytes instead of 8; the server would read it as {}",
                    read.len, read.value
                ),
                "copy it again from the source node; never restore from a truncated checkpoint",
            );
            if matches!(kind, CheckpointKind::Writer | CheckpointKind::Chaser) {
                cps.trustworthy = false;
            }
        }
        let v = read.value;
        match kind {
            CheckpointKind::Writer => cps.writer = v,
            CheckpointKind::Chaser => cps.chaser = v,
            CheckpointKind::Epoch => cps.epoch = v,
            CheckpointKind::Truncate => cps.truncate = v,
            CheckpointKind::StreamExistenceFilter => cps.stream_filter = v,
            CheckpointKind::Proposal => {
                if v < -1 {
                    sink.add(
                        Severity::Error,
                        FindingKind::CheckpointOrder,
                        &path,
                        format!("holds {v}; an epoch number is -1 or more"),
                        "copy it again from the source node",
                    );
                }
            }
            CheckpointKind::Tag => {}
        }
    }
    let order = |sink: &mut Sink<'_>, kind: CheckpointKind, problem: String| {
        sink.add(
            Severity::Error,
            FindingKind::CheckpointOrder,
            &kind.path(db, index),
            problem,
            "the server refuses to open this database; copy the checkpoints again, in the order chaser, epoch, writer",
        );
    };
    if cps.writer < 0 {
        order(
            sink,
            CheckpointKind::Writer,
            format!("writer position {} is negative", cps.writer),
        );
        cps.trustworthy = false;
    }
    if cps.chaser < 0 || cps.chaser > cps.writer {
        order(
            sink,
            CheckpointKind::Chaser,
            format!(
                "chaser {} is not between 0 and the writer {}",
                cps.chaser, cps.writer
            ),
        );
    }
    if cps.epoch < -1 || cps.epoch > cps.writer {
        order(
            sink,
            CheckpointKind::Epoch,
            format!(
                "epoch position {} is not between -1 and the writer {}",
                cps.epoch, cps.writer
            ),
        );
    }
    if cps.truncate != -1 {
        if cps.truncate < 0 || cps.truncate > cps.writer {
            order(
                sink,
                CheckpointKind::Truncate,
                format!(
                    "truncate position {} is not -1 and not between 0 and the writer {}",
                    cps.truncate, cps.writer
                ),
            );
        } else {
            sink.add(
                Severity::Warning,
                FindingKind::TruncatePending,
                &CheckpointKind::Truncate.path(db, index),
                format!("the node will truncate the log from {} to {} at its next start", cps.writer, cps.truncate),
                "expected after a restore; in a source backup it means the node had not finished a truncation",
            );
        }
    }
    if cps.stream_filter > cps.writer {
        sink.add(
            Severity::Warning,
            FindingKind::StreamExistenceFilter,
            &CheckpointKind::StreamExistenceFilter.path(db, index),
            format!(
                "stream-existence filter checkpoint {} is past the writer {}",
                cps.stream_filter, cps.writer
            ),
            "harmless: the server truncates the filter's checkpoint to the log at start",
        );
    }
    cps
}
