//! The replication pipeline: reader → bounded channel → writer → `watch<Position>` →
//! checkpointer.
//!
//! ```text
//!  primary $all ──► reader ──mpsc(CHANNEL_PAGES)──► writer ──watch(applied)──► checkpointer ──► file
//!                   (plan)                         (secondary)   ▲                    │
//!                                                                └──watch(persisted)──┘  (barrier pages)
//! ```
//!
//! Start-up refuses what would replicate into the wrong place before it writes anything: a
//! promoted secondary (whether or not the primary answers), a corrupt checkpoint, and every way a
//! checkpoint can disagree with the two clusters (see [`startup`]). It locks the checkpoint and
//! takes the lease on the secondary ([`crate::lease`]) before the pipeline writes; the lease is
//! renewed beside the stages, and losing it aborts their work at once. Shutdown (SIGINT/SIGTERM)
//! stops the reader, lets the writer finish its page, and flushes the checkpoint, within
//! [`SHUTDOWN_DEADLINE`].

pub mod lanes;
pub mod plan;

mod checkpointer;
mod reader;
mod startup;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use checkpointer::{CHECKPOINT_EVENT_TYPE, CHECKPOINT_STREAM, COPIES_KEPT};
pub use writer::{Divergence, STREAM_CONCURRENCY};

use crate::checkpoint::{self, Checkpoint, CheckpointStore, PrimaryId};
use crate::config::Config;
use crate::esdb::{self, Client, Embed, Entry, Lookup, PageSize, ReadOptions, StreamFrom};
use crate::offsets::StreamOffsets;
use crate::position::{Epoch, Position};
use crate::retry::{retry, Gave};

/// Pages in flight between the reader and the writer: enough to overlap reading with writing,
/// few enough to bound memory to a handful of pages.
pub const CHANNEL_PAGES: usize = 4;
/// How long a graceful stop may take before in-flight work is abandoned (it is replayed safely
/// after the restart).
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// The epoch a replicator runs under until promotion exists.
pub const INITIAL_EPOCH: Epoch = Epoch::new(1);

/// The low-water mark of the pages the writer has applied. `flush`: the writer waits for this
/// position to be durable, locally and in the copy on the secondary, before it applies a delete
/// (or the pages after one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Applied {
    pub position: Position,
    pub flush: bool,
}

/// One planned page on its way to the writer.
pub(crate) struct Batch {
    pub plan: plan::Plan,
    /// The page's resume position (its forward `previous` link, §3.6).
    pub end: Position,
    /// Source records in the page, replicated or not.
    pub records: usize,
    /// The page reached the head of `$all` (live, not catching up).
    pub at_head: bool,
    /// Events of the page the HTTP API cannot copy exactly; recorded before the page is applied.
    pub losses: Vec<crate::fidelity::LossRecord>,
    /// Timestamp of the page's last record, as the server formats it.
    pub updated: Option<String>,
}

/// Why a stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("primary: {0}")]
    Primary(esdb::Error),
    #[error("secondary: {0}")]
    Secondary(esdb::Error),
    #[error("{0}")]
    Divergence(Box<Divergence>),
    #[error("{0}")]
    Checkpoint(checkpoint::Error),
    #[error("{0}")]
    Unexpected(String),
    #[error("the secondary was promoted: {0}")]
    Promoted(Box<crate::control::EpochRecord>),
    #[error("{0}")]
    Lease(crate::lease::LeaseError),
    #[error("cancelled")]
    Cancelled,
}

/// Why `run` stopped with an error; each maps to a documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad configuration (exit 2).
    #[error("{0}")]
    Config(String),
    /// Refused to start or to go on: corrupt or foreign checkpoint, missing checkpoint with state
    /// on the secondary, permission refused (exit 3).
    #[error("{0}")]
    Refused(String),
    /// The secondary was promoted: the expected end of a standby's replicator (exit 3).
    #[error("{0}")]
    Promoted(String),
    /// The secondary differs from the primary (exit 4).
    #[error("{0}")]
    Divergence(Box<Divergence>),
    /// Anything else (exit 1).
    #[error("{0}")]
    Internal(String),
}

