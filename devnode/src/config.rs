//! Node configuration: which server generation to imitate ([`Profile`]), how its HTTP interface
//! is secured ([`Security`]), where the log lives ([`Storage`]) and who may log in ([`User`]).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

/// Which generation of the real server the node imitates on the wire (contract §0, §11.2).
///
/// * `V5`: Event Store 5.0.2–5.0.12 (`ES-*` headers, nulls omitted, anonymous refused, stable ETag hashes).
/// * `V20`: EventStoreDB 20.6–21.6 (nulls omitted, `retryCount` known but null, anonymous reaches the ACL check).
/// * `V21_10`: EventStoreDB 21.10–22.x (explicit `null`s, anonymous reaches the ACL check).
/// * `V25`: KurrentDB 25.0–26.1 (`Kurrent-*` headers first, `vnd.kurrent.*` media types,
///   `isRedacted`, author `Kurrent`, anonymous refused).
/// * `V26`: KurrentDB 26.2 (the v25 wire; plaintext may keep authentication, `--disable-tls`).
///
/// The security modes differ per generation (the server's `PassthroughAuthenticationProvider.cs`, `ClusterVNode.cs`; docs/devnode.md "Security modes"): see
/// [`Security`].
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    V5,
    V20,
    V21_10,
    V25,
    #[default]
    V26,
}

impl Profile {
    /// The spelling accepted by `FromStr` and printed by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::V5 => "v5",
            Profile::V20 => "v20",
            Profile::V21_10 => "v21.10",
            Profile::V25 => "v25",
            Profile::V26 => "v26",
        }
    }

    /// 23.10 and later: a catch-up subscription sends `caught_up` when it turns live (KurrentDB
    /// pull request 3899, "Added CaughtUp control message for subscriptions", July 2023). Before,
    /// nothing marks that moment.
    pub fn sends_caught_up(self) -> bool {
        matches!(self, Profile::V25 | Profile::V26)
    }

    /// v20–v26.1: plaintext HTTP only with `--insecure`, which turns authentication off.
    pub fn couples_tls_and_auth(self) -> bool {
        matches!(self, Profile::V20 | Profile::V21_10 | Profile::V25)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v5" | "5" => Ok(Profile::V5),
            "v20" | "20" => Ok(Profile::V20),
            "v21.10" | "21.10" => Ok(Profile::V21_10),
            "v25" | "25" => Ok(Profile::V25),
            "v26" | "26" | "v26.2" | "26.2" => Ok(Profile::V26),
            other => Err(format!(
                "unknown profile '{other}' (expected v5, v20, v21.10, v25 or v26)"
            )),
        }
    }
}

/// How the HTTP interface is secured (the server's `PassthroughAuthenticationProvider.cs`, `ClusterVNode.cs`; docs/devnode.md "Security modes"). One mode per
/// node, as on the real server.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Security {
    /// Nothing chosen. v5: plaintext with authentication (the only mode it has). v26: plaintext
    /// with authentication, as `--disable-tls`, said in a log line at start. v20–v25: the node
    /// refuses to start, as the real server does without a certificate.
    #[default]
    Unset,
    /// Secure mode (v20+): TLS with this certificate chain and private key (PEM), authentication
    /// and ACLs as usual.
    Tls { cert_pem: Vec<u8>, key_pem: Vec<u8> },
    /// `--insecure` (v20+): plaintext with the passthrough providers: every request runs as
    /// `system`, credentials are ignored, ACLs bind nobody, `/users` is not served.
    Insecure,
    /// `--disable-tls` (v26 only, KurrentDB 26.2): plaintext with authentication.
    DisableTls,
}

impl Security {
    /// `tls`, `insecure`, `disable-tls` or `unset`.
    pub fn name(&self) -> &'static str {
        match self {
            Security::Unset => "unset",
            Security::Tls { .. } => "tls",
            Security::Insecure => "insecure",
            Security::DisableTls => "disable-tls",
        }
    }
}

// Never print the private key.
impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the transaction log is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Nothing touches the disk; positions are still computed from the on-disk record size.
    Memory,
    /// One log file inside this directory (created if missing).
    Dir(PathBuf),
    /// The server's own layout in this directory: chunk files of `chunk_size` bytes, checkpoint
    /// files and an index (`--layout chunks`, see `store::chunks`). Positions are the server's
    /// logical positions, with the unused tail of every chunk.
    Chunks { dir: PathBuf, chunk_size: u32 },
}

