//! `standby check`: a read-only preflight of both clusters and the local state, one line per
//! check with ok / warn / fail and what to do, before the first `run` or during an incident.
//!
//! It writes nothing anywhere. A `fail` is something `run` would refuse, or a setup in which a
//! promotion could not fence the replicator; a `warn` is something that works but that an
//! operator should know. `standby check` exits 0 when nothing fails, 3 otherwise.

use std::fmt;

use serde::Serialize;

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::config::{Config, EndpointConfig};
use crate::control::record;
use crate::esdb::{self, Client, Embed, Lookup, PageSize, ReadOptions, Security};
use crate::pipeline::plan::{classify, StreamKind};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked, e.g. `secondary security`.
    pub check: String,
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do, for a warn or a fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every finding, in the order checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether `run` can start safely: no check failed.
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.verdict != Verdict::Fail)
    }

    fn push(&mut self, check: &str, verdict: Verdict, detail: String, fix: Option<&str>) {
        self.findings.push(Finding {
            check: check.to_owned(),
            verdict,
            detail,
            fix: fix.map(str::to_owned),
        });
    }
    fn ok(&mut self, check: &str, detail: String) {
        self.push(check, Verdict::Ok, detail, None);
    }
    fn warn(&mut self, check: &str, detail: String, fix: &str) {
        self.push(check, Verdict::Warn, detail, Some(fix));
    }
    fn fail(&mut self, check: &str, detail: String, fix: &str) {
        self.push(check, Verdict::Fail, detail, Some(fix));
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            let verdict = match finding.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
            };
            write!(f, "{verdict}  {:<22} {}", finding.check, finding.detail)?;
            if let Some(fix) = &finding.fix {
                write!(f, "\n      {:<22} → {fix}", "")?;
            }
            writeln!(f)?;
        }
        let failed = self
            .findings
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .count();
        if failed == 0 {
            writeln!(f, "`standby run` can start.")
        } else {
            writeln!(
                f,
                "{failed} check(s) failed: fix them before `standby run`."
            )
        }
    }
}

/// What one cluster answered.
struct Side {
    /// The server generation, when `/info` says (`20.10.3.0` → 20).
    major: Option<u32>,
}

