//! The control stream `$standby-control` on the secondary: one event per epoch change.
//!
//! Epoch 1 (role `secondary`) is written by `run`'s setup; each promotion appends the next epoch
//! (role `primary`) with the expected version of the record it read, so of two concurrent
//! promotions exactly one is stored. Every record carries the settings found before setup, so
//! promotion can restore them however many records come between.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::esdb::{self, Client, EventData, Lookup};
use crate::position::{Epoch, ExpectedVersion, Position, StreamRevision};

/// The control stream (a system stream: only `$admins` may write it by default).
pub const CONTROL_STREAM: &str = "$standby-control";
/// Event type of a control record.
pub const EPOCH_EVENT_TYPE: &str = "standby-epoch";

/// What the secondary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A standby: only the replication user writes user streams.
    Secondary,
    /// Promoted: applications write, the replicator is fenced.
    Primary,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Secondary => "secondary",
            Role::Primary => "primary",
        })
    }
}

/// How much of the old primary the promoted secondary does not hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataLoss {
    /// Events of replicated user streams acknowledged by the primary and missing on the secondary;
    /// `None` when the primary could not be asked.
    pub events: Option<u64>,
    /// Metadata and delete records of replicated streams after the last applied position (they
    /// may or may not have been applied).
    pub other_records: Option<u64>,
    /// Bytes of the primary's log after the last applied position (an upper bound).
    pub bytes: Option<u64>,
    /// Primary time the missing events span.
    pub seconds: Option<f64>,
    /// The primary's head when measured.
    pub primary_head: Option<Position>,
    /// Why a figure is unknown.
    pub note: Option<String>,
}

/// One control record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: Epoch,
    pub role: Role,
    /// When it was written (UTC, RFC 3339, this machine's clock).
    pub at: String,
    /// Who wrote it (the admin login for promotions, the replication user's setup otherwise).
    pub by: String,
    /// The primary's database identity (see `pipeline::primary_identity`).
    pub primary: Option<String>,
    /// The primary's URL, without credentials.
    pub primary_url: Option<String>,
    /// The replication user the fence admits.
    pub replication_user: Option<String>,
    /// The secondary's `$settings` document before setup fenced it (`None`: there was none).
    pub settings_before: Option<Value>,
    /// Promotion: the operator's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Promotion: the source position up to which the secondary held everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<Position>,
    /// Promotion: the data-loss bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<DataLoss>,
    /// Promotion: the `$settings` document that opened the secondary to applications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_settings: Option<Value>,
    /// Promotion: whether the replication user's account was disabled (otherwise it was only
    /// removed from the write ACL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_user_disabled: Option<bool>,
    /// Promotion: `switchover` or `promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
}

impl fmt::Display for EpochRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "epoch {} ({}) at {} by {}",
            self.epoch, self.role, self.at, self.by
        )?;
        if let Some(verb) = &self.verb {
            write!(f, " via {verb}")?;
        }
        if let Some(reason) = &self.reason {
            write!(f, ", reason: {reason:?}")?;
        }
        if let Some(p) = self.last_applied {
            write!(f, ", last applied source position {p}")?;
        }
        Ok(())
    }
}

/// The last control record and its number (the expected version of the next one).
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    pub number: StreamRevision,
    pub record: EpochRecord,
}

impl Control {
    /// Promoted: the last record says `primary`.
    pub fn promoted(&self) -> Option<&EpochRecord> {
        (self.record.role == Role::Primary).then_some(&self.record)
    }
}

/// Why the control stream cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("reading {CONTROL_STREAM} on the secondary: {0}")]
    Client(#[from] esdb::Error),
    #[error(
        "the secondary's {CONTROL_STREAM} stream is hard-deleted: its epochs are lost. Do not \
         replicate into it or promote it before finding out who deleted it"
    )]
    Deleted,
    #[error(
        "the last record of {CONTROL_STREAM} on the secondary (event {number}) is not a standby \
         epoch record: {detail}. Someone else writes this stream; find out who before going on"
    )]
    Corrupt {
        number: StreamRevision,
        detail: String,
    },
}

