//! Contract tests of the gRPC wire: the same scenarios through OUR client
//! (`standby::esdb::grpc`), through the official `kurrentdb` crate (an independent client) and,
//! where they overlap, through the AtomPub HTTP face, all against an in-process dev node that
//! answers both on one port.

mod common;

use std::time::Duration;

use bytes::Bytes;
use devnode::{Node, NodeConfig, Profile};
use kurrentdb::{
    AppendToStreamOptions, CurrentRevision, DeleteStreamOptions, ReadAllOptions, ReadStreamOptions,
    StreamPosition, StreamState, SubscribeToAllOptions, TombstoneStreamOptions,
};
use standby::esdb::grpc::{self, ReadFrom, SubscriptionMessage};
use standby::esdb::{Credentials, Direction, Error, EventData, Lookup, NewUser, Password};
use standby::position::{CurrentVersion, ExpectedVersion, StreamRevision};
use uuid::Uuid;

/// Bound on every wait for a subscription message.
const WAIT: Duration = Duration::from_secs(20);

async fn insecure_node() -> Node {
    Node::start(NodeConfig::memory().profile(Profile::V25).insecure())
        .await
        .expect("dev node starts")
}

async fn tls_node() -> Node {
    Node::start(
        NodeConfig::memory()
            .profile(Profile::V25)
            .dev_tls(common::dev_certs())
            .unwrap(),
    )
    .await
    .expect("dev node starts")
}

/// The connection string both clients use for `node`, with the admin's credentials.
fn connection_string(node: &Node) -> String {
    let port = node.addr().port();
    if node.is_tls() {
        format!(
            "kurrentdb://admin:changeit@localhost:{port}?tlsCAFile={}",
            common::dev_certs().ca_file().display()
        )
    } else {
        format!("kurrentdb://admin:changeit@127.0.0.1:{port}?tls=false")
    }
}

fn ours(node: &Node) -> grpc::Client {
    grpc::Client::from_connection_string(&connection_string(node), None).unwrap()
}

fn theirs(node: &Node) -> kurrentdb::Client {
    kurrentdb::Client::new(connection_string(node).parse().unwrap()).unwrap()
}

fn http(node: &Node) -> standby::esdb::Client {
    let config =
        common::client_config(node).with_credentials(Credentials::new("admin", "changeit"));
    standby::esdb::Client::connect(config).unwrap()
}

fn new_stream() -> String {
    format!("contract-{}", Uuid::new_v4().simple())
}

/// Everything `kurrentdb` reads from `stream`, forwards.
async fn their_events(
    client: &kurrentdb::Client,
    stream: &str,
) -> kurrentdb::Result<Vec<kurrentdb::RecordedEvent>> {
    let options = ReadStreamOptions::default()
        .forwards()
        .position(StreamPosition::Start)
        .max_count(1000);
    let mut read = client.read_stream(stream, &options).await?;
    let mut out = Vec::new();
    while let Some(event) = read.next().await? {
        out.push(event.event.expect("a read without links carries the event"));
    }
    Ok(out)
}

async fn our_events(client: &grpc::Client, stream: &str) -> Vec<grpc::ReadEvent> {
    client
        .read_stream(stream, ReadFrom::Start, Direction::Forward, 1000)
        .await
        .unwrap()
        .found()
        .expect("the stream exists")
}

/// A binary event whose data is not UTF-8 and whose metadata is binary, and a JSON event with
/// irregular spacing: the two shapes the AtomPub API cannot carry exactly.
fn awkward_events() -> Vec<EventData> {
    vec![
        EventData::binary(Uuid::new_v4(), "Blob", vec![0xff, 0xfe, 0x00, 0x80, b'x'])
            .with_metadata(vec![0x00, 0xc3, 0x28, 0xff]),
        EventData::json(
            Uuid::new_v4(),
            "Spaced",
            &b"{ \"a\" :1,\n\t\"b\":[ 2 ,3 ] }"[..],
        )
        .with_metadata(&b"{\"trace\" : \"x\"}"[..]),
    ]
}