/// Runs every check. Never fails as a whole: an unreachable cluster is a finding.
pub async fn check(config: &Config) -> Report {
    let mut report = Report::default();
    let (primary, secondary) = match crate::pipeline::clients(config) {
        Ok(c) => c,
        Err(e) => {
            report.fail("configuration", e.to_string(), "fix the configuration file");
            return report;
        }
    };
    let admin = match crate::pipeline::admin_client(config) {
        Ok(a) => a,
        Err(e) => {
            report.fail("configuration", e.to_string(), "fix [secondary.admin]");
            return report;
        }
    };
    let p = reachable(&mut report, "primary", &primary, true).await;
    // The replication user does not read the secondary's `$all`; `[secondary.admin]` does.
    let s = match &admin {
        Some(admin) => reachable(&mut report, "secondary", admin, true).await,
        None => reachable(&mut report, "secondary", &secondary, false).await,
    };
    if let Some(side) = &p {
        security(&mut report, "primary", &config.primary, side, false, false).await;
    }
    if let Some(side) = &s {
        security(
            &mut report,
            "secondary",
            &config.secondary,
            side,
            true,
            config.promotion.allow_unfenced,
        )
        .await;
    }
    let primary_clock = match p {
        Some(_) => primary.clock_offset_secs().await.ok().flatten(),
        None => None,
    };
    let secondary_clock = match s {
        Some(_) => secondary.clock_offset_secs().await.ok().flatten(),
        None => None,
    };
    clock_skew(&mut report, primary_clock, secondary_clock);
    let Some(s) = s else {
        return report;
    };
    match &admin {
        None => report.warn(
            "admin identity",
            "no [secondary.admin]: setup cannot fence the secondary, and it cannot be promoted safely".into(),
            "configure [secondary.admin] with a member of $admins (docs/configuration.md)",
        ),
        Some(admin) => match admin.read_settings().await {
            Ok(_) => report.ok(
                "admin identity",
                format!(
                    "{} reads the secondary's $settings",
                    login(&config.secondary.admin.as_ref().map(|a| a.username.clone()))
                ),
            ),
            Err(e) => report.fail(
                "admin identity",
                format!("[secondary.admin] cannot read $settings: {e}"),
                "use a member of $admins in [secondary.admin], with the right password",
            ),
        },
    }
    replication_user(&mut report, config, admin.as_ref(), &s).await;
    let inspector = admin.clone().unwrap_or_else(|| secondary.clone());
    let identity = match &p {
        Some(_) => crate::pipeline::first_record_id(&primary, None)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    secondary_state(&mut report, &inspector, identity.as_ref()).await;
    checkpoint_file(&mut report, config, &inspector).await;
    lease(&mut report, &inspector).await;
    report
}

/// Beyond this, clocks disagree by more than the `Date` header's resolution explains, and by a
/// third of the default lease period: lag in seconds compares the clusters' timestamps, and the
/// lease compares this host's clock with the holder's.
pub const CLOCK_SKEW_WARN_SECS: f64 = 5.0;

/// The clusters' clocks against this host's and against each other.
fn clock_skew(report: &mut Report, primary: Option<f64>, secondary: Option<f64>) {
    const CHECK: &str = "clock skew";
    let (Some(p), Some(s)) = (primary, secondary) else {
        if primary.is_some() || secondary.is_some() {
            report.warn(
                CHECK,
                "a node sent no Date header: its clock cannot be compared".into(),
                "check the clocks by hand (NTP on every host)",
            );
        }
        return;
    };
    let between = p - s;
    let detail = format!(
        "primary {p:+.0} s, secondary {s:+.0} s against this host; {between:+.0} s between the clusters"
    );
    if [p, s, between]
        .iter()
        .any(|d| d.abs() > CLOCK_SKEW_WARN_SECS)
    {
        report.warn(
            CHECK,
            detail,
            "synchronise the clocks (NTP/chrony on every host): lag in seconds compares the two clusters' timestamps, and the lease compares this host's clock with the holder's",
        );
    } else {
        report.ok(CHECK, detail);
    }
}

fn login(name: &Option<String>) -> String {
    name.as_deref()
        .map_or_else(|| "(anonymous)".into(), |n| format!("{n:?}"))
}

async fn reachable(
    report: &mut Report,
    side: &str,
    client: &Client,
    read_all: bool,
) -> Option<Side> {
    let check = format!("{side} reachable");
    let info = match client.info().await {
        Ok(info) => info,
        Err(e) => {
            report.fail(
                &check,
                format!("{e}"),
                "check the URL, the network and that the node runs",
            );
            return None;
        }
    };
    let version = info.version.clone().unwrap_or_else(|| "unknown".into());
    let major = info
        .version
        .as_deref()
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok());
    if !info.atom_pub_enabled() {
        report.fail(
            &check,
            format!("version {version}: the AtomPub HTTP API is switched off"),
            "start the node with EnableAtomPubOverHttp: true (KURRENTDB_ENABLE_ATOM_PUB_OVER_HTTP=true)",
        );
        return Some(Side { major });
    }
    if !read_all {
        report.ok(&check, format!("version {version}"));
        return Some(Side { major });
    }
    match crate::demo::primary_head(client).await {
        Ok(head) => report.ok(&check, format!("version {version}, $all head {head}")),
        Err(e) => report.fail(
            &check,
            format!("version {version}, but reading $all failed: {e}"),
            "the configured user must read $all (a member of $admins, or granted in $settings)",
        ),
    }
    Some(Side { major })
}

