//! `$all` pages: positions and links exactly as §3.4, caching/ETag (§3.5), routes (§3.1).

mod common;

use common::*;
use devnode::Profile;
use serde_json::json;

fn pos_of(url: &str) -> String {
    // …/streams/%24all/{pos}/{dir}/{n}
    let parts: Vec<&str> = url.rsplit('/').collect();
    parts[2].to_owned()
}

#[tokio::test]
async fn forward_and_backward_links_follow_the_server() {
    let (node, api) = start_empty(Profile::V20).await;
    for i in 0..3 {
        let r = api
            .append(
                "s-1",
                None,
                &json!([event(&new_id(), "t", json!({ "i": i }))]),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let store = node.store();
    let end = store.end();

    // Forward from the start, 2 of 3: full page → cacheable, no ETag, no last/next (commit 0).
    let p = api
        .get("/streams/%24all/00000000000000000000000000000000/forward/2")
        .await;
    assert_eq!(p.status, 200);
    assert_eq!(
        p.header("cache-control").unwrap(),
        "max-age=31536000, private"
    );
    assert!(p.header("etag").is_none());
    let feed = p.json();
    assert!(link(&feed, "last").is_none() && link(&feed, "next").is_none());
    let entries = feed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["title"], "1@s-1", "newest first");
    let prev = link(&feed, "previous").unwrap();
    let prev_pos = pos_of(&prev);
    assert!(
        prev_pos.ends_with("0000000000000000"),
        "forward previous has prepare 0: {prev_pos}"
    );

    // Continue: the third event, then an empty end-of-feed page.
    let p2 = api.get(&prev).await.json();
    let e2 = p2["entries"].as_array().unwrap();
    assert_eq!(e2.len(), 1);
    assert_eq!(e2[0]["title"], "2@s-1");
    let next_back = link(&p2, "next").unwrap();
    assert_eq!(
        pos_of(&next_back),
        format!("{}{}", &prev_pos[..16], &prev_pos[..16]),
        "next = (pre, pre) of the first record read"
    );
    assert!(link(&p2, "last")
        .unwrap()
        .contains("/00000000000000000000000000000000/forward/2"));
    let tail_url = link(&p2, "previous").unwrap();
    assert_eq!(pos_of(&tail_url), format!("{end:016X}0000000000000000"));

    let tail = api.get(&tail_url).await;
    assert_eq!(tail.status, 200);
    let tf = tail.json();
    assert!(tf["entries"].as_array().unwrap().is_empty());
    assert!(
        link(&tf, "previous").is_none(),
        "no previous on an empty page"
    );
    assert_eq!(
        pos_of(&link(&tf, "next").unwrap()),
        format!("{end:016X}7FFFFFFFFFFFFFFF")
    );
    assert_eq!(tf["updated"], "0001-01-01T00:00:00Z");
    let etag = tail.header("etag").unwrap();
    assert_eq!(
        tail.header("cache-control").unwrap(),
        "max-age=0, no-cache, must-revalidate"
    );
    assert!(etag.starts_with(&format!("\"{};", store.last_commit_position())));

    // If-None-Match with the current ETag → 304 (any $all request).
    let nm = api
        .get_with(&tail_url, &[("Accept", ATOM), ("If-None-Match", &etag)])
        .await;
    assert_eq!(nm.status, 304);
    assert!(nm.body.is_empty());

    // Backward from head: previous = (end, end); 3 of 20 → end of stream, no next.
    let head = api.get("/streams/%24all").await;
    let hf = head.json();
    assert_eq!(
        pos_of(&link(&hf, "previous").unwrap()),
        format!("{end:016X}{end:016X}")
    );
    assert!(link(&hf, "next").is_none());
    assert_eq!(hf["headOfStream"], false);
    assert!(head.header("etag").is_some());

    // Backward page of 1 from head, then from its next: strictly older events.
    let b1 = api.get("/streams/$all/head/backward/1").await.json();
    assert_eq!(b1["entries"][0]["title"], "2@s-1");
    let nb = link(&b1, "next").unwrap();
    let b2 = api.get(&nb).await;
    assert_eq!(
        b2.header("cache-control").unwrap(),
        "max-age=31536000, private"
    );
    assert_eq!(b2.json()["entries"][0]["title"], "1@s-1");
    node.stop().await;
}

#[tokio::test]
async fn forward_position_filter_and_count_one() {
    let (node, api) = start_empty(Profile::V25).await;
    for _ in 0..2 {
        api.append("c", None, &json!([event(&new_id(), "t", json!({}))]))
            .await;
    }
    // count=1 from the second event's position: next = (pos,pos) of that event.
    let first = api
        .get("/streams/%24all/00000000000000000000000000000000/forward/1")
        .await
        .json();
    let second_pos = pos_of(&link(&first, "previous").unwrap());
    let commit = &second_pos[..16];
    let page = api
        .get(&format!(
            "/streams/%24all/{commit}0000000000000000/forward/1"
        ))
        .await
        .json();
    assert_eq!(page["entries"][0]["title"], "1@c");
    assert_eq!(
        pos_of(&link(&page, "next").unwrap()),
        format!("{commit}{commit}")
    );
    // From (X, 7FFF…) the event at X itself is excluded.
    let after = api
        .get(&format!(
            "/streams/%24all/{commit}7FFFFFFFFFFFFFFF/forward/5"
        ))
        .await
        .json();
    assert!(after["entries"].as_array().unwrap().is_empty());
    node.stop().await;
}

#[tokio::test]
async fn routes_and_limits() {
    let (node, api) = start(Profile::V20).await;
    // Trailing slash → 307 to the slash-less URL.
    let r = api.get("/streams/$all/").await;
    assert_eq!(r.status, 307);
    assert!(r.header("location").unwrap().ends_with("/streams/$all"));
    let r = api.get("/streams/%24all/").await;
    assert_eq!(r.status, 307);
    // Both spellings serve the feed.
    assert_eq!(api.get("/streams/$all").await.status, 200);
    assert_eq!(api.get("/streams/%24all").await.status, 200);
    // Bad positions and counts.
    let r = api.get("/streams/%24all/zz/forward/5").await;
    assert_eq!(r.status, 400);
    let r = api
        .get("/streams/%24all/FFFFFFFFFFFFFFFF0000000000000000/forward/5")
        .await;
    assert_eq!(r.status, 400);
    let r = api
        .get("/streams/%24all/00000000000000000000000000000000/forward/4097")
        .await;
    assert_eq!(r.status, 500);
    let r = api
        .get("/streams/%24all/00000000000000000000000000000000/forward/0")
        .await;
    assert_eq!(r.status, 400);
    // Writes to $all are always denied, even for admins.
    let r = api
        .append("$all", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    assert_eq!(r.status, 401);
    // No Accept: feed labelled as description document (§2.3).
    let r = api.get_with("/streams/%24all", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/vnd.eventstore.streamdesc+json"));
    node.stop().await;
}

#[tokio::test]
async fn non_admins_cannot_read_all() {
    let (node, api) = start(Profile::V20).await;
    let ops = api.as_user("ops", "changeit");
    assert_eq!(ops.get("/streams/%24all").await.status, 401);
    assert_eq!(api.anonymous().get("/streams/%24all").await.status, 401);
    // Opening `$all` through `$$$all` metadata (§3.9).
    let r = api
        .send(
            reqwest::Method::POST,
            "/streams/%24all/metadata",
            &[
                ("Content-Type", "application/json"),
                ("ES-EventId", &new_id()),
            ],
            Some(br#"{"$acl":{"$r":"$all"}}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(ops.get("/streams/%24all").await.status, 200);
    node.stop().await;
}
