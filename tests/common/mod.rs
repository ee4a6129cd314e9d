//! Shared helpers for the integration tests: recorded fixtures and a plain HTTP client.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

/// The recorded wire samples, copied with their provenance README from the wire contract.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http-api")
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(name))
        .unwrap_or_else(|e| panic!("fixture {name} is not JSON: {e}"))
}

/// A recorded status line and headers (`X.headers.txt`), parsed by the same function the client
/// uses for them, so the reason phrase is kept exactly when hyper would keep it.
pub fn recorded_head(name: &str) -> standby::esdb::RawResponse {
    let text = String::from_utf8(fixture(name)).expect("headers files are text");
    standby::esdb::RawResponse::from_http1_head(&text, bytes::Bytes::new())
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// An HTTP client for loopback dev nodes, plaintext or secure (it trusts [`dev_certs`]' CA).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = standby::esdb::tls::client_config(Some(&dev_certs().ca_file()), false, true)
        .expect("client TLS with the development CA");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// The development certificates of this test binary (under cargo's target tmp directory, one
/// directory per test binary, kept between runs).
pub fn dev_certs() -> &'static devnode::DevCerts {
    static CERTS: std::sync::OnceLock<devnode::DevCerts> = std::sync::OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("devnode-dev-certs")
            .join(env!("CARGO_CRATE_NAME"));
        devnode::DevCerts::ensure(dir).expect("development certificates")
    })
}

/// `cfg` as the real server of its profile runs with authentication: v20–v25 (plaintext only
/// with `--insecure`) in secure mode with [`dev_certs`]; v5 and v26 unchanged (plaintext with
/// authentication).
pub fn secure(cfg: devnode::NodeConfig) -> devnode::NodeConfig {
    if cfg.profile.couples_tls_and_auth() {
        cfg.dev_tls(dev_certs())
            .expect("development certificates load")
    } else {
        cfg
    }
}

/// A client configuration for `node`: its URL, and the development CA when it serves TLS.
pub fn client_config(node: &devnode::Node) -> standby::esdb::ClientConfig {
    let mut config = standby::esdb::ClientConfig::new(reqwest::Url::parse(&node.url()).unwrap());
    if node.is_tls() {
        config.ca_file = Some(dev_certs().ca_file());
    }
    config
}

/// The wire of the end-to-end tests: gRPC, the default, or AtomPub with
/// `E2E_WIRE=http` (CI runs the fencing, crash and lease tests that way too).
pub fn wire() -> standby::esdb::Wire {
    match std::env::var("E2E_WIRE").as_deref() {
        Ok("http") => standby::esdb::Wire::Http,
        Ok("grpc") | Err(_) => standby::esdb::Wire::Grpc,
        Ok(other) => panic!("E2E_WIRE={other:?}: use grpc or http"),
    }
}

/// Two dev nodes on disk, a checkpoint path and a configuration pointing at them over
/// [`wire`].
pub async fn clusters(ordering: standby::config::Ordering) -> standby::demo::DemoClusters {
    clusters_on(wire(), ordering).await
}

/// [`standby::demo::start_clusters_with`] over [`wire`].
pub async fn start_clusters_with(
    ordering: standby::config::Ordering,
    adjust: impl Fn(devnode::NodeConfig, bool) -> devnode::NodeConfig,
    ca_file: Option<PathBuf>,
) -> Result<standby::demo::DemoClusters, String> {
    standby::demo::start_clusters_on(wire(), ordering, adjust, ca_file).await
}

/// As [`clusters`], with the configuration addressing both nodes over `wire`.
pub async fn clusters_on(
    wire: standby::esdb::Wire,
    ordering: standby::config::Ordering,
) -> standby::demo::DemoClusters {
    standby::demo::start_clusters_on(wire, ordering, |config, _| config, None)
        .await
        .expect("dev nodes start")
}

/// Both wires, for the end-to-end tests that run on each.
pub const WIRES: [standby::esdb::Wire; 2] = [standby::esdb::Wire::Grpc, standby::esdb::Wire::Http];

/// An admin client for a dev node.
pub fn admin_client(url: &str) -> standby::esdb::Client {
    client_as(url, ("admin", "changeit"))
}

/// A client for the dev node at `url` as `user`, trusting [`dev_certs`]' CA for `https`.
pub fn client_as(url: &str, (user, password): (&str, &str)) -> standby::esdb::Client {
    let mut config = standby::esdb::ClientConfig::for_address(url)
        .unwrap()
        .with_credentials(standby::esdb::Credentials::new(user, password));
    if url.starts_with("https:") || (url.starts_with("kurrentdb:") && !url.contains("tls=false")) {
        config.ca_file = Some(dev_certs().ca_file());
    }
    standby::esdb::Client::connect(config).unwrap()
}

