//! What `run` checks before it writes anything: that the position it would resume from belongs to
//! this primary and this secondary (docs/replication.md, "Refusals at start-up").
//!
//! A checkpoint is a claim about two clusters: "the secondary holds the primary's `$all` up to
//! here". Each way that claim can be false leads to silent loss if it is trusted, so each is
//! refused with exit 3 and the fix:
//!
//! * no local checkpoint, but the secondary holds a copy: resuming from the start is not what the
//!   operator meant (`checkpoint recover`);
//! * a local checkpoint older than the copy on the secondary: the standby host's disk was
//!   restored from a snapshot, or the file replaced;
//! * a local checkpoint, but a secondary with neither a copy nor a control record naming this
//!   primary: the secondary was emptied, rebuilt or swapped;
//! * a primary whose log ends before the checkpoint, or that holds, just before it, events the
//!   secondary does not have: a primary restored from an older backup, or another database.
//!
//! The primary's identity (the id of its first record) changes when a scavenge removes that
//! record; an identity that differs is accepted when the events just before the checkpoint
//! are the ones the secondary holds, which proves it is the same database.

use crate::checkpoint::{Checkpoint, PrimaryId};
use crate::config::Config;
use crate::control::Control;
use crate::esdb::{self, AllFrom, Client, Embed, Lookup, PageSize, ReadOptions, StreamFrom};
use crate::offsets::StreamOffsets;
use crate::position::{Position, StreamRevision};

use super::plan::{classify, StreamKind, LINK_TYPE, TOMBSTONE_TYPE};
use super::RunError;

/// Records of the primary's `$all` read backwards from the checkpoint to find events to check.
const LOOK_BACK_RECORDS: u16 = 500;
/// Events checked on the secondary before the look-back gives up (each is one read).
const EVENTS_CHECKED: usize = 20;

/// What `run` found on both sides for the checkpoint it resumes from.
pub(super) struct Resume<'a> {
    pub config: &'a Config,
    pub primary: &'a Client,
    /// Reads the secondary (as `[secondary.admin]` when configured).
    pub secondary: &'a Client,
    /// The primary's identity now.
    pub identity: &'a PrimaryId,
    pub local: Option<&'a Checkpoint>,
    pub copy: Option<&'a Checkpoint>,
    pub control: Option<&'a Control>,
    pub offsets: &'a StreamOffsets,
}

/// The outcome of the events check.
enum Anchor {
    /// An event before the checkpoint is on the secondary with the same id.
    Verified,
    /// No event before the checkpoint could be checked (none, or all hidden on the secondary).
    Unknown,
}

