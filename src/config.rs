//! Configuration: a TOML file, every key overridable from the environment, secrets from the
//! environment or files.
//!
//! Unknown keys are errors, in the file and in the environment (`STANDBY_*`): a misspelt key that
//! is silently ignored is how a standby ends up replicating into the wrong cluster. The list of keys
//! lives in one table, [`KEYS`], which drives the environment overrides and the documentation test.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::esdb::{self, ClientConfig, Credentials, Password};

/// Every configuration key, as `section.key` (or `section.sub.key`), with the type its environment
/// override is parsed as. The environment variable is `STANDBY_` + the path upper-cased with `.`
/// replaced by `_` (e.g. `primary.password_file` → `STANDBY_PRIMARY_PASSWORD_FILE`).
pub const KEYS: &[(&str, Kind)] = &[
    ("primary.url", Kind::Str),
    ("primary.username", Kind::Str),
    ("primary.password", Kind::Str),
    ("primary.password_file", Kind::Str),
    ("primary.ca_file", Kind::Str),
    ("primary.connect_timeout_secs", Kind::Int),
    ("primary.request_timeout_secs", Kind::Int),
    ("secondary.url", Kind::Str),
    ("secondary.username", Kind::Str),
    ("secondary.password", Kind::Str),
    ("secondary.password_file", Kind::Str),
    ("secondary.ca_file", Kind::Str),
    ("secondary.connect_timeout_secs", Kind::Int),
    ("secondary.request_timeout_secs", Kind::Int),
    ("secondary.admin.username", Kind::Str),
    ("secondary.admin.password", Kind::Str),
    ("secondary.admin.password_file", Kind::Str),
    ("checkpoint.path", Kind::Str),
    ("replication.ordering", Kind::Str),
    ("replication.page_size", Kind::Int),
    ("replication.include", Kind::List),
    ("replication.exclude", Kind::List),
    ("replication.lease_secs", Kind::Int),
    ("promotion.write_roles", Kind::List),
    ("promotion.fence_timeout_secs", Kind::Int),
    ("promotion.allow_unfenced", Kind::Bool),
    ("metrics.listen", Kind::Str),
    ("metrics.ready_window_secs", Kind::Int),
];

/// Environment variables with this prefix that are not configuration keys (read by the CLI).
const NOT_KEYS: &[&str] = &["STANDBY_CONFIG", "STANDBY_LOG", "STANDBY_LOG_FORMAT"];

/// How an environment override is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    /// Comma-separated strings.
    List,
    /// `true` or `false`.
    Bool,
}

/// The whole configuration of `standby`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The cluster whose `$all` is read. Never written to by `run`.
    pub primary: EndpointConfig,
    /// The standby cluster the events are appended to.
    pub secondary: EndpointConfig,
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub replication: ReplicationConfig,
    #[serde(default)]
    pub promotion: PromotionConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// The operator endpoints of `run`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics`, `/health/live` and `/health/ready` are served, e.g. `127.0.0.1:9184`.
    /// Unset: not served.
    pub listen: Option<std::net::SocketAddr>,
    /// `/health/ready` answers "not ready" when a cluster has not answered, or nothing was
    /// applied while behind, for this long.
    #[serde(default = "default_ready_window")]
    pub ready_window_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: None,
            ready_window_secs: default_ready_window(),
        }
    }
}

fn default_ready_window() -> u64 {
    60
}

/// What `promote` opens the secondary to, and how long it may take to prove the fence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionConfig {
    /// Who may write user streams after promotion (`$w`, `$d`, `$mw` of `$userStreamAcl`).
    /// Unset: the rights the secondary's `$settings` gave before setup fenced it.
    pub write_roles: Option<Vec<String>>,
    /// How long `promote` waits for every secondary node to refuse the replication user after
    /// revoking it. The server drops cached credentials about 1 s after a disable, up to ~20 s
    /// when it struggles (the server's `PasswordChangeNotificationReader.cs`), so the default leaves a wide margin.
    #[serde(default = "default_fence_timeout")]
    pub fence_timeout_secs: u64,
    /// Replicate into a secondary that cannot be fenced (insecure: every request runs as
    /// `system`). `run` refuses such a secondary without it; `promote` still needs `--unfenced`.
    #[serde(default)]
    pub allow_unfenced: bool,
}

