//! `--run-projections system`: the system projections' records (docs/devnode.md "System
//! projections", `devnode/src/projections.rs` for the server sources followed). Links appear behind
//! the log for user events in the server's format, never for `$`-streams; deletes are indexed as
//! the server indexes them; the subsystem is off by default and registers its projections stopped
//! without `--start-standard-projections`; a restart (graceful or SIGKILL, either layout) neither
//! loses nor duplicates a link.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use devnode::store::{ReaderVersion, StoredRecord, StreamRead};
use devnode::{Node, NodeConfig, RunProjections};
use serde_json::{json, Value};

/// Every event of `stream` (forward, unresolved), as the store holds them.
fn events(node: &Node, stream: &str) -> Vec<StoredRecord> {
    match node
        .store()
        .read_stream_forward(stream, 0, 4096, false, ReaderVersion::V20Plus)
    {
        StreamRead::Ok(s) => s.events.iter().map(|e| e.original().clone()).collect(),
        _ => Vec::new(),
    }
}

fn data(r: &StoredRecord) -> String {
    String::from_utf8_lossy(&r.data).into_owned()
}

fn meta(r: &StoredRecord) -> Value {
    serde_json::from_slice(&r.metadata).unwrap_or(Value::Null)
}

/// The metadata's keys in order.
fn keys(r: &StoredRecord) -> Vec<String> {
    match meta(r) {
        Value::Object(m) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn position(node: &Node, stream: &str, number: i64) -> u64 {
    node.store().event_position(stream, number).unwrap()
}

/// Polls until `stream` holds `n` events (links are written behind the log).
async fn wait_for(node: &Node, stream: &str, n: usize) -> Vec<StoredRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = events(node, stream);
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{stream}: {} of {n} events after 10 s",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn start(cfg: NodeConfig) -> (Node, Api) {
    let node = Node::start(cfg).await.unwrap();
    let api = Api::new(&node.url());
    (node, api)
}

#[tokio::test]
async fn links_for_user_events_in_the_server_format() {
    let (node, api) = start(NodeConfig::memory().system_projections()).await;
    let (a, b) = (new_id(), new_id());
    let body = json!([
        {
            "eventId": a, "eventType": "OrderPlaced", "data": {"n": 1},
            "metadata": {"$correlationId": "corr-1"}
        },
        { "eventId": b, "eventType": "OrderShipped", "data": {"n": 2} },
    ]);
    assert_eq!(api.append("order-1", None, &body).await.status, 201);
    // A stream without a category, and a system stream written by an admin.
    let r = api
        .append(
            "loose",
            None,
            &json!([event(&new_id(), "Thing", json!({}))]),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = api
        .append(
            "$mine-1",
            None,
            &json!([event(&new_id(), "Thing", json!({}))]),
        )
        .await;
    assert_eq!(r.status, 201);

    let ce = wait_for(&node, "$ce-order", 2).await;
    node.projections_caught_up().await;

    // `$ce-<category>`: a `$>` per event, `n@stream`, caused-by tag, original stream, cause.
    let ce = &ce[..];
    assert_eq!(ce.len(), 2);
    assert_eq!(data(&ce[0]), "0@order-1");
    assert_eq!(data(&ce[1]), "1@order-1");
    for (i, link) in ce.iter().enumerate() {
        assert_eq!(&*link.event_type, "$>");
        assert!(!link.is_json());
        let m = meta(link);
        let pos = position(&node, "order-1", i as i64);
        assert_eq!(m["$c"], json!(pos));
        assert_eq!(m["$p"], json!(pos));
        assert_eq!(m["$o"], "order-1");
        // `$by_category` is the third projection registered: id 3, enabled at version 1.
        assert_eq!(m["$v"], "3:-1:1:4");
        assert!(link.pos > pos, "a link comes after its event in $all");
    }
    assert_eq!(meta(&ce[0])["$causedBy"], json!(a));
    assert_eq!(meta(&ce[1])["$causedBy"], json!(b));
    assert_eq!(
        keys(&ce[0]),
        ["$v", "$c", "$p", "$o", "$causedBy", "$correlationId"]
    );
    assert_eq!(meta(&ce[0])["$correlationId"], "corr-1");
    assert_eq!(keys(&ce[1]), ["$v", "$c", "$p", "$o", "$causedBy"]);

    // The emitted stream's metadata comes first (`EmittedStream.SubmitWriteMetadata`).
    let m = events(&node, "$$$ce-order");
    assert_eq!(m.len(), 1);
    assert_eq!(data(&m[0]), r#"{"$acl":{"$r":"$all","$mr":"$all"}}"#);
    assert!(m[0].pos < ce[0].pos);

    // `$et-<type>`: every event, no `$o`.
    let et = events(&node, "$et-OrderPlaced");
    assert_eq!(et.len(), 1);
    assert_eq!(data(&et[0]), "0@order-1");
    assert_eq!(
        keys(&et[0]),
        ["$v", "$c", "$p", "$causedBy", "$correlationId"]
    );
    assert_eq!(meta(&et[0])["$v"], "4:-1:1:4");
    assert_eq!(
        events(&node, "$et-Thing").len(),
        1,
        "only `loose`, not `$mine-1`"
    );

    // `$streams`: event 0 of each new stream; `$category-<category>`: the stream's name.
    let streams: Vec<String> = events(&node, "$streams").iter().map(data).collect();
    assert_eq!(streams, ["0@order-1", "0@loose"]);
    let cat = events(&node, "$category-order");
    assert_eq!(cat.len(), 1);
    assert_eq!(&*cat[0].event_type, "$@");
    assert_eq!(data(&cat[0]), "order-1");

    // `$bc-<correlation id>`: the event with `$correlationId`, stamped with its time.
    let bc = events(&node, "$bc-corr-1");
    assert_eq!(bc.len(), 1);
    assert_eq!(data(&bc[0]), "0@order-1");
    let ts = meta(&bc[0])["$eventTimestamp"].as_str().unwrap().to_owned();
    assert_eq!(ts.len(), "2021-01-01T00:00:00.000000Z".len(), "{ts}");

    // Nothing for `$`-streams (the default users, `$mine-1`, the links themselves).
    assert!(events(&node, "$ce-$mine").is_empty());
    assert!(events(&node, "$ce-$user").is_empty());
    assert!(!streams.iter().any(|s| s.contains('$')));

    // They are `$all` records on both faces' shared store, and ACLs apply: `$r: $all` lets
    // any user read `$ce-order`, the checkpoint stream is for admins.
    let all = node
        .store()
        .read_all_forward(devnode::store::TfPos::new(0, 0), 10_000, false);
    assert!(all
        .events
        .iter()
        .any(|e| &*e.original().stream == "$ce-order"));
    let ops = api.as_user("ops", "changeit");
    assert_eq!(ops.get("/streams/%24ce-order").await.status, 200);
    node.stop().await;
}

#[tokio::test]
async fn deletes_and_metadata_are_indexed_as_the_server_does() {
    let (node, api) = start(NodeConfig::memory().system_projections()).await;
    for s in ["order-1", "order-2", "order-3"] {
        let r = api
            .append(
                s,
                None,
                &json!([event(&new_id(), "OrderPlaced", json!({}))]),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    // Metadata of a user stream: seen through its metastream.
    let r = api
        .send(
            reqwest::Method::POST,
            "/streams/order-1/metadata",
            &[
                ("Content-Type", "application/json"),
                ("ES-EventId", &new_id()),
            ],
            Some(br#"{"$maxCount":10}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(api.delete("order-2", false).await.status, 204);
    assert_eq!(api.delete("order-3", true).await.status, 204);
    wait_for(&node, "$ce-order", 5).await;
    node.projections_caught_up().await;

    let ce = events(&node, "$ce-order");
    let ce: Vec<(String, Value)> = ce.iter().map(|r| (data(r), meta(r))).collect();
    assert_eq!(ce.len(), 5, "{ce:?}");
    // The soft delete: the `$tb` = MaxValue metadata, linked in its metastream.
    assert_eq!(ce[3].0, "0@$$order-2");
    assert_eq!(ce[3].1["$o"], "order-2");
    assert_eq!(ce[3].1["$deleted"], -1);
    // The hard delete: the tombstone.
    assert_eq!(ce[4].0, format!("{}@order-3", i64::MAX));
    assert_eq!(ce[4].1["$o"], "order-3");
    assert_eq!(ce[4].1["$deleted"], -1);

    // `$et-$deleted` for both; the link names the original stream.
    let del: Vec<String> = events(&node, "$et-$deleted").iter().map(data).collect();
    assert_eq!(
        del,
        ["0@order-2".to_owned(), format!("{}@order-3", i64::MAX)]
    );
    // Plain metadata goes to `$et-$metadata` and, as the source writes it, names the original
    // stream; the metastream's first event is a new stream for `$streams`.
    let md: Vec<String> = events(&node, "$et-$metadata").iter().map(data).collect();
    assert_eq!(md, ["0@order-1"]);
    let streams: Vec<String> = events(&node, "$streams").iter().map(data).collect();
    assert!(streams.contains(&"0@$$order-1".to_owned()), "{streams:?}");
    assert!(streams.contains(&"0@$$order-2".to_owned()), "{streams:?}");
    node.stop().await;
}

#[tokio::test]
async fn off_by_default_and_stopped_without_start_standard_projections() {
    let (node, api) = start(NodeConfig::memory()).await;
    let r = api
        .append(
            "order-1",
            None,
            &json!([event(&new_id(), "OrderPlaced", json!({}))]),
        )
        .await;
    assert_eq!(r.status, 201);
    node.projections_caught_up().await;
    assert!(events(&node, "$projections-$all").is_empty());
    let info = api
        .get_with("/info", &[("Accept", "application/json")])
        .await;
    assert_eq!(info.json()["features"]["projections"], false);
    node.stop().await;

    let (node, api) = start(NodeConfig::memory().run_projections(RunProjections::System)).await;
    let r = api
        .append(
            "order-1",
            None,
            &json!([event(&new_id(), "OrderPlaced", json!({}))]),
        )
        .await;
    assert_eq!(r.status, 201);
    let reg: Vec<(String, String)> = events(&node, "$projections-$all")
        .iter()
        .map(|r| (r.event_type.to_string(), data(r)))
        .collect();
    assert_eq!(reg[0].0, "$ProjectionsInitialized");
    let created: Vec<&str> = reg[1..].iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(
        created,
        [
            "$streams",
            "$stream_by_category",
            "$by_category",
            "$by_event_type",
            "$by_correlation_id"
        ]
    );
    let def = events(&node, "$projections-$by_category");
    assert_eq!(def.len(), 1);
    assert_eq!(meta_of_data(&def[0])["enabled"], false);
    node.projections_caught_up().await;
    assert!(
        events(&node, "$ce-order").is_empty(),
        "stopped projections write no links"
    );
    let info = api
        .get_with("/info", &[("Accept", "application/json")])
        .await;
    assert_eq!(info.json()["features"]["projections"], true);
    node.stop().await;
}

fn meta_of_data(r: &StoredRecord) -> Value {
    serde_json::from_slice(&r.data).unwrap()
}

/// `n` events over `order-0`…`order-3`, one append each.
async fn fill(api: &Api, from: usize, n: usize) {
    for i in from..from + n {
        let r = api
            .append(
                &format!("order-{}", i % 4),
                None,
                &json!([event(&new_id(), "OrderPlaced", json!({ "i": i }))]),
            )
            .await;
        assert_eq!(r.status, 201);
    }
}

/// Every user event of `order-*` is linked exactly once in `$ce-order` and `$et-OrderPlaced`,
/// in `$all` order, and `$streams` names each stream once.
fn assert_linked_once(node: &Node, n: usize) {
    for stream in ["$ce-order", "$et-OrderPlaced"] {
        let links: Vec<String> = events(node, stream).iter().map(data).collect();
        assert_eq!(links.len(), n, "{stream}: {links:?}");
        let mut seen = std::collections::HashSet::new();
        for l in &links {
            assert!(seen.insert(l.clone()), "{stream}: duplicate {l}");
        }
    }
    let streams: Vec<String> = events(node, "$streams").iter().map(data).collect();
    assert_eq!(streams.len(), 4, "{streams:?}");
    // One `$ProjectionsInitialized` and five registrations, whatever the restarts.
    assert_eq!(events(node, "$projections-$all").len(), 6);
}

async fn restart_keeps_links_once(cfg: impl Fn() -> NodeConfig) {
    let (node, api) = start(cfg()).await;
    fill(&api, 0, 20).await;
    node.projections_caught_up().await;
    assert_linked_once(&node, 20);
    node.stop().await;

    let (node, api) = start(cfg()).await;
    node.projections_caught_up().await;
    assert_linked_once(&node, 20);
    // The stop checkpoint was written and the restart resumed after it.
    assert!(!events(&node, "$projections-$by_category-checkpoint").is_empty());
    fill(&api, 20, 10).await;
    node.projections_caught_up().await;
    assert_linked_once(&node, 30);
    node.stop().await;
}

#[tokio::test]
async fn restart_does_not_duplicate_links() {
    let dir = tempfile::tempdir().unwrap();
    restart_keeps_links_once(|| NodeConfig::on_disk(dir.path()).system_projections()).await;
}

#[tokio::test]
async fn restart_does_not_duplicate_links_in_the_chunk_layout() {
    let dir = tempfile::tempdir().unwrap();
    restart_keeps_links_once(|| {
        NodeConfig::on_disk(dir.path())
            .chunk_layout(64 * 1024)
            .system_projections()
    })
    .await;
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_devnode"))
        .args([
            "--http",
            "127.0.0.1:0",
            "--run-projections",
            "system",
            "--start-standard-projections",
            "--db",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn devnode");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read banner");
    let url = line.split_whitespace().nth(3).expect("url").to_owned();
    (Proc(child), url)
}

/// Killed with SIGKILL before any checkpoint: the restart re-reads from the start and writes
/// neither a second link for what was linked nor misses what was not.
#[tokio::test]
async fn sigkill_before_a_checkpoint_does_not_duplicate_links() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn(dir.path());
    let api = Api::new(&url);
    fill(&api, 0, 12).await;
    // Wait (over HTTP) until some links are there, then kill without a stop checkpoint.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = api
            .get_with(
                "/streams/%24ce-order/0/forward/100",
                &[("Accept", "application/json")],
            )
            .await;
        if r.status == 200
            && r.json()["entries"]
                .as_array()
                .is_some_and(|e| e.len() >= 12)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no links after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(child);

    let (node, api) = start(NodeConfig::on_disk(dir.path()).system_projections()).await;
    assert!(
        events(&node, "$projections-$by_category-checkpoint").is_empty(),
        "no checkpoint before the kill"
    );
    node.projections_caught_up().await;
    assert_linked_once(&node, 12);
    fill(&api, 12, 4).await;
    node.projections_caught_up().await;
    assert_linked_once(&node, 16);
    node.stop().await;
}