impl RunError {
    /// The process exit code for this error (see `docs/replication.md`).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_) => crate::exit::USAGE,
            RunError::Refused(_) | RunError::Promoted(_) => crate::exit::REFUSED,
            RunError::Divergence(_) => crate::exit::DIVERGENCE,
            RunError::Internal(_) => crate::exit::INTERNAL,
        }
    }
}

impl From<StageError> for RunError {
    fn from(e: StageError) -> Self {
        match e {
            StageError::Divergence(d) => RunError::Divergence(d),
            StageError::Checkpoint(e) => RunError::Refused(e.to_string()),
            StageError::Secondary(e)
                if e.is_access_denied() || matches!(e, esdb::Error::StreamDeleted { .. }) =>
            {
                RunError::Refused(format!("the secondary refused a write: {e}"))
            }
            StageError::Primary(e) if e.is_access_denied() => {
                RunError::Refused(format!("the primary refused a read: {e}"))
            }
            StageError::Primary(e) => {
                RunError::Internal(format!("reading the primary failed permanently: {e}"))
            }
            StageError::Secondary(e) => {
                RunError::Internal(format!("writing the secondary failed permanently: {e}"))
            }
            StageError::Unexpected(m) => RunError::Internal(m),
            StageError::Promoted(record) => RunError::Promoted(promoted_message(&record)),
            // The secondary did not answer: a restart (exit 1) resumes once it does.
            StageError::Lease(e @ crate::lease::LeaseError::Unrenewable { .. }) => {
                RunError::Internal(e.to_string())
            }
            StageError::Lease(e) => RunError::Refused(e.to_string()),
            StageError::Cancelled => RunError::Internal("cancelled".into()),
        }
    }
}

/// Why `run` will not write to a promoted secondary.
pub fn promoted_message(record: &crate::control::EpochRecord) -> String {
    format!(
        "the secondary was promoted at epoch {} ({}): {record}. It is a primary now; `run` never \
         writes to it. To protect it again, replicate into a new, empty cluster (docs/failover.md)",
        record.epoch, record.at
    )
}

/// How long a replicator refused by the secondary waits for a promotion's epoch record before it
/// reports the refusal as such: longer than `promote` takes from revocation to epoch.
pub const PROMOTION_GRACE: Duration = Duration::from_secs(40);

/// How often a running replicator reads the control stream for a promotion.
pub const CONTROL_POLL: Duration = Duration::from_secs(2);

/// Counters and positions shared by the stages, read by progress reports and `status`.
#[derive(Debug, Default)]
pub struct Shared {
    events_written: AtomicU64,
    records_applied: AtomicU64,
    pages_applied: AtomicU64,
    retries: AtomicU64,
    fidelity_losses: AtomicU64,
    checkpoints_written: AtomicU64,
    state: Mutex<Positions>,
    /// Prometheus handles, updated by the stages.
    pub metrics: crate::metrics::Metrics,
    /// Liveness signals for `/health/ready`.
    pub health: crate::metrics::Health,
    /// Timestamp (as the server formats it) of the last record of the last applied page.
    applied_at: Mutex<Option<String>>,
}

/// Positions known to the pipeline.
#[derive(Debug, Default, Clone, Copy)]
pub struct Positions {
    /// The newest resume position the reader has seen at the primary.
    pub read: Option<Position>,
    /// Whether the last read reached the end of the primary's `$all`.
    pub at_head: bool,
    /// The end of the last page the secondary acknowledged in full.
    pub applied: Option<Position>,
    /// The last position persisted in the checkpoint file.
    pub persisted: Option<Position>,
}

/// A snapshot of [`Shared`].
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Events appended to the secondary by this process.
    pub events_written: u64,
    /// Source records covered by applied pages (replicated or skipped).
    pub records_applied: u64,
    pub pages_applied: u64,
    pub retries: u64,
    pub fidelity_losses: u64,
    pub checkpoints_written: u64,
    pub positions: Positions,
}

impl Progress {
    /// Caught up: the reader is at the head and the writer applied everything it read.
    pub fn caught_up(&self) -> bool {
        self.positions.at_head
            && self.positions.read.is_some()
            && self.positions.applied >= self.positions.read
    }
}