impl Default for PromotionConfig {
    fn default() -> Self {
        PromotionConfig {
            write_roles: None,
            fence_timeout_secs: default_fence_timeout(),
            allow_unfenced: false,
        }
    }
}

fn default_fence_timeout() -> u64 {
    60
}

/// A second identity on the secondary, for setup and promotion: a member of `$admins`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub username: String,
    pub password: Option<Password>,
    pub password_file: Option<PathBuf>,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// How to reach one cluster.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Where the cluster is: a gRPC connection string (`kurrentdb://es1.example:2113`,
    /// `kurrentdb+discover://…`, `esdb://…`) or an AtomPub base URL (`https://es1.example:2113`).
    pub url: String,
    pub username: Option<String>,
    /// The password itself. Prefer `password_file` or the environment outside tests.
    pub password: Option<Password>,
    /// A file whose content (trailing newline trimmed) is the password.
    pub password_file: Option<PathBuf>,
    /// PEM file of a CA to trust in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// `[secondary.admin]` only: the admin identity for setup and promotion.
    pub admin: Option<AdminConfig>,
}

impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

fn default_connect_timeout() -> u64 {
    esdb::config::DEFAULT_CONNECT_TIMEOUT.as_secs()
}
fn default_request_timeout() -> u64 {
    esdb::config::DEFAULT_REQUEST_TIMEOUT.as_secs()
}

