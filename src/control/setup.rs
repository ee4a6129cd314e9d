//! Secondary setup, run by `run` at every start with the `[secondary.admin]` identity; idempotent.
//!
//! 1. Refuse a promoted secondary (its last control record says `primary`).
//! 2. Fence: `$settings` lets only the replication user and `$admins` change user streams
//!    ([`acl::fenced`]); applications keep their read rights. The settings found the first time
//!    are kept in the control record, so promotion can put them back.
//! 3. Grant the replication user its own state streams (`$standby-checkpoint`,
//!    `$standby-offsets`, `$standby-fidelity`, `$standby-lease`): system streams are `$admins`-only by default, and
//!    the replication user must not be an admin, or the fence would not bind it (contract §8).
//! 4. Write epoch 1 (role `secondary`) when the control stream is empty.
//!
//! It refuses a replication user that is an admin (no fence binds it), and a secondary whose
//! `$settings` a promotion has closed (unless `run --takeover`).

use serde_json::{json, Value};

use super::acl::{self, ADMINS};
use super::record::{self, Appended, Control, ControlError, EpochRecord, Role};
use crate::checkpoint::PrimaryId;
use crate::esdb::{self, Client, Lookup, SystemSettings};
use crate::fidelity::FIDELITY_STREAM;
use crate::lease::LEASE_STREAM;
use crate::offsets::OFFSETS_STREAM;
use crate::pipeline::{CHECKPOINT_STREAM, COPIES_KEPT};
use crate::position::{Epoch, ExpectedVersion};

/// The state streams the replication user writes, and their `$maxCount` if bounded.
pub const STATE_STREAMS: &[(&str, Option<u64>)] = &[
    (CHECKPOINT_STREAM, Some(COPIES_KEPT)),
    (OFFSETS_STREAM, None),
    (FIDELITY_STREAM, None),
    (LEASE_STREAM, Some(crate::lease::RECORDS_KEPT)),
];

