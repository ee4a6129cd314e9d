//! `standby demo`: the embedded default. Two dev nodes in this process (on disk, in temporary
//! directories), a live mixed workload on the primary, replication into the secondary while it
//! runs, then `verify`. One command shows the product working end to end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{
    AdminConfig, CheckpointConfig, Config, EndpointConfig, Ordering, PromotionConfig,
    ReplicationConfig,
};
use crate::esdb::{self, Client, DeleteMode, EventData, Wire};
use crate::pipeline::{self, Shared};
use crate::position::{ExpectedVersion, Position};

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub events: u64,
    pub streams: u64,
    pub ordering: Ordering,
}

/// Two in-process dev nodes and a configuration pointing at them; dropped with the directory.
pub struct DemoClusters {
    pub primary: devnode::Node,
    pub secondary: devnode::Node,
    pub config: Config,
    pub dir: tempfile::TempDir,
}

/// The replication user of the demo's secondary: not in `$admins`, so promotion can fence it.
pub const REPLICATOR: (&str, &str) = ("replicator", "changeit");
/// An application user of both demo nodes (no groups): the secondary refuses it before
/// promotion, a fenced primary after.
pub const APPLICATION: (&str, &str) = ("app", "changeit");

/// The dev node configuration of a demo node stored in `dir`: both know [`APPLICATION`], the
/// secondary also [`REPLICATOR`]. Restart a node with the same configuration.
pub fn node_config(dir: &std::path::Path, secondary: bool) -> devnode::NodeConfig {
    let config = devnode::NodeConfig::on_disk(dir.to_path_buf()).user(devnode::User::new(
        APPLICATION.0,
        APPLICATION.1,
        &[],
    ));
    if secondary {
        config.user(devnode::User::new(REPLICATOR.0, REPLICATOR.1, &[]))
    } else {
        config
    }
}

/// Starts the two nodes and writes the configuration: the primary is read as `admin`; the
/// secondary is written by [`REPLICATOR`] and set up and promoted by `admin` (the dev node's
/// default `$admins` user). The secondary also knows [`APPLICATION`].
///
/// # Errors
/// When a node cannot start or the temporary directory cannot be made.
pub async fn start_clusters(ordering: Ordering) -> Result<DemoClusters, String> {
    start_clusters_with(ordering, |config, _| config, None).await
}

/// As [`start_clusters`], with each node's configuration passed through `adjust` (its second
/// argument says whether it is the secondary), e.g. to choose a profile or a security mode;
/// `ca_file` is the CA the configuration trusts for `https` nodes.
///
/// # Errors
/// When a node cannot start or the temporary directory cannot be made.
pub async fn start_clusters_with(
    ordering: Ordering,
    adjust: impl Fn(devnode::NodeConfig, bool) -> devnode::NodeConfig,
    ca_file: Option<std::path::PathBuf>,
) -> Result<DemoClusters, String> {
    start_clusters_on(Wire::Grpc, ordering, adjust, ca_file).await
}

/// As [`start_clusters_with`], with the configuration addressing both nodes over `wire`.
///
/// # Errors
/// When a dev node cannot start.
pub async fn start_clusters_on(
    wire: Wire,
    ordering: Ordering,
    adjust: impl Fn(devnode::NodeConfig, bool) -> devnode::NodeConfig,
    ca_file: Option<std::path::PathBuf>,
) -> Result<DemoClusters, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let primary = devnode::Node::start(adjust(
        node_config(&dir.path().join("primary"), false),
        false,
    ))
    .await
    .map_err(|e| format!("primary dev node: {e}"))?;
    let secondary = devnode::Node::start(adjust(
        node_config(&dir.path().join("secondary"), true),
        true,
    ))
    .await
    .map_err(|e| format!("secondary dev node: {e}"))?;
    let endpoint = |url: String, (user, password): (&str, &str)| EndpointConfig {
        url,
        username: Some(user.into()),
        password: Some(esdb::Password::new(password)),
        password_file: None,
        ca_file: ca_file.clone(),
        connect_timeout_secs: 5,
        request_timeout_secs: 15,
        admin: None,
    };
    let address = |node: &devnode::Node| match wire {
        Wire::Http => node.url(),
        Wire::Grpc => node.grpc_url(),
    };
    let mut secondary_endpoint = endpoint(address(&secondary), REPLICATOR);
    secondary_endpoint.admin = Some(AdminConfig {
        username: "admin".into(),
        password: Some(esdb::Password::new("changeit")),
        password_file: None,
    });
    let config = Config {
        primary: endpoint(address(&primary), ("admin", "changeit")),
        secondary: secondary_endpoint,
        checkpoint: CheckpointConfig {
            path: dir.path().join("standby.checkpoint"),
        },
        replication: ReplicationConfig {
            ordering,
            ..ReplicationConfig::default()
        },
        promotion: PromotionConfig::default(),
        metrics: Default::default(),
    };
    Ok(DemoClusters {
        primary,
        secondary,
        config,
        dir,
    })
}

