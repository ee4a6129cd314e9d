//! Catch-up progress of `standby run`: on a terminal, one line redrawn every second (events, rate,
//! lag, estimated time to catch up); otherwise a plain `progress` log line every
//! [`PLAIN_INTERVAL`], which log collectors keep.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::ReplicationConfig;
use crate::esdb::Client;
use crate::pipeline::Shared;

/// Redraw interval on a terminal.
pub const TTY_INTERVAL: Duration = Duration::from_secs(1);
/// Interval of the plain lines.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(30);

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub events: u64,
    /// Events per second since the previous sample.
    pub rate: f64,
    pub lag_events: u64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
}

impl Sample {
    /// Seconds to catch up at the current rate; `None` when not moving.
    pub fn eta(&self) -> Option<f64> {
        (self.lag_events == 0)
            .then_some(0.0)
            .or_else(|| (self.rate >= 1.0).then(|| self.lag_events as f64 / self.rate))
    }

    /// The terminal line.
    pub fn line(&self) -> String {
        if self.lag_events == 0 {
            return format!(
                "caught up | {} events replicated | {:.0} events/s",
                self.events, self.rate
            );
        }
        let eta = self.eta().map_or_else(
            || "unknown".to_owned(),
            |s| human(Duration::from_secs_f64(s)),
        );
        format!(
            "catching up | {} events replicated | {:.0} events/s | behind {} events, {:.1} MiB, {:.0} s | done in {eta}",
            self.events,
            self.rate,
            self.lag_events,
            self.lag_bytes as f64 / (1024.0 * 1024.0),
            self.lag_seconds
        )
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Reports until `stop` fires. `probe`: refresh the lag gauges here (when `/metrics` is not served,
/// nothing else does).
pub async fn report(
    shared: Arc<Shared>,
    primary: Client,
    filter: ReplicationConfig,
    probe: bool,
    stop: CancellationToken,
) {
    let tty = std::io::stderr().is_terminal();
    let interval = if tty { TTY_INTERVAL } else { PLAIN_INTERVAL };
    let mut last = (Instant::now(), shared.snapshot().events_written);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
        if probe {
            crate::serve::refresh_lag(&shared, &primary, &filter).await;
        }
        let events = shared.snapshot().events_written;
        let m = &shared.metrics;
        let sample = Sample {
            events,
            rate: (events - last.1) as f64 / last.0.elapsed().as_secs_f64().max(0.001),
            lag_events: m.lag_events.get().max(0) as u64,
            lag_bytes: m.lag_bytes.get().max(0) as u64,
            lag_seconds: m.lag_seconds.get(),
        };
        last = (Instant::now(), events);
        if tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{}", sample.line());
            let _ = err.flush();
        } else {
            tracing::info!(
                events = sample.events,
                rate = sample.rate.round(),
                lag_events = sample.lag_events,
                lag_bytes = sample.lag_bytes,
                lag_seconds = sample.lag_seconds,
                eta_seconds = sample.eta().map(f64::round),
                "progress"
            );
        }
    }
    if tty {
        let _ = writeln!(std::io::stderr());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_how_far_and_how_long() {
        let behind = Sample {
            events: 1_000,
            rate: 500.0,
            lag_events: 45_000,
            lag_bytes: 3 * 1024 * 1024,
            lag_seconds: 12.0,
        };
        assert_eq!(behind.eta(), Some(90.0));
        assert_eq!(
            behind.line(),
            "catching up | 1000 events replicated | 500 events/s | behind 45000 events, 3.0 MiB, 12 s | done in 1m30s"
        );
        let stalled = Sample {
            rate: 0.0,
            ..behind
        };
        assert_eq!(stalled.eta(), None);
        assert!(stalled.line().ends_with("done in unknown"));
        let done = Sample {
            lag_events: 0,
            ..behind
        };
        assert_eq!(done.eta(), Some(0.0));
        assert!(done.line().starts_with("caught up"));
        assert_eq!(human(Duration::from_secs(7_500)), "2h05m");
    }
}