impl EndpointConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// The password from `password` or `password_file`, if any.
    ///
    /// # Errors
    /// When the password file cannot be read.
    pub fn resolve_password(&self) -> Result<Option<Password>, Error> {
        resolve_password(&self.password, &self.password_file)
    }

    /// The client settings for `[secondary.admin]`: this endpoint with the admin credentials.
    ///
    /// # Errors
    /// As [`EndpointConfig::client_config`].
    pub fn admin_client_config(&self) -> Result<Option<ClientConfig>, Error> {
        let Some(admin) = &self.admin else {
            return Ok(None);
        };
        let mut config = self.client_config()?;
        config.credentials = Some(Credentials {
            username: admin.username.clone(),
            password: resolve_password(&admin.password, &admin.password_file)?
                .unwrap_or_else(|| Password::new("")),
        });
        Ok(Some(config))
    }

    /// The client settings for this endpoint, with the password resolved.
    ///
    /// # Errors
    /// When the password file cannot be read or the URL is invalid (normally caught by validation).
    pub fn client_config(&self) -> Result<ClientConfig, Error> {
        let mut config = ClientConfig::for_address(&self.url)
            .map_err(|e| Error::Invalid(format!("url: {e}")))?;
        if let Some(username) = &self.username {
            let password = self
                .resolve_password()?
                .unwrap_or_else(|| Password::new(""));
            config.credentials = Some(Credentials {
                username: username.clone(),
                password,
            });
        }
        config.ca_file = self.ca_file.clone();
        config.connect_timeout = self.connect_timeout();
        config.request_timeout = self.request_timeout();
        Ok(config)
    }

    fn validate(&self, section: &str) -> Result<(), Error> {
        if esdb::Wire::of(&self.url).is_none() {
            return Err(Error::Invalid(format!(
                "{section}.url {:?} must start with kurrentdb:// or esdb:// (gRPC, the \
                 connection string the official clients take, optionally +discover) or with \
                 http:// or https:// (AtomPub)",
                self.url
            )));
        }
        ClientConfig::for_address(&self.url)
            .map_err(|e| Error::Invalid(format!("{section}.url: {e}")))?;
        if self.password.is_some() && self.password_file.is_some() {
            return Err(Error::Invalid(format!(
                "{section}: set either password or password_file, not both"
            )));
        }
        if self.username.is_none() && (self.password.is_some() || self.password_file.is_some()) {
            return Err(Error::Invalid(format!(
                "{section}: a password is set but no username"
            )));
        }
        if self.connect_timeout_secs == 0 || self.request_timeout_secs == 0 {
            return Err(Error::Invalid(format!(
                "{section}: timeouts must be at least 1 second"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The local checkpoint file; its directory must exist.
    pub path: PathBuf,
}

/// In which order events are applied to the secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// `$all` order: the secondary's `$all` has the primary's order.
    #[default]
    Global,
    /// Streams concurrently, each stream in order (reordering bounded by the pages in flight).
    Stream,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    #[serde(default)]
    pub ordering: Ordering,
    /// Events per `$all` page read from the primary (the server's maximum is 4096).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Whole-stream filters: stream names or patterns with `*`. Empty include = every user stream.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The period of the lease on the secondary (`$standby-lease`, see [`crate::lease`]): a
    /// second replicator takes over this long after the holder stopped renewing, and a holder
    /// that cannot renew stops writing before it ends.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            ordering: Ordering::default(),
            page_size: default_page_size(),
            include: vec![],
            exclude: vec![],
            lease_secs: default_lease_secs(),
        }
    }
}

fn default_page_size() -> u32 {
    500
}

fn default_lease_secs() -> u64 {
    15
}

/// Allowed lease periods: renewals every third of it must fit requests of a few hundred
/// milliseconds, and a successor should not wait more than a few minutes.
pub const LEASE_SECS: std::ops::RangeInclusive<u64> = 3..=300;

impl ReplicationConfig {
    /// The lease period.
    pub fn lease_period(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    /// Whether a user stream is replicated. Filters see whole streams only: filtering inside a
    /// stream would break exact mirroring of event numbers.
    pub fn replicates(&self, stream: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| wildcard_match(p, stream)))
            && !self.exclude.iter().any(|p| wildcard_match(p, stream))
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Why a configuration was refused. Always a usage error (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads `path`, applies `STANDBY_*` overrides from the process environment, validates.
    ///
    /// # Errors
    /// Unreadable file, TOML syntax, unknown keys (file or environment), invalid values.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_parts(path, &text, std::env::vars())
    }

    /// [`Config::load`] with the file content and environment given, for tests.
    pub fn from_parts(
        path: &Path,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Error> {
        let parse_err = |message: String| Error::Parse {
            path: path.to_path_buf(),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        for (var, value) in env {
            if !var.starts_with("STANDBY_") || NOT_KEYS.contains(&var.as_str()) {
                continue;
            }
            let Some((key, kind)) = KEYS.iter().find(|(k, _)| env_var(k) == var) else {
                return Err(Error::Env {
                    var,
                    message: "not a configuration key; config/standby.toml documents every key"
                        .into(),
                });
            };
            let parsed = match kind {
                Kind::Str => toml::Value::String(value),
                Kind::Int => {
                    toml::Value::Integer(value.trim().parse().map_err(|_| Error::Env {
                        var: var.clone(),
                        message: format!("{value:?} is not an integer"),
                    })?)
                }
                Kind::Bool => match value.trim() {
                    "true" => toml::Value::Boolean(true),
                    "false" => toml::Value::Boolean(false),
                    _ => {
                        return Err(Error::Env {
                            var: var.clone(),
                            message: format!("{value:?} is not true or false"),
                        })
                    }
                },
                Kind::List => toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_string()))
                        .collect(),
                ),
            };
            insert_path(&mut table, key, parsed);
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Error> {
        self.primary.validate("primary")?;
        self.secondary.validate("secondary")?;
        if self.primary.admin.is_some() {
            return Err(Error::Invalid(
                "[primary.admin] is not a section: the admin identity belongs to the secondary ([secondary.admin]); [primary] credentials are used for reading and fencing the primary".into(),
            ));
        }
        if let Some(admin) = &self.secondary.admin {
            if admin.password.is_some() && admin.password_file.is_some() {
                return Err(Error::Invalid(
                    "secondary.admin: set either password or password_file, not both".into(),
                ));
            }
            if Some(&admin.username) == self.secondary.username.as_ref() {
                return Err(Error::Invalid(format!(
                    "secondary.admin.username is the replication user {:?}: promotion fences the replication user, so it needs a separate admin identity",
                    admin.username
                )));
            }
        }
        if let Some(roles) = &self.promotion.write_roles {
            if let Some(user) = &self.secondary.username {
                if roles.iter().any(|r| r == user) {
                    return Err(Error::Invalid(format!(
                        "promotion.write_roles must not name the replication user {user:?}: after promotion a still-running replicator must not be able to write"
                    )));
                }
            }
        }
        if self.primary.url.trim_end_matches('/') == self.secondary.url.trim_end_matches('/') {
            return Err(Error::Invalid(
                "primary.url and secondary.url are the same: replicating a cluster into itself would duplicate every event".into(),
            ));
        }
        if self.promotion.fence_timeout_secs == 0 {
            return Err(Error::Invalid(
                "promotion.fence_timeout_secs must be at least 1: promotion must see the replication user refused before it writes the epoch".into(),
            ));
        }
        if self.metrics.ready_window_secs == 0 {
            return Err(Error::Invalid(
                "metrics.ready_window_secs must be at least 1".into(),
            ));
        }
        if !(1..=4096).contains(&self.replication.page_size) {
            return Err(Error::Invalid(
                "replication.page_size must be between 1 and 4096 (the server's read limit)".into(),
            ));
        }
        if !LEASE_SECS.contains(&self.replication.lease_secs) {
            return Err(Error::Invalid(format!(
                "replication.lease_secs must be between {} and {} seconds (a successor takes over \
                 this long after a replicator stopped renewing; 15 is the default)",
                LEASE_SECS.start(),
                LEASE_SECS.end()
            )));
        }
        for p in self
            .replication
            .include
            .iter()
            .chain(&self.replication.exclude)
        {
            if p.is_empty() || p.starts_with('$') {
                return Err(Error::Invalid(format!(
                    "replication filter {p:?}: filters name user streams; system streams are never replicated"
                )));
            }
        }
        Ok(())
    }
}

fn resolve_password(
    password: &Option<Password>,
    file: &Option<PathBuf>,
) -> Result<Option<Password>, Error> {
    match (password, file) {
        (Some(p), None) => Ok(Some(p.clone())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Invalid(format!("cannot read password file {}: {e}", path.display()))
            })?;
            Ok(Some(Password::new(text.trim_end_matches(['\n', '\r']))))
        }
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(Error::Invalid(
            "both password and password_file are set".into(),
        )),
    }
}

