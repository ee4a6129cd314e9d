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

/// A plain HTTP client for loopback dev nodes (no TLS needed).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// Two dev nodes on disk, a checkpoint path and a configuration pointing at them.
pub async fn clusters(ordering: standby::config::Ordering) -> standby::demo::DemoClusters {
    standby::demo::start_clusters(ordering)
        .await
        .expect("dev nodes start")
}

/// An admin client for a dev node.
pub fn admin_client(url: &str) -> standby::esdb::Client {
    let config = standby::esdb::ClientConfig::new(reqwest::Url::parse(url).unwrap())
        .with_credentials(standby::esdb::Credentials::new("admin", "changeit"));
    standby::esdb::Client::new(config).unwrap()
}

/// Runs `verify` between the two sides of `config` and returns the report.
pub async fn verify(config: &standby::config::Config) -> standby::verify::VerifyReport {
    let (primary, secondary) = standby::pipeline::reading_clients(config).unwrap();
    standby::verify::verify(&primary, &secondary, &config.replication, |_| {})
        .await
        .expect("verify runs")
}

/// Waits until `shared` reports the primary's current head as applied (the pipeline publishes
/// the positions it reads and applies; this waits on them, not on time).
pub async fn wait_applied_to_head(
    shared: &standby::pipeline::Shared,
    primary: &standby::esdb::Client,
    run: &tokio::task::JoinHandle<Result<standby::pipeline::Summary, standby::pipeline::RunError>>,
) {
    let head = standby::demo::primary_head(primary).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let p = shared.snapshot();
        if p.positions
            .applied
            .is_some_and(|a| a.commit() >= head.commit())
        {
            return;
        }
        assert!(!run.is_finished(), "replication stopped before catching up");
        assert!(
            std::time::Instant::now() < deadline,
            "not caught up after 300 s: {p:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Writes `clusters`' configuration as a TOML file (the replication user writes the secondary,
/// `admin` sets it up and promotes it) and returns its path.
pub fn write_config_file(clusters: &standby::demo::DemoClusters) -> PathBuf {
    let (user, password) = standby::demo::REPLICATOR;
    let path = clusters.dir.path().join("standby.toml");
    std::fs::write(
        &path,
        format!(
            "[primary]\nurl = {:?}\nusername = \"admin\"\npassword = \"changeit\"\n\n\
             [secondary]\nurl = {:?}\nusername = {user:?}\npassword = {password:?}\n\n\
             [secondary.admin]\nusername = \"admin\"\npassword = \"changeit\"\n\n\
             [checkpoint]\npath = {:?}\n\n[replication]\nordering = {:?}\n",
            clusters.primary.url(),
            clusters.secondary.url(),
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
