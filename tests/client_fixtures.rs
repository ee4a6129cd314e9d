//! Every fixture in `tests/fixtures/http-api` (recorded, test-asserted and reconstructed server
//! responses and request bodies, see its README) goes through the same pure decoders/encoders the
//! client uses. Recorded `*.headers.txt` files are parsed into status, reason phrase and headers
//! with `RawResponse::from_http1_head`, which keeps the reason phrase exactly when hyper would.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use uuid::Uuid;

use standby::esdb::http::encode::encode_events_json;
use standby::esdb::http::request::PageSize;
use standby::esdb::http::response::{
    all_link_position, decode_all_page, decode_append, decode_delete, decode_entry, decode_gossip,
    decode_info, decode_json_document, decode_liveness, decode_raw_event, decode_stream_page,
    peek_forward_continuation, status_error, RawResponse, RequestInfo,
};
use standby::esdb::metadata::{Acl, Roles, StreamMetadata, SystemSettings};
use standby::esdb::node::{Liveness, NodeState};
use standby::esdb::page::{Direction, Entry, Lookup};
use standby::esdb::Error;
use standby::esdb::{DeleteOutcome, EventData};
use standby::position::{CurrentVersion, ExpectedVersion, LogPosition, Position, StreamRevision};

/// Every file of the fixture directory this test file uses; `every_fixture_is_covered` fails when a
/// new fixture is added without a test.
const COVERED: &[&str] = &[
    "README.md",
    "all-forward-embed-body.reconstructed.headers.txt",
    "all-forward-embed-body.v23.6-v24.10.reconstructed.json",
    "all-forward-embed-body.v5-v20.10.reconstructed.json",
    "all-forward-end-of-feed.reconstructed.headers.txt",
    "all-forward-end-of-feed.v5-v20.10.reconstructed.json",
    "all-head-backward.2015.headers.txt",
    "all-head-backward.2015.repaired.json",
    "all-head-no-accept.2017.headers.txt",
    "append-created.2018.headers.txt",
    "append-empty-eventid.v20plus.reconstructed.headers.txt",
    "append-empty-eventid.v5.reconstructed.headers.txt",
    "append-follow-redirect-created.2018.headers.txt",
    "append-invalid-body.reconstructed.headers.txt",
    "append-no-eventid-redirect.2018.body.txt",
    "append-no-eventid-redirect.2018.headers.txt",
    "append-no-eventtype.2018.headers.txt",
    "append-octet-stream.2016.headers.txt",
    "append-to-deleted-stream.2013.headers.txt",
    "append-too-large.pre-v24.10.reconstructed.headers.txt",
    "append-too-large.v24.10plus.reconstructed.headers.txt",
    "append-wrong-expected-version.2018.headers.txt",
    "append-wrong-expected-version.v25plus.reconstructed.headers.txt",
    "delete-stream.2018.headers.txt",
    "description-document.2018.headers.txt",
    "description-document.2018.json",
    "event-atom-entry.2018.headers.txt",
    "event-atom-entry.2018.json",
    "event-json-body.2013.headers.txt",
    "event-json-body.2013.json",
    "get-hard-deleted-stream.2018.headers.txt",
    "gossip.v20.10.3.first-member-only.json",
    "hard-delete-stream.2014.headers.txt",
    "info.v20.10.3.json",
    "metadata-read-atom-entry.2013.headers.txt",
    "metadata-read-atom-entry.2013.json",
    "metadata-write-created.2018.headers.txt",
    "not-modified.2018.headers.txt",
    "request-events-batch.docs.json",
    "request-metadata-as-events.docs.json",
    "request-settings-acl.docs.json",
    "request-single-event.docs.json",
    "settings-write-created.2019.headers.txt",
    "stream-embed-body.2013.headers.txt",
    "stream-embed-body.2013.json",
    "stream-embed-body.2015.headers.txt",
    "stream-embed-body.2015.repaired.json",
    "stream-embed-rich.2013.headers.txt",
    "stream-embed-rich.2013.json",
    "stream-embed-rich.2015.headers.txt",
    "stream-embed-rich.2015.repaired.json",
    "stream-forward-fullpage.2018.headers.txt",
    "stream-forward-fullpage.2018.json",
    "stream-forward-past-end.2013.headers.txt",
    "stream-forward-past-end.2013.json",
    "stream-forward-past-end.2018.headers.txt",
    "stream-forward-past-end.2018.json",
    "stream-head-backward-fullpage.2018.headers.txt",
    "stream-head-backward-fullpage.2018.json",
    "stream-head-backward.2017.headers.txt",
    "stream-head-backward.2017.json",
    "stream-metadata-none.test-asserted.headers.txt",
    "stream-metadata-none.test-asserted.json",
    "system-stream-users-head.2018.headers.txt",
    "system-stream-users-head.2018.json",
    "unauthorized-authorization-failed.v20plus.reconstructed.headers.txt",
    "unauthorized-incorrect-user.2018.headers.txt",
    "unauthorized-metadata-read.2013.headers.txt",
    "unauthorized-missing-credentials.2018.headers.txt",
];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http-api")
}