/// Runs `verify` between the two sides of `config` and returns the report.
pub async fn verify(config: &standby::config::Config) -> standby::verify::VerifyReport {
    let (primary, secondary) = standby::pipeline::reading_clients(config).unwrap();
    standby::verify::verify(&primary, &secondary, &config.replication, |_| {})
        .await
        .expect("verify runs")
}

/// Waits until `shared` reports the primary's current head as applied (the pipeline publishes
/// the positions it reads and applies; this waits on them, not on time): nothing in the
/// primary's `$all` lies after the applied position. Works whichever wire `primary` and the
/// replicator speak: each reads the other's positions.
pub async fn wait_applied_to_head(
    shared: &standby::pipeline::Shared,
    primary: &standby::esdb::Client,
    run: &tokio::task::JoinHandle<Result<standby::pipeline::Summary, standby::pipeline::RunError>>,
) {
    let head = standby::demo::primary_head(primary).await.unwrap();
    let one = standby::esdb::PageSize::new(1).unwrap();
    let options = standby::esdb::ReadOptions::default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let p = shared.snapshot();
        if let Some(applied) = p.positions.applied {
            if applied.commit() >= head.commit()
                || primary
                    .read_all_forward(applied, one, &options)
                    .await
                    .is_ok_and(|page| page.entries.is_empty())
            {
                return;
            }
        }
        assert!(!run.is_finished(), "replication stopped before catching up");
        assert!(
            std::time::Instant::now() < deadline,
            "not caught up after 300 s: {p:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `pipeline::run` on `config` in a task of its own, stopped by `stop`; returns the progress it
/// shares and the task.
pub fn spawn_run(
    config: &standby::config::Config,
    stop: tokio_util::sync::CancellationToken,
) -> (
    std::sync::Arc<standby::pipeline::Shared>,
    tokio::task::JoinHandle<Result<standby::pipeline::Summary, standby::pipeline::RunError>>,
) {
    let shared = std::sync::Arc::new(standby::pipeline::Shared::default());
    let run = {
        let (config, shared) = (config.clone(), shared.clone());
        tokio::spawn(async move { standby::pipeline::run(&config, stop, shared).await })
    };
    (shared, run)
}

/// Writes `clusters`' configuration as a TOML file (the replication user writes the secondary,
/// `admin` sets it up and promotes it) and returns its path.
pub fn write_config_file(clusters: &standby::demo::DemoClusters) -> PathBuf {
    let (user, password) = standby::demo::REPLICATOR;
    let path = clusters.dir.path().join("standby.toml");
    let ca = |endpoint: &standby::config::EndpointConfig| {
        endpoint
            .ca_file
            .as_ref()
            .map(|f| format!("ca_file = {:?}\n", f))
            .unwrap_or_default()
    };
    std::fs::write(
        &path,
        format!(
            "[primary]\nurl = {:?}\nusername = \"admin\"\npassword = \"changeit\"\n{}\n\
             [secondary]\nurl = {:?}\nusername = {user:?}\npassword = {password:?}\n{}\n\
             [secondary.admin]\nusername = \"admin\"\npassword = \"changeit\"\n\n\
             [checkpoint]\npath = {:?}\n\n[replication]\nordering = {:?}\n",
            clusters.config.primary.url,
            ca(&clusters.config.primary),
            clusters.config.secondary.url,
            ca(&clusters.config.secondary),
            clusters.config.checkpoint.path,
            match clusters.config.replication.ordering {
                standby::config::Ordering::Global => "global",
                standby::config::Ordering::Stream => "stream",
            }
        ),
    )
    .unwrap();
    path
}

/// Reads `$all` forward from `from`, collecting user data event ids, and stops exactly at `to`
/// (a page boundary handed out by the server) or at the end when `to` is `None`. Returns where
/// it stopped.
pub async fn collect(
    client: &standby::esdb::Client,
    from: standby::position::Position,
    to: Option<standby::position::Position>,
    ids: &mut Vec<uuid::Uuid>,
) -> standby::position::Position {
    use standby::esdb::{Embed, PageSize, ReadOptions};
    use standby::pipeline::plan::{classify, StreamKind, TOMBSTONE_TYPE};
    let options = ReadOptions {
        embed: Embed::Rich,
        long_poll: None,
        resolve_link_tos: Some(false),
    };
    let mut at = from;
    let mut count: u16 = 4096;
    loop {
        if to.is_some_and(|t| at >= t) {
            assert_eq!(Some(at), to, "the checkpoint is a record boundary");
            return at;
        }
        let page = client
            .read_all_forward(at, PageSize::new(count).unwrap(), &options)
            .await
            .unwrap();
        let Some(next) = page.next else { return at };
        if to.is_some_and(|t| next > t) {
            // This page runs past the checkpoint: approach it with pages half as long.
            assert!(
                count > 1,
                "a one-record page cannot overshoot a record boundary"
            );
            count /= 2;
            continue;
        }
        for e in page.entries.iter().filter_map(|e| e.as_event()) {
            if matches!(classify(&e.stream), StreamKind::User(_)) && e.event_type != TOMBSTONE_TYPE
            {
                ids.push(e.event_id);
            }
        }
        at = next;
        if page.is_end && to.is_none() {
            return at;
        }
    }
}

/// Watches the checkpoint file at `path` until `stop` fires, and checks each position it holds:
/// every user event of the primary before it must be on the secondary. Returns the number of
/// distinct positions checked.
pub fn checkpoint_never_ahead(
    path: PathBuf,
    primary: standby::esdb::Client,
    secondary: standby::esdb::Client,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<usize> {
    use standby::position::Position;
    tokio::spawn(async move {
        let (mut primary_ids, mut primary_at) = (Vec::new(), Position::START);
        let (mut secondary_ids, mut secondary_at) = (Vec::new(), Position::START);
        let mut held = std::collections::HashSet::new();
        let mut checked = 0;
        let mut last = Position::START;
        while !stop.is_cancelled() {
            // `read`, not `open`: opening would remove the live replicator's temporary file.
            let position = standby::checkpoint::CheckpointStore::read(&path)
                .expect("the checkpoint file is readable")
                .map_or(Position::START, |cp| cp.position);
            assert!(
                position >= last,
                "the checkpoint moved back from {last} to {position}"
            );
            if position > last {
                last = position;
                // The secondary after the checkpoint was read: it holds at least what was
                // applied before the checkpoint was written.
                secondary_at = collect(&secondary, secondary_at, None, &mut secondary_ids).await;
                held.extend(secondary_ids.drain(..));
                primary_at = collect(&primary, primary_at, Some(position), &mut primary_ids).await;
                let missing = primary_ids.iter().filter(|id| !held.contains(*id)).count();
                assert_eq!(
                    missing, 0,
                    "{missing} events before the checkpoint {position} are not on the secondary"
                );
                checked += 1;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        checked
    })
}

/// Runs replication with `config` until the primary's head is applied, then stops it; panics with
/// the run's error if it stops by itself first.
pub async fn replicate_to_head(
    config: &standby::config::Config,
    primary: &standby::esdb::Client,
) -> standby::pipeline::Summary {
    use std::sync::Arc;
    let shared = Arc::new(standby::pipeline::Shared::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let run = {
        let (config, shared, stop) = (config.clone(), shared.clone(), stop.clone());
        tokio::spawn(async move { standby::pipeline::run(&config, stop, shared).await })
    };
    let head = standby::demo::primary_head(primary).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let one = standby::esdb::PageSize::new(1).unwrap();
    let options = standby::esdb::ReadOptions::default();
    loop {
        // Applied to the head: at or past it, or nothing in `$all` after what is applied (the
        // two positions may be in the two wires' forms).
        if let Some(a) = shared.snapshot().positions.applied {
            if a.commit() >= head.commit()
                || primary
                    .read_all_forward(a, one, &options)
                    .await
                    .is_ok_and(|page| page.entries.is_empty())
            {
                break;
            }
        }
        if run.is_finished() {
            panic!("replication stopped: {:?}", run.await.unwrap().err());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not caught up after 300 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.cancel();
    run.await.unwrap().expect("replication stops cleanly")
}

/// Puts the checkpoint back to `position`, as a crash before the checkpoint write leaves it: the
/// local file and the copy on the secondary (the copy is never ahead of the file).
pub async fn rewind(c: &standby::demo::DemoClusters, position: standby::position::Position) {
    use standby::checkpoint::{Checkpoint, CheckpointStore};
    let (mut store, existing) = CheckpointStore::open(&c.config.checkpoint.path).unwrap();
    let existing = existing.expect("a checkpoint after the first run");
    let rewound = Checkpoint {
        position,
        ..existing
    };
    store.store(&rewound).unwrap();
    let copy = standby::esdb::EventData::json(
        uuid::Uuid::new_v4(),
        standby::pipeline::CHECKPOINT_EVENT_TYPE,
        serde_json::to_vec(&rewound).unwrap(),
    );
    admin_client(&c.secondary.url())
        .append_events(
            standby::pipeline::CHECKPOINT_STREAM,
            &[copy],
            standby::position::ExpectedVersion::Any,
        )
        .await
        .unwrap();
}
