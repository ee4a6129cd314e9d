//! Every `esdb::http::Client` call against an in-process dev node (`devnode::Node` on `127.0.0.1:0`),
//! for every profile (`v5`, `v20`, `v21.10` with the `ES-*` names, `v25` with the `Kurrent-*` names).
//! v20–v25 nodes run in secure mode (TLS with the development CA), as the real servers do when
//! they authenticate; v5 serves plain HTTP.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use devnode::{Node, NodeConfig, Profile};
use uuid::Uuid;

use standby::esdb::http::Client;
use standby::esdb::metadata::{Acl, Roles};
use standby::esdb::{
    AllFrom, Credentials, DeleteMode, DeleteOutcome, Embed, Entry, Error, EventData, HeaderFamily,
    Liveness, Lookup, PageSize, ReadOptions, RecordedEvent, StreamFrom, StreamMetadata,
    SystemSettings,
};
use standby::position::{CurrentVersion, ExpectedVersion, Position, StreamRevision};

async fn node(profile: Profile) -> Node {
    Node::start(common::secure(NodeConfig::memory().profile(profile)))
        .await
        .expect("dev node starts")
}

fn client_with(node: &Node, credentials: Option<Credentials>, family: HeaderFamily) -> Client {
    let mut config = common::client_config(node);
    config.credentials = credentials;
    config.header_family = family;
    Client::new(config).unwrap()
}

fn admin(node: &Node, family: HeaderFamily) -> Client {
    client_with(node, Some(Credentials::new("admin", "changeit")), family)
}

fn family(profile: Profile) -> HeaderFamily {
    match profile {
        Profile::V25 => HeaderFamily::Kurrent,
        _ => HeaderFamily::Es,
    }
}

const PROFILES: [Profile; 4] = [Profile::V5, Profile::V20, Profile::V21_10, Profile::V25];

fn rev(n: u64) -> StreamRevision {
    StreamRevision::new(n).unwrap()
}

fn body() -> ReadOptions {
    ReadOptions::embed(Embed::Body)
}

