//! `promote` and `switchover`: the only code that makes the secondary a primary.
//!
//! `promote`, in this order (docs/failover.md, "2b. Promote"):
//!
//! 1. read the control stream; already promoted → report it, change nothing;
//! 2. measure: the last applied source position (local checkpoint or its copy on the secondary),
//!    and, when the primary answers, the events it acknowledged that the secondary lacks;
//! 3. refuse without `--force` when the primary answers or the lag exceeds `--max-lag`;
//! 4. revoke the replication user: disable its account (it can no longer authenticate), and close
//!    `$settings` to everyone but `$admins`;
//! 5. prove the revocation: the server caches credentials and drops a disabled user only when it
//!    next polls `$users-password-notifications` (about 1 s, up to ~20 s when it struggles;
//!    the server's `PasswordChangeNotificationReader.cs`; docs/devnode.md "User management"), so send requests with the replication user's own
//!    credentials to every secondary node until each refuses them, bounded by
//!    `promotion.fence_timeout_secs`; on timeout nothing is promoted;
//! 6. wait until the secondary's user streams are quiet: a write authenticated just before the
//!    revocation may still land, and it must land before the epoch, not after;
//! 7. append the new epoch with the expected version read in 1 — the commit point: of two
//!    concurrent promotions exactly one passes, the other reports the winner;
//! 8. open `$settings` to applications without re-admitting the replication user;
//! 9. `--fence-primary`: close the old primary's `$settings` likewise.
//!
//! Steps before 7 only take rights away, so repeating them is harmless; a promotion interrupted
//! after 7 is completed by re-running `promote` (it reopens a secondary left closed).
//!
//! `switchover` fences the primary first, waits until the secondary holds everything the primary
//! acknowledged, checks the tail's event ids, then promotes: nothing is lost. When it cannot, it
//! removes the primary's fence again and says why.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::acl::{self, Principal, ADMINS};
use super::record::{self, Appended, Control, ControlError, DataLoss, EpochRecord, Role};
use super::tail::{self, Tail, TailEvent};
use crate::checkpoint::CheckpointStore;
use crate::config::Config;
use crate::esdb::{
    self, Client, ClientConfig, Embed, EventData, Lookup, PageSize, ReadOptions, Security,
    SystemSettings,
};
use crate::offsets::StreamOffsets;
use crate::pipeline::checkpoint_copy;
use crate::position::{Epoch, ExpectedVersion, Position, StreamRevision};
use crate::status::{last_timestamp_before, parse_timestamp};

/// How long the secondary's user streams must stay unwritten after the fence is proven before the
/// epoch is written (a request authorized before the revocation may still be committing).
pub const SETTLE: Duration = Duration::from_secs(1);
/// Give up waiting for quiet user streams after this long.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// Pause between two rounds of fence probes.
const PROBE_PAUSE: Duration = Duration::from_millis(100);
/// The user stream the write-ACL probe appends to, with an expected version it can never meet.
pub const FENCE_PROBE_STREAM: &str = "standby-fence-probe";
/// Missing events listed in a report (all are counted).
pub const LISTED_MISSING: usize = 10;

/// What `promote` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct PromoteOptions {
    pub force: bool,
    pub dry_run: bool,
    pub fence_primary: bool,
    pub reason: Option<String>,
    pub max_lag: Option<u64>,
    /// Promote a secondary whose replication user cannot be fenced (an insecure node, or
    /// accounts managed outside it): the operator vouches that no replicator runs.
    pub unfenced: bool,
}

/// What keeps a replicator that is still running from writing to the promoted cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fence {
    /// The replication user's account is disabled and every node refuses it.
    Proven { nodes: usize },
    /// Accounts are managed outside the secondary: only ACLs keep the replication user out.
    /// `admitting` lists streams whose own `$acl` still lets it write.
    AclOnly { admitting: Vec<String> },
    /// Nothing: the secondary runs insecure (every request is `system`).
    Unfenced,
    /// Not yet decided (a dry run, or a promotion found already made).
    Unknown,
}

/// How a promotion command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// This command promoted the secondary.
    Promoted,
    /// The secondary was already promoted (by an earlier or a concurrent command).
    AlreadyPromoted,
    /// `--dry-run`: nothing was changed.
    DryRun,
}

/// What a promotion command found and did.
#[derive(Debug, Clone, Serialize)]
pub struct PromoteReport {
    pub outcome: Outcome,
    /// The promotion record (written, found, or that would be written).
    pub record: EpochRecord,
    /// Whether the old primary answered.
    pub primary_reachable: bool,
    /// The first missing events (all are counted in the record's data loss).
    pub missing: Vec<TailEvent>,
    /// What was done, in order.
    pub steps: Vec<String>,
    pub warnings: Vec<String>,
    /// The old primary's `$settings` before it was fenced: write them back to undo the fence.
    pub primary_settings_before: Option<Value>,
    /// What fences the replication user out of this cluster now.
    pub fence: Fence,
}

