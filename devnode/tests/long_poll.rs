//! Long polling on forward reads (§3.5): a parked read wakes as soon as something commits, times
//! out with a normal answer, and is released by `stop`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use devnode::Profile;
use serde_json::json;

/// Waits until the node reports `n` parked watchers (event-driven, bounded).
async fn until_parked(node: &devnode::Node, n: usize) {
    let store = node.store();
    tokio::time::timeout(Duration::from_secs(10), async {
        while store.watchers() < n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("long poll never parked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_long_poll_wakes_on_append() {
    let (node, api) = start(Profile::V25).await;
    api.append("a", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    let end = node.store().end();
    let url = format!("/streams/%24all/{end:016X}0000000000000000/forward/20");
    let poller = {
        let api = api.clone();
        let url = url.clone();
        tokio::spawn(async move {
            api.get_with(&url, &[("Accept", ATOM), ("Kurrent-LongPoll", "30")])
                .await
        })
    };
    until_parked(&node, 1).await;
    let started = Instant::now();
    api.append("b", None, &json!([event(&new_id(), "t", json!({"x": 1}))]))
        .await;
    let r = poller.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.status, 200);
    let feed = r.json();
    assert_eq!(feed["entries"][0]["title"], "0@b");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_long_poll_wakes_on_append_to_that_stream() {
    let (node, api) = start(Profile::V20).await;
    api.append("s", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    let poller = {
        let api = api.clone();
        tokio::spawn(async move {
            api.get_with(
                "/streams/s/1/forward/5",
                &[("Accept", ATOM), ("ES-LongPoll", "30")],
            )
            .await
        })
    };
    until_parked(&node, 1).await;
    api.append("s", None, &json!([event(&new_id(), "t", json!({}))]))
        .await;
    let r = poller.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["entries"][0]["title"], "1@s");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_times_out_with_an_empty_page() {
    let (node, api) = start(Profile::V20).await;
    let end = node.store().end();
    let r = api
        .get_with(
            &format!("/streams/%24all/{end:016X}0000000000000000/forward/20"),
            &[("Accept", ATOM), ("ES-LongPoll", "1")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["entries"].as_array().unwrap().is_empty());
    assert!(r.header("etag").is_some());
    // Bad header value.
    let r = api
        .get_with(
            "/streams/%24all/00000000000000000000000000000000/forward/20",
            &[("Accept", ATOM), ("ES-LongPoll", "0")],
        )
        .await;
    assert_eq!(r.status, 400);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_releases_parked_polls() {
    let (node, api) = start(Profile::V20).await;
    let end = node.store().end();
    let poller = {
        let api = api.clone();
        tokio::spawn(async move {
            api.get_with(
                &format!("/streams/%24all/{end:016X}0000000000000000/forward/20"),
                &[("Accept", ATOM), ("ES-LongPoll", "60")],
            )
            .await
        })
    };
    until_parked(&node, 1).await;
    let started = Instant::now();
    node.stop().await;
    let r = poller.await.unwrap();
    assert_eq!(r.status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
}