#[tokio::test]
async fn awkward_events_round_trip_byte_for_byte_through_both_clients() {
    let node = insecure_node().await;
    let (ours, theirs) = (ours(&node), theirs(&node));
    let stream = new_stream();
    let events = awkward_events();
    let written = ours
        .append(&stream, ExpectedVersion::NoStream, &events)
        .await
        .unwrap();
    assert_eq!(
        written.current,
        CurrentVersion::Revision(StreamRevision::new(1).unwrap())
    );
    assert!(written.position.is_some());

    let read = our_events(&ours, &stream).await;
    assert_eq!(read.len(), 2);
    for (sent, got) in events.iter().zip(&read) {
        assert_eq!(got.event.event_id, sent.event_id);
        assert_eq!(got.event.event_type, sent.event_type);
        assert_eq!(got.event.is_json, sent.is_json);
        assert_eq!(got.data(), &sent.data);
        assert_eq!(got.metadata(), &sent.metadata);
        assert!(got.created_ticks.is_some());
    }
    let their_read = their_events(&theirs, &stream).await.unwrap();
    for (sent, got) in events.iter().zip(&their_read) {
        assert_eq!(got.id, sent.event_id);
        assert_eq!(got.event_type, sent.event_type);
        assert_eq!(got.is_json, sent.is_json);
        assert_eq!(got.data, sent.data);
        assert_eq!(got.custom_metadata, sent.metadata);
    }

    // The same events written by the official client: both clients read the same bytes back.
    let copy = new_stream();
    let theirs_events: Vec<kurrentdb::EventData> = events
        .iter()
        .map(|e| {
            let data = if e.is_json {
                let value: serde_json::Value = serde_json::from_slice(&e.data).unwrap();
                kurrentdb::EventData::json(&e.event_type, &value).unwrap()
            } else {
                kurrentdb::EventData::binary(&e.event_type, e.data.clone())
            };
            data.id(e.event_id).metadata(e.metadata.clone())
        })
        .collect();
    theirs
        .append_to_stream(
            copy.as_str(),
            &AppendToStreamOptions::default(),
            theirs_events,
        )
        .await
        .unwrap();
    let ours_copy = our_events(&ours, &copy).await;
    let theirs_copy = their_events(&theirs, &copy).await.unwrap();
    assert_eq!(ours_copy.len(), 2);
    for (a, b) in ours_copy.iter().zip(&theirs_copy) {
        assert_eq!(a.event.event_id, b.id);
        assert_eq!(
            (a.data(), a.metadata(), a.event.is_json),
            (&b.data, &b.custom_metadata, b.is_json)
        );
    }
    assert_eq!(
        ours_copy[0].data(),
        &events[0].data,
        "binary data is carried as is"
    );
}

#[tokio::test]
async fn batch_append_writes_exact_ids_and_bytes_and_both_faces_agree() {
    let node = insecure_node().await;
    let (ours, theirs) = (ours(&node), theirs(&node));
    let stream = new_stream();
    let mut events = awkward_events();
    events.extend((0..50).map(|i| EventData::json(Uuid::new_v4(), "N", format!("{{\"i\":{i}}}"))));
    let written = ours
        .batch_append(&stream, ExpectedVersion::NoStream, &events)
        .await
        .unwrap();
    assert_eq!(
        written.current,
        CurrentVersion::Revision(StreamRevision::new(51).unwrap())
    );
    let their_read = their_events(&theirs, &stream).await.unwrap();
    let ids: Vec<Uuid> = their_read.iter().map(|e| e.id).collect();
    assert_eq!(ids, events.iter().map(|e| e.event_id).collect::<Vec<_>>());
    assert_eq!(their_read[0].custom_metadata, events[0].metadata);

    // The HTTP face sees the same events at the same revisions.
    let page = http(&node)
        .read_stream_forward(
            &stream,
            StreamRevision::START,
            standby::esdb::PageSize::new(100).unwrap(),
            &standby::esdb::ReadOptions::embed(standby::esdb::Embed::Rich),
        )
        .await
        .unwrap()
        .found()
        .unwrap();
    let http_ids: Vec<(Uuid, u64)> = page
        .entries
        .iter()
        .filter_map(|e| e.as_event().map(|e| (e.event_id, e.revision.get())))
        .collect();
    let grpc_ids: Vec<(Uuid, u64)> = our_events(&ours, &stream)
        .await
        .iter()
        .map(|e| (e.event.event_id, e.event.revision.get()))
        .collect();
    assert_eq!(http_ids, grpc_ids);
}

