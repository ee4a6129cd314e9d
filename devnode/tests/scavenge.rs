//! Truncated stream reads (§4.3) and scavenging (`POST /admin/scavenge`, `Node::scavenge`): what
//! goes, what stays, positions that do not move, restarts, authorization.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use devnode::store::{ProposedEvent, Store, TfPos, MAX_PAGE_SIZE};
use devnode::{Node, NodeConfig, Profile, User};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const ZERO: &str = "00000000000000000000000000000000";

/// Every `$all` entry (embed=rich), oldest first.
async fn all_entries(api: &Api) -> Vec<Value> {
    let feed = api
        .get(&format!(
            "/streams/%24all/{ZERO}/forward/{MAX_PAGE_SIZE}?embed=rich"
        ))
        .await
        .json();
    let mut v = feed["entries"].as_array().unwrap().clone();
    v.reverse();
    v
}

/// (eventId, title, updated) of every entry: what must survive a restart (hosts differ).
fn identity(entries: &[Value]) -> Vec<(String, String, String)> {
    entries
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("eventId"), s("title"), s("updated"))
        })
        .collect()
}

fn titles(entries: &[Value], stream: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["streamId"] == stream)
        .map(|e| e["title"].as_str().unwrap().to_owned())
        .collect()
}

/// eventId → (pre-position, post-position) of every record `$all` returns.
fn positions(store: &Store) -> HashMap<String, (u64, u64)> {
    store
        .read_all_forward(TfPos::new(0, 0), MAX_PAGE_SIZE, false)
        .events
        .iter()
        .map(|e| {
            let r = e.original();
            (r.event_id.to_string(), (r.pos, r.post()))
        })
        .collect()
}

/// Entry titles of a stream feed page, newest first, and its link relations.
async fn stream_page(api: &Api, path: &str) -> (Vec<String>, Value) {
    let r = api.get(path).await;
    assert_eq!(r.status, 200, "{path}");
    let feed = r.json();
    let t = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].as_str().unwrap().to_owned())
        .collect();
    (t, feed)
}