impl Shared {
    pub fn snapshot(&self) -> Progress {
        Progress {
            events_written: self.events_written.load(AtomicOrdering::Relaxed),
            records_applied: self.records_applied.load(AtomicOrdering::Relaxed),
            pages_applied: self.pages_applied.load(AtomicOrdering::Relaxed),
            retries: self.retries.load(AtomicOrdering::Relaxed),
            fidelity_losses: self.fidelity_losses.load(AtomicOrdering::Relaxed),
            checkpoints_written: self.checkpoints_written.load(AtomicOrdering::Relaxed),
            positions: *self.state.lock().expect("progress lock"),
        }
    }
    fn note_retry(&self, stage: &'static str, error: &esdb::Error) {
        self.retries.fetch_add(1, AtomicOrdering::Relaxed);
        let labels = crate::metrics::StageKind {
            stage,
            kind: error.kind(),
        };
        self.metrics.retries.get_or_create(&labels).inc();
        self.metrics.errors.get_or_create(&labels).inc();
    }
    /// A permanent error that stopped a stage.
    fn note_error(&self, stage: &'static str, error: &esdb::Error) {
        let labels = crate::metrics::StageKind {
            stage,
            kind: error.kind(),
        };
        self.metrics.errors.get_or_create(&labels).inc();
    }
    fn note_events(&self, n: u64, bytes: u64, took: Duration) {
        self.events_written.fetch_add(n, AtomicOrdering::Relaxed);
        self.metrics.events_replicated.inc_by(n);
        self.metrics.bytes_replicated.inc_by(bytes);
        self.metrics.append_seconds.observe(took.as_secs_f64());
        self.health.secondary_ok();
    }
    /// The timestamp of the last record of the last applied page.
    pub fn applied_at(&self) -> Option<String> {
        self.applied_at.lock().expect("progress lock").clone()
    }
    fn note_fidelity_loss(&self) {
        self.fidelity_losses.fetch_add(1, AtomicOrdering::Relaxed);
    }
    fn note_applied(&self, page: &lanes::PageInfo) {
        self.health.progress();
        if page.updated.is_some() {
            *self.applied_at.lock().expect("progress lock") = page.updated.clone();
        }
        self.pages_applied.fetch_add(1, AtomicOrdering::Relaxed);
        self.records_applied
            .fetch_add(page.records as u64, AtomicOrdering::Relaxed);
        self.state.lock().expect("progress lock").applied = Some(page.end);
    }
    fn note_checkpoint(&self, position: Position, _took: Duration) {
        self.checkpoints_written
            .fetch_add(1, AtomicOrdering::Relaxed);
        self.health.checkpoint_written();
        self.state.lock().expect("progress lock").persisted = Some(position);
    }
    fn set_head(&self, read: Position, at_head: bool) {
        self.health.primary_ok();
        let mut s = self.state.lock().expect("progress lock");
        s.read = Some(read);
        s.at_head = at_head;
    }
}

/// The identity of the primary's database: the id of the first record of its `$all`, which no
/// later write changes (a restored or rebuilt primary has another one). Waits, cancellably, while
/// the primary is empty.
///
/// # Errors
/// Permanent client errors.
pub async fn primary_identity(
    primary: &Client,
    cancel: &CancellationToken,
    shared: &Shared,
) -> Result<Option<PrimaryId>, StageError> {
    loop {
        match retry(
            "identify the primary",
            cancel,
            |e| shared.note_retry("reader", e),
            || first_record_id(primary, Some(reader::LONG_POLL)),
        )
        .await
        {
            Ok(Some(id)) => return Ok(Some(id)),
            Ok(None) => tracing::info!("the primary's $all is empty; waiting for its first event"),
            Err(Gave::Cancelled) => return Ok(None),
            Err(Gave::Up(e)) => return Err(StageError::Primary(e)),
        }
    }
}

