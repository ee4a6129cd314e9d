//! The AtomPub HTTP front: binds the listener, parses raw request paths itself (stream names
//! contain `$`, `@`, spaces) and maps requests onto the storage core. The listener speaks
//! HTTP/1.1 and HTTP/2 and hands gRPC requests to [`crate::grpc`].
//!
//! * `router` – request context, authentication, dispatch on the decoded path.
//! * `read` / `write` / `node` / `admin` / `users` – handlers for reads (§3, §4), writes and
//!   deletes (§5), node endpoints (§9), `POST /admin/scavenge` and user management (`/users`).
//! * [`wire`] – profile switches (header names, media types, ETag hashes) and negotiation (§2.3).
//! * [`feed`] – Atom-JSON rendering with the server's property order and null policy (§2.4).
//! * [`append`] – request-body parsing (§5.1).
//! * [`reply`] – responses with custom reason phrases (§2.2).

mod admin;
pub mod append;
pub mod feed;
mod node;
mod read;
pub mod reply;
mod router;
mod users;
pub mod wire;
mod write;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{NodeConfig, Profile, Security};
use crate::store::users::UserRegistry;
use crate::store::{ScavengeOutcome, Store, StoreError};
use crate::tls::{self, SecurityError, TlsListener};
use crate::Error;
use wire::Wire;

/// Shared per-node state handed to every request.
pub(crate) struct App {
    pub store: Arc<Store>,
    pub wire: Wire,
    /// Accounts: the log's `$user-*` streams over the configured seeds, behind the credential
    /// cache.
    pub users: UserRegistry,
    pub addr: SocketAddr,
    /// `https` in secure mode, else `http`: the scheme of the links the node writes.
    pub scheme: &'static str,
    /// `--insecure`: the passthrough providers; every request is `system`, no `/users`.
    pub passthrough: bool,
    /// `false` with an external authentication provider: no `/users`.
    pub user_management: bool,
    /// Cancelled on stop: aborts long polls.
    pub shutdown: CancellationToken,
    /// Set after stop; requests still arriving on old connections get 503.
    pub closed: AtomicBool,
    pub instance_id: Uuid,
    pub epoch_id: Uuid,
    /// Armed faults: stream → how many more writes to it commit and then answer 500 "Write
    /// timeout", as a real node does when the commit outlasts the request's timeout (§5.3).
    pub write_timeouts: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Faults that hold for every request: not ready, added latency.
    pub faults: Faults,
    /// `--run-projections`, reported by `/info`.
    pub run_projections: crate::config::RunProjections,
}

/// Faults a whole node shows, set through [`Node`] by tests and by `devnode` flags.
#[derive(Default)]
pub(crate) struct Faults {
    /// Until then the node answers "not ready": 503 with `Retry-After` over HTTP, UNAVAILABLE over
    /// gRPC, as a starting node or one in an election does (`AuthenticationMiddleware`).
    not_ready_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// Added before every answer, as on a slow or far node.
    latency_ms: std::sync::atomic::AtomicU64,
}

impl Faults {
    /// Waits the added latency; then whether the node is still not ready.
    pub(crate) async fn before_answer(&self) -> bool {
        let latency = self.latency_ms.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        self.not_ready_until
            .lock()
            .expect("fault lock")
            .is_some_and(|until| std::time::Instant::now() < until)
    }
}