async fn post_meta(api: &Api, stream: &str, body: &str) {
    let r = api
        .send(
            Method::POST,
            &format!("/streams/{stream}/metadata"),
            &[
                ("Content-Type", "application/json"),
                ("ES-EventId", &new_id()),
            ],
            Some(body.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(r.status, 201);
}

async fn scavenge(api: &Api) -> Resp {
    api.send(
        Method::POST,
        "/admin/scavenge",
        &[("Accept", "application/json")],
        None,
    )
    .await
}

fn one(id: &str, i: i64) -> Value {
    json!([event(id, "t", json!({ "i": i }))])
}

#[tokio::test]
async fn max_count_truncates_stream_reads_and_scavenge_removes_from_all() {
    let (node, api) = start(Profile::V25).await;
    let store = node.store();
    api.append("other", None, &one(&new_id(), 0)).await;
    let ids: Vec<String> = (0..5).map(|_| new_id()).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(api.append("s", None, &one(id, i as i64)).await.status, 201);
    }
    api.append("other", None, &one(&new_id(), 1)).await;
    post_meta(&api, "s", r#"{"$maxCount":2}"#).await;

    // Stream reads see the last two events only (`IndexReader`, §4.3).
    let (t, feed) = stream_page(&api, "/streams/s/0/forward/20").await;
    assert_eq!(t, ["4@s", "3@s"]);
    assert_eq!(feed["headOfStream"], true);
    assert!(link(&feed, "previous")
        .unwrap()
        .ends_with("/streams/s/5/forward/20"));
    // A page wholly below the truncation point is empty but links on.
    let (t, feed) = stream_page(&api, "/streams/s/0/forward/2").await;
    assert!(t.is_empty());
    assert_eq!(feed["headOfStream"], false);
    assert!(link(&feed, "previous")
        .unwrap()
        .ends_with("/streams/s/2/forward/2"));
    let (t, feed) = stream_page(&api, "/streams/s").await;
    assert_eq!(t, ["4@s", "3@s"]);
    assert!(
        link(&feed, "next").is_none(),
        "the truncation point ends the stream"
    );
    assert_eq!(api.get("/streams/s/2").await.status, 404);
    assert_eq!(api.get("/streams/s/3").await.status, 200);

    // `$all` is not filtered by `$maxCount` (§3.3).
    let before = all_entries(&api).await;
    assert_eq!(titles(&before, "s"), ["0@s", "1@s", "2@s", "3@s", "4@s"]);
    let pre = positions(&store);

    let r = scavenge(&api).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let id = r.json()["scavengeId"].as_str().unwrap().to_owned();
    assert!(Uuid::parse_str(&id).is_ok());

    let after = all_entries(&api).await;
    assert_eq!(titles(&after, "s"), ["3@s", "4@s"]);
    assert_eq!(titles(&after, "$$s"), ["0@$$s"]);
    assert_eq!(titles(&after, "other"), ["0@other", "1@other"]);
    // The scavenge's own bookkeeping (KurrentDB writes a scavenge point).
    assert_eq!(titles(&after, "$scavengePoints"), ["0@$scavengePoints"]);
    assert_eq!(
        titles(&after, &format!("$scavenges-{id}")),
        [format!("0@$scavenges-{id}"), format!("1@$scavenges-{id}")]
    );

    // Survivors keep their positions; removed ones are gone.
    let post = positions(&store);
    for id in &ids[..3] {
        assert!(!post.contains_key(id));
    }
    for (id, p) in &pre {
        if let Some(q) = post.get(id) {
            assert_eq!(p, q, "{id} moved");
        }
    }

    // Paging `$all` one record at a time: `previous` is the post-position of each surviving record.
    let mut url = format!("/streams/%24all/{ZERO}/forward/1?embed=rich");
    let mut walked = Vec::new();
    loop {
        let feed = api.get(&url).await.json();
        let Some(e) = feed["entries"].as_array().unwrap().first().cloned() else {
            break;
        };
        let prev = link(&feed, "previous").unwrap();
        let (_, post_pos) = post[e["eventId"].as_str().unwrap()];
        assert!(prev.contains(&format!("/{post_pos:016X}0000000000000000/forward/1")));
        walked.push(e["title"].as_str().unwrap().to_owned());
        url = format!("{prev}?embed=rich");
    }
    let expected: Vec<String> = after
        .iter()
        .map(|e| e["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(walked, expected);

    // A checkpoint taken at a record that is gone now still resumes at the next survivor.
    let (p1, _) = pre[&ids[1]];
    let feed = api
        .get(&format!("/streams/%24all/{p1:016X}{p1:016X}/forward/1"))
        .await
        .json();
    assert_eq!(feed["entries"][0]["title"], "3@s");

    // Stream reads are unchanged …
    let (t, _) = stream_page(&api, "/streams/s/0/forward/20").await;
    assert_eq!(t, ["4@s", "3@s"]);
    // … until the metadata would show more: what was scavenged stays gone.
    post_meta(&api, "s", r#"{"$maxCount":100}"#).await;
    let (t, _) = stream_page(&api, "/streams/s/0/forward/20").await;
    assert_eq!(t, ["4@s", "3@s"]);
    let (t, feed) = stream_page(&api, "/streams/s").await;
    assert_eq!(t, ["4@s", "3@s"]);
    assert!(
        link(&feed, "next").is_none(),
        "a scavenged gap ends a backward read"
    );
    assert_eq!(api.get("/streams/s/1").await.status, 404);
    node.stop().await;
}

#[tokio::test]
async fn soft_deleted_and_recreated_stream_after_scavenge() {
    for profile in [Profile::V5, Profile::V20, Profile::V25] {
        let (node, api) = start(profile).await;
        let (a, b, c, d, e) = (new_id(), new_id(), new_id(), new_id(), new_id());
        let abc = json!([
            event(&a, "t", json!({})),
            event(&b, "t", json!({})),
            event(&c, "t", json!({}))
        ]);
        assert_eq!(api.append("x", Some(-1), &abc).await.status, 201);
        assert_eq!(api.delete("x", false).await.status, 204);
        let r = api.append("x", Some(2), &one(&d, 3)).await;
        assert_eq!(r.status, 201);
        assert!(r.header("location").unwrap().ends_with("/streams/x/3"));

        assert_eq!(scavenge(&api).await.status, 200, "{profile}");
        let all = all_entries(&api).await;
        // The soft-deleted events go; the recreated stream starts at 3 in `$all`.
        assert_eq!(titles(&all, "x"), ["3@x"], "{profile}");
        let meta = titles(&all, "$$x");
        assert_eq!(meta, ["1@$$x"], "only the last metadata record stays");
        let points = titles(&all, "$scavengePoints");
        if profile == Profile::V20 {
            assert!(points.is_empty(), "20.x scavenges without a scavenge point");
        } else {
            assert_eq!(points, ["0@$scavengePoints"], "{profile}");
        }
        let count = all.len();

        // Expected version = last event number still works.
        let r = api.append("x", Some(3), &one(&e, 4)).await;
        assert_eq!(r.status, 201);
        assert!(r.header("location").unwrap().ends_with("/streams/x/4"));
        // Strong idempotency of surviving events, with and without the id cache.
        for clear in [false, true] {
            if clear {
                node.clear_idempotency_cache();
            }
            let r = api.append("x", Some(2), &one(&d, 3)).await;
            assert_eq!(r.status, 201, "{profile} clear={clear}");
            assert!(r.header("location").unwrap().ends_with("/streams/x/3"));
            let r = api.append("x", Some(3), &one(&e, 4)).await;
            assert_eq!(r.status, 201);
            assert!(r.header("location").unwrap().ends_with("/streams/x/4"));
        }
        assert_eq!(
            all_entries(&api).await.len(),
            count + 1,
            "nothing duplicated"
        );
        // A scavenged event is not found by the index any more (the cache is gone).
        let r = api.append("x", Some(-1), &one(&a, 0)).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.header("es-currentversion").unwrap(), "4");

        let (t, _) = stream_page(&api, "/streams/x/0/forward/20").await;
        assert_eq!(t, ["4@x", "3@x"]);
        node.stop().await;
    }
}

#[tokio::test]
async fn hard_deleted_stream_keeps_only_its_tombstone() {
    let (node, api) = start(Profile::V21_10).await;
    api.append("h", None, &one(&new_id(), 0)).await;
    api.append("h", None, &one(&new_id(), 1)).await;
    post_meta(&api, "h", r#"{"$maxCount":5}"#).await;
    assert_eq!(api.delete("h", true).await.status, 204);
    let out = node.scavenge().unwrap();
    assert_eq!(out.removed, 3);
    let all = all_entries(&api).await;
    assert_eq!(titles(&all, "h"), ["9223372036854775807@h"]);
    assert!(titles(&all, "$$h").is_empty());
    assert_eq!(api.get("/streams/h").await.status, 410);
    assert_eq!(api.append("h", None, &one(&new_id(), 2)).await.status, 410);
    node.stop().await;
}

#[tokio::test]
async fn restart_after_scavenge_keeps_the_result() {
    let dir = tempfile::tempdir().unwrap();
    // Only the test's writes: a restart would append the node's own `$epoch-information`, and
    // the comparisons below are of the log before and after the restart.
    let cfg = || {
        secure(
            NodeConfig::on_disk(dir.path())
                .profile(Profile::V25)
                .fsync(true)
                .server_records(false),
        )
    };
    let node = Node::start(cfg()).await.unwrap();
    let api = Api::new(&node.url());
    for i in 0..4 {
        let ev = json!([event(
            &new_id(),
            "t",
            json!({ "secret": format!("MARKER-{i}") })
        )]);
        assert_eq!(api.append("r", None, &ev).await.status, 201);
    }
    post_meta(&api, "r", r#"{"$maxCount":1}"#).await;
    let out = node.scavenge().unwrap();
    assert_eq!(out.removed, 3);
    let all = all_entries(&api).await;
    assert_eq!(titles(&all, "r"), ["3@r"]);
    let pos = positions(&node.store());
    let end = node.store().end();
    node.stop().await;

    // Removed data is gone from the file, not only hidden.
    let raw = std::fs::read(dir.path().join(devnode::store::log::LOG_FILE)).unwrap();
    let text = String::from_utf8_lossy(&raw);
    for i in 0..3 {
        assert!(!text.contains(&format!("MARKER-{i}")), "MARKER-{i}");
    }
    assert!(text.contains("MARKER-3"));

    let node = Node::start(cfg()).await.unwrap();
    let api = Api::new(&node.url());
    assert_eq!(identity(&all_entries(&api).await), identity(&all));
    assert_eq!(positions(&node.store()), pos);
    assert_eq!(node.store().end(), end);
    let (t, _) = stream_page(&api, "/streams/r/0/forward/20").await;
    assert_eq!(t, ["3@r"]);
    assert_eq!(api.get("/streams/r/2").await.status, 404);
    let r = api.append("r", Some(3), &one(&new_id(), 4)).await;
    assert_eq!(r.status, 201);
    assert!(r.header("location").unwrap().ends_with("/streams/r/4"));
    node.stop().await;
}

#[tokio::test]
async fn scavenge_needs_admin_or_ops() {
    for profile in [Profile::V5, Profile::V20] {
        let node = Node::start(secure(
            NodeConfig::memory()
                .profile(profile)
                .user(User::new("bob", "pw", &[])),
        ))
        .await
        .unwrap();
        let api = Api::new(&node.url());
        api.append("s", None, &one(&new_id(), 0)).await;
        let count = all_entries(&api).await.len();
        for who in [api.as_user("bob", "pw"), api.anonymous()] {
            let r = scavenge(&who).await;
            assert_eq!(r.status, 401, "{profile}");
            assert!(r.body.is_empty());
            assert_eq!(
                r.header("www-authenticate").as_deref(),
                (profile == Profile::V5).then_some("BasicCustom realm=\"ES\"")
            );
        }
        assert_eq!(all_entries(&api).await.len(), count, "nothing written");
        // `$ops` may; without `Accept` the text codec answers.
        let r = api
            .as_user("ops", "changeit")
            .send(Method::POST, "/admin/scavenge", &[], None)
            .await;
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        let text = String::from_utf8(r.body).unwrap();
        let id = text.strip_prefix("ScavengeId: ").unwrap();
        assert!(Uuid::parse_str(id).is_ok(), "{text}");
        assert_eq!(api.get("/admin/scavenge").await.status, 405);
        let bad = api
            .send(Method::POST, "/admin/scavenge?threads=0", &[], None)
            .await;
        assert_eq!(bad.status, 400);
        node.stop().await;
    }
}

fn proposed() -> ProposedEvent {
    ProposedEvent {
        event_id: Uuid::new_v4(),
        event_type: "t".into(),
        is_json: true,
        data: Bytes::from_static(b"{}"),
        metadata: Bytes::new(),
    }
}

/// `$maxAge` needs old events: written through the store with an old timestamp (no sleeping).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_truncates_and_scavenges() {
    let (node, api) = start(Profile::V20).await;
    let store = node.store();
    let hour_ago = devnode::store::now_ticks() - 3600 * 10_000_000;
    store
        .append_with_timestamp(
            "aged",
            -1,
            vec![proposed(), proposed(), proposed()],
            hour_ago,
        )
        .unwrap();
    api.append("aged", Some(2), &one(&new_id(), 3)).await;
    store
        .append_with_timestamp("gone", -1, vec![proposed(), proposed()], hour_ago)
        .unwrap();
    post_meta(&api, "aged", r#"{"$maxAge":60}"#).await;
    post_meta(&api, "gone", r#"{"$maxAge":60}"#).await;

    let (t, _) = stream_page(&api, "/streams/aged/0/forward/20").await;
    assert_eq!(t, ["3@aged"]);
    assert_eq!(api.get("/streams/aged/0").await.status, 404);
    assert_eq!(titles(&all_entries(&api).await, "aged").len(), 4);

    // Everything expired but the stream exists: an empty page at once, even with a long poll
    // (the server parks only when the request is past the last event).
    let started = Instant::now();
    let r = api
        .get_with(
            "/streams/gone/0/forward/5",
            &[("Accept", ATOM), ("ES-LongPoll", "30")],
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.status, 200);
    assert!(r.json()["entries"].as_array().unwrap().is_empty());

    let out = node.scavenge().unwrap();
    assert_eq!(
        out.removed,
        3 + 1,
        "old events except the last of each stream"
    );
    let all = all_entries(&api).await;
    assert_eq!(titles(&all, "aged"), ["3@aged"]);
    // The last event is kept even though it expired: the stream keeps its last number.
    assert_eq!(titles(&all, "gone"), ["1@gone"]);
    let (t, _) = stream_page(&api, "/streams/gone").await;
    assert!(t.is_empty());
    assert_eq!(
        api.append("gone", Some(1), &one(&new_id(), 2)).await.status,
        201
    );
    node.stop().await;
}