fn read(name: &str) -> String {
    assert!(COVERED.contains(&name), "{name} missing from COVERED");
    let path = fixture_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A recorded response: `<name>.headers.txt` (+ optional body file).
fn recorded(headers: &str, body: Option<&str>) -> RawResponse {
    let body = body.map(read).unwrap_or_default();
    RawResponse::from_http1_head(&read(headers), Bytes::from(body))
        .unwrap_or_else(|e| panic!("{headers}: {e}"))
}

/// A body-only fixture served as 200 application/json.
fn json_200(body: &str) -> RawResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    RawResponse::new(StatusCode::OK, headers, Bytes::from(read(body)))
}

fn req(method: Method, url: &str) -> RequestInfo {
    RequestInfo {
        method,
        url: url.to_owned(),
        user: Some("admin".to_owned()),
    }
}

fn get(url: &str) -> RequestInfo {
    req(Method::GET, url)
}

fn post(url: &str) -> RequestInfo {
    req(Method::POST, url)
}

fn count(n: u16) -> PageSize {
    PageSize::new(n).unwrap()
}

fn rev(n: u64) -> StreamRevision {
    StreamRevision::new(n).unwrap()
}

fn pos(hex: &str) -> Position {
    hex.parse().unwrap()
}

fn revisions(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.revision().get()).collect()
}

#[test]
fn every_fixture_is_covered() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let covered: BTreeSet<String> = COVERED.iter().map(|s| (*s).to_owned()).collect();
    let untested: Vec<_> = on_disk.difference(&covered).collect();
    let missing: Vec<_> = covered.difference(&on_disk).collect();
    assert!(untested.is_empty(), "fixtures without a test: {untested:?}");
    assert!(
        missing.is_empty(),
        "fixtures listed but absent: {missing:?}"
    );
}

// ---------------------------------------------------------------- $all

#[test]
fn all_head_backward_2015_recorded() {
    let resp = recorded(
        "all-head-backward.2015.headers.txt",
        Some("all-head-backward.2015.repaired.json"),
    );
    let page = decode_all_page(
        &get("http://127.0.0.1:2113/streams/%24all"),
        &resp,
        Direction::Backward,
        count(20),
    )
    .unwrap()
    .unwrap();
    // The docs authors removed the entries.
    assert!(page.entries.is_empty());
    assert!(page.is_end);
    assert_eq!(page.next, Some(pos("00000000017BC0D000000000017BC0D0")));
    assert_eq!(page.etag.unwrap().as_str(), "\"25159393;248368668\"");
    assert_eq!(
        all_link_position(page.links.previous.as_deref().unwrap()).unwrap(),
        Some(pos("0000000001801EBF0000000001801EBF"))
    );
    assert_eq!(
        page.links.first.as_deref(),
        Some("http://127.0.0.1:2113/streams/%24all/head/backward/20")
    );
    assert_eq!(
        page.links.metadata.as_deref(),
        Some("http://127.0.0.1:2113/streams/%24all/metadata")
    );
}

#[test]
fn all_without_accept_2017_recorded_is_a_decode_error() {
    // Headers only: the server labelled the feed as the description document.
    let resp = recorded("all-head-no-accept.2017.headers.txt", None);
    let err = decode_all_page(
        &get("http://127.0.0.1:2113/streams/$all"),
        &resp,
        Direction::Backward,
        count(20),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }));
    assert!(err.to_string().contains("Accept"), "{err}");
    assert!(!err.is_transient());
}

fn forward_body_page(body: &str) -> standby::esdb::AllPage {
    let resp = recorded(
        "all-forward-embed-body.reconstructed.headers.txt",
        Some(body),
    );
    decode_all_page(
        &get("http://127.0.0.1:2113/streams/%24all/0000000000002F7F0000000000000000/forward/4?embed=body"),
        &resp,
        Direction::Forward,
        count(4),
    )
    .unwrap()
    .unwrap()
}

/// The reader requests the next page from the links at the top of a body before decoding it; on
/// every recorded forward page that position is the one the decoder continues from.
#[test]
fn the_continuation_peeked_before_the_entries_is_the_decoded_one() {
    for body in [
        "all-forward-embed-body.v5-v20.10.reconstructed.json",
        "all-forward-embed-body.v23.6-v24.10.reconstructed.json",
    ] {
        let page = forward_body_page(body);
        assert!(page.next.is_some(), "{body}");
        assert_eq!(
            peek_forward_continuation(read(body).as_bytes()),
            page.next,
            "{body}"
        );
    }
    // The end of `$all`: no `previous` link, nothing to request ahead.
    assert_eq!(
        peek_forward_continuation(
            read("all-forward-end-of-feed.v5-v20.10.reconstructed.json").as_bytes()
        ),
        None
    );
}

