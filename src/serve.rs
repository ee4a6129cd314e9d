//! The operator endpoints of `standby run`: `/metrics` (Prometheus text), `/health/live` and
//! `/health/ready`.
//!
//! A probe reads the primary's head every [`PROBE_INTERVAL`] and refreshes the lag gauges: bytes
//! (log distance from the last applied position), events (records of replicated streams after it,
//! counted up to [`PROBE_COUNT_CAP`]) and seconds (the primary's newest event timestamp minus
//! that of the last applied page, both from the primary's clock).
//!
//! The server outlives nothing: it stops with its token, and a stopped replicator's readiness
//! stays "not ready" with the reason until then.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ReplicationConfig;
use crate::esdb::Client;
use crate::pipeline::Shared;
use crate::position::Position;
use crate::status::{count_records, parse_timestamp, primary_head};

/// How often the lag gauges are refreshed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// The lag in events is counted up to this many records per probe (`$all` titles, 4096 a page).
pub const PROBE_COUNT_CAP: u64 = 100_000;

/// The Prometheus text media type.
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct AppState {
    shared: Arc<Shared>,
    registry: Registry,
    window: Duration,
}

/// A running endpoint server.
pub struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and probing.
    pub async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds `listen` and serves the endpoints for `shared`; probes `primary` for the lag.
///
/// # Errors
/// When the address cannot be bound.
pub async fn start(
    listen: SocketAddr,
    shared: Arc<Shared>,
    window: Duration,
    primary: Client,
    filter: ReplicationConfig,
) -> std::io::Result<Server> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let state = Arc::new(AppState {
        registry: shared.metrics.registry(),
        shared: shared.clone(),
        window,
    });
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(state);
    let token = stop.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move { token.cancelled().await };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "the metrics endpoint stopped: /metrics and /health/* stay unavailable until `standby run` is restarted (replication goes on)");
        }
    });
    let probe = tokio::spawn(probe(shared, primary, filter, stop.clone()));
    tracing::info!(%addr, "serving /metrics, /health/live and /health/ready");
    Ok(Server {
        addr,
        stop,
        tasks: vec![server, probe],
    })
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.shared.metrics;
    if let Some(age) = state.shared.health.checkpoint_age() {
        m.checkpoint_age_seconds.set(age.as_secs_f64());
    }
    m.ready
        .set(i64::from(state.shared.health.ready(state.window).ready));
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS_TEXT)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn live() -> &'static str {
    "live\n"
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let r = state.shared.health.ready(state.window);
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_string(&r).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn probe(
    shared: Arc<Shared>,
    primary: Client,
    filter: ReplicationConfig,
    stop: CancellationToken,
) {
    loop {
        refresh_lag(&shared, &primary, &filter).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}

pub async fn refresh_lag(shared: &Shared, primary: &Client, filter: &ReplicationConfig) {
    let head = primary_head(primary).await;
    let Some(head_position) = head.head else {
        return;
    };
    let progress = shared.snapshot();
    let applied = progress
        .positions
        .applied
        .or(progress.positions.persisted)
        .unwrap_or(Position::START);
    let m = &shared.metrics;
    let bytes = head_position.commit().saturating_sub(applied.commit());
    m.lag_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    let events = if bytes == 0 {
        0
    } else {
        match count_records(primary, filter, applied, PROBE_COUNT_CAP).await {
            Ok(lag) => lag.replicated,
            Err(e) => {
                tracing::debug!(error = %e, "cannot count the lag");
                return;
            }
        }
    };
    m.lag_events.set(i64::try_from(events).unwrap_or(i64::MAX));
    let seconds = if events == 0 {
        Some(0.0)
    } else {
        head.newest_event_at
            .as_deref()
            .and_then(parse_timestamp)
            .zip(shared.applied_at().as_deref().and_then(parse_timestamp))
            .map(|(newest, applied)| (newest - applied).max(0.0))
    };
    if let Some(s) = seconds {
        m.lag_seconds.set(s);
    }
}
