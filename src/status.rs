//! `status`: where replication stands, gathered for an operator (`standby status`, `--json`).
//!
//! Every part is best-effort: a cluster that is down, or a checkpoint that cannot be read, is
//! *reported* in its part of the [`StatusReport`], never turned into a failure of the whole
//! command, because `status` is what an operator runs when something is already wrong.
//!
//! Parts:
//!
//! * the local checkpoint (position, primary identity, epoch), read without touching the file;
//! * the primary's head (`$all` read backward from `head` with count 1: its `previous` link is
//!   the end position, contract §3.4) and the timestamp of its newest event;
//! * the lag in `$all` records, bytes and seconds between the checkpoint and that head;
//! * the role and epoch of the secondary from its control stream [`CONTROL_STREAM`].
//!
//! No credentials appear in the report: URLs are printed without user info and errors name the
//! user, never the password.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::checkpoint::CheckpointStore;
use crate::config::{Config, ReplicationConfig};
use crate::esdb::{self, AllFrom, Client, Embed, Entry, Lookup, PageSize, ReadOptions, StreamFrom};
use crate::position::{Epoch, Position, StreamRevision};

/// The secondary's control stream. Its record format is owned by [`crate::control::record`];
/// this module reads it tolerantly, so `status` still reports something about a damaged one.
pub use crate::control::record::CONTROL_STREAM;

/// Counting the event lag stops here; beyond it the report says "at least".
pub const LAG_COUNT_CAP: u64 = 1_000_000;

/// `$all` records per page when counting the lag (titles only, the server's maximum).
const LAG_PAGE_SIZE: PageSize = PageSize::MAX;

/// Role reported when the secondary has no control record.
pub const ROLE_NO_CONTROL_RECORD: &str = "secondary (no control record yet)";

/// Everything `status` found out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusReport {
    /// The local checkpoint.
    pub checkpoint: CheckpointStatus,
    /// The primary's head.
    pub primary: PrimaryStatus,
    /// How far the secondary is behind the primary, as far as it could be measured.
    pub lag: LagStatus,
    /// The secondary's role and epoch.
    pub secondary: SecondaryStatus,
}

/// The local checkpoint file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CheckpointStatus {
    /// No file: replication has not started (or the file was removed).
    Missing {
        /// The configured path.
        path: PathBuf,
    },
    /// A valid checkpoint.
    Present {
        /// The configured path.
        path: PathBuf,
        /// Resume point in the primary's `$all`.
        position: Position,
        /// The primary the position belongs to.
        primary_id: String,
        /// The epoch the replicator ran under.
        epoch: Epoch,
    },
    /// The file exists but cannot be read or trusted.
    Unreadable {
        /// The configured path.
        path: PathBuf,
        /// Why, with what to do.
        error: String,
    },
}

/// The primary's head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrimaryStatus {
    /// Base URL, without user info.
    pub url: String,
    /// The end of the primary's `$all` (where the next record will be written).
    pub head: Option<Position>,
    /// Timestamp of the newest record of the primary's `$all`, as the server formats it.
    pub newest_event_at: Option<String>,
    /// Why the head is unknown.
    pub error: Option<String>,
}

/// The lag in records of `$all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EventLag {
    /// Records of the primary's `$all` after the checkpoint, system records included.
    pub records: u64,
    /// Of those, records of user streams the filters replicate (and their `$$` metadata).
    pub replicated: u64,
    /// Counting stopped at [`LAG_COUNT_CAP`] records: the true lag is at least this.
    pub at_least: bool,
}

/// How far the secondary is behind, measured between the checkpoint and the primary's head.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LagStatus {
    /// The position the lag is measured from: the checkpoint, or the start of `$all` when there is
    /// none; `None` when the checkpoint cannot be read.
    pub from: Option<Position>,
    /// Records between `from` and the head.
    pub events: Option<EventLag>,
    /// Head commit position minus `from`'s: `$all` positions are byte offsets in the primary's
    /// transaction log (contract §3.2), so this is the volume still to replicate.
    pub bytes: Option<u64>,
    /// The primary's newest event timestamp minus the timestamp of the last event at or before
    /// `from` (both from the primary's clock, so clock skew between machines does not enter).
    ///
    /// It is the span of primary time the unreplicated tail covers, i.e. the data-loss window in
    /// time; on an idle primary it does not grow with wall-clock time.
    pub seconds: Option<f64>,
    /// Why a part is unknown, or what is odd (e.g. a checkpoint ahead of the head).
    pub notes: Vec<String>,
}