/// The id of the first record of the primary's `$all` (the identity of [`primary_identity`]),
/// `None` while `$all` is empty. One read; with `long_poll`, an empty `$all` is watched that
/// long for a first event.
///
/// # Errors
/// Client errors.
pub async fn first_record_id(
    primary: &Client,
    long_poll: Option<Duration>,
) -> Result<Option<PrimaryId>, esdb::Error> {
    let options = ReadOptions {
        embed: Embed::Rich,
        long_poll,
        resolve_link_tos: Some(false),
    };
    let page = primary
        .read_all_forward(
            Position::START,
            PageSize::new(1).expect("1 is valid"),
            &options,
        )
        .await?;
    Ok(page.entries.first().map(|entry| {
        PrimaryId(match entry {
            Entry::Event(e) => e.event_id.to_string(),
            Entry::Summary(s) => s.event_id.map_or_else(
                || format!("{}@{}", s.revision, s.stream),
                |id| id.to_string(),
            ),
        })
    }))
}

/// Reads the last checkpoint copy kept on the secondary, if any.
///
/// # Errors
/// Client errors; a copy that does not parse is reported as [`esdb::Error::Decode`].
pub async fn checkpoint_copy(secondary: &Client) -> Result<Option<Checkpoint>, esdb::Error> {
    let found = secondary
        .read_event_entry(CHECKPOINT_STREAM, StreamFrom::Head, Embed::Body)
        .await?;
    let Lookup::Found(entry) = found else {
        return Ok(None);
    };
    let Some(event) = entry.as_event() else {
        return Ok(None);
    };
    let data = event.data.clone().unwrap_or_default();
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|e| esdb::Error::Decode {
            method: reqwest::Method::GET,
            url: format!("/streams/{CHECKPOINT_STREAM}/head"),
            detail: format!("not a standby checkpoint copy: {e}"),
        })
}

/// Clients for both sides from the configuration.
///
/// # Errors
/// [`RunError::Config`] for unreadable password files, bad URLs or CA files.
pub fn clients(config: &Config) -> Result<(Client, Client), RunError> {
    let make = |side: &str, e: &crate::config::EndpointConfig| -> Result<Client, RunError> {
        let cfg = e
            .client_config()
            .map_err(|err| RunError::Config(format!("[{side}] {err}")))?;
        Client::connect(cfg).map_err(|err| RunError::Config(format!("[{side}] {err}")))
    };
    Ok((
        make("primary", &config.primary)?,
        make("secondary", &config.secondary)?,
    ))
}

/// Clients for commands that only read: the primary, and the secondary as `[secondary.admin]`
/// when configured (reading the secondary's `$all` needs `$admins`), else as the replication user.
///
/// # Errors
/// As [`clients`].
pub fn reading_clients(config: &Config) -> Result<(Client, Client), RunError> {
    let (primary, secondary) = clients(config)?;
    Ok((primary, admin_client(config)?.unwrap_or(secondary)))
}

/// The `[secondary.admin]` client, if configured.
///
/// # Errors
/// [`RunError::Config`] as [`clients`].
pub fn admin_client(config: &Config) -> Result<Option<Client>, RunError> {
    let Some(cfg) = config
        .secondary
        .admin_client_config()
        .map_err(|e| RunError::Config(format!("[secondary.admin] {e}")))?
    else {
        return Ok(None);
    };
    Client::connect(cfg)
        .map(Some)
        .map_err(|e| RunError::Config(format!("[secondary.admin] {e}")))
}

/// What to do about an insecure secondary; `run`'s refusal and `check`'s finding both say it.
pub const UNFENCEABLE_FIX: &str = "run the secondary in secure mode (TLS with authentication), or on KurrentDB 26.2+ with --disable-tls and authentication; to replicate into it anyway, set promotion.allow_unfenced = true (`promote` then needs --unfenced)";

