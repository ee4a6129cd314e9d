//! [`Client`]: the gRPC client, on the `proto` crate's tonic stubs.
//!
//! # Connection
//!
//! One HTTP/2 channel to one node at a time. With a single host and no `+discover` the client
//! uses that host as given and never calls Gossip (as every official client). Otherwise it reads
//! Gossip from the seeds in turn, up to `maxDiscoverAttempts` rounds `discoveryInterval` apart, and
//! connects to the member [`discovery::select`] picks for the node preference. A "not leader"
//! answer switches the channel to the leader named in the trailers and repeats the call there
//! (at most [`MAX_REDIRECTS`] times); a broken connection in discovery mode makes the next call
//! discover again. TLS is rustls on the ring provider, done in the connector, so
//! `tlsVerifyCert=false` and X.509 user certificates are possible; the requests still say
//! `:scheme https` as the server expects on a TLS port.
//!
//! # Credentials
//!
//! Basic `authorization` metadata is sent:
//! * over TLS, on every call when credentials are configured: the server proved its identity
//!   first;
//! * over plaintext, only to a node that has refused an anonymous call (`PermissionDenied` /
//!   `Unauthenticated`): the client then repeats that call once with the credentials and keeps
//!   sending them to that node. A 26.2 `--disable-tls` server, which keeps authentication on,
//!   asks this way; an `--insecure` node serves anonymous calls as `system` and never asks, so
//!   the password never crosses the network in clear to a node that did not need it. (The
//!   official Rust client always sends; the Python client never does over plaintext.)
//!
//! # Deadlines
//!
//! Every call except subscriptions gets the deadline of [`Client::with_deadline`], else
//! `defaultDeadline`, else none: sent as `grpc-timeout` so the server stops too, and enforced
//! here for the whole call, reply stream included.
//!
//! # Cancel safety
//!
//! Dropping a call's future abandons the call. For a write the outcome is then unknown: retry
//! with the same event ids and an exact expected revision, which the server treats as an
//! idempotent replay.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream;
use proto::event_store::client::gossip::gossip_client::GossipClient;
use proto::event_store::client::server_features::server_features_client::ServerFeaturesClient;
use proto::event_store::client::streams::{
    self as pb, append_req, append_resp, batch_append_req, batch_append_resp, delete_req,
    delete_resp, read_req, read_resp, streams_client::StreamsClient, tombstone_req, tombstone_resp,
};
use proto::event_store::client::users::{self as users_pb, users_client::UsersClient};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tracing::{debug, info, instrument, warn};
use uuid::Uuid;

use super::append::AppendMessage;
use super::convert::{self, Expected, ReadEvent, SubscriptionMessage};
use super::discovery;
use super::error::{from_batch_status, from_status, is_access_denied, not_leader, CallInfo};
use super::read_resp::ReadRespWire;
use super::settings::{ConnectionSettings, NodePreference};
use crate::esdb::config::{Credentials, Password};
use crate::esdb::error::Error;
use crate::esdb::node::{Endpoint, Gossip, Security};
use crate::esdb::page::{Direction, Lookup};
use crate::esdb::tls;
use crate::esdb::types::EventData;
use crate::esdb::types::{NewUser, UserDetails};
use crate::position::{CurrentVersion, ExpectedVersion, Position, StreamRevision};

/// How often one call follows "not leader" before giving up with [`Error::NotLeader`].
pub const MAX_REDIRECTS: usize = 3;
/// TCP/TLS connect timeout of a channel.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest message accepted or sent: above the server's default limits (16 MiB events), below
/// anything that would exhaust memory on a bad peer.
pub const MAX_MESSAGE: usize = 64 << 20;
/// BatchAppend sends events in chunks of at most this many bytes of data and metadata.
const BATCH_CHUNK_BYTES: usize = 1 << 20;

/// Where a read starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom<T> {
    /// The first event.
    Start,
    /// After the last event (backward reads start at the newest).
    End,
    /// At this position/revision, inclusive.
    At(T),
}

/// What a server-side `$all` filter looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterOn {
    /// The stream name.
    StreamName,
    /// The event type.
    EventType,
}

/// A server-side `$all` filter: prefixes, or else a regular expression (.NET syntax on the
/// server, so look-ahead is allowed), matched anywhere unless anchored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// What is matched.
    pub on: FilterOn,
    /// The regex (used when `prefixes` is empty).
    pub regex: String,
    /// Prefixes; any one matching passes.
    pub prefixes: Vec<String>,
    /// Records considered per checkpoint window; `None` = the server's default (32).
    pub window: Option<u32>,
    /// A checkpoint is sent every `window × multiplier` considered records (at least 1).
    pub checkpoint_interval_multiplier: u32,
}

impl Filter {
    /// The stream-name regex a replicator needs: every user stream (its events, links and
    /// `$streamDeleted` tombstones) and every metastream `$$…` (the `$metadata` records,
    /// soft deletes included); no other system stream. Unlike "exclude system events" (type
    /// regex `^[^$]`), which would drop `$metadata`, `$streamDeleted` and `$>` links.
    pub const REPLICATION_REGEX: &'static str = r"^(?:[^$]|\$\$)";

    /// [`Filter::REPLICATION_REGEX`] on stream names, a checkpoint every 32 considered records.
    pub fn replication() -> Filter {
        Filter::regex(FilterOn::StreamName, Filter::REPLICATION_REGEX)
    }

    /// A regex filter.
    pub fn regex(on: FilterOn, regex: impl Into<String>) -> Filter {
        Filter {
            on,
            regex: regex.into(),
            prefixes: Vec::new(),
            window: None,
            checkpoint_interval_multiplier: 1,
        }
    }

    /// A prefix filter.
    pub fn prefixes(on: FilterOn, prefixes: impl IntoIterator<Item = impl Into<String>>) -> Filter {
        Filter {
            on,
            regex: String::new(),
            prefixes: prefixes.into_iter().map(Into::into).collect(),
            window: None,
            checkpoint_interval_multiplier: 1,
        }
    }