impl std::fmt::Display for PromoteReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = match self.outcome {
            Outcome::Promoted => "PROMOTED",
            Outcome::AlreadyPromoted if self.steps.is_empty() => {
                "ALREADY PROMOTED (nothing changed)"
            }
            Outcome::AlreadyPromoted => "ALREADY PROMOTED (completed the steps below)",
            Outcome::DryRun => "DRY RUN (nothing changed); promoting would write",
        };
        writeln!(f, "{head}: {}", self.record)?;
        match &self.fence {
            Fence::Unfenced => writeln!(
                f,
                "UNFENCED: the secondary runs insecure, so nothing stops a replicator that is still running from writing to it. Stop every `standby run` against it yourself"
            )?,
            Fence::AclOnly { admitting } if admitting.is_empty() => writeln!(
                f,
                "fenced by ACLs only: the replication user can still log in (its account is managed outside the cluster); disable it in the identity provider"
            )?,
            Fence::AclOnly { admitting } => writeln!(
                f,
                "PARTLY UNFENCED: the replication user can still log in and the $acl of {} stream(s) lets it write: {}. Disable it in the identity provider, and remove it from those $acls",
                admitting.len(),
                admitting.iter().take(LISTED_MISSING).cloned().collect::<Vec<_>>().join(", ")
            )?,
            Fence::Proven { .. } | Fence::Unknown => {}
        }
        if let Some(loss) = &self.record.data_loss {
            match loss.events {
                Some(events) => writeln!(
                    f,
                    "data loss: {events} events{} acknowledged by the old primary are not on this cluster; {} metadata/delete records after the last applied position; up to {} bytes of the primary's log; {} of primary time",
                    if loss.note.as_deref().is_some_and(|n| n.contains("at least")) { " (at least)" } else { "" },
                    loss.other_records.unwrap_or(0),
                    loss.bytes.unwrap_or(0),
                    loss.seconds.map_or_else(|| "unknown".to_owned(), |s| format!("{s:.1} s")),
                )?,
                None => writeln!(f, "data loss: unknown")?,
            }
            if let Some(note) = &loss.note {
                writeln!(f, "  {note}")?;
            }
        }
        for e in &self.missing {
            writeln!(
                f,
                "  missing: {}@{} id {} type {}",
                e.revision,
                e.stream,
                e.event_id.map_or_else(|| "?".into(), |i| i.to_string()),
                e.event_type.as_deref().unwrap_or("?")
            )?;
        }
        for s in &self.steps {
            writeln!(f, "done: {s}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        match &self.primary_settings_before {
            Some(Value::Null) => writeln!(
                f,
                "the old primary is fenced; it had no $settings before (the server defaults)"
            )?,
            Some(before) => writeln!(
                f,
                "the old primary is fenced; its $settings before were: {before}"
            )?,
            None => {}
        }
        Ok(())
    }
}

/// Why a promotion command stopped; each maps to a documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// Exit 2.
    #[error("{0}")]
    Config(String),
    /// Exit 3: refused, nothing promoted.
    #[error("{0}")]
    Refused(String),
    /// Exit 5: the secondary cannot be reached.
    #[error("{0}")]
    Unreachable(String),
    /// Exit 1.
    #[error("{0}")]
    Internal(String),
}

impl PromoteError {
    pub fn exit_code(&self) -> u8 {
        match self {
            PromoteError::Config(_) => crate::exit::USAGE,
            PromoteError::Refused(_) => crate::exit::REFUSED,
            PromoteError::Unreachable(_) => crate::exit::UNREACHABLE,
            PromoteError::Internal(_) => crate::exit::INTERNAL,
        }
    }
}

fn secondary_err(doing: &str, e: esdb::Error) -> PromoteError {
    let text = format!("{doing} on the secondary: {e}");
    match e {
        e if e.is_access_denied() => PromoteError::Refused(format!(
            "{text}. Check [secondary.admin]: it must be a member of $admins"
        )),
        e if e.is_transient() => PromoteError::Unreachable(text),
        _ => PromoteError::Internal(text),
    }
}

fn control_err(e: ControlError) -> PromoteError {
    match e {
        ControlError::Client(e) => secondary_err("reading the control stream", e),
        other => PromoteError::Refused(other.to_string()),
    }
}

/// The clients and names a promotion needs.
struct Sides {
    primary: Client,
    admin: Client,
    admin_login: String,
    replicator: String,
    /// The replication user's client settings for the secondary (`[secondary]`), used to prove
    /// the fence with its own credentials.
    replicator_config: ClientConfig,
    fence_timeout: Duration,
}

impl Sides {
    fn new(config: &Config) -> Result<Sides, PromoteError> {
        let admin_config = config
            .secondary
            .admin_client_config()
            .map_err(|e| PromoteError::Config(e.to_string()))?
            .ok_or_else(|| {
                PromoteError::Config(
                    "promotion needs [secondary.admin] (a member of $admins other than the replication user) in the configuration".into(),
                )
            })?;
        let admin_login = admin_config
            .credentials
            .as_ref()
            .map(|c| c.username.clone())
            .unwrap_or_default();
        let replicator = config.secondary.username.clone().ok_or_else(|| {
            PromoteError::Config(
                "secondary.username (the replication user) is not set: promotion must know whom to fence".into(),
            )
        })?;
        let (primary, _) =
            crate::pipeline::clients(config).map_err(|e| PromoteError::Config(e.to_string()))?;
        let admin = Client::connect(admin_config)
            .map_err(|e| PromoteError::Config(format!("[secondary.admin] {e}")))?;
        let replicator_config = config
            .secondary
            .client_config()
            .map_err(|e| PromoteError::Config(format!("[secondary] {e}")))?;
        Ok(Sides {
            primary,
            admin,
            admin_login,
            replicator,
            replicator_config,
            fence_timeout: Duration::from_secs(config.promotion.fence_timeout_secs.max(1)),
        })
    }
}

/// `standby promote` (see the module documentation).
///
/// # Errors
/// [`PromoteError`]; nothing is promoted when it is returned, except an
/// [`PromoteError::Internal`] after the epoch was written (re-running completes the promotion).
pub async fn promote(
    config: &Config,
    options: &PromoteOptions,
) -> Result<PromoteReport, PromoteError> {
    let sides = Sides::new(config)?;
    promote_with(&sides, config, options, "promote", None).await
}

/// Completes a promotion found made (by an earlier or a concurrent command) and reports it.
async fn already_promoted(
    sides: &Sides,
    options: &PromoteOptions,
    promoted: EpochRecord,
    mut steps: Vec<String>,
    warnings: Vec<String>,
) -> Result<PromoteReport, PromoteError> {
    roll_forward(sides, &promoted, &mut steps).await?;
    // An old primary that was unreachable at promotion, back now: fencing it is all that is
    // left to do, and it must not be skipped.
    let mut primary_settings_before = None;
    if options.fence_primary {
        let before = fence_primary(&sides.primary).await.map_err(|e| {
            PromoteError::Unreachable(format!(
                "the secondary is already promoted (epoch {}), but fencing the old primary failed: {e}. \
                 It may still take application writes: rerun `standby promote --fence-primary` when it \
                 answers, or stop its applications by hand",
                promoted.epoch
            ))
        })?;
        steps.push("fenced the old primary: only $admins may write its user streams".into());
        primary_settings_before = Some(before.map_or(Value::Null, |s| s.as_json().clone()));
    }
    Ok(PromoteReport {
        outcome: Outcome::AlreadyPromoted,
        record: promoted,
        primary_reachable: false,
        missing: Vec::new(),
        steps,
        warnings,
        primary_settings_before,
        fence: Fence::Unknown,
    })
}