/// Sets up the secondary (with `[secondary.admin]`) or, without it, only checks that it is not
/// promoted. Returns the client that reads the control stream while running.
async fn prepare_secondary(
    config: &Config,
    secondary: &Client,
    identity: &PrimaryId,
    shutdown: &CancellationToken,
    shared: &Shared,
    takeover: bool,
) -> Result<Option<Client>, RunError> {
    use crate::control::setup;
    let replicator = config.secondary.username.clone().unwrap_or_default();
    let security = match retry(
        "ask how the secondary authenticates",
        shutdown,
        |_| {
            shared.retries.fetch_add(1, AtomicOrdering::Relaxed);
        },
        || secondary.security(),
    )
    .await
    {
        Ok(security) => security,
        Err(Gave::Cancelled) => return Ok(None),
        Err(Gave::Up(e)) => {
            return Err(RunError::Refused(format!(
                "asking how the secondary authenticates: {e}"
            )))
        }
    };
    if security == crate::esdb::Security::Insecure {
        if !config.promotion.allow_unfenced {
            return Err(RunError::Refused(format!(
                "the secondary is insecure: every request runs as system, so no disabled account or ACL keeps a replicator out after promotion, and promotion could not fence this one. {UNFENCEABLE_FIX}"
            )));
        }
        tracing::warn!("the secondary is insecure: a promotion cannot fence this replicator (promotion.allow_unfenced)");
    }
    let Some(admin) = admin_client(config)? else {
        tracing::warn!(
            "no [secondary.admin] configured: the secondary is not fenced against application writes and cannot be promoted safely; see docs/failover.md"
        );
        return Ok(Some(secondary.clone()));
    };
    let login = admin_login(config);
    let url = crate::status::public_url(
        &reqwest::Url::parse(&config.primary.url).map_err(|e| RunError::Config(e.to_string()))?,
    );
    match retry(
        "set up the secondary",
        shutdown,
        |_| {
            shared.retries.fetch_add(1, AtomicOrdering::Relaxed);
        },
        || setup::ensure(&admin, &login, &replicator, identity, &url, takeover),
    )
    .await
    {
        Ok(done) => {
            if done.fenced_now {
                tracing::info!(replicator = %replicator, "the secondary is fenced: only the replication user and $admins may write user streams");
            }
            Ok(Some(admin))
        }
        Err(Gave::Cancelled) => Ok(None),
        Err(Gave::Up(setup::SetupError::Promoted(p))) => {
            Err(RunError::Promoted(promoted_message(&p)))
        }
        Err(Gave::Up(e)) => Err(RunError::Refused(e.to_string())),
    }
}

fn admin_login(config: &Config) -> String {
    config
        .secondary
        .admin
        .as_ref()
        .map(|a| a.username.clone())
        .unwrap_or_default()
}

/// Reads the control stream every [`CONTROL_POLL`] and stops the pipeline when the secondary
/// has been promoted. Read errors are ignored: the writer's own errors say what is wrong.
async fn watch_control(
    client: Client,
    stop: CancellationToken,
    shared: Arc<Shared>,
) -> Result<(), StageError> {
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(CONTROL_POLL) => {}
            }
        }
        first = false;
        match crate::control::record::read(&client).await {
            Ok(control) => {
                shared.health.secondary_ok();
                if let Some(control) = control {
                    shared.metrics.epoch.set(control.record.epoch.get() as i64);
                    let role = control.record.role.to_string();
                    for r in ["secondary", "primary"] {
                        let label = crate::metrics::RoleLabel { role: r };
                        shared
                            .metrics
                            .role
                            .get_or_create(&label)
                            .set(i64::from(role == r));
                    }
                    if let Some(p) = control.promoted() {
                        return Err(StageError::Promoted(Box::new(p.clone())));
                    }
                }
            }
            Err(crate::control::record::ControlError::Client(e)) => {
                tracing::debug!(error = %e, "cannot read the control stream");
                shared.note_retry("control", &e);
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the control stream"),
        }
    }
}

/// How a finished run ended.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub progress: Progress,
    /// The position persisted at exit.
    pub checkpoint: Option<Position>,
}

/// How `run` starts, beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Take the lease on the secondary without waiting for it to expire (`run --takeover`).
    pub takeover: bool,
}

/// Runs replication until `shutdown` fires or a stage fails.
///
/// # Errors
/// See [`RunError`] for the kinds and their exit codes.
pub async fn run(
    config: &Config,
    shutdown: CancellationToken,
    shared: Arc<Shared>,
) -> Result<Summary, RunError> {
    run_with(config, &RunOptions::default(), shutdown, shared).await
}

