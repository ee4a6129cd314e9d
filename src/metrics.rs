//! Prometheus metrics and readiness of a running replicator.
//!
//! The stages update the handles in [`Metrics`] as they work; the lag gauges are refreshed by
//! [`crate::serve`]'s probe of the primary's head. Labels are bounded: `stage` is one of `reader`,
//! `writer`, `checkpointer`, `control`; `kind` is an [`crate::esdb::Error::kind`] value; `role` is
//! `secondary` or `primary`.
//!
//! Readiness ([`Health::ready`]) means the replicator is doing its job: both clusters answered
//! within the window, and it is either caught up or has applied something within the window.
//! A stopped pipeline (fenced, divergent, failed) is never ready.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;

/// `stage` and `kind` of an error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageKind {
    pub stage: &'static str,
    pub kind: &'static str,
}

/// `role` of the secondary.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    pub role: &'static str,
}

/// `reason` a pipeline stopped for.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// The metric handles (cheap to clone: each is shared).
#[derive(Debug)]
pub struct Metrics {
    pub events_replicated: Counter,
    pub bytes_replicated: Counter,
    pub lag_events: Gauge,
    pub lag_bytes: Gauge,
    pub lag_seconds: Gauge<f64, AtomicU64>,
    pub append_seconds: Histogram,
    pub retries: Family<StageKind, Counter>,
    pub errors: Family<StageKind, Counter>,
    pub checkpoint_age_seconds: Gauge<f64, AtomicU64>,
    pub epoch: Gauge,
    pub role: Family<RoleLabel, Gauge>,
    pub ready: Gauge,
    /// 1 while this process holds the lease on the secondary.
    pub lease_held: Gauge,
    /// 1 for the reason the pipeline stopped (`fenced`, `divergent`, `failed`), until the
    /// process exits.
    pub stopped: Family<ReasonLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Metrics {
            events_replicated: Counter::default(),
            bytes_replicated: Counter::default(),
            lag_events: Gauge::default(),
            lag_bytes: Gauge::default(),
            lag_seconds: Gauge::default(),
            // 1 ms to ~16 s.
            append_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            retries: Family::default(),
            errors: Family::default(),
            checkpoint_age_seconds: Gauge::default(),
            epoch: Gauge::default(),
            role: Family::default(),
            ready: Gauge::default(),
            lease_held: Gauge::default(),
            stopped: Family::default(),
        };
        metrics.initialise();
        metrics
    }
}

/// Stages whose errors are counted.
pub const STAGES: [&str; 4] = ["reader", "writer", "checkpointer", "control"];
/// Error kinds whose series exist from the start, at 0, so that a rate or an alert over them has
/// data before the first failure: the transient kinds and the one an operator must fix.
pub const KINDS_AT_START: [&str; 5] = ["connect", "timeout", "transport", "status", "unauthorized"];

impl Metrics {
    /// Creates the series that must exist before anything happens (at 0): errors and retries
    /// by stage for [`KINDS_AT_START`], and every reason of `standby_stopped`.
    pub fn initialise(&self) {
        for stage in STAGES {
            for kind in KINDS_AT_START {
                let labels = StageKind { stage, kind };
                let _ = self.errors.get_or_create(&labels);
                let _ = self.retries.get_or_create(&labels);
            }
        }
        for why in [Stopped::Fenced, Stopped::Divergent, Stopped::Failed] {
            let _ = self.stopped.get_or_create(&ReasonLabel {
                reason: why.label(),
            });
        }
    }

    /// A registry holding every metric, with the `standby_` prefix.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("standby");
        r.register(
            "events_replicated",
            "Events appended to the secondary by this process",
            self.events_replicated.clone(),
        );
        r.register(
            "bytes_replicated",
            "Data and metadata bytes of the events appended to the secondary",
            self.bytes_replicated.clone(),
        );
        r.register(
            "lag_events",
            "Records of replicated streams in the primary's $all after the last applied position",
            self.lag_events.clone(),
        );
        r.register(
            "lag_bytes",
            "Bytes of the primary's log after the last applied position",
            self.lag_bytes.clone(),
        );
        r.register(
            "lag_seconds",
            "Timestamp of the primary's newest event minus that of the last applied one",
            self.lag_seconds.clone(),
        );
        r.register(
            "append_duration_seconds",
            "Duration of one append to the secondary, retries included",
            self.append_seconds.clone(),
        );
        r.register(
            "retries",
            "Transient failures retried, by stage and kind",
            self.retries.clone(),
        );
        r.register(
            "errors",
            "Failed requests (transient or not), by stage and kind",
            self.errors.clone(),
        );
        r.register(
            "checkpoint_age_seconds",
            "Seconds since the checkpoint was last written",
            self.checkpoint_age_seconds.clone(),
        );
        r.register(
            "epoch",
            "The epoch of the secondary's control stream",
            self.epoch.clone(),
        );
        r.register(
            "role",
            "1 for the secondary's current role",
            self.role.clone(),
        );
        r.register(
            "ready",
            "1 when /health/ready answers ready",
            self.ready.clone(),
        );
        r.register(
            "lease_held",
            "1 while this process holds the lease on the secondary ($standby-lease)",
            self.lease_held.clone(),
        );
        r.register(
            "stopped",
            "1 for the reason replication stopped (fenced, divergent, failed) until the process exits",
            self.stopped.clone(),
        );
        r
    }
}