/// Closes the secondary's `$settings` to everyone but `$admins`, conditional on the version read
/// after the control record was found unpromoted: a concurrent promotion that wrote its epoch
/// and opened the cluster meanwhile is not closed again. Returns the
/// winner's record when a promotion is found made.
async fn close_secondary(
    sides: &Sides,
    before: Option<&SystemSettings>,
) -> Result<Option<EpochRecord>, PromoteError> {
    let closed = acl::closed(before);
    for _ in 0..10 {
        let (current, version) = sides
            .admin
            .read_settings_versioned()
            .await
            .map_err(|e| secondary_err("reading $settings", e))?;
        let control = record::read(&sides.admin).await.map_err(control_err)?;
        if let Some(promoted) = control.as_ref().and_then(Control::promoted) {
            return Ok(Some(promoted.clone()));
        }
        if current.as_ref() == Some(&closed) {
            return Ok(None);
        }
        match sides
            .admin
            .write_settings(&closed, uuid::Uuid::new_v4(), None, version)
            .await
        {
            Ok(_) => return Ok(None),
            Err(esdb::Error::WrongExpectedVersion { .. }) => continue,
            Err(e) => return Err(secondary_err("closing $settings", e)),
        }
    }
    Err(PromoteError::Refused(
        "the secondary's $settings kept changing while promote was closing them: another promote or `standby run` is working on this secondary. Nothing was promoted; stop the others and rerun".into(),
    ))
}

/// The replication user as the secondary knows it.
struct Replicator {
    groups: Vec<String>,
    /// The account exists in the node's user management and can be disabled.
    can_disable: bool,
    disabled: bool,
    /// How it is kept out: its own refused requests prove the fence
    /// ([`Probe::Authentication`] when the node manages accounts).
    probe: Option<Probe>,
}

/// Looks the replication user up and decides how it can be fenced on a secondary in `security`
/// mode. An insecure secondary, or one whose accounts live in an external provider, cannot
/// prove a fence: promoting it needs `--unfenced`.
async fn replicator(
    sides: &Sides,
    security: Security,
    unfenced: bool,
    warnings: &mut Vec<String>,
) -> Result<Replicator, PromoteError> {
    let unmanaged = |probe, warnings: &mut Vec<String>, why: String| {
        if !unfenced {
            return Err(PromoteError::Refused(format!(
                "{why}. Nothing was promoted. Stop every `standby run` against this secondary (and disable the replication user {:?} wherever its account lives), then rerun with --unfenced; the report will say the cluster is not fenced",
                sides.replicator
            )));
        }
        warnings.push(why);
        Ok(Replicator {
            groups: Vec::new(),
            can_disable: false,
            disabled: false,
            probe,
        })
    };
    match security {
        Security::Insecure => {
            return unmanaged(
                None,
                warnings,
                format!(
                    "the secondary runs insecure ({security}): the replication user {:?} cannot be fenced, because no account or ACL binds anyone there",
                    sides.replicator
                ),
            )
        }
        Security::External { .. } => {
            return unmanaged(
                Some(Probe::WriteAcl),
                warnings,
                format!(
                    "the secondary's accounts are managed outside it ({security}): the replication user {:?} cannot be disabled there, so only ACLs keep it out, and a stream $acl that names it lets it write",
                    sides.replicator
                ),
            )
        }
        Security::Secure | Security::PlaintextWithAuth => {}
    }
    match sides.admin.get_user(&sides.replicator).await {
        Ok(Lookup::Found(user)) => Ok(Replicator {
            groups: user.groups,
            can_disable: true,
            disabled: user.disabled,
            probe: Some(Probe::Authentication),
        }),
        // No such account: it cannot log in, which the probe proves.
        Ok(_) => {
            warnings.push(format!(
                "the replication user {:?} has no account on the secondary: it cannot log in there",
                sides.replicator
            ));
            Ok(Replicator {
                groups: Vec::new(),
                can_disable: false,
                disabled: true,
                probe: Some(Probe::Authentication),
            })
        }
        Err(e @ esdb::Error::NotFound { .. }) => unmanaged(
            Some(Probe::WriteAcl),
            warnings,
            format!(
                "user management is not available on the secondary ({e}): the replication user {:?} cannot be disabled there, so only ACLs keep it out",
                sides.replicator
            ),
        ),
        Err(e) => Err(secondary_err("looking up the replication user", e)),
    }
}

/// Streams of the secondary whose own `$acl` lets `who` write, delete or write metadata: a
/// stream ACL overrides `$settings` right by right, so the closed `$settings` do not keep
/// `who` out of them. Reads the secondary's whole `$all` (promotion only).
async fn streams_admitting(
    admin: &Client,
    who: Principal<'_>,
) -> Result<Vec<String>, PromoteError> {
    let mut latest: std::collections::BTreeMap<String, Option<esdb::Acl>> = Default::default();
    let mut from = Position::START;
    loop {
        let page = admin
            .read_all_forward(from, PageSize::MAX, &ReadOptions::embed(Embed::Body))
            .await
            .map_err(|e| secondary_err("reading $all for stream ACLs", e))?;
        for event in page.entries.iter().filter_map(|e| e.as_event()) {
            // User streams only: standby's own state streams admit the replication user on
            // purpose, and system streams hold no application data.
            let Some(stream) = event.stream.strip_prefix("$$") else {
                continue;
            };
            if stream.starts_with('$') || event.event_type != "$metadata" {
                continue;
            }
            let acl = event
                .data
                .as_ref()
                .and_then(|d| serde_json::from_slice::<Value>(d).ok())
                .and_then(|v| esdb::StreamMetadata::new(v).acl());
            latest.insert(stream.to_owned(), acl);
        }
        match page.next {
            Some(next) if !page.entries.is_empty() && !page.is_end => from = next,
            _ => break,
        }
    }
    Ok(latest
        .into_iter()
        .filter(|(_, acl)| {
            acl.as_ref().is_some_and(|acl| {
                [&acl.write, &acl.delete, &acl.meta_write]
                    .into_iter()
                    .any(|r| acl::grants(r.as_ref(), who))
            })
        })
        .map(|(stream, _)| stream)
        .collect())
}

