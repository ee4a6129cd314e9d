//! The checkpointer: persists the positions the writer reports as applied, and keeps a copy on
//! the secondary.
//!
//! It persists only what the writer confirmed (every event before the position is acknowledged by
//! the secondary), so the file is never ahead of the secondary. It reports each persisted position
//! back, which is what a barrier page waits for.

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

pub(super) struct Checkpointer {
    pub store: Arc<Mutex<CheckpointStore>>,
    pub primary: PrimaryId,
    pub epoch: Epoch,
    pub secondary: Client,
    pub shared: Arc<Shared>,
}

impl Checkpointer {
    /// Persists every new applied position until the writer is gone (its sender dropped), then
    /// flushes the last one. The copy on the secondary is refreshed every [`COPY_INTERVAL`], at
    /// shutdown, and — retried until it succeeds — after a barrier page, so that a recovery from
    /// the copy never replays a delete. `abort` cuts copies short.
    ///
    /// # Cancel safety
    /// Never cancelled mid-write: a local write runs to completion on a blocking thread.
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

    pub async fn run(
        self,
        mut applied: watch::Receiver<Applied>,
        persisted: watch::Sender<Position>,
        abort: CancellationToken,
    ) -> Result<(), StageError> {
        let mut last_copy: Option<(Instant, Position)> = None;
        // Bound the copies stream; best effort, once per run. Setup writes the same bound with
        // the stream's ACL; merge into what is there so the ACL is never dropped.
        if let Err(e) = self.bound_copies().await {
            tracing::warn!(error = %e, "could not bound {CHECKPOINT_STREAM} with $maxCount");
        }
        loop {
            let closed = applied.changed().await.is_err();
            let Applied { position, barrier } = *applied.borrow_and_update();
            self.persist(position).await?;
            let due =
                last_copy.is_none_or(|(at, p)| p != position && at.elapsed() >= COPY_INTERVAL);
            if barrier && last_copy.is_none_or(|(_, p)| p != position) {
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
            } else if closed || due {
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
            persisted.send_replace(position);
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
    async fn copy_to_secondary(&self, position: Position) -> Result<(), crate::esdb::Error> {
        let cp = Checkpoint {
            position,
            primary: self.primary.clone(),
            epoch: self.epoch,
        };
        let data = serde_json::to_vec(&cp).expect("a checkpoint serialises");
        let event = EventData::json(Uuid::new_v4(), CHECKPOINT_EVENT_TYPE, data);
        self.secondary
            .append_events(CHECKPOINT_STREAM, &[event], ExpectedVersion::Any)
            .await
            .map(|_| ())
    }
}