/// The last record of the secondary's control stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ControlRecord {
    /// Its number in [`CONTROL_STREAM`].
    pub number: StreamRevision,
    /// Its event type.
    pub event_type: String,
    /// The `epoch` field of its data, if any.
    pub epoch: Option<Epoch>,
    /// Its timestamp as the server formats it.
    pub recorded_at: Option<String>,
}

/// The secondary's role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecondaryStatus {
    /// Base URL, without user info.
    pub url: String,
    /// `false` when no connection could be made or it failed (connect, timeout, transport);
    /// `None` when unknown.
    pub reachable: Option<bool>,
    /// `secondary`, [`ROLE_NO_CONTROL_RECORD`], what the control record says, or `unknown`.
    pub role: String,
    /// The last control record, if any.
    pub control: Option<ControlRecord>,
    /// Why the role is unknown.
    pub error: Option<String>,
}

/// Gathers the [`StatusReport`]; never fails (see the module documentation).
///
/// # Cancel safety
///
/// Cancel-safe: only reads.
#[tracing::instrument(skip_all)]
pub async fn status(config: &Config, primary: &Client, secondary: &Client) -> StatusReport {
    let checkpoint = read_checkpoint(&config.checkpoint.path);
    let primary_status = primary_head(primary).await;
    let lag = lag(primary, &config.replication, &checkpoint, &primary_status).await;
    let secondary = secondary_role(secondary).await;
    StatusReport {
        checkpoint,
        primary: primary_status,
        lag,
        secondary,
    }
}