    fn to_proto(&self) -> read_req::options::FilterOption {
        use read_req::options::filter_options::{self as f, Expression};
        let expression = Expression {
            regex: self.regex.clone(),
            prefix: self.prefixes.clone(),
        };
        read_req::options::FilterOption::Filter(read_req::options::FilterOptions {
            filter: Some(match self.on {
                FilterOn::StreamName => f::Filter::StreamIdentifier(expression),
                FilterOn::EventType => f::Filter::EventType(expression),
            }),
            window: Some(match self.window {
                Some(max) => f::Window::Max(max),
                None => f::Window::Count(()),
            }),
            checkpoint_interval_multiplier: self.checkpoint_interval_multiplier.max(1),
        })
    }
}

/// The outcome of an append, a metadata write or a batch append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteResult {
    /// The stream's last revision after the write (for a replayed append: the revision the
    /// original reached).
    pub current: CurrentVersion,
    /// Position of the write's last record in `$all`, when the server says.
    pub position: Option<Position>,
}

/// `ServerFeatures.GetSupportedMethods`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFeatures {
    /// `major.minor.patch`.
    pub version: String,
    /// The gRPC methods the node serves, lower-cased as the server lists them.
    pub methods: Vec<SupportedMethod>,
}

impl ServerFeatures {
    /// Whether the node serves `service`/`method` (case-insensitive).
    pub fn supports(&self, service: &str, method: &str) -> bool {
        self.methods.iter().any(|m| {
            m.service.eq_ignore_ascii_case(service) && m.method.eq_ignore_ascii_case(method)
        })
    }
}

/// One supported method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupportedMethod {
    /// Full service name, e.g. `event_store.client.streams.streams`.
    pub service: String,
    /// Method name, e.g. `batchappend`.
    pub method: String,
    /// Feature flags, e.g. `deadline_duration`.
    pub features: Vec<String>,
}

/// The node the client talks to now.
#[derive(Clone)]
struct Node {
    endpoint: Endpoint,
    channel: Channel,
    generation: u64,
}

struct Inner {
    settings: ConnectionSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    node: tokio::sync::Mutex<Option<Node>>,
    generation: AtomicU64,
    /// Plaintext nodes that refused an anonymous call (see "Credentials").
    asked_for_credentials: Mutex<HashSet<Endpoint>>,
}

/// A gRPC Event Store client. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    deadline: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("grpc::Client")
            .field("settings", &self.inner.settings.to_string())
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// The metadata and deadline of one attempt of a call.
#[derive(Clone)]
struct Meta {
    metadata: MetadataMap,
    timeout: Option<Duration>,
}

impl Meta {
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        if let Some(timeout) = self.timeout {
            request.set_timeout(timeout);
        }
        request
    }
}

/// Whether a call writes, so it carries `requires-leader` under a leader preference.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

impl Client {
    /// A client for `settings`. Connects lazily: the first call discovers and connects.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the TLS files cannot be used.
    pub fn new(settings: ConnectionSettings) -> Result<Client, Error> {
        let tls = if settings.tls {
            let user_certificate = settings
                .user_certificate
                .as_ref()
                .map(|c| (c.cert_file.as_path(), c.key_file.as_path()));
            Some(Arc::new(tls::grpc_client_config(
                settings.tls_ca_file.as_deref(),
                settings.tls_verify_cert,
                user_certificate,
            )?))
        } else {
            None
        };
        Ok(Client {
            inner: Arc::new(Inner {
                settings,
                tls,
                node: tokio::sync::Mutex::new(None),
                generation: AtomicU64::new(0),
                asked_for_credentials: Mutex::new(HashSet::new()),
            }),
            deadline: None,
        })
    }

    /// A client for a connection string; `credentials` from the configuration apply when the
    /// string has none.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad connection string or unusable TLS files.
    pub fn from_connection_string(
        connection_string: &str,
        credentials: Option<Credentials>,
    ) -> Result<Client, Error> {
        let settings: ConnectionSettings =
            connection_string.parse().map_err(|e| Error::Config {
                detail: format!("{e}"),
            })?;
        Client::new(settings.or_credentials(credentials))
    }

    /// The same client (same connection) whose calls use `deadline` instead of
    /// `defaultDeadline`.
    pub fn with_deadline(&self, deadline: Duration) -> Client {
        Client {
            inner: self.inner.clone(),
            deadline: Some(deadline),
        }
    }

    /// The connection settings.
    pub fn settings(&self) -> &ConnectionSettings {
        &self.inner.settings
    }

    /// The connection string, printable (password as `***`).
    pub fn endpoint(&self) -> String {
        self.inner.settings.to_string()
    }

    /// The same node without credentials: a new connection that sends none.
    pub fn anonymous(&self) -> Client {
        let mut settings = self.inner.settings.clone();
        settings.credentials = None;
        Client::new(settings).unwrap_or_else(|_| self.clone())
    }

    /// How the node is secured: an anonymous read of `$all` that succeeds means `--insecure`;
    /// otherwise accounts are the node's own unless the Users service is missing (accounts
    /// from LDAPS or OAuth).
    ///
    /// # Errors
    ///
    /// [`Error`] when the node cannot be asked.
    pub async fn security(&self) -> Result<Security, Error> {
        let tls = self.inner.settings.tls;
        match self
            .anonymous()
            .read_all(ReadFrom::End, Direction::Backward, 1, None)
            .await
        {
            Ok(_) => return Ok(Security::Insecure),
            Err(Error::AccessDenied { .. }) => {}
            Err(e) => return Err(e),
        }
        let login = self
            .inner
            .settings
            .credentials
            .as_ref()
            .map_or("admin", |c| c.username.as_str());
        Ok(match self.user(login).await {
            Err(Error::Rejected {
                code: "Unimplemented",
                ..
            }) => Security::External { tls },
            _ if tls => Security::Secure,
            _ => Security::PlaintextWithAuth,
        })
    }

    fn deadline(&self) -> Option<Duration> {
        self.deadline.or(self.inner.settings.default_deadline)
    }