/// Secure (TLS with authentication), plaintext with authentication, external accounts, or
/// insecure (every request runs as `system`). On an insecure secondary the fence binds no one;
/// with external accounts only ACLs fence.
async fn security(
    report: &mut Report,
    side: &str,
    endpoint: &EndpointConfig,
    node: &Side,
    is_secondary: bool,
    allow_unfenced: bool,
) {
    let check = format!("{side} security");
    let Some(client) = endpoint
        .client_config()
        .ok()
        .and_then(|c| Client::connect(c).ok())
    else {
        return;
    };
    let mode = match client.security().await {
        Ok(mode) => mode,
        Err(e) => {
            report.warn(
                &check,
                format!("cannot tell: {e}"),
                "check that the node answers /info",
            );
            return;
        }
    };
    match mode {
        Security::Insecure if is_secondary && !allow_unfenced => report.fail(
            &check,
            "insecure: every request runs as system, so no ACL or disabled account binds anyone; a promotion cannot fence the replicator".into(),
            crate::pipeline::UNFENCEABLE_FIX,
        ),
        Security::Insecure if is_secondary => report.warn(
            &check,
            "insecure: every request runs as system, so a promotion cannot fence the replicator (promotion.allow_unfenced is set)".into(),
            "stop every `standby run` by hand before `standby promote --unfenced`",
        ),
        Security::Insecure => report.warn(
            &check,
            "insecure: every request runs as system".into(),
            "run the primary in secure mode; anyone who reaches it can write",
        ),
        Security::External { .. } if is_secondary => report.warn(
            &check,
            format!("{mode}: the replication user cannot be disabled, so only ACLs fence it, and a stream $acl that names it re-admits it"),
            "fence by disabling the replication user in the external provider when promoting; `promote` refuses without --unfenced",
        ),
        Security::Secure | Security::External { tls: true } => report.ok(&check, mode.to_string()),
        Security::PlaintextWithAuth | Security::External { tls: false } => {
            let v5 = node.major.is_some_and(|m| m < 20);
            report.warn(
                &check,
                format!(
                    "plaintext with authentication ({}): passwords travel in clear text",
                    if v5 { "v5" } else { "--disable-tls" }
                ),
                "use https:// and the node's CA (ca_file) outside a trusted network",
            )
        }
    }
}

async fn replication_user(
    report: &mut Report,
    config: &Config,
    admin: Option<&Client>,
    secondary: &Side,
) {
    const CHECK: &str = "replication user";
    let Some(login) = config.secondary.username.clone() else {
        report.fail(
            CHECK,
            "no [secondary] username".into(),
            "set [secondary] username to a dedicated replication user outside $admins",
        );
        return;
    };
    let v20 = secondary.major.is_none_or(|m| m >= 20);
    if login == "admin" && v20 {
        report.fail(
            CHECK,
            "the replication user is the login `admin`, an administrator by name on 20+ servers: ACLs do not bind it, so a promotion cannot fence it".into(),
            "create a dedicated replication user outside $admins (docs/failover.md)",
        );
        return;
    }
    let Some(admin) = admin else {
        report.warn(
            CHECK,
            format!("{login:?}: not checked without [secondary.admin]"),
            "configure [secondary.admin] so that the account can be checked and disabled at promotion",
        );
        return;
    };
    match admin.get_user(&login).await {
        Ok(Lookup::Found(user)) if user.disabled => report.fail(
            CHECK,
            format!("{login:?} is disabled"),
            "enable it (if the secondary was promoted, it must stay disabled: replicate into a new cluster instead)",
        ),
        Ok(Lookup::Found(user)) if user.groups.iter().any(|g| g == "$admins") => report.fail(
            CHECK,
            format!("{login:?} is a member of $admins: admins bypass ACLs, so a promotion cannot fence it"),
            "remove it from $admins; setup grants it what it needs",
        ),
        Ok(Lookup::Found(user)) => report.ok(
            CHECK,
            format!("{login:?} exists, enabled, not an admin (groups: {:?})", user.groups),
        ),
        Ok(_) => report.warn(
            CHECK,
            format!("{login:?} is unknown to the secondary's user management (an external provider?): promotion can fence it by ACL only"),
            "prefer an internal user, which promotion disables",
        ),
        Err(esdb::Error::NotFound { .. }) => report.warn(
            CHECK,
            "the secondary serves no user management (/users): promotion can fence the replication user by ACL only".into(),
            "run the secondary with internal users",
        ),
        Err(e) => report.warn(CHECK, format!("cannot look it up: {e}"), "check [secondary.admin]"),
    }
}

