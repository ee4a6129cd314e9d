//! One writer per secondary: the lease in the secondary's `$standby-lease` stream.
//!
//! Two replicators writing one secondary replay each other's deletes over newer data (a barrier
//! page is only safe with a single writer). The checkpoint lock ([`crate::checkpoint::Lock`])
//! keeps two processes on one checkpoint file apart, but cannot see a replicator on another host
//! or one started from a copy of the checkpoint in another directory. So `run` also holds a lease
//! on the secondary itself, which every replicator of that secondary sees:
//!
//! * a record names its holder (an id per process), host, pid and checkpoint path, when it was
//!   taken and renewed, when it expires, and the period;
//! * every write carries the exact expected version of the head it follows, so of two writers at
//!   most one wins; each record and its event id are built once per write, so a retry after a lost
//!   response is answered as already written by the server's idempotency (contract §5.5);
//! * a starting replicator takes a free or released lease at once, and one whose holder held this
//!   very checkpoint lock before (it is dead: we hold its lock). Otherwise it watches the head: a
//!   renewal means the holder runs, and it refuses; a head unchanged for a whole period means the
//!   holder stopped writing, and it takes over ([`decide`], a pure function);
//! * the holder renews every third of the period and stops writing when it could not renew for
//!   the period minus a margin: before any successor's wait can end;
//! * a graceful stop writes a `released` record, so a successor starts at once.
//!
//! `run --takeover` takes the lease without waiting, for an operator who knows the holder is gone.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::control::record::{parse_rfc3339, rfc3339};
use crate::esdb::{self, Client, EventData, Lookup};
use crate::position::{ExpectedVersion, StreamRevision};
use crate::retry::{retry, Gave};

/// The lease stream on the secondary (a system stream: setup grants it to the replication user).
pub const LEASE_STREAM: &str = "$standby-lease";
/// Event type of a lease record.
pub const LEASE_EVENT_TYPE: &str = "standby-lease";
/// `$maxCount` of [`LEASE_STREAM`]: only the head matters; the rest is recent history.
pub const RECORDS_KEPT: u64 = 100;

/// One record of [`LEASE_STREAM`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The holder's id, new for every `run`; also written into the checkpoint lock file.
    pub holder: Uuid,
    pub host: String,
    pub pid: u32,
    /// The holder's checkpoint file.
    pub checkpoint: String,
    /// When the holder took the lease (UTC, RFC 3339, the holder's clock).
    pub acquired: String,
    /// When this record was written.
    pub renewed: String,
    /// `renewed` + the period: a successor may take over once this has passed by its clock and
    /// the head has not changed for half a period.
    pub expires: String,
    /// The holder's lease period.
    pub period_secs: u64,
    /// Written at a graceful stop: the lease is free.
    pub released: bool,
}

impl LeaseRecord {
    /// Whether its expiry has passed by this machine's clock (clocks differ: a successor also
    /// watches the record before it takes over; this is for reports).
    pub fn expired_by_wall_clock(&self) -> bool {
        crate::control::record::parse_rfc3339(&self.expires).is_some_and(|at| at < wall_secs())
    }
}

impl fmt::Display for LeaseRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "holder {} (pid {} on host {}, checkpoint {}), taken {}, renewed {}, expires {}",
            self.holder,
            self.pid,
            self.host,
            self.checkpoint,
            self.acquired,
            self.renewed,
            self.expires
        )?;
        if self.released {
            f.write_str(", released")?;
        }
        Ok(())
    }
}

/// The last record of [`LEASE_STREAM`] and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Its event number: the expected version of the next write.
    pub number: StreamRevision,
    pub event_id: Uuid,
    pub record: LeaseRecord,
}

