//! `run` checks what it resumes from against both clusters before it writes anything (engine
//! review §2 and §12, issue "one replicator per secondary" item 3 and 4): each way a checkpoint can
//! disagree with the clusters is refused with exit 3 and the fix, and a primary whose first record
//! was scavenged is still recognised.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use standby::config::{Config, Ordering};
use standby::demo::DemoClusters;
use standby::esdb::EventData;
use standby::pipeline::{self, RunError, Shared};
use standby::position::{ExpectedVersion, StreamRevision};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{admin_client, clusters, verify};

fn events(ids: &[Uuid]) -> Vec<EventData> {
    ids.iter()
        .map(|id| EventData::json(*id, "E", format!(r#"{{"id":"{id}"}}"#).into_bytes()))
        .collect()
}

/// Runs replication with `config` and expects a refusal before anything is replicated.
async fn refused(config: &Config) -> String {
    let shared = Arc::new(Shared::default());
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        pipeline::run(config, CancellationToken::new(), shared.clone()),
    )
    .await
    .expect("a refusal comes at once, not after a minute");
    match result {
        Err(e @ RunError::Refused(_)) => {
            assert_eq!(e.exit_code(), 3);
            assert_eq!(
                shared.snapshot().events_written,
                0,
                "nothing is written before the checks"
            );
            e.to_string()
        }
        other => panic!("expected a refusal (exit 3), got {other:?}"),
    }
}

/// A fresh dev node in `dir`, as the demo's secondary (it knows the replication user).
async fn fresh_node(dir: &std::path::Path, secondary: bool) -> devnode::Node {
    devnode::Node::start(standby::demo::node_config(dir, secondary))
        .await
        .unwrap()
}

async fn write_events(c: &DemoClusters, stream: &str, ids: &[Uuid]) {
    admin_client(&c.config.primary.url)
        .append_events(stream, &events(ids), ExpectedVersion::Any)
        .await
        .unwrap();
}

fn ids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::new_v4()).collect()
}

/// §2 A: the secondary was replaced by an empty cluster while the checkpoint stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_or_rebuilt_secondary_is_refused() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    write_events(&c, "a", &ids(200)).await;
    common::replicate_to_head(&c.config, &primary).await;

    let rebuilt = fresh_node(&c.dir.path().join("rebuilt"), true).await;
    let mut config = c.config.clone();
    config.secondary.url = rebuilt.url();
    let message = refused(&config).await;
    assert!(message.contains("emptied or rebuilt"), "{message}");
    assert!(message.contains("move"), "says what to do: {message}");
    let secondary = admin_client(&rebuilt.url());
    assert!(
        matches!(
            secondary.read_stream_metadata("a").await.unwrap(),
            standby::esdb::Lookup::NotFound
        ),
        "nothing was written to the new secondary"
    );
}

/// §2 B: the local checkpoint is older than its copy on the secondary (a disk snapshot restored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_checkpoint_older_than_its_copy_is_refused() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    write_events(&c, "a", &ids(50)).await;
    common::replicate_to_head(&c.config, &primary).await;
    let old = std::fs::read(&c.config.checkpoint.path).unwrap();
    write_events(&c, "b", &ids(50)).await;
    common::replicate_to_head(&c.config, &primary).await;

    std::fs::write(&c.config.checkpoint.path, old).unwrap();
    let message = refused(&c.config).await;
    assert!(message.contains("older than its copy"), "{message}");
    assert!(message.contains("checkpoint recover"), "{message}");
}

/// A primary restored from an older backup: its log ends before the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_restored_from_an_older_backup_is_refused() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    let written = ids(100);
    write_events(&c, "a", &written[..40]).await;
    write_events(&c, "a", &written[40..]).await;
    common::replicate_to_head(&c.config, &primary).await;

    // The same database as it was after its first 40 events: the same records, fewer of them.
    let restored = fresh_node(&c.dir.path().join("restored"), false).await;
    admin_client(&restored.url())
        .append_events("a", &events(&written[..40]), ExpectedVersion::Any)
        .await
        .unwrap();
    let mut config = c.config.clone();
    config.primary.url = restored.url();
    let message = refused(&config).await;
    assert!(message.contains("log ends"), "{message}");
    assert!(message.contains("older backup"), "{message}");
}