/// Empty, set up as this primary's secondary, promoted, or holding data of its own.
async fn secondary_state(
    report: &mut Report,
    inspector: &Client,
    identity: Option<&crate::checkpoint::PrimaryId>,
) {
    const CHECK: &str = "secondary state";
    let control = match record::read(inspector).await {
        Ok(c) => c,
        Err(e) => {
            report.fail(
                CHECK,
                format!("cannot read its control stream: {e}"),
                "configure [secondary.admin], or grant the replication user $standby-control",
            );
            return;
        }
    };
    match &control {
        Some(c) if c.promoted().is_some() => report.fail(
            CHECK,
            format!("promoted: {}", c.record),
            "it is a primary now; `run` never writes to it. Replicate into a new, empty cluster (docs/failover.md)",
        ),
        Some(c) => match (c.record.primary.as_deref(), identity) {
            (Some(p), Some(id)) if p != id.0 => report.warn(
                CHECK,
                format!("set up as the secondary of database {p}, but the primary is database {id}"),
                "`run` accepts this only if the events before its checkpoint prove the same database (a scavenge removed the first record); otherwise point [primary] at the right cluster",
            ),
            _ => report.ok(CHECK, format!("set up as a secondary (epoch {})", c.record.epoch)),
        },
        None => match user_records(inspector).await {
            Ok(0) => report.ok(CHECK, "empty: replication starts from the beginning".into()),
            Ok(n) => report.warn(
                CHECK,
                format!("never set up, but it holds {n}+ records of user streams"),
                "replicate only into an empty cluster: its own data would mix with the primary's, and clashing streams halt replication",
            ),
            Err(e) => report.warn(
                CHECK,
                format!("cannot read its $all: {e}"),
                "configure [secondary.admin] to check it",
            ),
        },
    }
}

async fn user_records(client: &Client) -> Result<usize, esdb::Error> {
    let page = client
        .read_all_forward(
            crate::position::Position::START,
            PageSize::new(500).expect("valid"),
            &ReadOptions::embed(Embed::Rich),
        )
        .await?;
    Ok(page
        .entries
        .iter()
        .filter(|e| !matches!(classify(e.stream()), StreamKind::System))
        .count())
}

async fn checkpoint_file(report: &mut Report, config: &Config, inspector: &Client) {
    const CHECK: &str = "checkpoint file";
    let path = config.checkpoint.path.display();
    let local = match CheckpointStore::read(&config.checkpoint.path) {
        Ok(local) => local,
        Err(e) => {
            report.fail(
                CHECK,
                e.to_string(),
                "see the message; never delete a checkpoint to get past it",
            );
            return;
        }
    };
    let copy: Option<Checkpoint> = crate::pipeline::checkpoint_copy(inspector)
        .await
        .ok()
        .flatten();
    match (local, copy) {
        (None, None) => report.ok(CHECK, format!("{path}: none yet (a first run)")),
        (None, Some(copy)) => report.fail(
            CHECK,
            format!(
                "{path}: missing, but the secondary holds a copy at {}",
                copy.position
            ),
            "`standby checkpoint recover --config FILE`, or fix checkpoint.path",
        ),
        (Some(local), Some(copy)) if copy.position > local.position => report.fail(
            CHECK,
            format!(
                "{path} ({}) is older than its copy on the secondary ({})",
                local.position, copy.position
            ),
            "move it away and run `standby checkpoint recover --config FILE`",
        ),
        (Some(local), _) => report.ok(CHECK, format!("{path}: at {}", local.position)),
    }
}

async fn lease(report: &mut Report, inspector: &Client) {
    const CHECK: &str = "lease";
    match crate::lease::read_head(inspector).await {
        Ok(None) => report.ok(CHECK, "free".into()),
        Ok(Some(head)) if head.record.released => {
            report.ok(CHECK, format!("released: {}", head.record))
        }
        Ok(Some(head)) if head.record.expired_by_wall_clock() => report.warn(
            CHECK,
            format!("expired: {}", head.record),
            "a new `run` takes it over after watching it for a while",
        ),
        Ok(Some(head)) => report.fail(
            CHECK,
            format!("held: {}", head.record),
            "another replicator writes this secondary: stop it first (or `run --takeover` if you know it is gone)",
        ),
        Err(e) => report.warn(CHECK, format!("cannot read $standby-lease: {e}"), "configure [secondary.admin]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_passes_unless_a_check_failed() {
        let mut r = Report::default();
        r.ok("a", "fine".into());
        r.warn("b", "hm".into(), "do this");
        assert!(r.passed());
        r.fail("c", "bad".into(), "fix it");
        assert!(!r.passed());
        let text = r.to_string();
        assert!(text.contains("FAIL") && text.contains("→ fix it"), "{text}");
    }
}