/// A small deterministic generator (xorshift), so a demo run is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the workload wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkloadStats {
    pub events: u64,
    pub binary: u64,
    pub empty: u64,
    pub links: u64,
    pub metadata: u64,
    pub soft_deletes: u64,
    pub hard_deletes: u64,
    /// Metadata writes to a soft-deleted stream (the server undeletes it).
    pub undeletes: u64,
    /// Appends to a soft-deleted stream (the server recreates it).
    pub recreations: u64,
    /// `$maxCount` set low enough to hide older events.
    pub capped: u64,
}

/// How often each operation is drawn, in parts of the sum.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub append: u64,
    pub binary: u64,
    pub empty: u64,
    pub link: u64,
    pub metadata: u64,
    pub soft_delete: u64,
    pub hard_delete: u64,
    /// A small `$maxCount` (3), which hides all but a stream's last events.
    pub cap: u64,
}

impl Mix {
    /// Mostly appends, as an application writes.
    pub const TYPICAL: Mix = Mix {
        append: 70,
        binary: 10,
        empty: 5,
        link: 3,
        metadata: 6,
        soft_delete: 4,
        hard_delete: 1,
        cap: 0,
    };
    /// Dense in what replays can get wrong: soft deletes, metadata writes that undelete,
    /// appends that recreate, tombstones and capped streams.
    pub const CHURN: Mix = Mix {
        append: 40,
        binary: 5,
        empty: 2,
        link: 3,
        metadata: 15,
        soft_delete: 20,
        hard_delete: 3,
        cap: 12,
    };

    fn total(&self) -> u64 {
        self.append
            + self.binary
            + self.empty
            + self.link
            + self.metadata
            + self.soft_delete
            + self.hard_delete
            + self.cap
    }
}

/// One operation of the workload.
#[derive(Debug, Clone, Copy)]
enum Draw {
    Append,
    Binary,
    Empty,
    Link,
    Metadata,
    SoftDelete,
    HardDelete,
    Cap,
}

impl Mix {
    fn draw(&self, rng: &mut Rng) -> Draw {
        let mut at = rng.below(self.total());
        for (weight, draw) in [
            (self.append, Draw::Append),
            (self.binary, Draw::Binary),
            (self.empty, Draw::Empty),
            (self.link, Draw::Link),
            (self.metadata, Draw::Metadata),
            (self.soft_delete, Draw::SoftDelete),
            (self.hard_delete, Draw::HardDelete),
        ] {
            if at < weight {
                return draw;
            }
            at -= weight;
        }
        Draw::Cap
    }
}

/// Writes a mixed workload of about `events` events over `streams` streams named
/// `{prefix}-{n}` (and user link streams `links-{n}`): JSON events with metadata in batches,
/// binary and empty events, user link events, stream metadata, soft deletes (streams recreated by
/// later writes) and hard deletes, drawn with [`Mix::TYPICAL`]. Bounded by `events`; stops early
/// when `cancel` fires.
///
/// # Errors
/// Client errors from the primary.
pub async fn workload(
    client: &Client,
    prefix: &str,
    events: u64,
    streams: u64,
    seed: u64,
    cancel: &CancellationToken,
    written: impl FnMut(WorkloadStats),
) -> Result<WorkloadStats, esdb::Error> {
    workload_with(
        client,
        prefix,
        events,
        streams,
        seed,
        Mix::TYPICAL,
        cancel,
        written,
    )
    .await
}