impl Resume<'_> {
    /// Where to resume: `Ok(Ok(position))`, or `Ok(Err(refusal))` with exit 3 and the fix.
    ///
    /// # Errors
    /// Client errors (the caller retries transient ones).
    pub async fn check(&self) -> Result<Result<Position, RunError>, esdb::Error> {
        let path = self.config.checkpoint.path.display();
        let Some(local) = self.local else {
            if let Some(copy) = self.copy {
                return Ok(Err(RunError::Refused(format!(
                    "there is no local checkpoint at {path}, but the secondary already holds replicated data up to {} \
                     (primary database {}). Starting from the beginning is not what a restart means. \
                     Recover the position explicitly with `standby checkpoint recover --config FILE`, or fix checkpoint.path",
                    copy.position, copy.primary
                ))));
            }
            return Ok(Ok(Position::START));
        };
        if let Some(copy) = self.copy {
            if copy.primary != local.primary {
                return Ok(Err(RunError::Refused(format!(
                    "the secondary was replicated from another primary (database {}) than the local checkpoint {path} \
                     (database {}). Point [secondary] at the standby of this primary, or use an empty secondary with a \
                     new checkpoint path",
                    copy.primary, local.primary
                ))));
            }
            if copy.position > local.position {
                return Ok(Err(RunError::Refused(format!(
                    "the local checkpoint {path} ({}) is older than its copy on the secondary ({}): the standby host's \
                     disk was restored from a snapshot, or the file was replaced. Resuming from it would apply again \
                     what the secondary already holds. Move {path} away and run `standby checkpoint recover --config FILE`",
                    local.position, copy.position
                ))));
            }
        }
        if local.position == Position::START {
            // Nothing replicated yet, so no event can prove a changed identity.
            if local.primary != *self.identity {
                return Ok(Err(self.another_primary(local)));
            }
            return Ok(Ok(Position::START));
        }
        let set_up_for_this_primary = self
            .control
            .is_some_and(|c| c.record.primary.as_deref() == Some(local.primary.0.as_str()));
        if self.copy.is_none() && !set_up_for_this_primary {
            return Ok(Err(RunError::Refused(format!(
                "the local checkpoint {path} says the secondary holds the primary's events up to {}, but the secondary \
                 holds no replication state (no checkpoint copy, no control record for this primary): it was emptied or \
                 rebuilt, or [secondary] points at another cluster. Resuming would copy only what comes after the \
                 checkpoint. Point [secondary] at the right cluster; to fill this secondary from the beginning, move \
                 {path} away (or set a new checkpoint.path) and run again",
                local.position
            ))));
        }
        let head = crate::demo::primary_head(self.primary).await?;
        if head < local.position {
            return Ok(Err(RunError::Refused(format!(
                "the primary's log ends at {head}, before the checkpoint {} in {path}: the primary was restored from an \
                 older backup, or [primary] points at another database. Replicating now would mix two histories into \
                 the secondary. Decide which cluster holds the data to keep (docs/failover.md) before running again",
                local.position
            ))));
        }
        let anchor = match self.anchor(local.position).await? {
            Ok(a) => a,
            Err(refused) => return Ok(Err(refused)),
        };
        if local.primary != *self.identity {
            match anchor {
                Anchor::Verified => tracing::info!(
                    was = %local.primary, now = %self.identity,
                    "the primary's first record changed (removed by a scavenge); the events before the checkpoint are the ones the secondary holds, so it is the same database"
                ),
                Anchor::Unknown => return Ok(Err(self.another_primary(local))),
            }
        }
        Ok(Ok(local.position))
    }

    /// Checks the last user events of the primary before `position` against the secondary.
    async fn anchor(&self, position: Position) -> Result<Result<Anchor, RunError>, esdb::Error> {
        let options = ReadOptions {
            embed: Embed::Rich,
            long_poll: None,
            resolve_link_tos: Some(false),
        };
        // A backward read from (C, P) returns records whose post-position (C', C') <= (C, P)
        // (`AllReader.ReadAllEventsBackwardInternal`), so from a forward page's link (C, 0) it
        // would leave out the record that ends at C: read from (C, C).
        let from = Position::new(position.commit(), position.commit()).unwrap_or(position);
        let page = match self
            .primary
            .read_all_backward(
                AllFrom::Position(from),
                PageSize::new(LOOK_BACK_RECORDS).expect("valid page size"),
                &options,
            )
            .await
        {
            Ok(page) => page,
            // A position inside a record is refused with 500 (`ReadAllResult.InvalidPosition`
            // from 24.10): this log has no record boundary where the checkpoint stands, so it is
            // not the log the checkpoint was taken against. Retrying would never end.
            Err(e) if e.status() == Some(reqwest::StatusCode::INTERNAL_SERVER_ERROR) => {
                return Ok(Err(RunError::Refused(format!(
                    "the primary cannot read $all at the checkpoint {position} ({e}): no record of its log \
                     ends there, so it is another database, or one restored from an older backup. \
                     Replicating now would mix two histories into the secondary. Decide which cluster \
                     holds the data to keep (docs/failover.md) before running again; if the primary was \
                     only failing for a moment, run again"
                ))))
            }
            Err(e) => return Err(e),
        };
        // A checkpoint in the gRPC form is the last applied record's own position, which the
        // backward read leaves out: check that record first.
        let at = self.primary.read_record_at(position).await?;
        let mut checked = 0;
        for event in at.iter().chain(&page.entries).filter_map(|e| e.as_event()) {
            let StreamKind::User(stream) = classify(&event.stream) else {
                continue;
            };
            if event.event_type == TOMBSTONE_TYPE
                || event.event_type == LINK_TYPE
                || !self.config.replication.replicates(stream)
            {
                continue;
            }
            let Some(number) = self.offsets.to_secondary(stream, event.revision) else {
                continue;
            };
            if checked == EVENTS_CHECKED {
                break;
            }
            checked += 1;
            match self
                .secondary
                .read_event_entry(stream, StreamFrom::Revision(number), Embed::Rich)
                .await?
            {
                Lookup::Found(entry) => {
                    let theirs = entry.as_event().map(|e| e.event_id);
                    if theirs == Some(event.event_id) {
                        return Ok(Ok(Anchor::Verified));
                    }
                    return Ok(Err(self.mismatch(stream, event.revision, position, theirs)));
                }
                Lookup::Deleted => continue,
                Lookup::NotFound => {
                    if self.hidden_on_secondary(stream, number).await? {
                        continue;
                    }
                    return Ok(Err(self.mismatch(stream, event.revision, position, None)));
                }
            }
        }
        Ok(Ok(Anchor::Unknown))
    }

    /// Whether event `number` of `stream` exists on the secondary but is hidden from reads, or
    /// is gone for a reason its metadata states (soft delete, `$tb`, `$maxCount`, `$maxAge`,
    /// and a scavenge of what those hide), rather than missing.
    async fn hidden_on_secondary(
        &self,
        stream: &str,
        number: StreamRevision,
    ) -> Result<bool, esdb::Error> {
        match self
            .secondary
            .read_event_entry(stream, StreamFrom::Head, Embed::None)
            .await?
        {
            // The stream reaches past it: it is there, below `$maxCount`, `$tb` or `$maxAge`.
            Lookup::Found(head) if head.revision() >= number => return Ok(true),
            Lookup::Deleted => return Ok(true),
            _ => {}
        }
        Ok(match self.secondary.read_stream_metadata(stream).await? {
            Lookup::Found(meta) => {
                meta.truncate_before().is_some_and(|tb| tb > number)
                    || meta.max_age_seconds().is_some()
            }
            Lookup::NotFound | Lookup::Deleted => false,
        })
    }

    fn another_primary(&self, local: &Checkpoint) -> RunError {
        RunError::Refused(format!(
            "the checkpoint {} was taken against another primary (database {}), but {} is database {}, and no \
             event before the checkpoint proves it is the same one. Refusing to mix two primaries into one \
             secondary: point [primary] at the original cluster, or replicate this primary into an empty \
             secondary with a new checkpoint path",
            self.config.checkpoint.path.display(),
            local.primary,
            self.config.primary.url,
            self.identity
        ))
    }

    fn mismatch(
        &self,
        stream: &str,
        revision: StreamRevision,
        position: Position,
        theirs: Option<uuid::Uuid>,
    ) -> RunError {
        let on_secondary = match theirs {
            Some(id) => format!("the secondary holds event {id} there"),
            None => "the secondary does not hold it".to_string(),
        };
        RunError::Refused(format!(
            "the primary holds event {revision}@{stream} before the checkpoint {position}, but {on_secondary}: the \
             primary was restored from an older backup or is another database, or the secondary was changed. \
             Replicating now would mix two histories. Compare both sides with `standby verify` and decide which \
             cluster holds the data to keep (docs/failover.md)"
        ))
    }
}
