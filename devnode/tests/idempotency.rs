//! Expected version and idempotency (§5.2, §5.5), including across a restart on the same directory
//! and address.

mod common;

use common::*;
use devnode::{Node, NodeConfig, Profile};
use serde_json::json;

#[tokio::test]
async fn strong_idempotency_survives_restart_weak_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeConfig::on_disk(dir.path())).await.unwrap();
    let addr = node.addr();
    let api = Api::new(&node.url());
    let (a, b) = (new_id(), new_id());
    let batch = json!([
        event(&a, "t", json!({"n": 1})),
        event(&b, "t", json!({"n": 2}))
    ]);
    let r = api.append("orders-1", Some(-1), &batch).await;
    assert_eq!(r.status, 201);
    assert!(r
        .header("location")
        .unwrap()
        .ends_with("/streams/orders-1/0"));
    let end = node.store().end();

    // Same node: strong replay, weak replay → 201, nothing written.
    let r = api.append("orders-1", Some(-1), &batch).await;
    assert_eq!(r.status, 201);
    assert!(r
        .header("location")
        .unwrap()
        .ends_with("/streams/orders-1/0"));
    let r = api
        .append("orders-1", None, &json!([event(&b, "t", json!({"n": 2}))]))
        .await;
    assert_eq!(r.status, 201);
    assert!(
        r.header("location")
            .unwrap()
            .ends_with("/streams/orders-1/1"),
        "cached number of the first id"
    );
    assert_eq!(node.store().end(), end);

    node.stop().await;
    // Same directory, same address.
    let node = Node::start(NodeConfig::on_disk(dir.path()).http(addr))
        .await
        .unwrap();
    assert_eq!(node.addr(), addr);
    // The restart wrote the node's own `$epoch-information`, and nothing else.
    assert!(node.store().end() > end);
    let end = node.store().end();

    // Strong replay after restart: found through the stream index.
    let r = api.append("orders-1", Some(-1), &batch).await;
    assert_eq!(r.status, 201);
    assert!(r
        .header("location")
        .unwrap()
        .ends_with("/streams/orders-1/0"));
    assert_eq!(node.store().end(), end);

    // Another id at that version → 400 with the current version (v25: both header names).
    let r = api
        .append(
            "orders-1",
            Some(-1),
            &json!([event(&new_id(), "t", json!({}))]),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("es-currentversion").unwrap(), "1");
    assert_eq!(r.header("kurrent-currentversion").unwrap(), "1");
    // Corrupted idempotency (first matches, second does not) → 400.
    let r = api
        .append(
            "orders-1",
            Some(-1),
            &json!([event(&a, "t", json!({})), event(&new_id(), "t", json!({}))]),
        )
        .await;
    assert_eq!(r.status, 400);

    // Weak (Any) replay after restart duplicates: the id cache is gone.
    let r = api
        .append("orders-1", None, &json!([event(&a, "t", json!({"n": 1}))]))
        .await;
    assert_eq!(r.status, 201);
    assert!(r
        .header("location")
        .unwrap()
        .ends_with("/streams/orders-1/2"));
    node.stop().await;
}

#[tokio::test]
async fn clear_idempotency_cache_makes_any_duplicate() {
    let (node, api) = start(Profile::V20).await;
    let id = new_id();
    let body = json!([event(&id, "t", json!({}))]);
    assert_eq!(api.append("s", None, &body).await.status, 201);
    let r = api.append("s", None, &body).await;
    assert!(r.header("location").unwrap().ends_with("/s/0"));
    node.clear_idempotency_cache();
    let r = api.append("s", None, &body).await;
    assert!(r.header("location").unwrap().ends_with("/s/1"));
    // Strong check still finds event 0.
    let r = api.append("s", Some(-1), &body).await;
    assert_eq!(r.status, 201);
    assert!(r.header("location").unwrap().ends_with("/s/0"));
    node.stop().await;
}

#[tokio::test]
async fn expected_version_rules() {
    let (node, api) = start(Profile::V5).await;
    let one = || json!([event(&new_id(), "t", json!({}))]);
    // StreamExists on a missing stream → 400, current −1.
    let r = api.append("x", Some(-4), &one()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("es-currentversion").unwrap(), "-1");
    assert!(
        r.header("kurrent-currentversion").is_none(),
        "v5 has only ES-CurrentVersion"
    );
    assert_eq!(api.append("x", Some(-1), &one()).await.status, 201);
    assert_eq!(api.append("x", Some(0), &one()).await.status, 201);
    assert_eq!(api.append("x", Some(5), &one()).await.status, 400);
    assert_eq!(api.append("x", Some(-4), &one()).await.status, 201);
    // −3: nothing written, no error status (§5.2).
    let before = node.store().end();
    let r = api.append("x", Some(-3), &one()).await;
    assert_eq!(r.status, 200);
    assert_eq!(node.store().end(), before);
    // < −4 is a header format error.
    let r = api.append("x", Some(-5), &one()).await;
    assert_eq!(r.status, 400);
    node.stop().await;
}

#[tokio::test]
async fn single_event_forms_and_incoming_route() {
    let (node, api) = start(Profile::V20).await;
    // application/json without an id → 307 to /incoming/{guid}.
    let r = api
        .send(
            reqwest::Method::POST,
            "/streams/single",
            &[("Content-Type", "application/json"), ("ES-EventType", "t")],
            Some(b"{a : \"1\"}".to_vec()),
        )
        .await;
    assert_eq!(r.status, 307);
    assert_eq!(r.body, b"Forwarding to idempotent URI");
    let loc = r.header("location").unwrap();
    assert!(loc.contains("/streams/single/incoming/"));
    // Re-POST there, twice: 201 both times, one event.
    for _ in 0..2 {
        let r = api
            .send(
                reqwest::Method::POST,
                &loc,
                &[("Content-Type", "application/json"), ("ES-EventType", "t")],
                Some(b"{a : \"1\"}".to_vec()),
            )
            .await;
        assert_eq!(r.status, 201);
        assert!(r.header("location").unwrap().ends_with("/streams/single/0"));
    }
    // Batch media types are refused on /incoming.
    let r = api
        .send(
            reqwest::Method::POST,
            &loc,
            &[("Content-Type", EVENTS)],
            Some(b"[]".to_vec()),
        )
        .await;
    assert_eq!(r.status, 415);
    // Stored bytes unchanged and flagged JSON without validation.
    let r = api
        .get_with(
            "/streams/single/0",
            &[("Accept", "application/octet-stream")],
        )
        .await;
    assert_eq!(r.body, b"{a : \"1\"}");
    // Missing type.
    let r = api
        .send(
            reqwest::Method::POST,
            "/streams/single",
            &[
                ("Content-Type", "application/octet-stream"),
                ("ES-EventId", &new_id()),
            ],
            Some(vec![0, 1, 2]),
        )
        .await;
    assert_eq!(r.status, 400);
    node.stop().await;
}
