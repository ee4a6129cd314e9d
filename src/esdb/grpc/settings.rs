//! [`ConnectionSettings`]: the gRPC connection string as the Event Store / KurrentDB ecosystem
//! writes it, parsed strictly.
//!
//! ```text
//! kurrentdb://user:pass@host1:2113,host2:2113?tls=true&tlsCAFile=/etc/ca.pem&nodePreference=leader
//! kurrentdb+discover://cluster.example:2113
//! esdb://127.0.0.1:2113?tls=false
//! ```
//!
//! * Schemes: `kurrentdb`, `esdb` (and the official clients' aliases `kurrent`, `kdb`), each with
//!   an optional `+discover` suffix (`KurrentDB-Client-Rust kurrentdb/src/grpc.rs`
//!   `SUPPORTED_PROTOCOLS`).
//! * User info is percent-decoded, so a password with `@`, `:` or `/` is written `%40`, `%3A`,
//!   `%2F`. The official Rust client keeps it encoded; the .NET and Python clients decode.
//! * Query keys are matched case-insensitively (all official clients lower-case them); values of
//!   enumerations (`nodePreference`, booleans) too.
//! * Unlike the official clients, which log and ignore what they do not know, an unknown key or a
//!   bad value is an error naming the key and what is allowed: a typo in `tlsCaFile` must not
//!   silently fall back to the system roots.
//!
//! Passwords never print: [`ConnectionSettings`]'s `Display` renders `***` in their place.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::esdb::config::Credentials;
use crate::esdb::node::Endpoint;

/// The port of a host given without one (the server's default HTTP/gRPC port).
pub const DEFAULT_PORT: u16 = 2113;
/// Default `maxDiscoverAttempts` (the official Rust client's).
pub const DEFAULT_MAX_DISCOVER_ATTEMPTS: u32 = 3;
/// Default `discoveryInterval` (the official Rust client's).
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_millis(500);
/// Default `gossipTimeout` (the official Rust client's).
pub const DEFAULT_GOSSIP_TIMEOUT: Duration = Duration::from_secs(3);
/// Default `keepAliveInterval` and `keepAliveTimeout` (all official clients).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Which cluster member the client connects to after discovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum NodePreference {
    /// The leader: the only node that takes writes. The default here (as in the Python and .NET
    /// clients) because a replicator writes, and a follower answers a write that requires the
    /// leader with "not leader".
    #[default]
    Leader,
    /// A follower.
    Follower,
    /// Any alive member.
    Random,
    /// A read-only replica.
    ReadOnlyReplica,
}

impl NodePreference {
    const ALLOWED: &'static str = "leader, follower, random or readOnlyReplica";

    fn parse(value: &str) -> Option<NodePreference> {
        match value.to_ascii_lowercase().as_str() {
            "leader" => Some(NodePreference::Leader),
            "follower" => Some(NodePreference::Follower),
            "random" => Some(NodePreference::Random),
            "readonlyreplica" => Some(NodePreference::ReadOnlyReplica),
            _ => None,
        }
    }

    /// The connection-string value.
    pub const fn as_str(self) -> &'static str {
        match self {
            NodePreference::Leader => "leader",
            NodePreference::Follower => "follower",
            NodePreference::Random => "random",
            NodePreference::ReadOnlyReplica => "readOnlyReplica",
        }
    }
}

impl fmt::Display for NodePreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An X.509 user certificate, sent as the TLS client certificate (`userCertFile`/`userKeyFile`).
/// The server authenticates the user named by the certificate's common name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserCertificate {
    /// PEM certificate (chain) file.
    pub cert_file: PathBuf,
    /// PEM private key file.
    pub key_file: PathBuf,
}