/// The last applied source position: the newer of the local checkpoint and its copy on the
/// secondary.
async fn last_applied(config: &Config, admin: &Client) -> Result<Position, PromoteError> {
    let local = CheckpointStore::read(&config.checkpoint.path)
        .ok()
        .flatten()
        .map(|c| c.position);
    let copy = checkpoint_copy(admin)
        .await
        .map_err(|e| secondary_err("reading the checkpoint copy", e))?
        .map(|c| c.position);
    Ok(local.max(copy).unwrap_or(Position::START))
}

/// The primary's tail after `from`, or why it could not be measured.
async fn measure(
    sides: &Sides,
    config: &Config,
    from: Position,
    check_ids: bool,
) -> Result<Tail, String> {
    let offsets = StreamOffsets::load(&sides.admin)
        .await
        .map_err(|e| format!("reading stream offsets on the secondary: {e}"))?;
    tail::analyse(
        &sides.primary,
        &sides.admin,
        &config.replication,
        &offsets,
        from,
        check_ids,
    )
    .await
    .map_err(|e| e.to_string())
}

async fn data_loss(primary: &Client, tail: &Tail) -> DataLoss {
    let seconds = match tail.missing.last() {
        None => Some(0.0),
        Some(newest) => {
            let applied_at = if tail.from == Position::START {
                tail.missing.first().and_then(|e| e.updated.clone())
            } else {
                last_timestamp_before(primary, tail.from)
                    .await
                    .ok()
                    .flatten()
            };
            newest
                .updated
                .as_deref()
                .and_then(parse_timestamp)
                .zip(applied_at.as_deref().and_then(parse_timestamp))
                .map(|(newest, applied)| (newest - applied).max(0.0))
        }
    };
    DataLoss {
        events: Some(tail.missing.len() as u64),
        other_records: Some(tail.other_records),
        bytes: Some(tail.bytes()),
        seconds,
        primary_head: Some(tail.head),
        note: tail.truncated.then(|| {
            format!(
                "counting stopped at {} events: the loss is at least this",
                tail::MAX_TAIL_EVENTS
            )
        }),
    }
}

