//! The gRPC face over the shared store: byte-exact events, positions shared with the HTTP
//! face, expected revisions and idempotency, subscriptions, filters, deadlines and limits.

mod common;

use std::time::Duration;

use common::grpc::*;
use common::*;
use devnode::{Node, NodeConfig};
use proto::event_store::client::streams::append_req::options::ExpectedStreamRevision as Expected;
use proto::event_store::client::streams::read_req::options::{
    all_options::AllOption, filter_options, FilterOption, FilterOptions,
};
use proto::event_store::client::streams::{append_resp, read_resp::Content};
use serde_json::json;
use uuid::Uuid;

/// A v26 node (plaintext with authentication) and an admin gRPC client.
async fn node() -> (Node, Grpc, Api) {
    let node = Node::start(NodeConfig::memory()).await.unwrap();
    let grpc = Grpc::connect(&node).await;
    let api = Api::new(&node.url());
    (node, grpc, api)
}

fn committed(resp: &append_resp::Result) -> (u64, u64) {
    use append_resp::success::{CurrentRevisionOption, PositionOption};
    let append_resp::Result::Success(s) = resp else {
        panic!("append refused: {resp:?}")
    };
    let Some(CurrentRevisionOption::CurrentRevision(rev)) = s.current_revision_option else {
        panic!("no revision: {s:?}")
    };
    let Some(PositionOption::Position(p)) = s.position_option else {
        panic!("no position: {s:?}")
    };
    assert_eq!(p.commit_position, p.prepare_position);
    (rev, p.commit_position)
}

#[tokio::test]
async fn binary_and_irregular_json_events_round_trip_byte_for_byte() {
    let (node, grpc, _) = node().await;
    let (bin_id, json_id) = (Uuid::new_v4(), Uuid::new_v4());
    let bin_data = [0u8, 0xff, 0xfe, 0x80, b'\n', 0xc3, 0x28];
    let bin_meta = [0x01u8, 0x00, 0xfa, 0xde];
    let json_data = br#"{ "a" :1,"b":[ 1 ,2 ]  , "c":"\u00e9" }"#;
    let json_meta = br#"{"k" :  "v"}"#;
    let resp = grpc
        .append(
            "fidelity-1",
            Expected::NoStream(()),
            vec![
                proposed(
                    bin_id,
                    "Blob",
                    "application/octet-stream",
                    &bin_data,
                    &bin_meta,
                ),
                proposed(json_id, "Doc", "application/json", json_data, json_meta),
            ],
        )
        .await
        .unwrap();
    assert_eq!(committed(resp.result.as_ref().unwrap()).0, 1);

    for structured in [true, false] {
        let answers = grpc
            .read_all_of(stream_forward("fidelity-1", 10, structured))
            .await
            .unwrap();
        let evs = events(&answers);
        assert_eq!(evs.len(), 2);
        let ids: Vec<Uuid> = evs
            .iter()
            .map(|e| proto::ids::parse(e.id.as_ref().unwrap()).unwrap())
            .collect();
        assert_eq!(ids, [bin_id, json_id]);
        let form_is_structured = matches!(
            evs[0].id.as_ref().unwrap().value,
            Some(proto::event_store::client::uuid::Value::Structured(_))
        );
        assert_eq!(form_is_structured, structured, "id in the requested form");
        assert_eq!(&evs[0].data[..], &bin_data);
        assert_eq!(&evs[0].custom_metadata[..], &bin_meta);
        assert_eq!(evs[0].metadata["type"], "Blob");
        assert_eq!(evs[0].metadata["content-type"], "application/octet-stream");
        assert_eq!(&evs[1].data[..], json_data);
        assert_eq!(&evs[1].custom_metadata[..], json_meta);
        assert_eq!(evs[1].metadata["type"], "Doc");
        assert_eq!(evs[1].metadata["content-type"], "application/json");
        assert!(evs[1].metadata["created"].parse::<i64>().unwrap() > 0);
        assert_eq!(evs[1].stream_revision, 1);
    }
    node.stop().await;
}

