//! End-to-end replication between two in-process dev nodes: a live mixed workload replicated in
//! both orderings, both clusters restarted mid-run, and a foreign write into the secondary.

mod common;

use std::sync::Arc;

use standby::config::Ordering;
use standby::esdb::Wire;
use standby::pipeline::{self, Shared};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{
    admin_client, checkpoint_never_ahead, clusters, clusters_on, spawn_run, verify,
    wait_applied_to_head,
};

/// 50k events over 500 streams with metadata, soft deletes, tombstones, user link events, binary
/// and empty events: 20k written before replication starts (caught up), 30k while it runs (live).
/// Throughout, every checkpoint written covers only events the secondary holds; at the end both
/// sides are equal.
async fn mixed_workload_is_mirrored(wire: Wire, ordering: Ordering) {
    mixed_workload_is_mirrored_between(wire, wire, ordering).await;
}

/// As [`mixed_workload_is_mirrored`], reading the primary over `from` and writing the secondary
/// over `to`.
async fn mixed_workload_is_mirrored_between(from: Wire, to: Wire, ordering: Ordering) {
    let mut c = clusters_on(to, ordering).await;
    if from != to {
        c.config.primary.url = match from {
            Wire::Http => c.primary.url(),
            Wire::Grpc => c.primary.grpc_url(),
        };
    }
    let wire = format!("{from} → {to}");
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    let no_cancel = CancellationToken::new();
    let before = standby::demo::workload(&primary, "early", 20_000, 200, 5, &no_cancel, |_| {})
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let (shared, run) = spawn_run(&c.config, stop.clone());
    let stop_watch = CancellationToken::new();
    let watch = checkpoint_never_ahead(
        c.config.checkpoint.path.clone(),
        primary.clone(),
        secondary,
        stop_watch.clone(),
    );
    let stats = standby::demo::workload(&primary, "mixed", 30_000, 500, 7, &no_cancel, |_| {})
        .await
        .unwrap();
    for s in [&before, &stats] {
        assert!(s.binary > 0 && s.empty > 0 && s.links > 0 && s.metadata > 0);
        assert!(s.soft_deletes > 0 && s.hard_deletes > 0, "{s:?}");
    }
    wait_applied_to_head(&shared, &primary, &run).await;
    stop.cancel();
    run.await.unwrap().expect("replication stops cleanly");
    stop_watch.cancel();
    let checked = watch
        .await
        .expect("the checkpoint never runs ahead of the secondary");
    assert!(checked >= 5, "only {checked} checkpoints were checked");

    let report = verify(&c.config).await;
    assert!(report.equal, "{wire} {ordering:?}: {report}");
    if (from, to) == (Wire::Grpc, Wire::Grpc) {
        // gRPC copies every byte: no event is an exception.
        assert_eq!(
            report.fidelity_limit_events, 0,
            "{wire} {ordering:?}: {report}"
        );
    }
    // Soft deletes hide part of the 50k events from stream reads on both sides; the rest are
    // compared one by one.
    assert!(report.events_compared > 20_000, "{report}");
    if to == Wire::Grpc || from == Wire::Http {
        // Written as the primary stores it: byte for byte (an AtomPub secondary re-indents
        // JSON that a gRPC client wrote compactly into the primary).
        assert!(
            report.json_equivalent_events == 0,
            "data written as batches is stored identically: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_is_mirrored_in_global_order() {
    mixed_workload_is_mirrored(Wire::Grpc, Ordering::Global).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_is_mirrored_in_stream_order() {
    mixed_workload_is_mirrored(Wire::Grpc, Ordering::Stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_is_mirrored_over_atompub() {
    mixed_workload_is_mirrored(Wire::Http, Ordering::Stream).await;
}

/// An AtomPub primary into a gRPC secondary, and the reverse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_is_mirrored_across_wires() {
    mixed_workload_is_mirrored_between(Wire::Http, Wire::Grpc, Ordering::Global).await;
    mixed_workload_is_mirrored_between(Wire::Grpc, Wire::Http, Ordering::Stream).await;
}

/// The primary is restarted mid-run, then the secondary; replication resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_resumes_after_either_cluster_restarts() {
    let mut c = clusters(Ordering::Global).await;
    let stop = CancellationToken::new();
    let (shared, run) = spawn_run(&c.config, stop.clone());
    let none = CancellationToken::new();
    for round in 0..2 {
        let primary = admin_client(&c.config.primary.url);
        standby::demo::workload(
            &primary,
            &format!("before{round}"),
            3_000,
            50,
            11 + round,
            &none,
            |_| {},
        )
        .await
        .unwrap();
        let before = shared.snapshot().events_written;
        // Restart one side on the same directory and address while the replicator runs.
        let (dir, node) = if round == 0 {
            ("primary", &mut c.primary)
        } else {
            ("secondary", &mut c.secondary)
        };
        let addr = node.addr();
        let stopped = std::mem::replace(
            node,
            devnode::Node::start(devnode::NodeConfig::memory())
                .await
                .unwrap(),
        );
        stopped.stop().await;
        let restarted = devnode::Node::start(
            standby::demo::node_config(&c.dir.path().join(dir), round == 1).http(addr),
        )
        .await
        .unwrap();
        std::mem::replace(node, restarted).stop().await;
        let primary = admin_client(&c.config.primary.url);
        standby::demo::workload(
            &primary,
            &format!("after{round}"),
            3_000,
            50,
            21 + round,
            &none,
            |_| {},
        )
        .await
        .unwrap();
        wait_applied_to_head(&shared, &primary, &run).await;
        assert!(
            shared.snapshot().events_written > before,
            "round {round}: replication went on"
        );
    }
    stop.cancel();
    run.await.unwrap().expect("clean stop");
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
}

/// A write into a secondary stream by someone else halts replication with the divergence report
/// and exit code 4; nothing on the secondary is overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_write_halts_with_a_divergence_report() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    let ev = |ty: &str| standby::esdb::EventData::json(Uuid::new_v4(), ty, r#"{"a":1}"#);
    primary
        .append_events(
            "order-1",
            &[ev("Placed"), ev("Paid")],
            standby::position::ExpectedVersion::Any,
        )
        .await
        .unwrap();

    let (shared, run) = spawn_run(&c.config, CancellationToken::new());
    wait_applied_to_head(&shared, &primary, &run).await;

    let foreign = ev("Forged");
    secondary
        .append_events(
            "order-1",
            std::slice::from_ref(&foreign),
            standby::position::ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let shipped = ev("Shipped");
    primary
        .append_events(
            "order-1",
            std::slice::from_ref(&shipped),
            standby::position::ExpectedVersion::Any,
        )
        .await
        .unwrap();

    let err = run.await.unwrap().expect_err("replication halts");
    assert_eq!(err.exit_code(), standby::exit::DIVERGENCE, "{err}");
    match &err {
        pipeline::RunError::Divergence(d) => {
            assert_eq!(d.stream, "order-1");
            assert_eq!(d.source_revision, 2);
            assert_eq!(d.primary_event_id, Some(shipped.event_id));
            assert_eq!(d.secondary_event_id, Some(foreign.event_id), "{d}");
            assert!(d.current.contains('2'), "{d}");
        }
        other => panic!("expected a divergence, got {other}"),
    }
    // The foreign event is still there and the primary's event was not written over it.
    let report = verify(&c.config).await;
    assert!(!report.equal);
    let page = secondary
        .read_stream_forward(
            "order-1",
            standby::position::StreamRevision::START,
            standby::esdb::PageSize::new(10).unwrap(),
            &standby::esdb::ReadOptions::embed(standby::esdb::Embed::Rich),
        )
        .await
        .unwrap()
        .found()
        .unwrap();
    let ids: Vec<Uuid> = page
        .entries
        .iter()
        .map(|e| e.as_event().unwrap().event_id)
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[2], foreign.event_id);
}

/// A prefix of a stream already on the secondary from an earlier run, in other batches than this
/// run makes (a crash at the live edge, or a restart with the other ordering), is recognised by
/// its ids and skipped; the rest is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_applied_in_other_batches_is_skipped_not_divergence() {
    use standby::esdb::EventData;
    use standby::position::ExpectedVersion;
    let c = clusters(Ordering::Stream).await;
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    let events: Vec<EventData> = (0..4)
        .map(|i| EventData::json(Uuid::new_v4(), "E", format!(r#"{{"i":{i}}}"#).into_bytes()))
        .collect();
    primary
        .append_events("prefix", &events, ExpectedVersion::NoStream)
        .await
        .unwrap();
    secondary
        .append_events("prefix", &events[..2], ExpectedVersion::NoStream)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let (shared, run) = spawn_run(&c.config, stop.clone());
    wait_applied_to_head(&shared, &primary, &run).await;
    stop.cancel();
    run.await.unwrap().expect("no divergence");
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
    assert_eq!(report.events_compared, 4, "{report}");
}

/// Engine review §9: the same, on a stream whose metadata hides its older events (`$maxCount`
/// 1, snapshots): the events already there cannot be read back, yet they are proven by the
/// server (an append of the same ids at the same numbers is "already written"), so a legitimate
/// replay does not halt as divergence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_hidden_by_max_count_is_proven_by_the_server_not_divergence() {
    use standby::esdb::EventData;
    use standby::position::ExpectedVersion;
    let c = clusters(Ordering::Stream).await;
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    let meta_id = Uuid::new_v4();
    for side in [&primary, &secondary] {
        side.write_stream_metadata(
            "snap",
            meta_id,
            bytes::Bytes::from_static(br#"{"$maxCount":1}"#),
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    }
    let events: Vec<EventData> = (0..4)
        .map(|i| {
            EventData::json(
                Uuid::new_v4(),
                "Snap",
                format!(r#"{{"i":{i}}}"#).into_bytes(),
            )
        })
        .collect();
    primary
        .append_events("snap", &events, ExpectedVersion::NoStream)
        .await
        .unwrap();
    secondary
        .append_events("snap", &events[..2], ExpectedVersion::NoStream)
        .await
        .unwrap();
    common::replicate_to_head(&c.config, &primary).await;
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
}

/// Both dev nodes keep their logs in the server's chunk layout (256 KiB chunks, so the positions
/// replicated cross many unused chunk tails): the workload is mirrored, and both directories
/// pass the offline verifier at the full level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_between_chunk_layout_nodes() {
    let dirs = std::sync::Mutex::new(Vec::new());
    let c = common::start_clusters_with(
        Ordering::Global,
        |config, _| {
            let config = config.chunk_layout(256 * 1024);
            if let devnode::Storage::Chunks { dir, .. } = &config.storage {
                dirs.lock().unwrap().push(dir.clone());
            }
            config
        },
        None,
    )
    .await
    .unwrap();
    let primary = admin_client(&c.config.primary.url);
    let no_cancel = CancellationToken::new();
    standby::demo::workload(&primary, "early", 5_000, 100, 5, &no_cancel, |_| {})
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let (shared, run) = spawn_run(&c.config, stop.clone());
    standby::demo::workload(&primary, "live", 5_000, 100, 7, &no_cancel, |_| {})
        .await
        .unwrap();
    wait_applied_to_head(&shared, &primary, &run).await;
    stop.cancel();
    run.await.unwrap().expect("replication stops cleanly");
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
    assert!(c.primary.store().end() > 4 * 256 * 1024, "several chunks");

    let dirs = dirs.lock().unwrap().clone();
    assert_eq!(dirs.len(), 2);
    for dir in dirs {
        let r = layout::verify::verify_dir(
            &dir,
            &layout::verify::Options::new(layout::verify::Level::Full),
        )
        .unwrap();
        assert!(r.is_sound(), "{}: {:#?}", dir.display(), r.findings);
    }
}

/// An event larger than the gRPC secondary's `MaxAppendSize` (the primary, over AtomPub, took it):
/// `run` stops with exit 1 and an error naming the stream and the setting to raise; nothing of
/// it is written and no checkpoint covers it, so a restart after the fix resumes at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_above_the_secondarys_append_limit_stops_run_naming_the_stream() {
    let mut c = clusters_on(Wire::Grpc, Ordering::Stream).await;
    c.config.primary.url = c.primary.url();
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    let any = standby::position::ExpectedVersion::Any;
    let small = standby::esdb::EventData::json(Uuid::new_v4(), "Small", r#"{"a":1}"#);
    primary
        .append_events("fits", std::slice::from_ref(&small), any)
        .await
        .unwrap();
    let before_big = standby::demo::primary_head(&primary).await.unwrap();
    let pad = "x".repeat(1_200_000);
    let big =
        standby::esdb::EventData::json(Uuid::new_v4(), "Big", format!(r#"{{"pad":"{pad}"}}"#));
    primary
        .append_events("too-big", std::slice::from_ref(&big), any)
        .await
        .unwrap();

    let shared = Arc::new(Shared::default());
    let err = pipeline::run(&c.config, CancellationToken::new(), shared)
        .await
        .expect_err("the secondary refuses the event");
    assert_eq!(err.exit_code(), standby::exit::INTERNAL, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("too-big") && message.contains("MaxAppendSize"),
        "{message}"
    );

    let options = standby::esdb::ReadOptions::default();
    let page = standby::esdb::PageSize::new(10).unwrap();
    let start = standby::position::StreamRevision::START;
    assert!(matches!(
        secondary
            .read_stream_forward("too-big", start, page, &options)
            .await
            .unwrap(),
        standby::esdb::Lookup::NotFound
    ));
    // Setup writes a checkpoint at the start; none may cover the refused event.
    let checkpoint = standby::checkpoint::CheckpointStore::read(&c.config.checkpoint.path).unwrap();
    if let Some(checkpoint) = checkpoint {
        assert!(
            checkpoint.position.commit() <= before_big.commit(),
            "{} is past the refused event (which starts after {before_big})",
            checkpoint.position
        );
    }
}

/// Servers before 23.10 never send `caught_up` on a subscription (dev node profile v21.10, as the
/// real ones). Against such a primary a few events, less than a page, still reach the secondary
/// at once, and the replicator reports itself caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_never_says_caught_up_is_replicated_at_once_and_reported_caught_up() {
    let c = standby::demo::start_clusters_on(
        Wire::Grpc,
        Ordering::Stream,
        |config, secondary| {
            if secondary {
                config
            } else {
                config.profile(devnode::Profile::V21_10).insecure()
            }
        },
        None,
    )
    .await
    .unwrap();
    let primary = admin_client(&c.config.primary.url);
    let ev = || standby::esdb::EventData::json(Uuid::new_v4(), "Old", r#"{"a":1}"#);
    primary
        .append_events(
            "old-server",
            &[ev(), ev(), ev()],
            standby::position::ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let (shared, run) = spawn_run(&c.config, CancellationToken::new());
    // Bounded well below the harness's 300 s: a batch waiting for a page to fill never comes.
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        wait_applied_to_head(&shared, &primary, &run),
    )
    .await
    .expect("the events reach the secondary without a caught_up message");
    // Caught up: the quiet-time heartbeat marks the head (10 s after the last message).
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while !shared.snapshot().caught_up() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("reported caught up without a caught_up message");
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
}