/// `primary.password_file` → `STANDBY_PRIMARY_PASSWORD_FILE`.
pub fn env_var(key: &str) -> String {
    format!("STANDBY_{}", key.replace('.', "_").to_ascii_uppercase())
}

fn insert_path(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let leaf = parts.pop().expect("keys have a section");
    let mut t = table;
    for p in parts {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        t = entry.as_table_mut().expect("just made a table");
    }
    t.insert(leaf.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [primary]
        url = "http://127.0.0.1:2113"
        username = "admin"
        password = "changeit"

        [secondary]
        url = "http://127.0.0.1:2114"
        username = "replicator"
        password = "s3cret"

        [checkpoint]
        path = "/var/lib/standby/checkpoint"
    "#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, Error> {
        Config::from_parts(
            Path::new("standby.toml"),
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn minimal_file_gets_the_documented_defaults() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.replication.ordering, Ordering::Global);
        assert_eq!(c.replication.page_size, 500);
        assert_eq!(c.replication.lease_period(), Duration::from_secs(15));
        assert_eq!(
            c.primary.connect_timeout(),
            esdb::config::DEFAULT_CONNECT_TIMEOUT
        );
        let client = c.secondary.client_config().unwrap();
        assert_eq!(client.credentials.unwrap().username, "replicator");
        assert_eq!(
            c.secondary.resolve_password().unwrap(),
            Some(Password::new("s3cret"))
        );
    }

    #[test]
    fn unknown_keys_are_errors_in_the_file_and_the_environment() {
        let err = load(&format!("{MINIMAL}\n[replication]\npage_sise = 10\n"), &[]).unwrap_err();
        assert!(err.to_string().contains("page_sise"), "{err}");
        let err = load(MINIMAL, &[("STANDBY_PRIMARY_URLL", "http://x")]).unwrap_err();
        assert!(
            matches!(err, Error::Env { ref var, .. } if var == "STANDBY_PRIMARY_URLL"),
            "{err}"
        );
    }

    #[test]
    fn every_key_can_be_overridden_from_the_environment() {
        let c = load(
            MINIMAL,
            &[
                ("STANDBY_SECONDARY_URL", "https://standby.example:2113"),
                ("STANDBY_REPLICATION_ORDERING", "stream"),
                ("STANDBY_REPLICATION_PAGE_SIZE", "1000"),
                ("STANDBY_REPLICATION_EXCLUDE", "tmp-*, scratch"),
                ("STANDBY_PRIMARY_REQUEST_TIMEOUT_SECS", "7"),
            ],
        )
        .unwrap();
        assert_eq!(c.secondary.url, "https://standby.example:2113");
        assert_eq!(c.replication.ordering, Ordering::Stream);
        assert_eq!(c.replication.page_size, 1000);
        assert_eq!(c.replication.exclude, vec!["tmp-*", "scratch"]);
        assert_eq!(c.primary.request_timeout_secs, 7);
        // Each key's variable is accepted (the values may not all validate, but none is unknown).
        for (key, kind) in KEYS {
            let value = match kind {
                Kind::Int => "5",
                Kind::Bool => "true",
                _ => "x",
            };
            let err = load(MINIMAL, &[(&env_var(key), value)]).err();
            assert!(!matches!(err, Some(Error::Env { .. })), "{key}: {err:?}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = load(MINIMAL, &[]).unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("s3cret") && !dbg.contains("changeit"),
            "{dbg}"
        );
    }

    #[test]
    fn password_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let text = MINIMAL.replace(
            "password = \"s3cret\"",
            &format!("password_file = {:?}", file),
        );
        let c = load(&text, &[]).unwrap();
        assert_eq!(
            c.secondary.resolve_password().unwrap(),
            Some(Password::new("from-file"))
        );
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let same = MINIMAL.replace("2114", "2113");
        assert!(load(&same, &[]).unwrap_err().to_string().contains("same"));
        let err = load(MINIMAL, &[("STANDBY_REPLICATION_PAGE_SIZE", "5000")]).unwrap_err();
        assert!(err.to_string().contains("4096"), "{err}");
        let err = load(MINIMAL, &[("STANDBY_REPLICATION_ORDERING", "random")]).unwrap_err();
        assert!(err.to_string().contains("random"), "{err}");
        let err = load(MINIMAL, &[("STANDBY_PRIMARY_URL", "ftp://x")]).unwrap_err();
        assert!(err.to_string().contains("http"), "{err}");
        let err = load(MINIMAL, &[("STANDBY_REPLICATION_INCLUDE", "$ce-*")]).unwrap_err();
        assert!(err.to_string().contains("system streams"), "{err}");
        for bad in ["2", "301"] {
            let err = load(MINIMAL, &[("STANDBY_REPLICATION_LEASE_SECS", bad)]).unwrap_err();
            assert!(err.to_string().contains("lease_secs"), "{bad}: {err}");
        }
        let c = load(MINIMAL, &[("STANDBY_REPLICATION_LEASE_SECS", "3")]).unwrap();
        assert_eq!(c.replication.lease_secs, 3);
    }

    #[test]
    fn the_documented_example_is_valid_and_names_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/standby.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        Config::from_parts(&path, &text, std::iter::empty()).expect("config/standby.toml is valid");
        for (key, _) in KEYS {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                text.lines().any(|l| l
                    .trim_start_matches(['#', ' '])
                    .starts_with(&format!("{leaf} ="))),
                "config/standby.toml does not mention {key}"
            );
        }
    }

    #[test]
    fn whole_stream_filters() {
        let r = ReplicationConfig {
            include: vec!["order-*".into(), "customer".into()],
            exclude: vec!["order-test-*".into()],
            ..Default::default()
        };
        assert!(r.replicates("order-1"));
        assert!(r.replicates("customer"));
        assert!(!r.replicates("customer-2"));
        assert!(!r.replicates("order-test-9"));
        assert!(ReplicationConfig::default().replicates("anything"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxc"));
        assert!(!wildcard_match("ab*ba", "aba"));
    }
}
