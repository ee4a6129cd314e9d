//! Domain types for the node endpoints: `/info`, `/gossip`, `/health/live` (contract §9).
//!
//! Both the v5 and the v20+ shapes map to the same types; fields a version does not send are
//! `None`.

use std::fmt;

use uuid::Uuid;

use crate::position::LogPosition;

/// Role of a node in its cluster, parsed case-insensitively from `/info` (lower case on v20+) and
/// `/gossip` (PascalCase). v5 names (`Master`, `Slave`, `PreMaster`) map to the v20+ names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Accepts writes (`Leader`, v5 `Master`).
    Leader,
    /// Replicates from the leader (`Follower`, v5 `Slave`).
    Follower,
    /// Read-only replica.
    ReadOnlyReplica,
    /// Becoming leader (`PreLeader`, v5 `PreMaster`).
    PreLeader,
    /// Catching up before it can become a follower (`PreReplica`, `CatchingUp`, `Clone`).
    CatchingUp,
    /// Starting, discovering or electing (`Initializing`, `DiscoverLeader`, `Unknown`, …).
    Starting,
    /// Shutting down or shut down.
    ShuttingDown,
    /// Any other state, as sent.
    Other(String),
}

impl NodeState {
    /// Parses a state name.
    pub fn parse(text: &str) -> NodeState {
        match text.to_ascii_lowercase().as_str() {
            "leader" | "master" => NodeState::Leader,
            "follower" | "slave" => NodeState::Follower,
            "readonlyreplica" => NodeState::ReadOnlyReplica,
            "preleader" | "premaster" => NodeState::PreLeader,
            "prereplica" | "catchingup" | "clone" | "prereadonlyreplica" => NodeState::CatchingUp,
            "initializing" | "discoverleader" | "unknown" | "readonlyleaderless"
            | "resigningleader" => NodeState::Starting,
            "shuttingdown" | "shutdown" => NodeState::ShuttingDown,
            _ => NodeState::Other(text.to_owned()),
        }
    }

    /// Whether the node accepts writes.
    pub fn is_leader(&self) -> bool {
        matches!(self, NodeState::Leader)
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeState::Leader => f.write_str("leader"),
            NodeState::Follower => f.write_str("follower"),
            NodeState::ReadOnlyReplica => f.write_str("read-only replica"),
            NodeState::PreLeader => f.write_str("pre-leader"),
            NodeState::CatchingUp => f.write_str("catching up"),
            NodeState::Starting => f.write_str("starting"),
            NodeState::ShuttingDown => f.write_str("shutting down"),
            NodeState::Other(text) => f.write_str(text),
        }
    }
}

/// How a node treats credentials, as far as a fence depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Authentication enforced, over TLS.
    Secure,
    /// Authentication enforced over plain HTTP: Event Store 5, or KurrentDB 26.2+ with
    /// `--disable-tls`. Passwords travel in clear text.
    PlaintextWithAuth,
    /// Accounts come from an external provider (LDAPS, OAuth): authentication is enforced (over
    /// TLS when `tls`), but no account can be disabled through the node, so only ACLs fence.
    External { tls: bool },
    /// `--insecure`: every request runs as `system`; no ACL or disabled account binds anyone.
    Insecure,
}

impl Security {
    /// Whether a disabled account or an ACL binds anyone on this node.
    pub fn enforces_authentication(&self) -> bool {
        !matches!(self, Security::Insecure)
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Security::Secure => f.write_str("secure (TLS, authentication required)"),
            Security::PlaintextWithAuth => f.write_str("plaintext with authentication"),
            Security::External { tls } => write!(
                f,
                "{}, accounts managed outside the node (no user management)",
                if *tls {
                    "secure (TLS, authentication required)"
                } else {
                    "plaintext with authentication"
                }
            ),
            Security::Insecure => f.write_str("insecure (every request runs as system)"),
        }
    }
}