    fn channel(&self, endpoint: &Endpoint) -> Result<Channel, Error> {
        let settings = &self.inner.settings;
        let host = if endpoint.host.contains(':') {
            format!("[{}]", endpoint.host)
        } else {
            endpoint.host.clone()
        };
        let config_error = |e: &dyn std::fmt::Display| Error::Config {
            detail: format!(
                "cannot use {host}:{} as a gRPC endpoint: {e}",
                endpoint.port
            ),
        };
        let mut builder =
            tonic::transport::Endpoint::from_shared(format!("http://{host}:{}", endpoint.port))
                .map_err(|e| config_error(&e))?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true);
        if let Some(interval) = settings.keep_alive_interval {
            builder = builder
                .http2_keep_alive_interval(interval)
                .keep_alive_while_idle(true);
        }
        if let Some(timeout) = settings.keep_alive_timeout {
            builder = builder.keep_alive_timeout(timeout);
        }
        let Some(tls) = self.inner.tls.clone() else {
            return Ok(builder.connect_lazy());
        };
        // TLS happens in the connector; the origin makes the requests say `https`, which the
        // server checks against the connection.
        let origin = format!("https://{host}:{}", endpoint.port)
            .parse()
            .map_err(|e| config_error(&e))?;
        builder = builder.origin(origin);
        let server_name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
            .map_err(|e| config_error(&e))?;
        let address = (endpoint.host.clone(), endpoint.port);
        let connector = tower::service_fn(move |_: http::Uri| {
            let tls = tls.clone();
            let server_name = server_name.clone();
            let address = address.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect((address.0.as_str(), address.1)).await?;
                tcp.set_nodelay(true)?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(server_name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        Ok(builder.connect_with_connector_lazy(connector))
    }

    fn new_node(&self, endpoint: Endpoint) -> Result<Node, Error> {
        Ok(Node {
            channel: self.channel(&endpoint)?,
            endpoint,
            generation: self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1,
        })
    }

    /// The current node, discovering and connecting first if there is none.
    async fn node(&self) -> Result<Node, Error> {
        let mut current = self.inner.node.lock().await;
        if let Some(node) = current.as_ref() {
            return Ok(node.clone());
        }
        let endpoint = if self.inner.settings.uses_discovery() {
            self.discover().await?
        } else {
            self.inner.settings.hosts[0].clone()
        };
        let node = self.new_node(endpoint)?;
        debug!(endpoint = %node.endpoint, "gRPC node selected");
        *current = Some(node.clone());
        Ok(node)
    }

    /// After a failure on `node`: connect to `next` (the leader it named), or drop it so the
    /// next call discovers again. Does nothing if another call already moved on.
    async fn replace(&self, node: &Node, next: Option<Endpoint>) -> Result<(), Error> {
        let mut current = self.inner.node.lock().await;
        if current.as_ref().map(|n| n.generation) != Some(node.generation) {
            return Ok(());
        }
        *current = match next {
            Some(endpoint) => Some(self.new_node(endpoint)?),
            None => None,
        };
        Ok(())
    }

    /// Reads Gossip from the seeds until one names a member that fits the node preference.
    async fn discover(&self) -> Result<Endpoint, Error> {
        let settings = &self.inner.settings;
        let mut last_problem = String::from("no seed answered");
        for attempt in 1..=settings.max_discover_attempts {
            let start = discovery::random_index(settings.hosts.len());
            for i in 0..settings.hosts.len() {
                let seed = &settings.hosts[(start + i) % settings.hosts.len()];
                match self.gossip_from(seed).await {
                    Ok(gossip) => {
                        match discovery::select(
                            &gossip,
                            settings.node_preference,
                            discovery::random_index,
                        ) {
                            Some(endpoint) => {
                                info!(%seed, %endpoint, preference = %settings.node_preference, "discovered a cluster member");
                                return Ok(endpoint);
                            }
                            None => {
                                last_problem = format!(
                                    "{seed}'s gossip names no alive member for \
                                     nodePreference={}",
                                    settings.node_preference
                                )
                            }
                        }
                    }
                    Err(e) => {
                        debug!(%seed, error = %e, "gossip read failed");
                        last_problem = e.to_string();
                    }
                }
            }
            if attempt < settings.max_discover_attempts {
                tokio::time::sleep(settings.discovery_interval).await;
            }
        }
        Err(Error::Unavailable {
            op: "discover the cluster",
            endpoint: settings
                .hosts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            detail: format!(
                "no member found after {} rounds of gossip (maxDiscoverAttempts); last: {last_problem}",
                settings.max_discover_attempts
            ),
        })
    }

    async fn gossip_from(&self, seed: &Endpoint) -> Result<Gossip, Error> {
        let channel = self.channel(seed)?;
        let meta = Meta {
            metadata: self.metadata(seed, Kind::Read),
            timeout: Some(self.inner.settings.gossip_timeout),
        };
        let call = CallInfo::new("read gossip", seed.to_string());
        let reply = tokio::time::timeout(
            self.inner.settings.gossip_timeout,
            GossipClient::new(channel).read(meta.request(())),
        )
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("gossip timeout")));
        match reply {
            Ok(info) => Ok(convert::gossip(info.into_inner())),
            Err(status) => Err(from_status(&status, &call)),
        }
    }

    fn sends_credentials(&self, endpoint: &Endpoint) -> bool {
        self.inner.settings.credentials.is_some()
            && (self.inner.tls.is_some()
                || self
                    .inner
                    .asked_for_credentials
                    .lock()
                    .expect("the credentials set is never poisoned: no panics under the lock")
                    .contains(endpoint))
    }