impl App {
    /// Takes one armed write timeout for `stream`, if any.
    pub(crate) fn take_write_timeout(&self, stream: &str) -> bool {
        let mut armed = self.write_timeouts.lock().expect("fault lock");
        match armed.get_mut(stream) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

/// A running node. Dropping it without [`Node::stop`] leaves the server task running until the
/// runtime ends.
pub struct Node {
    addr: SocketAddr,
    scheme: &'static str,
    app: Arc<App>,
    server: JoinHandle<()>,
    /// The system projections' worker, when they run.
    projections: Option<crate::projections::Worker>,
}

/// What the node serves, decided from the profile and [`Security`] before anything else starts,
/// as the real server validates its options before opening the database.
struct Mode {
    tls: Option<Arc<rustls::ServerConfig>>,
    passthrough: bool,
}

fn mode(profile: Profile, security: &Security) -> Result<Mode, SecurityError> {
    let plain = |passthrough| Mode {
        tls: None,
        passthrough,
    };
    match (profile, security) {
        (Profile::V5, Security::Unset | Security::DisableTls) => Ok(plain(false)),
        (Profile::V5, Security::Tls { .. } | Security::Insecure) => {
            Err(SecurityError::NotInProfile {
                option: if matches!(security, Security::Insecure) {
                    "--insecure"
                } else {
                    "TLS"
                },
                profile,
                hint: "Event Store 5 serves plain HTTP with authentication; leave the security \
                       options out or choose a v20+ profile",
            })
        }
        (_, Security::Tls { cert_pem, key_pem }) => Ok(Mode {
            tls: Some(tls::server_config(cert_pem, key_pem)?),
            passthrough: false,
        }),
        (_, Security::Insecure) => Ok(plain(true)),
        (Profile::V26, Security::DisableTls) => Ok(plain(false)),
        (Profile::V26, Security::Unset) => {
            // The newcomer's `devnode --http ADDR`: serve as `--disable-tls` would, and say so.
            tracing::info!(
                "no certificate given: serving plaintext HTTP with authentication, as \
                 --disable-tls does (KurrentDB 26.2); give --tls-cert/--tls-key or --dev-certs \
                 DIR for TLS"
            );
            Ok(plain(false))
        }
        (_, Security::DisableTls) => Err(SecurityError::NotInProfile {
            option: "--disable-tls",
            profile,
            hint: "it exists from KurrentDB 26.2 (profile v26); before that plaintext means \
                   --insecure",
        }),
        // v20–v26.1 without a certificate: `LoadNodeCertificate` refuses to start.
        (_, Security::Unset) => Err(SecurityError::CertificateRequired),
    }
}

impl Node {
    /// Checks the security settings, opens/recovers storage, binds the listener (TLS in secure
    /// mode) and serves in a spawned task.
    pub async fn start(cfg: NodeConfig) -> Result<Node, Error> {
        let mode = mode(cfg.profile, &cfg.security)?;
        let storage = cfg.storage.clone();
        let fsync = cfg.fsync;
        let store = tokio::task::spawn_blocking(move || Store::open(&storage, fsync))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        let listener = TcpListener::bind(cfg.http).await?;
        let addr = listener.local_addr()?;
        let store = Arc::new(store);
        let app = Arc::new(App {
            users: UserRegistry::new(store.clone(), cfg.users.clone(), cfg.profile),
            store,
            wire: Wire::new(cfg.profile),
            addr,
            scheme: if mode.tls.is_some() { "https" } else { "http" },
            passthrough: mode.passthrough,
            user_management: cfg.user_management && !mode.passthrough,
            shutdown: CancellationToken::new(),
            closed: AtomicBool::new(false),
            instance_id: Uuid::new_v4(),
            epoch_id: Uuid::new_v4(),
            write_timeouts: Default::default(),
            faults: Faults::default(),
            run_projections: cfg.run_projections,
        });
        // What a real node writes when it starts: the default accounts at the first start, and
        // an `$epoch-information` event at every start (21.10+), so no log is ever empty.
        if cfg.server_records {
            app.users.write_default_accounts()?;
        }
        if cfg.server_records && !matches!(cfg.profile, Profile::V5 | Profile::V20) {
            let now = app.store.now();
            app.store
                .write_epoch_information(app.instance_id, &feed::format_time(Some(now)))?;
        }
        // The projection subsystem starts once the node leads: it registers the system
        // projections and runs those enabled, behind the log (`crate::projections`).
        let projections = crate::projections::start(
            app.store.clone(),
            cfg.run_projections,
            cfg.start_standard_projections,
            cfg.profile,
            app.shutdown.clone(),
        )?;
        let router = crate::grpc::front(
            app.clone(),
            Router::new()
                .fallback(router::handle)
                .with_state(app.clone()),
        );
        tokio::spawn(
            app.users
                .cache()
                .clone()
                .run_poller(app.store.clone(), app.shutdown.clone()),
        );
        let token = app.shutdown.clone();
        let server = match mode.tls {
            Some(config) => {
                let listener = TlsListener::new(listener, config, token.clone())?;
                tokio::spawn(async move {
                    let res = axum::serve(listener, router)
                        .with_graceful_shutdown(async move { token.cancelled().await })
                        .await;
                    if let Err(e) = res {
                        tracing::error!(error = %e, "https server stopped with an error");
                    }
                })
            }
            None => tokio::spawn(async move {
                // Kestrel, the real server's HTTP stack, sends with Nagle off
                // (`SocketTransportOptions.NoDelay` defaults to true); with it on, the separate
                // HEADERS, DATA and trailer frames of a gRPC answer wait for the client's
                // delayed ACK, up to 40 ms a call.
                use axum::serve::ListenerExt;
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let res = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await;
                if let Err(e) = res {
                    tracing::error!(error = %e, "http server stopped with an error");
                }
            }),
        };
        if mode.passthrough {
            // As the real server's start-up banner (`ClusterVNodeHostedService.cs`).
            tracing::warn!(
                "insecure mode: authentication, authorization and TLS are off; every request \
                 runs as system"
            );
        }
        let scheme = app.scheme;
        tracing::info!(%addr, profile = %cfg.profile, security = ?cfg.security, "devnode listening");
        Ok(Node {
            addr,
            scheme,
            app,
            server,
            projections,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://…` in secure mode.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The gRPC connection string of this node (same port): `kurrentdb://127.0.0.1:PORT?tls=false`,
    /// or in secure mode `kurrentdb://localhost:PORT`, the name the development certificate
    /// carries.
    pub fn grpc_url(&self) -> String {
        if self.is_tls() {
            format!("kurrentdb://localhost:{}", self.addr.port())
        } else {
            format!("kurrentdb://{}?tls=false", self.addr)
        }
    }

    /// Secure mode (TLS).
    pub fn is_tls(&self) -> bool {
        self.scheme == "https"
    }

    /// Simulates the in-memory event-id cache being lost (restart / leader change, §5.5).
    pub fn clear_idempotency_cache(&self) {
        self.app.store.clear_idempotency_cache();
    }

    /// Fault: the next `writes` appends to `stream` (metadata writes: to its metastream) commit,
    /// then answer 500 "Write timeout", as a real node does when a commit outlasts the request
    /// (contract §5.3): the client cannot tell the write happened.
    pub fn time_out_writes_after_commit(&self, stream: &str, writes: u32) {
        self.app
            .write_timeouts
            .lock()
            .expect("fault lock")
            .insert(stream.to_owned(), writes);
    }

    /// Fault: answer every request "not ready" for `period` from now (HTTP 503 with
    /// `Retry-After`, gRPC UNAVAILABLE), as a node does while it starts or elects a leader.
    pub fn not_ready_for(&self, period: Duration) {
        *self.app.faults.not_ready_until.lock().expect("fault lock") =
            Some(std::time::Instant::now() + period);
    }

    /// Fault: add `latency` before every answer (zero removes it).
    pub fn set_latency(&self, latency: Duration) {
        self.app.faults.latency_ms.store(
            u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Sets this node's clock `offset` ahead of the machine's (negative: behind): its events'
    /// timestamps and its `Date` headers follow it, as on a host whose clock is wrong.
    pub fn set_clock_offset(&self, offset_ms: i64) {
        self.app
            .store
            .set_clock_offset(offset_ms.saturating_mul(10_000));
    }

    /// Holds (`true`) or releases the credential poller: while held, a disabled user or an old
    /// password keeps authenticating from the cache, as on a server whose notification reads fail
    /// (the server's `PasswordChangeNotificationReader.cs`). Lets tests open the fence's window at will.
    pub fn hold_credential_poll(&self, hold: bool) {
        self.app.users.cache().hold_poll(hold);
    }

    /// The poller's wait at the end of `$users-password-notifications` (default 1 s, as the
    /// server's).
    pub fn set_credential_poll_interval(&self, interval: Duration) {
        self.app.users.cache().set_poll_interval(interval);
    }

    /// Returns when a credential poll that started after the call has completed: every user
    /// change answered before the call is then in force. Never returns while the poll is held.
    pub async fn credential_poll(&self) {
        self.app.users.cache().poll_completed().await;
    }

    /// Scavenges synchronously, exactly as `POST /admin/scavenge` does for this node's profile
    /// (see [`crate::store::scavenge`]). Blocks the calling thread for the duration.
    pub fn scavenge(&self) -> Result<ScavengeOutcome, StoreError> {
        let opts = admin::options_for(self.app.wire.profile, self.addr.to_string());
        self.app.store.scavenge(&opts)
    }

    /// Returns when the running system projections have processed every record written before
    /// the call (at once when none run). Their links are written behind the log (see
    /// [`crate::projections::LAG`]): tests wait here, or for the link itself, never on a sleep.
    pub async fn projections_caught_up(&self) {
        if let Some(w) = &self.projections {
            w.caught_up().await;
        }
    }

    /// The storage core (for in-process inspection by tests).
    pub fn store(&self) -> Arc<Store> {
        self.app.store.clone()
    }

    /// Graceful stop: stop accepting, abort long polls, let in-flight requests finish (bounded),
    /// flush the log. Afterwards the same directory and address can be reused.
    pub async fn stop(self) {
        self.app.shutdown.cancel();
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            tracing::warn!("connections still open after 5 s; aborting them");
            server.abort();
            let _ = server.await;
        }
        if let Some(w) = self.projections {
            // Stopping projections write a checkpoint at their position first.
            w.stopped().await;
        }
        self.app.closed.store(true, Ordering::SeqCst);
        if let Err(e) = self.app.store.close() {
            tracing::error!(error = %e, "flushing the log on stop failed");
        }
        tracing::info!(addr = %self.addr, "devnode stopped");
    }
}