#[tokio::test]
async fn a_wrong_expected_revision_is_refused_alike_on_every_wire() {
    let node = insecure_node().await;
    let (ours, theirs, http) = (ours(&node), theirs(&node), http(&node));
    let stream = new_stream();
    let two = [
        EventData::json(Uuid::new_v4(), "A", "{}"),
        EventData::json(Uuid::new_v4(), "B", "{}"),
    ];
    ours.append(&stream, ExpectedVersion::NoStream, &two)
        .await
        .unwrap();
    let five = ExpectedVersion::Exact(StreamRevision::new(5).unwrap());
    let one = CurrentVersion::Revision(StreamRevision::new(1).unwrap());
    let next = [EventData::json(Uuid::new_v4(), "C", "{}")];

    let err = ours.append(&stream, five, &next).await.unwrap_err();
    assert!(
        matches!(err, Error::WrongExpectedVersion { current: Some(c), expected, .. } if c == one && expected == five),
        "{err:?}"
    );
    let err = ours.batch_append(&stream, five, &next).await.unwrap_err();
    assert!(
        matches!(err, Error::WrongExpectedVersion { current: Some(c), .. } if c == one),
        "{err:?}"
    );
    let err = http.append_events(&stream, &next, five).await.unwrap_err();
    assert!(
        matches!(err, Error::WrongExpectedVersion { current: Some(c), .. } if c == one),
        "{err:?}"
    );
    let err = theirs
        .append_to_stream(
            stream.as_str(),
            &AppendToStreamOptions::default().stream_state(StreamState::StreamRevision(5)),
            kurrentdb::EventData::binary("C", Bytes::from_static(b"x")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            kurrentdb::Error::WrongExpectedVersion {
                current: CurrentRevision::Current(1),
                ..
            }
        ),
        "{err:?}"
    );
    let err = ours
        .append(&stream, ExpectedVersion::NoStream, &next)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { .. }), "{err:?}");
    // Nothing was written by any of the refused appends.
    assert_eq!(our_events(&ours, &stream).await.len(), 2);
}

#[tokio::test]
async fn a_replayed_append_writes_nothing() {
    let node = insecure_node().await;
    let ours = ours(&node);
    let stream = new_stream();
    let events = awkward_events();
    let first = ours
        .append(&stream, ExpectedVersion::NoStream, &events)
        .await
        .unwrap();
    let replay = ours
        .append(&stream, ExpectedVersion::NoStream, &events)
        .await
        .unwrap();
    assert_eq!(replay.current, first.current);
    let replay = ours
        .batch_append(&stream, ExpectedVersion::NoStream, &events)
        .await
        .unwrap();
    assert_eq!(replay.current, first.current);
    assert_eq!(our_events(&ours, &stream).await.len(), 2);
}

