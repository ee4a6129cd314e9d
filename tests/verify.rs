//! `verify` and `status` against in-process dev nodes (`devnode::Node` on `127.0.0.1:0`).
//!
//! The secondary's content is built directly with the client (the same events with the same ids,
//! as replication would append them), so these tests do not depend on the replication engine.

use std::time::Duration;

use bytes::Bytes;
use devnode::store::ProposedEvent;
use devnode::{Node, NodeConfig};
use reqwest::Url;
use uuid::Uuid;

use standby::checkpoint::{Checkpoint, CheckpointStore, PrimaryId};
use standby::config::{Config, ReplicationConfig};
use standby::esdb::{
    Client, ClientConfig, Credentials, DeleteMode, Embed, EventData, PageSize, ReadOptions,
};
use standby::offsets::StreamOffsets;
use standby::position::{Epoch, ExpectedVersion, Position, StreamRevision};
use standby::status::{self, CheckpointStatus, ROLE_NO_CONTROL_RECORD};
use standby::verify::{
    self, DifferenceKind, FidelityLimitKind, RetryPolicy, Side, StreamState, VerifyError,
    VerifyOptions, VerifyProgress, VerifyReport,
};

const PASSWORD: &str = "changeit";

/// How many records `$all` holds.
async fn all_records(client: &Client) -> u64 {
    let page = client
        .read_all_forward(
            Position::START,
            standby::esdb::PageSize::MAX,
            &standby::esdb::ReadOptions::embed(standby::esdb::Embed::None),
        )
        .await
        .unwrap();
    assert!(page.is_end, "a small log");
    page.entries.len() as u64
}

async fn node() -> Node {
    Node::start(NodeConfig::memory())
        .await
        .expect("dev node starts")
}

fn client_for(url: &str) -> Client {
    Client::connect(
        ClientConfig::new(Url::parse(url).unwrap())
            .with_credentials(Credentials::new("admin", PASSWORD)),
    )
    .unwrap()
}

fn admin(node: &Node) -> Client {
    client_for(&node.url())
}

/// A base URL on which nothing listens.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn rev(n: u64) -> StreamRevision {
    StreamRevision::new(n).unwrap()
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 + n)
}

/// Two fresh nodes and admin clients for them.
struct Pair {
    primary_node: Node,
    _secondary_node: Node,
    primary: Client,
    secondary: Client,
}

async fn pair() -> Pair {
    let (p, s) = (node().await, node().await);
    Pair {
        primary: admin(&p),
        secondary: admin(&s),
        primary_node: p,
        _secondary_node: s,
    }
}

impl Pair {
    fn both(&self) -> [&Client; 2] {
        [&self.primary, &self.secondary]
    }

    async fn verify(&self) -> VerifyReport {
        self.verify_filtered(&ReplicationConfig::default()).await
    }

    async fn verify_filtered(&self, filter: &ReplicationConfig) -> VerifyReport {
        let mut seen = Vec::new();
        let report = verify::verify(&self.primary, &self.secondary, filter, |p| seen.push(p))
            .await
            .expect("verify completes");
        assert!(
            seen.iter()
                .any(|p| matches!(p, VerifyProgress::ScanningPrimary { .. })),
            "progress is reported: {seen:?}"
        );
        report
    }
}