/// `--run-projections` (the server's `ProjectionType`; `ClusterVNodeOptions.ProjectionOptions`):
/// whether the node runs its projection subsystem. The server's default is `None`. `All` (user
/// projections too) is not modelled: the dev node has no user projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RunProjections {
    /// No projection subsystem: nothing is written on its behalf (the server's default).
    #[default]
    None,
    /// The system projections (`$streams`, `$stream_by_category`, `$by_category`,
    /// `$by_event_type`, `$by_correlation_id`) are registered, and run when enabled (see
    /// [`NodeConfig::start_standard_projections`]); see `crate::projections`.
    System,
}

impl RunProjections {
    /// The spelling the CLI accepts and `/info` reports (`None`, `System`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunProjections::None => "None",
            RunProjections::System => "System",
        }
    }
}

impl fmt::Display for RunProjections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunProjections {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(RunProjections::None),
            "system" => Ok(RunProjections::System),
            "all" => Err(
                "--run-projections all (user projections) is not modelled by the dev \
                          node; use system"
                    .to_owned(),
            ),
            other => Err(format!(
                "unknown projection mode '{other}' (expected none or system)"
            )),
        }
    }
}

/// The server's default chunk size, 256 MiB (`TFConsts.ChunkSize`).
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024 * 1024;

/// A login known to the node. Groups are roles such as `$admins` or `$ops`.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub login: String,
    pub password: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn new(login: impl Into<String>, password: impl Into<String>, groups: &[&str]) -> Self {
        User {
            login: login.into(),
            password: password.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

// Never print passwords, not even in debug output.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("login", &self.login)
            .field("password", &"***")
            .field("groups", &self.groups)
            .finish()
    }
}

/// Everything [`crate::Node::start`] needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub http: SocketAddr,
    pub storage: Storage,
    pub profile: Profile,
    pub security: Security,
    pub users: Vec<User>,
    /// fsync the log before answering a write (data is always `write(2)`-n before the answer).
    pub fsync: bool,
    /// `false`: accounts come from an external provider (LDAPS, OAuth): the configured users
    /// authenticate, but the node serves no `/users` and no account can be disabled through it.
    pub user_management: bool,
    /// Write what a real node writes on its own: `admin` and `ops` at the first start, an
    /// `$epoch-information` event at every start (21.10+), so the log is never empty.
    pub server_records: bool,
    /// `--run-projections`: [`RunProjections::None`] by default, as on the server.
    pub run_projections: RunProjections,
    /// `--start-standard-projections`: enable the system projections the first time the
    /// subsystem finds them stopped (off by default, as on the server: registered projections
    /// stay stopped and write no links until enabled).
    pub start_standard_projections: bool,
}

impl NodeConfig {
    /// 127.0.0.1:0, in memory, profile V26 (plaintext with authentication), the default
    /// users, no fsync.
    pub fn memory() -> Self {
        NodeConfig {
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            storage: Storage::Memory,
            profile: Profile::default(),
            security: Security::Unset,
            users: default_users(),
            fsync: false,
            user_management: true,
            server_records: true,
            run_projections: RunProjections::None,
            start_standard_projections: false,
        }
    }