#[test]
fn all_forward_embed_body_reconstructed_v5() {
    let page = forward_body_page("all-forward-embed-body.v5-v20.10.reconstructed.json");
    assert_eq!(page.direction, Direction::Forward);
    assert!(!page.is_end);
    assert_eq!(page.etag, None);
    // `previous` link: prepare half 0.
    assert_eq!(page.next, Position::new(0x3233, 0));
    assert_eq!(
        all_link_position(page.links.next.as_deref().unwrap()).unwrap(),
        Some(pos("0000000000002F7F0000000000002F7F"))
    );
    assert!(page.links.last.is_some());

    // Log order: the feed's newest-first entries reversed.
    let events: Vec<_> = page
        .entries
        .iter()
        .map(|e| e.as_event().expect("embed=body entries are rich"))
        .collect();
    let order: Vec<_> = events
        .iter()
        .map(|e| (e.stream.as_str(), e.event_type.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("order-1", "OrderPlaced"),
            ("$$order-2", "$metadata"),
            ("$ce-order", "$>"),
            ("order-3", "$streamDeleted"),
        ]
    );

    let placed = events[0];
    assert_eq!(
        placed.event_id,
        Uuid::parse_str("5c7f2a4e-1d3b-4a8e-9f60-2b7c1e0d9a11").unwrap()
    );
    assert_eq!(placed.revision, StreamRevision::START);
    assert!(placed.is_json && placed.is_metadata);
    assert_eq!(
        placed.data.as_deref(),
        Some(&b"{\n  \"orderId\": \"1\",\n  \"total\": 10\n}"[..])
    );
    assert_eq!(
        placed.metadata.as_deref(),
        Some(&b"{\n  \"source\": \"web\"\n}"[..])
    );
    assert_eq!(placed.link, None);
    assert_eq!(
        placed.updated.as_deref(),
        Some("2024-05-02T10:15:30.1234567Z")
    );

    let soft_delete = events[1];
    let meta: serde_json::Value =
        serde_json::from_slice(soft_delete.data.as_deref().unwrap()).unwrap();
    assert!(StreamMetadata::new(meta).is_soft_deleted());
    assert_eq!(soft_delete.metadata, None);

    let link = events[2];
    assert!(!link.is_json);
    assert_eq!(
        link.data, None,
        "non-JSON data is not embedded at body level"
    );
    assert!(link.metadata.as_deref().unwrap().starts_with(b"{\"$v\""));

    let tombstone = events[3];
    assert_eq!(tombstone.revision, StreamRevision::TOMBSTONE);
    assert!(tombstone.revision.is_tombstone());
    assert_eq!(tombstone.data, None);
}

#[test]
fn all_forward_embed_body_reconstructed_with_nulls_decodes_identically() {
    let v5 = forward_body_page("all-forward-embed-body.v5-v20.10.reconstructed.json");
    let v23 = forward_body_page("all-forward-embed-body.v23.6-v24.10.reconstructed.json");
    assert_eq!(v5, v23);
}

#[test]
fn all_forward_end_of_feed_reconstructed() {
    let resp = recorded(
        "all-forward-end-of-feed.reconstructed.headers.txt",
        Some("all-forward-end-of-feed.v5-v20.10.reconstructed.json"),
    );
    let page = decode_all_page(
        &get("http://127.0.0.1:2113/streams/%24all/00000000000032330000000000000000/forward/4"),
        &resp,
        Direction::Forward,
        count(4),
    )
    .unwrap()
    .unwrap();
    assert!(page.entries.is_empty());
    assert!(page.is_end);
    assert_eq!(
        page.next, None,
        "no `previous` link at the end: poll the same position"
    );
    assert_eq!(page.links.previous, None);
    assert_eq!(page.etag.unwrap().as_str(), "\"12713;-2060438500\"");
    assert_eq!(
        all_link_position(page.links.next.as_deref().unwrap()).unwrap(),
        Position::new(0x3233, i64::MAX as u64)
    );
}

#[test]
fn not_modified_2018_recorded() {
    let resp = recorded("not-modified.2018.headers.txt", None);
    let conditional = decode_all_page(
        &get("http://127.0.0.1:2113/streams/%24all/head/backward/20"),
        &resp,
        Direction::Backward,
        count(20),
    )
    .unwrap();
    assert_eq!(conditional, None, "304 on a conditional $all read");
    // Stream reads never send If-None-Match, so a 304 there is unexpected.
    let err = decode_stream_page(
        &get("http://127.0.0.1:2113/streams/newstream"),
        &resp,
        "newstream",
        Direction::Backward,
        count(20),
    )
    .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_MODIFIED));
    assert!(!err.is_transient());
}

// ---------------------------------------------------------------- streams

fn stream_page(
    headers: &str,
    body: &str,
    stream: &str,
    direction: Direction,
    n: u16,
) -> standby::esdb::StreamPage {
    let resp = recorded(headers, Some(body));
    match decode_stream_page(
        &get(&format!("http://127.0.0.1:2113/streams/{stream}")),
        &resp,
        stream,
        direction,
        count(n),
    )
    .unwrap()
    {
        Lookup::Found(page) => page,
        other => panic!("{body}: {other:?}"),
    }
}