fn events_of(entries: &[Entry]) -> Vec<&RecordedEvent> {
    entries
        .iter()
        .map(|e| e.as_event().expect("embed=body gives rich entries"))
        .collect()
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Reads `$all` forward from the start to the end, in pages of 3.
async fn read_all_to_end(client: &Client) -> (Vec<RecordedEvent>, Position) {
    let mut from = Position::START;
    let mut seen = Vec::new();
    loop {
        let page = client
            .read_all_forward(from, PageSize::new(3).unwrap(), &body())
            .await
            .unwrap();
        seen.extend(page.entries.iter().filter_map(|e| e.as_event().cloned()));
        match page.next {
            Some(next) if !page.is_end => {
                assert!(next > from, "pages advance: {from} -> {next}");
                from = next;
            }
            Some(next) => return (seen, next),
            None => return (seen, from),
        }
    }
}

#[tokio::test]
async fn append_and_read_back() {
    for profile in PROFILES {
        let node = node(profile).await;
        let client = admin(&node, family(profile));
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let events = vec![
            EventData::json(ids[0], "OrderPlaced", &br#"{"orderId":"1","total":10}"#[..])
                .with_metadata(&br#"{"source":"web"}"#[..]),
            EventData::binary(ids[1], "Note", &b"plain text"[..]),
            EventData::json(ids[2], "OrderShipped", &br#"[1,2]"#[..]),
        ];
        let appended = client
            .append_events("order-1", &events, ExpectedVersion::NoStream)
            .await
            .unwrap();
        assert_eq!(appended.first, Some(StreamRevision::START), "{profile}");

        // Idempotent replay with the exact expected version: same answer, nothing written.
        let replay = client
            .append_events("order-1", &events, ExpectedVersion::NoStream)
            .await
            .unwrap();
        assert_eq!(replay.first, Some(StreamRevision::START), "{profile}");

        let page = client
            .read_stream_forward(
                "order-1",
                StreamRevision::START,
                PageSize::new(10).unwrap(),
                &body(),
            )
            .await
            .unwrap()
            .found()
            .expect("stream exists");
        assert!(page.is_end);
        assert_eq!(page.next, Some(rev(3)), "{profile}");
        let read = events_of(&page.entries);
        assert_eq!(read.len(), 3, "{profile}: replay wrote nothing");
        assert_eq!(read.iter().map(|e| e.event_id).collect::<Vec<_>>(), ids);
        assert_eq!(read[0].event_type, "OrderPlaced");
        assert!(read[0].is_json);
        // JSON is re-indented by the server: compare values.
        assert_eq!(
            json(read[0].data.as_deref().unwrap()),
            json(br#"{"orderId":"1","total":10}"#)
        );
        assert_eq!(
            json(read[0].metadata.as_deref().unwrap()),
            json(br#"{"source":"web"}"#)
        );
        assert!(!read[1].is_json);
        assert_eq!(read[1].data, None, "non-JSON data is not in the feed");
        assert_eq!(
            client
                .read_event_raw("order-1", StreamFrom::Revision(rev(1)))
                .await
                .unwrap(),
            Lookup::Found(Bytes::from_static(b"plain text"))
        );

        let backward = client
            .read_stream_backward(
                "order-1",
                StreamFrom::Head,
                PageSize::new(2).unwrap(),
                &body(),
            )
            .await
            .unwrap()
            .found()
            .unwrap();
        assert_eq!(
            backward
                .entries
                .iter()
                .map(|e| e.revision().get())
                .collect::<Vec<_>>(),
            [2, 1]
        );
        assert_eq!(backward.next, Some(StreamRevision::START));
        assert!(backward.head_of_stream);

        let entry = client
            .read_event_entry(
                "order-1",
                StreamFrom::Revision(StreamRevision::START),
                Embed::None,
            )
            .await
            .unwrap()
            .found()
            .unwrap();
        assert_eq!(entry.revision(), StreamRevision::START);
        assert_eq!(entry.stream(), "order-1");

        assert_eq!(
            client
                .read_stream_forward(
                    "never-written",
                    StreamRevision::START,
                    PageSize::DEFAULT,
                    &body()
                )
                .await
                .unwrap(),
            Lookup::NotFound
        );
        assert_eq!(
            client
                .read_event_raw("order-1", StreamFrom::Revision(rev(99)))
                .await
                .unwrap(),
            Lookup::NotFound
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn single_event_forms_store_bytes_unchanged() {
    for profile in PROFILES {
        let node = node(profile).await;
        let client = admin(&node, family(profile));
        let json_body = Bytes::from_static(b"{\"a\" :  1}");
        client
            .append_json_event(
                "single",
                Uuid::new_v4(),
                "J",
                json_body.clone(),
                ExpectedVersion::NoStream,
            )
            .await
            .unwrap();
        let binary = Bytes::from_static(&[0, 159, 146, 150, 255]);
        let appended = client
            .append_binary_event(
                "single",
                Uuid::new_v4(),
                "B",
                binary.clone(),
                ExpectedVersion::Exact(StreamRevision::START),
            )
            .await
            .unwrap();
        assert_eq!(appended.first, Some(rev(1)));
        assert_eq!(
            client
                .read_event_raw("single", StreamFrom::Revision(StreamRevision::START))
                .await
                .unwrap(),
            Lookup::Found(json_body)
        );
        assert_eq!(
            client
                .read_event_raw("single", StreamFrom::Head)
                .await
                .unwrap(),
            Lookup::Found(binary)
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn wrong_expected_version_is_typed() {
    for profile in PROFILES {
        let node = node(profile).await;
        let client = admin(&node, family(profile));
        client
            .append_events(
                "wev",
                &[EventData::json(Uuid::new_v4(), "t", &b"{}"[..])],
                ExpectedVersion::NoStream,
            )
            .await
            .unwrap();
        let err = client
            .append_events(
                "wev",
                &[EventData::json(Uuid::new_v4(), "t", &b"{}"[..])],
                ExpectedVersion::Exact(rev(5)),
            )
            .await
            .unwrap_err();
        match &err {
            Error::WrongExpectedVersion {
                stream,
                expected,
                current,
            } => {
                assert_eq!(stream, "wev");
                assert_eq!(*expected, ExpectedVersion::Exact(rev(5)));
                assert_eq!(
                    *current,
                    Some(CurrentVersion::Revision(StreamRevision::START)),
                    "{profile}"
                );
            }
            other => panic!("{profile}: {other:?}"),
        }
        assert!(!err.is_transient());
        node.stop().await;
    }
}

#[tokio::test]
async fn all_feed_pages_and_long_poll() {
    for profile in PROFILES {
        let node = node(profile).await;
        let client = admin(&node, family(profile));
        for n in 0..4u64 {
            client
                .append_events(
                    &format!("s-{}", n % 2),
                    &[EventData::json(
                        Uuid::new_v4(),
                        "E",
                        format!("{{\"n\":{n}}}").into_bytes(),
                    )],
                    ExpectedVersion::Any,
                )
                .await
                .unwrap();
        }
        let (seen, end) = read_all_to_end(&client).await;
        let ours: Vec<_> = seen.iter().filter(|e| e.stream.starts_with("s-")).collect();
        assert_eq!(ours.len(), 4, "{profile}");
        let numbers: Vec<_> = ours
            .iter()
            .map(|e| json(e.data.as_deref().unwrap())["n"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, [0, 1, 2, 3], "{profile}: log order");

        // Backward from head sees the newest first.
        let back = client
            .read_all_backward(AllFrom::Head, PageSize::new(2).unwrap(), &body())
            .await
            .unwrap();
        let newest = back.entries[0].as_event().unwrap();
        assert_eq!(json(newest.data.as_deref().unwrap())["n"], 3);

        // At the end: an empty page; a long poll returns once something is written.
        let empty = client
            .read_all_forward(end, PageSize::new(3).unwrap(), &body())
            .await
            .unwrap();
        assert!(empty.entries.is_empty() && empty.is_end);
        let writer = client.clone();
        let write = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            writer
                .append_events(
                    "late",
                    &[EventData::json(Uuid::new_v4(), "E", &b"{}"[..])],
                    ExpectedVersion::Any,
                )
                .await
                .unwrap();
        });
        let started = Instant::now();
        let options = ReadOptions {
            embed: Embed::Body,
            long_poll: Some(Duration::from_secs(5)),
            resolve_link_tos: None,
        };
        let polled = client
            .read_all_forward(end, PageSize::new(3).unwrap(), &options)
            .await
            .unwrap();
        write.await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{profile}: woke up on the write"
        );
        assert!(
            polled.entries.iter().any(|e| e.stream() == "late"),
            "{profile}: {:?}",
            polled.entries
        );
        node.stop().await;
    }
}

/// The reader requests the next `$all` page from the links at the top of a body before decoding
/// it: on every page the dev node serves, that position is the one the decoder continues from.
#[tokio::test]
async fn the_next_page_is_known_before_a_page_is_decoded() {
    for profile in PROFILES {
        let node = node(profile).await;
        let client = admin(&node, family(profile));
        for n in 0..7u64 {
            client
                .append_events(
                    &format!("s-{}", n % 3),
                    &[EventData::json(Uuid::new_v4(), "E", &b"{}"[..])],
                    ExpectedVersion::Any,
                )
                .await
                .unwrap();
        }
        let (mut from, mut pages) = (Position::START, 0);
        loop {
            let fetched = client
                .fetch_all_forward(from, PageSize::new(3).unwrap(), &body())
                .await
                .unwrap();
            let hint = fetched.continuation_hint();
            let page = fetched.decode().unwrap();
            assert_eq!(hint, page.next, "{profile}: page {pages} from {from}");
            pages += 1;
            match page.next {
                Some(next) => from = next,
                None => break,
            }
        }
        assert!(pages >= 3, "{profile}: {pages} pages");
        node.stop().await;
    }
}

#[tokio::test]
async fn metadata_deletes_and_settings() {
    for profile in PROFILES {
        let node = node(profile).await;
        let client = admin(&node, family(profile));
        assert_eq!(
            client.read_stream_metadata("meta").await.unwrap(),
            Lookup::NotFound
        );
        client
            .append_events(
                "meta",
                &[EventData::json(Uuid::new_v4(), "t", &b"{}"[..])],
                ExpectedVersion::Any,
            )
            .await
            .unwrap();
        let none = client
            .read_stream_metadata("meta")
            .await
            .unwrap()
            .found()
            .unwrap();
        assert!(none.is_empty(), "{profile}: {none:?}");
        client
            .write_stream_metadata(
                "meta",
                Uuid::new_v4(),
                Bytes::from_static(br#"{"$maxCount":5,"custom":"x"}"#),
                ExpectedVersion::Any,
            )
            .await
            .unwrap();
        let meta = client
            .read_stream_metadata("meta")
            .await
            .unwrap()
            .found()
            .unwrap();
        assert_eq!(meta.max_count(), Some(5));
        assert_eq!(meta.as_json()["custom"], "x");

        // Soft delete: the stream reads as absent, its metadata says so.
        assert_eq!(
            client
                .delete_stream("meta", ExpectedVersion::Any, DeleteMode::Soft)
                .await
                .unwrap(),
            DeleteOutcome::Deleted
        );
        assert_eq!(
            client
                .read_stream_forward("meta", StreamRevision::START, PageSize::DEFAULT, &body())
                .await
                .unwrap(),
            Lookup::NotFound
        );
        let meta: StreamMetadata = client
            .read_stream_metadata("meta")
            .await
            .unwrap()
            .found()
            .unwrap();
        assert!(meta.is_soft_deleted(), "{profile}: {meta:?}");

        // Hard delete: 410 everywhere, a repeat is "already done".
        client
            .append_events(
                "gone",
                &[EventData::json(Uuid::new_v4(), "t", &b"{}"[..])],
                ExpectedVersion::Any,
            )
            .await
            .unwrap();
        assert_eq!(
            client
                .delete_stream("gone", ExpectedVersion::Any, DeleteMode::Hard)
                .await
                .unwrap(),
            DeleteOutcome::Deleted
        );
        assert_eq!(
            client
                .delete_stream("gone", ExpectedVersion::Any, DeleteMode::Hard)
                .await
                .unwrap(),
            DeleteOutcome::AlreadyHardDeleted
        );
        assert_eq!(
            client
                .read_stream_forward("gone", StreamRevision::START, PageSize::DEFAULT, &body())
                .await
                .unwrap(),
            Lookup::Deleted
        );
        let err = client
            .append_events(
                "gone",
                &[EventData::json(Uuid::new_v4(), "t", &b"{}"[..])],
                ExpectedVersion::Any,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::StreamDeleted { .. }),
            "{profile}: {err:?}"
        );

        // $settings round trip.
        assert_eq!(client.read_settings().await.unwrap(), None);
        let settings = SystemSettings::from_acls(
            Some(Acl {
                read: Some(Roles::Many(vec!["$admins".into(), "ops".into()])),
                ..Acl::default()
            }),
            None,
        );
        let written = client
            .write_settings(&settings, Uuid::new_v4(), None, ExpectedVersion::Any)
            .await
            .unwrap();
        assert_eq!(written.first, Some(StreamRevision::START));
        assert_eq!(client.read_settings().await.unwrap(), Some(settings));
        node.stop().await;
    }
}

#[tokio::test]
async fn node_endpoints() {
    for profile in PROFILES {
        let node = node(profile).await;
        let client = admin(&node, family(profile));
        let info = client.info().await.unwrap();
        assert!(info.atom_pub_enabled(), "{profile}");
        assert!(info.state.is_some());
        let gossip = client.gossip().await.unwrap();
        assert!(!gossip.members.is_empty(), "{profile}");
        let live = client.health_live().await.unwrap();
        assert!(
            matches!(live, Liveness::Live | Liveness::Unsupported),
            "{profile}: {live:?}"
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn authentication_failures_are_typed() {
    for profile in PROFILES {
        let node = node(profile).await;
        let wrong = client_with(
            &node,
            Some(Credentials::new("admin", "wrong-password")),
            family(profile),
        );
        let err = wrong
            .read_all_forward(Position::START, PageSize::DEFAULT, &body())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Unauthorized { user: Some(u), .. } if u == "admin"),
            "{profile}: {err:?}"
        );
        assert!(!err.to_string().contains("wrong-password"));
        assert!(!err.is_transient());

        // ops is not in $admins: $all is admin-only.
        let ops = client_with(
            &node,
            Some(Credentials::new("ops", "changeit")),
            family(profile),
        );
        let err = ops
            .read_all_forward(Position::START, PageSize::DEFAULT, &body())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Unauthorized { .. }),
            "{profile}: {err:?}"
        );

        // Anonymous: refused outright by 5.0.2+ and 23.6+; 20.6–23.5 let it reach the ACL check,
        // where user streams are open to $all but $all itself is admin-only.
        let anonymous = client_with(&node, None, family(profile));
        let write = anonymous
            .append_events(
                "anon",
                &[EventData::json(Uuid::new_v4(), "t", &b"{}"[..])],
                ExpectedVersion::Any,
            )
            .await;
        match profile {
            Profile::V5 | Profile::V25 => assert!(
                matches!(&write, Err(Error::Unauthorized { user: None, .. })),
                "{profile}: {write:?}"
            ),
            _ => assert!(write.is_ok(), "{profile}: {write:?}"),
        }
        let err = anonymous
            .read_all_forward(Position::START, PageSize::DEFAULT, &body())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Unauthorized { user: None, .. }),
            "{profile}: {err:?}"
        );
        assert!(err.to_string().contains("no credentials"));
        node.stop().await;
    }
}