#[tokio::test]
async fn reads_of_all_and_streams_in_both_directions() {
    let node = insecure_node().await;
    let (ours, theirs) = (ours(&node), theirs(&node));
    let stream = new_stream();
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let events: Vec<kurrentdb::EventData> = ids
        .iter()
        .map(|id| kurrentdb::EventData::binary("E", Bytes::from_static(b"x")).id(*id))
        .collect();
    theirs
        .append_to_stream(stream.as_str(), &AppendToStreamOptions::default(), events)
        .await
        .unwrap();

    let all = ours
        .read_all(ReadFrom::Start, Direction::Forward, 10_000, None)
        .await
        .unwrap();
    let mine: Vec<&grpc::ReadEvent> = all.iter().filter(|e| e.event.stream == stream).collect();
    assert_eq!(
        mine.iter().map(|e| e.event.event_id).collect::<Vec<_>>(),
        ids
    );
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    // A forward read from a record's position includes it.
    let from_third = ours
        .read_all(ReadFrom::At(mine[2].position), Direction::Forward, 2, None)
        .await
        .unwrap();
    assert_eq!(from_third[0].event.event_id, ids[2]);
    let newest = ours
        .read_all(ReadFrom::End, Direction::Backward, 1, None)
        .await
        .unwrap();
    assert_eq!(newest[0].event.event_id, ids[4]);
    let their_last = theirs
        .read_all(
            &ReadAllOptions::default()
                .backwards()
                .position(StreamPosition::End)
                .max_count(1),
        )
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(their_last.get_original_event().id, ids[4]);

    let backward = ours
        .read_stream(&stream, ReadFrom::End, Direction::Backward, 2)
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_eq!(
        backward
            .iter()
            .map(|e| e.event.event_id)
            .collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let middle = ours
        .read_stream(
            &stream,
            ReadFrom::At(StreamRevision::new(1).unwrap()),
            Direction::Forward,
            2,
        )
        .await
        .unwrap()
        .found()
        .unwrap();
    assert_eq!(middle[0].event.event_id, ids[1]);
    assert_eq!(
        ours.read_stream("never-written", ReadFrom::Start, Direction::Forward, 1)
            .await
            .unwrap(),
        Lookup::NotFound
    );
}

async fn next_message(sub: &mut grpc::Subscription) -> SubscriptionMessage {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a subscription message within the bound")
        .unwrap()
        .expect("the subscription is still open")
}

#[tokio::test]
async fn a_subscription_catches_up_then_goes_live() {
    let node = insecure_node().await;
    let (ours, theirs) = (ours(&node), theirs(&node));
    let stream = new_stream();
    let before = [
        EventData::json(Uuid::new_v4(), "Before", "{}"),
        EventData::json(Uuid::new_v4(), "Before", "{}"),
    ];
    ours.append(&stream, ExpectedVersion::NoStream, &before)
        .await
        .unwrap();
    let first = our_events(&ours, &stream).await[0].position;

    // From the first event's position, exclusive: the second one, then caught up.
    let mut sub = ours.subscribe_all(Some(first), None).await.unwrap();
    let mut seen = Vec::new();
    loop {
        match next_message(&mut sub).await {
            SubscriptionMessage::Event(e) => {
                assert!(e.position > first, "the start position is exclusive");
                if e.event.stream == stream {
                    seen.push(e.event.event_id);
                }
            }
            SubscriptionMessage::CaughtUp { .. } => break,
            _ => {}
        }
    }
    assert_eq!(seen, vec![before[1].event_id]);

    let live = Uuid::new_v4();
    theirs
        .append_to_stream(
            stream.as_str(),
            &AppendToStreamOptions::default(),
            kurrentdb::EventData::binary("Live", Bytes::from_static(b"\x00live")).id(live),
        )
        .await
        .unwrap();
    let event = loop {
        if let SubscriptionMessage::Event(e) = next_message(&mut sub).await {
            if e.event.stream == stream {
                break e;
            }
        }
    };
    assert_eq!(event.event.event_id, live);
    assert_eq!(event.data().as_ref(), b"\x00live");

    // A stream subscription after revision 0: revision 1, then the live event.
    let mut stream_sub = ours
        .subscribe_stream(&stream, Some(StreamRevision::START))
        .await
        .unwrap();
    let mut revisions = Vec::new();
    while revisions.len() < 2 {
        if let SubscriptionMessage::Event(e) = next_message(&mut stream_sub).await {
            revisions.push((e.event.revision.get(), e.event.event_id));
        }
    }
    assert_eq!(revisions, vec![(1, before[1].event_id), (2, live)]);

    // The official client's subscription sees our events too.
    let mut theirs_sub = theirs
        .subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::Start))
        .await;
    let got = tokio::time::timeout(WAIT, async {
        loop {
            let e = theirs_sub.next().await.unwrap();
            if e.get_original_event().id == before[0].event_id {
                return e;
            }
        }
    })
    .await
    .expect("their subscription delivers our event");
    assert_eq!(got.get_original_event().event_type, "Before");
}