#[test]
fn stream_head_backward_2017_recorded() {
    let page = stream_page(
        "stream-head-backward.2017.headers.txt",
        "stream-head-backward.2017.json",
        "newstream",
        Direction::Backward,
        20,
    );
    assert_eq!(page.stream, "newstream");
    assert!(page.head_of_stream);
    assert!(page.is_end);
    assert_eq!(page.next, None, "no `next` link: nothing older");
    assert_eq!(page.etag.unwrap().as_str(), "\"0;-2060438500\"");
    let [Entry::Summary(entry)] = page.entries.as_slice() else {
        panic!("{:?}", page.entries)
    };
    assert_eq!(
        (entry.stream.as_str(), entry.revision),
        ("newstream", StreamRevision::START)
    );
    assert_eq!(entry.event_type.as_deref(), Some("event-type"));
    assert_eq!(entry.event_id, None);
    assert_eq!(
        entry.uri.as_deref(),
        Some("http://127.0.0.1:2113/streams/newstream/0")
    );
    assert_eq!(
        page.links.previous.as_deref(),
        Some("http://127.0.0.1:2113/streams/newstream/1/forward/20")
    );
}

#[test]
fn stream_head_backward_fullpage_2018_recorded() {
    let page = stream_page(
        "stream-head-backward-fullpage.2018.headers.txt",
        "stream-head-backward-fullpage.2018.json",
        "alphabet",
        Direction::Backward,
        20,
    );
    assert_eq!(revisions(&page.entries), (7..=26).rev().collect::<Vec<_>>());
    assert!(!page.is_end);
    assert_eq!(page.next, Some(rev(6)));
    assert_eq!(page.etag.unwrap().as_str(), "\"26;-2060438500\"");
    assert_eq!(
        page.links.last.as_deref(),
        Some("http://127.0.0.1:2113/streams/alphabet/0/forward/20")
    );
    assert_eq!(
        page.links.previous.as_deref(),
        Some("http://127.0.0.1:2113/streams/alphabet/27/forward/20")
    );
}

#[test]
fn stream_forward_fullpage_2018_recorded() {
    let page = stream_page(
        "stream-forward-fullpage.2018.headers.txt",
        "stream-forward-fullpage.2018.json",
        "alphabet",
        Direction::Forward,
        20,
    );
    // Feed is newest first (19…0); the page is in read order.
    assert_eq!(revisions(&page.entries), (0..20).collect::<Vec<_>>());
    assert!(!page.is_end);
    assert!(!page.head_of_stream);
    assert_eq!(page.next, Some(rev(20)));
    assert_eq!(page.etag, None, "full forward pages are cacheable, no ETag");
    assert_eq!(page.links.last, None);
    assert_eq!(page.links.next, None);
}

#[test]
fn stream_forward_past_end_2018_recorded() {
    let page = stream_page(
        "stream-forward-past-end.2018.headers.txt",
        "stream-forward-past-end.2018.json",
        "newstream",
        Direction::Forward,
        20,
    );
    assert!(page.entries.is_empty() && page.is_end && page.head_of_stream);
    assert_eq!(page.next, None);
    assert_eq!(page.etag.unwrap().as_str(), "\"1;1391431453\"");
    assert_eq!(
        page.links.next.as_deref(),
        Some("http://127.0.0.1:2113/streams/newstream/1/backward/20")
    );
}

#[test]
fn stream_forward_past_end_2013_recorded() {
    let page = stream_page(
        "stream-forward-past-end.2013.headers.txt",
        "stream-forward-past-end.2013.json",
        "newstream",
        Direction::Forward,
        20,
    );
    assert!(page.entries.is_empty() && page.is_end);
    assert!(!page.head_of_stream, "no headOfStream field in 2013");
    assert_eq!(page.next, None);
}

#[test]
fn stream_embed_rich_2013_recorded_without_event_ids() {
    let page = stream_page(
        "stream-embed-rich.2013.headers.txt",
        "stream-embed-rich.2013.json",
        "newstream",
        Direction::Backward,
        20,
    );
    let [Entry::Summary(entry)] = page.entries.as_slice() else {
        panic!(
            "2013 entries have no eventId, so they are summaries: {:?}",
            page.entries
        )
    };
    assert_eq!(entry.is_json, Some(true));
    assert_eq!(entry.event_type.as_deref(), Some("event-type"));
    assert_eq!(entry.revision, StreamRevision::START);
}

#[test]
fn stream_embed_body_2013_recorded() {
    let page = stream_page(
        "stream-embed-body.2013.headers.txt",
        "stream-embed-body.2013.json",
        "aaa",
        Direction::Backward,
        20,
    );
    assert_eq!(revisions(&page.entries), [1, 0]);
    assert!(page
        .entries
        .iter()
        .all(|e| e.stream() == "aaa" && e.as_event().is_none()));
    assert_eq!(page.etag.unwrap().as_str(), "\"1;248368668\"");
    assert_eq!(page.next, None);
}