async fn promote_with(
    sides: &Sides,
    config: &Config,
    options: &PromoteOptions,
    verb: &str,
    mut fenced_primary: Option<Option<SystemSettings>>,
) -> Result<PromoteReport, PromoteError> {
    let mut steps = Vec::new();
    let mut warnings = Vec::new();
    let control = record::read(&sides.admin).await.map_err(control_err)?;
    if let Some(promoted) = control.as_ref().and_then(Control::promoted) {
        return already_promoted(sides, options, promoted.clone(), steps, warnings).await;
    }
    if control.is_none() {
        warnings.push(format!(
            "the secondary has no {} record: `run` never set it up, so it was not fenced against application writes",
            record::CONTROL_STREAM
        ));
    }
    let security = sides
        .admin
        .security()
        .await
        .map_err(|e| secondary_err("asking how the secondary authenticates", e))?;
    let user = replicator(sides, security, options.unfenced, &mut warnings).await?;
    // v20+ also treat the login `admin` as an admin whatever its groups (the server's
    // `src/KurrentDB.Core/Authorization/WellKnownAssertions.cs`).
    if user.groups.iter().any(|g| g == ADMINS) || sides.replicator == "admin" {
        let text = format!(
            "the replication user {:?} is an admin (a member of $admins, or the login `admin`, an admin by name since v20): admins bypass ACLs, so it cannot be fenced and a running replicator could keep writing after promotion",
            sides.replicator
        );
        if !options.force {
            return Err(PromoteError::Refused(format!(
                "{text}. Stop the replicator and rerun with --force, and remove the replication user from $admins"
            )));
        }
        warnings.push(text);
    }
    let before = match &control {
        Some(c) => c.record.settings_before.clone().map(SystemSettings::new),
        None => sides
            .admin
            .read_settings()
            .await
            .map_err(|e| secondary_err("reading $settings", e))?,
    };
    let write_roles = config.promotion.write_roles.as_deref();
    let opened = acl::opened(before.as_ref(), write_roles);
    let who = Principal {
        login: &sides.replicator,
        groups: &user.groups,
    };
    if user.probe.is_some() && acl::admits_writer(&acl::user_acl(Some(&opened)), who) {
        if user.probe == Some(Probe::WriteAcl) {
            return Err(PromoteError::Refused(format!(
                "opening the secondary to applications would re-admit the replication user {:?} (Event Store ACLs have no deny), and its account cannot be disabled here. Set promotion.write_roles to the roles applications write with",
                sides.replicator
            )));
        }
        warnings.push(format!(
            "the opened ACL admits the replication user {:?} by name, group or $all; it stays disabled. Do not enable it while this cluster is a primary (or set promotion.write_roles)",
            sides.replicator
        ));
    }
    // Without an account to disable, a stream `$acl` naming the replication user keeps it in
    // (a stream ACL overrides `$settings` right by right): list them; `--unfenced` was required
    // to get here.
    let admitting = if user.probe == Some(Probe::WriteAcl) {
        streams_admitting(&sides.admin, who).await?
    } else {
        Vec::new()
    };
    let planned_fence = match user.probe {
        None => Fence::Unfenced,
        Some(Probe::WriteAcl) => Fence::AclOnly {
            admitting: admitting.clone(),
        },
        Some(Probe::Authentication) => Fence::Unknown,
    };

    // Measure.
    let mut applied = last_applied(config, &sides.admin).await?;
    let mut tail = measure(sides, config, applied, false).await;
    let primary_reachable = tail.is_ok();
    if let Some(limit) = options.max_lag {
        let lag = tail.as_ref().ok().map(|t| t.missing.len() as u64);
        match lag {
            Some(lag) if lag > limit && !options.force => {
                return Err(PromoteError::Refused(format!(
                    "the secondary lacks {lag} events the primary acknowledged, more than --max-lag {limit}; rerun with --force to accept the loss"
                )))
            }
            None if !options.force => {
                return Err(PromoteError::Refused(format!(
                    "the lag cannot be measured (the primary does not answer), so --max-lag {limit} cannot be checked; rerun without --max-lag, or with --force"
                )))
            }
            _ => {}
        }
    }
    if let Ok(t) = &tail {
        if !options.force {
            return Err(PromoteError::Refused(format!(
                "the primary {} still answers (head {}); promoting now would leave two writable clusters and lose {} events. Use `standby switchover` for a lossless handover, or fence or stop the primary and rerun with --force",
                sides.primary.endpoint(),
                t.head,
                t.missing.len()
            )));
        }
    }

    let epoch = control
        .as_ref()
        .map_or(Epoch::new(1), |c| c.record.epoch)
        .next()
        .ok_or_else(|| PromoteError::Internal("the epoch counter is exhausted".into()))?;
    let make_record = |applied: Position, tail: &Result<Tail, String>, loss: DataLoss| {
        EpochRecord {
        epoch,
        role: Role::Primary,
        at: record::utc_now(),
        by: sides.admin_login.clone(),
        primary: control.as_ref().and_then(|c| c.record.primary.clone()),
        primary_url: Some(sides.primary.endpoint()),
        replication_user: Some(sides.replicator.clone()),
        settings_before: before.as_ref().map(|s| s.as_json().clone()),
        reason: options.reason.clone(),
        last_applied: Some(applied),
        data_loss: Some(match tail {
            Ok(_) => loss,
            Err(e) => DataLoss {
                events: None,
                other_records: None,
                bytes: None,
                seconds: None,
                primary_head: None,
                note: Some(format!(
                    "the primary does not answer ({e}): everything it acknowledged after {applied} is not on this cluster. When it is reachable, `standby divergence` lists those events"
                )),
            },
        }),
        opened_settings: Some(opened.as_json().clone()),
        replication_user_disabled: Some(user.can_disable),
        verb: Some(verb.to_owned()),
    }
    };
    let missing_of = |tail: &Result<Tail, String>| {
        tail.as_ref()
            .map(|t| t.missing.iter().take(LISTED_MISSING).cloned().collect())
            .unwrap_or_default()
    };

    if options.dry_run {
        let loss = match &tail {
            Ok(t) => data_loss(&sides.primary, t).await,
            Err(_) => DataLoss::default_unknown(),
        };
        return Ok(PromoteReport {
            outcome: Outcome::DryRun,
            record: make_record(applied, &tail, loss),
            primary_reachable,
            missing: missing_of(&tail),
            steps: vec![
                format!("would disable the replication user {:?}", sides.replicator),
                "would close $settings to everyone but $admins, wait until every secondary node refuses the replication user, wait for quiet user streams, write the epoch, then open $settings to applications".into(),
            ],
            warnings,
            primary_settings_before: None,
            fence: planned_fence,
        });
    }

    // Revoke.
    if user.can_disable && !user.disabled {
        sides
            .admin
            .disable_user(&sides.replicator)
            .await
            .map_err(|e| secondary_err("disabling the replication user", e))?;
        steps.push(format!(
            "disabled the replication user {:?}",
            sides.replicator
        ));
    }
    if let Some(won) = close_secondary(sides, before.as_ref()).await? {
        steps.push(format!("another promotion wrote epoch {} first", won.epoch));
        return already_promoted(sides, options, won, steps, warnings).await;
    }
    steps.push("closed the secondary's $settings to everyone but $admins".into());
    let fence = match user.probe {
        Some(probe) => {
            let nodes = prove_fence(sides, probe).await?;
            steps.push(format!(
                "fence proven: the replication user is refused on {nodes} node{}",
                if nodes == 1 { "" } else { "s" }
            ));
            match probe {
                Probe::Authentication => Fence::Proven { nodes },
                Probe::WriteAcl => planned_fence,
            }
        }
        None => {
            steps.push(
                "no fence: the secondary runs insecure, so the replication user cannot be refused (--unfenced)"
                    .into(),
            );
            Fence::Unfenced
        }
    };
    settle(&sides.admin).await?;
    steps.push(
        "the secondary's user streams are quiet: no write of the replication user is in flight"
            .into(),
    );

    // Measure again: the replicator may have applied more before it was revoked.
    applied = last_applied(config, &sides.admin).await?;
    if primary_reachable {
        tail = measure(sides, config, applied, false).await;
    }
    let loss = match &tail {
        Ok(t) => data_loss(&sides.primary, t).await,
        Err(_) => DataLoss::default_unknown(),
    };
    let mut record = make_record(applied, &tail, loss);

    // Commit point.
    let mut after = control.as_ref().map(|c| c.number);
    loop {
        match record::append(&sides.admin, after, &record)
            .await
            .map_err(control_err)?
        {
            Appended::Written(_) => break,
            Appended::Lost(Some(winner)) if winner.promoted().is_some() => {
                let won = winner.record;
                let mut steps = steps;
                steps.push(format!("another promotion wrote epoch {} first", won.epoch));
                roll_forward(sides, &won, &mut steps).await?;
                return Ok(PromoteReport {
                    outcome: Outcome::AlreadyPromoted,
                    record: won,
                    primary_reachable,
                    missing: Vec::new(),
                    steps,
                    warnings,
                    primary_settings_before: None,
                    fence: Fence::Unknown,
                });
            }
            // `run`'s setup wrote a secondary record meanwhile: promote after it.
            Appended::Lost(Some(other)) => {
                record.epoch = other.record.epoch.next().unwrap_or(record.epoch);
                after = Some(other.number);
            }
            Appended::Lost(None) => after = None,
        }
    }
    steps.push(format!(
        "wrote epoch {} to {}",
        record.epoch,
        record::CONTROL_STREAM
    ));

    sides
        .admin
        .write_settings(&opened, uuid::Uuid::new_v4(), None, ExpectedVersion::Any)
        .await
        .map_err(|e| {
            PromoteError::Internal(format!(
                "the secondary is promoted (epoch {}) but opening it to applications failed: {e}. Rerun `standby promote` to complete it",
                record.epoch
            ))
        })?;
    steps.push("opened the secondary's $settings to applications".into());

    if options.fence_primary && fenced_primary.is_none() {
        match fence_primary(&sides.primary).await {
            Ok(before) => {
                steps
                    .push("fenced the old primary: only $admins may write its user streams".into());
                fenced_primary = Some(before);
            }
            Err(e) => warnings.push(format!("could not fence the old primary: {e}")),
        }
    }
    Ok(PromoteReport {
        outcome: Outcome::Promoted,
        missing: missing_of(&tail),
        record,
        primary_reachable,
        steps,
        warnings,
        primary_settings_before: fenced_primary
            .map(|b| b.map_or(Value::Null, |s| s.as_json().clone())),
        fence,
    })
}

