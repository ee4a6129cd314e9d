//! Soft and hard deletes, undelete follow-ups and stream metadata (§4.5, §5.4, §5.6, §5.7).

mod common;

use common::*;
use devnode::Profile;
use reqwest::Method;
use serde_json::{json, Value};

async fn metastream_events(api: &Api, stream: &str) -> Vec<Value> {
    // All `$$stream` records as seen in `$all` (older ones are hidden from stream reads).
    let feed = api
        .get("/streams/%24all/00000000000000000000000000000000/forward/100?embed=body")
        .await
        .json();
    let mut v: Vec<Value> = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["streamId"] == format!("$${stream}"))
        .cloned()
        .collect();
    v.reverse();
    v
}

async fn post_meta(api: &Api, stream: &str, body: &str) -> Resp {
    api.send(
        Method::POST,
        &format!("/streams/{stream}/metadata"),
        &[
            ("Content-Type", "application/json"),
            ("ES-EventId", &new_id()),
        ],
        Some(body.as_bytes().to_vec()),
    )
    .await
}

#[tokio::test]
async fn soft_delete_recreate_and_metadata_followups() {
    let (node, api) = start(Profile::V20).await;
    let one = || json!([event(&new_id(), "t", json!({}))]);
    assert_eq!(
        api.append(
            "s",
            None,
            &json!([
                event(&new_id(), "t", json!({})),
                event(&new_id(), "t", json!({}))
            ])
        )
        .await
        .status,
        201
    );
    let r = post_meta(&api, "s", r#"{"$maxCount":10,"custom":"x"}"#).await;
    assert_eq!(r.status, 201);
    assert!(r
        .header("location")
        .unwrap()
        .ends_with("/streams/%24%24s/0"));

    let r = api.delete("s", false).await;
    assert_eq!(r.status, 204);
    assert_eq!(api.get("/streams/s").await.status, 404);
    let meta = metastream_events(&api, "s").await;
    assert_eq!(meta.len(), 2);
    assert_eq!(
        meta[1]["data"], "{\"$tb\":9223372036854775807}",
        "compact, replaces all metadata"
    );
    assert_eq!(meta[1]["eventType"], "$metadata");
    // Metadata read shows the `$tb`.
    let m = api
        .get_with("/streams/s/metadata", &[("Accept", "application/json")])
        .await;
    assert_eq!(m.status, 200);
    assert_eq!(m.json(), json!({"$tb": 9223372036854775807i64}));

    // Re-create: numbering continues, follow-up `$tb` = first new number.
    let r = api.append("s", Some(-1), &one()).await;
    assert_eq!(r.status, 201);
    assert!(r.header("location").unwrap().ends_with("/streams/s/2"));
    let meta = metastream_events(&api, "s").await;
    assert_eq!(meta.len(), 3);
    assert_eq!(meta[2]["data"], "{\"$tb\":2}");
    let feed = api.get("/streams/s").await.json();
    let entries = feed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["title"], "2@s");

    // JSON metadata write to a soft-deleted stream undeletes it (even a `$tb` MaxValue body).
    api.delete("s", false).await;
    let r = post_meta(&api, "s", r#"{"$tb":9223372036854775807}"#).await;
    assert_eq!(r.status, 201);
    let meta = metastream_events(&api, "s").await;
    assert_eq!(meta.last().unwrap()["data"], "{\"$tb\":3}");
    let r = api.get("/streams/s").await;
    assert_eq!(r.status, 200);
    assert!(r.json()["entries"].as_array().unwrap().is_empty());
    node.stop().await;
}

#[tokio::test]
async fn hard_delete_tombstone_and_410s() {
    let (node, api) = start(Profile::V20).await;
    api.append("h", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    assert_eq!(api.delete("h", true).await.status, 204);
    assert_eq!(api.get("/streams/h").await.status, 410);
    assert_eq!(api.get("/streams/h/0").await.status, 410);
    let r = api
        .append("h", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    assert_eq!(r.status, 410);
    assert_eq!(api.delete("h", true).await.status, 410);
    assert_eq!(post_meta(&api, "h", "{}").await.status, 410);
    assert_eq!(api.get("/streams/h/metadata").await.status, 410);
    let head = api
        .get("/streams/%24all/head/backward/1?embed=rich")
        .await
        .json();
    let e = &head["entries"][0];
    assert_eq!(e["eventType"], "$streamDeleted");
    assert_eq!(e["eventNumber"], json!(9223372036854775807i64));
    assert_eq!(e["title"], "9223372036854775807@h");
    assert_eq!(e["isJson"], false);
    node.stop().await;
}

#[tokio::test]
async fn soft_delete_of_missing_stream_by_profile() {
    let (node, api) = start(Profile::V21_10).await;
    let r = api.delete("never", false).await;
    assert_eq!(r.status, 400);
    assert!(
        r.header("es-currentversion").is_none(),
        "before 22.10 no current version on delete"
    );
    node.stop().await;
    let (node, api) = start(Profile::V25).await;
    let r = api.delete("never", false).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("es-currentversion").unwrap(), "-1");
    node.stop().await;
    let (node, api) = start(Profile::V5).await;
    assert_eq!(api.delete("never", false).await.status, 204);
    node.stop().await;
}

#[tokio::test]
async fn metadata_reads() {
    let (node, api) = start(Profile::V20).await;
    // Missing stream → 404; existing without metadata → 200 {} without ETag.
    assert_eq!(
        api.get_with("/streams/m/metadata", &[("Accept", "application/json")])
            .await
            .status,
        404
    );
    api.append("m", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    let r = api
        .get_with("/streams/m/metadata", &[("Accept", "application/json")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"{}");
    assert!(r.header("etag").is_none());
    // Metastream reads show only the latest event.
    post_meta(&api, "m", r#"{"a":1}"#).await;
    post_meta(&api, "m", r#"{"a":2}"#).await;
    let r = api
        .get_with("/streams/m/metadata", &[("Accept", "application/json")])
        .await;
    assert_eq!(r.json(), json!({"a": 2}));
    let feed = api.get("/streams/%24%24m").await.json();
    let entries = feed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["title"], "1@$$m");
    // Atom entry form with content.
    let e = api.get("/streams/m/metadata").await.json();
    assert_eq!(e["summary"], "$metadata");
    assert_eq!(e["content"]["data"], json!({"a": 2}));
    assert_eq!(e["content"]["metadata"], "");
    // Metadata of a metastream is refused.
    assert_eq!(api.get("/streams/%24%24m/metadata").await.status, 400);
    // Event type other than `$metadata` refused.
    let r = api
        .send(
            Method::POST,
            "/streams/m/metadata",
            &[
                ("Content-Type", "application/json"),
                ("ES-EventId", &new_id()),
                ("ES-EventType", "x"),
            ],
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(r.status, 400);
    node.stop().await;
}