/// Why the lease is not ours, or no longer.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Permanent: a live replicator holds the lease.
    #[error(
        "another replicator holds the lease on the secondary: {}. It renewed the lease while this one \
         watched, so it is running, and two replicators must never write one secondary. Stop it \
         first (it releases the lease when it stops), or, only if you know it is gone for good (its \
         host is down), start this one with `standby run --takeover`",
        holder_text(.holder)
    )]
    Held { holder: Option<Box<LeaseRecord>> },
    /// Permanent: the lease was taken from this running replicator.
    #[error(
        "the lease on the secondary was taken over by {}; this replicator stopped writing at once. \
         Another replicator now writes this secondary: if that is not intended, stop one of them \
         (never run both)",
        holder_text(.holder)
    )]
    Taken { holder: Option<Box<LeaseRecord>> },
    /// The lease could not be renewed in time: this run must stop, a restart may succeed.
    #[error(
        "the lease on the secondary could not be renewed for {period:?} (last error: {last}); the \
         secondary was unreachable, so this replicator stopped writing before the lease could \
         expire and a successor take over. Restart it when the secondary answers"
    )]
    Unrenewable { period: Duration, last: String },
    /// Permanent: the replication user may not use the lease stream.
    #[error(
        "the secondary refused the replication user on {LEASE_STREAM}: {0}. The lease needs read \
         and write rights on that stream: configure [secondary.admin] so that setup grants them, \
         or grant the replication user in the stream's $acl"
    )]
    Unauthorized(esdb::Error),
    /// Transient or permanent, as the client error.
    #[error("{LEASE_STREAM} on the secondary: {0}")]
    Client(esdb::Error),
    /// Permanent: someone else writes the stream.
    #[error(
        "the last record of {LEASE_STREAM} on the secondary (event {number}) is not a standby lease \
         record: {detail}. Someone else writes this stream; find out who, then delete the stream"
    )]
    Corrupt {
        number: StreamRevision,
        detail: String,
    },
    /// Permanent: the stream was hard-deleted.
    #[error(
        "{LEASE_STREAM} on the secondary is hard-deleted, so no replicator can hold the lease. Find \
         out who deleted it; replicate into a new secondary"
    )]
    Deleted,
}

fn holder_text(holder: &Option<Box<LeaseRecord>>) -> String {
    holder
        .as_ref()
        .map_or_else(|| "an unknown holder".to_owned(), |h| h.to_string())
}

impl LeaseError {
    pub fn is_transient(&self) -> bool {
        matches!(self, LeaseError::Client(e) if e.is_transient())
    }

    /// A write met another expected version: someone else wrote the stream.
    fn is_conflict(&self) -> bool {
        matches!(
            self,
            LeaseError::Client(esdb::Error::WrongExpectedVersion { .. })
        )
    }

    fn client(e: esdb::Error) -> LeaseError {
        match e {
            e if e.is_access_denied() => LeaseError::Unauthorized(e),
            e => LeaseError::Client(e),
        }
    }
}

impl crate::retry::Transient for LeaseError {
    fn is_transient(&self) -> bool {
        LeaseError::is_transient(self)
    }
}

/// Why a lease may be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// No lease was ever written.
    Free,
    /// The holder released it at a graceful stop.
    Released,
    /// The holder held this checkpoint's lock before us, so it has exited.
    DeadHolder,
    /// The holder has not renewed for a whole period.
    Expired,
    /// `run --takeover`.
    Takeover,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Free => "free",
            Why::Released => "released",
            Why::DeadHolder => "dead_holder",
            Why::Expired => "expired",
            Why::Takeover => "takeover",
        }
    }
}

/// What [`decide`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Take(Why),
    /// Watch the head a little longer.
    Wait,
    /// The holder renewed: it is alive.
    Refuse,
}

/// What a starting replicator has seen of [`LEASE_STREAM`].
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The head when watching began.
    pub first: Option<&'a Head>,
    /// The head now.
    pub now: Option<&'a Head>,
    /// How long the head has been watched, on this process's monotonic clock.
    pub watched: Duration,
    /// This machine's wall clock, seconds since the Unix epoch.
    pub wall_secs: u64,
}

