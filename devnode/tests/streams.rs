//! Stream reads and appends: names with special characters, link resolution, limits, ETags,
//! append body rules (§4, §5.1, §5.3, §11.9).

mod common;

use common::*;
use devnode::Profile;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn special_stream_names_round_trip() {
    let (node, api) = start(Profile::V25).await;
    for (raw, escaped) in [
        ("a b@c-d", "a%20b%40c-d"),
        ("$sys-x", "%24sys-x"),
        ("slash/inside", "slash%2Finside"),
    ] {
        let r = api
            .send(
                Method::POST,
                &format!("/streams/{escaped}"),
                &[("Content-Type", EVENTS)],
                Some(serde_json::to_vec(&json!([event(&new_id(), "t", json!({}))])).unwrap()),
            )
            .await;
        assert_eq!(r.status, 201, "{raw}");
        assert!(r
            .header("location")
            .unwrap()
            .ends_with(&format!("/streams/{escaped}/0")));
        let feed = api.get(&format!("/streams/{escaped}")).await.json();
        assert_eq!(feed["streamId"], raw);
        assert_eq!(feed["entries"][0]["title"], format!("0@{raw}"));
    }
    node.stop().await;
}

#[tokio::test]
async fn links_resolve_in_streams_not_in_all_by_default() {
    let (node, api) = start(Profile::V20).await;
    api.append(
        "order-1",
        None,
        &json!([event(&new_id(), "OrderPlaced", json!({"a": 1}))]),
    )
    .await;
    api.append(
        "$ce-order",
        None,
        &json!([event(&new_id(), "$>", json!("0@order-1"))]),
    )
    .await;
    let feed = api.get("/streams/%24ce-order?embed=rich").await.json();
    let e = &feed["entries"][0];
    assert_eq!(e["eventType"], "OrderPlaced", "resolved to the target");
    assert_eq!(e["positionStreamId"], "$ce-order");
    assert_eq!(e["title"], "0@order-1");
    let feed = api
        .get_with(
            "/streams/%24ce-order?embed=rich",
            &[("Accept", ATOM), ("ES-ResolveLinkTos", "false")],
        )
        .await
        .json();
    assert_eq!(feed["entries"][0]["eventType"], "$>");
    let all = api
        .get("/streams/%24all/head/backward/1?embed=rich")
        .await
        .json();
    assert_eq!(all["entries"][0]["eventType"], "$>");
    let bad = api
        .get_with(
            "/streams/%24ce-order",
            &[("Accept", ATOM), ("ES-ResolveLinkTos", "maybe")],
        )
        .await;
    assert_eq!(bad.status, 400);
    node.stop().await;
}

#[tokio::test]
async fn limits() {
    let (node, api) = start(Profile::V20).await;
    // > 4 MiB: 413, but the write still happens (§5.3).
    let big = "x".repeat(4 * 1024 * 1024 + 1);
    let r = api
        .append("big", None, &json!([event(&new_id(), "t", json!(big))]))
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(node.store().last_event_number("big"), 0);
    assert_eq!(api.get("/streams/big/0/forward/4097").await.status, 500);
    assert_eq!(api.get("/streams/big/x/forward/5").await.status, 400);
    assert_eq!(api.get("/streams/big/0/forward/-1").await.status, 400);
    // An offset inside a record is not a position the server handed out.
    let r = api
        .get("/streams/%24all/00000000000000010000000000000001/forward/5")
        .await;
    assert_eq!(r.status, 500);
    // Unsupported request body type.
    let r = api
        .send(
            Method::POST,
            "/streams/big",
            &[("Content-Type", "text/csv")],
            Some(b"a".to_vec()),
        )
        .await;
    assert_eq!(r.status, 415);
    // Bad body.
    let r = api
        .send(
            Method::POST,
            "/streams/big",
            &[("Content-Type", EVENTS)],
            Some(b"{".to_vec()),
        )
        .await;
    assert_eq!(r.status, 400);
    node.stop().await;
}

#[tokio::test]
async fn stream_etags_and_not_modified() {
    let (node, api) = start(Profile::V20).await;
    api.append("e", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    let r = api.get("/streams/e").await;
    let etag = r.header("etag").unwrap();
    assert!(etag.starts_with("\"0;"));
    assert_eq!(r.json()["eTag"], etag.trim_matches('"'));
    let nm = api
        .get_with("/streams/e", &[("Accept", ATOM), ("If-None-Match", &etag)])
        .await;
    assert_eq!(nm.status, 304);
    // Different media type → different hash → no 304.
    let other = api
        .get_with(
            "/streams/e",
            &[("Accept", "application/json"), ("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(other.status, 200);
    api.append("e", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    let r = api
        .get_with("/streams/e", &[("Accept", ATOM), ("If-None-Match", &etag)])
        .await;
    assert_eq!(r.status, 200);
    // Missing stream → 404; trailing slash → 307.
    assert_eq!(api.get("/streams/none").await.status, 404);
    assert_eq!(api.get("/streams/e/").await.status, 307);
    node.stop().await;
}

#[tokio::test]
async fn data_storage_rules() {
    let (node, api) = start(Profile::V5).await;
    let body = json!([
        {"eventId": new_id(), "eventType": "t", "data": {"$type": "Acme.Order", "b": 1.10, "a": [1, 2]}},
        {"eventId": new_id(), "eventType": "t", "data": "plain text", "metadata": {"m": true}},
        {"eventId": new_id(), "eventType": "t", "data": 42}
    ]);
    assert_eq!(api.append("d", None, &body).await.status, 201);
    let raw = |n: u32| {
        let api = api.clone();
        async move {
            api.get_with(
                &format!("/streams/d/{n}"),
                &[("Accept", "application/octet-stream")],
            )
            .await
            .body
        }
    };
    assert_eq!(
        raw(0).await,
        b"{\n  \"b\": 1.1,\n  \"a\": [\n    1,\n    2\n  ]\n}"
    );
    assert_eq!(raw(1).await, b"plain text");
    assert!(raw(2).await.is_empty());
    let feed = api.get("/streams/d/0/forward/3?embed=body").await.json();
    let entries = feed["entries"].as_array().unwrap();
    assert_eq!(
        entries[1]["isJson"], true,
        "JSON metadata makes the event JSON"
    );
    assert_eq!(entries[1]["data"], "plain text");
    assert_eq!(entries[0]["isJson"], false);
    assert!(entries[0].get("data").is_none(), "v5 omits nulls");
    node.stop().await;
}
