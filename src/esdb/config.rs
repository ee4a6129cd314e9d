//! Connection settings of one [`Client`](super::client::Client): where the node is, how to
//! authenticate, which CA to trust, and how long to wait.
//!
//! Credentials never appear in `Debug` or `Display` output: [`Password`] prints as `***`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::http::headers::HeaderFamily;

/// A password that cannot be printed by accident.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    /// The secret itself; only for building the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// HTTP Basic credentials of an Event Store user.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize)]
pub struct Credentials {
    /// Login name.
    pub username: String,
    /// Password (printed as `***`).
    pub password: Password,
}

impl Credentials {
    /// Builds credentials.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: Password::new(password),
        }
    }
}

impl fmt::Display for Credentials {
    /// The user name only, e.g. `admin (password ***)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (password ***)", self.username)
    }
}

/// Default TCP/TLS connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default request timeout: how long to wait for a response's head, and then for each chunk of
/// its body. The server itself gives up after 10 s (contract §2.2), so a bit more lets its
/// 408/500 answer arrive.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings of one Event Store client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URL of the node, e.g. `https://node1:2113` (may include a path prefix). Must not
    /// contain user info: put credentials in [`ClientConfig::credentials`].
    pub base_url: Url,
    /// Basic credentials; `None` sends anonymous requests (refused by 5.0.2+ and 23.6+ for
    /// `/streams`).
    pub credentials: Option<Credentials>,
    /// PEM file with additional CA certificates to trust (e.g. the cluster's own CA), on top of the
    /// system roots.
    pub ca_file: Option<PathBuf>,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Inactivity timeout of a request: the longest wait for the response head (a long-poll read
    /// gets this plus its long-poll time), then for each chunk of the body. Not a bound on the
    /// whole transfer: a large body that keeps arriving over a slow link must be allowed to
    /// finish, or it would time out and be retried at the same size forever.
    pub request_timeout: Duration,
    /// Which header/media-type family to send (responses in both are always accepted).
    pub header_family: HeaderFamily,
    /// Offer HTTP/2 in TLS ALPN. Off by default: the server's only error text is the HTTP/1.1
    /// reason phrase, which HTTP/2 does not have (contract §2.2).
    pub http2: bool,
    /// The parsed connection string when the address names the gRPC wire; `base_url` is then
    /// the first node's address, for display only.
    pub grpc: Option<Box<super::grpc::ConnectionSettings>>,
}

impl ClientConfig {
    /// Settings with defaults for everything but the URL.
    pub fn new(base_url: Url) -> ClientConfig {
        ClientConfig {
            base_url,
            credentials: None,
            ca_file: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            header_family: HeaderFamily::default(),
            http2: false,
            grpc: None,
        }
    }

    /// These settings aimed at one node of the cluster (`host:port` from gossip), on the same
    /// wire, without discovery.
    pub fn for_node(&self, host: &str, port: u16) -> ClientConfig {
        let mut config = self.clone();
        let _ = config.base_url.set_host(Some(host));
        let _ = config.base_url.set_port(Some(port));
        if let Some(settings) = &mut config.grpc {
            settings.discover = false;
            settings.hosts = vec![super::node::Endpoint {
                host: host.to_owned(),
                port,
            }];
        }
        config
    }

    /// The settings for an address in either form: an `http(s)://` base URL (AtomPub) or a
    /// `kurrentdb://`/`esdb://` connection string (gRPC).
    ///
    /// # Errors
    ///
    /// [`Error::Config`](super::Error::Config) naming what is wrong with the address.
    pub fn for_address(address: &str) -> Result<ClientConfig, super::Error> {
        let bad = |detail: String| super::Error::Config { detail };
        match super::client::Wire::of(address) {
            Some(super::client::Wire::Http) => Url::parse(address)
                .map(ClientConfig::new)
                .map_err(|e| bad(format!("{address:?} is not a URL: {e}"))),
            Some(super::client::Wire::Grpc) => {
                let settings: super::grpc::ConnectionSettings =
                    address.parse().map_err(|e| bad(format!("{e}")))?;
                let first = settings
                    .hosts
                    .first()
                    .map(|h| format!("{}:{}", h.host, h.port))
                    .unwrap_or_default();
                let scheme = if settings.tls { "https" } else { "http" };
                let url = Url::parse(&format!("{scheme}://{first}"))
                    .map_err(|e| bad(format!("{address:?}: {e}")))?;
                let mut config = ClientConfig::new(url);
                config.grpc = Some(Box::new(settings));
                Ok(config)
            }
            None => Err(bad(format!(
                "{address:?}: the address must start with kurrentdb:// or esdb:// (gRPC, \
                 optionally +discover) or http:// or https:// (AtomPub)"
            ))),
        }
    }

    /// Sets the credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> ClientConfig {
        self.credentials = Some(credentials);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print_the_password() {
        let credentials = Credentials::new("admin", "changeit");
        let config = ClientConfig::new(Url::parse("http://127.0.0.1:2113").unwrap())
            .with_credentials(credentials.clone());
        for text in [
            format!("{credentials:?}"),
            format!("{credentials}"),
            format!("{config:?}"),
            format!("{:?}", credentials.password),
            format!("{}", credentials.password),
        ] {
            assert!(!text.contains("changeit"), "{text}");
        }
        assert!(format!("{credentials}").contains("admin"));
        assert_eq!(credentials.password.expose(), "changeit");
    }

    #[test]
    fn credentials_deserialize() {
        let credentials: Credentials =
            serde_json::from_str(r#"{"username":"ops","password":"s3cret"}"#).unwrap();
        assert_eq!(credentials, Credentials::new("ops", "s3cret"));
    }
}