impl DataLoss {
    fn default_unknown() -> DataLoss {
        DataLoss {
            events: None,
            other_records: None,
            bytes: None,
            seconds: None,
            primary_head: None,
            note: None,
        }
    }
}

/// Completes a recorded promotion whose opening did not happen: the secondary still closed.
async fn roll_forward(
    sides: &Sides,
    promoted: &EpochRecord,
    steps: &mut Vec<String>,
) -> Result<(), PromoteError> {
    let Some(opened) = &promoted.opened_settings else {
        return Ok(());
    };
    let before = promoted.settings_before.clone().map(SystemSettings::new);
    let current = sides
        .admin
        .read_settings()
        .await
        .map_err(|e| secondary_err("reading $settings", e))?;
    if current.as_ref() == Some(&acl::closed(before.as_ref())) {
        sides
            .admin
            .write_settings(
                &SystemSettings::new(opened.clone()),
                uuid::Uuid::new_v4(),
                None,
                ExpectedVersion::Any,
            )
            .await
            .map_err(|e| secondary_err("opening $settings", e))?;
        steps.push(format!(
            "completed epoch {}: opened the secondary's $settings to applications",
            promoted.epoch
        ));
    }
    Ok(())
}

/// The key of a fenced primary's `$settings` that keeps the document the fence replaced (or
/// `null`: there was none). It travels in the same write as the fence, so an interrupted
/// `switchover` never leaves a fence whose original is lost, and a re-run or an undo restores the
/// original rather than the fence. The server skips keys it does not know in `$settings`
/// (`Data/SystemSettings.cs` `FromJsonBytes`, v5 to KurrentDB), so the fence itself is unchanged.
pub const FENCED_FROM_KEY: &str = "standbyFencedFrom";

/// The settings a primary had before standby fenced it: the recorded original when `current` is
/// a fence of ours, else `current` itself.
fn original_settings(current: Option<&SystemSettings>) -> Option<SystemSettings> {
    match current.and_then(|c| c.as_json().get(FENCED_FROM_KEY)) {
        Some(Value::Null) => None,
        Some(original) => Some(SystemSettings::new(original.clone())),
        None => current.cloned(),
    }
}

/// Closes the primary's `$settings` to everyone but `$admins`, recording the original in the
/// same document ([`FENCED_FROM_KEY`]); returns the original. Running it again on a fenced
/// primary changes nothing and returns the same original.
async fn fence_primary(primary: &Client) -> Result<Option<SystemSettings>, esdb::Error> {
    let current = primary.read_settings().await?;
    let before = original_settings(current.as_ref());
    let mut fence = acl::closed(before.as_ref()).as_json().clone();
    if let Value::Object(document) = &mut fence {
        document.insert(
            FENCED_FROM_KEY.into(),
            before.as_ref().map_or(Value::Null, |s| s.as_json().clone()),
        );
    }
    let fence = SystemSettings::new(fence);
    if current.as_ref() != Some(&fence) {
        primary
            .write_settings(&fence, uuid::Uuid::new_v4(), None, ExpectedVersion::Any)
            .await?;
    }
    Ok(before)
}

/// Puts the primary's original settings back (undoing [`fence_primary`]) and reads them back:
/// `Ok(true)` only when the primary now holds them.
async fn unfence_primary(
    primary: &Client,
    before: Option<&SystemSettings>,
) -> Result<bool, esdb::Error> {
    let settings = before
        .cloned()
        .unwrap_or_else(|| SystemSettings::new(Value::Object(Default::default())));
    primary
        .write_settings(&settings, uuid::Uuid::new_v4(), None, ExpectedVersion::Any)
        .await?;
    let now = primary.read_settings().await?;
    Ok(now.as_ref() == Some(&settings))
}

/// How a probe tells that the replication user is revoked on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The account was disabled: `GET /users/$current` with its credentials. It needs nothing
    /// but authentication, so its 401 means the node no longer accepts the credentials (the
    /// cached principal is gone), never that some ACL happens to exclude the user. A write to a
    /// `$standby-*` stream would be refused by the `$admins`-only default of system streams when
    /// setup never granted them, mistaking an enabled user for a fenced one. It writes nothing.
    Authentication,
    /// No user management: only the write ACL fences the user. An append to a user stream with
    /// an expected version no stream reaches: refused with 401 by the closed `$settings`, or
    /// answered "wrong expected version" (nothing written) while the user may still write.
    WriteAcl,
}

/// The client settings (replication user) for every node of the secondary cluster, by address:
/// the alive members of its gossip when the node serves it, else the configured address.
async fn secondary_nodes(sides: &Sides) -> Vec<(String, ClientConfig)> {
    let configured = &sides.replicator_config;
    let mut nodes = std::collections::BTreeMap::new();
    if let Ok(gossip) = sides.admin.gossip().await {
        for member in gossip.members.iter().filter(|m| m.is_alive) {
            if let Some(endpoint) = &member.http_endpoint {
                let config = configured.for_node(&endpoint.host, endpoint.port);
                nodes.insert(format!("{}:{}", endpoint.host, endpoint.port), config);
            }
        }
    }
    if nodes.is_empty() {
        let url = &configured.base_url;
        let label = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        );
        nodes.insert(label, configured.clone());
    }
    nodes.into_iter().collect()
}