/// Whether to take the lease, wait, or refuse.
///
/// A holder stops writing at most `period − period/6` after it sent its last successful renewal,
/// and that renewal committed before the head was first seen; so a head unchanged for a whole
/// `period` since then proves the holder stopped. The recorded expiry speeds this up when the
/// holder is long gone: once it has passed by our clock and the head has not changed for one and a
/// half renewal intervals (half a period), the lease is taken too; the holder's own deadline
/// passed before its expiry unless the clocks disagree by more than a sixth of the period. The
/// longer of the holder's and our period is used.
pub fn decide(seen: &Seen<'_>, dead: &[Uuid], period: Duration, takeover: bool) -> Decision {
    if takeover {
        return Decision::Take(Why::Takeover);
    }
    let Some(head) = seen.now else {
        return Decision::Take(Why::Free);
    };
    if head.record.released {
        return Decision::Take(Why::Released);
    }
    if dead.contains(&head.record.holder) {
        return Decision::Take(Why::DeadHolder);
    }
    if seen.first.map(|f| (f.number, f.event_id)) != Some((head.number, head.event_id)) {
        return Decision::Refuse;
    }
    let period = period.max(Duration::from_secs(head.record.period_secs));
    if seen.watched >= period {
        return Decision::Take(Why::Expired);
    }
    let expired = parse_rfc3339(&head.record.expires).is_some_and(|at| at < seen.wall_secs);
    if expired && seen.watched >= period / 2 {
        return Decision::Take(Why::Expired);
    }
    Decision::Wait
}

/// What a starting replicator claims.
#[derive(Debug, Clone)]
pub struct Claim {
    /// This process's holder id (the one in its checkpoint lock file).
    pub holder: Uuid,
    pub checkpoint: PathBuf,
    pub period: Duration,
    /// Holder ids of the processes that held the checkpoint lock before this one (all exited).
    pub dead: Vec<Uuid>,
    /// `run --takeover`.
    pub takeover: bool,
}

/// A lease this process holds.
#[derive(Debug)]
pub struct Lease {
    client: Client,
    /// The last record written.
    record: LeaseRecord,
    /// Its event number.
    number: StreamRevision,
    period: Duration,
    /// When the last successful write was sent.
    sent: Instant,
}

/// Reads the head of [`LEASE_STREAM`].
///
/// # Errors
/// Client errors, [`LeaseError::Corrupt`], [`LeaseError::Deleted`].
pub async fn read_head(client: &Client) -> Result<Option<Head>, LeaseError> {
    let entry = match client
        .read_last_entry(LEASE_STREAM)
        .await
        .map_err(LeaseError::client)?
    {
        Lookup::Found(Some(entry)) => entry,
        Lookup::Found(None) | Lookup::NotFound => return Ok(None),
        Lookup::Deleted => return Err(LeaseError::Deleted),
    };
    let number = entry.revision();
    let corrupt = |detail: String| LeaseError::Corrupt { number, detail };
    let event = entry
        .as_event()
        .ok_or_else(|| corrupt("it carries no event".into()))?;
    let data = event
        .data
        .as_ref()
        .ok_or_else(|| corrupt("it has no JSON data".into()))?;
    let record = serde_json::from_slice(data).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some(Head {
        number,
        event_id: event.event_id,
        record,
    }))
}

/// Takes the lease for `claim` (see the module documentation), waiting while a holder may still
/// be alive. `Ok(None)`: `cancel` fired first.
///
/// # Errors
/// [`LeaseError::Held`] when a live replicator holds it or wins a race for it; permanent client
/// errors, [`LeaseError::Unauthorized`] among them. Transient errors are retried.
pub async fn acquire(
    client: &Client,
    claim: &Claim,
    cancel: &CancellationToken,
) -> Result<Option<Lease>, LeaseError> {
    match acquire_or_give_up(client, claim, cancel).await {
        Ok(lease) => Ok(Some(lease)),
        Err(Gave::Cancelled) => Ok(None),
        Err(Gave::Up(e)) => Err(e),
    }
}

