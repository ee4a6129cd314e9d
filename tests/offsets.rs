//! The persisted rule for streams whose first surviving event on the primary is not 0: the primary
//! truncated and scavenged them before replication started. The stream is replicated with an
//! offset recorded in `$standby-offsets`, keeps strong idempotency across restarts, and verifies
//! equal.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use standby::config::Ordering;
use standby::esdb::{DeleteMode, Embed, EventData, PageSize, ReadOptions};
use standby::offsets::StreamOffsets;
use standby::pipeline::{self, Shared};
use standby::position::{ExpectedVersion, StreamRevision};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use common::{admin_client, clusters, verify, wait_applied_to_head};

fn events(n: usize, ty: &str) -> Vec<EventData> {
    (0..n)
        .map(|i| EventData::json(Uuid::new_v4(), ty, format!(r#"{{"i":{i}}}"#)))
        .collect()
}

/// `capped`: 20 events, then `$maxCount` 5: after a scavenge `$all` holds events 15..19.
async fn capped(primary: &standby::esdb::Client) {
    primary
        .append_events("capped", &events(20, "Tick"), ExpectedVersion::NoStream)
        .await
        .unwrap();
    primary
        .write_stream_metadata(
            "capped",
            Uuid::new_v4(),
            Bytes::from_static(br#"{"$maxCount":5}"#),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_scavenged_streams_replicate_with_a_persisted_offset() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);

    capped(&primary).await;
    // `reborn`: 6 events, soft-deleted, recreated with 2 more → after the scavenge, 6 and 7 remain.
    primary
        .append_events("reborn", &events(6, "Old"), ExpectedVersion::NoStream)
        .await
        .unwrap();
    primary
        .delete_stream("reborn", ExpectedVersion::Any, DeleteMode::Soft)
        .await
        .unwrap();
    primary
        .append_events(
            "reborn",
            &events(2, "New"),
            ExpectedVersion::Exact(StreamRevision::new(5).unwrap()),
        )
        .await
        .unwrap();
    // `plain`: untouched.
    primary
        .append_events("plain", &events(3, "Plain"), ExpectedVersion::NoStream)
        .await
        .unwrap();
    c.primary.scavenge().expect("scavenge");

    let run_once = |shared: Arc<Shared>, stop: CancellationToken| {
        let config = c.config.clone();
        tokio::spawn(async move { pipeline::run(&config, stop, shared).await })
    };
    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let run = run_once(shared.clone(), stop.clone());
    wait_applied_to_head(&shared, &primary, &run).await;
    stop.cancel();
    run.await
        .unwrap()
        .expect("no divergence: the gap is handled by the offset rule");

    let offsets = StreamOffsets::load(&secondary).await.unwrap();
    assert_eq!(offsets.get("capped"), StreamRevision::new(15));
    assert_eq!(offsets.get("reborn"), StreamRevision::new(6));
    assert_eq!(offsets.get("plain"), None);
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");

    // The secondary numbers them from 0; the translated $tb keeps every copied event visible.
    let page = secondary
        .read_stream_forward(
            "capped",
            StreamRevision::START,
            PageSize::new(50).unwrap(),
            &ReadOptions::embed(Embed::Rich),
        )
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_eq!(page.entries.len(), 5);

    // A restart resumes under the recorded offset: new events continue the numbering.
    primary
        .append_events(
            "capped",
            &events(2, "Tick"),
            ExpectedVersion::Exact(StreamRevision::new(19).unwrap()),
        )
        .await
        .unwrap();
    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let run = run_once(shared.clone(), stop.clone());
    wait_applied_to_head(&shared, &primary, &run).await;
    stop.cancel();
    run.await.unwrap().expect("restart under the offset");
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
    let page = secondary
        .read_stream_forward(
            "capped",
            StreamRevision::START,
            PageSize::new(50).unwrap(),
            &ReadOptions::embed(Embed::Rich),
        )
        .await
        .unwrap()
        .found()
        .unwrap();
    let numbers: Vec<u64> = page.entries.iter().map(|e| e.revision().get()).collect();
    assert_eq!(
        numbers,
        vec![2, 3, 4, 5, 6],
        "$maxCount 5 applies on the secondary too (events 0..6 = source 15..21)"
    );
}

/// Engine review §10: the stream's `$tb` is set before its events, and a scavenge removes the
/// events below it, so `$all` holds the metadata first and the stream from event 3 on. The
/// metadata reaches the secondary before the offset is known; once it is, the secondary's `$tb`
/// must not hide the copied events. A replay of the whole log changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_before_written_ahead_of_the_offset_is_translated_once_known() {
    let c = clusters(Ordering::Stream).await;
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    primary
        .write_stream_metadata(
            "ahead",
            Uuid::new_v4(),
            Bytes::from_static(br#"{"$tb":3,"owner":"billing"}"#),
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    primary
        .append_events("ahead", &events(10, "E"), ExpectedVersion::NoStream)
        .await
        .unwrap();
    c.primary.scavenge().expect("scavenge");

    common::replicate_to_head(&c.config, &primary).await;
    let offsets = StreamOffsets::load(&secondary).await.unwrap();
    assert_eq!(offsets.get("ahead"), StreamRevision::new(3));
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
    let page = secondary
        .read_stream_forward(
            "ahead",
            StreamRevision::START,
            PageSize::new(50).unwrap(),
            &ReadOptions::embed(Embed::Rich),
        )
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_eq!(page.entries.len(), 7, "source events 3..9 are all visible");

    // A crash that loses the checkpoint's progress replays all of it: nothing changes.
    common::rewind(&c, standby::position::Position::START).await;
    common::replicate_to_head(&c.config, &primary).await;
    let report = verify(&c.config).await;
    assert!(report.equal, "after a replay: {report}");
}

/// Engine review §11: the offset record is written, but its answer is lost (the node answers 500
/// "Write timeout" after committing). The retry sends the same record, which the server answers
/// as already written; a record rebuilt with a new id would be refused as a wrong expected version
/// and stop replication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_record_whose_answer_was_lost_is_retried_as_the_same_record() {
    let c = clusters(Ordering::Global).await;
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    capped(&primary).await;
    c.primary.scavenge().expect("scavenge");
    c.secondary
        .time_out_writes_after_commit(standby::offsets::OFFSETS_STREAM, 1);

    common::replicate_to_head(&c.config, &primary).await;
    let offsets = StreamOffsets::load(&secondary).await.unwrap();
    assert_eq!(offsets.get("capped"), StreamRevision::new(15));
    let records = secondary
        .read_stream_forward(
            standby::offsets::OFFSETS_STREAM,
            StreamRevision::START,
            PageSize::new(50).unwrap(),
            &ReadOptions::embed(Embed::Rich),
        )
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_eq!(records.entries.len(), 1, "the retry wrote nothing more");
    let report = verify(&c.config).await;
    assert!(report.equal, "{report}");
}