/// Whether `node` refuses the replication user's request.
async fn refuses(client: &Client, probe: Probe) -> Result<bool, esdb::Error> {
    let answer = match probe {
        Probe::Authentication => client.authenticate().await,
        Probe::WriteAcl => {
            let event = EventData::json(
                uuid::Uuid::new_v4(),
                "standby-fence-probe",
                bytes::Bytes::from_static(b"{}"),
            );
            let never = ExpectedVersion::Exact(
                StreamRevision::new(i64::MAX as u64 - 1).unwrap_or(StreamRevision::START),
            );
            client
                .append_events(FENCE_PROBE_STREAM, &[event], never)
                .await
                .map(|_| ())
        }
    };
    match answer {
        Err(e) if e.is_access_denied() => Ok(true),
        Err(e) if e.is_transient() => Err(e),
        _ => Ok(false),
    }
}

/// Sends the replication user's requests to every secondary node until each refuses them;
/// returns how many nodes were proven. Exit 3 (nothing promoted) after the fence timeout.
async fn prove_fence(sides: &Sides, probe: Probe) -> Result<usize, PromoteError> {
    let nodes = secondary_nodes(sides).await;
    let mut pending = Vec::new();
    let count = nodes.len();
    for (url, config) in nodes {
        let client = Client::connect(config)
            .map_err(|e| PromoteError::Config(format!("[secondary] for node {url}: {e}")))?;
        pending.push((url, client, None::<String>));
    }
    let deadline = Instant::now() + sides.fence_timeout;
    // Bounded by the deadline: every round waits at least PROBE_PAUSE.
    loop {
        let mut still = Vec::new();
        for (url, client, _) in pending {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining.max(PROBE_PAUSE), refuses(&client, probe)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => still.push((url, client, Some("accepted".to_owned()))),
                Ok(Err(e)) => still.push((url, client, Some(format!("unreachable: {e}")))),
                Err(_) => still.push((url, client, Some("no answer".to_owned()))),
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(count);
        }
        if Instant::now() >= deadline {
            let which: Vec<String> = pending
                .iter()
                .map(|(url, _, why)| format!("{url} ({})", why.as_deref().unwrap_or("?")))
                .collect();
            let cause = match probe {
                Probe::Authentication => "the node still authenticates it: its credential cache has not dropped the disabled account (it polls $users-password-notifications every 1 s, every 10 s after read errors; 5.x, 20.10 and 21.10.0-21.10.1 can keep a disabled user cached until restart)",
                Probe::WriteAcl => "the node still lets it write user streams: the closed $settings is not in force there yet",
            };
            return Err(PromoteError::Refused(format!(
                "the replication user {:?} is not refused by {} of {} secondary nodes after {:?}: {}; {cause}. Nothing was promoted: the secondary stays closed to everyone but $admins{}. By hand: stop every `standby run` against this secondary, restart the listed nodes (a restart empties the credential cache) or wait for them to refuse the user, then rerun `standby promote`; raise promotion.fence_timeout_secs for a slow cluster",
                sides.replicator,
                pending.len(),
                count,
                sides.fence_timeout,
                which.join(", "),
                if probe == Probe::Authentication { " and the replication user stays disabled" } else { "" },
            )));
        }
        tokio::time::sleep(PROBE_PAUSE).await;
    }
}

/// Whether `page` holds a write to a user stream. The server writes `$` streams on its own
/// (statistics, scavenges, elections, user management), so only user streams count.
fn writes_user_streams(page: &esdb::AllPage) -> bool {
    page.entries.iter().any(|e| !e.stream().starts_with('$'))
}

/// Waits until no user stream of the secondary has been written for [`SETTLE`], bounded by
/// [`SETTLE_LIMIT`].
async fn settle(admin: &Client) -> Result<(), PromoteError> {
    let started = Instant::now();
    let mut from = crate::demo::primary_head(admin)
        .await
        .map_err(|e| secondary_err("reading the head of $all", e))?;
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(SETTLE / 4).await;
        // Read everything written since the last look; at most 100 pages a round.
        for _ in 0..100 {
            let page = admin
                .read_all_forward(from, PageSize::MAX, &ReadOptions::embed(Embed::None))
                .await
                .map_err(|e| secondary_err("reading $all", e))?;
            if writes_user_streams(&page) {
                quiet_since = Instant::now();
            }
            match page.next {
                Some(next) if !page.entries.is_empty() => from = next,
                _ => break,
            }
            if page.is_end {
                break;
            }
        }
        if quiet_since.elapsed() >= SETTLE {
            return Ok(());
        }
        if started.elapsed() > SETTLE_LIMIT {
            return Err(PromoteError::Refused(format!(
                "the secondary's user streams are still being written {SETTLE_LIMIT:?} after the replication user was refused everywhere: an admin is writing (is the replication user in $admins?). Nothing was promoted; the secondary is closed to everyone but $admins. Stop the writer and rerun"
            )));
        }
    }
}

