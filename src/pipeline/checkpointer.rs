//! The checkpointer: persists the positions the writer reports as applied, and keeps a copy on
//! the secondary.
//!
//! It persists only what the writer confirmed (every event before the position is acknowledged by
//! the secondary), so the file is never ahead of the secondary: at most every [`WRITE_INTERVAL`],
//! and at once when the writer asks for a flush. It reports each position that is durable both
//! locally and in the copy on the secondary, which is what the writer waits for around a delete.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Applied, Shared, StageError};
use crate::checkpoint::{Checkpoint, CheckpointStore, PrimaryId};
use crate::esdb::{Client, EventData};
use crate::position::{Epoch, ExpectedVersion, Position};
use crate::retry::{retry, Gave};

/// The secondary stream holding copies of the checkpoint, for an explicit recovery when the local
/// file is lost (`standby checkpoint recover`).
pub const CHECKPOINT_STREAM: &str = "$standby-checkpoint";
/// Event type of a checkpoint copy.
pub const CHECKPOINT_EVENT_TYPE: &str = "standby-checkpoint";
/// Copies kept on the secondary (older ones are truncated by the server).
pub const COPIES_KEPT: u64 = 100;
/// How often the copy on the secondary is refreshed while positions move.
const COPY_INTERVAL: Duration = Duration::from_secs(5);
/// Least time between two writes of the local file, except when the writer asks for a flush.
pub const WRITE_INTERVAL: Duration = Duration::from_millis(50);

pub(super) struct Checkpointer {
    pub store: Arc<Mutex<CheckpointStore>>,
    pub primary: PrimaryId,
    pub epoch: Epoch,
    pub secondary: Client,
    pub shared: Arc<Shared>,
}

impl Checkpointer {
    /// Keeps [`COPIES_KEPT`] copies on the secondary (`$maxCount`).
    async fn bound_copies(&self) -> Result<(), crate::esdb::Error> {
        let current = match self
            .secondary
            .read_stream_metadata(CHECKPOINT_STREAM)
            .await?
        {
            crate::esdb::Lookup::Found(meta) => meta,
            _ => crate::esdb::StreamMetadata::new(serde_json::json!({})),
        };
        if current.max_count() == Some(COPIES_KEPT) {
            return Ok(());
        }
        let mut document = match current.into_json() {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        document.insert("$maxCount".into(), serde_json::json!(COPIES_KEPT));
        let body = serde_json::to_vec(&document).expect("JSON serialises");
        self.secondary
            .write_stream_metadata(
                CHECKPOINT_STREAM,
                Uuid::new_v4(),
                body.into(),
                ExpectedVersion::Any,
            )
            .await
            .map(|_| ())
    }

    /// Persists the applied positions until the writer is gone (its sender dropped), then
    /// persists the last one. The copy on the secondary is refreshed every [`COPY_INTERVAL`], at
    /// shutdown, and — retried until it succeeds — on a flush, so that a recovery from the copy
    /// never replays a delete. `abort` cuts copies short.
    ///
    /// # Cancel safety
    /// Never cancelled mid-write: a local write runs to completion on a blocking thread.
    pub async fn run(
        self,
        mut applied: watch::Receiver<Applied>,
        flushed: watch::Sender<Position>,
        abort: CancellationToken,
    ) -> Result<(), StageError> {
        let mut last_copy: Option<(Instant, Position)> = None;
        let mut last_write: Option<Instant> = None;
        // Bound the copies stream; best effort, once per run. Setup writes the same bound with
        // the stream's ACL; merge into what is there so the ACL is never dropped.
        if let Err(e) = self.bound_copies().await {
            tracing::warn!(error = %e, "could not bound {CHECKPOINT_STREAM} with $maxCount");
        }
        loop {
            let mut closed = applied.changed().await.is_err();
            // Between flushes, write at most every WRITE_INTERVAL: a replay after a crash is
            // idempotent, so a slightly older checkpoint costs a moment of replay, while an fsync
            // per page at the live edge costs CPU all the time.
            if let Some(due) = last_write.map(|at| at + WRITE_INTERVAL) {
                while !closed && !applied.borrow().flush && Instant::now() < due {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due.into()) => break,
                        r = applied.changed() => closed = r.is_err(),
                    }
                }
            }
            let Applied { position, flush } = *applied.borrow_and_update();
            self.persist(position).await?;
            last_write = Some(Instant::now());
            let copied = last_copy.is_some_and(|(_, p)| p == position);
            let due =
                last_copy.is_none_or(|(at, p)| p != position && at.elapsed() >= COPY_INTERVAL);
            if flush && !copied {
                match retry(
                    "copy the checkpoint to the secondary",
                    &abort,
                    |e| self.shared.note_retry("checkpointer", e),
                    || self.copy_to_secondary(position),
                )
                .await
                {
                    Ok(()) => last_copy = Some((Instant::now(), position)),
                    Err(Gave::Cancelled) => return Ok(()),
                    Err(Gave::Up(e)) => return Err(StageError::Secondary(e)),
                }
            } else if !copied && (closed || due) {
                // Best effort: the local file is the truth.
                let copy = self.copy_to_secondary(position);
                let result = tokio::select! { _ = abort.cancelled() => None, r = copy => Some(r) };
                match result {
                    Some(Ok(())) => last_copy = Some((Instant::now(), position)),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "could not copy the checkpoint to the secondary (the local file is unaffected)")
                    }
                    None => {}
                }
            }
            if last_copy.is_some_and(|(_, p)| p == position) {
                flushed.send_replace(position);
            }
            if closed {
                return Ok(());
            }
        }
    }

    async fn persist(&self, position: Position) -> Result<(), StageError> {
        let cp = Checkpoint {
            position,
            primary: self.primary.clone(),
            epoch: self.epoch,
        };
        let store = self.store.clone();
        let started = Instant::now();
        let written =
            tokio::task::spawn_blocking(move || store.lock().expect("checkpoint lock").store(&cp))
                .await
                .map_err(|e| StageError::Unexpected(format!("checkpoint task: {e}")))?
                .map_err(StageError::Checkpoint)?;
        if written {
            self.shared.note_checkpoint(position, started.elapsed());
        }
        Ok(())
    }

    /// Appends the checkpoint to [`CHECKPOINT_STREAM`] on the secondary.
    ///
    /// Expected version `Any`: the copies are standby's own bounded notebook (`$maxCount`), not a
    /// mirrored stream, and a repeated copy of a position changes nothing a reader relies on (the
    /// newest copy is the one read). Its id is derived from the position, so a retry while the
    /// server still caches it is answered "already written" (weak idempotency, §5.5).
    async fn copy_to_secondary(&self, position: Position) -> Result<(), crate::esdb::Error> {
        let cp = Checkpoint {
            position,
            primary: self.primary.clone(),
            epoch: self.epoch,
        };
        let data = serde_json::to_vec(&cp).expect("a checkpoint serialises");
        let id = (u128::from(position.commit()) << 64 | u128::from(position.prepare()))
            ^ u128::from(self.epoch.get()).rotate_left(32);
        let event = EventData::json(Uuid::from_u128(id), CHECKPOINT_EVENT_TYPE, data);
        self.secondary
            .append_events(CHECKPOINT_STREAM, &[event], ExpectedVersion::Any)
            .await
            .map(|_| ())
    }
}