/// A URL as printed: without user name and password.
pub(crate) fn public_url(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    // Both fail only for URLs that cannot carry user info, which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// Reads the checkpoint without opening the store ([`CheckpointStore::read`]), so a running
/// replicator's temporary file is left alone.
fn read_checkpoint(path: &Path) -> CheckpointStatus {
    match CheckpointStore::read(path) {
        Err(e) => CheckpointStatus::Unreadable {
            path: path.to_path_buf(),
            error: e.to_string(),
        },
        Ok(None) => CheckpointStatus::Missing {
            path: path.to_path_buf(),
        },
        Ok(Some(cp)) => CheckpointStatus::Present {
            path: path.to_path_buf(),
            position: cp.position,
            primary_id: cp.primary.0,
            epoch: cp.epoch,
        },
    }
}

fn updated_of(entry: &Entry) -> Option<&str> {
    match entry {
        Entry::Event(event) => event.updated.as_deref(),
        Entry::Summary(summary) => summary.updated.as_deref(),
    }
}

/// The primary's head of `$all` and the time of its newest record.
pub(crate) async fn primary_head(primary: &Client) -> PrimaryStatus {
    let mut status = PrimaryStatus {
        url: primary.endpoint(),
        head: None,
        newest_event_at: None,
        error: None,
    };
    match primary.head_and_newest().await {
        Ok((head, newest)) => {
            status.head = Some(head);
            status.newest_event_at = newest;
        }
        Err(e) => status.error = Some(e.to_string()),
    }
    status
}

/// Measures the lag from the checkpoint (or the start) to the primary's head.
async fn lag(
    primary: &Client,
    filter: &ReplicationConfig,
    checkpoint: &CheckpointStatus,
    head: &PrimaryStatus,
) -> LagStatus {
    let mut lag = LagStatus {
        from: None,
        events: None,
        bytes: None,
        seconds: None,
        notes: Vec::new(),
    };
    let from = match checkpoint {
        CheckpointStatus::Present { position, .. } => *position,
        CheckpointStatus::Missing { .. } => {
            lag.notes.push(
                "no checkpoint: lag is measured from the start of the primary's $all".to_owned(),
            );
            Position::START
        }
        CheckpointStatus::Unreadable { .. } => {
            lag.notes
                .push("the checkpoint cannot be read, so the lag is unknown".to_owned());
            return lag;
        }
    };
    lag.from = Some(from);
    let Some(head_position) = head.head else {
        lag.notes
            .push("the primary's head is unknown, so the lag is unknown".to_owned());
        return lag;
    };
    if from.commit() > head_position.commit() {
        lag.notes.push(format!(
            "the checkpoint ({from}) is ahead of the primary's head ({head_position}): it was taken \
             against another primary, or the primary was restored from an older backup; do not \
             resume replication before checking which"
        ));
    }
    lag.bytes = Some(head_position.commit().saturating_sub(from.commit()));

    match count_records(primary, filter, from, LAG_COUNT_CAP).await {
        Ok(events) => lag.events = Some(events),
        Err(e) => lag.notes.push(format!(
            "cannot count the records after the checkpoint: {e}"
        )),
    }

    lag.seconds = match lag.events {
        Some(events) if events.records == 0 => Some(0.0),
        _ if from == Position::START => {
            lag.notes
                .push("nothing replicated yet, so the lag in seconds is undefined".to_owned());
            None
        }
        _ => match last_timestamp_before(primary, from).await {
            Ok(Some(applied)) => head
                .newest_event_at
                .as_deref()
                .and_then(parse_timestamp)
                .zip(parse_timestamp(&applied))
                .map(|(newest, applied)| (newest - applied).max(0.0)),
            Ok(None) => {
                lag.notes.push(format!(
                    "no event found before {from} on the primary, so the lag in seconds is unknown"
                ));
                None
            }
            Err(e) => {
                lag.notes.push(format!(
                    "cannot read the last replicated event's timestamp: {e}"
                ));
                None
            }
        },
    };
    lag
}

/// Counts the primary's `$all` records from `from` to the end, up to `cap`.
pub(crate) async fn count_records(
    primary: &Client,
    filter: &ReplicationConfig,
    mut from: Position,
    cap: u64,
) -> Result<EventLag, esdb::Error> {
    let options = ReadOptions::embed(Embed::None);
    let mut lag = EventLag {
        records: 0,
        replicated: 0,
        at_least: false,
    };
    loop {
        let page = primary
            .read_all_forward(from, LAG_PAGE_SIZE, &options)
            .await?;
        lag.records += page.entries.len() as u64;
        lag.replicated += page
            .entries
            .iter()
            .filter(|entry| replicated(filter, entry.stream()))
            .count() as u64;
        match page.next {
            Some(next) if !page.is_end && next > from => {
                if lag.records >= cap {
                    lag.at_least = true;
                    return Ok(lag);
                }
                from = next;
            }
            _ => return Ok(lag),
        }
    }
}

/// Whether a record of `stream` is replicated: a user stream, or the metastream of one, that the
/// filters replicate.
fn replicated(filter: &ReplicationConfig, stream: &str) -> bool {
    let user = match stream.strip_prefix("$$") {
        Some(of) if !of.is_empty() && !of.starts_with('$') => of,
        Some(_) => return false,
        None if stream.starts_with('$') => return false,
        None => stream,
    };
    filter.replicates(user)
}

/// The timestamp of the last record before `from` (`$all` backward from `from`, count 1: a forward
/// page's resume position lies right after the last record of that page, contract §3.4).
pub(crate) async fn last_timestamp_before(
    primary: &Client,
    from: Position,
) -> Result<Option<String>, esdb::Error> {
    let one = PageSize::new(1).expect("1 is a valid page size");
    let page = primary
        .read_all_backward(
            AllFrom::Position(from),
            one,
            &ReadOptions::embed(Embed::None),
        )
        .await?;
    Ok(page.entries.first().and_then(updated_of).map(str::to_owned))
}

/// Reads the last record of [`CONTROL_STREAM`] on the secondary.
async fn secondary_role(secondary: &Client) -> SecondaryStatus {
    let mut status = SecondaryStatus {
        url: secondary.endpoint(),
        reachable: None,
        role: "unknown".to_owned(),
        control: None,
        error: None,
    };
    let one = PageSize::new(1).expect("1 is a valid page size");
    let options = ReadOptions {
        embed: Embed::Body,
        long_poll: None,
        resolve_link_tos: Some(false),
    };
    match secondary
        .read_stream_backward(CONTROL_STREAM, StreamFrom::Head, one, &options)
        .await
    {
        Ok(Lookup::Found(page)) => {
            status.reachable = Some(true);
            match page.entries.first() {
                Some(entry) => {
                    let (role, control) = control_record(entry);
                    status.role = role;
                    status.control = Some(control);
                }
                None => status.role = ROLE_NO_CONTROL_RECORD.to_owned(),
            }
        }
        Ok(Lookup::NotFound) => {
            status.reachable = Some(true);
            status.role = ROLE_NO_CONTROL_RECORD.to_owned();
        }
        Ok(Lookup::Deleted) => {
            status.reachable = Some(true);
            status.error = Some(format!(
                "the secondary's {CONTROL_STREAM} stream is hard-deleted; its epochs are lost, \
                 so do not resume replication or promote before finding out who deleted it"
            ));
        }
        Err(e) => {
            status.reachable = Some(!matches!(e.kind(), "connect" | "timeout" | "transport"));
            status.error = Some(e.to_string());
        }
    }
    status
}

/// The role and summary of a control record: its data's `role` string if any; otherwise
/// `promoted` for an event type that mentions promotion, else `secondary`.
fn control_record(entry: &Entry) -> (String, ControlRecord) {
    let data: Option<Value> = entry
        .as_event()
        .and_then(|event| event.data.as_ref())
        .and_then(|data| serde_json::from_slice(data).ok());
    let event_type = match entry {
        Entry::Event(event) => event.event_type.clone(),
        Entry::Summary(summary) => summary.event_type.clone().unwrap_or_default(),
    };
    let role = data
        .as_ref()
        .and_then(|d| d.get("role"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            if event_type.to_ascii_lowercase().contains("promot") {
                "promoted".to_owned()
            } else {
                "secondary".to_owned()
            }
        });
    let epoch = data
        .as_ref()
        .and_then(|d| d.get("epoch"))
        .and_then(Value::as_u64)
        .map(Epoch::new);
    (
        role,
        ControlRecord {
            number: entry.revision(),
            event_type,
            epoch,
            recorded_at: updated_of(entry).map(str::to_owned),
        },
    )
}

/// Parses the server's timestamp (`yyyy-MM-ddTHH:mm:ss[.fraction](Z|±hh:mm)`, contract §2.4) into
/// seconds since the Unix epoch. `None` for anything else: the format varies between versions, so
/// an unparsable value makes the lag in seconds unknown rather than wrong.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    let text = text.trim();
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: i64 = date_parts.next()?.parse().ok()?;
    let day: i64 = date_parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Split the zone designator off the time.
    let (time, offset_seconds) = if let Some(time) = rest.strip_suffix(['Z', 'z']) {
        (time, 0i64)
    } else if let Some(at) = rest.rfind(['+', '-']) {
        let (time, zone) = rest.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        (time, sign * (h * 3600 + m * 60))
    } else {
        // No zone: the server writes UTC.
        (rest, 0)
    };
    let mut time_parts = time.splitn(3, ':');
    let hour: i64 = time_parts.next()?.parse().ok()?;
    let minute: i64 = time_parts.next()?.parse().ok()?;
    let seconds: f64 = time_parts.next()?.parse().ok()?;
    if !(0..24).contains(&hour) || !(0..60).contains(&minute) || !(0.0..61.0).contains(&seconds) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), proleptic Gregorian calendar.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let whole = days * 86_400 + hour * 3600 + minute * 60 - offset_seconds;
    Some(whole as f64 + seconds)
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Primary.
        write!(f, "primary     {}", self.primary.url)?;
        match (&self.primary.head, &self.primary.error) {
            (Some(head), _) => {
                write!(f, "  head {head}")?;
                if let Some(at) = &self.primary.newest_event_at {
                    write!(f, ", newest event at {at}")?;
                }
                writeln!(f)?;
            }
            (None, Some(error)) => writeln!(f, "  UNAVAILABLE: {error}")?,
            (None, None) => writeln!(f, "  head unknown")?,
        }
        // Checkpoint.
        match &self.checkpoint {
            CheckpointStatus::Missing { path } => writeln!(
                f,
                "checkpoint  {}  none (replication has not started here)",
                path.display()
            )?,
            CheckpointStatus::Present {
                path,
                position,
                primary_id,
                epoch,
            } => writeln!(
                f,
                "checkpoint  {}  {position}, epoch {epoch}, primary id {primary_id}",
                path.display()
            )?,
            CheckpointStatus::Unreadable { path, error } => {
                writeln!(f, "checkpoint  {}  UNREADABLE: {error}", path.display())?
            }
        }
        // Lag.
        let mut parts = Vec::new();
        if let Some(events) = self.lag.events {
            parts.push(format!(
                "{}{} records ({} replicated)",
                if events.at_least { "≥ " } else { "" },
                events.records,
                events.replicated
            ));
        }
        if let Some(bytes) = self.lag.bytes {
            parts.push(format!("{bytes} bytes"));
        }
        if let Some(seconds) = self.lag.seconds {
            parts.push(format!("{seconds:.3} s"));
        }
        if parts.is_empty() {
            writeln!(f, "lag         unknown")?;
        } else {
            writeln!(f, "lag         {}", parts.join(", "))?;
        }
        for note in &self.lag.notes {
            writeln!(f, "            note: {note}")?;
        }
        // Secondary.
        write!(
            f,
            "secondary   {}  role: {}",
            self.secondary.url, self.secondary.role
        )?;
        if let Some(epoch) = self.secondary.control.as_ref().and_then(|c| c.epoch) {
            write!(f, ", epoch {epoch}")?;
        }
        writeln!(f)?;
        if let Some(error) = &self.secondary.error {
            let what = if self.secondary.reachable == Some(false) {
                "UNREACHABLE"
            } else {
                "error"
            };
            writeln!(f, "            {what}: {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_in_the_server_formats() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_timestamp("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        let t = parse_timestamp("2013-07-01T11:43:21.129594Z").unwrap();
        assert!((t - 1_372_679_001.129_594).abs() < 1e-6, "{t}");
        assert_eq!(
            parse_timestamp("2013-07-01T13:43:21+02:00"),
            parse_timestamp("2013-07-01T11:43:21Z")
        );
        assert_eq!(
            parse_timestamp("2013-07-01T06:43:21-05:00"),
            parse_timestamp("2013-07-01T11:43:21Z")
        );
        assert!(parse_timestamp("0001-01-01T00:00:00Z").is_some());
        for bad in [
            "",
            "yesterday",
            "2013-13-01T00:00:00Z",
            "2013-07-01",
            "2013-07-01T25:00:00Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls_are_printed_without_credentials() {
        let url = reqwest::Url::parse("https://ops:changeit@es1.example:2113/").unwrap();
        assert_eq!(public_url(&url), "https://es1.example:2113/");
    }

    #[test]
    fn checkpoint_is_read_without_touching_a_leftover_tmp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        assert!(matches!(
            read_checkpoint(&path),
            CheckpointStatus::Missing { .. }
        ));
        let (mut store, _) = CheckpointStore::open(&path).unwrap();
        let position = Position::new(4096, 0).unwrap();
        store
            .store(&crate::checkpoint::Checkpoint {
                position,
                primary: crate::checkpoint::PrimaryId("db-1".into()),
                epoch: Epoch::new(2),
            })
            .unwrap();
        // A running replicator's temporary file, between its write and its rename.
        let tmp = dir.path().join("checkpoint.tmp");
        std::fs::write(&tmp, b"in flight").unwrap();
        match read_checkpoint(&path) {
            CheckpointStatus::Present {
                position: p,
                primary_id,
                epoch,
                ..
            } => {
                assert_eq!(p, position);
                assert_eq!(primary_id, "db-1");
                assert_eq!(epoch, Epoch::new(2));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            tmp.exists(),
            "status must not delete the replicator's tmp file"
        );

        std::fs::write(&path, b"garbage").unwrap();
        match read_checkpoint(&path) {
            CheckpointStatus::Unreadable { error, .. } => {
                assert!(error.contains("corrupt"), "{error}");
                assert!(error.contains(&path.display().to_string()), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replicated_records_follow_the_filters() {
        let filter = ReplicationConfig {
            exclude: vec!["tmp-*".into()],
            ..ReplicationConfig::default()
        };
        assert!(replicated(&filter, "order-1"));
        assert!(replicated(&filter, "$$order-1"));
        assert!(!replicated(&filter, "tmp-1"));
        assert!(!replicated(&filter, "$$tmp-1"));
        assert!(!replicated(&filter, "$settings"));
        assert!(!replicated(&filter, "$$$settings"));
    }
}