#[tokio::test]
async fn a_write_through_either_face_reads_through_the_other_at_the_same_position() {
    let (node, grpc, api) = node().await;
    // HTTP write, gRPC read of $all.
    let id = new_id();
    let r = api
        .append(
            "mixed-1",
            Some(-1),
            &json!([event(&id, "ViaHttp", json!({"n": 1}))]),
        )
        .await;
    assert_eq!(r.status, 201);
    let answers = grpc
        .read_all_of(all(AllOption::Start(()), Some(100)))
        .await
        .unwrap();
    let ev = events(&answers)
        .into_iter()
        .find(|e| e.stream_identifier.as_ref().unwrap().stream_name == "mixed-1")
        .unwrap();
    assert_eq!(
        proto::ids::parse(ev.id.as_ref().unwrap())
            .unwrap()
            .to_string(),
        id
    );
    assert_eq!(
        node.store().event_position("mixed-1", 0),
        Some(ev.commit_position)
    );

    // gRPC write, HTTP read of $all from the position the append answered.
    let gid = Uuid::new_v4();
    let resp = grpc
        .append(
            "mixed-1",
            Expected::Revision(0),
            vec![proposed(gid, "ViaGrpc", "application/json", b"{}", b"")],
        )
        .await
        .unwrap();
    let (rev, pos) = committed(resp.result.as_ref().unwrap());
    assert_eq!(rev, 1);
    let hex = format!("{pos:016X}{pos:016X}");
    let r = api
        .get_with(
            &format!("/streams/$all/{hex}/forward/1?embed=body"),
            &[("Accept", ATOM)],
        )
        .await;
    assert_eq!(r.status, 200);
    let feed = r.json();
    assert_eq!(feed["entries"][0]["eventId"], gid.to_string());
    assert_eq!(feed["entries"][0]["eventNumber"], 1);

    // A gRPC read from that position includes it.
    let answers = grpc.read_all_of(all(at(pos), Some(1))).await.unwrap();
    assert_eq!(
        proto::ids::parse(events(&answers)[0].id.as_ref().unwrap()),
        Some(gid)
    );
    node.stop().await;
}

#[tokio::test]
async fn a_wrong_expected_revision_is_refused_as_over_http_and_writes_nothing() {
    let (node, grpc, api) = node().await;
    grpc.append(
        "wev-1",
        Expected::NoStream(()),
        vec![proposed(
            Uuid::new_v4(),
            "A",
            "application/json",
            b"{}",
            b"",
        )],
    )
    .await
    .unwrap();
    let end = node.store().end();
    let resp = grpc
        .append(
            "wev-1",
            Expected::Revision(5),
            vec![proposed(
                Uuid::new_v4(),
                "A",
                "application/json",
                b"{}",
                b"",
            )],
        )
        .await
        .unwrap();
    use append_resp::wrong_expected_version::{CurrentRevisionOption, ExpectedRevisionOption};
    let Some(append_resp::Result::WrongExpectedVersion(w)) = resp.result else {
        panic!("accepted: {resp:?}")
    };
    assert_eq!(
        w.current_revision_option,
        Some(CurrentRevisionOption::CurrentRevision(0))
    );
    assert_eq!(
        w.expected_revision_option,
        Some(ExpectedRevisionOption::ExpectedRevision(5))
    );
    assert!(
        w.current_revision_option_20_6_0.is_some() && w.expected_revision_option_20_6_0.is_some()
    );
    // The same append over HTTP: refused with the same current version.
    let r = api
        .append("wev-1", Some(5), &json!([event(&new_id(), "A", json!({}))]))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("kurrent-currentversion").as_deref(), Some("0"));
    assert_eq!(node.store().end(), end, "nothing written");

    // Delete and tombstone answer it as an error with the trailers clients read.
    let del = proto::event_store::client::streams::DeleteReq {
        options: Some(proto::event_store::client::streams::delete_req::Options {
            stream_identifier: Some(ident("wev-1")),
            expected_stream_revision: Some(
                proto::event_store::client::streams::delete_req::options::ExpectedStreamRevision::Revision(7),
            ),
        }),
    };
    let err = grpc
        .streams
        .clone()
        .delete(grpc.req(del))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        trailer(&err, "exception").as_deref(),
        Some("wrong-expected-version")
    );
    assert_eq!(trailer(&err, "stream-name").as_deref(), Some("wev-1"));
    assert_eq!(trailer(&err, "expected-version").as_deref(), Some("7"));
    assert_eq!(trailer(&err, "actual-version").as_deref(), Some("0"));
    node.stop().await;
}