#[test]
fn stream_embed_rich_2015_recorded() {
    let page = stream_page(
        "stream-embed-rich.2015.headers.txt",
        "stream-embed-rich.2015.repaired.json",
        "newstream",
        Direction::Backward,
        20,
    );
    let [Entry::Event(event)] = page.entries.as_slice() else {
        panic!("{:?}", page.entries)
    };
    assert_eq!(
        event.event_id,
        Uuid::parse_str("fbf4a1a1-b4a3-4dfe-a01f-ec52c34e16e4").unwrap()
    );
    assert!(event.is_json);
    assert_eq!(event.data, None, "rich does not embed data");
    assert_eq!(event.link, None);
}

#[test]
fn stream_embed_body_2015_recorded() {
    let page = stream_page(
        "stream-embed-body.2015.headers.txt",
        "stream-embed-body.2015.repaired.json",
        "newstream",
        Direction::Backward,
        20,
    );
    let [Entry::Event(event)] = page.entries.as_slice() else {
        panic!("{:?}", page.entries)
    };
    assert_eq!(event.data.as_deref(), Some(&b"{\n  \"a\": \"1\"\n}"[..]));
    assert_eq!(event.metadata, None);
    assert_eq!(event.event_type, "event-type");
    assert!(page.head_of_stream);
}

#[test]
fn system_stream_users_head_2018_recorded() {
    let page = stream_page(
        "system-stream-users-head.2018.headers.txt",
        "system-stream-users-head.2018.json",
        "$users",
        Direction::Backward,
        20,
    );
    assert_eq!(page.stream, "$users");
    assert_eq!(revisions(&page.entries), [3, 2, 1, 0]);
    for entry in &page.entries {
        let Entry::Summary(summary) = entry else {
            panic!("{entry:?}")
        };
        assert_eq!(summary.event_type.as_deref(), Some("$User"));
        assert_eq!(summary.stream, "$users");
    }
}

#[test]
fn description_document_2018_recorded_is_a_decode_error() {
    let resp = recorded(
        "description-document.2018.headers.txt",
        Some("description-document.2018.json"),
    );
    assert_eq!(resp.reason.as_deref(), Some("Description Document"));
    let err = decode_stream_page(
        &get("http://127.0.0.1:2113/streams/newstream"),
        &resp,
        "newstream",
        Direction::Backward,
        count(20),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }));
    assert!(err.to_string().contains("description document"), "{err}");
}

#[test]
fn get_hard_deleted_stream_2018_recorded() {
    let resp = recorded("get-hard-deleted-stream.2018.headers.txt", None);
    assert_eq!(resp.reason.as_deref(), Some("Deleted"));
    let url = "http://127.0.0.1:2113/streams/newstream";
    assert_eq!(
        decode_stream_page(
            &get(url),
            &resp,
            "newstream",
            Direction::Backward,
            count(20)
        )
        .unwrap(),
        Lookup::Deleted
    );
    assert_eq!(decode_raw_event(&get(url), &resp).unwrap(), Lookup::Deleted);
    assert_eq!(decode_entry(&get(url), &resp).unwrap(), Lookup::Deleted);
    assert_eq!(
        decode_json_document(&get(url), &resp).unwrap(),
        Lookup::Deleted
    );
}

// ---------------------------------------------------------------- single events, metadata

#[test]
fn event_atom_entry_2018_recorded() {
    let resp = recorded(
        "event-atom-entry.2018.headers.txt",
        Some("event-atom-entry.2018.json"),
    );
    let stream = "shoppingCart-b989fe21-9469-4017-8d71-9820b8dd1167";
    let entry = decode_entry(
        &get(&format!("http://127.0.0.1:2113/streams/{stream}/0")),
        &resp,
    )
    .unwrap()
    .found()
    .unwrap();
    let Entry::Summary(summary) = entry else {
        panic!("{entry:?}")
    };
    assert_eq!(summary.stream, stream);
    assert_eq!(summary.revision, StreamRevision::START);
    assert_eq!(summary.event_type.as_deref(), Some("ItemAdded"));
    assert_eq!(
        summary.event_id,
        Some(Uuid::parse_str("b989fe21-9469-4017-8d71-9820b8dd1167").unwrap())
    );
    let content = summary.content.unwrap();
    assert_eq!(
        content.data.unwrap()["Description"],
        "Xbox One Elite (Console)"
    );
    assert_eq!(
        content.metadata.unwrap()["TimeStamp"],
        "2016-12-23T10:00:00.9225401+01:00"
    );
}