/// Why setup did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The secondary is a primary now.
    #[error(
        "the secondary was promoted: {0}. It is a primary now and `run` never writes to it. To \
         make it a standby again, replicate into a new, empty cluster (docs/failover.md)"
    )]
    Promoted(Box<EpochRecord>),
    /// `$settings` changed between reading and fencing them: read everything again.
    #[error(
        "the secondary's $settings changed while setup was writing the fence; reading them again"
    )]
    Raced,
    /// `$settings` are closed: a promotion is running or stopped before its epoch.
    #[error(
        "the secondary's $settings are closed to everyone but $admins: a `standby promote` is \
         running on it, or stopped before writing its epoch (the replication user may be disabled \
         too). If a promotion is running, let it finish. To replicate instead, enable the \
         replication user and start `standby run --takeover`, which fences the secondary for \
         replication again"
    )]
    Closed,
    /// The replication user is an admin: the fence cannot bind it.
    #[error(
        "the replication user {login:?} is an admin ({why}): admins bypass ACLs, so no fence can \
         keep it out after promotion and a replicator left running would keep writing. Create a \
         dedicated replication user outside $admins (not named `admin`), set [secondary] \
         username to it, and keep an admin in [secondary.admin]"
    )]
    AdminReplicator { login: String, why: &'static str },
    #[error("{0}")]
    Control(#[from] ControlError),
    #[error("setting up the secondary as {admin}: {source}")]
    Client {
        admin: String,
        #[source]
        source: esdb::Error,
    },
}

impl SetupError {
    pub fn is_transient(&self) -> bool {
        match self {
            SetupError::Control(e) => e.is_transient(),
            SetupError::Client { source, .. } => source.is_transient(),
            SetupError::Promoted(_) | SetupError::AdminReplicator { .. } | SetupError::Closed => {
                false
            }
            SetupError::Raced => true,
        }
    }
}

/// What setup found and did.
#[derive(Debug, Clone)]
pub struct Setup {
    pub control: Control,
    /// The fence was (re)written now.
    pub fenced_now: bool,
}

/// Runs the setup (see the module documentation).
///
/// # Errors
/// [`SetupError`].
pub async fn ensure(
    admin: &Client,
    admin_login: &str,
    replicator: &str,
    primary: &PrimaryId,
    primary_url: &str,
    takeover: bool,
) -> Result<Setup, SetupError> {
    let client_err = |source| SetupError::Client {
        admin: admin_login.to_owned(),
        source,
    };
    let mut control = record::read(admin).await?;
    if let Some(promoted) = control.as_ref().and_then(Control::promoted) {
        return Err(SetupError::Promoted(Box::new(promoted.clone())));
    }
    refuse_admin(admin, admin_login, replicator).await?;
    let (current, version) = admin.read_settings_versioned().await.map_err(client_err)?;
    let before = match &control {
        Some(c) => c.record.settings_before.clone().map(SystemSettings::new),
        None => current.clone(),
    };
    // Closed settings on a set-up secondary are a promotion's first step: re-fencing them would
    // re-admit the replication user behind its back.
    if !takeover && control.is_some() && current.as_ref() == Some(&acl::closed(before.as_ref())) {
        return Err(SetupError::Closed);
    }
    let fence = acl::fenced(before.as_ref(), replicator);
    let fenced_now = current.as_ref() != Some(&fence);
    if fenced_now {
        if control.is_some() {
            tracing::warn!("the secondary's $settings no longer fence it; writing the fence again");
        }
        // Conditional on the settings read: a promotion that changed them since (closed, then
        // opened the cluster) must not be overwritten by this fence. The
        // retry reads the control record again and finds the promotion.
        match admin
            .write_settings(&fence, uuid::Uuid::new_v4(), None, version)
            .await
        {
            Ok(_) => {}
            Err(esdb::Error::WrongExpectedVersion { .. }) => return Err(SetupError::Raced),
            Err(e) => return Err(client_err(e)),
        }
    }
    for (stream, max_count) in STATE_STREAMS {
        grant_state_stream(admin, stream, *max_count, replicator)
            .await
            .map_err(client_err)?;
    }
    let needs_record = control
        .as_ref()
        .is_none_or(|c| c.record.replication_user.as_deref() != Some(replicator));
    if needs_record {
        let record = EpochRecord {
            epoch: control.as_ref().map_or(Epoch::new(1), |c| c.record.epoch),
            role: Role::Secondary,
            at: record::utc_now(),
            by: admin_login.to_owned(),
            primary: Some(primary.0.clone()),
            primary_url: Some(primary_url.to_owned()),
            replication_user: Some(replicator.to_owned()),
            settings_before: before.map(|s| s.as_json().clone()),
            reason: None,
            last_applied: None,
            data_loss: None,
            opened_settings: None,
            replication_user_disabled: None,
            verb: None,
        };
        match record::append(admin, control.as_ref().map(|c| c.number), &record).await? {
            Appended::Written(number) => control = Some(Control { number, record }),
            Appended::Lost(winner) => {
                if let Some(promoted) = winner.as_deref().and_then(Control::promoted) {
                    return Err(SetupError::Promoted(Box::new(promoted.clone())));
                }
                control = winner.map(|w| *w);
            }
        }
    }
    let control = control.ok_or(SetupError::Control(ControlError::Corrupt {
        number: crate::position::StreamRevision::START,
        detail: "the control stream vanished during setup".into(),
    }))?;
    Ok(Setup {
        control,
        fenced_now,
    })
}

/// Refuses a replication user the fence cannot bind: the `[secondary.admin]` login itself, the
/// login `admin` (an admin by name whatever its groups since v20, the server's `WellKnownAssertions.cs`), or a member of
/// `$admins`. Where the node does not manage accounts the groups cannot be read, and only the
/// names are checked.
async fn refuse_admin(
    admin: &Client,
    admin_login: &str,
    replicator: &str,
) -> Result<(), SetupError> {
    let refuse = |why| SetupError::AdminReplicator {
        login: replicator.to_owned(),
        why,
    };
    if replicator == "admin" {
        return Err(refuse("the login `admin` is an admin by name since v20"));
    }
    if replicator == admin_login {
        return Err(refuse("the same login as [secondary.admin]"));
    }
    match admin.get_user(replicator).await {
        Ok(Lookup::Found(user)) if user.groups.iter().any(|g| g == ADMINS) => {
            Err(refuse("a member of $admins"))
        }
        Ok(_) => Ok(()),
        Err(e) if e.is_transient() => Err(SetupError::Client {
            admin: admin_login.to_owned(),
            source: e,
        }),
        Err(e) => {
            tracing::debug!(error = %e, "cannot look up the replication user's groups");
            Ok(())
        }
    }
}

/// Makes `stream`'s metadata grant every right to `replicator` and `$admins` (and carry
/// `$maxCount`), keeping any other keys; writes only when something is missing.
async fn grant_state_stream(
    admin: &Client,
    stream: &str,
    max_count: Option<u64>,
    replicator: &str,
) -> Result<(), esdb::Error> {
    let current = match admin.read_stream_metadata(stream).await? {
        Lookup::Found(meta) => meta.into_json(),
        Lookup::NotFound | Lookup::Deleted => Value::Object(Default::default()),
    };
    let mut document = match &current {
        Value::Object(map) => map.clone(),
        _ => Default::default(),
    };
    let roles = json!([replicator, ADMINS]);
    document.insert(
        "$acl".into(),
        json!({"$r": roles, "$w": roles, "$d": roles, "$mr": roles, "$mw": roles}),
    );
    if let Some(n) = max_count {
        document.insert("$maxCount".into(), json!(n));
    }
    let wanted = Value::Object(document);
    if wanted == current {
        return Ok(());
    }
    let body = serde_json::to_vec(&wanted).expect("JSON serialises");
    admin
        .write_stream_metadata(
            stream,
            uuid::Uuid::new_v4(),
            body.into(),
            ExpectedVersion::Any,
        )
        .await?;
    Ok(())
}

impl crate::retry::Transient for SetupError {
    fn is_transient(&self) -> bool {
        SetupError::is_transient(self)
    }
}