/// [`run`] with options.
///
/// # Errors
/// See [`RunError`] for the kinds and their exit codes.
pub async fn run_with(
    config: &Config,
    options: &RunOptions,
    shutdown: CancellationToken,
    shared: Arc<Shared>,
) -> Result<Summary, RunError> {
    let (primary, secondary) = clients(config)?;
    let holder = uuid::Uuid::new_v4();
    let lock = checkpoint::Lock::acquire(&config.checkpoint.path, holder)
        .map_err(|e| RunError::Refused(e.to_string()))?;
    let (store, existing) = CheckpointStore::open(&config.checkpoint.path)
        .map_err(|e| RunError::Refused(e.to_string()))?;
    let stopped = |checkpoint: Option<Position>| Summary {
        progress: shared.snapshot(),
        checkpoint,
    };
    let stopped_early = stopped(existing.as_ref().map(|c| c.position));
    // Reads the secondary's state: `$standby-*` streams are `$admins`-only unless setup granted
    // them, so `[secondary.admin]` when configured.
    let inspector = admin_client(config)?.unwrap_or_else(|| secondary.clone());

    // A promoted secondary is refused first, whether or not the primary answers.
    let control = match retry(
        "read the secondary's control stream",
        &shutdown,
        |_| {
            shared.retries.fetch_add(1, AtomicOrdering::Relaxed);
        },
        || crate::control::record::read(&inspector),
    )
    .await
    {
        Ok(c) => c,
        Err(Gave::Cancelled) => return Ok(stopped_early),
        Err(Gave::Up(crate::control::record::ControlError::Client(e))) if e.is_access_denied() => {
            return Err(RunError::Refused(format!(
                "cannot read the secondary's control stream ({e}): without [secondary.admin], the replication user \
                 must be allowed to read $standby-control (docs/configuration.md), or `run` cannot tell a promoted \
                 secondary from a standby"
            )))
        }
        Err(Gave::Up(e)) => return Err(RunError::Refused(e.to_string())),
    };
    if let Some(p) = control.as_ref().and_then(crate::control::Control::promoted) {
        return Err(RunError::Promoted(promoted_message(p)));
    }

    let Some(identity) = primary_identity(&primary, &shutdown, &shared).await? else {
        return Ok(stopped_early);
    };
    let (copy, offsets) = match retry(
        "read the secondary's replication state",
        &shutdown,
        |e| shared.note_retry("writer", e),
        || async {
            let copy = checkpoint_copy(&inspector).await?;
            let offsets = StreamOffsets::load(&inspector).await?;
            Ok((copy, offsets))
        },
    )
    .await
    {
        Ok(state) => state,
        Err(Gave::Cancelled) => return Ok(stopped_early),
        Err(Gave::Up(e)) => return Err(StageError::Secondary(e).into()),
    };
    let resume = startup::Resume {
        config,
        primary: &primary,
        secondary: &inspector,
        identity: &identity,
        local: existing.as_ref(),
        copy: copy.as_ref(),
        control: control.as_ref(),
        offsets: &offsets,
    };
    let start = match retry(
        "check the checkpoint against both clusters",
        &shutdown,
        |e| shared.note_retry("reader", e),
        || resume.check(),
    )
    .await
    {
        Ok(Ok(start)) => start,
        Ok(Err(refused)) => return Err(refused),
        Err(Gave::Cancelled) => return Ok(stopped_early),
        Err(Gave::Up(e)) => {
            return Err(RunError::Internal(format!(
                "checking the checkpoint against both clusters failed: {e}"
            )))
        }
    };
    // Only now, with the resume point proven, does anything get written.
    let control_reader = match prepare_secondary(
        config,
        &secondary,
        &identity,
        &shutdown,
        &shared,
        options.takeover,
    )
    .await?
    {
        Some(c) => c,
        None => return Ok(stopped(Some(start))),
    };
    let claim = crate::lease::Claim {
        holder,
        checkpoint: config.checkpoint.path.clone(),
        period: config.replication.lease_period(),
        dead: lock.dead_holders().to_vec(),
        takeover: options.takeover,
    };
    let Some(lease) = crate::lease::acquire(&secondary, &claim, &shutdown)
        .await
        .map_err(|e| match e {
            crate::lease::LeaseError::Client(e) => StageError::Secondary(e).into(),
            e => RunError::Refused(e.to_string()),
        })?
    else {
        return Ok(stopped(Some(start)));
    };
    shared.metrics.lease_held.set(1);
    tracing::info!(from = %start, primary = %identity, ordering = ?config.replication.ordering, offsets = offsets.len(), "replication starting");

    let page_size = u16::try_from(config.replication.page_size)
        .ok()
        .and_then(PageSize::new)
        .ok_or_else(|| {
            RunError::Config(format!(
                "replication.page_size {} is out of range",
                config.replication.page_size
            ))
        })?;
    let store = Arc::new(Mutex::new(store));
    let (tx, rx) = mpsc::channel(CHANNEL_PAGES);
    let (applied_tx, applied_rx) = watch::channel(Applied {
        position: start,
        flush: false,
    });
    let (flushed_tx, flushed_rx) = watch::channel(start);
    let reader_stop = shutdown.child_token();
    let writer_stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let failed = CancellationToken::new();
    let tracker = TaskTracker::new();

    let reader = reader::Reader {
        client: primary,
        page_size,
        filter: config.replication.clone(),
        shared: shared.clone(),
    };
    let writer = writer::Writer {
        client: secondary.clone(),
        ordering: config.replication.ordering,
        offsets: tokio::sync::Mutex::new(offsets),
        shared: shared.clone(),
    };
    let checkpointer = checkpointer::Checkpointer {
        store,
        primary: identity,
        epoch: INITIAL_EPOCH,
        secondary,
        shared: shared.clone(),
    };

    let first_error: Arc<Mutex<Option<StageError>>> = Arc::default();
    let stage = |name: &'static str,
                 fut: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), StageError>> + Send>,
    >| {
        let failed = failed.clone();
        let first_error = first_error.clone();
        tracker.spawn(tracing::Instrument::instrument(
            async move {
                if let Err(e) = fut.await {
                    match &e {
                        // What a standby's replicator is for: it stops when its secondary is promoted.
                        StageError::Promoted(_) => tracing::info!(stage = name, "{e}"),
                        _ => tracing::error!(stage = name, error = %e, "stage stopped"),
                    }
                    first_error.lock().expect("error slot").get_or_insert(e);
                    failed.cancel();
                }
            },
            tracing::info_span!("stage", name),
        ))
    };
    stage(
        "reader",
        Box::pin(reader.run(start, tx, reader_stop.clone())),
    );
    stage(
        "writer",
        Box::pin(writer.run(
            rx,
            applied_tx,
            flushed_rx,
            writer_stop.clone(),
            abort.clone(),
        )),
    );
    stage(
        "checkpointer",
        Box::pin(checkpointer.run(applied_rx, flushed_tx, abort.clone())),
    );
    stage(
        "control",
        Box::pin(watch_control(
            control_reader.clone(),
            reader_stop.clone(),
            shared.clone(),
        )),
    );
    tracker.close();
    let lease_stop = CancellationToken::new();
    let _stop_renewing_when_dropped = lease_stop.clone().drop_guard();
    let renewal = tokio::spawn(tracing::Instrument::instrument(
        keep_lease(
            lease,
            lease_stop.clone(),
            abort.clone(),
            failed.clone(),
            first_error.clone(),
            shared.clone(),
        ),
        tracing::info_span!("stage", name = "lease"),
    ));

    tokio::select! {
        _ = shutdown.cancelled() => tracing::info!("stopping: finishing the page in flight and flushing the checkpoint"),
        _ = failed.cancelled() => {}
        _ = tracker.wait() => {}
    }
    reader_stop.cancel();
    writer_stop.cancel();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(deadline = ?SHUTDOWN_DEADLINE, "shutdown deadline passed; abandoning the page in flight (it is replayed after restart)");
        abort.cancel();
        tracker.wait().await;
    }
    lease_stop.cancel();
    if let Ok(Some(lease)) = renewal.await {
        if let Err(e) = lease.release().await {
            tracing::warn!(error = %e, "cannot release the lease; a successor waits for it to expire");
        }
    }
    shared.metrics.lease_held.set(0);
    let progress = shared.snapshot();
    let mut error = first_error.lock().expect("error slot").take();
    // A refused append is how a running replicator meets the fence: say why if it is a promotion.
    // A promotion revokes the replication user before it writes the epoch, so give it the time
    // it may take to get there.
    if matches!(&error, Some(StageError::Secondary(e)) if e.is_access_denied()) {
        let deadline = tokio::time::Instant::now() + PROMOTION_GRACE;
        loop {
            if let Ok(Some(control)) = crate::control::record::read(&control_reader).await {
                if let Some(p) = control.promoted() {
                    error = Some(StageError::Promoted(Box::new(p.clone())));
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    if let Some(e) = &error {
        use crate::metrics::Stopped;
        let why = match e {
            StageError::Divergence(_) => Stopped::Divergent,
            StageError::Lease(crate::lease::LeaseError::Unrenewable { .. }) => Stopped::Failed,
            StageError::Secondary(e) if e.is_access_denied() => Stopped::Fenced,
            StageError::Promoted(_) | StageError::Checkpoint(_) | StageError::Lease(_) => {
                Stopped::Fenced
            }
            _ => Stopped::Failed,
        };
        shared.health.stopped(why);
        let label = crate::metrics::ReasonLabel {
            reason: why.label(),
        };
        shared.metrics.stopped.get_or_create(&label).set(1);
        match e {
            StageError::Primary(err) => shared.note_error("reader", err),
            StageError::Secondary(err) => shared.note_error("writer", err),
            _ => {}
        }
    }
    match error {
        Some(e) => Err(e.into()),
        None => Ok(Summary {
            progress,
            checkpoint: progress.positions.persisted.or(Some(start)),
        }),
    }
}

/// Renews the lease until `stop` fires and hands it back for release. When it is lost, records
/// why and stops the stages at once: `abort` drops the writes in flight (replayed safely by
/// whoever resumes).
async fn keep_lease(
    mut lease: crate::lease::Lease,
    stop: CancellationToken,
    abort: CancellationToken,
    failed: CancellationToken,
    first_error: Arc<Mutex<Option<StageError>>>,
    shared: Arc<Shared>,
) -> Option<crate::lease::Lease> {
    let e = match lease.keep(&stop).await {
        Ok(()) => return Some(lease),
        Err(e) => e,
    };
    match &e {
        // A promotion revokes the replication user: the run's end says whether that is why.
        crate::lease::LeaseError::Unauthorized(refused) => tracing::warn!(
            error = %refused,
            "the secondary refused the lease renewal; stopping all writes to it"
        ),
        e => tracing::error!(error = %e, "the lease is lost; stopping all writes to the secondary"),
    }
    shared.metrics.lease_held.set(0);
    first_error
        .lock()
        .expect("error slot")
        .get_or_insert(lease_stopped(e));
    abort.cancel();
    failed.cancel();
    None
}

/// A refusal of the lease stream is the fence when the secondary was promoted: it takes the
/// path of the writer's refusals, which names the promotion.
fn lease_stopped(e: crate::lease::LeaseError) -> StageError {
    match e {
        crate::lease::LeaseError::Unauthorized(e) => StageError::Secondary(e),
        crate::lease::LeaseError::Client(e) => StageError::Secondary(e),
        e => StageError::Lease(e),
    }
}

/// Writes the secondary's checkpoint copy to the local file: the explicit recovery after the local
/// checkpoint was lost.
///
/// # Errors
/// [`RunError::Refused`] when a local checkpoint exists (never overwritten) or the secondary holds
/// no copy; client errors.
pub async fn recover_checkpoint(config: &Config) -> Result<Checkpoint, RunError> {
    let (_, secondary) = clients(config)?;
    let _lock = checkpoint::Lock::acquire(&config.checkpoint.path, uuid::Uuid::new_v4())
        .map_err(|e| RunError::Refused(e.to_string()))?;
    let (mut store, existing) = CheckpointStore::open(&config.checkpoint.path)
        .map_err(|e| RunError::Refused(e.to_string()))?;
    if let Some(cp) = existing {
        return Err(RunError::Refused(format!(
            "a local checkpoint already exists at {} (position {}); it is never overwritten. Move it away first if you really mean to replace it",
            config.checkpoint.path.display(),
            cp.position
        )));
    }
    let copy = checkpoint_copy(&secondary)
        .await
        .map_err(|e| RunError::Internal(format!("reading the checkpoint copy from the secondary: {e}")))?
        .ok_or_else(|| RunError::Refused("the secondary holds no checkpoint copy; there is nothing to recover (a first run starts from the beginning)".into()))?;
    store
        .store(&copy)
        .map_err(|e| RunError::Refused(e.to_string()))?;
    Ok(copy)
}