#[tokio::test]
async fn the_replication_filter_keeps_metadata_and_tombstones_and_checkpoints() {
    let node = insecure_node().await;
    let ours = ours(&node);
    let stream = new_stream();
    ours.append(
        &stream,
        ExpectedVersion::NoStream,
        &[EventData::json(Uuid::new_v4(), "A", "{}")],
    )
    .await
    .unwrap();
    ours.write_metadata_raw(
        &stream,
        ExpectedVersion::NoStream,
        Uuid::new_v4(),
        Bytes::from_static(b"{\"$maxCount\":10}"),
    )
    .await
    .unwrap();
    let doomed = format!("{stream}-doomed");
    ours.append(
        &doomed,
        ExpectedVersion::NoStream,
        &[EventData::json(Uuid::new_v4(), "A", "{}")],
    )
    .await
    .unwrap();
    ours.tombstone(&doomed, ExpectedVersion::Any).await.unwrap();

    let mut filter = grpc::Filter::replication();
    filter.window = Some(1);
    let mut sub = ours.subscribe_all(None, Some(&filter)).await.unwrap();
    let mut types = Vec::new();
    let mut checkpoints = 0;
    loop {
        match next_message(&mut sub).await {
            SubscriptionMessage::Event(e) => {
                assert!(
                    !e.event.stream.starts_with('$') || e.event.stream.starts_with("$$"),
                    "{} passed the filter",
                    e.event.stream
                );
                if e.event.stream.contains(&stream) {
                    types.push(e.event.event_type.clone());
                }
            }
            SubscriptionMessage::Checkpoint(_) => checkpoints += 1,
            SubscriptionMessage::CaughtUp { .. } => break,
            _ => {}
        }
    }
    assert_eq!(types, vec!["A", "$metadata", "A", "$streamDeleted"]);
    assert!(checkpoints > 0, "a filtered subscription sends checkpoints");
}