#[tokio::test]
async fn a_replayed_append_at_the_right_revision_writes_nothing() {
    let (node, grpc, _) = node().await;
    let batch = vec![
        proposed(Uuid::new_v4(), "A", "application/json", b"{}", b""),
        proposed(
            Uuid::new_v4(),
            "B",
            "application/octet-stream",
            b"\x00",
            b"",
        ),
    ];
    let first = grpc
        .append("replay-1", Expected::NoStream(()), batch.clone())
        .await
        .unwrap();
    assert_eq!(committed(first.result.as_ref().unwrap()).0, 1);
    let end = node.store().end();
    let again = grpc
        .append("replay-1", Expected::NoStream(()), batch)
        .await
        .unwrap();
    use append_resp::success::CurrentRevisionOption;
    let Some(append_resp::Result::Success(s)) = again.result else {
        panic!("replay refused: {again:?}")
    };
    assert_eq!(
        s.current_revision_option,
        Some(CurrentRevisionOption::CurrentRevision(1))
    );
    assert_eq!(node.store().end(), end, "the replay wrote nothing");
    node.stop().await;
}

/// Next answer of a subscription, bounded so that a missing message fails the test.
async fn next(
    sub: &mut tonic::Streaming<proto::event_store::client::streams::ReadResp>,
) -> Content {
    tokio::time::timeout(Duration::from_secs(10), sub.message())
        .await
        .expect("subscription answer within 10 s")
        .unwrap()
        .expect("subscription open")
        .content
        .unwrap()
}