impl crate::retry::Transient for ControlError {
    fn is_transient(&self) -> bool {
        ControlError::is_transient(self)
    }
}

impl ControlError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ControlError::Client(e) if e.is_transient())
    }
}

/// Reads the last control record.
///
/// # Errors
/// [`ControlError`].
pub async fn read(client: &Client) -> Result<Option<Control>, ControlError> {
    let entry = match client.read_last_entry(CONTROL_STREAM).await? {
        Lookup::Found(Some(entry)) => entry,
        Lookup::Found(None) | Lookup::NotFound => return Ok(None),
        Lookup::Deleted => return Err(ControlError::Deleted),
    };
    let number = entry.revision();
    let data = entry
        .as_event()
        .and_then(|e| e.data.clone())
        .ok_or_else(|| ControlError::Corrupt {
            number,
            detail: "it has no JSON data".into(),
        })?;
    let record = serde_json::from_slice(&data).map_err(|e| ControlError::Corrupt {
        number,
        detail: e.to_string(),
    })?;
    Ok(Some(Control { number, record }))
}

/// Outcome of [`append`].
#[derive(Debug)]
pub enum Appended {
    Written(StreamRevision),
    /// Someone appended first: the record that won.
    Lost(Option<Box<Control>>),
}

/// Attempts of one control record write before a transient failure is reported.
const APPEND_ATTEMPTS: u32 = 4;

/// Appends `record` after `after` (`None`: the stream must not exist yet), retrying transient
/// failures a few times with the same event.
///
/// # Errors
/// Client errors other than a wrong expected version.
pub async fn append(
    client: &Client,
    after: Option<StreamRevision>,
    record: &EpochRecord,
) -> Result<Appended, ControlError> {
    let expected = after.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    let data = serde_json::to_vec(record).expect("a control record serialises");
    // One id for every attempt: when the answer to a written record is lost, the retry is
    // answered "already written" (same id at the same number), not "wrong expected version".
    let event = EventData::json(Uuid::new_v4(), EPOCH_EVENT_TYPE, data);
    let mut attempt = 0;
    let result = loop {
        match client
            .append_events(CONTROL_STREAM, std::slice::from_ref(&event), expected)
            .await
        {
            Err(e) if e.is_transient() && attempt < APPEND_ATTEMPTS => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "writing the control record failed; retrying the same record");
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
            other => break other,
        }
    };
    match result {
        Ok(done) => Ok(Appended::Written(done.first.unwrap_or_else(|| {
            after
                .and_then(StreamRevision::next)
                .unwrap_or(StreamRevision::START)
        }))),
        Err(esdb::Error::WrongExpectedVersion { .. }) => {
            Ok(Appended::Lost(read(client).await?.map(Box::new)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Now as RFC 3339 UTC with seconds, e.g. `2026-11-24T13:05:09Z`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

pub use crate::clock::{parse_rfc3339, rfc3339};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_964_709), "2026-11-29T15:05:09Z");
    }

    #[test]
    fn rfc3339_parses_back_what_it_writes_and_nothing_else() {
        for secs in [0, 59, 951_782_400, 1_795_964_709, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs), "{secs}");
        }
        for bad in [
            "",
            "2026-11-29T15:05:09",
            "2026-13-01T00:00:00Z",
            "20x6-11-29T15:05:09Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_round_trip_and_old_fields_are_optional() {
        let text = r#"{"epoch":1,"role":"secondary","at":"2026-11-24T00:00:00Z","by":"admin",
            "primary":"abc","primary_url":"http://p","replication_user":"replicator","settings_before":null}"#;
        let r: EpochRecord = serde_json::from_str(text).unwrap();
        assert_eq!(r.role, Role::Secondary);
        assert_eq!(r.reason, None);
        let back: EpochRecord = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