async fn acquire_or_give_up(
    client: &Client,
    claim: &Claim,
    cancel: &CancellationToken,
) -> Result<Lease, Gave<LeaseError>> {
    let read = || retry("read the lease", cancel, |_| {}, || read_head(client));
    let first = read().await?;
    let started = Instant::now();
    let mut now = first.clone();
    let mut told = false;
    loop {
        let seen = Seen {
            first: first.as_ref(),
            now: now.as_ref(),
            watched: started.elapsed(),
            wall_secs: wall_secs(),
        };
        match decide(&seen, &claim.dead, claim.period, claim.takeover) {
            Decision::Take(why) => return take(client, claim, now.as_ref(), why, cancel).await,
            Decision::Refuse => {
                return Err(Gave::Up(LeaseError::Held {
                    holder: now.map(|h| Box::new(h.record)),
                }))
            }
            Decision::Wait => {}
        }
        if !told {
            told = true;
            if let Some(head) = &now {
                tracing::warn!(holder = %head.record, "another replicator holds the lease on the secondary; watching it: this one refuses if it is renewed, and takes over if it expires");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(Gave::Cancelled),
            _ = tokio::time::sleep(claim.period / 6) => {}
        }
        now = read().await?;
    }
}

/// Writes this process's first record after `head`.
async fn take(
    client: &Client,
    claim: &Claim,
    head: Option<&Head>,
    why: Why,
    cancel: &CancellationToken,
) -> Result<Lease, Gave<LeaseError>> {
    let now = wall_secs();
    let period_secs = claim.period.as_secs();
    let record = LeaseRecord {
        holder: claim.holder,
        host: host(),
        pid: std::process::id(),
        checkpoint: claim.checkpoint.display().to_string(),
        acquired: rfc3339(now),
        renewed: rfc3339(now),
        expires: rfc3339(now + period_secs),
        period_secs,
        released: false,
    };
    if why == Why::Takeover {
        if let Some(h) = head.filter(|h| !h.record.released) {
            tracing::warn!(previous = %h.record, "taking the lease over without waiting (--takeover); if that replicator still runs, it stops at its next renewal");
        }
    }
    let sent = Instant::now();
    match write(client, head.map(|h| h.number), &record, cancel, |_| {}).await {
        Ok(number) => {
            tracing::info!(holder = %claim.holder, how = why.as_str(), previous = head.map(|h| h.record.holder.to_string()), "lease acquired");
            Ok(Lease {
                client: client.clone(),
                record,
                number,
                period: claim.period,
                sent,
            })
        }
        Err(Gave::Up(e)) if e.is_conflict() => {
            let winner = read_head(client).await.ok().flatten();
            Err(Gave::Up(LeaseError::Held {
                holder: winner.map(|h| Box::new(h.record)),
            }))
        }
        Err(e) => Err(e),
    }
}

/// Appends `record` with the exact expected version `after` (`None`: the stream must not exist),
/// retrying transient errors with the same event, and returns its number.
async fn write(
    client: &Client,
    after: Option<StreamRevision>,
    record: &LeaseRecord,
    cancel: &CancellationToken,
    on_retry: impl FnMut(&LeaseError),
) -> Result<StreamRevision, Gave<LeaseError>> {
    let data = serde_json::to_vec(record).expect("a lease record serialises");
    let event = EventData::json(Uuid::new_v4(), LEASE_EVENT_TYPE, data);
    let expected = after.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    let event = &event;
    let appended = retry("write the lease", cancel, on_retry, || async move {
        client
            .append_events(LEASE_STREAM, std::slice::from_ref(event), expected)
            .await
            .map_err(LeaseError::client)
    })
    .await?;
    Ok(appended.first.unwrap_or_else(|| {
        after
            .and_then(StreamRevision::next)
            .unwrap_or(StreamRevision::START)
    }))
}

impl Lease {
    /// The record last written.
    pub fn record(&self) -> &LeaseRecord {
        &self.record
    }

    /// After this instant no write of this process is covered by the lease.
    fn deadline(&self) -> Instant {
        self.sent + self.period - self.period / 6
    }

    /// The next record of this holder.
    fn next(&self, released: bool) -> LeaseRecord {
        let now = wall_secs();
        LeaseRecord {
            renewed: rfc3339(now),
            expires: rfc3339(if released {
                now
            } else {
                now + self.period.as_secs()
            }),
            released,
            ..self.record.clone()
        }
    }

    /// Renews the lease every third of the period until `stop` fires.
    ///
    /// # Errors
    /// Returns at once, and the caller must stop writing at once, when the lease was taken
    /// ([`LeaseError::Taken`]) or could not be renewed before the deadline
    /// ([`LeaseError::Unrenewable`]); permanent client errors.
    ///
    /// # Cancel safety
    /// A renewal in flight when `stop` fires is dropped; [`Lease::release`] copes with it.
    pub async fn keep(&mut self, stop: &CancellationToken) -> Result<(), LeaseError> {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(self.sent + self.period / 3) => {}
            }
            let record = self.next(false);
            let sent = Instant::now();
            let mut last = None;
            let outcome = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(self.deadline()) => None,
                r = write(&self.client, Some(self.number), &record, stop, |e| last = Some(e.to_string())) => Some(r),
            };
            match outcome {
                Some(Ok(number)) => {
                    self.number = number;
                    self.record = record;
                    self.sent = sent;
                }
                Some(Err(Gave::Cancelled)) => return Ok(()),
                Some(Err(Gave::Up(e))) if e.is_conflict() => {
                    let holder = read_head(&self.client).await.ok().flatten();
                    return Err(LeaseError::Taken {
                        holder: holder.map(|h| Box::new(h.record)),
                    });
                }
                Some(Err(Gave::Up(e))) => return Err(e),
                None => {
                    return Err(LeaseError::Unrenewable {
                        period: self.period,
                        last: last.unwrap_or_else(|| "no answer".into()),
                    })
                }
            }
        }
    }

    /// Writes a `released` record, so a successor takes over at once. Gives up at the lease's
    /// deadline (the successor then waits for the lease to expire).
    ///
    /// # Errors
    /// [`LeaseError::Taken`] when someone else holds the lease now; client errors.
    pub async fn release(mut self) -> Result<(), LeaseError> {
        let record = self.next(true);
        let cancel = CancellationToken::new();
        // A renewal dropped by `keep`'s stop may have landed after our last known record.
        for _ in 0..2 {
            let outcome = tokio::select! {
                _ = tokio::time::sleep_until(self.deadline()) => None,
                r = write(&self.client, Some(self.number), &record, &cancel, |_| {}) => Some(r),
            };
            match outcome {
                Some(Ok(_)) => {
                    tracing::info!(holder = %self.record.holder, "lease released");
                    return Ok(());
                }
                Some(Err(Gave::Up(e))) if e.is_conflict() => match read_head(&self.client).await {
                    Ok(Some(h)) if h.record.holder == self.record.holder => self.number = h.number,
                    Ok(h) => {
                        return Err(LeaseError::Taken {
                            holder: h.map(|h| Box::new(h.record)),
                        })
                    }
                    Err(e) => return Err(e),
                },
                Some(Err(Gave::Up(e))) => return Err(e),
                Some(Err(Gave::Cancelled)) | None => break,
            }
        }
        Err(LeaseError::Unrenewable {
            period: self.period,
            last: "the release was not answered in time".into(),
        })
    }
}