#[tokio::test]
async fn raw_metadata_keeps_its_id_and_bytes() {
    let node = insecure_node().await;
    let (ours, theirs) = (ours(&node), theirs(&node));
    let stream = new_stream();
    assert_eq!(
        ours.read_metadata_raw(&stream).await.unwrap(),
        Lookup::NotFound
    );
    let id = Uuid::new_v4();
    let doc = Bytes::from_static(b"{ \"$maxCount\" : 3,  \"custom\":\"x\" }");
    ours.write_metadata_raw(&stream, ExpectedVersion::NoStream, id, doc.clone())
        .await
        .unwrap();
    let Lookup::Found(record) = ours.read_metadata_raw(&stream).await.unwrap() else {
        panic!("metadata was written")
    };
    assert_eq!(record.event.event_id, id);
    assert_eq!(record.event.event_type, "$metadata");
    assert_eq!(record.data(), &doc);
    assert_eq!(record.event.revision, StreamRevision::START);
    let kurrentdb::StreamMetadataResult::Success(meta) = theirs
        .get_stream_metadata(stream.as_str(), &ReadStreamOptions::default())
        .await
        .unwrap()
    else {
        panic!("their client reads the metadata")
    };
    assert_eq!(meta.metadata().max_count, Some(3));
    // A second write needs the metastream's exact revision.
    let err = ours
        .write_metadata_raw(
            &stream,
            ExpectedVersion::NoStream,
            Uuid::new_v4(),
            doc.clone(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { .. }), "{err:?}");
    ours.write_metadata_raw(
        &stream,
        ExpectedVersion::Exact(StreamRevision::START),
        Uuid::new_v4(),
        doc,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn delete_and_tombstone() {
    let node = insecure_node().await;
    let (ours, theirs) = (ours(&node), theirs(&node));
    let soft = new_stream();
    ours.append(
        &soft,
        ExpectedVersion::NoStream,
        &[EventData::json(Uuid::new_v4(), "A", "{}")],
    )
    .await
    .unwrap();
    let err = ours
        .delete(
            &soft,
            ExpectedVersion::Exact(StreamRevision::new(3).unwrap()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { .. }), "{err:?}");
    ours.delete(&soft, ExpectedVersion::Exact(StreamRevision::START))
        .await
        .unwrap();
    assert_eq!(
        ours.read_stream(&soft, ReadFrom::Start, Direction::Forward, 10)
            .await
            .unwrap(),
        Lookup::NotFound
    );
    let their_read = their_events(&theirs, &soft).await;
    assert!(
        matches!(their_read, Err(kurrentdb::Error::ResourceNotFound)),
        "{their_read:?}"
    );
    // A soft-deleted stream can be written again.
    ours.append(
        &soft,
        ExpectedVersion::Any,
        &[EventData::json(Uuid::new_v4(), "B", "{}")],
    )
    .await
    .unwrap();

    let hard = new_stream();
    ours.append(
        &hard,
        ExpectedVersion::NoStream,
        &[EventData::json(Uuid::new_v4(), "A", "{}")],
    )
    .await
    .unwrap();
    theirs
        .tombstone_stream(hard.as_str(), &TombstoneStreamOptions::default())
        .await
        .unwrap();
    assert_eq!(
        ours.read_stream(&hard, ReadFrom::Start, Direction::Forward, 10)
            .await
            .unwrap(),
        Lookup::Deleted
    );
    let err = ours
        .append(
            &hard,
            ExpectedVersion::Any,
            &[EventData::json(Uuid::new_v4(), "C", "{}")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::StreamDeleted { stream, .. } if *stream == hard),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let err = ours
        .tombstone(&hard, ExpectedVersion::Any)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StreamDeleted { .. }), "{err:?}");
    let their_err = theirs
        .delete_stream(hard.as_str(), &DeleteStreamOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(their_err, kurrentdb::Error::ResourceDeleted),
        "{their_err:?}"
    );
}

#[tokio::test]
async fn users_are_created_disabled_and_enabled_across_clients() {
    let node = tls_node().await;
    let (ours, theirs) = (ours(&node), theirs(&node));
    let operations = kurrentdb::operations::Client::from(theirs.clone());
    let login = format!("user{}", Uuid::new_v4().simple());
    let password = Password::new("s3cret");
    ours.create_user(&NewUser {
        login_name: &login,
        full_name: "Replication",
        groups: &[],
        password: &password,
    })
    .await
    .unwrap();
    let details = ours.user(&login).await.unwrap().found().unwrap();
    assert_eq!(details.login_name, login);
    assert!(!details.disabled);

    ours.disable_user(&login).await.unwrap();
    let their_details = operations
        .user_details(&login, &Default::default())
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert!(their_details.disabled);
    // A disabled user is refused.
    node.credential_poll().await;
    let as_user = grpc::Client::from_connection_string(
        &connection_string(&node).replace("admin:changeit", &format!("{login}:s3cret")),
        None,
    )
    .unwrap();
    let err = as_user
        .read_all(ReadFrom::Start, Direction::Forward, 1, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AccessDenied { .. }), "{err:?}");

    operations
        .enable_user(&login, &Default::default())
        .await
        .unwrap();
    assert!(!ours.user(&login).await.unwrap().found().unwrap().disabled);
    node.credential_poll().await;
    // Enabled again, the user writes its own streams; it changes its password, an administrator
    // resets it, and once the node has applied the changes (like the server, the dev node
    // authenticates from a cache it refreshes by polling) only the newest password works.
    let mine = new_stream();
    let one = [EventData::json(Uuid::new_v4(), "A", "{}")];
    as_user
        .append(&mine, ExpectedVersion::Any, &one)
        .await
        .unwrap();
    as_user
        .change_password(&login, &password, &Password::new("n3w"))
        .await
        .unwrap();
    ours.reset_password(&login, &Password::new("n4w"))
        .await
        .unwrap();
    let with = |password: &str| {
        grpc::Client::from_connection_string(
            &connection_string(&node).replace("admin:changeit", &format!("{login}:{password}")),
            None,
        )
        .unwrap()
    };
    node.credential_poll().await;
    for old in ["s3cret", "n3w"] {
        let err = with(old)
            .append(&mine, ExpectedVersion::Any, &one)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AccessDenied { .. }), "{old}: {err:?}");
    }
    with("n4w")
        .append(
            &mine,
            ExpectedVersion::Any,
            &[EventData::json(Uuid::new_v4(), "B", "{}")],
        )
        .await
        .unwrap();
    assert_eq!(ours.user("nobody-here").await.unwrap(), Lookup::NotFound);
    let err = ours.disable_user("nobody-here").await.unwrap_err();
    assert!(matches!(err, Error::UserNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn gossip_and_server_features() {
    let node = insecure_node().await;
    let ours = ours(&node);
    let gossip = ours.gossip().await.unwrap();
    let leader = gossip.leader().expect("a single node is its own leader");
    assert_eq!(
        leader.http_endpoint.as_ref().unwrap().port,
        node.addr().port()
    );
    let features = ours.server_features().await.unwrap();
    assert!(
        features.supports("event_store.client.streams.streams", "batchappend"),
        "{features:?}"
    );
}

#[tokio::test]
async fn connection_string_variants() {
    // Plaintext without credentials against an insecure node.
    let node = insecure_node().await;
    let anonymous = grpc::Client::from_connection_string(
        &format!("kurrentdb://127.0.0.1:{}?tls=false", node.addr().port()),
        None,
    )
    .unwrap();
    anonymous
        .append(
            &new_stream(),
            ExpectedVersion::NoStream,
            &[EventData::json(Uuid::new_v4(), "A", "{}")],
        )
        .await
        .unwrap();
    // The +discover form over the same single node (gossip names it the leader).
    let discovered = grpc::Client::from_connection_string(
        &format!("esdb+discover://127.0.0.1:{}?tls=false", node.addr().port()),
        None,
    )
    .unwrap();
    discovered
        .read_all(ReadFrom::Start, Direction::Forward, 1, None)
        .await
        .unwrap();

    // TLS with the development CA, and without it.
    let secure = tls_node().await;
    ours(&secure)
        .append(
            &new_stream(),
            ExpectedVersion::NoStream,
            &[EventData::json(Uuid::new_v4(), "A", "{}")],
        )
        .await
        .unwrap();
    let untrusted = grpc::Client::from_connection_string(
        &format!(
            "kurrentdb://admin:changeit@localhost:{}",
            secure.addr().port()
        ),
        None,
    )
    .unwrap();
    let err = untrusted
        .read_all(ReadFrom::Start, Direction::Forward, 1, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    let unverified = grpc::Client::from_connection_string(
        &format!(
            "kurrentdb://admin:changeit@localhost:{}?tlsVerifyCert=false",
            secure.addr().port()
        ),
        None,
    )
    .unwrap();
    unverified
        .read_all(ReadFrom::Start, Direction::Forward, 1, None)
        .await
        .unwrap();

    // A --disable-tls node (26.2) takes the credentials over plaintext once it asks.
    let plain_auth = Node::start(NodeConfig::memory().profile(Profile::V26).disable_tls())
        .await
        .unwrap();
    let client = ours(&plain_auth);
    client
        .append(
            &new_stream(),
            ExpectedVersion::NoStream,
            &[EventData::json(Uuid::new_v4(), "A", "{}")],
        )
        .await
        .unwrap();
    let anonymous = grpc::Client::from_connection_string(
        &format!(
            "kurrentdb://127.0.0.1:{}?tls=false",
            plain_auth.addr().port()
        ),
        None,
    )
    .unwrap();
    let err = anonymous
        .read_all(ReadFrom::Start, Direction::Forward, 1, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AccessDenied { user: None, .. }),
        "{err:?}"
    );
}