/// `GET /info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Server version (`esVersion`), e.g. `20.10.3.0`.
    pub version: Option<String>,
    /// Node state.
    pub state: Option<NodeState>,
    /// v20+ feature flags; `None` on v5.
    pub features: Option<Features>,
    /// v20+ authentication provider type (`internal`, …).
    pub authentication: Option<String>,
    /// v5 projections mode.
    pub projections_mode: Option<String>,
}

impl NodeInfo {
    /// Whether the AtomPub API is enabled: v5 servers always serve it (no `features`), v20+ report
    /// `features.atomPub` (off by default, contract §1).
    pub fn atom_pub_enabled(&self) -> bool {
        self.features
            .as_ref()
            .and_then(|features| features.atom_pub)
            .unwrap_or(true)
    }
}

/// `/info` `features` (v20+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// Projections subsystem.
    pub projections: Option<bool>,
    /// User management.
    pub user_management: Option<bool>,
    /// The AtomPub HTTP API.
    pub atom_pub: Option<bool>,
}

/// `GET /gossip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gossip {
    /// Members as seen by the answering node.
    pub members: Vec<Member>,
    /// Address of the answering node, if sent.
    pub server: Option<Endpoint>,
}

impl Gossip {
    /// The alive leader, if the answering node knows one.
    pub fn leader(&self) -> Option<&Member> {
        self.members
            .iter()
            .find(|member| member.is_alive && member.state.is_leader())
    }
}

/// A host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One cluster member from `/gossip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node instance id.
    pub instance_id: Option<Uuid>,
    /// Node state.
    pub state: NodeState,
    /// Whether the member answers gossip.
    pub is_alive: bool,
    /// HTTP endpoint clients use: `httpEndPoint*` (v20+) or `externalHttp*` (v5).
    pub http_endpoint: Option<Endpoint>,
    /// v5 internal HTTP endpoint.
    pub internal_http_endpoint: Option<Endpoint>,
    /// Last commit position; same number space as `$all` positions (contract §9).
    pub last_commit_position: Option<LogPosition>,
    /// End of the written log.
    pub writer_checkpoint: Option<LogPosition>,
    /// End of the indexed log.
    pub chaser_checkpoint: Option<LogPosition>,
    /// Position of the last election epoch record.
    pub epoch_position: Option<LogPosition>,
    /// The server's election epoch number (not the replicator's fencing epoch).
    pub election_epoch: Option<u64>,
    /// The server's election epoch id.
    pub election_epoch_id: Option<Uuid>,
    /// Election priority.
    pub node_priority: Option<i64>,
    /// Read-only replica flag.
    pub is_read_only_replica: bool,
    /// Time of the member's last gossip, as sent.
    pub timestamp: Option<String>,
}

/// `GET /health/live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// 204 (or 200): the node is up and ready.
    Live,
    /// 503: the node is up but not ready.
    NotReady,
    /// 404: the server has no health endpoint (v5, contract §9); use `/info` instead.
    Unsupported,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_case_insensitively_with_v5_names() {
        assert_eq!(NodeState::parse("Leader"), NodeState::Leader);
        assert_eq!(NodeState::parse("master"), NodeState::Leader);
        assert_eq!(NodeState::parse("Slave"), NodeState::Follower);
        assert_eq!(NodeState::parse("prereplica"), NodeState::CatchingUp);
        assert_eq!(NodeState::parse("PreMaster"), NodeState::PreLeader);
        assert_eq!(
            NodeState::parse("Weird"),
            NodeState::Other("Weird".to_owned())
        );
        assert!(NodeState::parse("LEADER").is_leader());
    }

    #[test]
    fn atom_pub_default_for_v5() {
        let v5 = NodeInfo {
            version: Some("5.0.12.0".into()),
            state: Some(NodeState::Leader),
            features: None,
            authentication: None,
            projections_mode: Some("None".into()),
        };
        assert!(v5.atom_pub_enabled());
        let off = NodeInfo {
            features: Some(Features {
                atom_pub: Some(false),
                ..Features::default()
            }),
            ..v5
        };
        assert!(!off.atom_pub_enabled());
    }
}