/// Another database that begins with the same first event and has grown past the checkpoint:
/// the events just before the checkpoint are not the ones the secondary holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_database_with_the_same_first_event_is_refused() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    let written = ids(100);
    write_events(&c, "a", &written).await;
    common::replicate_to_head(&c.config, &primary).await;

    let other = fresh_node(&c.dir.path().join("other"), false).await;
    let other_client = admin_client(&other.url());
    other_client
        .append_events("a", &events(&written[..1]), ExpectedVersion::Any)
        .await
        .unwrap();
    other_client
        .append_events("a", &events(&ids(300)), ExpectedVersion::Any)
        .await
        .unwrap();
    let mut config = c.config.clone();
    config.primary.url = other.url();
    let message = refused(&config).await;
    assert!(message.contains("two histories"), "{message}");
}

/// §12: the primary's first record is removed by a scavenge; `run` recognises the same database
/// by the events before the checkpoint and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_whose_first_record_was_scavenged_is_the_same_database() {
    // A log whose first record is a user event a scavenge can remove (a real node's own first
    // records are accounts, which stay; the dev node leaves them out here).
    let c = common::start_clusters_with(
        Ordering::Global,
        |config, _| config.server_records(false),
        None,
    )
    .await
    .unwrap();
    let primary = admin_client(&c.config.primary.url);
    write_events(&c, "first", &ids(1)).await;
    primary
        .write_stream_metadata(
            "first",
            Uuid::new_v4(),
            Bytes::from_static(br#"{"$maxCount":1}"#),
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    primary
        .append_events(
            "first",
            &events(&ids(1)),
            ExpectedVersion::Exact(StreamRevision::START),
        )
        .await
        .unwrap();
    common::replicate_to_head(&c.config, &primary).await;
    let before =
        pipeline::primary_identity(&primary, &CancellationToken::new(), &Shared::default())
            .await
            .unwrap();
    c.primary.scavenge().expect("scavenge");
    let after = pipeline::primary_identity(&primary, &CancellationToken::new(), &Shared::default())
        .await
        .unwrap();
    assert_ne!(before, after, "the scavenge removed the first record");

    write_events(&c, "later", &ids(5)).await;
    common::replicate_to_head(&c.config, &primary).await;
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
    let cp = standby::checkpoint::CheckpointStore::read(&c.config.checkpoint.path)
        .unwrap()
        .unwrap();
    assert_eq!(
        Some(cp.primary),
        after,
        "the checkpoint names the primary as it is now"
    );
}

/// Item 4: `run` against a promoted secondary exits 3 within 10 s while the primary is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_secondary_is_refused_while_the_primary_is_down() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    write_events(&c, "a", &ids(10)).await;
    common::replicate_to_head(&c.config, &primary).await;
    let report = standby::control::promote(
        &c.config,
        &standby::control::PromoteOptions {
            force: true,
            reason: Some("primary lost".into()),
            ..Default::default()
        },
    )
    .await
    .expect("promoted");
    assert!(matches!(
        report.outcome,
        standby::control::Outcome::Promoted
    ));
    // The primary goes away: `run` must not wait for it to refuse the promoted secondary.
    let config_file = common::write_config_file(&c);
    let DemoClusters {
        primary: node,
        secondary: _secondary,
        dir: _dir,
        ..
    } = c;
    node.stop().await;
    let started = Instant::now();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_standby"))
        .args(["run", "--config"])
        .arg(config_file)
        .env("STANDBY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("`run` refuses a promoted secondary without waiting for the primary")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("promoted"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused after {:?}",
        started.elapsed()
    );
}

/// The last events before the checkpoint are hidden on both sides (a soft delete undone by a
/// metadata write leaves `$tb` above them): they prove nothing either way, and `run` goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_hidden_by_metadata_before_the_checkpoint_are_no_reason_to_refuse() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    write_events(&c, "a", &ids(5)).await;
    primary
        .delete_stream("a", ExpectedVersion::Any, standby::esdb::DeleteMode::Soft)
        .await
        .unwrap();
    primary
        .write_stream_metadata(
            "a",
            Uuid::new_v4(),
            Bytes::from_static(br#"{"k":1}"#),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    common::replicate_to_head(&c.config, &primary).await;
    write_events(&c, "b", &ids(1)).await;
    common::replicate_to_head(&c.config, &primary).await;
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
}