/// Everything a gRPC connection string says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// `+discover`: the hosts are gossip seeds, and the client picks a member by
    /// [`ConnectionSettings::node_preference`]. Several hosts imply discovery too, as in every
    /// official client.
    pub discover: bool,
    /// The hosts, in the order written; never empty.
    pub hosts: Vec<Endpoint>,
    /// Basic credentials from the user info, percent-decoded.
    pub credentials: Option<Credentials>,
    /// `tls` (default `true`).
    pub tls: bool,
    /// `tlsVerifyCert` (default `true`): `false` accepts any server certificate.
    pub tls_verify_cert: bool,
    /// `tlsCAFile`: a PEM file of CA certificates trusted on top of the system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// `userCertFile` + `userKeyFile`.
    pub user_certificate: Option<UserCertificate>,
    /// `nodePreference` (default [`NodePreference::Leader`]).
    pub node_preference: NodePreference,
    /// `defaultDeadline` in ms: the deadline of every call that sets none itself. `None` (the
    /// default, or `-1`) = no deadline; subscriptions never get one.
    pub default_deadline: Option<Duration>,
    /// `maxDiscoverAttempts` (default 3, at least 1): rounds of gossip over all seeds.
    pub max_discover_attempts: u32,
    /// `discoveryInterval` in ms (default 500): pause between discovery rounds.
    pub discovery_interval: Duration,
    /// `gossipTimeout` in ms (default 3000): the deadline of one gossip read.
    pub gossip_timeout: Duration,
    /// `keepAliveInterval` in ms (default 10 000, `-1` = off): HTTP/2 PING interval.
    pub keep_alive_interval: Option<Duration>,
    /// `keepAliveTimeout` in ms (default 10 000, `-1` = off): how long a PING may go unanswered
    /// before the connection is dropped.
    pub keep_alive_timeout: Option<Duration>,
    /// `connectionName`: sent as `connection-name` metadata, shown in the server's logs.
    pub connection_name: Option<String>,
}

impl ConnectionSettings {
    /// Settings for one host with every default.
    pub fn single(host: impl Into<String>, port: u16) -> ConnectionSettings {
        ConnectionSettings {
            discover: false,
            hosts: vec![Endpoint {
                host: host.into(),
                port,
            }],
            credentials: None,
            tls: true,
            tls_verify_cert: true,
            tls_ca_file: None,
            user_certificate: None,
            node_preference: NodePreference::default(),
            default_deadline: None,
            max_discover_attempts: DEFAULT_MAX_DISCOVER_ATTEMPTS,
            discovery_interval: DEFAULT_DISCOVERY_INTERVAL,
            gossip_timeout: DEFAULT_GOSSIP_TIMEOUT,
            keep_alive_interval: Some(DEFAULT_KEEP_ALIVE),
            keep_alive_timeout: Some(DEFAULT_KEEP_ALIVE),
            connection_name: None,
        }
    }

    /// Whether the client discovers the cluster through gossip rather than using the one host
    /// as given: `+discover`, or several hosts.
    pub fn uses_discovery(&self) -> bool {
        self.discover || self.hosts.len() > 1
    }

    /// Credentials from the configuration, used when the connection string has none. A string
    /// with user info keeps its own: it is the more specific of the two.
    pub fn or_credentials(mut self, credentials: Option<Credentials>) -> ConnectionSettings {
        if self.credentials.is_none() {
            self.credentials = credentials;
        }
        self
    }

    /// The connection string, with the password if `reveal`.
    fn render(&self, reveal: bool) -> String {
        let mut out = String::from(if self.discover {
            "kurrentdb+discover://"
        } else {
            "kurrentdb://"
        });
        if let Some(credentials) = &self.credentials {
            out.push_str(&utf8_percent_encode(&credentials.username, USERINFO).to_string());
            out.push(':');
            if reveal {
                out.push_str(
                    &utf8_percent_encode(credentials.password.expose(), USERINFO).to_string(),
                );
            } else {
                out.push_str("***");
            }
            out.push('@');
        }
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .map(|h| {
                if h.host.contains(':') {
                    format!("[{}]:{}", h.host, h.port)
                } else {
                    format!("{}:{}", h.host, h.port)
                }
            })
            .collect();
        out.push_str(&hosts.join(","));
        let mut query: Vec<String> = vec![format!("tls={}", self.tls)];
        if !self.tls_verify_cert {
            query.push("tlsVerifyCert=false".into());
        }
        if let Some(path) = &self.tls_ca_file {
            query.push(format!(
                "tlsCAFile={}",
                encode_value(&path.to_string_lossy())
            ));
        }
        if let Some(cert) = &self.user_certificate {
            query.push(format!(
                "userCertFile={}",
                encode_value(&cert.cert_file.to_string_lossy())
            ));
            query.push(format!(
                "userKeyFile={}",
                encode_value(&cert.key_file.to_string_lossy())
            ));
        }
        query.push(format!("nodePreference={}", self.node_preference));
        if let Some(deadline) = self.default_deadline {
            query.push(format!("defaultDeadline={}", deadline.as_millis()));
        }
        query.push(format!(
            "maxDiscoverAttempts={}",
            self.max_discover_attempts
        ));
        query.push(format!(
            "discoveryInterval={}",
            self.discovery_interval.as_millis()
        ));
        query.push(format!("gossipTimeout={}", self.gossip_timeout.as_millis()));
        query.push(format!(
            "keepAliveInterval={}",
            millis_or_off(self.keep_alive_interval)
        ));
        query.push(format!(
            "keepAliveTimeout={}",
            millis_or_off(self.keep_alive_timeout)
        ));
        if let Some(name) = &self.connection_name {
            query.push(format!("connectionName={}", encode_value(name)));
        }
        out.push('?');
        out.push_str(&query.join("&"));
        out
    }