#[tokio::test]
async fn a_subscription_catches_up_then_delivers_live_events() {
    let (node, grpc, api) = node().await;
    let mut positions = Vec::new();
    for i in 0..3 {
        let r = grpc
            .append(
                "sub-1",
                Expected::Any(()),
                vec![proposed(
                    Uuid::new_v4(),
                    "E",
                    "application/json",
                    format!("{{\"i\":{i}}}").as_bytes(),
                    b"",
                )],
            )
            .await
            .unwrap();
        positions.push(committed(r.result.as_ref().unwrap()).1);
    }
    // From the first event's position: exclusive, so events 2 and 3, then caught up.
    let mut sub = grpc.read(all(at(positions[0]), None)).await.unwrap();
    assert!(matches!(next(&mut sub).await, Content::Confirmation(_)));
    let mut seen = Vec::new();
    loop {
        match next(&mut sub).await {
            Content::Event(e) => seen.push(e.event.unwrap().commit_position),
            Content::CaughtUp(c) => {
                assert_eq!(c.position.unwrap().commit_position, positions[2]);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, positions[1..]);
    // Live: an HTTP write reaches the gRPC subscription.
    let id = new_id();
    assert_eq!(
        api.append("sub-1", None, &json!([event(&id, "Live", json!({}))]))
            .await
            .status,
        201
    );
    let Content::Event(e) = next(&mut sub).await else {
        panic!("event expected")
    };
    assert_eq!(
        proto::ids::parse(e.event.as_ref().unwrap().id.as_ref().unwrap())
            .unwrap()
            .to_string(),
        id
    );
    drop(sub);
    node.stop().await;
}

#[tokio::test]
async fn a_filtered_all_subscription_sends_checkpoints_every_window_of_considered_events() {
    let (node, grpc, _) = node().await;
    // The node's own records (accounts, epoch information) are considered too.
    let own = grpc
        .read_all_of(all(AllOption::Start(()), Some(1000)))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| matches!(c, Content::Event(_)))
        .count();
    for i in 0..10 {
        let ty = if i == 7 { "wanted" } else { "noise" };
        grpc.append(
            "filt-1",
            Expected::Any(()),
            vec![proposed(Uuid::new_v4(), ty, "application/json", b"{}", b"")],
        )
        .await
        .unwrap();
    }
    let mut opts = all(AllOption::Start(()), None);
    opts.filter_option = Some(FilterOption::Filter(FilterOptions {
        filter: Some(filter_options::Filter::EventType(
            filter_options::Expression {
                regex: String::new(),
                prefix: vec!["want".into()],
            },
        )),
        window: Some(filter_options::Window::Max(2)),
        checkpoint_interval_multiplier: 2,
    }));
    let mut sub = grpc.read(opts).await.unwrap();
    assert!(matches!(next(&mut sub).await, Content::Confirmation(_)));
    let (mut checkpoints, mut wanted) = (Vec::new(), 0);
    loop {
        match next(&mut sub).await {
            Content::Event(e) => {
                assert_eq!(e.event.unwrap().metadata["type"], "wanted");
                wanted += 1;
            }
            Content::Checkpoint(c) => checkpoints.push(c.commit_position),
            Content::CaughtUp(_) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wanted, 1);
    // Every considered event counts, a checkpoint every 4, plus one on catching up.
    assert_eq!(checkpoints.len(), (own + 10) / 4 + 1, "{checkpoints:?}");
    assert!(checkpoints.windows(2).all(|w| w[0] < w[1]));
    drop(sub);
    node.stop().await;
}

#[tokio::test]
async fn a_zero_deadline_answers_deadline_exceeded() {
    let (node, grpc, _) = node().await;
    let mut req = grpc.req(proto::event_store::client::streams::ReadReq {
        options: Some(all(AllOption::Start(()), Some(1))),
    });
    req.set_timeout(Duration::ZERO);
    let err = grpc.streams.clone().read(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
    // The node is unharmed.
    assert!(grpc
        .read_all_of(all(AllOption::Start(()), Some(1)))
        .await
        .is_ok());
    node.stop().await;
}

#[tokio::test]
async fn an_oversized_append_is_refused_with_the_servers_trailers() {
    let (node, grpc, _) = node().await;
    let big = vec![b'x'; 600 * 1024];
    let err = grpc
        .append(
            "big-1",
            Expected::Any(()),
            vec![
                proposed(Uuid::new_v4(), "A", "application/octet-stream", &big, b""),
                proposed(Uuid::new_v4(), "A", "application/octet-stream", &big, b""),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        trailer(&err, "exception").as_deref(),
        Some("maximum-append-size-exceeded")
    );
    assert_eq!(
        trailer(&err, "maximum-append-size").as_deref(),
        Some("1048576")
    );
    assert_eq!(
        node.store().last_event_number("big-1"),
        -1,
        "nothing written"
    );

    // Missing required metadata and an empty stream name are refused the same way.
    let mut no_type = proposed(Uuid::new_v4(), "A", "application/json", b"{}", b"");
    no_type.metadata.remove("type");
    let err = grpc
        .append("big-1", Expected::Any(()), vec![no_type])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        trailer(&err, "exception").as_deref(),
        Some("missing-required-metadata-property")
    );
    let err = grpc
        .append("", Expected::Any(()), vec![])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    node.stop().await;
}

#[tokio::test]
async fn a_tombstoned_stream_refuses_appends_with_stream_deleted() {
    let (node, grpc, _) = node().await;
    grpc.append(
        "tomb-1",
        Expected::NoStream(()),
        vec![proposed(
            Uuid::new_v4(),
            "A",
            "application/json",
            b"{}",
            b"",
        )],
    )
    .await
    .unwrap();
    use proto::event_store::client::streams::{tombstone_req, TombstoneReq};
    let req = grpc.req(TombstoneReq {
        options: Some(tombstone_req::Options {
            stream_identifier: Some(ident("tomb-1")),
            expected_stream_revision: Some(
                tombstone_req::options::ExpectedStreamRevision::Revision(0),
            ),
        }),
    });
    grpc.streams.clone().tombstone(req).await.unwrap();
    let err = grpc
        .append(
            "tomb-1",
            Expected::Any(()),
            vec![proposed(
                Uuid::new_v4(),
                "A",
                "application/json",
                b"{}",
                b"",
            )],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        trailer(&err, "exception").as_deref(),
        Some("stream-deleted")
    );
    assert_eq!(trailer(&err, "stream-name").as_deref(), Some("tomb-1"));
    node.stop().await;
}

#[tokio::test]
async fn batch_append_answers_each_correlation_and_packs_a_wrong_expected_version() {
    use prost::Message;
    use proto::event_store::client::streams::{
        batch_append_req, batch_append_resp, BatchAppendReq,
    };
    use proto::event_store::client::WrongExpectedVersion;
    let (node, grpc, _) = node().await;
    let correlation = |n: u128| proto::ids::string(Uuid::from_u128(n));
    let message = |ty: &str| batch_append_req::ProposedMessage {
        id: Some(proto::ids::string(Uuid::new_v4())),
        metadata: [("type", ty), ("content-type", "application/json")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        custom_metadata: Default::default(),
        data: bytes::Bytes::from_static(b"{}"),
    };
    let options = |position| batch_append_req::Options {
        stream_identifier: Some(ident("batch-1")),
        expected_stream_position: Some(position),
        deadline_option: None,
    };
    use batch_append_req::options::ExpectedStreamPosition as P;
    let requests = vec![
        // Correlation 1 in two chunks: options with the first, is_final with the last.
        BatchAppendReq {
            correlation_id: Some(correlation(1)),
            options: Some(options(P::NoStream(()))),
            proposed_messages: vec![message("A")],
            is_final: false,
        },
        BatchAppendReq {
            correlation_id: Some(correlation(1)),
            options: None,
            proposed_messages: vec![message("B")],
            is_final: true,
        },
        // Correlation 2 expects a revision the stream does not have.
        BatchAppendReq {
            correlation_id: Some(correlation(2)),
            options: Some(options(P::StreamPosition(9))),
            proposed_messages: vec![message("C")],
            is_final: true,
        },
    ];
    let req = grpc.req(futures_util::stream::iter(requests));
    let mut answers = grpc
        .streams
        .clone()
        .batch_append(req)
        .await
        .unwrap()
        .into_inner();
    let first = answers.message().await.unwrap().unwrap();
    assert_eq!(first.correlation_id, Some(correlation(1)));
    let Some(batch_append_resp::Result::Success(s)) = first.result else {
        panic!("{first:?}")
    };
    assert_eq!(
        s.current_revision_option,
        Some(batch_append_resp::success::CurrentRevisionOption::CurrentRevision(1))
    );
    let second = answers.message().await.unwrap().unwrap();
    assert_eq!(second.correlation_id, Some(correlation(2)));
    let Some(batch_append_resp::Result::Error(status)) = second.result else {
        panic!("{second:?}")
    };
    assert_eq!(status.code, proto::google::rpc::Code::AlreadyExists as i32);
    let details = status.details.unwrap();
    assert_eq!(
        details.type_url,
        "type.googleapis.com/event_store.client.WrongExpectedVersion"
    );
    let wev = WrongExpectedVersion::decode(details.value.as_slice()).unwrap();
    use proto::event_store::client::wrong_expected_version::{
        CurrentStreamRevisionOption, ExpectedStreamPositionOption,
    };
    assert_eq!(
        wev.current_stream_revision_option,
        Some(CurrentStreamRevisionOption::CurrentStreamRevision(1))
    );
    assert_eq!(
        wev.expected_stream_position_option,
        Some(ExpectedStreamPositionOption::ExpectedStreamPosition(9))
    );
    assert_eq!(node.store().last_event_number("batch-1"), 1);
    node.stop().await;
}

/// Sends raw bytes as the message of a call, to feed the node what no generated client sends.
#[derive(Default, Clone)]
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

#[tokio::test]
async fn a_malformed_message_is_an_error_status_and_the_node_serves_on() {
    let (node, grpc, _) = node().await;
    let mut raw = tonic::client::Grpc::new(channel(&node).await);
    raw.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/event_store.client.streams.Streams/Read",
    );
    // A length-delimited field whose length runs past the end of the message.
    let err = raw
        .server_streaming(grpc.req(vec![0x0a, 0xff, 0x01, 0x02]), path, Raw)
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    // A well-formed request without the required uuid_option is INVALID_ARGUMENT.
    let mut opts = all(AllOption::Start(()), Some(1));
    opts.uuid_option = None;
    let err = grpc.read(opts).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(grpc
        .read_all_of(all(AllOption::Start(()), Some(1)))
        .await
        .is_ok());
    node.stop().await;
}
