//! Replay is a no-op: after a crash between applying records and persisting the checkpoint, the
//! same records are applied again, and that must change nothing on the secondary (design,
//! "Replication semantics" 1 and 7).
//!
//! Each test writes a workload on the primary, replicates it to the head, then puts the
//! checkpoint (the local file and its copy on the secondary) back to where it was before those
//! records, exactly as a crash before the checkpoint write leaves it, and replicates again. Both
//! clusters must still be equal, and the second run must write nothing to a user stream or a
//! user stream's metadata on the secondary.

mod common;

use bytes::Bytes;
use standby::config::Ordering;
use standby::esdb::{Client, DeleteMode, Embed, EventData, PageSize, ReadOptions};
use standby::pipeline::plan::{classify, StreamKind};
use standby::position::{ExpectedVersion, Position, StreamRevision};

use uuid::Uuid;

use common::{admin_client, clusters, verify};

fn events(n: usize, ty: &str) -> Vec<EventData> {
    (0..n)
        .map(|i| EventData::json(Uuid::new_v4(), ty, format!(r#"{{"i":{i}}}"#).into_bytes()))
        .collect()
}

fn exact(n: u64) -> ExpectedVersion {
    ExpectedVersion::Exact(StreamRevision::new(n).unwrap())
}

async fn append(c: &Client, stream: &str, n: usize, expected: ExpectedVersion) {
    c.append_events(stream, &events(n, "E"), expected)
        .await
        .unwrap_or_else(|e| panic!("append to {stream}: {e}"));
}

async fn metadata(c: &Client, stream: &str, json: &'static str) {
    c.write_stream_metadata(
        stream,
        Uuid::new_v4(),
        Bytes::from_static(json.as_bytes()),
        ExpectedVersion::Any,
    )
    .await
    .unwrap_or_else(|e| panic!("metadata of {stream}: {e}"));
}

async fn soft_delete(c: &Client, stream: &str) {
    c.delete_stream(stream, ExpectedVersion::Any, DeleteMode::Soft)
        .await
        .unwrap_or_else(|e| panic!("soft delete of {stream}: {e}"));
}

/// The end of the secondary's `$all`.
async fn secondary_head(c: &Client) -> Position {
    standby::demo::primary_head(c).await.unwrap()
}

/// Records of user streams and of user streams' metastreams in the secondary's `$all` after
/// `from`: what a replay must not add.
async fn user_records_after(c: &Client, from: Position) -> Vec<String> {
    let options = ReadOptions {
        embed: Embed::Rich,
        long_poll: None,
        resolve_link_tos: Some(false),
    };
    let mut at = from;
    let mut found = Vec::new();
    loop {
        let page = c
            .read_all_forward(at, PageSize::new(500).unwrap(), &options)
            .await
            .unwrap();
        for e in page.entries.iter().filter_map(|e| e.as_event()) {
            if !matches!(classify(&e.stream), StreamKind::System) {
                found.push(format!("{}@{} ({})", e.revision, e.stream, e.event_type));
            }
        }
        match page.next {
            Some(next) if !page.is_end && next != at => at = next,
            _ => return found,
        }
    }
}

/// Replicates, rewinds to the start, replicates again: equal, and nothing new written.
async fn replay_writes_nothing(c: &standby::demo::DemoClusters, what: &str) {
    let primary = admin_client(&c.config.primary.url);
    let secondary = admin_client(&c.config.secondary.url);
    common::replicate_to_head(&c.config, &primary).await;
    let first = verify(&c.config).await;
    assert!(first.equal, "{what}: first run: {first}");

    common::rewind(c, Position::START).await;
    let before = secondary_head(&secondary).await;
    common::replicate_to_head(&c.config, &primary).await;
    let report = verify(&c.config).await;
    assert!(report.equal, "{what}: after the replay: {report}");
    let written = user_records_after(&secondary, before).await;
    assert!(
        written.is_empty(),
        "{what}: the replay wrote to user streams: {written:?}"
    );
}

/// Engine review §1: a soft delete, then a metadata write that undoes it (the server adds its
/// undelete record), then a recreating append. A replay must not delete the stream again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_delete_undone_by_metadata_is_not_deleted_again_by_a_replay() {
    for ordering in [Ordering::Global, Ordering::Stream] {
        let c = clusters(ordering).await;
        let p = admin_client(&c.config.primary.url);
        append(&p, "x", 3, ExpectedVersion::NoStream).await;
        soft_delete(&p, "x").await;
        metadata(&p, "x", r#"{"custom":1}"#).await;
        append(&p, "x", 1, exact(2)).await;
        replay_writes_nothing(&c, &format!("{ordering:?}")).await;
    }
}

/// Every other kind of record: data events, JSON and binary; metadata; a soft delete recreated
/// by an append; a soft delete of a stream already soft-deleted; a soft delete left in place; a
/// tombstone; a user link; a `$maxCount` stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_each_kind_of_record_writes_nothing() {
    let c = clusters(Ordering::Stream).await;
    let p = admin_client(&c.config.primary.url);
    append(&p, "data", 4, ExpectedVersion::NoStream).await;
    p.append_binary_event(
        "data",
        Uuid::new_v4(),
        "Bin",
        Bytes::from_static(&[0, 1, 2, 255]),
        exact(3),
    )
    .await
    .unwrap();
    metadata(&p, "meta", r#"{"$cacheControl":10,"k":"v"}"#).await;
    append(&p, "meta", 2, ExpectedVersion::NoStream).await;
    metadata(&p, "meta", r#"{"k":"w"}"#).await;

    append(&p, "reborn", 2, ExpectedVersion::NoStream).await;
    soft_delete(&p, "reborn").await;
    append(&p, "reborn", 2, exact(1)).await;

    append(&p, "twice", 2, ExpectedVersion::NoStream).await;
    soft_delete(&p, "twice").await;
    soft_delete(&p, "twice").await;

    append(&p, "gone", 2, ExpectedVersion::NoStream).await;
    soft_delete(&p, "gone").await;

    append(&p, "tomb", 2, ExpectedVersion::NoStream).await;
    p.delete_stream("tomb", exact(1), DeleteMode::Hard)
        .await
        .unwrap();

    p.append_events(
        "links",
        &[EventData::binary(
            Uuid::new_v4(),
            "$>",
            Bytes::from_static(b"1@data"),
        )],
        ExpectedVersion::NoStream,
    )
    .await
    .unwrap();

    metadata(&p, "capped", r#"{"$maxCount":1}"#).await;
    append(&p, "capped", 3, ExpectedVersion::NoStream).await;
    append(&p, "capped", 2, exact(2)).await;

    replay_writes_nothing(&c, "each kind").await;
}
