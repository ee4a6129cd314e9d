//! Property tests of the parsers: position text round-trips and ordering, and "never panics" for
//! every decoder fed arbitrary bytes, strings, headers or feed-shaped JSON.

use bytes::Bytes;
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use uuid::Uuid;

use standby::esdb::http::encode::encode_events_json;
use standby::esdb::http::headers;
use standby::esdb::http::request::{escape_segment, PageSize};
use standby::esdb::http::response::{
    all_link_position, decode_all_page, decode_append, decode_delete, decode_entry, decode_gossip,
    decode_info, decode_json_document, decode_stream_page, stream_link_revision, RawResponse,
    RequestInfo,
};
use standby::esdb::page::Direction;
use standby::esdb::EventData;
use standby::position::{CurrentVersion, ExpectedVersion, Position, StreamRevision};

const MAX_SIGNED: u64 = i64::MAX as u64;

fn info() -> RequestInfo {
    RequestInfo::new(Method::GET, "http://127.0.0.1:2113/streams/s")
}

fn arb_position() -> impl Strategy<Value = Position> {
    (0..=MAX_SIGNED, 0..=MAX_SIGNED).prop_map(|(c, p)| Position::new(c, p).unwrap())
}

/// JSON shaped like feeds and entries: the real property names with arbitrary values.
fn arb_feedish_json() -> impl Strategy<Value = serde_json::Value> {
    const KEYS: &[&str] = &[
        "title",
        "id",
        "updated",
        "streamId",
        "headOfStream",
        "selfUrl",
        "eTag",
        "links",
        "entries",
        "uri",
        "relation",
        "eventId",
        "eventType",
        "eventNumber",
        "data",
        "metaData",
        "linkMetaData",
        "isJson",
        "isMetaData",
        "isLinkMetaData",
        "isRedacted",
        "positionEventNumber",
        "positionStreamId",
        "summary",
        "content",
        "eventStreamId",
        "metadata",
        "members",
        "state",
        "httpEndPointPort",
        "writerCheckpoint",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        prop_oneof![
            Just("0@s".to_owned()),
            Just("5c7f2a4e-1d3b-4a8e-9f60-2b7c1e0d9a11".to_owned()),
            Just("http://h/streams/%24all/00000000000032330000000000000000/forward/4".to_owned()),
            Just("previous".to_owned()),
            Just("next".to_owned()),
            ".{0,24}",
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|pairs| {
                serde_json::Value::Object(
                    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                )
            }),
        ]
    })
}

fn decode_everything(resp: &RawResponse) {
    let req = info();
    let count = PageSize::new(4).unwrap();
    let _ = decode_all_page(&req, resp, Direction::Forward, count);
    let _ = decode_all_page(&req, resp, Direction::Backward, count);
    let _ = decode_stream_page(&req, resp, "s", Direction::Forward, count);
    let _ = decode_stream_page(&req, resp, "s", Direction::Backward, count);
    let _ = decode_entry(&req, resp);
    let _ = decode_json_document(&req, resp);
    let _ = decode_info(&req, resp);
    let _ = decode_gossip(&req, resp);
    let _ = decode_append(&req, resp, "s", ExpectedVersion::Any);
    let _ = decode_delete(&req, resp, "s", ExpectedVersion::Any);
}