/// [`workload`] with another [`Mix`].
///
/// # Errors
/// Client errors from the primary.
#[allow(clippy::too_many_arguments)]
pub async fn workload_with(
    client: &Client,
    prefix: &str,
    events: u64,
    streams: u64,
    seed: u64,
    mix: Mix,
    cancel: &CancellationToken,
    mut written: impl FnMut(WorkloadStats),
) -> Result<WorkloadStats, esdb::Error> {
    let mut rng = Rng(seed | 1);
    let mut stats = WorkloadStats::default();
    let mut tombstoned = std::collections::HashSet::new();
    let mut has_events = std::collections::HashSet::new();
    let mut soft_deleted = std::collections::HashSet::new();
    while stats.events < events && !cancel.is_cancelled() {
        let n = rng.below(streams);
        if tombstoned.contains(&n) {
            continue;
        }
        let stream = format!("{prefix}-{n}");
        let mut wrote_events = |stats: &mut WorkloadStats, count: u64| {
            stats.events += count;
            if soft_deleted.remove(&n) {
                stats.recreations += 1;
            }
            has_events.insert(n);
        };
        match mix.draw(&mut rng) {
            Draw::Append => {
                let count = 1 + rng.below(5);
                let batch: Vec<EventData> = (0..count)
                    .map(|i| {
                        EventData::json(
                            Uuid::new_v4(),
                            "OrderPlaced",
                            format!(
                                r#"{{"order":{},"line":{i},"total":{}.5}}"#,
                                stats.events + i,
                                rng.below(1000)
                            ),
                        )
                        .with_metadata(format!(r#"{{"source":"demo","seq":{}}}"#, stats.events + i))
                    })
                    .collect();
                client
                    .append_events(&stream, &batch, ExpectedVersion::Any)
                    .await?;
                wrote_events(&mut stats, count);
            }
            Draw::Binary => {
                let data: Vec<u8> = (0..(16 + rng.below(64)))
                    .map(|_| rng.next() as u8)
                    .collect();
                client
                    .append_binary_event(
                        &stream,
                        Uuid::new_v4(),
                        "BlobStored",
                        Bytes::from(data),
                        ExpectedVersion::Any,
                    )
                    .await?;
                stats.binary += 1;
                wrote_events(&mut stats, 1);
            }
            Draw::Empty => {
                client
                    .append_events(
                        &stream,
                        &[EventData::binary(Uuid::new_v4(), "Heartbeat", Bytes::new())],
                        ExpectedVersion::Any,
                    )
                    .await?;
                stats.empty += 1;
                wrote_events(&mut stats, 1);
            }
            Draw::Link if has_events.contains(&n) => {
                let link = EventData::binary(Uuid::new_v4(), "$>", format!("0@{stream}"));
                client
                    .append_events(&format!("links-{}", n % 10), &[link], ExpectedVersion::Any)
                    .await?;
                stats.events += 1;
                stats.links += 1;
            }
            draw @ (Draw::Metadata | Draw::Cap) => {
                let meta = match draw {
                    Draw::Cap => {
                        stats.capped += 1;
                        format!(r#"{{"$maxCount":3,"owner":"team-{}"}}"#, rng.below(5))
                    }
                    _ => format!(r#"{{"$maxCount":100000,"owner":"team-{}"}}"#, rng.below(5)),
                };
                client
                    .write_stream_metadata(
                        &stream,
                        Uuid::new_v4(),
                        Bytes::from(meta),
                        ExpectedVersion::Any,
                    )
                    .await?;
                stats.metadata += 1;
                if soft_deleted.remove(&n) {
                    stats.undeletes += 1;
                }
            }
            Draw::SoftDelete if has_events.contains(&n) || soft_deleted.contains(&n) => {
                client
                    .delete_stream(&stream, ExpectedVersion::Any, DeleteMode::Soft)
                    .await?;
                stats.soft_deletes += 1;
                has_events.remove(&n);
                soft_deleted.insert(n);
            }
            Draw::HardDelete
                if has_events.contains(&n) && tombstoned.len() < (streams as usize / 20).max(1) =>
            {
                client
                    .delete_stream(&stream, ExpectedVersion::Any, DeleteMode::Hard)
                    .await?;
                stats.hard_deletes += 1;
                tombstoned.insert(n);
            }
            _ => {}
        }
        written(stats);
    }
    Ok(stats)
}

/// The primary's current end of `$all` (the `previous` link of the head page, §3.4).
///
/// # Errors
/// Client errors.
pub async fn primary_head(client: &Client) -> Result<Position, esdb::Error> {
    client.head().await
}

/// The whole demo; prints progress on stdout. Returns the exit code.
pub async fn run(options: DemoOptions, shutdown: CancellationToken) -> Result<u8, String> {
    println!("standby demo: starting a primary and a secondary dev node in this process");
    let clusters = start_clusters(options.ordering).await?;
    println!(
        "  primary   {}\n  secondary {}\n  workload  {} events over {} streams, ordering {:?}",
        clusters.primary.url(),
        clusters.secondary.url(),
        options.events,
        options.streams,
        options.ordering
    );
    let (primary, _) = pipeline::clients(&clusters.config).map_err(|e| e.to_string())?;
    let shared = Arc::new(Shared::default());
    let run_stop = CancellationToken::new();
    let replication = {
        let config = clusters.config.clone();
        let shared = shared.clone();
        let stop = run_stop.clone();
        tokio::spawn(async move { pipeline::run(&config, stop, shared).await })
    };
    let started = Instant::now();
    let mut last_print = Instant::now();
    let stats = workload(
        &primary,
        "demo",
        options.events,
        options.streams,
        0x5eed,
        &shutdown,
        |s| {
            if last_print.elapsed() >= Duration::from_secs(1) {
                let p = shared.snapshot();
                println!(
                    "  primary written {:>8} events | replicated {:>8} | {:.0} events/s",
                    s.events,
                    p.events_written,
                    p.events_written as f64 / started.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
        },
    )
    .await
    .map_err(|e| format!("workload: {e}"))?;
    println!("  workload done: {} events ({} binary, {} empty, {} links), {} metadata writes, {} soft and {} hard deletes", stats.events, stats.binary, stats.empty, stats.links, stats.metadata, stats.soft_deletes, stats.hard_deletes);

    let head = primary_head(&primary)
        .await
        .map_err(|e| format!("primary head: {e}"))?;
    loop {
        let p = shared.snapshot();
        if p.positions
            .applied
            .is_some_and(|a| a.commit() >= head.commit())
        {
            break;
        }
        if replication.is_finished() || shutdown.is_cancelled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if replication.is_finished() || shutdown.is_cancelled() {
        run_stop.cancel();
        return match replication
            .await
            .map_err(|e| format!("replication task: {e}"))?
        {
            Err(e) => {
                println!("  replication stopped: {e}");
                Ok(e.exit_code())
            }
            Ok(_) => Ok(crate::exit::OK),
        };
    }
    println!(
        "  caught up: replicated {} events in {:.1}s",
        shared.snapshot().events_written,
        started.elapsed().as_secs_f64()
    );
    let code = verify_step(&clusters).await?;
    if code != crate::exit::OK {
        run_stop.cancel();
        let _ = replication.await;
        return Ok(code);
    }
    let code = promotion_step(&clusters, replication).await?;
    clusters.primary.stop().await;
    clusters.secondary.stop().await;
    Ok(code)
}

/// A planned switchover while the replicator runs, then an application write on each side.
async fn promotion_step(
    clusters: &DemoClusters,
    replication: tokio::task::JoinHandle<Result<pipeline::Summary, pipeline::RunError>>,
) -> Result<u8, String> {
    println!("  switchover: fencing the primary, draining, promoting the secondary");
    let report = match crate::control::switchover(
        &clusters.config,
        Duration::from_secs(60),
        Some("standby demo".into()),
        &CancellationToken::new(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            println!("  switchover refused: {e}");
            return Ok(e.exit_code());
        }
    };
    for line in report.to_string().lines() {
        println!("    {line}");
    }
    match replication
        .await
        .map_err(|e| format!("replication task: {e}"))?
    {
        Err(e) => println!(
            "  the replicator stopped itself (exit code {}): {e}",
            e.exit_code()
        ),
        Ok(_) => println!("  the replicator stopped"),
    }
    let app = |url: String| {
        let config = esdb::ClientConfig::for_address(&url)
            .map_err(|e| e.to_string())?
            .with_credentials(esdb::Credentials::new(APPLICATION.0, APPLICATION.1));
        Client::connect(config).map_err(|e| e.to_string())
    };
    let event = || {
        vec![EventData::json(
            Uuid::new_v4(),
            "DemoAfterPromotion",
            Bytes::from_static(br#"{"hello":"new primary"}"#),
        )]
    };
    let on_new = app(clusters.config.secondary.url.clone())?
        .append_events("demo-after-promotion", &event(), ExpectedVersion::Any)
        .await;
    let on_old = app(clusters.config.primary.url.clone())?
        .append_events("demo-after-promotion", &event(), ExpectedVersion::Any)
        .await;
    println!(
        "  application write to the promoted secondary: {}\n  application write to the fenced old primary: {}",
        on_new.as_ref().map_or_else(|e| format!("refused ({e})"), |_| "accepted".into()),
        on_old.as_ref().map_or_else(|e| format!("refused ({})", e.kind()), |_| "accepted".into())
    );
    Ok(if on_new.is_ok() && on_old.is_err() {
        crate::exit::OK
    } else {
        crate::exit::INTERNAL
    })
}

/// Verifies the two sides and prints the report.
async fn verify_step(clusters: &DemoClusters) -> Result<u8, String> {
    println!("  verifying the secondary against the primary");
    let (primary, secondary) =
        pipeline::reading_clients(&clusters.config).map_err(|e| e.to_string())?;
    let report = crate::verify::verify(&primary, &secondary, &clusters.config.replication, |_| {})
        .await
        .map_err(|e| format!("verify: {e}"))?;
    for line in report.to_string().lines() {
        println!("  {line}");
    }
    Ok(if report.equal {
        crate::exit::OK
    } else {
        crate::exit::DIVERGENCE
    })
}