    fn metadata(&self, endpoint: &Endpoint, kind: Kind) -> MetadataMap {
        let settings = &self.inner.settings;
        let mut metadata = MetadataMap::new();
        if let Some(credentials) = settings
            .credentials
            .as_ref()
            .filter(|_| self.sends_credentials(endpoint))
        {
            let token = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                credentials.username,
                credentials.password.expose()
            ));
            if let Ok(value) = AsciiMetadataValue::try_from(format!("Basic {token}")) {
                metadata.insert("authorization", value);
            }
        }
        if kind == Kind::Write && settings.node_preference == NodePreference::Leader {
            metadata.insert("requires-leader", AsciiMetadataValue::from_static("true"));
        }
        if let Some(name) = &settings.connection_name {
            match AsciiMetadataValue::try_from(name.as_str()) {
                Ok(value) => {
                    metadata.insert("connection-name", value);
                }
                Err(_) => warn!("connectionName is not printable ASCII; not sent"),
            }
        }
        metadata
    }

    /// Runs one call: picks the node, sets metadata and deadline, follows "not leader", sends
    /// the credentials to a plaintext node that asks for them, and maps the failure.
    async fn run<T, F, Fut>(
        &self,
        mut call: CallInfo,
        kind: Kind,
        timeout: Option<Duration>,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Channel, Meta) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut redirects = 0;
        let mut retried_with_credentials = false;
        loop {
            let node = self.node().await?;
            let meta = Meta {
                metadata: self.metadata(&node.endpoint, kind),
                timeout,
            };
            let sent_credentials = meta.metadata.contains_key("authorization");
            let outcome = match timeout {
                Some(limit) => tokio::time::timeout(limit, attempt(node.channel.clone(), meta))
                    .await
                    .unwrap_or_else(|_| Err(Status::deadline_exceeded("client deadline"))),
                None => attempt(node.channel.clone(), meta).await,
            };
            let status = match outcome {
                Ok(value) => return Ok(value),
                Err(status) => status,
            };
            if let Some(leader) = not_leader(&status) {
                if redirects < MAX_REDIRECTS {
                    redirects += 1;
                    warn!(from = %node.endpoint, leader = ?leader, op = call.op, "not leader; reconnecting");
                    self.replace(&node, leader).await?;
                    continue;
                }
            } else if is_access_denied(&status)
                && !sent_credentials
                && !retried_with_credentials
                && self.inner.settings.credentials.is_some()
                && self.inner.tls.is_none()
            {
                retried_with_credentials = true;
                debug!(endpoint = %node.endpoint, "plaintext node refused an anonymous call; sending credentials");
                self.inner
                    .asked_for_credentials
                    .lock()
                    .expect("the credentials set is never poisoned: no panics under the lock")
                    .insert(node.endpoint.clone());
                continue;
            }
            call.endpoint = node.endpoint.to_string();
            call.user = sent_credentials
                .then(|| {
                    self.inner
                        .settings
                        .credentials
                        .as_ref()
                        .map(|c| c.username.clone())
                })
                .flatten();
            call.deadline = timeout;
            let error = from_status(&status, &call);
            if matches!(error, Error::Unreachable { .. } | Error::Unavailable { .. })
                && self.inner.settings.uses_discovery()
            {
                self.replace(&node, None).await?;
            }
            return Err(error);
        }
    }

    /// A call handle on `channel` with the message size limits of [`Client::streams`], once the
    /// channel can take a request: for the calls made with codecs of our own.
    async fn ready_grpc(channel: Channel) -> Result<tonic::client::Grpc<Channel>, Status> {
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        grpc.ready()
            .await
            .map_err(|e| Status::unknown(format!("the channel is not ready: {e}")))?;
        Ok(grpc)
    }

    /// `Streams.Append` with requests encoded by [`AppendMessage`] (the generated client method
    /// takes only the generated `AppendReq`).
    async fn append_call(
        channel: Channel,
        request: tonic::Request<impl futures_util::Stream<Item = AppendMessage> + Send + 'static>,
    ) -> Result<tonic::Response<pb::AppendResp>, Status> {
        let mut grpc = Self::ready_grpc(channel).await?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/event_store.client.streams.Streams/Append",
        );
        let codec = tonic_prost::ProstCodec::<AppendMessage, pb::AppendResp>::default();
        grpc.client_streaming(request, path, codec).await
    }

    /// `Streams.Read` with replies decoded as [`ReadRespWire`] (the generated client method
    /// decodes only the generated `ReadResp`).
    async fn read_call(
        channel: Channel,
        request: Request<pb::ReadReq>,
    ) -> Result<tonic::Response<tonic::Streaming<ReadRespWire>>, Status> {
        let mut grpc = Self::ready_grpc(channel).await?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/event_store.client.streams.Streams/Read",
        );
        let codec = tonic_prost::ProstCodec::<pb::ReadReq, ReadRespWire>::default();
        grpc.server_streaming(request, path, codec).await
    }

    fn streams(channel: Channel) -> StreamsClient<Channel> {
        StreamsClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn read_options(
        stream_option: read_req::options::StreamOption,
        direction: Direction,
        count_option: read_req::options::CountOption,
        filter: Option<&Filter>,
    ) -> read_req::Options {
        use read_req::options as o;
        read_req::Options {
            stream_option: Some(stream_option),
            read_direction: match direction {
                Direction::Forward => o::ReadDirection::Forwards,
                Direction::Backward => o::ReadDirection::Backwards,
            } as i32,
            resolve_links: false,
            count_option: Some(count_option),
            filter_option: Some(match filter {
                Some(filter) => filter.to_proto(),
                None => o::FilterOption::NoFilter(()),
            }),
            uuid_option: Some(o::UuidOption {
                content: Some(o::uuid_option::Content::Structured(())),
            }),
            control_option: Some(o::ControlOption { compatibility: 1 }),
        }
    }

    /// Runs a bounded read and collects its replies.
    async fn read(
        &self,
        call: CallInfo,
        options: read_req::Options,
    ) -> Result<Vec<ReadRespWire>, Error> {
        let timeout = self.deadline();
        self.run(call, Kind::Read, timeout, |channel, meta| {
            let request = meta.request(pb::ReadReq {
                options: Some(options.clone()),
            });
            async move {
                let mut replies = Self::read_call(channel, request).await?.into_inner();
                let mut out = Vec::new();
                while let Some(reply) = replies.message().await? {
                    out.push(reply);
                }
                Ok(out)
            }
        })
        .await
    }

    fn events(replies: Vec<ReadRespWire>, call: &CallInfo) -> Result<Vec<ReadEvent>, Error> {
        replies
            .into_iter()
            .filter_map(|reply| match reply {
                ReadRespWire {
                    event: Some(event), ..
                } => Some(convert::read_event_wire(event, call)),
                ReadRespWire {
                    other: Some(read_resp::Content::Event(event)),
                    ..
                } => Some(convert::read_event(event, call)),
                _ => None,
            })
            .collect()
    }

    /// Reads up to `count` records of `$all` from `from` (inclusive) in `direction`, optionally
    /// filtered on the server.
    ///
    /// # Errors
    ///
    /// See [`Error`]; a read of an empty log is an empty vector.
    #[instrument(skip_all, fields(from = ?from, ?direction, count))]
    pub async fn read_all(
        &self,
        from: ReadFrom<Position>,
        direction: Direction,
        count: u64,
        filter: Option<&Filter>,
    ) -> Result<Vec<ReadEvent>, Error> {
        use read_req::options::{all_options::AllOption, AllOptions, CountOption, StreamOption};
        let all_option = match from {
            ReadFrom::Start => AllOption::Start(()),
            ReadFrom::End => AllOption::End(()),
            ReadFrom::At(p) => AllOption::Position(read_req::options::Position {
                commit_position: p.commit(),
                prepare_position: p.prepare(),
            }),
        };
        let options = Self::read_options(
            StreamOption::All(AllOptions {
                all_option: Some(all_option),
            }),
            direction,
            CountOption::Count(count),
            filter,
        );
        let call = CallInfo::new("read $all", self.endpoint()).stream("$all");
        let replies = self.read(call.clone(), options).await?;
        Self::events(replies, &call)
    }

    /// Reads up to `count` events of `stream` from `from` (inclusive) in `direction`.
    ///
    /// # Errors
    ///
    /// See [`Error`]; a missing or soft-deleted stream is [`Lookup::NotFound`], a tombstoned one
    /// [`Lookup::Deleted`].
    #[instrument(skip_all, fields(stream, from = ?from, ?direction, count))]
    pub async fn read_stream(
        &self,
        stream: &str,
        from: ReadFrom<StreamRevision>,
        direction: Direction,
        count: u64,
    ) -> Result<Lookup<Vec<ReadEvent>>, Error> {
        use read_req::options::{
            stream_options::RevisionOption, CountOption, StreamOption, StreamOptions,
        };
        let revision_option = match from {
            ReadFrom::Start => RevisionOption::Start(()),
            ReadFrom::End => RevisionOption::End(()),
            ReadFrom::At(r) => RevisionOption::Revision(r.get()),
        };
        let options = Self::read_options(
            StreamOption::Stream(StreamOptions {
                stream_identifier: Some(convert::stream_id(stream)),
                revision_option: Some(revision_option),
            }),
            direction,
            CountOption::Count(count),
            None,
        );
        let call = CallInfo::new("read stream", self.endpoint()).stream(stream);
        let replies = match self.read(call.clone(), options).await {
            Ok(replies) => replies,
            Err(Error::StreamDeleted { .. }) => return Ok(Lookup::Deleted),
            Err(e) => return Err(e),
        };
        if replies
            .iter()
            .any(|r| matches!(r.other, Some(read_resp::Content::StreamNotFound(_))))
        {
            return Ok(Lookup::NotFound);
        }
        Self::events(replies, &call).map(Lookup::Found)
    }

    async fn subscribe(
        &self,
        call: CallInfo,
        options: read_req::Options,
    ) -> Result<Subscription, Error> {
        // No deadline: a subscription lives until dropped. The first reply (the confirmation)
        // is awaited here so that a refusal surfaces from this call, with the leader and
        // credential handling of every other call.
        let (replies, first) = self
            .run(call.clone(), Kind::Read, None, |channel, meta| {
                let request = meta.request(pb::ReadReq {
                    options: Some(options.clone()),
                });
                async move {
                    let mut replies = Self::read_call(channel, request).await?.into_inner();
                    let first = replies.message().await?;
                    Ok((replies, first))
                }
            })
            .await?;
        let pending =
            first.filter(|r| !matches!(r.other, Some(read_resp::Content::Confirmation(_))));
        Ok(Subscription {
            replies,
            pending,
            call,
        })
    }

    /// Subscribes to `$all` after `after` (exclusive; `None` = from the start): the stored
    /// records first, then [`SubscriptionMessage::CaughtUp`], then live records. With a filter
    /// the server also sends [`SubscriptionMessage::Checkpoint`]s.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub async fn subscribe_all(
        &self,
        after: Option<Position>,
        filter: Option<&Filter>,
    ) -> Result<Subscription, Error> {
        use read_req::options::{
            all_options::AllOption, AllOptions, CountOption, StreamOption, SubscriptionOptions,
        };
        let all_option = match after {
            None => AllOption::Start(()),
            Some(p) => AllOption::Position(read_req::options::Position {
                commit_position: p.commit(),
                prepare_position: p.prepare(),
            }),
        };
        let options = Self::read_options(
            StreamOption::All(AllOptions {
                all_option: Some(all_option),
            }),
            Direction::Forward,
            CountOption::Subscription(SubscriptionOptions {}),
            filter,
        );
        self.subscribe(
            CallInfo::new("subscribe to $all", self.endpoint()).stream("$all"),
            options,
        )
        .await
    }

    /// Subscribes to `stream` after revision `after` (exclusive; `None` = from its first
    /// event).
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub async fn subscribe_stream(
        &self,
        stream: &str,
        after: Option<StreamRevision>,
    ) -> Result<Subscription, Error> {
        use read_req::options::{
            stream_options::RevisionOption, CountOption, StreamOption, StreamOptions,
            SubscriptionOptions,
        };
        let options = Self::read_options(
            StreamOption::Stream(StreamOptions {
                stream_identifier: Some(convert::stream_id(stream)),
                revision_option: Some(match after {
                    None => RevisionOption::Start(()),
                    Some(r) => RevisionOption::Revision(r.get()),
                }),
            }),
            Direction::Forward,
            CountOption::Subscription(SubscriptionOptions {}),
            None,
        );
        self.subscribe(
            CallInfo::new("subscribe to stream", self.endpoint()).stream(stream),
            options,
        )
        .await
    }

    /// Appends `events` to `stream` if it is at `expected`, with their ids, types, content
    /// types and bytes exactly as given.
    ///
    /// # Errors
    ///
    /// [`Error::WrongExpectedVersion`] with the current revision when the stream is elsewhere;
    /// see [`Error`] for the rest.
    #[instrument(skip_all, fields(stream, %expected, events = events.len()))]
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> Result<WriteResult, Error> {
        use append_req::options::ExpectedStreamRevision as E;
        let options = append_req::Options {
            stream_identifier: Some(convert::stream_id(stream)),
            expected_stream_revision: Some(match Expected::from(expected) {
                Expected::Revision(r) => E::Revision(r),
                Expected::NoStream => E::NoStream(()),
                Expected::Any => E::Any(()),
                Expected::StreamExists => E::StreamExists(()),
            }),
        };
        // Built for each attempt from `events`: cloning a built request costs as much as
        // building it, and the first attempt, nearly always the only one, needs no copy.
        let messages = || {
            let mut messages = Vec::with_capacity(events.len() + 1);
            messages.push(AppendMessage::Options(options.clone()));
            messages.extend(
                events
                    .iter()
                    .map(|event| AppendMessage::Event(event.into())),
            );
            messages
        };
        let call = CallInfo::new("append", self.endpoint())
            .stream(stream)
            .expected(expected);
        let reply = self
            .run(
                call.clone(),
                Kind::Write,
                self.deadline(),
                |channel, meta| {
                    let request = meta.request(stream::iter(messages()));
                    async move { Ok(Self::append_call(channel, request).await?.into_inner()) }
                },
            )
            .await?;
        match reply.result {
            Some(append_resp::Result::Success(success)) => {
                use append_resp::success::{CurrentRevisionOption, PositionOption};
                Ok(WriteResult {
                    current: convert::current_version(
                        match success.current_revision_option {
                            Some(CurrentRevisionOption::CurrentRevision(r)) => Some(r),
                            _ => None,
                        },
                        &call,
                    )?,
                    position: match success.position_option {
                        Some(PositionOption::Position(p)) => Some(convert::reply_position(
                            p.commit_position,
                            p.prepare_position,
                            &call,
                        )?),
                        _ => None,
                    },
                })
            }
            Some(append_resp::Result::WrongExpectedVersion(wev)) => {
                use append_resp::wrong_expected_version::{
                    CurrentRevisionOption, CurrentRevisionOption2060,
                };
                let current = match (
                    wev.current_revision_option,
                    wev.current_revision_option_20_6_0,
                ) {
                    (Some(CurrentRevisionOption::CurrentRevision(r)), _)
                    | (None, Some(CurrentRevisionOption2060::CurrentRevision2060(r))) => {
                        Some(convert::current_version(Some(r), &call)?)
                    }
                    (Some(CurrentRevisionOption::CurrentNoStream(())), _)
                    | (None, Some(CurrentRevisionOption2060::NoStream2060(()))) => {
                        Some(CurrentVersion::NoStream)
                    }
                    (None, None) => None,
                };
                Err(Error::WrongExpectedVersion {
                    stream: stream.to_owned(),
                    expected,
                    current,
                })
            }
            None => {
                Err(call
                    .protocol("an append reply with neither success nor wrong expected version"))
            }
        }
    }

    /// Appends through the `BatchAppend` stream: the same outcome as [`Client::append`], sent
    /// in chunks of about 1 MiB, with the call's deadline passed to the server.
    ///
    /// # Errors
    ///
    /// As [`Client::append`].
    #[instrument(skip_all, fields(stream, %expected, events = events.len()))]
    pub async fn batch_append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> Result<WriteResult, Error> {
        use batch_append_req::options::{DeadlineOption, ExpectedStreamPosition as E};
        let correlation_id = Uuid::new_v4();
        let deadline = self.deadline();
        let options = batch_append_req::Options {
            stream_identifier: Some(convert::stream_id(stream)),
            expected_stream_position: Some(match Expected::from(expected) {
                Expected::Revision(r) => E::StreamPosition(r),
                Expected::NoStream => E::NoStream(()),
                Expected::Any => E::Any(()),
                Expected::StreamExists => E::StreamExists(()),
            }),
            deadline_option: deadline.map(|d| {
                DeadlineOption::Deadline(prost_types::Duration {
                    seconds: d.as_secs() as i64,
                    nanos: d.subsec_nanos() as i32,
                })
            }),
        };
        let mut chunks: Vec<Vec<batch_append_req::ProposedMessage>> = vec![Vec::new()];
        let mut chunk_bytes = 0;
        for event in events {
            let size = event.data.len() + event.metadata.len();
            if chunk_bytes + size > BATCH_CHUNK_BYTES && !chunks.last().is_some_and(Vec::is_empty) {
                chunks.push(Vec::new());
                chunk_bytes = 0;
            }
            chunk_bytes += size;
            chunks.last_mut().expect("chunks starts non-empty").push(
                batch_append_req::ProposedMessage {
                    id: Some(convert::uuid_to_proto(event.event_id)),
                    metadata: convert::proposed_metadata(event),
                    custom_metadata: event.metadata.clone(),
                    data: event.data.clone(),
                },
            );
        }
        let last = chunks.len() - 1;
        let requests: Vec<pb::BatchAppendReq> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, proposed_messages)| pb::BatchAppendReq {
                correlation_id: Some(convert::uuid_to_proto(correlation_id)),
                options: (i == 0).then(|| options.clone()),
                proposed_messages,
                is_final: i == last,
            })
            .collect();
        let call = CallInfo::new("batch append", self.endpoint())
            .stream(stream)
            .expected(expected);
        let reply = self
            .run(call.clone(), Kind::Write, deadline, |channel, meta| {
                // The request side stays open until the reply arrives: the server may end the
                // call when the client's side ends.
                let (sender, receiver) = tokio::sync::mpsc::channel(requests.len());
                for request in requests.iter().cloned() {
                    sender
                        .try_send(request)
                        .expect("the channel holds every chunk");
                }
                let outgoing = stream::unfold(receiver, |mut receiver| async move {
                    receiver.recv().await.map(|m| (m, receiver))
                });
                let request = meta.request(outgoing);
                async move {
                    let mut replies = Self::streams(channel)
                        .batch_append(request)
                        .await?
                        .into_inner();
                    let reply = loop {
                        match replies.message().await? {
                            Some(reply)
                                if convert::uuid_from_proto(reply.correlation_id.as_ref())
                                    == Some(correlation_id) =>
                            {
                                break Some(reply)
                            }
                            Some(_) => continue,
                            None => break None,
                        }
                    };
                    drop(sender);
                    Ok(reply)
                }
            })
            .await?
            .ok_or_else(|| call.protocol("the batch append stream ended without a reply"))?;
        match reply.result {
            Some(batch_append_resp::Result::Success(success)) => {
                use batch_append_resp::success::{CurrentRevisionOption, PositionOption};
                Ok(WriteResult {
                    current: convert::current_version(
                        match success.current_revision_option {
                            Some(CurrentRevisionOption::CurrentRevision(r)) => Some(r),
                            _ => None,
                        },
                        &call,
                    )?,
                    position: match success.position_option {
                        Some(PositionOption::Position(p)) => Some(convert::reply_position(
                            p.commit_position,
                            p.prepare_position,
                            &call,
                        )?),
                        _ => None,
                    },
                })
            }
            Some(batch_append_resp::Result::Error(status)) => {
                let mut call = call;
                call.endpoint = self.endpoint();
                Err(from_batch_status(
                    Code::from_i32(status.code),
                    &status.message,
                    convert::batch_current(status.details.as_ref()),
                    convert::batch_size_detail(status.details.as_ref()),
                    &call,
                ))
            }
            None => Err(call.protocol("a batch append reply with neither success nor error")),
        }
    }

    /// The raw `$metadata` record of `stream` (the last event of `$$stream`), with its exact
    /// bytes, id and revision: what a byte-exact copy of stream metadata needs.
    ///
    /// # Errors
    ///
    /// See [`Error`]; a stream that never had metadata is [`Lookup::NotFound`].
    pub async fn read_metadata_raw(&self, stream: &str) -> Result<Lookup<ReadEvent>, Error> {
        let metastream = format!("$${stream}");
        Ok(
            match self
                .read_stream(&metastream, ReadFrom::End, Direction::Backward, 1)
                .await?
            {
                Lookup::Found(mut events) => match events.pop() {
                    Some(event) => Lookup::Found(event),
                    None => Lookup::NotFound,
                },
                Lookup::NotFound => Lookup::NotFound,
                Lookup::Deleted => Lookup::Deleted,
            },
        )
    }

    /// Writes `json` as the `$metadata` record of `stream` with the given event id, if the
    /// metastream `$$stream` is at `expected`: a byte-exact copy of a source's metadata record.
    ///
    /// # Errors
    ///
    /// As [`Client::append`] (the expected revision is the metastream's).
    pub async fn write_metadata_raw(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        event_id: Uuid,
        json: Bytes,
    ) -> Result<WriteResult, Error> {
        self.append(
            &format!("$${stream}"),
            expected,
            &[EventData::json(event_id, "$metadata", json)],
        )
        .await
    }

    /// Soft-deletes `stream` (writes `{"$tb": i64::MAX}` as its metadata) if it is at
    /// `expected`.
    ///
    /// # Errors
    ///
    /// [`Error::WrongExpectedVersion`], [`Error::StreamDeleted`]; see [`Error`].
    pub async fn delete(
        &self,
        stream: &str,
        expected: ExpectedVersion,
    ) -> Result<Option<Position>, Error> {
        use delete_req::options::ExpectedStreamRevision as E;
        let options = delete_req::Options {
            stream_identifier: Some(convert::stream_id(stream)),
            expected_stream_revision: Some(match Expected::from(expected) {
                Expected::Revision(r) => E::Revision(r),
                Expected::NoStream => E::NoStream(()),
                Expected::Any => E::Any(()),
                Expected::StreamExists => E::StreamExists(()),
            }),
        };
        let call = CallInfo::new("delete", self.endpoint())
            .stream(stream)
            .expected(expected);
        let reply = self
            .run(
                call.clone(),
                Kind::Write,
                self.deadline(),
                |channel, meta| {
                    let request = meta.request(pb::DeleteReq {
                        options: Some(options.clone()),
                    });
                    async move { Ok(Self::streams(channel).delete(request).await?.into_inner()) }
                },
            )
            .await?;
        match reply.position_option {
            Some(delete_resp::PositionOption::Position(p)) => Ok(Some(convert::reply_position(
                p.commit_position,
                p.prepare_position,
                &call,
            )?)),
            _ => Ok(None),
        }
    }

    /// Tombstones `stream` (hard delete: it can never be written again) if it is at `expected`.
    /// The tombstone gets a new event id: the protocol carries none.
    ///
    /// # Errors
    ///
    /// [`Error::WrongExpectedVersion`], [`Error::StreamDeleted`]; see [`Error`].
    pub async fn tombstone(
        &self,
        stream: &str,
        expected: ExpectedVersion,
    ) -> Result<Option<Position>, Error> {
        use tombstone_req::options::ExpectedStreamRevision as E;
        let options = tombstone_req::Options {
            stream_identifier: Some(convert::stream_id(stream)),
            expected_stream_revision: Some(match Expected::from(expected) {
                Expected::Revision(r) => E::Revision(r),
                Expected::NoStream => E::NoStream(()),
                Expected::Any => E::Any(()),
                Expected::StreamExists => E::StreamExists(()),
            }),
        };
        let call = CallInfo::new("tombstone", self.endpoint())
            .stream(stream)
            .expected(expected);
        let reply = self
            .run(
                call.clone(),
                Kind::Write,
                self.deadline(),
                |channel, meta| {
                    let request = meta.request(pb::TombstoneReq {
                        options: Some(options.clone()),
                    });
                    async move {
                        Ok(Self::streams(channel)
                            .tombstone(request)
                            .await?
                            .into_inner())
                    }
                },
            )
            .await?;
        match reply.position_option {
            Some(tombstone_resp::PositionOption::Position(p)) => Ok(Some(convert::reply_position(
                p.commit_position,
                p.prepare_position,
                &call,
            )?)),
            _ => Ok(None),
        }
    }

    /// The details of user `login`.
    ///
    /// # Errors
    ///
    /// See [`Error`]; an unknown login is [`Lookup::NotFound`].
    pub async fn user(&self, login: &str) -> Result<Lookup<UserDetails>, Error> {
        let call = CallInfo::new("read user", self.endpoint()).login(login);
        let options = users_pb::details_req::Options {
            login_name: login.to_owned(),
        };
        let reply = self
            .run(
                call.clone(),
                Kind::Read,
                self.deadline(),
                |channel, meta| {
                    let request = meta.request(users_pb::DetailsReq {
                        options: Some(options.clone()),
                    });
                    async move {
                        let mut replies = UsersClient::new(channel)
                            .details(request)
                            .await?
                            .into_inner();
                        replies.message().await
                    }
                },
            )
            .await;
        match reply {
            Ok(Some(users_pb::DetailsResp {
                user_details: Some(details),
            })) => Ok(Lookup::Found(convert::user(details))),
            Ok(_) | Err(Error::UserNotFound { .. }) => Ok(Lookup::NotFound),
            Err(e) => Err(e),
        }
    }

    async fn user_command<M, R, F, Fut>(
        &self,
        op: &'static str,
        login: &str,
        message: M,
        send: F,
    ) -> Result<(), Error>
    where
        M: Clone,
        F: Fn(UsersClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let call = CallInfo::new(op, self.endpoint()).login(login);
        self.run(call, Kind::Write, self.deadline(), |channel, meta| {
            send(UsersClient::new(channel), meta.request(message.clone()))
        })
        .await
        .map(|_| ())
    }

    /// Creates a user.
    ///
    /// # Errors
    ///
    /// See [`Error`]; an existing login is [`Error::Rejected`] (`user-conflict`).
    pub async fn create_user(&self, user: &NewUser<'_>) -> Result<(), Error> {
        let message = users_pb::CreateReq {
            options: Some(users_pb::create_req::Options {
                login_name: user.login_name.to_owned(),
                password: user.password.expose().to_owned(),
                full_name: user.full_name.to_owned(),
                groups: user.groups.iter().map(|g| (*g).to_owned()).collect(),
            }),
        };
        self.user_command(
            "create user",
            user.login_name,
            message,
            |mut c, r| async move { c.create(r).await },
        )
        .await
    }

    /// Enables user `login`.
    ///
    /// # Errors
    ///
    /// [`Error::UserNotFound`]; see [`Error`].
    pub async fn enable_user(&self, login: &str) -> Result<(), Error> {
        let message = users_pb::EnableReq {
            options: Some(users_pb::enable_req::Options {
                login_name: login.to_owned(),
            }),
        };
        self.user_command("enable user", login, message, |mut c, r| async move {
            c.enable(r).await
        })
        .await
    }

    /// Disables user `login`: the server then refuses its credentials (promotion fences the
    /// replication user this way).
    ///
    /// # Errors
    ///
    /// [`Error::UserNotFound`]; see [`Error`].
    pub async fn disable_user(&self, login: &str) -> Result<(), Error> {
        let message = users_pb::DisableReq {
            options: Some(users_pb::disable_req::Options {
                login_name: login.to_owned(),
            }),
        };
        self.user_command("disable user", login, message, |mut c, r| async move {
            c.disable(r).await
        })
        .await
    }

    /// Changes the password of `login`, knowing the current one.
    ///
    /// # Errors
    ///
    /// [`Error::UserNotFound`]; see [`Error`].
    pub async fn change_password(
        &self,
        login: &str,
        current: &Password,
        new: &Password,
    ) -> Result<(), Error> {
        let message = users_pb::ChangePasswordReq {
            options: Some(users_pb::change_password_req::Options {
                login_name: login.to_owned(),
                current_password: current.expose().to_owned(),
                new_password: new.expose().to_owned(),
            }),
        };
        self.user_command("change password", login, message, |mut c, r| async move {
            c.change_password(r).await
        })
        .await
    }

    /// Sets a new password for `login` (an administrator's command).
    ///
    /// # Errors
    ///
    /// [`Error::UserNotFound`]; see [`Error`].
    pub async fn reset_password(&self, login: &str, new: &Password) -> Result<(), Error> {
        let message = users_pb::ResetPasswordReq {
            options: Some(users_pb::reset_password_req::Options {
                login_name: login.to_owned(),
                new_password: new.expose().to_owned(),
            }),
        };
        self.user_command("reset password", login, message, |mut c, r| async move {
            c.reset_password(r).await
        })
        .await
    }

    /// The cluster as the current node sees it.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub async fn gossip(&self) -> Result<Gossip, Error> {
        let call = CallInfo::new("read gossip", self.endpoint());
        let info = self
            .run(
                call,
                Kind::Read,
                self.deadline(),
                |channel, meta| async move {
                    Ok(GossipClient::new(channel)
                        .read(meta.request(()))
                        .await?
                        .into_inner())
                },
            )
            .await?;
        Ok(convert::gossip(info))
    }

    /// The gRPC methods the node serves, and its version.
    ///
    /// # Errors
    ///
    /// See [`Error`]; a server older than 21.10 answers [`Error::Rejected`] (`Unimplemented`).
    pub async fn server_features(&self) -> Result<ServerFeatures, Error> {
        let call = CallInfo::new("read server features", self.endpoint());
        let methods = self
            .run(
                call,
                Kind::Read,
                self.deadline(),
                |channel, meta| async move {
                    Ok(ServerFeaturesClient::new(channel)
                        .get_supported_methods(meta.request(()))
                        .await?
                        .into_inner())
                },
            )
            .await?;
        Ok(ServerFeatures {
            version: methods.event_store_server_version,
            methods: methods
                .methods
                .into_iter()
                .map(|m| SupportedMethod {
                    service: m.service_name,
                    method: m.method_name,
                    features: m.features,
                })
                .collect(),
        })
    }
}