    /// The connection string with the password in clear, for handing to another client (tests
    /// run the official client on the same string). Never log it.
    pub fn to_connection_string_with_password(&self) -> String {
        self.render(true)
    }
}

fn millis_or_off(value: Option<Duration>) -> String {
    value.map_or_else(|| "-1".to_owned(), |d| d.as_millis().to_string())
}

/// Characters escaped in user info: everything but unreserved characters.
const USERINFO: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b',')
    .add(b'&')
    .add(b'=')
    .add(b'+');

/// Characters escaped in query values.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'=')
    .add(b'<')
    .add(b'>');

fn encode_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

impl fmt::Display for ConnectionSettings {
    /// The connection string with the password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// Why a connection string was refused. The text names the part and what is allowed; it never
/// contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid gRPC connection string: {0}")]
pub struct ParseError(String);

impl ParseError {
    fn new(detail: impl Into<String>) -> ParseError {
        ParseError(detail.into())
    }
}

/// The query keys, lower-cased, with their spelling in the documentation.
pub const KEYS: &[(&str, &str)] = &[
    ("tls", "tls"),
    ("tlsverifycert", "tlsVerifyCert"),
    ("tlscafile", "tlsCAFile"),
    ("usercertfile", "userCertFile"),
    ("userkeyfile", "userKeyFile"),
    ("nodepreference", "nodePreference"),
    ("defaultdeadline", "defaultDeadline"),
    ("maxdiscoverattempts", "maxDiscoverAttempts"),
    ("discoveryinterval", "discoveryInterval"),
    ("gossiptimeout", "gossipTimeout"),
    ("keepaliveinterval", "keepAliveInterval"),
    ("keepalivetimeout", "keepAliveTimeout"),
    ("connectionname", "connectionName"),
];

fn known_keys() -> String {
    KEYS.iter().map(|(_, k)| *k).collect::<Vec<_>>().join(", ")
}

impl FromStr for ConnectionSettings {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

fn parse(s: &str) -> Result<ConnectionSettings, ParseError> {
    let s = s.trim();
    let (scheme, rest) = s.split_once("://").ok_or_else(|| {
        ParseError::new(
            "expected <scheme>://[user:password@]host[:port][,host[:port]…][?key=value&…] with \
             scheme kurrentdb, kurrentdb+discover, esdb or esdb+discover",
        )
    })?;
    let scheme = scheme.to_ascii_lowercase();
    let (base, discover) = match scheme.strip_suffix("+discover") {
        Some(base) => (base, true),
        None => (scheme.as_str(), false),
    };
    if !matches!(base, "kurrentdb" | "esdb" | "kurrent" | "kdb") {
        return Err(ParseError::new(format!(
            "unknown scheme {scheme:?}: use kurrentdb, kurrentdb+discover, esdb or esdb+discover \
             (http and https URLs are for the AtomPub client)"
        )));
    }

    let (authority_and_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match authority_and_path.find('/') {
        Some(i) => authority_and_path.split_at(i),
        None => (authority_and_path, ""),
    };
    if !path.is_empty() && path != "/" {
        return Err(ParseError::new(format!(
            "unexpected path {path:?} after the hosts: a gRPC connection string has no path"
        )));
    }
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };

    let mut settings = ConnectionSettings::single("", DEFAULT_PORT);
    settings.discover = discover;
    settings.credentials = userinfo.map(parse_userinfo).transpose()?;
    settings.hosts = parse_hosts(hosts)?;

    let mut cert_file = None;
    let mut key_file = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').ok_or_else(|| {
            ParseError::new(format!(
                "query parameter {:?} has no value: write key=value",
                decode(pair).unwrap_or_else(|_| pair.to_owned())
            ))
        })?;
        let key = decode(raw_key)?;
        let value = decode(raw_value)?;
        let lower = key.to_ascii_lowercase();
        let Some((_, name)) = KEYS.iter().find(|(k, _)| *k == lower) else {
            return Err(ParseError::new(format!(
                "unknown option {key:?}; the options are {} (case-insensitive)",
                known_keys()
            )));
        };
        match lower.as_str() {
            "tls" => settings.tls = parse_bool(name, &value)?,
            "tlsverifycert" => settings.tls_verify_cert = parse_bool(name, &value)?,
            "tlscafile" => settings.tls_ca_file = Some(parse_path(name, &value)?),
            "usercertfile" => cert_file = Some(parse_path(name, &value)?),
            "userkeyfile" => key_file = Some(parse_path(name, &value)?),
            "nodepreference" => {
                settings.node_preference = NodePreference::parse(&value).ok_or_else(|| {
                    ParseError::new(format!(
                        "{name}={value:?} is not a node preference; use {}",
                        NodePreference::ALLOWED
                    ))
                })?
            }
            "defaultdeadline" => {
                settings.default_deadline = parse_millis_or_off(name, &value)?;
                if settings.default_deadline == Some(Duration::ZERO) {
                    return Err(ParseError::new(format!(
                        "{name}=0 would fail every call at once; give milliseconds > 0, or -1 for \
                         no deadline"
                    )));
                }
            }
            "maxdiscoverattempts" => {
                settings.max_discover_attempts = match value.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(ParseError::new(format!(
                            "{name}={value:?} must be a whole number of at least 1"
                        )))
                    }
                }
            }
            "discoveryinterval" => settings.discovery_interval = parse_millis(name, &value)?,
            "gossiptimeout" => {
                settings.gossip_timeout = parse_millis(name, &value)?;
                if settings.gossip_timeout.is_zero() {
                    return Err(ParseError::new(format!(
                        "{name}=0 would fail every gossip read; give milliseconds > 0"
                    )));
                }
            }
            "keepaliveinterval" => {
                settings.keep_alive_interval = parse_millis_or_off(name, &value)?
            }
            "keepalivetimeout" => settings.keep_alive_timeout = parse_millis_or_off(name, &value)?,
            "connectionname" => settings.connection_name = Some(value),
            _ => unreachable!("every key of KEYS is handled"),
        }
    }

    settings.user_certificate = match (cert_file, key_file) {
        (Some(cert_file), Some(key_file)) => Some(UserCertificate {
            cert_file,
            key_file,
        }),
        (None, None) => None,
        _ => {
            return Err(ParseError::new(
                "userCertFile and userKeyFile go together: give both (the certificate and its \
                 private key, PEM) or neither",
            ))
        }
    };
    if !settings.tls {
        let tls_only = [
            ("tlsCAFile", settings.tls_ca_file.is_some()),
            ("userCertFile", settings.user_certificate.is_some()),
            ("tlsVerifyCert", !settings.tls_verify_cert),
        ];
        if let Some((name, _)) = tls_only.iter().find(|(_, set)| *set) {
            return Err(ParseError::new(format!(
                "{name} is set but tls=false: a plaintext connection uses no certificates; \
                 remove {name} or set tls=true"
            )));
        }
    }
    Ok(settings)
}