    /// Same as [`NodeConfig::memory`] but with the log in `dir`.
    pub fn on_disk(dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            storage: Storage::Dir(dir.into()),
            ..NodeConfig::memory()
        }
    }

    /// Keeps an on-disk log in the server's chunk layout with chunks of `chunk_size` bytes;
    /// memory storage stays in memory.
    pub fn chunk_layout(mut self, chunk_size: u32) -> Self {
        self.storage = match self.storage {
            Storage::Dir(dir) | Storage::Chunks { dir, .. } => Storage::Chunks { dir, chunk_size },
            Storage::Memory => Storage::Memory,
        };
        self
    }

    pub fn profile(mut self, p: Profile) -> Self {
        self.profile = p;
        self
    }

    /// Secure mode: TLS with this PEM certificate chain and PEM private key.
    pub fn tls(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.security = Security::Tls {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        };
        self
    }

    /// Secure mode with the development certificates of `certs` (see [`crate::DevCerts`]).
    ///
    /// # Errors
    ///
    /// When the certificate files cannot be read.
    pub fn dev_tls(self, certs: &crate::DevCerts) -> Result<Self, crate::SecurityError> {
        let (cert, key) = certs.read()?;
        Ok(self.tls(cert, key))
    }

    /// `--insecure`: plaintext, no authentication, no ACLs, no `/users` (v20+ profiles).
    pub fn insecure(mut self) -> Self {
        self.security = Security::Insecure;
        self
    }

    /// `--disable-tls`: plaintext with authentication (v26 profile).
    pub fn disable_tls(mut self) -> Self {
        self.security = Security::DisableTls;
        self
    }

    /// Accounts managed outside the node, as with the LDAPS or OAuth plugins: the configured
    /// users still authenticate, `/users` answers 404 and `/info` reports no user management.
    pub fn external_users(mut self) -> Self {
        self.user_management = false;
        self
    }

    /// Whether to write the records a real node writes on its own (on by default; see
    /// [`NodeConfig::server_records`]). Off: a log that holds only what the test wrote, for tests
    /// of the wire's position arithmetic.
    pub fn server_records(mut self, on: bool) -> Self {
        self.server_records = on;
        self
    }

    /// `--run-projections`: with [`RunProjections::System`] the node registers the system
    /// projections at start (`$projections-*` streams) and runs those that are enabled, writing
    /// their link events behind the log as the server does (`crate::projections`).
    pub fn run_projections(mut self, mode: RunProjections) -> Self {
        self.run_projections = mode;
        self
    }

    /// `--start-standard-projections`: enable the system projections at start (the server's
    /// option of that name; off by default, when registered projections stay stopped).
    pub fn start_standard_projections(mut self, on: bool) -> Self {
        self.start_standard_projections = on;
        self
    }

    /// Both of the above: system projections registered and running, as a production node run
    /// with `--run-projections=System --start-standard-projections=true` (or `All`).
    pub fn system_projections(self) -> Self {
        self.run_projections(RunProjections::System)
            .start_standard_projections(true)
    }

    /// Adds a user; a login that already exists is replaced.
    pub fn user(mut self, u: User) -> Self {
        self.users.retain(|x| x.login != u.login);
        self.users.push(u);
        self
    }

    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = addr;
        self
    }

    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }
}

/// The two accounts every real node ships with (`admin`/`changeit` in `$admins`, `ops`/`changeit` in `$ops`).
pub fn default_users() -> Vec<User> {
    vec![
        User::new("admin", "changeit", &["$admins"]),
        User::new("ops", "changeit", &["$ops"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse() {
        assert_eq!("v5".parse::<Profile>().unwrap(), Profile::V5);
        assert_eq!("v20".parse::<Profile>().unwrap(), Profile::V20);
        assert_eq!("v21.10".parse::<Profile>().unwrap(), Profile::V21_10);
        assert_eq!("V25".parse::<Profile>().unwrap(), Profile::V25);
        assert_eq!("v26".parse::<Profile>().unwrap(), Profile::V26);
        assert!("v6".parse::<Profile>().is_err());
        assert_eq!(Profile::default(), Profile::V26);
    }

    #[test]
    fn projection_modes_parse() {
        assert_eq!(
            "none".parse::<RunProjections>().unwrap(),
            RunProjections::None
        );
        assert_eq!(
            "System".parse::<RunProjections>().unwrap(),
            RunProjections::System
        );
        assert!("all".parse::<RunProjections>().is_err());
        assert_eq!(RunProjections::default(), RunProjections::None);
    }

    #[test]
    fn user_override_and_debug_hides_password() {
        let cfg = NodeConfig::memory().user(User::new("admin", "secret", &["$admins"]));
        assert_eq!(cfg.users.len(), 2);
        assert!(cfg
            .users
            .iter()
            .any(|u| u.login == "admin" && u.password == "secret"));
        assert!(!format!("{cfg:?}").contains("secret"));
        let cfg = cfg.tls("CERT", "-----BEGIN PRIVATE KEY----- secret key");
        assert!(!format!("{cfg:?}").contains("secret key"));
    }
}