#[test]
fn event_json_body_2013_recorded() {
    let resp = recorded(
        "event-json-body.2013.headers.txt",
        Some("event-json-body.2013.json"),
    );
    let data = decode_json_document(&get("http://127.0.0.1:2113/streams/newstream/0"), &resp)
        .unwrap()
        .found()
        .unwrap();
    assert_eq!(data, serde_json::json!({"a": "1"}));
}

#[test]
fn metadata_read_atom_entry_2013_recorded() {
    let resp = recorded(
        "metadata-read-atom-entry.2013.headers.txt",
        Some("metadata-read-atom-entry.2013.json"),
    );
    let entry = decode_entry(&get("http://127.0.0.1:2113/streams/$users/metadata"), &resp)
        .unwrap()
        .found()
        .unwrap();
    let Entry::Summary(summary) = entry else {
        panic!("{entry:?}")
    };
    assert_eq!(summary.stream, "$$$users");
    assert_eq!(summary.event_type.as_deref(), Some("$metadata"));
    assert_eq!(summary.event_id, None, "2013: no eventId in content");
    let content = summary.content.unwrap();
    assert_eq!(content.data.unwrap()["readRole"], "$all");
    assert_eq!(content.metadata, Some(serde_json::json!("")));
}

#[test]
fn stream_metadata_none_test_asserted() {
    let resp = recorded(
        "stream-metadata-none.test-asserted.headers.txt",
        Some("stream-metadata-none.test-asserted.json"),
    );
    let metadata = decode_json_document(&get("http://127.0.0.1:2113/streams/s/metadata"), &resp)
        .unwrap()
        .map(StreamMetadata::new)
        .found()
        .unwrap();
    assert!(metadata.is_empty());
    assert!(!metadata.is_soft_deleted());
}

// ---------------------------------------------------------------- writes

const STREAM_URL: &str = "http://127.0.0.1:2113/streams/newstream";

#[test]
fn append_created_2018_recorded() {
    let resp = recorded("append-created.2018.headers.txt", None);
    let appended = decode_append(
        &post(STREAM_URL),
        &resp,
        "newstream",
        ExpectedVersion::Exact(rev(1)),
    )
    .unwrap();
    assert_eq!(appended.first, Some(rev(2)));
    assert_eq!(
        appended.location.as_deref(),
        Some("http://127.0.0.1:2113/streams/newstream/2")
    );
}

#[test]
fn append_follow_redirect_and_octet_stream_created_recorded() {
    for name in [
        "append-follow-redirect-created.2018.headers.txt",
        "append-octet-stream.2016.headers.txt",
    ] {
        let appended = decode_append(
            &post(STREAM_URL),
            &recorded(name, None),
            "newstream",
            ExpectedVersion::Any,
        )
        .unwrap();
        assert_eq!(appended.first, Some(StreamRevision::START), "{name}");
    }
}

#[test]
fn metadata_and_settings_writes_created_recorded() {
    let appended = decode_append(
        &post("http://127.0.0.1:2113/streams/%24users/metadata"),
        &recorded("metadata-write-created.2018.headers.txt", None),
        "$$$users",
        ExpectedVersion::Any,
    )
    .unwrap();
    assert_eq!(appended.first, Some(StreamRevision::START));
    assert_eq!(
        appended.location.as_deref(),
        Some("http://127.0.0.1:2113/streams/%24%24%24users/0")
    );
    let appended = decode_append(
        &post("http://127.0.0.1:2113/streams/%24settings"),
        &recorded("settings-write-created.2019.headers.txt", None),
        "$settings",
        ExpectedVersion::Any,
    )
    .unwrap();
    assert_eq!(appended.first, Some(StreamRevision::START));
}