fn decode(text: &str) -> Result<String, ParseError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ParseError::new("a percent-encoded part does not decode to UTF-8 text"))
}

fn parse_userinfo(userinfo: &str) -> Result<Credentials, ParseError> {
    let (user, password) = userinfo.split_once(':').ok_or_else(|| {
        ParseError::new(
            "the user info has no password: write user:password@host (percent-encode @ : / in \
             either as %40 %3A %2F)",
        )
    })?;
    let user = decode(user)
        .map_err(|_| ParseError::new("the user name does not percent-decode to UTF-8 text"))?;
    // The password's own text never goes into an error message.
    let password = decode(password)
        .map_err(|_| ParseError::new("the password does not percent-decode to UTF-8 text"))?;
    if user.is_empty() {
        return Err(ParseError::new(
            "the user name is empty: write user:password@host, or leave out the user info",
        ));
    }
    Ok(Credentials::new(user, password))
}

fn parse_hosts(hosts: &str) -> Result<Vec<Endpoint>, ParseError> {
    if hosts.is_empty() {
        return Err(ParseError::new(
            "no host: write host[:port], or host1:port1,host2:port2 for gossip seeds",
        ));
    }
    hosts.split(',').map(parse_host).collect()
}

fn parse_host(text: &str) -> Result<Endpoint, ParseError> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| {
            ParseError::new(format!("host {text:?} opens '[' without closing it"))
        })?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => {
                    return Err(ParseError::new(format!(
                        "host {text:?}: expected :port after the IPv6 address"
                    )))
                }
            },
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(ParseError::new(format!(
            "empty host in {text:?}: every entry of the host list needs a name or address"
        )));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || "/?#@[]%\\".contains(c))
    {
        return Err(ParseError::new(format!(
            "host {host:?} contains a character a host name cannot have"
        )));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(ParseError::new(format!(
                    "port {port:?} of host {host:?} must be a number from 1 to 65535"
                )))
            }
        },
    };
    Ok(Endpoint {
        host: host.to_owned(),
        port,
    })
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ParseError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ParseError::new(format!(
            "{name}={value:?} must be true or false"
        ))),
    }
}