/// The order stream both tests share: JSON with metadata, binary, empty data, a user link.
fn order_events() -> Vec<EventData> {
    vec![
        EventData::json(id(1), "OrderPlaced", &br#"{"orderId":"1","total":10}"#[..])
            .with_metadata(&br#"{"source":"web"}"#[..]),
        EventData::binary(id(2), "Note", &b"plain text"[..]),
        EventData::json(id(3), "OrderShipped", &br#"[1,2]"#[..]),
        EventData::binary(id(4), "Empty", Bytes::new()),
        EventData::binary(id(5), "$>", &b"0@order-1"[..]),
    ]
}

/// Writes the same content to `client`: three streams, metadata, a hard delete.
async fn seed(client: &Client) {
    client
        .append_events("order-1", &order_events(), ExpectedVersion::NoStream)
        .await
        .unwrap();
    client
        .append_binary_event(
            "blob-1",
            id(10),
            "Blob",
            Bytes::from_static(&[0, 1, 2, 0xff]),
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    client
        .write_stream_metadata(
            "order-1",
            id(11),
            Bytes::from_static(br#"{"$maxCount":100,"owner":"ops"}"#),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    client
        .append_events(
            "gone-1",
            &[EventData::json(id(12), "Temp", &br#"{"t":1}"#[..])],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    client
        .delete_stream("gone-1", ExpectedVersion::Any, DeleteMode::Hard)
        .await
        .unwrap();
}

fn difference(report: &VerifyReport) -> &verify::Difference {
    assert!(!report.equal, "expected a difference: {report}");
    report.first_difference.as_ref().unwrap()
}

#[tokio::test]
async fn equal_sides_are_equal() {
    let pair = pair().await;
    for client in pair.both() {
        seed(client).await;
    }
    let report = pair.verify().await;
    assert!(report.equal, "{report}");
    assert_eq!(report.first_difference, None);
    assert_eq!(report.streams_compared, 3, "{report:?}");
    assert_eq!(report.events_compared, 6, "{report:?}");
    assert_eq!(report.fidelity_limit_events, 0);
    assert!(report.to_string().starts_with("EQUAL"), "{report}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["equal"], true);
}

#[tokio::test]
async fn small_pages_give_the_same_answers() {
    let pair = pair().await;
    for client in pair.both() {
        seed(client).await;
    }
    let options = VerifyOptions {
        stream_page_size: PageSize::new(2).unwrap(),
        all_page_size: PageSize::new(3).unwrap(),
        ..VerifyOptions::default()
    };
    let run = || async {
        let mut pages = 0;
        let report = verify::verify_with(
            &pair.primary,
            &pair.secondary,
            &ReplicationConfig::default(),
            &options,
            |p| pages += u32::from(matches!(p, VerifyProgress::ScanningPrimary { .. })),
        )
        .await
        .unwrap();
        assert!(pages > 1, "several $all pages were read");
        report
    };
    let report = run().await;
    assert!(report.equal, "{report}");
    assert_eq!(report.events_compared, 6);

    // The last event of a multi-page stream, missing.
    pair.primary
        .append_events(
            "order-1",
            &[EventData::json(id(6), "OrderClosed", &b"{}"[..])],
            ExpectedVersion::Exact(rev(4)),
        )
        .await
        .unwrap();
    let report = run().await;
    let d = difference(&report);
    assert_eq!(d.kind, DifferenceKind::MissingOnSecondary);
    assert_eq!(d.primary.as_ref().unwrap().number, rev(5));
}

#[tokio::test]
async fn empty_clusters_are_equal() {
    let pair = pair().await;
    let report = pair.verify().await;
    assert!(report.equal, "{report}");
    assert_eq!(report.streams_compared, 0);
}

#[tokio::test]
async fn a_missing_last_event_is_named() {
    let pair = pair().await;
    let events = order_events();
    pair.primary
        .append_events("order-1", &events, ExpectedVersion::NoStream)
        .await
        .unwrap();
    pair.secondary
        .append_events("order-1", &events[..4], ExpectedVersion::NoStream)
        .await
        .unwrap();
    let report = pair.verify().await;
    let d = difference(&report);
    assert_eq!(d.stream, "order-1");
    assert_eq!(d.kind, DifferenceKind::MissingOnSecondary);
    let primary = d.primary.as_ref().unwrap();
    assert_eq!(primary.number, rev(4));
    assert_eq!(primary.event_id, Some(id(5)));
    assert_eq!(d.secondary, None);
    let text = report.to_string();
    assert!(
        text.contains("order-1") && text.contains("event 4"),
        "{text}"
    );
}

#[tokio::test]
async fn an_extra_event_on_the_secondary_is_named() {
    let pair = pair().await;
    let events = order_events();
    pair.primary
        .append_events("order-1", &events[..2], ExpectedVersion::NoStream)
        .await
        .unwrap();
    pair.secondary
        .append_events("order-1", &events[..3], ExpectedVersion::NoStream)
        .await
        .unwrap();
    let report = pair.verify().await;
    let d = difference(&report);
    assert_eq!(d.kind, DifferenceKind::ExtraOnSecondary);
    let secondary = d.secondary.as_ref().unwrap();
    assert_eq!(secondary.number, rev(2));
    assert_eq!(secondary.event_id, Some(id(3)));
    assert_eq!(report.events_compared, 3);
}

#[tokio::test]
async fn a_changed_byte_in_binary_data_is_a_data_difference() {
    let pair = pair().await;
    for (client, data) in [
        (&pair.primary, &[0u8, 1, 2, 0xff][..]),
        (&pair.secondary, &[0u8, 1, 3, 0xff][..]),
    ] {
        client
            .append_binary_event(
                "blob-1",
                id(1),
                "Blob",
                Bytes::copy_from_slice(data),
                ExpectedVersion::NoStream,
            )
            .await
            .unwrap();
    }
    let report = pair.verify().await;
    let d = difference(&report);
    assert_eq!(d.stream, "blob-1");
    match &d.kind {
        DifferenceKind::Data(p) => {
            assert_eq!(p.first_differing_byte, 2);
            assert_eq!((p.primary_bytes, p.secondary_bytes), (4, 4));
            assert!(!p.both_json);
        }
        other => panic!("expected a data difference, got {other:?}"),
    }
    assert_eq!(d.primary.as_ref().unwrap().event_id, Some(id(1)));
}

#[tokio::test]
async fn different_ids_and_types_are_named() {
    let pair = pair().await;
    pair.primary
        .append_events(
            "s",
            &[EventData::json(id(1), "A", &b"{}"[..])],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    pair.secondary
        .append_events(
            "s",
            &[EventData::json(id(2), "A", &b"{}"[..])],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    let report = pair.verify().await;
    assert_eq!(difference(&report).kind, DifferenceKind::EventId);

    let pair = self::pair().await;
    for (client, event_type) in [(&pair.primary, "A"), (&pair.secondary, "B")] {
        client
            .append_events(
                "s",
                &[EventData::json(id(1), event_type, &b"{}"[..])],
                ExpectedVersion::NoStream,
            )
            .await
            .unwrap();
    }
    let report = pair.verify().await;
    assert_eq!(difference(&report).kind, DifferenceKind::EventType);
}

#[tokio::test]
async fn json_that_differs_only_in_indentation_is_equal() {
    let pair = pair().await;
    let compact = Bytes::from_static(br#"{"orderId":"1","lines":[{"sku":"a","qty":2}]}"#);
    // The primary stores the bytes unchanged (single-event form); the secondary gets them through
    // the batch form, which the server re-indents.
    pair.primary
        .append_json_event(
            "order-1",
            id(1),
            "OrderPlaced",
            compact.clone(),
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    pair.secondary
        .append_events(
            "order-1",
            &[EventData::json(id(1), "OrderPlaced", compact.clone())],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    // Precondition: the stored bytes really differ.
    let stored = pair
        .secondary
        .read_record_raw("order-1", rev(0))
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_ne!(stored, compact, "the batch form re-indents JSON");

    let report = pair.verify().await;
    assert!(report.equal, "{report}");
    assert_eq!(report.json_equivalent_events, 1);
    assert!(
        report.to_string().contains("equal as JSON values"),
        "{report}"
    );
}

#[tokio::test]
async fn binary_metadata_missing_on_the_secondary_is_a_fidelity_limit() {
    let pair = pair().await;
    // Binary (non-UTF-8) data with metadata: no HTTP form can write it, a gRPC/TCP client can;
    // the dev node's store stands in for one.
    let binary = Bytes::from_static(&[0xff, 0xfe, 0x00, 0x80]);
    pair.primary_node
        .store()
        .append(
            "blob-1",
            -1,
            vec![ProposedEvent {
                event_id: id(1),
                event_type: "Blob".into(),
                is_json: false,
                data: binary.clone(),
                metadata: Bytes::from_static(br#"{"source":"grpc"}"#),
            }],
        )
        .unwrap();
    // What the replicator can store: the data alone, exactly (octet-stream form).
    pair.secondary
        .append_binary_event(
            "blob-1",
            id(1),
            "Blob",
            binary.clone(),
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    let report = pair.verify().await;
    assert!(report.equal, "{report}");
    assert_eq!(report.fidelity_limit_events, 1);
    assert_eq!(report.fidelity_limits.len(), 1);
    let limit = &report.fidelity_limits[0];
    assert_eq!(limit.stream, "blob-1");
    assert_eq!(limit.kind, FidelityLimitKind::MetadataDropped);
    assert_eq!(limit.event.event_id, Some(id(1)));
    assert!(
        report.to_string().contains("HTTP API fidelity limit"),
        "{report}"
    );

    // Text data with metadata travels in a batch: its metadata missing is a difference.
    let pair = self::pair().await;
    pair.primary
        .append_events(
            "note-1",
            &[EventData::binary(id(1), "Note", &b"plain text"[..])
                .with_metadata(&b"source=web"[..])],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    pair.secondary
        .append_binary_event(
            "note-1",
            id(1),
            "Note",
            Bytes::from_static(b"plain text"),
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    let report = pair.verify().await;
    assert!(matches!(
        difference(&report).kind,
        DifferenceKind::Metadata(_)
    ));

    // Different (not missing) metadata is a difference.
    let pair = self::pair().await;
    for (client, metadata) in [
        (&pair.primary, "source=web"),
        (&pair.secondary, "source=api"),
    ] {
        client
            .append_events(
                "note-1",
                &[EventData::binary(id(1), "Note", &b"plain text"[..])
                    .with_metadata(metadata.as_bytes().to_vec())],
                ExpectedVersion::NoStream,
            )
            .await
            .unwrap();
    }
    let report = pair.verify().await;
    assert!(matches!(
        difference(&report).kind,
        DifferenceKind::Metadata(_)
    ));
}

#[tokio::test]
async fn a_stream_soft_deleted_on_the_primary_only_is_a_state_difference() {
    let pair = pair().await;
    for client in pair.both() {
        seed(client).await;
    }
    pair.primary
        .delete_stream("blob-1", ExpectedVersion::Any, DeleteMode::Soft)
        .await
        .unwrap();
    let report = pair.verify().await;
    let d = difference(&report);
    assert_eq!(d.stream, "blob-1");
    assert_eq!(
        d.kind,
        DifferenceKind::State {
            primary: StreamState::NotFound,
            secondary: StreamState::Exists,
        }
    );

    // Soft-deleted on both sides: equal again.
    pair.secondary
        .delete_stream("blob-1", ExpectedVersion::Any, DeleteMode::Soft)
        .await
        .unwrap();
    let report = pair.verify().await;
    assert!(report.equal, "{report}");
}

#[tokio::test]
async fn different_stream_metadata_is_a_difference() {
    let pair = pair().await;
    for client in pair.both() {
        seed(client).await;
    }
    pair.secondary
        .write_stream_metadata(
            "order-1",
            id(99),
            Bytes::from_static(br#"{"$maxCount":5}"#),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let report = pair.verify().await;
    let d = difference(&report);
    assert_eq!(d.stream, "order-1");
    match &d.kind {
        DifferenceKind::StreamMetadata { primary, secondary } => {
            assert_eq!(primary.as_ref().unwrap()["owner"], "ops");
            assert_eq!(secondary.as_ref().unwrap()["$maxCount"], 5);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_extra_stream_on_the_secondary_is_found() {
    let pair = pair().await;
    for client in pair.both() {
        seed(client).await;
    }
    pair.secondary
        .append_events(
            "stray-1",
            &[EventData::json(id(50), "Stray", &b"{}"[..])],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    let report = pair.verify().await;
    let d = difference(&report);
    assert_eq!(d.stream, "stray-1");
    assert_eq!(
        d.kind,
        DifferenceKind::ExtraStream {
            secondary: StreamState::Exists
        }
    );
    assert!(report.to_string().contains("stray-1"), "{report}");
}

#[tokio::test]
async fn excluded_streams_are_not_compared_but_may_not_exist_on_the_secondary() {
    let pair = pair().await;
    for client in pair.both() {
        seed(client).await;
    }
    pair.primary
        .append_events(
            "tmp-1",
            &[EventData::json(id(60), "Scratch", &b"{}"[..])],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    let filter = ReplicationConfig {
        exclude: vec!["tmp-*".into()],
        ..ReplicationConfig::default()
    };
    let report = pair.verify_filtered(&filter).await;
    assert!(report.equal, "{report}");

    pair.secondary
        .append_events(
            "tmp-1",
            &[EventData::json(id(60), "Scratch", &b"{}"[..])],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    let report = pair.verify_filtered(&filter).await;
    assert!(matches!(
        difference(&report).kind,
        DifferenceKind::ExtraStream { .. }
    ));
}

#[tokio::test]
async fn offset_streams_compare_numbers_and_truncate_before_modulo_the_offset() {
    let pair = pair().await;
    // The primary's stream is visible from event 2 on ($tb = 2).
    let events: Vec<EventData> = (0..4)
        .map(|n| EventData::json(id(n), "E", format!(r#"{{"n":{n}}}"#).into_bytes()))
        .collect();
    pair.primary
        .append_events("acc-1", &events, ExpectedVersion::NoStream)
        .await
        .unwrap();
    pair.primary
        .write_stream_metadata(
            "acc-1",
            id(20),
            Bytes::from_static(br#"{"$tb":2}"#),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    // The secondary holds events 2.. as 0.. with the offset recorded first.
    let mut offsets = StreamOffsets::default();
    offsets
        .record(&pair.secondary, "acc-1", rev(2))
        .await
        .unwrap();
    pair.secondary
        .append_events("acc-1", &events[2..], ExpectedVersion::NoStream)
        .await
        .unwrap();
    pair.secondary
        .write_stream_metadata(
            "acc-1",
            id(20),
            Bytes::from_static(br#"{"$tb":0}"#),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let report = pair.verify().await;
    assert!(report.equal, "{report}");
    assert_eq!(report.events_compared, 2);

    // One more event on the primary only: named with both numbers' sides.
    pair.primary
        .append_events(
            "acc-1",
            &[EventData::json(id(4), "E", &br#"{"n":4}"#[..])],
            ExpectedVersion::Exact(rev(3)),
        )
        .await
        .unwrap();
    let report = pair.verify().await;
    let d = difference(&report);
    assert_eq!(d.kind, DifferenceKind::MissingOnSecondary);
    assert_eq!(d.primary.as_ref().unwrap().number, rev(4));
}

#[tokio::test]
async fn an_unreachable_side_is_named_after_bounded_retries() {
    let primary_node = node().await;
    let primary = admin(&primary_node);
    let secondary = client_for(&closed_port_url().await);
    let options = VerifyOptions {
        retry: RetryPolicy {
            attempts: 3,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        },
        ..VerifyOptions::default()
    };
    let err = verify::verify_with(
        &primary,
        &secondary,
        &ReplicationConfig::default(),
        &options,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Unreachable {
                side: Side::Secondary,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(err.to_string().contains("secondary"), "{err}");
    assert!(!err.to_string().contains(PASSWORD));
}

// ---------------------------------------------------------------------------------------------
// status

fn config(primary: &str, secondary: &str, checkpoint: &std::path::Path) -> Config {
    let text = format!(
        r#"
        [primary]
        url = "{primary}"
        username = "admin"
        password = "{PASSWORD}"

        [secondary]
        url = "{secondary}"
        username = "admin"
        password = "{PASSWORD}"

        [checkpoint]
        path = "{}"
        "#,
        checkpoint.display()
    );
    Config::from_parts(std::path::Path::new("test.toml"), &text, std::iter::empty())
        .expect("valid config")
}

/// Reads `$all` forward from `from` to its end; returns the end position.
async fn end_of_all(client: &Client, mut from: Position) -> Position {
    loop {
        let page = client
            .read_all_forward(from, PageSize::MAX, &ReadOptions::embed(Embed::None))
            .await
            .unwrap();
        match page.next {
            Some(next) if !page.is_end => from = next,
            Some(next) => return next,
            None => return from,
        }
    }
}

async fn append_n(client: &Client, stream: &str, first: u64, n: u64) {
    let events: Vec<EventData> = (first..first + n)
        .map(|k| {
            EventData::json(
                id(1000 + u128::from(k)),
                "Tick",
                format!(r#"{{"k":{k}}}"#).into_bytes(),
            )
        })
        .collect();
    let expected = match first {
        0 => ExpectedVersion::NoStream,
        k => ExpectedVersion::Exact(rev(k - 1)),
    };
    client
        .append_events(stream, &events, expected)
        .await
        .unwrap();
}

#[tokio::test]
async fn status_reports_lag_in_events_bytes_and_seconds() {
    let (primary_node, secondary_node) = (node().await, node().await);
    let (primary, secondary) = (admin(&primary_node), admin(&secondary_node));
    append_n(&primary, "tick-1", 0, 5).await;
    let checkpoint_at = end_of_all(&primary, Position::START).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("standby.checkpoint");
    let (mut store, _) = CheckpointStore::open(&path).unwrap();
    store
        .store(&Checkpoint {
            position: checkpoint_at,
            primary: PrimaryId("primary-db".into()),
            epoch: Epoch::new(3),
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    append_n(&primary, "tick-1", 5, 7).await;
    let head = end_of_all(&primary, checkpoint_at).await;

    let config = config(&primary_node.url(), &secondary_node.url(), &path);
    let report = status::status(&config, &primary, &secondary).await;

    match &report.checkpoint {
        CheckpointStatus::Present {
            position,
            primary_id,
            epoch,
            ..
        } => {
            assert_eq!(*position, checkpoint_at);
            assert_eq!(primary_id, "primary-db");
            assert_eq!(*epoch, Epoch::new(3));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        report.primary.head.map(Position::commit),
        Some(head.commit())
    );
    assert!(report.primary.newest_event_at.is_some());
    assert_eq!(report.primary.error, None);
    let events = report.lag.events.expect("event lag");
    assert_eq!(events.records, 7, "{report}");
    assert_eq!(events.replicated, 7);
    assert!(!events.at_least);
    assert_eq!(
        report.lag.bytes,
        Some(head.commit() - checkpoint_at.commit())
    );
    let seconds = report.lag.seconds.expect("lag in seconds");
    assert!((0.0..60.0).contains(&seconds), "{seconds}");
    assert_eq!(report.secondary.role, ROLE_NO_CONTROL_RECORD);
    assert_eq!(report.secondary.reachable, Some(true));

    let text = report.to_string();
    assert!(text.contains("7 records"), "{text}");
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"records\":7"), "{json}");
    for shown in [&text, &json] {
        assert!(!shown.contains(PASSWORD), "{shown}");
    }

    // Caught up: zero lag everywhere.
    store
        .store(&Checkpoint {
            position: head,
            primary: PrimaryId("primary-db".into()),
            epoch: Epoch::new(3),
        })
        .unwrap();
    let report = status::status(&config, &primary, &secondary).await;
    assert_eq!(report.lag.events.unwrap().records, 0);
    assert_eq!(report.lag.bytes, Some(0));
    assert_eq!(report.lag.seconds, Some(0.0));
}

#[tokio::test]
async fn status_reports_a_down_secondary_and_a_missing_checkpoint() {
    let primary_node = node().await;
    let primary = admin(&primary_node);
    // The node's own records (accounts, epoch information) are part of the lag too.
    let own = all_records(&primary).await;
    append_n(&primary, "tick-1", 0, 3).await;
    let down = closed_port_url().await;
    let secondary = client_for(&down);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("standby.checkpoint");
    let config = config(&primary_node.url(), &down, &path);

    let report = status::status(&config, &primary, &secondary).await;
    assert!(matches!(
        report.checkpoint,
        CheckpointStatus::Missing { .. }
    ));
    assert_eq!(report.lag.from, Some(Position::START));
    assert_eq!(report.lag.events.unwrap().records, own + 3);
    assert_eq!(report.secondary.reachable, Some(false));
    assert_eq!(report.secondary.role, "unknown");
    let error = report.secondary.error.as_deref().unwrap();
    assert!(error.contains("cannot connect"), "{error}");
    let text = report.to_string();
    assert!(text.contains("UNREACHABLE"), "{text}");
    assert!(!text.contains(PASSWORD));
    assert!(!serde_json::to_string(&report).unwrap().contains(PASSWORD));

    // The primary down too: still a report.
    let primary_down = client_for(&closed_port_url().await);
    let report = status::status(&config, &primary_down, &secondary).await;
    assert!(report.primary.error.is_some());
    assert_eq!(report.primary.head, None);
    assert_eq!(report.lag.events, None);
}

/// An admin client of `node` over gRPC.
fn grpc_admin(node: &Node) -> Client {
    Client::connect(
        ClientConfig::for_address(&node.grpc_url())
            .unwrap()
            .with_credentials(Credentials::new("admin", PASSWORD)),
    )
    .unwrap()
}

#[tokio::test]
async fn over_grpc_verify_compares_the_stored_bytes() {
    let pair = pair().await;
    let (primary, secondary) = (
        grpc_admin(&pair.primary_node),
        grpc_admin(&pair._secondary_node),
    );
    // Binary data that is not UTF-8 with binary metadata, JSON with irregular spacing, empty
    // data: what only gRPC carries exactly.
    let events = vec![
        EventData::binary(id(1), "Blob", &[0xff, 0xfe, 0x00, 0x80][..])
            .with_metadata(&[0xc3, 0x28, 0x01][..]),
        EventData::json(id(2), "Spaced", &br#"{ "a" :1,   "b":[ 1 ,2] }"#[..])
            .with_metadata(&br#"{"k" : "v"}"#[..]),
        EventData::binary(id(3), "Empty", Bytes::new()),
    ];
    for client in [&primary, &secondary] {
        client
            .append_events("exact-1", &events, ExpectedVersion::NoStream)
            .await
            .unwrap();
    }
    let report = verify::verify(&primary, &secondary, &ReplicationConfig::default(), |_| {})
        .await
        .unwrap();
    assert!(report.equal, "{report}");
    assert_eq!(report.events_compared, 3, "{report}");
    assert_eq!(report.json_equivalent_events, 0, "{report}");
    assert_eq!(report.fidelity_limit_events, 0, "{report}");

    // The same JSON value with other spacing (what AtomPub stores): counted, on both wires.
    primary
        .append_events(
            "exact-2",
            &[EventData::json(id(4), "J", &br#"{"a": 1}"#[..])],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    secondary
        .append_events(
            "exact-2",
            &[EventData::json(id(4), "J", &b"{\n  \"a\": 1\n}"[..])],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    let report = verify::verify(&primary, &secondary, &ReplicationConfig::default(), |_| {})
        .await
        .unwrap();
    assert!(report.equal, "{report}");
    assert_eq!(report.json_equivalent_events, 1, "{report}");
    let http = pair.verify().await;
    assert!(http.equal, "{http}");
    assert_eq!(http.json_equivalent_events, 1, "{http}");
}