#[test]
fn append_wrong_expected_version_recorded_and_v25_reconstructed() {
    for name in [
        "append-wrong-expected-version.2018.headers.txt",
        "append-wrong-expected-version.v25plus.reconstructed.headers.txt",
    ] {
        let err = decode_append(
            &post(STREAM_URL),
            &recorded(name, None),
            "newstream",
            ExpectedVersion::Exact(rev(3)),
        )
        .unwrap_err();
        match &err {
            Error::WrongExpectedVersion {
                stream,
                expected,
                current,
            } => {
                assert_eq!(stream, "newstream");
                assert_eq!(*expected, ExpectedVersion::Exact(rev(3)));
                assert_eq!(
                    *current,
                    Some(CurrentVersion::Revision(StreamRevision::START))
                );
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(!err.is_transient());
    }
}

#[test]
fn append_no_event_id_redirect_2018_recorded() {
    let resp = recorded(
        "append-no-eventid-redirect.2018.headers.txt",
        Some("append-no-eventid-redirect.2018.body.txt"),
    );
    assert_eq!(&resp.body[..], b"Forwarding to idempotent URI");
    let err =
        decode_append(&post(STREAM_URL), &resp, "newstream", ExpectedVersion::Any).unwrap_err();
    match &err {
        Error::Redirected {
            status, location, ..
        } => {
            assert_eq!(*status, StatusCode::TEMPORARY_REDIRECT);
            assert_eq!(
                location.as_deref(),
                Some("http://127.0.0.1:2113/streams/newstream/incoming/8a00e469-3a99-4517-a0b0-8dc662ffad9b")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_transient());
}

#[test]
fn append_bad_requests_recorded_and_reconstructed() {
    let cases = [
        (
            "append-no-eventtype.2018.headers.txt",
            "Must include an event type with the request either in body or as ES-EventType header.",
        ),
        (
            "append-invalid-body.reconstructed.headers.txt",
            "Write request body invalid.",
        ),
        (
            "append-empty-eventid.v5.reconstructed.headers.txt",
            "Empty eventId provided.",
        ),
        (
            "append-empty-eventid.v20plus.reconstructed.headers.txt",
            "Empty eventId provided. (Parameter 'eventId')",
        ),
    ];
    for (name, phrase) in cases {
        let err = decode_append(
            &post(STREAM_URL),
            &recorded(name, None),
            "newstream",
            ExpectedVersion::Any,
        )
        .unwrap_err();
        match &err {
            Error::BadRequest { reason, .. } => {
                assert_eq!(reason.as_deref(), Some(phrase), "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(!err.is_transient(), "{name}");
        assert!(err.to_string().contains(phrase), "{name}");
    }
}

#[test]
fn append_too_large_reconstructed() {
    for (name, phrase) in [
        (
            "append-too-large.pre-v24.10.reconstructed.headers.txt",
            "Too large events received. Limit is 4mb",
        ),
        (
            "append-too-large.v24.10plus.reconstructed.headers.txt",
            "Too large events received. Limit is 4194304 bytes.",
        ),
    ] {
        let err = decode_append(
            &post(STREAM_URL),
            &recorded(name, None),
            "newstream",
            ExpectedVersion::Any,
        )
        .unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::PAYLOAD_TOO_LARGE), "{name}");
        assert!(
            matches!(&err, Error::Status { reason: Some(r), .. } if r == phrase),
            "{name}"
        );
        assert!(!err.is_transient());
    }
}

#[test]
fn append_to_deleted_stream_2013_recorded() {
    let err = decode_append(
        &post(STREAM_URL),
        &recorded("append-to-deleted-stream.2013.headers.txt", None),
        "newstream",
        ExpectedVersion::Any,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::StreamDeleted { stream, reason: Some(r) } if stream == "newstream" && r == "Deleted"),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[test]
fn deletes_recorded() {
    for name in [
        "delete-stream.2018.headers.txt",
        "hard-delete-stream.2014.headers.txt",
    ] {
        let resp = recorded(name, None);
        assert_eq!(resp.reason.as_deref(), Some("Stream deleted"));
        assert_eq!(
            decode_delete(
                &req(Method::DELETE, STREAM_URL),
                &resp,
                "newstream",
                ExpectedVersion::Any
            )
            .unwrap(),
            DeleteOutcome::Deleted,
            "{name}"
        );
    }
    // A second hard delete answers 410: already done.
    assert_eq!(
        decode_delete(
            &req(Method::DELETE, STREAM_URL),
            &recorded("get-hard-deleted-stream.2018.headers.txt", None),
            "newstream",
            ExpectedVersion::Any
        )
        .unwrap(),
        DeleteOutcome::AlreadyHardDeleted
    );
}

#[test]
fn unauthorized_recorded_and_reconstructed() {
    for name in [
        "unauthorized-missing-credentials.2018.headers.txt",
        "unauthorized-incorrect-user.2018.headers.txt",
        "unauthorized-metadata-read.2013.headers.txt",
        "unauthorized-authorization-failed.v20plus.reconstructed.headers.txt",
    ] {
        let resp = recorded(name, None);
        let info = get("http://127.0.0.1:2113/streams/%24all");
        for err in [
            decode_all_page(&info, &resp, Direction::Forward, count(20)).unwrap_err(),
            decode_stream_page(&info, &resp, "s", Direction::Forward, count(20)).unwrap_err(),
            decode_append(&info, &resp, "s", ExpectedVersion::Any).unwrap_err(),
            decode_json_document(&info, &resp).unwrap_err(),
            status_error(&info, &resp),
        ] {
            assert!(
                matches!(&err, Error::Unauthorized { user: Some(u), url, .. }
                    if u == "admin" && url == "http://127.0.0.1:2113/streams/%24all"),
                "{name}: {err:?}"
            );
            assert!(!err.is_transient());
            assert!(err.to_string().contains("check the username and password"));
        }
    }
}

// ---------------------------------------------------------------- request bodies

fn docs_events(name: &str) -> (serde_json::Value, Vec<EventData>) {
    let fixture: serde_json::Value = serde_json::from_str(&read(name)).unwrap();
    let events = fixture
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            EventData::json(
                event["eventId"].as_str().unwrap().parse().unwrap(),
                event["eventType"].as_str().unwrap(),
                serde_json::to_vec(&event["data"]).unwrap(),
            )
        })
        .collect();
    (fixture, events)
}

#[test]
fn request_bodies_from_the_docs_encode_to_the_same_json() {
    for name in [
        "request-single-event.docs.json",
        "request-events-batch.docs.json",
        "request-metadata-as-events.docs.json",
        "request-settings-acl.docs.json",
    ] {
        let (fixture, events) = docs_events(name);
        let body = encode_events_json(&events).unwrap();
        let encoded: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(encoded, fixture, "{name}");
    }
}

#[test]
fn request_settings_acl_docs_matches_typed_settings() {
    let (fixture, _) = docs_events("request-settings-acl.docs.json");
    let data = fixture[0]["data"].clone();
    let many = |names: &[&str]| Some(Roles::Many(names.iter().map(|s| (*s).to_owned()).collect()));
    let admins = || Some(Roles::One("$admins".to_owned()));
    let typed = SystemSettings::from_acls(
        Some(Acl {
            read: many(&["$admin", "$ops", "service-a", "service-b"]),
            write: many(&["$admin", "$ops", "service-a", "service-b"]),
            delete: many(&["$admin", "$ops"]),
            meta_read: many(&["$admin", "$ops"]),
            meta_write: many(&["$admin", "$ops"]),
        }),
        Some(Acl {
            read: admins(),
            write: admins(),
            delete: admins(),
            meta_read: admins(),
            meta_write: admins(),
        }),
    );
    assert_eq!(typed.as_json(), &data);
    let parsed = SystemSettings::new(data);
    assert_eq!(parsed.system_stream_acl().unwrap().read, admins());
    assert_eq!(
        parsed.user_stream_acl().unwrap().delete.unwrap().names(),
        ["$admin", "$ops"]
    );
}

// ---------------------------------------------------------------- node endpoints

#[test]
fn info_v20_10_3_recorded() {
    let info = decode_info(
        &get("http://127.0.0.1:2113/info"),
        &json_200("info.v20.10.3.json"),
    )
    .unwrap();
    assert_eq!(info.version.as_deref(), Some("20.10.3.0"));
    assert_eq!(info.state, Some(NodeState::CatchingUp));
    assert!(info.atom_pub_enabled());
    let features = info.features.unwrap();
    assert_eq!(features.projections, Some(true));
    assert_eq!(features.user_management, Some(true));
    assert_eq!(info.authentication.as_deref(), Some("internal"));
    assert_eq!(info.projections_mode, None);
}

#[test]
fn gossip_v20_10_3_recorded() {
    let gossip = decode_gossip(
        &get("http://127.0.0.1:2113/gossip"),
        &json_200("gossip.v20.10.3.first-member-only.json"),
    )
    .unwrap();
    assert_eq!(gossip.server, None, "truncated recording");
    let leader = gossip
        .leader()
        .expect("the first member is the alive leader");
    assert_eq!(
        leader.instance_id,
        Some(Uuid::parse_str("f72a02ff-e4c5-468b-a4fc-e4ba66dde9f0").unwrap())
    );
    let endpoint = leader.http_endpoint.as_ref().unwrap();
    assert_eq!(
        endpoint.host,
        "c3onpu5o0aepnl3fgk30-2.mesdb.eventstore.cloud"
    );
    assert_eq!(endpoint.port, 2113);
    assert_eq!(leader.internal_http_endpoint, None);
    assert_eq!(leader.last_commit_position, LogPosition::new(38102748));
    assert_eq!(leader.writer_checkpoint, LogPosition::new(38102983));
    assert_eq!(leader.chaser_checkpoint, LogPosition::new(38102983));
    assert_eq!(leader.epoch_position, LogPosition::new(27382051));
    assert_eq!(leader.election_epoch, Some(10));
    assert_eq!(
        leader.election_epoch_id,
        Some(Uuid::parse_str("5197288e-a126-4eec-8c6c-4a66e650026f").unwrap())
    );
    assert_eq!(leader.node_priority, Some(0));
    assert!(!leader.is_read_only_replica);
    assert_eq!(
        leader.timestamp.as_deref(),
        Some("2021-09-22T06:24:52.6244986Z")
    );
    // A restored standby would start reading the primary from its chaser checkpoint (contract §10).
    assert_eq!(
        Position::at(leader.chaser_checkpoint.unwrap()),
        Position::new(38102983, 38102983).unwrap()
    );
}

#[test]
fn liveness_answers() {
    // No recorded /health/live response exists; the three documented answers.
    let info = get("http://127.0.0.1:2113/health/live");
    let answer = |code| RawResponse::new(StatusCode::from_u16(code).unwrap(), HeaderMap::new(), "");
    assert_eq!(
        decode_liveness(&info, &answer(204)).unwrap(),
        Liveness::Live
    );
    assert_eq!(
        decode_liveness(&info, &answer(503)).unwrap(),
        Liveness::NotReady
    );
    assert_eq!(
        decode_liveness(&info, &answer(404)).unwrap(),
        Liveness::Unsupported
    );
}