fn parse_path(name: &str, value: &str) -> Result<PathBuf, ParseError> {
    if value.is_empty() {
        return Err(ParseError::new(format!(
            "{name} is empty: give a file path"
        )));
    }
    Ok(PathBuf::from(value))
}

fn parse_millis(name: &str, value: &str) -> Result<Duration, ParseError> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| {
            ParseError::new(format!(
                "{name}={value:?} must be a whole number of milliseconds"
            ))
        })
}

fn parse_millis_or_off(name: &str, value: &str) -> Result<Option<Duration>, ParseError> {
    if value == "-1" {
        return Ok(None);
    }
    value
        .parse::<u64>()
        .map(|ms| Some(Duration::from_millis(ms)))
        .map_err(|_| {
            ParseError::new(format!(
                "{name}={value:?} must be a whole number of milliseconds, or -1 for off"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_ok(s: &str) -> ConnectionSettings {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn parse_err(s: &str) -> String {
        match s.parse::<ConnectionSettings>() {
            Ok(settings) => panic!("{s} parsed as {settings:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_for_a_single_host() {
        let settings = parse_ok("kurrentdb://localhost");
        assert_eq!(settings, ConnectionSettings::single("localhost", 2113));
        assert!(settings.tls);
        assert!(!settings.uses_discovery());
        assert_eq!(settings.node_preference, NodePreference::Leader);
    }

    #[test]
    fn every_scheme_of_the_ecosystem() {
        for (scheme, discover) in [
            ("kurrentdb", false),
            ("kurrentdb+discover", true),
            ("esdb", false),
            ("esdb+discover", true),
            ("KurrentDB", false),
            ("kurrent+discover", true),
            ("kdb", false),
        ] {
            let settings = parse_ok(&format!("{scheme}://node:1234"));
            assert_eq!(settings.discover, discover, "{scheme}");
            assert_eq!(settings.uses_discovery(), discover, "{scheme}");
            assert_eq!(settings.hosts[0].port, 1234);
        }
        assert!(parse_err("https://node:2113").contains("AtomPub"));
        assert!(parse_err("node:2113").contains("scheme"));
    }

    #[test]
    fn hosts_ipv6_and_seed_lists() {
        let settings = parse_ok("esdb://h1:2111,h2,[::1]:2113/?tls=false");
        assert_eq!(
            settings.hosts,
            vec![
                Endpoint {
                    host: "h1".into(),
                    port: 2111
                },
                Endpoint {
                    host: "h2".into(),
                    port: 2113
                },
                Endpoint {
                    host: "::1".into(),
                    port: 2113
                },
            ]
        );
        assert!(settings.uses_discovery());
        assert!(!settings.tls);
        assert!(parse_err("esdb://h1,,h2").contains("empty host"));
        assert!(parse_err("esdb://h1:0").contains("1 to 65535"));
        assert!(parse_err("esdb://h1:99999").contains("1 to 65535"));
        assert!(parse_err("esdb://h1/streams").contains("no path"));
        assert!(parse_err("esdb://").contains("no host"));
    }

    #[test]
    fn credentials_are_percent_decoded_and_never_printed() {
        let settings = parse_ok("kurrentdb://ad%40min:p%3Ass%40w%2Frd@node?tls=false");
        let credentials = settings.credentials.clone().unwrap();
        assert_eq!(credentials.username, "ad@min");
        assert_eq!(credentials.password.expose(), "p:ss@w/rd");
        for text in [format!("{settings}"), format!("{settings:?}")] {
            assert!(!text.contains("p:ss"), "{text}");
            assert!(!text.contains("p%3Ass"), "{text}");
        }
        // A raw '@' in the password: the last '@' ends the user info.
        let raw = parse_ok("kurrentdb://admin:ch@ngeit@node");
        assert_eq!(raw.credentials.unwrap().password.expose(), "ch@ngeit");
        assert_eq!(raw.hosts[0].host, "node");
        let err = parse_err("kurrentdb://admin@node");
        assert!(err.contains("no password"), "{err}");
        let err = parse_err("kurrentdb://admin:%FF%FEsecret@node");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn configured_credentials_fill_in_only_when_the_string_has_none() {
        let config = Some(Credentials::new("ops", "x"));
        let from_string = parse_ok("esdb://admin:changeit@n").or_credentials(config.clone());
        assert_eq!(from_string.credentials.unwrap().username, "admin");
        let from_config = parse_ok("esdb://n").or_credentials(config);
        assert_eq!(from_config.credentials.unwrap().username, "ops");
    }

    #[test]
    fn every_option_case_insensitively() {
        let settings = parse_ok(
            "kurrentdb://n?TLS=True&tlsverifycert=FALSE&TlsCaFile=/etc/ca%20file.pem\
             &userCertFile=/c.pem&USERKEYFILE=/k.pem&nodepreference=ReadOnlyReplica\
             &DefaultDeadline=2500&maxDiscoverAttempts=7&discoveryInterval=0\
             &gossipTimeout=1500&keepAliveInterval=-1&keepAliveTimeout=20000\
             &connectionName=standby%20one",
        );
        assert!(settings.tls);
        assert!(!settings.tls_verify_cert);
        assert_eq!(
            settings.tls_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca file.pem"))
        );
        assert_eq!(
            settings.user_certificate,
            Some(UserCertificate {
                cert_file: "/c.pem".into(),
                key_file: "/k.pem".into()
            })
        );
        assert_eq!(settings.node_preference, NodePreference::ReadOnlyReplica);
        assert_eq!(settings.default_deadline, Some(Duration::from_millis(2500)));
        assert_eq!(settings.max_discover_attempts, 7);
        assert_eq!(settings.discovery_interval, Duration::ZERO);
        assert_eq!(settings.gossip_timeout, Duration::from_millis(1500));
        assert_eq!(settings.keep_alive_interval, None);
        assert_eq!(settings.keep_alive_timeout, Some(Duration::from_secs(20)));
        assert_eq!(settings.connection_name.as_deref(), Some("standby one"));
    }

    #[test]
    fn bad_values_name_the_key_and_what_is_allowed() {
        for (string, needles) in [
            ("esdb://n?tls=yes", &["tls", "true or false"][..]),
            ("esdb://n?tlsCaFiel=/x", &["tlsCaFiel", "tlsCAFile"]),
            (
                "esdb://n?nodePreference=primary",
                &["nodePreference", "leader, follower"],
            ),
            (
                "esdb://n?defaultDeadline=soon",
                &["defaultDeadline", "milliseconds"],
            ),
            ("esdb://n?defaultDeadline=0", &["defaultDeadline", "-1"]),
            (
                "esdb://n?defaultDeadline=-5",
                &["defaultDeadline", "-1 for off"],
            ),
            (
                "esdb://n?maxDiscoverAttempts=0",
                &["maxDiscoverAttempts", "at least 1"],
            ),
            ("esdb://n?gossipTimeout=0", &["gossipTimeout"]),
            ("esdb://n?userCertFile=/c.pem", &["userKeyFile"]),
            ("esdb://n?tls", &["no value"]),
            (
                "esdb://n?tls=false&tlsCAFile=/ca.pem",
                &["tlsCAFile", "tls=false"],
            ),
            ("esdb://n?tlsCAFile=", &["tlsCAFile", "empty"]),
        ] {
            let err = parse_err(string);
            for needle in needles {
                assert!(err.contains(needle), "{string}: {err:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn display_is_a_parseable_string_without_the_password() {
        let settings = parse_ok("esdb+discover://admin:changeit@a:1,b:2?tls=false");
        let shown = settings.to_string();
        assert!(shown.starts_with("kurrentdb+discover://admin:***@a:1,b:2?tls=false"));
        let reparsed = parse_ok(&shown);
        assert_eq!(reparsed.credentials.unwrap().password.expose(), "***");
        assert_eq!(
            parse_ok(&settings.to_connection_string_with_password()),
            settings
        );
    }

    fn arb_text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ -~é€😀]{0,12}").unwrap()
    }

    fn arb_host() -> impl Strategy<Value = Endpoint> {
        (
            prop_oneof![
                proptest::string::string_regex("[a-z][a-z0-9.-]{0,15}").unwrap(),
                Just("::1".to_owned()),
                Just("127.0.0.1".to_owned()),
            ],
            1u16..,
        )
            .prop_map(|(host, port)| Endpoint { host, port })
    }

    fn arb_settings() -> impl Strategy<Value = ConnectionSettings> {
        (
            (
                any::<bool>(),
                proptest::collection::vec(arb_host(), 1..4),
                proptest::option::of((
                    proptest::string::string_regex("[ -~é]{1,10}").unwrap(),
                    arb_text(),
                )),
                any::<bool>(),
                any::<bool>(),
                proptest::option::of(proptest::string::string_regex("/[ -~]{1,20}").unwrap()),
                any::<bool>(),
            ),
            (
                prop_oneof![
                    Just(NodePreference::Leader),
                    Just(NodePreference::Follower),
                    Just(NodePreference::Random),
                    Just(NodePreference::ReadOnlyReplica),
                ],
                proptest::option::of(1u64..10_000_000),
                1u32..100,
                0u64..100_000,
                1u64..100_000,
                proptest::option::of(0u64..100_000),
                proptest::option::of(0u64..100_000),
                proptest::option::of(arb_text()),
            ),
        )
            .prop_map(
                |(
                    (discover, hosts, credentials, tls, verify, ca, user_cert),
                    (pref, deadline, attempts, interval, gossip, ka_interval, ka_timeout, name),
                )| {
                    let mut s = ConnectionSettings::single("x", 1);
                    s.discover = discover;
                    s.hosts = hosts;
                    s.credentials = credentials.map(|(u, p)| Credentials::new(u, p));
                    s.tls = tls;
                    s.tls_verify_cert = verify || !tls;
                    s.tls_ca_file = ca.filter(|_| tls).map(PathBuf::from);
                    s.user_certificate = (user_cert && tls).then(|| UserCertificate {
                        cert_file: "/certs/user.crt".into(),
                        key_file: "/certs/user & key.pem".into(),
                    });
                    s.node_preference = pref;
                    s.default_deadline = deadline.map(Duration::from_millis);
                    s.max_discover_attempts = attempts;
                    s.discovery_interval = Duration::from_millis(interval);
                    s.gossip_timeout = Duration::from_millis(gossip);
                    s.keep_alive_interval = ka_interval.map(Duration::from_millis);
                    s.keep_alive_timeout = ka_timeout.map(Duration::from_millis);
                    s.connection_name = name;
                    s
                },
            )
    }

    /// Flips the case of the ASCII letters where `mask` has a set bit.
    fn recase(text: &str, mask: u64) -> String {
        text.chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 64) & 1 == 1 {
                    if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                } else {
                    c
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn round_trips(settings in arb_settings()) {
            let text = settings.to_connection_string_with_password();
            let parsed: ConnectionSettings = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(parsed, settings);
        }

        #[test]
        fn query_keys_and_enumerations_ignore_case(settings in arb_settings(), mask in any::<u64>()) {
            let text = settings.to_connection_string_with_password();
            let (head, query) = text.split_once('?').unwrap();
            // Keys, and the values that are enumerations, may be written in any case.
            let query: Vec<String> = query
                .split('&')
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap();
                    let v = if matches!(k, "tls" | "tlsVerifyCert" | "nodePreference") {
                        recase(v, mask.rotate_left(7))
                    } else {
                        v.to_owned()
                    };
                    format!("{}={v}", recase(k, mask))
                })
                .collect();
            let parsed: ConnectionSettings = format!("{head}?{}", query.join("&")).parse().unwrap();
            prop_assert_eq!(parsed, settings);
        }

        #[test]
        fn never_panics_and_never_echoes_a_password(input in "\\PC{0,80}", secret in "[a-z]{12}") {
            let _ = input.parse::<ConnectionSettings>();
            let with_secret = format!("esdb://u:{secret}@{input}");
            if let Err(e) = with_secret.parse::<ConnectionSettings>() {
                prop_assert!(!e.to_string().contains(&secret), "{}", e);
            }
        }
    }
}
