//! Durability: the real binary killed with SIGKILL keeps every acknowledged event at the same
//! position; a torn tail is truncated on open; positions equal memory mode.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use devnode::{Node, NodeConfig};
use serde_json::{json, Value};

/// Kills the child (SIGKILL) when dropped, so a failing test leaves no process behind.
struct Proc(Child);

impl Proc {
    fn kill9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with its URL (read from its one stdout line).
fn spawn(dir: &std::path::Path) -> (Proc, String) {
    // The log holds only the test's writes: a restart would otherwise append the node's own
    // `$epoch-information`, and the comparisons below are of the storage engine's positions.
    let mut child = Command::new(env!("CARGO_BIN_EXE_devnode"))
        .args(["--http", "127.0.0.1:0", "--no-server-records", "--db"])
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
    let child = Proc(child);
    assert!(
        line.starts_with("devnode listening on http://"),
        "banner: {line}"
    );
    let url = line
        .split_whitespace()
        .nth(3)
        .expect("url in banner")
        .to_owned();
    (child, url)
}

async fn all_events(api: &Api) -> Vec<(String, String)> {
    // (title, eventId) oldest first, plus the resume position after them.
    let feed = api
        .get("/streams/%24all/00000000000000000000000000000000/forward/100?embed=rich")
        .await
        .json();
    let mut v: Vec<(String, String)> = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["title"].as_str().unwrap().to_owned(),
                e["eventId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.reverse();
    v.push((
        "previous".into(),
        link(&feed, "previous").unwrap_or_default(),
    ));
    v
}

async fn positions(api: &Api) -> Vec<String> {
    // Per-event positions through count=1 pages: `next` of each page is (pos,pos) of its event.
    let mut out = Vec::new();
    let mut url = "/streams/%24all/00000000000000000000000000000000/forward/1".to_owned();
    loop {
        let feed: Value = api.get(&url).await.json();
        if feed["entries"].as_array().unwrap().is_empty() {
            break;
        }
        out.push(link(&feed, "previous").unwrap());
        url = link(&feed, "previous").unwrap();
    }
    out
}

#[tokio::test]
async fn kill_9_and_restart_keeps_events_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn(dir.path());
    let api = Api::new(&url);
    for i in 0..3 {
        let r = api
            .append(
                "durable",
                Some(i - 1),
                &json!([event(&new_id(), "t", json!({ "i": i }))]),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let before = all_events(&api).await;
    let before_pos = positions(&api).await;
    assert_eq!(before.len(), 4);
    child.kill9();

    let (mut child, url) = spawn(dir.path());
    let api = Api::new(&url);
    let after = all_events(&api).await;
    let after_pos = positions(&api).await;
    assert_eq!(
        before
            .iter()
            .map(|(t, i)| (t.clone(), i.clone()))
            .collect::<Vec<_>>()[..3],
        after[..3]
    );
    // Resume links contain the host; compare their path parts.
    let strip = |v: &[String]| {
        v.iter()
            .map(|u| u.rsplit_once("/streams/").unwrap().1.to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&before_pos), strip(&after_pos));
    // Still appendable with the right expected version.
    let r = api
        .append(
            "durable",
            Some(2),
            &json!([event(&new_id(), "t", json!({}))]),
        )
        .await;
    assert_eq!(r.status, 201);
    child.kill9();
}

#[tokio::test]
async fn torn_tail_is_truncated_and_positions_match_memory_mode() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeConfig::on_disk(dir.path()).server_records(false))
        .await
        .unwrap();
    let mem = Node::start(NodeConfig::memory().server_records(false))
        .await
        .unwrap();
    let ids: Vec<String> = (0..3).map(|_| new_id()).collect();
    for n in [&node, &mem] {
        let api = Api::new(&n.url());
        for id in &ids {
            api.append("t", None, &json!([event(id, "t", json!({"k": "v"}))]))
                .await;
        }
    }
    assert_eq!(
        node.store().end(),
        mem.store().end(),
        "same positions with or without --db"
    );
    let end = node.store().end();
    node.stop().await;
    mem.stop().await;

    // Simulate a torn write: half a record of garbage at the end.
    let path = dir.path().join(devnode::store::log::LOG_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&path, &bytes).unwrap();

    let node = Node::start(NodeConfig::on_disk(dir.path()).server_records(false))
        .await
        .unwrap();
    assert_eq!(node.store().end(), end);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), end);
    let api = Api::new(&node.url());
    let feed = api.get("/streams/t").await.json();
    assert_eq!(feed["entries"].as_array().unwrap().len(), 3);
    let r = api
        .append("t", Some(2), &json!([event(&new_id(), "t", json!({}))]))
        .await;
    assert_eq!(r.status, 201);
    node.stop().await;
}