proptest! {
    #[test]
    fn position_hex_round_trips(p in arb_position()) {
        let hex = p.to_hex();
        prop_assert_eq!(hex.len(), 32);
        prop_assert_eq!(hex.parse::<Position>(), Ok(p));
        prop_assert_eq!(hex.to_ascii_lowercase().parse::<Position>(), Ok(p));
        prop_assert_eq!(p.to_string(), format!("C:{}/P:{}", p.commit(), p.prepare()));
        let json = serde_json::to_string(&p).unwrap();
        prop_assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), p);
    }

    #[test]
    fn position_order_matches_commit_then_prepare(a in arb_position(), b in arb_position()) {
        prop_assert_eq!(a.cmp(&b), (a.commit(), a.prepare()).cmp(&(b.commit(), b.prepare())));
        prop_assert_eq!(a == b, a.to_hex() == b.to_hex());
        // Fixed-width upper-case hex sorts like the positions.
        prop_assert_eq!(a.cmp(&b), a.to_hex().cmp(&b.to_hex()));
    }

    #[test]
    fn position_parse_accepts_exactly_non_negative_32_hex(c in any::<u64>(), p in any::<u64>()) {
        let text = format!("{c:016x}{p:016X}");
        let parsed = text.parse::<Position>();
        if c <= MAX_SIGNED && p <= MAX_SIGNED {
            prop_assert_eq!(parsed, Ok(Position::new(c, p).unwrap()));
        } else {
            prop_assert!(parsed.is_err());
        }
    }

    #[test]
    fn position_parse_never_panics(text in ".{0,40}") {
        if let Ok(p) = text.parse::<Position>() {
            prop_assert!(text.eq_ignore_ascii_case(&p.to_hex()));
        }
    }

    #[test]
    fn numeric_parsers_never_panic(text in ".{0,30}") {
        let _ = text.parse::<StreamRevision>();
        let _ = text.parse::<CurrentVersion>();
        let _ = all_link_position(&text);
        let _ = stream_link_revision(&text);
        let _ = escape_segment(&text);
    }

    #[test]
    fn revision_text_round_trips(n in 0..=MAX_SIGNED) {
        let r = StreamRevision::new(n).unwrap();
        prop_assert_eq!(r.to_string().parse::<StreamRevision>(), Ok(r));
        prop_assert_eq!(
            r.to_string().parse::<CurrentVersion>(),
            Ok(CurrentVersion::Revision(r))
        );
        let expected = ExpectedVersion::Exact(r);
        prop_assert_eq!(ExpectedVersion::from_header_value(expected.header_value()), Some(expected));
    }

    #[test]
    fn feed_decoding_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&RawResponse::new(StatusCode::OK, HeaderMap::new(), body));
    }

    #[test]
    fn feed_decoding_never_panics_on_feedish_json(value in arb_feedish_json()) {
        let body = serde_json::to_vec(&value).unwrap();
        decode_everything(&RawResponse::new(StatusCode::OK, HeaderMap::new(), body));
    }

    #[test]
    fn head_parsing_never_panics(head in "(HTTP/1\\.1 [0-9]{3}[ -~]{0,20}\n)?([ -~]{0,30}\n){0,5}") {
        if let Ok(resp) = RawResponse::from_http1_head(&head, Bytes::new()) {
            decode_everything(&resp);
        }
    }

    #[test]
    fn header_decoding_never_panics(
        status in 100u16..600,
        current in "[ -~]{0,24}",
        location in "[ -~]{0,60}",
        etag in "[ -~]{0,24}",
        content_type in "[ -~]{0,40}",
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("es-currentversion", &current),
            ("kurrent-currentversion", &current),
            ("location", &location),
            ("etag", &etag),
            ("content-type", &content_type),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        let _ = headers::current_version(&headers);
        let _ = headers::media_type(&headers);
        let _ = headers::etag(&headers);
        let _ = headers::location(&headers);
        let status = StatusCode::from_u16(status).unwrap();
        decode_everything(&RawResponse::new(status, headers, "{}"));
    }

    #[test]
    fn encoding_never_panics_and_keeps_text(
        data in prop::collection::vec(any::<u8>(), 0..64),
        metadata in prop::collection::vec(any::<u8>(), 0..64),
        is_json in any::<bool>(),
        event_type in ".{0,12}",
    ) {
        let event = EventData {
            event_id: Uuid::from_u128(1),
            event_type,
            data: Bytes::from(data.clone()),
            metadata: Bytes::from(metadata),
            is_json,
        };
        if let Ok(body) = encode_events_json(std::slice::from_ref(&event)) {
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let sent = &value[0];
            prop_assert_eq!(sent["eventType"].as_str(), Some(event.event_type.as_str()));
            match &sent.get("data") {
                None => prop_assert!(data.is_empty()),
                Some(serde_json::Value::String(text)) => prop_assert_eq!(text.as_bytes(), &data[..]),
                Some(embedded) => {
                    // Only JSON data is embedded, and then as the same JSON value.
                    prop_assert!(is_json);
                    let original: serde_json::Value = serde_json::from_slice(&data).unwrap();
                    prop_assert_eq!(*embedded, &original);
                }
            }
        }
    }
}