/// A live subscription. Dropping it cancels the server-side subscription.
///
/// Its events leave `event.updated` unset; `created_ticks` holds the time
/// ([`convert::subscribed_event`]).
pub struct Subscription {
    replies: tonic::Streaming<ReadRespWire>,
    pending: Option<ReadRespWire>,
    call: CallInfo,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("op", &self.call.op)
            .finish()
    }
}

impl Subscription {
    /// The next message; `None` when the server ended the subscription.
    ///
    /// # Errors
    ///
    /// See [`Error`]; a dropped connection is [`Error::Unreachable`] (transient: subscribe
    /// again from the last position handled).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a message is never lost by dropping this future.
    pub async fn next(&mut self) -> Result<Option<SubscriptionMessage>, Error> {
        loop {
            let reply = match self.pending.take() {
                Some(reply) => reply,
                None => match self.replies.message().await {
                    Ok(Some(reply)) => reply,
                    Ok(None) => return Ok(None),
                    Err(status) => return Err(from_status(&status, &self.call)),
                },
            };
            match convert::subscription_message(reply, &self.call)? {
                SubscriptionMessage::Other => continue,
                message => return Ok(Some(message)),
            }
        }
    }

    /// The next event, skipping caught-up, checkpoint and other messages.
    ///
    /// # Errors
    ///
    /// As [`Subscription::next`].
    pub async fn next_event(&mut self) -> Result<Option<ReadEvent>, Error> {
        loop {
            match self.next().await? {
                Some(SubscriptionMessage::Event(event)) => return Ok(Some(*event)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }
}