fn wall_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This machine's name, for the record: `/proc/sys/kernel/hostname`, else `$HOSTNAME`.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(12);
    const NOW: u64 = 1_800_000_000;

    fn head(number: u64, holder: Uuid, renewed: u64, released: bool) -> Head {
        Head {
            number: StreamRevision::new(number).unwrap(),
            event_id: Uuid::new_v4(),
            record: LeaseRecord {
                holder,
                host: "h".into(),
                pid: 7,
                checkpoint: "/var/lib/standby/checkpoint".into(),
                acquired: rfc3339(renewed),
                renewed: rfc3339(renewed),
                expires: rfc3339(renewed + PERIOD.as_secs()),
                period_secs: PERIOD.as_secs(),
                released,
            },
        }
    }

    fn seen<'a>(first: Option<&'a Head>, now: Option<&'a Head>, watched: u64) -> Seen<'a> {
        Seen {
            first,
            now,
            watched: Duration::from_secs(watched),
            wall_secs: NOW,
        }
    }

    #[test]
    fn a_free_released_or_dead_holders_lease_is_taken_at_once() {
        let other = Uuid::new_v4();
        assert_eq!(
            decide(&seen(None, None, 0), &[], PERIOD, false),
            Decision::Take(Why::Free)
        );
        let released = head(4, other, NOW, true);
        let s = seen(Some(&released), Some(&released), 0);
        assert_eq!(
            decide(&s, &[], PERIOD, false),
            Decision::Take(Why::Released)
        );
        let live = head(4, other, NOW, false);
        let s = seen(Some(&live), Some(&live), 0);
        assert_eq!(
            decide(&s, &[other], PERIOD, false),
            Decision::Take(Why::DeadHolder)
        );
        assert_eq!(decide(&s, &[], PERIOD, false), Decision::Wait);
        assert_eq!(decide(&s, &[], PERIOD, true), Decision::Take(Why::Takeover));
    }

    #[test]
    fn a_renewal_while_watching_refuses_and_a_silent_period_takes_over() {
        let holder = Uuid::new_v4();
        let first = head(4, holder, NOW, false);
        let renewed = head(5, holder, NOW + 4, false);
        for watched in [1, 5, 11] {
            let s = seen(Some(&first), Some(&renewed), watched);
            assert_eq!(
                decide(&s, &[], PERIOD, false),
                Decision::Refuse,
                "{watched}"
            );
        }
        // Someone took a lease that did not exist when watching began.
        assert_eq!(
            decide(&seen(None, Some(&renewed), 1), &[], PERIOD, false),
            Decision::Refuse
        );
        for watched in [0, 6, 11] {
            let s = seen(Some(&first), Some(&first), watched);
            assert_eq!(decide(&s, &[], PERIOD, false), Decision::Wait, "{watched}");
        }
        let s = seen(Some(&first), Some(&first), 12);
        assert_eq!(decide(&s, &[], PERIOD, false), Decision::Take(Why::Expired));
        // A released record that replaced the watched one is free, not a renewal.
        let released = head(5, holder, NOW, true);
        let s = seen(Some(&first), Some(&released), 1);
        assert_eq!(
            decide(&s, &[], PERIOD, false),
            Decision::Take(Why::Released)
        );
    }

    #[test]
    fn a_past_expiry_shortens_the_wait_to_half_a_period_but_no_further() {
        let holder = Uuid::new_v4();
        let stale = head(4, holder, NOW - 3600, false);
        for (watched, want) in [
            (0, Decision::Wait),
            (5, Decision::Wait),
            (6, Decision::Take(Why::Expired)),
        ] {
            let s = seen(Some(&stale), Some(&stale), watched);
            assert_eq!(decide(&s, &[], PERIOD, false), want, "{watched}");
        }
        // Not yet expired by the wall clock: the whole period.
        let fresh = head(4, holder, NOW - 1, false);
        let s = seen(Some(&fresh), Some(&fresh), 6);
        assert_eq!(decide(&s, &[], PERIOD, false), Decision::Wait);
    }

    #[test]
    fn the_longer_of_the_two_periods_is_waited_for() {
        let holder = Uuid::new_v4();
        let mut long = head(4, holder, NOW, false);
        long.record.period_secs = 60;
        let s = seen(Some(&long), Some(&long), 30);
        assert_eq!(decide(&s, &[], PERIOD, false), Decision::Wait);
        let s = seen(Some(&long), Some(&long), 60);
        assert_eq!(decide(&s, &[], PERIOD, false), Decision::Take(Why::Expired));
    }

    /// The acquirer's loop with paused time: a holder that renews is refused within a renewal
    /// interval; one that stops is taken over after a period of watching.
    #[tokio::test(start_paused = true)]
    async fn watching_with_paused_time() {
        let holder = Uuid::new_v4();
        let first = head(4, holder, NOW, false);
        let start = Instant::now();
        let mut now = first.clone();
        let decision = loop {
            // The holder renews every period/3, so a poll every period/6 sees a change.
            if start.elapsed() >= PERIOD / 3 {
                now = head(5, holder, NOW + 4, false);
            }
            let s = Seen {
                first: Some(&first),
                now: Some(&now),
                watched: start.elapsed(),
                wall_secs: NOW,
            };
            match decide(&s, &[], PERIOD, false) {
                Decision::Wait => tokio::time::sleep(PERIOD / 6).await,
                d => break d,
            }
        };
        assert_eq!(decision, Decision::Refuse);
        assert!(start.elapsed() <= PERIOD / 2, "{:?}", start.elapsed());

        let start = Instant::now();
        let decision = loop {
            let s = Seen {
                first: Some(&first),
                now: Some(&first),
                watched: start.elapsed(),
                wall_secs: NOW,
            };
            match decide(&s, &[], PERIOD, false) {
                Decision::Wait => tokio::time::sleep(PERIOD / 6).await,
                d => break d,
            }
        };
        assert_eq!(decision, Decision::Take(Why::Expired));
        assert!(start.elapsed() >= PERIOD && start.elapsed() < PERIOD + PERIOD / 6);
    }
}
