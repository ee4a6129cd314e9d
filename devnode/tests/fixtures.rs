//! Shape checks against the recorded/reconstructed responses in `tests/fixtures/http-api/`:
//! same properties in the same order, same null policy, same links and headers.

mod common;

use std::path::PathBuf;

use common::*;
use devnode::Profile;
use reqwest::Method;
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/http-api");
    let path = dir.join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("fixture is JSON")
}

/// Keys (in order) and value kinds, recursively; values themselves are ignored.
fn skeleton(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Array(m.iter().map(|(k, v)| json!([k, skeleton(v)])).collect()),
        Value::Array(a) => Value::Array(a.iter().map(skeleton).collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

fn relations(feed: &Value) -> Vec<String> {
    feed["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["relation"].as_str().unwrap().to_owned())
        .collect()
}

fn tail(url: &str) -> String {
    url.rsplit_once("/streams/").unwrap().1.to_owned()
}

#[tokio::test]
async fn v5_stream_head_page_matches_recording() {
    let rec = fixture("stream-head-backward.2017.json");
    let (node, api) = start(Profile::V5).await;
    api.append(
        "newstream",
        None,
        &json!([event(&new_id(), "event-type", json!({"a": "1"}))]),
    )
    .await;
    let r = api.get("/streams/newstream").await;
    assert_eq!(r.header("etag").unwrap(), "\"0;-2060438500\"");
    assert_eq!(
        r.header("cache-control").unwrap(),
        "max-age=0, no-cache, must-revalidate"
    );
    assert_eq!(r.header("vary").unwrap(), "Accept");
    let ours = r.json();
    assert_eq!(skeleton(&ours), skeleton(&rec));
    assert_eq!(relations(&ours), relations(&rec));
    assert_eq!(ours["eTag"], rec["eTag"]);
    assert_eq!(
        tail(&common::link(&ours, "previous").unwrap()),
        "newstream/1/forward/20"
    );
    node.stop().await;
}

#[tokio::test]
async fn v5_full_pages_match_recordings() {
    let back = fixture("stream-head-backward-fullpage.2018.json");
    let fwd = fixture("stream-forward-fullpage.2018.json");
    let (node, api) = start(Profile::V5).await;
    let events: Vec<Value> = (0..27)
        .map(|_| event(&new_id(), "event-type", json!({})))
        .collect();
    api.append("alphabet", None, &Value::Array(events)).await;

    let r = api.get("/streams/alphabet").await;
    assert_eq!(r.header("etag").unwrap(), "\"26;-2060438500\"");
    let ours = r.json();
    assert_eq!(skeleton(&ours), skeleton(&back));
    for rel in ["first", "last", "next", "previous", "metadata"] {
        assert_eq!(
            tail(&common::link(&ours, rel).unwrap()),
            tail(&common::link(&back, rel).unwrap()),
            "{rel}"
        );
    }

    let r = api.get("/streams/alphabet/0/forward/20").await;
    assert_eq!(
        r.header("cache-control").unwrap(),
        "max-age=31536000, public"
    );
    assert!(r.header("etag").is_none());
    let ours = r.json();
    assert_eq!(skeleton(&ours), skeleton(&fwd));
    assert_eq!(relations(&ours), relations(&fwd));
    assert_eq!(ours["entries"][0]["title"], "19@alphabet");
    node.stop().await;
}

#[tokio::test]
async fn v5_forward_past_end_matches_recording() {
    let rec = fixture("stream-forward-past-end.2018.json");
    let (node, api) = start(Profile::V5).await;
    api.append(
        "newstream",
        None,
        &json!([
            event(&new_id(), "t", json!({})),
            event(&new_id(), "t", json!({}))
        ]),
    )
    .await;
    let r = api
        .get_with(
            "/streams/newstream/2/forward/20",
            &[("Accept", "application/json")],
        )
        .await;
    assert_eq!(r.header("etag").unwrap(), "\"1;1391431453\"");
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let ours = r.json();
    assert_eq!(skeleton(&ours), skeleton(&rec));
    assert_eq!(relations(&ours), relations(&rec));
    assert_eq!(
        tail(&common::link(&ours, "next").unwrap()),
        "newstream/1/backward/20"
    );
    node.stop().await;
}

#[tokio::test]
async fn v5_rich_and_body_entries_match_recordings() {
    let body = fixture("stream-embed-body.2015.repaired.json");
    let rich = fixture("stream-embed-rich.2015.repaired.json");
    let (node, api) = start(Profile::V5).await;
    api.append(
        "newstream",
        None,
        &json!([event(
            "fbf4a1a1-b4a3-4dfe-a01f-ec52c34e16e4",
            "event-type",
            json!({"a": "1"})
        )]),
    )
    .await;
    let ours = api.get("/streams/newstream?embed=body").await.json();
    assert_eq!(skeleton(&ours), skeleton(&body));
    assert_eq!(ours["entries"][0]["data"], body["entries"][0]["data"]);
    let ours = api.get("/streams/newstream?embed=rich").await.json();
    assert_eq!(skeleton(&ours), skeleton(&rich));
    node.stop().await;
}

#[tokio::test]
async fn single_event_and_description_document() {
    let entry = fixture("event-atom-entry.2018.json");
    let desc = fixture("description-document.2018.json");
    let (node, api) = start(Profile::V5).await;
    let ev = json!([{
        "eventId": "b989fe21-9469-4017-8d71-9820b8dd1167",
        "eventType": "ItemAdded",
        "data": {"Description": "Xbox One Elite (Console)"},
        "metadata": {"TimeStamp": "2016-12-23T10:00:00.9225401+01:00"}
    }]);
    let stream = "shoppingCart-b989fe21-9469-4017-8d71-9820b8dd1167";
    api.append(stream, None, &ev).await;
    let r = api.get(&format!("/streams/{stream}/0")).await;
    assert_eq!(
        r.header("cache-control").unwrap(),
        "max-age=31536000, public"
    );
    let ours = r.json();
    assert_eq!(skeleton(&ours), skeleton(&entry));
    assert_eq!(ours["content"], entry["content"]);
    // Accept: application/json → the data alone.
    let r = api
        .get_with(
            &format!("/streams/{stream}/0"),
            &[("Accept", "application/json")],
        )
        .await;
    assert_eq!(r.json(), json!({"Description": "Xbox One Elite (Console)"}));

    api.append(
        "newstream",
        None,
        &json!([event(&new_id(), "t", json!({}))]),
    )
    .await;
    let r = api
        .get_with(
            "/streams/newstream",
            &[("Accept", "application/vnd.eventstore.streamdesc+json")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), desc);
    // No Accept on a stream feed → 406 with the description document.
    let r = api.get_with("/streams/newstream", &[]).await;
    assert_eq!(r.status, 406);
    assert_eq!(r.json()["title"], desc["title"]);
    node.stop().await;
}

/// Builds the page of `all-forward-embed-body.*`: a JSON event with metadata, a soft delete, an
/// unresolved `$>` link and a hard-delete tombstone, read forward from the first one.
async fn all_page(api: &Api, node: &devnode::Node, soft_delete_existing: bool) -> Value {
    let start = node.store().end();
    api.append(
        "order-1",
        None,
        &json!([{
            "eventId": "5c7f2a4e-1d3b-4a8e-9f60-2b7c1e0d9a11",
            "eventType": "OrderPlaced",
            "data": {"orderId": "1", "total": 10},
            "metadata": {"source": "web"}
        }]),
    )
    .await;
    if soft_delete_existing {
        // 21.10+ refuses a soft delete of a stream that never existed.
        let r = api
            .send(
                Method::POST,
                "/streams/order-2/metadata",
                &[
                    ("Content-Type", "application/json"),
                    ("ES-EventId", &new_id()),
                ],
                Some(b"{}".to_vec()),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    assert_eq!(api.delete("order-2", false).await.status, 204);
    let r = api
        .append(
            "$ce-order",
            None,
            &json!([{
                "eventId": new_id(),
                "eventType": "$>",
                "data": "0@order-1",
                // Text metadata: JSON metadata would flag the record isJson over HTTP (§5.1),
                // unlike the projection-written link of the fixture.
                "metadata": "$v=1:-1:1:3"
            }]),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(api.delete("order-3", true).await.status, 204);
    let url = format!("/streams/%24all/{start:016X}0000000000000000/forward/20?embed=body");
    let mut feed = api.get(&url).await.json();
    if soft_delete_existing {
        // Drop the helper metadata event so the page has the fixture's four entries.
        let entries = feed["entries"].as_array_mut().unwrap();
        entries.retain(|e| !(e["streamId"] == "$$order-2" && e["eventNumber"] == 0));
    }
    feed
}

fn by_type<'a>(feed: &'a Value, ty: &str) -> &'a Value {
    feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["eventType"] == ty)
        .unwrap_or_else(|| panic!("no {ty} entry"))
}

#[tokio::test]
async fn all_forward_body_page_matches_reconstruction_v20() {
    let rec = fixture("all-forward-embed-body.v5-v20.10.reconstructed.json");
    let (node, api) = start_empty(Profile::V20).await;
    let ours = all_page(&api, &node, false).await;
    assert_eq!(ours["entries"].as_array().unwrap().len(), 4);
    for ty in ["$streamDeleted", "$>", "$metadata", "OrderPlaced"] {
        assert_eq!(
            skeleton(by_type(&ours, ty)),
            skeleton(by_type(&rec, ty)),
            "{ty}"
        );
    }
    for ty in ["$metadata", "OrderPlaced"] {
        assert_eq!(
            by_type(&ours, ty)["data"],
            by_type(&rec, ty)["data"],
            "{ty}"
        );
        assert_eq!(
            by_type(&ours, ty)["isJson"],
            by_type(&rec, ty)["isJson"],
            "{ty}"
        );
    }
    assert_eq!(
        by_type(&ours, "OrderPlaced")["metaData"],
        by_type(&rec, "OrderPlaced")["metaData"]
    );
    // The reconstructed page starts at a non-zero position, ours at 0 (no last/next then).
    assert_eq!(relations(&ours), ["self", "first", "previous", "metadata"]);
    assert_eq!(
        relations(&rec),
        ["self", "first", "last", "next", "previous", "metadata"]
    );
    node.stop().await;
}

#[tokio::test]
async fn all_forward_body_page_matches_reconstruction_v25_nulls() {
    let rec = fixture("all-forward-embed-body.v23.6-v24.10.reconstructed.json");
    let (node, api) = start(Profile::V25).await;
    // Put something first so the page starts past 0 and carries last/next like the fixture.
    api.append("warmup", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    let ours = all_page(&api, &node, true).await;
    for ty in ["$streamDeleted", "$>", "$metadata", "OrderPlaced"] {
        assert_eq!(
            skeleton(by_type(&ours, ty)),
            skeleton(by_type(&rec, ty)),
            "{ty}"
        );
    }
    let mut o = ours.clone();
    let mut r = rec.clone();
    o["entries"] = json!([]);
    r["entries"] = json!([]);
    assert_eq!(skeleton(&o), skeleton(&r));
    assert_eq!(relations(&o), relations(&r));
    assert_eq!(ours["author"]["name"], "Kurrent");
    node.stop().await;
}
