//! `/metrics` and `/health/ready` of a running replicator, end to end between two dev nodes.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use standby::config::Ordering;
use standby::control::{self, PromoteOptions};
use standby::esdb::EventData;
use standby::pipeline::{self, RunError, Shared, Summary};
use standby::position::ExpectedVersion;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{admin_client, clusters, http_client, wait_applied_to_head};

const WINDOW: Duration = Duration::from_secs(2);

type Run = JoinHandle<Result<Summary, RunError>>;

struct Running {
    shared: Arc<Shared>,
    run: Run,
    server: standby::serve::Server,
}

async fn start(config: &standby::config::Config) -> Running {
    let shared = Arc::new(Shared::default());
    let (primary, _) = pipeline::clients(config).unwrap();
    let server = standby::serve::start(
        "127.0.0.1:0".parse().unwrap(),
        shared.clone(),
        WINDOW,
        primary,
        config.replication.clone(),
    )
    .await
    .unwrap();
    let run = {
        let (config, shared) = (config.clone(), shared.clone());
        tokio::spawn(async move { pipeline::run(&config, CancellationToken::new(), shared).await })
    };
    Running {
        shared,
        run,
        server,
    }
}

/// Scrapes `/metrics` and parses the Prometheus text: `name{labels} value` per sample.
async fn scrape(server: &standby::serve::Server) -> BTreeMap<String, f64> {
    let text = http_client()
        .get(format!("http://{}/metrics", server.addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        let bare = name.split('{').next().unwrap();
        assert!(
            bare.starts_with("standby_")
                && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name {bare:?}"
        );
        samples.insert(name.to_owned(), value);
    }
    samples
}

fn sum(samples: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

async fn ready(server: &standby::serve::Server) -> (u16, String) {
    let r = http_client()
        .get(format!("http://{}/health/ready", server.addr()))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Polls until `f` holds (bounded).
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn event() -> Vec<EventData> {
    vec![EventData::json(
        Uuid::new_v4(),
        "Metered",
        Bytes::from_static(br#"{"a":1}"#),
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_lag_to_zero_errors_while_the_secondary_is_down_and_readiness_follows() {
    let mut c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    let r = start(&c.config).await;
    standby::demo::workload(
        &primary,
        "m",
        2_000,
        20,
        9,
        &CancellationToken::new(),
        |_| {},
    )
    .await
    .unwrap();
    wait_applied_to_head(&r.shared, &primary, &r.run).await;
    until("lag 0 and events counted", || async {
        let s = scrape(&r.server).await;
        s.get("standby_lag_events") == Some(&0.0)
            && s.get("standby_lag_bytes") == Some(&0.0)
            && s.get("standby_events_replicated_total") >= Some(&2_000.0)
            && s.get(r#"standby_role{role="secondary"}"#) == Some(&1.0)
    })
    .await;
    let s = scrape(&r.server).await;
    assert!(s["standby_bytes_replicated_total"] > 0.0);
    assert!(s["standby_append_duration_seconds_count"] > 0.0);
    assert_eq!(s[r#"standby_role{role="secondary"}"#], 1.0);
    assert_eq!(s["standby_epoch"], 1.0);
    until("ready", || async { ready(&r.server).await.0 == 200 }).await;

    // The secondary goes away: errors grow, readiness turns after the window.
    let errors_before = sum(&scrape(&r.server).await, "standby_errors_total");
    let addr = c.secondary.addr();
    let secondary = std::mem::replace(
        &mut c.secondary,
        devnode::Node::start(devnode::NodeConfig::memory())
            .await
            .unwrap(),
    );
    secondary.stop().await;
    primary
        .append_events("m-while-down", &event(), ExpectedVersion::Any)
        .await
        .unwrap();
    until("errors grow", || async {
        sum(&scrape(&r.server).await, "standby_errors_total") > errors_before
    })
    .await;
    until("not ready", || async {
        let (status, body) = ready(&r.server).await;
        status == 503 && body.contains("secondary has not answered")
    })
    .await;
    // The probe refreshes the lag every two seconds, on its own clock.
    until("lag counts the event not applied", || async {
        scrape(&r.server).await.get("standby_lag_events") >= Some(&1.0)
    })
    .await;

    // Back: ready again, lag 0 again.
    let restarted = devnode::Node::start(
        standby::demo::node_config(&c.dir.path().join("secondary"), true).http(addr),
    )
    .await
    .unwrap();
    std::mem::replace(&mut c.secondary, restarted).stop().await;
    until("ready again", || async { ready(&r.server).await.0 == 200 }).await;
    until("lag 0 again", || async {
        scrape(&r.server).await.get("standby_lag_events") == Some(&0.0)
    })
    .await;

    // Fenced: a promotion stops the replicator; readiness says so.
    let options = PromoteOptions {
        force: true,
        ..PromoteOptions::default()
    };
    control::promote(&c.config, &options).await.unwrap();
    let stopped = r.run.await.unwrap();
    assert!(matches!(stopped, Err(RunError::Promoted(_))), "{stopped:?}");
    let (status, body) = ready(&r.server).await;
    assert_eq!(status, 503);
    assert!(body.contains("fenced"), "{body}");
    r.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_divergent_replicator_is_not_ready() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    // Someone else wrote this stream on the secondary first.
    secondary
        .append_events("clash", &event(), ExpectedVersion::NoStream)
        .await
        .unwrap();
    let r = start(&c.config).await;
    primary
        .append_events("clash", &event(), ExpectedVersion::NoStream)
        .await
        .unwrap();
    let stopped = r.run.await.unwrap();
    assert!(
        matches!(stopped, Err(RunError::Divergence(_))),
        "{stopped:?}"
    );
    let (status, body) = ready(&r.server).await;
    assert_eq!(status, 503);
    assert!(body.contains("divergent"), "{body}");
    assert_eq!(scrape(&r.server).await["standby_ready"], 0.0);
    r.server.stop().await;
}