/// `standby switchover` (see the module documentation).
///
/// # Errors
/// [`PromoteError`]; on a refusal the primary's fence has been removed again.
///
/// `interrupt` (SIGINT/SIGTERM) during the drain undoes the primary's fence and stops; once the
/// promotion itself has begun it runs to its end. A switchover killed outright leaves the fence,
/// with the primary's original `$settings` recorded in it: a re-run finishes or undoes it.
pub async fn switchover(
    config: &Config,
    timeout: Duration,
    reason: Option<String>,
    interrupt: &tokio_util::sync::CancellationToken,
) -> Result<PromoteReport, PromoteError> {
    let sides = Sides::new(config)?;
    let control = record::read(&sides.admin).await.map_err(control_err)?;
    if let Some(promoted) = control.as_ref().and_then(Control::promoted) {
        return Ok(PromoteReport {
            outcome: Outcome::AlreadyPromoted,
            record: promoted.clone(),
            primary_reachable: false,
            missing: Vec::new(),
            steps: Vec::new(),
            warnings: Vec::new(),
            primary_settings_before: None,
            fence: Fence::Unknown,
        });
    }
    // Before the primary is touched: a secondary that cannot be fenced is not switched over.
    match sides.admin.security().await {
        Ok(Security::Secure | Security::PlaintextWithAuth) => {}
        Ok(mode) => {
            return Err(PromoteError::Refused(format!(
                "the secondary's replication user cannot be fenced ({mode}). Nothing was changed. Stop `standby run`, wait until `standby status` shows no lag, then use `standby promote --force --unfenced`"
            )))
        }
        Err(e) => return Err(secondary_err("asking how the secondary authenticates", e)),
    }
    let start = last_applied(config, &sides.admin).await?;
    let before = fence_primary(&sides.primary).await.map_err(|e| {
        PromoteError::Refused(format!(
            "cannot fence the primary ({e}); switchover needs a reachable primary and [primary] credentials in $admins. Nothing was changed. If the primary is lost, use `standby promote`"
        ))
    })?;
    let undo = |why: String| {
        let primary = &sides.primary;
        let before = before.clone();
        async move {
            let by_hand = before
                .as_ref()
                .map_or_else(|| "{}".to_owned(), |s| s.as_json().to_string());
            match unfence_primary(primary, before.as_ref()).await {
                Ok(true) => PromoteError::Refused(format!(
                    "{why}. The primary's fence was removed (its original $settings are back, checked): applications can write to it again. Nothing was promoted"
                )),
                Ok(false) => PromoteError::Refused(format!(
                    "{why}. The primary's original $settings were written back but do not read back as written: check them; they should be {by_hand}. Nothing was promoted"
                )),
                Err(e) => PromoteError::Refused(format!(
                    "{why}. Removing the primary's fence failed too ({e}): it is still read-only for applications. Rerun `standby switchover` to finish or undo it, or write these $settings to the primary as an admin: {by_hand}"
                )),
            }
        }
    };
    // A switchover killed after it began promoting left the secondary closed (and the replication
    // user disabled), so `run` cannot drain any more. It began promoting only after a complete
    // drain, under the primary's fence: if the tail still shows nothing missing, go on promoting.
    let closed = match (&control, sides.admin.read_settings().await) {
        (Some(c), Ok(current)) => {
            let before = c.record.settings_before.clone().map(SystemSettings::new);
            current == Some(acl::closed(before.as_ref()))
        }
        _ => false,
    };
    let mut resumed = false;
    if closed {
        match measure(&sides, config, start, true).await {
            Ok(t) if t.missing.is_empty() && t.mismatched.is_empty() => resumed = true,
            Ok(t) => {
                return Err(undo(format!(
                    "the secondary is closed by a promotion that did not finish, and it lacks {} events of the fenced primary, which it cannot receive while closed. To replicate instead: enable the replication user, start `standby run --takeover`, then rerun `standby switchover`",
                    t.missing.len()
                ))
                .await)
            }
            Err(e) => return Err(undo(format!("checking the tail failed: {e}")).await),
        }
    }
    let deadline = Instant::now() + timeout;
    let mut moved_after_fence = false;
    if !resumed {
        loop {
            let head = match crate::demo::primary_head(&sides.primary).await {
                Ok(h) => h,
                Err(e) => {
                    return Err(undo(format!(
                        "the primary stopped answering during switchover: {e}"
                    ))
                    .await)
                }
            };
            let applied = last_applied(config, &sides.admin).await?;
            if applied.commit() >= head.commit() {
                match measure(&sides, config, start, true).await {
                    // Admins bypass the fence: drain again if one still wrote meanwhile.
                    Ok(t) if t.missing.is_empty() && t.mismatched.is_empty() => {
                        if t.head.commit() <= head.commit() {
                            break;
                        }
                        moved_after_fence = true;
                    }
                    Ok(t) if !t.mismatched.is_empty() => {
                        let m = &t.mismatched[0];
                        return Err(undo(format!(
                        "the secondary holds a different event at {}@{} (primary id {:?}, secondary id {}): the clusters diverged; run `standby verify`",
                        m.primary.revision, m.primary.stream, m.primary.event_id, m.secondary_id
                    ))
                    .await);
                    }
                    Ok(_) => {}
                    Err(e) => return Err(undo(format!("checking the tail failed: {e}")).await),
                }
            }
            if interrupt.is_cancelled() {
                return Err(undo(format!(
                "switchover interrupted before the promotion began: the secondary has applied up to {applied}, the fenced primary's head is {head}"
            ))
            .await);
            }
            if Instant::now() >= deadline {
                let why = if moved_after_fence {
                    "the fenced primary kept receiving writes (members of $admins bypass the fence: stop them)"
                } else {
                    "is `standby run` running?"
                };
                return Err(undo(format!(
                "the secondary did not catch up within {timeout:?}: it has applied up to {applied}, the fenced primary's head is {head}; {why}"
            ))
            .await);
            }
            tokio::select! {
                _ = interrupt.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
    let options = PromoteOptions {
        force: true,
        dry_run: false,
        fence_primary: false,
        reason: reason.or_else(|| Some("switchover".into())),
        max_lag: Some(0),
        unfenced: false,
    };
    let mut report = promote_with(&sides, config, &options, "switchover", Some(before.clone()))
        .await
        .map_err(|e| {
            PromoteError::Refused(format!(
                "{e} (the primary stays fenced; see docs/failover.md to undo)"
            ))
        })?;
    report.steps.insert(
        0,
        "fenced the primary: only $admins may write its user streams".into(),
    );
    if resumed {
        report.steps.insert(
            1,
            "resumed an interrupted switchover: the secondary, closed by its promotion, already held the fenced primary's tail".into(),
        );
    }
    // The drain proved the secondary complete up to the fence; a write an admin made after the
    // last check is in the promotion's own measure. Say which.
    let lost = report.record.data_loss.as_ref().map_or(Some(0), |l| {
        l.events.zip(l.other_records).map(|(e, o)| e + o)
    });
    if lost == Some(0) {
        report.steps.insert(
            1,
            "the secondary holds every event the primary acknowledged, with the same ids".into(),
        );
    } else {
        report.warnings.push(format!(
            "records written to the fenced primary after the drain (by a member of $admins, which the fence does not bind) are not on this cluster ({}): `standby divergence` lists them",
            lost.map_or_else(|| "count unknown".to_owned(), |n| format!("{n} records"))
        ));
    }
    report.primary_settings_before = Some(before.map_or(Value::Null, |s| s.as_json().clone()));
    Ok(report)
}