/// Why the pipeline stopped, for readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    Fenced,
    Divergent,
    Failed,
}

impl Stopped {
    /// The `reason` label of `standby_stopped`.
    pub fn label(self) -> &'static str {
        match self {
            Stopped::Fenced => "fenced",
            Stopped::Divergent => "divergent",
            Stopped::Failed => "failed",
        }
    }
}

/// Liveness signals of the stages.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<Signals>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Signals {
    primary_ok: Option<Instant>,
    secondary_ok: Option<Instant>,
    progress: Option<Instant>,
    caught_up: bool,
    checkpoint: Option<Instant>,
    stopped: Option<Stopped>,
}

/// The answer of `/health/ready`.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Why not ready (empty when ready).
    pub reasons: Vec<String>,
}

impl Health {
    fn with(&self, f: impl FnOnce(&mut Signals)) {
        f(&mut self.inner.lock().expect("health lock"));
    }
    pub fn primary_ok(&self) {
        self.with(|s| s.primary_ok = Some(Instant::now()));
    }
    pub fn secondary_ok(&self) {
        self.with(|s| s.secondary_ok = Some(Instant::now()));
    }
    pub fn progress(&self) {
        self.with(|s| s.progress = Some(Instant::now()));
    }
    pub fn caught_up(&self, yes: bool) {
        self.with(|s| s.caught_up = yes);
    }
    pub fn checkpoint_written(&self) {
        self.with(|s| s.checkpoint = Some(Instant::now()));
    }
    pub fn stopped(&self, why: Stopped) {
        self.with(|s| s.stopped = Some(why));
    }
    /// Seconds since the last checkpoint write.
    pub fn checkpoint_age(&self) -> Option<Duration> {
        self.inner
            .lock()
            .expect("health lock")
            .checkpoint
            .map(|t| t.elapsed())
    }

    /// Ready: running, both clusters answered within `window`, and caught up or progressing.
    pub fn ready(&self, window: Duration) -> Readiness {
        let s = *self.inner.lock().expect("health lock");
        let recent = |t: Option<Instant>| t.is_some_and(|t| t.elapsed() <= window);
        let mut reasons = Vec::new();
        match s.stopped {
            Some(Stopped::Fenced) => reasons.push(
                "fenced: the secondary was promoted or refused the replication user".to_owned(),
            ),
            Some(Stopped::Divergent) => {
                reasons.push("divergent: replication halted at a difference".to_owned())
            }
            Some(Stopped::Failed) => reasons.push("replication stopped with an error".to_owned()),
            None => {}
        }
        if !recent(s.primary_ok) {
            reasons.push(format!("the primary has not answered for over {window:?}"));
        }
        if !recent(s.secondary_ok) {
            reasons.push(format!(
                "the secondary has not answered for over {window:?}"
            ));
        }
        if !s.caught_up && !recent(s.progress) {
            reasons.push(format!("behind and nothing applied for over {window:?}"));
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_both_sides_and_progress_and_no_stop() {
        let h = Health::default();
        let w = Duration::from_secs(60);
        assert!(!h.ready(w).ready, "nothing heard yet");
        h.primary_ok();
        h.secondary_ok();
        assert!(!h.ready(w).ready, "behind without progress");
        h.progress();
        assert!(h.ready(w).ready);
        h.caught_up(true);
        assert!(h
            .ready(Duration::ZERO)
            .reasons
            .iter()
            .all(|r| !r.contains("behind")));
        h.stopped(Stopped::Divergent);
        let r = h.ready(w);
        assert!(!r.ready && r.reasons[0].starts_with("divergent"), "{r:?}");
    }

    #[test]
    fn the_registry_encodes_as_prometheus_text() {
        let m = Metrics::default();
        m.events_replicated.inc_by(3);
        m.errors
            .get_or_create(&StageKind {
                stage: "writer",
                kind: "connect",
            })
            .inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry()).unwrap();
        assert!(text.contains("standby_events_replicated_total 3"), "{text}");
        assert!(
            text.contains(r#"standby_errors_total{stage="writer",kind="connect"} 1"#),
            "{text}"
        );
    }
}
